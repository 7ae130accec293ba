/* The blocking subscriber's insides (lib/driver/subscriber.c), shared with
 * its cluster back end (lib/acluster/acluster_pubsub.c): the queue of
 * messages and the wait are the same; what holds the subscriptions (an
 * asynchronous handle, or a cluster handle for shard channels) is behind
 * a few functions. */
#ifndef REDTLS_SUBSCRIBER_H
#define REDTLS_SUBSCRIBER_H

#include <redtls/pubsub.h>

#include "common.h"

typedef struct redtls__sub_backend {
    /* Subscribes (on) or unsubscribes; the message in errmsg on failure. */
    redtls_status (*change)(redtls_subscriber *s, redtls_sub_kind kind, const char *name, size_t len, int on);
    /* Runs the handle until done(s) or deadline: 1 done, 0 time out, -1
     * the wait failed (errmsg set). */
    int (*run_until)(redtls_subscriber *s, int (*done)(const redtls_subscriber *), int64_t deadline);
    size_t (*count)(const redtls_subscriber *s);
    /* The time a subscribe or unsubscribe may wait for its answer. */
    int64_t (*answer_ms)(const redtls_subscriber *s);
    /* The last failure's cause ("" when none), and whether the reconnect
     * limits ran out (restart: start again). */
    const char *(*cause)(const redtls_subscriber *s);
    int (*gave_up)(const redtls_subscriber *s);
    void (*restart)(redtls_subscriber *s);
    void (*free)(redtls_subscriber *s);
} redtls__sub_backend;

struct redtls_subscriber {
    const redtls__sub_backend *be;
    void *handle; /* redtls_async or redtls_async_cluster */
    redtls_message *q_head, *q_tail;
    size_t backlog;
    /* The subscribe or unsubscribe call waiting for its answer. */
    int waiting, answered;
    redtls_sub_kind w_kind;
    const char *w_name;
    size_t w_len;
    redtls_status w_st;
    int (*done)(const redtls_subscriber *s); /* run_until's, for the back end */
    char errmsg[REDTLS__ERRMSG_MAX];
};

/* A message or notice for the subscriber (copied when it is kept). */
void redtls__subscriber_take(redtls_subscriber *s, const redtls_message *m);
/* A subscriber around a handle made by the back end. */
redtls_status redtls__subscriber_wrap(const redtls__sub_backend *be, void *handle, redtls_subscriber **out);

#endif

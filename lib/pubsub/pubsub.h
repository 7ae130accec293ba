/* Pub/Sub as pure functions and data: what a server's reply or push means
 * for subscriptions, the subscription table, and the messages handed to
 * users. No sockets: the drivers feed it. */
#ifndef REDTLS_PUBSUB_INTERNAL_H
#define REDTLS_PUBSUB_INTERNAL_H

#include <stddef.h>

#include <redtls/pubsub.h>

#include "common.h"

struct redisReply;

/* What a reply or push is, for Pub/Sub. */
enum {
    REDTLS__PS_OTHER = 0, /* not Pub/Sub's (a command's reply, a "pong") */
    REDTLS__PS_MESSAGE,   /* message, pmessage, smessage */
    REDTLS__PS_CONFIRM    /* (p|s)subscribe, (p|s)unsubscribe */
};

typedef struct redtls__ps_reply {
    int what;             /* REDTLS__PS_* */
    redtls_sub_kind kind; /* of the subscription concerned */
    int subscribe;        /* confirmations: 1 subscribe, 0 unsubscribe */
    const char *name;     /* the subscription's name (channel or pattern);
                           * NULL for an unsubscribe from nothing */
    size_t name_len;
    const char *channel; /* messages: the channel published to */
    size_t channel_len;
    const char *payload; /* messages */
    size_t payload_len;
    long long count; /* confirmations: subscriptions left */
} redtls__ps_reply;

/* Classifies r (an array, or a RESP3 push): fills *out and returns its
 * what. Anything not shaped exactly like a Pub/Sub message or
 * confirmation is REDTLS__PS_OTHER. */
int redtls__ps_classify(const struct redisReply *r, redtls__ps_reply *out);

/* The command for kind: "SUBSCRIBE", "PUNSUBSCRIBE"... NULL for an
 * unknown kind. */
const char *redtls__ps_command(redtls_sub_kind kind, int subscribe);

/* ---- the subscription table ---- */

enum {
    REDTLS__SUB_OPENING = 1, /* its SUBSCRIBE is queued or in flight */
    REDTLS__SUB_ACTIVE,      /* confirmed on the current connection */
    REDTLS__SUB_LOST,        /* to be made again on the next connection */
    REDTLS__SUB_CLOSING      /* its UNSUBSCRIBE is queued or in flight */
};

typedef struct redtls__sub {
    struct redtls__sub *hnext;       /* hash chain */
    struct redtls__sub *prev, *next; /* every subscription, in order */
    redtls_sub_kind kind;
    int state;
    int confirmed_once; /* SUBSCRIBED was delivered */
    int gap;            /* restored: RESTORED is owed */
    unsigned refs;      /* commands in flight naming it */
    int dead;           /* removed: freed with its last ref */
    redtls_async_message_cb cb;
    void *ud;
    size_t len;
    char name[]; /* len bytes, then a NUL */
} redtls__sub;

typedef struct redtls__subs {
    redtls__sub **buckets;
    size_t nbuckets; /* a power of two, or 0 */
    size_t n;
    redtls__sub *head, *tail;
} redtls__subs;

redtls__sub *redtls__subs_find(const redtls__subs *t, redtls_sub_kind kind, const char *name, size_t len);
/* Adds a new entry (state OPENING); NULL when out of memory. */
redtls__sub *redtls__subs_add(redtls__subs *t, redtls_sub_kind kind, const char *name, size_t len,
                              redtls_async_message_cb cb, void *ud);
/* Unlinks s; frees it now, or with its last reference. */
void redtls__subs_remove(redtls__subs *t, redtls__sub *s);
/* Drops a reference a command held. */
void redtls__sub_unref(redtls__sub *s);
void redtls__subs_free(redtls__subs *t);

/* ---- messages ---- */

struct redtls_message {
    int type;
    redtls_sub_kind kind;
    const char *sub;
    size_t sub_len;
    const char *channel;
    size_t channel_len;
    const char *payload;
    size_t payload_len;
    redtls_status status;
    const char *detail;
    void *owner; /* an end the driver owes an entry of its own, asked for by
                  * the application (the entry) */
    int moved; /* UNSUBSCRIBED: the server sent it elsewhere (a MOVED or
                * cluster error reply, or the server ended it when its slot
                * moved): the cluster client subscribes again at the owner */
    /* Owned parts, for messages handed over (the blocking subscriber). */
    struct redtls_message *next;
    struct redisReply *reply;
    char *owned;
};

#endif

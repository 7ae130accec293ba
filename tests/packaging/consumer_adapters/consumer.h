/* What the two adapter consumers (main_libuv.c, main_libevent.c) do the
 * same way: count failed checks, make a handle (or a cluster handle) from a
 * URL, and a PING whose callback frees the handle. Compiled into each, as
 * an application's own files would be. */
#ifndef REDTLS_CONSUMER_H
#define REDTLS_CONSUMER_H

#include <redtls/async.h>
#include <redtls/async_cluster.h>

/* The program's name, for its messages: each main_<loop>.c defines it. */
extern const char consumer_name[];

/* Counts a failure, saying what failed, when ok is 0. */
void consumer_check(int ok, const char *what);

/* How many checks failed. */
int consumer_failures(void);

/* A handle for url, or NULL (why on stderr). */
redtls_async *consumer_new_handle(const char *url);

/* A cluster handle with url's settings and those seeds, or NULL (why on
 * stderr). Nothing is connected. */
redtls_async_cluster *consumer_new_cluster(const char *url, const char *seeds);

struct consumer_ping {
    redtls_async *ac; /* NULL once freed */
    int replied;
    int pong;
};

/* On a handle attached to the loop: connects and issues a PING whose
 * callback records the reply and frees the handle, so the loop then has
 * nothing left to do. */
void consumer_ping_issue(struct consumer_ping *p, redtls_async *ac);

/* Once the loop has returned: whether the PING was answered PONG, once
 * (a failed check when not). */
int consumer_ping_answered(const struct consumer_ping *p);

#endif

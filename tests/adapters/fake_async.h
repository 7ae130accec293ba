/* A stand-in for the asynchronous core, for the adapter tests: the three
 * functions the adapters call (redtls_async_attach, redtls_async_process,
 * redtls_async_free) with their documented behaviour, and a handle whose
 * wants (descriptor, events, timer) the test sets by hand. The adapter
 * tests link this instead of libredtls, so they test exactly the adapter
 * headers, and can free the handle from inside redtls_async_process the
 * way a user callback does. */
#ifndef REDTLS_TESTS_FAKE_ASYNC_H
#define REDTLS_TESTS_FAKE_ASYNC_H

#include <redtls/async.h>

/* What redtls_async_process does for the test; events as the loop saw them. */
typedef void (*fake_process_fn)(redtls_async *ac, int events, void *arg);

redtls_async *fake_async_new(void);
void fake_async_on_process(redtls_async *ac, fake_process_fn fn, void *arg);
/* The next redtls_async_attach fails with st (REDTLS_OK: none fails). */
void fake_async_fail_attach(redtls_async *ac, redtls_status st);
/* Tells the attached hooks, as the core does when its wants change. */
int fake_async_watch(redtls_async *ac, int fd, int events);
void fake_async_timer(redtls_async *ac, int ms);
int fake_async_attached(const redtls_async *ac);

/* Across handles, since a handle is gone once freed. */
struct fake_async_counts {
    int processes;   /* redtls_async_process calls */
    int last_events; /* the events of the last one */
    int detaches;    /* detach hook calls */
    int frees;       /* handles actually freed */
};
extern struct fake_async_counts fake_counts;
void fake_async_reset_counts(void);

#endif

/* The cluster adapters against a real cluster: the cases that
 * integration.adapter_cluster_libuv and integration.adapter_cluster_libevent
 * (test_libuv_cluster.c, test_libevent_cluster.c) run on their loop, with
 * the real library, over a 3-master TLS cluster from the harness
 * (lab_cluster.h) started once per program. Each program defines
 * live_loop (its loop's operations) and lists these cases in its main.
 *
 * What they check, beyond the unit cases over stand-in cores
 * (adapter_cluster_cases.c): that the library and the adapter together
 * connect, route commands over every slot with each callback called once,
 * survive the handle freed from any of its callbacks, leave nothing in the
 * loop after a failed attach or a free, and that the handle's own timer,
 * driven by the adapter alone, ends and retries the commands it holds. */
#ifndef REDTLS_TESTS_ADAPTER_CLUSTER_LIVE_H
#define REDTLS_TESTS_ADAPTER_CLUSTER_LIVE_H

#include <redtls/async_cluster.h>

struct live_loop {
    const char *name;
    void *(*new_loop)(void); /* NULL on failure */
    redtls_status (*attach)(redtls_async_cluster *acl, void *loop);
    /* One turn that does not block; 1 when the loop has nothing left to
     * do (no active handle or event: what the adapters made is gone). */
    int (*pass)(void *loop);
    /* Frees the loop; -1 when an adapter left something in it. */
    int (*free_loop)(void *loop);
    /* How much sooner than asked a timer may seem to fire, in ms. */
    int clock_tick_ms;
};

extern const struct live_loop live_loop; /* the test program's */

/* The cluster, once per program. */
int live_group_setup(void **state);
int live_group_teardown(void **state);
/* Each test: a loop; teardown frees the handle if the test did not, then
 * the loop, asserting nothing is left in it. */
int live_setup(void **state);
int live_teardown(void **state);

void test_live_attach_refused(void **state);
void test_live_attach_nomem(void **state);
void test_live_attach_nomem_with_nodes(void **state);
void test_live_connect(void **state);
void test_live_all_slots(void **state);
void test_live_before_connect(void **state);
void test_live_free_from_reply(void **state);
void test_live_free_from_connect(void **state);
void test_live_deadline_by_timer(void **state);
void test_live_retry_by_timer(void **state);

#endif

/* The cases every adapter header (include/redtls/async_<loop>.h) must
 * pass whatever its loop, over the stand-in core (fake_async.c), written
 * once for unit.adapter_libuv and unit.adapter_libevent. Each of those
 * test programs defines adapter_loop (its loop's operations), lists these
 * cases in its main beside its own, and uses the fixture and helpers
 * below in its own cases. The cluster adapters' cases are in
 * adapter_cluster_cases.c. */
#ifndef REDTLS_TESTS_ADAPTER_CASES_H
#define REDTLS_TESTS_ADAPTER_CASES_H

#include <redtls/async.h>
#include <redtls/async_cluster.h>

struct fixture {
    void *loop;       /* adapter_loop.new_loop()'s */
    redtls_async *ac; /* NULL once freed */
    int sp[2];        /* a socket pair; sp[0] is what the handle watches */
};

/* What a test program says about its loop. */
struct adapter_loop {
    void *(*new_loop)(void); /* NULL on failure */
    /* The handle is freed: asserts that nothing the adapter made is left
     * in the loop (and the sanitizers or valgrind report any memory
     * left), then frees the loop. */
    void (*free_loop)(void *loop);
    redtls_status (*attach)(redtls_async *ac, void *loop);
    void (*pass)(void *loop); /* one turn that does not block */
    /* Runs until the loop has nothing to do; 1 when it says that is why
     * it returned. */
    int (*run)(void *loop);
    /* The loop's clock, as its timers read it, in ms. */
    long long (*now_ms)(void *loop);
    /* How much sooner than asked a timer may seem to fire on that clock. */
    int clock_tick_ms;
    redtls_status (*attach_cluster)(redtls_async_cluster *acl, void *loop);
};

extern const struct adapter_loop adapter_loop; /* the test program's */

/* One test at a time: setup gives each the fixture, attached to nothing;
 * teardown frees the handle if the test did not, then the loop. */
int setup(void **state);
int teardown(void **state);

/* Turns the loop without blocking until redtls_async_process has been
 * called `want` times in all, or ms have passed. */
void run_until(struct fixture *f, int want, int ms);

/* Whether allocations can be made to fail here: not under the sanitizers
 * (LAB_ALLOC_HOOK is 0) nor under valgrind, whose malloc replaces the
 * hook's. */
int alloc_failures_work(void);

/* Attaches the adapter, asserting it worked. */
void attach(struct fixture *f);

/* A process callback that frees the handle (arg: the fixture). */
void free_handle(redtls_async *ac, int events, void *arg);

/* For process callbacks that free the handle after more calls. */
struct nested {
    struct fixture *f;
    int calls;
};

/* The cases. */
void test_attach_refuses_null(void **state);
void test_attach_failure_leaves_nothing(void **state);
void test_readable(void **state);
void test_writable_then_none(void **state);
void test_descriptor_change(void **state);
void test_same_number_after_minus_one(void **state);
void test_timer(void **state);
void test_timer_cancel(void **state);
void test_free_outside_callbacks(void **state);
void test_attach_again(void **state);

#endif

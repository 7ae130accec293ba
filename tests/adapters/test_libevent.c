/* include/redtls/async_libevent.h over a stand-in core (fake_async.c): the
 * hooks against a real event_base and socket pairs, freeing the handle from
 * inside its callbacks, descriptor changes, allocation failures. */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include <redtls/async_libevent.h>

#include "fake_async.h"
#include "lab_allochook.h"

struct fixture {
    struct event_base *base;
    redtls_async *ac; /* NULL once freed */
    int sp[2];        /* a socket pair; sp[0] is what the handle watches */
};

static struct fixture fixture; /* one test at a time */

static int setup(void **state)
{
    struct fixture *f = &fixture;
    memset(f, 0, sizeof(*f));
    if ((f->base = event_base_new()) == NULL)
        return -1;
    f->ac = fake_async_new();
    if (f->ac == NULL || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, f->sp) != 0)
        return -1;
    fake_async_reset_counts();
    *state = f;
    return 0;
}

/* Every test ends here: once the handle is freed, nothing of the adapter
 * may be left in the base (a pass of the loop says 1: no events), and the
 * sanitizers or valgrind report any memory left. */
static int teardown(void **state)
{
    struct fixture *f = *state;
    redtls_async_free(f->ac);
    assert_int_equal(event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK), 1);
    event_base_free(f->base);
    if (f->sp[0] >= 0)
        close(f->sp[0]);
    close(f->sp[1]);
    return 0;
}

/* Runs the base without blocking until redtls_async_process has been
 * called `want` times in all, or ms have passed. */
static void run_until(struct fixture *f, int want, int ms)
{
    for (int i = 0; i < ms && fake_counts.processes < want; i++) {
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        if (fake_counts.processes < want)
            poll(NULL, 0, 1);
    }
}

/* Whether allocations can be made to fail here: not under the sanitizers
 * (LAB_ALLOC_HOOK is 0) nor under valgrind, whose malloc replaces the
 * hook's. */
static int alloc_failures_work(void)
{
    void *(*volatile get)(size_t) = malloc; /* not elided by the compiler */
    void *p;
    if (!LAB_ALLOC_HOOK)
        return 0;
    lab_alloc_arm(1);
    p = get(16);
    lab_alloc_disarm();
    free(p);
    return p == NULL;
}

static void attach(struct fixture *f)
{
    assert_int_equal(redtls_async_attach_libevent(f->ac, f->base), REDTLS_OK);
    assert_true(fake_async_attached(f->ac));
}

static void test_attach_refuses_null(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(redtls_async_attach_libevent(NULL, f->base), REDTLS_E_INVALID);
    assert_int_equal(redtls_async_attach_libevent(f->ac, NULL), REDTLS_E_INVALID);
    assert_false(fake_async_attached(f->ac));
}

static void test_attach_failure_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    fake_async_fail_attach(f->ac, REDTLS_E_STATE);
    assert_int_equal(redtls_async_attach_libevent(f->ac, f->base), REDTLS_E_STATE);
    assert_false(fake_async_attached(f->ac));
    assert_int_equal(fake_counts.detaches, 0);
}

/* The state and its two events: each allocation failing in turn. */
static void test_attach_nomem(void **state)
{
    struct fixture *f = *state;
    if (!alloc_failures_work())
        skip();
    for (long n = 1;; n++) {
        lab_alloc_arm(n);
        redtls_status st = redtls_async_attach_libevent(f->ac, f->base);
        long calls = lab_alloc_calls();
        long live = lab_alloc_live();
        lab_alloc_disarm();
        if (n > calls) {
            assert_int_equal(st, REDTLS_OK);
            assert_true(n > 2);
            break;
        }
        assert_int_equal(st, REDTLS_E_NOMEM);
        assert_false(fake_async_attached(f->ac));
        assert_int_equal(live, 0);
    }
}

static void test_readable(void **state)
{
    struct fixture *f = *state;
    attach(f);
    fake_async_watch(f->ac, f->sp[0], REDTLS_ASYNC_READ);
    run_until(f, 1, 20);
    assert_int_equal(fake_counts.processes, 0);
    assert_int_equal(write(f->sp[1], "x", 1), 1);
    run_until(f, 1, 2000);
    assert_int_equal(fake_counts.processes, 1);
    assert_int_equal(fake_counts.last_events, REDTLS_ASYNC_READ);
}

static void test_writable_then_none(void **state)
{
    struct fixture *f = *state;
    attach(f);
    fake_async_watch(f->ac, f->sp[0], REDTLS_ASYNC_READ | REDTLS_ASYNC_WRITE);
    run_until(f, 1, 2000);
    assert_int_equal(fake_counts.last_events, REDTLS_ASYNC_WRITE);
    fake_async_watch(f->ac, f->sp[0], 0);
    int seen = fake_counts.processes;
    run_until(f, seen + 1, 20);
    assert_int_equal(fake_counts.processes, seen);
    fake_async_watch(f->ac, f->sp[0], REDTLS_ASYNC_WRITE);
    run_until(f, seen + 1, 2000);
    assert_int_equal(fake_counts.processes, seen + 1);
}

static void test_descriptor_change(void **state)
{
    struct fixture *f = *state;
    int other[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, other), 0);
    attach(f);
    fake_async_watch(f->ac, f->sp[0], REDTLS_ASYNC_READ);
    fake_async_watch(f->ac, other[0], REDTLS_ASYNC_READ);
    assert_int_equal(write(f->sp[1], "x", 1), 1);
    run_until(f, 1, 20);
    assert_int_equal(fake_counts.processes, 0);
    assert_int_equal(write(other[1], "x", 1), 1);
    run_until(f, 1, 2000);
    assert_int_equal(fake_counts.processes, 1);
    fake_async_watch(f->ac, -1, 0);
    close(other[0]);
    close(other[1]);
}

static void test_same_number_after_minus_one(void **state)
{
    struct fixture *f = *state;
    int old = f->sp[0], again[2];
    attach(f);
    fake_async_watch(f->ac, old, REDTLS_ASYNC_READ);
    event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    fake_async_watch(f->ac, -1, 0);
    close(old);
    close(f->sp[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, again), 0);
    f->sp[0] = again[0];
    f->sp[1] = again[1];
    if (again[0] != old)
        skip();
    fake_async_watch(f->ac, again[0], REDTLS_ASYNC_READ);
    assert_int_equal(write(again[1], "x", 1), 1);
    run_until(f, 1, 2000);
    assert_int_equal(fake_counts.processes, 1);
}

static long long now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void test_timer(void **state)
{
    struct fixture *f = *state;
    attach(f);
    long long start = now_ms();
    fake_async_timer(f->ac, 1000);
    fake_async_timer(f->ac, 30); /* replaces the first */
    run_until(f, 1, 2000);
    assert_int_equal(fake_counts.processes, 1);
    assert_int_equal(fake_counts.last_events, 0);
    /* libevent reads a coarse monotonic clock (a few ms per tick). */
    long long took = now_ms() - start;
    assert_true(took >= 20 && took < 1000);
    run_until(f, 2, 1100);
    assert_int_equal(fake_counts.processes, 1);
}

static void test_timer_cancel(void **state)
{
    struct fixture *f = *state;
    attach(f);
    fake_async_timer(f->ac, 10);
    fake_async_timer(f->ac, -1);
    run_until(f, 1, 60);
    assert_int_equal(fake_counts.processes, 0);
}

static void free_handle(redtls_async *ac, int events, void *arg)
{
    struct fixture *f = arg;
    (void)events;
    redtls_async_free(ac);
    f->ac = NULL;
}

/* The descriptor is writable and the timer due in the same pass: whichever
 * comes first frees the handle, and the other must not fire on it. */
static void test_free_from_callback_with_both_due(void **state)
{
    struct fixture *f = *state;
    attach(f);
    fake_async_on_process(f->ac, free_handle, f);
    fake_async_watch(f->ac, f->sp[0], REDTLS_ASYNC_WRITE);
    fake_async_timer(f->ac, 0);
    poll(NULL, 0, 2);
    assert_int_equal(event_base_dispatch(f->base), 1); /* no events left */
    assert_null(f->ac);
    assert_int_equal(fake_counts.processes, 1);
    assert_int_equal(fake_counts.detaches, 1);
    assert_int_equal(fake_counts.frees, 1);
}

static void test_free_from_timer_callback(void **state)
{
    struct fixture *f = *state;
    attach(f);
    fake_async_on_process(f->ac, free_handle, f);
    fake_async_watch(f->ac, f->sp[0], REDTLS_ASYNC_READ);
    fake_async_timer(f->ac, 5);
    assert_int_equal(event_base_dispatch(f->base), 1);
    assert_null(f->ac);
    assert_int_equal(fake_counts.processes, 1);
    assert_int_equal(fake_counts.last_events, 0);
    assert_int_equal(fake_counts.frees, 1);
}

static void test_free_outside_callbacks(void **state)
{
    struct fixture *f = *state;
    attach(f);
    fake_async_watch(f->ac, f->sp[0], REDTLS_ASYNC_READ);
    fake_async_timer(f->ac, 10000);
    redtls_async_free(f->ac);
    f->ac = NULL;
    assert_int_equal(fake_counts.detaches, 1);
    assert_int_equal(event_base_dispatch(f->base), 1);
}

struct nested {
    struct fixture *f;
    int calls;
};

/* Hooks called from inside the call (the core's new wants), then the
 * handle freed: the adapter's state survives until the callback returns. */
static void watch_then_free(redtls_async *ac, int events, void *arg)
{
    struct nested *n = arg;
    (void)events;
    n->calls++;
    fake_async_watch(ac, n->f->sp[0], REDTLS_ASYNC_READ);
    fake_async_timer(ac, 1);
    redtls_async_free(ac);
    n->f->ac = NULL;
}

static void test_hooks_then_free_inside_callback(void **state)
{
    struct fixture *f = *state;
    struct nested n = {f, 0};
    attach(f);
    fake_async_on_process(f->ac, watch_then_free, &n);
    fake_async_watch(f->ac, f->sp[0], REDTLS_ASYNC_WRITE);
    assert_int_equal(event_base_dispatch(f->base), 1);
    assert_int_equal(n.calls, 1);
}

static void test_attach_again(void **state)
{
    struct fixture *f = *state;
    attach(f);
    fake_async_watch(f->ac, f->sp[0], REDTLS_ASYNC_WRITE);
    attach(f);
    assert_int_equal(fake_counts.detaches, 1);
    run_until(f, 1, 20);
    assert_int_equal(fake_counts.processes, 0);
    fake_async_watch(f->ac, f->sp[0], REDTLS_ASYNC_WRITE);
    run_until(f, 1, 2000);
    assert_int_equal(fake_counts.processes, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_attach_refuses_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_failure_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_nomem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writable_then_none, setup, teardown),
        cmocka_unit_test_setup_teardown(test_descriptor_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_number_after_minus_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_callback_with_both_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_timer_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_outside_callbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hooks_then_free_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_again, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

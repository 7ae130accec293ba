/* include/redtls/async_libevent.h over a stand-in core (fake_async.c): the
 * hooks against a real event_base and socket pairs, freeing the handle from
 * inside its callbacks, descriptor changes, allocation failures. The cases
 * that do not depend on the loop are in adapter_cases.c. */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include <cmocka.h>

#include <redtls/async_libevent.h>

#include "adapter_cases.h"
#include "adapter_cluster_cases.h"
#include "fake_async.h"
#include "lab_allochook.h"

static void *loop_new(void)
{
    return event_base_new();
}

/* A pass of the loop says 1 when it has no events. */
static void loop_free(void *loop)
{
    assert_int_equal(event_base_loop(loop, EVLOOP_ONCE | EVLOOP_NONBLOCK), 1);
    event_base_free(loop);
}

static redtls_status loop_attach(redtls_async *ac, void *loop)
{
    return redtls_async_attach_libevent(ac, loop);
}

static redtls_status loop_attach_cluster(redtls_async_cluster *acl, void *loop)
{
    return redtls_async_cluster_attach_libevent(acl, loop);
}

static void loop_pass(void *loop)
{
    event_base_loop(loop, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static int loop_run(void *loop)
{
    return event_base_dispatch(loop) == 1; /* 1: no events left */
}

static long long loop_now_ms(void *loop)
{
    struct timeval tv;
    (void)loop;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* libevent reads a coarse monotonic clock (a few ms per tick). */
const struct adapter_loop adapter_loop = {loop_new, loop_free, loop_attach, loop_pass, loop_run, loop_now_ms, 10,
                                          loop_attach_cluster};

/* The state and its two events: each allocation failing in turn. */
static void test_attach_nomem(void **state)
{
    struct fixture *f = *state;
    if (!alloc_failures_work())
        skip();
    for (long n = 1;; n++) {
        lab_alloc_arm(n);
        redtls_status st = redtls_async_attach_libevent(f->ac, f->loop);
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
    assert_int_equal(event_base_dispatch(f->loop), 1); /* no events left */
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
    assert_int_equal(event_base_dispatch(f->loop), 1);
    assert_null(f->ac);
    assert_int_equal(fake_counts.processes, 1);
    assert_int_equal(fake_counts.last_events, 0);
    assert_int_equal(fake_counts.frees, 1);
}

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
    assert_int_equal(event_base_dispatch(f->loop), 1);
    assert_int_equal(n.calls, 1);
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
        cmocka_unit_test_setup_teardown(test_cluster_attach_refuses_null, cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_cluster_attach_failure_leaves_nothing, cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_cluster_attach_nomem, cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_cluster_nodes_attached, cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_cluster_node_attach_nomem, cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_cluster_timer, cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_cluster_timer_cancel, cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_cluster_free_from_timer, cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_cluster_free_from_node_callback, cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_cluster_hooks_then_free_inside_timer, cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_cluster_free_outside_callbacks, cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_cluster_attach_again, cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_cluster_attach_null, cluster_setup, cluster_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

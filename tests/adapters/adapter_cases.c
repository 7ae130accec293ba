/* The cases every adapter must pass whatever its loop; see
 * adapter_cases.h. */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "adapter_cases.h"
#include "fake_async.h"
#include "lab_allochook.h"

static struct fixture fixture; /* one test at a time */

int setup(void **state)
{
    struct fixture *f = &fixture;
    memset(f, 0, sizeof(*f));
    if ((f->loop = adapter_loop.new_loop()) == NULL)
        return -1;
    f->ac = fake_async_new();
    if (f->ac == NULL || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, f->sp) != 0)
        return -1;
    fake_async_reset_counts();
    *state = f;
    return 0;
}

/* Every test ends here: once the handle is freed, nothing of the adapter
 * may be left in the loop (adapter_loop.free_loop asserts it). */
int teardown(void **state)
{
    struct fixture *f = *state;
    redtls_async_free(f->ac);
    adapter_loop.free_loop(f->loop);
    if (f->sp[0] >= 0)
        close(f->sp[0]);
    close(f->sp[1]);
    return 0;
}

void run_until(struct fixture *f, int want, int ms)
{
    for (int i = 0; i < ms && fake_counts.processes < want; i++) {
        adapter_loop.pass(f->loop);
        if (fake_counts.processes < want)
            poll(NULL, 0, 1);
    }
}

int alloc_failures_work(void)
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

void attach(struct fixture *f)
{
    assert_int_equal(adapter_loop.attach(f->ac, f->loop), REDTLS_OK);
    assert_true(fake_async_attached(f->ac));
}

void test_attach_refuses_null(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(adapter_loop.attach(NULL, f->loop), REDTLS_E_INVALID);
    assert_int_equal(adapter_loop.attach(f->ac, NULL), REDTLS_E_INVALID);
    assert_false(fake_async_attached(f->ac));
}

/* The core's refusal is returned, and what the adapter made is released. */
void test_attach_failure_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    fake_async_fail_attach(f->ac, REDTLS_E_STATE);
    assert_int_equal(adapter_loop.attach(f->ac, f->loop), REDTLS_E_STATE);
    assert_false(fake_async_attached(f->ac));
    assert_int_equal(fake_counts.detaches, 0);
}

void test_readable(void **state)
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

/* Interest changes on the same descriptor; 0 stops it. */
void test_writable_then_none(void **state)
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

/* A new descriptor replaces the old one: the old one is not watched. */
void test_descriptor_change(void **state)
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

/* The core says -1 before it closes a descriptor; a new socket that gets
 * the same number is then watched as new. */
void test_same_number_after_minus_one(void **state)
{
    struct fixture *f = *state;
    int old = f->sp[0], again[2];
    attach(f);
    fake_async_watch(f->ac, old, REDTLS_ASYNC_READ);
    adapter_loop.pass(f->loop);
    fake_async_watch(f->ac, -1, 0);
    close(old);
    close(f->sp[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, again), 0);
    f->sp[0] = again[0]; /* teardown closes the new pair */
    f->sp[1] = again[1];
    if (again[0] != old) /* the lowest free number: only fails with threads opening files */
        skip();
    fake_async_watch(f->ac, again[0], REDTLS_ASYNC_READ);
    assert_int_equal(write(again[1], "x", 1), 1);
    run_until(f, 1, 2000);
    assert_int_equal(fake_counts.processes, 1);
}

void test_timer(void **state)
{
    struct fixture *f = *state;
    attach(f);
    long long start = adapter_loop.now_ms(f->loop);
    fake_async_timer(f->ac, 1000);
    fake_async_timer(f->ac, 30); /* replaces the first */
    run_until(f, 1, 2000);
    assert_int_equal(fake_counts.processes, 1);
    assert_int_equal(fake_counts.last_events, 0);
    long long took = adapter_loop.now_ms(f->loop) - start;
    assert_true(took >= 30 - adapter_loop.clock_tick_ms && took < 1000);
    run_until(f, 2, 1100);
    assert_int_equal(fake_counts.processes, 1); /* one shot */
}

void test_timer_cancel(void **state)
{
    struct fixture *f = *state;
    attach(f);
    fake_async_timer(f->ac, 10);
    fake_async_timer(f->ac, -1);
    run_until(f, 1, 60);
    assert_int_equal(fake_counts.processes, 0);
}

void free_handle(redtls_async *ac, int events, void *arg)
{
    struct fixture *f = arg;
    (void)events;
    redtls_async_free(ac);
    f->ac = NULL;
}

/* Freed outside any callback, with the descriptor watched and the timer
 * armed: the loop has nothing left to do. */
void test_free_outside_callbacks(void **state)
{
    struct fixture *f = *state;
    attach(f);
    fake_async_watch(f->ac, f->sp[0], REDTLS_ASYNC_READ);
    fake_async_timer(f->ac, 10000);
    redtls_async_free(f->ac);
    f->ac = NULL;
    assert_int_equal(fake_counts.detaches, 1);
    assert_true(adapter_loop.run(f->loop));
}

/* Attaching again detaches the first adapter; only the second one calls. */
void test_attach_again(void **state)
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

/* include/redtls/async_libuv.h over a stand-in core (fake_async.c): the
 * hooks against a real uv loop and real sockets, freeing the handle from
 * inside its callbacks, socket errors, descriptor changes, allocation
 * failures. No network: socket pairs, and one refused loopback connect.
 * The cases that do not depend on the loop are in adapter_cases.c. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <redtls/async_libuv.h>

#include "adapter_cases.h"
#include "adapter_cluster_cases.h"
#include "fake_async.h"
#include "lab_allochook.h"

static uv_loop_t uv_loop; /* one test at a time */

static void *loop_new(void)
{
    return uv_loop_init(&uv_loop) == 0 ? &uv_loop : NULL;
}

/* What the adapter made must be closed once the handle is freed and the
 * loop has run, or uv_loop_close says UV_EBUSY. */
static void loop_free(void *loop)
{
    uv_run(loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static redtls_status loop_attach(redtls_async *ac, void *loop)
{
    return redtls_async_attach_libuv(ac, loop);
}

static redtls_status loop_attach_cluster(redtls_async_cluster *acl, void *loop)
{
    return redtls_async_cluster_attach_libuv(acl, loop);
}

static void loop_pass(void *loop)
{
    uv_run(loop, UV_RUN_NOWAIT);
}

static int loop_run(void *loop)
{
    return uv_run(loop, UV_RUN_DEFAULT) == 0; /* 0: no active handles left */
}

static long long loop_now_ms(void *loop)
{
    uv_update_time(loop);
    return (long long)uv_now(loop);
}

const struct adapter_loop adapter_loop = {loop_new, loop_free, loop_attach, loop_pass, loop_run, loop_now_ms, 0,
                                          loop_attach_cluster};

static void test_attach_nomem(void **state)
{
    struct fixture *f = *state;
    if (!alloc_failures_work())
        skip();
    lab_alloc_arm(1);
    redtls_status st = redtls_async_attach_libuv(f->ac, f->loop);
    lab_alloc_disarm();
    assert_int_equal(st, REDTLS_E_NOMEM);
    assert_false(fake_async_attached(f->ac));
    assert_int_equal(lab_alloc_live(), 0);
}

/* A user callback frees the handle from inside redtls_async_process: the
 * adapter must not touch it after, and uv_run ends by itself, the timer
 * that was still armed never firing. */
static void test_free_from_io_callback(void **state)
{
    struct fixture *f = *state;
    attach(f);
    fake_async_on_process(f->ac, free_handle, f);
    fake_async_watch(f->ac, f->sp[0], REDTLS_ASYNC_WRITE);
    fake_async_timer(f->ac, 50);
    assert_int_equal(uv_run(f->loop, UV_RUN_DEFAULT), 0);
    assert_null(f->ac);
    assert_int_equal(fake_counts.processes, 1);
    assert_int_equal(fake_counts.last_events, REDTLS_ASYNC_WRITE);
    assert_int_equal(fake_counts.detaches, 1);
    assert_int_equal(fake_counts.frees, 1);
}

/* libuv runs due timers before polling: the descriptor, writable in the
 * same pass, must not be reported for the handle the timer's call freed. */
static void test_free_from_timer_callback(void **state)
{
    struct fixture *f = *state;
    attach(f);
    fake_async_on_process(f->ac, free_handle, f);
    fake_async_watch(f->ac, f->sp[0], REDTLS_ASYNC_WRITE);
    fake_async_timer(f->ac, 0);
    assert_int_equal(uv_run(f->loop, UV_RUN_DEFAULT), 0);
    assert_null(f->ac);
    assert_int_equal(fake_counts.processes, 1);
    assert_int_equal(fake_counts.last_events, 0); /* the timer's call */
    assert_int_equal(fake_counts.frees, 1);
}

/* Hooks called from inside the call (the core's new wants), then the
 * handle freed: the adapter's state survives until the callback returns. */
static void watch_then_free(redtls_async *ac, int events, void *arg)
{
    struct nested *n = arg;
    int other[2];
    (void)events;
    n->calls++;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, other), 0);
    fake_async_watch(ac, other[0], REDTLS_ASYNC_READ); /* a new poll handle */
    fake_async_timer(ac, 1);
    redtls_async_free(ac);
    n->f->ac = NULL;
    close(other[0]);
    close(other[1]);
}

static void test_hooks_then_free_inside_callback(void **state)
{
    struct fixture *f = *state;
    struct nested n = {f, 0};
    attach(f);
    fake_async_on_process(f->ac, watch_then_free, &n);
    fake_async_watch(f->ac, f->sp[0], REDTLS_ASYNC_WRITE);
    assert_int_equal(uv_run(f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(n.calls, 1);
}

/* A descriptor that cannot be watched (no memory for its poll handle) is
 * reported (-1), and watched when asked again. */
static void test_watch_nomem_retried(void **state)
{
    struct fixture *f = *state;
    if (!alloc_failures_work())
        skip();
    attach(f);
    lab_alloc_arm(1);
    assert_int_equal(fake_async_watch(f->ac, f->sp[0], REDTLS_ASYNC_WRITE), -1);
    lab_alloc_disarm();
    assert_int_equal(lab_alloc_calls(), 1);
    run_until(f, 1, 20);
    assert_int_equal(fake_counts.processes, 0);
    assert_int_equal(fake_async_watch(f->ac, f->sp[0], REDTLS_ASYNC_WRITE), 0);
    run_until(f, 1, 2000);
    assert_int_equal(fake_counts.processes, 1);
}

struct refused {
    int calls;
    int rewatch; /* on the second call, ask for READ instead */
    int fd;
};

static void on_refused(redtls_async *ac, int events, void *arg)
{
    struct refused *r = arg;
    (void)events;
    if (++r->calls == 2 && r->rewatch)
        fake_async_watch(ac, r->fd, REDTLS_ASYNC_READ);
    if (r->calls == 3)
        fake_async_watch(ac, -1, 0);
}

/* A socket whose connect was refused. */
static int refused_socket(void)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int s;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sin, &len), 0);
    close(l); /* nothing listens on that port now */
    s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(s >= 0);
    if (connect(s, (struct sockaddr *)&sin, sizeof(sin)) == 0 || (errno != EINPROGRESS && errno != ECONNREFUSED))
        fail_msg("connect to a closed loopback port: %s", strerror(errno));
    return s;
}

/* libuv stops a poll handle on a socket error and says so once. The core
 * sees it (the events it waited for), and if it asks for nothing new, the
 * adapter polls again: without that, a core that only tells the hooks
 * about changes would wait forever. */
static void test_socket_error_polls_again(void **state)
{
    struct fixture *f = *state;
    struct refused r = {0, 0, refused_socket()};
    attach(f);
    fake_async_on_process(f->ac, on_refused, &r);
    fake_async_watch(f->ac, r.fd, REDTLS_ASYNC_WRITE);
    run_until(f, 3, 2000);
    assert_int_equal(r.calls, 3);
    assert_int_equal(fake_counts.last_events, REDTLS_ASYNC_WRITE);
    run_until(f, 4, 20);
    assert_int_equal(r.calls, 3); /* watch(-1) on the third stopped it */
    close(r.fd);
}

/* ... but what the core asks for during that call wins. */
static void test_socket_error_core_choice_wins(void **state)
{
    struct fixture *f = *state;
    struct refused r = {0, 1, refused_socket()};
    attach(f);
    fake_async_on_process(f->ac, on_refused, &r);
    fake_async_watch(f->ac, r.fd, REDTLS_ASYNC_WRITE);
    run_until(f, 3, 2000);
    assert_int_equal(r.calls, 3);
    /* The third call came from READ interest, the core's choice. */
    assert_int_equal(fake_counts.last_events, REDTLS_ASYNC_READ);
    close(r.fd);
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
        cmocka_unit_test_setup_teardown(test_free_from_io_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_timer_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_outside_callbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hooks_then_free_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_nomem_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_error_polls_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_error_core_choice_wins, setup, teardown),
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

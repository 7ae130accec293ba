/* The cluster adapters' cases, whatever the loop; see
 * adapter_cluster_cases.h. */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "adapter_cases.h"
#include "adapter_cluster_cases.h"
#include "fake_async.h"
#include "fake_async_cluster.h"
#include "lab_allochook.h"

static struct cluster_fixture cluster_fixture; /* one test at a time */

int cluster_setup(void **state)
{
    struct cluster_fixture *f = &cluster_fixture;
    memset(f, 0, sizeof(*f));
    if ((f->loop = adapter_loop.new_loop()) == NULL)
        return -1;
    f->acl = fake_cluster_new();
    if (f->acl == NULL || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, f->sp) != 0)
        return -1;
    fake_async_reset_counts();
    fake_cluster_reset_counts();
    *state = f;
    return 0;
}

int cluster_teardown(void **state)
{
    struct cluster_fixture *f = *state;
    redtls_async_cluster_free(f->acl);
    adapter_loop.free_loop(f->loop);
    close(f->sp[0]);
    close(f->sp[1]);
    return 0;
}

/* Turns the loop without blocking until *counter reaches want, or ms have
 * passed. */
static void run_until_count(struct cluster_fixture *f, const int *counter, int want, int ms)
{
    for (int i = 0; i < ms && *counter < want; i++) {
        adapter_loop.pass(f->loop);
        if (*counter < want)
            poll(NULL, 0, 1);
    }
}

static void attach_cluster(struct cluster_fixture *f)
{
    assert_int_equal(adapter_loop.attach_cluster(f->acl, f->loop), REDTLS_OK);
    assert_true(fake_cluster_attached(f->acl));
}

/* A node connection of f's handle, attached by the adapter when the handle
 * is. */
static redtls_async *add_node(struct cluster_fixture *f)
{
    redtls_status st = REDTLS_E_STATE;
    redtls_async *node = fake_cluster_add_node(f->acl, &st);
    assert_non_null(node);
    assert_int_equal(st, REDTLS_OK);
    return node;
}

void test_cluster_attach_refuses_null(void **state)
{
    struct cluster_fixture *f = *state;
    assert_int_equal(adapter_loop.attach_cluster(NULL, f->loop), REDTLS_E_INVALID);
    assert_int_equal(adapter_loop.attach_cluster(f->acl, NULL), REDTLS_E_INVALID);
    assert_false(fake_cluster_attached(f->acl));
}

/* The core's refusal is returned, no hook is called, and what the adapter
 * made is released (teardown's free_loop finds nothing left). */
void test_cluster_attach_failure_leaves_nothing(void **state)
{
    struct cluster_fixture *f = *state;
    redtls_async *node = add_node(f);
    fake_cluster_fail_attach(f->acl, REDTLS_E_STATE);
    assert_int_equal(adapter_loop.attach_cluster(f->acl, f->loop), REDTLS_E_STATE);
    assert_false(fake_cluster_attached(f->acl));
    assert_false(fake_async_attached(node));
    assert_int_equal(fake_cluster_counts.attach_nodes, 0);
    assert_int_equal(fake_cluster_counts.detaches, 0);
}

/* Each allocation failing in turn, the adapter's and those for the node
 * connection the handle already has: REDTLS_E_NOMEM, and once the loop has
 * turned, nothing left; the core, which keeps hooks that refused a node,
 * has none. */
void test_cluster_attach_nomem(void **state)
{
    struct cluster_fixture *f = *state;
    redtls_async *node = add_node(f);
    long n;
    if (!alloc_failures_work())
        skip();
    for (n = 1;; n++) {
        lab_alloc_arm(n);
        redtls_status st = adapter_loop.attach_cluster(f->acl, f->loop);
        long calls = lab_alloc_calls();
        if (n > calls) {
            lab_alloc_disarm();
            assert_int_equal(st, REDTLS_OK);
            break;
        }
        /* libuv closes its timers with uv_close: their memory goes in the
         * next turn of the loop. */
        adapter_loop.pass(f->loop);
        long live = lab_alloc_live();
        lab_alloc_disarm();
        assert_int_equal(st, REDTLS_E_NOMEM);
        assert_false(fake_cluster_attached(f->acl));
        assert_false(fake_async_attached(node));
        assert_int_equal(live, 0);
    }
    assert_true(n > 2); /* the adapter's and the node's */
    assert_true(fake_cluster_attached(f->acl));
    assert_true(fake_async_attached(node));
}

/* Node connections made before the handle is attached are attached with
 * it, those made later when they are made; the loop drives each. */
void test_cluster_nodes_attached(void **state)
{
    struct cluster_fixture *f = *state;
    int other[2];
    redtls_async *before = add_node(f), *after;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, other), 0);
    attach_cluster(f);
    assert_int_equal(fake_cluster_counts.attach_nodes, 1);
    assert_true(fake_async_attached(before));
    after = add_node(f);
    assert_int_equal(fake_cluster_counts.attach_nodes, 2);
    assert_true(fake_async_attached(after));

    fake_async_watch(before, f->sp[0], REDTLS_ASYNC_READ);
    fake_async_watch(after, other[0], REDTLS_ASYNC_READ);
    run_until_count(f, &fake_counts.processes, 1, 20);
    assert_int_equal(fake_counts.processes, 0);
    assert_int_equal(write(f->sp[1], "x", 1), 1);
    run_until_count(f, &fake_counts.processes, 1, 2000);
    assert_int_equal(fake_counts.processes, 1);
    assert_int_equal(fake_counts.last_events, REDTLS_ASYNC_READ);
    fake_async_watch(before, -1, 0); /* sp[0] stays readable */
    assert_int_equal(write(other[1], "x", 1), 1);
    run_until_count(f, &fake_counts.processes, 2, 2000);
    assert_int_equal(fake_counts.processes, 2);
    fake_async_watch(after, -1, 0);
    assert_int_equal(fake_cluster_counts.processes, 0); /* node readiness is not the handle's timer */
    close(other[0]);
    close(other[1]);
}

/* The node adapter's allocation fails: attach_node says REDTLS_E_NOMEM, the
 * node is left unattached, and the next node is attached as usual. */
void test_cluster_node_attach_nomem(void **state)
{
    struct cluster_fixture *f = *state;
    redtls_status st = REDTLS_OK;
    redtls_async *node;
    long live;

    if (!alloc_failures_work())
        skip();
    attach_cluster(f);
    /* The fake's own node is made before the hook runs: fail the second
     * allocation, the adapter's first. */
    lab_alloc_arm(2);
    node = fake_cluster_add_node(f->acl, &st);
    live = lab_alloc_live();
    lab_alloc_disarm();
    assert_non_null(node);
    assert_int_equal(st, REDTLS_E_NOMEM);
    assert_false(fake_async_attached(node));
    assert_int_equal(live, 1); /* the fake node alone */
    adapter_loop.pass(f->loop);
    node = add_node(f);
    assert_true(fake_async_attached(node));
}

void test_cluster_timer(void **state)
{
    struct cluster_fixture *f = *state;
    attach_cluster(f);
    long long start = adapter_loop.now_ms(f->loop);
    fake_cluster_timer(f->acl, 1000);
    fake_cluster_timer(f->acl, 30); /* replaces the first */
    run_until_count(f, &fake_cluster_counts.processes, 1, 2000);
    assert_int_equal(fake_cluster_counts.processes, 1);
    long long took = adapter_loop.now_ms(f->loop) - start;
    assert_true(took >= 30 - adapter_loop.clock_tick_ms && took < 1000);
    run_until_count(f, &fake_cluster_counts.processes, 2, 1100);
    assert_int_equal(fake_cluster_counts.processes, 1); /* one shot */
    fake_cluster_timer(f->acl, 0);
    run_until_count(f, &fake_cluster_counts.processes, 2, 2000);
    assert_int_equal(fake_cluster_counts.processes, 2);
    assert_int_equal(fake_counts.processes, 0); /* no node was called */
}

void test_cluster_timer_cancel(void **state)
{
    struct cluster_fixture *f = *state;
    attach_cluster(f);
    fake_cluster_timer(f->acl, 10);
    fake_cluster_timer(f->acl, -1);
    run_until_count(f, &fake_cluster_counts.processes, 1, 60);
    assert_int_equal(fake_cluster_counts.processes, 0);
}

static void free_cluster(redtls_async_cluster *acl, void *arg)
{
    struct cluster_fixture *f = arg;
    redtls_async_cluster_free(acl);
    f->acl = NULL;
}

/* The handle's timer call frees it, node connections and all: the node
 * that is writable in the same pass is not called, and the loop, with
 * nothing left, returns by itself. */
void test_cluster_free_from_timer(void **state)
{
    struct cluster_fixture *f = *state;
    redtls_async *node = add_node(f);
    attach_cluster(f);
    fake_cluster_on_process(f->acl, free_cluster, f);
    fake_async_watch(node, f->sp[0], REDTLS_ASYNC_WRITE);
    fake_async_timer(node, 10000);
    fake_cluster_timer(f->acl, 0);
    assert_true(adapter_loop.run(f->loop));
    assert_null(f->acl);
    assert_int_equal(fake_cluster_counts.processes, 1);
    assert_int_equal(fake_cluster_counts.detaches, 1);
    assert_int_equal(fake_cluster_counts.frees, 1);
    assert_int_equal(fake_counts.frees, 1);
}

struct node_frees {
    struct cluster_fixture *f;
    int calls;
};

/* A reply callback on a node connection frees the whole handle: the node
 * (inside its own redtls_async_process) and the handle's timer go. */
static void node_frees_cluster(redtls_async *ac, int events, void *arg)
{
    struct node_frees *n = arg;
    (void)ac;
    (void)events;
    n->calls++;
    redtls_async_cluster_free(n->f->acl);
    n->f->acl = NULL;
}

void test_cluster_free_from_node_callback(void **state)
{
    struct cluster_fixture *f = *state;
    struct node_frees n = {f, 0};
    redtls_async *node;
    attach_cluster(f);
    node = add_node(f);
    fake_async_on_process(node, node_frees_cluster, &n);
    fake_async_watch(node, f->sp[0], REDTLS_ASYNC_WRITE);
    fake_cluster_timer(f->acl, 50);
    assert_true(adapter_loop.run(f->loop));
    assert_null(f->acl);
    assert_int_equal(n.calls, 1);
    assert_int_equal(fake_cluster_counts.processes, 0); /* the timer never fired */
    assert_int_equal(fake_cluster_counts.frees, 1);
    assert_int_equal(fake_counts.frees, 1);
}

/* Inside the handle's timer call: the timer set again, a node connection
 * made (attach_node from inside the call) and watched, then the handle
 * freed. Nothing made during the call outlives it. */
static void hooks_then_free(redtls_async_cluster *acl, void *arg)
{
    struct cluster_fixture *f = arg;
    redtls_status st = REDTLS_E_STATE;
    redtls_async *node = fake_cluster_add_node(acl, &st);
    assert_non_null(node);
    assert_int_equal(st, REDTLS_OK);
    fake_async_watch(node, f->sp[0], REDTLS_ASYNC_WRITE);
    fake_async_timer(node, 1);
    fake_cluster_timer(acl, 1);
    redtls_async_cluster_free(acl);
    f->acl = NULL;
}

void test_cluster_hooks_then_free_inside_timer(void **state)
{
    struct cluster_fixture *f = *state;
    attach_cluster(f);
    fake_cluster_on_process(f->acl, hooks_then_free, f);
    fake_cluster_timer(f->acl, 0);
    assert_true(adapter_loop.run(f->loop));
    assert_null(f->acl);
    assert_int_equal(fake_cluster_counts.processes, 1);
    assert_int_equal(fake_cluster_counts.attach_nodes, 1);
    assert_int_equal(fake_counts.processes, 0);
    assert_int_equal(fake_counts.frees, 1);
}

/* Freed outside any callback, nodes watched and both kinds of timer
 * armed: the loop has nothing left to do. */
void test_cluster_free_outside_callbacks(void **state)
{
    struct cluster_fixture *f = *state;
    redtls_async *node = add_node(f);
    attach_cluster(f);
    fake_async_watch(node, f->sp[0], REDTLS_ASYNC_READ);
    fake_async_timer(node, 10000);
    fake_cluster_timer(f->acl, 10000);
    redtls_async_cluster_free(f->acl);
    f->acl = NULL;
    assert_int_equal(fake_cluster_counts.detaches, 1);
    assert_int_equal(fake_counts.detaches, 1);
    assert_true(adapter_loop.run(f->loop));
}

/* Attaching again detaches the first adapter (its armed timer never
 * fires) and attaches the node connections anew (their first adapters
 * detached); only the second one calls. */
void test_cluster_attach_again(void **state)
{
    struct cluster_fixture *f = *state;
    redtls_async *node = add_node(f);
    attach_cluster(f);
    fake_cluster_timer(f->acl, 5);
    attach_cluster(f);
    assert_int_equal(fake_cluster_counts.detaches, 1);
    assert_int_equal(fake_cluster_counts.attach_nodes, 2);
    assert_int_equal(fake_counts.detaches, 1);
    assert_true(fake_async_attached(node));
    run_until_count(f, &fake_cluster_counts.processes, 1, 40);
    assert_int_equal(fake_cluster_counts.processes, 0);
    fake_cluster_timer(f->acl, 5);
    run_until_count(f, &fake_cluster_counts.processes, 1, 2000);
    assert_int_equal(fake_cluster_counts.processes, 1);
    fake_async_watch(node, f->sp[0], REDTLS_ASYNC_WRITE);
    run_until_count(f, &fake_counts.processes, 1, 2000);
    assert_int_equal(fake_counts.processes, 1);
}

/* NULL detaches the handle's timer; its node connections stay on the
 * loop. */
void test_cluster_attach_null(void **state)
{
    struct cluster_fixture *f = *state;
    redtls_async *node = add_node(f);
    attach_cluster(f);
    fake_cluster_timer(f->acl, 5);
    assert_int_equal(redtls_async_cluster_attach(f->acl, NULL), REDTLS_OK);
    assert_int_equal(fake_cluster_counts.detaches, 1);
    assert_false(fake_cluster_attached(f->acl));
    run_until_count(f, &fake_cluster_counts.processes, 1, 40);
    assert_int_equal(fake_cluster_counts.processes, 0);
    assert_true(fake_async_attached(node));
    fake_async_watch(node, f->sp[0], REDTLS_ASYNC_WRITE);
    run_until_count(f, &fake_counts.processes, 1, 2000);
    assert_int_equal(fake_counts.processes, 1);
}

/* redtls asynchronous API on a libuv loop (header-only).
 *
 *   redtls_async_attach_libuv(ac, loop);   then uv_run(loop, UV_RUN_DEFAULT)
 *   redtls_async_cluster_attach_libuv(acl, loop);   the same for a cluster
 *
 * Rules, beyond those of redtls/async.h and redtls/async_cluster.h:
 * Threads
 *   - The thread that runs the loop owns the handle: make every call on it
 *     there, including redtls_async_free() / redtls_async_cluster_free().
 * Lifetime
 *   - The adapter's uv handles are closed with uv_close() when the handle is
 *     freed (or attached elsewhere), and its memory is released by their
 *     close callbacks: run the loop once more (uv_run(loop, UV_RUN_NOWAIT)
 *     is enough) before uv_loop_close(), or that returns UV_EBUSY. Freeing
 *     the handle from one of its callbacks is fine: uv_run then returns by
 *     itself once the handles are closed, if nothing else keeps it going.
 *   - Attaching again (this adapter, another one, or NULL through
 *     redtls_async_attach) releases what this adapter made.
 *   - A cluster handle: each node connection it makes gets this adapter
 *     (redtls_async_attach_libuv), and the handle one uv timer of its own.
 *     All of them follow the rules above: freeing the cluster handle closes
 *     every one, released once the loop has run again. Attaching the
 *     cluster handle again (or NULL through redtls_async_cluster_attach)
 *     closes its timer; its node connections stay on this loop until they
 *     are attached elsewhere.
 * Building
 *   - <uv.h> needs POSIX types: compile in the compiler's default (GNU)
 *     mode, or with -D_POSIX_C_SOURCE=200809L under -std=c11.
 *   - CMake: target_link_libraries(app PRIVATE redtls::libuv), after
 *     add_subdirectory(redtls) or find_package(redtls COMPONENTS libuv).
 *   - pkg-config: cc app.c $(pkg-config --cflags --libs redtls-libuv).
 *   libredtls itself never links libuv: only programs that include this
 *   header do.
 */
#ifndef REDTLS_ASYNC_LIBUV_H
#define REDTLS_ASYNC_LIBUV_H

#include <stdint.h>
#include <stdlib.h>

#include <uv.h>

#include <redtls/async.h>
#include <redtls/async_cluster.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What the adapter keeps for one handle. It is freed by the timer's close
 * callback; a poll handle, one per descriptor, is its own allocation,
 * freed by its own close callback, because a descriptor can change while
 * the previous poll handle is still closing. */
struct redtls__libuv {
    redtls_async *ac;   /* NULL once detached */
    uv_loop_t *loop;
    uv_poll_t *poll;    /* on fd, or NULL */
    int fd;             /* -1: no poll handle */
    int events;         /* REDTLS_ASYNC_READ|WRITE poll is started with; 0: stopped */
    unsigned watches;   /* calls of the watch hook, to tell whether one came */
    uv_timer_t timer;   /* timer.data is this struct */
};

static inline void redtls__libuv_free_handle(uv_handle_t *h)
{
    free(h);
}

static inline void redtls__libuv_free_state(uv_handle_t *h)
{
    free(h->data);
}

static inline void redtls__libuv_close_poll(struct redtls__libuv *a)
{
    if (a->poll != NULL)
        uv_close((uv_handle_t *)a->poll, redtls__libuv_free_handle);
    a->poll = NULL;
    a->fd = -1;
    a->events = 0;
}

static inline int redtls__libuv_watch(void *data, int fd, int events);

/* A callback may free the handle during redtls_async_process(), and with it
 * detach this adapter: after the call, the handle is not used unless the
 * adapter is still attached. The adapter's own state stays allocated until
 * a close callback, which libuv runs later, never from inside this one. */
static inline void redtls__libuv_on_poll(uv_poll_t *p, int status, int uvevents)
{
    struct redtls__libuv *a = (struct redtls__libuv *)p->data;
    int events = 0;
    unsigned watches;

    if (a->ac == NULL)
        return;
    if (status >= 0) {
        if (uvevents & UV_READABLE)
            events |= REDTLS_ASYNC_READ;
        if (uvevents & UV_WRITABLE)
            events |= REDTLS_ASYNC_WRITE;
        (void)redtls_async_process(a->ac, events);
        return;
    }
    /* A socket error (a refused connect, a reset): libuv has stopped the
     * handle. The redtls handle finds the error itself by doing what it
     * waited to do. If it asks for nothing new meanwhile, it still wants
     * what it wanted, so polling starts again. */
    events = a->events;
    a->events = 0;
    watches = a->watches;
    (void)redtls_async_process(a->ac, events);
    if (a->ac != NULL && a->watches == watches && a->poll == p)
        redtls__libuv_watch(a, a->fd, events);
}

static inline void redtls__libuv_on_timer(uv_timer_t *t)
{
    struct redtls__libuv *a = (struct redtls__libuv *)t->data;

    if (a->ac != NULL)
        (void)redtls_async_process(a->ac, 0);
}

static inline int redtls__libuv_watch(void *data, int fd, int events)
{
    struct redtls__libuv *a = (struct redtls__libuv *)data;
    int uvevents = 0;

    if (a->ac == NULL)
        return 0;
    a->watches++;
    if (fd < 0)
        events = 0;
    if (fd != a->fd) {
        /* Closing stops polling at once, so a new poll handle on the
         * same descriptor number is allowed right after. */
        redtls__libuv_close_poll(a);
        if (fd < 0)
            return 0;
        a->poll = (uv_poll_t *)malloc(sizeof(*a->poll));
        if (a->poll == NULL)
            return -1;
        if (uv_poll_init(a->loop, a->poll, fd) != 0) {
            free(a->poll);
            a->poll = NULL;
            return -1;
        }
        a->poll->data = a;
        a->fd = fd;
    }
    if (events == a->events)
        return 0;
    if (events == 0) {
        uv_poll_stop(a->poll);
        a->events = 0;
        return 0;
    }
    if (events & REDTLS_ASYNC_READ)
        uvevents |= UV_READABLE;
    if (events & REDTLS_ASYNC_WRITE)
        uvevents |= UV_WRITABLE;
    if (uv_poll_start(a->poll, uvevents, redtls__libuv_on_poll) != 0)
        return -1;
    a->events = events;
    return 0;
}

static inline void redtls__libuv_timer(void *data, int ms)
{
    struct redtls__libuv *a = (struct redtls__libuv *)data;

    if (a->ac == NULL)
        return;
    if (ms < 0)
        uv_timer_stop(&a->timer);
    else
        (void)uv_timer_start(&a->timer, redtls__libuv_on_timer, (uint64_t)ms, 0);
}

static inline void redtls__libuv_detach(void *data)
{
    struct redtls__libuv *a = (struct redtls__libuv *)data;

    a->ac = NULL;
    redtls__libuv_close_poll(a);
    uv_close((uv_handle_t *)&a->timer, redtls__libuv_free_state);
}

/* Drives ac from loop: watches its descriptor and runs its timer, calling
 * redtls_async_process() when either is due. Call it on loop's thread,
 * before or after redtls_async_connect(). Errors: REDTLS_E_INVALID (ac or
 * loop NULL), REDTLS_E_NOMEM, or what redtls_async_attach() returns; on
 * failure nothing of the adapter remains once the loop has run (its timer
 * is closed with uv_close). */
static inline redtls_status redtls_async_attach_libuv(redtls_async *ac, uv_loop_t *loop)
{
    struct redtls__libuv *a;
    redtls_async_hooks hooks;
    redtls_status st;

    if (ac == NULL || loop == NULL)
        return REDTLS_E_INVALID;
    a = (struct redtls__libuv *)calloc(1, sizeof(*a));
    if (a == NULL)
        return REDTLS_E_NOMEM;
    (void)uv_timer_init(loop, &a->timer); /* only initialises fields */
    a->timer.data = a;
    a->ac = ac;
    a->loop = loop;
    a->fd = -1;
    hooks.data = a;
    hooks.watch = redtls__libuv_watch;
    hooks.timer = redtls__libuv_timer;
    hooks.detach = redtls__libuv_detach;
    st = redtls_async_attach(ac, &hooks);
    if (st != REDTLS_OK)
        redtls__libuv_detach(a);
    return st;
}

/* What the adapter keeps for one cluster handle: its timer. The node
 * connections each have their own struct redtls__libuv. Freed by the
 * timer's close callback, like struct redtls__libuv. */
struct redtls__libuv_cluster {
    redtls_async_cluster *acl; /* NULL once detached */
    uv_loop_t *loop;
    uv_timer_t timer;          /* timer.data is this struct */
};

/* A callback may free the cluster handle during the call, which detaches
 * this adapter: the state stays until the timer's close callback, which
 * libuv runs later, never from inside this one. */
static inline void redtls__libuv_cluster_on_timer(uv_timer_t *t)
{
    struct redtls__libuv_cluster *a = (struct redtls__libuv_cluster *)t->data;

    if (a->acl != NULL)
        (void)redtls_async_cluster_process(a->acl);
}

static inline redtls_status redtls__libuv_cluster_attach_node(void *data, redtls_async *node)
{
    struct redtls__libuv_cluster *a = (struct redtls__libuv_cluster *)data;
    redtls_status st;

    if (a->acl == NULL)
        return REDTLS_E_STATE;
    st = redtls_async_attach_libuv(node, a->loop);
    return st;
}

static inline void redtls__libuv_cluster_timer(void *data, int ms)
{
    struct redtls__libuv_cluster *a = (struct redtls__libuv_cluster *)data;

    if (a->acl == NULL)
        return;
    if (ms < 0)
        uv_timer_stop(&a->timer);
    else
        (void)uv_timer_start(&a->timer, redtls__libuv_cluster_on_timer, (uint64_t)ms, 0);
}

static inline void redtls__libuv_cluster_detach(void *data)
{
    struct redtls__libuv_cluster *a = (struct redtls__libuv_cluster *)data;

    a->acl = NULL;
    uv_close((uv_handle_t *)&a->timer, redtls__libuv_free_state);
}

/* Drives the cluster handle acl from loop: every node connection it has or
 * makes is attached with redtls_async_attach_libuv(), and its own timed
 * work (deadlines, retries, refreshes) runs from one uv timer calling
 * redtls_async_cluster_process(). Call it on loop's thread, before or after
 * redtls_async_cluster_connect(). Errors: REDTLS_E_INVALID (acl or loop
 * NULL), REDTLS_E_NOMEM, or what redtls_async_cluster_attach() returns; on
 * failure nothing of the cluster adapter remains once the loop has run (its
 * timer is closed with uv_close), and the handle is left with no hooks:
 * those it had were detached by the attempt. Node connections the loop did
 * take before one failed stay on it. */
static inline redtls_status redtls_async_cluster_attach_libuv(redtls_async_cluster *acl, uv_loop_t *loop)
{
    struct redtls__libuv_cluster *a;
    redtls_async_cluster_hooks hooks;
    redtls_status st;

    if (acl == NULL || loop == NULL)
        return REDTLS_E_INVALID;
    a = (struct redtls__libuv_cluster *)calloc(1, sizeof(*a));
    if (a == NULL)
        return REDTLS_E_NOMEM;
    (void)uv_timer_init(loop, &a->timer); /* only initialises fields */
    a->timer.data = a;
    a->acl = acl;
    a->loop = loop;
    hooks.data = a;
    hooks.attach_node = redtls__libuv_cluster_attach_node;
    hooks.timer = redtls__libuv_cluster_timer;
    hooks.detach = redtls__libuv_cluster_detach;
    st = redtls_async_cluster_attach(acl, &hooks);
    /* A refusal leaves the handle without these hooks (their detach ran,
     * or they were never installed). */
    if (st != REDTLS_OK && a->acl != NULL)
        redtls__libuv_cluster_detach(a);
    return st;
}

#ifdef __cplusplus
}
#endif

#endif

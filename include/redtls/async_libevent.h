/* redtls asynchronous API on a libevent 2 event_base (header-only).
 *
 *   redtls_async_attach_libevent(ac, base);   then event_base_dispatch(base)
 *   redtls_async_cluster_attach_libevent(acl, base);   the same for a cluster
 *
 * Rules, beyond those of redtls/async.h and redtls/async_cluster.h:
 * Threads
 *   - The thread that runs the event_base owns the handle: make every call
 *     on it there, including redtls_async_free() / redtls_async_cluster_free().
 * Lifetime
 *   - Free the handle (redtls_async_free) before event_base_free(base).
 *     Freeing it deletes its events at once, so a dispatch with nothing else
 *     to do returns. It may be freed from any of its callbacks.
 *   - Attaching again (this adapter, another one, or NULL through
 *     redtls_async_attach) releases what this adapter made.
 *   - A cluster handle: each node connection it makes gets this adapter
 *     (redtls_async_attach_libevent), and the handle one timer event of its
 *     own. The rules above hold for all of them: free the cluster handle
 *     (redtls_async_cluster_free, from anywhere, callbacks included) before
 *     event_base_free(base). Attaching the cluster handle again (or NULL
 *     through redtls_async_cluster_attach) frees its timer; its node
 *     connections stay on this base until they are attached elsewhere.
 * Building
 *   - CMake: target_link_libraries(app PRIVATE redtls::libevent), after
 *     add_subdirectory(redtls) or find_package(redtls COMPONENTS libevent).
 *   - pkg-config: cc app.c $(pkg-config --cflags --libs redtls-libevent).
 *   libredtls itself never links libevent: only programs that include this
 *   header do.
 */
#ifndef REDTLS_ASYNC_LIBEVENT_H
#define REDTLS_ASYNC_LIBEVENT_H

#include <stdlib.h>

#include <event2/event.h>

#include <redtls/async.h>
#include <redtls/async_cluster.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What the adapter keeps for one handle. */
struct redtls__libevent {
    redtls_async *ac;      /* NULL once detached */
    struct event_base *base;
    struct event *io;      /* assigned to fd with events; made once, re-assigned when they change */
    struct event *timer;
    int fd;                /* -1: io is not added */
    int events;            /* REDTLS_ASYNC_READ|WRITE io is added with; 0: not added */
    int running;           /* redtls_async_process calls under way from this adapter's callbacks */
};

static inline void redtls__libevent_release(struct redtls__libevent *a)
{
    if (a->io != NULL)
        event_free(a->io);
    if (a->timer != NULL)
        event_free(a->timer);
    free(a);
}

/* A callback may free the handle, which detaches this adapter while
 * redtls_async_process is still on the stack: the state then outlives the
 * call and is released here, once nothing up the stack can reach it. */
static inline void redtls__libevent_process(struct redtls__libevent *a, int events)
{
    if (a->ac == NULL)
        return;
    a->running++;
    (void)redtls_async_process(a->ac, events);
    a->running--;
    if (a->ac == NULL && a->running == 0)
        redtls__libevent_release(a);
}

static inline void redtls__libevent_on_io(evutil_socket_t fd, short what, void *arg)
{
    int events = 0;

    (void)fd;
    if (what & EV_READ)
        events |= REDTLS_ASYNC_READ;
    if (what & EV_WRITE)
        events |= REDTLS_ASYNC_WRITE;
    redtls__libevent_process((struct redtls__libevent *)arg, events);
}

static inline void redtls__libevent_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redtls__libevent_process((struct redtls__libevent *)arg, 0);
}

static inline int redtls__libevent_watch(void *data, int fd, int events)
{
    struct redtls__libevent *a = (struct redtls__libevent *)data;
    short what = EV_PERSIST;

    if (a->ac == NULL)
        return 0;
    if (fd < 0)
        events = 0;
    if (fd == a->fd && events == a->events)
        return 0;
    /* Deleted while the descriptor is still open, so the loop's backend
     * drops it cleanly; event_assign needs the event not added. */
    if (a->events != 0)
        event_del(a->io);
    a->fd = -1;
    a->events = 0;
    if (events == 0)
        return 0;
    if (events & REDTLS_ASYNC_READ)
        what |= EV_READ;
    if (events & REDTLS_ASYNC_WRITE)
        what |= EV_WRITE;
    if (event_assign(a->io, a->base, fd, what, redtls__libevent_on_io, a) != 0 || event_add(a->io, NULL) != 0)
        return -1;
    a->fd = fd;
    a->events = events;
    return 0;
}

static inline void redtls__libevent_timer(void *data, int ms)
{
    struct redtls__libevent *a = (struct redtls__libevent *)data;
    struct timeval tv;

    if (a->ac == NULL)
        return;
    if (ms < 0) {
        event_del(a->timer);
        return;
    }
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    /* Adding a pending timer moves it: there is one timer per handle. */
    (void)event_add(a->timer, &tv);
}

static inline void redtls__libevent_detach(void *data)
{
    struct redtls__libevent *a = (struct redtls__libevent *)data;

    a->ac = NULL;
    /* Inside one of this adapter's callbacks, it is released when that
     * returns (redtls__libevent_process). */
    if (a->running == 0)
        redtls__libevent_release(a);
}

/* Drives ac from base: watches its descriptor and runs its timer, calling
 * redtls_async_process() when either is due. Call it on base's thread,
 * before or after redtls_async_connect(). Errors: REDTLS_E_INVALID (ac or
 * base NULL), REDTLS_E_NOMEM, or what redtls_async_attach() returns; on
 * failure nothing of the adapter remains. */
static inline redtls_status redtls_async_attach_libevent(redtls_async *ac, struct event_base *base)
{
    struct redtls__libevent *a;
    redtls_async_hooks hooks;
    redtls_status st;

    if (ac == NULL || base == NULL)
        return REDTLS_E_INVALID;
    a = (struct redtls__libevent *)calloc(1, sizeof(*a));
    if (a == NULL)
        return REDTLS_E_NOMEM;
    a->ac = ac;
    a->base = base;
    a->fd = -1;
    /* Both events are made here, so the hooks never allocate (their
     * failures could not be reported). */
    a->io = event_new(base, -1, 0, redtls__libevent_on_io, a);
    a->timer = evtimer_new(base, redtls__libevent_on_timer, a);
    if (a->io == NULL || a->timer == NULL) {
        redtls__libevent_release(a);
        return REDTLS_E_NOMEM;
    }
    hooks.data = a;
    hooks.watch = redtls__libevent_watch;
    hooks.timer = redtls__libevent_timer;
    hooks.detach = redtls__libevent_detach;
    st = redtls_async_attach(ac, &hooks);
    if (st != REDTLS_OK)
        redtls__libevent_release(a);
    return st;
}

/* What the adapter keeps for one cluster handle: its timer. The node
 * connections each have their own struct redtls__libevent. */
struct redtls__libevent_cluster {
    redtls_async_cluster *acl; /* NULL once detached */
    struct event_base *base;
    struct event *timer;
    int running;               /* calls under way that may detach it (the timer's, the attach) */
};

static inline void redtls__libevent_cluster_release(struct redtls__libevent_cluster *a)
{
    if (a->timer != NULL)
        event_free(a->timer);
    free(a);
}

/* As in redtls__libevent_process: a callback that frees the cluster handle
 * detaches this adapter while the call is on the stack, so the state is
 * released here, after it. */
static inline void redtls__libevent_cluster_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct redtls__libevent_cluster *a = (struct redtls__libevent_cluster *)arg;

    (void)fd;
    (void)what;
    if (a->acl == NULL)
        return;
    a->running++;
    (void)redtls_async_cluster_process(a->acl);
    a->running--;
    if (a->acl == NULL && a->running == 0)
        redtls__libevent_cluster_release(a);
}

static inline redtls_status redtls__libevent_cluster_attach_node(void *data, redtls_async *node)
{
    struct redtls__libevent_cluster *a = (struct redtls__libevent_cluster *)data;
    redtls_status st;

    if (a->acl == NULL)
        return REDTLS_E_STATE;
    st = redtls_async_attach_libevent(node, a->base);
    return st;
}

static inline void redtls__libevent_cluster_timer(void *data, int ms)
{
    struct redtls__libevent_cluster *a = (struct redtls__libevent_cluster *)data;
    struct timeval tv;

    if (a->acl == NULL)
        return;
    if (ms < 0) {
        event_del(a->timer);
        return;
    }
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    (void)event_add(a->timer, &tv);
}

static inline void redtls__libevent_cluster_detach(void *data)
{
    struct redtls__libevent_cluster *a = (struct redtls__libevent_cluster *)data;

    a->acl = NULL;
    if (a->running == 0)
        redtls__libevent_cluster_release(a);
}

/* Drives the cluster handle acl from base: every node connection it has or
 * makes is attached with redtls_async_attach_libevent(), and its own timed
 * work (deadlines, retries, refreshes) runs from one timer event calling
 * redtls_async_cluster_process(). Call it on base's thread, before or after
 * redtls_async_cluster_connect(). Errors: REDTLS_E_INVALID (acl or base
 * NULL), REDTLS_E_NOMEM, or what redtls_async_cluster_attach() returns; on
 * failure nothing of the cluster adapter remains, and the handle is left
 * with no hooks: those it had were detached by the attempt. Node
 * connections the base did take before one failed stay on it. */
static inline redtls_status redtls_async_cluster_attach_libevent(redtls_async_cluster *acl, struct event_base *base)
{
    struct redtls__libevent_cluster *a;
    redtls_async_cluster_hooks hooks;
    redtls_status st;

    if (acl == NULL || base == NULL)
        return REDTLS_E_INVALID;
    a = (struct redtls__libevent_cluster *)calloc(1, sizeof(*a));
    if (a == NULL)
        return REDTLS_E_NOMEM;
    a->acl = acl;
    a->base = base;
    /* Made here, so the timer hook never allocates (it cannot report a
     * failure). */
    a->timer = evtimer_new(base, redtls__libevent_cluster_on_timer, a);
    if (a->timer == NULL) {
        redtls__libevent_cluster_release(a);
        return REDTLS_E_NOMEM;
    }
    hooks.data = a;
    hooks.attach_node = redtls__libevent_cluster_attach_node;
    hooks.timer = redtls__libevent_cluster_timer;
    hooks.detach = redtls__libevent_cluster_detach;
    /* Held through the calls, which may detach it: released below. */
    a->running++;
    st = redtls_async_cluster_attach(acl, &hooks);
    /* A refusal leaves the handle without these hooks (their detach ran,
     * or they were never installed). */
    a->running--;
    if (st != REDTLS_OK)
        redtls__libevent_cluster_release(a);
    return st;
}

#ifdef __cplusplus
}
#endif

#endif

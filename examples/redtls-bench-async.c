/*
 * redtls-bench --async: the asynchronous API (redtls/async.h) measured in
 * the shapes of the blocking modes, plus a loop-stall mode.
 *
 * Throughput: each connection keeps --inflight commands issued; every
 * reply's callback issues the next command, so the depth stays constant
 * (redis-benchmark -P instead sends a batch and waits for all of it).
 * Latency is from issuing a command to its callback.
 *
 * The loops: redtls_async_run (builtin), the adapters (libevent, libuv,
 * when built with them), or "epoll": a loop written here on the hooks of
 * redtls_async_attach, which calls redtls_async_process itself and so can
 * time every call (the stall mode) and holds a thousand handles cheaply
 * (--connect, --idle). Its epoll_ctl calls are made by the watch hook,
 * inside the process call that changed the interest, as an adapter's are.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <redtls/async.h>
#ifdef REDTLS_BENCH_LIBEVENT
#include <redtls/async_libevent.h>
#endif
#ifdef REDTLS_BENCH_LIBUV
#include <redtls/async_libuv.h>
#endif

#include "redtls-bench.h"

#define NO_DUE INT64_MAX

/* ---- timing of single calls (stall mode) ---- */

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Durations of one kind of call: wall (histogram and maximum) and the
 * thread's CPU time (maximum), which leaves out time the thread spent
 * waiting for a core on a shared machine. */
struct call_stats {
    const char *name;
    struct histogram wall;
    uint64_t max_wall, max_cpu;
};

static void stats_add(struct call_stats *s, uint64_t wall, uint64_t cpu)
{
    hist_record(&s->wall, wall);
    if (wall > s->max_wall)
        s->max_wall = wall;
    if (cpu > s->max_cpu)
        s->max_cpu = cpu;
}

/* ---- the epoll loop on redtls_async_attach's hooks ---- */

struct eloop;

/* One handle as the loop sees it. */
struct slot {
    struct eloop *loop;
    redtls_async *ac;         /* NULL once detached */
    int fd, events;           /* registered with epoll (fd -1: none) */
    int64_t due;              /* from the timer hook (ns), or NO_DUE */
    struct call_stats *stats; /* time its process calls here, or NULL */
};

struct eloop {
    int ep;
    struct slot **slots;
    size_t n, cap;
    int64_t next_due; /* no timer is due before this (ns) */
    int stop;
    struct call_stats *iter; /* time each wake's work here, or NULL */
};

/* The watch hook: epoll is told at once (a failure is the hook's answer).
 * The handle says watch(-1, 0) before a new socket that has the number of
 * a closed one, so a registration never outlives its socket; a closed
 * descriptor has left epoll by itself, hence the ignored DEL errors. */
static int hook_watch(void *data, int fd, int events)
{
    struct slot *s = data;
    struct eloop *l = s->loop;

    if (fd < 0)
        events = 0;
    if (s->fd >= 0 && (fd != s->fd || events == 0)) {
        (void)epoll_ctl(l->ep, EPOLL_CTL_DEL, s->fd, NULL);
        s->fd = -1;
        s->events = 0;
    }
    if (events == 0 || (fd == s->fd && events == s->events))
        return 0;
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = (events & REDTLS_ASYNC_READ ? EPOLLIN : 0u) | (events & REDTLS_ASYNC_WRITE ? EPOLLOUT : 0u);
    ev.data.ptr = s;
    int op = s->fd == fd ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(l->ep, op, fd, &ev) != 0 &&
        (op != EPOLL_CTL_ADD || errno != EEXIST || epoll_ctl(l->ep, EPOLL_CTL_MOD, fd, &ev) != 0))
        return -1;
    s->fd = fd;
    s->events = events;
    return 0;
}

static void hook_timer(void *data, int ms)
{
    struct slot *s = data;

    if (ms < 0) {
        s->due = NO_DUE;
        return;
    }
    s->due = (int64_t)now_ns() + (int64_t)ms * 1000000;
    if (s->due < s->loop->next_due)
        s->loop->next_due = s->due;
}

static void hook_detach(void *data)
{
    struct slot *s = data;

    (void)hook_watch(s, -1, 0);
    s->ac = NULL;
    s->due = NO_DUE;
}

static int eloop_init(struct eloop *l, size_t cap)
{
    memset(l, 0, sizeof *l);
    l->ep = epoll_create1(0);
    l->slots = calloc(cap, sizeof *l->slots);
    l->cap = cap;
    l->next_due = NO_DUE;
    return l->ep >= 0 && l->slots ? 0 : -1;
}

/* Frees the loop (its handles freed first); a second call does nothing. */
static void eloop_free(struct eloop *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->slots[i]);
    free(l->slots);
    if (l->ep >= 0)
        close(l->ep);
    memset(l, 0, sizeof *l);
    l->ep = -1;
}

/* Attaches ac to the loop (a slot of its own, freed with the loop). */
static struct slot *eloop_add(struct eloop *l, redtls_async *ac, struct call_stats *stats)
{
    struct slot *s = calloc(1, sizeof *s);
    if (!s || l->n == l->cap) {
        free(s);
        return NULL;
    }
    s->loop = l;
    s->ac = ac;
    s->fd = -1;
    s->due = NO_DUE;
    s->stats = stats;
    l->slots[l->n++] = s;
    redtls_async_hooks h = {s, hook_watch, hook_timer, hook_detach};
    if (redtls_async_attach(ac, &h) != REDTLS_OK) {
        l->n--;
        free(s);
        return NULL;
    }
    return s;
}

/* Removes detached slots (their handles were freed). */
static void eloop_compact(struct eloop *l)
{
    size_t k = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->slots[i]->ac)
            l->slots[k++] = l->slots[i];
        else
            free(l->slots[i]);
    }
    l->n = k;
}

static void slot_process(struct slot *s, int events)
{
    if (!s->ac)
        return;
    if (s->stats) {
        uint64_t c0 = thread_cpu_ns(), t0 = now_ns();
        (void)redtls_async_process(s->ac, events);
        uint64_t t1 = now_ns(), c1 = thread_cpu_ns();
        stats_add(s->stats, t1 - t0, c1 - c0);
    } else {
        (void)redtls_async_process(s->ac, events);
    }
}

/* Runs until something sets l->stop or deadline (ns) passes: -1 then. */
static int eloop_run(struct eloop *l, uint64_t deadline)
{
    struct epoll_event evs[256];

    l->stop = 0;
    while (!l->stop) {
        int64_t now = (int64_t)now_ns();
        if ((uint64_t)now >= deadline)
            return -1;
        int64_t wait_ns = (int64_t)deadline - now;
        if (l->next_due != NO_DUE && l->next_due - now < wait_ns)
            wait_ns = l->next_due - now;
        int ms = wait_ns <= 0 ? 0 : (int)((wait_ns + 999999) / 1000000);
        int n = epoll_wait(l->ep, evs, 256, ms);
        if (n < 0 && errno != EINTR)
            return -1;
        uint64_t w0 = l->iter ? now_ns() : 0, wc0 = l->iter ? thread_cpu_ns() : 0;
        for (int i = 0; i < n; i++) {
            struct slot *s = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            int events = (e & (EPOLLIN | EPOLLERR | EPOLLHUP) ? REDTLS_ASYNC_READ : 0) |
                         (e & (EPOLLOUT | EPOLLERR | EPOLLHUP) ? REDTLS_ASYNC_WRITE : 0);
            slot_process(s, events);
        }
        now = (int64_t)now_ns();
        if (l->next_due <= now) {
            int64_t next = NO_DUE;
            /* The slots list may grow from a callback: index, not pointer. */
            for (size_t i = 0; i < l->n; i++) {
                struct slot *s = l->slots[i];
                if (s->due <= now) {
                    s->due = NO_DUE;
                    slot_process(s, 0);
                }
                if (s->due < next)
                    next = s->due;
            }
            l->next_due = next;
        }
        if (l->iter)
            stats_add(l->iter, now_ns() - w0, thread_cpu_ns() - wc0);
    }
    return 0;
}

/* ---- the throughput run ---- */

struct abench;

struct aconn {
    struct abench *b;
    redtls_async *ac;
    uint64_t *issued_at; /* ring: replies come back in order */
    unsigned long mask, head, tail;
};

struct abench {
    const struct bench_options *o;
    int loop;
    struct aconn *conns;
    long nconns;
    struct prepared_cmd *cmds;
    int ncmds, next_cmd;
    uint64_t rng;
    struct histogram *hist;
    long requests, sent, done, errors;
    long connected;
    redtls_status failed;
    int plain;
    struct eloop el;
#ifdef REDTLS_BENCH_LIBEVENT
    struct event_base *base;
#endif
#ifdef REDTLS_BENCH_LIBUV
    uv_loop_t uv;
    int uv_ready;
#endif
};

/* The phase is over: the loop returns. (redtls_async_run returns by
 * itself when nothing is pending.) */
static void bench_stop(struct abench *b)
{
    b->el.stop = 1;
#ifdef REDTLS_BENCH_LIBEVENT
    if (b->base)
        event_base_loopbreak(b->base);
#endif
#ifdef REDTLS_BENCH_LIBUV
    if (b->uv_ready)
        uv_stop(&b->uv);
#endif
}

static void bench_fail(struct abench *b, redtls_async *ac, const char *what, redtls_status st)
{
    if (b->failed == REDTLS_OK) {
        const char *detail = redtls_async_errmsg(ac);
        fprintf(stderr, "redtls-bench: %s: %s\n", what, *detail ? detail : redtls_strerror(st));
        b->failed = st;
    }
    bench_stop(b);
}

static void on_reply(redtls_async *ac, redtls_status st, struct redisReply *reply, void *ud);

static int issue_one(struct aconn *c)
{
    struct abench *b = c->b;
    struct prepared_cmd *p = &b->cmds[b->next_cmd];

    if (++b->next_cmd == b->ncmds)
        b->next_cmd = 0;
    randomize_key(p, &b->rng, (uint64_t)b->o->keyspace);
    c->issued_at[c->tail++ & c->mask] = now_ns();
    redtls_status st = redtls_async_command_argv(c->ac, 0, p->argc, p->argv, p->argvlen, on_reply, c);
    if (st != REDTLS_OK) {
        c->tail--;
        bench_fail(b, c->ac, "command", st);
        return -1;
    }
    b->sent++;
    return 0;
}

static void on_reply(redtls_async *ac, redtls_status st, struct redisReply *reply, void *ud)
{
    struct aconn *c = ud;
    struct abench *b = c->b;

    if (st != REDTLS_OK) {
        c->head++;
        bench_fail(b, ac, "reply", st);
        return;
    }
    hist_record(b->hist, now_ns() - c->issued_at[c->head++ & c->mask]);
    if (redtls_reply_type(reply) == REDTLS_REPLY_ERROR) {
        if (b->errors == 0) {
            size_t len = 0;
            const char *s = redtls_reply_str(reply, &len);
            fprintf(stderr, "redtls-bench: first error reply: %.*s\n", (int)(len > 200 ? 200 : len), s);
        }
        b->errors++;
    }
    redtls_reply_free(reply);
    b->done++;
    if (b->failed != REDTLS_OK)
        return;
    if (b->sent < b->requests)
        (void)issue_one(c);
    else if (b->done == b->requests)
        bench_stop(b);
}

static void on_connected(redtls_async *ac, redtls_status st, void *ud)
{
    struct aconn *c = ud;
    struct abench *b = c->b;

    if (st != REDTLS_OK) {
        bench_fail(b, ac, "connect", st);
        return;
    }
    if (++b->connected == b->nconns)
        bench_stop(b);
}

static void on_event(void *ud, redtls_event_type type, const char *detail)
{
    int *plain = ud;

    if (type == REDTLS_EVENT_CONNECTED && strcmp(detail, "plain TCP") == 0)
        *plain = 1;
}

/* Runs the chosen loop until bench_stop (or, builtin, until nothing is
 * pending). */
static int bench_run(struct abench *b)
{
    redtls_async **hs;

    switch (b->loop) {
    case LOOP_EPOLL: return eloop_run(&b->el, UINT64_MAX);
#ifdef REDTLS_BENCH_LIBEVENT
    case LOOP_LIBEVENT: return event_base_dispatch(b->base) < 0 ? -1 : 0;
#endif
#ifdef REDTLS_BENCH_LIBUV
    case LOOP_LIBUV: (void)uv_run(&b->uv, UV_RUN_DEFAULT); return 0;
#endif
    default: break;
    }
    hs = malloc((size_t)b->nconns * sizeof *hs);
    if (!hs)
        return -1;
    for (long i = 0; i < b->nconns; i++)
        hs[i] = b->conns[i].ac;
    redtls_status st = redtls_async_run(hs, (size_t)b->nconns, -1);
    free(hs);
    return st == REDTLS_OK ? 0 : -1;
}

static int bench_attach(struct abench *b, redtls_async *ac)
{
    switch (b->loop) {
    case LOOP_EPOLL: return eloop_add(&b->el, ac, NULL) ? 0 : -1;
#ifdef REDTLS_BENCH_LIBEVENT
    case LOOP_LIBEVENT: return redtls_async_attach_libevent(ac, b->base) == REDTLS_OK ? 0 : -1;
#endif
#ifdef REDTLS_BENCH_LIBUV
    case LOOP_LIBUV: return redtls_async_attach_libuv(ac, &b->uv) == REDTLS_OK ? 0 : -1;
#endif
    default: return 0;
    }
}

static const char *loop_name(int loop)
{
    switch (loop) {
    case LOOP_EPOLL: return "epoll";
    case LOOP_LIBEVENT: return "libevent";
    case LOOP_LIBUV: return "libuv";
    default: return "builtin";
    }
}

int run_async_throughput(const struct bench_options *o, redtls_config *cfg, const char *url)
{
    struct abench b;
    struct bench_options shown = *o;
    char *value = malloc((size_t)o->datasize + 1);
    unsigned long ring = 1;
    int rc = EXIT_DONE;
    long i;

    memset(&b, 0, sizeof b);
    b.el.ep = -1;
    b.o = o;
    b.loop = o->loop;
    b.nconns = o->conns;
    b.rng = o->seed * 0x9E3779B97F4A7C15ULL + 1;
    b.conns = calloc((size_t)o->conns, sizeof *b.conns);
    b.cmds = calloc(MAX_TESTS, sizeof *b.cmds);
    b.hist = malloc(sizeof *b.hist);
    while (ring < (unsigned long)o->inflight)
        ring <<= 1;
    if (!value || !b.conns || !b.cmds || !b.hist) {
        fputs("redtls-bench: out of memory\n", stderr);
        rc = EXIT_CONNECT;
        goto out;
    }
    memset(value, 'x', (size_t)o->datasize);
    value[o->datasize] = '\0';
    if (b.loop == LOOP_BUILTIN && o->conns > 64) {
        /* redtls_async_run polls the descriptors of its first 64 handles
         * only (see the report in scripts/bench.sh's async section). */
        rc = usage_error("--loop builtin takes at most 64 connections (-c); use --loop epoll");
        goto out;
    }
    if (b.loop == LOOP_EPOLL && eloop_init(&b.el, (size_t)o->conns) != 0) {
        rc = EXIT_CONNECT;
        goto out;
    }
#ifdef REDTLS_BENCH_LIBEVENT
    if (b.loop == LOOP_LIBEVENT && !(b.base = event_base_new())) {
        rc = EXIT_CONNECT;
        goto out;
    }
#endif
#ifdef REDTLS_BENCH_LIBUV
    if (b.loop == LOOP_LIBUV) {
        if (uv_loop_init(&b.uv) != 0) {
            rc = EXIT_CONNECT;
            goto out;
        }
        b.uv_ready = 1;
    }
#endif
    (void)redtls_config_set_event_callback(cfg, on_event, &b.plain);
    for (i = 0; i < o->conns; i++) {
        struct aconn *c = &b.conns[i];
        redtls_status st = redtls_async_new(cfg, &c->ac);
        c->b = &b;
        c->mask = ring - 1;
        c->issued_at = calloc(ring, sizeof *c->issued_at);
        if (st != REDTLS_OK) {
            rc = config_failed(cfg, "configuration", st);
            goto out;
        }
        if (!c->issued_at || bench_attach(&b, c->ac) != 0) {
            fputs("redtls-bench: out of memory attaching to the loop\n", stderr);
            rc = EXIT_CONNECT;
            goto out;
        }
        if ((st = redtls_async_connect(c->ac, on_connected, c)) != REDTLS_OK) {
            bench_fail(&b, c->ac, "connect", st);
            rc = EXIT_CONNECT;
            goto out;
        }
    }
    if (bench_run(&b) != 0 || b.failed != REDTLS_OK || b.connected != b.nconns) {
        if (b.failed == REDTLS_OK)
            fputs("redtls-bench: the loop ended before every connection was made\n", stderr);
        rc = EXIT_CONNECT;
        goto out;
    }
    shown.pipeline = o->inflight;
    if (o->format == FORMAT_TABLE)
        printf("redtls-bench %s  %s  %s  async, %s loop  connections %ld  in flight %ld  value %ld B  keyspace "
               "%ld\n%-16s %10s %12s %9s %9s %9s %10s %7s\n",
               redtls_version(), url, b.plain ? "plain" : "tls", loop_name(b.loop), o->conns, o->inflight,
               o->datasize, o->keyspace, "test", "requests", "ops/s", "p50 us", "p99 us", "p99.9 us", "cpu us/op",
               "errors");
    else
        print_throughput_header(&shown, url, b.plain ? "plain" : "tls");

    for (int t = 0; t < (o->mix ? 1 : o->ntests); t++) {
        struct result res;
        memset(&res, 0, sizeof res);
        if (o->mix) {
            size_t used = 0;
            for (b.ncmds = 0; b.ncmds < o->ntests; b.ncmds++) {
                prepare_cmd(&b.cmds[b.ncmds], o->tests[b.ncmds], value, (size_t)o->datasize, o->hash_tag);
                used += (size_t)snprintf(res.test + used, sizeof res.test - used, "%s%s", b.ncmds ? "+" : "MIX:",
                                         test_names[o->tests[b.ncmds]]);
                if (used >= sizeof res.test)
                    used = sizeof res.test - 1;
            }
        } else {
            b.ncmds = 1;
            prepare_cmd(&b.cmds[0], o->tests[t], value, (size_t)o->datasize, o->hash_tag);
            snprintf(res.test, sizeof res.test, "%s", test_names[o->tests[t]]);
        }
        b.next_cmd = 0;
        b.requests = o->requests;
        b.sent = b.done = b.errors = 0;
        memset(b.hist, 0, sizeof *b.hist);

        uint64_t cpu_start = cpu_ns(), t_start = now_ns();
        /* Every connection gets its first --inflight commands; the
         * callbacks keep the depth from then on. */
        for (long k = 0; k < o->inflight && b.failed == REDTLS_OK; k++)
            for (i = 0; i < o->conns && b.sent < b.requests && b.failed == REDTLS_OK; i++)
                (void)issue_one(&b.conns[i]);
        int r = b.failed == REDTLS_OK ? bench_run(&b) : -1;
        uint64_t t_end = now_ns(), cpu_end = cpu_ns();
        if (r != 0 || b.failed != REDTLS_OK || b.done != b.requests) {
            if (b.failed == REDTLS_OK)
                fprintf(stderr, "redtls-bench: the loop ended after %ld of %ld replies\n", b.done, b.requests);
            rc = EXIT_CONNECT;
            goto out;
        }
        fill_result(&res, b.done, b.errors, b.hist, t_end - t_start, cpu_end - cpu_start);
        if (b.errors > 0)
            rc = EXIT_ERROR_REPLY;
        print_throughput(&shown, b.plain ? "plain" : "tls", &res);
    }
out:
    if (b.conns)
        for (i = 0; i < o->conns; i++) {
            redtls_async_free(b.conns[i].ac);
            free(b.conns[i].issued_at);
        }
#ifdef REDTLS_BENCH_LIBEVENT
    if (b.base)
        event_base_free(b.base);
#endif
#ifdef REDTLS_BENCH_LIBUV
    if (b.uv_ready) {
        (void)uv_run(&b.uv, UV_RUN_DEFAULT); /* the adapters' close callbacks */
        (void)uv_loop_close(&b.uv);
    }
#endif
    if (b.loop == LOOP_EPOLL)
        eloop_free(&b.el);
    (void)redtls_config_set_event_callback(cfg, NULL, NULL);
    free(b.conns);
    free(b.cmds);
    free(b.hist);
    free(value);
    return rc;
}

/* ---- many handles at once: connect, idle, stall ---- */

/* A set of handles on one epoll loop, each connecting once. */
struct fleet {
    struct eloop *loop;
    long n, connected, failed, resumed, replies;
    redtls_async **h;
    uint64_t *asked_at, *took; /* connect call, and how long it took (ns) */
    redtls_status first_failure;
    char failure[300];
    long want_connected; /* stop the loop at this many (-1: never) */
    long want_replies;
};

struct fleet_member {
    struct fleet *f;
    long i;
};

static void fleet_on_event(void *ud, redtls_event_type type, const char *detail)
{
    struct fleet *f = ud;

    if (type == REDTLS_EVENT_CONNECTED && strcmp(detail, "resumed TLS session") == 0)
        f->resumed++;
}

static void fleet_check_stop(struct fleet *f)
{
    if ((f->want_connected >= 0 && f->connected + f->failed >= f->want_connected) ||
        (f->want_replies >= 0 && f->replies >= f->want_replies))
        f->loop->stop = 1;
}

static void fleet_on_connected(redtls_async *ac, redtls_status st, void *ud)
{
    struct fleet_member *m = ud;
    struct fleet *f = m->f;

    f->took[m->i] = now_ns() - f->asked_at[m->i];
    if (st == REDTLS_OK) {
        f->connected++;
    } else {
        if (f->failed++ == 0) {
            f->first_failure = st;
            snprintf(f->failure, sizeof f->failure, "%s", redtls_async_errmsg(ac));
        }
    }
    fleet_check_stop(f);
}

static void fleet_on_reply(redtls_async *ac, redtls_status st, struct redisReply *reply, void *ud)
{
    struct fleet *f = ud;

    if (st != REDTLS_OK && f->failed++ == 0) {
        f->first_failure = st;
        snprintf(f->failure, sizeof f->failure, "%s", redtls_async_errmsg(ac));
    }
    redtls_reply_free(reply);
    f->replies++;
    fleet_check_stop(f);
}

static struct fleet_member *fleet_members(long n, struct fleet *f)
{
    struct fleet_member *m = calloc((size_t)n, sizeof *m);
    for (long i = 0; m && i < n; i++) {
        m[i].f = f;
        m[i].i = i;
    }
    return m;
}

/* Makes n handles from cfg on loop; *stats, when given, times each new
 * and each process call. */
static int fleet_make(struct fleet *f, struct eloop *loop, redtls_config *cfg, long n, struct call_stats *new_stats,
                      struct call_stats *process_stats)
{
    memset(f, 0, sizeof *f);
    f->loop = loop;
    f->n = n;
    f->want_connected = f->want_replies = -1;
    f->h = calloc((size_t)n, sizeof *f->h);
    f->asked_at = calloc((size_t)n, sizeof *f->asked_at);
    f->took = calloc((size_t)n, sizeof *f->took);
    if (!f->h || !f->asked_at || !f->took)
        return -1;
    (void)redtls_config_set_event_callback(cfg, fleet_on_event, f);
    for (long i = 0; i < n; i++) {
        uint64_t c0 = new_stats ? thread_cpu_ns() : 0, t0 = now_ns();
        redtls_status st = redtls_async_new(cfg, &f->h[i]);
        if (new_stats)
            stats_add(new_stats, now_ns() - t0, thread_cpu_ns() - c0);
        if (st != REDTLS_OK) {
            (void)redtls_config_set_event_callback(cfg, NULL, NULL);
            return config_failed(cfg, "configuration", st);
        }
        if (!eloop_add(loop, f->h[i], process_stats)) {
            (void)redtls_config_set_event_callback(cfg, NULL, NULL);
            fputs("redtls-bench: out of memory\n", stderr);
            return -1;
        }
    }
    (void)redtls_config_set_event_callback(cfg, NULL, NULL);
    return 0;
}

/* Starts every connect at once (each call timed into stats, if any). */
static int fleet_connect_all(struct fleet *f, struct fleet_member *m, struct call_stats *stats)
{
    f->connected = f->failed = f->resumed = 0;
    for (long i = 0; i < f->n; i++) {
        uint64_t c0 = stats ? thread_cpu_ns() : 0;
        f->asked_at[i] = now_ns();
        redtls_status st = redtls_async_connect(f->h[i], fleet_on_connected, &m[i]);
        if (stats)
            stats_add(stats, now_ns() - f->asked_at[i], thread_cpu_ns() - c0);
        if (st != REDTLS_OK) {
            fprintf(stderr, "redtls-bench: connect: %s\n", redtls_async_errmsg(f->h[i]));
            return -1;
        }
    }
    return 0;
}

static void fleet_free(struct fleet *f, struct call_stats *stats)
{
    if (!f->loop)
        return;
    for (long i = 0; f->h && i < f->n; i++) {
        uint64_t c0 = stats ? thread_cpu_ns() : 0, t0 = now_ns();
        redtls_async_free(f->h[i]);
        if (stats)
            stats_add(stats, now_ns() - t0, thread_cpu_ns() - c0);
    }
    free(f->h);
    free(f->asked_at);
    free(f->took);
    f->h = NULL;
    f->asked_at = f->took = NULL;
    eloop_compact(f->loop);
    f->loop = NULL;
}

static int fleet_report_failure(const struct fleet *f, const char *what)
{
    fprintf(stderr, "redtls-bench: %s: %ld of %ld failed; first: %s: %s\n", what, f->failed, f->n,
            redtls_strerror(f->first_failure), f->failure);
    return EXIT_CONNECT;
}

/* Loop deadline for one phase: two minutes. */
static uint64_t phase_deadline(void)
{
    return now_ns() + 120ull * 1000000000u;
}

/* ---- --connect N --async ---- */

struct aconnect_series {
    const char *name;
    long n;
    double wall_total_ms, per_sec, wall_p50_ms, wall_p99_ms, wall_max_ms, cpu_total_ms, cpu_us_per_connect;
    double resumed_fraction;
};

/* One wave of n connects at once; with warm, a first unmeasured wave and a
 * close, so the measured one can resume. */
static int connect_series(redtls_config *cfg, long n, int warm, struct aconnect_series *s)
{
    struct eloop loop;
    struct fleet f;
    struct fleet_member *m = NULL;
    int rc = EXIT_DONE;

    memset(&f, 0, sizeof f);
    if (eloop_init(&loop, (size_t)n) != 0 || !(m = fleet_members(n, &f))) {
        eloop_free(&loop);
        free(m);
        return EXIT_CONNECT;
    }
    if (fleet_make(&f, &loop, cfg, n, NULL, NULL) != 0) {
        rc = EXIT_CONNECT;
        goto out;
    }
    for (int wave = warm ? 0 : 1; wave < 2; wave++) {
        f.want_connected = n;
        uint64_t c0 = cpu_ns(), t0 = now_ns();
        if (fleet_connect_all(&f, m, NULL) != 0 || eloop_run(&loop, phase_deadline()) != 0) {
            fprintf(stderr, "redtls-bench: %ld of %ld connected in time\n", f.connected, n);
            rc = EXIT_CONNECT;
            goto out;
        }
        uint64_t t1 = now_ns(), c1 = cpu_ns();
        if (f.failed) {
            rc = fleet_report_failure(&f, "connect");
            goto out;
        }
        if (wave == 0) {
            for (long i = 0; i < n; i++)
                redtls_async_close(f.h[i]);
            continue;
        }
        double mean, p50, p99;
        summarize(f.took, n, &mean, &p50, &p99);
        s->n = n;
        s->wall_total_ms = (double)(t1 - t0) / 1e6;
        s->per_sec = (double)n / ((double)(t1 - t0) / 1e9);
        s->wall_p50_ms = p50 / 1e3;
        s->wall_p99_ms = p99 / 1e3;
        s->wall_max_ms = (double)f.took[n - 1] / 1e6;
        s->cpu_total_ms = (double)(c1 - c0) / 1e6;
        s->cpu_us_per_connect = (double)(c1 - c0) / 1e3 / (double)n;
        s->resumed_fraction = (double)f.resumed / (double)n;
    }
out:
    fleet_free(&f, NULL);
    eloop_free(&loop);
    free(m);
    return rc;
}

int run_async_connect(const struct bench_options *o, redtls_config *cfg_full, redtls_config *cfg_resumed,
                      const char *url)
{
    struct aconnect_series s[2] = {{"full", 0, 0, 0, 0, 0, 0, 0, 0, 0}, {"resumed", 0, 0, 0, 0, 0, 0, 0, 0, 0}};
    redtls_status st;
    int rc;

    if ((st = redtls_config_set_tls_session_resumption(cfg_full, 0)) != REDTLS_OK ||
        (st = redtls_config_set_tls_session_resumption(cfg_resumed, 1)) != REDTLS_OK)
        return config_failed(cfg_full, "session resumption", st);
    rc = connect_series(cfg_full, o->connect_n, 0, &s[0]);
    if (rc == EXIT_DONE)
        rc = connect_series(cfg_resumed, o->connect_n, 1, &s[1]);
    if (rc != EXIT_DONE)
        return rc;
    if (o->format == FORMAT_CSV)
        puts("kind,series,connects,wall_total_ms,connects_per_sec,wall_p50_ms,wall_p99_ms,wall_max_ms,cpu_total_ms,"
             "cpu_us_per_connect,resumed_fraction");
    else if (o->format == FORMAT_TABLE)
        printf("redtls-bench %s  %s  async: %ld connects (TCP + TLS + AUTH) started at once, per series\n"
               "%-8s %12s %11s %10s %10s %10s %12s %12s %8s\n",
               redtls_version(), url, o->connect_n, "series", "wall total", "connects/s", "wall p50", "wall p99",
               "wall max", "CPU total", "CPU/connect", "resumed");
    for (int i = 0; i < 2; i++) {
        if (o->format == FORMAT_CSV)
            printf("connect_async,%s,%ld,%.1f,%.1f,%.2f,%.2f,%.2f,%.1f,%.1f,%.3f\n", s[i].name, s[i].n,
                   s[i].wall_total_ms, s[i].per_sec, s[i].wall_p50_ms, s[i].wall_p99_ms, s[i].wall_max_ms,
                   s[i].cpu_total_ms, s[i].cpu_us_per_connect, s[i].resumed_fraction);
        else if (o->format == FORMAT_JSON)
            printf("{\"kind\":\"connect_async\",\"series\":\"%s\",\"connects\":%ld,\"wall_total_ms\":%.1f,"
                   "\"connects_per_sec\":%.1f,\"wall_p50_ms\":%.2f,\"wall_p99_ms\":%.2f,\"wall_max_ms\":%.2f,"
                   "\"cpu_total_ms\":%.1f,\"cpu_us_per_connect\":%.1f,\"resumed_fraction\":%.3f}\n",
                   s[i].name, s[i].n, s[i].wall_total_ms, s[i].per_sec, s[i].wall_p50_ms, s[i].wall_p99_ms,
                   s[i].wall_max_ms, s[i].cpu_total_ms, s[i].cpu_us_per_connect, s[i].resumed_fraction);
        else
            printf("%-8s %10.1fms %11.0f %8.2fms %8.2fms %8.2fms %10.1fms %10.1fus %8.3f\n", s[i].name,
                   s[i].wall_total_ms, s[i].per_sec, s[i].wall_p50_ms, s[i].wall_p99_ms, s[i].wall_max_ms,
                   s[i].cpu_total_ms, s[i].cpu_us_per_connect, s[i].resumed_fraction);
    }
    return EXIT_DONE;
}

/* ---- --idle N --async ---- */

/* Heap bytes in use (glibc's mallinfo2: small blocks plus mmapped ones),
 * or -1 where it is not known. */
static long heap_in_use_kib(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    return (long)((mi.uordblks + mi.hblkhd) / 1024);
#else
    return -1;
#endif
}

/* Opens (at once), uses for one PING each, and leaves idle n handles;
 * n 1 is the warm-up. */
static int idle_open(redtls_config *cfg, long n, struct eloop *loop, struct fleet *f, struct fleet_member **m)
{
    if (eloop_init(loop, (size_t)n) != 0 || !(*m = fleet_members(n, f)) ||
        fleet_make(f, loop, cfg, n, NULL, NULL) != 0)
        return EXIT_CONNECT;
    f->want_connected = n;
    if (fleet_connect_all(f, *m, NULL) != 0 || eloop_run(loop, phase_deadline()) != 0 || f->failed)
        return f->failed ? fleet_report_failure(f, "connect") : EXIT_CONNECT;
    f->want_connected = -1;
    f->want_replies = n;
    for (long i = 0; i < n; i++)
        if (redtls_async_command(f->h[i], fleet_on_reply, f, "PING") != REDTLS_OK)
            return EXIT_CONNECT;
    if (eloop_run(loop, phase_deadline()) != 0 || f->failed)
        return f->failed ? fleet_report_failure(f, "PING") : EXIT_CONNECT;
    return EXIT_DONE;
}

int run_async_idle(const struct bench_options *o, redtls_config *cfg, const char *url)
{
    struct eloop warm_loop, loop;
    struct fleet warm, f;
    struct fleet_member *wm = NULL, *m = NULL;
    long n = o->idle_n;
    int rc;

    memset(&warm, 0, sizeof warm);
    memset(&f, 0, sizeof f);
    memset(&warm_loop, 0, sizeof warm_loop);
    memset(&loop, 0, sizeof loop);
    warm_loop.ep = loop.ep = -1;
    /* One handle first, so shared one-time costs (the CA store, code
     * pages, the allocator's arenas) are not charged to the others. */
    rc = idle_open(cfg, 1, &warm_loop, &warm, &wm);
    fleet_free(&warm, NULL);
    eloop_free(&warm_loop);
    long before = rss_kib(), heap_before = heap_in_use_kib();
    if (rc == EXIT_DONE)
        rc = idle_open(cfg, n, &loop, &f, &m);
    if (rc == EXIT_DONE) {
        long after = rss_kib(), heap_after = heap_in_use_kib();
        double per = (double)(after - before) / (double)n;
        double heap_per = heap_before >= 0 ? (double)(heap_after - heap_before) / (double)n : -1.0;
        /* How much of the difference is the allocator keeping what the
         * handshakes (all at once) used: malloc_trim gives back free
         * pages, live memory stays. */
        double trimmed_per = -1.0;
#if defined(__GLIBC__)
        (void)malloc_trim(0);
        trimmed_per = (double)(rss_kib() - before) / (double)n;
#endif
        if (o->format == FORMAT_CSV)
            printf("mode,url,connections,rss_before_kib,rss_after_kib,kib_per_connection,heap_kib_per_connection,"
                   "kib_per_connection_after_trim\nidle_async,%s,%ld,%ld,%ld,%.1f,%.1f,%.1f\n",
                   url, n, before, after, per, heap_per, trimmed_per);
        else if (o->format == FORMAT_JSON)
            printf("{\"kind\":\"idle_async\",\"connections\":%ld,\"rss_before_kib\":%ld,\"rss_after_kib\":%ld,"
                   "\"kib_per_connection\":%.1f,\"heap_kib_per_connection\":%.1f,"
                   "\"kib_per_connection_after_trim\":%.1f}\n",
                   n, before, after, per, heap_per, trimmed_per);
        else
            printf("redtls-bench %s  %s  %ld idle async connections (opened at once, one PING each): RSS %ld -> "
                   "%ld KiB, %.1f KiB per connection; heap in use %.1f KiB per connection; RSS after "
                   "malloc_trim(0) %.1f KiB per connection\n",
                   redtls_version(), url, n, before, after, per, heap_per, trimmed_per);
    }
    fleet_free(&warm, NULL);
    fleet_free(&f, NULL);
    eloop_free(&warm_loop);
    eloop_free(&loop);
    free(wm);
    free(m);
    return rc;
}

/* ---- --stall N --async ---- */

/* Flowing connections: keep GETs going, counting replies. */
struct flow {
    struct abench b;
    long until; /* stop the loop at this many replies (0: never) */
};

static void flow_on_reply(redtls_async *ac, redtls_status st, struct redisReply *reply, void *ud);

static int flow_issue(struct aconn *c)
{
    struct abench *b = c->b;
    struct prepared_cmd *p = &b->cmds[0];

    randomize_key(p, &b->rng, (uint64_t)b->o->keyspace);
    c->issued_at[c->tail++ & c->mask] = now_ns();
    redtls_status st = redtls_async_command_argv(c->ac, 0, p->argc, p->argv, p->argvlen, flow_on_reply, c);
    if (st != REDTLS_OK) {
        c->tail--;
        bench_fail(b, c->ac, "command", st);
        return -1;
    }
    b->sent++;
    return 0;
}

static void flow_on_reply(redtls_async *ac, redtls_status st, struct redisReply *reply, void *ud)
{
    struct aconn *c = ud;
    struct abench *b = c->b;
    struct flow *fl = (struct flow *)(void *)b; /* b is the first member */

    if (st != REDTLS_OK) {
        c->head++;
        bench_fail(b, ac, "reply on a flowing connection", st);
        return;
    }
    hist_record(b->hist, now_ns() - c->issued_at[c->head++ & c->mask]);
    b->errors += redtls_reply_type(reply) == REDTLS_REPLY_ERROR;
    redtls_reply_free(reply);
    b->done++;
    if (fl->until && b->done >= fl->until)
        b->el.stop = 1;
    if (b->sent < b->requests && b->failed == REDTLS_OK)
        (void)flow_issue(c);
}

static void print_stats(const struct bench_options *o, const struct call_stats *s)
{
    double p50 = hist_percentile(&s->wall, 0.50) / 1e3, p99 = hist_percentile(&s->wall, 0.99) / 1e3;
    double p999 = hist_percentile(&s->wall, 0.999) / 1e3;

    if (s->wall.count == 0)
        return;
    if (o->format == FORMAT_CSV)
        printf("stall,%s,%llu,%.1f,%.1f,%.1f,%.1f,%.1f\n", s->name, (unsigned long long)s->wall.count, p50, p99, p999,
               (double)s->max_wall / 1e3, (double)s->max_cpu / 1e3);
    else if (o->format == FORMAT_JSON)
        printf("{\"kind\":\"stall\",\"call\":\"%s\",\"calls\":%llu,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
               "\"max_us\":%.1f,\"max_cpu_us\":%.1f}\n",
               s->name, (unsigned long long)s->wall.count, p50, p99, p999, (double)s->max_wall / 1e3,
               (double)s->max_cpu / 1e3);
    else
        printf("%-34s %8llu %9.1f %9.1f %9.1f %9.1f %10.1f\n", s->name, (unsigned long long)s->wall.count, p50, p99,
               p999, (double)s->max_wall / 1e3, (double)s->max_cpu / 1e3);
}

int run_async_stall(const struct bench_options *o, redtls_config *cfg, redtls_config *cfg_handshakes,
                    const char *url)
{
    enum { S_HS, S_FLOW_QUIET, S_FLOW_WAVE, S_CONNECT, S_NEW, S_FREE, S_ITER_WAVE, S_COUNT };
    static const char *const names[S_COUNT] = {
        "process, handshaking handle",     "process, flowing (no wave)", "process, flowing (during a wave)",
        "redtls_async_connect",            "redtls_async_new",           "redtls_async_free (close_notify)",
        "loop wake during a wave (all)"};
    struct call_stats *st = calloc(S_COUNT, sizeof *st);
    struct flow *fl = calloc(1, sizeof *fl);
    struct abench *b = fl ? &fl->b : NULL;
    struct fleet f;
    struct fleet_member *m = NULL;
    unsigned long ring = 1;
    long i, warm = 2000;
    int rc = EXIT_DONE;

    memset(&f, 0, sizeof f);
    if (!st || !fl) {
        free(st);
        free(fl);
        return EXIT_CONNECT;
    }
    for (i = 0; i < S_COUNT; i++)
        st[i].name = names[i];
    redtls_status rs = redtls_config_set_tls_session_resumption(cfg_handshakes, 0);
    if (rs != REDTLS_OK) {
        free(st);
        free(fl);
        return config_failed(cfg_handshakes, "session resumption", rs);
    }
    while (ring < (unsigned long)o->inflight)
        ring <<= 1;
    b->el.ep = -1;
    b->o = o;
    b->loop = LOOP_EPOLL;
    b->nconns = o->conns;
    b->rng = o->seed * 0x9E3779B97F4A7C15ULL + 1;
    b->requests = LONG_MAX;
    b->conns = calloc((size_t)o->conns, sizeof *b->conns);
    b->cmds = calloc(1, sizeof *b->cmds);
    b->hist = calloc(1, sizeof *b->hist);
    m = fleet_members(o->stall_n, &f);
    if (!b->conns || !b->cmds || !b->hist || !m || eloop_init(&b->el, (size_t)(o->conns + o->stall_n)) != 0) {
        rc = EXIT_CONNECT;
        goto out;
    }
    prepare_cmd(b->cmds, TEST_GET, "", 0, o->hash_tag);
    b->ncmds = 1;
    for (i = 0; i < o->conns; i++) {
        struct aconn *c = &b->conns[i];
        redtls_status s = redtls_async_new(cfg, &c->ac);
        c->b = b;
        c->mask = ring - 1;
        c->issued_at = calloc(ring, sizeof *c->issued_at);
        if (s != REDTLS_OK) {
            rc = config_failed(cfg, "configuration", s);
            goto out;
        }
        if (!c->issued_at || !eloop_add(&b->el, c->ac, NULL) ||
            redtls_async_connect(c->ac, on_connected, c) != REDTLS_OK) {
            rc = EXIT_CONNECT;
            goto out;
        }
    }
    if (eloop_run(&b->el, phase_deadline()) != 0 || b->failed != REDTLS_OK || b->connected != b->nconns) {
        rc = EXIT_CONNECT;
        goto out;
    }
    /* Their calls are timed from now on (their own handshakes are not
     * the point). */
    for (size_t j = 0; j < b->el.n; j++)
        b->el.slots[j]->stats = &st[S_FLOW_QUIET];
    for (long k = 0; k < o->inflight; k++)
        for (i = 0; i < o->conns; i++)
            if (flow_issue(&b->conns[i]) != 0) {
                rc = EXIT_CONNECT;
                goto out;
            }
    fl->until = b->done + warm;
    if (eloop_run(&b->el, phase_deadline()) != 0 || b->failed != REDTLS_OK) {
        rc = EXIT_CONNECT;
        goto out;
    }
    long hs_done = 0;
    uint64_t wave_wall_max = 0;
    for (long w = 0; w < o->waves; w++) {
        /* The flowing handles' calls count as "during a wave" from the
         * first new handle to the last connect callback. */
        for (size_t j = 0; j < b->el.n; j++)
            b->el.slots[j]->stats = &st[S_FLOW_WAVE];
        b->el.iter = &st[S_ITER_WAVE];
        uint64_t w0 = now_ns();
        if (fleet_make(&f, &b->el, cfg_handshakes, o->stall_n, &st[S_NEW], &st[S_HS]) != 0 ||
            fleet_connect_all(&f, m, &st[S_CONNECT]) != 0) {
            rc = EXIT_CONNECT;
            goto out;
        }
        f.want_connected = o->stall_n;
        fl->until = 0;
        if (eloop_run(&b->el, phase_deadline()) != 0 || f.failed || b->failed != REDTLS_OK) {
            rc = f.failed ? fleet_report_failure(&f, "connect") : EXIT_CONNECT;
            goto out;
        }
        uint64_t w1 = now_ns();
        if (w1 - w0 > wave_wall_max)
            wave_wall_max = w1 - w0;
        hs_done += f.connected;
        b->el.iter = NULL;
        fleet_free(&f, &st[S_FREE]);
        for (size_t j = 0; j < b->el.n; j++)
            b->el.slots[j]->stats = &st[S_FLOW_QUIET];
        fl->until = b->done + warm;
        if (eloop_run(&b->el, phase_deadline()) != 0 || b->failed != REDTLS_OK) {
            rc = EXIT_CONNECT;
            goto out;
        }
    }
    /* Drain: no more commands, every reply in. */
    b->requests = b->sent;
    fl->until = b->sent;
    if (b->done < b->sent && eloop_run(&b->el, phase_deadline()) != 0) {
        rc = EXIT_CONNECT;
        goto out;
    }

    uint64_t longest = 0, longest_cpu = 0;
    for (i = S_HS; i <= S_FREE; i++) {
        if (st[i].max_wall > longest)
            longest = st[i].max_wall;
        if (st[i].max_cpu > longest_cpu)
            longest_cpu = st[i].max_cpu;
    }
    if (o->format == FORMAT_CSV)
        puts("kind,call,calls,p50_us,p99_us,p999_us,max_us,max_cpu_us");
    else if (o->format == FORMAT_TABLE)
        printf("redtls-bench %s  %s  loop stall: %ld waves of %ld full TLS handshakes started at once, while %ld "
               "connection(s) keep %ld GETs in flight\n"
               "(%ld handshakes, %ld GETs; wall from clock_gettime around each call, CPU = the thread's own)\n"
               "%-34s %8s %9s %9s %9s %9s %10s\n",
               redtls_version(), url, o->waves, o->stall_n, o->conns, o->inflight, hs_done, b->done, "call",
               "calls", "p50 us", "p99 us", "p99.9 us", "max us", "max CPU us");
    for (i = 0; i < S_COUNT; i++)
        print_stats(o, &st[i]);
    if (o->format == FORMAT_CSV)
        printf("stall,longest_call,,,,,%.1f,%.1f\nstall,longest_wave_ms,,,,,%.1f,\n", (double)longest / 1e3,
               (double)longest_cpu / 1e3, (double)wave_wall_max / 1e6);
    else if (o->format == FORMAT_JSON)
        printf("{\"kind\":\"stall\",\"call\":\"longest\",\"max_us\":%.1f,\"max_cpu_us\":%.1f,\"longest_wave_ms\":%.1f}\n",
               (double)longest / 1e3, (double)longest_cpu / 1e3, (double)wave_wall_max / 1e6);
    else
        printf("longest single call into redtls: %.1f us wall, %.1f us thread CPU (goal: under 1000 us); "
               "longest wave: %.1f ms\n",
               (double)longest / 1e3, (double)longest_cpu / 1e3, (double)wave_wall_max / 1e6);
    if (b->errors)
        rc = EXIT_ERROR_REPLY;
out:
    fleet_free(&f, NULL);
    if (b && b->conns)
        for (i = 0; i < o->conns; i++) {
            redtls_async_free(b->conns[i].ac);
            free(b->conns[i].issued_at);
        }
    if (b) {
        eloop_free(&b->el);
        free(b->conns);
        free(b->cmds);
        free(b->hist);
    }
    free(fl);
    free(st);
    free(m);
    return rc;
}

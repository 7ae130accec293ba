/* The loops, the callback tally and the set of the asynchronous
 * integration tests; see lab_async.h. */
#include "lab_async.h"

#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LAB_HAVE_LIBUV
#include <redtls/async_libuv.h>
#endif
#ifdef LAB_HAVE_LIBEVENT
#include <redtls/async_libevent.h>
#endif

#include "lab.h"

#define LAB_LOOP_HANDLES 64
/* The longest a turn of an adapter's loop may block: how often a test's
 * condition is looked at when no handle has anything to do. */
#define LAB_TICK_MS 10

struct lab_loop {
    lab_loop_kind kind;
    redtls_async *handles[LAB_LOOP_HANDLES];
    size_t n;
#ifdef LAB_HAVE_LIBUV
    uv_loop_t uv;
    uv_timer_t uv_tick;
#endif
#ifdef LAB_HAVE_LIBEVENT
    struct event_base *base;
    struct event *ev_tick;
#endif
};

const char *lab_loop_name(lab_loop_kind kind)
{
    switch (kind) {
    case LAB_LOOP_BUILTIN:
        return "built-in";
    case LAB_LOOP_LIBUV:
        return "libuv";
    case LAB_LOOP_LIBEVENT:
        return "libevent";
    }
    return "?";
}

int lab_loop_available(lab_loop_kind kind)
{
    switch (kind) {
    case LAB_LOOP_BUILTIN:
        return 1;
    case LAB_LOOP_LIBUV:
#ifdef LAB_HAVE_LIBUV
        return 1;
#else
        return 0;
#endif
    case LAB_LOOP_LIBEVENT:
#ifdef LAB_HAVE_LIBEVENT
        return 1;
#else
        return 0;
#endif
    }
    return 0;
}

#ifdef LAB_HAVE_LIBUV
/* Keeps uv_run(UV_RUN_ONCE) from blocking longer than a tick. */
static void lab_uv_tick(uv_timer_t *t)
{
    (void)t;
}
#endif

#ifdef LAB_HAVE_LIBEVENT
static void lab_ev_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}
#endif

lab_loop *lab_loop_new(lab_loop_kind kind)
{
    if (!lab_loop_available(kind))
        return NULL;
    lab_loop *lp = calloc(1, sizeof *lp);
    if (lp == NULL)
        return NULL;
    lp->kind = kind;
#ifdef LAB_HAVE_LIBUV
    if (kind == LAB_LOOP_LIBUV) {
        if (uv_loop_init(&lp->uv) != 0) {
            free(lp);
            return NULL;
        }
        uv_timer_init(&lp->uv, &lp->uv_tick);
        uv_timer_start(&lp->uv_tick, lab_uv_tick, LAB_TICK_MS, LAB_TICK_MS);
    }
#endif
#ifdef LAB_HAVE_LIBEVENT
    if (kind == LAB_LOOP_LIBEVENT) {
        struct timeval tv = {0, LAB_TICK_MS * 1000};
        lp->base = event_base_new();
        lp->ev_tick = lp->base ? event_new(lp->base, -1, EV_PERSIST, lab_ev_tick, NULL) : NULL;
        if (lp->ev_tick == NULL || event_add(lp->ev_tick, &tv) != 0) {
            if (lp->ev_tick)
                event_free(lp->ev_tick);
            if (lp->base)
                event_base_free(lp->base);
            free(lp);
            return NULL;
        }
    }
#endif
    return lp;
}

int lab_loop_add(lab_loop *lp, redtls_async *ac)
{
    redtls_status st = REDTLS_OK;
    if (lp->n == LAB_LOOP_HANDLES) {
        fprintf(stderr, "lab_loop_add: more than %d handles\n", LAB_LOOP_HANDLES);
        return -1;
    }
#ifdef LAB_HAVE_LIBUV
    if (lp->kind == LAB_LOOP_LIBUV)
        st = redtls_async_attach_libuv(ac, &lp->uv);
#endif
#ifdef LAB_HAVE_LIBEVENT
    if (lp->kind == LAB_LOOP_LIBEVENT)
        st = redtls_async_attach_libevent(ac, lp->base);
#endif
    if (st != REDTLS_OK) {
        fprintf(stderr, "lab_loop_add: attaching to %s: %s\n", lab_loop_name(lp->kind), redtls_strerror(st));
        return -1;
    }
    lp->handles[lp->n++] = ac;
    return 0;
}

void lab_loop_forget(lab_loop *lp, redtls_async *ac)
{
    for (size_t i = 0; i < lp->n; i++) {
        if (lp->handles[i] == ac) {
            lp->handles[i] = lp->handles[--lp->n];
            lp->handles[lp->n] = NULL;
            return;
        }
    }
}

/* One turn without waiting: close callbacks and the like. */
static void lab_loop_nowait(lab_loop *lp)
{
#ifdef LAB_HAVE_LIBUV
    if (lp->kind == LAB_LOOP_LIBUV)
        uv_run(&lp->uv, UV_RUN_NOWAIT);
#endif
#ifdef LAB_HAVE_LIBEVENT
    if (lp->kind == LAB_LOOP_LIBEVENT)
        event_base_loop(lp->base, EVLOOP_NONBLOCK);
#endif
    (void)lp;
}

void lab_loop_free_handle(lab_loop *lp, redtls_async *ac)
{
    if (ac == NULL)
        return;
    lab_loop_forget(lp, ac);
    redtls_async_free(ac);
    lab_loop_nowait(lp);
}

/* One turn of the loop, blocking at most about max_ms. */
static void lab_loop_turn(lab_loop *lp, int max_ms)
{
    switch (lp->kind) {
    case LAB_LOOP_BUILTIN:
        /* REDTLS_OK before the time is up: nothing pending, so nothing
         * would wake it; the test's condition may still depend on time. */
        if (redtls_async_run(lp->handles, lp->n, max_ms) == REDTLS_OK)
            poll(NULL, 0, max_ms < 2 ? max_ms : 2);
        break;
    case LAB_LOOP_LIBUV:
#ifdef LAB_HAVE_LIBUV
        uv_run(&lp->uv, UV_RUN_ONCE);
#endif
        break;
    case LAB_LOOP_LIBEVENT:
#ifdef LAB_HAVE_LIBEVENT
        event_base_loop(lp->base, EVLOOP_ONCE);
#endif
        break;
    }
}

int lab_loop_run_until(lab_loop *lp, int (*done)(void *ud), void *ud, int ms)
{
    long long end = lab_now_ms() + ms;
    for (;;) {
        if (done != NULL && done(ud))
            return 1;
        long long left = end - lab_now_ms();
        if (left <= 0)
            return done == NULL;
        lab_loop_turn(lp, left < LAB_TICK_MS ? (int)left : LAB_TICK_MS);
    }
}

int lab_loop_free(lab_loop *lp)
{
    int rc = 0;
    if (lp == NULL)
        return 0;
    while (lp->n > 0)
        lab_loop_free_handle(lp, lp->handles[lp->n - 1]);
#ifdef LAB_HAVE_LIBUV
    if (lp->kind == LAB_LOOP_LIBUV) {
        uv_close((uv_handle_t *)&lp->uv_tick, NULL);
        for (int i = 0; i < 100 && uv_loop_alive(&lp->uv); i++)
            uv_run(&lp->uv, UV_RUN_NOWAIT);
        if (uv_loop_close(&lp->uv) != 0) {
            fprintf(stderr, "lab_loop_free: the libuv loop still has handles (an adapter's, not released)\n");
            rc = -1;
        }
    }
#endif
#ifdef LAB_HAVE_LIBEVENT
    if (lp->kind == LAB_LOOP_LIBEVENT) {
        event_free(lp->ev_tick);
        /* Events left behind would be an adapter's, never released. */
        if (event_base_get_num_events(lp->base, EVENT_BASE_COUNT_ADDED) != 0) {
            fprintf(stderr, "lab_loop_free: the event_base still has events (an adapter's, not released)\n");
            rc = -1;
        }
        event_base_free(lp->base);
    }
#endif
    free(lp);
    return rc;
}

/* ----- the tally ------------------------------------------------------------ */

lab_tally *lab_tally_new(size_t cap)
{
    lab_tally *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->cmd = calloc(cap, sizeof *t->cmd);
    if (t->cmd == NULL) {
        free(t);
        return NULL;
    }
    t->cap = cap;
    return t;
}

void lab_tally_free(lab_tally *t)
{
    if (t != NULL)
        free(t->cmd);
    free(t);
}

static void lab_on_reply(redtls_async *ac, redtls_status st, struct redisReply *r, void *ud)
{
    lab_acmd *c = ud;
    lab_tally *t = c->tally;
    if (c->calls++ == 0)
        t->done++;
    c->st = st;
    if ((unsigned)st < sizeof t->by_status / sizeof t->by_status[0])
        t->by_status[st]++;
    if ((st == REDTLS_OK) != (r != NULL))
        t->bad_reply++;
    if (r != NULL) {
        c->type = r->type;
        c->integer = r->integer;
        if (r->str != NULL)
            snprintf(c->str, sizeof c->str, "%.*s", (int)(r->len < 63 ? r->len : 63), r->str);
    }
    if (st != REDTLS_OK)
        snprintf(c->msg, sizeof c->msg, "%s", redtls_async_errmsg(ac));
    if (t->after != NULL)
        t->after(t, ac, c, r);
    redtls_reply_free(r);
}

redtls_status lab_issue_argv(lab_tally *t, redtls_async *ac, unsigned flags, int argc, const char **argv,
                             size_t *id)
{
    if (t->issued == t->cap) {
        fprintf(stderr, "lab_issue: the tally holds %zu commands\n", t->cap);
        return REDTLS_E_NOMEM;
    }
    lab_acmd *c = &t->cmd[t->issued];
    memset(c, 0, sizeof *c);
    c->tally = t;
    c->id = t->issued;
    /* Counted before the call: a pass run from inside it could call back. */
    t->issued++;
    redtls_status st = redtls_async_command_argv(ac, flags, argc, argv, NULL, lab_on_reply, c);
    if (st != REDTLS_OK) {
        t->issued--;
        return st;
    }
    if (id != NULL)
        *id = c->id;
    return REDTLS_OK;
}

redtls_status lab_issue(lab_tally *t, redtls_async *ac, unsigned flags, const char *line, size_t *id)
{
    char words[16][128];
    const char *argv[16];
    int argc = 0;
    for (const char *p = line; *p != '\0' && argc < 16;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n == 0)
            break;
        snprintf(words[argc], sizeof words[argc], "%.*s", (int)(n < 127 ? n : 127), p);
        argv[argc] = words[argc];
        argc++;
        p += n;
    }
    return lab_issue_argv(t, ac, flags, argc, argv, id);
}

void lab_on_connect(redtls_async *ac, redtls_status st, void *ud)
{
    lab_aconn *c = ud;
    c->calls++;
    c->st = st;
    snprintf(c->msg, sizeof c->msg, "%s", st == REDTLS_OK ? "" : redtls_async_errmsg(ac));
}

size_t lab_tally_owed(const lab_tally *t)
{
    return t->issued - t->done;
}

int lab_tally_check(const lab_tally *t, const char *what)
{
    int bad = 0;
    for (size_t i = 0; i < t->issued; i++) {
        if (t->cmd[i].calls != 1) {
            if (bad++ < 10)
                fprintf(stderr, "%s: command %zu: callback called %d times (last status %s)\n", what, i,
                        t->cmd[i].calls, redtls_strerror(t->cmd[i].st));
        }
    }
    if (bad > 10)
        fprintf(stderr, "%s: ... %d commands in all not called exactly once\n", what, bad);
    if (t->bad_reply) {
        fprintf(stderr, "%s: %d callbacks had a reply that did not match their status\n", what, t->bad_reply);
        bad++;
    }
    return bad ? -1 : 0;
}

int lab_aconn_check(const lab_aconn *c, const char *what)
{
    if (c->calls == 1)
        return 0;
    fprintf(stderr, "%s: connect callback called %d times\n", what, c->calls);
    return -1;
}

/* ----- a test's set ------------------------------------------------------- */

int lab_async_env_open(lab_async_env *e, lab_loop_kind kind, size_t cap)
{
    e->loop = lab_loop_new(kind);
    e->tally = lab_tally_new(cap);
    if (e->loop == NULL || e->tally == NULL) {
        fprintf(stderr, "lab_async_env_open: no %s loop or no tally (%s)\n", lab_loop_name(kind),
                lab_loop_available(kind) ? "out of memory" : "not built");
        return -1;
    }
    return 0;
}

redtls_async *lab_async_env_handle(lab_async_env *e)
{
    redtls_async *ac = NULL;
    redtls_status st = redtls_async_new(e->cfg, &ac);
    if (st != REDTLS_OK) {
        fprintf(stderr, "lab_async_env_handle: redtls_async_new: %s: %s\n", redtls_strerror(st),
                redtls_config_errmsg(e->cfg));
        return NULL;
    }
    if (lab_loop_add(e->loop, ac) != 0) {
        redtls_async_free(ac);
        return NULL;
    }
    return ac;
}

static int lab_none_owed(void *ud)
{
    return lab_tally_owed(ud) == 0;
}

int lab_async_env_run_all(lab_async_env *e, int ms)
{
    return lab_loop_run_until(e->loop, lab_none_owed, e->tally, ms);
}

int lab_async_env_free(lab_async_env *e)
{
    int rc = lab_loop_free(e->loop);
    lab_tally_free(e->tally);
    redtls_conn_free(e->admin);
    redtls_config_free(e->cfg);
    memset(e, 0, sizeof *e);
    return rc;
}

/* The blocking subscriber: an asynchronous handle with subscriptions,
 * driven by its own poll(2) loop until a message is there or the time is
 * up. Messages are copied out of the callbacks into a queue. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <redtls/pubsub.h>

#include "async_internal.h"
#include "pubsub.h"
#include "subscriber.h"
#include "wait.h"

static int is_waited(const redtls_subscriber *s, const redtls_message *m)
{
    return s->waiting && !s->answered && m->kind == s->w_kind && m->sub_len == s->w_len &&
           memcmp(m->sub, s->w_name, s->w_len) == 0;
}

/* A copy that owns its bytes: the subscription's name, the channel and
 * the payload, each followed by a NUL. */
static redtls_message *copy_message(const redtls_message *m)
{
    size_t n = m->sub_len + m->channel_len + m->payload_len + strlen(redtls_message_detail(m)) + 4;
    /* malloc: every field is set below (see claim in async_pubsub.c). */
    redtls_message *c = malloc(sizeof *c);
    char *b = c ? malloc(n) : NULL;
    if (!b) {
        free(c);
        return NULL;
    }
    *c = (redtls_message){.type = m->type, .kind = m->kind, .status = m->status, .owned = b};
    const char *parts[4] = {m->sub, m->channel, m->payload, redtls_message_detail(m)};
    size_t lens[4] = {m->sub_len, m->channel_len, m->payload_len, strlen(parts[3])};
    const char **outs[4] = {&c->sub, &c->channel, &c->payload, &c->detail};
    for (int i = 0; i < 4; i++) {
        if (lens[i])
            memcpy(b, parts[i], lens[i]);
        b[lens[i]] = '\0';
        *outs[i] = parts[i] || i == 3 ? b : NULL;
        b += lens[i] + 1;
    }
    c->sub_len = m->sub_len;
    c->channel_len = m->channel_len;
    c->payload_len = m->payload_len;
    return c;
}

void redtls__subscriber_take(redtls_subscriber *s, const redtls_message *m)
{
    if (is_waited(s, m) && (m->type == REDTLS_MSG_SUBSCRIBED || m->type == REDTLS_MSG_UNSUBSCRIBED)) {
        /* SUBSCRIBED answers a subscribe; UNSUBSCRIBED an unsubscribe, or
         * a subscribe the server refused. */
        s->answered = 1;
        s->w_st = m->type == REDTLS_MSG_UNSUBSCRIBED ? m->status : REDTLS_OK;
        if (s->w_st != REDTLS_OK)
            redtls__fail(s->errmsg, s->w_st, "%s", redtls_message_detail(m));
        return;
    }
    /* Only its first confirmation is news to nobody. */
    if (m->type == REDTLS_MSG_SUBSCRIBED)
        return;
    /* Ended by its own unsubscribe, already answered: nothing to tell. */
    if (m->type == REDTLS_MSG_UNSUBSCRIBED && m->status == REDTLS_OK)
        return;
    redtls_message *c = copy_message(m);
    if (!c)
        return; /* out of memory: lost, as if the server had dropped it */
    if (s->q_tail)
        s->q_tail->next = c;
    else
        s->q_head = c;
    s->q_tail = c;
    s->backlog++;
}

/* ---- the asynchronous handle's back end ---- */

static void on_message(redtls_async *ac, const redtls_message *m, void *ud)
{
    (void)ac;
    redtls__subscriber_take(ud, m);
}

static redtls_status async_change(redtls_subscriber *s, redtls_sub_kind kind, const char *name, size_t len, int on)
{
    redtls_async *ac = s->handle;
    redtls_status st =
        on ? redtls_async_subscribe(ac, kind, name, len, on_message, s) : redtls_async_unsubscribe(ac, kind, name, len);
    if (st != REDTLS_OK)
        redtls__fail(s->errmsg, st, "%s", redtls_async_errmsg(ac));
    return st;
}

static size_t async_count(const redtls_subscriber *s)
{
    return redtls_async_subscriptions(s->handle);
}

static int64_t async_answer_ms(const redtls_subscriber *s)
{
    const redtls_async *ac = s->handle;
    unsigned ms = ac->c->cfg.command_timeout_ms;
    /* Connecting first counts too: its own timeouts bound each attempt. */
    return ms ? (int64_t)ms + ac->c->cfg.connect_timeout_ms + ac->c->cfg.handshake_timeout_ms : -1;
}

static const char *async_cause(const redtls_subscriber *s)
{
    const redtls_async *ac = s->handle;
    return ac->gave_up ? redtls_async_errmsg(ac) : redtls__conn_cause(ac->c);
}

static int async_gave_up(const redtls_subscriber *s)
{
    return ((const redtls_async *)s->handle)->gave_up;
}

static void async_restart(redtls_subscriber *s)
{
    (void)redtls_async_connect(s->handle, NULL, NULL);
}

static void async_free(redtls_subscriber *s)
{
    redtls_async_free(s->handle);
}

static int async_run_until(redtls_subscriber *s, int (*done)(const redtls_subscriber *), int64_t deadline);

static const redtls__sub_backend async_backend = {async_change, async_run_until, async_count,   async_answer_ms,
                                                  async_cause,  async_gave_up,   async_restart, async_free};

redtls_status redtls__subscriber_wrap(const redtls__sub_backend *be, void *handle, redtls_subscriber **out)
{
    redtls_subscriber *s = calloc(1, sizeof *s);
    if (!s)
        return REDTLS_E_NOMEM;
    s->be = be;
    s->handle = handle;
    *out = s;
    return REDTLS_OK;
}

redtls_status redtls_subscriber_new(redtls_config *cfg, redtls_subscriber **out)
{
    if (!out)
        return REDTLS_E_INVALID;
    *out = NULL;
    redtls_async *ac = NULL;
    redtls_status st = redtls_async_new(cfg, &ac);
    if (st != REDTLS_OK)
        return st;
    if ((st = redtls__subscriber_wrap(&async_backend, ac, out)) != REDTLS_OK)
        redtls_async_free(ac);
    return st;
}

void redtls_subscriber_free(redtls_subscriber *s)
{
    if (!s)
        return;
    /* Its callbacks (the last notices) only queue copies, freed below. */
    s->be->free(s);
    while (s->q_head) {
        redtls_message *m = s->q_head;
        s->q_head = m->next;
        redtls_message_free(m);
    }
    free(s);
}

/* Runs the handle until done(s) or the deadline (REDTLS__NO_DEADLINE: no
 * limit). 1 when done, 0 when time ran out; -1 when poll failed (errmsg
 * set). */
static int async_run_until(redtls_subscriber *s, int (*done)(const redtls_subscriber *), int64_t deadline)
{
    redtls_async *ac = s->handle;
    for (;;) {
        redtls_async_process(ac, 0);
        if (done(s))
            return 1;
        int64_t now = redtls__now_ms();
        if (now >= deadline)
            return 0;
        int64_t wake = deadline;
        int ms = redtls_async_timeout_ms(ac);
        if (ms >= 0)
            wake = redtls__deadline_min(wake, now + ms);
        int fd = redtls_async_fd(ac), ev = redtls_async_events(ac);
        struct pollfd p = {fd, (short)((ev & REDTLS_ASYNC_READ ? POLLIN : 0) | (ev & REDTLS_ASYNC_WRITE ? POLLOUT : 0)),
                           0};
        if (poll(&p, fd >= 0 && ev ? 1 : 0, redtls__poll_timeout(wake)) < 0 && errno != EINTR) {
            redtls__fail(s->errmsg, REDTLS_E_IO, "poll: %s", strerror(errno));
            return -1;
        }
    }
}

static int answer_done(const redtls_subscriber *s)
{
    return s->answered;
}

static int message_done(const redtls_subscriber *s)
{
    return s->q_head != NULL;
}

static redtls_status call(redtls_subscriber *s, redtls_sub_kind kind, const char *name, size_t len, int subscribe)
{
    if (!s)
        return REDTLS_E_INVALID;
    s->errmsg[0] = '\0';
    /* The reconnect limits ran out in an earlier call: start again. */
    if (s->be->gave_up(s))
        s->be->restart(s);
    redtls_status st = s->be->change(s, kind, name, len, subscribe);
    if (st != REDTLS_OK)
        return st;
    if (!subscribe) {
        /* Nothing of it is delivered from now on, waiting or not. */
        redtls_message *keep = s->q_head;
        s->q_head = s->q_tail = NULL;
        while (keep) {
            redtls_message *m = keep;
            keep = m->next;
            m->next = NULL;
            if (m->kind == kind && m->sub_len == len && memcmp(m->sub, name, len) == 0) {
                s->backlog--;
                redtls_message_free(m);
                continue;
            }
            if (s->q_tail)
                s->q_tail->next = m;
            else
                s->q_head = m;
            s->q_tail = m;
        }
    }
    int64_t ms = s->be->answer_ms(s);
    int64_t deadline = ms >= 0 ? redtls__now_ms() + ms : REDTLS__NO_DEADLINE;
    s->waiting = 1;
    s->answered = 0;
    s->w_kind = kind;
    s->w_name = name;
    s->w_len = len;
    s->w_st = REDTLS_OK;
    int rc = s->be->run_until(s, answer_done, deadline);
    s->waiting = 0;
    if (rc < 0)
        return REDTLS_E_IO;
    if (rc == 0) {
        const char *cause = s->be->cause(s);
        return redtls__fail(s->errmsg, REDTLS_E_COMMAND_TIMEOUT,
                            "the server did not confirm the %s in time%s%.300s%s; it stays and may still be "
                            "confirmed",
                            subscribe ? "subscription" : "unsubscription", cause[0] ? " (last failure: " : "", cause,
                            cause[0] ? ")" : "");
    }
    return s->w_st;
}

redtls_status redtls_subscriber_subscribe(redtls_subscriber *s, redtls_sub_kind kind, const char *name, size_t len)
{
    return call(s, kind, name, len, 1);
}

redtls_status redtls_subscriber_unsubscribe(redtls_subscriber *s, redtls_sub_kind kind, const char *name, size_t len)
{
    return call(s, kind, name, len, 0);
}

redtls_status redtls_subscriber_next(redtls_subscriber *s, int timeout_ms, redtls_message **out)
{
    if (!out)
        return REDTLS_E_INVALID;
    *out = NULL;
    if (!s)
        return REDTLS_E_INVALID;
    s->errmsg[0] = '\0';
    if (!s->q_head) {
        if (!s->be->count(s))
            return redtls__fail(s->errmsg, REDTLS_E_STATE, "no subscription: subscribe first");
        /* The reconnect limits ran out in an earlier call: start again. */
        if (s->be->gave_up(s))
            s->be->restart(s);
        int64_t deadline = timeout_ms < 0 ? REDTLS__NO_DEADLINE : redtls__now_ms() + timeout_ms;
        if (s->be->run_until(s, message_done, deadline) < 0)
            return REDTLS_E_IO;
        if (!s->q_head && s->be->gave_up(s))
            return redtls__fail(s->errmsg, REDTLS_E_UNAVAILABLE, "%s", s->be->cause(s));
    }
    redtls_message *m = s->q_head;
    if (m) {
        s->q_head = m->next;
        if (!s->q_head)
            s->q_tail = NULL;
        m->next = NULL;
        s->backlog--;
    }
    *out = m;
    return REDTLS_OK;
}

size_t redtls_subscriber_backlog(const redtls_subscriber *s)
{
    return s ? s->backlog : 0;
}

const char *redtls_subscriber_errmsg(const redtls_subscriber *s)
{
    return s ? s->errmsg : "";
}

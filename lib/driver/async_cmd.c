/* The asynchronous API's command records: issuing a command (framed
 * straight into the connection's buffer, or queued with its own bytes),
 * reusing records, ending them, and taking back those framed but never
 * written. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "async_internal.h"

/* Spare records kept for reuse: a pipeline frees one and issues one per
 * reply, so a few cover any depth. */
#define ACMD_POOL_MAX 64

static redtls__acmd *acmd_get(redtls_async *ac)
{
    redtls__acmd *m = ac->pool;
    if (!m)
        return calloc(1, sizeof *m);
    ac->pool = m->next;
    ac->npool--;
    memset(m, 0, sizeof *m);
    return m;
}

void redtls__acmd_free(redtls_async *ac, redtls__acmd *m)
{
    if (m->frame && !m->borrowed)
        free(m->frame);
    if (ac->npool < (ac->pool_max ? ac->pool_max : ACMD_POOL_MAX)) {
        m->frame = NULL;
        m->next = ac->pool;
        ac->pool = m;
        ac->npool++;
    } else {
        free(m);
    }
}

/* A command issued without a callback: its reply is dropped. */
static void discard_reply(redtls_async *ac, redtls_status st, redisReply *reply, void *ud)
{
    (void)ac;
    (void)st;
    (void)ud;
    freeReplyObject(reply);
}

/* Ends every command of a list with st and the handle's message (for
 * those that are still owed a callback); the records are freed. The list
 * is taken first, so a callback may issue new commands. */
void redtls__async_finish_all(redtls_async *ac, redtls__acmd **head, redtls__acmd **tail, redtls_status st)
{
    redtls__acmd *m = *head;
    *head = *tail = NULL;
    /* Each callback reads the same message, whatever the ones before it
     * did (a command issued from a callback clears it). */
    char msg[REDTLS__ERRMSG_MAX];
    memcpy(msg, ac->c->errmsg, sizeof msg);
    while (m) {
        redtls__acmd *next = m->next;
        if (m->cb) {
            memcpy(ac->c->errmsg, msg, sizeof msg);
            redtls__async_finish(ac, m, st, NULL);
        }
        redtls__acmd_free(ac, m);
        m = next;
    }
}

/* Issues one command: framed into the connection's buffer when
 * redtls__async_frame_now allows (argv given; the bytes kept in frame only
 * for an idempotent command's resend), else queued with its own frame
 * (given, or made from argv). */
static redtls_status issue(redtls_async *ac, unsigned flags, char *frame, size_t len, int argc, const char **argv,
                           const size_t *argvlen, redtls_async_reply_cb cb, void *ud)
{
    redtls_conn *c = ac->c;
    redtls__acmd *m = acmd_get(ac);
    if (!m) {
        free(frame);
        return redtls__fail(c->errmsg, REDTLS_E_NOMEM, "out of memory");
    }
    /* Inside a pass the pass's time will do (the deadline counts from
     * the callback that issued the command, give or take the pass). */
    int64_t now = ac->in_process ? ac->now : redtls__async_clock_now(ac);
    m->cb = cb ? cb : discard_reply;
    m->ud = ud;
    m->flags = flags;
    m->deadline = redtls__deadline_from(now, c->cfg.command_timeout_ms);
    redtls_status st;
    if (redtls__async_frame_now(ac, now)) {
        size_t before = c->olen;
        st = frame ? redtls__conn_append_raw(c, frame, len) : redtls__conn_append_checked(c, argc, argv, argvlen);
        if (st == REDTLS_OK)
            m->len = c->olen - before; /* its share of the buffer (unframe_tail) */
        if (st == REDTLS_OK && (flags & REDTLS_CMD_IDEMPOTENT)) {
            if (frame) {
                m->frame = frame;
                frame = NULL;
            } else if ((m->frame = malloc(c->olen - before)) != NULL) {
                memcpy(m->frame, c->obuf + before, c->olen - before);
            } else {
                c->olen = before;
                c->pending--;
                c->unsent--;
                st = redtls__fail(c->errmsg, REDTLS_E_NOMEM, "out of memory");
            }
        }
        free(frame);
        if (st != REDTLS_OK) {
            redtls__acmd_free(ac, m);
            return st;
        }
        /* The silence rule counts from when replies start being owed. */
        if (!ac->s_head)
            ac->last_read = now;
        redtls__async_s_push(ac, m);
    } else {
        if (!frame) {
            size_t cap = 0;
            len = 0;
            if ((st = redtls__format_argv(&frame, &len, &cap, argc, argv, argvlen)) != REDTLS_OK) {
                free(frame);
                redtls__acmd_free(ac, m);
                return redtls__fail(c->errmsg, st, "out of memory formatting the command");
            }
        }
        m->frame = frame;
        m->len = len;
        redtls__alist_push(&ac->q_head, &ac->q_tail, m);
    }
    ac->n_alive++;
    /* From a callback on a usable connection the pass itself writes it
     * (or says so when it ends); otherwise a pass is wanted soon. */
    if (ac->in_process && ac->up && !ac->readying)
        ac->issued_in_pass = 1;
    else
        ac->wanted = 1;
    redtls__async_kick(ac);
    return REDTLS_OK;
}

static redtls_status check_issue(redtls_async *ac)
{
    ac->c->errmsg[0] = '\0';
    if (ac->n_alive >= ac->max_pending)
        return redtls__fail(ac->c->errmsg, REDTLS_E_LIMIT,
                            "%zu commands are queued or in flight, the limit (redtls_async_set_max_pending): wait for "
                            "replies before issuing more",
                            ac->n_alive);
    if (ac->gave_up)
        return redtls__fail(ac->c->errmsg, REDTLS_E_UNAVAILABLE,
                            "gave up reconnecting (last failure: %.300s); call redtls_async_connect to start again",
                            redtls__conn_cause(ac->c));
    return REDTLS_OK;
}

redtls_status redtls_async_command_argv(redtls_async *ac, unsigned flags, int argc, const char **argv,
                                        const size_t *argvlen, redtls_async_reply_cb cb, void *userdata)
{
    if (!ac || ac->freeing)
        return REDTLS_E_INVALID;
    redtls_status st = check_issue(ac);
    if (st != REDTLS_OK)
        return st;
    if (argc <= 0 || !argv)
        return redtls__fail(ac->c->errmsg, REDTLS_E_INVALID, "a command needs at least one argument");
    if (redtls__argv_switches_protocol(argc, argv, argvlen, ac->c->cfg.protocol))
        return redtls__conn_protocol_refused(ac->c);
    if (redtls__argv_is_sub_command(argc, argv, argvlen))
        return redtls__conn_sub_refused(ac->c);
    if (ac->n_subs && (st = redtls__async_ps_refuse(ac)) != REDTLS_OK)
        return st;
    return issue(ac, flags, NULL, 0, argc, argv, argvlen, cb, userdata);
}

redtls_status redtls__async_check_issue(redtls_async *ac)
{
    return check_issue(ac);
}

redtls_status redtls__async_issue_argv(redtls_async *ac, unsigned flags, int argc, const char **argv,
                                       const size_t *argvlen, redtls_async_reply_cb cb, void *ud)
{
    return issue(ac, flags, NULL, 0, argc, argv, argvlen, cb, ud);
}

redtls_status redtls_async_command(redtls_async *ac, redtls_async_reply_cb cb, void *userdata, const char *fmt, ...)
{
    if (!ac || ac->freeing)
        return REDTLS_E_INVALID;
    redtls_status st = check_issue(ac);
    if (st != REDTLS_OK)
        return st;
    if (!fmt)
        return redtls__fail(ac->c->errmsg, REDTLS_E_INVALID, "format is NULL");
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (n == -2)
        return redtls__fail(ac->c->errmsg, REDTLS_E_INVALID, "invalid format string");
    if (n <= 0 || !cmd)
        return redtls__fail(ac->c->errmsg, REDTLS_E_NOMEM, "out of memory formatting the command");
    char *frame = malloc((size_t)n);
    if (frame)
        memcpy(frame, cmd, (size_t)n);
#if defined(HIREDIS_MAJOR) && HIREDIS_MAJOR >= 1
    redisFreeCommand(cmd);
#else
    free(cmd);
#endif
    if (!frame)
        return redtls__fail(ac->c->errmsg, REDTLS_E_NOMEM, "out of memory");
    if (redtls__frame_switches_protocol(frame, (size_t)n, ac->c->cfg.protocol)) {
        OPENSSL_cleanse(frame, (size_t)n);
        free(frame);
        return redtls__conn_protocol_refused(ac->c);
    }
    if ((redtls__frame_is_sub_command(frame, (size_t)n) && (st = redtls__conn_sub_refused(ac->c)) != REDTLS_OK) ||
        (ac->n_subs && (st = redtls__async_ps_refuse(ac)) != REDTLS_OK)) {
        free(frame);
        return st;
    }
    return issue(ac, 0, frame, (size_t)n, 0, NULL, NULL, cb, userdata);
}

/* The connection is gone (st, the message in errmsg): commands in flight
 * are lost (resent once when idempotent), the timed-out ones' replies will
 * never come, and the connection is made again when commands wait. */
/* Takes back the commands framed into the buffer after the last write
 * began (the last c->unsent records of the list: never sent) and puts
 * them at the front of the queue with their bytes copied out of the
 * buffer. Those whose callback already ran are dropped; those whose bytes
 * cannot be copied (out of memory) go to *nomem, for the caller to end
 * once its state is settled. */
void redtls__async_unframe_tail(redtls_async *ac, redtls__acmd **nomem_head, redtls__acmd **nomem_tail)
{
    redtls_conn *c = ac->c;
    size_t k = c->unsent, n = 0, bytes = 0;
    if (k == 0)
        return;
    for (redtls__acmd *m = ac->s_head; m; m = m->next)
        n++;
    redtls__acmd *prev = NULL, *first = k <= n ? ac->s_head : NULL;
    for (size_t i = 0; first && i < n - k; i++) {
        prev = first;
        first = first->next;
    }
    for (redtls__acmd *m = first; m; m = m->next)
        bytes += m->len;
    if (!first || bytes > c->olen - c->ooff) {
        /* Never: the records and the buffer disagree. They stay as they
         * are, counted as sent (the safe side). */
        c->unsent = 0;
        return;
    }
    size_t off = c->olen - bytes;
    c->olen -= bytes;
    c->pending -= k;
    c->unsent = 0;
    if (prev) {
        prev->next = NULL;
        ac->s_tail = prev;
    } else {
        ac->s_head = ac->s_tail = NULL;
    }
    /* The records before s_live have no callback: when s_live is in the
     * tail, none is left in the list. */
    for (redtls__acmd *m = first; m; m = m->next)
        if (m == ac->s_live)
            ac->s_live = NULL;
    redtls__acmd *h = NULL, *t = NULL;
    for (redtls__acmd *m = first, *next; m; m = next) {
        next = m->next;
        if (!m->frame && m->cb && (m->frame = malloc(m->len)) != NULL)
            memcpy(m->frame, c->obuf + off, m->len);
        off += m->len;
        if (!m->cb)
            redtls__acmd_free(ac, m);
        else if (m->frame)
            redtls__alist_push(&h, &t, m);
        else
            redtls__alist_push(nomem_head, nomem_tail, m);
    }
    if (h) {
        t->next = ac->q_head;
        ac->q_head = h;
        if (!ac->q_tail)
            ac->q_tail = t;
    }
}

/* Ends, with REDTLS_E_NOMEM, the never-sent commands unframe_tail could
 * not keep. */
void redtls__async_end_unkept(redtls_async *ac, redtls__acmd **head, redtls__acmd **tail)
{
    if (!*head)
        return;
    redtls_conn *c = ac->c;
    char cause[REDTLS__ERRMSG_MAX];
    memcpy(cause, c->errmsg, sizeof cause);
    redtls__fail(c->errmsg, REDTLS_E_NOMEM, "out of memory keeping a command that was not sent");
    redtls__async_finish_all(ac, head, tail, REDTLS_E_NOMEM);
    memcpy(c->errmsg, cause, sizeof cause);
}

/* One framed command of the cluster client's: straight into the buffer
 * when it can go out in this pass, else queued with its own copy; *m is
 * its record (the caller sets the callback). */
static inline redtls_status issue_raw_one(redtls_async *ac, const char *frame, size_t len, int64_t deadline,
                                          redtls__acmd **out)
{
    redtls_conn *c = ac->c;
    redtls__acmd *m = acmd_get(ac);
    if (!m)
        return redtls__fail(c->errmsg, REDTLS_E_NOMEM, "out of memory");
    m->deadline = deadline;
    if (redtls__async_frame_now(ac, ac->in_process ? ac->now : redtls__async_clock_now(ac))) {
        size_t before = c->olen;
        if (redtls__conn_append_raw(c, frame, len) != REDTLS_OK) {
            redtls__acmd_free(ac, m);
            return redtls__fail(c->errmsg, REDTLS_E_NOMEM, "out of memory");
        }
        m->len = c->olen - before;
        if (!ac->s_head)
            ac->last_read = ac->now;
        redtls__async_s_push(ac, m);
        ac->issued_in_pass = 1;
    } else {
        /* The cluster client's op keeps its frame, unchanged, for as long
         * as this record can be written: borrowed, not copied. */
        memcpy(&m->frame, &frame, sizeof m->frame); /* const dropped: borrowed frames are never written or freed */
        m->borrowed = 1;
        m->len = len;
        redtls__alist_push(&ac->q_head, &ac->q_tail, m);
        if (ac->in_process && ac->up && !ac->readying)
            ac->issued_in_pass = 1;
        else
            ac->wanted = 1;
    }
    *out = m;
    return REDTLS_OK;
}

/* Takes back the last command issued (never written: it is at the end of
 * the queue, or the last one framed into the buffer). */
static void unissue_last(redtls_async *ac, redtls__acmd *m)
{
    redtls_conn *c = ac->c;
    if (ac->q_tail == m) {
        redtls__acmd *prev = NULL;
        for (redtls__acmd *x = ac->q_head; x != m; x = x->next)
            prev = x;
        if (prev)
            prev->next = NULL;
        else
            ac->q_head = NULL;
        ac->q_tail = prev;
    } else {
        /* Framed into the buffer, the list's last record. */
        redtls__acmd *prev = NULL;
        for (redtls__acmd *x = ac->s_head; x != m; x = x->next)
            prev = x;
        if (prev)
            prev->next = NULL;
        else
            ac->s_head = NULL;
        ac->s_tail = prev;
        if (ac->s_live == m)
            ac->s_live = NULL;
        c->olen -= m->len;
        c->pending--;
        c->unsent--;
    }
    redtls__acmd_free(ac, m);
}

redtls_status redtls__async_issue_raw(redtls_async *ac, const char *before, size_t before_len, const char *frame,
                                      size_t len, int64_t deadline, redtls_async_reply_cb cb, void *ud)
{
    if (ac->n_alive >= ac->max_pending || ac->gave_up)
        return check_issue(ac);
    ac->c->errmsg[0] = '\0';
    redtls_status st;
    redtls__acmd *first = NULL, *m = NULL;
    if (before && (st = issue_raw_one(ac, before, before_len, deadline, &first)) != REDTLS_OK)
        return st;
    st = issue_raw_one(ac, frame, len, deadline, &m);
    if (st == REDTLS_OK && !m)
        st = REDTLS_E_NOMEM; /* never: a success sets m */
    if (st != REDTLS_OK) {
        /* Both or neither: an ASKING alone would apply to whatever command
         * came next on the connection. */
        if (first)
            unissue_last(ac, first);
        return st;
    }
    if (first) {
        first->cb = discard_reply;
        ac->n_alive++;
    }
    m->cb = cb;
    m->ud = ud;
    ac->n_alive++;
    if (ac->has_hooks)
        redtls__async_kick(ac);
    return REDTLS_OK;
}

int redtls__async_cancel_queued(redtls_async *ac, const void *ud)
{
    redtls__acmd *prev = NULL;
    for (redtls__acmd *m = ac->q_head; m; prev = m, m = m->next) {
        if (m->ud != ud || !m->cb)
            continue;
        if (prev)
            prev->next = m->next;
        else
            ac->q_head = m->next;
        if (ac->q_tail == m)
            ac->q_tail = prev;
        ac->n_alive--;
        redtls__acmd_free(ac, m);
        return 1;
    }
    return 0;
}

redtls_status redtls__async_owe(redtls_async *ac, size_t len, int64_t deadline, redtls_async_reply_cb cb, void *ud)
{
    redtls__acmd *m = acmd_get(ac);
    if (!m)
        return redtls__fail(ac->c->errmsg, REDTLS_E_NOMEM, "out of memory");
    m->deadline = deadline;
    m->len = len;
    m->cb = cb;
    m->ud = ud;
    /* The silence rule counts from when replies start being owed. */
    if (!ac->s_head)
        ac->last_read = redtls__async_clock_now(ac);
    redtls__async_s_push(ac, m);
    ac->n_alive++;
    ac->wanted = 1;
    return REDTLS_OK;
}

/* The asynchronous handle's insides (lib/driver/async.c), for it and for
 * the unit tests that drive it with a fake clock. */
#ifndef REDTLS_ASYNC_INTERNAL_H
#define REDTLS_ASYNC_INTERNAL_H

#include <redtls/async.h>

#include "conn.h"

/* One command issued: its callback (NULL once called), deadline, and its
 * framed bytes until written (kept after that only for an idempotent
 * command's one resend). */
typedef struct redtls__acmd {
    struct redtls__acmd *next;
    redtls_async_reply_cb cb;
    void *ud;
    unsigned flags;
    int resent;
    int64_t deadline;
    char *frame;
    size_t len;
    int borrowed;              /* frame belongs to the cluster client's op, which
                                * outlives the record: never freed here */
    /* (A new field is set in redtls__async_issue_frame too.) */
} redtls__acmd;

struct redtls_async {
    redtls_conn *c;            /* the session: configuration, machines, queue */
    redtls__acmd *q_head, *q_tail; /* issued, not written yet */
    redtls__acmd *s_head, *s_tail; /* written, replies owed, in order */
    /* The first record of s_head's list whose callback is still owed (the
     * ones before it timed out and wait for their late replies only).
     * Deadlines grow along both lists (one timeout for all, counted from
     * issue, and s_head's commands were all issued before q_head's), so
     * the deadlines to watch are q_head's and s_live's. */
    redtls__acmd *s_live;
    redtls__acmd *pool;        /* spare records, reused */
    size_t npool, pool_max;
    size_t n_alive;            /* callbacks still to call */
    size_t max_pending;
    int up;                    /* connected and set up */
    int attempting;            /* a connection attempt under way */
    int readying;              /* the ready machine under way (PING, re-AUTH) */
    int tried;                 /* an attempt was made since the handle was made */
    int connect_asked;         /* redtls_async_connect's callback still owed */
    int gave_up;               /* the reconnect limits are exhausted */
    int wanted;                /* work was added outside a pass: process soon */
    int drained;               /* the read phase read until the transport
                                * had nothing more */
    int write_want;            /* POLLOUT: a write waits for room */
    int live_pass;             /* a reply came in this pass: the connection
                                * is in use, no idle check before writing */
    int issued_in_pass;        /* a command was issued from a callback */
    int hold;                  /* an IAM re-AUTH is due on a connection in
                                * use: nothing more goes out until the
                                * replies owed are in and it is done */
    redtls_status attempt_st;
    redtls_async_connect_cb ccb;
    void *cud;
    redtls__wait w;            /* what the machine under way waits for */
    int64_t wake_at;           /* the next attempt's time, when waiting for it */
    int64_t last_read;         /* the server last sent something */
    int64_t now;
    int64_t (*clock)(void *ud); /* monotonic ms; tests plug in a fake */
    void *clock_ud;
    int in_process, freeing;
    int busy;                  /* public calls under way that run callbacks */
    unsigned epoch;            /* bumped when everything is ended (close,
                                * free): a loop over the records stops */
    int has_hooks;
    redtls_async_hooks hooks;
    int hooked_fd, hooked_events, hooked_ms;
    int watch_failed;          /* the loop could not take the interest */
    /* Which socket the hooks were told about: a socket closed inside a
     * pass and a new one given the same number are different sockets. */
    unsigned sock_gen;         /* bumped whenever a socket closes or opens */
    unsigned hooked_gen;
    size_t hooked_dial;
    /* Set by the asynchronous cluster client for its node connections. */
    void *owner;               /* the node this handle serves */
    struct redtls__ps *ps;     /* Pub/Sub (async_pubsub.c), NULL until the
                                * first subscription */
    size_t n_subs;             /* its subscriptions */
    void (*ps_lost)(redtls_async *ac); /* the cluster client's: a connection
                                * with subscriptions was lost */
    int fail_queued;           /* a failed attempt ends the commands
                                * waiting for it with its status (the
                                * cluster sends them elsewhere); later
                                * commands still reconnect */
};

/* Tells the adapter (if any) what is wanted now. */
void redtls__async_kick(redtls_async *ac);

/* ---- the command records (async_cmd.c) ---- */

/* Gives a record back to the handle's spares (its frame freed). */
void redtls__acmd_free(redtls_async *ac, redtls__acmd *m);
/* Ends every command of a list with st and the handle's message (those
 * still owed a callback); the records are freed. */
void redtls__async_finish_all(redtls_async *ac, redtls__acmd **head, redtls__acmd **tail, redtls_status st);
/* Takes the commands framed after the last write began back to the front
 * of the queue; those that cannot be kept go to *nomem. */
void redtls__async_unframe_tail(redtls_async *ac, redtls__acmd **nomem_head, redtls__acmd **nomem_tail);
/* Ends those with REDTLS_E_NOMEM. */
void redtls__async_end_unkept(redtls_async *ac, redtls__acmd **head, redtls__acmd **tail);

/* Internal flags of a record (beside REDTLS_CMD_*): Pub/Sub's own
 * SUBSCRIBE and UNSUBSCRIBE, whose confirmations pair with them. */
#define REDTLS__ACMD_PS_SUB (1u << 16)
#define REDTLS__ACMD_PS_UNSUB (1u << 17)

/* What every new command is checked for: the pending limit, the reconnect
 * limits exhausted (the message set, errmsg cleared otherwise). */
redtls_status redtls__async_check_issue(redtls_async *ac);

/* Issues a command as redtls_async_command_argv does, without the checks
 * of what it asks (Pub/Sub's own commands). */
redtls_status redtls__async_issue_argv(redtls_async *ac, unsigned flags, int argc, const char **argv,
                                       const size_t *argvlen, redtls_async_reply_cb cb, void *ud);

/* ---- Pub/Sub (async_pubsub.c) ---- */

/* 1 when the handle has subscriptions: the connection reads without
 * commands owed, skips the idle checks (messages arrive unasked) and is
 * kept alive with PINGs. */
static inline int redtls__async_subscribed(const redtls_async *ac)
{
    return ac->n_subs != 0;
}
/* Down, and nothing will connect it again by itself (reconnection off, or
 * its limits exhausted): its subscriptions wait for redtls_async_connect. */
static inline int redtls__async_stuck(const redtls_async *ac)
{
    return !ac->up && !ac->attempting && ac->tried && (ac->gave_up || !ac->c->cfg.reconnect);
}
/* RESP2 and subscribed: ordinary commands are refused (REDTLS_E_STATE,
 * the message set). */
redtls_status redtls__async_ps_refuse(redtls_async *ac);
/* The connection was lost: subscriptions are to be made again. */
void redtls__async_ps_lost(redtls_async *ac);
/* A new connection is up: lost subscriptions are sent again. */
void redtls__async_ps_restore(redtls_async *ac);
/* Lost subscriptions whose SUBSCRIBE could not be issued on a live
 * connection (out of memory) are issued again. */
void redtls__async_ps_retry(redtls_async *ac);
/* Subscriptions wait for a connection (the handle reconnects for them). */
int redtls__async_ps_wants_connection(const redtls_async *ac);
/* Takes the Pub/Sub messages whole at the front of the reader's buffer
 * without reply objects and hands them to their callbacks: 0, or -1 when
 * a callback closed or freed the handle. */
int redtls__async_ps_take_views(redtls_async *ac);
/* Hands the messages read so far to their callbacks. */
void redtls__async_ps_deliver(redtls_async *ac);
/* When a keepalive PING falls due (REDTLS__NO_DEADLINE: none), and one
 * sent when it has. */
int64_t redtls__async_ps_keepalive_due(const redtls_async *ac);
/* The silence that triggers a keepalive PING. */
unsigned redtls__async_ps_keepalive_ms(const redtls_async *ac);

/* How long the server may stay silent while replies are owed before the
 * connection counts as dead (0: no limit): the command timeout, or for a
 * handle with subscriptions and no command timeout, the keepalive
 * interval (its PING must be answered within it). */
static inline int64_t redtls__async_silence_ms(const redtls_async *ac)
{
    if (ac->c->cfg.command_timeout_ms)
        return ac->c->cfg.command_timeout_ms;
    return ac->n_subs ? (int64_t)redtls__async_ps_keepalive_ms(ac) : 0;
}
void redtls__async_ps_keepalive(redtls_async *ac, int64_t now);
/* The handle is closed or freed: every subscription ends (REDTLS_E_CLOSED). */
void redtls__async_ps_end(redtls_async *ac, int freeing);
/* Frees what Pub/Sub holds (with the handle's memory). */
void redtls__async_ps_free(redtls_async *ac);

/* ---- for the asynchronous cluster client (lib/acluster) ---- */

/* Issues a framed command (copied: into the connection's buffer when it
 * can go out in this pass, else into a queued record) with its absolute
 * deadline; before (may be NULL: ASKING) goes right ahead of it, its
 * reply dropped, and both are issued or neither. */
redtls_status redtls__async_issue_raw(redtls_async *ac, const char *before, size_t before_len, const char *frame,
                                      size_t len, int64_t deadline, redtls_async_reply_cb cb, void *ud);
/* Takes a command issued with ud out of the queue if it has not been
 * written (nothing is called): 1, or 0 when it is not there. */
int redtls__async_cancel_queued(redtls_async *ac, const void *ud);
/* New tokens for the connection (redtls_conn_set_tokens' rules); with
 * REDTLS_REAUTH_NOW an open connection sends AUTH once the replies it owes
 * are in. */
redtls_status redtls__async_set_tokens(redtls_async *ac, const char *token, const char *token_alt, int flags);

/* A command the blocking cluster client's direct lane framed and wrote on
 * this connection itself (counted in the connection's pending replies,
 * len bytes): its reply is owed to cb from now, as if it had been issued
 * here, and the connection's passes take over (what is left of a write
 * included). */
redtls_status redtls__async_owe(redtls_async *ac, size_t len, int64_t deadline, redtls_async_reply_cb cb, void *ud);
/* The connection is lost (st; errmsg says why), noticed by the blocking
 * cluster client's direct lane, which reads and writes on an idle
 * connection itself: as when a pass finds it broken. */
void redtls__async_drop(redtls_async *ac, redtls_status st);

/* When process must next run (REDTLS__NO_DEADLINE: not before the socket
 * asks), on the handle's clock: redtls_async_timeout_ms without reading
 * the clock, for a loop that read it already. */
int64_t redtls__async_due(const redtls_async *ac);

/* For a loop over several connections (the cluster client's): reads the
 * replies that have come on a connection the loop saw readable and calls
 * their callbacks, without writing; a pass is then wanted for what they
 * issued, and the loop runs it in the same turn (now: the loop's clock,
 * the same as the connection's). Reading every connection before writing
 * to any sends the commands a turn's callbacks issue in one record per
 * connection. The pass that follows does not read again unless the
 * transport may have more. Does nothing on a connection not in use with
 * replies owed. */
void redtls__async_read_phase(redtls_async *ac, int64_t now);

/* Not connected, not trying, and no attempt allowed before a later time:
 * commands sent now would only wait for the backoff. */
static inline int redtls__async_down(const redtls_async *ac, int64_t now)
{
    return !ac->up && !ac->attempting && ac->tried && ac->c->next_attempt > now;
}

/* ---- small, on every command's path ---- */

static inline int64_t redtls__async_clock_now(redtls_async *ac)
{
    return ac->now = ac->c->now = ac->clock(ac->clock_ud);
}

/* May a command be framed straight into the connection's buffer, behind
 * those written? Only from a callback, on a connection known to be usable
 * without the ready machine: set up, nothing queued ahead, no re-AUTH owed, and
 * either replies owed (in use) or a reply taken in this very pass (the
 * idle check would find nothing) with no health check or IAM re-AUTH
 * due. Otherwise the command waits in the queue for the next pass. */
static inline int redtls__async_frame_now(const redtls_async *ac, int64_t now)
{
    const redtls_conn *c = ac->c;
    /* Inside a pass only: the pass writes it before any deadline is
     * looked at again (issued between passes, it could time out framed
     * and still be written after). */
    if (!ac->in_process || !ac->up || ac->readying || ac->q_head || !c->tp || c->need_reauth || ac->hold)
        return 0;
    if (ac->s_head)
        return 1;
    if (!ac->live_pass)
        return 0;
    if (c->cfg.health_check_ms && now - c->last_io >= (int64_t)c->cfg.health_check_ms)
        return 0;
    return !(redtls__iam_on(&c->cfg.iam) && redtls__iam_reauth_due(&c->cfg.iam, &c->iam));
}

static inline void redtls__alist_push(redtls__acmd **head, redtls__acmd **tail, redtls__acmd *m)
{
    m->next = NULL;
    if (*tail)
        (*tail)->next = m;
    else
        *head = m;
    *tail = m;
}

static inline redtls__acmd *redtls__alist_pop(redtls__acmd **head, redtls__acmd **tail)
{
    redtls__acmd *m = *head;
    if (m) {
        *head = m->next;
        if (!*head)
            *tail = NULL;
        m->next = NULL;
    }
    return m;
}

/* The list of commands written (or framed into the connection's buffer),
 * replies owed; see s_live in async_internal.h. */
static inline void redtls__async_s_push(redtls_async *ac, redtls__acmd *m)
{
    redtls__alist_push(&ac->s_head, &ac->s_tail, m);
    if (!ac->s_live)
        ac->s_live = m;
}

static inline redtls__acmd *redtls__async_s_pop(redtls_async *ac)
{
    redtls__acmd *m = redtls__alist_pop(&ac->s_head, &ac->s_tail);
    if (m && m == ac->s_live)
        ac->s_live = ac->s_head;
    return m;
}

/* Takes the whole list (its records still linked from *head). */
static inline void redtls__async_s_take(redtls_async *ac, redtls__acmd **head, redtls__acmd **tail)
{
    *head = ac->s_head;
    *tail = ac->s_tail;
    ac->s_head = ac->s_tail = ac->s_live = NULL;
}

/* redtls__async_issue_raw without a command before it, inline: the
 * cluster client's every command. The common cases are done here (a
 * spare record, below the limits; copied into the buffer when it can go
 * out in this pass and fits, else queued borrowing the frame), the rest
 * by the call. */
static inline redtls_status redtls__async_issue_frame(redtls_async *ac, const char *frame, size_t len,
                                                      int64_t deadline, redtls_async_reply_cb cb, void *ud)
{
    redtls_conn *c = ac->c;
    redtls__acmd *m = ac->pool;
    if (!m || ac->n_alive >= ac->max_pending || ac->gave_up)
        return redtls__async_issue_raw(ac, NULL, 0, frame, len, deadline, cb, ud);
    int direct = redtls__async_frame_now(ac, ac->in_process ? ac->now : redtls__async_clock_now(ac));
    if (direct && len > c->ocap - c->olen)
        return redtls__async_issue_raw(ac, NULL, 0, frame, len, deadline, cb, ud); /* the buffer grows */
    c->errmsg[0] = '\0';
    ac->pool = m->next;
    ac->npool--;
    /* Every field set: a spare's old values are not cleared first. */
    m->cb = cb;
    m->ud = ud;
    m->flags = 0;
    m->resent = 0;
    m->deadline = deadline;
    m->len = len;
    if (direct) {
        memcpy(c->obuf + c->olen, frame, len);
        c->olen += len;
        c->pending++;
        c->unsent++;
        m->frame = NULL;
        m->borrowed = 0;
        if (!ac->s_head)
            ac->last_read = ac->now;
        redtls__async_s_push(ac, m);
        ac->issued_in_pass = 1;
    } else {
        /* The cluster client's op keeps its frame, unchanged, for as long
         * as this record can be written: borrowed, not copied. */
        memcpy(&m->frame, &frame, sizeof m->frame); /* const dropped: borrowed frames are never written or freed */
        m->borrowed = 1;
        redtls__alist_push(&ac->q_head, &ac->q_tail, m);
        if (ac->in_process && ac->up && !ac->readying)
            ac->issued_in_pass = 1;
        else
            ac->wanted = 1;
    }
    ac->n_alive++;
    if (ac->has_hooks)
        redtls__async_kick(ac);
    return REDTLS_OK;
}

/* Calls a command's callback (once: the record no longer has one after). */
static inline void redtls__async_finish(redtls_async *ac, redtls__acmd *m, redtls_status st, redisReply *reply)
{
    redtls_async_reply_cb cb = m->cb;
    void *ud = m->ud;
    m->cb = NULL;
    ac->n_alive--;
    cb(ac, st, reply, ud);
}

#endif

/* The session: the connection object and its state machines (connect,
 * set-up, AUTH, the library's own requests), fed with the time and with
 * "readable" / "writable" / "timer due", answering what they wait for next.
 * Nothing here waits or reads the clock; drivers do (blocking.c).
 *
 * Files, each calling only those before it: conn_io.c (the transport,
 * the queue, reads and writes, the own-request exchange), auth.c (which
 * credentials, what an answer means), setup.c (probe, AUTH, SELECT,
 * SETNAME, READONLY), connect.c (the attempt: dial, TLS, set-up; backoff
 * bookkeeping), conn.c (the object: making, closing, accessors). */
#ifndef REDTLS_CONN_H
#define REDTLS_CONN_H

#include <hiredis/hiredis.h>

#include "backoff.h"
#include "config.h"
#include "conn_view.h"
#include "format.h"
#include "sock.h"

/* need_reauth: the IAM schedule (not a NOAUTH reply) asks for a new AUTH. */
#define REDTLS__REAUTH_IAM_DUE 2
/* need_reauth: a live token update asks for one (REDTLS_REAUTH_NOW on an
 * asynchronous connection): a refusal keeps the connection as it was. */
#define REDTLS__REAUTH_LIVE 3

/* What a state machine waits for next: fd ready for events (POLLIN,
 * POLLOUT; events 0: no socket), or the time at (REDTLS__NO_DEADLINE:
 * none). at <= now means "call again at once". */
typedef struct redtls__wait {
    int fd;
    int events;
    int64_t at;
} redtls__wait;

/* The caller's queued commands, set aside while the library talks to the
 * server on its own (set-up, health check, re-authentication), so the two
 * never mix on the wire. */
typedef struct redtls__saved_io {
    char *obuf;
    size_t olen, ocap, pending, unsent, lost;
    int active;
} redtls__saved_io;

/* AUTH in progress (auth.c). */
typedef struct redtls__auth {
    int kind;        /* what the credentials come from, see auth.c */
    int attempt;     /* 0, then 1 for the second token / a fresh one */
    int first;       /* token pair: the index tried first */
    int tries;       /* AUTH commands sent */
    int reused;      /* IAM: the token sent was made earlier */
    int awaiting;    /* an AUTH is on the wire */
    int hello;       /* set-up under RESP3: "HELLO 3 AUTH ..." in place of AUTH */
    int64_t deadline;
    int64_t iam_now; /* IAM: the wall-clock time the token is judged by */
    int64_t ask_at;  /* credential callback: when to ask again (pending) */
    unsigned ask_ms; /* ... and the interval after that */
    int pending_seen; /* the callback answered "pending" this attempt */
    redtls__secret token; /* the callback's token, for masking the answer */
    /* The server's answers to the two tries (masked), for the messages;
     * made by redtls__auth_start, freed by redtls__auth_reset. */
    char (*answer)[200];
} redtls__auth;

/* Set-up after TLS (setup.c). */
typedef struct redtls__setup {
    int step;
    int verdict;      /* what the TLS 1.3 probe is for, see setup.c */
    const char *what; /* the command awaited, for a timeout message */
} redtls__setup;

/* Making the connection usable before commands (ready.c). */
typedef struct redtls__ready {
    int phase;
    int once;            /* at most one attempt, no waiting for the backoff */
    int was_connected;   /* when the preparation started */
    redtls_status idle;  /* the idle check's verdict */
    int scheduled;       /* the re-AUTH under way is the IAM schedule's */
    int live;            /* ... or a live token update's */
    int64_t deadline;    /* the call's */
    int64_t ping_deadline;
    redtls_status last;  /* the last attempt's failure */
} redtls__ready;

/* One connection attempt (connect.c). */
typedef struct redtls__attempt {
    int phase;
    int want;              /* TLS: what the handshake waits for */
    int64_t call_deadline; /* no phase runs past it */
    int64_t hs_deadline;   /* TLS and set-up */
    redtls__dialer dial;
    redtls__transport *tp; /* during the TLS handshake */
} redtls__attempt;

struct redtls_conn {
    redtls_config cfg;       /* private copy */
    redtls__tls_ctx *tls;    /* NULL without TLS */
    redtls__transport *tp;   /* NULL when not connected */
    int fd;                  /* tp's socket to poll (-1: none) */
    unsigned sockets;        /* bumped when a socket of ours opens or closes
                              * (an attempt starts, a transport is attached
                              * or dropped): drivers tell sockets apart by
                              * it, not by their number */
    int stamps;              /* replies are stamped with the time (health
                              * check, buffers): see took_reply */
    int is_tls;
    redtls__reader rd;       /* its claim is conn_claim (conn_io.c) */
    /* Offered first every reply the reader says answers no command (see
     * redtls__reader_claim_fn): the Pub/Sub layer's hook, NULL by default.
     * Kept when the reader is made anew on reconnect. */
    int (*sub_claim)(void *ud, struct redisReply *r);
    void *sub_ud;
    int sub_arrays;          /* claim_arrays for every new reader */
    int msg_views;           /* a read only feeds the reader: the driver
                              * takes Pub/Sub messages from it first
                              * (redtls__reader_take_message) */
    char *obuf;              /* formatted commands not yet written */
    size_t olen, ocap;
    size_t ooff;             /* bytes of obuf already written */
    int owipe;               /* wipe obuf once written (a secret) */
    int just_wrote;          /* a request went out: its answer cannot be
                              * there yet, so a read waits first */
    /* Replies owed to the caller: lost + in flight + unsent. */
    size_t pending;
    size_t unsent;           /* commands in obuf, not written yet */
    size_t lost;             /* written on a connection that broke */
    int preferred;           /* token tried first: 0 = token, 1 = token_alt */
    int need_reauth;         /* a reply said NOAUTH, or REDTLS__REAUTH_IAM_DUE */
    /* Reconnection. */
    redtls__backoff backoff;
    unsigned attempts;       /* failed attempts in the current outage */
    int64_t outage_start;    /* when the first of them failed; 0: none */
    int64_t next_attempt;    /* no attempt before this time */
    int gave_up;             /* reconnect limits exhausted */
    int established;         /* connected and announced (events) */
    int64_t last_io;         /* last successful read (health check) */
    int64_t quiet_at;        /* when it last had nothing owed (buffers) */
    int lean;                /* the transport holds its buffers only while a
                              * record is in hand: see redtls__conn_went_quiet */
    int lean_writes;         /* writes since it went lean, set-up's aside */
    int64_t now;             /* the time the driver last passed in */
    redtls__iam_state iam;   /* IAM: the token in use, when it was made and accepted */
    redtls__tls_session session; /* for resumption on reconnect */
    redtls_status last_status; /* of the last failed attempt */
    int no_time;             /* the last ensure_once made no attempt: the
                              * deadline had passed */
    redtls__attempt at;
    redtls__ready ready;
    redtls__resolve *dns_kept; /* a lookup an attempt gave up on, still running */
    redtls__setup su;
    redtls__auth au;
    redtls__saved_io saved;
    /* The last failed attempt's message (REDTLS__ERRMSG_MAX bytes), made
     * by the first failure: most connections never need it. Read through
     * redtls__conn_cause. */
    char *last_cause;
    char errmsg[REDTLS__ERRMSG_MAX];
    /* Backing store for the borrowed TLS details, made by the first
     * accessor that asks (most connections never do). */
    char (*info)[REDTLS__TLS_DETAIL_MAX];
    /* Read buffer (REDTLS__READ_CHUNK), made by the first read and, on
     * TLS connections, given back with the record buffers when the
     * connection goes quiet (see redtls__conn_went_quiet in conn_io.c). */
    char *rbuf;
};

/* ---- the transport, the queue, the replies (conn_io.c) ---- */

/* Installs an already connected transport (TCP, TLS or the memory
 * transport in tests) with a fresh reader; the conn owns it from now. */
redtls_status redtls__conn_attach(redtls_conn *c, redtls__transport *tp, int is_tls);

/* Drops the transport without ceremony (the stream can no longer be
 * trusted); what was in flight becomes lost. Returns st. */
redtls_status redtls__conn_drop(redtls_conn *c, redtls_status st);

/* redtls__conn_abandon and redtls__conn_append_raw: see conn_view.h. */

/* Appends one formatted command to obuf. A HELLO asking for another
 * protocol than the connection's, and (P|S)(UN)SUBSCRIBE, are refused
 * (REDTLS_E_INVALID). */
redtls_status redtls__conn_append(redtls_conn *c, int argc, const char **argv, const size_t *argvlen);
/* The same for a command its caller has already checked (the asynchronous
 * driver: its commands, and Pub/Sub's own SUBSCRIBE and UNSUBSCRIBE). */
redtls_status redtls__conn_append_checked(redtls_conn *c, int argc, const char **argv, const size_t *argvlen);
/* The text of such a HELLO being refused. */
redtls_status redtls__conn_protocol_refused(redtls_conn *c);
/* The (P|S)(UN)SUBSCRIBE refusal, REDTLS_E_INVALID with its message. */
redtls_status redtls__conn_sub_refused(redtls_conn *c);

/* Writes what the socket takes now of obuf. REDTLS_OK with *want 0: all
 * written (commands in flight from the first byte); with *want: wait for
 * it. Failures drop the connection. */
redtls_status redtls__conn_write_end(redtls_conn *c, redtls_status st, int *want);
/* A write that cannot finish (a driver's wait timed out or failed): what
 * is left of obuf goes with the connection, wiped when secret (its
 * commands count as in flight already). Returns st. */
redtls_status redtls__conn_write_failed(redtls_conn *c, redtls_status st);
/* A write on a lean connection (see redtls__conn_went_quiet). */
void redtls__conn_lean_write(redtls_conn *c);
static inline redtls_status redtls__conn_write_step(redtls_conn *c, int *want)
{
    *want = 0;
    if (c->olen == 0)
        return REDTLS_OK;
    if (c->lean)
        redtls__conn_lean_write(c);
    /* From the first byte on, every queued command may run. */
    c->unsent = 0;
    redtls_status st;
    /* A transport may take part of the bytes without asking to wait: it
     * is called again, so *want 0 means all written. */
    for (;;) {
        size_t done = 0;
        st = c->tp->ops->write(c->tp, c->obuf + c->ooff, c->olen - c->ooff, &done, want, c->errmsg);
        c->ooff += done;
        if (st != REDTLS_OK || c->ooff >= c->olen)
            break;
        if (*want)
            return REDTLS_OK;
        if (done == 0) {
            *want = POLLOUT;
            return REDTLS_OK;
        }
    }
    if (st == REDTLS_OK && !c->owipe) {
        c->olen = c->ooff = 0;
        c->just_wrote = 1;
        return REDTLS_OK;
    }
    return redtls__conn_write_end(c, st, want);
}

/* Completes a reply by one read of what the transport has now (at most
 * cap bytes; *got says how many), after redtls__conn_take_parsed found
 * none whole: *reply, or NULL with *want (wait for it), or NULL with *want
 * 0 (bytes came but no whole reply yet: call again). Failures drop the
 * connection and are returned as the transport said them. now: for the
 * health check and buffer bookkeeping. redtls__conn_read_step below does
 * both steps. */
redtls_status redtls__conn_read_more(redtls_conn *c, int64_t now, size_t cap, size_t *got, struct redisReply **reply,
                                     int *want);

/* What a caller hears about replies a broken connection owed: the oldest
 * owed reply belongs to a command lost with its connection
 * (report_lost: REDTLS_E_OUTCOME_UNKNOWN); a read that failed drops the
 * connection and reports the awaited command (read_failed; raw: the
 * transport's status as it is; otherwise, when the connection broke after
 * the command was written, REDTLS_E_OUTCOME_UNKNOWN). */
redtls_status redtls__conn_report_lost(redtls_conn *c);
redtls_status redtls__conn_read_failed(redtls_conn *c, redtls_status st, int raw);

/* The rare parts of the bookkeeping below. */
void redtls__conn_noauth_seen(redtls_conn *c, const struct redisReply *r);
void redtls__conn_went_quiet(redtls_conn *c, int64_t now);
/* A connection quiet again within this long of its last quiet moment is
 * used back to back (see redtls__conn_went_quiet). */
#define REDTLS__BUSY_MS 1000

/* Bookkeeping for a reply handed to the caller: a NOAUTH asks for a new
 * AUTH; the health check's clock; a connection with nothing owed may give
 * back its buffers (see redtls__conn_went_quiet; a busy one only notes
 * the time). Inline: deep pipelines take most replies through here, and
 * one command at a time the busy case. */
static inline void redtls__conn_took_reply(redtls_conn *c, const struct redisReply *r, int64_t now)
{
    c->pending--;
    if (r->type == REDIS_REPLY_ERROR)
        redtls__conn_noauth_seen(c, r);
    if (c->cfg.health_check_ms)
        c->last_io = now;
    if (c->pending == 0 && c->olen == 0 && c->tp->ops->release) {
        if (c->lean || now - c->quiet_at >= REDTLS__BUSY_MS)
            redtls__conn_went_quiet(c, now);
        else
            c->quiet_at = now;
    }
}

/* A reply the reader has whole already, without reading; *reply NULL
 * when there is none. A reader failure drops the connection. */
static inline redtls_status redtls__conn_take_parsed(redtls_conn *c, int64_t now, struct redisReply **reply)
{
    redtls_status st = redtls__reader_get(&c->rd, reply, c->errmsg);
    if (st != REDTLS_OK)
        return redtls__conn_drop(c, st);
    if (*reply)
        redtls__conn_took_reply(c, *reply, now);
    return REDTLS_OK;
}

static inline redtls_status redtls__conn_read_step(redtls_conn *c, int64_t now, struct redisReply **reply, int *want)
{
    size_t got;
    redtls_status st = redtls__conn_take_parsed(c, now, reply);
    if (st != REDTLS_OK || *reply) {
        *want = 0;
        return st;
    }
    return redtls__conn_read_more(c, now, REDTLS__READ_CHUNK, &got, reply, want);
}

/* Right after a request nothing can have arrived yet: POLLIN when a read
 * can only find something once the socket is readable (nothing parsed or
 * buffered), so the caller waits before reading (and the flag is spent),
 * saving a read that would only say "try again"; else 0. */
static inline int redtls__conn_read_want(redtls_conn *c)
{
    if (!c->just_wrote)
        return 0;
    c->just_wrote = 0;
    return redtls__reader_idle(&c->rd) && !(c->tp->ops->buffered && c->tp->ops->buffered(c->tp)) ? POLLIN : 0;
}

/* The library's own requests: set the caller's queue aside, send, take
 * the answer, put the queue back (the set-aside buffer is wiped). */
void redtls__conn_set_aside(redtls_conn *c);
void redtls__conn_restore(redtls_conn *c);
/* Queues one request of the library's own; secret: wipe it once written. */
redtls_status redtls__exch_send(redtls_conn *c, int argc, const char **argv, int secret);
/* Moves it on: *reply once the answer is in, else *w says what for. By
 * the deadline: REDTLS_E_COMMAND_TIMEOUT. Failures drop the connection
 * and are returned as they are. */
redtls_status redtls__exch_poll(redtls_conn *c, int64_t now, int64_t deadline, struct redisReply **reply,
                                redtls__wait *w);
/* Gives up an own request (a driver's wait failed): the connection is
 * dropped, nothing of the request stays queued, nobody is owed its reply.
 * Returns st. */
redtls_status redtls__exch_abort(redtls_conn *c, redtls_status st);

/* The last failed attempt's message for "last failure: ..." texts; its
 * status's text when there was no memory to keep the message; "" before
 * any failure. */
static inline const char *redtls__conn_cause(const redtls_conn *c)
{
    return c->last_cause ? c->last_cause : c->last_status != REDTLS_OK ? redtls_strerror(c->last_status) : "";
}

/* Commands written on the current connection whose replies are due. */
static inline size_t redtls__conn_in_flight(const redtls_conn *c)
{
    return c->pending - c->unsent - c->lost;
}

/* Reports an event to the configured callback, if any. */
void redtls__emit(redtls_conn *c, redtls_event_type type, const char *fmt, ...) REDTLS_PRINTF(3, 4);

/* 1 when the handle has credentials to send. */
int redtls__has_credentials(const redtls_conn *c);

/* ---- the attempt (connect.c) ---- */

/* Starts one connection attempt at now (TCP or Unix, TLS, set-up); no
 * phase may run past call_deadline. The caller's queued commands wait. */
redtls_status redtls__attempt_start(redtls_conn *c, int64_t now, int64_t call_deadline);
/* Moves it on. REDTLS_OK with *done: connected and announced. REDTLS_OK
 * without: wait as *w says. A failure ends the attempt (nothing is left
 * open; the message names the cause). */
redtls_status redtls__attempt_step(redtls_conn *c, int64_t now, int *done, redtls__wait *w);
/* Abandons an attempt under way. */
void redtls__attempt_cancel(redtls_conn *c);
/* What a command waiting for this connection reports when its own time
 * runs out first: the phase the attempt under way is in (TCP connect:
 * REDTLS_E_CONNECT_TIMEOUT; TLS or set-up: REDTLS_E_HANDSHAKE_TIMEOUT), or
 * without one, the last attempt's failure. why gets the words for it. */
redtls_status redtls__attempt_cut(const redtls_conn *c, char *why, size_t cap);
/* Backoff bookkeeping after an attempt. */
void redtls__attempt_succeeded(redtls_conn *c);
void redtls__attempt_failed(redtls_conn *c, int64_t now);

/* ---- a usable connection before commands (ready.c) ---- */

/* Starts making the connection usable by the deadline: the idle check
 * (a closed connection is dropped), the health-check PING, an owed
 * re-authentication (NOAUTH, the IAM schedule), then, when not connected,
 * attempts as the backoff and the limits allow. once: at most one attempt
 * and no waiting for the backoff (REDTLS_E_UNAVAILABLE instead; c->no_time
 * when the deadline had passed before any attempt). idle: the verdict of
 * the idle check redtls__ready_needed made (the machine does not check
 * again). */
redtls_status redtls__ready_start(redtls_conn *c, int64_t now, int64_t deadline, int once, redtls_status idle);
/* REDTLS_OK with *done: usable. Failures name the cause (the last
 * attempt's, the backoff, the limits, "not connected"). */
redtls_status redtls__ready_step(redtls_conn *c, int64_t now, int *done, redtls__wait *w);
/* Abandons a preparation under way (closing, or a driver giving up). */
void redtls__ready_cancel(redtls_conn *c);
/* A driver's wait for the machine failed (st, its message in errmsg): the
 * step under way fails as its transport would have (an attempt is booked
 * as failed, a PING or re-AUTH drops the connection) and the machine goes
 * on: REDTLS_OK to keep stepping, or the call's end. */
redtls_status redtls__ready_wait_failed(redtls_conn *c, int64_t now, redtls_status st);
/* Reads what a connection with nothing owed has received, when its server
 * may speak unasked (RESP3 pushes, or Pub/Sub messages while the reader
 * claims arrays): each push goes where the reader's claim sends it. A
 * reply that answers nothing is REDTLS_E_PROTOCOL; a closed or broken
 * connection the transport's failure. The connection is not dropped here
 * (the callers do, as after the transport's idle check). */
redtls_status redtls__conn_idle_read(redtls_conn *c);
/* Has the server closed the idle connection (or sent something unasked)?
 * The transport's check, or under RESP3 / Pub/Sub redtls__conn_idle_read. */
static inline redtls_status redtls__conn_idle_check(redtls_conn *c)
{
    if (c->cfg.protocol != 3 && !c->rd.claim_arrays)
        return c->tp->ops->idle_check(c->tp, c->errmsg);
    return redtls__conn_idle_read(c);
}

/* An idle connection whose idle check was clean: is a health-check PING
 * or an IAM re-AUTH due before its next command? */
static inline int redtls__ready_due(const redtls_conn *c, int64_t now)
{
    if (c->cfg.health_check_ms && now - c->last_io >= (int64_t)c->cfg.health_check_ms)
        return 1;
    return redtls__iam_on(&c->cfg.iam) && redtls__iam_reauth_due(&c->cfg.iam, &c->iam);
}

/* The common case first, for every command: 0 when the connection is
 * usable as it is (connected; in use, or idle and its idle check clean
 * with nothing due); 1 when the ready machine has something to do.
 * *idle: the idle check's verdict (REDTLS_OK also when none was made), to
 * hand to redtls__ready_start: a check that consumed what the server sent
 * cannot be made twice. */
static inline int redtls__ready_needed(redtls_conn *c, int64_t now, redtls_status *idle)
{
    *idle = REDTLS_OK;
    if (!c->tp)
        return 1;
    if (redtls__conn_in_flight(c) > 0 || c->lost > 0)
        return 0;
    if ((*idle = redtls__conn_idle_check(c)) != REDTLS_OK || c->need_reauth)
        return 1;
    return redtls__ready_due(c, now);
}

/* Would the idle check find nothing, known without making it: the caller
 * has just seen the socket quiet (poll, no wait, no event) and the check
 * is the transport's (not a RESP3 / Pub/Sub read), with nothing buffered
 * in the transport. */
static inline int redtls__conn_seen_quiet(const redtls_conn *c)
{
    return c->tp && c->cfg.protocol != 3 && !c->rd.claim_arrays &&
           !(c->tp->ops->buffered && c->tp->ops->buffered(c->tp));
}

/* What a single command's outcome asks for next (the driver sequences it
 * with the machines above): its reply was NOAUTH, so the server did not
 * run it and it is resent once after re-authenticating; or its outcome is
 * unknown and its caller marked it idempotent (REDTLS_CMD_IDEMPOTENT), so
 * it is resent once on a usable connection; or nothing. */
enum { REDTLS__CMD_DONE, REDTLS__CMD_REAUTH_RESEND, REDTLS__CMD_RECONNECT_RESEND };
static inline int redtls__cmd_next(const redtls_conn *c, redtls_status st, unsigned flags)
{
    if (st == REDTLS_OK && c->need_reauth)
        return REDTLS__CMD_REAUTH_RESEND;
    if (st == REDTLS_E_OUTCOME_UNKNOWN && (flags & REDTLS_CMD_IDEMPOTENT))
        return REDTLS__CMD_RECONNECT_RESEND;
    return REDTLS__CMD_DONE;
}

/* ---- set-up on a fresh transport (setup.c) ---- */

/* Starts the set-up (probe, AUTH, SELECT, SETNAME, READONLY) by the
 * deadline; see redtls__setup_step. */
redtls_status redtls__setup_start(redtls_conn *c, int64_t now, int64_t deadline);
/* Timeouts here are REDTLS_E_HANDSHAKE_TIMEOUT naming the command. */
redtls_status redtls__setup_step(redtls_conn *c, int64_t now, int64_t deadline, int *done, redtls__wait *w);

/* ---- AUTH (auth.c) ---- */

/* Starts AUTH with the rotation rules, by the deadline (timeouts are
 * REDTLS_E_COMMAND_TIMEOUT). *done at once when no credentials are
 * configured. A refusal leaves the connection open. */
redtls_status redtls__auth_start(redtls_conn *c, int64_t now, int64_t deadline, int *done);
/* The same for the set-up under RESP3: each try is "HELLO 3 AUTH user
 * token [SETNAME name]" (user "default" when none is set), and the answer
 * is checked as redtls__hello_check does. *done at once without
 * credentials (the set-up then sends a plain HELLO). */
redtls_status redtls__auth_start_hello(redtls_conn *c, int64_t now, int64_t deadline, int *done);
/* What an answer to HELLO 3 means beyond AUTH's verdict: a server
 * without HELLO ("unknown command") or without RESP3 (NOPROTO) is
 * REDTLS_E_SETUP saying so; a success must be a map whose "proto" is 3.
 * REDTLS_OK for anything else (errors are judged by the caller). Never
 * quotes the server's text when it may echo the command's arguments. */
redtls_status redtls__hello_check(redtls_conn *c, const struct redisReply *r);
redtls_status redtls__auth_step(redtls_conn *c, int64_t now, int *done, redtls__wait *w);
/* Wipes what an unfinished AUTH holds. */
void redtls__auth_reset(redtls_conn *c);

#endif

/* The blocking API: a driver that runs the session's state machines
 * (conn.h) to completion, reading the clock and waiting in poll() in
 * between, like curl's easy interface over its multi interface. It decides
 * nothing about the protocol: the ready machine makes a connection usable
 * (reconnecting included), and the resend a command's outcome asks for
 * comes from redtls__cmd_next. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "blocking.h"
#include "conn.h"

/* Reads the clock for the session (the core never does). */
static int64_t clock_now(redtls_conn *c)
{
    return c->now = redtls__now_ms();
}

/* Waits as a state machine asked; *now: the time after. Nothing arrives
 * on the memory transport (fd -1, the tests' seam) while we wait, so such a
 * wait ends at its time at once. 0, or -1 when poll() failed (errno), -2
 * when there was nothing to wait for. */
static int wait_for(redtls_conn *c, const redtls__wait *w, int64_t *now)
{
    *now = clock_now(c);
    if (w->at <= *now)
        return 0;
    if (w->events && w->fd >= 0) {
        if (redtls__wait_fd(w->fd, (short)w->events, w->at) < 0)
            return -1;
    } else if (w->events && w->at != REDTLS__NO_DEADLINE) {
        *now = c->now = w->at;
        return 0;
    } else if (!w->events && w->at != REDTLS__NO_DEADLINE) {
        redtls__sleep_until(w->at);
    } else {
        return -2;
    }
    *now = clock_now(c);
    return 0;
}

static redtls_status wait_failed(redtls_conn *c, int rc)
{
    if (rc == -1)
        return redtls__fail(c->errmsg, REDTLS_E_IO, "poll: %s", strerror(errno));
    return redtls__fail(c->errmsg, REDTLS_E_STATE, "nothing to wait for: no socket and no time (a defect of redtls)");
}

/* After a wait, the time a reply is taken at, when the health check or the
 * buffer bookkeeping will look at it (see redtls__conn_took_reply). */
static void waited(redtls_conn *c)
{
    if (c->stamps)
        clock_now(c);
}

/* ---- own requests, run to completion ---- */

/* AUTH on the open connection, by the deadline. */
static redtls_status drive_auth(redtls_conn *c, int64_t deadline)
{
    int64_t now = clock_now(c);
    int done = 0;
    redtls_status st = redtls__auth_start(c, now, deadline, &done);
    while (st == REDTLS_OK && !done) {
        redtls__wait w;
        if ((st = redtls__auth_step(c, now, &done, &w)) != REDTLS_OK || done)
            break;
        int rc = wait_for(c, &w, &now);
        if (rc < 0)
            st = redtls__exch_abort(c, wait_failed(c, rc));
    }
    if (st == REDTLS_OK)
        c->need_reauth = 0;
    redtls__auth_reset(c);
    return st;
}

/* ---- commands: writes and reads ---- */

redtls_status redtls__conn_flush(redtls_conn *c, int64_t deadline, int wipe)
{
    if (c->olen == 0)
        return REDTLS_OK;
    if (wipe)
        c->owipe = 1;
    for (;;) {
        int want = 0;
        redtls_status st = redtls__conn_write_step(c, &want);
        if (st != REDTLS_OK || !want)
            return st;
        int w = redtls__wait_fd(c->fd, (short)want, deadline);
        if (w == 0)
            return redtls__conn_write_failed(c, redtls__fail(c->errmsg, REDTLS_E_COMMAND_TIMEOUT, "timed out writing to the server"));
        if (w < 0)
            return redtls__conn_write_failed(c, redtls__fail(c->errmsg, REDTLS_E_IO, "poll: %s", strerror(errno)));
    }
}

redtls_status redtls__conn_read(redtls_conn *c, int64_t deadline, int raw, struct redisReply **reply)
{
    *reply = NULL;
    if (c->lost > 0)
        return redtls__conn_report_lost(c);
    if (!c->tp)
        return redtls__fail(c->errmsg, REDTLS_E_STATE, "not connected");
    redtls_status st = REDTLS_OK;
    int want = 0;
    /* Deep pipelines mostly find the reply already parsed: the clock is
     * only read once waiting becomes possible. */
    if (deadline == REDTLS__DEADLINE_LAZY) {
        /* Right after redtls_conn_flush: straight to the wait. */
        want = redtls__conn_read_want(c);
        if (!want && c->olen == 0 && (st = redtls__conn_read_step(c, c->now, reply, &want)) == REDTLS_OK &&
            *reply)
            return REDTLS_OK;
        if (st != REDTLS_OK)
            return redtls__conn_read_failed(c, st, raw);
        deadline = redtls__deadline_from(clock_now(c), c->cfg.command_timeout_ms);
    }
    if (c->olen > 0 && (st = redtls__conn_flush(c, deadline, 0)) == REDTLS_OK)
        want = redtls__conn_read_want(c);
    while (st == REDTLS_OK) {
        if (want) {
            int w = redtls__wait_fd(c->fd, (short)want, deadline);
            if (w == 0) {
                st = redtls__fail(c->errmsg, REDTLS_E_COMMAND_TIMEOUT, "timed out waiting for the server");
                break;
            }
            if (w < 0) {
                st = redtls__fail(c->errmsg, REDTLS_E_IO, "poll: %s", strerror(errno));
                break;
            }
            waited(c);
        }
        if ((st = redtls__conn_read_step(c, c->now, reply, &want)) != REDTLS_OK || *reply)
            break;
        /* Reads that find data never wait, so a server that keeps sending
         * (an endless array) must meet the deadline here. */
        if (!want && deadline != REDTLS__NO_DEADLINE && clock_now(c) >= deadline)
            st = redtls__fail(c->errmsg, REDTLS_E_COMMAND_TIMEOUT, "the reply did not complete within the command timeout");
    }
    if (st == REDTLS_OK)
        return REDTLS_OK;
    return redtls__conn_read_failed(c, st, raw);
}

redtls_status redtls__conn_read_now(redtls_conn *c, int64_t deadline, size_t *budget, struct redisReply **reply)
{
    *reply = NULL;
    if (c->lost > 0)
        return redtls__conn_report_lost(c);
    if (!c->tp)
        return redtls__fail(c->errmsg, REDTLS_E_STATE, "not connected");
    /* The caller polled the socket: no wait-first. */
    c->just_wrote = 0;
    waited(c);
    redtls_status st;
    for (int reads = 0;; reads++) {
        if ((st = redtls__conn_take_parsed(c, c->now, reply)) != REDTLS_OK)
            break;
        if (*reply)
            return REDTLS_OK;
        /* As in redtls__conn_read: a server that keeps sending one endless
         * reply meets the deadline. */
        if ((budget && *budget == 0) ||
            (reads > 0 && deadline != REDTLS__NO_DEADLINE && clock_now(c) >= deadline))
            return REDTLS_OK;
        int want = 0;
        size_t got = 0, cap = budget && *budget < REDTLS__READ_CHUNK ? *budget : REDTLS__READ_CHUNK;
        if ((st = redtls__conn_read_more(c, c->now, cap, &got, reply, &want)) != REDTLS_OK)
            break;
        if (budget)
            *budget -= got;
        if (*reply || want)
            return REDTLS_OK;
    }
    return redtls__conn_read_failed(c, st, 0);
}

/* ---- connecting ---- */

/* One connection attempt (TCP, TLS, AUTH, SELECT, SETNAME); no attempt
 * phase may run past call_deadline. */
static redtls_status connect_once(redtls_conn *c, int64_t call_deadline)
{
    int64_t now = clock_now(c);
    redtls_status st = redtls__attempt_start(c, now, call_deadline);
    for (int done = 0; st == REDTLS_OK;) {
        redtls__wait w;
        if ((st = redtls__attempt_step(c, now, &done, &w)) != REDTLS_OK || done)
            break;
        int rc = wait_for(c, &w, &now);
        if (rc < 0) {
            st = wait_failed(c, rc);
            redtls__attempt_cancel(c);
        }
    }
    return st;
}

redtls_status redtls_conn_connect(redtls_conn *c)
{
    if (!c)
        return REDTLS_E_INVALID;
    c->errmsg[0] = '\0';
    redtls_conn_close(c);
    redtls__attempt_succeeded(c); /* an explicit connect starts afresh */
    redtls_status st = connect_once(c, REDTLS__NO_DEADLINE);
    if (st == REDTLS_OK) {
        redtls__attempt_succeeded(c);
    } else {
        c->last_status = st;
        redtls__attempt_failed(c, clock_now(c));
    }
    return st;
}

/* Re-authenticates on the same connection after a NOAUTH reply. */
static redtls_status reauthenticate(redtls_conn *c, int64_t deadline)
{
    c->need_reauth = 0;
    redtls_status st = drive_auth(c, deadline);
    if (st == REDTLS_OK)
        redtls__emit(c, REDTLS_EVENT_AUTH_REFRESHED, "%s", "re-authenticated after a NOAUTH reply");
    return st;
}

/* Makes sure there is a usable connection before commands are written
 * (the session's ready machine, run to completion). */
static redtls_status ensure_connected_n(redtls_conn *c, int64_t deadline, int once)
{
    redtls_status idle;
    if (!redtls__ready_needed(c, c->now, &idle))
        return REDTLS_OK;
    /* Attempts, backoff and limits count from now, not from the start of
     * the command (an idempotent resend comes here after a long read). */
    int64_t now = clock_now(c);
    redtls_status st = redtls__ready_start(c, now, deadline, once, idle);
    for (int done = 0; st == REDTLS_OK;) {
        redtls__wait w;
        if ((st = redtls__ready_step(c, now, &done, &w)) != REDTLS_OK || done)
            break;
        int rc = wait_for(c, &w, &now);
        if (rc < 0)
            st = redtls__ready_wait_failed(c, now, wait_failed(c, rc));
    }
    return st;
}

static redtls_status ensure_connected(redtls_conn *c, int64_t deadline)
{
    return ensure_connected_n(c, deadline, 0);
}

redtls_status redtls__conn_ensure_once(redtls_conn *c, int64_t deadline)
{
    c->errmsg[0] = '\0';
    c->no_time = 0;
    clock_now(c);
    return ensure_connected_n(c, deadline, 1);
}

/* ---- the public calls ---- */

/* Common start of a single command: no pipeline in progress, and a usable
 * connection within the command's deadline. */
static redtls_status begin_command(redtls_conn *c, int64_t *deadline)
{
    c->errmsg[0] = '\0';
    *deadline = redtls__deadline_from(clock_now(c), c->cfg.command_timeout_ms);
    if (c->pending > 0)
        return redtls__fail(c->errmsg, REDTLS_E_STATE,
                            "%zu pipelined replies are pending; read them with redtls_conn_get_reply first",
                            c->pending);
    return ensure_connected(c, *deadline);
}

/* Sends the single command in obuf[0..cmdlen) and reads its reply, with
 * the NOAUTH and idempotent-retry rules. */
static redtls_status finish_command(redtls_conn *c, unsigned flags, size_t cmdlen, int64_t deadline,
                                    struct redisReply **reply)
{
    /* Kept aside for a resend: obuf is reused by re-authentication. */
    char *copy = NULL;
    if (flags & REDTLS_CMD_IDEMPOTENT) {
        copy = malloc(cmdlen);
        if (!copy) {
            c->olen = 0;
            c->pending = c->unsent = 0;
            return redtls__fail(c->errmsg, REDTLS_E_NOMEM, "out of memory");
        }
        memcpy(copy, c->obuf, cmdlen);
    }
    redtls_status st = redtls__conn_read(c, deadline, 0, reply);
    int resend = 0, next = redtls__cmd_next(c, st, flags);
    if (next == REDTLS__CMD_REAUTH_RESEND) {
        if (!copy && (copy = malloc(cmdlen)) != NULL)
            memcpy(copy, c->obuf, cmdlen);
        if (copy) {
            freeReplyObject(*reply);
            *reply = NULL;
            st = reauthenticate(c, deadline);
            if (st != REDTLS_OK)
                redtls__fail_more(c->errmsg, st, "", "command not executed: the server answered NOAUTH and ");
            resend = st == REDTLS_OK;
        }
    } else if (next == REDTLS__CMD_RECONNECT_RESEND) {
        st = ensure_connected(c, deadline);
        resend = st == REDTLS_OK;
    }
    if (resend) {
        st = redtls__buf_append(&c->obuf, &c->olen, &c->ocap, copy, cmdlen);
        if (st == REDTLS_OK) {
            c->pending++;
            c->unsent++;
            st = redtls__conn_read(c, deadline, 0, reply);
        } else {
            redtls__fail(c->errmsg, st, "out of memory");
        }
    }
    free(copy);
    return st;
}

/* Takes back the command just formatted at obuf[from..olen) when it is
 * such a HELLO (the printf-style calls). */
static redtls_status refuse_resp3(redtls_conn *c, size_t from)
{
    if (redtls__frame_is_sub_command(c->obuf + from, c->olen - from)) {
        c->olen = from;
        c->pending--;
        c->unsent--;
        return redtls__conn_sub_refused(c);
    }
    if (!redtls__frame_switches_protocol(c->obuf + from, c->olen - from, c->cfg.protocol))
        return REDTLS_OK;
    OPENSSL_cleanse(c->obuf + from, c->olen - from); /* HELLO may carry AUTH */
    c->olen = from;
    c->pending--;
    c->unsent--;
    return redtls__conn_protocol_refused(c);
}

redtls_status redtls_conn_command_argv_ex(redtls_conn *c, unsigned flags, int argc, const char **argv,
                                          const size_t *argvlen, struct redisReply **reply)
{
    if (!reply)
        return REDTLS_E_INVALID;
    *reply = NULL;
    if (!c)
        return REDTLS_E_INVALID;
    int64_t deadline;
    redtls_status st = begin_command(c, &deadline);
    if (st != REDTLS_OK || (st = redtls__conn_append(c, argc, argv, argvlen)) != REDTLS_OK)
        return st;
    return finish_command(c, flags, c->olen, deadline, reply);
}

redtls_status redtls_conn_command_argv(redtls_conn *c, int argc, const char **argv, const size_t *argvlen,
                                       struct redisReply **reply)
{
    return redtls_conn_command_argv_ex(c, 0, argc, argv, argvlen, reply);
}

/* Formats with hiredis's printf-like syntax straight into the output
 * buffer. */
static redtls_status vappend(redtls_conn *c, const char *fmt, va_list ap)
{
    char *cmd = NULL;
    if (!fmt)
        return redtls__fail(c->errmsg, REDTLS_E_INVALID, "format is NULL");
    int n = redisvFormatCommand(&cmd, fmt, ap);
    if (n == -2)
        return redtls__fail(c->errmsg, REDTLS_E_INVALID, "invalid format string");
    if (n <= 0 || !cmd)
        return redtls__fail(c->errmsg, REDTLS_E_NOMEM, "out of memory formatting the command");
    redtls_status st = redtls__buf_append(&c->obuf, &c->olen, &c->ocap, cmd, (size_t)n);
#if defined(HIREDIS_MAJOR) && HIREDIS_MAJOR >= 1
    redisFreeCommand(cmd);
#else
    free(cmd);
#endif
    if (st != REDTLS_OK)
        return redtls__fail(c->errmsg, st, "out of memory");
    c->pending++;
    c->unsent++;
    return REDTLS_OK;
}

redtls_status redtls_conn_command(redtls_conn *c, struct redisReply **reply, const char *fmt, ...)
{
    if (!reply)
        return REDTLS_E_INVALID;
    *reply = NULL;
    if (!c)
        return REDTLS_E_INVALID;
    int64_t deadline;
    redtls_status st = begin_command(c, &deadline);
    if (st != REDTLS_OK)
        return st;
    size_t from = c->olen;
    va_list ap;
    va_start(ap, fmt);
    st = vappend(c, fmt, ap);
    va_end(ap);
    if (st != REDTLS_OK || (st = refuse_resp3(c, from)) != REDTLS_OK)
        return st;
    return finish_command(c, 0, c->olen, deadline, reply);
}

redtls_status redtls_conn_append_argv(redtls_conn *c, int argc, const char **argv, const size_t *argvlen)
{
    if (!c)
        return REDTLS_E_INVALID;
    c->errmsg[0] = '\0';
    return redtls__conn_append(c, argc, argv, argvlen);
}

redtls_status redtls_conn_append(redtls_conn *c, const char *fmt, ...)
{
    if (!c)
        return REDTLS_E_INVALID;
    c->errmsg[0] = '\0';
    size_t from = c->olen;
    va_list ap;
    va_start(ap, fmt);
    redtls_status st = vappend(c, fmt, ap);
    va_end(ap);
    return st != REDTLS_OK ? st : refuse_resp3(c, from);
}

/* Before queued commands are written: a connection, idle-checked when
 * nothing is owed on it (with replies owed it is in use, not idle). */
static redtls_status prepare_write(redtls_conn *c, int64_t deadline)
{
    if (c->unsent == 0 || (c->tp && (redtls__conn_in_flight(c) > 0 || c->lost > 0)))
        return REDTLS_OK;
    return ensure_connected(c, deadline);
}

redtls_status redtls_conn_flush(redtls_conn *c)
{
    if (!c)
        return REDTLS_E_INVALID;
    c->errmsg[0] = '\0';
    int64_t deadline = redtls__deadline_from(clock_now(c), c->cfg.command_timeout_ms);
    redtls_status st = prepare_write(c, deadline);
    if (st == REDTLS_OK && c->tp)
        st = redtls__conn_flush(c, deadline, 0);
    return st;
}

redtls_status redtls_conn_get_reply(redtls_conn *c, struct redisReply **reply)
{
    if (!reply)
        return REDTLS_E_INVALID;
    *reply = NULL;
    if (!c)
        return REDTLS_E_INVALID;
    c->errmsg[0] = '\0';
    if (c->pending == 0)
        return redtls__fail(c->errmsg, REDTLS_E_STATE, "no reply is pending");
    if (c->lost > 0)
        return redtls__conn_report_lost(c);
    if (c->unsent == 0 && c->tp)
        return redtls__conn_read(c, REDTLS__DEADLINE_LAZY, 0, reply);
    int64_t deadline = redtls__deadline_from(clock_now(c), c->cfg.command_timeout_ms);
    redtls_status st = prepare_write(c, deadline);
    if (st != REDTLS_OK)
        return st;
    return redtls__conn_read(c, deadline, 0, reply);
}

uint32_t redtls_conn_next_attempt_ms(const redtls_conn *c)
{
    if (!c || c->tp)
        return 0;
    if (c->gave_up)
        return UINT32_MAX;
    int64_t left = c->next_attempt - redtls__now_ms();
    return left <= 0 ? 0 : left > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)left;
}

redtls_status redtls_conn_set_tokens(redtls_conn *c, const char *token, const char *token_alt, int flags)
{
    if (!c)
        return REDTLS_E_INVALID;
    c->errmsg[0] = '\0';
    if ((flags & REDTLS_REAUTH_NOW) && c->tp && c->pending > 0)
        return redtls__fail(c->errmsg, REDTLS_E_STATE, "cannot re-authenticate while pipelined replies are pending");
    redtls_status st = redtls__set_token_pair(&c->cfg, token, token_alt, c->errmsg);
    if (st != REDTLS_OK)
        return st;
    c->preferred = 0;
    if (!(flags & REDTLS_REAUTH_NOW) || !c->tp || c->cfg.cred_cb || redtls__iam_on(&c->cfg.iam))
        return REDTLS_OK;
    st = drive_auth(c, redtls__deadline_from(clock_now(c), c->cfg.command_timeout_ms));
    if (st == REDTLS_OK)
        redtls__emit(c, REDTLS_EVENT_AUTH_REFRESHED, "re-authenticated the open connection with token %d",
                     c->preferred + 1);
    return st;
}

int redtls_conn_preferred_token(const redtls_conn *c)
{
    if (!c || c->cfg.cred_cb || redtls__iam_on(&c->cfg.iam) || !c->cfg.token.data)
        return 0;
    return c->cfg.token_alt.data ? c->preferred + 1 : 1;
}

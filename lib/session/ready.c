/* Making a connection usable before commands go out, as a state machine:
 * the idle check (has the server closed it?), the health-check PING, a
 * re-authentication that is owed (a NOAUTH reply, the IAM schedule), and
 * reconnecting as the backoff and the limits allow, within the call's
 * deadline. */
#include <string.h>

#include <hiredis/hiredis.h>

#include "conn.h"

enum { R_CHECK, R_PING, R_REAUTH_START, R_REAUTH, R_RESTORE, R_CONNECT, R_BACKOFF, R_ATTEMPT };

redtls_status redtls__ready_start(redtls_conn *c, int64_t now, int64_t deadline, int once, redtls_status idle)
{
    redtls__ready *rd = &c->ready;
    (void)now;
    rd->deadline = deadline;
    rd->once = once;
    rd->was_connected = c->tp != NULL;
    rd->scheduled = 0;
    rd->live = 0;
    rd->idle = idle;
    rd->last = REDTLS_OK;
    rd->phase = R_CHECK;
    if (once)
        c->no_time = 0;
    return REDTLS_OK;
}

void redtls__ready_cancel(redtls_conn *c)
{
    redtls__ready *rd = &c->ready;
    if (rd->phase == R_PING || rd->phase == R_REAUTH) {
        redtls__auth_reset(c);
        redtls__exch_abort(c, REDTLS_E_IO);
    }
    if (rd->phase == R_ATTEMPT)
        redtls__attempt_cancel(c);
    redtls__conn_restore(c);
    rd->phase = R_CONNECT;
}

static redtls_status not_ready(redtls_conn *c, int64_t now);
static void reauth_done(redtls_conn *c, redtls_status st);

redtls_status redtls__ready_wait_failed(redtls_conn *c, int64_t now, redtls_status st)
{
    redtls__ready *rd = &c->ready;
    switch (rd->phase) {
    case R_PING:
        redtls__exch_abort(c, st);
        rd->phase = R_REAUTH_START;
        return REDTLS_OK;
    case R_REAUTH:
        redtls__exch_abort(c, st);
        reauth_done(c, st);
        rd->phase = R_RESTORE;
        return REDTLS_OK;
    case R_ATTEMPT:
        redtls__attempt_cancel(c);
        rd->last = st;
        c->last_status = st;
        redtls__attempt_failed(c, now);
        if (rd->once || c->gave_up || now >= rd->deadline)
            return not_ready(c, now);
        rd->phase = R_BACKOFF;
        return REDTLS_OK;
    default:
        redtls__ready_cancel(c);
        return st;
    }
}

/* What the connection is to do before commands: R_PING, R_REAUTH_START
 * (with the caller's queue set aside) or R_CONNECT. */
static int check_idle(redtls_conn *c, int64_t now)
{
    redtls__ready *rd = &c->ready;
    if (!c->tp || redtls__conn_in_flight(c) > 0 || c->lost > 0)
        return R_CONNECT;
    if (rd->idle != REDTLS_OK) {
        redtls__conn_drop(c, rd->idle);
        return R_CONNECT;
    }
    if (!c->need_reauth && redtls__iam_on(&c->cfg.iam) && redtls__iam_reauth_due(&c->cfg.iam, &c->iam))
        c->need_reauth = REDTLS__REAUTH_IAM_DUE;
    int ping = c->cfg.health_check_ms && now - c->last_io >= (int64_t)c->cfg.health_check_ms;
    if (!ping && !c->need_reauth)
        return R_CONNECT;
    redtls__conn_set_aside(c);
    if (!ping)
        return R_REAUTH_START;
    /* Any reply, even an error, proves the server is there. Half the
     * command timeout at most, so a failed check leaves time to
     * reconnect. */
    rd->ping_deadline = redtls__deadline_min(rd->deadline, redtls__deadline_from(now, c->cfg.command_timeout_ms / 2));
    if (redtls__exch_send(c, 1, (const char *[]){"PING"}, 0) != REDTLS_OK) {
        redtls__conn_drop(c, REDTLS_E_NOMEM);
        return R_RESTORE;
    }
    return R_PING;
}

/* A re-authentication ended (st). A scheduled one that failed keeps the
 * connection: the server still honours the earlier AUTH until its own
 * limit; try again later. One after a NOAUTH that failed drops it. */
static void reauth_done(redtls_conn *c, redtls_status st)
{
    redtls__ready *rd = &c->ready;
    redtls__auth_reset(c);
    if (st == REDTLS_OK) {
        if (rd->live)
            redtls__emit(c, REDTLS_EVENT_AUTH_REFRESHED, "re-authenticated the open connection with token %d",
                         c->preferred + 1);
        else
            redtls__emit(c, REDTLS_EVENT_AUTH_REFRESHED, "%s",
                         rd->scheduled ? "re-authenticated with IAM before the server's connection limit"
                                       : "re-authenticated after a NOAUTH reply");
        return;
    }
    if (!c->tp)
        return;
    if (rd->live) {
        /* The server still honours the AUTH the connection was made
         * with; the new tokens are used from the next connection on. */
        redtls__emit(c, REDTLS_EVENT_AUTH_REFRESH_FAILED,
                     "%.200s; the connection stays, authenticated as it was", c->errmsg);
        c->errmsg[0] = '\0';
    } else if (rd->scheduled) {
        c->iam.retry_ms = redtls__iam_now_ms(&c->cfg.iam) + REDTLS__IAM_RETRY_MS;
        redtls__emit(c, REDTLS_EVENT_AUTH_REFRESH_FAILED, "%.200s; the connection stays, retry in %d s", c->errmsg,
                     (int)(REDTLS__IAM_RETRY_MS / 1000));
        c->errmsg[0] = '\0';
    } else {
        redtls__conn_drop(c, REDTLS_E_AUTH);
    }
}

/* The call ends without a usable connection: why. */
static redtls_status not_ready(redtls_conn *c, int64_t now)
{
    redtls__ready *rd = &c->ready;
    rd->phase = R_CONNECT;
    int64_t wait = c->next_attempt - now;
    if (rd->last != REDTLS_OK)
        return redtls__fail(c->errmsg, rd->last, "%.380s (reconnect attempt %u; %s)", redtls__conn_cause(c), c->attempts,
                            c->gave_up ? "giving up" : "will retry");
    /* A call allowed one attempt (the cluster's) does not wait even for a
     * next attempt due before its deadline. */
    int after = c->next_attempt >= rd->deadline || now >= rd->deadline;
    const char *cause = redtls__conn_cause(c);
    return redtls__fail(c->errmsg, REDTLS_E_UNAVAILABLE, "not connected; next reconnect attempt in %lld ms, %s%s%.300s%s",
                        (long long)(wait > 0 ? wait : 0),
                        after ? "after the command deadline" : "not waited for (one attempt per call)",
                        cause[0] ? " (last failure: " : "", cause, cause[0] ? ")" : "");
}

redtls_status redtls__ready_step(redtls_conn *c, int64_t now, int *done, redtls__wait *w)
{
    redtls__ready *rd = &c->ready;
    redtls_status st;
    *done = 0;
    w->fd = -1;
    w->events = 0;
    w->at = REDTLS__NO_DEADLINE;
    for (;;) {
        switch (rd->phase) {
        case R_CHECK:
            rd->phase = check_idle(c, now);
            break;
        case R_PING: {
            redisReply *r = NULL;
            st = redtls__exch_poll(c, now, rd->ping_deadline, &r, w);
            if (st == REDTLS_OK && !r)
                return REDTLS_OK;
            freeReplyObject(r);
            if (st != REDTLS_OK && c->tp)
                redtls__conn_drop(c, REDTLS_E_IO);
            rd->phase = R_REAUTH_START;
            break;
        }
        case R_REAUTH_START: {
            rd->phase = R_RESTORE;
            if (!c->tp || !c->need_reauth)
                break;
            rd->scheduled = c->need_reauth == REDTLS__REAUTH_IAM_DUE;
            rd->live = c->need_reauth == REDTLS__REAUTH_LIVE;
            c->need_reauth = 0;
            int auth_done = 0;
            st = redtls__auth_start(c, now, rd->deadline, &auth_done);
            if (st != REDTLS_OK || auth_done)
                reauth_done(c, st);
            else
                rd->phase = R_REAUTH;
            break;
        }
        case R_REAUTH: {
            int auth_done = 0;
            st = redtls__auth_step(c, now, &auth_done, w);
            if (st == REDTLS_OK && !auth_done)
                return REDTLS_OK;
            reauth_done(c, st);
            rd->phase = R_RESTORE;
            break;
        }
        case R_RESTORE:
            redtls__conn_restore(c);
            rd->phase = R_CONNECT;
            break;
        case R_CONNECT:
            if (c->tp) {
                *done = 1;
                return REDTLS_OK;
            }
            if (!c->cfg.reconnect) {
                if (!rd->was_connected)
                    return redtls__fail(c->errmsg, REDTLS_E_STATE, "not connected (call redtls_conn_connect)");
                return redtls__fail_more(c->errmsg, REDTLS_E_STATE, " (call redtls_conn_connect)", "not connected: ");
            }
            if (c->gave_up)
                return redtls__fail(c->errmsg, REDTLS_E_UNAVAILABLE,
                                    "gave up reconnecting after %u attempts; call redtls_conn_connect to start again "
                                    "(last failure: %.300s)",
                                    c->attempts, redtls__conn_cause(c));
            rd->phase = R_BACKOFF;
            break;
        case R_BACKOFF:
            if (c->next_attempt > now) {
                if (rd->once || c->next_attempt >= rd->deadline)
                    return not_ready(c, now);
                w->at = c->next_attempt;
                return REDTLS_OK;
            }
            /* A spent deadline is no attempt: it must not feed the backoff
             * or count against the limits. */
            if (now >= rd->deadline) {
                c->no_time = rd->last == REDTLS_OK;
                return not_ready(c, now);
            }
            st = redtls__attempt_start(c, now, rd->deadline);
            rd->phase = R_ATTEMPT;
            if (st != REDTLS_OK)
                goto attempt_failed;
            break;
        case R_ATTEMPT: {
            int attempt_done = 0;
            st = redtls__attempt_step(c, now, &attempt_done, w);
            if (st == REDTLS_OK && !attempt_done)
                return REDTLS_OK;
            if (st == REDTLS_OK) {
                redtls__attempt_succeeded(c);
                rd->phase = R_CONNECT;
                break;
            }
        attempt_failed:
            rd->last = st;
            c->last_status = st;
            redtls__attempt_failed(c, now);
            if (rd->once || c->gave_up || now >= rd->deadline)
                return not_ready(c, now);
            rd->phase = R_BACKOFF;
            break;
        }
        default:
            return redtls__fail(c->errmsg, REDTLS_E_STATE, "no preparation under way");
        }
    }
}

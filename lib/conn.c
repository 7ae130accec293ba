#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "conn.h"

redtls_status redtls_conn_new(redtls_config *cfg, redtls_conn **out)
{
    if (!out)
        return REDTLS_E_INVALID;
    *out = NULL;
    if (!cfg)
        return REDTLS_E_INVALID;
    cfg->errmsg[0] = '\0';
    redtls_conn *c = calloc(1, sizeof *c);
    if (!c)
        return redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
    if (redtls__iam_on(&cfg->iam) && (!cfg->use_tls || cfg->unix_path)) {
        free(c);
        return redtls__fail(cfg->errmsg, REDTLS_E_CONFIG,
                            "IAM authentication needs TLS (AWS requires encryption in transit for it): use "
                            "rediss:// or turn TLS on");
    }
    if (redtls__config_copy(&c->cfg, cfg) != REDTLS_OK) {
        free(c);
        return redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
    }
    if (c->cfg.use_tls && !c->cfg.unix_path) {
        redtls_status st = redtls__config_tls_ctx(cfg, &c->tls);
        if (st != REDTLS_OK) {
            redtls__config_release(&c->cfg);
            free(c);
            return st;
        }
    }
    redtls__backoff_init(&c->backoff, c->cfg.backoff_base_ms, c->cfg.backoff_cap_ms, 0);
    *out = c;
    return REDTLS_OK;
}

void redtls_conn_free(redtls_conn *c)
{
    if (!c)
        return;
    redtls_conn_close(c);
    redtls__tls_session_clear(&c->session);
    redtls__tls_ctx_free(c->tls);
    if (c->obuf) {
        OPENSSL_cleanse(c->obuf, c->ocap);
        free(c->obuf);
    }
    redtls__config_release(&c->cfg);
    redtls__secret_clear(&c->iam.token);
    free(c->rbuf);
    free(c);
}

const char *redtls_conn_errmsg(const redtls_conn *c)
{
    return c ? c->errmsg : "";
}

int redtls_conn_is_connected(const redtls_conn *c)
{
    return c && c->tp != NULL;
}

size_t redtls_conn_pending(const redtls_conn *c)
{
    return c ? c->pending : 0;
}

/* Commands written on the current connection whose replies are due. */
static size_t in_flight(const redtls_conn *c)
{
    return c->pending - c->unsent - c->lost;
}

redtls_status redtls__conn_drop(redtls_conn *c, redtls_status st)
{
    if (c->tp) {
        c->tp->ops->close(c->tp, 0);
        c->tp = NULL;
        /* What was written may have run; the caller hears of each one. */
        c->lost += in_flight(c);
        if (c->established)
            redtls__emit(c, REDTLS_EVENT_DISCONNECTED, "%s", c->errmsg[0] ? c->errmsg : redtls_strerror(st));
        c->established = 0;
    }
    redtls__reader_free(&c->rd);
    c->need_reauth = 0;
    return st;
}

void redtls_conn_close(redtls_conn *c)
{
    if (!c)
        return;
    if (c->tp) {
        c->tp->ops->close(c->tp, 1);
        c->tp = NULL;
        if (c->established)
            redtls__emit(c, REDTLS_EVENT_DISCONNECTED, "closed by the application");
        c->established = 0;
    }
    redtls__reader_free(&c->rd);
    c->need_reauth = 0;
    c->pending = c->unsent = c->lost = 0;
    c->olen = 0;
}

redtls_status redtls__conn_attach(redtls_conn *c, redtls__transport *tp, int is_tls)
{
    redtls__conn_drop(c, REDTLS_OK);
    redtls_status st = redtls__reader_init(&c->rd, &c->cfg.limits);
    if (st != REDTLS_OK) {
        tp->ops->close(tp, 0);
        return redtls__fail(c->errmsg, st, "out of memory");
    }
    c->tp = tp;
    c->is_tls = is_tls;
    return REDTLS_OK;
}

/* A HELLO asking for RESP3 is refused: the replies of every later command
 * would be out of step with the pushes in between. */
static redtls_status resp3_refused(redtls_conn *c)
{
    return redtls__fail(c->errmsg, REDTLS_E_INVALID,
                        "HELLO asking for a protocol other than RESP2 is refused: redtls speaks RESP2, and RESP3 "
                        "server pushes would be taken for replies (use HELLO 2, or HELLO without a version)");
}

redtls_status redtls__conn_append(redtls_conn *c, int argc, const char **argv, const size_t *argvlen)
{
    if (argc <= 0 || !argv)
        return redtls__fail(c->errmsg, REDTLS_E_INVALID, "a command needs at least one argument");
    if (redtls__argv_asks_resp3(argc, argv, argvlen))
        return resp3_refused(c);
    redtls_status st = redtls__format_argv(&c->obuf, &c->olen, &c->ocap, argc, argv, argvlen);
    if (st != REDTLS_OK)
        return redtls__fail(c->errmsg, st, "out of memory formatting the command");
    c->pending++;
    c->unsent++;
    return REDTLS_OK;
}

redtls_status redtls__conn_flush(redtls_conn *c, int64_t deadline, int wipe)
{
    if (c->olen == 0)
        return REDTLS_OK;
    redtls_status st = c->tp->ops->write(c->tp, c->obuf, c->olen, deadline, c->errmsg);
    if (wipe)
        OPENSSL_cleanse(c->obuf, c->olen);
    /* Written, or perhaps partly written: either way in flight now. The
     * bytes stay in obuf (unwiped) until the next append. */
    c->olen = 0;
    c->unsent = 0;
    if (st != REDTLS_OK)
        return redtls__conn_drop(c, st);
    return REDTLS_OK;
}

static int is_noauth(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && r->str && strncmp(r->str, "NOAUTH", 6) == 0;
}

/* The oldest owed reply belongs to a command lost with its connection. */
static redtls_status report_lost(redtls_conn *c, const char *cause)
{
    c->lost--;
    c->pending--;
    return redtls__fail(c->errmsg, REDTLS_E_OUTCOME_UNKNOWN,
                        "the connection broke after the command was sent, so it may or may not have run (%.400s)",
                        cause && cause[0] ? cause : "lost with an earlier command");
}

/* The connection has nothing owed and nothing queued. If its previous
 * quiet moment is REDTLS__BUSY_MS or more ago it is not in steady use, so
 * it gives back the memory only a busy connection needs (TLS record
 * buffers, some 34 KiB); one that is used back to back keeps them, and
 * saves remaking them for every command. After the set-up round trips
 * quiet_at is 0, so a connection used once and then left alone is small. */
#define REDTLS__BUSY_MS 1000

static void went_quiet(redtls_conn *c, int64_t now)
{
    if (now - c->quiet_at >= REDTLS__BUSY_MS) {
        c->tp->ops->release(c->tp);
        free(c->rbuf);
        c->rbuf = NULL;
    }
    c->quiet_at = now;
}

/* The read buffer is made on the first read after a quiet moment. */
static redtls_status need_rbuf(redtls_conn *c)
{
    if (!c->rbuf && !(c->rbuf = malloc(REDTLS__READ_CHUNK)))
        return redtls__fail(c->errmsg, REDTLS_E_NOMEM,
                            "out of memory for the 16 KiB read buffer: the connection is closed, and a command "
                            "already sent may or may not have run");
    return REDTLS_OK;
}

/* Bookkeeping for a reply handed to the caller. */
static redtls_status took_reply(redtls_conn *c, const redisReply *r)
{
    c->pending--;
    if (is_noauth(r) && redtls__has_credentials(c))
        c->need_reauth = 1;
    int quiet = c->pending == 0 && c->olen == 0 && c->tp->ops->release;
    if (c->cfg.health_check_ms || quiet) {
        int64_t now = redtls__now_ms();
        if (c->cfg.health_check_ms)
            c->last_io = now;
        if (quiet)
            went_quiet(c, now);
    }
    return REDTLS_OK;
}

/* A read failed: the connection is dropped and the command whose reply
 * was awaited is reported (raw: as the transport said; otherwise as lost
 * when the connection broke after it was written). */
static redtls_status read_failed(redtls_conn *c, redtls_status st, int raw)
{
    if (c->tp)
        redtls__conn_drop(c, st);
    /* The connection is gone and this command was in flight. */
    if (c->lost > 0) {
        c->lost--;
        c->pending--;
    }
    if (raw || (st != REDTLS_E_EOF && st != REDTLS_E_CLOSED && st != REDTLS_E_IO && st != REDTLS_E_TLS))
        return st;
    char cause[REDTLS__ERRMSG_MAX];
    memcpy(cause, c->errmsg, sizeof cause);
    return redtls__fail(c->errmsg, REDTLS_E_OUTCOME_UNKNOWN,
                        "the connection broke after the command was sent, so it may or may not have run (%.400s)",
                        cause);
}

redtls_status redtls__conn_read(redtls_conn *c, int64_t deadline, int raw, struct redisReply **reply)
{
    *reply = NULL;
    if (c->lost > 0)
        return report_lost(c, NULL);
    redtls_status st = REDTLS_OK;
    if (!c->tp)
        return redtls__fail(c->errmsg, REDTLS_E_STATE, "not connected");
    /* Deep pipelines mostly find the reply already parsed: the clock is
     * only read once waiting becomes possible. */
    if (deadline == REDTLS__DEADLINE_LAZY) {
        if (c->olen == 0 && (st = redtls__reader_get(&c->rd, reply, c->errmsg)) == REDTLS_OK && *reply)
            return took_reply(c, *reply);
        deadline = redtls__deadline_after(c->cfg.command_timeout_ms);
    }
    if (st == REDTLS_OK && c->olen > 0)
        st = redtls__conn_flush(c, deadline, 0);
    for (int reads = 0; st == REDTLS_OK; reads++) {
        if ((st = redtls__reader_get(&c->rd, reply, c->errmsg)) != REDTLS_OK)
            break;
        if (*reply)
            return took_reply(c, *reply);
        /* Reads that find data never wait, so a server that keeps sending
         * (an endless array) must meet the deadline here; before the first
         * read the transport's own wait checks it. */
        if (reads > 0 && deadline != REDTLS__NO_DEADLINE && redtls__now_ms() >= deadline) {
            st = redtls__fail(c->errmsg, REDTLS_E_COMMAND_TIMEOUT, "the reply did not complete within the command timeout");
            break;
        }
        size_t got = 0;
        if ((st = need_rbuf(c)) != REDTLS_OK)
            break;
        st = c->tp->ops->read(c->tp, c->rbuf, REDTLS__READ_CHUNK, &got, deadline, c->errmsg);
        if (st == REDTLS_OK)
            st = redtls__reader_feed(&c->rd, c->rbuf, got, c->errmsg);
    }
    return read_failed(c, st, raw);
}

redtls_status redtls__conn_read_now(redtls_conn *c, int64_t deadline, size_t *budget, struct redisReply **reply)
{
    *reply = NULL;
    if (c->lost > 0)
        return report_lost(c, NULL);
    if (!c->tp)
        return redtls__fail(c->errmsg, REDTLS_E_STATE, "not connected");
    redtls_status st;
    for (int reads = 0;; reads++) {
        if ((st = redtls__reader_get(&c->rd, reply, c->errmsg)) != REDTLS_OK)
            break;
        if (*reply)
            return took_reply(c, *reply);
        /* As in redtls__conn_read: a server that keeps sending one endless
         * reply meets the deadline. */
        if ((budget && *budget == 0) ||
            (reads > 0 && deadline != REDTLS__NO_DEADLINE && redtls__now_ms() >= deadline))
            return REDTLS_OK;
        /* The caller polled the socket: skip the transport's wait-first. */
        if (reads == 0 && c->tp->ops->expect_data)
            c->tp->ops->expect_data(c->tp);
        size_t got = 0, cap = budget && *budget < REDTLS__READ_CHUNK ? *budget : REDTLS__READ_CHUNK;
        if ((st = need_rbuf(c)) != REDTLS_OK)
            break;
        st = c->tp->ops->read(c->tp, c->rbuf, cap, &got, REDTLS__NO_WAIT, c->errmsg);
        if (st == REDTLS_E_COMMAND_TIMEOUT) {
            c->errmsg[0] = '\0'; /* nothing more there for now */
            return REDTLS_OK;
        }
        if (st != REDTLS_OK || (st = redtls__reader_feed(&c->rd, c->rbuf, got, c->errmsg)) != REDTLS_OK)
            break;
        if (budget)
            *budget -= got;
    }
    return read_failed(c, st, 0);
}

void redtls__conn_abandon(redtls_conn *c, redtls_status st)
{
    redtls__conn_drop(c, st);
    c->pending = c->unsent = c->lost = 0;
    c->olen = 0;
}

redtls_status redtls__conn_roundtrip(redtls_conn *c, int argc, const char **argv, int secret, int64_t deadline,
                                     struct redisReply **reply)
{
    redtls_status st = redtls__conn_append(c, argc, argv, NULL);
    if (st == REDTLS_OK)
        st = redtls__conn_flush(c, deadline, secret);
    if (st == REDTLS_OK)
        st = redtls__conn_read(c, deadline, 1, reply);
    return st;
}

/* The caller's queued commands are set aside while the library talks to
 * the server on its own (handshake, health check, re-authentication), so
 * the two never mix on the wire. */
typedef struct saved_io {
    char *obuf;
    size_t olen, ocap, pending, unsent, lost;
} saved_io;

static void set_aside(redtls_conn *c, saved_io *s)
{
    *s = (saved_io){c->obuf, c->olen, c->ocap, c->pending, c->unsent, c->lost};
    c->obuf = NULL;
    c->olen = c->ocap = c->pending = c->unsent = c->lost = 0;
}

static void restore(redtls_conn *c, saved_io *s)
{
    if (c->obuf) {
        /* It may have carried AUTH. */
        OPENSSL_cleanse(c->obuf, c->ocap);
        free(c->obuf);
    }
    c->obuf = s->obuf;
    c->olen = s->olen;
    c->ocap = s->ocap;
    c->pending = s->pending;
    c->unsent = s->unsent;
    c->lost = s->lost;
}

/* One connection attempt (TCP, TLS, AUTH, SELECT, SETNAME); no attempt
 * phase may run past call_deadline. */
static redtls_status connect_once(redtls_conn *c, int64_t call_deadline)
{
    const redtls_config *cfg = &c->cfg;
    int fd = -1;
    int64_t deadline = redtls__deadline_min(redtls__deadline_after(cfg->connect_timeout_ms), call_deadline);
    redtls_status st;
    if (cfg->unix_path)
        st = redtls__unix_connect(cfg->unix_path, deadline, &fd, c->errmsg);
    else
        st = redtls__tcp_connect(redtls__config_connect_addr(cfg, cfg->host, cfg->port), cfg->port, deadline, cfg->tcp_user_timeout_ms, &fd, c->errmsg);
    if (st != REDTLS_OK)
        return st;
    /* The handshake timeout starts once TCP is up and covers TLS plus the
     * AUTH/SELECT/SETNAME round trips. */
    int64_t hs_deadline = redtls__deadline_min(redtls__deadline_after(cfg->handshake_timeout_ms), call_deadline);
    redtls__transport *tp = NULL;
    if (c->tls) {
        const char *name = redtls__config_verify_name(cfg, cfg->host);
        st = redtls__tls_connect(c->tls, fd, name, &c->session, hs_deadline, &tp, c->errmsg);
    } else {
        st = redtls__plain_transport(fd, &tp);
        if (st != REDTLS_OK) {
            close(fd);
            redtls__fail(c->errmsg, st, "out of memory");
        }
    }
    if (st != REDTLS_OK)
        return st;
    saved_io saved;
    set_aside(c, &saved);
    st = redtls__conn_attach(c, tp, c->tls != NULL);
    if (st == REDTLS_OK)
        st = redtls__conn_setup(c, hs_deadline);
    if (st != REDTLS_OK && c->tp) {
        /* Not a lost connection: it never was usable. */
        c->tp->ops->close(c->tp, 0);
        c->tp = NULL;
        redtls__reader_free(&c->rd);
    }
    restore(c, &saved);
    if (st != REDTLS_OK)
        return st;
    c->last_io = redtls__now_ms();
    c->quiet_at = 0; /* the set-up round trips are not use */
    c->established = 1;
    redtls__emit(c, REDTLS_EVENT_CONNECTED, "%s",
                 !c->is_tls ? "plain TCP" : redtls__tls_resumed(c->tp) ? "resumed TLS session" : "full handshake");
    return REDTLS_OK;
}

static void attempt_succeeded(redtls_conn *c)
{
    c->attempts = 0;
    c->outage_start = 0;
    c->next_attempt = 0;
    c->gave_up = 0;
    redtls__backoff_reset(&c->backoff);
}

/* Books a failed attempt: backoff, event, limits. */
static void attempt_failed(redtls_conn *c)
{
    int64_t now = redtls__now_ms();
    memcpy(c->last_cause, c->errmsg, sizeof c->last_cause);
    if (c->attempts++ == 0)
        c->outage_start = now;
    unsigned delay = redtls__backoff_next(&c->backoff);
    c->next_attempt = now + delay;
    const redtls_config *cfg = &c->cfg;
    if ((cfg->max_attempts && c->attempts >= cfg->max_attempts) ||
        (cfg->max_outage_ms && now - c->outage_start >= (int64_t)cfg->max_outage_ms)) {
        c->gave_up = 1;
        return;
    }
    redtls__emit(c, REDTLS_EVENT_RECONNECT_SCHEDULED, "next attempt in %u ms: %.200s", delay, c->last_cause);
}

redtls_status redtls_conn_connect(redtls_conn *c)
{
    if (!c)
        return REDTLS_E_INVALID;
    c->errmsg[0] = '\0';
    redtls_conn_close(c);
    attempt_succeeded(c); /* an explicit connect starts afresh */
    redtls_status st = connect_once(c, REDTLS__NO_DEADLINE);
    if (st == REDTLS_OK) {
        attempt_succeeded(c);
    } else {
        c->last_status = st;
        attempt_failed(c);
    }
    return st;
}

/* Re-authenticates after a NOAUTH reply, on the same connection. */
static redtls_status reauthenticate(redtls_conn *c, int64_t deadline)
{
    int scheduled = c->need_reauth == REDTLS__REAUTH_IAM_DUE;
    c->need_reauth = 0;
    redtls_status st = redtls__authenticate(c, deadline);
    if (st == REDTLS_OK)
        redtls__emit(c, REDTLS_EVENT_AUTH_REFRESHED, "%s",
                     scheduled ? "re-authenticated with IAM before the server's connection limit"
                               : "re-authenticated after a NOAUTH reply");
    return st;
}

/* Checks an idle connection before new commands go out on it: has the
 * server closed it, is it due for a PING, does it owe an AUTH? */
static void check_idle_connection(redtls_conn *c, int64_t deadline)
{
    if (!c->tp || in_flight(c) > 0 || c->lost > 0)
        return;
    redtls_status st = c->tp->ops->idle_check(c->tp, c->errmsg);
    if (st != REDTLS_OK) {
        redtls__conn_drop(c, st);
        return;
    }
    if (!c->need_reauth && redtls__iam_on(&c->cfg.iam) && redtls__iam_reauth_due(&c->cfg.iam, &c->iam))
        c->need_reauth = REDTLS__REAUTH_IAM_DUE;
    int ping = c->cfg.health_check_ms && redtls__now_ms() - c->last_io >= (int64_t)c->cfg.health_check_ms;
    if (!ping && !c->need_reauth)
        return;
    saved_io saved;
    set_aside(c, &saved);
    if (ping) {
        const char *argv[] = {"PING"};
        redisReply *r = NULL;
        /* Any reply, even an error, proves the server is there. Half the
         * command timeout at most, so a failed check leaves time to
         * reconnect. */
        int64_t check_deadline =
            redtls__deadline_min(deadline, redtls__deadline_after(c->cfg.command_timeout_ms / 2));
        if (redtls__conn_roundtrip(c, 1, argv, 0, check_deadline, &r) == REDTLS_OK)
            freeReplyObject(r);
        else if (c->tp)
            redtls__conn_drop(c, REDTLS_E_IO);
    }
    int scheduled = c->need_reauth == REDTLS__REAUTH_IAM_DUE;
    if (c->tp && c->need_reauth && reauthenticate(c, deadline) != REDTLS_OK && c->tp) {
        if (scheduled) {
            /* The server still honours the earlier AUTH (until its own
             * limit): keep the connection, say why, try again later. */
            c->iam.retry_ms = redtls__iam_now_ms(&c->cfg.iam) + REDTLS__IAM_RETRY_MS;
            redtls__emit(c, REDTLS_EVENT_AUTH_REFRESH_FAILED, "%.200s; the connection stays, retry in %d s",
                         c->errmsg, (int)(REDTLS__IAM_RETRY_MS / 1000));
            c->errmsg[0] = '\0';
        } else {
            redtls__conn_drop(c, REDTLS_E_AUTH);
        }
    }
    restore(c, &saved);
}

/* Makes sure there is a usable connection before commands are written,
 * reconnecting within the call's deadline as the backoff allows. */
static redtls_status ensure_connected_n(redtls_conn *c, int64_t deadline, int once);

static redtls_status ensure_connected(redtls_conn *c, int64_t deadline)
{
    return ensure_connected_n(c, deadline, 0);
}

redtls_status redtls__conn_ensure_once(redtls_conn *c, int64_t deadline)
{
    c->errmsg[0] = '\0';
    c->no_time = 0;
    return ensure_connected_n(c, deadline, 1);
}

redtls_status redtls__conn_append_raw(redtls_conn *c, const char *bytes, size_t len)
{
    redtls_status st = redtls__buf_append(&c->obuf, &c->olen, &c->ocap, bytes, len);
    if (st != REDTLS_OK)
        return redtls__fail(c->errmsg, st, "out of memory");
    c->pending++;
    c->unsent++;
    return REDTLS_OK;
}

/* once: at most one attempt, and no waiting for the backoff (the cluster
 * layer decides where to go instead). */
static redtls_status ensure_connected_n(redtls_conn *c, int64_t deadline, int once)
{
    int was_connected = c->tp != NULL;
    check_idle_connection(c, deadline);
    if (c->tp)
        return REDTLS_OK;
    if (!c->cfg.reconnect) {
        if (!was_connected)
            return redtls__fail(c->errmsg, REDTLS_E_STATE, "not connected (call redtls_conn_connect)");
        char cause[REDTLS__ERRMSG_MAX];
        memcpy(cause, c->errmsg, sizeof cause);
        return redtls__fail(c->errmsg, REDTLS_E_STATE, "not connected: %.400s (call redtls_conn_connect)", cause);
    }
    if (c->gave_up)
        return redtls__fail(c->errmsg, REDTLS_E_UNAVAILABLE,
                            "gave up reconnecting after %u attempts; call redtls_conn_connect to start again "
                            "(last failure: %.300s)",
                            c->attempts, c->last_cause);
    redtls_status last = REDTLS_OK;
    for (;;) {
        int64_t now = redtls__now_ms();
        if (c->next_attempt > now) {
            if (once || c->next_attempt >= deadline)
                break;
            redtls__sleep_until(c->next_attempt);
        }
        /* A spent deadline is no attempt: it must not feed the backoff or
         * count against the limits. */
        if (redtls__now_ms() >= deadline) {
            c->no_time = last == REDTLS_OK;
            break;
        }
        redtls_status st = connect_once(c, deadline);
        if (st == REDTLS_OK) {
            attempt_succeeded(c);
            return REDTLS_OK;
        }
        last = st;
        c->last_status = st;
        attempt_failed(c);
        if (once || c->gave_up || redtls__now_ms() >= deadline)
            break;
    }
    int64_t wait = c->next_attempt - redtls__now_ms();
    if (last != REDTLS_OK)
        return redtls__fail(c->errmsg, last, "%.380s (reconnect attempt %u; %s)", c->last_cause, c->attempts,
                            c->gave_up ? "giving up" : "will retry");
    return redtls__fail(c->errmsg, REDTLS_E_UNAVAILABLE,
                        "not connected; next reconnect attempt in %lld ms, after the command deadline (last "
                        "failure: %.300s)",
                        (long long)(wait > 0 ? wait : 0), c->last_cause);
}

/* Common start of a single command: no pipeline in progress, and a usable
 * connection within the command's deadline. */
static redtls_status begin_command(redtls_conn *c, int64_t *deadline)
{
    c->errmsg[0] = '\0';
    *deadline = redtls__deadline_after(c->cfg.command_timeout_ms);
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
    int resend = 0;
    if (st == REDTLS_OK && c->need_reauth) {
        /* NOAUTH: the server did not run it, so it is safe to resend. */
        if (!copy && (copy = malloc(cmdlen)) != NULL)
            memcpy(copy, c->obuf, cmdlen);
        if (copy) {
            freeReplyObject(*reply);
            *reply = NULL;
            st = reauthenticate(c, deadline);
            if (st != REDTLS_OK) {
                char cause[REDTLS__ERRMSG_MAX];
                memcpy(cause, c->errmsg, sizeof cause);
                redtls__fail(c->errmsg, st, "command not executed: the server answered NOAUTH and %.400s", cause);
            }
            resend = st == REDTLS_OK;
        }
    } else if (st == REDTLS_E_OUTCOME_UNKNOWN && (flags & REDTLS_CMD_IDEMPOTENT)) {
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
    if (!redtls__frame_asks_resp3(c->obuf + from, c->olen - from))
        return REDTLS_OK;
    OPENSSL_cleanse(c->obuf + from, c->olen - from); /* HELLO may carry AUTH */
    c->olen = from;
    c->pending--;
    c->unsent--;
    return resp3_refused(c);
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
    if (c->unsent == 0 || (c->tp && (in_flight(c) > 0 || c->lost > 0)))
        return REDTLS_OK;
    return ensure_connected(c, deadline);
}

redtls_status redtls_conn_flush(redtls_conn *c)
{
    if (!c)
        return REDTLS_E_INVALID;
    c->errmsg[0] = '\0';
    int64_t deadline = redtls__deadline_after(c->cfg.command_timeout_ms);
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
        return report_lost(c, NULL);
    if (c->unsent == 0 && c->tp)
        return redtls__conn_read(c, REDTLS__DEADLINE_LAZY, 0, reply);
    int64_t deadline = redtls__deadline_after(c->cfg.command_timeout_ms);
    redtls_status st = prepare_write(c, deadline);
    if (st != REDTLS_OK)
        return st;
    return redtls__conn_read(c, deadline, 0, reply);
}

int redtls_conn_tls_resumed(const redtls_conn *c)
{
    return c && c->tp && c->is_tls && redtls__tls_resumed(c->tp);
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

static const char *describe(redtls_conn *c, int what)
{
    if (!c || !c->tp || !c->is_tls)
        return NULL;
    return redtls__tls_describe(c->tp, what, c->info[what], sizeof c->info[what]) == 0 ? c->info[what] : NULL;
}

const char *redtls_conn_tls_version(redtls_conn *c) { return describe(c, REDTLS__TLS_VERSION); }
const char *redtls_conn_tls_cipher(redtls_conn *c) { return describe(c, REDTLS__TLS_CIPHER); }
const char *redtls_conn_peer_subject(redtls_conn *c) { return describe(c, REDTLS__TLS_SUBJECT); }
const char *redtls_conn_peer_sans(redtls_conn *c) { return describe(c, REDTLS__TLS_SANS); }
const char *redtls_conn_peer_not_after(redtls_conn *c) { return describe(c, REDTLS__TLS_NOT_AFTER); }

/* The session's bottom layer: the transport a connection owns, its
 * command queue (obuf), the replies it reads, the bookkeeping of what is
 * owed, and the library's own request exchange. Steps only: nothing here
 * waits or reads the clock. */
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "conn.h"

redtls_status redtls__conn_drop(redtls_conn *c, redtls_status st)
{
    if (c->tp) {
        c->tp->ops->close(c->tp, 0);
        c->tp = NULL;
        c->fd = -1;
        c->sockets++;
        /* What was written may have run; the caller hears of each one. */
        c->lost += redtls__conn_in_flight(c);
        if (c->established)
            redtls__emit(c, REDTLS_EVENT_DISCONNECTED, "%s", c->errmsg[0] ? c->errmsg : redtls_strerror(st));
        c->established = 0;
    }
    redtls__reader_free(&c->rd);
    c->need_reauth = 0;
    return st;
}

/* The reader's claim (reader.h): the Pub/Sub hook first, then pushes and
 * attributes to the application's push callback (freed after it); an
 * array nobody took is a command's reply. */
static int conn_claim(void *ud, redisReply *r)
{
    redtls_conn *c = ud;
    int took = c->sub_claim ? c->sub_claim(c->sub_ud, r) : 0;
    if (took)
        return took; /* taken, or (2) a confirmation answering a command */
    if (r->type != REDTLS_REPLY_PUSH && r->type != REDTLS_REPLY_ATTR)
        return 0;
    if (c->cfg.push_cb)
        c->cfg.push_cb(c->cfg.push_ud, r);
    redtls_reply_free(r);
    return 1;
}

redtls_status redtls__conn_attach(redtls_conn *c, redtls__transport *tp, int is_tls)
{
    redtls__conn_drop(c, REDTLS_OK);
    redtls_status st = redtls__reader_init(&c->rd, &c->cfg.limits);
    if (st != REDTLS_OK) {
        tp->ops->close(tp, 0);
        return redtls__fail(c->errmsg, st, "out of memory");
    }
    c->rd.claim = conn_claim;
    c->rd.claim_ud = c;
    c->rd.claim_arrays = c->sub_arrays;
    c->tp = tp;
    c->sockets++;
    c->is_tls = is_tls;
    c->lean = tp->ops->settle != NULL;
    c->lean_writes = 0;
    c->fd = tp->ops->fd(tp);
    c->stamps = c->cfg.health_check_ms != 0 || tp->ops->release != NULL;
    return REDTLS_OK;
}

/* A HELLO asking for another protocol than the connection's is refused:
 * the replies of every later command would be out of step with the
 * reader (and under RESP3 with the pushes in between). */
redtls_status redtls__conn_protocol_refused(redtls_conn *c)
{
    if (c->cfg.protocol == 3)
        return redtls__fail(c->errmsg, REDTLS_E_INVALID,
                            "HELLO asking for a protocol other than RESP3 is refused: this connection is configured "
                            "for protocol 3 and its set-up switched it to RESP3 (use HELLO 3, or HELLO without a "
                            "version; configure protocol 2 for RESP2)");
    return redtls__fail(c->errmsg, REDTLS_E_INVALID,
                        "HELLO asking for a protocol other than RESP2 is refused: this connection speaks RESP2, "
                        "and RESP3 server pushes would be taken for replies (use HELLO 2, or HELLO without a "
                        "version; for RESP3 configure protocol 3: redtls_config_set_protocol() or protocol=3 in "
                        "the URL)");
}

redtls_status redtls__conn_sub_refused(redtls_conn *c)
{
    return redtls__fail(c->errmsg, REDTLS_E_INVALID,
                        "SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their UNSUBSCRIBE forms are refused as commands "
                        "(their replies do not pair with commands): use redtls_subscriber or "
                        "redtls_async_subscribe (redtls/pubsub.h)");
}

/* Formats one command into obuf (both appends; inlined into each). */
static inline redtls_status append_formatted(redtls_conn *c, int argc, const char **argv, const size_t *argvlen)
{
    redtls_status st = redtls__format_argv(&c->obuf, &c->olen, &c->ocap, argc, argv, argvlen);
    if (st != REDTLS_OK)
        return redtls__fail(c->errmsg, st, "out of memory formatting the command");
    c->pending++;
    c->unsent++;
    return REDTLS_OK;
}

redtls_status redtls__conn_append(redtls_conn *c, int argc, const char **argv, const size_t *argvlen)
{
    if (argc <= 0 || !argv)
        return redtls__fail(c->errmsg, REDTLS_E_INVALID, "a command needs at least one argument");
    if (redtls__argv_switches_protocol(argc, argv, argvlen, c->cfg.protocol))
        return redtls__conn_protocol_refused(c);
    if (redtls__argv_is_sub_command(argc, argv, argvlen))
        return redtls__conn_sub_refused(c);
    return append_formatted(c, argc, argv, argvlen);
}

redtls_status redtls__conn_append_checked(redtls_conn *c, int argc, const char **argv, const size_t *argvlen)
{
    return append_formatted(c, argc, argv, argvlen);
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

redtls_status redtls__conn_write_failed(redtls_conn *c, redtls_status st)
{
    if (c->owipe)
        OPENSSL_cleanse(c->obuf, c->olen);
    c->owipe = 0;
    c->olen = c->ooff = 0;
    c->unsent = 0;
    return redtls__conn_drop(c, st);
}

redtls_status redtls__conn_write_end(redtls_conn *c, redtls_status st, int *want)
{
    *want = 0;
    if (st != REDTLS_OK)
        return redtls__conn_write_failed(c, st);
    if (c->owipe)
        OPENSSL_cleanse(c->obuf, c->olen);
    c->owipe = 0;
    /* The bytes stay in obuf (unless wiped) until the next append. */
    c->olen = c->ooff = 0;
    c->just_wrote = 1;
    return REDTLS_OK;
}

static void settle(redtls_conn *c)
{
    c->lean = 0;
    c->tp->ops->settle(c->tp);
}

/* The connection has nothing owed and nothing queued. If its previous
 * quiet moment is REDTLS__BUSY_MS or more ago it is not in steady use, so
 * it gives back the memory only a busy connection needs (TLS record
 * buffers, some 33 KiB, and the read buffer) and its transport goes back
 * to holding the record buffers only while a record is in hand (lean), as
 * it did from the handshake on: a connection waiting for a reply then
 * holds none of them, which counts when thousands of them wait at once.
 * Once it is used back to back (quiet again within REDTLS__BUSY_MS, or a
 * second write since it went lean: a pipeline that is never quiet) it
 * keeps them, and saves remaking them for every command. The set-up round
 * trips are not use: after them quiet_at is 0, and they never end lean. */
void redtls__conn_went_quiet(redtls_conn *c, int64_t now)
{
    if (now - c->quiet_at >= REDTLS__BUSY_MS) {
        c->tp->ops->release(c->tp);
        c->lean = c->tp->ops->settle != NULL;
        c->lean_writes = 0;
        free(c->rbuf);
        c->rbuf = NULL;
    } else if (c->lean && c->established) {
        settle(c);
    }
    c->quiet_at = now;
}

void redtls__conn_lean_write(redtls_conn *c)
{
    if (c->established && c->lean_writes++ > 0)
        settle(c);
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

void redtls__conn_noauth_seen(redtls_conn *c, const redisReply *r)
{
    if (r->str && strncmp(r->str, "NOAUTH", 6) == 0 && redtls__has_credentials(c))
        c->need_reauth = 1;
}

redtls_status redtls__conn_read_more(redtls_conn *c, int64_t now, size_t cap, size_t *got, struct redisReply **reply,
                                     int *want)
{
    redtls_status st;
    *reply = NULL;
    *want = 0;
    *got = 0;
    if (c->just_wrote) {
        c->just_wrote = 0;
        if (!c->tp->ops->buffered || !c->tp->ops->buffered(c->tp)) {
            *want = POLLIN;
            return REDTLS_OK;
        }
    }
    if ((st = need_rbuf(c)) == REDTLS_OK &&
        (st = c->tp->ops->read(c->tp, c->rbuf, cap, got, want, c->errmsg)) == REDTLS_OK) {
        if (*got == 0) {
            /* Lean, it waits for its answer (TLS 1.3 tickets came first)
             * without the read buffer too: see redtls__conn_went_quiet. */
            if (c->lean) {
                free(c->rbuf);
                c->rbuf = NULL;
            }
            return REDTLS_OK;
        }
        if ((st = redtls__reader_feed(&c->rd, c->rbuf, *got, c->errmsg)) == REDTLS_OK && c->msg_views)
            return REDTLS_OK;
        if (st == REDTLS_OK && (st = redtls__reader_get(&c->rd, reply, c->errmsg)) == REDTLS_OK) {
            if (*reply)
                redtls__conn_took_reply(c, *reply, now);
            return REDTLS_OK;
        }
    }
    *want = 0;
    return redtls__conn_drop(c, st);
}

/* At most this many reads per idle check: a server that keeps pushing
 * cannot hold the caller here. */
#define REDTLS__IDLE_READS 64

/* A reply that came while nothing was owed answers nothing. */
static redtls_status unasked_reply(redtls_conn *c, redisReply *r)
{
    int kind = r->type;
    redtls_reply_free(r);
    return redtls__fail(c->errmsg, REDTLS_E_PROTOCOL,
                        "the server sent a reply (kind %d) nobody asked for on an idle connection", kind);
}

redtls_status redtls__conn_idle_read(redtls_conn *c)
{
    redisReply *r = NULL;
    /* The memory transport (no socket) never speaks unasked: its scripted
     * bytes answer the next commands, as its own idle check says. */
    if (c->fd < 0)
        return REDTLS_OK;
    /* What the last read left in the reader first (a push behind the
     * last reply). */
    if (!redtls__reader_idle(&c->rd)) {
        redtls_status st = redtls__reader_get(&c->rd, &r, c->errmsg);
        if (st != REDTLS_OK)
            return st;
        if (r)
            return unasked_reply(c, r);
    }
    for (int turn = 0; turn < REDTLS__IDLE_READS; turn++) {
        if (!(c->tp->ops->buffered && c->tp->ops->buffered(c->tp))) {
            struct pollfd p = {.fd = c->fd, .events = POLLIN, .revents = 0};
            if (poll(&p, 1, 0) <= 0)
                return REDTLS_OK;
        }
        size_t got = 0;
        int want = 0;
        redtls_status st = need_rbuf(c);
        if (st == REDTLS_OK)
            st = c->tp->ops->read(c->tp, c->rbuf, REDTLS__READ_CHUNK, &got, &want, c->errmsg);
        if (st != REDTLS_OK)
            return st;
        if (got == 0) {
            if (c->lean) {
                free(c->rbuf);
                c->rbuf = NULL;
            }
            return REDTLS_OK;
        }
        if ((st = redtls__reader_feed(&c->rd, c->rbuf, got, c->errmsg)) != REDTLS_OK ||
            (st = redtls__reader_get(&c->rd, &r, c->errmsg)) != REDTLS_OK)
            return st;
        if (r)
            return unasked_reply(c, r);
    }
    return REDTLS_OK;
}

/* The oldest owed reply belongs to a command lost with its connection. */
redtls_status redtls__conn_report_lost(redtls_conn *c)
{
    c->lost--;
    c->pending--;
    return redtls__fail(c->errmsg, REDTLS_E_OUTCOME_UNKNOWN,
                        "the connection broke after the command was sent, so it may or may not have run (%.400s)",
                        "lost with an earlier command");
}

/* A read failed: the connection is dropped and the command whose reply
 * was awaited is reported (raw: as the transport said; otherwise as lost
 * when the connection broke after it was written). */
redtls_status redtls__conn_read_failed(redtls_conn *c, redtls_status st, int raw)
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
    return redtls__fail_more(c->errmsg, REDTLS_E_OUTCOME_UNKNOWN, ")",
                             "the connection broke after the command was sent, so it may or may not have run (");
}

void redtls__conn_abandon(redtls_conn *c, redtls_status st)
{
    redtls__conn_drop(c, st);
    c->pending = c->unsent = c->lost = 0;
    c->olen = c->ooff = 0;
}

void redtls__conn_set_aside(redtls_conn *c)
{
    redtls__saved_io *s = &c->saved;
    *s = (redtls__saved_io){c->obuf, c->olen, c->ocap, c->pending, c->unsent, c->lost, 1};
    c->obuf = NULL;
    c->olen = c->ocap = c->ooff = c->pending = c->unsent = c->lost = 0;
}

void redtls__conn_restore(redtls_conn *c)
{
    redtls__saved_io *s = &c->saved;
    if (!s->active)
        return;
    if (c->obuf) {
        /* It may have carried AUTH. */
        OPENSSL_cleanse(c->obuf, c->ocap);
        free(c->obuf);
    }
    c->obuf = s->obuf;
    c->olen = s->olen;
    c->ocap = s->ocap;
    c->ooff = 0;
    c->owipe = 0;
    c->pending = s->pending;
    c->unsent = s->unsent;
    c->lost = s->lost;
    s->active = 0;
}

redtls_status redtls__exch_send(redtls_conn *c, int argc, const char **argv, int secret)
{
    redtls_status st = redtls__conn_append(c, argc, argv, NULL);
    if (st == REDTLS_OK && secret)
        c->owipe = 1;
    return st;
}

/* An own request failed with its connection: nothing of it may stay
 * queued for the next connection (a secret is wiped), and nobody is owed
 * its reply. */
redtls_status redtls__exch_abort(redtls_conn *c, redtls_status st)
{
    if (c->tp)
        redtls__conn_drop(c, st);
    if (c->owipe)
        OPENSSL_cleanse(c->obuf, c->olen);
    c->owipe = 0;
    c->olen = c->ooff = 0;
    if (c->lost > 0)
        c->lost--;
    else if (c->unsent > 0)
        c->unsent--;
    if (c->pending > 0)
        c->pending--;
    return st;
}

redtls_status redtls__exch_poll(redtls_conn *c, int64_t now, int64_t deadline, struct redisReply **reply,
                                redtls__wait *w)
{
    int want = 0;
    *reply = NULL;
    if (!c->tp)
        return redtls__exch_abort(c, redtls__fail(c->errmsg, REDTLS_E_STATE, "not connected"));
    redtls_status st = redtls__conn_write_step(c, &want);
    int writing = want != 0;
    if (st == REDTLS_OK && !writing)
        st = redtls__conn_read_step(c, now, reply, &want);
    if (st != REDTLS_OK)
        return redtls__exch_abort(c, st);
    if (*reply)
        return REDTLS_OK;
    if (now >= deadline)
        return redtls__exch_abort(c, redtls__fail(c->errmsg, REDTLS_E_COMMAND_TIMEOUT, "timed out %s the server",
                                           writing ? "writing to" : "waiting for"));
    w->fd = c->fd;
    w->events = want;
    /* Bytes came but no whole reply yet: straight back, so a server that
     * keeps sending still meets the deadline. */
    w->at = want ? deadline : now;
    return REDTLS_OK;
}

/* Borrowed TLS details (the public accessors). */

void redtls__emit(redtls_conn *c, redtls_event_type type, const char *fmt, ...)
{
    if (!c->cfg.event_cb)
        return;
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    c->cfg.event_cb(c->cfg.event_ud, type, detail);
}

int redtls__has_credentials(const redtls_conn *c)
{
    return redtls__iam_on(&c->cfg.iam) || c->cfg.cred_cb != NULL || c->cfg.token.data != NULL;
}

/* The cluster engine's view (conn_view.h). */

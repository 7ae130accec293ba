#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

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
    redtls__auth_reset(c);
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

redtls_status redtls__conn_drop(redtls_conn *c, redtls_status st)
{
    if (c->tp) {
        c->tp->ops->close(c->tp, 0);
        c->tp = NULL;
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

void redtls_conn_close(redtls_conn *c)
{
    if (!c)
        return;
    redtls__attempt_cancel(c);
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
    c->olen = c->ooff = 0;
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
redtls_status redtls__conn_resp3_refused(redtls_conn *c)
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
        return redtls__conn_resp3_refused(c);
    redtls_status st = redtls__format_argv(&c->obuf, &c->olen, &c->ocap, argc, argv, argvlen);
    if (st != REDTLS_OK)
        return redtls__fail(c->errmsg, st, "out of memory formatting the command");
    c->pending++;
    c->unsent++;
    return REDTLS_OK;
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

redtls_status redtls__conn_write_step(redtls_conn *c, int *want)
{
    *want = 0;
    if (c->olen == 0)
        return REDTLS_OK;
    /* From the first byte on, every queued command may run. */
    c->unsent = 0;
    size_t done = 0;
    redtls_status st = c->tp->ops->write(c->tp, c->obuf + c->ooff, c->olen - c->ooff, &done, want, c->errmsg);
    c->ooff += done;
    if (st == REDTLS_OK && c->ooff < c->olen)
        return REDTLS_OK;
    if (c->owipe)
        OPENSSL_cleanse(c->obuf, c->olen);
    c->owipe = 0;
    /* The bytes stay in obuf (unless wiped) until the next append. */
    c->olen = c->ooff = 0;
    *want = 0;
    if (st != REDTLS_OK)
        return redtls__conn_drop(c, st);
    return REDTLS_OK;
}

static int is_noauth(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && r->str && strncmp(r->str, "NOAUTH", 6) == 0;
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
static void took_reply(redtls_conn *c, const redisReply *r, int64_t now)
{
    c->pending--;
    if (is_noauth(r) && redtls__has_credentials(c))
        c->need_reauth = 1;
    if (c->cfg.health_check_ms)
        c->last_io = now;
    if (c->pending == 0 && c->olen == 0 && c->tp->ops->release)
        went_quiet(c, now);
}

redtls_status redtls__conn_read_some(redtls_conn *c, int64_t now, size_t cap, size_t *got,
                                     struct redisReply **reply, int *want)
{
    *reply = NULL;
    *want = 0;
    *got = 0;
    redtls_status st = redtls__reader_get(&c->rd, reply, c->errmsg);
    if (st == REDTLS_OK && *reply) {
        took_reply(c, *reply, now);
        return REDTLS_OK;
    }
    if (st == REDTLS_OK && (st = need_rbuf(c)) == REDTLS_OK &&
        (st = c->tp->ops->read(c->tp, c->rbuf, cap, got, want, c->errmsg)) == REDTLS_OK) {
        if (*got == 0)
            return REDTLS_OK;
        if ((st = redtls__reader_feed(&c->rd, c->rbuf, *got, c->errmsg)) == REDTLS_OK &&
            (st = redtls__reader_get(&c->rd, reply, c->errmsg)) == REDTLS_OK) {
            if (*reply)
                took_reply(c, *reply, now);
            return REDTLS_OK;
        }
    }
    *want = 0;
    return redtls__conn_drop(c, st);
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

redtls_status redtls__exch_poll(redtls_conn *c, int64_t now, int64_t deadline, struct redisReply **reply,
                                redtls__wait *w)
{
    int want = 0;
    *reply = NULL;
    if (!c->tp)
        return redtls__fail(c->errmsg, REDTLS_E_STATE, "not connected");
    redtls_status st = redtls__conn_write_step(c, &want);
    int writing = want != 0;
    if (st == REDTLS_OK && !writing)
        st = redtls__conn_read_step(c, now, reply, &want);
    if (st != REDTLS_OK || *reply)
        return st;
    if (now >= deadline) {
        st = redtls__fail(c->errmsg, REDTLS_E_COMMAND_TIMEOUT, "timed out %s the server",
                          writing ? "writing to" : "waiting for");
        return redtls__conn_drop(c, st);
    }
    w->fd = c->tp->ops->fd(c->tp);
    w->events = want;
    /* Bytes came but no whole reply yet: straight back, so a server that
     * keeps sending still meets the deadline. */
    w->at = want ? deadline : now;
    return REDTLS_OK;
}

/* Borrowed TLS details (the public accessors). */
static const char *describe(redtls_conn *c, int what)
{
    if (!c || !c->tp || !c->is_tls)
        return NULL;
    return redtls__transport_describe(c->tp, what, c->info[what], sizeof c->info[what]) == 0 ? c->info[what] : NULL;
}

const char *redtls_conn_tls_version(redtls_conn *c) { return describe(c, REDTLS__TLS_VERSION); }
const char *redtls_conn_tls_cipher(redtls_conn *c) { return describe(c, REDTLS__TLS_CIPHER); }
const char *redtls_conn_peer_subject(redtls_conn *c) { return describe(c, REDTLS__TLS_SUBJECT); }
const char *redtls_conn_peer_sans(redtls_conn *c) { return describe(c, REDTLS__TLS_SANS); }
const char *redtls_conn_peer_not_after(redtls_conn *c) { return describe(c, REDTLS__TLS_NOT_AFTER); }

int redtls_conn_tls_resumed(const redtls_conn *c)
{
    return c && c->tp && c->is_tls && redtls__transport_resumed(c->tp);
}

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
int redtls__conn_up(const redtls_conn *c) { return c->tp != NULL; }
size_t redtls__conn_owed(const redtls_conn *c) { return c->pending; }
int redtls__conn_has_queued(const redtls_conn *c) { return c->olen > 0; }
int redtls__conn_fd(const redtls_conn *c) { return c->tp ? c->tp->ops->fd(c->tp) : -1; }
int redtls__conn_no_time(const redtls_conn *c) { return c->no_time; }
redtls_status redtls__conn_last_status(const redtls_conn *c) { return c->last_status; }
int redtls__conn_preferred(const redtls_conn *c) { return c->preferred; }
void redtls__conn_set_preferred(redtls_conn *c, int preferred) { c->preferred = preferred; }
char *redtls__conn_msg(redtls_conn *c) { return c->errmsg; }
int redtls__conn_has_credentials(const redtls_conn *c) { return redtls__has_credentials(c); }

int redtls__conn_backing_off(const redtls_conn *c, int64_t now)
{
    return !c->tp && (c->gave_up || c->next_attempt > now);
}

redtls__conn_mark redtls__conn_mark_queue(const redtls_conn *c)
{
    return (redtls__conn_mark){c->olen, c->pending, c->unsent};
}

void redtls__conn_rewind_queue(redtls_conn *c, redtls__conn_mark m)
{
    c->olen = m.olen;
    c->pending = m.pending;
    c->unsent = m.unsent;
}

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
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
    if (redtls__config_copy(&c->cfg, cfg) != REDTLS_OK) {
        free(c);
        return redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
    }
    if (c->cfg.use_tls && !c->cfg.unix_path) {
        redtls_status st = redtls__tls_ctx_new(&c->cfg.tls, &c->tls, cfg->errmsg);
        if (st != REDTLS_OK) {
            redtls__config_release(&c->cfg);
            free(c);
            return st;
        }
    }
    *out = c;
    return REDTLS_OK;
}

void redtls_conn_free(redtls_conn *c)
{
    if (!c)
        return;
    redtls_conn_close(c);
    redtls__tls_ctx_free(c->tls);
    if (c->obuf) {
        OPENSSL_cleanse(c->obuf, c->ocap);
        free(c->obuf);
    }
    redtls__config_release(&c->cfg);
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

static void forget_state(redtls_conn *c)
{
    redtls__reader_free(&c->rd);
    c->pending = 0;
    c->olen = 0;
    c->need_reauth = 0;
}

redtls_status redtls__conn_drop(redtls_conn *c, redtls_status st)
{
    if (c->tp) {
        c->tp->ops->close(c->tp, 0);
        c->tp = NULL;
    }
    forget_state(c);
    return st;
}

void redtls_conn_close(redtls_conn *c)
{
    if (!c)
        return;
    if (c->tp) {
        c->tp->ops->close(c->tp, 1);
        c->tp = NULL;
    }
    forget_state(c);
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

redtls_status redtls__conn_append(redtls_conn *c, int argc, const char **argv, const size_t *argvlen, int wipe)
{
    if (argc <= 0 || !argv)
        return redtls__fail(c->errmsg, REDTLS_E_INVALID, "a command needs at least one argument");
    redtls_status st = redtls__format_argv(&c->obuf, &c->olen, &c->ocap, argc, argv, argvlen, wipe);
    if (st != REDTLS_OK)
        return redtls__fail(c->errmsg, st, "out of memory formatting the command");
    c->pending++;
    return REDTLS_OK;
}

redtls_status redtls__conn_flush(redtls_conn *c, int64_t deadline, int wipe)
{
    if (c->olen == 0)
        return REDTLS_OK;
    redtls_status st = c->tp->ops->write(c->tp, c->obuf, c->olen, deadline, c->errmsg);
    if (wipe)
        OPENSSL_cleanse(c->obuf, c->olen);
    c->olen = 0;
    if (st != REDTLS_OK)
        return redtls__conn_drop(c, st);
    return REDTLS_OK;
}

static int is_noauth(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && r->str && strncmp(r->str, "NOAUTH", 6) == 0;
}

redtls_status redtls__conn_read(redtls_conn *c, int64_t deadline, struct redisReply **reply)
{
    redtls_status st = redtls__conn_flush(c, deadline, 0);
    if (st != REDTLS_OK)
        return st;
    for (;;) {
        st = redtls__reader_get(&c->rd, reply, c->errmsg);
        if (st != REDTLS_OK)
            return redtls__conn_drop(c, st);
        if (*reply) {
            c->pending--;
            if (is_noauth(*reply) && redtls__has_credentials(c))
                c->need_reauth = 1;
            return REDTLS_OK;
        }
        size_t got = 0;
        st = c->tp->ops->read(c->tp, c->rbuf, sizeof c->rbuf, &got, deadline, c->errmsg);
        if (st == REDTLS_OK)
            st = redtls__reader_feed(&c->rd, c->rbuf, got, c->errmsg);
        if (st != REDTLS_OK) {
            /* Any end of stream while a reply is owed is abrupt. */
            if (st == REDTLS_E_CLOSED || st == REDTLS_E_EOF) {
                char cause[REDTLS__ERRMSG_MAX];
                memcpy(cause, c->errmsg, sizeof cause);
                redtls__fail(c->errmsg, st, "%.400s while waiting for a reply", cause);
            }
            return redtls__conn_drop(c, st);
        }
    }
}

static redtls_status connect_transport(redtls_conn *c, int64_t *hs_deadline)
{
    const redtls_config *cfg = &c->cfg;
    int fd = -1;
    int64_t deadline = redtls__deadline_after(cfg->connect_timeout_ms);
    redtls_status st;
    if (cfg->unix_path)
        st = redtls__unix_connect(cfg->unix_path, deadline, &fd, c->errmsg);
    else
        st = redtls__tcp_connect(cfg->host, cfg->port, deadline, &fd, c->errmsg);
    if (st != REDTLS_OK)
        return st;
    /* The handshake timeout starts once TCP is up and covers TLS plus the
     * AUTH/SELECT/SETNAME round trips. */
    *hs_deadline = redtls__deadline_after(cfg->handshake_timeout_ms);
    redtls__transport *tp = NULL;
    if (c->tls) {
        const char *name = cfg->verify_name ? cfg->verify_name : cfg->host;
        st = redtls__tls_connect(c->tls, fd, name, *hs_deadline, &tp, c->errmsg);
    } else {
        st = redtls__plain_transport(fd, &tp);
        if (st != REDTLS_OK) {
            close(fd);
            redtls__fail(c->errmsg, st, "out of memory");
        }
    }
    if (st != REDTLS_OK)
        return st;
    return redtls__conn_attach(c, tp, c->tls != NULL);
}

redtls_status redtls_conn_connect(redtls_conn *c)
{
    if (!c)
        return REDTLS_E_INVALID;
    c->errmsg[0] = '\0';
    redtls_conn_close(c);
    int64_t hs_deadline = REDTLS__NO_DEADLINE;
    redtls_status st = connect_transport(c, &hs_deadline);
    if (st == REDTLS_OK)
        st = redtls__conn_setup(c, hs_deadline);
    if (st != REDTLS_OK)
        redtls__conn_drop(c, st);
    return st;
}

redtls_status redtls__conn_roundtrip(redtls_conn *c, int argc, const char **argv, int secret, int64_t deadline,
                                     struct redisReply **reply)
{
    redtls_status st = redtls__conn_append(c, argc, argv, NULL, secret);
    if (st == REDTLS_OK)
        st = redtls__conn_flush(c, deadline, secret);
    if (st == REDTLS_OK)
        st = redtls__conn_read(c, deadline, reply);
    return st;
}

/* Re-authenticates after a NOAUTH reply, on the same connection. */
static redtls_status reauthenticate(redtls_conn *c, int64_t deadline)
{
    c->need_reauth = 0;
    redtls_status st = redtls__authenticate(c, deadline);
    if (st == REDTLS_OK)
        redtls__emit(c, REDTLS_EVENT_AUTH_REFRESHED, "re-authenticated after a NOAUTH reply");
    return st;
}

static redtls_status check_usable(redtls_conn *c, int need_idle)
{
    c->errmsg[0] = '\0';
    if (!c->tp)
        return redtls__fail(c->errmsg, REDTLS_E_STATE, "not connected (call redtls_conn_connect)");
    if (need_idle && c->pending > 0)
        return redtls__fail(c->errmsg, REDTLS_E_STATE,
                            "%zu pipelined replies are pending; read them with redtls_conn_get_reply first",
                            c->pending);
    if (c->need_reauth && c->pending == 0)
        return reauthenticate(c, redtls__deadline_after(c->cfg.command_timeout_ms));
    return REDTLS_OK;
}

/* Reads the reply of the single command occupying obuf[0..cmdlen). If the
 * server refused it with NOAUTH it did not run it, so after one
 * re-authentication it is sent once more. */
static redtls_status finish_command(redtls_conn *c, size_t cmdlen, int64_t deadline, struct redisReply **reply)
{
    redtls_status st = redtls__conn_read(c, deadline, reply);
    if (st != REDTLS_OK || !c->need_reauth)
        return st;
    /* conn_read cleared olen but left the bytes in place. */
    char *copy = malloc(cmdlen);
    if (!copy)
        return REDTLS_OK; /* hand the NOAUTH reply back as it is */
    memcpy(copy, c->obuf, cmdlen);
    freeReplyObject(*reply);
    *reply = NULL;
    st = reauthenticate(c, deadline);
    if (st == REDTLS_OK)
        st = redtls__buf_append(&c->obuf, &c->olen, &c->ocap, copy, cmdlen);
    free(copy);
    if (st == REDTLS_E_NOMEM)
        return redtls__fail(c->errmsg, st, "out of memory");
    if (st != REDTLS_OK) {
        char cause[REDTLS__ERRMSG_MAX];
        memcpy(cause, c->errmsg, sizeof cause);
        return redtls__fail(c->errmsg, st, "command not executed: the server answered NOAUTH and %.400s", cause);
    }
    c->pending++;
    return redtls__conn_read(c, deadline, reply);
}

redtls_status redtls_conn_command_argv(redtls_conn *c, int argc, const char **argv, const size_t *argvlen,
                                       struct redisReply **reply)
{
    if (!reply)
        return REDTLS_E_INVALID;
    *reply = NULL;
    if (!c)
        return REDTLS_E_INVALID;
    redtls_status st = check_usable(c, 1);
    if (st == REDTLS_OK)
        st = redtls__conn_append(c, argc, argv, argvlen, 0);
    if (st == REDTLS_OK)
        st = finish_command(c, c->olen, redtls__deadline_after(c->cfg.command_timeout_ms), reply);
    return st;
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
    return REDTLS_OK;
}

redtls_status redtls_conn_command(redtls_conn *c, struct redisReply **reply, const char *fmt, ...)
{
    if (!reply)
        return REDTLS_E_INVALID;
    *reply = NULL;
    if (!c)
        return REDTLS_E_INVALID;
    redtls_status st = check_usable(c, 1);
    if (st != REDTLS_OK)
        return st;
    va_list ap;
    va_start(ap, fmt);
    st = vappend(c, fmt, ap);
    va_end(ap);
    if (st == REDTLS_OK)
        st = finish_command(c, c->olen, redtls__deadline_after(c->cfg.command_timeout_ms), reply);
    return st;
}

redtls_status redtls_conn_append_argv(redtls_conn *c, int argc, const char **argv, const size_t *argvlen)
{
    if (!c)
        return REDTLS_E_INVALID;
    redtls_status st = check_usable(c, 0);
    return st == REDTLS_OK ? redtls__conn_append(c, argc, argv, argvlen, 0) : st;
}

redtls_status redtls_conn_append(redtls_conn *c, const char *fmt, ...)
{
    if (!c)
        return REDTLS_E_INVALID;
    redtls_status st = check_usable(c, 0);
    if (st != REDTLS_OK)
        return st;
    va_list ap;
    va_start(ap, fmt);
    st = vappend(c, fmt, ap);
    va_end(ap);
    return st;
}

redtls_status redtls_conn_flush(redtls_conn *c)
{
    if (!c)
        return REDTLS_E_INVALID;
    redtls_status st = check_usable(c, 0);
    if (st != REDTLS_OK)
        return st;
    return redtls__conn_flush(c, redtls__deadline_after(c->cfg.command_timeout_ms), 0);
}

redtls_status redtls_conn_get_reply(redtls_conn *c, struct redisReply **reply)
{
    if (!reply)
        return REDTLS_E_INVALID;
    *reply = NULL;
    if (!c)
        return REDTLS_E_INVALID;
    redtls_status st = check_usable(c, 0);
    if (st != REDTLS_OK)
        return st;
    if (c->pending == 0)
        return redtls__fail(c->errmsg, REDTLS_E_STATE, "no reply is pending");
    return redtls__conn_read(c, redtls__deadline_after(c->cfg.command_timeout_ms), reply);
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

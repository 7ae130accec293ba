/* The connection object: making, closing and freeing it, and what the
 * public and cluster-facing accessors read from it. */
#include <stdlib.h>
#include <string.h>

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
    c->fd = -1;
    if (redtls__iam_on(&cfg->iam) && (!cfg->use_tls || cfg->unix_path)) {
        free(c);
        return redtls__fail(cfg->errmsg, REDTLS_E_CONFIG,
                            "IAM authentication needs TLS (AWS requires encryption in transit for it): use "
                            "rediss:// or turn TLS on");
    }
    if (redtls__config_copy(&c->cfg, cfg, c->errmsg) != REDTLS_OK) {
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
    redtls__resolve_free(c->dns_kept);
    redtls__tls_session_clear(&c->session);
    redtls__tls_ctx_free(c->tls);
    if (c->obuf) {
        OPENSSL_cleanse(c->obuf, c->ocap);
        free(c->obuf);
    }
    redtls__config_release(&c->cfg);
    redtls__secret_clear(&c->iam.token);
    free(c->rbuf);
    free(c->info);
    free(c->last_cause);
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

void redtls_conn_close(redtls_conn *c)
{
    if (!c)
        return;
    redtls__attempt_cancel(c);
    /* A preparation under way (a PING, a re-AUTH) set the queue aside. */
    redtls__auth_reset(c);
    redtls__conn_restore(c);
    if (c->tp) {
        c->tp->ops->close(c->tp, 1);
        c->tp = NULL;
        c->fd = -1;
        if (c->established)
            redtls__emit(c, REDTLS_EVENT_DISCONNECTED, "closed by the application");
        c->established = 0;
    }
    redtls__reader_free(&c->rd);
    c->need_reauth = 0;
    c->pending = c->unsent = c->lost = 0;
    c->olen = c->ooff = 0;
}

static const char *describe(redtls_conn *c, int what)
{
    if (!c || !c->tp || !c->is_tls)
        return NULL;
    if (!c->info && !(c->info = malloc(REDTLS__TLS_DETAILS * sizeof *c->info))) {
        redtls__fail(c->errmsg, REDTLS_E_NOMEM, "out of memory for the TLS details");
        return NULL;
    }
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

int redtls__conn_up(const redtls_conn *c) { return c->tp != NULL; }
size_t redtls__conn_owed(const redtls_conn *c) { return c->pending; }
int redtls__conn_has_queued(const redtls_conn *c) { return c->olen > 0; }
int redtls__conn_fd(const redtls_conn *c) { return c->tp ? c->fd : -1; }
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

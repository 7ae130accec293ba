/* Connection set-up after the transport is up: AUTH, SELECT, CLIENT
 * SETNAME. Credentials are only sent here, after the TLS layer has
 * verified the server. */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "conn.h"

/* One request/response inside the handshake deadline. A timeout here is a
 * handshake timeout. */
static redtls_status roundtrip(redtls_conn *c, int argc, const char **argv, int64_t deadline, redisReply **reply)
{
    redtls_status st = redtls__conn_roundtrip(c, argc, argv, 0, deadline, reply);
    if (st == REDTLS_E_COMMAND_TIMEOUT)
        st = redtls__fail(c->errmsg, REDTLS_E_HANDSHAKE_TIMEOUT,
                          "the server did not answer %s within the handshake timeout", argv[0]);
    return st;
}

static redtls_status refused(redtls_conn *c, const char *what, redisReply *r)
{
    char text[256];
    size_t n = r->len < sizeof text - 1 ? r->len : sizeof text - 1;
    memcpy(text, r->str ? r->str : "", n);
    text[n] = '\0';
    freeReplyObject(r);
    return redtls__fail(c->errmsg, REDTLS_E_SETUP, "%s refused by the server: %s", what, text);
}

redtls_status redtls__conn_setup(redtls_conn *c, int64_t deadline)
{
    const redtls_config *cfg = &c->cfg;
    redisReply *r = NULL;
    redtls_status st;

    /* With TLS 1.3 a server that demands a client certificate says so only
     * after our handshake has finished. A PING (no secret in it) flushes
     * that verdict out before any credential is written. */
    int verdict = c->is_tls ? redtls__tls_verdict_pending(c->tp) : 0;
    if (verdict) {
        const char *ping[] = {"PING"};
        if ((st = roundtrip(c, 1, ping, deadline, &r)) != REDTLS_OK) {
            /* The alert may be lost to a reset, so a connection that dies
             * right here is the server refusing us. */
            if (st == REDTLS_E_IO || st == REDTLS_E_EOF || st == REDTLS_E_CLOSED || st == REDTLS_E_TLS) {
                char cause[REDTLS__ERRMSG_MAX];
                memcpy(cause, c->errmsg, sizeof cause);
                st = redtls__fail(c->errmsg, REDTLS_E_TLS_CLIENT_CERT,
                                  "%s (it ended the connection after the handshake: %.300s)",
                                  verdict == 1 ? "the server requires a client certificate and none is configured"
                                               : "the server refused our client certificate",
                                  cause);
            }
            return st;
        }
        freeReplyObject(r);
    }

    st = redtls__authenticate(c, deadline);
    if (st == REDTLS_E_COMMAND_TIMEOUT)
        st = redtls__fail(c->errmsg, REDTLS_E_HANDSHAKE_TIMEOUT, "the server did not answer AUTH within the handshake timeout");
    if (st != REDTLS_OK)
        return st;
    if (cfg->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", cfg->db);
        const char *argv[] = {"SELECT", db};
        if ((st = roundtrip(c, 2, argv, deadline, &r)) != REDTLS_OK)
            return st;
        if (r->type == REDIS_REPLY_ERROR)
            return refused(c, "SELECT", r);
        freeReplyObject(r);
    }
    if (cfg->client_name) {
        const char *argv[] = {"CLIENT", "SETNAME", cfg->client_name};
        if ((st = roundtrip(c, 3, argv, deadline, &r)) != REDTLS_OK)
            return st;
        if (r->type == REDIS_REPLY_ERROR)
            return refused(c, "CLIENT SETNAME", r);
        freeReplyObject(r);
    }
    if (cfg->cluster_readonly) {
        const char *argv[] = {"READONLY"};
        if ((st = roundtrip(c, 1, argv, deadline, &r)) != REDTLS_OK)
            return st;
        if (r->type == REDIS_REPLY_ERROR)
            return refused(c, "READONLY", r);
        freeReplyObject(r);
    }
    return REDTLS_OK;
}

/* The set-up after the transport is up, as a state machine: the TLS 1.3
 * client-certificate probe, AUTH, SELECT, CLIENT SETNAME, READONLY. Under
 * RESP3 (protocol 3) one HELLO 3 round trip does AUTH and SETNAME: the
 * AUTH machine sends "HELLO 3 AUTH ..." when there are credentials, else
 * a plain HELLO step does. Credentials are only sent here, after the TLS
 * layer has verified the server. */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "conn.h"

enum { SU_PROBE, SU_AUTH, SU_HELLO, SU_SELECT, SU_SETNAME, SU_READONLY, SU_DONE };

static redtls_status refused(redtls_conn *c, const char *what, redisReply *r)
{
    char text[256];
    size_t n = r->len < sizeof text - 1 ? r->len : sizeof text - 1;
    memcpy(text, r->str ? r->str : "", n);
    text[n] = '\0';
    freeReplyObject(r);
    return redtls__fail(c->errmsg, REDTLS_E_SETUP, "%s refused by the server: %s", what, text);
}

/* A plain HELLO 3's answer: the checks HELLO AUTH gets too, and a NOAUTH
 * (the server wants credentials, none are configured) is an AUTH
 * failure, as the first command's NOAUTH would be under RESP2. Frees r
 * when it fails. */
static redtls_status hello_answer(redtls_conn *c, redisReply *r)
{
    redtls_status st = redtls__hello_check(c, r);
    if (st == REDTLS_OK && r->type == REDIS_REPLY_ERROR && r->str && strncmp(r->str, "NOAUTH", 6) == 0)
        st = redtls__fail(c->errmsg, REDTLS_E_AUTH,
                          "the server requires authentication and no credentials are configured (it refused "
                          "HELLO 3: %.150s)",
                          r->str);
    if (st != REDTLS_OK)
        freeReplyObject(r);
    return st;
}

/* Sends the request of the step at hand, skipping the steps that have
 * nothing to do. *done once there is nothing left; AUTH hands over to
 * auth.c. */
static redtls_status next_request(redtls_conn *c, int64_t now, int64_t deadline, int *done)
{
    const redtls_config *cfg = &c->cfg;
    redtls__setup *su = &c->su;
    *done = 0;
    for (;; su->step++) {
        switch (su->step) {
        case SU_PROBE:
            if (!su->verdict)
                continue;
            su->what = "PING";
            return redtls__exch_send(c, 1, (const char *[]){"PING"}, 0);
        case SU_AUTH: {
            int hello = cfg->protocol == 3;
            su->what = hello ? "HELLO" : "AUTH";
            int auth_done = 0;
            redtls_status st = hello ? redtls__auth_start_hello(c, now, deadline, &auth_done)
                                     : redtls__auth_start(c, now, deadline, &auth_done);
            if (st != REDTLS_OK || !auth_done)
                return st;
            continue;
        }
        case SU_HELLO: {
            /* With credentials, HELLO went out as the AUTH step. */
            if (cfg->protocol != 3 || redtls__has_credentials(c))
                continue;
            const char *argv[] = {"HELLO", "3", "SETNAME", cfg->client_name};
            su->what = "HELLO";
            return redtls__exch_send(c, cfg->client_name ? 4 : 2, argv, 0);
        }
        case SU_SELECT: {
            if (cfg->db == 0)
                continue;
            char db[16];
            snprintf(db, sizeof db, "%d", cfg->db);
            su->what = "SELECT";
            return redtls__exch_send(c, 2, (const char *[]){"SELECT", db}, 0);
        }
        case SU_SETNAME:
            if (!cfg->client_name || cfg->protocol == 3)
                continue;
            su->what = "CLIENT SETNAME";
            return redtls__exch_send(c, 3, (const char *[]){"CLIENT", "SETNAME", cfg->client_name}, 0);
        case SU_READONLY:
            if (!cfg->cluster_readonly)
                continue;
            su->what = "READONLY";
            return redtls__exch_send(c, 1, (const char *[]){"READONLY"}, 0);
        default:
            *done = 1;
            return REDTLS_OK;
        }
    }
}

redtls_status redtls__setup_start(redtls_conn *c, int64_t now, int64_t deadline)
{
    redtls__setup *su = &c->su;
    int done;
    su->step = SU_PROBE;
    /* With TLS 1.3 a server that demands a client certificate says so only
     * after our handshake has finished. A PING (no secret in it) flushes
     * that verdict out before any credential is written. */
    su->verdict = c->is_tls ? redtls__transport_verdict_pending(c->tp) : 0;
    return next_request(c, now, deadline, &done);
}

/* A transport failure while the probe is out: the alert may be lost to a
 * reset, so a connection that dies right here is the server refusing us. */
static redtls_status probe_failed(redtls_conn *c, redtls_status st)
{
    if (st != REDTLS_E_IO && st != REDTLS_E_EOF && st != REDTLS_E_CLOSED && st != REDTLS_E_TLS)
        return st;
    return redtls__fail_more(c->errmsg, REDTLS_E_TLS_CLIENT_CERT, ")",
                             "%s (it ended the connection after the handshake: ",
                             c->su.verdict == 1 ? "the server requires a client certificate and none is configured"
                                                : "the server refused our client certificate");
}

static redtls_status timed_out(redtls_conn *c)
{
    return redtls__fail(c->errmsg, REDTLS_E_HANDSHAKE_TIMEOUT, "the server did not answer %s within the handshake timeout",
                        c->su.what ? c->su.what : "the set-up");
}

redtls_status redtls__setup_step(redtls_conn *c, int64_t now, int64_t deadline, int *done, redtls__wait *w)
{
    redtls__setup *su = &c->su;
    *done = 0;
    while (su->step < SU_DONE) {
        redtls_status st;
        if (su->step == SU_AUTH) {
            int auth_done = 0;
            st = redtls__auth_step(c, now, &auth_done, w);
            /* Not the server's fault when no AUTH was out: the credential
             * callback kept answering "pending" (its message says so). */
            if (st == REDTLS_E_COMMAND_TIMEOUT)
                return c->au.awaiting ? timed_out(c) : REDTLS_E_HANDSHAKE_TIMEOUT;
            if (st != REDTLS_OK || !auth_done)
                return st;
        } else {
            redisReply *r = NULL;
            st = redtls__exch_poll(c, now, deadline, &r, w);
            if (st == REDTLS_E_COMMAND_TIMEOUT)
                return timed_out(c);
            if (st != REDTLS_OK)
                return su->step == SU_PROBE ? probe_failed(c, st) : st;
            if (!r)
                return REDTLS_OK;
            if (su->step == SU_HELLO && (st = hello_answer(c, r)) != REDTLS_OK)
                return st;
            if (su->step != SU_PROBE && r->type == REDIS_REPLY_ERROR)
                return refused(c, su->what, r);
            freeReplyObject(r);
        }
        su->step++;
        if ((st = next_request(c, now, deadline, done)) != REDTLS_OK)
            return st == REDTLS_E_COMMAND_TIMEOUT ? timed_out(c) : st;
        if (*done)
            return REDTLS_OK;
    }
    *done = 1;
    return REDTLS_OK;
}

/* One connection attempt as a state machine: dial (resolve, TCP or Unix
 * connect), the TLS handshake, the set-up exchange; then the backoff
 * bookkeeping between attempts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"

enum { AT_IDLE, AT_DIAL, AT_TLS, AT_SETUP };

redtls_status redtls__attempt_start(redtls_conn *c, int64_t now, int64_t call_deadline)
{
    const redtls_config *cfg = &c->cfg;
    redtls__attempt *at = &c->at;
    redtls__attempt_cancel(c);
    c->sockets++;
    at->call_deadline = call_deadline;
    int64_t deadline = redtls__deadline_min(redtls__deadline_from(now, cfg->connect_timeout_ms), call_deadline);
    redtls_status st = redtls__dial_start(&at->dial, redtls__config_connect_addr(cfg, cfg->host, cfg->port), cfg->port,
                                          cfg->unix_path, cfg->resolver, cfg->tcp_user_timeout_ms, deadline,
                                          &c->dns_kept, c->errmsg);
    if (st == REDTLS_OK)
        at->phase = AT_DIAL;
    return st;
}

void redtls__attempt_cancel(redtls_conn *c)
{
    redtls__attempt *at = &c->at;
    if (at->phase == AT_IDLE)
        return;
    redtls__dial_cancel_keep(&at->dial, &c->dns_kept);
    if (at->tp)
        at->tp->ops->close(at->tp, 0);
    at->tp = NULL;
    if (at->phase == AT_SETUP && c->tp) {
        /* Not a lost connection: it never was usable. */
        c->tp->ops->close(c->tp, 0);
        c->tp = NULL;
        c->fd = -1;
        redtls__reader_free(&c->rd);
    }
    redtls__auth_reset(c);
    redtls__conn_restore(c);
    at->phase = AT_IDLE;
}

static redtls_status attempt_fail(redtls_conn *c, redtls_status st)
{
    redtls__attempt_cancel(c);
    return st;
}

/* TCP is up: TLS next, or straight to the set-up. The handshake timeout
 * starts now and covers TLS plus the set-up round trips. */
static redtls_status dialed(redtls_conn *c, int fd, int64_t now)
{
    redtls__attempt *at = &c->at;
    const redtls_config *cfg = &c->cfg;
    at->hs_deadline = redtls__deadline_min(redtls__deadline_from(now, cfg->handshake_timeout_ms), at->call_deadline);
    redtls_status st;
    if (c->tls) {
        st = redtls__tls_start(c->tls, fd, redtls__config_verify_name(cfg, cfg->host), &c->session, &at->tp,
                               c->errmsg);
        at->phase = AT_TLS;
        at->want = 0;
        return st;
    }
    if ((st = redtls__plain_transport(fd, &at->tp)) != REDTLS_OK) {
        close(fd);
        return redtls__fail(c->errmsg, st, "out of memory");
    }
    at->phase = AT_TLS; /* with no handshake to make */
    return REDTLS_OK;
}

static redtls_status begin_setup(redtls_conn *c, int64_t now)
{
    redtls__attempt *at = &c->at;
    redtls__transport *tp = at->tp;
    at->tp = NULL;
    redtls__conn_set_aside(c);
    at->phase = AT_SETUP;
    redtls_status st = redtls__conn_attach(c, tp, c->tls != NULL);
    if (st == REDTLS_OK)
        st = redtls__setup_start(c, now, at->hs_deadline);
    return st;
}

static void established(redtls_conn *c, int64_t now)
{
    c->at.phase = AT_IDLE;
    redtls__conn_restore(c);
    c->last_io = now;
    c->quiet_at = 0; /* the set-up round trips are not use */
    c->established = 1;
    redtls__emit(c, REDTLS_EVENT_CONNECTED, "%s",
                 !c->is_tls                          ? "plain TCP"
                 : redtls__transport_resumed(c->tp) ? "resumed TLS session"
                                                     : "full handshake");
}

redtls_status redtls__attempt_step(redtls_conn *c, int64_t now, int *done, redtls__wait *w)
{
    redtls__attempt *at = &c->at;
    redtls_status st;
    *done = 0;
    w->fd = -1;
    w->events = 0;
    w->at = REDTLS__NO_DEADLINE;
    if (at->phase == AT_DIAL) {
        int fd = -1;
        st = redtls__dial_step(&at->dial, now, &fd, &w->fd, &w->events, &w->at, c->errmsg);
        if (st != REDTLS_OK)
            return attempt_fail(c, st);
        if (fd < 0)
            return REDTLS_OK;
        if ((st = dialed(c, fd, now)) != REDTLS_OK)
            return attempt_fail(c, st);
    }
    if (at->phase == AT_TLS) {
        if (at->tp->ops->handshake) {
            if (now >= at->hs_deadline)
                return attempt_fail(c, redtls__tls_handshake_timeout(at->want, c->errmsg));
            int want = 0;
            if ((st = at->tp->ops->handshake(at->tp, &want, c->errmsg)) != REDTLS_OK)
                return attempt_fail(c, st);
            if (want) {
                /* A step that stopped on purpose: straight back (at now),
                 * after the caller's other work; what comes next is the
                 * server's, so the socket stays watched for reading. */
                at->want = want == REDTLS__AGAIN ? POLLIN : want;
                w->fd = at->tp->ops->fd(at->tp);
                w->events = at->want;
                w->at = want == REDTLS__AGAIN ? now : at->hs_deadline;
                return REDTLS_OK;
            }
        }
        if ((st = begin_setup(c, now)) != REDTLS_OK)
            return attempt_fail(c, st);
    }
    if (at->phase == AT_SETUP) {
        if ((st = redtls__setup_step(c, now, at->hs_deadline, done, w)) != REDTLS_OK)
            return attempt_fail(c, st);
        if (*done)
            established(c, now);
        return REDTLS_OK;
    }
    return redtls__fail(c->errmsg, REDTLS_E_STATE, "no connection attempt under way");
}

void redtls__attempt_succeeded(redtls_conn *c)
{
    c->attempts = 0;
    c->outage_start = 0;
    c->next_attempt = 0;
    c->gave_up = 0;
    redtls__backoff_reset(&c->backoff);
}

/* Books a failed attempt: backoff, event, limits. */
void redtls__attempt_failed(redtls_conn *c, int64_t now)
{
    if (c->last_cause || (c->last_cause = malloc(REDTLS__ERRMSG_MAX)) != NULL)
        memcpy(c->last_cause, c->errmsg, REDTLS__ERRMSG_MAX);
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
    redtls__emit(c, REDTLS_EVENT_RECONNECT_SCHEDULED, "next attempt in %u ms: %.200s", delay, redtls__conn_cause(c));
}

redtls_status redtls__attempt_cut(const redtls_conn *c, char *why, size_t cap)
{
    switch (c->at.phase) {
    case AT_DIAL:
        snprintf(why, cap, "the connection was still being made (TCP connect)");
        return REDTLS_E_CONNECT_TIMEOUT;
    case AT_TLS:
        snprintf(why, cap, "the connection was still being made (TLS handshake)");
        return REDTLS_E_HANDSHAKE_TIMEOUT;
    case AT_SETUP:
        snprintf(why, cap, "the connection was still being made (set-up: %s)", c->su.what ? c->su.what : "AUTH");
        return REDTLS_E_HANDSHAKE_TIMEOUT;
    default:
        snprintf(why, cap, "not connected (last failure: %.300s)",
                 redtls__conn_cause(c)[0] ? redtls__conn_cause(c) : "none yet");
        return c->last_status != REDTLS_OK ? c->last_status : REDTLS_E_UNAVAILABLE;
    }
}

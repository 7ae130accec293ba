/* AUTH as a state machine: two tokens valid at once (rotation), the
 * credential callback (which may answer later), and IAM tokens. Which
 * token to send and what an answer means are decided here; the bytes go
 * through the connection's own-request exchange (conn_io.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "conn.h"

/* Large enough for IAM-style signed tokens. */
#define REDTLS__CB_TOKEN_MAX 4096
#define REDTLS__CB_USER_MAX 256
/* A callback answering "pending" is asked again after 5 ms, then at
 * doubling intervals of at most 100 ms. */
#define REDTLS__ASK_FIRST_MS 5u
#define REDTLS__ASK_MAX_MS 100u

enum { AUTH_NONE, AUTH_TOKENS, AUTH_CALLBACK, AUTH_IAM };
enum { AUTH_ACCEPTED, AUTH_REFUSED, AUTH_ERROR };

/* Server answers that mean "these credentials are wrong", as opposed to
 * "this server has no password" or any other error. Covers Redis 6+
 * (WRONGPASS), Redis 6.0's "invalid username-password pair" and the
 * pre-ACL "invalid password". */
static int is_credential_refusal(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ERROR || !r->str)
        return 0;
    return strncmp(r->str, "WRONGPASS", 9) == 0 || strncasecmp(r->str, "ERR invalid password", 20) == 0 ||
           strncasecmp(r->str, "ERR invalid username-password pair", 34) == 0;
}

void redtls__auth_reset(redtls_conn *c)
{
    redtls__secret_clear(&c->au.token);
    free(c->au.answer);
    c->au.answer = NULL;
    c->au.awaiting = 0;
    c->au.kind = AUTH_NONE;
}

static redtls_status send_auth(redtls_conn *c, const char *user, const redtls__secret *token)
{
    const char *argv[7];
    int argc = 0;
    if (c->au.hello) {
        /* HELLO's AUTH always names a user; a plain AUTH token is the
         * default user's password. */
        argv[argc++] = "HELLO";
        argv[argc++] = "3";
        argv[argc++] = "AUTH";
        argv[argc++] = user && user[0] ? user : "default";
        argv[argc++] = token->data;
        if (c->cfg.client_name) {
            argv[argc++] = "SETNAME";
            argv[argc++] = c->cfg.client_name;
        }
    } else {
        argv[argc++] = "AUTH";
        if (user && user[0])
            argv[argc++] = user;
        argv[argc++] = token->data;
    }
    redtls_status st = redtls__exch_send(c, argc, argv, 1);
    if (st == REDTLS_OK) {
        c->au.awaiting = 1;
        c->au.tries++;
    }
    return st;
}

/* How the server answered; the answer's text, with every token masked,
 * goes into au.answer[attempt]. */
static int judge(redtls_conn *c, redisReply *r, const redtls__secret *token)
{
    char *answer = c->au.answer[c->au.attempt];
    size_t cap = sizeof c->au.answer[0];
    answer[0] = '\0';
    int verdict = AUTH_ACCEPTED;
    if (r->type == REDIS_REPLY_ERROR) {
        verdict = is_credential_refusal(r) ? AUTH_REFUSED : AUTH_ERROR;
        /* Mask the whole answer before cutting it, so a token straddling
         * the cut cannot leave its first characters behind. */
        redtls__redact(r->str, r->len, token);
        redtls__redact(r->str, r->len, &c->cfg.token);
        redtls__redact(r->str, r->len, &c->cfg.token_alt);
        size_t n = r->len < cap - 1 ? r->len : cap - 1;
        memcpy(answer, r->str, n);
        answer[n] = '\0';
    }
    freeReplyObject(r);
    return verdict;
}

static const redtls__secret *pair_token(redtls_conn *c, int index)
{
    return index == 0 ? &c->cfg.token : &c->cfg.token_alt;
}

/* Asks the credential callback; *sent when its answer went out as AUTH,
 * not when it said "pending". */
static redtls_status ask_callback(redtls_conn *c, int *sent)
{
    redtls__auth *au = &c->au;
    char user[REDTLS__CB_USER_MAX], buf[REDTLS__CB_TOKEN_MAX], errbuf[200];
    *sent = 0;
    user[0] = buf[0] = errbuf[0] = '\0';
    int rc = c->cfg.cred_cb(c->cfg.cred_ud, au->attempt, user, sizeof user, buf, sizeof buf, errbuf, sizeof errbuf);
    user[sizeof user - 1] = buf[sizeof buf - 1] = errbuf[sizeof errbuf - 1] = '\0';
    redtls__secret_clear(&au->token);
    int copied = rc != 0 || !buf[0] || redtls__secret_set(&au->token, buf, strlen(buf)) == REDTLS_OK;
    OPENSSL_cleanse(buf, sizeof buf);
    redtls_status st = REDTLS_OK;
    if (rc == REDTLS_CREDENTIAL_PENDING)
        st = REDTLS_OK;
    else if (!copied)
        st = redtls__fail(c->errmsg, REDTLS_E_NOMEM, "out of memory");
    else if (rc != 0)
        st = redtls__fail(c->errmsg, REDTLS_E_AUTH, "credential callback failed: %s",
                          errbuf[0] ? errbuf : "no reason given");
    else if (!au->token.data)
        st = redtls__fail(c->errmsg, REDTLS_E_AUTH, "credential callback returned an empty token");
    else if (redtls__check_token_policy(&c->cfg, au->token.data, c->errmsg) != REDTLS_OK)
        st = REDTLS_E_AUTH;
    else if ((st = send_auth(c, user, &au->token)) == REDTLS_OK)
        *sent = 1;
    OPENSSL_cleanse(user, sizeof user);
    return st;
}

/* IAM: the handle's token while it is young enough, else a new one (and
 * always a new one for the second try). */
static redtls_status send_iam(redtls_conn *c)
{
    redtls__auth *au = &c->au;
    const redtls__iam_cfg *iam = &c->cfg.iam;
    int64_t now = redtls__iam_now_ms(iam);
    int64_t age = now - c->iam.made_ms;
    au->iam_now = now;
    au->reused = 1;
    if (au->attempt > 0 || !c->iam.token.data || age >= REDTLS__IAM_REUSE_MS || age < 0) {
        redtls_status st = redtls__iam_make(iam, now, &c->iam.token, c->errmsg);
        if (st != REDTLS_OK) {
            redtls__secret_clear(&c->iam.token);
            st = st == REDTLS_E_NOMEM ? st : REDTLS_E_AUTH;
            if (au->attempt > 0)
                return redtls__fail_more(c->errmsg, st, "",
                                         "the server refused the IAM token (%.100s), and a new one cannot be made: ",
                                         au->answer[0]);
            return redtls__fail_more(c->errmsg, st, "", "cannot make an IAM token: ");
        }
        c->iam.made_ms = now;
        au->reused = 0;
    }
    return send_auth(c, iam->user_id, &c->iam.token);
}

static redtls_status auth_start(redtls_conn *c, int64_t now, int64_t deadline, int *done, int hello)
{
    redtls__auth *au = &c->au;
    const redtls_config *cfg = &c->cfg;
    redtls__auth_reset(c);
    au->hello = hello;
    au->deadline = deadline;
    au->attempt = au->tries = 0;
    *done = 0;
    if (redtls__has_credentials(c) && !(au->answer = calloc(2, sizeof *au->answer)))
        return redtls__fail(c->errmsg, REDTLS_E_NOMEM, "out of memory for AUTH");
    if (redtls__iam_on(&cfg->iam)) {
        au->kind = AUTH_IAM;
        return send_iam(c);
    }
    if (cfg->cred_cb) {
        au->kind = AUTH_CALLBACK;
        au->ask_at = now;
        au->ask_ms = REDTLS__ASK_FIRST_MS;
        au->pending_seen = 0;
        return REDTLS_OK; /* asked by the first step */
    }
    if (cfg->user && !cfg->token.data)
        return redtls__fail(c->errmsg, REDTLS_E_CONFIG, "user '%s' is set but no token", cfg->user);
    if (!cfg->token.data) {
        /* A NOAUTH seen before (the TLS 1.3 client-certificate probe) has
         * nothing to answer it with. */
        c->need_reauth = 0;
        *done = 1;
        return REDTLS_OK;
    }
    au->kind = AUTH_TOKENS;
    au->first = pair_token(c, c->preferred)->data ? c->preferred : 0;
    return send_auth(c, cfg->user, pair_token(c, au->first));
}

redtls_status redtls__auth_start(redtls_conn *c, int64_t now, int64_t deadline, int *done)
{
    return auth_start(c, now, deadline, done, 0);
}

redtls_status redtls__auth_start_hello(redtls_conn *c, int64_t now, int64_t deadline, int *done)
{
    return auth_start(c, now, deadline, done, 1);
}

redtls_status redtls__hello_check(redtls_conn *c, const redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) {
        const char *text = r->str ? r->str : "";
        /* Redis echoes the arguments after "unknown command", AUTH's
         * token among them: the text is not quoted. */
        if (strstr(text, "unknown command") != NULL)
            return redtls__fail(c->errmsg, REDTLS_E_SETUP,
                                "the server does not know HELLO (it answered 'unknown command'): RESP3 needs Redis "
                                "6 or later (or Valkey); use protocol 2 with this server");
        if (strncmp(text, "NOPROTO", 7) == 0)
            return redtls__fail(c->errmsg, REDTLS_E_SETUP,
                                "the server refused protocol 3 (NOPROTO: it does not offer RESP3, or something in "
                                "between, such as a proxy, does not); use protocol 2 with this server");
        return REDTLS_OK;
    }
    long long proto = -1;
    if (r->type == REDTLS_REPLY_MAP) {
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const redisReply *k = r->element[i], *v = r->element[i + 1];
            if (k->str && k->len == 5 && memcmp(k->str, "proto", 5) == 0 && v->type == REDIS_REPLY_INTEGER)
                proto = v->integer;
        }
    }
    if (proto == 3)
        return REDTLS_OK;
    if (proto >= 0)
        return redtls__fail(c->errmsg, REDTLS_E_SETUP, "the server answered HELLO 3 with protocol %lld, not 3", proto);
    return redtls__fail(c->errmsg, REDTLS_E_SETUP,
                        "the server's answer to HELLO 3 is not a map with \"proto\" 3 (reply kind %d): it does not "
                        "speak RESP3 as Redis 6 and later do; use protocol 2 with this server",
                        r->type);
}

/* The callback's turn: ask it now, or wait until it is due. */
static redtls_status callback_turn(redtls_conn *c, int64_t now, int *sent, redtls__wait *w)
{
    redtls__auth *au = &c->au;
    *sent = 0;
    /* The deadline first: a token asked for at the deadline would go out on
     * a connection about to be dropped. */
    if (now < au->deadline && now >= au->ask_at) {
        redtls_status st = ask_callback(c, sent);
        if (st != REDTLS_OK || *sent)
            return st;
        au->pending_seen = 1;
        au->ask_at = now + au->ask_ms;
        au->ask_ms = au->ask_ms * 2 > REDTLS__ASK_MAX_MS ? REDTLS__ASK_MAX_MS : au->ask_ms * 2;
    }
    if (now >= au->deadline)
        return redtls__fail(c->errmsg, REDTLS_E_COMMAND_TIMEOUT, "%s",
                            au->pending_seen ? "the credential callback was still answering "
                                               "REDTLS_CREDENTIAL_PENDING when the time allowed ran out"
                                             : "no time was left to ask the credential callback for credentials");
    w->fd = -1;
    w->events = 0;
    w->at = redtls__deadline_min(au->ask_at, au->deadline);
    return REDTLS_OK;
}

static redtls_status iam_refused(redtls_conn *c)
{
    const redtls__iam_cfg *iam = &c->cfg.iam;
    redtls__auth *au = &c->au;
    return redtls__fail(c->errmsg, REDTLS_E_AUTH,
                        "the server refused the IAM token for user '%.64s'%s (%.100s). Likely causes: the user is "
                        "not an IAM user in the cache's user group; the IAM policy lacks %s:Connect for it; expired "
                        "or rotated AWS credentials; a clock minutes off; not the cache's own name or region "
                        "(signed for '%.64s' in %.32s%s)",
                        iam->user_id, au->tries > 1 ? " twice, the second made afresh" : "",
                        au->answer[au->tries - 1], iam->service ? iam->service : "elasticache", iam->cache_name,
                        iam->region, iam->serverless ? ", serverless" : "");
}

/* An answer to the AUTH just sent: *done, a next AUTH sent, or a failure. */
static redtls_status answered(redtls_conn *c, redisReply *r, int *done)
{
    redtls__auth *au = &c->au;
    const redtls_config *cfg = &c->cfg;
    au->awaiting = 0;
    if (au->hello) {
        redtls_status st = redtls__hello_check(c, r);
        if (st != REDTLS_OK) {
            if (au->kind == AUTH_IAM)
                redtls__secret_clear(&c->iam.token);
            if (r->str)
                OPENSSL_cleanse(r->str, r->len); /* an echo of the command may hold the token */
            freeReplyObject(r);
            return st;
        }
    }
    switch (au->kind) {
    case AUTH_TOKENS: {
        int verdict = judge(c, r, pair_token(c, au->attempt == 0 ? au->first : 1 - au->first));
        int other = 1 - au->first;
        if (verdict == AUTH_ACCEPTED) {
            if (au->attempt == 1) {
                c->preferred = other;
                redtls__emit(c, REDTLS_EVENT_AUTH_TOKEN_SWITCHED, "token %d accepted, token %d refused", other + 1,
                             au->first + 1);
            }
            *done = 1;
            return REDTLS_OK;
        }
        if (au->attempt == 0 && (verdict == AUTH_ERROR || !pair_token(c, other)->data))
            return redtls__fail(c->errmsg, REDTLS_E_AUTH, "AUTH refused by the server: %s", au->answer[0]);
        if (au->attempt == 1)
            return redtls__fail(c->errmsg, REDTLS_E_AUTH,
                                "AUTH refused by the server for both tokens (token %d: %s; token %d: %s)",
                                au->first + 1, au->answer[0], other + 1, au->answer[1]);
        au->attempt = 1;
        return send_auth(c, cfg->user, pair_token(c, other));
    }
    case AUTH_CALLBACK: {
        int verdict = judge(c, r, &au->token);
        redtls__secret_clear(&au->token);
        if (verdict == AUTH_ACCEPTED) {
            *done = 1;
            return REDTLS_OK;
        }
        if (verdict == AUTH_ERROR || au->attempt == 1)
            return redtls__fail(c->errmsg, REDTLS_E_AUTH,
                                "AUTH refused by the server for the callback's credentials%s: %s",
                                au->attempt ? " (asked twice)" : "", au->answer[au->attempt]);
        au->attempt = 1;
        au->ask_at = c->now;
        au->ask_ms = REDTLS__ASK_FIRST_MS;
        au->pending_seen = 0;
        return REDTLS_OK;
    }
    case AUTH_IAM: {
        int verdict = judge(c, r, &c->iam.token);
        if (verdict == AUTH_ACCEPTED) {
            c->iam.authed_ms = au->iam_now;
            *done = 1;
            return REDTLS_OK;
        }
        /* Whatever it was, this token is not used again. */
        redtls__secret_clear(&c->iam.token);
        if (verdict == AUTH_ERROR)
            return redtls__fail(c->errmsg, REDTLS_E_AUTH, "AUTH with the IAM token for user '%.64s' failed: %s",
                                cfg->iam.user_id, au->answer[au->attempt]);
        /* One more try with a fresh token if that can differ: the cached
         * one was refused, or the credentials come from a source that may
         * have changed (the environment, a callback); a token signed again
         * from the same fixed credentials in the same second would be the
         * same. */
        if (au->attempt == 1 || (!au->reused && cfg->iam.creds == REDTLS__AWS_CREDS_EXPLICIT))
            return iam_refused(c);
        au->attempt = 1;
        return send_iam(c);
    }
    default:
        freeReplyObject(r);
        return redtls__fail(c->errmsg, REDTLS_E_STATE, "no AUTH under way");
    }
}

redtls_status redtls__auth_step(redtls_conn *c, int64_t now, int *done, redtls__wait *w)
{
    redtls__auth *au = &c->au;
    redtls_status st = REDTLS_OK;
    *done = 0;
    c->now = now;
    while (st == REDTLS_OK && !*done) {
        if (!au->awaiting) {
            int sent = 0;
            if (au->kind != AUTH_CALLBACK) {
                st = redtls__fail(c->errmsg, REDTLS_E_STATE, "no AUTH under way");
                break;
            }
            if ((st = callback_turn(c, now, &sent, w)) != REDTLS_OK || !sent)
                break;
        }
        redisReply *r = NULL;
        if ((st = redtls__exch_poll(c, now, au->deadline, &r, w)) != REDTLS_OK || !r)
            break;
        st = answered(c, r, done);
    }
    if (st != REDTLS_OK || *done) {
        int awaiting = au->awaiting;
        redtls__auth_reset(c);
        au->awaiting = st != REDTLS_OK && awaiting; /* for the caller's timeout message */
        if (st == REDTLS_OK)
            c->need_reauth = 0; /* a NOAUTH seen before this AUTH is answered now */
    }
    return st;
}

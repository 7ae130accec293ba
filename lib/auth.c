/* AUTH with two tokens valid at once (rotation), the credential callback,
 * and ElastiCache's token rules. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "conn.h"

/* Large enough for IAM-style signed tokens. */
#define REDTLS__CB_TOKEN_MAX 4096
#define REDTLS__CB_USER_MAX 256

redtls_status redtls_token_check_elasticache(const char *token, const char **reason)
{
    const char *why = NULL;
    size_t n = token ? strlen(token) : 0;
    if (!token)
        why = "token is NULL";
    else if (n < 16)
        why = "ElastiCache tokens have at least 16 characters";
    else if (n > 128)
        why = "ElastiCache tokens have at most 128 characters";
    for (size_t i = 0; !why && i < n; i++) {
        unsigned char ch = (unsigned char)token[i];
        if (ch <= 0x20 || ch >= 0x7f)
            why = "ElastiCache tokens hold printable ASCII characters only (no spaces)";
        else if (ch == '/' || ch == '"' || ch == '@')
            why = "ElastiCache tokens must not contain '/', '\"' or '@'";
    }
    if (reason)
        *reason = why ? why : "";
    return why ? REDTLS_E_INVALID : REDTLS_OK;
}

redtls_status redtls__check_token_policy(const redtls_config *cfg, const char *token, char *err)
{
    const char *why;
    if (cfg->strict_elasticache && redtls_token_check_elasticache(token, &why) != REDTLS_OK)
        return redtls__fail(err, REDTLS_E_INVALID, "token refused by strict ElastiCache mode: %s", why);
    return REDTLS_OK;
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

enum { AUTH_ACCEPTED, AUTH_REFUSED, AUTH_ERROR };

/* Sends AUTH [user] token once. *verdict says how the server answered;
 * answer gets its error text with the token masked. */
static redtls_status auth_once(redtls_conn *c, const char *user, const redtls__secret *token, int64_t deadline,
                               int *verdict, char *answer, size_t answer_len)
{
    const char *argv[3];
    int argc = 0;
    redisReply *r = NULL;
    argv[argc++] = "AUTH";
    if (user && user[0])
        argv[argc++] = user;
    argv[argc++] = token->data;
    redtls_status st = redtls__conn_roundtrip(c, argc, argv, 1, deadline, &r);
    if (st != REDTLS_OK)
        return st;
    answer[0] = '\0';
    if (r->type != REDIS_REPLY_ERROR) {
        *verdict = AUTH_ACCEPTED;
    } else {
        *verdict = is_credential_refusal(r) ? AUTH_REFUSED : AUTH_ERROR;
        /* Mask the whole answer before cutting it, so a token straddling
         * the cut cannot leave its first characters behind. */
        redtls__redact(r->str, r->len, token);
        redtls__redact(r->str, r->len, &c->cfg.token);
        redtls__redact(r->str, r->len, &c->cfg.token_alt);
        size_t n = r->len < answer_len - 1 ? r->len : answer_len - 1;
        memcpy(answer, r->str, n);
        answer[n] = '\0';
    }
    freeReplyObject(r);
    return REDTLS_OK;
}

static redtls_status auth_with_tokens(redtls_conn *c, int64_t deadline)
{
    const redtls_config *cfg = &c->cfg;
    const redtls__secret *tokens[2] = {&cfg->token, &cfg->token_alt};
    int first = tokens[c->preferred]->data ? c->preferred : 0;
    int other = 1 - first;
    char answer[2][200];
    int verdict;
    redtls_status st = auth_once(c, cfg->user, tokens[first], deadline, &verdict, answer[0], sizeof answer[0]);
    if (st != REDTLS_OK || verdict == AUTH_ACCEPTED)
        return st;
    if (verdict == AUTH_ERROR || !tokens[other]->data)
        return redtls__fail(c->errmsg, REDTLS_E_AUTH, "AUTH refused by the server: %s", answer[0]);
    st = auth_once(c, cfg->user, tokens[other], deadline, &verdict, answer[1], sizeof answer[1]);
    if (st != REDTLS_OK)
        return st;
    if (verdict != AUTH_ACCEPTED)
        return redtls__fail(c->errmsg, REDTLS_E_AUTH, "AUTH refused by the server for both tokens (token %d: %s; token %d: %s)",
                            first + 1, answer[0], other + 1, answer[1]);
    c->preferred = other;
    redtls__emit(c, REDTLS_EVENT_AUTH_TOKEN_SWITCHED, "token %d accepted, token %d refused", other + 1, first + 1);
    return REDTLS_OK;
}

static redtls_status auth_with_callback(redtls_conn *c, int64_t deadline)
{
    char user[REDTLS__CB_USER_MAX], errbuf[200], answer[200];
    redtls__secret token = {NULL, 0};
    redtls_status st = REDTLS_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        char buf[REDTLS__CB_TOKEN_MAX];
        user[0] = buf[0] = errbuf[0] = '\0';
        int rc = c->cfg.cred_cb(c->cfg.cred_ud, attempt, user, sizeof user, buf, sizeof buf, errbuf, sizeof errbuf);
        user[sizeof user - 1] = buf[sizeof buf - 1] = errbuf[sizeof errbuf - 1] = '\0';
        int copied = rc != 0 || !buf[0] || redtls__secret_set(&token, buf, strlen(buf)) == REDTLS_OK;
        OPENSSL_cleanse(buf, sizeof buf);
        if (!copied) {
            st = redtls__fail(c->errmsg, REDTLS_E_NOMEM, "out of memory");
            break;
        }
        if (rc != 0) {
            st = redtls__fail(c->errmsg, REDTLS_E_AUTH, "credential callback failed: %s",
                              errbuf[0] ? errbuf : "no reason given");
            break;
        }
        if (!token.data) {
            st = redtls__fail(c->errmsg, REDTLS_E_AUTH, "credential callback returned an empty token");
            break;
        }
        if (redtls__check_token_policy(&c->cfg, token.data, c->errmsg) != REDTLS_OK) {
            st = REDTLS_E_AUTH;
            break;
        }
        int verdict;
        st = auth_once(c, user, &token, deadline, &verdict, answer, sizeof answer);
        redtls__secret_clear(&token);
        if (st != REDTLS_OK || verdict == AUTH_ACCEPTED)
            break;
        st = redtls__fail(c->errmsg, REDTLS_E_AUTH, "AUTH refused by the server for the callback's credentials%s: %s",
                          attempt ? " (asked twice)" : "", answer);
        if (verdict == AUTH_ERROR)
            break;
    }
    redtls__secret_clear(&token);
    OPENSSL_cleanse(user, sizeof user);
    return st;
}

/* IAM: the handle's token while it is young enough, else a new one. When
 * the server refuses it, one more try with a fresh token if that can
 * differ: the cached one was refused, or the credentials come from a source
 * that may have changed (the environment, a callback); a token signed again
 * from the same fixed credentials in the same second would be the same. */
static redtls_status auth_with_iam(redtls_conn *c, int64_t deadline)
{
    const redtls__iam_cfg *iam = &c->cfg.iam;
    char answer[2][200];
    answer[0][0] = '\0';
    int tries = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        int64_t now = redtls__iam_now_ms(iam);
        int64_t age = now - c->iam.made_ms;
        int reused = 1;
        if (attempt > 0 || !c->iam.token.data || age >= REDTLS__IAM_REUSE_MS || age < 0) {
            redtls_status st = redtls__iam_make(iam, now, &c->iam.token, c->errmsg);
            if (st != REDTLS_OK) {
                redtls__secret_clear(&c->iam.token);
                char cause[REDTLS__ERRMSG_MAX];
                memcpy(cause, c->errmsg, sizeof cause);
                if (attempt > 0)
                    return redtls__fail(c->errmsg, st == REDTLS_E_NOMEM ? st : REDTLS_E_AUTH,
                                        "the server refused the IAM token (%.100s), and a new one cannot be made: "
                                        "%.300s",
                                        answer[0], cause);
                return redtls__fail(c->errmsg, st == REDTLS_E_NOMEM ? st : REDTLS_E_AUTH,
                                    "cannot make an IAM token: %.400s", cause);
            }
            c->iam.made_ms = now;
            reused = 0;
        }
        int verdict;
        tries++;
        redtls_status st =
            auth_once(c, iam->user_id, &c->iam.token, deadline, &verdict, answer[attempt], sizeof answer[attempt]);
        if (st != REDTLS_OK)
            return st;
        if (verdict == AUTH_ACCEPTED) {
            c->iam.authed_ms = now;
            return REDTLS_OK;
        }
        /* Whatever it was, this token is not used again. */
        redtls__secret_clear(&c->iam.token);
        if (verdict == AUTH_ERROR)
            return redtls__fail(c->errmsg, REDTLS_E_AUTH, "AUTH with the IAM token for user '%.64s' failed: %s",
                                iam->user_id, answer[attempt]);
        if (!reused && iam->creds == REDTLS__AWS_CREDS_EXPLICIT)
            break;
    }
    return redtls__fail(c->errmsg, REDTLS_E_AUTH,
                        "the server refused the IAM token for user '%.64s'%s (%.100s). Likely causes: the user is "
                        "not an IAM user in the cache's user group; the IAM policy lacks %s:Connect for it; expired "
                        "or rotated AWS credentials; a clock minutes off; not the cache's own name or region "
                        "(signed for '%.64s' in %.32s%s)",
                        iam->user_id, tries > 1 ? " twice, the second made afresh" : "", answer[tries - 1],
                        iam->service ? iam->service : "elasticache", iam->cache_name, iam->region,
                        iam->serverless ? ", serverless" : "");
}

redtls_status redtls__authenticate(redtls_conn *c, int64_t deadline)
{
    redtls_status st;
    if (redtls__iam_on(&c->cfg.iam))
        st = auth_with_iam(c, deadline);
    else if (c->cfg.cred_cb)
        st = auth_with_callback(c, deadline);
    else if (c->cfg.user && !c->cfg.token.data)
        st = redtls__fail(c->errmsg, REDTLS_E_CONFIG, "user '%s' is set but no token", c->cfg.user);
    else
        st = c->cfg.token.data ? auth_with_tokens(c, deadline) : REDTLS_OK;
    /* A NOAUTH seen before this AUTH (the TLS 1.3 client-certificate probe
     * gets one from a password-protected server) is answered now. */
    if (st == REDTLS_OK)
        c->need_reauth = 0;
    return st;
}

redtls_status redtls__set_token_pair(redtls_config *cfg, const char *token, const char *token_alt, char *err)
{
    if (!token || !token[0] || (token_alt && !token_alt[0]))
        return redtls__fail(err, REDTLS_E_INVALID, "token must be non-empty; token_alt NULL or non-empty");
    redtls_status st = redtls__check_token_policy(cfg, token, err);
    if (st == REDTLS_OK && token_alt)
        st = redtls__check_token_policy(cfg, token_alt, err);
    if (st != REDTLS_OK)
        return st;
    /* Both copies first: a failure leaves the old pair in place. */
    redtls__secret t = {NULL, 0}, alt = {NULL, 0};
    if (redtls__secret_set(&t, token, strlen(token)) != REDTLS_OK ||
        (token_alt && redtls__secret_set(&alt, token_alt, strlen(token_alt)) != REDTLS_OK)) {
        redtls__secret_clear(&t);
        return redtls__fail(err, REDTLS_E_NOMEM, "out of memory; the previous tokens stay in use");
    }
    redtls__secret_clear(&cfg->token);
    redtls__secret_clear(&cfg->token_alt);
    cfg->token = t;
    cfg->token_alt = alt;
    return REDTLS_OK;
}

redtls_status redtls_conn_set_tokens(redtls_conn *c, const char *token, const char *token_alt, int flags)
{
    if (!c)
        return REDTLS_E_INVALID;
    c->errmsg[0] = '\0';
    if ((flags & REDTLS_REAUTH_NOW) && c->tp && c->pending > 0)
        return redtls__fail(c->errmsg, REDTLS_E_STATE, "cannot re-authenticate while pipelined replies are pending");
    redtls_status st = redtls__set_token_pair(&c->cfg, token, token_alt, c->errmsg);
    if (st != REDTLS_OK)
        return st;
    c->preferred = 0;
    if (!(flags & REDTLS_REAUTH_NOW) || !c->tp || c->cfg.cred_cb || redtls__iam_on(&c->cfg.iam))
        return REDTLS_OK;
    st = redtls__authenticate(c, redtls__deadline_after(c->cfg.command_timeout_ms));
    if (st == REDTLS_OK)
        redtls__emit(c, REDTLS_EVENT_AUTH_REFRESHED, "re-authenticated the open connection with token %d",
                     c->preferred + 1);
    return st;
}

int redtls_conn_preferred_token(const redtls_conn *c)
{
    if (!c || c->cfg.cred_cb || redtls__iam_on(&c->cfg.iam) || !c->cfg.token.data)
        return 0;
    return c->cfg.token_alt.data ? c->preferred + 1 : 1;
}

/* The public IAM settings of a configuration (redtls_config_set_iam and
 * the AWS credential sources) and redtls_iam_token; the tokens themselves
 * are made in lib/iam. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "config.h"
#include "iam.h"
#include "sigv4.h"

#define CHECK_CFG(cfg)                                                                                           \
    do {                                                                                                         \
        if (!(cfg))                                                                                              \
            return REDTLS_E_INVALID;                                                                             \
        (cfg)->errmsg[0] = '\0';                                                                                 \
    } while (0)

redtls_status redtls_config_set_iam(redtls_config *cfg, const char *cache_name, const char *user_id,
                                    const char *region, unsigned flags)
{
    CHECK_CFG(cfg);
    if (!cache_name) {
        free(cfg->iam.cache_name);
        cfg->iam.cache_name = NULL;
        return REDTLS_OK;
    }
    if (!region || strlen(region) > 64)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "IAM region must be given, at most 64 characters");
    redtls_status st = redtls__iam_check_fields(cache_name, region, NULL, cfg->errmsg);
    if (st != REDTLS_OK)
        return st;
    if (!user_id || !user_id[0] || strpbrk(user_id, " \r\n") || strlen(user_id) > 255)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID,
                            "IAM user id must be 1 to 255 characters without spaces (the ElastiCache user id)");
    if (flags & ~REDTLS_IAM_SERVERLESS)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "unknown IAM flags 0x%x", flags & ~REDTLS_IAM_SERVERLESS);
    char *c = NULL, *u = NULL, *r = NULL;
    if (redtls__str_set(&c, cache_name) || redtls__str_set(&u, user_id) || redtls__str_set(&r, region)) {
        free(c);
        free(u);
        free(r);
        return redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
    }
    free(cfg->iam.cache_name);
    free(cfg->iam.user_id);
    free(cfg->iam.region);
    cfg->iam.cache_name = c;
    cfg->iam.user_id = u;
    cfg->iam.region = r;
    cfg->iam.serverless = (flags & REDTLS_IAM_SERVERLESS) != 0;
    return REDTLS_OK;
}

redtls_status redtls_config_set_iam_service(redtls_config *cfg, const char *service)
{
    CHECK_CFG(cfg);
    if (service && strcmp(service, "elasticache") != 0 && strcmp(service, "memorydb") != 0)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "IAM service must be \"elasticache\" or \"memorydb\"");
    if (redtls__str_set(&cfg->iam.service, service))
        return redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
    return REDTLS_OK;
}

redtls_status redtls_config_set_iam_reauth_ms(redtls_config *cfg, uint32_t ms)
{
    CHECK_CFG(cfg);
    cfg->iam.reauth_ms = ms;
    return REDTLS_OK;
}

static void creds_clear(redtls__iam_cfg *iam)
{
    free(iam->access_key_id);
    iam->access_key_id = NULL;
    redtls__secret_clear(&iam->secret_key);
    redtls__secret_clear(&iam->session_token);
    iam->cb = NULL;
    iam->cb_ud = NULL;
    iam->creds = REDTLS__AWS_CREDS_NONE;
}

redtls_status redtls_config_set_aws_credentials(redtls_config *cfg, const char *access_key_id,
                                                const char *secret_access_key, const char *session_token)
{
    CHECK_CFG(cfg);
    if (!access_key_id || strlen(access_key_id) >= REDTLS__AWS_ID_MAX)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "AWS access key id must be 1 to %d letters and digits",
                            REDTLS__AWS_ID_MAX - 1);
    redtls_status st = redtls__iam_check_fields(NULL, NULL, access_key_id, cfg->errmsg);
    if (st != REDTLS_OK)
        return st;
    if (!secret_access_key || !secret_access_key[0] || strlen(secret_access_key) > REDTLS__SIGV4_SECRET_MAX)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "AWS secret access key must be 1 to %d characters",
                            REDTLS__SIGV4_SECRET_MAX);
    if (session_token && strlen(session_token) >= REDTLS__AWS_SESSION_MAX)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "AWS session token must be at most %d characters",
                            REDTLS__AWS_SESSION_MAX - 1);
    char *id = NULL;
    redtls__secret secret = {NULL, 0}, session = {NULL, 0};
    if (redtls__str_set(&id, access_key_id) ||
        redtls__secret_set(&secret, secret_access_key, strlen(secret_access_key)) ||
        (session_token && session_token[0] && redtls__secret_set(&session, session_token, strlen(session_token)))) {
        free(id);
        redtls__secret_clear(&secret);
        return redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
    }
    creds_clear(&cfg->iam);
    cfg->iam.access_key_id = id;
    cfg->iam.secret_key = secret;
    cfg->iam.session_token = session;
    cfg->iam.creds = REDTLS__AWS_CREDS_EXPLICIT;
    return REDTLS_OK;
}

redtls_status redtls_config_set_aws_credentials_from_env(redtls_config *cfg)
{
    CHECK_CFG(cfg);
    creds_clear(&cfg->iam);
    cfg->iam.creds = REDTLS__AWS_CREDS_ENV;
    return REDTLS_OK;
}

redtls_status redtls_config_set_aws_credentials_callback(redtls_config *cfg, redtls_aws_credentials_cb cb,
                                                         void *userdata)
{
    CHECK_CFG(cfg);
    if (!cb)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "AWS credentials callback is NULL");
    creds_clear(&cfg->iam);
    cfg->iam.cb = cb;
    cfg->iam.cb_ud = userdata;
    cfg->iam.creds = REDTLS__AWS_CREDS_CALLBACK;
    return REDTLS_OK;
}

redtls_status redtls_iam_token(redtls_config *cfg, int64_t unix_time, char *out, size_t cap)
{
    CHECK_CFG(cfg);
    if (!out || cap == 0)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "no output buffer");
    out[0] = '\0';
    /* Up to the year 5138: far beyond any real signing time. */
    if (unix_time < 0 || unix_time > 100000000000LL)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "signing time %lld is out of range (0: now)",
                            (long long)unix_time);
    int64_t ms = unix_time > 0 ? unix_time * 1000 : redtls__iam_now_ms(&cfg->iam);
    redtls__secret t = {NULL, 0};
    redtls_status st = redtls__iam_make(&cfg->iam, ms, &t, cfg->errmsg);
    if (st == REDTLS_OK && t.data) {
        if (t.len >= cap)
            st = redtls__fail(cfg->errmsg, REDTLS_E_LIMIT, "the token has %zu bytes; the buffer holds %zu", t.len + 1,
                              cap);
        else
            memcpy(out, t.data, t.len + 1);
    }
    redtls__secret_clear(&t);
    return st;
}

/* ElastiCache / MemoryDB IAM authentication: configuration, credentials,
 * tokens. The AUTH exchange itself is in auth.c, the re-authentication
 * schedule in the blocking driver (blocking.c, check_idle_connection). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "iam.h"
#include "sigv4.h"


void redtls__iam_cfg_init(redtls__iam_cfg *iam)
{
    memset(iam, 0, sizeof *iam);
    iam->reauth_ms = REDTLS_DEFAULT_IAM_REAUTH_MS;
}

void redtls__iam_cfg_release(redtls__iam_cfg *iam)
{
    free(iam->cache_name);
    free(iam->user_id);
    free(iam->region);
    free(iam->service);
    free(iam->access_key_id);
    redtls__secret_clear(&iam->secret_key);
    redtls__secret_clear(&iam->session_token);
    redtls__iam_cfg_init(iam);
}

redtls_status redtls__iam_cfg_copy(redtls__iam_cfg *dst, const redtls__iam_cfg *src)
{
    *dst = *src;
    dst->cache_name = dst->user_id = dst->region = dst->service = dst->access_key_id = NULL;
    dst->secret_key = (redtls__secret){NULL, 0};
    dst->session_token = (redtls__secret){NULL, 0};
    if (redtls__str_set(&dst->cache_name, src->cache_name) || redtls__str_set(&dst->user_id, src->user_id) ||
        redtls__str_set(&dst->region, src->region) || redtls__str_set(&dst->service, src->service) ||
        redtls__str_set(&dst->access_key_id, src->access_key_id) ||
        redtls__secret_copy(&dst->secret_key, &src->secret_key) ||
        redtls__secret_copy(&dst->session_token, &src->session_token)) {
        redtls__iam_cfg_release(dst);
        return REDTLS_E_NOMEM;
    }
    return REDTLS_OK;
}

int64_t redtls__iam_now_ms(const redtls__iam_cfg *iam)
{
    if (iam->clock)
        return iam->clock(iam->clock_ud);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int redtls__iam_reauth_due(const redtls__iam_cfg *iam, const redtls__iam_state *st)
{
    if (!redtls__iam_on(iam) || iam->reauth_ms == 0 || st->authed_ms == 0)
        return 0;
    int64_t now = redtls__iam_now_ms(iam), age = now - st->authed_ms;
    if (st->retry_ms && now < st->retry_ms && now >= st->retry_ms - REDTLS__IAM_RETRY_MS)
        return 0;
    /* A clock set back also counts: the server's clock did not move. */
    return age >= (int64_t)iam->reauth_ms || age < 0;
}

/* Copies src into dst (cap bytes) or says which value did not fit. */
static redtls_status put(char *dst, size_t cap, const char *src, const char *what, char *err)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap)
        return redtls__fail(err, REDTLS_E_AUTH, "the AWS %s is longer than %zu bytes", what, cap - 1);
    memcpy(dst, src ? src : "", n + 1);
    return REDTLS_OK;
}

static redtls_status credentials(const redtls__iam_cfg *iam, char *id, char *secret, char *session, char *err)
{
    redtls_status st;
    id[0] = secret[0] = session[0] = '\0';
    switch (iam->creds) {
    case REDTLS__AWS_CREDS_EXPLICIT:
        if ((st = put(id, REDTLS__AWS_ID_MAX, iam->access_key_id, "access key id", err)) ||
            (st = put(secret, REDTLS__AWS_SECRET_MAX, iam->secret_key.data, "secret access key", err)) ||
            (st = put(session, REDTLS__AWS_SESSION_MAX, iam->session_token.data, "session token", err)))
            return st;
        return REDTLS_OK;
    case REDTLS__AWS_CREDS_ENV: {
        const char *v_id = getenv("AWS_ACCESS_KEY_ID"), *v_secret = getenv("AWS_SECRET_ACCESS_KEY");
        if (!v_id || !v_id[0])
            return redtls__fail(err, REDTLS_E_AUTH, "AWS_ACCESS_KEY_ID is not set in the environment (IAM credentials "
                                                    "are read from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and "
                                                    "AWS_SESSION_TOKEN)");
        if (!v_secret || !v_secret[0])
            return redtls__fail(err, REDTLS_E_AUTH, "AWS_SECRET_ACCESS_KEY is not set in the environment");
        if ((st = put(id, REDTLS__AWS_ID_MAX, v_id, "access key id", err)) ||
            (st = put(secret, REDTLS__AWS_SECRET_MAX, v_secret, "secret access key", err)) ||
            (st = put(session, REDTLS__AWS_SESSION_MAX, getenv("AWS_SESSION_TOKEN"), "session token", err)))
            return st;
        return REDTLS_OK;
    }
    case REDTLS__AWS_CREDS_CALLBACK: {
        char why[200] = "";
        int rc = iam->cb(iam->cb_ud, id, REDTLS__AWS_ID_MAX, secret, REDTLS__AWS_SECRET_MAX, session,
                         REDTLS__AWS_SESSION_MAX, why, sizeof why);
        id[REDTLS__AWS_ID_MAX - 1] = secret[REDTLS__AWS_SECRET_MAX - 1] = session[REDTLS__AWS_SESSION_MAX - 1] = '\0';
        why[sizeof why - 1] = '\0';
        if (rc != 0)
            return redtls__fail(err, REDTLS_E_AUTH, "the AWS credentials callback failed: %s",
                                why[0] ? why : "no reason given");
        if (!id[0] || !secret[0])
            return redtls__fail(err, REDTLS_E_AUTH, "the AWS credentials callback returned no %s",
                                id[0] ? "secret access key" : "access key id");
        return REDTLS_OK;
    }
    default:
        return redtls__fail(err, REDTLS_E_CONFIG,
                            "IAM authentication needs AWS credentials: set them explicitly, from the environment or "
                            "with a callback (redtls_config_set_aws_credentials*)");
    }
}

redtls_status redtls__iam_make(const redtls__iam_cfg *iam, int64_t unix_ms, redtls__secret *out, char *err)
{
    if (!redtls__iam_on(iam))
        return redtls__fail(err, REDTLS_E_CONFIG, "IAM authentication is not configured");
    char *id = malloc(REDTLS__AWS_ID_MAX), *secret = malloc(REDTLS__AWS_SECRET_MAX);
    char *session = malloc(REDTLS__AWS_SESSION_MAX), *token = malloc(REDTLS__IAM_TOKEN_MAX);
    redtls_status st;
    if (!id || !secret || !session || !token) {
        st = redtls__fail(err, REDTLS_E_NOMEM, "out of memory");
    } else if ((st = credentials(iam, id, secret, session, err)) == REDTLS_OK) {
        redtls__iam_request req = {
            .cache_name = iam->cache_name,
            .user_id = iam->user_id,
            .region = iam->region,
            .service = iam->service,
            .serverless = iam->serverless,
            .access_key_id = id,
            .secret_access_key = secret,
            .session_token = session[0] ? session : NULL,
            .when = (time_t)(unix_ms / 1000),
            .expires_s = REDTLS__IAM_EXPIRES_S,
        };
        st = redtls__iam_token(&req, token, REDTLS__IAM_TOKEN_MAX, err);
        if (st == REDTLS_OK && redtls__secret_set(out, token, strlen(token)) != REDTLS_OK)
            st = redtls__fail(err, REDTLS_E_NOMEM, "out of memory");
    }
    if (id)
        OPENSSL_cleanse(id, REDTLS__AWS_ID_MAX);
    if (secret)
        OPENSSL_cleanse(secret, REDTLS__AWS_SECRET_MAX);
    if (session)
        OPENSSL_cleanse(session, REDTLS__AWS_SESSION_MAX);
    if (token)
        OPENSSL_cleanse(token, REDTLS__IAM_TOKEN_MAX);
    free(id);
    free(secret);
    free(session);
    free(token);
    return st;
}

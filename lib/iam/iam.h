/* ElastiCache / MemoryDB IAM authentication: its part of the
 * configuration, where the AWS credentials come from, and the token a
 * connection sends (lib/sigv4.c signs it). */
#ifndef REDTLS_IAM_H
#define REDTLS_IAM_H

#include "common.h"

enum { REDTLS__AWS_CREDS_NONE, REDTLS__AWS_CREDS_EXPLICIT, REDTLS__AWS_CREDS_ENV, REDTLS__AWS_CREDS_CALLBACK };

/* A token is reused for (re)connections while younger than this; it is
 * valid for 15 minutes, the rest is a margin for clock skew and slow
 * set-ups. */
/* Buffers for what a credential source hands over. STS session tokens run
 * to a few KiB. */
#define REDTLS__AWS_ID_MAX 256
#define REDTLS__AWS_SECRET_MAX 256
#define REDTLS__AWS_SESSION_MAX 8192
/* A token: the cache name, the user, the fixed parameters, the signature
 * and the URL-encoded session token (which may triple in length). */
#define REDTLS__IAM_TOKEN_MAX ((size_t)3 * REDTLS__AWS_SESSION_MAX + 2048)
#define REDTLS__IAM_REUSE_MS ((int64_t)10 * 60 * 1000)
/* The presigned request's lifetime (X-Amz-Expires). */
#define REDTLS__IAM_EXPIRES_S 900

typedef struct redtls__iam_cfg {
    char *cache_name; /* NULL: IAM off */
    char *user_id;
    char *region;
    char *service; /* NULL: "elasticache" */
    int serverless;
    uint32_t reauth_ms;
    int creds;     /* REDTLS__AWS_CREDS_* */
    char *access_key_id;
    redtls__secret secret_key;
    redtls__secret session_token;
    redtls_aws_credentials_cb cb;
    void *cb_ud;
    /* Tests: the wall clock in ms since the epoch (NULL: the real one). */
    int64_t (*clock)(void *ud);
    void *clock_ud;
} redtls__iam_cfg;

/* What a connection handle keeps between its (re)connections. */
typedef struct redtls__iam_state {
    redtls__secret token; /* the last token made, or unset */
    int64_t made_ms;      /* when it was signed (wall clock) */
    int64_t authed_ms;    /* the last accepted AUTH; 0: none yet */
    int64_t retry_ms;     /* a failed scheduled re-authentication: not before */
} redtls__iam_state;

/* A scheduled re-authentication that failed is tried again this much
 * later (the connection stays). */
#define REDTLS__IAM_RETRY_MS ((int64_t)60 * 1000)

void redtls__iam_cfg_init(redtls__iam_cfg *iam);
void redtls__iam_cfg_release(redtls__iam_cfg *iam);
/* Deep copy (dst uninitialised): REDTLS_OK or REDTLS_E_NOMEM with dst
 * owning nothing. */
redtls_status redtls__iam_cfg_copy(redtls__iam_cfg *dst, const redtls__iam_cfg *src);

static inline int redtls__iam_on(const redtls__iam_cfg *iam)
{
    return iam->cache_name != NULL;
}

/* The IAM clock: wall time in ms since the epoch. */
int64_t redtls__iam_now_ms(const redtls__iam_cfg *iam);

/* Makes the token for unix_ms into *out (replacing it). REDTLS_E_CONFIG
 * (no credentials configured), REDTLS_E_AUTH (the credential source
 * failed), REDTLS_E_INVALID, REDTLS_E_NOMEM; err never holds a secret. */
redtls_status redtls__iam_make(const redtls__iam_cfg *iam, int64_t unix_ms, redtls__secret *out, char *err);

/* An open connection's authentication is older than the re-authentication
 * interval. */
int redtls__iam_reauth_due(const redtls__iam_cfg *iam, const redtls__iam_state *st);

#endif

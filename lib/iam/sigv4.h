/* AWS Signature Version 4 query-string signing ("presigning"), and the
 * ElastiCache / MemoryDB IAM authentication token built on it.
 *
 * Internal: nothing here is exported from the shared library. Every
 * function is pure (time is passed in), keeps no state and may be called
 * from any thread. Secrets (the secret access key and every key derived
 * from it) live only in stack buffers that are wiped with OPENSSL_cleanse
 * before the function returns; they never appear in an error message. */
#ifndef REDTLS_SIGV4_H
#define REDTLS_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "common.h"

/* Hex digits of a SHA-256 digest or HMAC-SHA256 signature. */
#define REDTLS__SIGV4_HEX_LEN 64
/* Longest secret access key accepted (AWS's are 40 characters). */
#define REDTLS__SIGV4_SECRET_MAX 128
/* Most query parameters one request may carry, X-Amz-* included. */
#define REDTLS__SIGV4_PARAMS_MAX 32
/* Longest X-Amz-Expires SigV4 allows: seven days. */
#define REDTLS__SIGV4_EXPIRES_MAX 604800u

/* One query parameter, neither encoded yet. */
typedef struct redtls__sigv4_param {
    const char *name;
    const char *value;
} redtls__sigv4_param;

/* What to presign. Strings are NUL-terminated; none is kept after the call.
 *   method        "GET", "POST", ...
 *   host          the Host header's value, the only signed header
 *   path          the path as sent on the wire (starting with '/'); the
 *                 canonical URI encodes each segment of it once more, as
 *                 SigV4 wants for every service but S3 (no normalization)
 *   params        the request's own parameters, in any order, not encoded
 *   payload_hash  hex SHA-256 of the body, or "UNSIGNED-PAYLOAD"
 *   session_token NULL or "" for none; else sent as X-Amz-Security-Token
 *   when          the signing time (X-Amz-Date), seconds since the epoch
 *   expires_s     X-Amz-Expires, 1 to REDTLS__SIGV4_EXPIRES_MAX */
typedef struct redtls__sigv4_request {
    const char *method;
    const char *host;
    const char *path;
    const redtls__sigv4_param *params;
    size_t n_params;
    const char *region;
    const char *service;
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token;
    time_t when;
    unsigned expires_s;
    const char *payload_hash;
} redtls__sigv4_request;

/* Where the results go. query is required; canonical_request and
 * string_to_sign may be NULL when not wanted (then their caps are ignored).
 *   query              every parameter (the request's and X-Amz-Algorithm,
 *                      -Credential, -Date, -Expires, -Security-Token,
 *                      -SignedHeaders), RFC 3986 encoded, sorted by encoded
 *                      name then encoded value, then
 *                      "&X-Amz-Signature=<hex>" last
 *   canonical_request  the canonical request that was hashed
 *   string_to_sign     the string that was signed
 *   signature          the signature, hex, NUL-terminated
 *   query_needed       set by the call, on success and on REDTLS_E_LIMIT:
 *                      the bytes query needs, NUL included
 * query may be NULL when query_cap is 0 (to learn query_needed). */
typedef struct redtls__sigv4_result {
    char *query;
    size_t query_cap;
    size_t query_needed;
    char *canonical_request;
    size_t canonical_request_cap;
    char *string_to_sign;
    size_t string_to_sign_cap;
    char signature[REDTLS__SIGV4_HEX_LEN + 1];
} redtls__sigv4_result;

/* Presigns req into res. Outputs are NUL-terminated.
 * Errors (message in err, REDTLS__ERRMSG_MAX bytes, may be NULL):
 *   REDTLS_E_INVALID  a missing field, expires_s out of range, a time
 *                     gmtime cannot express, a secret longer than
 *                     REDTLS__SIGV4_SECRET_MAX, too many parameters
 *   REDTLS_E_LIMIT    an output buffer is too small (the message says how
 *                     many bytes it needs)
 *   REDTLS_E_NOMEM    OpenSSL could not allocate its digest context
 * On failure the outputs hold no secret-derived data (signature is ""). */
redtls_status redtls__sigv4_presign(const redtls__sigv4_request *req, redtls__sigv4_result *res, char *err);

/* The last steps on their own, for any canonical request (header-signed
 * ones included): hashes canonical_request[0..len), writes the string to
 * sign into sts (may be NULL) and the hex signature into
 * signature (REDTLS__SIGV4_HEX_LEN + 1 bytes). Errors as above. */
redtls_status redtls__sigv4_sign_canonical(const char *canonical_request, size_t len, time_t when,
                                           const char *region, const char *service,
                                           const char *secret_access_key, char *sts, size_t sts_cap,
                                           char *signature, char *err);

/* The signing key HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date8), region),
 * service), "aws4_request") into key (32 bytes); date8 is YYYYMMDD. The
 * caller wipes key. Errors: REDTLS_E_INVALID (secret too long or missing),
 * REDTLS_E_NOMEM. */
redtls_status redtls__sigv4_signing_key(const char *secret_access_key, const char *date8, const char *region,
                                        const char *service, unsigned char key[32], char *err);

/* The RFC 3986 encoding SigV4 uses: A-Z a-z 0-9 - _ . ~ kept, every other
 * byte %XX with upper-case hex. Writes at most cap bytes (NUL included) and
 * returns the length the whole encoding needs, NUL excluded. */
size_t redtls__sigv4_encode(const char *s, char *out, size_t cap);

/* ElastiCache (service "elasticache") or MemoryDB ("memorydb") IAM
 * authentication: the AUTH password is a presigned
 *   GET https://<cache_name>/?Action=connect&User=<user_id>
 *       [&ResourceType=ServerlessCache]
 * signed for host only, with the SHA-256 of an empty payload.
 *   cache_name         the cache's name (the replication group or
 *                      serverless cache ID), lower case, host-name
 *                      characters only (a-z 0-9 - .)
 *   user_id            the ElastiCache user ID (also the AUTH user name)
 *   region             e.g. "us-east-1": lower-case letters, digits, '-'
 *   service            NULL for "elasticache"; same alphabet as region
 *   serverless         non-zero for a serverless cache
 *   session_token      NULL or "" when the credentials are not temporary
 *   when               signing time, seconds since the epoch (UTC)
 *   expires_s          0 for 900 (fifteen minutes, ElastiCache's limit)
 *
 * The token written to out is the presigned URL without "https://":
 *   <cache_name>/?Action=connect[&ResourceType=ServerlessCache]&User=<u>
 *     &X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=<c>&X-Amz-Date=<d>
 *     &X-Amz-Expires=<e>[&X-Amz-Security-Token=<t>]&X-Amz-SignedHeaders=host
 *     &X-Amz-Signature=<hex>
 * i.e. the parameters in canonical (sorted, encoded) order with the
 * signature appended last. It is a credential: wipe it after use.
 *
 * Errors: REDTLS_E_INVALID (the message names the field, never a secret):
 * a missing field, an upper-case or non-host-name character in cache_name,
 * a bad region or service, an access key ID with characters other than
 * letters and digits, expires_s over REDTLS__SIGV4_EXPIRES_MAX;
 * REDTLS_E_LIMIT when cap is too small (the message says how many bytes
 * are needed; out is then ""); REDTLS_E_NOMEM. */
typedef struct redtls__iam_request {
    const char *cache_name;
    const char *user_id;
    const char *region;
    const char *service;
    int serverless;
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token;
    time_t when;
    unsigned expires_s;
} redtls__iam_request;

redtls_status redtls__iam_token(const redtls__iam_request *req, char *out, size_t cap, char *err);

/* The rules redtls__iam_token applies to these fields, for checking them
 * where they are configured; NULL skips a field. REDTLS_E_INVALID names
 * the field and the rule, never a secret. */
redtls_status redtls__iam_check_fields(const char *cache_name, const char *region, const char *access_key_id,
                                       char *err);

#endif

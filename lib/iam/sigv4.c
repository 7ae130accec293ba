/* AWS Signature Version 4 presigning and the ElastiCache IAM token. */
#include "sigv4.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define SIGV4_TERMINATOR "aws4_request"
#define SIGV4_SIGNATURE_PARAM "&X-Amz-Signature="
/* Region and service names are short ("ap-southeast-2", "elasticache");
 * these bounds keep the credential scope in fixed stack buffers. */
#define SIGV4_NAME_MAX 64
#define SIGV4_AKID_MAX 128
#define SIGV4_SCOPE_MAX (8 + 1 + SIGV4_NAME_MAX + 1 + SIGV4_NAME_MAX + 1 + sizeof SIGV4_TERMINATOR)
#define SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define IAM_DEFAULT_EXPIRES 900u
/* RFC 1035: a host name is at most 253 characters. */
#define IAM_CACHE_NAME_MAX 253

static const char hex_digits[] = "0123456789abcdef";
static const char hex_upper[] = "0123456789ABCDEF";

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == '~';
}

static void to_hex(const unsigned char *bin, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex_digits[bin[i] >> 4];
        out[2 * i + 1] = hex_digits[bin[i] & 15];
    }
    out[2 * n] = '\0';
}

size_t redtls__sigv4_encode(const char *s, char *out, size_t cap)
{
    size_t len = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char enc[3] = {(char)*p, 0, 0};
        size_t n = 1;
        if (!is_unreserved(*p)) {
            enc[0] = '%';
            enc[1] = hex_upper[*p >> 4];
            enc[2] = hex_upper[*p & 15];
            n = 3;
        }
        for (size_t i = 0; i < n; i++, len++)
            if (len + 1 < cap)
                out[len] = enc[i];
    }
    if (cap > 0)
        out[len < cap ? len : cap - 1] = '\0';
    return len;
}

/* Walks the encoded form of a string one byte at a time, so that
 * parameters can be sorted by their encoding without building it. */
typedef struct enc_iter {
    const unsigned char *s;
    char pending[2];
    int n_pending;
} enc_iter;

static int enc_next(enc_iter *it)
{
    if (it->n_pending > 0) {
        int c = (unsigned char)it->pending[2 - it->n_pending];
        it->n_pending--;
        return c;
    }
    if (*it->s == '\0')
        return -1;
    unsigned char c = *it->s++;
    if (is_unreserved(c))
        return c;
    it->pending[0] = hex_upper[c >> 4];
    it->pending[1] = hex_upper[c & 15];
    it->n_pending = 2;
    return '%';
}

static int enc_cmp(const char *a, const char *b)
{
    enc_iter x = {(const unsigned char *)a, {0, 0}, 0};
    enc_iter y = {(const unsigned char *)b, {0, 0}, 0};
    for (;;) {
        int ca = enc_next(&x), cb = enc_next(&y);
        if (ca != cb)
            return ca < cb ? -1 : 1;
        if (ca < 0)
            return 0;
    }
}

static int param_cmp(const redtls__sigv4_param *a, const redtls__sigv4_param *b)
{
    int c = enc_cmp(a->name, b->name);
    return c != 0 ? c : enc_cmp(a->value, b->value);
}

/* An output that copies what fits into buf (if any), counts everything and
 * feeds everything to a digest (if any). */
typedef struct sink {
    char *buf;
    size_t cap;
    size_t len;
    EVP_MD_CTX *md;
    int md_failed;
} sink;

static void put(sink *k, const char *p, size_t n)
{
    if (k->buf && k->len < k->cap) {
        size_t room = k->cap - k->len;
        memcpy(k->buf + k->len, p, n < room ? n : room);
    }
    k->len += n;
    if (k->md && EVP_DigestUpdate(k->md, p, n) != 1)
        k->md_failed = 1;
}

static void put_str(sink *k, const char *s)
{
    put(k, s, strlen(s));
}

/* Encodes s into k; when keep_slash, '/' stays as it is (path segments). */
static void put_encoded(sink *k, const char *s, int keep_slash)
{
    const char *run = s;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (is_unreserved(c) || (keep_slash && c == '/'))
            continue;
        put(k, run, (size_t)(p - run));
        char enc[3] = {'%', hex_upper[c >> 4], hex_upper[c & 15]};
        put(k, enc, 3);
        run = p + 1;
    }
    put_str(k, run);
}

/* NUL-terminates k's buffer; 0 if everything fitted, -1 otherwise. */
static int sink_close(sink *k)
{
    if (!k->buf)
        return 0;
    if (k->len < k->cap) {
        k->buf[k->len] = '\0';
        return 0;
    }
    if (k->cap > 0) {
        OPENSSL_cleanse(k->buf, k->cap);
        k->buf[0] = '\0';
    }
    return -1;
}

/* X-Amz-Date (YYYYMMDDTHHMMSSZ) and the date of the scope (YYYYMMDD). */
static redtls_status format_time(time_t when, char amz_date[17], char date8[9], char *err)
{
    struct tm tm;
    if (!gmtime_r(&when, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
        return redtls__fail(err, REDTLS_E_INVALID, "sigv4: the signing time is outside years 0 to 9999");
    if (strftime(amz_date, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
        return redtls__fail(err, REDTLS_E_INVALID, "sigv4: the signing time cannot be formatted");
    memcpy(date8, amz_date, 8);
    date8[8] = '\0';
    return REDTLS_OK;
}

static redtls_status check_name(const char *what, const char *s, char *err)
{
    if (!s || !*s)
        return redtls__fail(err, REDTLS_E_INVALID, "sigv4: %s is missing", what);
    if (strlen(s) > SIGV4_NAME_MAX)
        return redtls__fail(err, REDTLS_E_INVALID, "sigv4: %s is longer than %d bytes", what, SIGV4_NAME_MAX);
    /* The scope joins its parts with '/', so one inside a part would
     * change what is signed. */
    if (strchr(s, '/'))
        return redtls__fail(err, REDTLS_E_INVALID, "sigv4: %s must not contain '/'", what);
    return REDTLS_OK;
}

redtls_status redtls__sigv4_signing_key(const char *secret_access_key, const char *date8, const char *region,
                                        const char *service, unsigned char key[32], char *err)
{
    if (!secret_access_key || !*secret_access_key)
        return redtls__fail(err, REDTLS_E_INVALID, "sigv4: secret_access_key is missing");
    if (!date8 || !region || !service)
        return redtls__fail(err, REDTLS_E_INVALID, "sigv4: no date, region or service for the signing key");
    size_t slen = strlen(secret_access_key);
    if (slen > REDTLS__SIGV4_SECRET_MAX)
        return redtls__fail(err, REDTLS_E_INVALID, "sigv4: secret_access_key is longer than %d bytes",
                            REDTLS__SIGV4_SECRET_MAX);
    unsigned char k_secret[4 + REDTLS__SIGV4_SECRET_MAX + 1];
    unsigned char a[32], b[32];
    unsigned int n = 0;
    memcpy(k_secret, "AWS4", sizeof "AWS4");
    memcpy(k_secret + 4, secret_access_key, slen + 1);
    /* kDate, kRegion, kService, kSigning: each keyed by the one before. */
    int ok = HMAC(EVP_sha256(), k_secret, (int)(4 + slen), (const unsigned char *)date8, strlen(date8), a, &n) &&
             HMAC(EVP_sha256(), a, 32, (const unsigned char *)region, strlen(region), b, &n) &&
             HMAC(EVP_sha256(), b, 32, (const unsigned char *)service, strlen(service), a, &n) &&
             HMAC(EVP_sha256(), a, 32, (const unsigned char *)SIGV4_TERMINATOR, strlen(SIGV4_TERMINATOR), key, &n);
    OPENSSL_cleanse(k_secret, sizeof k_secret);
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
    if (!ok) {
        OPENSSL_cleanse(key, 32);
        return redtls__fail(err, REDTLS_E_NOMEM, "sigv4: HMAC-SHA256 failed in OpenSSL");
    }
    return REDTLS_OK;
}

/* From the canonical request's hash to the string to sign and the
 * signature. */
static redtls_status sign_hash(const char *hash_hex, const char *amz_date, const char *date8, const char *region,
                               const char *service, const char *secret, char *sts_out, size_t sts_cap,
                               char *signature, char *err)
{
    char sts[sizeof SIGV4_ALGORITHM + 17 + SIGV4_SCOPE_MAX + REDTLS__SIGV4_HEX_LEN + 4];
    int n = snprintf(sts, sizeof sts, "%s\n%s\n%s/%s/%s/%s\n%s", SIGV4_ALGORITHM, amz_date, date8, region, service,
                     SIGV4_TERMINATOR, hash_hex);
    if (n < 0 || (size_t)n >= sizeof sts)
        return redtls__fail(err, REDTLS_E_INVALID, "sigv4: region or service too long");
    if (sts_out) {
        if ((size_t)n + 1 > sts_cap)
            return redtls__fail(err, REDTLS_E_LIMIT, "sigv4: the string to sign needs %d bytes, the buffer has %zu",
                                n + 1, sts_cap);
        memcpy(sts_out, sts, (size_t)n + 1);
    }
    unsigned char key[32], mac[32];
    unsigned int mac_len = 0;
    redtls_status st = redtls__sigv4_signing_key(secret, date8, region, service, key, err);
    if (st != REDTLS_OK)
        return st;
    int ok = HMAC(EVP_sha256(), key, 32, (const unsigned char *)sts, (size_t)n, mac, &mac_len) != NULL;
    OPENSSL_cleanse(key, sizeof key);
    if (!ok) {
        OPENSSL_cleanse(mac, sizeof mac);
        return redtls__fail(err, REDTLS_E_NOMEM, "sigv4: HMAC-SHA256 failed in OpenSSL");
    }
    to_hex(mac, 32, signature);
    OPENSSL_cleanse(mac, sizeof mac);
    return REDTLS_OK;
}

redtls_status redtls__sigv4_sign_canonical(const char *canonical_request, size_t len, time_t when,
                                           const char *region, const char *service,
                                           const char *secret_access_key, char *sts, size_t sts_cap,
                                           char *signature, char *err)
{
    char amz_date[17], date8[9], hash_hex[REDTLS__SIGV4_HEX_LEN + 1];
    unsigned char hash[32];
    signature[0] = '\0';
    redtls_status st = format_time(when, amz_date, date8, err);
    if (st == REDTLS_OK)
        st = check_name("region", region, err);
    if (st == REDTLS_OK)
        st = check_name("service", service, err);
    if (st != REDTLS_OK)
        return st;
    if (EVP_Digest(canonical_request, len, hash, NULL, EVP_sha256(), NULL) != 1)
        return redtls__fail(err, REDTLS_E_NOMEM, "sigv4: SHA-256 failed in OpenSSL");
    to_hex(hash, 32, hash_hex);
    return sign_hash(hash_hex, amz_date, date8, region, service, secret_access_key, sts, sts_cap, signature, err);
}

static redtls_status check_request(const redtls__sigv4_request *req, const redtls__sigv4_result *res, char *err)
{
    static const struct {
        const char *name;
        size_t offset;
    } required[] = {
        {"method", offsetof(redtls__sigv4_request, method)},
        {"host", offsetof(redtls__sigv4_request, host)},
        {"path", offsetof(redtls__sigv4_request, path)},
        {"access_key_id", offsetof(redtls__sigv4_request, access_key_id)},
        {"secret_access_key", offsetof(redtls__sigv4_request, secret_access_key)},
        {"payload_hash", offsetof(redtls__sigv4_request, payload_hash)},
    };
    if (!req || !res)
        return redtls__fail(err, REDTLS_E_INVALID, "sigv4: no request or no result");
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        const char *const *field = (const char *const *)(const void *)((const char *)req + required[i].offset);
        if (!*field || !**field)
            return redtls__fail(err, REDTLS_E_INVALID, "sigv4: %s is missing", required[i].name);
    }
    if (req->path[0] != '/')
        return redtls__fail(err, REDTLS_E_INVALID, "sigv4: path must start with '/'");
    if (strlen(req->access_key_id) > SIGV4_AKID_MAX || strchr(req->access_key_id, '/'))
        return redtls__fail(err, REDTLS_E_INVALID, "sigv4: access_key_id is longer than %d bytes or contains '/'",
                            SIGV4_AKID_MAX);
    if (req->expires_s < 1 || req->expires_s > REDTLS__SIGV4_EXPIRES_MAX)
        return redtls__fail(err, REDTLS_E_INVALID, "sigv4: expires_s must be 1 to %u seconds, not %u",
                            REDTLS__SIGV4_EXPIRES_MAX, req->expires_s);
    if (req->n_params > 0 && !req->params)
        return redtls__fail(err, REDTLS_E_INVALID, "sigv4: n_params is %zu but params is NULL", req->n_params);
    for (size_t i = 0; i < req->n_params; i++)
        if (!req->params[i].name || !req->params[i].value)
            return redtls__fail(err, REDTLS_E_INVALID, "sigv4: query parameter %zu has no name or no value", i);
    if (!res->query && res->query_cap > 0)
        return redtls__fail(err, REDTLS_E_INVALID, "sigv4: no query buffer");
    redtls_status st = check_name("region", req->region, err);
    return st == REDTLS_OK ? check_name("service", req->service, err) : st;
}

redtls_status redtls__sigv4_presign(const redtls__sigv4_request *req, redtls__sigv4_result *res, char *err)
{
    if (res) {
        res->signature[0] = '\0';
        res->query_needed = 0;
    }
    redtls_status st = check_request(req, res, err);
    if (st != REDTLS_OK)
        return st;
    char amz_date[17], date8[9];
    st = format_time(req->when, amz_date, date8, err);
    if (st != REDTLS_OK)
        return st;

    const int has_token = req->session_token && *req->session_token;
    const size_t n_amz = has_token ? 6 : 5;
    if (req->n_params > REDTLS__SIGV4_PARAMS_MAX - n_amz)
        return redtls__fail(err, REDTLS_E_INVALID, "sigv4: more than %zu query parameters",
                            REDTLS__SIGV4_PARAMS_MAX - n_amz);
    char credential[SIGV4_AKID_MAX + 1 + SIGV4_SCOPE_MAX];
    char expires[16];
    snprintf(credential, sizeof credential, "%s/%s/%s/%s/%s", req->access_key_id, date8, req->region,
             req->service, SIGV4_TERMINATOR);
    snprintf(expires, sizeof expires, "%u", req->expires_s);

    redtls__sigv4_param all[REDTLS__SIGV4_PARAMS_MAX];
    size_t n = 0;
    for (size_t i = 0; i < req->n_params; i++)
        all[n++] = req->params[i];
    all[n++] = (redtls__sigv4_param){"X-Amz-Algorithm", SIGV4_ALGORITHM};
    all[n++] = (redtls__sigv4_param){"X-Amz-Credential", credential};
    all[n++] = (redtls__sigv4_param){"X-Amz-Date", amz_date};
    all[n++] = (redtls__sigv4_param){"X-Amz-Expires", expires};
    if (has_token)
        all[n++] = (redtls__sigv4_param){"X-Amz-Security-Token", req->session_token};
    all[n++] = (redtls__sigv4_param){"X-Amz-SignedHeaders", "host"};
    /* Insertion sort: a handful of parameters. */
    for (size_t i = 1; i < n; i++) {
        redtls__sigv4_param p = all[i];
        size_t j = i;
        for (; j > 0 && param_cmp(&all[j - 1], &p) > 0; j--)
            all[j] = all[j - 1];
        all[j] = p;
    }

    sink q = {res->query, res->query_cap, 0, NULL, 0};
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            put(&q, "&", 1);
        put_encoded(&q, all[i].name, 0);
        put(&q, "=", 1);
        put_encoded(&q, all[i].value, 0);
    }
    const size_t query_len = q.len;
    res->query_needed = query_len + strlen(SIGV4_SIGNATURE_PARAM) + REDTLS__SIGV4_HEX_LEN + 1;
    if (res->query_needed > res->query_cap) {
        if (res->query_cap > 0) {
            OPENSSL_cleanse(res->query, res->query_cap);
            res->query[0] = '\0';
        }
        return redtls__fail(err, REDTLS_E_LIMIT, "sigv4: the query string needs %zu bytes, the buffer has %zu",
                            res->query_needed, res->query_cap);
    }
    res->query[query_len] = '\0';

    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md) {
        OPENSSL_cleanse(res->query, query_len);
        res->query[0] = '\0';
        return redtls__fail(err, REDTLS_E_NOMEM, "sigv4: out of memory for a digest context");
    }
    unsigned char hash[32];
    sink c = {res->canonical_request, res->canonical_request ? res->canonical_request_cap : 0, 0, md, 0};
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        c.md_failed = 1;
    put_str(&c, req->method);
    put(&c, "\n", 1);
    put_encoded(&c, req->path, 1);
    put(&c, "\n", 1);
    put(&c, res->query, query_len);
    put(&c, "\nhost:", 6);
    put_str(&c, req->host);
    put(&c, "\n\nhost\n", 7);
    put_str(&c, req->payload_hash);
    if (!c.md_failed && EVP_DigestFinal_ex(md, hash, NULL) != 1)
        c.md_failed = 1;
    EVP_MD_CTX_free(md);
    if (c.md_failed)
        st = redtls__fail(err, REDTLS_E_NOMEM, "sigv4: SHA-256 failed in OpenSSL");
    else if (sink_close(&c) != 0)
        st = redtls__fail(err, REDTLS_E_LIMIT, "sigv4: the canonical request needs %zu bytes, the buffer has %zu",
                          c.len + 1, c.cap);
    if (st == REDTLS_OK) {
        char hash_hex[REDTLS__SIGV4_HEX_LEN + 1];
        to_hex(hash, 32, hash_hex);
        st = sign_hash(hash_hex, amz_date, date8, req->region, req->service, req->secret_access_key,
                       res->string_to_sign, res->string_to_sign_cap, res->signature, err);
    }
    if (st != REDTLS_OK) {
        OPENSSL_cleanse(res->query, query_len);
        res->query[0] = '\0';
        res->signature[0] = '\0';
        return st;
    }
    char *tail = res->query + query_len;
    memcpy(tail, SIGV4_SIGNATURE_PARAM, sizeof SIGV4_SIGNATURE_PARAM);
    memcpy(tail + sizeof SIGV4_SIGNATURE_PARAM - 1, res->signature, REDTLS__SIGV4_HEX_LEN + 1);
    return REDTLS_OK;
}

static int only_chars(const char *s, int (*ok)(unsigned char))
{
    for (; *s; s++)
        if (!ok((unsigned char)*s))
            return 0;
    return 1;
}

static int is_lower_digit_hyphen(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

static int is_host_char(unsigned char c)
{
    return is_lower_digit_hyphen(c) || c == '.';
}

static int is_alnum(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int is_upper(unsigned char c)
{
    return c >= 'A' && c <= 'Z';
}

static int has_any(const char *s, int (*pred)(unsigned char))
{
    for (; *s; s++)
        if (pred((unsigned char)*s))
            return 1;
    return 0;
}

redtls_status redtls__iam_check_fields(const char *cache_name, const char *region, const char *access_key_id,
                                       char *err)
{
    if (cache_name && has_any(cache_name, is_upper))
        return redtls__fail(err, REDTLS_E_INVALID,
                            "IAM auth: cache_name has upper-case letters; AWS wants the cache name in lower case");
    if (cache_name && (!*cache_name || !only_chars(cache_name, is_host_char) || strlen(cache_name) > IAM_CACHE_NAME_MAX))
        return redtls__fail(err, REDTLS_E_INVALID,
                            "IAM auth: cache_name must be a host name: 1 to %d of a-z, 0-9, '-' and '.'",
                            IAM_CACHE_NAME_MAX);
    if (region && (!*region || !only_chars(region, is_lower_digit_hyphen)))
        return redtls__fail(err, REDTLS_E_INVALID,
                            "IAM auth: region must be lower-case letters, digits and '-' (like us-east-1)");
    if (access_key_id && (!*access_key_id || !only_chars(access_key_id, is_alnum)))
        return redtls__fail(err, REDTLS_E_INVALID, "IAM auth: access_key_id must be letters and digits only");
    return REDTLS_OK;
}

static redtls_status check_iam(const redtls__iam_request *req, char *err)
{
    if (!req)
        return redtls__fail(err, REDTLS_E_INVALID, "IAM auth: no request");
    if (!req->cache_name || !*req->cache_name)
        return redtls__fail(err, REDTLS_E_INVALID, "IAM auth: cache_name is missing");
    if (!req->user_id || !*req->user_id)
        return redtls__fail(err, REDTLS_E_INVALID, "IAM auth: user_id is missing");
    if (!req->region || !*req->region)
        return redtls__fail(err, REDTLS_E_INVALID, "IAM auth: region is missing");
    if (req->service && (!*req->service || !only_chars(req->service, is_lower_digit_hyphen)))
        return redtls__fail(err, REDTLS_E_INVALID,
                            "IAM auth: service must be lower-case letters, digits and '-' (elasticache, memorydb)");
    if (!req->access_key_id || !*req->access_key_id)
        return redtls__fail(err, REDTLS_E_INVALID, "IAM auth: access_key_id is missing");
    redtls_status st = redtls__iam_check_fields(req->cache_name, req->region, req->access_key_id, err);
    if (st != REDTLS_OK)
        return st;
    if (!req->secret_access_key || !*req->secret_access_key)
        return redtls__fail(err, REDTLS_E_INVALID, "IAM auth: secret_access_key is missing");
    if (req->expires_s > REDTLS__SIGV4_EXPIRES_MAX)
        return redtls__fail(err, REDTLS_E_INVALID, "IAM auth: expires_s must be at most %u seconds, not %u",
                            REDTLS__SIGV4_EXPIRES_MAX, req->expires_s);
    return REDTLS_OK;
}

redtls_status redtls__iam_token(const redtls__iam_request *req, char *out, size_t cap, char *err)
{
    if (out && cap > 0)
        out[0] = '\0';
    redtls_status st = check_iam(req, err);
    if (st != REDTLS_OK)
        return st;
    if (!out && cap > 0)
        return redtls__fail(err, REDTLS_E_INVALID, "IAM auth: no output buffer");

    redtls__sigv4_param params[3];
    size_t n = 0;
    params[n++] = (redtls__sigv4_param){"Action", "connect"};
    params[n++] = (redtls__sigv4_param){"User", req->user_id};
    if (req->serverless)
        params[n++] = (redtls__sigv4_param){"ResourceType", "ServerlessCache"};
    const redtls__sigv4_request sreq = {
        .method = "GET",
        .host = req->cache_name,
        .path = "/",
        .params = params,
        .n_params = n,
        .region = req->region,
        .service = req->service ? req->service : "elasticache",
        .access_key_id = req->access_key_id,
        .secret_access_key = req->secret_access_key,
        .session_token = req->session_token,
        .when = req->when,
        .expires_s = req->expires_s ? req->expires_s : IAM_DEFAULT_EXPIRES,
        .payload_hash = SIGV4_EMPTY_SHA256,
    };

    /* The token is "<cache_name>/?" and the presigned query string. A
     * first call with no room only measures the query (it ends in
     * REDTLS_E_LIMIT before any hashing, or in an error). */
    const size_t prefix = strlen(req->cache_name) + 2;
    redtls__sigv4_result res;
    memset(&res, 0, sizeof res);
    st = redtls__sigv4_presign(&sreq, &res, err);
    if (st != REDTLS_E_LIMIT)
        return st;
    if (!out || cap < prefix + res.query_needed)
        return redtls__fail(err, REDTLS_E_LIMIT, "IAM auth: the token needs %zu bytes, the buffer has %zu",
                            prefix + res.query_needed, cap);
    res.query = out + prefix;
    res.query_cap = cap - prefix;
    st = redtls__sigv4_presign(&sreq, &res, err);
    if (st != REDTLS_OK) {
        out[0] = '\0';
        return st;
    }
    memcpy(out, req->cache_name, prefix - 2);
    memcpy(out + prefix - 2, "/?", 2);
    return REDTLS_OK;
}

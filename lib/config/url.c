/* URL form of the configuration:
 *   rediss://[[USER]:TOKEN@]HOST[:PORT][/DB][?PARAMS]
 *   redis://...      (plain TCP)
 *   unix://[[USER]:TOKEN@]/PATH[?PARAMS]
 * Errors name the part that is wrong and never repeat the userinfo. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "config.h"

/* Percent-decodes src[0..len) into a new NUL-terminated string; NULL on a
 * bad escape, an encoded NUL, or no memory (*nomem set). */
static char *pct_decode(const char *src, size_t len, int *nomem)
{
    char *out = malloc(len + 1);
    size_t o = 0;
    *nomem = out == NULL;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (src[i] != '%') {
            out[o++] = src[i];
            continue;
        }
        int v = 0;
        for (int k = 1; k <= 2; k++) {
            char c = 0;
            if (i + (size_t)k < len)
                c = src[i + (size_t)k];
            int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                                        : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                                                                 : -1;
            if (d < 0) {
                OPENSSL_cleanse(out, len + 1);
                free(out);
                return NULL;
            }
            v = v * 16 + d;
        }
        if (v == 0) {
            OPENSSL_cleanse(out, len + 1);
            free(out);
            return NULL;
        }
        out[o++] = (char)v;
        i += 2;
    }
    out[o] = '\0';
    return out;
}

static void free_secret_str(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* A bounded, NUL-terminated copy of part of the URL for an error message.
 * Only parts that cannot hold the token are ever shown. */
typedef struct shown {
    char text[128];
} shown;

static shown show(const char *part, size_t len)
{
    shown s;
    size_t n = len < sizeof s.text - 4 ? len : sizeof s.text - 4;
    memcpy(s.text, part, n);
    /* cppcheck-suppress knownConditionTrueFalse ; callers pass parts longer than the buffer too */
    memcpy(s.text + n, len > n ? "..." : "", len > n ? 4 : 1);
    return s;
}

static redtls_status apply_userinfo(redtls_config *tmp, const char *ui, size_t len)
{
    const char *colon = memchr(ui, ':', len);
    size_t ulen = colon ? (size_t)(colon - ui) : len;
    int nomem = 0;
    redtls_status st = REDTLS_OK;
    if (ulen > 0) {
        char *user = pct_decode(ui, ulen, &nomem);
        if (!user)
            return nomem ? REDTLS_E_NOMEM
                         : redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL user name has an invalid percent escape");
        st = redtls_config_set_user(tmp, user);
        free(user);
        if (st)
            return st == REDTLS_E_NOMEM ? st
                                        : redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL user name is not valid");
    }
    if (colon) {
        size_t tlen = len - ulen - 1;
        if (tlen == 0)
            return redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL token after ':' is empty");
        char *token = pct_decode(colon + 1, tlen, &nomem);
        if (!token)
            return nomem ? REDTLS_E_NOMEM
                         : redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL token has an invalid percent escape");
        st = redtls_config_set_token(tmp, token);
        free_secret_str(token);
    }
    return st;
}

static redtls_status apply_param(redtls_config *tmp, const char *key, size_t klen, const char *val)
{
#define KEY_IS(k) (klen == sizeof(k) - 1 && memcmp(key, k, klen) == 0)
    unsigned long n;
    size_t vlen = strlen(val);
    if (KEY_IS("cacert"))
        return redtls_config_set_ca_file(tmp, val);
    if (KEY_IS("capath"))
        return redtls_config_set_ca_dir(tmp, val);
    if (KEY_IS("sni"))
        return redtls_config_set_verify_name(tmp, val);
    if (KEY_IS("name"))
        return redtls_config_set_client_name(tmp, val);
    if (KEY_IS("tls_min")) {
        if (strcmp(val, "1.2") == 0)
            return redtls_config_set_tls_min_version(tmp, REDTLS_TLS_1_2);
        if (strcmp(val, "1.3") == 0)
            return redtls_config_set_tls_min_version(tmp, REDTLS_TLS_1_3);
        return redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL parameter tls_min='%s' must be 1.2 or 1.3", show(val, vlen).text);
    }
    if (KEY_IS("protocol")) {
        if (strcmp(val, "2") != 0 && strcmp(val, "3") != 0)
            return redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL parameter protocol='%s' must be 2 or 3",
                                show(val, vlen).text);
        return redtls_config_set_protocol(tmp, val[0] - '0');
    }
    if (KEY_IS("db")) {
        if (redtls__parse_decimal(val, vlen, 1000000, &n))
            return redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL parameter db='%s' is not a database number", show(val, vlen).text);
        return redtls_config_set_db(tmp, (int)n);
    }
    int which = KEY_IS("connect_timeout") ? 1 : KEY_IS("handshake_timeout") ? 2 : KEY_IS("timeout") ? 3 : 0;
    if (which) {
        if (redtls__parse_decimal(val, vlen, 86400000UL, &n))
            return redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL timeout value '%s' is not a number of milliseconds", show(val, vlen).text);
        if (which == 1)
            return redtls_config_set_connect_timeout_ms(tmp, (unsigned)n);
        if (which == 2)
            return redtls_config_set_handshake_timeout_ms(tmp, (unsigned)n);
        return redtls_config_set_command_timeout_ms(tmp, (unsigned)n);
    }
    return redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL query parameter '%s' is unknown", show(key, klen).text);
#undef KEY_IS
}

/* The IAM parameters are taken together once the query is read (the user
 * id is the URL's user). */
typedef struct url_iam {
    char *cache, *region, *service;
    int serverless; /* -1: not given */
} url_iam;

static int take_iam_param(url_iam *iam, const char *key, size_t klen, char *val, int *taken)
{
#define KEY_IS(k) (klen == sizeof(k) - 1 && memcmp(key, k, klen) == 0)
    char **slot = KEY_IS("iam") ? &iam->cache : KEY_IS("region") ? &iam->region : KEY_IS("iam_service") ? &iam->service : NULL;
    *taken = 1;
    if (slot) {
        free(*slot);
        *slot = val;
        return 0;
    }
    if (KEY_IS("serverless")) {
        int ok = strcmp(val, "1") == 0 || strcmp(val, "0") == 0 || strcmp(val, "true") == 0 || strcmp(val, "false") == 0;
        iam->serverless = val[0] == '1' || val[0] == 't';
        free(val);
        return ok ? 0 : -1;
    }
    *taken = 0;
    return 0;
#undef KEY_IS
}

static redtls_status apply_iam(redtls_config *tmp, url_iam *iam)
{
    redtls_status st = REDTLS_OK;
    if (!iam->cache) {
        if (iam->region || iam->service || iam->serverless >= 0)
            st = redtls__fail(tmp->errmsg, REDTLS_E_URL,
                              "URL parameters region, serverless and iam_service only go with iam=CACHE-NAME");
    } else if (!tmp->user) {
        st = redtls__fail(tmp->errmsg, REDTLS_E_URL, "an IAM URL needs the IAM user id as its user (rediss://USER-ID@host?iam=...)");
    } else if (!iam->region) {
        st = redtls__fail(tmp->errmsg, REDTLS_E_URL, "an IAM URL needs region=REGION");
    } else if ((st = redtls_config_set_iam(tmp, iam->cache, tmp->user, iam->region,
                                           iam->serverless > 0 ? REDTLS_IAM_SERVERLESS : 0)) == REDTLS_OK &&
               (st = redtls_config_set_iam_service(tmp, iam->service)) == REDTLS_OK) {
        /* A URL never carries AWS secrets: they come from the environment
         * unless the application chose a source already. */
        if (tmp->iam.creds == REDTLS__AWS_CREDS_NONE)
            st = redtls_config_set_aws_credentials_from_env(tmp);
    } else if (st == REDTLS_E_INVALID) {
        char cause[REDTLS__ERRMSG_MAX];
        memcpy(cause, tmp->errmsg, sizeof cause);
        st = redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL IAM parameters: %.400s", cause);
    }
    free(iam->cache);
    free(iam->region);
    free(iam->service);
    return st;
}

static redtls_status apply_query_item(redtls_config *tmp, const char **qp, char **cert, char **key, url_iam *iam);

static redtls_status apply_query(redtls_config *tmp, const char *q, char **cert, char **key)
{
    url_iam iam = {NULL, NULL, NULL, -1};
    redtls_status st = REDTLS_OK;
    while (*q && st == REDTLS_OK)
        st = apply_query_item(tmp, &q, cert, key, &iam);
    if (st != REDTLS_OK) {
        free(iam.cache);
        free(iam.region);
        free(iam.service);
        return st;
    }
    if ((st = apply_iam(tmp, &iam)) != REDTLS_OK)
        return st;
    if ((*cert == NULL) != (*key == NULL))
        return redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL parameters cert and key must be given together");
    if (*cert)
        return redtls_config_set_client_cert_file(tmp, *cert, *key);
    return REDTLS_OK;
}

/* One key=value item at *q; moves *q past it. */
static redtls_status apply_query_item(redtls_config *tmp, const char **qp, char **cert, char **key, url_iam *iam)
{
    const char *q = *qp;
    {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        if (len > 0) {
            if (!eq || eq == q)
                return redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL query item '%s' is not key=value", show(q, len).text);
            size_t klen = (size_t)(eq - q);
            int nomem = 0;
            char *val = pct_decode(eq + 1, len - klen - 1, &nomem);
            if (!val)
                return nomem ? REDTLS_E_NOMEM
                             : redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL query parameter '%s' has an invalid percent escape", show(q, klen).text);
            redtls_status st;
            int taken = 0;
            if (take_iam_param(iam, q, klen, val, &taken) != 0)
                return redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL parameter serverless must be 1, 0, true or false");
            if (taken) {
                st = REDTLS_OK;
            } else if (klen == 4 && memcmp(q, "cert", 4) == 0) {
                free(*cert);
                *cert = val;
                st = REDTLS_OK;
            } else if (klen == 3 && memcmp(q, "key", 3) == 0) {
                free(*key);
                *key = val;
                st = REDTLS_OK;
            } else {
                st = apply_param(tmp, q, klen, val);
                free(val);
                /* A value a setter refuses is a bad URL part. */
                if (st == REDTLS_E_INVALID) {
                    char cause[REDTLS__ERRMSG_MAX];
                    memcpy(cause, tmp->errmsg, sizeof cause);
                    st = redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL parameter '%s': %.300s", show(q, klen).text,
                                      cause);
                }
            }
            if (st)
                return st;
        }
        *qp = q + len + (amp ? 1 : 0);
    }
    return REDTLS_OK;
}

static redtls_status apply_hostport(redtls_config *tmp, const char *hp, size_t len)
{
    const char *host = hp, *port = NULL;
    size_t hlen = len, plen = 0;
    if (len > 0 && hp[0] == '[') {
        const char *close = memchr(hp, ']', len);
        if (!close)
            return redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL host '%s' has no closing ']'", show(hp, len).text);
        host = hp + 1;
        hlen = (size_t)(close - hp) - 1;
        if ((size_t)(close - hp) + 1 < len) {
            if (close[1] != ':')
                return redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL host '%s' has junk after ']'", show(hp, len).text);
            port = close + 2;
            plen = len - (size_t)(port - hp);
        }
    } else {
        const char *colon = memchr(hp, ':', len);
        if (colon) {
            hlen = (size_t)(colon - hp);
            port = colon + 1;
            plen = len - hlen - 1;
        }
    }
    if (hlen == 0)
        return redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL host is empty");
    unsigned long p = 6379;
    if (port && (redtls__parse_decimal(port, plen, 65535, &p) || p == 0))
        /* Not echoed: in "user:token" with the '@host' forgotten, this
         * "port" is the token. */
        return redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL port is not a number from 1 to 65535");
    char *h = malloc(hlen + 1);
    if (!h)
        return REDTLS_E_NOMEM;
    memcpy(h, host, hlen);
    h[hlen] = '\0';
    redtls_status st = redtls_config_set_host(tmp, h, (uint16_t)p);
    free(h);
    return st;
}

static redtls_status parse_into(redtls_config *tmp, const char *url, char **cert, char **key)
{
    const char *sep = strstr(url, "://");
    if (!sep)
        return redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL must start with redis://, rediss:// or unix://");
    size_t slen = (size_t)(sep - url);
    int is_unix = 0;
    if (slen == 6 && strncasecmp(url, "rediss", 6) == 0)
        tmp->use_tls = 1;
    else if (slen == 5 && strncasecmp(url, "redis", 5) == 0)
        tmp->use_tls = 0;
    else if (slen == 4 && strncasecmp(url, "unix", 4) == 0)
        is_unix = 1;
    else
        return redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL scheme '%s' is not redis, rediss or unix", show(url, slen).text);

    const char *rest = sep + 3;
    /* A '/', '?' or '#' inside an unencoded token would cut the URL in the
     * wrong place and put part of the token into the host, path or query;
     * refuse before any part could be echoed. */
    const char *first_reserved = rest + strcspn(rest, "/?#");
    if (strchr(first_reserved, '@'))
        return redtls__fail(tmp->errmsg, REDTLS_E_URL,
                            "URL has an '@' after a '/', '?' or '#': percent-encode '/', '?', '#' inside the "
                            "token (%%2F, %%3F, %%23) and '@' inside paths or parameters (%%40)");
    const char *query = strchr(rest, '?');
    size_t restlen = query ? (size_t)(query - rest) : strlen(rest);
    if (memchr(rest, '#', restlen))
        return redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL must not contain a fragment ('#')");

    /* The userinfo ends at the last '@' before the path, so a token may
     * contain '@' only percent-encoded; the path of unix:// URLs starts
     * at the first '/'. */
    const char *auth_end = memchr(rest, '/', restlen);
    if (!auth_end)
        auth_end = rest + restlen;
    const char *at = NULL;
    for (const char *p = rest; p < auth_end; p++)
        if (*p == '@')
            at = p;
    redtls_status st;
    const char *hp = rest;
    if (at) {
        if ((st = apply_userinfo(tmp, rest, (size_t)(at - rest))) != REDTLS_OK)
            return st;
        hp = at + 1;
    }
    if (is_unix) {
        if (hp != auth_end)
            return redtls__fail(tmp->errmsg, REDTLS_E_URL, "unix:// URL must be unix://[userinfo@]/absolute/path");
        size_t plen = (size_t)(rest + restlen - auth_end);
        if (plen < 2)
            return redtls__fail(tmp->errmsg, REDTLS_E_URL, "unix:// URL has no socket path");
        int nomem = 0;
        char *path = pct_decode(auth_end, plen, &nomem);
        if (!path)
            return nomem ? REDTLS_E_NOMEM : redtls__fail(tmp->errmsg, REDTLS_E_URL, "unix socket path has an invalid percent escape");
        st = redtls_config_set_unix_path(tmp, path);
        free(path);
        if (st)
            return st;
        tmp->use_tls = 0;
    } else {
        if ((st = apply_hostport(tmp, hp, (size_t)(auth_end - hp))) != REDTLS_OK)
            return st;
        size_t plen = (size_t)(rest + restlen - auth_end);
        if (plen > 1) {
            unsigned long db;
            if (redtls__parse_decimal(auth_end + 1, plen - 1, 1000000, &db))
                return redtls__fail(tmp->errmsg, REDTLS_E_URL, "URL path '%s' is not a database number", show(auth_end, plen).text);
            tmp->db = (int)db;
        }
    }
    if (query)
        return apply_query(tmp, query + 1, cert, key);
    return REDTLS_OK;
}

redtls_status redtls_config_set_url(redtls_config *cfg, const char *url)
{
    if (!cfg)
        return REDTLS_E_INVALID;
    cfg->errmsg[0] = '\0';
    if (!url)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "URL is NULL");
    redtls_config tmp;
    char tmp_err[REDTLS__ERRMSG_MAX];
    if (redtls__config_copy(&tmp, cfg, tmp_err) != REDTLS_OK)
        return redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
    char *cert = NULL, *key = NULL;
    redtls_status st = parse_into(&tmp, url, &cert, &key);
    free(cert);
    free(key);
    if (st != REDTLS_OK) {
        if (st == REDTLS_E_NOMEM && !tmp.errmsg[0])
            redtls__fail(tmp.errmsg, st, "out of memory");
        memcpy(cfg->errmsg, tmp_err, sizeof tmp_err);
        redtls__config_release(&tmp);
        return st;
    }
    char *own = cfg->errmsg;
    redtls__config_release(cfg);
    *cfg = tmp;
    cfg->errmsg = own;
    memcpy(own, tmp_err, sizeof tmp_err);
    return REDTLS_OK;
}

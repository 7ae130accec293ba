#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include <hiredis/hiredis.h>

#include "config.h"

/* RESP3 replies (pushes, maps, doubles...) are parsed by hiredis 1.0 on. */
#if defined(HIREDIS_MAJOR) && HIREDIS_MAJOR >= 1
#define REDTLS__HIREDIS_RESP3 1
#else
#define REDTLS__HIREDIS_RESP3 0
#endif
#define REDTLS__HIREDIS_VERSION HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH

/* Certificates and keys are small; anything bigger is a wrong path. */
#define REDTLS__MAX_PEM_FILE (1024 * 1024)

redtls_status redtls__config_init(redtls_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->port = 6379;
    cfg->use_tls = 1;
    cfg->tls.min_version = 12;
    cfg->connect_timeout_ms = REDTLS_DEFAULT_CONNECT_TIMEOUT_MS;
    cfg->handshake_timeout_ms = REDTLS_DEFAULT_HANDSHAKE_TIMEOUT_MS;
    cfg->command_timeout_ms = REDTLS_DEFAULT_COMMAND_TIMEOUT_MS;
    cfg->limits.max_elements = REDTLS_DEFAULT_MAX_ARRAY_ELEMENTS;
    cfg->limits.max_bulk = REDTLS_DEFAULT_MAX_BULK_LEN;
    cfg->limits.max_buffer = REDTLS_DEFAULT_MAX_BUFFER;
    cfg->reconnect = 1;
    cfg->backoff_base_ms = REDTLS_DEFAULT_BACKOFF_BASE_MS;
    cfg->backoff_cap_ms = REDTLS_DEFAULT_BACKOFF_CAP_MS;
    cfg->tcp_user_timeout_ms = REDTLS_DEFAULT_TCP_USER_TIMEOUT_MS;
    cfg->tls.resumption = 1;
    cfg->protocol = 2;
    redtls__iam_cfg_init(&cfg->iam);
    return redtls__str_set(&cfg->host, "127.0.0.1");
}

static void aliases_clear(redtls__host_aliases *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->v[i].from);
        free(a->v[i].to);
    }
    free(a->v);
    a->v = NULL;
    a->n = 0;
}

static redtls_status aliases_copy(redtls__host_aliases *dst, const redtls__host_aliases *src)
{
    dst->v = NULL;
    dst->n = 0;
    if (src->n == 0)
        return REDTLS_OK;
    dst->v = calloc(src->n, sizeof *dst->v);
    if (!dst->v)
        return REDTLS_E_NOMEM;
    for (size_t i = 0; i < src->n; i++) {
        dst->n = i + 1;
        dst->v[i].port = src->v[i].port;
        if (redtls__str_set(&dst->v[i].from, src->v[i].from) || redtls__str_set(&dst->v[i].to, src->v[i].to))
            return REDTLS_E_NOMEM;
    }
    return REDTLS_OK;
}

const char *redtls__alias_find(const redtls__host_aliases *a, const char *host, uint16_t port)
{
    const char *any = NULL;
    for (size_t i = 0; i < a->n; i++) {
        if (strcasecmp(a->v[i].from, host) != 0)
            continue;
        if (a->v[i].port == port)
            return a->v[i].to;
        if (a->v[i].port == 0 && !any)
            any = a->v[i].to;
    }
    return any;
}

const char *redtls__config_connect_addr(const redtls_config *cfg, const char *host, uint16_t port)
{
    const char *to = redtls__alias_find(&cfg->resolve, host, port);
    return to ? to : host;
}

const char *redtls__config_verify_name(const redtls_config *cfg, const char *host)
{
    if (cfg->verify_name)
        return cfg->verify_name;
    const char *to = redtls__alias_find(&cfg->verify_names, host, 0);
    return to ? to : host;
}

void redtls__config_release(redtls_config *cfg)
{
    aliases_clear(&cfg->resolve);
    aliases_clear(&cfg->verify_names);
    redtls__tls_ctx_free(cfg->tls_cache);
    free(cfg->host);
    free(cfg->unix_path);
    free(cfg->verify_name);
    free(cfg->tls.ca_file);
    free(cfg->tls.ca_dir);
    free(cfg->tls.ca_pem);
    free(cfg->tls.cert_pem);
    redtls__secret_clear(&cfg->tls.key_pem);
    free(cfg->tls.tls12_ciphers);
    free(cfg->tls.tls13_suites);
    free(cfg->user);
    redtls__secret_clear(&cfg->token);
    redtls__secret_clear(&cfg->token_alt);
    free(cfg->client_name);
    redtls__iam_cfg_release(&cfg->iam);
    memset(cfg, 0, sizeof *cfg);
}

static redtls_status dup_bytes(char **dst, const char *src, size_t len)
{
    *dst = NULL;
    if (!src)
        return REDTLS_OK;
    *dst = malloc(len + 1);
    if (!*dst)
        return REDTLS_E_NOMEM;
    memcpy(*dst, src, len);
    (*dst)[len] = '\0';
    return REDTLS_OK;
}

redtls_status redtls__config_copy(redtls_config *dst, const redtls_config *src, char *errbuf)
{
    *dst = *src;
    /* Clear every owned pointer first so a partial copy can be released. */
    dst->host = dst->unix_path = dst->verify_name = dst->user = dst->client_name = NULL;
    dst->tls.ca_file = dst->tls.ca_dir = dst->tls.ca_pem = dst->tls.cert_pem = NULL;
    dst->tls.tls12_ciphers = dst->tls.tls13_suites = NULL;
    dst->tls.key_pem.data = NULL;
    dst->tls.key_pem.len = 0;
    dst->token.data = dst->token_alt.data = NULL;
    dst->token.len = dst->token_alt.len = 0;
    dst->errmsg = errbuf;
    errbuf[0] = '\0';
    dst->tls_cache = NULL;
    dst->resolve.v = dst->verify_names.v = NULL;
    dst->resolve.n = dst->verify_names.n = 0;
    if (redtls__iam_cfg_copy(&dst->iam, &src->iam) != REDTLS_OK) {
        redtls__iam_cfg_init(&dst->iam);
        redtls__config_release(dst);
        return REDTLS_E_NOMEM;
    }
    if (aliases_copy(&dst->resolve, &src->resolve) || aliases_copy(&dst->verify_names, &src->verify_names) ||
        redtls__str_set(&dst->host, src->host) || redtls__str_set(&dst->unix_path, src->unix_path) ||
        redtls__str_set(&dst->verify_name, src->verify_name) || redtls__str_set(&dst->user, src->user) ||
        redtls__str_set(&dst->client_name, src->client_name) ||
        redtls__str_set(&dst->tls.ca_file, src->tls.ca_file) || redtls__str_set(&dst->tls.ca_dir, src->tls.ca_dir) ||
        redtls__str_set(&dst->tls.tls12_ciphers, src->tls.tls12_ciphers) ||
        redtls__str_set(&dst->tls.tls13_suites, src->tls.tls13_suites) ||
        dup_bytes(&dst->tls.ca_pem, src->tls.ca_pem, src->tls.ca_pem_len) ||
        dup_bytes(&dst->tls.cert_pem, src->tls.cert_pem, src->tls.cert_pem_len) ||
        redtls__secret_copy(&dst->tls.key_pem, &src->tls.key_pem) || redtls__secret_copy(&dst->token, &src->token) ||
        redtls__secret_copy(&dst->token_alt, &src->token_alt)) {
        redtls__config_release(dst);
        return REDTLS_E_NOMEM;
    }
    return REDTLS_OK;
}

redtls_status redtls__read_file(const char *path, char **data, size_t *len, char *err)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return redtls__fail(err, REDTLS_E_CONFIG, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > (off_t)REDTLS__MAX_PEM_FILE) {
        fclose(f);
        return redtls__fail(err, REDTLS_E_CONFIG, "'%s' is not a regular file of at most %d bytes", path,
                            REDTLS__MAX_PEM_FILE);
    }
    size_t n = (size_t)sb.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return redtls__fail(err, REDTLS_E_NOMEM, "out of memory");
    }
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        OPENSSL_cleanse(buf, n);
        free(buf);
        return redtls__fail(err, REDTLS_E_CONFIG, "cannot read '%s'", path);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return REDTLS_OK;
}

/* Public API */

redtls_status redtls_config_new(redtls_config **out)
{
    if (!out)
        return REDTLS_E_INVALID;
    *out = NULL;
    redtls_config *cfg = malloc(sizeof *cfg + REDTLS__ERRMSG_MAX);
    if (!cfg)
        return REDTLS_E_NOMEM;
    if (redtls__config_init(cfg) != REDTLS_OK) {
        free(cfg);
        return REDTLS_E_NOMEM;
    }
    cfg->errmsg = (char *)(cfg + 1);
    cfg->errmsg[0] = '\0';
    *out = cfg;
    return REDTLS_OK;
}

void redtls_config_free(redtls_config *cfg)
{
    if (!cfg)
        return;
    redtls__config_release(cfg);
    free(cfg);
}

const char *redtls_config_errmsg(const redtls_config *cfg)
{
    return cfg ? cfg->errmsg : "";
}

/* Every setter starts here: a changed setting needs a new TLS context (the
 * connections already made keep theirs). */
#define CHECK_CFG(cfg)                                                                                             \
    do {                                                                                                           \
        if (!(cfg))                                                                                                \
            return REDTLS_E_INVALID;                                                                               \
        (cfg)->errmsg[0] = '\0';                                                                                   \
        redtls__tls_ctx_free((cfg)->tls_cache);                                                                    \
        (cfg)->tls_cache = NULL;                                                                                   \
    } while (0)

redtls_status redtls__config_tls_ctx(redtls_config *cfg, redtls__tls_ctx **out)
{
    if (!cfg->tls_cache) {
        redtls_status st = redtls__tls_ctx_new(&cfg->tls, &cfg->tls_cache, cfg->errmsg);
        if (st != REDTLS_OK) {
            *out = NULL;
            return st;
        }
    }
    *out = redtls__tls_ctx_ref(cfg->tls_cache);
    return REDTLS_OK;
}

static redtls_status nomem(redtls_config *cfg)
{
    return redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
}

/* Copies host without the brackets of "[::1]" into a new string. */
static char *unbracket(const char *host)
{
    size_t n = strlen(host);
    if (host[0] == '[' && n > 2 && host[n - 1] == ']')
        return strndup(host + 1, n - 2);
    return strdup(host);
}

redtls_status redtls_config_set_host(redtls_config *cfg, const char *host, uint16_t port)
{
    CHECK_CFG(cfg);
    if (!host || !host[0] || port == 0)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "host must be non-empty and port non-zero");
    /* Accept "[::1]" as well as "::1". */
    char *h = unbracket(host);
    if (!h)
        return nomem(cfg);
    free(cfg->host);
    cfg->host = h;
    cfg->port = port;
    free(cfg->unix_path);
    cfg->unix_path = NULL;
    return REDTLS_OK;
}

redtls_status redtls_config_set_unix_path(redtls_config *cfg, const char *path)
{
    CHECK_CFG(cfg);
    if (!path || !path[0])
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "unix socket path must be non-empty");
    if (redtls__str_set(&cfg->unix_path, path))
        return nomem(cfg);
    /* One address at a time: a host left behind could only ever be used
     * by mistake (the port stays; redtls_config_set_host sets both). */
    free(cfg->host);
    cfg->host = NULL;
    return REDTLS_OK;
}

redtls_status redtls_config_set_tls(redtls_config *cfg, int enabled)
{
    CHECK_CFG(cfg);
    cfg->use_tls = enabled != 0;
    return REDTLS_OK;
}

static redtls_status set_path(redtls_config *cfg, char **dst, const char *path, int want_dir, const char *what)
{
    struct stat sb;
    if (!path || !path[0])
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "%s path must be non-empty", what);
    if (stat(path, &sb) != 0)
        return redtls__fail(cfg->errmsg, REDTLS_E_CONFIG, "%s '%s': %s", what, path, strerror(errno));
    if (want_dir && !S_ISDIR(sb.st_mode))
        return redtls__fail(cfg->errmsg, REDTLS_E_CONFIG, "%s '%s' is not a directory", what, path);
    if (!want_dir && S_ISDIR(sb.st_mode))
        return redtls__fail(cfg->errmsg, REDTLS_E_CONFIG, "%s '%s' is a directory", what, path);
    if (redtls__str_set(dst, path))
        return nomem(cfg);
    return REDTLS_OK;
}

redtls_status redtls_config_set_ca_file(redtls_config *cfg, const char *path)
{
    CHECK_CFG(cfg);
    char *pem;
    size_t len;
    if (!path || !path[0])
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "CA file path must be non-empty");
    redtls_status st = redtls__read_file(path, &pem, &len, cfg->errmsg);
    if (st)
        return st;
    st = redtls__tls_check_ca_pem(pem, len, cfg->errmsg);
    free(pem);
    if (st)
        return redtls__fail(cfg->errmsg, st, "CA file '%s' holds no PEM certificate", path);
    return set_path(cfg, &cfg->tls.ca_file, path, 0, "CA file");
}

redtls_status redtls_config_set_ca_dir(redtls_config *cfg, const char *path)
{
    CHECK_CFG(cfg);
    return set_path(cfg, &cfg->tls.ca_dir, path, 1, "CA directory");
}

redtls_status redtls_config_set_ca_pem(redtls_config *cfg, const char *pem, size_t len)
{
    CHECK_CFG(cfg);
    if (!pem || len == 0)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "CA PEM must be non-empty");
    redtls_status st = redtls__tls_check_ca_pem(pem, len, cfg->errmsg);
    if (st)
        return st;
    char *copy;
    if (dup_bytes(&copy, pem, len))
        return nomem(cfg);
    free(cfg->tls.ca_pem);
    cfg->tls.ca_pem = copy;
    cfg->tls.ca_pem_len = len;
    return REDTLS_OK;
}

redtls_status redtls_config_set_client_cert_pem(redtls_config *cfg, const char *cert_pem, size_t cert_len,
                                                const char *key_pem, size_t key_len)
{
    CHECK_CFG(cfg);
    if (!cert_pem || !key_pem || cert_len == 0 || key_len == 0)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "client certificate and key must be non-empty");
    redtls_status st = redtls__tls_check_keypair(cert_pem, cert_len, key_pem, key_len, cfg->errmsg);
    if (st)
        return st;
    char *cert;
    redtls__secret key = {NULL, 0};
    if (dup_bytes(&cert, cert_pem, cert_len))
        return nomem(cfg);
    if (redtls__secret_set(&key, key_pem, key_len)) {
        free(cert);
        return nomem(cfg);
    }
    free(cfg->tls.cert_pem);
    cfg->tls.cert_pem = cert;
    cfg->tls.cert_pem_len = cert_len;
    redtls__secret_clear(&cfg->tls.key_pem);
    cfg->tls.key_pem = key;
    return REDTLS_OK;
}

redtls_status redtls_config_set_client_cert_file(redtls_config *cfg, const char *cert_path, const char *key_path)
{
    CHECK_CFG(cfg);
    if (!cert_path || !key_path)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "client certificate and key paths are required");
    char *cert = NULL, *key = NULL;
    size_t cert_len = 0, key_len = 0;
    redtls_status st = redtls__read_file(cert_path, &cert, &cert_len, cfg->errmsg);
    if (st == REDTLS_OK)
        st = redtls__read_file(key_path, &key, &key_len, cfg->errmsg);
    if (st == REDTLS_OK)
        st = redtls_config_set_client_cert_pem(cfg, cert, cert_len, key, key_len);
    if (st != REDTLS_OK && st != REDTLS_E_NOMEM && cert && key) {
        char detail[REDTLS__ERRMSG_MAX];
        memcpy(detail, cfg->errmsg, sizeof detail);
        redtls__fail(cfg->errmsg, st, "%s (certificate '%s', key '%s')", detail, cert_path, key_path);
    }
    free(cert);
    if (key) {
        OPENSSL_cleanse(key, key_len);
        free(key);
    }
    return st;
}

redtls_status redtls_config_set_verify_name(redtls_config *cfg, const char *name)
{
    CHECK_CFG(cfg);
    if (name && !name[0])
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "verify name must be non-empty");
    if (redtls__str_set(&cfg->verify_name, name))
        return nomem(cfg);
    return REDTLS_OK;
}

static redtls_status alias_add(redtls_config *cfg, redtls__host_aliases *a, const char *from, uint16_t port,
                               const char *to)
{
    /* A later entry for the same host and port replaces the earlier one. */
    char *f = unbracket(from);
    char *t = unbracket(to);
    if (!f || !t) {
        free(f);
        free(t);
        return nomem(cfg);
    }
    for (size_t i = 0; i < a->n; i++) {
        if (a->v[i].port == port && strcasecmp(a->v[i].from, f) == 0) {
            free(f);
            free(a->v[i].to);
            a->v[i].to = t;
            return REDTLS_OK;
        }
    }
    redtls__host_alias *v = realloc(a->v, (a->n + 1) * sizeof *v);
    if (!v) {
        free(f);
        free(t);
        return nomem(cfg);
    }
    a->v = v;
    a->v[a->n++] = (redtls__host_alias){f, port, t};
    return REDTLS_OK;
}

redtls_status redtls_config_add_resolve(redtls_config *cfg, const char *host, uint16_t port, const char *address)
{
    CHECK_CFG(cfg);
    if (!host || !host[0] || !address || !address[0])
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "resolve entry needs a host and an address");
    return alias_add(cfg, &cfg->resolve, host, port, address);
}

redtls_status redtls_config_map_verify_name(redtls_config *cfg, const char *host, const char *name)
{
    CHECK_CFG(cfg);
    if (!host || !host[0] || !name || !name[0])
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "verify-name mapping needs a host and a name");
    return alias_add(cfg, &cfg->verify_names, host, 0, name);
}

redtls_status redtls_config_clear_host_maps(redtls_config *cfg)
{
    CHECK_CFG(cfg);
    aliases_clear(&cfg->resolve);
    aliases_clear(&cfg->verify_names);
    return REDTLS_OK;
}

redtls_status redtls_config_set_tls_min_version(redtls_config *cfg, redtls_tls_version v)
{
    CHECK_CFG(cfg);
    if (v != REDTLS_TLS_1_2 && v != REDTLS_TLS_1_3)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "minimum TLS version must be 1.2 or 1.3");
    cfg->tls.min_version = (int)v;
    return REDTLS_OK;
}

static redtls_status set_cipher_string(redtls_config *cfg, char **dst, const char *list, int tls13)
{
    if (list && !list[0])
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "cipher list must be non-empty");
    char *copy = NULL;
    if (redtls__str_set(&copy, list))
        return nomem(cfg);
    /* Validate now by building a context with just this setting. */
    if (copy) {
        redtls__tls_settings probe;
        memset(&probe, 0, sizeof probe);
        probe.min_version = 12;
        probe.insecure = 1;
        if (tls13)
            probe.tls13_suites = copy;
        else
            probe.tls12_ciphers = copy;
        redtls__tls_ctx *ctx = NULL;
        redtls_status st = redtls__tls_ctx_new(&probe, &ctx, cfg->errmsg);
        redtls__tls_ctx_free(ctx);
        if (st) {
            free(copy);
            return st;
        }
    }
    free(*dst);
    *dst = copy;
    return REDTLS_OK;
}

redtls_status redtls_config_set_tls12_ciphers(redtls_config *cfg, const char *list)
{
    CHECK_CFG(cfg);
    return set_cipher_string(cfg, &cfg->tls.tls12_ciphers, list, 0);
}

redtls_status redtls_config_set_tls13_ciphersuites(redtls_config *cfg, const char *list)
{
    CHECK_CFG(cfg);
    return set_cipher_string(cfg, &cfg->tls.tls13_suites, list, 1);
}

redtls_status redtls_config_set_insecure_skip_verify(redtls_config *cfg, int skip)
{
    CHECK_CFG(cfg);
    cfg->tls.insecure = skip != 0;
    return REDTLS_OK;
}

redtls_status redtls_config_set_user(redtls_config *cfg, const char *user)
{
    CHECK_CFG(cfg);
    if (user && (!user[0] || strpbrk(user, " \r\n")))
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "user name must be non-empty without spaces");
    if (redtls__str_set(&cfg->user, user))
        return nomem(cfg);
    return REDTLS_OK;
}

static redtls_status set_token(redtls_config *cfg, redtls__secret *dst, const char *token)
{
    if (token && !token[0])
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "token must be non-empty (NULL clears it)");
    if (token) {
        redtls_status st = redtls__check_token_policy(cfg, token, cfg->errmsg);
        if (st)
            return st;
    }
    if (redtls__secret_set(dst, token, token ? strlen(token) : 0))
        return nomem(cfg);
    return REDTLS_OK;
}

redtls_status redtls_config_set_token(redtls_config *cfg, const char *token)
{
    CHECK_CFG(cfg);
    return set_token(cfg, &cfg->token, token);
}

redtls_status redtls_config_set_token_alt(redtls_config *cfg, const char *token)
{
    CHECK_CFG(cfg);
    return set_token(cfg, &cfg->token_alt, token);
}

redtls_status redtls_config_set_strict_elasticache_tokens(redtls_config *cfg, int on)
{
    CHECK_CFG(cfg);
    int was = cfg->strict_elasticache;
    cfg->strict_elasticache = on != 0;
    redtls_status st = REDTLS_OK;
    if (cfg->token.data && (st = redtls__check_token_policy(cfg, cfg->token.data, cfg->errmsg)) == REDTLS_OK &&
        cfg->token_alt.data)
        st = redtls__check_token_policy(cfg, cfg->token_alt.data, cfg->errmsg);
    if (st)
        cfg->strict_elasticache = was;
    return st;
}

redtls_status redtls_config_set_credential_callback(redtls_config *cfg, redtls_credential_cb cb, void *userdata)
{
    CHECK_CFG(cfg);
    cfg->cred_cb = cb;
    cfg->cred_ud = cb ? userdata : NULL;
    return REDTLS_OK;
}

redtls_status redtls_config_set_event_callback(redtls_config *cfg, redtls_event_cb cb, void *userdata)
{
    CHECK_CFG(cfg);
    cfg->event_cb = cb;
    cfg->event_ud = cb ? userdata : NULL;
    return REDTLS_OK;
}

redtls_status redtls_config_set_db(redtls_config *cfg, int db)
{
    CHECK_CFG(cfg);
    if (db < 0)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "database number must be >= 0");
    cfg->db = db;
    return REDTLS_OK;
}

redtls_status redtls_config_set_client_name(redtls_config *cfg, const char *name)
{
    CHECK_CFG(cfg);
    if (name && (!name[0] || strpbrk(name, " \r\n")))
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "client name must be non-empty without spaces");
    if (redtls__str_set(&cfg->client_name, name))
        return nomem(cfg);
    return REDTLS_OK;
}

int redtls_protocol_supported(int version)
{
    return version == 2 || (version == 3 && REDTLS__HIREDIS_RESP3);
}

redtls_status redtls_config_set_protocol(redtls_config *cfg, int version)
{
    CHECK_CFG(cfg);
    if (version != 2 && version != 3)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "protocol must be 2 (RESP2) or 3 (RESP3), not %d", version);
    if (!redtls_protocol_supported(version))
        return redtls__fail(cfg->errmsg, REDTLS_E_CONFIG,
                            "RESP3 needs hiredis 1.0 or later, and this build of redtls uses hiredis %d.%d.%d "
                            "(rebuild redtls against hiredis 1.x, or keep protocol 2)",
                            REDTLS__HIREDIS_VERSION);
    cfg->protocol = version;
    return REDTLS_OK;
}

redtls_status redtls_config_set_push_callback(redtls_config *cfg, redtls_push_cb cb, void *userdata)
{
    CHECK_CFG(cfg);
    cfg->push_cb = cb;
    cfg->push_ud = cb ? userdata : NULL;
    return REDTLS_OK;
}

redtls_status redtls_config_set_connect_timeout_ms(redtls_config *cfg, unsigned ms)
{
    CHECK_CFG(cfg);
    cfg->connect_timeout_ms = ms;
    return REDTLS_OK;
}

redtls_status redtls_config_set_handshake_timeout_ms(redtls_config *cfg, unsigned ms)
{
    CHECK_CFG(cfg);
    cfg->handshake_timeout_ms = ms;
    return REDTLS_OK;
}

redtls_status redtls_config_set_command_timeout_ms(redtls_config *cfg, unsigned ms)
{
    CHECK_CFG(cfg);
    cfg->command_timeout_ms = ms;
    return REDTLS_OK;
}

redtls_status redtls_config_set_max_array_elements(redtls_config *cfg, size_t n)
{
    CHECK_CFG(cfg);
    cfg->limits.max_elements = n ? n : REDTLS_DEFAULT_MAX_ARRAY_ELEMENTS;
    return REDTLS_OK;
}

redtls_status redtls_config_set_max_bulk_len(redtls_config *cfg, size_t n)
{
    CHECK_CFG(cfg);
    cfg->limits.max_bulk = n ? n : REDTLS_DEFAULT_MAX_BULK_LEN;
    return REDTLS_OK;
}

redtls_status redtls_config_set_max_buffer(redtls_config *cfg, size_t n)
{
    CHECK_CFG(cfg);
    cfg->limits.max_buffer = n ? n : REDTLS_DEFAULT_MAX_BUFFER;
    return REDTLS_OK;
}

redtls_status redtls_config_set_reconnect(redtls_config *cfg, int enabled)
{
    CHECK_CFG(cfg);
    cfg->reconnect = enabled != 0;
    return REDTLS_OK;
}

redtls_status redtls_config_set_backoff(redtls_config *cfg, unsigned base_ms, unsigned cap_ms)
{
    CHECK_CFG(cfg);
    if (base_ms == 0 || cap_ms < base_ms)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "backoff needs 0 < base_ms <= cap_ms");
    cfg->backoff_base_ms = base_ms;
    cfg->backoff_cap_ms = cap_ms;
    return REDTLS_OK;
}

redtls_status redtls_config_set_reconnect_limits(redtls_config *cfg, unsigned max_attempts, unsigned max_outage_ms)
{
    CHECK_CFG(cfg);
    cfg->max_attempts = max_attempts;
    cfg->max_outage_ms = max_outage_ms;
    return REDTLS_OK;
}

redtls_status redtls_config_set_health_check_ms(redtls_config *cfg, unsigned idle_ms)
{
    CHECK_CFG(cfg);
    cfg->health_check_ms = idle_ms;
    return REDTLS_OK;
}

redtls_status redtls_config_set_tcp_user_timeout_ms(redtls_config *cfg, unsigned ms)
{
    CHECK_CFG(cfg);
    cfg->tcp_user_timeout_ms = ms;
    return REDTLS_OK;
}

redtls_status redtls_config_set_tls_session_resumption(redtls_config *cfg, int enabled)
{
    CHECK_CFG(cfg);
    cfg->tls.resumption = enabled != 0;
    return REDTLS_OK;
}

/* Token rules and the token pair (used by the setters, the URL parser
 * and live updates of a connection). */

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

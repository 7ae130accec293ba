/* libFuzzer target: redtls_config_set_url() on arbitrary strings.
 *
 * Invariants: the status is one the header documents; on failure the
 * configuration is unchanged and the message is non-empty; the message
 * never repeats the URL's token (checked by parsing the same URL again with
 * the token replaced: whatever the token adds to the message is a leak). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define CHECK(cond)                                                                                              \
    do {                                                                                                         \
        if (!(cond)) {                                                                                           \
            fprintf(stderr, "fuzz_url: invariant failed at line %d: %s\n", __LINE__, #cond);                     \
            abort();                                                                                             \
        }                                                                                                        \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* A configuration whose fields all differ from the defaults, so "unchanged
 * on failure" is a real check. */
static redtls_config *base_config(void)
{
    redtls_config *cfg = NULL;
    CHECK(redtls_config_new(&cfg) == REDTLS_OK);
    CHECK(redtls_config_set_host(cfg, "base.example", 7000) == REDTLS_OK);
    CHECK(redtls_config_set_user(cfg, "base-user") == REDTLS_OK);
    CHECK(redtls_config_set_token(cfg, "base-token-0123456789") == REDTLS_OK);
    CHECK(redtls_config_set_db(cfg, 3) == REDTLS_OK);
    CHECK(redtls_config_set_client_name(cfg, "base-name") == REDTLS_OK);
    CHECK(redtls_config_set_verify_name(cfg, "verify.example") == REDTLS_OK);
    CHECK(redtls_config_set_command_timeout_ms(cfg, 1234) == REDTLS_OK);
    CHECK(redtls_config_set_tls_min_version(cfg, REDTLS_TLS_1_3) == REDTLS_OK);
    return cfg;
}

static void check_unchanged(const redtls_config *cfg)
{
    CHECK(str_eq(cfg->host, "base.example"));
    CHECK(cfg->port == 7000);
    CHECK(cfg->unix_path == NULL);
    CHECK(cfg->use_tls == 1);
    CHECK(str_eq(cfg->user, "base-user"));
    CHECK(str_eq(cfg->token.data, "base-token-0123456789"));
    CHECK(cfg->token_alt.data == NULL);
    CHECK(cfg->db == 3);
    CHECK(str_eq(cfg->client_name, "base-name"));
    CHECK(str_eq(cfg->verify_name, "verify.example"));
    CHECK(cfg->command_timeout_ms == 1234);
    CHECK(cfg->connect_timeout_ms == REDTLS_DEFAULT_CONNECT_TIMEOUT_MS);
    CHECK(cfg->handshake_timeout_ms == REDTLS_DEFAULT_HANDSHAKE_TIMEOUT_MS);
    CHECK(cfg->tls.min_version == REDTLS_TLS_1_3);
}

/* Where the token sits in url, by the parser's own rules: after the first
 * ':' of the userinfo, which ends at the last '@' before the path, the
 * query or a fragment. Returns 0 when there is none. */
static int find_token(const char *url, size_t *start, size_t *len)
{
    const char *sep = strstr(url, "://");
    if (!sep)
        return 0;
    const char *rest = sep + 3;
    size_t restlen = strcspn(rest, "?");
    size_t authlen = strcspn(rest, "/?");
    if (authlen > restlen)
        authlen = restlen;
    const char *at = NULL;
    for (const char *p = rest; p < rest + authlen; p++)
        if (*p == '@')
            at = p;
    if (!at)
        return 0;
    const char *colon = memchr(rest, ':', (size_t)(at - rest));
    if (!colon || colon + 1 == at)
        return 0;
    *start = (size_t)(colon + 1 - url);
    *len = (size_t)(at - colon - 1);
    return 1;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* A token the parser stores as it is: no '#' (which changes what is refused
 * before the userinfo is read), every '%' followed by two hex digits that
 * do not encode NUL. */
static int token_is_valid(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '#')
            return 0;
        if (s[i] == '%') {
            if (i + 2 >= len)
                return 0;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || hi * 16 + lo == 0)
                return 0;
            i += 2;
        }
    }
    return 1;
}

static redtls_status apply(const char *url, char *msg, size_t msglen)
{
    redtls_config *cfg = base_config();
    redtls_status st = redtls_config_set_url(cfg, url);
    CHECK(st == REDTLS_OK || st == REDTLS_E_URL || st == REDTLS_E_CONFIG || st == REDTLS_E_NOMEM);
    const char *m = redtls_config_errmsg(cfg);
    CHECK(m != NULL);
    CHECK(strlen(m) < REDTLS__ERRMSG_MAX);
    if (st != REDTLS_OK) {
        CHECK(m[0] != '\0');
        check_unchanged(cfg);
    } else {
        CHECK(cfg->host != NULL || cfg->unix_path != NULL);
        CHECK(cfg->port != 0);
    }
    snprintf(msg, msglen, "%s", m);
    redtls_config_free(cfg);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char msg[REDTLS__ERRMSG_MAX], msg2[REDTLS__ERRMSG_MAX];
    char *url = malloc(size + 1);
    CHECK(url != NULL);
    memcpy(url, data, size);
    url[size] = '\0';
    /* These parameters name files and folders to load: the fuzzer must not
     * make the parser read /dev/zero or a FIFO. */
    if (strstr(url, "cert=") || strstr(url, "key=") || strstr(url, "capath=")) {
        free(url);
        return 0;
    }
    redtls_status st = apply(url, msg, sizeof msg);
    size_t start, len;
    if (st != REDTLS_OK && find_token(url, &start, &len) && token_is_valid(url + start, len)) {
        /* The same URL with the token "Z": the parser takes the same path
         * (a valid token is stored, never looked at), so the message must
         * be the same; any difference comes from the token. */
        char *other = malloc(size + 2);
        CHECK(other != NULL);
        memcpy(other, url, start);
        other[start] = 'Z';
        memcpy(other + start + 1, url + start + len, size - start - len + 1);
        CHECK(apply(other, msg2, sizeof msg2) == st);
        if (strcmp(msg, msg2) != 0) {
            fprintf(stderr, "fuzz_url: the token changes the message:\n  \"%s\"\n  \"%s\"\n", msg, msg2);
            abort();
        }
        free(other);
    }
    free(url);
    return 0;
}

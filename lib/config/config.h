/* The configuration object and the deep copy a connection keeps of it. */
#ifndef REDTLS_CONFIG_H
#define REDTLS_CONFIG_H

#include "iam.h"
#include "reader.h"
#include "resolve.h"
#include "tls.h"

/* One address override or verify-name mapping. */
typedef struct redtls__host_alias {
    char *from;    /* host as asked (unbracketed), compared case-insensitively */
    uint16_t port; /* 0: any port */
    char *to;      /* address to connect to, or name to verify */
} redtls__host_alias;

typedef struct redtls__host_aliases {
    redtls__host_alias *v;
    size_t n;
} redtls__host_aliases;

/* The entry for host:port (an exact port wins over port 0), or NULL. */
const char *redtls__alias_find(const redtls__host_aliases *a, const char *host, uint16_t port);

struct redtls_config {
    char *host;
    uint16_t port;
    char *unix_path;
    int use_tls;
    char *verify_name;
    redtls__host_aliases resolve;      /* connect address overrides */
    redtls__host_aliases verify_names; /* announced host -> name to verify */
    redtls__tls_settings tls;
    char *user;
    redtls__secret token;
    redtls__secret token_alt;
    int strict_elasticache;
    redtls_credential_cb cred_cb;
    void *cred_ud;
    redtls__iam_cfg iam;
    redtls_event_cb event_cb;
    void *event_ud;
    int db;
    char *client_name;
    int protocol; /* 2 (RESP2, the default) or 3 (RESP3: HELLO 3 set-up) */
    redtls_push_cb push_cb;
    void *push_ud;
    unsigned connect_timeout_ms;
    unsigned handshake_timeout_ms;
    unsigned command_timeout_ms;
    redtls__limits limits;
    /* The TLS context built from these settings for the connections made
     * from this configuration; dropped by any setter. Never copied. */
    redtls__tls_ctx *tls_cache;
    int reconnect;
    unsigned backoff_base_ms, backoff_cap_ms;
    unsigned max_attempts, max_outage_ms;
    unsigned health_check_ms;
    unsigned tcp_user_timeout_ms;
    int cluster_readonly; /* internal: send READONLY after setup (replica reads) */
    redtls__getaddrinfo_fn resolver; /* internal: NULL = getaddrinfo; tests plug in slow ones */
    /* REDTLS__ERRMSG_MAX bytes: right after the struct for the ones
     * redtls_config_new makes, the holder's for a copy (a connection's
     * copy writes into the connection's message). */
    char *errmsg;
};

/* Fills cfg with the defaults (allocates the default host). */
redtls_status redtls__config_init(redtls_config *cfg);
/* Releases what cfg owns (secrets wiped) without freeing cfg itself. */
void redtls__config_release(redtls_config *cfg);
/* Deep copy of src into dst (dst uninitialised), its messages going to
 * errbuf (REDTLS__ERRMSG_MAX bytes, emptied). On failure dst owns
 * nothing. */
redtls_status redtls__config_copy(redtls_config *dst, const redtls_config *src, char *errbuf);

/* The shared TLS context for cfg's settings, built on first use; the
 * caller gets its own reference. */
redtls_status redtls__config_tls_ctx(redtls_config *cfg, redtls__tls_ctx **out);

/* Where to connect for host:port (an override, or host itself) and the
 * name to verify there (fixed name, mapped name, or host). */
const char *redtls__config_connect_addr(const redtls_config *cfg, const char *host, uint16_t port);
const char *redtls__config_verify_name(const redtls_config *cfg, const char *host);

/* Checks a token against the configuration's token policy; the message
 * names the rule, never the token. */
redtls_status redtls__check_token_policy(const redtls_config *cfg, const char *token, char *err);

/* Replaces cfg's token pair after checking it (token non-empty, token_alt
 * NULL or non-empty, the token policy): REDTLS_E_INVALID, or
 * REDTLS_E_NOMEM with the old pair left whole. */
redtls_status redtls__set_token_pair(redtls_config *cfg, const char *token, const char *token_alt, char *err);

/* Reads a whole file into memory (for certificates and keys); the caller
 * frees it (wiping it first when it is a key). */
redtls_status redtls__read_file(const char *path, char **data, size_t *len, char *err);

#endif

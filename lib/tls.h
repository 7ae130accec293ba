/* TLS session layer: context building (trust, client certificate, hardened
 * protocol settings), the verified handshake, and a transport on top of it. */
#ifndef REDTLS_TLS_H
#define REDTLS_TLS_H

#include "transport.h"

typedef struct redtls__tls_settings {
    int min_version; /* 12 or 13 */
    int insecure;    /* skip certificate and hostname verification */
    int resumption;  /* keep and reuse sessions */
    char *ca_file;
    char *ca_dir;
    char *ca_pem;
    size_t ca_pem_len;
    char *cert_pem; /* leaf first, then chain */
    size_t cert_pem_len;
    redtls__secret key_pem;
    char *tls12_ciphers;
    char *tls13_suites;
} redtls__tls_settings;

/* A client context: OpenSSL's SSL_CTX (trust store, client certificate,
 * protocol settings) and our socket BIO method. Built once per
 * configuration and shared, read-only, by the connections made from it
 * (on any thread), so it is reference counted. */
typedef struct redtls__tls_ctx redtls__tls_ctx;

/* The session a connection keeps for its next handshake (one per
 * connection: a connection always talks to the same server). */
typedef struct redtls__tls_session {
    void *session; /* SSL_SESSION, a private copy */
} redtls__tls_session;

/* Builds the client context from settings, with one reference.
 * REDTLS_E_CONFIG names the part that could not be loaded. */
redtls_status redtls__tls_ctx_new(const redtls__tls_settings *s, redtls__tls_ctx **out, char *err);
/* Takes one more reference. */
redtls__tls_ctx *redtls__tls_ctx_ref(redtls__tls_ctx *ctx);
/* Drops a reference; the last one frees. Accepts NULL. */
void redtls__tls_ctx_free(redtls__tls_ctx *ctx);
/* Forgets a kept session. */
void redtls__tls_session_clear(redtls__tls_session *slot);

/* Parses a certificate chain and a private key and checks that they belong
 * together (used when the configuration is set, not at connect time). */
redtls_status redtls__tls_check_keypair(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
                                        char *err);

/* Checks that a PEM holds at least one certificate. */
redtls_status redtls__tls_check_ca_pem(const char *pem, size_t len, char *err);

/* Runs the TLS handshake on a connected socket (taking ownership of fd, also
 * on failure), verifying the server certificate against verify_name (a DNS
 * name or an IP literal; SNI is sent for names). One trailing dot is dropped
 * from verify_name first (an absolute name); the subjectAltName alone is
 * matched, never the subject CN (RFC 9525). Timeouts are reported as
 * REDTLS_E_HANDSHAKE_TIMEOUT. slot (may be NULL): the session offered for
 * resumption and where new ones are kept; it must outlive the transport. */
redtls_status redtls__tls_connect(redtls__tls_ctx *ctx, int fd, const char *verify_name, redtls__tls_session *slot,
                                  int64_t deadline, redtls__transport **out, char *err);

/* 1 when the handshake resumed a cached session. */
int redtls__tls_resumed(redtls__transport *base);

/* Under TLS 1.3 the server judges our client certificate only after our
 * side of the handshake is done, so its verdict (an alert, often followed
 * by a reset) arrives later; a harmless probe must precede any credential.
 * Returns 0 when no certificate was requested (or TLS 1.2), 1 when one was
 * requested and none configured, 2 when ours was sent. */
int redtls__tls_verdict_pending(redtls__transport *base);

/* Details of an established TLS transport, written into out (always
 * NUL-terminated). Return 0 on success, -1 when unavailable. */
int redtls__tls_describe(redtls__transport *base, int what, char *out, size_t outlen);
enum { REDTLS__TLS_VERSION, REDTLS__TLS_CIPHER, REDTLS__TLS_SUBJECT, REDTLS__TLS_SANS, REDTLS__TLS_NOT_AFTER };

/* 1 when s is an IPv4 or IPv6 literal (without brackets). */
int redtls__is_ip_literal(const char *s);

#endif

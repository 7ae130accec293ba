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

/* Sets up a TLS client session on a connected socket (taking ownership of
 * fd, also on failure) that will verify the server certificate against
 * verify_name (a DNS name or an IP literal; SNI is sent for names). One
 * trailing dot is dropped from verify_name first (an absolute name); the
 * subjectAltName alone is matched, never the subject CN (RFC 9525). slot
 * (may be NULL): the session offered for resumption and where new ones are
 * kept; it must outlive the transport. Nothing is sent yet: the
 * transport's handshake step does that. */
redtls_status redtls__tls_start(redtls__tls_ctx *ctx, int fd, const char *verify_name, redtls__tls_session *slot,
                                redtls__transport **out, char *err);

/* The failure of a handshake that ran out of time while waiting for want
 * (POLLIN: the server's answer; POLLOUT: room to send). */
redtls_status redtls__tls_handshake_timeout(int want, char *err);

#endif

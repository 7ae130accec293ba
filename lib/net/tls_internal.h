/* The TLS layer's internals, shared by tls.c (the handshake, the
 * transport), tls_ctx.c (contexts), tls_bio.c (the socket BIO) and
 * tls_failure.c (what a failure says). */
#ifndef REDTLS_TLS_INTERNAL_H
#define REDTLS_TLS_INTERNAL_H

#include <stdatomic.h>

#include <openssl/ssl.h>

#include "sock.h"
#include "tls.h"

struct redtls__tls_ctx {
    atomic_int refs;
    SSL_CTX *ssl_ctx;
    BIO_METHOD *bio_method;       /* the socket BIO's */
    BIO_METHOD *handshake_method; /* the handshake BIO's (tls_bio.c) */
    int has_client_cert;
    int insecure;
    int resumption;
    int min_version;     /* 12 or 13, for failure messages */
    int custom_ciphers;  /* the cipher lists were narrowed by the user */
};

/* What the verify callback saw first: the reason a chain was refused. It
 * lives on tls_handshake's stack: the chain is verified, and a refusal
 * reported, within the one SSL_connect call that read the certificate. */
typedef struct verify_note {
    int error;
    int depth;
    int has_san;     /* the refused certificate has a subjectAltName */
    int has_dns_san; /* ... with at least one DNS name in it */
    char subject[256];
    char sans[384];
    char cn[128];    /* its subject CN, never used for matching */
} verify_note;

/* The handshake's pacing (tls_bio.c): while it is on, a handshake step
 * hands OpenSSL at most one TLS record, then the BIO answers "retry". */
typedef struct redtls__tls_pace {
    int on;               /* the handshake is under way */
    int spent;            /* this step handed over a whole record, or sent */
    int stopped;          /* ... and a read was refused for that */
    int verify_put_off;   /* the chain check was left to a step of its own */
    size_t hdr_got;       /* bytes of the current record's header taken */
    size_t body_left;     /* bytes of its body not taken yet */
    unsigned char hdr[5]; /* type, version, length */
} redtls__tls_pace;

typedef struct redtls__tls_transport {
    redtls__transport base;
    int fd;
    int eof;                /* the socket returned end-of-file */
    int cert_requested;     /* the server sent a CertificateRequest */
    int has_client_cert;
    int refused_reneg;      /* we answered a renegotiation request with no_renegotiation */
    int io_want;            /* POLLIN/POLLOUT: the socket's last answer was "try again" */
    int io_errno;           /* a socket error met by the current read or write, or 0 */
    int peer_close_notify;  /* the server sent close_notify */
    SSL *ssl;
    char *name;             /* the name verified and sent as SNI */
    redtls__tls_ctx *ctx;
    redtls__tls_session *slot; /* the connection's, outlives us */
    verify_note *note;      /* during tls_handshake's SSL_connect, else NULL */
    redtls__tls_pace pace;
} redtls__tls_transport;

/* The BIO methods a context makes (tls_bio.c): handshake 1, the one a
 * session starts on (one record per step); 0, the plain socket BIO that
 * takes over once the handshake is done. The BIO's data is the
 * transport. NULL when out of memory. */
BIO_METHOD *redtls__tls_bio_method_new(int handshake);
/* A handshake step begins: it may take one record. */
void redtls__tls_pace_step(redtls__tls_pace *p);
/* 1 when the step's "want read" came from the pacing, not the socket: the
 * next step can go on at once. */
int redtls__tls_pace_stopped(const redtls__tls_pace *p);
/* OpenSSL's callbacks (tls.c), which find the transport through the
 * SSL's app data. */
int redtls__tls_cert_cb(SSL *ssl, void *arg);
void redtls__tls_info_cb(const SSL *ssl, int where, int ret);
int redtls__tls_new_session_cb(SSL *ssl, SSL_SESSION *sess);
int redtls__tls_verify_cb(int ok, X509_STORE_CTX *store);
int redtls__tls_cert_verify_cb(X509_STORE_CTX *store, void *arg);

/* 1 when OpenSSL failed for lack of memory; empties its error queue. */
int redtls__tls_drained_nomem(void);
/* OpenSSL's reason for its last error, or "unknown error". */
void redtls__tls_reason(char *out, size_t outlen);
/* The status and message of a failed handshake: verification, the name,
 * the client certificate, no common version, cipher or signature
 * algorithm, an oversized message, a closed or reset connection. sslerr:
 * SSL_get_error()'s answer; sys_errno: errno right after the call. */
redtls_status redtls__tls_handshake_failure(redtls__tls_transport *t, int sslerr, int sys_errno, const char *name,
                                            char *err);
/* The same for a failed SSL_read/SSL_write after the handshake (rc: its
 * return value). */
redtls_status redtls__tls_io_failure(redtls__tls_transport *t, int rc, int sys_errno, const char *what, char *err);

#endif

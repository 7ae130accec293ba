/* The TLS session as a transport: the handshake as a step, reads and
 * writes that never wait, and the certificate details a failure or the
 * caller reads. The socket BIO under it is tls_bio.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls_internal.h"


int redtls__tls_cert_cb(SSL *ssl, void *arg)
{
    (void)arg;
    redtls__tls_transport *t = SSL_get_app_data(ssl);
    if (t)
        t->cert_requested = 1;
    return 1;
}

/* Renegotiation is off (SSL_OP_NO_RENEGOTIATION): a TLS 1.2 server's
 * HelloRequest is answered with a no_renegotiation warning, which many
 * servers then treat as fatal. Noting it lets that failure name its cause. */
/* A close_notify from the server is noted too: a failure is then told to
 * be a clean close without asking the thread's error queue. */
void redtls__tls_info_cb(const SSL *ssl, int where, int ret)
{
    if ((where & SSL_CB_ALERT) == 0)
        return;
    redtls__tls_transport *t = SSL_get_app_data(ssl);
    if (!t)
        return;
    if ((where & SSL_CB_WRITE) && (ret & 0xff) == SSL_AD_NO_RENEGOTIATION)
        t->refused_reneg = 1;
    if ((where & SSL_CB_READ) && (ret & 0xff) == SSL_AD_CLOSE_NOTIFY)
        t->peer_close_notify = 1;
}

/* Keeps the newest session (TLS 1.2 session or TLS 1.3 ticket, which
 * arrives after the handshake) as a private copy: OpenSSL marks a session
 * it saw fail as not resumable, and the copy stays out of its reach. */
int redtls__tls_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    redtls__tls_transport *t = SSL_get_app_data(ssl);
    if (!t || !t->ctx->resumption || !t->slot)
        return 0;
    SSL_SESSION *copy = SSL_SESSION_dup(sess);
    if (!copy)
        return 0;
    SSL_SESSION_free(t->slot->session);
    t->slot->session = copy;
    return 0; /* we did not keep OpenSSL's reference */
}

void redtls__tls_session_clear(redtls__tls_session *slot)
{
    SSL_SESSION_free(slot->session);
    slot->session = NULL;
}

/* The certificate's SANs as "DNS:a, IP:b" (or "none"). *has_san / *dns
 * (may be NULL) say whether it has the extension and a DNS name in it. */
static void format_sans_ex(X509 *cert, char *out, size_t outlen, int *has_san, int *dns)
{
    out[0] = '\0';
    if (has_san)
        *has_san = 0;
    if (dns)
        *dns = 0;
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (!names) {
        snprintf(out, outlen, "none");
        return;
    }
    if (has_san)
        *has_san = 1;
    size_t used = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        char item[INET6_ADDRSTRLEN + 8] = "";
        if (gn->type == GEN_DNS) {
            if (dns)
                *dns = 1;
            const unsigned char *d = ASN1_STRING_get0_data(gn->d.dNSName);
            int l = ASN1_STRING_length(gn->d.dNSName);
            snprintf(item, sizeof item, "DNS:%.*s", l > 200 ? 200 : l, (const char *)d);
        } else if (gn->type == GEN_IPADD) {
            const unsigned char *d = ASN1_STRING_get0_data(gn->d.iPAddress);
            int l = ASN1_STRING_length(gn->d.iPAddress);
            char ip[INET6_ADDRSTRLEN] = "?";
            if (l == 4)
                inet_ntop(AF_INET, d, ip, sizeof ip);
            else if (l == 16)
                inet_ntop(AF_INET6, d, ip, sizeof ip);
            snprintf(item, sizeof item, "IP:%s", ip);
        } else {
            continue;
        }
        int n = snprintf(out + used, outlen - used, "%s%s", used ? ", " : "", item);
        if (n < 0 || (size_t)n >= outlen - used)
            break;
        used += (size_t)n;
    }
    GENERAL_NAMES_free(names);
    if (!out[0])
        snprintf(out, outlen, "none");
}

static void format_sans(X509 *cert, char *out, size_t outlen)
{
    format_sans_ex(cert, out, outlen, NULL, NULL);
}

/* The subject's first CN, printable ASCII only (others become '?'). */
static void format_cn(X509 *cert, char *out, size_t outlen)
{
    out[0] = '\0';
    const X509_NAME *subject = X509_get_subject_name(cert);
    int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (i < 0)
        return;
    const ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
    const unsigned char *p = ASN1_STRING_get0_data(d);
    size_t n = (size_t)ASN1_STRING_length(d), o = 0;
    for (size_t k = 0; k < n && o + 1 < outlen; k++)
        out[o++] = (char)(p[k] >= 0x20 && p[k] < 0x7f ? p[k] : (unsigned char)'?');
    out[o] = '\0';
}

static void format_subject(X509 *cert, char *out, size_t outlen)
{
    out[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return;
    X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    int n = BIO_read(b, out, (int)outlen - 1);
    out[n > 0 ? n : 0] = '\0';
    BIO_free(b);
}

int redtls__tls_verify_cb(int ok, X509_STORE_CTX *store)
{
    if (ok)
        return ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    redtls__tls_transport *t = ssl ? SSL_get_app_data(ssl) : NULL;
    verify_note *n = t ? t->note : NULL;
    if (n && n->error == 0) {
        X509 *cert = X509_STORE_CTX_get_current_cert(store);
        n->error = X509_STORE_CTX_get_error(store);
        n->depth = X509_STORE_CTX_get_error_depth(store);
        if (cert) {
            format_subject(cert, n->subject, sizeof n->subject);
            format_sans_ex(cert, n->sans, sizeof n->sans, &n->has_san, &n->has_dns_san);
            format_cn(cert, n->cn, sizeof n->cn);
        }
    }
    return 0;
}

/* OpenSSL decodes the server's certificates (their public keys cost some
 * 1.5 million instructions each in OpenSSL 3.0) and checks the chain in
 * the same call; the check is put off to the next step, which does
 * nothing else. Without verification (insecure) there is no check at all:
 * its verdict would be ignored by OpenSSL, and would make every later
 * handshake failure look like a certificate's. */
int redtls__tls_cert_verify_cb(X509_STORE_CTX *store, void *arg)
{
    (void)arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    redtls__tls_transport *t = ssl ? SSL_get_app_data(ssl) : NULL;
    if (t && t->ctx->insecure)
        return 1;
    if (t && t->pace.on) {
        if (!t->pace.verify_put_off) {
            t->pace.verify_put_off = 1;
            return SSL_set_retry_verify(ssl);
        }
        t->pace.spent = 1;
    }
    /* Below 0 is an internal error: a failed check all the same. */
    return X509_verify_cert(store) > 0;
}

static int io_wait_for(redtls__tls_transport *t, int rc, int usual)
{
    if (t->io_want == usual)
        return usual;
    int e = SSL_get_error(t->ssl, rc);
    return e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
}

static redtls_status tls_write(redtls__transport *base, const char *buf, size_t len, size_t *done, int *want,
                               char *err)
{
    redtls__tls_transport *t = (redtls__tls_transport *)base;
    *done = 0;
    *want = 0;
    while (*done < len) {
        size_t n = 0;
        t->io_want = 0;
        t->io_errno = 0;
        errno = 0;
        int rc = SSL_write_ex(t->ssl, buf + *done, len - *done, &n);
        int sys_errno = errno;
        if (rc == 1) {
            *done += n;
            continue;
        }
        if ((*want = io_wait_for(t, rc, POLLOUT)) != 0)
            return REDTLS_OK;
        redtls_status st = redtls__tls_io_failure(t, rc, sys_errno, "write", err);
        ERR_clear_error();
        return st;
    }
    return REDTLS_OK;
}

static redtls_status tls_read(redtls__transport *base, char *buf, size_t cap, size_t *got, int *want, char *err)
{
    redtls__tls_transport *t = (redtls__tls_transport *)base;
    *got = 0;
    *want = 0;
    /* SSL_read_ex with no room says "error", which would read as an end. */
    if (cap == 0)
        return REDTLS_OK;
    t->io_want = 0;
    t->io_errno = 0;
    errno = 0;
    int rc = SSL_read_ex(t->ssl, buf, cap, got);
    int sys_errno = errno;
    if (rc == 1)
        return REDTLS_OK;
    *got = 0;
    if ((*want = io_wait_for(t, rc, POLLIN)) != 0)
        return REDTLS_OK;
    redtls_status st = redtls__tls_io_failure(t, rc, sys_errno, "read", err);
    ERR_clear_error();
    return st;
}

static void tls_close(redtls__transport *base, int graceful)
{
    redtls__tls_transport *t = (redtls__tls_transport *)base;
    if (t->ssl) {
        /* One non-blocking close_notify; waiting for the server's reply
         * would only delay the caller. */
        if (graceful && SSL_is_init_finished(t->ssl))
            SSL_shutdown(t->ssl);
        SSL_free(t->ssl);
    }
    ERR_clear_error();
    close(t->fd);
    free(t->name);
    free(t);
}

static redtls_status tls_idle_check(redtls__transport *base, char *err)
{
    redtls__tls_transport *t = (redtls__tls_transport *)base;
    if (!SSL_has_pending(t->ssl)) {
        struct pollfd p = {.fd = t->fd, .events = POLLIN, .revents = 0};
        if (poll(&p, 1, 0) <= 0)
            return REDTLS_OK;
    }
    /* Something arrived: TLS housekeeping (a late session ticket) is
     * consumed here; anything else means the connection is over. */
    char b;
    size_t got = 0;
    t->io_want = 0;
    t->io_errno = 0;
    errno = 0;
    int rc = SSL_read_ex(t->ssl, &b, 1, &got);
    int sys_errno = errno;
    if (rc == 1)
        return redtls__fail(err, REDTLS_E_PROTOCOL, "the server sent data nobody asked for on an idle connection");
    if (io_wait_for(t, rc, POLLIN))
        return REDTLS_OK;
    redtls_status st = redtls__tls_io_failure(t, rc, sys_errno, "idle read", err);
    ERR_clear_error();
    return st;
}

static int tls_buffered(redtls__transport *base)
{
    return SSL_has_pending(((redtls__tls_transport *)base)->ssl);
}

static int tls_fd(redtls__transport *base)
{
    return ((redtls__tls_transport *)base)->fd;
}

/* OpenSSL's two record buffers (some 33 KiB) are most of an idle TLS
 * connection's memory, and more than half of a waiting handshake's.
 * SSL_MODE_RELEASE_BUFFERS (lean) frees each as soon as it is empty; for a
 * connection used back to back that costs some 1,400 instructions per
 * command at pipeline depth 1, so the connection layer turns it off
 * (settle) once it sees such use, and calls release when the connection
 * has gone quiet. Never frees while OpenSSL still holds unread bytes. */
static void tls_release(redtls__transport *base)
{
    redtls__tls_transport *t = (redtls__tls_transport *)base;
    if (!SSL_has_pending(t->ssl))
        (void)SSL_free_buffers(t->ssl);
    SSL_set_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS);
}

static void tls_settle(redtls__transport *base)
{
    SSL_clear_mode(((redtls__tls_transport *)base)->ssl, SSL_MODE_RELEASE_BUFFERS);
}

static redtls_status tls_handshake(redtls__transport *base, int *want, char *err)
{
    redtls__tls_transport *t = (redtls__tls_transport *)base;
    *want = 0;
    verify_note note;
    memset(&note, 0, sizeof note);
    t->note = &note;
    ERR_clear_error();
    errno = 0;
    redtls__tls_pace_step(&t->pace);
    int rc = SSL_connect(t->ssl);
    int sys_errno = errno;
    if (rc == 1) {
        t->note = NULL;
        t->pace.on = 0;
        /* The plain socket BIO takes over (the handshake BIO holds no
         * bytes); without memory for it, the other one goes on, unpaced. */
        BIO *plain = BIO_new(t->ctx->bio_method);
        if (plain) {
            BIO_set_data(plain, t);
            SSL_set_bio(t->ssl, plain, plain);
        }
        ERR_clear_error();
        return REDTLS_OK;
    }
    int e = SSL_get_error(t->ssl, rc);
    if ((e == SSL_ERROR_WANT_READ && redtls__tls_pace_stopped(&t->pace)) || e == SSL_ERROR_WANT_RETRY_VERIFY) {
        t->note = NULL;
        *want = REDTLS__AGAIN;
        return REDTLS_OK;
    }
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        t->note = NULL;
        *want = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN;
        return REDTLS_OK;
    }
    redtls_status st = redtls__tls_handshake_failure(t, e, sys_errno, t->name, err);
    t->note = NULL;
    ERR_clear_error();
    return st;
}

static int tls_verdict_pending(redtls__transport *base)
{
    redtls__tls_transport *t = (redtls__tls_transport *)base;
    if (!t->cert_requested || SSL_version(t->ssl) < TLS1_3_VERSION)
        return 0;
    return t->has_client_cert ? 2 : 1;
}

static int tls_resumed(redtls__transport *base)
{
    return SSL_session_reused(((redtls__tls_transport *)base)->ssl) == 1;
}

static int tls_describe(redtls__transport *base, int what, char *out, size_t outlen);

static const redtls__transport_ops tls_ops = {
    .write = tls_write,
    .read = tls_read,
    .handshake = tls_handshake,
    .close = tls_close,
    .idle_check = tls_idle_check,
    .buffered = tls_buffered,
    .fd = tls_fd,
    .release = tls_release,
    .settle = tls_settle,
    .resumed = tls_resumed,
    .verdict_pending = tls_verdict_pending,
    .describe = tls_describe,
};

redtls_status redtls__tls_handshake_timeout(int want, char *err)
{
    return redtls__fail(err, REDTLS_E_HANDSHAKE_TIMEOUT,
                        "TLS handshake not completed within the handshake timeout (%s; is this a plain-text port or "
                        "an unresponsive server?)",
                        want == POLLOUT ? "cannot send" : "no answer from the server");
}

redtls_status redtls__tls_start(redtls__tls_ctx *ctx, int fd, const char *verify_name, redtls__tls_session *slot,
                                redtls__transport **out, char *err)
{
    *out = NULL;
    redtls__tls_transport *t = calloc(1, sizeof *t);
    if (!t) {
        close(fd);
        return redtls__fail(err, REDTLS_E_NOMEM, "out of memory");
    }
    t->base.ops = &tls_ops;
    t->fd = fd;
    t->has_client_cert = ctx->has_client_cert;
    t->ctx = ctx;
    t->slot = slot;
    t->pace.on = 1;
    redtls_status st;
    BIO *bio = NULL;
    t->ssl = SSL_new(ctx->ssl_ctx);
    if (t->ssl)
        bio = BIO_new(ctx->handshake_method);
    if (!t->ssl || !bio) {
        BIO_free(bio);
        st = redtls__fail(err, REDTLS_E_NOMEM, "out of memory creating the TLS session");
        goto fail;
    }
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio);
    SSL_set_app_data(t->ssl, t);
    /* Lean (see tls_release): many handshakes at once spend most of their
     * time waiting for the server. */
    SSL_set_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS);

    /* An absolute name ("cache.example.com.") names the same host: it is
     * verified and sent as SNI without its dot (RFC 6066 forbids the dot in
     * SNI; certificates never carry it), as curl and Go do. */
    size_t name_len = strlen(verify_name);
    if (name_len > 0 && verify_name[name_len - 1] == '.')
        name_len--;
    if (name_len == 0 || verify_name[name_len - 1] == '.') {
        st = redtls__fail(err, REDTLS_E_CONFIG, "name '%s' to verify is not a host name (empty label)", verify_name);
        goto fail;
    }
    t->name = strndup(verify_name, name_len);
    if (!t->name) {
        st = redtls__fail(err, REDTLS_E_NOMEM, "out of memory");
        goto fail;
    }
    int is_ip = redtls__is_ip_literal(t->name);
    if (!ctx->insecure) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
        /* RFC 9525: the identity is in the subjectAltName only; a subject
         * CN that happens to equal the host is never a match. */
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
        int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, t->name) : SSL_set1_host(t->ssl, t->name);
        if (ok != 1) {
            st = redtls__fail(err, REDTLS_E_CONFIG, "cannot verify against name '%s'", t->name);
            goto fail;
        }
    }
    /* SNI carries DNS names only (RFC 6066 forbids IP literals). */
    if (!is_ip && SSL_set_tlsext_host_name(t->ssl, t->name) != 1) {
        st = redtls__fail(err, REDTLS_E_CONFIG, "name '%s' cannot be sent as SNI", t->name);
        goto fail;
    }

    if (ctx->resumption && slot && slot->session) {
        /* A fresh copy each time, so this connection's fate cannot spoil
         * the kept one. */
        SSL_SESSION *copy = SSL_SESSION_dup(slot->session);
        if (copy) {
            SSL_set_session(t->ssl, copy);
            SSL_SESSION_free(copy);
        }
    }
    ERR_clear_error();
    *out = &t->base;
    return REDTLS_OK;
fail:
    ERR_clear_error();
    tls_close(&t->base, 0);
    return st;
}

static int tls_describe(redtls__transport *base, int what, char *out, size_t outlen)
{
    redtls__tls_transport *t = (redtls__tls_transport *)base;
    out[0] = '\0';
    if (what == REDTLS__TLS_VERSION) {
        snprintf(out, outlen, "%s", SSL_get_version(t->ssl));
        return 0;
    }
    if (what == REDTLS__TLS_CIPHER) {
        const char *c = SSL_get_cipher_name(t->ssl);
        snprintf(out, outlen, "%s", c ? c : "");
        return 0;
    }
    X509 *cert = SSL_get0_peer_certificate(t->ssl);
    if (!cert)
        return -1;
    if (what == REDTLS__TLS_SUBJECT) {
        format_subject(cert, out, outlen);
    } else if (what == REDTLS__TLS_SANS) {
        format_sans(cert, out, outlen);
    } else if (what == REDTLS__TLS_NOT_AFTER) {
        struct tm tm;
        if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1)
            return -1;
        strftime(out, outlen, "%Y-%m-%d %H:%M:%S UTC", &tm);
    } else {
        return -1;
    }
    return 0;
}

/* What a failed TLS handshake or record says: the cause a user can act
 * on, read from OpenSSL's reason codes and what the handshake saw. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "tls_internal.h"

/* What the mapper reads when no verify callback ran in this call. */
static const verify_note no_note;

int redtls__tls_drained_nomem(void)
{
    int nomem = 0;
    unsigned long e;
    while ((e = ERR_get_error()) != 0)
        if (ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE)
            nomem = 1;
    return nomem;
}

void redtls__tls_reason(char *out, size_t outlen)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(out, outlen, "%s", r ? r : "unknown error");
}

static int is_reason(unsigned long e, int reason)
{
    return e && ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == reason;
}

static int is_client_cert_alert(unsigned long e)
{
    return is_reason(e, SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED) || is_reason(e, SSL_R_SSLV3_ALERT_BAD_CERTIFICATE) ||
           is_reason(e, SSL_R_TLSV1_ALERT_UNKNOWN_CA) || is_reason(e, SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN) ||
           is_reason(e, SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED) ||
           is_reason(e, SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE) ||
           is_reason(e, SSL_R_TLSV1_ALERT_ACCESS_DENIED) || is_reason(e, SSL_R_TLSV1_ALERT_DECRYPT_ERROR);
}

static redtls_status client_cert_failure(redtls__tls_transport *t, const char *why, char *err)
{
    if (!t->has_client_cert)
        return redtls__fail(err, REDTLS_E_TLS_CLIENT_CERT,
                            "the server requires a client certificate and none is configured (%s)", why);
    return redtls__fail(err, REDTLS_E_TLS_CLIENT_CERT, "the server refused our client certificate (%s)", why);
}

/* What redtls offers in a handshake, for the failures a server explains
 * only with a handshake_failure alert. */
static void describe_offer(const redtls__tls_transport *t, char *out, size_t outlen)
{
    snprintf(out, outlen,
             "redtls offers %s%s, at OpenSSL security level 2 (no SHA-1 signatures, RSA keys of 2048 bits or more)%s",
             t->ctx->min_version >= 13 ? "TLS 1.3 only (minimum set to 1.3)" : "TLS 1.2 and 1.3",
             t->ctx->min_version >= 13 ? "" : ", TLS 1.2 only with ECDHE key exchange and AEAD ciphers (AES-GCM, "
                                              "ChaCha20-Poly1305)",
             t->ctx->custom_ciphers ? ", narrowed by the configured cipher lists" : "");
}

static redtls_status hostname_failure(const verify_note *note, int verr, const char *name, char *err)
{
    if (verr == X509_V_ERR_HOSTNAME_MISMATCH && !note->has_san)
        return redtls__fail(err, REDTLS_E_TLS_HOSTNAME,
                            "certificate verify failed: hostname '%s' cannot match: the certificate has no "
                            "subjectAltName, and its subject CN%s%s%s is not used for name checks (RFC 9525); the "
                            "server needs a certificate with DNS:%s in its subjectAltName",
                            name, note->cn[0] ? " '" : "", note->cn, note->cn[0] ? "'" : "", name);
    if (verr == X509_V_ERR_HOSTNAME_MISMATCH && !note->has_dns_san && note->cn[0])
        return redtls__fail(err, REDTLS_E_TLS_HOSTNAME,
                            "certificate verify failed: hostname '%s' does not match the certificate (SAN: %s; "
                            "its subject CN '%s' is not used for name checks, RFC 9525)",
                            name, note->sans[0] ? note->sans : "unknown", note->cn);
    return redtls__fail(err, REDTLS_E_TLS_HOSTNAME,
                        "certificate verify failed: %s '%s' does not match the certificate (SAN: %s)",
                        verr == X509_V_ERR_IP_ADDRESS_MISMATCH ? "IP address" : "hostname", name,
                        note->sans[0] ? note->sans : "unknown");
}

static int is_version_failure(unsigned long e)
{
    return is_reason(e, SSL_R_UNSUPPORTED_PROTOCOL) || is_reason(e, SSL_R_TLSV1_ALERT_PROTOCOL_VERSION) ||
           is_reason(e, SSL_R_NO_PROTOCOLS_AVAILABLE) || is_reason(e, SSL_R_WRONG_SSL_VERSION) ||
           is_reason(e, SSL_R_UNSUPPORTED_SSL_VERSION) || is_reason(e, SSL_R_VERSION_TOO_LOW) ||
           is_reason(e, SSL_R_VERSION_TOO_HIGH);
}

/* Failures a server reports with a handshake_failure or
 * insufficient_security alert, or OpenSSL finds on our side. */
static int is_cipher_or_sigalg_failure(unsigned long e)
{
    return is_reason(e, SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE) ||
           is_reason(e, SSL_R_TLSV1_ALERT_INSUFFICIENT_SECURITY) || is_reason(e, SSL_R_NO_SHARED_CIPHER) ||
           is_reason(e, SSL_R_NO_CIPHERS_AVAILABLE) || is_reason(e, SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS) ||
           is_reason(e, SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM) || is_reason(e, SSL_R_WRONG_SIGNATURE_TYPE) ||
           is_reason(e, SSL_R_LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED) || is_reason(e, SSL_R_WRONG_CIPHER_RETURNED);
}

/* sslerr: SSL_get_error()'s answer; sys_errno: errno right after the call. */
redtls_status redtls__tls_handshake_failure(redtls__tls_transport *t, int sslerr, int sys_errno, const char *name, char *err)
{
    char why[160];
    unsigned long e = ERR_peek_last_error();
    redtls__tls_reason(why, sizeof why);
    const verify_note *note = t->note ? t->note : &no_note;
    /* Without verification OpenSSL's verdict means nothing. */
    long vr = t->ctx->insecure ? X509_V_OK : SSL_get_verify_result(t->ssl);
    int verr = note->error ? note->error : (int)vr;
    if (verr == X509_V_ERR_OUT_OF_MEM || redtls__tls_drained_nomem())
        return redtls__fail(err, REDTLS_E_NOMEM, "out of memory during the TLS handshake");
    if (verr != X509_V_OK) {
        if (verr == X509_V_ERR_HOSTNAME_MISMATCH || verr == X509_V_ERR_IP_ADDRESS_MISMATCH)
            return hostname_failure(note, verr, name, err);
        return redtls__fail(err, REDTLS_E_TLS_VERIFY, "certificate verify failed: %s (depth %d, subject '%s')",
                            X509_verify_cert_error_string(verr), note->depth,
                            note->subject[0] ? note->subject : "unknown");
    }
    if (is_reason(e, SSL_R_EE_KEY_TOO_SMALL) || is_reason(e, SSL_R_CA_KEY_TOO_SMALL) ||
        is_reason(e, SSL_R_CA_MD_TOO_WEAK))
        return redtls__fail(err, REDTLS_E_TLS_VERIFY, "certificate verify failed: %s (security level 2)", why);
    if (t->cert_requested && (is_client_cert_alert(e) || is_reason(e, SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE)))
        return client_cert_failure(t, why, err);
    if (is_version_failure(e))
        return redtls__fail(err, REDTLS_E_TLS,
                            "TLS handshake failed: no protocol version in common: redtls accepts %s and the server "
                            "does not (it offers only older versions, or refused ours) (%s)",
                            t->ctx->min_version >= 13 ? "TLS 1.3 only (minimum set to 1.3)" : "TLS 1.2 and 1.3", why);
    if (is_cipher_or_sigalg_failure(e)) {
        char offer[320];
        describe_offer(t, offer, sizeof offer);
        if (is_reason(e, SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE) || is_reason(e, SSL_R_TLSV1_ALERT_INSUFFICIENT_SECURITY))
            return redtls__fail(err, REDTLS_E_TLS,
                                "TLS handshake failed: the server refused the handshake (%s), most likely because it "
                                "shares no cipher suite or signature algorithm with redtls: %s",
                                why, offer);
        return redtls__fail(err, REDTLS_E_TLS,
                            "TLS handshake failed: no cipher suite or signature algorithm in common (%s): %s", why,
                            offer);
    }
    if (is_reason(e, SSL_R_EXCESSIVE_MESSAGE_SIZE))
        return redtls__fail(err, REDTLS_E_TLS,
                            "TLS handshake failed: a handshake message from the server is over the size limit "
                            "(%s); for the certificate chain that limit is %ld bytes, so the server most likely "
                            "sends a chain that is too long (it needs only its certificate and the intermediates)",
                            why, SSL_get_max_cert_list(t->ssl));
    if (is_reason(e, SSL_R_UNSAFE_LEGACY_RENEGOTIATION_DISABLED))
        return redtls__fail(err, REDTLS_E_TLS,
                            "TLS handshake failed: the server does not support secure renegotiation (RFC 5746), "
                            "which OpenSSL 3 requires of TLS 1.2 servers (%s)",
                            why);
    if (is_reason(e, SSL_R_WRONG_VERSION_NUMBER) || is_reason(e, SSL_R_PACKET_LENGTH_TOO_LONG) ||
        is_reason(e, SSL_R_RECORD_LENGTH_MISMATCH) || is_reason(e, SSL_R_HTTP_REQUEST))
        return redtls__fail(err, REDTLS_E_TLS, "the server did not answer with TLS (plain-text port?): %s", why);
    /* SSL_ERROR_SYSCALL with errno 0 is an end of file OpenSSL did not see
     * as one. */
    if (t->eof || is_reason(e, SSL_R_UNEXPECTED_EOF_WHILE_READING) ||
        (e == 0 && sslerr == SSL_ERROR_SYSCALL && sys_errno == 0))
        return redtls__fail(err, REDTLS_E_TLS,
                            "the server closed the connection during the TLS handshake, without a TLS alert");
    if (e == 0 && sys_errno == ECONNRESET)
        return redtls__fail(err, REDTLS_E_TLS,
                            "the server reset the connection during the TLS handshake (%s), without a TLS alert",
                            strerror(sys_errno));
    if (e == 0 && sys_errno != 0)
        return redtls__fail(err, REDTLS_E_TLS, "TLS handshake failed: socket error: %s", strerror(sys_errno));
    if (e == 0)
        return redtls__fail(err, REDTLS_E_TLS, "TLS handshake failed without an error from OpenSSL (SSL error %d)",
                            sslerr);
    return redtls__fail(err, REDTLS_E_TLS, "TLS handshake failed: %s", why);
}

/* Maps a failed SSL_read/SSL_write after the handshake; sys_errno is errno
 * right after the call. */
redtls_status redtls__tls_io_failure(redtls__tls_transport *t, int rc, int sys_errno, const char *what, char *err)
{
    const char *reneg = t->refused_reneg ? " after redtls refused its request to renegotiate the TLS session" : "";
    /* What the socket and the TLS state say is decided first: the error
     * queue may hold what the application's own OpenSSL calls left there
     * (reads and writes no longer empty it beforehand). */
    if (t->peer_close_notify)
        return redtls__fail(err, REDTLS_E_CLOSED, "the server closed the TLS session (close_notify)%s", reneg);
    /* A socket error before any end of file (after one, a failed alert
     * send says nothing new). */
    if (t->io_errno && !t->eof)
        return redtls__fail(err, REDTLS_E_IO, "%s failed: %s%s", what, strerror(t->io_errno), reneg);
    int e = SSL_get_error(t->ssl, rc);
    unsigned long le = ERR_peek_last_error();
    char why[160];
    redtls__tls_reason(why, sizeof why);
    if (e == SSL_ERROR_ZERO_RETURN)
        return redtls__fail(err, REDTLS_E_CLOSED, "the server closed the TLS session (close_notify)%s", reneg);
    if ((e == SSL_ERROR_SSL && is_reason(le, SSL_R_UNEXPECTED_EOF_WHILE_READING)) ||
        (e == SSL_ERROR_SYSCALL && (sys_errno == 0 || t->eof)))
        return redtls__fail(err, REDTLS_E_EOF, "the server closed the connection without TLS close_notify%s", reneg);
    if (e == SSL_ERROR_SYSCALL)
        return redtls__fail(err, REDTLS_E_IO, "%s failed: %s%s", what, strerror(sys_errno), reneg);
    if (t->refused_reneg)
        return redtls__fail(err, REDTLS_E_TLS,
                            "the server asked to renegotiate the TLS session, which redtls refuses (renegotiation "
                            "is disabled: TLS 1.3 has none, and in TLS 1.2 it has been a source of attacks); the "
                            "server then ended the connection (%s)",
                            why);
    if (is_reason(le, SSL_R_NO_RENEGOTIATION))
        return redtls__fail(err, REDTLS_E_TLS, "TLS %s failed: the server refused to renegotiate (%s)", what, why);
    if (t->cert_requested && is_client_cert_alert(le))
        return client_cert_failure(t, why, err);
    return redtls__fail(err, REDTLS_E_TLS, "TLS %s failed: %s", what, why);
}

/* TLS client contexts: trust, the client certificate, the hardened
 * protocol settings, and the hooks (BIOs, callbacks) every session made
 * from the context uses (tls.c, tls_bio.c). */
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls_internal.h"

/* TLS 1.2: forward secrecy (ECDHE) and AEAD only. */
static const char default_tls12_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

static int load_pem_certs(const char *pem, size_t len, STACK_OF(X509_INFO) **out)
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (!b)
        return -1;
    STACK_OF(X509_INFO) *infos = PEM_X509_INFO_read_bio(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!infos)
        return -1;
    int n = 0;
    for (int i = 0; i < sk_X509_INFO_num(infos); i++)
        if (sk_X509_INFO_value(infos, i)->x509)
            n++;
    *out = infos;
    return n;
}

redtls_status redtls__tls_check_ca_pem(const char *pem, size_t len, char *err)
{
    STACK_OF(X509_INFO) *infos = NULL;
    int n = load_pem_certs(pem, len, &infos);
    if (infos)
        sk_X509_INFO_pop_free(infos, X509_INFO_free);
    int nomem = redtls__tls_drained_nomem();
    if (n <= 0)
        return nomem ? redtls__fail(err, REDTLS_E_NOMEM, "out of memory reading the CA PEM")
                     : redtls__fail(err, REDTLS_E_CONFIG, "CA PEM holds no certificate");
    return REDTLS_OK;
}

/* Leaf certificate, extra chain and key from PEM into *leaf, *chain, *key. */
static redtls_status parse_keypair(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
                                   X509 **leaf, STACK_OF(X509) **chain, EVP_PKEY **key, char *err)
{
    *leaf = NULL;
    *chain = NULL;
    *key = NULL;
    BIO *b = BIO_new_mem_buf(cert_pem, (int)cert_len);
    if (!b)
        return redtls__fail(err, REDTLS_E_NOMEM, "out of memory");
    *leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (!*leaf) {
        BIO_free(b);
        if (redtls__tls_drained_nomem())
            return redtls__fail(err, REDTLS_E_NOMEM, "out of memory reading the client certificate");
        return redtls__fail(err, REDTLS_E_CONFIG, "client certificate: no PEM certificate found");
    }
    *chain = sk_X509_new_null();
    X509 *extra;
    while (*chain && (extra = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        if (!sk_X509_push(*chain, extra))
            X509_free(extra);
    BIO_free(b);
    ERR_clear_error();

    b = BIO_new_mem_buf(key_pem, (int)key_len);
    if (!b)
        return redtls__fail(err, REDTLS_E_NOMEM, "out of memory");
    /* A NULL password callback would prompt on the terminal for an
     * encrypted key; an empty passphrase makes decryption fail instead. */
    *key = PEM_read_bio_PrivateKey(b, NULL, NULL, (void *)"");
    BIO_free(b);
    if (!*key) {
        if (redtls__tls_drained_nomem())
            return redtls__fail(err, REDTLS_E_NOMEM, "out of memory reading the client key");
        return redtls__fail(err, REDTLS_E_CONFIG,
                            "client key: no unencrypted PEM private key found (encrypted keys are not supported)");
    }
    if (X509_check_private_key(*leaf, *key) != 1) {
        if (redtls__tls_drained_nomem())
            return redtls__fail(err, REDTLS_E_NOMEM, "out of memory checking the client key");
        return redtls__fail(err, REDTLS_E_CONFIG, "client key does not match the client certificate");
    }
    return REDTLS_OK;
}

static void free_keypair(X509 *leaf, STACK_OF(X509) *chain, EVP_PKEY *key)
{
    X509_free(leaf);
    if (chain)
        sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
}

redtls_status redtls__tls_check_keypair(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
                                        char *err)
{
    X509 *leaf;
    STACK_OF(X509) *chain;
    EVP_PKEY *key;
    redtls_status st = parse_keypair(cert_pem, cert_len, key_pem, key_len, &leaf, &chain, &key, err);
    free_keypair(leaf, chain, key);
    return st;
}

static redtls_status check_tls12_ciphers(SSL_CTX *ctx, char *err)
{
    STACK_OF(SSL_CIPHER) *ciphers = SSL_CTX_get_ciphers(ctx);
    for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); i++) {
        const SSL_CIPHER *c = sk_SSL_CIPHER_value(ciphers, i);
        if (SSL_CIPHER_get_kx_nid(c) == NID_kx_any) /* a TLS 1.3 suite */
            continue;
        if (SSL_CIPHER_get_kx_nid(c) != NID_kx_ecdhe || !SSL_CIPHER_is_aead(c))
            return redtls__fail(err, REDTLS_E_CONFIG, "TLS 1.2 cipher %s is not ECDHE with AEAD; refusing it",
                                SSL_CIPHER_get_name(c));
    }
    return REDTLS_OK;
}

static redtls_status load_trust(SSL_CTX *ctx, const redtls__tls_settings *s, char *err)
{
    if (!s->ca_file && !s->ca_dir && !s->ca_pem) {
        if (SSL_CTX_set_default_verify_paths(ctx) != 1)
            return redtls__tls_drained_nomem() ? redtls__fail(err, REDTLS_E_NOMEM, "out of memory loading the system CA store")
                                   : redtls__fail(err, REDTLS_E_CONFIG, "cannot load the system CA store");
        return REDTLS_OK;
    }
    if ((s->ca_file || s->ca_dir) && SSL_CTX_load_verify_locations(ctx, s->ca_file, s->ca_dir) != 1) {
        char why[128];
        redtls__tls_reason(why, sizeof why);
        if (redtls__tls_drained_nomem())
            return redtls__fail(err, REDTLS_E_NOMEM, "out of memory loading the CA");
        return redtls__fail(err, REDTLS_E_CONFIG, "cannot load CA %s '%s': %s", s->ca_file ? "file" : "directory",
                            s->ca_file ? s->ca_file : s->ca_dir, why);
    }
    if (s->ca_pem) {
        STACK_OF(X509_INFO) *infos = NULL;
        int n = load_pem_certs(s->ca_pem, s->ca_pem_len, &infos);
        X509_STORE *store = SSL_CTX_get_cert_store(ctx);
        for (int i = 0; n > 0 && i < sk_X509_INFO_num(infos); i++) {
            X509_INFO *xi = sk_X509_INFO_value(infos, i);
            if (xi->x509 && X509_STORE_add_cert(store, xi->x509) != 1)
                n = -1;
        }
        if (infos)
            sk_X509_INFO_pop_free(infos, X509_INFO_free);
        if (n <= 0)
            return redtls__tls_drained_nomem() ? redtls__fail(err, REDTLS_E_NOMEM, "out of memory loading the CA PEM")
                                   : redtls__fail(err, REDTLS_E_CONFIG, "CA PEM could not be loaded");
    }
    return REDTLS_OK;
}

static redtls_status load_client_cert(SSL_CTX *ctx, const redtls__tls_settings *s, char *err)
{
    X509 *leaf;
    STACK_OF(X509) *chain;
    EVP_PKEY *key;
    redtls_status st = parse_keypair(s->cert_pem, s->cert_pem_len, s->key_pem.data, s->key_pem.len, &leaf, &chain,
                                     &key, err);
    if (st == REDTLS_OK) {
        if (SSL_CTX_use_certificate(ctx, leaf) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
            SSL_CTX_set1_chain(ctx, chain) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
            char why[128];
            redtls__tls_reason(why, sizeof why);
            st = redtls__tls_drained_nomem() ? redtls__fail(err, REDTLS_E_NOMEM, "out of memory installing the client certificate")
                                 : redtls__fail(err, REDTLS_E_CONFIG, "client certificate cannot be used: %s", why);
        }
    }
    free_keypair(leaf, chain, key);
    return st;
}

redtls_status redtls__tls_ctx_new(const redtls__tls_settings *s, redtls__tls_ctx **out, char *err)
{
    redtls_status st = REDTLS_OK;
    *out = NULL;
    redtls__tls_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return redtls__fail(err, REDTLS_E_NOMEM, "out of memory");
    atomic_init(&c->refs, 1);
    c->ssl_ctx = SSL_CTX_new(TLS_client_method());
    c->bio_method = redtls__tls_bio_method_new(0);
    c->handshake_method = redtls__tls_bio_method_new(1);
    if (!c->ssl_ctx || !c->bio_method || !c->handshake_method) {
        st = redtls__fail(err, REDTLS_E_NOMEM, "out of memory creating the TLS context");
        goto fail;
    }

    SSL_CTX *ctx = c->ssl_ctx;
    SSL_CTX_set_min_proto_version(ctx, s->min_version >= 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    /* Level 2: RSA/DH keys >= 2048 bits, ECC >= 224 bits, no SHA-1 signatures. */
    SSL_CTX_set_security_level(ctx, 2);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Read whole socket buffers, not a record header and then its body:
     * one recv per batch of replies instead of two per record. */
    SSL_CTX_set_read_ahead(ctx, 1);
    if (SSL_CTX_set_cipher_list(ctx, default_tls12_ciphers) != 1 ||
        (s->tls12_ciphers && SSL_CTX_set_cipher_list(ctx, s->tls12_ciphers) != 1)) {
        st = redtls__fail(err, REDTLS_E_CONFIG, "TLS 1.2 cipher list '%s' selects no usable cipher",
                          s->tls12_ciphers ? s->tls12_ciphers : default_tls12_ciphers);
        goto fail;
    }
    if ((st = check_tls12_ciphers(ctx, err)) != REDTLS_OK)
        goto fail;
    if (s->tls13_suites && SSL_CTX_set_ciphersuites(ctx, s->tls13_suites) != 1) {
        st = redtls__fail(err, REDTLS_E_CONFIG, "TLS 1.3 cipher suites '%s' not usable", s->tls13_suites);
        goto fail;
    }
    c->insecure = s->insecure;
    SSL_CTX_set_verify(ctx, s->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, s->insecure ? NULL : redtls__tls_verify_cb);
    SSL_CTX_set_cert_verify_callback(ctx, redtls__tls_cert_verify_cb, NULL);
    if (!s->insecure && (st = load_trust(ctx, s, err)) != REDTLS_OK)
        goto fail;
    if (s->cert_pem) {
        if ((st = load_client_cert(ctx, s, err)) != REDTLS_OK)
            goto fail;
        c->has_client_cert = 1;
    }
    SSL_CTX_set_cert_cb(ctx, redtls__tls_cert_cb, NULL);
    SSL_CTX_set_info_callback(ctx, redtls__tls_info_cb);
    c->min_version = s->min_version >= 13 ? 13 : 12;
    c->custom_ciphers = s->tls12_ciphers != NULL || s->tls13_suites != NULL;
    c->resumption = s->resumption;
    if (s->resumption) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, redtls__tls_new_session_cb);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
    ERR_clear_error();
    *out = c;
    return REDTLS_OK;
fail:
    ERR_clear_error();
    redtls__tls_ctx_free(c);
    return st;
}

redtls__tls_ctx *redtls__tls_ctx_ref(redtls__tls_ctx *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void redtls__tls_ctx_free(redtls__tls_ctx *c)
{
    if (!c)
        return;
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    SSL_CTX_free(c->ssl_ctx);
    BIO_meth_free(c->bio_method);
    BIO_meth_free(c->handshake_method);
    free(c);
}

/* After a read or write that did not succeed: what it waits for (POLLIN,
 * POLLOUT), or 0 when it failed. The socket BIO records in io_want whether
 * its last call met EAGAIN; when that is the direction the operation
 * itself uses (a read waiting to read, a write waiting to write), the call
 * stopped for that reason alone, which is what SSL_get_error() would say,
 * without its dependence on the thread's error queue (which must otherwise
 * be emptied before every call: ERR_clear_error() costs about 800
 * instructions, even a look about 200). So the hot path never touches the
 * queue. Anything else (a read that met EAGAIN sending an alert, a write
 * that has to read) is rare and SSL_get_error() decides. */

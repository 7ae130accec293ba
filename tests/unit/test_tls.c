/* lib/tls.c: context building, and the verified handshake against an
 * in-process OpenSSL server on the other end of a socketpair (no network). */
#include "unit_util.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls.h"

static char dir[64];
static char ca_crt[128], srv_crt[128], srv_key[128], other_ca[128], iponly_crt[128], cnonly_crt[128];

static int group_setup(void **state)
{
    (void)state;
    unit_tmpdir(dir, sizeof dir);
    int rc = unit_sh("cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                     "-keyout ca.key -out ca.crt -subj /CN=redtls-unit-ca -days 2 "
                     "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
                     dir);
    if (rc != 0)
        return -1;
    char ext[160];
    snprintf(ext, sizeof ext, "%s/ext.cnf", dir);
    unit_write_file(ext, "subjectAltName=DNS:redis.test,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n");
    rc = unit_sh("cd '%s' && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                 "-keyout srv.key -out srv.csr -subj /CN=redis.test && "
                 "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
                 "-extfile ext.cnf -out srv.crt",
                 dir);
    if (rc != 0)
        return -1;
    /* Same key, other names: SAN IP:127.0.0.1 only, and no SAN at all (both
     * with CN=redis.test, which must never be matched). */
    unit_write_file(ext, "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n");
    rc = unit_sh("cd '%s' && openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
                 "-extfile ext.cnf -out iponly.crt && "
                 "printf 'basicConstraints=CA:FALSE\n' > nosan.cnf && "
                 "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
                 "-extfile nosan.cnf -out cnonly.crt",
                 dir);
    if (rc != 0)
        return -1;
    unit_make_cert(dir, "other");
    snprintf(ca_crt, sizeof ca_crt, "%s/ca.crt", dir);
    snprintf(srv_crt, sizeof srv_crt, "%s/srv.crt", dir);
    snprintf(srv_key, sizeof srv_key, "%s/srv.key", dir);
    snprintf(other_ca, sizeof other_ca, "%s/other.crt", dir);
    snprintf(iponly_crt, sizeof iponly_crt, "%s/iponly.crt", dir);
    snprintf(cnonly_crt, sizeof cnonly_crt, "%s/cnonly.crt", dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unit_rmtree(dir);
    return 0;
}

/* ---- the in-process server ---- */

enum srv_mode {
    SRV_PONG_SHUTDOWN, /* answer one line with +PONG, then close_notify */
    SRV_PONG_ABRUPT,   /* answer, then close the socket without close_notify */
    SRV_PLAIN,         /* not TLS at all: an error line, then close */
    SRV_SILENT,        /* never answer; wait for the client to go away */
    SRV_ACCEPT_ONLY,   /* run the handshake (which may fail), then close */
    SRV_CLOSE_IN_HANDSHAKE, /* read the ClientHello, then close: end of file */
    SRV_RESET_IN_HANDSHAKE, /* close with the ClientHello unread: a reset */
    SRV_RENEGOTIATE    /* TLS 1.2; after one line, ask to renegotiate, read on */
};

typedef struct srv {
    int fd;
    enum srv_mode mode;
    int max_tls12;
    const char *crt; /* certificate file (NULL: srv_crt) */
    pthread_t thread;
    int accepted;  /* SSL_accept result */
    char sni[256]; /* the SNI the client sent, "" without */
} srv;

static void *srv_main(void *arg)
{
    srv *s = arg;
    char buf[256];
    /* The server's own writes use plain write(); a client that has gone
     * away must not end the test process through this thread. SIGPIPE is
     * directed at the writing thread, so blocking it here is enough. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (s->mode == SRV_PLAIN) {
        recv(s->fd, buf, sizeof buf, 0);
        send(s->fd, "-ERR wrong protocol\r\n", 21, MSG_NOSIGNAL);
        close(s->fd);
        return NULL;
    }
    if (s->mode == SRV_SILENT) {
        while (recv(s->fd, buf, sizeof buf, 0) > 0)
            ;
        close(s->fd);
        return NULL;
    }
    if (s->mode == SRV_CLOSE_IN_HANDSHAKE || s->mode == SRV_RESET_IN_HANDSHAKE) {
        /* A Unix socket closed with unread data resets its peer. */
        char hello[16384]; /* the whole ClientHello, written at once */
        if (s->mode == SRV_CLOSE_IN_HANDSHAKE)
            recv(s->fd, hello, sizeof hello, 0);
        else
            recv(s->fd, buf, 1, MSG_PEEK);
        close(s->fd);
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate_chain_file(ctx, s->crt ? s->crt : srv_crt);
    SSL_CTX_use_PrivateKey_file(ctx, srv_key, SSL_FILETYPE_PEM);
    if (s->max_tls12 || s->mode == SRV_RENEGOTIATE)
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, s->fd);
    s->accepted = SSL_accept(ssl);
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    snprintf(s->sni, sizeof s->sni, "%s", sni ? sni : "");
    if (s->accepted == 1 && s->mode == SRV_RENEGOTIATE) {
        /* The client's no_renegotiation warning makes this SSL_read fail
         * with a fatal handshake_failure alert to the client. */
        if (SSL_read(ssl, buf, sizeof buf) > 0 && SSL_renegotiate(ssl) == 1 && SSL_do_handshake(ssl) == 1)
            SSL_read(ssl, buf, sizeof buf);
    } else if (s->accepted == 1 && s->mode != SRV_ACCEPT_ONLY) {
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n > 0)
            SSL_write(ssl, "+PONG\r\n", 7);
        if (s->mode == SRV_PONG_SHUTDOWN) {
            SSL_shutdown(ssl);
        }
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(s->fd);
    ERR_clear_error();
    return NULL;
}

/* Starts the server on one end of a socketpair; returns the client end,
 * non-blocking as the library expects. */
static int srv_start_cert(srv *s, enum srv_mode mode, int max_tls12, const char *crt)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    memset(s, 0, sizeof *s);
    s->fd = sv[1];
    s->mode = mode;
    s->max_tls12 = max_tls12;
    s->crt = crt;
    assert_int_equal(pthread_create(&s->thread, NULL, srv_main, s), 0);
    int fl = fcntl(sv[0], F_GETFL);
    assert_int_equal(fcntl(sv[0], F_SETFL, fl | O_NONBLOCK), 0);
    return sv[0];
}

static int srv_start(srv *s, enum srv_mode mode, int max_tls12)
{
    return srv_start_cert(s, mode, max_tls12, NULL);
}

static void srv_join(srv *s)
{
    pthread_join(s->thread, NULL);
}

static redtls__tls_ctx *client_ctx(const char *ca, int min_version)
{
    redtls__tls_settings st;
    memset(&st, 0, sizeof st);
    st.min_version = min_version;
    st.ca_file = (char *)(uintptr_t)ca;
    redtls__tls_ctx *ctx = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(redtls__tls_ctx_new(&st, &ctx, err), REDTLS_OK);
    assert_non_null(ctx);
    return ctx;
}

/* ---- no handshake ---- */

static void test_is_ip_literal(void **state)
{
    (void)state;
    assert_true(redtls__is_ip_literal("127.0.0.1"));
    assert_true(redtls__is_ip_literal("::1"));
    assert_true(redtls__is_ip_literal("2001:db8::1"));
    assert_false(redtls__is_ip_literal("[::1]"));
    assert_false(redtls__is_ip_literal("redis.test"));
    assert_false(redtls__is_ip_literal("127.0.0.1.example"));
    assert_false(redtls__is_ip_literal("1.2.3"));
    assert_false(redtls__is_ip_literal(""));
}

static void test_check_pems(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    size_t clen, klen;
    char *crt = unit_slurp(srv_crt, &clen);
    char *key = unit_slurp(srv_key, &klen);
    assert_status(redtls__tls_check_ca_pem(crt, clen, err), REDTLS_OK);
    assert_status(redtls__tls_check_ca_pem(key, klen, err), REDTLS_E_CONFIG);
    assert_string_equal(err, "CA PEM holds no certificate");
    assert_status(redtls__tls_check_ca_pem("", 0, err), REDTLS_E_CONFIG);
    assert_status(redtls__tls_check_keypair(crt, clen, key, klen, err), REDTLS_OK);
    /* A truncated certificate. */
    assert_status(redtls__tls_check_keypair(crt, clen / 2, key, klen, err), REDTLS_E_CONFIG);
    assert_contains(err, "client certificate");
    /* No OpenSSL error is left behind for the next caller. */
    assert_int_equal(ERR_peek_error(), 0);
    free(crt);
    free(key);
}

static void test_ctx_new(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    redtls__tls_settings st;
    memset(&st, 0, sizeof st);
    st.min_version = 12;
    redtls__tls_ctx *ctx = NULL;
    assert_status(redtls__tls_ctx_new(&st, &ctx, err), REDTLS_OK); /* system store */
    redtls__tls_ctx_free(ctx);
    redtls__tls_ctx_free(NULL);

    char missing[160];
    snprintf(missing, sizeof missing, "%s/missing-ca.pem", dir);
    st.ca_file = missing;
    ctx = (redtls__tls_ctx *)1;
    assert_status(redtls__tls_ctx_new(&st, &ctx, err), REDTLS_E_CONFIG);
    assert_null(ctx);
    assert_contains(err, missing);

    /* Insecure mode does not load trust at all. */
    st.insecure = 1;
    assert_status(redtls__tls_ctx_new(&st, &ctx, err), REDTLS_OK);
    redtls__tls_ctx_free(ctx);

    st.insecure = 0;
    st.ca_file = NULL;
    st.tls12_ciphers = (char *)(uintptr_t) "ECDHE-ECDSA-AES128-SHA256";
    assert_status(redtls__tls_ctx_new(&st, &ctx, err), REDTLS_E_CONFIG);
    assert_contains(err, "is not ECDHE with AEAD");
}

/* ---- handshakes ---- */

static void test_handshake_ok(void **state)
{
    (void)state;
    srv s;
    int fd = srv_start(&s, SRV_PONG_SHUTDOWN, 0);
    redtls__tls_ctx *ctx = client_ctx(ca_crt, 12);
    redtls__transport *t = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(unit_tls_connect(ctx, fd, "redis.test", NULL, redtls__deadline_after(3000), &t, err), REDTLS_OK);
    assert_non_null(t);

    char info[384];
    assert_int_equal(redtls__transport_describe(t, REDTLS__TLS_VERSION, info, sizeof info), 0);
    assert_string_equal(info, "TLSv1.3");
    assert_int_equal(redtls__transport_describe(t, REDTLS__TLS_CIPHER, info, sizeof info), 0);
    assert_contains(info, "TLS_");
    assert_int_equal(redtls__transport_describe(t, REDTLS__TLS_SUBJECT, info, sizeof info), 0);
    assert_string_equal(info, "CN=redis.test");
    assert_int_equal(redtls__transport_describe(t, REDTLS__TLS_SANS, info, sizeof info), 0);
    assert_string_equal(info, "DNS:redis.test, IP:127.0.0.1");
    assert_int_equal(redtls__transport_describe(t, REDTLS__TLS_NOT_AFTER, info, sizeof info), 0);
    assert_int_equal(strlen(info), strlen("YYYY-MM-DD HH:MM:SS UTC"));
    assert_contains(info, " UTC");
    assert_int_equal(redtls__transport_verdict_pending(t), 0);

    assert_status(unit_write_all(t, "PING\r\n", 6, redtls__deadline_after(3000), err), REDTLS_OK);
    char buf[32];
    size_t got = 0;
    assert_status(unit_read(t, buf, sizeof buf, &got, redtls__deadline_after(3000), err), REDTLS_OK);
    assert_int_equal(got, 7);
    assert_memory_equal(buf, "+PONG\r\n", 7);
    /* close_notify: a clean end. */
    assert_status(unit_read(t, buf, sizeof buf, &got, redtls__deadline_after(3000), err), REDTLS_E_CLOSED);
    assert_contains(err, "close_notify");
    t->ops->close(t, 1);
    srv_join(&s);
    redtls__tls_ctx_free(ctx);
}

static void test_handshake_ip_name(void **state)
{
    (void)state;
    srv s;
    int fd = srv_start(&s, SRV_ACCEPT_ONLY, 0);
    redtls__tls_ctx *ctx = client_ctx(ca_crt, 12);
    redtls__transport *t = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(unit_tls_connect(ctx, fd, "127.0.0.1", NULL, redtls__deadline_after(3000), &t, err), REDTLS_OK);
    t->ops->close(t, 1);
    srv_join(&s);
    redtls__tls_ctx_free(ctx);
}

/* Runs a handshake that must fail with want; returns the message. */
static const char *expect_failure_cert(enum srv_mode mode, int max_tls12, const char *crt, const char *ca,
                                       int min_version, const char *name, redtls_status want, const char *mention)
{
    static char err[REDTLS__ERRMSG_MAX];
    srv s;
    int fd = srv_start_cert(&s, mode, max_tls12, crt);
    redtls__tls_ctx *ctx = client_ctx(ca, min_version);
    redtls__transport *t = (redtls__transport *)1;
    err[0] = '\0';
    redtls_status st = unit_tls_connect(ctx, fd, name, NULL, redtls__deadline_after(3000), &t, err);
    srv_join(&s);
    redtls__tls_ctx_free(ctx);
    if (st != want)
        fail_msg("handshake with '%s' gave %s (\"%s\"), expected %s", name, redtls_strerror(st), err,
                 redtls_strerror(want));
    assert_null(t);
    assert_contains(err, mention);
    /* errno 0 must never reach a message as "Success". */
    assert_not_contains(err, "Success");
    return err;
}

static void expect_handshake_failure(enum srv_mode mode, int max_tls12, const char *ca, int min_version,
                                     const char *name, redtls_status want, const char *mention)
{
    expect_failure_cert(mode, max_tls12, NULL, ca, min_version, name, want, mention);
}

static void test_hostname_mismatch(void **state)
{
    (void)state;
    expect_handshake_failure(SRV_ACCEPT_ONLY, 0, ca_crt, 12, "other.test", REDTLS_E_TLS_HOSTNAME,
                             "certificate verify failed: hostname 'other.test' does not match the certificate "
                             "(SAN: DNS:redis.test, IP:127.0.0.1)");
}

static void test_ip_mismatch(void **state)
{
    (void)state;
    expect_handshake_failure(SRV_ACCEPT_ONLY, 0, ca_crt, 12, "127.0.0.2", REDTLS_E_TLS_HOSTNAME,
                             "IP address '127.0.0.2' does not match the certificate");
}

static void test_untrusted_issuer(void **state)
{
    (void)state;
    expect_handshake_failure(SRV_ACCEPT_ONLY, 0, other_ca, 12, "redis.test", REDTLS_E_TLS_VERIFY,
                             "certificate verify failed: unable to get local issuer certificate");
}

static void test_plain_text_server(void **state)
{
    (void)state;
    expect_handshake_failure(SRV_PLAIN, 0, ca_crt, 12, "redis.test", REDTLS_E_TLS, "did not answer with TLS");
}

static void test_protocol_version_mismatch(void **state)
{
    (void)state;
    expect_handshake_failure(SRV_ACCEPT_ONLY, 1, ca_crt, 13, "redis.test", REDTLS_E_TLS,
                             "no protocol version in common");
}

static void test_handshake_timeout(void **state)
{
    (void)state;
    srv s;
    int fd = srv_start(&s, SRV_SILENT, 0);
    redtls__tls_ctx *ctx = client_ctx(ca_crt, 12);
    redtls__transport *t = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    int64_t t0 = redtls__now_ms();
    assert_status(unit_tls_connect(ctx, fd, "redis.test", NULL, redtls__deadline_after(80), &t, err),
                  REDTLS_E_HANDSHAKE_TIMEOUT);
    int64_t took = redtls__now_ms() - t0;
    assert_true(took >= 75 && took < 2000);
    assert_contains(err, "handshake timeout");
    srv_join(&s); /* the client closed its end, so the server returns */
    redtls__tls_ctx_free(ctx);
}

static void test_abrupt_close_is_eof(void **state)
{
    (void)state;
    srv s;
    int fd = srv_start(&s, SRV_PONG_ABRUPT, 0);
    redtls__tls_ctx *ctx = client_ctx(ca_crt, 12);
    redtls__transport *t = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(unit_tls_connect(ctx, fd, "redis.test", NULL, redtls__deadline_after(3000), &t, err), REDTLS_OK);
    assert_status(unit_write_all(t, "PING\r\n", 6, redtls__deadline_after(3000), err), REDTLS_OK);
    char buf[32];
    size_t got = 0;
    assert_status(unit_read(t, buf, sizeof buf, &got, redtls__deadline_after(3000), err), REDTLS_OK);
    assert_int_equal(got, 7);
    /* Truncation without close_notify is never a clean end. */
    assert_status(unit_read(t, buf, sizeof buf, &got, redtls__deadline_after(3000), err), REDTLS_E_EOF);
    assert_contains(err, "without TLS close_notify");
    t->ops->close(t, 0);
    srv_join(&s);
    redtls__tls_ctx_free(ctx);
}

/* An absolute name is verified and sent as SNI without its dot. */
static void test_trailing_dot(void **state)
{
    (void)state;
    const char *names[] = {"redis.test.", "REDIS.test.", "127.0.0.1."};
    const char *want_sni[] = {"redis.test", "REDIS.test", ""};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        srv s;
        int fd = srv_start(&s, SRV_ACCEPT_ONLY, 0);
        redtls__tls_ctx *ctx = client_ctx(ca_crt, 12);
        redtls__transport *t = NULL;
        char err[REDTLS__ERRMSG_MAX] = "";
        redtls_status st = unit_tls_connect(ctx, fd, names[i], NULL, redtls__deadline_after(3000), &t, err);
        if (st != REDTLS_OK)
            fail_msg("'%s': %s (%s)", names[i], redtls_strerror(st), err);
        t->ops->close(t, 1);
        srv_join(&s);
        redtls__tls_ctx_free(ctx);
        assert_string_equal(s.sni, want_sni[i]);
    }
    /* One dot ends a name; more leave an empty label. */
    expect_handshake_failure(SRV_SILENT, 0, ca_crt, 12, "redis.test..", REDTLS_E_CONFIG, "empty label");
    expect_handshake_failure(SRV_SILENT, 0, ca_crt, 12, ".", REDTLS_E_CONFIG, "empty label");
    /* Verified as "other.test": the dot does not weaken the check. */
    expect_handshake_failure(SRV_ACCEPT_ONLY, 0, ca_crt, 12, "other.test.", REDTLS_E_TLS_HOSTNAME,
                             "hostname 'other.test' does not match");
}

/* RFC 9525: the subject CN is never matched, whether the certificate has
 * no subjectAltName at all or one without DNS names. */
static void test_subject_cn_never_matched(void **state)
{
    (void)state;
    const char *msg = expect_failure_cert(SRV_ACCEPT_ONLY, 0, cnonly_crt, ca_crt, 12, "redis.test",
                                          REDTLS_E_TLS_HOSTNAME, "the certificate has no subjectAltName");
    assert_contains(msg, "subject CN 'redis.test' is not used");
    msg = expect_failure_cert(SRV_ACCEPT_ONLY, 0, iponly_crt, ca_crt, 12, "redis.test", REDTLS_E_TLS_HOSTNAME,
                              "hostname 'redis.test' does not match the certificate (SAN: IP:127.0.0.1;");
    assert_contains(msg, "subject CN 'redis.test' is not used");
    /* The IP SAN of the same certificate still matches. */
    srv s;
    int fd = srv_start_cert(&s, SRV_ACCEPT_ONLY, 0, iponly_crt);
    redtls__tls_ctx *ctx = client_ctx(ca_crt, 12);
    redtls__transport *t = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(unit_tls_connect(ctx, fd, "127.0.0.1", NULL, redtls__deadline_after(3000), &t, err), REDTLS_OK);
    t->ops->close(t, 1);
    srv_join(&s);
    redtls__tls_ctx_free(ctx);
}

/* A peer that ends the connection in the middle of the handshake: the
 * message says so (never "Success" from errno 0). */
static void test_closed_during_handshake(void **state)
{
    (void)state;
    expect_handshake_failure(SRV_CLOSE_IN_HANDSHAKE, 0, ca_crt, 12, "redis.test", REDTLS_E_TLS,
                             "the server closed the connection during the TLS handshake");
    expect_handshake_failure(SRV_RESET_IN_HANDSHAKE, 0, ca_crt, 12, "redis.test", REDTLS_E_TLS,
                             "the server reset the connection during the TLS handshake");
}

/* The server asks to renegotiate; redtls refuses and says so when the
 * server then ends the connection. */
static void test_renegotiation_refused(void **state)
{
    (void)state;
    srv s;
    int fd = srv_start(&s, SRV_RENEGOTIATE, 0);
    redtls__tls_ctx *ctx = client_ctx(ca_crt, 12);
    redtls__transport *t = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(unit_tls_connect(ctx, fd, "redis.test", NULL, redtls__deadline_after(3000), &t, err), REDTLS_OK);
    assert_status(unit_write_all(t, "PING\r\n", 6, redtls__deadline_after(3000), err), REDTLS_OK);
    char buf[32];
    size_t got = 0;
    assert_status(unit_read(t, buf, sizeof buf, &got, redtls__deadline_after(3000), err), REDTLS_E_TLS);
    assert_contains(err, "asked to renegotiate the TLS session, which redtls refuses");
    assert_contains(err, "alert handshake failure");
    t->ops->close(t, 0);
    srv_join(&s);
    redtls__tls_ctx_free(ctx);
}

/* A read with no room, while OpenSSL still holds part of a record, does
 * nothing: SSL_read_ex would answer "error", which must not read as the
 * server closing the connection (the cluster reads with a byte budget). */
static void test_read_without_room(void **state)
{
    (void)state;
    srv s;
    int fd = srv_start(&s, SRV_PONG_SHUTDOWN, 0);
    redtls__tls_ctx *ctx = client_ctx(ca_crt, 12);
    redtls__transport *t = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(unit_tls_connect(ctx, fd, "redis.test", NULL, redtls__deadline_after(3000), &t, err), REDTLS_OK);
    assert_non_null(t);
    assert_status(unit_write_all(t, "PING\r\n", 6, redtls__deadline_after(3000), err), REDTLS_OK);
    char buf[32];
    size_t got = 0;
    assert_status(unit_read(t, buf, 3, &got, redtls__deadline_after(3000), err), REDTLS_OK);
    assert_int_equal(got, 3);
    int want = -1;
    got = 99;
    assert_status(t->ops->read(t, buf, 0, &got, &want, err), REDTLS_OK);
    assert_int_equal(got, 0);
    assert_int_equal(want, 0);
    assert_status(unit_read(t, buf + 3, sizeof buf - 3, &got, redtls__deadline_after(3000), err), REDTLS_OK);
    assert_int_equal(got, 4);
    assert_memory_equal(buf, "+PONG\r\n", 7);
    t->ops->close(t, 1);
    srv_join(&s);
    redtls__tls_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_without_room),
        cmocka_unit_test(test_is_ip_literal),
        cmocka_unit_test(test_check_pems),
        cmocka_unit_test(test_ctx_new),
        cmocka_unit_test(test_handshake_ok),
        cmocka_unit_test(test_handshake_ip_name),
        cmocka_unit_test(test_hostname_mismatch),
        cmocka_unit_test(test_ip_mismatch),
        cmocka_unit_test(test_untrusted_issuer),
        cmocka_unit_test(test_plain_text_server),
        cmocka_unit_test(test_protocol_version_mismatch),
        cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_abrupt_close_is_eof),
        cmocka_unit_test(test_trailing_dot),
        cmocka_unit_test(test_subject_cn_never_matched),
        cmocka_unit_test(test_closed_during_handshake),
        cmocka_unit_test(test_renegotiation_refused),
    };
    return cmocka_run_group_tests_name("tls", tests, group_setup, group_teardown);
}

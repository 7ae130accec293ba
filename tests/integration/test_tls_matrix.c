/* TLS matrix: every way a TLS connection can go wrong, against real
 * servers, each asserting the specific redtls_status, and that the token
 * never left the client when verification failed. Certificate cases use the
 * harness's sink, which records every byte it receives after a handshake. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <redtls/redtls.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_client.h"
#include "lab_hostile.h"

#define TOKEN "lab-Secret-Token-4d9f21"
/* Stretched under valgrind: a process's first TLS handshake alone can
 * take 2 s there. */
#define TIMEOUT_MS (3000U * (unsigned)lab_time_scale())
#define SHORT_HANDSHAKE_MS 500

/* Servers shared by the whole file. */
static lab_server redis_main; /* TLS (server.crt) + plain port, requirepass */
static lab_server redis_mtls; /* TLS, client certificate required */

/* Per test; torn down even when an assertion fails. */
static struct {
    lab_server srv;
    redtls_config *cfg;
    redtls_conn *conn;
} t;

static int group_setup(void **state)
{
    (void)state;
    if (lab_init(60) != 0 || lab_certs(NULL) == NULL) {
        return -1;
    }
    if (lab_redis_start(&redis_main,
                        &(lab_redis_opts){.tls = 1, .plain_port = 1, .password = TOKEN}) != 0) {
        return -1;
    }
    if (lab_redis_start(&redis_mtls, &(lab_redis_opts){.tls = 1, .auth_clients = "yes", .password = TOKEN}) !=
        0) {
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    lab_stop(&redis_main);
    lab_stop(&redis_mtls);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    memset(&t, 0, sizeof t);
    t.srv.listen_fd = -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    redtls_conn_free(t.conn);
    redtls_config_free(t.cfg);
    lab_stop(&t.srv);
    memset(&t, 0, sizeof t);
    return 0;
}

/* A config for host:port trusting ca.crt, with the token and short timeouts. */
static redtls_config *make_cfg(const char *host, uint16_t port)
{
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    lab_client_protocol(cfg);
    assert_cfg_status(cfg, redtls_config_set_host(cfg, host, port), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_ca_file(cfg, lab_cert("ca.crt")), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_token(cfg, TOKEN), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_connect_timeout_ms(cfg, TIMEOUT_MS), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_handshake_timeout_ms(cfg, TIMEOUT_MS), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, TIMEOUT_MS), REDTLS_OK);
    t.cfg = cfg;
    return cfg;
}

/* Creates t.conn from t.cfg and connects it. */
static redtls_status connect_now(void)
{
    redtls_conn_free(t.conn);
    t.conn = NULL;
    assert_cfg_status(t.cfg, redtls_conn_new(t.cfg, &t.conn), REDTLS_OK);
    assert_non_null(t.conn);
    return redtls_conn_connect(t.conn);
}

/* After a failed connect: the connection is down, the message is there and
 * secret-free, and (with a sink) the token never arrived and the sink never
 * completed a handshake. */
static void assert_failed_safely(const lab_server *sink)
{
    const char *msg = redtls_conn_errmsg(t.conn);
    assert_int_equal(redtls_conn_is_connected(t.conn), 0);
    assert_non_null(msg);
    print_message("    %s\n", msg);
    assert_true(strlen(msg) > 0);
    assert_not_contains(msg, TOKEN);
    if (sink != NULL) {
        redtls_conn_free(t.conn);
        t.conn = NULL;
        assert_int_equal(lab_sink_wait_idle(sink, 3000), 0);
        assert_true(lab_sink_count(sink, "accept") >= 1);
        assert_int_equal(lab_sink_count(sink, "handshake-ok"), 0);
        assert_false(lab_sink_received(sink, TOKEN));
    }
}

static void start_sink(const char *name)
{
    char crt[64], key[64];
    snprintf(crt, sizeof crt, "%s.crt", name);
    snprintf(key, sizeof key, "%s.key", name);
    assert_int_equal(lab_sink_start(&t.srv, lab_cert(crt), lab_cert(key)), 0);
}

static void set_get_roundtrip(void)
{
    struct redisReply *r = NULL;
    assert_conn_status(t.conn, redtls_conn_command(t.conn, &r, "SET %s %s", "matrix:k", "v1"), REDTLS_OK);
    assert_reply_str(r, REDTLS_REPLY_STATUS, "OK");
    redtls_reply_free(r);
    assert_conn_status(t.conn, redtls_conn_command(t.conn, &r, "GET %s", "matrix:k"), REDTLS_OK);
    assert_reply_str(r, REDTLS_REPLY_STRING, "v1");
    redtls_reply_free(r);
}

static void test_valid_certificate(void **state)
{
    (void)state;
    make_cfg("localhost", redis_main.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_OK);
    assert_int_equal(redtls_conn_is_connected(t.conn), 1);
    set_get_roundtrip();
    assert_contains(redtls_conn_tls_version(t.conn), "TLSv1.");
    assert_non_null(redtls_conn_tls_cipher(t.conn));
    assert_true(strlen(redtls_conn_tls_cipher(t.conn)) > 0);
    assert_contains(redtls_conn_peer_subject(t.conn), "localhost");
    assert_contains(redtls_conn_peer_sans(t.conn), "DNS:localhost");
    assert_contains(redtls_conn_peer_sans(t.conn), "IP:127.0.0.1");
    assert_contains(redtls_conn_peer_not_after(t.conn), " UTC");
}

/* The control for every "token never arrived" assertion below: with a
 * certificate the client accepts, the sink does see the token. */
static void test_sink_sees_token_when_verified(void **state)
{
    (void)state;
    start_sink("server");
    make_cfg("localhost", t.srv.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_OK);
    redtls_conn_free(t.conn);
    t.conn = NULL;
    assert_int_equal(lab_sink_wait_idle(&t.srv, 3000), 0);
    assert_int_equal(lab_sink_count(&t.srv, "handshake-ok"), 1);
    assert_true(lab_sink_received(&t.srv, TOKEN));
}

static void test_expired(void **state)
{
    (void)state;
    start_sink("expired");
    make_cfg("localhost", t.srv.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS_VERIFY);
    assert_contains(redtls_conn_errmsg(t.conn), "expired");
    assert_failed_safely(&t.srv);
}

static void test_not_yet_valid(void **state)
{
    (void)state;
    start_sink("notyet");
    make_cfg("localhost", t.srv.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS_VERIFY);
    assert_contains(redtls_conn_errmsg(t.conn), "not yet valid");
    assert_failed_safely(&t.srv);
}

static void test_wrong_hostname(void **state)
{
    (void)state;
    start_sink("wrongname");
    make_cfg("localhost", t.srv.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS_HOSTNAME);
    /* The message names the host asked for and what the certificate offers. */
    assert_contains(redtls_conn_errmsg(t.conn), "localhost");
    assert_contains(redtls_conn_errmsg(t.conn), "wrong.example");
    assert_failed_safely(&t.srv);
}

static void test_ip_against_name_only_cert(void **state)
{
    (void)state;
    start_sink("nameonly");
    make_cfg("127.0.0.1", t.srv.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS_HOSTNAME);
    assert_contains(redtls_conn_errmsg(t.conn), "127.0.0.1");
    assert_failed_safely(&t.srv);
}

static void test_verify_name_overrides_ip(void **state)
{
    (void)state;
    start_sink("nameonly");
    make_cfg("127.0.0.1", t.srv.port);
    assert_cfg_status(t.cfg, redtls_config_set_verify_name(t.cfg, "localhost"), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_OK);
    assert_contains(redtls_conn_peer_sans(t.conn), "DNS:localhost");
}

static void test_wildcard(void **state)
{
    (void)state;
    start_sink("wildcard");
    make_cfg("127.0.0.1", t.srv.port);
    assert_cfg_status(t.cfg, redtls_config_set_verify_name(t.cfg, "cache.test.example"), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_OK);
    redtls_conn_free(t.conn);
    t.conn = NULL;
    assert_int_equal(lab_sink_wait_idle(&t.srv, 3000), 0);

    /* A wildcard covers exactly one label. */
    lab_stop(&t.srv);
    start_sink("wildcard");
    redtls_config_free(t.cfg);
    make_cfg("127.0.0.1", t.srv.port);
    assert_cfg_status(t.cfg, redtls_config_set_verify_name(t.cfg, "a.b.test.example"), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS_HOSTNAME);
    assert_failed_safely(&t.srv);

    lab_stop(&t.srv);
    start_sink("wildcard");
    redtls_config_free(t.cfg);
    make_cfg("127.0.0.1", t.srv.port);
    assert_cfg_status(t.cfg, redtls_config_set_verify_name(t.cfg, "test.example"), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS_HOSTNAME);
    assert_failed_safely(&t.srv);
}

static void test_untrusted_ca(void **state)
{
    (void)state;
    start_sink("untrusted");
    make_cfg("localhost", t.srv.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS_VERIFY);
    assert_failed_safely(&t.srv);
}

static void test_self_signed(void **state)
{
    (void)state;
    start_sink("selfsigned");
    make_cfg("localhost", t.srv.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS_VERIFY);
    assert_failed_safely(&t.srv);
}

/* RSA 1024 is below security level 2; the chain is otherwise valid. */
static void test_weak_key_refused(void **state)
{
    (void)state;
    start_sink("weak");
    make_cfg("localhost", t.srv.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS_VERIFY);
    assert_failed_safely(&t.srv);
}

/* Without any CA setting the system store is used, which does not hold the
 * test CA. */
static void test_system_store_does_not_trust_test_ca(void **state)
{
    redtls_config *cfg = NULL;
    (void)state;
    start_sink("server");
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    lab_client_protocol(cfg);
    t.cfg = cfg;
    assert_cfg_status(cfg, redtls_config_set_host(cfg, "localhost", t.srv.port), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_token(cfg, TOKEN), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_handshake_timeout_ms(cfg, TIMEOUT_MS), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS_VERIFY);
    assert_failed_safely(&t.srv);
}

/* The server's log names the failure it saw (it may write it just after
 * its alert reached us). Proves a case tests what it claims to. */
static void assert_server_log_says(const char *needle)
{
    long long end = lab_now_ms() + 3000;
    for (;;) {
        char *log = lab_read_file(t.srv.log_path, NULL);
        int found = log != NULL && strstr(log, needle) != NULL;
        free(log);
        if (found) {
            return;
        }
        if (lab_now_ms() >= end) {
            lab_dump_log(t.srv.log_path);
            fail_msg("server log %s does not say \"%s\"", t.srv.log_path, needle);
        }
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
}

static void test_tls11_only_server(void **state)
{
    static const char *const args[] = {"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", NULL};
    (void)state;
    assert_int_equal(lab_s_server_start(&t.srv, lab_cert("server.crt"), lab_cert("server.key"), args), 0);
    make_cfg("localhost", t.srv.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS);
    assert_contains(redtls_conn_errmsg(t.conn), "no protocol version in common");
    assert_contains(redtls_conn_errmsg(t.conn), "redtls accepts TLS 1.2 and 1.3");
    assert_contains(redtls_conn_errmsg(t.conn), "alert protocol version"); /* the server's alert */
    assert_failed_safely(NULL);
    assert_server_log_says("unsupported protocol");
}

static void test_tls13_required_against_tls12_server(void **state)
{
    static const char *const extra[] = {"--tls-protocols", "TLSv1.2", NULL};
    (void)state;
    assert_int_equal(
        lab_redis_start(&t.srv, &(lab_redis_opts){.tls = 1, .password = TOKEN, .extra = extra}), 0);
    make_cfg("localhost", t.srv.port);
    assert_cfg_status(t.cfg, redtls_config_set_tls_min_version(t.cfg, REDTLS_TLS_1_3), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS);
    assert_contains(redtls_conn_errmsg(t.conn), "no protocol version in common");
    assert_contains(redtls_conn_errmsg(t.conn), "TLS 1.3 only");
    assert_failed_safely(NULL);

    /* The same server is fine with the default minimum, TLS 1.2. */
    redtls_config_free(t.cfg);
    make_cfg("localhost", t.srv.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_OK);
    assert_string_equal(redtls_conn_tls_version(t.conn), "TLSv1.2");
    set_get_roundtrip();
}

/* RFC 9525: the identity is in the subjectAltName only. A certificate
 * without one is refused even when its subject CN equals the host. */
static void test_cn_only_certificate_refused(void **state)
{
    const char *msg;
    (void)state;
    start_sink("cnonly");
    make_cfg("localhost", t.srv.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS_HOSTNAME);
    msg = redtls_conn_errmsg(t.conn);
    assert_contains(msg, "'localhost'");
    assert_contains(msg, "has no subjectAltName");
    assert_contains(msg, "CN 'localhost' is not used");
    assert_failed_safely(&t.srv);
}

/* The sink saw exactly one handshake, whose SNI was `sni` (quoted). */
static void assert_sni_seen(const char *sni)
{
    char quoted[128];
    redtls_conn_free(t.conn);
    t.conn = NULL;
    assert_int_equal(lab_sink_wait_idle(&t.srv, 3000), 0);
    assert_int_equal(lab_sink_count(&t.srv, "handshake-ok"), 1);
    snprintf(quoted, sizeof quoted, "sni \"%s\"", sni);
    assert_int_equal(lab_sink_count(&t.srv, quoted), 1);
}

/* "localhost." does not resolve on every machine (not here), so an address
 * override carries the TCP connection; the host as configured, with its
 * dot, is what is verified and sent as SNI, minus the dot. */
static void test_trailing_dot_host(void **state)
{
    (void)state;
    start_sink("nameonly");
    make_cfg("localhost.", t.srv.port);
    assert_cfg_status(t.cfg, redtls_config_add_resolve(t.cfg, "localhost.", 0, "127.0.0.1"), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_OK);
    assert_contains(redtls_conn_peer_sans(t.conn), "DNS:localhost");
    assert_sni_seen("localhost");
    assert_int_equal(lab_sink_count(&t.srv, "sni \"localhost.\""), 0);
}

static void test_trailing_dot_verify_name(void **state)
{
    (void)state;
    start_sink("nameonly");
    make_cfg("127.0.0.1", t.srv.port);
    assert_cfg_status(t.cfg, redtls_config_set_verify_name(t.cfg, "localhost."), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_OK);
    assert_sni_seen("localhost");

    /* Still checked: the dot does not make a wrong name match. */
    lab_stop(&t.srv);
    start_sink("wrongname");
    redtls_config_free(t.cfg);
    make_cfg("127.0.0.1", t.srv.port);
    assert_cfg_status(t.cfg, redtls_config_set_verify_name(t.cfg, "localhost."), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS_HOSTNAME);
    assert_contains(redtls_conn_errmsg(t.conn), "hostname 'localhost' does not match");
    assert_failed_safely(&t.srv);

    /* One dot ends an absolute name; two are an empty label. */
    redtls_config_free(t.cfg);
    make_cfg("127.0.0.1", t.srv.port);
    assert_cfg_status(t.cfg, redtls_config_set_verify_name(t.cfg, "localhost.."), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_CONFIG);
    assert_contains(redtls_conn_errmsg(t.conn), "empty label");
}

static void test_trailing_dot_url_host(void **state)
{
    char url[256];
    (void)state;
    start_sink("server");
    make_cfg("127.0.0.1", 1);
    snprintf(url, sizeof url, "rediss://localhost.:%u", (unsigned)t.srv.port);
    assert_cfg_status(t.cfg, redtls_config_set_url(t.cfg, url), REDTLS_OK);
    assert_cfg_status(t.cfg, redtls_config_add_resolve(t.cfg, "localhost.", t.srv.port, "127.0.0.1"), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_OK);
    assert_sni_seen("localhost");
}

/* The phrase every "cipher or signature algorithm" failure carries, and
 * what redtls offers. */
static void assert_offer_named(const char *msg)
{
    assert_contains(msg, "no cipher suite or signature algorithm");
    assert_contains(msg, "ECDHE key exchange and AEAD ciphers");
    assert_contains(msg, "security level 2");
}

/* A TLS 1.2 server whose only cipher, AES128-SHA256, has neither ECDHE key
 * exchange nor AEAD, so redtls never offers it. The server knows there is no
 * shared cipher; the client only gets its handshake_failure alert, so the
 * message names what redtls offered and the likely causes. */
static void test_no_shared_cipher(void **state)
{
    static const char *const args[] = {"-tls1_2", "-cipher", "AES128-SHA256", NULL};
    (void)state;
    assert_int_equal(lab_s_server_start(&t.srv, lab_cert("server.crt"), lab_cert("server.key"), args), 0);
    make_cfg("localhost", t.srv.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS);
    assert_offer_named(redtls_conn_errmsg(t.conn));
    assert_contains(redtls_conn_errmsg(t.conn), "handshake failure");
    assert_failed_safely(NULL);
    assert_server_log_says("no shared cipher");
}

/* A server that signs only with SHA-1 (ECDSA+SHA1), which security level 2
 * never offers: again only a handshake_failure alert reaches the client. */
static void test_no_shared_signature_algorithm(void **state)
{
    static const char *const args[] = {"-sigalgs", "ECDSA+SHA1", NULL};
    (void)state;
    assert_int_equal(lab_s_server_start(&t.srv, lab_cert("server.crt"), lab_cert("server.key"), args), 0);
    make_cfg("localhost", t.srv.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS);
    assert_offer_named(redtls_conn_errmsg(t.conn));
    assert_failed_safely(NULL);
    assert_server_log_says("no shared signature algorithms");
}

/* OpenSSL's max_cert_list (100 KiB, redtls keeps the default) bounds the
 * certificate chain a server may send; longchain.crt is about 130 KiB. */
static void test_oversized_certificate_chain(void **state)
{
    (void)state;
    start_sink("longchain");
    make_cfg("localhost", t.srv.port);
    /* 100 KiB of certificates read before the limit refuses them take over
     * 3 s under valgrind (the CI's valgrind step): the handshake deadline is
     * not what this case is about, so it gets room. */
    assert_cfg_status(t.cfg, redtls_config_set_handshake_timeout_ms(t.cfg, 30000), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS);
    assert_contains(redtls_conn_errmsg(t.conn), "excessive message size");
    assert_contains(redtls_conn_errmsg(t.conn), "102400 bytes");
    assert_contains(redtls_conn_errmsg(t.conn), "chain that is too long");
    assert_failed_safely(&t.srv);
}

/* A TLS 1.2 server that asks to renegotiate after the first command (here
 * AUTH): redtls refuses, OpenSSL's server ends the connection with a fatal
 * alert, and the message says why. */
static void test_renegotiation_refused(void **state)
{
    (void)state;
    assert_int_equal(lab_hostile_start(&t.srv, &(lab_hostile_opts){.tls = 1,
                                                                   .renegotiate = 1,
                                                                   .reply = "+OK\r\n",
                                                                   .end = LAB_HOSTILE_HOLD}),
                     0);
    make_cfg("localhost", t.srv.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS);
    assert_contains(redtls_conn_errmsg(t.conn), "asked to renegotiate the TLS session, which redtls refuses");
    assert_contains(redtls_conn_errmsg(t.conn), "handshake failure");
    assert_failed_safely(NULL);
    /* OpenSSL's server got our no_renegotiation warning and gave up. */
    assert_server_log_says("no renegotiation");
}

static void test_tls13_required(void **state)
{
    (void)state;
    make_cfg("localhost", redis_main.port);
    assert_cfg_status(t.cfg, redtls_config_set_tls_min_version(t.cfg, REDTLS_TLS_1_3), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_OK);
    assert_string_equal(redtls_conn_tls_version(t.conn), "TLSv1.3");
    set_get_roundtrip();
}

static void test_client_cert_missing_with_token(void **state)
{
    (void)state;
    make_cfg("localhost", redis_mtls.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS_CLIENT_CERT);
    assert_failed_safely(NULL);
}

/* No AUTH round trip follows the handshake here, so with TLS 1.3 the
 * server's "certificate required" alert only arrives after the client
 * thinks the handshake is done. connect must still report it. */
static void test_client_cert_missing_without_token(void **state)
{
    (void)state;
    make_cfg("localhost", redis_mtls.port);
    assert_cfg_status(t.cfg, redtls_config_set_token(t.cfg, NULL), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS_CLIENT_CERT);
    assert_failed_safely(NULL);
}

static void test_client_cert_untrusted(void **state)
{
    (void)state;
    make_cfg("localhost", redis_mtls.port);
    assert_cfg_status(t.cfg,
                      redtls_config_set_client_cert_file(t.cfg, lab_cert("client-untrusted.crt"),
                                                         lab_cert("client-untrusted.key")),
                      REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS_CLIENT_CERT);
    assert_failed_safely(NULL);
}

static void test_client_cert_presented(void **state)
{
    (void)state;
    make_cfg("localhost", redis_mtls.port);
    assert_cfg_status(t.cfg, redtls_config_set_client_cert_file(t.cfg, lab_cert("client.crt"), lab_cert("client.key")),
                      REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_OK);
    set_get_roundtrip();
}

static void test_client_cert_from_pem(void **state)
{
    size_t clen = 0, klen = 0;
    char *crt = lab_read_file(lab_cert("client.crt"), &clen);
    char *key = lab_read_file(lab_cert("client.key"), &klen);
    redtls_status st;
    (void)state;
    assert_non_null(crt);
    assert_non_null(key);
    make_cfg("localhost", redis_mtls.port);
    st = redtls_config_set_client_cert_pem(t.cfg, crt, clen, key, klen);
    free(crt);
    free(key);
    assert_cfg_status(t.cfg, st, REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_OK);
    set_get_roundtrip();
}

static void test_client_cert_key_mismatch(void **state)
{
    (void)state;
    make_cfg("localhost", redis_mtls.port);
    assert_cfg_status(t.cfg, redtls_config_set_client_cert_file(t.cfg, lab_cert("client.crt"), lab_cert("server.key")),
                      REDTLS_E_CONFIG);
    assert_true(strlen(redtls_config_errmsg(t.cfg)) > 0);
    assert_not_contains(redtls_config_errmsg(t.cfg), "PRIVATE KEY");
}

static void test_unusable_ca_file(void **state)
{
    (void)state;
    make_cfg("localhost", redis_main.port);
    assert_cfg_status(t.cfg, redtls_config_set_ca_file(t.cfg, "/nonexistent/redtls/ca.crt"), REDTLS_E_CONFIG);
    assert_contains(redtls_config_errmsg(t.cfg), "/nonexistent/redtls/ca.crt");
    /* A key is not a certificate. */
    assert_cfg_status(t.cfg, redtls_config_set_ca_file(t.cfg, lab_cert("ca.key")), REDTLS_E_CONFIG);
    assert_not_contains(redtls_config_errmsg(t.cfg), "PRIVATE KEY");
}

static void test_ca_from_memory(void **state)
{
    size_t len = 0;
    char *pem = lab_read_file(lab_cert("ca.crt"), &len);
    redtls_config *cfg = NULL;
    redtls_status st;
    (void)state;
    assert_non_null(pem);
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    lab_client_protocol(cfg);
    t.cfg = cfg;
    assert_cfg_status(cfg, redtls_config_set_host(cfg, "localhost", redis_main.port), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_token(cfg, TOKEN), REDTLS_OK);
    st = redtls_config_set_ca_pem(cfg, pem, len);
    free(pem);
    assert_cfg_status(cfg, st, REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_OK);
    set_get_roundtrip();
}

static void test_ca_dir(void **state)
{
    redtls_config *cfg = NULL;
    (void)state;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    lab_client_protocol(cfg);
    t.cfg = cfg;
    assert_cfg_status(cfg, redtls_config_set_host(cfg, "localhost", redis_main.port), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_token(cfg, TOKEN), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_ca_dir(cfg, lab_cert("capath")), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_OK);
    set_get_roundtrip();
}

static void test_ca_bundle_with_two_certs(void **state)
{
    (void)state;
    make_cfg("localhost", redis_main.port);
    assert_cfg_status(t.cfg, redtls_config_set_ca_file(t.cfg, lab_cert("bundle.crt")), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_OK);
    set_get_roundtrip();
}

static void assert_handshake_timeout_on(uint16_t port)
{
    long long t0, elapsed;
    make_cfg("localhost", port);
    assert_cfg_status(t.cfg, redtls_config_set_handshake_timeout_ms(t.cfg, SHORT_HANDSHAKE_MS), REDTLS_OK);
    assert_cfg_status(t.cfg, redtls_conn_new(t.cfg, &t.conn), REDTLS_OK);
    t0 = lab_now_ms();
    assert_conn_status(t.conn, redtls_conn_connect(t.conn), REDTLS_E_HANDSHAKE_TIMEOUT);
    elapsed = lab_now_ms() - t0;
    print_message("handshake timeout after %lld ms (limit %d ms)\n", elapsed, SHORT_HANDSHAKE_MS);
    assert_in_range(elapsed, SHORT_HANDSHAKE_MS - 50, 3 * SHORT_HANDSHAKE_MS);
    assert_failed_safely(NULL);
}

/* redis never answers a ClientHello on its plain port: its inline parser
 * waits for a newline, and a ClientHello has a NUL byte (in its length
 * fields) before any newline, so redis never sees a complete line. */
static void test_plain_redis_port(void **state)
{
    (void)state;
    assert_handshake_timeout_on(redis_main.plain_port);
}

static void test_silent_server(void **state)
{
    (void)state;
    assert_int_equal(lab_silent_start(&t.srv), 0);
    assert_handshake_timeout_on(t.srv.port);
}

static void test_plaintext_answer(void **state)
{
    (void)state;
    assert_int_equal(lab_plaintext_start(&t.srv), 0);
    make_cfg("localhost", t.srv.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS);
    assert_failed_safely(NULL);
}

static void test_connection_refused(void **state)
{
    uint16_t port = lab_unused_port();
    (void)state;
    assert_true(port != 0);
    make_cfg("127.0.0.1", port);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_CONNECT);
    assert_failed_safely(NULL);
}

static void test_insecure_skip_verify(void **state)
{
    (void)state;
    assert_int_equal(lab_redis_start(&t.srv, &(lab_redis_opts){.tls = 1,
                                                              .cert = "selfsigned.crt",
                                                              .key = "selfsigned.key",
                                                              .password = TOKEN}),
                     0);
    make_cfg("localhost", t.srv.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS_VERIFY);
    assert_failed_safely(NULL);

    assert_cfg_status(t.cfg, redtls_config_set_insecure_skip_verify(t.cfg, 1), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_OK);
    set_get_roundtrip();

    /* Turning it back on restores verification. */
    assert_cfg_status(t.cfg, redtls_config_set_insecure_skip_verify(t.cfg, 0), REDTLS_OK);
    assert_conn_status(t.conn, connect_now(), REDTLS_E_TLS_VERIFY);
}

static void test_ipv6_loopback(void **state)
{
    (void)state;
    if (!lab_ipv6_available()) {
        skip();
    }
    make_cfg("::1", redis_main.port);
    assert_conn_status(t.conn, connect_now(), REDTLS_OK);
    set_get_roundtrip();
}

/* A config change after redtls_conn_new does not reach the connection. */
static void test_config_copied_at_conn_new(void **state)
{
    (void)state;
    make_cfg("localhost", redis_main.port);
    assert_cfg_status(t.cfg, redtls_conn_new(t.cfg, &t.conn), REDTLS_OK);
    assert_cfg_status(t.cfg, redtls_config_set_token(t.cfg, "not-the-token"), REDTLS_OK);
    assert_cfg_status(t.cfg, redtls_config_set_ca_file(t.cfg, lab_cert("ca2.crt")), REDTLS_OK);
    assert_conn_status(t.conn, redtls_conn_connect(t.conn), REDTLS_OK);
    set_get_roundtrip();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_sees_token_when_verified, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_yet_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_hostname, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ip_against_name_only_cert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_name_overrides_ip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wildcard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_untrusted_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_self_signed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_weak_key_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_system_store_does_not_trust_test_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls11_only_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls13_required_against_tls12_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cn_only_certificate_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trailing_dot_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trailing_dot_verify_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trailing_dot_url_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_shared_cipher, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_shared_signature_algorithm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_certificate_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renegotiation_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls13_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cert_missing_with_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cert_missing_without_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cert_untrusted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cert_presented, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cert_from_pem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cert_key_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unusable_ca_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_from_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_bundle_with_two_certs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_redis_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plaintext_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insecure_skip_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6_loopback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_copied_at_conn_new, setup, teardown),
    };
    return cmocka_run_group_tests_name("integration.tls_matrix", tests, group_setup, group_teardown);
}

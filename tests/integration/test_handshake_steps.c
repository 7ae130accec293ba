/* A TLS handshake against a real redis-server is taken in steps: with the
 * server's whole flight (TLS 1.3: ServerHello to Finished; TLS 1.2:
 * ServerHello to ServerHelloDone) already in the socket, one
 * redtls_async_process() call never takes all of it; the handle asks to be
 * called again at once (timeout 0) between the steps instead of waiting
 * for the socket. The blocking API and the built-in loop still connect and
 * talk. */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <redtls/async.h>

#include "lab.h"
#include "lab_assert.h"

#define TOKEN "lab-Steps-Token-51c0aa"
/* Room for sanitizers and valgrind. */
#define TIMEOUT_MS 15000

static lab_server tls13, tls12;

static int group_setup(void **state)
{
    (void)state;
    if (lab_init(120) != 0 || lab_certs(NULL) == NULL)
        return -1;
    static const char *const only12[] = {"--tls-protocols", "TLSv1.2", NULL};
    if (lab_redis_start(&tls13, &(lab_redis_opts){.tls = 1, .password = TOKEN}) != 0)
        return -1;
    return lab_redis_start(&tls12, &(lab_redis_opts){.tls = 1, .password = TOKEN, .extra = only12});
}

static int group_teardown(void **state)
{
    (void)state;
    lab_stop(&tls13);
    lab_stop(&tls12);
    return 0;
}

static redtls_config *make_cfg(const lab_server *srv)
{
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    /* An address: no lookup, so the first socket is the connection's. */
    assert_cfg_status(cfg, redtls_config_set_host(cfg, "127.0.0.1", srv->port), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_ca_file(cfg, lab_cert("ca.crt")), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_token(cfg, TOKEN), REDTLS_OK);
    /* A full handshake every time. */
    assert_cfg_status(cfg, redtls_config_set_tls_session_resumption(cfg, 0), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_connect_timeout_ms(cfg, TIMEOUT_MS), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_handshake_timeout_ms(cfg, TIMEOUT_MS), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, TIMEOUT_MS), REDTLS_OK);
    return cfg;
}

static int queued(int fd)
{
    int n = -1;
    assert_int_equal(ioctl(fd, FIONREAD, &n), 0);
    return n;
}

typedef struct outcome {
    int connects;
    redtls_status connect_st;
    int replies;
    char reply[32];
} outcome;

static void on_connect(redtls_async *ac, redtls_status st, void *ud)
{
    (void)ac;
    outcome *o = ud;
    o->connects++;
    o->connect_st = st;
}

static void on_reply(redtls_async *ac, redtls_status st, struct redisReply *r, void *ud)
{
    (void)ac;
    outcome *o = ud;
    o->replies++;
    if (st == REDTLS_OK && r && r->type == REDIS_REPLY_STATUS)
        snprintf(o->reply, sizeof o->reply, "%s", r->str);
    freeReplyObject(r);
}

/* Waits the way a loop would, as the handle asks. */
static void wait_as_asked(redtls_async *ac)
{
    int fd = redtls_async_fd(ac), ev = redtls_async_events(ac), ms = redtls_async_timeout_ms(ac);
    struct pollfd p = {fd, (short)((ev & REDTLS_ASYNC_READ ? POLLIN : 0) | (ev & REDTLS_ASYNC_WRITE ? POLLOUT : 0)),
                       0};
    int nfds = fd >= 0 && p.events ? 1 : 0;
    assert_true(nfds || ms >= 0);
    assert_true(poll(&p, (nfds_t)nfds, ms < 0 || ms > TIMEOUT_MS ? TIMEOUT_MS : ms) >= 0);
}

static void flight_in_steps(const lab_server *srv, int min_again)
{
    redtls_config *cfg = make_cfg(srv);
    redtls_async *ac = NULL;
    assert_cfg_status(cfg, redtls_async_new(cfg, &ac), REDTLS_OK);
    outcome o = {0, REDTLS_OK, 0, ""};
    assert_int_equal(redtls_async_connect(ac, on_connect, &o), REDTLS_OK);

    /* Up to the ClientHello: from then on the handle watches the socket
     * for reading (before, it waited for TCP to be writable). */
    int fd = -1;
    for (int calls = 0;; calls++) {
        assert_true(calls < 1000);
        assert_int_equal(o.connects, 0);
        fd = redtls_async_fd(ac);
        if (fd >= 0 && redtls_async_events(ac) == REDTLS_ASYNC_READ)
            break;
        wait_as_asked(ac);
        assert_int_equal(redtls_async_process(ac, 0), REDTLS_OK);
    }

    /* The whole flight in the socket: it comes in one write; wait until
     * the count of waiting bytes stops growing. */
    struct pollfd p = {fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, TIMEOUT_MS), 1);
    int total = queued(fd);
    for (int same = 0; same < 3;) {
        usleep(30000);
        int now = queued(fd);
        same = now == total ? same + 1 : 0;
        total = now;
    }
    assert_true(total > 0);

    /* Every call takes a share of it and asks to be called again at once,
     * until the handshake is done (then the set-up waits for the server).
     * Once our side has sent its last flight, the server's next bytes can
     * arrive during a call: a share is then less than the call took. */
    int calls = 0, again = 0, took_max = 0;
    for (;;) {
        assert_true(calls < 100);
        int before = queued(fd);
        assert_int_equal(redtls_async_process(ac, 0), REDTLS_OK);
        calls++;
        int took = before - (o.connects ? 0 : queued(fd));
        if (took > took_max)
            took_max = took;
        if (o.connects || redtls_async_timeout_ms(ac) != 0)
            break;
        again++;
        assert_int_equal(redtls_async_fd(ac), fd);
        assert_int_equal(redtls_async_events(ac), REDTLS_ASYNC_READ);
    }
    if (took_max >= total || again < min_again)
        fail_msg("the server's flight of %d bytes: %d calls, %d of them asking to be called again at once, "
                 "the largest share %d bytes; expected at least %d and no call taking all of it",
                 total, calls, again, took_max, min_again);

    /* Then the rest as a loop would run it, and a command. */
    while (!o.connects)
        wait_as_asked(ac), assert_int_equal(redtls_async_process(ac, 0), REDTLS_OK);
    if (o.connect_st != REDTLS_OK)
        fail_msg("connect: %s (%s)", redtls_strerror(o.connect_st), redtls_async_errmsg(ac));
    assert_int_equal(redtls_async_command(ac, on_reply, &o, "PING"), REDTLS_OK);
    assert_int_equal(redtls_async_run(&ac, 1, TIMEOUT_MS), REDTLS_OK);
    assert_int_equal(o.replies, 1);
    assert_string_equal(o.reply, "PONG");
    redtls_async_free(ac);
    redtls_config_free(cfg);
}

/* TLS 1.3: ServerHello, (ChangeCipherSpec,) EncryptedExtensions,
 * Certificate, the certificate check, CertificateVerify, Finished. */
static void test_tls13_flight_in_steps(void **state)
{
    (void)state;
    flight_in_steps(&tls13, 4);
}

/* TLS 1.2: ServerHello, Certificate, the check, ServerKeyExchange,
 * ServerHelloDone (our answer ends that step). */
static void test_tls12_flight_in_steps(void **state)
{
    (void)state;
    flight_in_steps(&tls12, 4);
}

/* The blocking API steps the same machine: it loops at once. */
static void test_blocking_connects(void **state)
{
    (void)state;
    const lab_server *srvs[] = {&tls13, &tls12};
    const char *versions[] = {"TLSv1.3", "TLSv1.2"};
    for (int i = 0; i < 2; i++) {
        redtls_config *cfg = make_cfg(srvs[i]);
        redtls_conn *c = NULL;
        assert_cfg_status(cfg, redtls_conn_new(cfg, &c), REDTLS_OK);
        assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
        assert_string_equal(redtls_conn_tls_version(c), versions[i]);
        redisReply *r = NULL;
        assert_conn_status(c, redtls_conn_command(c, &r, "PING"), REDTLS_OK);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_STATUS);
        assert_string_equal(r->str, "PONG");
        freeReplyObject(r);
        redtls_conn_free(c);
        redtls_config_free(cfg);
    }
}

/* Many handshakes at once on the built-in loop: every one connects. */
static void test_builtin_loop_many(void **state)
{
    (void)state;
    enum { N = 16 };
    redtls_config *cfg = make_cfg(&tls13);
    redtls_async *ac[N];
    outcome o[N];
    for (int i = 0; i < N; i++) {
        memset(&o[i], 0, sizeof o[i]);
        assert_cfg_status(cfg, redtls_async_new(cfg, &ac[i]), REDTLS_OK);
        assert_int_equal(redtls_async_connect(ac[i], on_connect, &o[i]), REDTLS_OK);
        assert_int_equal(redtls_async_command(ac[i], on_reply, &o[i], "PING"), REDTLS_OK);
    }
    assert_int_equal(redtls_async_run(ac, N, TIMEOUT_MS), REDTLS_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(o[i].connects, 1);
        assert_int_equal(o[i].connect_st, REDTLS_OK);
        assert_int_equal(o[i].replies, 1);
        assert_string_equal(o[i].reply, "PONG");
        redtls_async_free(ac[i]);
    }
    redtls_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls13_flight_in_steps),
        cmocka_unit_test(test_tls12_flight_in_steps),
        cmocka_unit_test(test_blocking_connects),
        cmocka_unit_test(test_builtin_loop_many),
    };
    return cmocka_run_group_tests_name("handshake_steps", tests, group_setup, group_teardown);
}

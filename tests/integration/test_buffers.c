/* What a TLS connection holds between commands, against a real TLS
 * redis-server: OpenSSL's two record buffers and the read buffer (some
 * 50 KiB together) stay while the connection is used back to back, and are
 * given back once it goes quiet, so an idle connection is small without a
 * free and a remake for every command. Counted with the allocation hook
 * (blocks of 16 KiB and more: only these three are that large, and
 * OpenSSL's handshake message buffer while a handshake is under way).
 *
 * Until it is used back to back, a connection waiting for the server
 * holds none of the three: a handshake (a server that never answers the
 * ClientHello), a set-up (one that never answers AUTH), a command after a
 * quiet spell; so thousands of connections opened at once stay small.
 *
 * Also: an error the application left in OpenSSL's per-thread error queue
 * neither breaks reads and writes that have to wait for the socket nor is
 * wiped by them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/err.h>

#include <hiredis/hiredis.h>
#include <redtls/async.h>
#include <redtls/redtls.h>

#include "lab.h"
#include "lab_allochook.h"
#include "lab_assert.h"
#include "lab_hostile.h"
#include "lab_proxy.h"

#define TOKEN "lab-Buffers-Token-77c1"
#define BIG 16384

static lab_server redis;
static redtls_config *cfg;

static int group_setup(void **state)
{
    (void)state;
    if (lab_init(120) != 0 || lab_certs(NULL) == NULL)
        return -1;
    if (lab_redis_start(&redis, &(lab_redis_opts){.tls = 1, .password = TOKEN}) != 0)
        return -1;
    if (redtls_config_new(&cfg) != REDTLS_OK || redtls_config_set_host(cfg, "localhost", redis.port) != REDTLS_OK ||
        redtls_config_set_ca_file(cfg, lab_cert("ca.crt")) != REDTLS_OK ||
        redtls_config_set_token(cfg, TOKEN) != REDTLS_OK)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    redtls_config_free(cfg);
    lab_stop(&redis);
    return 0;
}

static redtls_conn *connected(void)
{
    redtls_conn *c = NULL;
    assert_cfg_status(cfg, redtls_conn_new(cfg, &c), REDTLS_OK);
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
    return c;
}

static void ping(redtls_conn *c)
{
    redisReply *r = NULL;
    assert_conn_status(c, redtls_conn_command(c, &r, "PING"), REDTLS_OK);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_STATUS);
    redtls_reply_free(r);
}

static void count_big(void)
{
    lab_alloc_track_big(BIG);
    lab_alloc_arm(0);
}

static void stop_counting(void)
{
    lab_alloc_disarm();
    lab_alloc_track_big(0);
}

/* Set-up (TLS handshake, AUTH) makes the buffers; a connection that is
 * connected and not yet used has given them back. */
static void test_connected_holds_no_buffers(void **state)
{
    (void)state;
    if (!LAB_ALLOC_HOOK)
        skip();
    count_big();
    redtls_conn *c = connected();
    long made = lab_alloc_big_calls(), held = lab_alloc_big_live();
    stop_counting();
    print_message("connect: %ld blocks of >= %d bytes made, %ld still held\n", made, BIG, held);
    assert_true(made >= 2);
    assert_int_equal(held, 0);
    redtls_conn_free(c);
}

/* A command after a quiet moment (here: the first one) makes the buffers
 * and gives them back when its reply is read; one that follows another
 * closely makes the connection busy, and from the next one on it keeps
 * them. */
static void test_busy_keeps_quiet_gives_back(void **state)
{
    (void)state;
    if (!LAB_ALLOC_HOOK)
        skip();
    redtls_conn *c = connected();
    count_big();
    ping(c);
    long made = lab_alloc_big_calls(), held = lab_alloc_big_live();
    print_message("first PING: %ld made, %ld held after it\n", made, held);
    assert_true(made >= 3);
    assert_int_equal(held, 0);

    ping(c); /* right after the first: busy from now on */
    held = lab_alloc_big_live();
    print_message("second PING: %ld held after it (the read buffer)\n", held);
    assert_int_equal(held, 1);

    count_big();
    for (int i = 0; i < 200; i++)
        ping(c);
    made = lab_alloc_big_calls();
    held = lab_alloc_big_live();
    print_message("200 PINGs back to back: %ld blocks of >= %d bytes made, %ld held\n", made, BIG, held);
    assert_int_equal(made, 2); /* the record buffers, by the first of them */
    assert_int_equal(held, 2);

    /* Pipelined: the same. */
    count_big();
    for (int i = 0; i < 128; i++)
        assert_conn_status(c, redtls_conn_append(c, "PING"), REDTLS_OK);
    for (int i = 0; i < 128; i++) {
        redisReply *r = NULL;
        assert_conn_status(c, redtls_conn_get_reply(c, &r), REDTLS_OK);
        redtls_reply_free(r);
    }
    assert_int_equal(lab_alloc_big_calls(), 0);

    /* Quiet for over a second: the next command gives them back at its
     * end, so the connection is small while it waits again. */
    lab_sleep_ms(1100);
    count_big();
    ping(c);
    made = lab_alloc_big_calls();
    held = lab_alloc_big_live();
    stop_counting();
    print_message("PING after 1.1 s quiet: %ld made, %ld given back\n", made, -held);
    assert_int_equal(made, 0);
    assert_true(held <= -3);
    redtls_conn_free(c);
}

/* The texts the TLS accessors lend (1.9 KiB) are made by the first one
 * that asks: without memory for them it answers NULL and says why, the
 * next call makes them, and later ones make nothing more. */
static void test_tls_details_made_on_first_use(void **state)
{
    (void)state;
    if (!LAB_ALLOC_HOOK)
        skip();
    redtls_conn *c = connected();
    lab_alloc_arm(1);
    const char *v = redtls_conn_tls_version(c);
    long calls = lab_alloc_calls();
    lab_alloc_disarm();
    assert_null(v);
    assert_int_equal(calls, 1);
    assert_string_equal(redtls_conn_errmsg(c), "out of memory for the TLS details");
    assert_contains(redtls_conn_peer_subject(c), "localhost");
    lab_alloc_arm(0);
    assert_contains(redtls_conn_tls_version(c), "TLSv1.");
    assert_non_null(redtls_conn_tls_cipher(c));
    calls = lab_alloc_calls();
    lab_alloc_disarm();
    assert_int_equal(calls, 0);
    assert_contains(redtls_conn_peer_not_after(c), " UTC");
    ping(c);
    redtls_conn_free(c);
}

/* A refused connect, then a command with no time to wait for the next
 * attempt: its message. fail_at: the allocation to fail during the
 * connect (0: none); *calls: how many the connect made. */
static char *refused_then_command(long fail_at, long *calls, char *msg, size_t cap)
{
    redtls_config *c = NULL;
    redtls_conn *conn = NULL;
    struct redisReply *r = NULL;
    assert_int_equal(redtls_config_new(&c), REDTLS_OK);
    assert_cfg_status(c, redtls_config_set_host(c, "127.0.0.1", lab_unused_port()), REDTLS_OK);
    assert_cfg_status(c, redtls_config_set_tls(c, 0), REDTLS_OK);
    assert_cfg_status(c, redtls_config_set_backoff(c, 60000, 60000), REDTLS_OK);
    assert_cfg_status(c, redtls_config_set_command_timeout_ms(c, 50), REDTLS_OK);
    assert_cfg_status(c, redtls_conn_new(c, &conn), REDTLS_OK);
    lab_alloc_arm(fail_at);
    redtls_status st = redtls_conn_connect(conn);
    *calls = lab_alloc_calls();
    lab_alloc_disarm();
    assert_conn_status(conn, st, REDTLS_E_CONNECT);
    assert_conn_status(conn, redtls_conn_command(conn, &r, "PING"), REDTLS_E_UNAVAILABLE);
    snprintf(msg, cap, "%s", redtls_conn_errmsg(conn));
    redtls_conn_free(conn);
    redtls_config_free(c);
    return msg;
}

/* The last failed attempt's text (512 bytes) is made by the first
 * failure; without memory for it, "last failure" names the failure's
 * status instead. */
static void test_last_failure_without_memory(void **state)
{
    (void)state;
    if (!LAB_ALLOC_HOOK)
        skip();
    char msg[600];
    long calls = 0, again = 0;
    print_message("%s\n", refused_then_command(0, &calls, msg, sizeof msg));
    assert_contains(msg, "(last failure: connect to 127.0.0.1 port ");
    /* The text is the connect's last allocation. */
    print_message("%s\n", refused_then_command(calls, &again, msg, sizeof msg));
    assert_int_equal(again, calls);
    char want[200];
    snprintf(want, sizeof want, "(last failure: %s)", redtls_strerror(REDTLS_E_CONNECT));
    assert_contains(msg, want);
}

/* AUTH's answer texts (400 bytes) are made when an AUTH starts and given
 * back when it ends: without memory for them the connect fails and says
 * so. Found by failing, one connect each, the allocations of a connect
 * from its end. */
static void test_auth_answers_only_during_auth(void **state)
{
    (void)state;
    if (!LAB_ALLOC_HOOK)
        skip();
    redtls_conn *c = NULL;
    assert_cfg_status(cfg, redtls_conn_new(cfg, &c), REDTLS_OK);
    lab_alloc_arm(0);
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
    long total = lab_alloc_calls();
    lab_alloc_disarm();
    redtls_conn_free(c);
    long found = 0;
    /* From the end down (it is some 100 allocations before the end), over
     * the whole connect if need be: how many allocations come after AUTH
     * starts varies with what the server sends meanwhile, so on a loaded
     * machine the allocation can move between two connects and one walk
     * can step over it; up to three walks. */
    int walks = 0;
    for (; walks < 3 && !found; walks++)
        for (long n = total; n > 0 && !found; n--) {
            assert_cfg_status(cfg, redtls_conn_new(cfg, &c), REDTLS_OK);
            lab_alloc_arm(n);
            redtls_status st = redtls_conn_connect(c);
            lab_alloc_disarm();
            if (st == REDTLS_E_NOMEM && strstr(redtls_conn_errmsg(c), "out of memory for AUTH"))
                found = n;
            redtls_conn_free(c);
        }
    print_message("connect: %ld allocations; failing number %ld: \"out of memory for AUTH\" (walk %d)\n", total,
                  found, walks);
    assert_true(found > 0);
}

static void on_connect(redtls_async *ac, redtls_status st, void *ud)
{
    (void)ac;
    *(redtls_status *)ud = st;
}

static int t_reply_type;

static void on_reply(redtls_async *ac, redtls_status st, struct redisReply *r, void *ud)
{
    (void)ac;
    (void)ud;
    t_reply_type = st == REDTLS_OK ? (int)redtls_reply_type(r) : -2;
    redtls_reply_free(r);
}

/* An asynchronous connect to port, run for 300 ms, still under way: the
 * blocks of 16 KiB and more it made and holds. token: AUTH's. */
static redtls_async *connect_stuck(uint16_t port, const char *token, long *made, long *held)
{
    redtls_config *c = NULL;
    redtls_async *ac = NULL;
    redtls_status st = REDTLS_E_STATE;
    assert_int_equal(redtls_config_new(&c), REDTLS_OK);
    assert_cfg_status(c, redtls_config_set_host(c, "localhost", port), REDTLS_OK);
    assert_cfg_status(c, redtls_config_set_ca_file(c, lab_cert("ca.crt")), REDTLS_OK);
    assert_cfg_status(c, redtls_config_set_token(c, token), REDTLS_OK);
    assert_cfg_status(c, redtls_async_new(c, &ac), REDTLS_OK);
    redtls_config_free(c);
    count_big();
    assert_int_equal(redtls_async_connect(ac, on_connect, &st), REDTLS_OK);
    for (long long end = lab_now_ms() + 300; lab_now_ms() < end;)
        assert_int_equal(redtls_async_run(&ac, 1, 20), REDTLS_E_COMMAND_TIMEOUT);
    *made = lab_alloc_big_calls();
    *held = lab_alloc_big_live();
    stop_counting();
    assert_int_equal(st, REDTLS_E_STATE); /* no verdict yet */
    assert_int_equal(redtls_async_events(ac), REDTLS_ASYNC_READ);
    return ac;
}

/* Waiting for the ServerHello: OpenSSL's handshake message buffer (one
 * block over 16 KiB) stays, the record buffers it made for the
 * ClientHello do not. */
static void test_handshake_waits_without_record_buffers(void **state)
{
    (void)state;
    if (!LAB_ALLOC_HOOK)
        skip();
    lab_server silent;
    assert_int_equal(lab_silent_start(&silent), 0);
    long made, held;
    redtls_async *ac = connect_stuck(silent.port, TOKEN, &made, &held);
    print_message("handshake waiting: %ld blocks of >= %d bytes made, %ld held\n", made, BIG, held);
    assert_true(made >= 3);
    assert_int_equal(held, 1);
    redtls_async_free(ac);
    lab_stop(&silent);
}

/* Connected, quiet, then a command the server answers 300 ms later:
 * while it waits it holds no big block (the record buffer its write made
 * is gone, nothing was read yet); its reply is read all the same. */
static void test_command_waits_without_buffers(void **state)
{
    (void)state;
    if (!LAB_ALLOC_HOOK)
        skip();
    redtls_async *ac = NULL;
    redtls_status st = REDTLS_E_STATE;
    assert_cfg_status(cfg, redtls_async_new(cfg, &ac), REDTLS_OK);
    assert_int_equal(redtls_async_connect(ac, on_connect, &st), REDTLS_OK);
    assert_int_equal(redtls_async_run(&ac, 1, 5000), REDTLS_OK);
    assert_int_equal(st, REDTLS_OK);
    count_big();
    t_reply_type = -1;
    assert_int_equal(redtls_async_command(ac, on_reply, NULL, "BLPOP buffers:never 0.3"), REDTLS_OK);
    for (long long end = lab_now_ms() + 150; lab_now_ms() < end;)
        assert_int_equal(redtls_async_run(&ac, 1, 20), REDTLS_E_COMMAND_TIMEOUT);
    long made = lab_alloc_big_calls(), held = lab_alloc_big_live();
    print_message("command waiting: %ld blocks of >= %d bytes made, %ld held\n", made, BIG, held);
    assert_int_equal(redtls_async_pending(ac), 1);
    assert_true(made >= 1);
    assert_int_equal(held, 0);
    assert_int_equal(redtls_async_run(&ac, 1, 5000), REDTLS_OK);
    stop_counting();
    assert_int_equal(t_reply_type, REDTLS_REPLY_NIL);
    redtls_async_free(ac);
}

/* Handshake done, AUTH sent, no answer (the session tickets of TLS 1.3
 * came and were read): nothing that large is held. */
static void test_setup_waits_without_buffers(void **state)
{
    (void)state;
    if (!LAB_ALLOC_HOOK)
        skip();
    lab_server hostile;
    assert_int_equal(lab_hostile_start(&hostile, &(lab_hostile_opts){.tls = 1, .end = LAB_HOSTILE_HOLD}), 0);
    long made, held;
    redtls_async *ac = connect_stuck(hostile.port, TOKEN, &made, &held);
    print_message("AUTH waiting: %ld blocks of >= %d bytes made, %ld held\n", made, BIG, held);
    assert_true(made >= 3);
    assert_int_equal(held, 0);
    redtls_async_free(ac);
    lab_stop(&hostile);
}

/* The application's own OpenSSL call failed and left an error in the
 * thread's queue. Reads that must wait for the socket still work (a BLPOP
 * answered 200 ms later makes sure one waits), they do not take the stale
 * entry for their own failure, the entry is still there afterwards, and a
 * server that ends the session is reported for what it did
 * (close_notify), not with the stale entry's reason. */
static void test_stale_error_in_queue(void **state)
{
    (void)state;
    redtls_conn *c = connected();
    redtls_conn *admin = connected();
    redisReply *r = NULL;
    assert_conn_status(c, redtls_conn_command(c, &r, "CLIENT ID"), REDTLS_OK);
    long long id = redtls_reply_integer(r);
    redtls_reply_free(r);
    ERR_clear_error();
    ERR_raise(ERR_LIB_USER, 77);
    unsigned long mine = ERR_peek_error();
    assert_true(mine != 0);
    for (int i = 0; i < 5; i++) {
        assert_conn_status(c, redtls_conn_append(c, "PING"), REDTLS_OK);
        assert_conn_status(c, redtls_conn_append(c, "BLPOP stale:never 0.2"), REDTLS_OK);
        long long t0 = lab_now_ms();
        assert_conn_status(c, redtls_conn_get_reply(c, &r), REDTLS_OK);
        assert_string_equal(redtls_reply_str(r, NULL), "PONG");
        redtls_reply_free(r);
        assert_conn_status(c, redtls_conn_get_reply(c, &r), REDTLS_OK);
        assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_NIL);
        redtls_reply_free(r);
        assert_true(lab_now_ms() - t0 >= 150);
    }
    for (int i = 0; i < 500; i++)
        assert_conn_status(c, redtls_conn_append(c, "SET stale:%d %d", i, i), REDTLS_OK);
    for (int i = 0; i < 500; i++) {
        assert_conn_status(c, redtls_conn_get_reply(c, &r), REDTLS_OK);
        assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_STATUS);
        redtls_reply_free(r);
    }
    assert_int_equal(ERR_peek_error(), mine);

    /* The server ends the session while a command waits for its reply. */
    assert_conn_status(c, redtls_conn_append(c, "BLPOP stale:never 5"), REDTLS_OK);
    assert_conn_status(c, redtls_conn_flush(c), REDTLS_OK);
    ERR_clear_error();
    assert_conn_status(admin, redtls_conn_command(admin, &r, "CLIENT KILL ID %lld", id), REDTLS_OK);
    assert_int_equal(redtls_reply_integer(r), 1);
    redtls_reply_free(r);
    ERR_raise(ERR_LIB_USER, 77);
    assert_conn_status(c, redtls_conn_get_reply(c, &r), REDTLS_E_OUTCOME_UNKNOWN);
    print_message("killed while waiting, with a stale error queued: %s\n", redtls_conn_errmsg(c));
    assert_contains(redtls_conn_errmsg(c), "close_notify");
    ERR_clear_error();
    redtls_conn_free(admin);
    redtls_conn_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connected_holds_no_buffers),
        cmocka_unit_test(test_busy_keeps_quiet_gives_back),
        cmocka_unit_test(test_tls_details_made_on_first_use),
        cmocka_unit_test(test_last_failure_without_memory),
        cmocka_unit_test(test_auth_answers_only_during_auth),
        cmocka_unit_test(test_handshake_waits_without_record_buffers),
        cmocka_unit_test(test_setup_waits_without_buffers),
        cmocka_unit_test(test_command_waits_without_buffers),
        cmocka_unit_test(test_stale_error_in_queue),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/* Commands, pipelines, replies and connection set-up against a real
 * redis-server with TLS and AUTH (plus its plain port and Unix socket). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <redtls/redtls.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_client.h"

#define TOKEN "lab-Cmd-Token-91be07"
#define USER_TOKEN "lab-User-Token-5c3a18"
#define TIMEOUT_MS 3000
#define SHORT_COMMAND_MS 300
#define PIPELINE_N 1000

static lab_server redis; /* TLS + plain port + Unix socket, requirepass TOKEN */

static struct {
    lab_server srv;
    redtls_config *cfg;
    redtls_conn *conn;
    redtls_conn *other;
    struct redisReply *reply;
} t;

static int group_setup(void **state)
{
    (void)state;
    return lab_init_redis(60, &redis,
                          &(lab_redis_opts){.tls = 1, .plain_port = 1, .unix_socket = 1, .password = TOKEN});
}

static int group_teardown(void **state)
{
    (void)state;
    lab_stop(&redis);
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
    redtls_reply_free(t.reply);
    redtls_conn_free(t.conn);
    redtls_conn_free(t.other);
    redtls_config_free(t.cfg);
    /* A test that failed between SIGSTOP and SIGCONT must not leave the
     * shared server frozen. */
    lab_signal(redis.pid, SIGCONT);
    lab_stop(&t.srv);
    memset(&t, 0, sizeof t);
    return 0;
}

static redtls_config *make_cfg(uint16_t port)
{
    redtls_config *cfg = NULL;
    lab_client_config(&cfg, "localhost", port, "ca.crt", TOKEN);
    lab_client_timeouts(cfg, TIMEOUT_MS, TIMEOUT_MS, TIMEOUT_MS);
    redtls_config_free(t.cfg);
    t.cfg = cfg;
    return cfg;
}

static redtls_conn *new_conn(void)
{
    redtls_conn *c = NULL;
    assert_cfg_status(t.cfg, redtls_conn_new(t.cfg, &c), REDTLS_OK);
    assert_non_null(c);
    return c;
}

/* t.conn connected to the shared server with t.cfg (made when missing). */
static void connect_main(void)
{
    if (t.cfg == NULL) {
        make_cfg(redis.port);
    }
    redtls_conn_free(t.conn);
    t.conn = new_conn();
    assert_conn_status(t.conn, redtls_conn_connect(t.conn), REDTLS_OK);
}

/* Runs a printf-style command on conn into t.reply (freeing the previous). */
#define CMD(conn, ...)                                                                         \
    do {                                                                                       \
        redtls_reply_free(t.reply);                                                            \
        t.reply = NULL;                                                                        \
        assert_conn_status((conn), redtls_conn_command((conn), &t.reply, __VA_ARGS__), REDTLS_OK); \
        assert_non_null(t.reply);                                                              \
    } while (0)

static void test_binary_argv(void **state)
{
    static const char key[] = "bin\0key\r\n";
    char val[1024];
    const char *argv[3];
    size_t lens[3];
    size_t len = 0;
    const char *s;
    (void)state;
    for (size_t i = 0; i < sizeof val; i++) {
        val[i] = (char)(i % 256);
    }
    connect_main();

    argv[0] = "SET";
    argv[1] = key;
    argv[2] = val;
    lens[0] = 3;
    lens[1] = sizeof key - 1;
    lens[2] = sizeof val;
    assert_conn_status(t.conn, redtls_conn_command_argv(t.conn, 3, argv, lens, &t.reply), REDTLS_OK);
    assert_reply_str(t.reply, REDTLS_REPLY_STATUS, "OK");
    redtls_reply_free(t.reply);
    t.reply = NULL;

    argv[0] = "GET";
    lens[0] = 3;
    assert_conn_status(t.conn, redtls_conn_command_argv(t.conn, 2, argv, lens, &t.reply), REDTLS_OK);
    assert_int_equal(redtls_reply_type(t.reply), REDTLS_REPLY_STRING);
    s = redtls_reply_str(t.reply, &len);
    assert_non_null(s);
    assert_int_equal(len, sizeof val);
    assert_memory_equal(s, val, sizeof val);
    redtls_reply_free(t.reply);
    t.reply = NULL;

    /* The key really has the NUL in it: the prefix before it is another key. */
    argv[1] = "bin";
    lens[1] = 3;
    assert_conn_status(t.conn, redtls_conn_command_argv(t.conn, 2, argv, lens, &t.reply), REDTLS_OK);
    assert_int_equal(redtls_reply_type(t.reply), REDTLS_REPLY_NIL);
    redtls_reply_free(t.reply);
    t.reply = NULL;

    /* argvlen NULL: C strings. */
    argv[0] = "ECHO";
    argv[1] = "plain c string";
    assert_conn_status(t.conn, redtls_conn_command_argv(t.conn, 2, argv, NULL, &t.reply), REDTLS_OK);
    assert_reply_str(t.reply, REDTLS_REPLY_STRING, "plain c string");
}

static void test_printf_command(void **state)
{
    static const char blob[] = {'a', '\0', 'b', ' ', 'c'};
    size_t len = 0;
    const char *s;
    (void)state;
    connect_main();
    CMD(t.conn, "SET %s %b", "fmt:blob", blob, sizeof blob);
    assert_reply_str(t.reply, REDTLS_REPLY_STATUS, "OK");
    CMD(t.conn, "GET %s", "fmt:blob");
    s = redtls_reply_str(t.reply, &len);
    assert_int_equal(len, sizeof blob);
    assert_memory_equal(s, blob, sizeof blob);
    CMD(t.conn, "DEL %s", "fmt:n");
    CMD(t.conn, "INCRBY %s %d", "fmt:n", 41);
    assert_int_equal(redtls_reply_type(t.reply), REDTLS_REPLY_INTEGER);
    assert_int_equal(redtls_reply_integer(t.reply), 41);
    CMD(t.conn, "INCRBY %s %lld", "fmt:n", 1LL << 40);
    assert_int_equal(redtls_reply_integer(t.reply), 41 + (1LL << 40));
}

static void test_large_value(void **state)
{
    const size_t n = 3u * 1024u * 1024u + 17u;
    char *big = malloc(n);
    size_t len = 0;
    const char *s;
    (void)state;
    assert_non_null(big);
    for (size_t i = 0; i < n; i++) {
        big[i] = (char)('a' + i % 26);
    }
    connect_main();
    redtls_reply_free(t.reply);
    t.reply = NULL;
    redtls_status st = redtls_conn_command(t.conn, &t.reply, "SET %s %b", "big", big, n);
    if (st != REDTLS_OK) {
        free(big);
    }
    assert_conn_status(t.conn, st, REDTLS_OK);
    assert_reply_str(t.reply, REDTLS_REPLY_STATUS, "OK");
    redtls_reply_free(t.reply);
    t.reply = NULL;
    st = redtls_conn_command(t.conn, &t.reply, "GET %s", "big");
    s = redtls_reply_str(t.reply, &len);
    int same = st == REDTLS_OK && s != NULL && len == n && memcmp(s, big, n) == 0;
    free(big);
    assert_conn_status(t.conn, st, REDTLS_OK);
    assert_int_equal(len, n);
    assert_true(same);
}

static void test_pipeline(void **state)
{
    (void)state;
    connect_main();
    for (int i = 0; i < PIPELINE_N; i++) {
        assert_conn_status(t.conn, redtls_conn_append(t.conn, "SET pipe:%d %d", i, i * 7), REDTLS_OK);
    }
    assert_int_equal(redtls_conn_pending(t.conn), PIPELINE_N);
    /* Replies are pending: a plain command would take one of them. */
    assert_conn_status(t.conn, redtls_conn_command(t.conn, &t.reply, "PING"), REDTLS_E_STATE);
    assert_null(t.reply);
    assert_conn_status(t.conn, redtls_conn_flush(t.conn), REDTLS_OK);
    assert_int_equal(redtls_conn_pending(t.conn), PIPELINE_N);
    for (int i = 0; i < PIPELINE_N; i++) {
        struct redisReply *r = NULL;
        assert_conn_status(t.conn, redtls_conn_get_reply(t.conn, &r), REDTLS_OK);
        t.reply = r;
        assert_reply_str(r, REDTLS_REPLY_STATUS, "OK");
        redtls_reply_free(r);
        t.reply = NULL;
    }
    assert_int_equal(redtls_conn_pending(t.conn), 0);

    for (int i = 0; i < PIPELINE_N; i++) {
        char key[32];
        const char *argv[2] = {"GET", key};
        snprintf(key, sizeof key, "pipe:%d", i);
        assert_conn_status(t.conn, redtls_conn_append_argv(t.conn, 2, argv, NULL), REDTLS_OK);
    }
    assert_int_equal(redtls_conn_pending(t.conn), PIPELINE_N);
    for (int i = 0; i < PIPELINE_N; i++) {
        char want[32];
        struct redisReply *r = NULL;
        snprintf(want, sizeof want, "%d", i * 7);
        assert_conn_status(t.conn, redtls_conn_get_reply(t.conn, &r), REDTLS_OK);
        t.reply = r;
        assert_reply_str(r, REDTLS_REPLY_STRING, want);
        redtls_reply_free(r);
        t.reply = NULL;
    }
    assert_int_equal(redtls_conn_pending(t.conn), 0);
    assert_conn_status(t.conn, redtls_conn_get_reply(t.conn, &t.reply), REDTLS_E_STATE);
    assert_null(t.reply);
    /* Still usable. */
    CMD(t.conn, "PING");
    assert_reply_str(t.reply, REDTLS_REPLY_STATUS, "PONG");
}

static void test_error_reply_is_not_a_failure(void **state)
{
    (void)state;
    connect_main();
    CMD(t.conn, "NOSUCHCOMMAND %s", "x");
    assert_int_equal(redtls_reply_type(t.reply), REDTLS_REPLY_ERROR);
    assert_contains(redtls_reply_str(t.reply, NULL), "unknown command");
    CMD(t.conn, "SET %s %s", "err:str", "text");
    CMD(t.conn, "LPUSH %s %s", "err:str", "x");
    assert_int_equal(redtls_reply_type(t.reply), REDTLS_REPLY_ERROR);
    assert_contains(redtls_reply_str(t.reply, NULL), "WRONGTYPE");
    assert_int_equal(redtls_conn_is_connected(t.conn), 1);
    CMD(t.conn, "PING");
    assert_reply_str(t.reply, REDTLS_REPLY_STATUS, "PONG");
}

static void test_select_db(void **state)
{
    (void)state;
    make_cfg(redis.port);
    assert_cfg_status(t.cfg, redtls_config_set_db(t.cfg, 3), REDTLS_OK);
    connect_main();
    CMD(t.conn, "CLIENT INFO");
    assert_contains(redtls_reply_str(t.reply, NULL), " db=3 ");
    CMD(t.conn, "SET %s %s", "db3:key", "here");

    assert_cfg_status(t.cfg, redtls_config_set_db(t.cfg, 0), REDTLS_OK);
    t.other = new_conn();
    assert_conn_status(t.other, redtls_conn_connect(t.other), REDTLS_OK);
    CMD(t.other, "EXISTS %s", "db3:key");
    assert_int_equal(redtls_reply_integer(t.reply), 0);
    CMD(t.other, "SELECT %d", 3);
    CMD(t.other, "EXISTS %s", "db3:key");
    assert_int_equal(redtls_reply_integer(t.reply), 1);
}

static void test_select_refused(void **state)
{
    (void)state;
    make_cfg(redis.port);
    assert_cfg_status(t.cfg, redtls_config_set_db(t.cfg, 99), REDTLS_OK);
    t.conn = new_conn();
    assert_conn_status(t.conn, redtls_conn_connect(t.conn), REDTLS_E_SETUP);
    assert_int_equal(redtls_conn_is_connected(t.conn), 0);
    assert_not_contains(redtls_conn_errmsg(t.conn), TOKEN);
}

static void test_client_name(void **state)
{
    (void)state;
    make_cfg(redis.port);
    assert_cfg_status(t.cfg, redtls_config_set_client_name(t.cfg, "redtls-lab"), REDTLS_OK);
    connect_main();
    CMD(t.conn, "CLIENT GETNAME");
    assert_reply_str(t.reply, REDTLS_REPLY_STRING, "redtls-lab");
}

static void test_acl_user(void **state)
{
    (void)state;
    connect_main();
    CMD(t.conn, "ACL SETUSER %s reset on >%s ~* &* +@all", "labuser", USER_TOKEN);
    assert_reply_str(t.reply, REDTLS_REPLY_STATUS, "OK");

    make_cfg(redis.port);
    assert_cfg_status(t.cfg, redtls_config_set_user(t.cfg, "labuser"), REDTLS_OK);
    assert_cfg_status(t.cfg, redtls_config_set_token(t.cfg, USER_TOKEN), REDTLS_OK);
    t.other = new_conn();
    assert_conn_status(t.other, redtls_conn_connect(t.other), REDTLS_OK);
    CMD(t.other, "ACL WHOAMI");
    assert_reply_str(t.reply, REDTLS_REPLY_STRING, "labuser");
    redtls_conn_free(t.other);
    t.other = NULL;

    /* The default user's token is not labuser's. */
    assert_cfg_status(t.cfg, redtls_config_set_token(t.cfg, TOKEN), REDTLS_OK);
    t.other = new_conn();
    assert_conn_status(t.other, redtls_conn_connect(t.other), REDTLS_E_AUTH);
    assert_not_contains(redtls_conn_errmsg(t.other), TOKEN);
    assert_not_contains(redtls_conn_errmsg(t.other), USER_TOKEN);
}

static void test_wrong_token(void **state)
{
    static const char wrong[] = "lab-Wrong-Token-0aa3f2";
    (void)state;
    make_cfg(redis.port);
    assert_cfg_status(t.cfg, redtls_config_set_token(t.cfg, wrong), REDTLS_OK);
    t.conn = new_conn();
    assert_conn_status(t.conn, redtls_conn_connect(t.conn), REDTLS_E_AUTH);
    assert_int_equal(redtls_conn_is_connected(t.conn), 0);
    assert_true(strlen(redtls_conn_errmsg(t.conn)) > 0);
    assert_not_contains(redtls_conn_errmsg(t.conn), wrong);
    assert_not_contains(redtls_conn_errmsg(t.conn), TOKEN);
}

/* Without credentials the connection comes up; the server then answers
 * NOAUTH, which is a reply, not a failure. */
static void test_no_token(void **state)
{
    (void)state;
    make_cfg(redis.port);
    assert_cfg_status(t.cfg, redtls_config_set_token(t.cfg, NULL), REDTLS_OK);
    connect_main();
    CMD(t.conn, "GET %s", "x");
    assert_int_equal(redtls_reply_type(t.reply), REDTLS_REPLY_ERROR);
    assert_contains(redtls_reply_str(t.reply, NULL), "NOAUTH");
}

static void connect_url(const char *url)
{
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    redtls_config_free(t.cfg);
    t.cfg = cfg;
    assert_cfg_status(cfg, redtls_config_set_url(cfg, url), REDTLS_OK);
    t.conn = new_conn();
    assert_conn_status(t.conn, redtls_conn_connect(t.conn), REDTLS_OK);
}

static void test_url_tls(void **state)
{
    char url[1024];
    (void)state;
    snprintf(url, sizeof url, "rediss://:%s@localhost:%u/2?cacert=%s&name=urlclient&timeout=2000", TOKEN,
             redis.port, lab_cert("ca.crt"));
    connect_url(url);
    assert_non_null(redtls_conn_tls_version(t.conn));
    CMD(t.conn, "CLIENT INFO");
    assert_contains(redtls_reply_str(t.reply, NULL), " db=2 ");
    assert_contains(redtls_reply_str(t.reply, NULL), " name=urlclient ");
}

static void test_url_plain_tcp(void **state)
{
    char url[256];
    (void)state;
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%u/1", TOKEN, redis.plain_port);
    connect_url(url);
    assert_null(redtls_conn_tls_version(t.conn));
    CMD(t.conn, "CLIENT INFO");
    assert_contains(redtls_reply_str(t.reply, NULL), " db=1 ");
    assert_contains(redtls_reply_str(t.reply, NULL), "laddr=127.0.0.1:");
}

static void test_url_unix(void **state)
{
    char url[256];
    (void)state;
    snprintf(url, sizeof url, "unix://:%s@%s?db=4", TOKEN, redis.unix_path);
    connect_url(url);
    assert_null(redtls_conn_tls_version(t.conn));
    CMD(t.conn, "CLIENT INFO");
    assert_contains(redtls_reply_str(t.reply, NULL), " db=4 ");
    assert_contains(redtls_reply_str(t.reply, NULL), "flags=U");
}

static void test_url_errors_hide_token(void **state)
{
    char url[256];
    redtls_config *cfg = NULL;
    (void)state;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    t.cfg = cfg;
    snprintf(url, sizeof url, "rediss://:%s@localhost:notaport/0", TOKEN);
    assert_cfg_status(cfg, redtls_config_set_url(cfg, url), REDTLS_E_URL);
    assert_true(strlen(redtls_config_errmsg(cfg)) > 0);
    assert_not_contains(redtls_config_errmsg(cfg), TOKEN);
    snprintf(url, sizeof url, "rediss://:%s@localhost:%u/0?cacert=/nonexistent/ca.crt", TOKEN, redis.port);
    assert_cfg_status(cfg, redtls_config_set_url(cfg, url), REDTLS_E_CONFIG);
    assert_not_contains(redtls_config_errmsg(cfg), TOKEN);
}

static void test_command_timeout(void **state)
{
    long long t0, elapsed;
    redtls_status st;
    (void)state;
    make_cfg(redis.port);
    assert_cfg_status(t.cfg, redtls_config_set_command_timeout_ms(t.cfg, SHORT_COMMAND_MS), REDTLS_OK);
    connect_main();
    CMD(t.conn, "PING");

    redtls_reply_free(t.reply);
    t.reply = NULL;
    assert_int_equal(lab_signal(redis.pid, SIGSTOP), 0);
    t0 = lab_now_ms();
    st = redtls_conn_command(t.conn, &t.reply, "PING");
    elapsed = lab_now_ms() - t0;
    assert_int_equal(lab_signal(redis.pid, SIGCONT), 0);

    print_message("command timeout after %lld ms (limit %d ms)\n", elapsed, SHORT_COMMAND_MS);
    assert_conn_status(t.conn, st, REDTLS_E_COMMAND_TIMEOUT);
    assert_null(t.reply);
    assert_in_range(elapsed, SHORT_COMMAND_MS - 30, 3 * SHORT_COMMAND_MS);
    /* The late PONG must never be taken for a later reply: the timed-out
     * connection is closed and the next command runs on a new one. */
    assert_int_equal(redtls_conn_is_connected(t.conn), 0);
    CMD(t.conn, "ECHO %s", "after");
    assert_reply_str(t.reply, REDTLS_REPLY_STRING, "after");
}

static void test_server_killed(void **state)
{
    redtls_status st;
    (void)state;
    assert_int_equal(lab_redis_start(&t.srv, &(lab_redis_opts){.tls = 1, .password = TOKEN}), 0);
    make_cfg(t.srv.port);
    connect_main();
    CMD(t.conn, "PING");
    assert_int_equal(lab_signal(t.srv.pid, SIGKILL), 0);
    lab_stop(&t.srv);
    redtls_reply_free(t.reply);
    t.reply = NULL;
    /* The closed idle connection is noticed before anything is written,
     * and the reconnect finds nobody listening. */
    st = redtls_conn_command(t.conn, &t.reply, "PING");
    if (st != REDTLS_E_CONNECT && st != REDTLS_E_UNAVAILABLE) {
        print_error("got %d (%s): %s\n", st, redtls_strerror(st), redtls_conn_errmsg(t.conn));
        fail();
    }
    assert_null(t.reply);
    assert_int_equal(redtls_conn_is_connected(t.conn), 0);
}

static void test_close_and_reconnect(void **state)
{
    (void)state;
    connect_main();
    CMD(t.conn, "SET %s %s", "re:key", "1");
    redtls_reply_free(t.reply);
    t.reply = NULL;
    redtls_conn_close(t.conn);
    assert_int_equal(redtls_conn_is_connected(t.conn), 0);
    assert_null(redtls_conn_tls_version(t.conn));
    /* The next command reconnects by itself. */
    CMD(t.conn, "PING");
    assert_true(redtls_conn_is_connected(t.conn));
    redtls_reply_free(t.reply);
    t.reply = NULL;
    redtls_conn_close(t.conn);
    redtls_conn_close(t.conn); /* twice is harmless */
    assert_conn_status(t.conn, redtls_conn_connect(t.conn), REDTLS_OK);
    CMD(t.conn, "GET %s", "re:key");
    assert_reply_str(t.reply, REDTLS_REPLY_STRING, "1");
    /* connect on an open connection reconnects. */
    assert_conn_status(t.conn, redtls_conn_connect(t.conn), REDTLS_OK);
    CMD(t.conn, "PING");
    assert_reply_str(t.reply, REDTLS_REPLY_STATUS, "PONG");
    /* Pending pipelined commands are dropped by close. */
    assert_conn_status(t.conn, redtls_conn_append(t.conn, "PING"), REDTLS_OK);
    assert_int_equal(redtls_conn_pending(t.conn), 1);
    redtls_conn_close(t.conn);
    assert_int_equal(redtls_conn_pending(t.conn), 0);
}

static void test_nested_replies(void **state)
{
    const struct redisReply *inner, *innermost;
    (void)state;
    connect_main();
    CMD(t.conn, "EVAL %s %d",
        "return {1, 'two', {3, 'four', {5}}, redis.status_reply('fine'), redis.error_reply('bad'), false}", 0);
    assert_int_equal(redtls_reply_type(t.reply), REDTLS_REPLY_ARRAY);
    assert_int_equal(redtls_reply_len(t.reply), 6);
    assert_null(redtls_reply_str(t.reply, NULL));
    assert_int_equal(redtls_reply_integer(t.reply), 0);

    assert_int_equal(redtls_reply_type(redtls_reply_element(t.reply, 0)), REDTLS_REPLY_INTEGER);
    assert_int_equal(redtls_reply_integer(redtls_reply_element(t.reply, 0)), 1);
    assert_reply_str(redtls_reply_element(t.reply, 1), REDTLS_REPLY_STRING, "two");
    assert_int_equal(redtls_reply_len(redtls_reply_element(t.reply, 1)), 0);
    assert_null(redtls_reply_element(redtls_reply_element(t.reply, 1), 0));

    inner = redtls_reply_element(t.reply, 2);
    assert_int_equal(redtls_reply_type(inner), REDTLS_REPLY_ARRAY);
    assert_int_equal(redtls_reply_len(inner), 3);
    assert_int_equal(redtls_reply_integer(redtls_reply_element(inner, 0)), 3);
    assert_reply_str(redtls_reply_element(inner, 1), REDTLS_REPLY_STRING, "four");
    innermost = redtls_reply_element(inner, 2);
    assert_int_equal(redtls_reply_type(innermost), REDTLS_REPLY_ARRAY);
    assert_int_equal(redtls_reply_len(innermost), 1);
    assert_int_equal(redtls_reply_integer(redtls_reply_element(innermost, 0)), 5);
    assert_null(redtls_reply_element(innermost, 1));

    assert_reply_str(redtls_reply_element(t.reply, 3), REDTLS_REPLY_STATUS, "fine");
    assert_reply_str(redtls_reply_element(t.reply, 4), REDTLS_REPLY_ERROR, "ERR bad");
    assert_int_equal(redtls_reply_type(redtls_reply_element(t.reply, 5)), REDTLS_REPLY_NIL);
    assert_null(redtls_reply_element(t.reply, 6));
    assert_null(redtls_reply_element(t.reply, (size_t)-1));

    assert_int_equal(redtls_reply_type(NULL), 0);
    assert_null(redtls_reply_str(NULL, NULL));
    assert_int_equal(redtls_reply_len(NULL), 0);
    assert_null(redtls_reply_element(NULL, 0));
    redtls_reply_free(NULL);

    /* Empty array. */
    CMD(t.conn, "EVAL %s %d", "return {}", 0);
    assert_int_equal(redtls_reply_type(t.reply), REDTLS_REPLY_ARRAY);
    assert_int_equal(redtls_reply_len(t.reply), 0);
    assert_null(redtls_reply_element(t.reply, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_binary_argv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_printf_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_reply_is_not_a_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_select_db, setup, teardown),
        cmocka_unit_test_setup_teardown(test_select_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acl_user, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url_plain_tcp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url_unix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url_errors_hide_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_and_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_replies, setup, teardown),
    };
    return cmocka_run_group_tests_name("integration.commands", tests, group_setup, group_teardown);
}

/* lib/conn.c: connect, close, flush and timeouts through the public API,
 * against a Unix socket served by the test itself (no network). */
#include "unit_util.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

static char dir[64];

static int group_setup(void **state)
{
    (void)state;
    unit_tmpdir(dir, sizeof dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unit_rmtree(dir);
    return 0;
}

typedef struct fx {
    char path[128];
    int listener;
    int server; /* accepted peer, -1 until accepted */
    redtls_config *cfg;
    redtls_conn *conn;
} fx;

static int fx_setup(void **state)
{
    static int n;
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->path, sizeof f->path, "%s/s%d.sock", dir, n++);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    assert_true(strlen(f->path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, f->path, strlen(f->path) + 1);
    f->listener = socket(AF_UNIX, SOCK_STREAM, 0);
    if (f->listener < 0 || bind(f->listener, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(f->listener, 4) != 0)
        return -1;
    f->server = -1;
    f->cfg = unit_plain_config();
    assert_status(redtls_config_set_unix_path(f->cfg, f->path), REDTLS_OK);
    /* These tests drive the connection by hand; reconnection has its own
     * tests (unit.reconnect, integration.resilience). */
    assert_status(redtls_config_set_reconnect(f->cfg, 0), REDTLS_OK);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    redtls_conn_free(f->conn);
    redtls_config_free(f->cfg);
    if (f->server >= 0)
        close(f->server);
    close(f->listener);
    unlink(f->path);
    free(f);
    return 0;
}

/* Connects (the kernel completes a Unix connect from the backlog) and
 * accepts the server side. */
static void connect_and_accept(fx *f)
{
    assert_status(redtls_conn_new(f->cfg, &f->conn), REDTLS_OK);
    assert_status(redtls_conn_connect(f->conn), REDTLS_OK);
    assert_true(redtls_conn_is_connected(f->conn));
    f->server = accept(f->listener, NULL, NULL);
    assert_true(f->server >= 0);
}

static size_t server_read(fx *f, char *buf, size_t cap, size_t want)
{
    size_t got = 0;
    while (got < want) {
        struct pollfd p = {.fd = f->server, .events = POLLIN, .revents = 0};
        assert_int_equal(poll(&p, 1, 2000), 1);
        ssize_t n = recv(f->server, buf + got, cap - got, 0);
        assert_true(n > 0);
        got += (size_t)n;
    }
    return got;
}

static void test_connect_command_close(void **state)
{
    fx *f = *state;
    connect_and_accept(f);
    /* The server answers only what it was asked: a reply sent ahead would
     * be data nobody asked for, and the connection would be dropped. */
    assert_status(redtls_conn_append(f->conn, "PING"), REDTLS_OK);
    assert_status(redtls_conn_flush(f->conn), REDTLS_OK);
    char buf[64];
    assert_int_equal(server_read(f, buf, sizeof buf, 14), 14);
    assert_memory_equal(buf, "*1\r\n$4\r\nPING\r\n", 14);
    assert_int_equal(send(f->server, "+PONG\r\n", 7, 0), 7);
    redisReply *r = NULL;
    assert_status(redtls_conn_get_reply(f->conn, &r), REDTLS_OK);
    assert_string_equal(redtls_reply_str(r, NULL), "PONG");
    redtls_reply_free(r);

    /* No TLS details on a plain connection. */
    assert_null(redtls_conn_tls_version(f->conn));
    assert_null(redtls_conn_tls_cipher(f->conn));
    assert_null(redtls_conn_peer_subject(f->conn));
    assert_null(redtls_conn_peer_sans(f->conn));
    assert_null(redtls_conn_peer_not_after(f->conn));

    redtls_conn_close(f->conn);
    assert_int_equal(redtls_conn_is_connected(f->conn), 0);
    assert_int_equal(recv(f->server, buf, sizeof buf, 0), 0);
    assert_status(redtls_conn_command(f->conn, &r, "PING"), REDTLS_E_STATE);
    redtls_conn_close(f->conn); /* twice is harmless */
}

/* A reply taken after a long wait counts as activity when it arrives, not
 * when the command went out: the next command on the connection, sent
 * straight after, needs no health-check PING (the connection was never
 * idle for the health-check interval). */
static void test_slow_reply_is_recent_activity(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_health_check_ms(f->cfg, 200), REDTLS_OK);
    assert_status(redtls_config_set_command_timeout_ms(f->cfg, 2000), REDTLS_OK);
    connect_and_accept(f);
    assert_status(redtls_conn_append(f->conn, "GET a"), REDTLS_OK);
    assert_status(redtls_conn_flush(f->conn), REDTLS_OK);
    char buf[128];
    assert_int_equal(server_read(f, buf, sizeof buf, 20), 20);
    /* The answer comes 400 ms later, while the client waits for it. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct timespec slow = {0, 400 * 1000 * 1000};
        nanosleep(&slow, NULL);
        _exit(send(f->server, "$-1\r\n", 5, 0) == 5 ? 0 : 1);
    }
    redisReply *r = NULL;
    assert_status(redtls_conn_get_reply(f->conn, &r), REDTLS_OK);
    redtls_reply_free(r);
    /* At once: a PING here would wait for an answer this server never
     * gives, and the flush would fail. (The child is reaped after: under
     * valgrind its exit can take longer than the health-check interval.) */
    assert_status(redtls_conn_append(f->conn, "GET b"), REDTLS_OK);
    assert_status(redtls_conn_flush(f->conn), REDTLS_OK);
    size_t n = server_read(f, buf, sizeof buf, 20);
    assert_int_equal(n, 20);
    assert_memory_equal(buf, "*2\r\n$3\r\nGET\r\n$1\r\nb\r\n", 20);
    assert_int_equal(send(f->server, "$-1\r\n", 5, 0), 5);
    assert_status(redtls_conn_get_reply(f->conn, &r), REDTLS_OK);
    redtls_reply_free(r);
    int wst = 0;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
}

/* An idempotent command whose connection breaks late in its timeout: the
 * reconnection that follows counts its attempts, backoff and outage from
 * when the break happened, not from when the command started. Backoff 300
 * ms, outage limit 500 ms, the server gone (its socket path removed) 600
 * ms into the command: attempts at about 600, 900 and 1,200 ms, the third
 * giving up. Counted from the command's start, the first failure would
 * open the outage 600 ms early and the second attempt would give up. */
static void test_late_break_reconnects_on_time(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_reconnect(f->cfg, 1), REDTLS_OK);
    assert_status(redtls_config_set_backoff(f->cfg, 300, 300), REDTLS_OK);
    assert_status(redtls_config_set_reconnect_limits(f->cfg, 0, 500), REDTLS_OK);
    assert_status(redtls_config_set_command_timeout_ms(f->cfg, 5000), REDTLS_OK);
    connect_and_accept(f);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char buf[64];
        ssize_t n = recv(f->server, buf, sizeof buf, 0);
        struct timespec late = {0, 600 * 1000 * 1000};
        nanosleep(&late, NULL);
        unlink(f->path);
        _exit(n > 0 ? 0 : 1);
    }
    close(f->server);
    f->server = -1;
    close(f->listener);
    f->listener = -1;
    const char *argv[] = {"GET", "k"};
    redisReply *r = NULL;
    redtls_status st = redtls_conn_command_argv_ex(f->conn, REDTLS_CMD_IDEMPOTENT, 2, argv, NULL, &r);
    int wst = 0;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    assert_null(r);
    assert_status(st, REDTLS_E_CONNECT);
    assert_contains(redtls_conn_errmsg(f->conn), "(reconnect attempt 3; giving up)");
}

static void test_reconnect(void **state)
{
    fx *f = *state;
    connect_and_accept(f);
    int first = f->server;
    /* Connecting again closes the open connection first. */
    assert_status(redtls_conn_connect(f->conn), REDTLS_OK);
    f->server = accept(f->listener, NULL, NULL);
    assert_true(f->server >= 0);
    char c;
    assert_int_equal(recv(first, &c, 1, 0), 0);
    close(first);
    assert_status(redtls_conn_append(f->conn, "INCR x"), REDTLS_OK);
    assert_status(redtls_conn_flush(f->conn), REDTLS_OK);
    char buf[64];
    server_read(f, buf, sizeof buf, 21);
    assert_int_equal(send(f->server, ":1\r\n", 4, 0), 4);
    redisReply *r = NULL;
    assert_status(redtls_conn_get_reply(f->conn, &r), REDTLS_OK);
    assert_true(redtls_reply_integer(r) == 1);
    redtls_reply_free(r);
}

static void test_connect_missing_socket(void **state)
{
    fx *f = *state;
    char missing[160];
    snprintf(missing, sizeof missing, "%s/nobody.sock", dir);
    assert_status(redtls_config_set_unix_path(f->cfg, missing), REDTLS_OK);
    assert_status(redtls_conn_new(f->cfg, &f->conn), REDTLS_OK);
    assert_status(redtls_conn_connect(f->conn), REDTLS_E_CONNECT);
    assert_int_equal(redtls_conn_is_connected(f->conn), 0);
    assert_contains(redtls_conn_errmsg(f->conn), missing);
}

static void test_flush_and_close_drop_pending(void **state)
{
    fx *f = *state;
    connect_and_accept(f);
    assert_status(redtls_conn_append(f->conn, "SET a 1"), REDTLS_OK);
    assert_status(redtls_conn_append(f->conn, "GET a"), REDTLS_OK);
    assert_int_equal(redtls_conn_pending(f->conn), 2);
    assert_status(redtls_conn_flush(f->conn), REDTLS_OK);
    assert_int_equal(redtls_conn_pending(f->conn), 2);
    char buf[128];
    const char want[] = "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n";
    assert_int_equal(server_read(f, buf, sizeof buf, sizeof want - 1), sizeof want - 1);
    assert_memory_equal(buf, want, sizeof want - 1);
    /* Flushing again writes nothing more. */
    assert_status(redtls_conn_flush(f->conn), REDTLS_OK);
    redtls_conn_close(f->conn);
    assert_int_equal(redtls_conn_pending(f->conn), 0);
    assert_int_equal(recv(f->server, buf, sizeof buf, 0), 0);
}

static void test_command_timeout_closes(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_command_timeout_ms(f->cfg, 80), REDTLS_OK);
    connect_and_accept(f);
    redisReply *r = NULL;
    int64_t t0 = redtls__now_ms();
    assert_status(redtls_conn_command(f->conn, &r, "BLPOP q 0"), REDTLS_E_COMMAND_TIMEOUT);
    int64_t took = redtls__now_ms() - t0;
    assert_true(took >= 75 && took < 2000);
    assert_null(r);
    assert_int_equal(redtls_conn_is_connected(f->conn), 0);
    /* A late reply can never be taken for the next command's. */
    assert_int_equal(send(f->server, "+LATE\r\n", 7, MSG_NOSIGNAL) >= 0 || errno == EPIPE, 1);
    assert_status(redtls_conn_command(f->conn, &r, "PING"), REDTLS_E_STATE);
}

static void test_handshake_timeout(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_token(f->cfg, "sup3rsecret"), REDTLS_OK);
    assert_status(redtls_config_set_handshake_timeout_ms(f->cfg, 80), REDTLS_OK);
    assert_status(redtls_conn_new(f->cfg, &f->conn), REDTLS_OK);
    int64_t t0 = redtls__now_ms();
    assert_status(redtls_conn_connect(f->conn), REDTLS_E_HANDSHAKE_TIMEOUT);
    int64_t took = redtls__now_ms() - t0;
    assert_true(took >= 75 && took < 2000);
    assert_int_equal(redtls_conn_is_connected(f->conn), 0);
    assert_contains(redtls_conn_errmsg(f->conn), "AUTH");
    assert_not_contains(redtls_conn_errmsg(f->conn), "sup3rsecret");
}

static void test_server_closes(void **state)
{
    fx *f = *state;
    connect_and_accept(f);
    close(f->server);
    f->server = -1;
    redisReply *r = NULL;
    /* The closed idle connection is noticed before the command is
     * written; without reconnection that leaves the handle unconnected,
     * and the message says why. */
    assert_status(redtls_conn_command(f->conn, &r, "PING"), REDTLS_E_STATE);
    assert_contains(redtls_conn_errmsg(f->conn), "closed the idle connection");
    assert_int_equal(redtls_conn_is_connected(f->conn), 0);
}

static void test_not_connected(void **state)
{
    fx *f = *state;
    assert_status(redtls_conn_new(f->cfg, &f->conn), REDTLS_OK);
    redisReply *r = (redisReply *)1;
    assert_status(redtls_conn_command(f->conn, &r, "PING"), REDTLS_E_STATE);
    assert_null(r);
    assert_string_equal(redtls_conn_errmsg(f->conn), "not connected (call redtls_conn_connect)");
    /* Appending only queues; writing needs the connection. */
    assert_status(redtls_conn_append(f->conn, "PING"), REDTLS_OK);
    assert_status(redtls_conn_flush(f->conn), REDTLS_E_STATE);
    assert_status(redtls_conn_get_reply(f->conn, &r), REDTLS_E_STATE);
    assert_int_equal(redtls_conn_pending(f->conn), 1);
    const char *argv[] = {"PING"};
    assert_status(redtls_conn_append_argv(f->conn, 1, argv, NULL), REDTLS_OK);
    assert_status(redtls_conn_command_argv(f->conn, 1, argv, NULL, &r), REDTLS_E_STATE);
    assert_contains(redtls_conn_errmsg(f->conn), "pending");
}

/* Attaching a new transport replaces (and closes) the previous one. */
static void test_attach_replaces(void **state)
{
    fx *f = *state;
    connect_and_accept(f);
    redtls__transport *t = NULL;
    assert_status(redtls__mem_transport(&t, REDTLS_E_EOF), REDTLS_OK);
    unit_push(t, "+MEM\r\n");
    assert_status(redtls__conn_attach(f->conn, t, 0), REDTLS_OK);
    char c;
    assert_int_equal(recv(f->server, &c, 1, 0), 0);
    redisReply *r = NULL;
    assert_status(redtls_conn_command(f->conn, &r, "PING"), REDTLS_OK);
    assert_string_equal(redtls_reply_str(r, NULL), "MEM");
    redtls_reply_free(r);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_connect_command_close),
        T(test_slow_reply_is_recent_activity),
        T(test_late_break_reconnects_on_time),
        T(test_reconnect),
        T(test_connect_missing_socket),
        T(test_flush_and_close_drop_pending),
        T(test_command_timeout_closes),
        T(test_handshake_timeout),
        T(test_server_closes),
        T(test_not_connected),
        T(test_attach_replaces),
    };
    return cmocka_run_group_tests_name("conn", tests, group_setup, group_teardown);
}

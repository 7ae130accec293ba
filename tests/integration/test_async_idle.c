/* The asynchronous handle and an idle connection, against a real TLS
 * redis-server, as the blocking API behaves: after an idle spell longer
 * than the command timeout the next command is not taken for a silent
 * server's; a connection the server closed while idle is noticed at once
 * (the loop does not spin on it) and the next command runs once on a new
 * one; the health check PINGs an idle connection before commands go out.
 * Once defects of lib/driver/async.c, fixed with these tests. */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <redtls/async.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_client.h"
#include "lab_proxy.h"

#define TOKEN "lab-AsyncIdle-Token-81d3aa"
#define COMMAND_MS 2000

static lab_server redis;

static struct {
    lab_proxy proxy;
    redtls_config *cfg;
    redtls_async *ac;
    redtls_conn *admin;
    struct redisReply *reply;
    int calls;
    redtls_status st;
    long long ival;
    char why[400];
} t;

static int group_setup(void **state)
{
    (void)state;
    return lab_init_redis(60, &redis, &(lab_redis_opts){.tls = 1, .password = TOKEN});
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
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    redtls_async_free(t.ac);
    redtls_reply_free(t.reply);
    redtls_conn_free(t.admin);
    redtls_config_free(t.cfg);
    lab_proxy_stop(&t.proxy);
    memset(&t, 0, sizeof t);
    return 0;
}

static void on_reply(redtls_async *ac, redtls_status st, struct redisReply *r, void *ud)
{
    (void)ud;
    t.calls++;
    t.st = st;
    t.ival = r && redtls_reply_type(r) == REDTLS_REPLY_INTEGER ? redtls_reply_integer(r) : -1;
    snprintf(t.why, sizeof t.why, "%s", redtls_async_errmsg(ac));
    redtls_reply_free(r);
}

/* One command on the built-in loop; its status. */
static redtls_status run1(const char *a0, const char *a1)
{
    const char *argv[] = {a0, a1};
    t.calls = 0;
    assert_int_equal(redtls_async_command_argv(t.ac, 0, a1 ? 2 : 1, argv, NULL, on_reply, NULL), REDTLS_OK);
    assert_int_equal(redtls_async_run(&t.ac, 1, 4 * COMMAND_MS), REDTLS_OK);
    assert_int_equal(t.calls, 1);
    return t.st;
}

#define ADMIN(...)                                                                                          \
    do {                                                                                                    \
        const char *argv_[] = {__VA_ARGS__};                                                                \
        redtls_reply_free(t.reply);                                                                         \
        t.reply = NULL;                                                                                     \
        assert_conn_status(t.admin,                                                                         \
                           redtls_conn_command_argv(t.admin, (int)(sizeof argv_ / sizeof argv_[0]), argv_, \
                                                    NULL, &t.reply),                                        \
                           REDTLS_OK);                                                                      \
    } while (0)

static void start(uint16_t port, unsigned health_ms)
{
    lab_client_config(&t.cfg, "127.0.0.1", port, "ca.crt", TOKEN);
    assert_cfg_status(t.cfg, redtls_config_set_command_timeout_ms(t.cfg, COMMAND_MS), REDTLS_OK);
    assert_cfg_status(t.cfg, redtls_config_set_backoff(t.cfg, 20, 200), REDTLS_OK);
    if (health_ms)
        assert_cfg_status(t.cfg, redtls_config_set_health_check_ms(t.cfg, health_ms), REDTLS_OK);
    assert_cfg_status(t.cfg, redtls_async_new(t.cfg, &t.ac), REDTLS_OK);
    /* The admin connection goes straight to the server, never through
     * the proxy. */
    lab_client_admin(&t.admin, "127.0.0.1", redis.port, TOKEN, 0);
}

/* The handle's connection, idle, killed by the server. */
static void kill_idle(const char *ctr)
{
    char ids[32];
    ADMIN("DEL", ctr);
    assert_int_equal(run1("CLIENT", "ID"), REDTLS_OK);
    snprintf(ids, sizeof ids, "%lld", t.ival);
    ADMIN("CLIENT", "KILL", "ID", ids);
    assert_int_equal(redtls_reply_integer(t.reply), 1);
    /* Let the close_notify and the FIN arrive. */
    lab_sleep_ms(100);
}

/* 1: idle for longer than the command timeout, then one INCR on the same,
 * healthy connection. */
static void test_idle_longer_than_timeout_then_incr(void **state)
{
    (void)state;
    start(redis.port, 0);
    ADMIN("DEL", "idle:gap");
    assert_int_equal(run1("PING", NULL), REDTLS_OK);
    lab_sleep_ms(COMMAND_MS + 300);
    redtls_status st = run1("INCR", "idle:gap");
    ADMIN("GET", "idle:gap");
    const char *v = redtls_reply_str(t.reply, NULL);
    print_message("INCR after %d ms idle (command timeout %d ms): %s: %s; counter %s\n", COMMAND_MS + 300,
                  COMMAND_MS, redtls_strerror(st), t.why, v ? v : "(nil)");
    assert_int_equal(st, REDTLS_OK);
    assert_int_equal(t.ival, 1);
}

/* 3: after the close has arrived, a loop that waits on what the handle
 * asks for must wait, not wake at once again and again. */
static void test_idle_close_does_not_spin(void **state)
{
    (void)state;
    start(redis.port, 0);
    kill_idle("idle:a");
    int at_once = 0;
    for (int i = 0; i < 20; i++) {
        int fd = redtls_async_fd(t.ac), evs = redtls_async_events(t.ac), to = redtls_async_timeout_ms(t.ac);
        struct pollfd p = {.fd = fd, .events = (short)(evs & REDTLS_ASYNC_READ ? POLLIN : 0), .revents = 0};
        long long t0 = lab_now_ms();
        int n = poll(&p, fd >= 0 && evs ? 1 : 0, to >= 0 && to < 20 ? to : 20);
        at_once += n > 0 && lab_now_ms() - t0 < 2;
        assert_int_equal(redtls_async_process(t.ac, n > 0 ? REDTLS_ASYNC_READ : 0), REDTLS_OK);
    }
    print_message("server closed the idle connection: 20 waits, %d returned at once; connected %d, fd %d, "
                  "events %d\n",
                  at_once, redtls_async_is_connected(t.ac), redtls_async_fd(t.ac), redtls_async_events(t.ac));
    assert_in_range(at_once, 0, 2);
}

/* 2: the blocking API reconnects and runs the command
 * (test_client_kill_idle). */
static void test_idle_close_then_incr_runs_once(void **state)
{
    (void)state;
    start(redis.port, 0);
    kill_idle("idle:b");
    redtls_status st = run1("INCR", "idle:b");
    ADMIN("GET", "idle:b");
    const char *v = redtls_reply_str(t.reply, NULL);
    print_message("INCR after the server closed the idle connection: %s: %s; counter %s\n", redtls_strerror(st),
                  t.why, v ? v : "(nil)");
    assert_int_equal(st, REDTLS_OK);
    assert_int_equal(t.ival, 1);
}

/* 2: the blocking API's test_health_check_frozen: the idle connection went
 * silent (frozen), new ones work; the PING check fails and the command
 * runs once on a new connection. */
static void test_health_check_frozen(void **state)
{
    (void)state;
    assert_int_equal(lab_proxy_start(&t.proxy, redis.port), 0);
    start(t.proxy.port, 50);
    ADMIN("DEL", "idle:c");
    assert_int_equal(run1("PING", NULL), REDTLS_OK);
    lab_sleep_ms(100);
    lab_proxy_freeze_all(&t.proxy);
    long long t0 = lab_now_ms();
    redtls_status st = run1("INCR", "idle:c");
    long long ms = lab_now_ms() - t0;
    ADMIN("GET", "idle:c");
    const char *v = redtls_reply_str(t.reply, NULL);
    print_message("INCR on a frozen idle connection with a 50 ms health check: %s after %lld ms: %s; counter %s\n",
                  redtls_strerror(st), ms, t.why, v ? v : "(nil)");
    assert_int_equal(st, REDTLS_OK);
    assert_int_equal(t.ival, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_idle_longer_than_timeout_then_incr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_close_does_not_spin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_close_then_incr_runs_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_check_frozen, setup, teardown),
    };
    return cmocka_run_group_tests_name("integration.async_idle", tests, group_setup, group_teardown);
}

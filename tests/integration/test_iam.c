/* IAM authentication against a real TLS redis-server: an ACL user whose
 * passwords are the tokens the library makes (signed around now, so a
 * second boundary during the test cannot matter); connecting; a shortened
 * re-authentication interval while commands flow (none fails, the server
 * counts the AUTHs); a refused token (E_AUTH after one fresh retry, no
 * secret in the message). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <redtls/redtls.h>

#include "lab.h"
#include "lab_allochook.h"
#include "lab_assert.h"
#include "lab_proxy.h"

#define ADMIN_TOKEN "lab-Iam-Admin-Token-5d1e"
#define CACHE "lab-cache-1"
#define USER_ID "lab-iam-user"
#define KEY_ID "AKIDLABTEST000000001"
#define SECRET "lab/Secret+Key=abcdefghijklmnopqrstuvwxyz01"

static lab_server redis;
static redtls_conn *admin;

static redtls_config *base_config(void)
{
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_host(cfg, "localhost", redis.port), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_ca_file(cfg, lab_cert("ca.crt")), REDTLS_OK);
    return cfg;
}

static int group_setup(void **state)
{
    (void)state;
    if (lab_init(120) != 0 || lab_certs(NULL) == NULL)
        return -1;
    if (lab_redis_start(&redis, &(lab_redis_opts){.tls = 1, .password = ADMIN_TOKEN}) != 0)
        return -1;
    redtls_config *cfg = base_config();
    redtls_config_set_token(cfg, ADMIN_TOKEN);
    int rc = redtls_conn_new(cfg, &admin) == REDTLS_OK && redtls_conn_connect(admin) == REDTLS_OK ? 0 : -1;
    redtls_config_free(cfg);
    return rc;
}

static int group_teardown(void **state)
{
    (void)state;
    redtls_conn_free(admin);
    lab_stop(&redis);
    return 0;
}

static redtls_config *iam_config(void)
{
    redtls_config *cfg = base_config();
    assert_cfg_status(cfg, redtls_config_set_iam(cfg, CACHE, USER_ID, "eu-central-1", 0), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_aws_credentials(cfg, KEY_ID, SECRET, NULL), REDTLS_OK);
    return cfg;
}

static void admin_ok(const char *fmt, ...) REDTLS_PRINTF(1, 2);
static void admin_ok(const char *fmt, ...)
{
    va_list ap;
    char cmd[512];
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    /* Split on spaces: none of the arguments used here holds one. */
    const char *argv[16];
    int argc = 0;
    for (char *tok = strtok(cmd, " "); tok && argc < 16; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    redisReply *r = NULL;
    assert_conn_status(admin, redtls_conn_command_argv(admin, argc, argv, NULL, &r), REDTLS_OK);
    if (redtls_reply_type(r) == REDTLS_REPLY_ERROR)
        fail_msg("admin command '%s ...' failed: %s", argv[0], r->str);
    redtls_reply_free(r);
}

/* The ACL user accepts the tokens cfg makes for the seconds from now-2 to
 * now+5 (the library signs with the wall clock when it connects). */
static void accept_tokens_around_now(redtls_config *cfg)
{
    static char tok[8192];
    redisReply *r = NULL;
    assert_conn_status(admin, redtls_conn_command(admin, &r, "ACL SETUSER %s reset on ~* +@all", USER_ID), REDTLS_OK);
    redtls_reply_free(r);
    int64_t now = lab_wall_ms() / 1000;
    for (int64_t s = now - 2; s <= now + 5; s++) {
        assert_cfg_status(cfg, redtls_iam_token(cfg, s, tok, sizeof tok), REDTLS_OK);
        assert_conn_status(admin, redtls_conn_command(admin, &r, "ACL SETUSER %s >%s", USER_ID, tok), REDTLS_OK);
        assert_string_equal(r->str, "OK");
        redtls_reply_free(r);
    }
    memset(tok, 0, sizeof tok);
}

static long long auth_calls(void)
{
    redisReply *r = NULL;
    assert_conn_status(admin, redtls_conn_command(admin, &r, "INFO commandstats"), REDTLS_OK);
    const char *p = strstr(r->str, "cmdstat_auth:calls=");
    long long n = p ? atoll(p + strlen("cmdstat_auth:calls=")) : 0;
    redtls_reply_free(r);
    return n;
}

typedef struct seen {
    int refreshed;
    char all[4096];
} seen;

static void on_event(void *ud, redtls_event_type type, const char *detail)
{
    seen *s = ud;
    if (type == REDTLS_EVENT_AUTH_REFRESHED)
        s->refreshed++;
    size_t n = strlen(s->all);
    if (n + 300 < sizeof s->all)
        snprintf(s->all + n, sizeof s->all - n, "%d:%s\n", (int)type, detail);
}

/* The ACL user accepts only the tokens of the seconds from..to. */
static void accept_tokens_of(redtls_config *cfg, int64_t from, int64_t to)
{
    static char tok[8192];
    redisReply *r = NULL;
    admin_ok("ACL SETUSER %s reset on ~* +@all", USER_ID);
    for (int64_t s = from; s <= to; s++) {
        assert_cfg_status(cfg, redtls_iam_token(cfg, s, tok, sizeof tok), REDTLS_OK);
        assert_conn_status(admin, redtls_conn_command(admin, &r, "ACL SETUSER %s >%s", USER_ID, tok), REDTLS_OK);
        redtls_reply_free(r);
    }
    memset(tok, 0, sizeof tok);
}

static void test_connect_and_whoami(void **state)
{
    (void)state;
    redtls_config *cfg = iam_config();
    accept_tokens_around_now(cfg);
    redtls_conn *c = NULL;
    assert_cfg_status(cfg, redtls_conn_new(cfg, &c), REDTLS_OK);
    int64_t t_before = lab_wall_ms() / 1000;
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
    int64_t t_after = lab_wall_ms() / 1000;
    redisReply *r = NULL;
    assert_conn_status(c, redtls_conn_command(c, &r, "ACL WHOAMI"), REDTLS_OK);
    assert_string_equal(r->str, USER_ID);
    redtls_reply_free(r);
    /* A reconnection reuses the token (it is minutes from its margin).
     * Once the clock has moved past the connect, the server accepts only
     * the tokens signed while it ran: a token made anew would be refused. */
    while (lab_wall_ms() / 1000 <= t_after)
        lab_sleep_ms(50);
    accept_tokens_of(cfg, t_before, t_after);
    long long before = auth_calls();
    admin_ok("CLIENT KILL USER %s", USER_ID);
    assert_conn_status(c, redtls_conn_command(c, &r, "ACL WHOAMI"), REDTLS_OK);
    assert_int_equal(auth_calls() - before, 1);
    assert_string_equal(r->str, USER_ID);
    redtls_reply_free(r);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* Re-authentication every 200 ms while INCRs flow for two seconds: every
 * INCR succeeds and the server sees the AUTHs. */
static void test_reauth_while_commands_flow(void **state)
{
    (void)state;
    seen ev = {0};
    redtls_config *cfg = iam_config();
    accept_tokens_around_now(cfg);
    assert_cfg_status(cfg, redtls_config_set_iam_reauth_ms(cfg, 200), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_event_callback(cfg, on_event, &ev), REDTLS_OK);
    redtls_conn *c = NULL;
    assert_cfg_status(cfg, redtls_conn_new(cfg, &c), REDTLS_OK);
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
    admin_ok("DEL iam:counter");
    long long before = auth_calls();
    long long start = lab_now_ms();
    int n = 0;
    while (lab_now_ms() - start < 2000) {
        redisReply *r = NULL;
        assert_conn_status(c, redtls_conn_command(c, &r, "INCR iam:counter"), REDTLS_OK);
        assert_int_equal(r->integer, n + 1);
        redtls_reply_free(r);
        /* And a pipeline now and then: a re-authentication waits for it. */
        if (n % 50 == 0) {
            for (int i = 0; i < 10; i++)
                assert_conn_status(c, redtls_conn_append(c, "PING"), REDTLS_OK);
            for (int i = 0; i < 10; i++) {
                assert_conn_status(c, redtls_conn_get_reply(c, &r), REDTLS_OK);
                assert_string_equal(r->str, "PONG");
                redtls_reply_free(r);
            }
        }
        n++;
        lab_sleep_ms(2);
    }
    long long auths = auth_calls() - before;
    print_message("%d INCRs in 2 s, %d re-authentications (server counted %lld AUTH)\n", n, ev.refreshed, auths);
    assert_true(ev.refreshed >= 5);
    assert_int_equal(auths, ev.refreshed);
    assert_contains(ev.all, "before the server's connection limit");
    assert_null(strstr(ev.all, SECRET));
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

static void test_refused_token(void **state)
{
    (void)state;
    redtls_config *cfg = iam_config();
    admin_ok("ACL SETUSER %s reset on >not-a-token-at-all ~* +@all", USER_ID);
    long long before = auth_calls();
    redtls_conn *c = NULL;
    assert_cfg_status(cfg, redtls_conn_new(cfg, &c), REDTLS_OK);
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_E_AUTH);
    const char *msg = redtls_conn_errmsg(c);
    print_message("refused: %s\n", msg);
    /* Explicit credentials and a token made just now: a second one would
     * be the same, so it is not sent. */
    assert_contains(msg, "refused the IAM token");
    assert_null(strstr(msg, "twice"));
    assert_contains(msg, CACHE);
    assert_contains(msg, "eu-central-1");
    assert_null(strstr(msg, SECRET));
    assert_null(strstr(msg, "X-Amz-Signature"));
    assert_int_equal(auth_calls() - before, 1);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

static void test_tls_required(void **state)
{
    (void)state;
    redtls_config *cfg = iam_config();
    assert_cfg_status(cfg, redtls_config_set_tls(cfg, 0), REDTLS_OK);
    redtls_conn *c = NULL;
    assert_cfg_status(cfg, redtls_conn_new(cfg, &c), REDTLS_E_CONFIG);
    assert_contains(redtls_config_errmsg(cfg), "TLS");
    redtls_cluster *cl = NULL;
    assert_cfg_status(cfg, redtls_cluster_new(cfg, "localhost:7000", &cl), REDTLS_E_CONFIG);
    assert_null(cl);
    redtls_config_free(cfg);
}

/* What a token costs: time and allocations per token, printed once (a
 * figure, not a check: time on this machine is noisy). */
static void test_token_cost(void **state)
{
    (void)state;
    redtls_config *cfg = iam_config();
    static char tok[8192];
    enum { N = 2000 };
    long long t0 = lab_now_ms();
    lab_alloc_arm(0);
    for (int i = 0; i < N; i++)
        assert_int_equal(redtls_iam_token(cfg, 1772366400 + i, tok, sizeof tok), REDTLS_OK);
    long calls = lab_alloc_calls(), live = lab_alloc_live();
    lab_alloc_disarm();
    long long ms = lab_now_ms() - t0;
    print_message("IAM token: %zu bytes, %.1f us and %.1f allocations per token (%d tokens; %ld blocks left)\n",
                  strlen(tok), 1000.0 * (double)ms / N, LAB_ALLOC_HOOK ? (double)calls / N : -1.0, N, live);
    if (LAB_ALLOC_HOOK)
        assert_int_equal(live, 0);
    memset(tok, 0, sizeof tok);
    redtls_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_and_whoami),
        cmocka_unit_test(test_reauth_while_commands_flow),
        cmocka_unit_test(test_refused_token),
        cmocka_unit_test(test_tls_required),
        cmocka_unit_test(test_token_cost),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

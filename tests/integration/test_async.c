/* The asynchronous API on its built-in loop against a real redis-server
 * with TLS and AUTH: many commands in flight with every callback once and
 * the counter they add to exact, and failed verifications with their own
 * statuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <redtls/async.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_client.h"

#define TOKEN "lab-Async-Token-7d21e4"
#define TIMEOUT_MS 3000
#define N_INCR 2000

static lab_server redis;

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

static redtls_config *make_cfg(const char *ca, const char *verify_name)
{
    redtls_config *cfg = NULL;
    lab_client_config(&cfg, "localhost", redis.port, ca, TOKEN);
    if (verify_name)
        assert_cfg_status(cfg, redtls_config_set_verify_name(cfg, verify_name), REDTLS_OK);
    lab_client_timeouts(cfg, TIMEOUT_MS, TIMEOUT_MS, TIMEOUT_MS);
    return cfg;
}

typedef struct tally {
    int connects;
    redtls_status connect_st;
    int calls[N_INCR + 1];
    int ok;
    long long last;
} tally;

static void on_connect(redtls_async *ac, redtls_status st, void *ud)
{
    (void)ac;
    tally *t = ud;
    t->connects++;
    t->connect_st = st;
}

static tally *T;

static void on_incr(redtls_async *ac, redtls_status st, struct redisReply *r, void *ud)
{
    (void)ac;
    int i = (int)(intptr_t)ud;
    T->calls[i]++;
    if (st == REDTLS_OK && r && r->type == REDIS_REPLY_INTEGER) {
        T->ok++;
        T->last = r->integer;
    }
    freeReplyObject(r);
}

static void test_many_in_flight(void **state)
{
    (void)state;
    tally *t = calloc(1, sizeof *t);
    assert_non_null(t);
    T = t;
    redtls_config *cfg = make_cfg("ca.crt", NULL);
    /* Each command's deadline counts from when it is issued, all of them
     * before the handshake: room for sanitizers and valgrind. */
    assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, 20000), REDTLS_OK);
    redtls_async *ac = NULL;
    assert_cfg_status(cfg, redtls_async_new(cfg, &ac), REDTLS_OK);
    assert_int_equal(redtls_async_connect(ac, on_connect, t), REDTLS_OK);
    char key[64];
    snprintf(key, sizeof key, "async:counter:%lld", lab_now_ms());
    for (int i = 0; i < N_INCR; i++) {
        const char *argv[] = {"INCR", key};
        assert_int_equal(redtls_async_command_argv(ac, 0, 2, argv, NULL, on_incr, (void *)(intptr_t)i), REDTLS_OK);
    }
    assert_int_equal(redtls_async_run(&ac, 1, 40000), REDTLS_OK);
    assert_int_equal(t->connects, 1);
    assert_int_equal(t->connect_st, REDTLS_OK);
    for (int i = 0; i < N_INCR; i++)
        assert_int_equal(t->calls[i], 1);
    assert_int_equal(t->ok, N_INCR);
    assert_int_equal(t->last, N_INCR); /* in order, none lost, none twice */
    redtls_async_free(ac);
    redtls_config_free(cfg);
    free(t);
}

/* Verification fails: the connect callback says why (its own status),
 * and a command waiting for the connection ends at its deadline naming
 * that cause. */
static void check_refused(const char *ca, const char *verify_name, redtls_status want, const char *says)
{
    tally *t = calloc(1, sizeof *t);
    assert_non_null(t);
    T = t;
    redtls_config *cfg = make_cfg(ca, verify_name);
    assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, 500), REDTLS_OK);
    redtls_async *ac = NULL;
    assert_cfg_status(cfg, redtls_async_new(cfg, &ac), REDTLS_OK);
    assert_int_equal(redtls_async_connect(ac, on_connect, t), REDTLS_OK);
    const char *argv[] = {"INCR", "async:never"};
    assert_int_equal(redtls_async_command_argv(ac, 0, 2, argv, NULL, on_incr, (void *)(intptr_t)0), REDTLS_OK);
    assert_int_equal(redtls_async_run(&ac, 1, 10000), REDTLS_OK);
    assert_int_equal(t->connects, 1);
    if (t->connect_st != want)
        fail_msg("connect: status %d, expected %d (%s)", (int)t->connect_st, (int)want, redtls_async_errmsg(ac));
    assert_int_equal(t->calls[0], 1);
    assert_int_equal(t->ok, 0);
    assert_non_null(strstr(redtls_async_errmsg(ac), says));
    redtls_async_free(ac);
    redtls_config_free(cfg);
    free(t);
}

static void test_untrusted_ca(void **state)
{
    (void)state;
    check_refused("ca2.crt", NULL, REDTLS_E_TLS_VERIFY, "verif");
}

static void test_wrong_name(void **state)
{
    (void)state;
    check_refused("ca.crt", "wrong.example", REDTLS_E_TLS_HOSTNAME, "wrong.example");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_in_flight),
        cmocka_unit_test(test_untrusted_ca),
        cmocka_unit_test(test_wrong_name),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/* An allocation failure while queuing commands for writing ends those
 * commands at once with REDTLS_E_NOMEM (where redtls itself could not
 * allocate), never at their deadline with a time-out. Once a defect of
 * lib/driver/async.c, found by integration.async_allocfail's walk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/crypto.h>
#include <redtls/async.h>

#include "lab.h"
#include "lab_allochook.h"
#include "lab_assert.h"

#define TOKEN "allocfail-Stall-Token-0d7e55"
#define COMMAND_MS 500
#define N_CMDS 8
#define VALUE_LEN 6000

static lab_server redis;
static char url[512];
static char value[VALUE_LEN + 1];

static int group_setup(void **state)
{
    (void)state;
    if (lab_init(85) != 0 || lab_certs(NULL) == NULL)
        return -1;
    if (lab_redis_start(&redis, &(lab_redis_opts){.tls = 1, .password = TOKEN}) != 0)
        return -1;
    snprintf(url, sizeof url, "rediss://:%s@127.0.0.1:%u/0?cacert=%s&timeout=%d", TOKEN, (unsigned)redis.port,
             lab_cert("ca.crt"), COMMAND_MS);
    memset(value, 'x', VALUE_LEN);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    lab_stop(&redis);
    return 0;
}

static struct {
    int issued[N_CMDS], calls[N_CMDS];
    redtls_status st[N_CMDS];
    char why[N_CMDS][300];
    long long ms[N_CMDS];
    long long t0;
} R;

static void on_reply(redtls_async *ac, redtls_status st, struct redisReply *r, void *ud)
{
    int i = (int)(intptr_t)ud;
    R.calls[i]++;
    R.st[i] = st;
    R.ms[i] = lab_now_ms() - R.t0;
    snprintf(R.why[i], sizeof R.why[i], "%s", redtls_async_errmsg(ac));
    redtls_reply_free(r);
}

static void test_nomem_while_queuing_is_reported(void **state)
{
    (void)state;
#if !LAB_ALLOC_HOOK
    (void)on_reply;
    skip();
#else
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_url(cfg, url), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_reconnect(cfg, 0), REDTLS_OK);
    long timed_out = 0, first_n = 0, total = 0;
    char first[400] = "";
    for (long n = 1; n < 100000; n++) {
        redtls_async *ac = NULL;
        assert_cfg_status(cfg, redtls_async_new(cfg, &ac), REDTLS_OK);
        assert_int_equal(redtls_async_connect(ac, NULL, NULL), REDTLS_OK);
        assert_int_equal(redtls_async_run(&ac, 1, 10000), REDTLS_OK);
        assert_int_equal(redtls_async_is_connected(ac), 1);
        memset(&R, 0, sizeof R);
        R.t0 = lab_now_ms();
        lab_alloc_arm(n);
        for (int i = 0; i < N_CMDS; i++) {
            const char *argv[] = {"SET", "stall:k", value};
            R.issued[i] = redtls_async_command_argv(ac, 0, 3, argv, NULL, on_reply, (void *)(intptr_t)i) == REDTLS_OK;
        }
        redtls_status run = redtls_async_run(&ac, 1, 4 * COMMAND_MS);
        lab_alloc_disarm();
        long made = lab_alloc_calls();
        redtls_async_free(ac);
        OPENSSL_thread_stop();
        assert_int_equal(run, REDTLS_OK);
        for (int i = 0; i < N_CMDS; i++) {
            assert_int_equal(R.calls[i], R.issued[i]);
            if (R.calls[i] && R.st[i] == REDTLS_E_COMMAND_TIMEOUT) {
                if (timed_out++ == 0) {
                    first_n = n;
                    snprintf(first, sizeof first, "command %d: COMMAND_TIMEOUT after %lld ms: %s", i, R.ms[i],
                             R.why[i]);
                }
            }
        }
        if (made < n) {
            total = made;
            break;
        }
    }
    redtls_config_free(cfg);
    print_message("%ld allocations while %d commands of %d bytes go out and come back; %ld commands timed out "
                  "(first at allocation %ld: %s)\n",
                  total, N_CMDS, VALUE_LEN, timed_out, first_n, first);
    assert_true(total > 10);
    assert_int_equal(timed_out, 0);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nomem_while_queuing_is_reported),
    };
    return cmocka_run_group_tests_name("integration.async_nomem", tests, group_setup, group_teardown);
}

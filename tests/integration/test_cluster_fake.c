/* The cluster client against a fake node (tests/harness/lab_fakenode.c) for
 * replies a real cluster does not give on demand: a MOVED loop ends at the
 * redirect limit, TRYAGAIN is retried with backoff until the command
 * timeout and then handed over, CLUSTERDOWN that clears is absorbed, and
 * ASK sends ASKING first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <redtls/redtls.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_cluster.h"
#include "lab_cluster_client.h"
#include "lab_fakenode.h"

static int group_setup(void **state)
{
    (void)state;
    return lab_init(60);
}

/* A plain-TCP cluster handle seeded with the fake node. */
static redtls_cluster *fake_cluster(lab_server *srv, lab_fake_mode mode, unsigned timeout_ms)
{
    assert_int_equal(lab_fakenode_start(srv, mode), 0);
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_tls(cfg, 0), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_host(cfg, "127.0.0.1", srv->port), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, timeout_ms), REDTLS_OK);
    redtls_cluster *cl = NULL;
    assert_cfg_status(cfg, redtls_cluster_new(cfg, NULL, &cl), REDTLS_OK);
    redtls_config_free(cfg);
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_OK);
    return cl;
}

static void test_moved_loop(void **state)
{
    (void)state;
    lab_server srv;
    redtls_cluster *cl = fake_cluster(&srv, LAB_FAKE_MOVED_LOOP, 2000);
    redisReply *r = NULL;
    const char *get[] = {"GET", "k"};
    assert_cl_status(cl, redtls_cluster_command_argv(cl, 0, 2, get, NULL, &r), REDTLS_E_CLUSTER_REDIRECTS);
    assert_null(r);
    assert_contains(redtls_cluster_errmsg(cl), "more than 5 redirections");
    assert_contains(redtls_cluster_errmsg(cl), "MOVED 1234");
    assert_int_equal(redtls_cluster_stat_get(cl, REDTLS_CLUSTER_STAT_MOVED), 6);
    /* A lower limit. */
    assert_cl_status(cl, redtls_cluster_set_max_redirects(cl, 2), REDTLS_OK);
    assert_int_equal(redtls_cluster_set_max_redirects(cl, 0), REDTLS_E_INVALID);
    assert_cl_status(cl, redtls_cluster_command_argv(cl, 0, 2, get, NULL, &r), REDTLS_E_CLUSTER_REDIRECTS);
    assert_int_equal(redtls_cluster_stat_get(cl, REDTLS_CLUSTER_STAT_MOVED), 9);
    /* In a pipeline the others are not affected. */
    const char *ping[] = {"PING"};
    assert_cl_status(cl, redtls_cluster_append_argv(cl, 0, 1, ping, NULL), REDTLS_OK);
    assert_cl_status(cl, redtls_cluster_append_argv(cl, 0, 2, get, NULL), REDTLS_OK);
    assert_cl_status(cl, redtls_cluster_append_argv(cl, 0, 1, ping, NULL), REDTLS_OK);
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_OK);
    redtls_reply_free(r);
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_CLUSTER_REDIRECTS);
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_OK);
    assert_string_equal(redtls_reply_str(r, NULL), "PONG");
    redtls_reply_free(r);
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

static void test_tryagain_until_timeout(void **state)
{
    (void)state;
    lab_server srv;
    redtls_cluster *cl = fake_cluster(&srv, LAB_FAKE_TRYAGAIN, 700);
    redisReply *r = NULL;
    const char *mget[] = {"MGET", "{t}a", "{t}b"};
    long long t0 = lab_now_ms();
    assert_cl_status(cl, redtls_cluster_command_argv(cl, 0, 3, mget, NULL, &r), REDTLS_OK);
    long long dt = lab_now_ms() - t0;
    /* The server's own answer, after retries spaced by the backoff. */
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_contains(r->str, "TRYAGAIN");
    redtls_reply_free(r);
    uint64_t tries = redtls_cluster_stat_get(cl, REDTLS_CLUSTER_STAT_TRYAGAIN);
    print_message("TRYAGAIN: %llu answers in %lld ms (command timeout 700 ms)\n", (unsigned long long)tries, dt);
    assert_true(dt >= 650 && dt < 1500);
    /* Delays from the backoff: the first in 100..300 ms, each next one up
     * to 3x the previous: at least 2 answers fit in 700 ms, at most 8. */
    assert_true(tries >= 2 && tries <= 8);
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

static void test_clusterdown_clears(void **state)
{
    (void)state;
    lab_server srv;
    redtls_cluster *cl = fake_cluster(&srv, LAB_FAKE_CLUSTERDOWN_3, 5000);
    redisReply *r = NULL;
    assert_cl_status(cl, redtls_cluster_command(cl, &r, "SET %s %s", "k", "v"), REDTLS_OK);
    assert_string_equal(redtls_reply_str(r, NULL), "OK");
    redtls_reply_free(r);
    assert_int_equal(redtls_cluster_stat_get(cl, REDTLS_CLUSTER_STAT_TRYAGAIN), 3);
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

static void test_ask_sends_asking(void **state)
{
    (void)state;
    lab_server srv;
    redtls_cluster *cl = fake_cluster(&srv, LAB_FAKE_ASK_SELF, 2000);
    redisReply *r = NULL;
    assert_cl_status(cl, redtls_cluster_command(cl, &r, "GET %s", "k"), REDTLS_OK);
    assert_string_equal(redtls_reply_str(r, NULL), "OK");
    redtls_reply_free(r);
    assert_int_equal(redtls_cluster_stat_get(cl, REDTLS_CLUSTER_STAT_ASK), 1);
    assert_int_equal(redtls_cluster_stat_get(cl, REDTLS_CLUSTER_STAT_MOVED), 0);
    /* ASK does not change the map: the next command asks again. */
    assert_cl_status(cl, redtls_cluster_command(cl, &r, "GET %s", "k"), REDTLS_OK);
    redtls_reply_free(r);
    assert_int_equal(redtls_cluster_stat_get(cl, REDTLS_CLUSTER_STAT_ASK), 2);
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_moved_loop),
        cmocka_unit_test(test_tryagain_until_timeout),
        cmocka_unit_test(test_clusterdown_clears),
        cmocka_unit_test(test_ask_sends_asking),
    };
    return cmocka_run_group_tests_name("cluster_fake", tests, group_setup, NULL);
}

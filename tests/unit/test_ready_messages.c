/* Two texts of lib/session/ready.c not_ready(): a call allowed one
 * attempt (the cluster's) whose next attempt is due before its deadline
 * is not told "after the command deadline"; a connection that never failed
 * gets no empty "(last failure: )". */
#include "unit_util.h"

#define T0 1000000

static char dir[64], missing[128];

static int group_setup(void **state)
{
    (void)state;
    unit_tmpdir(dir, sizeof dir);
    snprintf(missing, sizeof missing, "%s/nobody.sock", dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unit_rmtree(dir);
    return 0;
}

/* Reconnection on, to a Unix socket path nobody listens on, every delay
 * exactly 50 ms. */
static redtls_conn *refused_conn(redtls_config **cfg)
{
    *cfg = unit_plain_config();
    assert_status(redtls_config_set_reconnect(*cfg, 1), REDTLS_OK);
    assert_status(redtls_config_set_unix_path(*cfg, missing), REDTLS_OK);
    assert_status(redtls_config_set_backoff(*cfg, 50, 50), REDTLS_OK);
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(*cfg, &c), REDTLS_OK);
    return c;
}

static redtls_status run_once(redtls_conn *c, int64_t now, int64_t deadline)
{
    redtls_status idle;
    assert_int_equal(redtls__ready_needed(c, now, &idle), 1);
    assert_status(redtls__ready_start(c, now, deadline, 1, idle), REDTLS_OK);
    int done = 1;
    redtls__wait w;
    redtls_status st = redtls__ready_step(c, now, &done, &w);
    assert_false(done);
    return st;
}

static void test_once_before_deadline_does_not_say_after(void **state)
{
    (void)state;
    redtls_config *cfg;
    redtls_conn *c = refused_conn(&cfg);
    assert_status(run_once(c, T0, T0 + 1000), REDTLS_E_CONNECT);
    assert_true(c->next_attempt == T0 + 50);
    /* Next attempt at T0 + 50, deadline T0 + 1000. */
    assert_status(run_once(c, T0 + 10, T0 + 1000), REDTLS_E_UNAVAILABLE);
    assert_contains(redtls_conn_errmsg(c), "next reconnect attempt in 40 ms");
    assert_not_contains(redtls_conn_errmsg(c), "after the command deadline");
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

static void test_no_empty_last_failure(void **state)
{
    (void)state;
    redtls_config *cfg;
    redtls_conn *c = refused_conn(&cfg);
    assert_status(run_once(c, T0, T0), REDTLS_E_UNAVAILABLE);
    assert_true(c->no_time);
    assert_contains(redtls_conn_errmsg(c), "not connected");
    assert_not_contains(redtls_conn_errmsg(c), "(last failure: )");
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_once_before_deadline_does_not_say_after),
        cmocka_unit_test(test_no_empty_last_failure),
    };
    return cmocka_run_group_tests_name("ready_messages", tests, group_setup, group_teardown);
}

/* redtls_conn_close() and redtls_conn_free() while the ready machine
 * (lib/session/ready.c) has the caller's queue set aside for its own
 * request (a health-check PING, a re-authentication): close drops the
 * caller's queue for good (a later cancel brings nothing back), free wipes
 * and frees it. Once a defect: the set-aside queue was left behind (a
 * restore brought back commands close had dropped; free leaked it
 * unwiped). Only drivers that step the machine themselves can close in
 * between. */
#include "unit_util.h"

#include <poll.h>

#define T0 1000000
#define GET_FRAME "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"

/* A memory connection in the middle of its health-check PING, the
 * caller's GET set aside. */
static redtls_conn *mid_ping(redtls_config *cfg)
{
    assert_status(redtls_config_set_health_check_ms(cfg, 100), REDTLS_OK);
    assert_status(redtls_config_set_command_timeout_ms(cfg, 1000), REDTLS_OK);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    c->last_io = T0 - 100;
    const char *argv[] = {"GET", "k"};
    assert_status(redtls__conn_append(c, 2, argv, NULL), REDTLS_OK);
    redtls_status idle;
    assert_int_equal(redtls__ready_needed(c, T0, &idle), 1);
    assert_status(redtls__ready_start(c, T0, T0 + 1000, 0, idle), REDTLS_OK);
    int done = 1;
    redtls__wait w;
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_int_equal(w.events, POLLIN);
    assert_true(c->saved.active);
    return c;
}

/* close drops the caller's queue for good: ending the machine afterwards
 * (a driver cleaning up) must not bring the GET back. Today it does:
 * pending goes from 0 back to 1 and the GET is queued again. */
static void test_close_mid_ping_drops_the_set_aside_queue(void **state)
{
    (void)state;
    redtls_config *cfg = unit_plain_config();
    redtls_conn *c = mid_ping(cfg);
    redtls_conn_close(c);
    assert_false(redtls_conn_is_connected(c));
    assert_int_equal(redtls_conn_pending(c), 0);
    redtls__ready_cancel(c);
    assert_int_equal(redtls_conn_pending(c), 0);
    assert_int_equal(c->olen, 0);
    assert_false(c->saved.active);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* free mid-PING releases (and wipes) the set-aside GET. Today its buffer
 * is lost: this test fails under valgrind --error-exitcode=1 and in the
 * sanitizer build (LeakSanitizer); a plain build cannot see a leak. */
static void test_free_mid_ping_releases_the_set_aside_queue(void **state)
{
    (void)state;
    redtls_config *cfg = unit_plain_config();
    redtls_conn *c = mid_ping(cfg);
    assert_memory_equal(c->saved.obuf, GET_FRAME, sizeof GET_FRAME - 1);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_mid_ping_drops_the_set_aside_queue),
        cmocka_unit_test(test_free_mid_ping_releases_the_set_aside_queue),
    };
    return cmocka_run_group_tests_name("ready_close", tests, NULL, NULL);
}

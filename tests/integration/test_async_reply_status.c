/* Once a defect of lib/driver/async.c, fixed with this test (it failed before).
 *
 * A reply that breaks a reader limit or the protocol: the blocking API
 * ends the command it answered with REDTLS_E_LIMIT or REDTLS_E_PROTOCOL
 * (test_hostile.c); the asynchronous handle ends it with
 * REDTLS_E_OUTCOME_UNKNOWN, like every other command in flight, the cause
 * only inside the message ("the connection broke after the command was
 * sent, so it may or may not have run (array element count out of
 * range...)"). step_up (lib/driver/async.c:445-447) hands the reader's
 * status to connection_lost(), which ends everything in flight with
 * REDTLS_E_OUTCOME_UNKNOWN (line 295). async.h promises outcomes "as in
 * the blocking API", and each callback "the status that ended it".
 *
 * Proposed fix: in step_up, when taking or reading a reply fails with
 * REDTLS_E_LIMIT or REDTLS_E_PROTOCOL, the reply being parsed was the
 * first owed one's: pop s_head and finish it with that status (and the
 * reader's message), then call connection_lost() for the ones behind it,
 * whose outcome is indeed unknown.
 *
 * The core decides this, not the loop: the built-in loop is enough.
 */
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
#include "lab_async.h"
#include "lab_client.h"
#include "lab_hostile.h"

static lab_server srv;
static lab_async_env t;

static int group_setup(void **state)
{
    (void)state;
    return lab_init(120) == 0 && lab_certs(NULL) != NULL ? 0 : -1;
}

static int setup(void **state)
{
    (void)state;
    memset(&srv, 0, sizeof srv);
    srv.listen_fd = -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = lab_async_env_free(&t);
    lab_stop(&srv);
    return rc;
}

/* GET answered with the case's bytes: its callback's status. */
static void run_case(const char *name, const lab_hostile_opts *opts, redtls_status want, const char *says)
{
    assert_int_equal(lab_hostile_start(&srv, opts), 0);
    lab_client_config(&t.cfg, "localhost", srv.port, "ca.crt", NULL);
    assert_cfg_status(t.cfg, redtls_config_set_max_buffer(t.cfg, 4u * 1024u * 1024u), REDTLS_OK);
    assert_int_equal(lab_async_env_open(&t, LAB_LOOP_BUILTIN, 4), 0);
    redtls_async *ac = lab_async_env_handle(&t);
    assert_non_null(ac);
    size_t id;
    assert_int_equal(lab_issue(t.tally, ac, 0, "GET hostile", &id), REDTLS_OK);
    assert_true(lab_async_env_run_all(&t, 10000));
    const lab_acmd *c = &t.tally->cmd[id];
    print_message("    %-24s %s (%s)\n", name, redtls_strerror(c->st), c->msg);
    assert_int_equal(lab_tally_check(t.tally, name), 0);
    assert_contains(c->msg, says);
    assert_int_equal(c->st, want);
}

#define TLS_CASE(reply_, end_) (&(lab_hostile_opts){.tls = 1, .reply = (reply_), .end = (end_)})

static void test_array_count_beyond_any_limit(void **state)
{
    (void)state;
    run_case("*4294967295", TLS_CASE("*4294967295\r\n", LAB_HOSTILE_HOLD), REDTLS_E_LIMIT, "array element count");
}

static void test_bulk_length_above_limit(void **state)
{
    (void)state;
    run_case("$9999999999", TLS_CASE("$9999999999\r\n", LAB_HOSTILE_HOLD), REDTLS_E_LIMIT, "9999999999");
}

static void test_negative_bulk_length(void **state)
{
    (void)state;
    run_case("$-2", TLS_CASE("$-2\r\n", LAB_HOSTILE_HOLD), REDTLS_E_PROTOCOL, "invalid reply");
}

static void test_unknown_type_byte(void **state)
{
    (void)state;
    run_case("!oops", TLS_CASE("!oops\r\n", LAB_HOSTILE_HOLD), REDTLS_E_PROTOCOL, "invalid reply");
}

static void test_never_ending_array(void **state)
{
    (void)state;
    lab_hostile_opts o = {.tls = 1, .reply = "*16777216\r\n", .end = LAB_HOSTILE_ENDLESS, .fill = ":1\r\n"};
    run_case("*16777216 + endless :1", &o, REDTLS_E_LIMIT, "unfinished reply");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_array_count_beyond_any_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_length_above_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_negative_bulk_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_type_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_never_ending_array, setup, teardown),
    };
    return cmocka_run_group_tests_name("integration.async_reply_status", tests, group_setup, NULL);
}

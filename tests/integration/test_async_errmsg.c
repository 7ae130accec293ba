/* Once a defect of lib/driver/async.c, fixed with this test (it failed before).
 *
 * Several commands ended together (the connection lost, the handle
 * closed): each callback is called with the failure's status, and the
 * message that explains it is the handle's, redtls_async_errmsg(). But
 * once one of those callbacks issues a command (async.h allows it),
 * check_issue() (lib/driver/async.c:159) clears the message, and every
 * later callback of the batch reads "" (finish_all, line 123, sets the
 * message once for the whole list; connection_lost and expire restore
 * theirs only after it). Which message a failed command's callback sees
 * thus depends on what the callbacks before it did.
 *
 * Proposed fix: finish_all() keeps a copy of the message and puts it back
 * into c->errmsg before each callback (the per-command time-outs in
 * expire() already set it before each finish()).
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

#define TOKEN "lab-Errmsg-Token-93f0a7"

static lab_server redis;

static lab_async_env t;
static size_t reissue_in; /* the command whose callback issues a PING */

static int group_setup(void **state)
{
    (void)state;
    return lab_init_redis(120, &redis, &(lab_redis_opts){.tls = 1, .password = TOKEN});
}

static int group_teardown(void **state)
{
    (void)state;
    lab_stop(&redis);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    reissue_in = 0;
    return lab_async_env_free(&t);
}

static void reissue(lab_tally *tl, redtls_async *ac, lab_acmd *c, const redisReply *reply)
{
    (void)reply;
    if (c->id == reissue_in)
        assert_int_equal(lab_issue(tl, ac, 0, "PING", NULL), REDTLS_OK);
}

static redtls_async *start(void)
{
    lab_client_config(&t.cfg, "localhost", redis.port, "ca.crt", TOKEN);
    assert_int_equal(lab_async_env_open(&t, LAB_LOOP_BUILTIN, 16), 0);
    redtls_async *ac = lab_async_env_handle(&t);
    assert_non_null(ac);
    return ac;
}

static void assert_both_say(size_t a, size_t b, redtls_status st, const char *says)
{
    const lab_acmd *ca = &t.tally->cmd[a], *cb = &t.tally->cmd[b];
    print_message("    first:  %s (%s)\n    second: %s (%s)\n", redtls_strerror(ca->st), ca->msg,
                  redtls_strerror(cb->st), cb->msg);
    assert_int_equal(ca->st, st);
    assert_int_equal(cb->st, st);
    assert_contains(ca->msg, says);
    assert_contains(cb->msg, says);
}

/* Two commands in flight (the second waits behind a BLPOP on the server)
 * when the server kills the connection; the first one's callback issues a
 * PING. */
static void test_connection_lost(void **state)
{
    (void)state;
    redtls_async *ac = start();
    lab_client_connect(&t.admin, t.cfg);
    size_t id, a, b;
    assert_int_equal(lab_issue(t.tally, ac, 0, "CLIENT ID", &id), REDTLS_OK);
    assert_true(lab_async_env_run_all(&t, 10000));
    assert_int_equal(lab_issue(t.tally, ac, 0, "BLPOP errmsg:empty 20", &a), REDTLS_OK);
    assert_int_equal(lab_issue(t.tally, ac, 0, "GET errmsg:k", &b), REDTLS_OK);
    lab_loop_run_until(t.loop, NULL, NULL, 200);
    assert_int_equal(lab_tally_owed(t.tally), 2);
    redisReply *r = NULL;
    assert_conn_status(t.admin, redtls_conn_command(t.admin, &r, "CLIENT KILL ID %lld", t.tally->cmd[id].integer),
                       REDTLS_OK);
    assert_int_equal(r->integer, 1);
    redtls_reply_free(r);
    reissue_in = a;
    t.tally->after = reissue;
    assert_true(lab_async_env_run_all(&t, 10000));
    t.tally->after = NULL;
    assert_int_equal(lab_tally_check(t.tally, "errmsg"), 0);
    assert_both_say(a, b, REDTLS_E_OUTCOME_UNKNOWN, "may or may not have run");
}

/* Two commands queued when the handle is closed; the first one's
 * callback issues a PING. */
static void test_closed(void **state)
{
    (void)state;
    redtls_async *ac = start();
    size_t a, b;
    assert_int_equal(lab_issue(t.tally, ac, 0, "GET errmsg:a", &a), REDTLS_OK);
    assert_int_equal(lab_issue(t.tally, ac, 0, "GET errmsg:b", &b), REDTLS_OK);
    reissue_in = a;
    t.tally->after = reissue;
    redtls_async_close(ac);
    t.tally->after = NULL;
    /* The PING issued from the callback runs on a new connection. */
    assert_true(lab_async_env_run_all(&t, 10000));
    assert_int_equal(lab_tally_check(t.tally, "errmsg"), 0);
    assert_int_equal(t.tally->cmd[b + 1].st, REDTLS_OK);
    assert_both_say(a, b, REDTLS_E_CLOSED, "closed by the application");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_connection_lost, teardown),
        cmocka_unit_test_teardown(test_closed, teardown),
    };
    return cmocka_run_group_tests_name("integration.async_errmsg", tests, group_setup, group_teardown);
}

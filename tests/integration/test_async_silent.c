/* A command issued to a connection that is already dead by the silence
 * rule (replies owed and nothing from the server for a whole command
 * timeout) is not written to it.
 *
 * Once a defect of lib/driver/async.c, fixed with this test (it failed
 * before): step_up wrote the queue first and applied the silence rule only
 * after, so the new command went out on the silent connection, which was
 * then closed in the same pass, and the command ended with
 * REDTLS_E_OUTCOME_UNKNOWN although the server had never seen it. CI met it
 * as integration.async_cluster_faults (test_slow_node): after a node was
 * stopped and let run again, the first command for it took the old
 * connection, whose command-timed-out replies were still owed.
 *
 * The server is stopped (SIGSTOP) for the whole decisive pass, so nothing
 * it sends can make the outcome depend on timing: the connection is closed
 * before the write, the command waits for a new connection, and once the
 * server runs again it gets its reply. */
#include <setjmp.h>
#include <signal.h>
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
#include "lab_proxy.h"

#define TOKEN "lab-Silent-Token-41c9e7"
#define COMMAND_MS 1000

static lab_server redis;
static lab_async_env t;
static lab_loop_kind kind;
static int stopped;
static redtls_async *ac; /* driven by t.loop */

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

static int setup(void **state)
{
    kind = *(const lab_loop_kind *)*state;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (stopped)
        lab_signal(redis.pid, SIGCONT);
    stopped = 0;
    ac = NULL;
    return lab_async_env_free(&t);
}

static int called(void *ud)
{
    const lab_acmd *c = ud;
    return c->calls > 0;
}

static int closed_or_called(void *ud)
{
    const lab_acmd *c = ud;
    return c->calls > 0 || !redtls_async_is_connected(ac);
}

static void test_no_write_to_a_silent_connection(void **state)
{
    (void)state;
    if (!lab_loop_available(kind))
        skip();
    lab_client_config(&t.cfg, "localhost", redis.port, "ca.crt", TOKEN);
    assert_cfg_status(t.cfg, redtls_config_set_command_timeout_ms(t.cfg, COMMAND_MS), REDTLS_OK);
    assert_int_equal(lab_async_env_open(&t, kind, 16), 0);
    ac = lab_async_env_handle(&t);
    assert_non_null(ac);
    size_t id;
    assert_int_equal(lab_issue(t.tally, ac, 0, "SET silent:k v", &id), REDTLS_OK);
    assert_true(lab_async_env_run_all(&t, 10000));
    assert_int_equal(t.tally->cmd[id].st, REDTLS_OK);

    /* A GET to the stopped server, written only 600 ms after it was
     * issued: it times out 1000 ms after it was issued, while the silence
     * rule (counted from the write) falls due only 1000 ms after the
     * write. */
    assert_int_equal(lab_signal(redis.pid, SIGSTOP), 0);
    stopped = 1;
    long long t0 = lab_now_ms();
    assert_int_equal(lab_issue(t.tally, ac, 0, "GET silent:k", &id), REDTLS_OK);
    lab_sleep_ms(600);
    assert_true(lab_loop_run_until(t.loop, called, &t.tally->cmd[id], 10000));
    assert_int_equal(t.tally->cmd[id].st, REDTLS_E_COMMAND_TIMEOUT);
    long long timed_out = lab_now_ms();
    /* The scene the test is about (else it could not fail): the
     * connection is still up, its reply still owed. */
    assert_true(redtls_async_is_connected(ac));
    /* Past the silence limit, with no pass of the loop to notice it: the
     * GET was written in a pass before the one that timed it out, so the
     * limit fell due by timed_out + 1000 at the latest. */
    lab_sleep_ms((int)(timed_out + COMMAND_MS + 5 - lab_now_ms()));

    size_t id2;
    long long issued2 = lab_now_ms();
    assert_int_equal(lab_issue(t.tally, ac, 0, "GET silent:k", &id2), REDTLS_OK);
    lab_acmd *c2 = &t.tally->cmd[id2];
    /* The decisive pass: it closes the connection, and then the GET
     * waits (now), or it writes the GET and loses it (before the fix). */
    assert_true(lab_loop_run_until(t.loop, closed_or_called, c2, 10000));
    print_message("    %s: GET timed out after %lld ms; the next GET, issued %lld ms after the first: %s%s%s\n",
                  lab_loop_name(kind), timed_out - t0, issued2 - t0,
                  c2->calls ? redtls_strerror(c2->st) : "waiting", c2->calls ? " - " : "", c2->calls ? c2->msg : "");
    /* Never written to the silent connection, so not lost with it. */
    assert_int_equal(c2->calls, 0);
    assert_false(redtls_async_is_connected(ac));

    assert_int_equal(lab_signal(redis.pid, SIGCONT), 0);
    stopped = 0;
    assert_true(lab_async_env_run_all(&t, 10000));
    assert_int_equal(lab_tally_check(t.tally, "silent connection"), 0);
    assert_int_equal(c2->st, REDTLS_OK);
    assert_string_equal(c2->str, "v");
}

static lab_loop_kind kinds[LAB_LOOP_KINDS] = {LAB_LOOP_BUILTIN, LAB_LOOP_LIBUV, LAB_LOOP_LIBEVENT};

int main(void)
{
    const struct CMUnitTest tests[] = {
        {"silent/built-in", test_no_write_to_a_silent_connection, setup, teardown, &kinds[LAB_LOOP_BUILTIN]},
        {"silent/libuv", test_no_write_to_a_silent_connection, setup, teardown, &kinds[LAB_LOOP_LIBUV]},
        {"silent/libevent", test_no_write_to_a_silent_connection, setup, teardown, &kinds[LAB_LOOP_LIBEVENT]},
    };
    return cmocka_run_group_tests_name("integration.async_silent", tests, group_setup, group_teardown);
}

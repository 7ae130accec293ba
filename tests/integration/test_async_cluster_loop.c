/* The asynchronous cluster client's built-in loop (redtls__acl_run_until),
 * against scripted nodes (tests/harness/lab_scripted.c, plain TCP): what
 * the loop's read phase (replies read and their callbacks called before
 * any node writes) does to the commands those callbacks issue.
 *   - a command a callback issues and that cannot be written before its
 *     deadline is reported honestly: timed out after it was sent (may have
 *     run), or not sent and then never sent.
 * Key slot used: {t} 15891 (the one scripted node serves every slot). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <redtls/async_cluster.h>
#include <redtls/redtls.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_scripted.h"

static int group_setup(void **state)
{
    (void)state;
    return lab_init(120);
}

/* A plain-TCP handle seeded with 127.0.0.1:port. */
static redtls_async_cluster *plain_acl(uint16_t port, unsigned timeout_ms)
{
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_tls(cfg, 0), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_host(cfg, "127.0.0.1", port), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, timeout_ms), REDTLS_OK);
    redtls_async_cluster *acl = NULL;
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, NULL, &acl), REDTLS_OK);
    redtls_config_free(cfg);
    return acl;
}

/* Rules for one scripted node serving every slot, then more rules. */
static void one_node_rules(const lab_server *srv, uint16_t port, const char *more)
{
    char rules[2048];
    snprintf(rules, sizeof rules,
             "* | CLUSTER SLOTS | 0 | *1\\r\\n*3\\r\\n:0\\r\\n:16383\\r\\n*3\\r\\n$9\\r\\n127.0.0.1\\r\\n:%u"
             "\\r\\n$1\\r\\na\\r\\n\n%s",
             (unsigned)port, more);
    assert_int_equal(lab_scripted_rules(srv, rules), 0);
}

typedef struct late_case {
    lab_server *srv;
    int get_calls;
    int incr_calls;
    redtls_status incr_st;
    char incr_msg[512];
    int seen_at_cb;   /* the node had the INCR when its callback ran */
} late_case;

/* Waits up to ms for the node to have logged the INCR. */
static int node_has_incr(const lab_server *srv, int ms)
{
    long long end = lab_now_ms() + ms;
    for (;;) {
        if (lab_scripted_count(srv, 0, "cmd INCR {t}late") > 0)
            return 1;
        if (lab_now_ms() >= end)
            return 0;
        usleep(10 * 1000);
    }
}

static void incr_cb(redtls_async_cluster *acl, redtls_status st, redisReply *r, void *ud)
{
    late_case *lc = ud;
    lc->incr_calls++;
    lc->incr_st = st;
    snprintf(lc->incr_msg, sizeof lc->incr_msg, "%s", st == REDTLS_OK ? "" : redtls_async_cluster_errmsg(acl));
    /* Sent before this call, the node logs it within a moment (the bytes
     * are in its socket, whatever this thread does meanwhile). */
    if (st != REDTLS_OK)
        lc->seen_at_cb = node_has_incr(lc->srv, 300);
    freeReplyObject(r);
}

/* The reply's callback issues the INCR, then takes longer than the
 * command timeout (an application's slow callback). */
static void get_cb(redtls_async_cluster *acl, redtls_status st, redisReply *r, void *ud)
{
    late_case *lc = ud;
    lc->get_calls++;
    freeReplyObject(r);
    if (st != REDTLS_OK)
        return;
    const char *argv[] = {"INCR", "{t}late"};
    assert_int_equal(redtls_async_cluster_command_argv(acl, 0, 2, argv, NULL, incr_cb, lc), REDTLS_OK);
    usleep(350 * 1000);
}

static void warm_cb(redtls_async_cluster *acl, redtls_status st, redisReply *r, void *ud)
{
    (void)acl;
    *(redtls_status *)ud = st;
    freeReplyObject(r);
}

/* A command issued from a callback whose deadline passes before the loop
 * writes it: its callback says "may have run" only once it was sent; a
 * command reported as not sent is never sent afterwards. On c890d76 the
 * read phase frames it, the pass that follows ends it at its deadline
 * ("no reply within the command timeout (the command may have run...)")
 * and then writes it: the application was told of a timeout for a command
 * the node receives only after that. */
static void test_late_command_from_a_read_phase_callback(void **state)
{
    (void)state;
    lab_server srv;
    uint16_t p[1];
    assert_int_equal(lab_scripted_start(&srv, 1, p), 0);
    one_node_rules(&srv, p[0],
                   "* | GET {t}warm | 0 | $1\\r\\nw\\r\\n\n"
                   "* | GET {t}a | 0 | $1\\r\\na\\r\\n\n"
                   "* | INCR {t}late | 0 | :1\\r\\n\n");
    redtls_async_cluster *acl = plain_acl(p[0], 200);
    /* The map and the node's connection first: the GET's reply then comes
     * to a connection the loop watches (its read phase). */
    redtls_status warm = REDTLS_E_STATE;
    const char *wargv[] = {"GET", "{t}warm"};
    assert_acl_status(acl, redtls_async_cluster_command_argv(acl, 0, 2, wargv, NULL, warm_cb, &warm), REDTLS_OK);
    assert_acl_status(acl, redtls_async_cluster_run(acl, 5000), REDTLS_OK);
    assert_int_equal(warm, REDTLS_OK);

    late_case lc = {.srv = &srv};
    const char *argv[] = {"GET", "{t}a"};
    assert_acl_status(acl, redtls_async_cluster_command_argv(acl, 0, 2, argv, NULL, get_cb, &lc), REDTLS_OK);
    assert_acl_status(acl, redtls_async_cluster_run(acl, 10000), REDTLS_OK);
    assert_int_equal(lc.get_calls, 1);
    assert_int_equal(lc.incr_calls, 1);
    /* Whatever was still to be written has gone by now. */
    int seen_after = node_has_incr(&srv, 300);
    print_message("INCR: %s (%s); on the node when its callback ran: %d, afterwards: %d\n",
                  redtls_strerror(lc.incr_st), lc.incr_msg, lc.seen_at_cb, seen_after);
    if (lc.incr_st != REDTLS_OK) {
        assert_int_equal(lc.incr_st, REDTLS_E_COMMAND_TIMEOUT);
        /* Reported before it was sent: then it must never be sent, and
         * the message must not say it may have run. */
        if (!lc.seen_at_cb) {
            assert_int_equal(seen_after, 0);
            assert_not_contains(lc.incr_msg, "may have run");
        }
    }
    redtls_async_cluster_free(acl);
    lab_stop(&srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_late_command_from_a_read_phase_callback),
    };
    return cmocka_run_group_tests_name("async_cluster_loop", tests, group_setup, NULL);
}

/* The blocking cluster client's direct lane (lib/cluster/cluster_lane.c)
 * against scripted nodes (tests/harness/lab_scripted.c): batches whose
 * nodes are already connected and idle, which the lane writes and reads
 * itself. Each case warms the connections first, then checks that what
 * the lane cannot end by itself reaches the engine with the same outcome
 * the engine gives on its own (integration.cluster_scripted runs the same
 * scenarios on cold connections, where the engine has the whole batch):
 * a redirection followed while another node is still owed replies, a node
 * that misses the deadline (only its connection closed, its late reply
 * never taken for a later command), a node lost mid-batch (an idempotent
 * command resent once), a reply that breaks the protocol, error replies
 * kept in place, and allocation failures over all of it.
 *
 * Key slots used: {b} 3300 and {c} 7365 (node A serves 0-8191), {a} 15495
 * (node B serves 8192-16383). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <poll.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <redtls/redtls.h>

#include "lab.h"
#include "lab_allochook.h"
#include "lab_assert.h"
#include "lab_cluster.h"
#include "lab_cluster_client.h"
#include "lab_scripted.h"
#include "lab_scripted_client.h"

static int group_setup(void **state)
{
    (void)state;
    return lab_init(150);
}

/* One GET to each of A and B, answered "x": both connections are made and
 * idle afterwards (rules: the test's, which must answer these). */
static void warm(redtls_cluster *cl)
{
    const char *keys[] = {"{b}warm", "{a}warm"};
    queue_gets(cl, keys, 2);
    redisReply *r = NULL;
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "x");
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "x");
}

/* A slow B (1 s, timeout 500 ms) and a fast A that answers a MOVED and an
 * ASK to C: C's commands are followed while B is still owed its reply,
 * and complete within the batch; only B's command times out and only B's
 * connection closes. */
static void test_lane_redirect_while_another_node_owes(void **state)
{
    (void)state;
    lab_server srv;
    uint16_t p[3];
    assert_int_equal(lab_scripted_start(&srv, 3, p), 0);
    unsigned a = p[0], b = p[1], c = p[2];
    char map[512], rules[4096];
    two_node_map(map, sizeof map, p[0], p[1]);
    snprintf(rules, sizeof rules, "* | CLUSTER SLOTS | 0 | %s\n* | GET | 0 | $1\\r\\nx\\r\\n\n", map);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    redtls_cluster *cl = new_cluster(p[0], 500, NULL, NULL);
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_OK);
    warm(cl);
    snprintf(rules, sizeof rules,
             "* | CLUSTER SLOTS | 0 | %s\n"
             "%u | GET {a}1 | 1000 | $2\\r\\nvb\\r\\n\n"
             "%u | GET {b}1 | 0 | $2\\r\\nva\\r\\n\n"
             "%u | GET {c}1 | 0 | -MOVED 7365 127.0.0.1:%u\\r\\n\n"
             "%u | GET {c}2 | 0 | -ASK 7365 127.0.0.1:%u\\r\\n\n"
             "%u | ASKING | 0 | +OK\\r\\n\n"
             "%u | GET {c}1 | 0 | $2\\r\\nvc\\r\\n\n"
             "%u | GET {c}2 | 0 | $2\\r\\nvd\\r\\n\n"
             "* | GET | 0 | $1\\r\\nx\\r\\n\n",
             map, b, a, a, c, a, c, c, c, c);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    const char *keys[] = {"{a}1", "{b}1", "{c}1", "{c}2"};
    long long t0 = lab_now_ms();
    queue_gets(cl, keys, 4);
    redisReply *r = NULL;
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_COMMAND_TIMEOUT);
    assert_null(r);
    char bname[64];
    snprintf(bname, sizeof bname, "127.0.0.1:%u", b);
    assert_contains(redtls_cluster_errmsg(cl), bname);
    assert_contains(redtls_cluster_errmsg(cl), "no reply within the command timeout");
    long long elapsed = lab_now_ms() - t0;
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "va");
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "vc");
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "vd");
    print_message("lane, slow node with redirections: batch ended after %lld ms (timeout 500 ms)\n", elapsed);
    assert_true(elapsed >= 490 && elapsed < 1000);
    assert_int_equal(redtls_cluster_stat_get(cl, REDTLS_CLUSTER_STAT_MOVED), 1);
    assert_int_equal(redtls_cluster_stat_get(cl, REDTLS_CLUSTER_STAT_ASK), 1);
    /* The warm connections were the ones used; only B's closed. */
    assert_int_equal(lab_scripted_open(&srv, (uint16_t)b, 0, 2000), 0);
    assert_int_equal(lab_scripted_open(&srv, (uint16_t)a, 1, 2000), 1);
    assert_int_equal(lab_scripted_count(&srv, (uint16_t)a, "accept"), 1);
    assert_int_equal(lab_scripted_count(&srv, (uint16_t)b, "accept"), 1);
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

/* B misses the deadline with nothing else going on: its commands end with
 * the timeout, A's replies are delivered, B's connection closes, and B's
 * late reply is never taken for the next command to B. */
static void test_lane_deadline(void **state)
{
    (void)state;
    lab_server srv;
    uint16_t p[2];
    assert_int_equal(lab_scripted_start(&srv, 2, p), 0);
    unsigned a = p[0], b = p[1];
    char map[512], rules[2048];
    two_node_map(map, sizeof map, p[0], p[1]);
    snprintf(rules, sizeof rules, "* | CLUSTER SLOTS | 0 | %s\n* | GET | 0 | $1\\r\\nx\\r\\n\n", map);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    redtls_cluster *cl = new_cluster(p[0], 500, NULL, NULL);
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_OK);
    warm(cl);
    snprintf(rules, sizeof rules,
             "* | CLUSTER SLOTS | 0 | %s\n"
             "%u | GET {a}1 | 1500 | $4\\r\\nlate\\r\\n\n"
             "%u | GET {a}2 | 0 | $5\\r\\nlate2\\r\\n\n"
             "%u | GET {b}1 | 0 | $2\\r\\nva\\r\\n\n"
             "%u | GET {b}2 | 0 | $3\\r\\nva2\\r\\n\n"
             "* | GET | 0 | $5\\r\\nfresh\\r\\n\n",
             map, b, b, a, a);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    const char *keys[] = {"{a}1", "{b}1", "{a}2", "{b}2"};
    long long t0 = lab_now_ms();
    queue_gets(cl, keys, 4);
    redisReply *r = NULL;
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_COMMAND_TIMEOUT);
    assert_contains(redtls_cluster_errmsg(cl), "may or may not have run");
    long long elapsed = lab_now_ms() - t0;
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "va");
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_COMMAND_TIMEOUT);
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "va2");
    print_message("lane deadline: batch ended after %lld ms (timeout 500 ms)\n", elapsed);
    /* At the deadline, well before B's late answer (1500 ms). */
    assert_true(elapsed >= 490 && elapsed < 1300);
    assert_int_equal(lab_scripted_open(&srv, (uint16_t)b, 0, 4000), 0);
    assert_int_equal(lab_scripted_open(&srv, (uint16_t)a, 1, 2000), 1);
    /* Past B's late answers: the next command to B has its own reply, on
     * a new connection. */
    for (long long until = lab_now_ms() + 400; lab_now_ms() < until;)
        (void)poll(NULL, 0, 50);
    const char *get_a[] = {"GET", "{a}3"};
    expect_str_reply(cl, redtls_cluster_command_argv(cl, 0, 2, get_a, NULL, &r), &r, "fresh");
    assert_int_equal(lab_scripted_count(&srv, (uint16_t)b, "accept"), 2);
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

/* A closes its connection mid-batch: its commands are lost (written,
 * outcome unknown), an idempotent one is resent once on a new connection,
 * and B's reply is unaffected. */
static void test_lane_node_lost(void **state)
{
    (void)state;
    lab_server srv;
    uint16_t p[2];
    assert_int_equal(lab_scripted_start(&srv, 2, p), 0);
    unsigned a = p[0], b = p[1];
    char map[512], rules[2048];
    two_node_map(map, sizeof map, p[0], p[1]);
    snprintf(rules, sizeof rules, "* | CLUSTER SLOTS | 0 | %s\n* | GET | 0 | $1\\r\\nx\\r\\n\n", map);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    redtls_cluster *cl = new_cluster(p[0], 2000, NULL, NULL);
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_OK);
    warm(cl);
    snprintf(rules, sizeof rules,
             "* | CLUSTER SLOTS | 0 | %s\n"
             "%u | GET {b}1 | 50 | CLOSE\n"
             "%u | GET {a}1 | 100 | $2\\r\\nva\\r\\n\n",
             map, a, b);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    const char *get_b[] = {"GET", "{b}1"}, *get_a[] = {"GET", "{a}1"};
    assert_cl_status(cl, redtls_cluster_append_argv(cl, 0, 2, get_b, NULL), REDTLS_OK);
    assert_cl_status(cl, redtls_cluster_append_argv(cl, REDTLS_CMD_IDEMPOTENT, 2, get_b, NULL), REDTLS_OK);
    assert_cl_status(cl, redtls_cluster_append_argv(cl, 0, 2, get_a, NULL), REDTLS_OK);
    redisReply *r = NULL;
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_OUTCOME_UNKNOWN);
    assert_contains(redtls_cluster_errmsg(cl), "may or may not have run");
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_OUTCOME_UNKNOWN);
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "va");
    /* The warm connection read the first GET and closed; the idempotent
     * one was resent once on a new connection (closed again). */
    assert_int_equal(lab_scripted_count(&srv, (uint16_t)a, "cmd GET {b}1"), 2);
    assert_int_equal(lab_scripted_count(&srv, (uint16_t)a, "accept"), 2);
    assert_int_equal(lab_scripted_count(&srv, (uint16_t)b, "close"), 0);
    /* Three failures seen by commands: both lost, then the resend lost. */
    assert_int_equal(redtls_cluster_stat_get(cl, REDTLS_CLUSTER_STAT_NODE_FAILURES), 3);
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

/* A reply that breaks the protocol ends its own command with
 * REDTLS_E_PROTOCOL; the command behind it on the same connection is
 * lost with the connection; B's is unaffected. */
static void test_lane_protocol_error(void **state)
{
    (void)state;
    lab_server srv;
    uint16_t p[2];
    assert_int_equal(lab_scripted_start(&srv, 2, p), 0);
    unsigned a = p[0], b = p[1];
    char map[512], rules[2048];
    two_node_map(map, sizeof map, p[0], p[1]);
    snprintf(rules, sizeof rules, "* | CLUSTER SLOTS | 0 | %s\n* | GET | 0 | $1\\r\\nx\\r\\n\n", map);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    redtls_cluster *cl = new_cluster(p[0], 2000, NULL, NULL);
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_OK);
    warm(cl);
    snprintf(rules, sizeof rules,
             "* | CLUSTER SLOTS | 0 | %s\n"
             "%u | GET {b}1 | 0 | @bad\\r\\n\n"
             "%u | GET {a}1 | 50 | $2\\r\\nva\\r\\n\n"
             "* | GET | 0 | $1\\r\\nx\\r\\n\n",
             map, a, b);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    const char *keys[] = {"{b}1", "{b}2", "{a}1"};
    queue_gets(cl, keys, 3);
    redisReply *r = NULL;
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_PROTOCOL);
    char aname[64];
    snprintf(aname, sizeof aname, "127.0.0.1:%u", a);
    assert_contains(redtls_cluster_errmsg(cl), aname);
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_OUTCOME_UNKNOWN);
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "va");
    /* A is usable again at the next command. */
    const char *get_b[] = {"GET", "{b}3"};
    expect_str_reply(cl, redtls_cluster_command_argv(cl, 0, 2, get_b, NULL, &r), &r, "x");
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

/* Error replies that are a command's own outcome stay in their places
 * among values from both nodes, over batches of every size up to 40. */
static void test_lane_order_and_error_replies(void **state)
{
    (void)state;
    lab_server srv;
    uint16_t p[2];
    assert_int_equal(lab_scripted_start(&srv, 2, p), 0);
    char map[512], rules[2048];
    two_node_map(map, sizeof map, p[0], p[1]);
    snprintf(rules, sizeof rules,
             "* | CLUSTER SLOTS | 0 | %s\n"
             "* | GET {b}e | 0 | -WRONGTYPE Operation against a key holding the wrong kind of value\\r\\n\n"
             "* | GET {a}e | 0 | -ERR some error of the command's own\\r\\n\n"
             "* | GET {b}v | 0 | $2\\r\\nbv\\r\\n\n"
             "* | GET {a}v | 0 | $2\\r\\nav\\r\\n\n"
             "* | GET | 0 | $1\\r\\nx\\r\\n\n",
             map);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    redtls_cluster *cl = new_cluster(p[0], 2000, NULL, NULL);
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_OK);
    warm(cl);
    static const char *const keys[] = {"{b}v", "{a}e", "{a}v", "{b}e", "{b}v", "{a}v", "{a}v"};
    static const char *const want[] = {"bv", "ERR some", "av", "WRONGTYPE", "bv", "av", "av"};
    for (size_t n = 1; n <= 40; n++) {
        for (size_t i = 0; i < n; i++) {
            const char *argv[] = {"GET", keys[(i + n) % 7]};
            assert_cl_status(cl, redtls_cluster_append_argv(cl, 0, 2, argv, NULL), REDTLS_OK);
        }
        for (size_t i = 0; i < n; i++) {
            redisReply *r = NULL;
            assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_OK);
            assert_non_null(r);
            const char *w = want[(i + n) % 7];
            assert_int_equal(r->type, w[0] == 'E' || w[0] == 'W' ? REDIS_REPLY_ERROR : REDIS_REPLY_STRING);
            assert_true(strncmp(r->str, w, strlen(w)) == 0);
            redtls_reply_free(r);
        }
    }
    /* Two connections in all: every batch went over the warm ones. */
    assert_int_equal(lab_scripted_count(&srv, p[0], "accept"), 1);
    assert_int_equal(lab_scripted_count(&srv, p[1], "accept"), 1);
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

/* One batch of the run below: GET {b}1 (A answers a MOVED to C after
 * 300 ms, C its value after 1000 ms more) and GET {a}1 (B answers after
 * 2 s), behind a PING when engine is set (a keyless command: the batch is
 * the engine's). Returns the batch's time in ms. */
static long long deadline_batch(redtls_cluster *cl, int engine)
{
    const char *ping[] = {"PING"};
    if (engine)
        assert_cl_status(cl, redtls_cluster_append_argv(cl, 0, 1, ping, NULL), REDTLS_OK);
    const char *keys[] = {"{b}1", "{a}1"};
    long long t0 = lab_now_ms();
    queue_gets(cl, keys, 2);
    redisReply *r = NULL;
    if (engine) {
        assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_OK);
        redtls_reply_free(r);
        r = NULL;
    }
    redtls_status st = redtls_cluster_get_reply(cl, &r);
    long long elapsed = lab_now_ms() - t0;
    print_message("%s: GET {b}1 (MOVED at 300 ms, C's answer 1000 ms later): %s after %lld ms (timeout 500 ms)\n",
                  engine ? "engine" : "lane", redtls_strerror(st), elapsed);
    if (r)
        print_message("  reply: %s\n", r->str ? r->str : "(no text)");
    redtls_reply_free(r);
    assert_cl_status(cl, st, REDTLS_E_COMMAND_TIMEOUT);
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_COMMAND_TIMEOUT);
    assert_contains(redtls_cluster_errmsg(cl), "no reply within the command timeout");
    return elapsed;
}

/* The batch's command timeout bounds what the lane hands the engine as it
 * bounds the engine's own batch (counted from its release, a redirected
 * command's included): the same batch, on the engine and then on the
 * lane, ends at the deadline with both commands timed out, not when the
 * late redirection's answer comes (and B's command is not given another
 * timeout from the redirection on either). */
static void test_lane_handover_keeps_the_batch_deadline(void **state)
{
    (void)state;
    lab_server srv;
    uint16_t p[3];
    assert_int_equal(lab_scripted_start(&srv, 3, p), 0);
    unsigned a = p[0], b = p[1], c = p[2];
    char map[512], rules[4096];
    two_node_map(map, sizeof map, p[0], p[1]);
    snprintf(rules, sizeof rules,
             "* | CLUSTER SLOTS | 0 | %s\n"
             "%u | GET {b}1 | 300 | -MOVED 3300 127.0.0.1:%u\\r\\n\n"
             "%u | GET {b}1 | 1000 | $2\\r\\nvc\\r\\n\n"
             "%u | GET {a}1 | 2000 | $2\\r\\nvb\\r\\n\n"
             "* | PING | 0 | +PONG\\r\\n\n"
             "* | GET | 0 | $1\\r\\nx\\r\\n\n",
             map, a, c, c, b);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    redtls_cluster *cl = new_cluster(p[0], 500, NULL, NULL);
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_OK);
    char cname[64];
    snprintf(cname, sizeof cname, "127.0.0.1:%u", c);
    const char *get_w[] = {"GET", "{b}warm"};
    for (int engine = 1; engine >= 0; engine--) {
        /* A, B and C connected and idle (the engine's run closed B's and
         * C's connections, and asked for a refresh: the warm-up makes it). */
        warm(cl);
        redisReply *r = NULL;
        expect_str_reply(cl, redtls_cluster_command_node(cl, cname, 0, 2, get_w, NULL, &r), &r, "x");
        long long elapsed = deadline_batch(cl, engine);
        /* At the deadline, well before C's answer (1300 ms at the
         * earliest; it was 650 ms, which a late wake-up could reach). */
        assert_true(elapsed >= 490 && elapsed < 1200);
    }
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

/* A TRYAGAIN on the lane is retried after the backoff from its first
 * step, as on the engine (whose release starts every batch's retries
 * afresh), whatever an earlier batch left: here one whose retries the
 * deadline ended, its next retry time still set. Backoff 100-200 ms: the
 * first retry of the second batch comes 100 ms or more after the command. */
static void test_lane_retry_starts_afresh(void **state)
{
    (void)state;
    lab_server srv;
    uint16_t p[2];
    assert_int_equal(lab_scripted_start(&srv, 2, p), 0);
    char map[512], rules[2048];
    two_node_map(map, sizeof map, p[0], p[1]);
    snprintf(rules, sizeof rules,
             "* | CLUSTER SLOTS | 0 | %s\n"
             "* | GET {b}t | 0 | -TRYAGAIN Multiple keys request during rehashing of slot\\r\\n\n"
             "* | GET {b}u0 | 0 | -TRYAGAIN Multiple keys request during rehashing of slot\\r\\n\n"
             "* | GET {b}u1 | 0 | -TRYAGAIN Multiple keys request during rehashing of slot\\r\\n\n"
             "* | PING | 0 | +PONG\\r\\n\n"
             "* | GET | 0 | $1\\r\\nx\\r\\n\n",
             map);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_tls(cfg, 0), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_host(cfg, "127.0.0.1", p[0]), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, 500), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_backoff(cfg, 100, 200), REDTLS_OK);
    redtls_cluster *cl = NULL;
    assert_cfg_status(cfg, redtls_cluster_new(cfg, NULL, &cl), REDTLS_OK);
    redtls_config_free(cfg);
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_OK);
    for (int engine = 1; engine >= 0; engine--) {
        warm(cl);
        /* Retried until the deadline, which ends it with the last TRYAGAIN. */
        const char *get_t[] = {"GET", "{b}t"};
        redisReply *r = NULL;
        assert_cl_status(cl, redtls_cluster_command_argv(cl, 0, 2, get_t, NULL, &r), REDTLS_OK);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_ERROR);
        redtls_reply_free(r);
        r = NULL;
        for (long long until = lab_now_ms() + 400; lab_now_ms() < until;)
            (void)poll(NULL, 0, 50);
        const char *ping[] = {"PING"}, *get_u[] = {"GET", engine ? "{b}u1" : "{b}u0"};
        if (engine)
            assert_cl_status(cl, redtls_cluster_append_argv(cl, 0, 1, ping, NULL), REDTLS_OK);
        assert_cl_status(cl, redtls_cluster_append_argv(cl, 0, 2, get_u, NULL), REDTLS_OK);
        while (redtls_cluster_pending(cl) > 0) {
            assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_OK);
            redtls_reply_free(r);
            r = NULL;
        }
        char ev[32];
        snprintf(ev, sizeof ev, "cmd GET %s", get_u[1]);
        long long t[8];
        size_t n = lab_scripted_times(&srv, p[0], ev, t, 8);
        print_message("%s: GET %s sent %zu times, first retry after %lld ms (backoff 100-200 ms)\n",
                      engine ? "engine" : "lane", get_u[1], n, n >= 2 ? t[1] - t[0] : -1LL);
        assert_true(n >= 2);
        assert_true(t[1] - t[0] >= 90);
    }
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

/* A node that takes a command only once it has written the reply to the
 * one before (as a proxy does, or a server at its output limit): a batch
 * larger than the sockets' buffers both ways goes through only when the
 * replies are read while the batch is still being written, as the engine
 * does. 100 SETs of 256 KiB, each answered with 256 KiB; A takes its time
 * over the first, so its receive buffer stays small. */
#define BIG (256 * 1024)
static void test_lane_reads_while_writing(void **state)
{
    (void)state;
    lab_server srv;
    uint16_t p[2];
    assert_int_equal(lab_scripted_start(&srv, 2, p), 0);
    char map[512];
    two_node_map(map, sizeof map, p[0], p[1]);
    char *big = malloc(BIG + 1);
    assert_non_null(big);
    memset(big, 'v', BIG);
    big[BIG] = '\0';
    size_t cap = 3 * BIG;
    char *rules = malloc(cap);
    assert_non_null(rules);
    snprintf(rules, cap,
             "* | CLUSTER SLOTS | 0 | %s\n"
             "* | PING | 0 | +PONG\\r\\n\n"
             "* | SET {b}k0 | 500 | $%d\\r\\n%s\\r\\n\n"
             "* | SET | 0 | $%d\\r\\n%s\\r\\n\n"
             "* | GET | 0 | $1\\r\\nx\\r\\n\n",
             map, BIG, big, BIG, big);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    redtls_cluster *cl = new_cluster(p[0], 4000, NULL, NULL);
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_OK);
    for (int engine = 1; engine >= 0; engine--) {
        warm(cl);
        const char *ping[] = {"PING"};
        if (engine)
            assert_cl_status(cl, redtls_cluster_append_argv(cl, 0, 1, ping, NULL), REDTLS_OK);
        long long t0 = lab_now_ms();
        for (int i = 0; i < 100; i++) {
            char key[32];
            snprintf(key, sizeof key, "{b}k%d", i);
            const char *argv[] = {"SET", key, big};
            const size_t lens[] = {3, strlen(key), BIG};
            assert_cl_status(cl, redtls_cluster_append_argv(cl, 0, 3, argv, lens), REDTLS_OK);
        }
        size_t ok = 0, n = redtls_cluster_pending(cl);
        redtls_status first = REDTLS_OK;
        char why[256] = "";
        while (redtls_cluster_pending(cl) > 0) {
            redisReply *r = NULL;
            redtls_status st = redtls_cluster_get_reply(cl, &r);
            if (st == REDTLS_OK)
                ok++;
            else if (first == REDTLS_OK) {
                first = st;
                snprintf(why, sizeof why, "%s", redtls_cluster_errmsg(cl));
            }
            redtls_reply_free(r);
        }
        print_message("%s: %zu of %zu replies after %lld ms (first failure: %s %s)\n", engine ? "engine" : "lane", ok,
                      n, lab_now_ms() - t0, redtls_strerror(first), why);
        assert_int_equal(ok, n);
    }
    redtls_cluster_free(cl);
    free(rules);
    free(big);
    lab_stop(&srv);
}

/* A batch on one master is read as its replies are asked for: the same
 * outcomes as a batch over two, through a redirection (handed to the
 * engine with replies still owed), an error reply, a protocol error, a
 * lost connection and the deadline. */
static void test_lane_one_master(void **state)
{
    (void)state;
    lab_server srv;
    uint16_t p[3];
    assert_int_equal(lab_scripted_start(&srv, 3, p), 0);
    unsigned a = p[0], c = p[2];
    char map[512], rules[4096];
    two_node_map(map, sizeof map, p[0], p[1]);
    snprintf(rules, sizeof rules,
             "* | CLUSTER SLOTS | 0 | %s\n"
             "%u | GET {c}1 | 0 | -MOVED 7365 127.0.0.1:%u\\r\\n\n"
             "%u | GET {c}1 | 0 | $2\\r\\nvc\\r\\n\n"
             "%u | GET {b}e | 0 | -WRONGTYPE wrong kind\\r\\n\n"
             "%u | GET {b}bad | 0 | @bad\\r\\n\n"
             "%u | GET {b}close | 0 | CLOSE\n"
             "%u | GET {b}slow | 900 | $4\\r\\nlate\\r\\n\n"
             "* | GET {b}1 | 100 | $2\\r\\nv1\\r\\n\n"
             "* | GET | 0 | $1\\r\\nx\\r\\n\n",
             map, a, c, c, a, a, a, a);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    redtls_cluster *cl = new_cluster(p[0], 500, NULL, NULL);
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_OK);
    warm(cl);
    redisReply *r = NULL;

    /* A MOVED first, a slow value behind it: C's answer and A's both. */
    const char *moved[] = {"{c}1", "{b}1", "{b}2"};
    queue_gets(cl, moved, 3);
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "vc");
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "v1");
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "x");
    assert_int_equal(redtls_cluster_stat_get(cl, REDTLS_CLUSTER_STAT_MOVED), 1);

    /* An error reply in its place. */
    const char *err[] = {"{b}3", "{b}e", "{b}4"};
    queue_gets(cl, err, 3);
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "x");
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_OK);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_contains(r->str, "WRONGTYPE");
    redtls_reply_free(r);
    r = NULL;
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "x");

    /* A reply that breaks the protocol: its command, then the one behind. */
    const char *bad[] = {"{b}5", "{b}bad", "{b}6"};
    queue_gets(cl, bad, 3);
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "x");
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_PROTOCOL);
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_OUTCOME_UNKNOWN);
    warm(cl);

    /* The connection closed after the first: the rest may have run. */
    const char *lost[] = {"{b}close", "{b}7"};
    queue_gets(cl, lost, 2);
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_OUTCOME_UNKNOWN);
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_OUTCOME_UNKNOWN);
    assert_contains(redtls_cluster_errmsg(cl), "may or may not have run");
    warm(cl);

    /* The deadline: the value before the slow one comes, the slow one
     * and the one behind it time out, the connection closes, and the late
     * answer is never taken for a later command. */
    int accepts = lab_scripted_count(&srv, (uint16_t)a, "accept");
    const char *slow[] = {"{b}8", "{b}slow", "{b}9"};
    long long t0 = lab_now_ms();
    queue_gets(cl, slow, 3);
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "x");
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_COMMAND_TIMEOUT);
    assert_contains(redtls_cluster_errmsg(cl), "no reply within the command timeout");
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_COMMAND_TIMEOUT);
    long long elapsed = lab_now_ms() - t0;
    assert_true(elapsed >= 490 && elapsed < 900);
    for (long long until = lab_now_ms() + 500; lab_now_ms() < until;)
        (void)poll(NULL, 0, 50);
    const char *get[] = {"GET", "{b}10"};
    expect_str_reply(cl, redtls_cluster_command_argv(cl, 0, 2, get, NULL, &r), &r, "x");
    assert_int_equal(lab_scripted_count(&srv, (uint16_t)a, "accept"), accepts + 1);
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

/* ---- allocation failures ---- */

static lab_server af_srv;
static uint16_t af_port[3];

/* One run: a handle, warm connections and a warm-up batch on the lane
 * (never failed), then the work batch with its nth allocation failing (0:
 * none): a MOVED and an ASK to C followed while A and B are owed replies,
 * a final error, an idempotent command. *made: allocations the work batch
 * attempted; *leaked: blocks left behind by the whole run. */
static redtls_status af_run(long n, char *why, size_t whylen, long *made, long *leaked)
{
    lab_alloc_arm(0);
    redtls_cluster *cl = new_cluster(af_port[0], 2000, NULL, NULL);
    redtls_status st = redtls_cluster_connect(cl);
    static const char *const keys[] = {"{b}1", "{a}1", "{c}1", "{b}e", "{c}2", "{a}2", "{b}2"};
    for (int round = 0; round < 2 && st == REDTLS_OK; round++) {
        if (round == 1) {
            long live = lab_alloc_live();
            lab_alloc_arm(n);
            *leaked = live; /* counted from here: set-up's blocks come back at free */
        }
        for (size_t i = 0; i < 7 && st == REDTLS_OK; i++) {
            /* The warm-up round asks only A and B for plain values. */
            const char *argv[] = {"GET", round == 0 ? (i % 2 ? "{a}w" : "{b}w") : keys[i]};
            st = redtls_cluster_append_argv(cl, i == 5 ? REDTLS_CMD_IDEMPOTENT : 0, 2, argv, NULL);
            if (st != REDTLS_OK)
                snprintf(why, whylen, "append: %s", redtls_cluster_errmsg(cl));
        }
        /* Every queued reply is read, a failed one too; each exactly once. */
        size_t outcomes = 0, pending = redtls_cluster_pending(cl);
        while (redtls_cluster_pending(cl) > 0) {
            redisReply *r = NULL;
            redtls_status s = redtls_cluster_get_reply(cl, &r);
            outcomes++;
            if (s != REDTLS_OK && redtls_cluster_errmsg(cl)[0] == '\0')
                fail_msg("status %s without a message", redtls_strerror(s));
            if (s == REDTLS_OK && !r)
                fail_msg("REDTLS_OK without a reply");
            if (st == REDTLS_OK && s != REDTLS_OK) {
                st = s;
                snprintf(why, whylen, "%s", redtls_cluster_errmsg(cl));
            }
            redtls_reply_free(r);
        }
        assert_int_equal(outcomes, pending);
    }
    *made = lab_alloc_calls();
    redtls_cluster_free(cl);
    OPENSSL_thread_stop();
    lab_alloc_disarm();
    *leaked += lab_alloc_live();
    return st;
}

static void test_lane_allocation_failures(void **state)
{
    (void)state;
#if !LAB_ALLOC_HOOK
    (void)af_run;
    (void)af_srv;
    skip();
#else
    assert_int_equal(lab_scripted_start(&af_srv, 3, af_port), 0);
    unsigned a = af_port[0], c = af_port[2];
    char map[512], rules[4096];
    two_node_map(map, sizeof map, af_port[0], af_port[1]);
    snprintf(rules, sizeof rules,
             "* | CLUSTER SLOTS | 0 | %s\n"
             "%u | GET {c}1 | 0 | -MOVED 7365 127.0.0.1:%u\\r\\n\n"
             "%u | GET {c}2 | 0 | -ASK 7365 127.0.0.1:%u\\r\\n\n"
             "%u | ASKING | 0 | +OK\\r\\n\n"
             "* | GET {b}e | 0 | -WRONGTYPE wrong kind\\r\\n\n"
             "* | GET {a}1 | 30 | $2\\r\\nva\\r\\n\n"
             "* | GET | 0 | $1\\r\\nx\\r\\n\n",
             map, a, c, a, c, c);
    assert_int_equal(lab_scripted_rules(&af_srv, rules), 0);
    char why[512];
    long made = 0, leaked = 0, failed = 0;
    assert_int_equal(af_run(0, why, sizeof why, &made, &leaked), REDTLS_OK);
    long total = made;
    for (long n = 1;; n++) {
        redtls_status st = af_run(n, why, sizeof why, &made, &leaked);
        if (leaked != 0) /* once more: a process-wide cache filled on a new path */
            st = af_run(n, why, sizeof why, &made, &leaked);
        if (leaked != 0)
            fail_msg("work allocation %ld failed: %ld allocations leaked (status %s: %s)", n, leaked,
                     redtls_strerror(st), why);
        if (made < n) {
            assert_int_equal(st, REDTLS_OK);
            break;
        }
        failed += st != REDTLS_OK;
    }
    print_message("lane batch with a MOVED and an ASK: %ld allocations, each failed in turn: %ld runs ended with a "
                  "failure status, none crashed or leaked\n",
                  total, failed);
    assert_true(total > 5);
    lab_stop(&af_srv);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lane_redirect_while_another_node_owes),
        cmocka_unit_test(test_lane_deadline),
        cmocka_unit_test(test_lane_node_lost),
        cmocka_unit_test(test_lane_protocol_error),
        cmocka_unit_test(test_lane_order_and_error_replies),
        cmocka_unit_test(test_lane_one_master),
        cmocka_unit_test(test_lane_handover_keeps_the_batch_deadline),
        cmocka_unit_test(test_lane_retry_starts_afresh),
        cmocka_unit_test(test_lane_reads_while_writing),
        cmocka_unit_test(test_lane_allocation_failures),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}

/* The cluster client against scripted nodes (tests/harness/lab_scripted.c)
 * that answer exact command sequences: a null endpoint in CLUSTER SLOTS, a
 * batch over a fast and a slow node (the fast node's replies and its
 * redirections are not lost to the slow one), the refresh throttle without
 * a slot map, connections to addresses outside the map closed and the
 * address list kept bounded, and token updates that are all or nothing.
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

#include <cmocka.h>

#include <hiredis/hiredis.h>
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

/* Redis documents a null preferred endpoint as "the endpoint this command
 * was sent to": for masters and replicas alike it is the seed's address. */
static void test_null_endpoint(void **state)
{
    (void)state;
    lab_server srv;
    uint16_t p[3];
    assert_int_equal(lab_scripted_start(&srv, 3, p), 0);
    char rules[2048];
    snprintf(rules, sizeof rules,
             "* | CLUSTER SLOTS | 0 | *2\\r\\n"
             "*4\\r\\n:0\\r\\n:8191\\r\\n*3\\r\\n$-1\\r\\n:%u\\r\\n$1\\r\\na\\r\\n*3\\r\\n$-1\\r\\n:%u\\r\\n$1\\r\\nc\\r\\n"
             "*3\\r\\n:8192\\r\\n:16383\\r\\n*3\\r\\n$-1\\r\\n:%u\\r\\n$1\\r\\nb\\r\\n\n"
             "%u | GET {a}1 | 0 | $4\\r\\nfrom\\r\\n\n"
             "%u | GET {b}1 | 0 | $5\\r\\nfromA\\r\\n\n",
             (unsigned)p[0], (unsigned)p[2], (unsigned)p[1], (unsigned)p[1], (unsigned)p[0]);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    redtls_cluster *cl = new_cluster(p[0], 2000, NULL, NULL);
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_OK);
    assert_int_equal(redtls_cluster_node_count(cl), 3);
    redisReply *r = NULL;
    const char *get_a[] = {"GET", "{a}1"}, *get_b[] = {"GET", "{b}1"};
    expect_str_reply(cl, redtls_cluster_command_argv(cl, 0, 2, get_a, NULL, &r), &r, "from");
    expect_str_reply(cl, redtls_cluster_command_argv(cl, 0, 2, get_b, NULL, &r), &r, "fromA");
    assert_int_equal(lab_scripted_count(&srv, p[1], "cmd GET {a}1"), 1);
    /* The replica was read as 127.0.0.1 too. */
    char name[64];
    snprintf(name, sizeof name, "127.0.0.1:%u", (unsigned)p[2]);
    int found = 0;
    for (size_t i = 0; i < redtls_cluster_node_count(cl); i++)
        found |= strcmp(redtls_cluster_node_name(cl, i), name) == 0 && !redtls_cluster_node_is_master(cl, i);
    assert_true(found);
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

/* A batch over a slow node B (1 s) and a fast node A, with a 500 ms
 * command timeout: B's command times out, and only B's connection is
 * closed; A's replies arrive and are delivered, and the MOVED and ASK that
 * A sends are followed to C within the time left. B's command is queued
 * first, so a client that reads nodes one after another meets B first. */
static void test_slow_node_costs_only_its_own(void **state)
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
    redtls_cluster *cl = new_cluster(p[0], 500, NULL, NULL);
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_OK);
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
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_OK);
    expect_str_reply(cl, REDTLS_OK, &r, "va");
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_OK);
    expect_str_reply(cl, REDTLS_OK, &r, "vc");
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_OK);
    expect_str_reply(cl, REDTLS_OK, &r, "vd");
    print_message("slow node: batch ended after %lld ms (timeout 500 ms)\n", elapsed);
    assert_true(elapsed >= 490 && elapsed < 1000);
    assert_int_equal(redtls_cluster_stat_get(cl, REDTLS_CLUSTER_STAT_MOVED), 1);
    assert_int_equal(redtls_cluster_stat_get(cl, REDTLS_CLUSTER_STAT_ASK), 1);
    /* Only B's connection was closed; A's is the one the next command
     * uses. */
    assert_int_equal(lab_scripted_open(&srv, (uint16_t)b, 0, 2000), 0);
    assert_int_equal(lab_scripted_open(&srv, (uint16_t)a, 1, 2000), 1);
    const char *get_b[] = {"GET", "{b}1"};
    expect_str_reply(cl, redtls_cluster_command_argv(cl, 0, 2, get_b, NULL, &r), &r, "va");
    assert_int_equal(lab_scripted_count(&srv, (uint16_t)a, "accept"), 1);

    /* The same with the slow node answering within the timeout: nothing
     * fails, nothing is closed. */
    snprintf(rules, sizeof rules,
             "* | CLUSTER SLOTS | 0 | %s\n"
             "%u | GET {a}1 | 200 | $2\\r\\nvb\\r\\n\n"
             "* | GET | 0 | $1\\r\\nx\\r\\n\n",
             map, b);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    queue_gets(cl, keys, 2);
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "vb");
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "x");
    assert_int_equal(lab_scripted_count(&srv, (uint16_t)a, "close"), 0);
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

/* What had arrived when the deadline came is delivered even when the
 * client was busy elsewhere: here connecting to C, the target of A's MOVED,
 * whose AUTH answer comes too late, while A's second reply (after 100 ms)
 * waits in A's socket. */
static void test_replies_in_the_socket_at_the_deadline(void **state)
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
             "%u | AUTH | 1000 | +OK\\r\\n\n"
             "* | AUTH | 0 | +OK\\r\\n\n"
             "%u | GET {a}1 | 1000 | $2\\r\\nvb\\r\\n\n"
             "%u | GET {b}1 | 0 | -MOVED 3300 127.0.0.1:%u\\r\\n\n"
             "%u | GET {b}2 | 100 | $3\\r\\nvb2\\r\\n\n"
             "* | GET | 0 | $1\\r\\nx\\r\\n\n",
             map, c, b, a, c, a);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    redtls_cluster *cl = new_cluster(p[0], 500, "tok", NULL);
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_OK);
    const char *keys[] = {"{a}1", "{b}1", "{b}2"};
    queue_gets(cl, keys, 3);
    redisReply *r = NULL;
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_COMMAND_TIMEOUT);
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_HANDSHAKE_TIMEOUT);
    assert_null(r);
    assert_contains(redtls_cluster_errmsg(cl), "not sent within the command timeout");
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "vb2");
    /* A's connection stays; B's went. */
    assert_int_equal(lab_scripted_open(&srv, (uint16_t)b, 0, 2000), 0);
    assert_int_equal(lab_scripted_open(&srv, (uint16_t)a, 1, 2000), 1);
    assert_int_equal(lab_scripted_count(&srv, (uint16_t)a, "close"), 0);
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

/* An ASK and then a MOVED to the same node within one batch: the MOVED op
 * goes on behind the ASKING whose reply is still owed (it is not refused
 * as "replies pending"). */
static void test_ask_then_moved_to_the_same_node(void **state)
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
             "%u | GET {c}1 | 0 | -ASK 7365 127.0.0.1:%u\\r\\n\n"
             "%u | GET {c}2 | 100 | -MOVED 7365 127.0.0.1:%u\\r\\n\n"
             "%u | ASKING | 300 | +OK\\r\\n\n"
             "%u | GET {c}1 | 0 | $2\\r\\nv1\\r\\n\n"
             "%u | GET {c}2 | 0 | $2\\r\\nv2\\r\\n\n",
             map, a, c, a, c, c, c, c);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    redtls_cluster *cl = new_cluster(p[0], 2000, NULL, NULL);
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_OK);
    const char *get1[] = {"GET", "{c}1"}, *get2[] = {"GET", "{c}2"};
    assert_cl_status(cl, redtls_cluster_append_argv(cl, 0, 2, get1, NULL), REDTLS_OK);
    assert_cl_status(cl, redtls_cluster_append_argv(cl, 0, 2, get2, NULL), REDTLS_OK);
    redisReply *r = NULL;
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "v1");
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "v2");
    assert_int_equal(redtls_cluster_stat_get(cl, REDTLS_CLUSTER_STAT_NODE_FAILURES), 0);
    assert_int_equal(lab_scripted_count(&srv, (uint16_t)c, "cmd GET {c}2"), 1);
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

/* A node that closes its connection mid-batch: its commands are reported
 * as lost (written, outcome unknown), an idempotent one is resent once,
 * and the other node's reply is unaffected. */
static void test_node_lost_mid_batch(void **state)
{
    (void)state;
    lab_server srv;
    uint16_t p[2];
    assert_int_equal(lab_scripted_start(&srv, 2, p), 0);
    unsigned a = p[0], b = p[1];
    char map[512], rules[2048];
    two_node_map(map, sizeof map, p[0], p[1]);
    snprintf(rules, sizeof rules,
             "* | CLUSTER SLOTS | 0 | %s\n"
             "%u | GET {b}1 | 50 | CLOSE\n"
             "%u | GET {a}1 | 100 | $2\\r\\nva\\r\\n\n",
             map, a, b);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    redtls_cluster *cl = new_cluster(p[0], 2000, NULL, NULL);
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_OK);
    const char *get_b[] = {"GET", "{b}1"}, *get_a[] = {"GET", "{a}1"};
    assert_cl_status(cl, redtls_cluster_append_argv(cl, 0, 2, get_b, NULL), REDTLS_OK);
    assert_cl_status(cl, redtls_cluster_append_argv(cl, REDTLS_CMD_IDEMPOTENT, 2, get_b, NULL), REDTLS_OK);
    assert_cl_status(cl, redtls_cluster_append_argv(cl, 0, 2, get_a, NULL), REDTLS_OK);
    redisReply *r = NULL;
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_OUTCOME_UNKNOWN);
    assert_contains(redtls_cluster_errmsg(cl), "may or may not have run");
    assert_cl_status(cl, redtls_cluster_get_reply(cl, &r), REDTLS_E_OUTCOME_UNKNOWN);
    expect_str_reply(cl, redtls_cluster_get_reply(cl, &r), &r, "va");
    /* The node read the first GET and closed before the second; the
     * idempotent one was resent once on a new connection (closed again). */
    assert_int_equal(lab_scripted_count(&srv, (uint16_t)a, "cmd GET {b}1"), 2);
    assert_int_equal(lab_scripted_count(&srv, (uint16_t)a, "accept"), 2);
    assert_int_equal(lab_scripted_count(&srv, (uint16_t)b, "close"), 0);
    assert_int_equal(redtls_cluster_stat_get(cl, REDTLS_CLUSTER_STAT_NODE_FAILURES), 3);
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

/* Without a slot map, refreshes keep the minimum gap, and each call says
 * why the last one failed. */
static void test_refresh_throttle_without_map(void **state)
{
    (void)state;
    lab_server srv;
    uint16_t p[1];
    assert_int_equal(lab_scripted_start(&srv, 1, p), 0);
    assert_int_equal(lab_scripted_rules(&srv, "* | CLUSTER SLOTS | 0 | -ERR This instance has cluster support disabled\\r\\n\n"), 0);
    /* Before anything could start a refresh (the server logs on the same
     * monotonic clock). */
    long long t_start = lab_now_ms();
    redtls_cluster *cl = new_cluster(p[0], 250, NULL, NULL);
    assert_cl_status(cl, redtls_cluster_set_refresh(cl, 0, 300), REDTLS_OK);
    const char *get[] = {"GET", "k"};
    long long t0 = lab_now_ms();
    unsigned calls = 0;
    while (lab_now_ms() - t0 < 1500) {
        redisReply *r = NULL;
        assert_cl_status(cl, redtls_cluster_command_argv(cl, 0, 2, get, NULL, &r), REDTLS_E_CLUSTER_TOPOLOGY);
        assert_contains(redtls_cluster_errmsg(cl), "cluster support disabled");
        calls++;
    }
    long long t[32];
    size_t n = lab_scripted_times(&srv, 0, "cmd CLUSTER SLOTS", t, 32);
    print_message("%u calls in 1.5 s asked for the slot map %zu times\n", calls, n);
    assert_true(n >= 2 && n <= 6);
    for (size_t i = 1; i < n; i++) {
        print_message("  +%lld ms\n", t[i] - t[0]);
        /* The server reads request i only after the client started
         * refresh i, which the library started at least i gaps after the
         * first (whole milliseconds of the same monotonic clock), and the
         * first one started after t_start. The server's own times say
         * less: the first request also waited for the connection and for
         * the server's child process that serves it, and any request can
         * be read late under load, so their differences can be short of
         * the gap without the library being wrong. */
        assert_true(t[i] >= t_start + (long long)i * 300);
    }
    /* An explicit refresh does not wait for the gap. */
    size_t before = n;
    assert_cl_status(cl, redtls_cluster_refresh(cl), REDTLS_E_CLUSTER_TOPOLOGY);
    assert_cl_status(cl, redtls_cluster_refresh(cl), REDTLS_E_CLUSTER_TOPOLOGY);
    assert_int_equal(lab_scripted_count(&srv, 0, "cmd CLUSTER SLOTS"), (int)before + 2);
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

/* Connections to addresses outside the map are closed after a refresh (a
 * seed that is not a node, redirection targets), and at most 16 such
 * addresses are kept between refreshes. */
static void test_addresses_outside_the_map(void **state)
{
    (void)state;
    enum { EXTRA = 40 };
    lab_server srv;
    uint16_t p[3 + EXTRA];
    assert_int_equal(lab_scripted_start(&srv, 3 + EXTRA, p), 0);
    uint16_t seed = p[0], a = p[1], b = p[2];
    char map[512];
    two_node_map(map, sizeof map, a, b);
    size_t cap = 65536;
    char *rules = malloc(cap);
    assert_non_null(rules);
    int len = snprintf(rules, cap, "* | CLUSTER SLOTS | 0 | %s\n", map);
    for (unsigned i = 0; i < EXTRA; i++)
        len += snprintf(rules + len, cap - (size_t)len, "%u | GET {b}%u | 0 | -ASK 3300 127.0.0.1:%u\\r\\n\n",
                        (unsigned)a, i, (unsigned)p[3 + i]);
    len += snprintf(rules + len, cap - (size_t)len, "* | ASKING | 0 | +OK\\r\\n\n* | GET | 0 | $1\\r\\nx\\r\\n\n");
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);

    redtls_cluster *cl = new_cluster(seed, 2000, NULL, NULL);
    assert_cl_status(cl, redtls_cluster_set_refresh(cl, 0, 0), REDTLS_OK);
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_OK);
    /* The seed is not a node of the map: its connection goes. */
    assert_int_equal(lab_scripted_open(&srv, seed, 0, 2000), 0);
    redisReply *r = NULL;
    int most_open = 0;
    for (unsigned i = 0; i < EXTRA; i++) {
        char key[16];
        snprintf(key, sizeof key, "{b}%u", i);
        const char *argv[] = {"GET", key};
        expect_str_reply(cl, redtls_cluster_command_argv(cl, 0, 2, argv, NULL, &r), &r, "x");
        /* Closes show in the log a moment after the client closes. */
        int open_now = 0;
        for (long long end = lab_now_ms() + 1000;;) {
            open_now = 0;
            for (unsigned k = 0; k < EXTRA; k++)
                open_now += lab_scripted_open(&srv, p[3 + k], -1, 0);
            if (open_now <= 16 || lab_now_ms() >= end)
                break;
        }
        if (open_now > most_open)
            most_open = open_now;
    }
    assert_int_equal(redtls_cluster_stat_get(cl, REDTLS_CLUSTER_STAT_ASK), EXTRA);
    for (unsigned k = 0; k < EXTRA; k++)
        assert_int_equal(lab_scripted_count(&srv, p[3 + k], "cmd GET"), 1);
    print_message("%d ASK targets: at most %d connections to them open at once\n", EXTRA, most_open);
    assert_true(most_open <= 16);
    /* A refresh closes the rest. */
    assert_cl_status(cl, redtls_cluster_refresh(cl), REDTLS_OK);
    int open_after = 0;
    for (unsigned k = 0; k < EXTRA; k++)
        open_after += lab_scripted_open(&srv, p[3 + k], 0, 2000);
    assert_int_equal(open_after, 0);
    /* A node that leaves the map loses its connection; the other keeps
     * its own. */
    const char *get_a[] = {"GET", "{a}1"};
    expect_str_reply(cl, redtls_cluster_command_argv(cl, 0, 2, get_a, NULL, &r), &r, "x");
    assert_int_equal(lab_scripted_open(&srv, b, 1, 2000), 1);
    snprintf(rules, cap,
             "* | CLUSTER SLOTS | 0 | *1\\r\\n*3\\r\\n:0\\r\\n:16383\\r\\n*3\\r\\n$9\\r\\n127.0.0.1\\r\\n:%u\\r\\n$1\\r\\na\\r\\n\n"
             "* | GET | 0 | $1\\r\\ny\\r\\n\n",
             (unsigned)a);
    assert_int_equal(lab_scripted_rules(&srv, rules), 0);
    assert_cl_status(cl, redtls_cluster_refresh(cl), REDTLS_OK);
    assert_int_equal(lab_scripted_open(&srv, b, 0, 2000), 0);
    assert_int_equal(lab_scripted_open(&srv, a, 1, 2000), 1);
    expect_str_reply(cl, redtls_cluster_command_argv(cl, 0, 2, get_a, NULL, &r), &r, "y");
    free(rules);
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

/* The tokens tried by connection attempts since the log had `from`
 * events: a bit per token, 1 tokA, 2 tokB, 4 tokC, 8 tokD. */
static unsigned tokens_tried_since(const lab_server *srv, int from)
{
    static const char *const names[] = {"cmd AUTH tokA", "cmd AUTH tokB", "cmd AUTH tokC", "cmd AUTH tokD"};
    char *text = lab_read_file(srv->events_path, NULL);
    assert_non_null(text);
    unsigned seen = 0;
    int line = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save), line++) {
        if (line < from)
            continue;
        for (unsigned k = 0; k < 4; k++)
            if (strstr(l, names[k]))
                seen |= 1u << k;
    }
    free(text);
    return seen;
}

static int event_lines(const lab_server *srv)
{
    return lab_scripted_count(srv, 0, "");
}

/* A fresh connection to the node while every AUTH is refused: which
 * tokens does the handle hold? */
static unsigned tokens_held(lab_server *srv, redtls_cluster *cl, const char *accepting_rules)
{
    char rules[1024];
    snprintf(rules, sizeof rules, "* | AUTH | 0 | -WRONGPASS invalid username-password pair\\r\\n\n%s",
             accepting_rules);
    assert_int_equal(lab_scripted_rules(srv, rules), 0);
    /* Switching replica reads remakes every node connection. */
    assert_cl_status(cl, redtls_cluster_set_read_from_replicas(cl, 1), REDTLS_OK);
    assert_cl_status(cl, redtls_cluster_set_read_from_replicas(cl, 0), REDTLS_OK);
    int from = event_lines(srv);
    redisReply *r = NULL;
    const char *get[] = {"GET", "{b}1"};
    assert_cl_status(cl, redtls_cluster_command_argv(cl, 0, 2, get, NULL, &r), REDTLS_E_AUTH);
    unsigned seen = tokens_tried_since(srv, from);
    assert_int_equal(lab_scripted_rules(srv, accepting_rules), 0);
    return seen;
}

/* redtls_cluster_set_tokens follows redtls_conn_set_tokens's rules, and an
 * allocation failure leaves the old pair whole. */
static void test_set_tokens(void **state)
{
    (void)state;
    lab_server srv;
    uint16_t p[1];
    assert_int_equal(lab_scripted_start(&srv, 1, p), 0);
    char accepting[1024];
    snprintf(accepting, sizeof accepting,
             "* | AUTH tokB | 0 | +OK\\r\\n\n* | AUTH tokD | 0 | +OK\\r\\n\n"
             "* | AUTH | 0 | -WRONGPASS invalid username-password pair\\r\\n\n"
             "* | CLUSTER SLOTS | 0 | *1\\r\\n*3\\r\\n:0\\r\\n:16383\\r\\n*3\\r\\n$9\\r\\n127.0.0.1\\r\\n:%u\\r\\n$1\\r\\na\\r\\n\n"
             "* | GET | 0 | $1\\r\\nx\\r\\n\n",
             (unsigned)p[0]);
    assert_int_equal(lab_scripted_rules(&srv, accepting), 0);
    redtls_cluster *cl = new_cluster(p[0], 2000, "tokA", "tokB");
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_OK);

    /* Empty tokens are refused, as by redtls_conn_set_tokens. */
    assert_int_equal(redtls_cluster_set_tokens(cl, "", NULL, 0), REDTLS_E_INVALID);
    assert_contains(redtls_cluster_errmsg(cl), "non-empty");
    assert_int_equal(redtls_cluster_set_tokens(cl, "tokC", "", 0), REDTLS_E_INVALID);
    assert_int_equal(redtls_cluster_set_tokens(cl, NULL, NULL, 0), REDTLS_E_INVALID);
    assert_int_equal(redtls_cluster_set_tokens(NULL, "tokC", NULL, 0), REDTLS_E_INVALID);
    assert_int_equal(tokens_held(&srv, cl, accepting), 1u | 2u);

    /* Each allocation of the update fails in turn: the old pair stays. */
    long n = 1;
    for (;; n++) {
        lab_alloc_arm(n);
        redtls_status st = redtls_cluster_set_tokens(cl, "tokC", "tokD", 0);
        lab_alloc_disarm();
        if (st == REDTLS_OK)
            break;
        assert_cl_status(cl, st, REDTLS_E_NOMEM);
        assert_int_equal(tokens_held(&srv, cl, accepting), 1u | 2u);
        assert_true(n < 100);
    }
    print_message("set_tokens: %ld allocation failures left the old pair in place\n", n - 1);
    if (LAB_ALLOC_HOOK)
        assert_true(n > 2);
    assert_int_equal(tokens_held(&srv, cl, accepting), 4u | 8u);
    /* And the new pair works (on a connection without the refusals'
     * backoff). */
    assert_cl_status(cl, redtls_cluster_set_read_from_replicas(cl, 1), REDTLS_OK);
    assert_cl_status(cl, redtls_cluster_set_read_from_replicas(cl, 0), REDTLS_OK);
    redisReply *r = NULL;
    const char *get[] = {"GET", "{b}1"};
    expect_str_reply(cl, redtls_cluster_command_argv(cl, 0, 2, get, NULL, &r), &r, "x");
    redtls_cluster_free(cl);
    lab_stop(&srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_endpoint),
        cmocka_unit_test(test_slow_node_costs_only_its_own),
        cmocka_unit_test(test_replies_in_the_socket_at_the_deadline),
        cmocka_unit_test(test_ask_then_moved_to_the_same_node),
        cmocka_unit_test(test_node_lost_mid_batch),
        cmocka_unit_test(test_refresh_throttle_without_map),
        cmocka_unit_test(test_addresses_outside_the_map),
        cmocka_unit_test(test_set_tokens),
    };
    return cmocka_run_group_tests_name("cluster_scripted", tests, group_setup, NULL);
}

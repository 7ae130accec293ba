/* The asynchronous cluster client (redtls/async_cluster.h) on its built-in
 * loop, against a real TLS Redis Cluster (3 masters + 3 replicas, AUTH,
 * nodes announcing nodeN.cluster.test reached through address overrides,
 * one certificate per node; tests/harness/lab_async_cluster_case.h):
 *   - the connect callback, commands issued before the slot map is in,
 *     every one of the 16,384 slots written and read back, node listing,
 *     callbacks with the handle freed under them;
 *   - tens of thousands of INCRs in flight at once, each callback exactly
 *     once, each key's replies in order, a refresh beside them, and
 *     backpressure;
 *   - multi-key commands split and merged, STRICT, the commands a cluster
 *     handle refuses at once, explicit nodes, replica reads;
 *   - the same first steps on libevent, when the adapter is there.
 * Redirections, stalled nodes and lost connections are in
 * test_async_cluster_faults.c; tokens and certificates in
 * test_async_cluster_auth.c.
 * Every test checks that each callback ran exactly once.
 * REDTLS_TEST_FILTER: a cmocka name pattern (e.g. "*multi*"). */
#include <poll.h>
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
#include <redtls/async_cluster.h>
#include <redtls/redtls.h>

#ifdef LAB_HAVE_ACL_LIBEVENT
#include <event2/event.h>
#include <redtls/async_libevent.h>
#endif

#include "lab.h"
#include "lab_assert.h"
#include "lab_async_cluster.h"
#include "lab_async_cluster_case.h"
#include "lab_cluster.h"
#include "lab_cluster_client.h"

/* ----- 1. connect, commands before the map, every slot --------------------- */

static void test_connect_and_every_slot(void **state)
{
    (void)state;
    T.acl = new_acl(&lc, TOKEN_OLD, NULL, 8000);
    redtls_async_cluster *acl = T.acl;
    new_tally(3 * LAB_CLUSTER_SLOTS + 64);
    assert_int_equal(redtls_async_cluster_is_ready(acl), 0);
    assert_int_equal(redtls_async_cluster_node_count(acl), 0);
    assert_acl_status(acl, redtls_async_cluster_connect(acl, lab_acl_on_connect, &T.conn), REDTLS_OK);
    /* One connect at a time. */
    assert_acl_status(acl, redtls_async_cluster_connect(acl, lab_acl_on_connect, &T.conn2), REDTLS_E_STATE);

    /* Every SET is issued before the loop has run once, so before any map
     * can be in: they wait for it. */
    long long t0 = lab_now_ms();
    for (unsigned s = 0; s < LAB_CLUSTER_SLOTS; s++) {
        char val[32];
        snprintf(val, sizeof val, "v-%u", s);
        const char *argv[] = {"SET", slot_key[s], val};
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 3, argv, NULL), REDTLS_OK);
    }
    assert_int_equal(redtls_async_cluster_is_ready(acl), 0);
    assert_int_equal(redtls_async_cluster_pending(acl), LAB_CLUSTER_SLOTS);
    run_all(acl);
    long long t1 = lab_now_ms();
    assert_int_equal(T.conn.calls, 1);
    assert_acl_status(acl, T.conn.st, REDTLS_OK);
    /* The map was in before any command could be sent, and the connect
     * callback says when it came in. */
    assert_int_equal(T.conn.seq, 1);
    assert_int_equal(T.conn2.calls, 0);
    for (unsigned s = 0; s < LAB_CLUSTER_SLOTS; s++)
        assert_cmd_str(s, "OK");
    assert_int_equal(redtls_async_cluster_is_ready(acl), 1);
    assert_int_equal(redtls_async_cluster_pending(acl), 0);
    /* The map is in: nothing to connect. */
    assert_acl_status(acl, redtls_async_cluster_connect(acl, lab_acl_on_connect, &T.conn2), REDTLS_E_STATE);

    assert_int_equal(redtls_async_cluster_node_count(acl), 6);
    size_t masters = 0;
    for (size_t i = 0; i < redtls_async_cluster_node_count(acl); i++) {
        assert_contains(redtls_async_cluster_node_name(acl, i), ".cluster.test:");
        masters += (size_t)redtls_async_cluster_node_is_master(acl, i);
    }
    assert_int_equal(masters, 3);

    /* Read back, and ask the master the map gives for each slot how many
     * keys it holds there: each SET went to the slot's owner. This test
     * runs first on a fresh cluster, so each slot holds exactly its key. */
    size_t base = T.t->issued;
    for (unsigned s = 0; s < LAB_CLUSTER_SLOTS; s++) {
        const char *get[] = {"GET", slot_key[s]};
        char slot[8];
        snprintf(slot, sizeof slot, "%u", s);
        const char *count[] = {"CLUSTER", "COUNTKEYSINSLOT", slot};
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 2, get, NULL), REDTLS_OK);
        assert_acl_status(acl, lab_acl_issue_slot(T.t, acl, s, 0, 3, count, NULL), REDTLS_OK);
    }
    run_all(acl);
    long long t2 = lab_now_ms();
    for (unsigned s = 0; s < LAB_CLUSTER_SLOTS; s++) {
        char val[32];
        snprintf(val, sizeof val, "v-%u", s);
        assert_cmd_str(base + 2 * s, val);
        assert_cmd_int(base + 2 * s + 1, 1);
    }
    /* The printf form. */
    lab_acl_cmd *c = lab_acl_tally_reserve(T.t);
    assert_non_null(c);
    assert_acl_status(acl, redtls_async_cluster_command(acl, lab_acl_on_reply, c, "GET %s", slot_key[4242]),
                      REDTLS_OK);
    run_all(acl);
    assert_cmd_str(c->id, "v-4242");
    char stats[512];
    lab_acl_stats_line(acl, stats, sizeof stats);
    print_message("16384 SETs issued before the map: done in %lld ms; 16384 GETs + 16384 COUNTKEYSINSLOT in %lld "
                  "ms; %s\n",
                  t1 - t0, t2 - t1, stats);
    /* With a correct map nothing is redirected. */
    assert_int_equal(redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_MOVED), 0);
    assert_int_equal(redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_ASK), 0);
    assert_true(redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_REFRESHES) >= 1);
    assert_tally("every slot");
}

/* Freed with a connect and commands owed: each callback once, with
 * REDTLS_E_CLOSED; also after the map is in, with replies owed. */
static void test_free_with_callbacks_owed(void **state)
{
    (void)state;
    new_tally(256);
    T.acl = new_acl(&lc, TOKEN_OLD, NULL, 8000);
    assert_acl_status(T.acl, redtls_async_cluster_connect(T.acl, lab_acl_on_connect, &T.conn), REDTLS_OK);
    for (int i = 0; i < 20; i++)
        issue_ok(T.acl, 0, i % 2 ? "GET free:a" : "PING", NULL);
    redtls_async_cluster_free(T.acl);
    T.acl = NULL;
    assert_int_equal(T.conn.calls, 1);
    assert_int_equal(T.conn.st, REDTLS_E_CLOSED);
    for (size_t i = 0; i < 20; i++)
        assert_cmd(i, REDTLS_E_CLOSED);

    /* Map in, connections open, commands written and not answered yet. */
    T.acl = new_acl(&lc, TOKEN_OLD, NULL, 8000);
    issue_ok(T.acl, 0, "PING", NULL);
    run_all(T.acl);
    assert_cmd_str(20, "PONG");
    size_t base = T.t->issued;
    for (unsigned s = 0; s < LAB_CLUSTER_SLOTS; s += 128) {
        const char *argv[] = {"GET", slot_key[s]};
        assert_acl_status(T.acl, lab_acl_issue_argv(T.t, T.acl, 0, 2, argv, NULL), REDTLS_OK);
    }
    /* A few milliseconds of loop: some written, none read yet, or some. */
    (void)redtls_async_cluster_run(T.acl, 2);
    redtls_async_cluster_free(T.acl);
    T.acl = NULL;
    size_t closed = 0;
    for (size_t i = base; i < T.t->issued; i++) {
        const lab_acl_cmd *c = cmd_of(i);
        assert_int_equal(c->calls, 1);
        if (c->st == REDTLS_E_CLOSED)
            closed++;
        else
            assert_int_equal(c->st, REDTLS_OK);
    }
    print_message("freed with %zu GETs owed: %zu ended with REDTLS_E_CLOSED\n", T.t->issued - base, closed);
    assert_tally("free with callbacks owed");
}

/* ----- 2. pipelining ------------------------------------------------------- */

#define INCR_KEYS 1000
#define INCR_N 30000

static void chain_after(lab_acl_tally *t, redtls_async_cluster *acl, lab_acl_cmd *c, const redisReply *reply)
{
    (void)reply;
    /* Each INCR of the chain issues the next from its callback. */
    if (c->tag == 7 && c->st == REDTLS_OK && c->integer < 200) {
        size_t id;
        const char *argv[] = {"INCR", "chain:key"};
        if (lab_acl_issue_argv(t, acl, 0, 2, argv, &id) == REDTLS_OK)
            t->cmd[id].tag = 7;
    }
}

static void test_pipeline_incr_accounting(void **state)
{
    (void)state;
    T.acl = new_acl(&lc, TOKEN_OLD, NULL, 15000);
    redtls_async_cluster *acl = T.acl;
    new_tally(INCR_N + 2 * INCR_KEYS + 1024);
    static char keys[INCR_KEYS][40];
    static long long count[INCR_KEYS];
    static long long seen[INCR_KEYS];
    memset(count, 0, sizeof count);
    memset(seen, 0, sizeof seen);
    for (size_t k = 0; k < INCR_KEYS; k++) {
        snprintf(keys[k], sizeof keys[k], "incr{%s}", slot_key[(k * 8191u) % LAB_CLUSTER_SLOTS]);
        const char *argv[] = {"DEL", keys[k]};
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 2, argv, NULL), REDTLS_OK);
    }
    run_all(acl);
    size_t base = T.t->issued;
    uint64_t x = lab_seed();
    long long t0 = lab_now_ms();
    for (size_t i = 0; i < INCR_N; i++) {
        size_t k = lab_prng(&x) % INCR_KEYS;
        size_t id;
        const char *argv[] = {"INCR", keys[k]};
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 2, argv, &id), REDTLS_OK);
        T.t->cmd[id].tag = (unsigned)k;
        count[k]++;
    }
    assert_int_equal(redtls_async_cluster_pending(acl), INCR_N);
    /* A refresh asked for in the middle of it runs beside the commands. */
    uint64_t refreshes0 = redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_REFRESHES);
    assert_acl_status(acl, redtls_async_cluster_refresh(acl), REDTLS_OK);
    run_all(acl);
    long long t1 = lab_now_ms();
    assert_int_equal(redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_REFRESHES), refreshes0 + 1);
    /* Per key, the replies count 1, 2, 3... in the order the INCRs were
     * issued. */
    size_t disorder = 0;
    for (size_t i = base; i < base + INCR_N; i++) {
        const lab_acl_cmd *c = cmd_of(i);
        assert_cmd(i, REDTLS_OK);
        assert_int_equal(c->type, REDIS_REPLY_INTEGER);
        if (c->integer != ++seen[c->tag] && disorder++ < 5)
            print_error("INCR %zu on %s: %lld, expected %lld\n", i, keys[c->tag], c->integer, seen[c->tag]);
    }
    assert_int_equal(disorder, 0);
    base = T.t->issued;
    for (size_t k = 0; k < INCR_KEYS; k++) {
        const char *argv[] = {"GET", keys[k]};
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 2, argv, NULL), REDTLS_OK);
    }
    run_all(acl);
    for (size_t k = 0; k < INCR_KEYS; k++) {
        const lab_acl_cmd *c = cmd_of(base + k);
        assert_cmd(base + k, REDTLS_OK);
        long long v = c->type == REDIS_REPLY_STRING ? atoll(c->str) : 0;
        if (v != count[k]) {
            print_error("%s: %lld, expected %lld\n", keys[k], v, count[k]);
            fail();
        }
    }
    print_message("%d INCRs over %d keys in flight at once: done in %lld ms, every key exact\n", INCR_N, INCR_KEYS,
                  t1 - t0);

    /* A chain: each callback issues the next command. */
    T.t->after = chain_after;
    issue_ok(acl, 0, "DEL chain:key", NULL);
    size_t first;
    issue_ok(acl, 0, "INCR chain:key", &first);
    T.t->cmd[first].tag = 7;
    run_all(acl);
    T.t->after = NULL;
    long long last = 0;
    for (size_t i = first; i < T.t->issued; i++) {
        assert_cmd_int(i, last + 1);
        last++;
    }
    assert_int_equal(last, 200);

    /* Backpressure: one more than the limit is refused at once. */
    assert_acl_status(acl, redtls_async_cluster_set_max_pending(acl, 100), REDTLS_OK);
    base = T.t->issued;
    for (int i = 0; i < 100; i++)
        issue_ok(acl, 0, i % 2 ? "PING" : "GET incr:none", NULL);
    const char *ping[] = {"PING"};
    assert_acl_status(acl, redtls_async_cluster_command_argv(acl, 0, 1, ping, NULL, never_cb, NULL), REDTLS_E_LIMIT);
    assert_int_equal(redtls_async_cluster_pending(acl), 100);
    run_all(acl);
    for (size_t i = base; i < base + 100; i++)
        assert_cmd(i, REDTLS_OK);
    assert_acl_status(acl, redtls_async_cluster_set_max_pending(acl, 0), REDTLS_OK);
    assert_int_equal(refused_called, 0);
    assert_tally("pipeline");
}

/* ----- 3. multi-key, refusals ------------------------------------------------ */

#define MK 200
static char mget_vals[MK + 1][32];
static int mget_types[MK + 1];
static size_t mget_n;

static void mget_after(lab_acl_tally *t, redtls_async_cluster *acl, lab_acl_cmd *c, const redisReply *reply)
{
    (void)t;
    (void)acl;
    if (c->tag != 9 || reply == NULL || reply->type != REDIS_REPLY_ARRAY)
        return;
    mget_n = reply->elements;
    for (size_t i = 0; i < reply->elements && i <= MK; i++) {
        mget_types[i] = reply->element[i]->type;
        snprintf(mget_vals[i], sizeof mget_vals[i], "%s", reply->element[i]->str ? reply->element[i]->str : "");
    }
}

static void test_multi_key(void **state)
{
    (void)state;
    T.acl = new_acl(&lc, TOKEN_OLD, NULL, 8000);
    redtls_async_cluster *acl = T.acl;
    new_tally(64);
    T.t->after = mget_after;
    static char keys[MK][24], vals[MK][24];
    const char *mset[1 + 2 * MK];
    mset[0] = "MSET";
    for (int i = 0; i < MK; i++) {
        snprintf(keys[i], sizeof keys[i], "mk:%d", i);
        snprintf(vals[i], sizeof vals[i], "val-%d", i * 3);
        mset[1 + 2 * i] = keys[i];
        mset[2 + 2 * i] = vals[i];
    }
    size_t id_mset, id_mget, id_strict, id_exists, id_tagged, id_unlink, id_exists0;
    assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 1 + 2 * MK, mset, &id_mset), REDTLS_OK);
    run_all(acl);
    assert_cmd_str(id_mset, "OK");
    uint64_t splits0 = redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_SPLITS);
    assert_true(splits0 >= 1);

    /* MGET in another order, with a missing key in the middle of them, in
     * one pass with the commands that follow. */
    const char *mget[2 + MK];
    mget[0] = "MGET";
    for (int i = 0; i < MK; i++)
        mget[1 + i] = keys[MK - 1 - i];
    mget[1 + MK] = "mk:missing";
    assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 2 + MK, mget, &id_mget), REDTLS_OK);
    T.t->cmd[id_mget].tag = 9;
    /* STRICT: sent unsplit, the server refuses keys of several slots. */
    assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, REDTLS_CLUSTER_STRICT, 3, mget, &id_strict), REDTLS_OK);
    const char *exists[] = {"EXISTS", keys[0], keys[1], keys[2], "mk:missing", keys[0]};
    assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 6, exists, &id_exists), REDTLS_OK);
    run_all(acl);
    assert_cmd(id_mget, REDTLS_OK);
    assert_int_equal(cmd_of(id_mget)->type, REDIS_REPLY_ARRAY);
    assert_int_equal(mget_n, MK + 1);
    for (int i = 0; i < MK; i++) {
        assert_int_equal(mget_types[i], REDIS_REPLY_STRING);
        assert_string_equal(mget_vals[i], vals[MK - 1 - i]);
    }
    assert_int_equal(mget_types[MK], REDIS_REPLY_NIL);
    assert_cmd(id_strict, REDTLS_OK);
    assert_int_equal(cmd_of(id_strict)->type, REDIS_REPLY_ERROR);
    assert_contains(cmd_of(id_strict)->str, "CROSSSLOT");
    assert_cmd_int(id_exists, 4);

    /* Hash tags keep keys together: not split. */
    uint64_t splits1 = redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_SPLITS);
    issue_ok(acl, 0, "MSET {t}a 1 {t}b 2", &id_tagged);
    run_all(acl);
    assert_cmd_str(id_tagged, "OK");
    assert_int_equal(redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_SPLITS), splits1);

    const char *unlink[1 + MK];
    unlink[0] = "UNLINK";
    for (int i = 0; i < MK; i++)
        unlink[1 + i] = keys[i];
    assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 1 + MK, unlink, &id_unlink), REDTLS_OK);
    assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 6, exists, &id_exists0), REDTLS_OK);
    run_all(acl);
    assert_cmd_int(id_unlink, MK);
    assert_cmd_int(id_exists0, 0);
    print_message("split commands: %llu\n",
                  (unsigned long long)(redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_SPLITS)));
    assert_true(redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_SPLITS) >= splits1 + 2);
    assert_tally("multi-key");
}

/* Commands that change a connection's state, and invalid targets, are
 * refused at once: the call returns REDTLS_E_INVALID, the callback is
 * never called, nothing is pending. */
static void test_refused_at_once(void **state)
{
    (void)state;
    T.acl = new_acl(&lc, TOKEN_OLD, NULL, 8000);
    redtls_async_cluster *acl = T.acl;
    new_tally(16);
    size_t id;
    issue_ok(acl, 0, "SET refuse:k x", &id);
    run_all(acl);
    assert_cmd_str(id, "OK");

    static const char *lines[][3] = {
        {"MULTI", NULL, NULL},     {"EXEC", NULL, NULL},    {"WATCH", "refuse:k", NULL},
        {"SUBSCRIBE", "ch", NULL}, {"psubscribe", "c*", NULL}, {"SELECT", "1", NULL},
        {"MONITOR", NULL, NULL},   {"AUTH", "x", NULL},     {"HELLO", "3", NULL},
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        int argc = lines[i][1] == NULL ? 1 : 2;
        const char **argv = lines[i];
        assert_acl_status(acl, redtls_async_cluster_command_argv(acl, 0, argc, argv, NULL, never_cb, NULL),
                          REDTLS_E_INVALID);
        if (i == 0)
            assert_contains(redtls_async_cluster_errmsg(acl), "MULTI");
        assert_acl_status(acl, redtls_async_cluster_command_slot(acl, 1, 0, argc, argv, NULL, never_cb, NULL),
                          REDTLS_E_INVALID);
        char node[128];
        snprintf(node, sizeof node, "%s", seed_of(&lc, 0));
        assert_acl_status(acl, redtls_async_cluster_command_node(acl, node, 0, argc, argv, NULL, never_cb, NULL),
                          REDTLS_E_INVALID);
    }
    assert_acl_status(acl, redtls_async_cluster_command(acl, never_cb, NULL, "SUBSCRIBE %s", "ch"),
                      REDTLS_E_INVALID);
    /* Bad targets and empty commands. */
    const char *get[] = {"GET", "refuse:k"};
    assert_acl_status(acl, redtls_async_cluster_command_slot(acl, 16384, 0, 2, get, NULL, never_cb, NULL),
                      REDTLS_E_INVALID);
    assert_acl_status(acl, redtls_async_cluster_command_node(acl, "nohost", 0, 2, get, NULL, never_cb, NULL),
                      REDTLS_E_INVALID);
    assert_acl_status(acl, redtls_async_cluster_command_argv(acl, 0, 0, get, NULL, never_cb, NULL),
                      REDTLS_E_INVALID);
    assert_int_equal(redtls_async_cluster_pending(acl), 0);
    assert_int_equal(redtls_async_cluster_set_max_redirects(acl, 0), REDTLS_E_INVALID);
    /* The handle still works, and the refused callbacks never come. */
    issue_ok(acl, 0, "GET refuse:k", &id);
    run_all(acl);
    assert_cmd_str(id, "x");
    assert_int_equal(refused_called, 0);

    /* Explicit node: a replica answers MOVED as it is, not followed. */
    unsigned slot = redtls_cluster_key_slot("refuse:k", 8);
    int m = lab_cluster_master_of(&lc, slot);
    assert_true(m >= 0);
    int rep = lab_cluster_replica_of(&lc, (size_t)m);
    assert_true(rep >= 0);
    char node[128];
    snprintf(node, sizeof node, "%s", seed_of(&lc, (size_t)rep));
    assert_acl_status(acl, lab_acl_issue_node(T.t, acl, node, 0, 2, get, &id), REDTLS_OK);
    run_all(acl);
    assert_cmd(id, REDTLS_OK);
    assert_int_equal(cmd_of(id)->type, REDIS_REPLY_ERROR);
    char moved[32];
    snprintf(moved, sizeof moved, "MOVED %u", slot);
    assert_contains(cmd_of(id)->str, moved);
    snprintf(node, sizeof node, "%s", seed_of(&lc, (size_t)m));
    assert_acl_status(acl, lab_acl_issue_node(T.t, acl, node, 0, 2, get, &id), REDTLS_OK);
    run_all(acl);
    assert_cmd_str(id, "x");

    /* A node nobody listens on: its connect status, before the deadline. */
    snprintf(node, sizeof node, "127.0.0.1:%u", (unsigned)lab_unused_port());
    assert_acl_status(acl, lab_acl_issue_node(T.t, acl, node, 0, 2, get, &id), REDTLS_OK);
    run_all(acl);
    assert_cmd(id, REDTLS_E_CONNECT);
    assert_true(cmd_of(id)->done_ms - cmd_of(id)->issued_ms < 4000);

    /* Backpressure counts commands, not the parts of a split one. */
    assert_acl_status(acl, redtls_async_cluster_set_max_pending(acl, 1), REDTLS_OK);
    issue_ok(acl, 0, "MGET refuse:k mk:a mk:b mk:c mk:d", &id);
    const char *ping[] = {"PING"};
    assert_acl_status(acl, redtls_async_cluster_command_argv(acl, 0, 1, ping, NULL, never_cb, NULL), REDTLS_E_LIMIT);
    run_all(acl);
    assert_cmd(id, REDTLS_OK);
    assert_int_equal(cmd_of(id)->elements, 5);
    assert_acl_status(acl, redtls_async_cluster_set_max_pending(acl, 0), REDTLS_OK);
    assert_int_equal(refused_called, 0);
    assert_tally("refused at once");
}

/* Read-only commands go to replicas (READONLY sent on their connections),
 * writes to masters; after WAIT the replicas serve what was written. */
static void test_replica_reads(void **state)
{
    (void)state;
    T.acl = new_acl(&lc, TOKEN_OLD, NULL, 8000);
    redtls_async_cluster *acl = T.acl;
    new_tally(128);
    assert_acl_status(acl, redtls_async_cluster_set_read_from_replicas(acl, 1), REDTLS_OK);
    long long hits0 = 0;
    for (size_t i = 0; i < lc.n; i++) {
        redisReply *r = NULL;
        if (lab_cluster_is_master(&lc, i) != 0)
            continue;
        assert_int_equal(lab_cluster_admin(&lc, i, &r, "INFO stats"), 0);
        hits0 += atoll(strstr(r->str, "keyspace_hits:") + strlen("keyspace_hits:"));
        freeReplyObject(r);
    }
    int reads = 0;
    for (unsigned s = 0; s < LAB_CLUSTER_SLOTS; s += 997) {
        size_t set, wait, get;
        const char *setv[] = {"SET", slot_key[s], "replicated"};
        const char *waitv[] = {"WAIT", "1", "2000"};
        const char *getv[] = {"GET", slot_key[s]};
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 3, setv, &set), REDTLS_OK);
        assert_acl_status(acl, lab_acl_issue_slot(T.t, acl, s, 0, 3, waitv, &wait), REDTLS_OK);
        run_all(acl);
        assert_cmd_str(set, "OK");
        assert_cmd_int(wait, 1);
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 2, getv, &get), REDTLS_OK);
        run_all(acl);
        assert_cmd_str(get, "replicated");
        reads++;
    }
    long long hits = 0;
    for (size_t i = 0; i < lc.n; i++) {
        redisReply *r = NULL;
        if (lab_cluster_is_master(&lc, i) != 0)
            continue;
        assert_int_equal(lab_cluster_admin(&lc, i, &r, "INFO stats"), 0);
        hits += atoll(strstr(r->str, "keyspace_hits:") + strlen("keyspace_hits:"));
        freeReplyObject(r);
    }
    uint64_t stat = redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_REPLICA_READS);
    print_message("replica reads: %d GETs, %llu sent to replicas, replicas' keyspace hits +%lld\n", reads,
                  (unsigned long long)stat, hits - hits0);
    assert_int_equal(stat, (uint64_t)reads);
    assert_int_equal(hits - hits0, reads);
    assert_tally("replica reads");
}

/* ----- 9. the libevent adapter ---------------------------------------------------- */

#ifdef LAB_HAVE_ACL_LIBEVENT
static struct event_base *ev_base;

/* Runs the event_base until no callback is owed (or ms pass). */
static int libevent_run_all(int ms)
{
    long long end = lab_now_ms() + ms;
    while (lab_acl_tally_owed(T.t) > 0) {
        if (lab_now_ms() >= end)
            return 0;
        if (event_base_loop(ev_base, EVLOOP_ONCE) == 1)
            poll(NULL, 0, 1); /* nothing registered: wait for the deadline */
    }
    return 1;
}

/* The first callback of a command tagged 5 frees the handle. */
static void free_from_callback(lab_acl_tally *t, redtls_async_cluster *acl, lab_acl_cmd *c, const redisReply *r)
{
    (void)t;
    (void)r;
    if (c->tag == 5 && T.acl == acl) {
        T.acl = NULL; /* the callbacks this free runs see it gone */
        redtls_async_cluster_free(acl);
    }
}
#endif

/* The handles first, as teardown frees them: they delete their events. */
static int libevent_teardown(void **state)
{
    int rc = teardown(state);
#ifdef LAB_HAVE_ACL_LIBEVENT
    if (ev_base != NULL)
        event_base_free(ev_base);
    ev_base = NULL;
#endif
    return rc;
}

/* Test 1's steps on a libevent event_base through
 * redtls_async_cluster_attach_libevent, and a free from a callback. */
static void test_libevent_connect_and_every_slot(void **state)
{
    (void)state;
#ifndef LAB_HAVE_ACL_LIBEVENT
    print_message("redtls_async_cluster_attach_libevent not in <redtls/async_libevent.h>: skipped\n");
    skip();
#else
    ev_base = event_base_new();
    assert_non_null(ev_base);
    T.acl = new_acl(&lc, TOKEN_OLD, NULL, 8000);
    new_tally(2 * LAB_CLUSTER_SLOTS + 128);
    assert_acl_status(T.acl, redtls_async_cluster_attach_libevent(T.acl, ev_base), REDTLS_OK);
    assert_acl_status(T.acl, redtls_async_cluster_connect(T.acl, lab_acl_on_connect, &T.conn), REDTLS_OK);
    long long t0 = lab_now_ms();
    for (unsigned s = 0; s < LAB_CLUSTER_SLOTS; s++) {
        char val[32];
        snprintf(val, sizeof val, "ev-%u", s);
        const char *argv[] = {"SET", slot_key[s], val};
        assert_acl_status(T.acl, lab_acl_issue_argv(T.t, T.acl, 0, 3, argv, NULL), REDTLS_OK);
    }
    assert_int_equal(redtls_async_cluster_is_ready(T.acl), 0);
    assert_int_equal(libevent_run_all(HANG_MS), 1);
    assert_int_equal(T.conn.calls, 1);
    assert_acl_status(T.acl, T.conn.st, REDTLS_OK);
    assert_int_equal(T.conn.seq, 1);
    for (unsigned s = 0; s < LAB_CLUSTER_SLOTS; s++)
        assert_cmd_str(s, "OK");
    size_t base = T.t->issued;
    for (unsigned s = 0; s < LAB_CLUSTER_SLOTS; s++) {
        const char *argv[] = {"GET", slot_key[s]};
        assert_acl_status(T.acl, lab_acl_issue_argv(T.t, T.acl, 0, 2, argv, NULL), REDTLS_OK);
    }
    assert_int_equal(libevent_run_all(HANG_MS), 1);
    long long t1 = lab_now_ms();
    for (unsigned s = 0; s < LAB_CLUSTER_SLOTS; s++) {
        char val[32];
        snprintf(val, sizeof val, "ev-%u", s);
        assert_cmd_str(base + s, val);
    }
    assert_int_equal(redtls_async_cluster_node_count(T.acl), 6);
    assert_int_equal(redtls_async_cluster_stat_get(T.acl, REDTLS_CLUSTER_STAT_MOVED), 0);
    print_message("libevent: 16384 SETs (issued before the map) and 16384 GETs in %lld ms\n", t1 - t0);

    /* A deadline only the handle's timer can end: a GET to a stopped
     * master. */
    static signed char owner[LAB_CLUSTER_SLOTS];
    load_owners(&lc, 0, owner);
    unsigned s0 = 0;
    while (owner[s0] != owner[0] || s0 == 0)
        s0++;
    redtls_config *cfg = lab_cluster_client_config(&lc, TOKEN_OLD, NULL, 600);
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, seed_of(&lc, 1), &T.acl2), REDTLS_OK);
    redtls_config_free(cfg);
    assert_acl_status(T.acl2, redtls_async_cluster_attach_libevent(T.acl2, ev_base), REDTLS_OK);
    size_t warm, late;
    const char *get0[] = {"GET", slot_key[s0]};
    assert_acl_status(T.acl2, lab_acl_issue_argv(T.t, T.acl2, 0, 2, get0, &warm), REDTLS_OK);
    assert_int_equal(libevent_run_all(HANG_MS), 1);
    char want[32];
    snprintf(want, sizeof want, "ev-%u", s0);
    assert_cmd_str(warm, want);
    T.stopped = lc.node[owner[0]].srv.pid;
    assert_int_equal(lab_signal(T.stopped, SIGSTOP), 0);
    assert_acl_status(T.acl2, lab_acl_issue_argv(T.t, T.acl2, 0, 2, get0, &late), REDTLS_OK);
    assert_int_equal(libevent_run_all(HANG_MS), 1);
    assert_int_equal(lab_signal(T.stopped, SIGCONT), 0);
    T.stopped = 0;
    assert_cmd(late, REDTLS_E_COMMAND_TIMEOUT);
    long long dt = cmd_of(late)->done_ms - cmd_of(late)->issued_ms;
    assert_true(dt >= 580 && dt < 1100);
    redtls_async_cluster_free(T.acl2);
    T.acl2 = NULL;

    /* Freed from a callback: every other callback once, with its reply or
     * REDTLS_E_CLOSED; then the base has nothing left to run. */
    T.t->after = free_from_callback;
    base = T.t->issued;
    for (unsigned s = 0; s < LAB_CLUSTER_SLOTS; s += 256) {
        const char *argv[] = {"GET", slot_key[s]};
        size_t id;
        assert_acl_status(T.acl, lab_acl_issue_argv(T.t, T.acl, 0, 2, argv, &id), REDTLS_OK);
        T.t->cmd[id].tag = 5;
    }
    assert_int_equal(libevent_run_all(HANG_MS), 1);
    assert_null(T.acl);
    size_t closed = 0, answered = 0;
    for (size_t i = base; i < T.t->issued; i++) {
        const lab_acl_cmd *c = cmd_of(i);
        assert_int_equal(c->calls, 1);
        if (c->st == REDTLS_E_CLOSED) {
            closed++;
        } else {
            assert_cmd(i, REDTLS_OK);
            assert_int_equal(c->type, REDIS_REPLY_STRING);
            assert_int_equal(strncmp(c->str, "ev-", 3), 0);
            answered++;
        }
    }
    print_message("libevent: freed from a callback with %zu GETs issued: %zu ended with REDTLS_E_CLOSED\n",
                  T.t->issued - base, closed);
    /* The first callback freed the handle: the others were still owed. */
    assert_int_equal(answered, 1);
    assert_int_equal(closed, T.t->issued - base - 1);
    assert_int_equal(event_base_loop(ev_base, EVLOOP_NONBLOCK), 1);
    assert_tally("libevent");
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connect_and_every_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_callbacks_owed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_incr_accounting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multi_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replica_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_libevent_connect_and_every_slot, setup, libevent_teardown),
    };
    return run_group("integration.async_cluster", tests, sizeof tests / sizeof tests[0]);
}

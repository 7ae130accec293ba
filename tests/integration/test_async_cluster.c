/* The asynchronous cluster client (redtls/async_cluster.h) on its built-in
 * loop, against a real TLS Redis Cluster (3 masters + 3 replicas, AUTH,
 * nodes announcing nodeN.cluster.test reached through address overrides,
 * one certificate per node) and against fake and scripted nodes:
 *   - the connect callback, commands issued before the slot map is in,
 *     every one of the 16,384 slots written and read back, node listing,
 *     callbacks with the handle freed under them;
 *   - tens of thousands of INCRs in flight at once, each callback exactly
 *     once, each key's replies in order, a refresh beside them, and
 *     backpressure;
 *   - multi-key commands split and merged, STRICT, the commands a cluster
 *     handle refuses at once, explicit nodes, replica reads;
 *   - MOVED loops, TRYAGAIN (endless, and clearing), LOADING, CLUSTERDOWN,
 *     ASK (to the same node and to another), a deadline across a
 *     redirection;
 *   - a node whose commands stall (SIGSTOP) while the others' flow, and
 *     writes lost with their connection (at-most-once);
 *   - token rotation over every node with commands flowing, and a live
 *     update the servers refuse;
 *   - seeds that cannot be reached, a node presenting another node's
 *     certificate, a wildcard certificate with IP endpoints, and IP
 *     endpoints verified by announced names;
 *   - the same first steps on libevent, when the adapter is there.
 * Every test checks that each callback ran exactly once.
 * REDTLS_TEST_FILTER: a cmocka name pattern (e.g. "*fake*"). */
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
#include "lab_cluster.h"
#include "lab_cluster_client.h"
#include "lab_fakenode.h"
#include "lab_proxy.h"
#include "lab_scripted.h"

#define TOKEN_OLD "acluster-Token-old-93d1e0"
#define TOKEN_NEW "acluster-Token-new-4b7c25"
/* Long enough that a node stopped for a second is never marked failing
 * (a failover in the middle of the slow-node test would change its
 * meaning). */
#define NODE_TIMEOUT_MS 5000
/* No scenario may take longer than this to end (a hang, not a timing). */
#define HANG_MS 30000

#define assert_acl_status(acl, call, want)                                                                    \
    do {                                                                                                      \
        int lab_got_ = (int)(call);                                                                           \
        lab_report_status(lab_got_, (int)(want), #call, redtls_async_cluster_errmsg(acl), __FILE__, __LINE__); \
        assert_int_equal(lab_got_, (int)(want));                                                              \
    } while (0)

static lab_cluster lc;
/* One key per slot: slot_key[s] hashes to s. */
static char slot_key[LAB_CLUSTER_SLOTS][16];

/* Per test; torn down even when an assertion fails. Freeing a handle
 * calls the callbacks it still owes, so the tally and the connect records
 * live here, and handles are freed before them. */
static struct {
    redtls_async_cluster *acl;
    redtls_async_cluster *acl2;
    lab_acl_tally *t;
    lab_acl_conn conn;
    lab_acl_conn conn2;
    lab_server srv;          /* a fake or scripted node */
    lab_cluster extra;       /* a cluster of the test's own */
    pid_t stopped;           /* a node under SIGSTOP */
    lab_acl_flow flow;
    int restore_password;    /* the rotation changed the nodes' password */
#ifdef LAB_HAVE_ACL_LIBEVENT
    struct event_base *base;
#endif
} T;

/* Callbacks of commands that were refused at once: must stay 0. */
static int refused_called;

static void find_slot_keys(void)
{
    size_t found = 0;
    static unsigned char have[LAB_CLUSTER_SLOTS];
    for (unsigned i = 0; found < LAB_CLUSTER_SLOTS; i++) {
        char k[16];
        int n = snprintf(k, sizeof k, "k%u", i);
        unsigned s = redtls_cluster_key_slot(k, (size_t)n);
        if (!have[s]) {
            have[s] = 1;
            memcpy(slot_key[s], k, (size_t)n + 1);
            found++;
        }
    }
}

static int group_setup(void **state)
{
    (void)state;
    if (lab_init(85) != 0 || lab_certs(NULL) == NULL)
        return -1;
    find_slot_keys();
    lab_cluster_opts o = lab_cluster_default_opts();
    o.password = TOKEN_OLD;
    o.node_timeout_ms = NODE_TIMEOUT_MS;
    if (lab_cluster_start(&lc, &o) != 0)
        return -1;
    print_message("cluster of %zu TLS nodes up in %lld ms\n", lc.n, lc.start_ms);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    lab_cluster_stop(&lc);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    memset(&T, 0, sizeof T);
    T.srv.listen_fd = -1;
    refused_called = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (T.stopped > 0)
        lab_signal(T.stopped, SIGCONT);
    redtls_async_cluster_free(T.acl);
    redtls_async_cluster_free(T.acl2);
#ifdef LAB_HAVE_ACL_LIBEVENT
    /* After the handles: they delete their events. */
    if (T.base != NULL)
        event_base_free(T.base);
#endif
    lab_acl_flow_free(&T.flow);
    lab_acl_tally_free(T.t);
    lab_stop(&T.srv);
    lab_cluster_stop(&T.extra);
    if (T.restore_password &&
        lab_cluster_admin_all(&lc, "ACL SETUSER default resetpass >%s", TOKEN_OLD) != 0)
        return -1;
    memset(&T, 0, sizeof T);
    return 0;
}

static char seed_buf[256];
static const char *seed_of(const lab_cluster *c, size_t i)
{
    snprintf(seed_buf, sizeof seed_buf, "%s:%u", c->node[i].hostname, (unsigned)c->node[i].srv.port);
    return seed_buf;
}

/* A handle on cluster c (tokens may be NULL), seeded with node 0. */
static redtls_async_cluster *new_acl(const lab_cluster *c, const char *token, const char *alt, unsigned timeout_ms)
{
    redtls_config *cfg = lab_cluster_client_config(c, token, alt, timeout_ms);
    redtls_async_cluster *acl = NULL;
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, seed_of(c, 0), &acl), REDTLS_OK);
    redtls_config_free(cfg);
    assert_non_null(acl);
    return acl;
}

static void new_tally(size_t cap)
{
    T.t = lab_acl_tally_new(cap);
    assert_non_null(T.t);
    T.conn.tally = T.t;
    T.conn2.tally = T.t;
}

static void run_all(redtls_async_cluster *acl)
{
    if (!lab_acl_run_all(acl, T.t, HANG_MS)) {
        print_error("%zu callbacks still owed after %d ms; pending %zu\n", lab_acl_tally_owed(T.t), HANG_MS,
                    redtls_async_cluster_pending(acl));
        fail();
    }
}

static void issue_ok(redtls_async_cluster *acl, unsigned flags, const char *line, size_t *id)
{
    assert_acl_status(acl, lab_acl_issue(T.t, acl, flags, line, id), REDTLS_OK);
}

static const lab_acl_cmd *cmd_of(size_t id)
{
    assert_true(id < T.t->issued);
    return &T.t->cmd[id];
}

/* Command id ended with status want. */
static void assert_cmd(size_t id, redtls_status want)
{
    const lab_acl_cmd *c = cmd_of(id);
    if (c->calls != 1 || c->st != want) {
        print_error("command %zu: %d calls, status %s (%s), expected %s\n", id, c->calls, redtls_strerror(c->st),
                    c->msg, redtls_strerror(want));
        fail();
    }
}

/* Command id answered with a string or status reply equal to want. */
static void assert_cmd_str(size_t id, const char *want)
{
    const lab_acl_cmd *c = cmd_of(id);
    assert_cmd(id, REDTLS_OK);
    if ((c->type != REDIS_REPLY_STRING && c->type != REDIS_REPLY_STATUS) || strcmp(c->str, want) != 0) {
        print_error("command %zu: reply type %d \"%s\", expected \"%s\"\n", id, c->type, c->str, want);
        fail();
    }
}

static void assert_cmd_int(size_t id, long long want)
{
    const lab_acl_cmd *c = cmd_of(id);
    assert_cmd(id, REDTLS_OK);
    if (c->type != REDIS_REPLY_INTEGER || c->integer != want) {
        print_error("command %zu: reply type %d %lld \"%s\", expected %lld\n", id, c->type, c->integer, c->str,
                    want);
        fail();
    }
}

static void assert_tally(const char *what)
{
    assert_int_equal(lab_acl_tally_check(T.t, what), 0);
    assert_int_equal(lab_acl_tally_owed(T.t), 0);
}

static void never_cb(redtls_async_cluster *acl, redtls_status st, struct redisReply *r, void *ud)
{
    (void)acl;
    (void)st;
    (void)ud;
    refused_called++;
    redtls_reply_free(r);
}

/* Which node serves each slot, from node from's CLUSTER SLOTS. */
static void load_owners(lab_cluster *c, size_t from, signed char *owner)
{
    redisReply *r = NULL;
    memset(owner, -1, LAB_CLUSTER_SLOTS);
    assert_int_equal(lab_cluster_admin(c, from, &r, "CLUSTER SLOTS"), 0);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    for (size_t k = 0; k < r->elements; k++) {
        const redisReply *e = r->element[k];
        int idx = lab_cluster_index_of(c, e->element[2]->element[2]->str);
        assert_true(idx >= 0);
        for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++)
            owner[s] = (signed char)idx;
    }
    freeReplyObject(r);
}

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

/* ----- 4. fake nodes ----------------------------------------------------------- */

/* A plain-TCP handle seeded with 127.0.0.1:port; backoff_cap_ms 0: the
 * default backoff, else 50 ms up to that. */
static redtls_async_cluster *plain_acl(uint16_t port, unsigned timeout_ms, unsigned backoff_cap_ms)
{
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_tls(cfg, 0), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_host(cfg, "127.0.0.1", port), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, timeout_ms), REDTLS_OK);
    if (backoff_cap_ms != 0)
        assert_cfg_status(cfg, redtls_config_set_backoff(cfg, 50, backoff_cap_ms), REDTLS_OK);
    redtls_async_cluster *acl = NULL;
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, NULL, &acl), REDTLS_OK);
    redtls_config_free(cfg);
    return acl;
}

static void test_fake_moved_loop(void **state)
{
    (void)state;
    assert_int_equal(lab_fakenode_start(&T.srv, LAB_FAKE_MOVED_LOOP), 0);
    T.acl = plain_acl(T.srv.port, 2000, 0);
    new_tally(16);
    size_t get, ping;
    issue_ok(T.acl, 0, "GET k", &get);
    issue_ok(T.acl, 0, "PING", &ping);
    run_all(T.acl);
    /* More than 5 redirections: the command ends; the other is not
     * affected. */
    assert_cmd(get, REDTLS_E_CLUSTER_REDIRECTS);
    assert_contains(cmd_of(get)->msg, "MOVED 1234");
    assert_cmd_str(ping, "PONG");
    assert_int_equal(redtls_async_cluster_stat_get(T.acl, REDTLS_CLUSTER_STAT_MOVED), 6);
    assert_acl_status(T.acl, redtls_async_cluster_set_max_redirects(T.acl, 2), REDTLS_OK);
    issue_ok(T.acl, 0, "GET k", &get);
    run_all(T.acl);
    assert_cmd(get, REDTLS_E_CLUSTER_REDIRECTS);
    assert_int_equal(redtls_async_cluster_stat_get(T.acl, REDTLS_CLUSTER_STAT_MOVED), 9);
    assert_tally("MOVED loop");
}

static void test_fake_tryagain_until_deadline(void **state)
{
    (void)state;
    assert_int_equal(lab_fakenode_start(&T.srv, LAB_FAKE_TRYAGAIN), 0);
    T.acl = plain_acl(T.srv.port, 700, 0);
    new_tally(16);
    size_t id, ping;
    issue_ok(T.acl, 0, "MGET {t}a {t}b", &id);
    issue_ok(T.acl, 0, "PING", &ping);
    run_all(T.acl);
    const lab_acl_cmd *c = cmd_of(id);
    long long dt = c->done_ms - c->issued_ms;
    uint64_t tries = redtls_async_cluster_stat_get(T.acl, REDTLS_CLUSTER_STAT_TRYAGAIN);
    print_message("endless TRYAGAIN: %s after %lld ms, %llu answers retried (command timeout 700 ms)\n",
                  c->st == REDTLS_OK ? c->str : redtls_strerror(c->st), dt, (unsigned long long)tries);
    /* Retried with backoff up to the deadline; then either the server's
     * last answer or the deadline's status (the header allows both
     * readings), never anything else, never before the deadline. */
    assert_int_equal(c->calls, 1);
    if (c->st == REDTLS_OK) {
        assert_int_equal(c->type, REDIS_REPLY_ERROR);
        assert_contains(c->str, "TRYAGAIN");
    } else {
        assert_int_equal(c->st, REDTLS_E_COMMAND_TIMEOUT);
    }
    assert_true(dt >= 650 && dt < 1500);
    /* The backoff's first delay is 100..300 ms, each next up to 3x: 2 to 8
     * answers fit in 700 ms. */
    assert_true(tries >= 2 && tries <= 8);
    assert_cmd_str(ping, "PONG");
    assert_tally("endless TRYAGAIN");
}

/* TRYAGAIN while the test says so, then the value: retried with backoff,
 * the callback comes once, with the value. Also: the built-in loop
 * returns REDTLS_E_COMMAND_TIMEOUT when its own time runs out first. */
static void test_scripted_tryagain_then_value(void **state)
{
    (void)state;
    uint16_t p[1];
    assert_int_equal(lab_scripted_start(&T.srv, 1, p), 0);
    char rules[1024];
    int n = snprintf(rules, sizeof rules,
                     "* | CLUSTER SLOTS | 0 | *1\\r\\n*3\\r\\n:0\\r\\n:16383\\r\\n*3\\r\\n$9\\r\\n127.0.0.1\\r\\n:%u"
                     "\\r\\n$1\\r\\na\\r\\n\n",
                     (unsigned)p[0]);
    snprintf(rules + n, sizeof rules - (size_t)n, "* | GET {t}k | 0 | -TRYAGAIN Multiple keys request during "
                                                   "rehashing of slot\\r\\n\n");
    assert_int_equal(lab_scripted_rules(&T.srv, rules), 0);
    /* Retries at most 200 ms apart, so the value comes soon after the
     * rules change. */
    T.acl = plain_acl(p[0], 5000, 200);
    new_tally(16);
    size_t id;
    issue_ok(T.acl, 0, "GET {t}k", &id);
    long long t0 = lab_now_ms();
    assert_acl_status(T.acl, redtls_async_cluster_run(T.acl, 700), REDTLS_E_COMMAND_TIMEOUT);
    long long dt = lab_now_ms() - t0;
    assert_true(dt >= 690 && dt < 1200);
    assert_int_equal(cmd_of(id)->calls, 0);
    assert_int_equal(redtls_async_cluster_pending(T.acl), 1);
    /* 50..200 ms apart: at least 3 sends in 700 ms. */
    int asked = lab_scripted_count(&T.srv, 0, "cmd GET {t}k");
    assert_true(asked >= 3);
    snprintf(rules + n, sizeof rules - (size_t)n, "* | GET {t}k | 0 | $5\\r\\nvalue\\r\\n\n");
    assert_int_equal(lab_scripted_rules(&T.srv, rules), 0);
    run_all(T.acl);
    assert_cmd_str(id, "value");
    uint64_t tries = redtls_async_cluster_stat_get(T.acl, REDTLS_CLUSTER_STAT_TRYAGAIN);
    int sent = lab_scripted_count(&T.srv, 0, "cmd GET {t}k");
    print_message("TRYAGAIN then a value: %d sends, %llu TRYAGAIN retried, done after %lld ms\n", sent,
                  (unsigned long long)tries, cmd_of(id)->done_ms - cmd_of(id)->issued_ms);
    /* Every send but the last was answered TRYAGAIN and retried. */
    assert_int_equal(tries, (uint64_t)(sent - 1));

    /* LOADING: the same, through a refresh and a delay. */
    snprintf(rules + n, sizeof rules - (size_t)n, "* | GET {t}l | 0 | -LOADING Redis is loading the dataset in "
                                                   "memory\\r\\n\n");
    assert_int_equal(lab_scripted_rules(&T.srv, rules), 0);
    issue_ok(T.acl, 0, "GET {t}l", &id);
    assert_acl_status(T.acl, redtls_async_cluster_run(T.acl, 700), REDTLS_E_COMMAND_TIMEOUT);
    assert_int_equal(cmd_of(id)->calls, 0);
    asked = lab_scripted_count(&T.srv, 0, "cmd GET {t}l");
    assert_true(asked >= 2);
    snprintf(rules + n, sizeof rules - (size_t)n, "* | GET {t}l | 0 | $6\\r\\nloaded\\r\\n\n");
    assert_int_equal(lab_scripted_rules(&T.srv, rules), 0);
    run_all(T.acl);
    assert_cmd_str(id, "loaded");
    print_message("LOADING then a value: %d sends, done after %lld ms\n", lab_scripted_count(&T.srv, 0, "cmd GET {t}l"),
                  cmd_of(id)->done_ms - cmd_of(id)->issued_ms);
    assert_tally("TRYAGAIN then a value");
}

/* The map of a scripted server: port a serves every slot. */
static int scripted_map(char *out, size_t cap, uint16_t a)
{
    return snprintf(out, cap,
                    "* | CLUSTER SLOTS | 0 | *1\\r\\n*3\\r\\n:0\\r\\n:16383\\r\\n*3\\r\\n$9\\r\\n127.0.0.1\\r\\n:%u"
                    "\\r\\n$1\\r\\na\\r\\n\n",
                    (unsigned)a);
}

/* A deadline counts from the issue, across a redirection: node A answers
 * MOVED after 300 ms, node B would answer after 1 s; with a 500 ms
 * command timeout the command ends 500 ms after it was issued. */
static void test_scripted_deadline_across_redirect(void **state)
{
    (void)state;
    uint16_t p[2];
    assert_int_equal(lab_scripted_start(&T.srv, 2, p), 0);
    char rules[2048];
    int n = scripted_map(rules, sizeof rules, p[0]);
    unsigned slot = redtls_cluster_key_slot("t", 1);
    snprintf(rules + n, sizeof rules - (size_t)n,
             "%u | GET {t}d | 300 | -MOVED %u 127.0.0.1:%u\\r\\n\n"
             "%u | GET {t}d | 1000 | $4\\r\\nlate\\r\\n\n"
             "* | PING | 0 | +PONG\\r\\n\n",
             (unsigned)p[0], slot, (unsigned)p[1], (unsigned)p[1]);
    assert_int_equal(lab_scripted_rules(&T.srv, rules), 0);
    T.acl = plain_acl(p[0], 500, 0);
    new_tally(16);
    size_t id, ping;
    issue_ok(T.acl, 0, "GET {t}d", &id);
    run_all(T.acl);
    const lab_acl_cmd *c = cmd_of(id);
    long long dt = c->done_ms - c->issued_ms;
    print_message("MOVED after 300 ms to a node answering after 1 s: %s after %lld ms (timeout 500 ms)\n",
                  redtls_strerror(c->st), dt);
    assert_cmd(id, REDTLS_E_COMMAND_TIMEOUT);
    assert_true(dt >= 480 && dt < 700);
    assert_int_equal(lab_scripted_count(&T.srv, p[1], "cmd GET {t}d"), 1);
    assert_int_equal(redtls_async_cluster_stat_get(T.acl, REDTLS_CLUSTER_STAT_MOVED), 1);
    /* B's late answer is dropped, not handed to the next command. */
    lab_sleep_ms(700);
    issue_ok(T.acl, 0, "PING", &ping);
    run_all(T.acl);
    assert_cmd_str(ping, "PONG");
    assert_tally("deadline across a redirection");
}

/* ASK to another node: ASKING goes out on that node's connection right
 * before the command, and the map stays: the next command is asked again. */
static void test_scripted_ask_other_node(void **state)
{
    (void)state;
    uint16_t p[2];
    assert_int_equal(lab_scripted_start(&T.srv, 2, p), 0);
    char rules[2048];
    int n = scripted_map(rules, sizeof rules, p[0]);
    unsigned slot = redtls_cluster_key_slot("t", 1);
    snprintf(rules + n, sizeof rules - (size_t)n,
             "%u | GET {t}a | 0 | -ASK %u 127.0.0.1:%u\\r\\n\n"
             "%u | ASKING | 0 | +OK\\r\\n\n"
             "%u | GET {t}a | 0 | $5\\r\\nfromB\\r\\n\n",
             (unsigned)p[0], slot, (unsigned)p[1], (unsigned)p[1], (unsigned)p[1]);
    assert_int_equal(lab_scripted_rules(&T.srv, rules), 0);
    T.acl = plain_acl(p[0], 2000, 0);
    new_tally(16);
    size_t id[3];
    for (int i = 0; i < 2; i++) {
        issue_ok(T.acl, 0, "GET {t}a", &id[i]);
        run_all(T.acl);
        assert_cmd_str(id[i], "fromB");
    }
    /* And two at once. */
    issue_ok(T.acl, 0, "GET {t}a", &id[2]);
    size_t id4;
    issue_ok(T.acl, 0, "GET {t}a", &id4);
    run_all(T.acl);
    assert_cmd_str(id[2], "fromB");
    assert_cmd_str(id4, "fromB");
    assert_int_equal(redtls_async_cluster_stat_get(T.acl, REDTLS_CLUSTER_STAT_ASK), 4);
    assert_int_equal(redtls_async_cluster_stat_get(T.acl, REDTLS_CLUSTER_STAT_MOVED), 0);
    assert_int_equal(lab_scripted_count(&T.srv, p[0], "cmd GET {t}a"), 4);
    assert_int_equal(lab_scripted_count(&T.srv, p[1], "cmd GET {t}a"), 4);
    /* On B, each GET follows an ASKING on its own connection. */
    char *log = lab_read_file(T.srv.events_path, NULL);
    assert_non_null(log);
    char last[64][32];
    memset(last, 0, sizeof last);
    int gets = 0, asked_first = 0;
    for (char *line = strtok(log, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        long long ms;
        unsigned port;
        int conn, used = 0;
        if (sscanf(line, "%lld %u %d %n", &ms, &port, &conn, &used) < 3 || port != p[1] || conn < 0 || conn >= 64)
            continue;
        const char *ev = line + used;
        if (strncmp(ev, "cmd GET", 7) == 0) {
            gets++;
            asked_first += strncmp(last[conn], "cmd ASKING", 10) == 0;
        }
        snprintf(last[conn], sizeof last[conn], "%s", ev);
    }
    free(log);
    assert_int_equal(gets, 4);
    assert_int_equal(asked_first, 4);
    assert_tally("ASK to another node");
}

static void test_fake_clusterdown_clears(void **state)
{
    (void)state;
    assert_int_equal(lab_fakenode_start(&T.srv, LAB_FAKE_CLUSTERDOWN_3), 0);
    T.acl = plain_acl(T.srv.port, 5000, 0);
    new_tally(16);
    size_t id;
    issue_ok(T.acl, 0, "SET k v", &id);
    run_all(T.acl);
    assert_cmd_str(id, "OK");
    assert_int_equal(redtls_async_cluster_stat_get(T.acl, REDTLS_CLUSTER_STAT_TRYAGAIN), 3);
    assert_tally("CLUSTERDOWN clears");
}

/* The fake node answers +OK only when ASKING came right before. */
static void test_fake_ask_sends_asking(void **state)
{
    (void)state;
    assert_int_equal(lab_fakenode_start(&T.srv, LAB_FAKE_ASK_SELF), 0);
    T.acl = plain_acl(T.srv.port, 2000, 0);
    new_tally(16);
    size_t id;
    issue_ok(T.acl, 0, "GET k", &id);
    run_all(T.acl);
    assert_cmd_str(id, "OK");
    assert_int_equal(redtls_async_cluster_stat_get(T.acl, REDTLS_CLUSTER_STAT_ASK), 1);
    assert_int_equal(redtls_async_cluster_stat_get(T.acl, REDTLS_CLUSTER_STAT_MOVED), 0);
    /* ASK does not change the map: each command is asked again, also when
     * several are in flight together. */
    size_t ids[5];
    for (int i = 0; i < 5; i++)
        issue_ok(T.acl, 0, "GET k", &ids[i]);
    run_all(T.acl);
    for (int i = 0; i < 5; i++)
        assert_cmd_str(ids[i], "OK");
    assert_int_equal(redtls_async_cluster_stat_get(T.acl, REDTLS_CLUSTER_STAT_ASK), 6);
    assert_tally("ASK");
}

/* ----- 7. a slow node ------------------------------------------------------------ */

#define SLOW_TIMEOUT_MS 1000

/* One master stopped (SIGSTOP) with connections to every node open:
 * commands to the other masters, issued after the stopped node's, come
 * back at once; the stopped node's end with REDTLS_E_COMMAND_TIMEOUT at
 * their deadline. Once it runs again its keys read right (a late reply is
 * never handed to another command). */
static void test_slow_node(void **state)
{
    (void)state;
    static signed char owner[LAB_CLUSTER_SLOTS];
    load_owners(&lc, 0, owner);
    int slow = owner[0];
    assert_true(slow >= 0);
    /* 60 keys on the slow master, 600 on the others. */
    enum { NSLOW = 60, NFAST = 600 };
    static unsigned slow_slots[NSLOW], fast_slots[NFAST];
    size_t ns = 0, nf = 0;
    for (unsigned s = 0; s < LAB_CLUSTER_SLOTS && (ns < NSLOW || nf < NFAST); s += 7) {
        if (owner[s] == slow && ns < NSLOW)
            slow_slots[ns++] = s;
        else if (owner[s] != slow && owner[s] >= 0 && nf < NFAST)
            fast_slots[nf++] = s;
    }
    assert_int_equal(ns, NSLOW);
    assert_int_equal(nf, NFAST);

    T.acl = new_acl(&lc, TOKEN_OLD, NULL, SLOW_TIMEOUT_MS);
    redtls_async_cluster *acl = T.acl;
    new_tally(4 * (NSLOW + NFAST) + 16);
    /* Values, and connections to every master. */
    for (size_t i = 0; i < NSLOW + NFAST; i++) {
        unsigned s = i < NSLOW ? slow_slots[i] : fast_slots[i - NSLOW];
        char val[32];
        snprintf(val, sizeof val, "slow-%u", s);
        const char *argv[] = {"SET", slot_key[s], val};
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 3, argv, NULL), REDTLS_OK);
    }
    run_all(acl);
    for (size_t i = 0; i < NSLOW + NFAST; i++)
        assert_cmd_str(i, "OK");

    T.stopped = lc.node[slow].srv.pid;
    assert_int_equal(lab_signal(T.stopped, SIGSTOP), 0);
    size_t base = T.t->issued;
    for (size_t i = 0; i < NSLOW + NFAST; i++) {
        unsigned s = i < NSLOW ? slow_slots[i] : fast_slots[i - NSLOW];
        const char *argv[] = {"GET", slot_key[s]};
        size_t id;
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 2, argv, &id), REDTLS_OK);
        T.t->cmd[id].tag = s;
    }
    run_all(acl);
    assert_int_equal(lab_signal(T.stopped, SIGCONT), 0);
    T.stopped = 0;

    long long fast_max = 0, fast_last_done = 0, slow_min = -1, slow_max = 0, slow_first_done = -1;
    for (size_t i = base; i < base + NSLOW + NFAST; i++) {
        const lab_acl_cmd *c = cmd_of(i);
        long long dt = c->done_ms - c->issued_ms;
        if (i < base + NSLOW) {
            assert_cmd(i, REDTLS_E_COMMAND_TIMEOUT);
            if (slow_min < 0 || dt < slow_min)
                slow_min = dt;
            if (dt > slow_max)
                slow_max = dt;
            if (slow_first_done < 0 || c->done_ms < slow_first_done)
                slow_first_done = c->done_ms;
        } else {
            char val[32];
            snprintf(val, sizeof val, "slow-%u", c->tag);
            assert_cmd_str(i, val);
            if (dt > fast_max)
                fast_max = dt;
            if (c->done_ms > fast_last_done)
                fast_last_done = c->done_ms;
        }
    }
    print_message("node%d stopped: %d commands to the others done within %lld ms; its own %d ended with "
                  "REDTLS_E_COMMAND_TIMEOUT after %lld..%lld ms (timeout %d ms)\n",
                  slow + 1, NFAST, fast_max, NSLOW, slow_min, slow_max, SLOW_TIMEOUT_MS);
    /* The others were not held back: all done in well under half the
     * timeout, and before the first of the stopped node's commands ended. */
    assert_true(fast_max < SLOW_TIMEOUT_MS / 2);
    assert_true(fast_last_done < slow_first_done);
    /* At the deadline, not long after. */
    assert_true(slow_min >= SLOW_TIMEOUT_MS - 20);
    assert_true(slow_max < SLOW_TIMEOUT_MS + 500);

    /* Running again: every key reads its own value. */
    base = T.t->issued;
    for (size_t i = 0; i < NSLOW + NFAST; i++) {
        unsigned s = i < NSLOW ? slow_slots[i] : fast_slots[i - NSLOW];
        const char *argv[] = {"GET", slot_key[s]};
        size_t id;
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 2, argv, &id), REDTLS_OK);
        T.t->cmd[id].tag = s;
    }
    run_all(acl);
    for (size_t i = base; i < base + NSLOW + NFAST; i++) {
        char val[32];
        snprintf(val, sizeof val, "slow-%u", cmd_of(i)->tag);
        assert_cmd_str(i, val);
    }
    assert_tally("slow node");
}

/* ----- at-most-once ----------------------------------------------------------------- */

/* Commands written to a master that then loses the connection: writes
 * held by CLIENT PAUSE WRITE (so they never run) when the server closes
 * the connection. An INCR ends with REDTLS_E_OUTCOME_UNKNOWN (and indeed
 * never ran); a SET with REDTLS_CMD_IDEMPOTENT is sent again on a new
 * connection and succeeds; reads answered before, and the other masters'
 * commands, are not affected. */
static void test_connection_lost_in_flight(void **state)
{
    (void)state;
    static signed char owner[LAB_CLUSTER_SLOTS];
    load_owners(&lc, 0, owner);
    int m = owner[0];
    enum { N = 20 };
    static char lost[N][40], idem[N][40], other[N][40];
    size_t nl = 0, no = 0;
    for (unsigned s = 0; s < LAB_CLUSTER_SLOTS && (nl < N || no < N); s += 13) {
        if (owner[s] == m && nl < N) {
            snprintf(lost[nl], sizeof lost[nl], "lost{%s}", slot_key[s]);
            snprintf(idem[nl], sizeof idem[nl], "idem{%s}", slot_key[s]);
            nl++;
        } else if (owner[s] != m && no < N) {
            snprintf(other[no], sizeof other[no], "other{%s}", slot_key[s]);
            no++;
        }
    }
    assert_int_equal(nl, N);
    assert_int_equal(no, N);
    T.acl = new_acl(&lc, TOKEN_OLD, NULL, 5000);
    redtls_async_cluster *acl = T.acl;
    new_tally(8 * N + 16);
    for (size_t i = 0; i < N; i++) {
        const char *del[] = {"DEL", lost[i], idem[i]};
        const char *set[] = {"SET", other[i], "o"};
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 3, del, NULL), REDTLS_OK);
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 3, set, NULL), REDTLS_OK);
    }
    run_all(acl);
    uint64_t failures0 = redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_NODE_FAILURES);

    redisReply *r = NULL;
    assert_int_equal(lab_cluster_admin(&lc, (size_t)m, &r, "CLIENT PAUSE 5000 WRITE"), 0);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    size_t reads = T.t->issued;
    for (size_t i = 0; i < N; i++) {
        const char *get[] = {"GET", idem[i]};
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 2, get, NULL), REDTLS_OK);
    }
    size_t incrs = T.t->issued;
    for (size_t i = 0; i < N; i++) {
        const char *incr[] = {"INCR", lost[i]};
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 2, incr, NULL), REDTLS_OK);
    }
    size_t sets = T.t->issued;
    for (size_t i = 0; i < N; i++) {
        const char *set[] = {"SET", idem[i], "after"};
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, REDTLS_CMD_IDEMPOTENT, 3, set, NULL), REDTLS_OK);
    }
    size_t others = T.t->issued;
    for (size_t i = 0; i < N; i++) {
        const char *get[] = {"GET", other[i]};
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 2, get, NULL), REDTLS_OK);
    }
    /* Everything written; the reads and the other masters answered. */
    long long end = lab_now_ms() + 3000;
    while (lab_now_ms() < end && (cmd_of(reads + N - 1)->calls == 0 || cmd_of(others + N - 1)->calls == 0))
        (void)redtls_async_cluster_run(acl, 20);
    (void)redtls_async_cluster_run(acl, 100);
    for (size_t i = 0; i < N; i++) {
        assert_cmd(reads + i, REDTLS_OK);
        assert_int_equal(cmd_of(reads + i)->type, REDIS_REPLY_NIL);
        assert_cmd_str(others + i, "o");
        assert_int_equal(cmd_of(incrs + i)->calls, 0);
        assert_int_equal(cmd_of(sets + i)->calls, 0);
    }
    assert_int_equal(lab_cluster_admin(&lc, (size_t)m, &r, "CLIENT KILL USER default"), 0);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer >= 1);
    freeReplyObject(r);
    assert_int_equal(lab_cluster_admin(&lc, (size_t)m, &r, "CLIENT UNPAUSE"), 0);
    freeReplyObject(r);
    run_all(acl);
    for (size_t i = 0; i < N; i++) {
        assert_cmd(incrs + i, REDTLS_E_OUTCOME_UNKNOWN);
        assert_cmd_str(sets + i, "OK");
    }
    /* What the server holds: no INCR ran, every SET did. */
    size_t check = T.t->issued;
    for (size_t i = 0; i < N; i++) {
        const char *get1[] = {"GET", lost[i]};
        const char *get2[] = {"GET", idem[i]};
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 2, get1, NULL), REDTLS_OK);
        assert_acl_status(acl, lab_acl_issue_argv(T.t, acl, 0, 2, get2, NULL), REDTLS_OK);
    }
    run_all(acl);
    for (size_t i = 0; i < N; i++) {
        assert_cmd(check + 2 * i, REDTLS_OK);
        assert_int_equal(cmd_of(check + 2 * i)->type, REDIS_REPLY_NIL);
        assert_cmd_str(check + 2 * i + 1, "after");
    }
    print_message("connection to node%d lost with %d INCRs and %d idempotent SETs written: INCRs %s, SETs sent "
                  "again; node failures +%llu\n",
                  m + 1, N, N, redtls_strerror(REDTLS_E_OUTCOME_UNKNOWN),
                  (unsigned long long)(redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_NODE_FAILURES) -
                                       failures0));
    assert_true(redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_NODE_FAILURES) > failures0);
    assert_tally("connection lost in flight");
}

/* ----- 6. token rotation -------------------------------------------------------- */

static int auth_refreshed, token_switched;
static char refreshed_detail[256];
static void on_event(void *ud, redtls_event_type type, const char *detail)
{
    (void)ud;
    if (type == REDTLS_EVENT_AUTH_REFRESHED) {
        auth_refreshed++;
        snprintf(refreshed_detail, sizeof refreshed_detail, "%s", detail != NULL ? detail : "");
    } else if (type == REDTLS_EVENT_AUTH_TOKEN_SWITCHED) {
        token_switched++;
    }
}

/* Runs the flow until n more re-authentications were reported (or 5 s). */
static int flow_until_refreshed(int before, int n)
{
    long long end = lab_now_ms() + 5000;
    while (auth_refreshed < before + n && lab_now_ms() < end)
        lab_acl_flow_run(&T.flow, 20);
    return auth_refreshed - before;
}

/* Old token, both, new token, every step of it on the nodes and in the
 * handle (redtls_async_cluster_set_tokens with two tokens, then one, each
 * with REDTLS_REAUTH_NOW) while INCRs flow over every master, then every
 * connection killed so the new token alone must open them again: no
 * command fails, every INCR is counted. */
static void test_token_rotation(void **state)
{
    (void)state;
    redtls_config *cfg = lab_cluster_client_config(&lc, TOKEN_OLD, NULL, 8000);
    assert_cfg_status(cfg, redtls_config_set_event_callback(cfg, on_event, NULL), REDTLS_OK);
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, seed_of(&lc, 1), &T.acl), REDTLS_OK);
    redtls_config_free(cfg);
    redtls_async_cluster *acl = T.acl;
    auth_refreshed = token_switched = 0;
    assert_int_equal(lab_acl_flow_init(&T.flow, acl, LAB_ACL_FLOW_INCR, 0, 64, 256, "rot", NULL, 0), 0);
    assert_int_equal(lab_acl_flow_reset(&T.flow, 10000), 0);
    lab_acl_flow_start(&T.flow);
    lab_acl_flow_run(&T.flow, 300);
    long long ops0 = T.flow.ops;

    assert_int_equal(redtls_async_cluster_set_tokens(acl, "", NULL, 0), REDTLS_E_INVALID);
    assert_int_equal(redtls_async_cluster_set_tokens(acl, TOKEN_NEW, "", 0), REDTLS_E_INVALID);

    /* The client first: both tokens, the old one preferred. */
    assert_acl_status(acl, redtls_async_cluster_set_tokens(acl, TOKEN_OLD, TOKEN_NEW, REDTLS_REAUTH_NOW), REDTLS_OK);
    int r1 = flow_until_refreshed(auth_refreshed, 3);
    /* The servers: both. */
    T.restore_password = 1;
    assert_int_equal(lab_cluster_admin_all(&lc, "ACL SETUSER default >%s", TOKEN_NEW), 0);
    lab_acl_flow_run(&T.flow, 200);
    /* The client: the new one preferred. */
    assert_acl_status(acl, redtls_async_cluster_set_tokens(acl, TOKEN_NEW, TOKEN_OLD, REDTLS_REAUTH_NOW), REDTLS_OK);
    int r2 = flow_until_refreshed(auth_refreshed, 3);
    /* The servers: the new one only. */
    assert_int_equal(lab_cluster_admin_all(&lc, "ACL SETUSER default <%s", TOKEN_OLD), 0);
    lab_acl_flow_run(&T.flow, 200);
    /* The client: the new one only. */
    assert_acl_status(acl, redtls_async_cluster_set_tokens(acl, TOKEN_NEW, NULL, REDTLS_REAUTH_NOW), REDTLS_OK);
    int r3 = flow_until_refreshed(auth_refreshed, 3);
    long long ops1 = T.flow.ops;
    /* Every connection closed by the servers: new ones must authenticate
     * with the new token alone. Paused first, so nothing is lost in
     * flight (that is the failover tests' matter). */
    assert_int_equal(lab_acl_flow_pause(&T.flow, 10000), 0);
    assert_int_equal(lab_cluster_admin_all(&lc, "CLIENT KILL USER default"), 0);
    lab_acl_flow_resume(&T.flow);
    lab_acl_flow_run(&T.flow, 500);
    assert_int_equal(lab_acl_flow_drain(&T.flow, 10000), 0);
    long long lost = 0, extra = 0;
    assert_int_equal(lab_acl_flow_verify(&T.flow, "rotation", &lost, &extra), 0);
    print_message("rotation over 3 masters: %lld INCRs (%lld before the first update, %lld after the kill); "
                  "re-authentications per update: %d, %d, %d (last: \"%s\"); token switches %d\n",
                  T.flow.ok, ops0, T.flow.ops - ops1, r1, r2, r3, refreshed_detail, token_switched);
    assert_int_equal(T.flow.failed, 0);
    assert_int_equal(T.flow.unknown, 0);
    assert_int_equal(T.flow.timeouts, 0);
    assert_int_equal(T.flow.refused, 0);
    assert_int_equal(lost, 0);
    assert_int_equal(extra, 0);
    /* Each live update re-authenticated every open master connection while
     * commands kept flowing. */
    assert_true(r1 >= 3 && r2 >= 3 && r3 >= 3);
    /* Commands went on flowing after the kill. */
    assert_true(T.flow.ops - ops1 > 100);
    /* The new token was preferred: nothing to switch. */
    assert_int_equal(token_switched, 0);
}

/* A live update to a token the servers refuse: each re-AUTH fails, and,
 * as with redtls_conn_set_tokens, the connections stay open and
 * authenticated as before, so the commands flowing are not affected. */
static void test_token_refused_keeps_connections(void **state)
{
    (void)state;
    redtls_config *cfg = lab_cluster_client_config(&lc, TOKEN_OLD, NULL, 8000);
    assert_cfg_status(cfg, redtls_config_set_event_callback(cfg, on_event, NULL), REDTLS_OK);
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, seed_of(&lc, 2), &T.acl), REDTLS_OK);
    redtls_config_free(cfg);
    auth_refreshed = token_switched = 0;
    assert_int_equal(lab_acl_flow_init(&T.flow, T.acl, LAB_ACL_FLOW_INCR, 0, 64, 256, "refused", NULL, 0), 0);
    assert_int_equal(lab_acl_flow_reset(&T.flow, 10000), 0);
    lab_acl_flow_start(&T.flow);
    lab_acl_flow_run(&T.flow, 300);
    long long ops0 = T.flow.ops;
    redtls_status st = redtls_async_cluster_set_tokens(T.acl, "not-the-password-0a1b2c", NULL, REDTLS_REAUTH_NOW);
    lab_acl_flow_run(&T.flow, 700);
    long long ops1 = T.flow.ops;
    assert_int_equal(lab_acl_flow_drain(&T.flow, 10000), 0);
    print_message("refused live update: set_tokens %s; %lld commands after it: %lld acknowledged, %lld failed, "
                  "%lld outcome unknown (first failure: %s); %d re-authentications reported\n",
                  redtls_strerror(st), ops1 - ops0, T.flow.ok, T.flow.failed, T.flow.unknown, T.flow.first_error,
                  auth_refreshed);
    assert_int_equal(T.flow.failed, 0);
    assert_int_equal(T.flow.unknown, 0);
    long long lost = 0, extra = 0;
    assert_int_equal(lab_acl_flow_verify(&T.flow, "refused token", &lost, &extra), 0);
    assert_int_equal(T.flow.failed, 0);
    assert_int_equal(T.flow.unknown, 0);
    assert_int_equal(T.flow.timeouts, 0);
    assert_int_equal(lost, 0);
    assert_int_equal(extra, 0);
    assert_true(ops1 - ops0 > 100);
    assert_int_equal(auth_refreshed, 0);
}

/* No seed can be reached: the connect callback reports the last seed's
 * status, a command waiting for the map ends at its own deadline, and the
 * built-in loop returns once nothing is owed. */
static void test_unreachable_seeds(void **state)
{
    (void)state;
    uint16_t p1 = lab_unused_port(), p2 = lab_unused_port();
    char seeds[64];
    snprintf(seeds, sizeof seeds, "127.0.0.1:%u,127.0.0.1:%u", (unsigned)p1, (unsigned)p2);
    redtls_config *cfg = lab_cluster_client_config(&lc, TOKEN_OLD, NULL, 500);
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, seeds, &T.acl), REDTLS_OK);
    redtls_config_free(cfg);
    new_tally(16);
    assert_acl_status(T.acl, redtls_async_cluster_connect(T.acl, lab_acl_on_connect, &T.conn), REDTLS_OK);
    size_t id;
    issue_ok(T.acl, 0, "GET k", &id);
    long long t0 = lab_now_ms();
    redtls_status st = redtls_async_cluster_run(T.acl, 5000);
    long long dt = lab_now_ms() - t0;
    const lab_acl_cmd *c = cmd_of(id);
    print_message("unreachable seeds: connect %s (%s); GET %s after %lld ms (%s); run() %s after %lld ms\n",
                  redtls_strerror(T.conn.st), T.conn.msg, redtls_strerror(c->st), c->done_ms - c->issued_ms, c->msg,
                  redtls_strerror(st), dt);
    assert_int_equal(T.conn.calls, 1);
    assert_int_equal(T.conn.st, REDTLS_E_CONNECT);
    assert_int_equal(c->calls, 1);
    if (c->st != REDTLS_E_COMMAND_TIMEOUT)
        assert_int_equal(c->st, REDTLS_E_CONNECT);
    assert_true(c->done_ms - c->issued_ms >= 480 && c->done_ms - c->issued_ms < 1200);
    assert_acl_status(T.acl, st, REDTLS_OK);
    assert_true(dt < 2000);
    assert_int_equal(redtls_async_cluster_is_ready(T.acl), 0);
    assert_tally("unreachable seeds");
}

/* ----- 5. per-node verification ----------------------------------------------------- */

/* A key hashing to slot s ("t<N>"). */
static void tag_for_slot(unsigned s, char *out, size_t cap)
{
    for (unsigned t = 0;; t++) {
        int n = snprintf(out, cap, "t%u", t);
        if (redtls_cluster_key_slot(out, (size_t)n) == s)
            return;
    }
}

static void test_impostor_node(void **state)
{
    (void)state;
    lab_cluster_opts o = lab_cluster_default_opts();
    o.replicas = 0;
    o.password = TOKEN_OLD;
    o.bad_cert_node = 2;
    assert_int_equal(lab_cluster_start(&T.extra, &o), 0);
    static signed char owner[LAB_CLUSTER_SLOTS];
    load_owners(&T.extra, 0, owner);
    T.acl = new_acl(&T.extra, TOKEN_OLD, NULL, 3000);
    new_tally(256);
    assert_acl_status(T.acl, redtls_async_cluster_connect(T.acl, lab_acl_on_connect, &T.conn), REDTLS_OK);
    for (int round = 0; round < 2; round++) {
        size_t base = T.t->issued;
        for (unsigned s = 0; s < LAB_CLUSTER_SLOTS; s += 512) {
            char tag[16];
            tag_for_slot(s, tag, sizeof tag);
            const char *argv[] = {"SET", tag, "v"};
            size_t id;
            assert_acl_status(T.acl, lab_acl_issue_argv(T.t, T.acl, 0, 3, argv, &id), REDTLS_OK);
            T.t->cmd[id].tag = s;
        }
        run_all(T.acl);
        int ok = 0, refused = 0;
        for (size_t i = base; i < T.t->issued; i++) {
            const lab_acl_cmd *c = cmd_of(i);
            if (owner[c->tag] == 1) {
                assert_cmd(i, REDTLS_E_TLS_HOSTNAME);
                assert_contains(c->msg, "node2.cluster.test");
                refused++;
            } else {
                assert_cmd_str(i, "OK");
                ok++;
            }
        }
        print_message("round %d: node2 with node1's certificate: %d commands refused (REDTLS_E_TLS_HOSTNAME), "
                      "%d served by the others\n",
                      round + 1, refused, ok);
        assert_true(refused > 0 && ok > 0);
    }
    assert_int_equal(T.conn.calls, 1);
    assert_acl_status(T.acl, T.conn.st, REDTLS_OK);

    /* The impostor as the only seed: the first pass fails with its
     * verification status. */
    redtls_config *cfg = lab_cluster_client_config(&T.extra, TOKEN_OLD, NULL, 3000);
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, seed_of(&T.extra, 1), &T.acl2), REDTLS_OK);
    redtls_config_free(cfg);
    assert_acl_status(T.acl2, redtls_async_cluster_connect(T.acl2, lab_acl_on_connect, &T.conn2), REDTLS_OK);
    size_t id;
    issue_ok(T.acl2, 0, "GET impostor:k", &id);
    long long t0 = lab_now_ms();
    redtls_status st = redtls_async_cluster_run(T.acl2, 5000);
    long long dt = lab_now_ms() - t0;
    const lab_acl_cmd *c = cmd_of(id);
    print_message("impostor as the only seed: connect %s (%s); GET %s after %lld ms; run() %s after %lld ms\n",
                  redtls_strerror(T.conn2.st), T.conn2.msg, redtls_strerror(c->st), c->done_ms - c->issued_ms,
                  redtls_strerror(st), dt);
    /* Waiting would not help: the command ends with the verification
     * status, long before its deadline. */
    assert_cmd(id, REDTLS_E_TLS_HOSTNAME);
    assert_contains(c->msg, "node2.cluster.test");
    assert_true(c->done_ms - c->issued_ms < 1500);
    assert_acl_status(T.acl2, st, REDTLS_OK);
    assert_int_equal(T.conn2.calls, 1);
    assert_int_equal(T.conn2.st, REDTLS_E_TLS_HOSTNAME);
    assert_contains(T.conn2.msg, "node2.cluster.test");
    assert_int_equal(redtls_async_cluster_is_ready(T.acl2), 0);
    assert_tally("impostor");
}

/* One wildcard certificate, IP endpoints: refused without a name to check
 * (the certificate has no IP address), served with one. */
static void test_wildcard_ip_endpoints(void **state)
{
    (void)state;
    lab_cluster_opts o = lab_cluster_default_opts();
    o.replicas = 0;
    o.password = TOKEN_OLD;
    o.wildcard_cert = 1;
    o.announce_ips = 1;
    assert_int_equal(lab_cluster_start(&T.extra, &o), 0);
    new_tally(512);
    char seeds[64];
    snprintf(seeds, sizeof seeds, "127.0.0.1:%u", (unsigned)T.extra.node[0].srv.port);
    redtls_config *cfg = lab_cluster_client_config(&T.extra, TOKEN_OLD, NULL, 3000);
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, seeds, &T.acl2), REDTLS_OK);
    assert_acl_status(T.acl2, redtls_async_cluster_connect(T.acl2, lab_acl_on_connect, &T.conn2), REDTLS_OK);
    long long end = lab_now_ms() + 5000;
    while (T.conn2.calls == 0 && lab_now_ms() < end)
        (void)redtls_async_cluster_run(T.acl2, 50);
    assert_int_equal(T.conn2.calls, 1);
    assert_int_equal(T.conn2.st, REDTLS_E_TLS_HOSTNAME);

    assert_cfg_status(cfg, redtls_config_set_verify_name(cfg, "node.cluster.test"), REDTLS_OK);
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, seeds, &T.acl), REDTLS_OK);
    redtls_config_free(cfg);
    for (unsigned i = 0; i < 300; i++) {
        char key[16];
        snprintf(key, sizeof key, "w%u", i);
        const char *argv[] = {"SET", key, "v"};
        assert_acl_status(T.acl, lab_acl_issue_argv(T.t, T.acl, 0, 3, argv, NULL), REDTLS_OK);
    }
    run_all(T.acl);
    for (size_t i = 0; i < 300; i++)
        assert_cmd_str(i, "OK");
    assert_int_equal(redtls_async_cluster_node_count(T.acl), 3);
    for (size_t i = 0; i < 3; i++)
        assert_contains(redtls_async_cluster_node_name(T.acl, i), "127.0.0.1:");
    assert_tally("wildcard, IP endpoints");
}

/* IP endpoints with one certificate per node: each verified by the host
 * name it announces next to its IP, with no configuration. */
static void test_ip_endpoints_named(void **state)
{
    (void)state;
    lab_cluster_opts o = lab_cluster_default_opts();
    o.replicas = 0;
    o.password = TOKEN_OLD;
    o.announce_ips = 1;
    assert_int_equal(lab_cluster_start(&T.extra, &o), 0);
    new_tally(512);
    T.acl = new_acl(&T.extra, TOKEN_OLD, NULL, 3000);
    for (unsigned i = 0; i < 300; i++) {
        char key[16];
        snprintf(key, sizeof key, "m%u", i);
        const char *argv[] = {"SET", key, "v"};
        assert_acl_status(T.acl, lab_acl_issue_argv(T.t, T.acl, 0, 3, argv, NULL), REDTLS_OK);
    }
    run_all(T.acl);
    for (size_t i = 0; i < 300; i++)
        assert_cmd_str(i, "OK");
    assert_int_equal(redtls_async_cluster_node_count(T.acl), 3);
    assert_contains(redtls_async_cluster_node_name(T.acl, 0), "127.0.0.1:");
    assert_tally("IP endpoints, named");
}

/* ----- 9. the libevent adapter ---------------------------------------------------- */

#ifdef LAB_HAVE_ACL_LIBEVENT
/* Runs the event_base until no callback is owed (or ms pass). */
static int libevent_run_all(int ms)
{
    long long end = lab_now_ms() + ms;
    while (lab_acl_tally_owed(T.t) > 0) {
        if (lab_now_ms() >= end)
            return 0;
        if (event_base_loop(T.base, EVLOOP_ONCE) == 1)
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

/* Test 1's steps on a libevent event_base through
 * redtls_async_cluster_attach_libevent, and a free from a callback. */
static void test_libevent_connect_and_every_slot(void **state)
{
    (void)state;
#ifndef LAB_HAVE_ACL_LIBEVENT
    print_message("redtls_async_cluster_attach_libevent not in <redtls/async_libevent.h>: skipped\n");
    skip();
#else
    T.base = event_base_new();
    assert_non_null(T.base);
    T.acl = new_acl(&lc, TOKEN_OLD, NULL, 8000);
    new_tally(2 * LAB_CLUSTER_SLOTS + 128);
    assert_acl_status(T.acl, redtls_async_cluster_attach_libevent(T.acl, T.base), REDTLS_OK);
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
    assert_acl_status(T.acl2, redtls_async_cluster_attach_libevent(T.acl2, T.base), REDTLS_OK);
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
    assert_int_equal(event_base_loop(T.base, EVLOOP_NONBLOCK), 1);
    assert_tally("libevent");
#endif
}

int main(void)
{
    const char *filter = getenv("REDTLS_TEST_FILTER");
    if (filter != NULL && filter[0] != '\0')
        cmocka_set_test_filter(filter);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connect_and_every_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_callbacks_owed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_incr_accounting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multi_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replica_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fake_moved_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fake_tryagain_until_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scripted_tryagain_then_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scripted_deadline_across_redirect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scripted_ask_other_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fake_clusterdown_clears, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fake_ask_sends_asking, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_lost_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_refused_keeps_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_seeds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_impostor_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wildcard_ip_endpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ip_endpoints_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_libevent_connect_and_every_slot, setup, teardown),
    };
    return cmocka_run_group_tests_name("integration.async_cluster", tests, group_setup, group_teardown);
}

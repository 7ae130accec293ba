/* The asynchronous cluster client while the cluster changes under it,
 * against a real TLS Redis Cluster (3 masters + 3 replicas, AUTH, host
 * names, per-node certificates): live resharding of slots under a writer on
 * exactly their keys (ASK, then MOVED) followed by a MOVED storm on a stale
 * handle, failover by SIGKILL of a master, and CLUSTER FAILOVER.
 *
 * The writer is a thread of its own that owns its handle and runs its
 * built-in loop, keeping 32 commands in flight over 512 keys, one per key
 * at a time (tests/harness/lab_async_cluster.h), while the test thread
 * changes the cluster with blocking admin calls. Afterwards every key is
 * read back: no acknowledged write may be missing, and no value may have
 * come from a write the client did not send.
 * REDTLS_TEST_FILTER: a cmocka name pattern. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <redtls/async_cluster.h>
#include <redtls/redtls.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_async_cluster.h"
#include "lab_cluster.h"
#include "lab_cluster_client.h"
#include "lab_proxy.h"

#define TOKEN "afailover-Token-6e01c9d2"
#define NKEYS 512
#define WINDOW 32
#define WRITER_TIMEOUT_MS 15000

static lab_cluster lc;

/* ----- the writer thread ------------------------------------------------------ */

typedef struct writer {
    pthread_t thread;
    int running;
    redtls_async_cluster *acl;
    lab_acl_flow flow;
    atomic_int quit;      /* test -> writer: drain and return */
    atomic_int want_hold; /* test -> writer: pause (nothing in flight) */
    atomic_int held;      /* writer -> test: paused */
    int rc;               /* the writer's own failures (drain) */
} writer;

/* Per test; torn down even when an assertion fails. */
static struct {
    writer w;
    redtls_async_cluster *storm;
    redtls_async_cluster *stale; /* a second handle whose map goes stale */
    lab_acl_tally *t;
    lab_acl_conn conn;
    lab_acl_conn conn2;
    int restart_node; /* a node killed by the test, to start again (-1 none) */
} T;

static void *writer_main(void *arg)
{
    writer *w = arg;
    lab_acl_flow_start(&w->flow);
    while (!atomic_load(&w->quit)) {
        if (atomic_load(&w->want_hold) && !atomic_load(&w->held)) {
            if (lab_acl_flow_pause(&w->flow, 20000) != 0)
                w->rc = -1;
            atomic_store(&w->held, 1);
        } else if (!atomic_load(&w->want_hold) && atomic_load(&w->held)) {
            lab_acl_flow_resume(&w->flow);
            atomic_store(&w->held, 0);
        }
        lab_acl_flow_run(&w->flow, 20);
    }
    if (lab_acl_flow_drain(&w->flow, WRITER_TIMEOUT_MS + 5000) != 0)
        w->rc = -1;
    return NULL;
}

static redtls_async_cluster *new_acl(unsigned timeout_ms)
{
    redtls_config *cfg = lab_cluster_client_config(&lc, TOKEN, NULL, timeout_ms);
    assert_cfg_status(cfg, redtls_config_set_connect_timeout_ms(cfg, 1000), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_backoff(cfg, 50, 500), REDTLS_OK);
    char seeds[256];
    snprintf(seeds, sizeof seeds, "%s:%u,%s:%u", lc.node[0].hostname, (unsigned)lc.node[0].srv.port,
             lc.node[1].hostname, (unsigned)lc.node[1].srv.port);
    redtls_async_cluster *acl = NULL;
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, seeds, &acl), REDTLS_OK);
    redtls_config_free(cfg);
    return acl;
}

/* Keys from zero, then the thread starts writing. */
static void writer_start(writer *w, lab_acl_flow_mode mode, unsigned flags, const char *prefix,
                         const unsigned *slots, size_t nslots)
{
    w->acl = new_acl(WRITER_TIMEOUT_MS);
    assert_int_equal(lab_acl_flow_init(&w->flow, w->acl, mode, flags, WINDOW, NKEYS, prefix, slots, nslots), 0);
    assert_int_equal(lab_acl_flow_reset(&w->flow, 10000), 0);
    atomic_store(&w->quit, 0);
    atomic_store(&w->want_hold, 0);
    atomic_store(&w->held, 0);
    assert_int_equal(pthread_create(&w->thread, NULL, writer_main, w), 0);
    w->running = 1;
}

static void writer_join(writer *w)
{
    if (!w->running)
        return;
    atomic_store(&w->quit, 1);
    pthread_join(w->thread, NULL);
    w->running = 0;
}

/* Waits until the writer has nothing in flight and sends nothing. */
static void writer_hold(writer *w)
{
    atomic_store(&w->want_hold, 1);
    long long end = lab_now_ms() + 25000;
    while (!atomic_load(&w->held)) {
        assert_true(lab_now_ms() < end);
        lab_sleep_ms(5);
    }
}

static void writer_release(writer *w)
{
    atomic_store(&w->want_hold, 0);
    long long end = lab_now_ms() + 5000;
    while (atomic_load(&w->held)) {
        assert_true(lab_now_ms() < end);
        lab_sleep_ms(1);
    }
}

/* Stops the writer (its handle is this thread's again), reads every key
 * back and checks what the at-most-once rules allow. */
static void writer_finish(writer *w, const char *what, long long *lost)
{
    writer_join(w);
    assert_int_equal(w->rc, 0);
    long long extra = 0;
    assert_int_equal(lab_acl_flow_verify(&w->flow, what, lost, &extra), 0);
    assert_int_equal(extra, 0);
    /* Every callback came: nothing in flight is left over. */
    assert_int_equal(w->flow.in_flight, 0);
    assert_int_equal(redtls_async_cluster_pending(w->acl), 0);
}

static int group_setup(void **state)
{
    (void)state;
    if (lab_init(170) != 0 || lab_certs(NULL) == NULL)
        return -1;
    lab_cluster_opts o = lab_cluster_default_opts();
    o.password = TOKEN;
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
    T.restart_node = -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    writer_join(&T.w);
    redtls_async_cluster_free(T.w.acl);
    lab_acl_flow_free(&T.w.flow);
    redtls_async_cluster_free(T.storm);
    redtls_async_cluster_free(T.stale);
    lab_acl_tally_free(T.t);
    int rc = 0;
    if (T.restart_node >= 0) {
        if (lab_cluster_restart(&lc, (size_t)T.restart_node) != 0 || lab_cluster_wait_ok(&lc, 20000) != 0)
            rc = -1;
    }
    memset(&T, 0, sizeof T);
    return rc;
}

/* ----- live resharding and a MOVED storm --------------------------------------- */

/* A split MGET's values (-1: nil), kept by its callback. */
static long long mget_vals[NKEYS + 2];
static size_t mget_n;

static void keep_mget(lab_acl_tally *t, redtls_async_cluster *acl, lab_acl_cmd *c, const redisReply *r)
{
    (void)t;
    (void)acl;
    (void)c;
    mget_n = 0;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return;
    mget_n = r->elements;
    for (size_t i = 0; i < r->elements && i < NKEYS + 2; i++)
        mget_vals[i] = r->element[i]->type == REDIS_REPLY_STRING ? atoll(r->element[i]->str) : -1;
}

/* Moves 4 slots from one master to another, key batch by key batch, while
 * the writer INCRs keys of exactly those slots: every ASK and MOVED is
 * followed, nothing fails, nothing is lost. Then a handle that sat idle
 * through the move sends 512 GETs for those slots at once, all to the old
 * owner: 512 MOVED followed, one refresh; and another stale handle's split
 * MGET over those keys is redirected part by part and merged in order. */
static void test_live_resharding(void **state)
{
    (void)state;
    unsigned slots[4] = {100, 101, 102, 103};
    int src = lab_cluster_master_of(&lc, slots[0]);
    assert_true(src >= 0);
    int dst = lab_cluster_master_of(&lc, 16000);
    assert_true(dst >= 0 && dst != src);
    for (size_t i = 1; i < 4; i++)
        assert_int_equal(lab_cluster_master_of(&lc, slots[i]), src);

    /* The idle handle, its map taken before the move. */
    T.storm = new_acl(5000);
    T.t = lab_acl_tally_new(2 * NKEYS + 64);
    assert_non_null(T.t);
    T.conn.tally = T.t;
    T.conn2.tally = T.t;
    T.stale = new_acl(5000);
    assert_acl_status(T.storm, redtls_async_cluster_connect(T.storm, lab_acl_on_connect, &T.conn), REDTLS_OK);
    assert_acl_status(T.stale, redtls_async_cluster_connect(T.stale, lab_acl_on_connect, &T.conn2), REDTLS_OK);
    long long end = lab_now_ms() + 10000;
    while ((T.conn.calls == 0 || T.conn2.calls == 0) && lab_now_ms() < end) {
        (void)redtls_async_cluster_run(T.storm, 20);
        (void)redtls_async_cluster_run(T.stale, 20);
    }
    assert_int_equal(T.conn.calls, 1);
    assert_acl_status(T.storm, T.conn.st, REDTLS_OK);
    assert_int_equal(T.conn2.calls, 1);
    assert_acl_status(T.stale, T.conn2.st, REDTLS_OK);

    writer *w = &T.w;
    writer_start(w, LAB_ACL_FLOW_INCR, 0, "reshard", slots, 4);
    lab_sleep_ms(300);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(lab_cluster_migrate_begin(&lc, slots[i], (size_t)src, (size_t)dst), 0);
        int moved;
        lab_sleep_ms(100);
        while ((moved = lab_cluster_migrate_keys(&lc, slots[i], (size_t)src, (size_t)dst, 16)) > 0)
            lab_sleep_ms(60);
        assert_int_equal(moved, 0);
        lab_sleep_ms(100);
        assert_int_equal(lab_cluster_migrate_end(&lc, slots[i], (size_t)src, (size_t)dst), 0);
        lab_sleep_ms(150);
    }
    lab_sleep_ms(300);
    long long lost = 0;
    writer_finish(w, "live resharding of 4 slots", &lost);
    assert_int_equal(lost, 0);
    assert_int_equal(w->flow.failed, 0);
    assert_int_equal(w->flow.unknown, 0);
    assert_int_equal(w->flow.timeouts, 0);
    assert_int_equal(w->flow.refused, 0);
    assert_true(w->flow.ok > 1000);
    assert_true(redtls_async_cluster_stat_get(w->acl, REDTLS_CLUSTER_STAT_ASK) > 0);
    assert_true(redtls_async_cluster_stat_get(w->acl, REDTLS_CLUSTER_STAT_MOVED) > 0);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(lab_cluster_master_of(&lc, slots[i]), dst);

    /* The storm. Every GET is issued in one pass, so all go out to the old
     * owner before any MOVED is back. */
    redtls_async_cluster *storm = T.storm;
    uint64_t refreshes0 = redtls_async_cluster_stat_get(storm, REDTLS_CLUSTER_STAT_REFRESHES);
    assert_int_equal(redtls_async_cluster_stat_get(storm, REDTLS_CLUSTER_STAT_MOVED), 0);
    size_t base = T.t->issued;
    for (size_t k = 0; k < NKEYS; k++) {
        const char *argv[] = {"GET", w->flow.keys[k].name};
        assert_acl_status(storm, lab_acl_issue_argv(T.t, storm, 0, 2, argv, NULL), REDTLS_OK);
    }
    assert_int_equal(lab_acl_run_all(storm, T.t, 20000), 1);
    for (size_t k = 0; k < NKEYS; k++) {
        const lab_acl_cmd *c = &T.t->cmd[base + k];
        assert_int_equal(c->calls, 1);
        assert_acl_status(storm, c->st, REDTLS_OK);
        /* Each key's value is what the writer counted. */
        long long v = c->type == REDIS_REPLY_STRING ? atoll(c->str) : 0;
        if (c->type != REDIS_REPLY_STRING && c->type != REDIS_REPLY_NIL)
            fail_msg("GET %s: reply type %d %s", w->flow.keys[k].name, c->type, c->str);
        assert_true(v >= w->flow.keys[k].acked && v <= w->flow.keys[k].acked + w->flow.keys[k].unknown);
    }
    uint64_t moved = redtls_async_cluster_stat_get(storm, REDTLS_CLUSTER_STAT_MOVED);
    /* The refresh the MOVEDs asked for runs in the background: drive the
     * loop with a command at a time until it is in. */
    end = lab_now_ms() + 3000;
    size_t id;
    const char *get0[] = {"GET", w->flow.keys[0].name};
    while (redtls_async_cluster_stat_get(storm, REDTLS_CLUSTER_STAT_REFRESHES) == refreshes0 &&
           lab_now_ms() < end) {
        assert_acl_status(storm, lab_acl_issue_argv(T.t, storm, 0, 2, get0, &id), REDTLS_OK);
        assert_int_equal(lab_acl_run_all(storm, T.t, 5000), 1);
        lab_sleep_ms(20);
    }
    /* Some more time: no second refresh comes. */
    for (int i = 0; i < 5; i++) {
        assert_acl_status(storm, lab_acl_issue_argv(T.t, storm, 0, 2, get0, &id), REDTLS_OK);
        assert_int_equal(lab_acl_run_all(storm, T.t, 5000), 1);
        lab_sleep_ms(20);
    }
    uint64_t refreshes = redtls_async_cluster_stat_get(storm, REDTLS_CLUSTER_STAT_REFRESHES) - refreshes0;
    char stats[512];
    lab_acl_stats_line(storm, stats, sizeof stats);
    print_message("MOVED storm: %llu MOVED replies, %llu refresh(es); %s\n", (unsigned long long)moved,
                  (unsigned long long)refreshes, stats);
    assert_int_equal(moved, NKEYS);
    assert_int_equal(refreshes, 1);
    /* The new map: no more redirections. */
    assert_int_equal(redtls_async_cluster_stat_get(storm, REDTLS_CLUSTER_STAT_MOVED), moved);

    /* A split MGET on the other stale handle: the writer's 512 keys (4
     * slots, all moved) and 2 keys elsewhere. Each moved part is
     * redirected, and the merged values come back in the caller's order. */
    static const char *mget[1 + NKEYS + 2];
    mget[0] = "MGET";
    mget[1] = "elsewhere:a";
    for (size_t k = 0; k < NKEYS; k++)
        mget[2 + k] = w->flow.keys[k].name;
    mget[2 + NKEYS] = "elsewhere:b";
    T.t->after = keep_mget;
    assert_acl_status(T.stale, lab_acl_issue_argv(T.t, T.stale, 0, 1 + NKEYS + 2, mget, &id), REDTLS_OK);
    assert_int_equal(lab_acl_run_all(T.stale, T.t, 20000), 1);
    T.t->after = NULL;
    assert_int_equal(T.t->cmd[id].calls, 1);
    assert_acl_status(T.stale, T.t->cmd[id].st, REDTLS_OK);
    assert_int_equal(mget_n, NKEYS + 2);
    assert_int_equal(mget_vals[0], -1);
    assert_int_equal(mget_vals[NKEYS + 1], -1);
    for (size_t k = 0; k < NKEYS; k++)
        assert_int_equal(mget_vals[1 + k], atoll(T.t->cmd[base + k].str));
    uint64_t stale_moved = redtls_async_cluster_stat_get(T.stale, REDTLS_CLUSTER_STAT_MOVED);
    print_message("split MGET of %d keys on a stale map: %llu MOVED followed, %llu splits\n", NKEYS + 2,
                  (unsigned long long)stale_moved,
                  (unsigned long long)redtls_async_cluster_stat_get(T.stale, REDTLS_CLUSTER_STAT_SPLITS));
    /* One part per moved slot was redirected. */
    assert_int_equal(stale_moved, 4);
    assert_int_equal(lab_acl_tally_check(T.t, "MOVED storm"), 0);
}

/* ----- failovers ------------------------------------------------------------------ */

/* Makes sure a master's writes reached its replica, so a failover cannot
 * lose acknowledged writes for reasons of Redis's own (asynchronous
 * replication) rather than the client's. */
static void sync_replica(size_t m)
{
    redisReply *r = NULL;
    assert_int_equal(lab_cluster_admin(&lc, m, &r, "WAIT 1 2000"), 0);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
}

/* kill -9 of a master while SETs flow (REDTLS_CMD_IDEMPOTENT, so a SET
 * lost in flight is sent once more): the replica takes over, no command
 * fails, every acknowledged SET is there afterwards. */
static void test_failover_kill(void **state)
{
    (void)state;
    writer *w = &T.w;
    writer_start(w, LAB_ACL_FLOW_SET, REDTLS_CMD_IDEMPOTENT, "kill", NULL, 0);
    lab_sleep_ms(500);
    int m = lab_cluster_master_of(&lc, 5000);
    assert_true(m >= 0);
    int rep = lab_cluster_replica_of(&lc, (size_t)m);
    assert_true(rep >= 0);
    writer_hold(w);
    long long ops0 = w->flow.ops;
    sync_replica((size_t)m);
    writer_release(w);
    lab_sleep_ms(50);
    long long t_kill = lab_now_ms();
    assert_int_equal(lab_cluster_kill(&lc, (size_t)m), 0);
    T.restart_node = m;
    /* Recovery: the replica took over and the cluster is ok. */
    assert_int_equal(lab_cluster_wait_ok(&lc, 20000), 0);
    long long t_ok = lab_now_ms();
    lab_sleep_ms(1000);
    long long lost = 0;
    writer_finish(w, "failover by SIGKILL", &lost);
    print_message("SIGKILL of master node%d: cluster ok again after %lld ms; longest command %lld ms; %lld commands "
                  "before the kill\n",
                  m + 1, t_ok - t_kill, w->flow.max_latency_ms, ops0);
    assert_int_equal(lost, 0);
    assert_int_equal(w->flow.failed, 0);
    assert_int_equal(w->flow.timeouts, 0);
    assert_int_equal(w->flow.refused, 0);
    /* Idempotent: the SETs in flight at the kill were sent again. */
    assert_int_equal(w->flow.unknown, 0);
    assert_true(redtls_async_cluster_stat_get(w->acl, REDTLS_CLUSTER_STAT_NODE_FAILURES) > 0);
    assert_true(w->flow.ops > ops0);
    assert_int_equal(lab_cluster_is_master(&lc, (size_t)rep), 1);
    assert_true(w->flow.max_latency_ms < WRITER_TIMEOUT_MS);
    /* The old master comes back as a replica. */
    T.restart_node = -1;
    assert_int_equal(lab_cluster_restart(&lc, (size_t)m), 0);
    assert_int_equal(lab_cluster_wait_ok(&lc, 20000), 0);
}

/* CLUSTER FAILOVER on a replica while INCRs flow (not idempotent): no
 * command fails, no INCR is lost or counted twice. */
static void test_failover_manual(void **state)
{
    (void)state;
    writer *w = &T.w;
    writer_start(w, LAB_ACL_FLOW_INCR, 0, "manual", NULL, 0);
    lab_sleep_ms(500);
    int m = lab_cluster_master_of(&lc, 9000);
    assert_true(m >= 0);
    int rep = lab_cluster_replica_of(&lc, (size_t)m);
    assert_true(rep >= 0);
    long long t0 = lab_now_ms();
    assert_int_equal(lab_cluster_failover(&lc, (size_t)rep, 20000), 0);
    long long t1 = lab_now_ms();
    /* A look at the count (the writer paused for it), to see the writes
     * go on after the failover. */
    writer_hold(w);
    long long ops0 = w->flow.ops;
    writer_release(w);
    lab_sleep_ms(1000);
    long long lost = 0;
    writer_finish(w, "CLUSTER FAILOVER", &lost);
    print_message("CLUSTER FAILOVER to node%d: done after %lld ms; longest command %lld ms\n", rep + 1, t1 - t0,
                  w->flow.max_latency_ms);
    assert_int_equal(lost, 0);
    assert_int_equal(w->flow.failed, 0);
    assert_int_equal(w->flow.timeouts, 0);
    assert_int_equal(w->flow.refused, 0);
    assert_true(w->flow.ops > ops0);
    assert_int_equal(lab_cluster_is_master(&lc, (size_t)rep), 1);
    assert_true(w->flow.max_latency_ms < WRITER_TIMEOUT_MS);
}

int main(void)
{
    const char *filter = getenv("REDTLS_TEST_FILTER");
    if (filter != NULL && filter[0] != '\0')
        cmocka_set_test_filter(filter);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_live_resharding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failover_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failover_manual, setup, teardown),
    };
    return cmocka_run_group_tests_name("integration.async_cluster_failover", tests, group_setup, group_teardown);
}

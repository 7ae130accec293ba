/* The cluster client while the cluster changes under it, against a real TLS
 * Redis Cluster (3 masters + 3 replicas, ACL, host names, per-node
 * certificates): live resharding of slots while a writer runs (ASK, then
 * MOVED), failover by SIGKILL of a master and by CLUSTER FAILOVER, and a
 * node whose certificate does not match its announced name. A writer thread
 * with its own cluster handle INCRs keys across all slots and records every
 * acknowledgement; afterwards each key's value is checked against them. */
#include <poll.h>
#include <pthread.h>
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
#include "lab_assert.h"
#include "lab_cluster.h"
#include "lab_cluster_client.h"

#define TOKEN "failover-Token-2b7d90aa"
#define NKEYS 512

static lab_cluster lc;

static redtls_config *cluster_config(const lab_cluster *c, unsigned timeout_ms)
{
    redtls_config *cfg = lab_cluster_client_config(c, TOKEN, NULL, timeout_ms);
    assert_cfg_status(cfg, redtls_config_set_connect_timeout_ms(cfg, 1000), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_backoff(cfg, 50, 500), REDTLS_OK);
    return cfg;
}

static redtls_cluster *new_cluster(const lab_cluster *c, unsigned timeout_ms)
{
    redtls_config *cfg = cluster_config(c, timeout_ms);
    char seeds[256];
    snprintf(seeds, sizeof seeds, "%s:%u,%s:%u", c->node[0].hostname, (unsigned)c->node[0].srv.port,
             c->node[1].hostname, (unsigned)c->node[1].srv.port);
    redtls_cluster *cl = NULL;
    assert_cfg_status(cfg, redtls_cluster_new(cfg, seeds, &cl), REDTLS_OK);
    redtls_config_free(cfg);
    return cl;
}

/* ----- the writer ------------------------------------------------------- */

typedef struct writer {
    pthread_t thread;
    redtls_cluster *cl;
    char keys[NKEYS][24];
    long long acked[NKEYS];   /* INCRs acknowledged */
    long long unknown[NKEYS]; /* INCRs whose outcome is unknown */
    long long failed;         /* calls that failed (not sent) */
    long long ops;
    long long max_latency_ms;
    volatile int stop;
    char first_error[512];
    /* Restricting the writer to some slots (resharding). */
    const unsigned *only_slots;
    size_t nonly;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    uint64_t x = 88172645463325252ULL;
    while (!w->stop) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t k = (size_t)(x % NKEYS);
        const char *argv[] = {"INCR", w->keys[k]};
        redisReply *r = NULL;
        long long t0 = lab_now_ms();
        redtls_status st = redtls_cluster_command_argv(w->cl, 0, 2, argv, NULL, &r);
        long long dt = lab_now_ms() - t0;
        if (dt > w->max_latency_ms)
            w->max_latency_ms = dt;
        w->ops++;
        if (st == REDTLS_OK && r->type == REDIS_REPLY_INTEGER) {
            w->acked[k]++;
        } else if (st == REDTLS_E_OUTCOME_UNKNOWN) {
            w->unknown[k]++;
        } else {
            w->failed++;
            if (!w->first_error[0])
                snprintf(w->first_error, sizeof w->first_error, "%s: %s", redtls_strerror(st),
                         st == REDTLS_OK ? r->str : redtls_cluster_errmsg(w->cl));
        }
        redtls_reply_free(r);
    }
    return NULL;
}

/* Keys spread over all slots, or only over the given slots ("{slotkey}n"). */
static void writer_start(writer *w, const char *prefix, const unsigned *slots, size_t nslots)
{
    memset(w, 0, sizeof *w);
    w->cl = new_cluster(&lc, 15000);
    for (size_t k = 0; k < NKEYS; k++) {
        if (slots) {
            /* Find a tag for the slot. */
            unsigned want = slots[k % nslots];
            for (unsigned t = 0;; t++) {
                char tag[16];
                int n = snprintf(tag, sizeof tag, "t%u", t);
                if (redtls_cluster_key_slot(tag, (size_t)n) == want) {
                    snprintf(w->keys[k], sizeof w->keys[k], "%s{%s}%zu", prefix, tag, k);
                    break;
                }
            }
        } else {
            snprintf(w->keys[k], sizeof w->keys[k], "%s:%zu", prefix, k);
        }
    }
    /* Start from zero. */
    for (size_t k = 0; k < NKEYS; k++) {
        const char *argv[] = {"DEL", w->keys[k]};
        redisReply *r = NULL;
        assert_cl_status(w->cl, redtls_cluster_command_argv(w->cl, 0, 2, argv, NULL, &r), REDTLS_OK);
        redtls_reply_free(r);
    }
    assert_int_equal(pthread_create(&w->thread, NULL, writer_main, w), 0);
}

/* Stops the writer and checks every key: acknowledged <= value <=
 * acknowledged + unknown. Returns the number of lost writes. */
static long long writer_finish(writer *w, const char *what)
{
    w->stop = 1;
    assert_int_equal(pthread_join(w->thread, NULL), 0);
    long long lost = 0, extra = 0, acked = 0, unknown = 0;
    for (size_t k = 0; k < NKEYS; k++) {
        const char *argv[] = {"GET", w->keys[k]};
        redisReply *r = NULL;
        assert_cl_status(w->cl, redtls_cluster_command_argv(w->cl, 0, 2, argv, NULL, &r), REDTLS_OK);
        long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
        redtls_reply_free(r);
        if (v < w->acked[k])
            lost += w->acked[k] - v;
        if (v > w->acked[k] + w->unknown[k])
            extra += v - w->acked[k] - w->unknown[k];
        acked += w->acked[k];
        unknown += w->unknown[k];
    }
    print_message("%s: %lld commands, %lld acknowledged, %lld outcome unknown, %lld failed, %lld lost, "
                  "%lld unexplained, max latency %lld ms; MOVED %llu ASK %llu TRYAGAIN/CLUSTERDOWN %llu "
                  "node failures %llu refreshes %llu\n",
                  what, w->ops, acked, unknown, w->failed, lost, extra, w->max_latency_ms,
                  (unsigned long long)redtls_cluster_stat_get(w->cl, REDTLS_CLUSTER_STAT_MOVED),
                  (unsigned long long)redtls_cluster_stat_get(w->cl, REDTLS_CLUSTER_STAT_ASK),
                  (unsigned long long)redtls_cluster_stat_get(w->cl, REDTLS_CLUSTER_STAT_TRYAGAIN),
                  (unsigned long long)redtls_cluster_stat_get(w->cl, REDTLS_CLUSTER_STAT_NODE_FAILURES),
                  (unsigned long long)redtls_cluster_stat_get(w->cl, REDTLS_CLUSTER_STAT_REFRESHES));
    if (w->first_error[0])
        print_message("%s: first failure: %s\n", what, w->first_error);
    assert_int_equal(extra, 0);
    return lost;
}

static void run_for(long long ms)
{
    long long end = lab_now_ms() + ms;
    while (lab_now_ms() < end)
        poll(NULL, 0, 20);
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

/* Moves slots from one master to another, key batch by key batch, while
 * the writer INCRs keys of exactly those slots. */
static void test_live_resharding(void **state)
{
    (void)state;
    unsigned slots[4] = {100, 101, 102, 103};
    int src = lab_cluster_master_of(&lc, slots[0]);
    assert_true(src >= 0);
    int dst = lab_cluster_master_of(&lc, 16000);
    assert_true(dst >= 0 && dst != src);
    writer w;
    writer_start(&w, "reshard", slots, 4);
    /* A second handle that sits idle during the move: its map goes stale. */
    redtls_cluster *storm = new_cluster(&lc, 5000);
    assert_cl_status(storm, redtls_cluster_connect(storm), REDTLS_OK);
    run_for(300);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(lab_cluster_migrate_begin(&lc, slots[i], (size_t)src, (size_t)dst), 0);
        int moved;
        run_for(100);
        while ((moved = lab_cluster_migrate_keys(&lc, slots[i], (size_t)src, (size_t)dst, 16)) > 0)
            run_for(60);
        assert_int_equal(moved, 0);
        run_for(100);
        assert_int_equal(lab_cluster_migrate_end(&lc, slots[i], (size_t)src, (size_t)dst), 0);
        run_for(150);
    }
    run_for(300);
    long long lost = writer_finish(&w, "live resharding of 4 slots");
    assert_int_equal(lost, 0);
    assert_int_equal(w.failed, 0);
    assert_true(redtls_cluster_stat_get(w.cl, REDTLS_CLUSTER_STAT_ASK) > 0);
    assert_true(redtls_cluster_stat_get(w.cl, REDTLS_CLUSTER_STAT_MOVED) > 0);
    assert_int_equal(lab_cluster_master_of(&lc, slots[0]), dst);

    /* A storm of MOVED: 512 pipelined GETs for the moved slots, all sent to
     * the old owner, cost one refresh. Redirections are followed within the
     * batch; the refresh they ask for runs at the next call. */
    uint64_t refreshes0 = redtls_cluster_stat_get(storm, REDTLS_CLUSTER_STAT_REFRESHES);
    for (size_t k = 0; k < NKEYS; k++) {
        const char *argv[] = {"GET", w.keys[k]};
        assert_cl_status(storm, redtls_cluster_append_argv(storm, 0, 2, argv, NULL), REDTLS_OK);
    }
    for (size_t k = 0; k < NKEYS; k++) {
        redisReply *r = NULL;
        assert_cl_status(storm, redtls_cluster_get_reply(storm, &r), REDTLS_OK);
        assert_true(r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL);
        redtls_reply_free(r);
    }
    {
        const char *argv[] = {"GET", w.keys[0]};
        redisReply *r = NULL;
        assert_cl_status(storm, redtls_cluster_command_argv(storm, 0, 2, argv, NULL, &r), REDTLS_OK);
        redtls_reply_free(r);
    }
    uint64_t moved = redtls_cluster_stat_get(storm, REDTLS_CLUSTER_STAT_MOVED);
    uint64_t refreshes = redtls_cluster_stat_get(storm, REDTLS_CLUSTER_STAT_REFRESHES) - refreshes0;
    print_message("MOVED storm: %llu MOVED replies, %llu refresh(es)\n", (unsigned long long)moved,
                  (unsigned long long)refreshes);
    assert_int_equal(moved, NKEYS);
    assert_int_equal(refreshes, 1);
    redtls_cluster_free(storm);
    redtls_cluster_free(w.cl);
}

/* Makes sure a master's writes reached its replica, so a failover cannot
 * lose acknowledged writes for reasons of Redis's own (asynchronous
 * replication) rather than the client's. */
static void sync_replica(size_t m)
{
    redisReply *r = NULL;
    assert_int_equal(lab_cluster_admin(&lc, m, &r, "WAIT 1 2000"), 0);
    freeReplyObject(r);
}

static void test_failover_kill(void **state)
{
    (void)state;
    writer w;
    writer_start(&w, "kill", NULL, 0);
    run_for(500);
    int m = lab_cluster_master_of(&lc, 5000);
    int rep = lab_cluster_replica_of(&lc, (size_t)m);
    assert_true(m >= 0 && rep >= 0);
    long long ops0 = w.ops;
    w.stop = 2; /* pause: the writer thread ends its current command */
    assert_int_equal(pthread_join(w.thread, NULL), 0);
    sync_replica((size_t)m);
    w.stop = 0;
    w.max_latency_ms = 0;
    assert_int_equal(pthread_create(&w.thread, NULL, writer_main, &w), 0);
    long long t_kill = lab_now_ms();
    assert_int_equal(lab_cluster_kill(&lc, (size_t)m), 0);
    /* Recovery: the replica took over and the cluster is ok. */
    assert_int_equal(lab_cluster_wait_ok(&lc, 20000), 0);
    long long t_ok = lab_now_ms();
    run_for(1000);
    long long lost = writer_finish(&w, "failover by SIGKILL");
    print_message("SIGKILL of master node%d: cluster ok again after %lld ms; longest client call %lld ms; "
                  "%lld commands before the kill\n",
                  m + 1, t_ok - t_kill, w.max_latency_ms, ops0);
    assert_int_equal(lost, 0);
    assert_int_equal(w.failed, 0);
    assert_int_equal(lab_cluster_is_master(&lc, (size_t)rep), 1);
    assert_true(w.max_latency_ms < 15000);
    redtls_cluster_free(w.cl);
    /* The old master comes back as a replica. */
    assert_int_equal(lab_cluster_restart(&lc, (size_t)m), 0);
    assert_int_equal(lab_cluster_wait_ok(&lc, 20000), 0);
}

static void test_failover_manual(void **state)
{
    (void)state;
    writer w;
    writer_start(&w, "manual", NULL, 0);
    run_for(500);
    int m = lab_cluster_master_of(&lc, 9000);
    int rep = lab_cluster_replica_of(&lc, (size_t)m);
    assert_true(m >= 0 && rep >= 0);
    long long t0 = lab_now_ms();
    assert_int_equal(lab_cluster_failover(&lc, (size_t)rep, 20000), 0);
    long long t1 = lab_now_ms();
    run_for(1000);
    long long lost = writer_finish(&w, "CLUSTER FAILOVER");
    print_message("CLUSTER FAILOVER to node%d: done after %lld ms; longest client call %lld ms\n", rep + 1, t1 - t0,
                  w.max_latency_ms);
    assert_int_equal(lost, 0);
    assert_int_equal(w.failed, 0);
    assert_true(w.max_latency_ms < 15000);
    redtls_cluster_free(w.cl);
}

/* A node presenting another node's certificate is refused; the others
 * keep working. Also: one wildcard certificate with IP endpoints, verified
 * against a fixed name. */
static void test_per_node_verification(void **state)
{
    (void)state;
    lab_cluster bad;
    lab_cluster_opts o = lab_cluster_default_opts();
    o.replicas = 0;
    o.password = TOKEN;
    o.bad_cert_node = 2;
    assert_int_equal(lab_cluster_start(&bad, &o), 0);
    redtls_config *cfg = cluster_config(&bad, 3000);
    char seeds[128];
    snprintf(seeds, sizeof seeds, "%s:%u", bad.node[0].hostname, (unsigned)bad.node[0].srv.port);
    redtls_cluster *cl = NULL;
    assert_cfg_status(cfg, redtls_cluster_new(cfg, seeds, &cl), REDTLS_OK);
    redtls_config_free(cfg);
    int ok = 0, refused = 0, other = 0;
    for (unsigned s = 0; s < LAB_CLUSTER_SLOTS; s += 512) {
        char tag[16];
        unsigned t = 0;
        int n;
        do
            n = snprintf(tag, sizeof tag, "t%u", t++);
        while (redtls_cluster_key_slot(tag, (size_t)n) != s);
        const char *argv[] = {"SET", tag, "v"};
        redisReply *r = NULL;
        redtls_status st = redtls_cluster_command_argv(cl, 0, 3, argv, NULL, &r);
        int owner = lab_cluster_master_of(&bad, s);
        if (st == REDTLS_OK) {
            ok++;
            assert_int_not_equal(owner, 1);
        } else if (st == REDTLS_E_TLS_HOSTNAME) {
            refused++;
            assert_int_equal(owner, 1);
            assert_contains(redtls_cluster_errmsg(cl), "node2.cluster.test");
        } else {
            other++;
            print_error("slot %u: %s: %s\n", s, redtls_strerror(st), redtls_cluster_errmsg(cl));
        }
        redtls_reply_free(r);
    }
    print_message("node2 with node1's certificate: %d commands refused (E_TLS_HOSTNAME), %d served by the others\n",
                  refused, ok);
    assert_int_equal(other, 0);
    assert_true(refused > 0 && ok > 0);
    redtls_cluster_free(cl);
    lab_cluster_stop(&bad);

    /* Wildcard certificate, IP endpoints. */
    o = lab_cluster_default_opts();
    o.replicas = 0;
    o.password = TOKEN;
    o.wildcard_cert = 1;
    o.announce_ips = 1;
    assert_int_equal(lab_cluster_start(&bad, &o), 0);
    cfg = cluster_config(&bad, 3000);
    snprintf(seeds, sizeof seeds, "127.0.0.1:%u", (unsigned)bad.node[0].srv.port);
    /* Without a name: the certificate has no IP SAN. */
    assert_cfg_status(cfg, redtls_cluster_new(cfg, seeds, &cl), REDTLS_OK);
    assert_cl_status(cl, redtls_cluster_connect(cl), REDTLS_E_TLS_HOSTNAME);
    redtls_cluster_free(cl);
    assert_cfg_status(cfg, redtls_config_set_verify_name(cfg, "node.cluster.test"), REDTLS_OK);
    assert_cfg_status(cfg, redtls_cluster_new(cfg, seeds, &cl), REDTLS_OK);
    redtls_config_free(cfg);
    for (unsigned i = 0; i < 300; i++) {
        char key[16];
        snprintf(key, sizeof key, "w%u", i);
        const char *argv[] = {"SET", key, "v"};
        redisReply *r = NULL;
        assert_cl_status(cl, redtls_cluster_command_argv(cl, 0, 3, argv, NULL, &r), REDTLS_OK);
        redtls_reply_free(r);
    }
    assert_int_equal(redtls_cluster_node_count(cl), 3);
    assert_contains(redtls_cluster_node_name(cl, 0), "127.0.0.1:");
    redtls_cluster_free(cl);
    lab_cluster_stop(&bad);

    /* IP endpoints with per-node certificates: each node is verified by the
     * host name it announces next to its IP (Redis 7 metadata), with no
     * configuration at all; a configured name or mapping takes precedence. */
    o = lab_cluster_default_opts();
    o.replicas = 0;
    o.password = TOKEN;
    o.announce_ips = 1;
    assert_int_equal(lab_cluster_start(&bad, &o), 0);
    cfg = cluster_config(&bad, 3000);
    /* The seed is given by name (an IP seed would need a name of its own). */
    char seedname[80];
    snprintf(seedname, sizeof seedname, "%s:%u", bad.node[0].hostname, (unsigned)bad.node[0].srv.port);
    assert_cfg_status(cfg, redtls_cluster_new(cfg, seedname, &cl), REDTLS_OK);
    for (unsigned i = 0; i < 300; i++) {
        char key[16];
        snprintf(key, sizeof key, "m%u", i);
        const char *argv[] = {"SET", key, "v"};
        redisReply *r = NULL;
        assert_cl_status(cl, redtls_cluster_command_argv(cl, 0, 3, argv, NULL, &r), REDTLS_OK);
        redtls_reply_free(r);
    }
    assert_contains(redtls_cluster_node_name(cl, 0), "127.0.0.1:");
    redtls_cluster_free(cl);
    /* A mapping for the address wins: every node is then checked as node1,
     * so only node1's slots work. */
    assert_cfg_status(cfg, redtls_config_map_verify_name(cfg, "127.0.0.1", "node1.cluster.test"), REDTLS_OK);
    assert_cfg_status(cfg, redtls_cluster_new(cfg, seedname, &cl), REDTLS_OK);
    int served = 0, other_refused = 0;
    for (unsigned s = 0; s < LAB_CLUSTER_SLOTS; s += 1024) {
        const char *argv[] = {"CLUSTER", "COUNTKEYSINSLOT", "0"};
        redisReply *r = NULL;
        redtls_status st = redtls_cluster_command_slot(cl, s, 0, 3, argv, NULL, &r);
        if (st == REDTLS_OK)
            served += lab_cluster_master_of(&bad, s) == 0;
        else if (st == REDTLS_E_TLS_HOSTNAME)
            other_refused += lab_cluster_master_of(&bad, s) != 0;
        redtls_reply_free(r);
    }
    print_message("IP endpoints verified by announced host names; with a mapping to node1: %d slots served, %d "
                  "refused\n", served, other_refused);
    assert_int_equal(served + other_refused, 16);
    assert_true(served > 0 && other_refused > 0);
    redtls_cluster_free(cl);
    redtls_config_free(cfg);
    lab_cluster_stop(&bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_live_resharding),
        cmocka_unit_test(test_failover_kill),
        cmocka_unit_test(test_failover_manual),
        cmocka_unit_test(test_per_node_verification),
    };
    return cmocka_run_group_tests_name("cluster_failover", tests, group_setup, group_teardown);
}

/* Self-test of the TLS Redis Cluster harness (tests/harness/lab_cluster.h):
 * layout, announced host names, writes on the right master, failover after
 * kill -9, rejoin after restart, slot migration over TLS, and the wildcard,
 * IP-endpoint and wrong-certificate variants. The tests run in order on one
 * cluster; each later one needs the earlier ones to have passed. */
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
#include <redtls/redtls.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_cluster.h"
#include "lab_proxy.h"

#define PASSWORD "lab-Cluster-Pass-5c81"
#define FAILOVER_BOUND_MS 10000
#define WAIT_OK_MS 10000

static lab_cluster cl;
static int failed_master = -1;  /* killed by test_failover, restarted after */
static int promoted = -1;

static int group_setup(void **state)
{
    (void)state;
    if (lab_init(80) != 0 || lab_certs(NULL) == NULL) {
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    lab_cluster_stop(&cl);
    return 0;
}

/* Admin command (words separated by spaces) on node i; the reply. */
static redisReply *admin(size_t i, const char *cmd)
{
    redisReply *r = NULL;
    char buf[256];
    const char *argv[16];
    int argc = 0;
    char *save = NULL;
    snprintf(buf, sizeof buf, "%s", cmd);
    for (char *tok = strtok_r(buf, " ", &save); tok != NULL && argc < 16; tok = strtok_r(NULL, " ", &save)) {
        argv[argc++] = tok;
    }
    assert_int_equal(lab_cluster_admin_argv(&cl, i, &r, argc, argv, NULL), 0);
    assert_non_null(r);
    return r;
}

static long long admin_int(size_t i, const char *fmt, const char *arg)
{
    redisReply *r = NULL;
    long long v;
    assert_int_equal(lab_cluster_admin(&cl, i, &r, fmt, arg), 0);
    if (r->type != REDIS_REPLY_INTEGER) {
        print_error("node %zu: %s: %s\n", i, fmt, r->type == REDIS_REPLY_ERROR ? r->str : "not an integer");
        fail();
    }
    v = r->integer;
    freeReplyObject(r);
    return v;
}

static unsigned keyslot(const char *key)
{
    return (unsigned)admin_int(0, "CLUSTER KEYSLOT %s", key);
}

/* CLUSTER SLOTS entry element: [start, end, [host, port, id, {meta}], replicas...] */
static void check_endpoint(const redisReply *ep, int want_ip)
{
    int idx;
    assert_int_equal(ep->type, REDIS_REPLY_ARRAY);
    assert_true(ep->elements >= 3);
    idx = lab_cluster_index_of(&cl, ep->element[2]->str);
    assert_true(idx >= 0);
    assert_int_equal(ep->element[1]->integer, cl.node[idx].srv.port);
    if (want_ip) {
        assert_string_equal(ep->element[0]->str, "127.0.0.1");
        /* The host name stays available as metadata. */
        assert_true(ep->elements >= 4);
        assert_true(ep->element[3]->elements >= 2);
        assert_string_equal(ep->element[3]->element[0]->str, "hostname");
        assert_string_equal(ep->element[3]->element[1]->str, cl.node[idx].hostname);
    } else {
        assert_string_equal(ep->element[0]->str, cl.node[idx].hostname);
    }
}

/* Checks a CLUSTER SLOTS reply: 16384 slots, every master with one replica
 * (when the cluster has replicas), endpoints as announced. */
static void check_slots(const redisReply *r, int want_ip)
{
    unsigned covered = 0;
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, (size_t)cl.opts.masters);
    for (size_t k = 0; k < r->elements; k++) {
        const redisReply *e = r->element[k];
        assert_int_equal(e->type, REDIS_REPLY_ARRAY);
        assert_int_equal(e->elements, 3 + (size_t)cl.opts.replicas);
        covered += (unsigned)(e->element[1]->integer - e->element[0]->integer + 1);
        for (size_t j = 2; j < e->elements; j++) {
            check_endpoint(e->element[j], want_ip);
        }
    }
    assert_int_equal(covered, LAB_CLUSTER_SLOTS);
}

/* A TLS connection to node i verifying the certificate against name. */
static redtls_status tls_connect(size_t i, const char *name, const char *token, redtls_conn **out)
{
    redtls_config *cfg = NULL;
    redtls_status st;
    *out = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_host(cfg, "127.0.0.1", cl.node[i].srv.port), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_ca_file(cfg, lab_cert("ca.crt")), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_verify_name(cfg, name), REDTLS_OK);
    if (token != NULL) {
        assert_cfg_status(cfg, redtls_config_set_token(cfg, token), REDTLS_OK);
    }
    assert_cfg_status(cfg, redtls_conn_new(cfg, out), REDTLS_OK);
    redtls_config_free(cfg);
    st = redtls_conn_connect(*out);
    if (st != REDTLS_OK) {
        print_message("tls to node %zu as %s: %s: %s\n", i, name, redtls_strerror(st), redtls_conn_errmsg(*out));
    }
    return st;
}

static void test_start(void **state)
{
    lab_cluster_opts o = lab_cluster_default_opts();
    (void)state;
    o.password = PASSWORD;
    assert_int_equal(lab_cluster_start(&cl, &o), 0);
    print_message("cluster: %zu nodes ready in %lld ms\n", cl.n, cl.start_ms);
    assert_int_equal(cl.n, 6);
    for (size_t i = 0; i < cl.n; i++) {
        assert_true(cl.node[i].alive);
        assert_int_equal(strlen(cl.node[i].id), 40);
        assert_int_equal(lab_cluster_is_master(&cl, i), i < 3 ? 1 : 0);
        if (i < 3) {
            assert_int_equal(lab_cluster_replica_of(&cl, i), (int)i + 3);
        }
    }
    assert_int_equal(lab_cluster_master_of(&cl, 0), 0);
    assert_int_equal(lab_cluster_master_of(&cl, 8191), 1);
    assert_int_equal(lab_cluster_master_of(&cl, 16383), 2);
}

static void test_layout(void **state)
{
    redisReply *r;
    (void)state;
    assert_int_equal(cl.n, 6);
    r = admin(0, "CLUSTER INFO");
    assert_contains(r->str, "cluster_state:ok");
    assert_contains(r->str, "cluster_slots_assigned:16384");
    assert_contains(r->str, "cluster_known_nodes:6");
    assert_contains(r->str, "cluster_size:3");
    freeReplyObject(r);
    for (size_t i = 0; i < cl.n; i++) {
        r = admin(i, "CLUSTER SLOTS");
        check_slots(r, 0);
        freeReplyObject(r);
    }
    /* What a client sees: each node over TLS, verified by its own name,
     * with the default user's password. */
    for (size_t i = 0; i < cl.n; i++) {
        redtls_conn *conn;
        struct redisReply *rr = NULL;
        assert_int_equal(tls_connect(i, cl.node[i].hostname, PASSWORD, &conn), REDTLS_OK);
        assert_conn_status(conn, redtls_conn_command(conn, &rr, "CLUSTER SLOTS"), REDTLS_OK);
        check_slots(rr, 0);
        redtls_reply_free(rr);
        redtls_conn_free(conn);
    }
    /* The certificate names only the node: another node's name fails. */
    {
        redtls_conn *conn;
        assert_int_equal(tls_connect(0, cl.node[1].hostname, PASSWORD, &conn), REDTLS_E_TLS_HOSTNAME);
        redtls_conn_free(conn);
    }
}

static void test_set_get(void **state)
{
    const char *key = "lab:cluster:key";
    unsigned slot;
    int m, other;
    redisReply *r = NULL;
    char moved[128];
    (void)state;
    assert_int_equal(cl.n, 6);
    slot = keyslot(key);
    m = lab_cluster_master_of(&cl, slot);
    assert_true(m >= 0 && m < 3);
    assert_int_equal(lab_cluster_admin(&cl, (size_t)m, &r, "SET %s %s", key, "v1"), 0);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    assert_int_equal(lab_cluster_admin(&cl, (size_t)m, &r, "GET %s", key), 0);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "v1");
    freeReplyObject(r);
    /* Another master redirects to the owner by its announced name. */
    other = (m + 1) % 3;
    assert_int_equal(lab_cluster_admin(&cl, (size_t)other, &r, "GET %s", key), 0);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    snprintf(moved, sizeof moved, "MOVED %u %s:%u", slot, cl.node[m].hostname, cl.node[m].srv.port);
    assert_string_equal(r->str, moved);
    freeReplyObject(r);
}

static void test_failover(void **state)
{
    const char *key = "lab:failover";
    unsigned slot;
    int m, r;
    long long t0, ms;
    redisReply *rep = NULL;
    (void)state;
    assert_int_equal(cl.n, 6);
    slot = keyslot(key);
    m = lab_cluster_master_of(&cl, slot);
    r = lab_cluster_replica_of(&cl, (size_t)m);
    assert_true(m >= 0 && r >= 0);
    assert_int_equal(lab_cluster_admin(&cl, (size_t)m, &rep, "SET %s %s", key, "survives"), 0);
    freeReplyObject(rep);
    assert_int_equal(lab_cluster_admin(&cl, (size_t)m, &rep, "WAIT 1 2000"), 0);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    assert_int_equal(rep->integer, 1);
    freeReplyObject(rep);

    t0 = lab_now_ms();
    assert_int_equal(lab_cluster_kill(&cl, (size_t)m), 0);
    failed_master = m;
    while (lab_cluster_is_master(&cl, (size_t)r) != 1) {
        assert_true(lab_now_ms() - t0 < FAILOVER_BOUND_MS);
        lab_sleep_ms(10);
    }
    ms = lab_now_ms() - t0;
    print_message("cluster: replica %d promoted %lld ms after kill -9 of master %d (node timeout %u ms)\n", r, ms,
                  m, cl.opts.node_timeout_ms);
    promoted = r;
    assert_int_equal(lab_cluster_wait_ok(&cl, WAIT_OK_MS), 0);
    print_message("cluster: ok again %lld ms after the kill\n", lab_now_ms() - t0);
    assert_int_equal(lab_cluster_master_of(&cl, slot), r);
    assert_int_equal(lab_cluster_admin(&cl, (size_t)r, &rep, "GET %s", key), 0);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_string_equal(rep->str, "survives");
    freeReplyObject(rep);
}

static void test_restart_rejoins(void **state)
{
    long long t0;
    redisReply *r;
    (void)state;
    assert_true(failed_master >= 0 && promoted >= 0);
    t0 = lab_now_ms();
    assert_int_equal(lab_cluster_restart(&cl, (size_t)failed_master), 0);
    assert_int_equal(lab_cluster_wait_ok(&cl, WAIT_OK_MS), 0);
    print_message("cluster: node %d rejoined as a replica in %lld ms\n", failed_master, lab_now_ms() - t0);
    assert_int_equal(lab_cluster_is_master(&cl, (size_t)failed_master), 0);
    assert_int_equal(lab_cluster_replica_of(&cl, (size_t)promoted), failed_master);
    r = admin((size_t)failed_master, "INFO replication");
    assert_contains(r->str, "role:slave");
    assert_contains(r->str, "master_link_status:up");
    freeReplyObject(r);
    r = admin(0, "CLUSTER INFO");
    assert_contains(r->str, "cluster_known_nodes:6");
    freeReplyObject(r);
}

static void test_migrate_slot(void **state)
{
    static const char *const keys[] = {"{lab-mig}a", "{lab-mig}b", "{lab-mig}c", "{lab-mig}d", "{lab-mig}e"};
    unsigned slot;
    int src, dst = -1, n, total = 0;
    redisReply *r = NULL;
    char ask[128];
    (void)state;
    assert_int_equal(cl.n, 6);
    slot = keyslot("{lab-mig}");
    src = lab_cluster_master_of(&cl, slot);
    assert_true(src >= 0);
    for (size_t i = 0; i < cl.n && dst < 0; i++) {
        if ((int)i != src && lab_cluster_is_master(&cl, i) == 1) {
            dst = (int)i;
        }
    }
    assert_true(dst >= 0);
    for (size_t k = 0; k < 5; k++) {
        assert_int_equal(lab_cluster_admin(&cl, (size_t)src, &r, "SET %s %s", keys[k], "x"), 0);
        assert_int_equal(r->type, REDIS_REPLY_STATUS);
        freeReplyObject(r);
    }
    assert_int_equal(lab_cluster_migrate_begin(&cl, slot, (size_t)src, (size_t)dst), 0);
    n = lab_cluster_migrate_keys(&cl, slot, (size_t)src, (size_t)dst, 2);
    assert_int_equal(n, 2);
    total += n;
    {
        /* Mid-migration a moved key is answered with ASK naming the
         * target. Which keys moved is up to redis: find one. */
        int asked = 0;
        for (size_t k = 0; k < 5 && !asked; k++) {
            assert_int_equal(lab_cluster_admin(&cl, (size_t)src, &r, "GET %s", keys[k]), 0);
            if (r->type == REDIS_REPLY_ERROR) {
                snprintf(ask, sizeof ask, "ASK %u %s:%u", slot, cl.node[dst].hostname, cl.node[dst].srv.port);
                assert_string_equal(r->str, ask);
                asked = 1;
            }
            freeReplyObject(r);
        }
        assert_true(asked);
    }
    while ((n = lab_cluster_migrate_keys(&cl, slot, (size_t)src, (size_t)dst, 2)) > 0) {
        total += n;
    }
    assert_int_equal(n, 0);
    assert_int_equal(total, 5);
    assert_int_equal(lab_cluster_migrate_end(&cl, slot, (size_t)src, (size_t)dst), 0);
    assert_int_equal(lab_cluster_wait_ok(&cl, WAIT_OK_MS), 0);
    {
        char slot_s[8];
        snprintf(slot_s, sizeof slot_s, "%u", slot);
        assert_int_equal(admin_int((size_t)dst, "CLUSTER COUNTKEYSINSLOT %s", slot_s), 5);
        assert_int_equal(admin_int((size_t)src, "CLUSTER COUNTKEYSINSLOT %s", slot_s), 0);
    }
    assert_int_equal(lab_cluster_master_of(&cl, slot), dst);
}

static void test_stop(void **state)
{
    pid_t pids[LAB_CLUSTER_MAX_NODES];
    size_t n = cl.n;
    (void)state;
    for (size_t i = 0; i < n; i++) {
        pids[i] = cl.node[i].srv.pid;
    }
    lab_cluster_stop(&cl);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(cl.node[i].srv.pid, 0);
        assert_int_equal(cl.node[i].alive, 0);
        /* Not ours any more: the harness refuses to signal it. */
        assert_int_equal(lab_signal(pids[i], 0), -1);
    }
}

static void test_wildcard_ips(void **state)
{
    lab_cluster_opts o = lab_cluster_default_opts();
    redisReply *r;
    redtls_conn *conn;
    (void)state;
    o.wildcard_cert = 1;
    o.announce_ips = 1;
    assert_int_equal(lab_cluster_start(&cl, &o), 0);
    print_message("cluster (wildcard, ip endpoints): ready in %lld ms\n", cl.start_ms);
    r = admin(1, "CLUSTER SLOTS");
    check_slots(r, 1);
    freeReplyObject(r);
    /* One certificate for all: any node verifies under any node's name. */
    assert_int_equal(tls_connect(2, cl.node[4].hostname, NULL, &conn), REDTLS_OK);
    redtls_conn_free(conn);
    lab_cluster_stop(&cl);
}

static void test_bad_cert_node(void **state)
{
    lab_cluster_opts o = lab_cluster_default_opts();
    redtls_conn *conn;
    (void)state;
    o.masters = 1;
    o.bad_cert_node = 2;
    /* redis checks peers against the CA only, so the cluster still forms. */
    assert_int_equal(lab_cluster_start(&cl, &o), 0);
    assert_int_equal(cl.n, 2);
    assert_int_equal(lab_cluster_replica_of(&cl, 0), 1);
    assert_int_equal(tls_connect(1, cl.node[1].hostname, NULL, &conn), REDTLS_E_TLS_HOSTNAME);
    redtls_conn_free(conn);
    assert_int_equal(tls_connect(1, cl.node[0].hostname, NULL, &conn), REDTLS_OK);
    redtls_conn_free(conn);
    lab_cluster_stop(&cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_set_get),
        cmocka_unit_test(test_failover),
        cmocka_unit_test(test_restart_rejoins),
        cmocka_unit_test(test_migrate_slot),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_wildcard_ips),
        cmocka_unit_test(test_bad_cert_node),
    };
    return cmocka_run_group_tests_name("cluster_lab", tests, group_setup, group_teardown);
}

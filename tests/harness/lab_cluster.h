/*
 * lab_cluster: a real Redis Cluster over TLS on loopback for the integration
 * tests, built from lab_redis_start() processes and driven through an admin
 * Unix socket per node with hiredis (never through the library under test).
 *
 * Every node listens on TLS only (a random high port, plain port 0), talks
 * TLS on the cluster bus and for replication and MIGRATE, and presents
 * nodeN.crt (SAN DNS:nodeN.cluster.test only, see scripts/gen-certs.sh) for
 * node index N-1. Nodes announce the host name nodeN.cluster.test (also with
 * announce_ips, where it is CLUSTER SLOTS metadata next to the IP endpoint)
 * and the IP 127.0.0.1. Since the names do not resolve, clients map them to
 * 127.0.0.1 themselves and verify each node by its name.
 *
 * ACL users on every node:
 *   default  opts->password (nopass when NULL), ~* &* +@all
 *   admin    LAB_CLUSTER_ADMIN_PASS, ~* &* +@all (the harness itself)
 *   repl     LAB_CLUSTER_REPL_PASS, +psync +replconf +ping (masteruser), so
 *            changing the default user's password never breaks replication
 * Other settings: cluster-allow-replica-migration no, cluster-replica-
 * validity-factor 0 (a replica always may take over), repl-diskless-sync-
 * delay 0, repl-ping-replica-period 1 (CLUSTER SLOTS lists a replica only
 * once its offset is non-zero), repl-diskless-load on-empty-db, rdb-del-
 * sync-files yes, enable-debug-command local, and a cluster-config-file in
 * a folder of the work dir, so a restarted node comes back as the same node.
 * A restarted node has no data (no persistence) until it syncs as a replica.
 *
 * Harness functions print a diagnostic to stderr and return -1 on failure.
 * Call lab_init() first; lab_cluster_start() runs lab_certs(NULL) itself.
 */
#ifndef REDTLS_TESTS_LAB_CLUSTER_H
#define REDTLS_TESTS_LAB_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "lab.h"

struct redisReply;

#define LAB_CLUSTER_MAX_NODES 6
#define LAB_CLUSTER_SLOTS 16384
#define LAB_CLUSTER_ADMIN_USER "admin"
#define LAB_CLUSTER_ADMIN_PASS "lab-admin-pass"
#define LAB_CLUSTER_REPL_USER "repl"
#define LAB_CLUSTER_REPL_PASS "lab-repl-pass"

typedef struct lab_cluster_opts {
    int masters;              /* default 3 when 0 */
    int replicas;             /* replicas per master: 0 or 1 (lab_cluster_default_opts: 1) */
    int wildcard_cert;        /* 1: every node presents cluster-wildcard.crt */
    int bad_cert_node;        /* 1-based node whose certificate names another node
                               * (node1.crt, or node2.crt for node 1), 0: none */
    const char *password;     /* password of the "default" ACL user on every node
                               * (copied), NULL: nopass */
    unsigned node_timeout_ms; /* cluster-node-timeout, default 2000 when 0 */
    int announce_ips;         /* 0: cluster-preferred-endpoint-type hostname
                               * (endpoints are nodeN.cluster.test); 1: ip
                               * (endpoints are 127.0.0.1, the host name is
                               * metadata) */
} lab_cluster_opts;

typedef struct lab_cluster_node {
    lab_server srv;           /* srv.port = TLS client port; srv.unix_path = admin socket */
    char hostname[64];        /* "nodeN.cluster.test" (N = index+1) */
    char id[41];              /* CLUSTER MYID */
    int alive;
    uint16_t bus_port;        /* cluster bus (TLS) */
    char conf_path[LAB_PATH_MAX]; /* cluster-config-file, survives restarts */
} lab_cluster_node;

typedef struct lab_cluster {
    size_t n;
    lab_cluster_node node[LAB_CLUSTER_MAX_NODES];
    lab_cluster_opts opts;
    char dir[LAB_PATH_MAX];   /* holds the cluster-config-files */
    char password[256];       /* opts.password points here */
    long long start_ms;       /* how long lab_cluster_start() took */
} lab_cluster;

/* 3 masters, 1 replica each, node timeout 2000 ms, host names, no password. */
lab_cluster_opts lab_cluster_default_opts(void);

/* Starts masters*(1+replicas) nodes (o NULL: lab_cluster_default_opts()),
 * assigns the slots evenly across masters 0..masters-1 in order, makes node
 * i+masters replicate node i, and waits until lab_cluster_wait_ok() holds
 * and every node knows every other. Returns 0 or -1 (nothing left running). */
int lab_cluster_start(lab_cluster *c, const lab_cluster_opts *o);

/* Stops every node by pid. Accepts a zeroed or stopped cluster. */
void lab_cluster_stop(lab_cluster *c);

/* Admin command (hiredis format) on node i through its Unix socket as user
 * admin. Returns 0 and the reply (caller frees with freeReplyObject /
 * redtls_reply_free) or -1. A Redis error reply is returned as reply, with 0. */
int lab_cluster_admin(lab_cluster *c, size_t i, struct redisReply **reply, const char *fmt, ...);
/* The same with an argument vector (argvlen NULL: strlen of each). */
int lab_cluster_admin_argv(lab_cluster *c, size_t i, struct redisReply **reply, int argc, const char **argv,
                           const size_t *argvlen);
/* Same on every live node; -1 if any fails or answers with an error reply. */
int lab_cluster_admin_all(lab_cluster *c, const char *fmt, ...);

/* SIGKILL by pid, reaps, marks dead. */
int lab_cluster_kill(lab_cluster *c, size_t i);
/* Starts node i again on the same ports with the same cluster-config-file:
 * it rejoins as the node it was (a replica if it was failed over). Returns
 * once the process accepts commands; lab_cluster_wait_ok() waits for the
 * cluster to take it back. */
int lab_cluster_restart(lab_cluster *c, size_t i);

/* Waits until every live node reports cluster_state:ok, the live nodes agree
 * on which node serves each slot, every slot has a live master, the live
 * nodes agree on each live node's role (and none flags a live node as
 * failing), every live replica of a live master has master_link_status:up,
 * and every live node's CLUSTER SLOTS lists exactly the live replicas of
 * each master. Returns 0, or -1 after timeout_ms with every node's CLUSTER
 * NODES on stderr. Right after lab_cluster_kill() of a master it therefore
 * waits for the failover. */
int lab_cluster_wait_ok(lab_cluster *c, unsigned timeout_ms);

/* Index of the node serving slot as master according to the first live node
 * that answers, or -1. */
int lab_cluster_master_of(lab_cluster *c, unsigned slot);
/* Index of a live node that says it replicates node m, or -1. */
int lab_cluster_replica_of(lab_cluster *c, size_t m);
/* 1 when node i says it is a master, 0 a replica, -1 unknown. */
int lab_cluster_is_master(lab_cluster *c, size_t i);
/* Index of the node whose CLUSTER MYID is id, or -1. */
int lab_cluster_index_of(const lab_cluster *c, const char *id);

/* CLUSTER FAILOVER on replica r (CLUSTER FAILOVER FORCE when its master is
 * down), then waits until r is a master and lab_cluster_wait_ok() holds. */
int lab_cluster_failover(lab_cluster *c, size_t r, unsigned timeout_ms);

/* Slot migration in steps so a test can interleave client traffic:
 * begin: CLUSTER SETSLOT slot IMPORTING on dst, MIGRATING on src.
 * keys: MIGRATE up to batch keys of slot from src to dst (over TLS, AUTH2
 *       admin, KEYS form); returns the number moved (0 when none left) or -1.
 * end: CLUSTER SETSLOT slot NODE dst on dst, src and every other live master. */
int lab_cluster_migrate_begin(lab_cluster *c, unsigned slot, size_t src, size_t dst);
int lab_cluster_migrate_keys(lab_cluster *c, unsigned slot, size_t src, size_t dst, unsigned batch);
int lab_cluster_migrate_end(lab_cluster *c, unsigned slot, size_t src, size_t dst);

#endif /* REDTLS_TESTS_LAB_CLUSTER_H */

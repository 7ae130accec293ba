/*
 * lab_async_cluster_case: the cmocka fixture that integration.async_cluster,
 * integration.async_cluster_faults and integration.async_cluster_auth
 * share. Each program starts one TLS Redis Cluster of its own (3 masters +
 * 3 replicas, AUTH with TOKEN_OLD, nodes announcing nodeN.cluster.test
 * reached through address overrides, one certificate per node) in
 * group_setup; setup and teardown bracket every test, and the helpers
 * below check a lab_acl_tally (lab_async_cluster.h) with cmocka.
 *
 * These are the test programs' own names, kept short on purpose: nothing
 * but those three programs links this file. Include after <cmocka.h>.
 */
#ifndef REDTLS_TESTS_LAB_ASYNC_CLUSTER_CASE_H
#define REDTLS_TESTS_LAB_ASYNC_CLUSTER_CASE_H

#include <stddef.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>
#include <redtls/async_cluster.h>
#include <redtls/redtls.h>

#include "lab.h"
#include "lab_async_cluster.h"
#include "lab_cluster.h"

#define TOKEN_OLD "acluster-Token-old-93d1e0"
#define TOKEN_NEW "acluster-Token-new-4b7c25"
/* No scenario may take longer than this to end (a hang, not a timing). */
#define HANG_MS 30000

extern lab_cluster lc;
/* One key per slot: slot_key[s] hashes to s. */
extern char slot_key[LAB_CLUSTER_SLOTS][16];

/* Per test; torn down even when an assertion fails. Freeing a handle
 * calls the callbacks it still owes, so the tally and the connect records
 * live here, and handles are freed before them. */
typedef struct lab_acl_case {
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
} lab_acl_case;

extern lab_acl_case T;

/* Callbacks of commands that were refused at once: must stay 0. */
extern int refused_called;

/* Runs the n tests as the group name (between group_setup and
 * group_teardown), only those matching the cmocka name pattern in
 * REDTLS_TEST_FILTER when it is set. Returns what cmocka returns. */
int run_group(const char *name, const struct CMUnitTest *tests, size_t n);

int group_setup(void **state);
int group_teardown(void **state);
int setup(void **state);
int teardown(void **state);

/* "host:port" of c's node i; the string lives until the next call. */
const char *seed_of(const lab_cluster *c, size_t i);

/* A handle on cluster c (tokens may be NULL), seeded with node 0. */
redtls_async_cluster *new_acl(const lab_cluster *c, const char *token, const char *alt, unsigned timeout_ms);

/* T.t with room for cap commands; T.conn and T.conn2 count into it. */
void new_tally(size_t cap);

/* Runs acl until no callback of T.t is owed; fails after HANG_MS. */
void run_all(redtls_async_cluster *acl);

void issue_ok(redtls_async_cluster *acl, unsigned flags, const char *line, size_t *id);
const lab_acl_cmd *cmd_of(size_t id);

/* Command id ended with status want. */
void assert_cmd(size_t id, redtls_status want);

/* Command id answered with a string or status reply equal to want. */
void assert_cmd_str(size_t id, const char *want);

void assert_cmd_int(size_t id, long long want);

/* Every callback of T.t ran exactly once, and none is owed. */
void assert_tally(const char *what);

/* The callback of a command that must be refused at once: counts into
 * refused_called. */
void never_cb(redtls_async_cluster *acl, redtls_status st, struct redisReply *r, void *ud);

/* Which node serves each slot, from node from's CLUSTER SLOTS. */
void load_owners(lab_cluster *c, size_t from, signed char *owner);

#endif /* REDTLS_TESTS_LAB_ASYNC_CLUSTER_CASE_H */

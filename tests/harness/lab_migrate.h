/* What the redtls-migrate tests share (tests/harness/lab_migrate.c). */
#ifndef REDTLS_LAB_MIGRATE_H
#define REDTLS_LAB_MIGRATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <redtls/redtls.h>

#include "lab_cluster.h"

/* One end to check: a standalone connection or a cluster handle. Every
 * call fails the running test on an error status. */
struct lab_end {
    redtls_conn *conn;
    redtls_cluster *cl;
};

void lab_end_append(struct lab_end *e, int argc, const char **argv, const size_t *lens);
struct redisReply *lab_end_reply(struct lab_end *e);
struct redisReply *lab_end_command(struct lab_end *e, int argc, const char **argv, const size_t *lens);
void lab_end_free(struct lab_end *e);
/* A plain connection to 127.0.0.1:port (the lab's plain ports). */
struct lab_end lab_plain_end(uint16_t port, const char *token);
/* CMD [ARG]'s integer reply. */
long long lab_end_integer(struct lab_end *e, const char *cmd, const char *arg);
/* calls=N of cmdstat_<name> in INFO commandstats, 0 when never called. */
long long lab_command_calls(struct lab_end *e, const char *name);
/* Frees r, failing the test when it is an error reply. */
void lab_expect_ok(struct redisReply *r);

/* A 3-master TLS cluster without replicas whose nodes present the
 * *.cluster.test certificate and announce 127.0.0.1, with password (NULL:
 * none); fails the test when it does not start. */
void lab_migrate_cluster_start(lab_cluster *c, const char *password);
/* A cluster handle on c (seed node 0, verified as "check.cluster.test")
 * as the default user with token, 10 s command timeout. */
struct lab_end lab_cluster_end(lab_cluster *c, const char *token);

/* The sum of DBSIZE over c's 3 masters. */
long long lab_cluster_dbsize(lab_cluster *c);

/* Strings no output of the tool may contain (tokens); NULL-terminated. */
#define LAB_MIGRATE_SECRETS 8
extern const char *lab_migrate_secrets[LAB_MIGRATE_SECRETS];

/* Runs REDTLS_MIGRATE_BIN with the NULL-terminated arguments after
 * err_cap (argv[0] omitted) and REDTLS_TO_TOKEN=env_token when not NULL;
 * stdout and stderr are captured into out/err and echoed on stderr, and
 * checked for lab_migrate_secrets. Returns the exit status. */
int lab_run_migrate(const char *env_token, char *out, size_t out_cap, char *err, size_t err_cap, ...);
/* lab_run_migrate in two steps, so the run can be killed in between:
 * starts the tool (arguments after env_token, NULL-terminated) and returns
 * its pid; lab_wait_migrate reaps it, captures and checks its output as
 * lab_run_migrate does, and returns its exit status, or -SIGNAL when a
 * signal ended it. One run at a time (the output files are shared). */
pid_t lab_start_migrate(const char *env_token, ...);
int lab_wait_migrate(pid_t pid, char *out, size_t out_cap, char *err, size_t err_cap);
/* The number after label in the tool's report; fails when absent. */
long long lab_report(const char *out, const char *label);

#endif

/* What the redtls-migrate tests share: the ends they check through (a
 * standalone connection or a cluster handle, failing the test on any
 * error) and a run of the tool with its output captured. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <redtls/redtls.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_migrate.h"

const char *lab_migrate_secrets[LAB_MIGRATE_SECRETS];

void lab_end_append(struct lab_end *e, int argc, const char **argv, const size_t *lens)
{
    if (e->cl != NULL)
        assert_int_equal(redtls_cluster_append_argv(e->cl, 0, argc, argv, lens), REDTLS_OK);
    else
        assert_int_equal(redtls_conn_append_argv(e->conn, argc, argv, lens), REDTLS_OK);
}

struct redisReply *lab_end_reply(struct lab_end *e)
{
    struct redisReply *r = NULL;
    redtls_status st = e->cl != NULL ? redtls_cluster_get_reply(e->cl, &r) : redtls_conn_get_reply(e->conn, &r);
    assert_int_equal(st, REDTLS_OK);
    return r;
}

struct redisReply *lab_end_command(struct lab_end *e, int argc, const char **argv, const size_t *lens)
{
    lab_end_append(e, argc, argv, lens);
    return lab_end_reply(e);
}

void lab_end_free(struct lab_end *e)
{
    redtls_conn_free(e->conn);
    redtls_cluster_free(e->cl);
    e->conn = NULL;
    e->cl = NULL;
}

/* A plain connection to 127.0.0.1:port (the lab's plain ports). */
struct lab_end lab_plain_end(uint16_t port, const char *token)
{
    struct lab_end e = {0};
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    assert_int_equal(redtls_config_set_host(cfg, "127.0.0.1", port), REDTLS_OK);
    assert_int_equal(redtls_config_set_tls(cfg, 0), REDTLS_OK);
    if (token != NULL)
        assert_int_equal(redtls_config_set_token(cfg, token), REDTLS_OK);
    assert_int_equal(redtls_config_set_command_timeout_ms(cfg, 10000), REDTLS_OK);
    assert_int_equal(redtls_conn_new(cfg, &e.conn), REDTLS_OK);
    redtls_config_free(cfg);
    assert_conn_status(e.conn, redtls_conn_connect(e.conn), REDTLS_OK);
    return e;
}

long long lab_end_integer(struct lab_end *e, const char *cmd, const char *arg)
{
    const char *argv[2] = {cmd, arg};
    struct redisReply *r = lab_end_command(e, arg != NULL ? 2 : 1, argv, NULL);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_INTEGER);
    long long v = redtls_reply_integer(r);
    redtls_reply_free(r);
    return v;
}

/* calls=N of cmdstat_<name> in INFO commandstats, 0 when never called. */
long long lab_command_calls(struct lab_end *e, const char *name)
{
    const char *argv[2] = {"INFO", "commandstats"};
    struct redisReply *r = lab_end_command(e, 2, argv, NULL);
    char needle[64];
    const char *p;
    long long v = 0;
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_STRING);
    snprintf(needle, sizeof needle, "cmdstat_%s:calls=", name);
    p = strstr(redtls_reply_str(r, NULL), needle);
    if (p != NULL)
        v = strtoll(p + strlen(needle), NULL, 10);
    redtls_reply_free(r);
    return v;
}

void lab_expect_ok(struct redisReply *r)
{
    if (redtls_reply_type(r) == REDTLS_REPLY_ERROR)
        fail_msg("fill: %s", redtls_reply_str(r, NULL));
    redtls_reply_free(r);
}

static void migrate_paths(char *out_path, char *err_path)
{
    snprintf(out_path, LAB_PATH_MAX, "%s/migrate.out", lab_workdir());
    snprintf(err_path, LAB_PATH_MAX, "%s/migrate.err", lab_workdir());
}

#define MIGRATE_MAX_ARGS 40

/* argv: the tool's arguments after argv[0], NULL-terminated. */
static pid_t start_migrate(const char *env_token, const char *const *args)
{
    const char *argv[MIGRATE_MAX_ARGS + 1];
    int argc = 0;
    char out_path[LAB_PATH_MAX], err_path[LAB_PATH_MAX];
    pid_t pid;

    argv[argc++] = REDTLS_MIGRATE_BIN;
    for (int i = 0; args[i] != NULL; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    migrate_paths(out_path, err_path);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
            _exit(127);
        if (env_token != NULL)
            setenv("REDTLS_TO_TOKEN", env_token, 1);
        else
            unsetenv("REDTLS_TO_TOKEN");
        char *v[MIGRATE_MAX_ARGS + 1];
        for (int i = 0; i <= argc; i++)
            v[i] = argv[i] != NULL ? strdup(argv[i]) : NULL;
        execv(v[0], v);
        _exit(127);
    }
    return pid;
}

/* The variadic arguments up to NULL into args (MIGRATE_MAX_ARGS + 1). */
#define COLLECT_ARGS(args, last)                                                                                       \
    do {                                                                                                               \
        va_list ap;                                                                                                    \
        int n = 0;                                                                                                     \
        va_start(ap, last);                                                                                            \
        while (((args)[n] = va_arg(ap, const char *)) != NULL)                                                         \
            assert_true(++n < MIGRATE_MAX_ARGS);                                                                       \
        va_end(ap);                                                                                                    \
    } while (0)

pid_t lab_start_migrate(const char *env_token, ...)
{
    const char *args[MIGRATE_MAX_ARGS + 1];
    COLLECT_ARGS(args, env_token);
    return start_migrate(env_token, args);
}

int lab_wait_migrate(pid_t pid, char *out, size_t out_cap, char *err, size_t err_cap)
{
    char out_path[LAB_PATH_MAX], err_path[LAB_PATH_MAX];
    int status;

    migrate_paths(out_path, err_path);
    while (waitpid(pid, &status, 0) < 0)
        assert_int_equal(errno, EINTR);
    char *o = lab_read_file(out_path, NULL), *e = lab_read_file(err_path, NULL);
    assert_non_null(o);
    assert_non_null(e);
    snprintf(out, out_cap, "%s", o);
    snprintf(err, err_cap, "%s", e);
    free(o);
    free(e);
    fprintf(stderr, "--- redtls-migrate stdout:\n%s--- stderr:\n%s---\n", out, err);
    /* Secrets are never printed. */
    for (size_t s = 0; s < LAB_MIGRATE_SECRETS && lab_migrate_secrets[s] != NULL; s++) {
        assert_null(strstr(out, lab_migrate_secrets[s]));
        assert_null(strstr(err, lab_migrate_secrets[s]));
    }
    if (WIFSIGNALED(status))
        return -WTERMSIG(status);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* Runs redtls-migrate with argv (NULL-terminated, argv[0] omitted) and
 * REDTLS_TO_TOKEN=env_token when not NULL; stdout and stderr are captured
 * into out/err. Returns the exit status. */
int lab_run_migrate(const char *env_token, char *out, size_t out_cap, char *err, size_t err_cap, ...)
{
    const char *args[MIGRATE_MAX_ARGS + 1];
    COLLECT_ARGS(args, err_cap);
    pid_t pid = start_migrate(env_token, args);
    int rc = lab_wait_migrate(pid, out, out_cap, err, err_cap);
    assert_true(rc >= 0); /* not ended by a signal */
    return rc;
}

long long lab_report(const char *out, const char *label)
{
    const char *p = strstr(out, label);
    if (p == NULL) {
        fail_msg("no '%s' in the report", label);
        return -1;
    }
    return strtoll(p + strlen(label), NULL, 10);
}

void lab_migrate_cluster_start(lab_cluster *c, const char *password)
{
    lab_cluster_opts co = lab_cluster_default_opts();
    co.replicas = 0;
    co.wildcard_cert = 1;
    co.announce_ips = 1;
    co.password = password;
    assert_int_equal(lab_cluster_start(c, &co), 0);
}

struct lab_end lab_cluster_end(lab_cluster *c, const char *token)
{
    struct lab_end e = {0};
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    assert_int_equal(redtls_config_set_host(cfg, "127.0.0.1", c->node[0].srv.port), REDTLS_OK);
    assert_int_equal(redtls_config_set_ca_file(cfg, lab_cert("ca.crt")), REDTLS_OK);
    assert_int_equal(redtls_config_set_verify_name(cfg, "check.cluster.test"), REDTLS_OK);
    if (token != NULL)
        assert_int_equal(redtls_config_set_token(cfg, token), REDTLS_OK);
    assert_int_equal(redtls_config_set_command_timeout_ms(cfg, 10000), REDTLS_OK);
    assert_int_equal(redtls_cluster_new(cfg, NULL, &e.cl), REDTLS_OK);
    redtls_config_free(cfg);
    return e;
}

long long lab_cluster_dbsize(lab_cluster *c)
{
    long long total = 0;
    for (size_t i = 0; i < 3; i++) {
        struct redisReply *r = NULL;
        assert_int_equal(lab_cluster_admin(c, i, &r, "DBSIZE"), 0);
        total += redtls_reply_integer(r);
        redtls_reply_free(r);
    }
    return total;
}

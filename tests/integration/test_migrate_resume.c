/* examples/redtls-migrate's long runs against real servers: --checkpoint
 * with kill -9 at random points and --resume (nothing lost, little copied
 * twice), a resume refused for another command, a cluster source copied by
 * one worker per master under --max-ops, the target's password rotated and
 * every connection killed mid-run, and a source written to during the copy
 * (every key present for the whole run arrives). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <redtls/redtls.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_cluster.h"
#include "lab_migrate.h"

#define TOKEN "lab-Resume-Token-93ad10"
#define OLD_TOKEN "lab-Resume-Old-5c02e7"
#define NEW_TOKEN "lab-Resume-New-b81f4a"
#define NKEYS 60000     /* source keys, "mig:N" */
#define MAX_OPS "20000" /* keys/s: a whole copy lasts about 3 s */
#define NCLUSTER 9000   /* cluster source keys, "c:N" */

static lab_server source; /* plain, no password */
static lab_server target; /* TLS + plain port, requirepass TOKEN */
static char out[16384], err[16384];
static char from[64], to[64], ckpt[LAB_PATH_MAX];

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* NKEYS keys: strings and every fifth a hash, every third with a TTL of
 * an hour. */
static void fill_source(void)
{
    struct lab_end e = lab_plain_end(source.port, NULL);
    char key[32], val[48];
    int i, queued = 0;

    for (i = 0; i < NKEYS; i++) {
        snprintf(key, sizeof key, "mig:%d", i);
        snprintf(val, sizeof val, "value-%d-abcdefghijklmnop", i);
        if (i % 5 == 0) {
            const char *a[] = {"HSET", key, "f", val, "g", "x"};
            lab_end_append(&e, 6, a, NULL);
        } else {
            const char *a[] = {"SET", key, val};
            lab_end_append(&e, 3, a, NULL);
        }
        queued++;
        if (i % 3 == 0) {
            const char *a[] = {"EXPIRE", key, "3600"};
            lab_end_append(&e, 3, a, NULL);
            queued++;
        }
        if (queued >= 1000 || i == NKEYS - 1) {
            while (queued-- > 0)
                lab_expect_ok(lab_end_reply(&e));
            queued = 0;
        }
    }
    assert_int_equal(lab_end_integer(&e, "DBSIZE", NULL), NKEYS);
    lab_end_free(&e);
}

/* How many of prefix:0 .. prefix:n-1 exist on e. */
static long long count_present(struct lab_end *e, const char *prefix, int n)
{
    char key[32];
    long long present = 0;
    int i, j;

    for (i = 0; i < n; i += 1000) {
        int m = i + 1000 <= n ? 1000 : n - i;
        for (j = 0; j < m; j++) {
            snprintf(key, sizeof key, "%s:%d", prefix, i + j);
            const char *a[] = {"EXISTS", key};
            lab_end_append(e, 2, a, NULL);
        }
        for (j = 0; j < m; j++) {
            struct redisReply *r = lab_end_reply(e);
            present += redtls_reply_integer(r);
            redtls_reply_free(r);
        }
    }
    return present;
}

static void flush_target(struct lab_end *dst)
{
    const char *a[] = {"FLUSHALL"};
    lab_expect_ok(lab_end_command(dst, 1, a, NULL));
}

/* The keys scanned according to the checkpoint at path (every node line
 * summed), with the node lines and how many are done; -1 when there is no
 * whole checkpoint there. */
static long long checkpoint_scanned(const char *path, int *nodes, int *done)
{
    char *text = lab_read_file(path, NULL), *line, *save = NULL;
    long long scanned = 0;
    size_t len;

    *nodes = *done = 0;
    if (text == NULL)
        return -1;
    len = strlen(text);
    if (strncmp(text, "redtls-migrate checkpoint 1\n", 28) != 0 || len < 4 || strcmp(text + len - 4, "end\n") != 0) {
        free(text);
        return -1;
    }
    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        /* node ADDR RUN_ID DONE CURSOR SCANNED ... */
        char *f[6], *fsave = NULL, *w;
        int nf = 0;
        if (strncmp(line, "node ", 5) != 0)
            continue;
        for (w = strtok_r(line, " ", &fsave); w != NULL && nf < 6; w = strtok_r(NULL, " ", &fsave))
            f[nf++] = w;
        if (nf < 6) {
            fail_msg("a node line of %d fields in %s", nf, path);
            continue;
        }
        (*nodes)++;
        *done += (int)strtol(f[3], NULL, 10);
        scanned += strtoll(f[5], NULL, 10);
    }
    free(text);
    return scanned;
}

static int group_setup(void **state)
{
    (void)state;
    lab_migrate_secrets[0] = TOKEN;
    lab_migrate_secrets[1] = OLD_TOKEN;
    lab_migrate_secrets[2] = NEW_TOKEN;
    if (lab_init(170) != 0 || lab_certs(NULL) == NULL)
        return -1;
    if (lab_redis_start(&source, &(lab_redis_opts){0}) != 0)
        return -1;
    if (lab_redis_start(&target, &(lab_redis_opts){.tls = 1, .plain_port = 1, .password = TOKEN}) != 0)
        return -1;
    snprintf(from, sizeof from, "redis://127.0.0.1:%u", source.port);
    snprintf(to, sizeof to, "rediss://localhost:%u", target.port);
    snprintf(ckpt, sizeof ckpt, "%s/resume.ckpt", lab_workdir());
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    lab_stop(&source);
    lab_stop(&target);
    return 0;
}

#define COPY_ARGS                                                                                                      \
    "--from", from, "--to", to, "--to-cacert", lab_cert("ca.crt"), "--to-token", TOKEN, "--checkpoint", ckpt,          \
        "--max-ops", MAX_OPS, "--batch", "250"

/* kill -9 at three random points, each time --resume: every key arrives,
 * the counts add up over the runs, and the RESTOREs sent stay close to
 * one per key (the runs did not start over). */
static void test_kill_and_resume(void **state)
{
    unsigned seed = (unsigned)lab_wall_ms() ^ (unsigned)getpid();
    long long prev = 0;
    int nodes, done, k;
    (void)state;

    fill_source();
    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    flush_target(&dst);
    long long restores = lab_command_calls(&dst, "restore");
    unlink(ckpt);
    fprintf(stderr, "kill points: seed %u\n", seed);
    for (k = 0; k < 3; k++) {
        pid_t pid = k == 0 ? lab_start_migrate(NULL, COPY_ARGS, (char *)NULL)
                           : lab_start_migrate(NULL, COPY_ARGS, "--resume", (char *)NULL);
        /* Somewhere 2,000 to 10,000 keys further than the last checkpoint. */
        long long goal = prev + 2000 + rand_r(&seed) % 8000, now;
        long long deadline = lab_wall_ms() + 20000;
        while (checkpoint_scanned(ckpt, &nodes, &done) < goal) {
            assert_true(lab_wall_ms() < deadline);
            sleep_ms(5);
        }
        sleep_ms(rand_r(&seed) % 300);
        assert_int_equal(kill(pid, SIGKILL), 0);
        assert_int_equal(lab_wait_migrate(pid, out, sizeof out, err, sizeof err), -SIGKILL);
        now = checkpoint_scanned(ckpt, &nodes, &done);
        fprintf(stderr, "killed run %d: the checkpoint says %lld keys scanned\n", k + 1, now);
        assert_true(now >= goal);
        assert_true(now < NKEYS);
        assert_int_equal(nodes, 1);
        assert_int_equal(done, 0);
        prev = now;
        if (k == 0) {
            /* The same command without --resume would overwrite it: refused. */
            assert_int_equal(lab_run_migrate(NULL, out, sizeof out, err, sizeof err, COPY_ARGS, (char *)NULL), 2);
            assert_contains(err, "add --resume");
            assert_int_equal(checkpoint_scanned(ckpt, &nodes, &done), prev);
        }
    }
    int rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, COPY_ARGS, "--resume", (char *)NULL);
    assert_int_equal(rc, 0);
    /* A batch copied but not yet in the checkpoint is copied again and
     * counted once: the totals are exact. */
    assert_int_equal(lab_report(out, "keys scanned: "), NKEYS);
    assert_int_equal(lab_report(out, "keys copied: "), NKEYS);
    assert_int_equal(lab_report(out, "keys failed: "), 0);
    assert_int_equal(lab_report(out, "from earlier runs: "), prev);
    assert_contains(out, ", done\n");
    assert_int_equal(checkpoint_scanned(ckpt, &nodes, &done), NKEYS);
    assert_int_equal(done, 1);

    long long sent = lab_command_calls(&dst, "restore") - restores;
    fprintf(stderr, "RESTOREs over the four runs: %lld for %d keys\n", sent, NKEYS);
    assert_in_range(sent, NKEYS, NKEYS + NKEYS / 4);
    assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), NKEYS);
    assert_int_equal(count_present(&dst, "mig", NKEYS), NKEYS);
    lab_end_free(&dst);
    rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cacert",
                         lab_cert("ca.crt"), "--verify-only", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "verify: keys compared: "), NKEYS);
}

/* SIGTERM: the run stops after its batch in progress and writes the
 * checkpoint with exactly what the target holds, so --resume copies every
 * other key once. */
static void test_sigterm_then_resume(void **state)
{
    char cp3[LAB_PATH_MAX];
    int nodes, done;
    (void)state;

    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    flush_target(&dst);
    long long restores = lab_command_calls(&dst, "restore");
    snprintf(cp3, sizeof cp3, "%s/term.ckpt", lab_workdir());
    unlink(cp3);
#define TERM_ARGS                                                                                                      \
    "--from", from, "--to", to, "--to-cacert", lab_cert("ca.crt"), "--to-token", TOKEN, "--checkpoint", cp3,           \
        "--max-ops", MAX_OPS
    pid_t pid = lab_start_migrate(NULL, TERM_ARGS, (char *)NULL);
    long long deadline = lab_wall_ms() + 20000;
    while (checkpoint_scanned(cp3, &nodes, &done) < 10000) {
        assert_true(lab_wall_ms() < deadline);
        sleep_ms(5);
    }
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(lab_wait_migrate(pid, out, sizeof out, err, sizeof err), 128 + SIGTERM);
    assert_contains(err, "terminated: stopping after the batches in progress");
    assert_contains(out, ", not done\n");
    long long copied = lab_report(out, "keys copied: ");
    assert_true(copied < NKEYS);
    assert_int_equal(checkpoint_scanned(cp3, &nodes, &done), copied);
    assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), copied);

    int rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, TERM_ARGS, "--resume", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "keys copied: "), NKEYS);
    assert_int_equal(lab_report(out, "from earlier runs: "), copied);
    /* Nothing was copied twice. */
    assert_int_equal(lab_command_calls(&dst, "restore") - restores, NKEYS);
    assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), NKEYS);
    lab_end_free(&dst);
#undef TERM_ARGS
}

/* A --resume of another command is refused before anything is written;
 * so are a damaged checkpoint and --resume without one. A finished run
 * resumed copies nothing. */
static void test_resume_refused(void **state)
{
    char other_to[64];
    int nodes, done;
    (void)state;

    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    long long restores = lab_command_calls(&dst, "restore");
    assert_int_equal(checkpoint_scanned(ckpt, &nodes, &done), NKEYS);

    int rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, COPY_ARGS, "--resume", "--match", "mig:1*",
                             (char *)NULL);
    assert_int_equal(rc, 2);
    assert_contains(err, "--match was '-', now 'mig:1*'");
    assert_contains(err, "nothing was copied");

    /* The same server by its plain port is another --to. */
    snprintf(other_to, sizeof other_to, "redis://127.0.0.1:%u", target.plain_port);
    rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", from, "--to", other_to, "--to-token", TOKEN,
                         "--checkpoint", ckpt, "--resume", (char *)NULL);
    assert_int_equal(rc, 2);
    assert_contains(err, "--to was 'rediss://localhost:");

    rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-token", TOKEN,
                         "--resume", (char *)NULL);
    assert_int_equal(rc, 2);
    assert_contains(err, "--resume needs the --checkpoint");

    rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, COPY_ARGS, "--dry-run", (char *)NULL);
    assert_int_equal(rc, 2);
    assert_contains(err, "not with --dry-run");
    rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--parallel", "0",
                         (char *)NULL);
    assert_int_equal(rc, 2);
    assert_contains(err, "bad --parallel '0'");
    rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--max-ops", "-5",
                         (char *)NULL);
    assert_int_equal(rc, 2);
    assert_contains(err, "bad --max-ops '-5'");

    /* Finished: nothing left to copy, the report still counts every key. */
    rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, COPY_ARGS, "--resume", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_contains(err, "nothing left to copy");
    assert_int_equal(lab_report(out, "keys copied: "), NKEYS);
    assert_int_equal(lab_command_calls(&dst, "restore"), restores);

    char bad[LAB_PATH_MAX];
    snprintf(bad, sizeof bad, "%s/bad.ckpt", lab_workdir());
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    fputs("redtls-migrate checkpoint 1\nfrom redis://x\n", f);
    fclose(f);
    rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cacert",
                         lab_cert("ca.crt"), "--to-token", TOKEN, "--checkpoint", bad, "--resume", (char *)NULL);
    assert_int_equal(rc, 2);
    assert_contains(err, "incomplete");
    assert_int_equal(lab_command_calls(&dst, "restore"), restores);
    assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), NKEYS);
    lab_end_free(&dst);
}

/* A target whose password changes mid-run (OLD to NEW, the tool given
 * both) and whose connections, and the source's, are all killed: the
 * lost batch is tried again on new connections and the run ends clean. */
static void test_auth_rotation_mid_run(void **state)
{
    static lab_server t2;
    char to2[64];
    (void)state;

    assert_int_equal(lab_redis_start(&t2, &(lab_redis_opts){.tls = 1, .plain_port = 1, .password = OLD_TOKEN}), 0);
    snprintf(to2, sizeof to2, "rediss://localhost:%u", t2.port);
    struct lab_end dst = lab_plain_end(t2.plain_port, OLD_TOKEN);
    pid_t pid =
        lab_start_migrate(NULL, "--from", from, "--to", to2, "--to-cacert", lab_cert("ca.crt"), "--to-token", OLD_TOKEN,
                          "--to-token-alt", NEW_TOKEN, "--max-ops", MAX_OPS, "--batch", "500", (char *)NULL);
    long long deadline = lab_wall_ms() + 20000;
    while (lab_end_integer(&dst, "DBSIZE", NULL) < NKEYS / 4) {
        assert_true(lab_wall_ms() < deadline);
        sleep_ms(10);
    }
    const char *set[] = {"CONFIG", "SET", "requirepass", NEW_TOKEN};
    lab_expect_ok(lab_end_command(&dst, 4, set, NULL));
    /* Writes held for a moment, so the worker's next RESTOREs are in flight
     * (sent, unanswered) when its connection is killed: their outcome is
     * unknown and the batch must be tried again. */
    const char *pause[] = {"CLIENT", "PAUSE", "2000", "WRITE"};
    lab_expect_ok(lab_end_command(&dst, 4, pause, NULL));
    sleep_ms(150);
    /* SKIPME yes (the default): the test's own connection stays. */
    const char *kill_normal[] = {"CLIENT", "KILL", "TYPE", "normal"};
    struct redisReply *r = lab_end_command(&dst, 4, kill_normal, NULL);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_INTEGER);
    assert_true(redtls_reply_integer(r) >= 2); /* the worker's and main's */
    redtls_reply_free(r);
    const char *unpause[] = {"CLIENT", "UNPAUSE"};
    lab_expect_ok(lab_end_command(&dst, 2, unpause, NULL));
    struct lab_end src = lab_plain_end(source.port, NULL);
    r = lab_end_command(&src, 4, kill_normal, NULL);
    assert_true(redtls_reply_integer(r) >= 2);
    redtls_reply_free(r);
    lab_end_free(&src);
    long long at_kill = lab_end_integer(&dst, "DBSIZE", NULL);

    int rc = lab_wait_migrate(pid, out, sizeof out, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_true(at_kill < NKEYS); /* the kill came before the end */
    assert_contains(err, "failed (attempt 1 of 6); trying again");
    assert_int_equal(lab_report(out, "keys scanned: "), NKEYS);
    assert_int_equal(lab_report(out, "keys copied: "), NKEYS);
    assert_int_equal(lab_report(out, "keys failed: "), 0);
    assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), NKEYS);
    lab_end_free(&dst);
    rc = lab_run_migrate(NEW_TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to2, "--to-cacert",
                         lab_cert("ca.crt"), "--verify-only", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "verify: keys compared: "), NKEYS);
    lab_stop(&t2);
}

/* A target that goes away for good: the batch is tried again until the
 * attempts run out (about 8 s), then exit 3 with the checkpoint at the
 * last acknowledged batch, matching the report. */
static void test_target_gone(void **state)
{
    static lab_server t3;
    char to3[64], cp4[LAB_PATH_MAX];
    int nodes, done;
    (void)state;

    assert_int_equal(lab_redis_start(&t3, &(lab_redis_opts){.tls = 1, .plain_port = 1, .password = TOKEN}), 0);
    snprintf(to3, sizeof to3, "rediss://localhost:%u", t3.port);
    snprintf(cp4, sizeof cp4, "%s/gone.ckpt", lab_workdir());
    unlink(cp4);
    struct lab_end dst = lab_plain_end(t3.plain_port, TOKEN);
    pid_t pid = lab_start_migrate(NULL, "--from", from, "--to", to3, "--to-cacert", lab_cert("ca.crt"), "--to-token",
                                  TOKEN, "--max-ops", MAX_OPS, "--timeout", "1000", "--checkpoint", cp4, (char *)NULL);
    long long deadline = lab_wall_ms() + 20000;
    while (lab_end_integer(&dst, "DBSIZE", NULL) < 5000) {
        assert_true(lab_wall_ms() < deadline);
        sleep_ms(10);
    }
    lab_end_free(&dst);
    lab_stop(&t3);
    long long t0 = lab_wall_ms();
    assert_int_equal(lab_wait_migrate(pid, out, sizeof out, err, sizeof err), 3);
    long long took = lab_wall_ms() - t0;
    fprintf(stderr, "gave up %lld ms after the target stopped\n", took);
    assert_true(took >= 7000);
    assert_contains(err, "failed (attempt 5 of 6)");
    assert_contains(err, "batch failed 6 times; giving up (the checkpoint");
    assert_contains(out, ", not done\n");
    long long scanned = checkpoint_scanned(cp4, &nodes, &done);
    assert_in_range(scanned, 5000, NKEYS - 1);
    assert_int_equal(lab_report(out, "keys scanned: "), scanned);
    assert_int_equal(lab_report(out, "keys failed: "), 0);
}

/* NCLUSTER keys "c:N" set on the cluster (again). */
static void fill_cluster(lab_cluster *c)
{
    char key[32];
    int i, j;
    struct lab_end src = lab_cluster_end(c, TOKEN);
    for (i = 0; i < NCLUSTER; i += 1000) {
        for (j = 0; j < 1000; j++) {
            snprintf(key, sizeof key, "c:%d", i + j);
            const char *a[] = {"SET", key, "cluster-value"};
            lab_end_append(&src, 3, a, NULL);
        }
        for (j = 0; j < 1000; j++)
            lab_expect_ok(lab_end_reply(&src));
    }
    lab_end_free(&src);
}

/* Master i's integer answer to CMD. */
static long long master_integer(lab_cluster *c, size_t i, const char *cmd)
{
    struct redisReply *r = NULL;
    assert_int_equal(lab_cluster_admin(c, i, &r, "%s", cmd), 0);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_INTEGER);
    long long v = redtls_reply_integer(r);
    redtls_reply_free(r);
    return v;
}

/* How many DUMPs master i has served (INFO commandstats). */
static long long master_dumps(lab_cluster *c, size_t i)
{
    struct redisReply *r = NULL;
    assert_int_equal(lab_cluster_admin(c, i, &r, "INFO commandstats"), 0);
    const char *p = strstr(redtls_reply_str(r, NULL), "cmdstat_dump:calls=");
    long long n = p != NULL ? strtoll(p + strlen("cmdstat_dump:calls="), NULL, 10) : 0;
    redtls_reply_free(r);
    return n;
}

/* A 3-master cluster source: one worker per master, each held to
 * --max-ops on its own, all three copied at the same time. Then a master restarts (a new run_id):
 * --resume copies that node again from the start and skips the others. */
static void test_cluster_source_parallel(void **state)
{
    static lab_cluster c;
    char seed[64], cp2[LAB_PATH_MAX];
    int nodes, done, i;
    (void)state;

    lab_migrate_cluster_start(&c, TOKEN);
    fill_cluster(&c);

    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    flush_target(&dst);
    snprintf(seed, sizeof seed, "rediss://127.0.0.1:%u", c.node[0].srv.port);
    snprintf(cp2, sizeof cp2, "%s/cluster.ckpt", lab_workdir());
    unlink(cp2);
    long long share[3], dumps[3];
    for (i = 0; i < 3; i++)
        share[i] = master_integer(&c, (size_t)i, "DBSIZE");
    pid_t pid =
        lab_start_migrate(NULL, "--from", seed, "--from-cluster", "--from-cacert", lab_cert("ca.crt"), "--from-sni",
                          "src.cluster.test", "--from-token", TOKEN, "--to", to, "--to-cacert", lab_cert("ca.crt"),
                          "--to-token", TOKEN, "--max-ops", "1500", "--checkpoint", cp2, (char *)NULL);
    /* The workers run side by side: a moment comes when every master has
     * served DUMPs and none has served all of its keys yet. One node after
     * the other, the second would start only once the first was done. At
     * 1500 keys/s per node that moment lasts over a second, however slow
     * the machine (a slower machine only makes it longer). */
    int together = 0, finished = 0;
    while (!together && !finished) {
        together = 1;
        for (i = 0; i < 3; i++) {
            dumps[i] = master_dumps(&c, (size_t)i);
            together = together && dumps[i] > 0 && dumps[i] < share[i];
            finished = finished || dumps[i] >= share[i];
        }
        if (!together && !finished)
            sleep_ms(5);
    }
    fprintf(stderr, "DUMPs served by the masters at one moment: %lld, %lld, %lld of %lld, %lld, %lld\n", dumps[0],
            dumps[1], dumps[2], share[0], share[1], share[2]);
    assert_true(together);
    int rc = lab_wait_migrate(pid, out, sizeof out, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "keys scanned: "), NCLUSTER);
    assert_int_equal(lab_report(out, "keys copied: "), NCLUSTER);
    assert_int_equal(lab_report(out, "keys failed: "), 0);
    /* A line per master in the report, and one on stderr as each ends. */
    long long sum = 0;
    const char *p = out;
    for (i = 0; i < 3; i++) {
        p = strstr(p, "\nnode 127.0.0.1:");
        assert_non_null(p);
        const char *colon = strstr(p + 16, ": ");
        assert_non_null(colon);
        long long n = strtoll(colon + 2, NULL, 10);
        assert_in_range(n, NCLUSTER / 5, NCLUSTER / 2);
        sum += n;
        p = colon;
    }
    assert_null(strstr(p, "\nnode "));
    assert_int_equal(sum, NCLUSTER);
    for (i = 0, p = err; (p = strstr(p, "redtls-migrate: node ")) != NULL; i++)
        p++;
    assert_int_equal(i, 3);
    assert_int_equal(checkpoint_scanned(cp2, &nodes, &done), NCLUSTER);
    assert_int_equal(nodes, 3);
    assert_int_equal(done, 3);
    /* --max-ops holds each node to 1500 keys/s: the largest share (at
     * least a third) takes 2 s at least. */
    long long ms = (long long)(strtod(strstr(out, "seconds: ") + 9, NULL) * 1000);
    fprintf(stderr, "cluster copy: %lld ms\n", ms);
    assert_true(ms >= 1900);
    assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), NCLUSTER);
    assert_int_equal(count_present(&dst, "c", NCLUSTER), NCLUSTER);

    /* Master 1 restarts (without its keys: they are set again). */
    char node1[64];
    snprintf(node1, sizeof node1, "node 127.0.0.1:%u: ", c.node[1].srv.port);
    long long node1_keys = lab_report(out, node1);
    assert_int_equal(lab_cluster_kill(&c, 1), 0);
    assert_int_equal(lab_cluster_restart(&c, 1), 0);
    assert_int_equal(lab_cluster_wait_ok(&c, 20000), 0);
    fill_cluster(&c);
    long long restores = lab_command_calls(&dst, "restore");
    rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", seed, "--from-cluster", "--from-cacert",
                         lab_cert("ca.crt"), "--from-sni", "src.cluster.test", "--from-token", TOKEN, "--to", to,
                         "--to-cacert", lab_cert("ca.crt"), "--to-token", TOKEN, "--checkpoint", cp2, "--resume",
                         (char *)NULL);
    assert_int_equal(rc, 0);
    assert_contains(err, "restarted since the checkpoint");
    assert_int_equal(lab_command_calls(&dst, "restore") - restores, node1_keys);
    assert_int_equal(lab_report(out, node1), node1_keys);
    assert_int_equal(lab_report(out, "keys copied: "), NCLUSTER);
    assert_int_equal(lab_report(out, "from earlier runs: "), NCLUSTER - node1_keys);
    lab_end_free(&dst);
    lab_cluster_stop(&c);
}

/* A writer adding "churn:N" keys on the source, about 18,000 a second,
 * and from the 15,000th on deleting as many: the source goes past 65,536
 * keys early in the copy, so its hash table grows (and is rehashed) while
 * SCAN walks it. The "mig:N" keys are never touched. */
struct churn {
    uint16_t port;
    atomic_int stop;
    long long ops;
};

static void *churn_writer(void *arg)
{
    struct churn *ch = arg;
    redtls_config *cfg = NULL;
    redtls_conn *conn = NULL;
    char key[32], old[32];
    long long i = 0;

    if (redtls_config_new(&cfg) != REDTLS_OK || redtls_config_set_host(cfg, "127.0.0.1", ch->port) != REDTLS_OK ||
        redtls_config_set_tls(cfg, 0) != REDTLS_OK || redtls_conn_new(cfg, &conn) != REDTLS_OK) {
        redtls_config_free(cfg);
        return NULL;
    }
    redtls_config_free(cfg);
    while (!atomic_load(&ch->stop)) {
        int j, queued = 0;
        for (j = 0; j < 100; j++, i++) {
            snprintf(key, sizeof key, "churn:%lld", i);
            const char *a[] = {"SET", key, "transient"};
            if (redtls_conn_append_argv(conn, 3, a, NULL) == REDTLS_OK)
                queued++;
            if (i >= 15000) {
                snprintf(old, sizeof old, "churn:%lld", i - 15000);
                const char *d[] = {"DEL", old};
                if (redtls_conn_append_argv(conn, 2, d, NULL) == REDTLS_OK)
                    queued++;
            }
        }
        while (queued-- > 0) {
            struct redisReply *r = NULL;
            if (redtls_conn_get_reply(conn, &r) == REDTLS_OK)
                ch->ops++;
            redtls_reply_free(r);
        }
        sleep_ms(5);
    }
    redtls_conn_free(conn);
    return NULL;
}

/* The source changes during a copy that is also killed and resumed:
 * every key present for the whole run is on the target. */
static void test_source_changes(void **state)
{
    struct churn ch = {.port = source.port};
    char cp5[LAB_PATH_MAX];
    int nodes, done;
    pthread_t th;
    (void)state;

    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    flush_target(&dst);
    snprintf(cp5, sizeof cp5, "%s/churn.ckpt", lab_workdir());
    unlink(cp5);
    assert_int_equal(pthread_create(&th, NULL, churn_writer, &ch), 0);
    sleep_ms(200); /* churn keys exist before the copy starts */
#define CHURN_ARGS                                                                                                     \
    "--from", from, "--to", to, "--to-cacert", lab_cert("ca.crt"), "--to-token", TOKEN, "--max-ops", "30000",          \
        "--checkpoint", cp5, "--resume"
    pid_t pid = lab_start_migrate(NULL, CHURN_ARGS, (char *)NULL);
    long long deadline = lab_wall_ms() + 20000;
    while (checkpoint_scanned(cp5, &nodes, &done) < 30000) {
        assert_true(lab_wall_ms() < deadline);
        sleep_ms(5);
    }
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(lab_wait_migrate(pid, out, sizeof out, err, sizeof err), -SIGKILL);
    int rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, CHURN_ARGS, (char *)NULL);
#undef CHURN_ARGS
    atomic_store(&ch.stop, 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    long long ops_during = ch.ops; /* and the last pipeline after it */
    assert_int_equal(rc, 0);
    fprintf(stderr, "writes on the source by the end of the copy: %lld\n", ops_during);
    assert_true(ops_during > 20000);
    assert_int_equal(lab_report(out, "keys failed: "), 0);
    assert_true(lab_report(out, "keys scanned: ") >= NKEYS);
    /* Every key present for the whole run is there. */
    assert_int_equal(count_present(&dst, "mig", NKEYS), NKEYS);
    lab_end_free(&dst);
    rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cacert",
                         lab_cert("ca.crt"), "--match", "mig:*", "--verify-only", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "verify: keys compared: "), NKEYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_and_resume),     cmocka_unit_test(test_resume_refused),
        cmocka_unit_test(test_sigterm_then_resume), cmocka_unit_test(test_auth_rotation_mid_run),
        cmocka_unit_test(test_target_gone),         cmocka_unit_test(test_cluster_source_parallel),
        cmocka_unit_test(test_source_changes),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

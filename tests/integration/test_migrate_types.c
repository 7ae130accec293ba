/* examples/redtls-migrate on a dataset of every type made by
 * tests/tools/migrate_fill (binary keys and values, millisecond TTLs, a
 * 100,000-field hash, streams with two consumer groups, keys expiring
 * during the copy): plain standalone to a TLS 3-master cluster with AUTH,
 * that cluster to a second one, TLS standalone to TLS standalone; each
 * checked by --verify-only, by --verify-only --sample, and key by key for
 * expiry times; differences planted on a target are found by both. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <redtls/redtls.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_cluster.h"
#include "lab_migrate.h"

#define TOKEN "lab-Types-Token-5d03a1"
#define TOKEN2 "lab-Types-Other-e81f47"
#define NTYPED 20000       /* keys of every type */
#define BIG_HASH 100000    /* fields of the one big hash */
#define NMORTAL 300        /* strings whose TTLs run out during the copy */
#define MORTAL_MS "600"    /* ... spread over this many milliseconds */
#define NLIVE (NTYPED + 1) /* what stays: the typed keys and the big hash */
#define TTL_SLACK_MS 2000

static lab_server source;                  /* plain, no password */
static lab_server tls_src, tls_dst;        /* TLS + plain port, AUTH */
static lab_cluster cl_a, cl_b;             /* TLS 3-master clusters, AUTH */
static long long mortal_deadline[NMORTAL]; /* PEXPIRETIME on the source */
static char out[32768], err[32768];

/* Runs migrate_fill on url (token through REDTLS_TOKEN) with the
 * NULL-terminated options; fails the test unless it exits 0. */
static void run_fill(const char *url, const char *token, ...)
{
    const char *argv[24];
    int argc = 0, status;
    va_list ap;

    argv[argc++] = MIGRATE_FILL_BIN;
    argv[argc++] = "--url";
    argv[argc++] = url;
    argv[argc++] = "--cacert";
    argv[argc++] = lab_cert("ca.crt");
    va_start(ap, token);
    while ((argv[argc] = va_arg(ap, const char *)) != NULL)
        argc++;
    va_end(ap);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (token != NULL)
            setenv("REDTLS_TOKEN", token, 1);
        char *v[24];
        for (int i = 0; i <= argc; i++)
            v[i] = argv[i] != NULL ? strdup(argv[i]) : NULL;
        execv(v[0], v);
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0)
        assert_int_equal(errno, EINTR);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Key i of migrate_fill --keys: "t:<i>", every tenth "t\0\r\n:<i>". */
static size_t typed_key(char *buf, size_t cap, unsigned i)
{
    if (i % 10 == 0) {
        int n = snprintf(buf, cap, "t#\r\n:%u", i);
        buf[1] = '\0';
        return (size_t)n;
    }
    return (size_t)snprintf(buf, cap, "t:%u", i);
}

/* Every typed key on dst has the source's expiry time or one at most
 * TTL_SLACK_MS earlier (and none where the source has none); returns how
 * many have one. */
static int compare_expiry(struct lab_end *src, struct lab_end *dst)
{
    char key[32];
    int with_ttl = 0;

    for (unsigned i = 0; i < NTYPED; i += 500) {
        for (unsigned j = i; j < i + 500; j++) {
            size_t len = typed_key(key, sizeof key, j);
            const char *a[] = {"PEXPIRETIME", key};
            size_t l[] = {11, len};
            lab_end_append(src, 2, a, l);
            lab_end_append(dst, 2, a, l);
        }
        for (unsigned j = i; j < i + 500; j++) {
            struct redisReply *s = lab_end_reply(src), *d = lab_end_reply(dst);
            long long se = redtls_reply_integer(s), de = redtls_reply_integer(d);
            redtls_reply_free(s);
            redtls_reply_free(d);
            assert_true(se != -2);
            if (de == -2)
                fail_msg("typed key %u is missing on the target", j);
            if (se == -1) {
                assert_int_equal(de, -1);
                continue;
            }
            with_ttl++;
            assert_in_range(de, se - TTL_SLACK_MS, se);
        }
    }
    return with_ttl;
}

/* The mortal keys' expiry times on the source, right after the fill. */
static void read_mortal_deadlines(void)
{
    struct lab_end src = lab_plain_end(source.port, NULL);
    char key[32];
    for (int i = 0; i < NMORTAL; i++) {
        snprintf(key, sizeof key, "mortal:%d", i);
        const char *a[] = {"PEXPIRETIME", key};
        lab_end_append(&src, 2, a, NULL);
    }
    for (int i = 0; i < NMORTAL; i++) {
        struct redisReply *r = lab_end_reply(&src);
        mortal_deadline[i] = redtls_reply_integer(r); /* -2: gone already */
        redtls_reply_free(r);
    }
    lab_end_free(&src);
}

/* No mortal key outlives the source's on dst, and once every one's time
 * has passed none is left there (reading them has dst delete them, so its
 * DBSIZE is exact after). The source is left alone: its DBSIZE may still
 * count some of them. Returns how many dst had. */
static int check_mortal(struct lab_end *dst)
{
    long long last = 0;
    char key[32];
    int present = 0;

    for (int i = 0; i < NMORTAL; i++) {
        snprintf(key, sizeof key, "mortal:%d", i);
        const char *a[] = {"PEXPIRETIME", key};
        struct redisReply *r = lab_end_command(dst, 2, a, NULL);
        long long et = redtls_reply_integer(r);
        redtls_reply_free(r);
        if (et != -2) {
            present++;
            assert_true(et > 0 && et <= mortal_deadline[i]);
        }
        if (mortal_deadline[i] > last)
            last = mortal_deadline[i];
    }
    while (lab_wall_ms() <= last + 20)
        usleep(10000);
    for (int i = 0; i < NMORTAL; i++) {
        snprintf(key, sizeof key, "mortal:%d", i);
        const char *a[] = {"EXISTS", key};
        struct redisReply *r = lab_end_command(dst, 2, a, NULL);
        assert_int_equal(redtls_reply_integer(r), 0); /* not resurrected */
        redtls_reply_free(r);
    }
    fprintf(stderr, "mortal keys on the target right after the copy: %d of %d\n", present, NMORTAL);
    return present;
}

/* The big hash and a stream's two groups with their pending entries. */
static void check_special(struct lab_end *dst)
{
    static const char big[] = "big\0hash";
    const char *h[] = {"HLEN", big};
    size_t hl[] = {4, sizeof big - 1};
    struct redisReply *r = lab_end_command(dst, 2, h, hl);
    assert_int_equal(redtls_reply_integer(r), BIG_HASH);
    redtls_reply_free(r);

    const char *x[] = {"XINFO", "GROUPS", "t:5"};
    r = lab_end_command(dst, 3, x, NULL);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_ARRAY);
    assert_int_equal(redtls_reply_len(r), 2);
    for (size_t g = 0; g < 2; g++) {
        const struct redisReply *grp = redtls_reply_element(r, g);
        long long pending = -1;
        for (size_t f = 0; f + 1 < redtls_reply_len(grp); f += 2)
            if (strcmp(redtls_reply_str(redtls_reply_element(grp, f), NULL), "pending") == 0)
                pending = redtls_reply_integer(redtls_reply_element(grp, f + 1));
        assert_int_equal(pending, (long long)g + 1); /* g1: 1, g2: 2 */
    }
    redtls_reply_free(r);
}

/* The report of a passing verify over the NLIVE keys. */
static void check_verify_passed(const char *report, long long compared)
{
    assert_int_equal(lab_report(report, "verify: keys compared: "), compared);
    assert_int_equal(lab_report(report, "verify: missing on the target: "), 0);
    assert_int_equal(lab_report(report, "verify: different values: "), 0);
    assert_int_equal(lab_report(report, "verify: different TTLs: "), 0);
    assert_int_equal(lab_report(report, "verify: keys on the source: "), NLIVE);
    assert_int_equal(lab_report(report, "verify: keys on the target: "), NLIVE);
    assert_null(strstr(report, "difference:"));
}

static int group_setup(void **state)
{
    (void)state;
    lab_migrate_secrets[0] = TOKEN;
    lab_migrate_secrets[1] = TOKEN2;
    if (lab_init(170) != 0 || lab_certs(NULL) == NULL)
        return -1;
    if (lab_redis_start(&source, &(lab_redis_opts){0}) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    lab_stop(&source);
    lab_stop(&tls_src);
    lab_stop(&tls_dst);
    lab_cluster_stop(&cl_a);
    lab_cluster_stop(&cl_b);
    return 0;
}

/* Plain standalone to a TLS 3-master cluster with AUTH. */
static void test_standalone_to_tls_cluster(void **state)
{
    char from[64], to[64];
    (void)state;

    lab_migrate_cluster_start(&cl_a, TOKEN);
    snprintf(from, sizeof from, "redis://127.0.0.1:%u", source.port);
    run_fill(from, NULL, "--seed", "7", "--keys", "20000", "--big-hash", "100000", "--mortal", "300", "--mortal-ms",
             MORTAL_MS, (char *)NULL);
    read_mortal_deadlines();
    snprintf(to, sizeof to, "rediss://127.0.0.1:%u", cl_a.node[0].srv.port);
    int rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cluster",
                             "--to-cacert", lab_cert("ca.crt"), "--to-sni", "migrate.cluster.test", (char *)NULL);
    assert_int_equal(rc, 0);
    long long scanned = lab_report(out, "keys scanned: "), copied = lab_report(out, "keys copied: "),
              expired = lab_report(out, "expired on the way: ");
    assert_int_equal(lab_report(out, "keys failed: "), 0);
    assert_int_equal(scanned, copied + expired);
    assert_in_range(copied, NLIVE, NLIVE + NMORTAL);

    struct lab_end dst = lab_cluster_end(&cl_a, TOKEN);
    struct lab_end src = lab_plain_end(source.port, NULL);
    int present = check_mortal(&dst);
    assert_true(present <= copied - NLIVE);

    /* The source's DBSIZE may still count expired mortal keys (a server
     * deletes such a key when it meets it): the sample's count comparison
     * sees a shortfall, has both sides SCANned and counts again. */
    fprintf(stderr, "source DBSIZE before the sample: %lld\n", lab_end_integer(&src, "DBSIZE", NULL));
    rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cluster",
                         "--to-cacert", lab_cert("ca.crt"), "--to-sni", "migrate.cluster.test", "--verify-only",
                         "--sample", "500", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_contains(out, "verify: sample: 500 keys drawn by RANDOMKEY from 20");
    check_verify_passed(out, 500);
    assert_int_equal(lab_end_integer(&src, "DBSIZE", NULL), NLIVE);

    int with_ttl = compare_expiry(&src, &dst);
    assert_int_equal(with_ttl, (NTYPED + 2) / 3); /* every third */
    check_special(&dst);
    assert_int_equal(lab_cluster_dbsize(&cl_a), NLIVE);
    lab_end_free(&src);
    lab_end_free(&dst);

    rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cluster",
                         "--to-cacert", lab_cert("ca.crt"), "--to-sni", "migrate.cluster.test", "--verify-only",
                         (char *)NULL);
    assert_int_equal(rc, 0);
    check_verify_passed(out, NLIVE);
    assert_null(strstr(out, "keys copied:"));
}

/* That cluster as a source, to a second TLS 3-master cluster (another
 * password); then back-checked with --verify-only, whole and sampled
 * (RANDOMKEY on each source master). */
static void test_cluster_to_cluster(void **state)
{
    char from[64], to[64];
    (void)state;

    lab_migrate_cluster_start(&cl_b, TOKEN2);
    snprintf(from, sizeof from, "rediss://127.0.0.1:%u", cl_a.node[0].srv.port);
    snprintf(to, sizeof to, "rediss://127.0.0.1:%u", cl_b.node[0].srv.port);
    int rc =
        lab_run_migrate(TOKEN2, out, sizeof out, err, sizeof err, "--from", from, "--from-cluster", "--from-cacert",
                        lab_cert("ca.crt"), "--from-sni", "a.cluster.test", "--from-token", TOKEN, "--to", to,
                        "--to-cluster", "--to-cacert", lab_cert("ca.crt"), "--to-sni", "b.cluster.test", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "keys scanned: "), NLIVE);
    assert_int_equal(lab_report(out, "keys copied: "), NLIVE);
    assert_int_equal(lab_cluster_dbsize(&cl_b), NLIVE);

    struct lab_end src = lab_cluster_end(&cl_a, TOKEN);
    struct lab_end dst = lab_cluster_end(&cl_b, TOKEN2);
    compare_expiry(&src, &dst);
    check_special(&dst);
    lab_end_free(&src);
    lab_end_free(&dst);

    for (int sampled = 0; sampled < 2; sampled++) {
        rc =
            lab_run_migrate(TOKEN2, out, sizeof out, err, sizeof err, "--from", from, "--from-cluster", "--from-cacert",
                            lab_cert("ca.crt"), "--from-sni", "a.cluster.test", "--from-token", TOKEN, "--to", to,
                            "--to-cluster", "--to-cacert", lab_cert("ca.crt"), "--to-sni", "b.cluster.test",
                            "--verify-only", sampled ? "--sample" : (char *)NULL, "300", (char *)NULL);
        assert_int_equal(rc, 0);
        check_verify_passed(out, sampled ? 300 : NLIVE);
    }
    assert_contains(out, "verify: sample: 300 keys drawn by RANDOMKEY");
}

/* A changed value, a deleted key and a changed TTL on the first cluster
 * (the second's source is done with it): a sample covering every key
 * (N over the source's size: a SCAN) finds all three and the count. */
static void test_planted_differences(void **state)
{
    char from[64], to[64], key[32];
    (void)state;

    struct lab_end dst = lab_cluster_end(&cl_a, TOKEN);
    size_t l0 = typed_key(key, sizeof key, 70); /* a string, binary name */
    const char *set[] = {"SET", key, "changed", "KEEPTTL"};
    size_t setl[] = {3, l0, 7, 7};
    lab_expect_ok(lab_end_command(&dst, 4, set, setl));
    assert_int_equal(lab_end_integer(&dst, "DEL", "t:1"), 1); /* a hash */
    const char *px[] = {"PEXPIRE", "t:3", "99000000"};        /* a set */
    lab_expect_ok(lab_end_command(&dst, 3, px, NULL));
    lab_end_free(&dst);

    snprintf(from, sizeof from, "redis://127.0.0.1:%u", source.port);
    snprintf(to, sizeof to, "rediss://127.0.0.1:%u", cl_a.node[0].srv.port);
    int rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cluster",
                             "--to-cacert", lab_cert("ca.crt"), "--to-sni", "migrate.cluster.test", "--verify-only",
                             "--sample", "25000", (char *)NULL);
    assert_int_equal(rc, 1);
    assert_contains(out, "verify: sample: 20001 keys drawn by SCAN from 20001");
    assert_int_equal(lab_report(out, "verify: keys compared: "), NLIVE);
    assert_int_equal(lab_report(out, "verify: missing on the target: "), 1);
    assert_int_equal(lab_report(out, "verify: different values: "), 1);
    assert_int_equal(lab_report(out, "verify: different TTLs: "), 1);
    assert_int_equal(lab_report(out, "verify: keys on the target: "), NLIVE - 1);
    assert_contains(out, "difference: value 't\\x00\\x0d\\x0a:70'");
    assert_contains(out, "difference: missing 't:1'");
    assert_contains(out, "difference: ttl 't:3' (TTL ");
    assert_contains(out, "difference: count: the target holds 1 keys fewer than "
                         "the source");
}

/* TLS standalone with AUTH to TLS standalone with another password; then
 * a tenth of the target's keys deleted, which a RANDOMKEY sample of 500
 * finds (missing ones, and the count). */
static void test_tls_to_tls(void **state)
{
    char from[64], to[64], plain[64];
    (void)state;

    assert_int_equal(lab_redis_start(&tls_src, &(lab_redis_opts){.tls = 1, .plain_port = 1, .password = TOKEN}), 0);
    assert_int_equal(lab_redis_start(&tls_dst, &(lab_redis_opts){.tls = 1, .plain_port = 1, .password = TOKEN2}), 0);
    snprintf(from, sizeof from, "rediss://localhost:%u", tls_src.port);
    snprintf(to, sizeof to, "rediss://localhost:%u", tls_dst.port);
    run_fill(from, TOKEN, "--seed", "11", "--keys", "20000", "--big-hash", "100000", (char *)NULL);
    int rc =
        lab_run_migrate(TOKEN2, out, sizeof out, err, sizeof err, "--from", from, "--from-cacert", lab_cert("ca.crt"),
                        "--from-token", TOKEN, "--to", to, "--to-cacert", lab_cert("ca.crt"), "--verify", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "keys copied: "), NLIVE);
    check_verify_passed(out, NLIVE);

    struct lab_end src = lab_plain_end(tls_src.plain_port, TOKEN);
    struct lab_end dst = lab_plain_end(tls_dst.plain_port, TOKEN2);
    compare_expiry(&src, &dst);
    check_special(&dst);
    lab_end_free(&src);
    /* Every key "t:<i>" with i ending in 7: a tenth, all types. */
    long long deleted = 0;
    for (unsigned i = 7; i < NTYPED; i += 10) {
        snprintf(plain, sizeof plain, "t:%u", i);
        deleted += lab_end_integer(&dst, "DEL", plain);
    }
    assert_int_equal(deleted, NTYPED / 10);
    lab_end_free(&dst);

    rc = lab_run_migrate(TOKEN2, out, sizeof out, err, sizeof err, "--from", from, "--from-cacert", lab_cert("ca.crt"),
                         "--from-token", TOKEN, "--to", to, "--to-cacert", lab_cert("ca.crt"), "--verify-only",
                         "--sample", "500", (char *)NULL);
    assert_int_equal(rc, 1);
    assert_contains(out, "verify: sample: 500 keys drawn by RANDOMKEY");
    assert_int_equal(lab_report(out, "verify: keys compared: "), 500);
    /* About 50 expected; none at all would have a chance of 0.9^500. */
    assert_in_range(lab_report(out, "verify: missing on the target: "), 1, 200);
    assert_int_equal(lab_report(out, "verify: different values: "), 0);
    assert_int_equal(lab_report(out, "verify: keys on the target: "), NLIVE - NTYPED / 10);
    assert_contains(out, "difference: count: the target holds 2000 keys fewer");

    /* --sample needs --verify; a count with --match is not compared. */
    rc = lab_run_migrate(TOKEN2, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--sample", "5",
                         (char *)NULL);
    assert_int_equal(rc, 2);
    assert_contains(err, "--sample goes with --verify");
    rc = lab_run_migrate(TOKEN2, out, sizeof out, err, sizeof err, "--from", from, "--from-cacert", lab_cert("ca.crt"),
                         "--from-token", TOKEN, "--to", to, "--to-cacert", lab_cert("ca.crt"), "--verify-only",
                         "--sample", "50", "--match", "t:*8", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_contains(out, "verify: sample: 50 keys drawn by SCAN");
    assert_contains(out, "verify: key counts not compared");
    assert_int_equal(lab_report(out, "verify: keys compared: "), 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standalone_to_tls_cluster),
        cmocka_unit_test(test_cluster_to_cluster),
        cmocka_unit_test(test_planted_differences),
        cmocka_unit_test(test_tls_to_tls),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

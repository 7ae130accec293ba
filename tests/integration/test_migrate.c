/* examples/redtls-migrate against real servers: a plain standalone source
 * holding every data type (binary keys with NUL bytes and CR/LF, millisecond
 * TTLs, keys that expire during the copy) copied to a TLS target with AUTH,
 * standalone and a 3-master cluster; every key compared by DUMP payload and
 * expiry time; the refusals (same server, wrong certificate name) write
 * nothing. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
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
#include "lab_cluster.h"
#include "lab_migrate.h"

#define TOKEN "lab-Migrate-Token-4f21c9"
#define OLD_TOKEN "lab-Migrate-Old-77e0b2"
#define NKEYS 3500        /* long-lived keys, compared one by one */
#define NMORTAL 300       /* keys whose TTLs (1..600 ms) run out around the copy */
#define TTL_SLACK_MS 2000 /* how much earlier than the source's a target expiry may be */

static lab_server source;    /* plain, no password */
static lab_server target;    /* TLS + plain port, requirepass TOKEN */
static lab_server wrongname; /* TLS with a certificate for wrong.example only */

struct key {
    char k[48];
    size_t len;
};
static struct key keys[NKEYS];
static struct key mortal[NMORTAL];
static long long mortal_last; /* the latest mortal expiry time (unix ms) */

/* Every tenth key has a NUL byte, CR and LF in its name. */
static void make_key(struct key *k, const char *prefix, int i)
{
    if (i % 10 == 0) {
        int n = snprintf(k->k, sizeof k->k, "%s\r\nbin:%d", prefix, i);
        k->k[n] = '\0';
        k->k[n + 1] = 'z';
        k->len = (size_t)n + 2;
    } else {
        k->len = (size_t)snprintf(k->k, sizeof k->k, "%s:%d", prefix, i);
    }
}

/* Fills the source: NKEYS keys of every type, a third with a TTL. */
static void fill_source(void)
{
    struct lab_end e = lab_plain_end(source.port, NULL);
    char val[64], num[32];
    int i, queued = 0;

    for (i = 0; i < NKEYS; i++) {
        struct key *k = &keys[i];
        make_key(k, "mig", i);
        int vlen = snprintf(val, sizeof val, "v\r\n%d", i);
        val[1] = '\0'; /* binary value */
        switch (i % 7) {
        case 0: {
            const char *a[] = {"SET", k->k, val};
            size_t l[] = {3, k->len, (size_t)vlen};
            lab_end_append(&e, 3, a, l);
            break;
        }
        case 1: {
            const char *a[] = {"HSET", k->k, "f1", val, "f2", "x"};
            size_t l[] = {4, k->len, 2, (size_t)vlen, 2, 1};
            lab_end_append(&e, 6, a, l);
            break;
        }
        case 2: {
            const char *a[] = {"RPUSH", k->k, "a", val, "c"};
            size_t l[] = {5, k->len, 1, (size_t)vlen, 1};
            lab_end_append(&e, 5, a, l);
            break;
        }
        case 3: {
            const char *a[] = {"SADD", k->k, "m1", val, "m3"};
            size_t l[] = {4, k->len, 2, (size_t)vlen, 2};
            lab_end_append(&e, 5, a, l);
            break;
        }
        case 4: {
            const char *a[] = {"ZADD", k->k, "1.5", "a", "2", val};
            size_t l[] = {4, k->len, 3, 1, 1, (size_t)vlen};
            lab_end_append(&e, 6, a, l);
            break;
        }
        case 5: {
            const char *a[] = {"XADD", k->k, "*", "f", val};
            size_t l[] = {4, k->len, 1, 1, (size_t)vlen};
            lab_end_append(&e, 5, a, l);
            const char *g[] = {"XGROUP", "CREATE", k->k, "g1", "0"};
            size_t gl[] = {6, 6, k->len, 2, 1};
            lab_end_append(&e, 5, g, gl);
            /* A pending entry, so the group's PEL travels too. */
            const char *rd[] = {"XREADGROUP", "GROUP", "g1", "c1", "COUNT", "1", "STREAMS", k->k, ">"};
            size_t rl[] = {10, 5, 2, 2, 5, 1, 7, k->len, 1};
            lab_end_append(&e, 9, rd, rl);
            queued += 2;
            break;
        }
        default: {
            const char *a[] = {"PFADD", k->k, "a", "b", val};
            size_t l[] = {5, k->len, 1, 1, (size_t)vlen};
            lab_end_append(&e, 5, a, l);
            break;
        }
        }
        queued++;
        if (i % 3 == 0) {
            /* Ten minutes and some milliseconds, different for each key. */
            snprintf(num, sizeof num, "%d", 600000 + i * 7);
            const char *a[] = {"PEXPIRE", k->k, num};
            size_t l[] = {7, k->len, strlen(num)};
            lab_end_append(&e, 3, a, l);
            queued++;
        }
        if (queued > 500 || i == NKEYS - 1) {
            while (queued-- > 0)
                lab_expect_ok(lab_end_reply(&e));
            queued = 0;
        }
    }
    assert_int_equal(lab_end_integer(&e, "DBSIZE", NULL), NKEYS);
    lab_end_free(&e);
}

/* NMORTAL keys with TTLs of 1..600 ms, set just before a copy; their
 * expiry times (PEXPIRETIME) go to deadline[]. */
static void add_mortal_keys(long long *deadline)
{
    struct lab_end e = lab_plain_end(source.port, NULL);
    char px[16];
    int i;

    for (i = 0; i < NMORTAL; i++) {
        make_key(&mortal[i], "mortal", i);
        snprintf(px, sizeof px, "%d", 1 + i * 2);
        const char *a[] = {"SET", mortal[i].k, "m", "PX", px};
        size_t l[] = {3, mortal[i].len, 1, 2, strlen(px)};
        lab_end_append(&e, 5, a, l);
        const char *t[] = {"PEXPIRETIME", mortal[i].k};
        size_t tl[] = {11, mortal[i].len};
        lab_end_append(&e, 2, t, tl);
    }
    for (i = 0; i < NMORTAL; i++) {
        lab_expect_ok(lab_end_reply(&e));
        struct redisReply *r = lab_end_reply(&e);
        deadline[i] = redtls_reply_integer(r); /* -2 when already gone */
        redtls_reply_free(r);
        if (deadline[i] > mortal_last)
            mortal_last = deadline[i];
    }
    lab_end_free(&e);
}

static int cmp_elem(const void *a, const void *b)
{
    size_t la, lb;
    const char *x = redtls_reply_str(*(const struct redisReply *const *)a, &la);
    const char *y = redtls_reply_str(*(const struct redisReply *const *)b, &lb);
    int c = memcmp(x, y, la < lb ? la : lb);
    return c != 0 ? c : (la > lb) - (la < lb);
}

/* SMEMBERS replies hold the same members, in whatever order. */
static void assert_same_members(const struct redisReply *a, const struct redisReply *b)
{
    const struct redisReply *ea[8], *eb[8];
    size_t n = redtls_reply_len(a), i;
    assert_int_equal(redtls_reply_type(a), REDTLS_REPLY_ARRAY);
    assert_int_equal(redtls_reply_type(b), REDTLS_REPLY_ARRAY);
    assert_int_equal(redtls_reply_len(b), n);
    assert_true(n <= 8);
    for (i = 0; i < n; i++) {
        ea[i] = redtls_reply_element(a, i);
        eb[i] = redtls_reply_element(b, i);
    }
    qsort(ea, n, sizeof ea[0], cmp_elem);
    qsort(eb, n, sizeof eb[0], cmp_elem);
    for (i = 0; i < n; i++)
        assert_int_equal(cmp_elem(&ea[i], &eb[i]), 0);
}

/* Every long-lived key is on the target with the source's DUMP payload and
 * an expiry no later than the source's (and at most TTL_SLACK_MS earlier).
 * Sets of strings are hash tables in Redis 7.0, whose DUMP order depends on
 * each server's hash seed: those are compared by their members (and type). */
static void compare_keys(struct lab_end *dst)
{
    struct lab_end src = lab_plain_end(source.port, NULL);
    int i, j;

    for (i = 0; i < NKEYS; i += 250) {
        int n = i + 250 <= NKEYS ? 250 : NKEYS - i;
        for (j = 0; j < n; j++) {
            int is_set = (i + j) % 7 == 3;
            const char *d[] = {is_set ? "SMEMBERS" : "DUMP", keys[i + j].k};
            const char *t[] = {"PEXPIRETIME", keys[i + j].k};
            const char *ty[] = {"TYPE", keys[i + j].k};
            size_t l[] = {strlen(d[0]), keys[i + j].len};
            size_t tl[] = {11, keys[i + j].len};
            size_t tyl[] = {4, keys[i + j].len};
            lab_end_append(&src, 2, d, l);
            lab_end_append(&src, 2, t, tl);
            lab_end_append(dst, 2, d, l);
            lab_end_append(dst, 2, t, tl);
            lab_end_append(dst, 2, ty, tyl);
        }
        for (j = 0; j < n; j++) {
            struct redisReply *sd = lab_end_reply(&src), *st = lab_end_reply(&src);
            struct redisReply *dd = lab_end_reply(dst), *dt = lab_end_reply(dst), *dty = lab_end_reply(dst);
            size_t sl, dl;
            if ((i + j) % 7 == 3) {
                assert_reply_str(dty, REDTLS_REPLY_STATUS, "set");
                assert_same_members(sd, dd);
            } else {
                assert_int_equal(redtls_reply_type(sd), REDTLS_REPLY_STRING);
                if (redtls_reply_type(dd) != REDTLS_REPLY_STRING)
                    fail_msg("key %d (type %d) is missing on the target", i + j, (i + j) % 7);
                const char *sp = redtls_reply_str(sd, &sl), *dp = redtls_reply_str(dd, &dl);
                assert_int_equal(sl, dl);
                assert_memory_equal(sp, dp, sl);
            }
            long long se = redtls_reply_integer(st), de = redtls_reply_integer(dt);
            if (se == -1) {
                assert_int_equal(de, -1);
            } else {
                assert_true(se > 0);
                assert_in_range(de, se - TTL_SLACK_MS, se);
            }
            redtls_reply_free(sd);
            redtls_reply_free(st);
            redtls_reply_free(dd);
            redtls_reply_free(dt);
            redtls_reply_free(dty);
        }
    }
    lab_end_free(&src);
}

/* The mortal keys: any on the target expires no later than on the source;
 * once every deadline has passed none is left (nothing resurrected).
 * Returns how many were there right after the copy. */
static int check_mortal(struct lab_end *dst, const long long *deadline)
{
    long long last = 0;
    int i, present = 0;

    for (i = 0; i < NMORTAL; i++) {
        const char *t[] = {"PEXPIRETIME", mortal[i].k};
        size_t tl[] = {11, mortal[i].len};
        struct redisReply *r = lab_end_command(dst, 2, t, tl);
        long long et = redtls_reply_integer(r);
        redtls_reply_free(r);
        if (et != -2) {
            present++;
            assert_true(et > 0);
            assert_true(et <= deadline[i]);
        }
        if (deadline[i] > last)
            last = deadline[i];
    }
    fprintf(stderr, "mortal keys still on the target after the copy: %d of %d\n", present, NMORTAL);
    while (lab_wall_ms() <= last + 20)
        usleep(10000);
    for (i = 0; i < NMORTAL; i++) {
        const char *a[] = {"EXISTS", mortal[i].k};
        size_t l[] = {6, mortal[i].len};
        struct redisReply *r = lab_end_command(dst, 2, a, l);
        assert_int_equal(redtls_reply_integer(r), 0);
        redtls_reply_free(r);
    }
    return present;
}

static void check_counts(const char *out)
{
    long long scanned = lab_report(out, "keys scanned: "), copied = lab_report(out, "keys copied: ");
    long long expired = lab_report(out, "expired on the way: ");
    assert_int_equal(lab_report(out, "keys failed: "), 0);
    assert_int_equal(lab_report(out, "keys skipped: "), 0);
    assert_int_equal(scanned, copied + expired);
    assert_in_range(scanned, NKEYS, NKEYS + NMORTAL);
    assert_in_range(copied, NKEYS, NKEYS + NMORTAL);
    assert_true(lab_report(out, "payload bytes: ") > NKEYS * 10);
}

static char out[8192], err[8192];

static int group_setup(void **state)
{
    (void)state;
    lab_migrate_secrets[0] = TOKEN;
    lab_migrate_secrets[1] = OLD_TOKEN;
    if (lab_init(170) != 0 || lab_certs(NULL) == NULL)
        return -1;
    if (lab_redis_start(&source, &(lab_redis_opts){0}) != 0)
        return -1;
    if (lab_redis_start(&target, &(lab_redis_opts){.tls = 1, .plain_port = 1, .password = TOKEN}) != 0)
        return -1;
    return lab_redis_start(
        &wrongname, &(lab_redis_opts){
                        .tls = 1, .plain_port = 1, .password = TOKEN, .cert = "wrongname.crt", .key = "wrongname.key"});
}

static int group_teardown(void **state)
{
    (void)state;
    lab_stop(&source);
    lab_stop(&target);
    lab_stop(&wrongname);
    return 0;
}

static void test_copy_standalone_tls(void **state)
{
    char from[64], to[64];
    long long deadline[NMORTAL];
    (void)state;

    fill_source();
    snprintf(from, sizeof from, "redis://127.0.0.1:%u", source.port);
    snprintf(to, sizeof to, "rediss://localhost:%u", target.port);
    add_mortal_keys(deadline);
    int rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cacert",
                             lab_cert("ca.crt"), "--to-token", TOKEN, "--batch", "50", (char *)NULL);
    assert_int_equal(rc, 0);
    check_counts(out);
    assert_contains(err, "copied");

    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    compare_keys(&dst);
    /* "copied" counts keys RESTORE made: every mortal key seen counts. */
    assert_true(check_mortal(&dst, deadline) <= lab_report(out, "keys copied: ") - NKEYS);
    assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), NKEYS);
    lab_end_free(&dst);
    /* Never a write on the source. */
    struct lab_end src = lab_plain_end(source.port, NULL);
    assert_int_equal(lab_command_calls(&src, "restore"), 0);
    assert_int_equal(lab_command_calls(&src, "del"), 0);
    lab_end_free(&src);
}

/* Run again with --no-replace: every key is already there. */
static void test_no_replace(void **state)
{
    char from[64], to[64];
    (void)state;

    snprintf(from, sizeof from, "redis://127.0.0.1:%u", source.port);
    snprintf(to, sizeof to, "rediss://localhost:%u", target.port);
    while (lab_wall_ms() <= mortal_last + 20) /* the mortal keys are gone */
        usleep(10000);
    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    const char *a[] = {"SET", keys[0].k, "changed"};
    size_t l[] = {3, keys[0].len, 7};
    lab_expect_ok(lab_end_command(&dst, 3, a, l));
    /* The target's token in rotation: the first is refused, the second taken. */
    int rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cacert",
                             lab_cert("ca.crt"), "--to-token", OLD_TOKEN, "--to-token-alt", TOKEN, "--no-replace",
                             (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "keys skipped: "), NKEYS);
    assert_int_equal(lab_report(out, "keys copied: "), 0);
    assert_int_equal(lab_report(out, "keys failed: "), 0);
    const char *g[] = {"GET", keys[0].k};
    struct redisReply *r = lab_end_command(&dst, 2, g, l);
    assert_reply_str(r, REDTLS_REPLY_STRING, "changed");
    redtls_reply_free(r);
    lab_end_free(&dst);
}

/* --verify-only finds what test_no_replace left (keys[0] changed on the
 * target), a deleted key and a lost TTL; a copy with --verify repairs. */
static void test_verify(void **state)
{
    char from[64], to[64];
    (void)state;

    snprintf(from, sizeof from, "redis://127.0.0.1:%u", source.port);
    snprintf(to, sizeof to, "rediss://localhost:%u", target.port);
    int rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cacert",
                             lab_cert("ca.crt"), "--verify-only", (char *)NULL);
    assert_int_equal(rc, 1);
    assert_int_equal(lab_report(out, "verify: keys compared: "), NKEYS);
    assert_int_equal(lab_report(out, "verify: different values: "), 1);
    assert_int_equal(lab_report(out, "verify: missing on the target: "), 0);
    assert_int_equal(lab_report(out, "verify: different TTLs: "), 0);
    assert_contains(out, "difference: value 'mig\\x0d\\x0abin:0\\x00z'");
    assert_null(strstr(out, "keys copied:")); /* no copy */

    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    assert_int_equal(lab_end_integer(&dst, "DEL", keys[7].k), 1);
    assert_int_equal(lab_end_integer(&dst, "PERSIST", keys[3].k), 1);
    rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cacert",
                         lab_cert("ca.crt"), "--verify-only", (char *)NULL);
    assert_int_equal(rc, 1);
    assert_int_equal(lab_report(out, "verify: different values: "), 1);
    assert_int_equal(lab_report(out, "verify: missing on the target: "), 1);
    assert_int_equal(lab_report(out, "verify: different TTLs: "), 1);
    assert_contains(out, "difference: missing 'mig:7'");
    assert_contains(out, "difference: ttl 'mig:3' (TTL ");

    rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cacert",
                         lab_cert("ca.crt"), "--verify", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "keys copied: "), NKEYS);
    assert_int_equal(lab_report(out, "verify: keys compared: "), NKEYS);
    assert_int_equal(lab_report(out, "verify: different values: "), 0);
    assert_int_equal(lab_report(out, "verify: missing on the target: "), 0);
    assert_int_equal(lab_report(out, "verify: different TTLs: "), 0);
    assert_int_equal(lab_end_integer(&dst, "EXISTS", keys[7].k), 1);
    lab_end_free(&dst);
}

/* The target's plain port and its TLS port are one server: refused by
 * run_id before anything is written. */
static void test_same_server_refused(void **state)
{
    char from[96], to[64];
    (void)state;

    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    long long restores = lab_command_calls(&dst, "restore"), keys_before = lab_end_integer(&dst, "DBSIZE", NULL);
    snprintf(from, sizeof from, "redis://:%s@127.0.0.1:%u", TOKEN, target.plain_port);
    snprintf(to, sizeof to, "rediss://localhost:%u", target.port);
    int rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cacert",
                             lab_cert("ca.crt"), (char *)NULL);
    assert_int_equal(rc, 2);
    assert_contains(err, "same server");
    assert_int_equal(lab_command_calls(&dst, "restore"), restores);
    assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), keys_before);
    lab_end_free(&dst);
}

static void test_wrong_name_refused(void **state)
{
    char from[64], to[64];
    (void)state;

    snprintf(from, sizeof from, "redis://127.0.0.1:%u", source.port);
    snprintf(to, sizeof to, "rediss://localhost:%u", wrongname.port);
    int rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cacert",
                             lab_cert("ca.crt"), (char *)NULL);
    assert_int_equal(rc, 3);
    assert_contains(err, "wrong.example");
    struct lab_end dst = lab_plain_end(wrongname.plain_port, TOKEN);
    assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), 0);
    assert_int_equal(lab_command_calls(&dst, "restore"), 0);
    assert_int_equal(lab_command_calls(&dst, "auth"), 1); /* ours, just now */
    lab_end_free(&dst);
}

/* Node i's count of write commands (INFO stats). */
static long long cluster_writes(lab_cluster *c, size_t i)
{
    struct redisReply *r = NULL;
    assert_int_equal(lab_cluster_admin(c, i, &r, "INFO commandstats"), 0);
    const char *text = redtls_reply_str(r, NULL);
    long long n = 0;
    static const char *const writes[] = {"restore", "set", "del", "unlink", "expire", "pexpire", "persist"};
    for (size_t w = 0; w < sizeof writes / sizeof writes[0]; w++) {
        char needle[64];
        snprintf(needle, sizeof needle, "cmdstat_%s:calls=", writes[w]);
        const char *p = strstr(text, needle);
        if (p != NULL)
            n += strtoll(p + strlen(needle), NULL, 10);
    }
    redtls_reply_free(r);
    return n;
}

/* The cluster made by test_copy_cluster_tls as a source: SCAN on each
 * master, to an emptied standalone target; --dry-run first writes nothing. */
static void test_copy_from_cluster(lab_cluster *c)
{
    char from[64], to[64];

    snprintf(from, sizeof from, "rediss://127.0.0.1:%u", c->node[0].srv.port);
    snprintf(to, sizeof to, "rediss://localhost:%u", target.port);
    while (lab_wall_ms() <= mortal_last + 20)
        usleep(10000);
    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    const char *flush[] = {"FLUSHALL"};
    lab_expect_ok(lab_end_command(&dst, 1, flush, NULL));
    long long restores = lab_command_calls(&dst, "restore");
    long long writes_before[3];
    for (size_t i = 0; i < 3; i++)
        writes_before[i] = cluster_writes(c, i);

    /* The seed by a name only --from-resolve knows; the nodes by the host
     * names they announce (the certificate is *.cluster.test). */
    char seed[64];
    snprintf(seed, sizeof seed, "rediss://seed.cluster.test:%u", c->node[0].srv.port);
    int rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", seed, "--from-cluster", "--from-cacert",
                             lab_cert("ca.crt"), "--from-resolve", "seed.cluster.test:*:127.0.0.1", "--from-token",
                             TOKEN, "--to", to, "--to-cacert", lab_cert("ca.crt"), "--to-tls-min", "1.3", "--dry-run",
                             (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "keys copied: "), NKEYS);
    assert_contains(out, "dry run");
    assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), 0);
    assert_int_equal(lab_command_calls(&dst, "restore"), restores);

    rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--from-cluster", "--from-cacert",
                         lab_cert("ca.crt"), "--from-sni", "src.cluster.test", "--from-token", TOKEN, "--to", to,
                         "--to-cacert", lab_cert("ca.crt"), (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "keys scanned: "), NKEYS);
    assert_int_equal(lab_report(out, "keys copied: "), NKEYS);
    assert_int_equal(lab_report(out, "keys failed: "), 0);
    compare_keys(&dst);
    assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), NKEYS);
    /* Never a write on the source cluster. */
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(cluster_writes(c, i), writes_before[i]);
    lab_end_free(&dst);
}

/* To a TLS 3-master cluster with AUTH; every node presents a
 * *.cluster.test certificate and announces 127.0.0.1. */
static void test_copy_cluster_tls(void **state)
{
    static lab_cluster c;
    char from[64], to[64];
    long long deadline[NMORTAL];
    (void)state;

    lab_migrate_cluster_start(&c, TOKEN);
    snprintf(from, sizeof from, "redis://127.0.0.1:%u", source.port);
    snprintf(to, sizeof to, "rediss://127.0.0.1:%u", c.node[0].srv.port);
    add_mortal_keys(deadline);
    int rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cluster",
                             "--to-cacert", lab_cert("ca.crt"), "--to-sni", "migrate.cluster.test", (char *)NULL);
    assert_int_equal(rc, 0);
    check_counts(out);

    struct lab_end dst = lab_cluster_end(&c, TOKEN);
    compare_keys(&dst);
    /* "copied" counts keys RESTORE made: every mortal key seen counts. */
    assert_true(check_mortal(&dst, deadline) <= lab_report(out, "keys copied: ") - NKEYS);
    rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cluster",
                         "--to-cacert", lab_cert("ca.crt"), "--to-sni", "migrate.cluster.test", "--verify-only",
                         (char *)NULL);
    assert_int_equal(rc, 0);
    assert_in_range(lab_report(out, "verify: keys compared: "), NKEYS, NKEYS);
    assert_int_equal(lab_cluster_dbsize(&c), NKEYS);
    lab_end_free(&dst);
    test_copy_from_cluster(&c);
    lab_cluster_stop(&c);
}

/* --db N on both standalone sides, --match PATTERN. */
static void test_match_and_db(void **state)
{
    char from[64], to[64], name[32];
    (void)state;

    snprintf(from, sizeof from, "redis://127.0.0.1:%u", source.port);
    snprintf(to, sizeof to, "rediss://localhost:%u", target.port);
    struct lab_end src = lab_plain_end(source.port, NULL);
    const char *sel[] = {"SELECT", "3"};
    lab_expect_ok(lab_end_command(&src, 2, sel, NULL));
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, i % 2 == 0 ? "m:%d" : "other:%d", i);
        const char *a[] = {"SET", name, "v"};
        lab_expect_ok(lab_end_command(&src, 3, a, NULL));
    }
    lab_end_free(&src);
    int rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cacert",
                             lab_cert("ca.crt"), "--db", "3", "--match", "m:*", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "keys scanned: "), 20);
    assert_int_equal(lab_report(out, "keys copied: "), 20);
    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    lab_expect_ok(lab_end_command(&dst, 2, sel, NULL));
    assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), 20);
    assert_int_equal(lab_end_integer(&dst, "EXISTS", "m:38"), 1);
    lab_end_free(&dst);
}

/* Usage and configuration mistakes exit 2 before connecting anywhere. */
static void test_usage_errors(void **state)
{
    char from[64], to[64];
    (void)state;

    snprintf(from, sizeof from, "redis://127.0.0.1:%u", source.port);
    snprintf(to, sizeof to, "rediss://localhost:%u", target.port);
    assert_int_equal(lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", from, (char *)NULL), 2);
    assert_contains(err, "--from and --to");
    assert_int_equal(lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--batch", "0",
                                     (char *)NULL),
                     2);
    assert_int_equal(lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cert",
                                     lab_cert("client.crt"), (char *)NULL),
                     2);
    assert_int_equal(lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", from, "--to", to,
                                     "--from-resolve", "nocolon", (char *)NULL),
                     2);
    assert_contains(err, "bad --from-resolve 'nocolon'");
    assert_int_equal(lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cacert",
                                     "/nonexistent/ca.crt", (char *)NULL),
                     2);
    assert_contains(err, "target CA file");
}

/* A target refusing the token: exit 3 before anything is written. */
static void test_bad_token_refused(void **state)
{
    char from[64], to[64];
    (void)state;

    snprintf(from, sizeof from, "redis://127.0.0.1:%u", source.port);
    snprintf(to, sizeof to, "rediss://localhost:%u", wrongname.port);
    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    long long restores = lab_command_calls(&dst, "restore");
    snprintf(to, sizeof to, "rediss://localhost:%u", target.port);
    int rc = lab_run_migrate(OLD_TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cacert",
                             lab_cert("ca.crt"), (char *)NULL);
    assert_int_equal(rc, 3);
    assert_contains(err, "target");
    assert_int_equal(lab_command_calls(&dst, "restore"), restores);
    lab_end_free(&dst);
}

/* IAM on the target: an ACL user that takes the tokens these seconds sign
 * (as ElastiCache checks them); the tool has no password for the target,
 * so only the IAM token can let it in. Another region signs other tokens:
 * refused before anything is written. */
#define IAM_USER "mig-iam-user"
#define IAM_SECRET "lab/Migrate+Secret=00000000000000000000000"
static void test_iam_target(void **state)
{
    char from[64], to[64];
    static char tok[8192];
    redtls_config *cfg = NULL;
    (void)state;

    lab_migrate_secrets[2] = IAM_SECRET;
    assert_int_equal(setenv("AWS_ACCESS_KEY_ID", "AKIDLABMIGRATE000001", 1), 0);
    assert_int_equal(setenv("AWS_SECRET_ACCESS_KEY", IAM_SECRET, 1), 0);
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    assert_int_equal(redtls_config_set_iam(cfg, "mig-cache", IAM_USER, "us-east-1", 0), REDTLS_OK);
    assert_int_equal(redtls_config_set_aws_credentials_from_env(cfg), REDTLS_OK);
    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    const char *reset[] = {"ACL", "SETUSER", IAM_USER, "reset", "on", "~*", "+@all"};
    lab_expect_ok(lab_end_command(&dst, 7, reset, NULL));
    long long now = lab_wall_ms() / 1000;
    for (long long t = now - 2; t <= now + 30; t++) {
        assert_int_equal(redtls_iam_token(cfg, t, tok, sizeof tok), REDTLS_OK);
        char pass[sizeof tok + 1];
        snprintf(pass, sizeof pass, ">%s", tok);
        const char *add[] = {"ACL", "SETUSER", IAM_USER, pass};
        lab_expect_ok(lab_end_command(&dst, 4, add, NULL));
    }
    memset(tok, 0, sizeof tok);
    redtls_config_free(cfg);
    const char *flush[] = {"FLUSHALL"};
    lab_expect_ok(lab_end_command(&dst, 1, flush, NULL));
    long long restores = lab_command_calls(&dst, "restore");

    snprintf(from, sizeof from, "redis://127.0.0.1:%u", source.port);
    snprintf(to, sizeof to, "rediss://localhost:%u", target.port);
    int rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cacert",
                             lab_cert("ca.crt"), "--to-iam", "mig-cache", "--to-region", "eu-west-1", "--to-user",
                             IAM_USER, "--match", "mig:1*", (char *)NULL);
    assert_int_equal(rc, 3);
    assert_contains(err, "target");
    assert_int_equal(lab_command_calls(&dst, "restore"), restores);

    rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cacert",
                         lab_cert("ca.crt"), "--to-iam", "mig-cache", "--to-region", "us-east-1", "--to-user", IAM_USER,
                         "--match", "mig:1*", (char *)NULL);
    assert_int_equal(rc, 0);
    long long copied = lab_report(out, "keys copied: ");
    assert_true(copied > 100);
    assert_int_equal(lab_report(out, "keys failed: "), 0);
    assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), copied);
    /* Options that go with IAM: usage errors. */
    rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-iam", "mig-cache",
                         "--to-region", "us-east-1", (char *)NULL);
    assert_int_equal(rc, 2);
    assert_contains(err, "--to-user");
    lab_expect_ok(lab_end_command(&dst, 1, flush, NULL));
    const char *del[] = {"ACL", "DELUSER", IAM_USER};
    lab_end_free(&dst);
    dst = lab_plain_end(target.plain_port, TOKEN);
    struct redisReply *r = lab_end_command(&dst, 3, del, NULL);
    redtls_reply_free(r);
    lab_end_free(&dst);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
}

/* The source answers some commands with refusals (an ACL): a refused PTTL
 * fails its key (never "expired on the way"), a refused SCAN ends the run
 * at once (exit 3, no retries), and a URL with a token where the port goes
 * is a usage error whose message does not quote it. */
static void test_source_refusals(void **state)
{
    char from[128], to[64];
    (void)state;

    struct lab_end src = lab_plain_end(source.port, NULL);
    static const char pass[] = ">" OLD_TOKEN;
    const char *nopttl[] = {"ACL", "SETUSER", "mig-nopttl", "reset", "on", pass, "~*", "+@all", "-pttl"};
    lab_expect_ok(lab_end_command(&src, 9, nopttl, NULL));
    const char *noscan[] = {"ACL", "SETUSER", "mig-noscan", "reset", "on", pass, "~*", "+@all", "-scan"};
    lab_expect_ok(lab_end_command(&src, 9, noscan, NULL));
    snprintf(to, sizeof to, "rediss://localhost:%u", target.port);

    snprintf(from, sizeof from, "redis://mig-nopttl:%s@127.0.0.1:%u", OLD_TOKEN, source.port);
    int rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cacert",
                             lab_cert("ca.crt"), "--match", "mig:2*", (char *)NULL);
    assert_int_equal(rc, 1);
    long long scanned = lab_report(out, "keys scanned: ");
    assert_true(scanned > 100);
    assert_int_equal(lab_report(out, "keys failed: "), scanned);
    assert_int_equal(lab_report(out, "expired on the way: "), 0);
    assert_int_equal(lab_report(out, "keys copied: "), 0);
    assert_contains(err, "NOPERM");

    snprintf(from, sizeof from, "redis://mig-noscan:%s@127.0.0.1:%u", OLD_TOKEN, source.port);
    rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--to-cacert",
                         lab_cert("ca.crt"), (char *)NULL);
    assert_int_equal(rc, 3);
    assert_contains(err, "SCAN: refused");
    assert_null(strstr(err, "attempt"));

    snprintf(from, sizeof from, "redis://default:%s", TOKEN);
    rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", from, "--to", to, "--checkpoint",
                         "/nonexistent/ckpt", "--resume", (char *)NULL);
    assert_int_equal(rc, 2);
    const char *del[] = {"ACL", "DELUSER", "mig-nopttl", "mig-noscan"};
    struct redisReply *r = lab_end_command(&src, 4, del, NULL);
    redtls_reply_free(r);
    lab_end_free(&src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_standalone_tls),
        cmocka_unit_test(test_no_replace),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_same_server_refused),
        cmocka_unit_test(test_wrong_name_refused),
        cmocka_unit_test(test_bad_token_refused),
        cmocka_unit_test(test_iam_target),
        cmocka_unit_test(test_source_refusals),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_match_and_db),
        cmocka_unit_test(test_copy_cluster_tls),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

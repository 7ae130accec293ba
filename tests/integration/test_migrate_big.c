/* examples/redtls-migrate with values too big for one RESTORE: a big hash,
 * set, sorted set (scores such as -inf and 1e300), list, binary string and
 * stream (with a consumer group) on a plain source, copied in pieces to a
 * TLS target (small --chunk-limit, a target whose proto-max-bulk-len is
 * 1mb, a source reader limit) and to a 3-master TLS cluster; every value
 * compared exactly, expiry times checked, --no-replace, and never a
 * temporary key left behind. */
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

#define TOKEN "lab-MigrateBig-Token-a81c"
#define NFIELDS 200000
#define NMEMBERS 30000
#define NZSET 20000
#define NLIST 30000
#define NENTRIES 10000
#define STRING_BYTES (3 * 1024 * 1024 + 17)
#define NSMALL 50
#define TTL_SLACK_MS 2000

static lab_server source; /* plain, no password */
static lab_server target; /* TLS + plain port, requirepass TOKEN */
static char out[16384], err[65536];

enum { HASH, SET, ZSET, LIST, STRING, STREAM, NBIG };
static const char *const big[NBIG] = {"big:hash", "big:set", "big:zset", "big:list", "big:string", "big:stream"};
static long long dump_len[NBIG]; /* DUMP payload size on the source */

static void rand_bytes(uint64_t *st, char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(lab_prng(st) >> 24);
}

/* Runs what was appended, n replies, each must not be an error. */
static void drain(struct lab_end *e, int *n)
{
    for (; *n > 0; (*n)--)
        lab_expect_ok(lab_end_reply(e));
}

static void cmd(struct lab_end *e, int argc, const char **argv, const size_t *lens)
{
    lab_expect_ok(lab_end_command(e, argc, argv, lens));
}

static void fill_source(void)
{
    struct lab_end e = lab_plain_end(source.port, NULL);
    static const char *argv[2 + 2 * 1000];
    static size_t lens[2 + 2 * 1000];
    static char names[1000][24], vals[1000][16];
    static char *str;
    uint64_t st = lab_seed();
    int i, j, q = 0;

    /* hash: field f<i>, 8 random bytes each */
    for (i = 0; i < NFIELDS; i += 1000) {
        argv[0] = "HSET", lens[0] = 4, argv[1] = big[HASH], lens[1] = 8;
        for (j = 0; j < 1000; j++) {
            argv[2 + 2 * j] = names[j];
            lens[2 + 2 * j] = (size_t)snprintf(names[j], 24, "f%d", i + j);
            rand_bytes(&st, vals[j], 8);
            argv[3 + 2 * j] = vals[j], lens[3 + 2 * j] = 8;
        }
        lab_end_append(&e, 2 + 2000, argv, lens);
        q++;
    }
    drain(&e, &q);
    /* set: m<i>- and 6 random bytes */
    for (i = 0; i < NMEMBERS; i += 1000) {
        argv[0] = "SADD", lens[0] = 4, argv[1] = big[SET], lens[1] = 7;
        for (j = 0; j < 1000; j++) {
            int n = snprintf(names[j], 24, "m%d-", i + j);
            rand_bytes(&st, names[j] + n, 6);
            argv[2 + j] = names[j], lens[2 + j] = (size_t)n + 6;
        }
        lab_end_append(&e, 2 + 1000, argv, lens);
        q++;
    }
    drain(&e, &q);
    /* sorted set: scores that must come back exactly */
    static const char *const scores[] = {"0.1", "-inf", "inf", "1e300", "-2.5e-300", "0.30000000000000004"};
    for (i = 0; i < NZSET; i += 1000) {
        argv[0] = "ZADD", lens[0] = 4, argv[1] = big[ZSET], lens[1] = 8;
        for (j = 0; j < 1000; j++) {
            int k = i + j;
            if (k % 7 < 6)
                lens[2 + 2 * j] = strlen(argv[2 + 2 * j] = scores[k % 7]);
            else
                argv[2 + 2 * j] = vals[j], lens[2 + 2 * j] = (size_t)snprintf(vals[j], 16, "%d.%d", k, k % 97);
            int n = snprintf(names[j], 24, "z%d:", k);
            rand_bytes(&st, names[j] + n, 4);
            argv[3 + 2 * j] = names[j], lens[3 + 2 * j] = (size_t)n + 4;
        }
        lab_end_append(&e, 2 + 2000, argv, lens);
        q++;
    }
    drain(&e, &q);
    /* list: 12 random bytes per element (NUL, CR, LF among them) */
    for (i = 0; i < NLIST; i += 1000) {
        argv[0] = "RPUSH", lens[0] = 5, argv[1] = big[LIST], lens[1] = 8;
        for (j = 0; j < 1000; j++) {
            rand_bytes(&st, names[j], 12);
            argv[2 + j] = names[j], lens[2 + j] = 12;
        }
        lab_end_append(&e, 2 + 1000, argv, lens);
        q++;
    }
    drain(&e, &q);
    /* string: random binary */
    str = malloc(STRING_BYTES);
    assert_non_null(str);
    rand_bytes(&st, str, STRING_BYTES);
    const char *s[] = {"SET", big[STRING], str};
    size_t sl[] = {3, 10, STRING_BYTES};
    cmd(&e, 3, s, sl);
    free(str);
    /* stream: explicit IDs, a deleted entry, a group with pending entries */
    for (i = 1; i <= NENTRIES; i++) {
        char id[24];
        const char *x[] = {"XADD", big[STREAM], id, "f", vals[0], "g", "x"};
        size_t xl[] = {4, 10, (size_t)snprintf(id, sizeof id, "7-%d", i), 1, 16, 1, 1};
        rand_bytes(&st, vals[0], 16);
        lab_end_append(&e, 7, x, xl);
        q++;
    }
    drain(&e, &q);
    const char *xd[] = {"XDEL", big[STREAM], "7-5000"};
    cmd(&e, 3, xd, NULL);
    const char *xg[] = {"XGROUP", "CREATE", big[STREAM], "grp", "0"};
    cmd(&e, 5, xg, NULL);
    const char *xr[] = {"XREADGROUP", "GROUP", "grp", "c1", "COUNT", "3", "STREAMS", big[STREAM], ">"};
    cmd(&e, 9, xr, NULL);
    /* TTLs on some, different milliseconds */
    const char *p1[] = {"PEXPIRE", big[HASH], "600123"};
    cmd(&e, 3, p1, NULL);
    const char *p2[] = {"PEXPIRE", big[ZSET], "700456"};
    cmd(&e, 3, p2, NULL);
    const char *p3[] = {"PEXPIRE", big[STRING], "800789"};
    cmd(&e, 3, p3, NULL);
    for (i = 0; i < NSMALL; i++) {
        char k[24], v[24];
        const char *a[] = {"SET", k, v};
        size_t l[] = {3, (size_t)snprintf(k, sizeof k, "small:%d", i), (size_t)snprintf(v, sizeof v, "value %d", i)};
        lab_end_append(&e, 3, a, l);
        q++;
    }
    drain(&e, &q);
    for (i = 0; i < NBIG; i++) {
        const char *d[] = {"DUMP", big[i]};
        struct redisReply *r = lab_end_command(&e, 2, d, NULL);
        size_t len;
        assert_non_null(redtls_reply_str(r, &len));
        dump_len[i] = (long long)len;
        redtls_reply_free(r);
        /* --chunk-limit 64k below chunks every one of them. */
        assert_true(dump_len[i] > 64LL * 1024);
    }
    lab_end_free(&e);
}

/* ----- exact comparison ------------------------------------------------ */

static int cmp_str(const struct redisReply *a, const struct redisReply *b)
{
    size_t la, lb;
    const char *sa = redtls_reply_str(a, &la), *sb = redtls_reply_str(b, &lb);
    int c = memcmp(sa, sb, la < lb ? la : lb);
    return c != 0 ? c : (la > lb) - (la < lb);
}

static void assert_same(const struct redisReply *a, const struct redisReply *b)
{
    assert_int_equal(redtls_reply_type(a), redtls_reply_type(b));
    switch (redtls_reply_type(a)) {
    case REDTLS_REPLY_ARRAY:
        assert_int_equal(redtls_reply_len(a), redtls_reply_len(b));
        for (size_t i = 0; i < redtls_reply_len(a); i++)
            assert_same(redtls_reply_element(a, i), redtls_reply_element(b, i));
        break;
    case REDTLS_REPLY_INTEGER: assert_int_equal(redtls_reply_integer(a), redtls_reply_integer(b)); break;
    default: assert_int_equal(cmp_str(a, b), 0);
    }
}

/* Groups of `per` elements (a member; a field and its value), sorted by
 * their first element. */
static const struct redisReply *sorting;
static int cmp_group(const void *x, const void *y)
{
    return cmp_str(redtls_reply_element(sorting, *(const size_t *)x),
                   redtls_reply_element(sorting, *(const size_t *)y));
}

static size_t *sorted_groups(const struct redisReply *r, size_t per)
{
    size_t n = redtls_reply_len(r) / per;
    size_t *idx = malloc((n + 1) * sizeof(*idx));
    assert_non_null(idx);
    for (size_t i = 0; i < n; i++)
        idx[i] = i * per;
    sorting = r;
    qsort(idx, n, sizeof(*idx), cmp_group);
    return idx;
}

static void assert_same_unordered(const struct redisReply *a, const struct redisReply *b, size_t per)
{
    assert_int_equal(redtls_reply_type(a), REDTLS_REPLY_ARRAY);
    assert_int_equal(redtls_reply_len(a), redtls_reply_len(b));
    size_t *ia = sorted_groups(a, per), *ib = sorted_groups(b, per);
    for (size_t i = 0; i < redtls_reply_len(a) / per; i++)
        for (size_t k = 0; k < per; k++)
            assert_int_equal(cmp_str(redtls_reply_element(a, ia[i] + k), redtls_reply_element(b, ib[i] + k)), 0);
    free(ia);
    free(ib);
}

static struct redisReply *get(struct lab_end *e, const char *c1, const char *key, const char *a1, const char *a2,
                              const char *a3)
{
    const char *argv[5] = {c1, key, a1, a2, a3};
    int argc = a3 ? 5 : a2 ? 4 : a1 ? 3 : 2;
    return lab_end_command(e, argc, argv, NULL);
}

static long long expire_time(struct lab_end *e, const char *key)
{
    struct redisReply *r = get(e, "PEXPIRETIME", key, NULL, NULL, NULL);
    long long v = redtls_reply_integer(r);
    redtls_reply_free(r);
    return v;
}

/* An XINFO STREAM field. */
static const struct redisReply *info(const struct redisReply *r, const char *name)
{
    for (size_t i = 0; i + 1 < redtls_reply_len(r); i += 2)
        if (strcmp(redtls_reply_str(redtls_reply_element(r, i), NULL), name) == 0)
            return redtls_reply_element(r, i + 1);
    fail_msg("XINFO STREAM has no %s", name);
    return NULL;
}

/* The value and the expiry of big[i] on dst equal the source's; pieces:
 * it was copied in pieces (a stream without its consumer group). */
static void compare_big(struct lab_end *src, struct lab_end *dst, int i, int pieces)
{
    struct redisReply *a = NULL, *b = NULL;
    const char *k = big[i];

    switch (i) {
    case HASH:
        a = get(src, "HGETALL", k, NULL, NULL, NULL);
        b = get(dst, "HGETALL", k, NULL, NULL, NULL);
        assert_int_equal(redtls_reply_len(a), 2 * NFIELDS);
        assert_same_unordered(a, b, 2);
        break;
    case SET:
        a = get(src, "SMEMBERS", k, NULL, NULL, NULL);
        b = get(dst, "SMEMBERS", k, NULL, NULL, NULL);
        assert_int_equal(redtls_reply_len(a), NMEMBERS);
        assert_same_unordered(a, b, 1);
        break;
    case ZSET:
        a = get(src, "ZRANGE", k, "0", "-1", "WITHSCORES");
        b = get(dst, "ZRANGE", k, "0", "-1", "WITHSCORES");
        assert_int_equal(redtls_reply_len(a), 2 * NZSET);
        assert_same(a, b);
        break;
    case LIST:
        a = get(src, "LRANGE", k, "0", "-1", NULL);
        b = get(dst, "LRANGE", k, "0", "-1", NULL);
        assert_int_equal(redtls_reply_len(a), NLIST);
        assert_same(a, b);
        break;
    case STRING:
        a = get(src, "GET", k, NULL, NULL, NULL);
        b = get(dst, "GET", k, NULL, NULL, NULL);
        assert_same(a, b);
        break;
    default: {
        a = get(src, "XRANGE", k, "-", "+", NULL);
        b = get(dst, "XRANGE", k, "-", "+", NULL);
        assert_int_equal(redtls_reply_len(a), NENTRIES - 1);
        assert_same(a, b);
        redtls_reply_free(a);
        redtls_reply_free(b);
        a = get(src, "XINFO", "STREAM", k, NULL, NULL);
        b = get(dst, "XINFO", "STREAM", k, NULL, NULL);
        static const char *const same[] = {"length", "last-generated-id", "max-deleted-entry-id", "entries-added",
                                           "recorded-first-entry-id"};
        for (size_t f = 0; f < sizeof same / sizeof same[0]; f++)
            assert_same(info(a, same[f]), info(b, same[f]));
        assert_int_equal(redtls_reply_integer(info(a, "groups")), 1);
        /* Groups are not carried in pieces (the tool warns). */
        assert_int_equal(redtls_reply_integer(info(b, "groups")), pieces ? 0 : 1);
    }
    }
    redtls_reply_free(a);
    redtls_reply_free(b);
    long long ea = expire_time(src, k), eb = expire_time(dst, k);
    if (ea < 0) {
        assert_int_equal(eb, ea);
    } else {
        assert_true(eb <= ea);
        assert_true(eb >= ea - TTL_SLACK_MS);
    }
}

static void compare_small(struct lab_end *dst)
{
    for (int i = 0; i < NSMALL; i++) {
        char k[24], v[24];
        snprintf(k, sizeof k, "small:%d", i);
        snprintf(v, sizeof v, "value %d", i);
        struct redisReply *r = get(dst, "GET", k, NULL, NULL, NULL);
        assert_reply_str(r, REDTLS_REPLY_STRING, v);
        redtls_reply_free(r);
    }
}

/* No key of the tool's temporary names on a standalone target. */
static void assert_no_tmp(struct lab_end *dst)
{
    struct redisReply *r = get(dst, "KEYS", "*redtls-migrate*", NULL, NULL, NULL);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_ARRAY);
    assert_int_equal(redtls_reply_len(r), 0);
    redtls_reply_free(r);
}

static void flush_target(struct lab_end *dst)
{
    const char *f[] = {"FLUSHALL"};
    cmd(dst, 1, f, NULL);
}

static const char *from_url(void)
{
    static char u[64];
    snprintf(u, sizeof u, "redis://127.0.0.1:%u", source.port);
    return u;
}

static const char *to_url(void)
{
    static char u[64];
    snprintf(u, sizeof u, "rediss://localhost:%u", target.port);
    return u;
}

/* ----- a second client changing things while the tool copies ----------- */

/* In a child process, with connections of its own to the source and the
 * target: ready() answers 1 once the copy has reached the point wanted (0:
 * not yet, -1: give up), then act() makes the change (0: done). */
typedef int (*race_fn)(redtls_conn *src, redtls_conn *dst);

static redtls_conn *child_conn(uint16_t port, const char *token)
{
    redtls_config *cfg = NULL;
    redtls_conn *c = NULL;
    if (redtls_config_new(&cfg) != REDTLS_OK)
        return NULL;
    if (redtls_config_set_host(cfg, "127.0.0.1", port) != REDTLS_OK || redtls_config_set_tls(cfg, 0) != REDTLS_OK ||
        (token != NULL && redtls_config_set_token(cfg, token) != REDTLS_OK) || redtls_conn_new(cfg, &c) != REDTLS_OK) {
        redtls_config_free(cfg);
        return NULL;
    }
    redtls_config_free(cfg);
    if (redtls_conn_connect(c) != REDTLS_OK) {
        redtls_conn_free(c);
        return NULL;
    }
    return c;
}

/* Forks the child (no cmocka call in it): it waits for ready(), runs
 * act(), lifts any CLIENT PAUSE of the target and exits 0, or 1 when the
 * moment never came within 20 s or the change failed. */
static pid_t race_start(race_fn ready, race_fn act)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid > 0)
        return pid;
    redtls_conn *src = child_conn(source.port, NULL), *dst = child_conn(target.plain_port, TOKEN);
    int ok = 0;
    long long until = lab_wall_ms() + 20000;
    while (src != NULL && dst != NULL && lab_wall_ms() < until) {
        int r = ready(src, dst);
        if (r < 0)
            break;
        if (r > 0) {
            ok = act(src, dst) == 0;
            break;
        }
        usleep(500);
    }
    if (dst != NULL) {
        struct redisReply *r = NULL;
        (void)redtls_conn_command(dst, &r, "CLIENT UNPAUSE");
        redtls_reply_free(r);
    }
    _exit(ok ? 0 : 1);
}

/* The child saw its moment and made its change. */
static void race_end(pid_t pid)
{
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* 1 when INFO commandstats has counted a call of stat ("hscan",
 * "xinfo|stream") since the last CONFIG RESETSTAT. */
static int child_called(redtls_conn *c, const char *stat)
{
    struct redisReply *r = NULL;
    char needle[64];
    int seen;
    if (redtls_conn_command(c, &r, "INFO commandstats") != REDTLS_OK || redtls_reply_type(r) != REDTLS_REPLY_STRING) {
        redtls_reply_free(r);
        return -1;
    }
    snprintf(needle, sizeof needle, "cmdstat_%s:calls=", stat);
    seen = strstr(redtls_reply_str(r, NULL), needle) != NULL;
    redtls_reply_free(r);
    return seen;
}

/* 0 when c answers cmd (a format without arguments) with no error. */
static int child_ok(redtls_conn *c, const char *fmt, const char *arg)
{
    struct redisReply *r = NULL;
    redtls_status st = redtls_conn_command(c, &r, fmt, arg);
    int bad = st != REDTLS_OK || redtls_reply_type(r) == REDTLS_REPLY_ERROR;
    redtls_reply_free(r);
    return bad ? -1 : 0;
}

/* A hash of n fields ("x<i>" = "x<i>") on the source, no TTL. */
static void fill_hash(struct lab_end *src, const char *key, int n)
{
    static const char *argv[2 + 2 * 1000];
    static size_t lens[2 + 2 * 1000];
    static char names[1000][16];
    int q = 0;

    for (int i = 0; i < n; i += 1000) {
        argv[0] = "HSET", argv[1] = key;
        lens[0] = 4, lens[1] = strlen(key);
        for (int j = 0; j < 1000; j++) {
            argv[2 + 2 * j] = argv[3 + 2 * j] = names[j];
            lens[2 + 2 * j] = lens[3 + 2 * j] = (size_t)snprintf(names[j], sizeof names[j], "x%d", i + j);
        }
        lab_end_append(src, 2 + 2000, argv, lens);
        q++;
    }
    drain(src, &q);
}

static void reset_stats(struct lab_end *e)
{
    const char *rs[] = {"CONFIG", "RESETSTAT"};
    cmd(e, 2, rs, NULL);
}

static void pause_writes(struct lab_end *e)
{
    const char *pause[] = {"CLIENT", "PAUSE", "30000", "WRITE"};
    cmd(e, 4, pause, NULL);
}

static void del_key(struct lab_end *e, const char *key)
{
    const char *d[] = {"DEL", key};
    cmd(e, 2, d, NULL);
}

/* ----- tests ------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    lab_migrate_secrets[0] = TOKEN;
    if (lab_init(170) != 0 || lab_certs(NULL) == NULL)
        return -1;
    if (lab_redis_start(&source, &(lab_redis_opts){0}) != 0)
        return -1;
    return lab_redis_start(&target, &(lab_redis_opts){.tls = 1, .plain_port = 1, .password = TOKEN});
}

static int group_teardown(void **state)
{
    (void)state;
    lab_stop(&source);
    lab_stop(&target);
    return 0;
}

/* --chunk-limit 64k: every big value goes in pieces, the small keys by
 * RESTORE, in the same batches. */
static void test_pieces_standalone(void **state)
{
    (void)state;
    fill_source();
    int rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from_url(), "--to", to_url(),
                             "--to-cacert", lab_cert("ca.crt"), "--chunk-limit", "64k", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "keys copied: "), NBIG + NSMALL);
    assert_int_equal(lab_report(out, "keys chunked: "), NBIG);
    assert_int_equal(lab_report(out, "keys failed: "), 0);
    assert_int_equal(lab_report(out, "keys skipped: "), 0);
    assert_contains(err, "warning: key 'big:stream'");
    assert_contains(err, "consumer group");

    struct lab_end src = lab_plain_end(source.port, NULL);
    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    for (int i = 0; i < NBIG; i++)
        compare_big(&src, &dst, i, 1);
    compare_small(&dst);
    assert_no_tmp(&dst);
    assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), NBIG + NSMALL);
    /* Never a write on the source. */
    assert_int_equal(lab_command_calls(&src, "hset"), NFIELDS / 1000);
    assert_int_equal(lab_command_calls(&src, "rename"), 0);
    assert_int_equal(lab_command_calls(&src, "unlink"), 0);
    assert_int_equal(lab_command_calls(&src, "append"), 0);
    lab_end_free(&src);
    lab_end_free(&dst);
}

/* --no-replace: keys already there are left (counted skipped, even the
 * big ones, whose value would go in pieces); a missing big one is made. */
static void test_no_replace(void **state)
{
    (void)state;
    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    const char *del[] = {"DEL", big[LIST]};
    cmd(&dst, 2, del, NULL);
    const char *mine[] = {"RPUSH", big[LIST], "mine"};
    cmd(&dst, 3, mine, NULL);
    const char *del2[] = {"DEL", big[SET]};
    cmd(&dst, 2, del2, NULL);
    int rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from_url(), "--to", to_url(),
                             "--to-cacert", lab_cert("ca.crt"), "--chunk-limit", "64k", "--no-replace", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "keys skipped: "), NBIG + NSMALL - 1);
    assert_int_equal(lab_report(out, "keys copied: "), 1);
    assert_int_equal(lab_report(out, "keys chunked: "), 1);
    struct redisReply *r = get(&dst, "LRANGE", big[LIST], "0", "-1", NULL);
    assert_int_equal(redtls_reply_len(r), 1);
    assert_reply_str(redtls_reply_element(r, 0), REDTLS_REPLY_STRING, "mine");
    redtls_reply_free(r);
    struct lab_end src = lab_plain_end(source.port, NULL);
    compare_big(&src, &dst, SET, 1);
    assert_no_tmp(&dst);
    lab_end_free(&src);
    lab_end_free(&dst);
}

/* A target whose proto-max-bulk-len is 1mb would refuse (and drop the
 * connection on) a RESTORE of a bigger payload: with the default chunk
 * limit exactly the keys whose DUMP is over it go in pieces (all but the
 * string, which such a server cannot hold). */
static void test_target_bulk_limit(void **state)
{
    (void)state;
    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    flush_target(&dst);
    const char *set[] = {"CONFIG", "SET", "proto-max-bulk-len", "1mb"};
    cmd(&dst, 4, set, NULL);
    int over = 0;
    for (int i = 0; i < NBIG; i++)
        over += dump_len[i] > 1024LL * 1024 - 4096;
    assert_true(over >= 2); /* the hash and the string at least */
    assert_true(over < NBIG);
    int rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from_url(), "--to", to_url(),
                             "--to-cacert", lab_cert("ca.crt"), (char *)NULL);
    const char *reset[] = {"CONFIG", "SET", "proto-max-bulk-len", "512mb"};
    cmd(&dst, 4, reset, NULL);
    /* Such a target cannot hold a string over 1mb at all: that key fails,
     * with the server's reason. */
    assert_int_equal(rc, 1);
    assert_int_equal(lab_report(out, "keys failed: "), 1);
    assert_contains(err, "key 'big:string' failed");
    assert_contains(err, "proto-max-bulk-len");
    assert_int_equal(lab_report(out, "keys copied: "), NBIG + NSMALL - 1);
    assert_int_equal(lab_report(out, "keys chunked: "), over - 1);
    struct lab_end src = lab_plain_end(source.port, NULL);
    for (int i = 0; i < NBIG; i++)
        if (i != STRING)
            compare_big(&src, &dst, i, dump_len[i] > 1024LL * 1024 - 4096);
    assert_int_equal(lab_end_integer(&dst, "EXISTS", big[STRING]), 0);
    compare_small(&dst);
    assert_no_tmp(&dst);
    lab_end_free(&src);
    lab_end_free(&dst);
}

/* A DUMP over the source reader's limit (--from-max-bulk) ends that
 * connection; the key goes in pieces and the rest of its batch is read
 * again: nothing lost. */
static void test_reader_limit(void **state)
{
    (void)state;
    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    flush_target(&dst);
    int over = 0;
    for (int i = 0; i < NBIG; i++)
        over += dump_len[i] > 256LL * 1024;
    assert_true(over >= 2);
    /* "payload bytes" counts the DUMPs the reader refused too, --dry-run
     * or not: the same as with no reader limit. */
    int rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from_url(), "--to", to_url(),
                             "--to-cacert", lab_cert("ca.crt"), "--dry-run", (char *)NULL);
    assert_int_equal(rc, 0);
    long long bytes = lab_report(out, "payload bytes: ");
    assert_true(bytes > dump_len[HASH] + dump_len[STRING]);
    rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from_url(), "--to", to_url(), "--to-cacert",
                         lab_cert("ca.crt"), "--dry-run", "--from-max-bulk", "256k", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "keys chunked: "), over);
    assert_int_equal(lab_report(out, "payload bytes: "), bytes);
    assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), 0);
    rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from_url(), "--to", to_url(), "--to-cacert",
                         lab_cert("ca.crt"), "--from-max-bulk", "256k", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "payload bytes: "), bytes);
    assert_int_equal(lab_report(out, "keys scanned: "), NBIG + NSMALL);
    assert_int_equal(lab_report(out, "keys copied: "), NBIG + NSMALL);
    assert_int_equal(lab_report(out, "keys chunked: "), over);
    struct lab_end src = lab_plain_end(source.port, NULL);
    for (int i = 0; i < NBIG; i++)
        compare_big(&src, &dst, i, dump_len[i] > 256LL * 1024);
    compare_small(&dst);
    assert_no_tmp(&dst);
    lab_end_free(&src);
    lab_end_free(&dst);
}

/* A big key whose TTL runs out while it is copied in pieces (the target
 * holds writes back for longer than the TTL) is counted as expired, and
 * neither it nor its temporary key is left on the target. The source's
 * HSCAN count proves the copy in pieces had started; a run where the key
 * expired before it did (a slow start) is tried again. */
static void test_expired_on_the_way(void **state)
{
    (void)state;
    struct lab_end src = lab_plain_end(source.port, NULL);
    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    long long hscans = 0;

    for (int attempt = 0; attempt < 3 && hscans == 0; attempt++) {
        flush_target(&dst);
        fill_hash(&src, "mortal:hash", 20000);
        reset_stats(&src);
        const char *pause[] = {"CLIENT", "PAUSE", "1500", "WRITE"};
        cmd(&dst, 4, pause, NULL);
        const char *px[] = {"PEXPIRE", "mortal:hash", "800"};
        cmd(&src, 3, px, NULL);
        int rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from_url(), "--to", to_url(),
                                 "--to-cacert", lab_cert("ca.crt"), "--chunk-limit", "64k", "--match", "mortal:*",
                                 (char *)NULL);
        assert_int_equal(rc, 0);
        assert_int_equal(lab_report(out, "keys scanned: "), 1);
        assert_int_equal(lab_report(out, "expired on the way: "), 1);
        assert_int_equal(lab_report(out, "keys copied: "), 0);
        assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), 0);
        hscans = lab_command_calls(&src, "hscan");
    }
    assert_true(hscans > 0);
    lab_end_free(&src);
    lab_end_free(&dst);
}

static void test_bad_chunk_limit(void **state)
{
    (void)state;
    static const char *const bad[] = {"64x", "", "-1", "12", "99999999999g"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = lab_run_migrate(NULL, out, sizeof out, err, sizeof err, "--from", from_url(), "--to", to_url(),
                                 "--chunk-limit", bad[i], (char *)NULL);
        assert_int_equal(rc, 2);
        assert_contains(err, "bad --chunk-limit");
    }
}

/* To a TLS 3-master cluster: the temporary key shares the key's slot (a
 * RENAME across slots would be refused). */
static void test_pieces_cluster(void **state)
{
    static lab_cluster c;
    char to[64];
    (void)state;

    lab_migrate_cluster_start(&c, TOKEN);
    snprintf(to, sizeof to, "rediss://127.0.0.1:%u", c.node[0].srv.port);
    int rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from_url(), "--to", to, "--to-cluster",
                             "--to-cacert", lab_cert("ca.crt"), "--to-sni", "migrate.cluster.test", "--chunk-limit",
                             "64k", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "keys copied: "), NBIG + NSMALL);
    assert_int_equal(lab_report(out, "keys chunked: "), NBIG);

    struct lab_end dst = lab_cluster_end(&c, TOKEN);
    struct lab_end src = lab_plain_end(source.port, NULL);
    for (int i = 0; i < NBIG; i++)
        compare_big(&src, &dst, i, 1);
    compare_small(&dst);
    long long total = 0;
    for (size_t i = 0; i < 3; i++) {
        struct redisReply *r = NULL;
        assert_int_equal(lab_cluster_admin(&c, i, &r, "DBSIZE"), 0);
        total += redtls_reply_integer(r);
        redtls_reply_free(r);
        assert_int_equal(lab_cluster_admin(&c, i, &r, "KEYS *redtls-migrate*"), 0);
        assert_int_equal(redtls_reply_len(r), 0);
        redtls_reply_free(r);
    }
    assert_int_equal(total, NBIG + NSMALL);
    lab_end_free(&dst);

    /* Back from the cluster, with a reader limit: keys read by their slot's
     * node, a DUMP too big for the reader ends that node's connection. */
    struct lab_end back = lab_plain_end(target.plain_port, TOKEN);
    flush_target(&back);
    rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", to, "--from-cluster", "--from-cacert",
                         lab_cert("ca.crt"), "--from-sni", "migrate.cluster.test", "--from-token", TOKEN, "--to",
                         to_url(), "--to-cacert", lab_cert("ca.crt"), "--from-max-bulk", "256k", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "keys copied: "), NBIG + NSMALL);
    assert_true(lab_report(out, "keys chunked: ") >= 2);
    for (int i = 0; i < NBIG; i++)
        compare_big(&src, &back, i, 1);
    compare_small(&back);
    assert_no_tmp(&back);
    lab_end_free(&back);
    lab_end_free(&src);
    lab_cluster_stop(&c);
}

static int hscan_started(redtls_conn *src, redtls_conn *dst)
{
    (void)dst;
    return child_called(src, "hscan");
}

static int set_ttl(redtls_conn *src, redtls_conn *dst)
{
    (void)dst;
    return child_ok(src, "PEXPIRE %s 600000", "late:hash");
}

/* A TTL set, or shortened, on the source while the key is copied in
 * pieces (the target holds the writes back until then) is the expiry the
 * copy gets: the PTTL read after the copy is the latest state. */
static void test_ttl_changed_during_copy(void **state)
{
    (void)state;
    struct lab_end src = lab_plain_end(source.port, NULL);
    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);

    for (int shorten = 0; shorten < 2; shorten++) {
        flush_target(&dst);
        fill_hash(&src, "late:hash", NFIELDS);
        if (shorten) {
            const char *px[] = {"PEXPIRE", "late:hash", "3600000"};
            cmd(&src, 3, px, NULL);
        }
        reset_stats(&src);
        pause_writes(&dst);
        pid_t child = race_start(hscan_started, set_ttl);
        int rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from_url(), "--to", to_url(),
                                 "--to-cacert", lab_cert("ca.crt"), "--chunk-limit", "64k", "--match", "late:*",
                                 (char *)NULL);
        race_end(child);
        assert_int_equal(rc, 0);
        assert_int_equal(lab_report(out, "keys copied: "), 1);
        assert_int_equal(lab_report(out, "keys chunked: "), 1);
        long long ea = expire_time(&src, "late:hash"), eb = expire_time(&dst, "late:hash");
        assert_true(ea > 0);
        assert_true(eb <= ea);
        assert_true(eb >= ea - TTL_SLACK_MS);
        assert_int_equal(lab_end_integer(&dst, "HLEN", "late:hash"), NFIELDS);
        assert_no_tmp(&dst);
        del_key(&src, "late:hash");
    }
    flush_target(&dst);
    lab_end_free(&src);
    lab_end_free(&dst);
}

static char tmp_seen[256]; /* in the race's child */

static int tmp_made(redtls_conn *src, redtls_conn *dst)
{
    struct redisReply *r = NULL;
    int seen = 0;
    (void)src;
    if (redtls_conn_command(dst, &r, "KEYS *redtls-migrate:tmp*") != REDTLS_OK ||
        redtls_reply_type(r) != REDTLS_REPLY_ARRAY) {
        redtls_reply_free(r);
        return -1;
    }
    if (redtls_reply_len(r) > 0) {
        snprintf(tmp_seen, sizeof tmp_seen, "%s", redtls_reply_str(redtls_reply_element(r, 0), NULL));
        seen = 1;
    }
    redtls_reply_free(r);
    return seen;
}

static int unlink_tmp(redtls_conn *src, redtls_conn *dst)
{
    (void)src;
    return child_ok(dst, "UNLINK %s", tmp_seen);
}

/* The temporary key deleted on the target during a long copy (as
 * eviction would): later writes would make it again, half full; the key
 * fails instead, with the cause, and nothing is left on the target. */
static void test_tmp_lost_during_copy(void **state)
{
    (void)state;
    struct lab_end src = lab_plain_end(source.port, NULL);
    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);

    flush_target(&dst);
    fill_hash(&src, "late:hash", NFIELDS);
    pid_t child = race_start(tmp_made, unlink_tmp);
    int rc =
        lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from_url(), "--to", to_url(), "--to-cacert",
                        lab_cert("ca.crt"), "--chunk-limit", "1k", "--match", "late:*", (char *)NULL);
    race_end(child);
    assert_int_equal(rc, 1);
    assert_int_equal(lab_report(out, "keys failed: "), 1);
    assert_int_equal(lab_report(out, "keys copied: "), 0);
    assert_contains(err, "key 'late:hash' failed");
    assert_contains(err, "disappeared during the copy");
    assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), 0);
    del_key(&src, "late:hash");
    lab_end_free(&src);
    lab_end_free(&dst);
}

/* A target user that may not run PERSIST: the key fails, naming the ACL,
 * instead of being left with the copy's one-hour safety TTL. */
static void test_expiry_refused(void **state)
{
    (void)state;
    struct lab_end src = lab_plain_end(source.port, NULL);
    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    const char *user[] = {"ACL", "SETUSER", "nopersist", "on", ">nopersist-pw", "~*", "&*", "+@all", "-persist"};

    flush_target(&dst);
    cmd(&dst, 9, user, NULL);
    fill_hash(&src, "late:hash", 20000);
    int rc = lab_run_migrate("nopersist-pw", out, sizeof out, err, sizeof err, "--from", from_url(), "--to", to_url(),
                             "--to-cacert", lab_cert("ca.crt"), "--to-user", "nopersist", "--chunk-limit", "64k",
                             "--match", "late:*", (char *)NULL);
    const char *deluser[] = {"ACL", "DELUSER", "nopersist"};
    cmd(&dst, 3, deluser, NULL);
    assert_int_equal(rc, 1);
    assert_int_equal(lab_report(out, "keys failed: "), 1);
    assert_int_equal(lab_report(out, "keys copied: "), 0);
    assert_contains(err, "target PERSIST: NOPERM");
    assert_contains(err, "ACL user needs");
    assert_int_equal(lab_end_integer(&dst, "DBSIZE", NULL), 0);
    del_key(&src, "late:hash");
    lab_end_free(&src);
    lab_end_free(&dst);
}

static int xinfo_read(redtls_conn *src, redtls_conn *dst)
{
    (void)dst;
    return child_called(src, "xinfo|stream");
}

static int add_entries(redtls_conn *src, redtls_conn *dst)
{
    (void)dst;
    for (int i = 0; i < 5; i++)
        if (child_ok(src, "XADD %s * new entry", "late:stream") != 0)
            return -1;
    return 0;
}

/* Entries added to a stream while it is copied in pieces: the copy is the
 * stream as XINFO STREAM saw it (its last ID, entries-added), not a
 * mixture XSETID refuses. */
static void test_stream_written_during_copy(void **state)
{
    (void)state;
    struct lab_end src = lab_plain_end(source.port, NULL);
    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    int q = 0;

    flush_target(&dst);
    for (int i = 1; i <= NENTRIES; i++) {
        char id[24];
        const char *x[] = {"XADD", "late:stream", id, "f", "some value"};
        size_t xl[] = {4, 11, (size_t)snprintf(id, sizeof id, "1-%d", i), 1, 10};
        lab_end_append(&src, 5, x, xl);
        q++;
    }
    drain(&src, &q);
    const char *xd[] = {"XDEL", "late:stream", "1-7"};
    cmd(&src, 3, xd, NULL);
    reset_stats(&src);
    pause_writes(&dst);
    pid_t child = race_start(xinfo_read, add_entries);
    int rc =
        lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from_url(), "--to", to_url(), "--to-cacert",
                        lab_cert("ca.crt"), "--chunk-limit", "1k", "--match", "late:*", (char *)NULL);
    race_end(child);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "keys copied: "), 1);
    assert_int_equal(lab_report(out, "keys chunked: "), 1);
    assert_int_equal(lab_end_integer(&src, "XLEN", "late:stream"), NENTRIES - 1 + 5);
    assert_int_equal(lab_end_integer(&dst, "XLEN", "late:stream"), NENTRIES - 1);
    struct redisReply *b = get(&dst, "XINFO", "STREAM", "late:stream", NULL, NULL);
    char lastid[24];
    snprintf(lastid, sizeof lastid, "1-%d", NENTRIES);
    assert_reply_str(info(b, "last-generated-id"), REDTLS_REPLY_STRING, lastid);
    assert_int_equal(redtls_reply_integer(info(b, "entries-added")), NENTRIES);
    assert_reply_str(info(b, "max-deleted-entry-id"), REDTLS_REPLY_STRING, "1-7");
    redtls_reply_free(b);
    assert_no_tmp(&dst);
    del_key(&src, "late:stream");
    flush_target(&dst);
    lab_end_free(&src);
    lab_end_free(&dst);
}

/* --verify after copies in pieces of lists and streams, whose DUMP
 * payloads differ from the source's though their contents are the same
 * (quicklist and listpack layouts follow the writes): no difference. A
 * planted one, and a consumer group the copy did not carry, are found. */
static void test_verify_pieces(void **state)
{
    (void)state;
    struct lab_end src = lab_plain_end(source.port, NULL);
    struct lab_end dst = lab_plain_end(target.plain_port, TOKEN);
    static const char *argv[2 + 1000];
    static size_t lens[2 + 1000];
    static char names[1000][24];
    int q = 0;

    flush_target(&dst);
    for (int i = 0; i < 20000; i += 1000) {
        for (int l = 0; l < 2; l++) {
            argv[0] = l == 0 ? "LPUSH" : "RPUSH", lens[0] = 5;
            argv[1] = l == 0 ? "v:lpush" : "v:lrem", lens[1] = l == 0 ? 7 : 6;
            for (int j = 0; j < 1000; j++) {
                argv[2 + j] = names[j];
                lens[2 + j] = (size_t)snprintf(names[j], sizeof names[j], "e%d", (i + j) % 3 == 0 ? 0 : i + j);
            }
            lab_end_append(&src, 2 + 1000, argv, lens);
            q++;
        }
    }
    drain(&src, &q);
    const char *lrem[] = {"LREM", "v:lrem", "-500", "e0"};
    cmd(&src, 4, lrem, NULL);
    for (int i = 1; i <= NENTRIES; i++) {
        char id[24];
        const char *x[] = {"XADD", "v:stream", id, "f", "value", "g", "x"};
        size_t xl[] = {4, 8, (size_t)snprintf(id, sizeof id, "%d-1", i), 1, 5, 1, 1};
        lab_end_append(&src, 7, x, xl);
        q++;
    }
    for (int i = 1; i <= NENTRIES; i += 97) {
        char id[24];
        const char *x[] = {"XDEL", "v:stream", id};
        size_t xl[] = {4, 8, (size_t)snprintf(id, sizeof id, "%d-1", i)};
        lab_end_append(&src, 3, x, xl);
        q++;
    }
    drain(&src, &q);
    int rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from_url(), "--to", to_url(),
                             "--to-cacert", lab_cert("ca.crt"), "--chunk-limit", "1k", "--match", "v:*", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(lab_report(out, "keys chunked: "), 3);
    rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from_url(), "--to", to_url(), "--to-cacert",
                         lab_cert("ca.crt"), "--match", "v:*", "--verify-only", (char *)NULL);
    assert_int_equal(lab_report(out, "verify: keys compared: "), 3);
    assert_int_equal(lab_report(out, "verify: different values: "), 0);
    assert_int_equal(rc, 0);

    const char *lset[] = {"LSET", "v:lrem", "12345", "planted"};
    cmd(&dst, 4, lset, NULL);
    const char *grp[] = {"XGROUP", "CREATE", "v:stream", "grp", "0"};
    cmd(&src, 5, grp, NULL);
    rc = lab_run_migrate(TOKEN, out, sizeof out, err, sizeof err, "--from", from_url(), "--to", to_url(), "--to-cacert",
                         lab_cert("ca.crt"), "--match", "v:*", "--verify-only", (char *)NULL);
    assert_int_equal(rc, 1);
    assert_int_equal(lab_report(out, "verify: different values: "), 2);
    assert_contains(out, "difference: value 'v:lrem'");
    assert_contains(out, "difference: value 'v:stream'");

    const char *d[] = {"DEL", "v:lpush", "v:lrem", "v:stream"};
    cmd(&src, 4, d, NULL);
    flush_target(&dst);
    lab_end_free(&src);
    lab_end_free(&dst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pieces_standalone),
        cmocka_unit_test(test_no_replace),
        cmocka_unit_test(test_target_bulk_limit),
        cmocka_unit_test(test_reader_limit),
        cmocka_unit_test(test_expired_on_the_way),
        cmocka_unit_test(test_bad_chunk_limit),
        cmocka_unit_test(test_pieces_cluster),
        cmocka_unit_test(test_ttl_changed_during_copy),
        cmocka_unit_test(test_tmp_lost_during_copy),
        cmocka_unit_test(test_expiry_refused),
        cmocka_unit_test(test_stream_written_during_copy),
        cmocka_unit_test(test_verify_pieces),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

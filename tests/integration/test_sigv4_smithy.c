/* lib/sigv4.c's ElastiCache / MemoryDB IAM tokens against the AWS SDK's
 * signer (@smithy/signature-v4, run by tests/sigv4/presign.mjs under node):
 * random cases from a printed seed (REDTLS_TEST_SEED=<n> repeats a run),
 * and for each one the host, every query parameter (name and value, as
 * encoded; the order is free) and the signature must agree.
 *
 * Needs node and tests/sigv4/node_modules (npm ci --prefix tests/sigv4,
 * which scripts/test.sh runs); without them the test fails, it does not
 * skip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sigv4.h"

#ifndef REDTLS_SIGV4_NODE_DIR
#error "REDTLS_SIGV4_NODE_DIR (the folder of presign.mjs) is set by tests/CMakeLists.txt"
#endif

#define N_CASES 256
#define MAX_PARAMS 16
#define TOKEN_CAP 2048

typedef struct rng {
    uint64_t s;
} rng;

/* splitmix64: small, and the same sequence everywhere for one seed. */
static uint64_t next(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static unsigned below(rng *r, unsigned n)
{
    return (unsigned)(next(r) % n);
}

static void pick(rng *r, char *out, size_t len, const char *alphabet)
{
    size_t n = strlen(alphabet);
    for (size_t i = 0; i < len; i++)
        out[i] = alphabet[below(r, (unsigned)n)];
    out[len] = '\0';
}

typedef struct tcase {
    char cache[80], user[48], akid[24], secret[48], token[520];
    const char *region, *service;
    int serverless;
    long long when;
    unsigned expires;
} tcase;

static const char *const regions[] = {"us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1",
                                      "ap-southeast-2", "ap-northeast-1", "sa-east-1", "me-central-1",
                                      "us-gov-west-1", "cn-north-1", "il-central-1"};

static long long random_time(rng *r)
{
    /* Half anywhere in 1990..2099, half on a day or month or year edge. */
    if (below(r, 2) == 0)
        return 631152000LL + (long long)(next(r) % (4102444800ULL - 631152000ULL));
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = 90 + (int)below(r, 110);
    tm.tm_mon = (int)below(r, 12);
    int year = tm.tm_year + 1900;
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    int last = days[tm.tm_mon] + (tm.tm_mon == 1 && leap);
    if (below(r, 2) == 0) {
        tm.tm_mday = last;
        tm.tm_hour = 23;
        tm.tm_min = 59;
        tm.tm_sec = 59;
    } else {
        tm.tm_mday = 1;
    }
    return (long long)timegm(&tm);
}

static void make_case(rng *r, tcase *c)
{
    static const char host_chars[] = "abcdefghijklmnopqrstuvwxyz0123456789-";
    size_t len = 1 + below(r, 60);
    pick(r, c->cache, len, host_chars);
    c->cache[0] = (char)('a' + below(r, 26));
    if (len > 2 && below(r, 5) == 0) /* a dotted name, like a configuration endpoint's */
        c->cache[1 + below(r, (unsigned)len - 2)] = '.';

    static const char user_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~ /+=@:";
    pick(r, c->user, 1 + below(r, 40), below(r, 3) == 0 ? user_chars : "abcdefghijklmnopqrstuvwxyz0123456789-");
    c->region = regions[below(r, sizeof regions / sizeof regions[0])];
    c->service = below(r, 2) ? "elasticache" : "memorydb";
    c->serverless = (int)below(r, 2);
    c->when = random_time(r);
    c->expires = below(r, 4) == 0 ? 1 + below(r, 900) : 0;
    memcpy(c->akid, below(r, 2) ? "AKIA" : "ASIA", 4);
    pick(r, c->akid + 4, 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+";
    pick(r, c->secret, 40, b64);
    if (below(r, 2)) {
        size_t t = 20 + below(r, 480);
        pick(r, c->token, t, b64);
        if (below(r, 2))
            memcpy(c->token + t - 2, "==", 2);
    } else {
        c->token[0] = '\0';
    }
}

/* Strings here never hold '"' or '\\', so they go into JSON as they are. */
static void write_case(FILE *f, int id, const tcase *c)
{
    fprintf(f,
            "{\"id\":%d,\"cache\":\"%s\",\"user\":\"%s\",\"region\":\"%s\",\"service\":\"%s\",\"serverless\":%s,"
            "\"when\":%lld,\"expires\":%u,\"akid\":\"%s\",\"secret\":\"%s\"",
            id, c->cache, c->user, c->region, c->service, c->serverless ? "true" : "false", c->when,
            c->expires ? c->expires : 900, c->akid, c->secret);
    if (c->token[0])
        fprintf(f, ",\"token\":\"%s\"", c->token);
    fputs("}\n", f);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Splits s (modified) at sep into at most max parts. */
static size_t split(char *s, char sep, char **parts, size_t max)
{
    size_t n = 0;
    while (s && n < max) {
        parts[n++] = s;
        s = strchr(s, sep);
        if (s)
            *s++ = '\0';
    }
    return n;
}

/* Reads the SDK's line: {"id":N,"host":"...","params":["k=v",...]}. The
 * encoded pairs and the host hold no '"' or '\\'. */
static int parse_sdk(char *line, char **host, char **params, size_t *n)
{
    char *h = strstr(line, "\"host\":\"");
    char *p = strstr(line, "\"params\":[");
    if (!h || !p)
        return -1;
    h += 8;
    char *end = strchr(h, '"');
    if (!end)
        return -1;
    *end = '\0';
    *host = h;
    p += 10;
    *n = 0;
    while (*p == '"' && *n < MAX_PARAMS) {
        char *q = strchr(p + 1, '"');
        if (!q)
            return -1;
        *q = '\0';
        params[(*n)++] = p + 1;
        p = q + 1;
        if (*p == ',')
            p++;
    }
    return *p == ']' ? 0 : -1;
}

static const char *find_param(char **params, size_t n, const char *prefix)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(params[i], prefix, strlen(prefix)) == 0)
            return params[i] + strlen(prefix);
    return "(none)";
}

static void require_node(void)
{
    FILE *v = popen("node --version 2>/dev/null", "r");
    char version[64] = "";
    if (v) {
        if (!fgets(version, sizeof version, v))
            version[0] = '\0';
        pclose(v);
    }
    if (version[0] != 'v')
        fail_msg("node is not installed: run scripts/deps.sh (or apt-get install nodejs npm), then "
                 "npm ci --prefix tests/sigv4");
    if (access(REDTLS_SIGV4_NODE_DIR "/node_modules/@smithy/signature-v4/package.json", R_OK) != 0)
        fail_msg("the AWS SDK's signer is not installed in " REDTLS_SIGV4_NODE_DIR "/node_modules: run "
                 "npm ci --prefix tests/sigv4 (scripts/test.sh does)");
}

static void test_tokens_match_the_sdk(void **state)
{
    (void)state;
    require_node();

    uint64_t seed;
    const char *env = getenv("REDTLS_TEST_SEED");
    if (env && *env)
        seed = strtoull(env, NULL, 10);
    else
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    printf("sigv4 differential: seed %llu (REDTLS_TEST_SEED=%llu repeats this run)\n", (unsigned long long)seed,
           (unsigned long long)seed);
    fflush(stdout);
    rng r = {seed};

    static tcase cases[N_CASES];
    char path[] = "/tmp/redtls-sigv4-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *in = fdopen(fd, "w");
    assert_non_null(in);
    for (int i = 0; i < N_CASES; i++) {
        make_case(&r, &cases[i]);
        write_case(in, i, &cases[i]);
    }
    assert_int_equal(fclose(in), 0);

    char cmd[512];
    snprintf(cmd, sizeof cmd, "node '%s/presign.mjs' < '%s'", REDTLS_SIGV4_NODE_DIR, path);
    FILE *out = popen(cmd, "r");
    assert_non_null(out);

    char *line = NULL;
    size_t line_cap = 0;
    int done = 0, failed = 0, with_token = 0, serverless = 0, memorydb = 0;
    while (done < N_CASES && getline(&line, &line_cap, out) > 0) {
        const tcase *c = &cases[done];
        char *host = NULL, *sdk[MAX_PARAMS], *ours[MAX_PARAMS];
        size_t n_sdk = 0;
        if (parse_sdk(line, &host, sdk, &n_sdk) != 0) {
            printf("case %d: cannot read the SDK's answer: %s", done, line);
            failed++;
            break;
        }

        redtls__iam_request req = {
            .cache_name = c->cache,
            .user_id = c->user,
            .region = c->region,
            .service = c->service,
            .serverless = c->serverless,
            .access_key_id = c->akid,
            .secret_access_key = c->secret,
            .session_token = c->token,
            .when = (time_t)c->when,
            .expires_s = c->expires,
        };
        char token[TOKEN_CAP], err[REDTLS__ERRMSG_MAX] = "";
        redtls_status st = redtls__iam_token(&req, token, sizeof token, err);
        if (st != REDTLS_OK) {
            printf("case %d (cache %s): redtls__iam_token failed: %s\n", done, c->cache, err);
            failed++;
            done++;
            continue;
        }
        char *sep = strstr(token, "/?");
        int ok = sep != NULL;
        size_t n_ours = 0;
        if (ok) {
            *sep = '\0';
            ok = strcmp(token, host) == 0;
            n_ours = split(sep + 2, '&', ours, MAX_PARAMS);
        }
        qsort(sdk, n_sdk, sizeof sdk[0], cmp_str);
        qsort(ours, n_ours, sizeof ours[0], cmp_str);
        ok = ok && n_ours == n_sdk;
        for (size_t i = 0; ok && i < n_sdk; i++)
            ok = strcmp(sdk[i], ours[i]) == 0;
        if (!ok) {
            failed++;
            printf("case %d disagrees: cache %s user '%s' region %s service %s serverless %d when %lld "
                   "expires %u token %s\n  host: ours %s, SDK %s\n  signature: ours %s, SDK %s\n",
                   done, c->cache, c->user, c->region, c->service, c->serverless, c->when, c->expires,
                   c->token[0] ? "yes" : "no", token, host, find_param(ours, n_ours, "X-Amz-Signature="),
                   find_param(sdk, n_sdk, "X-Amz-Signature="));
            for (size_t i = 0; i < n_ours || i < n_sdk; i++)
                printf("  %-60s | %s\n", i < n_ours ? ours[i] : "", i < n_sdk ? sdk[i] : "");
        }
        with_token += c->token[0] != '\0';
        serverless += c->serverless;
        memorydb += strcmp(c->service, "memorydb") == 0;
        done++;
    }
    free(line);
    int rc = pclose(out);
    unlink(path);
    printf("sigv4 differential: %d of %d cases compared (%d with a session token, %d serverless, %d memorydb), "
           "%d disagree\n",
           done, N_CASES, with_token, serverless, memorydb, failed);
    if (rc != 0)
        fail_msg("node %s/presign.mjs exited with status %d (is tests/sigv4/node_modules installed? npm ci "
                 "--prefix tests/sigv4)",
                 REDTLS_SIGV4_NODE_DIR, rc);
    assert_int_equal(done, N_CASES);
    assert_int_equal(failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens_match_the_sdk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

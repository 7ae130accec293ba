/* migrate_fill: fills a standalone server with a dataset for the
 * redtls-migrate tests and benchmark (integration.migrate_types,
 * scripts/bench/migrate.sh). Pipelined, and deterministic for a seed: the
 * same options make the same keys and values.
 *
 *   migrate_fill --url URL [--cacert F] [--seed S] [--keys N]
 *                [--big-hash N] [--strings N] [--mortal N [--mortal-ms M]]
 *
 * --keys N: N keys cycling through strings, hashes, lists, sets, sorted
 *   sets, streams (two consumer groups, entries pending in both) and
 *   HyperLogLogs, named "t:<i>" or, every tenth, "t\0\r\n:<i>" (a NUL
 *   byte, CR and LF), with binary values; every third has a TTL of 5 to
 *   15 minutes to the millisecond.
 * --big-hash N: one hash "big\0hash" of N fields.
 * --strings N: N strings "s:<i>" of 16 bytes, no TTL.
 * --mortal N: N strings "mortal:<i>" whose TTLs are spread over 1..M ms
 *   (--mortal-ms, default 2000), set last, so they expire around a copy
 *   that starts right after.
 * The token comes from REDTLS_TOKEN. Prints one line of counts; exit 0,
 * 1 on an error reply, 2 on a usage error, 3 when the server cannot be
 * reached. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <redtls/redtls.h>

#define PIPELINE 1000 /* commands queued before their replies are read */
#define MAX_ARGS 64

struct filler {
    redtls_conn *conn;
    unsigned long long rnd;
    size_t queued;
    unsigned long long commands;
};

static unsigned long long next_random(struct filler *f)
{
    f->rnd ^= f->rnd >> 12;
    f->rnd ^= f->rnd << 25;
    f->rnd ^= f->rnd >> 27;
    return f->rnd * 2685821657736338717ULL;
}

static unsigned pick(struct filler *f, unsigned lo, unsigned hi)
{
    return lo + (unsigned)(next_random(f) % (hi - lo + 1));
}

/* len random bytes, NUL, CR and LF more often than the others. */
static void binary_value(struct filler *f, unsigned char *buf, size_t len)
{
    static const unsigned char special[] = {'\0', '\r', '\n', '\\', '"'};
    for (size_t i = 0; i < len; i++) {
        unsigned long long r = next_random(f);
        buf[i] = r % 8 == 0 ? special[(r >> 8) % sizeof special] : (unsigned char)(r >> 16);
    }
}

/* Reads every queued reply; exits on an error reply or a failed read. */
static void drain(struct filler *f)
{
    while (f->queued > 0) {
        struct redisReply *r = NULL;
        redtls_status st = redtls_conn_get_reply(f->conn, &r);
        if (st != REDTLS_OK) {
            fprintf(stderr, "migrate_fill: %s\n", redtls_conn_errmsg(f->conn));
            exit(3);
        }
        if (redtls_reply_type(r) == REDTLS_REPLY_ERROR) {
            fprintf(stderr, "migrate_fill: the server refused a command: %s\n", redtls_reply_str(r, NULL));
            exit(1);
        }
        redtls_reply_free(r);
        f->queued--;
    }
}

static void send_argv(struct filler *f, int argc, const char **argv, const size_t *lens)
{
    if (redtls_conn_append_argv(f->conn, argc, argv, lens) != REDTLS_OK) {
        fprintf(stderr, "migrate_fill: %s\n", redtls_conn_errmsg(f->conn));
        exit(3);
    }
    f->commands++;
    if (++f->queued >= PIPELINE)
        drain(f);
}

/* A command built argument by argument. */
struct cmd {
    int argc;
    const char *argv[MAX_ARGS];
    size_t lens[MAX_ARGS];
    char store[MAX_ARGS][80]; /* bytes of the arguments made here */
};

static void arg(struct cmd *c, const char *p, size_t len)
{
    c->argv[c->argc] = p;
    c->lens[c->argc++] = len;
}

static void arg_str(struct cmd *c, const char *s)
{
    arg(c, s, strlen(s));
}

/* A random binary value of lo..hi bytes (at most 80). */
static void arg_random(struct cmd *c, struct filler *f, unsigned lo, unsigned hi)
{
    size_t len = pick(f, lo, hi);
    binary_value(f, (unsigned char *)c->store[c->argc], len);
    arg(c, c->store[c->argc], len);
}

static void arg_fmt(struct cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void arg_fmt(struct cmd *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start just above
    int n = vsnprintf(c->store[c->argc], sizeof c->store[0], fmt, ap);
    va_end(ap);
    arg(c, c->store[c->argc], (size_t)n);
}

static void send_cmd(struct filler *f, struct cmd *c)
{
    send_argv(f, c->argc, c->argv, c->lens);
    c->argc = 0;
}

/* Key i of --keys: "t:<i>", or "t\0\r\n:<i>" for every tenth. */
static size_t key_name(char *buf, size_t cap, unsigned i)
{
    if (i % 10 == 0) {
        int n = snprintf(buf, cap, "t#\r\n:%u", i);
        buf[1] = '\0';
        return (size_t)n;
    }
    return (size_t)snprintf(buf, cap, "t:%u", i);
}

static void fill_typed(struct filler *f, unsigned nkeys)
{
    struct cmd c;
    char key[32];
    unsigned i, j;

    c.argc = 0;
    for (i = 0; i < nkeys; i++) {
        size_t klen = key_name(key, sizeof key, i);
        unsigned n = pick(f, 3, 8);
        switch (i % 7) {
        case 0:
            arg_str(&c, "SET");
            arg(&c, key, klen);
            arg_random(&c, f, 8, 64);
            send_cmd(f, &c);
            break;
        case 1:
            arg_str(&c, "HSET");
            arg(&c, key, klen);
            for (j = 0; j < n; j++) {
                arg_fmt(&c, "f%u", j);
                arg_random(&c, f, 1, 40);
            }
            send_cmd(f, &c);
            break;
        case 2:
            arg_str(&c, "RPUSH");
            arg(&c, key, klen);
            for (j = 0; j < n; j++)
                arg_random(&c, f, 1, 40);
            send_cmd(f, &c);
            break;
        case 3:
            arg_str(&c, "SADD");
            arg(&c, key, klen);
            for (j = 0; j < n; j++) {
                if (i % 2 == 0)
                    arg_fmt(&c, "%u", pick(f, 0, 100000)); /* an integer set */
                else
                    arg_random(&c, f, 4, 30);
            }
            send_cmd(f, &c);
            break;
        case 4:
            arg_str(&c, "ZADD");
            arg(&c, key, klen);
            for (j = 0; j < n; j++) {
                unsigned whole = pick(f, 0, 1000), frac = pick(f, 0, 999);
                arg_fmt(&c, "%u.%03u", whole, frac);
                arg_random(&c, f, 2, 30);
            }
            send_cmd(f, &c);
            break;
        case 5:
            for (j = 0; j < n; j++) {
                arg_str(&c, "XADD");
                arg(&c, key, klen);
                arg_str(&c, "*");
                arg_str(&c, "field");
                arg_random(&c, f, 1, 40);
                send_cmd(f, &c);
            }
            for (j = 1; j <= 2; j++) {
                const char *g = j == 1 ? "g1" : "g2";
                arg_str(&c, "XGROUP");
                arg_str(&c, "CREATE");
                arg(&c, key, klen);
                arg_str(&c, g);
                arg_str(&c, "0");
                send_cmd(f, &c);
                /* Entries read but not acknowledged: the groups' pending lists. */
                arg_str(&c, "XREADGROUP");
                arg_str(&c, "GROUP");
                arg_str(&c, g);
                arg_str(&c, j == 1 ? "alice" : "bob");
                arg_str(&c, "COUNT");
                arg_fmt(&c, "%u", j);
                arg_str(&c, "STREAMS");
                arg(&c, key, klen);
                arg_str(&c, ">");
                send_cmd(f, &c);
            }
            break;
        default:
            arg_str(&c, "PFADD");
            arg(&c, key, klen);
            for (j = 0; j < n; j++)
                arg_random(&c, f, 1, 20);
            send_cmd(f, &c);
            break;
        }
        if (i % 3 == 0) {
            arg_str(&c, "PEXPIRE");
            arg(&c, key, klen);
            arg_fmt(&c, "%u", pick(f, 300000, 900000));
            send_cmd(f, &c);
        }
    }
}

static void fill_big_hash(struct filler *f, unsigned fields)
{
    struct cmd c;
    static const char key[] = "big\0hash";
    unsigned i = 0;

    c.argc = 0;
    while (i < fields) {
        arg_str(&c, "HSET");
        arg(&c, key, sizeof key - 1);
        /* 31 fields per command: MAX_ARGS arguments at most. */
        for (unsigned j = 0; j < 31 && i < fields; j++, i++) {
            arg_fmt(&c, "field:%u", i);
            arg_random(&c, f, 4, 24);
        }
        send_cmd(f, &c);
    }
}

static void fill_strings(struct filler *f, unsigned n)
{
    struct cmd c;

    c.argc = 0;
    for (unsigned i = 0; i < n; i++) {
        arg_str(&c, "SET");
        arg_fmt(&c, "s:%u", i);
        arg_random(&c, f, 16, 16);
        send_cmd(f, &c);
    }
}

static void fill_mortal(struct filler *f, unsigned n, unsigned ms)
{
    struct cmd c;

    c.argc = 0;
    for (unsigned i = 0; i < n; i++) {
        arg_str(&c, "SET");
        arg_fmt(&c, "mortal:%u", i);
        arg_random(&c, f, 4, 16);
        arg_str(&c, "PX");
        arg_fmt(&c, "%u", 1 + (unsigned)((unsigned long long)i * ms / n));
        send_cmd(f, &c);
    }
}

static unsigned number(const char *opt, const char *s)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v > 100000000UL) {
        fprintf(stderr, "migrate_fill: bad %s '%s' (0-100000000)\n", opt, s);
        exit(2);
    }
    return (unsigned)v;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},
        {"cacert", required_argument, NULL, 'c'},
        {"seed", required_argument, NULL, 's'},
        {"keys", required_argument, NULL, 'k'},
        {"big-hash", required_argument, NULL, 'b'},
        {"strings", required_argument, NULL, 'S'},
        {"mortal", required_argument, NULL, 'm'},
        {"mortal-ms", required_argument, NULL, 'M'},
        {NULL, 0, NULL, 0},
    };
    const char *url = NULL, *cacert = NULL, *token = getenv("REDTLS_TOKEN");
    unsigned seed = 1, keys = 0, big = 0, strings = 0, mortal = 0, mortal_ms = 2000;
    struct filler f;
    redtls_config *cfg = NULL;
    int o;

    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'u': url = optarg; break;
        case 'c': cacert = optarg; break;
        case 's': seed = number("--seed", optarg); break;
        case 'k': keys = number("--keys", optarg); break;
        case 'b': big = number("--big-hash", optarg); break;
        case 'S': strings = number("--strings", optarg); break;
        case 'm': mortal = number("--mortal", optarg); break;
        case 'M': mortal_ms = number("--mortal-ms", optarg); break;
        default: return 2;
        }
    }
    if (url == NULL || optind < argc) {
        fputs("usage: migrate_fill --url URL [--cacert F] [--seed S] [--keys N] "
              "[--big-hash N] [--strings N] [--mortal N [--mortal-ms M]]\n",
              stderr);
        return 2;
    }
    memset(&f, 0, sizeof f);
    f.rnd = 0x9e3779b97f4a7c15ULL * (seed + 1ULL);
    if (redtls_config_new(&cfg) != REDTLS_OK || redtls_config_set_url(cfg, url) != REDTLS_OK ||
        (cacert != NULL && redtls_config_set_ca_file(cfg, cacert) != REDTLS_OK) ||
        (token != NULL && redtls_config_set_token(cfg, token) != REDTLS_OK) ||
        redtls_config_set_command_timeout_ms(cfg, 60000) != REDTLS_OK || redtls_conn_new(cfg, &f.conn) != REDTLS_OK) {
        fprintf(stderr, "migrate_fill: configuration: %s\n", cfg != NULL ? redtls_config_errmsg(cfg) : "out of memory");
        return 2;
    }
    redtls_config_free(cfg);
    if (redtls_conn_connect(f.conn) != REDTLS_OK) {
        fprintf(stderr, "migrate_fill: %s\n", redtls_conn_errmsg(f.conn));
        return 3;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fill_typed(&f, keys);
    fill_big_hash(&f, big);
    fill_strings(&f, strings);
    drain(&f);
    fill_mortal(&f, mortal, mortal_ms);
    drain(&f);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("migrate_fill: %u typed keys, a %u-field hash, %u strings, %u "
           "mortal keys: %llu commands in %.2f s\n",
           keys, big, strings, mortal, f.commands,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    redtls_conn_free(f.conn);
    return 0;
}

/*
 * hiredis-async-bench: the plain hiredis 1.x asynchronous way of keeping N
 * GETs in flight, as the peer of `redtls-bench --async` in scripts/bench.sh.
 * One redisAsyncContext (hiredis_ssl for TLS) on a libevent event_base
 * through hiredis's own adapters/libevent.h, AUTH, then -n GETs of random
 * keys: --inflight of them issued at once, then one more from each reply's
 * callback (redisAsyncCommandArgv), as redtls-bench --async does.
 *
 * It does the same bookkeeping per GET as redtls-bench (the same key
 * generator, a clock read at issue and at the reply, the same latency
 * histogram), so instruction counts compare like with like, and prints
 * the same fields (a table, --csv or --json). Every reply must be a bulk
 * string or nil; "found a value, N nil" goes to stderr at the end.
 *
 * Built by scripts/bench.sh against hiredis 1.2.0 with SSL (static) and
 * libevent, not by the project's CMake; the clocks, random numbers and
 * histogram are redtls-bench's own (examples/bench-measure.h).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/hiredis_ssl.h>

/* The clocks and the latency histogram of redtls-bench, the same code. */
#include "../../examples/bench-measure.h"

enum { EXIT_DONE = 0, EXIT_BAD_REPLY = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3, GO_ON = -1 };
enum { FORMAT_TABLE, FORMAT_CSV, FORMAT_JSON };
enum { OPT_TLS = 256, OPT_CACERT, OPT_SNI, OPT_TOKEN, OPT_SEED, OPT_INFLIGHT, OPT_CSV, OPT_JSON, OPT_HELP };

static const struct option long_options[] = {
    {"tls", no_argument, NULL, OPT_TLS},
    {"cacert", required_argument, NULL, OPT_CACERT},
    {"sni", required_argument, NULL, OPT_SNI},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"seed", required_argument, NULL, OPT_SEED},
    {"inflight", required_argument, NULL, OPT_INFLIGHT},
    {"csv", no_argument, NULL, OPT_CSV},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

struct options {
    const char *host;
    int port;
    int tls;
    const char *cacert;
    const char *sni;
    const char *token;
    long inflight;
    long requests;
    long keyspace;
    unsigned long long seed;
    int format;
};

static void usage(FILE *out)
{
    fputs("Usage: hiredis-async-bench [options]\n"
          "\n"
          "Runs -n GETs of random keys key:<12 digits> below -r over one hiredis\n"
          "asynchronous connection on libevent, keeping --inflight of them issued.\n"
          "\n"
          "  -h HOST            server host (default 127.0.0.1)\n"
          "  -p PORT            server port (default 6379)\n"
          "      --tls          TLS through hiredis_ssl\n"
          "      --cacert FILE  CA certificates to verify the server with (TLS)\n"
          "      --sni NAME     server name sent in the TLS handshake (default localhost)\n"
          "      --token TOKEN  password for AUTH (REDTLS_TOKEN is used otherwise)\n"
          "      --inflight N   GETs kept in flight (default 1)\n"
          "  -n N               requests (default 100000)\n"
          "  -r N               keyspace (default 100000)\n"
          "      --seed N       key generator seed (default 1; redtls-bench's sequence)\n"
          "      --csv, --json  output as redtls-bench's\n"
          "\n"
          "Exit status: 0 done, 1 a reply that is neither a bulk string nor nil, 2 usage\n"
          "error, 3 connection, TLS, AUTH or I/O failure.\n",
          out);
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int bad_option(const char *what, const char *value)
{
    fprintf(stderr, "hiredis-async-bench: bad %s '%s'\nTry 'hiredis-async-bench --help'.\n", what, value);
    return EXIT_USAGE;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    long v;
    int c;

    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 6379;
    o->sni = "localhost";
    o->token = getenv("REDTLS_TOKEN");
    o->inflight = 1;
    o->requests = 100000;
    o->keyspace = 100000;
    o->seed = 1;
    while ((c = getopt_long(argc, argv, "h:p:n:r:", long_options, NULL)) != -1) {
        switch (c) {
        case 'h': o->host = optarg; break;
        case 'p':
            if (parse_long(optarg, 1, 65535, &v) != 0)
                return bad_option("-p", optarg);
            o->port = (int)v;
            break;
        case 'n':
            if (parse_long(optarg, 1, LONG_MAX, &o->requests) != 0)
                return bad_option("-n", optarg);
            break;
        case 'r':
            if (parse_long(optarg, 1, 999999999999L, &o->keyspace) != 0)
                return bad_option("-r", optarg);
            break;
        case OPT_TLS: o->tls = 1; break;
        case OPT_CACERT: o->cacert = optarg; break;
        case OPT_SNI: o->sni = optarg; break;
        case OPT_TOKEN: o->token = optarg; break;
        case OPT_SEED:
            if (parse_long(optarg, 0, LONG_MAX, &v) != 0)
                return bad_option("--seed", optarg);
            o->seed = (unsigned long long)v;
            break;
        case OPT_INFLIGHT:
            if (parse_long(optarg, 1, 65536, &o->inflight) != 0)
                return bad_option("--inflight", optarg);
            break;
        case OPT_CSV: o->format = FORMAT_CSV; break;
        case OPT_JSON: o->format = FORMAT_JSON; break;
        case OPT_HELP: usage(stdout); return EXIT_DONE;
        default: fputs("Try 'hiredis-async-bench --help'.\n", stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc)
        return bad_option("argument", argv[optind]);
    return GO_ON;
}

#define KEY_DIGITS 12

/* ---- the run ---- */

struct run {
    const struct options *o;
    redisAsyncContext *ac;
    struct event_base *base;
    char key[4 + KEY_DIGITS + 1];
    const char *argv[2];
    size_t argvlen[2];
    uint64_t rng;
    uint64_t *issued_at;
    unsigned long mask, head, tail;
    struct histogram hist;
    long sent, done, found, nil, bad;
    uint64_t t_start, t_end, cpu_start, cpu_end;
    int failed;
};

static void on_get(redisAsyncContext *ac, void *r, void *privdata);

static void issue_one(struct run *run)
{
    uint64_t v = rng_next(&run->rng) % (uint64_t)run->o->keyspace;
    char *d = run->key + 4 + KEY_DIGITS - 1;

    for (int i = 0; i < KEY_DIGITS; i++) {
        *d-- = (char)('0' + v % 10);
        v /= 10;
    }
    run->issued_at[run->tail++ & run->mask] = now_ns();
    if (redisAsyncCommandArgv(run->ac, on_get, run, 2, run->argv, run->argvlen) != REDIS_OK) {
        fprintf(stderr, "hiredis-async-bench: queueing GET failed: %s\n", run->ac->errstr);
        run->failed = 1;
        redisAsyncDisconnect(run->ac);
        return;
    }
    run->sent++;
}

static void on_get(redisAsyncContext *ac, void *r, void *privdata)
{
    struct run *run = privdata;
    redisReply *reply = r;

    if (reply == NULL) {
        /* The connection went away (or is being freed). */
        if (!run->failed && run->done < run->o->requests)
            fprintf(stderr, "hiredis-async-bench: connection lost: %s\n", ac->errstr[0] ? ac->errstr : "(no reason)");
        run->failed = 1;
        return;
    }
    hist_record(&run->hist, now_ns() - run->issued_at[run->head++ & run->mask]);
    if (reply->type == REDIS_REPLY_STRING) {
        run->found++;
    } else if (reply->type == REDIS_REPLY_NIL) {
        run->nil++;
    } else {
        if (run->bad++ == 0)
            fprintf(stderr, "hiredis-async-bench: GET reply of type %d%s%s\n", reply->type,
                    reply->type == REDIS_REPLY_ERROR ? ": " : "", reply->type == REDIS_REPLY_ERROR ? reply->str : "");
    }
    run->done++;
    if (run->sent < run->o->requests) {
        issue_one(run);
    } else if (run->done == run->o->requests) {
        run->t_end = now_ns();
        run->cpu_end = cpu_ns();
        redisAsyncDisconnect(ac);
    }
}

static void start_gets(struct run *run)
{
    run->cpu_start = cpu_ns();
    run->t_start = now_ns();
    for (long k = 0; k < run->o->inflight && run->sent < run->o->requests && !run->failed; k++)
        issue_one(run);
}

static void on_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    struct run *run = privdata;
    redisReply *reply = r;

    if (reply == NULL || reply->type != REDIS_REPLY_STATUS || strcmp(reply->str, "OK") != 0) {
        fprintf(stderr, "hiredis-async-bench: AUTH failed: %s\n",
                reply == NULL                          ? (ac->errstr[0] ? ac->errstr : "connection lost")
                : reply->type == REDIS_REPLY_ERROR     ? reply->str
                                                       : "unexpected reply");
        run->failed = 1;
        if (reply != NULL)
            redisAsyncDisconnect(ac);
        return;
    }
    start_gets(run);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct run *run = ac->data;

    if (status != REDIS_OK) {
        fprintf(stderr, "hiredis-async-bench: connect failed: %s\n", ac->errstr);
        run->failed = 1;
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct run *run = ac->data;

    if (status != REDIS_OK && !run->failed && run->done < run->o->requests) {
        fprintf(stderr, "hiredis-async-bench: disconnected: %s\n", ac->errstr);
        run->failed = 1;
    }
}

static void print_result(const struct options *o, const struct run *run)
{
    double seconds = (double)(run->t_end - run->t_start) / 1e9;
    double ops = seconds > 0 ? (double)run->done / seconds : 0.0;
    double p50 = hist_percentile(&run->hist, 0.50) / 1e3, p99 = hist_percentile(&run->hist, 0.99) / 1e3;
    double p999 = hist_percentile(&run->hist, 0.999) / 1e3;
    double cpu = (double)(run->cpu_end - run->cpu_start) / 1e3 / (double)run->done;
    const char *tr = o->tls ? "tls" : "plain";

    switch (o->format) {
    case FORMAT_CSV:
        puts("kind,test,transport,connections,pipeline,requests,value_size,seconds,ops_per_sec,"
             "p50_us,p99_us,p999_us,cpu_us_per_op,errors");
        printf("throughput,GET,%s,1,%ld,%ld,3,%.6f,%.1f,%.3f,%.3f,%.3f,%.4f,%ld\n", tr, o->inflight, run->done,
               seconds, ops, p50, p99, p999, cpu, run->bad);
        break;
    case FORMAT_JSON:
        printf("{\"kind\":\"throughput\",\"test\":\"GET\",\"transport\":\"%s\",\"connections\":1,"
               "\"pipeline\":%ld,\"requests\":%ld,\"value_size\":3,\"seconds\":%.6f,\"ops_per_sec\":%.1f,"
               "\"p50_us\":%.3f,\"p99_us\":%.3f,\"p999_us\":%.3f,\"cpu_us_per_op\":%.4f,\"errors\":%ld}\n",
               tr, o->inflight, run->done, seconds, ops, p50, p99, p999, cpu, run->bad);
        break;
    default:
        printf("hiredis-async-bench (hiredis %d.%d.%d, libevent %s)  %s:%d  %s  connections 1  in flight %ld  "
               "keyspace %ld\n",
               HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH, event_get_version(), o->host, o->port, tr, o->inflight,
               o->keyspace);
        printf("%-16s %10s %12s %9s %9s %9s %10s %7s\n", "test", "requests", "ops/s", "p50 us", "p99 us", "p99.9 us",
               "cpu us/op", "errors");
        printf("%-16s %10ld %12.0f %9.1f %9.1f %9.1f %10.3f %7ld\n", "GET", run->done, ops, p50, p99, p999, cpu,
               run->bad);
    }
}

int main(int argc, char **argv)
{
    struct options o;
    struct run *run;
    redisSSLContext *ssl = NULL;
    unsigned long ring = 1;
    int rc = parse_options(argc, argv, &o);

    if (rc != GO_ON)
        return rc;
    signal(SIGPIPE, SIG_IGN);
    run = calloc(1, sizeof *run);
    while (ring < (unsigned long)o.inflight)
        ring <<= 1;
    if (run == NULL || (run->issued_at = calloc(ring, sizeof *run->issued_at)) == NULL) {
        fputs("hiredis-async-bench: out of memory\n", stderr);
        return EXIT_CONNECT;
    }
    run->o = &o;
    run->mask = ring - 1;
    run->rng = o.seed * 0x9E3779B97F4A7C15ULL + 1;
    memcpy(run->key, "key:000000000000", sizeof run->key);
    run->argv[0] = "GET";
    run->argvlen[0] = 3;
    run->argv[1] = run->key;
    run->argvlen[1] = sizeof run->key - 1;

    run->base = event_base_new();
    if (o.tls) {
        redisSSLContextError err = REDIS_SSL_CTX_NONE;
        redisInitOpenSSL();
        ssl = redisCreateSSLContext(o.cacert, NULL, NULL, NULL, o.sni, &err);
        if (ssl == NULL) {
            fprintf(stderr, "hiredis-async-bench: TLS context: %s\n", redisSSLContextGetError(err));
            return EXIT_CONNECT;
        }
    }
    run->ac = redisAsyncConnect(o.host, o.port);
    if (run->base == NULL || run->ac == NULL || run->ac->err) {
        fprintf(stderr, "hiredis-async-bench: connect to %s:%d failed: %s\n", o.host, o.port,
                run->ac ? run->ac->errstr : "out of memory");
        return EXIT_CONNECT;
    }
    run->ac->data = run;
    if (ssl != NULL && redisInitiateSSLWithContext(&run->ac->c, ssl) != REDIS_OK) {
        fprintf(stderr, "hiredis-async-bench: TLS: %s\n", run->ac->c.errstr);
        return EXIT_CONNECT;
    }
    redisLibeventAttach(run->ac, run->base);
    redisAsyncSetConnectCallback(run->ac, on_connect);
    redisAsyncSetDisconnectCallback(run->ac, on_disconnect);
    if (o.token != NULL && o.token[0] != '\0')
        redisAsyncCommand(run->ac, on_auth, run, "AUTH %s", o.token);
    else
        start_gets(run);
    event_base_dispatch(run->base);

    if (run->failed || run->done != o.requests) {
        rc = EXIT_CONNECT;
    } else {
        print_result(&o, run);
        fprintf(stderr, "hiredis-async-bench: %s %s:%d in flight %ld: %ld GETs, %ld found a value, %ld nil\n",
                o.tls ? "TLS" : "plain", o.host, o.port, o.inflight, run->done, run->found, run->nil);
        rc = run->bad ? EXIT_BAD_REPLY : EXIT_DONE;
    }
    event_base_free(run->base);
    redisFreeSSLContext(ssl);
    free(run->issued_at);
    free(run);
    return rc;
}

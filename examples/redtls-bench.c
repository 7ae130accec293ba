/*
 * redtls-bench: throughput, latency and client CPU cost of redtls against a
 * Redis server, in the shape of `redis-benchmark` so the two can be run side
 * by side on the same server and workload; and, with --connect, the cost of
 * connecting (TCP + TLS + AUTH) with a full handshake versus a resumed one.
 * See usage() for options and exit codes.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <redtls/redtls.h>

#include "redtls-bench.h"

const char *const test_names[TEST_COUNT] = {"PING", "SET", "GET", "INCR"};

enum {
    OPT_CACERT = 256,
    OPT_TOKEN,
    OPT_USER,
    OPT_CONNECT,
    OPT_CSV,
    OPT_JSON,
    OPT_MIX,
    OPT_SEED,
    OPT_TIMEOUT,
    OPT_IDLE,
    OPT_CLUSTER,
    OPT_RESOLVE,
    OPT_HASH_TAG,
    OPT_ASYNC,
    OPT_INFLIGHT,
    OPT_LOOP,
    OPT_STALL,
    OPT_WAVES,
    OPT_PUBSUB,
    OPT_CHANNEL,
    OPT_SUBSCRIBER,
    OPT_RESP3,
    OPT_HELP
};

static const struct option long_options[] = {
    {"url", required_argument, NULL, 'u'},
    {"cacert", required_argument, NULL, OPT_CACERT},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"user", required_argument, NULL, OPT_USER},
    {"connect", required_argument, NULL, OPT_CONNECT},
    {"csv", no_argument, NULL, OPT_CSV},
    {"json", no_argument, NULL, OPT_JSON},
    {"mix", no_argument, NULL, OPT_MIX},
    {"seed", required_argument, NULL, OPT_SEED},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"idle", required_argument, NULL, OPT_IDLE},
    {"cluster", no_argument, NULL, OPT_CLUSTER},
    {"resolve", required_argument, NULL, OPT_RESOLVE},
    {"hash-tag", required_argument, NULL, OPT_HASH_TAG},
    {"async", no_argument, NULL, OPT_ASYNC},
    {"inflight", required_argument, NULL, OPT_INFLIGHT},
    {"loop", required_argument, NULL, OPT_LOOP},
    {"stall", required_argument, NULL, OPT_STALL},
    {"waves", required_argument, NULL, OPT_WAVES},
    {"pubsub", no_argument, NULL, OPT_PUBSUB},
    {"channel", required_argument, NULL, OPT_CHANNEL},
    {"subscriber", required_argument, NULL, OPT_SUBSCRIBER},
    {"resp3", no_argument, NULL, OPT_RESP3},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static const char short_options[] = "u:c:P:n:d:t:r:";

static void usage(FILE *out)
{
    fputs("Usage: redtls-bench [options]\n"
          "\n"
          "Throughput mode (default): runs each test of -t in turn over -c connections\n"
          "served round-robin by one thread; each connection writes -P commands, then\n"
          "reads their -P replies. Reports ops/s, latency (from the batch write to\n"
          "each reply) and client CPU time (user+sys) per operation.\n"
          "Connect mode (--connect N): N connects (TCP + TLS + AUTH) with a full\n"
          "handshake, then N with TLS session resumption; reports wall and CPU time\n"
          "per connect and the fraction actually resumed.\n"
          "Asynchronous API (--async): the same modes through redtls/async.h. Throughput:\n"
          "each connection keeps --inflight commands issued, issuing the next one from\n"
          "each reply's callback; latency is from issuing a command to its callback.\n"
          "--connect N and --idle N open their N handles at once; --stall N measures\n"
          "how long single calls into redtls take while N TLS handshakes run at once.\n"
          "With --cluster, throughput through redtls/async_cluster.h (one handle per -c).\n"
          "Pub/Sub (--pubsub): subscribes to --channel, receives -n messages published\n"
          "by someone else, each checked (that channel, -d bytes of payload; anything\n"
          "else counts as an error), then leaves; reports messages/s (from the first\n"
          "message to the last), CPU per message (from the confirmation) and bytes.\n"
          "\n"
          "  -u, --url URL      rediss://[[USER]:TOKEN@]HOST[:PORT][/DB][?PARAMS]\n"
          "                     (redis:// for plain TCP); default rediss://127.0.0.1\n"
          "      --cacert FILE  trust the CA certificates in FILE\n"
          "      --token TOKEN  password or token (REDTLS_TOKEN is used otherwise;\n"
          "                     prefer it, command lines are visible in `ps`)\n"
          "      --user NAME    ACL user name\n"
          "  -c N               connections (default 1)\n"
          "  -P N               pipeline depth (default 1)\n"
          "  -n N               requests per test (default 100000)\n"
          "  -d N               SET value size in bytes (default 3)\n"
          "  -r N               keyspace: keys key:<12 digits> below N (default 100000)\n"
          "  -t LIST            tests among ping,set,get,incr (default set,get,incr)\n"
          "      --mix          one run cycling through the -t commands instead of one\n"
          "                     run per test\n"
          "      --seed N       key generator seed (default 1; runs are repeatable)\n"
          "      --timeout MS   connect, handshake and command timeout\n"
          "      --connect N    connect mode\n"
          "      --idle N       memory mode: open N connections, report resident\n"
          "                     memory per idle connection\n"
          "      --cluster      cluster mode: one cluster handle per -c, the URL's\n"
          "                     host:port as seed; commands routed by key slot\n"
          "      --hash-tag TAG keys are {TAG}key:NNN..., all in one hash slot\n"
          "      --resolve HOST:ADDR  connect to ADDR when asked for HOST (any port),\n"
          "                     still verifying HOST; repeatable\n"
          "      --async        use the asynchronous API (redtls/async.h)\n"
          "      --inflight N   async: commands kept in flight per connection (default 1)\n"
          "      --loop LOOP    async throughput: builtin (redtls_async_run, default),\n"
          "                     epoll (driven by hand through redtls_async_attach's hooks)"
#ifdef REDTLS_BENCH_LIBEVENT
          ",\n                     libevent (redtls/async_libevent.h)"
#endif
#ifdef REDTLS_BENCH_LIBUV
          ",\n                     libuv (redtls/async_libuv.h)"
#endif
          "; --connect,\n"
          "                     --idle and --stall always use epoll\n"
          "      --stall N      async: loop-stall mode: -c connections keep --inflight GETs\n"
          "                     going while N more make full TLS handshakes at once,\n"
          "                     --waves times; reports the duration of every call into\n"
          "                     redtls (wall and thread CPU), the longest above all\n"
          "      --waves N      stall mode: waves of N handshakes (default 3)\n"
          "      --pubsub       Pub/Sub mode: a subscriber (redtls/pubsub.h); -n messages,\n"
          "                     -d their payload size\n"
          "      --channel NAME pubsub: the channel (default bench)\n"
          "      --subscriber API  pubsub: async (redtls_async_subscribe on the built-in\n"
          "                     loop, default) or blocking (redtls_subscriber_next)\n"
          "      --resp3        speak RESP3 (redtls_config_set_protocol(cfg, 3), as\n"
          "                     protocol=3 in the URL; needs a build on hiredis 1.x)\n",
          out);
    /* Two pieces: C99 promises string literals of 4095 bytes only. */
    fputs("      --csv          CSV lines (a header, then one line per result)\n"
          "      --json         one JSON object per line\n"
          "      --help         print this help and exit\n"
          "\n"
          "Exit status: 0 done, 1 some replies were errors, 2 usage or configuration\n"
          "error, 3 connection, TLS, authentication or I/O failure.\n",
          out);
}

int usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("redtls-bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'redtls-bench --help'.\n", stderr);
    return EXIT_USAGE;
}

static int parse_number(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_tests(const char *list, struct bench_options *o)
{
    const char *p = list;

    o->ntests = 0;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        int k, found = -1;

        for (k = 0; k < TEST_COUNT; k++) {
            const char *name = test_names[k];
            size_t i;
            if (strlen(name) != len)
                continue;
            for (i = 0; i < len && (p[i] | 0x20) == (name[i] | 0x20); i++)
                ;
            if (i == len)
                found = k;
        }
        if (found < 0 || o->ntests == MAX_TESTS)
            return -1;
        o->tests[o->ntests++] = (enum test_kind)found;
        p += len;
        if (*p == ',')
            p++;
    }
    return o->ntests > 0 ? 0 : -1;
}

static int parse_options(int argc, char **argv, struct bench_options *o)
{
    int c;

    memset(o, 0, sizeof(*o));
    o->conns = 1;
    o->pipeline = 1;
    o->requests = 100000;
    o->datasize = 3;
    o->keyspace = 100000;
    o->timeout_ms = -1;
    o->seed = 1;
    o->url = "rediss://127.0.0.1";
    o->inflight = 1;
    o->waves = 3;
    o->channel = "bench";
    parse_tests("set,get,incr", o);

    while ((c = getopt_long(argc, argv, short_options, long_options, NULL)) != -1) {
        long v;
        switch (c) {
        case 'u': o->url = optarg; break;
        case OPT_CACERT: o->cacert = optarg; break;
        case OPT_TOKEN: o->token = optarg; break;
        case OPT_USER: o->user = optarg; break;
        case 'c':
            if (parse_number(optarg, 1, MAX_CONNS, &o->conns) != 0)
                return usage_error("bad -c '%s' (1-%d)", optarg, MAX_CONNS);
            break;
        case 'P':
            if (parse_number(optarg, 1, MAX_PIPELINE, &o->pipeline) != 0)
                return usage_error("bad -P '%s' (1-%d)", optarg, MAX_PIPELINE);
            break;
        case 'n':
            if (parse_number(optarg, 1, LONG_MAX, &o->requests) != 0)
                return usage_error("bad -n '%s'", optarg);
            break;
        case 'd':
            if (parse_number(optarg, 0, 512L * 1024 * 1024, &o->datasize) != 0)
                return usage_error("bad -d '%s' (bytes)", optarg);
            break;
        case 'r':
            if (parse_number(optarg, 1, 999999999999L < LONG_MAX ? 999999999999L : LONG_MAX, &o->keyspace) != 0)
                return usage_error("bad -r '%s'", optarg);
            break;
        case 't':
            if (parse_tests(optarg, o) != 0)
                return usage_error("bad -t '%s' (comma-separated ping,set,get,incr)", optarg);
            break;
        case OPT_MIX: o->mix = 1; break;
        case OPT_SEED:
            if (parse_number(optarg, 0, LONG_MAX, &v) != 0)
                return usage_error("bad --seed '%s'", optarg);
            o->seed = (unsigned long long)v;
            break;
        case OPT_TIMEOUT:
            if (parse_number(optarg, 0, INT_MAX, &o->timeout_ms) != 0)
                return usage_error("bad --timeout '%s' (milliseconds)", optarg);
            break;
        case OPT_CONNECT:
            if (parse_number(optarg, 1, 10000000, &o->connect_n) != 0)
                return usage_error("bad --connect '%s'", optarg);
            break;
        case OPT_IDLE:
            if (parse_number(optarg, 1, 100000, &o->idle_n) != 0)
                return usage_error("bad --idle '%s'", optarg);
            break;
        case OPT_CLUSTER: o->cluster = 1; break;
        case OPT_HASH_TAG:
            if (strlen(optarg) == 0 || strlen(optarg) > 16 || strpbrk(optarg, "{}") != NULL)
                return usage_error("bad --hash-tag '%s' (1-16 characters, no braces)", optarg);
            o->hash_tag = optarg;
            break;
        case OPT_RESOLVE:
            if (o->nresolve == 32 || strchr(optarg, ':') == NULL)
                return usage_error("bad --resolve '%s' (HOST:ADDR, at most 32)", optarg);
            o->resolve[o->nresolve++] = optarg;
            break;
        case OPT_ASYNC: o->async = 1; break;
        case OPT_INFLIGHT:
            if (parse_number(optarg, 1, MAX_PIPELINE, &o->inflight) != 0)
                return usage_error("bad --inflight '%s' (1-%d)", optarg, MAX_PIPELINE);
            o->inflight_set = 1;
            break;
        case OPT_LOOP:
            if (strcmp(optarg, "builtin") == 0)
                o->loop = LOOP_BUILTIN;
            else if (strcmp(optarg, "epoll") == 0)
                o->loop = LOOP_EPOLL;
#ifdef REDTLS_BENCH_LIBEVENT
            else if (strcmp(optarg, "libevent") == 0)
                o->loop = LOOP_LIBEVENT;
#endif
#ifdef REDTLS_BENCH_LIBUV
            else if (strcmp(optarg, "libuv") == 0)
                o->loop = LOOP_LIBUV;
#endif
            else
                return usage_error("bad --loop '%s' (builtin, epoll%s%s)", optarg,
#ifdef REDTLS_BENCH_LIBEVENT
                                   ", libevent",
#else
                                   "",
#endif
#ifdef REDTLS_BENCH_LIBUV
                                   ", libuv"
#else
                                   ""
#endif
                );
            o->loop_set = 1;
            break;
        case OPT_STALL:
            if (parse_number(optarg, 1, 100000, &o->stall_n) != 0)
                return usage_error("bad --stall '%s'", optarg);
            break;
        case OPT_WAVES:
            if (parse_number(optarg, 1, 1000, &o->waves) != 0)
                return usage_error("bad --waves '%s'", optarg);
            break;
        case OPT_PUBSUB: o->pubsub = 1; break;
        case OPT_CHANNEL:
            if (*optarg == '\0' || strlen(optarg) > 200)
                return usage_error("bad --channel '%s' (1-200 bytes)", optarg);
            o->channel = optarg;
            break;
        case OPT_SUBSCRIBER:
            if (strcmp(optarg, "async") == 0)
                o->subscriber_blocking = 0;
            else if (strcmp(optarg, "blocking") == 0)
                o->subscriber_blocking = 1;
            else
                return usage_error("bad --subscriber '%s' (async, blocking)", optarg);
            o->subscriber_set = 1;
            break;
        case OPT_RESP3: o->resp3 = 1; break;
        case OPT_CSV: o->format = FORMAT_CSV; break;
        case OPT_JSON: o->format = FORMAT_JSON; break;
        case OPT_HELP: usage(stdout); return EXIT_DONE;
        default:
            fputs("Try 'redtls-bench --help'.\n", stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (!o->async && (o->inflight_set || o->loop_set || o->stall_n))
        return usage_error("--inflight, --loop and --stall go with --async");
    if (o->pubsub &&
        (o->async || o->cluster || o->connect_n || o->idle_n || o->pipeline != 1 || o->conns != 1 || o->mix))
        return usage_error("--pubsub is a mode of its own (one subscriber; --subscriber picks the API)");
    if (!o->pubsub && o->subscriber_set)
        return usage_error("--subscriber goes with --pubsub");
    if (o->async && o->pipeline != 1)
        return usage_error("--async keeps --inflight commands in flight; -P is for the blocking API");
    if (o->async && o->cluster && (o->stall_n || o->connect_n || o->idle_n || o->loop != LOOP_BUILTIN))
        return usage_error("--async --cluster measures throughput on the built-in loop only");
    if (o->token == NULL) {
        const char *env = getenv("REDTLS_TOKEN");
        if (env != NULL && *env != '\0')
            o->token = env;
    }
    return EXIT_CONTINUE;
}

int config_failed(const redtls_config *cfg, const char *what, redtls_status st)
{
    const char *detail = redtls_config_errmsg(cfg);

    fprintf(stderr, "redtls-bench: %s: %s\n", what, *detail != '\0' ? detail : redtls_strerror(st));
    return EXIT_USAGE;
}

static int apply_options(const struct bench_options *o, redtls_config *cfg)
{
    redtls_status st;

#define APPLY(what, call)                                   \
    do {                                                    \
        if ((st = (call)) != REDTLS_OK)                     \
            return config_failed(cfg, (what), st);          \
    } while (0)

    APPLY("--url", redtls_config_set_url(cfg, o->url));
    if (o->cacert != NULL)
        APPLY("--cacert", redtls_config_set_ca_file(cfg, o->cacert));
    if (o->user != NULL)
        APPLY("--user", redtls_config_set_user(cfg, o->user));
    if (o->token != NULL)
        APPLY("--token", redtls_config_set_token(cfg, o->token));
    for (int i = 0; i < o->nresolve; i++) {
        char host[256];
        const char *colon = strchr(o->resolve[i], ':');
        size_t n = (size_t)(colon - o->resolve[i]);
        if (n == 0 || n >= sizeof host)
            return usage_error("bad --resolve '%s'", o->resolve[i]);
        memcpy(host, o->resolve[i], n);
        host[n] = '\0';
        APPLY("--resolve", redtls_config_add_resolve(cfg, host, 0, colon + 1));
    }
    if (o->resp3)
        APPLY("--resp3", redtls_config_set_protocol(cfg, 3));
    if (o->timeout_ms != -1) {
        unsigned ms = (unsigned)o->timeout_ms;
        APPLY("--timeout", redtls_config_set_connect_timeout_ms(cfg, ms));
        APPLY("--timeout", redtls_config_set_handshake_timeout_ms(cfg, ms));
        APPLY("--timeout", redtls_config_set_command_timeout_ms(cfg, ms));
    }
#undef APPLY
    return EXIT_CONTINUE;
}

/* The URL for display: the user-info part (which may hold the token) is
 * replaced by "***". */
static void redacted_url(const char *url, char *out, size_t cap)
{
    const char *scheme_end = strstr(url, "://");
    const char *host = scheme_end != NULL ? scheme_end + 3 : url;
    size_t auth_len = strcspn(host, "@/?");

    if (host[auth_len] == '@')
        snprintf(out, cap, "%.*s***@%s", (int)(host - url), url, host + auth_len + 1);
    else
        snprintf(out, cap, "%s", url);
}

static int conn_failed(redtls_conn *conn, const char *what, redtls_status st)
{
    const char *detail = redtls_conn_errmsg(conn);

    fprintf(stderr, "redtls-bench: %s: %s\n", what, *detail != '\0' ? detail : redtls_strerror(st));
    return EXIT_CONNECT;
}





void prepare_cmd(struct prepared_cmd *p, enum test_kind kind, const char *value, size_t value_len, const char *tag)
{
    char prefix[48];

    snprintf(prefix, sizeof prefix, "%s%s%s%s", tag ? "{" : "", tag ? tag : "", tag ? "}" : "",
             kind == TEST_INCR ? "counter:" : "key:");
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    snprintf(p->key, sizeof p->key, "%s%0*d", prefix, RAND_DIGITS, 0);
    p->digits_at = strlen(prefix);
    p->argv[0] = test_names[kind];
    p->argvlen[0] = strlen(test_names[kind]);
    p->argv[1] = p->key;
    p->argvlen[1] = strlen(p->key);
    switch (kind) {
    case TEST_PING:
        p->argc = 1;
        p->digits_at = 0;
        break;
    case TEST_SET:
        p->argc = 3;
        p->argv[2] = value;
        p->argvlen[2] = value_len;
        break;
    case TEST_GET:
    case TEST_INCR:
    case TEST_COUNT:
        p->argc = 2;
        break;
    }
}


void fill_result(struct result *res, long done, long errors, const struct histogram *hist, uint64_t wall_ns,
                 uint64_t cpu)
{
    res->requests = done;
    res->seconds = (double)wall_ns / 1e9;
    res->ops_per_sec = res->seconds > 0 ? (double)done / res->seconds : 0.0;
    res->p50_us = hist_percentile(hist, 0.50) / 1e3;
    res->p99_us = hist_percentile(hist, 0.99) / 1e3;
    res->p999_us = hist_percentile(hist, 0.999) / 1e3;
    res->cpu_us_per_op = (double)cpu / 1e3 / (double)done;
    res->errors = errors;
}

static int run_one(const struct bench_options *o, redtls_conn **conns, struct prepared_cmd *cmds, int ncmds,
                   uint64_t *rng, struct histogram *hist, struct result *res)
{
    long sent = 0, done = 0, errors = 0;
    long *batch = calloc((size_t)o->conns, sizeof(*batch));
    uint64_t *written_at = calloc((size_t)o->conns, sizeof(*written_at));
    uint64_t t_start, t_end, cpu_start, cpu_end;
    int next_cmd = 0;
    int rc = EXIT_DONE;

    if (batch == NULL || written_at == NULL) {
        fputs("redtls-bench: out of memory\n", stderr);
        free(batch);
        free(written_at);
        return EXIT_CONNECT;
    }
    memset(hist, 0, sizeof(*hist));

    cpu_start = cpu_ns();
    t_start = now_ns();
    while (done < o->requests) {
        long i, k;

        /* Every connection gets its batch written before any reply is
         * read, so the server works on all of them at once. */
        for (i = 0; i < o->conns && sent < o->requests; i++) {
            long n = o->requests - sent < o->pipeline ? o->requests - sent : o->pipeline;
            redtls_status st;

            for (k = 0; k < n; k++) {
                struct prepared_cmd *p = &cmds[next_cmd];
                if (++next_cmd == ncmds)
                    next_cmd = 0;
                randomize_key(p, rng, (uint64_t)o->keyspace);
                st = redtls_conn_append_argv(conns[i], p->argc, p->argv, p->argvlen);
                if (st != REDTLS_OK) {
                    rc = conn_failed(conns[i], "append", st);
                    goto out;
                }
            }
            written_at[i] = now_ns();
            st = redtls_conn_flush(conns[i]);
            if (st != REDTLS_OK) {
                rc = conn_failed(conns[i], "write", st);
                goto out;
            }
            batch[i] = n;
            sent += n;
        }
        for (i = 0; i < o->conns; i++) {
            for (k = 0; k < batch[i]; k++) {
                struct redisReply *reply = NULL;
                redtls_status st = redtls_conn_get_reply(conns[i], &reply);
                if (st != REDTLS_OK) {
                    rc = conn_failed(conns[i], "read", st);
                    goto out;
                }
                hist_record(hist, now_ns() - written_at[i]);
                if (redtls_reply_type(reply) == REDTLS_REPLY_ERROR) {
                    if (errors == 0) {
                        size_t len = 0;
                        const char *s = redtls_reply_str(reply, &len);
                        fprintf(stderr, "redtls-bench: first error reply: %.*s\n", (int)(len > 200 ? 200 : len),
                                s);
                    }
                    errors++;
                }
                redtls_reply_free(reply);
            }
            done += batch[i];
            batch[i] = 0;
        }
    }
    t_end = now_ns();
    cpu_end = cpu_ns();

    fill_result(res, done, errors, hist, t_end - t_start, cpu_end - cpu_start);
    if (errors > 0)
        rc = EXIT_ERROR_REPLY;
out:
    free(batch);
    free(written_at);
    return rc;
}

/* Cluster mode: the same loop over cluster handles. Each handle's batch is
 * written to every node it touches before any reply is read. */
static int run_one_cluster(const struct bench_options *o, redtls_cluster **cls, struct prepared_cmd *cmds,
                           int ncmds, uint64_t *rng, struct histogram *hist, struct result *res)
{
    long done = 0, errors = 0;
    uint64_t t_start, t_end, cpu_start, cpu_end;
    int next_cmd = 0;

    memset(hist, 0, sizeof(*hist));
    cpu_start = cpu_ns();
    t_start = now_ns();
    while (done < o->requests) {
        long i, k;
        for (i = 0; i < o->conns && done < o->requests; i++) {
            long n = o->requests - done < o->pipeline ? o->requests - done : o->pipeline;
            uint64_t t0 = now_ns();
            for (k = 0; k < n; k++) {
                struct prepared_cmd *p = &cmds[next_cmd];
                struct redisReply *reply = NULL;
                redtls_status st;
                if (++next_cmd == ncmds)
                    next_cmd = 0;
                randomize_key(p, rng, (uint64_t)o->keyspace);
                if (n == 1) {
                    st = redtls_cluster_command_argv(cls[i], 0, p->argc, p->argv, p->argvlen, &reply);
                    if (st == REDTLS_OK)
                        goto got;
                } else {
                    st = redtls_cluster_append_argv(cls[i], 0, p->argc, p->argv, p->argvlen);
                    if (st == REDTLS_OK)
                        continue;
                }
                fprintf(stderr, "redtls-bench: %s\n", redtls_cluster_errmsg(cls[i]));
                return EXIT_CONNECT;
            got:
                hist_record(hist, now_ns() - t0);
                errors += redtls_reply_type(reply) == REDTLS_REPLY_ERROR;
                redtls_reply_free(reply);
            }
            for (k = 0; n > 1 && k < n; k++) {
                struct redisReply *reply = NULL;
                redtls_status st = redtls_cluster_get_reply(cls[i], &reply);
                if (st != REDTLS_OK) {
                    fprintf(stderr, "redtls-bench: %s\n", redtls_cluster_errmsg(cls[i]));
                    return EXIT_CONNECT;
                }
                hist_record(hist, now_ns() - t0);
                errors += redtls_reply_type(reply) == REDTLS_REPLY_ERROR;
                redtls_reply_free(reply);
            }
            done += n;
        }
    }
    t_end = now_ns();
    cpu_end = cpu_ns();
    fill_result(res, done, errors, hist, t_end - t_start, cpu_end - cpu_start);
    return errors > 0 ? EXIT_ERROR_REPLY : EXIT_DONE;
}

void print_throughput_header(const struct bench_options *o, const char *url, const char *transport)
{
    switch (o->format) {
    case FORMAT_CSV:
        puts("kind,test,transport,connections,pipeline,requests,value_size,seconds,ops_per_sec,"
             "p50_us,p99_us,p999_us,cpu_us_per_op,errors");
        break;
    case FORMAT_JSON: break;
    default:
        printf("redtls-bench %s  %s  %s  connections %ld  pipeline %ld  value %ld B  keyspace %ld\n",
               redtls_version(), url, transport, o->conns, o->pipeline, o->datasize, o->keyspace);
        printf("%-16s %10s %12s %9s %9s %9s %10s %7s\n", "test", "requests", "ops/s", "p50 us", "p99 us",
               "p99.9 us", "cpu us/op", "errors");
    }
}

void print_throughput(const struct bench_options *o, const char *transport, const struct result *r)
{
    switch (o->format) {
    case FORMAT_CSV:
        printf("throughput,%s,%s,%ld,%ld,%ld,%ld,%.6f,%.1f,%.3f,%.3f,%.3f,%.4f,%ld\n", r->test, transport, o->conns,
               o->pipeline, r->requests, o->datasize, r->seconds, r->ops_per_sec, r->p50_us, r->p99_us, r->p999_us,
               r->cpu_us_per_op, r->errors);
        break;
    case FORMAT_JSON:
        printf("{\"kind\":\"throughput\",\"test\":\"%s\",\"transport\":\"%s\",\"connections\":%ld,"
               "\"pipeline\":%ld,\"requests\":%ld,\"value_size\":%ld,\"seconds\":%.6f,\"ops_per_sec\":%.1f,"
               "\"p50_us\":%.3f,\"p99_us\":%.3f,\"p999_us\":%.3f,\"cpu_us_per_op\":%.4f,\"errors\":%ld}\n",
               r->test, transport, o->conns, o->pipeline, r->requests, o->datasize, r->seconds, r->ops_per_sec,
               r->p50_us, r->p99_us, r->p999_us, r->cpu_us_per_op, r->errors);
        break;
    default:
        printf("%-16s %10ld %12.0f %9.1f %9.1f %9.1f %10.3f %7ld\n", r->test, r->requests, r->ops_per_sec,
               r->p50_us, r->p99_us, r->p999_us, r->cpu_us_per_op, r->errors);
    }
    fflush(stdout);
}

static int run_throughput(const struct bench_options *o, redtls_config *cfg, const char *url)
{
    redtls_conn **conns = calloc((size_t)o->conns, sizeof(*conns));
    redtls_cluster **cls = NULL;
    struct prepared_cmd *cmds = calloc(MAX_TESTS, sizeof(*cmds));
    struct histogram *hist = malloc(sizeof(*hist));
    char *value = malloc((size_t)o->datasize + 1);
    const char *transport;
    uint64_t rng = o->seed * 0x9E3779B97F4A7C15ULL + 1;
    redtls_status st;
    int rc = EXIT_DONE, t;
    long i;

    if (conns == NULL || cmds == NULL || hist == NULL || value == NULL) {
        fputs("redtls-bench: out of memory\n", stderr);
        rc = EXIT_CONNECT;
        goto out;
    }
    /* redis-benchmark's SET value: 'x' repeated. */
    memset(value, 'x', (size_t)o->datasize);
    value[o->datasize] = '\0';

    if (o->cluster) {
        cls = calloc((size_t)o->conns, sizeof(*cls));
        if (cls == NULL) {
            rc = EXIT_CONNECT;
            goto out;
        }
        for (i = 0; i < o->conns; i++) {
            st = redtls_cluster_new(cfg, NULL, &cls[i]);
            if (st != REDTLS_OK) {
                rc = config_failed(cfg, "configuration", st);
                goto out;
            }
            st = redtls_cluster_connect(cls[i]);
            if (st != REDTLS_OK) {
                fprintf(stderr, "redtls-bench: cluster: %s\n", redtls_cluster_errmsg(cls[i]));
                rc = EXIT_CONNECT;
                goto out;
            }
        }
    }
    for (i = 0; !o->cluster && i < o->conns; i++) {
        st = redtls_conn_new(cfg, &conns[i]);
        if (st != REDTLS_OK) {
            rc = config_failed(cfg, "configuration", st);
            goto out;
        }
        st = redtls_conn_connect(conns[i]);
        if (st != REDTLS_OK) {
            rc = conn_failed(conns[i], "connect", st);
            goto out;
        }
    }
    transport = o->cluster ? "tls-cluster" : redtls_conn_tls_version(conns[0]) != NULL ? "tls" : "plain";
    print_throughput_header(o, url, transport);

    for (t = 0; t < (o->mix ? 1 : o->ntests); t++) {
        struct result res;
        int ncmds, r;

        memset(&res, 0, sizeof res);
        if (o->mix) {
            size_t used = 0;
            for (ncmds = 0; ncmds < o->ntests; ncmds++) {
                prepare_cmd(&cmds[ncmds], o->tests[ncmds], value, (size_t)o->datasize, o->hash_tag);
                used += (size_t)snprintf(res.test + used, sizeof res.test - used, "%s%s", ncmds ? "+" : "MIX:",
                                         test_names[o->tests[ncmds]]);
                if (used >= sizeof res.test)
                    used = sizeof res.test - 1;
            }
        } else {
            ncmds = 1;
            prepare_cmd(&cmds[0], o->tests[t], value, (size_t)o->datasize, o->hash_tag);
            snprintf(res.test, sizeof res.test, "%s", test_names[o->tests[t]]);
        }
        r = o->cluster ? run_one_cluster(o, cls, cmds, ncmds, &rng, hist, &res)
                       : run_one(o, conns, cmds, ncmds, &rng, hist, &res);
        if (r != EXIT_DONE && r != EXIT_ERROR_REPLY) {
            rc = r;
            goto out;
        }
        if (r == EXIT_ERROR_REPLY)
            rc = r;
        print_throughput(o, transport, &res);
    }
out:
    if (conns != NULL)
        for (i = 0; i < o->conns; i++)
            redtls_conn_free(conns[i]);
    if (cls != NULL)
        for (i = 0; i < o->conns; i++)
            redtls_cluster_free(cls[i]);
    free(cls);
    free(conns);
    free(cmds);
    free(hist);
    free(value);
    return rc;
}

/* ---- connect mode ---- */

struct connect_series {
    const char *name;
    long n;
    double wall_mean_us, wall_p50_us, wall_p99_us;
    double cpu_mean_us, cpu_p50_us, cpu_p99_us;
    double resumed_fraction; /* < 0: unknown */
};

int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted values, in microseconds. */
static double sorted_percentile_us(const uint64_t *v, long n, double p)
{
    long rank = (long)(p * (double)n + 0.999999);

    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)v[rank - 1] / 1e3;
}

void summarize(uint64_t *v, long n, double *mean, double *p50, double *p99)
{
    double sum = 0;
    long i;

    for (i = 0; i < n; i++)
        sum += (double)v[i];
    *mean = sum / (double)n / 1e3;
    qsort(v, (size_t)n, sizeof(*v), cmp_u64);
    *p50 = sorted_percentile_us(v, n, 0.50);
    *p99 = sorted_percentile_us(v, n, 0.99);
}

static int run_connect_series(redtls_config *cfg, long n, uint64_t *wall, uint64_t *cpu, struct connect_series *s)
{
    redtls_conn *conn = NULL;
    redtls_status st;
    long i, resumed = 0;
    int is_tls = 0;

    st = redtls_conn_new(cfg, &conn);
    if (st != REDTLS_OK)
        return config_failed(cfg, "configuration", st);
    /* An unmeasured first connect gives the resumed series a session to
     * resume and warms both series alike (DNS, CA store, allocator). */
    st = redtls_conn_connect(conn);
    if (st != REDTLS_OK) {
        int rc = conn_failed(conn, "connect", st);
        redtls_conn_free(conn);
        return rc;
    }
    redtls_conn_close(conn);

    for (i = 0; i < n; i++) {
        uint64_t c0 = cpu_ns(), t0 = now_ns();
        st = redtls_conn_connect(conn);
        uint64_t t1 = now_ns(), c1 = cpu_ns();
        if (st != REDTLS_OK) {
            int rc = conn_failed(conn, "connect", st);
            redtls_conn_free(conn);
            return rc;
        }
        wall[i] = t1 - t0;
        cpu[i] = c1 - c0;
        is_tls = redtls_conn_tls_version(conn) != NULL;
        if (redtls_conn_tls_resumed(conn))
            resumed++;
        redtls_conn_close(conn);
    }
    redtls_conn_free(conn);

    s->n = n;
    summarize(wall, n, &s->wall_mean_us, &s->wall_p50_us, &s->wall_p99_us);
    summarize(cpu, n, &s->cpu_mean_us, &s->cpu_p50_us, &s->cpu_p99_us);
    /* Resumption is a TLS notion: "n/a" for plain connections. */
    s->resumed_fraction = is_tls ? (double)resumed / (double)n : -1.0;
    return EXIT_DONE;
}

static void format_fraction(double f, char *out, size_t cap)
{
    if (f < 0)
        snprintf(out, cap, "n/a");
    else
        snprintf(out, cap, "%.3f", f);
}

static void print_connect(const struct bench_options *o, const char *url, const struct connect_series *full,
                          const struct connect_series *res)
{
    const struct connect_series *all[2] = {full, res};
    double ratio = full->cpu_mean_us > 0 ? res->cpu_mean_us / full->cpu_mean_us : 0.0;
    char frac[16];
    int i;

    switch (o->format) {
    case FORMAT_CSV:
        puts("kind,series,connects,wall_mean_us,wall_p50_us,wall_p99_us,cpu_mean_us,cpu_p50_us,cpu_p99_us,"
             "resumed_fraction,cpu_ratio_vs_full");
        for (i = 0; i < 2; i++) {
            format_fraction(all[i]->resumed_fraction, frac, sizeof frac);
            printf("connect,%s,%ld,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%s,%.3f\n", all[i]->name, all[i]->n,
                   all[i]->wall_mean_us, all[i]->wall_p50_us, all[i]->wall_p99_us, all[i]->cpu_mean_us,
                   all[i]->cpu_p50_us, all[i]->cpu_p99_us, frac, i == 0 ? 1.0 : ratio);
        }
        break;
    case FORMAT_JSON:
        for (i = 0; i < 2; i++) {
            if (all[i]->resumed_fraction < 0)
                snprintf(frac, sizeof frac, "null");
            else
                format_fraction(all[i]->resumed_fraction, frac, sizeof frac);
            printf("{\"kind\":\"connect\",\"series\":\"%s\",\"connects\":%ld,\"wall_mean_us\":%.1f,"
                   "\"wall_p50_us\":%.1f,\"wall_p99_us\":%.1f,\"cpu_mean_us\":%.1f,\"cpu_p50_us\":%.1f,"
                   "\"cpu_p99_us\":%.1f,\"resumed_fraction\":%s,\"cpu_ratio_vs_full\":%.3f}\n",
                   all[i]->name, all[i]->n, all[i]->wall_mean_us, all[i]->wall_p50_us, all[i]->wall_p99_us,
                   all[i]->cpu_mean_us, all[i]->cpu_p50_us, all[i]->cpu_p99_us, frac, i == 0 ? 1.0 : ratio);
        }
        break;
    default:
        printf("redtls-bench %s  %s  connect + TLS + AUTH, %ld times per series\n", redtls_version(), url, o->connect_n);
        printf("%-8s %10s %10s %10s %10s %10s %10s %8s\n", "series", "wall mean", "wall p50", "wall p99", "cpu mean",
               "cpu p50", "cpu p99", "resumed");
        for (i = 0; i < 2; i++) {
            format_fraction(all[i]->resumed_fraction, frac, sizeof frac);
            printf("%-8s %8.1fus %8.1fus %8.1fus %8.1fus %8.1fus %8.1fus %8s\n", all[i]->name, all[i]->wall_mean_us,
                   all[i]->wall_p50_us, all[i]->wall_p99_us, all[i]->cpu_mean_us, all[i]->cpu_p50_us,
                   all[i]->cpu_p99_us, frac);
        }
        printf("resumed/full CPU per connect: %.3f\n", ratio);
    }
}

static int run_connect(const struct bench_options *o, redtls_config *cfg_full, redtls_config *cfg_resumed,
                       const char *url)
{
    struct connect_series full = {"full", 0, 0, 0, 0, 0, 0, 0, 0};
    struct connect_series resumed = {"resumed", 0, 0, 0, 0, 0, 0, 0, 0};
    uint64_t *wall = calloc((size_t)o->connect_n, sizeof(*wall));
    uint64_t *cpu = calloc((size_t)o->connect_n, sizeof(*cpu));
    redtls_status st;
    int rc;

    if (wall == NULL || cpu == NULL) {
        fputs("redtls-bench: out of memory\n", stderr);
        free(wall);
        free(cpu);
        return EXIT_CONNECT;
    }
    if ((st = redtls_config_set_tls_session_resumption(cfg_full, 0)) != REDTLS_OK ||
        (st = redtls_config_set_tls_session_resumption(cfg_resumed, 1)) != REDTLS_OK) {
        free(wall);
        free(cpu);
        return config_failed(cfg_full, "session resumption", st);
    }
    rc = run_connect_series(cfg_full, o->connect_n, wall, cpu, &full);
    if (rc == EXIT_DONE)
        rc = run_connect_series(cfg_resumed, o->connect_n, wall, cpu, &resumed);
    if (rc == EXIT_DONE)
        print_connect(o, url, &full, &resumed);
    free(wall);
    free(cpu);
    return rc;
}

/* Resident set size in KiB (VmRSS), or -1. */
long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* Memory mode: holds n connected, idle connections (each used once for a
 * PING) and reports the resident memory they add. */
static int run_idle(const struct bench_options *o, redtls_config *cfg, const char *url)
{
    redtls_conn **conns = calloc((size_t)o->idle_n, sizeof(*conns));
    int rc = EXIT_DONE;
    long i, opened = 0;
    if (conns == NULL)
        return EXIT_CONNECT;
    /* One connection first, so shared one-time costs (the CA store, the
     * library's code pages) are not charged to the others. */
    long before = -1;
    for (i = 0; i < o->idle_n + 1 && rc == EXIT_DONE; i++) {
        redtls_conn *c = NULL;
        struct redisReply *r = NULL;
        redtls_status st = redtls_conn_new(cfg, &c);
        if (st == REDTLS_OK)
            st = redtls_conn_connect(c);
        if (st == REDTLS_OK)
            st = redtls_conn_command(c, &r, "PING");
        redtls_reply_free(r);
        if (st != REDTLS_OK) {
            fprintf(stderr, "redtls-bench: connection %ld: %s: %s\n", i, redtls_strerror(st),
                    c ? redtls_conn_errmsg(c) : redtls_config_errmsg(cfg));
            redtls_conn_free(c);
            rc = EXIT_CONNECT;
            break;
        }
        if (i == 0) {
            before = rss_kib();
            redtls_conn_free(c);
            continue;
        }
        conns[opened++] = c;
    }
    long after = rss_kib();
    if (rc == EXIT_DONE) {
        double per = (double)(after - before) / (double)opened;
        if (o->format == FORMAT_CSV)
            printf("mode,url,connections,rss_before_kib,rss_after_kib,kib_per_connection\nidle,%s,%ld,%ld,%ld,%.1f\n",
                   url, opened, before, after, per);
        else if (o->format == FORMAT_JSON)
            printf("{\"kind\":\"idle\",\"connections\":%ld,\"rss_before_kib\":%ld,\"rss_after_kib\":%ld,"
                   "\"kib_per_connection\":%.1f}\n",
                   opened, before, after, per);
        else
            printf("redtls-bench %s  %s  %ld idle connections: RSS %ld -> %ld KiB, %.1f KiB per connection\n",
                   redtls_version(), url, opened, before, after, per);
    }
    for (i = 0; i < opened; i++)
        redtls_conn_free(conns[i]);
    free(conns);
    return rc;
}

int main(int argc, char **argv)
{
    struct bench_options opts;
    redtls_config *cfg = NULL, *cfg2 = NULL;
    char url[512];
    redtls_status st;
    int rc;

    rc = parse_options(argc, argv, &opts);
    if (rc != EXIT_CONTINUE)
        return rc;
    redacted_url(opts.url, url, sizeof url);

    st = redtls_config_new(&cfg);
    if (st == REDTLS_OK && (opts.connect_n > 0 || opts.stall_n > 0))
        st = redtls_config_new(&cfg2);
    if (st != REDTLS_OK) {
        fprintf(stderr, "redtls-bench: %s\n", redtls_strerror(st));
        rc = EXIT_CONNECT;
    } else {
        rc = apply_options(&opts, cfg);
        if (rc == EXIT_CONTINUE && cfg2 != NULL)
            rc = apply_options(&opts, cfg2);
    }
    if (rc == EXIT_CONTINUE && opts.pubsub)
        rc = run_pubsub(&opts, cfg, url);
    else if (rc == EXIT_CONTINUE && opts.async)
        rc = opts.cluster         ? run_async_cluster_throughput(&opts, cfg, url)
             : opts.stall_n > 0   ? run_async_stall(&opts, cfg, cfg2, url)
             : opts.connect_n > 0 ? run_async_connect(&opts, cfg, cfg2, url)
             : opts.idle_n > 0    ? run_async_idle(&opts, cfg, url)
                                  : run_async_throughput(&opts, cfg, url);
    else if (rc == EXIT_CONTINUE)
        rc = opts.connect_n > 0 ? run_connect(&opts, cfg, cfg2, url)
             : opts.idle_n > 0  ? run_idle(&opts, cfg, url)
                                : run_throughput(&opts, cfg, url);
    redtls_config_free(cfg);
    redtls_config_free(cfg2);
    return rc;
}

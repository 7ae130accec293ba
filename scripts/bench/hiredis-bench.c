/*
 * hiredis-bench: the plain hiredis 1.x way of running pipelined GETs, as a
 * baseline for scripts/bench.sh. One synchronous connection (hiredis_ssl for
 * TLS), AUTH, then -n GETs of random keys in batches of -P: each batch is
 * queued with redisAppendCommandArgv (or, with --format, the printf-style
 * redisAppendCommand), then its replies are read one by one with
 * redisGetReply. Every reply must be a bulk string or nil; anything else
 * ends the run with a message and a nonzero exit. No latency or time is
 * measured per reply: bench.sh counts this process's instructions.
 *
 * The argument-vector call is the default because it is what redtls-bench
 * (redtls_conn_append_argv) and redis-benchmark (commands framed once) do;
 * hiredis's format parser and its sprintf calls cost about 2,400 more
 * instructions per GET, which would hide the rest of the comparison.
 *
 * Built by scripts/bench.sh against hiredis 1.2.0 with SSL (static), not by
 * the project's CMake: the library itself never depends on hiredis_ssl.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>
#include <hiredis/hiredis_ssl.h>

enum {
    EXIT_DONE = 0,       /* every reply was a bulk string or nil */
    EXIT_BAD_REPLY = 1,  /* an error reply or a reply of another type */
    EXIT_USAGE = 2,      /* bad options */
    EXIT_CONNECT = 3,    /* connection, TLS, AUTH or I/O failure */
    GO_ON = -1           /* internal: options parsed, run */
};

/* The key layout of redis-benchmark's key:__rand_int__ and redtls-bench. */
#define KEY_PREFIX "key:"
#define KEY_DIGITS 12

enum { OPT_TLS = 256, OPT_CACERT, OPT_SNI, OPT_TOKEN, OPT_SEED, OPT_FORMAT, OPT_HELP };

static const struct option long_options[] = {
    {"tls", no_argument, NULL, OPT_TLS},
    {"cacert", required_argument, NULL, OPT_CACERT},
    {"sni", required_argument, NULL, OPT_SNI},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"seed", required_argument, NULL, OPT_SEED},
    {"format", no_argument, NULL, OPT_FORMAT},
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
    long pipeline;
    long requests;
    long keyspace;
    unsigned long long seed;
    int format; /* redisAppendCommand("GET %b") instead of the argv call */
};

static void usage(FILE *out)
{
    fputs("Usage: hiredis-bench [options]\n"
          "\n"
          "Runs -n GETs of random keys key:<12 digits> below -r over one hiredis\n"
          "connection, -P at a time (redisAppendCommandArgv x P, then redisGetReply\n"
          "x P), and prints how many found a value and how many were nil.\n"
          "\n"
          "  -h HOST            server host (default 127.0.0.1)\n"
          "  -p PORT            server port (default 6379)\n"
          "      --tls          TLS through hiredis_ssl\n"
          "      --cacert FILE  CA certificates to verify the server with (TLS)\n"
          "      --sni NAME     server name sent in the TLS handshake (default localhost)\n"
          "      --token TOKEN  password for AUTH (REDTLS_TOKEN is used otherwise;\n"
          "                     prefer it, command lines are visible in `ps`)\n"
          "  -P N               pipeline depth (default 1)\n"
          "  -n N               requests (default 100000)\n"
          "  -r N               keyspace (default 100000)\n"
          "      --seed N       key generator seed (default 1)\n"
          "      --format       queue with the printf-style redisAppendCommand(\"GET %b\")\n"
          "                     instead of redisAppendCommandArgv\n"
          "      --help         print this help and exit\n"
          "\n"
          "Exit status: 0 done, 1 an error reply or a reply that is neither a bulk\n"
          "string nor nil, 2 usage error, 3 connection, TLS, AUTH or I/O failure.\n",
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
    fprintf(stderr, "hiredis-bench: bad %s '%s'\nTry 'hiredis-bench --help'.\n", what, value);
    return EXIT_USAGE;
}

/* Returns GO_ON, or the exit status (EXIT_DONE after --help). */
static int parse_options(int argc, char **argv, struct options *o)
{
    long v;
    int c;

    o->host = "127.0.0.1";
    o->port = 6379;
    o->tls = 0;
    o->cacert = NULL;
    o->sni = "localhost";
    o->token = getenv("REDTLS_TOKEN");
    o->pipeline = 1;
    o->requests = 100000;
    o->keyspace = 100000;
    o->seed = 1;
    o->format = 0;

    while ((c = getopt_long(argc, argv, "h:p:P:n:r:", long_options, NULL)) != -1) {
        switch (c) {
        case 'h': o->host = optarg; break;
        case 'p':
            if (parse_long(optarg, 1, 65535, &v) != 0)
                return bad_option("-p", optarg);
            o->port = (int)v;
            break;
        case 'P':
            if (parse_long(optarg, 1, 1 << 20, &o->pipeline) != 0)
                return bad_option("-P", optarg);
            break;
        case 'n':
            if (parse_long(optarg, 1, LONG_MAX, &o->requests) != 0)
                return bad_option("-n", optarg);
            break;
        case 'r':
            if (parse_long(optarg, 1, LONG_MAX, &o->keyspace) != 0)
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
        case OPT_FORMAT: o->format = 1; break;
        case OPT_HELP: usage(stdout); return EXIT_DONE;
        default: fputs("Try 'hiredis-bench --help'.\n", stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc)
        return bad_option("argument", argv[optind]);
    if (o->cacert != NULL && !o->tls)
        return bad_option("--cacert without --tls", o->cacert);
    return GO_ON;
}

/* A 64-bit linear congruential generator (Knuth's MMIX constants); the high
 * bits are the good ones. Repeatable for a given seed. */
static uint64_t next_random(uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return *state >> 33;
}

/* Rewrites the key's digits in place with a random number below keyspace. */
static void pick_key(char *digits, uint64_t *state, uint64_t keyspace)
{
    uint64_t r = next_random(state) % keyspace;
    int i;

    for (i = KEY_DIGITS - 1; i >= 0; i--) {
        digits[i] = (char)('0' + r % 10);
        r /= 10;
    }
}

static int connection_failed(const redisContext *c, const char *during)
{
    fprintf(stderr, "hiredis-bench: %s failed: %s\n", during, c->errstr[0] ? c->errstr : "unknown error");
    return EXIT_CONNECT;
}

static redisContext *connect_to_server(const struct options *o, redisSSLContext **ssl)
{
    struct timeval timeout = {10, 0};
    redisContext *c;

    *ssl = NULL;
    c = redisConnectWithTimeout(o->host, o->port, timeout);
    if (c == NULL) {
        fputs("hiredis-bench: out of memory\n", stderr);
        return NULL;
    }
    if (c->err) {
        fprintf(stderr, "hiredis-bench: connect to %s:%d failed: %s\n", o->host, o->port, c->errstr);
        redisFree(c);
        return NULL;
    }
    /* The same bound on every later read and write, so a stuck server ends
     * the run instead of hanging it. */
    if (redisSetTimeout(c, timeout) != REDIS_OK) {
        connection_failed(c, "setting the timeout");
        redisFree(c);
        return NULL;
    }
    if (o->tls) {
        redisSSLContextError ssl_err = REDIS_SSL_CTX_NONE;

        redisInitOpenSSL();
        *ssl = redisCreateSSLContext(o->cacert, NULL, NULL, NULL, o->sni, &ssl_err);
        if (*ssl == NULL) {
            fprintf(stderr, "hiredis-bench: TLS context: %s\n", redisSSLContextGetError(ssl_err));
            redisFree(c);
            return NULL;
        }
        if (redisInitiateSSLWithContext(c, *ssl) != REDIS_OK) {
            connection_failed(c, "TLS handshake");
            redisFree(c);
            redisFreeSSLContext(*ssl);
            *ssl = NULL;
            return NULL;
        }
    }
    return c;
}

static int authenticate(redisContext *c, const char *token)
{
    redisReply *r = redisCommand(c, "AUTH %s", token);
    int ok;

    if (r == NULL)
        return connection_failed(c, "AUTH");
    ok = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
    if (!ok)
        fprintf(stderr, "hiredis-bench: AUTH refused: %s\n",
                r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS ? r->str : "(unexpected reply type)");
    freeReplyObject(r);
    return ok ? EXIT_DONE : EXIT_CONNECT;
}

static int run_gets(redisContext *c, const struct options *o, long *hits, long *misses)
{
    char key[] = KEY_PREFIX "000000000000";
    char *digits = key + sizeof(KEY_PREFIX) - 1;
    const char *argv[2] = {"GET", key};
    const size_t argvlen[2] = {3, sizeof(key) - 1};
    uint64_t state = o->seed;
    long done = 0;

    *hits = *misses = 0;
    while (done < o->requests) {
        long batch = o->requests - done < o->pipeline ? o->requests - done : o->pipeline;
        long k;

        for (k = 0; k < batch; k++) {
            int st;

            pick_key(digits, &state, (uint64_t)o->keyspace);
            if (o->format)
                st = redisAppendCommand(c, "GET %b", key, sizeof(key) - 1);
            else
                st = redisAppendCommandArgv(c, 2, argv, argvlen);
            if (st != REDIS_OK)
                return connection_failed(c, "queueing GET");
        }
        for (k = 0; k < batch; k++) {
            void *p = NULL;
            redisReply *r;

            if (redisGetReply(c, &p) != REDIS_OK)
                return connection_failed(c, "reading a GET reply");
            r = p;
            if (r->type == REDIS_REPLY_STRING) {
                (*hits)++;
            } else if (r->type == REDIS_REPLY_NIL) {
                (*misses)++;
            } else {
                if (r->type == REDIS_REPLY_ERROR)
                    fprintf(stderr, "hiredis-bench: GET reply %ld is an error: %s\n", done + k + 1, r->str);
                else
                    fprintf(stderr, "hiredis-bench: GET reply %ld has type %d, not a bulk string or nil\n",
                            done + k + 1, r->type);
                freeReplyObject(r);
                return EXIT_BAD_REPLY;
            }
            freeReplyObject(r);
        }
        done += batch;
    }
    return EXIT_DONE;
}

int main(int argc, char **argv)
{
    struct options o;
    redisSSLContext *ssl = NULL;
    redisContext *c;
    long hits, misses;
    int rc = parse_options(argc, argv, &o);

    if (rc != GO_ON)
        return rc;

    c = connect_to_server(&o, &ssl);
    if (c == NULL)
        return EXIT_CONNECT;
    rc = o.token != NULL && o.token[0] != '\0' ? authenticate(c, o.token) : EXIT_DONE;
    if (rc == EXIT_DONE)
        rc = run_gets(c, &o, &hits, &misses);
    if (rc == EXIT_DONE)
        printf("hiredis-bench: %s %s:%d pipeline %ld (%s): %ld GETs, %ld found a value, %ld nil\n",
               o.tls ? "TLS" : "plain", o.host, o.port, o.pipeline,
               o.format ? "redisAppendCommand" : "redisAppendCommandArgv", o.requests, hits, misses);
    redisFree(c);
    redisFreeSSLContext(ssl);
    return rc;
}

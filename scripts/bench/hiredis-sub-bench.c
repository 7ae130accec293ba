/*
 * hiredis-sub-bench: the plain hiredis 1.x asynchronous subscriber, as the
 * peer of `redtls-bench --pubsub` in scripts/bench.sh's pubsub section.
 * One redisAsyncContext (hiredis_ssl for TLS) on a libevent event_base
 * through hiredis's own adapters/libevent.h: AUTH, HELLO 3 with --resp3
 * (hiredis 1.x hands subscribe and message pushes to the SUBSCRIBE
 * callback as it does RESP2's arrays), SUBSCRIBE --channel, then -n
 * messages published by someone else, each checked as redtls-bench checks
 * it (the channel subscribed, -d bytes of payload; anything else counts as
 * an error), then redisAsyncDisconnect.
 *
 * Time as redtls-bench --pubsub measures it: wall from the first message
 * to the n-th, CPU from the confirmation to the n-th; the same output
 * fields (a table, --csv or --json).
 *
 * Built by scripts/bench.sh against hiredis 1.2.0 with SSL (static) and
 * libevent, not by the project's CMake; the clocks are redtls-bench's own
 * (examples/bench-measure.h).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/hiredis_ssl.h>

#include "../../examples/bench-measure.h"

enum { EXIT_DONE = 0, EXIT_BAD_MESSAGE = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3, GO_ON = -1 };
enum { FORMAT_TABLE, FORMAT_CSV, FORMAT_JSON };
enum { OPT_TLS = 256, OPT_CACERT, OPT_SNI, OPT_TOKEN, OPT_CHANNEL, OPT_RESP3, OPT_CSV, OPT_JSON, OPT_HELP };

static const struct option long_options[] = {
    {"tls", no_argument, NULL, OPT_TLS},
    {"cacert", required_argument, NULL, OPT_CACERT},
    {"sni", required_argument, NULL, OPT_SNI},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"channel", required_argument, NULL, OPT_CHANNEL},
    {"resp3", no_argument, NULL, OPT_RESP3},
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
    const char *channel;
    int resp3;
    long requests;
    long datasize;
    int format;
};

static void usage(FILE *out)
{
    fputs("Usage: hiredis-sub-bench [options]\n"
          "\n"
          "Subscribes to --channel over one hiredis asynchronous connection on libevent\n"
          "and receives -n messages published by someone else, each checked.\n"
          "\n"
          "  -h HOST            server host (default 127.0.0.1)\n"
          "  -p PORT            server port (default 6379)\n"
          "      --tls          TLS through hiredis_ssl\n"
          "      --cacert FILE  CA certificates to verify the server with (TLS)\n"
          "      --sni NAME     server name sent in the TLS handshake (default localhost)\n"
          "      --token TOKEN  password for AUTH (REDTLS_TOKEN is used otherwise)\n"
          "      --channel NAME the channel (default bench)\n"
          "      --resp3        HELLO 3 before SUBSCRIBE (messages arrive as pushes)\n"
          "  -n N               messages (default 100000)\n"
          "  -d N               payload size every message must have (default 3)\n"
          "      --csv, --json  output as redtls-bench --pubsub's\n"
          "\n"
          "Exit status: 0 done, 1 some messages were unexpected, 2 usage error,\n"
          "3 connection, TLS, AUTH or I/O failure.\n",
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
    fprintf(stderr, "hiredis-sub-bench: bad %s '%s'\nTry 'hiredis-sub-bench --help'.\n", what, value);
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
    o->channel = "bench";
    o->requests = 100000;
    o->datasize = 3;
    while ((c = getopt_long(argc, argv, "h:p:n:d:", long_options, NULL)) != -1) {
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
        case 'd':
            if (parse_long(optarg, 0, 512L * 1024 * 1024, &o->datasize) != 0)
                return bad_option("-d", optarg);
            break;
        case OPT_TLS: o->tls = 1; break;
        case OPT_CACERT: o->cacert = optarg; break;
        case OPT_SNI: o->sni = optarg; break;
        case OPT_TOKEN: o->token = optarg; break;
        case OPT_CHANNEL:
            if (*optarg == '\0' || strlen(optarg) > 200)
                return bad_option("--channel", optarg);
            o->channel = optarg;
            break;
        case OPT_RESP3: o->resp3 = 1; break;
        case OPT_CSV: o->format = FORMAT_CSV; break;
        case OPT_JSON: o->format = FORMAT_JSON; break;
        case OPT_HELP: usage(stdout); return EXIT_DONE;
        default: fputs("Try 'hiredis-sub-bench --help'.\n", stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc)
        return bad_option("argument", argv[optind]);
    return GO_ON;
}

struct run {
    const struct options *o;
    redisAsyncContext *ac;
    struct event_base *base;
    size_t chlen;
    long received, errors;
    unsigned long long bytes;
    uint64_t t_first, t_last, cpu_start, cpu_end;
    int subscribed, failed;
};

static int is_bulk(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING;
}

static void on_message(redisAsyncContext *ac, void *r, void *privdata)
{
    struct run *run = privdata;
    redisReply *reply = r;

    if (reply == NULL) {
        /* The connection went away, or is being freed after the n-th. */
        if (!run->failed && run->received < run->o->requests) {
            fprintf(stderr, "hiredis-sub-bench: connection lost: %s\n", ac->errstr[0] ? ac->errstr : "(no reason)");
            run->failed = 1;
        }
        return;
    }
    if (run->received >= run->o->requests)
        return; /* after the n-th, before the disconnect */
    int aggregate = reply->type == REDIS_REPLY_ARRAY;
#ifdef REDIS_REPLY_PUSH
    aggregate = aggregate || reply->type == REDIS_REPLY_PUSH;
#endif
    if (aggregate && reply->elements == 3 && is_bulk(reply->element[0]) && is_bulk(reply->element[1]) &&
        is_bulk(reply->element[2]) && reply->element[0]->len == 7 &&
        memcmp(reply->element[0]->str, "message", 7) == 0) {
        const redisReply *ch = reply->element[1], *payload = reply->element[2];
        if (run->received == 0)
            run->t_first = now_ns();
        if (ch->len != run->chlen || memcmp(ch->str, run->o->channel, ch->len) != 0 ||
            payload->len != (size_t)run->o->datasize) {
            if (run->errors == 0)
                fprintf(stderr, "hiredis-sub-bench: unexpected message on '%.*s', %zu bytes (want '%s', %ld bytes)\n",
                        (int)(ch->len > 100 ? 100 : ch->len), ch->str, payload->len, run->o->channel, run->o->datasize);
            run->errors++;
        }
        run->bytes += payload->len;
        if (++run->received == run->o->requests) {
            run->t_last = now_ns();
            run->cpu_end = cpu_ns();
            redisAsyncDisconnect(ac);
        }
        return;
    }
    if (aggregate && reply->elements == 3 && is_bulk(reply->element[0]) &&
        strcasecmp(reply->element[0]->str, "subscribe") == 0 && !run->subscribed) {
        run->subscribed = 1;
        run->cpu_start = cpu_ns();
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "hiredis-sub-bench: SUBSCRIBE failed: %s\n", reply->str);
        run->failed = 1;
        redisAsyncDisconnect(ac);
        return;
    }
    if (run->errors++ == 0)
        fprintf(stderr, "hiredis-sub-bench: unexpected reply of type %d\n", reply->type);
}

static void subscribe(struct run *run)
{
    if (redisAsyncCommand(run->ac, on_message, run, "SUBSCRIBE %s", run->o->channel) != REDIS_OK) {
        fprintf(stderr, "hiredis-sub-bench: queueing SUBSCRIBE failed: %s\n", run->ac->errstr);
        run->failed = 1;
        redisAsyncDisconnect(run->ac);
    }
}

static void on_hello(redisAsyncContext *ac, void *r, void *privdata)
{
    struct run *run = privdata;
    redisReply *reply = r;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "hiredis-sub-bench: HELLO 3 failed: %s\n",
                reply == NULL ? (ac->errstr[0] ? ac->errstr : "connection lost") : reply->str);
        run->failed = 1;
        if (reply != NULL)
            redisAsyncDisconnect(ac);
        return;
    }
    subscribe(run);
}

static void after_auth(struct run *run)
{
    if (run->o->resp3)
        redisAsyncCommand(run->ac, on_hello, run, "HELLO 3");
    else
        subscribe(run);
}

static void on_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    struct run *run = privdata;
    redisReply *reply = r;

    if (reply == NULL || reply->type != REDIS_REPLY_STATUS || strcmp(reply->str, "OK") != 0) {
        fprintf(stderr, "hiredis-sub-bench: AUTH failed: %s\n",
                reply == NULL                      ? (ac->errstr[0] ? ac->errstr : "connection lost")
                : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                   : "unexpected reply");
        run->failed = 1;
        if (reply != NULL)
            redisAsyncDisconnect(ac);
        return;
    }
    after_auth(run);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct run *run = ac->data;

    if (status != REDIS_OK) {
        fprintf(stderr, "hiredis-sub-bench: connect failed: %s\n", ac->errstr);
        run->failed = 1;
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct run *run = ac->data;

    if (status != REDIS_OK && !run->failed && run->received < run->o->requests) {
        fprintf(stderr, "hiredis-sub-bench: disconnected: %s\n", ac->errstr);
        run->failed = 1;
    }
}

static void print_result(const struct options *o, const struct run *run)
{
    const char *tr = o->tls ? "tls" : "plain", *proto = o->resp3 ? "resp3" : "resp2";
    double seconds = (double)(run->t_last - run->t_first) / 1e9;
    /* The first message starts the clock, so n - 1 arrived in that time. */
    double rate = seconds > 0 ? (double)(run->received - 1) / seconds : 0.0;
    double mbs = rate * ((double)run->bytes / (double)run->received) / 1e6;
    double cpu = (double)(run->cpu_end - run->cpu_start) / 1e3 / (double)run->received;

    switch (o->format) {
    case FORMAT_CSV:
        puts("kind,subscriber,transport,protocol,channel,messages,payload_size,seconds,msgs_per_sec,mb_per_sec,"
             "cpu_us_per_msg,payload_bytes,errors");
        printf("pubsub,hiredis-async,%s,%s,%s,%ld,%ld,%.6f,%.1f,%.3f,%.4f,%llu,%ld\n", tr, proto, o->channel,
               run->received, o->datasize, seconds, rate, mbs, cpu, run->bytes, run->errors);
        break;
    case FORMAT_JSON:
        printf("{\"kind\":\"pubsub\",\"subscriber\":\"hiredis-async\",\"transport\":\"%s\",\"protocol\":\"%s\","
               "\"channel\":\"%s\",\"messages\":%ld,\"payload_size\":%ld,\"seconds\":%.6f,\"msgs_per_sec\":%.1f,"
               "\"mb_per_sec\":%.3f,\"cpu_us_per_msg\":%.4f,\"payload_bytes\":%llu,\"errors\":%ld}\n",
               tr, proto, o->channel, run->received, o->datasize, seconds, rate, mbs, cpu, run->bytes, run->errors);
        break;
    default:
        printf("hiredis-sub-bench (hiredis %d.%d.%d, libevent %s)  %s:%d  %s  %s  channel %s  payload %ld B\n",
               HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH, event_get_version(), o->host, o->port, tr, proto,
               o->channel, o->datasize);
        printf("%10s %10s %12s %9s %12s %14s %7s\n", "messages", "seconds", "msgs/s", "MB/s", "cpu us/msg",
               "payload bytes", "errors");
        printf("%10ld %10.3f %12.0f %9.2f %12.3f %14llu %7ld\n", run->received, seconds, rate, mbs, cpu, run->bytes,
               run->errors);
    }
}

int main(int argc, char **argv)
{
    struct options o;
    struct run run;
    redisSSLContext *ssl = NULL;
    int rc = parse_options(argc, argv, &o);

    if (rc != GO_ON)
        return rc;
    signal(SIGPIPE, SIG_IGN);
    memset(&run, 0, sizeof run);
    run.o = &o;
    run.chlen = strlen(o.channel);
    run.base = event_base_new();
    if (o.tls) {
        redisSSLContextError err = REDIS_SSL_CTX_NONE;
        redisInitOpenSSL();
        ssl = redisCreateSSLContext(o.cacert, NULL, NULL, NULL, o.sni, &err);
        if (ssl == NULL) {
            fprintf(stderr, "hiredis-sub-bench: TLS context: %s\n", redisSSLContextGetError(err));
            return EXIT_CONNECT;
        }
    }
    run.ac = redisAsyncConnect(o.host, o.port);
    if (run.base == NULL || run.ac == NULL || run.ac->err) {
        fprintf(stderr, "hiredis-sub-bench: connect to %s:%d failed: %s\n", o.host, o.port,
                run.ac ? run.ac->errstr : "out of memory");
        return EXIT_CONNECT;
    }
    run.ac->data = &run;
    if (ssl != NULL && redisInitiateSSLWithContext(&run.ac->c, ssl) != REDIS_OK) {
        fprintf(stderr, "hiredis-sub-bench: TLS: %s\n", run.ac->c.errstr);
        return EXIT_CONNECT;
    }
    redisLibeventAttach(run.ac, run.base);
    redisAsyncSetConnectCallback(run.ac, on_connect);
    redisAsyncSetDisconnectCallback(run.ac, on_disconnect);
    if (o.token != NULL && o.token[0] != '\0')
        redisAsyncCommand(run.ac, on_auth, &run, "AUTH %s", o.token);
    else
        after_auth(&run);
    event_base_dispatch(run.base);

    if (run.failed || run.received != o.requests) {
        if (!run.failed)
            fprintf(stderr, "hiredis-sub-bench: the loop ended after %ld of %ld messages\n", run.received, o.requests);
        rc = EXIT_CONNECT;
    } else {
        print_result(&o, &run);
        rc = run.errors ? EXIT_BAD_MESSAGE : EXIT_DONE;
    }
    event_base_free(run.base);
    redisFreeSSLContext(ssl);
    return rc;
}

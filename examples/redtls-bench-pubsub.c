/*
 * redtls-bench --pubsub: a subscriber (redtls/pubsub.h) receiving -n
 * messages published by someone else (scripts/bench.sh's pubsub section
 * runs redis-benchmark pipelining PUBLISH), then leaving. It checks every
 * message's channel and payload size (-d) and counts anything else as an
 * error, and reports messages/s, client CPU per message and bytes.
 *
 * --subscriber async (default): redtls_async_subscribe on the built-in loop
 * (redtls_async_run); the n-th message's callback closes the handle, which
 * ends the run. --subscriber blocking: redtls_subscriber_subscribe, then
 * redtls_subscriber_next until n messages (each one a copy the caller
 * frees, which is that API's price).
 *
 * Time: wall from the first message to the n-th (the publisher starts at
 * its own pace after the subscription); CPU from the confirmation to the
 * n-th message, the waiting in between is spent in poll(). The peer,
 * scripts/bench/hiredis-sub-bench.c, measures the same way and prints the
 * same fields.
 */
#include <stdlib.h>
#include <string.h>

#include <redtls/pubsub.h>

#include "redtls-bench.h"

struct psbench {
    const struct bench_options *o;
    size_t chlen;
    long received, errors;
    unsigned long long bytes;
    uint64_t t_first, t_last, cpu_start, cpu_end;
    redtls_status failed;
    char failure[320];
    int plain;
};

static void ps_fail(struct psbench *b, redtls_status st, const char *what, const char *detail)
{
    if (b->failed != REDTLS_OK)
        return;
    b->failed = st != REDTLS_OK ? st : REDTLS_E_STATE;
    snprintf(b->failure, sizeof b->failure, "%s: %s", what, detail && *detail ? detail : redtls_strerror(st));
}

/* Counts one message: its channel must be the one subscribed and its
 * payload -d bytes. Returns 1 when it was the n-th. */
static int ps_count(struct psbench *b, const redtls_message *m)
{
    size_t clen = 0, plen = 0;
    const char *ch = redtls_message_channel(m, &clen);
    (void)redtls_message_payload(m, &plen);

    if (b->received == 0)
        b->t_first = now_ns();
    if (clen != b->chlen || memcmp(ch, b->o->channel, clen) != 0 || plen != (size_t)b->o->datasize) {
        if (b->errors == 0)
            fprintf(stderr, "redtls-bench: unexpected message on '%.*s', %zu bytes (want '%s', %ld bytes)\n",
                    (int)(clen > 100 ? 100 : clen), ch ? ch : "", plen, b->o->channel, b->o->datasize);
        b->errors++;
    }
    b->bytes += plen;
    if (++b->received < b->o->requests)
        return 0;
    b->t_last = now_ns();
    b->cpu_end = cpu_ns();
    return 1;
}

/* A notice: the confirmation starts the CPU clock; a restore (the
 * connection was lost, messages published meanwhile are missing) or an
 * end before the n-th message fails the run. */
static void ps_notice(struct psbench *b, const redtls_message *m)
{
    switch (redtls_message_type(m)) {
    case REDTLS_MSG_SUBSCRIBED: b->cpu_start = cpu_ns(); break;
    case REDTLS_MSG_RESTORED:
        ps_fail(b, REDTLS_E_STATE, "the subscription was restored on a new connection",
                "messages published meanwhile are missing");
        break;
    case REDTLS_MSG_UNSUBSCRIBED:
        if (b->received < b->o->requests)
            ps_fail(b, redtls_message_status(m), "the subscription ended", redtls_message_detail(m));
        break;
    default: b->errors++; break;
    }
}

static void on_message(redtls_async *ac, const redtls_message *m, void *ud)
{
    struct psbench *b = ud;

    if (redtls_message_type(m) != REDTLS_MSG_MESSAGE) {
        ps_notice(b, m);
        if (b->failed != REDTLS_OK)
            redtls_async_close(ac);
        return;
    }
    /* The n-th: closing ends the subscription (its UNSUBSCRIBED notice
     * comes from here) and redtls_async_run returns, nothing pending. */
    if (ps_count(b, m))
        redtls_async_close(ac);
}

/* A lost connection loses messages (a restore follows): its cause is
 * worth seeing. */
static void on_event(void *ud, redtls_event_type type, const char *detail)
{
    struct psbench *b = ud;

    if (type == REDTLS_EVENT_CONNECTED && strcmp(detail, "plain TCP") == 0)
        b->plain = 1;
    if ((type == REDTLS_EVENT_DISCONNECTED || type == REDTLS_EVENT_RECONNECT_SCHEDULED) && b->received < b->o->requests)
        fprintf(stderr, "redtls-bench: %s: %s\n", type == REDTLS_EVENT_DISCONNECTED ? "disconnected" : "reconnecting",
                detail);
}

static int run_async_subscriber(struct psbench *b, redtls_config *cfg)
{
    redtls_async *ac = NULL;
    redtls_status st = redtls_async_new(cfg, &ac);

    if (st != REDTLS_OK)
        return config_failed(cfg, "configuration", st);
    st = redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, b->o->channel, b->chlen, on_message, b);
    if (st != REDTLS_OK)
        ps_fail(b, st, "subscribe", redtls_async_errmsg(ac));
    else if ((st = redtls_async_run(&ac, 1, -1)) != REDTLS_OK)
        ps_fail(b, st, "loop", redtls_async_errmsg(ac));
    redtls_async_free(ac);
    return EXIT_DONE;
}

static int run_blocking_subscriber(struct psbench *b, redtls_config *cfg)
{
    redtls_subscriber *s = NULL;
    redtls_status st = redtls_subscriber_new(cfg, &s);

    if (st != REDTLS_OK)
        return config_failed(cfg, "configuration", st);
    st = redtls_subscriber_subscribe(s, REDTLS_SUB_CHANNEL, b->o->channel, b->chlen);
    if (st != REDTLS_OK) {
        ps_fail(b, st, "subscribe", redtls_subscriber_errmsg(s));
        redtls_subscriber_free(s);
        return EXIT_DONE;
    }
    b->cpu_start = cpu_ns();
    while (b->received < b->o->requests) {
        redtls_message *m = NULL;
        if ((st = redtls_subscriber_next(s, -1, &m)) != REDTLS_OK) {
            ps_fail(b, st, "next message", redtls_subscriber_errmsg(s));
            break;
        }
        if (redtls_message_type(m) == REDTLS_MSG_MESSAGE)
            (void)ps_count(b, m);
        else if (m != NULL)
            ps_notice(b, m);
        redtls_message_free(m);
        if (b->failed != REDTLS_OK)
            break;
    }
    redtls_subscriber_free(s);
    return EXIT_DONE;
}

static void print_pubsub(const struct bench_options *o, const char *url, const struct psbench *b)
{
    const char *sub = o->subscriber_blocking ? "redtls-blocking" : "redtls-async";
    const char *tr = b->plain ? "plain" : "tls";
    const char *proto = o->resp3 || strstr(o->url, "protocol=3") != NULL ? "resp3" : "resp2";
    double seconds = (double)(b->t_last - b->t_first) / 1e9;
    /* The first message starts the clock, so n - 1 arrived in that time. */
    double rate = seconds > 0 ? (double)(b->received - 1) / seconds : 0.0;
    double mbs = rate * ((double)b->bytes / (double)b->received) / 1e6;
    double cpu = (double)(b->cpu_end - b->cpu_start) / 1e3 / (double)b->received;

    switch (o->format) {
    case FORMAT_CSV:
        puts("kind,subscriber,transport,protocol,channel,messages,payload_size,seconds,msgs_per_sec,mb_per_sec,"
             "cpu_us_per_msg,payload_bytes,errors");
        printf("pubsub,%s,%s,%s,%s,%ld,%ld,%.6f,%.1f,%.3f,%.4f,%llu,%ld\n", sub, tr, proto, o->channel, b->received,
               o->datasize, seconds, rate, mbs, cpu, b->bytes, b->errors);
        break;
    case FORMAT_JSON:
        printf("{\"kind\":\"pubsub\",\"subscriber\":\"%s\",\"transport\":\"%s\",\"protocol\":\"%s\","
               "\"channel\":\"%s\",\"messages\":%ld,\"payload_size\":%ld,\"seconds\":%.6f,\"msgs_per_sec\":%.1f,"
               "\"mb_per_sec\":%.3f,\"cpu_us_per_msg\":%.4f,\"payload_bytes\":%llu,\"errors\":%ld}\n",
               sub, tr, proto, o->channel, b->received, o->datasize, seconds, rate, mbs, cpu, b->bytes, b->errors);
        break;
    default:
        printf("redtls-bench %s  %s  %s  %s  pubsub, %s subscriber  channel %s  payload %ld B\n", redtls_version(), url,
               tr, proto, o->subscriber_blocking ? "blocking" : "async (builtin loop)", o->channel, o->datasize);
        printf("%10s %10s %12s %9s %12s %14s %7s\n", "messages", "seconds", "msgs/s", "MB/s", "cpu us/msg",
               "payload bytes", "errors");
        printf("%10ld %10.3f %12.0f %9.2f %12.3f %14llu %7ld\n", b->received, seconds, rate, mbs, cpu, b->bytes,
               b->errors);
    }
    fflush(stdout);
}

int run_pubsub(const struct bench_options *o, redtls_config *cfg, const char *url)
{
    struct psbench b;
    int rc;

    memset(&b, 0, sizeof b);
    b.o = o;
    b.chlen = strlen(o->channel);
    (void)redtls_config_set_event_callback(cfg, on_event, &b);
    rc = o->subscriber_blocking ? run_blocking_subscriber(&b, cfg) : run_async_subscriber(&b, cfg);
    (void)redtls_config_set_event_callback(cfg, NULL, NULL);
    if (rc != EXIT_DONE)
        return rc;
    if (b.failed != REDTLS_OK || b.received != o->requests) {
        fprintf(stderr, "redtls-bench: %s (after %ld of %ld messages)\n",
                b.failed != REDTLS_OK ? b.failure : "the loop ended early", b.received, o->requests);
        return EXIT_CONNECT;
    }
    print_pubsub(o, url, &b);
    return b.errors > 0 ? EXIT_ERROR_REPLY : EXIT_DONE;
}

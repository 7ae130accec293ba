/*
 * What redtls-bench's two files share: the options, the key generator, the
 * result and its printing (the clocks and the latency histogram are in
 * bench-measure.h). redtls-bench.c holds the
 * options, the blocking modes and main; redtls-bench-async.c the modes of
 * the asynchronous API (--async); redtls-bench-pubsub.c the subscriber
 * (--pubsub).
 */
#ifndef REDTLS_BENCH_H
#define REDTLS_BENCH_H

#include <stdint.h>
#include <stdio.h>

#include <redtls/redtls.h>

#include "bench-measure.h"


enum {
    EXIT_DONE = 0,        /* every reply arrived and none was an error */
    EXIT_ERROR_REPLY = 1, /* the run finished, but some replies were errors */
    EXIT_USAGE = 2,       /* bad options or configuration */
    EXIT_CONNECT = 3,     /* connection, TLS, AUTH or I/O failure */
    EXIT_CONTINUE = -1    /* internal: go on */
};

enum { FORMAT_TABLE, FORMAT_CSV, FORMAT_JSON };

enum test_kind { TEST_PING, TEST_SET, TEST_GET, TEST_INCR, TEST_COUNT };

extern const char *const test_names[TEST_COUNT];

#define MAX_TESTS 16
#define MAX_CONNS 1024
#define MAX_PIPELINE 65536
/* redis-benchmark's __rand_int__ expands to 12 digits. */
#define RAND_DIGITS 12

enum { LOOP_BUILTIN, LOOP_EPOLL, LOOP_LIBEVENT, LOOP_LIBUV };


struct bench_options {
    const char *url;
    const char *cacert;
    const char *token;
    const char *user;
    long conns;
    long pipeline;
    long requests;
    long datasize;
    long keyspace;
    long connect_n; /* 0: throughput mode */
    long idle_n;    /* memory mode: idle connections to hold */
    long timeout_ms;
    unsigned long long seed;
    int format;
    int mix;
    int ntests;
    enum test_kind tests[MAX_TESTS];
    int cluster; /* the URL's host:port seeds a cluster handle per -c */
    const char *hash_tag; /* keys "{TAG}key:...": one slot */
    int nresolve;
    const char *resolve[32]; /* HOST:ADDR, any port */
    int async;      /* --async: the asynchronous API */
    long inflight;  /* async: commands kept in flight per connection */
    int loop;       /* async throughput: LOOP_* */
    long stall_n;   /* async loop-stall mode: handshakes per wave */
    long waves;     /* ... and waves */
    int inflight_set, loop_set;
    int pubsub;              /* --pubsub: a subscriber receiving -n messages */
    const char *channel;     /* pubsub: the channel (default "bench") */
    int subscriber_blocking; /* pubsub: redtls_subscriber instead of async */
    int subscriber_set;
    int resp3; /* --resp3: redtls_config_set_protocol(cfg, 3) */
};

/* One prepared command: argv and lengths built once, the 12 key digits
 * rewritten in place before each send (what redis-benchmark does). */
struct prepared_cmd {
    enum test_kind kind;
    int argc;
    const char *argv[3];
    size_t argvlen[3];
    char key[64];
    size_t digits_at; /* offset of the digits in key; 0: no random key */
};

static inline void randomize_key(struct prepared_cmd *p, uint64_t *rng, uint64_t keyspace)
{
    uint64_t r;
    char *d;
    int i;

    if (p->digits_at == 0)
        return;
    r = rng_next(rng) % keyspace;
    d = p->key + p->digits_at + RAND_DIGITS - 1;
    for (i = 0; i < RAND_DIGITS; i++) {
        *d-- = (char)('0' + r % 10);
        r /= 10;
    }
}

struct result {
    char test[64];
    long requests;
    double seconds;
    double ops_per_sec;
    double p50_us, p99_us, p999_us;
    double cpu_us_per_op;
    long errors;
};

int usage_error(const char *fmt, ...) REDTLS_PRINTF(1, 2);
int config_failed(const redtls_config *cfg, const char *what, redtls_status st);
void prepare_cmd(struct prepared_cmd *p, enum test_kind kind, const char *value, size_t value_len, const char *tag);
void fill_result(struct result *res, long done, long errors, const struct histogram *hist, uint64_t wall_ns,
                 uint64_t cpu);
void print_throughput_header(const struct bench_options *o, const char *url, const char *transport);
void print_throughput(const struct bench_options *o, const char *transport, const struct result *r);
int cmp_u64(const void *a, const void *b);
void summarize(uint64_t *v, long n, double *mean, double *p50, double *p99);
long rss_kib(void);

/* The --async modes (redtls-bench-async.c). */
int run_async_throughput(const struct bench_options *o, redtls_config *cfg, const char *url);
int run_async_connect(const struct bench_options *o, redtls_config *cfg_full, redtls_config *cfg_resumed,
                      const char *url);
int run_async_idle(const struct bench_options *o, redtls_config *cfg, const char *url);
/* --async --cluster (redtls-bench-acluster.c). */
int run_async_cluster_throughput(const struct bench_options *o, redtls_config *cfg, const char *url);
int run_async_stall(const struct bench_options *o, redtls_config *cfg, redtls_config *cfg_handshakes,
                    const char *url);
/* --pubsub (redtls-bench-pubsub.c). */
int run_pubsub(const struct bench_options *o, redtls_config *cfg, const char *url);

#endif

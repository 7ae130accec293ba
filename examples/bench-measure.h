/*
 * What the benchmark programs measure with: the clocks, the random numbers
 * of the key generator and the latency histogram. No redtls in it, so
 * redtls-bench and its hiredis peer in scripts/bench (hiredis-async-bench.c,
 * compiled alone by scripts/bench.sh) include the same code and do the
 * same work per request.
 */
#ifndef REDTLS_BENCH_MEASURE_H
#define REDTLS_BENCH_MEASURE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <time.h>

static inline uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* User + system CPU time of this process (getrusage), in nanoseconds. */
static inline uint64_t cpu_ns(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000u +
           ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000u;
}

/* xorshift64*: cheap and repeatable for a given seed. */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/*
 * Latency histogram, log-linear like HdrHistogram: values below 128 ns get
 * a bucket each; above, each power of two is split into 64 buckets, so a
 * percentile is within 1.6% of the true value. Recording is O(1) and needs
 * no memory per request, which keeps the measured loop lean.
 */
#define HIST_SUB 64
#define HIST_BUCKETS (2 * HIST_SUB + 58 * HIST_SUB)

struct histogram {
    uint64_t count;
    uint64_t counts[HIST_BUCKETS];
};

static inline int msb64(uint64_t v)
{
    return 63 - __builtin_clzll(v);
}

static inline void hist_record(struct histogram *h, uint64_t v)
{
    size_t idx;

    if (v < 2 * HIST_SUB) {
        idx = (size_t)v;
    } else {
        int shift = msb64(v) - 6; /* v >> shift is in [64, 128) */
        idx = 2 * HIST_SUB + (size_t)(shift - 1) * HIST_SUB + (size_t)((v >> shift) - HIST_SUB);
    }
    if (idx >= HIST_BUCKETS)
        idx = HIST_BUCKETS - 1;
    h->counts[idx]++;
    h->count++;
}

/* Midpoint of the bucket holding the p-th fraction of the values, in ns. */
static inline double hist_percentile(const struct histogram *h, double p)
{
    uint64_t target, seen = 0;
    size_t idx;

    if (h->count == 0)
        return 0.0;
    target = (uint64_t)(p * (double)h->count + 0.999999);
    if (target < 1)
        target = 1;
    for (idx = 0; idx < HIST_BUCKETS; idx++) {
        seen += h->counts[idx];
        if (seen >= target)
            break;
    }
    if (idx < 2 * HIST_SUB)
        return (double)idx;
    {
        size_t rel = idx - 2 * HIST_SUB;
        int shift = (int)(rel / HIST_SUB) + 1;
        uint64_t low = ((uint64_t)(rel % HIST_SUB) + HIST_SUB) << shift;
        return (double)low + (double)((uint64_t)1 << shift) / 2.0;
    }
}

#endif

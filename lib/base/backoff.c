#include <stdint.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"

static uint64_t next_random(redtls__backoff *b)
{
    uint64_t x = b->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    b->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

void redtls__backoff_init(redtls__backoff *b, unsigned base_ms, unsigned cap_ms, uint64_t seed)
{
    b->base_ms = base_ms ? base_ms : 1;
    b->cap_ms = cap_ms < b->base_ms ? b->base_ms : cap_ms;
    b->prev_ms = 0;
    if (seed == 0 && getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
        /* No entropy yet (early boot): jitter only has to differ between
         * clients, not be secret. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)b;
    }
    b->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
}

unsigned redtls__backoff_next(redtls__backoff *b)
{
    uint64_t lo = b->base_ms;
    uint64_t hi = (uint64_t)(b->prev_ms ? b->prev_ms : b->base_ms) * 3;
    if (hi > b->cap_ms)
        hi = b->cap_ms;
    if (hi < lo)
        hi = lo;
    unsigned d = (unsigned)(lo + next_random(b) % (hi - lo + 1));
    b->prev_ms = d;
    return d;
}

void redtls__backoff_reset(redtls__backoff *b)
{
    b->prev_ms = 0;
}

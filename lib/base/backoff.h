/* Reconnect backoff: "decorrelated jitter" (each delay is uniform between
 * base and three times the previous delay, capped), with its own small
 * PRNG so tests can seed it and the library keeps no global state. */
#ifndef REDTLS_BACKOFF_H
#define REDTLS_BACKOFF_H

#include <stdint.h>

typedef struct redtls__backoff {
    unsigned base_ms;
    unsigned cap_ms;
    unsigned prev_ms; /* 0 before the first delay of an outage */
    uint64_t rng;     /* xorshift64* state, never 0 */
} redtls__backoff;

/* Sets the policy and seeds the generator (seed 0: from the OS). */
void redtls__backoff_init(redtls__backoff *b, unsigned base_ms, unsigned cap_ms, uint64_t seed);
/* Delay before the next attempt, uniform in [base, min(cap, 3 * previous)]
 * (the first one in [base, 3 * base]). */
unsigned redtls__backoff_next(redtls__backoff *b);
/* Back to the first delay (after a successful connect). */
void redtls__backoff_reset(redtls__backoff *b);

#endif

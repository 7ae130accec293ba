/*
 * lab_proxy: a TCP fault proxy for the integration tests, and a restart of
 * redis-server on the port it had.
 *
 * The proxy listens on 127.0.0.1 (random high port) and forwards bytes to
 * 127.0.0.1:target. It never looks inside TLS except to find record
 * boundaries for LAB_FAULT_CUT_IN_RECORD. It runs in a forked child (tracked
 * like the other lab servers: lab_stop_all() and PR_SET_PDEATHSIG end it);
 * the test controls it through a small shared-memory block. Every control
 * call returns once the proxy has applied it, so a command sent afterwards
 * already sees the new fault.
 *
 * Faults apply to new connections and to the current ones. Byte thresholds
 * count from the moment the fault was set (per connection and direction).
 */
#ifndef REDTLS_TESTS_LAB_PROXY_H
#define REDTLS_TESTS_LAB_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lab.h"

typedef enum lab_fault_kind {
    LAB_FAULT_PASS = 0,      /* forward everything */
    LAB_FAULT_CUT,           /* forward `after` bytes in `dir`, cut when more comes */
    LAB_FAULT_CUT_IN_RECORD, /* server->client: forward the next TLS record's
                              * 5-byte header and min(after, len - 1) bytes of
                              * its body, then cut */
    LAB_FAULT_DELAY,         /* hold each chunk in `dir` for delay_ms */
    LAB_FAULT_TRICKLE,       /* forward one byte every delay_ms in `dir` */
    LAB_FAULT_NO_ANSWER,     /* new connections: accepted, never connected
                              * upstream, input read and discarded */
    LAB_FAULT_BLACKHOLE      /* nothing forwarded either way; sockets stay open */
} lab_fault_kind;

#define LAB_C2S 1u /* client -> server */
#define LAB_S2C 2u /* server -> client */
#define LAB_BOTH 3u

typedef struct lab_fault {
    lab_fault_kind kind;
    unsigned dir;      /* LAB_C2S, LAB_S2C or LAB_BOTH (0 means both) */
    size_t after;      /* CUT / CUT_IN_RECORD: bytes let through first */
    unsigned delay_ms; /* DELAY / TRICKLE */
    int rst;           /* cut with a TCP reset (SO_LINGER 0) on both sides */
    int once;          /* after the first cut, back to LAB_FAULT_PASS */
} lab_fault;

typedef struct lab_proxy_stats {
    unsigned long long c2s;      /* bytes forwarded client -> server */
    unsigned long long s2c;      /* bytes forwarded server -> client */
    unsigned long long accepted; /* connections accepted */
    unsigned long long cuts;     /* connections cut by a fault or cut_all */
    unsigned long long active;   /* connections open now */
} lab_proxy_stats;

struct lab_proxy_shm;

typedef struct lab_proxy {
    pid_t pid;           /* 0 when not running */
    uint16_t port;       /* where clients connect */
    struct lab_proxy_shm *shm;
    char log_path[LAB_PATH_MAX];
} lab_proxy;

/* Starts the proxy in front of 127.0.0.1:target_port, passing everything
 * through. Returns 0, or -1 (with a diagnostic on stderr). */
int lab_proxy_start(lab_proxy *p, uint16_t target_port);

/* Replaces the fault (NULL: pass-through). */
void lab_proxy_set(lab_proxy *p, const lab_fault *f);

/* Forwards new connections to another port (the current ones stay). */
void lab_proxy_retarget(lab_proxy *p, uint16_t target_port);

/* Closes every current connection now (with RST when rst). */
void lab_proxy_cut_all(lab_proxy *p, int rst);

/* Stops forwarding on every current connection for good, keeping its
 * sockets open (a peer that vanished silently); new ones follow the fault. */
void lab_proxy_freeze_all(lab_proxy *p);

lab_proxy_stats lab_proxy_get_stats(const lab_proxy *p);

/* Stops the proxy (by pid) and frees its shared block. Accepts a zeroed or
 * stopped proxy. */
void lab_proxy_stop(lab_proxy *p);

/* Sleeps ms milliseconds (resumed after signals). */
void lab_sleep_ms(int ms);

/* Starts redis-server again with opts on the TLS (or plain, without TLS)
 * port srv had, stopping the old process first when it still runs. The
 * port may stay busy for a moment; this retries for up to two seconds.
 * Returns 0 or -1. */
int lab_redis_restart(lab_server *srv, const lab_redis_opts *opts);

#endif /* REDTLS_TESTS_LAB_PROXY_H */

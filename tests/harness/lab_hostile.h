/*
 * lab_hostile: a fake server that answers the first command of each
 * connection with a scripted hostile byte sequence (reader limits, broken
 * RESP, trickled or endless replies, TLS records cut short or corrupted,
 * closes without close_notify, garbage instead of a TLS handshake).
 *
 * It runs in a forked child on a random loopback port, like the other lab
 * servers (tracked; lab_stop() ends it), serving one connection at a time.
 */
#ifndef REDTLS_TESTS_LAB_HOSTILE_H
#define REDTLS_TESTS_LAB_HOSTILE_H

#include <stddef.h>

#include "lab.h"

typedef enum lab_hostile_end {
    LAB_HOSTILE_HOLD = 0,         /* keep the connection open, silent */
    LAB_HOSTILE_CLOSE_NOTIFY,     /* TLS close_notify, then close */
    LAB_HOSTILE_EOF,              /* close the socket without close_notify */
    LAB_HOSTILE_ENDLESS,          /* repeat `fill` until the client leaves */
    LAB_HOSTILE_TRUNCATED_RECORD, /* raw TLS record header announcing 64
                                   * bytes, 10 of them, then close */
    LAB_HOSTILE_CORRUPT_RECORD    /* a whole TLS application-data record of
                                   * garbage (bad MAC), then hold */
} lab_hostile_end;

typedef struct lab_hostile_opts {
    int tls;                /* TLS with the lab's server.crt (else plain) */
    int garbage_handshake;  /* answer the ClientHello with `reply` (not TLS)
                             * and close; no command is read */
    const char *reply;      /* sent after the first command was read */
    size_t reply_len;       /* 0: strlen(reply) */
    unsigned trickle_ms;    /* > 0: one byte of reply every trickle_ms */
    lab_hostile_end end;    /* what follows the reply */
    const char *fill;       /* LAB_HOSTILE_ENDLESS: the bytes repeated */
    int renegotiate;        /* with tls: TLS 1.2 only; after the first
                             * command, ask for a renegotiation (HelloRequest)
                             * and read the client's answer before `reply` */
} lab_hostile_opts;

/* Starts the fake server (opts are copied into the child). Returns 0 or -1. */
int lab_hostile_start(lab_server *srv, const lab_hostile_opts *opts);

#endif /* REDTLS_TESTS_LAB_HOSTILE_H */

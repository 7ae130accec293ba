/* The transport seam: a small table of steps so plain TCP, Unix sockets,
 * TLS and the in-memory test transport are interchangeable. The transport
 * knows nothing about RESP or AUTH.
 *
 * No step waits. Each does what is possible now and says what it waits for
 * next in *want: POLLIN (the socket must become readable), POLLOUT
 * (writable), or 0 (progress was made; call again). Waiting, deadlines and
 * the clock belong to the driver (wait.h for the blocking one). */
#ifndef REDTLS_TRANSPORT_H
#define REDTLS_TRANSPORT_H

#include <poll.h>

#include "common.h"

typedef struct redtls__transport redtls__transport;

/* A handshake step's "call me again now" (not a poll event): one step
 * does the work of one TLS record, so no single call runs long. */
#define REDTLS__AGAIN 0x10000

typedef struct redtls__transport_ops {
    /* Sends what the socket takes now of buf[0..len): *done bytes (0 with
     * *want set when it takes nothing). A write that waited must be
     * retried with the same bytes still at the front (TLS records). */
    redtls_status (*write)(redtls__transport *t, const char *buf, size_t len, size_t *done, int *want, char *err);
    /* Reads what has arrived (up to cap): *got > 0, or *got == 0 with
     * *want set (cap 0: nothing done, *want 0). A clean end is
     * REDTLS_E_CLOSED, an abrupt one REDTLS_E_EOF. */
    redtls_status (*read)(redtls__transport *t, char *buf, size_t cap, size_t *got, int *want, char *err);
    /* Moves the handshake on (TLS): REDTLS_OK with *want 0 once it is
     * complete and verified; POLLIN/POLLOUT: wait for the socket;
     * REDTLS__AGAIN: the step stopped on purpose after a share of the
     * work, with more possibly waiting already: call again soon, without
     * waiting for the socket. NULL: nothing to negotiate. */
    redtls_status (*handshake)(redtls__transport *t, int *want, char *err);
    /* Closes and frees t. graceful: say goodbye (TLS close_notify) first. */
    void (*close)(redtls__transport *t, int graceful);
    /* Without waiting: REDTLS_OK when nothing has arrived on an idle
     * connection (or only TLS housekeeping such as session tickets);
     * otherwise the peer closed it or sent something unasked, and the
     * connection must not be used. Always REDTLS_OK when the socket polls
     * quiet and nothing is buffered (callers that polled several sockets
     * at once rely on it). */
    redtls_status (*idle_check)(redtls__transport *t, char *err);
    /* 1 when a read can answer without the socket becoming readable:
     * bytes already taken from the socket wait (TLS records read ahead),
     * or the memory transport has its script. NULL: never. */
    int (*buffered)(redtls__transport *t);
    /* The socket to poll, or -1 (memory transport). */
    int (*fd)(redtls__transport *t);
    /* Gives back memory only a busy connection needs (TLS record buffers,
     * made again by the next read or write) and goes back to holding it
     * only while a record is in hand, as a new TLS transport does (lean),
     * so a handshake, a set-up or a command waiting for the server holds
     * none. Nothing may be buffered. NULL: nothing to give back. */
    void (*release)(redtls__transport *t);
    /* The connection is used back to back: from here on the record
     * buffers stay between records, until release. NULL with release. */
    void (*settle)(redtls__transport *t);
    /* TLS queries (NULL on other transports). resumed: 1 when the
     * handshake resumed a kept session. verdict_pending: see
     * redtls__transport_verdict_pending. describe: see
     * redtls__transport_describe. */
    int (*resumed)(redtls__transport *t);
    int (*verdict_pending)(redtls__transport *t);
    int (*describe)(redtls__transport *t, int what, char *out, size_t outlen);
} redtls__transport_ops;

struct redtls__transport {
    const redtls__transport_ops *ops;
    /* Tests only: at most this many bytes per socket call (0: no limit),
     * and every other call answers "try again" (alternate != 0), so every
     * split of the byte stream and every wait can be driven. */
    size_t io_max;
    int io_alternate, io_flip;
};

/* The queries, answering 0 / -1 where the transport has no TLS. */
int redtls__transport_resumed(redtls__transport *t);
/* Under TLS 1.3 the server judges our client certificate only after our
 * side of the handshake is done, so its verdict (an alert, often followed
 * by a reset) arrives later; a harmless probe must precede any credential.
 * 0 when no certificate was requested (or TLS 1.2, or no TLS), 1 when one
 * was requested and none configured, 2 when ours was sent. */
int redtls__transport_verdict_pending(redtls__transport *t);
/* Details of an established TLS transport into out (always NUL-terminated):
 * 0, or -1 when unavailable. */
int redtls__transport_describe(redtls__transport *t, int what, char *out, size_t outlen);
enum { REDTLS__TLS_VERSION, REDTLS__TLS_CIPHER, REDTLS__TLS_SUBJECT, REDTLS__TLS_SANS, REDTLS__TLS_NOT_AFTER,
       REDTLS__TLS_DETAILS };
/* Room for one of them. */
#define REDTLS__TLS_DETAIL_MAX 384

/* The test limit applied to one socket call: the length to use, or 0 for
 * "answer try-again this time". */
static inline size_t redtls__io_clip(redtls__transport *t, size_t len)
{
    if (t->io_alternate && (t->io_flip ^= 1))
        return 0;
    return t->io_max && len > t->io_max ? t->io_max : len;
}

/* Plain stream socket (TCP or Unix) taking ownership of fd. */
redtls_status redtls__plain_transport(int fd, redtls__transport **out);

/* In-memory transport for tests. Reads return the scripted chunks one by
 * one; when they run out, reads end with `at_end` (REDTLS_E_EOF,
 * REDTLS_E_CLOSED), or, with REDTLS_E_COMMAND_TIMEOUT, wait for more
 * (*want POLLIN). Everything written is kept and can be inspected. */
redtls_status redtls__mem_transport(redtls__transport **out, redtls_status at_end);
redtls_status redtls__mem_push(redtls__transport *t, const char *data, size_t len);
/* Changes what reads say once the scripted bytes run out (a server that
 * closes later). */
void redtls__mem_set_end(redtls__transport *t, redtls_status at_end);
const char *redtls__mem_written(redtls__transport *t, size_t *len);
/* Counters for tests: write calls made. */
size_t redtls__mem_write_calls(redtls__transport *t);

/* Shared idle check for socket transports: REDTLS_OK when fd has nothing
 * to read. */
redtls_status redtls__fd_idle_check(int fd, char *err);

#endif

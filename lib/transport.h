/* The transport seam: a small read/write/close table so plain TCP, Unix
 * sockets, TLS and the in-memory test transport are interchangeable. The
 * transport knows nothing about RESP or AUTH.
 *
 * Every call blocks until it has made progress or the absolute deadline
 * (see common.h) passes. Timeouts are reported as REDTLS_E_COMMAND_TIMEOUT;
 * callers in the handshake phase translate that to their own phase. */
#ifndef REDTLS_TRANSPORT_H
#define REDTLS_TRANSPORT_H

#include "common.h"

typedef struct redtls__transport redtls__transport;

typedef struct redtls__transport_ops {
    /* Writes all len bytes. */
    redtls_status (*write)(redtls__transport *t, const char *buf, size_t len, int64_t deadline, char *err);
    /* Reads at least one byte (up to cap) into buf; *got is set on success.
     * A clean end is REDTLS_E_CLOSED, an abrupt one REDTLS_E_EOF. */
    redtls_status (*read)(redtls__transport *t, char *buf, size_t cap, size_t *got, int64_t deadline,
                          char *err);
    /* Closes and frees t. graceful: say goodbye (TLS close_notify) first. */
    void (*close)(redtls__transport *t, int graceful);
    /* Without waiting: REDTLS_OK when nothing has arrived on an idle
     * connection (or only TLS housekeeping such as session tickets);
     * otherwise the peer closed it or sent something unasked, and the
     * connection must not be used. */
    redtls_status (*idle_check)(redtls__transport *t, char *err);
    /* The next read should try the socket before waiting: a reply is
     * probably there already (the caller polled the socket itself, as the
     * cluster does for all its nodes at once). NULL: nothing to do. */
    void (*expect_data)(redtls__transport *t);
    /* The socket to poll for readability, or -1 (memory transport). */
    int (*fd)(redtls__transport *t);
    /* Gives back memory only a busy connection needs (TLS record buffers,
     * made again by the next read or write). Nothing may be buffered.
     * NULL: nothing to give back. */
    void (*release)(redtls__transport *t);
} redtls__transport_ops;

struct redtls__transport {
    const redtls__transport_ops *ops;
};

/* Plain stream socket (TCP or Unix) taking ownership of fd. */
redtls_status redtls__plain_transport(int fd, redtls__transport **out);

/* In-memory transport for tests. Reads return the scripted chunks one by
 * one; when they run out, reads end with `at_end` (REDTLS_E_EOF,
 * REDTLS_E_CLOSED or REDTLS_E_COMMAND_TIMEOUT). Everything written is kept
 * and can be inspected. */
redtls_status redtls__mem_transport(redtls__transport **out, redtls_status at_end);
redtls_status redtls__mem_push(redtls__transport *t, const char *data, size_t len);
const char *redtls__mem_written(redtls__transport *t, size_t *len);
/* Shared idle check for socket transports: REDTLS_OK when fd has nothing
 * to read. */
redtls_status redtls__fd_idle_check(int fd, char *err);

/* Counters for tests: write calls made. */
size_t redtls__mem_write_calls(redtls__transport *t);

/* A deadline that has always passed: a read or write given it tries
 * once and never waits (REDTLS_E_COMMAND_TIMEOUT when nothing could be
 * done). */
#define REDTLS__NO_WAIT ((int64_t)1)

/* Socket helpers used by the plain and TLS transports. */
/* Waits until fd is ready for events (POLLIN/POLLOUT): 1 ready, 0 deadline
 * passed, -1 poll error (errno set). */
int redtls__wait_fd(int fd, short events, int64_t deadline);

/* TCP connect trying every address of host within the deadline. The
 * socket gets TCP_NODELAY, keepalive and TCP_USER_TIMEOUT (0: system
 * default). */
redtls_status redtls__tcp_connect(const char *host, uint16_t port, int64_t deadline, unsigned user_timeout_ms,
                                  int *fd_out, char *err);
/* Unix domain stream socket connect. */
redtls_status redtls__unix_connect(const char *path, int64_t deadline, int *fd_out, char *err);

#endif

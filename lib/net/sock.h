/* Reaching the server: resolve (resolve.h), then a non-blocking TCP or
 * Unix connect to each address in turn, as steps that never wait. */
#ifndef REDTLS_SOCK_H
#define REDTLS_SOCK_H

#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>

#include "resolve.h"

/* One connect in progress: the name being resolved, the addresses left,
 * the socket being connected. */
typedef struct redtls__dialer {
    const char *host; /* borrowed for the dialer's life */
    uint16_t port;
    const char *unix_path;
    unsigned user_timeout_ms;
    int64_t deadline; /* the connect timeout, or the call's end */
    redtls__resolve *job;
    struct addrinfo *list, *next;
    size_t total, index;
    int fd;
    int64_t addr_deadline; /* this address's share of the time left */
    int last_errno, any_timeout;
    char last_addr[INET6_ADDRSTRLEN + IF_NAMESIZE + 8]; /* "[numeric%scope]:port" */
} redtls__dialer;

/* Starts connecting to host:port (or unix_path when not NULL) by the
 * deadline; resolver NULL: getaddrinfo. *kept (may be NULL): a lookup an
 * earlier dial gave up on (redtls__dial_cancel_keep); still running for
 * the same host and port, it is taken up instead of starting another
 * thread, otherwise it is freed. Nothing waits: see redtls__dial_step. */
redtls_status redtls__dial_start(redtls__dialer *d, const char *host, uint16_t port, const char *unix_path,
                                 redtls__getaddrinfo_fn resolver, unsigned user_timeout_ms, int64_t deadline,
                                 redtls__resolve **kept, char *err);

/* Moves the connect on at time now. REDTLS_OK with *fd_out >= 0: connected
 * (the caller owns the socket, tuned: TCP_NODELAY, keepalive,
 * TCP_USER_TIMEOUT). REDTLS_OK with *fd_out -1: call again when *wait_fd is
 * ready for *want, or at *wake_at. Failures (REDTLS_E_RESOLVE,
 * REDTLS_E_CONNECT, REDTLS_E_CONNECT_TIMEOUT, REDTLS_E_NOMEM) name the host
 * and the last address tried; then call redtls__dial_cancel (or
 * redtls__dial_cancel_keep), which frees what is left. */
redtls_status redtls__dial_step(redtls__dialer *d, int64_t now, int *fd_out, int *wait_fd, int *want,
                                int64_t *wake_at, char *err);

/* Abandons a connect in progress (the resolver thread, if any, ends on its
 * own). Safe on a finished or zeroed dialer. */
void redtls__dial_cancel(redtls__dialer *d);
/* The same, but a lookup still running is handed to *keep (replacing and
 * freeing what was there) for the next dial to take up: a name whose DNS
 * hangs costs one thread per connection, not one per attempt. */
void redtls__dial_cancel_keep(redtls__dialer *d, redtls__resolve **keep);

/* 1 when s is an IPv4 or IPv6 literal (without brackets). */
int redtls__is_ip_literal(const char *s);

#endif

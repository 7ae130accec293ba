/* The blocking driver's waiting: poll() on one socket until a deadline,
 * and blocking forms of the transport and connect steps for the callers
 * that want them (the blocking API, the cluster engine, tests). Only
 * drivers include this; the core never waits. */
#ifndef REDTLS_WAIT_H
#define REDTLS_WAIT_H

#include "sock.h"
#include "tls.h"

/* Waits until fd is ready for events (POLLIN/POLLOUT): 1 ready, 0 the
 * deadline passed, -1 poll error (errno set). fd -1 (the memory transport,
 * where nothing can arrive while we wait): 0 at once. */
int redtls__wait_fd(int fd, short events, int64_t deadline);
/* Waits until when (a signal does not cut the wait short). */
void redtls__sleep_until(int64_t when);

/* Writes all len bytes by the deadline (REDTLS_E_COMMAND_TIMEOUT). */
redtls_status redtls__io_write_all(redtls__transport *t, const char *buf, size_t len, int64_t deadline, char *err);
/* Reads at least one byte by the deadline (REDTLS_E_COMMAND_TIMEOUT). */
redtls_status redtls__io_read(redtls__transport *t, char *buf, size_t cap, size_t *got, int64_t deadline, char *err);

/* The TLS handshake on a connected socket by the deadline
 * (REDTLS_E_HANDSHAKE_TIMEOUT); see redtls__tls_start. */
redtls_status redtls__tls_connect(redtls__tls_ctx *ctx, int fd, const char *verify_name, redtls__tls_session *slot,
                                  int64_t deadline, redtls__transport **out, char *err);

/* TCP connect to host (resolved on a thread, then every address in turn)
 * or a Unix socket, by the deadline; see redtls__dial_step. */
redtls_status redtls__tcp_connect(const char *host, uint16_t port, int64_t deadline, unsigned user_timeout_ms,
                                  int *fd_out, char *err);
redtls_status redtls__unix_connect(const char *path, int64_t deadline, int *fd_out, char *err);

#endif

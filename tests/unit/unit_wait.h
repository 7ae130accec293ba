/* Blocking forms of the transport and connect steps, for the unit tests
 * that drive a transport or a dialer directly: each loops over the
 * non-blocking step and waits in poll() (lib/driver/wait.h) in between,
 * as a driver does. */
#ifndef REDTLS_UNIT_WAIT_H
#define REDTLS_UNIT_WAIT_H

#include <errno.h>
#include <poll.h>
#include <string.h>

#include "conn.h"
#include "sock.h"
#include "tls.h"
#include "wait.h"

static inline redtls_status unit_wait_failed(int w, const char *what, char *err)
{
    if (w == 0)
        return redtls__fail(err, REDTLS_E_COMMAND_TIMEOUT, "timed out %s", what);
    return redtls__fail(err, REDTLS_E_IO, "poll: %s", strerror(errno));
}

static inline redtls_status unit_write_all(redtls__transport *t, const char *buf, size_t len, int64_t deadline, char *err)
{
    while (len > 0) {
        size_t done = 0;
        int want = 0;
        redtls_status st = t->ops->write(t, buf, len, &done, &want, err);
        if (st != REDTLS_OK)
            return st;
        buf += done;
        len -= done;
        int w = want ? redtls__wait_fd(t->ops->fd(t), (short)want, deadline) : 1;
        if (w <= 0)
            return unit_wait_failed(w, "writing to the server", err);
    }
    return REDTLS_OK;
}

static inline redtls_status unit_read(redtls__transport *t, char *buf, size_t cap, size_t *got, int64_t deadline, char *err)
{
    for (;;) {
        int want = 0;
        redtls_status st = t->ops->read(t, buf, cap, got, &want, err);
        if (st != REDTLS_OK || *got > 0)
            return st;
        int w = want ? redtls__wait_fd(t->ops->fd(t), (short)want, deadline) : 1;
        if (w <= 0)
            return unit_wait_failed(w, "waiting for the server", err);
    }
}

__attribute__((noinline, unused)) static redtls_status unit_tls_connect(redtls__tls_ctx *ctx, int fd, const char *verify_name, redtls__tls_session *slot,
                                  int64_t deadline, redtls__transport **out, char *err)
{
    redtls__transport *t = NULL;
    redtls_status st = redtls__tls_start(ctx, fd, verify_name, slot, &t, err);
    *out = NULL;
    for (int want = 0; st == REDTLS_OK;) {
        if ((st = t->ops->handshake(t, &want, err)) != REDTLS_OK)
            break;
        if (!want) {
            *out = t;
            return REDTLS_OK;
        }
        if (want == REDTLS__AGAIN)
            continue;
        int w = redtls__wait_fd(fd, (short)want, deadline);
        if (w == 0)
            st = redtls__tls_handshake_timeout(want, err);
        else if (w < 0)
            st = redtls__fail(err, REDTLS_E_IO, "poll: %s", strerror(errno));
    }
    if (t)
        t->ops->close(t, 0);
    return st;
}

static inline redtls_status unit_dial(redtls__dialer *d, int *fd_out, char *err)
{
    for (;;) {
        int wait_fd, want;
        int64_t wake_at;
        redtls_status st = redtls__dial_step(d, redtls__now_ms(), fd_out, &wait_fd, &want, &wake_at, err);
        if (st != REDTLS_OK)
            redtls__dial_cancel(d);
        if (st != REDTLS_OK || *fd_out >= 0)
            return st;
        if (redtls__wait_fd(wait_fd, (short)want, wake_at) < 0 && errno != EINTR) {
            redtls__dial_cancel(d);
            return redtls__fail(err, REDTLS_E_IO, "poll: %s", strerror(errno));
        }
    }
}

static inline redtls_status unit_tcp_connect(const char *host, uint16_t port, int64_t deadline, unsigned user_timeout_ms,
                                  int *fd_out, char *err)
{
    redtls__dialer d;
    *fd_out = -1;
    redtls_status st = redtls__dial_start(&d, host, port, NULL, NULL, user_timeout_ms, deadline, NULL, err);
    return st == REDTLS_OK ? unit_dial(&d, fd_out, err) : st;
}

static inline redtls_status unit_unix_connect(const char *path, int64_t deadline, int *fd_out, char *err)
{
    redtls__dialer d;
    *fd_out = -1;
    redtls_status st = redtls__dial_start(&d, NULL, 0, path, NULL, 0, deadline, NULL, err);
    return st == REDTLS_OK ? unit_dial(&d, fd_out, err) : st;
}

/* The set-up run to completion by the deadline, as the blocking driver
 * runs it inside a connection attempt. On the memory transport (no
 * descriptor) nothing can arrive while waiting, so a wait for it ends at
 * its time at once. */
static inline redtls_status unit_conn_setup(redtls_conn *c, int64_t deadline)
{
    int64_t now = redtls__now_ms();
    redtls_status st = redtls__setup_start(c, now, deadline);
    for (int done = 0; st == REDTLS_OK;) {
        redtls__wait w;
        if ((st = redtls__setup_step(c, now, deadline, &done, &w)) != REDTLS_OK || done)
            break;
        if (w.events && w.fd >= 0)
            (void)redtls__wait_fd(w.fd, (short)w.events, w.at);
        else if (!w.events && w.at != REDTLS__NO_DEADLINE)
            redtls__sleep_until(w.at);
        now = redtls__now_ms();
        if (w.fd < 0 && w.events && now < w.at)
            now = w.at;
    }
    redtls__auth_reset(c);
    return st;
}

#endif

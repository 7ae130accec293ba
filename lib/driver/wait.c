#include <errno.h>
#include <poll.h>
#include <string.h>

#include "wait.h"

int redtls__wait_fd(int fd, short events, int64_t deadline)
{
    if (fd < 0)
        return 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events, .revents = 0};
        int ms = redtls__poll_timeout(deadline);
        int rc = poll(&p, 1, ms);
        if (rc > 0)
            return 1;
        if (rc == 0) {
            if (ms == 0 || redtls__poll_timeout(deadline) == 0)
                return 0;
            continue;
        }
        if (errno != EINTR)
            return -1;
    }
}

void redtls__sleep_until(int64_t when)
{
    for (;;) {
        int ms = redtls__poll_timeout(when);
        if (ms <= 0 || poll(NULL, 0, ms) == 0)
            return;
    }
}

static redtls_status wait_failed(int w, const char *what, char *err)
{
    if (w == 0)
        return redtls__fail(err, REDTLS_E_COMMAND_TIMEOUT, "timed out %s", what);
    return redtls__fail(err, REDTLS_E_IO, "poll: %s", strerror(errno));
}

redtls_status redtls__io_write_all(redtls__transport *t, const char *buf, size_t len, int64_t deadline, char *err)
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
            return wait_failed(w, "writing to the server", err);
    }
    return REDTLS_OK;
}

redtls_status redtls__io_read(redtls__transport *t, char *buf, size_t cap, size_t *got, int64_t deadline, char *err)
{
    for (;;) {
        int want = 0;
        redtls_status st = t->ops->read(t, buf, cap, got, &want, err);
        if (st != REDTLS_OK || *got > 0)
            return st;
        int w = want ? redtls__wait_fd(t->ops->fd(t), (short)want, deadline) : 1;
        if (w <= 0)
            return wait_failed(w, "waiting for the server", err);
    }
}

redtls_status redtls__tls_connect(redtls__tls_ctx *ctx, int fd, const char *verify_name, redtls__tls_session *slot,
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

static redtls_status dial(redtls__dialer *d, int *fd_out, char *err)
{
    for (;;) {
        int wait_fd, want;
        int64_t wake_at;
        redtls_status st = redtls__dial_step(d, redtls__now_ms(), fd_out, &wait_fd, &want, &wake_at, err);
        if (st != REDTLS_OK || *fd_out >= 0)
            return st;
        if (redtls__wait_fd(wait_fd, (short)want, wake_at) < 0 && errno != EINTR) {
            redtls__dial_cancel(d);
            return redtls__fail(err, REDTLS_E_IO, "poll: %s", strerror(errno));
        }
    }
}

redtls_status redtls__tcp_connect(const char *host, uint16_t port, int64_t deadline, unsigned user_timeout_ms,
                                  int *fd_out, char *err)
{
    redtls__dialer d;
    *fd_out = -1;
    redtls_status st = redtls__dial_start(&d, host, port, NULL, NULL, user_timeout_ms, deadline, err);
    return st == REDTLS_OK ? dial(&d, fd_out, err) : st;
}

redtls_status redtls__unix_connect(const char *path, int64_t deadline, int *fd_out, char *err)
{
    redtls__dialer d;
    *fd_out = -1;
    redtls_status st = redtls__dial_start(&d, NULL, 0, path, NULL, 0, deadline, err);
    return st == REDTLS_OK ? dial(&d, fd_out, err) : st;
}

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "sock.h"
#include "transport.h"

static void tune_tcp(int fd, unsigned user_timeout_ms)
{
    int one = 1;
    /* Commands are small and latency-bound; never wait for Nagle. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
#ifdef TCP_KEEPIDLE
    int idle = 60, intvl = 10, cnt = 3;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
#endif
#ifdef TCP_USER_TIMEOUT
    /* Unacknowledged data for this long means the peer is gone, even when
     * keepalive would take minutes to notice. */
    if (user_timeout_ms) {
        unsigned t = user_timeout_ms;
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &t, sizeof t);
    }
#else
    (void)user_timeout_ms;
#endif
}

redtls_status redtls__fd_idle_check(int fd, char *err)
{
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    int rc = poll(&p, 1, 0);
    if (rc == 0)
        return REDTLS_OK;
    if (rc < 0)
        return errno == EINTR ? REDTLS_OK : redtls__fail(err, REDTLS_E_IO, "poll: %s", strerror(errno));
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return REDTLS_OK;
    if (n == 0)
        return redtls__fail(err, REDTLS_E_EOF, "the server closed the idle connection");
    if (n < 0)
        return redtls__fail(err, REDTLS_E_IO, "the idle connection failed: %s", strerror(errno));
    return redtls__fail(err, REDTLS_E_PROTOCOL, "the server sent data nobody asked for on an idle connection");
}

int redtls__is_ip_literal(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static void describe_addr(const struct sockaddr *sa, socklen_t salen, char *out, size_t outlen)
{
    char h[NI_MAXHOST], s[NI_MAXSERV];
    if (getnameinfo(sa, salen, h, sizeof h, s, sizeof s, NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, outlen, "?");
        return;
    }
    snprintf(out, outlen, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, s);
}

/* Starts a non-blocking connect: 0 (connected or under way), else errno. */
static int connect_start(int fd, const struct sockaddr *sa, socklen_t salen)
{
    if (connect(fd, sa, salen) == 0 || errno == EINPROGRESS || errno == EINTR)
        return 0;
    return errno;
}

/* Where a connect under way stands, without waiting: 0 connected,
 * EINPROGRESS still under way, or the errno it failed with. */
static int connect_check(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT, .revents = 0};
    int rc = poll(&p, 1, 0);
    if (rc == 0 || (rc < 0 && errno == EINTR))
        return EINPROGRESS;
    if (rc < 0)
        return errno;
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        return errno;
    return soerr;
}

redtls_status redtls__dial_start(redtls__dialer *d, const char *host, uint16_t port, const char *unix_path,
                                 redtls__getaddrinfo_fn resolver, unsigned user_timeout_ms, int64_t deadline,
                                 redtls__resolve **kept, char *err)
{
    redtls__resolve *old = kept ? *kept : NULL;
    if (kept)
        *kept = NULL;
    memset(d, 0, sizeof *d);
    d->fd = -1;
    d->host = host;
    d->port = port;
    d->unix_path = unix_path;
    d->user_timeout_ms = user_timeout_ms;
    d->deadline = deadline;
    if (unix_path) {
        redtls__resolve_free(old);
        struct sockaddr_un sa;
        size_t n = strlen(unix_path);
        if (n >= sizeof sa.sun_path)
            return redtls__fail(err, REDTLS_E_CONFIG, "unix socket path too long (%zu bytes, limit %zu)", n,
                                sizeof sa.sun_path - 1);
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        memcpy(sa.sun_path, unix_path, n + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return redtls__fail(err, REDTLS_E_CONNECT, "socket(): %s", strerror(errno));
        int e = connect_start(fd, (const struct sockaddr *)&sa, sizeof sa);
        if (e != 0) {
            close(fd);
            return redtls__fail(err, REDTLS_E_CONNECT, "connect to unix socket %s failed: %s", unix_path,
                                strerror(e));
        }
        d->fd = fd;
        d->addr_deadline = deadline;
        return REDTLS_OK;
    }
    if (old && redtls__resolve_running_for(old, host, port)) {
        d->job = old;
        return REDTLS_OK;
    }
    redtls__resolve_free(old);
    return redtls__resolve_start(host, port, resolver, &d->job, err);
}

void redtls__dial_cancel_keep(redtls__dialer *d, redtls__resolve **keep)
{
    if (d->job && d->host && redtls__resolve_running_for(d->job, d->host, d->port)) {
        redtls__resolve_free(*keep);
        *keep = d->job;
        d->job = NULL;
    }
    redtls__dial_cancel(d);
}

void redtls__dial_cancel(redtls__dialer *d)
{
    redtls__resolve_free(d->job);
    d->job = NULL;
    if (d->list)
        freeaddrinfo(d->list);
    d->list = d->next = NULL;
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
}

static redtls_status dial_failed(redtls__dialer *d, char *err)
{
    redtls__dial_cancel(d);
    const char *host = d->host;
    unsigned port = d->port;
    if (d->any_timeout && (d->last_errno == ETIMEDOUT || d->last_errno == 0))
        return redtls__fail(err, REDTLS_E_CONNECT_TIMEOUT, "connect to %s port %u timed out%s%s%s", host, port,
                            d->last_addr[0] ? " (last tried " : "", d->last_addr, d->last_addr[0] ? ")" : "");
    if (d->last_errno == 0)
        return redtls__fail(err, REDTLS_E_CONNECT, "connect to %s port %u failed: '%s' resolved to no address to try",
                            host, port, host);
    return redtls__fail(err, REDTLS_E_CONNECT, "connect to %s port %u failed: %s (last tried %s)", host, port,
                        strerror(d->last_errno), d->last_addr);
}

/* A Unix socket has one address: connected, under way, or failed. */
static redtls_status unix_step(redtls__dialer *d, int64_t now, int *fd_out, int *want, int64_t *wake_at, char *err)
{
    int e = connect_check(d->fd);
    if (e == 0) {
        *fd_out = d->fd;
        d->fd = -1;
        return REDTLS_OK;
    }
    if (e == EINPROGRESS && now < d->deadline) {
        *want = POLLOUT;
        *wake_at = d->deadline;
        return REDTLS_OK;
    }
    redtls__dial_cancel(d);
    if (e == EINPROGRESS)
        return redtls__fail(err, REDTLS_E_CONNECT_TIMEOUT, "connect to unix socket %s timed out", d->unix_path);
    return redtls__fail(err, REDTLS_E_CONNECT, "connect to unix socket %s failed: %s", d->unix_path, strerror(e));
}

redtls_status redtls__dial_step(redtls__dialer *d, int64_t now, int *fd_out, int *wait_fd, int *want,
                                int64_t *wake_at, char *err)
{
    *fd_out = -1;
    *want = 0;
    *wake_at = REDTLS__NO_DEADLINE;
    *wait_fd = d->fd;
    if (d->unix_path)
        return d->fd >= 0 ? unix_step(d, now, fd_out, want, wake_at, err)
                          : redtls__fail(err, REDTLS_E_STATE, "no connect under way");
    if (d->job) {
        struct addrinfo *res = NULL;
        redtls_status st = redtls__resolve_take(d->job, &res, err);
        if (st != REDTLS_OK) {
            redtls__dial_cancel(d);
            return st;
        }
        if (!res) {
            if (now >= d->deadline) {
                /* The lookup stays with the dialer: the caller may keep it
                 * for its next attempt (redtls__dial_cancel_keep). */
                return redtls__fail(err, REDTLS_E_CONNECT_TIMEOUT,
                                    "resolving '%s' did not finish within the connect timeout (the DNS server is "
                                    "slow or unreachable; see /etc/resolv.conf)",
                                    d->host);
            }
            *wait_fd = redtls__resolve_fd(d->job);
            *want = POLLIN;
            *wake_at = d->deadline;
            return REDTLS_OK;
        }
        redtls__resolve_free(d->job);
        d->job = NULL;
        d->list = d->next = res;
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
            d->total++;
    }
    for (;;) {
        if (d->fd >= 0) {
            int e = connect_check(d->fd);
            if (e == 0) {
                tune_tcp(d->fd, d->user_timeout_ms);
                *fd_out = d->fd;
                d->fd = -1;
                redtls__dial_cancel(d);
                return REDTLS_OK;
            }
            if (e == EINPROGRESS) {
                if (now < d->addr_deadline) {
                    *wait_fd = d->fd;
                    *want = POLLOUT;
                    *wake_at = d->addr_deadline;
                    return REDTLS_OK;
                }
                e = ETIMEDOUT;
            }
            close(d->fd);
            d->fd = -1;
            if (e == ETIMEDOUT)
                d->any_timeout = 1;
            d->last_errno = e;
        }
        if (!d->next)
            return dial_failed(d, err);
        if (d->deadline != REDTLS__NO_DEADLINE && now >= d->deadline) {
            d->any_timeout = 1;
            return dial_failed(d, err);
        }
        struct addrinfo *ai = d->next;
        d->next = ai->ai_next;
        /* Share the remaining time between the addresses still to try, so
         * one black-holed address cannot eat the whole connect timeout. */
        size_t left = d->total - d->index++;
        d->addr_deadline = d->deadline;
        if (d->deadline != REDTLS__NO_DEADLINE && left > 1)
            d->addr_deadline = now + (d->deadline - now) / (int64_t)left;
        describe_addr(ai->ai_addr, ai->ai_addrlen, d->last_addr, sizeof d->last_addr);
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            d->last_errno = errno;
            continue;
        }
        int e = connect_start(fd, ai->ai_addr, ai->ai_addrlen);
        if (e != 0) {
            close(fd);
            d->last_errno = e;
            continue;
        }
        d->fd = fd;
    }
}

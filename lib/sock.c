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

#include "transport.h"

int redtls__wait_fd(int fd, short events, int64_t deadline)
{
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

/* Starts a non-blocking connect and waits for it: 0 connected, else errno
 * (ETIMEDOUT when the deadline passed). */
static int connect_one(int fd, const struct sockaddr *sa, socklen_t salen, int64_t deadline)
{
    if (connect(fd, sa, salen) == 0)
        return 0;
    if (errno != EINPROGRESS && errno != EINTR)
        return errno;
    int rc = redtls__wait_fd(fd, POLLOUT, deadline);
    if (rc == 0)
        return ETIMEDOUT;
    if (rc < 0)
        return errno;
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        return errno;
    return soerr;
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

redtls_status redtls__tcp_connect(const char *host, uint16_t port, int64_t deadline, unsigned user_timeout_ms,
                                  int *fd_out, char *err)
{
    struct addrinfo hints, *res = NULL;
    char portstr[8];
    *fd_out = -1;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    /* getaddrinfo() cannot be bounded by the deadline; it follows the
     * resolver's own timeouts (resolv.conf). */
    int grc = getaddrinfo(host, portstr, &hints, &res);
    if (grc != 0) {
        if (grc == EAI_MEMORY)
            return redtls__fail(err, REDTLS_E_NOMEM, "out of memory resolving '%s'", host);
        return redtls__fail(err, REDTLS_E_RESOLVE, "cannot resolve '%s': %s", host, gai_strerror(grc));
    }

    size_t total = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        total++;

    int last_errno = 0, any_timeout = 0;
    char last_addr[NI_MAXHOST + 16] = "";
    size_t index = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next, index++) {
        if (deadline != REDTLS__NO_DEADLINE && redtls__now_ms() >= deadline) {
            any_timeout = 1;
            break;
        }
        /* Share the remaining time between the addresses still to try, so
         * one black-holed address cannot eat the whole connect timeout. */
        int64_t attempt_deadline = deadline;
        size_t left = total - index;
        if (deadline != REDTLS__NO_DEADLINE && left > 1)
            attempt_deadline = redtls__now_ms() + (deadline - redtls__now_ms()) / (int64_t)left;

        describe_addr(ai->ai_addr, ai->ai_addrlen, last_addr, sizeof last_addr);
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        int e = connect_one(fd, ai->ai_addr, ai->ai_addrlen, attempt_deadline);
        if (e == 0) {
            tune_tcp(fd, user_timeout_ms);
            freeaddrinfo(res);
            *fd_out = fd;
            return REDTLS_OK;
        }
        close(fd);
        if (e == ETIMEDOUT)
            any_timeout = 1;
        last_errno = e;
    }
    freeaddrinfo(res);
    if (any_timeout && (last_errno == ETIMEDOUT || last_errno == 0))
        return redtls__fail(err, REDTLS_E_CONNECT_TIMEOUT, "connect to %s port %u timed out%s%s%s", host,
                            (unsigned)port, last_addr[0] ? " (last tried " : "", last_addr, last_addr[0] ? ")" : "");
    if (last_errno == 0)
        return redtls__fail(err, REDTLS_E_CONNECT, "connect to %s port %u failed: '%s' resolved to no address to try",
                            host, (unsigned)port, host);
    return redtls__fail(err, REDTLS_E_CONNECT, "connect to %s port %u failed: %s (last tried %s)", host,
                        (unsigned)port, strerror(last_errno), last_addr);
}

redtls_status redtls__unix_connect(const char *path, int64_t deadline, int *fd_out, char *err)
{
    struct sockaddr_un sa;
    *fd_out = -1;
    if (strlen(path) >= sizeof sa.sun_path)
        return redtls__fail(err, REDTLS_E_CONFIG, "unix socket path too long (%zu bytes, limit %zu)", strlen(path),
                            sizeof sa.sun_path - 1);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return redtls__fail(err, REDTLS_E_CONNECT, "socket(): %s", strerror(errno));
    int e = connect_one(fd, (const struct sockaddr *)&sa, sizeof sa, deadline);
    if (e != 0) {
        close(fd);
        if (e == ETIMEDOUT)
            return redtls__fail(err, REDTLS_E_CONNECT_TIMEOUT, "connect to unix socket %s timed out", path);
        return redtls__fail(err, REDTLS_E_CONNECT, "connect to unix socket %s failed: %s", path, strerror(e));
    }
    *fd_out = fd;
    return REDTLS_OK;
}

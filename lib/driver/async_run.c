/* The asynchronous API's built-in loop: poll(2) over the handles given. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>

#include "async_internal.h"
#include "wait.h"

redtls_status redtls_async_run(redtls_async **handles, size_t n, int timeout_ms)
{
    if ((!handles && n) || n > 4096)
        return REDTLS_E_INVALID;
    int64_t end = timeout_ms < 0 ? REDTLS__NO_DEADLINE : redtls__now_ms() + timeout_ms;
    /* Up to 64 handles on the stack; more on the heap, and when that fails,
     * 64 at a time with short waits, so no handle is starved. */
    struct pollfd small[64];
    struct pollfd *pfd = n > 64 ? calloc(n, sizeof *pfd) : NULL;
    size_t cap = pfd ? n : 64;
    int rotate = n > cap;
    if (!pfd)
        pfd = small;
    size_t first = 0;
    redtls_status st = REDTLS_OK;
    for (;;) {
        int busy = 0;
        for (size_t i = 0; i < n; i++)
            if (handles[i]) {
                redtls_async *ac = handles[i];
                redtls_async_process(ac, 0);
                /* The handles of the array are not freed while this runs
                 * (async.h: its callbacks may close one, not free it). */
                busy |= redtls_async_pending(ac) > 0 || ac->connect_asked || ac->attempting ||
                        (ac->n_subs && !redtls__async_stuck(ac)); // NOLINT(clang-analyzer-unix.Malloc)
            }
        if (!busy)
            break;
        int64_t now = redtls__now_ms();
        if (now >= end) {
            st = REDTLS_E_COMMAND_TIMEOUT;
            break;
        }
        /* Every handle's socket and time: none is left out of the wait. */
        int64_t wake = rotate ? redtls__deadline_min(end, now + 10) : end;
        nfds_t np = 0;
        for (size_t k = 0; k < n && np < cap; k++) {
            redtls_async *ac = handles[(first + k) % n];
            if (!ac)
                continue;
            int ms = redtls_async_timeout_ms(ac);
            if (ms >= 0)
                wake = redtls__deadline_min(wake, now + ms);
            int fd = redtls_async_fd(ac), ev = redtls_async_events(ac);
            if (fd >= 0 && ev)
                pfd[np++] = (struct pollfd){fd, (short)((ev & REDTLS_ASYNC_READ ? POLLIN : 0) |
                                                        (ev & REDTLS_ASYNC_WRITE ? POLLOUT : 0)),
                                            0};
        }
        if (rotate)
            first = (first + cap) % n;
        if (poll(pfd, np, redtls__poll_timeout(wake)) < 0 && errno != EINTR) {
            st = REDTLS_E_IO;
            break;
        }
    }
    if (pfd != small)
        free(pfd);
    return st;
}

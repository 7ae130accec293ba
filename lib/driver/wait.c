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

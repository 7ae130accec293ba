#include <limits.h>
#include <time.h>

#include "common.h"

int64_t redtls__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t redtls__deadline_after(unsigned timeout_ms)
{
    if (timeout_ms == 0)
        return REDTLS__NO_DEADLINE;
    return redtls__now_ms() + (int64_t)timeout_ms;
}

int redtls__poll_timeout(int64_t deadline)
{
    if (deadline == REDTLS__NO_DEADLINE)
        return -1;
    int64_t left = deadline - redtls__now_ms();
    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

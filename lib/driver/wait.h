/* The blocking driver's waiting: poll() on one socket until a deadline,
 * and sleeping until a time. Only drivers include this; the core never
 * waits. */
#ifndef REDTLS_WAIT_H
#define REDTLS_WAIT_H

#include "common.h"

/* Waits until fd is ready for events (POLLIN/POLLOUT): 1 ready, 0 the
 * deadline passed, -1 poll error (errno set). fd -1 (the memory transport,
 * where nothing can arrive while we wait): 0 at once. */
int redtls__wait_fd(int fd, short events, int64_t deadline);
/* Waits until when (a signal does not cut the wait short). */
void redtls__sleep_until(int64_t when);

#endif

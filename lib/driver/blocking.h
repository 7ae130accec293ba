/* The blocking driver's internal interface: the session's state machines
 * run to completion with poll() in between, for the blocking API
 * (blocking.c), the cluster engine and the tests. The connection is seen
 * through conn_view.h only. */
#ifndef REDTLS_BLOCKING_H
#define REDTLS_BLOCKING_H

#include "conn_view.h"
#include "wait.h"

/* For redtls__conn_read: the command timeout, counted from the moment a
 * wait first becomes necessary. */
#define REDTLS__DEADLINE_LAZY 0

/* Writes the output buffer by the deadline. wipe: clear it once written.
 * Failures drop the connection. */
redtls_status redtls__conn_flush(redtls_conn *c, int64_t deadline, int wipe);

/* Reads one reply (flushing first). Failures drop the connection. raw:
 * report transport failures as they are; otherwise a command whose reply
 * was lost after it was written is REDTLS_E_OUTCOME_UNKNOWN. */
redtls_status redtls__conn_read(redtls_conn *c, int64_t deadline, int raw, struct redisReply **reply);

/* Takes one reply if it can be had without waiting: already parsed, or
 * completed from what the socket holds now. The caller has written its
 * commands (redtls__conn_flush); nothing is written here. *reply stays
 * NULL when more bytes are needed. Reads stop when the socket has nothing
 * more, when *budget bytes have been read (budget NULL: no such bound; it
 * is decreased by what was read), or when deadline has passed with a reply
 * still incomplete after a read. Failures as redtls__conn_read. */
redtls_status redtls__conn_read_now(redtls_conn *c, int64_t deadline, size_t *budget, struct redisReply **reply);

/* For the cluster layer: make sure the connection is usable (idle check,
 * pending re-AUTH) with at most one connect attempt and no waiting for the
 * backoff: REDTLS_E_UNAVAILABLE when the next attempt is not due yet, or
 * when the deadline had passed (then redtls__conn_no_time() says so, so the
 * caller can keep an earlier, more telling cause). */
redtls_status redtls__conn_ensure_once(redtls_conn *c, int64_t deadline);

#endif

/* The narrow view of a connection that the cluster engine has (with the
 * blocking driver's calls, blocking.h): whether it is up, what it owes,
 * its socket, its queue's length. The connection's fields stay private to
 * the session (conn.h). */
#ifndef REDTLS_CONN_VIEW_H
#define REDTLS_CONN_VIEW_H

#include <hiredis/hiredis.h>

#include "backoff.h"
#include "config.h"
#include "format.h"
#include "sock.h"

/* The size of one read. */
#define REDTLS__READ_CHUNK 16384
/* A deadline that has always passed: a read given it tries once. */
#define REDTLS__NO_WAIT ((int64_t)1)

int redtls__conn_up(const redtls_conn *c);
/* Replies owed to the caller (queued, in flight, lost). */
size_t redtls__conn_owed(const redtls_conn *c);
/* Bytes queued and not written yet. */
int redtls__conn_has_queued(const redtls_conn *c);
/* The socket to poll for replies, or -1. */
int redtls__conn_fd(const redtls_conn *c);
/* Not connected, and no attempt may be made at now (backoff, or given up). */
int redtls__conn_backing_off(const redtls_conn *c, int64_t now);
/* The last ensure_once made no attempt because its deadline had passed. */
int redtls__conn_no_time(const redtls_conn *c);
/* The status of the last failed attempt. */
redtls_status redtls__conn_last_status(const redtls_conn *c);
/* The token of the pair the server accepted last (0 or 1). */
int redtls__conn_preferred(const redtls_conn *c);
void redtls__conn_set_preferred(redtls_conn *c, int preferred);
/* The connection's message buffer (REDTLS__ERRMSG_MAX bytes). */
char *redtls__conn_msg(redtls_conn *c);
/* 1 when the handle has credentials to send. */
int redtls__conn_has_credentials(const redtls_conn *c);

/* The queue's length, to take back commands appended after it. */
typedef struct redtls__conn_mark {
    size_t olen, pending, unsent;
} redtls__conn_mark;
redtls__conn_mark redtls__conn_mark_queue(const redtls_conn *c);
void redtls__conn_rewind_queue(redtls_conn *c, redtls__conn_mark m);

/* Queues one already framed command. */
redtls_status redtls__conn_append_raw(redtls_conn *c, const char *bytes, size_t len);
/* Drops the connection (st: why, for the event) and forgets every reply
 * owed on it: the caller has told each command's owner already. */
void redtls__conn_abandon(redtls_conn *c, redtls_status st);

#endif

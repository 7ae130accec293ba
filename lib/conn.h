/* The connection object, shared by conn.c (commands, pipelines) and
 * handshake.c (AUTH, SELECT, SETNAME). Also the library-internal interface
 * that tests and, later, the cluster layer build on. */
#ifndef REDTLS_CONN_H
#define REDTLS_CONN_H

#include "backoff.h"
#include "config.h"
#include "format.h"

#define REDTLS__READ_CHUNK 16384
/* need_reauth: the IAM schedule (not a NOAUTH reply) asks for a new AUTH. */
#define REDTLS__REAUTH_IAM_DUE 2

struct redtls_conn {
    redtls_config cfg;       /* private copy */
    redtls__tls_ctx *tls;    /* NULL without TLS */
    redtls__transport *tp;   /* NULL when not connected */
    int is_tls;
    redtls__reader rd;
    char *obuf;              /* formatted commands not yet written */
    size_t olen, ocap;
    /* Replies owed to the caller: lost + in flight + unsent. */
    size_t pending;
    size_t unsent;           /* commands in obuf, not written yet */
    size_t lost;             /* written on a connection that broke */
    int preferred;           /* token tried first: 0 = token, 1 = token_alt */
    int need_reauth;         /* a reply said NOAUTH, or REDTLS__REAUTH_IAM_DUE */
    /* Reconnection. */
    redtls__backoff backoff;
    unsigned attempts;       /* failed attempts in the current outage */
    int64_t outage_start;    /* when the first of them failed; 0: none */
    int64_t next_attempt;    /* no attempt before this time */
    int gave_up;             /* reconnect limits exhausted */
    int established;         /* connected and announced (events) */
    int64_t last_io;         /* last successful read (health check) */
    int64_t quiet_at;        /* when it last had nothing owed (buffers) */
    redtls__iam_state iam;   /* IAM: the token in use, when it was made and accepted */
    redtls__tls_session session; /* for resumption on reconnect */
    redtls_status last_status; /* of the last failed attempt */
    int no_time;             /* the last ensure_once made no attempt: the
                              * deadline had passed */
    char last_cause[REDTLS__ERRMSG_MAX];
    char errmsg[REDTLS__ERRMSG_MAX];
    char info[5][384];       /* backing store for the borrowed TLS details */
    /* Read buffer (REDTLS__READ_CHUNK), made by the first read and, on
     * TLS connections, given back with the record buffers when the
     * connection goes quiet (see went_quiet in conn.c). */
    char *rbuf;
};

/* Installs an already connected transport (TCP, TLS or the memory
 * transport in tests) with a fresh reader; the conn owns it from now. */
redtls_status redtls__conn_attach(redtls_conn *c, redtls__transport *tp, int is_tls);

/* Drops the transport without ceremony (the stream can no longer be
 * trusted), forgets pending replies, and returns st. */
redtls_status redtls__conn_drop(redtls_conn *c, redtls_status st);

/* Appends one formatted command to obuf (a secret in it is wiped by the
 * flush that writes it, see redtls__conn_flush). A HELLO asking for RESP3
 * is refused (REDTLS_E_INVALID). */
redtls_status redtls__conn_append(redtls_conn *c, int argc, const char **argv, const size_t *argvlen);
/* Writes the output buffer. wipe: clear it after the write. */
redtls_status redtls__conn_flush(redtls_conn *c, int64_t deadline, int wipe);
/* For redtls__conn_read: the command timeout, counted from the moment a
 * wait first becomes necessary. */
#define REDTLS__DEADLINE_LAZY 0

/* Reads one reply (flushing first). Failures drop the connection. raw:
 * report transport failures as they are (handshake); otherwise a command
 * whose reply was lost after it was written is REDTLS_E_OUTCOME_UNKNOWN. */
redtls_status redtls__conn_read(redtls_conn *c, int64_t deadline, int raw, struct redisReply **reply);

/* Takes one reply if it can be had without waiting: already parsed, or
 * completed from what the socket holds now. The caller has written its
 * commands (redtls__conn_flush); nothing is written here, so nothing can
 * wait on a full socket. *reply stays NULL when more bytes are needed. Reads stop when
 * the socket has nothing more, when *budget bytes have been read (budget
 * NULL: no such bound; it is decreased by what was read), or when
 * deadline has passed with a reply still incomplete after a read. Failures as redtls__conn_read. */
redtls_status redtls__conn_read_now(redtls_conn *c, int64_t deadline, size_t *budget, struct redisReply **reply);

/* Drops the connection (st: why, for the event) and forgets every reply
 * owed on it: the caller has told each command's owner already. */
void redtls__conn_abandon(redtls_conn *c, redtls_status st);

/* One request and its reply within deadline; secret: wipe what held the
 * command. Transport failures drop the connection. */
redtls_status redtls__conn_roundtrip(redtls_conn *c, int argc, const char **argv, int secret, int64_t deadline,
                                     struct redisReply **reply);

/* AUTH / SELECT / CLIENT SETNAME on a freshly attached transport. */
redtls_status redtls__conn_setup(redtls_conn *c, int64_t deadline);

/* AUTH with the rotation rules (auth.c). REDTLS_OK also when no
 * credentials are configured. A refusal leaves the connection open. */
redtls_status redtls__authenticate(redtls_conn *c, int64_t deadline);
/* 1 when the handle has credentials to send. */
int redtls__has_credentials(const redtls_conn *c);

/* For the cluster layer. ensure_once: make sure the connection is usable
 * (idle check, pending re-AUTH) with at most one connect attempt and no
 * waiting for the backoff: REDTLS_E_UNAVAILABLE when the next attempt is
 * not due yet, or when the deadline had passed (then c->no_time is set, so
 * the caller can keep an earlier, more telling cause). append_raw: queue one already framed command. */
redtls_status redtls__conn_ensure_once(redtls_conn *c, int64_t deadline);
redtls_status redtls__conn_append_raw(redtls_conn *c, const char *bytes, size_t len);

/* Reports an event to the configured callback, if any. */
void redtls__emit(redtls_conn *c, redtls_event_type type, const char *fmt, ...) REDTLS_PRINTF(3, 4);

#endif

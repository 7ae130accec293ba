/* Protocol layer: hiredis's RESP reader fed by redtls, with reply-object
 * callbacks that enforce redtls's limits. */
#ifndef REDTLS_READER_H
#define REDTLS_READER_H

#include <hiredis/read.h>

#include "common.h"

struct redisReply;

typedef struct redtls__limits {
    size_t max_elements;
    size_t max_bulk;
    size_t max_buffer;
} redtls__limits;

/* Offered every complete reply that answers no command: each RESP3 push
 * (and attribute), and, while claim_arrays is set, each RESP2 array (a
 * subscribed connection's messages). Returns 1 when it took the reply
 * (it owns it now), 2 when the reply answers a command after all (a
 * subscription's confirmation, which comes as a push under RESP3), 0 to
 * leave it: a push or attribute left is freed, an array left is the next
 * command's reply. */
typedef int (*redtls__reader_claim_fn)(void *ud, struct redisReply *r);

typedef struct redtls__reader {
    void *r;                       /* redisReader */
    redtls__reader_claim_fn claim; /* NULL: pushes and attributes are freed */
    void *claim_ud;
    int claim_arrays;
    redtls__limits limits;
    /* Set by the callbacks when a limit refused an object: hiredis itself
     * only sees an allocation failure. */
    redtls_status refused;
    char refused_msg[160];
    size_t held; /* bytes of objects in the reply being built */
    int slow_only; /* tests: every reply through hiredis's parser */
    int attr;      /* the top-level reply being parsed is an attribute */
} redtls__reader;

redtls_status redtls__reader_init(redtls__reader *rd, const redtls__limits *limits);
void redtls__reader_free(redtls__reader *rd);

/* 1 when no unparsed byte is held (no reply can be taken without more). */
static inline int redtls__reader_idle(const redtls__reader *rd)
{
    const redisReader *r = rd->r;
    return !r || r->pos >= r->len;
}

/* Hands len bytes to the parser. REDTLS_E_LIMIT when they would push the
 * unparsed data past max_buffer. */
redtls_status redtls__reader_feed(redtls__reader *rd, const char *buf, size_t len, char *err);

/* Takes the next complete reply: *reply is NULL when more bytes are
 * needed. A complete bulk string, nil, integer, status or error at the top
 * level is taken without hiredis's general parser (its task stack costs
 * more than the reply); everything else, and anything unusual about those
 * (signs, long numbers, stray CR or LF, a short buffer), goes through
 * hiredis, so both give the same replies and errors for every input
 * (tests/fuzz/fuzz_reply.c compares them). Replies that answer no command
 * (RESP3 pushes and top-level attributes, which hiredis 1.x parses; RESP2
 * arrays while claim_arrays is set) are offered to claim and never
 * returned here unless claim leaves an array or says it answers a command. A top-level attribute
 * ('|', which hiredis 1.2 does not know) is parsed as a map and comes out
 * with type 11 (REDTLS_REPLY_ATTR), right before the reply it describes;
 * one nested inside an aggregate is a protocol error. REDTLS_E_PROTOCOL /
 * REDTLS_E_LIMIT / REDTLS_E_NOMEM are final: the stream cannot be
 * resynchronised and the connection must be closed. */
redtls_status redtls__reader_get(redtls__reader *rd, struct redisReply **reply, char *err);

/* A Pub/Sub message taken straight from the reader's buffer, without a
 * reply object: the parts point into that buffer, valid until the reader
 * is next fed, asked for a reply or freed. */
typedef struct redtls__msg_view {
    int kind;            /* 1 message, 2 pmessage, 3 smessage (redtls_sub_kind) */
    const char *pattern; /* pmessage: the pattern, else NULL */
    size_t pattern_len;
    const char *channel;
    size_t channel_len;
    const char *payload;
    size_t payload_len;
} redtls__msg_view;

/* 1 and *v when the next reply in the buffer is a whole Pub/Sub message
 * frame of plain bulk strings within the bulk limit -- an array (only while
 * claim_arrays is set) or, with hiredis 1.x, a RESP3 push -- which it then
 * consumes; 0 (nothing consumed) for anything else, which
 * redtls__reader_get then parses as usual (and judges: a frame over a
 * limit is never taken here). */
int redtls__reader_take_message(redtls__reader *rd, redtls__msg_view *v);

#endif

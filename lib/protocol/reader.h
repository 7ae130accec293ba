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

/* Offered every complete reply that answers no command: each RESP3 push,
 * and, while claim_arrays is set, each RESP2 array (a subscribed
 * connection's messages). Returns 1 when it took the reply (it owns it
 * now), 2 when the reply answers a command after all (a subscription's
 * confirmation), 0 to leave it: a push left is freed, an array left is
 * the next command's reply. */
typedef int (*redtls__reader_claim_fn)(void *ud, struct redisReply *r);

typedef struct redtls__reader {
    void *r; /* redisReader */
    redtls__limits limits;
    /* Set by the callbacks when a limit refused an object: hiredis itself
     * only sees an allocation failure. */
    redtls_status refused;
    char refused_msg[160];
    size_t held; /* bytes of objects in the reply being built */
    int slow_only; /* tests: every reply through hiredis's parser */
    redtls__reader_claim_fn claim;
    void *claim_ud;
    int claim_arrays;
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
 * (tests/fuzz/fuzz_reply.c compares them). RESP3 pushes (hiredis 1.x
 * parses them), and arrays while claim_arrays is set, are offered to
 * claim first (see redtls__reader_claim_fn). REDTLS_E_PROTOCOL / REDTLS_E_LIMIT / REDTLS_E_NOMEM are final:
 * the stream cannot be resynchronised and the connection must be closed. */
redtls_status redtls__reader_get(redtls__reader *rd, struct redisReply **reply, char *err);

#endif

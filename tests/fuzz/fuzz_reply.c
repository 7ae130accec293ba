/* libFuzzer target: hostile reply bytes through the limited RESP reader and
 * through a connection on the memory transport.
 *
 * Input layout: byte 0 drives the run (bit 7: tight limits; all bits seed
 * the chunk sizes of the random-split feeds), the rest is what the server
 * "sends". The same bytes are parsed four ways: in one feed, one byte per
 * feed, in random chunks, and as the replies to four pipelined commands on
 * a connection; the one-feed and random-chunk runs again with hiredis's
 * parser alone, which must give exactly the same (the reader's fast path
 * for plain replies changes nothing but the cost). Every reply is checked against the limits, serialised and
 * freed; the four runs must agree on every reply they returned. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "conn.h"

#define CHECK(cond)                                                                                              \
    do {                                                                                                         \
        if (!(cond)) {                                                                                           \
            fprintf(stderr, "fuzz_reply: invariant failed at line %d: %s\n", __LINE__, #cond);                   \
            abort();                                                                                             \
        }                                                                                                        \
    } while (0)

#define PIPELINE 4

static const redtls__limits normal_limits = {1000, 4096, 65536};
static const redtls__limits tight_limits = {8, 64, 256};

typedef struct result {
    char *ser; /* the replies, re-encoded as RESP */
    size_t len, cap;
    size_t count;
    redtls_status st; /* REDTLS_OK: the bytes ran out without an error */
    char err[REDTLS__ERRMSG_MAX]; /* its message */
} result;

static void put(result *res, const char *data, size_t n)
{
    if (res->len + n > res->cap) {
        size_t cap = res->cap ? res->cap : 256;
        while (cap < res->len + n)
            cap *= 2;
        res->ser = realloc(res->ser, cap);
        CHECK(res->ser != NULL);
        res->cap = cap;
    }
    memcpy(res->ser + res->len, data, n);
    res->len += n;
}

/* A RESP header or integer: the type byte, the number, CRLF. */
static void put_num(result *res, char type, long long v)
{
    char tmp[64];
    int n = snprintf(tmp, sizeof tmp, "%c%lld\r\n", type, v);
    put(res, tmp, (size_t)n);
}

/* Checks one reply against the limits and appends its RESP encoding. */
static void walk(result *res, const redisReply *r, const redtls__limits *lim, unsigned depth)
{
    CHECK(r != NULL);
    CHECK(depth <= REDTLS_MAX_REPLY_DEPTH);
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        CHECK(r->str != NULL);
        CHECK(r->len <= lim->max_bulk);
        CHECK(r->str[r->len] == '\0');
        if (r->type == REDIS_REPLY_STRING) {
            put_num(res, '$', (long long)r->len);
        } else {
            put(res, r->type == REDIS_REPLY_STATUS ? "+" : "-", 1);
        }
        put(res, r->str, r->len);
        put(res, "\r\n", 2);
        break;
    case REDIS_REPLY_INTEGER:
        put_num(res, ':', r->integer);
        break;
    case REDIS_REPLY_NIL:
        put(res, "$-1\r\n", 5);
        break;
    case REDIS_REPLY_ARRAY:
        CHECK(depth < REDTLS_MAX_REPLY_DEPTH);
        CHECK(r->elements <= lim->max_elements);
        CHECK(r->elements == 0 || r->element != NULL);
        put_num(res, '*', (long long)r->elements);
        for (size_t i = 0; i < r->elements; i++)
            walk(res, r->element[i], lim, depth + 1);
        break;
#if defined(HIREDIS_MAJOR) && HIREDIS_MAJOR >= 1
    /* hiredis 1.x parses RESP3 types even on a RESP2 connection; they are
     * written back in RESP3, so the read-back check below holds for them. */
    case REDIS_REPLY_DOUBLE:
    case REDIS_REPLY_BIGNUM:
        CHECK(r->str != NULL);
        CHECK(r->len <= lim->max_bulk);
        put(res, r->type == REDIS_REPLY_DOUBLE ? "," : "(", 1);
        put(res, r->str, r->len);
        put(res, "\r\n", 2);
        break;
    case REDIS_REPLY_VERB:
        CHECK(r->str != NULL);
        CHECK(r->len <= lim->max_bulk);
        put_num(res, '=', (long long)r->len + 4);
        put(res, r->vtype, 3);
        put(res, ":", 1);
        put(res, r->str, r->len);
        put(res, "\r\n", 2);
        break;
    case REDIS_REPLY_BOOL:
        put(res, r->integer ? "#t\r\n" : "#f\r\n", 4);
        break;
    case REDIS_REPLY_MAP:
    case REDIS_REPLY_SET:
    case REDIS_REPLY_PUSH:
        CHECK(depth < REDTLS_MAX_REPLY_DEPTH);
        CHECK(r->elements <= lim->max_elements);
        CHECK(r->elements == 0 || r->element != NULL);
        CHECK(r->type != REDIS_REPLY_MAP || r->elements % 2 == 0);
        put_num(res, r->type == REDIS_REPLY_MAP ? '%' : r->type == REDIS_REPLY_SET ? '~' : '>',
                (long long)(r->type == REDIS_REPLY_MAP ? r->elements / 2 : r->elements));
        for (size_t i = 0; i < r->elements; i++)
            walk(res, r->element[i], lim, depth + 1);
        break;
#endif
    default:
        CHECK(!"unknown reply type");
    }
}

/* Deterministic chunk sizes for the random-split feed. */
typedef struct chunker {
    int mode; /* 0 whole, 1 byte by byte, 2 random */
    uint32_t state;
} chunker;

static size_t next_chunk(chunker *ch, size_t left)
{
    size_t n;
    if (ch->mode == 0)
        return left;
    if (ch->mode == 1)
        return 1;
    ch->state ^= ch->state << 13;
    ch->state ^= ch->state >> 17;
    ch->state ^= ch->state << 5;
    n = (ch->state & 0x30) ? 1 + (ch->state >> 8) % 16 : 1 + (ch->state >> 8) % 512;
    return n < left ? n : left;
}

static int failure_is_final(redtls_status st)
{
    return st == REDTLS_E_PROTOCOL || st == REDTLS_E_LIMIT;
}

/* slow_only: every reply through hiredis's parser, none through the fast
 * path for plain top-level replies. */
static void run_reader_ex(const uint8_t *data, size_t size, chunker ch, const redtls__limits *lim, int slow_only,
                          result *res)
{
    redtls__reader rd;
    char *err = res->err;
    size_t off = 0;
    memset(res, 0, sizeof *res);
    CHECK(redtls__reader_init(&rd, lim) == REDTLS_OK);
    rd.slow_only = slow_only;
    while (off < size && res->st == REDTLS_OK) {
        size_t n = next_chunk(&ch, size - off);
        err[0] = '\0';
        res->st = redtls__reader_feed(&rd, (const char *)data + off, n, err);
        off += n;
        while (res->st == REDTLS_OK) {
            redisReply *r = NULL;
            res->st = redtls__reader_get(&rd, &r, err);
            if (res->st != REDTLS_OK) {
                CHECK(r == NULL);
                break;
            }
            if (r == NULL)
                break;
            walk(res, r, lim, 0);
            res->count++;
            freeReplyObject(r);
        }
        if (res->st != REDTLS_OK) {
            CHECK(failure_is_final(res->st));
            CHECK(err[0] != '\0');
        }
    }
    redtls__reader_free(&rd);
}

static void run_reader(const uint8_t *data, size_t size, chunker ch, const redtls__limits *lim, result *res)
{
    run_reader_ex(data, size, ch, lim, 0, res);
}

/* The fast path and hiredis alone: the same replies, the same end, the same
 * message, whatever the bytes and however they arrive. */
static void check_same(const result *a, const result *b)
{
    CHECK(a->st == b->st);
    CHECK(a->count == b->count);
    CHECK(a->len == b->len);
    CHECK(a->len == 0 || memcmp(a->ser, b->ser, a->len) == 0);
    CHECK(strcmp(a->err, b->err) == 0);
}

/* a's replies are a prefix of b's (or the other way round). */
static void check_agree(const result *a, const result *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    CHECK(n == 0 || memcmp(a->ser, b->ser, n) == 0);
    /* Runs that ended without an error saw every reply there is. */
    if (a->st == REDTLS_OK && b->st == REDTLS_OK) {
        CHECK(a->count == b->count);
        CHECK(a->len == b->len);
    }
    if (a->st == REDTLS_OK)
        CHECK(a->count >= b->count);
    if (b->st == REDTLS_OK)
        CHECK(b->count >= a->count);
}

static redtls_config *configs[2];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (int i = 0; i < 2; i++) {
        const redtls__limits *lim = i ? &tight_limits : &normal_limits;
        CHECK(redtls_config_new(&configs[i]) == REDTLS_OK);
        CHECK(redtls_config_set_tls(configs[i], 0) == REDTLS_OK);
        CHECK(redtls_config_set_reconnect(configs[i], 0) == REDTLS_OK);
        CHECK(redtls_config_set_max_array_elements(configs[i], lim->max_elements) == REDTLS_OK);
        CHECK(redtls_config_set_max_bulk_len(configs[i], lim->max_bulk) == REDTLS_OK);
        CHECK(redtls_config_set_max_buffer(configs[i], lim->max_buffer) == REDTLS_OK);
    }
    return 0;
}

/* The bytes as the replies to PIPELINE commands; the scripted server then
 * closes the connection without a goodbye. */
static void run_conn(const uint8_t *data, size_t size, chunker ch, int tight, result *res)
{
    const redtls__limits *lim = tight ? &tight_limits : &normal_limits;
    redtls_conn *conn = NULL;
    redtls__transport *tp = NULL;
    size_t off = 0;
    memset(res, 0, sizeof *res);
    CHECK(redtls_conn_new(configs[tight], &conn) == REDTLS_OK);
    CHECK(redtls__mem_transport(&tp, REDTLS_E_EOF) == REDTLS_OK);
    while (off < size) {
        size_t n = next_chunk(&ch, size - off);
        CHECK(redtls__mem_push(tp, (const char *)data + off, n) == REDTLS_OK);
        off += n;
    }
    CHECK(redtls__conn_attach(conn, tp, 0) == REDTLS_OK);
    for (int i = 0; i < PIPELINE; i++)
        CHECK(redtls_conn_append(conn, "GET key:%d", i) == REDTLS_OK);
    CHECK(redtls_conn_pending(conn) == PIPELINE);
    for (int i = 0; i < PIPELINE; i++) {
        redisReply *r = NULL;
        redtls_status st = redtls_conn_get_reply(conn, &r);
        if (st == REDTLS_OK) {
            /* Replies only come before the first failure. */
            CHECK(res->st == REDTLS_OK);
            walk(res, r, lim, 0);
            res->count++;
            freeReplyObject(r);
            continue;
        }
        CHECK(r == NULL);
        CHECK(redtls_conn_errmsg(conn)[0] != '\0');
        CHECK(!redtls_conn_is_connected(conn));
        if (res->st == REDTLS_OK) {
            /* Running out of bytes is a lost reply, not a clean end. */
            CHECK(failure_is_final(st) || st == REDTLS_E_OUTCOME_UNKNOWN);
            res->st = st;
        } else {
            /* Every later command shares the broken connection's fate. */
            CHECK(st == REDTLS_E_OUTCOME_UNKNOWN);
        }
    }
    CHECK(redtls_conn_pending(conn) == 0);
    redisReply *r = NULL;
    CHECK(redtls_conn_get_reply(conn, &r) == REDTLS_E_STATE && r == NULL);
    redtls_conn_free(conn);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int tight = (data[0] & 0x80) != 0;
    const redtls__limits *lim = tight ? &tight_limits : &normal_limits;
    uint32_t seed = 0x9e3779b9u ^ ((uint32_t)data[0] * 2654435761u) ^ (uint32_t)size;
    const uint8_t *payload = data + 1;
    size_t plen = size - 1;
    result whole, bytes, split, conn;

    run_reader(payload, plen, (chunker){0, 0}, lim, &whole);
    run_reader(payload, plen, (chunker){1, 0}, lim, &bytes);
    run_reader(payload, plen, (chunker){2, seed ? seed : 1}, lim, &split);
    run_conn(payload, plen, (chunker){2, seed ? seed : 1}, tight, &conn);

    result slow_whole, slow_split;
    run_reader_ex(payload, plen, (chunker){0, 0}, lim, 1, &slow_whole);
    run_reader_ex(payload, plen, (chunker){2, seed ? seed : 1}, lim, 1, &slow_split);
    check_same(&whole, &slow_whole);
    check_same(&split, &slow_split);
    free(slow_whole.ser);
    free(slow_split.ser);

    check_agree(&whole, &bytes);
    check_agree(&whole, &split);
    check_agree(&bytes, &split);
    /* The connection stops after PIPELINE replies; short of that it must
     * agree with the reader. */
    size_t n = conn.len < whole.len ? conn.len : whole.len;
    CHECK(n == 0 || memcmp(conn.ser, whole.ser, n) == 0);
    if (whole.st == REDTLS_OK) {
        size_t want = whole.count < PIPELINE ? whole.count : PIPELINE;
        CHECK(conn.count == want);
        CHECK(want == PIPELINE || conn.st == REDTLS_E_OUTCOME_UNKNOWN);
    }

    /* Whatever the reader accepted reads back the same. */
    if (whole.count > 0) {
        result again;
        run_reader((const uint8_t *)whole.ser, whole.len, (chunker){0, 0}, &normal_limits, &again);
        CHECK(again.st == REDTLS_OK || (again.st == REDTLS_E_LIMIT && whole.len > normal_limits.max_buffer));
        if (again.st == REDTLS_OK) {
            CHECK(again.count == whole.count);
            CHECK(again.len == whole.len && memcmp(again.ser, whole.ser, whole.len) == 0);
        }
        free(again.ser);
    }
    free(whole.ser);
    free(bytes.ser);
    free(split.ser);
    free(conn.ser);
    return 0;
}

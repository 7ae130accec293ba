#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "reader.h"

/* hiredis 1.x widened the element count and added RESP3 types; these keep
 * one set of callbacks compiling against 0.14 and 1.x. */
#if defined(HIREDIS_MAJOR) && HIREDIS_MAJOR >= 1
#define REDTLS_HIREDIS_1 1
typedef size_t redtls__count_t;
#else
#define REDTLS_HIREDIS_1 0
typedef int redtls__count_t;
#endif

static redtls__reader *owner(const redisReadTask *task)
{
    return (redtls__reader *)task->privdata;
}

/* Records which limit refused an object (the first one wins) and makes
 * hiredis stop. */
static void *refuse(const redisReadTask *task, const char *what, unsigned long long value, unsigned long long limit)
{
    redtls__reader *rd = owner(task);
    if (rd && rd->refused == REDTLS_OK) {
        rd->refused = REDTLS_E_LIMIT;
        snprintf(rd->refused_msg, sizeof rd->refused_msg, "%s %llu exceeds the limit of %llu", what, value, limit);
    }
    return NULL;
}

/* Links a new object into its parent array. Arrays are not allocated at the
 * size the server announces: `elements` counts the children present so far
 * and the vector doubles as they arrive, so a 13-byte header cannot make us
 * allocate gigabytes. freeReplyObject() frees exactly `elements` children,
 * which keeps partly built replies safe to free. */
/* What one reply object costs beyond its string payload: the struct, its
 * slot in the parent's vector and the allocator's header. */
#define REDTLS__OBJECT_COST (sizeof(redisReply) + sizeof(redisReply *) + 16)

static void *attach(const redisReadTask *task, redisReply *r)
{
    /* Objects of an unfinished reply count against the buffer limit with
     * the unparsed input: four bytes of ":1\r\n" become some 80 bytes of
     * objects, so a long array would otherwise outgrow the limit many
     * times over. */
    redtls__reader *rd = owner(task);
    if (rd) {
        redisReader *rr = rd->r;
        size_t unparsed = rr->len - rr->pos;
        rd->held += REDTLS__OBJECT_COST;
        if (rd->held > rd->limits.max_buffer || unparsed > rd->limits.max_buffer - rd->held) {
            freeReplyObject(r);
            return refuse(task, "memory held by an unfinished reply (objects and unparsed input)",
                          (unsigned long long)rd->held + unparsed, (unsigned long long)rd->limits.max_buffer);
        }
    }
    if (task->parent) {
        redisReply *parent = task->parent->obj;
        size_t n = parent->elements;
        if (n == 0 || (n >= 4 && (n & (n - 1)) == 0)) {
            size_t cap = n == 0 ? 4 : n * 2;
            redisReply **v =
                realloc(parent->element, cap * sizeof *v); // NOLINT(bugprone-sizeof-expression): a vector of pointers
            if (!v) {
                freeReplyObject(r);
                return NULL;
            }
            parent->element = v;
        }
        parent->element[n] = r;
        parent->elements = n + 1;
    }
    return r;
}

/* malloc and a few stores rather than calloc: glibc's calloc skips the
 * per-thread cache, so in a pipeline every reply object took the slow path
 * while its free went to the cache. */
static redisReply *new_reply(int type)
{
    redisReply *r = malloc(sizeof *r);
    if (r) {
        memset(r, 0, sizeof *r);
        r->type = type;
    }
    return r;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    redtls__reader *rd = owner(task);
    if (rd && len > rd->limits.max_bulk)
        return refuse(task, "bulk string length", (unsigned long long)len, (unsigned long long)rd->limits.max_bulk);
    redisReply *r = new_reply(task->type);
    if (!r)
        return NULL;
    r->str = malloc(len + 1);
    if (!r->str) {
        free(r);
        return NULL;
    }
    memcpy(r->str, str, len);
    r->str[len] = '\0';
    r->len = len;
#if REDTLS_HIREDIS_1 && defined(REDIS_REPLY_VERB)
    if (task->type == REDIS_REPLY_VERB && len >= 4) {
        memcpy(r->vtype, str, 3);
        r->vtype[3] = '\0';
        memmove(r->str, r->str + 4, len - 4 + 1);
        r->len = len - 4;
    }
#endif
    return attach(task, r);
}

/* What a refused count was: hiredis hands a map's count doubled (keys
 * and values), and the limit applies to that. */
static const char *aggregate_count_name(int type)
{
    switch (type) {
    case REDTLS_REPLY_MAP: return "map element count (keys and values)";
    case REDTLS_REPLY_SET: return "set element count";
    case REDTLS_REPLY_PUSH: return "push element count";
    default: return "array element count";
    }
}

static void *create_array(const redisReadTask *task, redtls__count_t elements)
{
    redtls__reader *rd = owner(task);
    unsigned depth = 1;
    for (const redisReadTask *p = task->parent; p; p = p->parent)
        depth++;
    if (depth > REDTLS_MAX_REPLY_DEPTH)
        return refuse(task, "reply nesting depth", depth, REDTLS_MAX_REPLY_DEPTH);
    /* Negative values only appear if the parser truncated a huge count
     * (or doubled a huge map count past the range). */
    if ((long long)elements < 0 || (rd && (size_t)elements > rd->limits.max_elements))
        return refuse(task, aggregate_count_name(task->type), (unsigned long long)elements,
                      rd ? (unsigned long long)rd->limits.max_elements : 0ULL);
    redisReply *r = new_reply(task->type);
    if (!r)
        return NULL;
    return attach(task, r);
}

static void *create_integer(const redisReadTask *task, long long value)
{
    redisReply *r = new_reply(REDIS_REPLY_INTEGER);
    if (!r)
        return NULL;
    r->integer = value;
    return attach(task, r);
}

static void *create_nil(const redisReadTask *task)
{
    redisReply *r = new_reply(REDIS_REPLY_NIL);
    if (!r)
        return NULL;
    return attach(task, r);
}

#if REDTLS_HIREDIS_1
/* RESP3's line types (a server may also send them unasked under RESP2);
 * without these callbacks hiredis 1.x would hand back a non-pointer.
 * hiredis has checked the text already (a double is finite, "inf", "-inf"
 * or "nan"; a bool is t or f) and bounded the double's length. */
static void *create_double(const redisReadTask *task, double value, char *str, size_t len)
{
    redisReply *r = new_reply(REDIS_REPLY_DOUBLE);
    if (!r)
        return NULL;
    r->dval = value;
    r->str = malloc(len + 1);
    if (!r->str) {
        free(r);
        return NULL;
    }
    memcpy(r->str, str, len);
    r->str[len] = '\0';
    r->len = len;
    return attach(task, r);
}

static void *create_bool(const redisReadTask *task, int value)
{
    redisReply *r = new_reply(REDIS_REPLY_BOOL);
    if (!r)
        return NULL;
    r->integer = value != 0;
    return attach(task, r);
}
#endif

static redisReplyObjectFunctions limited_functions = {
    .createString = create_string,
    .createArray = create_array,
    .createInteger = create_integer,
#if REDTLS_HIREDIS_1
    .createDouble = create_double,
#endif
    .createNil = create_nil,
#if REDTLS_HIREDIS_1
    .createBool = create_bool,
#endif
    .freeObject = freeReplyObject,
};

redtls_status redtls__reader_init(redtls__reader *rd, const redtls__limits *limits)
{
    memset(rd, 0, sizeof *rd);
    rd->limits = *limits;
    redisReader *r = redisReaderCreateWithFunctions(&limited_functions);
    if (!r)
        return REDTLS_E_NOMEM;
    r->privdata = rd;
#if REDTLS_HIREDIS_1
    /* Our callbacks enforce the element limit; keep hiredis's own check out
     * of the way so the error says which limit was hit. */
    r->maxelements = 0;
#endif
    rd->r = r;
    return REDTLS_OK;
}

void redtls__reader_free(redtls__reader *rd)
{
    if (rd->r)
        redisReaderFree(rd->r);
    rd->r = NULL;
}

redtls_status redtls__reader_feed(redtls__reader *rd, const char *buf, size_t len, char *err)
{
    redisReader *r = rd->r;
    size_t unparsed = r->len - r->pos;
    if (len > rd->limits.max_buffer || unparsed > rd->limits.max_buffer - len)
        return redtls__fail(err, REDTLS_E_LIMIT, "unparsed reply data would exceed the buffer limit of %zu bytes",
                            rd->limits.max_buffer);
    if (redisReaderFeed(r, buf, len) != REDIS_OK)
        return redtls__fail(err, REDTLS_E_NOMEM, "out of memory buffering the reply");
    return REDTLS_OK;
}

/* Longest status, error or integer line accepted (Redis's own inline
 * limit); a header line (array count, bulk length) is at most a sign and
 * 19 digits. Checked while the line is still incomplete, so a server that
 * never ends a line is stopped early instead of being rescanned to the
 * buffer limit. */
#define REDTLS__MAX_LINE 65536
#define REDTLS__MAX_HEADER 32

/* Looks at what the parser is waiting for when a reply is incomplete: an
 * overlong line, or a bulk string whose announced length (already in the
 * buffer) is over the limit, is refused before its bytes pile up. The task
 * layout differs between hiredis versions. */
static redtls_status check_pending(redtls__reader *rd, char *err)
{
    redisReader *r = rd->r;
    if (r->ridx < 0)
        return REDTLS_OK;
#if REDTLS_HIREDIS_1
    int type = r->task[r->ridx]->type;
#else
    int type = r->rstack[r->ridx].type;
#endif
    const char *p = r->buf + r->pos, *end = r->buf + r->len;
    size_t pending = (size_t)(end - p);
    int is_line = type == REDIS_REPLY_STATUS || type == REDIS_REPLY_ERROR || type == REDIS_REPLY_INTEGER;
    int is_bulk = type == REDIS_REPLY_STRING;
    int is_aggregate = type == REDIS_REPLY_ARRAY;
#if REDTLS_HIREDIS_1
    /* hiredis 1.x parses the RESP3 types too (a server may send them
     * unasked): their lines and headers get the same early bounds. */
    is_line = is_line || type == REDIS_REPLY_DOUBLE || type == REDIS_REPLY_NIL || type == REDIS_REPLY_BOOL ||
              type == REDIS_REPLY_BIGNUM;
    is_bulk = is_bulk || type == REDIS_REPLY_VERB;
    is_aggregate = is_aggregate || type == REDIS_REPLY_MAP || type == REDIS_REPLY_SET || type == REDIS_REPLY_PUSH;
#endif
    if (is_line) {
        if (pending > REDTLS__MAX_LINE)
            return redtls__fail(err, REDTLS_E_LIMIT, "reply line longer than %d bytes", REDTLS__MAX_LINE);
        return REDTLS_OK;
    }
    if (!is_bulk && !is_aggregate)
        return REDTLS_OK;
    /* For a bulk string the length line stays in the buffer until the whole
     * body has arrived; for an array, the count line is what is missing. */
    const char *cr = memchr(p, '\r', pending < REDTLS__MAX_HEADER ? pending : REDTLS__MAX_HEADER);
    if (!cr && pending >= REDTLS__MAX_HEADER)
        return redtls__fail(err, REDTLS_E_PROTOCOL, "invalid reply from the server: %s length line too long",
                            is_bulk                     ? "bulk"
                            : type == REDIS_REPLY_ARRAY ? "array"
                                                        : "aggregate");
    if (!is_bulk)
        return REDTLS_OK;
    unsigned long long v = 0;
    int digits = 0;
    for (; p < end && *p >= '0' && *p <= '9' && digits < 20; p++, digits++)
        v = v * 10 + (unsigned long long)(*p - '0');
    /* Twenty digits overflow; hiredis calls a complete such line a bad
     * length, and so do we, however the bytes arrive. */
    if (digits >= 20)
        return redtls__fail(err, REDTLS_E_PROTOCOL, "invalid reply from the server: bulk length out of range");
    if (digits > 0 && v > rd->limits.max_bulk)
        return redtls__fail(err, REDTLS_E_LIMIT, "bulk string of %llu bytes exceeds the limit of %zu", v,
                            rd->limits.max_bulk);
    return REDTLS_OK;
}

/* Where hiredis stops being able to skip a consumed prefix cheaply: it
 * drops the consumed bytes once 1 KiB is behind its cursor, after a reply
 * it parsed itself. Past that mark the next reply is left to hiredis. */
#define REDTLS__FAST_POS_MAX 1024

/* Reads "<digits>\r\n" at p (before end): 1 to 18 digits, no leading
 * zero (hiredis 1.x refuses those, 0.14 takes them: either way hiredis
 * decides). *v and the end of the line, or NULL. */
static char *clean_number(char *p, const char *end, long long *v)
{
    long long n = 0;
    const char *start = p;
    while (p < end && *p >= '0' && *p <= '9' && p - start < 18)
        n = n * 10 + (*p++ - '0');
    if (p == start || (*start == '0' && p - start > 1) || end - p < 2 || p[0] != '\r' || p[1] != '\n')
        return NULL;
    *v = n;
    return p + 2;
}

/* The top-level reply at the cursor when it is complete and plain (see
 * reader.h), made by the same callbacks hiredis would call, with the cursor
 * where hiredis has it at that moment (the limits count unparsed bytes);
 * NULL leaves everything as it was for hiredis. */
static redisReply *take_simple(redtls__reader *rd)
{
    redisReader *r = rd->r;
    if (r->err || r->ridx != -1 || r->pos >= REDTLS__FAST_POS_MAX || r->len - r->pos < 4)
        return NULL;
    char *start = r->buf + r->pos, *p = start + 1;
    const char *end = r->buf + r->len;
    redisReadTask task = {.type = REDIS_REPLY_STRING, .idx = -1, .privdata = r->privdata};
    redisReply *obj = NULL;
    size_t was = r->pos, next;
    long long v;
    switch (*start) {
    case '$': {
        if (p[0] == '-' && p[1] == '1' && end - p >= 4 && p[2] == '\r' && p[3] == '\n') {
            r->pos = was + 1;
            obj = create_nil(&task);
            next = was + 5;
            break;
        }
        char *body = clean_number(p, end, &v);
        if (!body || (size_t)(end - body) < (size_t)v + 2 || body[v] != '\r' || body[v + 1] != '\n')
            return NULL;
        r->pos = was + 1;
        obj = create_string(&task, body, (size_t)v);
        next = (size_t)(body + v + 2 - r->buf);
        break;
    }
    case ':': {
        int neg = p < end && *p == '-';
        const char *after = clean_number(p + neg, end, &v);
        if (!after || (neg && v == 0))
            return NULL;
        next = r->pos = (size_t)(after - r->buf);
        obj = create_integer(&task, neg ? -v : v);
        break;
    }
    case '+':
    case '-': {
        /* The line ends at its first CR, which LF must follow; an LF
         * before it is hiredis's to judge. */
        const char *cr = memchr(p, '\r', (size_t)(end - p));
        if (!cr || end - cr < 2 || cr[1] != '\n' || memchr(p, '\n', (size_t)(cr - p)))
            return NULL;
        size_t n = (size_t)(cr - p);
        task.type = *start == '+' ? REDIS_REPLY_STATUS : REDIS_REPLY_ERROR;
        next = r->pos = (size_t)(p + n + 2 - r->buf);
        obj = create_string(&task, p, n);
        break;
    }
    default: return NULL;
    }
    /* A refusal or a failed allocation: hiredis makes the same call again
     * and ends the stream its own way. */
    r->pos = obj ? next : was;
    return obj;
}

/* ---- Pub/Sub messages without reply objects ---- */

/* No reply under way in hiredis (or only its root task, made by a call
 * that found no byte yet): the buffer's next byte starts a reply. */
static int at_reply_start(const redisReader *r)
{
    if (r->ridx == -1)
        return 1;
#if REDTLS_HIREDIS_1
    return r->ridx == 0 && r->task[0]->type < 0;
#else
    return r->ridx == 0 && r->rstack[0].type < 0;
#endif
}

/* "$<n>\r\n<n bytes>\r\n" at *p (before end), n within max: the bytes. */
static const char *plain_bulk(char **p, const char *end, size_t max, size_t *len)
{
    char *q = *p;
    long long n;
    if (q >= end || *q != '$')
        return NULL;
    char *body = clean_number(q + 1, end, &n);
    if (!body || (size_t)n > max || (size_t)(end - body) < (size_t)n + 2 || body[n] != '\r' || body[n + 1] != '\n')
        return NULL;
    *len = (size_t)n;
    *p = body + n + 2;
    return body;
}

int redtls__reader_take_message(redtls__reader *rd, redtls__msg_view *v)
{
    redisReader *r = rd->r;
    if (!r || r->err || !at_reply_start(r) || r->len - r->pos < 4)
        return 0;
    char *p = r->buf + r->pos;
    const char *end = r->buf + r->len;
#if REDTLS_HIREDIS_1
    int push = *p == '>';
#else
    int push = 0; /* hiredis 0.14 knows no push: its parser refuses it */
#endif
    if (!(push || (*p == '*' && rd->claim_arrays)) || (p[1] != '3' && p[1] != '4') || p[2] != '\r' || p[3] != '\n')
        return 0;
    int n = p[1] - '0';
    /* Within the limits the parser applies to the same frame: the element
     * count, and the objects it would hold with the unparsed bytes (at
     * most this much at any moment); nearer the limit, it judges. */
    if ((size_t)n > rd->limits.max_elements || (size_t)(n + 1) * REDTLS__OBJECT_COST > rd->limits.max_buffer ||
        r->len - r->pos > rd->limits.max_buffer - (size_t)(n + 1) * REDTLS__OBJECT_COST)
        return 0;
    p += 4;
    size_t wlen, max = rd->limits.max_bulk;
    const char *w = plain_bulk(&p, end, max, &wlen);
    if (!w)
        return 0;
    int kind;
    if (n == 3 && wlen == 7 && memcmp(w, "message", 7) == 0)
        kind = 1;
    else if (n == 3 && wlen == 8 && memcmp(w, "smessage", 8) == 0)
        kind = 3;
    else if (n == 4 && wlen == 8 && memcmp(w, "pmessage", 8) == 0)
        kind = 2;
    else
        return 0;
    memset(v, 0, sizeof *v);
    v->kind = kind;
    if (kind == 2 && !(v->pattern = plain_bulk(&p, end, max, &v->pattern_len)))
        return 0;
    if (!(v->channel = plain_bulk(&p, end, max, &v->channel_len)) ||
        !(v->payload = plain_bulk(&p, end, max, &v->payload_len)))
        return 0;
    r->pos = (size_t)(p - r->buf);
    if (r->pos == r->len && r->pos >= REDTLS__FAST_POS_MAX) {
        /* All of it taken: hiredis drops what was read (it keeps the
         * buffer's memory otherwise), finding no reply to start. */
        void *obj = NULL;
        (void)redisReaderGetReply(r, &obj);
    }
    return 1;
}

/* 1 when r answers no command (see reader.h): offered to claim. */
static int unasked(const redtls__reader *rd, const redisReply *r)
{
    return r->type == REDTLS_REPLY_PUSH || r->type == REDTLS_REPLY_ATTR ||
           (rd->claim_arrays && r->type == REDIS_REPLY_ARRAY);
}

/* 1 when r is gone (claimed, or a push or attribute nobody took, freed);
 * 0 when it is the next command's reply (an array left, or anything the
 * hook says answers a command). */
static int offer(redtls__reader *rd, redisReply *r)
{
    int took = rd->claim ? rd->claim(rd->claim_ud, r) : 0;
    if (took == 1)
        return 1;
    if (took == 2 || r->type == REDIS_REPLY_ARRAY)
        return 0;
    redtls_reply_free(r);
    return 1;
}

redtls_status redtls__reader_get(redtls__reader *rd, struct redisReply **reply, char *err)
{
    for (;;) {
        void *obj = NULL;
        *reply = NULL;
        if (!rd->slow_only) {
            if ((*reply = take_simple(rd)) != NULL) {
                rd->held = 0;
                return REDTLS_OK;
            }
            /* Nothing buffered: hiredis would only set up a task for the
             * next reply, which keeps the next one off the fast path. */
            redisReader *r = rd->r;
            if (!r->err && r->ridx == -1 && r->pos == r->len)
                return REDTLS_OK;
        }
#if REDTLS_HIREDIS_1
        {
            /* hiredis 1.2 does not know RESP3's attribute type; its body is
             * a map's, so a top-level one is parsed as a map and retyped
             * once whole. Top level: no task yet, or the root task set up
             * by an earlier call that found no byte to read (its type is
             * still unknown). */
            redisReader *r = rd->r;
            int top = r->ridx == -1 || (r->ridx == 0 && r->task[0]->type < 0);
            if (!r->err && top && r->pos < r->len && r->buf[r->pos] == '|') {
                r->buf[r->pos] = '%';
                rd->attr = 1;
            }
        }
#endif
        int rc = redisReaderGetReply(rd->r, &obj);
        if (rc != REDIS_OK || obj)
            rd->held = 0; /* the reply is complete, or gone */
        if (rc != REDIS_OK) {
            redisReader *r = rd->r;
            rd->attr = 0;
            if (rd->refused != REDTLS_OK)
                return redtls__fail(err, rd->refused, "%s", rd->refused_msg);
            if (r->err == REDIS_ERR_OOM)
                return redtls__fail(err, REDTLS_E_NOMEM, "out of memory parsing the reply");
            /* hiredis refuses counts below -1 or beyond what it can
             * represent before our callbacks see them (and wipes its
             * buffer, so the number is gone): report both as the element
             * limit, the same code whichever hiredis version parsed it. */
            if (strstr(r->errstr, "Multi-bulk length out of range") != NULL)
                return redtls__fail(err, REDTLS_E_LIMIT,
                                    "array element count out of range (negative, or above the limit of %zu)",
                                    rd->limits.max_elements);
            if (strstr(r->errstr, "depth") != NULL)
                return redtls__fail(err, REDTLS_E_LIMIT, "reply nesting exceeds the limit of %d",
                                    REDTLS_MAX_REPLY_DEPTH);
            return redtls__fail(err, REDTLS_E_PROTOCOL, "invalid reply from the server: %s", r->errstr);
        }
        if (!obj)
            return check_pending(rd, err);
        redisReply *got = obj;
        if (rd->attr) {
            got->type = REDTLS_REPLY_ATTR;
            rd->attr = 0;
        }
        if (unasked(rd, got) && offer(rd, got))
            continue;
        *reply = got;
        return REDTLS_OK;
    }
}

/* redtls-migrate: a value too big for one DUMP / RESTORE, copied by type in
 * pieces (GETRANGE, HSCAN, SSCAN, ZSCAN, LRANGE, XRANGE and their writes)
 * into a temporary key of the same hash slot, which then gets the expiry
 * and is renamed onto the real name, so the target never shows half a
 * value. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "migrate.h"

/* Most elements in one write, and the pipeline of writes flushed at once. */
#define PIECE_ELEMS 1000
#define PIECE_CMDS 64
/* A temporary key left by a killed run disappears after this long; each
 * round of writes renews it. */
#define SAFETY_TTL_MS "3600000"
#define LOST_TMP                                                                                                       \
    "the temporary key disappeared during the copy (evicted or deleted on the target); if the target evicts keys "     \
    "(maxmemory-policy), give it more memory, then copy the key again"

/* What the temporary key's size (HLEN, SCARD, ZCARD, LLEN, STRLEN, XLEN)
 * is checked against before the rename: the sum of the writes' replies
 * (HSET, SADD, ZADD: what each one added), or the elements, bytes or
 * commands sent (RPUSH, SET and APPEND, XADD). */
enum written_by { BY_REPLIES, BY_ELEMS, BY_BYTES, BY_CMDS };

struct copy {
    const struct chunk_job *j;
    const char *key;
    size_t klen;
    char tmp[128];
    size_t tlen;
    int made;   /* something was written to tmp */
    int rounds; /* rounds of writes answered: tmp exists, with a TTL */
    const char *size_cmd;
    enum written_by by;
    long long written; /* what tmp must hold, counted as by says */
    struct chunk_result *res;
    /* the write being built: argv borrowed from the current source reply */
    const char **argv;
    size_t *lens;
    int argc, cap;
    size_t elems, bytes;
    /* written but not yet answered; renew: a PEXPIRE is queued before them */
    size_t queued, queued_bytes;
    int renew;
    long long count; /* read size hint for the next source call */
};

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int failed(struct copy *c, int outcome, const char *fmt, ...) REDTLS_PRINTF(3, 4);

static int failed(struct copy *c, int outcome, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->res->msg, sizeof c->res->msg, fmt, ap);
    va_end(ap);
    return outcome;
}

/* One command routed by its key (a cluster side) or on the connection. */
static redtls_status key_command(struct side *s, unsigned flags, int argc, const char **argv, const size_t *lens,
                                 struct redisReply **reply)
{
    if (s->cl != NULL)
        return redtls_cluster_command_argv(s->cl, flags, argc, argv, lens, reply);
    return redtls_conn_command_argv_ex(s->conn, flags, argc, argv, lens, reply);
}

/* A source read. CHUNK_COPIED (go on), or the key's failure: a reply too
 * big for the reader fails the key; another transport failure stops the
 * run. An error reply is handed back like any other. */
static int source_read(struct copy *c, int argc, const char **argv, const size_t *lens, struct redisReply **reply)
{
    redtls_status st = key_command(c->j->from, REDTLS_CMD_IDEMPOTENT, argc, argv, lens, reply);

    if (st == REDTLS_E_LIMIT)
        return failed(c, CHUNK_FAILED, "source %s: %s (raise --from-max-bulk)", argv[0], side_errmsg(c->j->from, st));
    if (st != REDTLS_OK)
        return failed(c, CHUNK_CONNECT, "source %s: %s", argv[0], side_errmsg(c->j->from, st));
    return CHUNK_COPIED;
}

/* The error text of an error reply, else "" */
static const char *error_text(const struct redisReply *r, size_t *len)
{
    if (redtls_reply_type(r) == REDTLS_REPLY_ERROR)
        return redtls_reply_str(r, len);
    *len = 0;
    return "";
}

static int append_renew(struct copy *c)
{
    const char *argv[3] = {"PEXPIRE", c->tmp, SAFETY_TTL_MS};
    size_t lens[3] = {7, c->tlen, strlen(SAFETY_TTL_MS)};
    redtls_status st = side_append(c->j->to, 3, argv, lens);
    return st == REDTLS_OK ? CHUNK_COPIED : failed(c, CHUNK_CONNECT, "target: %s", side_errmsg(c->j->to, st));
}

/* Queues one write to tmp. After the first round the safety TTL is
 * renewed before the writes, so that a temporary key lost meanwhile
 * (evicted: it has a TTL; deleted; flushed) answers 0 there instead of
 * being made again by the writes, half full. */
static int queue_write(struct copy *c, int argc, const char **argv, const size_t *lens, size_t elems, size_t bytes)
{
    redtls_status st;

    if (c->queued == 0 && c->rounds > 0) {
        int rc = append_renew(c);
        if (rc != CHUNK_COPIED)
            return rc;
        c->renew = 1;
    }
    if ((st = side_append(c->j->to, argc, argv, lens)) != REDTLS_OK)
        return failed(c, CHUNK_CONNECT, "target: %s", side_errmsg(c->j->to, st));
    c->made = 1;
    c->queued++;
    c->queued_bytes += bytes;
    c->written += c->by == BY_ELEMS ? (long long)elems : c->by == BY_BYTES ? (long long)bytes : c->by == BY_CMDS;
    return CHUNK_COPIED;
}

/* Reads the replies of the queued writes, and of the PEXPIRE that renews
 * the temporary key's safety TTL (before them; after them in the first
 * round, which makes the key). */
static int sync_writes(struct copy *c)
{
    int first = c->rounds == 0, rc = CHUNK_COPIED;
    size_t n, i;

    if (c->queued == 0)
        return CHUNK_COPIED;
    if (first && (rc = append_renew(c)) != CHUNK_COPIED)
        return rc;
    n = c->queued + (size_t)c->renew + (size_t)first;
    for (i = 0; i < n; i++) {
        struct redisReply *r = NULL;
        int renewal = (c->renew && i == 0) || (first && i + 1 == n);
        redtls_status st = side_get_reply(c->j->to, &r);
        if (rc == CHUNK_COPIED) {
            size_t elen;
            const char *e = error_text(r, &elen);
            if (st != REDTLS_OK)
                rc = failed(c, CHUNK_FAILED, "target: %s", side_errmsg(c->j->to, st));
            else if (elen > 0)
                rc = failed(c, CHUNK_FAILED, "target refused a piece: %.*s", (int)(elen > 200 ? 200 : elen), e);
            else if (renewal && redtls_reply_integer(r) != 1)
                rc = failed(c, CHUNK_FAILED, LOST_TMP);
            else if (!renewal && c->by == BY_REPLIES)
                c->written += redtls_reply_integer(r);
        }
        redtls_reply_free(r);
    }
    c->queued = c->queued_bytes = 0;
    c->renew = 0;
    c->rounds++;
    return rc;
}

/* After a failure: the replies still due, read and dropped, so that none
 * is taken for the answer to a later command. */
static void discard_writes(struct copy *c)
{
    size_t n = c->queued + (size_t)c->renew;

    for (; n > 0; n--) {
        struct redisReply *r = NULL;
        if (side_get_reply(c->j->to, &r) != REDTLS_OK) {
            redtls_reply_free(r);
            break;
        }
        redtls_reply_free(r);
    }
    c->queued = 0;
    c->renew = 0;
}

static int arg_room(struct copy *c, int more)
{
    if (c->argc + more <= c->cap)
        return 0;
    int cap = c->cap == 0 ? 2 * PIECE_ELEMS + 8 : 2 * c->cap;
    while (cap < c->argc + more)
        cap *= 2;
    const char **a = realloc(c->argv, (size_t)cap * sizeof(*a));
    if (a == NULL)
        return -1;
    c->argv = a;
    size_t *l = realloc(c->lens, (size_t)cap * sizeof(*l));
    if (l == NULL)
        return -1;
    c->lens = l;
    c->cap = cap;
    return 0;
}

static void cmd_begin(struct copy *c, const char *name)
{
    c->argc = 0;
    c->elems = c->bytes = 0;
    c->argv[c->argc] = name, c->lens[c->argc++] = strlen(name);
    c->argv[c->argc] = c->tmp, c->lens[c->argc++] = c->tlen;
}

/* Queues the command built (unless it holds no element), and reads the
 * replies when enough is in flight. */
static int cmd_end(struct copy *c)
{
    int rc;

    if (c->argc <= 2)
        return CHUNK_COPIED;
    if ((rc = queue_write(c, c->argc, c->argv, c->lens, c->elems, c->bytes)) != CHUNK_COPIED)
        return rc;
    c->argc = 2;
    c->elems = c->bytes = 0;
    if (c->queued >= PIECE_CMDS || c->queued_bytes >= c->j->piece)
        return sync_writes(c);
    return CHUNK_COPIED;
}

/* Adds one element (n arguments: a member, a field and its value, a score
 * and its member) to the command being built, ending it when full. */
static int cmd_elem(struct copy *c, const char *name, int n, const struct redisReply *const *args)
{
    int i;

    if (arg_room(c, n + 2) != 0)
        return failed(c, CHUNK_FAILED, "out of memory");
    if (c->argc == 0)
        cmd_begin(c, name);
    for (i = 0; i < n; i++) {
        size_t len;
        c->argv[c->argc] = redtls_reply_str(args[i], &len);
        c->lens[c->argc++] = len;
        c->bytes += len;
    }
    if (++c->elems >= PIECE_ELEMS || c->bytes >= c->j->piece) {
        int rc = cmd_end(c);
        c->argc = 0;
        return rc;
    }
    return CHUNK_COPIED;
}

/* The next read's COUNT: PIECE_ELEMS, fewer when elements are big. */
/* Ends the write being built and waits for every write's reply (the
 * arguments may point into a source reply about to be freed). */
static int cmd_flush(struct copy *c)
{
    int rc = cmd_end(c);
    if (rc == CHUNK_COPIED)
        rc = sync_writes(c);
    c->argc = 0;
    return rc;
}

static void adapt_count(struct copy *c, size_t nelems, size_t bytes)
{
    long long per = nelems > 0 ? (long long)(bytes / nelems) + 1 : 1;
    long long n = (long long)c->j->piece / per;
    c->count = n < 1 ? 1 : n > PIECE_ELEMS ? PIECE_ELEMS : n;
}

static int all_strings(const struct redisReply *a)
{
    size_t i;
    for (i = 0; i < redtls_reply_len(a); i++)
        if (redtls_reply_type(redtls_reply_element(a, i)) != REDTLS_REPLY_STRING)
            return 0;
    return 1;
}

static int unexpected(struct copy *c, const char *cmd, const struct redisReply *r)
{
    size_t elen;
    const char *e = error_text(r, &elen);
    if (elen > 0)
        return failed(c, CHUNK_FAILED, "source %s: %.*s", cmd, (int)(elen > 200 ? 200 : elen), e);
    return failed(c, CHUNK_FAILED, "source %s: unexpected reply (type %d)", cmd, redtls_reply_type(r));
}

/* HSCAN / SSCAN / ZSCAN to HSET / SADD / ZADD. ZSCAN gives member, score;
 * ZADD wants score, member; scores travel as the text Redis prints, which
 * reads back to the same double (inf and -inf included). */
static int copy_scan(struct copy *c, const char *scan, const char *write, int per)
{
    char cursor[32] = "0", count[24];

    do {
        int rc;
        struct redisReply *r = NULL;
        const struct redisReply *items;
        const char *argv[5] = {scan, c->key, cursor, "COUNT", count};
        size_t lens[5] = {5, c->klen, 0, 5, 0};
        size_t i, n, bytes = 0, clen;
        const char *cur;

        snprintf(count, sizeof count, "%lld", c->count);
        lens[2] = strlen(cursor);
        lens[4] = strlen(count);
        if ((rc = source_read(c, 5, argv, lens, &r)) != CHUNK_COPIED)
            return rc;
        if (redtls_reply_type(r) != REDTLS_REPLY_ARRAY || redtls_reply_len(r) != 2 ||
            redtls_reply_type(redtls_reply_element(r, 0)) != REDTLS_REPLY_STRING ||
            redtls_reply_type(items = redtls_reply_element(r, 1)) != REDTLS_REPLY_ARRAY || !all_strings(items) ||
            redtls_reply_len(items) % (size_t)per != 0) {
            rc = unexpected(c, scan, r);
            redtls_reply_free(r);
            return rc;
        }
        n = redtls_reply_len(items);
        for (i = 0; i < n && rc == CHUNK_COPIED; i += (size_t)per) {
            const struct redisReply *e[2];
            e[0] = redtls_reply_element(items, i);
            if (per == 2) {
                e[1] = redtls_reply_element(items, i + 1);
                if (strcmp(write, "ZADD") == 0) {
                    const struct redisReply *t = e[0];
                    e[0] = e[1], e[1] = t;
                }
            }
            rc = cmd_elem(c, write, per, e);
        }
        for (i = 0; i < n; i++)
            (void)redtls_reply_str(redtls_reply_element(items, i), &clen), bytes += clen;
        if (rc == CHUNK_COPIED)
            rc = cmd_flush(c); /* the arguments point into r */
        else
            c->argc = 0;
        cur = redtls_reply_str(redtls_reply_element(r, 0), &clen);
        if (clen >= sizeof cursor) {
            redtls_reply_free(r);
            return failed(c, CHUNK_FAILED, "source %s: cursor too long", scan);
        }
        memcpy(cursor, cur, clen);
        cursor[clen] = '\0';
        adapt_count(c, n / (size_t)per, bytes);
        redtls_reply_free(r);
        if (rc != CHUNK_COPIED)
            return rc;
    } while (strcmp(cursor, "0") != 0);
    return CHUNK_COPIED;
}

/* LRANGE to RPUSH, front to back. */
static int copy_list(struct copy *c)
{
    long long start = 0;

    for (;;) {
        int rc;
        struct redisReply *r = NULL;
        char from[24], to[24];
        const char *argv[4] = {"LRANGE", c->key, from, to};
        size_t lens[4] = {6, c->klen, 0, 0};
        size_t i, n, bytes = 0;
        long long want = c->count;

        lens[2] = (size_t)snprintf(from, sizeof from, "%lld", start);
        lens[3] = (size_t)snprintf(to, sizeof to, "%lld", start + want - 1);
        if ((rc = source_read(c, 4, argv, lens, &r)) != CHUNK_COPIED)
            return rc;
        if (redtls_reply_type(r) != REDTLS_REPLY_ARRAY || !all_strings(r)) {
            rc = unexpected(c, "LRANGE", r);
            redtls_reply_free(r);
            return rc;
        }
        n = redtls_reply_len(r);
        for (i = 0; i < n && rc == CHUNK_COPIED; i++) {
            const struct redisReply *e = redtls_reply_element(r, i);
            size_t len;
            (void)redtls_reply_str(e, &len);
            bytes += len;
            rc = cmd_elem(c, "RPUSH", 1, &e);
        }
        if (rc == CHUNK_COPIED)
            rc = cmd_flush(c);
        else
            c->argc = 0;
        redtls_reply_free(r);
        if (rc != CHUNK_COPIED || (long long)n < want)
            return rc;
        start += (long long)n;
        adapt_count(c, n, bytes);
    }
}

/* GETRANGE pieces to SET then APPEND. HyperLogLogs are strings too. */
static int copy_string(struct copy *c)
{
    long long off = 0, piece = (long long)c->j->piece;

    for (;;) {
        int rc;
        struct redisReply *r = NULL;
        char from[24], to[24];
        const char *argv[4] = {"GETRANGE", c->key, from, to};
        size_t lens[4] = {8, c->klen, 0, 0};
        size_t len;

        lens[2] = (size_t)snprintf(from, sizeof from, "%lld", off);
        lens[3] = (size_t)snprintf(to, sizeof to, "%lld", off + piece - 1);
        if ((rc = source_read(c, 4, argv, lens, &r)) != CHUNK_COPIED)
            return rc;
        if (redtls_reply_type(r) != REDTLS_REPLY_STRING) {
            rc = unexpected(c, "GETRANGE", r);
            redtls_reply_free(r);
            return rc;
        }
        (void)redtls_reply_str(r, &len);
        if (len > 0) {
            const struct redisReply *e = r;
            rc = cmd_elem(c, off == 0 ? "SET" : "APPEND", 1, &e);
            if (rc == CHUNK_COPIED)
                rc = cmd_flush(c);
            else
                c->argc = 0;
        }
        redtls_reply_free(r);
        if (rc != CHUNK_COPIED || (long long)len < piece)
            return rc;
        off += (long long)len;
    }
}

/* A field of XINFO STREAM's flat [name, value, ...] reply. */
static const struct redisReply *info_field(const struct redisReply *info, const char *name)
{
    size_t i;
    for (i = 0; i + 1 < redtls_reply_len(info); i += 2) {
        const char *s = redtls_reply_str(redtls_reply_element(info, i), NULL);
        if (s != NULL && strcmp(s, name) == 0)
            return redtls_reply_element(info, i + 1);
    }
    return NULL;
}

unsigned long long chunk_refused_len(const char *errmsg)
{
    const char *p = errmsg != NULL ? strstr(errmsg, "bulk string of ") : NULL;
    return p != NULL ? strtoull(p + 15, NULL, 10) : 0;
}

int stream_next_id(const char *id, size_t len, char *out, size_t cap)
{
    char buf[48], *dash, *end;
    unsigned long long ms, seq;

    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, id, len);
    buf[len] = '\0';
    if ((dash = strchr(buf, '-')) == NULL || buf[0] < '0' || buf[0] > '9' || dash[1] < '0' || dash[1] > '9')
        return -1;
    ms = strtoull(buf, &end, 10);
    if (end != dash)
        return -1;
    seq = strtoull(dash + 1, &end, 10);
    if (*end != '\0')
        return -1;
    if (seq < ULLONG_MAX)
        seq++;
    else if (ms < ULLONG_MAX)
        ms++, seq = 0;
    else
        return 1;
    return (size_t)snprintf(out, cap, "%llu-%llu", ms, seq) < cap ? 0 : -1;
}

/* Entries with XRANGE, up to the last generated ID XINFO STREAM gave (so
 * they are the ones its counters describe, whatever is added meanwhile),
 * to XADD with the same IDs; then XSETID to that ID (and, where the source
 * reports them, its entries-added and max-deleted-entry-id). Consumer
 * groups and their pending entries do not travel. */
static int copy_stream(struct copy *c)
{
    char start[64] = "-", count[24];
    struct redisReply *info = NULL;
    const struct redisReply *last, *groups;
    const char *iargv[3] = {"XINFO", "STREAM", c->key};
    size_t ilens[3] = {5, 6, c->klen};
    int rc, any = 0, done = 0;

    if ((rc = source_read(c, 3, iargv, ilens, &info)) != CHUNK_COPIED)
        return rc;
    if (redtls_reply_type(info) != REDTLS_REPLY_ARRAY ||
        redtls_reply_type(last = info_field(info, "last-generated-id")) != REDTLS_REPLY_STRING) {
        rc = unexpected(c, "XINFO STREAM", info);
        redtls_reply_free(info);
        return rc;
    }
    groups = info_field(info, "groups");
    if (redtls_reply_integer(groups) > 0)
        snprintf(c->res->warn, sizeof c->res->warn,
                 "stream copied in pieces without its %lld consumer group(s) and their pending entries",
                 redtls_reply_integer(groups));
    for (;;) {
        struct redisReply *r = NULL;
        const char *argv[6] = {"XRANGE", c->key, start, NULL, "COUNT", count};
        size_t lens[6] = {6, c->klen, strlen(start), 0, 5, 0};
        size_t i, n, bytes = 0;
        long long want = c->count;

        argv[3] = redtls_reply_str(last, &lens[3]);
        lens[5] = (size_t)snprintf(count, sizeof count, "%lld", want);
        if ((rc = source_read(c, 6, argv, lens, &r)) != CHUNK_COPIED)
            break;
        if (redtls_reply_type(r) != REDTLS_REPLY_ARRAY) {
            rc = unexpected(c, "XRANGE", r);
            redtls_reply_free(r);
            break;
        }
        n = redtls_reply_len(r);
        for (i = 0; i < n && rc == CHUNK_COPIED; i++) {
            const struct redisReply *ent = redtls_reply_element(r, i), *id, *fv;
            size_t f, idlen;
            if (redtls_reply_len(ent) != 2 ||
                redtls_reply_type(id = redtls_reply_element(ent, 0)) != REDTLS_REPLY_STRING ||
                redtls_reply_type(fv = redtls_reply_element(ent, 1)) != REDTLS_REPLY_ARRAY || !all_strings(fv) ||
                redtls_reply_len(fv) == 0 || redtls_reply_len(fv) % 2 != 0) {
                rc = unexpected(c, "XRANGE", ent);
                break;
            }
            if (arg_room(c, (int)redtls_reply_len(fv) + 3) != 0) {
                rc = failed(c, CHUNK_FAILED, "out of memory");
                break;
            }
            cmd_begin(c, "XADD");
            c->argv[c->argc] = redtls_reply_str(id, &idlen), c->lens[c->argc++] = idlen;
            for (f = 0; f < redtls_reply_len(fv); f++) {
                size_t len;
                c->argv[c->argc] = redtls_reply_str(redtls_reply_element(fv, f), &len);
                c->lens[c->argc++] = len;
                c->bytes += len;
            }
            bytes += c->bytes;
            rc = cmd_end(c);
            /* The next read starts after this ID: "(ID" needs Redis 6.2. */
            if (i + 1 == n && rc == CHUNK_COPIED &&
                (done = stream_next_id(redtls_reply_str(id, NULL), idlen, start, sizeof start)) < 0)
                rc = failed(c, CHUNK_FAILED, "source XRANGE: unexpected entry ID '%.*s'",
                            (int)(idlen > 40 ? 40 : idlen), redtls_reply_str(id, NULL));
            any = 1;
        }
        if (rc == CHUNK_COPIED)
            rc = sync_writes(c);
        c->argc = 0;
        redtls_reply_free(r);
        if (rc != CHUNK_COPIED || (long long)n < want || done)
            break;
        adapt_count(c, n, bytes);
    }
    if (rc == CHUNK_COPIED && any) {
        const char *argv[7] = {"XSETID", c->tmp, redtls_reply_str(last, NULL)};
        size_t lens[7] = {6, c->tlen, redtls_reply_len(last)};
        int argc = 3;
        (void)redtls_reply_str(last, &lens[2]);
        const struct redisReply *added = info_field(info, "entries-added");
        const struct redisReply *maxdel = info_field(info, "max-deleted-entry-id");
        char addbuf[24];
        if (redtls_reply_type(added) == REDTLS_REPLY_INTEGER && redtls_reply_type(maxdel) == REDTLS_REPLY_STRING) {
            argv[argc] = "ENTRIESADDED", lens[argc++] = 12;
            lens[argc] = (size_t)snprintf(addbuf, sizeof addbuf, "%lld", redtls_reply_integer(added));
            argv[argc++] = addbuf;
            argv[argc] = "MAXDELETEDID", lens[argc++] = 12;
            argv[argc] = redtls_reply_str(maxdel, &lens[argc]);
            argc++;
        }
        struct redisReply *r = NULL;
        redtls_status st = key_command(c->j->to, REDTLS_CMD_IDEMPOTENT, argc, argv, lens, &r);
        size_t elen;
        const char *e = error_text(r, &elen);
        if (st != REDTLS_OK)
            rc = failed(c, CHUNK_CONNECT, "target XSETID: %s", side_errmsg(c->j->to, st));
        else if (elen > 0)
            rc = failed(c, CHUNK_FAILED,
                        "target XSETID: %.*s (the stream's last ID and counters could not be set as on the "
                        "source; copy the key again)",
                        (int)(elen > 200 ? 200 : elen), e);
        redtls_reply_free(r);
    } else if (rc == CHUNK_COPIED) {
        rc = failed(c, CHUNK_FAILED,
                    "the stream has no entries, only consumer groups, which are not copied "
                    "in pieces");
    }
    redtls_reply_free(info);
    return rc;
}

/* A tag whose hash slot is slot ("{tag}..." then lands there). */
static size_t slot_tag(unsigned slot, char *out, size_t cap)
{
    static const char al[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const size_t na = sizeof al - 1;
    size_t len, i;

    for (len = 1; len < cap; len++) {
        size_t combos = 1;
        for (i = 0; i < len; i++)
            combos *= na;
        for (size_t v = 0; v < combos; v++) {
            size_t x = v;
            for (i = 0; i < len; i++, x /= na)
                out[i] = al[x % na];
            if (redtls_cluster_key_slot(out, len) == slot)
                return len;
        }
    }
    return 0;
}

/* Best effort: the temporary key's safety TTL removes it anyway. */
static void drop_tmp(struct copy *c)
{
    if (c->made) {
        const char *argv[2] = {"UNLINK", c->tmp};
        size_t lens[2] = {6, c->tlen};
        struct redisReply *r = NULL;
        (void)key_command(c->j->to, REDTLS_CMD_IDEMPOTENT, 2, argv, lens, &r);
        redtls_reply_free(r);
    }
}

/* TYPE and PTTL of the key on the source. *abs_ms: the expiry time by the
 * target's clock, 0 for none, -1 when the key is gone. */
static int source_state(struct copy *c, char *type, size_t cap, long long *abs_ms)
{
    const char *argv[2] = {"TYPE", c->key};
    size_t lens[2] = {4, c->klen};
    struct redisReply *r = NULL;
    int rc;
    long long t0;

    if (type != NULL) {
        if ((rc = source_read(c, 2, argv, lens, &r)) != CHUNK_COPIED)
            return rc;
        if (redtls_reply_type(r) != REDTLS_REPLY_STATUS) {
            rc = unexpected(c, "TYPE", r);
            redtls_reply_free(r);
            return rc;
        }
        snprintf(type, cap, "%s", redtls_reply_str(r, NULL));
        redtls_reply_free(r);
    }
    argv[0] = "PTTL";
    t0 = wall_ms();
    if ((rc = source_read(c, 2, argv, lens, &r)) != CHUNK_COPIED)
        return rc;
    if (redtls_reply_type(r) != REDTLS_REPLY_INTEGER) {
        rc = unexpected(c, "PTTL", r);
        redtls_reply_free(r);
        return rc;
    }
    long long ttl = redtls_reply_integer(r);
    redtls_reply_free(r);
    *abs_ms = ttl == -2 ? -1 : ttl >= 0 ? t0 + c->j->skew + ttl : 0;
    return CHUNK_COPIED;
}

/* A target command on the temporary key (or renaming it); a transport
 * failure fails the key with its cause. */
static int tmp_command(struct copy *c, unsigned flags, int argc, const char **argv, const size_t *lens,
                       struct redisReply **r)
{
    redtls_status st = key_command(c->j->to, flags, argc, argv, lens, r);
    if (st != REDTLS_OK)
        return failed(c, CHUNK_FAILED, "target %s: %s", argv[0], side_errmsg(c->j->to, st));
    return CHUNK_COPIED;
}

/* The temporary key holds what was written: a key lost during the copy
 * and made again by later writes holds less. */
static int check_size(struct copy *c)
{
    const char *argv[2] = {c->size_cmd, c->tmp};
    size_t lens[2] = {strlen(c->size_cmd), c->tlen};
    struct redisReply *r = NULL;
    int rc;

    if ((rc = tmp_command(c, REDTLS_CMD_IDEMPOTENT, 2, argv, lens, &r)) != CHUNK_COPIED)
        return rc;
    if (redtls_reply_type(r) != REDTLS_REPLY_INTEGER)
        rc = failed(c, CHUNK_FAILED, "target %s: unexpected reply (type %d)", argv[0], redtls_reply_type(r));
    else if (redtls_reply_integer(r) == 0)
        rc = failed(c, CHUNK_FAILED, LOST_TMP);
    else if (redtls_reply_integer(r) != c->written)
        rc = failed(c, CHUNK_FAILED,
                    "the temporary key holds %lld where %lld were written (%s): it was evicted, deleted or "
                    "changed on the target during the copy; copy the key again",
                    redtls_reply_integer(r), c->written, argv[0]);
    redtls_reply_free(r);
    return rc;
}

/* The expiry (abs_ms, 0: none), then the rename onto the real name; one
 * at a time, so that a refused expiry never reaches the real name. */
static int finish(struct copy *c, long long abs_ms)
{
    const char *argv[3];
    size_t lens[3];
    char when[24];
    struct redisReply *r = NULL;
    int rc, argc = 2;
    size_t elen;
    const char *e;

    if (abs_ms != 0 && abs_ms <= wall_ms() + c->j->skew)
        return CHUNK_EXPIRED;
    if ((rc = check_size(c)) != CHUNK_COPIED)
        return rc;
    argv[1] = c->tmp, lens[1] = c->tlen;
    if (abs_ms != 0) {
        argv[0] = "PEXPIREAT", lens[0] = 9;
        argv[2] = when, lens[2] = (size_t)snprintf(when, sizeof when, "%lld", abs_ms);
        argc = 3;
    } else {
        argv[0] = "PERSIST", lens[0] = 7;
    }
    if ((rc = tmp_command(c, REDTLS_CMD_IDEMPOTENT, argc, argv, lens, &r)) != CHUNK_COPIED)
        return rc;
    e = error_text(r, &elen);
    if (elen > 0)
        rc = failed(c, CHUNK_FAILED, "target %s: %.*s%s", argv[0], (int)(elen > 200 ? 200 : elen), e,
                    strncmp(e, "NOPERM", 6) == 0 ? " (the target's ACL user needs PEXPIREAT, PERSIST and RENAME)" : "");
    else if (redtls_reply_type(r) != REDTLS_REPLY_INTEGER)
        rc = failed(c, CHUNK_FAILED, "target %s: unexpected reply (type %d)", argv[0], redtls_reply_type(r));
    else if (redtls_reply_integer(r) != 1)
        rc = failed(c, CHUNK_FAILED, LOST_TMP); /* tmp always has its safety TTL, so PERSIST answers 1 too */
    redtls_reply_free(r);
    if (rc != CHUNK_COPIED)
        return rc;

    argv[0] = c->j->o->no_replace ? "RENAMENX" : "RENAME";
    lens[0] = strlen(argv[0]);
    argv[2] = c->key, lens[2] = c->klen;
    r = NULL;
    if ((rc = tmp_command(c, 0, 3, argv, lens, &r)) != CHUNK_COPIED)
        return rc;
    e = error_text(r, &elen);
    /* PEXPIREAT answered 1 for a time that passed before the RENAME ran:
     * it expired on the way. */
    if (elen > 0 && abs_ms != 0 && strstr(e, "no such key") != NULL && abs_ms <= wall_ms() + c->j->skew)
        rc = CHUNK_EXPIRED;
    else if (elen > 0 && strstr(e, "no such key") != NULL)
        rc = failed(c, CHUNK_FAILED, LOST_TMP);
    else if (elen > 0)
        rc = failed(c, CHUNK_FAILED, "target %s: %.*s", argv[0], (int)(elen > 200 ? 200 : elen), e);
    else if (redtls_reply_type(r) == REDTLS_REPLY_INTEGER && redtls_reply_integer(r) == 0)
        rc = CHUNK_SKIPPED;
    else
        c->made = 0;
    redtls_reply_free(r);
    return rc;
}

static int copy_key(struct copy *c)
{
    char type[64];
    long long start_ms = 0, end_ms = 0;
    int rc;

    if (c->j->o->no_replace) {
        /* Not worth reading a big value the rename would leave anyway. */
        const char *argv[2] = {"EXISTS", c->key};
        size_t lens[2] = {6, c->klen};
        struct redisReply *r = NULL;
        redtls_status st = key_command(c->j->to, REDTLS_CMD_IDEMPOTENT, 2, argv, lens, &r);
        long long there = redtls_reply_integer(r);
        redtls_reply_free(r);
        if (st != REDTLS_OK)
            return failed(c, CHUNK_CONNECT, "target EXISTS: %s", side_errmsg(c->j->to, st));
        if (there > 0)
            return CHUNK_SKIPPED;
    }
    if ((rc = source_state(c, type, sizeof type, &start_ms)) != CHUNK_COPIED)
        return rc;
    if (start_ms < 0 || strcmp(type, "none") == 0)
        return CHUNK_EXPIRED;
    /* What the temporary key's size is checked against before the rename. */
    static const struct {
        const char *type, *size_cmd;
        enum written_by by;
    } kinds[] = {{"string", "STRLEN", BY_BYTES}, {"hash", "HLEN", BY_REPLIES}, {"set", "SCARD", BY_REPLIES},
                 {"zset", "ZCARD", BY_REPLIES},  {"list", "LLEN", BY_ELEMS},   {"stream", "XLEN", BY_CMDS}};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        if (strcmp(type, kinds[k].type) == 0) {
            c->size_cmd = kinds[k].size_cmd;
            c->by = kinds[k].by;
        }
    if (strcmp(type, "string") == 0)
        rc = copy_string(c);
    else if (strcmp(type, "hash") == 0)
        rc = copy_scan(c, "HSCAN", "HSET", 2);
    else if (strcmp(type, "set") == 0)
        rc = copy_scan(c, "SSCAN", "SADD", 1);
    else if (strcmp(type, "zset") == 0)
        rc = copy_scan(c, "ZSCAN", "ZADD", 2);
    else if (strcmp(type, "list") == 0)
        rc = copy_list(c);
    else if (strcmp(type, "stream") == 0)
        rc = copy_stream(c);
    else
        return failed(c, CHUNK_FAILED,
                      "type '%s' (a module type) cannot be copied in pieces, and its DUMP is over --chunk-limit, "
                      "the target's proto-max-bulk-len or --from-max-bulk: raise the one that applies",
                      type);
    if (rc != CHUNK_COPIED)
        return rc;
    /* The expiry as it is now, the latest state: a TTL set, changed or
     * removed on the source during the copy is the one that holds. Gone
     * from the source meanwhile: not resurrected. */
    if ((rc = source_state(c, NULL, 0, &end_ms)) != CHUNK_COPIED)
        return rc;
    if (end_ms < 0 || !c->made)
        return CHUNK_EXPIRED;
    return finish(c, end_ms);
}

/* FNV-1a, to tell apart the temporary names of different keys. */
static unsigned long long name_hash(const char *key, size_t len)
{
    unsigned long long h = 14695981039346656037ULL;
    size_t i;
    for (i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
    return h;
}

int chunk_copy_key(const struct chunk_job *j, const char *key, size_t len, struct chunk_result *res)
{
    struct copy c;
    struct timespec ts;
    char tag[8];
    size_t tl;
    int rc;

    memset(res, 0, sizeof(*res));
    memset(&c, 0, sizeof c);
    c.j = j;
    c.key = key;
    c.klen = len;
    c.res = res;
    c.count = PIECE_ELEMS;
    tl = slot_tag(redtls_cluster_key_slot(key, len), tag, sizeof tag);
    /* Unique without shared state (workers may run side by side), and
     * never the name a killed earlier run left, even with the same pid. */
    clock_gettime(CLOCK_REALTIME, &ts);
    c.tlen = (size_t)snprintf(c.tmp, sizeof c.tmp, "{%.*s}redtls-migrate:tmp:%ld:%lld%09ld:%016llx", (int)tl, tag,
                              (long)getpid(), (long long)ts.tv_sec, ts.tv_nsec, name_hash(key, len));
    rc = copy_key(&c);
    if (rc != CHUNK_COPIED && rc != CHUNK_CONNECT) {
        discard_writes(&c);
        drop_tmp(&c);
    }
    free(c.argv);
    free(c.lens);
    return rc;
}

int chunk_target_limit(struct side *to, unsigned long long *limit)
{
    const char *names[MAX_NODES];
    static const char *argv[] = {"CONFIG", "GET", "proto-max-bulk-len"};
    size_t n = side_masters(to, names, MAX_NODES), i;
    int known = 0;

    *limit = 0;
    for (i = 0; i < n; i++) {
        struct redisReply *r = NULL;
        redtls_status st = side_command(to, names[i], 3, argv, NULL, &r);
        if (st != REDTLS_OK) {
            fprintf(stderr, "redtls-migrate: target CONFIG GET: %s\n", side_errmsg(to, st));
            return EXIT_CONNECT;
        }
        /* Refused (ElastiCache renames CONFIG away): its default stands. */
        if (redtls_reply_type(r) == REDTLS_REPLY_ARRAY && redtls_reply_len(r) == 2 &&
            redtls_reply_type(redtls_reply_element(r, 1)) == REDTLS_REPLY_STRING) {
            unsigned long long v = strtoull(redtls_reply_str(redtls_reply_element(r, 1), NULL), NULL, 10);
            if (v > 0 && (!known || v < *limit))
                *limit = v, known = 1;
        }
        redtls_reply_free(r);
    }
    if (!known)
        *limit = (unsigned long long)512 << 20;
    return EXIT_CONTINUE;
}

/* lib/reader.c: the limited RESP reader, used directly and through a
 * connection on the memory transport, plus command formatting. */
#include "unit_util.h"

#include <time.h>

#include "reader.h"

static redtls__limits small_limits(size_t elements, size_t bulk, size_t buffer)
{
    redtls__limits l = {elements, bulk, buffer};
    return l;
}

static redtls__limits default_limits(void)
{
    return small_limits(REDTLS_DEFAULT_MAX_ARRAY_ELEMENTS, REDTLS_DEFAULT_MAX_BULK_LEN, REDTLS_DEFAULT_MAX_BUFFER);
}

/* Feeds s to a fresh reader and takes one reply. */
static redtls_status parse_with(const redtls__limits *l, const char *s, size_t n, redisReply **out, char *err)
{
    redtls__reader rd;
    assert_status(redtls__reader_init(&rd, l), REDTLS_OK);
    redtls_status st = redtls__reader_feed(&rd, s, n, err);
    redisReply *r = NULL;
    if (st == REDTLS_OK)
        st = redtls__reader_get(&rd, &r, err);
    redtls__reader_free(&rd);
    *out = r;
    return st;
}

static redtls_status parse(const char *s, redisReply **out, char *err)
{
    redtls__limits l = default_limits();
    return parse_with(&l, s, strlen(s), out, err);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the reader on its own ---- */

static void test_reader_simple_types(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    redisReply *r = NULL;

    assert_status(parse("+OK\r\n", &r, err), REDTLS_OK);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    assert_string_equal(r->str, "OK");
    freeReplyObject(r);

    assert_status(parse("-ERR bad\r\n", &r, err), REDTLS_OK);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_string_equal(r->str, "ERR bad");
    freeReplyObject(r);

    assert_status(parse(":-42\r\n", &r, err), REDTLS_OK);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer == -42);
    freeReplyObject(r);

    assert_status(parse("$-1\r\n", &r, err), REDTLS_OK);
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);

    assert_status(parse("*-1\r\n", &r, err), REDTLS_OK);
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);

    /* max_buffer also covers the reply objects (about 80 bytes each). */
    assert_status(parse_with(&(redtls__limits){16, 16, 256}, "$3\r\na\0b\r\n", 9, &r, err), REDTLS_OK);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, 3);
    assert_memory_equal(r->str, "a\0b", 3);
    assert_int_equal(r->str[3], '\0');
    freeReplyObject(r);
}

static void test_reader_incomplete_then_complete(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    redtls__limits l = default_limits();
    redtls__reader rd;
    redisReply *r = (redisReply *)&r; /* must be reset to NULL */
    assert_status(redtls__reader_init(&rd, &l), REDTLS_OK);
    assert_status(redtls__reader_feed(&rd, "$5\r\nhel", 7, err), REDTLS_OK);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    assert_null(r);
    assert_status(redtls__reader_feed(&rd, "lo\r\n:1\r\n", 8, err), REDTLS_OK);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    assert_non_null(r);
    assert_string_equal(r->str, "hello");
    freeReplyObject(r);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    assert_non_null(r);
    assert_true(r->integer == 1);
    freeReplyObject(r);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    assert_null(r);
    redtls__reader_free(&rd);
    redtls__reader_free(&rd); /* idempotent */
}

/* A 14-byte header announcing 2^32-1 elements ends the read at once,
 * without allocating for the announced size. */
static void test_reader_huge_array_count_no_allocation(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    redisReply *r = NULL;
    size_t before = unit_rss();
    double t0 = now_s();
    redtls_status st = parse("*4294967295\r\n", &r, err);
    double elapsed = now_s() - t0;
    size_t after = unit_rss();
    assert_int_not_equal(st, REDTLS_OK);
    assert_null(r);
    assert_true(elapsed < 0.5);
    assert_true(after < before + 8u * 1024u * 1024u);
}

/* Any count above max_elements is a limit, however large: hiredis 0.14.1
 * refuses counts above INT_MAX itself ("Multi-bulk length out of range"),
 * which must still come out as REDTLS_E_LIMIT (as it does with hiredis 1.x,
 * where redtls's own callback sees the count). */
static void test_reader_huge_array_count_is_limit(void **state)
{
    (void)state;
    const char *counts[] = {"4294967295", "4294967296", "4294967297", "2147483648", "9223372036854775807"};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        char in[64], err[REDTLS__ERRMSG_MAX] = "";
        snprintf(in, sizeof in, "*%s\r\n", counts[i]);
        redisReply *r = NULL;
        redtls_status st = parse(in, &r, err);
        freeReplyObject(r);
        if (st != REDTLS_E_LIMIT)
            fail_msg("*%s gave %s (\"%s\"), expected REDTLS_E_LIMIT", counts[i], redtls_strerror(st), err);
        assert_contains(err, "array element count");
    }
}

static void test_reader_array_count_above_limit(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    redisReply *r = NULL;
    assert_status(parse("*2147483647\r\n", &r, err), REDTLS_E_LIMIT);
    assert_string_equal(err, "array element count 2147483647 exceeds the limit of 16777216");
    assert_status(parse("*16777217\r\n", &r, err), REDTLS_E_LIMIT);
    assert_string_equal(err, "array element count 16777217 exceeds the limit of 16777216");
    assert_null(r);
}

/* A negative count other than -1 is reported as the element limit (the
 * same code with every hiredis version); a negative bulk length other than
 * -1 is a protocol error. */
static void test_reader_negative_array_count(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    redisReply *r = NULL;
    assert_status(parse("*-5\r\n", &r, err), REDTLS_E_LIMIT);
    assert_null(r);
    assert_contains(err, "array element count");
    assert_status(parse("*-2\r\n", &r, err), REDTLS_E_LIMIT);
    assert_status(parse("$-5\r\n", &r, err), REDTLS_E_PROTOCOL);
    assert_null(r);
    assert_contains(err, "invalid reply from the server");
}

static void test_reader_max_elements_boundary(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    redtls__limits l = small_limits(4, 64, 4096);
    redisReply *r = NULL;
    const char ok[] = "*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n";
    assert_status(parse_with(&l, ok, strlen(ok), &r, err), REDTLS_OK);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 4);
    for (size_t i = 0; i < 4; i++)
        assert_true(r->element[i]->integer == (long long)i + 1);
    freeReplyObject(r);

    const char over[] = "*5\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n";
    assert_status(parse_with(&l, over, strlen(over), &r, err), REDTLS_E_LIMIT);
    assert_null(r);
    assert_string_equal(err, "array element count 5 exceeds the limit of 4");

    /* Nested arrays are counted on their own. */
    const char nested[] = "*2\r\n*5\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n:6\r\n";
    assert_status(parse_with(&l, nested, strlen(nested), &r, err), REDTLS_E_LIMIT);
    assert_null(r);
}

static void test_reader_pending_bulk_refused_early(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    redisReply *r = NULL;
    assert_status(parse("$4294967296\r\n", &r, err), REDTLS_E_LIMIT);
    assert_null(r);
    assert_contains(err, "4294967296");
    assert_contains(err, "exceeds the limit of 536870912");

    /* 20 digits and more cannot be a length: the same protocol error as
     * hiredis gives for the complete line, however the bytes arrive. */
    assert_status(parse("$99999999999999999999999", &r, err), REDTLS_E_PROTOCOL);
    assert_contains(err, "bulk length out of range");
    assert_status(parse("$99999999999999999999999\r\n", &r, err), REDTLS_E_PROTOCOL);

    /* The header alone, before its CRLF, already tells the length. */
    redtls__limits l = small_limits(16, 10, 4096);
    assert_status(parse_with(&l, "$11", 3, &r, err), REDTLS_E_LIMIT);
    assert_string_equal(err, "bulk string of 11 bytes exceeds the limit of 10");
    /* At the limit it waits for the body. */
    assert_status(parse_with(&l, "$10\r\n01234", 10, &r, err), REDTLS_OK);
    assert_null(r);
}

/* A '+' sign is accepted by hiredis 0.14's number parser, so it must not
 * slip past the pending-bulk check. */
static void test_reader_pending_bulk_with_plus_sign(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    redisReply *r = NULL;
    redtls_status st = parse("$+4294967296\r\n", &r, err);
    freeReplyObject(r);
    if (st != REDTLS_E_LIMIT && st != REDTLS_E_PROTOCOL)
        fail_msg("\"$+4294967296\\r\\n\" gave %s (reply %p), expected LIMIT or PROTOCOL", redtls_strerror(st),
                 (void *)r);
}

static void test_reader_bulk_boundary(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    redtls__limits l = small_limits(16, 10, 4096);
    redisReply *r = NULL;
    const char at[] = "$10\r\n0123456789\r\n";
    assert_status(parse_with(&l, at, strlen(at), &r, err), REDTLS_OK);
    assert_int_equal(r->len, 10);
    assert_string_equal(r->str, "0123456789");
    freeReplyObject(r);

    const char over[] = "$11\r\n0123456789a\r\n";
    assert_status(parse_with(&l, over, strlen(over), &r, err), REDTLS_E_LIMIT);
    assert_null(r);
    assert_string_equal(err, "bulk string length 11 exceeds the limit of 10");
}

static void test_reader_max_buffer(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    redtls__limits l = small_limits(16, 1024, 64);
    char line[200];
    line[0] = '+';
    memset(line + 1, 'a', sizeof line - 1);

    redtls__reader rd;
    assert_status(redtls__reader_init(&rd, &l), REDTLS_OK);
    assert_status(redtls__reader_feed(&rd, line, 64, err), REDTLS_OK);
    redisReply *r = NULL;
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    assert_null(r);
    /* The type byte has been consumed by now, so one more byte may fit. */
    redtls_status st = redtls__reader_feed(&rd, line + 64, 1, err);
    if (st == REDTLS_OK)
        st = redtls__reader_feed(&rd, line + 65, 1, err);
    assert_status(st, REDTLS_E_LIMIT);
    assert_string_equal(err, "unparsed reply data would exceed the buffer limit of 64 bytes");
    redtls__reader_free(&rd);

    /* One oversized chunk. */
    assert_status(redtls__reader_init(&rd, &l), REDTLS_OK);
    assert_status(redtls__reader_feed(&rd, line, 65, err), REDTLS_E_LIMIT);
    redtls__reader_free(&rd);

    /* Parsed data no longer counts: 50 replies of 43 bytes (plus one
     * object each) through a 200-byte limit. */
    l.max_buffer = 200;
    assert_status(redtls__reader_init(&rd, &l), REDTLS_OK);
    for (int i = 0; i < 50; i++) {
        assert_status(redtls__reader_feed(&rd, "+0123456789012345678901234567890123456789\r\n", 43, err), REDTLS_OK);
        assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
        assert_non_null(r);
        freeReplyObject(r);
    }
    redtls__reader_free(&rd);
}

static void test_reader_non_digit_lengths(void **state)
{
    (void)state;
    const char *bad[] = {"$abc\r\n", ":12x\r\n", "*1x\r\n:1\r\n", "$5x\r\nhello\r\n", ":\r\n", "$\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[REDTLS__ERRMSG_MAX] = "";
        redisReply *r = NULL;
        redtls_status st = parse(bad[i], &r, err);
        if (st != REDTLS_E_PROTOCOL) {
            int type = r ? r->type : 0;
            long long iv = r ? r->integer : 0;
            freeReplyObject(r);
            fail_msg("input %zu (%.*s) gave %s (reply type %d, integer %lld), expected protocol error", i,
                     (int)strcspn(bad[i], "\r"), bad[i], redtls_strerror(st), type, iv);
        }
        assert_null(r);
        assert_contains(err, "invalid reply from the server");
    }
}

static void test_reader_bad_type_byte(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    redisReply *r = NULL;
    assert_status(parse("!x\r\n", &r, err), REDTLS_E_PROTOCOL);
    assert_null(r);
    assert_contains(err, "invalid reply from the server");
}

/* Everything a reader returns for s, fed whole, as text: each reply's type
 * and value, then the final status and message. */
static void describe_all(const redtls__limits *l, const char *s, size_t n, int slow_only, char *out, size_t cap)
{
    redtls__reader rd;
    char err[REDTLS__ERRMSG_MAX] = "";
    size_t used = 0;
    assert_status(redtls__reader_init(&rd, l), REDTLS_OK);
    rd.slow_only = slow_only;
    redtls_status st = redtls__reader_feed(&rd, s, n, err);
    for (int i = 0; st == REDTLS_OK && i < 16; i++) {
        redisReply *r = NULL;
        st = redtls__reader_get(&rd, &r, err);
        if (st != REDTLS_OK || !r)
            break;
        used += (size_t)snprintf(out + used, cap - used, "[%d %lld %zu '%s']", r->type, r->integer, r->len,
                                 r->str ? r->str : "-");
        redtls_reply_free(r);
    }
    snprintf(out + used, cap - used, " -> %d %s", (int)st, err);
    redtls__reader_free(&rd);
}

/* Plain top-level replies skip hiredis's general parser; anything odd
 * about them goes to hiredis. Both routes give the same replies and the
 * same errors, for well-formed input, for the edge cases hiredis 0.14 and
 * 1.x judge differently (leading zeros, "-0", bare LF, lone CR), and at
 * the limits. */
static void test_reader_fast_path_agrees(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        "$3\r\nabc\r\n", "$0\r\n\r\n", "$-1\r\n", ":0\r\n", ":-42\r\n", ":123456789012345678\r\n",
        ":1234567890123456789\r\n", "+OK\r\n", "-ERR wrong\r\n", "+\r\n", "$03\r\nabc\r\n", ":007\r\n",
        ":-0\r\n", ":+5\r\n", "$+3\r\nabc\r\n", "+a\nb\r\n", "+a\rb\r\n", "-E\rx\r\n", "$3\r\nabcXY",
        "$3\r\nab", "$-2\r\n", "$-1\r\n$2\r\nhi\r\n:7\r\n+PONG\r\n*2\r\n:1\r\n$1\r\nx\r\n",
        ":12", "$2\r\nhi\r", "$5\r\nabcdefgh\r\n", "$17\r\n12345678901234567\r\n", "$3\r\nabc\r\n$3\r\nd",
        "+OK\r\n-ERR\r\n:1\r\n$1\r\nz\r\n", "$4\r\n\r\n\r\n\r\n", "?x\r\n", ":-\r\n", "$\r\n",
    };
    const redtls__limits lims[] = {default_limits(), small_limits(4, 4, 24)};
    char fast[2048], slow[2048];
    for (size_t k = 0; k < sizeof lims / sizeof lims[0]; k++) {
        for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
            describe_all(&lims[k], inputs[i], strlen(inputs[i]), 0, fast, sizeof fast);
            describe_all(&lims[k], inputs[i], strlen(inputs[i]), 1, slow, sizeof slow);
            if (strcmp(fast, slow) != 0)
                fail_msg("input %zu, limits %zu:\n fast: %s\n slow: %s", i, k, fast, slow);
        }
    }
    /* Many replies in one buffer: the fast path hands over to hiredis
     * each time 1 KiB is consumed (hiredis then drops the consumed part),
     * and the order holds throughout. */
    char many[8192];
    size_t n = 0;
    for (int i = 0; i < 400; i++) {
        char num[16];
        int digits = snprintf(num, sizeof num, "%d", i);
        if (i % 3)
            n += (size_t)snprintf(many + n, sizeof many - n, ":%s\r\n", num);
        else
            n += (size_t)snprintf(many + n, sizeof many - n, "$%d\r\n%s\r\n", digits, num);
    }
    redtls__reader rd;
    char err[REDTLS__ERRMSG_MAX];
    redtls__limits l = default_limits();
    assert_status(redtls__reader_init(&rd, &l), REDTLS_OK);
    assert_status(redtls__reader_feed(&rd, many, n, err), REDTLS_OK);
    for (int i = 0; i < 400; i++) {
        redisReply *r = NULL;
        assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
        assert_non_null(r);
        if (i % 3) {
            assert_int_equal(r->type, REDIS_REPLY_INTEGER);
            assert_int_equal(r->integer, i);
        } else {
            assert_int_equal(r->type, REDIS_REPLY_STRING);
            assert_int_equal(atoi(r->str), i);
        }
        redtls_reply_free(r);
    }
    redisReply *r = NULL;
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    assert_null(r);
    redtls__reader_free(&rd);
}

static char *nested(int depth, const char *leaf)
{
    char *s = malloc((size_t)depth * 4 + strlen(leaf) + 1);
    assert_non_null(s);
    s[0] = '\0';
    for (int i = 0; i < depth; i++)
        strcat(s, "*1\r\n");
    strcat(s, leaf);
    return s;
}

static void test_reader_depth(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    redisReply *r = NULL;
    assert_int_equal(REDTLS_MAX_REPLY_DEPTH, 7);
    char *s = nested(7, ":9\r\n");
    assert_status(parse(s, &r, err), REDTLS_OK);
    const redisReply *p = r;
    for (int i = 0; i < 7; i++) {
        assert_int_equal(p->type, REDIS_REPLY_ARRAY);
        assert_int_equal(p->elements, 1);
        p = p->element[0];
    }
    assert_int_equal(p->type, REDIS_REPLY_INTEGER);
    assert_true(p->integer == 9);
    freeReplyObject(r);
    free(s);

    s = nested(8, ":9\r\n");
    assert_status(parse(s, &r, err), REDTLS_E_LIMIT);
    assert_null(r);
    assert_contains(err, "nesting");
    free(s);

    /* Empty arrays at depth 8 as well. */
    s = nested(7, "*0\r\n");
    assert_status(parse(s, &r, err), REDTLS_E_LIMIT);
    free(s);
}

static void test_format_argv_binary(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    const char *argv[] = {"SET", "k\0ey", "\0"};
    size_t lens[] = {3, 4, 1};
    assert_status(redtls__format_argv(&buf, &len, &cap, 3, argv, lens), REDTLS_OK);
    const char want[] = "*3\r\n$3\r\nSET\r\n$4\r\nk\0ey\r\n$1\r\n\0\r\n";
    assert_int_equal(len, sizeof want - 1);
    assert_memory_equal(buf, want, len);
    const char *argv2[] = {"PING"};
    assert_status(redtls__format_argv(&buf, &len, &cap, 1, argv2, NULL), REDTLS_OK);
    assert_int_equal(len, sizeof want - 1 + 14);
    assert_memory_equal(buf + sizeof want - 1, "*1\r\n$4\r\nPING\r\n", 14);
    assert_true(cap >= len);
    free(buf);
}

static void test_buf_append_growth(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    char chunk[100];
    for (int i = 0; i < 100; i++) {
        memset(chunk, 'a' + i % 26, sizeof chunk);
        assert_status(redtls__buf_append(&buf, &len, &cap, chunk, sizeof chunk), REDTLS_OK);
    }
    assert_int_equal(len, 10000);
    assert_true(cap >= 10000);
    for (int i = 0; i < 100; i++)
        assert_int_equal(buf[i * 100 + 99], 'a' + i % 26);
    assert_status(redtls__buf_append(&buf, &len, &cap, "", 0), REDTLS_OK);
    assert_int_equal(len, 10000);
    free(buf);
}

/* ---- through a connection on the memory transport ---- */

typedef struct fx {
    redtls_config *cfg;
    redtls_conn *conn;
    redtls__transport *t;
} fx;

static int fx_setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->cfg = unit_plain_config();
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    redtls_conn_free(f->conn);
    redtls_config_free(f->cfg);
    free(f);
    return 0;
}

static void fx_open(fx *f, redtls_status at_end)
{
    f->conn = unit_mem_conn(f->cfg, at_end, &f->t);
}

/* After a final reader error the connection is closed and refuses work. */
static void assert_dropped(redtls_conn *conn)
{
    assert_int_equal(redtls_conn_is_connected(conn), 0);
    assert_int_equal(redtls_conn_pending(conn), 0);
    redisReply *r = (redisReply *)1;
    assert_status(redtls_conn_command(conn, &r, "PING"), REDTLS_E_STATE);
    assert_null(r);
    assert_contains(redtls_conn_errmsg(conn), "not connected");
    /* Appending only queues; reading needs a connection. */
    assert_status(redtls_conn_append(conn, "PING"), REDTLS_OK);
    assert_status(redtls_conn_get_reply(conn, &r), REDTLS_E_STATE);
    assert_null(r);
}

static void test_conn_huge_array_count(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_EOF);
    unit_push(f->t, "*4294967295\r\n");
    redisReply *r = NULL;
    size_t before = unit_rss();
    double t0 = now_s();
    redtls_status st = redtls_conn_command(f->conn, &r, "LRANGE k 0 -1");
    assert_true(now_s() - t0 < 0.5);
    assert_true(unit_rss() < before + 8u * 1024u * 1024u);
    assert_null(r);
    char msg[REDTLS__ERRMSG_MAX];
    snprintf(msg, sizeof msg, "%s", redtls_conn_errmsg(f->conn));
    assert_dropped(f->conn);
    if (st != REDTLS_E_LIMIT)
        fail_msg("*4294967295 gave %s (\"%s\"), expected REDTLS_E_LIMIT", redtls_strerror(st), msg);
    assert_contains(msg, "array element count");
}

static void test_conn_max_elements_exact(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_max_array_elements(f->cfg, 3), REDTLS_OK);
    fx_open(f, REDTLS_E_EOF);
    unit_push(f->t, "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n*4\r\n");
    redisReply *r = NULL;
    assert_status(redtls_conn_command(f->conn, &r, "LRANGE k 0 -1"), REDTLS_OK);
    assert_int_equal(redtls_reply_len(r), 3);
    assert_string_equal(redtls_reply_str(redtls_reply_element(r, 2), NULL), "c");
    redtls_reply_free(r);
    assert_status(redtls_conn_command(f->conn, &r, "LRANGE k 0 -1"), REDTLS_E_LIMIT);
    assert_string_equal(redtls_conn_errmsg(f->conn), "array element count 4 exceeds the limit of 3");
    assert_dropped(f->conn);
}

static void test_conn_negative_array_count(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_EOF);
    unit_push(f->t, "*-5\r\n");
    redisReply *r = NULL;
    redtls_status st = redtls_conn_command(f->conn, &r, "PING");
    assert_int_not_equal(st, REDTLS_OK);
    assert_status(st, REDTLS_E_LIMIT);
    assert_contains(redtls_conn_errmsg(f->conn), "array element count");
    assert_dropped(f->conn);
}

/* The announced length alone is refused: no waiting for the body, which
 * with a silent server would end in a timeout. */
static void test_conn_pending_bulk(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_COMMAND_TIMEOUT);
    unit_push(f->t, "$4294967296\r\n");
    redisReply *r = NULL;
    assert_status(redtls_conn_command(f->conn, &r, "GET k"), REDTLS_E_LIMIT);
    assert_contains(redtls_conn_errmsg(f->conn), "bulk string of 4294967296 bytes");
    assert_dropped(f->conn);
}

static void test_conn_bulk_limits(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_max_bulk_len(f->cfg, 8), REDTLS_OK);
    fx_open(f, REDTLS_E_COMMAND_TIMEOUT);
    unit_push(f->t, "$8\r\n01234567\r\n$9\r\n012345678\r\n");
    redisReply *r = NULL;
    assert_status(redtls_conn_command(f->conn, &r, "GET a"), REDTLS_OK);
    size_t len = 0;
    assert_string_equal(redtls_reply_str(r, &len), "01234567");
    assert_int_equal(len, 8);
    redtls_reply_free(r);
    assert_status(redtls_conn_command(f->conn, &r, "GET b"), REDTLS_E_LIMIT);
    assert_string_equal(redtls_conn_errmsg(f->conn), "bulk string length 9 exceeds the limit of 8");
    assert_dropped(f->conn);
}

static void test_conn_bulk_header_only_over_limit(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_max_bulk_len(f->cfg, 8), REDTLS_OK);
    fx_open(f, REDTLS_E_COMMAND_TIMEOUT);
    unit_push(f->t, "$9\r\n0123");
    redisReply *r = NULL;
    assert_status(redtls_conn_command(f->conn, &r, "GET b"), REDTLS_E_LIMIT);
    assert_string_equal(redtls_conn_errmsg(f->conn), "bulk string of 9 bytes exceeds the limit of 8");
    assert_dropped(f->conn);
}

static void test_conn_max_buffer_endless_line(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_max_buffer(f->cfg, 4096), REDTLS_OK);
    fx_open(f, REDTLS_E_COMMAND_TIMEOUT);
    char chunk[1000];
    memset(chunk, 'a', sizeof chunk);
    chunk[0] = '+';
    unit_pushn(f->t, chunk, sizeof chunk);
    chunk[0] = 'a';
    for (int i = 0; i < 100; i++)
        unit_pushn(f->t, chunk, sizeof chunk);
    redisReply *r = NULL;
    assert_status(redtls_conn_command(f->conn, &r, "PING"), REDTLS_E_LIMIT);
    assert_string_equal(redtls_conn_errmsg(f->conn),
                        "unparsed reply data would exceed the buffer limit of 4096 bytes");
    assert_dropped(f->conn);
}

static void test_conn_non_digit_lengths(void **state)
{
    const char *bad[] = {"$abc\r\n", ":12x\r\n"};
    for (size_t i = 0; i < 2; i++) {
        fx *f = *state;
        redtls_conn_free(f->conn);
        fx_open(f, REDTLS_E_EOF);
        unit_push(f->t, bad[i]);
        redisReply *r = NULL;
        redtls_status st = redtls_conn_command(f->conn, &r, "GET k");
        if (st != REDTLS_E_PROTOCOL) {
            int type = redtls_reply_type(r);
            redtls_reply_free(r);
            fail_msg("%.*s gave %s with reply type %d, expected protocol error", (int)strcspn(bad[i], "\r"), bad[i],
                     redtls_strerror(st), type);
        }
        assert_contains(redtls_conn_errmsg(f->conn), "invalid reply");
        assert_dropped(f->conn);
    }
}

static void test_conn_depth(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_EOF);
    char *ok = nested(7, "$2\r\nhi\r\n");
    char *bad = nested(8, "$2\r\nhi\r\n");
    unit_push(f->t, ok);
    unit_push(f->t, bad);
    redisReply *r = NULL;
    assert_status(redtls_conn_command(f->conn, &r, "X"), REDTLS_OK);
    const redisReply *p = r;
    for (int i = 0; i < 7; i++)
        p = redtls_reply_element(p, 0);
    assert_string_equal(redtls_reply_str(p, NULL), "hi");
    redtls_reply_free(r);
    assert_status(redtls_conn_command(f->conn, &r, "X"), REDTLS_E_LIMIT);
    assert_contains(redtls_conn_errmsg(f->conn), "nesting");
    assert_dropped(f->conn);
    free(ok);
    free(bad);
}

static const char complex_reply[] = "*5\r\n$3\r\nfoo\r\n:-7\r\n$-1\r\n*3\r\n+OK\r\n*0\r\n*2\r\n$0\r\n\r\n-ERR inner\r\n"
                                    "*-1\r\n";

static void check_complex(const redisReply *r)
{
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_ARRAY);
    assert_int_equal(redtls_reply_len(r), 5);
    assert_string_equal(redtls_reply_str(redtls_reply_element(r, 0), NULL), "foo");
    assert_true(redtls_reply_integer(redtls_reply_element(r, 1)) == -7);
    assert_int_equal(redtls_reply_type(redtls_reply_element(r, 2)), REDTLS_REPLY_NIL);
    const redisReply *a = redtls_reply_element(r, 3);
    assert_int_equal(redtls_reply_len(a), 3);
    assert_int_equal(redtls_reply_type(redtls_reply_element(a, 0)), REDTLS_REPLY_STATUS);
    assert_string_equal(redtls_reply_str(redtls_reply_element(a, 0), NULL), "OK");
    assert_int_equal(redtls_reply_type(redtls_reply_element(a, 1)), REDTLS_REPLY_ARRAY);
    assert_int_equal(redtls_reply_len(redtls_reply_element(a, 1)), 0);
    const redisReply *b = redtls_reply_element(a, 2);
    assert_int_equal(redtls_reply_len(b), 2);
    size_t len = 99;
    assert_string_equal(redtls_reply_str(redtls_reply_element(b, 0), &len), "");
    assert_int_equal(len, 0);
    assert_int_equal(redtls_reply_type(redtls_reply_element(b, 1)), REDTLS_REPLY_ERROR);
    assert_string_equal(redtls_reply_str(redtls_reply_element(b, 1), NULL), "ERR inner");
    assert_int_equal(redtls_reply_type(redtls_reply_element(r, 4)), REDTLS_REPLY_NIL);
}

static void test_conn_nested_mixed(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_EOF);
    unit_push(f->t, complex_reply);
    redisReply *r = NULL;
    assert_status(redtls_conn_command(f->conn, &r, "X"), REDTLS_OK);
    check_complex(r);
    redtls_reply_free(r);
    assert_true(redtls_conn_is_connected(f->conn));
}

static void test_conn_byte_by_byte(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_EOF);
    for (size_t i = 0; i < sizeof complex_reply - 1; i++)
        unit_pushn(f->t, complex_reply + i, 1);
    const char bin[] = "$5\r\na\r\n\0b\r\n";
    for (size_t i = 0; i < sizeof bin - 1; i++)
        unit_pushn(f->t, bin + i, 1);
    redisReply *r = NULL;
    assert_status(redtls_conn_command(f->conn, &r, "X"), REDTLS_OK);
    check_complex(r);
    redtls_reply_free(r);
    assert_status(redtls_conn_command(f->conn, &r, "Y"), REDTLS_OK);
    size_t len = 0;
    const char *s = redtls_reply_str(r, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(s, "a\r\n\0b", 5);
    redtls_reply_free(r);
}

static void test_conn_array_growth(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_EOF);
    const size_t sizes[] = {0, 1, 4, 5, 8, 9, 16, 17, 1000};
    const size_t nsizes = sizeof sizes / sizeof sizes[0];
    char item[64];
    for (size_t k = 0; k < nsizes; k++) {
        snprintf(item, sizeof item, "*%zu\r\n", sizes[k]);
        unit_push(f->t, item);
        for (size_t i = 0; i < sizes[k]; i++) {
            if (i % 2) {
                snprintf(item, sizeof item, ":%zu\r\n", i);
            } else {
                char v[32];
                int n = snprintf(v, sizeof v, "v%zu", i);
                snprintf(item, sizeof item, "$%d\r\n%s\r\n", n, v);
            }
            unit_push(f->t, item);
        }
    }
    for (size_t k = 0; k < nsizes; k++) {
        redisReply *r = NULL;
        assert_status(redtls_conn_command(f->conn, &r, "LRANGE k 0 -1"), REDTLS_OK);
        assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_ARRAY);
        assert_int_equal(redtls_reply_len(r), sizes[k]);
        for (size_t i = 0; i < sizes[k]; i++) {
            const redisReply *e = redtls_reply_element(r, i);
            assert_non_null(e);
            if (i % 2) {
                assert_true(redtls_reply_integer(e) == (long long)i);
            } else {
                char v[32];
                snprintf(v, sizeof v, "v%zu", i);
                assert_string_equal(redtls_reply_str(e, NULL), v);
            }
        }
        assert_null(redtls_reply_element(r, sizes[k]));
        redtls_reply_free(r);
    }
}

/* Reads that find data never wait, so the deadline must be checked between
 * them: a server that keeps sending is still cut off. */
static void test_conn_deadline_with_data_flowing(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_EOF);
    unit_push(f->t, "*3\r\n");
    unit_push(f->t, ":1\r\n");
    unit_push(f->t, ":2\r\n");
    unit_push(f->t, ":3\r\n");
    assert_status(redtls_conn_append(f->conn, "LRANGE l 0 -1"), REDTLS_OK);
    redisReply *r = NULL;
    assert_status(redtls__conn_read(f->conn, redtls__now_ms() - 1, 0, &r), REDTLS_E_COMMAND_TIMEOUT);
    assert_null(r);
    assert_contains(redtls_conn_errmsg(f->conn), "within the command timeout");
    assert_int_equal(redtls_conn_is_connected(f->conn), 0);
}

/* A never-ending array of small elements is stopped by the memory the
 * objects take, long before the element count limit. */
static void test_conn_object_memory_counts(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_max_buffer(f->cfg, 64 * 1024), REDTLS_OK);
    fx_open(f, REDTLS_E_EOF);
    unit_push(f->t, "*1000000\r\n");
    for (int i = 0; i < 2000; i++)
        unit_push(f->t, ":1\r\n:1\r\n:1\r\n:1\r\n:1\r\n");
    redisReply *r = NULL;
    assert_status(redtls_conn_command(f->conn, &r, "LRANGE l 0 -1"), REDTLS_E_LIMIT);
    assert_contains(redtls_conn_errmsg(f->conn), "unfinished reply");
    assert_dropped(f->conn);
}

static void test_conn_endless_line(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_EOF);
    unit_push(f->t, "+");
    static char a[4096];
    memset(a, 'a', sizeof a);
    for (int i = 0; i < 20; i++)
        assert_status(redtls__mem_push(f->t, a, sizeof a), REDTLS_OK);
    redisReply *r = NULL;
    assert_status(redtls_conn_command(f->conn, &r, "PING"), REDTLS_E_LIMIT);
    assert_contains(redtls_conn_errmsg(f->conn), "reply line longer than 65536 bytes");
}

static void test_conn_eof_mid_reply(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_EOF);
    unit_push(f->t, "*2\r\n$5\r\nhel");
    redisReply *r = NULL;
    /* The command was written, so its fate is unknown; the cause stays
     * in the message. */
    assert_status(redtls_conn_command(f->conn, &r, "X"), REDTLS_E_OUTCOME_UNKNOWN);
    assert_null(r);
    assert_contains(redtls_conn_errmsg(f->conn), "server closed the connection");
    assert_dropped(f->conn);
}

static void test_conn_eof_before_reply(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_EOF);
    redisReply *r = NULL;
    assert_status(redtls_conn_command(f->conn, &r, "X"), REDTLS_E_OUTCOME_UNKNOWN);
    assert_contains(redtls_conn_errmsg(f->conn), "may or may not have run");
    assert_dropped(f->conn);
}

static void test_conn_clean_close_while_owed(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_CLOSED);
    unit_push(f->t, ":1");
    redisReply *r = NULL;
    assert_status(redtls_conn_command(f->conn, &r, "X"), REDTLS_E_OUTCOME_UNKNOWN);
    assert_contains(redtls_conn_errmsg(f->conn), "closed the connection");
    assert_dropped(f->conn);
}

static void test_conn_command_timeout(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_COMMAND_TIMEOUT);
    unit_push(f->t, "+PON");
    redisReply *r = NULL;
    assert_status(redtls_conn_command(f->conn, &r, "PING"), REDTLS_E_COMMAND_TIMEOUT);
    assert_null(r);
    assert_string_equal(redtls_conn_errmsg(f->conn), "timed out waiting for the server");
    assert_dropped(f->conn);
}

static void test_conn_error_reply_is_ok(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_EOF);
    unit_push(f->t, "-ERR x\r\n+OK\r\n");
    redisReply *r = NULL;
    assert_status(redtls_conn_command(f->conn, &r, "BOGUS"), REDTLS_OK);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_ERROR);
    size_t len = 0;
    assert_string_equal(redtls_reply_str(r, &len), "ERR x");
    assert_int_equal(len, 5);
    redtls_reply_free(r);
    assert_string_equal(redtls_conn_errmsg(f->conn), "");
    assert_true(redtls_conn_is_connected(f->conn));
    assert_status(redtls_conn_command(f->conn, &r, "PING"), REDTLS_OK);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_STATUS);
    redtls_reply_free(r);
}

static void test_conn_pipeline_one_write(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_EOF);
    char expect[100 * 40];
    size_t elen = 0;
    char reply[32];
    for (int i = 0; i < 100; i++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "k%d", i);
        const char *argv[] = {"INCR", key};
        assert_status(redtls_conn_append_argv(f->conn, 2, argv, NULL), REDTLS_OK);
        elen += (size_t)snprintf(expect + elen, sizeof expect - elen, "*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n", kl, key);
        snprintf(reply, sizeof reply, ":%d\r\n", i * 3);
        unit_push(f->t, reply);
    }
    assert_int_equal(redtls_conn_pending(f->conn), 100);
    assert_int_equal(redtls__mem_write_calls(f->t), 0);
    for (int i = 0; i < 100; i++) {
        redisReply *r = NULL;
        assert_status(redtls_conn_get_reply(f->conn, &r), REDTLS_OK);
        assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_INTEGER);
        assert_true(redtls_reply_integer(r) == i * 3);
        redtls_reply_free(r);
        assert_int_equal(redtls__mem_write_calls(f->t), 1);
        assert_int_equal(redtls_conn_pending(f->conn), (size_t)(99 - i));
    }
    size_t wlen = 0;
    const char *w = redtls__mem_written(f->t, &wlen);
    assert_int_equal(wlen, elen);
    assert_memory_equal(w, expect, elen);

    redisReply *r = (redisReply *)1;
    assert_status(redtls_conn_get_reply(f->conn, &r), REDTLS_E_STATE);
    assert_null(r);
    assert_string_equal(redtls_conn_errmsg(f->conn), "no reply is pending");
    assert_true(redtls_conn_is_connected(f->conn));
}

static void test_conn_get_reply_nothing_pending(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_EOF);
    redisReply *r = (redisReply *)1;
    assert_status(redtls_conn_get_reply(f->conn, &r), REDTLS_E_STATE);
    assert_null(r);
    assert_true(redtls_conn_is_connected(f->conn));
    assert_int_equal(redtls__mem_write_calls(f->t), 0);
}

static void test_conn_command_while_pipelined(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_EOF);
    unit_push(f->t, "+A\r\n+B\r\n");
    assert_status(redtls_conn_append(f->conn, "SET a %d", 1), REDTLS_OK);
    redisReply *r = (redisReply *)1;
    assert_status(redtls_conn_command(f->conn, &r, "GET a"), REDTLS_E_STATE);
    assert_null(r);
    assert_contains(redtls_conn_errmsg(f->conn), "1 pipelined replies are pending");
    const char *argv[] = {"GET", "a"};
    assert_status(redtls_conn_command_argv(f->conn, 2, argv, NULL, &r), REDTLS_E_STATE);
    /* The refused command was neither queued nor written. */
    assert_int_equal(redtls_conn_pending(f->conn), 1);
    assert_true(redtls_conn_is_connected(f->conn));
    assert_status(redtls_conn_get_reply(f->conn, &r), REDTLS_OK);
    assert_string_equal(redtls_reply_str(r, NULL), "A");
    redtls_reply_free(r);
    size_t wlen = 0;
    const char *w = redtls__mem_written(f->t, &wlen);
    const char want[] = "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n";
    assert_int_equal(wlen, sizeof want - 1);
    assert_memory_equal(w, want, wlen);
    /* Idle again: commands work. */
    assert_status(redtls_conn_command(f->conn, &r, "GET a"), REDTLS_OK);
    assert_string_equal(redtls_reply_str(r, NULL), "B");
    redtls_reply_free(r);
}

static void test_conn_binary_argv(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_EOF);
    unit_push(f->t, "+OK\r\n+OK\r\n");
    const char *argv[] = {"SET", "bin\0key", "\0\r\n\0"};
    const size_t lens[] = {3, 7, 4};
    redisReply *r = NULL;
    assert_status(redtls_conn_command_argv(f->conn, 3, argv, lens, &r), REDTLS_OK);
    redtls_reply_free(r);
    const char want[] = "*3\r\n$3\r\nSET\r\n$7\r\nbin\0key\r\n$4\r\n\0\r\n\0\r\n";
    size_t wlen = 0;
    const char *w = redtls__mem_written(f->t, &wlen);
    assert_int_equal(wlen, sizeof want - 1);
    assert_memory_equal(w, want, wlen);

    /* %b in the printf form is binary safe too. */
    assert_status(redtls_conn_command(f->conn, &r, "SET %b %b", "a\0", (size_t)2, "\0", (size_t)1), REDTLS_OK);
    redtls_reply_free(r);
    const char want2[] = "*3\r\n$3\r\nSET\r\n$2\r\na\0\r\n$1\r\n\0\r\n";
    w = redtls__mem_written(f->t, &wlen);
    assert_int_equal(wlen, sizeof want - 1 + sizeof want2 - 1);
    assert_memory_equal(w + sizeof want - 1, want2, sizeof want2 - 1);
}

static void test_conn_invalid_arguments(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_EOF);
    redisReply *r = (redisReply *)1;
    assert_status(redtls_conn_command_argv(f->conn, 0, NULL, NULL, &r), REDTLS_E_INVALID);
    assert_null(r);
    assert_status(redtls_conn_command(NULL, &r, "PING"), REDTLS_E_INVALID);
    assert_status(redtls_conn_command(f->conn, NULL, "PING"), REDTLS_E_INVALID);
    assert_status(redtls_conn_get_reply(f->conn, NULL), REDTLS_E_INVALID);
    assert_status(redtls_conn_append(f->conn, NULL), REDTLS_E_INVALID);
    assert_int_equal(redtls_conn_pending(f->conn), 0);
    assert_int_equal(redtls__mem_write_calls(f->t), 0);
    assert_true(redtls_conn_is_connected(f->conn));
}

/* RESP3 frames a server may send unasked. hiredis 0.14 knows none of
 * them (a protocol error at the type byte); hiredis 1.x parses them, and
 * then the same early limits hold as for RESP2, and a push never stands in
 * for a reply. */
#if defined(HIREDIS_MAJOR) && HIREDIS_MAJOR >= 1
#define RESP3_PARSED 1
#else
#define RESP3_PARSED 0
#endif

/* Feeds type then chunks of c until get() fails or max bytes went in;
 * returns the status and the bytes fed. */
static redtls_status feed_endless(const char *type, char c, size_t max, size_t *fed, char *err)
{
    redtls__reader rd;
    redtls__limits l = default_limits();
    assert_status(redtls__reader_init(&rd, &l), REDTLS_OK);
    static char chunk[4096];
    memset(chunk, c, sizeof chunk);
    redtls_status st = redtls__reader_feed(&rd, type, strlen(type), err);
    *fed = strlen(type);
    redisReply *r = NULL;
    while (st == REDTLS_OK && (st = redtls__reader_get(&rd, &r, err)) == REDTLS_OK && *fed < max) {
        assert_null(r);
        st = redtls__reader_feed(&rd, chunk, sizeof chunk, err);
        *fed += sizeof chunk;
    }
    redtls__reader_free(&rd);
    return st;
}

static void test_reader_resp3_lines_bounded(void **state)
{
    (void)state;
    static const char *const lines[] = {",", "(", "#", "_"};
    for (size_t i = 0; i < 4; i++) {
        char err[REDTLS__ERRMSG_MAX] = "";
        size_t fed = 0;
        redtls_status st = feed_endless(lines[i], lines[i][0] == ',' ? '1' : '9', 8u << 20, &fed, err);
        if (RESP3_PARSED) {
            assert_status(st, REDTLS_E_LIMIT);
            assert_contains(err, "reply line longer than 65536 bytes");
            assert_true(fed <= 65536 + 2 * 4096);
        } else {
            assert_status(st, REDTLS_E_PROTOCOL);
            assert_true(fed <= 4096 + 1);
        }
    }
}

static void test_reader_resp3_headers_bounded(void **state)
{
    (void)state;
    static const char *const headers[] = {"%", "~", ">", "="};
    for (size_t i = 0; i < 4; i++) {
        char err[REDTLS__ERRMSG_MAX] = "";
        size_t fed = 0;
        redtls_status st = feed_endless(headers[i], '7', 8u << 20, &fed, err);
        assert_status(st, REDTLS_E_PROTOCOL);
        assert_true(fed <= 4096 + 1);
        if (RESP3_PARSED)
            assert_contains(err, "length line too long");
    }
    /* Counts and lengths over the limits are refused as soon as they are
     * read, before anything is allocated for them. */
    static const char *const huge[] = {"%4294967295\r\n", "~4294967295\r\n", ">4294967295\r\n",
                                       "=4294967295\r\ntxt:"};
    for (size_t i = 0; i < 4; i++) {
        char err[REDTLS__ERRMSG_MAX] = "";
        redisReply *r = NULL;
        redtls__limits l = small_limits(1000, 1000, 1u << 20);
        redtls_status st = parse_with(&l, huge[i], strlen(huge[i]), &r, err);
        assert_null(r);
        assert_status(st, RESP3_PARSED ? REDTLS_E_LIMIT : REDTLS_E_PROTOCOL);
    }
    /* A map counts its keys and values against the element limit. */
    char err[REDTLS__ERRMSG_MAX] = "";
    redisReply *r = NULL;
    redtls__limits l = small_limits(4, 1000, 1u << 20);
    const char map3[] = "%3\r\n+a\r\n:1\r\n+b\r\n:2\r\n+c\r\n:3\r\n";
    assert_status(parse_with(&l, map3, sizeof map3 - 1, &r, err), RESP3_PARSED ? REDTLS_E_LIMIT : REDTLS_E_PROTOCOL);
    assert_null(r);
}

static void test_reader_push_is_not_a_reply(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    redtls__reader rd;
    redtls__limits l = default_limits();
    assert_status(redtls__reader_init(&rd, &l), REDTLS_OK);
    const char text[] = ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n+OK\r\n>3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n:7\r\n";
    assert_status(redtls__reader_feed(&rd, text, sizeof text - 1, err), REDTLS_OK);
    redisReply *r = NULL;
    redtls_status st = redtls__reader_get(&rd, &r, err);
    if (RESP3_PARSED) {
        assert_status(st, REDTLS_OK);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_STATUS);
        assert_string_equal(r->str, "OK");
        freeReplyObject(r);
        assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        assert_int_equal(r->integer, 7);
        freeReplyObject(r);
        /* A push alone is no reply: more bytes are needed. */
        const char alone[] = ">1\r\n+x\r\n";
        assert_status(redtls__reader_feed(&rd, alone, sizeof alone - 1, err), REDTLS_OK);
        assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
        assert_null(r);
    } else {
        assert_status(st, REDTLS_E_PROTOCOL);
        assert_null(r);
    }
    redtls__reader_free(&rd);
}

/* A HELLO asking for RESP3 is refused before anything is written, and
 * takes nothing else queued with it. */
static void test_conn_hello_resp3_refused(void **state)
{
    fx *f = *state;
    fx_open(f, REDTLS_E_EOF);
    redisReply *r = (redisReply *)1;
    assert_status(redtls_conn_command(f->conn, &r, "HELLO 3"), REDTLS_E_INVALID);
    assert_null(r);
    assert_contains(redtls_conn_errmsg(f->conn), "RESP2");
    const char *argv[] = {"HELLO", "3", "AUTH", "default", "secret-token"};
    assert_status(redtls_conn_command_argv(f->conn, 5, argv, NULL, &r), REDTLS_E_INVALID);
    assert_int_equal(redtls_conn_pending(f->conn), 0);
    assert_int_equal(redtls__mem_write_calls(f->t), 0);
    /* In a pipeline: the commands around it stay. */
    assert_status(redtls_conn_append(f->conn, "GET a"), REDTLS_OK);
    assert_status(redtls_conn_append(f->conn, "HELLO %d", 3), REDTLS_E_INVALID);
    assert_status(redtls_conn_append_argv(f->conn, 5, argv, NULL), REDTLS_E_INVALID);
    assert_status(redtls_conn_append(f->conn, "GET b"), REDTLS_OK);
    assert_int_equal(redtls_conn_pending(f->conn), 2);
    unit_push(f->t, "$1\r\nA\r\n$1\r\nB\r\n");
    assert_status(redtls_conn_get_reply(f->conn, &r), REDTLS_OK);
    assert_string_equal(r->str, "A");
    redtls_reply_free(r);
    assert_status(redtls_conn_get_reply(f->conn, &r), REDTLS_OK);
    assert_string_equal(r->str, "B");
    redtls_reply_free(r);
    size_t wlen = 0;
    const char *w = redtls__mem_written(f->t, &wlen);
    const char want[] = "*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n";
    assert_int_equal(wlen, sizeof want - 1);
    assert_memory_equal(w, want, wlen);
    /* RESP2 explicitly, or no version, goes through. */
    unit_push(f->t, "*0\r\n");
    assert_status(redtls_conn_command(f->conn, &r, "HELLO 2"), REDTLS_OK);
    redtls_reply_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_simple_types),
        cmocka_unit_test(test_reader_incomplete_then_complete),
        cmocka_unit_test(test_reader_huge_array_count_no_allocation),
        cmocka_unit_test(test_reader_huge_array_count_is_limit),
        cmocka_unit_test(test_reader_array_count_above_limit),
        cmocka_unit_test(test_reader_negative_array_count),
        cmocka_unit_test(test_reader_max_elements_boundary),
        cmocka_unit_test(test_reader_pending_bulk_refused_early),
        cmocka_unit_test(test_reader_pending_bulk_with_plus_sign),
        cmocka_unit_test(test_reader_bulk_boundary),
        cmocka_unit_test(test_reader_max_buffer),
        cmocka_unit_test(test_reader_non_digit_lengths),
        cmocka_unit_test(test_reader_bad_type_byte),
        cmocka_unit_test(test_reader_fast_path_agrees),
        cmocka_unit_test(test_reader_depth),
        cmocka_unit_test(test_format_argv_binary),
        cmocka_unit_test(test_buf_append_growth),
        cmocka_unit_test_setup_teardown(test_conn_huge_array_count, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_max_elements_exact, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_negative_array_count, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_pending_bulk, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_bulk_limits, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_bulk_header_only_over_limit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_max_buffer_endless_line, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_non_digit_lengths, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_depth, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_nested_mixed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_byte_by_byte, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_array_growth, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_deadline_with_data_flowing, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_object_memory_counts, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_endless_line, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_eof_mid_reply, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_eof_before_reply, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_clean_close_while_owed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_command_timeout, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_error_reply_is_ok, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_pipeline_one_write, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_get_reply_nothing_pending, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_command_while_pipelined, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_binary_argv, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conn_invalid_arguments, fx_setup, fx_teardown),
        cmocka_unit_test(test_reader_resp3_lines_bounded),
        cmocka_unit_test(test_reader_resp3_headers_bounded),
        cmocka_unit_test(test_reader_push_is_not_a_reply),
        cmocka_unit_test_setup_teardown(test_conn_hello_resp3_refused, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("reader", tests, NULL, NULL);
}

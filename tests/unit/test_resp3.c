/* RESP3 (protocol 3) without a server: the reader's claim hook and every
 * RESP3 reply kind through the public accessors (lib/protocol/reader.c,
 * reply.c), hostile RESP3 input against the reader's limits, the HELLO 3
 * set-up with token rotation stepped on the memory transport
 * (lib/session/setup.c, auth.c), and a connection's push dispatch
 * (conn_io.c): pushes and attributes between pipelined replies, the
 * Pub/Sub hook first, kept across a new transport. Built against hiredis
 * 0.14, which cannot parse RESP3, only the cases that do not need it run
 * (the others are skipped, saying so); the hiredis 1.x build runs all. */
#include "unit_util.h"

#include <math.h>
#include <poll.h>
#include <sys/socket.h>

#include "reader.h"

#if defined(HIREDIS_MAJOR) && HIREDIS_MAJOR >= 1
#define RESP3_PARSED 1
#else
#define RESP3_PARSED 0
#endif

#define NEED_RESP3()                                                                                                   \
    do {                                                                                                               \
        if (!RESP3_PARSED) {                                                                                           \
            print_message("skipped: built against hiredis %d.%d, which cannot parse RESP3\n", HIREDIS_MAJOR,           \
                          HIREDIS_MINOR);                                                                              \
            skip();                                                                                                    \
        }                                                                                                              \
    } while (0)

#define T0 1000000
#define T1 "first-token-AAAAAAAA"
#define T2 "second-token-BBBBBBB"
#define WRONGPASS "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
#define HELLO_OK "%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n"
#define HELLO_AUTH(user, tok) "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$" user "\r\n$20\r\n" tok "\r\n"
#define HELLO_AUTH_NAME(user, tok)                                                                                     \
    "*7\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$" user "\r\n$20\r\n" tok "\r\n$7\r\nSETNAME\r\n$2\r\nw7\r\n"

static redtls__limits default_limits(void)
{
    redtls__limits l = {REDTLS_DEFAULT_MAX_ARRAY_ELEMENTS, REDTLS_DEFAULT_MAX_BULK_LEN, REDTLS_DEFAULT_MAX_BUFFER};
    return l;
}

/* What a claim hook or push callback was given. */
typedef struct seen {
    int n;
    int types[16];
    char first[16][32]; /* first element's text, or "" */
    int replies_at[16]; /* how many replies the test had taken by then */
    int replies;        /* kept up to date by the test */
    int take;           /* claim: 1 takes every reply offered */
    int take_messages;  /* claim: takes arrays whose first element is "message" */
} seen;

static void note(seen *s, const redisReply *r)
{
    assert_true(s->n < 16);
    s->types[s->n] = r->type;
    const char *t = redtls_reply_str(redtls_reply_element(r, 0), NULL);
    snprintf(s->first[s->n], sizeof s->first[0], "%s", t ? t : "");
    s->replies_at[s->n] = s->replies;
    s->n++;
}

static int claim_note(void *ud, redisReply *r)
{
    seen *s = ud;
    int message = (r->type == REDIS_REPLY_ARRAY || r->type == REDTLS_REPLY_PUSH) && redtls_reply_len(r) == 3 &&
                  redtls_reply_str(redtls_reply_element(r, 0), NULL) &&
                  strcmp(redtls_reply_str(redtls_reply_element(r, 0), NULL), "message") == 0;
    if (!s->take && !(s->take_messages && message))
        return 0;
    note(s, r);
    redtls_reply_free(r);
    return 1;
}

static void push_note(void *ud, const struct redisReply *r)
{
    note(ud, r);
}

/* Feeds text to a fresh reader (claim: c, if any) and takes one reply. */
static redtls_status parse_claimed(const char *text, size_t n, redtls__reader_claim_fn c, seen *s, redisReply **out,
                                   char *err)
{
    redtls__reader rd;
    redtls__limits l = default_limits();
    assert_status(redtls__reader_init(&rd, &l), REDTLS_OK);
    rd.claim = c;
    rd.claim_ud = s;
    redtls_status st = redtls__reader_feed(&rd, text, n, err);
    *out = NULL;
    if (st == REDTLS_OK)
        st = redtls__reader_get(&rd, out, err);
    redtls__reader_free(&rd);
    return st;
}

static redtls_status parse3(const char *text, redisReply **out, char *err)
{
    return parse_claimed(text, strlen(text), NULL, NULL, out, err);
}

/* ---- every RESP3 kind through the accessors ---- */

static void test_every_kind_through_the_accessors(void **state)
{
    (void)state;
    NEED_RESP3();
    char err[REDTLS__ERRMSG_MAX] = "";
    redisReply *r = NULL;
    size_t len = 0;

    assert_status(parse3(",3.25\r\n", &r, err), REDTLS_OK);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_DOUBLE);
    assert_true(redtls_reply_double(r) == 3.25);
    assert_string_equal(redtls_reply_str(r, &len), "3.25");
    assert_int_equal(len, 4);
    assert_int_equal(redtls_reply_integer(r), 0);
    assert_int_equal(redtls_reply_bool(r), -1);
    redtls_reply_free(r);

    static const char *const specials[] = {",inf\r\n", ",-inf\r\n", ",nan\r\n"};
    for (int i = 0; i < 3; i++) {
        assert_status(parse3(specials[i], &r, err), REDTLS_OK);
        double d = redtls_reply_double(r);
        assert_true(i == 2 ? isnan(d) : isinf(d) && (i == 0) == (d > 0));
        redtls_reply_free(r);
    }

    assert_status(parse3("#t\r\n", &r, err), REDTLS_OK);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_BOOL);
    assert_int_equal(redtls_reply_bool(r), 1);
    assert_null(redtls_reply_str(r, &len));
    assert_int_equal(len, 0);
    redtls_reply_free(r);
    assert_status(parse3("#f\r\n", &r, err), REDTLS_OK);
    assert_int_equal(redtls_reply_bool(r), 0);
    redtls_reply_free(r);

    assert_status(parse3("(-3492890328409238509324850943850943825024385\r\n", &r, err), REDTLS_OK);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_BIGNUM);
    assert_string_equal(redtls_reply_str(r, NULL), "-3492890328409238509324850943850943825024385");
    redtls_reply_free(r);

    assert_status(parse3("=15\r\ntxt:Some string\r\n", &r, err), REDTLS_OK);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_VERB);
    assert_string_equal(redtls_reply_str(r, &len), "Some string");
    assert_int_equal(len, 11);
    assert_string_equal(redtls_reply_verbatim_format(r), "txt");
    redtls_reply_free(r);
    assert_status(parse3("=8\r\nmkd:# hi\r\n", &r, err), REDTLS_OK);
    assert_string_equal(redtls_reply_verbatim_format(r), "mkd");
    assert_string_equal(redtls_reply_str(r, NULL), "# hi");
    redtls_reply_free(r);

    assert_status(parse3("_\r\n", &r, err), REDTLS_OK);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_NIL);
    redtls_reply_free(r);

    /* A map: keys and values interleaved, twice as many elements as
     * pairs. */
    assert_status(parse3("%2\r\n+first\r\n:1\r\n+second\r\n,2.5\r\n", &r, err), REDTLS_OK);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_MAP);
    assert_int_equal(redtls_reply_len(r), 4);
    assert_string_equal(redtls_reply_str(redtls_reply_element(r, 0), NULL), "first");
    assert_int_equal(redtls_reply_integer(redtls_reply_element(r, 1)), 1);
    assert_string_equal(redtls_reply_str(redtls_reply_element(r, 2), NULL), "second");
    assert_true(redtls_reply_double(redtls_reply_element(r, 3)) == 2.5);
    assert_null(redtls_reply_element(r, 4));
    redtls_reply_free(r);

    assert_status(parse3("~3\r\n+a\r\n+b\r\n#t\r\n", &r, err), REDTLS_OK);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_SET);
    assert_int_equal(redtls_reply_len(r), 3);
    assert_int_equal(redtls_reply_bool(redtls_reply_element(r, 2)), 1);
    redtls_reply_free(r);

    /* Accessors on the wrong kind, and on NULL. */
    assert_int_equal(redtls_reply_bool(NULL), -1);
    assert_true(redtls_reply_double(NULL) == 0.0);
    assert_null(redtls_reply_verbatim_format(NULL));
    assert_int_equal(redtls_reply_len(NULL), 0);
    assert_null(redtls_reply_element(NULL, 0));
    assert_status(parse3(":7\r\n", &r, err), REDTLS_OK);
    assert_true(redtls_reply_double(r) == 0.0);
    assert_int_equal(redtls_reply_bool(r), -1);
    assert_null(redtls_reply_verbatim_format(r));
    assert_int_equal(redtls_reply_len(r), 0);
    redtls_reply_free(r);
}

/* ---- the claim hook ---- */

static void test_push_and_attribute_offered_to_claim(void **state)
{
    (void)state;
    NEED_RESP3();
    char err[REDTLS__ERRMSG_MAX] = "";
    seen s = {.take = 1};
    redisReply *r = NULL;
    const char text[] = ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"
                        "|1\r\n+key-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n"
                        "$2\r\nv1\r\n";
    assert_status(parse_claimed(text, sizeof text - 1, claim_note, &s, &r, err), REDTLS_OK);
    assert_string_equal(redtls_reply_str(r, NULL), "v1");
    redtls_reply_free(r);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.types[0], REDTLS_REPLY_PUSH);
    assert_string_equal(s.first[0], "invalidate");
    assert_int_equal(s.types[1], REDTLS_REPLY_ATTR);
    assert_string_equal(s.first[1], "key-popularity");

    /* Left by the claim (or without one), pushes and attributes are
     * freed, never returned. */
    seen none = {0};
    assert_status(parse_claimed(text, sizeof text - 1, claim_note, &none, &r, err), REDTLS_OK);
    assert_string_equal(redtls_reply_str(r, NULL), "v1");
    redtls_reply_free(r);
    assert_int_equal(none.n, 0);
    assert_status(parse_claimed(text, sizeof text - 1, NULL, NULL, &r, err), REDTLS_OK);
    assert_string_equal(redtls_reply_str(r, NULL), "v1");
    redtls_reply_free(r);
}

/* An attribute arriving a byte at a time is still an attribute, through
 * both the fast path and hiredis alone; one nested inside an aggregate is
 * a protocol error (hiredis 1.2 does not know the type). */
static void test_attribute_in_pieces_and_nested(void **state)
{
    (void)state;
    NEED_RESP3();
    /* After a reply, hiredis alone sets up the next reply's task on a call
     * that finds no byte yet: the attribute's '|' must still be known as
     * the top level's (fuzz_reply found it). */
    const char text[] = "+first\r\n|1\r\n+ttl\r\n:3600\r\n+OK\r\n";
    for (int slow = 0; slow < 2; slow++) {
        char err[REDTLS__ERRMSG_MAX] = "";
        seen s = {.take = 1};
        redtls__reader rd;
        redtls__limits l = default_limits();
        assert_status(redtls__reader_init(&rd, &l), REDTLS_OK);
        rd.slow_only = slow;
        rd.claim = claim_note;
        rd.claim_ud = &s;
        redisReply *got[2] = {NULL, NULL};
        int n = 0;
        for (size_t i = 0; i < sizeof text - 1; i++) {
            redisReply *r = NULL;
            assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK); /* nothing new yet */
            assert_null(r);
            assert_status(redtls__reader_feed(&rd, text + i, 1, err), REDTLS_OK);
            assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
            if (r) {
                assert_true(n < 2);
                got[n++] = r;
            }
        }
        assert_int_equal(n, 2);
        assert_string_equal(redtls_reply_str(got[0], NULL), "first");
        assert_string_equal(redtls_reply_str(got[1], NULL), "OK");
        redtls_reply_free(got[0]);
        redtls_reply_free(got[1]);
        assert_int_equal(s.n, 1);
        assert_int_equal(s.types[0], REDTLS_REPLY_ATTR);
        assert_string_equal(s.first[0], "ttl");
        redtls__reader_free(&rd);
    }
    char err[REDTLS__ERRMSG_MAX] = "";
    redisReply *r = NULL;
    assert_status(parse3("*2\r\n|1\r\n+a\r\n+b\r\n+c\r\n+d\r\n", &r, err), REDTLS_E_PROTOCOL);
    assert_null(r);
    assert_contains(err, "invalid reply from the server");
}

/* RESP2 arrays while claim_arrays is set (a subscribed connection):
 * offered, and when left, the command's reply. Works with any hiredis. */
static void test_claim_arrays(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    seen s = {.take_messages = 1};
    redtls__reader rd;
    redtls__limits l = default_limits();
    assert_status(redtls__reader_init(&rd, &l), REDTLS_OK);
    rd.claim = claim_note;
    rd.claim_ud = &s;
    rd.claim_arrays = 1;
    const char text[] = "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nm1\r\n+OK\r\n"
                        "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nm2\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n";
    assert_status(redtls__reader_feed(&rd, text, sizeof text - 1, err), REDTLS_OK);
    redisReply *r = NULL;
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_STATUS);
    redtls_reply_free(r);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_ARRAY);
    assert_int_equal(redtls_reply_len(r), 2);
    redtls_reply_free(r);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.first[0], "message");
    /* Without claim_arrays an array is a reply, as always. */
    rd.claim_arrays = 0;
    assert_status(redtls__reader_feed(&rd, text, 40, err), REDTLS_OK);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_ARRAY);
    redtls_reply_free(r);
    assert_int_equal(s.n, 2);
    redtls__reader_free(&rd);
}

/* ---- hostile RESP3 ---- */

static void test_hostile_resp3(void **state)
{
    (void)state;
    NEED_RESP3();
    static const struct {
        const char *text;
        redtls_status want;
        const char *msg;
    } cases[] = {
        {"%4611686018427387904\r\n", REDTLS_E_LIMIT, "map element count (keys and values)"},
        {"%9000000\r\n", REDTLS_E_LIMIT, "map element count (keys and values) 18000000 exceeds the limit of"},
        {"~99999999\r\n", REDTLS_E_LIMIT, "set element count 99999999 exceeds"},
        {">99999999\r\n", REDTLS_E_LIMIT, "push element count 99999999 exceeds"},
        {"|99999999\r\n", REDTLS_E_LIMIT, "map element count (keys and values) 199999998 exceeds"},
        {"=999999999999\r\ntxt:", REDTLS_E_LIMIT, "bulk string of 999999999999 bytes exceeds the limit"},
        {"=3\r\ntxt\r\n", REDTLS_E_PROTOCOL, "Verbatim string 4 bytes of content type"},
        {"=5\r\ntxt-x\r\n", REDTLS_E_PROTOCOL, "Verbatim string 4 bytes of content type"},
        {",1e999\r\n", REDTLS_E_PROTOCOL, "Bad double value"},
        {",infinity\r\n", REDTLS_E_PROTOCOL, "Bad double value"},
        {",1.5x\r\n", REDTLS_E_PROTOCOL, "Bad double value"},
        {"#x\r\n", REDTLS_E_PROTOCOL, "Bad bool value"},
        {"#tt\r\n", REDTLS_E_PROTOCOL, "Bad bool value"},
        {"(12a\r\n", REDTLS_E_PROTOCOL, "Bad bignum value"},
        {">1\r\n>1\r\n>1\r\n>1\r\n>1\r\n>1\r\n>1\r\n>1\r\n+deep\r\n", REDTLS_E_LIMIT, "reply nesting depth 8"},
        {"%1\r\n%1\r\n%1\r\n%1\r\n%1\r\n%1\r\n%1\r\n%1\r\n", REDTLS_E_LIMIT, "reply nesting depth 8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[REDTLS__ERRMSG_MAX] = "";
        redisReply *r = NULL;
        seen s = {.take = 1};
        redtls_status st = parse_claimed(cases[i].text, strlen(cases[i].text), claim_note, &s, &r, err);
        if (st != cases[i].want || !strstr(err, cases[i].msg))
            fail_msg("case %zu (%s): %s \"%s\", expected %s \"%s\"", i, cases[i].text, redtls_strerror(st), err,
                     redtls_strerror(cases[i].want), cases[i].msg);
        assert_null(r);
        assert_int_equal(s.n, 0);
    }
    /* A double's text is bounded (hiredis: 325 characters). */
    char big[400] = ",";
    memset(big + 1, '1', 330);
    strcpy(big + 331, "\r\n");
    char err[REDTLS__ERRMSG_MAX] = "";
    redisReply *r = NULL;
    assert_status(parse3(big, &r, err), REDTLS_E_PROTOCOL);
    assert_contains(err, "Double value is too large");
}

/* ---- the set-up under RESP3, on the memory transport ---- */

static redtls_config *resp3_config(void)
{
    redtls_config *cfg = unit_plain_config();
    assert_status(redtls_config_set_protocol(cfg, 3), REDTLS_OK);
    return cfg;
}

static void assert_written(redtls__transport *t, const char *want)
{
    size_t len = 0;
    const char *w = redtls__mem_written(t, &len);
    if (len != strlen(want) || memcmp(w, want, len) != 0)
        fail_msg("written \"%.*s\", expected \"%s\"", (int)len, w, want);
}

/* Steps the set-up with the answers queued already; done or failed. */
static redtls_status run_setup(redtls_conn *c)
{
    int done = 0;
    redtls__wait w;
    redtls_status st = redtls__setup_start(c, T0, T0 + 1000);
    for (int i = 0; st == REDTLS_OK && !done && i < 20; i++)
        st = redtls__setup_step(c, T0, T0 + 1000, &done, &w);
    if (st == REDTLS_OK && !done)
        fail_msg("the set-up waits for more: %s", redtls_conn_errmsg(c));
    return st;
}

static void test_hello_rotation(void **state)
{
    (void)state;
    NEED_RESP3();
    redtls_config *cfg = resp3_config();
    assert_status(redtls_config_set_token(cfg, T1), REDTLS_OK);
    assert_status(redtls_config_set_token_alt(cfg, T2), REDTLS_OK);
    assert_status(redtls_config_set_client_name(cfg, "w7"), REDTLS_OK);
    assert_status(redtls_config_set_db(cfg, 2), REDTLS_OK);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    unit_push(t, WRONGPASS HELLO_OK "+OK\r\n");
    assert_status(run_setup(c), REDTLS_OK);
    /* One HELLO per token, each naming the client; SELECT after. */
    assert_written(t, HELLO_AUTH_NAME("7\r\ndefault", T1)
                          HELLO_AUTH_NAME("7\r\ndefault", T2) "*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n");
    assert_int_equal(redtls_conn_preferred_token(c), 2);
    redtls_conn_free(c);

    /* Both refused: AUTH's message, no token in it. */
    c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    unit_push(t, WRONGPASS WRONGPASS);
    assert_status(run_setup(c), REDTLS_E_AUTH);
    assert_contains(redtls_conn_errmsg(c), "AUTH refused by the server for both tokens");
    assert_not_contains(redtls_conn_errmsg(c), T1);
    assert_not_contains(redtls_conn_errmsg(c), T2);
    redtls_conn_free(c);

    /* An ACL user is named. */
    assert_status(redtls_config_set_user(cfg, "alice"), REDTLS_OK);
    assert_status(redtls_config_set_token_alt(cfg, NULL), REDTLS_OK);
    assert_status(redtls_config_set_client_name(cfg, NULL), REDTLS_OK);
    assert_status(redtls_config_set_db(cfg, 0), REDTLS_OK);
    c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    unit_push(t, HELLO_OK);
    assert_status(run_setup(c), REDTLS_OK);
    assert_written(t, HELLO_AUTH("5\r\nalice", T1));
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* A server without HELLO (it echoes the arguments, the token among them),
 * one refusing protocol 3, one answering in another protocol. */
static void test_hello_not_spoken(void **state)
{
    (void)state;
    NEED_RESP3();
    static const struct {
        const char *answer;
        const char *msg;
    } cases[] = {
        {"-ERR unknown command 'HELLO', with args beginning with: '3' 'AUTH' 'default' '" T1 "' \r\n",
         "RESP3 needs Redis 6 or later (or Valkey); use protocol 2 with this server"},
        {"-NOPROTO sorry, this protocol version is not supported.\r\n", "the server refused protocol 3 (NOPROTO"},
        {"*4\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:2\r\n",
         "the server's answer to HELLO 3 is not a map with \"proto\" 3 (reply kind 2)"},
        {"%1\r\n$5\r\nproto\r\n:2\r\n", "the server answered HELLO 3 with protocol 2, not 3"},
        {"+OK\r\n", "is not a map"},
    };
    for (int creds = 0; creds < 2; creds++) {
        redtls_config *cfg = resp3_config();
        if (creds)
            assert_status(redtls_config_set_token(cfg, T1), REDTLS_OK);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            redtls__transport *t;
            redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
            unit_push(t, cases[i].answer);
            assert_status(run_setup(c), REDTLS_E_SETUP);
            assert_contains(redtls_conn_errmsg(c), cases[i].msg);
            assert_not_contains(redtls_conn_errmsg(c), T1);
            redtls_conn_free(c);
        }
        redtls_config_free(cfg);
    }
}

/* Without credentials: a plain HELLO 3 with SETNAME; a server that wants
 * credentials says NOAUTH, an AUTH failure. */
static void test_hello_without_credentials(void **state)
{
    (void)state;
    NEED_RESP3();
    redtls_config *cfg = resp3_config();
    assert_status(redtls_config_set_client_name(cfg, "w7"), REDTLS_OK);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    unit_push(t, HELLO_OK);
    assert_status(run_setup(c), REDTLS_OK);
    assert_written(t, "*4\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$7\r\nSETNAME\r\n$2\r\nw7\r\n");
    redtls_conn_free(c);
    c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    unit_push(t, "-NOAUTH HELLO must be called with the client already authenticated\r\n");
    assert_status(run_setup(c), REDTLS_E_AUTH);
    assert_contains(redtls_conn_errmsg(c), "the server requires authentication and no credentials are configured");
    redtls_conn_free(c);
    /* Another refusal of HELLO is a set-up failure naming it. */
    c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    unit_push(t, "-ERR Invalid client name\r\n");
    assert_status(run_setup(c), REDTLS_E_SETUP);
    assert_string_equal(redtls_conn_errmsg(c), "HELLO refused by the server: ERR Invalid client name");
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

typedef struct cb_state {
    int calls;
    int pending;
} cb_state;

static int later_cb(void *ud, int attempt, char *user, size_t user_cap, char *token, size_t token_cap, char *errbuf,
                    size_t errbuf_cap)
{
    cb_state *s = ud;
    (void)errbuf;
    (void)errbuf_cap;
    s->calls++;
    if (s->pending > 0) {
        s->pending--;
        return REDTLS_CREDENTIAL_PENDING;
    }
    snprintf(user, user_cap, "svc");
    snprintf(token, token_cap, "%s", attempt ? T2 : T1);
    return 0;
}

/* The credential callback answers later, its first token is refused, the
 * second (asked with attempt 1) accepted: each goes out as HELLO AUTH. */
static void test_hello_with_credential_callback(void **state)
{
    (void)state;
    NEED_RESP3();
    redtls_config *cfg = resp3_config();
    cb_state s = {.pending = 2};
    assert_status(redtls_config_set_credential_callback(cfg, later_cb, &s), REDTLS_OK);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    unit_push(t, WRONGPASS HELLO_OK);
    int done = 0;
    redtls__wait w;
    int64_t now = T0;
    redtls_status st = redtls__setup_start(c, now, T0 + 1000);
    for (int i = 0; st == REDTLS_OK && !done && i < 50; i++) {
        st = redtls__setup_step(c, now, T0 + 1000, &done, &w);
        if (!done && w.at > now)
            now = w.at; /* the callback's next turn */
    }
    assert_status(st, REDTLS_OK);
    assert_true(done);
    assert_int_equal(s.calls, 4);
    assert_written(t, HELLO_AUTH("3\r\nsvc", T1) HELLO_AUTH("3\r\nsvc", T2));
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* NOAUTH on an open RESP3 connection: the re-authentication is a plain
 * AUTH (see redtls_config_set_protocol), then the command is resent. */
static void test_reauth_is_plain_auth(void **state)
{
    (void)state;
    NEED_RESP3();
    redtls_config *cfg = resp3_config();
    assert_status(redtls_config_set_token(cfg, T1), REDTLS_OK);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    unit_push(t, "-NOAUTH Authentication required.\r\n+OK\r\n$1\r\nv\r\n");
    redisReply *r = NULL;
    assert_status(redtls_conn_command(c, &r, "GET k"), REDTLS_OK);
    assert_string_equal(redtls_reply_str(r, NULL), "v");
    redtls_reply_free(r);
    assert_written(t,
                   "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$4\r\nAUTH\r\n$20\r\n" T1 "\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* ---- a connection's pushes ---- */

/* Pushes and an attribute between pipelined replies: every reply goes to
 * its command, in order; each push reaches the callback, the attribute
 * right before the reply it describes. */
static void test_pushes_between_pipelined_replies(void **state)
{
    (void)state;
    NEED_RESP3();
    redtls_config *cfg = resp3_config();
    seen s = {0};
    assert_status(redtls_config_set_push_callback(cfg, push_note, &s), REDTLS_OK);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    for (int i = 0; i < 3; i++)
        assert_status(redtls_conn_append(c, "GET k%d", i), REDTLS_OK);
    unit_push(t, ">2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\nk0\r\n$2\r\nv0\r\n>2\r\n$10\r\ninvalidate\r\n_\r\n");
    unit_push(t, ">3\r\n$7\r\nmessage\r\n$2\r\nch");
    unit_push(t, "\r\n$1\r\nm\r\n%1\r\n+k\r\n+v\r\n|1\r\n+ttl\r\n:9\r\n$2\r\nv2\r\n>1\r\n+tail\r\n");
    const char *want[] = {"v0", "", "v2"};
    for (int i = 0; i < 3; i++) {
        redisReply *r = NULL;
        assert_status(redtls_conn_get_reply(c, &r), REDTLS_OK);
        if (i == 1) {
            assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_MAP);
            assert_int_equal(redtls_reply_len(r), 2);
        } else {
            assert_string_equal(redtls_reply_str(r, NULL), want[i]);
        }
        redtls_reply_free(r);
        s.replies++;
    }
    assert_int_equal(redtls_conn_pending(c), 0);
    assert_int_equal(s.n, 4);
    assert_int_equal(s.types[0], REDTLS_REPLY_PUSH);
    assert_string_equal(s.first[0], "invalidate");
    assert_int_equal(s.replies_at[0], 0);
    assert_int_equal(s.types[1], REDTLS_REPLY_PUSH);
    assert_int_equal(s.replies_at[1], 1);
    assert_string_equal(s.first[2], "message");
    assert_int_equal(s.types[3], REDTLS_REPLY_ATTR);
    assert_string_equal(s.first[3], "ttl");
    assert_int_equal(s.replies_at[3], 2);
    /* The push behind the last reply comes before the next command's
     * reply. */
    unit_push(t, "+PONG\r\n");
    redisReply *r = NULL;
    assert_status(redtls_conn_command(c, &r, "PING"), REDTLS_OK);
    assert_string_equal(redtls_reply_str(r, NULL), "PONG");
    redtls_reply_free(r);
    assert_int_equal(s.n, 5);
    assert_string_equal(s.first[4], "tail");
    assert_int_equal(s.replies_at[4], 3);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* A connection with nothing owed, on a socket: what the server pushed
 * meanwhile is read by the idle check before the next command (pushes to
 * the callback); a reply nobody asked for is a protocol failure. */
static void test_idle_connection_reads_pushes(void **state)
{
    (void)state;
    NEED_RESP3();
    redtls_config *cfg = resp3_config();
    seen s = {0};
    assert_status(redtls_config_set_push_callback(cfg, push_note, &s), REDTLS_OK);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    redtls_conn *c = NULL;
    redtls__transport *t = NULL;
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    assert_status(redtls__plain_transport(sv[0], &t), REDTLS_OK);
    assert_status(redtls__conn_attach(c, t, 0), REDTLS_OK);
    assert_status(redtls__conn_idle_check(c), REDTLS_OK);
    assert_int_equal(s.n, 0);
    const char pushes[] = ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n>1\r\n+second\r\n>1\r\n$7\r\npart";
    assert_int_equal(write(sv[1], pushes, sizeof pushes - 1), (ssize_t)(sizeof pushes - 1));
    assert_status(redtls__conn_idle_check(c), REDTLS_OK);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.first[0], "invalidate");
    assert_string_equal(s.first[1], "second");
    assert_int_equal(write(sv[1], "ial\r\n", 5), 5);
    assert_status(redtls__conn_idle_check(c), REDTLS_OK);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.first[2], "partial");
    const char surprise[] = ">1\r\n+p\r\n+surprise\r\n";
    assert_int_equal(write(sv[1], surprise, sizeof surprise - 1), (ssize_t)(sizeof surprise - 1));
    assert_status(redtls__conn_idle_check(c), REDTLS_E_PROTOCOL);
    assert_string_equal(redtls_conn_errmsg(c),
                        "the server sent a reply (kind 5) nobody asked for on an idle connection");
    assert_int_equal(s.n, 4);
    /* The server closing it is its end, as the transport says. */
    redtls_conn_free(c);
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    int sv2[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv2), 0);
    assert_status(redtls__plain_transport(sv2[0], &t), REDTLS_OK);
    assert_status(redtls__conn_attach(c, t, 0), REDTLS_OK);
    close(sv2[1]);
    redtls_status st = redtls__conn_idle_check(c);
    assert_true(st == REDTLS_E_EOF || st == REDTLS_E_CLOSED);
    redtls_conn_free(c);
    close(sv[1]);
    redtls_config_free(cfg);
}

/* The Pub/Sub hook sees each unasked reply first; what it leaves goes to
 * the push callback; it stays set when the connection gets a new
 * transport (reconnect). */
static void test_sub_claim_first_and_kept(void **state)
{
    (void)state;
    NEED_RESP3();
    redtls_config *cfg = resp3_config();
    seen pushes = {0}, sub = {.take_messages = 1};
    assert_status(redtls_config_set_push_callback(cfg, push_note, &pushes), REDTLS_OK);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    c->sub_claim = claim_note;
    c->sub_ud = &sub;
    for (int round = 0; round < 2; round++) {
        unit_push(t, ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nm\r\n>2\r\n$10\r\ninvalidate\r\n_\r\n+PONG\r\n");
        redisReply *r = NULL;
        assert_status(redtls_conn_command(c, &r, "PING"), REDTLS_OK);
        assert_string_equal(redtls_reply_str(r, NULL), "PONG");
        redtls_reply_free(r);
        assert_int_equal(sub.n, round + 1);
        assert_string_equal(sub.first[round], "message");
        assert_int_equal(pushes.n, round + 1);
        assert_string_equal(pushes.first[round], "invalidate");
        /* A new transport, as a reconnect attaches. */
        assert_status(redtls__mem_transport(&t, REDTLS_E_COMMAND_TIMEOUT), REDTLS_OK);
        assert_status(redtls__conn_attach(c, t, 0), REDTLS_OK);
        assert_true(c->sub_claim == claim_note);
    }
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* User HELLOs under protocol 3: HELLO 3 (and HELLO alone) go out, HELLO 2
 * is refused before anything is written. */
static void test_user_hello_under_resp3(void **state)
{
    (void)state;
    NEED_RESP3();
    redtls_config *cfg = resp3_config();
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    redisReply *r = (redisReply *)1;
    assert_status(redtls_conn_command(c, &r, "HELLO 2"), REDTLS_E_INVALID);
    assert_null(r);
    assert_contains(redtls_conn_errmsg(c), "HELLO asking for a protocol other than RESP3 is refused");
    const char *argv[] = {"HELLO", "2", "AUTH", "default", T1};
    assert_status(redtls_conn_command_argv(c, 5, argv, NULL, &r), REDTLS_E_INVALID);
    assert_not_contains(redtls_conn_errmsg(c), T1);
    assert_int_equal(redtls__mem_write_calls(t), 0);
    unit_push(t, HELLO_OK);
    assert_status(redtls_conn_command(c, &r, "HELLO 3"), REDTLS_OK);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_MAP);
    redtls_reply_free(r);
    unit_push(t, HELLO_OK);
    assert_status(redtls_conn_command(c, &r, "HELLO"), REDTLS_OK);
    redtls_reply_free(r);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* ---- the protocol setting ---- */

static void test_protocol_setting(void **state)
{
    (void)state;
    redtls_config *cfg = unit_plain_config();
    assert_int_equal(redtls_protocol_supported(2), 1);
    assert_int_equal(redtls_protocol_supported(3), RESP3_PARSED);
    assert_int_equal(redtls_protocol_supported(1), 0);
    assert_int_equal(redtls_protocol_supported(4), 0);
    assert_status(redtls_config_set_protocol(NULL, 3), REDTLS_E_INVALID);
    assert_status(redtls_config_set_protocol(cfg, 4), REDTLS_E_INVALID);
    assert_string_equal(redtls_config_errmsg(cfg), "protocol must be 2 (RESP2) or 3 (RESP3), not 4");
    assert_status(redtls_config_set_protocol(cfg, 0), REDTLS_E_INVALID);
    assert_status(redtls_config_set_protocol(cfg, 2), REDTLS_OK);
    if (RESP3_PARSED) {
        assert_status(redtls_config_set_protocol(cfg, 3), REDTLS_OK);
        /* A connection copies the setting: later changes do not reach it. */
        redtls__transport *t;
        redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
        assert_status(redtls_config_set_protocol(cfg, 2), REDTLS_OK);
        assert_int_equal(c->cfg.protocol, 3);
        redtls_conn_free(c);
    } else {
        assert_status(redtls_config_set_protocol(cfg, 3), REDTLS_E_CONFIG);
        char want[200];
        snprintf(want, sizeof want, "RESP3 needs hiredis 1.0 or later, and this build of redtls uses hiredis %d.%d.%d",
                 HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
        assert_contains(redtls_config_errmsg(cfg), want);
    }
    redtls_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind_through_the_accessors),
        cmocka_unit_test(test_push_and_attribute_offered_to_claim),
        cmocka_unit_test(test_attribute_in_pieces_and_nested),
        cmocka_unit_test(test_claim_arrays),
        cmocka_unit_test(test_hostile_resp3),
        cmocka_unit_test(test_hello_rotation),
        cmocka_unit_test(test_hello_not_spoken),
        cmocka_unit_test(test_hello_without_credentials),
        cmocka_unit_test(test_hello_with_credential_callback),
        cmocka_unit_test(test_reauth_is_plain_auth),
        cmocka_unit_test(test_pushes_between_pipelined_replies),
        cmocka_unit_test(test_idle_connection_reads_pushes),
        cmocka_unit_test(test_sub_claim_first_and_kept),
        cmocka_unit_test(test_user_hello_under_resp3),
        cmocka_unit_test(test_protocol_setting),
    };
    return cmocka_run_group_tests_name("resp3", tests, NULL, NULL);
}

/* lib/pubsub/pubsub.c: what a reply means for Pub/Sub, the subscription
 * table; lib/protocol/format.c's refusal of the subscribe commands; and the
 * reader's claim hook (RESP2 arrays while subscribed). */
#include "unit_util.h"

#include "format.h"
#include "pubsub.h"
#include "reader.h"

static redtls__reader rd;
static char err[REDTLS__ERRMSG_MAX];

static redisReply *parse_with(const char *s, size_t n, int arrays)
{
    redtls__limits l = {1024, 1024, 4096};
    redisReply *r = NULL;
    assert_status(redtls__reader_init(&rd, &l), REDTLS_OK);
    rd.claim_arrays = arrays;
    assert_status(redtls__reader_feed(&rd, s, n, err), REDTLS_OK);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    return r;
}

static redisReply *parse(const char *s, size_t n)
{
    redisReply *r = parse_with(s, n, 0);
    assert_non_null(r);
    redtls__reader_free(&rd);
    return r;
}

#define PARSE(lit) parse(lit, sizeof(lit) - 1)

static void test_messages(void **state)
{
    (void)state;
    redtls__ps_reply pr;
    redisReply *r = PARSE("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\na\0b\r\n");
    assert_int_equal(redtls__ps_classify(r, &pr), REDTLS__PS_MESSAGE);
    assert_int_equal(pr.kind, REDTLS_SUB_CHANNEL);
    assert_int_equal(pr.name_len, 2);
    assert_memory_equal(pr.channel, "ch", 2);
    assert_int_equal(pr.payload_len, 3);
    assert_memory_equal(pr.payload, "a\0b", 3);
    freeReplyObject(r);
    r = PARSE("*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$3\r\nc.1\r\n$1\r\nx\r\n");
    assert_int_equal(redtls__ps_classify(r, &pr), REDTLS__PS_MESSAGE);
    assert_int_equal(pr.kind, REDTLS_SUB_PATTERN);
    assert_memory_equal(pr.name, "c*", 2);
    assert_memory_equal(pr.channel, "c.1", 3);
    freeReplyObject(r);
    r = PARSE("*3\r\n$8\r\nsmessage\r\n$1\r\ns\r\n$0\r\n\r\n");
    assert_int_equal(redtls__ps_classify(r, &pr), REDTLS__PS_MESSAGE);
    assert_int_equal(pr.kind, REDTLS_SUB_SHARD);
    assert_int_equal(pr.payload_len, 0);
    freeReplyObject(r);
}

static void test_confirmations(void **state)
{
    (void)state;
    redtls__ps_reply pr;
    redisReply *r = PARSE("*3\r\n$10\r\npsubscribe\r\n$2\r\nc*\r\n:2\r\n");
    assert_int_equal(redtls__ps_classify(r, &pr), REDTLS__PS_CONFIRM);
    assert_int_equal(pr.kind, REDTLS_SUB_PATTERN);
    assert_int_equal(pr.subscribe, 1);
    assert_int_equal(pr.count, 2);
    freeReplyObject(r);
    /* Unsubscribing from nothing: a nil name. */
    r = PARSE("*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
    assert_int_equal(redtls__ps_classify(r, &pr), REDTLS__PS_CONFIRM);
    assert_null(pr.name);
    assert_int_equal(pr.subscribe, 0);
    freeReplyObject(r);
    r = PARSE("*3\r\n$12\r\nSUNSUBSCRIBE\r\n$1\r\ns\r\n:0\r\n");
    assert_int_equal(redtls__ps_classify(r, &pr), REDTLS__PS_CONFIRM);
    assert_int_equal(pr.kind, REDTLS_SUB_SHARD);
    freeReplyObject(r);
}

/* Arrays that only resemble Pub/Sub are a command's reply. */
static void test_others(void **state)
{
    (void)state;
    redtls__ps_reply pr;
    const char *cases[] = {
        "*2\r\n$4\r\npong\r\n$0\r\n\r\n",                           /* RESP2 PING while subscribed */
        "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n:1\r\n",                /* payload not a string */
        "*3\r\n$9\r\nsubscribe\r\n$-1\r\n:1\r\n",                   /* subscribe to nothing */
        "*3\r\n$9\r\nsubscribe\r\n$1\r\nx\r\n$1\r\n1\r\n",          /* count not an integer */
        "*4\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", /* too long */
        "*3\r\n$8\r\nmessages\r\n$1\r\na\r\n$1\r\nb\r\n",           /* another word */
        "*3\r\n:1\r\n$1\r\na\r\n$1\r\nb\r\n",
        "$7\r\nmessage\r\n",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        redisReply *r = parse(cases[i], strlen(cases[i]));
        assert_int_equal(redtls__ps_classify(r, &pr), REDTLS__PS_OTHER);
        freeReplyObject(r);
    }
    assert_int_equal(redtls__ps_classify(NULL, &pr), REDTLS__PS_OTHER);
}

static int claimed;
static int claim_all(void *ud, struct redisReply *r)
{
    (void)ud;
    redtls__ps_reply pr;
    int what = redtls__ps_classify(r, &pr);
    if (what == REDTLS__PS_MESSAGE) {
        claimed++;
        freeReplyObject(r);
        return 1;
    }
    return what == REDTLS__PS_CONFIRM ? 2 : 0;
}

/* The reader offers arrays only while claim_arrays is set: messages are
 * taken out, a confirmation and any other array stay replies. */
static void test_reader_claim(void **state)
{
    (void)state;
    static const char stream[] = "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\n1\r\n"
                                 "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\n2\r\n"
                                 "*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
                                 "*2\r\n$4\r\npong\r\n$0\r\n\r\n";
    redtls__limits l = {1024, 1024, 4096};
    redisReply *r = NULL;
    assert_status(redtls__reader_init(&rd, &l), REDTLS_OK);
    rd.claim = claim_all;
    rd.claim_arrays = 1;
    claimed = 0;
    assert_status(redtls__reader_feed(&rd, stream, sizeof stream - 1, err), REDTLS_OK);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    assert_int_equal(claimed, 2);
    assert_non_null(r);
    assert_int_equal(r->elements, 3); /* the confirmation */
    freeReplyObject(r);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    assert_non_null(r);
    assert_int_equal(r->elements, 2); /* the pong */
    freeReplyObject(r);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    assert_null(r);
    /* Not offered while claim_arrays is off. */
    rd.claim_arrays = 0;
    assert_status(redtls__reader_feed(&rd, stream, 35, err), REDTLS_OK);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    assert_non_null(r);
    assert_int_equal(claimed, 2);
    freeReplyObject(r);
    redtls__reader_free(&rd);
}

static void test_table(void **state)
{
    (void)state;
    redtls__subs t = {0};
    char name[32];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(name, sizeof name, "ch:%d", i);
        assert_non_null(
            redtls__subs_add(&t, i % 2 ? REDTLS_SUB_PATTERN : REDTLS_SUB_CHANNEL, name, (size_t)n, NULL, NULL));
    }
    assert_int_equal(t.n, 1000);
    assert_non_null(redtls__subs_find(&t, REDTLS_SUB_PATTERN, "ch:1", 4));
    assert_null(redtls__subs_find(&t, REDTLS_SUB_CHANNEL, "ch:1", 4));
    assert_null(redtls__subs_find(&t, REDTLS_SUB_PATTERN, "ch:1\0", 5));
    redtls__sub *s = redtls__subs_find(&t, REDTLS_SUB_CHANNEL, "ch:500", 6);
    assert_non_null(s);
    s->refs = 1;
    redtls__subs_remove(&t, s);
    assert_int_equal(t.n, 999);
    assert_null(redtls__subs_find(&t, REDTLS_SUB_CHANNEL, "ch:500", 6));
    assert_int_equal(s->dead, 1);
    redtls__sub_unref(s); /* freed now (ASan/valgrind see it) */
    /* Order is kept for restores. */
    assert_string_equal(t.head->name, "ch:0");
    assert_string_equal(t.tail->name, "ch:999");
    redtls__subs_free(&t);
    assert_int_equal(t.n, 0);
}

static void test_sub_commands(void **state)
{
    (void)state;
    const char *yes[] = {"SUBSCRIBE",   "subscribe",    "PSUBSCRIBE",  "SSUBSCRIBE",
                         "UNSUBSCRIBE", "punsubscribe", "SUnsubscribe"};
    const char *no[] = {"SUBSCRIBEX", "XSUBSCRIBE",   "PUBLISH",    "SPUBLISH", "SUBSCRIB",
                        "QSUBSCRIBE", "QUNSUBSCRIBE", "UNSUBSCRIB", "GET"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        const char *argv[2] = {yes[i], "x"};
        assert_true(redtls__argv_is_sub_command(2, argv, NULL));
        char *frame = NULL;
        size_t len = 0, cap = 0;
        assert_status(redtls__format_argv(&frame, &len, &cap, 2, argv, NULL), REDTLS_OK);
        assert_true(redtls__frame_is_sub_command(frame, len));
        free(frame);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        const char *argv[2] = {no[i], "x"};
        assert_false(redtls__argv_is_sub_command(2, argv, NULL));
        char *frame = NULL;
        size_t len = 0, cap = 0;
        assert_status(redtls__format_argv(&frame, &len, &cap, 2, argv, NULL), REDTLS_OK);
        assert_false(redtls__frame_is_sub_command(frame, len));
        free(frame);
    }
    assert_false(redtls__frame_is_sub_command("*1\r\n$9\r\nSUBSC", 14));
}

/* Messages taken from the reader's buffer without reply objects: whole
 * plain frames only; anything else is left, untouched, for the parser
 * (which judges limits and errors). */
static void test_take_message(void **state)
{
    (void)state;
    redtls__limits l = {1024, 16, 4096};
    redisReply *r = NULL;
    redtls__msg_view v;
    static const char stream[] = "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\na\0b\r\n"
                                 "*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$3\r\nc.1\r\n$0\r\n\r\n"
                                 "*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
                                 "*3\r\n$8\r\nsmessage\r\n$1\r\ns\r\n$1\r\nx\r\n";
    assert_status(redtls__reader_init(&rd, &l), REDTLS_OK);
    assert_status(redtls__reader_feed(&rd, stream, sizeof stream - 1, err), REDTLS_OK);
    /* Not while claim_arrays is off: an array is a command's reply then. */
    assert_int_equal(redtls__reader_take_message(&rd, &v), 0);
    rd.claim_arrays = 1;
    assert_int_equal(redtls__reader_take_message(&rd, &v), 1);
    assert_int_equal(v.kind, REDTLS_SUB_CHANNEL);
    assert_null(v.pattern);
    assert_int_equal(v.channel_len, 2);
    assert_memory_equal(v.channel, "ch", 2);
    assert_int_equal(v.payload_len, 3);
    assert_memory_equal(v.payload, "a\0b", 3);
    assert_int_equal(redtls__reader_take_message(&rd, &v), 1);
    assert_int_equal(v.kind, REDTLS_SUB_PATTERN);
    assert_memory_equal(v.pattern, "c*", 2);
    assert_memory_equal(v.channel, "c.1", 3);
    assert_int_equal(v.payload_len, 0);
    /* A confirmation is left for the parser, and so is what follows. */
    assert_int_equal(redtls__reader_take_message(&rd, &v), 0);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    assert_non_null(r);
    assert_int_equal(r->elements, 3);
    freeReplyObject(r);
    assert_int_equal(redtls__reader_take_message(&rd, &v), 1);
    assert_int_equal(v.kind, REDTLS_SUB_SHARD);
    assert_int_equal(redtls__reader_take_message(&rd, &v), 0);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    assert_null(r);
    redtls__reader_free(&rd);

    /* Left to the parser: a frame cut short (then taken once whole), one
     * over the bulk limit (the parser refuses it), other words. */
    static const char cut[] = "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhel";
    assert_status(redtls__reader_init(&rd, &l), REDTLS_OK);
    rd.claim_arrays = 1;
    assert_status(redtls__reader_feed(&rd, cut, sizeof cut - 1, err), REDTLS_OK);
    assert_int_equal(redtls__reader_take_message(&rd, &v), 0);
    assert_status(redtls__reader_feed(&rd, "lo\r\n", 4, err), REDTLS_OK);
    assert_int_equal(redtls__reader_take_message(&rd, &v), 1);
    assert_memory_equal(v.payload, "hello", 5);
    static const char big[] = "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$17\r\n0123456789abcdefg\r\n";
    assert_status(redtls__reader_feed(&rd, big, sizeof big - 1, err), REDTLS_OK);
    assert_int_equal(redtls__reader_take_message(&rd, &v), 0);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_E_LIMIT);
    redtls__reader_free(&rd);
    const char *others[] = {
        "*3\r\n$7\r\nMESSAGE\r\n$1\r\na\r\n$1\r\nb\r\n",            /* not as servers send it */
        "*3\r\n$8\r\npmessage\r\n$1\r\na\r\n$1\r\nb\r\n",           /* pmessage needs 4 */
        "*4\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", /* message needs 3 */
        "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n:1\r\n",                 /* payload not a string */
        "*3\r\n$7\r\nmessage\r\n$-1\r\n$1\r\nb\r\n",                /* nil channel */
        "*03\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n",           /* a count hiredis may judge */
        "*3\r\n$07\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n",           /* a length hiredis may judge */
        ">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n",            /* RESP3 push: hiredis 1.x only */
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        assert_status(redtls__reader_init(&rd, &l), REDTLS_OK);
        rd.claim_arrays = 1;
        assert_status(redtls__reader_feed(&rd, others[i], strlen(others[i]), err), REDTLS_OK);
        int took = redtls__reader_take_message(&rd, &v);
#if defined(HIREDIS_MAJOR) && HIREDIS_MAJOR >= 1
        assert_int_equal(took, others[i][0] == '>' ? 1 : 0);
#else
        assert_int_equal(took, 0);
#endif
        redtls__reader_free(&rd);
    }
}

/* A frame the parser would refuse for a limit is never taken: with the
 * element limit below a message's count, or the buffer limit below what
 * the parser's objects for it would hold, redtls__reader_get ends the
 * stream with REDTLS_E_LIMIT, so the fast path must leave it too. */
static void test_take_message_limits(void **state)
{
    (void)state;
    static const char msg[] = "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nabc\r\n";
    redtls__msg_view v;
    redisReply *r = NULL;
    redtls__limits two = {2, 1024, 4096};
    assert_status(redtls__reader_init(&rd, &two), REDTLS_OK);
    rd.slow_only = 1;
    rd.claim_arrays = 1;
    assert_status(redtls__reader_feed(&rd, msg, sizeof msg - 1, err), REDTLS_OK);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_E_LIMIT);
    redtls__reader_free(&rd);
    assert_status(redtls__reader_init(&rd, &two), REDTLS_OK);
    rd.claim_arrays = 1;
    assert_status(redtls__reader_feed(&rd, msg, sizeof msg - 1, err), REDTLS_OK);
    assert_int_equal(redtls__reader_take_message(&rd, &v), 0);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_E_LIMIT);
    redtls__reader_free(&rd);

    /* The buffer limit: the whole frame fits, its objects do not. */
    redtls__limits small = {1024, 1024, sizeof msg - 1 + 64};
    assert_status(redtls__reader_init(&rd, &small), REDTLS_OK);
    rd.slow_only = 1;
    rd.claim_arrays = 1;
    assert_status(redtls__reader_feed(&rd, msg, sizeof msg - 1, err), REDTLS_OK);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_E_LIMIT);
    redtls__reader_free(&rd);
    assert_status(redtls__reader_init(&rd, &small), REDTLS_OK);
    rd.claim_arrays = 1;
    assert_status(redtls__reader_feed(&rd, msg, sizeof msg - 1, err), REDTLS_OK);
    assert_int_equal(redtls__reader_take_message(&rd, &v), 0);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_E_LIMIT);
    redtls__reader_free(&rd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_messages),     cmocka_unit_test(test_confirmations), cmocka_unit_test(test_others),
        cmocka_unit_test(test_reader_claim), cmocka_unit_test(test_table),         cmocka_unit_test(test_take_message),
        cmocka_unit_test(test_take_message_limits),
        cmocka_unit_test(test_sub_commands),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

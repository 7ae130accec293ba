/* lib/reply.c: the reply accessors. */
#include "unit_util.h"

#include "reader.h"

static redisReply *parse(const char *s, size_t n)
{
    redtls__limits l = {1024, 1024, 4096};
    redtls__reader rd;
    char err[REDTLS__ERRMSG_MAX];
    redisReply *r = NULL;
    assert_status(redtls__reader_init(&rd, &l), REDTLS_OK);
    assert_status(redtls__reader_feed(&rd, s, n, err), REDTLS_OK);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    assert_non_null(r);
    redtls__reader_free(&rd);
    return r;
}

#define PARSE(lit) parse(lit, sizeof(lit) - 1)

static void test_null_reply(void **state)
{
    (void)state;
    size_t len = 123;
    assert_int_equal(redtls_reply_type(NULL), 0);
    assert_null(redtls_reply_str(NULL, &len));
    assert_int_equal(len, 0);
    assert_null(redtls_reply_str(NULL, NULL));
    assert_true(redtls_reply_integer(NULL) == 0);
    assert_int_equal(redtls_reply_len(NULL), 0);
    assert_null(redtls_reply_element(NULL, 0));
    redtls_reply_free(NULL);
}

static void test_kinds_match_hiredis(void **state)
{
    (void)state;
    assert_int_equal(REDTLS_REPLY_STRING, REDIS_REPLY_STRING);
    assert_int_equal(REDTLS_REPLY_ARRAY, REDIS_REPLY_ARRAY);
    assert_int_equal(REDTLS_REPLY_INTEGER, REDIS_REPLY_INTEGER);
    assert_int_equal(REDTLS_REPLY_NIL, REDIS_REPLY_NIL);
    assert_int_equal(REDTLS_REPLY_STATUS, REDIS_REPLY_STATUS);
    assert_int_equal(REDTLS_REPLY_ERROR, REDIS_REPLY_ERROR);
}

static void test_string_like(void **state)
{
    (void)state;
    struct {
        const char *wire;
        size_t wlen;
        int type;
        const char *str;
        size_t len;
    } cases[] = {
        {"$5\r\nhe\0lo\r\n", 11, REDTLS_REPLY_STRING, "he\0lo", 5},
        {"$0\r\n\r\n", 6, REDTLS_REPLY_STRING, "", 0},
        {"+PONG\r\n", 7, REDTLS_REPLY_STATUS, "PONG", 4},
        {"-ERR nope\r\n", 11, REDTLS_REPLY_ERROR, "ERR nope", 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        redisReply *r = parse(cases[i].wire, cases[i].wlen);
        assert_int_equal(redtls_reply_type(r), cases[i].type);
        size_t len = 999;
        const char *s = redtls_reply_str(r, &len);
        assert_non_null(s);
        assert_int_equal(len, cases[i].len);
        assert_memory_equal(s, cases[i].str, len);
        assert_int_equal(s[len], '\0');
        assert_ptr_equal(redtls_reply_str(r, NULL), s);
        assert_true(redtls_reply_integer(r) == 0);
        assert_int_equal(redtls_reply_len(r), 0);
        assert_null(redtls_reply_element(r, 0));
        redtls_reply_free(r);
    }
}

static void test_integer(void **state)
{
    (void)state;
    redisReply *r = PARSE(":9223372036854775807\r\n");
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_INTEGER);
    assert_true(redtls_reply_integer(r) == 9223372036854775807LL);
    size_t len = 5;
    assert_null(redtls_reply_str(r, &len));
    assert_int_equal(len, 0);
    assert_int_equal(redtls_reply_len(r), 0);
    assert_null(redtls_reply_element(r, 0));
    redtls_reply_free(r);
    r = PARSE(":-1\r\n");
    assert_true(redtls_reply_integer(r) == -1);
    redtls_reply_free(r);
}

static void test_nil(void **state)
{
    (void)state;
    redisReply *r = PARSE("$-1\r\n");
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_NIL);
    size_t len = 5;
    assert_null(redtls_reply_str(r, &len));
    assert_int_equal(len, 0);
    assert_true(redtls_reply_integer(r) == 0);
    assert_int_equal(redtls_reply_len(r), 0);
    assert_null(redtls_reply_element(r, 0));
    redtls_reply_free(r);
}

static void test_array(void **state)
{
    (void)state;
    redisReply *r = PARSE("*3\r\n:1\r\n$1\r\nx\r\n*1\r\n$-1\r\n");
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_ARRAY);
    assert_int_equal(redtls_reply_len(r), 3);
    size_t len = 5;
    assert_null(redtls_reply_str(r, &len));
    assert_int_equal(len, 0);
    assert_true(redtls_reply_integer(r) == 0);
    assert_true(redtls_reply_integer(redtls_reply_element(r, 0)) == 1);
    assert_string_equal(redtls_reply_str(redtls_reply_element(r, 1), NULL), "x");
    const redisReply *inner = redtls_reply_element(r, 2);
    assert_int_equal(redtls_reply_len(inner), 1);
    assert_int_equal(redtls_reply_type(redtls_reply_element(inner, 0)), REDTLS_REPLY_NIL);
    assert_null(redtls_reply_element(inner, 1));
    assert_null(redtls_reply_element(r, 3));
    assert_null(redtls_reply_element(r, (size_t)-1));
    assert_null(redtls_reply_element(r, (size_t)1 << 40));
    redtls_reply_free(r);

    r = PARSE("*0\r\n");
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_ARRAY);
    assert_int_equal(redtls_reply_len(r), 0);
    assert_null(redtls_reply_element(r, 0));
    redtls_reply_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_reply),
        cmocka_unit_test(test_kinds_match_hiredis),
        cmocka_unit_test(test_string_like),
        cmocka_unit_test(test_integer),
        cmocka_unit_test(test_nil),
        cmocka_unit_test(test_array),
    };
    return cmocka_run_group_tests_name("reply", tests, NULL, NULL);
}

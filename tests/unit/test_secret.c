/* lib/secret.c: wiped secrets, string copies and redaction. */
#include "unit_util.h"

static void test_secret_set_and_clear(void **state)
{
    (void)state;
    redtls__secret s = {NULL, 0};
    assert_status(redtls__secret_set(&s, "hunter2", 7), REDTLS_OK);
    assert_non_null(s.data);
    assert_int_equal(s.len, 7);
    assert_string_equal(s.data, "hunter2");

    /* Only len bytes are taken, and a NUL is added after them. */
    assert_status(redtls__secret_set(&s, "abcdef", 3), REDTLS_OK);
    assert_int_equal(s.len, 3);
    assert_string_equal(s.data, "abc");

    /* Binary data with embedded NULs. */
    assert_status(redtls__secret_set(&s, "a\0b", 3), REDTLS_OK);
    assert_int_equal(s.len, 3);
    assert_memory_equal(s.data, "a\0b", 4);

    /* Empty but set. */
    assert_status(redtls__secret_set(&s, "", 0), REDTLS_OK);
    assert_non_null(s.data);
    assert_int_equal(s.len, 0);
    assert_string_equal(s.data, "");

    /* NULL clears. */
    assert_status(redtls__secret_set(&s, NULL, 5), REDTLS_OK);
    assert_null(s.data);
    assert_int_equal(s.len, 0);

    assert_status(redtls__secret_set(&s, "x", 1), REDTLS_OK);
    redtls__secret_clear(&s);
    assert_null(s.data);
    assert_int_equal(s.len, 0);
    redtls__secret_clear(&s); /* twice is harmless */
    assert_null(s.data);
}

static void test_secret_copy(void **state)
{
    (void)state;
    redtls__secret a = {NULL, 0}, b = {NULL, 0};
    assert_status(redtls__secret_set(&a, "tok\0en", 6), REDTLS_OK);
    assert_status(redtls__secret_copy(&b, &a), REDTLS_OK);
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.data, "tok\0en", 6);
    assert_ptr_not_equal(a.data, b.data);
    /* Independent: clearing one leaves the other. */
    redtls__secret_clear(&a);
    assert_memory_equal(b.data, "tok\0en", 6);
    /* Copying an unset secret clears the destination. */
    assert_status(redtls__secret_copy(&b, &a), REDTLS_OK);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    /* Copy onto a set destination replaces it. */
    assert_status(redtls__secret_set(&a, "new", 3), REDTLS_OK);
    assert_status(redtls__secret_set(&b, "old-and-longer", 14), REDTLS_OK);
    assert_status(redtls__secret_copy(&b, &a), REDTLS_OK);
    assert_string_equal(b.data, "new");
    assert_int_equal(b.len, 3);
    redtls__secret_clear(&a);
    redtls__secret_clear(&b);
}

static void test_str_set(void **state)
{
    (void)state;
    char *s = NULL;
    assert_status(redtls__str_set(&s, "hello"), REDTLS_OK);
    assert_string_equal(s, "hello");
    const char *first = s;
    assert_status(redtls__str_set(&s, "world!"), REDTLS_OK);
    assert_string_equal(s, "world!");
    (void)first;
    assert_status(redtls__str_set(&s, ""), REDTLS_OK);
    assert_string_equal(s, "");
    assert_status(redtls__str_set(&s, NULL), REDTLS_OK);
    assert_null(s);
    /* Setting from its own value is safe. */
    assert_status(redtls__str_set(&s, "self"), REDTLS_OK);
    assert_status(redtls__str_set(&s, s), REDTLS_OK);
    assert_string_equal(s, "self");
    free(s);
}

static void redact(const char *in, const char *token, const char *want)
{
    redtls__secret s = {NULL, 0};
    if (token)
        assert_status(redtls__secret_set(&s, token, strlen(token)), REDTLS_OK);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", in);
    redtls__redact(buf, strlen(buf), &s);
    redtls__secret_clear(&s);
    if (strcmp(buf, want) != 0)
        fail_msg("redact(\"%s\", token \"%s\") = \"%s\", expected \"%s\"", in, token ? token : "(none)", buf, want);
}

static void test_redact_positions(void **state)
{
    (void)state;
    redact("WRONGPASS hunter2 is bad", "hunter2", "WRONGPASS ******* is bad");
    redact("hunter2 at start", "hunter2", "******* at start");
    redact("at end hunter2", "hunter2", "at end *******");
    redact("hunter2", "hunter2", "*******");
    redact("hunter2hunter2", "hunter2", "**************");
    redact("a hunter2 b hunter2 c", "hunter2", "a ******* b ******* c");
    redact("no secret here", "hunter2", "no secret here");
    redact("hunter", "hunter2", "hunter");  /* a prefix alone is no match */
    redact("short", "much-longer-token", "short");
    redact("", "x", "");
    redact("x", "x", "*");
}

static void test_redact_overlaps(void **state)
{
    (void)state;
    /* Every byte that belongs to any occurrence is masked, overlapping
     * ones included; otherwise the tail of the token stays readable. */
    redact("ababab", "abab", "******");
    redact("aaaaa", "aa", "*****");
    redact("xaaax", "aa", "x***x");
}

static void test_redact_edges(void **state)
{
    (void)state;
    redtls__secret none = {NULL, 0};
    char buf[] = "hunter2";
    redtls__redact(buf, strlen(buf), &none);
    assert_string_equal(buf, "hunter2");
    redtls__redact(NULL, 10, &none);

    redtls__secret empty = {NULL, 0};
    assert_status(redtls__secret_set(&empty, "", 0), REDTLS_OK);
    redtls__redact(buf, strlen(buf), &empty);
    assert_string_equal(buf, "hunter2");
    redtls__secret_clear(&empty);

    /* Only text_len bytes are looked at. */
    redtls__secret s = {NULL, 0};
    assert_status(redtls__secret_set(&s, "cd", 2), REDTLS_OK);
    char part[] = "abcdcd";
    redtls__redact(part, 3, &s);
    assert_string_equal(part, "abcdcd");
    redtls__redact(part, 4, &s);
    assert_string_equal(part, "ab**cd");
    /* Text with embedded NULs is searched byte-wise. */
    char bin[] = {'x', '\0', 'c', 'd', 'y'};
    redtls__redact(bin, sizeof bin, &s);
    assert_memory_equal(bin, "x\0**y", 5);
    redtls__secret_clear(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret_set_and_clear),
        cmocka_unit_test(test_secret_copy),
        cmocka_unit_test(test_str_set),
        cmocka_unit_test(test_redact_positions),
        cmocka_unit_test(test_redact_overlaps),
        cmocka_unit_test(test_redact_edges),
    };
    return cmocka_run_group_tests_name("secret", tests, NULL, NULL);
}

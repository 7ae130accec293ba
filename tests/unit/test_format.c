/* lib/format.c: redtls's own RESP framing must produce exactly what
 * hiredis's redisFormatCommandArgv() produces, for any arguments. */
#include "unit_util.h"

static void compare(int argc, const char **argv, const size_t *lens)
{
    char *ours = NULL, *theirs = NULL;
    size_t len = 0, cap = 0;
    assert_status(redtls__format_argv(&ours, &len, &cap, argc, argv, lens), REDTLS_OK);
    long long n = redisFormatCommandArgv(&theirs, argc, argv, lens);
    assert_true(n > 0);
    assert_int_equal(len, (size_t)n);
    assert_memory_equal(ours, theirs, len);
    free(ours);
    free(theirs);
}

static void test_matches_hiredis_on_random_commands(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252ULL;
    static char pool[20000];
    for (size_t i = 0; i < sizeof pool; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pool[i] = (char)(x & 0xff); /* NULs, CR and LF included */
    }
    for (int round = 0; round < 3000; round++) {
        const char *argv[12];
        size_t lens[12];
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int argc = 1 + (int)(x % 12);
        for (int i = 0; i < argc; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* Lengths around the digit-count boundaries 9/10, 99/100, ... */
            static const size_t sizes[] = {0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 9999, 10000};
            lens[i] = (x >> 8) % 3 == 0 ? sizes[x % 12] : (size_t)(x % 300);
            argv[i] = pool + (x >> 20) % (sizeof pool - lens[i]);
        }
        compare(argc, argv, lens);
    }
}

static void test_c_strings_and_appending(void **state)
{
    (void)state;
    const char *argv[] = {"SET", "key", ""};
    compare(3, argv, NULL);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (int i = 0; i < 1000; i++)
        assert_status(redtls__format_argv(&buf, &len, &cap, 3, argv, NULL), REDTLS_OK);
    const char one[] = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$0\r\n\r\n";
    assert_int_equal(len, 1000 * (sizeof one - 1));
    for (int i = 0; i < 1000; i++)
        assert_memory_equal(buf + (size_t)i * (sizeof one - 1), one, sizeof one - 1);
    assert_status(redtls__format_argv(&buf, &len, &cap, 0, argv, NULL), REDTLS_E_INVALID);
    free(buf);
}

static void test_argc_with_two_digits(void **state)
{
    (void)state;
    const char *argv[120];
    for (int i = 0; i < 120; i++)
        argv[i] = "v";
    compare(120, argv, NULL);
}

/* 1 when the command asks for another protocol than proto. */
static int switches(int argc, const char **argv, int proto)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    assert_status(redtls__format_argv(&buf, &len, &cap, argc, argv, NULL), REDTLS_OK);
    int yes = redtls__frame_switches_protocol(buf, len, proto);
    /* The argv check (C strings, and binary-safe lengths) agrees. */
    size_t lens[8];
    for (int i = 0; i < argc && i < 8; i++)
        lens[i] = strlen(argv[i]);
    assert_int_equal(redtls__argv_switches_protocol(argc, argv, NULL, proto), yes);
    assert_int_equal(redtls__argv_switches_protocol(argc, argv, lens, proto), yes);
    /* A cut frame never matches. */
    for (size_t cut = 0; cut + 1 < len && yes; cut++)
        if (cut < 20)
            assert_int_equal(redtls__frame_switches_protocol(buf, cut, proto), 0);
    free(buf);
    return yes;
}

static int asks_resp3(int argc, const char **argv)
{
    return switches(argc, argv, 2);
}

static void test_hello_asking_for_resp3(void **state)
{
    (void)state;
    const char *h3[] = {"HELLO", "3"}, *h3auth[] = {"hello", "3", "AUTH", "u", "p"}, *h03[] = {"Hello", "03"},
               *h2[] = {"HELLO", "2"}, *h2auth[] = {"HELLO", "2", "AUTH", "u", "p"}, *h[] = {"HELLO"},
               *helox[] = {"HELLOX", "3"}, *get[] = {"GET", "HELLO"}, *echo[] = {"ECHO", "3"};
    assert_int_equal(asks_resp3(2, h3), 1);
    assert_int_equal(asks_resp3(5, h3auth), 1);
    assert_int_equal(asks_resp3(2, h03), 1);
    assert_int_equal(asks_resp3(2, h2), 0);
    assert_int_equal(asks_resp3(5, h2auth), 0);
    assert_int_equal(asks_resp3(1, h), 0);
    assert_int_equal(asks_resp3(2, helox), 0);
    assert_int_equal(asks_resp3(2, get), 0);
    assert_int_equal(asks_resp3(2, echo), 0);
    assert_int_equal(redtls__frame_switches_protocol("", 0, 2), 0);
    assert_int_equal(redtls__frame_switches_protocol("*2\r\n$5\r\nHELLO\r\n$x\r\n3\r\n", 25, 2), 0);
}

/* Under protocol 3 the rule turns around: HELLO 3 stays, HELLO 2 (or any
 * other version) would switch the connection back. */
static void test_hello_switching_back_from_resp3(void **state)
{
    (void)state;
    const char *h3[] = {"HELLO", "3"}, *h3auth[] = {"hello", "3", "AUTH", "u", "p"}, *h03[] = {"Hello", "03"},
               *h2[] = {"HELLO", "2"}, *h2auth[] = {"HELLO", "2", "AUTH", "u", "p"}, *h[] = {"HELLO"},
               *h4[] = {"HELLO", "4"}, *get[] = {"GET", "HELLO"};
    assert_int_equal(switches(2, h3, 3), 0);
    assert_int_equal(switches(5, h3auth, 3), 0);
    assert_int_equal(switches(1, h, 3), 0);
    assert_int_equal(switches(2, get, 3), 0);
    assert_int_equal(switches(2, h2, 3), 1);
    assert_int_equal(switches(5, h2auth, 3), 1);
    assert_int_equal(switches(2, h03, 3), 1);
    assert_int_equal(switches(2, h4, 3), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_hiredis_on_random_commands),
        cmocka_unit_test(test_c_strings_and_appending),
        cmocka_unit_test(test_argc_with_two_digits),
        cmocka_unit_test(test_hello_asking_for_resp3),
        cmocka_unit_test(test_hello_switching_back_from_resp3),
    };
    return cmocka_run_group_tests_name("format", tests, NULL, NULL);
}

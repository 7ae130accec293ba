/* lib/cluster/redirect.c: MOVED and ASK error replies. */
#include "unit_util.h"

#include "redirect.h"

static redtls__redirect_kind parse(const char *text, redtls__redirect *r, char *err)
{
    err[0] = '\0';
    return redtls__redirect_parse(text, strlen(text), r, err);
}

static void test_moved_and_ask(void **state)
{
    (void)state;
    redtls__redirect r;
    char err[REDTLS__ERRMSG_MAX];
    assert_int_equal(parse("MOVED 3999 127.0.0.1:6381", &r, err), REDTLS__MOVED);
    assert_int_equal(r.slot, 3999);
    assert_string_equal(r.host, "127.0.0.1");
    assert_int_equal(r.port, 6381);
    assert_int_equal(parse("ASK 16383 node-3.cache.example:7002", &r, err), REDTLS__ASK);
    assert_int_equal(r.slot, 16383);
    assert_string_equal(r.host, "node-3.cache.example");
    assert_int_equal(parse("MOVED 0 ::1:7000", &r, err), REDTLS__MOVED);
    assert_string_equal(r.host, "::1");
    assert_int_equal(r.port, 7000);
    assert_int_equal(parse("MOVED 1 [fe80::1]:7000", &r, err), REDTLS__MOVED);
    assert_string_equal(r.host, "fe80::1");
    /* No endpoint: the node is reached where it already is. */
    assert_int_equal(parse("MOVED 12 :6380", &r, err), REDTLS__MOVED);
    assert_string_equal(r.host, "");
    assert_int_equal(r.port, 6380);
}

static void test_other_errors_and_malformed(void **state)
{
    (void)state;
    redtls__redirect r;
    char err[REDTLS__ERRMSG_MAX];
    assert_int_equal(parse("ERR unknown command", &r, err), REDTLS__NOT_REDIRECT);
    assert_string_equal(err, "");
    assert_int_equal(parse("MOVEDX 1 h:1", &r, err), REDTLS__NOT_REDIRECT);
    assert_int_equal(parse("TRYAGAIN Multiple keys request during rehashing of slot", &r, err), REDTLS__NOT_REDIRECT);
    static const char *const bad[] = {"MOVED 16384 h:1", "MOVED -1 h:1", "MOVED x h:1", "MOVED 1", "MOVED 1 h",
                                      "MOVED 1 h:", "MOVED 1 h:0", "MOVED 1 h:65536", "ASK 1 h:7x",
                                      "MOVED 1 a b:1", "MOVED 99999999999 h:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse(bad[i], &r, err), REDTLS__NOT_REDIRECT);
        assert_contains(err, "redirection with a bad");
    }
    char longhost[400] = "MOVED 1 ";
    memset(longhost + 8, 'h', 300);
    strcpy(longhost + 308, ":7000");
    assert_int_equal(parse(longhost, &r, err), REDTLS__NOT_REDIRECT);
}

static redtls__error_kind classify(const char *text)
{
    return redtls__error_classify(text, strlen(text));
}

static void test_error_classify(void **state)
{
    (void)state;
    assert_int_equal(classify("TRYAGAIN Multiple keys request during rehashing of slot"), REDTLS__ERR_TRYAGAIN);
    assert_int_equal(classify("TRYAGAIN"), REDTLS__ERR_TRYAGAIN);
    assert_int_equal(classify("CLUSTERDOWN The cluster is down"), REDTLS__ERR_CLUSTERDOWN);
    assert_int_equal(classify("CLUSTERDOWN Hash slot not served"), REDTLS__ERR_CLUSTERDOWN);
    assert_int_equal(classify("LOADING Redis is loading the dataset in memory"), REDTLS__ERR_STALE);
    assert_int_equal(classify("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
                     REDTLS__ERR_STALE);
    assert_int_equal(classify("READONLY You can't write against a read only replica."), REDTLS__ERR_STALE);
    /* Whole words only, case as Redis sends it; anything else is the
     * command's own outcome. */
    static const char *const final[] = {"ERR unknown command",
                                        "TRYAGAINX",
                                        "tryagain",
                                        "LOADINGX 1",
                                        "WRONGTYPE Operation against a key holding the wrong kind of value",
                                        "NOAUTH Authentication required.",
                                        "CROSSSLOT Keys in request don't hash to the same slot",
                                        "",
                                        "READONLYX",
                                        "MOVED 1 h:1"};
    for (size_t i = 0; i < sizeof final / sizeof final[0]; i++)
        assert_int_equal(classify(final[i]), REDTLS__ERR_FINAL);
    /* A length that stops inside the word is not the word. */
    assert_int_equal(redtls__error_classify("TRYAGAIN", 7), REDTLS__ERR_FINAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_moved_and_ask),
        cmocka_unit_test(test_other_errors_and_malformed),
        cmocka_unit_test(test_error_classify),
    };
    return cmocka_run_group_tests_name("redirect", tests, NULL, NULL);
}

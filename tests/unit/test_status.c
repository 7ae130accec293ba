/* lib/status.c: status texts, detailed messages, version and limits. */
#include "unit_util.h"

static void test_strerror_distinct(void **state)
{
    (void)state;
    const char *seen[REDTLS_E_STATE + 1];
    for (int i = 0; i <= REDTLS_E_STATE; i++) {
        const char *s = redtls_strerror((redtls_status)i);
        assert_non_null(s);
        assert_true(s[0] != '\0');
        if (strstr(s, "unknown"))
            fail_msg("status %d has no text of its own (\"%s\")", i, s);
        for (int j = 0; j < i; j++)
            if (strcmp(seen[j], s) == 0)
                fail_msg("statuses %d and %d share the text \"%s\"", j, i, s);
        seen[i] = s;
    }
    assert_string_equal(redtls_strerror(REDTLS_OK), "success");
    /* REDTLS_E_TLS also reports failures after the handshake (a record
     * error, a refused renegotiation): its text must not say otherwise. */
    assert_string_equal(redtls_strerror(REDTLS_E_TLS), "TLS failure (handshake or record layer)");
}

static void test_strerror_values_fixed(void **state)
{
    (void)state;
    /* Values are part of the ABI: never renumbered. */
    assert_int_equal(REDTLS_OK, 0);
    assert_int_equal(REDTLS_E_INVALID, 1);
    assert_int_equal(REDTLS_E_NOMEM, 2);
    assert_int_equal(REDTLS_E_URL, 3);
    assert_int_equal(REDTLS_E_CONFIG, 4);
    assert_int_equal(REDTLS_E_RESOLVE, 5);
    assert_int_equal(REDTLS_E_CONNECT, 6);
    assert_int_equal(REDTLS_E_CONNECT_TIMEOUT, 7);
    assert_int_equal(REDTLS_E_HANDSHAKE_TIMEOUT, 8);
    assert_int_equal(REDTLS_E_COMMAND_TIMEOUT, 9);
    assert_int_equal(REDTLS_E_TLS, 10);
    assert_int_equal(REDTLS_E_TLS_VERIFY, 11);
    assert_int_equal(REDTLS_E_TLS_HOSTNAME, 12);
    assert_int_equal(REDTLS_E_TLS_CLIENT_CERT, 13);
    assert_int_equal(REDTLS_E_AUTH, 14);
    assert_int_equal(REDTLS_E_SETUP, 15);
    assert_int_equal(REDTLS_E_IO, 16);
    assert_int_equal(REDTLS_E_EOF, 17);
    assert_int_equal(REDTLS_E_CLOSED, 18);
    assert_int_equal(REDTLS_E_PROTOCOL, 19);
    assert_int_equal(REDTLS_E_LIMIT, 20);
    assert_int_equal(REDTLS_E_STATE, 21);
}

static void test_strerror_unknown(void **state)
{
    (void)state;
    assert_string_equal(redtls_strerror((redtls_status)(REDTLS_E_STATE + 1000)), "unknown status");
    assert_string_equal(redtls_strerror((redtls_status)-1), "unknown status");
}

static void test_fail(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX];
    assert_status(redtls__fail(err, REDTLS_E_URL, "bad %s %d", "port", 7), REDTLS_E_URL);
    assert_string_equal(err, "bad port 7");
    assert_status(redtls__fail(NULL, REDTLS_E_IO, "ignored %d", 1), REDTLS_E_IO);
    /* Long messages are cut at the buffer size and stay terminated. */
    char big[2 * REDTLS__ERRMSG_MAX];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memset(err, 'Z', sizeof err);
    assert_status(redtls__fail(err, REDTLS_E_CONFIG, "%s", big), REDTLS_E_CONFIG);
    assert_int_equal(strlen(err), REDTLS__ERRMSG_MAX - 1);
}

static void test_version(void **state)
{
    (void)state;
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", REDTLS_VERSION_MAJOR, REDTLS_VERSION_MINOR, REDTLS_VERSION_PATCH);
    assert_string_equal(redtls_version(), want);
    assert_string_equal(REDTLS_VERSION_STRING, want);
    assert_int_equal(redtls_version_number(),
                     (unsigned)(REDTLS_VERSION_MAJOR * 10000 + REDTLS_VERSION_MINOR * 100 + REDTLS_VERSION_PATCH));
    assert_int_equal(redtls_version_number(), REDTLS_VERSION_NUMBER);
    assert_true(REDTLS_VERSION_MINOR < 100 && REDTLS_VERSION_PATCH < 100);
}

static void test_defaults_macro_and_function(void **state)
{
    (void)state;
    assert_int_equal(redtls_default_connect_timeout_ms(), REDTLS_DEFAULT_CONNECT_TIMEOUT_MS);
    assert_int_equal(redtls_default_handshake_timeout_ms(), REDTLS_DEFAULT_HANDSHAKE_TIMEOUT_MS);
    assert_int_equal(redtls_default_command_timeout_ms(), REDTLS_DEFAULT_COMMAND_TIMEOUT_MS);
    assert_int_equal(redtls_default_max_array_elements(), REDTLS_DEFAULT_MAX_ARRAY_ELEMENTS);
    assert_int_equal(redtls_default_max_bulk_len(), REDTLS_DEFAULT_MAX_BULK_LEN);
    assert_int_equal(redtls_default_max_buffer(), REDTLS_DEFAULT_MAX_BUFFER);
    assert_int_equal(redtls_max_reply_depth(), REDTLS_MAX_REPLY_DEPTH);
    /* The buffer must hold a maximal bulk string and its header. */
    assert_true(REDTLS_DEFAULT_MAX_BUFFER > REDTLS_DEFAULT_MAX_BULK_LEN + 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_distinct),
        cmocka_unit_test(test_strerror_values_fixed),
        cmocka_unit_test(test_strerror_unknown),
        cmocka_unit_test(test_fail),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_defaults_macro_and_function),
    };
    return cmocka_run_group_tests_name("status", tests, NULL, NULL);
}

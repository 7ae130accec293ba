/* lib/handshake.c: AUTH, SELECT and CLIENT SETNAME after the transport is
 * up, driven through the memory transport. */
#define _GNU_SOURCE /* memmem */
#include "unit_util.h"

#define SECRET "sup3rsecret"

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

static redtls_status run_setup(fx *f, redtls_status at_end, const char *server)
{
    f->conn = unit_mem_conn(f->cfg, at_end, &f->t);
    if (server)
        unit_push(f->t, server);
    return unit_conn_setup(f->conn, redtls__deadline_after(2000));
}

static void assert_written(redtls__transport *t, const char *want, size_t want_len)
{
    size_t len = 0;
    const char *w = redtls__mem_written(t, &len);
    if (len != want_len || memcmp(w, want, len) != 0)
        fail_msg("written %zu bytes \"%.*s\", expected %zu bytes \"%.*s\"", len, (int)len, w, want_len, (int)want_len,
                 want);
}

#define ASSERT_WRITTEN(t, lit) assert_written(t, lit, sizeof(lit) - 1)

static void test_nothing_to_do(void **state)
{
    fx *f = *state;
    assert_status(run_setup(f, REDTLS_E_EOF, NULL), REDTLS_OK);
    assert_int_equal(redtls__mem_write_calls(f->t), 0);
    ASSERT_WRITTEN(f->t, "");
    assert_true(redtls_conn_is_connected(f->conn));
}

static void test_auth_token(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_token(f->cfg, SECRET), REDTLS_OK);
    assert_status(run_setup(f, REDTLS_E_EOF, "+OK\r\n"), REDTLS_OK);
    ASSERT_WRITTEN(f->t, "*2\r\n$4\r\nAUTH\r\n$11\r\n" SECRET "\r\n");
    assert_int_equal(redtls__mem_write_calls(f->t), 1);
    assert_true(redtls_conn_is_connected(f->conn));
    assert_int_equal(redtls_conn_pending(f->conn), 0);
    /* The formatting buffer that held the token has been wiped. */
    if (f->conn->obuf && memmem(f->conn->obuf, f->conn->ocap, SECRET, strlen(SECRET)))
        fail_msg("the output buffer still holds the token after AUTH");
}

static void test_auth_user_token(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_user(f->cfg, "alice"), REDTLS_OK);
    assert_status(redtls_config_set_token(f->cfg, SECRET), REDTLS_OK);
    assert_status(run_setup(f, REDTLS_E_EOF, "+OK\r\n"), REDTLS_OK);
    ASSERT_WRITTEN(f->t, "*3\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$11\r\n" SECRET "\r\n");
}

static void test_auth_select_setname_order(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_user(f->cfg, "bob"), REDTLS_OK);
    assert_status(redtls_config_set_token(f->cfg, SECRET), REDTLS_OK);
    assert_status(redtls_config_set_db(f->cfg, 3), REDTLS_OK);
    assert_status(redtls_config_set_client_name(f->cfg, "worker-7"), REDTLS_OK);
    assert_status(run_setup(f, REDTLS_E_EOF, "+OK\r\n+OK\r\n+OK\r\n"), REDTLS_OK);
    ASSERT_WRITTEN(f->t, "*3\r\n$4\r\nAUTH\r\n$3\r\nbob\r\n$11\r\n" SECRET "\r\n"
                         "*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"
                         "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$8\r\nworker-7\r\n");
    /* One round trip each: never pipelined with the AUTH. */
    assert_int_equal(redtls__mem_write_calls(f->t), 3);
    assert_int_equal(redtls_conn_pending(f->conn), 0);
    assert_string_equal(redtls_conn_errmsg(f->conn), "");
}

static void test_select_without_auth(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_db(f->cfg, 12), REDTLS_OK);
    assert_status(run_setup(f, REDTLS_E_EOF, "+OK\r\n"), REDTLS_OK);
    ASSERT_WRITTEN(f->t, "*2\r\n$6\r\nSELECT\r\n$2\r\n12\r\n");
}

static void test_setname_only(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_client_name(f->cfg, "n"), REDTLS_OK);
    assert_status(run_setup(f, REDTLS_E_EOF, "+OK\r\n"), REDTLS_OK);
    ASSERT_WRITTEN(f->t, "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$1\r\nn\r\n");
}

static void test_auth_refused_token_masked(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_token(f->cfg, SECRET), REDTLS_OK);
    assert_status(redtls_config_set_db(f->cfg, 2), REDTLS_OK);
    assert_status(run_setup(f, REDTLS_E_EOF, "-WRONGPASS invalid password '" SECRET "' for user default\r\n"),
                  REDTLS_E_AUTH);
    const char *msg = redtls_conn_errmsg(f->conn);
    assert_contains(msg, "AUTH refused by the server");
    assert_contains(msg, "WRONGPASS invalid password '***********' for user default");
    assert_not_contains(msg, SECRET);
    /* Nothing after the refused AUTH was sent. */
    assert_int_equal(redtls__mem_write_calls(f->t), 1);
}

static void test_auth_refused_with_user(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_user(f->cfg, "carol"), REDTLS_OK);
    assert_status(redtls_config_set_token(f->cfg, SECRET), REDTLS_OK);
    assert_status(run_setup(f, REDTLS_E_EOF, "-ERR AUTH carol " SECRET " " SECRET "x\r\n"), REDTLS_E_AUTH);
    const char *msg = redtls_conn_errmsg(f->conn);
    assert_not_contains(msg, SECRET);
    assert_contains(msg, "carol");
}

/* The server's text is cut to fit the message; a token that straddles the
 * cut must not show even in part. */
static void test_auth_refused_token_at_truncation_point(void **state)
{
    fx *f = *state;
    const char token[] = "Zq9TOKENPREFIXvX3rest-of-the-token";
    assert_status(redtls_config_set_token(f->cfg, token), REDTLS_OK);
    f->conn = unit_mem_conn(f->cfg, REDTLS_E_EOF, &f->t);
    char reply[1024];
    /* Place the token at every offset around the usual buffer sizes. */
    for (int pad = 150; pad < 300; pad++) {
        redtls_conn_free(f->conn);
        f->conn = unit_mem_conn(f->cfg, REDTLS_E_EOF, &f->t);
        int n = snprintf(reply, sizeof reply, "-WRONGPASS %*s%s\r\n", pad, "", token);
        unit_pushn(f->t, reply, (size_t)n);
        assert_status(unit_conn_setup(f->conn, redtls__deadline_after(2000)), REDTLS_E_AUTH);
        const char *msg = redtls_conn_errmsg(f->conn);
        if (strstr(msg, "Zq9TOKEN"))
            fail_msg("with the token at offset %d the message shows its beginning: \"%s\"", pad + 11, msg);
    }
}

static void test_select_refused(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_token(f->cfg, SECRET), REDTLS_OK);
    assert_status(redtls_config_set_db(f->cfg, 99), REDTLS_OK);
    assert_status(redtls_config_set_client_name(f->cfg, "n"), REDTLS_OK);
    assert_status(run_setup(f, REDTLS_E_EOF, "+OK\r\n-ERR DB index is out of range\r\n"), REDTLS_E_SETUP);
    assert_string_equal(redtls_conn_errmsg(f->conn), "SELECT refused by the server: ERR DB index is out of range");
    /* CLIENT SETNAME was not attempted. */
    assert_int_equal(redtls__mem_write_calls(f->t), 2);
}

static void test_setname_refused(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_client_name(f->cfg, "n"), REDTLS_OK);
    assert_status(run_setup(f, REDTLS_E_EOF, "-ERR unknown command 'CLIENT'\r\n"), REDTLS_E_SETUP);
    assert_string_equal(redtls_conn_errmsg(f->conn), "CLIENT SETNAME refused by the server: ERR unknown command 'CLIENT'");
}

static void test_user_without_token(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_user(f->cfg, "alice"), REDTLS_OK);
    assert_status(redtls_config_set_db(f->cfg, 1), REDTLS_OK);
    assert_status(run_setup(f, REDTLS_E_EOF, "+OK\r\n"), REDTLS_E_CONFIG);
    assert_string_equal(redtls_conn_errmsg(f->conn), "user 'alice' is set but no token");
    assert_int_equal(redtls__mem_write_calls(f->t), 0);
}

static void test_timeout_during_auth(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_token(f->cfg, SECRET), REDTLS_OK);
    assert_status(run_setup(f, REDTLS_E_COMMAND_TIMEOUT, NULL), REDTLS_E_HANDSHAKE_TIMEOUT);
    const char *msg = redtls_conn_errmsg(f->conn);
    assert_contains(msg, "AUTH");
    assert_contains(msg, "handshake timeout");
    assert_not_contains(msg, SECRET);
    /* The stream can no longer be trusted. */
    assert_int_equal(redtls_conn_is_connected(f->conn), 0);
}

static void test_timeout_during_select(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_token(f->cfg, SECRET), REDTLS_OK);
    assert_status(redtls_config_set_db(f->cfg, 5), REDTLS_OK);
    assert_status(run_setup(f, REDTLS_E_COMMAND_TIMEOUT, "+OK\r\n"), REDTLS_E_HANDSHAKE_TIMEOUT);
    assert_string_equal(redtls_conn_errmsg(f->conn), "the server did not answer SELECT within the handshake timeout");
    assert_int_equal(redtls_conn_is_connected(f->conn), 0);
}

static void test_eof_during_auth(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_token(f->cfg, SECRET), REDTLS_OK);
    assert_status(run_setup(f, REDTLS_E_EOF, "+O"), REDTLS_E_EOF);
    assert_not_contains(redtls_conn_errmsg(f->conn), SECRET);
    assert_int_equal(redtls_conn_is_connected(f->conn), 0);
}

/* A hostile answer to AUTH is still subject to the reader's limits. */
static void test_limit_during_auth(void **state)
{
    fx *f = *state;
    assert_status(redtls_config_set_token(f->cfg, SECRET), REDTLS_OK);
    assert_status(redtls_config_set_max_array_elements(f->cfg, 2), REDTLS_OK);
    assert_status(run_setup(f, REDTLS_E_EOF, "*3\r\n"), REDTLS_E_LIMIT);
    assert_int_equal(redtls_conn_is_connected(f->conn), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_nothing_to_do),
        T(test_auth_token),
        T(test_auth_user_token),
        T(test_auth_select_setname_order),
        T(test_select_without_auth),
        T(test_setname_only),
        T(test_auth_refused_token_masked),
        T(test_auth_refused_with_user),
        T(test_auth_refused_token_at_truncation_point),
        T(test_select_refused),
        T(test_setname_refused),
        T(test_user_without_token),
        T(test_timeout_during_auth),
        T(test_timeout_during_select),
        T(test_eof_during_auth),
        T(test_limit_during_auth),
    };
    return cmocka_run_group_tests_name("handshake", tests, NULL, NULL);
}

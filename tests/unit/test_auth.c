/* lib/auth.c through the memory transport: the two-token fallback and what
 * it writes, the preferred token across connections, ElastiCache's token
 * rules and strict mode, the credential callback, NOAUTH handling. */
#include "unit_util.h"

#define T1 "first-token-AAAAAAAA"
#define T2 "second-token-BBBBBBB"
#define WRONGPASS "-WRONGPASS invalid username-password pair or user is disabled.\r\n"

static const char *auth_cmd(const char *token, char *buf, size_t len)
{
    snprintf(buf, len, "*2\r\n$4\r\nAUTH\r\n$%zu\r\n%s\r\n", strlen(token), token);
    return buf;
}

typedef struct seen {
    int switched, refreshed;
    char detail[256];
} seen;

static void on_event(void *ud, redtls_event_type type, const char *detail)
{
    seen *s = ud;
    if (type == REDTLS_EVENT_AUTH_TOKEN_SWITCHED)
        s->switched++;
    if (type == REDTLS_EVENT_AUTH_REFRESHED)
        s->refreshed++;
    snprintf(s->detail, sizeof s->detail, "%s", detail);
}

static redtls_config *two_token_config(seen *ev)
{
    redtls_config *cfg = unit_plain_config();
    assert_status(redtls_config_set_token(cfg, T1), REDTLS_OK);
    assert_status(redtls_config_set_token_alt(cfg, T2), REDTLS_OK);
    assert_status(redtls_config_set_event_callback(cfg, on_event, ev), REDTLS_OK);
    return cfg;
}

static void test_fallback_writes_both_tokens_in_order(void **state)
{
    (void)state;
    seen ev = {0};
    redtls_config *cfg = two_token_config(&ev);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_EOF, &t);
    unit_push(t, WRONGPASS);
    unit_push(t, "+OK\r\n");
    assert_status(unit_conn_setup(c, REDTLS__NO_DEADLINE), REDTLS_OK);
    char a[128], b[128], both[256];
    snprintf(both, sizeof both, "%s%s", auth_cmd(T1, a, sizeof a), auth_cmd(T2, b, sizeof b));
    size_t len;
    const char *w = redtls__mem_written(t, &len);
    assert_int_equal(len, strlen(both));
    assert_memory_equal(w, both, len);
    assert_int_equal(ev.switched, 1);
    assert_string_equal(ev.detail, "token 2 accepted, token 1 refused");
    assert_int_equal(redtls_conn_preferred_token(c), 2);

    /* The next connection of the handle starts with token 2. */
    redtls__transport *t2;
    assert_status(redtls__mem_transport(&t2, REDTLS_E_EOF), REDTLS_OK);
    assert_status(redtls__conn_attach(c, t2, 0), REDTLS_OK);
    unit_push(t2, "+OK\r\n");
    assert_status(unit_conn_setup(c, REDTLS__NO_DEADLINE), REDTLS_OK);
    w = redtls__mem_written(t2, &len);
    assert_int_equal(len, strlen(b));
    assert_memory_equal(w, b, len);
    assert_int_equal(ev.switched, 1);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

static void test_both_refused(void **state)
{
    (void)state;
    seen ev = {0};
    redtls_config *cfg = two_token_config(&ev);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_EOF, &t);
    /* A server that echoes what it got must not make us repeat it. */
    unit_push(t, "-WRONGPASS bad password " T1 "\r\n");
    unit_push(t, "-WRONGPASS bad password " T2 "\r\n");
    assert_status(unit_conn_setup(c, REDTLS__NO_DEADLINE), REDTLS_E_AUTH);
    assert_contains(redtls_conn_errmsg(c), "both tokens");
    assert_not_contains(redtls_conn_errmsg(c), T1);
    assert_not_contains(redtls_conn_errmsg(c), T2);
    assert_not_contains(redtls_conn_errmsg(c), "AAAA");
    assert_int_equal(ev.switched, 0);
    assert_int_equal(redtls_conn_preferred_token(c), 1);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

static void test_other_error_does_not_try_second_token(void **state)
{
    (void)state;
    seen ev = {0};
    redtls_config *cfg = two_token_config(&ev);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_EOF, &t);
    unit_push(t, "-ERR AUTH <password> called without any password configured for the default user.\r\n");
    assert_status(unit_conn_setup(c, REDTLS__NO_DEADLINE), REDTLS_E_AUTH);
    assert_contains(redtls_conn_errmsg(c), "without any password configured");
    size_t len;
    char a[128];
    redtls__mem_written(t, &len);
    assert_int_equal(len, strlen(auth_cmd(T1, a, sizeof a))); /* one AUTH only */
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

static void test_legacy_refusals_count(void **state)
{
    (void)state;
    const char *answers[] = {"-ERR invalid password\r\n", "-ERR invalid username-password pair\r\n"};
    for (int i = 0; i < 2; i++) {
        seen ev = {0};
        redtls_config *cfg = two_token_config(&ev);
        redtls__transport *t;
        redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_EOF, &t);
        unit_push(t, answers[i]);
        unit_push(t, "+OK\r\n");
        assert_status(unit_conn_setup(c, REDTLS__NO_DEADLINE), REDTLS_OK);
        assert_int_equal(ev.switched, 1);
        redtls_conn_free(c);
        redtls_config_free(cfg);
    }
}

static void test_elasticache_rules(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_status(redtls_token_check_elasticache("abcdefghijklmnop", &why), REDTLS_OK);
    assert_string_equal(why, "");
    char max[129];
    memset(max, 'x', 128);
    max[128] = '\0';
    assert_status(redtls_token_check_elasticache(max, NULL), REDTLS_OK);
    max[127] = '\0';
    assert_status(redtls_token_check_elasticache(max, NULL), REDTLS_OK);
    char over[130];
    memset(over, 'x', 129);
    over[129] = '\0';
    assert_status(redtls_token_check_elasticache(over, &why), REDTLS_E_INVALID);
    assert_contains(why, "at most 128");
    assert_status(redtls_token_check_elasticache("abcdefghijklmno", &why), REDTLS_E_INVALID);
    assert_contains(why, "at least 16");
    const char *bad[] = {"abcdefgh/ijklmnop", "abcdefgh\"ijklmnop", "abcdefgh@ijklmnop", "abcdefgh ijklmnop",
                         "abcdefgh\tijklmnop", "abcdefgh\x7fijklmnop", "abcdefgh\xc3\xa9ijklmnop"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_status(redtls_token_check_elasticache(bad[i], &why), REDTLS_E_INVALID);
        assert_not_contains(why, "abcdefgh");
    }
    assert_status(redtls_token_check_elasticache(NULL, &why), REDTLS_E_INVALID);
}

static void test_strict_mode(void **state)
{
    (void)state;
    redtls_config *cfg = unit_plain_config();
    /* Not restricted by default. */
    assert_status(redtls_config_set_token(cfg, "short/pw"), REDTLS_OK);
    /* Turning strict mode on checks what is there, and refuses. */
    assert_status(redtls_config_set_strict_elasticache_tokens(cfg, 1), REDTLS_E_INVALID);
    assert_contains(redtls_config_errmsg(cfg), "strict ElastiCache");
    assert_not_contains(redtls_config_errmsg(cfg), "short/pw");
    assert_int_equal(cfg->strict_elasticache, 0);
    assert_status(redtls_config_set_token(cfg, "a-valid-elasticache-token"), REDTLS_OK);
    assert_status(redtls_config_set_strict_elasticache_tokens(cfg, 1), REDTLS_OK);
    assert_status(redtls_config_set_token_alt(cfg, "bad@token-but-long-enough"), REDTLS_E_INVALID);
    assert_null(cfg->token_alt.data);
    assert_status(redtls_config_set_url(cfg, "redis://:too-short@localhost"), REDTLS_E_INVALID);
    assert_not_contains(redtls_config_errmsg(cfg), "too-short");

    /* Live updates follow the handle's policy too. */
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_EOF, &t);
    assert_status(redtls_conn_set_tokens(c, "x", NULL, 0), REDTLS_E_INVALID);
    assert_status(redtls_conn_set_tokens(c, "another-valid-token-123", NULL, 0), REDTLS_OK);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

static void test_pipeline_noauth_reauth_before_next(void **state)
{
    (void)state;
    seen ev = {0};
    redtls_config *cfg = unit_plain_config();
    assert_status(redtls_config_set_token(cfg, T1), REDTLS_OK);
    redtls_config_set_event_callback(cfg, on_event, &ev);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_EOF, &t);
    assert_status(redtls_conn_append(c, "GET a"), REDTLS_OK);
    assert_status(redtls_conn_append(c, "GET b"), REDTLS_OK);
    unit_push(t, "-NOAUTH Authentication required.\r\n$1\r\nx\r\n");
    redisReply *r = NULL;
    assert_status(redtls_conn_get_reply(c, &r), REDTLS_OK);
    assert_int_equal(r->type, REDIS_REPLY_ERROR); /* returned as it is */
    redtls_reply_free(r);
    assert_status(redtls_conn_get_reply(c, &r), REDTLS_OK);
    assert_string_equal(r->str, "x");
    redtls_reply_free(r);
    assert_int_equal(ev.refreshed, 0);
    /* The next command re-authenticates first, then runs. */
    unit_push(t, "+OK\r\n:7\r\n");
    assert_status(redtls_conn_command(c, &r, "INCR n"), REDTLS_OK);
    assert_int_equal(r->integer, 7);
    redtls_reply_free(r);
    assert_int_equal(ev.refreshed, 1);
    size_t len;
    const char *w = redtls__mem_written(t, &len);
    char a[128];
    assert_non_null(strstr(w, auth_cmd(T1, a, sizeof a)));
    assert_true(strstr(w, "AUTH") < strstr(w, "INCR"));
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

static void test_noauth_resent_once_only(void **state)
{
    (void)state;
    redtls_config *cfg = unit_plain_config();
    assert_status(redtls_config_set_token(cfg, T1), REDTLS_OK);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_EOF, &t);
    /* NOAUTH, AUTH ok, NOAUTH again: handed back, not retried forever. */
    unit_push(t, "-NOAUTH Authentication required.\r\n+OK\r\n-NOAUTH Authentication required.\r\n");
    redisReply *r = NULL;
    assert_status(redtls_conn_command(c, &r, "INCR n"), REDTLS_OK);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_contains(r->str, "NOAUTH");
    redtls_reply_free(r);
    size_t len;
    const char *w = redtls__mem_written(t, &len);
    int incr = 0;
    for (const char *p = w; (p = strstr(p, "INCR")) != NULL; p++)
        incr++;
    assert_int_equal(incr, 2);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

static void test_noauth_without_credentials_is_plain_reply(void **state)
{
    (void)state;
    redtls_config *cfg = unit_plain_config();
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_EOF, &t);
    unit_push(t, "-NOAUTH Authentication required.\r\n");
    redisReply *r = NULL;
    assert_status(redtls_conn_command(c, &r, "GET k"), REDTLS_OK);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    redtls_reply_free(r);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

typedef struct cb_state {
    int calls;
    const char *tokens[2];
} cb_state;

static int creds(void *ud, int attempt, char *user, size_t user_cap, char *token, size_t token_cap, char *errbuf,
                 size_t errbuf_cap)
{
    cb_state *s = ud;
    (void)errbuf;
    (void)errbuf_cap;
    s->calls++;
    snprintf(user, user_cap, "svc");
    if (!s->tokens[attempt])
        return 0; /* leaves the token empty */
    snprintf(token, token_cap, "%s", s->tokens[attempt]);
    return 0;
}

static void test_callback_user_and_retry(void **state)
{
    (void)state;
    cb_state s = {0, {"cb-token-one", "cb-token-two"}};
    redtls_config *cfg = unit_plain_config();
    redtls_config_set_token(cfg, T1); /* ignored: the callback wins */
    redtls_config_set_credential_callback(cfg, creds, &s);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_EOF, &t);
    unit_push(t, WRONGPASS "+OK\r\n");
    assert_status(unit_conn_setup(c, REDTLS__NO_DEADLINE), REDTLS_OK);
    assert_int_equal(s.calls, 2);
    size_t len;
    const char *w = redtls__mem_written(t, &len);
    const char *want = "*3\r\n$4\r\nAUTH\r\n$3\r\nsvc\r\n$12\r\ncb-token-one\r\n"
                       "*3\r\n$4\r\nAUTH\r\n$3\r\nsvc\r\n$12\r\ncb-token-two\r\n";
    assert_int_equal(len, strlen(want));
    assert_memory_equal(w, want, len);
    assert_int_equal(redtls_conn_preferred_token(c), 0);
    redtls_conn_free(c);

    s = (cb_state){0, {NULL, NULL}};
    c = unit_mem_conn(cfg, REDTLS_E_EOF, &t);
    assert_status(unit_conn_setup(c, REDTLS__NO_DEADLINE), REDTLS_E_AUTH);
    assert_contains(redtls_conn_errmsg(c), "empty token");
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* A re-authentication whose connection breaks mid-AUTH owes nobody a
 * reply: the next command must neither be told it was "lost with an
 * earlier command" nor find the AUTH's bytes still queued. */
static void test_reauth_now_broken_owes_nothing(void **state)
{
    (void)state;
    seen ev = {0};
    redtls_config *cfg = two_token_config(&ev);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_EOF, &t);
    assert_status(redtls_conn_set_tokens(c, T2, NULL, REDTLS_REAUTH_NOW), REDTLS_E_EOF);
    assert_false(redtls_conn_is_connected(c));
    assert_int_equal(redtls_conn_pending(c), 0);
    assert_int_equal(c->lost, 0);
    assert_int_equal(c->olen, 0);
    assert_int_equal(ev.refreshed, 0);
    /* On the next connection a command goes out alone and gets its reply. */
    redtls__transport *t2;
    assert_status(redtls__mem_transport(&t2, REDTLS_E_EOF), REDTLS_OK);
    assert_status(redtls__conn_attach(c, t2, 0), REDTLS_OK);
    unit_push(t2, "+PONG\r\n");
    redisReply *r = NULL;
    assert_status(redtls_conn_command(c, &r, "PING"), REDTLS_OK);
    assert_string_equal(r->str, "PONG");
    freeReplyObject(r);
    size_t len;
    const char *w = redtls__mem_written(t2, &len);
    assert_int_equal(len, 14);
    assert_memory_equal(w, "*1\r\n$4\r\nPING\r\n", 14);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fallback_writes_both_tokens_in_order),
        cmocka_unit_test(test_both_refused),
        cmocka_unit_test(test_other_error_does_not_try_second_token),
        cmocka_unit_test(test_legacy_refusals_count),
        cmocka_unit_test(test_elasticache_rules),
        cmocka_unit_test(test_strict_mode),
        cmocka_unit_test(test_pipeline_noauth_reauth_before_next),
        cmocka_unit_test(test_noauth_resent_once_only),
        cmocka_unit_test(test_noauth_without_credentials_is_plain_reply),
        cmocka_unit_test(test_callback_user_and_retry),
        cmocka_unit_test(test_reauth_now_broken_owes_nothing),
    };
    return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}

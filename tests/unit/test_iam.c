/* lib/iam.c and IAM in lib/auth.c, lib/conn.c, lib/url.c: configuration
 * rules, credential sources, and the token lifecycle under a fake clock
 * through the memory transport (reuse before the margin, renewal after
 * it, re-authentication when due, one fresh token after a refusal), with
 * no secret in any message or event. */
#include "unit_util.h"

#include <stdlib.h>

#include "iam.h"

#define KEY_ID "AKIDUNITTEST0000001"
#define SECRET "unit/Secret+Key=0000000000000000000000"
#define SESSION "unit-session/token+with=chars"
#define WRONGPASS "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
/* 2026-03-01T12:00:00Z */
#define T0_MS (1772366400LL * 1000)

typedef struct fake_clock {
    int64_t now_ms;
} fake_clock;

static int64_t fake_now(void *ud)
{
    return ((fake_clock *)ud)->now_ms;
}

typedef struct events {
    int refreshed;
    char all[2048];
} events;

static void on_event(void *ud, redtls_event_type type, const char *detail)
{
    events *e = ud;
    if (type == REDTLS_EVENT_AUTH_REFRESHED)
        e->refreshed++;
    size_t n = strlen(e->all);
    snprintf(e->all + n, sizeof e->all - n, "%d:%s\n", (int)type, detail);
}

static redtls_config *iam_config(fake_clock *clk, events *ev)
{
    redtls_config *cfg = NULL;
    assert_status(redtls_config_new(&cfg), REDTLS_OK);
    assert_status(redtls_config_set_reconnect(cfg, 0), REDTLS_OK);
    assert_status(redtls_config_set_iam(cfg, "my-cache-01", "iam-user-1", "eu-west-1", 0), REDTLS_OK);
    assert_status(redtls_config_set_aws_credentials(cfg, KEY_ID, SECRET, SESSION), REDTLS_OK);
    if (ev)
        assert_status(redtls_config_set_event_callback(cfg, on_event, ev), REDTLS_OK);
    cfg->iam.clock = fake_now;
    cfg->iam.clock_ud = clk;
    return cfg;
}

/* The token cfg makes for a time, as the public call gives it. */
static void token_at(redtls_config *cfg, int64_t ms, char *out, size_t cap)
{
    assert_status(redtls_iam_token(cfg, ms / 1000, out, cap), REDTLS_OK);
}

static void auth_frame(const char *user, const char *token, char *out, size_t cap)
{
    snprintf(out, cap, "*3\r\n$4\r\nAUTH\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n", strlen(user), user, strlen(token), token);
}

static redtls_conn *mem_conn(redtls_config *cfg, redtls__transport **t)
{
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    assert_status(redtls__mem_transport(t, REDTLS_E_EOF), REDTLS_OK);
    assert_status(redtls__conn_attach(c, *t, 0), REDTLS_OK);
    return c;
}

static int has_bytes(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(hay + i, needle, n) == 0)
            return 1;
    return 0;
}

static void no_secret_in(const char *text)
{
    assert_null(strstr(text, SECRET));
    assert_null(strstr(text, SESSION));
    assert_null(strstr(text, "unit%2FSecret"));
    assert_null(strstr(text, "X-Amz-Signature="));
}

static void test_config_rules(void **state)
{
    (void)state;
    redtls_config *cfg = NULL;
    assert_status(redtls_config_new(&cfg), REDTLS_OK);
    assert_status(redtls_config_set_iam(cfg, "My-Cache", "u", "us-east-1", 0), REDTLS_E_INVALID);
    assert_contains(redtls_config_errmsg(cfg), "lower case");
    assert_status(redtls_config_set_iam(cfg, "cache_1", "u", "us-east-1", 0), REDTLS_E_INVALID);
    assert_status(redtls_config_set_iam(cfg, "cache", "", "us-east-1", 0), REDTLS_E_INVALID);
    assert_contains(redtls_config_errmsg(cfg), "user id");
    assert_status(redtls_config_set_iam(cfg, "cache", "u", "US-EAST-1", 0), REDTLS_E_INVALID);
    assert_contains(redtls_config_errmsg(cfg), "region");
    assert_status(redtls_config_set_iam(cfg, "cache", "u", "us-east-1", 8), REDTLS_E_INVALID);
    assert_status(redtls_config_set_iam_service(cfg, "s3"), REDTLS_E_INVALID);
    assert_status(redtls_config_set_iam_service(cfg, "memorydb"), REDTLS_OK);
    assert_status(redtls_config_set_aws_credentials(cfg, "", SECRET, NULL), REDTLS_E_INVALID);
    assert_status(redtls_config_set_iam(cfg, "cache", "u", "us-east-1", REDTLS_IAM_SERVERLESS), REDTLS_OK);

    /* No credentials yet: a token cannot be made, and says why. */
    char tok[4096];
    assert_status(redtls_iam_token(cfg, 1700000000, tok, sizeof tok), REDTLS_E_CONFIG);
    assert_contains(redtls_config_errmsg(cfg), "AWS credentials");

    /* IAM without TLS is refused when a connection is made. */
    assert_status(redtls_config_set_tls(cfg, 0), REDTLS_OK);
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(cfg, &c), REDTLS_E_CONFIG);
    assert_null(c);
    assert_contains(redtls_config_errmsg(cfg), "TLS");
    redtls_config_free(cfg);
}

static void test_url_form(void **state)
{
    (void)state;
    redtls_config *cfg = NULL;
    assert_status(redtls_config_new(&cfg), REDTLS_OK);
    assert_status(redtls_config_set_url(cfg, "rediss://app-user@my-cache.abc123.euw1.cache.amazonaws.com:6379"
                                             "?iam=my-cache&region=eu-west-1&serverless=1&iam_service=memorydb"),
                  REDTLS_OK);
    assert_string_equal(cfg->iam.cache_name, "my-cache");
    assert_string_equal(cfg->iam.user_id, "app-user");
    assert_string_equal(cfg->iam.region, "eu-west-1");
    assert_string_equal(cfg->iam.service, "memorydb");
    assert_int_equal(cfg->iam.serverless, 1);
    assert_int_equal(cfg->iam.creds, REDTLS__AWS_CREDS_ENV);
    redtls_config *fresh = NULL;
    assert_status(redtls_config_new(&fresh), REDTLS_OK);
    assert_status(redtls_config_set_url(fresh, "rediss://host?iam=c&region=us-east-1"), REDTLS_E_URL);
    assert_contains(redtls_config_errmsg(fresh), "user id");
    redtls_config_free(fresh);
    assert_status(redtls_config_set_url(cfg, "rediss://u@host?iam=c"), REDTLS_E_URL);
    assert_contains(redtls_config_errmsg(cfg), "region");
    assert_status(redtls_config_set_url(cfg, "rediss://u@host?region=us-east-1"), REDTLS_E_URL);
    assert_status(redtls_config_set_url(cfg, "rediss://u@host?iam=Upper&region=us-east-1"), REDTLS_E_URL);
    assert_contains(redtls_config_errmsg(cfg), "lower case");
    assert_status(redtls_config_set_url(cfg, "rediss://u@host?iam=c&region=us-east-1&serverless=maybe"), REDTLS_E_URL);
    redtls_config_free(cfg);
}

static void test_env_credentials(void **state)
{
    (void)state;
    redtls_config *cfg = NULL;
    assert_status(redtls_config_new(&cfg), REDTLS_OK);
    assert_status(redtls_config_set_iam(cfg, "cache", "u", "us-east-1", 0), REDTLS_OK);
    assert_status(redtls_config_set_aws_credentials_from_env(cfg), REDTLS_OK);
    char tok[4096], tok2[4096];
    unsetenv("AWS_ACCESS_KEY_ID");
    assert_status(redtls_iam_token(cfg, 1700000000, tok, sizeof tok), REDTLS_E_AUTH);
    assert_contains(redtls_config_errmsg(cfg), "AWS_ACCESS_KEY_ID");
    setenv("AWS_ACCESS_KEY_ID", KEY_ID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    unsetenv("AWS_SESSION_TOKEN");
    assert_status(redtls_iam_token(cfg, 1700000000, tok, sizeof tok), REDTLS_OK);
    /* The same as explicit credentials. */
    assert_status(redtls_config_set_aws_credentials(cfg, KEY_ID, SECRET, NULL), REDTLS_OK);
    assert_status(redtls_iam_token(cfg, 1700000000, tok2, sizeof tok2), REDTLS_OK);
    assert_string_equal(tok, tok2);
    assert_true(strncmp(tok, "cache/?", 7) == 0);
    assert_non_null(strstr(tok, "Action=connect"));
    assert_non_null(strstr(tok, "User=u"));
    assert_non_null(strstr(tok, "X-Amz-Expires=900"));
    assert_null(strstr(tok, "X-Amz-Security-Token"));
    assert_null(strstr(tok, "https://"));
    /* Too small a buffer. */
    assert_status(redtls_iam_token(cfg, 1700000000, tok2, 20), REDTLS_E_LIMIT);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    redtls_config_free(cfg);
}

/* Reuse while younger than 10 minutes, a new token after, and the
 * re-authentication schedule. */
static void test_lifecycle(void **state)
{
    (void)state;
    fake_clock clk = {T0_MS};
    events ev = {0};
    redtls_config *cfg = iam_config(&clk, &ev);
    assert_status(redtls_config_set_iam_reauth_ms(cfg, 3600 * 1000), REDTLS_OK);
    char a[4096], b[4096], frame[8192];
    token_at(cfg, T0_MS, a, sizeof a);
    token_at(cfg, T0_MS + 11 * 60 * 1000, b, sizeof b);
    assert_string_not_equal(a, b);
    assert_non_null(strstr(a, "X-Amz-Security-Token="));

    redtls__transport *t;
    redtls_conn *c = mem_conn(cfg, &t);
    unit_push(t, "+OK\r\n");
    assert_status(unit_conn_setup(c, REDTLS__NO_DEADLINE), REDTLS_OK);
    size_t len;
    const char *w = redtls__mem_written(t, &len);
    auth_frame("iam-user-1", a, frame, sizeof frame);
    assert_int_equal(len, strlen(frame));
    assert_memory_equal(w, frame, len);
    assert_false(redtls__iam_reauth_due(&c->cfg.iam, &c->iam));

    /* A reconnection 9 minutes later sends the same token. */
    clk.now_ms = T0_MS + 9 * 60 * 1000;
    redtls__transport *t2;
    assert_status(redtls__mem_transport(&t2, REDTLS_E_EOF), REDTLS_OK);
    assert_status(redtls__conn_attach(c, t2, 0), REDTLS_OK);
    unit_push(t2, "+OK\r\n");
    assert_status(unit_conn_setup(c, REDTLS__NO_DEADLINE), REDTLS_OK);
    w = redtls__mem_written(t2, &len);
    assert_int_equal(len, strlen(frame));
    assert_memory_equal(w, frame, len);

    /* 11 minutes after the first: a new one. */
    clk.now_ms = T0_MS + 11 * 60 * 1000;
    redtls__transport *t3;
    assert_status(redtls__mem_transport(&t3, REDTLS_E_EOF), REDTLS_OK);
    assert_status(redtls__conn_attach(c, t3, 0), REDTLS_OK);
    unit_push(t3, "+OK\r\n");
    assert_status(unit_conn_setup(c, REDTLS__NO_DEADLINE), REDTLS_OK);
    w = redtls__mem_written(t3, &len);
    auth_frame("iam-user-1", b, frame, sizeof frame);
    assert_int_equal(len, strlen(frame));
    assert_memory_equal(w, frame, len);

    /* An hour on, the open connection is due; the next command first
     * sends AUTH (with a token made now), then the command. */
    clk.now_ms += 3600 * 1000;
    assert_true(redtls__iam_reauth_due(&c->cfg.iam, &c->iam));
    char fresh[4096];
    token_at(cfg, clk.now_ms, fresh, sizeof fresh);
    unit_push(t3, "+OK\r\n");
    unit_push(t3, "+PONG\r\n");
    redisReply *r = NULL;
    assert_status(redtls_conn_command(c, &r, "PING"), REDTLS_OK);
    assert_string_equal(r->str, "PONG");
    redtls_reply_free(r);
    w = redtls__mem_written(t3, &len);
    char expect[16384];
    auth_frame("iam-user-1", b, frame, sizeof frame);
    size_t n = (size_t)snprintf(expect, sizeof expect, "%s", frame);
    auth_frame("iam-user-1", fresh, frame, sizeof frame);
    n += (size_t)snprintf(expect + n, sizeof expect - n, "%s*1\r\n$4\r\nPING\r\n", frame);
    assert_int_equal(len, n);
    assert_memory_equal(w, expect, len);
    assert_int_equal(ev.refreshed, 1);
    assert_contains(ev.all, "before the server's connection limit");
    assert_false(redtls__iam_reauth_due(&c->cfg.iam, &c->iam));
    no_secret_in(ev.all);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

typedef struct rotating {
    int calls;
} rotating;

/* Hands out the first key pair, then a second one (rotated keys). */
static int rotating_creds(void *ud, char *id, size_t id_cap, char *secret, size_t secret_cap, char *session,
                          size_t session_cap, char *errbuf, size_t errbuf_cap)
{
    rotating *r = ud;
    (void)errbuf;
    (void)errbuf_cap;
    r->calls++;
    snprintf(id, id_cap, "%s", r->calls == 1 ? "AKIDOLD000000000" : "AKIDNEW000000000");
    snprintf(secret, secret_cap, "%s", SECRET);
    snprintf(session, session_cap, "%s", r->calls == 1 ? "" : SESSION);
    return 0;
}

/* Refused once: one fresh token (the keys were rotated) and one retry. */
static void test_refusal_one_fresh_retry(void **state)
{
    (void)state;
    fake_clock clk = {T0_MS};
    events ev = {0};
    rotating rot = {0};
    redtls_config *cfg = iam_config(&clk, &ev);
    assert_status(redtls_config_set_aws_credentials_callback(cfg, rotating_creds, &rot), REDTLS_OK);
    redtls__transport *t;
    redtls_conn *c = mem_conn(cfg, &t);
    unit_push(t, WRONGPASS);
    unit_push(t, "+OK\r\n");
    assert_status(unit_conn_setup(c, REDTLS__NO_DEADLINE), REDTLS_OK);
    assert_int_equal(rot.calls, 2);
    size_t len;
    const char *w = redtls__mem_written(t, &len);
    assert_true(has_bytes(w, len, "AKIDOLD000000000"));
    assert_true(has_bytes(w, len, "AKIDNEW000000000"));

    /* Refused twice: E_AUTH naming the likely causes, and no secret. */
    redtls__transport *t2;
    assert_status(redtls__mem_transport(&t2, REDTLS_E_EOF), REDTLS_OK);
    assert_status(redtls__conn_attach(c, t2, 0), REDTLS_OK);
    /* A server that echoes what it got must not make us repeat it. */
    unit_push(t2, WRONGPASS);
    unit_push(t2, WRONGPASS);
    assert_status(unit_conn_setup(c, REDTLS__NO_DEADLINE), REDTLS_E_AUTH);
    const char *msg = redtls_conn_errmsg(c);
    print_message("%s\n", msg);
    assert_contains(msg, "twice");
    assert_contains(msg, "elasticache:Connect");
    assert_contains(msg, "clock");
    assert_contains(msg, "my-cache-01");
    no_secret_in(msg);
    no_secret_in(ev.all);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

static int failing_creds(void *ud, char *id, size_t id_cap, char *secret, size_t secret_cap, char *session,
                         size_t session_cap, char *errbuf, size_t errbuf_cap)
{
    (void)ud;
    (void)id;
    (void)id_cap;
    (void)secret;
    (void)secret_cap;
    (void)session;
    (void)session_cap;
    snprintf(errbuf, errbuf_cap, "the vault is sealed");
    return 1;
}

static void test_credential_source_failure(void **state)
{
    (void)state;
    fake_clock clk = {T0_MS};
    redtls_config *cfg = iam_config(&clk, NULL);
    assert_status(redtls_config_set_aws_credentials_callback(cfg, failing_creds, NULL), REDTLS_OK);
    redtls__transport *t;
    redtls_conn *c = mem_conn(cfg, &t);
    assert_status(unit_conn_setup(c, REDTLS__NO_DEADLINE), REDTLS_E_AUTH);
    assert_contains(redtls_conn_errmsg(c), "the vault is sealed");
    size_t len;
    redtls__mem_written(t, &len);
    assert_int_equal(len, 0);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* Explicit credentials: a freshly made token that is refused is not sent
 * again (a new one would be the same); the server's answer, which echoes
 * the token, is masked. */
static void test_refused_fresh_token_not_resent(void **state)
{
    (void)state;
    fake_clock clk = {T0_MS};
    redtls_config *cfg = iam_config(&clk, NULL);
    char a[4096], echo[8192];
    token_at(cfg, T0_MS, a, sizeof a);
    snprintf(echo, sizeof echo, "-WRONGPASS no such token %s\r\n", a);
    redtls__transport *t;
    redtls_conn *c = mem_conn(cfg, &t);
    unit_push(t, echo);
    assert_status(unit_conn_setup(c, REDTLS__NO_DEADLINE), REDTLS_E_AUTH);
    const char *msg = redtls_conn_errmsg(c);
    print_message("%s\n", msg);
    assert_null(strstr(msg, "twice"));
    assert_contains(msg, "refused the IAM token");
    assert_null(strstr(msg, a));
    no_secret_in(msg);
    size_t len;
    const char *w = redtls__mem_written(t, &len);
    char frame[8192];
    auth_frame("iam-user-1", a, frame, sizeof frame);
    assert_int_equal(len, strlen(frame));
    assert_memory_equal(w, frame, len);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

typedef struct flaky {
    int fail;
} flaky;

static int flaky_creds(void *ud, char *id, size_t id_cap, char *secret, size_t secret_cap, char *session,
                       size_t session_cap, char *errbuf, size_t errbuf_cap)
{
    flaky *f = ud;
    (void)session;
    (void)session_cap;
    if (f->fail) {
        snprintf(errbuf, errbuf_cap, "metadata service timed out");
        return 1;
    }
    snprintf(id, id_cap, "%s", KEY_ID);
    snprintf(secret, secret_cap, "%s", SECRET);
    return 0;
}

/* A scheduled re-authentication whose credential source fails keeps the
 * connection (the command goes out on it), reports why, and is tried again
 * a minute later, not before. */
static void test_failed_reauth_keeps_connection(void **state)
{
    (void)state;
    fake_clock clk = {T0_MS};
    events ev = {0};
    flaky fl = {0};
    redtls_config *cfg = iam_config(&clk, &ev);
    assert_status(redtls_config_set_aws_credentials_callback(cfg, flaky_creds, &fl), REDTLS_OK);
    assert_status(redtls_config_set_iam_reauth_ms(cfg, 3600 * 1000), REDTLS_OK);
    redtls__transport *t;
    redtls_conn *c = mem_conn(cfg, &t);
    unit_push(t, "+OK\r\n");
    assert_status(unit_conn_setup(c, REDTLS__NO_DEADLINE), REDTLS_OK);
    size_t after_setup;
    redtls__mem_written(t, &after_setup);

    clk.now_ms += 3600 * 1000 + 11 * 60 * 1000; /* due, and the token too old to reuse */
    fl.fail = 1;
    unit_push(t, "+PONG\r\n");
    redisReply *r = NULL;
    assert_status(redtls_conn_command(c, &r, "PING"), REDTLS_OK);
    assert_string_equal(r->str, "PONG");
    redtls_reply_free(r);
    assert_true(redtls_conn_is_connected(c));
    assert_contains(ev.all, "6:");
    assert_contains(ev.all, "metadata service timed out");
    size_t len;
    const char *w = redtls__mem_written(t, &len);
    assert_int_equal(len - after_setup, strlen("*1\r\n$4\r\nPING\r\n"));
    assert_memory_equal(w + after_setup, "*1\r\n$4\r\nPING\r\n", len - after_setup);

    /* 30 s later: no new try. */
    clk.now_ms += 30 * 1000;
    assert_false(redtls__iam_reauth_due(&c->cfg.iam, &c->iam));
    /* A minute after the failure: tried again, and it works now. */
    clk.now_ms += 31 * 1000;
    assert_true(redtls__iam_reauth_due(&c->cfg.iam, &c->iam));
    fl.fail = 0;
    unit_push(t, "+OK\r\n");
    unit_push(t, "+PONG\r\n");
    assert_status(redtls_conn_command(c, &r, "PING"), REDTLS_OK);
    redtls_reply_free(r);
    assert_int_equal(ev.refreshed, 1);
    assert_false(redtls__iam_reauth_due(&c->cfg.iam, &c->iam));
    no_secret_in(ev.all);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_rules),
        cmocka_unit_test(test_url_form),
        cmocka_unit_test(test_env_credentials),
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_refusal_one_fresh_retry),
        cmocka_unit_test(test_credential_source_failure),
        cmocka_unit_test(test_refused_fresh_token_not_resent),
        cmocka_unit_test(test_failed_reauth_keeps_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

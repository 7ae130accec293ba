/* lib/setup.c and the AUTH machine under it (lib/auth.c), stepped by hand
 * on the memory transport with a fake clock: the handshake timeout of each
 * set-up request, a credential callback that answers later
 * (REDTLS_CREDENTIAL_PENDING), and token rotation. (tests/unit/
 * test_handshake.c runs the same set-up through the blocking driver.) */
#include "unit_util.h"

#include <poll.h>

#define T0 1000000
#define TOKEN "s3cret-token-0123"
#define T1 "first-token-AAAAAAAA"
#define T2 "second-token-BBBBBBB"
#define AUTH1 "*2\r\n$4\r\nAUTH\r\n$20\r\n" T1 "\r\n"
#define AUTH2 "*2\r\n$4\r\nAUTH\r\n$20\r\n" T2 "\r\n"
#define WRONGPASS "-WRONGPASS invalid username-password pair or user is disabled.\r\n"

static void assert_written(redtls__transport *t, const char *want)
{
    size_t len = 0;
    const char *w = redtls__mem_written(t, &len);
    if (len != strlen(want) || memcmp(w, want, len) != 0)
        fail_msg("written \"%.*s\", expected \"%s\"", (int)len, w, want);
}

/* ---- 3 (b). every set-up request has the handshake timeout ---- */

/* The server answers the requests before `what` (scripted in `answers`)
 * and never `what` itself: waiting until the deadline, then the timeout
 * naming it. */
static void run_setup_timeout(const char *answers, const char *what, const char *last_request)
{
    redtls_config *cfg = unit_plain_config();
    assert_status(redtls_config_set_token(cfg, TOKEN), REDTLS_OK);
    assert_status(redtls_config_set_db(cfg, 2), REDTLS_OK);
    assert_status(redtls_config_set_client_name(cfg, "w7"), REDTLS_OK);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    unit_push(t, answers);
    const int64_t deadline = T0 + 1000;
    int done = 0;
    redtls__wait w;
    assert_status(redtls__setup_start(c, T0, deadline), REDTLS_OK);
    assert_status(redtls__setup_step(c, T0, deadline, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_int_equal(w.fd, -1);
    assert_int_equal(w.events, POLLIN);
    assert_true(w.at == deadline);
    size_t len;
    const char *written = redtls__mem_written(t, &len);
    size_t n = strlen(last_request);
    assert_true(len >= n);
    assert_memory_equal(written + len - n, last_request, n);

    assert_status(redtls__setup_step(c, deadline - 1, deadline, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_int_equal(w.events, POLLIN);
    assert_true(w.at == deadline);
    assert_true(redtls_conn_is_connected(c));

    assert_status(redtls__setup_step(c, deadline, deadline, &done, &w), REDTLS_E_HANDSHAKE_TIMEOUT);
    char want[96];
    snprintf(want, sizeof want, "the server did not answer %s within the handshake timeout", what);
    assert_string_equal(redtls_conn_errmsg(c), want);
    assert_not_contains(redtls_conn_errmsg(c), TOKEN);
    assert_false(redtls_conn_is_connected(c));
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

static void test_auth_unanswered(void **state)
{
    (void)state;
    run_setup_timeout("", "AUTH", "*2\r\n$4\r\nAUTH\r\n$17\r\n" TOKEN "\r\n");
}

static void test_select_unanswered(void **state)
{
    (void)state;
    run_setup_timeout("+OK\r\n", "SELECT", "*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n");
}

static void test_setname_unanswered(void **state)
{
    (void)state;
    run_setup_timeout("+OK\r\n+OK\r\n", "CLIENT SETNAME", "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$2\r\nw7\r\n");
}

/* ---- 4. the credential callback answering later ---- */

typedef struct cb_script {
    int pending[2]; /* "pending" answers still to give per attempt; -1: forever */
    const char *token[2];
    int calls;
    int attempts[32];
} cb_script;

static int script_cb(void *ud, int attempt, char *user, size_t user_cap, char *token, size_t token_cap, char *errbuf,
                     size_t errbuf_cap)
{
    cb_script *s = ud;
    (void)errbuf;
    (void)errbuf_cap;
    assert_true(attempt == 0 || attempt == 1);
    assert_true(s->calls < 32);
    s->attempts[s->calls++] = attempt;
    if (s->pending[attempt] != 0) {
        if (s->pending[attempt] > 0)
            s->pending[attempt]--;
        return REDTLS_CREDENTIAL_PENDING;
    }
    snprintf(user, user_cap, "svc");
    snprintf(token, token_cap, "%s", s->token[attempt]);
    return 0;
}

static redtls_conn *callback_conn(redtls_config **cfg, cb_script *s, redtls__transport **t)
{
    *cfg = unit_plain_config();
    assert_status(redtls_config_set_credential_callback(*cfg, script_cb, s), REDTLS_OK);
    return unit_mem_conn(*cfg, REDTLS_E_COMMAND_TIMEOUT, t);
}

/* Two "pending" answers, then a token: asked again after 5 ms, then 10 ms
 * later, never before its time, nothing written meanwhile; the AUTH then
 * carries the callback's user and token. */
static void test_callback_pending_then_token(void **state)
{
    (void)state;
    cb_script s = {{2, 0}, {"cb-token-one", NULL}, 0, {0}};
    redtls_config *cfg;
    redtls__transport *t;
    redtls_conn *c = callback_conn(&cfg, &s, &t);
    const int64_t deadline = T0 + 1000;
    int done = 0;
    redtls__wait w;
    assert_status(redtls__setup_start(c, T0, deadline), REDTLS_OK);
    assert_int_equal(s.calls, 0); /* asked by the first step */

    assert_status(redtls__setup_step(c, T0, deadline, &done, &w), REDTLS_OK);
    assert_int_equal(s.calls, 1);
    assert_false(done);
    assert_int_equal(w.fd, -1);
    assert_int_equal(w.events, 0);
    assert_true(w.at == T0 + 5);

    assert_status(redtls__setup_step(c, T0 + 4, deadline, &done, &w), REDTLS_OK);
    assert_int_equal(s.calls, 1);
    assert_true(w.at == T0 + 5);

    assert_status(redtls__setup_step(c, T0 + 5, deadline, &done, &w), REDTLS_OK);
    assert_int_equal(s.calls, 2);
    assert_int_equal(w.fd, -1);
    assert_int_equal(w.events, 0);
    assert_true(w.at == T0 + 15);
    assert_int_equal(redtls__mem_write_calls(t), 0);
    assert_written(t, "");

    assert_status(redtls__setup_step(c, T0 + 15, deadline, &done, &w), REDTLS_OK);
    assert_int_equal(s.calls, 3);
    assert_false(done);
    assert_int_equal(w.events, POLLIN);
    assert_true(w.at == deadline);
    assert_written(t, "*3\r\n$4\r\nAUTH\r\n$3\r\nsvc\r\n$12\r\ncb-token-one\r\n");

    unit_push(t, "+OK\r\n");
    assert_status(redtls__setup_step(c, T0 + 16, deadline, &done, &w), REDTLS_OK);
    assert_true(done);
    assert_int_equal(s.calls, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(s.attempts[i], 0);
    assert_true(redtls_conn_is_connected(c));
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* Always "pending": asked at doubling intervals capped at 100 ms until the
 * handshake timeout, which then names the callback's answer. */
static void test_callback_pending_forever(void **state)
{
    (void)state;
    cb_script s = {{-1, -1}, {NULL, NULL}, 0, {0}};
    redtls_config *cfg;
    redtls__transport *t;
    redtls_conn *c = callback_conn(&cfg, &s, &t);
    const int64_t deadline = T0 + 1000;
    static const int64_t intervals[] = {5, 10, 20, 40, 80, 100, 100, 100, 100, 100, 100, 100, 100, 100};
    int done = 0;
    redtls__wait w;
    assert_status(redtls__setup_start(c, T0, deadline), REDTLS_OK);
    int64_t now = T0;
    for (size_t i = 0; i < sizeof intervals / sizeof intervals[0]; i++) {
        assert_status(redtls__setup_step(c, now, deadline, &done, &w), REDTLS_OK);
        assert_int_equal(s.calls, (int)i + 1);
        assert_int_equal(w.fd, -1);
        assert_int_equal(w.events, 0);
        /* The last interval would end past the deadline: the deadline. */
        int64_t next = now + intervals[i] < deadline ? now + intervals[i] : deadline;
        if (w.at != next)
            fail_msg("ask %zu at %+lld ms: next at %+lld ms, expected %+lld", i + 1, (long long)(now - T0),
                     (long long)(w.at - T0), (long long)(next - T0));
        now = w.at;
    }
    assert_true(now == deadline);
    assert_status(redtls__setup_step(c, now, deadline, &done, &w), REDTLS_E_HANDSHAKE_TIMEOUT);
    assert_contains(redtls_conn_errmsg(c), "REDTLS_CREDENTIAL_PENDING");
    assert_int_equal(redtls__mem_write_calls(t), 0);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* Refused (WRONGPASS): the callback is asked again, now with attempt 1,
 * at once, and its "pending" starts the intervals again at 5 ms (attempt
 * 0's "pending" answers had stretched them to 20). */
static void test_callback_refused_then_attempt_one(void **state)
{
    (void)state;
    cb_script s = {{2, 1}, {"cb-token-one", "cb-token-two"}, 0, {0}};
    redtls_config *cfg;
    redtls__transport *t;
    redtls_conn *c = callback_conn(&cfg, &s, &t);
    const int64_t deadline = T0 + 1000;
    int done = 0;
    redtls__wait w;
    assert_status(redtls__setup_start(c, T0, deadline), REDTLS_OK);
    assert_status(redtls__setup_step(c, T0, deadline, &done, &w), REDTLS_OK);
    assert_true(w.at == T0 + 5);
    assert_status(redtls__setup_step(c, T0 + 5, deadline, &done, &w), REDTLS_OK);
    assert_true(w.at == T0 + 15);
    assert_status(redtls__setup_step(c, T0 + 15, deadline, &done, &w), REDTLS_OK);
    assert_int_equal(s.calls, 3);
    assert_int_equal(w.events, POLLIN);

    unit_push(t, WRONGPASS);
    assert_status(redtls__setup_step(c, T0 + 50, deadline, &done, &w), REDTLS_OK);
    assert_int_equal(s.calls, 4);
    assert_int_equal(s.attempts[3], 1);
    assert_int_equal(w.fd, -1);
    assert_int_equal(w.events, 0);
    assert_true(w.at == T0 + 55);

    assert_status(redtls__setup_step(c, T0 + 55, deadline, &done, &w), REDTLS_OK);
    assert_int_equal(s.calls, 5);
    assert_int_equal(s.attempts[4], 1);
    assert_int_equal(w.events, POLLIN);
    assert_written(t, "*3\r\n$4\r\nAUTH\r\n$3\r\nsvc\r\n$12\r\ncb-token-one\r\n"
                      "*3\r\n$4\r\nAUTH\r\n$3\r\nsvc\r\n$12\r\ncb-token-two\r\n");

    unit_push(t, "+OK\r\n");
    assert_status(redtls__setup_step(c, T0 + 56, deadline, &done, &w), REDTLS_OK);
    assert_true(done);
    assert_int_equal(s.calls, 5);
    for (int i = 0; i < 3; i++)
        assert_int_equal(s.attempts[i], 0);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* ---- 5. token rotation through the machine ---- */

typedef struct events {
    int switched;
    char detail[256];
} events;

static void on_event(void *ud, redtls_event_type type, const char *detail)
{
    events *e = ud;
    if (type == REDTLS_EVENT_AUTH_TOKEN_SWITCHED) {
        e->switched++;
        snprintf(e->detail, sizeof e->detail, "%s", detail);
    }
}

/* Token 1 refused: token 2 goes out on the same connection; only once it
 * is accepted does it become preferred and the event fire. The next
 * connection starts with it. */
static void test_rotation(void **state)
{
    (void)state;
    events ev = {0, ""};
    redtls_config *cfg = unit_plain_config();
    assert_status(redtls_config_set_token(cfg, T1), REDTLS_OK);
    assert_status(redtls_config_set_token_alt(cfg, T2), REDTLS_OK);
    assert_status(redtls_config_set_event_callback(cfg, on_event, &ev), REDTLS_OK);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    const int64_t deadline = T0 + 1000;
    int done = 0;
    redtls__wait w;

    assert_status(redtls__setup_start(c, T0, deadline), REDTLS_OK);
    assert_status(redtls__setup_step(c, T0, deadline, &done, &w), REDTLS_OK);
    assert_written(t, AUTH1);

    unit_push(t, WRONGPASS);
    assert_status(redtls__setup_step(c, T0 + 1, deadline, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_int_equal(w.events, POLLIN);
    assert_true(w.at == deadline);
    assert_written(t, AUTH1 AUTH2);
    assert_int_equal(ev.switched, 0);
    assert_int_equal(redtls_conn_preferred_token(c), 1);

    unit_push(t, "+OK\r\n");
    assert_status(redtls__setup_step(c, T0 + 2, deadline, &done, &w), REDTLS_OK);
    assert_true(done);
    assert_int_equal(ev.switched, 1);
    assert_string_equal(ev.detail, "token 2 accepted, token 1 refused");
    assert_int_equal(redtls_conn_preferred_token(c), 2);

    redtls__transport *t2;
    assert_status(redtls__mem_transport(&t2, REDTLS_E_COMMAND_TIMEOUT), REDTLS_OK);
    assert_status(redtls__conn_attach(c, t2, 0), REDTLS_OK);
    assert_status(redtls__setup_start(c, T0 + 10, T0 + 1010), REDTLS_OK);
    assert_status(redtls__setup_step(c, T0 + 10, T0 + 1010, &done, &w), REDTLS_OK);
    assert_written(t2, AUTH2);
    unit_push(t2, "+OK\r\n");
    assert_status(redtls__setup_step(c, T0 + 11, T0 + 1010, &done, &w), REDTLS_OK);
    assert_true(done);
    assert_int_equal(ev.switched, 1); /* no news: token 2 was already preferred */
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_unanswered),
        cmocka_unit_test(test_select_unanswered),
        cmocka_unit_test(test_setname_unanswered),
        cmocka_unit_test(test_callback_pending_then_token),
        cmocka_unit_test(test_callback_pending_forever),
        cmocka_unit_test(test_callback_refused_then_attempt_one),
        cmocka_unit_test(test_rotation),
    };
    return cmocka_run_group_tests_name("setup", tests, NULL, NULL);
}

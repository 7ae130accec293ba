/* Protocol 3 (RESP3) against a real redis-server 7 over TLS: every RESP3
 * type DEBUG PROTOCOL produces read through the public accessors (the
 * server runs with enable-debug-command); the HELLO 3 set-up with an ACL
 * user, a client name and the two-token rotation walk (old, both, new),
 * also through the credential callback, checked with CLIENT INFO; user
 * HELLOs; CLIENT TRACKING's invalidation pushes reaching the push callback
 * on an idle connection and between replies, with every reply still
 * paired with its command, on the blocking and the asynchronous API; and
 * a server without HELLO (a scripted fake answering 'unknown command').
 * RESP3 needs a build against hiredis 1.x: against 0.14 every case is
 * skipped, saying so (they run in scripts/test.sh hiredis1). */
#include <math.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <redtls/async.h>
#include <hiredis/hiredis.h>
#include <redtls/redtls.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_client.h"
#include "lab_scripted.h"

#define ADMIN_TOKEN "lab-Resp3-Admin-7c1e"
#define OLD "app-Old-Token-11111111"
#define NEW "app-New-Token-22222222"

static lab_server redis;

static int group_setup(void **state)
{
    (void)state;
    if (!redtls_protocol_supported(3)) {
        print_message("RESP3 cases skipped: this build of redtls uses hiredis 0.14, which cannot parse RESP3 "
                      "(scripts/test.sh hiredis1 runs them against hiredis 1.2.0)\n");
        return 0;
    }
    static const char *const extra[] = {"--enable-debug-command", "yes", NULL};
    return lab_init_redis(120, &redis, &(lab_redis_opts){.tls = 1, .password = ADMIN_TOKEN, .extra = extra});
}

static int group_teardown(void **state)
{
    (void)state;
    lab_stop(&redis);
    return 0;
}

#define NEED_RESP3()                                                                                                   \
    do {                                                                                                               \
        if (!redtls_protocol_supported(3))                                                                             \
            skip();                                                                                                    \
    } while (0)

/* What the push callback was handed. */
typedef struct pushes {
    int n;
    int kinds[32];
    char name[32][48];   /* first element */
    char second[32][48]; /* second element, or its first element when an array */
} pushes;

static void text_of(const struct redisReply *e, char *out, size_t cap)
{
    if (redtls_reply_type(e) == REDTLS_REPLY_ARRAY)
        e = redtls_reply_element(e, 0);
    const char *s = redtls_reply_str(e, NULL);
    if (!s && redtls_reply_type(e) == REDTLS_REPLY_INTEGER) {
        snprintf(out, cap, "%lld", redtls_reply_integer(e));
        return;
    }
    snprintf(out, cap, "%s", s ? s : "");
}

static void on_push(void *ud, const struct redisReply *push)
{
    pushes *p = ud;
    if (p->n >= 32)
        return;
    p->kinds[p->n] = redtls_reply_type(push);
    text_of(redtls_reply_element(push, 0), p->name[p->n], sizeof p->name[0]);
    text_of(redtls_reply_element(push, 1), p->second[p->n], sizeof p->second[0]);
    p->n++;
}

static redtls_config *resp3_cfg(pushes *p)
{
    redtls_config *cfg = NULL;
    lab_client_config(&cfg, "localhost", redis.port, "ca.crt", ADMIN_TOKEN);
    assert_cfg_status(cfg, redtls_config_set_protocol(cfg, 3), REDTLS_OK);
    if (p)
        assert_cfg_status(cfg, redtls_config_set_push_callback(cfg, on_push, p), REDTLS_OK);
    return cfg;
}

/* Runs a command given as one line of words (no quoting). */
static redisReply *run(redtls_conn *c, const char *line)
{
    char buf[256];
    const char *argv[16];
    int argc = 0;
    snprintf(buf, sizeof buf, "%s", line);
    for (char *save = NULL, *w = strtok_r(buf, " ", &save); w && argc < 16; w = strtok_r(NULL, " ", &save))
        argv[argc++] = w;
    redisReply *r = NULL;
    assert_conn_status(c, redtls_conn_command_argv(c, argc, argv, NULL, &r), REDTLS_OK);
    assert_non_null(r);
    return r;
}

static void test_debug_protocol_types(void **state)
{
    (void)state;
    NEED_RESP3();
    pushes p = {0};
    redtls_config *cfg = resp3_cfg(&p);
    redtls_conn *c = NULL;
    lab_client_connect(&c, cfg);
    size_t len = 0;

    redisReply *r = run(c, "DEBUG PROTOCOL map");
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_MAP);
    assert_int_equal(redtls_reply_len(r), 6); /* 3 pairs, keys and values interleaved */
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(redtls_reply_integer(redtls_reply_element(r, 2 * i)), (long long)i);
        assert_int_equal(redtls_reply_bool(redtls_reply_element(r, 2 * i + 1)), i == 1);
    }
    redtls_reply_free(r);

    r = run(c, "DEBUG PROTOCOL set");
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_SET);
    assert_int_equal(redtls_reply_len(r), 3);
    assert_int_equal(redtls_reply_integer(redtls_reply_element(r, 2)), 2);
    redtls_reply_free(r);

    r = run(c, "DEBUG PROTOCOL double");
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_DOUBLE);
    assert_true(fabs(redtls_reply_double(r) - 3.141) < 1e-9);
    assert_string_equal(redtls_reply_str(r, NULL), "3.141");
    redtls_reply_free(r);

    r = run(c, "DEBUG PROTOCOL bignum");
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_BIGNUM);
    assert_string_equal(redtls_reply_str(r, &len), "1234567999999999999999999999999999999");
    assert_int_equal(len, 37);
    redtls_reply_free(r);

    r = run(c, "DEBUG PROTOCOL true");
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_BOOL);
    assert_int_equal(redtls_reply_bool(r), 1);
    redtls_reply_free(r);
    r = run(c, "DEBUG PROTOCOL false");
    assert_int_equal(redtls_reply_bool(r), 0);
    redtls_reply_free(r);

    r = run(c, "DEBUG PROTOCOL verbatim");
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_VERB);
    assert_string_equal(redtls_reply_verbatim_format(r), "txt");
    assert_string_equal(redtls_reply_str(r, &len), "This is a verbatim\nstring");
    assert_int_equal(len, 25);
    redtls_reply_free(r);

    r = run(c, "DEBUG PROTOCOL null");
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_NIL);
    redtls_reply_free(r);

    /* The attribute goes to the push callback, the reply it describes is
     * the command's. */
    r = run(c, "DEBUG PROTOCOL attrib");
    assert_int_equal(p.n, 1);
    assert_int_equal(p.kinds[0], REDTLS_REPLY_ATTR);
    assert_string_equal(p.name[0], "key-popularity");
    assert_string_equal(p.second[0], "key:123");
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_STRING);
    assert_string_equal(redtls_reply_str(r, NULL), "Some real reply following the attribute");
    redtls_reply_free(r);

    r = run(c, "DEBUG PROTOCOL push");
    assert_int_equal(p.n, 2);
    assert_int_equal(p.kinds[1], REDTLS_REPLY_PUSH);
    assert_string_equal(p.name[1], "server-cpu-usage");
    assert_string_equal(p.second[1], "42");
    assert_string_equal(redtls_reply_str(r, NULL), "Some real reply following the push reply");
    redtls_reply_free(r);

    /* And in one pipeline, each reply with its command. */
    static const char *const kinds[] = {"push", "attrib", "push", "double", "push"};
    for (size_t i = 0; i < 5; i++)
        assert_conn_status(c, redtls_conn_append(c, "DEBUG PROTOCOL %s", kinds[i]), REDTLS_OK);
    for (size_t i = 0; i < 5; i++) {
        assert_conn_status(c, redtls_conn_get_reply(c, &r), REDTLS_OK);
        if (i == 3)
            assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_DOUBLE);
        else
            assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_STRING);
        redtls_reply_free(r);
    }
    assert_int_equal(p.n, 6);
    assert_int_equal(redtls_conn_pending(c), 0);
    print_message("RESP3: map, set, double, bignum, bool, verbatim, null, attribute, push: all read\n");
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* ---- the HELLO set-up: ACL user, name, token rotation ---- */

static int switched;

static void on_event(void *ud, redtls_event_type type, const char *detail)
{
    (void)ud;
    (void)detail;
    if (type == REDTLS_EVENT_AUTH_TOKEN_SWITCHED)
        switched++;
}

static void admin_do(redtls_conn *admin, const char *line)
{
    redisReply *r = run(admin, line);
    assert_int_not_equal(redtls_reply_type(r), REDTLS_REPLY_ERROR);
    redtls_reply_free(r);
}

/* CLIENT INFO says the connection runs RESP3, named, as the user. */
static void expect_client_info(redtls_conn *c, const char *name, const char *user)
{
    redisReply *r = run(c, "CLIENT INFO");
    /* Under RESP3 CLIENT INFO is a verbatim string. */
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_VERB);
    const char *info = redtls_reply_str(r, NULL);
    char want[96];
    assert_contains(info, " resp=3\n");
    snprintf(want, sizeof want, " name=%s ", name);
    assert_contains(info, want);
    snprintf(want, sizeof want, " user=%s ", user);
    assert_contains(info, want);
    redtls_reply_free(r);
}

static void test_hello_setup_rotation_walk(void **state)
{
    (void)state;
    NEED_RESP3();
    redtls_conn *admin = NULL;
    lab_client_admin(&admin, "localhost", redis.port, ADMIN_TOKEN, 0);
    admin_do(admin, "ACL SETUSER app reset on >" OLD " ~* +@all");

    redtls_config *cfg = resp3_cfg(NULL);
    assert_cfg_status(cfg, redtls_config_set_user(cfg, "app"), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_token(cfg, OLD), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_token_alt(cfg, NEW), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_client_name(cfg, "w7-resp3"), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_db(cfg, 3), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_event_callback(cfg, on_event, NULL), REDTLS_OK);
    switched = 0;
    redtls_conn *c = NULL;
    lab_client_connect(&c, cfg);
    /* old */
    expect_client_info(c, "w7-resp3", "app");
    redisReply *r = run(c, "CLIENT INFO");
    assert_contains(redtls_reply_str(r, NULL), " db=3 ");
    redtls_reply_free(r);
    assert_int_equal(redtls_conn_preferred_token(c), 1);
    /* both */
    admin_do(admin, "ACL SETUSER app >" NEW);
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
    expect_client_info(c, "w7-resp3", "app");
    assert_int_equal(redtls_conn_preferred_token(c), 1);
    assert_int_equal(switched, 0);
    /* new: the old token is refused, the new one taken on the same
     * connection, and preferred from now on */
    admin_do(admin, "ACL SETUSER app <" OLD);
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
    expect_client_info(c, "w7-resp3", "app");
    assert_int_equal(redtls_conn_preferred_token(c), 2);
    assert_int_equal(switched, 1);
    /* Both refused: AUTH's message, without a token. */
    admin_do(admin, "ACL SETUSER app <" NEW " >other-Token-333333333");
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_E_AUTH);
    assert_contains(redtls_conn_errmsg(c), "AUTH refused by the server for both tokens");
    assert_contains(redtls_conn_errmsg(c), "WRONGPASS");
    assert_not_contains(redtls_conn_errmsg(c), OLD);
    assert_not_contains(redtls_conn_errmsg(c), NEW);
    redtls_conn_free(c);
    redtls_config_free(cfg);
    admin_do(admin, "ACL DELUSER app");
    redtls_conn_free(admin);
}

static int cb_calls;

static int credentials(void *ud, int attempt, char *user, size_t user_cap, char *token, size_t token_cap, char *errbuf,
                       size_t errbuf_cap)
{
    (void)ud;
    (void)errbuf;
    (void)errbuf_cap;
    /* The first answer is "pending", as a token service being asked. */
    if (cb_calls++ == 0)
        return REDTLS_CREDENTIAL_PENDING;
    snprintf(user, user_cap, "app");
    snprintf(token, token_cap, "%s", attempt == 0 ? OLD : NEW);
    return 0;
}

static void test_hello_setup_credential_callback(void **state)
{
    (void)state;
    NEED_RESP3();
    redtls_conn *admin = NULL;
    lab_client_admin(&admin, "localhost", redis.port, ADMIN_TOKEN, 0);
    admin_do(admin, "ACL SETUSER app reset on >" NEW " ~* +@all");
    redtls_config *cfg = resp3_cfg(NULL);
    assert_cfg_status(cfg, redtls_config_set_credential_callback(cfg, credentials, NULL), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_client_name(cfg, "cb-resp3"), REDTLS_OK);
    cb_calls = 0;
    redtls_conn *c = NULL;
    lab_client_connect(&c, cfg);
    /* pending, OLD (refused), NEW */
    assert_int_equal(cb_calls, 3);
    expect_client_info(c, "cb-resp3", "app");
    redtls_conn_free(c);
    redtls_config_free(cfg);
    admin_do(admin, "ACL DELUSER app");
    redtls_conn_free(admin);
}

static void test_user_hello_commands(void **state)
{
    (void)state;
    NEED_RESP3();
    redtls_config *cfg = resp3_cfg(NULL);
    redtls_conn *c = NULL;
    lab_client_connect(&c, cfg);
    redisReply *r = NULL;
    assert_conn_status(c, redtls_conn_command(c, &r, "HELLO 2"), REDTLS_E_INVALID);
    assert_null(r);
    assert_contains(redtls_conn_errmsg(c), "HELLO asking for a protocol other than RESP3 is refused");
    assert_conn_status(c, redtls_conn_command(c, &r, "HELLO %s AUTH default %s", "2", ADMIN_TOKEN), REDTLS_E_INVALID);
    assert_not_contains(redtls_conn_errmsg(c), ADMIN_TOKEN);
    r = run(c, "HELLO 3");
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_MAP);
    int proto = -1;
    for (size_t i = 0; i + 1 < redtls_reply_len(r); i += 2) {
        const char *k = redtls_reply_str(redtls_reply_element(r, i), NULL);
        if (k && strcmp(k, "proto") == 0)
            proto = (int)redtls_reply_integer(redtls_reply_element(r, i + 1));
    }
    assert_int_equal(proto, 3);
    redtls_reply_free(r);
    r = run(c, "PING");
    assert_string_equal(redtls_reply_str(r, NULL), "PONG");
    redtls_reply_free(r);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* ---- CLIENT TRACKING ---- */

static void wait_ms(int ms)
{
    poll(NULL, 0, ms);
}

static void test_tracking_blocking(void **state)
{
    (void)state;
    NEED_RESP3();
    pushes p = {0};
    redtls_config *cfg = resp3_cfg(&p);
    redtls_conn *c = NULL, *writer = NULL;
    lab_client_connect(&c, cfg);
    lab_client_admin(&writer, "localhost", redis.port, ADMIN_TOKEN, 0);
    redtls_reply_free(run(writer, "SET trk:a 1"));
    redtls_reply_free(run(writer, "SET trk:b 1"));
    redisReply *r = run(c, "CLIENT TRACKING ON");
    assert_string_equal(redtls_reply_str(r, NULL), "OK");
    redtls_reply_free(r);
    r = run(c, "GET trk:a");
    assert_string_equal(redtls_reply_str(r, NULL), "1");
    redtls_reply_free(r);
    /* A write from another connection while this one is idle: the push
     * is read before the next command, which gets its own reply. */
    redtls_reply_free(run(writer, "SET trk:a 2"));
    wait_ms(100);
    r = run(c, "PING");
    assert_string_equal(redtls_reply_str(r, NULL), "PONG");
    redtls_reply_free(r);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.kinds[0], REDTLS_REPLY_PUSH);
    assert_string_equal(p.name[0], "invalidate");
    assert_string_equal(p.second[0], "trk:a");
    /* Invalidations between pipelined replies: each reply stays with its
     * command. */
    for (int round = 0; round < 20; round++) {
        assert_conn_status(c, redtls_conn_append(c, "GET trk:a"), REDTLS_OK);
        assert_conn_status(c, redtls_conn_append(c, "GET trk:b"), REDTLS_OK);
        assert_conn_status(c, redtls_conn_append(c, "ECHO round-%d", round), REDTLS_OK);
        assert_conn_status(c, redtls_conn_flush(c), REDTLS_OK);
        redtls_reply_free(run(writer, round % 2 ? "SET trk:a x" : "SET trk:b y"));
        char want[32];
        for (int i = 0; i < 3; i++) {
            assert_conn_status(c, redtls_conn_get_reply(c, &r), REDTLS_OK);
            assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_STRING);
            if (i == 2) {
                snprintf(want, sizeof want, "round-%d", round);
                assert_string_equal(redtls_reply_str(r, NULL), want);
            }
            redtls_reply_free(r);
        }
    }
    r = run(c, "PING");
    redtls_reply_free(r);
    print_message("tracking (blocking): %d invalidation pushes, replies paired\n", p.n);
    assert_true(p.n >= 11);
    for (int i = 0; i < p.n; i++)
        assert_string_equal(p.name[i], "invalidate");
    redtls_conn_free(writer);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

typedef struct areply {
    int done;
    redtls_status st;
    char text[64];
} areply;

static void on_areply(redtls_async *ac, redtls_status st, struct redisReply *reply, void *ud)
{
    (void)ac;
    areply *a = ud;
    a->done = 1;
    a->st = st;
    const char *s = redtls_reply_str(reply, NULL);
    snprintf(a->text, sizeof a->text, "%s", s ? s : "");
    redtls_reply_free(reply);
}

static void arun(redtls_async *ac)
{
    assert_int_equal(redtls_async_run(&ac, 1, 5000), REDTLS_OK);
}

static void test_tracking_async(void **state)
{
    (void)state;
    NEED_RESP3();
    pushes p = {0};
    redtls_config *cfg = resp3_cfg(&p);
    redtls_async *ac = NULL;
    redtls_conn *writer = NULL;
    assert_int_equal(redtls_async_new(cfg, &ac), REDTLS_OK);
    lab_client_admin(&writer, "localhost", redis.port, ADMIN_TOKEN, 0);
    redtls_reply_free(run(writer, "SET trk:c 1"));
    areply a[3];
    memset(a, 0, sizeof a);
    assert_int_equal(redtls_async_command(ac, on_areply, &a[0], "CLIENT TRACKING ON"), REDTLS_OK);
    assert_int_equal(redtls_async_command(ac, on_areply, &a[1], "GET trk:c"), REDTLS_OK);
    arun(ac);
    assert_int_equal(a[0].st, REDTLS_OK);
    assert_string_equal(a[1].text, "1");
    /* Idle, nothing owed: the loop is told to watch for reading, and the
     * push is handed over from its processing. */
    redtls_reply_free(run(writer, "SET trk:c 2"));
    long long until = lab_now_ms() + 3000;
    while (p.n == 0 && lab_now_ms() < until) {
        int ev = redtls_async_events(ac);
        assert_true(ev & REDTLS_ASYNC_READ);
        struct pollfd pfd = {.fd = redtls_async_fd(ac), .events = POLLIN, .revents = 0};
        if (poll(&pfd, 1, 100) > 0)
            assert_int_equal(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    }
    assert_int_equal(p.n, 1);
    assert_string_equal(p.name[0], "invalidate");
    assert_string_equal(p.second[0], "trk:c");
    assert_int_equal(redtls_async_is_connected(ac), 1);
    /* Between replies. */
    memset(a, 0, sizeof a);
    assert_int_equal(redtls_async_command(ac, on_areply, &a[0], "GET trk:c"), REDTLS_OK);
    arun(ac);
    assert_string_equal(a[0].text, "2");
    assert_int_equal(redtls_async_command(ac, on_areply, &a[1], "SET trk:c 3"), REDTLS_OK);
    assert_int_equal(redtls_async_command(ac, on_areply, &a[2], "ECHO after"), REDTLS_OK);
    arun(ac);
    assert_string_equal(a[1].text, "OK");
    assert_string_equal(a[2].text, "after");
    /* Our own write invalidates our own read (no NOLOOP). */
    assert_int_equal(p.n, 2);
    assert_string_equal(p.second[1], "trk:c");
    print_message("tracking (async): %d invalidation pushes from the loop\n", p.n);
    redtls_async_free(ac);
    redtls_conn_free(writer);
    redtls_config_free(cfg);
}

/* ---- a server without HELLO ---- */

static void test_server_without_hello(void **state)
{
    (void)state;
    NEED_RESP3();
    lab_server srv;
    uint16_t port;
    assert_int_equal(lab_scripted_start(&srv, 1, &port), 0);
    assert_int_equal(lab_scripted_rules(&srv, "* | HELLO | 0 | -ERR unknown command 'HELLO'\\r\\n\n"
                                              "* | AUTH | 0 | +OK\\r\\n\n"
                                              "* | PING | 0 | +PONG\\r\\n\n"),
                     0);
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_tls(cfg, 0), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_host(cfg, "127.0.0.1", port), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_reconnect(cfg, 0), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_protocol(cfg, 3), REDTLS_OK);
    redtls_conn *c = NULL;
    for (int creds = 0; creds < 2; creds++) {
        if (creds)
            assert_cfg_status(cfg, redtls_config_set_token(cfg, OLD), REDTLS_OK);
        assert_cfg_status(cfg, redtls_conn_new(cfg, &c), REDTLS_OK);
        assert_conn_status(c, redtls_conn_connect(c), REDTLS_E_SETUP);
        assert_string_equal(redtls_conn_errmsg(c),
                            "the server does not know HELLO (it answered 'unknown command'): RESP3 needs Redis 6 "
                            "or later (or Valkey); use protocol 2 with this server");
        assert_int_equal(redtls_conn_is_connected(c), 0);
        redtls_conn_free(c);
    }
    /* The same server under protocol 2: AUTH, and commands. */
    assert_cfg_status(cfg, redtls_config_set_protocol(cfg, 2), REDTLS_OK);
    lab_client_connect(&c, cfg);
    redisReply *r = run(c, "PING");
    assert_string_equal(redtls_reply_str(r, NULL), "PONG");
    redtls_reply_free(r);
    redtls_conn_free(c);
    redtls_config_free(cfg);
    lab_stop(&srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_debug_protocol_types),
        cmocka_unit_test(test_hello_setup_rotation_walk),
        cmocka_unit_test(test_hello_setup_credential_callback),
        cmocka_unit_test(test_user_hello_commands),
        cmocka_unit_test(test_tracking_blocking),
        cmocka_unit_test(test_tracking_async),
        cmocka_unit_test(test_server_without_hello),
    };
    return cmocka_run_group_tests_name("resp3", tests, group_setup, group_teardown);
}

/* The asynchronous API against real redis-server processes, every scenario
 * on three loops (the built-in redtls_async_run, libuv, libevent): the TLS
 * matrix of test_tls_matrix.c, close and free with callbacks owed, the
 * AUTH rotation walk of test_auth_rotation.c under a stream of commands,
 * INCR accounting across a server-side kill with hundreds in flight, and
 * the hostile replies of test_hostile.c. Every test checks that every
 * callback (each command's, each connect's) ran exactly once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <redtls/async.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_async.h"

#define TOKEN "lab-AsyncMatrix-Token-51c9e0"
#define ADMIN_PASS "amatrix-admin-pass-30bd"

/* REDTLS_TEST_TIME_SCALE=N stretches every deadline N times (valgrind). */
static int scale = 1;
#define SCALED(ms) ((unsigned)(ms) * (unsigned)scale)
/* No scenario may take longer than this to end (a hang, not a timing). */
#define HANG_MS ((int)SCALED(30000))

static lab_server redis_main;  /* TLS (server.crt) + plain port, requirepass, "admin" ACL user */
static lab_server redis_mtls;  /* TLS, client certificate required */
static lab_server redis_tls12; /* TLS 1.2 only */
static lab_server sink_untrusted, sink_wrongname, sink_expired;

/* Per test; torn down even when an assertion fails. */
static struct {
    lab_loop_kind kind;
    lab_loop *loop;
    lab_tally *tally;
    redtls_config *cfg[64];
    size_t ncfg;
    redtls_conn *admin;
} t;

static int group_setup(void **state)
{
    static const char *const admin[] = {"--user", "admin", "on", ">" ADMIN_PASS, "~*", "&*", "+@all", NULL};
    static const char *const tls12[] = {"--tls-protocols", "TLSv1.2", NULL};
    (void)state;
    const char *env = getenv("REDTLS_TEST_TIME_SCALE");
    if (env != NULL && atoi(env) > 1)
        scale = atoi(env);
    if (lab_init(120u * (unsigned)scale) != 0 || lab_certs(NULL) == NULL)
        return -1;
    if (lab_redis_start(&redis_main,
                        &(lab_redis_opts){.tls = 1, .plain_port = 1, .password = TOKEN, .extra = admin}) != 0)
        return -1;
    if (lab_redis_start(&redis_mtls, &(lab_redis_opts){.tls = 1, .auth_clients = "yes", .password = TOKEN}) != 0)
        return -1;
    if (lab_redis_start(&redis_tls12, &(lab_redis_opts){.tls = 1, .password = TOKEN, .extra = tls12}) != 0)
        return -1;
    if (lab_sink_start(&sink_untrusted, lab_cert("untrusted.crt"), lab_cert("untrusted.key")) != 0 ||
        lab_sink_start(&sink_wrongname, lab_cert("wrongname.crt"), lab_cert("wrongname.key")) != 0 ||
        lab_sink_start(&sink_expired, lab_cert("expired.crt"), lab_cert("expired.key")) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    lab_stop(&redis_main);
    lab_stop(&redis_mtls);
    lab_stop(&redis_tls12);
    lab_stop(&sink_untrusted);
    lab_stop(&sink_wrongname);
    lab_stop(&sink_expired);
    return 0;
}

static int setup(void **state)
{
    memset(&t, 0, sizeof t);
    t.kind = *(const lab_loop_kind *)*state;
    return 0;
}

/* Frees the handles (owed callbacks run now), then checks that the loop
 * kept nothing of the adapters and that no callback ran twice. */
static int teardown(void **state)
{
    (void)state;
    int rc = lab_loop_free(t.loop);
    if (t.tally != NULL && lab_tally_check(t.tally, "teardown") != 0)
        rc = -1;
    lab_tally_free(t.tally);
    for (size_t i = 0; i < t.ncfg; i++)
        redtls_config_free(t.cfg[i]);
    redtls_conn_free(t.admin);
    memset(&t, 0, sizeof t);
    return rc;
}

/* The loop of this test, and a tally for cap commands. */
static void start_loop(size_t cap)
{
    if (!lab_loop_available(t.kind)) {
        print_message("    %s: not built\n", lab_loop_name(t.kind));
        skip();
    }
    t.loop = lab_loop_new(t.kind);
    assert_non_null(t.loop);
    t.tally = lab_tally_new(cap);
    assert_non_null(t.tally);
}

/* A config kept until teardown: host:port trusting ca.crt, with the token,
 * timeouts far above what a loaded machine needs. */
static redtls_config *make_cfg(const char *host, uint16_t port)
{
    redtls_config *cfg = NULL;
    assert_true(t.ncfg < sizeof t.cfg / sizeof t.cfg[0]);
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    t.cfg[t.ncfg++] = cfg;
    assert_cfg_status(cfg, redtls_config_set_host(cfg, host, port), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_ca_file(cfg, lab_cert("ca.crt")), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_token(cfg, TOKEN), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_connect_timeout_ms(cfg, SCALED(10000)), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_handshake_timeout_ms(cfg, SCALED(10000)), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, SCALED(10000)), REDTLS_OK);
    return cfg;
}

/* A handle made from cfg and driven by the test's loop. */
static redtls_async *new_handle(redtls_config *cfg)
{
    redtls_async *ac = NULL;
    assert_cfg_status(cfg, redtls_async_new(cfg, &ac), REDTLS_OK);
    assert_int_equal(lab_loop_add(t.loop, ac), 0);
    return ac;
}

static void issue_ok(redtls_async *ac, unsigned flags, const char *line, size_t *id)
{
    redtls_status st = lab_issue(t.tally, ac, flags, line, id);
    if (st != REDTLS_OK)
        fail_msg("issuing %s: %s (%s)", line, redtls_strerror(st), redtls_async_errmsg(ac));
}

static int all_called(void *ud)
{
    (void)ud;
    return lab_tally_owed(t.tally) == 0;
}

/* Runs the loop until every command issued has had its callback (no hang
 * past HANG_MS). */
static void run_all(void)
{
    if (!lab_loop_run_until(t.loop, all_called, NULL, HANG_MS))
        fail_msg("%zu callbacks still owed after %d ms", lab_tally_owed(t.tally), HANG_MS);
}

static void assert_once(const char *what)
{
    if (lab_tally_check(t.tally, what) != 0)
        fail_msg("%s: a callback did not run exactly once (see above)", what);
}

static void assert_cmd(size_t id, redtls_status want)
{
    const lab_acmd *c = &t.tally->cmd[id];
    if (c->calls != 1 || c->st != want)
        fail_msg("command %zu: %d calls, status %s, expected %s (%s)", id, c->calls, redtls_strerror(c->st),
                 redtls_strerror(want), c->msg);
}

/* ----- the TLS matrix ------------------------------------------------------ */

typedef struct tls_case {
    const char *name;
    const lab_server *srv;
    int plain_port;        /* connect to srv's plain-text port with TLS */
    int tls13_only;
    int client_cert;
    int no_token;
    unsigned handshake_ms; /* 0: the generous default */
    redtls_status want;
    const char *says[2];   /* in the message (NULL: nothing asked) */
} tls_case;

static const tls_case tls_cases[] = {
    {"trusted", &redis_main, 0, 0, 0, 0, 0, REDTLS_OK, {NULL, NULL}},
    {"TLS 1.3 only, TLS 1.3 server", &redis_main, 0, 1, 0, 0, 0, REDTLS_OK, {NULL, NULL}},
    {"TLS 1.2-only server, default minimum", &redis_tls12, 0, 0, 0, 0, 0, REDTLS_OK, {NULL, NULL}},
    {"client certificate presented", &redis_mtls, 0, 0, 1, 0, 0, REDTLS_OK, {NULL, NULL}},
    {"untrusted CA", &sink_untrusted, 0, 0, 0, 0, 0, REDTLS_E_TLS_VERIFY, {"verif", NULL}},
    {"wrong name", &sink_wrongname, 0, 0, 0, 0, 0, REDTLS_E_TLS_HOSTNAME, {"localhost", "wrong.example"}},
    {"expired", &sink_expired, 0, 0, 0, 0, 0, REDTLS_E_TLS_VERIFY, {"expired", NULL}},
    {"TLS 1.3 only vs a TLS 1.2-only server", &redis_tls12, 0, 1, 0, 0, 0, REDTLS_E_TLS,
     {"no protocol version in common", "TLS 1.3 only"}},
    {"client certificate required, missing (token)", &redis_mtls, 0, 0, 0, 0, 0, REDTLS_E_TLS_CLIENT_CERT,
     {"requires a client certificate", NULL}},
    {"client certificate required, missing (no token)", &redis_mtls, 0, 0, 0, 1, 0, REDTLS_E_TLS_CLIENT_CERT,
     {"requires a client certificate", NULL}},
    {"plain-text redis port", &redis_main, 1, 0, 0, 0, 500, REDTLS_E_HANDSHAKE_TIMEOUT, {"handshake timeout", "plain-text port"}},
};
#define N_TLS (sizeof tls_cases / sizeof tls_cases[0])

/* A failed case's commands wait for a connection this long (reconnection
 * on), counted from when they were issued: well past the first attempt's
 * failure even when every case connects at once on a loaded machine. */
#define WAIT_MS 3000

typedef struct tls_run {
    redtls_async *ac;
    lab_aconn conn;
    size_t cmd[2];
    int ncmd;
} tls_run;

/* One handle for case c: reconnect off (variant 0) or on (variant 1), a
 * connect, and its commands issued before it is connected. */
static void tls_start(const tls_case *c, int variant, tls_run *r)
{
    uint16_t port = c->plain_port ? c->srv->plain_port : c->srv->port;
    redtls_config *cfg = make_cfg("localhost", port);
    assert_cfg_status(cfg, redtls_config_set_reconnect(cfg, variant), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_backoff(cfg, 100, 500), REDTLS_OK);
    if (c->tls13_only)
        assert_cfg_status(cfg, redtls_config_set_tls_min_version(cfg, REDTLS_TLS_1_3), REDTLS_OK);
    if (c->client_cert)
        assert_cfg_status(cfg, redtls_config_set_client_cert_file(cfg, lab_cert("client.crt"), lab_cert("client.key")),
                          REDTLS_OK);
    if (c->no_token)
        assert_cfg_status(cfg, redtls_config_set_token(cfg, NULL), REDTLS_OK);
    if (c->handshake_ms)
        assert_cfg_status(cfg, redtls_config_set_handshake_timeout_ms(cfg, c->handshake_ms), REDTLS_OK);
    if (c->want != REDTLS_OK && variant == 1)
        assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, SCALED(WAIT_MS)), REDTLS_OK);
    r->ac = new_handle(cfg);
    assert_int_equal(redtls_async_connect(r->ac, lab_on_connect, &r->conn), REDTLS_OK);
    /* Connecting already: a second connect is refused at once. */
    assert_int_equal(redtls_async_connect(r->ac, lab_on_connect, &r->conn), REDTLS_E_STATE);
    char line[160];
    if (c->want == REDTLS_OK) {
        snprintf(line, sizeof line, "SET amatrix:tls:%d:%p v-%s", (int)t.kind, (void *)r, lab_loop_name(t.kind));
        issue_ok(r->ac, 0, line, &r->cmd[0]);
        snprintf(line, sizeof line, "GET amatrix:tls:%d:%p", (int)t.kind, (void *)r);
        issue_ok(r->ac, 0, line, &r->cmd[1]);
        r->ncmd = 2;
    } else {
        issue_ok(r->ac, 0, "INCR amatrix:tls:never", &r->cmd[0]);
        r->ncmd = 1;
    }
}

static int tls_all_done(void *ud)
{
    const tls_run *runs = ud;
    for (size_t i = 0; i < 2 * N_TLS; i++)
        if (runs[i].conn.calls == 0)
            return 0;
    return all_called(NULL);
}

static void assert_says(const char *what, const char *msg, const char *const says[2])
{
    for (int k = 0; k < 2; k++) {
        if (says[k] != NULL && strstr(msg, says[k]) == NULL)
            fail_msg("%s: message \"%s\" does not name \"%s\"", what, msg, says[k]);
    }
    if (strstr(msg, TOKEN) != NULL)
        fail_msg("%s: the message holds the token", what);
}

static void tls_check(const tls_case *c, int variant, const tls_run *r)
{
    char what[160];
    snprintf(what, sizeof what, "%s, %s, reconnect %s", lab_loop_name(t.kind), c->name, variant ? "on" : "off");
    if (lab_aconn_check(&r->conn, what) != 0)
        fail_msg("%s: connect callback not called once", what);
    if (r->conn.st != c->want)
        fail_msg("%s: connect: %s, expected %s (%s)", what, redtls_strerror(r->conn.st), redtls_strerror(c->want),
                 r->conn.msg);
    assert_says(what, r->conn.msg, c->says);
    const lab_acmd *cmd = &t.tally->cmd[r->cmd[0]];
    if (c->want == REDTLS_OK) {
        const lab_acmd *get = &t.tally->cmd[r->cmd[1]];
        char v[64];
        snprintf(v, sizeof v, "v-%s", lab_loop_name(t.kind));
        if (cmd->st != REDTLS_OK || get->st != REDTLS_OK || cmd->type != REDIS_REPLY_STATUS ||
            get->type != REDIS_REPLY_STRING || strcmp(get->str, v) != 0)
            fail_msg("%s: SET %s (%s), GET %s \"%s\" (%s)", what, redtls_strerror(cmd->st), cmd->msg,
                     redtls_strerror(get->st), get->str, get->msg);
        assert_int_equal(redtls_async_is_connected(r->ac), 1);
        return;
    }
    assert_int_equal(redtls_async_is_connected(r->ac), 0);
    if (variant == 0) {
        /* No reconnection: the command ends with the attempt's own status. */
        if (cmd->st != c->want)
            fail_msg("%s: command: %s, expected %s (%s)", what, redtls_strerror(cmd->st), redtls_strerror(c->want),
                     cmd->msg);
        assert_says(what, cmd->msg, c->says);
    } else {
        /* Reconnecting: the command waits out its own deadline, and then
         * says why it never got a connection. */
        if (cmd->st != REDTLS_E_COMMAND_TIMEOUT)
            fail_msg("%s: command: %s, expected REDTLS_E_COMMAND_TIMEOUT (%s)", what, redtls_strerror(cmd->st),
                     cmd->msg);
        if (strstr(cmd->msg, "not connected within the command timeout") == NULL)
            fail_msg("%s: command message \"%s\"", what, cmd->msg);
        assert_says(what, cmd->msg, c->says);
    }
}

/* The token never reached a server whose certificate was refused. */
static void assert_sink_safe(const lab_server *sink)
{
    assert_int_equal(lab_sink_wait_idle(sink, (int)SCALED(5000)), 0);
    assert_true(lab_sink_count(sink, "accept") >= 1);
    assert_int_equal(lab_sink_count(sink, "handshake-ok"), 0);
    assert_false(lab_sink_received(sink, TOKEN));
}

/* Every case at once, on one loop: each with reconnection off and on. */
static void test_tls_matrix(void **state)
{
    (void)state;
    start_loop(64);
    tls_run runs[2 * N_TLS];
    memset(runs, 0, sizeof runs);
    long long t0 = lab_now_ms();
    for (size_t i = 0; i < N_TLS; i++)
        for (int v = 0; v < 2; v++)
            tls_start(&tls_cases[i], v, &runs[2 * i + (size_t)v]);
    if (!lab_loop_run_until(t.loop, tls_all_done, runs, HANG_MS))
        fail_msg("callbacks still owed after %d ms", HANG_MS);
    print_message("    %s: %zu handles done in %lld ms\n", lab_loop_name(t.kind), 2 * N_TLS, lab_now_ms() - t0);
    for (size_t i = 0; i < N_TLS; i++)
        for (int v = 0; v < 2; v++)
            tls_check(&tls_cases[i], v, &runs[2 * i + (size_t)v]);
    assert_once("tls matrix");
    /* Freeing calls nothing more: everything was called already. */
    size_t done = t.tally->done;
    for (size_t i = 0; i < 2 * N_TLS; i++)
        lab_loop_free_handle(t.loop, runs[i].ac);
    assert_int_equal(t.tally->done, done);
    for (size_t i = 0; i < 2 * N_TLS; i++)
        assert_int_equal(runs[i].conn.calls, 1);
    assert_once("tls matrix, freed");
    assert_sink_safe(&sink_untrusted);
    assert_sink_safe(&sink_wrongname);
    assert_sink_safe(&sink_expired);
}

/* ----- close and free with callbacks owed ------------------------------------ */

static size_t life_target; /* the command whose callback ends the handle */

/* Frees the handle from its own callback (adapters), or closes it (the
 * built-in loop forbids freeing from inside redtls_async_run). */
static void life_end_in_callback(lab_tally *tl, redtls_async *ac, lab_acmd *c, const redisReply *reply)
{
    (void)tl;
    (void)reply;
    if (c->id != life_target)
        return;
    if (t.kind == LAB_LOOP_BUILTIN) {
        redtls_async_close(ac);
    } else {
        lab_loop_forget(t.loop, ac);
        redtls_async_free(ac);
    }
}

static void test_close_and_free(void **state)
{
    (void)state;
    start_loop(64);
    char key[96], line[160];
    size_t id[8];
    snprintf(key, sizeof key, "amatrix:life:%d:%lld", (int)t.kind, lab_now_ms());
    redtls_config *cfg = make_cfg("localhost", redis_main.port);
    redtls_async *ac = new_handle(cfg);

    /* A command on a handle never connected connects it. */
    snprintf(line, sizeof line, "SET %s v", key);
    issue_ok(ac, 0, line, &id[0]);
    run_all();
    assert_cmd(id[0], REDTLS_OK);
    assert_int_equal(redtls_async_is_connected(ac), 1);
    lab_aconn again = {0};
    assert_int_equal(redtls_async_connect(ac, lab_on_connect, &again), REDTLS_E_STATE);

    /* Closed with commands not written yet: each ends at once. */
    snprintf(line, sizeof line, "INCR %s:n", key);
    for (int i = 1; i <= 3; i++)
        issue_ok(ac, 0, line, &id[i]);
    redtls_async_close(ac);
    for (int i = 1; i <= 3; i++)
        assert_cmd(id[i], REDTLS_E_CLOSED);
    assert_int_equal(redtls_async_pending(ac), 0);

    /* Closed with a command in flight (the server holds BLPOP). */
    snprintf(line, sizeof line, "BLPOP %s:empty 20", key);
    issue_ok(ac, 0, line, &id[4]);
    lab_loop_run_until(t.loop, NULL, NULL, 300);
    assert_int_equal(t.tally->cmd[id[4]].calls, 0);
    assert_int_equal(redtls_async_is_connected(ac), 1);
    redtls_async_close(ac);
    assert_cmd(id[4], REDTLS_E_CLOSED);
    assert_int_equal(redtls_async_is_connected(ac), 0);

    /* Usable again: the next command connects anew. */
    snprintf(line, sizeof line, "GET %s", key);
    issue_ok(ac, 0, line, &id[5]);
    run_all();
    assert_cmd(id[5], REDTLS_OK);
    assert_string_equal(t.tally->cmd[id[5]].str, "v");

    /* Freed while connecting with commands waiting: the connect callback
     * and each command's end with REDTLS_E_CLOSED, from inside the free. */
    redtls_async_close(ac);
    lab_aconn conn = {0};
    assert_int_equal(redtls_async_connect(ac, lab_on_connect, &conn), REDTLS_OK);
    issue_ok(ac, 0, line, &id[6]);
    issue_ok(ac, 0, line, &id[7]);
    lab_loop_free_handle(t.loop, ac);
    assert_int_equal(conn.calls, 1);
    assert_int_equal(conn.st, REDTLS_E_CLOSED);
    assert_cmd(id[6], REDTLS_E_CLOSED);
    assert_cmd(id[7], REDTLS_E_CLOSED);
    assert_int_equal(again.calls, 0); /* refused at once: never called */

    /* A callback ends its own handle with replies still owed after it. */
    ac = new_handle(cfg);
    size_t a, b, c;
    issue_ok(ac, 0, "PING", &a);
    issue_ok(ac, 0, "PING", &b);
    issue_ok(ac, 0, "PING", &c);
    life_target = a;
    t.tally->after = life_end_in_callback;
    run_all();
    t.tally->after = NULL;
    assert_cmd(a, REDTLS_OK);
    assert_cmd(b, REDTLS_E_CLOSED);
    assert_cmd(c, REDTLS_E_CLOSED);
    assert_once("close and free");
    if (t.kind == LAB_LOOP_BUILTIN) {
        /* Closed, not freed: still usable. */
        issue_ok(ac, 0, "PING", &a);
        run_all();
        assert_cmd(a, REDTLS_OK);
        lab_loop_free_handle(t.loop, ac);
    }
    /* The adapters' loops let go of a handle freed inside a callback. */
    lab_loop_run_until(t.loop, NULL, NULL, 50);
    assert_once("close and free, at the end");
}

static lab_loop_kind kinds[LAB_LOOP_KINDS] = {LAB_LOOP_BUILTIN, LAB_LOOP_LIBUV, LAB_LOOP_LIBEVENT};

#define ON_EACH_LOOP(name, fn)                                                                  \
    {name "/built-in", fn, setup, teardown, (void *)&kinds[LAB_LOOP_BUILTIN]},                   \
    {name "/libuv", fn, setup, teardown, (void *)&kinds[LAB_LOOP_LIBUV]},                        \
    {                                                                                           \
        name "/libevent", fn, setup, teardown, (void *)&kinds[LAB_LOOP_LIBEVENT]                \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        ON_EACH_LOOP("tls_matrix", test_tls_matrix),
        ON_EACH_LOOP("close_and_free", test_close_and_free),
    };
    return cmocka_run_group_tests_name("integration.async_matrix", tests, group_setup, group_teardown);
}

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
#include "lab_client.h"
#include "lab_async.h"
#include "lab_hostile.h"
#include "lab_proxy.h"

#define TOKEN "lab-AsyncMatrix-Token-51c9e0"
#define OLD_TOKEN "amatrix-OLD-token-6a2f10"
#define NEW_TOKEN "amatrix-NEW-token-c4d83e"
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
static lab_server redis_rot;   /* TLS, default user's password walked OLD -> OLD+NEW -> NEW; "admin" */
static lab_server redis_open;  /* TLS, no password: where the hostile cases go once they are over */

/* What the event callback saw. */
typedef struct events {
    int switched;
    int refreshed;
    int connected;
    int disconnected;
    int secret_seen; /* a detail held a token */
    char last_auth[256];
} events;

/* Per test; torn down even when an assertion fails. */
static struct {
    lab_loop_kind kind;
    lab_loop *loop;
    lab_tally *tally;
    redtls_config *cfg[64];
    size_t ncfg;
    redtls_conn *admin;
    lab_proxy proxy;
    lab_server hostile;
    events ev; /* outlives the handles, which may report on being freed */
    /* Connect callbacks' records, here (not on a test's stack) because
     * freeing a handle in teardown may still call one. */
    lab_aconn conns[64];
    int armed[64]; /* its redtls_async_connect() was accepted: one call owed */
    size_t nconns;
} t;

static int group_setup(void **state)
{
    static const char *const admin[] = {"--user", "admin", "on", ">" ADMIN_PASS, "~*", "&*", "+@all", NULL};
    static const char *const tls12[] = {"--tls-protocols", "TLSv1.2", NULL};
    (void)state;
    scale = lab_time_scale();
    if (lab_init(300u * (unsigned)scale) != 0 || lab_certs(NULL) == NULL)
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
    if (lab_redis_start(&redis_rot, &(lab_redis_opts){.tls = 1, .password = OLD_TOKEN, .extra = admin}) != 0)
        return -1;
    return lab_redis_start(&redis_open, &(lab_redis_opts){.tls = 1});
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
    lab_stop(&redis_rot);
    lab_stop(&redis_open);
    return 0;
}

static int setup(void **state)
{
    memset(&t, 0, sizeof t);
    t.hostile.listen_fd = -1;
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
    for (size_t i = 0; i < t.nconns; i++)
        if (t.conns[i].calls != t.armed[i]) {
            fprintf(stderr, "teardown: connect %zu: callback called %d times, expected %d\n", i, t.conns[i].calls,
                    t.armed[i]);
            rc = -1;
        }
    lab_tally_free(t.tally);
    for (size_t i = 0; i < t.ncfg; i++)
        redtls_config_free(t.cfg[i]);
    redtls_conn_free(t.admin);
    lab_proxy_stop(&t.proxy);
    lab_stop(&t.hostile);
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
    lab_client_protocol(cfg);
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

/* redtls_async_connect(ac) with a fresh record for its callback; want:
 * what the call returns (REDTLS_OK: the callback is owed, once). */
static lab_aconn *connect_as(redtls_async *ac, redtls_status want)
{
    assert_true(t.nconns < sizeof t.conns / sizeof t.conns[0]);
    size_t i = t.nconns++;
    redtls_status st = redtls_async_connect(ac, lab_on_connect, &t.conns[i]);
    if (st != want)
        fail_msg("redtls_async_connect: %s, expected %s (%s)", redtls_strerror(st), redtls_strerror(want),
                 redtls_async_errmsg(ac));
    t.armed[i] = st == REDTLS_OK;
    return &t.conns[i];
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
    {"plain-text redis port", &redis_main, 1, 0, 0, 0, 500, REDTLS_E_HANDSHAKE_TIMEOUT,
     {"handshake timeout", "plain-text port"}},
};
#define N_TLS (sizeof tls_cases / sizeof tls_cases[0])

/* A failed case's commands wait for a connection this long (reconnection
 * on), counted from when they were issued: well past the first attempt's
 * failure even when every case connects at once on a loaded machine. */
#define WAIT_MS 5000

typedef struct tls_run {
    redtls_async *ac;
    lab_aconn *conn;
    size_t cmd[2];
    int ncmd;
} tls_run;

/* One handle for case c: reconnect off (variant 0) or on (variant 1), a
 * connect, and its commands issued before it is connected. */
static void tls_start(const tls_case *c, int variant, tls_run *r, size_t n)
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
    r->conn = connect_as(r->ac, REDTLS_OK);
    /* Connecting already: a second connect is refused at once (and its
     * callback never called, which teardown checks). */
    connect_as(r->ac, REDTLS_E_STATE);
    char line[160];
    if (c->want == REDTLS_OK) {
        snprintf(line, sizeof line, "SET amatrix:tls:%d:%zu v-%s", (int)t.kind, n, lab_loop_name(t.kind));
        issue_ok(r->ac, 0, line, &r->cmd[0]);
        snprintf(line, sizeof line, "GET amatrix:tls:%d:%zu", (int)t.kind, n);
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
        if (runs[i].conn->calls == 0)
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
    if (lab_aconn_check(r->conn, what) != 0)
        fail_msg("%s: connect callback not called once", what);
    if (r->conn->st != c->want)
        fail_msg("%s: connect: %s, expected %s (%s)", what, redtls_strerror(r->conn->st), redtls_strerror(c->want),
                 r->conn->msg);
    assert_says(what, r->conn->msg, c->says);
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
            tls_start(&tls_cases[i], v, &runs[2 * i + (size_t)v], 2 * i + (size_t)v);
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
        assert_int_equal(runs[i].conn->calls, 1);
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
    lab_aconn *again = connect_as(ac, REDTLS_E_STATE);

    /* Closed with commands not written yet: each ends at once. */
    snprintf(line, sizeof line, "INCR %s:n", key);
    for (int i = 1; i <= 3; i++)
        issue_ok(ac, 0, line, &id[i]);
    redtls_async_close(ac);
    for (int i = 1; i <= 3; i++)
        assert_cmd(id[i], REDTLS_E_CLOSED);
    assert_int_equal(redtls_async_pending(ac), 0);

    /* Closed with a command in flight (the server holds BLPOP): once
     * connected again (PING), one pass writes it. */
    size_t ping;
    issue_ok(ac, 0, "PING", &ping);
    run_all();
    assert_cmd(ping, REDTLS_OK);
    snprintf(line, sizeof line, "BLPOP %s:empty 20", key);
    issue_ok(ac, 0, line, &id[4]);
    lab_loop_run_until(t.loop, NULL, NULL, 200);
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
    lab_aconn *conn = connect_as(ac, REDTLS_OK);
    issue_ok(ac, 0, line, &id[6]);
    issue_ok(ac, 0, line, &id[7]);
    lab_loop_free_handle(t.loop, ac);
    assert_int_equal(conn->calls, 1);
    assert_int_equal(conn->st, REDTLS_E_CLOSED);
    assert_cmd(id[6], REDTLS_E_CLOSED);
    assert_cmd(id[7], REDTLS_E_CLOSED);
    assert_int_equal(again->calls, 0); /* refused at once: never called */

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

/* ----- events and the admin connection ---------------------------------- */

static void on_event(void *ud, redtls_event_type type, const char *detail)
{
    events *ev = ud;
    if (strstr(detail, TOKEN) || strstr(detail, OLD_TOKEN) || strstr(detail, NEW_TOKEN))
        ev->secret_seen++;
    switch (type) {
    case REDTLS_EVENT_AUTH_TOKEN_SWITCHED:
        ev->switched++;
        snprintf(ev->last_auth, sizeof ev->last_auth, "%s", detail);
        break;
    case REDTLS_EVENT_AUTH_REFRESHED:
        ev->refreshed++;
        break;
    case REDTLS_EVENT_CONNECTED:
        ev->connected++;
        break;
    case REDTLS_EVENT_DISCONNECTED:
        ev->disconnected++;
        break;
    default:
        break;
    }
}

/* A blocking connection as the ACL user "admin" of srv (kept in t.admin):
 * the server side of the scenarios, never the handle under test. */
static redtls_conn *admin_open(const lab_server *srv)
{
    redtls_config *cfg = make_cfg("localhost", srv->port);
    assert_cfg_status(cfg, redtls_config_set_user(cfg, "admin"), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_token(cfg, ADMIN_PASS), REDTLS_OK);
    assert_cfg_status(cfg, redtls_conn_new(cfg, &t.admin), REDTLS_OK);
    assert_conn_status(t.admin, redtls_conn_connect(t.admin), REDTLS_OK);
    return t.admin;
}

/* One admin command (space-separated words): 0 and its integer reply in
 * *v (0 for any other reply), or -1 and why in err. Asserts nothing, so
 * callbacks may use it (a failed assertion must not jump out of one). */
static int admin_try(const char *line, long long *v, char *err, size_t errlen)
{
    char words[8][128];
    const char *argv[8];
    int argc = 0;
    for (const char *p = line; *p && argc < 8;) {
        size_t n = strcspn(p, " ");
        snprintf(words[argc], sizeof words[argc], "%.*s", (int)n, p);
        argv[argc] = words[argc];
        argc++;
        p += n;
        p += strspn(p, " ");
    }
    redisReply *r = NULL;
    redtls_status st = redtls_conn_command_argv(t.admin, argc, argv, NULL, &r);
    if (st != REDTLS_OK) {
        snprintf(err, errlen, "%s: %s (%s)", line, redtls_strerror(st), redtls_conn_errmsg(t.admin));
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%s: %s", line, r->str);
        redtls_reply_free(r);
        return -1;
    }
    *v = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    redtls_reply_free(r);
    return 0;
}

static long long admin_do(const char *line)
{
    char err[512];
    long long v = 0;
    if (admin_try(line, &v, err, sizeof err) != 0)
        fail_msg("admin: %s", err);
    return v;
}

/* ----- INCR accounting across a server-side kill -------------------------- */

#define N_INCR 5000
#define IN_FLIGHT 256

static struct {
    redtls_async *ac;
    char key[96];
    int issued;        /* INCRs issued */
    size_t first;      /* the tally id of the first */
    size_t until_done; /* the run's goal: this many callbacks */
    size_t kill_at;    /* the server kills the connection at this many */
    char kill[64];     /* CLIENT KILL ID <the handle's connection> */
    int killed;
    size_t pending_at_kill;
    char error[512];   /* what went wrong in a callback */
} incr;

/* Tops the INCRs in flight back up to IN_FLIGHT. */
static void incr_top_up(void)
{
    const char *argv[] = {"INCR", incr.key};
    while (incr.issued < N_INCR && redtls_async_pending(incr.ac) < IN_FLIGHT) {
        redtls_status st = lab_issue_argv(t.tally, incr.ac, 0, 2, argv, NULL);
        if (st != REDTLS_OK)
            fail_msg("INCR refused: %s (%s)", redtls_strerror(st), redtls_async_errmsg(incr.ac));
        incr.issued++;
    }
}

/* From each callback, as an application would: the ones that see the
 * connection die issue the next INCRs in that very pass, so the handle
 * connects again inside it (a new socket the loop must be told of).
 * Midway, from a callback, the server kills the connection while
 * IN_FLIGHT commands are in flight. */
static void incr_next(lab_tally *tl, redtls_async *ac, lab_acmd *c, const redisReply *reply)
{
    (void)c;
    (void)reply;
    incr_top_up();
    if (incr.killed || tl->done < incr.kill_at || incr.error[0] != '\0')
        return;
    incr.killed = 1;
    incr.pending_at_kill = redtls_async_pending(ac);
    long long killed = 0;
    if (admin_try(incr.kill, &killed, incr.error, sizeof incr.error) == 0 && killed != 1)
        snprintf(incr.error, sizeof incr.error, "%s killed %lld connections", incr.kill, killed);
}

static int incr_done(void *ud)
{
    (void)ud;
    return t.tally->done >= incr.until_done;
}

static void test_incr_accounting(void **state)
{
    (void)state;
    start_loop(N_INCR + 16);
    memset(&incr, 0, sizeof incr);
    snprintf(incr.key, sizeof incr.key, "amatrix:incr:%d:%lld", (int)t.kind, lab_now_ms());
    admin_open(&redis_main);
    events *ev = &t.ev;
    redtls_config *cfg = make_cfg("localhost", redis_main.port);
    assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, SCALED(20000)), REDTLS_OK);
    redtls_config_set_event_callback(cfg, on_event, ev);
    redtls_async *ac = incr.ac = new_handle(cfg);
    assert_int_equal(redtls_async_set_max_pending(ac, IN_FLIGHT), REDTLS_OK);
    lab_aconn *conn = connect_as(ac, REDTLS_OK);
    size_t id_cmd;
    issue_ok(ac, 0, "CLIENT ID", &id_cmd);
    run_all();
    assert_cmd(id_cmd, REDTLS_OK);
    assert_int_equal(conn->calls, 1);
    assert_int_equal(conn->st, REDTLS_OK);
    long long client = t.tally->cmd[id_cmd].integer;
    incr.first = t.tally->issued;

    /* Backpressure: with IN_FLIGHT pending, one more is refused at once,
     * and never called back. */
    incr.until_done = 0;
    incr_top_up();
    assert_int_equal(redtls_async_pending(ac), IN_FLIGHT);
    const char *argv[] = {"INCR", incr.key};
    size_t before = t.tally->issued;
    assert_int_equal(lab_issue_argv(t.tally, ac, 0, 2, argv, NULL), REDTLS_E_LIMIT);
    assert_contains(redtls_async_errmsg(ac), "redtls_async_set_max_pending");
    assert_int_equal(t.tally->issued, before);

    /* Midway, with IN_FLIGHT in flight, the server kills the connection
     * (incr_next). */
    snprintf(incr.kill, sizeof incr.kill, "CLIENT KILL ID %lld", client);
    incr.kill_at = incr.first + N_INCR / 2;
    incr.until_done = incr.first + N_INCR;
    t.tally->after = incr_next;
    if (!lab_loop_run_until(t.loop, incr_done, NULL, HANG_MS))
        fail_msg("%zu callbacks of %zu after %d ms", t.tally->done, incr.until_done, HANG_MS);
    t.tally->after = NULL;
    if (incr.error[0] != '\0')
        fail_msg("%s", incr.error);
    assert_int_equal(incr.killed, 1);
    assert_int_equal(incr.pending_at_kill, IN_FLIGHT);
    assert_int_equal(incr.issued, N_INCR);

    redisReply *r = NULL;
    assert_conn_status(t.admin, redtls_conn_command(t.admin, &r, "GET %s", incr.key), REDTLS_OK);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    long long counter = strtoll(r->str, NULL, 10);
    redtls_reply_free(r);

    long long ok = 0, unknown = 0;
    unsigned char *seen = calloc((size_t)counter + 1, 1);
    assert_non_null(seen);
    for (size_t i = incr.first; i < t.tally->issued; i++) {
        const lab_acmd *c = &t.tally->cmd[i];
        if (c->st == REDTLS_OK) {
            /* Each success got its own value of the counter. */
            if (c->type != REDIS_REPLY_INTEGER || c->integer < 1 || c->integer > counter || seen[c->integer]++) {
                free(seen);
                fail_msg("INCR %zu: reply type %d value %lld (counter %lld)", i, c->type, c->integer, counter);
            }
            ok++;
        } else if (c->st == REDTLS_E_OUTCOME_UNKNOWN) {
            /* Each callback of the batch reads the batch's message. */
            if (strstr(c->msg, "may or may not have run") == NULL) {
                free(seen);
                fail_msg("INCR %zu: outcome unknown with message \"%s\"", i, c->msg);
            }
            unknown++;
        } else {
            free(seen);
            fail_msg("INCR %zu: %s (%s)", i, redtls_strerror(c->st), c->msg);
        }
    }
    free(seen);
    print_message("    %s: %d INCRs, %lld ok, %lld outcome unknown, counter %lld; connections %d\n",
                  lab_loop_name(t.kind), N_INCR, ok, unknown, counter, ev->connected);
    assert_int_equal(ok + unknown, N_INCR);
    assert_true(ok <= counter);
    assert_true(counter <= ok + unknown);
    /* Only those in flight when the connection died can be unknown. */
    assert_true(unknown <= IN_FLIGHT);
    /* The kill cost one connection, and the handle made a new one. */
    assert_int_equal(ev->connected, 2);
    assert_int_equal(ev->disconnected, 1);
    assert_int_equal(redtls_async_is_connected(ac), 1);
    assert_once("incr accounting");
}

/* ----- the AUTH rotation walk under a stream of commands ---------------------- */

#define ROT_DEPTH 8   /* SADDs kept in flight */
#define ROT_BREAKS 3  /* connections broken per phase */
#define ROT_STRIDE 25 /* callbacks before each break, and after the last */

static struct {
    char key[96];
    int breaks_left;  /* in this phase */
    size_t next_break; /* at this many callbacks (t.tally->done) */
    int phase_done;   /* the stream stopped for the phase to change */
    char error[512];  /* what went wrong in a callback (the stream stops) */
} rot;

static void rot_issue(lab_tally *tl, redtls_async *ac)
{
    char member[32];
    snprintf(member, sizeof member, "m%zu", tl->issued);
    const char *argv[] = {"SADD", rot.key, member};
    redtls_status st = lab_issue_argv(tl, ac, REDTLS_CMD_IDEMPOTENT, 3, argv, NULL);
    if (st != REDTLS_OK && rot.error[0] == '\0')
        snprintf(rot.error, sizeof rot.error, "SADD refused: %s (%s)", redtls_strerror(st), redtls_async_errmsg(ac));
}

/* The stream: each SADD that ends issues another, with a member of its
 * own. SADD of one member may run twice without harm, so it is marked
 * idempotent: those in flight when the server kills the connection are
 * sent again on the next one, and no command fails. The breaks come from
 * here, ROT_STRIDE callbacks apart, then ROT_STRIDE more before the phase
 * ends and the stream stops (the test changes the server's passwords). */
static void rot_next(lab_tally *tl, redtls_async *ac, lab_acmd *c, const redisReply *reply)
{
    (void)c;
    (void)reply;
    if (rot.phase_done || rot.error[0] != '\0')
        return;
    if (tl->done >= rot.next_break) {
        if (rot.breaks_left == 0) {
            rot.phase_done = 1;
            return;
        }
        rot.breaks_left--;
        rot.next_break = tl->done + ROT_STRIDE;
        long long killed = 0;
        if (admin_try("CLIENT KILL USER default", &killed, rot.error, sizeof rot.error) != 0)
            return;
        if (killed != 1) {
            snprintf(rot.error, sizeof rot.error, "CLIENT KILL USER default killed %lld connections", killed);
            return;
        }
    }
    rot_issue(tl, ac);
}

static int rot_settled(void *ud)
{
    (void)ud;
    return (rot.phase_done || rot.error[0] != '\0') && lab_tally_owed(t.tally) == 0;
}

/* The blocking test's walk: old -> old+new -> new on the server, with
 * the handle configured (first, second), while a stream of commands
 * flows. The handle has no live token update, so it authenticates again
 * on new connections: the server kills the one in use (CLIENT KILL from
 * the admin connection, commands in flight; they are idempotent and sent
 * again), and the callback that hears of it issues the next ones, so the
 * handle reconnects within that pass. Returns the switch events of each
 * phase. */
static void rotation_walk(const char *first, const char *second, int switched[3])
{
    start_loop(1024);
    memset(&rot, 0, sizeof rot);
    snprintf(rot.key, sizeof rot.key, "amatrix:rot:%d:%lld", (int)t.kind, lab_now_ms());
    admin_open(&redis_rot);
    admin_do("ACL SETUSER default on resetpass >" OLD_TOKEN);
    events *ev = &t.ev;
    redtls_config *cfg = make_cfg("localhost", redis_rot.port);
    assert_cfg_status(cfg, redtls_config_set_token(cfg, first), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_token_alt(cfg, second), REDTLS_OK);
    redtls_config_set_event_callback(cfg, on_event, ev);
    redtls_async *ac = new_handle(cfg);
    lab_aconn *conn = connect_as(ac, REDTLS_OK);
    t.tally->after = rot_next;

    int before = 0;
    for (int phase = 0; phase < 3; phase++) {
        if (phase == 1)
            admin_do("ACL SETUSER default >" NEW_TOKEN); /* ElastiCache ROTATE: both */
        if (phase == 2)
            admin_do("ACL SETUSER default <" OLD_TOKEN); /* ElastiCache SET: the new one */
        rot.breaks_left = ROT_BREAKS;
        rot.next_break = t.tally->done + ROT_STRIDE;
        rot.phase_done = 0;
        do {
            for (int i = 0; i < ROT_DEPTH; i++)
                rot_issue(t.tally, ac);
            if (!lab_loop_run_until(t.loop, rot_settled, NULL, HANG_MS))
                fail_msg("phase %d: %d breaks left, %zu callbacks owed after %d ms", phase + 1, rot.breaks_left,
                         lab_tally_owed(t.tally), HANG_MS);
            if (rot.error[0] != '\0')
                fail_msg("phase %d: %s", phase + 1, rot.error);
        } while (!rot.phase_done);
        switched[phase] = ev->switched - before;
        before = ev->switched;
    }
    t.tally->after = NULL;

    /* No command failed, and each one's member is in the set. */
    for (size_t i = 0; i < t.tally->issued; i++) {
        const lab_acmd *c = &t.tally->cmd[i];
        if (c->st != REDTLS_OK || c->type != REDIS_REPLY_INTEGER)
            fail_msg("SADD %zu of %zu: %s, reply type %d (%s)", i, t.tally->issued, redtls_strerror(c->st), c->type,
                     c->msg);
    }
    char scard[128];
    snprintf(scard, sizeof scard, "SCARD %s", rot.key);
    assert_int_equal(admin_do(scard), (long long)t.tally->issued);
    print_message("    %s: %zu commands, %d connections (%s), switches %d/%d/%d, the last: \"%s\"\n",
                  lab_loop_name(t.kind), t.tally->issued, ev->connected,
                  "server kills", switched[0], switched[1], switched[2],
                  ev->last_auth);
    /* One connection, then one more per break; the connect callback was
     * about the first only. */
    assert_int_equal(ev->connected, 1 + 3 * ROT_BREAKS);
    assert_int_equal(conn->calls, 1);
    assert_int_equal(conn->st, REDTLS_OK);
    assert_int_equal(ev->secret_seen, 0);
    assert_int_equal(ev->refreshed, 0);
    assert_once("rotation walk");
    lab_loop_free_handle(t.loop, ac);
    admin_do("ACL SETUSER default on resetpass >" OLD_TOKEN);
}

static void test_rotation_old_then_new(void **state)
{
    (void)state;
    int switched[3];
    rotation_walk(OLD_TOKEN, NEW_TOKEN, switched);
    /* Old preferred: nothing to report until the old token is removed. */
    assert_int_equal(switched[0], 0);
    assert_int_equal(switched[1], 0);
    assert_int_equal(switched[2], 1);
    /* Events name token numbers, never tokens. */
    assert_string_equal(t.ev.last_auth, "token 2 accepted, token 1 refused");
}

static void test_rotation_new_then_old(void **state)
{
    (void)state;
    int switched[3];
    rotation_walk(NEW_TOKEN, OLD_TOKEN, switched);
    /* New preferred, deployed before the ROTATE: the first connection
     * falls back to the old token once and sticks to it while it works;
     * the SET phase switches back to the new one once. */
    assert_int_equal(switched[0], 1);
    assert_int_equal(switched[1], 0);
    assert_int_equal(switched[2], 1);
    assert_string_equal(t.ev.last_auth, "token 1 accepted, token 2 refused");
}

/* ----- hostile replies ----------------------------------------------------------- */

#define HOSTILE_MAX_BUFFER (4u * 1024u * 1024u)

typedef struct hostile_case {
    const char *name;
    lab_hostile_opts opts;
    redtls_status want;    /* the first command's (the one the bytes answer) */
    const char *says;      /* in its message (NULL: nothing asked) */
    unsigned command_ms;   /* 0: the generous default */
} hostile_case;

#define HOLD(reply_) {.tls = 1, .reply = (reply_), .end = LAB_HOSTILE_HOLD}

static char deep_nesting[100 * 4 + 8];

static const hostile_case hostile_cases[] = {
    {"*4294967295", HOLD("*4294967295\r\n"), REDTLS_E_LIMIT, "array element count", 0},
    {"$9999999999", HOLD("$9999999999\r\n"), REDTLS_E_LIMIT, "9999999999", 0},
    {"*1 x 100", HOLD(deep_nesting), REDTLS_E_LIMIT, "nesting", 0},
    {"$-2", HOLD("$-2\r\n"), REDTLS_E_PROTOCOL, "invalid reply", 0},
    {"unknown type byte", HOLD("!oops\r\n"), REDTLS_E_PROTOCOL, "invalid reply", 0},
    {"$100000000 + endless a",
     {.tls = 1, .reply = "$100000000\r\n", .end = LAB_HOSTILE_ENDLESS, .fill = "a"},
     REDTLS_E_LIMIT, "buffer limit", 0},
    {"+ endless a", {.tls = 1, .reply = "+", .end = LAB_HOSTILE_ENDLESS, .fill = "a"}, REDTLS_E_LIMIT,
     "reply line longer than 65536 bytes", 0},
    {"*16777216 + endless :1",
     {.tls = 1, .reply = "*16777216\r\n", .end = LAB_HOSTILE_ENDLESS, .fill = ":1\r\n"},
     REDTLS_E_LIMIT, "unfinished reply", 0},
    {"half reply, EOF", {.tls = 1, .reply = "$10\r\nabc", .end = LAB_HOSTILE_EOF}, REDTLS_E_OUTCOME_UNKNOWN,
     "without TLS close_notify", 0},
    /* One byte every 250 ms: progress, but not within the command's own
     * deadline. */
    {"trickle",
     {.tls = 1, .reply = "+trickled\r\n", .trickle_ms = 250, .end = LAB_HOSTILE_HOLD},
     REDTLS_E_COMMAND_TIMEOUT, "no reply within the command timeout", 1000},
};
#define N_HOSTILE (sizeof hostile_cases / sizeof hostile_cases[0])

/* The command after a hostile case, through the proxy now pointing at
 * redis_open: the handle connects again and works. */
static void assert_usable_again(redtls_async *ac, const char *what)
{
    lab_proxy_retarget(&t.proxy, redis_open.port);
    size_t id;
    issue_ok(ac, 0, "PING", &id);
    run_all();
    const lab_acmd *c = &t.tally->cmd[id];
    if (c->st != REDTLS_OK || strcmp(c->str, "PONG") != 0)
        fail_msg("%s: PING afterwards: %s \"%s\" (%s)", what, redtls_strerror(c->st), c->str, c->msg);
    assert_int_equal(redtls_async_is_connected(ac), 1);
}

static void hostile_run(const hostile_case *hc)
{
    char what[128];
    snprintf(what, sizeof what, "%s, %s", lab_loop_name(t.kind), hc->name);
    lab_stop(&t.hostile);
    /* The trickle keeps its pace against the command timeout when time is
     * stretched (valgrind). */
    lab_hostile_opts opts = hc->opts;
    opts.trickle_ms = SCALED(opts.trickle_ms);
    assert_int_equal(lab_hostile_start(&t.hostile, &opts), 0);
    lab_proxy_retarget(&t.proxy, t.hostile.port);
    redtls_config *cfg = make_cfg("localhost", t.proxy.port);
    assert_cfg_status(cfg, redtls_config_set_token(cfg, NULL), REDTLS_OK);
    /* The hostile server answers its cases' bytes to the first commands:
     * a RESP2 server, whatever REDTLS_TEST_PROTOCOL says. */
    assert_cfg_status(cfg, redtls_config_set_protocol(cfg, 2), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_max_buffer(cfg, HOSTILE_MAX_BUFFER), REDTLS_OK);
    if (hc->command_ms)
        assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, SCALED(hc->command_ms)), REDTLS_OK);
    redtls_async *ac = new_handle(cfg);
    lab_aconn *conn = connect_as(ac, REDTLS_OK);
    size_t id[3];
    /* Three in flight: the server answers the first with the case's bytes. */
    issue_ok(ac, 0, "GET hostile", &id[0]);
    issue_ok(ac, 0, "GET behind:1", &id[1]);
    issue_ok(ac, 0, "GET behind:2", &id[2]);
    long long t0 = lab_now_ms();
    run_all();
    long long ms = lab_now_ms() - t0;
    const lab_acmd *head = &t.tally->cmd[id[0]];
    print_message("    hostile: %-24s %-26s %5lld ms  (%s)\n", what, redtls_strerror(head->st), ms, head->msg);
    if (lab_aconn_check(conn, what) != 0 || conn->st != REDTLS_OK)
        fail_msg("%s: connect %s (%s)", what, redtls_strerror(conn->st), conn->msg);
    if (hc->says != NULL && strstr(head->msg, hc->says) == NULL)
        fail_msg("%s: message \"%s\" does not name \"%s\"", what, head->msg, hc->says);
    /* As in the blocking API (test_hostile.c): the command whose reply
     * broke a limit or the protocol ends with that status. */
    if (head->st != hc->want)
        fail_msg("%s: first command: %s, expected %s (%s)", what, redtls_strerror(head->st),
                 redtls_strerror(hc->want), head->msg);
    /* The commands behind it were written too: their fate is unknown when
     * the connection broke; past their own deadline on the slow one. */
    redtls_status behind = hc->want == REDTLS_E_COMMAND_TIMEOUT ? REDTLS_E_COMMAND_TIMEOUT : REDTLS_E_OUTCOME_UNKNOWN;
    assert_cmd(id[1], behind);
    assert_cmd(id[2], behind);
    if (hc->want == REDTLS_E_COMMAND_TIMEOUT) {
        /* The server is still sending: the connection stays, the late
         * reply will be dropped; closing ends it. */
        assert_int_equal(redtls_async_is_connected(ac), 1);
        redtls_async_close(ac);
    }
    assert_int_equal(redtls_async_is_connected(ac), 0);
    assert_usable_again(ac, what);
    assert_once(what);
    lab_loop_free_handle(t.loop, ac);
}

static void test_hostile_replies(void **state)
{
    (void)state;
    start_loop(8 * N_HOSTILE + 16);
    assert_int_equal(lab_proxy_start(&t.proxy, redis_open.port), 0);
    for (size_t i = 0; i < N_HOSTILE; i++)
        hostile_run(&hostile_cases[i]);
}

/* A server that answers the ClientHello with HTTP: the connect callback
 * and the commands waiting for it say REDTLS_E_TLS (no reconnection);
 * connecting again, elsewhere, works. */
static void test_hostile_handshake(void **state)
{
    (void)state;
    start_loop(16);
    lab_hostile_opts o = {.tls = 1, .garbage_handshake = 1, .reply = "HTTP/1.1 400 Bad Request\r\n\r\n"};
    assert_int_equal(lab_hostile_start(&t.hostile, &o), 0);
    assert_int_equal(lab_proxy_start(&t.proxy, t.hostile.port), 0);
    redtls_config *cfg = make_cfg("localhost", t.proxy.port);
    assert_cfg_status(cfg, redtls_config_set_token(cfg, NULL), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_reconnect(cfg, 0), REDTLS_OK);
    redtls_async *ac = new_handle(cfg);
    lab_aconn *conn = connect_as(ac, REDTLS_OK);
    size_t id[2];
    issue_ok(ac, 0, "GET a", &id[0]);
    issue_ok(ac, 0, "GET b", &id[1]);
    run_all();
    print_message("    %s: garbage handshake: %s (%s)\n", lab_loop_name(t.kind), redtls_strerror(conn->st),
                  conn->msg);
    assert_int_equal(lab_aconn_check(conn, "garbage handshake"), 0);
    assert_int_equal(conn->st, REDTLS_E_TLS);
    assert_cmd(id[0], REDTLS_E_TLS);
    assert_cmd(id[1], REDTLS_E_TLS);
    /* Reconnection is off: a command alone does not connect again. */
    issue_ok(ac, 0, "PING", &id[0]);
    run_all();
    assert_cmd(id[0], REDTLS_E_STATE);
    assert_contains(t.tally->cmd[id[0]].msg, "reconnection is off");
    lab_proxy_retarget(&t.proxy, redis_open.port);
    lab_aconn *again = connect_as(ac, REDTLS_OK);
    issue_ok(ac, 0, "PING", &id[1]);
    run_all();
    assert_int_equal(lab_aconn_check(again, "connect again"), 0);
    assert_int_equal(again->st, REDTLS_OK);
    assert_cmd(id[1], REDTLS_OK);
    assert_once("garbage handshake");
}

static lab_loop_kind kinds[LAB_LOOP_KINDS] = {LAB_LOOP_BUILTIN, LAB_LOOP_LIBUV, LAB_LOOP_LIBEVENT};

/* One test per loop, named scenario/loop. */
#define ON_EACH_LOOP(name, fn)                                                \
    {name "/built-in", fn, setup, teardown, &kinds[LAB_LOOP_BUILTIN]},        \
        {name "/libuv", fn, setup, teardown, &kinds[LAB_LOOP_LIBUV]},         \
        {name "/libevent", fn, setup, teardown, &kinds[LAB_LOOP_LIBEVENT]}

int main(void)
{
    deep_nesting[0] = '\0';
    for (int i = 0; i < 100; i++)
        strcat(deep_nesting, "*1\r\n");
    strcat(deep_nesting, ":1\r\n");
    /* REDTLS_TEST_FILTER: a cmocka name pattern, e.g. "*built-in" (the
     * valgrind step runs the built-in loop's cases only). */
    const char *filter = getenv("REDTLS_TEST_FILTER");
    if (filter != NULL && filter[0] != '\0')
        cmocka_set_test_filter(filter);
    const struct CMUnitTest tests[] = {
        ON_EACH_LOOP("tls_matrix", test_tls_matrix),
        ON_EACH_LOOP("close_and_free", test_close_and_free),
        ON_EACH_LOOP("incr_accounting", test_incr_accounting),
        ON_EACH_LOOP("rotation_old_then_new", test_rotation_old_then_new),
        ON_EACH_LOOP("rotation_new_then_old", test_rotation_new_then_old),
        ON_EACH_LOOP("hostile_replies", test_hostile_replies),
        ON_EACH_LOOP("hostile_handshake", test_hostile_handshake),
    };
    return cmocka_run_group_tests_name("integration.async_matrix", tests, group_setup, group_teardown);
}

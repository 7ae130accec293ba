/* lib/session/ready.c: the machine that makes a connection usable before
 * commands (the idle check's verdict, the health-check PING, an owed
 * re-authentication, reconnecting within the backoff and the limits),
 * stepped by hand with a fake clock: the test passes the time, reads the
 * wait each step answers, and plays the server on the memory transport, a
 * socketpair or a Unix socket listener of its own. The one TCP socket is a
 * loopback listener whose full backlog keeps a connect in progress.
 * Nothing here sleeps. */
#include "unit_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

/* The fake clock starts here; any value works, as the core never reads
 * the clock itself. */
#define T0 1000000
#define TOKEN "s3cret-token-for-ready"
#define PING_FRAME "*1\r\n$4\r\nPING\r\n"
#define GET_FRAME "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
#define AUTH_FRAME "*2\r\n$4\r\nAUTH\r\n$22\r\n" TOKEN "\r\n"
#define WRONGPASS "-WRONGPASS invalid username-password pair or user is disabled.\r\n"

static char dir[64];
static char missing[128]; /* a Unix socket path nobody listens on */

static int group_setup(void **state)
{
    (void)state;
    unit_tmpdir(dir, sizeof dir);
    snprintf(missing, sizeof missing, "%s/nobody.sock", dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unit_rmtree(dir);
    return 0;
}

/* ---- helpers ---- */

typedef struct ev_log {
    int n;
    redtls_event_type type[16];
    char detail[16][256];
} ev_log;

static void on_event(void *ud, redtls_event_type type, const char *detail)
{
    ev_log *l = ud;
    assert_true(l->n < 16);
    l->type[l->n] = type;
    snprintf(l->detail[l->n], sizeof l->detail[0], "%s", detail);
    l->n++;
}

static void assert_event(const ev_log *l, int i, redtls_event_type type, const char *needle)
{
    if (i >= l->n)
        fail_msg("event %d expected, only %d seen", i, l->n);
    if (l->type[i] != type)
        fail_msg("event %d is type %d (\"%s\"), expected %d", i, (int)l->type[i], l->detail[i], (int)type);
    assert_contains(l->detail[i], needle);
}

static void assert_wait(const redtls__wait *w, int fd, int events, int64_t at)
{
    if (w->fd != fd || w->events != events || w->at != at)
        fail_msg("wait {fd %d, events %d, at T0%+lld}, expected {fd %d, events %d, at T0%+lld}", w->fd, w->events,
                 (long long)(w->at - T0), fd, events, (long long)(at - T0));
}

/* The bytes written so far are exactly want. */
static void assert_written(redtls__transport *t, const char *want)
{
    size_t len = 0;
    const char *w = redtls__mem_written(t, &len);
    if (len != strlen(want) || memcmp(w, want, len) != 0)
        fail_msg("written \"%.*s\", expected \"%s\"", (int)len, w ? w : "", want);
}

static void queue_get(redtls_conn *c)
{
    const char *argv[] = {"GET", "k"};
    assert_status(redtls__conn_append(c, 2, argv, NULL), REDTLS_OK);
}

/* The caller's queue holds exactly one unsent GET, nothing else owed. */
static void assert_get_queued(const redtls_conn *c)
{
    assert_int_equal(c->pending, 1);
    assert_int_equal(c->unsent, 1);
    assert_int_equal(c->lost, 0);
    assert_int_equal(c->ooff, 0);
    assert_int_equal(c->olen, sizeof GET_FRAME - 1);
    assert_memory_equal(c->obuf, GET_FRAME, sizeof GET_FRAME - 1);
    assert_false(c->saved.active);
}

/* The configuration of every test: no TLS, reconnect off (the backoff
 * tests turn it on), events into *log. */
static redtls_config *ready_config(ev_log *log)
{
    redtls_config *cfg = unit_plain_config();
    memset(log, 0, sizeof *log);
    assert_status(redtls_config_set_event_callback(cfg, on_event, log), REDTLS_OK);
    return cfg;
}

/* A connection on a plain transport over a socketpair; *peer: the server's
 * end. */
static redtls_conn *pair_conn(redtls_config *cfg, int *peer)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    redtls__transport *t = NULL;
    assert_status(redtls__plain_transport(sv[0], &t), REDTLS_OK);
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    assert_status(redtls__conn_attach(c, t, 0), REDTLS_OK);
    *peer = sv[1];
    return c;
}

/* Counts the idle checks a transport is asked for (its ops table copied,
 * the check wrapped), to show which calls look and which do not. */
static const redtls__transport_ops *orig_ops;
static redtls__transport_ops counting_ops;
static int idle_checks;

static redtls_status counted_idle_check(redtls__transport *t, char *err)
{
    idle_checks++;
    return orig_ops->idle_check(t, err);
}

static void count_idle_checks(redtls__transport *t)
{
    orig_ops = t->ops;
    counting_ops = *t->ops;
    counting_ops.idle_check = counted_idle_check;
    t->ops = &counting_ops;
    idle_checks = 0;
}

/* ready_needed, then start: the way every driver begins. */
static void begin(redtls_conn *c, int64_t now, int64_t deadline, int once)
{
    redtls_status idle;
    assert_int_equal(redtls__ready_needed(c, now, &idle), 1);
    assert_status(idle, REDTLS_OK);
    assert_status(redtls__ready_start(c, now, deadline, once, idle), REDTLS_OK);
}

/* ---- 1. nothing to do ---- */

/* Connected, idle, nothing due: no work; a health check becomes due at
 * exactly health_check_ms of quiet, and an owed AUTH makes work too. When
 * asked anyway, the machine is done at once and writes nothing. */
static void test_idle_nothing_due(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg = ready_config(&log);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    count_idle_checks(t);
    redtls_status idle = REDTLS_E_IO;
    assert_int_equal(redtls__ready_needed(c, T0, &idle), 0);
    assert_status(idle, REDTLS_OK);
    assert_int_equal(idle_checks, 1);

    int done = 0;
    redtls__wait w;
    assert_status(redtls__ready_start(c, T0, T0 + 1000, 0, REDTLS_OK), REDTLS_OK);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
    assert_true(done);
    assert_true(redtls_conn_is_connected(c));
    assert_written(t, "");
    assert_int_equal(idle_checks, 1); /* the machine did not look again */
    assert_int_equal(log.n, 0);
    redtls_conn_free(c);

    assert_status(redtls_config_set_health_check_ms(cfg, 100), REDTLS_OK);
    c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    c->last_io = T0 - 99;
    assert_int_equal(redtls__ready_needed(c, T0, &idle), 0);
    c->last_io = T0 - 100;
    assert_int_equal(redtls__ready_needed(c, T0, &idle), 1);
    assert_status(idle, REDTLS_OK);
    c->last_io = T0;
    c->need_reauth = 1;
    assert_int_equal(redtls__ready_needed(c, T0, &idle), 1);
    assert_status(idle, REDTLS_OK);
    redtls_conn_free(c);

    /* Not connected: work (the idle check needs a connection). */
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    idle = REDTLS_E_IO;
    assert_int_equal(redtls__ready_needed(c, T0, &idle), 1);
    assert_status(idle, REDTLS_OK);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* In use (a reply owed): no work and no idle check, even with the server
 * gone, a PING due and an AUTH owed; the same with replies owed from a
 * connection that broke. */
static void test_in_use_skips_idle_check(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg = ready_config(&log);
    assert_status(redtls_config_set_health_check_ms(cfg, 100), REDTLS_OK);
    int peer;
    redtls_conn *c = pair_conn(cfg, &peer);
    count_idle_checks(c->tp);
    queue_get(c);
    int want = -1;
    assert_status(redtls__conn_write_step(c, &want), REDTLS_OK);
    assert_int_equal(want, 0);
    assert_int_equal(redtls__conn_in_flight(c), 1);
    char buf[64];
    assert_int_equal(recv(peer, buf, sizeof buf, 0), (ssize_t)(sizeof GET_FRAME - 1));
    close(peer);
    c->last_io = T0 - 1000;
    c->need_reauth = 1;

    redtls_status idle = REDTLS_E_IO;
    assert_int_equal(redtls__ready_needed(c, T0, &idle), 0);
    assert_status(idle, REDTLS_OK);
    assert_int_equal(idle_checks, 0);

    /* The connection breaks with the GET in flight: it is owed as lost. */
    redtls__conn_drop(c, REDTLS_E_EOF);
    assert_int_equal(c->lost, 1);
    redtls__transport *t = NULL;
    assert_status(redtls__mem_transport(&t, REDTLS_E_COMMAND_TIMEOUT), REDTLS_OK);
    count_idle_checks(t);
    assert_status(redtls__conn_attach(c, t, 0), REDTLS_OK);
    c->need_reauth = 1;
    assert_int_equal(redtls__ready_needed(c, T0, &idle), 0);
    assert_status(idle, REDTLS_OK);
    assert_int_equal(idle_checks, 0);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* ---- 2. the idle check's verdict ---- */

/* The peer closed: the verdict (EOF) comes from ready_needed, made once;
 * the machine drops the connection for it and, without reconnection, ends
 * naming it. */
static void test_idle_check_peer_closed(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg = ready_config(&log);
    int peer;
    redtls_conn *c = pair_conn(cfg, &peer);
    c->established = 1; /* announced, so the drop is reported */
    count_idle_checks(c->tp);
    queue_get(c);
    close(peer);

    redtls_status idle = REDTLS_OK;
    assert_int_equal(redtls__ready_needed(c, T0, &idle), 1);
    assert_status(idle, REDTLS_E_EOF);
    assert_string_equal(redtls_conn_errmsg(c), "the server closed the idle connection");
    assert_int_equal(idle_checks, 1);

    int done = 1;
    redtls__wait w;
    assert_status(redtls__ready_start(c, T0, T0 + 1000, 0, idle), REDTLS_OK);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_E_STATE);
    assert_false(done);
    assert_string_equal(redtls_conn_errmsg(c),
                        "not connected: the server closed the idle connection (call redtls_conn_connect)");
    assert_false(redtls_conn_is_connected(c));
    assert_int_equal(idle_checks, 1);
    assert_int_equal(log.n, 1);
    assert_event(&log, 0, REDTLS_EVENT_DISCONNECTED, "the server closed the idle connection");
    assert_get_queued(c); /* never written, still the caller's */

    /* Nothing left to check: the next call has no verdict to hand over. */
    idle = REDTLS_E_IO;
    assert_int_equal(redtls__ready_needed(c, T0, &idle), 1);
    assert_status(idle, REDTLS_OK);
    assert_status(redtls__ready_start(c, T0, T0 + 1000, 0, idle), REDTLS_OK);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_E_STATE);
    assert_string_equal(redtls_conn_errmsg(c), "not connected (call redtls_conn_connect)");
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* The peer sent something nobody asked for: the connection cannot be
 * trusted (a reply out of step would be taken for the next command's). */
static void test_idle_check_unasked_data(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg = ready_config(&log);
    int peer;
    redtls_conn *c = pair_conn(cfg, &peer);
    count_idle_checks(c->tp);
    assert_int_equal(send(peer, "+OK\r\n", 5, 0), 5);

    redtls_status idle = REDTLS_OK;
    assert_int_equal(redtls__ready_needed(c, T0, &idle), 1);
    assert_status(idle, REDTLS_E_PROTOCOL);
    assert_contains(redtls_conn_errmsg(c), "data nobody asked for");

    int done = 1;
    redtls__wait w;
    assert_status(redtls__ready_start(c, T0, T0 + 1000, 0, idle), REDTLS_OK);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_E_STATE);
    assert_false(done);
    assert_string_equal(redtls_conn_errmsg(c), "not connected: the server sent data nobody asked for on an idle "
                                               "connection (call redtls_conn_connect)");
    assert_false(redtls_conn_is_connected(c));
    assert_int_equal(idle_checks, 1);
    assert_int_equal(log.n, 0); /* never announced: no DISCONNECTED */
    /* The client's end is closed: the server reads the end (a reset, as
     * the client left the unasked bytes unread), not "try again". */
    char b;
    errno = 0;
    ssize_t n = recv(peer, &b, 1, 0);
    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
    close(peer);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* The machine acts on the verdict handed to it and never looks itself: a
 * clean verdict on a closed socket keeps the connection, a failed one on a
 * healthy transport drops it. */
static void test_machine_uses_given_verdict(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg = ready_config(&log);
    int peer;
    redtls_conn *c = pair_conn(cfg, &peer);
    count_idle_checks(c->tp);
    close(peer);
    int done = 0;
    redtls__wait w;
    assert_status(redtls__ready_start(c, T0, T0 + 1000, 0, REDTLS_OK), REDTLS_OK);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
    assert_true(done);
    assert_true(redtls_conn_is_connected(c));
    assert_int_equal(idle_checks, 0);
    redtls_conn_free(c);

    redtls__transport *t;
    c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    count_idle_checks(t);
    redtls_status verdict = redtls__fail(c->errmsg, REDTLS_E_PROTOCOL, "the verdict handed over");
    assert_status(redtls__ready_start(c, T0, T0 + 1000, 0, verdict), REDTLS_OK);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_E_STATE);
    assert_false(done);
    assert_string_equal(redtls_conn_errmsg(c), "not connected: the verdict handed over (call redtls_conn_connect)");
    assert_false(redtls_conn_is_connected(c));
    assert_int_equal(idle_checks, 0);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* ---- 3. the health-check PING ---- */

/* A memory connection quiet for the health-check interval, with the
 * caller's GET queued (not sent). */
static redtls_conn *ping_conn(redtls_config *cfg, redtls__transport **t)
{
    assert_status(redtls_config_set_health_check_ms(cfg, 100), REDTLS_OK);
    assert_status(redtls_config_set_command_timeout_ms(cfg, 1000), REDTLS_OK);
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, t);
    c->last_io = T0 - 100;
    queue_get(c);
    return c;
}

/* Exactly one PING goes out, the GET waits aside and comes back untouched;
 * any answer (an error too) proves the server there. */
static void run_ping_answered(const char *answer)
{
    ev_log log;
    redtls_config *cfg = ready_config(&log);
    redtls__transport *t;
    redtls_conn *c = ping_conn(cfg, &t);
    int done = 1;
    redtls__wait w;
    begin(c, T0, T0 + 1000, 0);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
    assert_false(done);
    /* Half the command timeout, within the call's 1000 ms. */
    assert_wait(&w, -1, POLLIN, T0 + 500);
    assert_written(t, PING_FRAME);
    assert_true(c->saved.active);

    assert_status(redtls__ready_step(c, T0 + 10, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_wait(&w, -1, POLLIN, T0 + 500);

    unit_push(t, answer);
    assert_status(redtls__ready_step(c, T0 + 20, &done, &w), REDTLS_OK);
    assert_true(done);
    assert_true(redtls_conn_is_connected(c));
    assert_written(t, PING_FRAME);
    assert_get_queued(c);
    assert_true(c->last_io == T0 + 20);
    assert_int_equal(log.n, 0);
    redtls_status idle;
    assert_int_equal(redtls__ready_needed(c, T0 + 20, &idle), 0);

    /* The queue goes out as it was. */
    int want = -1;
    assert_status(redtls__conn_write_step(c, &want), REDTLS_OK);
    assert_written(t, PING_FRAME GET_FRAME);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

static void test_ping_answered(void **state)
{
    (void)state;
    run_ping_answered("+PONG\r\n");
}

static void test_ping_answered_with_error(void **state)
{
    (void)state;
    run_ping_answered("-LOADING Redis is loading the dataset in memory\r\n");
}

/* The PING waits at most half the command timeout, and never past the
 * call's deadline. */
static void test_ping_wait_bounds(void **state)
{
    (void)state;
    static const struct {
        unsigned command_timeout_ms;
        int64_t deadline, at;
    } cases[] = {
        {1000, T0 + 5000, T0 + 500},
        {1000, T0 + 300, T0 + 300},
        {1000, T0 + 500, T0 + 500},
        {0, T0 + 5000, T0 + 5000},
        {0, REDTLS__NO_DEADLINE, REDTLS__NO_DEADLINE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ev_log log;
        redtls_config *cfg = ready_config(&log);
        redtls__transport *t;
        redtls_conn *c = ping_conn(cfg, &t);
        c->cfg.command_timeout_ms = cases[i].command_timeout_ms;
        int done = 1;
        redtls__wait w;
        begin(c, T0, cases[i].deadline, 0);
        assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
        assert_false(done);
        assert_wait(&w, -1, POLLIN, cases[i].at);
        redtls__ready_cancel(c);
        redtls_conn_free(c);
        redtls_config_free(cfg);
    }
}

/* Unanswered by then: the connection is dropped (a late PONG would be
 * taken for the GET's reply) and, without reconnection, the call ends;
 * the GET stays queued, never sent. */
static void test_ping_unanswered(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg = ready_config(&log);
    redtls__transport *t;
    redtls_conn *c = ping_conn(cfg, &t);
    c->established = 1;
    int done = 1;
    redtls__wait w;
    begin(c, T0, T0 + 1000, 0);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
    assert_wait(&w, -1, POLLIN, T0 + 500);
    assert_status(redtls__ready_step(c, T0 + 499, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_wait(&w, -1, POLLIN, T0 + 500);
    assert_true(redtls_conn_is_connected(c));

    assert_status(redtls__ready_step(c, T0 + 500, &done, &w), REDTLS_E_STATE);
    assert_false(done);
    assert_string_equal(redtls_conn_errmsg(c),
                        "not connected: timed out waiting for the server (call redtls_conn_connect)");
    assert_false(redtls_conn_is_connected(c));
    assert_get_queued(c);
    assert_int_equal(log.n, 1);
    assert_event(&log, 0, REDTLS_EVENT_DISCONNECTED, "timed out waiting for the server");
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* The PING answered NOAUTH (the server restarted and forgot us): the
 * owed AUTH follows on the same connection. */
static void test_ping_noauth_reauthenticates(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg = ready_config(&log);
    assert_status(redtls_config_set_token(cfg, TOKEN), REDTLS_OK);
    redtls__transport *t;
    redtls_conn *c = ping_conn(cfg, &t);
    int done = 1;
    redtls__wait w;
    begin(c, T0, T0 + 1000, 0);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
    assert_written(t, PING_FRAME);
    unit_push(t, "-NOAUTH Authentication required.\r\n");
    assert_status(redtls__ready_step(c, T0 + 1, &done, &w), REDTLS_OK);
    assert_false(done);
    /* The AUTH has the call's time, not the PING's. */
    assert_wait(&w, -1, POLLIN, T0 + 1000);
    assert_written(t, PING_FRAME AUTH_FRAME);
    unit_push(t, "+OK\r\n");
    assert_status(redtls__ready_step(c, T0 + 2, &done, &w), REDTLS_OK);
    assert_true(done);
    assert_int_equal(c->need_reauth, 0);
    assert_get_queued(c);
    assert_int_equal(log.n, 1);
    assert_event(&log, 0, REDTLS_EVENT_AUTH_REFRESHED, "after a NOAUTH reply");
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* ---- 4. re-authentication owed after NOAUTH ---- */

/* A command answered NOAUTH: the reply asks for a new AUTH (and the
 * command's resend); the GET queued next waits aside meanwhile. */
static redtls_conn *noauth_conn(redtls_config *cfg, redtls__transport **t)
{
    assert_status(redtls_config_set_token(cfg, TOKEN), REDTLS_OK);
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, t);
    c->established = 1;
    const char *argv[] = {"INCR", "n"};
    assert_status(redtls__conn_append(c, 2, argv, NULL), REDTLS_OK);
    int want = -1;
    assert_status(redtls__conn_write_step(c, &want), REDTLS_OK);
    unit_push(*t, "-NOAUTH Authentication required.\r\n");
    redisReply *r = NULL;
    assert_status(redtls__conn_read_step(c, T0, &r, &want), REDTLS_OK);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_int_equal(redtls__cmd_next(c, REDTLS_OK, 0), REDTLS__CMD_REAUTH_RESEND);
    freeReplyObject(r);
    assert_int_equal(c->need_reauth, 1);
    queue_get(c);
    return c;
}

#define INCR_FRAME "*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n"

static void test_reauth_accepted(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg = ready_config(&log);
    redtls__transport *t;
    redtls_conn *c = noauth_conn(cfg, &t);
    int done = 1;
    redtls__wait w;
    begin(c, T0, T0 + 1000, 0);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_wait(&w, -1, POLLIN, T0 + 1000);
    assert_written(t, INCR_FRAME AUTH_FRAME);
    assert_int_equal(log.n, 0);

    unit_push(t, "+OK\r\n");
    assert_status(redtls__ready_step(c, T0 + 5, &done, &w), REDTLS_OK);
    assert_true(done);
    assert_true(redtls_conn_is_connected(c));
    assert_int_equal(c->need_reauth, 0);
    assert_int_equal(redtls__cmd_next(c, REDTLS_OK, 0), REDTLS__CMD_DONE);
    assert_get_queued(c);
    assert_written(t, INCR_FRAME AUTH_FRAME);
    assert_int_equal(log.n, 1);
    assert_event(&log, 0, REDTLS_EVENT_AUTH_REFRESHED, "re-authenticated after a NOAUTH reply");
    redtls_status idle;
    assert_int_equal(redtls__ready_needed(c, T0 + 5, &idle), 0);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* Refused: the connection is dropped for it (it cannot run commands),
 * and the call ends naming the refusal, not the token. */
static void test_reauth_refused(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg = ready_config(&log);
    redtls__transport *t;
    redtls_conn *c = noauth_conn(cfg, &t);
    int done = 1;
    redtls__wait w;
    begin(c, T0, T0 + 1000, 0);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
    assert_written(t, INCR_FRAME AUTH_FRAME);
    unit_push(t, WRONGPASS);
    assert_status(redtls__ready_step(c, T0 + 5, &done, &w), REDTLS_E_STATE);
    assert_false(done);
    assert_false(redtls_conn_is_connected(c));
    assert_string_equal(redtls_conn_errmsg(c), "not connected: AUTH refused by the server: WRONGPASS invalid "
                                               "username-password pair or user is disabled. (call "
                                               "redtls_conn_connect)");
    assert_not_contains(redtls_conn_errmsg(c), TOKEN);
    assert_int_equal(log.n, 1);
    assert_event(&log, 0, REDTLS_EVENT_DISCONNECTED, "AUTH refused by the server: WRONGPASS");
    assert_int_equal(c->need_reauth, 0);
    assert_null(c->au.token.data);
    assert_get_queued(c);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* The AUTH unanswered until the call's deadline: dropped the same way. */
static void test_reauth_unanswered(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg = ready_config(&log);
    redtls__transport *t;
    redtls_conn *c = noauth_conn(cfg, &t);
    int done = 1;
    redtls__wait w;
    begin(c, T0, T0 + 300, 0);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
    assert_wait(&w, -1, POLLIN, T0 + 300);
    assert_status(redtls__ready_step(c, T0 + 300, &done, &w), REDTLS_E_STATE);
    assert_string_equal(redtls_conn_errmsg(c),
                        "not connected: timed out waiting for the server (call redtls_conn_connect)");
    assert_false(redtls_conn_is_connected(c));
    assert_get_queued(c);
    assert_int_equal(log.n, 1);
    assert_event(&log, 0, REDTLS_EVENT_DISCONNECTED, "timed out waiting for the server");
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* ---- 5. reconnecting: the backoff, the limits, the deadline ---- */

/* Reconnection on, to a Unix socket path nobody listens on (the connect
 * fails at once); base == cap makes every delay exactly base. */
static redtls_conn *refused_conn(ev_log *log, redtls_config **cfg, unsigned base, unsigned cap)
{
    *cfg = ready_config(log);
    assert_status(redtls_config_set_reconnect(*cfg, 1), REDTLS_OK);
    assert_status(redtls_config_set_unix_path(*cfg, missing), REDTLS_OK);
    assert_status(redtls_config_set_backoff(*cfg, base, cap), REDTLS_OK);
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(*cfg, &c), REDTLS_OK);
    return c;
}

static const char *refusal(void)
{
    static char msg[256];
    snprintf(msg, sizeof msg, "connect to unix socket %s failed: No such file or directory", missing);
    return msg;
}

static void assert_scheduled(const ev_log *log, int i, unsigned delay)
{
    char want[320];
    snprintf(want, sizeof want, "next attempt in %u ms: %s", delay, refusal());
    assert_event(log, i, REDTLS_EVENT_RECONNECT_SCHEDULED, want);
    assert_string_equal(log->detail[i], want);
}

/* The first attempt fails: the machine asks to be called at the next
 * attempt's time (no socket), makes no attempt before it, and makes the
 * next one then. */
static void test_backoff_waits_for_next_attempt(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg;
    redtls_conn *c = refused_conn(&log, &cfg, 50, 50);
    queue_get(c);
    int done = 1;
    redtls__wait w;
    begin(c, T0, T0 + 1000, 0);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_int_equal(c->attempts, 1);
    assert_true(c->next_attempt == T0 + 50);
    assert_wait(&w, -1, 0, T0 + 50);
    assert_int_equal(log.n, 1);
    assert_scheduled(&log, 0, 50);
    assert_status(c->last_status, REDTLS_E_CONNECT);
    assert_string_equal(c->last_cause, refusal());

    /* Woken early: still no attempt. */
    assert_status(redtls__ready_step(c, T0 + 49, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_wait(&w, -1, 0, T0 + 50);
    assert_int_equal(c->attempts, 1);
    assert_int_equal(log.n, 1);

    assert_status(redtls__ready_step(c, T0 + 50, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_int_equal(c->attempts, 2);
    assert_wait(&w, -1, 0, T0 + 100);
    assert_int_equal(log.n, 2);
    assert_scheduled(&log, 1, 50);
    assert_true(c->outage_start == T0);
    assert_get_queued(c); /* attempts leave the caller's queue alone */
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* The next attempt falls after the deadline: the call ends with the last
 * attempt's status when it made one; the next call, which makes none,
 * says when the next attempt is due. "At or after the deadline" is
 * "after": an attempt at the deadline would have no time. */
static void test_backoff_past_deadline(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg;
    redtls_conn *c = refused_conn(&log, &cfg, 50, 50);
    int done = 1;
    redtls__wait w;
    begin(c, T0, T0 + 120, 0);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
    assert_wait(&w, -1, 0, T0 + 50);
    assert_status(redtls__ready_step(c, T0 + 50, &done, &w), REDTLS_OK);
    assert_wait(&w, -1, 0, T0 + 100);
    assert_status(redtls__ready_step(c, T0 + 100, &done, &w), REDTLS_E_CONNECT);
    assert_false(done);
    char want[400];
    snprintf(want, sizeof want, "%s (reconnect attempt 3; will retry)", refusal());
    assert_string_equal(redtls_conn_errmsg(c), want);
    assert_int_equal(c->attempts, 3);
    assert_true(c->next_attempt == T0 + 150);
    assert_int_equal(log.n, 3);

    /* A call whose deadline is the next attempt's time: no attempt. */
    begin(c, T0 + 120, T0 + 150, 0);
    assert_status(redtls__ready_step(c, T0 + 120, &done, &w), REDTLS_E_UNAVAILABLE);
    assert_false(done);
    snprintf(want, sizeof want,
             "not connected; next reconnect attempt in 30 ms, after the command deadline (last failure: %s)",
             refusal());
    assert_string_equal(redtls_conn_errmsg(c), want);
    assert_int_equal(c->attempts, 3);
    assert_int_equal(log.n, 3);

    /* One millisecond more and it waits for it. */
    begin(c, T0 + 120, T0 + 151, 0);
    assert_status(redtls__ready_step(c, T0 + 120, &done, &w), REDTLS_OK);
    assert_wait(&w, -1, 0, T0 + 150);
    assert_int_equal(c->attempts, 3);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* With jitter: every delay lies in [base, min(cap, 3 * the previous)]
 * (the first in [base, 3 * base]), the wait is exactly the delay the
 * event announced, and the delays reach the cap. */
static void test_backoff_jitter_ranges(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg;
    redtls_conn *c = refused_conn(&log, &cfg, 10, 40);
    int done = 1;
    redtls__wait w;
    int64_t now = T0;
    unsigned prev = 0;
    begin(c, now, T0 + 100000, 0);
    for (int i = 0; i < 12; i++) {
        assert_status(redtls__ready_step(c, now, &done, &w), REDTLS_OK);
        assert_int_equal(c->attempts, (unsigned)i + 1);
        assert_int_equal(log.n, 1);
        unsigned delay = 0;
        assert_int_equal(sscanf(log.detail[0], "next attempt in %u ms:", &delay), 1);
        unsigned hi = prev ? 3 * prev : 30;
        if (hi > 40)
            hi = 40;
        if (delay < 10 || delay > hi)
            fail_msg("attempt %d: delay %u ms outside [10, %u]", i + 1, delay, hi);
        assert_wait(&w, -1, 0, now + delay);
        now += delay;
        prev = delay;
        log.n = 0;
    }
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* once: one attempt at most, and never a wait for the backoff. */
static void test_once(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg;
    redtls_conn *c = refused_conn(&log, &cfg, 50, 50);
    int done = 1;
    redtls__wait w;
    char want[400];
    begin(c, T0, T0 + 1000, 1);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_E_CONNECT);
    snprintf(want, sizeof want, "%s (reconnect attempt 1; will retry)", refusal());
    assert_string_equal(redtls_conn_errmsg(c), want);
    assert_int_equal(c->attempts, 1);
    assert_false(c->no_time);

    /* The next attempt is due within the deadline, yet it does not wait. */
    begin(c, T0 + 10, T0 + 1000, 1);
    assert_status(redtls__ready_step(c, T0 + 10, &done, &w), REDTLS_E_UNAVAILABLE);
    assert_contains(redtls_conn_errmsg(c), "not connected; next reconnect attempt in 40 ms");
    assert_int_equal(c->attempts, 1);
    assert_false(c->no_time);

    begin(c, T0 + 50, T0 + 1000, 1);
    assert_status(redtls__ready_step(c, T0 + 50, &done, &w), REDTLS_E_CONNECT);
    snprintf(want, sizeof want, "%s (reconnect attempt 2; will retry)", refusal());
    assert_string_equal(redtls_conn_errmsg(c), want);
    assert_int_equal(c->attempts, 2);
    assert_int_equal(log.n, 2);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* max_attempts: the last attempt gives up (no event for it), and later
 * calls make none. */
static void test_max_attempts_gives_up(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg;
    redtls_conn *c = refused_conn(&log, &cfg, 50, 50);
    c->cfg.max_attempts = 2;
    int done = 1;
    redtls__wait w;
    char want[400];
    begin(c, T0, T0 + 1000, 0);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
    assert_wait(&w, -1, 0, T0 + 50);
    assert_status(redtls__ready_step(c, T0 + 50, &done, &w), REDTLS_E_CONNECT);
    snprintf(want, sizeof want, "%s (reconnect attempt 2; giving up)", refusal());
    assert_string_equal(redtls_conn_errmsg(c), want);
    assert_true(c->gave_up);
    assert_int_equal(c->attempts, 2);
    assert_int_equal(log.n, 1);
    assert_scheduled(&log, 0, 50);

    begin(c, T0 + 5000, T0 + 6000, 0);
    assert_status(redtls__ready_step(c, T0 + 5000, &done, &w), REDTLS_E_UNAVAILABLE);
    snprintf(want, sizeof want,
             "gave up reconnecting after 2 attempts; call redtls_conn_connect to start again (last failure: %s)",
             refusal());
    assert_string_equal(redtls_conn_errmsg(c), want);
    assert_int_equal(c->attempts, 2);
    assert_int_equal(log.n, 1);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* max_outage_ms: counted from the first failure of the outage. */
static void test_max_outage_gives_up(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg;
    redtls_conn *c = refused_conn(&log, &cfg, 50, 50);
    c->cfg.max_outage_ms = 100;
    int done = 1;
    redtls__wait w;
    begin(c, T0, T0 + 1000, 0);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
    assert_status(redtls__ready_step(c, T0 + 50, &done, &w), REDTLS_OK);
    assert_wait(&w, -1, 0, T0 + 100);
    assert_false(c->gave_up);
    assert_status(redtls__ready_step(c, T0 + 100, &done, &w), REDTLS_E_CONNECT);
    assert_contains(redtls_conn_errmsg(c), "(reconnect attempt 3; giving up)");
    assert_true(c->gave_up);
    assert_int_equal(log.n, 2);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* A deadline spent before any attempt: no attempt, no backoff fed, no
 * limit counted, and no_time says why. */
static void test_deadline_spent_before_attempt(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg;
    redtls_conn *c = refused_conn(&log, &cfg, 50, 50);
    int done = 1;
    redtls__wait w;
    begin(c, T0, T0, 1);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_E_UNAVAILABLE);
    assert_contains(redtls_conn_errmsg(c), "not connected; next reconnect attempt in 0 ms");
    assert_true(c->no_time);
    assert_int_equal(c->attempts, 0);
    assert_true(c->next_attempt == 0);
    assert_int_equal(log.n, 0);

    /* The next once-call clears it and makes its attempt. */
    begin(c, T0 + 1, T0 + 1000, 1);
    assert_status(redtls__ready_step(c, T0 + 1, &done, &w), REDTLS_E_CONNECT);
    assert_false(c->no_time);
    assert_int_equal(c->attempts, 1);

    /* After a failure, with the attempt due but the deadline gone: the
     * count stays. */
    begin(c, T0 + 60, T0 + 59, 0);
    assert_status(redtls__ready_step(c, T0 + 60, &done, &w), REDTLS_E_UNAVAILABLE);
    char want[400];
    assert_contains(redtls_conn_errmsg(c), "not connected; next reconnect attempt in 0 ms");
    snprintf(want, sizeof want, "(last failure: %s)", refusal());
    assert_contains(redtls_conn_errmsg(c), want);
    assert_true(c->no_time);
    assert_int_equal(c->attempts, 1);
    assert_true(c->next_attempt == T0 + 51);
    assert_int_equal(log.n, 1);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* ---- 6. reconnecting to a listener ---- */

static int unix_listener(const char *path)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    assert_true(strlen(path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(l, 4), 0);
    return l;
}

static int accept_now(int l)
{
    struct pollfd p = {.fd = l, .events = POLLIN, .revents = 0};
    assert_int_equal(poll(&p, 1, 2000), 1);
    int s = accept(l, NULL, NULL);
    assert_true(s >= 0);
    return s;
}

/* A failed attempt, then the server comes up: the next attempt connects
 * (plain, no AUTH), the backoff starts over. Then the server closes the
 * idle connection: the verdict drops it and the machine reconnects at
 * once. The caller's GET waits throughout. */
static void test_reconnect_to_listener(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/up.sock", dir);
    ev_log log;
    redtls_config *cfg = ready_config(&log);
    assert_status(redtls_config_set_reconnect(cfg, 1), REDTLS_OK);
    assert_status(redtls_config_set_unix_path(cfg, path), REDTLS_OK);
    assert_status(redtls_config_set_backoff(cfg, 50, 50), REDTLS_OK);
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    queue_get(c);
    int done = 1;
    redtls__wait w;
    begin(c, T0, T0 + 1000, 0);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
    assert_wait(&w, -1, 0, T0 + 50);
    assert_int_equal(c->attempts, 1);
    assert_int_equal(c->backoff.prev_ms, 50);

    int l = unix_listener(path);
    assert_status(redtls__ready_step(c, T0 + 50, &done, &w), REDTLS_OK);
    assert_true(done);
    assert_true(redtls_conn_is_connected(c));
    assert_int_equal(c->attempts, 0);
    assert_true(c->next_attempt == 0);
    assert_true(c->outage_start == 0);
    assert_false(c->gave_up);
    assert_int_equal(c->backoff.prev_ms, 0);
    assert_true(c->last_io == T0 + 50);
    assert_int_equal(log.n, 2);
    assert_event(&log, 0, REDTLS_EVENT_RECONNECT_SCHEDULED, "next attempt in 50 ms");
    assert_event(&log, 1, REDTLS_EVENT_CONNECTED, "plain TCP");
    assert_get_queued(c);
    int s1 = accept_now(l);

    close(s1);
    redtls_status idle = REDTLS_OK;
    assert_int_equal(redtls__ready_needed(c, T0 + 60, &idle), 1);
    assert_status(idle, REDTLS_E_EOF);
    assert_status(redtls__ready_start(c, T0 + 60, T0 + 1060, 0, idle), REDTLS_OK);
    assert_status(redtls__ready_step(c, T0 + 60, &done, &w), REDTLS_OK);
    assert_true(done);
    assert_true(redtls_conn_is_connected(c));
    assert_int_equal(c->attempts, 0);
    assert_int_equal(log.n, 4);
    assert_event(&log, 2, REDTLS_EVENT_DISCONNECTED, "the server closed the idle connection");
    assert_event(&log, 3, REDTLS_EVENT_CONNECTED, "plain TCP");
    assert_get_queued(c);
    int s2 = accept_now(l);

    redtls_conn_free(c);
    redtls_config_free(cfg);
    close(s2);
    close(l);
    unlink(path);
}

/* ---- 7. cancelling ---- */

/* A driver's wait failed in the middle of the PING: the connection goes
 * (its PING may still be answered), the caller's queue comes back as it
 * was, and nothing of the PING stays owed. */
static void test_cancel_mid_ping(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg = ready_config(&log);
    redtls__transport *t;
    redtls_conn *c = ping_conn(cfg, &t);
    assert_get_queued(c);
    int done = 1;
    redtls__wait w;
    begin(c, T0, T0 + 1000, 0);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_written(t, PING_FRAME);
    assert_int_equal(c->pending, 1); /* the PING's, the GET set aside */

    redtls__ready_cancel(c);
    assert_false(redtls_conn_is_connected(c));
    assert_get_queued(c);
    assert_int_equal(redtls__conn_in_flight(c), 0);
    /* Over: a step now finds only the missing connection. */
    assert_status(redtls__ready_step(c, T0 + 1, &done, &w), REDTLS_E_STATE);
    assert_contains(redtls_conn_errmsg(c), "(call redtls_conn_connect)");
    assert_get_queued(c);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* The same in the middle of a re-authentication: the token it held is
 * wiped too. */
static void test_cancel_mid_reauth(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg = ready_config(&log);
    redtls__transport *t;
    redtls_conn *c = noauth_conn(cfg, &t);
    int done = 1;
    redtls__wait w;
    begin(c, T0, T0 + 1000, 0);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
    assert_true(c->au.awaiting);
    redtls__ready_cancel(c);
    assert_false(redtls_conn_is_connected(c));
    assert_false(c->au.awaiting);
    assert_get_queued(c);
    assert_int_equal(log.n, 1);
    assert_event(&log, 0, REDTLS_EVENT_DISCONNECTED, "");
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* In the middle of an attempt (a TCP connect kept in progress by a full
 * backlog on 127.0.0.1): its socket is closed, and it is no failure for
 * the backoff to count. */
static void test_cancel_mid_attempt(void **state)
{
    (void)state;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(l, 0), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &len), 0);
    int filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(filler >= 0);
    assert_int_equal(connect(filler, (struct sockaddr *)&sa, sizeof sa), 0);

    ev_log log;
    redtls_config *cfg = ready_config(&log);
    assert_status(redtls_config_set_reconnect(cfg, 1), REDTLS_OK);
    assert_status(redtls_config_set_host(cfg, "127.0.0.1", ntohs(sa.sin_port)), REDTLS_OK);
    assert_status(redtls_config_set_connect_timeout_ms(cfg, 300), REDTLS_OK);
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    queue_get(c);
    int done = 1;
    redtls__wait w;
    begin(c, T0, T0 + 1000, 0);
    assert_status(redtls__ready_step(c, T0, &done, &w), REDTLS_OK);
    assert_false(done);
    int fd = w.fd;
    assert_true(fd >= 0);
    assert_int_equal(w.events, POLLOUT);
    assert_true(w.at == T0 + 300);

    redtls__ready_cancel(c);
    assert_int_equal(c->at.phase, 0);
    assert_int_equal(c->at.dial.fd, -1);
    errno = 0;
    assert_int_equal(fcntl(fd, F_GETFD), -1); /* closed */
    assert_int_equal(errno, EBADF);
    assert_false(redtls_conn_is_connected(c));
    assert_int_equal(c->attempts, 0);
    assert_int_equal(log.n, 0);
    assert_get_queued(c);
    redtls_conn_free(c);
    redtls_config_free(cfg);
    close(filler);
    close(l);
}

/* ---- 8. what a command's outcome asks for next ---- */

static void test_cmd_next(void **state)
{
    (void)state;
    ev_log log;
    redtls_config *cfg = ready_config(&log);
    assert_status(redtls_config_set_token(cfg, TOKEN), REDTLS_OK);
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);

    assert_int_equal(redtls__cmd_next(c, REDTLS_OK, 0), REDTLS__CMD_DONE);
    assert_int_equal(redtls__cmd_next(c, REDTLS_OK, REDTLS_CMD_IDEMPOTENT), REDTLS__CMD_DONE);
    assert_int_equal(redtls__cmd_next(c, REDTLS_E_OUTCOME_UNKNOWN, 0), REDTLS__CMD_DONE);
    assert_int_equal(redtls__cmd_next(c, REDTLS_E_OUTCOME_UNKNOWN, REDTLS_CMD_IDEMPOTENT),
                     REDTLS__CMD_RECONNECT_RESEND);
    /* Other failures are not resent, idempotent or not. */
    assert_int_equal(redtls__cmd_next(c, REDTLS_E_COMMAND_TIMEOUT, REDTLS_CMD_IDEMPOTENT), REDTLS__CMD_DONE);
    assert_int_equal(redtls__cmd_next(c, REDTLS_E_STATE, REDTLS_CMD_IDEMPOTENT), REDTLS__CMD_DONE);

    /* A NOAUTH reply: the command did not run, it goes again after AUTH. */
    c->need_reauth = 1;
    assert_int_equal(redtls__cmd_next(c, REDTLS_OK, 0), REDTLS__CMD_REAUTH_RESEND);
    assert_int_equal(redtls__cmd_next(c, REDTLS_OK, REDTLS_CMD_IDEMPOTENT), REDTLS__CMD_REAUTH_RESEND);
    assert_int_equal(redtls__cmd_next(c, REDTLS_E_OUTCOME_UNKNOWN, REDTLS_CMD_IDEMPOTENT),
                     REDTLS__CMD_RECONNECT_RESEND);
    assert_int_equal(redtls__cmd_next(c, REDTLS_E_OUTCOME_UNKNOWN, 0), REDTLS__CMD_DONE);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_nothing_due),
        cmocka_unit_test(test_in_use_skips_idle_check),
        cmocka_unit_test(test_idle_check_peer_closed),
        cmocka_unit_test(test_idle_check_unasked_data),
        cmocka_unit_test(test_machine_uses_given_verdict),
        cmocka_unit_test(test_ping_answered),
        cmocka_unit_test(test_ping_answered_with_error),
        cmocka_unit_test(test_ping_wait_bounds),
        cmocka_unit_test(test_ping_unanswered),
        cmocka_unit_test(test_ping_noauth_reauthenticates),
        cmocka_unit_test(test_reauth_accepted),
        cmocka_unit_test(test_reauth_refused),
        cmocka_unit_test(test_reauth_unanswered),
        cmocka_unit_test(test_backoff_waits_for_next_attempt),
        cmocka_unit_test(test_backoff_past_deadline),
        cmocka_unit_test(test_backoff_jitter_ranges),
        cmocka_unit_test(test_once),
        cmocka_unit_test(test_max_attempts_gives_up),
        cmocka_unit_test(test_max_outage_gives_up),
        cmocka_unit_test(test_deadline_spent_before_attempt),
        cmocka_unit_test(test_reconnect_to_listener),
        cmocka_unit_test(test_cancel_mid_ping),
        cmocka_unit_test(test_cancel_mid_reauth),
        cmocka_unit_test(test_cancel_mid_attempt),
        cmocka_unit_test(test_cmd_next),
    };
    return cmocka_run_group_tests_name("ready", tests, group_setup, group_teardown);
}

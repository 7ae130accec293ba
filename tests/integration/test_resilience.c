/* Reconnection, backoff, at-most-once accounting, idempotent resends, TLS
 * session resumption and health checks, against real redis-server
 * processes (TLS + AUTH) that are killed, frozen, restarted, or reached
 * through the fault proxy (tests/harness/lab_proxy.h). */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <redtls/redtls.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_client.h"
#include "lab_proxy.h"

#define TOKEN "lab-Res-Token-4e19a7"
#define CONNECT_MS 500
#define HANDSHAKE_MS 1000
#define COMMAND_MS 500
#define BACKOFF_BASE_MS 20
#define BACKOFF_CAP_MS 200
/* Scheduling noise allowed on top of a timeout (loaded CI machines). */
#define SLACK_MS 400
#define MAX_EVENTS 4096
#define ACCOUNTING_N 1000
#define IDEMPOTENT_N 300
#define PIPELINE_N 50

static lab_server redis; /* shared: TLS (1.3 by default) + requirepass TOKEN */

typedef struct lab_event {
    redtls_event_type type;
    char detail[256];
} lab_event;

static struct {
    lab_server srv;  /* a server of the test's own (killed, restarted) */
    lab_proxy proxy; /* in front of a server, when the test needs faults */
    redtls_config *cfg;
    redtls_conn *conn;
    redtls_conn *admin; /* direct to the server, never through the proxy */
    struct redisReply *reply;
    lab_event events[MAX_EVENTS];
    size_t nevents;
} t;

static const lab_redis_opts redis_opts = {.tls = 1, .password = TOKEN};

static int group_setup(void **state)
{
    (void)state;
    return lab_init_redis(85, &redis, &redis_opts);
}

static int group_teardown(void **state)
{
    (void)state;
    lab_stop(&redis);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    memset(&t, 0, sizeof t);
    t.srv.listen_fd = -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    redtls_reply_free(t.reply);
    redtls_conn_free(t.conn);
    redtls_conn_free(t.admin);
    redtls_config_free(t.cfg);
    /* A test that failed between SIGSTOP and SIGCONT must not leave the
     * shared server frozen. */
    lab_signal(redis.pid, SIGCONT);
    lab_proxy_stop(&t.proxy);
    lab_stop(&t.srv);
    memset(&t, 0, sizeof t);
    return 0;
}

static void on_event(void *userdata, redtls_event_type type, const char *detail)
{
    (void)userdata;
    if (t.nevents < MAX_EVENTS) {
        t.events[t.nevents].type = type;
        snprintf(t.events[t.nevents].detail, sizeof t.events[t.nevents].detail, "%s", detail ? detail : "");
        t.nevents++;
    }
}

/* Index of the first event of type at or after from, or -1. */
static long ev_find(redtls_event_type type, size_t from)
{
    for (size_t i = from; i < t.nevents; i++) {
        if (t.events[i].type == type) {
            return (long)i;
        }
    }
    return -1;
}

static size_t ev_count(redtls_event_type type)
{
    size_t n = 0;
    for (size_t i = 0; i < t.nevents; i++) {
        n += t.events[i].type == type;
    }
    return n;
}

static void ev_print(void)
{
    for (size_t i = 0; i < t.nevents && i < 40; i++) {
        print_message("    event %d: %s\n", (int)t.events[i].type, t.events[i].detail);
    }
}

static redtls_config *make_cfg(uint16_t port)
{
    redtls_config *cfg = NULL;
    lab_client_config(&cfg, "127.0.0.1", port, "ca.crt", TOKEN);
    lab_client_timeouts(cfg, CONNECT_MS, HANDSHAKE_MS, COMMAND_MS);
    assert_cfg_status(cfg, redtls_config_set_backoff(cfg, BACKOFF_BASE_MS, BACKOFF_CAP_MS), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_event_callback(cfg, on_event, NULL), REDTLS_OK);
    redtls_config_free(t.cfg);
    t.cfg = cfg;
    return cfg;
}

static redtls_conn *new_conn(void)
{
    redtls_conn *c = NULL;
    assert_cfg_status(t.cfg, redtls_conn_new(t.cfg, &c), REDTLS_OK);
    assert_non_null(c);
    return c;
}

/* t.conn, connected with t.cfg. */
static void connect_main(void)
{
    redtls_conn_free(t.conn);
    t.conn = new_conn();
    assert_conn_status(t.conn, redtls_conn_connect(t.conn), REDTLS_OK);
}

/* t.admin: a plain, event-less connection straight to port. */
static void admin_open(uint16_t port)
{
    redtls_conn_free(t.admin);
    t.admin = NULL;
    lab_client_admin(&t.admin, "127.0.0.1", port, TOKEN, 0);
}

/* Runs argv on c into t.reply; *ms gets the call's duration. Checks the
 * out-parameter rule: a reply exactly when the call succeeded. */
static redtls_status callv(redtls_conn *c, unsigned flags, long long *ms, int argc, const char **argv)
{
    long long t0 = lab_now_ms();
    redtls_status st;
    redtls_reply_free(t.reply);
    t.reply = NULL;
    st = redtls_conn_command_argv_ex(c, flags, argc, argv, NULL, &t.reply);
    if (ms != NULL) {
        *ms = lab_now_ms() - t0;
    }
    if (st == REDTLS_OK) {
        assert_non_null(t.reply);
    } else {
        assert_null(t.reply);
    }
    return st;
}

#define ARGS(...) (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)), (const char *[]){__VA_ARGS__}
#define CALL(c, ms, ...) callv((c), 0, (ms), ARGS(__VA_ARGS__))
#define CALL_OK(c, ...) assert_conn_status((c), CALL((c), NULL, __VA_ARGS__), REDTLS_OK)

/* A counter read straight from the server (0 when the key is missing). */
static long long admin_counter(const char *key)
{
    const char *s;
    CALL_OK(t.admin, "GET", key);
    if (redtls_reply_type(t.reply) == REDTLS_REPLY_NIL) {
        return 0;
    }
    s = redtls_reply_str(t.reply, NULL);
    assert_non_null(s);
    return strtoll(s, NULL, 10);
}

static int status_in(redtls_status st, const redtls_status *set, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (st == set[i]) {
            return 1;
        }
    }
    return 0;
}

#define ASSERT_STATUS_IN(conn, st, ...)                                                                  \
    do {                                                                                                 \
        static const redtls_status set_[] = {__VA_ARGS__};                                               \
        if (!status_in((st), set_, sizeof set_ / sizeof set_[0])) {                                      \
            print_error("%s:%d: unexpected status %d (%s): %s\n", __FILE__, __LINE__, (int)(st),        \
                        redtls_strerror(st), redtls_conn_errmsg(conn));                                  \
            fail();                                                                                      \
        }                                                                                                \
    } while (0)

/* Statuses that say the command was not sent: the reconnect attempt made
 * during the call failed, or none could be made in time. */
#define NOT_SENT                                                                                          \
    REDTLS_E_UNAVAILABLE, REDTLS_E_CONNECT, REDTLS_E_CONNECT_TIMEOUT, REDTLS_E_HANDSHAKE_TIMEOUT,       \
        REDTLS_E_TLS, REDTLS_E_IO, REDTLS_E_EOF, REDTLS_E_CLOSED

static uint64_t prng_state;

/* ---- a. killed and restarted on the same port --------------------------- */

static atomic_int killed; /* set by the killer thread */

static void *kill_later(void *arg)
{
    struct timespec ts = {0, 150 * 1000000L};
    (void)arg;
    nanosleep(&ts, NULL);
    lab_signal(t.srv.pid, SIGKILL);
    atomic_store(&killed, 1);
    return NULL;
}

/* One epoch of INCR accounting: OK values rise, and each gap is covered by
 * commands whose outcome was reported unknown. */
typedef struct epoch {
    long long last, ok, unknown, not_sent, max_ms;
    long long since_ok_unknown;
    long long unexpected;
    char first_unexpected[300];
} epoch;

/* Keeps the first unexpected status of a loop, so the loop runs on and the
 * log shows the whole picture before the test fails. */
static void note_unexpected(long long *count, char *buf, size_t cap, redtls_conn *c, redtls_status st)
{
    if ((*count)++ == 0) {
        snprintf(buf, cap, "%d (%s): %s", (int)st, redtls_strerror(st), redtls_conn_errmsg(c));
    }
}

static void epoch_incr(epoch *e, const char *key, int server_may_be_down)
{
    long long ms;
    redtls_status st = CALL(t.conn, &ms, "INCR", key);
    if (ms > e->max_ms) {
        e->max_ms = ms;
    }
    assert_in_range(ms, 0, COMMAND_MS + SLACK_MS);
    if (st == REDTLS_OK) {
        long long v = redtls_reply_integer(t.reply);
        assert_int_equal(redtls_reply_type(t.reply), REDTLS_REPLY_INTEGER);
        if (v <= e->last || v - e->last - 1 > e->since_ok_unknown) {
            print_error("INCR returned %lld after %lld with %lld unknown outcomes in between\n", v, e->last,
                        e->since_ok_unknown);
            fail();
        }
        e->last = v;
        e->ok++;
        e->since_ok_unknown = 0;
    } else if (st == REDTLS_E_OUTCOME_UNKNOWN) {
        e->unknown++;
        e->since_ok_unknown++;
    } else if (st != REDTLS_E_UNAVAILABLE && st != REDTLS_E_CONNECT) {
        /* A refused loopback connect never times out: CONNECT_TIMEOUT here
         * would mean no address was even tried. */
        note_unexpected(&e->unexpected, e->first_unexpected, sizeof e->first_unexpected, t.conn, st);
    } else {
        if (!server_may_be_down) {
            print_error("INCR failed with %s while the server was up: %s\n", redtls_strerror(st),
                        redtls_conn_errmsg(t.conn));
            fail();
        }
        e->not_sent++;
    }
}

static void test_server_restart(void **state)
{
    pthread_t killer;
    epoch before = {0}, after = {0};
    long long down_at, restarted_at, recovered_at = 0, c;
    size_t ev_restart;
    (void)state;
    assert_int_equal(lab_redis_start(&t.srv, &redis_opts), 0);
    make_cfg(t.srv.port);
    connect_main();

    atomic_store(&killed, 0);
    assert_int_equal(pthread_create(&killer, NULL, kill_later, NULL), 0);
    while (!atomic_load(&killed)) {
        epoch_incr(&before, "a:ctr", 1);
    }
    down_at = lab_now_ms();
    /* Keep calling while the server is down. */
    while (lab_now_ms() - down_at < 400) {
        epoch_incr(&before, "a:ctr", 1);
    }
    pthread_join(killer, NULL);
    print_message("before kill/down: ok=%lld unknown=%lld not_sent=%lld unexpected=%lld last=%lld max call %lld ms\n",
                  before.ok, before.unknown, before.not_sent, before.unexpected, before.last, before.max_ms);
    if (before.unexpected > 0) {
        print_message("  first unexpected status: %s\n", before.first_unexpected);
    }
    assert_true(before.ok > 0);
    assert_true(before.not_sent > 0);

    /* The data is gone with the process: a fresh epoch starts. */
    assert_int_equal(lab_redis_restart(&t.srv, &redis_opts), 0);
    restarted_at = lab_now_ms();
    ev_restart = t.nevents;
    while (after.ok == 0 && lab_now_ms() - restarted_at < 3000) {
        epoch_incr(&after, "a:ctr", 1);
        if (after.ok > 0) {
            recovered_at = lab_now_ms();
        }
    }
    assert_true(after.ok > 0);
    for (int i = 0; i < 50; i++) {
        epoch_incr(&after, "a:ctr", 0);
    }
    admin_open(t.srv.port);
    c = admin_counter("a:ctr");
    print_message("after restart: recovered in %lld ms, ok=%lld unknown=%lld not_sent=%lld counter=%lld\n",
                  recovered_at - restarted_at, after.ok, after.unknown, after.not_sent, c);
    assert_in_range(c, after.ok, after.ok + after.unknown);
    assert_true(ev_find(REDTLS_EVENT_CONNECTED, ev_restart) >= 0);
    if (after.unexpected > 0) {
        print_message("  first unexpected status after restart: %s\n", after.first_unexpected);
    }
    assert_int_equal(before.unexpected + after.unexpected, 0);
    assert_int_equal(redtls_conn_is_connected(t.conn), 1);
}

/* ---- b. CLIENT KILL of an idle connection ------------------------------- */

static long long client_id(redtls_conn *c)
{
    CALL_OK(c, "CLIENT", "ID");
    assert_int_equal(redtls_reply_type(t.reply), REDTLS_REPLY_INTEGER);
    return redtls_reply_integer(t.reply);
}

static void kill_client(long long id)
{
    char ids[32];
    snprintf(ids, sizeof ids, "%lld", id);
    CALL_OK(t.admin, "CLIENT", "KILL", "ID", ids);
    assert_int_equal(redtls_reply_integer(t.reply), 1);
    /* Let the FIN (or close_notify) arrive before the next write. */
    lab_sleep_ms(30);
}

static void test_client_kill_idle(void **state)
{
    long long id1, id2, ms;
    long disc, conn_ev;
    (void)state;
    make_cfg(redis.port);
    connect_main();
    admin_open(redis.port);
    id1 = client_id(t.conn);
    kill_client(id1);
    t.nevents = 0;

    assert_conn_status(t.conn, CALL(t.conn, &ms, "CLIENT", "ID"), REDTLS_OK);
    id2 = redtls_reply_integer(t.reply);
    print_message("client id %lld -> %lld, transparent reconnect took %lld ms\n", id1, id2, ms);
    ev_print();
    assert_int_not_equal(id1, id2);
    disc = ev_find(REDTLS_EVENT_DISCONNECTED, 0);
    assert_true(disc >= 0);
    conn_ev = ev_find(REDTLS_EVENT_CONNECTED, (size_t)disc);
    assert_true(conn_ev > disc);
}

/* ---- c. SIGSTOP during a command ---------------------------------------- */

static void test_sigstop_timeout(void **state)
{
    long long ms;
    redtls_status st;
    (void)state;
    make_cfg(redis.port);
    connect_main();
    CALL_OK(t.conn, "SET", "c:y", "y-value");
    CALL_OK(t.conn, "DEL", "c:x");

    assert_int_equal(lab_signal(redis.pid, SIGSTOP), 0);
    st = CALL(t.conn, &ms, "INCR", "c:x");
    assert_int_equal(lab_signal(redis.pid, SIGCONT), 0);
    print_message("INCR on a stopped server: %s after %lld ms (timeout %d ms)\n", redtls_strerror(st), ms,
                  COMMAND_MS);
    assert_conn_status(t.conn, st, REDTLS_E_COMMAND_TIMEOUT);
    assert_in_range(ms, COMMAND_MS - 30, COMMAND_MS + SLACK_MS);
    assert_int_equal(redtls_conn_is_connected(t.conn), 0);

    /* The late ":1" of the INCR must never answer the GET. */
    assert_conn_status(t.conn, CALL(t.conn, &ms, "GET", "c:y"), REDTLS_OK);
    print_message("GET after SIGCONT: %lld ms\n", ms);
    assert_reply_str(t.reply, REDTLS_REPLY_STRING, "y-value");
    CALL_OK(t.conn, "GET", "c:y");
    assert_reply_str(t.reply, REDTLS_REPLY_STRING, "y-value");
    assert_true(ev_count(REDTLS_EVENT_DISCONNECTED) >= 1);
}

/* ---- d. outage longer than the deadline; reconnect limits --------------- */

static void test_outage_backoff(void **state)
{
    long long t0, ms, max_ms = 0, restarted_at, recovered = -1;
    unsigned delays[256];
    size_t ndelays = 0, ev0;
    int connect_errs = 0, unavailable = 0, saw_wait = 0;
    long long unexpected = 0;
    char first_unexpected[300] = "";
    uint32_t max_wait = 0;
    unsigned maxd = 0;
    (void)state;
    assert_int_equal(lab_redis_start(&t.srv, &redis_opts), 0);
    make_cfg(t.srv.port);
    connect_main();
    CALL_OK(t.conn, "PING");
    ev0 = t.nevents;

    lab_stop(&t.srv); /* keeps t.srv.port for the restart */
    t0 = lab_now_ms();
    while (lab_now_ms() - t0 < 1500) {
        redtls_status st = CALL(t.conn, &ms, "PING");
        uint32_t wait = redtls_conn_next_attempt_ms(t.conn);
        if (st != REDTLS_E_UNAVAILABLE && st != REDTLS_E_CONNECT) {
            note_unexpected(&unexpected, first_unexpected, sizeof first_unexpected, t.conn, st);
        }
        connect_errs += st == REDTLS_E_CONNECT;
        unavailable += st == REDTLS_E_UNAVAILABLE;
        max_ms = ms > max_ms ? ms : max_ms;
        assert_in_range(ms, 0, COMMAND_MS + SLACK_MS);
        if (wait > 0) {
            assert_int_not_equal(wait, UINT32_MAX);
            saw_wait = 1;
            max_wait = wait > max_wait ? wait : max_wait;
        }
    }
    for (size_t i = ev0; i < t.nevents && ndelays < 256; i++) {
        unsigned d;
        if (t.events[i].type == REDTLS_EVENT_RECONNECT_SCHEDULED &&
            sscanf(t.events[i].detail, "next attempt in %u ms", &d) == 1) {
            delays[ndelays++] = d;
        }
    }
    print_message("1.5 s outage: %d CONNECT, %d UNAVAILABLE, %lld other, longest call %lld ms, max "
                  "next_attempt %u ms\n",
                  connect_errs, unavailable, unexpected, max_ms, max_wait);
    if (unexpected > 0) {
        print_message("  first other status: %s\n", first_unexpected);
    }
    print_message("backoff delays (ms):");
    for (size_t i = 0; i < ndelays; i++) {
        print_message(" %u", delays[i]);
        maxd = delays[i] > maxd ? delays[i] : maxd;
    }
    print_message("\n");
    assert_true(saw_wait);
    /* A call makes as many attempts as fit in its deadline. */
    assert_true(connect_errs >= 2);
    assert_true(ndelays >= 5);
    for (size_t i = 0; i < ndelays; i++) {
        unsigned prev = i == 0 ? BACKOFF_BASE_MS : delays[i - 1];
        unsigned hi = 3 * prev < BACKOFF_CAP_MS ? 3 * prev : BACKOFF_CAP_MS;
        assert_in_range(delays[i], BACKOFF_BASE_MS, hi < BACKOFF_BASE_MS ? BACKOFF_BASE_MS : hi);
    }
    /* Decorrelated jitter grows (x1.5 per step on average) towards the cap. */
    assert_true(maxd >= 3 * BACKOFF_BASE_MS);

    assert_int_equal(lab_redis_restart(&t.srv, &redis_opts), 0);
    restarted_at = lab_now_ms();
    while (lab_now_ms() - restarted_at < 3000) {
        redtls_status st = CALL(t.conn, &ms, "PING");
        if (st == REDTLS_OK) {
            recovered = lab_now_ms() - restarted_at;
            break;
        }
        ASSERT_STATUS_IN(t.conn, st, REDTLS_E_UNAVAILABLE, REDTLS_E_CONNECT);
    }
    print_message("recovered %lld ms after the restart (cap %d ms)\n", recovered, BACKOFF_CAP_MS);
    assert_in_range(recovered, 0, BACKOFF_CAP_MS + COMMAND_MS);
    assert_reply_str(t.reply, REDTLS_REPLY_STATUS, "PONG");
    /* A refused loopback connect never times out. */
    assert_int_equal(unexpected, 0);
}

/* A cap above the command timeout: calls do not wait for an attempt that is
 * due after their deadline, they fail at once. */
static void test_outage_fails_fast(void **state)
{
    long long ms, fast_max = 0;
    int unavailable = 0;
    (void)state;
    assert_int_equal(lab_redis_start(&t.srv, &redis_opts), 0);
    make_cfg(t.srv.port);
    assert_cfg_status(t.cfg, redtls_config_set_command_timeout_ms(t.cfg, 100), REDTLS_OK);
    assert_cfg_status(t.cfg, redtls_config_set_backoff(t.cfg, 300, 1000), REDTLS_OK);
    connect_main();
    CALL_OK(t.conn, "PING");
    lab_stop(&t.srv);
    for (int i = 0; i < 20; i++) {
        redtls_status st = CALL(t.conn, &ms, "PING");
        ASSERT_STATUS_IN(t.conn, st, REDTLS_E_UNAVAILABLE, REDTLS_E_CONNECT);
        if (st == REDTLS_E_UNAVAILABLE) {
            unavailable++;
            fast_max = ms > fast_max ? ms : fast_max;
            assert_true(redtls_conn_next_attempt_ms(t.conn) > 0);
        }
        assert_in_range(ms, 0, 100 + SLACK_MS);
    }
    print_message("UNAVAILABLE %d of 20 calls, slowest %lld ms\n", unavailable, fast_max);
    assert_true(unavailable >= 10);
    assert_in_range(fast_max, 0, 50);
}

/* The proxy in front counts the attempts: it accepts each one and, with
 * the server gone, resets it. */
static void test_reconnect_limits(void **state)
{
    long long ms;
    int calls = 0;
    unsigned long long base, attempts;
    redtls_status st;
    (void)state;
    assert_int_equal(lab_redis_start(&t.srv, &redis_opts), 0);
    assert_int_equal(lab_proxy_start(&t.proxy, t.srv.port), 0);
    make_cfg(t.proxy.port);
    assert_cfg_status(t.cfg, redtls_config_set_reconnect_limits(t.cfg, 3, 0), REDTLS_OK);
    connect_main();
    CALL_OK(t.conn, "PING");
    lab_stop(&t.srv);
    /* The server's close reaches the client through the proxy: until the
     * proxy has closed its side, the next PING may still be written on the
     * old connection and honestly end OUTCOME_UNKNOWN. The test is about
     * the attempts that follow, so it waits for that close first. */
    for (int i = 0; i < 200 && lab_proxy_get_stats(&t.proxy).active > 0; i++) {
        lab_sleep_ms(10);
    }
    assert_int_equal(lab_proxy_get_stats(&t.proxy).active, 0);
    base = lab_proxy_get_stats(&t.proxy).accepted;

    while (calls < 30 && redtls_conn_next_attempt_ms(t.conn) != UINT32_MAX) {
        st = CALL(t.conn, &ms, "PING");
        /* The proxy's reset can beat the end of connect() or come during
         * the handshake. */
        ASSERT_STATUS_IN(t.conn, st, REDTLS_E_UNAVAILABLE, REDTLS_E_CONNECT, REDTLS_E_IO, REDTLS_E_EOF, REDTLS_E_TLS);
        calls++;
    }
    attempts = lab_proxy_get_stats(&t.proxy).accepted - base;
    print_message("gave up after %d calls and %llu attempts (%zu RECONNECT_SCHEDULED); last: %s\n", calls,
                  attempts, ev_count(REDTLS_EVENT_RECONNECT_SCHEDULED), redtls_conn_errmsg(t.conn));
    assert_int_equal(redtls_conn_next_attempt_ms(t.conn), UINT32_MAX);
    assert_int_equal(attempts, 3);

    assert_conn_status(t.conn, CALL(t.conn, &ms, "PING"), REDTLS_E_UNAVAILABLE);
    print_message("after giving up: UNAVAILABLE in %lld ms\n", ms);
    assert_in_range(ms, 0, 50);

    assert_int_equal(lab_redis_restart(&t.srv, &redis_opts), 0);
    assert_conn_status(t.conn, CALL(t.conn, &ms, "PING"), REDTLS_E_UNAVAILABLE);
    print_message("server back, still given up: UNAVAILABLE in %lld ms\n", ms);
    assert_in_range(ms, 0, 50);
    assert_int_equal(redtls_conn_next_attempt_ms(t.conn), UINT32_MAX);
    /* Given up means no attempt at all, not even a fast one. */
    assert_int_equal(lab_proxy_get_stats(&t.proxy).accepted - base, 3);

    assert_conn_status(t.conn, redtls_conn_connect(t.conn), REDTLS_OK);
    assert_int_equal(redtls_conn_next_attempt_ms(t.conn), 0);
    CALL_OK(t.conn, "PING");
    assert_reply_str(t.reply, REDTLS_REPLY_STATUS, "PONG");
}

/* ---- e. proxy faults ----------------------------------------------------- */

static void proxy_conn_up(void)
{
    assert_int_equal(lab_proxy_start(&t.proxy, redis.port), 0);
    make_cfg(t.proxy.port);
    connect_main();
    CALL_OK(t.conn, "PING");
    admin_open(redis.port);
}

static void test_cut_client_to_server(void **state)
{
    (void)state;
    proxy_conn_up();
    CALL_OK(t.admin, "DEL", "e:k");
    /* 20 bytes: inside the command's TLS record (at least 22 bytes). */
    lab_proxy_set(&t.proxy, &(lab_fault){.kind = LAB_FAULT_CUT, .dir = LAB_C2S, .after = 20, .rst = 1, .once = 1});
    assert_conn_status(t.conn, CALL(t.conn, NULL, "INCR", "e:k"), REDTLS_E_OUTCOME_UNKNOWN);
    print_message("c2s cut: %s\n", redtls_conn_errmsg(t.conn));
    /* Half a TLS record is never decrypted: it did not run this time. */
    assert_int_equal(admin_counter("e:k"), 0);
    CALL_OK(t.conn, "PING");
    assert_int_equal(lab_proxy_get_stats(&t.proxy).cuts, 1);
}

static void test_cut_server_to_client(void **state)
{
    (void)state;
    proxy_conn_up();
    CALL_OK(t.admin, "DEL", "e:k");
    lab_proxy_set(&t.proxy, &(lab_fault){.kind = LAB_FAULT_CUT, .dir = LAB_S2C, .after = 10, .once = 1});
    assert_conn_status(t.conn, CALL(t.conn, NULL, "INCR", "e:k"), REDTLS_E_OUTCOME_UNKNOWN);
    print_message("s2c cut (FIN): %s\n", redtls_conn_errmsg(t.conn));
    assert_int_equal(admin_counter("e:k"), 1);
    /* Reconnect first: the next fault would otherwise hit the handshake. */
    CALL_OK(t.conn, "PING");

    lab_proxy_set(&t.proxy, &(lab_fault){.kind = LAB_FAULT_CUT, .dir = LAB_S2C, .after = 3, .rst = 1, .once = 1});
    assert_conn_status(t.conn, CALL(t.conn, NULL, "INCR", "e:k"), REDTLS_E_OUTCOME_UNKNOWN);
    print_message("s2c cut (RST): %s\n", redtls_conn_errmsg(t.conn));
    assert_int_equal(admin_counter("e:k"), 2);
    CALL_OK(t.conn, "INCR", "e:k");
    assert_int_equal(redtls_reply_integer(t.reply), 3);
}

static void test_cut_in_tls_record(void **state)
{
    (void)state;
    proxy_conn_up();
    CALL_OK(t.admin, "DEL", "e:k");
    lab_proxy_set(&t.proxy, &(lab_fault){.kind = LAB_FAULT_CUT_IN_RECORD, .after = 3, .once = 1});
    assert_conn_status(t.conn, CALL(t.conn, NULL, "INCR", "e:k"), REDTLS_E_OUTCOME_UNKNOWN);
    print_message("cut inside a TLS record (FIN): %s\n", redtls_conn_errmsg(t.conn));
    CALL_OK(t.conn, "PING");
    lab_proxy_set(&t.proxy, &(lab_fault){.kind = LAB_FAULT_CUT_IN_RECORD, .after = 1, .rst = 1, .once = 1});
    assert_conn_status(t.conn, CALL(t.conn, NULL, "INCR", "e:k"), REDTLS_E_OUTCOME_UNKNOWN);
    print_message("cut inside a TLS record (RST): %s\n", redtls_conn_errmsg(t.conn));
    assert_int_equal(admin_counter("e:k"), 2);
    assert_int_equal(lab_proxy_get_stats(&t.proxy).cuts, 2);
    CALL_OK(t.conn, "PING");
}

static void test_delay_and_trickle(void **state)
{
    long long ms;
    lab_proxy_stats before;
    (void)state;
    proxy_conn_up();
    lab_proxy_set(&t.proxy, &(lab_fault){.kind = LAB_FAULT_DELAY, .delay_ms = 60});
    assert_conn_status(t.conn, CALL(t.conn, &ms, "PING"), REDTLS_OK);
    print_message("60 ms delay each way: PING took %lld ms\n", ms);
    assert_in_range(ms, 115, COMMAND_MS);

    /* A reply of ~30 bytes at one byte per 100 ms needs 3 s: partial
     * progress must not push the deadline out. (At 100 ms, not 200, the
     * two bytes checked below arrive with time to spare before the
     * deadline even when the proxy is scheduled late.) */
    lab_proxy_set(&t.proxy, &(lab_fault){.kind = LAB_FAULT_TRICKLE, .dir = LAB_S2C, .delay_ms = 100});
    before = lab_proxy_get_stats(&t.proxy);
    assert_conn_status(t.conn, CALL(t.conn, &ms, "PING"), REDTLS_E_COMMAND_TIMEOUT);
    print_message("trickle 1 byte / 100 ms: COMMAND_TIMEOUT after %lld ms, %llu reply bytes had arrived\n", ms,
                  lab_proxy_get_stats(&t.proxy).s2c - before.s2c);
    assert_in_range(ms, COMMAND_MS - 30, COMMAND_MS + SLACK_MS);
    assert_true(lab_proxy_get_stats(&t.proxy).s2c - before.s2c >= 2);
    assert_int_equal(redtls_conn_is_connected(t.conn), 0);

    lab_proxy_set(&t.proxy, NULL);
    CALL_OK(t.conn, "ECHO", "after-trickle");
    assert_reply_str(t.reply, REDTLS_REPLY_STRING, "after-trickle");
}

static void test_no_answer_handshake_timeout(void **state)
{
    long long t0, ms;
    (void)state;
    assert_int_equal(lab_proxy_start(&t.proxy, redis.port), 0);
    make_cfg(t.proxy.port);
    lab_proxy_set(&t.proxy, &(lab_fault){.kind = LAB_FAULT_NO_ANSWER});
    t.conn = new_conn();
    t0 = lab_now_ms();
    assert_conn_status(t.conn, redtls_conn_connect(t.conn), REDTLS_E_HANDSHAKE_TIMEOUT);
    ms = lab_now_ms() - t0;
    print_message("accept-and-never-answer: HANDSHAKE_TIMEOUT after %lld ms (limit %d ms)\n", ms, HANDSHAKE_MS);
    assert_in_range(ms, HANDSHAKE_MS - 30, HANDSHAKE_MS + SLACK_MS);
    assert_int_equal(redtls_conn_is_connected(t.conn), 0);

    lab_proxy_set(&t.proxy, &(lab_fault){.kind = LAB_FAULT_BLACKHOLE});
    t0 = lab_now_ms();
    assert_conn_status(t.conn, redtls_conn_connect(t.conn), REDTLS_E_HANDSHAKE_TIMEOUT);
    print_message("black hole: HANDSHAKE_TIMEOUT after %lld ms\n", lab_now_ms() - t0);
}

/* ---- f. at-most-once accounting under random cuts ------------------------ */

static void arm_random_cut(void)
{
    if (lab_prng(&prng_state) % 10 == 0) {
        lab_fault f = {.kind = LAB_FAULT_CUT, .once = 1};
        f.dir = lab_prng(&prng_state) % 2 ? LAB_C2S : LAB_S2C;
        f.after = 20 + lab_prng(&prng_state) % 381;
        f.rst = (int)(lab_prng(&prng_state) % 2);
        lab_proxy_set(&t.proxy, &f);
    }
}

static void test_accounting(void **state)
{
    long long ok = 0, unknown = 0, not_sent = 0, last = 0, c, t0;
    uint64_t seed = lab_seed();
    lab_proxy_stats st;
    (void)state;
    proxy_conn_up();
    CALL_OK(t.admin, "DEL", "f:ctr");
    prng_state = seed;
    t0 = lab_now_ms();
    for (int i = 0; i < ACCOUNTING_N; i++) {
        redtls_status s;
        arm_random_cut();
        s = CALL(t.conn, NULL, "INCR", "f:ctr");
        if (s == REDTLS_OK) {
            long long v = redtls_reply_integer(t.reply);
            /* One sequential client: every OK value is new and larger, so
             * no execution was ever reported twice. */
            if (v <= last) {
                print_error("INCR %d returned %lld after %lld\n", i, v, last);
                fail();
            }
            last = v;
            ok++;
        } else if (s == REDTLS_E_OUTCOME_UNKNOWN) {
            unknown++;
        } else {
            ASSERT_STATUS_IN(t.conn, s, NOT_SENT);
            not_sent++;
        }
    }
    lab_proxy_set(&t.proxy, NULL);
    c = admin_counter("f:ctr");
    st = lab_proxy_get_stats(&t.proxy);
    print_message("seed %#llx: %d INCRs in %lld ms: ok S=%lld unknown U=%lld not sent=%lld; counter C=%lld; "
                  "proxy: %llu connections, %llu cuts\n",
                  (unsigned long long)seed, ACCOUNTING_N, lab_now_ms() - t0, ok, unknown, not_sent, c,
                  st.accepted, st.cuts);
    assert_int_equal(ok + unknown + not_sent, ACCOUNTING_N);
    assert_in_range(c, ok, ok + unknown);
    assert_true(st.cuts >= 10);
    assert_true(unknown >= 1);
}

static void test_idempotent_resend(void **state)
{
    long long ok = 0, not_sent = 0, resent = 0;
    const char *last_ok = NULL;
    char vals[IDEMPOTENT_N][16];
    lab_proxy_stats st;
    (void)state;
    proxy_conn_up();
    prng_state = lab_seed() ^ 0x1de7;
    for (int i = 0; i < IDEMPOTENT_N; i++) {
        const char *argv[3];
        redtls_status s;
        size_t ev0;
        arm_random_cut();
        snprintf(vals[i], sizeof vals[i], "v%d", i);
        argv[0] = "SET";
        argv[1] = "f:idem";
        argv[2] = vals[i];
        ev0 = t.nevents;
        s = callv(t.conn, REDTLS_CMD_IDEMPOTENT, NULL, 3, argv);
        if (s == REDTLS_OK) {
            assert_reply_str(t.reply, REDTLS_REPLY_STATUS, "OK");
            ok++;
            last_ok = vals[i];
            resent += ev_find(REDTLS_EVENT_DISCONNECTED, ev0) >= 0;
        } else {
            /* Never OUTCOME_UNKNOWN for an idempotent command. */
            ASSERT_STATUS_IN(t.conn, s, NOT_SENT);
            not_sent++;
        }
    }
    lab_proxy_set(&t.proxy, NULL);
    st = lab_proxy_get_stats(&t.proxy);
    print_message("%d idempotent SETs: ok=%lld (%lld after a broken connection) not sent=%lld; proxy: %llu "
                  "connections, %llu cuts\n",
                  IDEMPOTENT_N, ok, resent, not_sent, st.accepted, st.cuts);
    assert_non_null(last_ok);
    CALL_OK(t.admin, "GET", "f:idem");
    assert_reply_str(t.reply, REDTLS_REPLY_STRING, last_ok);
    assert_true(st.cuts >= 5);
    assert_true(resent >= 1);
}

/* ---- g. pipeline through a cut ------------------------------------------ */

static void pipeline_through(const lab_fault *f, int expect_all_unknown)
{
    int ok = 0, unknown = 0;
    long long before, c;
    before = admin_counter("g:ctr");
    lab_proxy_set(&t.proxy, f);
    for (int i = 0; i < PIPELINE_N; i++) {
        assert_conn_status(t.conn, redtls_conn_append_argv(t.conn, ARGS("INCR", "g:ctr"), NULL), REDTLS_OK);
    }
    assert_int_equal(redtls_conn_pending(t.conn), PIPELINE_N);
    for (int i = 0; i < PIPELINE_N; i++) {
        redtls_status s;
        redtls_reply_free(t.reply);
        t.reply = NULL;
        s = redtls_conn_get_reply(t.conn, &t.reply);
        if (s == REDTLS_OK) {
            assert_int_equal(redtls_reply_integer(t.reply), before + ok + 1);
            ok++;
        } else {
            assert_conn_status(t.conn, s, REDTLS_E_OUTCOME_UNKNOWN);
            assert_null(t.reply);
            unknown++;
        }
        assert_int_equal(redtls_conn_pending(t.conn), (size_t)(PIPELINE_N - i - 1));
    }
    assert_conn_status(t.conn, redtls_conn_get_reply(t.conn, &t.reply), REDTLS_E_STATE);
    c = admin_counter("g:ctr") - before;
    print_message("pipeline of %d through a %s cut after %zu bytes: ok=%d unknown=%d, executed=%lld\n",
                  PIPELINE_N, f->dir == LAB_C2S ? "client->server" : "server->client", f->after, ok, unknown, c);
    assert_int_equal(ok + unknown, PIPELINE_N);
    if (expect_all_unknown) {
        assert_int_equal(unknown, PIPELINE_N);
    }
    assert_in_range(c, ok, PIPELINE_N);
    CALL_OK(t.conn, "PING");
}

static void test_pipeline_cut(void **state)
{
    (void)state;
    proxy_conn_up();
    CALL_OK(t.admin, "DEL", "g:ctr");
    pipeline_through(&(lab_fault){.kind = LAB_FAULT_CUT, .dir = LAB_S2C, .after = 0, .once = 1}, 1);
    pipeline_through(&(lab_fault){.kind = LAB_FAULT_CUT, .dir = LAB_C2S, .after = 200, .rst = 1, .once = 1}, 1);
    pipeline_through(&(lab_fault){.kind = LAB_FAULT_CUT, .dir = LAB_S2C, .after = 60, .once = 1}, 0);
}

/* ---- h. TLS session resumption ------------------------------------------ */

/* The CONNECTED event of the last reconnect says how it was made. */
static const char *last_connected_detail(size_t from)
{
    const char *d = NULL;
    for (size_t i = from; i < t.nevents; i++) {
        if (t.events[i].type == REDTLS_EVENT_CONNECTED) {
            d = t.events[i].detail;
        }
    }
    return d;
}

static void check_reconnect(const char *how, int want_resumed)
{
    const char *detail;
    print_message("  %s: resumed=%d, %s, event \"%s\"\n", how, redtls_conn_tls_resumed(t.conn),
                  redtls_conn_tls_version(t.conn), last_connected_detail(0) ? last_connected_detail(0) : "(none)");
    assert_int_equal(redtls_conn_tls_resumed(t.conn), want_resumed);
    detail = last_connected_detail(0);
    assert_contains(detail, want_resumed ? "resumed TLS session" : "full handshake");
}

static void resumption_cases(uint16_t port, const char *version, int resumption)
{
    long long id;
    assert_int_equal(lab_proxy_start(&t.proxy, port), 0);
    admin_open(port);

    make_cfg(port);
    if (!resumption) {
        assert_cfg_status(t.cfg, redtls_config_set_tls_session_resumption(t.cfg, 0), REDTLS_OK);
    }
    connect_main();
    assert_string_equal(redtls_conn_tls_version(t.conn), version);
    assert_int_equal(redtls_conn_tls_resumed(t.conn), 0);
    assert_contains(last_connected_detail(0), "full handshake");
    /* TLS 1.3 tickets arrive after the handshake: a round trip reads them. */
    CALL_OK(t.conn, "PING");

    redtls_conn_close(t.conn);
    t.nevents = 0;
    CALL_OK(t.conn, "PING");
    check_reconnect("close + command", resumption);

    id = client_id(t.conn);
    kill_client(id);
    t.nevents = 0;
    CALL_OK(t.conn, "PING");
    check_reconnect("CLIENT KILL", resumption);

    make_cfg(t.proxy.port);
    if (!resumption) {
        assert_cfg_status(t.cfg, redtls_config_set_tls_session_resumption(t.cfg, 0), REDTLS_OK);
    }
    connect_main();
    CALL_OK(t.conn, "PING");
    lab_proxy_cut_all(&t.proxy, 1);
    t.nevents = 0;
    CALL_OK(t.conn, "PING");
    check_reconnect("proxy cut (RST)", resumption);
    lab_proxy_cut_all(&t.proxy, 0);
    t.nevents = 0;
    CALL_OK(t.conn, "PING");
    check_reconnect("proxy cut (FIN)", resumption);
}

static void test_resumption_tls13(void **state)
{
    (void)state;
    resumption_cases(redis.port, "TLSv1.3", 1);
}

static void test_resumption_tls12(void **state)
{
    static const char *const tls12[] = {"--tls-protocols", "TLSv1.2", NULL};
    (void)state;
    assert_int_equal(lab_redis_start(&t.srv, &(lab_redis_opts){.tls = 1, .password = TOKEN, .extra = tls12}), 0);
    resumption_cases(t.srv.port, "TLSv1.2", 1);
}

static void test_resumption_off(void **state)
{
    (void)state;
    resumption_cases(redis.port, "TLSv1.3", 0);
}

/* ---- i. health check ----------------------------------------------------- */

/* The old connection goes silent (frozen), new ones work: the PING check
 * fails, the command runs once on a new connection. */
static void test_health_check_frozen(void **state)
{
    long long ms;
    (void)state;
    assert_int_equal(lab_proxy_start(&t.proxy, redis.port), 0);
    admin_open(redis.port);
    CALL_OK(t.admin, "DEL", "i:ctr");
    make_cfg(t.proxy.port);
    assert_cfg_status(t.cfg, redtls_config_set_health_check_ms(t.cfg, 50), REDTLS_OK);
    /* The health check's PING has half the command timeout; the new
     * connection (proxy, TLS handshake, AUTH) and the INCR get what is
     * left of it, which 500 ms made 250 ms: short under ASan on a loaded
     * machine. What is checked here is the outcome, not the budget. */
    const unsigned command_ms = 2000;
    assert_cfg_status(t.cfg, redtls_config_set_command_timeout_ms(t.cfg, command_ms), REDTLS_OK);
    connect_main();
    CALL_OK(t.conn, "PING");
    lab_sleep_ms(100);
    lab_proxy_freeze_all(&t.proxy);
    t.nevents = 0;
    assert_conn_status(t.conn, CALL(t.conn, &ms, "INCR", "i:ctr"), REDTLS_OK);
    print_message("frozen idle connection: INCR OK after %lld ms via a new connection\n", ms);
    ev_print();
    assert_int_equal(redtls_reply_integer(t.reply), 1);
    assert_int_equal(admin_counter("i:ctr"), 1);
    assert_true(ev_find(REDTLS_EVENT_DISCONNECTED, 0) >= 0);
    /* The PING waited its whole half of the timeout first. */
    assert_in_range(ms, command_ms / 2 - 1, 2 * command_ms + HANDSHAKE_MS + SLACK_MS);
}

/* Everything silent: the check fails and so does the reconnect; the
 * command was never written, so the outcome is known (not run). */
static void test_health_check_blackhole(void **state)
{
    long long ms;
    redtls_status st;
    (void)state;
    assert_int_equal(lab_proxy_start(&t.proxy, redis.port), 0);
    admin_open(redis.port);
    CALL_OK(t.admin, "DEL", "i:ctr");
    make_cfg(t.proxy.port);
    assert_cfg_status(t.cfg, redtls_config_set_health_check_ms(t.cfg, 50), REDTLS_OK);
    connect_main();
    CALL_OK(t.conn, "INCR", "i:ctr");
    lab_sleep_ms(100);
    lab_proxy_set(&t.proxy, &(lab_fault){.kind = LAB_FAULT_BLACKHOLE});
    st = CALL(t.conn, &ms, "INCR", "i:ctr");
    print_message("black hole after idle: %s after %lld ms: %s\n", redtls_strerror(st), ms,
                  redtls_conn_errmsg(t.conn));
    /* Not CONNECT_TIMEOUT: the proxy accepts every TCP connection at once. */
    ASSERT_STATUS_IN(t.conn, st, REDTLS_E_UNAVAILABLE, REDTLS_E_COMMAND_TIMEOUT, REDTLS_E_HANDSHAKE_TIMEOUT);
    assert_in_range(ms, 0, COMMAND_MS + HANDSHAKE_MS + SLACK_MS);
    /* Whatever the client wrote is still queued in the proxy: passing it on
     * now would run a written INCR. */
    lab_proxy_set(&t.proxy, NULL);
    lab_sleep_ms(100);
    assert_int_equal(admin_counter("i:ctr"), 1);
    CALL_OK(t.conn, "INCR", "i:ctr");
    assert_int_equal(redtls_reply_integer(t.reply), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_server_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_kill_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigstop_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outage_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outage_fails_fast, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_client_to_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_server_to_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_in_tls_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay_and_trickle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_answer_handshake_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accounting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_resend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resumption_tls13, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resumption_tls12, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resumption_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_check_frozen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_check_blackhole, setup, teardown),
    };
    return cmocka_run_group_tests_name("integration.resilience", tests, group_setup, group_teardown);
}

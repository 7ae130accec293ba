/* The asynchronous API (include/redtls/async.h) under the faults of
 * test_resilience.c: a TLS + AUTH redis-server reached through the fault
 * proxy (tests/harness/lab_proxy.h) while a stream of commands is in
 * flight, and the server restarted, its connection killed, the server
 * frozen, the proxy refusing for a while, trickling, or cutting the byte
 * stream at random points.
 *
 * The stream is units of three commands with values of their own:
 * SET k_i v_i and GET k_i (both REDTLS_CMD_IDEMPOTENT), then INCR of the
 * test's counter (at most once). Every callback is tallied: each must run
 * exactly once, a reply must be its own command's (SET +OK, GET v_i or nil
 * when the SET did not certainly run, INCR an integer), and the counter
 * read straight from the server must lie between the INCRs that succeeded
 * and those plus the ones whose outcome is unknown.
 *
 * The handle is driven by hand (poll on redtls_async_fd/_events/
 * _timeout_ms, then redtls_async_process) while faults are injected, and
 * drained with the built-in loop (redtls_async_run). Timing assertions are
 * only "no hang past a deadline" with slack; REDTLS_TEST_TIME_SCALE=N
 * stretches every deadline N times (valgrind). */
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <redtls/async.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_client.h"
#include "lab_proxy.h"

#define TOKEN "lab-AsyncRes-Token-2c7f19"
#define CONNECT_MS 1000
#define HANDSHAKE_MS 1000
#define BACKOFF_BASE_MS 20
#define BACKOFF_CAP_MS 200
/* Scheduling noise allowed on top of a deadline (loaded 2-core machines). */
#define SLACK_MS 1500
#define MAX_CMDS 20000
#define MAX_EVENTS 1024
/* The stream keeps this many commands queued or in flight (50 units). */
#define WINDOW 150

static long long scale = 1;
#define SCALED(ms) ((long long)(ms) * scale)

static lab_server redis; /* shared: TLS + requirepass TOKEN */
static const lab_redis_opts redis_opts = {.tls = 1, .password = TOKEN};

enum { K_SET, K_GET, K_INCR, K_ID, K_KILL };
static const char *const kind_name[] = {"SET", "GET", "INCR", "CLIENT ID", "CLIENT KILL"};

/* One command issued, and what its callback saw. */
typedef struct cmd {
    int kind;
    unsigned flags;
    int unit;
    int calls;
    int nil; /* GET: the key was missing */
    int bad; /* the reply was not this command's */
    redtls_status st;
    long long issued, done, ival;
    long long pass_at; /* pump(): when the process call that ran the callback began */
    char why[300]; /* the handle's message at the callback, or what was wrong */
} cmd;

typedef struct ev {
    redtls_event_type type;
    long long at;
    char detail[240];
} ev;

static struct {
    lab_server srv;  /* a server of the test's own (restarted) */
    lab_proxy proxy;
    redtls_config *cfg;
    redtls_async *ac;
    redtls_conn *admin; /* blocking, straight to the server */
    struct redisReply *reply;
    cmd *cmds;
    size_t ncmds;
    size_t callbacks;
    long long pass_at; /* pump(): just before its latest redtls_async_process */
    size_t doubles;
    int units;
    int feeding; /* pump() tops the stream up to WINDOW */
    int connects;
    redtls_status connect_st;
    char tag[64]; /* this test's keys: ar:<tag>:... */
    char ctr[96];
    ev events[MAX_EVENTS];
    size_t nevents;
} t;

static int group_setup(void **state)
{
    (void)state;
    scale = lab_time_scale();
    return lab_init_redis((unsigned)(85 * scale), &redis, &redis_opts);
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
    t.cmds = calloc(MAX_CMDS, sizeof *t.cmds);
    return t.cmds != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    /* Callbacks still owed run here (REDTLS_E_CLOSED): t.cmds must live. */
    redtls_async_free(t.ac);
    redtls_reply_free(t.reply);
    redtls_conn_free(t.admin);
    redtls_config_free(t.cfg);
    /* A test that failed while the shared server was frozen must not leave
     * it so. */
    lab_signal(redis.pid, SIGCONT);
    lab_proxy_stop(&t.proxy);
    lab_stop(&t.srv);
    free(t.cmds);
    memset(&t, 0, sizeof t);
    return 0;
}

static void on_event(void *userdata, redtls_event_type type, const char *detail)
{
    (void)userdata;
    if (t.nevents < MAX_EVENTS) {
        ev *e = &t.events[t.nevents++];
        e->type = type;
        e->at = lab_now_ms();
        snprintf(e->detail, sizeof e->detail, "%s", detail ? detail : "");
    }
}

/* Index of the first event of type at or after from whose detail holds
 * needle (NULL: any), or -1. */
static long ev_find(redtls_event_type type, size_t from, const char *needle)
{
    for (size_t i = from; i < t.nevents; i++)
        if (t.events[i].type == type && (!needle || strstr(t.events[i].detail, needle)))
            return (long)i;
    return -1;
}

static size_t ev_count(redtls_event_type type, size_t from)
{
    size_t n = 0;
    for (size_t i = from; i < t.nevents; i++)
        n += t.events[i].type == type;
    return n;
}

static void ev_print(size_t from, size_t max)
{
    for (size_t i = from; i < t.nevents && i < from + max; i++)
        print_message("    event %d: %s\n", (int)t.events[i].type, t.events[i].detail);
}

/* ---- the handle and the stream ----------------------------------------- */

static void on_connect(redtls_async *ac, redtls_status st, void *ud)
{
    (void)ac;
    (void)ud;
    t.connects++;
    t.connect_st = st;
}

static void unit_value(int unit, char *buf, size_t cap)
{
    snprintf(buf, cap, "v%d-%s", unit, t.tag);
}

static void describe(const struct redisReply *r, char *buf, size_t cap)
{
    size_t len = 0;
    const char *s = redtls_reply_str(r, &len);
    if (redtls_reply_type(r) == REDTLS_REPLY_INTEGER)
        snprintf(buf, cap, "integer %lld", redtls_reply_integer(r));
    else
        snprintf(buf, cap, "type %d \"%.*s\"", redtls_reply_type(r), s ? (int)(len > 100 ? 100 : len) : 6,
                 s ? s : "(null)");
}

/* Is r this command's reply? Never asserts: a longjmp out of a callback
 * would leave the library mid-pass. The verdict is checked afterwards. */
static void judge(cmd *m, const struct redisReply *r)
{
    size_t len = 0;
    const char *s = redtls_reply_str(r, &len);
    int type = redtls_reply_type(r);
    char want[96];
    switch (m->kind) {
    case K_SET:
        m->bad = !(type == REDTLS_REPLY_STATUS && s && len == 2 && memcmp(s, "OK", 2) == 0);
        break;
    case K_GET:
        unit_value(m->unit, want, sizeof want);
        m->nil = type == REDTLS_REPLY_NIL;
        m->bad = !m->nil && !(type == REDTLS_REPLY_STRING && s && len == strlen(want) && memcmp(s, want, len) == 0);
        break;
    case K_INCR:
    case K_ID:
        m->bad = type != REDTLS_REPLY_INTEGER;
        m->ival = redtls_reply_integer(r);
        break;
    case K_KILL:
        m->bad = !(type == REDTLS_REPLY_INTEGER && redtls_reply_integer(r) == 1);
        break;
    default:
        m->bad = 1;
    }
    if (m->bad) {
        char got[160];
        describe(r, got, sizeof got);
        snprintf(m->why, sizeof m->why, "%s got %s", kind_name[m->kind], got);
    }
}

static void on_reply(redtls_async *ac, redtls_status st, struct redisReply *r, void *ud)
{
    cmd *m = &t.cmds[(uintptr_t)ud];
    t.callbacks++;
    if (++m->calls > 1) {
        t.doubles++;
        redtls_reply_free(r);
        return;
    }
    m->st = st;
    m->done = lab_now_ms();
    m->pass_at = t.pass_at;
    if (st != REDTLS_OK) {
        snprintf(m->why, sizeof m->why, "%s", redtls_async_errmsg(ac));
        if (r) {
            m->bad = 1;
            snprintf(m->why, sizeof m->why, "a reply came with status %s", redtls_strerror(st));
        }
    } else if (!r) {
        m->bad = 1;
        snprintf(m->why, sizeof m->why, "REDTLS_OK without a reply");
    } else {
        judge(m, r);
    }
    redtls_reply_free(r);
}

static size_t issue(int kind, unsigned flags, int argc, const char **argv)
{
    if (t.ncmds >= MAX_CMDS)
        fail_msg("more than %d commands", MAX_CMDS);
    size_t i = t.ncmds;
    cmd *m = &t.cmds[i];
    memset(m, 0, sizeof *m);
    m->kind = kind;
    m->flags = flags;
    m->unit = t.units;
    m->issued = lab_now_ms();
    redtls_status st = redtls_async_command_argv(t.ac, flags, argc, argv, NULL, on_reply, (void *)(uintptr_t)i);
    if (st != REDTLS_OK)
        fail_msg("issuing %s: %s: %s", kind_name[kind], redtls_strerror(st), redtls_async_errmsg(t.ac));
    t.ncmds++;
    return i;
}

static void issue_unit(void)
{
    char key[128], val[96];
    snprintf(key, sizeof key, "ar:%s:k%d", t.tag, t.units);
    unit_value(t.units, val, sizeof val);
    issue(K_SET, REDTLS_CMD_IDEMPOTENT, 3, (const char *[]){"SET", key, val});
    issue(K_GET, REDTLS_CMD_IDEMPOTENT, 2, (const char *[]){"GET", key});
    issue(K_INCR, 0, 2, (const char *[]){"INCR", t.ctr});
    t.units++;
}

static void feed(void)
{
    while (t.feeding && redtls_async_pending(t.ac) + 3 <= WINDOW && t.ncmds + 3 + 100 <= MAX_CMDS)
        issue_unit();
}

/* Drives the handle by hand for up to ms, feeding the stream, until
 * until(arg) holds (NULL: the whole time). Returns whether it held. What
 * it issued last is written before it returns: a fault injected next
 * finds the window in flight, not queued. */
static int pump(long long ms, int (*until)(long long), long long arg)
{
    long long end = lab_now_ms() + ms;
    for (;;) {
        feed();
        if (until && until(arg)) {
            t.pass_at = lab_now_ms();
            assert_int_equal(redtls_async_process(t.ac, 0), REDTLS_OK);
            return 1;
        }
        long long now = lab_now_ms();
        if (now >= end)
            return until == NULL;
        int fd = redtls_async_fd(t.ac), evs = redtls_async_events(t.ac), to = redtls_async_timeout_ms(t.ac);
        long long wait = end - now;
        if (to >= 0 && to < wait)
            wait = to;
        if (wait > 20)
            wait = 20;
        struct pollfd p = {.fd = fd,
                           .events = (short)((evs & REDTLS_ASYNC_READ ? POLLIN : 0) |
                                             (evs & REDTLS_ASYNC_WRITE ? POLLOUT : 0)),
                           .revents = 0};
        int got = 0;
        if (poll(&p, fd >= 0 && evs ? 1 : 0, (int)wait) > 0) {
            got |= p.revents & (POLLIN | POLLHUP | POLLERR) ? REDTLS_ASYNC_READ : 0;
            got |= p.revents & POLLOUT ? REDTLS_ASYNC_WRITE : 0;
        }
        t.pass_at = lab_now_ms();
        assert_int_equal(redtls_async_process(t.ac, got), REDTLS_OK);
    }
}

static int callbacks_reach(long long n)
{
    return t.callbacks >= (size_t)n;
}

static int is_up(long long want)
{
    return redtls_async_is_connected(t.ac) == (int)want;
}

/* OK callbacks of commands issued at index from or later. */
static int ok_from_reach(long long from_and_n)
{
    size_t from = (size_t)(from_and_n >> 20), n = (size_t)(from_and_n & 0xfffff), ok = 0;
    for (size_t i = from; i < t.ncmds; i++)
        ok += t.cmds[i].calls == 1 && t.cmds[i].st == REDTLS_OK;
    return ok >= n;
}
#define OK_FROM(from, n) (((long long)(from) << 20) | (long long)(n))

/* Every callback owed, on the built-in loop, within a deadline. */
static void drain(long long ms)
{
    t.feeding = 0;
    long long t0 = lab_now_ms();
    redtls_status st = redtls_async_run(&t.ac, 1, (int)ms);
    if (st != REDTLS_OK)
        fail_msg("%zu callbacks still owed after %lld ms: %s", redtls_async_pending(t.ac), lab_now_ms() - t0,
                 redtls_async_errmsg(t.ac));
    assert_int_equal(redtls_async_pending(t.ac), 0);
}

static void make_cfg(uint16_t port, unsigned command_ms)
{
    redtls_config *cfg = NULL;
    lab_client_config(&cfg, "127.0.0.1", port, "ca.crt", TOKEN);
    lab_client_timeouts(cfg, (unsigned)SCALED(CONNECT_MS), (unsigned)SCALED(HANDSHAKE_MS), command_ms);
    assert_cfg_status(cfg, redtls_config_set_backoff(cfg, BACKOFF_BASE_MS, BACKOFF_CAP_MS), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_event_callback(cfg, on_event, NULL), REDTLS_OK);
    redtls_config_free(t.cfg);
    t.cfg = cfg;
}

/* The test's keys and counter, named after it. */
static void name_keys(const char *name)
{
    snprintf(t.tag, sizeof t.tag, "%s:%d:%lld", name, (int)getpid(), lab_now_ms());
    snprintf(t.ctr, sizeof t.ctr, "ar:%s:ctr", t.tag);
}

/* t.ac through port with that command timeout, connected. */
static void start_handle(const char *name, uint16_t port, unsigned command_ms)
{
    if (!t.tag[0])
        name_keys(name);
    make_cfg(port, command_ms);
    assert_cfg_status(t.cfg, redtls_async_new(t.cfg, &t.ac), REDTLS_OK);
    assert_int_equal(redtls_async_connect(t.ac, on_connect, NULL), REDTLS_OK);
    assert_true(pump(SCALED(10000), is_up, 1));
    assert_int_equal(t.connects, 1);
    assert_int_equal(t.connect_st, REDTLS_OK);
}

/* t.admin: a blocking, event-less connection straight to port. */
static void admin_open(uint16_t port)
{
    redtls_conn_free(t.admin);
    t.admin = NULL;
    lab_client_admin(&t.admin, "127.0.0.1", port, TOKEN, (unsigned)SCALED(5000));
}

#define ARGS(...) (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)), (const char *[]){__VA_ARGS__}
#define ADMIN(...)                                                                                       \
    do {                                                                                                 \
        redtls_reply_free(t.reply);                                                                      \
        t.reply = NULL;                                                                                  \
        assert_conn_status(t.admin, redtls_conn_command_argv(t.admin, ARGS(__VA_ARGS__), NULL, &t.reply), \
                           REDTLS_OK);                                                                   \
    } while (0)

/* The counter, read straight from the server (0 when missing). */
static long long admin_counter(void)
{
    ADMIN("GET", t.ctr);
    if (redtls_reply_type(t.reply) == REDTLS_REPLY_NIL)
        return 0;
    const char *s = redtls_reply_str(t.reply, NULL);
    assert_non_null(s);
    return strtoll(s, NULL, 10);
}

/* ---- what every test checks ---------------------------------------------- */

#define BIT(st) (1u << (unsigned)(st))

static const char *st_name(redtls_status st)
{
    return redtls_strerror(st);
}

static void print_cmd(size_t i)
{
    const cmd *m = &t.cmds[i];
    print_error("  command %zu (%s, unit %d, flags %u): %d callback(s), %s after %lld ms: %s\n", i,
                kind_name[m->kind], m->unit, m->flags, m->calls, st_name(m->st), m->done - m->issued, m->why);
}

/* Each callback exactly once, each reply its own command's, and a GET
 * finds nothing only when its SET did not certainly run (or ran on a
 * server whose data was lost before data_lost_at, 0: never). */
static void check_tally(long long data_lost_at)
{
    size_t bad = 0;
    for (size_t i = 0; i < t.ncmds; i++) {
        const cmd *m = &t.cmds[i];
        int wrong = m->calls != 1 || m->bad;
        if (!wrong && m->kind == K_GET && m->st == REDTLS_OK && m->nil) {
            const cmd *set = &t.cmds[i - 1];
            wrong = set->st == REDTLS_OK && !(data_lost_at && set->done < data_lost_at);
            if (wrong)
                snprintf(t.cmds[i].why, sizeof t.cmds[i].why, "GET found nothing after its SET succeeded");
        }
        if (wrong && bad++ < 10)
            print_cmd(i);
    }
    if (bad || t.doubles || t.callbacks != t.ncmds)
        fail_msg("%zu commands broke the rules; %zu callbacks for %zu commands (%zu repeated)", bad, t.callbacks,
                 t.ncmds, t.doubles);
}

/* Commands [from, to) of the stream ended with statuses in idem (SET, GET)
 * and incr (INCR). */
static void check_statuses(const char *phase, size_t from, size_t to, unsigned idem, unsigned incr)
{
    size_t bad = 0;
    for (size_t i = from; i < to; i++) {
        const cmd *m = &t.cmds[i];
        unsigned allowed = m->kind == K_INCR ? incr : m->kind == K_SET || m->kind == K_GET ? idem : BIT(REDTLS_OK);
        if (!(allowed & BIT(m->st)) && bad++ < 10)
            print_cmd(i);
    }
    if (bad)
        fail_msg("%s: %zu commands ended with a status not allowed there", phase, bad);
}

typedef struct counts {
    long long n[2][32]; /* [0]: SET and GET, [1]: INCR; by status */
} counts;

static counts count_statuses(size_t from, size_t to)
{
    counts c;
    memset(&c, 0, sizeof c);
    for (size_t i = from; i < to; i++) {
        const cmd *m = &t.cmds[i];
        if (m->kind <= K_INCR && (unsigned)m->st < 32)
            c.n[m->kind == K_INCR][m->st]++;
    }
    return c;
}

static void print_counts(const char *phase, size_t from, size_t to)
{
    counts c = count_statuses(from, to);
    print_message("%s: %zu commands\n", phase, to - from);
    for (int k = 0; k < 2; k++)
        for (int s = 0; s < 32; s++)
            if (c.n[k][s])
                print_message("    %-9s %-55s %lld\n", k ? "INCR" : "SET/GET", st_name((redtls_status)s), c.n[k][s]);
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

/* At most once: INCRs [from, to) against the counter's rise c - c0. Each
 * OK value is distinct (no reply twice, none to the wrong INCR) and the
 * rise lies between the successes S and S plus the unknown outcomes U
 * (written, connection lost or no reply in time). Returns S. */
static long long check_incr_accounting_after(const char *phase, size_t from, size_t to, long long done_after,
                                            long long c0, long long c)
{
    long long s = 0, u = 0, n = 0;
    long long *vals = calloc(to - from + 1, sizeof *vals);
    assert_non_null(vals);
    for (size_t i = from; i < to; i++) {
        const cmd *m = &t.cmds[i];
        if (m->kind != K_INCR || m->done <= done_after)
            continue;
        n++;
        if (m->st == REDTLS_OK)
            vals[s++] = m->ival;
        else if (m->st == REDTLS_E_OUTCOME_UNKNOWN || m->st == REDTLS_E_COMMAND_TIMEOUT)
            u++;
    }
    qsort(vals, (size_t)s, sizeof *vals, cmp_ll);
    for (long long i = 1; i < s; i++)
        if (vals[i] == vals[i - 1]) {
            long long v = vals[i];
            free(vals);
            fail_msg("%s: two INCRs were both told %lld", phase, v);
        }
    long long top = s ? vals[s - 1] : c0;
    free(vals);
    print_message("%s: %lld INCRs: ok S=%lld, unknown U=%lld, counter rose by C=%lld\n", phase, n, s, u, c - c0);
    assert_in_range(c - c0, s, s + u);
    assert_in_range(top, c0, c);
    return s;
}

static long long check_incr_accounting(const char *phase, size_t from, size_t to, long long c0, long long c)
{
    return check_incr_accounting_after(phase, from, to, 0, c0, c);
}

/* Every COMMAND_TIMEOUT of [from, to) came at its own deadline: not before
 * (no command ends because another did) and not long after (no hang). */
static void check_deadlines(size_t from, size_t to, long long command_ms)
{
    for (size_t i = from; i < to; i++) {
        const cmd *m = &t.cmds[i];
        if (m->st != REDTLS_E_COMMAND_TIMEOUT)
            continue;
        /* Both clocks are CLOCK_MONOTONIC in whole ms: allow their
         * rounding. */
        if (m->done - m->issued < command_ms - 2 || m->done - m->issued > command_ms + SCALED(SLACK_MS)) {
            print_cmd(i);
            fail_msg("COMMAND_TIMEOUT %lld ms after issue; the deadline was %lld ms", m->done - m->issued,
                     command_ms);
        }
    }
}

/* Commands of [from, to) issued at or after time at. */
static size_t first_issued_at(size_t from, long long at)
{
    while (from < t.ncmds && t.cmds[from].issued < at)
        from++;
    return from;
}

#define ONLY_OK BIT(REDTLS_OK)
#define OK_OR_UNKNOWN (BIT(REDTLS_OK) | BIT(REDTLS_E_OUTCOME_UNKNOWN))

/* ---- a. the server killed and restarted on the same port ----------------- */

static void test_server_restart(void **state)
{
    (void)state;
    const unsigned command_ms = (unsigned)SCALED(10000);
    assert_int_equal(lab_redis_start(&t.srv, &redis_opts), 0);
    assert_int_equal(lab_proxy_start(&t.proxy, t.srv.port), 0);
    start_handle("restart", t.proxy.port, command_ms);
    t.feeding = 1;
    assert_true(pump(SCALED(10000), callbacks_reach, 3 * WINDOW));

    /* Frozen first, so the window is written and certainly unanswered
     * when the process dies. */
    assert_int_equal(lab_signal(t.srv.pid, SIGSTOP), 0);
    pump(50, NULL, 0);
    size_t in_flight = redtls_async_pending(t.ac);
    size_t kill_cmd = t.ncmds;
    assert_int_equal(lab_signal(t.srv.pid, SIGKILL), 0);
    /* Down: the break is seen, the stream goes on into the queue. */
    pump(SCALED(300), NULL, 0);
    long long down_connected = redtls_async_is_connected(t.ac);

    size_t ev_restart = t.nevents;
    assert_int_equal(lab_redis_restart(&t.srv, &redis_opts), 0);
    long long restarted_at = lab_now_ms();
    size_t restart_cmd = t.ncmds;
    assert_true(pump(SCALED(15000), ok_from_reach, OK_FROM(restart_cmd, 3 * WINDOW)));
    long long recovered = -1;
    long ev_up = ev_find(REDTLS_EVENT_CONNECTED, ev_restart, NULL);
    if (ev_up >= 0)
        recovered = t.events[ev_up].at - restarted_at;
    drain(SCALED(command_ms + SLACK_MS));

    print_message("%zu commands queued or in flight when the server was killed; recovered %lld ms after the "
                  "restart\n",
                  in_flight, recovered);
    print_counts("before the kill", 0, kill_cmd);
    print_counts("issued while down", kill_cmd, restart_cmd);
    print_counts("issued after the restart", restart_cmd, t.ncmds);
    check_tally(restarted_at);
    assert_int_equal(down_connected, 0);
    assert_true(ev_up >= 0);
    /* Idempotent commands in flight were resent once and succeeded; those
     * queued while the server was down waited for it. */
    check_statuses("whole run", 0, t.ncmds, ONLY_OK, OK_OR_UNKNOWN);
    size_t resent = 0, lost_incr = 0;
    for (size_t i = 0; i < kill_cmd; i++) {
        const cmd *m = &t.cmds[i];
        resent += m->kind != K_INCR && m->done > restarted_at;
        lost_incr += m->kind == K_INCR && m->st == REDTLS_E_OUTCOME_UNKNOWN;
        if (m->st == REDTLS_E_OUTCOME_UNKNOWN)
            assert_contains(m->why, "may or may not have run");
    }
    print_message("issued before the kill: %zu idempotent commands completed after the restart, %zu INCRs lost\n",
                  resent, lost_incr);
    assert_true(in_flight > 0);
    assert_true(resent > 0);
    assert_true(lost_incr > 0);
    /* After the reconnection, everything new succeeds. */
    size_t after_up = first_issued_at(restart_cmd, t.events[ev_up].at + 1);
    check_statuses("issued after the reconnection", after_up, t.ncmds, ONLY_OK, ONLY_OK);
    /* The new process started from nothing: the counter counts the INCRs
     * that ran on it. */
    admin_open(t.srv.port);
    long long c = admin_counter();
    check_incr_accounting_after("after the restart", 0, t.ncmds, restarted_at, 0, c);
    assert_int_equal(redtls_async_is_connected(t.ac), 1);
}

/* ---- b. CLIENT KILL of the handle's connection ---------------------------- */

static long long async_client_id(void)
{
    size_t i = issue(K_ID, 0, 2, (const char *[]){"CLIENT", "ID"});
    drain(SCALED(5000));
    assert_int_equal(t.cmds[i].st, REDTLS_OK);
    return t.cmds[i].ival;
}

static void test_client_kill(void **state)
{
    (void)state;
    const unsigned command_ms = (unsigned)SCALED(5000);
    assert_int_equal(lab_proxy_start(&t.proxy, redis.port), 0);
    start_handle("kill", t.proxy.port, command_ms);
    admin_open(redis.port);
    long long id1 = async_client_id();
    long long c0 = admin_counter();

    /* Killed by another client in the middle of the stream. */
    t.feeding = 1;
    assert_true(pump(SCALED(10000), callbacks_reach, (long long)t.callbacks + 3 * WINDOW));
    size_t ev0 = t.nevents, kill_cmd = t.ncmds;
    char ids[32];
    snprintf(ids, sizeof ids, "%lld", id1);
    ADMIN("CLIENT", "KILL", "ID", ids);
    assert_int_equal(redtls_reply_integer(t.reply), 1);
    assert_true(pump(SCALED(10000), ok_from_reach, OK_FROM(kill_cmd, 3 * WINDOW)));
    drain(SCALED(command_ms + SLACK_MS));
    long long id2 = async_client_id();
    long disc = ev_find(REDTLS_EVENT_DISCONNECTED, ev0, NULL);
    print_message("client id %lld -> %lld\n", id1, id2);
    print_counts("killed by another client", 0, t.ncmds);
    ev_print(ev0, 6);
    check_tally(0);
    check_statuses("killed by another client", 0, t.ncmds, ONLY_OK, OK_OR_UNKNOWN);
    assert_int_not_equal(id1, id2);
    assert_true(disc >= 0);
    assert_true(ev_find(REDTLS_EVENT_CONNECTED, (size_t)disc, NULL) > disc);
    long long c = admin_counter();
    check_incr_accounting("killed by another client", 0, t.ncmds, c0, c);

    /* Killed by itself in the middle of one write: Redis answers the kill,
     * runs nothing after it and closes, so the ten units behind it are
     * certainly in flight and certainly unanswered. */
    size_t first = t.ncmds;
    c0 = c;
    for (int i = 0; i < 10; i++)
        issue_unit();
    snprintf(ids, sizeof ids, "%lld", id2);
    size_t kill = issue(K_KILL, 0, 6, (const char *[]){"CLIENT", "KILL", "ID", ids, "SKIPME", "no"});
    for (int i = 0; i < 10; i++)
        issue_unit();
    drain(SCALED(command_ms + SLACK_MS));
    print_counts("behind its own CLIENT KILL", kill + 1, t.ncmds);
    check_tally(0);
    check_statuses("before its own CLIENT KILL", first, kill + 1, ONLY_OK, ONLY_OK);
    /* Resent once on a new connection: the SETs before their GETs. */
    check_statuses("behind its own CLIENT KILL", kill + 1, t.ncmds, ONLY_OK, BIT(REDTLS_E_OUTCOME_UNKNOWN));
    c = admin_counter();
    assert_int_equal(check_incr_accounting("around its own CLIENT KILL", first, t.ncmds, c0, c), 10);
    assert_int_equal(c, c0 + 10);
    assert_int_not_equal(async_client_id(), id2);
}

/* ---- c. the server frozen for longer than the command timeout ------------ */

static void test_sigstop(void **state)
{
    (void)state;
    const long long command_ms = SCALED(600), stop_ms = SCALED(1500);
    assert_int_equal(lab_proxy_start(&t.proxy, redis.port), 0);
    name_keys("sigstop");
    admin_open(redis.port);
    long long c0 = admin_counter();
    start_handle("sigstop", t.proxy.port, (unsigned)command_ms);
    t.feeding = 1;
    assert_true(pump(SCALED(10000), callbacks_reach, 3 * WINDOW));

    size_t ev0 = t.nevents, stop_cmd = t.ncmds;
    assert_int_equal(lab_signal(redis.pid, SIGSTOP), 0);
    long long stop_at = lab_now_ms();
    pump(SCALED(300), NULL, 0);
    /* Ten more units, issued long after the server's last byte: the
     * silence rule closes the connection before their deadline. */
    size_t late_cmd = t.ncmds;
    for (int i = 0; i < 10; i++)
        issue_unit();
    size_t late_end = t.ncmds;
    pump(stop_at + stop_ms - lab_now_ms(), NULL, 0);
    long long was_connected = redtls_async_is_connected(t.ac);
    assert_int_equal(lab_signal(redis.pid, SIGCONT), 0);
    long long cont_at = lab_now_ms();
    size_t cont_cmd = t.ncmds, ev_cont = t.nevents;
    assert_true(pump(SCALED(10000), ok_from_reach, OK_FROM(cont_cmd, 3 * WINDOW)));
    drain(command_ms + SCALED(SLACK_MS));
    long ev_up = ev_find(REDTLS_EVENT_CONNECTED, ev_cont, NULL);

    print_counts("issued before the freeze", 0, stop_cmd);
    print_counts("issued in the first 300 ms of the freeze", stop_cmd, late_cmd);
    print_counts("issued 300 ms into the freeze", late_cmd, late_end);
    print_counts("issued after SIGCONT", cont_cmd, t.ncmds);
    ev_print(ev0, 8);
    check_tally(0);
    /* Each command ends at its own deadline, whatever the others do. */
    check_deadlines(0, t.ncmds, command_ms);
    long silence = ev_find(REDTLS_EVENT_DISCONNECTED, ev0, "sent nothing for");
    assert_true(silence >= 0);
    assert_int_equal(was_connected, 0);
    print_message("frozen at +0; the connection closed at +%lld ms: %s\n", t.events[silence].at - stop_at,
                  t.events[silence].detail);
    /* Not before a whole command timeout of silence: the last reply
     * handed over was read in a pass that began (the library's clock
     * read) after pump() stamped it, so the silence counted from no
     * earlier than that stamp. No allowance: the same monotonic clock,
     * however long the pass took. */
    long long last_pass = 0;
    for (size_t i = 0; i < t.ncmds; i++)
        if (t.cmds[i].st == REDTLS_OK && t.cmds[i].done < t.events[silence].at && t.cmds[i].pass_at > last_pass)
            last_pass = t.cmds[i].pass_at;
    assert_true(last_pass > 0);
    assert_true(t.events[silence].at - last_pass >= command_ms);
    /* Nothing answered while frozen: timed out in flight, lost with the
     * connection (INCR), or timed out waiting for a new one (the
     * idempotent ones lost were resent into the queue). */
    check_statuses("frozen", 0, cont_cmd, BIT(REDTLS_OK) | BIT(REDTLS_E_COMMAND_TIMEOUT),
                   BIT(REDTLS_OK) | BIT(REDTLS_E_COMMAND_TIMEOUT) | BIT(REDTLS_E_OUTCOME_UNKNOWN));
    /* Replies already on their way when the server stopped (in the
     * proxy, the sockets) can be read late when the test or the proxy is
     * scheduled late; none can come once the silence rule has closed the
     * connection, until SIGCONT. */
    for (size_t i = 0; i < cont_cmd; i++) {
        const cmd *m = &t.cmds[i];
        if (m->st == REDTLS_OK && m->done > t.events[silence].at && m->done < cont_at) {
            print_cmd(i);
            fail_msg("a reply from a frozen server");
        }
    }
    counts late = count_statuses(late_cmd, late_end);
    assert_int_equal(late.n[0][REDTLS_E_COMMAND_TIMEOUT], 20);
    assert_int_equal(late.n[1][REDTLS_E_OUTCOME_UNKNOWN] + late.n[1][REDTLS_E_COMMAND_TIMEOUT], 10);
    for (size_t i = late_cmd; i < late_end; i++) {
        const cmd *m = &t.cmds[i];
        if (m->st == REDTLS_E_OUTCOME_UNKNOWN)
            assert_contains(m->why, "sent nothing for");
        else if (m->kind != K_INCR)
            assert_contains(m->why, "not connected within the command timeout; the command was not sent");
    }
    /* Back after SIGCONT: reconnected, and what was issued after that
     * succeeded. */
    assert_true(ev_up >= 0);
    print_message("reconnected %lld ms after SIGCONT\n", t.events[ev_up].at - cont_at);
    size_t after_up = first_issued_at(cont_cmd, t.events[ev_up].at + 1);
    check_statuses("after the reconnection", after_up, t.ncmds, ONLY_OK, ONLY_OK);
    check_statuses("after SIGCONT", cont_cmd, t.ncmds, BIT(REDTLS_OK) | BIT(REDTLS_E_COMMAND_TIMEOUT),
                   BIT(REDTLS_OK) | BIT(REDTLS_E_COMMAND_TIMEOUT));
    long long c = admin_counter();
    check_incr_accounting("frozen server", 0, t.ncmds, c0, c);
}

/* ---- d. the proxy refusing: shorter, then longer than the timeout -------- */

/* Connections to the proxy are accepted and reset (nothing to forward
 * to); the current one is cut. */
static void outage_start(void)
{
    lab_proxy_retarget(&t.proxy, lab_unused_port());
    lab_proxy_cut_all(&t.proxy, 1);
}

static void test_outage_shorter_than_timeout(void **state)
{
    (void)state;
    const long long command_ms = SCALED(3000);
    assert_int_equal(lab_proxy_start(&t.proxy, redis.port), 0);
    name_keys("outage-short");
    admin_open(redis.port);
    long long c0 = admin_counter();
    start_handle("outage-short", t.proxy.port, (unsigned)command_ms);
    t.feeding = 1;
    assert_true(pump(SCALED(10000), callbacks_reach, 3 * WINDOW));

    size_t ev0 = t.nevents, cut_cmd = t.ncmds;
    unsigned long long accepted0 = lab_proxy_get_stats(&t.proxy).accepted;
    outage_start();
    assert_true(pump(SCALED(5000), is_up, 0));
    /* From here on nothing can be written until the outage ends: what is
     * issued waits in the queue. */
    size_t queued_cmd = t.ncmds;
    for (int i = 0; i < 10; i++)
        issue_unit();
    pump(400, NULL, 0);
    lab_proxy_retarget(&t.proxy, redis.port);
    size_t back_cmd = t.ncmds;
    assert_true(pump(SCALED(10000), ok_from_reach, OK_FROM(back_cmd, 3 * WINDOW)));
    drain(command_ms + SCALED(SLACK_MS));
    unsigned long long attempts = lab_proxy_get_stats(&t.proxy).accepted - accepted0;

    print_counts("issued before the cut", 0, cut_cmd);
    print_counts("issued between the cut and its discovery", cut_cmd, queued_cmd);
    print_counts("issued during the 400 ms outage", queued_cmd, back_cmd);
    print_message("%llu connection attempts, %zu RECONNECT_SCHEDULED\n", attempts,
                  ev_count(REDTLS_EVENT_RECONNECT_SCHEDULED, ev0));
    check_tally(0);
    check_statuses("whole run", 0, t.ncmds, ONLY_OK, OK_OR_UNKNOWN);
    assert_true(back_cmd - queued_cmd >= 3);
    check_statuses("queued during the outage", queued_cmd, back_cmd, ONLY_OK, ONLY_OK);
    check_statuses("after the outage", back_cmd, t.ncmds, ONLY_OK, ONLY_OK);
    assert_true(attempts >= 2);
    assert_true(ev_count(REDTLS_EVENT_RECONNECT_SCHEDULED, ev0) >= 1);
    long long c = admin_counter();
    check_incr_accounting("short outage", 0, t.ncmds, c0, c);
}

static void test_outage_longer_than_timeout(void **state)
{
    (void)state;
    const long long command_ms = SCALED(500);
    assert_int_equal(lab_proxy_start(&t.proxy, redis.port), 0);
    name_keys("outage-long");
    admin_open(redis.port);
    long long c0 = admin_counter();
    start_handle("outage-long", t.proxy.port, (unsigned)command_ms);
    t.feeding = 1;
    assert_true(pump(SCALED(10000), callbacks_reach, 3 * WINDOW));

    size_t ev0 = t.nevents, cut_cmd = t.ncmds;
    outage_start();
    assert_true(pump(SCALED(5000), is_up, 0));
    size_t queued_cmd = t.ncmds;
    long long down_at = lab_now_ms();
    /* Longer than a command timeout: the stream keeps issuing, and each
     * command gives up at its own deadline. */
    pump(command_ms + SCALED(700), NULL, 0);
    size_t back_cmd = t.ncmds;
    long long back_at = lab_now_ms();
    lab_proxy_retarget(&t.proxy, redis.port);
    assert_true(pump(SCALED(10000), ok_from_reach, OK_FROM(back_cmd, 3 * WINDOW)));
    drain(command_ms + SCALED(SLACK_MS));

    print_counts("issued before the cut", 0, cut_cmd);
    print_counts("issued between the cut and its discovery", cut_cmd, queued_cmd);
    print_counts("issued during the outage", queued_cmd, back_cmd);
    check_tally(0);
    check_deadlines(0, t.ncmds, command_ms);
    check_statuses("in flight at the cut", 0, queued_cmd, BIT(REDTLS_OK) | BIT(REDTLS_E_COMMAND_TIMEOUT),
                   BIT(REDTLS_OK) | BIT(REDTLS_E_OUTCOME_UNKNOWN) | BIT(REDTLS_E_COMMAND_TIMEOUT));
    /* Issued early enough in the outage to reach their deadline in it:
     * never sent, and the message names the last connect failure. */
    size_t timed_out = 0;
    for (size_t i = queued_cmd; i < back_cmd; i++) {
        const cmd *m = &t.cmds[i];
        if (m->issued + command_ms > back_at - 2)
            continue;
        if (m->st != REDTLS_E_COMMAND_TIMEOUT) {
            print_cmd(i);
            fail_msg("a command issued %lld ms into the outage did not time out", m->issued - down_at);
        }
        assert_contains(m->why, "not connected within the command timeout; the command was not sent");
        assert_contains(m->why, "last failure: ");
        assert_not_contains(m->why, "last failure: none yet");
        timed_out++;
    }
    print_message("%zu commands timed out in the outage, e.g.: %s\n", timed_out, t.cmds[queued_cmd].why);
    assert_true(timed_out >= 3);
    check_statuses("issued during the outage", queued_cmd, back_cmd, BIT(REDTLS_OK) | BIT(REDTLS_E_COMMAND_TIMEOUT),
                   BIT(REDTLS_OK) | BIT(REDTLS_E_COMMAND_TIMEOUT));
    check_statuses("after the outage", back_cmd, t.ncmds, ONLY_OK, ONLY_OK);
    assert_true(ev_count(REDTLS_EVENT_RECONNECT_SCHEDULED, ev0) >= 1);
    long long c = admin_counter();
    check_incr_accounting("long outage", 0, t.ncmds, c0, c);
}

/* ---- e. trickle ------------------------------------------------------------ */

static void test_trickle(void **state)
{
    (void)state;
    const long long command_ms = SCALED(20000);
    assert_int_equal(lab_proxy_start(&t.proxy, redis.port), 0);
    name_keys("trickle");
    admin_open(redis.port);
    long long c0 = admin_counter();
    start_handle("trickle", t.proxy.port, (unsigned)command_ms);

    /* One byte at a time both ways, a millisecond apart: commands and
     * replies arrive in pieces, TLS records too. */
    lab_proxy_stats s0 = lab_proxy_get_stats(&t.proxy);
    lab_proxy_set(&t.proxy, &(lab_fault){.kind = LAB_FAULT_TRICKLE, .dir = LAB_BOTH, .delay_ms = 1});
    long long t0 = lab_now_ms();
    for (int i = 0; i < 10; i++)
        issue_unit();
    drain(command_ms + SCALED(SLACK_MS));
    lab_proxy_set(&t.proxy, NULL);
    lab_proxy_stats s1 = lab_proxy_get_stats(&t.proxy);
    print_message("10 units one byte at a time: %lld ms, %llu bytes up, %llu down\n", lab_now_ms() - t0,
                  s1.c2s - s0.c2s, s1.s2c - s0.s2c);
    check_tally(0);
    check_statuses("trickle", 0, t.ncmds, ONLY_OK, ONLY_OK);
    for (size_t i = 0; i < t.ncmds; i++)
        if (t.cmds[i].kind == K_INCR)
            assert_int_equal(t.cmds[i].ival, c0 + t.cmds[i].unit + 1);
    assert_int_equal(s1.accepted, s0.accepted);
    assert_true(s1.s2c - s0.s2c >= 10 * 30);
}

/* Replies slower than the deadline, the server never silent: each command
 * times out alone, the connection stays, and the late replies, when they
 * come, are dropped, never handed to a later command. */
static void test_trickle_late_replies_dropped(void **state)
{
    (void)state;
    const long long command_ms = 500;
    assert_int_equal(lab_proxy_start(&t.proxy, redis.port), 0);
    name_keys("late");
    admin_open(redis.port);
    long long c0 = admin_counter();
    start_handle("late", t.proxy.port, (unsigned)command_ms);
    size_t ev0 = t.nevents;
    lab_proxy_stats s0 = lab_proxy_get_stats(&t.proxy);

    /* A unit every 20 ms; its replies (a ~60-byte TLS record) take ~60 ms
     * to pass: the backlog, and each unit's wait, grow. */
    lab_proxy_set(&t.proxy, &(lab_fault){.kind = LAB_FAULT_TRICKLE, .dir = LAB_S2C, .delay_ms = 1});
    for (int i = 0; i < 40; i++) {
        issue_unit();
        pump(20, NULL, 0);
    }
    pump(command_ms + 100, NULL, 0);
    lab_proxy_set(&t.proxy, NULL);
    size_t slow_end = t.ncmds;
    /* Issued while late replies are still on their way. */
    for (int i = 0; i < 10; i++)
        issue_unit();
    drain(SCALED(5000));

    print_counts("trickled", 0, slow_end);
    counts c = count_statuses(0, slow_end);
    check_tally(0);
    check_statuses("trickled", 0, slow_end, BIT(REDTLS_OK) | BIT(REDTLS_E_COMMAND_TIMEOUT),
                   BIT(REDTLS_OK) | BIT(REDTLS_E_COMMAND_TIMEOUT));
    check_deadlines(0, slow_end, command_ms);
    assert_true(c.n[0][REDTLS_OK] + c.n[1][REDTLS_OK] >= 3);
    assert_true(c.n[0][REDTLS_E_COMMAND_TIMEOUT] + c.n[1][REDTLS_E_COMMAND_TIMEOUT] >= 3);
    for (size_t i = 0; i < slow_end; i++)
        if (t.cmds[i].st == REDTLS_E_COMMAND_TIMEOUT)
            assert_contains(t.cmds[i].why, "no reply within the command timeout");
    /* The same connection all along. */
    ev_print(ev0, 4);
    assert_int_equal(ev_count(REDTLS_EVENT_DISCONNECTED, ev0), 0);
    assert_int_equal(lab_proxy_get_stats(&t.proxy).accepted, s0.accepted);
    assert_int_equal(redtls_async_is_connected(t.ac), 1);
    check_statuses("after the trickle", slow_end, t.ncmds, ONLY_OK, ONLY_OK);
    /* Every INCR ran, in order, the timed-out ones included: the ten last
     * got the ten last values, their own. */
    long long cnt = admin_counter();
    assert_int_equal(cnt, c0 + 50);
    for (size_t i = slow_end; i < t.ncmds; i++)
        if (t.cmds[i].kind == K_INCR)
            assert_int_equal(t.cmds[i].ival, c0 + t.cmds[i].unit + 1);
}

/* ---- f. cuts at random points of the byte stream -------------------------- */

static uint64_t prng_state;

static int cuts_reach(long long n)
{
    return lab_proxy_get_stats(&t.proxy).cuts >= (unsigned long long)n;
}

#define CUTS 30

static void test_random_cuts(void **state)
{
    (void)state;
    const long long command_ms = SCALED(5000);
    uint64_t seed = lab_seed();
    int rst = 0, fin = 0, in_record = 0;
    assert_int_equal(lab_proxy_start(&t.proxy, redis.port), 0);
    name_keys("cuts");
    admin_open(redis.port);
    long long c0 = admin_counter();
    start_handle("cuts", t.proxy.port, (unsigned)command_ms);
    size_t ev0 = t.nevents;
    prng_state = seed;
    long long t0 = lab_now_ms();
    t.feeding = 1;
    for (int k = 0; k < CUTS; k++) {
        lab_fault f = {.kind = LAB_FAULT_CUT, .once = 1};
        uint32_t r = lab_prng(&prng_state);
        if (r % 5 == 0) {
            /* Inside a record from the server: never a whole one (a TLS
             * 1.3 record's body is 18 bytes at least). */
            f.kind = LAB_FAULT_CUT_IN_RECORD;
            f.after = lab_prng(&prng_state) % 17;
            in_record++;
        } else {
            f.dir = r % 2 ? LAB_C2S : LAB_S2C;
            f.after = lab_prng(&prng_state) % 8000;
        }
        f.rst = (int)(lab_prng(&prng_state) % 2);
        rst += f.rst;
        fin += !f.rst;
        lab_proxy_set(&t.proxy, &f);
        if (!pump(SCALED(5000), cuts_reach, k + 1)) {
            lab_proxy_stats ps = lab_proxy_get_stats(&t.proxy);
            ev_print(t.nevents > 6 ? t.nevents - 6 : 0, 6);
            fail_msg("cut %d (kind %d, %zu bytes) never fired: %zu commands, connected %d, %zu pending, fd %d, "
                     "events %d, timeout %d ms; proxy: %llu active, %llu accepted, %llu cuts",
                     k, (int)f.kind, f.after, t.ncmds, redtls_async_is_connected(t.ac), redtls_async_pending(t.ac),
                     redtls_async_fd(t.ac), redtls_async_events(t.ac), redtls_async_timeout_ms(t.ac), ps.active,
                     ps.accepted, ps.cuts);
        }
        /* The stream flows again on a new connection before the next cut
         * is armed, so cuts land anywhere in it, not only in the first
         * burst or the handshake. */
        assert_true(pump(SCALED(5000), ok_from_reach, OK_FROM(t.ncmds, 30)));
    }
    drain(command_ms + SCALED(SLACK_MS));
    lab_proxy_stats ps = lab_proxy_get_stats(&t.proxy);
    print_message("seed %#llx: %d cuts (%d RST, %d FIN, %d inside a TLS record) in %lld ms; %llu connections, "
                  "%zu DISCONNECTED\n",
                  (unsigned long long)seed, CUTS, rst, fin, in_record, lab_now_ms() - t0, ps.accepted,
                  ev_count(REDTLS_EVENT_DISCONNECTED, ev0));
    print_counts("random cuts", 0, t.ncmds);
    check_tally(0);
    /* An idempotent command resent once may be lost again by the next cut. */
    check_statuses("random cuts", 0, t.ncmds, OK_OR_UNKNOWN, OK_OR_UNKNOWN);
    counts c = count_statuses(0, t.ncmds);
    assert_true(c.n[1][REDTLS_E_OUTCOME_UNKNOWN] >= 1);
    assert_true(ev_count(REDTLS_EVENT_DISCONNECTED, ev0) >= CUTS / 2);
    long long cnt = admin_counter();
    check_incr_accounting("random cuts", 0, t.ncmds, c0, cnt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_server_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigstop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outage_shorter_than_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outage_longer_than_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trickle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trickle_late_replies_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_cuts, setup, teardown),
    };
    return cmocka_run_group_tests_name("integration.async_resilience", tests, group_setup, group_teardown);
}

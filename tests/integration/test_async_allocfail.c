/* Allocation failures along the asynchronous paths, against a real TLS +
 * AUTH redis-server: a handle made, connected (TCP, TLS handshake with
 * verification, AUTH, SELECT, SETNAME) with commands issued before the
 * connection exists and several in flight together, their replies, a close
 * with one written and unanswered, and a free with one queued. For N = 1,
 * 2, ... the Nth allocation of the process fails (redtls's own, OpenSSL's
 * and hiredis's alike), until a run completes without reaching N. Every run
 * must end with statuses (REDTLS_E_NOMEM where redtls itself could not
 * allocate), never a crash or a hang, call every callback exactly once
 * (none for a call that failed at once), hand no command another's reply,
 * and leave no allocation behind.
 *
 * The allocator hook is this test program's own malloc family
 * (tests/harness/lab_allochook.c), as in test_allocfail.c. Sanitizer builds
 * replace malloc themselves, so there the test only checks it was built. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/crypto.h>
#include <redtls/async.h>

#include "lab.h"
#include "lab_allochook.h"
#include "lab_assert.h"

#define TOKEN "allocfail-Async-Token-61b0e2"
#define COMMAND_MS 1000
/* A run that has not finished by then hangs. */
#define RUN_LIMIT_MS 8000
#define N_INCR 6
#define N_CMDS (N_INCR + 4) /* SET, the INCRs, GET, PING closed, PING freed */
#define I_SET 0
#define I_GET (N_INCR + 1)
#define I_CLOSED (N_INCR + 2)
#define I_FREED (N_INCR + 3)

static lab_server redis;
static char url[512];

static int group_setup(void **state)
{
    (void)state;
    if (lab_init(85) != 0 || lab_certs(NULL) == NULL)
        return -1;
    if (lab_redis_start(&redis, &(lab_redis_opts){.tls = 1, .password = TOKEN}) != 0)
        return -1;
    /* An IP literal: glibc's name-service modules keep allocations of their
     * own when one fails, which is not redtls's to fix. */
    snprintf(url, sizeof url, "rediss://:%s@127.0.0.1:%u/2?cacert=%s&name=async-allocfail&timeout=%d", TOKEN,
             (unsigned)redis.port, lab_cert("ca.crt"), COMMAND_MS);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    lab_stop(&redis);
    return 0;
}

/* One run: what each call and callback said. */
typedef struct run {
    int connect_calls;
    int connect_issued;
    int issued[N_CMDS]; /* the call returned REDTLS_OK: a callback is owed */
    int calls[N_CMDS];
    redtls_status st[N_CMDS];
    long long ival[N_CMDS];
    int bad[N_CMDS];     /* a reply that is not this command's */
    redtls_status first; /* the first failure, REDTLS_OK when none */
    char why[512];
    int hung;
} run;

static run R;

static void failed(redtls_status st, const char *msg)
{
    if (st != REDTLS_OK && R.first == REDTLS_OK) {
        R.first = st;
        snprintf(R.why, sizeof R.why, "%s", msg ? msg : "");
    }
}

static void on_connect(redtls_async *ac, redtls_status st, void *ud)
{
    (void)ud;
    R.connect_calls++;
    failed(st, redtls_async_errmsg(ac));
}

static int reply_is(const struct redisReply *r, int type, const char *s)
{
    size_t len = 0;
    const char *got = redtls_reply_str(r, &len);
    return redtls_reply_type(r) == type && got && len == strlen(s) && memcmp(got, s, len) == 0;
}

/* Never asserts: the verdicts are checked once the handle is gone. */
static void on_reply(redtls_async *ac, redtls_status st, struct redisReply *r, void *ud)
{
    int i = (int)(intptr_t)ud;
    R.calls[i]++;
    R.st[i] = st;
    if ((st == REDTLS_OK) != (r != NULL))
        R.bad[i] = 1;
    if (r) {
        if (i == I_SET)
            R.bad[i] |= !reply_is(r, REDTLS_REPLY_STATUS, "OK");
        else if (i == I_GET)
            R.bad[i] |= !reply_is(r, REDTLS_REPLY_STRING, "v");
        else if (i == I_CLOSED || i == I_FREED)
            R.bad[i] |= !reply_is(r, REDTLS_REPLY_STATUS, "PONG");
        else
            R.bad[i] |= redtls_reply_type(r) != REDTLS_REPLY_INTEGER;
        R.ival[i] = redtls_reply_integer(r);
        redtls_reply_free(r);
    }
    /* The close and the free end these two, as they were asked to. */
    if ((i == I_CLOSED || i == I_FREED) && st == REDTLS_E_CLOSED)
        return;
    failed(st, redtls_async_errmsg(ac));
}

static void issued(redtls_async *ac, int i, redtls_status st)
{
    R.issued[i] = st == REDTLS_OK;
    failed(st, redtls_async_errmsg(ac));
}

/* The scenario; R gets what happened. Frees everything it made on every
 * path. */
static void scenario(void)
{
    redtls_config *cfg = NULL;
    redtls_async *ac = NULL;
    memset(&R, 0, sizeof R);
    redtls_status st = redtls_config_new(&cfg);
    if (st != REDTLS_OK) {
        failed(st, "redtls_config_new: out of memory");
        return;
    }
    if ((st = redtls_config_set_url(cfg, url)) == REDTLS_OK && (st = redtls_config_set_reconnect(cfg, 0)) == REDTLS_OK)
        st = redtls_async_new(cfg, &ac);
    if (st != REDTLS_OK) {
        failed(st, redtls_config_errmsg(cfg));
        redtls_config_free(cfg);
        return;
    }
    st = redtls_async_connect(ac, on_connect, NULL);
    R.connect_issued = st == REDTLS_OK;
    failed(st, redtls_async_errmsg(ac));
    /* Issued before the connection exists: they wait for it, then go out
     * in one write, all in flight together. */
    issued(ac, I_SET, redtls_async_command(ac, on_reply, (void *)(intptr_t)I_SET, "SET %s %s", "aallocfail:k", "v"));
    for (int i = 1; i <= N_INCR; i++) {
        const char *argv[] = {"INCR", "aallocfail:n"};
        issued(ac, i, redtls_async_command_argv(ac, 0, 2, argv, NULL, on_reply, (void *)(intptr_t)i));
    }
    const char *get[] = {"GET", "aallocfail:k"};
    issued(ac, I_GET,
           redtls_async_command_argv(ac, REDTLS_CMD_IDEMPOTENT, 2, get, NULL, on_reply, (void *)(intptr_t)I_GET));
    st = redtls_async_run(&ac, 1, RUN_LIMIT_MS);
    R.hung = st != REDTLS_OK;
    /* One written and unanswered when the handle is closed... */
    issued(ac, I_CLOSED, redtls_async_command(ac, on_reply, (void *)(intptr_t)I_CLOSED, "PING"));
    redtls_async_process(ac, 0);
    redtls_async_close(ac);
    /* ... one queued when it is freed. */
    issued(ac, I_FREED, redtls_async_command(ac, on_reply, (void *)(intptr_t)I_FREED, "PING"));
    redtls_async_free(ac);
    redtls_config_free(cfg);
}

/* Every rule of one run; n is the failing allocation (0: none). */
static void check_run(long n)
{
    if (R.hung)
        fail_msg("allocation %ld failed: the handle still had work after %d ms (first status %s: %s)", n, RUN_LIMIT_MS,
                 redtls_strerror(R.first), R.why);
    if (R.connect_calls != R.connect_issued)
        fail_msg("allocation %ld failed: connect callback called %d times", n, R.connect_calls);
    for (int i = 0; i < N_CMDS; i++) {
        if (R.calls[i] != R.issued[i])
            fail_msg("allocation %ld failed: command %d (%s at once) had %d callbacks", n, i,
                     R.issued[i] ? "accepted" : "refused", R.calls[i]);
        if (R.bad[i])
            fail_msg("allocation %ld failed: command %d got a reply not its own (status %s)", n, i,
                     redtls_strerror(R.st[i]));
    }
    if (R.first != REDTLS_OK && R.why[0] == '\0')
        fail_msg("allocation %ld: status %s without a message", n, redtls_strerror(R.first));
}

#if LAB_ALLOC_HOOK
/* Slow runs kept for a second look. */
#define MAX_SLOW 64

/* One run with allocation n failing; its time in ms. Fails the test on a
 * leak. */
static long long run_failing(long n)
{
    long long r0 = lab_now_ms();
    lab_alloc_arm(n);
    scenario();
    /* OpenSSL keeps this thread's error queue until told the thread is
     * done; release it inside the count so only real leaks remain. */
    OPENSSL_thread_stop();
    lab_alloc_disarm();
    long long ms = lab_now_ms() - r0;
    if (lab_alloc_live() != 0)
        fail_msg("allocation %ld failed: %ld allocations leaked (first status %s: %s)", n, lab_alloc_live(),
                 redtls_strerror(R.first), R.why);
    return ms;
}
#endif

static void test_every_allocation_may_fail(void **state)
{
    (void)state;
#if !LAB_ALLOC_HOOK
    (void)scenario;
    (void)check_run;
    skip();
#else
    /* Warm-up: OpenSSL sets up its process-wide tables on first use; those
     * are not ours to free. */
    scenario();
    OPENSSL_thread_stop();
    check_run(0);
    assert_int_equal(R.first, REDTLS_OK);
    long total = 0, slow = 0, by_status[REDTLS_E_CLUSTER_TOPOLOGY + 1] = {0};
    long slow_n[MAX_SLOW];
    long long t0 = lab_now_ms(), slowest = 0;
    for (long n = 1;; n++) {
        long long ms = run_failing(n);
        slowest = ms > slowest ? ms : slowest;
        if (ms > COMMAND_MS / 2) {
            if (slow == MAX_SLOW)
                fail_msg("more than %d runs over %d ms: commands left waiting for their deadlines", MAX_SLOW,
                         COMMAND_MS / 2);
            slow_n[slow++] = n;
        }
        long made = lab_alloc_calls();
        check_run(n);
        if (made < n) {
            /* The run finished before reaching allocation n: done. */
            assert_int_equal(R.first, REDTLS_OK);
            total = made;
            break;
        }
        unsigned idx = (unsigned)R.first;
        if (idx > (unsigned)REDTLS_E_CLUSTER_TOPOLOGY)
            fail_msg("allocation %ld: unknown status %u", n, idx);
        by_status[idx]++;
    }
    /* The last run went all the way: the replies in order, each its own. */
    for (int i = 1; i < N_INCR; i++)
        assert_int_equal(R.ival[i + 1], R.ival[i] + 1);
    assert_int_equal(R.st[I_CLOSED], REDTLS_E_CLOSED);
    assert_int_equal(R.st[I_FREED], REDTLS_E_CLOSED);
    print_message("%ld allocations on the path (new, connect, AUTH, SELECT, SETNAME, SET, %d INCRs and a GET in "
                  "flight, close, free) in %lld ms; failing each one in turn gave, as first status:\n",
                  total, N_INCR, lab_now_ms() - t0);
    for (int i = 0; i <= REDTLS_E_CLUSTER_TOPOLOGY; i++)
        if (by_status[i])
            print_message("  %-55s %ld\n", redtls_strerror((redtls_status)i), by_status[i]);
    print_message("no crash, no hang (slowest run %lld ms, %ld over %d ms), no leak, every callback once\n", slowest,
                  slow, COMMAND_MS / 2);
    /* A run over half the command timeout is a command left waiting for
     * its deadline after a failed allocation (integration.async_nomem), or
     * a machine busy with other work. A stall comes back every time the
     * same allocation fails; slowness from load does not: each slow run is
     * repeated twice, and a stall is one slow all three times. */
    long stalls = 0;
    for (long i = 0; i < slow; i++) {
        int again = 0;
        for (int k = 0; k < 2; k++) {
            again += run_failing(slow_n[i]) > COMMAND_MS / 2;
            check_run(slow_n[i]);
        }
        if (again == 2) {
            print_message("allocation %ld: slow three times (first status %s: %s)\n", slow_n[i],
                          redtls_strerror(R.first), R.why);
            stalls++;
        }
    }
    print_message("%ld slow runs, %ld of them slow again when repeated\n", slow, stalls);
    assert_int_equal(stalls, 0);
    assert_true(total > 100);
    assert_true(by_status[REDTLS_E_NOMEM] > 0);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_may_fail),
    };
    return cmocka_run_group_tests_name("async_allocfail", tests, group_setup, group_teardown);
}

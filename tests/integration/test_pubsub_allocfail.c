/* Allocation failures along the Pub/Sub paths of the asynchronous API,
 * against a real redis-server (its plain port, so the run is Pub/Sub's and
 * not the TLS handshake's, which integration.async_allocfail covers): a
 * handle subscribes to a channel and a pattern before it is connected, a
 * command rides along, messages are published to both (through a raw
 * socket of this program, which allocates nothing), one subscription is
 * ended, and the handle is freed. For N = 1, 2, ... the Nth allocation of
 * the process fails (redtls's and hiredis's alike), until a run completes
 * without reaching N. Every run must end without a crash, a hang or a
 * leak; each subscription's callback gets REDTLS_MSG_UNSUBSCRIBED exactly
 * once and nothing after it; messages arrive in order, none twice; the
 * command's callback runs exactly once. Reconnection is on: a connection
 * lost to a failed allocation is made again and the subscriptions are
 * restored, so a run usually still sees the messages published after. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <redtls/pubsub.h>

#include "lab.h"
#include "lab_allochook.h"
#include "lab_assert.h"

#define TOKEN "allocfail-PubSub-Token-5d2e"
#define RUN_LIMIT_MS 3000
#define N_MSGS 3

static lab_server redis;
static char url[256];
static int pub_fd = -1;

typedef struct sub {
    const char *name;
    redtls_sub_kind kind;
    int subscribed, ended, after_end, messages, bad;
    long long last;
} sub;

static struct {
    sub s[2];
    int cmd_calls, cmd_issued;
    redtls_status first;
    char why[300];
} R;

static void failed(redtls_status st, const char *msg)
{
    if (st != REDTLS_OK && R.first == REDTLS_OK) {
        R.first = st;
        snprintf(R.why, sizeof R.why, "%s", msg ? msg : "");
    }
}

static void on_msg(redtls_async *ac, const redtls_message *m, void *ud)
{
    (void)ac;
    sub *s = ud;
    if (s->ended)
        s->after_end++;
    switch (redtls_message_type(m)) {
    case REDTLS_MSG_SUBSCRIBED:
    case REDTLS_MSG_RESTORED: s->subscribed = 1; break;
    case REDTLS_MSG_UNSUBSCRIBED: s->ended++; break;
    case REDTLS_MSG_MESSAGE: {
        s->messages++;
        long long v = strtoll(redtls_message_payload(m, NULL), NULL, 10);
        if (v <= s->last)
            s->bad++;
        s->last = v;
        break;
    }
    default: s->bad++;
    }
}

static void on_reply(redtls_async *ac, redtls_status st, struct redisReply *r, void *ud)
{
    (void)ud;
    R.cmd_calls++;
    failed(st, redtls_async_errmsg(ac));
    redtls_reply_free(r);
}

/* PUBLISH through the raw socket (AUTHenticated at set-up); the replies
 * are read and dropped. No allocation. */
static void publish(const char *channel, int i)
{
    char cmd[128];
    int n = snprintf(cmd, sizeof cmd, "PUBLISH %s %d\r\n", channel, i);
    if (send(pub_fd, cmd, (size_t)n, MSG_NOSIGNAL) != n)
        fail_msg("publisher: send failed");
    char buf[64];
    if (recv(pub_fd, buf, sizeof buf, 0) <= 0)
        fail_msg("publisher: no answer");
}

static int group_setup(void **state)
{
    (void)state;
    if (lab_init(85) != 0 || lab_certs(NULL) == NULL)
        return -1;
    if (lab_redis_start(&redis, &(lab_redis_opts){.tls = 1, .plain_port = 1, .password = TOKEN}) != 0)
        return -1;
    /* An IP literal: glibc's name-service modules keep allocations of their
     * own when one fails. */
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%u?timeout=1000", TOKEN, (unsigned)redis.plain_port);
    pub_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(redis.plain_port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (pub_fd < 0 || connect(pub_fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return -1;
    char auth[128], buf[64];
    int n = snprintf(auth, sizeof auth, "AUTH %s\r\n", TOKEN);
    if (send(pub_fd, auth, (size_t)n, MSG_NOSIGNAL) != n || recv(pub_fd, buf, sizeof buf, 0) <= 0 || buf[0] != '+')
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (pub_fd >= 0)
        close(pub_fd);
    lab_stop(&redis);
    return 0;
}

/* Those still subscribed (not refused or ended) are confirmed. */
static int all_subscribed(void)
{
    return (R.s[0].ended || R.s[0].subscribed) && (R.s[1].ended || R.s[1].subscribed);
}

static int all_received(void)
{
    return (R.s[0].ended || R.s[0].last == N_MSGS - 1) && (R.s[1].ended || R.s[1].last == N_MSGS - 1);
}

/* Runs ac until done() or the limit; 0 when done. */
static int run_until(redtls_async *ac, int (*done)(void), long long end)
{
    while (!done()) {
        if (lab_now_ms() > end)
            return -1;
        (void)redtls_async_run(&ac, 1, 10);
    }
    return 0;
}

static void scenario(void)
{
    memset(&R, 0, sizeof R);
    /* "ended" until a subscribe call succeeds: no callback is owed. */
    R.s[0] = (sub){.name = "af", .kind = REDTLS_SUB_CHANNEL, .last = -1, .ended = 1};
    R.s[1] = (sub){.name = "afp*", .kind = REDTLS_SUB_PATTERN, .last = -1, .ended = 1};
    redtls_config *cfg = NULL;
    redtls_async *ac = NULL;
    redtls_status st = redtls_config_new(&cfg);
    if (st != REDTLS_OK) {
        failed(st, "redtls_config_new: out of memory");
        return;
    }
    if ((st = redtls_config_set_url(cfg, url)) == REDTLS_OK &&
        (st = redtls_config_set_backoff(cfg, 5, 20)) == REDTLS_OK)
        st = redtls_async_new(cfg, &ac);
    if (st != REDTLS_OK) {
        failed(st, redtls_config_errmsg(cfg));
        redtls_config_free(cfg);
        return;
    }
    R.cmd_issued = redtls_async_command(ac, on_reply, NULL, "PING") == REDTLS_OK;
    for (int i = 0; i < 2; i++) {
        st = redtls_async_subscribe(ac, R.s[i].kind, R.s[i].name, strlen(R.s[i].name), on_msg, &R.s[i]);
        failed(st, redtls_async_errmsg(ac));
        if (st == REDTLS_OK)
            R.s[i].ended = 0;
    }
    long long end = lab_now_ms() + RUN_LIMIT_MS;
    if (run_until(ac, all_subscribed, end) == 0) {
        for (int i = 0; i < N_MSGS; i++) {
            publish("af", i);
            publish("afpq", i);
        }
        /* Messages published while a failed allocation had dropped the
         * connection are gone (Pub/Sub keeps nothing): no long wait. */
        long long got_by = lab_now_ms() + 500;
        (void)run_until(ac, all_received, got_by < end ? got_by : end);
    }
    if (!R.s[0].ended && redtls_async_unsubscribe(ac, REDTLS_SUB_CHANNEL, "af", 2) == REDTLS_OK) {
        while (!R.s[0].ended && lab_now_ms() < end)
            (void)redtls_async_run(&ac, 1, 10);
    }
    redtls_async_free(ac);
    redtls_config_free(cfg);
}

static void check_run(long n)
{
    for (int i = 0; i < 2; i++) {
        const sub *s = &R.s[i];
        if (s->ended != 1 || s->after_end || s->bad)
            fail_msg("allocation %ld failed: subscription %s ended %d times, %d calls after its end, %d wrong", n,
                     s->name, s->ended, s->after_end, s->bad);
    }
    if (R.cmd_calls != R.cmd_issued)
        fail_msg("allocation %ld failed: the command's callback ran %d times", n, R.cmd_calls);
}

static void test_every_allocation_may_fail(void **state)
{
    (void)state;
#if !LAB_ALLOC_HOOK
    (void)scenario;
    (void)check_run;
    skip();
#else
    scenario();
    check_run(0);
    assert_int_equal(R.first, REDTLS_OK);
    assert_int_equal(R.s[0].messages, N_MSGS);
    assert_int_equal(R.s[1].messages, N_MSGS);
    long total = 0, complete = 0;
    long long t0 = lab_now_ms();
    for (long n = 1;; n++) {
        lab_alloc_arm(n);
        scenario();
        lab_alloc_disarm();
        if (lab_alloc_live() != 0)
            fail_msg("allocation %ld failed: %ld allocations leaked (first status %s: %s)", n, lab_alloc_live(),
                     redtls_strerror(R.first), R.why);
        check_run(n);
        complete += R.s[0].last == N_MSGS - 1 && R.s[1].last == N_MSGS - 1;
        if (lab_alloc_calls() < n) {
            total = lab_alloc_calls();
            break;
        }
    }
    print_message("%ld allocations on the path (new, connect, AUTH, 2 subscriptions and a command, %d messages "
                  "each, an unsubscribe, free) in %lld ms; failing each in turn: no crash, no leak, every "
                  "subscription ended once; %ld runs still got every message\n",
                  total, N_MSGS, lab_now_ms() - t0, complete);
    assert_true(total > 20);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_may_fail),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

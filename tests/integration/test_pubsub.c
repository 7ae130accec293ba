/* Pub/Sub (include/redtls/pubsub.h) against a real TLS + AUTH
 * redis-server: channel, pattern and shard subscriptions on the
 * asynchronous API and the blocking subscriber, the refusals, a
 * subscription the server refuses (ACL), and the restore after a cut
 * connection, a server restart and a silently dead link (reached through
 * the fault proxy), checked against numbered messages: every one that
 * arrives is in order, none twice, and the gap is reported.
 *
 * Counts are checked on the server side too: PUBLISH answers how many
 * subscribers received the message. Timing assertions are only "no hang
 * past a deadline" with slack; REDTLS_TEST_TIME_SCALE=N stretches them. */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <redtls/pubsub.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_client.h"
#include "lab_proxy.h"

#define TOKEN "lab-PubSub-Token-6e21d0"
#define MAX_SEEN 4096

static long long scale = 1;
#define SCALED(ms) ((long long)(ms)*scale)

static lab_server redis;
static const char *const redis_extra[] = {"--enable-debug-command", "yes", NULL};
static const lab_redis_opts redis_opts = {.tls = 1, .password = TOKEN, .extra = redis_extra};
static redtls_conn *admin;

/* What one subscription's callback saw. */
typedef struct seen {
    int subscribed, restored, unsubscribed, messages;
    redtls_status unsub_status;
    char unsub_detail[300];
    long long last;   /* the last numbered payload, -1 before any */
    int out_of_order; /* a number not above the one before */
    char channel[64]; /* of the last message */
    char sub[64];     /* the subscription's name, as the message says */
    size_t payload_len;
    char payload[64];
    int notice_type[64]; /* the order of everything */
    int nnotice;
} seen;

static void on_msg(redtls_async *ac, const redtls_message *m, void *ud)
{
    (void)ac;
    seen *s = ud;
    int type = redtls_message_type(m);
    if (s->nnotice < 64)
        s->notice_type[s->nnotice++] = type;
    size_t n = 0;
    const char *sub = redtls_message_subscription(m, &n);
    snprintf(s->sub, sizeof s->sub, "%.*s", (int)n, sub ? sub : "");
    switch (type) {
    case REDTLS_MSG_SUBSCRIBED: s->subscribed++; break;
    case REDTLS_MSG_RESTORED: s->restored++; break;
    case REDTLS_MSG_UNSUBSCRIBED:
        s->unsubscribed++;
        s->unsub_status = redtls_message_status(m);
        snprintf(s->unsub_detail, sizeof s->unsub_detail, "%s", redtls_message_detail(m));
        break;
    case REDTLS_MSG_MESSAGE: {
        s->messages++;
        const char *ch = redtls_message_channel(m, &n);
        snprintf(s->channel, sizeof s->channel, "%.*s", (int)n, ch);
        const char *p = redtls_message_payload(m, &s->payload_len);
        memcpy(s->payload, p, s->payload_len < sizeof s->payload ? s->payload_len : sizeof s->payload);
        long long v = strtoll(p, NULL, 10);
        if (v <= s->last)
            s->out_of_order++;
        s->last = v;
        break;
    }
    default: fail_msg("unknown message type %d", type);
    }
}

static void seen_init(seen *s)
{
    memset(s, 0, sizeof *s);
    s->last = -1;
}

static redtls_config *new_cfg(uint16_t port)
{
    redtls_config *cfg = NULL;
    lab_client_config(&cfg, "localhost", port, "ca.crt", TOKEN);
    lab_client_timeouts(cfg, (unsigned)SCALED(2000), (unsigned)SCALED(2000), (unsigned)SCALED(2000));
    assert_cfg_status(cfg, redtls_config_set_backoff(cfg, 20, 200), REDTLS_OK);
    return cfg;
}

/* PUBLISH (or SPUBLISH) through the admin connection: the receivers. */
static long long publish(const char *cmd, const char *channel, const char *payload, size_t len)
{
    redisReply *r = NULL;
    const char *argv[3] = {cmd, channel, payload};
    size_t lens[3] = {strlen(cmd), strlen(channel), len};
    assert_conn_status(admin, redtls_conn_command_argv(admin, 3, argv, lens, &r), REDTLS_OK);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_INTEGER);
    long long n = redtls_reply_integer(r);
    redtls_reply_free(r);
    return n;
}

static long long publish_n(const char *channel, long long i)
{
    char p[32];
    int n = snprintf(p, sizeof p, "%lld", i);
    return publish("PUBLISH", channel, p, (size_t)n);
}

/* Drives ac with the built-in loop until done(ud) or ms pass. */
static int run_until(redtls_async *ac, int (*done)(void *), void *ud, long long ms)
{
    long long end = lab_now_ms() + ms;
    while (!done(ud)) {
        if (lab_now_ms() > end)
            return 0;
        redtls_status st = redtls_async_run(&ac, 1, 20);
        if (st != REDTLS_OK && st != REDTLS_E_COMMAND_TIMEOUT)
            return 0;
    }
    return 1;
}

typedef struct want {
    seen *s;
    int n;
    int field; /* 0 subscribed, 1 messages, 2 unsubscribed, 3 restored */
} want;

static int reached(void *ud)
{
    want *w = ud;
    for (int i = 0; i < w->n; i++) {
        seen *s = &w->s[i];
        int v = w->field == 0   ? s->subscribed
                : w->field == 1 ? s->messages
                : w->field == 2 ? s->unsubscribed
                                : s->restored;
        if (v < 1 || (w->field == 1 && s->messages < 100))
            return 0;
    }
    return 1;
}

static int group_setup(void **state)
{
    (void)state;
    scale = lab_time_scale();
    if (lab_init_redis(300, &redis, &redis_opts) != 0)
        return -1;
    lab_client_admin(&admin, "localhost", redis.port, TOKEN, 0);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    redtls_conn_free(admin);
    lab_stop_all();
    return 0;
}

/* Channel, pattern and shard subscriptions on one handle: 100 numbered
 * messages each, in order, with their channel and binary payloads; after
 * unsubscribing, the server counts no receiver. */
static void test_async_kinds(void **state)
{
    (void)state;
    redtls_config *cfg = new_cfg(redis.port);
    redtls_async *ac = NULL;
    assert_cfg_status(cfg, redtls_async_new(cfg, &ac), REDTLS_OK);
    redtls_config_free(cfg);
    seen s[3];
    for (int i = 0; i < 3; i++)
        seen_init(&s[i]);
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "news", 4, on_msg, &s[0]), REDTLS_OK);
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_PATTERN, "ev.*", 4, on_msg, &s[1]), REDTLS_OK);
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_SHARD, "sh{1}", 5, on_msg, &s[2]), REDTLS_OK);
    assert_int_equal(redtls_async_subscriptions(ac), 3);
    want w = {s, 3, 0};
    assert_true(run_until(ac, reached, &w, SCALED(5000)));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(s[i].subscribed, 1);
        assert_int_equal(s[i].notice_type[0], REDTLS_MSG_SUBSCRIBED);
    }
    assert_string_equal(s[1].sub, "ev.*");
    for (long long i = 0; i < 100; i++) {
        assert_int_equal(publish_n("news", i), 1);
        assert_int_equal(publish_n("ev.a", i), 1);
        char p[32];
        int n = snprintf(p, sizeof p, "%lld", i);
        assert_int_equal(publish("SPUBLISH", "sh{1}", p, (size_t)n), 1);
    }
    w.field = 1;
    assert_true(run_until(ac, reached, &w, SCALED(5000)));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(s[i].messages, 100);
        assert_int_equal(s[i].out_of_order, 0);
        assert_int_equal(s[i].last, 99);
    }
    assert_string_equal(s[0].channel, "news");
    assert_string_equal(s[1].channel, "ev.a");
    assert_string_equal(s[1].sub, "ev.*");
    assert_string_equal(s[2].channel, "sh{1}");
    /* Binary-safe payload. */
    assert_int_equal(publish("PUBLISH", "news", "1000\0x\r\n", 8), 1);
    w.field = 1;
    long long end = lab_now_ms() + SCALED(5000);
    while (s[0].messages < 101 && lab_now_ms() < end)
        redtls_async_run(&ac, 1, 20);
    assert_int_equal(s[0].messages, 101);
    assert_int_equal(s[0].payload_len, 8);
    assert_memory_equal(s[0].payload, "1000\0x\r\n", 8);
    /* Unsubscribe: the notice comes from the loop, not from the call. */
    assert_int_equal(redtls_async_unsubscribe(ac, REDTLS_SUB_CHANNEL, "news", 4), REDTLS_OK);
    assert_int_equal(s[0].unsubscribed, 0);
    assert_int_equal(redtls_async_unsubscribe(ac, REDTLS_SUB_CHANNEL, "news", 4), REDTLS_E_STATE);
    assert_contains(redtls_async_errmsg(ac), "already being unsubscribed");
    w = (want){s, 1, 2};
    assert_true(run_until(ac, reached, &w, SCALED(5000)));
    assert_int_equal(s[0].unsub_status, REDTLS_OK);
    assert_string_equal(s[0].sub, "news");
    assert_int_equal(publish_n("news", 500), 0);
    assert_int_equal(redtls_async_subscriptions(ac), 2);
    /* The same name again, after the notice: a new subscription. */
    seen again;
    seen_init(&again);
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "news", 4, on_msg, &again), REDTLS_OK);
    w = (want){&again, 1, 0};
    assert_true(run_until(ac, reached, &w, SCALED(5000)));
    assert_int_equal(publish_n("news", 600), 1);
    /* Freeing ends every subscription with REDTLS_E_CLOSED. */
    redtls_async_free(ac);
    assert_int_equal(again.unsubscribed, 1);
    assert_int_equal(again.unsub_status, REDTLS_E_CLOSED);
    assert_int_equal(s[1].unsubscribed, 1);
    assert_int_equal(s[1].unsub_status, REDTLS_E_CLOSED);
    assert_int_equal(s[2].unsub_status, REDTLS_E_CLOSED);
}

static void count_reply(redtls_async *ac, redtls_status st, redisReply *r, void *ud)
{
    int *n = ud;
    if (st == REDTLS_OK)
        (*n)++;
    else
        print_message("reply status %d: %s\n", st, redtls_async_errmsg(ac));
    redtls_reply_free(r);
}

/* What is refused, and with which status. */
static void test_refusals(void **state)
{
    (void)state;
    redtls_config *cfg = new_cfg(redis.port);
    redtls_async *ac = NULL;
    assert_cfg_status(cfg, redtls_async_new(cfg, &ac), REDTLS_OK);
    redtls_conn *conn = NULL;
    lab_client_connect(&conn, cfg);
    redtls_config_free(cfg);
    seen s;
    seen_init(&s);
    const char *sub[2] = {"SUBSCRIBE", "x"};
    const char *psub[2] = {"punsubscribe", "x"};
    assert_int_equal(redtls_async_command_argv(ac, 0, 2, sub, NULL, NULL, NULL), REDTLS_E_INVALID);
    assert_contains(redtls_async_errmsg(ac), "redtls_async_subscribe");
    assert_int_equal(redtls_async_command_argv(ac, 0, 2, psub, NULL, NULL, NULL), REDTLS_E_INVALID);
    assert_int_equal(redtls_async_command(ac, NULL, NULL, "SSUBSCRIBE %s", "x"), REDTLS_E_INVALID);
    redisReply *r = NULL;
    assert_int_equal(redtls_conn_command_argv(conn, 2, sub, NULL, &r), REDTLS_E_INVALID);
    assert_null(r);
    assert_contains(redtls_conn_errmsg(conn), "redtls_subscriber");
    assert_int_equal(redtls_conn_command(conn, &r, "UNSUBSCRIBE"), REDTLS_E_INVALID);
    /* The connection is usable after the refusals (nothing was sent). */
    assert_conn_status(conn, redtls_conn_command(conn, &r, "PING"), REDTLS_OK);
    assert_reply_str(r, REDTLS_REPLY_STATUS, "PONG");
    redtls_reply_free(r);
    redtls_conn_free(conn);
    /* Arguments. */
    assert_int_equal(redtls_async_subscribe(ac, (redtls_sub_kind)9, "x", 1, on_msg, &s), REDTLS_E_INVALID);
    assert_contains(redtls_async_errmsg(ac), "unknown subscription kind 9");
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "x", 0, on_msg, &s), REDTLS_E_INVALID);
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "x", 1, NULL, &s), REDTLS_E_INVALID);
    assert_int_equal(redtls_async_unsubscribe(ac, REDTLS_SUB_CHANNEL, "x", 1), REDTLS_E_STATE);
    assert_contains(redtls_async_errmsg(ac), "not subscribed to that channel");
    /* A command issued before the first subscription gets its reply. */
    int replies = 0;
    assert_int_equal(redtls_async_command(ac, count_reply, &replies, "PING"), REDTLS_OK);
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "x", 1, on_msg, &s), REDTLS_OK);
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "x", 1, on_msg, &s), REDTLS_E_STATE);
    assert_contains(redtls_async_errmsg(ac), "already subscribed to that channel");
    /* RESP2: no ordinary command on a subscribed handle. */
    assert_int_equal(redtls_async_command(ac, count_reply, &replies, "GET k"), REDTLS_E_STATE);
    assert_contains(redtls_async_errmsg(ac), "second handle");
    want w = {&s, 1, 0};
    assert_true(run_until(ac, reached, &w, SCALED(5000)));
    assert_int_equal(replies, 1);
    redtls_async_free(ac);
}

/* A channel the ACL user may not use: that subscription ends with
 * REDTLS_E_REFUSED and the server's words; the allowed one works. */
static void test_acl_refusal(void **state)
{
    (void)state;
    redisReply *r = NULL;
    assert_conn_status(admin,
                       redtls_conn_command(admin, &r, "ACL SETUSER subber on >subber-pass-1 resetchannels &ok* +@all"),
                       REDTLS_OK);
    redtls_reply_free(r);
    redtls_config *cfg = new_cfg(redis.port);
    assert_cfg_status(cfg, redtls_config_set_user(cfg, "subber"), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_token(cfg, "subber-pass-1"), REDTLS_OK);
    redtls_async *ac = NULL;
    assert_cfg_status(cfg, redtls_async_new(cfg, &ac), REDTLS_OK);
    redtls_config_free(cfg);
    seen s[2];
    seen_init(&s[0]);
    seen_init(&s[1]);
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "forbidden", 9, on_msg, &s[0]), REDTLS_OK);
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "ok1", 3, on_msg, &s[1]), REDTLS_OK);
    want w = {&s[0], 1, 2};
    assert_true(run_until(ac, reached, &w, SCALED(5000)));
    assert_int_equal(s[0].unsub_status, REDTLS_E_REFUSED);
    assert_contains(s[0].unsub_detail, "NOPERM");
    assert_int_equal(s[0].subscribed, 0);
    w = (want){&s[1], 1, 0};
    assert_true(run_until(ac, reached, &w, SCALED(5000)));
    assert_int_equal(redtls_async_subscriptions(ac), 1);
    assert_int_equal(publish_n("ok1", 1), 1);
    assert_int_equal(publish_n("forbidden", 1), 0);
    redtls_async_free(ac);
    assert_conn_status(admin, redtls_conn_command(admin, &r, "ACL DELUSER subber"), REDTLS_OK);
    redtls_reply_free(r);
}

/* The blocking subscriber: confirmation before subscribe returns, messages
 * in order, "nothing within the timeout", unsubscribe dropping what waits. */
static void test_blocking_subscriber(void **state)
{
    (void)state;
    redtls_config *cfg = new_cfg(redis.port);
    redtls_subscriber *sub = NULL;
    assert_int_equal(redtls_subscriber_new(cfg, &sub), REDTLS_OK);
    redtls_config_free(cfg);
    redtls_message *m = NULL;
    assert_int_equal(redtls_subscriber_next(sub, 0, &m), REDTLS_E_STATE);
    assert_null(m);
    assert_int_equal(redtls_subscriber_subscribe(sub, REDTLS_SUB_CHANNEL, "b1", 2), REDTLS_OK);
    assert_int_equal(redtls_subscriber_subscribe(sub, REDTLS_SUB_PATTERN, "bp.*", 4), REDTLS_OK);
    /* Subscribed on return: the server counts the receiver at once. */
    for (long long i = 0; i < 50; i++) {
        assert_int_equal(publish_n("b1", i), 1);
        assert_int_equal(publish_n("bp.x", i), 1);
    }
    long long next_b1 = 0, next_bp = 0;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(redtls_subscriber_next(sub, (int)SCALED(5000), &m), REDTLS_OK);
        assert_non_null(m);
        assert_int_equal(redtls_message_type(m), REDTLS_MSG_MESSAGE);
        size_t n = 0;
        const char *p = redtls_message_payload(m, &n);
        long long v = strtoll(p, NULL, 10);
        if (redtls_message_sub_kind(m) == REDTLS_SUB_CHANNEL) {
            assert_int_equal(v, next_b1++);
            assert_string_equal(redtls_message_channel(m, NULL), "b1");
        } else {
            assert_int_equal(v, next_bp++);
            assert_string_equal(redtls_message_channel(m, NULL), "bp.x");
            assert_string_equal(redtls_message_subscription(m, NULL), "bp.*");
        }
        redtls_message_free(m);
    }
    long long t0 = lab_now_ms();
    assert_int_equal(redtls_subscriber_next(sub, 150, &m), REDTLS_OK);
    assert_null(m);
    long long took = lab_now_ms() - t0;
    assert_true(took >= 140 && took < SCALED(150) + 1500);
    /* Messages of b1 waiting when it is unsubscribed are dropped. */
    for (long long i = 0; i < 5; i++) {
        assert_int_equal(publish_n("b1", 100 + i), 1);
        assert_int_equal(publish_n("bp.y", 100 + i), 1);
    }
    assert_int_equal(redtls_subscriber_subscribe(sub, REDTLS_SUB_SHARD, "s{2}", 4), REDTLS_OK);
    assert_true(redtls_subscriber_backlog(sub) > 0);
    assert_int_equal(redtls_subscriber_unsubscribe(sub, REDTLS_SUB_CHANNEL, "b1", 2), REDTLS_OK);
    assert_int_equal(redtls_subscriber_unsubscribe(sub, REDTLS_SUB_CHANNEL, "b1", 2), REDTLS_E_STATE);
    assert_int_equal(publish_n("b1", 200), 0);
    int got = 0;
    while (redtls_subscriber_next(sub, (int)SCALED(500), &m) == REDTLS_OK && m) {
        assert_int_equal(redtls_message_sub_kind(m), REDTLS_SUB_PATTERN);
        got++;
        redtls_message_free(m);
    }
    assert_int_equal(got, 5);
    redtls_subscriber_free(sub);
}

/* ---- restore ---- */

typedef struct evlog {
    int restored_events;
    int disconnected;
    char detail[300];
} evlog;

static void on_event(void *ud, redtls_event_type type, const char *detail)
{
    evlog *e = ud;
    if (type == REDTLS_EVENT_SUBSCRIPTIONS_RESTORED) {
        e->restored_events++;
        snprintf(e->detail, sizeof e->detail, "%s", detail);
    } else if (type == REDTLS_EVENT_DISCONNECTED) {
        e->disconnected++;
    }
}

/* A publisher numbers its messages while the subscriber's connection is
 * cut (fault), the server restarted, or the link frozen: after each, the
 * subscriber reports the gap once and receives again; what it receives
 * is in order and never twice. */
static void restore_walk(int fault)
{
    lab_proxy px = {0};
    assert_int_equal(lab_proxy_start(&px, redis.port), 0);
    redtls_config *cfg = new_cfg(px.port);
    evlog ev = {0};
    assert_cfg_status(cfg, redtls_config_set_event_callback(cfg, on_event, &ev), REDTLS_OK);
    if (fault == 2) {
        /* The keepalive finds the frozen link. */
        assert_cfg_status(cfg, redtls_config_set_health_check_ms(cfg, 200), REDTLS_OK);
        assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, (unsigned)SCALED(500)), REDTLS_OK);
    }
    redtls_subscriber *sub = NULL;
    assert_int_equal(redtls_subscriber_new(cfg, &sub), REDTLS_OK);
    redtls_config_free(cfg);
    assert_int_equal(redtls_subscriber_subscribe(sub, REDTLS_SUB_CHANNEL, "walk", 4), REDTLS_OK);
    assert_int_equal(redtls_subscriber_subscribe(sub, REDTLS_SUB_PATTERN, "walkp.*", 7), REDTLS_OK);
    long long i = 0, last = -1, lastp = -1, received = 0;
    int restored = 0, rounds = 0;
    long long end = lab_now_ms() + SCALED(30000);
    /* Three faults, each followed by the messages flowing again. */
    while (rounds < 3 && lab_now_ms() < end) {
        for (int k = 0; k < 20; k++, i++) {
            publish_n("walk", i);
            publish_n("walkp.q", i);
        }
        redtls_message *m = NULL;
        while (redtls_subscriber_next(sub, 50, &m) == REDTLS_OK && m) {
            int type = redtls_message_type(m);
            if (type == REDTLS_MSG_RESTORED) {
                restored++;
            } else {
                assert_int_equal(type, REDTLS_MSG_MESSAGE);
                long long v = strtoll(redtls_message_payload(m, NULL), NULL, 10);
                long long *lp = redtls_message_sub_kind(m) == REDTLS_SUB_CHANNEL ? &last : &lastp;
                if (v <= *lp)
                    fail_msg("message %lld after %lld: out of order or twice", v, *lp);
                *lp = v;
                received++;
            }
            redtls_message_free(m);
        }
        /* Flowing (the last batch arrived whole): the next fault. */
        if (last == i - 1 && lastp == i - 1 && restored == 2 * rounds) {
            rounds++;
            if (fault == 0)
                lab_proxy_cut_all(&px, 1);
            else if (fault == 1)
                assert_int_equal(lab_redis_restart(&redis, &redis_opts), 0);
            else
                lab_proxy_freeze_all(&px);
            if (fault == 1) {
                redtls_conn_free(admin);
                lab_client_admin(&admin, "localhost", redis.port, TOKEN, 0);
            }
        }
    }
    /* The last fault's restore, and messages after it. */
    while (lab_now_ms() < end && !(restored == 6 && last == i - 1 && lastp == i - 1)) {
        for (int k = 0; k < 5; k++, i++) {
            publish_n("walk", i);
            publish_n("walkp.q", i);
        }
        redtls_message *m = NULL;
        while (redtls_subscriber_next(sub, 50, &m) == REDTLS_OK && m) {
            if (redtls_message_type(m) == REDTLS_MSG_RESTORED) {
                restored++;
            } else {
                long long v = strtoll(redtls_message_payload(m, NULL), NULL, 10);
                long long *lp = redtls_message_sub_kind(m) == REDTLS_SUB_CHANNEL ? &last : &lastp;
                if (v <= *lp)
                    fail_msg("message %lld after %lld: out of order or twice", v, *lp);
                *lp = v;
                received++;
            }
            redtls_message_free(m);
        }
    }
    print_message("fault %d: %lld published per channel, %lld received, %d restores, %d restore events\n", fault, i,
                  received, restored, ev.restored_events);
    assert_int_equal(rounds, 3);
    /* Two subscriptions, three faults: one notice each per fault. */
    assert_int_equal(restored, 6);
    assert_int_equal(ev.restored_events, 3);
    assert_contains(ev.detail, "2 subscriptions restored");
    assert_int_equal(last, i - 1);
    assert_int_equal(lastp, i - 1);
    assert_true(ev.disconnected >= 3);
    redtls_subscriber_free(sub);
    lab_proxy_stop(&px);
}

static void test_restore_after_cut(void **state)
{
    (void)state;
    restore_walk(0);
}

static void test_restore_after_restart(void **state)
{
    (void)state;
    restore_walk(1);
}

static void test_restore_after_silent_link(void **state)
{
    (void)state;
    restore_walk(2);
}

/* ---- review: calls from inside callbacks ---- */

typedef struct chain {
    seen first, second;
    redtls_status sub_st, unsub_st;
    int unsubscribe_first; /* from the second's SUBSCRIBED: unsubscribe the first */
} chain;

static void on_second(redtls_async *ac, const redtls_message *m, void *ud)
{
    chain *c = ud;
    on_msg(ac, m, &c->second);
    if (redtls_message_type(m) == REDTLS_MSG_SUBSCRIBED && c->unsubscribe_first)
        c->unsub_st = redtls_async_unsubscribe(ac, REDTLS_SUB_CHANNEL, "chain1", 6);
}

static void on_first(redtls_async *ac, const redtls_message *m, void *ud)
{
    chain *c = ud;
    on_msg(ac, m, &c->first);
    if (redtls_message_type(m) == REDTLS_MSG_SUBSCRIBED) {
        c->sub_st = redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "chain2", 6, on_second, c);
        if (c->sub_st != REDTLS_OK)
            print_message("subscribe from the SUBSCRIBED callback: %s\n", redtls_async_errmsg(ac));
    }
}

static int chain_done(void *ud)
{
    chain *c = ud;
    return c->second.subscribed && (!c->unsubscribe_first || c->first.unsubscribed);
}

/* pubsub.h: "The callback may subscribe, unsubscribe". A subscription
 * made from a SUBSCRIBED notice (the loop has just taken a reply, so the
 * command is framed straight into the connection's buffer) must be sent,
 * and so must an unsubscribe made from the next one. */
static void test_subscribe_from_callback(void **state)
{
    (void)state;
    redtls_config *cfg = new_cfg(redis.port);
    redtls_async *ac = NULL;
    assert_cfg_status(cfg, redtls_async_new(cfg, &ac), REDTLS_OK);
    redtls_config_free(cfg);
    chain c;
    memset(&c, 0, sizeof c);
    seen_init(&c.first);
    seen_init(&c.second);
    c.unsubscribe_first = 1;
    c.sub_st = c.unsub_st = (redtls_status)-1;
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "chain1", 6, on_first, &c), REDTLS_OK);
    run_until(ac, chain_done, &c, SCALED(3000));
    assert_int_equal(c.first.subscribed, 1);
    assert_int_equal(c.sub_st, REDTLS_OK);
    assert_int_equal(c.second.subscribed, 1);
    assert_int_equal(c.unsub_st, REDTLS_OK);
    assert_int_equal(c.first.unsubscribed, 1);
    assert_int_equal(c.first.unsub_status, REDTLS_OK);
    assert_int_equal(publish_n("chain2", 1), 1);
    assert_int_equal(publish_n("chain1", 1), 0);
    redtls_async_free(ac);
}

typedef struct reply_seen {
    int n;
    redtls_status st;
    int type;
    char str[64];
} reply_seen;

static void keep_reply(redtls_async *ac, redtls_status st, redisReply *r, void *ud)
{
    (void)ac;
    reply_seen *rs = ud;
    rs->n++;
    rs->st = st;
    rs->type = r ? redtls_reply_type(r) : -1;
    size_t n = 0;
    const char *p = r ? redtls_reply_str(r, &n) : NULL;
    snprintf(rs->str, sizeof rs->str, "%.*s", (int)n, p ? p : "");
    redtls_reply_free(r);
}

static int connected(void *ud)
{
    return redtls_async_is_connected(ud);
}

static int replied(void *ud)
{
    return ((reply_seen *)ud)->n > 0;
}

typedef struct then_echo {
    seen s;
    reply_seen rs;
    redtls_status echo_st;
} then_echo;

/* After its UNSUBSCRIBED notice the handle has no subscription left: the
 * callback uses it for an ordinary command (allowed again under RESP2). */
static void on_then_echo(redtls_async *ac, const redtls_message *m, void *ud)
{
    then_echo *t = ud;
    on_msg(ac, m, &t->s);
    if (redtls_message_type(m) == REDTLS_MSG_UNSUBSCRIBED)
        t->echo_st = redtls_async_command(ac, keep_reply, &t->rs, "ECHO %s", "mine");
}

/* RESP2: a subscription ended before its confirmation was read, with a
 * message published in between (SUBSCRIBE written in one pass, UNSUBSCRIBE
 * in a later one). The message must not be taken for the UNSUBSCRIBE's
 * confirmation, and the next ordinary command must get its own reply, not
 * the server's late unsubscribe confirmation. */
static void test_unsubscribe_before_confirmation(void **state)
{
    (void)state;
    redtls_config *cfg = new_cfg(redis.port);
    redtls_async *ac = NULL;
    assert_cfg_status(cfg, redtls_async_new(cfg, &ac), REDTLS_OK);
    redtls_config_free(cfg);
    assert_int_equal(redtls_async_connect(ac, NULL, NULL), REDTLS_OK);
    assert_true(run_until(ac, connected, ac, SCALED(3000)));
    then_echo t;
    memset(&t, 0, sizeof t);
    seen_init(&t.s);
    t.echo_st = (redtls_status)-1;
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "race1", 5, on_then_echo, &t), REDTLS_OK);
    /* One pass writes the SUBSCRIBE; nothing is read yet. */
    assert_int_equal(redtls_async_process(ac, 0), REDTLS_OK);
    long long end = lab_now_ms() + SCALED(2000);
    long long receivers = 0;
    while ((receivers = publish_n("race1", 7)) == 0 && lab_now_ms() < end)
        ;
    assert_int_equal(receivers, 1); /* the server holds the subscription, the message is on its way */
    assert_int_equal(redtls_async_unsubscribe(ac, REDTLS_SUB_CHANNEL, "race1", 5), REDTLS_OK);
    assert_true(run_until(ac, replied, &t.rs, SCALED(3000)));
    assert_int_equal(t.s.unsubscribed, 1);
    assert_int_equal(t.s.unsub_status, REDTLS_OK);
    assert_int_equal(t.echo_st, REDTLS_OK);
    assert_int_equal(t.rs.st, REDTLS_OK);
    assert_int_equal(t.rs.type, REDTLS_REPLY_STRING);
    assert_string_equal(t.rs.str, "mine");
    redtls_async_free(ac);
}

typedef struct restore_pair {
    seen a, b;
    redtls_status unsub_st;
} restore_pair;

static void on_pair_b(redtls_async *ac, const redtls_message *m, void *ud)
{
    on_msg(ac, m, &((restore_pair *)ud)->b);
}

/* A's RESTORED notice ends B, whose restore is under way. */
static void on_pair_a(redtls_async *ac, const redtls_message *m, void *ud)
{
    restore_pair *p = ud;
    on_msg(ac, m, &p->a);
    if (redtls_message_type(m) == REDTLS_MSG_RESTORED)
        p->unsub_st = redtls_async_unsubscribe(ac, REDTLS_SUB_CHANNEL, "pairb", 5);
}

static int pair_subscribed(void *ud)
{
    restore_pair *p = ud;
    return p->a.subscribed && p->b.subscribed;
}

static int pair_settled(void *ud)
{
    restore_pair *p = ud;
    return p->a.restored && p->b.unsubscribed;
}

/* pubsub.h: after a restore the event callback gets
 * REDTLS_EVENT_SUBSCRIPTIONS_RESTORED. A subscription ended while the
 * restore is under way must not swallow the event (async_pubsub.c counts
 * it out of 'restoring' in end_sub but only compares the counts when a
 * confirmation comes), nor leave counts behind that make the next
 * restore's event report more subscriptions than there are. */
static void test_restore_event_with_unsubscribe(void **state)
{
    (void)state;
    lab_proxy px = {0};
    assert_int_equal(lab_proxy_start(&px, redis.port), 0);
    redtls_config *cfg = new_cfg(px.port);
    evlog ev = {0};
    assert_cfg_status(cfg, redtls_config_set_event_callback(cfg, on_event, &ev), REDTLS_OK);
    redtls_async *ac = NULL;
    assert_cfg_status(cfg, redtls_async_new(cfg, &ac), REDTLS_OK);
    redtls_config_free(cfg);
    restore_pair p;
    memset(&p, 0, sizeof p);
    seen_init(&p.a);
    seen_init(&p.b);
    p.unsub_st = (redtls_status)-1;
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "paira", 5, on_pair_a, &p), REDTLS_OK);
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "pairb", 5, on_pair_b, &p), REDTLS_OK);
    assert_true(run_until(ac, pair_subscribed, &p, SCALED(5000)));
    lab_proxy_cut_all(&px, 1);
    assert_true(run_until(ac, pair_settled, &p, SCALED(5000)));
    assert_int_equal(p.unsub_st, REDTLS_OK);
    assert_int_equal(p.b.unsub_status, REDTLS_OK);
    redtls_async_run(&ac, 1, 200);
    assert_int_equal(ev.restored_events, 1);
    /* A second cut: one subscription left, one restored. */
    lab_proxy_cut_all(&px, 1);
    long long end = lab_now_ms() + SCALED(5000);
    while (p.a.restored < 2 && lab_now_ms() < end)
        redtls_async_run(&ac, 1, 20);
    assert_int_equal(p.a.restored, 2);
    redtls_async_run(&ac, 1, 200);
    assert_int_equal(ev.restored_events, 2);
    assert_contains(ev.detail, "1 subscriptions restored");
    redtls_async_free(ac);
    lab_proxy_stop(&px);
}

/* Reconnect limits (redtls.h: "Gives up after max_attempts consecutive
 * failed attempts ... until redtls_conn_connect() is called"; pubsub.h:
 * redtls_subscriber_next returns REDTLS_E_UNAVAILABLE once they are
 * exhausted, and the next call starts again). A subscriber whose server
 * refuses every new connection makes its attempts, gives up and stops
 * dialling; once the server is back, the next call restores, and a call
 * that finds nothing to deliver on a restored connection is no error. */
static void test_subscriber_reconnect_limits(void **state)
{
    (void)state;
    lab_proxy px = {0};
    assert_int_equal(lab_proxy_start(&px, redis.port), 0);
    redtls_config *cfg = new_cfg(px.port);
    assert_cfg_status(cfg, redtls_config_set_reconnect_limits(cfg, 2, 0), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_backoff(cfg, 20, 40), REDTLS_OK);
    redtls_subscriber *sub = NULL;
    assert_int_equal(redtls_subscriber_new(cfg, &sub), REDTLS_OK);
    redtls_config_free(cfg);
    assert_int_equal(redtls_subscriber_subscribe(sub, REDTLS_SUB_CHANNEL, "gu", 2), REDTLS_OK);
    lab_fault refuse = {.kind = LAB_FAULT_CUT, .dir = LAB_C2S, .after = 0, .rst = 1};
    lab_proxy_set(&px, &refuse);
    lab_proxy_cut_all(&px, 1);
    unsigned long long before = lab_proxy_get_stats(&px).accepted;
    redtls_message *m = NULL;
    assert_int_equal(redtls_subscriber_next(sub, (int)SCALED(1500), &m), REDTLS_E_UNAVAILABLE);
    assert_null(m);
    unsigned long long attempts = lab_proxy_get_stats(&px).accepted - before;
    print_message("attempts within one next() after the cut: %llu (limit 2)\n", attempts);
    assert_true(attempts <= 3);
    /* The server is reachable again: the next call restores. */
    lab_proxy_set(&px, NULL);
    assert_int_equal(redtls_subscriber_next(sub, (int)SCALED(3000), &m), REDTLS_OK);
    assert_non_null(m);
    assert_int_equal(redtls_message_type(m), REDTLS_MSG_RESTORED);
    redtls_message_free(m);
    assert_int_equal(publish_n("gu", 1), 1);
    assert_int_equal(redtls_subscriber_next(sub, (int)SCALED(3000), &m), REDTLS_OK);
    assert_non_null(m);
    assert_int_equal(redtls_message_type(m), REDTLS_MSG_MESSAGE);
    redtls_message_free(m);
    assert_int_equal(redtls_subscriber_next(sub, 100, &m), REDTLS_OK);
    assert_null(m);
    redtls_subscriber_free(sub);
    lab_proxy_stop(&px);
}

/* Every redtls_* function a message tells the user to call exists in the
 * library (looked up among its exported symbols). */
static void assert_names_exist(const char *msg)
{
    for (const char *p = strstr(msg, "redtls_"); p; p = strstr(p, "redtls_")) {
        char name[96];
        size_t n = 0;
        while (n + 1 < sizeof name && (p[n] == '_' || (p[n] >= 'a' && p[n] <= 'z') || (p[n] >= '0' && p[n] <= '9'))) {
            name[n] = p[n];
            n++;
        }
        name[n] = '\0';
        p += n;
        if (strcmp(name, "redtls_subscriber") == 0)
            continue; /* the type */
        if (!dlsym(RTLD_DEFAULT, name))
            fail_msg("the message names %s, which the library does not have: %s", name, msg);
    }
}

/* The RESP2 refusal of a command on a subscribed handle names its way out:
 * it must name functions that exist. It advises
 * redtls_config_set_protocol (and pubsub.h documents RESP3 through it),
 * which redtls does not have (redtls.h: "redtls speaks RESP2"). */
static void test_refusal_names_real_functions(void **state)
{
    (void)state;
    redtls_config *cfg = new_cfg(redis.port);
    redtls_async *ac = NULL;
    assert_cfg_status(cfg, redtls_async_new(cfg, &ac), REDTLS_OK);
    redtls_config_free(cfg);
    seen s;
    seen_init(&s);
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "names", 5, on_msg, &s), REDTLS_OK);
    assert_int_equal(redtls_async_command(ac, NULL, NULL, "GET k"), REDTLS_E_STATE);
    assert_names_exist(redtls_async_errmsg(ac));
    const char *sub[2] = {"SUBSCRIBE", "x"};
    redtls_async_free(ac);
    cfg = new_cfg(redis.port);
    assert_cfg_status(cfg, redtls_async_new(cfg, &ac), REDTLS_OK);
    redtls_config_free(cfg);
    assert_int_equal(redtls_async_command_argv(ac, 0, 2, sub, NULL, NULL, NULL), REDTLS_E_INVALID);
    assert_names_exist(redtls_async_errmsg(ac));
    redtls_async_free(ac);
}

/* No command timeout: the keepalive PING must still be answered, within
 * the keepalive interval, or the link counts as dead. */
static void test_silent_link_without_command_timeout(void **state)
{
    (void)state;
    lab_proxy px = {0};
    assert_int_equal(lab_proxy_start(&px, redis.port), 0);
    redtls_config *cfg = new_cfg(px.port);
    assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, 0), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_health_check_ms(cfg, (unsigned)SCALED(200)), REDTLS_OK);
    redtls_subscriber *sub = NULL;
    assert_int_equal(redtls_subscriber_new(cfg, &sub), REDTLS_OK);
    redtls_config_free(cfg);
    assert_int_equal(redtls_subscriber_subscribe(sub, REDTLS_SUB_CHANNEL, "quiet", 5), REDTLS_OK);
    lab_proxy_freeze_all(&px);
    long long t0 = lab_now_ms();
    redtls_message *m = NULL;
    assert_int_equal(redtls_subscriber_next(sub, (int)SCALED(5000), &m), REDTLS_OK);
    assert_non_null(m);
    assert_int_equal(redtls_message_type(m), REDTLS_MSG_RESTORED);
    redtls_message_free(m);
    long long took = lab_now_ms() - t0;
    print_message("restored %lld ms after the link froze (keepalive 200 ms)\n", took);
    /* Two keepalives to notice, then a reconnect (TLS, AUTH, SUBSCRIBE)
     * that under valgrind is slower too. */
    assert_true(took < SCALED(200) * 2 + SCALED(1500));
    /* The frozen connection still counts at the server (its socket stays
     * open there), so 2. */
    assert_true(publish_n("quiet", 7) >= 1);
    assert_int_equal(redtls_subscriber_next(sub, (int)SCALED(3000), &m), REDTLS_OK);
    assert_non_null(m);
    assert_int_equal(redtls_message_type(m), REDTLS_MSG_MESSAGE);
    redtls_message_free(m);
    redtls_subscriber_free(sub);
    lab_proxy_stop(&px);
}

/* Reconnection off: a lost connection leaves the subscriptions waiting for
 * redtls_async_connect; the built-in loop does not wait for them, an
 * unsubscribe ends one without a connection, and connecting restores the
 * rest. */
static void test_reconnect_off(void **state)
{
    (void)state;
    lab_proxy px = {0};
    assert_int_equal(lab_proxy_start(&px, redis.port), 0);
    redtls_config *cfg = new_cfg(px.port);
    assert_cfg_status(cfg, redtls_config_set_reconnect(cfg, 0), REDTLS_OK);
    redtls_async *ac = NULL;
    assert_cfg_status(cfg, redtls_async_new(cfg, &ac), REDTLS_OK);
    redtls_config_free(cfg);
    seen s[2];
    seen_init(&s[0]);
    seen_init(&s[1]);
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "off1", 4, on_msg, &s[0]), REDTLS_OK);
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "off2", 4, on_msg, &s[1]), REDTLS_OK);
    want w = {s, 2, 0};
    assert_true(run_until(ac, reached, &w, SCALED(5000)));
    lab_proxy_cut_all(&px, 1);
    long long end = lab_now_ms() + SCALED(5000);
    while (redtls_async_is_connected(ac) && lab_now_ms() < end)
        redtls_async_run(&ac, 1, 20);
    assert_false(redtls_async_is_connected(ac));
    unsigned long long accepted = lab_proxy_get_stats(&px).accepted;
    long long t0 = lab_now_ms();
    assert_int_equal(redtls_async_run(&ac, 1, (int)SCALED(5000)), REDTLS_OK);
    assert_true(lab_now_ms() - t0 < SCALED(1000));
    assert_int_equal(redtls_async_unsubscribe(ac, REDTLS_SUB_CHANNEL, "off1", 4), REDTLS_OK);
    assert_int_equal(s[0].unsubscribed, 0);
    assert_int_equal(redtls_async_run(&ac, 1, (int)SCALED(5000)), REDTLS_OK);
    assert_int_equal(s[0].unsubscribed, 1);
    assert_int_equal(s[0].unsub_status, REDTLS_OK);
    assert_int_equal(lab_proxy_get_stats(&px).accepted, accepted);
    assert_int_equal(redtls_async_connect(ac, NULL, NULL), REDTLS_OK);
    w = (want){&s[1], 1, 3};
    assert_true(run_until(ac, reached, &w, SCALED(5000)));
    assert_int_equal(publish_n("off2", 3), 1);
    assert_int_equal(publish_n("off1", 3), 0);
    redtls_async_free(ac);
    lab_proxy_stop(&px);
}

/* ---- RESP3 (hiredis 1.x builds; scripts/test.sh hiredis1) ---- */

static int push_count;
static char push_kind[32];

static void on_push(void *ud, const struct redisReply *push)
{
    (void)ud;
    push_count++;
    const redisReply *k = redtls_reply_element(push, 0);
    size_t n = 0;
    const char *w = k ? redtls_reply_str(k, &n) : NULL;
    snprintf(push_kind, sizeof push_kind, "%.*s", (int)n, w ? w : "");
}

static void store_reply(redtls_async *ac, redtls_status st, redisReply *r, void *ud)
{
    (void)ac;
    redisReply **out = ud;
    assert_int_equal(st, REDTLS_OK);
    *out = r;
}

static int got_reply(void *ud)
{
    return *(redisReply **)ud != NULL;
}

/* Under RESP3 messages come as pushes: the same subscriptions work, and
 * ordinary commands share the handle; other pushes (a tracking
 * invalidation) still reach the push callback, and a cut connection is
 * restored as under RESP2. */
static void test_resp3(void **state)
{
    (void)state;
    if (!redtls_protocol_supported(3)) {
        print_message("skipped: this build uses hiredis 0.14, which cannot parse RESP3 (scripts/test.sh hiredis1 "
                      "runs it against hiredis 1.2.0)\n");
        skip();
    }
    lab_proxy px = {0};
    assert_int_equal(lab_proxy_start(&px, redis.port), 0);
    redtls_config *cfg = new_cfg(px.port);
    assert_cfg_status(cfg, redtls_config_set_protocol(cfg, 3), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_push_callback(cfg, on_push, NULL), REDTLS_OK);
    redtls_async *ac = NULL;
    assert_cfg_status(cfg, redtls_async_new(cfg, &ac), REDTLS_OK);
    redtls_config_free(cfg);
    seen s[3];
    for (int i = 0; i < 3; i++)
        seen_init(&s[i]);
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "r3", 2, on_msg, &s[0]), REDTLS_OK);
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_PATTERN, "r3p.*", 5, on_msg, &s[1]), REDTLS_OK);
    assert_int_equal(redtls_async_subscribe(ac, REDTLS_SUB_SHARD, "r3s", 3, on_msg, &s[2]), REDTLS_OK);
    /* A command on the same handle, subscribed (RESP2 refuses this). */
    redisReply *r = NULL;
    assert_int_equal(redtls_async_command(ac, store_reply, &r, "CLIENT TRACKING on"), REDTLS_OK);
    assert_true(run_until(ac, got_reply, &r, SCALED(5000)));
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_STATUS);
    redtls_reply_free(r);
    want w = {s, 3, 0};
    assert_true(run_until(ac, reached, &w, SCALED(5000)));
    r = NULL;
    assert_int_equal(redtls_async_command(ac, store_reply, &r, "GET r3key"), REDTLS_OK);
    assert_true(run_until(ac, got_reply, &r, SCALED(5000)));
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_NIL);
    redtls_reply_free(r);
    for (long long i = 0; i < 100; i++) {
        assert_int_equal(publish_n("r3", i), 1);
        assert_int_equal(publish_n("r3p.x", i), 1);
        char p[32];
        int n = snprintf(p, sizeof p, "%lld", i);
        assert_int_equal(publish("SPUBLISH", "r3s", p, (size_t)n), 1);
    }
    /* Interleaved with the messages: a command's reply, and the tracking
     * invalidation the write of r3key causes. */
    redisReply *set = NULL;
    assert_conn_status(admin, redtls_conn_command(admin, &set, "SET r3key v"), REDTLS_OK);
    redtls_reply_free(set);
    r = NULL;
    assert_int_equal(redtls_async_command(ac, store_reply, &r, "PING"), REDTLS_OK);
    w.field = 1;
    assert_true(run_until(ac, reached, &w, SCALED(5000)));
    assert_true(run_until(ac, got_reply, &r, SCALED(5000)));
    assert_reply_str(r, REDTLS_REPLY_STATUS, "PONG");
    redtls_reply_free(r);
    long long end = lab_now_ms() + SCALED(5000);
    while (push_count < 1 && lab_now_ms() < end)
        redtls_async_run(&ac, 1, 20);
    assert_int_equal(push_count, 1);
    assert_string_equal(push_kind, "invalidate");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(s[i].messages, 100);
        assert_int_equal(s[i].out_of_order, 0);
    }
    assert_string_equal(s[1].channel, "r3p.x");
    /* A cut: restored, once each. */
    lab_proxy_cut_all(&px, 1);
    w.field = 3;
    end = lab_now_ms() + SCALED(10000);
    while (!reached(&w) && lab_now_ms() < end)
        redtls_async_run(&ac, 1, 20);
    for (int i = 0; i < 3; i++)
        assert_int_equal(s[i].restored, 1);
    assert_int_equal(publish_n("r3", 500), 1);
    end = lab_now_ms() + SCALED(5000);
    while (s[0].last != 500 && lab_now_ms() < end)
        redtls_async_run(&ac, 1, 20);
    assert_int_equal(s[0].last, 500);
    /* Unsubscribe with commands in flight around it. */
    r = NULL;
    assert_int_equal(redtls_async_unsubscribe(ac, REDTLS_SUB_PATTERN, "r3p.*", 5), REDTLS_OK);
    assert_int_equal(redtls_async_command(ac, store_reply, &r, "ECHO after"), REDTLS_OK);
    w = (want){&s[1], 1, 2};
    assert_true(run_until(ac, reached, &w, SCALED(5000)));
    assert_true(run_until(ac, got_reply, &r, SCALED(5000)));
    assert_reply_str(r, REDTLS_REPLY_STRING, "after");
    redtls_reply_free(r);
    assert_int_equal(publish_n("r3p.x", 501), 0);
    redtls_async_free(ac);
    lab_proxy_stop(&px);

    /* The blocking subscriber under RESP3. */
    cfg = new_cfg(redis.port);
    assert_cfg_status(cfg, redtls_config_set_protocol(cfg, 3), REDTLS_OK);
    redtls_subscriber *sub = NULL;
    assert_int_equal(redtls_subscriber_new(cfg, &sub), REDTLS_OK);
    redtls_config_free(cfg);
    assert_int_equal(redtls_subscriber_subscribe(sub, REDTLS_SUB_CHANNEL, "r3b", 3), REDTLS_OK);
    for (long long i = 0; i < 20; i++)
        assert_int_equal(publish_n("r3b", i), 1);
    for (long long i = 0; i < 20; i++) {
        redtls_message *m = NULL;
        assert_int_equal(redtls_subscriber_next(sub, (int)SCALED(5000), &m), REDTLS_OK);
        assert_non_null(m);
        assert_int_equal(strtoll(redtls_message_payload(m, NULL), NULL, 10), i);
        redtls_message_free(m);
    }
    redtls_subscriber_free(sub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_async_kinds),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_acl_refusal),
        cmocka_unit_test(test_blocking_subscriber),
        cmocka_unit_test(test_restore_after_cut),
        cmocka_unit_test(test_restore_after_restart),
        cmocka_unit_test(test_restore_after_silent_link),
        cmocka_unit_test(test_subscribe_from_callback),
        cmocka_unit_test(test_unsubscribe_before_confirmation),
        cmocka_unit_test(test_restore_event_with_unsubscribe),
        cmocka_unit_test(test_subscriber_reconnect_limits),
        cmocka_unit_test(test_refusal_names_real_functions),
        cmocka_unit_test(test_silent_link_without_command_timeout),
        cmocka_unit_test(test_reconnect_off),
        cmocka_unit_test(test_resp3),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/* Sharded Pub/Sub on the asynchronous cluster client
 * (redtls_async_cluster_ssubscribe, include/redtls/pubsub.h) against a
 * TLS + AUTH lab cluster of 3 masters with a replica each: channels on
 * every master, then a channel's slot migrated to another master (the
 * server ends the subscription with SUNSUBSCRIBE), a CLUSTER FAILOVER of
 * its master, and a kill -9 of its master. After each the subscription
 * is restored once (REDTLS_MSG_RESTORED) and messages published at the new
 * owner keep arriving, in order, none twice. SPUBLISH is sent through
 * the owner's admin socket, whose answer counts the receivers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <redtls/pubsub.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_cluster.h"
#include "lab_cluster_client.h"

#define TOKEN "lab-ClusterPubSub-Token-81f4"

static lab_cluster lc;

typedef struct seen {
    int subscribed, restored, unsubscribed, messages, out_of_order;
    redtls_status unsub_status;
    long long last;
    char channel[64];
} seen;

static void on_msg(redtls_async_cluster *acl, const redtls_message *m, void *ud)
{
    (void)acl;
    seen *s = ud;
    assert_int_equal(redtls_message_sub_kind(m), REDTLS_SUB_SHARD);
    switch (redtls_message_type(m)) {
    case REDTLS_MSG_SUBSCRIBED: s->subscribed++; break;
    case REDTLS_MSG_RESTORED: s->restored++; break;
    case REDTLS_MSG_UNSUBSCRIBED:
        s->unsubscribed++;
        s->unsub_status = redtls_message_status(m);
        break;
    default: {
        s->messages++;
        size_t n = 0;
        const char *ch = redtls_message_channel(m, &n);
        snprintf(s->channel, sizeof s->channel, "%.*s", (int)n, ch);
        long long v = strtoll(redtls_message_payload(m, NULL), NULL, 10);
        if (v <= s->last)
            s->out_of_order++;
        s->last = v;
    }
    }
}

static void seen_init(seen *s)
{
    memset(s, 0, sizeof *s);
    s->last = -1;
}

static redtls_async_cluster *new_acl(void)
{
    redtls_config *cfg = lab_cluster_client_config(&lc, TOKEN, NULL, 2000);
    assert_cfg_status(cfg, redtls_config_set_connect_timeout_ms(cfg, 1000), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_backoff(cfg, 50, 500), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_health_check_ms(cfg, 500), REDTLS_OK);
    char seeds[256];
    snprintf(seeds, sizeof seeds, "%s:%u,%s:%u", lc.node[0].hostname, (unsigned)lc.node[0].srv.port,
             lc.node[1].hostname, (unsigned)lc.node[1].srv.port);
    redtls_async_cluster *acl = NULL;
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, seeds, &acl), REDTLS_OK);
    redtls_config_free(cfg);
    return acl;
}

/* SPUBLISH at the slot's master: the receivers it counts, or -1 when no
 * node owns the slot right now (a failover under way). */
static long long spublish(const char *ch, long long i)
{
    int m = lab_cluster_master_of(&lc, redtls_cluster_key_slot(ch, strlen(ch)));
    if (m < 0 || !lc.node[m].alive)
        return -1;
    redisReply *r = NULL;
    char p[32];
    snprintf(p, sizeof p, "%lld", i);
    if (lab_cluster_admin(&lc, (size_t)m, &r, "SPUBLISH %s %s", ch, p) != 0)
        return -1;
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return n;
}

static void run_ms(redtls_async_cluster *acl, int ms)
{
    (void)redtls_async_cluster_run(acl, ms);
}

/* Runs until s has got at least `field` of something. */
static int wait_for(redtls_async_cluster *acl, const int *field, int want, long long ms)
{
    long long end = lab_now_ms() + ms;
    while (*field < want && lab_now_ms() < end)
        run_ms(acl, 20);
    return *field >= want;
}

static int group_setup(void **state)
{
    (void)state;
    if (lab_init(280) != 0 || lab_certs(NULL) == NULL)
        return -1;
    lab_cluster_opts o = lab_cluster_default_opts();
    o.password = TOKEN;
    if (lab_cluster_start(&lc, &o) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    lab_cluster_stop(&lc);
    return 0;
}

/* A channel whose slot is served by master m (found by trying names). */
static void channel_on(int m, char *out, size_t cap)
{
    for (int i = 0; i < 100000; i++) {
        snprintf(out, cap, "shard-%d", i);
        if (lab_cluster_master_of(&lc, redtls_cluster_key_slot(out, strlen(out))) == m)
            return;
    }
    fail_msg("no channel found for master %d", m);
}

/* One channel on each master: 100 numbered messages each, in order; after
 * SUNSUBSCRIBE its master counts no receiver. */
static void test_every_master(void **state)
{
    (void)state;
    redtls_async_cluster *acl = new_acl();
    char ch[3][32];
    seen s[3];
    for (int m = 0; m < 3; m++) {
        channel_on(m, ch[m], sizeof ch[m]);
        seen_init(&s[m]);
        assert_int_equal(redtls_async_cluster_ssubscribe(acl, ch[m], strlen(ch[m]), on_msg, &s[m]), REDTLS_OK);
    }
    assert_int_equal(redtls_async_cluster_ssubscribe(acl, ch[0], strlen(ch[0]), on_msg, &s[0]), REDTLS_E_STATE);
    assert_int_equal(redtls_async_cluster_subscriptions(acl), 3);
    for (int m = 0; m < 3; m++)
        assert_true(wait_for(acl, &s[m].subscribed, 1, 10000));
    for (long long i = 0; i < 100; i++)
        for (int m = 0; m < 3; m++)
            assert_int_equal(spublish(ch[m], i), 1);
    for (int m = 0; m < 3; m++) {
        assert_true(wait_for(acl, &s[m].messages, 100, 10000));
        assert_int_equal(s[m].out_of_order, 0);
        assert_string_equal(s[m].channel, ch[m]);
    }
    assert_int_equal(redtls_async_cluster_sunsubscribe(acl, ch[1], strlen(ch[1])), REDTLS_OK);
    assert_int_equal(redtls_async_cluster_sunsubscribe(acl, ch[1], strlen(ch[1])), REDTLS_E_STATE);
    assert_true(wait_for(acl, &s[1].unsubscribed, 1, 10000));
    assert_int_equal(s[1].unsub_status, REDTLS_OK);
    assert_int_equal(spublish(ch[1], 1000), 0);
    assert_int_equal(redtls_async_cluster_subscriptions(acl), 2);
    redtls_async_cluster_free(acl);
    assert_int_equal(s[0].unsub_status, REDTLS_E_CLOSED);
    assert_int_equal(s[2].unsubscribed, 1);
    assert_int_equal(spublish(ch[0], 1001), 0);
}

/* Publishes numbered messages (each published once, at whichever master
 * owns the slot then) until the subscriber has seen `restores` restores
 * and the last few messages; returns the number published. */
static long long publish_until(redtls_async_cluster *acl, const char *ch, seen *s, long long from, int restores,
                               long long ms)
{
    long long i = from, end = lab_now_ms() + ms;
    while (lab_now_ms() < end) {
        if (spublish(ch, i) >= 0)
            i++;
        run_ms(acl, 20);
        if (s->restored >= restores && s->last == i - 1 && i - from > 20)
            break;
    }
    return i;
}

/* The channel's slot moves to another master, then its master fails over
 * (CLUSTER FAILOVER), then the new master is killed: the subscription
 * follows each time. */
static void test_follows_its_slot(void **state)
{
    (void)state;
    redtls_async_cluster *acl = new_acl();
    char ch[32];
    channel_on(0, ch, sizeof ch);
    unsigned slot = redtls_cluster_key_slot(ch, strlen(ch));
    seen s;
    seen_init(&s);
    assert_int_equal(redtls_async_cluster_ssubscribe(acl, ch, strlen(ch), on_msg, &s), REDTLS_OK);
    assert_true(wait_for(acl, &s.subscribed, 1, 10000));
    long long i = publish_until(acl, ch, &s, 0, 0, 5000);
    assert_int_equal(s.last, i - 1);

    /* 1. Resharding: the slot goes from master 0 to master 1. */
    assert_int_equal(lab_cluster_migrate_begin(&lc, slot, 0, 1), 0);
    assert_true(lab_cluster_migrate_keys(&lc, slot, 0, 1, 100) >= 0);
    assert_int_equal(lab_cluster_migrate_end(&lc, slot, 0, 1), 0);
    assert_int_equal(lab_cluster_wait_ok(&lc, 20000), 0);
    i = publish_until(acl, ch, &s, i, 1, 20000);
    print_message("after resharding: %lld published, %d received, restored %d\n", i, s.messages, s.restored);
    assert_int_equal(s.restored, 1);
    assert_int_equal(s.last, i - 1);
    assert_int_equal(spublish(ch, i++), 1);

    /* 2. CLUSTER FAILOVER of master 1 by its replica. */
    int r = lab_cluster_replica_of(&lc, 1);
    assert_true(r >= 0);
    assert_int_equal(lab_cluster_failover(&lc, (size_t)r, 20000), 0);
    i = publish_until(acl, ch, &s, i, 1, 20000);
    print_message("after CLUSTER FAILOVER: %lld published, %d received, restored %d\n", i, s.messages, s.restored);
    assert_int_equal(s.last, i - 1);

    /* 3. kill -9 of the slot's master: its replica takes over. */
    int m = lab_cluster_master_of(&lc, slot);
    assert_true(m >= 0);
    int before = s.restored;
    assert_int_equal(lab_cluster_kill(&lc, (size_t)m), 0);
    assert_int_equal(lab_cluster_wait_ok(&lc, 30000), 0);
    i = publish_until(acl, ch, &s, i, before + 1, 30000);
    print_message("after kill -9: %lld published, %d received, restored %d\n", i, s.messages, s.restored);
    assert_int_equal(s.restored, before + 1);
    assert_int_equal(s.last, i - 1);
    assert_int_equal(s.out_of_order, 0);
    assert_int_equal(spublish(ch, i), 1);
    redtls_async_cluster_free(acl);
    /* Back to full strength for whatever runs next. */
    assert_int_equal(lab_cluster_restart(&lc, (size_t)m), 0);
    assert_int_equal(lab_cluster_wait_ok(&lc, 30000), 0);
}

static void store(redtls_async_cluster *acl, redtls_status st, redisReply *r, void *ud)
{
    (void)acl;
    assert_int_equal(st, REDTLS_OK);
    *(redisReply **)ud = r;
}

/* The cluster client under RESP3 (hiredis 1.x builds): routed commands and
 * a shard subscription on every master. */
static void test_resp3(void **state)
{
    (void)state;
    if (!redtls_protocol_supported(3)) {
        print_message("skipped: this build uses hiredis 0.14, which cannot parse RESP3\n");
        skip();
    }
    redtls_config *cfg = lab_cluster_client_config(&lc, TOKEN, NULL, 2000);
    assert_cfg_status(cfg, redtls_config_set_protocol(cfg, 3), REDTLS_OK);
    char seeds[128];
    snprintf(seeds, sizeof seeds, "%s:%u", lc.node[0].hostname, (unsigned)lc.node[0].srv.port);
    redtls_async_cluster *acl = NULL;
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, seeds, &acl), REDTLS_OK);
    redtls_config_free(cfg);
    char ch[3][32];
    seen s[3];
    for (int m = 0; m < 3; m++) {
        channel_on(m, ch[m], sizeof ch[m]);
        seen_init(&s[m]);
        assert_int_equal(redtls_async_cluster_ssubscribe(acl, ch[m], strlen(ch[m]), on_msg, &s[m]), REDTLS_OK);
    }
    for (int m = 0; m < 3; m++)
        assert_true(wait_for(acl, &s[m].subscribed, 1, 10000));
    redisReply *r = NULL;
    assert_int_equal(redtls_async_cluster_command(acl, store, &r, "SET %s v", ch[2]), REDTLS_OK);
    long long end = lab_now_ms() + 5000;
    while (!r && lab_now_ms() < end)
        run_ms(acl, 20);
    assert_non_null(r);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_STATUS);
    redtls_reply_free(r);
    for (long long i = 0; i < 50; i++)
        for (int m = 0; m < 3; m++)
            assert_int_equal(spublish(ch[m], i), 1);
    for (int m = 0; m < 3; m++) {
        assert_true(wait_for(acl, &s[m].messages, 50, 10000));
        assert_int_equal(s[m].out_of_order, 0);
    }
    redtls_async_cluster_free(acl);
}

/* The blocking subscriber on a cluster (redtls_subscriber_new_cluster):
 * shard channels only; a resharding of the channel's slot shows up as
 * REDTLS_MSG_RESTORED from next(), and messages published at the new
 * owner follow. */
static void test_blocking_cluster_subscriber(void **state)
{
    (void)state;
    redtls_config *cfg = lab_cluster_client_config(&lc, TOKEN, NULL, 2000);
    assert_cfg_status(cfg, redtls_config_set_backoff(cfg, 50, 500), REDTLS_OK);
    char seeds[128];
    snprintf(seeds, sizeof seeds, "%s:%u", lc.node[0].hostname, (unsigned)lc.node[0].srv.port);
    redtls_subscriber *sub = NULL;
    assert_int_equal(redtls_subscriber_new_cluster(cfg, seeds, &sub), REDTLS_OK);
    redtls_config_free(cfg);
    assert_int_equal(redtls_subscriber_subscribe(sub, REDTLS_SUB_CHANNEL, "plain", 5), REDTLS_E_INVALID);
    assert_contains(redtls_subscriber_errmsg(sub), "shard channels");
    char ch[32];
    channel_on(2, ch, sizeof ch);
    unsigned slot = redtls_cluster_key_slot(ch, strlen(ch));
    assert_int_equal(redtls_subscriber_subscribe(sub, REDTLS_SUB_SHARD, ch, strlen(ch)), REDTLS_OK);
    /* Subscribed on return: the owner counts the receiver at once. */
    long long i = 0;
    for (; i < 30; i++)
        assert_int_equal(spublish(ch, i), 1);
    for (long long k = 0; k < 30; k++) {
        redtls_message *m = NULL;
        assert_int_equal(redtls_subscriber_next(sub, 5000, &m), REDTLS_OK);
        assert_non_null(m);
        assert_int_equal(redtls_message_type(m), REDTLS_MSG_MESSAGE);
        assert_int_equal(strtoll(redtls_message_payload(m, NULL), NULL, 10), k);
        redtls_message_free(m);
    }
    int from = lab_cluster_master_of(&lc, slot), to = (from + 1) % 3;
    assert_int_equal(lab_cluster_migrate_begin(&lc, slot, (size_t)from, (size_t)to), 0);
    /* (test_resp3 left a key in this slot.) */
    assert_true(lab_cluster_migrate_keys(&lc, slot, (size_t)from, (size_t)to, 100) >= 0);
    assert_int_equal(lab_cluster_migrate_end(&lc, slot, (size_t)from, (size_t)to), 0);
    assert_int_equal(lab_cluster_wait_ok(&lc, 20000), 0);
    int restored = 0;
    long long last = -1, end = lab_now_ms() + 20000;
    while (lab_now_ms() < end && !(restored && last >= 0 && last == i - 1)) {
        if (spublish(ch, i) >= 0)
            i++;
        redtls_message *m = NULL;
        while (redtls_subscriber_next(sub, 20, &m) == REDTLS_OK && m) {
            if (redtls_message_type(m) == REDTLS_MSG_RESTORED) {
                restored++;
            } else {
                long long v = strtoll(redtls_message_payload(m, NULL), NULL, 10);
                assert_true(v > last);
                last = v;
            }
            redtls_message_free(m);
        }
    }
    print_message("blocking: %d restore(s), last message %lld of %lld\n", restored, last, i - 1);
    assert_int_equal(restored, 1);
    assert_int_equal(last, i - 1);
    assert_int_equal(redtls_subscriber_unsubscribe(sub, REDTLS_SUB_SHARD, ch, strlen(ch)), REDTLS_OK);
    assert_int_equal(spublish(ch, i), 0);
    redtls_subscriber_free(sub);
    /* The slot back where it was. */
    assert_int_equal(lab_cluster_migrate_begin(&lc, slot, (size_t)to, (size_t)from), 0);
    assert_true(lab_cluster_migrate_keys(&lc, slot, (size_t)to, (size_t)from, 100) >= 0);
    assert_int_equal(lab_cluster_migrate_end(&lc, slot, (size_t)to, (size_t)from), 0);
    assert_int_equal(lab_cluster_wait_ok(&lc, 20000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_master),
        cmocka_unit_test(test_resp3),
        cmocka_unit_test(test_blocking_cluster_subscriber),
        cmocka_unit_test(test_follows_its_slot),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

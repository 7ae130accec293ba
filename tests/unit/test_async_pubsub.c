/* lib/driver/async_pubsub.c under the memory transport and a fake clock:
 * what redtls_async_subscribe and redtls_async_unsubscribe refuse (as
 * include/redtls/pubsub.h says), and a SUBSCRIBE that times out on a live
 * connection being made again on it. */
#include "unit_util.h"

#include <redtls/pubsub.h>

#include "async_internal.h"

#define T0 1000000

static int64_t fake_now;
static int64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

typedef struct sub_seen {
    int subscribed, restored, unsubscribed, messages;
    redtls_status unsub_status;
} sub_seen;

static void on_msg(redtls_async *ac, const redtls_message *m, void *ud)
{
    (void)ac;
    sub_seen *s = ud;
    switch (redtls_message_type(m)) {
    case REDTLS_MSG_SUBSCRIBED: s->subscribed++; break;
    case REDTLS_MSG_RESTORED: s->restored++; break;
    case REDTLS_MSG_UNSUBSCRIBED:
        s->unsubscribed++;
        s->unsub_status = redtls_message_status(m);
        break;
    case REDTLS_MSG_MESSAGE: s->messages++; break;
    default: fail_msg("unknown message type %d", redtls_message_type(m));
    }
}

/* A handle on a memory transport, as if connected at T0; command timeout
 * 100 ms. */
static redtls_async *mem_async(redtls__transport **tp, redtls_config **cfgp)
{
    redtls_config *cfg = unit_plain_config();
    assert_status(redtls_config_set_command_timeout_ms(cfg, 100), REDTLS_OK);
    *cfgp = cfg;
    redtls_async *ac = NULL;
    assert_status(redtls_async_new(cfg, &ac), REDTLS_OK);
    ac->clock = fake_clock;
    fake_now = T0;
    assert_status(redtls__mem_transport(tp, REDTLS_E_COMMAND_TIMEOUT), REDTLS_OK);
    assert_status(redtls__conn_attach(ac->c, *tp, 0), REDTLS_OK);
    ac->up = 1;
    ac->tried = 1;
    ac->last_read = T0;
    return ac;
}

/* Occurrences of needle in what the handle wrote. */
static int written_count(redtls__transport *t, const char *needle)
{
    size_t len = 0;
    const char *w = redtls__mem_written(t, &len);
    size_t n = strlen(needle);
    int count = 0;
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(w + i, needle, n) == 0)
            count++;
    return count;
}

/* pubsub.h: redtls_async_subscribe returns REDTLS_E_LIMIT at the handle's
 * pending limit, and REDTLS_E_UNAVAILABLE once the reconnect limits are
 * exhausted, like a command. */
static void test_subscribe_limits(void **state)
{
    (void)state;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    sub_seen a = {0}, b = {0};
    assert_status(redtls_async_set_max_pending(ac, 1), REDTLS_OK);
    assert_status(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "a", 1, on_msg, &a), REDTLS_OK);
    assert_int_equal(redtls_async_pending(ac), 1);
    assert_status(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "b", 1, on_msg, &b), REDTLS_E_LIMIT);
    assert_status(redtls_async_unsubscribe(ac, REDTLS_SUB_CHANNEL, "a", 1), REDTLS_E_LIMIT);
    redtls_async_free(ac);
    redtls_config_free(cfg);
}

static void test_subscribe_after_giving_up(void **state)
{
    (void)state;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    sub_seen a = {0};
    ac->gave_up = 1; /* as after the reconnect limits ran out */
    assert_status(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "a", 1, on_msg, &a), REDTLS_E_UNAVAILABLE);
    assert_int_equal(redtls_async_subscriptions(ac), 0);
    redtls_async_free(ac);
    redtls_config_free(cfg);
    assert_int_equal(a.unsubscribed, 0);
}

/* pubsub.h: SUBSCRIBE and its kin sent as ordinary commands are refused
 * with REDTLS_E_INVALID, subscribed or not (not with the RESP2 "use a
 * second handle" REDTLS_E_STATE, which sends the user the wrong way). */
static void test_sub_command_refused_while_subscribed(void **state)
{
    (void)state;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    sub_seen a = {0};
    assert_status(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "a", 1, on_msg, &a), REDTLS_OK);
    const char *argv[2] = {"SUBSCRIBE", "b"};
    assert_status(redtls_async_command_argv(ac, 0, 2, argv, NULL, NULL, NULL), REDTLS_E_INVALID);
    assert_non_null(strstr(redtls_async_errmsg(ac), "redtls_async_subscribe"));
    assert_status(redtls_async_command(ac, NULL, NULL, "UNSUBSCRIBE a"), REDTLS_E_INVALID);
    redtls_async_free(ac);
    redtls_config_free(cfg);
}

/* A SUBSCRIBE whose confirmation does not come within the command timeout
 * on a connection that stays up (another subscription's messages keep it
 * alive) is sent again on that connection (async_pubsub.c subscribed():
 * "or at once on this one when it is still up"), and the subscription
 * then receives its messages. */
static void test_timed_out_subscribe_sent_again(void **state)
{
    (void)state;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    sub_seen x = {0}, y = {0};
    assert_status(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "x", 1, on_msg, &x), REDTLS_OK);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    fake_now = T0 + 5;
    unit_push(t, "*3\r\n$9\r\nsubscribe\r\n$1\r\nx\r\n:1\r\n");
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_int_equal(x.subscribed, 1);
    fake_now = T0 + 10;
    assert_status(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "y", 1, on_msg, &y), REDTLS_OK);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    assert_int_equal(written_count(t, "SUBSCRIBE\r\n$1\r\ny\r\n"), 1);
    fake_now = T0 + 60;
    unit_push(t, "*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$1\r\n1\r\n");
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_int_equal(x.messages, 1);
    /* y's deadline: its record times out, the connection stays. */
    fake_now = T0 + 111;
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    assert_true(redtls_async_is_connected(ac));
    for (int i = 0; i < 3; i++)
        assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    assert_int_equal(written_count(t, "SUBSCRIBE\r\n$1\r\ny\r\n"), 2);
    /* Both confirmations (the late one is dropped), then a message. */
    fake_now = T0 + 120;
    unit_push(t, "*3\r\n$9\r\nsubscribe\r\n$1\r\ny\r\n:2\r\n"
                 "*3\r\n$9\r\nsubscribe\r\n$1\r\ny\r\n:2\r\n"
                 "*3\r\n$7\r\nmessage\r\n$1\r\ny\r\n$1\r\n2\r\n");
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_int_equal(y.subscribed, 1);
    assert_int_equal(y.messages, 1);
    assert_int_equal(y.unsubscribed, 0);
    redtls_async_free(ac);
    redtls_config_free(cfg);
    assert_int_equal(y.unsubscribed, 1);
    assert_int_equal(x.unsubscribed, 1);
}

/* pubsub.h: "With reconnection off (or its limits exhausted), a lost
 * connection leaves the subscriptions waiting for redtls_async_connect
 * [...] Unsubscribing one then ends it from the next pass, with no
 * connection made for it." With the limits exhausted too: the handle's
 * REDTLS_E_UNAVAILABLE for new commands must not refuse that end. */
static void test_unsubscribe_lost_after_giving_up(void **state)
{
    (void)state;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    sub_seen a = {0};
    assert_status(redtls_async_subscribe(ac, REDTLS_SUB_CHANNEL, "a", 1, on_msg, &a), REDTLS_OK);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    fake_now = T0 + 5;
    unit_push(t, "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n");
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_int_equal(a.subscribed, 1);
    redtls__mem_set_end(t, REDTLS_E_EOF);
    fake_now = T0 + 10;
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_false(redtls_async_is_connected(ac));
    assert_int_equal(redtls_async_subscriptions(ac), 1);
    ac->gave_up = 1; /* as after the reconnect limits ran out */
    assert_status(redtls_async_unsubscribe(ac, REDTLS_SUB_CHANNEL, "a", 1), REDTLS_OK);
    assert_int_equal(a.unsubscribed, 0);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    assert_int_equal(a.unsubscribed, 1);
    assert_status(a.unsub_status, REDTLS_OK);
    assert_int_equal(redtls_async_subscriptions(ac), 0);
    redtls_async_free(ac);
    redtls_config_free(cfg);
    assert_int_equal(a.unsubscribed, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subscribe_limits),
        cmocka_unit_test(test_subscribe_after_giving_up),
        cmocka_unit_test(test_sub_command_refused_while_subscribed),
        cmocka_unit_test(test_timed_out_subscribe_sent_again),
        cmocka_unit_test(test_unsubscribe_lost_after_giving_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

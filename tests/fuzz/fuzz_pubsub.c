/*
 * fuzz_pubsub: whatever a server sends to an asynchronous handle with
 * subscriptions (lib/driver/async_pubsub.c over the memory transport and a
 * fake clock). Three subscriptions (a channel, a pattern, a shard channel)
 * and a command are issued first; the input's bytes are the server's
 * answer, in chunks the input's first byte chooses, then the connection
 * ends. Invariants (abort on failure):
 *   - each subscription's callback gets REDTLS_MSG_UNSUBSCRIBED exactly
 *     once (by the time the handle is freed), and nothing after it;
 *   - a message reaches a subscription only with that subscription's kind
 *     and name, and only after REDTLS_MSG_SUBSCRIBED;
 *   - the command's callback runs exactly once.
 * The first byte also picks whether one subscription is ended half-way.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <redtls/pubsub.h>

#include "async_internal.h"
#include "transport.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_pubsub: invariant failed at line %d: %s\n", __LINE__, #cond);                        \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

typedef struct sub {
    redtls_sub_kind kind;
    const char *name;
    int subscribed, ended, after_end;
} sub;

static sub subs[3] = {
    {REDTLS_SUB_CHANNEL, "ch", 0, 0, 0},
    {REDTLS_SUB_PATTERN, "p*", 0, 0, 0},
    {REDTLS_SUB_SHARD, "s{1}", 0, 0, 0},
};
static int cmd_calls;
static int64_t fake_now;

static int64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

static void on_msg(redtls_async *ac, const redtls_message *m, void *ud)
{
    (void)ac;
    sub *s = ud;
    if (s->ended)
        s->after_end++;
    CHECK(s->after_end == 0);
    size_t n = 0;
    const char *name = redtls_message_subscription(m, &n);
    switch (redtls_message_type(m)) {
    case REDTLS_MSG_SUBSCRIBED:
    case REDTLS_MSG_RESTORED: s->subscribed = 1; break;
    case REDTLS_MSG_UNSUBSCRIBED: s->ended = 1; break;
    case REDTLS_MSG_MESSAGE:
        CHECK(s->subscribed);
        CHECK(redtls_message_sub_kind(m) == s->kind);
        CHECK(name && n == strlen(s->name) && memcmp(name, s->name, n) == 0);
        CHECK(redtls_message_channel(m, NULL) != NULL);
        CHECK(redtls_message_payload(m, NULL) != NULL);
        return;
    default: CHECK(0);
    }
    CHECK(redtls_message_sub_kind(m) == s->kind);
    CHECK(name && n == strlen(s->name) && memcmp(name, s->name, n) == 0);
}

static void on_reply(redtls_async *ac, redtls_status st, redisReply *r, void *ud)
{
    (void)ac;
    (void)st;
    (void)ud;
    cmd_calls++;
    freeReplyObject(r);
}

static redtls_config *cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    CHECK(redtls_config_new(&cfg) == REDTLS_OK);
    CHECK(redtls_config_set_tls(cfg, 0) == REDTLS_OK);
    CHECK(redtls_config_set_reconnect(cfg, 0) == REDTLS_OK);
    CHECK(redtls_config_set_command_timeout_ms(cfg, 100) == REDTLS_OK);
    CHECK(redtls_config_set_max_buffer(cfg, 65536) == REDTLS_OK);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned flags = data[0];
    size_t chunk = 1 + (flags & 0x1f);
    data++;
    size--;
    for (int i = 0; i < 3; i++)
        subs[i].subscribed = subs[i].ended = subs[i].after_end = 0;
    cmd_calls = 0;
    fake_now = 1000000;

    redtls_async *ac = NULL;
    CHECK(redtls_async_new(cfg, &ac) == REDTLS_OK);
    ac->clock = fake_clock;
    redtls__transport *tp = NULL;
    CHECK(redtls__mem_transport(&tp, REDTLS_E_EOF) == REDTLS_OK);
    for (size_t off = 0; off < size; off += chunk)
        CHECK(redtls__mem_push(tp, (const char *)data + off, size - off < chunk ? size - off : chunk) == REDTLS_OK);
    CHECK(redtls__conn_attach(ac->c, tp, 0) == REDTLS_OK);
    ac->up = 1;
    ac->tried = 1;
    ac->last_read = fake_now;
    CHECK(redtls_async_command(ac, on_reply, NULL, "PING") == REDTLS_OK);
    for (int i = 0; i < 3; i++)
        CHECK(redtls_async_subscribe(ac, subs[i].kind, subs[i].name, strlen(subs[i].name), on_msg, &subs[i]) ==
              REDTLS_OK);
    for (int turn = 0; turn < 64; turn++) {
        if (turn == 4 && (flags & 0x20) && !subs[0].ended)
            (void)redtls_async_unsubscribe(ac, subs[0].kind, subs[0].name, strlen(subs[0].name));
        redtls_async_process(ac, REDTLS_ASYNC_READ);
        fake_now += 25;
    }
    redtls_async_free(ac);
    for (int i = 0; i < 3; i++)
        CHECK(subs[i].ended == 1 && subs[i].after_end == 0);
    CHECK(cmd_calls == 1);
    return 0;
}

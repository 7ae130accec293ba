/* redtls_cluster_key_slot() against a real server's CLUSTER KEYSLOT, over
 * TLS: tag edge cases, binary keys, and 20,000 random keys, pipelined. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <redtls/redtls.h>

#include "lab.h"
#include "lab_assert.h"

#define TOKEN "keyslot-Token-51aa90"
#define RANDOM_KEYS 20000

static lab_server redis;
static redtls_conn *conn;

static int group_setup(void **state)
{
    (void)state;
    static const char *const extra[] = {"--cluster-enabled", "yes", "--cluster-config-file", "keyslot-nodes.conf",
                                        NULL};
    if (lab_init(60) != 0 || lab_certs(NULL) == NULL)
        return -1;
    if (lab_redis_start(&redis, &(lab_redis_opts){.tls = 1, .password = TOKEN, .extra = extra}) != 0)
        return -1;
    redtls_config *cfg = NULL;
    if (redtls_config_new(&cfg) != REDTLS_OK || redtls_config_set_host(cfg, "localhost", redis.port) != REDTLS_OK ||
        redtls_config_set_ca_file(cfg, lab_cert("ca.crt")) != REDTLS_OK ||
        redtls_config_set_token(cfg, TOKEN) != REDTLS_OK || redtls_conn_new(cfg, &conn) != REDTLS_OK) {
        redtls_config_free(cfg);
        return -1;
    }
    redtls_config_free(cfg);
    return redtls_conn_connect(conn) == REDTLS_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    redtls_conn_free(conn);
    lab_stop(&redis);
    return 0;
}

static long long server_slot(const char *key, size_t len)
{
    const char *argv[] = {"CLUSTER", "KEYSLOT", key};
    size_t lens[] = {7, 7, len};
    redisReply *r = NULL;
    assert_conn_status(conn, redtls_conn_command_argv(conn, 3, argv, lens, &r), REDTLS_OK);
    if (r->type != REDIS_REPLY_INTEGER)
        fail_msg("CLUSTER KEYSLOT answered type %d: %s", r->type, r->str ? r->str : "");
    long long v = r->integer;
    redtls_reply_free(r);
    return v;
}

static void test_edge_cases(void **state)
{
    (void)state;
    static const char *const keys[] = {"",         "foo",        "123456789",    "{user1000}.following",
                                       "{}",       "{",          "}",            "}{",
                                       "{}x",      "x{",         "}{x",          "}{x}",
                                       "{{a}}",    "a{b}c{d}",   "{}{a}",        "foo{}{bar}",
                                       "foo{{bar}}zap", "{a}{b}", "somekey",     "foo{hash_tag}"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        long long want = server_slot(keys[i], strlen(keys[i]));
        if ((long long)redtls_cluster_key_slot(keys[i], strlen(keys[i])) != want)
            fail_msg("key '%s': redtls %u, server %lld", keys[i], redtls_cluster_key_slot(keys[i], strlen(keys[i])),
                     want);
    }
    const char bin[] = {'a', '\0', '{', '\xff', '\0', '}', '\r', '\n'};
    assert_int_equal(redtls_cluster_key_slot(bin, sizeof bin), server_slot(bin, sizeof bin));
}

static void test_random_keys(void **state)
{
    (void)state;
    static char keys[RANDOM_KEYS][24];
    static size_t lens[RANDOM_KEYS];
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < RANDOM_KEYS; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        lens[i] = 1 + x % 23;
        for (size_t j = 0; j < lens[i]; j++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* Mostly printable, with braces often, and some raw bytes. */
            static const char alphabet[] = "ab{}{}xyz01:.-_\x00\xff";
            keys[i][j] = alphabet[x % (sizeof alphabet - 1)];
        }
        const char *argv[] = {"CLUSTER", "KEYSLOT", keys[i]};
        size_t alen[] = {7, 7, lens[i]};
        assert_conn_status(conn, redtls_conn_append_argv(conn, 3, argv, alen), REDTLS_OK);
    }
    int mismatches = 0;
    for (int i = 0; i < RANDOM_KEYS; i++) {
        redisReply *r = NULL;
        assert_conn_status(conn, redtls_conn_get_reply(conn, &r), REDTLS_OK);
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        if ((long long)redtls_cluster_key_slot(keys[i], lens[i]) != r->integer)
            mismatches++;
        redtls_reply_free(r);
    }
    print_message("%d random keys compared with CLUSTER KEYSLOT, %d mismatches\n", RANDOM_KEYS, mismatches);
    assert_int_equal(mismatches, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_random_keys),
    };
    return cmocka_run_group_tests_name("keyslot", tests, group_setup, group_teardown);
}

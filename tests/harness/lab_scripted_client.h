/* Client-side helpers of the tests against scripted nodes
 * (integration.cluster_scripted, integration.cluster_lane): a plain-TCP
 * cluster handle, a two-node slot map, and reply checks. Include after
 * <cmocka.h>, <redtls/redtls.h>, lab_assert.h and lab_cluster_client.h. */
#ifndef REDTLS_TESTS_LAB_SCRIPTED_CLIENT_H
#define REDTLS_TESTS_LAB_SCRIPTED_CLIENT_H

#include <stdint.h>
#include <stdio.h>

/* A plain-TCP cluster handle seeded with 127.0.0.1:seed_port. */
static inline redtls_cluster *new_cluster(uint16_t seed_port, unsigned timeout_ms, const char *token, const char *alt)
{
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_tls(cfg, 0), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_host(cfg, "127.0.0.1", seed_port), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, timeout_ms), REDTLS_OK);
    if (token)
        assert_cfg_status(cfg, redtls_config_set_token(cfg, token), REDTLS_OK);
    if (alt)
        assert_cfg_status(cfg, redtls_config_set_token_alt(cfg, alt), REDTLS_OK);
    redtls_cluster *cl = NULL;
    assert_cfg_status(cfg, redtls_cluster_new(cfg, NULL, &cl), REDTLS_OK);
    redtls_config_free(cfg);
    return cl;
}

/* "A serves 0-8191, B 8192-16383", both at 127.0.0.1. */
static inline void two_node_map(char *out, size_t cap, uint16_t a, uint16_t b)
{
    snprintf(out, cap,
             "*2\\r\\n*3\\r\\n:0\\r\\n:8191\\r\\n*3\\r\\n$9\\r\\n127.0.0.1\\r\\n:%u\\r\\n$1\\r\\na\\r\\n"
             "*3\\r\\n:8192\\r\\n:16383\\r\\n*3\\r\\n$9\\r\\n127.0.0.1\\r\\n:%u\\r\\n$1\\r\\nb\\r\\n",
             (unsigned)a, (unsigned)b);
}

/* Call as expect_str_reply(cl, call(..., &r), &r, want): the status is
 * what the call returned, *rp the reply it stored. */
static inline void expect_str_reply(redtls_cluster *cl, redtls_status st, redisReply **rp, const char *want)
{
    assert_cl_status(cl, st, REDTLS_OK);
    redisReply *r = *rp;
    *rp = NULL;
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, want);
    redtls_reply_free(r);
}

/* Queues GET key for each of n keys. */
static inline void queue_gets(redtls_cluster *cl, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *argv[] = {"GET", keys[i]};
        assert_cl_status(cl, redtls_cluster_append_argv(cl, 0, 2, argv, NULL), REDTLS_OK);
    }
}

#endif

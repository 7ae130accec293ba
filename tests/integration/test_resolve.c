/* Address overrides (curl's --resolve) and verify-name mappings on a
 * standalone TLS server whose certificate only names node1.cluster.test:
 * the connection goes to the override address while SNI and verification
 * keep the asked name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <redtls/redtls.h>

#include "lab.h"
#include "lab_assert.h"

#define TOKEN "resolve-Token-90fe12"

static lab_server redis;

static int group_setup(void **state)
{
    (void)state;
    if (lab_init(60) != 0 || lab_certs(NULL) == NULL)
        return -1;
    return lab_redis_start(&redis, &(lab_redis_opts){.tls = 1, .cert = "node1.crt", .key = "node1.key",
                                                       .password = TOKEN});
}

static int group_teardown(void **state)
{
    (void)state;
    lab_stop(&redis);
    return 0;
}

static redtls_config *base(const char *host, uint16_t port)
{
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_host(cfg, host, port), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_ca_file(cfg, lab_cert("ca.crt")), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_token(cfg, TOKEN), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_reconnect(cfg, 0), REDTLS_OK);
    return cfg;
}

/* Connects, PINGs; returns the connect status and checks the peer name on
 * success. */
static redtls_status try_connect(redtls_config *cfg, char *msg, size_t cap)
{
    redtls_conn *conn = NULL;
    assert_cfg_status(cfg, redtls_conn_new(cfg, &conn), REDTLS_OK);
    redtls_status st = redtls_conn_connect(conn);
    snprintf(msg, cap, "%s", redtls_conn_errmsg(conn));
    if (st == REDTLS_OK) {
        struct redisReply *r = NULL;
        assert_conn_status(conn, redtls_conn_command(conn, &r, "PING"), REDTLS_OK);
        assert_string_equal(redtls_reply_str(r, NULL), "PONG");
        redtls_reply_free(r);
        assert_contains(redtls_conn_peer_sans(conn), "node1.cluster.test");
    }
    redtls_conn_free(conn);
    return st;
}

static void test_resolve(void **state)
{
    (void)state;
    char msg[512];
    /* The name does not resolve by itself. */
    redtls_config *cfg = base("node1.cluster.test", redis.port);
    assert_int_equal(try_connect(cfg, msg, sizeof msg), REDTLS_E_RESOLVE);

    /* An entry for another port does not apply. */
    assert_cfg_status(cfg, redtls_config_add_resolve(cfg, "node1.cluster.test", (uint16_t)(redis.port + 1), "127.0.0.1"),
                      REDTLS_OK);
    assert_int_equal(try_connect(cfg, msg, sizeof msg), REDTLS_E_RESOLVE);

    /* The exact port: connected to 127.0.0.1, verified as node1. */
    assert_cfg_status(cfg, redtls_config_add_resolve(cfg, "node1.cluster.test", redis.port, "127.0.0.1"), REDTLS_OK);
    assert_int_equal(try_connect(cfg, msg, sizeof msg), REDTLS_OK);

    /* Any port, and an address given as a name. */
    assert_cfg_status(cfg, redtls_config_clear_host_maps(cfg), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_add_resolve(cfg, "node1.cluster.test", 0, "localhost"), REDTLS_OK);
    assert_int_equal(try_connect(cfg, msg, sizeof msg), REDTLS_OK);
    redtls_config_free(cfg);

    /* Verification keeps the asked name: node2 sent to node1's server is
     * refused. */
    cfg = base("node2.cluster.test", redis.port);
    assert_cfg_status(cfg, redtls_config_add_resolve(cfg, "node2.cluster.test", 0, "127.0.0.1"), REDTLS_OK);
    assert_int_equal(try_connect(cfg, msg, sizeof msg), REDTLS_E_TLS_HOSTNAME);
    assert_contains(msg, "node2.cluster.test");
    redtls_config_free(cfg);
}

static void test_verify_name_map(void **state)
{
    (void)state;
    char msg[512];
    /* An IP address: the certificate has no IP SAN. */
    redtls_config *cfg = base("127.0.0.1", redis.port);
    assert_int_equal(try_connect(cfg, msg, sizeof msg), REDTLS_E_TLS_HOSTNAME);
    /* Mapped to the node's name. */
    assert_cfg_status(cfg, redtls_config_map_verify_name(cfg, "127.0.0.1", "node1.cluster.test"), REDTLS_OK);
    assert_int_equal(try_connect(cfg, msg, sizeof msg), REDTLS_OK);
    /* A fixed name takes precedence over the mapping. */
    assert_cfg_status(cfg, redtls_config_set_verify_name(cfg, "node3.cluster.test"), REDTLS_OK);
    assert_int_equal(try_connect(cfg, msg, sizeof msg), REDTLS_E_TLS_HOSTNAME);
    assert_contains(msg, "node3.cluster.test");
    redtls_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_verify_name_map),
    };
    return cmocka_run_group_tests_name("resolve", tests, group_setup, group_teardown);
}

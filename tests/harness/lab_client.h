/* Client-side set-up shared by the integration tests against the lab's
 * servers: a redtls configuration that reaches one over TLS, its time-outs,
 * and connected blocking connections (a test's own, or an "admin" one for
 * commands such as CLIENT KILL). A failure fails the test; what was made
 * is already in the caller's out-parameter then, so its teardown frees it.
 * Include after <cmocka.h>, <redtls/redtls.h> and lab_assert.h. */
#ifndef REDTLS_TESTS_LAB_CLIENT_H
#define REDTLS_TESTS_LAB_CLIENT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lab.h"

/* REDTLS_TEST_PROTOCOL=3 (the hiredis 1.x CI step runs the TLS matrices
 * and the rotation walks again with it): the configuration speaks RESP3,
 * so every case goes through the HELLO 3 set-up. */
static inline void lab_client_protocol(redtls_config *cfg)
{
    const char *p = getenv("REDTLS_TEST_PROTOCOL");
    if (p && strcmp(p, "3") == 0)
        assert_cfg_status(cfg, redtls_config_set_protocol(cfg, 3), REDTLS_OK);
}

/* *cfg: host:port over TLS, trusting the lab's certificate file ca (e.g.
 * "ca.crt"), and AUTH with token when it is not NULL. */
static inline void lab_client_config(redtls_config **cfg, const char *host, uint16_t port, const char *ca,
                                     const char *token)
{
    assert_int_equal(redtls_config_new(cfg), REDTLS_OK);
    assert_cfg_status(*cfg, redtls_config_set_host(*cfg, host, port), REDTLS_OK);
    lab_client_protocol(*cfg);
    assert_cfg_status(*cfg, redtls_config_set_ca_file(*cfg, lab_cert(ca)), REDTLS_OK);
    if (token != NULL)
        assert_cfg_status(*cfg, redtls_config_set_token(*cfg, token), REDTLS_OK);
}

static inline void lab_client_timeouts(redtls_config *cfg, unsigned connect_ms, unsigned handshake_ms,
                                       unsigned command_ms)
{
    assert_cfg_status(cfg, redtls_config_set_connect_timeout_ms(cfg, connect_ms), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_handshake_timeout_ms(cfg, handshake_ms), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, command_ms), REDTLS_OK);
}

/* *conn: a connection made from cfg, connected. */
static inline void lab_client_connect(redtls_conn **conn, redtls_config *cfg)
{
    assert_cfg_status(cfg, redtls_conn_new(cfg, conn), REDTLS_OK);
    assert_conn_status(*conn, redtls_conn_connect(*conn), REDTLS_OK);
}

/* *conn: a connection straight to host:port (as lab_client_config makes
 * it, trusting ca.crt; command_ms 0: the default command time-out),
 * connected. */
static inline void lab_client_admin(redtls_conn **conn, const char *host, uint16_t port, const char *token,
                                    unsigned command_ms)
{
    redtls_config *cfg = NULL;
    lab_client_config(&cfg, host, port, "ca.crt", token);
    if (command_ms != 0)
        assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, command_ms), REDTLS_OK);
    assert_cfg_status(cfg, redtls_conn_new(cfg, conn), REDTLS_OK);
    redtls_config_free(cfg);
    assert_conn_status(*conn, redtls_conn_connect(*conn), REDTLS_OK);
}

#endif /* REDTLS_TESTS_LAB_CLIENT_H */

/* redtls speaks RESP2 until it has RESP3 support: a HELLO asking for
 * RESP3 is refused against a real redis-server (TLS, AUTH), and a push
 * frame from a server never takes the place of a command's reply. hiredis
 * 0.14 cannot parse RESP3 at all (the connection ends with a protocol
 * error); hiredis 1.x parses it, and then the push is dropped. The same
 * test runs against both (scripts/test.sh hiredis1). */
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
#include "lab_scripted.h"

#define TOKEN "lab-Resp3-Token-4d21"

static int group_setup(void **state)
{
    (void)state;
    if (lab_init(60) != 0 || lab_certs(NULL) == NULL)
        return -1;
    return 0;
}

static void expect_reply_str(redtls_conn *c, redtls_status st, redisReply *r, const char *want)
{
    assert_conn_status(c, st, REDTLS_OK);
    assert_non_null(r);
    size_t len = 0;
    const char *s = redtls_reply_str(r, &len);
    assert_non_null(s);
    assert_string_equal(s, want);
    redtls_reply_free(r);
}

static void test_hello_3_refused_by_a_real_server(void **state)
{
    (void)state;
    lab_server redis;
    assert_int_equal(lab_redis_start(&redis, &(lab_redis_opts){.tls = 1, .password = TOKEN}), 0);
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_host(cfg, "localhost", redis.port), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_ca_file(cfg, lab_cert("ca.crt")), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_token(cfg, TOKEN), REDTLS_OK);
    redtls_conn *c = NULL;
    assert_cfg_status(cfg, redtls_conn_new(cfg, &c), REDTLS_OK);
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
    redisReply *r = NULL;
    assert_conn_status(c, redtls_conn_command(c, &r, "HELLO 3"), REDTLS_E_INVALID);
    assert_contains(redtls_conn_errmsg(c), "RESP2");
    assert_null(r);
    assert_conn_status(c, redtls_conn_command(c, &r, "HELLO %s AUTH default %s", "3", TOKEN), REDTLS_E_INVALID);
    assert_null(strstr(redtls_conn_errmsg(c), TOKEN));
    /* The connection never left RESP2: the server still answers with
     * RESP2 types (HELLO 2's reply is a flat array, not a map). */
    assert_conn_status(c, redtls_conn_command(c, &r, "HELLO 2"), REDTLS_OK);
    assert_int_equal(redtls_reply_type(r), REDTLS_REPLY_ARRAY);
    size_t n = redtls_reply_len(r);
    int proto = -1;
    for (size_t i = 0; i + 1 < n; i += 2) {
        const char *k = redtls_reply_str(redtls_reply_element(r, i), NULL);
        if (k && strcmp(k, "proto") == 0)
            proto = (int)redtls_reply_integer(redtls_reply_element(r, i + 1));
    }
    assert_int_equal(proto, 2);
    redtls_reply_free(r);
    assert_conn_status(c, redtls_conn_command(c, &r, "SET resp3guard v"), REDTLS_OK);
    redtls_reply_free(r);
    assert_conn_status(c, redtls_conn_command(c, &r, "GET resp3guard"), REDTLS_OK);
    expect_reply_str(c, REDTLS_OK, r, "v");
    redtls_conn_free(c);
    redtls_config_free(cfg);
    lab_stop(&redis);
}

/* A server that sends an invalidation push before a reply, and another
 * between two pipelined replies. */
static void test_push_never_taken_for_a_reply(void **state)
{
    (void)state;
    lab_server srv;
    uint16_t port;
    assert_int_equal(lab_scripted_start(&srv, 1, &port), 0);
    assert_int_equal(lab_scripted_rules(&srv,
                                        "* | GET k1 | 0 | >2\\r\\n$10\\r\\ninvalidate\\r\\n*1\\r\\n$2\\r\\nk1\\r\\n$2\\r\\nv1\\r\\n\n"
                                        "* | GET k2 | 0 | $2\\r\\nv2\\r\\n>2\\r\\n$10\\r\\ninvalidate\\r\\n*0\\r\\n\n"
                                        "* | GET k3 | 0 | $2\\r\\nv3\\r\\n\n"),
                     0);
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_tls(cfg, 0), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_host(cfg, "127.0.0.1", port), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, 2000), REDTLS_OK);
    redtls_conn *c = NULL;
    assert_cfg_status(cfg, redtls_conn_new(cfg, &c), REDTLS_OK);
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
    redisReply *r = NULL;
#if defined(HIREDIS_MAJOR) && HIREDIS_MAJOR >= 1
    assert_conn_status(c, redtls_conn_command(c, &r, "GET k1"), REDTLS_OK);
    expect_reply_str(c, REDTLS_OK, r, "v1");
    assert_conn_status(c, redtls_conn_append(c, "GET k2"), REDTLS_OK);
    assert_conn_status(c, redtls_conn_append(c, "GET k3"), REDTLS_OK);
    assert_conn_status(c, redtls_conn_get_reply(c, &r), REDTLS_OK);
    expect_reply_str(c, REDTLS_OK, r, "v2");
    assert_conn_status(c, redtls_conn_get_reply(c, &r), REDTLS_OK);
    expect_reply_str(c, REDTLS_OK, r, "v3");
    print_message("hiredis %d.%d: pushes dropped, replies in step\n", HIREDIS_MAJOR, HIREDIS_MINOR);
#else
    assert_conn_status(c, redtls_conn_command(c, &r, "GET k1"), REDTLS_E_PROTOCOL);
    assert_null(r);
    assert_int_equal(redtls_conn_is_connected(c), 0);
    print_message("hiredis 0.x: a push is a protocol error, the connection is closed\n");
#endif
    redtls_conn_free(c);
    redtls_config_free(cfg);
    lab_stop(&srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_3_refused_by_a_real_server),
        cmocka_unit_test(test_push_never_taken_for_a_reply),
    };
    return cmocka_run_group_tests_name("resp3_guard", tests, group_setup, NULL);
}

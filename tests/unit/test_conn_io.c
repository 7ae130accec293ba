/* lib/session/conn_io.c: the write step against a transport that takes
 * part of the bytes without asking to wait (the memory transport with
 * io_max). Once found as a defect: the step took such a partial write for
 * a finished one, so the exchange waited for the reply (POLLIN) with the
 * request half written, and a set-up could report done with AUTH still
 * queued. *want 0 from the write step must mean "all written". */
#include "unit_util.h"

#include <poll.h>

#define T0 1000000

/* The wait answered while a request is half written must be for writing
 * (or "call again now"), never for the reply. */
static void test_half_written_request_never_waits_for_the_reply(void **state)
{
    (void)state;
    redtls_config *cfg = unit_plain_config();
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    t->io_max = 1;
    static const char ping[] = "*1\r\n$4\r\nPING\r\n";
    assert_status(redtls__exch_send(c, 1, (const char *[]){"PING"}, 0), REDTLS_OK);
    redisReply *r = NULL;
    redtls__wait w;
    size_t len = 0;
    int waits_for_reply = 0;
    for (int i = 0; i < 100 && !waits_for_reply; i++) {
        assert_status(redtls__exch_poll(c, T0, T0 + 1000, &r, &w), REDTLS_OK);
        redtls__mem_written(t, &len);
        if (len == sizeof ping - 1)
            break;
        waits_for_reply = w.events == POLLIN;
        assert_true(waits_for_reply || w.events == POLLOUT || (w.events == 0 && w.at == T0));
    }
    redtls_conn_free(c);
    redtls_config_free(cfg);
    if (waits_for_reply)
        fail_msg("%zu of %zu bytes of the request written, and the "
                 "machine waits for the reply (POLLIN)",
                 len, sizeof ping - 1);
}

/* A consequence: with the server's answer already there (scripted ahead
 * on the memory transport), the set-up reports done while most of the
 * AUTH is still in the output buffer. */
static void test_setup_done_only_once_auth_is_written(void **state)
{
    (void)state;
    redtls_config *cfg = unit_plain_config();
    assert_status(redtls_config_set_token(cfg, "tok-0123456789"), REDTLS_OK);
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    t->io_max = 1;
    unit_push(t, "+OK\r\n");
    static const char auth[] = "*2\r\n$4\r\nAUTH\r\n$14\r\ntok-0123456789\r\n";
    int done = 0;
    redtls__wait w;
    assert_status(redtls__setup_start(c, T0, T0 + 1000), REDTLS_OK);
    for (int i = 0; i < 100 && !done; i++)
        assert_status(redtls__setup_step(c, T0, T0 + 1000, &done, &w), REDTLS_OK);
    assert_true(done);
    size_t len;
    redtls__mem_written(t, &len);
    redtls_conn_free(c);
    redtls_config_free(cfg);
    if (len != sizeof auth - 1)
        fail_msg("the set-up is done with %zu of the %zu "
                 "bytes of AUTH written",
                 len, sizeof auth - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_written_request_never_waits_for_the_reply),
        cmocka_unit_test(test_setup_done_only_once_auth_is_written),
    };
    return cmocka_run_group_tests_name("conn_io", tests, NULL, NULL);
}

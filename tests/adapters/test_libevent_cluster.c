/* redtls_async_cluster_attach_libevent() with the real library against a
 * 3-master TLS cluster; the cases are in adapter_cluster_live.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include <redtls/async_libevent.h>

#include "adapter_cluster_live.h"

static void *loop_new(void)
{
    return event_base_new();
}

static redtls_status loop_attach(redtls_async_cluster *acl, void *loop)
{
    return redtls_async_cluster_attach_libevent(acl, loop);
}

/* A non-blocking pass says 1 when the base has no events. */
static int loop_pass(void *loop)
{
    return event_base_loop(loop, EVLOOP_ONCE | EVLOOP_NONBLOCK) == 1;
}

static int loop_free(void *loop)
{
    int left = event_base_get_num_events(loop, EVENT_BASE_COUNT_ADDED);
    event_base_free(loop);
    return left == 0 ? 0 : -1;
}

/* libevent reads a coarse monotonic clock (a few ms per tick). */
const struct live_loop live_loop = {"libevent", loop_new, loop_attach, loop_pass, loop_free, 10};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_live_attach_refused, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_attach_nomem, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_attach_nomem_with_nodes, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_connect, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_all_slots, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_before_connect, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_free_from_reply, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_free_from_connect, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_deadline_by_timer, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_retry_by_timer, live_setup, live_teardown),
    };
    return cmocka_run_group_tests_name("adapter_cluster_libevent", tests, live_group_setup, live_group_teardown);
}

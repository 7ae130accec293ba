/* redtls_async_cluster_attach_libuv() with the real library against a
 * 3-master TLS cluster; the cases are in adapter_cluster_live.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include <redtls/async_libuv.h>

#include "adapter_cluster_live.h"

static uv_loop_t uv_loop; /* one test at a time */

static void *loop_new(void)
{
    return uv_loop_init(&uv_loop) == 0 ? &uv_loop : NULL;
}

static redtls_status loop_attach(redtls_async_cluster *acl, void *loop)
{
    return redtls_async_cluster_attach_libuv(acl, loop);
}

/* uv_run says whether the loop is still alive: 0 when no handle is. */
static int loop_pass(void *loop)
{
    return uv_run(loop, UV_RUN_NOWAIT) == 0;
}

static int loop_free(void *loop)
{
    return uv_loop_close(loop) == 0 ? 0 : -1;
}

const struct live_loop live_loop = {"libuv", loop_new, loop_attach, loop_pass, loop_free, 0};

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
    return cmocka_run_group_tests_name("adapter_cluster_libuv", tests, live_group_setup, live_group_teardown);
}

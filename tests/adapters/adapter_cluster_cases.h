/* The cases every cluster adapter (redtls_async_cluster_attach_<loop>() in
 * include/redtls/async_<loop>.h) must pass whatever its loop, over the
 * stand-in cores (fake_async_cluster.c for the cluster handle, whose node
 * connections are fake_async.c handles). Listed in the main of
 * unit.adapter_libuv and unit.adapter_libevent beside the single-handle
 * cases, with the loop's operations from their adapter_loop. */
#ifndef REDTLS_TESTS_ADAPTER_CLUSTER_CASES_H
#define REDTLS_TESTS_ADAPTER_CLUSTER_CASES_H

#include <redtls/async_cluster.h>

struct cluster_fixture {
    void *loop;                /* adapter_loop.new_loop()'s */
    redtls_async_cluster *acl; /* NULL once freed */
    int sp[2];                 /* a socket pair; sp[0] is what node connections watch */
};

/* setup gives each test the fixture, attached to nothing; teardown frees
 * the handle if the test did not, then the loop, which asserts that
 * nothing the adapters made is left in it. */
int cluster_setup(void **state);
int cluster_teardown(void **state);

void test_cluster_attach_refuses_null(void **state);
void test_cluster_attach_failure_leaves_nothing(void **state);
void test_cluster_attach_nomem(void **state);
void test_cluster_nodes_attached(void **state);
void test_cluster_node_attach_nomem(void **state);
void test_cluster_timer(void **state);
void test_cluster_timer_cancel(void **state);
void test_cluster_free_from_timer(void **state);
void test_cluster_free_from_node_callback(void **state);
void test_cluster_hooks_then_free_inside_timer(void **state);
void test_cluster_free_outside_callbacks(void **state);
void test_cluster_attach_again(void **state);
void test_cluster_attach_null(void **state);

#endif

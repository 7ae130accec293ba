/* A stand-in for the asynchronous cluster core, for the adapter tests, as
 * fake_async.h is for the single-handle one: the three functions the
 * cluster adapters call (redtls_async_cluster_attach, _process, _free)
 * with their documented behaviour, and a handle whose node connections
 * (fake_async handles) and timer the test makes and sets by hand. */
#ifndef REDTLS_TESTS_FAKE_ASYNC_CLUSTER_H
#define REDTLS_TESTS_FAKE_ASYNC_CLUSTER_H

#include <redtls/async_cluster.h>

#define FAKE_CLUSTER_MAX_NODES 8

/* What redtls_async_cluster_process does for the test. */
typedef void (*fake_cluster_process_fn)(redtls_async_cluster *acl, void *arg);

redtls_async_cluster *fake_cluster_new(void);
void fake_cluster_on_process(redtls_async_cluster *acl, fake_cluster_process_fn fn, void *arg);
/* The next redtls_async_cluster_attach fails with st (REDTLS_OK: none
 * fails) before calling any hook. */
void fake_cluster_fail_attach(redtls_async_cluster *acl, redtls_status st);
/* Makes a node connection (a fake_async handle, freed with the cluster
 * handle) and, when hooks are attached, hands it to attach_node; *st (may
 * be NULL) gets what that returned (REDTLS_OK when not attached). NULL
 * when out of room or memory. */
redtls_async *fake_cluster_add_node(redtls_async_cluster *acl, redtls_status *st);
/* Tells the attached hooks, as the core does when its next due time
 * changes. */
void fake_cluster_timer(redtls_async_cluster *acl, int ms);
int fake_cluster_attached(const redtls_async_cluster *acl);

/* Across handles, since a handle is gone once freed. */
struct fake_cluster_counts {
    int processes;    /* redtls_async_cluster_process calls */
    int attach_nodes; /* attach_node hook calls */
    int detaches;     /* detach hook calls */
    int frees;        /* handles actually freed */
};
extern struct fake_cluster_counts fake_cluster_counts;
void fake_cluster_reset_counts(void);

#endif

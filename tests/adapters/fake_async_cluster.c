#include <stdlib.h>
#include <string.h>

#include "fake_async.h"
#include "fake_async_cluster.h"

struct redtls_async_cluster {
    redtls_async_cluster_hooks hooks;
    int attached;
    redtls_status fail_attach;
    fake_cluster_process_fn fn;
    void *arg;
    redtls_async *node[FAKE_CLUSTER_MAX_NODES];
    size_t nodes;
    int processing; /* inside redtls_async_cluster_process */
    int freed;      /* redtls_async_cluster_free came during it: freed on return */
};

struct fake_cluster_counts fake_cluster_counts;

void fake_cluster_reset_counts(void)
{
    memset(&fake_cluster_counts, 0, sizeof(fake_cluster_counts));
}

redtls_async_cluster *fake_cluster_new(void)
{
    return calloc(1, sizeof(redtls_async_cluster));
}

void fake_cluster_on_process(redtls_async_cluster *acl, fake_cluster_process_fn fn, void *arg)
{
    acl->fn = fn;
    acl->arg = arg;
}

void fake_cluster_fail_attach(redtls_async_cluster *acl, redtls_status st)
{
    acl->fail_attach = st;
}

static redtls_status attach_node(redtls_async_cluster *acl, redtls_async *node)
{
    fake_cluster_counts.attach_nodes++;
    return acl->hooks.attach_node(acl->hooks.data, node);
}

redtls_async *fake_cluster_add_node(redtls_async_cluster *acl, redtls_status *st)
{
    redtls_async *node;
    redtls_status got = REDTLS_OK;

    if (acl->nodes == FAKE_CLUSTER_MAX_NODES || (node = fake_async_new()) == NULL)
        return NULL;
    acl->node[acl->nodes++] = node;
    if (acl->attached)
        got = attach_node(acl, node);
    if (st != NULL)
        *st = got;
    return node;
}

void fake_cluster_timer(redtls_async_cluster *acl, int ms)
{
    if (acl->attached)
        acl->hooks.timer(acl->hooks.data, ms);
}

int fake_cluster_attached(const redtls_async_cluster *acl)
{
    return acl->attached;
}

static void detach(redtls_async_cluster *acl)
{
    if (!acl->attached)
        return;
    acl->attached = 0;
    fake_cluster_counts.detaches++;
    acl->hooks.detach(acl->hooks.data);
}

/* As the core does it: new hooks replace the old ones, which are detached
 * first, and existing node connections are attached at once. When the
 * hooks refuse one, the call returns that refusal and keeps no hooks (the
 * new ones are detached). */
redtls_status redtls_async_cluster_attach(redtls_async_cluster *acl, const redtls_async_cluster_hooks *hooks)
{
    redtls_status first = REDTLS_OK;
    size_t i;

    if (acl == NULL)
        return REDTLS_E_INVALID;
    if (acl->fail_attach != REDTLS_OK) {
        redtls_status st = acl->fail_attach;
        acl->fail_attach = REDTLS_OK;
        return st;
    }
    if (hooks != NULL && (hooks->attach_node == NULL || hooks->timer == NULL || hooks->detach == NULL))
        return REDTLS_E_INVALID;
    detach(acl);
    if (hooks == NULL)
        return REDTLS_OK;
    acl->hooks = *hooks;
    acl->attached = 1;
    for (i = 0; i < acl->nodes; i++) {
        first = attach_node(acl, acl->node[i]);
        if (first != REDTLS_OK) {
            detach(acl);
            break;
        }
    }
    return first;
}

static void release(redtls_async_cluster *acl)
{
    fake_cluster_counts.frees++;
    free(acl);
}

redtls_status redtls_async_cluster_process(redtls_async_cluster *acl)
{
    if (acl == NULL)
        return REDTLS_E_INVALID;
    fake_cluster_counts.processes++;
    acl->processing++;
    if (acl->fn != NULL)
        acl->fn(acl, acl->arg);
    acl->processing--;
    if (acl->freed && acl->processing == 0)
        release(acl);
    return REDTLS_OK;
}

/* The node connections are freed (each detaching its own adapter), then
 * the handle's hooks are detached, the last call they get; the memory goes
 * when an enclosing redtls_async_cluster_process returns. */
void redtls_async_cluster_free(redtls_async_cluster *acl)
{
    size_t i;

    if (acl == NULL)
        return;
    for (i = 0; i < acl->nodes; i++)
        redtls_async_free(acl->node[i]);
    acl->nodes = 0;
    detach(acl);
    if (acl->processing > 0) {
        acl->freed = 1;
        return;
    }
    release(acl);
}

/* The asynchronous cluster client's nodes (one asynchronous connection
 * each) and its slot map, fetched in the background with CLUSTER SLOTS on
 * a node connection while commands keep flowing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>

#include "acluster.h"
#include "redirect.h"
#include "sock.h"

static const char cluster_slots_cmd[] = "*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";

int redtls__acl_hard_failure(redtls_status st)
{
    return st == REDTLS_E_TLS_VERIFY || st == REDTLS_E_TLS_HOSTNAME || st == REDTLS_E_TLS_CLIENT_CERT ||
           st == REDTLS_E_AUTH || st == REDTLS_E_CONFIG || st == REDTLS_E_NOMEM;
}

static int is_extra(const acl_node *n)
{
    return n->host && !n->in_map && !n->seed;
}

/* Forgets addresses outside the map that nothing uses. */
static void reclaim_extras(redtls_async_cluster *acl)
{
    for (size_t i = 0; i < acl->nnodes; i++) {
        acl_node *n = acl->nodes[i];
        /* A subscriber connection still holding subscriptions is kept: the
         * new map moves them (acluster_pubsub.c), and once it holds none
         * the next tick frees it. */
        if (!is_extra(n) || n->refs > 0 || (n->ac && redtls_async_pending(n->ac) > 0) ||
            (n->sub_ac && n->sub_ac->n_subs > 0))
            continue;
        int used = 0;
        for (size_t s = 0; s < REDTLS_CLUSTER_SLOTS && !used; s++)
            used = acl->slot_node[s] == i;
        if (used)
            continue;
        redtls_async_free(n->ac);
        if (n->sub_ac) {
            n->sub_ac->owner = NULL;
            redtls_async_free(n->sub_ac);
        }
        free(n->host);
        free(n->announced);
        memset(n, 0, sizeof *n);
        n->acl = acl;
    }
}

static size_t count_extras(const redtls_async_cluster *acl)
{
    size_t k = 0;
    for (size_t i = 0; i < acl->nnodes; i++)
        k += is_extra(acl->nodes[i]);
    return k;
}

/* The node for host:port, added when unknown. extra: it may be outside the
 * map (a redirection, an explicit node): at most ACL_MAX_EXTRA_NODES of
 * those are kept. SIZE_MAX when out of memory or room (errmsg says). */
size_t redtls__acl_node_for(redtls_async_cluster *acl, const char *host, uint16_t port, int extra, int *added)
{
    size_t free_i = SIZE_MAX;
    if (added)
        *added = 0;
    for (size_t i = 0; i < acl->nnodes; i++) {
        acl_node *n = acl->nodes[i];
        if (!n->host) {
            if (free_i == SIZE_MAX)
                free_i = i;
            continue;
        }
        if (n->port == port && strcasecmp(n->host, host) == 0)
            return i;
    }
    if (extra && count_extras(acl) >= ACL_MAX_EXTRA_NODES) {
        reclaim_extras(acl);
        if (count_extras(acl) >= ACL_MAX_EXTRA_NODES) {
            redtls__fail(acl->errmsg, REDTLS_E_CLUSTER_TOPOLOGY,
                         "%d addresses outside the slot map are in use; %.300s:%u waits for a slot map that names it",
                         ACL_MAX_EXTRA_NODES, host, (unsigned)port);
            return SIZE_MAX;
        }
        free_i = SIZE_MAX;
        for (size_t i = 0; i < acl->nnodes && free_i == SIZE_MAX; i++)
            if (!acl->nodes[i]->host)
                free_i = i;
    }
    char *copy = strdup(host);
    if (!copy) {
        redtls__fail(acl->errmsg, REDTLS_E_NOMEM, "out of memory");
        return SIZE_MAX;
    }
    if (free_i == SIZE_MAX) {
        if (acl->nnodes == acl->capnodes) {
            size_t cap = acl->capnodes ? 2 * acl->capnodes : 8;
            acl_node **v = realloc(acl->nodes, cap * sizeof *v); // NOLINT(bugprone-sizeof-expression): an array of pointers
            if (!v) {
                free(copy);
                redtls__fail(acl->errmsg, REDTLS_E_NOMEM, "out of memory");
                return SIZE_MAX;
            }
            acl->nodes = v;
            acl->capnodes = cap;
        }
        acl_node *n = calloc(1, sizeof *n);
        if (!n) {
            free(copy);
            redtls__fail(acl->errmsg, REDTLS_E_NOMEM, "out of memory");
            return SIZE_MAX;
        }
        n->acl = acl;
        free_i = acl->nnodes;
        acl->nodes[acl->nnodes++] = n;
    }
    acl_node *n = acl->nodes[free_i];
    n->host = copy;
    n->port = port;
    snprintf(n->name, sizeof n->name, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
    if (added)
        *added = 1;
    return free_i;
}

/* Makes a node's connection into *out: for commands (subs 0) or for shard
 * subscriptions (subs 1: masters only, and it keeps reconnecting for its
 * subscriptions). */
static redtls_status node_handle_new(redtls_async_cluster *acl, acl_node *n, redtls_async **out, int subs)
{
    acl->base.host = n->host;
    acl->base.port = n->port;
    acl->base.cluster_readonly = subs ? 0 : acl->read_replicas;
    /* A node announced by IP with a host name next to it is verified (and
     * sent SNI) by that name, unless the configuration says otherwise. */
    char *fixed = acl->base.verify_name;
    if (!fixed && n->announced && !redtls__alias_find(&acl->base.verify_names, n->host, 0))
        acl->base.verify_name = n->announced;
    redtls_status st = redtls_async_new(&acl->base, out);
    acl->base.host = acl->base_host;
    acl->base.verify_name = fixed;
    if (st != REDTLS_OK)
        return redtls__fail(acl->errmsg, st, "node %s: %s", n->name, acl->base.errmsg);
    redtls_async *ac = *out;
    ac->owner = n;
    ac->max_pending = SIZE_MAX; /* the cluster handle counts */
    if (subs) {
        ac->ps_lost = redtls__acl_ps_lost;
    } else {
        ac->fail_queued = 1;
        ac->pool_max = ACL_OP_POOL_MAX; /* a batch's worth of records kept */
    }
    if (acl->has_hooks && acl->hooks.attach_node) {
        st = acl->hooks.attach_node(acl->hooks.data, ac);
        if (st != REDTLS_OK) {
            redtls_async_free(ac);
            *out = NULL;
            return redtls__fail(acl->errmsg, st, "node %s: the event loop could not take its connection (%s)",
                                n->name, redtls_strerror(st));
        }
    }
    return REDTLS_OK;
}

redtls_status redtls__acl_node_conn_new(redtls_async_cluster *acl, acl_node *n)
{
    return node_handle_new(acl, n, &n->ac, 0);
}

redtls_status redtls__acl_node_sub_conn_new(redtls_async_cluster *acl, acl_node *n)
{
    return node_handle_new(acl, n, &n->sub_ac, 1);
}

void redtls__acl_node_settle_slow(redtls_async_cluster *acl, acl_node *n)
{
    (void)acl;
    if (n->ac && n->leaving && redtls_async_pending(n->ac) == 0) {
        redtls_async_free(n->ac);
        n->ac = NULL;
        n->leaving = 0;
    }
}

void redtls__acl_close_orphaned(redtls_async_cluster *acl)
{
    for (size_t i = 0; i < acl->nnodes && !acl->freeing; i++) {
        acl_node *n = acl->nodes[i];
        /* Replies owed for ended ops: ours (orphans) or ones the node's
         * connection timed out itself (at the front of its list, before
         * the first record still owed a callback). A refresh's CLUSTER
         * SLOTS in flight is left alone. */
        if (n->ac && (n->orphans > 0 || (n->ac->s_head && n->ac->s_head != n->ac->s_live)))
            redtls_async_close(n->ac);
    }
}

void redtls__acl_nodes_free(redtls_async_cluster *acl)
{
    for (size_t i = 0; i < acl->nnodes; i++) {
        acl_node *n = acl->nodes[i];
        redtls_async *ac = n->ac, *sub = n->sub_ac;
        n->ac = n->sub_ac = NULL;
        /* A node connection inside its own pass outlives this (its memory
         * goes when the pass ends) and may still call back for commands it
         * had already taken off its lists: those calls find no owner. */
        if (ac)
            ac->owner = NULL;
        if (sub)
            sub->owner = NULL;
        redtls_async_free(ac);
        redtls_async_free(sub);
    }
    for (size_t i = 0; i < acl->nnodes; i++) {
        free(acl->nodes[i]->host);
        free(acl->nodes[i]->announced);
        free(acl->nodes[i]);
    }
    free(acl->nodes);
    acl->nodes = NULL;
    acl->nnodes = acl->capnodes = 0;
}

/* ---- the slot map ---- */

static void install(redtls_async_cluster *acl, redtls__topology *t, size_t *map)
{
    for (size_t i = 0; i < acl->nnodes; i++)
        acl->nodes[i]->in_map = acl->nodes[i]->master = 0;
    for (size_t i = 0; i < t->nnodes; i++) {
        acl_node *n = acl->nodes[map[i]];
        n->in_map = 1;
        const char *hn = t->nodes[i].hostname;
        int use = hn && hn[0] && redtls__is_ip_literal(n->host) && strcasecmp(hn, n->host) != 0;
        if (use ? !n->announced || strcasecmp(n->announced, hn) != 0 : n->announced != NULL) {
            char *copy = use ? strdup(hn) : NULL;
            if (use && !copy)
                continue; /* out of memory: keep the old name */
            free(n->announced);
            n->announced = copy;
            /* The name to verify changed: a new connection, once the old
             * one owes nothing. */
            n->renamed = n->ac != NULL;
        }
    }
    for (size_t s = 0; s < REDTLS_CLUSTER_SLOTS; s++)
        acl->slot_node[s] = ACL_NO_SLOT;
    for (size_t r = 0; r < t->nranges; r++) {
        size_t m = map[t->ranges[r].master];
        acl->nodes[m]->master = 1;
        for (unsigned s = t->ranges[r].start; s <= t->ranges[r].end; s++)
            acl->slot_node[s] = (uint32_t)m;
    }
    /* Connections to addresses outside the map (nodes that left, seeds
     * that are not nodes, redirection targets) are closed, now or once
     * their replies are in. */
    for (size_t i = 0; i < acl->nnodes; i++) {
        acl_node *n = acl->nodes[i];
        n->leaving = n->ac && (!n->in_map || n->renamed);
        n->renamed = 0;
        redtls__acl_node_settle(acl, n);
    }
    reclaim_extras(acl);
    redtls__topology_free(acl->topo);
    free(acl->topo_node);
    acl->topo = t;
    acl->topo_node = map;
    acl->have_map = 1;
    acl->map_st = REDTLS_OK;
    acl->stats[REDTLS_CLUSTER_STAT_REFRESHES]++;
}

/* The refresh is over: ok (a map was installed) or not. */
static void refresh_done(redtls_async_cluster *acl, int ok)
{
    acl->refreshing = 0;
    acl->refresh_gen++;
    acl->refreshes_done++;
    redtls_status st = REDTLS_OK;
    if (!ok) {
        st = acl->refresh_last;
        redtls__fail(acl->errmsg, st, "%s%.400s", acl->have_map ? "slot map kept: " : "no slot map: ",
                     acl->refresh_cause);
        if (!acl->have_map) {
            acl->map_st = st;
            memcpy(acl->map_msg, acl->errmsg, sizeof acl->map_msg);
        }
    }
    acl->refresh_result = st;
    if (acl->connect_asked && (ok || !acl->have_map)) {
        redtls_async_cluster_connect_cb cb = acl->ccb;
        void *ud = acl->cud;
        acl->connect_asked = 0;
        acl->ccb = NULL;
        if (cb) {
            char msg[REDTLS__ERRMSG_MAX];
            memcpy(msg, acl->errmsg, sizeof msg);
            cb(acl, st, ud);
            if (acl->dead)
                return;
            memcpy(acl->errmsg, msg, sizeof msg);
        }
    }
    if (ok)
        redtls__acl_map_installed(acl);
    else if (!acl->have_map)
        redtls__acl_map_failed(acl, st);
}

static void refresh_next(redtls_async_cluster *acl, int64_t now);

/* A node's answer to CLUSTER SLOTS. */
static void refresh_reply(redtls_async *ac, redtls_status st, redisReply *r, void *ud)
{
    acl_node *n = ac->owner;
    if (!n) {
        freeReplyObject(r); /* the cluster handle is gone */
        return;
    }
    redtls_async_cluster *acl = n->acl;
    if (acl->freeing || !acl->refreshing || (unsigned)(uintptr_t)ud != acl->refresh_gen) {
        freeReplyObject(r);
        if (!acl->freeing)
            redtls__acl_node_settle(acl, n);
        return;
    }
    acl->depth++;
    if (st != REDTLS_OK) {
        acl->refresh_last = st;
        snprintf(acl->refresh_cause, sizeof acl->refresh_cause, "node %.200s: %.290s", n->name,
                 redtls_async_errmsg(ac));
    } else if (r->type == REDIS_REPLY_ERROR) {
        acl->refresh_last = REDTLS_E_CLUSTER_TOPOLOGY;
        snprintf(acl->refresh_cause, sizeof acl->refresh_cause, "node %.200s answered CLUSTER SLOTS with: %.200s",
                 n->name, r->str);
    } else {
        redtls__topology *t = NULL;
        char err[REDTLS__ERRMSG_MAX];
        redtls_status pst = redtls__topology_parse(r, n->host, &t, err);
        if (pst == REDTLS_OK && t->covered == 0) {
            redtls__topology_free(t);
            t = NULL;
            pst = redtls__fail(err, REDTLS_E_PROTOCOL, "the map covers no slot");
        }
        size_t *map = NULL;
        if (pst == REDTLS_OK) {
            map = malloc((t->nnodes ? t->nnodes : 1) * sizeof *map);
            for (size_t m = 0; map && m < t->nnodes; m++)
                if ((map[m] = redtls__acl_node_for(acl, t->nodes[m].host, t->nodes[m].port, 0, NULL)) == SIZE_MAX) {
                    free(map);
                    map = NULL;
                }
            if (!map) {
                redtls__topology_free(t);
                pst = REDTLS_E_NOMEM;
                snprintf(err, sizeof err, "out of memory");
            }
        }
        if (pst == REDTLS_OK) {
            freeReplyObject(r);
            install(acl, t, map);
            refresh_done(acl, 1);
            goto out;
        }
        if (pst != REDTLS_E_NOMEM)
            acl->stats[REDTLS_CLUSTER_STAT_REFRESH_REJECTED]++;
        acl->refresh_last = pst == REDTLS_E_NOMEM ? pst : REDTLS_E_CLUSTER_TOPOLOGY;
        snprintf(acl->refresh_cause, sizeof acl->refresh_cause,
                 "node %.150s sent an invalid slot map, not used: %.300s", n->name, err);
    }
    freeReplyObject(r);
    refresh_next(acl, redtls__acl_now());
out:
    if (!acl->dead) {
        redtls__acl_node_settle(acl, n);
        redtls__acl_arm(acl);
    }
    acl->depth--;
    if (acl->depth == 0 && acl->dead)
        free(acl);
}

/* Asks the next node of the order; at the end, the refresh failed. */
static void refresh_next(redtls_async_cluster *acl, int64_t now)
{
    while (acl->refresh_i < acl->refresh_n) {
        size_t i = acl->refresh_order[acl->refresh_i++];
        acl_node *n = i < acl->nnodes ? acl->nodes[i] : NULL;
        if (!n || !n->host)
            continue;
        /* Skip nodes known to be down, unless nothing else is left. */
        if (n->ac && redtls__async_down(n->ac, now) && acl->refresh_i < acl->refresh_n)
            continue;
        redtls_status st = redtls__acl_node_conn(acl, n);
        if (st == REDTLS_OK) {
            unsigned timeout = acl->base.command_timeout_ms ? acl->base.command_timeout_ms : 10000U;
            acl->refresh_deadline = now + timeout;
            st = redtls__async_issue_raw(n->ac, NULL, 0, cluster_slots_cmd, sizeof cluster_slots_cmd - 1,
                                         acl->refresh_deadline, refresh_reply,
                                         (void *)(uintptr_t)acl->refresh_gen); // NOLINT(performance-no-int-to-ptr): a number, not an address
            if (st == REDTLS_OK)
                return;
            snprintf(acl->errmsg, sizeof acl->errmsg, "node %.200s: %.290s", n->name, redtls_async_errmsg(n->ac));
        }
        acl->refresh_last = st;
        memcpy(acl->refresh_cause, acl->errmsg, sizeof acl->refresh_cause);
    }
    refresh_done(acl, 0);
}

static void refresh_start(redtls_async_cluster *acl, int64_t now)
{
    if (acl->refreshing || acl->freeing)
        return;
    size_t n = acl->nnodes;
    size_t *order = realloc(acl->refresh_order, (n ? n : 1) * sizeof *order);
    acl->last_refresh = now;
    acl->force_refresh = 0;
    acl->want_refresh = 0;
    if (!order) {
        acl->refresh_last = REDTLS_E_NOMEM;
        snprintf(acl->refresh_cause, sizeof acl->refresh_cause, "out of memory");
        acl->refreshing = 1;
        refresh_done(acl, 0);
        return;
    }
    acl->refresh_order = order;
    size_t k = 0, start = n ? (size_t)(redtls__acl_rand(acl) % n) : 0;
    /* Map masters from a random one (spreads the load), then replicas,
     * then the seeds in the order given. */
    for (int pass = 0; pass < 3; pass++)
        for (size_t j = 0; j < n; j++) {
            size_t i = pass < 2 ? (start + j) % n : j;
            const acl_node *c = acl->nodes[i];
            if (!c->host)
                continue;
            int want = pass == 0 ? c->in_map && c->master : pass == 1 ? c->in_map && !c->master : !c->in_map && c->seed;
            if (want)
                order[k++] = i;
        }
    acl->refresh_n = k;
    acl->refresh_i = 0;
    acl->refreshing = 1;
    acl->refresh_gen++;
    acl->refresh_last = REDTLS_E_CLUSTER_TOPOLOGY;
    snprintf(acl->refresh_cause, sizeof acl->refresh_cause, "no node to ask");
    refresh_next(acl, now);
}

void redtls__acl_refresh_tick(redtls_async_cluster *acl, int64_t now)
{
    if (acl->refreshing) {
        if (now < acl->refresh_deadline)
            return;
        /* The node did not answer in time: the next one is asked (its late
         * answer, if any, is dropped). */
        acl->refresh_gen++;
        acl->refresh_last = REDTLS_E_COMMAND_TIMEOUT;
        snprintf(acl->refresh_cause, sizeof acl->refresh_cause, "no answer to CLUSTER SLOTS within %u ms",
                 acl->base.command_timeout_ms ? acl->base.command_timeout_ms : 10000U);
        refresh_next(acl, now);
        return;
    }
    if (redtls__acl_refresh_due(acl) <= now)
        refresh_start(acl, now);
}

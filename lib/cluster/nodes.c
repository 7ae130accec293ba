/* The cluster's node list (map nodes, seeds, a bounded number of other
 * addresses), one connection per node, and the slot map: fetching,
 * validating, installing and refreshing it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "redirect.h"

uint64_t redtls__cluster_rand(redtls_cluster *cl)
{
    /* xorshift64* */
    cl->rng ^= cl->rng >> 12;
    cl->rng ^= cl->rng << 25;
    cl->rng ^= cl->rng >> 27;
    return cl->rng * 0x2545F4914F6CDD1DULL;
}

static size_t find_node(const redtls_cluster *cl, const char *host, uint16_t port)
{
    for (size_t i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i].host && cl->nodes[i].port == port && strcasecmp(cl->nodes[i].host, host) == 0)
            return i;
    return NO_NODE;
}

/* Room for n elements of elem bytes in v (capacity *cap, doubling from
 * 8): the possibly moved vector, or NULL when out of memory (v still
 * valid, *cap unchanged). */
void *redtls__cluster_grow_slow(void *v, size_t *cap, size_t n, size_t elem)
{
    size_t c = *cap ? *cap : 8;
    while (c < n) {
        if (c > SIZE_MAX / 2 / elem)
            return NULL;
        c *= 2;
    }
    void *nv = realloc(v, c * elem);
    if (nv)
        *cap = c;
    return nv;
}

static int is_extra(const redtls__cl_node *n)
{
    return n->host && !n->in_map && !n->seed;
}

/* 1 when the batch in progress (or the slot table, after a MOVED) still
 * names node i. */
static int node_needed(const redtls_cluster *cl, size_t i, int check_slots)
{
    if (cl->nodes[i].inflight > 0)
        return 1;
    for (size_t k = 0; k < cl->nops; k++) {
        const redtls__cl_op *o = &cl->ops[k];
        if (o->state != OP_DONE && (o->fixed == i || o->ask == i || o->moved == i || o->target == i))
            return 1;
    }
    for (size_t s = 0; check_slots && s < REDTLS_CLUSTER_SLOTS; s++)
        if (cl->slot_node[s] == i)
            return 1;
    return 0;
}

/* Forgets the addresses outside the map and the seeds that nothing needs
 * any more, closing their connections. */
static void reclaim_extras(redtls_cluster *cl, int check_slots)
{
    for (size_t i = 0; i < cl->nnodes; i++) {
        redtls__cl_node *n = &cl->nodes[i];
        if (!is_extra(n) || node_needed(cl, i, check_slots))
            continue;
        redtls__cluster_node_close(n);
        free(n->host);
        free(n->announced);
        memset(n, 0, sizeof *n);
    }
}

/* The node for host:port, added when unknown (*added set). extra: the
 * address may not be in the slot map (a redirection, an explicit node),
 * so it counts against MAX_EXTRA_NODES. NO_NODE when out of memory, or
 * when an extra one finds no room (errmsg says so). */
size_t redtls__cluster_node_for(redtls_cluster *cl, const char *host, uint16_t port, int extra, int *added)
{
    if (added)
        *added = 0;
    size_t i = find_node(cl, host, port);
    if (i != NO_NODE)
        return i;
    if (extra) {
        size_t n = 0;
        for (size_t j = 0; j < cl->nnodes; j++)
            n += is_extra(&cl->nodes[j]);
        if (n >= MAX_EXTRA_NODES) {
            reclaim_extras(cl, 1);
            n = 0;
            for (size_t j = 0; j < cl->nnodes; j++)
                n += is_extra(&cl->nodes[j]);
            if (n >= MAX_EXTRA_NODES) {
                redtls__fail(cl->errmsg, REDTLS_E_CLUSTER_TOPOLOGY,
                             "%d addresses outside the slot map are in use; %.300s:%u waits for a slot map "
                             "that names it",
                             MAX_EXTRA_NODES, host, (unsigned)port);
                return NO_NODE;
            }
        }
    }
    for (i = 0; i < cl->nnodes && cl->nodes[i].host; i++) {
    }
    if (i == cl->nnodes) {
        redtls__cl_node *v = redtls__cluster_grow(cl->nodes, &cl->capnodes, cl->nnodes + 1, sizeof *v);
        if (!v)
            return NO_NODE;
        cl->nodes = v;
    }
    redtls__cl_node *n = &cl->nodes[i];
    memset(n, 0, sizeof *n);
    n->qhead = n->qtail = NO_OP;
    n->host = strdup(host);
    if (!n->host)
        return NO_NODE;
    n->port = port;
    snprintf(n->name, sizeof n->name, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
    if (i == cl->nnodes)
        cl->nnodes++;
    if (added)
        *added = 1;
    return i;
}

/* The node's connection, made on first use from the shared configuration
 * (so its TLS context is shared too). */
redtls_status redtls__cluster_node_conn(redtls_cluster *cl, size_t i, redtls_conn **out)
{
    redtls__cl_node *n = &cl->nodes[i];
    if (!n->conn) {
        cl->base.host = n->host;
        cl->base.port = n->port;
        cl->base.cluster_readonly = cl->read_replicas;
        /* A node announced by IP with a host name next to it is verified
         * (and sent SNI) by that name, unless the configuration says
         * otherwise (a fixed name, or a mapping for this address). */
        char *fixed = cl->base.verify_name;
        if (!fixed && n->announced && !redtls__alias_find(&cl->base.verify_names, n->host, 0))
            cl->base.verify_name = n->announced;
        redtls_status st = redtls_conn_new(&cl->base, &n->conn);
        cl->base.host = cl->base_host;
        cl->base.verify_name = fixed;
        if (st != REDTLS_OK)
            return redtls__fail(cl->errmsg, st, "node %s: %s", n->name, cl->base.errmsg);
    }
    if (!redtls__conn_up(n->conn))
        redtls__conn_set_preferred(n->conn, cl->preferred);
    *out = n->conn;
    return REDTLS_OK;
}

void redtls__cluster_node_close(redtls__cl_node *n)
{
    redtls_conn_free(n->conn);
    n->conn = NULL;
}

/* A node whose connection is down and not due for another attempt. */
int redtls__cluster_backing_off(const redtls__cl_node *n)
{
    return n->conn && redtls__conn_backing_off(n->conn, redtls__now_ms());
}

/* Failures that waiting will not cure: a node that fails verification or
 * refuses the credentials is not retried within the call. */
int redtls__cluster_hard_failure(redtls_status st)
{
    return st == REDTLS_E_TLS_VERIFY || st == REDTLS_E_TLS_HOSTNAME || st == REDTLS_E_TLS_CLIENT_CERT ||
           st == REDTLS_E_AUTH || st == REDTLS_E_CONFIG || st == REDTLS_E_NOMEM;
}

/* The status a failed connect should be reported with: a connection
 * waiting for its backoff reports the cause of its last failure when that
 * one was a hard failure. */
redtls_status redtls__cluster_connect_status(const redtls_conn *c, redtls_status st)
{
    if (st == REDTLS_E_UNAVAILABLE && redtls__cluster_hard_failure(redtls__conn_last_status(c)))
        return redtls__conn_last_status(c);
    return st;
}

/* A node name as users give it: an endpoint with a host. */
int redtls__cluster_parse_hostport(const char *s, size_t len, char *host, size_t hostcap, uint16_t *port)
{
    return redtls__parse_endpoint(s, len, host, hostcap, port) == 0 && host[0] ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Topology                                                            */
/* ------------------------------------------------------------------ */

/* Installs a new map. It runs between rounds of a batch (or outside any
 * batch), so no node owes a reply and closing a connection loses nothing. */
static void install(redtls_cluster *cl, redtls__topology *t, size_t *map)
{
    for (size_t i = 0; i < cl->nnodes; i++)
        cl->nodes[i].in_map = cl->nodes[i].master = 0;
    for (size_t i = 0; i < t->nnodes; i++) {
        redtls__cl_node *n = &cl->nodes[map[i]];
        n->in_map = 1;
        const char *hn = t->nodes[i].hostname;
        int use = hn && hn[0] && redtls__is_ip_literal(n->host) && strcasecmp(hn, n->host) != 0;
        if (use ? !n->announced || strcasecmp(n->announced, hn) != 0 : n->announced != NULL) {
            /* The name to verify changed: reconnect under the new one. */
            char *copy = use ? strdup(hn) : NULL;
            if (use && !copy)
                continue; /* out of memory: keep the old name */
            free(n->announced);
            n->announced = copy;
            redtls__cluster_node_close(n);
        }
    }
    for (size_t s = 0; s < REDTLS_CLUSTER_SLOTS; s++)
        cl->slot_node[s] = NO_SLOT;
    for (size_t r = 0; r < t->nranges; r++) {
        size_t m = map[t->ranges[r].master];
        cl->nodes[m].master = 1;
        for (unsigned s = t->ranges[r].start; s <= t->ranges[r].end; s++)
            cl->slot_node[s] = (uint32_t)m;
    }
    /* Connections to nodes outside the map (nodes that left, seeds that
     * are not nodes, redirection targets) are closed; the addresses
     * nothing needs are forgotten. */
    for (size_t i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i].host && !cl->nodes[i].in_map)
            redtls__cluster_node_close(&cl->nodes[i]);
    reclaim_extras(cl, 0);
    redtls__topology_free(cl->topo);
    free(cl->topo_node);
    cl->topo = t;
    cl->topo_node = map;
    cl->have_map = 1;
    cl->map_st = REDTLS_OK;
    cl->want_refresh = 0;
    cl->stats[REDTLS_CLUSTER_STAT_REFRESHES]++;
}

/* One CLUSTER SLOTS round trip on node i. */
static redtls_status fetch_slots(redtls_cluster *cl, size_t i, int64_t deadline, redisReply **reply, int *no_time)
{
    *reply = NULL;
    *no_time = 0;
    redtls_conn *c = NULL;
    redtls_status st = redtls__cluster_node_conn(cl, i, &c);
    if (st != REDTLS_OK || !c)
        return st != REDTLS_OK ? st : REDTLS_E_NOMEM;
    if (redtls__conn_owed(c) > 0)
        return redtls__fail(cl->errmsg, REDTLS_E_STATE, "node %s is busy", cl->nodes[i].name);
    /* CLUSTER SLOTS is safe to repeat: a connection found broken when it
     * was reused gets one more try on a fresh one. */
    for (int attempt = 0; attempt < 2; attempt++) {
        int reused = redtls__conn_up(c);
        if ((st = redtls__conn_ensure_once(c, deadline)) == REDTLS_OK) {
            cl->preferred = redtls__conn_preferred(c);
            static const char cmd[] = "*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";
            st = redtls__conn_append_raw(c, cmd, sizeof cmd - 1);
            if (st == REDTLS_OK)
                st = redtls__conn_read(c, deadline, 0, reply);
        } else {
            *no_time = redtls__conn_no_time(c);
            st = redtls__cluster_connect_status(c, st);
        }
        if (st != REDTLS_E_OUTCOME_UNKNOWN || !reused)
            break;
    }
    if (st != REDTLS_OK)
        redtls__fail(cl->errmsg, st, "node %s: %s", cl->nodes[i].name, redtls__conn_msg(c));
    return st;
}

/* Tries the nodes of the map (masters first, from a random one), then the
 * seeds, until one gives a valid map. */
redtls_status redtls__cluster_refresh(redtls_cluster *cl, int64_t deadline)
{
    cl->last_refresh = redtls__now_ms();
    cl->force_refresh = 0;
    cl->refresh_spent = 0;
    size_t n = cl->nnodes;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!order)
        return redtls__fail(cl->errmsg, REDTLS_E_NOMEM, "out of memory");
    size_t k = 0;
    size_t start = n ? (size_t)(redtls__cluster_rand(cl) % n) : 0;
    /* Map nodes from a random one (spreads the load); seeds in the order
     * given. */
    for (int pass = 0; pass < 3; pass++)
        for (size_t j = 0; j < n; j++) {
            size_t i = pass < 2 ? (start + j) % n : j;
            const redtls__cl_node *c = &cl->nodes[i];
            int want = pass == 0 ? c->in_map && c->master : pass == 1 ? c->in_map && !c->master : !c->in_map && c->seed;
            if (want)
                order[k++] = i;
        }
    redtls_status last = REDTLS_E_CLUSTER_TOPOLOGY;
    char cause[REDTLS__ERRMSG_MAX] = "no node to ask";
    size_t tried = 0;
    for (size_t j = 0; j < k; j++) {
        size_t i = order[j];
        /* Skip nodes known to be down, unless nothing else is left. */
        if (redtls__cluster_backing_off(&cl->nodes[i]) && j + 1 < k)
            continue;
        if (redtls__now_ms() >= deadline)
            break;
        redisReply *r = NULL;
        int no_time = 0;
        redtls_status st = fetch_slots(cl, i, deadline, &r, &no_time);
        if (no_time)
            break; /* the deadline passed before an attempt: not a failure */
        tried++;
        if (st == REDTLS_OK && r->type == REDIS_REPLY_ERROR) {
            st = redtls__fail(cl->errmsg, REDTLS_E_CLUSTER_TOPOLOGY, "node %s answered CLUSTER SLOTS with: %.200s",
                              cl->nodes[i].name, r->str);
        } else if (st == REDTLS_OK) {
            redtls__topology *t = NULL;
            char err[REDTLS__ERRMSG_MAX];
            st = redtls__topology_parse(r, cl->nodes[i].host, &t, err);
            if (st == REDTLS_OK && t->covered == 0) {
                redtls__topology_free(t);
                st = redtls__fail(err, REDTLS_E_PROTOCOL, "the map covers no slot");
            }
            if (st == REDTLS_OK) {
                size_t *map = malloc((t->nnodes ? t->nnodes : 1) * sizeof *map);
                for (size_t m = 0; map && m < t->nnodes; m++)
                    if ((map[m] = redtls__cluster_node_for(cl, t->nodes[m].host, t->nodes[m].port, 0, NULL)) == NO_NODE) {
                        free(map);
                        map = NULL;
                    }
                if (!map) {
                    redtls__topology_free(t);
                    st = redtls__fail(cl->errmsg, REDTLS_E_NOMEM, "out of memory");
                } else {
                    freeReplyObject(r);
                    free(order);
                    install(cl, t, map);
                    return REDTLS_OK;
                }
            } else if (st != REDTLS_E_NOMEM) {
                cl->stats[REDTLS_CLUSTER_STAT_REFRESH_REJECTED]++;
                st = redtls__fail(cl->errmsg, REDTLS_E_CLUSTER_TOPOLOGY,
                                  "node %s sent an invalid slot map, not used: %.300s", cl->nodes[i].name, err);
            }
        }
        freeReplyObject(r);
        last = st;
        memcpy(cause, cl->errmsg, sizeof cause);
    }
    free(order);
    cl->refresh_spent = tried == 0 && redtls__now_ms() >= deadline;
    if (cl->refresh_spent)
        return redtls__fail(cl->errmsg, REDTLS_E_COMMAND_TIMEOUT, "no time left to fetch the slot map");
    redtls__fail(cl->errmsg, last, "%s%.400s", cl->have_map ? "slot map kept: " : "no slot map: ", cause);
    if (!cl->have_map && last != REDTLS_E_COMMAND_TIMEOUT) {
        cl->map_st = last;
        memcpy(cl->map_msg, cl->errmsg, sizeof cl->map_msg);
    }
    return last;
}

/* Refreshes when one is due: without a map, or when a redirection or a
 * failure asked for one, no sooner than the minimum gap after the last
 * attempt (a node met by IP that needs its name skips the gap); with a
 * map, also every refresh interval. */
redtls_status redtls__cluster_maybe_refresh(redtls_cluster *cl, int64_t deadline)
{
    int64_t now = redtls__now_ms();
    int64_t since = now - cl->last_refresh;
    int gap_passed = since >= (int64_t)cl->refresh_gap_ms;
    if (!cl->have_map)
        return gap_passed || cl->force_refresh ? redtls__cluster_refresh(cl, deadline) : REDTLS_OK;
    if (cl->force_refresh || (cl->want_refresh && gap_passed) ||
        (cl->refresh_interval_ms && since >= (int64_t)cl->refresh_interval_ms))
        return redtls__cluster_refresh(cl, deadline);
    return REDTLS_OK;
}

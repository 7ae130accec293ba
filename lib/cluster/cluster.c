/*
 * The cluster client: a slot map, one redtls_conn per node (made lazily
 * from one private copy of the configuration), and a batch engine that
 * single commands, split multi-key commands and pipelines all go through.
 *
 * A batch is a list of user commands ("ucmd"), each made of one or more
 * framed sub-commands ("op", several when a multi-key command is split by
 * slot). Each round of the engine routes every unfinished op to a node and
 * writes every node's ops, then waits on all those nodes at once, taking
 * each node's replies as they arrive and classifying them: done,
 * redirected (MOVED/ASK: sent on at once, while other nodes are still
 * awaited), or waiting (TRYAGAIN, CLUSTERDOWN, an unreachable node: retry
 * in the next round, after a backoff delay and usually a topology
 * refresh). At the call's deadline only the nodes that still owe replies
 * lose their commands (and their connections). An op is only retried when
 * the server cannot have run it (redirections, error replies that say so,
 * connections that failed before anything was written), or when the
 * caller declared it idempotent.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <poll.h>
#include <sys/ioctl.h>

#include <hiredis/hiredis.h>

#include "../conn.h"
#include "keys.h"
#include "redirect.h"
#include "topology.h"

#define NO_NODE SIZE_MAX
#define NO_OP SIZE_MAX
#define NO_SLOT UINT32_MAX
/* Addresses kept besides the slot map's nodes and the seeds (redirection
 * targets, explicit nodes): past this many, those no command of the batch
 * in progress needs are forgotten (README, Cluster mode). */
#define MAX_EXTRA_NODES 16
#define DEFAULT_MAX_REDIRECTS 5u
#define DEFAULT_REFRESH_INTERVAL_MS 30000u
#define DEFAULT_REFRESH_GAP_MS 500u
#define INLINE_KEYS 16

typedef struct cnode {
    char *host; /* NULL: a free entry */
    uint16_t port;
    char name[300]; /* "host:port", IPv6 bracketed */
    char *announced; /* Redis 7 "hostname" metadata of a node reached by IP */
    redtls_conn *conn;
    int in_map;
    int master;
    int seed;
    /* Ops written and not answered yet, in the order written. */
    size_t qhead, qtail, inflight;
    int retire; /* left the map: closed once its replies are in */
} cnode;

enum { OP_TODO, OP_SENT, OP_DONE };
enum { MERGE_NONE, MERGE_MGET, MERGE_OK, MERGE_SUM };
/* Why an op waits for the next round. */
enum { WAIT_NONE, WAIT_REDIRECT, WAIT_BACKOFF };

typedef struct op {
    size_t off, len; /* framed command in the arena */
    unsigned flags;
    uint32_t slot; /* NO_SLOT: any master */
    int readonly;
    size_t fixed;  /* explicit node, or NO_NODE */
    size_t ask;    /* ASK target for the next send, or NO_NODE */
    size_t moved;  /* MOVED target for the next send (once), or NO_NODE */
    size_t target; /* node of this round */
    unsigned redirects;
    int state;
    int wait;
    int to_master; /* a replica could not serve it */
    int asking;    /* ASKING went before it, its reply not read yet */
    size_t qnext;  /* next op in flight on the same node */
    int resent;    /* the one idempotent resend is spent */
    int noauth;    /* the one NOAUTH retry is spent */
    redtls_status st;
    redisReply *reply; /* final reply, or the last retryable error reply */
    char *msg;         /* message of a failed status */
    size_t ucmd;
    size_t map_off, map_n; /* MGET: original positions of this op's keys */
} op;

typedef struct ucmd {
    size_t first, n; /* ops */
    int merge;
    size_t nkeys; /* MGET */
    redtls_status st;
    redisReply *reply;
    char *msg;
} ucmd;

struct redtls_cluster {
    redtls_config base; /* host/port swapped per node when a conn is made */
    char *base_host;
    cnode *nodes;
    size_t nnodes, capnodes;
    uint32_t slot_node[REDTLS_CLUSTER_SLOTS]; /* master node per slot */
    redtls__topology *topo;
    size_t *topo_node; /* topology node index -> nodes index */
    int have_map;
    unsigned max_redirects;
    unsigned refresh_interval_ms, refresh_gap_ms;
    unsigned outage_ms; /* the configuration's outage limit: bounds retries without a command timeout */
    int read_replicas;
    int want_refresh;
    int force_refresh; /* a node met by IP needs its name: no throttle */
    int64_t last_refresh; /* last attempt */
    int refresh_spent;    /* the last refresh ended before asking anyone */
    /* Without a map: why the last refresh failed, for calls that the
     * throttle keeps from trying again. */
    redtls_status map_st;
    char map_msg[REDTLS__ERRMSG_MAX];
    int preferred;        /* token the nodes prefer */
    redtls__backoff backoff;
    uint64_t rng;
    size_t rr; /* round robin for keyless commands */
    uint64_t stats[9];
    redtls__cmd_cache cmd_cache; /* last command name looked up */
    /* Batch. */
    op *ops;
    size_t nops, capops;
    ucmd *ucmds;
    size_t nucmds, capucmds, next_out;
    int ran;
    char *arena;
    size_t alen, acap;
    size_t *map;
    size_t nmap, capmap;
    int redirected; /* an op waits to be sent on within the round */
    struct pollfd *pfd;
    size_t *pfd_node;
    size_t cappfd, cappfd_node;
    char errmsg[REDTLS__ERRMSG_MAX];
};

/* ------------------------------------------------------------------ */
/* Nodes                                                               */
/* ------------------------------------------------------------------ */

static uint64_t next_rand(redtls_cluster *cl)
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
static void *grow(void *v, size_t *cap, size_t n, size_t elem)
{
    if (n <= *cap)
        return v;
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

static void node_close(cnode *n);

static int is_extra(const cnode *n)
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
        const op *o = &cl->ops[k];
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
        cnode *n = &cl->nodes[i];
        if (!is_extra(n) || node_needed(cl, i, check_slots))
            continue;
        node_close(n);
        free(n->host);
        free(n->announced);
        memset(n, 0, sizeof *n);
    }
}

/* The node for host:port, added when unknown (*added set). extra: the
 * address may not be in the slot map (a redirection, an explicit node),
 * so it counts against MAX_EXTRA_NODES. NO_NODE when out of memory, or
 * when an extra one finds no room (errmsg says so). */
static size_t node_for(redtls_cluster *cl, const char *host, uint16_t port, int extra, int *added)
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
        cnode *v = grow(cl->nodes, &cl->capnodes, cl->nnodes + 1, sizeof *v);
        if (!v)
            return NO_NODE;
        cl->nodes = v;
    }
    cnode *n = &cl->nodes[i];
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
static redtls_status node_conn(redtls_cluster *cl, size_t i, redtls_conn **out)
{
    cnode *n = &cl->nodes[i];
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
    if (!n->conn->tp)
        n->conn->preferred = cl->preferred;
    *out = n->conn;
    return REDTLS_OK;
}

static void node_close(cnode *n)
{
    redtls_conn_free(n->conn);
    n->conn = NULL;
    n->retire = 0;
}

/* A node whose connection is down and not due for another attempt. */
static int backing_off(const cnode *n)
{
    return n->conn && !n->conn->tp && (n->conn->gave_up || n->conn->next_attempt > redtls__now_ms());
}

/* Failures that waiting will not cure: a node that fails verification or
 * refuses the credentials is not retried within the call. */
static int hard_failure(redtls_status st)
{
    return st == REDTLS_E_TLS_VERIFY || st == REDTLS_E_TLS_HOSTNAME || st == REDTLS_E_TLS_CLIENT_CERT ||
           st == REDTLS_E_AUTH || st == REDTLS_E_CONFIG || st == REDTLS_E_NOMEM;
}

/* The status a failed connect should be reported with: a connection
 * waiting for its backoff reports the cause of its last failure when that
 * one was a hard failure. */
static redtls_status connect_status(const redtls_conn *c, redtls_status st)
{
    if (st == REDTLS_E_UNAVAILABLE && hard_failure(c->last_status))
        return c->last_status;
    return st;
}

/* A node name as users give it: an endpoint with a host. */
static int parse_hostport(const char *s, size_t len, char *host, size_t hostcap, uint16_t *port)
{
    return redtls__parse_endpoint(s, len, host, hostcap, port) == 0 && host[0] ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Topology                                                            */
/* ------------------------------------------------------------------ */

/* Closes n's connection now, or once the replies owed on it are in. */
static void node_retire(cnode *n)
{
    if (n->inflight > 0)
        n->retire = 1;
    else
        node_close(n);
}

static void install(redtls_cluster *cl, redtls__topology *t, size_t *map)
{
    for (size_t i = 0; i < cl->nnodes; i++)
        cl->nodes[i].in_map = cl->nodes[i].master = 0;
    for (size_t i = 0; i < t->nnodes; i++) {
        cnode *n = &cl->nodes[map[i]];
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
            node_retire(n);
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
     * are not nodes, redirection targets) are closed once nothing is owed
     * on them; the addresses nothing needs are forgotten. */
    for (size_t i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i].host && !cl->nodes[i].in_map)
            node_retire(&cl->nodes[i]);
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
    redtls_status st = node_conn(cl, i, &c);
    if (st != REDTLS_OK || !c)
        return st != REDTLS_OK ? st : REDTLS_E_NOMEM;
    if (c->pending > 0)
        return redtls__fail(cl->errmsg, REDTLS_E_STATE, "node %s is busy", cl->nodes[i].name);
    /* CLUSTER SLOTS is safe to repeat: a connection found broken when it
     * was reused gets one more try on a fresh one. */
    for (int attempt = 0; attempt < 2; attempt++) {
        int reused = c->tp != NULL;
        if ((st = redtls__conn_ensure_once(c, deadline)) == REDTLS_OK) {
            cl->preferred = c->preferred;
            static const char cmd[] = "*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";
            st = redtls__conn_append_raw(c, cmd, sizeof cmd - 1);
            if (st == REDTLS_OK)
                st = redtls__conn_read(c, deadline, 0, reply);
        } else {
            *no_time = c->no_time;
            st = connect_status(c, st);
        }
        if (st != REDTLS_E_OUTCOME_UNKNOWN || !reused)
            break;
    }
    if (st != REDTLS_OK)
        redtls__fail(cl->errmsg, st, "node %s: %s", cl->nodes[i].name, c->errmsg);
    return st;
}

/* Tries the nodes of the map (masters first, from a random one), then the
 * seeds, until one gives a valid map. */
static redtls_status refresh(redtls_cluster *cl, int64_t deadline)
{
    cl->last_refresh = redtls__now_ms();
    cl->force_refresh = 0;
    cl->refresh_spent = 0;
    size_t n = cl->nnodes;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!order)
        return redtls__fail(cl->errmsg, REDTLS_E_NOMEM, "out of memory");
    size_t k = 0;
    size_t start = n ? (size_t)(next_rand(cl) % n) : 0;
    /* Map nodes from a random one (spreads the load); seeds in the order
     * given. */
    for (int pass = 0; pass < 3; pass++)
        for (size_t j = 0; j < n; j++) {
            size_t i = pass < 2 ? (start + j) % n : j;
            const cnode *c = &cl->nodes[i];
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
        if (backing_off(&cl->nodes[i]) && j + 1 < k)
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
                    if ((map[m] = node_for(cl, t->nodes[m].host, t->nodes[m].port, 0, NULL)) == NO_NODE) {
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

static void no_map(redtls_cluster *cl, redtls_status st);

/* Refreshes when one is due: without a map, or when a redirection or a
 * failure asked for one, no sooner than the minimum gap after the last
 * attempt (a node met by IP that needs its name skips the gap); with a
 * map, also every refresh interval. */
static void maybe_refresh(redtls_cluster *cl, int64_t deadline)
{
    int64_t now = redtls__now_ms();
    int64_t since = now - cl->last_refresh;
    int gap_passed = since >= (int64_t)cl->refresh_gap_ms;
    if (!cl->have_map) {
        if (gap_passed || cl->force_refresh) {
            redtls_status st = refresh(cl, deadline);
            if (st != REDTLS_OK)
                no_map(cl, st);
        }
        return;
    }
    if (cl->force_refresh || (cl->want_refresh && gap_passed) ||
        (cl->refresh_interval_ms && since >= (int64_t)cl->refresh_interval_ms))
        refresh(cl, deadline);
}

/* ------------------------------------------------------------------ */
/* Building a batch                                                    */
/* ------------------------------------------------------------------ */

static void batch_reset(redtls_cluster *cl)
{
    for (size_t i = 0; i < cl->nops; i++) {
        freeReplyObject(cl->ops[i].reply);
        free(cl->ops[i].msg);
    }
    for (size_t i = cl->next_out; i < cl->nucmds; i++) {
        freeReplyObject(cl->ucmds[i].reply);
        free(cl->ucmds[i].msg);
    }
    cl->nops = cl->nucmds = cl->next_out = 0;
    cl->ran = 0;
    cl->alen = cl->nmap = 0;
}

static op *new_op(redtls_cluster *cl, size_t u)
{
    op *v = grow(cl->ops, &cl->capops, cl->nops + 1, sizeof *v);
    if (!v)
        return NULL;
    cl->ops = v;
    op *o = &cl->ops[cl->nops++];
    memset(o, 0, sizeof *o);
    o->slot = NO_SLOT;
    o->fixed = o->ask = o->moved = o->target = NO_NODE;
    o->ucmd = u;
    o->off = cl->alen;
    return o;
}

static redtls_status frame(redtls_cluster *cl, op *o, int argc, const char **argv, const size_t *lens)
{
    o->off = cl->alen;
    redtls_status st = redtls__format_argv(&cl->arena, &cl->alen, &cl->acap, argc, argv, lens);
    o->len = cl->alen - o->off;
    return st;
}

static size_t arglen(const char *const *argv, const size_t *lens, size_t i)
{
    return lens ? lens[i] : strlen(argv[i]);
}

typedef struct keyslot {
    uint32_t slot;
    size_t idx; /* key number */
} keyslot;

static int by_slot(const void *a, const void *b)
{
    const keyslot *x = a, *y = b;
    if (x->slot != y->slot)
        return x->slot < y->slot ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int split_kind(const char *name, size_t len)
{
    static const struct {
        const char *name;
        size_t len;
        int merge;
    } kinds[] = {{"MGET", 4, MERGE_MGET}, {"MSET", 4, MERGE_OK},      {"DEL", 3, MERGE_SUM},
                 {"UNLINK", 6, MERGE_SUM}, {"EXISTS", 6, MERGE_SUM}, {"TOUCH", 5, MERGE_SUM}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (kinds[i].len == len && strncasecmp(kinds[i].name, name, len) == 0)
            return kinds[i].merge;
    return MERGE_NONE;
}

/* Splits a multi-key command into one op per slot. */
static redtls_status add_split(redtls_cluster *cl, size_t u, unsigned flags, int merge, int readonly,
                               const char **argv, const size_t *lens, const size_t *pos, size_t nkeys)
{
    keyslot *ks = malloc(nkeys * sizeof *ks);
    int step = merge == MERGE_OK ? 2 : 1;
    const char **sub = malloc((1 + (size_t)step * nkeys) * sizeof *sub);
    size_t *sublen = malloc((1 + (size_t)step * nkeys) * sizeof *sublen);
    redtls_status st = REDTLS_OK;
    if (!ks || !sub || !sublen) {
        st = REDTLS_E_NOMEM;
        goto out;
    }
    if (merge == MERGE_MGET) {
        size_t *v = grow(cl->map, &cl->capmap, cl->nmap + nkeys, sizeof *v);
        if (!v) {
            st = REDTLS_E_NOMEM;
            goto out;
        }
        cl->map = v;
    }
    for (size_t k = 0; k < nkeys; k++) {
        ks[k].slot = redtls_cluster_key_slot(argv[pos[k]], arglen(argv, lens, pos[k]));
        ks[k].idx = k;
    }
    qsort(ks, nkeys, sizeof *ks, by_slot);
    sub[0] = argv[0];
    sublen[0] = arglen(argv, lens, 0);
    for (size_t a = 0; a < nkeys && st == REDTLS_OK;) {
        size_t b = a;
        int argc = 1;
        op *o = new_op(cl, u);
        if (!o) {
            st = REDTLS_E_NOMEM;
            break;
        }
        o->flags = flags;
        o->readonly = readonly;
        o->slot = ks[a].slot;
        o->map_off = cl->nmap;
        for (; b < nkeys && ks[b].slot == ks[a].slot; b++) {
            size_t p = pos[ks[b].idx];
            for (int s = 0; s < step; s++) {
                sub[argc] = argv[p + (size_t)s];
                sublen[argc++] = arglen(argv, lens, p + (size_t)s);
            }
            if (merge == MERGE_MGET)
                cl->map[cl->nmap++] = ks[b].idx;
        }
        o->map_n = b - a;
        st = frame(cl, o, argc, sub, sublen);
        a = b;
    }
    if (st == REDTLS_OK)
        cl->stats[REDTLS_CLUSTER_STAT_SPLITS]++;
out:
    free(ks);
    free(sub);
    free(sublen);
    return st;
}

/* Commands that change the state of the connection they run on (or need a
 * dedicated one) cannot be routed command by command: a transaction's
 * MULTI and EXEC could reach different nodes, a subscription would take
 * over a connection the handle shares. */
#define NAMED(s) {s, sizeof(s) - 1}

static const char *connection_state_command(const char *name, size_t len)
{
    static const struct {
        const char *name;
        size_t len;
    } refused[] = {NAMED("MULTI"),        NAMED("EXEC"),        NAMED("DISCARD"),      NAMED("WATCH"),
                   NAMED("UNWATCH"),      NAMED("SUBSCRIBE"),   NAMED("PSUBSCRIBE"),   NAMED("SSUBSCRIBE"),
                   NAMED("UNSUBSCRIBE"),  NAMED("PUNSUBSCRIBE"), NAMED("SUNSUBSCRIBE"), NAMED("MONITOR"),
                   NAMED("SELECT"),       NAMED("AUTH"),        NAMED("HELLO"),        NAMED("RESET"),
                   NAMED("QUIT"),         NAMED("READONLY"),    NAMED("READWRITE"),    NAMED("ASKING"),
                   NAMED("SYNC"),         NAMED("PSYNC"),       NAMED("REPLCONF")};
    /* Lengths first: this runs for every command. */
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (refused[i].len == len && strncasecmp(refused[i].name, name, len) == 0)
            return refused[i].name;
    return NULL;
}

/* Adds one user command. slot: forced slot or NO_SLOT; node: forced node
 * or NO_NODE. */
static redtls_status add_command(redtls_cluster *cl, unsigned flags, uint32_t slot, size_t node, int argc,
                                 const char **argv, const size_t *lens)
{
    if (argc <= 0 || !argv)
        return redtls__fail(cl->errmsg, REDTLS_E_INVALID, "a command needs at least one argument");
    for (int i = 0; i < argc; i++)
        if (!argv[i])
            return redtls__fail(cl->errmsg, REDTLS_E_INVALID, "argument %d is NULL", i);
    size_t inline_pos[INLINE_KEYS];
    size_t *pos = inline_pos;
    unsigned kf = 0;
    size_t nkeys = 0;
    if (node == NO_NODE && slot == NO_SLOT) {
        nkeys = redtls__command_keys_cached(&cl->cmd_cache, argc, argv, lens, pos, INLINE_KEYS, &kf);
        if (nkeys > INLINE_KEYS) {
            pos = malloc(nkeys * sizeof *pos);
            if (!pos)
                return redtls__fail(cl->errmsg, REDTLS_E_NOMEM, "out of memory");
            nkeys = redtls__command_keys_cached(&cl->cmd_cache, argc, argv, lens, pos, nkeys, &kf);
        }
    }
    /* Of the keyed commands only WATCH, SSUBSCRIBE and SUNSUBSCRIBE (5, 10
     * and 12 letters) hold a connection's state: the common ones skip the
     * check. */
    size_t len0 = arglen(argv, lens, 0);
    int keyed = (kf & REDTLS__CMD_KNOWN) && !(kf & REDTLS__CMD_NOKEYS) && !(kf & REDTLS__CMD_MALFORMED);
    const char *state = NULL;
    if (!keyed || len0 == 5 || len0 == 10 || len0 == 12)
        state = connection_state_command(argv[0], len0);
    if (state) {
        if (pos != inline_pos)
            free(pos);
        return redtls__fail(cl->errmsg, REDTLS_E_INVALID,
                            "%s changes the state of a connection, which a cluster handle shares between "
                            "commands; use a redtls_conn to the node instead",
                            state);
    }
    ucmd *v = grow(cl->ucmds, &cl->capucmds, cl->nucmds + 1, sizeof *v);
    if (!v) {
        if (pos != inline_pos)
            free(pos);
        return redtls__fail(cl->errmsg, REDTLS_E_NOMEM, "out of memory");
    }
    cl->ucmds = v;
    size_t u = cl->nucmds;
    ucmd *uc = &cl->ucmds[u];
    memset(uc, 0, sizeof *uc);
    uc->first = cl->nops;
    size_t nops0 = cl->nops, alen0 = cl->alen, nmap0 = cl->nmap;

    redtls_status st = REDTLS_OK;
    if (node == NO_NODE && slot == NO_SLOT) {
        if (!(kf & REDTLS__CMD_KNOWN) && argc > 1) {
            /* Unknown (module) command: by its first argument. */
            slot = redtls_cluster_key_slot(argv[1], arglen(argv, lens, 1));
        } else if (nkeys > 0) {
            slot = redtls_cluster_key_slot(argv[pos[0]], arglen(argv, lens, pos[0]));
            int mk = (flags & REDTLS_CLUSTER_STRICT) || nkeys < 2 ? MERGE_NONE : split_kind(argv[0], len0);
            if (mk == MERGE_OK && argc % 2 == 0)
                mk = MERGE_NONE; /* a key without a value: the server says so */
            size_t k = 1;
            if (mk != MERGE_NONE)
                for (; k < nkeys; k++)
                    if (redtls_cluster_key_slot(argv[pos[k]], arglen(argv, lens, pos[k])) != slot)
                        break;
            if (mk != MERGE_NONE && k < nkeys) {
                uc->merge = mk;
                uc->nkeys = nkeys;
                st = add_split(cl, u, flags, mk, (kf & REDTLS__CMD_READONLY) != 0, argv, lens, pos, nkeys);
                goto done;
            }
        }
    }
    {
        op *o = new_op(cl, u);
        if (!o) {
            st = REDTLS_E_NOMEM;
            goto done;
        }
        o->flags = flags;
        o->slot = slot;
        o->fixed = node;
        o->readonly = (kf & REDTLS__CMD_READONLY) != 0;
        st = frame(cl, o, argc, argv, lens);
    }
done:
    if (pos != inline_pos)
        free(pos);
    if (st != REDTLS_OK) {
        cl->nops = nops0;
        cl->alen = alen0;
        cl->nmap = nmap0;
        return redtls__fail(cl->errmsg, st, "out of memory");
    }
    uc->n = cl->nops - uc->first;
    cl->nucmds++;
    return REDTLS_OK;
}

/* ------------------------------------------------------------------ */
/* Running a batch                                                     */
/* ------------------------------------------------------------------ */

static void op_fail(op *o, redtls_status st, const char *msg)
{
    o->state = OP_DONE;
    o->st = st;
    freeReplyObject(o->reply);
    o->reply = NULL;
    free(o->msg);
    o->msg = strdup(msg);
}

static void op_retry(redtls_cluster *cl, op *o, int wait, redtls_status st, const char *msg)
{
    o->state = OP_TODO;
    o->wait = wait;
    if (wait == WAIT_REDIRECT)
        cl->redirected = 1;
    o->st = st;
    if (msg) {
        free(o->msg);
        o->msg = strdup(msg);
    }
}

/* A replica for a read, or NO_NODE. */
static size_t pick_replica(redtls_cluster *cl, uint32_t slot, size_t master)
{
    if (!cl->topo)
        return NO_NODE;
    const redtls__slot_range *r = redtls__topology_find(cl->topo, slot);
    if (!r || r->nreplicas == 0 || cl->topo_node[r->master] != master)
        return NO_NODE;
    size_t start = (size_t)(next_rand(cl) % r->nreplicas);
    for (size_t j = 0; j < r->nreplicas; j++) {
        size_t n = cl->topo_node[r->replicas[(start + j) % r->nreplicas]];
        if (!backing_off(&cl->nodes[n]))
            return n;
    }
    return NO_NODE;
}

static size_t pick_any(redtls_cluster *cl)
{
    size_t fallback = NO_NODE;
    for (size_t j = 0; j < cl->nnodes; j++) {
        size_t i = (cl->rr + j) % cl->nnodes;
        if (!cl->nodes[i].master)
            continue;
        if (!backing_off(&cl->nodes[i])) {
            cl->rr = i; /* stay on a working node: its connection is warm */
            return i;
        }
        if (fallback == NO_NODE)
            fallback = i;
    }
    return fallback;
}

static size_t route(redtls_cluster *cl, op *o)
{
    if (o->fixed != NO_NODE)
        return o->fixed;
    if (o->ask != NO_NODE)
        return o->ask;
    if (o->moved != NO_NODE) {
        /* Once: a slot of our own guess (an unknown command, an explicit
         * slot) may differ from the one the server meant. */
        size_t t = o->moved;
        o->moved = NO_NODE;
        return t;
    }
    if (o->slot == NO_SLOT)
        return pick_any(cl);
    uint32_t m = cl->slot_node[o->slot];
    if (m == NO_SLOT)
        return NO_NODE;
    if (cl->read_replicas && o->readonly && !o->to_master) {
        size_t r = pick_replica(cl, o->slot, m);
        if (r != NO_NODE) {
            cl->stats[REDTLS_CLUSTER_STAT_REPLICA_READS]++;
            return r;
        }
    }
    return m;
}

static int error_is(const redisReply *r, const char *prefix)
{
    size_t n = strlen(prefix);
    return r->len >= n && strncmp(r->str, prefix, n) == 0 && (r->len == n || r->str[n] == ' ');
}

/* Files the outcome of one sent op. */
static void classify(redtls_cluster *cl, op *o, redtls_conn *c, redtls_status st, redisReply *r)
{
    cnode *n = &cl->nodes[o->target];
    if (st != REDTLS_OK) {
        freeReplyObject(r);
        cl->stats[REDTLS_CLUSTER_STAT_NODE_FAILURES]++;
        cl->want_refresh = 1;
        if (st == REDTLS_E_OUTCOME_UNKNOWN && (o->flags & REDTLS_CMD_IDEMPOTENT) && !o->resent) {
            o->resent = 1;
            o->ask = NO_NODE; /* back to the slot's owner, which will say again */
            op_retry(cl, o, WAIT_BACKOFF, st, c->errmsg);
            return;
        }
        char msg[REDTLS__ERRMSG_MAX];
        snprintf(msg, sizeof msg, "node %.200s: %.290s", n->name, c->errmsg);
        op_fail(o, st, msg);
        return;
    }
    if (r->type != REDIS_REPLY_ERROR || o->fixed != NO_NODE) {
        o->ask = NO_NODE;
        freeReplyObject(o->reply);
        o->reply = r;
        o->state = OP_DONE;
        o->st = REDTLS_OK;
        return;
    }
    redtls__redirect rd;
    char err[REDTLS__ERRMSG_MAX];
    redtls__redirect_kind kind = redtls__redirect_parse(r->str, r->len, &rd, err);
    if (kind != REDTLS__NOT_REDIRECT) {
        cl->stats[kind == REDTLS__MOVED ? REDTLS_CLUSTER_STAT_MOVED : REDTLS_CLUSTER_STAT_ASK]++;
        size_t to = NO_NODE;
        int added = 0;
        if (strcmp(rd.host, "?") != 0) {
            if (!rd.host[0])
                snprintf(rd.host, sizeof rd.host, "%s", n->host);
            to = node_for(cl, rd.host, rd.port, 1, &added);
        }
        if (to == NO_NODE)
            cl->want_refresh = 1; /* a map may name it (and forgets unused addresses) */
        /* A node first met by IP in a TLS cluster may have a host name the
         * slot map will give: wait for the refresh rather than verifying
         * it against the bare address. */
        int unnamed = added && cl->base.use_tls && redtls__is_ip_literal(cl->nodes[to].host);
        if (kind == REDTLS__MOVED) {
            cl->want_refresh = 1;
            if (to != NO_NODE && rd.slot < REDTLS_CLUSTER_SLOTS)
                cl->slot_node[rd.slot] = (uint32_t)to;
        }
        if (++o->redirects > cl->max_redirects) {
            char msg[REDTLS__ERRMSG_MAX];
            snprintf(msg, sizeof msg, "slot %u: more than %u redirections; the last one, not followed: %.200s",
                     rd.slot, cl->max_redirects, r->str);
            freeReplyObject(r);
            op_fail(o, REDTLS_E_CLUSTER_REDIRECTS, msg);
            return;
        }
        o->to_master = 1;
        o->ask = kind == REDTLS__ASK ? to : NO_NODE;
        o->moved = kind == REDTLS__MOVED ? to : NO_NODE;
        /* An unknown endpoint: wait for the refresh to name it. */
        if (unnamed) {
            cl->force_refresh = 1;
            o->ask = o->moved = NO_NODE;
        }
        op_retry(cl, o, to == NO_NODE || unnamed ? WAIT_BACKOFF : WAIT_REDIRECT, REDTLS_OK, NULL);
        freeReplyObject(o->reply);
        o->reply = r;
        return;
    }
    /* Errors that say the command did not run: retried after a delay. */
    int retry = 0;
    if (error_is(r, "TRYAGAIN") || error_is(r, "CLUSTERDOWN")) {
        cl->stats[REDTLS_CLUSTER_STAT_TRYAGAIN]++;
        retry = 1;
    } else if (error_is(r, "LOADING") || error_is(r, "MASTERDOWN") || error_is(r, "READONLY")) {
        /* A node mid-restart, a replica without its master, a write that
         * reached a demoted master: the map is probably stale. */
        cl->want_refresh = 1;
        o->to_master = 1;
        retry = 1;
    } else if (error_is(r, "NOAUTH") && !o->noauth && redtls__has_credentials(c)) {
        o->noauth = 1; /* the connection re-authenticates before the next write */
        retry = 1;
    }
    freeReplyObject(o->reply);
    o->reply = r;
    /* TRYAGAIN after ASK (keys of a migrating slot split between the two
     * nodes) goes back to the ASK target. */
    if (retry)
        op_retry(cl, o, WAIT_BACKOFF, REDTLS_OK, NULL);
    else
        o->state = OP_DONE;
    if (!retry || !error_is(r, "TRYAGAIN"))
        o->ask = NO_NODE;
}

static const char asking_cmd[] = "*1\r\n$6\r\nASKING\r\n";

/* Routes the unfinished ops (redirects_only: those a redirection sent
 * on within the round) and writes them, node by node in op order. */
static void dispatch(redtls_cluster *cl, int64_t deadline, int redirects_only)
{
    cl->redirected = 0;
    for (size_t i = 0; i < cl->nops; i++) {
        op *o = &cl->ops[i];
        if (o->state != OP_TODO || (redirects_only && o->wait != WAIT_REDIRECT))
            continue;
        o->target = route(cl, o);
        o->wait = WAIT_NONE;
        if (o->target == NO_NODE) {
            cl->want_refresh = 1;
            if (!cl->have_map && o->st != REDTLS_OK) {
                /* Keep why the map could not be fetched. */
                op_retry(cl, o, WAIT_BACKOFF, o->st, NULL);
            } else if (!cl->have_map && cl->map_st != REDTLS_OK) {
                /* The throttle kept this call from asking again: why the
                 * last attempt failed. */
                op_retry(cl, o, WAIT_BACKOFF, cl->map_st, cl->map_msg);
            } else {
                char msg[96];
                if (cl->have_map)
                    snprintf(msg, sizeof msg, "slot %u has no master in the slot map", (unsigned)o->slot);
                else
                    snprintf(msg, sizeof msg, "no slot map yet");
                op_retry(cl, o, WAIT_BACKOFF, REDTLS_E_CLUSTER_TOPOLOGY, msg);
            }
            o->target = NO_NODE;
        }
    }
    for (size_t i = 0; i < cl->nops; i++) {
        op *first = &cl->ops[i];
        if (first->state != OP_TODO || first->target == NO_NODE || first->wait != WAIT_NONE)
            continue;
        size_t t = first->target;
        redtls_conn *c = NULL;
        redtls_status st = node_conn(cl, t, &c);
        if (st == REDTLS_OK && (!c || c->pending != cl->nodes[t].inflight || (!c->tp && c->pending > 0))) {
            /* Replies owed outside this batch, or a broken connection whose
             * lost commands are not reported yet: nothing may go on it. */
            redtls__fail(cl->errmsg, REDTLS_E_STATE, "node %s has replies pending", cl->nodes[t].name);
            st = REDTLS_E_STATE;
        }
        if (st == REDTLS_OK && c) {
            st = redtls__conn_ensure_once(c, deadline);
            if (st == REDTLS_OK)
                cl->preferred = c->preferred;
            else
                redtls__fail(cl->errmsg, st, "node %s: %s", cl->nodes[t].name, c->errmsg);
        }
        if (st != REDTLS_OK && c)
            st = connect_status(c, st);
        for (size_t j = i; j < cl->nops; j++) {
            op *o = &cl->ops[j];
            if (o->state != OP_TODO || o->target != t || o->wait != WAIT_NONE)
                continue;
            if (st != REDTLS_OK && o->slot != NO_SLOT && o->fixed == NO_NODE && o->ask == NO_NODE &&
                cl->slot_node[o->slot] != NO_SLOT && t != cl->slot_node[o->slot]) {
                /* A replica (or a MOVED target) that cannot be used: the
                 * slot's master serves it. */
                o->to_master = 1;
                op_retry(cl, o, WAIT_REDIRECT, st, cl->errmsg);
                continue;
            }
            if (st != REDTLS_OK && (hard_failure(st) || o->fixed != NO_NODE)) {
                /* Not sent; no point waiting (or no other node to go to). */
                op_fail(o, st, cl->errmsg);
                continue;
            }
            if (st != REDTLS_OK) {
                /* Nothing was written: safe to retry, elsewhere if the map
                 * changes; an importing node that is gone is replaced by the
                 * slot's owner. When only time ran out (no attempt made), an
                 * earlier cause says more. */
                if (c && c->no_time && o->st != REDTLS_OK)
                    op_retry(cl, o, WAIT_BACKOFF, o->st, NULL);
                else
                    op_retry(cl, o, WAIT_BACKOFF, st, cl->errmsg);
                o->to_master = 1;
                o->ask = NO_NODE;
                continue;
            }
            o->asking = o->ask != NO_NODE;
            size_t olen0 = c->olen, pending0 = c->pending, unsent0 = c->unsent;
            redtls_status ast = REDTLS_OK;
            if (o->asking)
                ast = redtls__conn_append_raw(c, asking_cmd, sizeof asking_cmd - 1);
            if (ast == REDTLS_OK)
                ast = redtls__conn_append_raw(c, cl->arena + o->off, o->len);
            if (ast != REDTLS_OK) {
                /* Nothing of this op may stay queued (an ASKING alone would
                 * answer for the next command). */
                c->olen = olen0;
                c->pending = pending0;
                c->unsent = unsent0;
                o->asking = 0;
                op_fail(o, ast, "out of memory");
                continue;
            }
            o->state = OP_SENT;
            cnode *n = &cl->nodes[t];
            o->qnext = NO_OP;
            if (n->qtail != NO_OP)
                cl->ops[n->qtail].qnext = j;
            else
                n->qhead = j;
            n->qtail = j;
            n->inflight++;
        }
        if (st != REDTLS_OK) {
            cl->stats[REDTLS_CLUSTER_STAT_NODE_FAILURES]++;
            cl->want_refresh = 1;
        } else if (c->olen > 0) {
            /* A failed write drops the connection: reading reports each
             * op as lost. */
            (void)redtls__conn_flush(c, deadline, 0);
        }
    }
}

/* Hands the replies node t has ready (without waiting) to its ops, in the
 * order they were written. budget: NULL, or the bytes still to be read. */
static void drain(redtls_cluster *cl, size_t t, int64_t deadline, size_t *budget)
{
    redtls_conn *c = cl->nodes[t].conn;
    while (cl->nodes[t].inflight > 0) {
        op *o = &cl->ops[cl->nodes[t].qhead];
        redisReply *r = NULL;
        redtls_status st = redtls__conn_read_now(c, deadline, budget, &r);
        if (st == REDTLS_OK && !r)
            return; /* not there yet */
        if (o->asking) {
            o->asking = 0;
            freeReplyObject(r);
            r = NULL;
            if (st == REDTLS_OK)
                continue; /* the command's own reply is next */
            /* The command behind it shares its fate. */
            redtls_status cst = redtls__conn_read_now(c, deadline, budget, &r);
            freeReplyObject(r);
            r = NULL;
            (void)cst;
        }
        cnode *n = &cl->nodes[t];
        n->qhead = o->qnext;
        if (--n->inflight == 0)
            n->qtail = NO_OP;
        classify(cl, o, c, st, r); /* may move cl->nodes */
    }
    if (cl->nodes[t].retire)
        node_close(&cl->nodes[t]);
}

/* What had arrived on fd when the deadline came, with room for what the
 * TLS layer holds decrypted or partly read. */
static size_t arrived(int fd)
{
    int queued = 0;
    if (fd < 0 || ioctl(fd, FIONREAD, &queued) != 0 || queued < 0)
        queued = 0;
    return (size_t)queued + (size_t)2 * REDTLS__READ_CHUNK;
}

/* The ops node t still owes replies for fail with st (why: what
 * happened, without the node's name), and only its connection is
 * closed. */
static void fail_node(redtls_cluster *cl, size_t t, redtls_status st, const char *why)
{
    cnode *n = &cl->nodes[t];
    char msg[REDTLS__ERRMSG_MAX];
    snprintf(msg, sizeof msg, "node %.200s: %.240s, so the command may or may not have run", n->name, why);
    for (size_t k = n->qhead; k != NO_OP; k = cl->ops[k].qnext) {
        cl->ops[k].asking = 0;
        op_fail(&cl->ops[k], st, msg);
    }
    n->qhead = n->qtail = NO_OP;
    n->inflight = 0;
    snprintf(n->conn->errmsg, sizeof n->conn->errmsg, "%s", why);
    redtls__conn_abandon(n->conn, st);
    cl->stats[REDTLS_CLUSTER_STAT_NODE_FAILURES]++;
    cl->want_refresh = 1;
    if (n->retire)
        node_close(n);
}

/* Waits on every node that owes replies at once, taking each node's
 * replies as they arrive and sending redirected ops on at once, until
 * nothing is owed or the deadline passes. */
static void await_replies(redtls_cluster *cl, int64_t deadline)
{
    for (;;) {
        if (cl->redirected)
            dispatch(cl, deadline, 1);
        size_t np = 0;
        int broken = 0;
        for (size_t i = 0; i < cl->nnodes; i++) {
            cnode *n = &cl->nodes[i];
            if (n->inflight == 0)
                continue;
            struct pollfd *pv = grow(cl->pfd, &cl->cappfd, np + 1, sizeof *pv);
            size_t *nv = pv ? grow(cl->pfd_node, &cl->cappfd_node, np + 1, sizeof *nv) : NULL;
            if (pv)
                cl->pfd = pv;
            if (nv)
                cl->pfd_node = nv;
            if (!pv || !nv) {
                broken = 1;
                fail_node(cl, i, REDTLS_E_NOMEM, "out of memory waiting for the replies");
                continue;
            }
            int fd = n->conn->tp ? n->conn->tp->ops->fd(n->conn->tp) : -1;
            if (fd < 0) {
                /* The connection broke while writing: each op is reported
                 * lost. */
                broken = 1;
                drain(cl, i, REDTLS__NO_WAIT, NULL);
                if (cl->nodes[i].inflight > 0)
                    fail_node(cl, i, REDTLS_E_OUTCOME_UNKNOWN, "the connection broke");
                continue;
            }
            cl->pfd[np] = (struct pollfd){fd, POLLIN, 0};
            cl->pfd_node[np++] = i;
        }
        if (np == 0) {
            if (broken || cl->redirected)
                continue;
            return;
        }
        int expired = deadline != REDTLS__NO_DEADLINE && redtls__now_ms() >= deadline;
        int rc = poll(cl->pfd, (nfds_t)np, expired || broken || cl->redirected ? 0 : redtls__poll_timeout(deadline));
        if (rc < 0)
            continue; /* EINTR; anything else shows as an error on a socket */
        if (!expired && deadline != REDTLS__NO_DEADLINE && redtls__now_ms() >= deadline)
            expired = 1;
        for (size_t k = 0; k < np; k++) {
            size_t t = cl->pfd_node[k];
            if (cl->nodes[t].inflight == 0)
                continue;
            if (expired) {
                /* What arrived before the deadline is delivered, however
                 * long the queue of it. */
                size_t budget = arrived(cl->pfd[k].fd);
                drain(cl, t, REDTLS__NO_DEADLINE, &budget);
                if (cl->nodes[t].inflight > 0) {
                    char why[96];
                    snprintf(why, sizeof why, "no reply within the command timeout (%u ms)",
                             cl->base.command_timeout_ms);
                    fail_node(cl, t, REDTLS_E_COMMAND_TIMEOUT, why);
                }
            } else if (cl->pfd[k].revents) {
                drain(cl, t, deadline, NULL);
            }
        }
        if (expired) {
            /* Redirections found in the last replies have no time left;
             * out_of_time() reports them. */
            cl->redirected = 0;
            return;
        }
    }
}

/* One round: route and write every unfinished op, then collect replies. */
static void round_trip(redtls_cluster *cl, int64_t deadline)
{
    dispatch(cl, deadline, 0);
    await_replies(cl, deadline);
}

static redisReply *new_reply(int type)
{
    redisReply *r = calloc(1, sizeof *r);
    if (r)
        r->type = type;
    return r;
}

/* Folds a user command's ops into its result. */
static void merge_result(redtls_cluster *cl, ucmd *u)
{
    op *ops = &cl->ops[u->first];
    for (size_t k = 0; k < u->n; k++) {
        if (ops[k].st != REDTLS_OK) {
            u->st = ops[k].st;
            size_t done = 0;
            for (size_t m = 0; m < u->n; m++)
                done += ops[m].st == REDTLS_OK;
            if (u->n > 1) {
                char msg[REDTLS__ERRMSG_MAX];
                snprintf(msg, sizeof msg, "%zu of %zu parts completed (not atomic); a part failed: %.400s", done,
                         u->n, ops[k].msg ? ops[k].msg : "");
                u->msg = strdup(msg);
            } else {
                u->msg = ops[k].msg;
                ops[k].msg = NULL;
            }
            return;
        }
    }
    if (u->n == 1) {
        u->reply = ops[0].reply;
        ops[0].reply = NULL;
        return;
    }
    for (size_t k = 0; k < u->n; k++)
        if (ops[k].reply->type == REDIS_REPLY_ERROR) {
            u->reply = ops[k].reply;
            ops[k].reply = NULL;
            return;
        }
    if (u->merge == MERGE_OK) {
        u->reply = ops[0].reply;
        ops[0].reply = NULL;
        return;
    }
    if (u->merge == MERGE_SUM) {
        long long sum = 0;
        for (size_t k = 0; k < u->n; k++) {
            if (ops[k].reply->type != REDIS_REPLY_INTEGER)
                goto shape;
            sum += ops[k].reply->integer;
        }
        u->reply = ops[0].reply;
        ops[0].reply = NULL;
        u->reply->integer = sum;
        return;
    }
    /* MGET */
    redisReply *out = new_reply(REDIS_REPLY_ARRAY);
    if (!out || !(out->element = calloc(u->nkeys ? u->nkeys : 1, sizeof(redisReply *)))) { // NOLINT(bugprone-sizeof-expression): an array of pointers
        free(out);
        u->st = REDTLS_E_NOMEM;
        u->msg = strdup("out of memory merging the parts");
        return;
    }
    out->elements = u->nkeys;
    for (size_t k = 0; k < u->n; k++)
        if (ops[k].reply->type != REDIS_REPLY_ARRAY || ops[k].reply->elements != ops[k].map_n) {
            freeReplyObject(out);
            goto shape;
        }
    for (size_t k = 0; k < u->n; k++) {
        for (size_t e = 0; e < ops[k].map_n; e++) {
            out->element[cl->map[ops[k].map_off + e]] = ops[k].reply->element[e];
            ops[k].reply->element[e] = NULL;
        }
    }
    u->reply = out;
    return;
shape:
    u->st = REDTLS_E_PROTOCOL;
    u->msg = strdup("a part of a split command got a reply of an unexpected shape");
}

/* Ends every unfinished op at the deadline with its last outcome. */
static void out_of_time(redtls_cluster *cl)
{
    for (size_t i = 0; i < cl->nops; i++) {
        op *o = &cl->ops[i];
        if (o->state != OP_TODO)
            continue;
        if (o->reply && o->st == REDTLS_OK) {
            o->state = OP_DONE; /* the last TRYAGAIN/CLUSTERDOWN... reply */
        } else {
            char msg[REDTLS__ERRMSG_MAX];
            snprintf(msg, sizeof msg, "not sent within the command timeout; last failure: %.400s",
                     o->msg ? o->msg : "none");
            op_fail(o, o->st != REDTLS_OK ? o->st : REDTLS_E_UNAVAILABLE, msg);
        }
    }
}

/* A refresh inside a call may use half of the time left, so the command
 * keeps time of its own. */
static int64_t refresh_deadline(int64_t deadline)
{
    if (deadline == REDTLS__NO_DEADLINE)
        return deadline;
    int64_t now = redtls__now_ms();
    return deadline > now ? now + (deadline - now + 1) / 2 : now;
}

/* Without a slot map (the seeds could not be asked yet) the ops wait for
 * one, unless the failure will not heal by waiting. A refresh cut short by
 * the call's own deadline (no time to ask, or a time-out within its slice
 * of the time) does not replace the cause an earlier refresh found: "node
 * X sent an invalid map" says more than "timed out". */
static void no_map(redtls_cluster *cl, redtls_status st)
{
    for (size_t i = 0; i < cl->nops; i++) {
        op *o = &cl->ops[i];
        if (o->state != OP_TODO || o->fixed != NO_NODE)
            continue;
        if (hard_failure(st))
            op_fail(o, st, cl->errmsg);
        else if ((cl->refresh_spent || st == REDTLS_E_COMMAND_TIMEOUT) && o->st != REDTLS_OK)
            op_retry(cl, o, WAIT_BACKOFF, o->st, NULL); /* keep the earlier cause */
        else
            op_retry(cl, o, WAIT_BACKOFF, st, cl->errmsg);
    }
}

static redtls_status run_batch(redtls_cluster *cl)
{
    cl->ran = 1;
    int64_t deadline = redtls__deadline_after(cl->base.command_timeout_ms);
    /* No command timeout: retries still end, after the configured outage
     * limit or a minute. */
    int64_t retry_deadline = deadline != REDTLS__NO_DEADLINE ? deadline
                             : redtls__deadline_after(cl->outage_ms ? cl->outage_ms : 60000);
    redtls__backoff_reset(&cl->backoff);
    for (;;) {
        maybe_refresh(cl, refresh_deadline(retry_deadline));
        if (redtls__now_ms() >= retry_deadline) {
            out_of_time(cl);
            break;
        }
        round_trip(cl, deadline);
        int todo = 0, wait = 0;
        for (size_t i = 0; i < cl->nops; i++)
            if (cl->ops[i].state == OP_TODO) {
                todo = 1;
                wait |= cl->ops[i].wait == WAIT_BACKOFF;
            }
        if (!todo)
            break;
        int64_t now = redtls__now_ms();
        if (wait && now < retry_deadline) {
            int64_t until = now + redtls__backoff_next(&cl->backoff);
            redtls__sleep_until(redtls__deadline_min(until, retry_deadline));
        }
        if (redtls__now_ms() >= retry_deadline) {
            out_of_time(cl);
            break;
        }
    }
    for (size_t i = 0; i < cl->nucmds; i++)
        merge_result(cl, &cl->ucmds[i]);
    return REDTLS_OK;
}

/* Hands out the next user command's result. */
static redtls_status take(redtls_cluster *cl, redisReply **reply)
{
    ucmd *u = &cl->ucmds[cl->next_out++];
    *reply = u->reply;
    u->reply = NULL;
    redtls_status st = u->st;
    if (st != REDTLS_OK)
        redtls__fail(cl->errmsg, st, "%s", u->msg ? u->msg : redtls_strerror(st));
    free(u->msg);
    u->msg = NULL;
    if (cl->next_out == cl->nucmds)
        batch_reset(cl);
    return st;
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */
/* ------------------------------------------------------------------ */

redtls_status redtls_cluster_new(redtls_config *cfg, const char *seeds, redtls_cluster **out)
{
    if (!out)
        return REDTLS_E_INVALID;
    *out = NULL;
    if (!cfg)
        return REDTLS_E_INVALID;
    cfg->errmsg[0] = '\0';
    if (cfg->unix_path)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "cluster mode needs TCP seeds, not a Unix socket");
    if (cfg->db != 0)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "a cluster has database 0 only (the configuration selects %d)",
                            cfg->db);
    redtls_cluster *cl = calloc(1, sizeof *cl);
    if (!cl)
        return redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
    if (redtls__config_copy(&cl->base, cfg) != REDTLS_OK) {
        free(cl);
        return redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
    }
    cl->base_host = cl->base.host;
    /* The cluster decides where to go when a node is down; a node's own
     * reconnect limits would only strand it. */
    cl->outage_ms = cl->base.max_outage_ms;
    cl->base.max_attempts = 0;
    cl->base.max_outage_ms = 0;
    cl->base.reconnect = 1;
    cl->max_redirects = DEFAULT_MAX_REDIRECTS;
    cl->refresh_interval_ms = DEFAULT_REFRESH_INTERVAL_MS;
    cl->refresh_gap_ms = DEFAULT_REFRESH_GAP_MS;
    redtls__backoff_init(&cl->backoff, cfg->backoff_base_ms, cfg->backoff_cap_ms, 0);
    cl->rng = cl->backoff.rng | 1U;
    cl->last_refresh = INT64_MIN / 2; /* never: the first one is due */
    for (size_t s = 0; s < REDTLS_CLUSTER_SLOTS; s++)
        cl->slot_node[s] = NO_SLOT;
    redtls_status st = REDTLS_OK;
    if (cfg->use_tls) {
        /* Built once here, shared by every node connection. */
        redtls__tls_ctx *ctx = NULL;
        st = redtls__config_tls_ctx(cfg, &ctx);
        if (st == REDTLS_OK)
            cl->base.tls_cache = ctx;
    }
    const char *p = seeds && seeds[0] ? seeds : NULL;
    if (st == REDTLS_OK && !p) {
        if (node_for(cl, cfg->host, cfg->port, 0, NULL) == NO_NODE)
            st = redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
    }
    while (st == REDTLS_OK && p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && *p == ' ') {
            p++;
            len--;
        }
        while (len > 0 && p[len - 1] == ' ')
            len--;
        char host[256];
        uint16_t port;
        if (parse_hostport(p, len, host, sizeof host, &port) != 0)
            st = redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "seed '%.*s' is not host:port", (int)(len > 200 ? 200 : len), p);
        else if (node_for(cl, host, port, 0, NULL) == NO_NODE)
            st = redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
        p = end ? end + 1 : NULL;
    }
    if (st == REDTLS_OK && cl->nnodes == 0)
        st = redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "no seed given");
    for (size_t i = 0; i < cl->nnodes; i++)
        cl->nodes[i].seed = 1;
    if (st != REDTLS_OK) {
        redtls_cluster_free(cl);
        return st;
    }
    *out = cl;
    return REDTLS_OK;
}

void redtls_cluster_free(redtls_cluster *cl)
{
    if (!cl)
        return;
    batch_reset(cl);
    for (size_t i = 0; i < cl->nnodes; i++) {
        node_close(&cl->nodes[i]);
        free(cl->nodes[i].host);
        free(cl->nodes[i].announced);
    }
    free(cl->nodes);
    redtls__topology_free(cl->topo);
    free(cl->topo_node);
    free(cl->ops);
    free(cl->ucmds);
    free(cl->arena);
    free(cl->map);
    free(cl->pfd);
    free(cl->pfd_node);
    cl->base.host = cl->base_host;
    redtls__config_release(&cl->base);
    free(cl);
}

const char *redtls_cluster_errmsg(const redtls_cluster *cl)
{
    return cl ? cl->errmsg : "";
}

redtls_status redtls_cluster_set_max_redirects(redtls_cluster *cl, unsigned n)
{
    if (!cl || n == 0)
        return REDTLS_E_INVALID;
    cl->max_redirects = n;
    return REDTLS_OK;
}

redtls_status redtls_cluster_set_refresh(redtls_cluster *cl, unsigned interval_ms, unsigned min_gap_ms)
{
    if (!cl)
        return REDTLS_E_INVALID;
    cl->refresh_interval_ms = interval_ms;
    cl->refresh_gap_ms = min_gap_ms;
    return REDTLS_OK;
}

redtls_status redtls_cluster_set_read_from_replicas(redtls_cluster *cl, int on)
{
    if (!cl)
        return REDTLS_E_INVALID;
    on = on != 0;
    if (on != cl->read_replicas) {
        cl->read_replicas = on;
        /* Connections are remade with (or without) READONLY. */
        for (size_t i = 0; i < cl->nnodes; i++)
            node_close(&cl->nodes[i]);
    }
    return REDTLS_OK;
}

static redtls_status check_idle(redtls_cluster *cl)
{
    if (cl->nucmds > 0)
        return redtls__fail(cl->errmsg, REDTLS_E_STATE,
                            "%zu pipelined commands are pending; read them with redtls_cluster_get_reply first",
                            cl->nucmds - cl->next_out);
    return REDTLS_OK;
}

redtls_status redtls_cluster_connect(redtls_cluster *cl)
{
    if (!cl)
        return REDTLS_E_INVALID;
    cl->errmsg[0] = '\0';
    redtls_status st = check_idle(cl);
    if (st == REDTLS_OK)
        st = refresh(cl, redtls__deadline_after(cl->base.command_timeout_ms));
    return st;
}

redtls_status redtls_cluster_refresh(redtls_cluster *cl)
{
    return redtls_cluster_connect(cl);
}

static redtls_status run_one(redtls_cluster *cl, unsigned flags, uint32_t slot, size_t node, int argc,
                             const char **argv, const size_t *lens, redisReply **reply)
{
    redtls_status st = add_command(cl, flags, slot, node, argc, argv, lens);
    if (st != REDTLS_OK)
        return st;
    run_batch(cl);
    return take(cl, reply);
}

static redtls_status begin(redtls_cluster *cl, redisReply **reply)
{
    if (!reply)
        return REDTLS_E_INVALID;
    *reply = NULL;
    if (!cl)
        return REDTLS_E_INVALID;
    cl->errmsg[0] = '\0';
    return check_idle(cl);
}

redtls_status redtls_cluster_command_argv(redtls_cluster *cl, unsigned flags, int argc, const char **argv,
                                          const size_t *argvlen, redisReply **reply)
{
    redtls_status st = begin(cl, reply);
    if (st != REDTLS_OK)
        return st;
    return run_one(cl, flags, NO_SLOT, NO_NODE, argc, argv, argvlen, reply);
}

redtls_status redtls_cluster_command_slot(redtls_cluster *cl, unsigned slot, unsigned flags, int argc,
                                          const char **argv, const size_t *argvlen, redisReply **reply)
{
    redtls_status st = begin(cl, reply);
    if (st != REDTLS_OK)
        return st;
    if (slot >= REDTLS_CLUSTER_SLOTS)
        return redtls__fail(cl->errmsg, REDTLS_E_INVALID, "slot %u is not in 0..16383", slot);
    return run_one(cl, flags, slot, NO_NODE, argc, argv, argvlen, reply);
}

redtls_status redtls_cluster_command_node(redtls_cluster *cl, const char *node, unsigned flags, int argc,
                                          const char **argv, const size_t *argvlen, redisReply **reply)
{
    redtls_status st = begin(cl, reply);
    if (st != REDTLS_OK)
        return st;
    char host[256];
    uint16_t port;
    if (!node || parse_hostport(node, strlen(node), host, sizeof host, &port) != 0)
        return redtls__fail(cl->errmsg, REDTLS_E_INVALID, "node must be given as host:port");
    size_t i = node_for(cl, host, port, 1, NULL);
    if (i == NO_NODE)
        return cl->errmsg[0] ? REDTLS_E_CLUSTER_TOPOLOGY : redtls__fail(cl->errmsg, REDTLS_E_NOMEM, "out of memory");
    return run_one(cl, flags, NO_SLOT, i, argc, argv, argvlen, reply);
}

/* Reads a command framed by hiredis's formatter back into arguments. */
static int unframe(const char *buf, size_t len, int *argc, const char ***argv, size_t **lens)
{
    const char *p = buf, *end = buf + len;
    if (p >= end || *p != '*')
        return -1;
    char *e;
    long n = strtol(p + 1, &e, 10);
    if (n <= 0 || e + 2 > end || e[0] != '\r')
        return -1;
    p = e + 2;
    *argv = malloc((size_t)n * sizeof **argv);
    *lens = malloc((size_t)n * sizeof **lens);
    if (!*argv || !*lens)
        return -1;
    for (long i = 0; i < n; i++) {
        if (p >= end || *p != '$')
            return -1;
        long l = strtol(p + 1, &e, 10);
        if (l < 0 || e + 2 > end || (size_t)(end - (e + 2)) < (size_t)l + 2)
            return -1;
        (*argv)[i] = e + 2;
        (*lens)[i] = (size_t)l;
        p = e + 2 + l + 2;
    }
    *argc = (int)n;
    return 0;
}

redtls_status redtls_cluster_command(redtls_cluster *cl, redisReply **reply, const char *fmt, ...)
{
    redtls_status st = begin(cl, reply);
    if (st != REDTLS_OK)
        return st;
    if (!fmt)
        return redtls__fail(cl->errmsg, REDTLS_E_INVALID, "format is NULL");
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (n == -2)
        return redtls__fail(cl->errmsg, REDTLS_E_INVALID, "invalid format string");
    if (n <= 0 || !cmd)
        return redtls__fail(cl->errmsg, REDTLS_E_NOMEM, "out of memory formatting the command");
    int argc = 0;
    const char **argv = NULL;
    size_t *lens = NULL;
    if (unframe(cmd, (size_t)n, &argc, &argv, &lens) != 0)
        st = redtls__fail(cl->errmsg, REDTLS_E_NOMEM, "out of memory formatting the command");
    else
        st = run_one(cl, 0, NO_SLOT, NO_NODE, argc, argv, lens, reply);
    free(argv);
    free(lens);
#if defined(HIREDIS_MAJOR) && HIREDIS_MAJOR >= 1
    redisFreeCommand(cmd);
#else
    free(cmd);
#endif
    return st;
}

redtls_status redtls_cluster_append_argv(redtls_cluster *cl, unsigned flags, int argc, const char **argv,
                                         const size_t *argvlen)
{
    if (!cl)
        return REDTLS_E_INVALID;
    cl->errmsg[0] = '\0';
    if (cl->ran)
        return redtls__fail(cl->errmsg, REDTLS_E_STATE,
                            "the previous batch still has %zu replies to read", cl->nucmds - cl->next_out);
    return add_command(cl, flags, NO_SLOT, NO_NODE, argc, argv, argvlen);
}

redtls_status redtls_cluster_get_reply(redtls_cluster *cl, redisReply **reply)
{
    if (!reply)
        return REDTLS_E_INVALID;
    *reply = NULL;
    if (!cl)
        return REDTLS_E_INVALID;
    cl->errmsg[0] = '\0';
    if (cl->next_out >= cl->nucmds)
        return redtls__fail(cl->errmsg, REDTLS_E_STATE, "no reply is pending");
    if (!cl->ran)
        run_batch(cl);
    return take(cl, reply);
}

size_t redtls_cluster_pending(const redtls_cluster *cl)
{
    return cl ? cl->nucmds - cl->next_out : 0;
}

size_t redtls_cluster_node_count(const redtls_cluster *cl)
{
    size_t n = 0;
    for (size_t i = 0; cl && i < cl->nnodes; i++)
        n += cl->nodes[i].in_map;
    return n;
}

static const cnode *nth_in_map(const redtls_cluster *cl, size_t i)
{
    for (size_t j = 0; cl && j < cl->nnodes; j++)
        if (cl->nodes[j].in_map && i-- == 0)
            return &cl->nodes[j];
    return NULL;
}

const char *redtls_cluster_node_name(const redtls_cluster *cl, size_t i)
{
    const cnode *n = nth_in_map(cl, i);
    return n ? n->name : NULL;
}

int redtls_cluster_node_is_master(const redtls_cluster *cl, size_t i)
{
    const cnode *n = nth_in_map(cl, i);
    return n ? n->master : 0;
}

redtls_status redtls_cluster_set_tokens(redtls_cluster *cl, const char *token, const char *token_alt, int flags)
{
    if (!cl)
        return REDTLS_E_INVALID;
    cl->errmsg[0] = '\0';
    /* The same rules as redtls_conn_set_tokens(), which every node
     * connection applies next. */
    redtls_status st = redtls__set_token_pair(&cl->base, token, token_alt, cl->errmsg);
    if (st != REDTLS_OK)
        return st;
    cl->preferred = 0;
    redtls_status first = REDTLS_OK;
    for (size_t i = 0; i < cl->nnodes; i++) {
        redtls_conn *c = cl->nodes[i].conn;
        if (!c)
            continue;
        int f = c->tp ? flags : 0;
        st = redtls_conn_set_tokens(c, token, token_alt, f);
        if (st == REDTLS_E_NOMEM) {
            /* Remade from the handle's new tokens when next needed. */
            node_close(&cl->nodes[i]);
            continue;
        }
        if (st != REDTLS_OK && first == REDTLS_OK) {
            first = st;
            redtls__fail(cl->errmsg, st, "node %s: %s", cl->nodes[i].name, c->errmsg);
        }
    }
    return first;
}

uint64_t redtls_cluster_stat_get(const redtls_cluster *cl, redtls_cluster_stat which)
{
    if (!cl || (unsigned)which >= sizeof cl->stats / sizeof cl->stats[0])
        return 0;
    return cl->stats[which];
}

/*
 * The cluster client's internals, shared by its files:
 *   nodes.c    the node list, node connections, the slot map and its refresh
 *   batch.c    building a batch: framing, multi-key splits, refused commands
 *   engine.c   running a batch: routing, writing, waiting on every node at
 *              once, classifying replies, redirections and retries, merging
 *   cluster.c  the public API
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
#ifndef REDTLS_CLUSTER_CLIENT_H
#define REDTLS_CLUSTER_CLIENT_H

#include <stdint.h>

#include <poll.h>

#include <hiredis/hiredis.h>

#include "blocking.h"
#include "keys.h"
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

typedef struct redtls__cl_node {
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
} redtls__cl_node;

enum { OP_TODO, OP_SENT, OP_DONE };
enum { MERGE_NONE = REDTLS__MERGE_NONE, MERGE_MGET = REDTLS__MERGE_MGET, MERGE_OK = REDTLS__MERGE_OK, MERGE_SUM = REDTLS__MERGE_SUM };
/* Why an unsent op waits: a redirection (sent on within the round) or a
 * backoff (the next round). */
enum { WAIT_NONE, WAIT_REDIRECT, WAIT_BACKOFF };

typedef struct redtls__cl_op {
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
} redtls__cl_op;

typedef struct redtls__cl_ucmd {
    size_t first, n; /* ops */
    int merge;
    size_t nkeys; /* MGET */
    redtls_status st;
    redisReply *reply;
    char *msg;
} redtls__cl_ucmd;

struct redtls_cluster {
    redtls_config base; /* host/port swapped per node when a conn is made */
    char *base_host;
    redtls__cl_node *nodes;
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
    redtls__cl_op *ops;
    size_t nops, capops;
    redtls__cl_ucmd *ucmds;
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
    char base_errmsg[REDTLS__ERRMSG_MAX]; /* base's (redtls_conn_new's) */
};

/* nodes.c */

uint64_t redtls__cluster_rand(redtls_cluster *cl);
/* Room for n elements of elem bytes in v (capacity *cap, doubling from
 * 8): the possibly moved vector, or NULL when out of memory (v still
 * valid, *cap unchanged). */
void *redtls__cluster_grow_slow(void *v, size_t *cap, size_t n, size_t elem);
static inline void *redtls__cluster_grow(void *v, size_t *cap, size_t n, size_t elem)
{
    return n <= *cap ? v : redtls__cluster_grow_slow(v, cap, n, elem);
}
/* The node for host:port, added when unknown (*added set, may be NULL).
 * extra: the address may not be in the slot map (a redirection, an
 * explicit node), so it counts against MAX_EXTRA_NODES. NO_NODE when out
 * of memory, or when an extra one finds no room (errmsg says so). */
size_t redtls__cluster_node_for(redtls_cluster *cl, const char *host, uint16_t port, int extra, int *added);
/* The node's connection, made on first use from the shared configuration
 * (so its TLS context is shared too). */
redtls_status redtls__cluster_node_conn(redtls_cluster *cl, size_t i, redtls_conn **out);
void redtls__cluster_node_close(redtls__cl_node *n);
/* A node whose connection is down and not due for another attempt. */
int redtls__cluster_backing_off(const redtls__cl_node *n);
/* Failures that waiting will not cure (verification, credentials). */
int redtls__cluster_hard_failure(redtls_status st);
/* The status a failed connect should be reported with. */
redtls_status redtls__cluster_connect_status(const redtls_conn *c, redtls_status st);
/* A node name as users give it: an endpoint with a host. 0 or -1. */
int redtls__cluster_parse_hostport(const char *s, size_t len, char *host, size_t hostcap, uint16_t *port);
/* Fetches and installs a slot map now. */
redtls_status redtls__cluster_refresh(redtls_cluster *cl, int64_t deadline);
/* Refreshes when one is due (see nodes.c); REDTLS_OK when none was due,
 * else the refresh's status. */
redtls_status redtls__cluster_maybe_refresh(redtls_cluster *cl, int64_t deadline);

/* batch.c */

/* Adds one user command to the batch. slot: forced slot or NO_SLOT;
 * node: forced node or NO_NODE. */
redtls_status redtls__cluster_add_command(redtls_cluster *cl, unsigned flags, uint32_t slot, size_t node, int argc,
                                          const char **argv, const size_t *lens);
/* Frees the batch's replies and messages and empties it. */
void redtls__cluster_batch_reset(redtls_cluster *cl);

/* engine.c */

/* Runs the whole batch within the command timeout. */
redtls_status redtls__cluster_run_batch(redtls_cluster *cl);
/* Hands out the next user command's result (the batch is reset after the
 * last one). */
redtls_status redtls__cluster_take(redtls_cluster *cl, redisReply **reply);

#endif

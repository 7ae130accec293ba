/*
 * The asynchronous cluster client's internals (include/redtls/async_cluster.h),
 * shared by its files:
 *   acluster.c        the handle: creation, settings, loops, teardown
 *   acluster_issue.c  issuing a command: framing, splitting a multi-key
 *                     command by slot, merging the parts' replies
 *   acluster_cmd.c    commands once issued: routing, sending to a node,
 *                     classifying what comes back, retries, deadlines
 *   acluster_map.c    nodes and their connections, the slot map and its
 *                     refresh in the background
 *
 * Each node has one asynchronous connection (lib/driver/async*.c) made from
 * the handle's configuration. A command ("op"; a multi-key command split
 * by slot is several ops sharing a "split") is framed once into its own
 * buffer, then sent to the node its slot names; the node's callback brings
 * the outcome back here, where a redirection or a retryable error sends it
 * on (MOVED/ASK at once, the others after a backoff delay), and anything
 * else ends it. The pure parts (key positions, slot hashing, redirection
 * and CLUSTER SLOTS parsing) are the blocking client's, in lib/cluster.
 */
#ifndef REDTLS_ACLUSTER_H
#define REDTLS_ACLUSTER_H

#include <stdarg.h>
#include <stdint.h>

#include <redtls/async_cluster.h>

#include "async_internal.h"
#include "keys.h"
#include "topology.h"

#define ACL_NO_SLOT UINT32_MAX
#define ACL_MAX_EXTRA_NODES 16
#define ACL_OP_POOL_MAX 1024
#define ACL_DEFAULT_MAX_REDIRECTS 5u
#define ACL_DEFAULT_REFRESH_INTERVAL_MS 30000u
#define ACL_DEFAULT_REFRESH_GAP_MS 500u

typedef struct acl_csub acl_csub;

typedef struct acl_node {
    struct redtls_async_cluster *acl;
    char *host; /* NULL: a free entry */
    uint16_t port;
    char name[300]; /* "host:port", IPv6 bracketed */
    char *announced; /* Redis 7 "hostname" metadata of a node reached by IP */
    redtls_async *ac; /* made on first use; closed when the node leaves the map */
    redtls_async *sub_ac; /* shard subscriptions (acluster_pubsub.c), made on first use */
    int in_map, master, seed;
    size_t refs; /* ops that name it (target, redirection, explicit node) */
    size_t orphans; /* ops ended while still at the node (their replies are dropped) */
    int leaving;    /* outside the new map, or its name to verify changed: its
                     * connection closes once idle */
    int renamed;    /* (during install) */
} acl_node;

/* The parts of a split multi-key command (merge: REDTLS__MERGE_*). */
typedef struct acl_split {
    redtls_async_cluster_reply_cb cb;
    void *ud;
    int merge;
    size_t nparts, left, nkeys;
    size_t *map;           /* MGET: each part's keys' original positions, part by part */
    redisReply **replies;  /* per part */
    redtls_status st;      /* the first failed part's status */
    char *msg;
    size_t failed_part;
} acl_split;

/* What the blocking client's batch holds back until it is released. */
enum {
    ACL_HOLD_NONE,
    ACL_HOLD_ALL,  /* every op (a pipeline: released by the first read) */
    ACL_HOLD_SPLIT /* a split command's parts only; one op goes at once, and
                    * a failure to send it ends it through its callback, as
                    * the release would have */
};

/* Where an op is. */
enum {
    ACL_OP_NEW,     /* being built */
    ACL_OP_WAITING, /* in the wait list: a retry after a backoff, or a map */
    ACL_OP_SENT,    /* at a node, its callback owed to us */
    ACL_OP_HELD     /* a redirected op between its reply and its resend */
};

typedef struct acl_op {
    /* Those a spare has set again by redtls__acl_op_get, kept together
     * (the small ones are cleared a few at a time). */
    struct acl_op *prev, *next; /* the live list: ops whose outcome is owed */
    struct acl_op *wprev, *wnext; /* the wait list (wnext: the spares too) */
    int in_wait;
    redtls_async_cluster_reply_cb cb; /* a whole command's callback (NULL for a part) */
    void *ud;
    acl_split *split;
    size_t part, map_off, map_n;
    size_t len;    /* frame's */
    unsigned flags;
    uint32_t slot; /* ACL_NO_SLOT: any master */
    int readonly;
    int state;
    int ended;    /* its outcome was given; the record waits for the node */
    int at_node;  /* the node's callback is owed */
    int live;     /* in the live list */
    unsigned redirects;
    int resent, noauth, to_master;
    int64_t deadline;  /* the command timeout from issue (none: INT64_MAX) */
    int64_t retry_end; /* retries end here */
    redtls_status st;  /* the last failure, reported if time runs out */
    /* A spare has these NULL (redtls__acl_op_put), and keeps its frame
     * buffer. */
    acl_node *fixed, *ask, *moved, *target;
    char *msg;
    redisReply *last;  /* the last retryable error reply */
    char *frame;
    size_t cap;
} acl_op;

struct redtls_async_cluster {
    redtls_config base; /* host/port swapped per node when one is made */
    char *base_host;
    char base_errmsg[REDTLS__ERRMSG_MAX];
    acl_node **nodes; /* entries keep their address (ops point at them) */
    size_t nnodes, capnodes;
    uint32_t slot_node[REDTLS_CLUSTER_SLOTS]; /* index into nodes */
    redtls__topology *topo;
    size_t *topo_node; /* topology node -> nodes index */
    int have_map;
    unsigned max_redirects, refresh_interval_ms, refresh_gap_ms, outage_ms;
    int read_replicas;
    size_t max_pending, n_live;
    /* Refresh. */
    int want_refresh, force_refresh;
    int refreshing;        /* a CLUSTER SLOTS is out */
    unsigned refresh_gen;  /* which one: late answers of abandoned ones are dropped */
    size_t *refresh_order;
    size_t refresh_n, refresh_i;
    int64_t refresh_deadline;
    int64_t last_refresh;  /* last refresh started */
    redtls_status map_st;  /* without a map: why the last refresh failed */
    char map_msg[REDTLS__ERRMSG_MAX];
    redtls_status refresh_last;
    char refresh_cause[REDTLS__ERRMSG_MAX];
    int connect_asked;
    redtls_async_cluster_connect_cb ccb;
    void *cud;
    /* Commands. */
    acl_op *live_head, *live_tail;
    acl_op *wait_head, *wait_tail;
    int64_t retry_at;      /* the wait list's next pass (INT64_MAX: none) */
    redtls__backoff backoff;
    acl_op *pool;
    size_t npool;
    redtls__cmd_cache cmd_cache;
    uint64_t rng;
    size_t rr;
    uint64_t stats[9];
    /* Loop. */
    int has_hooks;
    redtls_async_cluster_hooks hooks;
    int64_t armed_at;      /* the timer hook's time (INT64_MAX: none) */
    /* The blocking client's batches (lib/cluster/cluster.c). */
    int hold;              /* ACL_HOLD_*: which ops issued now wait, unsent,
                            * for redtls__acl_release */
    int held;              /* some do (release is owed) */
    int64_t hold_now;      /* with hold: the batch's time, when its first op
                            * was issued (release gives held ops their
                            * deadlines again) */
    void *owner;           /* the blocking handle driving this one */
    unsigned refreshes_done;
    redtls_status refresh_result;
    int64_t pass_now;      /* inside a node's callback: its pass's time (0: none) */
    int depth;             /* calls under way that may run callbacks */
    int freeing;
    int dead;              /* freed inside a callback: memory goes when depth is 0 */
    /* Shard subscriptions (acluster_pubsub.c). */
    acl_csub *ps_head, *ps_tail;
    size_t n_subs;
    char errmsg[REDTLS__ERRMSG_MAX];
};

/* acluster.c */
int64_t redtls__acl_now(void);
/* Tells the timer hook about the earliest time due, when it moved earlier. */
void redtls__acl_arm_timer(redtls_async_cluster *acl);
static inline void redtls__acl_arm(redtls_async_cluster *acl)
{
    if (acl->has_hooks)
        redtls__acl_arm_timer(acl);
}
uint64_t redtls__acl_rand(redtls_async_cluster *acl);

/* For the blocking cluster client, a loop over this engine
 * (lib/cluster/cluster.c). */
/* Runs the node connections and the handle's timer until done(arg) says
 * so or end passes: REDTLS_OK, or REDTLS_E_COMMAND_TIMEOUT at end. */
redtls_status redtls__acl_run_until(redtls_async_cluster *acl, int (*done)(void *arg), void *arg, int64_t end);
/* Ops issued while hold is on wait unsent; release gives each live op its
 * deadline from now and sends those held, in the order issued. */
void redtls__acl_release(redtls_async_cluster *acl);
/* Fetches the slot map now (a refresh already under way will do) and
 * waits for it until end: its status (message in acl->errmsg). */
redtls_status redtls__acl_refresh_wait(redtls_async_cluster *acl, int64_t end);
/* Closes the connections of nodes whose ended commands' replies are
 * still owed (the blocking client, whose loop does not run between
 * calls, closes them rather than keep them). */
void redtls__acl_close_orphaned(redtls_async_cluster *acl);
/* A command made with hiredis's printf-like format, read back into
 * arguments (pointing into cmd) for routing by key. */
typedef struct acl_fmt {
    char *cmd;
    int n;
    int argc;
    const char **argv;
    size_t *lens;
} acl_fmt;
redtls_status redtls__acl_vformat(acl_fmt *f, char *err, const char *fmt, va_list ap);
/* Frees what vformat made (the command's bytes wiped), after success or not. */
void redtls__acl_fmt_free(acl_fmt *f);
/* The host:port form of a node name, or -1. */
int redtls__acl_parse_node(const char *s, size_t len, char *host, size_t hostcap, uint16_t *port);

/* acluster_map.c */
/* The node for host:port (index into nodes), added when unknown (*added
 * set; may be NULL). extra: it may be outside the map (a redirection, an
 * explicit node). SIZE_MAX when out of memory or room (errmsg says). */
size_t redtls__acl_node_for(redtls_async_cluster *acl, const char *host, uint16_t port, int extra, int *added);
/* The node's connection, made (and attached to the loop) on first use. */
redtls_status redtls__acl_node_conn_new(redtls_async_cluster *acl, acl_node *n);
static inline redtls_status redtls__acl_node_conn(redtls_async_cluster *acl, acl_node *n)
{
    return n->ac ? REDTLS_OK : redtls__acl_node_conn_new(acl, n);
}
/* The node's connection for shard subscriptions (n->sub_ac). */
redtls_status redtls__acl_node_sub_conn_new(redtls_async_cluster *acl, acl_node *n);
/* Frees the node's connection once nothing is owed on it, when it left the map. */
void redtls__acl_node_settle_slow(redtls_async_cluster *acl, acl_node *n);
static inline void redtls__acl_node_settle(redtls_async_cluster *acl, acl_node *n)
{
    if (n->leaving)
        redtls__acl_node_settle_slow(acl, n);
}
/* Starts a refresh when one is due (or forced), or moves on from a node
 * that did not answer in time. */
void redtls__acl_refresh_tick(redtls_async_cluster *acl, int64_t now);
/* When the refresh work is next due (REDTLS__NO_DEADLINE: never). Asked
 * every turn of a loop, hence inline. */
static inline int64_t redtls__acl_refresh_due(const redtls_async_cluster *acl)
{
    if (acl->refreshing)
        return acl->refresh_deadline;
    if (acl->force_refresh)
        return 0; /* at once */
    int64_t gap_at = acl->last_refresh + (int64_t)acl->refresh_gap_ms;
    if (!acl->have_map)
        return acl->connect_asked || acl->wait_head || acl->n_subs ? gap_at : REDTLS__NO_DEADLINE;
    int64_t due = acl->want_refresh ? gap_at : REDTLS__NO_DEADLINE;
    if (acl->refresh_interval_ms)
        due = redtls__deadline_min(due, acl->last_refresh + (int64_t)acl->refresh_interval_ms);
    return due;
}
void redtls__acl_nodes_free(redtls_async_cluster *acl);
int redtls__acl_hard_failure(redtls_status st);

/* Points *slot at n, keeping the nodes' counts of ops that name them. */
static inline void redtls__acl_ref(acl_node **slot, acl_node *n)
{
    if (*slot)
        (*slot)->refs--;
    *slot = n;
    if (n)
        n->refs++;
}

/* acluster_cmd.c: records, ending, waiting, routing, sending, and what a
 * node brings back */
acl_op *redtls__acl_op_get(redtls_async_cluster *acl);
/* redtls__acl_op_get's common case: the first spare, o, taken and set as
 * a new record. */
static inline acl_op *redtls__acl_op_reuse(redtls_async_cluster *acl, acl_op *o)
{
    /* op_put left its references, message and last reply NULL, and kept
     * its frame buffer; the rest is set here rather than the whole record
     * cleared. */
    acl->pool = o->wnext;
    acl->npool--;
    o->prev = o->next = o->wprev = o->wnext = NULL;
    o->in_wait = 0;
    o->cb = NULL;
    o->ud = NULL;
    o->split = NULL;
    o->part = o->map_off = o->map_n = 0;
    o->len = 0;
    o->flags = 0;
    o->readonly = o->state = o->ended = o->at_node = o->live = 0;
    o->redirects = 0;
    o->resent = o->noauth = o->to_master = 0;
    o->st = REDTLS_OK;
    o->slot = ACL_NO_SLOT;
    o->deadline = o->retry_end = REDTLS__NO_DEADLINE;
    return o;
}
/* Gives a record back (its references dropped); never while a node owes
 * its callback. */
void redtls__acl_op_put(redtls_async_cluster *acl, acl_op *o);
static inline void redtls__acl_live_push(redtls_async_cluster *acl, acl_op *o)
{
    o->live = 1;
    o->next = NULL;
    o->prev = acl->live_tail;
    if (acl->live_tail)
        acl->live_tail->next = o;
    else
        acl->live_head = o;
    acl->live_tail = o;
}
void redtls__acl_live_unlink(redtls_async_cluster *acl, acl_op *o);
void redtls__acl_wait_unlink(redtls_async_cluster *acl, acl_op *o);
/* An op of the blocking client's batch: waits unsent for release. */
void redtls__acl_hold_op(redtls_async_cluster *acl, acl_op *o);
/* Routes an op and hands it to its node, or puts it in the wait list; a
 * failure that ends it at once is returned (acl->errmsg says why). */
redtls_status redtls__acl_op_send(redtls_async_cluster *acl, acl_op *o, int64_t now);
/* The node connections' callback for ops. */
extern const redtls_async_reply_cb redtls__acl_node_cb;
/* The slot's master when its connection is up, else NULL. */
static inline acl_node *redtls__acl_master_up(const redtls_async_cluster *acl, uint32_t slot)
{
    uint32_t mi = acl->slot_node[slot];
    if (mi == ACL_NO_SLOT)
        return NULL;
    acl_node *n = acl->nodes[mi];
    return n->ac && n->ac->up ? n : NULL;
}
/* The node redtls__acl_op_send's common case hands an op to, inline for
 * the issuing path: no redirection or explicit node, no replica read, and
 * the slot's master connected. NULL when the case does not apply. */
static inline acl_node *redtls__acl_direct_node(const redtls_async_cluster *acl, const acl_op *o)
{
    if (o->fixed || o->ask || o->moved || o->slot == ACL_NO_SLOT || (acl->read_replicas && o->readonly && !o->to_master))
        return NULL;
    return redtls__acl_master_up(acl, o->slot);
}
/* Hands an op without ASKING to n (its connection made): op_send's last
 * step. A failure is returned (acl->errmsg says why). */
static inline redtls_status redtls__acl_hand(redtls_async_cluster *acl, acl_op *o, acl_node *n)
{
    /* The node's record carries the op's own deadline, so a command still
     * queued there when that passes is never written. */
    redtls_status st = redtls__async_issue_frame(n->ac, o->frame, o->len, o->deadline, redtls__acl_node_cb, o);
    if (st != REDTLS_OK)
        return redtls__fail(acl->errmsg, st, "node %.200s: %.290s", n->name, redtls_async_errmsg(n->ac));
    o->state = ACL_OP_SENT;
    o->at_node = 1;
    redtls__acl_ref(&o->target, n);
    return REDTLS_OK;
}
/* Gives an op's outcome (reply owned by it from here): to its callback, or
 * to its split, whose callback runs when the last part is in. */
void redtls__acl_op_end(redtls_async_cluster *acl, acl_op *o, redtls_status st, redisReply *reply, const char *msg);
/* The callback of a command issued without one: drops the reply. */
void redtls__acl_discard(redtls_async_cluster *acl, redtls_status st, redisReply *r, void *ud);

/* For the blocking client's direct lane (lib/cluster/cluster_lane.c),
 * which writes a batch to its nodes' connections itself and hands the
 * engine only what it does not end by itself. */
/* A live op for a command already framed (its bytes copied), its
 * deadlines counted from now (for the lane: when its batch was released,
 * as the engine counts a batch's). NULL when out of memory. */
acl_op *redtls__acl_op_framed(redtls_async_cluster *acl, unsigned flags, uint32_t slot, int readonly,
                              const char *frame, size_t len, int64_t now, redtls_async_cluster_reply_cb cb, void *ud);
/* An op whose command the lane wrote to node n (len bytes) and whose
 * reply is still owed: n's connection owes it to the engine from now. */
redtls_status redtls__acl_rehome(redtls_async_cluster *acl, acl_op *o, acl_node *n, size_t len);
/* What node n answered (st, r: owned from here) for an op the lane wrote
 * there, judged as if n's connection had brought it back: ended, or sent
 * on (a redirection, NOAUTH) or put to wait (a retry, an idempotent
 * resend). */
void redtls__acl_adopt(redtls_async_cluster *acl, acl_op *o, acl_node *n, redtls_status st, redisReply *r,
                       int64_t now);

/* acluster_pubsub.c */
/* A subscriber connection lost its connection: the map may have changed. */
void redtls__acl_ps_lost(redtls_async *ac);
/* Places what waits for a placement, ends what is owed its notice, and
 * frees subscriber connections left with nothing. */
void redtls__acl_ps_tick(redtls_async_cluster *acl);
/* A new map: subscriptions whose slot changed owner move there. */
void redtls__acl_ps_map_installed(redtls_async_cluster *acl);
/* Teardown: the application's last notices, then the records. */
void redtls__acl_ps_end_all(redtls_async_cluster *acl);
void redtls__acl_ps_free(redtls_async_cluster *acl);

/* acluster_issue.c */
void redtls__acl_split_free(acl_split *sp);
redtls_status redtls__acl_issue(redtls_async_cluster *acl, unsigned flags, uint32_t slot, acl_node *node, int argc,
                                const char **argv, const size_t *lens, char *frame, size_t flen,
                                redtls_async_cluster_reply_cb cb, void *ud);
/* redtls__acl_issue for a command routed by its keys (no node, no slot),
 * with fewer arguments: the command calls' common entry. */
redtls_status redtls__acl_issue_keyed(redtls_async_cluster *acl, unsigned flags, int argc, const char **argv,
                                      const size_t *lens, redtls_async_cluster_reply_cb cb, void *ud);
/* Ends ops past their deadline; sends the wait list when its time came. */
void redtls__acl_tick(redtls_async_cluster *acl, int64_t now);
/* A map came in: the wait list goes out now. */
void redtls__acl_map_installed(redtls_async_cluster *acl);
/* No map, and the last refresh failed with st: waiting ops that cannot
 * be helped by waiting end. */
void redtls__acl_map_failed(redtls_async_cluster *acl, redtls_status st);
/* Folds a split command's parts into its outcome (pure; the parts'
 * replies are taken as needed). MGET: sp->map holds each part's keys'
 * original positions, part after part, each run ended by SIZE_MAX. */
redtls_status redtls__acl_merge(acl_split *sp, redisReply **out, char *err);
/* Ends every op with st (teardown). */
void redtls__acl_end_all(redtls_async_cluster *acl, redtls_status st, const char *msg);
void redtls__acl_ops_free(redtls_async_cluster *acl);

#endif

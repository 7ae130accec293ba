/* The blocking cluster client's insides, shared by its two files:
 *   cluster.c       the handle and its calls: a batch's commands, its
 *                   outcomes handed out in order, the engine's loop
 *   cluster_lane.c  the direct lane: a batch whose nodes are connected and
 *                   idle is written to their connections and read back here
 *                   without a record per command in the engine; whatever
 *                   the lane does not end by itself (a redirection, a
 *                   retryable error, a lost connection) goes to the engine
 *                   as an op, which judges it as it judges its own
 */
#ifndef REDTLS_CLUSTER_INTERNAL_H
#define REDTLS_CLUSTER_INTERNAL_H

#include <stdint.h>

#include <redtls/cluster.h>

#include "acluster.h"
#include "format.h"
#include "slot.h"

#define CL_NONE UINT32_MAX

/* One command of the batch: its outcome, and while it is the lane's, where
 * its bytes are. */
typedef struct cl_result {
    redtls_status st;
    redisReply *reply;
    char *msg;
    /* The lane's (see cl_dnode). */
    uint32_t dn;    /* its node's entry in dn */
    uint32_t dnext; /* the next command of the same node, in order */
    size_t off, len; /* its bytes in that node's frames */
    uint32_t slot;
    unsigned flags; /* the command's, and CL_READONLY */
    int done;       /* its outcome is in (st, reply, msg) */
} cl_result;

/* In cl_result.flags: the command only reads (for the engine, were it to
 * take the command over). */
#define CL_READONLY (1u << 31)

/* A node the lane's batch writes to: the batch's bytes for it, framed at
 * append time (kept after the write for whatever the engine takes over),
 * and its commands in order. Entries keep their buffers between batches. */
typedef struct cl_dnode {
    uint32_t m;        /* index into the engine's nodes */
    char *frames;
    size_t flen, fcap;
    redtls_conn *c;      /* once the batch runs: the master's connection */
    const char *sent;    /* once the batch runs: its bytes, now the
                          * connection's queue (frames has the queue's
                          * old buffer) */
    uint32_t head, tail; /* the node's first and last command */
    uint32_t next;       /* the next one owed a reply */
    size_t n, owed;
    int want;            /* poll events the connection waits for */
    int fresh;           /* written, nothing read since: wait before reading */
} cl_dnode;

struct redtls_cluster {
    redtls_async_cluster *acl;
    cl_result *res;
    size_t nres, capres;
    size_t ndone;    /* outcomes in */
    size_t next_out; /* next result handed out */
    int ran;         /* the batch was released */
    int lane;        /* the batch so far is the lane's */
    int handover;    /* the lane's batch is for the engine to finish */
    int lazy;        /* the lane's batch runs: its replies are read as
                      * they are asked for */
    int64_t lane_now, lane_end; /* lazy: the last clock read, the deadline */
    uint32_t *dn_of;            /* a master's entry in dn, by its index in the
                                 * engine's nodes (valid when that entry
                                 * names it) */
    size_t dn_of_cap;
    int64_t t0;      /* when the lane's batch was released (its deadlines' start) */
    cl_dnode *dn;
    size_t ndn, capdn;
    char errmsg[REDTLS__ERRMSG_MAX];
};

/* cluster.c: files a command's outcome at its place (ud: the index). */
void redtls__cl_on_outcome(redtls_async_cluster *acl, redtls_status st, redisReply *reply, void *ud);

/* cluster_lane.c */
/* May a new batch take the lane? (asked at its first command, at now) */
int redtls__cl_lane_open(const redtls_cluster *cl, int64_t now);
/* The general case of redtls__cl_lane_add below, and the case of a
 * keyed command whose slot is known (kf: its REDTLS__CMD_* bits). */
int redtls__cl_lane_add_to(redtls_cluster *cl, unsigned flags, unsigned kf, uint32_t slot, int argc,
                           const char **argv, const size_t *lens, redtls_status *st);
int redtls__cl_lane_add_slow(redtls_cluster *cl, unsigned flags, int argc, const char **argv, const size_t *lens,
                             redtls_status *st);

/* Files command cl->nres, for master entry k: framed into its buffer. Its
 * status (out of memory: nothing filed). */
static inline redtls_status redtls__cl_lane_put(redtls_cluster *cl, uint32_t k, unsigned flags, unsigned kf,
                                                uint32_t slot, int argc, const char **argv, const size_t *lens)
{
    cl_dnode *d = &cl->dn[k];
    size_t off = d->flen;
    if (redtls__format_argv(&d->frames, &d->flen, &d->fcap, argc, argv, lens) != REDTLS_OK) {
        d->flen = off;
        return redtls__fail(cl->errmsg, REDTLS_E_NOMEM, "out of memory formatting the command");
    }
    uint32_t i = (uint32_t)cl->nres;
    cl_result *e = &cl->res[i];
    e->st = REDTLS_OK;
    e->reply = NULL;
    e->msg = NULL;
    e->done = 0;
    e->dn = k;
    e->dnext = CL_NONE;
    e->off = off;
    e->len = d->flen - off;
    e->slot = slot;
    e->flags = (flags & ~CL_READONLY) | ((kf & REDTLS__CMD_READONLY) ? CL_READONLY : 0);
    if (d->tail == CL_NONE)
        d->head = i;
    else
        cl->res[d->tail].dnext = i;
    d->tail = i;
    d->n++;
    return REDTLS_OK;
}

/* Takes command cl->nres (room for its result made) into the lane: 1
 * (*st: the append's status), or 0 when it is not the lane's kind (no
 * key, keys in several slots, a connection-state command, a slot without
 * a master): the caller then hands the batch to the engine. Inline for
 * the usual command (one key, to a master the batch has already). */
static inline int redtls__cl_lane_add(redtls_cluster *cl, unsigned flags, int argc, const char **argv,
                                      const size_t *lens, redtls_status *st)
{
    redtls_async_cluster *acl = cl->acl;
    unsigned kf = 0;
    if (argv && cl->nres < acl->max_pending && cl->nres < CL_NONE &&
        redtls__command_one_key(&acl->cmd_cache, argc, argv, lens, &kf) && lens[0] != 5 && lens[0] != 10 &&
        lens[0] != 12) {
        uint32_t slot = redtls__key_slot(argv[1], lens[1]);
        uint32_t m = acl->slot_node[slot];
        if (m < cl->dn_of_cap) {
            uint32_t k = cl->dn_of[m];
            if (k < cl->ndn && cl->dn[k].m == m) {
                *st = redtls__cl_lane_put(cl, k, flags, kf, slot, argc, argv, lens);
                return 1;
            }
        }
        return redtls__cl_lane_add_to(cl, flags, kf, slot, argc, argv, lens, st);
    }
    return redtls__cl_lane_add_slow(cl, flags, argc, argv, lens, st);
}
/* Hands the lane's commands so far to the engine, held for the release
 * (their outcomes are owed by it from now); the batch is the engine's. */
void redtls__cl_lane_demote(redtls_cluster *cl);
/* Runs the lane's batch: its bytes go out and 1 (lazy set: the replies
 * are read as they are asked for; or, when a write failed, the engine has
 * what is left: *end is the batch's deadline for that), or 0 when the lane
 * could not take it (a node not connected and idle) and the engine has
 * all of it, held. */
int redtls__cl_lane_run(redtls_cluster *cl, int64_t *end);
/* What redtls__cl_lane_quick took that is not a plain reply (st: a
 * failure; else r, an error reply, or NULL): filed or handed to the
 * engine. 0. */
int redtls__cl_lane_quick_rare(redtls_cluster *cl, cl_dnode *d, redtls_status st, redisReply *r);

/* Lazy, the next command to hand out not done yet: its reply straight
 * from its master's reader when it is there whole and not an error: 1
 * (*reply, the command counted as done), else 0 (anything taken is filed
 * or handed to the engine). Inline: deep pipelines take most replies so.
 * (The next command owed by its master is this one: those before it are
 * all handed out.) */
static inline int redtls__cl_lane_quick(redtls_cluster *cl, redisReply **reply)
{
    cl_result *e = &cl->res[cl->next_out];
    cl_dnode *d = &cl->dn[e->dn];
    redtls_conn *c = d->c;
    if (c->olen > 0)
        return 0;
    redisReply *r = NULL;
    redtls_status st = redtls__conn_take_parsed(c, cl->lane_now, &r);
    if (st != REDTLS_OK || !r || r->type == REDIS_REPLY_ERROR)
        return redtls__cl_lane_quick_rare(cl, d, st, r);
    d->next = e->dnext;
    d->owed--;
    e->done = 1;
    cl->ndone++;
    *reply = r;
    return 1;
}

/* A running lane batch (lazy) is read as its replies are asked for: reads
 * until the next command to hand out has its outcome, reading the other
 * masters' replies as they come while it waits. 1 when the engine took
 * over what is left (for the caller to run), else 0. */
int redtls__cl_lane_next(redtls_cluster *cl);
/* Frees the lane's buffers (with the handle). */
void redtls__cl_lane_free(redtls_cluster *cl);

#endif

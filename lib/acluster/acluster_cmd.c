/* The asynchronous cluster client's commands once issued: their records,
 * routing, sending to a node, classifying what the node's callback brings
 * back, retries, deadlines, and how each one ends (issuing, splitting and
 * merging are in acluster_issue.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>

#include "acluster.h"
#include "format.h"
#include "redirect.h"
#include "sock.h"

/* Frame buffers kept with a spare record up to this size. */
#define KEEP_FRAME 256

/* ---- records ---- */

acl_op *redtls__acl_op_get(redtls_async_cluster *acl)
{
    acl_op *o = acl->pool;
    if (o)
        return redtls__acl_op_reuse(acl, o);
    if ((o = malloc(sizeof *o)) == NULL)
        return NULL;
    memset(o, 0, sizeof *o);
    o->slot = ACL_NO_SLOT;
    o->deadline = o->retry_end = REDTLS__NO_DEADLINE;
    return o;
}

void redtls__acl_op_put(redtls_async_cluster *acl, acl_op *o)
{
    if (o->fixed || o->ask || o->moved || o->target) {
        redtls__acl_ref(&o->fixed, NULL);
        redtls__acl_ref(&o->ask, NULL);
        redtls__acl_ref(&o->moved, NULL);
        redtls__acl_ref(&o->target, NULL);
    }
    if (o->msg) {
        free(o->msg);
        o->msg = NULL;
    }
    if (o->last) {
        freeReplyObject(o->last);
        o->last = NULL;
    }
    if (acl->freeing || acl->npool >= ACL_OP_POOL_MAX) {
        free(o->frame);
        free(o);
        return;
    }
    if (o->cap > KEEP_FRAME) {
        free(o->frame);
        o->frame = NULL;
        o->cap = 0;
    }
    o->wnext = acl->pool;
    acl->pool = o;
    acl->npool++;
}

/* op_put's common case without the call: a record with nothing to drop
 * goes straight back to the spares. */
static inline void op_recycle(redtls_async_cluster *acl, acl_op *o)
{
    if (o->fixed || o->ask || o->moved || o->target || o->msg || o->last || acl->freeing ||
        acl->npool >= ACL_OP_POOL_MAX || o->cap > KEEP_FRAME) {
        redtls__acl_op_put(acl, o);
        return;
    }
    o->wnext = acl->pool;
    acl->pool = o;
    acl->npool++;
}

void redtls__acl_ops_free(redtls_async_cluster *acl)
{
    while (acl->pool) {
        acl_op *o = acl->pool;
        acl->pool = o->wnext;
        free(o->frame);
        free(o);
    }
    acl->npool = 0;
    free(acl->refresh_order);
    acl->refresh_order = NULL;
}

void redtls__acl_live_unlink(redtls_async_cluster *acl, acl_op *o)
{
    if (!o->live)
        return;
    o->live = 0;
    if (o->prev)
        o->prev->next = o->next;
    else
        acl->live_head = o->next;
    if (o->next)
        o->next->prev = o->prev;
    else
        acl->live_tail = o->prev;
    o->prev = o->next = NULL;
}

static void set_msg(acl_op *o, redtls_status st, const char *msg)
{
    o->st = st;
    if (msg) {
        free(o->msg);
        o->msg = strdup(msg);
    }
}

/* ---- ending ---- */

/* To the back of the wait list. */
static void wait_push(redtls_async_cluster *acl, acl_op *o)
{
    o->state = ACL_OP_WAITING;
    o->in_wait = 1;
    o->wnext = NULL;
    o->wprev = acl->wait_tail;
    if (acl->wait_tail)
        acl->wait_tail->wnext = o;
    else
        acl->wait_head = o;
    acl->wait_tail = o;
}

void redtls__acl_wait_unlink(redtls_async_cluster *acl, acl_op *o)
{
    if (!o->in_wait)
        return;
    o->in_wait = 0;
    if (o->wprev)
        o->wprev->wnext = o->wnext;
    else
        acl->wait_head = o->wnext;
    if (o->wnext)
        o->wnext->wprev = o->wprev;
    else
        acl->wait_tail = o->wprev;
    o->wprev = o->wnext = NULL;
}

void redtls__acl_op_end(redtls_async_cluster *acl, acl_op *o, redtls_status st, redisReply *reply, const char *msg)
{
    redtls__acl_live_unlink(acl, o);
    redtls__acl_wait_unlink(acl, o);
    o->ended = 1;
    if (o->ask || o->moved || o->fixed) {
        redtls__acl_ref(&o->ask, NULL);
        redtls__acl_ref(&o->moved, NULL);
        redtls__acl_ref(&o->fixed, NULL);
    }
    redtls_async_cluster_reply_cb cb = o->cb;
    void *ud = o->ud;
    acl_split *sp = o->split;
    size_t part = o->part;
    if (!o->at_node)
        op_recycle(acl, o);
    else if (o->target)
        o->target->orphans++;
    if (sp) {
        if (st != REDTLS_OK && sp->st == REDTLS_OK) {
            sp->st = st;
            sp->msg = strdup(msg ? msg : redtls_strerror(st));
        }
        if (st == REDTLS_OK && sp->st == REDTLS_OK)
            sp->replies[part] = reply;
        else
            freeReplyObject(reply);
        if (--sp->left > 0)
            return;
        cb = sp->cb;
        ud = sp->ud;
        st = redtls__acl_merge(sp, &reply, acl->errmsg);
        redtls__acl_split_free(sp);
    } else if (st != REDTLS_OK && msg != acl->errmsg) {
        snprintf(acl->errmsg, sizeof acl->errmsg, "%s", msg ? msg : redtls_strerror(st));
    }
    acl->n_live--;
    cb(acl, st, reply, ud);
}

/* The last outcome of an op that ran out of time or retries while
 * waiting: the last retryable error reply if there was one (TRYAGAIN,
 * CLUSTERDOWN...), else the status that kept it waiting. */
static void op_end_waiting(redtls_async_cluster *acl, acl_op *o, redtls_status st, const char *what)
{
    redtls__redirect rd;
    char err[REDTLS__ERRMSG_MAX];
    if (o->last && o->last->type == REDIS_REPLY_ERROR &&
        redtls__redirect_parse(o->last->str, o->last->len, &rd, err) == REDTLS__NOT_REDIRECT) {
        redisReply *r = o->last;
        o->last = NULL;
        redtls__acl_op_end(acl, o, REDTLS_OK, r, NULL);
        return;
    }
    char msg[REDTLS__ERRMSG_MAX];
    snprintf(msg, sizeof msg, "%s; last failure: %.400s", what,
             o->msg ? o->msg : o->st != REDTLS_OK ? redtls_strerror(o->st) : "none");
    redtls__acl_op_end(acl, o, st, NULL, msg);
}

/* ---- waiting ---- */

static void op_wait(redtls_async_cluster *acl, acl_op *o, int64_t now)
{
    if (now >= o->retry_end) {
        op_end_waiting(acl, o, o->st != REDTLS_OK ? o->st : REDTLS_E_UNAVAILABLE,
                       "retries ended after the outage limit");
        return;
    }
    wait_push(acl, o);
    if (acl->retry_at == REDTLS__NO_DEADLINE)
        acl->retry_at = now + redtls__backoff_next(&acl->backoff);
}

/* The blocking client's batch: in the wait list, no retry time set. */
void redtls__acl_hold_op(redtls_async_cluster *acl, acl_op *o)
{
    wait_push(acl, o);
    acl->held = 1;
}

void redtls__acl_release(redtls_async_cluster *acl)
{
    acl->held = 0;
    int64_t now = redtls__acl_now();
    for (acl_op *o = acl->live_head; o; o = o->next) {
        o->deadline = redtls__deadline_from(now, acl->base.command_timeout_ms);
        o->retry_end = acl->base.command_timeout_ms ? o->deadline
                                                    : now + (int64_t)(acl->outage_ms ? acl->outage_ms : 60000U);
    }
    redtls__backoff_reset(&acl->backoff);
    acl->retry_at = now;
    acl->depth++;
    redtls__acl_tick(acl, now);
    acl->depth--;
}

/* ---- routing and sending ---- */

static acl_node *pick_any(redtls_async_cluster *acl, int64_t now)
{
    acl_node *fallback = NULL;
    for (size_t j = 0; j < acl->nnodes; j++) {
        size_t i = (acl->rr + j) % acl->nnodes;
        acl_node *n = acl->nodes[i];
        if (!n->host || !n->master)
            continue;
        if (!n->ac || !redtls__async_down(n->ac, now)) {
            acl->rr = i; /* stay on a working node: its connection is warm */
            return n;
        }
        if (!fallback)
            fallback = n;
    }
    return fallback;
}

static acl_node *pick_replica(redtls_async_cluster *acl, uint32_t slot, uint32_t master, int64_t now)
{
    if (!acl->topo)
        return NULL;
    const redtls__slot_range *r = redtls__topology_find(acl->topo, slot);
    if (!r || r->nreplicas == 0 || acl->topo_node[r->master] != master)
        return NULL;
    size_t start = (size_t)(redtls__acl_rand(acl) % r->nreplicas);
    for (size_t j = 0; j < r->nreplicas; j++) {
        acl_node *n = acl->nodes[acl->topo_node[r->replicas[(start + j) % r->nreplicas]]];
        if (!n->ac || !redtls__async_down(n->ac, now))
            return n;
    }
    return NULL;
}

static acl_node *route(redtls_async_cluster *acl, acl_op *o, int64_t now)
{
    if (o->fixed)
        return o->fixed;
    if (o->ask)
        return o->ask;
    if (o->moved) {
        /* Once: a slot of our own guess (an unknown command, an explicit
         * slot) may differ from the one the server meant. */
        acl_node *t = o->moved;
        redtls__acl_ref(&o->moved, NULL);
        return t;
    }
    if (o->slot == ACL_NO_SLOT)
        return pick_any(acl, now);
    uint32_t m = acl->slot_node[o->slot];
    if (m == ACL_NO_SLOT)
        return NULL;
    if (acl->read_replicas && o->readonly && !o->to_master) {
        acl_node *r = pick_replica(acl, o->slot, m, now);
        if (r) {
            acl->stats[REDTLS_CLUSTER_STAT_REPLICA_READS]++;
            return r;
        }
    }
    return acl->nodes[m];
}

static void node_reply(redtls_async *ac, redtls_status st, redisReply *r, void *ud);
const redtls_async_reply_cb redtls__acl_node_cb = node_reply;

void redtls__acl_discard(redtls_async_cluster *acl, redtls_status st, redisReply *r, void *ud)
{
    (void)acl;
    (void)st;
    (void)ud;
    freeReplyObject(r);
}

static const char asking_cmd[] = "*1\r\n$6\r\nASKING\r\n";

/* Where op_send hands an op when its common case does not apply: the
 * node (its connection made), or NULL with *st: REDTLS_OK when the op
 * waits, else the failure that ends it. */
static REDTLS__NOINLINE acl_node *send_target(redtls_async_cluster *acl, acl_op *o, int64_t now, redtls_status *st)
{
    *st = REDTLS_OK;
    acl_node *n = route(acl, o, now);
    if (!n) {
        acl->want_refresh = 1;
        if (!acl->have_map && acl->map_st != REDTLS_OK)
            set_msg(o, acl->map_st, acl->map_msg);
        else if (!acl->have_map)
            set_msg(o, REDTLS_E_COMMAND_TIMEOUT, "no slot map yet (the first refresh is under way)");
        else if (o->st == REDTLS_OK) {
            char msg[96];
            snprintf(msg, sizeof msg, "slot %u has no master in the slot map", (unsigned)o->slot);
            set_msg(o, REDTLS_E_CLUSTER_TOPOLOGY, msg);
        }
        op_wait(acl, o, now);
        return NULL;
    }
    if (n->ac && redtls__async_down(n->ac, now)) {
        /* Its connection failed and waits for its backoff: not sent. An
         * explicit node reports why; a redirection target or a replica
         * gives way to the slot's master; a master waits for a refresh (a
         * failover) or its next attempt. */
        redtls_status cst = n->ac->c->last_status != REDTLS_OK ? n->ac->c->last_status : REDTLS_E_UNAVAILABLE;
        redtls__fail(acl->errmsg, cst, "node %.200s: %.290s", n->name, redtls__conn_cause(n->ac->c));
        if (o->fixed) {
            *st = cst;
            return NULL;
        }
        acl->want_refresh = 1;
        set_msg(o, cst, acl->errmsg);
        acl_node *m = o->slot != ACL_NO_SLOT && acl->slot_node[o->slot] != ACL_NO_SLOT
                          ? acl->nodes[acl->slot_node[o->slot]]
                          : NULL;
        if (!m || m == n || (m->ac && redtls__async_down(m->ac, now))) {
            op_wait(acl, o, now);
            return NULL;
        }
        o->to_master = 1;
        redtls__acl_ref(&o->ask, NULL);
        n = m;
    }
    if ((*st = redtls__acl_node_conn(acl, n)) != REDTLS_OK) {
        if (n->ac)
            redtls__fail(acl->errmsg, *st, "node %.200s: %.290s", n->name, redtls_async_errmsg(n->ac));
        return NULL;
    }
    return n;
}

/* Routes an op and hands it to its node, or puts it in the wait list.
 * A failure that ends it at once (an explicit node that is down, out of
 * memory) is returned (acl->errmsg says why) for the caller to report:
 * from an issuing call as its status, elsewhere through the callback. */
redtls_status redtls__acl_op_send(redtls_async_cluster *acl, acl_op *o, int64_t now)
{
    acl_node *n = redtls__acl_direct_node(acl, o); /* the common case */
    redtls_status st;
    if (!n && !(n = send_target(acl, o, now, &st)))
        return st;
    if (!o->ask)
        return redtls__acl_hand(acl, o, n);
    st = redtls__async_issue_raw(n->ac, asking_cmd, sizeof asking_cmd - 1, o->frame, o->len, o->deadline, node_reply,
                                 o);
    if (st != REDTLS_OK)
        return redtls__fail(acl->errmsg, st, "node %.200s: %.290s", n->name, redtls_async_errmsg(n->ac));
    o->state = ACL_OP_SENT;
    o->at_node = 1;
    redtls__acl_ref(&o->target, n);
    return REDTLS_OK;
}

/* ---- what a node brings back ---- */

/* An op that reached its deadline in a node's queue, its connection
 * still being made (or waiting for its next attempt): it was not sent,
 * and the phase the connection was in says why. */
static void end_unsent(redtls_async_cluster *acl, acl_op *o, acl_node *n)
{
    /* Out of the node's queue first: "not sent" has to stay true. */
    if (o->at_node && redtls__async_cancel_queued(n->ac, o)) {
        o->at_node = 0;
        redtls__acl_ref(&o->target, NULL);
    }
    char why[REDTLS__ERRMSG_MAX - 100];
    redtls_status st = redtls__attempt_cut(n->ac->c, why, sizeof why);
    char msg[REDTLS__ERRMSG_MAX];
    snprintf(msg, sizeof msg, "not sent within the command timeout; node %.150s: %.300s", n->name, why);
    redtls__acl_op_end(acl, o, st, NULL, msg);
}

/* A failure status from the node's connection. */
static void classify_failure(redtls_async_cluster *acl, acl_op *o, acl_node *n, redtls_status st, int64_t now)
{
    if (st == REDTLS_E_COMMAND_TIMEOUT && n->ac && !n->ac->up) {
        /* The node's own deadline came first; a command it ends that way
         * while not connected was never written. */
        end_unsent(acl, o, n);
        return;
    }
    char msg[REDTLS__ERRMSG_MAX];
    snprintf(msg, sizeof msg, "node %.200s: %.290s", n->name, n->ac ? redtls_async_errmsg(n->ac) : "");
    if (st == REDTLS_E_NOMEM || st == REDTLS_E_LIMIT || st == REDTLS_E_PROTOCOL || st == REDTLS_E_INVALID ||
        st == REDTLS_E_CLOSED || st == REDTLS_E_COMMAND_TIMEOUT) {
        redtls__acl_op_end(acl, o, st, NULL, msg);
        return;
    }
    acl->stats[REDTLS_CLUSTER_STAT_NODE_FAILURES]++;
    acl->want_refresh = 1;
    if (st == REDTLS_E_OUTCOME_UNKNOWN) {
        /* Written, and the connection broke: it may have run. */
        if ((o->flags & REDTLS_CMD_IDEMPOTENT) && !o->resent) {
            o->resent = 1;
            redtls__acl_ref(&o->ask, NULL); /* back to the slot's owner */
            set_msg(o, st, msg);
            op_wait(acl, o, now);
            return;
        }
        redtls__acl_op_end(acl, o, st, NULL, msg);
        return;
    }
    /* The connection could not be made: the command was not written. */
    int elsewhere = o->ask || o->slot == ACL_NO_SLOT ||
                    (o->slot != ACL_NO_SLOT && acl->slot_node[o->slot] != ACL_NO_SLOT &&
                     acl->nodes[acl->slot_node[o->slot]] != n);
    if (o->fixed || (redtls__acl_hard_failure(st) && !elsewhere)) {
        redtls__acl_op_end(acl, o, st, NULL, msg);
        return;
    }
    set_msg(o, st, msg);
    o->to_master = 1;
    redtls__acl_ref(&o->ask, NULL);
    op_wait(acl, o, now);
}

/* A redirection: MOVED updates the slot and asks for a refresh; both are
 * followed at once unless the target is unknown. */
static void redirect(redtls_async_cluster *acl, acl_op *o, acl_node *n, redisReply *r, redtls__redirect *rd,
                     redtls__redirect_kind kind, int64_t now)
{
    acl->stats[kind == REDTLS__MOVED ? REDTLS_CLUSTER_STAT_MOVED : REDTLS_CLUSTER_STAT_ASK]++;
    acl_node *to = NULL;
    int added = 0;
    size_t ti = SIZE_MAX;
    if (strcmp(rd->host, "?") != 0) {
        if (!rd->host[0])
            snprintf(rd->host, sizeof rd->host, "%s", n->host);
        ti = redtls__acl_node_for(acl, rd->host, rd->port, 1, &added);
        to = ti == SIZE_MAX ? NULL : acl->nodes[ti];
    }
    /* A node first met by IP in a TLS cluster may have a host name the
     * slot map will give: wait for the refresh rather than verify it
     * against the bare address (and route nothing to it meanwhile). */
    int unnamed = to && added && acl->base.use_tls && redtls__is_ip_literal(to->host);
    if (!to || kind == REDTLS__MOVED)
        acl->want_refresh = 1;
    if (kind == REDTLS__MOVED && to && !unnamed && rd->slot < REDTLS_CLUSTER_SLOTS)
        acl->slot_node[rd->slot] = (uint32_t)ti;
    if (++o->redirects > acl->max_redirects) {
        char msg[REDTLS__ERRMSG_MAX];
        snprintf(msg, sizeof msg, "slot %u: more than %u redirections; the last one, not followed: %.200s", rd->slot,
                 acl->max_redirects, r->str);
        freeReplyObject(r);
        redtls__acl_op_end(acl, o, REDTLS_E_CLUSTER_REDIRECTS, NULL, msg);
        return;
    }
    o->to_master = 1;
    redtls__acl_ref(&o->ask, kind == REDTLS__ASK && !unnamed ? to : NULL);
    redtls__acl_ref(&o->moved, kind == REDTLS__MOVED && !unnamed ? to : NULL);
    freeReplyObject(o->last);
    o->last = r;
    if (!to || unnamed) {
        if (unnamed)
            acl->force_refresh = 1;
        set_msg(o, REDTLS_E_CLUSTER_TOPOLOGY, "a redirection named a node the slot map does not know yet");
        op_wait(acl, o, now);
        return;
    }
    redtls_status st = redtls__acl_op_send(acl, o, now);
    if (st != REDTLS_OK)
        redtls__acl_op_end(acl, o, st, NULL, acl->errmsg);
}

static void classify(redtls_async_cluster *acl, acl_op *o, acl_node *n, redtls_status st, redisReply *r, int64_t now)
{
    if (st != REDTLS_OK) {
        freeReplyObject(r);
        classify_failure(acl, o, n, st, now);
        return;
    }
    if (r->type != REDIS_REPLY_ERROR || o->fixed) {
        redtls__acl_op_end(acl, o, REDTLS_OK, r, NULL);
        return;
    }
    redtls__redirect rd;
    char err[REDTLS__ERRMSG_MAX];
    redtls__redirect_kind kind = redtls__redirect_parse(r->str, r->len, &rd, err);
    if (kind != REDTLS__NOT_REDIRECT) {
        redirect(acl, o, n, r, &rd, kind, now);
        return;
    }
    /* NOAUTH (a token rotated server-side): the node's connection
     * authenticates again before its next write; the command, which did
     * not run, goes once more. */
    if (!o->noauth && r->len >= 6 && memcmp(r->str, "NOAUTH", 6) == 0 && n->ac &&
        redtls__conn_has_credentials(n->ac->c)) {
        o->noauth = 1;
        freeReplyObject(o->last);
        o->last = r;
        redtls_status sst = redtls__acl_op_send(acl, o, now);
        if (sst != REDTLS_OK)
            redtls__acl_op_end(acl, o, sst, NULL, acl->errmsg);
        return;
    }
    /* Errors that say the command did not run: retried after a delay. */
    redtls__error_kind ek = redtls__error_classify(r->str, r->len);
    if (ek == REDTLS__ERR_FINAL) {
        redtls__acl_op_end(acl, o, REDTLS_OK, r, NULL);
        return;
    }
    if (ek == REDTLS__ERR_STALE) {
        acl->want_refresh = 1;
        o->to_master = 1;
    } else {
        acl->stats[REDTLS_CLUSTER_STAT_TRYAGAIN]++;
    }
    /* TRYAGAIN after ASK (the keys of a migrating slot split between two
     * nodes) goes back to the ASK target. */
    if (ek != REDTLS__ERR_TRYAGAIN)
        redtls__acl_ref(&o->ask, NULL);
    freeReplyObject(o->last);
    o->last = r;
    set_msg(o, REDTLS_OK, NULL);
    op_wait(acl, o, now);
}

/* redtls__acl_op_end for a reply that ends a whole command (not at its
 * node any more), inline when the record goes straight back to the
 * spares (op_recycle's case) with nothing else to drop. */
static inline void end_reply(redtls_async_cluster *acl, acl_op *o, redisReply *r)
{
    if (o->split || o->in_wait || o->fixed || o->ask || o->moved || o->msg || o->last || acl->freeing ||
        acl->npool >= ACL_OP_POOL_MAX || o->cap > KEEP_FRAME) {
        redtls__acl_op_end(acl, o, REDTLS_OK, r, NULL);
        return;
    }
    redtls__acl_live_unlink(acl, o);
    o->ended = 1;
    redtls_async_cluster_reply_cb cb = o->cb;
    void *ud = o->ud;
    o->wnext = acl->pool;
    acl->pool = o;
    acl->npool++;
    acl->n_live--;
    cb(acl, REDTLS_OK, r, ud);
}

static void node_reply(redtls_async *ac, redtls_status st, redisReply *r, void *ud)
{
    acl_op *o = ud;
    acl_node *n = ac->owner;
    if (!n) {
        freeReplyObject(r);
        /* The cluster handle is gone (freed from a callback while this
         * connection was ending a list of commands): its ops were ended. */
        free(o->frame);
        free(o->msg);
        freeReplyObject(o->last);
        free(o);
        return;
    }
    redtls_async_cluster *acl = n->acl;
    o->at_node = 0;
    if (o->ended && o->target)
        o->target->orphans--;
    redtls__acl_ref(&o->target, NULL);
    if (o->ended || acl->freeing) {
        freeReplyObject(r);
        if (o->ended)
            redtls__acl_op_put(acl, o);
        if (!acl->freeing)
            redtls__acl_node_settle(acl, n);
        return;
    }
    acl->depth++;
    int64_t outer = acl->pass_now;
    acl->pass_now = ac->now;
    if (st == REDTLS_OK && (r->type != REDIS_REPLY_ERROR || o->fixed))
        end_reply(acl, o, r); /* classify's first case, without the calls */
    else
        classify(acl, o, n, st, r, ac->now);
    acl->pass_now = outer;
    if (!acl->freeing) {
        redtls__acl_node_settle(acl, n);
        redtls__acl_arm(acl);
    }
    if (--acl->depth == 0 && acl->dead)
        free(acl);
}

/* ---- the blocking client's direct lane ---- */

acl_op *redtls__acl_op_framed(redtls_async_cluster *acl, unsigned flags, uint32_t slot, int readonly,
                              const char *frame, size_t len, int64_t now, redtls_async_cluster_reply_cb cb, void *ud)
{
    acl_op *o = redtls__acl_op_get(acl);
    if (!o)
        return NULL;
    if (redtls__buf_append(&o->frame, &o->len, &o->cap, frame, len) != REDTLS_OK) {
        redtls__acl_op_put(acl, o);
        return NULL;
    }
    o->flags = flags;
    o->slot = slot;
    o->readonly = readonly;
    o->cb = cb;
    o->ud = ud;
    o->deadline = redtls__deadline_from(now, acl->base.command_timeout_ms);
    o->retry_end = acl->base.command_timeout_ms ? o->deadline
                                                : now + (int64_t)(acl->outage_ms ? acl->outage_ms : 60000U);
    acl->n_live++;
    redtls__acl_live_push(acl, o);
    return o;
}

redtls_status redtls__acl_rehome(redtls_async_cluster *acl, acl_op *o, acl_node *n, size_t len)
{
    redtls_status st = redtls__async_owe(n->ac, len, o->deadline, node_reply, o);
    if (st != REDTLS_OK)
        return redtls__fail(acl->errmsg, st, "out of memory");
    o->state = ACL_OP_SENT;
    o->at_node = 1;
    redtls__acl_ref(&o->target, n);
    return REDTLS_OK;
}

void redtls__acl_adopt(redtls_async_cluster *acl, acl_op *o, acl_node *n, redtls_status st, redisReply *r,
                       int64_t now)
{
    acl->depth++;
    int64_t outer = acl->pass_now;
    acl->pass_now = now;
    o->state = ACL_OP_HELD;
    classify(acl, o, n, st, r, now);
    acl->pass_now = outer;
    acl->depth--;
}

/* ---- the timer's work ---- */

void redtls__acl_tick(redtls_async_cluster *acl, int64_t now)
{
    /* Deadlines grow along the live list (one timeout, counted from
     * issue): only its front can be due. */
    acl_op *o;
    while (!acl->freeing && (o = acl->live_head) != NULL && o->deadline <= now) {
        if (o->state == ACL_OP_WAITING) {
            op_end_waiting(acl, o, o->st != REDTLS_OK ? o->st : REDTLS_E_COMMAND_TIMEOUT,
                           "not sent within the command timeout");
        } else if (o->target && o->target->ac && !o->target->ac->up &&
                   redtls__async_cancel_queued(o->target->ac, o)) {
            o->at_node = 0;
            acl_node *n = o->target;
            redtls__acl_ref(&o->target, NULL);
            end_unsent(acl, o, n);
        } else {
            char msg[REDTLS__ERRMSG_MAX];
            snprintf(msg, sizeof msg,
                     "node %.200s: no reply within the command timeout (%u ms), so the command may or may not have "
                     "run (its reply, if it comes, is dropped)",
                     o->target ? o->target->name : "?", acl->base.command_timeout_ms);
            redtls__acl_op_end(acl, o, REDTLS_E_COMMAND_TIMEOUT, NULL, msg);
        }
    }
    if (acl->freeing || acl->retry_at > now)
        return;
    acl->retry_at = REDTLS__NO_DEADLINE;
    /* The ops waiting now, once each: those that wait again go to the
     * back, for the next pass. */
    size_t count = 0, again = 0;
    for (o = acl->wait_head; o; o = o->wnext)
        count++;
    while (count-- > 0 && !acl->freeing && (o = acl->wait_head) != NULL) {
        redtls__acl_wait_unlink(acl, o);
        o->state = ACL_OP_HELD;
        if (now >= o->retry_end) {
            op_end_waiting(acl, o, o->st != REDTLS_OK ? o->st : REDTLS_E_UNAVAILABLE,
                           "retries ended after the outage limit");
            continue;
        }
        redtls_status st = redtls__acl_op_send(acl, o, now);
        if (st != REDTLS_OK)
            redtls__acl_op_end(acl, o, st, NULL, acl->errmsg);
        else
            again += o->in_wait;
    }
    if (!again && !acl->freeing)
        redtls__backoff_reset(&acl->backoff);
}

void redtls__acl_map_installed(redtls_async_cluster *acl)
{
    if (acl->wait_head)
        acl->retry_at = redtls__acl_now(); /* the next tick sends them */
    if (acl->ps_head)
        redtls__acl_ps_map_installed(acl);
}

void redtls__acl_map_failed(redtls_async_cluster *acl, redtls_status st)
{
    if (!redtls__acl_hard_failure(st)) {
        /* They wait for the next refresh, and report this one's failure if
         * their time runs out first. */
        for (acl_op *o = acl->wait_head; o; o = o->wnext)
            if (!o->fixed)
                set_msg(o, st, acl->errmsg);
        return;
    }
    /* Waiting will not cure it (verification, credentials): the ops
     * waiting now end (those for an explicit node go on waiting). The wait
     * list is taken first, so callbacks that issue more do not meet them. */
    char msg[REDTLS__ERRMSG_MAX];
    memcpy(msg, acl->errmsg, sizeof msg);
    acl_op *list = acl->wait_head;
    acl->wait_head = acl->wait_tail = NULL;
    for (acl_op *o = list; o; o = o->wnext)
        o->in_wait = 0;
    while (list && !acl->freeing) {
        acl_op *o = list;
        list = o->wnext;
        o->wprev = o->wnext = NULL;
        if (o->fixed) {
            wait_push(acl, o);
            continue;
        }
        o->state = ACL_OP_HELD;
        redtls__acl_op_end(acl, o, st, NULL, msg);
    }
}

void redtls__acl_end_all(redtls_async_cluster *acl, redtls_status st, const char *msg)
{
    acl_op *o;
    while ((o = acl->live_head) != NULL)
        redtls__acl_op_end(acl, o, st, NULL, msg);
}

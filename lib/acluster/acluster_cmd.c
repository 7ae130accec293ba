/* The asynchronous cluster client's commands: framing (split by slot for
 * the multi-key commands that can be merged), routing, sending to a node,
 * classifying what the node's callback brings back, retries, deadlines,
 * and merging the parts of a split command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>

#include "acluster.h"
#include "format.h"
#include "redirect.h"
#include "sock.h"

#define INLINE_KEYS 16
/* Frame buffers kept with a spare record up to this size. */
#define KEEP_FRAME 256

/* ---- records ---- */

static acl_op *op_get(redtls_async_cluster *acl)
{
    acl_op *o = acl->pool;
    char *frame = NULL;
    size_t cap = 0;
    if (o) {
        acl->pool = o->wnext;
        acl->npool--;
        frame = o->frame;
        cap = o->cap;
    } else if (!(o = malloc(sizeof *o))) {
        return NULL;
    }
    memset(o, 0, sizeof *o);
    o->frame = frame;
    o->cap = cap;
    o->slot = ACL_NO_SLOT;
    o->deadline = o->retry_end = REDTLS__NO_DEADLINE;
    return o;
}

static void op_put(redtls_async_cluster *acl, acl_op *o)
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

static void live_push(redtls_async_cluster *acl, acl_op *o)
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

static void live_unlink(redtls_async_cluster *acl, acl_op *o)
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

static redisReply *new_reply(int type)
{
    redisReply *r = calloc(1, sizeof *r);
    if (r)
        r->type = type;
    return r;
}

redtls_status redtls__acl_merge(acl_split *sp, redisReply **out, char *err)
{
    *out = NULL;
    if (sp->st != REDTLS_OK) {
        size_t done = 0;
        for (size_t k = 0; k < sp->nparts; k++)
            done += sp->replies[k] != NULL;
        return redtls__fail(err, sp->st, "%zu of %zu parts completed (not atomic); a part failed: %.400s", done,
                            sp->nparts, sp->msg ? sp->msg : "");
    }
    for (size_t k = 0; k < sp->nparts; k++)
        if (sp->replies[k]->type == REDIS_REPLY_ERROR) {
            *out = sp->replies[k];
            sp->replies[k] = NULL;
            return REDTLS_OK;
        }
    if (sp->merge == REDTLS__MERGE_OK) {
        *out = sp->replies[0];
        sp->replies[0] = NULL;
        return REDTLS_OK;
    }
    if (sp->merge == REDTLS__MERGE_SUM) {
        long long sum = 0;
        for (size_t k = 0; k < sp->nparts; k++) {
            if (sp->replies[k]->type != REDIS_REPLY_INTEGER)
                goto shape;
            sum += sp->replies[k]->integer;
        }
        *out = sp->replies[0];
        sp->replies[0] = NULL;
        (*out)->integer = sum;
        return REDTLS_OK;
    }
    /* MGET: each part's values go back to their keys' places. */
    size_t off = 0;
    for (size_t k = 0; k < sp->nparts; k++) {
        const redisReply *r = sp->replies[k];
        size_t n = 0;
        for (size_t e = off; sp->map[e] != SIZE_MAX; e++)
            n++;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != n)
            goto shape;
        off += n + 1;
    }
    redisReply *m = new_reply(REDIS_REPLY_ARRAY);
    if (!m || !(m->element = calloc(sp->nkeys ? sp->nkeys : 1, sizeof(redisReply *)))) { // NOLINT(bugprone-sizeof-expression): an array of pointers
        free(m);
        return redtls__fail(err, REDTLS_E_NOMEM, "out of memory merging the parts");
    }
    m->elements = sp->nkeys;
    off = 0;
    for (size_t k = 0; k < sp->nparts; k++) {
        redisReply *r = sp->replies[k];
        for (size_t e = 0; e < r->elements; e++) {
            m->element[sp->map[off + e]] = r->element[e];
            r->element[e] = NULL;
        }
        off += r->elements + 1;
    }
    *out = m;
    return REDTLS_OK;
shape:
    return redtls__fail(err, REDTLS_E_PROTOCOL, "a part of a split command got a reply of an unexpected shape");
}

static void split_free(acl_split *sp)
{
    for (size_t k = 0; k < sp->nparts; k++)
        freeReplyObject(sp->replies[k]);
    free(sp->replies);
    free(sp->map);
    free(sp->msg);
    free(sp);
}

/* Gives an op's outcome (reply owned by it from here): to its callback,
 * or to its split, whose callback runs when the last part is in. The
 * record goes once the node owes nothing for it. */
static void wait_unlink(redtls_async_cluster *acl, acl_op *o)
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

static void op_end(redtls_async_cluster *acl, acl_op *o, redtls_status st, redisReply *reply, const char *msg)
{
    live_unlink(acl, o);
    wait_unlink(acl, o);
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
        op_put(acl, o);
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
        split_free(sp);
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
        op_end(acl, o, REDTLS_OK, r, NULL);
        return;
    }
    char msg[REDTLS__ERRMSG_MAX];
    snprintf(msg, sizeof msg, "%s; last failure: %.400s", what,
             o->msg ? o->msg : o->st != REDTLS_OK ? redtls_strerror(o->st) : "none");
    op_end(acl, o, st, NULL, msg);
}

/* ---- waiting ---- */

static void op_wait(redtls_async_cluster *acl, acl_op *o, int64_t now)
{
    if (now >= o->retry_end) {
        op_end_waiting(acl, o, o->st != REDTLS_OK ? o->st : REDTLS_E_UNAVAILABLE,
                       "retries ended after the outage limit");
        return;
    }
    o->state = ACL_OP_WAITING;
    o->in_wait = 1;
    o->wnext = NULL;
    o->wprev = acl->wait_tail;
    if (acl->wait_tail)
        acl->wait_tail->wnext = o;
    else
        acl->wait_head = o;
    acl->wait_tail = o;
    if (acl->retry_at == REDTLS__NO_DEADLINE)
        acl->retry_at = now + redtls__backoff_next(&acl->backoff);
}

/* The blocking client's batch: in the wait list, no retry time set. */
static void hold_op(redtls_async_cluster *acl, acl_op *o)
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

void redtls__acl_release(redtls_async_cluster *acl)
{
    int64_t now = redtls__acl_now();
    for (acl_op *o = acl->live_head; o; o = o->next) {
        o->deadline = redtls__deadline_from(now, acl->base.command_timeout_ms);
        o->retry_end = acl->base.command_timeout_ms ? o->deadline
                                                    : now + (int64_t)(acl->outage_ms ? acl->outage_ms : 60000u);
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

static void discard_cluster(redtls_async_cluster *acl, redtls_status st, redisReply *r, void *ud)
{
    (void)acl;
    (void)st;
    (void)ud;
    freeReplyObject(r);
}

static const char asking_cmd[] = "*1\r\n$6\r\nASKING\r\n";

/* Routes an op and hands it to its node, or puts it in the wait list.
 * A failure that ends it at once (an explicit node that is down, out of
 * memory) is returned (acl->errmsg says why) for the caller to report:
 * from an issuing call as its status, elsewhere through the callback. */
static redtls_status op_send(redtls_async_cluster *acl, acl_op *o, int64_t now)
{
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
        return REDTLS_OK;
    }
    if (n->ac && redtls__async_down(n->ac, now)) {
        /* Its connection failed and waits for its backoff: not sent. An
         * explicit node reports why; a redirection target or a replica
         * gives way to the slot's master; a master waits for a refresh (a
         * failover) or its next attempt. */
        redtls_status cst = n->ac->c->last_status != REDTLS_OK ? n->ac->c->last_status : REDTLS_E_UNAVAILABLE;
        redtls__fail(acl->errmsg, cst, "node %.200s: %.290s", n->name, redtls__conn_cause(n->ac->c));
        if (o->fixed)
            return cst;
        acl->want_refresh = 1;
        set_msg(o, cst, acl->errmsg);
        acl_node *m = o->slot != ACL_NO_SLOT && acl->slot_node[o->slot] != ACL_NO_SLOT
                          ? acl->nodes[acl->slot_node[o->slot]]
                          : NULL;
        if (!m || m == n || (m->ac && redtls__async_down(m->ac, now))) {
            op_wait(acl, o, now);
            return REDTLS_OK;
        }
        o->to_master = 1;
        redtls__acl_ref(&o->ask, NULL);
        n = m;
    }
    redtls_status st = redtls__acl_node_conn(acl, n);
    /* The node's record carries the op's own deadline, so a command still
     * queued there when that passes is never written. */
    if (st == REDTLS_OK)
        st = redtls__async_issue_raw(n->ac, o->ask ? asking_cmd : NULL, sizeof asking_cmd - 1, o->frame, o->len,
                                     o->deadline, node_reply, o);
    if (st != REDTLS_OK) {
        if (n->ac)
            redtls__fail(acl->errmsg, st, "node %.200s: %.290s", n->name, redtls_async_errmsg(n->ac));
        return st;
    }
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
    op_end(acl, o, st, NULL, msg);
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
        op_end(acl, o, st, NULL, msg);
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
        op_end(acl, o, st, NULL, msg);
        return;
    }
    /* The connection could not be made: the command was not written. */
    int elsewhere = o->ask || o->slot == ACL_NO_SLOT ||
                    (o->slot != ACL_NO_SLOT && acl->slot_node[o->slot] != ACL_NO_SLOT &&
                     acl->nodes[acl->slot_node[o->slot]] != n);
    if (o->fixed || (redtls__acl_hard_failure(st) && !elsewhere)) {
        op_end(acl, o, st, NULL, msg);
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
        op_end(acl, o, REDTLS_E_CLUSTER_REDIRECTS, NULL, msg);
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
    redtls_status st = op_send(acl, o, now);
    if (st != REDTLS_OK)
        op_end(acl, o, st, NULL, acl->errmsg);
}

static void classify(redtls_async_cluster *acl, acl_op *o, acl_node *n, redtls_status st, redisReply *r, int64_t now)
{
    if (st != REDTLS_OK) {
        freeReplyObject(r);
        classify_failure(acl, o, n, st, now);
        return;
    }
    if (r->type != REDIS_REPLY_ERROR || o->fixed) {
        op_end(acl, o, REDTLS_OK, r, NULL);
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
        redtls_status sst = op_send(acl, o, now);
        if (sst != REDTLS_OK)
            op_end(acl, o, sst, NULL, acl->errmsg);
        return;
    }
    /* Errors that say the command did not run: retried after a delay. */
    redtls__error_kind ek = redtls__error_classify(r->str, r->len);
    if (ek == REDTLS__ERR_FINAL) {
        op_end(acl, o, REDTLS_OK, r, NULL);
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
            op_put(acl, o);
        if (!acl->freeing)
            redtls__acl_node_settle(acl, n);
        return;
    }
    acl->depth++;
    int64_t outer = acl->pass_now;
    acl->pass_now = ac->now;
    classify(acl, o, n, st, r, ac->now);
    acl->pass_now = outer;
    if (!acl->freeing) {
        redtls__acl_node_settle(acl, n);
        redtls__acl_arm(acl);
    }
    if (--acl->depth == 0 && acl->dead)
        free(acl);
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
            op_end(acl, o, REDTLS_E_COMMAND_TIMEOUT, NULL, msg);
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
        wait_unlink(acl, o);
        o->state = ACL_OP_HELD;
        if (now >= o->retry_end) {
            op_end_waiting(acl, o, o->st != REDTLS_OK ? o->st : REDTLS_E_UNAVAILABLE,
                           "retries ended after the outage limit");
            continue;
        }
        redtls_status st = op_send(acl, o, now);
        if (st != REDTLS_OK)
            op_end(acl, o, st, NULL, acl->errmsg);
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
            o->in_wait = 1;
            o->wprev = acl->wait_tail;
            if (acl->wait_tail)
                acl->wait_tail->wnext = o;
            else
                acl->wait_head = o;
            acl->wait_tail = o;
            continue;
        }
        o->state = ACL_OP_HELD;
        op_end(acl, o, st, NULL, msg);
    }
}

void redtls__acl_end_all(redtls_async_cluster *acl, redtls_status st, const char *msg)
{
    acl_op *o;
    while ((o = acl->live_head) != NULL)
        op_end(acl, o, st, NULL, msg);
}

/* ---- issuing ---- */

typedef struct keyslot {
    uint32_t slot;
    size_t idx;
} keyslot;

static int by_slot(const void *a, const void *b)
{
    const keyslot *x = a, *y = b;
    if (x->slot != y->slot)
        return x->slot < y->slot ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static size_t arglen(const char *const *argv, const size_t *lens, size_t i)
{
    return lens ? lens[i] : strlen(argv[i]);
}

static acl_op *new_op(redtls_async_cluster *acl, unsigned flags, int64_t now)
{
    acl_op *o = op_get(acl);
    if (!o)
        return NULL;
    o->flags = flags;
    o->deadline = redtls__deadline_from(now, acl->base.command_timeout_ms);
    o->retry_end = acl->base.command_timeout_ms ? o->deadline
                                                : now + (int64_t)(acl->outage_ms ? acl->outage_ms : 60000u);
    return o;
}

/* Builds the parts of a multi-key command split by slot. */
static redtls_status build_split(redtls_async_cluster *acl, acl_split *sp, acl_op **parts, unsigned flags,
                                 int readonly, const char **argv, const size_t *lens, const size_t *pos,
                                 size_t nkeys, int64_t now)
{
    int step = sp->merge == REDTLS__MERGE_OK ? 2 : 1;
    keyslot *ks = malloc(nkeys * sizeof *ks);
    const char **sub = malloc((1 + (size_t)step * nkeys) * sizeof *sub);
    size_t *sublen = malloc((1 + (size_t)step * nkeys) * sizeof *sublen);
    /* MGET: key positions part by part, each part's run ended by SIZE_MAX. */
    sp->map = sp->merge == REDTLS__MERGE_MGET ? malloc(2 * nkeys * sizeof *sp->map) : NULL;
    redtls_status st = REDTLS_OK;
    if (!ks || !sub || !sublen || (sp->merge == REDTLS__MERGE_MGET && !sp->map)) {
        st = REDTLS_E_NOMEM;
        goto out;
    }
    for (size_t k = 0; k < nkeys; k++) {
        ks[k].slot = redtls_cluster_key_slot(argv[pos[k]], arglen(argv, lens, pos[k]));
        ks[k].idx = k;
    }
    qsort(ks, nkeys, sizeof *ks, by_slot);
    sub[0] = argv[0];
    sublen[0] = arglen(argv, lens, 0);
    size_t np = 0, m = 0;
    for (size_t a = 0; a < nkeys;) {
        size_t b = a;
        int argc = 1;
        acl_op *o = parts[np] = new_op(acl, flags, now);
        if (!o) {
            st = REDTLS_E_NOMEM;
            goto out;
        }
        o->split = sp;
        o->part = np++;
        o->readonly = readonly;
        o->slot = ks[a].slot;
        for (; b < nkeys && ks[b].slot == ks[a].slot; b++) {
            size_t p = pos[ks[b].idx];
            for (int s = 0; s < step; s++) {
                sub[argc] = argv[p + (size_t)s];
                sublen[argc++] = arglen(argv, lens, p + (size_t)s);
            }
            if (sp->map)
                sp->map[m++] = ks[b].idx;
        }
        if (sp->map)
            sp->map[m++] = SIZE_MAX;
        if ((st = redtls__format_argv(&o->frame, &o->len, &o->cap, argc, sub, sublen)) != REDTLS_OK)
            goto out;
        a = b;
    }
    sp->nparts = sp->left = np;
out:
    free(ks);
    free(sub);
    free(sublen);
    return st;
}

redtls_status redtls__acl_issue(redtls_async_cluster *acl, unsigned flags, uint32_t slot, acl_node *node, int argc,
                                const char **argv, const size_t *lens, char *frame, size_t flen,
                                redtls_async_cluster_reply_cb cb, void *ud)
{
    (void)frame;
    (void)flen;
    if (argc <= 0 || !argv)
        return redtls__fail(acl->errmsg, REDTLS_E_INVALID, "a command needs at least one argument");
    if (!cb)
        cb = discard_cluster;
    if (acl->n_live >= acl->max_pending)
        return redtls__fail(acl->errmsg, REDTLS_E_LIMIT,
                            "%zu commands are queued or in flight, the limit (redtls_async_cluster_set_max_pending): "
                            "wait for replies before issuing more",
                            acl->n_live);
    size_t inline_pos[INLINE_KEYS];
    size_t *pos = inline_pos;
    unsigned kf = 0;
    size_t nkeys = 0;
    if (!node && slot == ACL_NO_SLOT) {
        nkeys = redtls__command_keys_cached(&acl->cmd_cache, argc, argv, lens, pos, INLINE_KEYS, &kf);
        if (nkeys > INLINE_KEYS) {
            pos = malloc(nkeys * sizeof *pos);
            if (!pos)
                return redtls__fail(acl->errmsg, REDTLS_E_NOMEM, "out of memory");
            nkeys = redtls__command_keys_cached(&acl->cmd_cache, argc, argv, lens, pos, nkeys, &kf);
        }
    }
    /* Of the keyed commands only WATCH, SSUBSCRIBE and SUNSUBSCRIBE (5, 10
     * and 12 letters) hold a connection's state. */
    size_t len0 = arglen(argv, lens, 0);
    int keyed = (kf & REDTLS__CMD_KNOWN) && !(kf & REDTLS__CMD_NOKEYS) && !(kf & REDTLS__CMD_MALFORMED);
    const char *state = NULL;
    if (!keyed || len0 == 5 || len0 == 10 || len0 == 12)
        state = redtls__cluster_state_command(argv[0], len0);
    redtls_status st = REDTLS_OK;
    if (state) {
        st = redtls__fail(acl->errmsg, REDTLS_E_INVALID,
                          "%s changes the state of a connection, which a cluster handle shares between commands; "
                          "use a redtls_async to the node instead",
                          state);
        goto out;
    }
    /* From a node's callback, its pass's time will do (as for the
     * single-connection API). */
    int64_t now = acl->pass_now ? acl->pass_now : redtls__acl_now();
    int merge = REDTLS__MERGE_NONE;
    if (!node && slot == ACL_NO_SLOT) {
        if (!(kf & REDTLS__CMD_KNOWN) && argc > 1) {
            slot = redtls_cluster_key_slot(argv[1], arglen(argv, lens, 1)); /* a module's command */
        } else if (nkeys > 0) {
            slot = redtls_cluster_key_slot(argv[pos[0]], arglen(argv, lens, pos[0]));
            int mk = (flags & REDTLS_CLUSTER_STRICT) || nkeys < 2 ? REDTLS__MERGE_NONE
                                                                  : redtls__cluster_split_kind(argv[0], len0);
            if (mk == REDTLS__MERGE_OK && argc % 2 == 0)
                mk = REDTLS__MERGE_NONE; /* a key without a value: the server says so */
            size_t k = 1;
            if (mk != REDTLS__MERGE_NONE)
                for (; k < nkeys; k++)
                    if (redtls_cluster_key_slot(argv[pos[k]], arglen(argv, lens, pos[k])) != slot)
                        break;
            if (k < nkeys)
                merge = mk;
        }
    }
    int readonly = (kf & REDTLS__CMD_READONLY) != 0;
    if (merge != REDTLS__MERGE_NONE) {
        acl_split *sp = calloc(1, sizeof *sp);
        acl_op **parts = sp ? calloc(nkeys, sizeof *parts) : NULL;
        if (!sp || !parts || !(sp->replies = calloc(nkeys, sizeof *sp->replies))) {
            free(parts);
            if (sp)
                split_free(sp);
            st = redtls__fail(acl->errmsg, REDTLS_E_NOMEM, "out of memory");
            goto out;
        }
        sp->cb = cb;
        sp->ud = ud;
        sp->merge = merge;
        sp->nkeys = nkeys;
        st = build_split(acl, sp, parts, flags, readonly, argv, lens, pos, nkeys, now);
        if (st != REDTLS_OK) {
            for (size_t k = 0; k < nkeys && parts[k]; k++)
                op_put(acl, parts[k]);
            free(parts);
            split_free(sp);
            st = redtls__fail(acl->errmsg, st, "out of memory");
            goto out;
        }
        acl->stats[REDTLS_CLUSTER_STAT_SPLITS]++;
        acl->n_live++;
        size_t np = sp->nparts;
        for (size_t k = 0; k < np; k++)
            live_push(acl, parts[k]);
        if (acl->hold) {
            for (size_t k = 0; k < np; k++)
                hold_op(acl, parts[k]);
            free(parts);
            goto out;
        }
        /* No node callback runs before this call returns, so only a part
         * failing here can end one: the first one ends the whole command
         * at once (nothing was sent), a later one ends its part. */
        st = op_send(acl, parts[0], now);
        if (st != REDTLS_OK) {
            for (size_t k = 0; k < np; k++) {
                live_unlink(acl, parts[k]);
                wait_unlink(acl, parts[k]);
                op_put(acl, parts[k]);
            }
            acl->n_live--;
            split_free(sp);
        }
        for (size_t k = 1; k < np && st == REDTLS_OK; k++) {
            redtls_status pst = op_send(acl, parts[k], now);
            if (pst != REDTLS_OK)
                op_end(acl, parts[k], pst, NULL, acl->errmsg);
        }
        free(parts);
        goto out;
    }
    acl_op *o = new_op(acl, flags, now);
    if (!o) {
        st = redtls__fail(acl->errmsg, REDTLS_E_NOMEM, "out of memory");
        goto out;
    }
    o->cb = cb;
    o->ud = ud;
    o->slot = slot;
    o->readonly = readonly;
    if (node)
        redtls__acl_ref(&o->fixed, node);
    if ((st = redtls__format_argv(&o->frame, &o->len, &o->cap, argc, argv, lens)) != REDTLS_OK) {
        op_put(acl, o);
        st = redtls__fail(acl->errmsg, st, "out of memory formatting the command");
        goto out;
    }
    acl->n_live++;
    live_push(acl, o);
    if (acl->hold) {
        hold_op(acl, o);
        goto out;
    }
    if ((st = op_send(acl, o, now)) != REDTLS_OK) {
        live_unlink(acl, o);
        wait_unlink(acl, o);
        op_put(acl, o);
        acl->n_live--;
    }
out:
    if (pos != inline_pos)
        free(pos);
    return st;
}

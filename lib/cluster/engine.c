/* Running a cluster batch (see client.h for the shape of it). */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sys/ioctl.h>

#include "client.h"
#include "redirect.h"

static void op_fail(redtls__cl_op *o, redtls_status st, const char *msg)
{
    o->state = OP_DONE;
    o->st = st;
    freeReplyObject(o->reply);
    o->reply = NULL;
    free(o->msg);
    o->msg = strdup(msg);
}

static void op_retry(redtls_cluster *cl, redtls__cl_op *o, int wait, redtls_status st, const char *msg)
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
    size_t start = (size_t)(redtls__cluster_rand(cl) % r->nreplicas);
    for (size_t j = 0; j < r->nreplicas; j++) {
        size_t n = cl->topo_node[r->replicas[(start + j) % r->nreplicas]];
        if (!redtls__cluster_backing_off(&cl->nodes[n]))
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
        if (!redtls__cluster_backing_off(&cl->nodes[i])) {
            cl->rr = i; /* stay on a working node: its connection is warm */
            return i;
        }
        if (fallback == NO_NODE)
            fallback = i;
    }
    return fallback;
}

static size_t route(redtls_cluster *cl, redtls__cl_op *o)
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
static void classify(redtls_cluster *cl, redtls__cl_op *o, redtls_conn *c, redtls_status st, redisReply *r)
{
    redtls__cl_node *n = &cl->nodes[o->target];
    if (st != REDTLS_OK) {
        freeReplyObject(r);
        cl->stats[REDTLS_CLUSTER_STAT_NODE_FAILURES]++;
        cl->want_refresh = 1;
        if (st == REDTLS_E_OUTCOME_UNKNOWN && (o->flags & REDTLS_CMD_IDEMPOTENT) && !o->resent) {
            o->resent = 1;
            o->ask = NO_NODE; /* back to the slot's owner, which will say again */
            op_retry(cl, o, WAIT_BACKOFF, st, redtls__conn_msg(c));
            return;
        }
        char msg[REDTLS__ERRMSG_MAX];
        snprintf(msg, sizeof msg, "node %.200s: %.290s", n->name, redtls__conn_msg(c));
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
            to = redtls__cluster_node_for(cl, rd.host, rd.port, 1, &added);
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
    redtls__error_kind ek = redtls__error_classify(r->str, r->len);
    if (ek == REDTLS__ERR_TRYAGAIN || ek == REDTLS__ERR_CLUSTERDOWN) {
        cl->stats[REDTLS_CLUSTER_STAT_TRYAGAIN]++;
        retry = 1;
    } else if (ek == REDTLS__ERR_STALE) {
        /* A node mid-restart, a replica without its master, a write that
         * reached a demoted master: the map is probably stale. */
        cl->want_refresh = 1;
        o->to_master = 1;
        retry = 1;
    } else if (error_is(r, "NOAUTH") && !o->noauth && redtls__conn_has_credentials(c)) {
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
    if (!retry || ek != REDTLS__ERR_TRYAGAIN)
        o->ask = NO_NODE;
}

static const char asking_cmd[] = "*1\r\n$6\r\nASKING\r\n";

/* Routes the unfinished ops (redirects_only: those a redirection sent
 * on within the round) and writes them, node by node in op order. */
static void dispatch(redtls_cluster *cl, int64_t deadline, int redirects_only)
{
    cl->redirected = 0;
    for (size_t i = 0; i < cl->nops; i++) {
        redtls__cl_op *o = &cl->ops[i];
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
        redtls__cl_op *first = &cl->ops[i];
        if (first->state != OP_TODO || first->target == NO_NODE || first->wait != WAIT_NONE)
            continue;
        size_t t = first->target;
        redtls_conn *c = NULL;
        redtls_status st = redtls__cluster_node_conn(cl, t, &c);
        if (st == REDTLS_OK && (!c || (cl->nodes[t].inflight == 0 ? redtls__conn_owed(c) > 0 : !redtls__conn_up(c)))) {
            /* Replies owed outside this batch, or a broken connection whose
             * lost commands are not reported yet: nothing may go on it.
             * (With ops of this batch in flight, pending also counts their
             * ASKINGs.) */
            redtls__fail(cl->errmsg, REDTLS_E_STATE, "node %s has replies pending", cl->nodes[t].name);
            st = REDTLS_E_STATE;
        }
        if (st == REDTLS_OK && c) {
            st = redtls__conn_ensure_once(c, deadline);
            if (st == REDTLS_OK)
                cl->preferred = redtls__conn_preferred(c);
            else
                redtls__fail(cl->errmsg, st, "node %s: %s", cl->nodes[t].name, redtls__conn_msg(c));
        }
        if (st != REDTLS_OK && c)
            st = redtls__cluster_connect_status(c, st);
        for (size_t j = i; j < cl->nops; j++) {
            redtls__cl_op *o = &cl->ops[j];
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
            if (st != REDTLS_OK && (redtls__cluster_hard_failure(st) || o->fixed != NO_NODE)) {
                /* Not sent; no point waiting (or no other node to go to). */
                op_fail(o, st, cl->errmsg);
                continue;
            }
            if (st != REDTLS_OK) {
                /* Nothing was written: safe to retry, elsewhere if the map
                 * changes; an importing node that is gone is replaced by the
                 * slot's owner. When only time ran out (no attempt made), an
                 * earlier cause says more. */
                if (c && redtls__conn_no_time(c) && o->st != REDTLS_OK)
                    op_retry(cl, o, WAIT_BACKOFF, o->st, NULL);
                else
                    op_retry(cl, o, WAIT_BACKOFF, st, cl->errmsg);
                o->to_master = 1;
                o->ask = NO_NODE;
                continue;
            }
            o->asking = o->ask != NO_NODE;
            redtls__conn_mark mark = redtls__conn_mark_queue(c);
            redtls_status ast = REDTLS_OK;
            if (o->asking)
                ast = redtls__conn_append_raw(c, asking_cmd, sizeof asking_cmd - 1);
            if (ast == REDTLS_OK)
                ast = redtls__conn_append_raw(c, cl->arena + o->off, o->len);
            if (ast != REDTLS_OK) {
                /* Nothing of this op may stay queued (an ASKING alone would
                 * answer for the next command). */
                redtls__conn_rewind_queue(c, mark);
                o->asking = 0;
                op_fail(o, ast, "out of memory");
                continue;
            }
            o->state = OP_SENT;
            redtls__cl_node *n = &cl->nodes[t];
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
        } else if (redtls__conn_has_queued(c)) {
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
    if (!c)
        return; /* ops are written on a connection, so a node owing replies has one */
    while (cl->nodes[t].inflight > 0) {
        redtls__cl_op *o = &cl->ops[cl->nodes[t].qhead];
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
            /* The command behind it shares its fate, with the ASKING's
             * cause (its own read only says "lost with an earlier
             * command"). */
            char cause[REDTLS__ERRMSG_MAX];
            memcpy(cause, redtls__conn_msg(c), sizeof cause);
            (void)redtls__conn_read_now(c, deadline, budget, &r);
            freeReplyObject(r);
            r = NULL;
            memcpy(redtls__conn_msg(c), cause, sizeof cause);
        }
        redtls__cl_node *n = &cl->nodes[t];
        n->qhead = o->qnext;
        if (--n->inflight == 0)
            n->qtail = NO_OP;
        classify(cl, o, c, st, r); /* may move cl->nodes */
    }
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
    redtls__cl_node *n = &cl->nodes[t];
    char msg[REDTLS__ERRMSG_MAX];
    snprintf(msg, sizeof msg, "node %.200s: %.240s, so the command may or may not have run", n->name, why);
    for (size_t k = n->qhead; k != NO_OP; k = cl->ops[k].qnext) {
        cl->ops[k].asking = 0;
        op_fail(&cl->ops[k], st, msg);
    }
    n->qhead = n->qtail = NO_OP;
    n->inflight = 0;
    if (n->conn) {
        snprintf(redtls__conn_msg(n->conn), REDTLS__ERRMSG_MAX, "%s", why);
        redtls__conn_abandon(n->conn, st);
    }
    cl->stats[REDTLS_CLUSTER_STAT_NODE_FAILURES]++;
    cl->want_refresh = 1;
}

/* Waits on every node that owes replies at once, taking each node's
 * replies as they arrive and sending redirected ops on at once, until
 * nothing is owed or the deadline passes. */
static void await_replies(redtls_cluster *cl, int64_t deadline)
{
    for (;;) {
        if (cl->redirected) {
            /* Once time is up, a redirected op is not written (it would
             * only time out): out_of_time() reports it as not sent. */
            if (deadline != REDTLS__NO_DEADLINE && redtls__now_ms() >= deadline)
                cl->redirected = 0;
            else
                dispatch(cl, deadline, 1);
        }
        size_t np = 0;
        int broken = 0;
        for (size_t i = 0; i < cl->nnodes; i++) {
            redtls__cl_node *n = &cl->nodes[i];
            if (n->inflight == 0)
                continue;
            struct pollfd *pv = redtls__cluster_grow(cl->pfd, &cl->cappfd, np + 1, sizeof *pv);
            size_t *nv = pv ? redtls__cluster_grow(cl->pfd_node, &cl->cappfd_node, np + 1, sizeof *nv) : NULL;
            if (pv)
                cl->pfd = pv;
            if (nv)
                cl->pfd_node = nv;
            if (!pv || !nv) {
                broken = 1;
                fail_node(cl, i, REDTLS_E_NOMEM, "out of memory waiting for the replies");
                continue;
            }
            int fd = n->conn ? redtls__conn_fd(n->conn) : -1;
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
        int timed = deadline != REDTLS__NO_DEADLINE;
        int64_t left = timed ? deadline - redtls__now_ms() : 0;
        int expired = timed && left <= 0;
        int wait_ms = expired || broken || cl->redirected ? 0 : !timed ? -1 : left > INT_MAX ? INT_MAX : (int)left;
        int rc = poll(cl->pfd, (nfds_t)np, wait_ms);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0) {
            /* poll itself failed (no memory for it): waiting is not
             * possible, so every node still owing replies fails. */
            char why[96];
            snprintf(why, sizeof why, "waiting for the reply failed (poll: %s)", strerror(errno));
            for (size_t k = 0; k < np; k++)
                if (cl->nodes[cl->pfd_node[k]].inflight > 0)
                    fail_node(cl, cl->pfd_node[k], REDTLS_E_IO, why);
            continue;
        }
        /* Nothing ready: perhaps time is up. (With sockets ready, the next
         * pass looks at the clock.) */
        if (rc == 0 && !expired && timed && redtls__now_ms() >= deadline)
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
static void merge_result(redtls_cluster *cl, redtls__cl_ucmd *u)
{
    redtls__cl_op *ops = &cl->ops[u->first];
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
        redtls__cl_op *o = &cl->ops[i];
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
        redtls__cl_op *o = &cl->ops[i];
        if (o->state != OP_TODO || o->fixed != NO_NODE)
            continue;
        if (redtls__cluster_hard_failure(st))
            op_fail(o, st, cl->errmsg);
        else if ((cl->refresh_spent || st == REDTLS_E_COMMAND_TIMEOUT) && o->st != REDTLS_OK)
            op_retry(cl, o, WAIT_BACKOFF, o->st, NULL); /* keep the earlier cause */
        else
            op_retry(cl, o, WAIT_BACKOFF, st, cl->errmsg);
    }
}

redtls_status redtls__cluster_run_batch(redtls_cluster *cl)
{
    cl->ran = 1;
    int64_t deadline = redtls__deadline_after(cl->base.command_timeout_ms);
    /* No command timeout: retries still end, after the configured outage
     * limit or a minute. */
    int64_t retry_deadline = deadline != REDTLS__NO_DEADLINE ? deadline
                             : redtls__deadline_after(cl->outage_ms ? cl->outage_ms : 60000);
    redtls__backoff_reset(&cl->backoff);
    for (;;) {
        redtls_status st = redtls__cluster_maybe_refresh(cl, refresh_deadline(retry_deadline));
        if (st != REDTLS_OK && !cl->have_map)
            no_map(cl, st);
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
redtls_status redtls__cluster_take(redtls_cluster *cl, redisReply **reply)
{
    redtls__cl_ucmd *u = &cl->ucmds[cl->next_out++];
    *reply = u->reply;
    u->reply = NULL;
    redtls_status st = u->st;
    if (st != REDTLS_OK)
        redtls__fail(cl->errmsg, st, "%s", u->msg ? u->msg : redtls_strerror(st));
    free(u->msg);
    u->msg = NULL;
    if (cl->next_out == cl->nucmds)
        redtls__cluster_batch_reset(cl);
    return st;
}

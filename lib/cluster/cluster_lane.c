/* The blocking cluster client's direct lane (see cluster_internal.h).
 *
 * A batch opens on the lane when the engine has nothing of its own under
 * way (a map, no op live or waiting, no refresh due) and replicas are not
 * read. Each command of the lane's kind (its keys in one slot, known to the
 * command table, not one that holds a connection's state) is framed at once
 * into a buffer of its slot's master. When the batch runs, every master it
 * names must be connected and idle, as the engine's own connection would
 * check before a write (the idle check, no PING, AUTH or re-AUTH due);
 * otherwise the whole batch goes to the engine, unsent. Then each master's
 * bytes go out in one write, and the replies are read as they are asked
 * for, like a single connection's pipeline: each redtls_cluster_get_reply
 * reads its command's master until that reply is in, and while it waits,
 * the other masters' replies are read as they come (so a redirection among
 * them is followed at once). What has come anywhere by the deadline is
 * delivered.
 *
 * The lane ends by itself only what the engine would end the same way at
 * once: a reply that is not an error, an error that is the command's own
 * outcome, and the commands still owed at the batch's deadline (the
 * connections owing them are closed, as the engine closes a node's whose
 * replies would come late). Everything else becomes an op in the engine
 * with the status or reply the node gave, and the engine's rules decide
 * (redtls__acl_adopt): a redirection, TRYAGAIN and the like, NOAUTH, a
 * reply that broke a limit, a connection lost with commands written (may
 * have run; resent once when idempotent). From the first such op on, the
 * engine runs the rest of the batch: the replies still owed become the
 * node connections' (hand_over), so the lane never shares a connection
 * with the engine. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cluster_internal.h"
#include "format.h"
#include "redirect.h"
#include "slot.h"

#define LANE_MAX_KEYS 8

/* ---- appending ---- */

int redtls__cl_lane_open(const redtls_cluster *cl, int64_t now)
{
    const redtls_async_cluster *acl = cl->acl;
    return acl->have_map && !acl->live_head && !acl->wait_head && !acl->refreshing && !acl->read_replicas &&
           !acl->freeing && !acl->held && redtls__acl_refresh_due(acl) > now;
}

static size_t arg_len(const char *const *argv, const size_t *lens, size_t i)
{
    return lens ? lens[i] : strlen(argv[i]);
}

/* The batch's entry for master m (its index), added when new (CL_NONE:
 * out of memory). */
static uint32_t dnode_for(redtls_cluster *cl, uint32_t m)
{
    if (m >= cl->dn_of_cap) {
        size_t cap = (size_t)m + 8;
        uint32_t *v = realloc(cl->dn_of, cap * sizeof *v);
        if (!v)
            return CL_NONE;
        for (size_t j = cl->dn_of_cap; j < cap; j++)
            v[j] = CL_NONE;
        cl->dn_of = v;
        cl->dn_of_cap = cap;
    }
    uint32_t k = cl->dn_of[m];
    if (k < cl->ndn && cl->dn[k].m == m)
        return k;
    if (cl->ndn == cl->capdn) {
        size_t cap = cl->capdn ? 2 * cl->capdn : 4;
        cl_dnode *v = realloc(cl->dn, cap * sizeof *v);
        if (!v)
            return CL_NONE;
        memset(v + cl->capdn, 0, (cap - cl->capdn) * sizeof *v);
        cl->dn = v;
        cl->capdn = cap;
    }
    k = (uint32_t)cl->ndn++;
    cl->dn_of[m] = k;
    cl_dnode *d = &cl->dn[k];
    d->m = m;
    d->flen = 0;
    d->sent = NULL;
    d->head = d->tail = d->next = CL_NONE;
    d->n = d->owed = 0;
    d->want = d->fresh = 0;
    return k;
}

int redtls__cl_lane_add_slow(redtls_cluster *cl, unsigned flags, int argc, const char **argv, const size_t *lens,
                             redtls_status *st)
{
    redtls_async_cluster *acl = cl->acl;
    *st = REDTLS_OK;
    if (argc <= 0 || !argv || cl->nres >= acl->max_pending || cl->nres >= CL_NONE)
        return 0;
    unsigned kf = 0;
    uint32_t slot;
    if (redtls__command_one_key(&acl->cmd_cache, argc, argv, lens, &kf)) {
        slot = redtls__key_slot(argv[1], lens[1]);
    } else {
        size_t pos[LANE_MAX_KEYS];
        size_t nk = redtls__command_keys_cached(&acl->cmd_cache, argc, argv, lens, pos, LANE_MAX_KEYS, &kf);
        if (nk == 0 || nk > LANE_MAX_KEYS || !(kf & REDTLS__CMD_KNOWN) || (kf & REDTLS__CMD_NOKEYS) ||
            (kf & REDTLS__CMD_MALFORMED))
            return 0;
        slot = redtls__key_slot(argv[pos[0]], arg_len(argv, lens, pos[0]));
        for (size_t k = 1; k < nk; k++)
            if (redtls__key_slot(argv[pos[k]], arg_len(argv, lens, pos[k])) != slot)
                return 0;
    }
    return redtls__cl_lane_add_to(cl, flags, kf, slot, argc, argv, lens, st);
}

int redtls__cl_lane_add_to(redtls_cluster *cl, unsigned flags, unsigned kf, uint32_t slot, int argc,
                           const char **argv, const size_t *lens, redtls_status *st)
{
    redtls_async_cluster *acl = cl->acl;
    *st = REDTLS_OK;
    /* Of the keyed commands only WATCH, SSUBSCRIBE and SUNSUBSCRIBE (5, 10
     * and 12 letters) hold a connection's state: the engine refuses them. */
    size_t len0 = arg_len(argv, lens, 0);
    if ((len0 == 5 || len0 == 10 || len0 == 12) && redtls__cluster_state_command(argv[0], len0))
        return 0;
    uint32_t m = acl->slot_node[slot];
    if (m == ACL_NO_SLOT)
        return 0;
    uint32_t k = dnode_for(cl, m);
    if (k == CL_NONE) {
        *st = redtls__fail(cl->errmsg, REDTLS_E_NOMEM, "out of memory");
        return 1;
    }
    *st = redtls__cl_lane_put(cl, k, flags, kf, slot, argc, argv, lens);
    return 1;
}

/* ---- handing over to the engine ---- */

static void fail_entry(redtls_cluster *cl, uint32_t i, redtls_status st, const char *msg)
{
    cl_result *e = &cl->res[i];
    e->st = st;
    e->msg = strdup(msg);
    e->done = 1;
    cl->ndone++;
}

/* An op for entry i, owed its outcome by the engine from now, its
 * deadlines counted from since (the batch's release: a command the lane
 * wrote has no more time than the engine would give it) (NULL: out of
 * memory, the entry ended with st and msg). */
static acl_op *entry_op(redtls_cluster *cl, uint32_t i, int64_t since, redtls_status st, const char *msg)
{
    const cl_result *e = &cl->res[i];
    const cl_dnode *d = &cl->dn[e->dn];
    acl_op *o = redtls__acl_op_framed(cl->acl, e->flags & ~CL_READONLY, e->slot, (e->flags & CL_READONLY) != 0,
                                      (d->sent ? d->sent : d->frames) + e->off, e->len, since,
                                      redtls__cl_on_outcome, (void *)(uintptr_t)i); // NOLINT(performance-no-int-to-ptr): an index, not an address
    if (!o)
        fail_entry(cl, i, st, msg);
    return o;
}

/* What an entry written to its node ends with when there is no memory to
 * hand it to the engine. */
#define WRITTEN_NOMEM_MSG                                                                                              \
    "out of memory handing the command to the cluster engine after it was sent, so it may or may not have run"

void redtls__cl_lane_demote(redtls_cluster *cl)
{
    redtls_async_cluster *acl = cl->acl;
    cl->lane = 0;
    for (uint32_t i = 0; i < cl->nres; i++) {
        acl_op *o = entry_op(cl, i, acl->hold_now, REDTLS_E_NOMEM,
                             "out of memory handing the command to the cluster engine (not sent)");
        if (o)
            redtls__acl_hold_op(acl, o);
    }
    cl->ndn = 0;
}

/* Node d's next command owed a reply, taken off its list. */
static uint32_t pop_owed(redtls_cluster *cl, cl_dnode *d)
{
    uint32_t i = d->next;
    d->next = cl->res[i].dnext;
    d->owed--;
    return i;
}

/* What node d answered for its next command (r, owned from here). */
static void take_reply(redtls_cluster *cl, cl_dnode *d, redisReply *r, int64_t now)
{
    uint32_t i = pop_owed(cl, d);
    cl_result *e = &cl->res[i];
    if (r->type == REDIS_REPLY_ERROR) {
        /* Its own outcome only when the engine would say so at once: not
         * a redirection, not NOAUTH, not an error to retry. */
        redtls__redirect rd;
        char err[REDTLS__ERRMSG_MAX];
        if (redtls__redirect_parse(r->str, r->len, &rd, err) != REDTLS__NOT_REDIRECT ||
            (r->len >= 6 && memcmp(r->str, "NOAUTH", 6) == 0) ||
            redtls__error_classify(r->str, r->len) != REDTLS__ERR_FINAL) {
            acl_op *o = entry_op(cl, i, cl->t0, REDTLS_E_NOMEM,
                                 "out of memory handing the server's error reply to the cluster engine");
            if (o)
                redtls__acl_adopt(cl->acl, o, cl->acl->nodes[d->m], REDTLS_OK, r, now);
            else
                freeReplyObject(r);
            cl->handover = 1;
            return;
        }
    }
    e->reply = r;
    e->done = 1;
    cl->ndone++;
}

/* Node d's connection failed (st; its message in the connection's
 * errmsg): as the engine's connection would report it. A reply that broke
 * a limit or the protocol is the first owed command's; the others were
 * written (from the first byte of a write on, every command may run). */
static void node_failed(redtls_cluster *cl, cl_dnode *d, redtls_status st, int64_t now)
{
    redtls_async_cluster *acl = cl->acl;
    acl_node *n = acl->nodes[d->m];
    redtls_conn *c = n->ac->c;
    if (d->owed > 0 && st != REDTLS_E_EOF && st != REDTLS_E_CLOSED && st != REDTLS_E_IO && st != REDTLS_E_TLS) {
        uint32_t i = pop_owed(cl, d);
        acl_op *o = entry_op(cl, i, cl->t0, st, c->errmsg);
        if (o)
            redtls__acl_adopt(acl, o, n, st, NULL, now);
    }
    char cause[REDTLS__ERRMSG_MAX];
    memcpy(cause, c->errmsg, sizeof cause);
    redtls__async_drop(n->ac, st);
    redtls__fail(c->errmsg, REDTLS_E_OUTCOME_UNKNOWN,
                 "the connection broke after the command was sent, so it may or may not have run (%.400s)", cause);
    while (d->owed > 0) {
        uint32_t i = pop_owed(cl, d);
        acl_op *o = entry_op(cl, i, cl->t0, REDTLS_E_OUTCOME_UNKNOWN, c->errmsg);
        if (o)
            redtls__acl_adopt(acl, o, n, REDTLS_E_OUTCOME_UNKNOWN, NULL, now);
    }
    memcpy(c->errmsg, cause, sizeof cause);
    d->want = 0;
    cl->handover = 1;
}

/* The engine has work of its own now (an op the lane adopted is on its
 * way elsewhere or waits for a retry): it runs the rest of the batch, so
 * that work goes on while replies are still owed here. The replies each
 * node still owes become its connection's, as if the engine had sent
 * those commands. */
static void hand_over(redtls_cluster *cl, int64_t now)
{
    redtls_async_cluster *acl = cl->acl;
    for (size_t k = 0; k < cl->ndn; k++) {
        cl_dnode *d = &cl->dn[k];
        acl_node *n = acl->nodes[d->m];
        while (d->owed > 0) {
            uint32_t i = pop_owed(cl, d);
            acl_op *o = entry_op(cl, i, cl->t0, REDTLS_E_OUTCOME_UNKNOWN, WRITTEN_NOMEM_MSG);
            if (o && redtls__acl_rehome(acl, o, n, cl->res[i].len) == REDTLS_OK)
                continue;
            /* Its reply cannot be paired: the connection goes, and with it
             * the replies it owes (those handed over end through the
             * engine, the rest here). */
            if (o)
                redtls__acl_op_end(acl, o, REDTLS_E_OUTCOME_UNKNOWN, NULL, WRITTEN_NOMEM_MSG);
            redtls__fail(n->ac->c->errmsg, REDTLS_E_CLOSED,
                         "closed: out of memory keeping track of the replies it owed");
            node_failed(cl, d, REDTLS_E_CLOSED, now);
        }
        d->want = 0;
    }
}

/* The batch's deadline came with d's replies owed: they end as the
 * engine's would, and its connection closes (their replies would come
 * late, taken for later commands'). */
static void node_timed_out(redtls_cluster *cl, cl_dnode *d)
{
    redtls_async_cluster *acl = cl->acl;
    acl_node *n = acl->nodes[d->m];
    char msg[REDTLS__ERRMSG_MAX];
    snprintf(msg, sizeof msg,
             "node %.200s: no reply within the command timeout (%u ms), so the command may or may not have run (its "
             "reply, if it comes, is dropped)",
             n->name, acl->base.command_timeout_ms);
    while (d->owed > 0)
        fail_entry(cl, pop_owed(cl, d), REDTLS_E_COMMAND_TIMEOUT, msg);
    redtls__fail(n->ac->c->errmsg, REDTLS_E_COMMAND_TIMEOUT,
                 "closed with replies owed past the command timeout (late replies cannot be paired)");
    redtls__async_drop(n->ac, REDTLS_E_COMMAND_TIMEOUT);
    d->want = 0;
}

/* ---- running ---- */

/* Is the master's connection usable as it is, as the engine's connection
 * would find it before a write with nothing owed? The idle check runs
 * here; a connection it finds closed is given up, as a pass would. */
static int node_ready(acl_node *n, int64_t now, int quiet)
{
    redtls_async *ac = n->ac;
    if (!ac || n->leaving || !ac->up || ac->readying || ac->attempting || ac->q_head || ac->s_head || ac->hold ||
        ac->n_subs || ac->in_process)
        return 0;
    redtls_conn *c = ac->c;
    if (!c->tp || c->fd < 0 || c->pending || c->olen || c->lost || c->need_reauth)
        return 0;
    if (quiet && redtls__conn_seen_quiet(c))
        return !redtls__ready_due(c, now);
    redtls_status idle;
    if (redtls__ready_needed(c, now, &idle)) {
        if (idle != REDTLS_OK)
            redtls__async_drop(ac, idle);
        return 0;
    }
    return 1;
}

/* Moves node d on: writes what its socket takes, then reads what has
 * come, until command upto has its outcome (SIZE_MAX: all of d's), or the
 * engine is to take over. Leaves d->want set when it has to wait. */
static void node_step(redtls_cluster *cl, cl_dnode *d, int64_t now, int64_t end, size_t upto)
{
    redtls_conn *c = d->c;
    int want = 0, wwant = 0;
    d->want = 0;
    d->fresh = 0;
    if (c->olen > 0) {
        redtls_status st = redtls__conn_write_step(c, &wwant);
        if (st != REDTLS_OK) {
            node_failed(cl, d, st, now);
            return;
        }
        /* Just written: nothing can have come yet. */
        if (!wwant && (d->want = redtls__conn_read_want(c)) != 0)
            return;
    }
    /* While the rest of a write waits for room, the replies to what went
     * out are read, as the engine's connection reads them: a server may
     * take no more until they are. */
    c->just_wrote = 0;
    for (int reads = 0; d->owed > 0 && !cl->handover && (upto == SIZE_MAX || !cl->res[upto].done); reads++) {
        redisReply *r = NULL;
        size_t got = 0;
        redtls_status st = redtls__conn_take_parsed(c, now, &r);
        if (st == REDTLS_OK && !r) {
            /* A server that keeps sending meets the deadline here. */
            if (reads > 0 && reads % 64 == 0 && end != REDTLS__NO_DEADLINE && redtls__acl_now() >= end) {
                d->want = POLLIN | wwant;
                return;
            }
            st = redtls__conn_read_more(c, now, REDTLS__READ_CHUNK, &got, &r, &want);
        }
        if (st != REDTLS_OK) {
            node_failed(cl, d, st, now);
            return;
        }
        if (r)
            take_reply(cl, d, r, now);
        else if (want) {
            d->want = want | wwant;
            return;
        }
    }
}

int redtls__cl_lane_run(redtls_cluster *cl, int64_t *end)
{
    redtls_async_cluster *acl = cl->acl;
    int64_t now = redtls__acl_now();
    /* Anything between the calls (new tokens, a refresh falling due) is
     * looked at again; then every node must be ready before any writes. */
    int ok = redtls__cl_lane_open(cl, now);
    /* Their idle checks in one look at every master's socket (no wait)
     * rather than a poll each: a quiet socket is a clean check. */
    struct pollfd pf[16];
    int looked = 0;
    if (ok && cl->ndn > 1 && cl->ndn <= 16) {
        for (size_t k = 0; k < cl->ndn; k++) {
            const redtls_async *ac = acl->nodes[cl->dn[k].m]->ac;
            pf[k] = (struct pollfd){ac && ac->up ? ac->c->fd : -1, POLLIN, 0};
        }
        looked = poll(pf, (nfds_t)cl->ndn, 0) >= 0;
    }
    for (size_t k = 0; k < cl->ndn && ok; k++)
        ok = node_ready(acl->nodes[cl->dn[k].m], now, looked && pf[k].fd >= 0 && pf[k].revents == 0);
    /* Each master's bytes become its connection's queue: the buffers are
     * swapped, not copied (node_ready found the queue empty). The bytes
     * stay where they are until the lane is over (nothing else queues on
     * these connections meanwhile), for whatever is handed to the engine. */
    for (size_t k = 0; k < cl->ndn && ok; k++) {
        cl_dnode *d = &cl->dn[k];
        redtls_conn *c = d->c = acl->nodes[d->m]->ac->c;
        char *ob = c->obuf;
        size_t ocap = c->ocap;
        c->obuf = d->frames;
        c->ocap = d->fcap;
        c->olen = d->flen;
        c->ooff = 0;
        d->frames = ob;
        d->fcap = ocap;
        d->sent = c->obuf;
        c->pending = c->unsent = d->n;
        d->owed = d->n;
        d->next = d->head;
    }
    if (!ok) {
        acl->hold_now = now;
        redtls__cl_lane_demote(cl);
        return 0;
    }
    cl->t0 = now;
    *end = redtls__deadline_from(now, acl->base.command_timeout_ms);
    /* What the release does: the retries of what the lane hands over
     * start afresh (nothing waits now), not at an earlier batch's time. */
    redtls__backoff_reset(&acl->backoff);
    acl->retry_at = REDTLS__NO_DEADLINE;
    cl->handover = 0;
    cl->lane_now = now;
    cl->lane_end = *end;
    /* Every master's share goes out now; the replies are read as they are
     * asked for (redtls__cl_lane_next), like a single connection's
     * pipeline: each reply made and freed in turn. */
    for (size_t k = 0; k < cl->ndn; k++) {
        cl_dnode *d = &cl->dn[k];
        int want = 0;
        redtls_status st = redtls__conn_write_step(d->c, &want);
        if (st != REDTLS_OK) {
            node_failed(cl, d, st, now);
            continue;
        }
        d->want = want ? want | POLLIN : redtls__conn_read_want(d->c);
        /* Just written, nothing can have come yet: a wait comes first. */
        d->fresh = !want && d->want;
    }
    if (cl->handover) {
        hand_over(cl, now);
        return 1;
    }
    cl->lazy = 1;
    return 1;
}

int redtls__cl_lane_quick_rare(redtls_cluster *cl, cl_dnode *d, redtls_status st, redisReply *r)
{
    if (st != REDTLS_OK)
        node_failed(cl, d, st, cl->lane_now);
    else if (r)
        take_reply(cl, d, r, cl->lane_now);
    return 0;
}

/* At the deadline: what has come is taken, the rest ends. */
static void lane_deadline(redtls_cluster *cl)
{
    for (size_t k = 0; k < cl->ndn && !cl->handover; k++)
        if (cl->dn[k].owed > 0)
            node_step(cl, &cl->dn[k], cl->lane_now, REDTLS__NO_DEADLINE, SIZE_MAX);
    for (size_t k = 0; k < cl->ndn && !cl->handover; k++)
        if (cl->dn[k].owed > 0)
            node_timed_out(cl, &cl->dn[k]);
}

int redtls__cl_lane_next(redtls_cluster *cl)
{
    uint32_t i = (uint32_t)cl->next_out;
    cl_result *e = &cl->res[i];
    cl_dnode *d = &cl->dn[e->dn];
    struct pollfd small[8], *pfd = small;
    uint32_t small_who[8], *who = small_who;
    int engine = 0;
    for (;;) {
        if (!d->fresh)
            node_step(cl, d, cl->lane_now, cl->lane_end, i);
        if (!cl->handover && !e->done && cl->lane_now >= cl->lane_end)
            lane_deadline(cl);
        if (cl->handover) {
            hand_over(cl, cl->lane_now);
            engine = 1;
            break;
        }
        if (e->done)
            break;
        /* Wait for this master, reading the others' replies as they come
         * (a redirection among them is followed at once, not after this
         * master's reply). */
        if (pfd == small && cl->ndn > 8) {
            pfd = malloc(cl->ndn * sizeof *pfd);
            who = malloc(cl->ndn * sizeof *who);
            if (!pfd || !who) {
                free(pfd);
                free(who);
                pfd = small;
                who = small_who;
            }
        }
        size_t cap = pfd == small ? 8 : cl->ndn, np = 0;
        pfd[np] = (struct pollfd){.fd = d->c->fd, .events = (short)(d->want ? d->want : POLLIN)};
        who[np++] = e->dn;
        for (size_t k = 0; k < cl->ndn && np < cap; k++) {
            const cl_dnode *o = &cl->dn[k];
            if (o != d && o->owed > 0) {
                pfd[np] = (struct pollfd){.fd = o->c->fd, .events = (short)(o->want ? o->want | POLLIN : POLLIN)};
                who[np++] = (uint32_t)k;
            }
        }
        int rc = poll(pfd, (nfds_t)np, redtls__poll_timeout(cl->lane_end));
        int err = rc < 0 && errno != EINTR ? errno : 0;
        cl->lane_now = redtls__acl_now();
        if (err) {
            redtls__fail(d->c->errmsg, REDTLS_E_IO, "poll: %s", strerror(err));
            node_failed(cl, d, REDTLS_E_IO, cl->lane_now);
            continue;
        }
        if (rc > 0 && pfd[0].revents)
            d->fresh = 0;
        for (size_t j = 1; rc > 0 && j < np && !cl->handover; j++)
            if (pfd[j].revents)
                node_step(cl, &cl->dn[who[j]], cl->lane_now, cl->lane_end, SIZE_MAX);
    }
    if (pfd != small) {
        free(pfd);
        free(who);
    }
    if (engine)
        cl->lazy = 0;
    return engine;
}

void redtls__cl_lane_free(redtls_cluster *cl)
{
    for (size_t k = 0; k < cl->capdn; k++)
        free(cl->dn[k].frames);
    free(cl->dn);
    free(cl->dn_of);
    cl->dn = NULL;
    cl->dn_of = NULL;
    cl->dn_of_cap = 0;
    cl->ndn = cl->capdn = 0;
}

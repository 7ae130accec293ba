/* The asynchronous cluster client's commands as they are issued: framing,
 * splitting a multi-key command by slot, and merging the parts' replies
 * (see acluster.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "acluster.h"
#include "format.h"
#include "slot.h"

#define INLINE_KEYS 16

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

void redtls__acl_split_free(acl_split *sp)
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

static inline acl_op *new_op(redtls_async_cluster *acl, unsigned flags, int64_t now)
{
    acl_op *o = acl->pool ? redtls__acl_op_reuse(acl, acl->pool) : redtls__acl_op_get(acl);
    if (!o)
        return NULL;
    o->flags = flags;
    o->deadline = redtls__deadline_from(now, acl->base.command_timeout_ms);
    o->retry_end = acl->base.command_timeout_ms ? o->deadline
                                                : now + (int64_t)(acl->outage_ms ? acl->outage_ms : 60000U);
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

/* Every command but the common one (see redtls__acl_issue_keyed). */
static REDTLS__NOINLINE redtls_status issue_general(redtls_async_cluster *acl, unsigned flags, uint32_t slot,
                                                    acl_node *node, int argc, const char **argv, const size_t *lens,
                                                    redtls_async_cluster_reply_cb cb, void *ud)
{
    if (argc <= 0 || !argv)
        return redtls__fail(acl->errmsg, REDTLS_E_INVALID, "a command needs at least one argument");
    if (!cb)
        cb = redtls__acl_discard;
    if (acl->n_live >= acl->max_pending)
        return redtls__fail(acl->errmsg, REDTLS_E_LIMIT,
                            "%zu commands are queued or in flight, the limit (redtls_async_cluster_set_max_pending): "
                            "wait for replies before issuing more",
                            acl->n_live);
    size_t inline_pos[INLINE_KEYS];
    size_t *pos = inline_pos;
    unsigned kf = 0;
    size_t nkeys = 0;
    if (!node && slot == ACL_NO_SLOT && redtls__command_one_key(&acl->cmd_cache, argc, argv, lens, &kf)) {
        pos[0] = 1;
        nkeys = 1;
    } else if (!node && slot == ACL_NO_SLOT) {
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
     * single-connection API); a held op's deadlines are set again when it
     * is released, so the batch's time will do. */
    int64_t now = acl->pass_now ? acl->pass_now : acl->hold ? acl->hold_now : redtls__acl_now();
    int merge = REDTLS__MERGE_NONE;
    if (!node && slot == ACL_NO_SLOT) {
        if (!(kf & REDTLS__CMD_KNOWN) && argc > 1) {
            slot = redtls_cluster_key_slot(argv[1], arglen(argv, lens, 1)); /* a module's command */
        } else if (nkeys > 0) {
            slot = redtls__key_slot(argv[pos[0]], arglen(argv, lens, pos[0]));
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
        acl_op **parts = sp ? calloc(nkeys, sizeof *parts) : NULL; // NOLINT(bugprone-sizeof-expression): an array of pointers
        if (!sp || !parts || !(sp->replies = calloc(nkeys, sizeof *sp->replies))) { // NOLINT(bugprone-sizeof-expression): an array of pointers
            free(parts);
            if (sp)
                redtls__acl_split_free(sp);
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
                redtls__acl_op_put(acl, parts[k]);
            free(parts);
            redtls__acl_split_free(sp);
            st = redtls__fail(acl->errmsg, st, "out of memory");
            goto out;
        }
        acl->stats[REDTLS_CLUSTER_STAT_SPLITS]++;
        acl->n_live++;
        size_t np = sp->nparts;
        for (size_t k = 0; k < np; k++)
            redtls__acl_live_push(acl, parts[k]);
        if (acl->hold) {
            for (size_t k = 0; k < np; k++)
                redtls__acl_hold_op(acl, parts[k]);
            free(parts);
            goto out;
        }
        /* No node callback runs before this call returns, so only a part
         * failing here can end one: the first one ends the whole command
         * at once (nothing was sent), a later one ends its part. */
        st = redtls__acl_op_send(acl, parts[0], now);
        if (st != REDTLS_OK) {
            for (size_t k = 0; k < np; k++) {
                redtls__acl_live_unlink(acl, parts[k]);
                redtls__acl_wait_unlink(acl, parts[k]);
                redtls__acl_op_put(acl, parts[k]);
            }
            acl->n_live--;
            redtls__acl_split_free(sp);
        }
        for (size_t k = 1; k < np && st == REDTLS_OK; k++) {
            redtls_status pst = redtls__acl_op_send(acl, parts[k], now);
            if (pst != REDTLS_OK)
                redtls__acl_op_end(acl, parts[k], pst, NULL, acl->errmsg);
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
        redtls__acl_op_put(acl, o);
        st = redtls__fail(acl->errmsg, st, "out of memory formatting the command");
        goto out;
    }
    acl->n_live++;
    redtls__acl_live_push(acl, o);
    if (acl->hold == ACL_HOLD_ALL) {
        redtls__acl_hold_op(acl, o);
        goto out;
    }
    if ((st = redtls__acl_op_send(acl, o, now)) != REDTLS_OK && acl->hold == ACL_HOLD_SPLIT) {
        redtls__acl_op_end(acl, o, st, NULL, acl->errmsg);
        st = REDTLS_OK;
    } else if (st != REDTLS_OK) {
        redtls__acl_live_unlink(acl, o);
        redtls__acl_wait_unlink(acl, o);
        redtls__acl_op_put(acl, o);
        acl->n_live--;
    }
out:
    if (pos != inline_pos)
        free(pos);
    return st;
}

redtls_status redtls__acl_issue_keyed(redtls_async_cluster *acl, unsigned flags, int argc, const char **argv,
                                      const size_t *lens, redtls_async_cluster_reply_cb cb, void *ud)
{
    /* The common case: a command with one key, the cached one (never
     * split), below the limit, nothing held; the same steps as
     * issue_general's without its other cases. */
    unsigned kf = 0;
    if (acl->hold || argc <= 0 || !argv || acl->n_live >= acl->max_pending ||
        !redtls__command_one_key(&acl->cmd_cache, argc, argv, lens, &kf) ||
        ((lens[0] == 5 || lens[0] == 10 || lens[0] == 12) && redtls__cluster_state_command(argv[0], lens[0])))
        return issue_general(acl, flags, ACL_NO_SLOT, NULL, argc, argv, lens, cb, ud);
    int64_t now = acl->pass_now ? acl->pass_now : redtls__acl_now();
    acl_op *o = new_op(acl, flags, now);
    if (!o)
        return redtls__fail(acl->errmsg, REDTLS_E_NOMEM, "out of memory");
    o->cb = cb ? cb : redtls__acl_discard;
    o->ud = ud;
    o->slot = redtls__key_slot(argv[1], lens[1]);
    o->readonly = (kf & REDTLS__CMD_READONLY) != 0;
    redtls_status st = redtls__format_argv(&o->frame, &o->len, &o->cap, argc, argv, lens);
    if (st != REDTLS_OK) {
        redtls__acl_op_put(acl, o);
        return redtls__fail(acl->errmsg, st, "out of memory formatting the command");
    }
    acl->n_live++;
    redtls__acl_live_push(acl, o);
    /* A new op names no node and was not redirected, so of
     * redtls__acl_direct_node's checks only these apply. */
    acl_node *n = acl->read_replicas && o->readonly ? NULL : redtls__acl_master_up(acl, o->slot);
    if ((st = n ? redtls__acl_hand(acl, o, n) : redtls__acl_op_send(acl, o, now)) != REDTLS_OK) {
        redtls__acl_live_unlink(acl, o);
        redtls__acl_wait_unlink(acl, o);
        redtls__acl_op_put(acl, o);
        acl->n_live--;
    }
    return st;
}

redtls_status redtls__acl_issue(redtls_async_cluster *acl, unsigned flags, uint32_t slot, acl_node *node, int argc,
                                const char **argv, const size_t *lens, char *frame, size_t flen,
                                redtls_async_cluster_reply_cb cb, void *ud)
{
    (void)frame;
    (void)flen;
    if (node || slot != ACL_NO_SLOT)
        return issue_general(acl, flags, slot, node, argc, argv, lens, cb, ud);
    return redtls__acl_issue_keyed(acl, flags, argc, argv, lens, cb, ud);
}

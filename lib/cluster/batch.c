/* Building a cluster batch: each user command framed into the arena as
 * one op, or split by slot into several for the multi-key commands that
 * can be merged; commands that hold a connection's state are refused. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"

void redtls__cluster_batch_reset(redtls_cluster *cl)
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

static redtls__cl_op *new_op(redtls_cluster *cl, size_t u)
{
    redtls__cl_op *v = redtls__cluster_grow(cl->ops, &cl->capops, cl->nops + 1, sizeof *v);
    if (!v)
        return NULL;
    cl->ops = v;
    redtls__cl_op *o = &cl->ops[cl->nops++];
    memset(o, 0, sizeof *o);
    o->slot = NO_SLOT;
    o->fixed = o->ask = o->moved = o->target = NO_NODE;
    o->ucmd = u;
    o->off = cl->alen;
    return o;
}

static redtls_status frame(redtls_cluster *cl, redtls__cl_op *o, int argc, const char **argv, const size_t *lens)
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

int redtls__cluster_split_kind(const char *name, size_t len)
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
        size_t *v = redtls__cluster_grow(cl->map, &cl->capmap, cl->nmap + nkeys, sizeof *v);
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
        redtls__cl_op *o = new_op(cl, u);
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

const char *redtls__cluster_state_command(const char *name, size_t len)
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
redtls_status redtls__cluster_add_command(redtls_cluster *cl, unsigned flags, uint32_t slot, size_t node, int argc,
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
        state = redtls__cluster_state_command(argv[0], len0);
    if (state) {
        if (pos != inline_pos)
            free(pos);
        return redtls__fail(cl->errmsg, REDTLS_E_INVALID,
                            "%s changes the state of a connection, which a cluster handle shares between "
                            "commands; use a redtls_conn to the node instead",
                            state);
    }
    redtls__cl_ucmd *v = redtls__cluster_grow(cl->ucmds, &cl->capucmds, cl->nucmds + 1, sizeof *v);
    if (!v) {
        if (pos != inline_pos)
            free(pos);
        return redtls__fail(cl->errmsg, REDTLS_E_NOMEM, "out of memory");
    }
    cl->ucmds = v;
    size_t u = cl->nucmds;
    redtls__cl_ucmd *uc = &cl->ucmds[u];
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
            int mk = (flags & REDTLS_CLUSTER_STRICT) || nkeys < 2 ? MERGE_NONE : redtls__cluster_split_kind(argv[0], len0);
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
        redtls__cl_op *o = new_op(cl, u);
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

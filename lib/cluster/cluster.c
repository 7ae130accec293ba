/* The blocking cluster client (include/redtls/cluster.h): a loop over the
 * asynchronous cluster engine (lib/acluster), as the blocking connection
 * API is a loop over the session's machines. A call (or the first
 * redtls_cluster_get_reply of a batch) releases its commands to the
 * engine at once, every node's share goes out in one write, and the loop
 * runs until the last of them has its outcome; the replies are then
 * handed out in the order the commands were queued. A batch whose nodes
 * are connected and idle takes the direct lane (cluster_lane.c) instead:
 * the same outcomes without a record per command in the engine. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cluster_internal.h"

redtls_status redtls_cluster_new(redtls_config *cfg, const char *seeds, redtls_cluster **out)
{
    if (!out)
        return REDTLS_E_INVALID;
    *out = NULL;
    redtls_cluster *cl = calloc(1, sizeof *cl);
    if (!cl) {
        if (cfg)
            redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
        return cfg ? REDTLS_E_NOMEM : REDTLS_E_INVALID;
    }
    redtls_status st = redtls_async_cluster_new(cfg, seeds, &cl->acl);
    if (st != REDTLS_OK) {
        free(cl);
        return st;
    }
    /* A blocking call waits for what it needs: nothing runs between
     * calls, so the periodic refresh happens at the next call. */
    *out = cl;
    return REDTLS_OK;
}

static void reset(redtls_cluster *cl)
{
    for (size_t i = cl->next_out; i < cl->nres; i++) {
        freeReplyObject(cl->res[i].reply);
        free(cl->res[i].msg);
    }
    cl->nres = cl->ndone = cl->next_out = 0;
    cl->ran = 0;
    cl->lane = cl->lazy = 0;
    cl->ndn = 0;
}

void redtls_cluster_free(redtls_cluster *cl)
{
    if (!cl)
        return;
    /* Commands queued and never run end with REDTLS_E_CLOSED into res. */
    redtls_async_cluster_free(cl->acl);
    reset(cl);
    redtls__cl_lane_free(cl);
    free(cl->res);
    free(cl);
}

const char *redtls_cluster_errmsg(const redtls_cluster *cl)
{
    return cl ? cl->errmsg : "";
}

redtls_status redtls_cluster_set_max_redirects(redtls_cluster *cl, unsigned n)
{
    return cl ? redtls_async_cluster_set_max_redirects(cl->acl, n) : REDTLS_E_INVALID;
}

redtls_status redtls_cluster_set_refresh(redtls_cluster *cl, unsigned interval_ms, unsigned min_gap_ms)
{
    return cl ? redtls_async_cluster_set_refresh(cl->acl, interval_ms, min_gap_ms) : REDTLS_E_INVALID;
}

redtls_status redtls_cluster_set_read_from_replicas(redtls_cluster *cl, int on)
{
    return cl ? redtls_async_cluster_set_read_from_replicas(cl->acl, on) : REDTLS_E_INVALID;
}

static redtls_status check_idle(redtls_cluster *cl)
{
    if (cl->nres > 0)
        return redtls__fail(cl->errmsg, REDTLS_E_STATE,
                            "%zu pipelined commands are pending; read them with redtls_cluster_get_reply first",
                            cl->nres - cl->next_out);
    return REDTLS_OK;
}

redtls_status redtls_cluster_connect(redtls_cluster *cl)
{
    if (!cl)
        return REDTLS_E_INVALID;
    cl->errmsg[0] = '\0';
    redtls_status st = check_idle(cl);
    if (st != REDTLS_OK)
        return st;
    redtls_async_cluster *acl = cl->acl;
    st = redtls__acl_refresh_wait(acl, redtls__deadline_after(acl->base.command_timeout_ms));
    if (st != REDTLS_OK)
        snprintf(cl->errmsg, sizeof cl->errmsg, "%s", acl->errmsg);
    return st;
}

redtls_status redtls_cluster_refresh(redtls_cluster *cl)
{
    return redtls_cluster_connect(cl);
}

/* Each command's outcome, filed at its place in the batch. */
void redtls__cl_on_outcome(redtls_async_cluster *acl, redtls_status st, redisReply *reply, void *ud)
{
    redtls_cluster *cl = acl->owner;
    cl_result *r = &cl->res[(size_t)(uintptr_t)ud];
    r->st = st;
    r->reply = reply;
    r->done = 1;
    if (st != REDTLS_OK)
        r->msg = strdup(acl->errmsg[0] ? acl->errmsg : redtls_strerror(st));
    cl->ndone++;
}

/* Queues one command at the end of the batch: unsent until the batch is
 * released (hold ACL_HOLD_ALL), or, for a call's single command
 * (ACL_HOLD_SPLIT), handed to its node's connection at once unless it is
 * split (its parts wait for the release). Nothing runs between the calls,
 * so either way the nodes see it when the batch runs. A batch that opens
 * on the lane stays there while its commands are the lane's kind. */
static redtls_status add(redtls_cluster *cl, int hold, unsigned flags, uint32_t slot, acl_node *node, int argc,
                         const char **argv, const size_t *lens)
{
    if (cl->nres == cl->capres) {
        size_t cap = cl->capres ? 2 * cl->capres : 8;
        cl_result *v = realloc(cl->res, cap * sizeof *v);
        if (!v)
            return redtls__fail(cl->errmsg, REDTLS_E_NOMEM, "out of memory");
        cl->res = v;
        cl->capres = cap;
    }
    redtls_async_cluster *acl = cl->acl;
    memset(&cl->res[cl->nres], 0, sizeof cl->res[cl->nres]);
    int plain = !node && slot == ACL_NO_SLOT;
    if (cl->nres == 0) {
        acl->owner = cl;
        acl->hold_now = redtls__acl_now(); /* one clock read per batch */
        cl->lane = plain && redtls__cl_lane_open(cl, acl->hold_now);
    }
    if (cl->lane) {
        redtls_status lst;
        if (plain && redtls__cl_lane_add(cl, flags, argc, argv, lens, &lst)) {
            if (lst == REDTLS_OK)
                cl->nres++;
            return lst;
        }
        /* Not the lane's kind: the whole batch goes to the engine. */
        redtls__cl_lane_demote(cl);
    }
    if (hold == ACL_HOLD_SPLIT && acl->wait_head)
        hold = ACL_HOLD_ALL; /* never: every op of the last call has ended */
    if (hold == ACL_HOLD_SPLIT) {
        /* What the release does before it sends: a fresh backoff for
         * commands that have to wait. */
        redtls__backoff_reset(&acl->backoff);
        acl->retry_at = REDTLS__NO_DEADLINE;
    }
    acl->hold = hold;
    acl->owner = cl;
    redtls_status st = redtls__acl_issue(acl, flags, slot, node, argc, argv, lens, NULL, 0, redtls__cl_on_outcome,
                                         (void *)(uintptr_t)cl->nres); // NOLINT(performance-no-int-to-ptr): an index, not an address
    acl->hold = ACL_HOLD_NONE;
    if (st != REDTLS_OK)
        return redtls__fail(cl->errmsg, st, "%s", acl->errmsg);
    cl->nres++;
    return REDTLS_OK;
}

static int outcomes_in(void *arg)
{
    const redtls_cluster *cl = arg;
    return cl->ndone == cl->nres;
}

static int batch_done(void *arg)
{
    const redtls_cluster *cl = arg;
    return cl->ndone == cl->nres && !cl->acl->refreshing;
}

/* Runs the engine until every outcome is in (the commands' own deadlines
 * bound it), and a refresh the call started (one was due, or a
 * redirection asked for it) is done, within end: nothing runs between
 * calls. */
static void run_engine(redtls_cluster *cl, int64_t end)
{
    redtls_async_cluster *acl = cl->acl;
    if (!batch_done(cl))
        (void)redtls__acl_run_until(acl, batch_done, cl, end);
    /* Past the end only the commands' outcomes matter (a refresh still
     * under way goes on at the next call). */
    if (cl->ndone != cl->nres)
        (void)redtls__acl_run_until(acl, outcomes_in, cl, REDTLS__NO_DEADLINE);
    /* At the deadline only the nodes that still owed replies lose their
     * connections (nothing would read the late replies before the next
     * call). */
    redtls__acl_close_orphaned(acl);
}

/* Runs the batch: on the lane when it has it, else released to the
 * engine. */
static void run_batch(redtls_cluster *cl)
{
    cl->ran = 1;
    redtls_async_cluster *acl = cl->acl;
    int64_t end;
    if (cl->lane && redtls__cl_lane_run(cl, &end)) {
        /* What the lane handed over (a write failed); otherwise the
         * replies are read as they are asked for (take). */
        if (!cl->lazy && (cl->ndone != cl->nres || acl->refreshing))
            run_engine(cl, end);
        return;
    }
    /* A call's command went out in add, at hold_now (a pipeline is released
     * now). */
    end = acl->held ? redtls__deadline_after(acl->base.command_timeout_ms)
                    : redtls__deadline_from(acl->hold_now, acl->base.command_timeout_ms);
    if (acl->held)
        redtls__acl_release(acl);
    run_engine(cl, end);
}

static redtls_status take(redtls_cluster *cl, redisReply **reply)
{
    if (cl->lazy && !cl->res[cl->next_out].done && redtls__cl_lane_next(cl))
        run_engine(cl, cl->lane_end);
    cl_result *r = &cl->res[cl->next_out++];
    *reply = r->reply;
    r->reply = NULL;
    redtls_status st = r->st;
    if (st != REDTLS_OK)
        redtls__fail(cl->errmsg, st, "%s", r->msg ? r->msg : redtls_strerror(st));
    free(r->msg);
    r->msg = NULL;
    if (cl->next_out == cl->nres)
        reset(cl);
    return st;
}

static redtls_status run_one(redtls_cluster *cl, unsigned flags, uint32_t slot, acl_node *node, int argc,
                             const char **argv, const size_t *lens, redisReply **reply)
{
    redtls_status st = add(cl, ACL_HOLD_SPLIT, flags, slot, node, argc, argv, lens);
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
    return run_one(cl, flags, ACL_NO_SLOT, NULL, argc, argv, argvlen, reply);
}

redtls_status redtls_cluster_command_slot(redtls_cluster *cl, unsigned slot, unsigned flags, int argc,
                                          const char **argv, const size_t *argvlen, redisReply **reply)
{
    redtls_status st = begin(cl, reply);
    if (st != REDTLS_OK)
        return st;
    if (slot >= REDTLS_CLUSTER_SLOTS)
        return redtls__fail(cl->errmsg, REDTLS_E_INVALID, "slot %u is not in 0..16383", slot);
    return run_one(cl, flags, slot, NULL, argc, argv, argvlen, reply);
}

redtls_status redtls_cluster_command_node(redtls_cluster *cl, const char *node, unsigned flags, int argc,
                                          const char **argv, const size_t *argvlen, redisReply **reply)
{
    redtls_status st = begin(cl, reply);
    if (st != REDTLS_OK)
        return st;
    char host[256];
    uint16_t port;
    if (!node || redtls__acl_parse_node(node, strlen(node), host, sizeof host, &port) != 0)
        return redtls__fail(cl->errmsg, REDTLS_E_INVALID, "node must be given as host:port");
    size_t i = redtls__acl_node_for(cl->acl, host, port, 1, NULL);
    if (i == SIZE_MAX)
        return redtls__fail(cl->errmsg,
                            strstr(cl->acl->errmsg, "out of memory") ? REDTLS_E_NOMEM : REDTLS_E_CLUSTER_TOPOLOGY, "%s",
                            cl->acl->errmsg);
    return run_one(cl, flags, ACL_NO_SLOT, cl->acl->nodes[i], argc, argv, argvlen, reply);
}

redtls_status redtls_cluster_command(redtls_cluster *cl, redisReply **reply, const char *fmt, ...)
{
    redtls_status st = begin(cl, reply);
    if (st != REDTLS_OK)
        return st;
    acl_fmt f;
    va_list ap;
    va_start(ap, fmt);
    st = redtls__acl_vformat(&f, cl->errmsg, fmt, ap);
    va_end(ap);
    if (st == REDTLS_OK)
        st = run_one(cl, 0, ACL_NO_SLOT, NULL, f.argc, f.argv, f.lens, reply);
    redtls__acl_fmt_free(&f);
    return st;
}

redtls_status redtls_cluster_append_argv(redtls_cluster *cl, unsigned flags, int argc, const char **argv,
                                         const size_t *argvlen)
{
    if (!cl)
        return REDTLS_E_INVALID;
    cl->errmsg[0] = '\0';
    if (cl->ran)
        return redtls__fail(cl->errmsg, REDTLS_E_STATE, "the previous batch still has %zu replies to read",
                            cl->nres - cl->next_out);
    if (cl->lane && cl->nres < cl->capres) {
        /* A batch on the lane, without add's general steps. */
        redtls_status st;
        if (redtls__cl_lane_add(cl, flags, argc, argv, argvlen, &st)) {
            if (st == REDTLS_OK)
                cl->nres++;
            return st;
        }
    }
    return add(cl, ACL_HOLD_ALL, flags, ACL_NO_SLOT, NULL, argc, argv, argvlen);
}

/* The next reply of a lazy batch (see redtls__cl_lane_quick), or the
 * general way when it is not whole in the reader yet. */
static redtls_status get_lazy(redtls_cluster *cl, redisReply **reply)
{
    *reply = NULL;
    cl->errmsg[0] = '\0';
    if (redtls__cl_lane_quick(cl, reply)) {
        if (++cl->next_out == cl->nres)
            reset(cl);
        return REDTLS_OK;
    }
    return take(cl, reply);
}

redtls_status redtls_cluster_get_reply(redtls_cluster *cl, redisReply **reply)
{
    if (reply && cl && cl->lazy && cl->next_out < cl->nres && !cl->res[cl->next_out].done)
        return get_lazy(cl, reply);
    if (!reply)
        return REDTLS_E_INVALID;
    *reply = NULL;
    if (!cl)
        return REDTLS_E_INVALID;
    cl->errmsg[0] = '\0';
    if (cl->next_out >= cl->nres)
        return redtls__fail(cl->errmsg, REDTLS_E_STATE, "no reply is pending");
    if (!cl->ran)
        run_batch(cl);
    if (cl->lazy && !cl->res[cl->next_out].done)
        return get_lazy(cl, reply);
    return take(cl, reply);
}

size_t redtls_cluster_pending(const redtls_cluster *cl)
{
    return cl ? cl->nres - cl->next_out : 0;
}

size_t redtls_cluster_node_count(const redtls_cluster *cl)
{
    return cl ? redtls_async_cluster_node_count(cl->acl) : 0;
}

const char *redtls_cluster_node_name(const redtls_cluster *cl, size_t i)
{
    return cl ? redtls_async_cluster_node_name(cl->acl, i) : NULL;
}

int redtls_cluster_node_is_master(const redtls_cluster *cl, size_t i)
{
    return cl ? redtls_async_cluster_node_is_master(cl->acl, i) : 0;
}

redtls_status redtls_cluster_set_tokens(redtls_cluster *cl, const char *token, const char *token_alt, int flags)
{
    if (!cl)
        return REDTLS_E_INVALID;
    cl->errmsg[0] = '\0';
    redtls_status st = redtls_async_cluster_set_tokens(cl->acl, token, token_alt, flags);
    if (st != REDTLS_OK)
        snprintf(cl->errmsg, sizeof cl->errmsg, "%s", cl->acl->errmsg);
    return st;
}

uint64_t redtls_cluster_stat_get(const redtls_cluster *cl, redtls_cluster_stat which)
{
    return cl ? redtls_async_cluster_stat_get(cl->acl, which) : 0;
}

/* The asynchronous cluster client's handle: creation and teardown,
 * settings, and the ways into a loop (hooks, the built-in poll loop). The
 * commands are in acluster_cmd.c, the nodes and the slot map in
 * acluster_map.c (see acluster.h). */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "acluster.h"
#include "redirect.h"
#include "wait.h"

int64_t redtls__acl_now(void)
{
    return redtls__now_ms();
}

uint64_t redtls__acl_rand(redtls_async_cluster *acl)
{
    /* xorshift64* */
    acl->rng ^= acl->rng >> 12;
    acl->rng ^= acl->rng << 25;
    acl->rng ^= acl->rng >> 27;
    return acl->rng * 0x2545F4914F6CDD1DULL;
}

/* The earliest time the handle's own work is due. */
static int64_t due_at(const redtls_async_cluster *acl)
{
    int64_t due = acl->retry_at;
    if (acl->live_head)
        due = redtls__deadline_min(due, acl->live_head->deadline);
    return redtls__deadline_min(due, redtls__acl_refresh_due(acl));
}

void redtls__acl_arm_timer(redtls_async_cluster *acl)
{
    if (!acl->has_hooks || acl->freeing || !acl->hooks.timer)
        return;
    int64_t due = due_at(acl);
    /* A timer that fires early only finds nothing to do, so it is moved
     * only when something falls due before it. */
    if (due >= acl->armed_at)
        return;
    int64_t now = redtls__acl_now();
    acl->armed_at = due < now ? now : due;
    int64_t ms = due <= now ? 0 : due - now;
    acl->hooks.timer(acl->hooks.data, ms > INT32_MAX ? INT32_MAX : (int)ms);
}

static void leave(redtls_async_cluster *acl)
{
    if (--acl->depth == 0 && acl->dead)
        free(acl);
}

redtls_status redtls_async_cluster_new(redtls_config *cfg, const char *seeds, redtls_async_cluster **out)
{
    if (!out)
        return REDTLS_E_INVALID;
    *out = NULL;
    if (!cfg)
        return REDTLS_E_INVALID;
    cfg->errmsg[0] = '\0';
    if (cfg->unix_path)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "cluster mode needs TCP seeds, not a Unix socket");
    if (redtls__iam_on(&cfg->iam) && !cfg->use_tls)
        return redtls__fail(cfg->errmsg, REDTLS_E_CONFIG,
                            "IAM authentication needs TLS (AWS requires encryption in transit for it): use "
                            "rediss:// or turn TLS on");
    if (cfg->db != 0)
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID,
                            "a cluster has database 0 only (the configuration selects %d)", cfg->db);
    redtls_async_cluster *acl = calloc(1, sizeof *acl);
    if (!acl)
        return redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
    if (redtls__config_copy(&acl->base, cfg, acl->base_errmsg) != REDTLS_OK) {
        free(acl);
        return redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
    }
    acl->base_host = acl->base.host;
    /* The cluster decides where a command goes when a node is down; a
     * node's own reconnect limits would only strand it. */
    acl->outage_ms = acl->base.max_outage_ms;
    acl->base.max_attempts = 0;
    acl->base.max_outage_ms = 0;
    acl->base.reconnect = 1;
    acl->max_redirects = ACL_DEFAULT_MAX_REDIRECTS;
    acl->refresh_interval_ms = ACL_DEFAULT_REFRESH_INTERVAL_MS;
    acl->refresh_gap_ms = ACL_DEFAULT_REFRESH_GAP_MS;
    acl->max_pending = REDTLS_ASYNC_DEFAULT_MAX_PENDING;
    acl->retry_at = acl->armed_at = REDTLS__NO_DEADLINE;
    redtls__backoff_init(&acl->backoff, cfg->backoff_base_ms, cfg->backoff_cap_ms, 0);
    acl->rng = acl->backoff.rng | 1U;
    acl->last_refresh = INT64_MIN / 2; /* never: the first one is due */
    for (size_t s = 0; s < REDTLS_CLUSTER_SLOTS; s++)
        acl->slot_node[s] = ACL_NO_SLOT;
    redtls_status st = REDTLS_OK;
    if (cfg->use_tls) {
        /* Built once here, shared by every node connection. */
        redtls__tls_ctx *ctx = NULL;
        st = redtls__config_tls_ctx(cfg, &ctx);
        if (st == REDTLS_OK)
            acl->base.tls_cache = ctx;
    }
    const char *p = seeds && seeds[0] ? seeds : NULL;
    if (st == REDTLS_OK && !p && redtls__acl_node_for(acl, cfg->host, cfg->port, 0, NULL) == SIZE_MAX)
        st = redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
    while (st == REDTLS_OK && p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && *p == ' ') {
            p++;
            len--;
        }
        while (len > 0 && p[len - 1] == ' ')
            len--;
        char host[256];
        uint16_t port;
        if (redtls__acl_parse_node(p, len, host, sizeof host, &port) != 0)
            st = redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "seed '%.*s' is not host:port",
                              (int)(len > 200 ? 200 : len), p);
        else if (redtls__acl_node_for(acl, host, port, 0, NULL) == SIZE_MAX)
            st = redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
        p = end ? end + 1 : NULL;
    }
    if (st == REDTLS_OK && acl->nnodes == 0)
        st = redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "no seed given");
    for (size_t i = 0; i < acl->nnodes; i++)
        acl->nodes[i]->seed = 1;
    if (st != REDTLS_OK) {
        redtls_async_cluster_free(acl);
        return st;
    }
    *out = acl;
    return REDTLS_OK;
}

void redtls_async_cluster_free(redtls_async_cluster *acl)
{
    if (!acl || acl->freeing)
        return;
    acl->freeing = 1;
    acl->depth++;
    if (acl->connect_asked) {
        redtls_async_cluster_connect_cb cb = acl->ccb;
        acl->connect_asked = 0;
        acl->ccb = NULL;
        snprintf(acl->errmsg, sizeof acl->errmsg, "the cluster handle was freed");
        if (cb)
            cb(acl, REDTLS_E_CLOSED, acl->cud);
    }
    redtls__acl_end_all(acl, REDTLS_E_CLOSED, "the cluster handle was freed before the command completed");
    redtls__acl_ps_end_all(acl);
    /* The node connections' callbacks find their ops ended and let the
     * records go. */
    redtls__acl_nodes_free(acl);
    redtls__acl_ps_free(acl);
    redtls__acl_ops_free(acl);
    redtls__topology_free(acl->topo);
    free(acl->topo_node);
    if (acl->has_hooks && acl->hooks.detach)
        acl->hooks.detach(acl->hooks.data);
    acl->has_hooks = 0;
    acl->base.host = acl->base_host;
    redtls__config_release(&acl->base);
    acl->dead = 1;
    leave(acl);
}

const char *redtls_async_cluster_errmsg(const redtls_async_cluster *acl)
{
    return acl ? acl->errmsg : "";
}

redtls_status redtls_async_cluster_connect(redtls_async_cluster *acl, redtls_async_cluster_connect_cb cb,
                                           void *userdata)
{
    if (!acl || acl->freeing)
        return REDTLS_E_INVALID;
    acl->errmsg[0] = '\0';
    if (acl->connect_asked || acl->have_map)
        return redtls__fail(acl->errmsg, REDTLS_E_STATE,
                            acl->have_map ? "the slot map is already in" : "a connect is already under way");
    acl->connect_asked = 1;
    acl->ccb = cb;
    acl->cud = userdata;
    acl->force_refresh = 1;
    /* From the timer, at once: the callback never runs inside this call. */
    redtls__acl_arm(acl);
    return REDTLS_OK;
}

int redtls_async_cluster_is_ready(const redtls_async_cluster *acl)
{
    return acl && acl->have_map;
}

/* The common entry of the command calls. */
static redtls_status issue(redtls_async_cluster *acl, unsigned flags, uint32_t slot, acl_node *node, int argc,
                           const char **argv, const size_t *lens, redtls_async_cluster_reply_cb cb, void *ud)
{
    /* Nothing here calls back: a refresh the command needs (no map yet)
     * starts from the timer, at once. */
    redtls_status st = !node && slot == ACL_NO_SLOT
                           ? redtls__acl_issue_keyed(acl, flags, argc, argv, lens, cb, ud)
                           : redtls__acl_issue(acl, flags, slot, node, argc, argv, lens, NULL, 0, cb, ud);
    redtls__acl_arm(acl);
    return st;
}

redtls_status redtls_async_cluster_command_argv(redtls_async_cluster *acl, unsigned flags, int argc,
                                                const char **argv, const size_t *argvlen,
                                                redtls_async_cluster_reply_cb cb, void *userdata)
{
    if (!acl || acl->freeing)
        return REDTLS_E_INVALID;
    acl->errmsg[0] = '\0';
    return issue(acl, flags, ACL_NO_SLOT, NULL, argc, argv, argvlen, cb, userdata);
}

/* Reads a command framed by hiredis back into arguments (pointing into
 * the frame). -1 when it is not one array of bulk strings. */
static int unframe(const char *f, size_t len, int *argc, const char ***argv, size_t **lens)
{
    const char *p = f, *end = f + len;
    if (p >= end || *p != '*')
        return -1;
    long n = strtol(p + 1, NULL, 10);
    if (n <= 0 || n > 1048576L)
        return -1;
    *argv = malloc((size_t)n * sizeof **argv);
    *lens = malloc((size_t)n * sizeof **lens);
    if (!*argv || !*lens)
        return -1;
    p = memchr(p, '\n', (size_t)(end - p));
    for (long i = 0; i < n; i++) {
        if (!p || ++p >= end || *p != '$')
            return -1;
        long l = strtol(p + 1, NULL, 10);
        p = memchr(p, '\n', (size_t)(end - p));
        if (l < 0 || !p || (size_t)(end - p - 1) < (size_t)l + 2)
            return -1;
        (*argv)[i] = p + 1;
        (*lens)[i] = (size_t)l;
        p += 1 + (size_t)l + 1; /* to the '\n' after the value */
    }
    *argc = (int)n;
    return 0;
}

redtls_status redtls__acl_vformat(acl_fmt *f, char *err, const char *fmt, va_list ap)
{
    memset(f, 0, sizeof *f);
    if (!fmt)
        return redtls__fail(err, REDTLS_E_INVALID, "format is NULL");
    f->n = redisvFormatCommand(&f->cmd, fmt, ap);
    if (f->n == -2)
        return redtls__fail(err, REDTLS_E_INVALID, "invalid format string");
    if (f->n <= 0 || !f->cmd)
        return redtls__fail(err, REDTLS_E_NOMEM, "out of memory formatting the command");
    if (unframe(f->cmd, (size_t)f->n, &f->argc, &f->argv, &f->lens) != 0)
        return redtls__fail(err, f->argv && f->lens ? REDTLS_E_INVALID : REDTLS_E_NOMEM,
                            f->argv && f->lens ? "the format made no command" : "out of memory");
    return REDTLS_OK;
}

void redtls__acl_fmt_free(acl_fmt *f)
{
    free(f->argv);
    free(f->lens);
    if (f->cmd && f->n > 0)
        OPENSSL_cleanse(f->cmd, (size_t)f->n);
#if defined(HIREDIS_MAJOR) && HIREDIS_MAJOR >= 1
    redisFreeCommand(f->cmd);
#else
    free(f->cmd);
#endif
}

redtls_status redtls_async_cluster_command(redtls_async_cluster *acl, redtls_async_cluster_reply_cb cb,
                                           void *userdata, const char *fmt, ...)
{
    if (!acl || acl->freeing)
        return REDTLS_E_INVALID;
    acl->errmsg[0] = '\0';
    acl_fmt f;
    va_list ap;
    va_start(ap, fmt);
    redtls_status st = redtls__acl_vformat(&f, acl->errmsg, fmt, ap);
    va_end(ap);
    if (st == REDTLS_OK)
        st = issue(acl, 0, ACL_NO_SLOT, NULL, f.argc, f.argv, f.lens, cb, userdata);
    redtls__acl_fmt_free(&f);
    return st;
}

redtls_status redtls_async_cluster_command_slot(redtls_async_cluster *acl, unsigned slot, unsigned flags, int argc,
                                                const char **argv, const size_t *argvlen,
                                                redtls_async_cluster_reply_cb cb, void *userdata)
{
    if (!acl || acl->freeing)
        return REDTLS_E_INVALID;
    acl->errmsg[0] = '\0';
    if (slot >= REDTLS_CLUSTER_SLOTS)
        return redtls__fail(acl->errmsg, REDTLS_E_INVALID, "slot %u is out of range (0..16383)", slot);
    return issue(acl, flags, slot, NULL, argc, argv, argvlen, cb, userdata);
}

redtls_status redtls_async_cluster_command_node(redtls_async_cluster *acl, const char *node, unsigned flags,
                                                int argc, const char **argv, const size_t *argvlen,
                                                redtls_async_cluster_reply_cb cb, void *userdata)
{
    if (!acl || acl->freeing)
        return REDTLS_E_INVALID;
    acl->errmsg[0] = '\0';
    char host[256];
    uint16_t port;
    if (!node || redtls__acl_parse_node(node, strlen(node), host, sizeof host, &port) != 0)
        return redtls__fail(acl->errmsg, REDTLS_E_INVALID, "node '%.200s' is not host:port", node ? node : "(null)");
    size_t i = redtls__acl_node_for(acl, host, port, 1, NULL);
    if (i == SIZE_MAX)
        return strstr(acl->errmsg, "out of memory") ? REDTLS_E_NOMEM : REDTLS_E_CLUSTER_TOPOLOGY;
    return issue(acl, flags, ACL_NO_SLOT, acl->nodes[i], argc, argv, argvlen, cb, userdata);
}

size_t redtls_async_cluster_pending(const redtls_async_cluster *acl)
{
    return acl ? acl->n_live : 0;
}

redtls_status redtls_async_cluster_set_max_pending(redtls_async_cluster *acl, size_t max)
{
    if (!acl)
        return REDTLS_E_INVALID;
    acl->max_pending = max ? max : REDTLS_ASYNC_DEFAULT_MAX_PENDING;
    return REDTLS_OK;
}

redtls_status redtls_async_cluster_set_max_redirects(redtls_async_cluster *acl, unsigned n)
{
    if (!acl || n == 0)
        return REDTLS_E_INVALID;
    acl->max_redirects = n;
    return REDTLS_OK;
}

redtls_status redtls_async_cluster_set_refresh(redtls_async_cluster *acl, unsigned interval_ms, unsigned min_gap_ms)
{
    if (!acl)
        return REDTLS_E_INVALID;
    acl->refresh_interval_ms = interval_ms;
    acl->refresh_gap_ms = min_gap_ms;
    redtls__acl_arm(acl);
    return REDTLS_OK;
}

redtls_status redtls_async_cluster_set_read_from_replicas(redtls_async_cluster *acl, int on)
{
    if (!acl)
        return REDTLS_E_INVALID;
    on = on != 0;
    if (on != acl->read_replicas) {
        acl->read_replicas = on;
        /* Idle connections are remade with (or without) READONLY. */
        for (size_t i = 0; i < acl->nnodes; i++) {
            acl_node *n = acl->nodes[i];
            if (n->ac && redtls_async_pending(n->ac) == 0) {
                redtls_async_free(n->ac);
                n->ac = NULL;
            }
        }
    }
    return REDTLS_OK;
}

redtls_status redtls_async_cluster_refresh(redtls_async_cluster *acl)
{
    if (!acl || acl->freeing)
        return REDTLS_E_INVALID;
    acl->force_refresh = 1;
    redtls__acl_arm(acl);
    return REDTLS_OK;
}

redtls_status redtls_async_cluster_set_tokens(redtls_async_cluster *acl, const char *token, const char *token_alt,
                                              int flags)
{
    if (!acl)
        return REDTLS_E_INVALID;
    acl->errmsg[0] = '\0';
    redtls_status st = redtls__set_token_pair(&acl->base, token, token_alt, acl->errmsg);
    if (st != REDTLS_OK)
        return st;
    redtls_status first = REDTLS_OK;
    for (size_t i = 0; i < acl->nnodes; i++) {
        acl_node *n = acl->nodes[i];
        /* A subscriber connection keeps its subscriptions: out of memory
         * for the new tokens only leaves it on the old ones until it
         * reconnects. */
        if (n->sub_ac)
            (void)redtls__async_set_tokens(n->sub_ac, token, token_alt, flags);
        if (!n->ac)
            continue;
        st = redtls__async_set_tokens(n->ac, token, token_alt, flags);
        if (st == REDTLS_E_NOMEM && redtls_async_pending(n->ac) == 0) {
            /* Remade from the handle's new tokens when next needed. */
            redtls_async_free(n->ac);
            n->ac = NULL;
            continue;
        }
        if (st != REDTLS_OK && first == REDTLS_OK) {
            first = st;
            redtls__fail(acl->errmsg, st, "node %s: %s", n->name, redtls_async_errmsg(n->ac));
        }
    }
    return first;
}

static const acl_node *nth_in_map(const redtls_async_cluster *acl, size_t i)
{
    for (size_t j = 0; acl && j < acl->nnodes; j++)
        if (acl->nodes[j]->host && acl->nodes[j]->in_map && i-- == 0)
            return acl->nodes[j];
    return NULL;
}

size_t redtls_async_cluster_node_count(const redtls_async_cluster *acl)
{
    size_t n = 0;
    for (size_t i = 0; acl && i < acl->nnodes; i++)
        n += acl->nodes[i]->host && acl->nodes[i]->in_map;
    return n;
}

const char *redtls_async_cluster_node_name(const redtls_async_cluster *acl, size_t i)
{
    const acl_node *n = nth_in_map(acl, i);
    return n ? n->name : NULL;
}

int redtls_async_cluster_node_is_master(const redtls_async_cluster *acl, size_t i)
{
    const acl_node *n = nth_in_map(acl, i);
    return n ? n->master : 0;
}

uint64_t redtls_async_cluster_stat_get(const redtls_async_cluster *acl, redtls_cluster_stat which)
{
    if (!acl || (unsigned)which >= sizeof acl->stats / sizeof acl->stats[0])
        return 0;
    return acl->stats[which];
}

/* ---- loops ---- */

redtls_status redtls_async_cluster_attach(redtls_async_cluster *acl, const redtls_async_cluster_hooks *hooks)
{
    if (!acl || acl->freeing || (hooks && (!hooks->attach_node || !hooks->timer)))
        return REDTLS_E_INVALID;
    if (acl->has_hooks && acl->hooks.detach)
        acl->hooks.detach(acl->hooks.data);
    acl->has_hooks = 0;
    acl->armed_at = REDTLS__NO_DEADLINE;
    if (!hooks)
        return REDTLS_OK;
    acl->hooks = *hooks;
    acl->has_hooks = 1;
    for (size_t h = 0; h < 2 * acl->nnodes; h++) {
        acl_node *n = acl->nodes[h / 2];
        redtls_async *ac = h % 2 ? n->sub_ac : n->ac;
        if (!ac)
            continue;
        redtls_status st = hooks->attach_node(hooks->data, ac);
        if (st != REDTLS_OK) {
            /* Nothing of the new hooks stays: their detach is their last
             * call (node connections attached so far stay on the loop). */
            acl->has_hooks = 0;
            if (hooks->detach)
                hooks->detach(hooks->data);
            return redtls__fail(acl->errmsg, st, "node %s: the event loop could not take its connection", n->name);
        }
    }
    redtls__acl_arm(acl);
    return REDTLS_OK;
}

redtls_status redtls_async_cluster_process(redtls_async_cluster *acl)
{
    if (!acl || acl->freeing)
        return REDTLS_E_INVALID;
    acl->depth++;
    acl->armed_at = REDTLS__NO_DEADLINE; /* the timer fired (or the loop asks) */
    int64_t now = redtls__acl_now();
    redtls__acl_tick(acl, now);
    if (!acl->freeing && acl->ps_head)
        redtls__acl_ps_tick(acl);
    if (!acl->freeing)
        redtls__acl_refresh_tick(acl, now);
    if (!acl->freeing)
        redtls__acl_arm(acl);
    leave(acl);
    return REDTLS_OK;
}

int redtls_async_cluster_timeout_ms(const redtls_async_cluster *acl)
{
    if (!acl)
        return -1;
    int64_t due = due_at(acl);
    if (due == REDTLS__NO_DEADLINE)
        return -1;
    int64_t now = redtls__acl_now();
    if (due <= now)
        return 0;
    return due - now > INT32_MAX ? INT32_MAX : (int)(due - now);
}

int redtls__acl_parse_node(const char *s, size_t len, char *host, size_t hostcap, uint16_t *port)
{
    return redtls__parse_endpoint(s, len, host, hostcap, port) == 0 && host[0] ? 0 : -1;
}

/* A node connection has work due (its due time t): a pass it wanted at
 * once counts whatever the clock read before says (the pass that asked
 * may have started after that read), any other time once now reaches it. */
static int node_due(const redtls_async *ac, int64_t t, int64_t now)
{
    return ac->wanted || t <= now;
}

/* The loop's read phase: every command connection the wait found readable
 * (events still set: not read yet in this turn) reads what came and calls
 * its callbacks, writing nothing; those read are marked (events 0). 1 when
 * something was read and a node not read owes replies; the node list may
 * grow meanwhile (a redirection to a new node), never shrink. */
static int read_phase(redtls_async_cluster *acl, struct pollfd *pfd, const size_t *who, nfds_t np, int64_t now)
{
    int read = 0, owing = 0;
    for (nfds_t k = 0; k < np && !acl->freeing; k++) {
        size_t i = who[k];
        redtls_async *ac = i % 2 ? acl->nodes[i / 2]->sub_ac : acl->nodes[i / 2]->ac;
        if (!ac || !pfd[k].events)
            continue;
        if (!(pfd[k].revents & (POLLIN | POLLERR | POLLHUP))) {
            owing |= ac->s_head != NULL;
            continue;
        }
        redtls__async_read_phase(ac, now);
        pfd[k].events = 0;
        read = 1;
    }
    return read && owing;
}

redtls_status redtls__acl_run_until(redtls_async_cluster *acl, int (*done)(void *arg), void *arg, int64_t end)
{
    /* Up to 64 nodes on the stack; more on the heap, and when that fails,
     * 64 at a time with short waits, so no node is starved. */
    struct pollfd small[64];
    size_t small_who[64];
    struct pollfd *pfd = small;
    size_t *who = small_who, cap = 64, first = 0;
    redtls_status st = REDTLS_OK;
    acl->depth++;
    /* The clock is read once per turn and once after the wait (the node
     * connections keep the same clock as this handle). */
    for (;;) {
        int64_t now = redtls__acl_now();
        int64_t due = due_at(acl);
        int processed = due <= now;
        if (processed)
            redtls_async_cluster_process(acl);
        /* The depth taken above keeps acl's memory through any free. */
        if (acl->freeing || done(arg)) // NOLINT(clang-analyzer-unix.Malloc)
            break;
        if (processed)
            due = due_at(acl);
        if (now >= end) {
            st = REDTLS_E_COMMAND_TIMEOUT;
            break;
        }
        size_t n = 2 * acl->nnodes; /* each node's command and subscriber connections */
        if (n > cap) {
            struct pollfd *p = malloc(n * sizeof *p);
            size_t *w = p ? malloc(n * sizeof *w) : NULL;
            if (p && w) {
                if (pfd != small) {
                    free(pfd);
                    free(who);
                }
                pfd = p;
                who = w;
                cap = n;
            } else {
                free(p);
            }
        }
        /* Every turn: one wait (none when a node has work due now: its
         * commands issued, a step to take), then every readable node's
         * replies are read before any node writes, then each node that is
         * ready or due runs. Commands the callbacks issue to any node thus
         * go out together, one record per node, and their replies tend to
         * come back together for the next turn. */
        int any_due = 0;
        int64_t wake = redtls__deadline_min(end, due);
        if (n > cap)
            wake = redtls__deadline_min(wake, now + 10);
        nfds_t np = 0;
        for (size_t j = 0; j < n; j++) {
            size_t i = n > cap ? (first + j) % n : j;
            redtls_async *ac = i % 2 ? acl->nodes[i / 2]->sub_ac : acl->nodes[i / 2]->ac;
            if (!ac)
                continue;
            int64_t t = redtls__async_due(ac);
            if (node_due(ac, t, now))
                any_due = 1;
            else
                wake = redtls__deadline_min(wake, t);
            int fd = redtls_async_fd(ac), ev = redtls_async_events(ac);
            if (fd >= 0 && ev && np < cap) {
                pfd[np] = (struct pollfd){
                    fd, (short)((ev & REDTLS_ASYNC_READ ? POLLIN : 0) | (ev & REDTLS_ASYNC_WRITE ? POLLOUT : 0)), 0};
                who[np++] = i;
            }
        }
        if (n > cap)
            first = (first + cap) % n;
        if (poll(pfd, np, any_due ? 0 : redtls__poll_timeout(wake)) < 0 && errno != EINTR) {
            /* Waiting is not possible: what is owed ends now. */
            char msg[96];
            snprintf(msg, sizeof msg, "waiting for the replies failed (poll: %s)", strerror(errno));
            redtls__acl_end_all(acl, REDTLS_E_IO, msg);
            st = REDTLS_E_IO;
            break;
        }
        now = redtls__acl_now();
        /* The read phase; then, when it read something and another node
         * still owes replies, one more look (no wait) and a read of those
         * that have answered meanwhile: a node written last in the turn
         * before often has, and its callbacks' commands then go out in
         * this turn's writes instead of one more record each. */
        if (read_phase(acl, pfd, who, np, now) && np <= 64 && !acl->freeing) {
            short was[64];
            for (nfds_t k = 0; k < np; k++)
                was[k] = pfd[k].revents;
            int again = poll(pfd, np, 0);
            /* Those read keep the first look's events; the others the
             * second's, or the first's when the second saw none. */
            for (nfds_t k = 0; k < np; k++)
                if (again <= 0 || !pfd[k].events || !pfd[k].revents)
                    pfd[k].revents = was[k];
            if (again > 0)
                (void)read_phase(acl, pfd, who, np, now);
        }
        /* Then every node whose socket is ready or whose time came (before
         * the handle's own deadlines, at the top of the next turn: a reply
         * in the socket by then is delivered). */
        for (size_t i = 0; i < n && !acl->freeing; i++) {
            redtls_async *ac = i % 2 ? acl->nodes[i / 2]->sub_ac : acl->nodes[i / 2]->ac;
            if (!ac)
                continue;
            int ready = 0;
            for (nfds_t k = 0; k < np && !ready; k++)
                ready = who[k] == i && pfd[k].revents != 0;
            if (ready || node_due(ac, redtls__async_due(ac), now))
                redtls_async_process(ac, 0);
        }
    }
    if (pfd != small) {
        free(pfd);
        free(who);
    }
    if (--acl->depth == 0 && acl->dead)
        free(acl);
    return st;
}

static int run_done(void *arg)
{
    const redtls_async_cluster *acl = arg;
    return acl->n_live == 0 && !acl->connect_asked && acl->n_subs == 0;
}

redtls_status redtls_async_cluster_run(redtls_async_cluster *acl, int timeout_ms)
{
    if (!acl || acl->freeing || acl->has_hooks)
        return REDTLS_E_INVALID;
    int64_t end = timeout_ms < 0 ? REDTLS__NO_DEADLINE : redtls__now_ms() + timeout_ms;
    return redtls__acl_run_until(acl, run_done, acl, end);
}

typedef struct refresh_wait {
    redtls_async_cluster *acl;
    unsigned before;
} refresh_wait;

static int refresh_finished(void *arg)
{
    const refresh_wait *w = arg;
    return w->acl->refreshes_done != w->before;
}

redtls_status redtls__acl_refresh_wait(redtls_async_cluster *acl, int64_t end)
{
    refresh_wait w = {acl, acl->refreshes_done};
    acl->force_refresh = 1;
    acl->depth++;
    redtls__acl_refresh_tick(acl, redtls__acl_now());
    redtls_status st = REDTLS_OK;
    /* The blocking client's: no callback of its can free acl, and the depth
     * taken above would keep its memory anyway. */
    if (!acl->freeing && !refresh_finished(&w)) // NOLINT(clang-analyzer-unix.Malloc)
        st = redtls__acl_run_until(acl, refresh_finished, &w, end);
    if (st == REDTLS_OK && !acl->freeing) // NOLINT(clang-analyzer-unix.Malloc)
        st = acl->refresh_result;
    else if (st == REDTLS_E_COMMAND_TIMEOUT) {
        unsigned ms = acl->base.command_timeout_ms; // NOLINT(clang-analyzer-unix.Malloc)
        redtls__fail(acl->errmsg, st, "no slot map within the command timeout (%u ms)", ms);
    }
    acl->depth--; // NOLINT(clang-analyzer-unix.Malloc)
    return st;
}

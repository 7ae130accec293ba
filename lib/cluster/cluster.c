/* The cluster client's public API (include/redtls/cluster.h); the work
 * is done in nodes.c, batch.c and engine.c (see client.h). */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

redtls_status redtls_cluster_new(redtls_config *cfg, const char *seeds, redtls_cluster **out)
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
        return redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "a cluster has database 0 only (the configuration selects %d)",
                            cfg->db);
    redtls_cluster *cl = calloc(1, sizeof *cl);
    if (!cl)
        return redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
    if (redtls__config_copy(&cl->base, cfg, cl->base_errmsg) != REDTLS_OK) {
        free(cl);
        return redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
    }
    cl->base_host = cl->base.host;
    /* The cluster decides where to go when a node is down; a node's own
     * reconnect limits would only strand it. */
    cl->outage_ms = cl->base.max_outage_ms;
    cl->base.max_attempts = 0;
    cl->base.max_outage_ms = 0;
    cl->base.reconnect = 1;
    cl->max_redirects = DEFAULT_MAX_REDIRECTS;
    cl->refresh_interval_ms = DEFAULT_REFRESH_INTERVAL_MS;
    cl->refresh_gap_ms = DEFAULT_REFRESH_GAP_MS;
    redtls__backoff_init(&cl->backoff, cfg->backoff_base_ms, cfg->backoff_cap_ms, 0);
    cl->rng = cl->backoff.rng | 1U;
    cl->last_refresh = INT64_MIN / 2; /* never: the first one is due */
    for (size_t s = 0; s < REDTLS_CLUSTER_SLOTS; s++)
        cl->slot_node[s] = NO_SLOT;
    redtls_status st = REDTLS_OK;
    if (cfg->use_tls) {
        /* Built once here, shared by every node connection. */
        redtls__tls_ctx *ctx = NULL;
        st = redtls__config_tls_ctx(cfg, &ctx);
        if (st == REDTLS_OK)
            cl->base.tls_cache = ctx;
    }
    const char *p = seeds && seeds[0] ? seeds : NULL;
    if (st == REDTLS_OK && !p) {
        if (redtls__cluster_node_for(cl, cfg->host, cfg->port, 0, NULL) == NO_NODE)
            st = redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
    }
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
        if (redtls__cluster_parse_hostport(p, len, host, sizeof host, &port) != 0)
            st = redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "seed '%.*s' is not host:port", (int)(len > 200 ? 200 : len), p);
        else if (redtls__cluster_node_for(cl, host, port, 0, NULL) == NO_NODE)
            st = redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
        p = end ? end + 1 : NULL;
    }
    if (st == REDTLS_OK && cl->nnodes == 0)
        st = redtls__fail(cfg->errmsg, REDTLS_E_INVALID, "no seed given");
    for (size_t i = 0; i < cl->nnodes; i++)
        cl->nodes[i].seed = 1;
    if (st != REDTLS_OK) {
        redtls_cluster_free(cl);
        return st;
    }
    *out = cl;
    return REDTLS_OK;
}

void redtls_cluster_free(redtls_cluster *cl)
{
    if (!cl)
        return;
    redtls__cluster_batch_reset(cl);
    for (size_t i = 0; i < cl->nnodes; i++) {
        redtls__cluster_node_close(&cl->nodes[i]);
        free(cl->nodes[i].host);
        free(cl->nodes[i].announced);
    }
    free(cl->nodes);
    redtls__topology_free(cl->topo);
    free(cl->topo_node);
    free(cl->ops);
    free(cl->ucmds);
    free(cl->arena);
    free(cl->map);
    free(cl->pfd);
    free(cl->pfd_node);
    cl->base.host = cl->base_host;
    redtls__config_release(&cl->base);
    free(cl);
}

const char *redtls_cluster_errmsg(const redtls_cluster *cl)
{
    return cl ? cl->errmsg : "";
}

redtls_status redtls_cluster_set_max_redirects(redtls_cluster *cl, unsigned n)
{
    if (!cl || n == 0)
        return REDTLS_E_INVALID;
    cl->max_redirects = n;
    return REDTLS_OK;
}

redtls_status redtls_cluster_set_refresh(redtls_cluster *cl, unsigned interval_ms, unsigned min_gap_ms)
{
    if (!cl)
        return REDTLS_E_INVALID;
    cl->refresh_interval_ms = interval_ms;
    cl->refresh_gap_ms = min_gap_ms;
    return REDTLS_OK;
}

redtls_status redtls_cluster_set_read_from_replicas(redtls_cluster *cl, int on)
{
    if (!cl)
        return REDTLS_E_INVALID;
    on = on != 0;
    if (on != cl->read_replicas) {
        cl->read_replicas = on;
        /* Connections are remade with (or without) READONLY. */
        for (size_t i = 0; i < cl->nnodes; i++)
            redtls__cluster_node_close(&cl->nodes[i]);
    }
    return REDTLS_OK;
}

static redtls_status check_idle(redtls_cluster *cl)
{
    if (cl->nucmds > 0)
        return redtls__fail(cl->errmsg, REDTLS_E_STATE,
                            "%zu pipelined commands are pending; read them with redtls_cluster_get_reply first",
                            cl->nucmds - cl->next_out);
    return REDTLS_OK;
}

redtls_status redtls_cluster_connect(redtls_cluster *cl)
{
    if (!cl)
        return REDTLS_E_INVALID;
    cl->errmsg[0] = '\0';
    redtls_status st = check_idle(cl);
    if (st == REDTLS_OK)
        st = redtls__cluster_refresh(cl, redtls__deadline_after(cl->base.command_timeout_ms));
    return st;
}

redtls_status redtls_cluster_refresh(redtls_cluster *cl)
{
    return redtls_cluster_connect(cl);
}

static redtls_status run_one(redtls_cluster *cl, unsigned flags, uint32_t slot, size_t node, int argc,
                             const char **argv, const size_t *lens, redisReply **reply)
{
    redtls_status st = redtls__cluster_add_command(cl, flags, slot, node, argc, argv, lens);
    if (st != REDTLS_OK)
        return st;
    redtls__cluster_run_batch(cl);
    return redtls__cluster_take(cl, reply);
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
    return run_one(cl, flags, NO_SLOT, NO_NODE, argc, argv, argvlen, reply);
}

redtls_status redtls_cluster_command_slot(redtls_cluster *cl, unsigned slot, unsigned flags, int argc,
                                          const char **argv, const size_t *argvlen, redisReply **reply)
{
    redtls_status st = begin(cl, reply);
    if (st != REDTLS_OK)
        return st;
    if (slot >= REDTLS_CLUSTER_SLOTS)
        return redtls__fail(cl->errmsg, REDTLS_E_INVALID, "slot %u is not in 0..16383", slot);
    return run_one(cl, flags, slot, NO_NODE, argc, argv, argvlen, reply);
}

redtls_status redtls_cluster_command_node(redtls_cluster *cl, const char *node, unsigned flags, int argc,
                                          const char **argv, const size_t *argvlen, redisReply **reply)
{
    redtls_status st = begin(cl, reply);
    if (st != REDTLS_OK)
        return st;
    char host[256];
    uint16_t port;
    if (!node || redtls__cluster_parse_hostport(node, strlen(node), host, sizeof host, &port) != 0)
        return redtls__fail(cl->errmsg, REDTLS_E_INVALID, "node must be given as host:port");
    size_t i = redtls__cluster_node_for(cl, host, port, 1, NULL);
    if (i == NO_NODE)
        return cl->errmsg[0] ? REDTLS_E_CLUSTER_TOPOLOGY : redtls__fail(cl->errmsg, REDTLS_E_NOMEM, "out of memory");
    return run_one(cl, flags, NO_SLOT, i, argc, argv, argvlen, reply);
}

/* Reads a command framed by hiredis's formatter back into arguments. */
static int unframe(const char *buf, size_t len, int *argc, const char ***argv, size_t **lens)
{
    const char *p = buf, *end = buf + len;
    if (p >= end || *p != '*')
        return -1;
    char *e;
    long n = strtol(p + 1, &e, 10);
    if (n <= 0 || e + 2 > end || e[0] != '\r')
        return -1;
    p = e + 2;
    *argv = malloc((size_t)n * sizeof **argv);
    *lens = malloc((size_t)n * sizeof **lens);
    if (!*argv || !*lens)
        return -1;
    for (long i = 0; i < n; i++) {
        if (p >= end || *p != '$')
            return -1;
        long l = strtol(p + 1, &e, 10);
        if (l < 0 || e + 2 > end || (size_t)(end - (e + 2)) < (size_t)l + 2)
            return -1;
        (*argv)[i] = e + 2;
        (*lens)[i] = (size_t)l;
        p = e + 2 + l + 2;
    }
    *argc = (int)n;
    return 0;
}

redtls_status redtls_cluster_command(redtls_cluster *cl, redisReply **reply, const char *fmt, ...)
{
    redtls_status st = begin(cl, reply);
    if (st != REDTLS_OK)
        return st;
    if (!fmt)
        return redtls__fail(cl->errmsg, REDTLS_E_INVALID, "format is NULL");
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (n == -2)
        return redtls__fail(cl->errmsg, REDTLS_E_INVALID, "invalid format string");
    if (n <= 0 || !cmd)
        return redtls__fail(cl->errmsg, REDTLS_E_NOMEM, "out of memory formatting the command");
    int argc = 0;
    const char **argv = NULL;
    size_t *lens = NULL;
    if (unframe(cmd, (size_t)n, &argc, &argv, &lens) != 0)
        st = redtls__fail(cl->errmsg, REDTLS_E_NOMEM, "out of memory formatting the command");
    else
        st = run_one(cl, 0, NO_SLOT, NO_NODE, argc, argv, lens, reply);
    free(argv);
    free(lens);
#if defined(HIREDIS_MAJOR) && HIREDIS_MAJOR >= 1
    redisFreeCommand(cmd);
#else
    free(cmd);
#endif
    return st;
}

redtls_status redtls_cluster_append_argv(redtls_cluster *cl, unsigned flags, int argc, const char **argv,
                                         const size_t *argvlen)
{
    if (!cl)
        return REDTLS_E_INVALID;
    cl->errmsg[0] = '\0';
    if (cl->ran)
        return redtls__fail(cl->errmsg, REDTLS_E_STATE,
                            "the previous batch still has %zu replies to read", cl->nucmds - cl->next_out);
    return redtls__cluster_add_command(cl, flags, NO_SLOT, NO_NODE, argc, argv, argvlen);
}

redtls_status redtls_cluster_get_reply(redtls_cluster *cl, redisReply **reply)
{
    if (!reply)
        return REDTLS_E_INVALID;
    *reply = NULL;
    if (!cl)
        return REDTLS_E_INVALID;
    cl->errmsg[0] = '\0';
    if (cl->next_out >= cl->nucmds)
        return redtls__fail(cl->errmsg, REDTLS_E_STATE, "no reply is pending");
    if (!cl->ran)
        redtls__cluster_run_batch(cl);
    return redtls__cluster_take(cl, reply);
}

size_t redtls_cluster_pending(const redtls_cluster *cl)
{
    return cl ? cl->nucmds - cl->next_out : 0;
}

size_t redtls_cluster_node_count(const redtls_cluster *cl)
{
    size_t n = 0;
    for (size_t i = 0; cl && i < cl->nnodes; i++)
        n += cl->nodes[i].in_map;
    return n;
}

static const redtls__cl_node *nth_in_map(const redtls_cluster *cl, size_t i)
{
    for (size_t j = 0; cl && j < cl->nnodes; j++)
        if (cl->nodes[j].in_map && i-- == 0)
            return &cl->nodes[j];
    return NULL;
}

const char *redtls_cluster_node_name(const redtls_cluster *cl, size_t i)
{
    const redtls__cl_node *n = nth_in_map(cl, i);
    return n ? n->name : NULL;
}

int redtls_cluster_node_is_master(const redtls_cluster *cl, size_t i)
{
    const redtls__cl_node *n = nth_in_map(cl, i);
    return n ? n->master : 0;
}

redtls_status redtls_cluster_set_tokens(redtls_cluster *cl, const char *token, const char *token_alt, int flags)
{
    if (!cl)
        return REDTLS_E_INVALID;
    cl->errmsg[0] = '\0';
    /* The same rules as redtls_conn_set_tokens(), which every node
     * connection applies next. */
    redtls_status st = redtls__set_token_pair(&cl->base, token, token_alt, cl->errmsg);
    if (st != REDTLS_OK)
        return st;
    cl->preferred = 0;
    redtls_status first = REDTLS_OK;
    for (size_t i = 0; i < cl->nnodes; i++) {
        redtls_conn *c = cl->nodes[i].conn;
        if (!c)
            continue;
        int f = redtls__conn_up(c) ? flags : 0;
        st = redtls_conn_set_tokens(c, token, token_alt, f);
        if (st == REDTLS_E_NOMEM) {
            /* Remade from the handle's new tokens when next needed. */
            redtls__cluster_node_close(&cl->nodes[i]);
            continue;
        }
        if (st != REDTLS_OK && first == REDTLS_OK) {
            first = st;
            redtls__fail(cl->errmsg, st, "node %s: %s", cl->nodes[i].name, redtls__conn_msg(c));
        }
    }
    return first;
}

uint64_t redtls_cluster_stat_get(const redtls_cluster *cl, redtls_cluster_stat which)
{
    if (!cl || (unsigned)which >= sizeof cl->stats / sizeof cl->stats[0])
        return 0;
    return cl->stats[which];
}

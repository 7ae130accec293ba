/* The TLS Redis Cluster of the integration tests; see lab_cluster.h. */
#include "lab_cluster.h"
#include "lab_internal.h"
#include "lab_proxy.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#define ADMIN_TIMEOUT_MS 3000
#define START_TIMEOUT_MS 20000
#define RESTART_WAIT_MS 10000
#define POLL_MS 20
#define BUS_PORT_TRIES 3
#define MIGRATE_TIMEOUT_MS "5000"

/* One node's CLUSTER NODES, reduced to what the checks compare. Nodes the
 * harness does not know (handshakes under a temporary name) only count when
 * they claim slots. */
typedef struct lab_view {
    signed char owner[LAB_CLUSTER_SLOTS];     /* node index; -1 none; -2 unknown node */
    int listed[LAB_CLUSTER_MAX_NODES];
    int master[LAB_CLUSTER_MAX_NODES];        /* -1 is a master; else index of its master (-2 unknown) */
    int failing[LAB_CLUSTER_MAX_NODES];       /* fail?, fail, handshake or noaddr */
    int self;                                 /* the "myself" line's node */
} lab_view;

lab_cluster_opts lab_cluster_default_opts(void)
{
    lab_cluster_opts o;
    memset(&o, 0, sizeof o);
    o.masters = 3;
    o.replicas = 1;
    o.node_timeout_ms = 2000;
    return o;
}

int lab_cluster_index_of(const lab_cluster *c, const char *id)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->node[i].id[0] != '\0' && strcmp(c->node[i].id, id) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* ----- admin connections -------------------------------------------------- */

static redisContext *admin_connect(lab_cluster *c, size_t i, int quiet)
{
    struct timeval tv = {ADMIN_TIMEOUT_MS / 1000, (ADMIN_TIMEOUT_MS % 1000) * 1000};
    redisContext *ctx;
    redisReply *r;

    if (i >= c->n || !c->node[i].alive || c->node[i].srv.unix_path[0] == '\0') {
        if (!quiet) {
            lab__log("cluster: node %zu is not running", i);
        }
        return NULL;
    }
    ctx = redisConnectUnixWithTimeout(c->node[i].srv.unix_path, tv);
    if (ctx == NULL || ctx->err) {
        if (!quiet) {
            lab__log("cluster: node %zu: connect %s: %s", i, c->node[i].srv.unix_path,
                     ctx != NULL ? ctx->errstr : "out of memory");
        }
        if (ctx != NULL) {
            redisFree(ctx);
        }
        return NULL;
    }
    redisSetTimeout(ctx, tv);
    r = redisCommand(ctx, "AUTH %s %s", LAB_CLUSTER_ADMIN_USER, LAB_CLUSTER_ADMIN_PASS);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        if (!quiet) {
            lab__log("cluster: node %zu: AUTH admin: %s", i, r != NULL ? r->str : ctx->errstr);
        }
        if (r != NULL) {
            freeReplyObject(r);
        }
        redisFree(ctx);
        return NULL;
    }
    freeReplyObject(r);
    return ctx;
}

static int admin_v(lab_cluster *c, size_t i, redisReply **reply, int quiet, const char *fmt, va_list ap)
{
    redisContext *ctx;
    redisReply *r;

    *reply = NULL;
    ctx = admin_connect(c, i, quiet);
    if (ctx == NULL) {
        return -1;
    }
    r = redisvCommand(ctx, fmt, ap);
    if (r == NULL) {
        if (!quiet) {
            lab__log("cluster: node %zu: \"%s\": %s", i, fmt, ctx->errstr);
        }
        redisFree(ctx);
        return -1;
    }
    redisFree(ctx);
    *reply = r;
    return 0;
}

int lab_cluster_admin(lab_cluster *c, size_t i, struct redisReply **reply, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = admin_v(c, i, reply, 0, fmt, ap);
    va_end(ap);
    return rc;
}

int lab_cluster_admin_argv(lab_cluster *c, size_t i, struct redisReply **reply, int argc, const char **argv,
                           const size_t *argvlen)
{
    redisContext *ctx;
    redisReply *r;

    *reply = NULL;
    ctx = admin_connect(c, i, 0);
    if (ctx == NULL) {
        return -1;
    }
    r = redisCommandArgv(ctx, argc, argv, argvlen);
    if (r == NULL) {
        lab__log("cluster: node %zu: %s: %s", i, argc > 0 ? argv[0] : "(empty)", ctx->errstr);
        redisFree(ctx);
        return -1;
    }
    redisFree(ctx);
    *reply = r;
    return 0;
}

int lab_cluster_admin_all(lab_cluster *c, const char *fmt, ...)
{
    int rc = 0;
    for (size_t i = 0; i < c->n; i++) {
        redisReply *r;
        va_list ap;
        if (!c->node[i].alive) {
            continue;
        }
        va_start(ap, fmt);
        if (admin_v(c, i, &r, 0, fmt, ap) != 0) {
            rc = -1;
        } else {
            if (r->type == REDIS_REPLY_ERROR) {
                lab__log("cluster: node %zu: \"%s\": %s", i, fmt, r->str);
                rc = -1;
            }
            freeReplyObject(r);
        }
        va_end(ap);
    }
    return rc;
}

/* A command that must not answer with an error; its reply is dropped. */
static int admin_ok(lab_cluster *c, size_t i, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int admin_ok(lab_cluster *c, size_t i, const char *fmt, ...)
{
    redisReply *r;
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = admin_v(c, i, &r, 0, fmt, ap);
    va_end(ap);
    if (rc != 0) {
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        lab__log("cluster: node %zu: \"%s\": %s", i, fmt, r->str);
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}

/* The bulk or status text a command answers with, malloc'd, or NULL. */
static char *ctx_text(redisContext *ctx, const char *cmd)
{
    redisReply *r = redisCommand(ctx, cmd);
    char *s = NULL;
    if (r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)) {
        s = strdup(r->str);
    }
    if (r != NULL) {
        freeReplyObject(r);
    }
    return s;
}

static char *node_text(lab_cluster *c, size_t i, const char *cmd, int quiet)
{
    redisContext *ctx = admin_connect(c, i, quiet);
    char *s;
    if (ctx == NULL) {
        return NULL;
    }
    s = ctx_text(ctx, cmd);
    if (s == NULL && !quiet) {
        lab__log("cluster: node %zu: %s gave no text (%s)", i, cmd, ctx->err ? ctx->errstr : "wrong reply");
    }
    redisFree(ctx);
    return s;
}

/* ----- CLUSTER NODES ------------------------------------------------------ */

static int flag_set(const char *flags, const char *flag)
{
    size_t n = strlen(flag);
    for (const char *p = flags; *p != '\0';) {
        const char *e = strchr(p, ',');
        size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
        if (len == n && memcmp(p, flag, n) == 0) {
            return 1;
        }
        if (e == NULL) {
            break;
        }
        p = e + 1;
    }
    return 0;
}

static void view_parse(const lab_cluster *c, const char *text, lab_view *v)
{
    char *copy = strdup(text);
    char *line_save = NULL;

    memset(v->owner, -1, sizeof v->owner);
    for (size_t i = 0; i < LAB_CLUSTER_MAX_NODES; i++) {
        v->listed[i] = 0;
        v->master[i] = -2;
        v->failing[i] = 0;
    }
    v->self = -1;
    if (copy == NULL) {
        return;
    }
    for (char *line = strtok_r(copy, "\n", &line_save); line != NULL; line = strtok_r(NULL, "\n", &line_save)) {
        char *tok_save = NULL;
        char *tok[8];
        int ntok = 0;
        int idx;
        while (ntok < 8 && (tok[ntok] = strtok_r(ntok == 0 ? line : NULL, " \r", &tok_save)) != NULL) {
            ntok++;
        }
        if (ntok < 8) {
            continue;
        }
        idx = lab_cluster_index_of(c, tok[0]);
        if (idx >= 0) {
            int m = lab_cluster_index_of(c, tok[3]);
            v->listed[idx] = 1;
            v->master[idx] = flag_set(tok[2], "master") ? -1 : m >= 0 ? m : -2;
            v->failing[idx] = flag_set(tok[2], "fail?") || flag_set(tok[2], "fail") ||
                              flag_set(tok[2], "handshake") || flag_set(tok[2], "noaddr");
            if (flag_set(tok[2], "myself")) {
                v->self = idx;
            }
        }
        for (char *s = strtok_r(NULL, " \r", &tok_save); s != NULL; s = strtok_r(NULL, " \r", &tok_save)) {
            char *end;
            unsigned long a, b;
            if (*s == '[') {
                continue; /* [slot->-id] / [slot-<-id]: migration marks */
            }
            a = strtoul(s, &end, 10);
            b = *end == '-' ? strtoul(end + 1, &end, 10) : a;
            for (unsigned long k = a; k <= b && k < LAB_CLUSTER_SLOTS; k++) {
                v->owner[k] = (signed char)(idx >= 0 ? idx : -2);
            }
        }
    }
    free(copy);
}

static int node_view(lab_cluster *c, size_t i, lab_view *v, int quiet)
{
    char *s = node_text(c, i, "CLUSTER NODES", quiet);
    if (s == NULL) {
        return -1;
    }
    view_parse(c, s, v);
    free(s);
    return 0;
}

int lab_cluster_is_master(lab_cluster *c, size_t i)
{
    lab_view *v = malloc(sizeof *v);
    int rc = -1;
    if (v != NULL && node_view(c, i, v, 0) == 0 && v->self == (int)i) {
        rc = v->master[i] == -1 ? 1 : 0;
    }
    free(v);
    return rc;
}

int lab_cluster_master_of(lab_cluster *c, unsigned slot)
{
    lab_view *v = malloc(sizeof *v);
    int rc = -1;
    if (v == NULL || slot >= LAB_CLUSTER_SLOTS) {
        free(v);
        return -1;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (c->node[i].alive && node_view(c, i, v, 1) == 0) {
            rc = v->owner[slot] >= 0 ? v->owner[slot] : -1;
            break;
        }
    }
    free(v);
    if (rc < 0) {
        lab__log("cluster: no live node names a master for slot %u", slot);
    }
    return rc;
}

int lab_cluster_replica_of(lab_cluster *c, size_t m)
{
    lab_view *v = malloc(sizeof *v);
    int rc = -1;
    if (v == NULL) {
        return -1;
    }
    for (size_t j = 0; j < c->n && rc < 0; j++) {
        if (j != m && c->node[j].alive && node_view(c, j, v, 1) == 0 && v->self == (int)j &&
            v->master[j] == (int)m) {
            rc = (int)j;
        }
    }
    free(v);
    return rc;
}

/* ----- readiness ----------------------------------------------------------- */

/* One look at the whole cluster: 1 when lab_cluster_wait_ok()'s conditions
 * hold, else 0 with the first reason found in why. */
static int cluster_check(lab_cluster *c, char *why, size_t whylen)
{
    lab_view *v = calloc(c->n, sizeof *v);
    int link_up[LAB_CLUSTER_MAX_NODES] = {0};
    redisReply *slots[LAB_CLUSTER_MAX_NODES] = {0};
    int first = -1, ok = 0;

    if (v == NULL) {
        snprintf(why, whylen, "out of memory");
        return 0;
    }
    for (size_t i = 0; i < c->n; i++) {
        redisContext *ctx;
        char *info, *nodes, *repl;
        int state_ok;
        if (!c->node[i].alive) {
            continue;
        }
        ctx = admin_connect(c, i, 1);
        if (ctx == NULL) {
            snprintf(why, whylen, "node %zu does not answer", i);
            goto out;
        }
        info = ctx_text(ctx, "CLUSTER INFO");
        nodes = ctx_text(ctx, "CLUSTER NODES");
        repl = ctx_text(ctx, "INFO replication");
        slots[i] = redisCommand(ctx, "CLUSTER SLOTS");
        redisFree(ctx);
        state_ok = info != NULL && strstr(info, "cluster_state:ok") != NULL;
        if (nodes != NULL) {
            view_parse(c, nodes, &v[i]);
        }
        link_up[i] = repl != NULL && strstr(repl, "master_link_status:up") != NULL;
        free(info);
        free(nodes);
        free(repl);
        if (!state_ok) {
            snprintf(why, whylen, "node %zu: cluster_state is not ok", i);
            goto out;
        }
        if (v[i].self != (int)i) {
            snprintf(why, whylen, "node %zu: CLUSTER NODES has no myself line for %s", i, c->node[i].id);
            goto out;
        }
        if (first < 0) {
            first = (int)i;
        }
    }
    if (first < 0) {
        snprintf(why, whylen, "no live node");
        goto out;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (c->node[i].alive && memcmp(v[i].owner, v[first].owner, sizeof v[i].owner) != 0) {
            snprintf(why, whylen, "nodes %d and %zu disagree on the slot map", first, i);
            goto out;
        }
    }
    for (unsigned s = 0; s < LAB_CLUSTER_SLOTS; s++) {
        int o = v[first].owner[s];
        if (o < 0 || !c->node[o].alive || v[o].master[o] != -1) {
            snprintf(why, whylen, "slot %u has no live master (owner %d)", s, o);
            goto out;
        }
    }
    for (size_t j = 0; j < c->n; j++) {
        int m;
        if (!c->node[j].alive) {
            continue;
        }
        for (size_t i = 0; i < c->n; i++) {
            if (!c->node[i].alive) {
                continue;
            }
            if (!v[i].listed[j] || v[i].failing[j] || v[i].master[j] != v[j].master[j]) {
                snprintf(why, whylen, "node %zu's view of node %zu (listed %d, failing %d, master %d) differs from its own (master %d)",
                         i, j, v[i].listed[j], v[i].failing[j], v[i].master[j], v[j].master[j]);
                goto out;
            }
        }
        m = v[j].master[j];
        if (m >= 0 && c->node[m].alive && !link_up[j]) {
            snprintf(why, whylen, "replica %zu: link to master %d is not up", j, m);
            goto out;
        }
    }
    /* CLUSTER SLOTS leaves a replica out until it has reported a non-zero
     * replication offset: clients would miss it. */
    for (size_t i = 0; i < c->n; i++) {
        const redisReply *r = slots[i];
        if (!c->node[i].alive) {
            continue;
        }
        if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
            snprintf(why, whylen, "node %zu: no CLUSTER SLOTS", i);
            goto out;
        }
        for (size_t k = 0; k < r->elements; k++) {
            const redisReply *e = r->element[k];
            size_t want = 0;
            int m = -1;
            if (e->type == REDIS_REPLY_ARRAY && e->elements >= 3 && e->element[2]->type == REDIS_REPLY_ARRAY &&
                e->element[2]->elements >= 3 && e->element[2]->element[2]->type == REDIS_REPLY_STRING) {
                m = lab_cluster_index_of(c, e->element[2]->element[2]->str);
            }
            for (size_t j = 0; j < c->n && m >= 0; j++) {
                want += c->node[j].alive && v[j].master[j] == m;
            }
            if (m < 0 || e->elements - 3 != want) {
                snprintf(why, whylen, "node %zu: CLUSTER SLOTS entry %zu lists %zu replicas of node %d, not %zu", i,
                         k, e->elements >= 3 ? e->elements - 3 : 0, m, want);
                goto out;
            }
        }
    }
    ok = 1;
out:
    for (size_t i = 0; i < c->n; i++) {
        if (slots[i] != NULL) {
            freeReplyObject(slots[i]);
        }
    }
    free(v);
    return ok;
}

static void dump_state(lab_cluster *c)
{
    for (size_t i = 0; i < c->n; i++) {
        char *s;
        if (!c->node[i].alive) {
            lab__log("cluster: node %zu (%s): killed", i, c->node[i].hostname);
            continue;
        }
        s = node_text(c, i, "CLUSTER NODES", 1);
        lab__log("cluster: node %zu (%s, port %u, log %s) sees:\n%s", i, c->node[i].hostname,
                 c->node[i].srv.port, c->node[i].srv.log_path, s != NULL ? s : "(no answer)");
        free(s);
    }
}

int lab_cluster_wait_ok(lab_cluster *c, unsigned timeout_ms)
{
    long long end = lab_now_ms() + timeout_ms;
    char why[256] = "";
    for (;;) {
        if (cluster_check(c, why, sizeof why)) {
            return 0;
        }
        if (lab_now_ms() >= end) {
            break;
        }
        lab__sleep_ms(POLL_MS);
    }
    lab__log("cluster: not ok after %u ms: %s", timeout_ms, why);
    dump_state(c);
    return -1;
}

/* ----- processes ------------------------------------------------------------ */

static void cert_names(const lab_cluster *c, size_t i, char *cert, char *key, size_t len)
{
    const char *base;
    char nodename[16];
    if (c->opts.bad_cert_node == (int)i + 1) {
        base = i == 0 ? "node2" : "node1";
    } else if (c->opts.wildcard_cert) {
        base = "cluster-wildcard";
    } else {
        snprintf(nodename, sizeof nodename, "node%zu", i + 1);
        base = nodename;
    }
    snprintf(cert, len, "%s.crt", base);
    snprintf(key, len, "%s.key", base);
}

/* Starts (or, with restart, starts again on its old ports) node i. */
static int node_spawn(lab_cluster *c, size_t i, int restart)
{
    lab_cluster_node *nd = &c->node[i];
    char bus_s[8], timeout_s[16], pass_s[sizeof c->password + 1], cert[64], key[64];
    const char *extra[80];
    int tries = restart ? 1 : BUS_PORT_TRIES;

    cert_names(c, i, cert, key, sizeof cert);
    snprintf(timeout_s, sizeof timeout_s, "%u", c->opts.node_timeout_ms);
    snprintf(pass_s, sizeof pass_s, ">%s", c->password);
    for (int attempt = 0; attempt < tries; attempt++) {
        lab_redis_opts ro;
        size_t n = 0;
        int rc;
        if (!restart) {
            /* The bus port is ours to choose: the default (port + 10000)
             * overflows for the high ports lab_redis_start() picks. */
            nd->bus_port = lab_free_port();
        }
        snprintf(bus_s, sizeof bus_s, "%u", nd->bus_port);
        extra[n++] = "--cluster-enabled";
        extra[n++] = "yes";
        extra[n++] = "--cluster-config-file";
        extra[n++] = nd->conf_path;
        extra[n++] = "--cluster-port";
        extra[n++] = bus_s;
        extra[n++] = "--cluster-node-timeout";
        extra[n++] = timeout_s;
        extra[n++] = "--tls-cluster";
        extra[n++] = "yes";
        extra[n++] = "--tls-replication";
        extra[n++] = "yes";
        extra[n++] = "--cluster-announce-ip";
        extra[n++] = "127.0.0.1";
        extra[n++] = "--cluster-announce-hostname";
        extra[n++] = nd->hostname;
        extra[n++] = "--cluster-preferred-endpoint-type";
        extra[n++] = c->opts.announce_ips ? "ip" : "hostname";
        /* Tests decide which node serves what; redis must not move
         * replicas around or refuse a failover on its own. */
        extra[n++] = "--cluster-allow-replica-migration";
        extra[n++] = "no";
        extra[n++] = "--cluster-replica-validity-factor";
        extra[n++] = "0";
        extra[n++] = "--repl-diskless-sync-delay";
        extra[n++] = "0";
        /* No RDB files left behind by replication (persistence is off). */
        extra[n++] = "--repl-diskless-load";
        extra[n++] = "on-empty-db";
        extra[n++] = "--rdb-del-sync-files";
        extra[n++] = "yes";
        /* Master pings move the replication offset, which CLUSTER SLOTS
         * needs to be non-zero before it lists a replica. */
        extra[n++] = "--repl-ping-replica-period";
        extra[n++] = "1";
        extra[n++] = "--enable-debug-command";
        extra[n++] = "local";
        /* redis-server joins the words after --user into one ACL line. */
        extra[n++] = "--user";
        extra[n++] = "default";
        extra[n++] = "on";
        if (c->opts.password != NULL) {
            extra[n++] = "resetpass";
            extra[n++] = pass_s;
        } else {
            extra[n++] = "nopass";
        }
        extra[n++] = "~*";
        extra[n++] = "&*";
        extra[n++] = "+@all";
        extra[n++] = "--user";
        extra[n++] = LAB_CLUSTER_ADMIN_USER;
        extra[n++] = "on";
        extra[n++] = ">" LAB_CLUSTER_ADMIN_PASS;
        extra[n++] = "~*";
        extra[n++] = "&*";
        extra[n++] = "+@all";
        extra[n++] = "--user";
        extra[n++] = LAB_CLUSTER_REPL_USER;
        extra[n++] = "on";
        extra[n++] = ">" LAB_CLUSTER_REPL_PASS;
        extra[n++] = "+psync";
        extra[n++] = "+replconf";
        extra[n++] = "+ping";
        extra[n++] = "--masteruser";
        extra[n++] = LAB_CLUSTER_REPL_USER;
        extra[n++] = "--masterauth";
        extra[n++] = LAB_CLUSTER_REPL_PASS;
        extra[n] = NULL;

        memset(&ro, 0, sizeof ro);
        ro.tls = 1;
        ro.unix_socket = 1;
        ro.cert = cert;
        ro.key = key;
        ro.extra = extra;
        rc = restart ? lab_redis_restart(&nd->srv, &ro) : lab_redis_start(&nd->srv, &ro);
        if (rc == 0) {
            nd->alive = 1;
            return 0;
        }
    }
    lab__log("cluster: node %zu (%s) did not start", i, nd->hostname);
    return -1;
}

/* Certificate folders made before the cluster certificates existed are
 * complete in lab_certs()'s eyes: make it run gen-certs.sh again. */
static int cluster_certs(void)
{
    if (lab_certs(NULL) == NULL) {
        return -1;
    }
    if (access(lab_cert("node6.crt"), R_OK) != 0 || access(lab_cert("cluster-wildcard.crt"), R_OK) != 0) {
        unlink(lab_cert(".complete"));
        if (lab_certs(NULL) == NULL || access(lab_cert("node6.crt"), R_OK) != 0) {
            lab__log("cluster: no node certificates in %s", lab_certs(NULL));
            return -1;
        }
    }
    return 0;
}

/* Waits until node i lists node k under its real id, not as a handshake. */
static int wait_knows(lab_cluster *c, size_t i, size_t k, long long end)
{
    lab_view *v = malloc(sizeof *v);
    int rc = -1;
    if (v == NULL) {
        return -1;
    }
    while (rc != 0) {
        if (node_view(c, i, v, 1) == 0 && v->listed[k] && !v->failing[k]) {
            rc = 0;
        } else if (lab_now_ms() >= end) {
            lab__log("cluster: node %zu never learned about node %zu", i, k);
            break;
        } else {
            lab__sleep_ms(POLL_MS);
        }
    }
    free(v);
    return rc;
}

int lab_cluster_start(lab_cluster *c, const lab_cluster_opts *o)
{
    long long t0 = lab_now_ms(), end = t0 + START_TIMEOUT_MS;
    size_t masters;

    memset(c, 0, sizeof *c);
    c->opts = o != NULL ? *o : lab_cluster_default_opts();
    if (c->opts.masters == 0) {
        c->opts.masters = 3;
    }
    if (c->opts.node_timeout_ms == 0) {
        c->opts.node_timeout_ms = 2000;
    }
    if (c->opts.masters < 1 || c->opts.replicas < 0 || c->opts.replicas > 1 ||
        (size_t)c->opts.masters * (size_t)(1 + c->opts.replicas) > LAB_CLUSTER_MAX_NODES) {
        lab__log("cluster: %d masters with %d replicas each is not supported (at most %d nodes)",
                 c->opts.masters, c->opts.replicas, LAB_CLUSTER_MAX_NODES);
        return -1;
    }
    masters = (size_t)c->opts.masters;
    c->n = masters * (size_t)(1 + c->opts.replicas);
    if (c->opts.bad_cert_node < 0 || (size_t)c->opts.bad_cert_node > c->n) {
        lab__log("cluster: bad_cert_node %d is not a node", c->opts.bad_cert_node);
        return -1;
    }
    if (c->opts.password != NULL) {
        if (strlen(c->opts.password) >= sizeof c->password) {
            lab__log("cluster: password too long");
            return -1;
        }
        snprintf(c->password, sizeof c->password, "%s", c->opts.password);
        c->opts.password = c->password;
    }
    if (lab_workdir()[0] == '\0') {
        lab__log("cluster: call lab_init() first");
        return -1;
    }
    if (cluster_certs() != 0) {
        return -1;
    }
    if (snprintf(c->dir, sizeof c->dir, "%s/cluster-XXXXXX", lab_workdir()) >= (int)sizeof c->dir ||
        mkdtemp(c->dir) == NULL) {
        lab__log("cluster: cannot create a folder in %s: %s", lab_workdir(), strerror(errno));
        c->dir[0] = '\0';
        return -1;
    }
    for (size_t i = 0; i < c->n; i++) {
        lab_cluster_node *nd = &c->node[i];
        nd->srv.listen_fd = -1;
        int len = snprintf(nd->conf_path, sizeof nd->conf_path, "%s/node%zu.conf", c->dir, i + 1);
        snprintf(nd->hostname, sizeof nd->hostname, "node%zu.cluster.test", i + 1);
        if (len < 0 || (size_t)len >= sizeof nd->conf_path) {
            lab__log("cluster: work folder path too long: %s", c->dir);
            goto fail;
        }
    }
    for (size_t i = 0; i < c->n; i++) {
        if (node_spawn(c, i, 0) != 0) {
            goto fail;
        }
    }
    for (size_t i = 0; i < c->n; i++) {
        char *id = node_text(c, i, "CLUSTER MYID", 0);
        if (id == NULL || strlen(id) != 40) {
            lab__log("cluster: node %zu: no CLUSTER MYID", i);
            free(id);
            goto fail;
        }
        memcpy(c->node[i].id, id, 41);
        free(id);
        /* Distinct epochs up front spare the epoch-collision rounds. */
        if (admin_ok(c, i, "CLUSTER SET-CONFIG-EPOCH %u", (unsigned)i + 1) != 0) {
            goto fail;
        }
    }
    for (size_t m = 0; m < masters; m++) {
        unsigned lo = (unsigned)(m * LAB_CLUSTER_SLOTS / masters);
        unsigned hi = (unsigned)((m + 1) * LAB_CLUSTER_SLOTS / masters) - 1;
        if (admin_ok(c, m, "CLUSTER ADDSLOTSRANGE %u %u", lo, hi) != 0) {
            goto fail;
        }
    }
    for (size_t i = 1; i < c->n; i++) {
        if (admin_ok(c, 0, "CLUSTER MEET 127.0.0.1 %u %u", c->node[i].srv.port, c->node[i].bus_port) != 0) {
            goto fail;
        }
    }
    for (size_t m = 0; m < masters && c->opts.replicas > 0; m++) {
        /* Always replicated, even on an empty node: the replicas then start
         * from a non-zero offset and show up in CLUSTER SLOTS sooner. */
        if (admin_ok(c, m, "FLUSHALL") != 0) {
            goto fail;
        }
    }
    for (size_t r = masters; r < c->n; r++) {
        size_t m = r - masters;
        if (wait_knows(c, r, m, end) != 0 || admin_ok(c, r, "CLUSTER REPLICATE %s", c->node[m].id) != 0) {
            goto fail;
        }
    }
    if (lab_cluster_wait_ok(c, end > lab_now_ms() ? (unsigned)(end - lab_now_ms()) : 0) != 0) {
        goto fail;
    }
    c->start_ms = lab_now_ms() - t0;
    return 0;
fail:
    lab__log("cluster: start failed after %lld ms", lab_now_ms() - t0);
    lab_cluster_stop(c);
    return -1;
}

void lab_cluster_stop(lab_cluster *c)
{
    if (c == NULL) {
        return;
    }
    /* SIGTERM to all first: the nodes then shut down side by side. */
    for (size_t i = 0; i < c->n; i++) {
        if (c->node[i].srv.pid > 0) {
            lab_signal(c->node[i].srv.pid, SIGTERM);
        }
    }
    for (size_t i = 0; i < c->n; i++) {
        lab_stop(&c->node[i].srv);
        c->node[i].alive = 0;
    }
    if (c->dir[0] != '\0') {
        DIR *d = opendir(c->dir);
        struct dirent *e;
        char p[LAB_PATH_MAX * 2];
        while (d != NULL && (e = readdir(d)) != NULL) {
            if (e->d_name[0] != '.') {
                snprintf(p, sizeof p, "%s/%s", c->dir, e->d_name);
                unlink(p);
            }
        }
        if (d != NULL) {
            closedir(d);
        }
        rmdir(c->dir);
        c->dir[0] = '\0';
    }
}

int lab_cluster_kill(lab_cluster *c, size_t i)
{
    if (i >= c->n || !c->node[i].alive || c->node[i].srv.pid <= 0) {
        lab__log("cluster: kill: node %zu is not running", i);
        return -1;
    }
    if (lab_signal(c->node[i].srv.pid, SIGKILL) != 0) {
        lab__log("cluster: kill node %zu (pid %d): %s", i, (int)c->node[i].srv.pid, strerror(errno));
        return -1;
    }
    c->node[i].alive = 0;
    /* Reaps the process and removes its scratch folder; ports stay. */
    lab_stop(&c->node[i].srv);
    return 0;
}

int lab_cluster_restart(lab_cluster *c, size_t i)
{
    char *id;
    if (i >= c->n || c->node[i].conf_path[0] == '\0') {
        lab__log("cluster: restart: no node %zu", i);
        return -1;
    }
    c->node[i].alive = 0;
    if (node_spawn(c, i, 1) != 0) {
        return -1;
    }
    id = node_text(c, i, "CLUSTER MYID", 0);
    if (id == NULL || strcmp(id, c->node[i].id) != 0) {
        lab__log("cluster: node %zu came back as %s, not %s", i, id != NULL ? id : "(nothing)", c->node[i].id);
        free(id);
        return -1;
    }
    free(id);
    return 0;
}

int lab_cluster_failover(lab_cluster *c, size_t r, unsigned timeout_ms)
{
    long long end = lab_now_ms() + timeout_ms;
    redisReply *rep;

    if (lab_cluster_is_master(c, r) != 0) {
        lab__log("cluster: failover: node %zu is not a replica", r);
        return -1;
    }
    if (lab_cluster_admin(c, r, &rep, "CLUSTER FAILOVER") != 0) {
        return -1;
    }
    if (rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "FORCE") != NULL) {
        freeReplyObject(rep);
        if (lab_cluster_admin(c, r, &rep, "CLUSTER FAILOVER FORCE") != 0) {
            return -1;
        }
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        lab__log("cluster: node %zu: CLUSTER FAILOVER: %s", r, rep->str);
        freeReplyObject(rep);
        return -1;
    }
    freeReplyObject(rep);
    while (lab_cluster_is_master(c, r) != 1) {
        if (lab_now_ms() >= end) {
            lab__log("cluster: node %zu is still no master after %u ms", r, timeout_ms);
            dump_state(c);
            return -1;
        }
        lab__sleep_ms(POLL_MS);
    }
    return lab_cluster_wait_ok(c, end > lab_now_ms() ? (unsigned)(end - lab_now_ms()) : 0);
}

/* ----- slot migration ------------------------------------------------------- */

static int check_pair(lab_cluster *c, unsigned slot, size_t src, size_t dst)
{
    if (slot >= LAB_CLUSTER_SLOTS || src >= c->n || dst >= c->n || src == dst) {
        lab__log("cluster: migrate: bad arguments (slot %u, %zu -> %zu)", slot, src, dst);
        return -1;
    }
    return 0;
}

int lab_cluster_migrate_begin(lab_cluster *c, unsigned slot, size_t src, size_t dst)
{
    if (check_pair(c, slot, src, dst) != 0 ||
        admin_ok(c, dst, "CLUSTER SETSLOT %u IMPORTING %s", slot, c->node[src].id) != 0 ||
        admin_ok(c, src, "CLUSTER SETSLOT %u MIGRATING %s", slot, c->node[dst].id) != 0) {
        return -1;
    }
    return 0;
}

int lab_cluster_migrate_keys(lab_cluster *c, unsigned slot, size_t src, size_t dst, unsigned batch)
{
    char port_s[8];
    redisReply *keys, *r;
    const char **argv;
    size_t *lens;
    size_t argc = 0;
    int rc = -1;

    if (check_pair(c, slot, src, dst) != 0 || batch == 0) {
        return -1;
    }
    if (lab_cluster_admin(c, src, &keys, "CLUSTER GETKEYSINSLOT %u %u", slot, batch) != 0) {
        return -1;
    }
    if (keys->type != REDIS_REPLY_ARRAY) {
        lab__log("cluster: node %zu: CLUSTER GETKEYSINSLOT: %s", src, keys->type == REDIS_REPLY_ERROR ? keys->str : "not an array");
        freeReplyObject(keys);
        return -1;
    }
    if (keys->elements == 0) {
        freeReplyObject(keys);
        return 0;
    }
    argv = calloc(keys->elements + 12, sizeof *argv);
    lens = calloc(keys->elements + 12, sizeof *lens);
    if (argv == NULL || lens == NULL) {
        goto out;
    }
    snprintf(port_s, sizeof port_s, "%u", c->node[dst].srv.port);
    /* The destination listens on TLS only, so this succeeds only because
     * tls-cluster makes MIGRATE speak TLS. */
    argv[argc++] = "MIGRATE";
    argv[argc++] = "127.0.0.1";
    argv[argc++] = port_s;
    argv[argc++] = "";
    argv[argc++] = "0";
    argv[argc++] = MIGRATE_TIMEOUT_MS;
    argv[argc++] = "AUTH2";
    argv[argc++] = LAB_CLUSTER_ADMIN_USER;
    argv[argc++] = LAB_CLUSTER_ADMIN_PASS;
    argv[argc++] = "KEYS";
    for (size_t k = 0; k < argc; k++) {
        lens[k] = strlen(argv[k]);
    }
    for (size_t k = 0; k < keys->elements; k++) {
        argv[argc] = keys->element[k]->str;
        lens[argc++] = keys->element[k]->len;
    }
    if (lab_cluster_admin_argv(c, src, &r, (int)argc, argv, lens) != 0) {
        goto out;
    }
    if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0) {
        rc = (int)keys->elements;
    } else if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "NOKEY") == 0) {
        /* The keys went away in between: nothing moved, but some may be left. */
        rc = lab_cluster_migrate_keys(c, slot, src, dst, batch);
    } else {
        lab__log("cluster: node %zu: MIGRATE to node %zu: %s", src, dst, r->str != NULL ? r->str : "unexpected reply");
    }
    freeReplyObject(r);
out:
    free(argv);
    free(lens);
    freeReplyObject(keys);
    return rc;
}

int lab_cluster_migrate_end(lab_cluster *c, unsigned slot, size_t src, size_t dst)
{
    if (check_pair(c, slot, src, dst) != 0 ||
        admin_ok(c, dst, "CLUSTER SETSLOT %u NODE %s", slot, c->node[dst].id) != 0 ||
        admin_ok(c, src, "CLUSTER SETSLOT %u NODE %s", slot, c->node[dst].id) != 0) {
        return -1;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (i == src || i == dst || !c->node[i].alive || lab_cluster_is_master(c, i) != 1) {
            continue;
        }
        if (admin_ok(c, i, "CLUSTER SETSLOT %u NODE %s", slot, c->node[dst].id) != 0) {
            return -1;
        }
    }
    return 0;
}

#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "topology.h"

static void node_release(redtls__cluster_node *n)
{
    free(n->host);
    free(n->id);
    free(n->hostname);
    free(n->ip);
}

void redtls__topology_free(redtls__topology *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nnodes; i++)
        node_release(&t->nodes[i]);
    for (size_t i = 0; i < t->nranges; i++)
        free(t->ranges[i].replicas);
    free(t->nodes);
    free(t->ranges);
    free(t);
}

static char *dup_str(const char *s, size_t len)
{
    char *p = malloc(len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

static int is_string(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* Result of reading one node entry. */
enum { NODE_OK, NODE_SKIP, NODE_BAD, NODE_NOMEM };

/* Reads [endpoint, port, id?, metadata?] into n. */
static int read_node(const redisReply *e, const char *asked_host, redtls__cluster_node *n, char *err)
{
    memset(n, 0, sizeof *n);
    /* The endpoint is a string, or a null bulk: Redis documents null as
     * "the endpoint this command was sent to", the same as "". */
    if (!e || e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
        !(is_string(e->element[0]) || e->element[0]->type == REDIS_REPLY_NIL) ||
        e->element[1]->type != REDIS_REPLY_INTEGER) {
        redtls__fail(err, REDTLS_E_PROTOCOL, "CLUSTER SLOTS: a node entry is not [endpoint, port, ...]");
        return NODE_BAD;
    }
    const redisReply *ep = e->element[0];
    long long port = e->element[1]->integer;
    const char *host = ep->type == REDIS_REPLY_NIL ? "" : ep->str;
    size_t hlen = ep->type == REDIS_REPLY_NIL ? 0 : ep->len;
    if (hlen == 1 && host[0] == '?')
        return NODE_SKIP; /* the node has no endpoint clients can use */
    if (port < 1 || port > 65535) {
        redtls__fail(err, REDTLS_E_PROTOCOL, "CLUSTER SLOTS: port %lld out of range", port);
        return NODE_BAD;
    }
    if (hlen == 0) {
        host = asked_host ? asked_host : "";
        hlen = strlen(host);
    }
    if (hlen == 0 || memchr(host, '\0', hlen)) {
        redtls__fail(err, REDTLS_E_PROTOCOL, "CLUSTER SLOTS: a node has an empty or invalid host");
        return NODE_BAD;
    }
    n->port = (uint16_t)port;
    n->host = dup_str(host, hlen);
    n->id = e->elements > 2 && is_string(e->element[2]) ? dup_str(e->element[2]->str, e->element[2]->len)
                                                        : dup_str("", 0);
    if (!n->host || !n->id)
        return NODE_NOMEM;
    /* Redis 7 metadata: a flat list of key, value (a map under RESP3, with
     * its keys and values interleaved the same way). */
    if (e->elements > 3 && (e->element[3]->type == REDIS_REPLY_ARRAY || e->element[3]->type == REDTLS_REPLY_MAP)) {
        const redisReply *m = e->element[3];
        for (size_t i = 0; i + 1 < m->elements; i += 2) {
            const redisReply *k = m->element[i], *v = m->element[i + 1];
            if (!is_string(k) || !is_string(v) || v->len == 0)
                continue;
            char **slot = strcmp(k->str, "hostname") == 0 ? &n->hostname : strcmp(k->str, "ip") == 0 ? &n->ip : NULL;
            if (slot && !*slot && !(*slot = dup_str(v->str, v->len)))
                return NODE_NOMEM;
        }
    }
    return NODE_OK;
}

/* Index of the node host:port in t, adding it when new (taking n's
 * strings); -1 on no memory. */
static long intern_node(redtls__topology *t, redtls__cluster_node *n)
{
    for (size_t i = 0; i < t->nnodes; i++) {
        if (t->nodes[i].port == n->port && strcmp(t->nodes[i].host, n->host) == 0) {
            node_release(n);
            return (long)i;
        }
    }
    redtls__cluster_node *v = realloc(t->nodes, (t->nnodes + 1) * sizeof *v);
    if (!v) {
        node_release(n);
        return -1;
    }
    t->nodes = v;
    t->nodes[t->nnodes] = *n;
    return (long)t->nnodes++;
}

static int by_start(const void *a, const void *b)
{
    const redtls__slot_range *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

/* Reads one [start, end, master, replica...] entry into t. */
static redtls_status read_range(redtls__topology *t, const redisReply *e, const char *asked_host, char *err)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER ||
        e->element[1]->type != REDIS_REPLY_INTEGER)
        return redtls__fail(err, REDTLS_E_PROTOCOL, "CLUSTER SLOTS: an entry is not [start, end, master, ...]");
    long long start = e->element[0]->integer, end = e->element[1]->integer;
    if (start < 0 || end > 16383 || start > end)
        return redtls__fail(err, REDTLS_E_PROTOCOL, "CLUSTER SLOTS: slot range %lld-%lld is not within 0-16383",
                            start, end);
    redtls__slot_range r = {(uint16_t)start, (uint16_t)end, 0, NULL, 0};
    int have_master = 0;
    if (e->elements > 3 && !(r.replicas = calloc(e->elements - 3, sizeof *r.replicas)))
        return redtls__fail(err, REDTLS_E_NOMEM, "out of memory");
    for (size_t i = 2; i < e->elements; i++) {
        redtls__cluster_node n;
        int rc = read_node(e->element[i], asked_host, &n, err);
        if (rc == NODE_SKIP)
            continue;
        long idx = rc == NODE_OK ? intern_node(t, &n) : -1;
        if (rc == NODE_BAD) {
            node_release(&n);
            free(r.replicas);
            return REDTLS_E_PROTOCOL;
        }
        if (idx < 0) {
            if (rc == NODE_NOMEM)
                node_release(&n);
            free(r.replicas);
            return redtls__fail(err, REDTLS_E_NOMEM, "out of memory");
        }
        /* The first usable node is the master; a skipped master leaves the
         * range without one. */
        if (i == 2) {
            r.master = (size_t)idx;
            have_master = 1;
        } else if (have_master) {
            r.replicas[r.nreplicas++] = (size_t)idx;
        }
    }
    if (!have_master) {
        free(r.replicas);
        return REDTLS_OK; /* nobody can serve it; the range stays uncovered */
    }
    redtls__slot_range *v = realloc(t->ranges, (t->nranges + 1) * sizeof *v);
    if (!v) {
        free(r.replicas);
        return redtls__fail(err, REDTLS_E_NOMEM, "out of memory");
    }
    t->ranges = v;
    t->ranges[t->nranges++] = r;
    return REDTLS_OK;
}

redtls_status redtls__topology_parse(const struct redisReply *slots, const char *asked_host,
                                     redtls__topology **out, char *err)
{
    *out = NULL;
    if (!slots || slots->type != REDIS_REPLY_ARRAY)
        return redtls__fail(err, REDTLS_E_PROTOCOL, "CLUSTER SLOTS did not answer with an array");
    redtls__topology *t = calloc(1, sizeof *t);
    if (!t)
        return redtls__fail(err, REDTLS_E_NOMEM, "out of memory");
    redtls_status st = REDTLS_OK;
    for (size_t i = 0; i < slots->elements && st == REDTLS_OK; i++)
        st = read_range(t, slots->element[i], asked_host, err);
    if (st == REDTLS_OK && t->nranges > 1)
        qsort(t->ranges, t->nranges, sizeof *t->ranges, by_start);
    for (size_t i = 0; st == REDTLS_OK && i < t->nranges; i++) {
        if (i > 0 && t->ranges[i].start <= t->ranges[i - 1].end)
            st = redtls__fail(err, REDTLS_E_PROTOCOL, "CLUSTER SLOTS: ranges %u-%u and %u-%u overlap",
                              (unsigned)t->ranges[i - 1].start, (unsigned)t->ranges[i - 1].end,
                              (unsigned)t->ranges[i].start, (unsigned)t->ranges[i].end);
        t->covered += (size_t)(t->ranges[i].end - t->ranges[i].start) + 1;
    }
    if (st != REDTLS_OK) {
        redtls__topology_free(t);
        return st;
    }
    *out = t;
    return REDTLS_OK;
}

const redtls__slot_range *redtls__topology_find(const redtls__topology *t, unsigned slot)
{
    size_t lo = 0, hi = t->nranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const redtls__slot_range *r = &t->ranges[mid];
        if (slot < r->start)
            hi = mid;
        else if (slot > r->end)
            lo = mid + 1;
        else
            return r;
    }
    return NULL;
}

long redtls__topology_master(const redtls__topology *t, unsigned slot)
{
    const redtls__slot_range *r = redtls__topology_find(t, slot);
    return r ? (long)r->master : -1;
}

/* Cluster topology: a validated slot map built from a CLUSTER SLOTS reply.
 * Parsing and validation only; the cluster handle that routes with it comes
 * later. An invalid reply is refused whole, so the caller keeps its
 * previous map. */
#ifndef REDTLS_CLUSTER_TOPOLOGY_H
#define REDTLS_CLUSTER_TOPOLOGY_H

#include "common.h"

struct redisReply;

typedef struct redtls__cluster_node {
    char *host;     /* where to connect: the preferred endpoint, or the
                     * address asked when the server announced "" */
    uint16_t port;
    char *id;       /* node id, "" when not given */
    char *hostname; /* Redis 7 "hostname" metadata, or NULL */
    char *ip;       /* Redis 7 "ip" metadata, or NULL */
} redtls__cluster_node;

typedef struct redtls__slot_range {
    uint16_t start, end; /* inclusive */
    size_t master;       /* index into nodes */
    size_t *replicas;    /* indexes into nodes */
    size_t nreplicas;
} redtls__slot_range;

typedef struct redtls__topology {
    redtls__cluster_node *nodes; /* each host:port once */
    size_t nnodes;
    redtls__slot_range *ranges; /* sorted by start, not overlapping */
    size_t nranges;
    size_t covered; /* slots with a master */
} redtls__topology;

/* Builds a topology from a CLUSTER SLOTS reply. asked_host replaces an
 * empty or null endpoint ("the address you asked"); nodes announced as "?" (no
 * usable endpoint) are skipped, and a range left without a master is
 * dropped. REDTLS_E_PROTOCOL (message says what is wrong) for a reply of
 * the wrong shape, a range outside 0..16383 or upside down, overlapping
 * ranges, an empty host or a bad port; REDTLS_E_NOMEM. */
redtls_status redtls__topology_parse(const struct redisReply *slots, const char *asked_host,
                                     redtls__topology **out, char *err);

/* The range holding slot, or NULL. */
const redtls__slot_range *redtls__topology_find(const redtls__topology *t, unsigned slot);

/* Index of the master serving slot, or -1 when no range covers it. */
long redtls__topology_master(const redtls__topology *t, unsigned slot);

void redtls__topology_free(redtls__topology *t);

#endif

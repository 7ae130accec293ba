/* libFuzzer target: the CLUSTER SLOTS topology parser, on whatever reply
 * the limited reader makes of the input.
 *
 * Invariants: a refused map comes back as NULL with REDTLS_E_PROTOCOL (or
 * NOMEM) and a message; an accepted one has sorted, non-overlapping ranges
 * inside 0..16383, a master index for each, replica indexes in range,
 * non-empty hosts and non-zero ports, a coverage count that adds up, and a
 * slot lookup that agrees with a linear scan. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "topology.h"
#include "reader.h"

#define CHECK(cond)                                                                                              \
    do {                                                                                                         \
        if (!(cond)) {                                                                                           \
            fprintf(stderr, "fuzz_topology: invariant failed at line %d: %s\n", __LINE__, #cond);                \
            abort();                                                                                             \
        }                                                                                                        \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_map(const redtls__topology *t)
{
    size_t covered = 0;
    for (size_t i = 0; i < t->nranges; i++) {
        const redtls__slot_range *r = &t->ranges[i];
        CHECK(r->start <= r->end && r->end <= 16383);
        CHECK(i == 0 || r->start > t->ranges[i - 1].end);
        CHECK(r->master < t->nnodes);
        for (size_t k = 0; k < r->nreplicas; k++)
            CHECK(r->replicas[k] < t->nnodes);
        covered += (size_t)(r->end - r->start) + 1;
    }
    CHECK(covered == t->covered);
    for (size_t i = 0; i < t->nnodes; i++) {
        CHECK(t->nodes[i].host && t->nodes[i].host[0]);
        CHECK(t->nodes[i].port != 0);
        CHECK(t->nodes[i].id);
    }
    for (unsigned slot = 0; slot < 16384; slot += 61) {
        long want = -1;
        for (size_t i = 0; i < t->nranges; i++)
            if (slot >= t->ranges[i].start && slot <= t->ranges[i].end)
                want = (long)t->ranges[i].master;
        CHECK(redtls__topology_master(t, slot) == want);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    redtls__reader rd;
    redtls__limits limits = {4096, 4096, 1 << 20};
    char err[REDTLS__ERRMSG_MAX];
    if (redtls__reader_init(&rd, &limits) != REDTLS_OK)
        return 0;
    struct redisReply *reply = NULL;
    if (redtls__reader_feed(&rd, (const char *)data, size, err) == REDTLS_OK &&
        redtls__reader_get(&rd, &reply, err) == REDTLS_OK && reply) {
        redtls__topology *t = NULL;
        err[0] = '\0';
        redtls_status st = redtls__topology_parse(reply, (size & 1) ? "asked.example" : NULL, &t, err);
        if (st == REDTLS_OK) {
            CHECK(t != NULL);
            check_map(t);
            redtls__topology_free(t);
        } else {
            CHECK(t == NULL);
            CHECK(st == REDTLS_E_PROTOCOL || st == REDTLS_E_NOMEM);
            CHECK(err[0] != '\0');
        }
        freeReplyObject(reply);
    }
    redtls__reader_free(&rd);
    return 0;
}

/* redtls-migrate --verify: every source key compared with the target's by
 * DUMP payload and remaining TTL. Sets and hashes stored as hash tables
 * dump their elements in an order that depends on each server's hash seed,
 * so when their payloads differ their contents are compared instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate.h"

/* Remaining TTLs are read on the two sides moments apart, and the copy
 * makes the target's slightly shorter. */
#define VERIFY_TTL_TOLERANCE_MS 2000
#define VERIFY_SHOW_MAX 100

struct verify {
    const struct migrate_options *o;
    struct side *from, *to;
    unsigned long long compared, gone, missing, different, ttl, shown;
};

static void show(struct verify *v, const char *what, const char *key, size_t len, const char *detail)
{
    size_t i;

    if (v->shown++ >= VERIFY_SHOW_MAX)
        return;
    printf("difference: %s '", what);
    for (i = 0; i < len && i < 60; i++) {
        unsigned char ch = (unsigned char)key[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '\'')
            putchar(ch);
        else
            printf("\\x%02x", ch);
    }
    printf("%s'%s%s\n", len > 60 ? "..." : "", detail != NULL ? " " : "", detail != NULL ? detail : "");
}

struct elem {
    const char *a, *b; /* member, or field and value */
    size_t al, bl;
};

static int cmp_bytes(const char *x, size_t xl, const char *y, size_t yl)
{
    int c = memcmp(x, y, xl < yl ? xl : yl);
    return c != 0 ? c : (xl > yl) - (xl < yl);
}

static int cmp_elem(const void *pa, const void *pb)
{
    const struct elem *a = pa, *b = pb;
    int c = cmp_bytes(a->a, a->al, b->a, b->al);
    return c != 0 || a->b == NULL ? c : cmp_bytes(a->b, a->bl, b->b, b->bl);
}

/* The elements of an SMEMBERS (step 1) or HGETALL (step 2) reply, sorted.
 * NULL when it is not such an array or memory runs out. */
static struct elem *sorted_elems(const struct redisReply *r, size_t step, size_t *n)
{
    size_t len, i;
    struct elem *e;

    if (redtls_reply_type(r) != REDTLS_REPLY_ARRAY || redtls_reply_len(r) % step != 0)
        return NULL;
    len = redtls_reply_len(r) / step;
    e = calloc(len + 1, sizeof(*e));
    if (e == NULL)
        return NULL;
    for (i = 0; i < len; i++) {
        e[i].a = redtls_reply_str(redtls_reply_element(r, i * step), &e[i].al);
        if (step == 2)
            e[i].b = redtls_reply_str(redtls_reply_element(r, i * step + 1), &e[i].bl);
    }
    qsort(e, len, sizeof(*e), cmp_elem);
    *n = len;
    return e;
}

/* 1 when a set or hash whose payloads differ holds the same elements on
 * both sides, 0 when not (or it is another type), -1 on a failed read. */
static int same_contents(struct verify *v, const char *key, size_t len)
{
    const char *argv[2] = {"TYPE", key};
    size_t lens[2] = {4, len};
    struct redisReply *t = NULL, *a = NULL, *b = NULL;
    struct elem *ea = NULL, *eb = NULL;
    size_t na = 0, nb = 0, step, i;
    int same = 0;

    if (side_append(v->from, 2, argv, lens) != REDTLS_OK || side_get_reply(v->from, &t) != REDTLS_OK)
        goto failed;
    if (redtls_reply_type(t) != REDTLS_REPLY_STATUS)
        goto done;
    const char *type = redtls_reply_str(t, NULL);
    if (strcmp(type, "set") == 0) {
        argv[0] = "SMEMBERS", lens[0] = 8, step = 1;
    } else if (strcmp(type, "hash") == 0) {
        argv[0] = "HGETALL", lens[0] = 7, step = 2;
    } else {
        goto done;
    }
    if (side_append(v->from, 2, argv, lens) != REDTLS_OK || side_get_reply(v->from, &a) != REDTLS_OK ||
        side_append(v->to, 2, argv, lens) != REDTLS_OK || side_get_reply(v->to, &b) != REDTLS_OK)
        goto failed;
    ea = sorted_elems(a, step, &na);
    eb = sorted_elems(b, step, &nb);
    if (ea == NULL || eb == NULL || na != nb)
        goto done;
    for (i = 0; i < na && cmp_elem(&ea[i], &eb[i]) == 0; i++)
        ;
    same = i == na;
done:
    free(ea);
    free(eb);
    redtls_reply_free(t);
    redtls_reply_free(a);
    redtls_reply_free(b);
    return same;
failed:
    redtls_reply_free(t);
    redtls_reply_free(a);
    redtls_reply_free(b);
    return -1;
}

static long long integer_or(const struct redisReply *r, long long fallback)
{
    return redtls_reply_type(r) == REDTLS_REPLY_INTEGER ? redtls_reply_integer(r) : fallback;
}

/* DUMP + PTTL for the keys of one SCAN reply on both sides, pipelined. */
static int verify_batch(struct verify *v, const struct redisReply *keys)
{
    size_t n = redtls_reply_len(keys), i;
    struct redisReply **rep = calloc(n * 4 + 1, sizeof(*rep));
    int rc = EXIT_CONTINUE;
    redtls_status st = REDTLS_OK;

    if (rep == NULL) {
        fputs("redtls-migrate: out of memory\n", stderr);
        return EXIT_CONNECT;
    }
    for (i = 0; i < n && st == REDTLS_OK; i++) {
        size_t len;
        const char *k = redtls_reply_str(redtls_reply_element(keys, i), &len);
        const char *d[2] = {"DUMP", k}, *t[2] = {"PTTL", k};
        size_t dl[2] = {4, len}, tl[2] = {4, len};
        if ((st = side_append(v->from, 2, d, dl)) == REDTLS_OK && (st = side_append(v->from, 2, t, tl)) == REDTLS_OK &&
            (st = side_append(v->to, 2, d, dl)) == REDTLS_OK)
            st = side_append(v->to, 2, t, tl);
    }
    for (i = 0; i < n && st == REDTLS_OK; i++)
        if ((st = side_get_reply(v->from, &rep[i * 4])) == REDTLS_OK)
            st = side_get_reply(v->from, &rep[i * 4 + 1]);
    if (st != REDTLS_OK) {
        fprintf(stderr, "redtls-migrate: source: %s\n", side_errmsg(v->from, st));
        rc = EXIT_CONNECT;
        goto out;
    }
    for (i = 0; i < n && st == REDTLS_OK; i++)
        if ((st = side_get_reply(v->to, &rep[i * 4 + 2])) == REDTLS_OK)
            st = side_get_reply(v->to, &rep[i * 4 + 3]);
    if (st != REDTLS_OK) {
        fprintf(stderr, "redtls-migrate: target: %s\n", side_errmsg(v->to, st));
        rc = EXIT_CONNECT;
        goto out;
    }
    for (i = 0; i < n; i++) {
        size_t len, sl, tl;
        const char *k = redtls_reply_str(redtls_reply_element(keys, i), &len);
        struct redisReply **r = &rep[i * 4];
        long long sttl = integer_or(r[1], -2), tttl = integer_or(r[3], -2);
        if (redtls_reply_type(r[0]) != REDTLS_REPLY_STRING || sttl == -2) {
            v->gone++; /* deleted or expired on the source since the SCAN */
            continue;
        }
        v->compared++;
        if (redtls_reply_type(r[2]) != REDTLS_REPLY_STRING && sttl >= 0 && sttl <= VERIFY_TTL_TOLERANCE_MS) {
            v->compared--;
            v->gone++; /* expiring: the copy's expiry may come a little earlier */
            continue;
        }
        if (redtls_reply_type(r[2]) != REDTLS_REPLY_STRING) {
            v->missing++;
            show(v, "missing", k, len, NULL);
            continue;
        }
        const char *sp = redtls_reply_str(r[0], &sl), *tp = redtls_reply_str(r[2], &tl);
        if (sl != tl || memcmp(sp, tp, sl) != 0) {
            int same = same_contents(v, k, len);
            if (same < 0) {
                fprintf(stderr, "redtls-migrate: verify: reading a key's contents failed\n");
                rc = EXIT_CONNECT;
                goto out;
            }
            if (!same) {
                v->different++;
                show(v, "value", k, len, NULL);
                continue;
            }
        }
        if ((sttl == -1) != (tttl == -1) ||
            (sttl >= 0 && (tttl > sttl + VERIFY_TTL_TOLERANCE_MS || tttl < sttl - VERIFY_TTL_TOLERANCE_MS))) {
            char detail[80];
            snprintf(detail, sizeof detail, "(TTL %lld ms on the source, %lld ms on the target)", sttl, tttl);
            v->ttl++;
            show(v, "ttl", k, len, detail);
        }
    }
out:
    for (i = 0; i < n * 4; i++)
        redtls_reply_free(rep[i]);
    free(rep);
    return rc;
}

int verify_run(const struct migrate_options *o, struct side *from, struct side *to)
{
    struct verify v;
    const char *nodes[MAX_NODES];
    size_t nn, i;
    int rc = EXIT_CONTINUE;
    char count[32];

    memset(&v, 0, sizeof v);
    v.o = o;
    v.from = from;
    v.to = to;
    snprintf(count, sizeof count, "%ld", o->batch);
    nn = side_masters(from, nodes, MAX_NODES);
    for (i = 0; i < nn && rc == EXIT_CONTINUE; i++) {
        char cursor[32] = "0";
        do {
            struct redisReply *rep = NULL;
            rc = side_scan(from, nodes[i], o->match, count, cursor, sizeof cursor, &rep);
            if (rc == EXIT_CONTINUE)
                rc = verify_batch(&v, redtls_reply_element(rep, 1));
            redtls_reply_free(rep);
        } while (rc == EXIT_CONTINUE && strcmp(cursor, "0") != 0);
    }
    if (v.shown > VERIFY_SHOW_MAX)
        printf("difference: ... %llu more not shown\n", v.shown - VERIFY_SHOW_MAX);
    printf("verify: keys compared: %llu\n"
           "verify: gone from the source meanwhile: %llu\n"
           "verify: missing on the target: %llu\n"
           "verify: different values: %llu\n"
           "verify: different TTLs: %llu\n",
           v.compared, v.gone, v.missing, v.different, v.ttl);
    fflush(stdout);
    if (rc != EXIT_CONTINUE)
        return rc;
    return v.missing + v.different + v.ttl > 0 ? EXIT_SOME_FAILED : EXIT_ALL_COPIED;
}

/* redtls-migrate --verify: source keys compared with the target's by DUMP
 * payload and remaining TTL, every key or a random sample of them, and the
 * key counts of the two sides. Sets and hashes stored as hash tables dump
 * their elements in an order that depends on each server's hash seed, and
 * lists and streams copied in pieces are laid out (quicklist nodes,
 * listpacks) by the writes that made them, so when their payloads differ
 * their contents are compared instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "migrate.h"

/* Remaining TTLs are read on the two sides moments apart, and the copy
 * makes the target's slightly shorter. */
#define VERIFY_TTL_TOLERANCE_MS 2000
#define VERIFY_SHOW_MAX 100
/* Elements of a list, entries of a stream, read at a time. */
#define VERIFY_STEP 1000

struct verify {
    const struct migrate_options *o;
    struct side *from, *to;
    unsigned long long compared, gone, missing, different, ttl, shown;
    long long count_short; /* keys the target has fewer than the source */
};

/* A key to compare; in a sample own holds the bytes k points to. */
struct keyref {
    const char *k;
    size_t len;
    char *own;
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

/* Both sides' replies to one command (routed by its key on a cluster).
 * 0, or -1 on a failed read. */
static int both(struct verify *v, int argc, const char **argv, const size_t *lens, struct redisReply **a,
                struct redisReply **b)
{
    *a = *b = NULL;
    if (side_append(v->from, argc, argv, lens) == REDTLS_OK && side_get_reply(v->from, a) == REDTLS_OK &&
        side_append(v->to, argc, argv, lens) == REDTLS_OK && side_get_reply(v->to, b) == REDTLS_OK)
        return 0;
    redtls_reply_free(*a);
    redtls_reply_free(*b);
    *a = *b = NULL;
    return -1;
}

/* 1 when two replies are equal; error replies never are. */
static int same_reply(const struct redisReply *a, const struct redisReply *b)
{
    int t = redtls_reply_type(a);
    size_t la = 0, lb = 0;

    if (t != redtls_reply_type(b) || t == REDTLS_REPLY_ERROR)
        return 0;
    if (t == REDTLS_REPLY_ARRAY) {
        if (redtls_reply_len(a) != redtls_reply_len(b))
            return 0;
        for (size_t i = 0; i < redtls_reply_len(a); i++)
            if (!same_reply(redtls_reply_element(a, i), redtls_reply_element(b, i)))
                return 0;
        return 1;
    }
    if (t == REDTLS_REPLY_INTEGER)
        return redtls_reply_integer(a) == redtls_reply_integer(b);
    if (t == REDTLS_REPLY_NIL)
        return 1;
    const char *sa = redtls_reply_str(a, &la), *sb = redtls_reply_str(b, &lb);
    return la == lb && (la == 0 || memcmp(sa, sb, la) == 0);
}

/* A field of a flat [name, value, ...] reply (XINFO), NULL when absent. */
static const struct redisReply *field(const struct redisReply *r, const char *name)
{
    size_t i;
    for (i = 0; i + 1 < redtls_reply_len(r); i += 2) {
        const char *s = redtls_reply_str(redtls_reply_element(r, i), NULL);
        if (s != NULL && strcmp(s, name) == 0)
            return redtls_reply_element(r, i + 1);
    }
    return NULL;
}

/* The named fields of two XINFO replies are equal (absent on both is). */
static int same_fields(const struct redisReply *a, const struct redisReply *b, const char *const *names)
{
    for (; *names != NULL; names++) {
        const struct redisReply *fa = field(a, *names), *fb = field(b, *names);
        if ((fa == NULL) != (fb == NULL) || (fa != NULL && !same_reply(fa, fb)))
            return 0;
    }
    return 1;
}

/* A list: LLEN, then LRANGE VERIFY_STEP elements at a time. 1 when the
 * same, 0 when not, -1 on a failed read. */
static int same_list(struct verify *v, const char *key, size_t len)
{
    char from[24], to[24];
    const char *argv[4] = {"LLEN", key, from, to};
    size_t lens[4] = {4, len, 0, 0};
    struct redisReply *a = NULL, *b = NULL;
    long long n, start;
    int same;

    if (both(v, 2, argv, lens, &a, &b) != 0)
        return -1;
    same = redtls_reply_type(a) == REDTLS_REPLY_INTEGER && same_reply(a, b);
    n = redtls_reply_integer(a);
    redtls_reply_free(a);
    redtls_reply_free(b);
    argv[0] = "LRANGE", lens[0] = 6;
    for (start = 0; same && start < n; start += VERIFY_STEP) {
        lens[2] = (size_t)snprintf(from, sizeof from, "%lld", start);
        lens[3] = (size_t)snprintf(to, sizeof to, "%lld", start + VERIFY_STEP - 1);
        if (both(v, 4, argv, lens, &a, &b) != 0)
            return -1;
        same = redtls_reply_type(a) == REDTLS_REPLY_ARRAY && same_reply(a, b);
        redtls_reply_free(a);
        redtls_reply_free(b);
    }
    return same;
}

/* A stream: XINFO STREAM's length, last ID and counters, its consumer
 * groups (name, last delivered ID, pending count: a copy in pieces does
 * not carry them, and that is a difference), then the entries, XRANGE
 * VERIFY_STEP at a time. 1 when the same, 0 when not, -1 on a failed
 * read. */
static int same_stream(struct verify *v, const char *key, size_t len)
{
    static const char *const info[] = {"length", "last-generated-id", "entries-added", "max-deleted-entry-id", NULL};
    static const char *const group[] = {"name", "last-delivered-id", "pending", NULL};
    char start[64] = "-", count[24];
    const char *argv[6] = {"XINFO", "STREAM", key, "+", "COUNT", count};
    size_t lens[6] = {5, 6, len, 1, 5, 0};
    struct redisReply *a = NULL, *b = NULL;
    size_t i;
    int same, done = 0;

    if (both(v, 3, argv, lens, &a, &b) != 0)
        return -1;
    same = redtls_reply_type(a) == REDTLS_REPLY_ARRAY && redtls_reply_type(b) == REDTLS_REPLY_ARRAY &&
           same_fields(a, b, info);
    redtls_reply_free(a);
    redtls_reply_free(b);
    if (!same)
        return 0;
    argv[1] = "GROUPS", lens[1] = 6;
    if (both(v, 3, argv, lens, &a, &b) != 0)
        return -1;
    same = redtls_reply_type(a) == REDTLS_REPLY_ARRAY && redtls_reply_type(b) == REDTLS_REPLY_ARRAY &&
           redtls_reply_len(a) == redtls_reply_len(b);
    for (i = 0; same && i < redtls_reply_len(a); i++)
        same = same_fields(redtls_reply_element(a, i), redtls_reply_element(b, i), group);
    redtls_reply_free(a);
    redtls_reply_free(b);
    lens[5] = (size_t)snprintf(count, sizeof count, "%d", VERIFY_STEP);
    argv[0] = "XRANGE", lens[0] = 6;
    argv[1] = key, lens[1] = len;
    while (same && !done) {
        argv[2] = start, lens[2] = strlen(start);
        if (both(v, 6, argv, lens, &a, &b) != 0)
            return -1;
        same = redtls_reply_type(a) == REDTLS_REPLY_ARRAY && same_reply(a, b);
        size_t n = redtls_reply_len(a);
        if (same && n == VERIFY_STEP) {
            size_t idlen;
            const char *id = redtls_reply_str(redtls_reply_element(redtls_reply_element(a, n - 1), 0), &idlen);
            done = id == NULL || stream_next_id(id, idlen, start, sizeof start) != 0;
        } else {
            done = 1;
        }
        redtls_reply_free(a);
        redtls_reply_free(b);
    }
    return same;
}

/* 1 when a set, hash, list or stream whose payloads differ holds the same
 * contents on both sides, 0 when not (or it is another type), -1 on a
 * failed read. */
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
    if (strcmp(type, "list") == 0 || strcmp(type, "stream") == 0) {
        same = type[0] == 'l' ? same_list(v, key, len) : same_stream(v, key, len);
        redtls_reply_free(t);
        return same;
    }
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

/* DUMP + PTTL for n keys on both sides, pipelined. */
static int verify_keys(struct verify *v, const struct keyref *keys, size_t n)
{
    size_t i;
    struct redisReply **rep =
        calloc(n * 4 + 1, sizeof(*rep)); // NOLINT(bugprone-sizeof-expression): an array of pointers
    int rc = EXIT_CONTINUE;
    redtls_status st = REDTLS_OK;

    if (rep == NULL) {
        fputs("redtls-migrate: out of memory\n", stderr);
        return EXIT_CONNECT;
    }
    for (i = 0; i < n && st == REDTLS_OK; i++) {
        size_t len = keys[i].len;
        const char *k = keys[i].k;
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
        size_t len = keys[i].len, sl, tl;
        const char *k = keys[i].k;
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

/* Every key (matching --match) of every source master, a SCAN reply at a
 * time. */
static int verify_every_key(struct verify *v, const char **nodes, size_t nn)
{
    struct keyref *refs = NULL;
    size_t cap = 0, i, j;
    int rc = EXIT_CONTINUE;
    char count[32];

    snprintf(count, sizeof count, "%ld", v->o->batch);
    for (i = 0; i < nn && rc == EXIT_CONTINUE; i++) {
        char cursor[32] = "0";
        do {
            struct redisReply *rep = NULL;
            rc = side_scan(v->from, nodes[i], v->o->match, count, cursor, sizeof cursor, &rep);
            if (rc != EXIT_CONTINUE)
                break;
            const struct redisReply *keys = redtls_reply_element(rep, 1);
            size_t n = redtls_reply_len(keys);
            if (n > cap) {
                struct keyref *grown = realloc(refs, n * sizeof(*grown));
                if (grown == NULL) {
                    redtls_reply_free(rep);
                    fputs("redtls-migrate: out of memory\n", stderr);
                    rc = EXIT_CONNECT;
                    break;
                }
                refs = grown;
                cap = n;
            }
            for (j = 0; j < n; j++) {
                refs[j].k = redtls_reply_str(redtls_reply_element(keys, j), &refs[j].len);
                refs[j].own = NULL;
            }
            rc = verify_keys(v, refs, n);
            redtls_reply_free(rep);
        } while (rc == EXIT_CONTINUE && strcmp(cursor, "0") != 0);
    }
    free(refs);
    return rc;
}

/* DBSIZE of every master of the side, summed; sizes[] gets each one's
 * when not NULL. -1 when one cannot be read. */
static long long key_count(struct side *s, const char **nodes, size_t nn, long long *sizes)
{
    static const char *argv[] = {"DBSIZE"};
    long long total = 0;
    size_t i;

    for (i = 0; i < nn; i++) {
        struct redisReply *r = NULL;
        redtls_status st = side_command(s, nodes[i], 1, argv, NULL, &r);
        if (st != REDTLS_OK || redtls_reply_type(r) != REDTLS_REPLY_INTEGER) {
            fprintf(stderr, "redtls-migrate: %s DBSIZE: %s\n", s->o->name,
                    st != REDTLS_OK ? side_errmsg(s, st) : "unexpected reply");
            redtls_reply_free(r);
            return -1;
        }
        if (sizes != NULL)
            sizes[i] = redtls_reply_integer(r);
        total += redtls_reply_integer(r);
        redtls_reply_free(r);
    }
    return total;
}

/* A SCAN over every master, the keys thrown away: a master deletes the
 * expired keys SCAN meets, which DBSIZE counts until then. */
static int reclaim_expired(struct side *s)
{
    const char *nodes[MAX_NODES];
    size_t nn = side_masters(s, nodes, MAX_NODES), i;
    int rc = EXIT_CONTINUE;

    for (i = 0; i < nn && rc == EXIT_CONTINUE; i++) {
        char cursor[32] = "0";
        do {
            struct redisReply *rep = NULL;
            rc = side_scan(s, nodes[i], NULL, "1000", cursor, sizeof cursor, &rep);
            redtls_reply_free(rep);
        } while (rc == EXIT_CONTINUE && strcmp(cursor, "0") != 0);
    }
    return rc;
}

/* The two sides' key counts (DBSIZE over the masters). A target holding
 * fewer keys than the source is a difference; since DBSIZE also counts
 * keys whose time has passed until the server gets round to deleting them
 * (which with many long TTLs around can take minutes), such a gap is
 * checked again after a SCAN of both sides has had them deleted. */
static int compare_counts(struct verify *v)
{
    const char *fn[MAX_NODES], *tn[MAX_NODES];
    size_t fnn = side_masters(v->from, fn, MAX_NODES), tnn = side_masters(v->to, tn, MAX_NODES);
    long long src, dst;

    if (v->o->match != NULL) {
        puts("verify: key counts not compared (with --match, DBSIZE counts keys that were not to be copied)");
        return EXIT_CONTINUE;
    }
    src = key_count(v->from, fn, fnn, NULL);
    dst = key_count(v->to, tn, tnn, NULL);
    if (src >= 0 && dst >= 0 && dst < src) {
        int rc;
        if ((rc = reclaim_expired(v->from)) != EXIT_CONTINUE || (rc = reclaim_expired(v->to)) != EXIT_CONTINUE)
            return rc;
        src = key_count(v->from, fn, fnn, NULL);
        dst = key_count(v->to, tn, tnn, NULL);
    }
    if (src < 0 || dst < 0)
        return EXIT_CONNECT;
    printf("verify: keys on the source: %lld\n"
           "verify: keys on the target: %lld\n",
           src, dst);
    if (dst < src) {
        v->count_short = src - dst;
        printf("difference: count: the target holds %lld keys fewer than the source\n", src - dst);
    } else if (dst > src) {
        printf("verify: note: the target holds %lld keys more than the source (keys of its own, or keys "
               "deleted on the source since the copy)\n",
               dst - src);
    }
    return EXIT_CONTINUE;
}

/* xorshift64*: the sample's random numbers (any fair source will do). */
static unsigned long long next_random(unsigned long long *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 2685821657736338717ULL;
}

struct sample {
    struct keyref *keys;
    size_t n, cap;
    unsigned long long seen; /* keys offered to the reservoir */
    unsigned long long rnd;
};

static int cmp_keyref(const void *pa, const void *pb)
{
    const struct keyref *a = pa, *b = pb;
    return cmp_bytes(a->k, a->len, b->k, b->len);
}

/* Sorts keys[from..n) and drops the repeated ones. */
static void drop_repeats(struct sample *sm, size_t from)
{
    size_t i, out = from;

    if (sm->n - from < 2)
        return;
    qsort(sm->keys + from, sm->n - from, sizeof(*sm->keys), cmp_keyref);
    for (i = from; i < sm->n; i++) {
        if (out > from && cmp_keyref(&sm->keys[out - 1], &sm->keys[i]) == 0) {
            free(sm->keys[i].own);
            continue;
        }
        sm->keys[out++] = sm->keys[i];
    }
    sm->n = out;
}

static char *copy_bytes(const char *p, size_t len)
{
    char *c = malloc(len + 1);
    if (c != NULL) {
        memcpy(c, p, len);
        c[len] = '\0';
    }
    return c;
}

/* Appends a copy of key; 0, or -1 when memory runs out. */
static int sample_add(struct sample *sm, const char *k, size_t len)
{
    if (sm->n == sm->cap) {
        size_t cap = sm->cap != 0 ? sm->cap * 2 : 256;
        struct keyref *grown = realloc(sm->keys, cap * sizeof(*grown));
        if (grown == NULL)
            return -1;
        sm->keys = grown;
        sm->cap = cap;
    }
    if ((sm->keys[sm->n].own = copy_bytes(k, len)) == NULL)
        return -1;
    sm->keys[sm->n].k = sm->keys[sm->n].own;
    sm->keys[sm->n++].len = len;
    return 0;
}

/* Reservoir sampling over a SCAN of every master: each key matching
 * --match ends up in the sample with the same chance, want of them. */
static int sample_by_scan(struct verify *v, const char **nodes, size_t nn, size_t want, struct sample *sm)
{
    char count[32];
    size_t i, j;
    int rc = EXIT_CONTINUE;

    snprintf(count, sizeof count, "%ld", v->o->batch);
    for (i = 0; i < nn && rc == EXIT_CONTINUE; i++) {
        char cursor[32] = "0";
        do {
            struct redisReply *rep = NULL;
            if ((rc = side_scan(v->from, nodes[i], v->o->match, count, cursor, sizeof cursor, &rep)) != EXIT_CONTINUE)
                break;
            const struct redisReply *keys = redtls_reply_element(rep, 1);
            for (j = 0; j < redtls_reply_len(keys) && rc == EXIT_CONTINUE; j++) {
                size_t len;
                const char *k = redtls_reply_str(redtls_reply_element(keys, j), &len);
                sm->seen++;
                if (sm->n < want) {
                    if (sample_add(sm, k, len) != 0) {
                        fputs("redtls-migrate: out of memory\n", stderr);
                        rc = EXIT_CONNECT;
                    }
                    continue;
                }
                /* The seen-th key takes a random place with chance want/seen. */
                unsigned long long slot = next_random(&sm->rnd) % sm->seen;
                if (slot < want) {
                    char *c = copy_bytes(k, len);
                    if (c == NULL) {
                        fputs("redtls-migrate: out of memory\n", stderr);
                        rc = EXIT_CONNECT;
                        break;
                    }
                    /* NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage): slot < want == sm->n, all set */
                    free(sm->keys[slot].own);
                    sm->keys[slot].k = sm->keys[slot].own = c;
                    sm->keys[slot].len = len;
                }
            }
            redtls_reply_free(rep);
        } while (rc == EXIT_CONTINUE && strcmp(cursor, "0") != 0);
    }
    if (rc == EXIT_CONTINUE)
        drop_repeats(sm, 0); /* SCAN may return a key twice while the table grows */
    return rc;
}

/* want distinct keys of one master from RANDOMKEY (pipelined on a
 * standalone side; one round trip each on a cluster node), drawing again
 * for the repeats up to a budget. */
static int sample_by_randomkey(struct verify *v, const char *node, size_t want, struct sample *sm)
{
    static const char *argv[] = {"RANDOMKEY"};
    size_t first = sm->n, budget = want * 3 + 16, i;
    redtls_status st = REDTLS_OK;

    while (sm->n - first < want && budget > 0) {
        size_t draw = want - (sm->n - first);
        if (draw > budget)
            draw = budget;
        budget -= draw;
        if (v->from->cl == NULL)
            for (i = 0; i < draw && st == REDTLS_OK; i++)
                st = side_append(v->from, 1, argv, NULL);
        for (i = 0; i < draw && st == REDTLS_OK; i++) {
            struct redisReply *r = NULL;
            st = v->from->cl == NULL ? side_get_reply(v->from, &r) : side_command(v->from, node, 1, argv, NULL, &r);
            if (st == REDTLS_OK && redtls_reply_type(r) == REDTLS_REPLY_STRING) {
                size_t len;
                const char *k = redtls_reply_str(r, &len);
                if (sample_add(sm, k, len) != 0) {
                    redtls_reply_free(r);
                    fputs("redtls-migrate: out of memory\n", stderr);
                    return EXIT_CONNECT;
                }
            }
            redtls_reply_free(r);
        }
        if (st != REDTLS_OK) {
            fprintf(stderr, "redtls-migrate: source RANDOMKEY: %s\n", side_errmsg(v->from, st));
            return EXIT_CONNECT;
        }
        drop_repeats(sm, first);
    }
    return EXIT_CONTINUE;
}

/* --sample N: N keys drawn at random, then compared like every key. A
 * sample that is a small part of the source (a quarter at most, no
 * --match) is drawn with RANDOMKEY on each master, as many from each as
 * its share of the keys, so the cost follows N and not the source's
 * size; otherwise by reservoir sampling over a SCAN. */
static int verify_sample(struct verify *v, const char **nodes, size_t nn)
{
    struct sample sm;
    long long sizes[MAX_NODES], total;
    size_t want = (size_t)v->o->sample, i;
    int rc = EXIT_CONTINUE;
    const char *how;

    memset(&sm, 0, sizeof sm);
    sm.rnd = (unsigned long long)time(NULL) * 0x9e3779b97f4a7c15ULL ^ (unsigned long long)getpid() << 17 ^ 1;
    total = key_count(v->from, nodes, nn, sizes);
    if (total < 0)
        return EXIT_CONNECT;
    if (v->o->match == NULL && (long long)want * 4 <= total) {
        size_t given = 0;
        how = "RANDOMKEY";
        for (i = 0; i < nn && rc == EXIT_CONTINUE; i++) {
            /* This master's share, rounded so the shares add up to want. */
            long long upto = 0;
            for (size_t j = 0; j <= i; j++)
                upto += sizes[j];
            size_t share = (size_t)(((long double)want * (long double)upto) / (long double)total + 0.5L) - given;
            given += share;
            if (share > 0)
                rc = sample_by_randomkey(v, nodes[i], share, &sm);
        }
    } else {
        how = "SCAN";
        rc = sample_by_scan(v, nodes, nn, want, &sm);
    }
    if (rc == EXIT_CONTINUE) {
        printf("verify: sample: %zu keys drawn by %s from %lld\n", sm.n, how, total);
        if (sm.n < want && strcmp(how, "RANDOMKEY") == 0)
            printf("verify: note: fewer keys sampled than asked (%zu): RANDOMKEY kept drawing keys already "
                   "drawn\n",
                   want);
        for (i = 0; i < sm.n && rc == EXIT_CONTINUE; i += (size_t)v->o->batch) {
            size_t n = sm.n - i < (size_t)v->o->batch ? sm.n - i : (size_t)v->o->batch;
            rc = verify_keys(v, sm.keys + i, n);
        }
    }
    for (i = 0; i < sm.n; i++)
        free(sm.keys[i].own);
    free(sm.keys);
    return rc;
}

int verify_run(const struct migrate_options *o, struct side *from, struct side *to)
{
    struct verify v;
    const char *nodes[MAX_NODES];
    size_t nn;
    int rc;

    memset(&v, 0, sizeof v);
    v.o = o;
    v.from = from;
    v.to = to;
    nn = side_masters(from, nodes, MAX_NODES);
    rc = o->sample > 0 ? verify_sample(&v, nodes, nn) : verify_every_key(&v, nodes, nn);
    if (v.shown > VERIFY_SHOW_MAX)
        printf("difference: ... %llu more not shown\n", v.shown - VERIFY_SHOW_MAX);
    if (rc == EXIT_CONTINUE)
        rc = compare_counts(&v);
    printf("verify: keys compared: %llu\n"
           "verify: gone from the source meanwhile: %llu\n"
           "verify: missing on the target: %llu\n"
           "verify: different values: %llu\n"
           "verify: different TTLs: %llu\n",
           v.compared, v.gone, v.missing, v.different, v.ttl);
    fflush(stdout);
    if (rc != EXIT_CONTINUE)
        return rc;
    return v.missing + v.different + v.ttl > 0 || v.count_short > 0 ? EXIT_SOME_FAILED : EXIT_ALL_COPIED;
}

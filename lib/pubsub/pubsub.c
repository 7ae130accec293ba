/* Pub/Sub's pure parts: reply classification, the subscription table and
 * the message accessors. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>

#include "pubsub.h"

static int is_bulk(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_STRING && r->str;
}

static int word_is(const redisReply *r, const char *w, size_t n)
{
    return r->len == n && strncasecmp(r->str, w, n) == 0;
}

int redtls__ps_classify(const redisReply *r, redtls__ps_reply *out)
{
    memset(out, 0, sizeof *out);
    if (!r)
        return REDTLS__PS_OTHER;
    int aggregate = r->type == REDIS_REPLY_ARRAY;
#ifdef REDIS_REPLY_PUSH
    aggregate = aggregate || r->type == REDIS_REPLY_PUSH;
#endif
    if (!aggregate || r->elements < 3 || r->elements > 4 || !is_bulk(r->element[0]))
        return REDTLS__PS_OTHER;
    const redisReply *w = r->element[0];
    size_t n = (size_t)r->elements;
    /* Messages: every part a bulk string. */
    if (n == 3 && is_bulk(r->element[1]) && is_bulk(r->element[2]) &&
        (word_is(w, "message", 7) || word_is(w, "smessage", 8))) {
        out->kind = w->len == 7 ? REDTLS_SUB_CHANNEL : REDTLS_SUB_SHARD;
        out->name = out->channel = r->element[1]->str;
        out->name_len = out->channel_len = r->element[1]->len;
        out->payload = r->element[2]->str;
        out->payload_len = r->element[2]->len;
        return out->what = REDTLS__PS_MESSAGE;
    }
    if (n == 4 && is_bulk(r->element[1]) && is_bulk(r->element[2]) && is_bulk(r->element[3]) &&
        word_is(w, "pmessage", 8)) {
        out->kind = REDTLS_SUB_PATTERN;
        out->name = r->element[1]->str;
        out->name_len = r->element[1]->len;
        out->channel = r->element[2]->str;
        out->channel_len = r->element[2]->len;
        out->payload = r->element[3]->str;
        out->payload_len = r->element[3]->len;
        return out->what = REDTLS__PS_MESSAGE;
    }
    /* Confirmations: word, name (nil for an unsubscribe from nothing),
     * the count left. */
    if (n != 3 || r->element[2]->type != REDIS_REPLY_INTEGER)
        return REDTLS__PS_OTHER;
    const redisReply *name = r->element[1];
    static const struct {
        const char *w;
        size_t n;
        redtls_sub_kind kind;
        int subscribe;
    } words[] = {
        {"subscribe", 9, REDTLS_SUB_CHANNEL, 1},     {"psubscribe", 10, REDTLS_SUB_PATTERN, 1},
        {"ssubscribe", 10, REDTLS_SUB_SHARD, 1},     {"unsubscribe", 11, REDTLS_SUB_CHANNEL, 0},
        {"punsubscribe", 12, REDTLS_SUB_PATTERN, 0}, {"sunsubscribe", 12, REDTLS_SUB_SHARD, 0},
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (!word_is(w, words[i].w, words[i].n))
            continue;
        if (is_bulk(name)) {
            out->name = name->str;
            out->name_len = name->len;
        } else if (!(name->type == REDIS_REPLY_NIL && !words[i].subscribe)) {
            return REDTLS__PS_OTHER;
        }
        out->kind = words[i].kind;
        out->subscribe = words[i].subscribe;
        out->count = r->element[2]->integer;
        return out->what = REDTLS__PS_CONFIRM;
    }
    return REDTLS__PS_OTHER;
}

const char *redtls__ps_command(redtls_sub_kind kind, int subscribe)
{
    switch (kind) {
    case REDTLS_SUB_CHANNEL: return subscribe ? "SUBSCRIBE" : "UNSUBSCRIBE";
    case REDTLS_SUB_PATTERN: return subscribe ? "PSUBSCRIBE" : "PUNSUBSCRIBE";
    case REDTLS_SUB_SHARD: return subscribe ? "SSUBSCRIBE" : "SUNSUBSCRIBE";
    }
    return NULL;
}

/* ---- the table ---- */

static size_t hash(redtls_sub_kind kind, const char *name, size_t len)
{
    /* FNV-1a over the kind and the name. */
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)kind;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)name[i];
        h *= 1099511628211ULL;
    }
    return (size_t)(h ^ (h >> 29));
}

redtls__sub *redtls__subs_find(const redtls__subs *t, redtls_sub_kind kind, const char *name, size_t len)
{
    if (!t->nbuckets)
        return NULL;
    for (redtls__sub *s = t->buckets[hash(kind, name, len) & (t->nbuckets - 1)]; s; s = s->hnext)
        if (s->kind == kind && s->len == len && memcmp(s->name, name, len) == 0)
            return s;
    return NULL;
}

static int grow(redtls__subs *t)
{
    size_t nb = t->nbuckets ? t->nbuckets * 2 : 16;
    redtls__sub **b = calloc(nb, sizeof *b); // NOLINT(bugprone-sizeof-expression): an array of pointers
    if (!b)
        return -1;
    for (redtls__sub *s = t->head; s; s = s->next) {
        size_t i = hash(s->kind, s->name, s->len) & (nb - 1);
        s->hnext = b[i];
        b[i] = s;
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
    return 0;
}

redtls__sub *redtls__subs_add(redtls__subs *t, redtls_sub_kind kind, const char *name, size_t len,
                              redtls_async_message_cb cb, void *ud)
{
    if (t->n >= t->nbuckets && grow(t) != 0)
        return NULL;
    redtls__sub *s = calloc(1, sizeof *s + len + 1);
    if (!s)
        return NULL;
    s->kind = kind;
    s->state = REDTLS__SUB_OPENING;
    s->cb = cb;
    s->ud = ud;
    s->len = len;
    memcpy(s->name, name, len);
    size_t i = hash(kind, name, len) & (t->nbuckets - 1);
    s->hnext = t->buckets[i];
    t->buckets[i] = s;
    s->prev = t->tail;
    if (t->tail)
        t->tail->next = s;
    else
        t->head = s;
    t->tail = s;
    t->n++;
    return s;
}

void redtls__subs_remove(redtls__subs *t, redtls__sub *s)
{
    redtls__sub **p = &t->buckets[hash(s->kind, s->name, s->len) & (t->nbuckets - 1)];
    while (*p != s)
        p = &(*p)->hnext;
    *p = s->hnext;
    if (s->prev)
        s->prev->next = s->next;
    else
        t->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        t->tail = s->prev;
    t->n--;
    s->prev = s->next = s->hnext = NULL;
    if (s->refs)
        s->dead = 1;
    else
        free(s);
}

void redtls__sub_unref(redtls__sub *s)
{
    if (--s->refs == 0 && s->dead)
        free(s);
}

void redtls__subs_free(redtls__subs *t)
{
    for (redtls__sub *s = t->head, *next; s; s = next) {
        next = s->next;
        free(s);
    }
    free(t->buckets);
    memset(t, 0, sizeof *t);
}

/* ---- message accessors ---- */

int redtls_message_type(const redtls_message *m)
{
    return m ? m->type : 0;
}

redtls_sub_kind redtls_message_sub_kind(const redtls_message *m)
{
    return m ? m->kind : (redtls_sub_kind)0;
}

static const char *part(const char *p, size_t n, size_t *len)
{
    if (len)
        *len = p ? n : 0;
    return p;
}

const char *redtls_message_subscription(const redtls_message *m, size_t *len)
{
    return m ? part(m->sub, m->sub_len, len) : part(NULL, 0, len);
}

const char *redtls_message_channel(const redtls_message *m, size_t *len)
{
    return m ? part(m->channel, m->channel_len, len) : part(NULL, 0, len);
}

const char *redtls_message_payload(const redtls_message *m, size_t *len)
{
    return m ? part(m->payload, m->payload_len, len) : part(NULL, 0, len);
}

redtls_status redtls_message_status(const redtls_message *m)
{
    return m ? m->status : REDTLS_OK;
}

const char *redtls_message_detail(const redtls_message *m)
{
    return m && m->detail ? m->detail : "";
}

void redtls_message_free(redtls_message *m)
{
    if (!m)
        return;
    if (m->reply)
        freeReplyObject(m->reply);
    free(m->owned);
    free(m);
}

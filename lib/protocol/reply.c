#include <stdlib.h>

#include <hiredis/hiredis.h>

#include "common.h"

/* RESP3 reply fields (dval, vtype) exist from hiredis 1.0 on; built
 * against 0.14 those replies never occur. */
#if defined(HIREDIS_MAJOR) && HIREDIS_MAJOR >= 1
#define REDTLS_HIREDIS_1 1
#else
#define REDTLS_HIREDIS_1 0
#endif

/* The same as freeReplyObject() (which stays valid for every reply but an
 * attribute), with the common leaves freed here rather than through a
 * call into hiredis. */
void redtls_reply_free(struct redisReply *reply)
{
    if (!reply)
        return;
    switch (reply->type) {
    case REDIS_REPLY_INTEGER:
    case REDIS_REPLY_NIL:
        break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        free(reply->str);
        break;
    case REDTLS_REPLY_ATTR:
        /* The reader builds an attribute as a map (hiredis 1.2 knows no
         * attribute type), and hiredis frees it as one. */
        reply->type = REDTLS_REPLY_MAP;
        freeReplyObject(reply);
        return;
    default:
        freeReplyObject(reply);
        return;
    }
    free(reply);
}

int redtls_reply_type(const struct redisReply *reply)
{
    return reply ? reply->type : 0;
}

const char *redtls_reply_str(const struct redisReply *reply, size_t *len)
{
    int text = 0;
    if (reply && reply->str) {
        switch (reply->type) {
        case REDTLS_REPLY_STRING:
        case REDTLS_REPLY_STATUS:
        case REDTLS_REPLY_ERROR:
        case REDTLS_REPLY_DOUBLE:
        case REDTLS_REPLY_BIGNUM:
        case REDTLS_REPLY_VERB: text = 1; break;
        default: break;
        }
    }
    if (!text) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = reply->len;
    return reply->str;
}

long long redtls_reply_integer(const struct redisReply *reply)
{
    return reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : 0;
}

double redtls_reply_double(const struct redisReply *reply)
{
#if REDTLS_HIREDIS_1
    if (reply && reply->type == REDTLS_REPLY_DOUBLE)
        return reply->dval;
#else
    (void)reply;
#endif
    return 0.0;
}

int redtls_reply_bool(const struct redisReply *reply)
{
    if (!reply || reply->type != REDTLS_REPLY_BOOL)
        return -1;
    return reply->integer != 0;
}

const char *redtls_reply_verbatim_format(const struct redisReply *reply)
{
#if REDTLS_HIREDIS_1
    if (reply && reply->type == REDTLS_REPLY_VERB)
        return reply->vtype;
#else
    (void)reply;
#endif
    return NULL;
}

static int is_aggregate(const struct redisReply *reply)
{
    if (!reply)
        return 0;
    switch (reply->type) {
    case REDTLS_REPLY_ARRAY:
    case REDTLS_REPLY_MAP:
    case REDTLS_REPLY_SET:
    case REDTLS_REPLY_PUSH:
    case REDTLS_REPLY_ATTR: return 1;
    default: return 0;
    }
}

size_t redtls_reply_len(const struct redisReply *reply)
{
    return is_aggregate(reply) ? reply->elements : 0;
}

const struct redisReply *redtls_reply_element(const struct redisReply *reply, size_t i)
{
    if (!is_aggregate(reply) || i >= reply->elements)
        return NULL;
    return reply->element[i];
}

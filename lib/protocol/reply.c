#include <stdlib.h>

#include <hiredis/hiredis.h>

#include "common.h"

/* The same as freeReplyObject() (which stays valid for every reply), with
 * the common leaves freed here rather than through a call into hiredis. */
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
    if (!reply || !reply->str ||
        (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_STATUS && reply->type != REDIS_REPLY_ERROR)) {
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

size_t redtls_reply_len(const struct redisReply *reply)
{
    return reply && reply->type == REDIS_REPLY_ARRAY ? reply->elements : 0;
}

const struct redisReply *redtls_reply_element(const struct redisReply *reply, size_t i)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY || i >= reply->elements)
        return NULL;
    return reply->element[i];
}

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common.h"

redtls_status redtls__secret_set(redtls__secret *s, const char *data, size_t len)
{
    char *copy = NULL;
    if (data) {
        copy = malloc(len + 1);
        if (!copy)
            return REDTLS_E_NOMEM;
        memcpy(copy, data, len);
        copy[len] = '\0';
    }
    redtls__secret_clear(s);
    s->data = copy;
    s->len = copy ? len : 0;
    return REDTLS_OK;
}

redtls_status redtls__secret_copy(redtls__secret *dst, const redtls__secret *src)
{
    return redtls__secret_set(dst, src->data, src->len);
}

void redtls__secret_clear(redtls__secret *s)
{
    if (s->data) {
        OPENSSL_cleanse(s->data, s->len);
        free(s->data);
    }
    s->data = NULL;
    s->len = 0;
}

redtls_status redtls__str_set(char **dst, const char *src)
{
    char *copy = NULL;
    if (src) {
        size_t n = strlen(src);
        copy = malloc(n + 1);
        if (!copy)
            return REDTLS_E_NOMEM;
        memcpy(copy, src, n + 1);
    }
    free(*dst);
    *dst = copy;
    return REDTLS_OK;
}

void redtls__redact(char *text, size_t text_len, const redtls__secret *s)
{
    if (!text || !s->data || s->len == 0 || s->len > text_len)
        return;
    /* A match starting at i only reads text[i..], so masking text[i] right
     * after testing it keeps overlapping occurrences detectable. */
    size_t cover_end = 0;
    for (size_t i = 0; i < text_len; i++) {
        if (i + s->len <= text_len && memcmp(text + i, s->data, s->len) == 0)
            cover_end = i + s->len;
        if (i < cover_end)
            text[i] = '*';
    }
}

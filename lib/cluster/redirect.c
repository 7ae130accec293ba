#include <string.h>

#include "redirect.h"

redtls__redirect_kind redtls__redirect_parse(const char *text, size_t len, redtls__redirect *out, char *err)
{
    memset(out, 0, sizeof *out);
    redtls__redirect_kind kind;
    size_t skip;
    if (len >= 6 && memcmp(text, "MOVED ", 6) == 0) {
        kind = REDTLS__MOVED;
        skip = 6;
    } else if (len >= 4 && memcmp(text, "ASK ", 4) == 0) {
        kind = REDTLS__ASK;
        skip = 4;
    } else {
        return REDTLS__NOT_REDIRECT;
    }
    const char *p = text + skip, *end = text + len;
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    unsigned long slot;
    if (!sp || redtls__parse_decimal(p, (size_t)(sp - p), 16383, &slot) != 0) {
        redtls__fail(err, REDTLS_E_PROTOCOL, "redirection with a bad slot");
        return REDTLS__NOT_REDIRECT;
    }
    const char *ep = sp + 1;
    uint16_t port;
    if (redtls__parse_endpoint(ep, (size_t)(end - ep), out->host, sizeof out->host, &port) != 0) {
        out->host[0] = '\0';
        redtls__fail(err, REDTLS_E_PROTOCOL, "redirection with a bad endpoint or port");
        return REDTLS__NOT_REDIRECT;
    }
    out->kind = kind;
    out->slot = (unsigned)slot;
    out->port = port;
    return kind;
}

int redtls__parse_endpoint(const char *s, size_t len, char *host, size_t hostcap, uint16_t *port)
{
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++)
        if (s[i] == ':')
            colon = s + i;
    unsigned long p;
    if (!colon || redtls__parse_decimal(colon + 1, len - (size_t)(colon + 1 - s), 65535, &p) != 0 || p == 0)
        return -1;
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen >= hostcap || memchr(h, ' ', hlen) || memchr(h, '\0', hlen))
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)p;
    return 0;
}

/* The first word of the text is prefix (a whole word). */
static int starts_word(const char *text, size_t len, const char *prefix, size_t n)
{
    return len >= n && memcmp(text, prefix, n) == 0 && (len == n || text[n] == ' ');
}

redtls__error_kind redtls__error_classify(const char *text, size_t len)
{
    if (starts_word(text, len, "TRYAGAIN", 8))
        return REDTLS__ERR_TRYAGAIN;
    if (starts_word(text, len, "CLUSTERDOWN", 11))
        return REDTLS__ERR_CLUSTERDOWN;
    if (starts_word(text, len, "LOADING", 7) || starts_word(text, len, "MASTERDOWN", 10) ||
        starts_word(text, len, "READONLY", 8))
        return REDTLS__ERR_STALE;
    return REDTLS__ERR_FINAL;
}

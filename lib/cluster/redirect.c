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
    unsigned long slot, port;
    if (!sp || redtls__parse_decimal(p, (size_t)(sp - p), 16383, &slot) != 0) {
        redtls__fail(err, REDTLS_E_PROTOCOL, "redirection with a bad slot");
        return REDTLS__NOT_REDIRECT;
    }
    const char *ep = sp + 1;
    /* The port follows the last ':'; the endpoint is what comes before. */
    const char *colon = NULL;
    for (const char *q = ep; q < end; q++)
        if (*q == ':')
            colon = q;
    if (!colon || redtls__parse_decimal(colon + 1, (size_t)(end - colon - 1), 65535, &port) != 0 || port == 0) {
        redtls__fail(err, REDTLS_E_PROTOCOL, "redirection with a bad endpoint or port");
        return REDTLS__NOT_REDIRECT;
    }
    const char *h = ep;
    size_t hlen = (size_t)(colon - ep);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen >= sizeof out->host || memchr(h, ' ', hlen) || memchr(h, '\0', hlen)) {
        redtls__fail(err, REDTLS_E_PROTOCOL, "redirection with a bad endpoint");
        return REDTLS__NOT_REDIRECT;
    }
    memcpy(out->host, h, hlen);
    out->host[hlen] = '\0';
    out->kind = kind;
    out->slot = (unsigned)slot;
    out->port = (uint16_t)port;
    return kind;
}

/* libFuzzer target: MOVED/ASK redirection parsing on arbitrary error
 * texts. Invariants: other errors are left alone (no message written); an
 * accepted redirection has a slot in 0..16383, a port in 1..65535 and an
 * endpoint without spaces that fits its buffer; a refused MOVED/ASK says
 * why. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redirect.h"

#define CHECK(cond)                                                                                              \
    do {                                                                                                         \
        if (!(cond)) {                                                                                           \
            fprintf(stderr, "fuzz_redirect: invariant failed at line %d: %s\n", __LINE__, #cond);                \
            abort();                                                                                             \
        }                                                                                                        \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    redtls__redirect r;
    char err[REDTLS__ERRMSG_MAX] = "";
    redtls__redirect_kind k = redtls__redirect_parse(text, size, &r, err);
    int looks = (size >= 6 && memcmp(text, "MOVED ", 6) == 0) || (size >= 4 && memcmp(text, "ASK ", 4) == 0);
    if (!looks) {
        CHECK(k == REDTLS__NOT_REDIRECT);
        CHECK(err[0] == '\0');
        return 0;
    }
    if (k == REDTLS__NOT_REDIRECT) {
        CHECK(err[0] != '\0');
        return 0;
    }
    CHECK(k == r.kind);
    CHECK(r.slot <= 16383);
    CHECK(r.port >= 1);
    size_t hl = strnlen(r.host, sizeof r.host);
    CHECK(hl < sizeof r.host);
    CHECK(memchr(r.host, ' ', hl) == NULL);
    return 0;
}

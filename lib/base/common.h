/* Internal foundations shared by every layer: error reporting, secrets,
 * deadlines. Nothing here is exported. */
#ifndef REDTLS_COMMON_H
#define REDTLS_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include <redtls/redtls.h>

/* Keeps a rarely taken path out of its caller, so the common path's
 * frame stays small (a static function called once is inlined). */
#if defined(__GNUC__)
#define REDTLS__NOINLINE __attribute__((noinline))
#else
#define REDTLS__NOINLINE
#endif

/* Inlines a hot function that has more than one caller. */
#if defined(__GNUC__)
#define REDTLS__INLINE_ALWAYS inline __attribute__((always_inline))
#else
#define REDTLS__INLINE_ALWAYS inline
#endif

/* Size of every detailed-message buffer (config, connection). */
#define REDTLS__ERRMSG_MAX 512

/* Formats a detailed message into err (REDTLS__ERRMSG_MAX bytes, may be NULL)
 * and returns st, so failures read as `return redtls__fail(err, st, ...)`. */
redtls_status redtls__fail(char *err, redtls_status st, const char *fmt, ...) REDTLS_PRINTF(3, 4);

/* Fails with more context: err becomes the text fmt makes, then err's
 * previous message (the cause, cut to fit), then tail. */
redtls_status redtls__fail_more(char *err, redtls_status st, const char *tail, const char *fmt, ...)
    REDTLS_PRINTF(4, 5);

/* Secrets: heap copies that are wiped before they are freed. */
typedef struct redtls__secret {
    char *data; /* NUL-terminated; NULL when unset */
    size_t len;
} redtls__secret;

/* Replaces *s with a copy of data/len (NULL clears). REDTLS_E_NOMEM leaves
 * *s unchanged. */
redtls_status redtls__secret_set(redtls__secret *s, const char *data, size_t len);
redtls_status redtls__secret_copy(redtls__secret *dst, const redtls__secret *src);
void redtls__secret_clear(redtls__secret *s);

/* Plain string copy helper: replaces *dst with a copy of src (NULL clears). */
redtls_status redtls__str_set(char **dst, const char *src);

/* Overwrites every occurrence of the secret inside text with '*', so a
 * server that echoes arguments back cannot make us repeat a token. */
void redtls__redact(char *text, size_t text_len, const redtls__secret *s);

/* Parses s[0..len) as a plain decimal number (digits only, at most 10 of
 * them) no larger than max. 0 on success, -1 otherwise. */
static inline int redtls__parse_decimal(const char *s, size_t len, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    if (len == 0 || len > 10)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* Monotonic milliseconds: read by drivers only, which pass the time to
 * the core. */
int64_t redtls__now_ms(void);
/* Absolute deadline timeout_ms from now; 0 means none (INT64_MAX). */
int64_t redtls__deadline_after(unsigned timeout_ms);
/* Milliseconds left until deadline as a poll() timeout: -1 for no deadline,
 * 0 when it has passed, otherwise clamped to INT_MAX. */
int redtls__poll_timeout(int64_t deadline);
/* The deadline timeout_ms after now; 0 means none. */
static inline int64_t redtls__deadline_from(int64_t now, unsigned timeout_ms)
{
    return timeout_ms ? now + (int64_t)timeout_ms : INT64_MAX;
}
/* The earlier of two deadlines. */
static inline int64_t redtls__deadline_min(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

#define REDTLS__NO_DEADLINE INT64_MAX

#endif

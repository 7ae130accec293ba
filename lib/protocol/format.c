/* RESP framing is a count and a length per argument, so the argv path
 * writes it straight into the output buffer: no allocation and no printf
 * per command. hiredis's redisFormatCommandArgv() would cost a malloc, a
 * free and one sprintf per argument (about 2400 instructions for a GET,
 * most of the client's CPU in deep pipelines); it remains the reference the
 * unit tests compare against, and the printf-style path uses hiredis. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "format.h"

/* Makes room for n more bytes after *len. */
static redtls_status reserve(char **buf, size_t len, size_t *cap, size_t n)
{
    if (n <= *cap - len)
        return REDTLS_OK;
    size_t ncap = *cap ? *cap : 256;
    while (ncap - len < n) {
        if (ncap > SIZE_MAX / 2)
            return REDTLS_E_NOMEM;
        ncap *= 2;
    }
    char *nb = realloc(*buf, ncap);
    if (!nb)
        return REDTLS_E_NOMEM;
    *buf = nb;
    *cap = ncap;
    return REDTLS_OK;
}

redtls_status redtls__buf_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (n == 0)
        return REDTLS_OK;
    redtls_status st = reserve(buf, *len, cap, n);
    if (st != REDTLS_OK)
        return st;
    memcpy(*buf + *len, data, n);
    *len += n;
    return REDTLS_OK;
}

/* Writes "<prefix><n>\r\n" at p; returns the end. */
static inline char *put_header(char *p, char prefix, size_t n)
{
    *p++ = prefix;
    if (n < 10) { /* argument counts and most lengths: one or two digits */
        *p++ = (char)('0' + n);
    } else if (n < 100) {
        *p++ = (char)('0' + n / 10);
        *p++ = (char)('0' + n % 10);
    } else {
        char digits[20];
        int i = 0;
        do {
            digits[i++] = (char)('0' + n % 10);
            n /= 10;
        } while (n);
        while (i)
            *p++ = digits[--i];
    }
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* Longest "<prefix><size_t>\r\n". */
#define HEADER_MAX (1 + 20 + 2)

/* Copies n bytes to p; returns the end. Command names and keys are mostly
 * short: two overlapping fixed-size moves cost less than a call. */
static inline char *put_bytes(char *p, const char *s, size_t n)
{
    if (n >= 8 && n <= 16) {
        memcpy(p, s, 8);
        memcpy(p + n - 8, s + n - 8, 8);
    } else if (n >= 4 && n < 8) {
        memcpy(p, s, 4);
        memcpy(p + n - 4, s + n - 4, 4);
    } else if (n < 4) {
        for (size_t i = 0; i < n; i++)
            p[i] = s[i];
    } else if (n <= 32) {
        memcpy(p, s, 16);
        memcpy(p + n - 16, s + n - 16, 16);
    } else {
        memcpy(p, s, n);
    }
    return p + n;
}

redtls_status redtls__format_argv(char **buf, size_t *len, size_t *cap, int argc, const char **argv,
                                  const size_t *argvlen)
{
    if (argc <= 0 || !argv)
        return REDTLS_E_INVALID;
    /* Every argument costs at most HEADER_MAX + 2 besides its bytes; the
     * sum is checked against overflow as it grows. */
    size_t need = HEADER_MAX;
    for (int i = 0; i < argc; i++) {
        size_t l = argvlen ? argvlen[i] : strlen(argv[i]);
        if (l > SIZE_MAX - need - HEADER_MAX - 2)
            return REDTLS_E_NOMEM;
        need += HEADER_MAX + l + 2;
    }
    /* Reserve the worst case, then write in place. */
    redtls_status st = reserve(buf, *len, cap, need);
    if (st != REDTLS_OK)
        return st;
    char *p = *buf + *len;
    p = put_header(p, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        size_t l = argvlen ? argvlen[i] : strlen(argv[i]);
        p = put_header(p, '$', l);
        p = put_bytes(p, argv[i], l);
        *p++ = '\r';
        *p++ = '\n';
    }
    *len = (size_t)(p - *buf);
    return REDTLS_OK;
}

/* Reads "<prefix><digits>\r\n" at *p (before end); the number, or -1. */
static long read_header(const char **p, const char *end, char prefix)
{
    const char *q = *p;
    if (q >= end || *q++ != prefix)
        return -1;
    long n = 0;
    int digits = 0;
    while (q < end && *q >= '0' && *q <= '9' && digits < 9) {
        n = n * 10 + (*q++ - '0');
        digits++;
    }
    if (digits == 0 || end - q < 2 || q[0] != '\r' || q[1] != '\n')
        return -1;
    *p = q + 2;
    return n;
}

int redtls__frame_switches_protocol(const char *frame, size_t len, int proto)
{
    const char *p = frame, *end = frame + len;
    long argc = read_header(&p, end, '*');
    /* Almost every command is told apart by its name's length alone. */
    if (argc < 2 || end - p < 4 || p[1] != '5' || p[2] != '\r')
        return 0;
    if (read_header(&p, end, '$') != 5 || end - p < 7 || strncasecmp(p, "HELLO", 5) != 0)
        return 0;
    p += 7;
    long vlen = read_header(&p, end, '$');
    if (vlen < 0 || end - p < vlen)
        return 0;
    return !(vlen == 1 && p[0] == '0' + proto);
}

/* The first argument of one framed command: 0 and *name, *len, or -1 when
 * the frame does not start like a command. */
static int frame_first_arg(const char *frame, size_t len, const char **name, size_t *name_len)
{
    const char *p = frame, *end = frame + len;
    if (read_header(&p, end, '*') < 1)
        return -1;
    long n = read_header(&p, end, '$');
    if (n < 0 || end - p < n)
        return -1;
    *name = p;
    *name_len = (size_t)n;
    return 0;
}

/* Told apart by the name's length first: 9 to 12 letters. */
static int is_sub_name(const char *s, size_t n)
{
    if (n < 9 || n > 12)
        return 0;
    /* SUBSCRIBE, UNSUBSCRIBE, and each with a P or S in front. */
    size_t skip = n == 10 || n == 12 ? 1 : 0;
    if (skip && (s[0] | 0x20) != 'p' && (s[0] | 0x20) != 's')
        return 0;
    if (n - skip == 9)
        return strncasecmp(s + skip, "subscribe", 9) == 0;
    return n - skip == 11 && strncasecmp(s + skip, "unsubscribe", 11) == 0;
}

int redtls__sub_command_name(const char *name, size_t n)
{
    return is_sub_name(name, n);
}

int redtls__frame_is_sub_command(const char *frame, size_t len)
{
    const char *name;
    size_t n;
    return frame_first_arg(frame, len, &name, &n) == 0 && is_sub_name(name, n);
}

/* Protocol layer: RESP command formatting into the connection's reused
 * output buffer. */
#ifndef REDTLS_FORMAT_H
#define REDTLS_FORMAT_H

#include "common.h"

/* Appends argv as one RESP command ("*N\r\n$len\r\narg\r\n"...) to *buf
 * (length *len, capacity *cap), growing it as needed. argvlen may be NULL
 * for C strings. Binary safe. */
redtls_status redtls__format_argv(char **buf, size_t *len, size_t *cap, int argc, const char **argv,
                                  const size_t *argvlen);

/* 1 when frame[0..len) is one framed command "HELLO <protover> ..." that
 * asks for a protocol other than RESP2 (redtls speaks RESP2 only until it
 * has RESP3 support: pushes would arrive in place of replies). */
int redtls__frame_asks_resp3(const char *frame, size_t len);

/* Appends raw bytes to a growable buffer. */
redtls_status redtls__buf_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n);

#endif

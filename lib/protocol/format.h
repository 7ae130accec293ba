/* Protocol layer: RESP command formatting into the connection's reused
 * output buffer. */
#ifndef REDTLS_FORMAT_H
#define REDTLS_FORMAT_H

#include <string.h>
#include <strings.h>

#include "common.h"

/* Appends argv as one RESP command ("*N\r\n$len\r\narg\r\n"...) to *buf
 * (length *len, capacity *cap), growing it as needed. argvlen may be NULL
 * for C strings. Binary safe. */
redtls_status redtls__format_argv(char **buf, size_t *len, size_t *cap, int argc, const char **argv,
                                  const size_t *argvlen);

/* 1 when frame[0..len) is one framed command "HELLO <protover> ..." that
 * asks for a protocol other than proto (2 or 3, the connection's): the
 * replies of every later command would come in a protocol the reader is
 * not set up for, and under RESP3 a push could be taken for a reply.
 * HELLO without a version switches nothing. */
int redtls__frame_switches_protocol(const char *frame, size_t len, int proto);

/* The same for a command given as arguments (lens may be NULL for C
 * strings). Inline: it runs for every command, and almost all of them are
 * told apart by their first letter. */
static inline int redtls__argv_switches_protocol(int argc, const char *const *argv, const size_t *lens, int proto)
{
    if (argc < 2 || !argv || !argv[0] || !argv[1] || (lens && lens[0] != 5) || (argv[0][0] | 0x20) != 'h')
        return 0;
    size_t n0 = lens ? lens[0] : strlen(argv[0]);
    if (n0 != 5 || strncasecmp(argv[0], "HELLO", 5) != 0)
        return 0;
    size_t n1 = lens ? lens[1] : strlen(argv[1]);
    return !(n1 == 1 && argv[1][0] == '0' + proto);
}

/* 1 when argv[0] is a (P|S)SUBSCRIBE or (P|S)UNSUBSCRIBE: their replies
 * do not pair with commands, so they only go through the Pub/Sub API. */
int redtls__sub_command_name(const char *name, size_t n);
/* Inline: it runs for every command; almost all are told apart by their
 * first letter (S, P or U) or their name's length (9 to 12). */
static inline int redtls__argv_is_sub_command(int argc, const char *const *argv, const size_t *lens)
{
    if (argc < 1 || !argv || !argv[0])
        return 0;
    char c0 = (char)(argv[0][0] | 0x20);
    if (c0 != 's' && c0 != 'p' && c0 != 'u')
        return 0;
    size_t n = lens ? lens[0] : strlen(argv[0]);
    return n >= 9 && n <= 12 && redtls__sub_command_name(argv[0], n);
}
int redtls__frame_is_sub_command(const char *frame, size_t len);

/* Appends raw bytes to a growable buffer. */
redtls_status redtls__buf_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n);

#endif

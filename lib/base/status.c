#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common.h"

const char *redtls_strerror(redtls_status status)
{
    switch (status) {
    case REDTLS_OK: return "success";
    case REDTLS_E_INVALID: return "invalid argument";
    case REDTLS_E_NOMEM: return "out of memory";
    case REDTLS_E_URL: return "malformed URL";
    case REDTLS_E_CONFIG: return "unusable configuration";
    case REDTLS_E_RESOLVE: return "host name could not be resolved";
    case REDTLS_E_CONNECT: return "connection failed";
    case REDTLS_E_CONNECT_TIMEOUT: return "connect timed out";
    case REDTLS_E_HANDSHAKE_TIMEOUT: return "TLS handshake timed out";
    case REDTLS_E_COMMAND_TIMEOUT: return "command timed out";
    case REDTLS_E_TLS: return "TLS failure (handshake or record layer)";
    case REDTLS_E_TLS_VERIFY: return "server certificate not trusted";
    case REDTLS_E_TLS_HOSTNAME: return "server certificate does not match the host name";
    case REDTLS_E_TLS_CLIENT_CERT: return "server requires a client certificate";
    case REDTLS_E_AUTH: return "authentication failed";
    case REDTLS_E_SETUP: return "connection set-up command refused";
    case REDTLS_E_IO: return "I/O error";
    case REDTLS_E_EOF: return "connection closed unexpectedly";
    case REDTLS_E_CLOSED: return "connection closed (by the server, or the application closed the handle)";
    case REDTLS_E_PROTOCOL: return "protocol error";
    case REDTLS_E_LIMIT: return "reply exceeds a configured limit";
    case REDTLS_E_STATE: return "operation not valid in the current state";
    case REDTLS_E_OUTCOME_UNKNOWN: return "connection lost: the command may or may not have run";
    case REDTLS_E_UNAVAILABLE: return "server unavailable: reconnect not possible within the deadline";
    case REDTLS_E_CLUSTER_REDIRECTS: return "cluster: too many redirections";
    case REDTLS_E_CLUSTER_TOPOLOGY: return "cluster: no usable slot map";
    case REDTLS_E_REFUSED: return "the server refused the request";
    }
    return "unknown status";
}

redtls_status redtls__fail(char *err, redtls_status st, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, REDTLS__ERRMSG_MAX, fmt, ap);
        va_end(ap);
    }
    return st;
}

redtls_status redtls__fail_more(char *err, redtls_status st, const char *tail, const char *fmt, ...)
{
    if (!err)
        return st;
    char cause[REDTLS__ERRMSG_MAX];
    memcpy(cause, err, sizeof cause);
    cause[sizeof cause - 1] = '\0';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, REDTLS__ERRMSG_MAX, fmt, ap);
    va_end(ap);
    size_t used = n < 0 ? 0 : (size_t)n < REDTLS__ERRMSG_MAX ? (size_t)n : REDTLS__ERRMSG_MAX - 1;
    size_t tail_len = strlen(tail);
    size_t room = REDTLS__ERRMSG_MAX - 1 - used;
    /* The cause is cut, never the tail that closes it. */
    size_t keep = strlen(cause);
    if (keep + tail_len > room)
        keep = room > tail_len ? room - tail_len : 0;
    snprintf(err + used, REDTLS__ERRMSG_MAX - used, "%.*s%s", (int)keep, cause[0] ? cause : "", tail);
    return st;
}

const char *redtls_version(void)
{
    return REDTLS_VERSION_STRING;
}

unsigned redtls_version_number(void)
{
    return REDTLS_VERSION_NUMBER;
}

unsigned redtls_default_connect_timeout_ms(void) { return REDTLS_DEFAULT_CONNECT_TIMEOUT_MS; }
unsigned redtls_default_handshake_timeout_ms(void) { return REDTLS_DEFAULT_HANDSHAKE_TIMEOUT_MS; }
unsigned redtls_default_command_timeout_ms(void) { return REDTLS_DEFAULT_COMMAND_TIMEOUT_MS; }
size_t redtls_default_max_array_elements(void) { return REDTLS_DEFAULT_MAX_ARRAY_ELEMENTS; }
size_t redtls_default_max_bulk_len(void) { return REDTLS_DEFAULT_MAX_BULK_LEN; }
size_t redtls_default_max_buffer(void) { return REDTLS_DEFAULT_MAX_BUFFER; }
unsigned redtls_max_reply_depth(void) { return REDTLS_MAX_REPLY_DEPTH; }
unsigned redtls_default_backoff_base_ms(void) { return REDTLS_DEFAULT_BACKOFF_BASE_MS; }
unsigned redtls_default_backoff_cap_ms(void) { return REDTLS_DEFAULT_BACKOFF_CAP_MS; }
unsigned redtls_default_tcp_user_timeout_ms(void) { return REDTLS_DEFAULT_TCP_USER_TIMEOUT_MS; }

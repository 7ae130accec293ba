/* Cluster redirections: "-MOVED <slot> <endpoint>:<port>" and
 * "-ASK <slot> <endpoint>:<port>" error replies. Parsing only; following
 * them is the cluster client's job. */
#ifndef REDTLS_CLUSTER_REDIRECT_H
#define REDTLS_CLUSTER_REDIRECT_H

#include "common.h"

typedef enum { REDTLS__NOT_REDIRECT = 0, REDTLS__MOVED = 1, REDTLS__ASK = 2 } redtls__redirect_kind;

typedef struct redtls__redirect {
    redtls__redirect_kind kind;
    unsigned slot;
    char host[256]; /* "" when the server gave no endpoint: the node is
                     * reached at the address already in use for it */
    uint16_t port;
} redtls__redirect;

/* Reads an error reply's text (without the leading '-'). Returns
 * REDTLS__NOT_REDIRECT for any other error, and for a MOVED/ASK whose slot,
 * endpoint or port does not parse (err says what), so a malformed
 * redirection is handed to the caller as the error it is. The endpoint is
 * everything up to the last ':' (so IPv6 addresses work, bracketed or
 * not); "?" means unknown. */
/* "host:port" as cluster nodes are named (seeds, redirections): the port
 * follows the last ':', IPv6 hosts may be bracketed, the host may be empty
 * ("the address already in use") but holds no space or NUL and fits
 * hostcap. Returns 0, or -1 when it does not parse. */
int redtls__parse_endpoint(const char *s, size_t len, char *host, size_t hostcap, uint16_t *port);

redtls__redirect_kind redtls__redirect_parse(const char *text, size_t len, redtls__redirect *out, char *err);

/* What a node's error reply (text without the '-') asks of a cluster
 * client. Redirections are not among them: redtls__redirect_parse comes
 * first. */
typedef enum {
    REDTLS__ERR_FINAL = 0,  /* the command's outcome: hand it to the caller */
    REDTLS__ERR_TRYAGAIN,   /* TRYAGAIN (keys of a migrating slot split between two nodes): retry,
                             * to the same ASK target if there was one */
    REDTLS__ERR_CLUSTERDOWN, /* CLUSTERDOWN: retry after a delay */
    REDTLS__ERR_STALE       /* LOADING, MASTERDOWN, READONLY: the node is restarting, a replica lost its
                             * master, or a write reached a demoted master; the map is probably stale:
                             * refresh, retry on the slot's master */
} redtls__error_kind;
redtls__error_kind redtls__error_classify(const char *text, size_t len);

#endif

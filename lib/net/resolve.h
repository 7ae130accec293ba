/* Host name resolution that never blocks its caller, so a connection driven
 * by poll() can bound DNS by its deadline like every other step.
 *
 * How: each lookup runs glibc's getaddrinfo() on a short-lived detached
 * thread of its own. The owner polls a descriptor (an eventfd, close-on-exec
 * and non-blocking) that becomes readable once the answer is in, then takes
 * the answer without waiting. The owner may give up at any moment (its
 * deadline passed): getaddrinfo() itself cannot be interrupted, so the job
 * holds two references, one for the owner and one for the thread, and
 * whichever lets go last frees it, with any answer nobody took. An abandoned
 * lookup therefore keeps its thread, its descriptor and a little memory
 * until the system resolver gives up by itself (resolv.conf's timeouts).
 *
 * Why not c-ares: a new run-time dependency, and it reads /etc/hosts and DNS
 * on its own, skipping nsswitch.conf (its order, and NSS modules such as
 * systemd-resolved, LDAP or container name services) that getaddrinfo()
 * honours, so names would resolve differently than in every other program.
 * Why not getaddrinfo_a(): it tells of completion only through a signal,
 * a notification thread that glibc starts, or being asked again and again,
 * never through a descriptor; and a lookup cannot be abandoned cleanly
 * (gai_cancel() refuses once the lookup has begun, and the caller's
 * request must then stay alive until it ends).
 *
 * The thread starts with every signal blocked, so an application's signal
 * handlers never run on it. A handle is used by one thread at a time; the
 * resolver thread works beside it and touches the job's shared state only
 * under the job's mutex, held for a few stores (never across the lookup).
 * Internal: nothing here is exported. */
#ifndef REDTLS_RESOLVE_H
#define REDTLS_RESOLVE_H

#include <netdb.h>

#include "common.h"

typedef struct redtls__resolve redtls__resolve;

/* getaddrinfo's signature: the seam tests use for a resolver that is slow or
 * never answers. */
typedef int (*redtls__getaddrinfo_fn)(const char *node, const char *service, const struct addrinfo *hints,
                                      struct addrinfo **res);

/* Starts resolving host:port (AF_UNSPEC, SOCK_STREAM; the port is passed as
 * a number, AI_NUMERICSERV). An IP literal (v4 or v6, no brackets) is
 * answered at once with AI_NUMERICHOST and no thread, and so is never given
 * to fn. fn NULL: getaddrinfo. host is copied. On success *out is the
 * caller's, to be released with redtls__resolve_free(); on failure it is
 * NULL. Errors, with a message in err (REDTLS__ERRMSG_MAX bytes, may be
 * NULL): REDTLS_E_INVALID (host NULL or empty, out NULL), REDTLS_E_NOMEM,
 * REDTLS_E_RESOLVE ("cannot start a resolver thread: <strerror>", or no
 * descriptor could be made). */
redtls_status redtls__resolve_start(const char *host, uint16_t port, redtls__getaddrinfo_fn fn, redtls__resolve **out,
                                    char *err);

/* The descriptor that becomes readable once the answer is in, and stays
 * readable; -1 when it is in already (literal). It belongs to the job: never
 * read or close it, and stop polling it before redtls__resolve_free(). */
int redtls__resolve_fd(const redtls__resolve *r);

/* Never waits. REDTLS_OK with *res NULL: not done yet. REDTLS_OK with *res:
 * the caller owns it (freeaddrinfo). Failure: REDTLS_E_RESOLVE "cannot
 * resolve '<host>': <gai_strerror>" (EAI_MEMORY -> REDTLS_E_NOMEM "out of
 * memory resolving '<host>'"); a result taken or failed once is not given
 * again (REDTLS_E_STATE). REDTLS_E_INVALID when r or res is NULL. */
redtls_status redtls__resolve_take(redtls__resolve *r, struct addrinfo **res, char *err);

/* Forgets the job; a thread still running frees it when it ends. Accepts
 * NULL. Never waits. */
void redtls__resolve_free(redtls__resolve *r);
/* 1 when r is a lookup of host:port whose answer is not in yet (a
 * connection takes such a lookup up again instead of starting another). */
int redtls__resolve_running_for(redtls__resolve *r, const char *host, uint16_t port);

#endif

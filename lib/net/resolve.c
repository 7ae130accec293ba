#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "resolve.h"

struct redtls__resolve {
    /* Guards refs, done, answer, sys_errno and res, the state the owner and
     * the thread share. Held for a few loads and stores only, never across
     * the lookup, so take and free wait no longer than that. A mutex rather
     * than C11 atomics because helgrind and DRD do not model atomics and
     * would report the hand-over as a race in every application that runs
     * them. */
    pthread_mutex_t mu;
    /* One reference for the owner, one for a running thread; whoever lets
     * go last frees the job. */
    int refs;
    /* Set by the thread after the answer is stored and before fd is
     * signalled, so an owner woken by fd always finds the answer. */
    int done;
    int answer;           /* getaddrinfo's return */
    int sys_errno;        /* errno after EAI_SYSTEM */
    struct addrinfo *res; /* the addresses until taken; freed with the job otherwise */
    int reported;         /* owner only: take gave the answer (or the failure) */
    int fd;               /* eventfd; -1 for a literal. Fixed before the thread starts */
    redtls__getaddrinfo_fn fn;
    char port[6];
    char host[];
};

static void lookup_hints(struct addrinfo *hints, int flags)
{
    memset(hints, 0, sizeof *hints);
    hints->ai_family = AF_UNSPEC;
    hints->ai_socktype = SOCK_STREAM;
    hints->ai_flags = AI_NUMERICSERV | flags;
}

/* "localhost" or a name under it ("x.localhost"), any case, with or
 * without one trailing dot. */
static int is_localhost(const char *host)
{
    size_t n = strlen(host);
    if (n > 0 && host[n - 1] == '.')
        n--;
    static const char name[] = "localhost";
    size_t k = sizeof name - 1;
    if (n < k || strncasecmp(host + n - k, name, k) != 0)
        return 0;
    return n == k || host[n - k - 1] == '.';
}

/* 127.0.0.1 then ::1, as one list freeaddrinfo() can free (glibc frees
 * the entries one by one). IPv4 first: Redis's default bind answers it. */
static int loopback(const char *port, const struct addrinfo *hints, struct addrinfo **res)
{
    struct addrinfo *v4 = NULL, *v6 = NULL;
    int rc = getaddrinfo("127.0.0.1", port, hints, &v4);
    if (rc != 0)
        return rc;
    if (getaddrinfo("::1", port, hints, &v6) == 0) {
        struct addrinfo *last = v4;
        while (last->ai_next)
            last = last->ai_next;
        last->ai_next = v6;
    }
    *res = v4;
    return 0;
}

static void job_destroy(redtls__resolve *r)
{
    if (r->fd >= 0)
        close(r->fd);
    if (r->res)
        freeaddrinfo(r->res);
    /* No pthread_mutex_destroy(): on Linux (eventfd ties this file to it)
     * it releases nothing, while helgrind, whose wrapper reads the mutex on
     * destroy, reports a false race with the resolver thread's last unlock
     * whenever the owner frees after that thread let go. */
    free(r);
}

static void job_release(redtls__resolve *r)
{
    pthread_mutex_lock(&r->mu);
    int last = --r->refs == 0;
    pthread_mutex_unlock(&r->mu);
    if (last)
        job_destroy(r);
}

static void *resolve_main(void *arg)
{
    redtls__resolve *r = arg;
    struct addrinfo hints, *res = NULL;
    lookup_hints(&hints, 0);
    int rc = r->fn(r->host, r->port, &hints, &res);
    int sys_errno = rc == EAI_SYSTEM ? errno : 0;
    pthread_mutex_lock(&r->mu);
    r->answer = rc;
    r->sys_errno = sys_errno;
    r->res = rc == 0 ? res : NULL;
    r->done = 1;
    pthread_mutex_unlock(&r->mu);
    /* Adding 1 to a counter nobody reads cannot fail, and no signal can
     * interrupt it here (all are blocked); the loop is for form's sake. */
    const uint64_t one = 1;
    while (write(r->fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
    job_release(r);
    return NULL;
}

static redtls_status start_thread(redtls__resolve *r, char *err)
{
    pthread_attr_t attr;
    int e = pthread_attr_init(&attr);
    if (e != 0)
        return redtls__fail(err, e == ENOMEM ? REDTLS_E_NOMEM : REDTLS_E_RESOLVE,
                            "cannot start a resolver thread: %s", strerror(e));
    e = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (e != 0) {
        pthread_attr_destroy(&attr);
        return redtls__fail(err, REDTLS_E_RESOLVE, "cannot start a resolver thread: %s", strerror(e));
    }
    /* A new thread inherits its creator's signal mask: with everything
     * blocked for the moment of creation, the application's handlers never
     * run on our thread, and the caller's own mask is back right after. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r->refs = 2;
    pthread_t tid;
    e = pthread_create(&tid, &attr, resolve_main, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (e != 0) {
        r->refs = 1;
        return redtls__fail(err, REDTLS_E_RESOLVE, "cannot start a resolver thread: %s%s", strerror(e),
                            e == EAGAIN ? " (the limit on threads, ulimit -u or kernel.threads-max, or memory for "
                                          "a thread's stack was reached)"
                                        : "");
    }
    return REDTLS_OK;
}

redtls_status redtls__resolve_start(const char *host, uint16_t port, redtls__getaddrinfo_fn fn, redtls__resolve **out,
                                    char *err)
{
    if (!out)
        return redtls__fail(err, REDTLS_E_INVALID, "no place given for the resolver handle");
    *out = NULL;
    if (!host || !host[0])
        return redtls__fail(err, REDTLS_E_INVALID, "cannot resolve an empty host name");
    size_t hlen = strlen(host);
    redtls__resolve *r = calloc(1, sizeof *r + hlen + 1);
    if (!r)
        return redtls__fail(err, REDTLS_E_NOMEM, "out of memory resolving '%s'", host);
    memcpy(r->host, host, hlen + 1);
    snprintf(r->port, sizeof r->port, "%u", (unsigned)port);
    r->fn = fn ? fn : getaddrinfo;
    r->fd = -1;
    r->refs = 1;
    int e = pthread_mutex_init(&r->mu, NULL);
    if (e != 0) {
        free(r);
        return redtls__fail(err, e == ENOMEM ? REDTLS_E_NOMEM : REDTLS_E_RESOLVE,
                            "cannot start resolving '%s': pthread_mutex_init: %s", host, strerror(e));
    }

    /* An address needs no lookup (AI_NUMERICHOST never consults NSS), so
     * it costs neither a thread nor a descriptor. Nor does "localhost":
     * RFC 6761 lets applications answer it with the loopback addresses
     * themselves (curl does), and a process that never starts a thread
     * keeps glibc's cheaper single-threaded system calls. */
    struct addrinfo hints, *res = NULL;
    lookup_hints(&hints, AI_NUMERICHOST);
    int rc = is_localhost(host) ? loopback(r->port, &hints, &res) : getaddrinfo(host, r->port, &hints, &res);
    if (rc == 0) {
        r->res = res;
        r->done = 1;
        *out = r;
        return REDTLS_OK;
    }
    if (rc == EAI_MEMORY) {
        job_destroy(r);
        return redtls__fail(err, REDTLS_E_NOMEM, "out of memory resolving '%s'", host);
    }

    r->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->fd < 0) {
        e = errno;
        job_destroy(r);
        if (e == ENOMEM)
            return redtls__fail(err, REDTLS_E_NOMEM, "out of memory resolving '%s'", host);
        return redtls__fail(err, REDTLS_E_RESOLVE, "cannot start resolving '%s': no descriptor to wait on: %s", host,
                            strerror(e));
    }
    redtls_status st = start_thread(r, err);
    if (st != REDTLS_OK) {
        job_destroy(r);
        return st;
    }
    *out = r;
    return REDTLS_OK;
}

int redtls__resolve_fd(const redtls__resolve *r)
{
    return r ? r->fd : -1;
}

redtls_status redtls__resolve_take(redtls__resolve *r, struct addrinfo **res, char *err)
{
    if (!res)
        return redtls__fail(err, REDTLS_E_INVALID, "no place given for the resolved addresses");
    *res = NULL;
    if (!r)
        return redtls__fail(err, REDTLS_E_INVALID, "no resolver handle given");
    if (r->reported)
        return redtls__fail(err, REDTLS_E_STATE, "the answer for '%s' was given already", r->host);
    pthread_mutex_lock(&r->mu);
    int done = r->done, rc = r->answer, sys_errno = r->sys_errno;
    struct addrinfo *ai = r->res;
    if (done)
        r->res = NULL;
    pthread_mutex_unlock(&r->mu);
    if (!done)
        return REDTLS_OK;
    r->reported = 1;
    if (rc == 0 && ai) {
        *res = ai;
        return REDTLS_OK;
    }
    if (rc == 0)
        return redtls__fail(err, REDTLS_E_RESOLVE, "cannot resolve '%s': the resolver answered with no address",
                            r->host);
    if (rc == EAI_MEMORY)
        return redtls__fail(err, REDTLS_E_NOMEM, "out of memory resolving '%s'", r->host);
    if (rc == EAI_SYSTEM && sys_errno != 0)
        return redtls__fail(err, REDTLS_E_RESOLVE, "cannot resolve '%s': %s: %s", r->host, gai_strerror(rc),
                            strerror(sys_errno));
    return redtls__fail(err, REDTLS_E_RESOLVE, "cannot resolve '%s': %s", r->host, gai_strerror(rc));
}

void redtls__resolve_free(redtls__resolve *r)
{
    if (r)
        job_release(r);
}

int redtls__resolve_running_for(redtls__resolve *r, const char *host, uint16_t port)
{
    char p[sizeof r->port];
    snprintf(p, sizeof p, "%u", (unsigned)port);
    if (!r || r->reported || strcmp(r->host, host) != 0 || strcmp(r->port, p) != 0)
        return 0;
    pthread_mutex_lock(&r->mu);
    int done = r->done;
    pthread_mutex_unlock(&r->mu);
    return !done;
}

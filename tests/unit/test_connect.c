/* lib/connect.c: one connection attempt (dial, TLS, set-up) stepped by
 * hand with a fake clock, against listeners on 127.0.0.1 made by the test
 * (no other network). A TCP listener whose accept queue is full drops new
 * SYNs, so a connect to it stays in progress: that is how the connect
 * timeouts are reached without waiting for them. Host names go through
 * cfg->resolver on the resolver's thread; a resolver that blocks until the
 * test lets it go shows DNS bounded by the connect timeout. */
#include "unit_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#define T0 1000000

static char dir[64];
static char ca_crt[128];
static int base_threads;

/* Threads of this process, from /proc/self/status. */
static int thread_count(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    assert_non_null(f);
    char line[256];
    int n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    fclose(f);
    assert_true(n > 0);
    return n;
}

/* Resolver threads are detached and cannot be joined: a test that started
 * one waits (bounded) until /proc shows it gone, so none outlives it. */
static void wait_threads_gone(void)
{
    int64_t give_up = redtls__now_ms() + 5000;
    while (thread_count() > base_threads) {
        if (redtls__now_ms() > give_up)
            fail_msg("%d resolver threads still running after 5 s", thread_count() - base_threads);
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
}

static int group_setup(void **state)
{
    (void)state;
    base_threads = thread_count();
    unit_tmpdir(dir, sizeof dir);
    unit_make_cert(dir, "ca");
    snprintf(ca_crt, sizeof ca_crt, "%s/ca.crt", dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unit_rmtree(dir);
    return 0;
}

/* ---- listeners ---- */

/* A listener on 127.0.0.1 (port chosen by the kernel). */
static int tcp_listener(int backlog, uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, backlog), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A listener that never accepts, its queue filled by one connection (the
 * kernel takes backlog + 1): later connects stay in progress. Returns the
 * listener; *filler is the connection that fills it. */
static int full_listener(uint16_t *port, int *filler)
{
    int l = tcp_listener(0, port);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(*port);
    *filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(*filler >= 0);
    assert_int_equal(connect(*filler, (struct sockaddr *)&sa, sizeof sa), 0);
    return l;
}

/* ---- the resolver seam: 127.0.0.1 at the ports the test chose ---- */

static uint16_t addr_ports[2];
static int n_addrs;
static int resolver_calls;

/* One numeric lookup per address, the lists chained: glibc's freeaddrinfo()
 * frees node by node, so the library can free the chain as one answer. */
static int fake_resolver(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    (void)node;
    (void)service;
    __atomic_add_fetch(&resolver_calls, 1, __ATOMIC_SEQ_CST);
    struct addrinfo h;
    memset(&h, 0, sizeof h);
    h.ai_socktype = hints ? hints->ai_socktype : SOCK_STREAM;
    h.ai_family = AF_INET;
    h.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    struct addrinfo *head = NULL, **tail = &head;
    for (int i = 0; i < n_addrs; i++) {
        char port[8];
        snprintf(port, sizeof port, "%u", (unsigned)addr_ports[i]);
        int rc = getaddrinfo("127.0.0.1", port, &h, tail);
        if (rc != 0) {
            if (head)
                freeaddrinfo(head);
            *res = NULL;
            return rc;
        }
        while (*tail)
            tail = &(*tail)->ai_next;
    }
    *res = head;
    return 0;
}

static redtls_config *resolver_config(int n, const uint16_t *ports, unsigned connect_timeout_ms)
{
    redtls_config *cfg = unit_plain_config();
    assert_status(redtls_config_set_host(cfg, "db.test", 6379), REDTLS_OK);
    assert_status(redtls_config_set_connect_timeout_ms(cfg, connect_timeout_ms), REDTLS_OK);
    /* Internal: set before redtls_conn_new copies the configuration. */
    cfg->resolver = fake_resolver;
    n_addrs = n;
    memcpy(addr_ports, ports, (size_t)n * sizeof *ports);
    __atomic_store_n(&resolver_calls, 0, __ATOMIC_SEQ_CST);
    return cfg;
}

/* Waits (really, bounded) for what a step asked of a socket. */
static void wait_ready(const redtls__wait *w)
{
    assert_true(w->fd >= 0 && w->events != 0);
    struct pollfd p = {.fd = w->fd, .events = (short)w->events, .revents = 0};
    if (poll(&p, 1, 5000) != 1)
        fail_msg("fd %d never became ready for %d", w->fd, w->events);
}

/* Steps at now until the name is resolved: a resolver that answers on
 * its own thread is waited for here, as a driver would (the fake clock
 * does not move). */
static redtls_status step_resolved(redtls_conn *c, int64_t now, int *done, redtls__wait *w)
{
    for (int i = 0;; i++) {
        redtls_status st = redtls__attempt_step(c, now, done, w);
        if (st != REDTLS_OK || !c->at.dial.job)
            return st;
        assert_true(i < 100);
        wait_ready(w);
    }
}

/* ---- connect timeouts ---- */

/* One address that never answers: the wait is for the socket to become
 * writable until the connect timeout, and the step at that time fails
 * naming the host and the address. */
static void test_connect_timeout(void **state)
{
    (void)state;
    uint16_t port;
    int filler;
    int l = full_listener(&port, &filler);
    redtls_config *cfg = resolver_config(1, &port, 300);
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);

    int done = 0;
    redtls__wait w;
    assert_status(redtls__attempt_start(c, T0, REDTLS__NO_DEADLINE), REDTLS_OK);
    assert_status(step_resolved(c, T0, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_int_equal(__atomic_load_n(&resolver_calls, __ATOMIC_SEQ_CST), 1);
    int fd = w.fd;
    assert_true(fd >= 0);
    assert_int_equal(w.events, POLLOUT);
    assert_true(w.at == T0 + 300);

    assert_status(redtls__attempt_step(c, T0 + 299, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_int_equal(w.fd, fd);
    assert_int_equal(w.events, POLLOUT);
    assert_true(w.at == T0 + 300);

    assert_status(redtls__attempt_step(c, T0 + 300, &done, &w), REDTLS_E_CONNECT_TIMEOUT);
    char want[96];
    snprintf(want, sizeof want, "connect to db.test port 6379 timed out (last tried 127.0.0.1:%u)", (unsigned)port);
    assert_string_equal(redtls_conn_errmsg(c), want);
    assert_false(redtls_conn_is_connected(c));
    assert_int_equal(__atomic_load_n(&resolver_calls, __ATOMIC_SEQ_CST), 1);

    redtls_conn_free(c);
    redtls_config_free(cfg);
    wait_threads_gone();
    close(filler);
    close(l);
}

/* The caller's deadline, earlier than the connect timeout, ends the dial. */
static void test_connect_ends_at_call_deadline(void **state)
{
    (void)state;
    uint16_t port;
    int filler;
    int l = full_listener(&port, &filler);
    redtls_config *cfg = resolver_config(1, &port, 300);
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    int done = 0;
    redtls__wait w;
    assert_status(redtls__attempt_start(c, T0, T0 + 100), REDTLS_OK);
    assert_status(step_resolved(c, T0, &done, &w), REDTLS_OK);
    assert_int_equal(w.events, POLLOUT);
    assert_true(w.at == T0 + 100);
    assert_status(redtls__attempt_step(c, T0 + 100, &done, &w), REDTLS_E_CONNECT_TIMEOUT);
    assert_contains(redtls_conn_errmsg(c), "timed out");
    redtls_conn_free(c);
    redtls_config_free(cfg);
    wait_threads_gone();
    close(filler);
    close(l);
}

/* Two addresses, the first black-holed: it gets half the time, then the
 * second is tried with what is left, and the attempt succeeds there. */
static void test_address_time_share(void **state)
{
    (void)state;
    uint16_t ports[2];
    int filler;
    int dead = full_listener(&ports[0], &filler);
    int good = tcp_listener(4, &ports[1]);
    redtls_config *cfg = resolver_config(2, ports, 300);
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);

    int done = 0;
    redtls__wait w;
    assert_status(redtls__attempt_start(c, T0, REDTLS__NO_DEADLINE), REDTLS_OK);
    assert_status(step_resolved(c, T0, &done, &w), REDTLS_OK);
    int first = w.fd;
    assert_int_equal(w.events, POLLOUT);
    assert_true(w.at == T0 + 150);
    assert_status(redtls__attempt_step(c, T0 + 149, &done, &w), REDTLS_OK);
    assert_int_equal(w.fd, first);
    assert_true(w.at == T0 + 150);

    /* The second address: the kernel may finish a loopback connect before
     * the step looks, or just after. */
    assert_status(redtls__attempt_step(c, T0 + 150, &done, &w), REDTLS_OK);
    if (!done) {
        assert_int_equal(w.events, POLLOUT);
        assert_true(w.at == T0 + 300);
        wait_ready(&w);
        assert_status(redtls__attempt_step(c, T0 + 150, &done, &w), REDTLS_OK);
    }
    assert_true(done);
    assert_true(redtls_conn_is_connected(c));
    int server = accept(good, NULL, NULL);
    assert_true(server >= 0);
    assert_int_equal(__atomic_load_n(&resolver_calls, __ATOMIC_SEQ_CST), 1);

    redtls_conn_free(c);
    redtls_config_free(cfg);
    wait_threads_gone();
    close(server);
    close(good);
    close(filler);
    close(dead);
}

/* Both black-holed: the second gets the rest of the time, and the failure
 * names the last address tried. */
static void test_address_time_share_all_dead(void **state)
{
    (void)state;
    uint16_t ports[2];
    int fillers[2];
    int l0 = full_listener(&ports[0], &fillers[0]);
    int l1 = full_listener(&ports[1], &fillers[1]);
    redtls_config *cfg = resolver_config(2, ports, 300);
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    int done = 0;
    redtls__wait w;
    assert_status(redtls__attempt_start(c, T0, REDTLS__NO_DEADLINE), REDTLS_OK);
    assert_status(step_resolved(c, T0, &done, &w), REDTLS_OK);
    assert_true(w.at == T0 + 150);
    /* Late by 30 ms: the second address gets what is left, not 150 ms. */
    assert_status(redtls__attempt_step(c, T0 + 180, &done, &w), REDTLS_OK);
    assert_int_equal(w.events, POLLOUT);
    assert_true(w.at == T0 + 300);
    assert_status(redtls__attempt_step(c, T0 + 299, &done, &w), REDTLS_OK);
    assert_status(redtls__attempt_step(c, T0 + 300, &done, &w), REDTLS_E_CONNECT_TIMEOUT);
    char want[96];
    snprintf(want, sizeof want, "connect to db.test port 6379 timed out (last tried 127.0.0.1:%u)",
             (unsigned)ports[1]);
    assert_string_equal(redtls_conn_errmsg(c), want);
    redtls_conn_free(c);
    redtls_config_free(cfg);
    wait_threads_gone();
    for (int i = 0; i < 2; i++)
        close(fillers[i]);
    close(l0);
    close(l1);
}

/* Why the dial-phase timeout is tested over TCP: a Unix listener with a
 * full backlog refuses a non-blocking connect at once (EAGAIN) instead of
 * leaving it in progress, and the attempt fails at its start. */
static void test_unix_full_backlog_fails_at_once(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/busy.sock", dir);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(l, 0), 0);
    int filler = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(filler, (struct sockaddr *)&sa, sizeof sa), 0);

    redtls_config *cfg = unit_plain_config();
    assert_status(redtls_config_set_unix_path(cfg, path), REDTLS_OK);
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    assert_status(redtls__attempt_start(c, T0, REDTLS__NO_DEADLINE), REDTLS_E_CONNECT);
    assert_contains(redtls_conn_errmsg(c), path);
    assert_contains(redtls_conn_errmsg(c), strerror(EAGAIN));
    redtls_conn_free(c);
    redtls_config_free(cfg);
    close(filler);
    close(l);
    unlink(path);
}

/* ---- DNS bounded by the connect timeout ---- */

/* A resolver that blocks until the test opens the gate, then answers like
 * fake_resolver. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open, gate_entered, gate_returned;

static int gated_resolver(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    pthread_mutex_lock(&gate_mu);
    gate_entered++;
    pthread_cond_broadcast(&gate_cv);
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    int rc = fake_resolver(node, service, hints, res);
    pthread_mutex_lock(&gate_mu);
    gate_returned++;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    return rc;
}

static void gate_reset(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = gate_entered = gate_returned = 0;
    pthread_mutex_unlock(&gate_mu);
}

static void gate_release(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

/* Waits (at most 5 s) until *counter reaches n. */
static void gate_wait(const int *counter, int n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&gate_mu);
    int rc = 0;
    while (*counter < n && rc == 0)
        rc = pthread_cond_timedwait(&gate_cv, &gate_mu, &until);
    int reached = *counter >= n;
    pthread_mutex_unlock(&gate_mu);
    if (!reached)
        fail_msg("the resolver thread did not get there within 5 s");
}

/* Lets the blocked lookup answer and waits until its thread has ended. */
static void gate_finish(void)
{
    gate_release();
    gate_wait(&gate_returned, 1);
    wait_threads_gone();
}

static redtls_config *gated_config(uint16_t port)
{
    redtls_config *cfg = resolver_config(1, &port, 300);
    assert_status(redtls_config_set_host(cfg, "slow.test", 6379), REDTLS_OK);
    cfg->resolver = gated_resolver;
    gate_reset();
    return cfg;
}

/* The lookup never answers: the attempt waits on the resolver's descriptor
 * until the connect timeout, then fails naming the host. */
static void test_dns_bounded_by_connect_timeout(void **state)
{
    (void)state;
    redtls_config *cfg = gated_config(1);
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    int done = 0;
    redtls__wait w;
    assert_status(redtls__attempt_start(c, T0, REDTLS__NO_DEADLINE), REDTLS_OK);
    assert_status(redtls__attempt_step(c, T0, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_non_null(c->at.dial.job);
    int fd = redtls__resolve_fd(c->at.dial.job);
    assert_true(fd >= 0);
    assert_int_equal(w.fd, fd);
    assert_int_equal(w.events, POLLIN);
    assert_true(w.at == T0 + 300);
    gate_wait(&gate_entered, 1); /* the lookup is under way, and stuck */

    assert_status(redtls__attempt_step(c, T0 + 299, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_int_equal(w.fd, fd);
    assert_int_equal(w.events, POLLIN);
    assert_true(w.at == T0 + 300);
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    assert_int_equal(poll(&p, 1, 0), 0);

    assert_status(redtls__attempt_step(c, T0 + 300, &done, &w), REDTLS_E_CONNECT_TIMEOUT);
    assert_contains(redtls_conn_errmsg(c), "resolving 'slow.test' did not finish within the connect timeout");
    assert_null(c->at.dial.job);
    assert_false(redtls_conn_is_connected(c));
    redtls_conn_free(c);
    redtls_config_free(cfg);
    gate_finish();
    assert_int_equal(__atomic_load_n(&resolver_calls, __ATOMIC_SEQ_CST), 1);
}

/* A name whose DNS hangs costs one thread per connection, not one per
 * attempt: the lookup the first attempt gave up on is taken up again by
 * the next, for the same host; its answer, once in, is used. */
static void test_dns_lookup_kept_across_attempts(void **state)
{
    (void)state;
    redtls_config *cfg = gated_config(1);
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    int done = 0;
    redtls__wait w;
    for (int attempt = 0; attempt < 3; attempt++) {
        int64_t t0 = T0 + attempt * 1000;
        assert_status(redtls__attempt_start(c, t0, REDTLS__NO_DEADLINE), REDTLS_OK);
        assert_status(redtls__attempt_step(c, t0, &done, &w), REDTLS_OK);
        assert_int_equal(w.events, POLLIN);
        gate_wait(&gate_entered, 1);
        assert_status(redtls__attempt_step(c, t0 + 300, &done, &w), REDTLS_E_CONNECT_TIMEOUT);
        assert_non_null(c->dns_kept);
    }
    pthread_mutex_lock(&gate_mu);
    int entered = gate_entered;
    pthread_mutex_unlock(&gate_mu);
    assert_int_equal(entered, 1); /* one lookup, one thread, for three attempts */
    redtls_conn_free(c);
    redtls_config_free(cfg);
    gate_finish();
    assert_int_equal(__atomic_load_n(&resolver_calls, __ATOMIC_SEQ_CST), 1);
}

/* The time the lookup took comes out of the connect timeout: an answer at
 * +200 ms leaves the connect until +300, not +500. */
static void test_dns_time_counts_against_connect_timeout(void **state)
{
    (void)state;
    uint16_t port;
    int filler;
    int l = full_listener(&port, &filler);
    redtls_config *cfg = gated_config(port);
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    int done = 0;
    redtls__wait w;
    assert_status(redtls__attempt_start(c, T0, REDTLS__NO_DEADLINE), REDTLS_OK);
    assert_status(redtls__attempt_step(c, T0, &done, &w), REDTLS_OK);
    assert_int_equal(w.events, POLLIN);
    gate_release();
    wait_ready(&w);
    assert_status(redtls__attempt_step(c, T0 + 200, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_null(c->at.dial.job);
    assert_int_equal(w.events, POLLOUT);
    assert_true(w.at == T0 + 300);
    assert_status(redtls__attempt_step(c, T0 + 300, &done, &w), REDTLS_E_CONNECT_TIMEOUT);
    char want[96];
    snprintf(want, sizeof want, "connect to slow.test port 6379 timed out (last tried 127.0.0.1:%u)", (unsigned)port);
    assert_string_equal(redtls_conn_errmsg(c), want);
    redtls_conn_free(c);
    redtls_config_free(cfg);
    gate_finish();
    close(filler);
    close(l);
}

/* redtls_conn_connect on a thread of its own, so that a connect stuck in
 * the lookup fails the test instead of hanging it. */
typedef struct connect_call {
    redtls_conn *c;
    redtls_status st;
    int64_t took;
    int finished;
} connect_call;

static void *connect_thread(void *arg)
{
    connect_call *call = arg;
    int64_t started = redtls__now_ms();
    redtls_status st = redtls_conn_connect(call->c);
    pthread_mutex_lock(&gate_mu);
    call->st = st;
    call->took = redtls__now_ms() - started;
    call->finished = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    return NULL;
}

/* The blocking API waits for DNS no longer than the connect timeout. The
 * one test here that takes real time (about 300 ms). */
static void test_dns_bounded_blocking_api(void **state)
{
    (void)state;
    redtls_config *cfg = gated_config(1);
    connect_call call = {NULL, REDTLS_OK, 0, 0};
    assert_status(redtls_conn_new(cfg, &call.c), REDTLS_OK);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, connect_thread, &call), 0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 3;
    pthread_mutex_lock(&gate_mu);
    int rc = 0;
    while (!call.finished && rc == 0)
        rc = pthread_cond_timedwait(&gate_cv, &gate_mu, &until);
    int finished = call.finished;
    pthread_mutex_unlock(&gate_mu);
    /* Stuck: the lookup's answer (port 1, refused) ends the call. */
    if (!finished)
        gate_release();
    pthread_join(th, NULL);
    if (!finished)
        fail_msg("redtls_conn_connect was still waiting for DNS after 3 s with a 300 ms connect timeout");
    assert_status(call.st, REDTLS_E_CONNECT_TIMEOUT);
    assert_contains(redtls_conn_errmsg(call.c), "resolving 'slow.test' did not finish within the connect timeout");
    assert_false(redtls_conn_is_connected(call.c));
    /* Not before the timeout either. */
    if (call.took < 299)
        fail_msg("redtls_conn_connect gave up after %lld ms with a 300 ms connect timeout", (long long)call.took);
    gate_wait(&gate_entered, 1);
    redtls_conn_free(call.c);
    redtls_config_free(cfg);
    gate_finish();
}

/* An IP literal, given or as an address override, is connected to without
 * asking the resolver. */
static void test_ip_literal_skips_resolver(void **state)
{
    (void)state;
    uint16_t port;
    int l = tcp_listener(4, &port);
    redtls_config *cfg = resolver_config(1, &port, 2000);
    redtls_conn *c = NULL;

    assert_status(redtls_config_set_host(cfg, "127.0.0.1", port), REDTLS_OK);
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    assert_status(redtls_conn_connect(c), REDTLS_OK);
    assert_true(redtls_conn_is_connected(c));
    redtls_conn_free(c);

    assert_status(redtls_config_set_host(cfg, "db.test", port), REDTLS_OK);
    assert_status(redtls_config_add_resolve(cfg, "db.test", 0, "127.0.0.1"), REDTLS_OK);
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    assert_status(redtls_conn_connect(c), REDTLS_OK);
    redtls_conn_free(c);

    /* Nothing listens on ::1 here (and there may be no IPv6 at all): only
     * the resolver's silence counts. */
    assert_status(redtls_config_clear_host_maps(cfg), REDTLS_OK);
    assert_status(redtls_config_set_host(cfg, "::1", port), REDTLS_OK);
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    redtls_status st = redtls_conn_connect(c);
    assert_true(st == REDTLS_OK || st == REDTLS_E_CONNECT);
    redtls_conn_free(c);

    assert_int_equal(__atomic_load_n(&resolver_calls, __ATOMIC_SEQ_CST), 0);
    redtls_config_free(cfg);
    close(l);
}

/* ---- the TLS phase ---- */

/* The server takes the connection (the kernel does) but never answers the
 * ClientHello: the wait is for the socket until the handshake timeout,
 * counted from the moment TCP was up, and the step at that time fails
 * and closes the socket. */
static void test_tls_handshake_timeout(void **state)
{
    (void)state;
    uint16_t port;
    int l = tcp_listener(4, &port);
    redtls_config *cfg = NULL;
    assert_status(redtls_config_new(&cfg), REDTLS_OK);
    assert_status(redtls_config_set_host(cfg, "127.0.0.1", port), REDTLS_OK);
    assert_status(redtls_config_set_ca_file(cfg, ca_crt), REDTLS_OK);
    assert_status(redtls_config_set_reconnect(cfg, 0), REDTLS_OK);
    assert_status(redtls_config_set_connect_timeout_ms(cfg, 1000), REDTLS_OK);
    assert_status(redtls_config_set_handshake_timeout_ms(cfg, 200), REDTLS_OK);
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);

    int done = 0;
    redtls__wait w;
    int64_t now = T0;
    assert_status(redtls__attempt_start(c, now, REDTLS__NO_DEADLINE), REDTLS_OK);
    for (int i = 0; !c->at.tp; i++, now += 7) {
        assert_true(i < 100);
        assert_status(redtls__attempt_step(c, now, &done, &w), REDTLS_OK);
        assert_false(done);
        if (!c->at.tp)
            wait_ready(&w);
    }
    /* now - 7: the time of the step that saw TCP up and sent the
     * ClientHello, which is that step's work: it asks to be called again
     * at once, the socket still watched. */
    const int64_t hello_at = now - 7, deadline = hello_at + 200;
    int fd = w.fd;
    assert_true(fd >= 0);
    assert_int_equal(w.events, POLLIN);
    assert_true(w.at == hello_at);

    /* No answer yet: the wait is for the socket, until the timeout. */
    assert_status(redtls__attempt_step(c, hello_at, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_int_equal(w.fd, fd);
    assert_int_equal(w.events, POLLIN);
    assert_true(w.at == deadline);

    assert_status(redtls__attempt_step(c, deadline - 1, &done, &w), REDTLS_OK);
    assert_false(done);
    assert_int_equal(w.fd, fd);
    assert_int_equal(w.events, POLLIN);
    assert_true(w.at == deadline);

    assert_status(redtls__attempt_step(c, deadline, &done, &w), REDTLS_E_HANDSHAKE_TIMEOUT);
    assert_contains(redtls_conn_errmsg(c), "TLS handshake not completed within the handshake timeout "
                                           "(no answer from the server");
    assert_false(redtls_conn_is_connected(c));
    assert_null(c->at.tp);

    /* Nothing was left open: the server sees the ClientHello, then the end. */
    int server = accept(l, NULL, NULL);
    assert_true(server >= 0);
    char buf[4096];
    size_t total = 0;
    for (;;) {
        struct pollfd p = {.fd = server, .events = POLLIN, .revents = 0};
        assert_int_equal(poll(&p, 1, 5000), 1);
        ssize_t n = recv(server, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        if (total == 0)
            assert_int_equal((unsigned char)buf[0], 0x16); /* a TLS handshake record */
        total += (size_t)n;
    }
    assert_true(total > 0);

    redtls_conn_free(c);
    redtls_config_free(cfg);
    close(server);
    close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_connect_ends_at_call_deadline),
        cmocka_unit_test(test_address_time_share),
        cmocka_unit_test(test_address_time_share_all_dead),
        cmocka_unit_test(test_unix_full_backlog_fails_at_once),
        cmocka_unit_test(test_dns_bounded_by_connect_timeout),
        cmocka_unit_test(test_dns_lookup_kept_across_attempts),
        cmocka_unit_test(test_dns_time_counts_against_connect_timeout),
        cmocka_unit_test(test_dns_bounded_blocking_api),
        cmocka_unit_test(test_ip_literal_skips_resolver),
        cmocka_unit_test(test_tls_handshake_timeout),
    };
    return cmocka_run_group_tests_name("connect", tests, group_setup, group_teardown);
}

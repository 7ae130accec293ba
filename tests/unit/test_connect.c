/* lib/connect.c: one connection attempt (dial, TLS, set-up) stepped by
 * hand with a fake clock, against listeners on 127.0.0.1 made by the test
 * (no other network). A TCP listener whose accept queue is full drops new
 * SYNs, so a connect to it stays in progress: that is how the connect
 * timeouts are reached without waiting for them. */
#include "unit_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#define T0 1000000

static char dir[64];
static char ca_crt[128];

static int group_setup(void **state)
{
    (void)state;
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
    resolver_calls = 0;
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
    assert_int_equal(resolver_calls, 1);
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
    assert_int_equal(resolver_calls, 1);

    redtls_conn_free(c);
    redtls_config_free(cfg);
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
    assert_int_equal(resolver_calls, 1);

    redtls_conn_free(c);
    redtls_config_free(cfg);
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
    /* now - 7: the time of the step that saw TCP up. */
    const int64_t deadline = now - 7 + 200;
    int fd = w.fd;
    assert_true(fd >= 0);
    assert_int_equal(w.events, POLLIN); /* the ClientHello is out */
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
        cmocka_unit_test(test_tls_handshake_timeout),
    };
    return cmocka_run_group_tests_name("connect", tests, group_setup, group_teardown);
}

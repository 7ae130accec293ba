/* lib/sock.c: waiting on descriptors, Unix and loopback TCP connects (no
 * network beyond 127.0.0.1). */
#include "unit_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "transport.h"

static char dir[64];

static int group_setup(void **state)
{
    (void)state;
    unit_tmpdir(dir, sizeof dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unit_rmtree(dir);
    return 0;
}

static void test_wait_fd(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int64_t t0 = redtls__now_ms();
    assert_int_equal(redtls__wait_fd(sv[0], POLLIN, redtls__deadline_after(50)), 0);
    int64_t took = redtls__now_ms() - t0;
    assert_true(took >= 45 && took < 1000);
    /* Passed deadline: no wait at all. */
    t0 = redtls__now_ms();
    assert_int_equal(redtls__wait_fd(sv[0], POLLIN, redtls__now_ms() - 10), 0);
    assert_true(redtls__now_ms() - t0 < 30);
    assert_int_equal(redtls__wait_fd(sv[0], POLLOUT, redtls__deadline_after(1000)), 1);
    assert_int_equal(send(sv[1], "x", 1, 0), 1);
    assert_int_equal(redtls__wait_fd(sv[0], POLLIN, redtls__deadline_after(1000)), 1);
    assert_int_equal(redtls__wait_fd(sv[0], POLLIN, REDTLS__NO_DEADLINE), 1);
    /* A closed peer makes the descriptor readable (EOF). */
    char c;
    assert_int_equal(recv(sv[0], &c, 1, 0), 1);
    close(sv[1]);
    assert_int_equal(redtls__wait_fd(sv[0], POLLIN, redtls__deadline_after(1000)), 1);
    close(sv[0]);
}

static int unix_listener(const char *path)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 4), 0);
    return fd;
}

static void test_unix_connect(void **state)
{
    (void)state;
    char path[128], err[REDTLS__ERRMSG_MAX] = "";
    snprintf(path, sizeof path, "%s/ok.sock", dir);
    int l = unix_listener(path);
    int fd = -1;
    assert_status(unit_unix_connect(path, redtls__deadline_after(1000), &fd, err), REDTLS_OK);
    assert_true(fd >= 0);
    /* Non-blocking (the transports rely on it) and close-on-exec. */
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    int a = accept(l, NULL, NULL);
    assert_true(a >= 0);
    assert_int_equal(send(fd, "hi", 2, MSG_NOSIGNAL), 2);
    char buf[4];
    assert_int_equal(recv(a, buf, sizeof buf, 0), 2);
    close(a);
    close(fd);
    close(l);
}

static void test_unix_connect_errors(void **state)
{
    (void)state;
    char path[256], err[REDTLS__ERRMSG_MAX] = "";
    int fd = 123;
    snprintf(path, sizeof path, "%s/missing.sock", dir);
    assert_status(unit_unix_connect(path, redtls__deadline_after(1000), &fd, err), REDTLS_E_CONNECT);
    assert_int_equal(fd, -1);
    assert_contains(err, path);
    assert_contains(err, strerror(ENOENT));

    /* A file that is not a socket. */
    snprintf(path, sizeof path, "%s/plain-file", dir);
    unit_write_file(path, "x");
    assert_status(unit_unix_connect(path, redtls__deadline_after(1000), &fd, err), REDTLS_E_CONNECT);
    assert_contains(err, strerror(ECONNREFUSED));

    /* A socket nobody listens on any more. */
    snprintf(path, sizeof path, "%s/stale.sock", dir);
    close(unix_listener(path));
    assert_status(unit_unix_connect(path, redtls__deadline_after(1000), &fd, err), REDTLS_E_CONNECT);
    assert_contains(err, strerror(ECONNREFUSED));

    /* Longer than sun_path. */
    char longpath[200];
    memset(longpath, 'p', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    assert_status(unit_unix_connect(longpath, redtls__deadline_after(1000), &fd, err), REDTLS_E_CONFIG);
    assert_contains(err, "too long");
    assert_int_equal(fd, -1);
}

static int tcp_listener(uint16_t *port)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static void test_tcp_connect_loopback(void **state)
{
    (void)state;
    uint16_t port = 0;
    int l = tcp_listener(&port);
    int fd = -1;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(unit_tcp_connect("127.0.0.1", port, redtls__deadline_after(2000), 0, &fd, err), REDTLS_OK);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    int one = 0;
    socklen_t len = sizeof one;
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, &len), 0);
    assert_int_equal(one, 1);
    close(fd);
    close(l);
}

static void test_tcp_connect_refused(void **state)
{
    (void)state;
    uint16_t port = 0;
    close(tcp_listener(&port)); /* a port that was just free */
    int fd = 5;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(unit_tcp_connect("127.0.0.1", port, redtls__deadline_after(2000), 0, &fd, err), REDTLS_E_CONNECT);
    assert_int_equal(fd, -1);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%u", (unsigned)port);
    assert_contains(err, want);
    assert_contains(err, strerror(ECONNREFUSED));
}

static void test_tcp_connect_deadline_passed(void **state)
{
    (void)state;
    uint16_t port = 0;
    int l = tcp_listener(&port);
    int fd = 5;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(unit_tcp_connect("127.0.0.1", port, redtls__now_ms() - 1, 0, &fd, err), REDTLS_E_CONNECT_TIMEOUT);
    assert_int_equal(fd, -1);
    assert_contains(err, "timed out");
    close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wait_fd),
        cmocka_unit_test(test_unix_connect),
        cmocka_unit_test(test_unix_connect_errors),
        cmocka_unit_test(test_tcp_connect_loopback),
        cmocka_unit_test(test_tcp_connect_refused),
        cmocka_unit_test(test_tcp_connect_deadline_passed),
    };
    return cmocka_run_group_tests_name("sock", tests, group_setup, group_teardown);
}

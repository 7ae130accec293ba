/* lib/transport.c: the memory transport and the plain socket transport
 * (over a socketpair: no network). */
#include "unit_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>

#include "transport.h"

static void test_mem_reads_chunks_in_order(void **state)
{
    (void)state;
    redtls__transport *t = NULL;
    assert_status(redtls__mem_transport(&t, REDTLS_E_EOF), REDTLS_OK);
    assert_non_null(t);
    unit_push(t, "hello");
    unit_push(t, "");  /* ignored */
    unit_pushn(t, "a\0b", 3);
    unit_push(t, "world!");
    char buf[64], err[REDTLS__ERRMSG_MAX] = "";
    size_t got = 0;
    /* One chunk per read, even when more would fit. */
    assert_status(unit_read(t, buf, sizeof buf, &got, REDTLS__NO_DEADLINE, err), REDTLS_OK);
    assert_int_equal(got, 5);
    assert_memory_equal(buf, "hello", 5);
    assert_status(unit_read(t, buf, sizeof buf, &got, REDTLS__NO_DEADLINE, err), REDTLS_OK);
    assert_int_equal(got, 3);
    assert_memory_equal(buf, "a\0b", 3);
    /* A chunk larger than the buffer is handed out in pieces. */
    assert_status(unit_read(t, buf, 4, &got, REDTLS__NO_DEADLINE, err), REDTLS_OK);
    assert_int_equal(got, 4);
    assert_memory_equal(buf, "worl", 4);
    assert_status(unit_read(t, buf, 4, &got, REDTLS__NO_DEADLINE, err), REDTLS_OK);
    assert_int_equal(got, 2);
    assert_memory_equal(buf, "d!", 2);
    /* Then the scripted end, every time. */
    got = 77;
    assert_status(unit_read(t, buf, sizeof buf, &got, REDTLS__NO_DEADLINE, err), REDTLS_E_EOF);
    assert_string_equal(err, "server closed the connection");
    assert_status(unit_read(t, buf, sizeof buf, &got, REDTLS__NO_DEADLINE, err), REDTLS_E_EOF);
    /* Pushing after the end works. */
    unit_push(t, "more");
    assert_status(unit_read(t, buf, sizeof buf, &got, REDTLS__NO_DEADLINE, err), REDTLS_OK);
    assert_int_equal(got, 4);
    t->ops->close(t, 1);
}

static void test_mem_at_end_kinds(void **state)
{
    (void)state;
    const redtls_status ends[] = {REDTLS_E_EOF, REDTLS_E_CLOSED, REDTLS_E_COMMAND_TIMEOUT};
    const char *msgs[] = {"server closed the connection", "server closed the connection",
                          "timed out waiting for the server"};
    for (size_t i = 0; i < 3; i++) {
        redtls__transport *t = NULL;
        assert_status(redtls__mem_transport(&t, ends[i]), REDTLS_OK);
        char buf[8], err[REDTLS__ERRMSG_MAX] = "";
        size_t got = 0;
        assert_status(unit_read(t, buf, sizeof buf, &got, REDTLS__NO_DEADLINE, err), ends[i]);
        assert_string_equal(err, msgs[i]);
        /* A NULL message buffer is allowed. */
        assert_status(unit_read(t, buf, sizeof buf, &got, REDTLS__NO_DEADLINE, NULL), ends[i]);
        t->ops->close(t, 0);
    }
}

static void test_mem_records_writes(void **state)
{
    (void)state;
    redtls__transport *t = NULL;
    assert_status(redtls__mem_transport(&t, REDTLS_E_EOF), REDTLS_OK);
    size_t len = 99;
    assert_string_equal(redtls__mem_written(t, &len), "");
    assert_int_equal(len, 0);
    assert_int_equal(redtls__mem_write_calls(t), 0);
    char err[REDTLS__ERRMSG_MAX];
    assert_status(unit_write_all(t, "abc", 3, REDTLS__NO_DEADLINE, err), REDTLS_OK);
    assert_status(unit_write_all(t, "\0\r\n", 3, REDTLS__NO_DEADLINE, err), REDTLS_OK);
    char big[1000];
    memset(big, 'z', sizeof big);
    assert_status(unit_write_all(t, big, sizeof big, REDTLS__NO_DEADLINE, err), REDTLS_OK);
    const char *w = redtls__mem_written(t, &len);
    assert_int_equal(len, 1006);
    assert_memory_equal(w, "abc\0\r\n", 6);
    assert_memory_equal(w + 6, big, sizeof big);
    assert_int_equal(w[len], '\0');
    assert_int_equal(redtls__mem_write_calls(t), 3);
    /* Closing with unread chunks frees them (checked by the sanitizers). */
    unit_push(t, "unread");
    t->ops->close(t, 1);
}

/* ---- plain transport over a socketpair ---- */

typedef struct pair {
    redtls__transport *t;
    int peer;
    int fd; /* the transport's end, for inspection only */
} pair;

static void set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

static int pair_setup(void **state)
{
    pair *p = calloc(1, sizeof *p);
    int sv[2];
    if (!p || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return -1;
    set_nonblocking(sv[0]);
    p->fd = sv[0];
    p->peer = sv[1];
    if (redtls__plain_transport(sv[0], &p->t) != REDTLS_OK)
        return -1;
    *state = p;
    return 0;
}

static int pair_teardown(void **state)
{
    pair *p = *state;
    if (p->t)
        p->t->ops->close(p->t, 1);
    if (p->peer >= 0)
        close(p->peer);
    free(p);
    return 0;
}

static void test_plain_write_and_read(void **state)
{
    pair *p = *state;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(unit_write_all(p->t, "*1\r\n$4\r\nPING\r\n", 14, redtls__deadline_after(1000), err), REDTLS_OK);
    char buf[64];
    ssize_t n = recv(p->peer, buf, sizeof buf, 0);
    assert_int_equal(n, 14);
    assert_memory_equal(buf, "*1\r\n$4\r\nPING\r\n", 14);

    assert_int_equal(send(p->peer, "+PONG\r\n", 7, 0), 7);
    size_t got = 0;
    assert_status(unit_read(p->t, buf, sizeof buf, &got, redtls__deadline_after(1000), err), REDTLS_OK);
    assert_int_equal(got, 7);
    assert_memory_equal(buf, "+PONG\r\n", 7);

    /* A read waits for data that arrives later (within the deadline). */
    assert_int_equal(send(p->peer, "x", 1, 0), 1);
    assert_status(unit_read(p->t, buf, 1, &got, redtls__deadline_after(1000), err), REDTLS_OK);
    assert_int_equal(got, 1);
}

static void test_plain_eof(void **state)
{
    pair *p = *state;
    assert_int_equal(send(p->peer, "tail", 4, 0), 4);
    close(p->peer);
    p->peer = -1;
    char buf[64], err[REDTLS__ERRMSG_MAX] = "";
    size_t got = 0;
    /* Data sent before the close is delivered first. */
    assert_status(unit_read(p->t, buf, sizeof buf, &got, redtls__deadline_after(1000), err), REDTLS_OK);
    assert_int_equal(got, 4);
    assert_status(unit_read(p->t, buf, sizeof buf, &got, redtls__deadline_after(1000), err), REDTLS_E_EOF);
    assert_string_equal(err, "server closed the connection");
}

/* Writing to a closed peer fails with REDTLS_E_IO and does not raise
 * SIGPIPE. SIGPIPE is left at (or reset to) its default action, which
 * would end this process. */
static void test_plain_write_after_peer_closed_no_sigpipe(void **state)
{
    pair *p = *state;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGPIPE, &sa, NULL), 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    assert_int_equal(sigprocmask(SIG_UNBLOCK, &set, NULL), 0);

    close(p->peer);
    p->peer = -1;
    char err[REDTLS__ERRMSG_MAX] = "";
    redtls_status st = unit_write_all(p->t, "PING\r\n", 6, redtls__deadline_after(1000), err);
    assert_status(st, REDTLS_E_IO);
    assert_contains(err, "write failed");
    assert_contains(err, strerror(EPIPE));
    /* And again: still no signal. */
    assert_status(unit_write_all(p->t, "PING\r\n", 6, redtls__deadline_after(1000), err), REDTLS_E_IO);
}

static void test_plain_read_timeout(void **state)
{
    pair *p = *state;
    char buf[8], err[REDTLS__ERRMSG_MAX] = "";
    size_t got = 0;
    int64_t t0 = redtls__now_ms();
    assert_status(unit_read(p->t, buf, sizeof buf, &got, redtls__deadline_after(60), err),
                  REDTLS_E_COMMAND_TIMEOUT);
    int64_t took = redtls__now_ms() - t0;
    assert_true(took >= 55 && took < 1000);
    assert_string_equal(err, "timed out waiting for the server");
    /* A deadline already passed fails at once. */
    t0 = redtls__now_ms();
    assert_status(unit_read(p->t, buf, sizeof buf, &got, redtls__now_ms() - 1, err), REDTLS_E_COMMAND_TIMEOUT);
    assert_true(redtls__now_ms() - t0 < 50);
}

static void test_plain_write_timeout(void **state)
{
    pair *p = *state;
    /* The peer never reads: the socket buffers fill up. */
    size_t n = 16u * 1024u * 1024u;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'w', n);
    char err[REDTLS__ERRMSG_MAX] = "";
    int64_t t0 = redtls__now_ms();
    assert_status(unit_write_all(p->t, big, n, redtls__deadline_after(80), err), REDTLS_E_COMMAND_TIMEOUT);
    int64_t took = redtls__now_ms() - t0;
    assert_true(took >= 75 && took < 1500);
    assert_string_equal(err, "timed out writing to the server");
    free(big);
}

static void test_plain_close_closes_fd(void **state)
{
    pair *p = *state;
    p->t->ops->close(p->t, 1);
    p->t = NULL;
    errno = 0;
    assert_int_equal(fcntl(p->fd, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
    /* The peer sees the end of the stream. */
    char c;
    assert_int_equal(recv(p->peer, &c, 1, 0), 0);
}

#define P(fn) cmocka_unit_test_setup_teardown(fn, pair_setup, pair_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mem_reads_chunks_in_order),
        cmocka_unit_test(test_mem_at_end_kinds),
        cmocka_unit_test(test_mem_records_writes),
        P(test_plain_write_and_read),
        P(test_plain_eof),
        P(test_plain_write_after_peer_closed_no_sigpipe),
        P(test_plain_read_timeout),
        P(test_plain_write_timeout),
        P(test_plain_close_closes_fd),
    };
    return cmocka_run_group_tests_name("transport", tests, NULL, NULL);
}

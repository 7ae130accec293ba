/* Once a defect of lib/driver/async.c, fixed with this test (it failed before).
 *
 * When the handle loses its connection and connects again within one pass
 * of redtls_async_process() (commands wait, or idempotent ones are to be
 * sent again, and the new connection is up before the pass ends), the new
 * socket usually gets the old one's descriptor number, and its transport
 * the old one's address (malloc hands back the block just freed).
 * redtls__async_kick() (lib/driver/async.c:576-577) tells sockets apart by
 * those pointers and a dial counter only, so it takes the new socket for
 * the old one: no watch(-1, 0) comes first, as async.h promises. The
 * kernel dropped the closed socket from epoll, and libuv and libevent,
 * told nothing new, never watch the new one: the commands sent on it wait
 * for their deadlines (REDTLS_E_COMMAND_TIMEOUT), and so do the next ones,
 * for as long as the handle lives, progress coming only from timer-driven
 * passes.
 *
 * The test: on libuv and on libevent, a stream of idempotent commands
 * (each reply issues the next, eight in flight) while the server kills the
 * connection, up to sixty times; each command must end with its reply
 * (those in flight at a kill are sent again once), none with a time-out.
 * Plain TCP on loopback makes the one-pass reconnect certain (the connect
 * completes at once, nothing is to be set up), so the defect shows at the
 * first kills. Over TLS it needs the server to answer the handshake and
 * AUTH within the pass: integration.async_matrix's first versions (INCRs
 * and the rotation stream issued from callbacks, server-side kills) hit it
 * in about half the runs. Under AddressSanitizer this test passes: its
 * quarantine keeps a freed block's address from coming back at once,
 * which is the mechanism.
 *
 * Proposed fix: give each socket the handle opens a generation number
 * (bumped wherever a transport or dial socket is made, or at every close
 * in connection_lost, end_everything and the attempt's failure path), keep
 * the generation the hooks were told about, and call watch(-1, 0) in
 * redtls__async_kick whenever it differs, instead of comparing pointers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <redtls/async.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_async.h"
#include "lab_client.h"

#define KILLS 60
#define DEPTH 8

static lab_server redis; /* plain TCP, no password */

static lab_async_env t;

static int group_setup(void **state)
{
    (void)state;
    return lab_init_redis(120, &redis, &(lab_redis_opts){.tls = 0});
}

static int group_teardown(void **state)
{
    (void)state;
    lab_stop(&redis);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return lab_async_env_free(&t);
}

/* t: plain TCP, that command timeout, the admin connection, a loop of
 * that kind and room in the tally for the stream. */
static void start(lab_loop_kind kind, unsigned command_ms)
{
    assert_int_equal(redtls_config_new(&t.cfg), REDTLS_OK);
    assert_cfg_status(t.cfg, redtls_config_set_host(t.cfg, "localhost", redis.port), REDTLS_OK);
    assert_cfg_status(t.cfg, redtls_config_set_tls(t.cfg, 0), REDTLS_OK);
    assert_cfg_status(t.cfg, redtls_config_set_command_timeout_ms(t.cfg, command_ms), REDTLS_OK);
    lab_client_connect(&t.admin, t.cfg);
    assert_int_equal(lab_async_env_open(&t, kind, 100000), 0);
}

/* Each command that ends issues the next: DEPTH stay in flight (until
 * the tally is full). */
static void stream_next(lab_tally *tl, redtls_async *ac, lab_acmd *c, const redisReply *reply)
{
    (void)c;
    (void)reply;
    if (tl->issued + 1 < tl->cap)
        lab_issue(tl, ac, REDTLS_CMD_IDEMPOTENT, "GET fdreuse:k", NULL);
}

/* Room left for a round of kills (a fast stream overshoots its goals). */
static int room(void)
{
    return t.tally->issued < t.tally->cap / 2;
}

/* The server kills the handle's connection (found by its address). */
static void kill_handle(redtls_async *ac)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int fd = redtls_async_fd(ac);
    assert_true(fd >= 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    redisReply *r = NULL;
    assert_conn_status(t.admin,
                       redtls_conn_command(t.admin, &r, "CLIENT KILL ADDR 127.0.0.1:%u", (unsigned)ntohs(sa.sin_port)),
                       REDTLS_OK);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 1);
    redtls_reply_free(r);
}

/* Whether fd is in one of this process's epoll sets: the loop's view of
 * the socket, read from /proc (evidence printed when a command timed out). */
static int fd_in_epoll(int fd)
{
    char path[64], line[256], want[32];
    int found = 0;
    snprintf(want, sizeof want, "tfd: %8d ", fd);
    for (int e = 0; e < 1024 && !found; e++) {
        char link[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", e);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n <= 0)
            continue;
        link[n] = '\0';
        if (strstr(link, "eventpoll") == NULL)
            continue;
        snprintf(path, sizeof path, "/proc/self/fdinfo/%d", e);
        FILE *f = fopen(path, "r");
        while (f != NULL && fgets(line, sizeof line, f) != NULL)
            if (strncmp(line, want, strlen(want)) == 0)
                found = 1;
        if (f != NULL)
            fclose(f);
    }
    return found;
}


static int progressed(void *ud)
{
    return t.tally->done >= *(const size_t *)ud;
}

/* One handle: the stream, and a kill every 50 callbacks until KILLS or a
 * command timed out. */
static void one_handle(lab_loop_kind kind)
{
    redtls_async *ac = lab_async_env_handle(&t);
    assert_non_null(ac);
    t.tally->after = stream_next;
    for (int i = 0; i < DEPTH; i++)
        assert_int_equal(lab_issue(t.tally, ac, REDTLS_CMD_IDEMPOTENT, "GET fdreuse:k", NULL), REDTLS_OK);
    for (int k = 0; k < KILLS && t.tally->by_status[REDTLS_E_COMMAND_TIMEOUT] == 0 && room(); k++) {
        size_t want = t.tally->done + 50;
        /* More than a command timeout to make progress. */
        if (!lab_loop_run_until(t.loop, progressed, &want, 1500))
            break;
        kill_handle(ac);
    }
    size_t want = t.tally->done + 50;
    if (room() && !lab_loop_run_until(t.loop, progressed, &want, 1500)) {
        int fd = redtls_async_fd(ac);
        print_message("    %s: stalled with %zu commands owed; the handle's socket (fd %d) is %sin the loop's epoll set\n",
                      lab_loop_name(kind), lab_tally_owed(t.tally), fd, fd_in_epoll(fd) ? "" : "NOT ");
    }
    t.tally->after = NULL;
    lab_loop_free_handle(t.loop, ac);
}

static void stream_with_kills(lab_loop_kind kind)
{
    if (!lab_loop_available(kind))
        skip();
    start(kind, 1000);
    long long t0 = lab_now_ms();
    /* A fresh handle lays the heap out anew, for another chance. */
    for (int round = 0; round < 3 && t.tally->by_status[REDTLS_E_COMMAND_TIMEOUT] == 0 && room(); round++)
        one_handle(kind);
    print_message("    %s: %zu commands in %lld ms: %zu ok, %zu timed out\n", lab_loop_name(kind), t.tally->issued,
                  lab_now_ms() - t0, t.tally->by_status[REDTLS_OK], t.tally->by_status[REDTLS_E_COMMAND_TIMEOUT]);
    assert_int_equal(lab_tally_check(t.tally, "stream"), 0);
    /* Freeing ended the last ones with REDTLS_E_CLOSED; none timed out. */
    assert_int_equal(t.tally->by_status[REDTLS_E_COMMAND_TIMEOUT], 0);
    assert_int_equal(t.tally->by_status[REDTLS_OK] + t.tally->by_status[REDTLS_E_CLOSED], t.tally->issued);
}

static void test_libuv_watches_the_new_socket(void **state)
{
    (void)state;
    stream_with_kills(LAB_LOOP_LIBUV);
}

static void test_libevent_watches_the_new_socket(void **state)
{
    (void)state;
    stream_with_kills(LAB_LOOP_LIBEVENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_libuv_watches_the_new_socket, teardown),
        cmocka_unit_test_teardown(test_libevent_watches_the_new_socket, teardown),
    };
    return cmocka_run_group_tests_name("integration.async_fd_reuse", tests, group_setup, group_teardown);
}

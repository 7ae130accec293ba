/* lib/net/resolve.c: literals and localhost answered at once, other names through the system
 * resolver, and fake resolvers that block, fail or sleep, to cover an owner
 * giving up while its thread still runs. No network: the fakes answer with
 * 192.0.2.7 (TEST-NET-1) made from a literal.
 *
 * Every test waits (bounded) until the resolver threads it started have
 * ended, so ASan and valgrind see what an abandoned job leaves behind. */
#include "unit_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>

#include "resolve.h"

#define WAIT_MS 20000

static int base_threads;
static atomic_int fake_calls, fake_returns, fake_bad_args, fake_signals_open;

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open;

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

static void sleep_us(long us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Waits until the fakes have returned `returns` times and every thread
 * they ran on has ended (its job freed by then, when it let go last). */
static void wait_threads_done(int returns)
{
    int64_t deadline = redtls__now_ms() + WAIT_MS;
    while (atomic_load(&fake_returns) < returns || thread_count() > base_threads) {
        if (redtls__now_ms() > deadline)
            fail_msg("resolver threads still running after %d ms: %d of %d fakes returned, %d threads (%d before)",
                     WAIT_MS, atomic_load(&fake_returns), returns, thread_count(), base_threads);
        sleep_us(1000);
    }
}

static void wait_calls(int calls)
{
    int64_t deadline = redtls__now_ms() + WAIT_MS;
    while (atomic_load(&fake_calls) < calls) {
        if (redtls__now_ms() > deadline)
            fail_msg("the fake resolver was called %d times in %d ms, expected %d", atomic_load(&fake_calls),
                     WAIT_MS, calls);
        sleep_us(1000);
    }
}

static void wait_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    int rc;
    do
        rc = poll(&p, 1, WAIT_MS);
    while (rc < 0 && errno == EINTR);
    if (rc != 1)
        fail_msg("the resolver's descriptor did not become readable within %d ms", WAIT_MS);
}

static int readable_now(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    return poll(&p, 1, 0);
}

/* What every fake does first: count the call, check the arguments the
 * module passes, and note whether the thread runs with signals blocked. */
static void fake_enter(const char *node, const char *service, const struct addrinfo *hints)
{
    atomic_fetch_add(&fake_calls, 1);
    if (!node || !service || strcmp(service, "6379") != 0 || !hints || hints->ai_family != AF_UNSPEC ||
        hints->ai_socktype != SOCK_STREAM || (hints->ai_flags & AI_NUMERICHOST))
        atomic_fetch_add(&fake_bad_args, 1);
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    if (!sigismember(&cur, SIGINT) || !sigismember(&cur, SIGTERM) || !sigismember(&cur, SIGUSR1) ||
        !sigismember(&cur, SIGCHLD) || !sigismember(&cur, SIGPIPE) || !sigismember(&cur, SIGRTMIN))
        atomic_fetch_add(&fake_signals_open, 1);
}

static int fake_leave(int rc)
{
    atomic_fetch_add(&fake_returns, 1);
    return rc;
}

static int answer_testnet(const char *service, struct addrinfo **res)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    return getaddrinfo("192.0.2.7", service, &hints, res);
}

static int fake_answer(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    fake_enter(node, service, hints);
    return fake_leave(answer_testnet(service, res));
}

/* Answers once the test opens the gate. */
static int fake_gated(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    fake_enter(node, service, hints);
    pthread_mutex_lock(&gate_mu);
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    return fake_leave(answer_testnet(service, res));
}

static void open_gate(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

static int fake_noname(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    (void)res;
    fake_enter(node, service, hints);
    return fake_leave(EAI_NONAME);
}

static int fake_nomem(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    (void)res;
    fake_enter(node, service, hints);
    return fake_leave(EAI_MEMORY);
}

static int fake_system(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    (void)res;
    fake_enter(node, service, hints);
    errno = EMFILE;
    return fake_leave(EAI_SYSTEM);
}

/* Success without an address: a broken resolver (or NSS module). */
static int fake_empty(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    fake_enter(node, service, hints);
    *res = NULL;
    return fake_leave(0);
}

/* Sleeps 0 to 2 ms (a different time each call), then answers. */
static atomic_uint sleepy_seq;
static int fake_sleepy(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    fake_enter(node, service, hints);
    unsigned k = (atomic_fetch_add(&sleepy_seq, 1) + 1) * 2654435761u;
    sleep_us((long)((k >> 8) % 2001));
    return fake_leave(answer_testnet(service, res));
}

static void *idle_thread(void *arg)
{
    return arg;
}

static int group_setup(void **state)
{
    (void)state;
    /* A sanitizer runtime may start a helper thread of its own with the
     * first thread the program makes (TSan does): let that happen before
     * counting the threads that are not ours. */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, idle_thread, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    sleep_us(10000);
    base_threads = thread_count();
    return 0;
}

static int reset(void **state)
{
    (void)state;
    atomic_store(&fake_calls, 0);
    atomic_store(&fake_returns, 0);
    atomic_store(&fake_bad_args, 0);
    atomic_store(&fake_signals_open, 0);
    pthread_mutex_lock(&gate_mu);
    gate_open = 0;
    pthread_mutex_unlock(&gate_mu);
    return 0;
}

/* Checked after every test: the fakes saw the arguments and signal mask
 * they should. */
static int check_fakes(void **state)
{
    (void)state;
    assert_int_equal(atomic_load(&fake_bad_args), 0);
    assert_int_equal(atomic_load(&fake_signals_open), 0);
    return 0;
}

static void assert_one_address(const struct addrinfo *ai, int family, const char *addr)
{
    assert_non_null(ai);
    assert_int_equal(ai->ai_family, family);
    assert_int_equal(ai->ai_socktype, SOCK_STREAM);
    char text[INET6_ADDRSTRLEN];
    if (family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)ai->ai_addr;
        assert_int_equal(ntohs(sin->sin_port), 6379);
        assert_non_null(inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text));
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)ai->ai_addr;
        assert_int_equal(ntohs(sin6->sin6_port), 6379);
        assert_non_null(inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text));
    }
    assert_string_equal(text, addr);
    assert_null(ai->ai_next);
}

static void check_literal(const char *host, int family)
{
    char err[REDTLS__ERRMSG_MAX] = "";
    redtls__resolve *r = NULL;
    int threads = thread_count();
    assert_status(redtls__resolve_start(host, 6379, fake_answer, &r, err), REDTLS_OK);
    assert_non_null(r);
    assert_int_equal(redtls__resolve_fd(r), -1);
    assert_int_equal(thread_count(), threads);
    struct addrinfo *ai = NULL;
    assert_status(redtls__resolve_take(r, &ai, err), REDTLS_OK);
    assert_one_address(ai, family, host);
    freeaddrinfo(ai);
    /* Given once only. */
    ai = (struct addrinfo *)&ai;
    assert_status(redtls__resolve_take(r, &ai, err), REDTLS_E_STATE);
    assert_null(ai);
    assert_contains(err, "the answer for '");
    assert_contains(err, host);
    redtls__resolve_free(r);
    assert_int_equal(atomic_load(&fake_calls), 0);
}

static void test_literal_v4(void **state)
{
    (void)state;
    check_literal("127.0.0.1", AF_INET);
    check_literal("192.0.2.1", AF_INET);
}

static void test_literal_v6(void **state)
{
    (void)state;
    check_literal("::1", AF_INET6);
    check_literal("2001:db8::7", AF_INET6);
}

static void test_literal_freed_untaken(void **state)
{
    (void)state;
    redtls__resolve *r = NULL;
    assert_status(redtls__resolve_start("10.1.2.3", 6379, NULL, &r, NULL), REDTLS_OK);
    assert_int_equal(redtls__resolve_fd(r), -1);
    redtls__resolve_free(r);
}

/* A bracketed address is a name, not a literal: it goes to the resolver. */
static void test_bracketed_is_not_literal(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    redtls__resolve *r = NULL;
    assert_status(redtls__resolve_start("[::1]", 6379, fake_noname, &r, err), REDTLS_OK);
    assert_true(redtls__resolve_fd(r) >= 0);
    wait_readable(redtls__resolve_fd(r));
    struct addrinfo *ai = NULL;
    assert_status(redtls__resolve_take(r, &ai, err), REDTLS_E_RESOLVE);
    assert_null(ai);
    assert_contains(err, "cannot resolve '[::1]': ");
    redtls__resolve_free(r);
    assert_int_equal(atomic_load(&fake_calls), 1);
    wait_threads_done(1);
}

/* "localhost" and names under it are the loopback addresses, answered at
 * once (RFC 6761): no thread, no descriptor, the resolver never asked. */
static void test_localhost(void **state)
{
    (void)state;
    static const char *names[] = {"localhost", "LocalHost.", "cache.localhost", "a.b.LOCALHOST"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char err[REDTLS__ERRMSG_MAX] = "";
        redtls__resolve *r = NULL;
        atomic_store(&fake_calls, 0);
        assert_status(redtls__resolve_start(names[i], 6379, fake_noname, &r, err), REDTLS_OK);
        assert_int_equal(redtls__resolve_fd(r), -1);
        struct addrinfo *ai = NULL;
        assert_status(redtls__resolve_take(r, &ai, err), REDTLS_OK);
        assert_non_null(ai);
        assert_int_equal(ai->ai_family, AF_INET); /* IPv4 first */
        int v4 = 0, v6 = 0;
        for (const struct addrinfo *a = ai; a; a = a->ai_next) {
            assert_int_equal(a->ai_socktype, SOCK_STREAM);
            if (a->ai_family == AF_INET) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)a->ai_addr;
                assert_int_equal(ntohs(sin->sin_port), 6379);
                assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
                v4++;
            } else {
                assert_int_equal(a->ai_family, AF_INET6);
                const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)a->ai_addr;
                assert_int_equal(ntohs(sin6->sin6_port), 6379);
                assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
                v6++;
            }
        }
        assert_int_equal(v4, 1);
        assert_true(v6 <= 1);
        freeaddrinfo(ai);
        redtls__resolve_free(r);
        assert_int_equal(atomic_load(&fake_calls), 0);
    }
    /* Not loopback names. */
    static const char *others[] = {"notlocalhost", "localhost.example", "xlocalhost."};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        char err[REDTLS__ERRMSG_MAX] = "";
        redtls__resolve *r = NULL;
        atomic_store(&fake_calls, 0);
        assert_status(redtls__resolve_start(others[i], 6379, fake_noname, &r, err), REDTLS_OK);
        assert_true(redtls__resolve_fd(r) >= 0);
        wait_readable(redtls__resolve_fd(r));
        struct addrinfo *ai = NULL;
        assert_status(redtls__resolve_take(r, &ai, err), REDTLS_E_RESOLVE);
        redtls__resolve_free(r);
        assert_int_equal(atomic_load(&fake_calls), 1);
        wait_threads_done(0);
    }
    wait_threads_done(0);
}

/* A real name through the system's getaddrinfo on the thread: the
 * machine's own host name, which /etc/hosts answers on Debian. */
static void test_own_host_name(void **state)
{
    (void)state;
    char name[256] = "";
    struct addrinfo hints, *direct = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (gethostname(name, sizeof name - 1) != 0 || getaddrinfo(name, "6379", &hints, &direct) != 0) {
        print_message("the machine's host name does not resolve here; nothing to compare with\n");
        skip();
    }
    freeaddrinfo(direct);
    char err[REDTLS__ERRMSG_MAX] = "";
    redtls__resolve *r = NULL;
    assert_status(redtls__resolve_start(name, 6379, NULL, &r, err), REDTLS_OK);
    int fd = redtls__resolve_fd(r);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    wait_readable(fd);
    struct addrinfo *ai = NULL;
    assert_status(redtls__resolve_take(r, &ai, err), REDTLS_OK);
    assert_non_null(ai);
    for (const struct addrinfo *a = ai; a; a = a->ai_next) {
        assert_int_equal(a->ai_socktype, SOCK_STREAM);
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)a->ai_addr;
        assert_int_equal(ntohs(sin->sin_port), 6379);
    }
    freeaddrinfo(ai);
    redtls__resolve_free(r);
    wait_threads_done(0);
}

/* The owner gives up while getaddrinfo still runs: take says "not yet",
 * free returns at once, and the thread frees the job (and the answer
 * nobody took) when its lookup ends. */
static void test_abandoned_while_running(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "untouched";
    redtls__resolve *r = NULL;
    assert_status(redtls__resolve_start("slow.example", 6379, fake_gated, &r, err), REDTLS_OK);
    int fd = redtls__resolve_fd(r);
    assert_true(fd >= 0);
    wait_calls(1);
    assert_int_equal(readable_now(fd), 0);
    struct addrinfo *ai = (struct addrinfo *)&ai;
    assert_status(redtls__resolve_take(r, &ai, err), REDTLS_OK);
    assert_null(ai);
    assert_status(redtls__resolve_take(r, &ai, err), REDTLS_OK);
    assert_null(ai);
    assert_string_equal(err, "untouched");
    int64_t t0 = redtls__now_ms();
    redtls__resolve_free(r);
    assert_true(redtls__now_ms() - t0 < 1000);
    assert_int_equal(atomic_load(&fake_returns), 0);
    open_gate();
    wait_threads_done(1);
}

/* The same, with the owner waiting for the answer instead. */
static void test_pending_then_answered(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    redtls__resolve *r = NULL;
    assert_status(redtls__resolve_start("slow.example", 6379, fake_gated, &r, err), REDTLS_OK);
    int fd = redtls__resolve_fd(r);
    wait_calls(1);
    struct addrinfo *ai = NULL;
    assert_status(redtls__resolve_take(r, &ai, err), REDTLS_OK);
    assert_null(ai);
    open_gate();
    wait_readable(fd);
    assert_status(redtls__resolve_take(r, &ai, err), REDTLS_OK);
    assert_one_address(ai, AF_INET, "192.0.2.7");
    freeaddrinfo(ai);
    /* Stays readable, and the answer is not given twice. */
    assert_int_equal(readable_now(fd), 1);
    assert_status(redtls__resolve_take(r, &ai, err), REDTLS_E_STATE);
    assert_null(ai);
    assert_contains(err, "the answer for 'slow.example' was given already");
    redtls__resolve_free(r);
    wait_threads_done(1);
}

/* The answer is in before the owner lets go; nobody takes it. */
static void test_answer_freed_untaken(void **state)
{
    (void)state;
    redtls__resolve *r = NULL;
    assert_status(redtls__resolve_start("db.example", 6379, fake_answer, &r, NULL), REDTLS_OK);
    wait_readable(redtls__resolve_fd(r));
    redtls__resolve_free(r);
    wait_threads_done(1);
}

/* Starts a lookup with fn, waits for it, and returns take's status. */
static redtls_status resolve_failing(const char *host, redtls__getaddrinfo_fn fn, char *err)
{
    redtls__resolve *r = NULL;
    assert_status(redtls__resolve_start(host, 6379, fn, &r, err), REDTLS_OK);
    wait_readable(redtls__resolve_fd(r));
    struct addrinfo *ai = (struct addrinfo *)&ai;
    redtls_status st = redtls__resolve_take(r, &ai, err);
    assert_null(ai);
    /* A failure is reported once too. */
    char again[REDTLS__ERRMSG_MAX] = "";
    assert_status(redtls__resolve_take(r, &ai, again), REDTLS_E_STATE);
    assert_contains(again, host);
    redtls__resolve_free(r);
    return st;
}

static void test_noname(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(resolve_failing("nosuch.invalid", fake_noname, err), REDTLS_E_RESOLVE);
    assert_contains(err, "cannot resolve 'nosuch.invalid': ");
    assert_contains(err, gai_strerror(EAI_NONAME));
    wait_threads_done(1);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(resolve_failing("big.example", fake_nomem, err), REDTLS_E_NOMEM);
    assert_string_equal(err, "out of memory resolving 'big.example'");
    wait_threads_done(1);
}

static void test_system_error(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(resolve_failing("sys.example", fake_system, err), REDTLS_E_RESOLVE);
    assert_contains(err, "cannot resolve 'sys.example': ");
    assert_contains(err, gai_strerror(EAI_SYSTEM));
    assert_contains(err, strerror(EMFILE));
    wait_threads_done(1);
}

static void test_no_address(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(resolve_failing("empty.example", fake_empty, err), REDTLS_E_RESOLVE);
    assert_contains(err, "cannot resolve 'empty.example': the resolver answered with no address");
    wait_threads_done(1);
}

static int same_mask(const sigset_t *a, const sigset_t *b)
{
    for (int sig = 1; sig < SIGRTMIN; sig++)
        if (sigismember(a, sig) != sigismember(b, sig))
            return 0;
    return 1;
}

/* The thread runs with every signal blocked (checked by the fakes), and
 * the caller's own mask is what it was. */
static void test_signal_masks(void **state)
{
    (void)state;
    sigset_t before, after, usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &usr2, &before), 0);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, NULL, &before), 0);
    assert_false(sigismember(&before, SIGUSR1));
    redtls__resolve *r = NULL;
    assert_status(redtls__resolve_start("mask.example", 6379, fake_answer, &r, NULL), REDTLS_OK);
    assert_int_equal(pthread_sigmask(SIG_UNBLOCK, &usr2, &after), 0);
    assert_true(same_mask(&before, &after));
    wait_readable(redtls__resolve_fd(r));
    redtls__resolve_free(r);
    wait_threads_done(1);
    assert_int_equal(atomic_load(&fake_signals_open), 0);
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    char err[REDTLS__ERRMSG_MAX] = "";
    redtls__resolve *r = (redtls__resolve *)&r;
    assert_status(redtls__resolve_start("", 6379, fake_answer, &r, err), REDTLS_E_INVALID);
    assert_null(r);
    assert_contains(err, "empty host name");
    r = (redtls__resolve *)&r;
    assert_status(redtls__resolve_start(NULL, 6379, fake_answer, &r, err), REDTLS_E_INVALID);
    assert_null(r);
    assert_status(redtls__resolve_start("localhost", 6379, fake_answer, NULL, err), REDTLS_E_INVALID);
    assert_contains(err, "resolver handle");
    struct addrinfo *ai = (struct addrinfo *)&ai;
    assert_status(redtls__resolve_take(NULL, &ai, err), REDTLS_E_INVALID);
    assert_null(ai);
    assert_int_equal(redtls__resolve_fd(NULL), -1);
    redtls__resolve_free(NULL);
    assert_int_equal(atomic_load(&fake_calls), 0);
}

/* Many lookups of 0-2 ms, each forgotten at a random moment: before its
 * answer, after it, taken or not. Every thread ends, nothing leaks (ASan,
 * valgrind), and every answer taken is the fake's. */
static void test_many_abandoned_at_random(void **state)
{
    (void)state;
    enum { JOBS = 200 };
    unsigned seed = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
    const char *fixed = getenv("REDTLS_TEST_SEED");
    if (fixed)
        seed = (unsigned)strtoul(fixed, NULL, 10);
    print_message("seed %u (REDTLS_TEST_SEED to repeat)\n", seed);
    srand(seed);

    redtls__resolve *jobs[JOBS] = {0};
    char err[REDTLS__ERRMSG_MAX];
    int started = 0, left = 0, taken = 0;
    for (int i = 0; i < JOBS; i++) {
        char host[32];
        snprintf(host, sizeof host, "node-%d.example", i);
        assert_status(redtls__resolve_start(host, 6379, fake_sleepy, &jobs[i], err), REDTLS_OK);
        started++;
        left++;
        /* Now and then let go of one at once, maybe before its thread ran. */
        if (rand() % 4 == 0) {
            redtls__resolve_free(jobs[i]);
            jobs[i] = NULL;
            left--;
        }
    }
    while (left > 0) {
        int i = rand() % JOBS;
        if (!jobs[i])
            continue;
        if (rand() % 3 == 0)
            sleep_us(rand() % 500);
        if (rand() % 2 == 0) {
            struct addrinfo *ai = NULL;
            assert_status(redtls__resolve_take(jobs[i], &ai, err), REDTLS_OK);
            if (ai) {
                assert_one_address(ai, AF_INET, "192.0.2.7");
                freeaddrinfo(ai);
                taken++;
            }
        }
        redtls__resolve_free(jobs[i]);
        jobs[i] = NULL;
        left--;
    }
    wait_threads_done(started);
    assert_int_equal(atomic_load(&fake_calls), started);
    print_message("%d lookups, %d answers taken before letting go\n", started, taken);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, reset, check_fakes)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_literal_v4),
        T(test_literal_v6),
        T(test_literal_freed_untaken),
        T(test_bracketed_is_not_literal),
        T(test_localhost),
        T(test_own_host_name),
        T(test_abandoned_while_running),
        T(test_pending_then_answered),
        T(test_answer_freed_untaken),
        T(test_noname),
        T(test_out_of_memory),
        T(test_system_error),
        T(test_no_address),
        T(test_signal_masks),
        T(test_invalid_arguments),
        T(test_many_abandoned_at_random),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}

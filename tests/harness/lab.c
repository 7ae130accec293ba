/* Process, port and file plumbing of the test harness; see lab.h. */
#include "lab.h"
#include "lab_internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef LAB_SCRIPTS_DIR
#define LAB_SCRIPTS_DIR "scripts"
#endif

#define LAB_MAX_PIDS 64
#define LAB_PORT_TRIES 20
#define LAB_START_TIMEOUT_MS 10000
#define LAB_STOP_GRACE_MS 3000

/* Written by the watchdog signal handler too, hence volatile sig_atomic_t. */
static volatile sig_atomic_t lab_pids[LAB_MAX_PIDS];
static pid_t lab_owner;
/* The process that forked last: a child whose parent is gone already dies
 * at once instead of outliving the test. */
static pid_t lab_forker;
static char lab_work[LAB_PATH_MAX];
static char lab_certdir[LAB_PATH_MAX];
static unsigned long long lab_rng;

/* Scratch folders still to remove at exit. */
static char lab_dirs[LAB_MAX_PIDS][LAB_PATH_MAX];

static char *lab_strings[256];
static size_t lab_nstrings;

void lab__log(const char *fmt, ...)
{
    va_list ap;
    fputs("[lab] ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

long long lab_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long lab_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int lab_time_scale(void)
{
    const char *env = getenv("REDTLS_TEST_TIME_SCALE");
    int scale = env ? atoi(env) : 1;
    return scale > 1 ? scale : 1;
}

uint64_t lab_seed(void)
{
    const char *s = getenv("REDTLS_TEST_SEED");
    uint64_t seed = s != NULL ? strtoull(s, NULL, 0) : 0;
    return seed != 0 ? seed : 0x5eed2026ULL;
}

uint32_t lab_prng(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (uint32_t)(*state >> 16);
}

void lab__sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static unsigned lab_random(void)
{
    if (lab_rng == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        lab_rng = ((unsigned long long)getpid() << 32) ^ (unsigned long long)ts.tv_nsec ^
                  (unsigned long long)ts.tv_sec;
        if (lab_rng == 0) {
            lab_rng = 88172645463325252ULL;
        }
    }
    lab_rng ^= lab_rng << 13;
    lab_rng ^= lab_rng >> 7;
    lab_rng ^= lab_rng << 17;
    return (unsigned)(lab_rng >> 11);
}

static void lab_register(pid_t pid)
{
    for (int i = 0; i < LAB_MAX_PIDS; i++) {
        if (lab_pids[i] == 0) {
            lab_pids[i] = pid;
            return;
        }
    }
    lab__log("too many processes; pid %d is not tracked", (int)pid);
}

static int lab_registered(pid_t pid)
{
    for (int i = 0; i < LAB_MAX_PIDS; i++) {
        if (pid != 0 && lab_pids[i] == pid) {
            return i;
        }
    }
    return -1;
}

static void lab_watchdog(int sig)
{
    static const char msg[] = "[lab] watchdog: test program ran too long; stopping its servers\n";
    (void)sig;
    if (write(2, msg, sizeof msg - 1) < 0) {
        /* nothing more can be done from a signal handler */
    }
    for (int i = 0; i < LAB_MAX_PIDS; i++) {
        if (lab_pids[i] != 0) {
            kill((pid_t)lab_pids[i], SIGKILL);
        }
    }
    /* Scratch folders hold at most a Unix socket (persistence is off);
     * only async-signal-safe calls here. */
    for (int i = 0; i < LAB_MAX_PIDS; i++) {
        static const char sock[] = "/redis.sock";
        char p[LAB_PATH_MAX + sizeof sock];
        size_t n = strlen(lab_dirs[i]);
        if (n == 0) {
            continue;
        }
        memcpy(p, lab_dirs[i], n);
        memcpy(p + n, sock, sizeof sock);
        unlink(p);
        rmdir(lab_dirs[i]);
    }
    _exit(3);
}

static void lab_atexit(void)
{
    lab_stop_all();
}

static int lab_mkdir_p(const char *path)
{
    char buf[LAB_PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        return -1;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                return -1;
            }
            *p = '/';
        }
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
        return -1;
    }
    return 0;
}

int lab_init(unsigned watchdog_s)
{
    const char *w = getenv("REDTLS_TEST_WORKDIR");
    lab_owner = getpid();
    if (w != NULL && *w != '\0') {
        snprintf(lab_work, sizeof lab_work, "%s", w);
    } else {
        snprintf(lab_work, sizeof lab_work, "/tmp/redtls-lab-%d", (int)getpid());
    }
    if (lab_mkdir_p(lab_work) != 0) {
        lab__log("cannot create work folder %s: %s", lab_work, strerror(errno));
        return -1;
    }
    atexit(lab_atexit);
    /* Interrupted runs still stop their servers via the exit handler. */
    signal(SIGINT, lab_watchdog);
    signal(SIGTERM, lab_watchdog);
    signal(SIGHUP, lab_watchdog);
    if (watchdog_s > 0) {
        signal(SIGALRM, lab_watchdog);
        alarm(watchdog_s);
    }
    return 0;
}

const char *lab_workdir(void)
{
    return lab_work;
}

static const char *lab_intern(const char *s)
{
    for (size_t i = 0; i < lab_nstrings; i++) {
        if (strcmp(lab_strings[i], s) == 0) {
            return lab_strings[i];
        }
    }
    if (lab_nstrings == sizeof lab_strings / sizeof lab_strings[0]) {
        return NULL;
    }
    lab_strings[lab_nstrings] = strdup(s);
    return lab_strings[lab_nstrings++];
}

/* Child side of every spawn: never outlive the test program, hold none of
 * its descriptors (an inherited client socket would keep a connection open
 * after the test closed it), log to log_path. */
void lab__child_setup(const char *log_path, int keep_fd)
{
    lab__child_setup_keep(log_path, &keep_fd, 1);
}

void lab__child_setup_keep(const char *log_path, const int *keep, size_t nkeep)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != lab_forker) {
        _exit(127);
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
    alarm(0);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
        dup2(devnull, 0);
    }
    if (log_path != NULL) {
        int lf = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (lf >= 0) {
            dup2(lf, 1);
            dup2(lf, 2);
        }
    }
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536) {
        maxfd = 65536;
    }
    for (int fd = 3; fd < maxfd; fd++) {
        int kept = 0;
        for (size_t i = 0; i < nkeep; i++) {
            kept |= keep[i] == fd;
        }
        if (!kept) {
            close(fd);
        }
    }
}

static pid_t lab_spawn(const char **argv, const char *log_path)
{
    /* exec takes char *const[] for historical reasons; it changes nothing. */
    union {
        const char **c;
        char *const *v;
    } args = {argv};
    fflush(NULL);
    lab_forker = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        lab__log("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        lab__child_setup(log_path, -1);
        execvp(argv[0], args.v);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    lab_register(pid);
    return pid;
}

pid_t lab__fork_tracked(void)
{
    fflush(NULL);
    lab_forker = getpid();
    pid_t pid = fork();
    if (pid > 0) {
        lab_register(pid);
    } else if (pid < 0) {
        lab__log("fork: %s", strerror(errno));
    }
    return pid;
}

int lab__fork_listener(lab_server *srv, const char *kind, int *fd)
{
    *fd = lab__listen_tcp(0, &srv->port);
    if (*fd < 0) {
        lab__log("%s listener: %s", kind, strerror(errno));
        return -1;
    }
    lab__log_path(srv, kind, ".log", srv->log_path, sizeof srv->log_path);
    srv->pid = lab__fork_tracked();
    if (srv->pid < 0) {
        srv->pid = 0;
        close(*fd);
        return -1;
    }
    if (srv->pid == 0) {
        lab__child_setup(srv->log_path, *fd);
        return 0;
    }
    close(*fd);
    *fd = -1;
    return 1;
}

static int lab_run(const char **argv)
{
    pid_t pid = lab_spawn(argv, NULL);
    int st;
    if (pid < 0) {
        return -1;
    }
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            return -1;
        }
    }
    lab_pids[lab_registered(pid)] = 0;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

const char *lab_certs(const char *dir)
{
    char stamp[LAB_PATH_MAX + 16];
    char script[LAB_PATH_MAX];
    const char *scripts = getenv("REDTLS_TEST_SCRIPTS");

    if (dir == NULL) {
        dir = getenv("REDTLS_TEST_CERTS");
    }
    if (dir != NULL && *dir != '\0') {
        snprintf(lab_certdir, sizeof lab_certdir, "%s", dir);
    } else {
        if (snprintf(lab_certdir, sizeof lab_certdir, "%s/certs", lab_work) >= (int)sizeof lab_certdir) {
            return NULL;
        }
    }
    snprintf(stamp, sizeof stamp, "%s/.complete", lab_certdir);
    if (access(stamp, R_OK) == 0) {
        return lab_certdir;
    }
    if (scripts == NULL || *scripts == '\0') {
        scripts = LAB_SCRIPTS_DIR;
    }
    snprintf(script, sizeof script, "%s/gen-certs.sh", scripts);
    const char *argv[] = {"sh", script, lab_certdir, NULL};
    if (lab_run(argv) != 0) {
        lab__log("%s %s failed", script, lab_certdir);
        return NULL;
    }
    return lab_certdir;
}

const char *lab_cert(const char *name)
{
    char buf[LAB_PATH_MAX * 2];
    snprintf(buf, sizeof buf, "%s/%s", lab_certdir, name);
    return lab_intern(buf);
}

char *lab_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    if (len != NULL) {
        *len = 0;
    }
    if (f == NULL) {
        return NULL;
    }
    for (;;) {
        if (cap - n < 4096) {
            char *nb = realloc(buf, cap + 65536);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap += 65536;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) {
            break;
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len != NULL) {
        *len = n;
    }
    return buf;
}

int lab__listen_tcp(uint16_t port, uint16_t *bound)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        close(fd);
        return -1;
    }
    if (bound != NULL) {
        *bound = ntohs(a.sin_port);
    }
    return fd;
}

static uint16_t lab_pick_port(void);

uint16_t lab_free_port(void)
{
    return lab_pick_port();
}

uint16_t lab_unused_port(void)
{
    uint16_t port = 0;
    int fd = lab__listen_tcp(0, &port);
    if (fd < 0) {
        return 0;
    }
    close(fd);
    return port;
}

int lab_ipv6_available(void)
{
    struct sockaddr_in6 a;
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int ok;
    if (fd < 0) {
        return 0;
    }
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* A random port in 20000-59999 that can be bound right now. The server may
 * still lose it to someone else before binding; callers retry then. */
/* Lowest port the kernel hands out to outgoing connections (32768 when it
 * cannot be read). */
static unsigned lab_ephemeral_low(void)
{
    unsigned lo = 32768, hi = 60999;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fscanf(f, "%u %u", &lo, &hi) != 2) {
            lo = 32768;
        }
        fclose(f);
    }
    return lo;
}

/* A free port between 20000 and the ephemeral range: an outgoing
 * connection (a client, another node's cluster bus) can never take it, so
 * a server restarted on the same port finds it free. */
static uint16_t lab_pick_port(void)
{
    unsigned lo = lab_ephemeral_low();
    unsigned span = lo > 22000 ? lo - 20000 : 40000;
    for (int i = 0; i < 200; i++) {
        uint16_t p = (uint16_t)(20000 + lab_random() % span);
        int fd = lab__listen_tcp(p, NULL);
        if (fd >= 0) {
            close(fd);
            return p;
        }
    }
    return 0;
}

static int lab_file_contains(const char *path, const char *needle)
{
    size_t n;
    char *s = lab_read_file(path, &n);
    int found = s != NULL && strstr(s, needle) != NULL;
    free(s);
    return found;
}

static int lab_tcp_probe(uint16_t port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int ok;
    if (fd < 0) {
        return 0;
    }
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void lab_reset(lab_server *srv)
{
    memset(srv, 0, sizeof *srv);
    srv->listen_fd = -1;
}

static int lab_scratch(lab_server *srv, const char *kind)
{
    snprintf(srv->dir, sizeof srv->dir, "/tmp/redtls-%s-XXXXXX", kind);
    if (mkdtemp(srv->dir) == NULL) {
        lab__log("mkdtemp: %s", strerror(errno));
        srv->dir[0] = '\0';
        return -1;
    }
    for (int i = 0; i < LAB_MAX_PIDS; i++) {
        if (lab_dirs[i][0] == '\0') {
            memcpy(lab_dirs[i], srv->dir, sizeof srv->dir);
            break;
        }
    }
    return 0;
}

void lab__log_path(lab_server *srv, const char *kind, const char *suffix, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/%s-%d-%u%s", lab_work, kind, (int)getpid(), srv->port, suffix);
    if (n < 0 || (size_t)n >= outlen)
        out[0] = '\0';
}

/* Outcome of waiting for a freshly spawned server. */
enum { LAB_READY, LAB_PORT_TAKEN, LAB_FAILED };

static int lab_wait_ready(lab_server *srv, const char *ready_line, uint16_t probe_port)
{
    long long end = lab_now_ms() + LAB_START_TIMEOUT_MS;
    while (lab_now_ms() < end) {
        int st;
        pid_t r = waitpid(srv->pid, &st, WNOHANG);
        if (r == srv->pid) {
            int idx = lab_registered(srv->pid);
            if (idx >= 0) {
                lab_pids[idx] = 0;
            }
            srv->pid = 0;
            if (lab_file_contains(srv->log_path, "in use")) {
                return LAB_PORT_TAKEN;
            }
            return LAB_FAILED;
        }
        if (ready_line != NULL ? lab_file_contains(srv->log_path, ready_line) : lab_tcp_probe(probe_port)) {
            return LAB_READY;
        }
        lab__sleep_ms(10);
    }
    lab__log("server pid %d did not become ready within %d ms", (int)srv->pid, LAB_START_TIMEOUT_MS);
    return LAB_FAILED;
}

#define LAB_ARG(v)                                     \
    do {                                               \
        if (argc < (int)(sizeof argv / sizeof argv[0]) - 1) { \
            argv[argc++] = (v);                        \
        }                                              \
    } while (0)

int lab_redis_start(lab_server *srv, const lab_redis_opts *opts)
{
    static const lab_redis_opts none = {0};
    const char *bin = getenv("REDTLS_TEST_REDIS_SERVER");
    char port_s[8], plain_s[8];

    if (opts == NULL) {
        opts = &none;
    }
    if (bin == NULL || *bin == '\0') {
        bin = "redis-server";
    }
    lab_reset(srv);
    if (lab_scratch(srv, "redis") != 0) {
        return -1;
    }
    if (opts->unix_socket &&
        snprintf(srv->unix_path, sizeof srv->unix_path, "%s/redis.sock", srv->dir) >= (int)sizeof srv->unix_path) {
        lab_stop(srv);
        return -1;
    }
    for (int attempt = 0; attempt < LAB_PORT_TRIES; attempt++) {
        const char *argv[96];
        int argc = 0;
        srv->port = lab_pick_port();
        srv->plain_port = opts->tls && opts->plain_port ? lab_pick_port() : 0;
        if (srv->port == 0 || srv->port == srv->plain_port) {
            continue;
        }
        snprintf(port_s, sizeof port_s, "%u", srv->port);
        snprintf(plain_s, sizeof plain_s, "%u", srv->plain_port);
        lab__log_path(srv, "redis", ".log", srv->log_path, sizeof srv->log_path);
        unlink(srv->log_path);

        LAB_ARG(bin);
        LAB_ARG("--save");
        LAB_ARG("");
        LAB_ARG("--appendonly");
        LAB_ARG("no");
        /* "-" makes ::1 optional: machines without IPv6 still start. */
        LAB_ARG("--bind");
        LAB_ARG("127.0.0.1");
        LAB_ARG("-::1");
        LAB_ARG("--daemonize");
        LAB_ARG("no");
        LAB_ARG("--dir");
        LAB_ARG(srv->dir);
        LAB_ARG("--logfile");
        LAB_ARG(srv->log_path);
        if (opts->tls) {
            LAB_ARG("--port");
            LAB_ARG(opts->plain_port ? plain_s : "0");
            LAB_ARG("--tls-port");
            LAB_ARG(port_s);
            LAB_ARG("--tls-cert-file");
            LAB_ARG(lab_cert(opts->cert != NULL ? opts->cert : "server.crt"));
            LAB_ARG("--tls-key-file");
            LAB_ARG(lab_cert(opts->key != NULL ? opts->key : "server.key"));
            LAB_ARG("--tls-ca-cert-file");
            LAB_ARG(lab_cert("ca.crt"));
            LAB_ARG("--tls-auth-clients");
            LAB_ARG(opts->auth_clients != NULL ? opts->auth_clients : "no");
        } else {
            LAB_ARG("--port");
            LAB_ARG(port_s);
        }
        if (opts->unix_socket) {
            LAB_ARG("--unixsocket");
            LAB_ARG(srv->unix_path);
            LAB_ARG("--unixsocketperm");
            LAB_ARG("700");
        }
        if (opts->password != NULL) {
            LAB_ARG("--requirepass");
            LAB_ARG(opts->password);
        }
        for (const char *const *e = opts->extra; e != NULL && *e != NULL; e++) {
            LAB_ARG(*e);
        }
        argv[argc] = NULL;

        srv->pid = lab_spawn(argv, srv->log_path);
        if (srv->pid < 0) {
            srv->pid = 0;
            break;
        }
        switch (lab_wait_ready(srv, "Ready to accept connections", 0)) {
        case LAB_READY:
            return 0;
        case LAB_PORT_TAKEN:
            continue;
        default:
            lab__log("redis-server failed to start; log %s:", srv->log_path);
            lab_dump_log(srv->log_path);
            lab_stop(srv);
            return -1;
        }
    }
    lab__log("redis-server: no free port found");
    lab_stop(srv);
    return -1;
}

int lab_init_redis(unsigned watchdog_s, lab_server *srv, const lab_redis_opts *opts)
{
    if (lab_init(watchdog_s) != 0)
        return -1;
    if (opts->tls && lab_certs(NULL) == NULL)
        return -1;
    return lab_redis_start(srv, opts);
}

int lab_s_server_start(lab_server *srv, const char *cert, const char *key, const char *const *extra)
{
    char accept_s[32];
    lab_reset(srv);
    for (int attempt = 0; attempt < LAB_PORT_TRIES; attempt++) {
        const char *argv[64];
        int argc = 0;
        srv->port = lab_pick_port();
        if (srv->port == 0) {
            continue;
        }
        snprintf(accept_s, sizeof accept_s, "127.0.0.1:%u", srv->port);
        lab__log_path(srv, "s_server", ".log", srv->log_path, sizeof srv->log_path);
        unlink(srv->log_path);
        LAB_ARG("openssl");
        LAB_ARG("s_server");
        LAB_ARG("-accept");
        LAB_ARG(accept_s);
        LAB_ARG("-cert");
        LAB_ARG(cert);
        LAB_ARG("-key");
        LAB_ARG(key);
        /* -www never reads stdin, so /dev/null there does not end it. */
        LAB_ARG("-www");
        for (const char *const *e = extra; e != NULL && *e != NULL; e++) {
            LAB_ARG(*e);
        }
        argv[argc] = NULL;
        srv->pid = lab_spawn(argv, srv->log_path);
        if (srv->pid < 0) {
            srv->pid = 0;
            break;
        }
        switch (lab_wait_ready(srv, NULL, srv->port)) {
        case LAB_READY:
            return 0;
        case LAB_PORT_TAKEN:
            continue;
        default:
            lab__log("openssl s_server failed to start; log %s:", srv->log_path);
            lab_dump_log(srv->log_path);
            lab_stop(srv);
            return -1;
        }
    }
    lab_stop(srv);
    return -1;
}

int lab_silent_start(lab_server *srv)
{
    lab_reset(srv);
    srv->listen_fd = lab__listen_tcp(0, &srv->port);
    if (srv->listen_fd < 0) {
        lab__log("silent listener: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int lab_plaintext_start(lab_server *srv)
{
    int fd;
    lab_reset(srv);
    int forked = lab__fork_listener(srv, "plaintext", &fd);
    if (forked < 0) {
        return -1;
    }
    if (forked == 0) {
        static const char text[] = "-ERR this port speaks plain text, not TLS\r\n";
        signal(SIGPIPE, SIG_IGN);
        for (;;) {
            char buf[4096];
            struct timeval tv = {5, 0};
            int c = accept(fd, NULL, NULL);
            if (c < 0) {
                continue;
            }
            setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            /* Answer the ClientHello like a plain-text server would, then
             * wait for the client to hang up: closing with unread data
             * would send a reset that hides the answer. */
            if (read(c, buf, sizeof buf) > 0 && write(c, text, sizeof text - 1) > 0) {
                while (read(c, buf, sizeof buf) > 0) {
                }
            }
            close(c);
        }
    }
    return 0;
}

void lab_stop_pid(pid_t pid)
{
    int idx = lab_registered(pid);
    int st;
    if (idx < 0) {
        return;
    }
    /* A stopped process only acts on SIGTERM once continued. */
    kill(pid, SIGCONT);
    kill(pid, SIGTERM);
    long long end = lab_now_ms() + LAB_STOP_GRACE_MS;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) {
            break;
        }
        if (lab_now_ms() >= end) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
            break;
        }
        lab__sleep_ms(5);
    }
    lab_pids[idx] = 0;
}

static void lab_rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[LAB_PATH_MAX * 2];
    if (d == NULL) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) != 0 && errno == EISDIR) {
            lab_rm_tree(p);
        }
    }
    closedir(d);
    rmdir(dir);
}

void lab_stop(lab_server *srv)
{
    if (srv == NULL) {
        return;
    }
    if (srv->pid > 0) {
        lab_stop_pid(srv->pid);
        srv->pid = 0;
    }
    /* 0 is what a zeroed, never started server holds: not ours to close. */
    if (srv->listen_fd > 0) {
        close(srv->listen_fd);
    }
    srv->listen_fd = -1;
    if (srv->dir[0] != '\0') {
        lab_rm_tree(srv->dir);
        for (int i = 0; i < LAB_MAX_PIDS; i++) {
            if (strcmp(lab_dirs[i], srv->dir) == 0) {
                lab_dirs[i][0] = '\0';
            }
        }
        srv->dir[0] = '\0';
    }
}

void lab_stop_all(void)
{
    if (lab_owner == 0 || getpid() != lab_owner) {
        return;
    }
    for (int i = 0; i < LAB_MAX_PIDS; i++) {
        if (lab_pids[i] != 0) {
            lab_stop_pid((pid_t)lab_pids[i]);
        }
    }
    for (int i = 0; i < LAB_MAX_PIDS; i++) {
        if (lab_dirs[i][0] != '\0') {
            lab_rm_tree(lab_dirs[i]);
            lab_dirs[i][0] = '\0';
        }
    }
}

int lab_signal(pid_t pid, int sig)
{
    if (lab_registered(pid) < 0) {
        return -1;
    }
    return kill(pid, sig);
}

void lab_dump_log(const char *path)
{
    size_t n;
    char *s = lab_read_file(path, &n);
    if (s == NULL) {
        lab__log("(no log at %s)", path);
        return;
    }
    const char *start = n > 3000 ? s + n - 3000 : s;
    fprintf(stderr, "----- %s -----\n%s\n-----\n", path, start);
    free(s);
}

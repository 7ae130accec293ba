/*
 * lab: the integration-test harness. It makes certificates, starts real
 * servers (redis-server, openssl s_server, an in-process TLS "sink", silent
 * and plain-text listeners) on loopback high ports, and stops them by pid.
 *
 * Cleanup: every process started here is recorded; lab_stop() ends one,
 * lab_stop_all() (also run at exit and by the watchdog) ends the rest. Each
 * child also gets PR_SET_PDEATHSIG(SIGKILL), so even a test killed by ctest's
 * TIMEOUT leaves no server behind. Nothing is ever killed by name.
 *
 * Environment (set by tests/CMakeLists.txt; each has a fallback):
 *   REDTLS_TEST_SCRIPTS   folder holding gen-certs.sh
 *   REDTLS_TEST_CERTS     certificate cache folder (default WORKDIR/certs)
 *   REDTLS_TEST_WORKDIR   logs and sink files (default /tmp/redtls-lab-PID)
 *   REDTLS_TEST_REDIS_SERVER  redis-server binary (default: from PATH)
 *
 * Harness functions print a diagnostic to stderr and return -1 (or NULL)
 * when they fail; tests assert on that.
 */
#ifndef REDTLS_TESTS_LAB_H
#define REDTLS_TESTS_LAB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LAB_PATH_MAX 512

typedef struct lab_server {
    pid_t pid;            /* 0 when no process runs */
    int listen_fd;        /* listen-only servers: the socket, else -1 */
    uint16_t port;        /* TLS port of TLS servers, else the plain port */
    uint16_t plain_port;  /* redis-server: extra plain-text port, or 0 */
    char unix_path[108];  /* redis-server: Unix socket, or "" */
    char dir[LAB_PATH_MAX];      /* private scratch folder (in /tmp) */
    char log_path[LAB_PATH_MAX]; /* stdout/stderr (and redis's log) */
    char data_path[LAB_PATH_MAX];   /* sink: every decrypted byte received */
    char events_path[LAB_PATH_MAX]; /* sink: one line per connection event */
} lab_server;

/* Once per test program: work folder, exit handler, and a watchdog that
 * stops every server and exits with status 3 after watchdog_s seconds
 * (0: none). Returns 0 or -1. */
int lab_init(unsigned watchdog_s);

/* The per-test work folder (exists after lab_init). */
const char *lab_workdir(void);

/* Makes sure the test certificates exist in dir (NULL: the default), running
 * scripts/gen-certs.sh when they do not. Returns the folder or NULL. */
const char *lab_certs(const char *dir);

/* dir/name for the folder lab_certs() returned, e.g. lab_cert("ca.crt").
 * The string lives until exit. */
const char *lab_cert(const char *name);

/* Reads a whole file into a NUL-terminated malloc'd buffer (NULL on error;
 * *len gets the size without the NUL when len is not NULL). */
char *lab_read_file(const char *path, size_t *len);

/* Monotonic milliseconds. */
long long lab_now_ms(void);

/* Wall-clock unix milliseconds from CLOCK_REALTIME, the clock the library
 * signs IAM tokens with. Not time(NULL): glibc reads that from the coarse
 * clock, which can still show the previous second a few milliseconds after
 * CLOCK_REALTIME has moved on. */
long long lab_wall_ms(void);

/* REDTLS_TEST_TIME_SCALE (the valgrind step sets 10), or 1: what a test
 * multiplies the budgets by that real work under the tool must fit in. */
int lab_time_scale(void);

/* The seed of a test's random cases: REDTLS_TEST_SEED when set (so a run
 * can be repeated), else a fixed one. */
uint64_t lab_seed(void);

/* The next number of the xorshift sequence whose state is *state (start it
 * at lab_seed()). */
uint32_t lab_prng(uint64_t *state);

/* A loopback port nobody listens on (bound then closed; connecting to it
 * is refused unless someone else grabs it in between). */
uint16_t lab_unused_port(void);

/* A loopback port below the kernel's ephemeral range that nobody listens
 * on, for servers that must come back on the same port (outgoing
 * connections never take such a port). */
uint16_t lab_free_port(void);

/* 1 when ::1 can be bound here. */
int lab_ipv6_available(void);

/* ----- redis-server ---------------------------------------------------- */

typedef struct lab_redis_opts {
    int tls;                  /* 1: --tls-port with --port 0 */
    int plain_port;           /* with tls: also open a plain-text port */
    int unix_socket;          /* also listen on a Unix socket */
    const char *cert;         /* server certificate file name in the certs
                               * folder (NULL: server.crt) ... */
    const char *key;          /* ... and its key (NULL: server.key) */
    const char *auth_clients; /* "no" (NULL), "yes" or "optional" */
    const char *password;     /* --requirepass, or NULL */
    const char *const *extra; /* NULL-terminated extra arguments, or NULL */
} lab_redis_opts;

/* Starts redis-server on random high loopback ports (retrying when one is
 * taken), always with --save '' --appendonly no, and waits until it accepts
 * connections. Returns 0 or -1 (its log is printed then). */
int lab_redis_start(lab_server *srv, const lab_redis_opts *opts);

/* A test group's usual start: lab_init(watchdog_s), the certificates when
 * opts->tls, then srv as lab_redis_start() starts it. Returns 0 or -1. */
int lab_init_redis(unsigned watchdog_s, lab_server *srv, const lab_redis_opts *opts);

/* ----- openssl s_server ------------------------------------------------ */

/* Runs `openssl s_server -accept 127.0.0.1:PORT -www` with the given
 * certificate and key paths plus the NULL-terminated extra arguments (for
 * example "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"). Returns 0 or -1. */
int lab_s_server_start(lab_server *srv, const char *cert, const char *key, const char *const *extra);

/* ----- in-process listeners ---------------------------------------------- */

/* The sink: a forked TLS server presenting cert/key (paths) at security
 * level 0 (so even weak keys are served). Each connection: handshake; on
 * success every decrypted byte is appended to srv->data_path and each
 * complete RESP command is answered with +OK. srv->events_path gets lines
 * "accept", "handshake-ok VERSION", "sni \"NAME\"" (or "sni none") after a
 * handshake, "handshake-fail REASON", "close". */
int lab_sink_start(lab_server *srv, const char *cert, const char *key);

/* Waits (up to timeout_ms) until every connection the sink accepted has
 * closed, so its files are complete. Returns 0, or -1 on timeout. */
int lab_sink_wait_idle(const lab_server *srv, int timeout_ms);

/* Number of lines in the events file that start with prefix. */
int lab_sink_count(const lab_server *srv, const char *prefix);

/* 1 when the sink received needle (binary-safe search), else 0. */
int lab_sink_received(const lab_server *srv, const char *needle);

/* A socket that listens and never accepts: the kernel completes the TCP
 * handshake and then nothing is ever answered. No process involved. */
int lab_silent_start(lab_server *srv);

/* A forked TCP server that answers every connection with a line of plain
 * text and closes it: a peer that does not speak TLS. */
int lab_plaintext_start(lab_server *srv);

/* ----- stopping ----------------------------------------------------------- */

/* SIGCONT, SIGTERM, then SIGKILL after a grace period; reaps the process.
 * Accepts 0. Only pids started by the harness are signalled. */
void lab_stop_pid(pid_t pid);

/* Stops the server's process and/or closes its socket, removes its scratch
 * folder; keeps the logs. Accepts a zeroed or already stopped server. */
void lab_stop(lab_server *srv);

/* Stops every process the harness started and is still running. */
void lab_stop_all(void);

/* Sends sig to a harness-started pid (SIGSTOP/SIGCONT/SIGKILL tests).
 * Returns 0, or -1 when pid was not started by the harness. */
int lab_signal(pid_t pid, int sig);

/* Prints the last lines of a log file to stderr (for failing tests). */
void lab_dump_log(const char *path);

#endif /* REDTLS_TESTS_LAB_H */

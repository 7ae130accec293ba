#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lab_internal.h"
#include "lab_scripted.h"

#define MAX_ARGS 16
#define ARG_KEEP 64

typedef struct command {
    int argc;
    char argv[MAX_ARGS][ARG_KEEP + 1];
} command;

static int send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) {
            return -1;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static void log_event(const char *path, uint16_t port, int conn, const char *event)
{
    char line[2048];
    int n = snprintf(line, sizeof line, "%lld %u %d %s\n", lab_now_ms(), (unsigned)port, conn, event);
    if (n <= 0) {
        return;
    }
    if ((size_t)n >= sizeof line) {
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        /* One write per line: O_APPEND keeps lines from different
         * connections whole. */
        ssize_t w = write(fd, line, (size_t)n);
        (void)w;
        close(fd);
    }
}

/* Parses one RESP array of bulk strings from buf[0..have); 0 with *used
 * set, 1 when more bytes are needed, -1 when it is not such an array. */
static int parse_command(const char *buf, size_t have, command *cmd, size_t *used)
{
    if (have == 0) {
        return 1;
    }
    if (buf[0] != '*') {
        return -1;
    }
    const char *e = memchr(buf, '\n', have);
    if (!e) {
        return 1;
    }
    long n = strtol(buf + 1, NULL, 10);
    size_t i = (size_t)(e - buf) + 1;
    cmd->argc = 0;
    for (long a = 0; a < n; a++) {
        if (i >= have) {
            return 1;
        }
        if (buf[i] != '$') {
            return -1;
        }
        const char *le = memchr(buf + i, '\n', have - i);
        if (!le) {
            return 1;
        }
        long len = strtol(buf + i + 1, NULL, 10);
        size_t start = (size_t)(le - buf) + 1;
        if (len < 0) {
            return -1;
        }
        if (start + (size_t)len + 2 > have) {
            return 1;
        }
        if (cmd->argc < MAX_ARGS) {
            size_t m = (size_t)len < ARG_KEEP ? (size_t)len : ARG_KEEP;
            memcpy(cmd->argv[cmd->argc], buf + start, m);
            cmd->argv[cmd->argc][m] = '\0';
            cmd->argc++;
        }
        i = start + (size_t)len + 2;
    }
    *used = i;
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) {
        s[--n] = '\0';
    }
    return s;
}

static int pattern_matches(char *pattern, const command *cmd)
{
    int a = 0;
    for (char *save = NULL, *w = strtok_r(pattern, " ", &save); w; w = strtok_r(NULL, " ", &save), a++) {
        if (a >= cmd->argc) {
            return 0;
        }
        if (strcmp(w, "*") != 0 && strcasecmp(w, cmd->argv[a]) != 0) {
            return 0;
        }
    }
    return 1;
}

/* Expands \r \n \\ in place; returns the length. */
static size_t unescape(char *s)
{
    size_t o = 0;
    for (size_t i = 0; s[i]; i++) {
        if (s[i] == '\\' && s[i + 1] != '\0') {
            i++;
            s[o++] = s[i] == 'r' ? '\r' : s[i] == 'n' ? '\n' : s[i];
        } else {
            s[o++] = s[i];
        }
    }
    s[o] = '\0';
    return o;
}

enum { ANSWER, ANSWER_NONE, ANSWER_CLOSE };

/* Finds the rule for cmd on port: its delay and reply (malloc'd). */
static int find_rule(const char *rules_path, uint16_t port, const command *cmd, int *delay, char **reply,
                     size_t *reply_len)
{
    *delay = 0;
    *reply = NULL;
    char *text = lab_read_file(rules_path, NULL);
    int kind = ANSWER;
    for (char *save = NULL, *line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        char *fields[4];
        int nf = 0;
        char *p = line;
        while (nf < 3) {
            char *bar = strchr(p, '|');
            if (!bar) {
                break;
            }
            *bar = '\0';
            fields[nf++] = trim(p);
            p = bar + 1;
        }
        if (nf < 3 || fields[0][0] == '#') {
            continue;
        }
        fields[3] = trim(p);
        if (strcmp(fields[0], "*") != 0 && strtoul(fields[0], NULL, 10) != port) {
            continue;
        }
        if (!pattern_matches(fields[1], cmd)) {
            continue;
        }
        *delay = atoi(fields[2]);
        if (strcmp(fields[3], "CLOSE") == 0) {
            kind = ANSWER_CLOSE;
        } else if (strcmp(fields[3], "NONE") == 0) {
            kind = ANSWER_NONE;
        } else {
            *reply = strdup(fields[3]);
            *reply_len = *reply ? unescape(*reply) : 0;
        }
        free(text);
        return kind;
    }
    free(text);
    *reply = strdup("-ERR no rule\r\n");
    *reply_len = *reply ? strlen(*reply) : 0;
    return ANSWER;
}

static void serve(int c, uint16_t port, int conn, const char *rules_path, const char *log_path)
{
    static char buf[1 << 20];
    size_t have = 0;
    log_event(log_path, port, conn, "accept");
    for (;;) {
        command cmd;
        size_t used = 0;
        int rc = parse_command(buf, have, &cmd, &used);
        if (rc < 0) {
            break;
        }
        if (rc > 0) {
            if (have == sizeof buf) {
                break;
            }
            ssize_t r = recv(c, buf + have, sizeof buf - have, 0);
            if (r <= 0) {
                break;
            }
            have += (size_t)r;
            continue;
        }
        memmove(buf, buf + used, have - used);
        have -= used;
        char event[MAX_ARGS * (ARG_KEEP + 1) + 8] = "cmd";
        for (int a = 0; a < cmd.argc; a++) {
            strcat(event, " ");
            strcat(event, cmd.argv[a]);
        }
        log_event(log_path, port, conn, event);
        int delay = 0;
        char *reply = NULL;
        size_t reply_len = 0;
        int kind = find_rule(rules_path, port, &cmd, &delay, &reply, &reply_len);
        if (delay > 0) {
            lab__sleep_ms(delay);
        }
        int failed = kind == ANSWER && reply && send_all(c, reply, reply_len) != 0;
        free(reply);
        if (kind == ANSWER_CLOSE || failed) {
            break;
        }
    }
    log_event(log_path, port, conn, "close");
}

int lab_scripted_start(lab_server *srv, unsigned nports, uint16_t *ports)
{
    memset(srv, 0, sizeof *srv);
    srv->listen_fd = -1;
    if (nports == 0 || nports > LAB_SCRIPTED_MAX_PORTS) {
        return -1;
    }
    int fds[LAB_SCRIPTED_MAX_PORTS];
    for (unsigned i = 0; i < nports; i++) {
        fds[i] = lab__listen_tcp(0, &ports[i]);
        if (fds[i] < 0) {
            lab__log("scripted listener: %s", strerror(errno));
            while (i-- > 0) {
                close(fds[i]);
            }
            return -1;
        }
    }
    srv->port = ports[0];
    lab__log_path(srv, "scripted", ".log", srv->log_path, sizeof srv->log_path);
    lab__log_path(srv, "scripted", ".rules", srv->data_path, sizeof srv->data_path);
    lab__log_path(srv, "scripted", ".events", srv->events_path, sizeof srv->events_path);
    if (lab_scripted_rules(srv, "") != 0) {
        for (unsigned i = 0; i < nports; i++) {
            close(fds[i]);
        }
        return -1;
    }
    FILE *ev = fopen(srv->events_path, "w");
    if (ev) {
        fclose(ev);
    }
    srv->pid = lab__fork_tracked();
    if (srv->pid < 0) {
        srv->pid = 0;
        for (unsigned i = 0; i < nports; i++) {
            close(fds[i]);
        }
        return -1;
    }
    if (srv->pid > 0) {
        for (unsigned i = 0; i < nports; i++) {
            close(fds[i]);
        }
        return 0;
    }
    lab__child_setup_keep(srv->log_path, fds, nports);
    /* Connection servers end by themselves; nobody waits for them. */
    signal(SIGCHLD, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    pid_t parent = getpid();
    struct pollfd pfd[LAB_SCRIPTED_MAX_PORTS];
    for (unsigned i = 0; i < nports; i++) {
        pfd[i] = (struct pollfd){fds[i], POLLIN, 0};
    }
    int conn = 0;
    for (;;) {
        if (poll(pfd, nports, -1) < 0) {
            continue;
        }
        for (unsigned i = 0; i < nports; i++) {
            if (!(pfd[i].revents & POLLIN)) {
                continue;
            }
            int c = accept(fds[i], NULL, NULL);
            if (c < 0) {
                continue;
            }
            conn++;
            pid_t pid = fork();
            if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent) {
                    _exit(0);
                }
                for (unsigned k = 0; k < nports; k++) {
                    close(fds[k]);
                }
                serve(c, ports[i], conn, srv->data_path, srv->events_path);
                close(c);
                _exit(0);
            }
            close(c);
        }
    }
}

int lab_scripted_rules(const lab_server *srv, const char *text)
{
    char tmp[LAB_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.new", srv->data_path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        return -1;
    }
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    ok = fclose(f) == 0 && ok;
    /* A rename, so a connection never reads half a file. */
    return ok && rename(tmp, srv->data_path) == 0 ? 0 : -1;
}

/* Calls fn on each event line for port (0: any) starting with prefix. */
static int each_event(const lab_server *srv, uint16_t port, const char *prefix,
                      void (*fn)(long long ms, void *ctx), void *ctx)
{
    char *text = lab_read_file(srv->events_path, NULL);
    int count = 0;
    size_t plen = strlen(prefix);
    for (char *save = NULL, *line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        long long ms = 0;
        unsigned p = 0;
        int conn = 0, off = 0;
        if (sscanf(line, "%lld %u %d %n", &ms, &p, &conn, &off) < 3) {
            continue;
        }
        if ((port == 0 || p == port) && strncmp(line + off, prefix, plen) == 0) {
            count++;
            if (fn) {
                fn(ms, ctx);
            }
        }
    }
    free(text);
    return count;
}

int lab_scripted_count(const lab_server *srv, uint16_t port, const char *prefix)
{
    return each_event(srv, port, prefix, NULL, NULL);
}

typedef struct times_ctx {
    long long *out;
    size_t cap, n;
} times_ctx;

static void collect_time(long long ms, void *ctx)
{
    times_ctx *t = ctx;
    if (t->n < t->cap) {
        t->out[t->n] = ms;
    }
    t->n++;
}

size_t lab_scripted_times(const lab_server *srv, uint16_t port, const char *prefix, long long *out, size_t cap)
{
    times_ctx t = {out, cap, 0};
    each_event(srv, port, prefix, collect_time, &t);
    return t.n;
}

int lab_scripted_open(const lab_server *srv, uint16_t port, int want, int timeout_ms)
{
    long long end = lab_now_ms() + timeout_ms;
    for (;;) {
        int open_now = lab_scripted_count(srv, port, "accept") - lab_scripted_count(srv, port, "close");
        if (open_now == want || lab_now_ms() >= end) {
            return open_now;
        }
        lab__sleep_ms(10);
    }
}

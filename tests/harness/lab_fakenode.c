#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lab_fakenode.h"
#include "lab_internal.h"

static int send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one RESP array of bulk strings; the first two arguments (upper
 * case, truncated) go to name and sub. Returns 0, or -1 at the end. */
static int read_command(int fd, char *buf, size_t *have, size_t cap, char *name, char *sub)
{
    for (;;) {
        /* Try to parse what is buffered. */
        size_t i = 0;
        long n = -1;
        int ok = 0;
        if (*have > 0 && buf[0] == '*') {
            char *e = memchr(buf, '\n', *have);
            if (e) {
                n = strtol(buf + 1, NULL, 10);
                i = (size_t)(e - buf) + 1;
                ok = 1;
                name[0] = sub[0] = '\0';
                for (long a = 0; a < n && ok; a++) {
                    char *le = i < *have ? memchr(buf + i, '\n', *have - i) : NULL;
                    if (!le || buf[i] != '$') {
                        ok = 0;
                        break;
                    }
                    long len = strtol(buf + i + 1, NULL, 10);
                    size_t start = (size_t)(le - buf) + 1;
                    if (len < 0 || start + (size_t)len + 2 > *have) {
                        ok = 0;
                        break;
                    }
                    if (a < 2) {
                        char *dst = a == 0 ? name : sub;
                        size_t m = (size_t)len < 31 ? (size_t)len : 31;
                        for (size_t k = 0; k < m; k++) {
                            char ch = buf[start + k];
                            dst[k] = (ch >= 'a' && ch <= 'z') ? (char)(ch - 32) : ch;
                        }
                        dst[m] = '\0';
                    }
                    i = start + (size_t)len + 2;
                }
            }
        }
        if (ok) {
            memmove(buf, buf + i, *have - i);
            *have -= i;
            return 0;
        }
        if (*have == cap)
            return -1;
        ssize_t r = recv(fd, buf + *have, cap - *have, 0);
        if (r <= 0)
            return -1;
        *have += (size_t)r;
    }
}

static void serve(int c, lab_fake_mode mode, unsigned port, unsigned *count)
{
    static char buf[65536];
    size_t have = 0;
    char name[32], sub[32], out[512];
    int asking = 0;
    while (read_command(c, buf, &have, sizeof buf, name, sub) == 0) {
        int n;
        if (strcmp(name, "CLUSTER") == 0 && strcmp(sub, "SLOTS") == 0) {
            n = snprintf(out, sizeof out, "*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:%u\r\n$4\r\nfake\r\n",
                         port);
        } else if (strcmp(name, "PING") == 0) {
            n = snprintf(out, sizeof out, "+PONG\r\n");
        } else if (strcmp(name, "ASKING") == 0) {
            asking = 1;
            n = snprintf(out, sizeof out, "+OK\r\n");
            if (send_all(c, out, (size_t)n) != 0)
                return;
            continue;
        } else if (mode == LAB_FAKE_MOVED_LOOP) {
            n = snprintf(out, sizeof out, "-MOVED 1234 127.0.0.1:%u\r\n", port);
        } else if (mode == LAB_FAKE_TRYAGAIN) {
            n = snprintf(out, sizeof out, "-TRYAGAIN Multiple keys request during rehashing of slot\r\n");
        } else if (mode == LAB_FAKE_CLUSTERDOWN_3) {
            n = snprintf(out, sizeof out, (*count)++ < 3 ? "-CLUSTERDOWN The cluster is down\r\n" : "+OK\r\n");
        } else {
            n = snprintf(out, sizeof out, asking ? "+OK\r\n" : "-ASK 1234 127.0.0.1:%u\r\n", port);
        }
        asking = 0;
        if (send_all(c, out, (size_t)n) != 0)
            return;
    }
}

int lab_fakenode_start(lab_server *srv, lab_fake_mode mode)
{
    memset(srv, 0, sizeof *srv);
    srv->listen_fd = -1;
    int fd = -1;
    int forked = lab__fork_listener(srv, "fakenode", &fd);
    if (forked < 0) {
        return -1;
    }
    if (forked == 0) {
        unsigned count = 0;
        for (;;) {
            int c = accept(fd, NULL, NULL);
            if (c < 0)
                _exit(1);
            serve(c, mode, srv->port, &count);
            close(c);
        }
    }
    return 0;
}

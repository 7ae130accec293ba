/* The sink: a TLS server that records what a client sends after the
 * handshake, so tests can prove a secret was (or was not) transmitted. */
#include "lab.h"
#include "lab_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static void sink_append(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) {
        return;
    }
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w <= 0) {
            break;
        }
        buf = (const char *)buf + w;
        len -= (size_t)w;
    }
    close(fd);
}

static void sink_event(const char *path, const char *what, const char *detail)
{
    char line[512];
    int n = snprintf(line, sizeof line, "%s%s%s\n", what, detail ? " " : "", detail ? detail : "");
    if (n > 0) {
        sink_append(path, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    }
}

/* Length of the first complete RESP command in buf (array of bulk strings,
 * or an inline line), 0 when more bytes are needed. */
static size_t sink_command_len(const char *buf, size_t len)
{
    const char *end = buf + len;
    const char *p = buf;
    long n;
    if (len == 0) {
        return 0;
    }
    if (*p != '*') {
        const char *nl = memchr(buf, '\n', len);
        return nl ? (size_t)(nl - buf) + 1 : 0;
    }
    const char *crlf = memchr(p, '\n', len);
    if (crlf == NULL) {
        return 0;
    }
    n = strtol(p + 1, NULL, 10);
    p = crlf + 1;
    for (long i = 0; i < n; i++) {
        long blen;
        if (p >= end) {
            return 0;
        }
        crlf = memchr(p, '\n', (size_t)(end - p));
        if (crlf == NULL) {
            return 0;
        }
        blen = strtol(p + 1, NULL, 10);
        p = crlf + 1;
        if (blen < 0) {
            continue;
        }
        if (end - p < blen + 2) {
            return 0;
        }
        p += blen + 2;
    }
    return (size_t)(p - buf);
}

/* 1 when the framed command buf[0..len) is HELLO. */
static int sink_is_hello(const char *buf, size_t len)
{
    const char *p = memchr(buf, '\n', len);
    return p && (size_t)(buf + len - (p + 1)) >= 9 && strncmp(p + 1, "$5\r\n", 4) == 0 &&
           strncasecmp(p + 5, "HELLO", 5) == 0;
}

static void sink_serve_one(SSL_CTX *ctx, int c, const lab_server *srv)
{
    static const char ok[] = "+OK\r\n";
    static const char hello3[] = "%1\r\n$5\r\nproto\r\n:3\r\n";
    char pending[1 << 16];
    size_t npending = 0;
    struct timeval tv = {10, 0};
    SSL *ssl;

    sink_event(srv->events_path, "accept", NULL);
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, c) != 1) {
        sink_event(srv->events_path, "handshake-fail", "SSL_new");
        goto out;
    }
    ERR_clear_error();
    if (SSL_accept(ssl) != 1) {
        char reason[256];
        unsigned long e = ERR_peek_last_error();
        if (e != 0) {
            ERR_error_string_n(e, reason, sizeof reason);
        } else {
            snprintf(reason, sizeof reason, "%s", "peer closed or timed out");
        }
        sink_event(srv->events_path, "handshake-fail", reason);
        goto out;
    }
    sink_event(srv->events_path, "handshake-ok", SSL_get_version(ssl));
    {
        /* Quoted, so a test can tell "localhost" from "localhost." by prefix. */
        const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        char quoted[300];
        snprintf(quoted, sizeof quoted, "\"%.280s\"", sni != NULL ? sni : "");
        sink_event(srv->events_path, "sni", sni != NULL ? quoted : "none");
    }
    for (;;) {
        char buf[16384];
        int r = SSL_read(ssl, buf, sizeof buf);
        size_t cmd;
        if (r <= 0) {
            break;
        }
        sink_append(srv->data_path, buf, (size_t)r);
        if (npending + (size_t)r > sizeof pending) {
            npending = 0; /* not a client we are testing; just keep recording */
            continue;
        }
        memcpy(pending + npending, buf, (size_t)r);
        npending += (size_t)r;
        while ((cmd = sink_command_len(pending, npending)) > 0) {
            int hello = sink_is_hello(pending, cmd);
            memmove(pending, pending + cmd, npending - cmd);
            npending -= cmd;
            /* HELLO 3 (a client speaking RESP3) gets the one field it
             * checks, "proto" 3; everything else +OK. */
            const char *ans = ok;
            size_t alen = sizeof ok - 1;
            if (hello) {
                ans = hello3;
                alen = sizeof hello3 - 1;
            }
            if (SSL_write(ssl, ans, (int)alen) <= 0) {
                goto out;
            }
        }
    }
    SSL_shutdown(ssl);
out:
    SSL_free(ssl);
    close(c);
    sink_event(srv->events_path, "close", NULL);
}

static void sink_child(int fd, const char *cert, const char *key, const lab_server *srv)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    signal(SIGPIPE, SIG_IGN);
    if (ctx == NULL) {
        _exit(1);
    }
    /* Level 0 so the sink can serve the weak and legacy certificates the
     * client is expected to refuse. */
    SSL_CTX_set_security_level(ctx, 0);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        ERR_print_errors_fp(stderr);
        _exit(1);
    }
    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            _exit(1);
        }
        sink_serve_one(ctx, c, srv);
    }
}

int lab_sink_start(lab_server *srv, const char *cert, const char *key)
{
    int fd;
    memset(srv, 0, sizeof *srv);
    srv->listen_fd = -1;
    fd = lab__listen_tcp(0, &srv->port);
    if (fd < 0) {
        lab__log("sink listener: %s", strerror(errno));
        return -1;
    }
    lab__log_path(srv, "sink", ".log", srv->log_path, sizeof srv->log_path);
    lab__log_path(srv, "sink", ".data", srv->data_path, sizeof srv->data_path);
    lab__log_path(srv, "sink", ".events", srv->events_path, sizeof srv->events_path);
    unlink(srv->log_path);
    unlink(srv->data_path);
    unlink(srv->events_path);
    sink_append(srv->data_path, "", 0);
    sink_append(srv->events_path, "", 0);

    srv->pid = lab__fork_tracked();
    if (srv->pid < 0) {
        srv->pid = 0;
        close(fd);
        return -1;
    }
    if (srv->pid == 0) {
        lab__child_setup(srv->log_path, fd);
        sink_child(fd, cert, key, srv);
        _exit(0);
    }
    close(fd);
    /* The listening socket exists before fork; only a bad certificate makes
     * the child exit, so give it a moment to load them and report. */
    for (int i = 0; i < 5; i++) {
        int st;
        if (waitpid(srv->pid, &st, WNOHANG) == srv->pid) {
            lab__log("sink failed to start (cert %s); log:", cert);
            lab_dump_log(srv->log_path);
            lab_stop(srv);
            return -1;
        }
        lab__sleep_ms(2);
    }
    return 0;
}

int lab_sink_count(const lab_server *srv, const char *prefix)
{
    size_t n, plen = strlen(prefix);
    char *s = lab_read_file(srv->events_path, &n);
    int count = 0;
    if (s == NULL) {
        return -1;
    }
    for (char *line = s; line < s + n;) {
        char *nl = strchr(line, '\n');
        if (strncmp(line, prefix, plen) == 0) {
            count++;
        }
        if (nl == NULL) {
            break;
        }
        line = nl + 1;
    }
    free(s);
    return count;
}

int lab_sink_wait_idle(const lab_server *srv, int timeout_ms)
{
    long long end = lab_now_ms() + timeout_ms;
    do {
        int a = lab_sink_count(srv, "accept");
        int c = lab_sink_count(srv, "close");
        if (a >= 0 && a == c) {
            return 0;
        }
        lab__sleep_ms(5);
    } while (lab_now_ms() < end);
    lab__log("sink on port %u still has open connections after %d ms", srv->port, timeout_ms);
    return -1;
}

int lab_sink_received(const lab_server *srv, const char *needle)
{
    size_t n, nlen = strlen(needle);
    char *s = lab_read_file(srv->data_path, &n);
    int found = 0;
    if (s == NULL) {
        return 0;
    }
    for (size_t i = 0; nlen > 0 && i + nlen <= n && !found; i++) {
        found = memcmp(s + i, needle, nlen) == 0;
    }
    free(s);
    return found;
}

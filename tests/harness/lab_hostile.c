/* The hostile fake server; see lab_hostile.h. */
#include "lab_hostile.h"
#include "lab_internal.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

typedef struct hostile_io {
    int fd;
    SSL *ssl; /* NULL without TLS */
} hostile_io;

static int hostile_write(hostile_io *io, const char *buf, size_t len)
{
    while (len > 0) {
        int chunk = len > 16384 ? 16384 : (int)len;
        int n = io->ssl ? SSL_write(io->ssl, buf, chunk) : (int)send(io->fd, buf, (size_t)chunk, MSG_NOSIGNAL);
        if (n <= 0) {
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Raw bytes under the TLS layer. */
static int hostile_raw(int fd, const void *buf, size_t len)
{
    return send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

/* Reads until the client's first command has arrived (it is small and
 * written at once; one complete line is enough to know it is there). */
static int hostile_read_command(hostile_io *io)
{
    char buf[4096];
    int n = io->ssl ? SSL_read(io->ssl, buf, sizeof buf) : (int)recv(io->fd, buf, sizeof buf, 0);
    return n > 0 ? 0 : -1;
}

/* Waits (up to 10 s) for the client to close, so a close does not race
 * the data it should see. */
static void hostile_hold(int fd)
{
    char buf[4096];
    while (recv(fd, buf, sizeof buf, 0) > 0) {
    }
}

static void hostile_serve(SSL_CTX *ctx, int fd, const lab_hostile_opts *o)
{
    hostile_io io = {fd, NULL};
    size_t len = o->reply ? (o->reply_len ? o->reply_len : strlen(o->reply)) : 0;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);

    if (o->garbage_handshake) {
        char hello[4096];
        /* Like a server that speaks something else: read the ClientHello,
         * answer in its own protocol, hang up once the client does. */
        if (recv(fd, hello, sizeof hello, 0) > 0 && hostile_raw(fd, o->reply, len) == 0) {
            hostile_hold(fd);
        }
        return;
    }
    if (o->tls) {
        io.ssl = SSL_new(ctx);
        /* Renegotiation exists up to TLS 1.2 only. */
        if (io.ssl != NULL && o->renegotiate) {
            SSL_set_max_proto_version(io.ssl, TLS1_2_VERSION);
        }
        if (io.ssl == NULL || SSL_set_fd(io.ssl, fd) != 1 || SSL_accept(io.ssl) != 1) {
            lab__log("hostile: TLS handshake failed");
            goto out;
        }
    }
    if (hostile_read_command(&io) != 0) {
        goto out;
    }
    if (o->renegotiate) {
        /* A client that refuses answers with a no_renegotiation warning,
         * which OpenSSL's server then ends with a fatal alert. */
        if (SSL_renegotiate(io.ssl) != 1 || SSL_do_handshake(io.ssl) != 1) {
            lab__log("hostile: cannot request a renegotiation");
            ERR_print_errors_fp(stderr);
            goto out;
        }
        if (hostile_read_command(&io) != 0) {
            ERR_print_errors_fp(stderr);
            goto out;
        }
    }
    if (o->trickle_ms > 0) {
        for (size_t i = 0; i < len; i++) {
            if (hostile_write(&io, o->reply + i, 1) != 0) {
                goto out;
            }
            lab__sleep_ms((int)o->trickle_ms);
        }
    } else if (len > 0 && hostile_write(&io, o->reply, len) != 0) {
        goto out;
    }
    switch (o->end) {
    case LAB_HOSTILE_HOLD:
        hostile_hold(fd);
        break;
    case LAB_HOSTILE_CLOSE_NOTIFY:
        if (io.ssl != NULL) {
            SSL_shutdown(io.ssl);
        } else {
            shutdown(fd, SHUT_WR);
        }
        hostile_hold(fd);
        break;
    case LAB_HOSTILE_EOF:
        break;
    case LAB_HOSTILE_ENDLESS: {
        char chunk[16384];
        size_t flen = o->fill != NULL && o->fill[0] != '\0' ? strlen(o->fill) : 1;
        size_t n = sizeof chunk - sizeof chunk % flen;
        for (size_t i = 0; i < n; i += flen) {
            memcpy(chunk + i, o->fill != NULL && o->fill[0] != '\0' ? o->fill : "a", flen);
        }
        while (hostile_write(&io, chunk, n) == 0) {
        }
        break;
    }
    case LAB_HOSTILE_TRUNCATED_RECORD: {
        /* Application data, TLS 1.2 record version, 64 bytes announced. */
        static const unsigned char rec[] = {0x17, 0x03, 0x03, 0x00, 0x40, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
        hostile_raw(fd, rec, sizeof rec);
        break;
    }
    case LAB_HOSTILE_CORRUPT_RECORD: {
        unsigned char rec[5 + 64] = {0x17, 0x03, 0x03, 0x00, 0x40};
        memset(rec + 5, 0xa5, 64);
        if (hostile_raw(fd, rec, sizeof rec) == 0) {
            hostile_hold(fd);
        }
        break;
    }
    }
out:
    /* No SSL_shutdown here: only LAB_HOSTILE_CLOSE_NOTIFY says goodbye. */
    SSL_free(io.ssl);
}

static void hostile_child(int lfd, const lab_hostile_opts *o)
{
    SSL_CTX *ctx = NULL;
    signal(SIGPIPE, SIG_IGN);
    if (o->tls) {
        ctx = SSL_CTX_new(TLS_server_method());
        if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, lab_cert("server.crt")) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, lab_cert("server.key"), SSL_FILETYPE_PEM) != 1) {
            ERR_print_errors_fp(stderr);
            _exit(1);
        }
        /* Tickets would arrive unasked after the handshake; keep the byte
         * stream exactly what the case scripts. */
        SSL_CTX_set_num_tickets(ctx, 0);
    }
    for (;;) {
        int c = accept(lfd, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            _exit(1);
        }
        hostile_serve(ctx, c, o);
        close(c);
    }
}

int lab_hostile_start(lab_server *srv, const lab_hostile_opts *opts)
{
    int fd;
    memset(srv, 0, sizeof *srv);
    srv->listen_fd = -1;
    if (opts->tls && lab_certs(NULL) == NULL) {
        return -1;
    }
    int forked = lab__fork_listener(srv, "hostile", &fd);
    if (forked < 0) {
        return -1;
    }
    if (forked == 0) {
        hostile_child(fd, opts);
        _exit(0);
    }
    return 0;
}

/* The BIOs under a TLS session, both on the socket with recv()/send()
 * (MSG_NOSIGNAL: no SIGPIPE ever reaches the host process): the handshake
 * BIO, which hands OpenSSL one TLS record per handshake step, and the
 * plain socket BIO that replaces it once the handshake is done.
 *
 * Why the pacing: the server's TLS 1.3 flight (ServerHello up to Finished)
 * arrives in one piece, and OpenSSL, given all of it, works through it in
 * one call: some 7 million instructions (the certificates' public keys
 * decoded, two signature checks, the key exchange), over a millisecond in
 * which an event loop serves nobody else. Given one record per step, it
 * stops after each with "want read", which the step reports as "again at
 * once" (redtls__tls_pace_stopped), so the loop serves others in between.
 *
 * The handshake BIO never takes from the socket more than the rest of the
 * current record (at a record boundary its 5-byte header, then its body),
 * so no byte is ever held back here, and a record split over many reads,
 * or read header first and body next, counts the same. Writes go through
 * unchanged. The plain BIO has none of this: the hot path pays nothing for
 * it. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/bio.h>

#include "tls_internal.h"

/* Private BIO type numbers below OpenSSL's dynamic range. */
#define SOCKET_BIO_TYPE (BIO_TYPE_SOURCE_SINK | 0x7d)
#define HANDSHAKE_BIO_TYPE (BIO_TYPE_SOURCE_SINK | 0x7e)

static inline int sock_write(BIO *b, redtls__tls_transport *t, const char *buf, int len)
{
    BIO_clear_retry_flags(b);
    size_t n_try = redtls__io_clip(&t->base, (size_t)len);
    if (n_try == 0) {
        BIO_set_retry_write(b);
        t->io_want = POLLOUT;
        return -1;
    }
    ssize_t n = send(t->fd, buf, n_try, MSG_NOSIGNAL);
    t->io_want = 0;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        BIO_set_retry_write(b);
        t->io_want = POLLOUT;
    } else if (n < 0) {
        t->io_errno = errno;
    }
    return (int)n;
}

/* The end-of-file flag lets OpenSSL tell a truncated stream from a clean
 * close. len > 0; the retry flags are clear. */
static inline int sock_read(BIO *b, redtls__tls_transport *t, char *buf, size_t len)
{
    size_t n_try = redtls__io_clip(&t->base, len);
    if (n_try == 0) {
        BIO_set_retry_read(b);
        t->io_want = POLLIN;
        return -1;
    }
    ssize_t n = recv(t->fd, buf, n_try, 0);
    t->io_want = 0;
    if (n == 0) {
        t->eof = 1;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        BIO_set_retry_read(b);
        t->io_want = POLLIN;
    } else if (n < 0) {
        t->io_errno = errno;
    }
    return (int)n;
}

static int socket_write(BIO *b, const char *buf, int len)
{
    return sock_write(b, BIO_get_data(b), buf, len);
}

static int socket_read(BIO *b, char *buf, int len)
{
    redtls__tls_transport *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!buf || len <= 0)
        return 0;
    return sock_read(b, t, buf, (size_t)len);
}

/* ---- the handshake BIO ---- */

/* How much of the current record a read may take (n at most): the rest of
 * its header, or the rest of its body; 0 once this step has had its
 * record. */
static size_t pace_room(const redtls__tls_pace *p, size_t n)
{
    if (p->spent)
        return 0;
    size_t left = p->hdr_got < sizeof p->hdr ? sizeof p->hdr - p->hdr_got : p->body_left;
    return n < left ? n : left;
}

/* Counts n bytes of the current record handed to OpenSSL (never past its
 * end: pace_room saw to that). */
static void pace_took(redtls__tls_pace *p, const char *buf, size_t n)
{
    if (p->hdr_got < sizeof p->hdr) {
        memcpy(p->hdr + p->hdr_got, buf, n);
        p->hdr_got += n;
        if (p->hdr_got < sizeof p->hdr)
            return;
        /* type, version (2 bytes), length (2 bytes, big-endian) */
        p->body_left = (size_t)p->hdr[3] << 8 | p->hdr[4];
    } else {
        p->body_left -= n;
    }
    if (p->body_left == 0) {
        p->hdr_got = 0;
        p->spent = 1;
    }
}

static int handshake_write(BIO *b, const char *buf, int len)
{
    redtls__tls_transport *t = BIO_get_data(b);
    int n = sock_write(b, t, buf, len);
    /* A flight of ours (the ClientHello: a key share made) is the step's
     * work: the server's answer waits for the next step. */
    if (n > 0 && t->pace.on)
        t->pace.spent = 1;
    return n;
}

static int handshake_read(BIO *b, char *buf, int len)
{
    redtls__tls_transport *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!buf || len <= 0)
        return 0;
    /* Off once the handshake is done (the plain BIO normally takes over
     * then). */
    if (!t->pace.on)
        return sock_read(b, t, buf, (size_t)len);
    size_t room = pace_room(&t->pace, (size_t)len);
    if (room == 0) {
        /* Not the socket's "try again": io_want stays 0, and the
         * handshake step reports the stop as its own. */
        BIO_set_retry_read(b);
        t->io_want = 0;
        t->pace.stopped = 1;
        return -1;
    }
    int n = sock_read(b, t, buf, room);
    if (n > 0)
        pace_took(&t->pace, buf, (size_t)n);
    return n;
}

/* OpenSSL asks this some ten times per record (mostly whether the BIO does
 * kernel TLS): the answer is found before anything else is looked up. */
static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF: {
        redtls__tls_transport *t = BIO_get_data(b);
        return t ? t->eof : 1;
    }
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

BIO_METHOD *redtls__tls_bio_method_new(int handshake)
{
    BIO_METHOD *m = BIO_meth_new(handshake ? HANDSHAKE_BIO_TYPE : SOCKET_BIO_TYPE,
                                 handshake ? "redtls handshake" : "redtls socket");
    if (!m)
        return NULL;
    BIO_meth_set_write(m, handshake ? handshake_write : socket_write);
    BIO_meth_set_read(m, handshake ? handshake_read : socket_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    return m;
}

void redtls__tls_pace_step(redtls__tls_pace *p)
{
    p->spent = 0;
    p->stopped = 0;
}

int redtls__tls_pace_stopped(const redtls__tls_pace *p)
{
    return p->on && p->stopped;
}

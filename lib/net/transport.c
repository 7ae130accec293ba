#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport.h"

/* Plain TCP / Unix stream socket. */

typedef struct plain_transport {
    redtls__transport base;
    int fd;
} plain_transport;

static redtls_status plain_write(redtls__transport *t, const char *buf, size_t len, size_t *done, int *want,
                                 char *err)
{
    plain_transport *p = (plain_transport *)t;
    size_t off = 0;
    int clip = (t->io_max | (size_t)t->io_alternate) != 0;
    *want = 0;
    while (off < len) {
        size_t n_try = clip ? redtls__io_clip(t, len - off) : len - off;
        if (n_try == 0) {
            *want = POLLOUT;
            break;
        }
        /* MSG_NOSIGNAL: a peer that went away must not raise SIGPIPE in the
         * host process, and we never touch its signal handlers. */
        ssize_t n = send(p->fd, buf + off, n_try, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            *want = POLLOUT;
            break;
        }
        *done = off;
        /* send() returns 0 only for a zero-length write, so errno says
         * nothing then. */
        if (n == 0)
            return redtls__fail(err, REDTLS_E_IO, "write failed: the socket accepted no bytes");
        return redtls__fail(err, REDTLS_E_IO, "write failed: %s", strerror(errno));
    }
    *done = off;
    return REDTLS_OK;
}

static redtls_status plain_read(redtls__transport *t, char *buf, size_t cap, size_t *got, int *want, char *err)
{
    plain_transport *p = (plain_transport *)t;
    *got = 0;
    *want = 0;
    if (cap == 0)
        return REDTLS_OK;
    for (;;) {
        size_t n_try = (t->io_max | (size_t)t->io_alternate) != 0 ? redtls__io_clip(t, cap) : cap;
        if (n_try == 0) {
            *want = POLLIN;
            return REDTLS_OK;
        }
        ssize_t n = recv(p->fd, buf, n_try, 0);
        if (n > 0) {
            *got = (size_t)n;
            return REDTLS_OK;
        }
        if (n == 0)
            return redtls__fail(err, REDTLS_E_EOF, "server closed the connection");
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *want = POLLIN;
            return REDTLS_OK;
        }
        return redtls__fail(err, REDTLS_E_IO, "read failed: %s", strerror(errno));
    }
}

static void plain_close(redtls__transport *t, int graceful)
{
    plain_transport *p = (plain_transport *)t;
    (void)graceful;
    close(p->fd);
    free(p);
}

static redtls_status plain_idle_check(redtls__transport *t, char *err)
{
    return redtls__fd_idle_check(((plain_transport *)t)->fd, err);
}

static int plain_fd(redtls__transport *base)
{
    return ((plain_transport *)base)->fd;
}

static const redtls__transport_ops plain_ops = {
    .write = plain_write,
    .read = plain_read,
    .close = plain_close,
    .idle_check = plain_idle_check,
    .fd = plain_fd,
};

redtls_status redtls__plain_transport(int fd, redtls__transport **out)
{
    plain_transport *p = calloc(1, sizeof *p);
    *out = NULL;
    if (!p)
        return REDTLS_E_NOMEM;
    p->base.ops = &plain_ops;
    p->fd = fd;
    *out = &p->base;
    return REDTLS_OK;
}

/* In-memory transport (tests). */

typedef struct mem_chunk {
    struct mem_chunk *next;
    size_t len, off;
    char data[];
} mem_chunk;

typedef struct mem_transport {
    redtls__transport base;
    mem_chunk *head, *tail;
    redtls_status at_end;
    char *out;
    size_t out_len, out_cap, write_calls;
} mem_transport;

static redtls_status mem_write(redtls__transport *t, const char *buf, size_t len, size_t *done, int *want,
                               char *err)
{
    mem_transport *m = (mem_transport *)t;
    *done = 0;
    *want = 0;
    m->write_calls++;
    size_t n = redtls__io_clip(t, len);
    if (n == 0) {
        *want = POLLOUT;
        return REDTLS_OK;
    }
    if (m->out_len + n + 1 > m->out_cap) {
        size_t cap = m->out_cap ? m->out_cap : 256;
        while (cap < m->out_len + n + 1)
            cap *= 2;
        char *grown = realloc(m->out, cap);
        if (!grown)
            return redtls__fail(err, REDTLS_E_NOMEM, "out of memory");
        m->out = grown;
        m->out_cap = cap;
    }
    memcpy(m->out + m->out_len, buf, n);
    m->out_len += n;
    m->out[m->out_len] = '\0';
    *done = n;
    return REDTLS_OK;
}

static redtls_status mem_read(redtls__transport *t, char *buf, size_t cap, size_t *got, int *want, char *err)
{
    mem_transport *m = (mem_transport *)t;
    *got = 0;
    *want = 0;
    if (cap == 0)
        return REDTLS_OK;
    mem_chunk *c = m->head;
    if (!c) {
        if (m->at_end == REDTLS_E_COMMAND_TIMEOUT) {
            *want = POLLIN;
            return REDTLS_OK;
        }
        return redtls__fail(err, m->at_end, "server closed the connection");
    }
    size_t n = redtls__io_clip(t, c->len - c->off < cap ? c->len - c->off : cap);
    if (n == 0) {
        *want = POLLIN;
        return REDTLS_OK;
    }
    memcpy(buf, c->data + c->off, n);
    c->off += n;
    if (c->off == c->len) {
        m->head = c->next;
        if (!m->head)
            m->tail = NULL;
        free(c);
    }
    *got = n;
    return REDTLS_OK;
}

static void mem_close(redtls__transport *t, int graceful)
{
    mem_transport *m = (mem_transport *)t;
    (void)graceful;
    while (m->head) {
        mem_chunk *n = m->head->next;
        free(m->head);
        m->head = n;
    }
    free(m->out);
    free(m);
}

/* The memory transport's server never speaks unasked unless a test
 * scripted bytes while no reply is due: those stay for the next read. */
static redtls_status mem_idle_check(redtls__transport *t, char *err)
{
    (void)t;
    (void)err;
    return REDTLS_OK;
}

/* A read answers at once with data or with the scripted end. */
static int mem_buffered(redtls__transport *t)
{
    mem_transport *m = (mem_transport *)t;
    return m->head != NULL || m->at_end != REDTLS_E_COMMAND_TIMEOUT;
}

static int mem_fd(redtls__transport *t)
{
    (void)t;
    return -1;
}

static const redtls__transport_ops mem_ops = {
    .write = mem_write,
    .read = mem_read,
    .close = mem_close,
    .idle_check = mem_idle_check,
    .buffered = mem_buffered,
    .fd = mem_fd,
};

int redtls__transport_resumed(redtls__transport *t)
{
    return t->ops->resumed ? t->ops->resumed(t) : 0;
}

int redtls__transport_verdict_pending(redtls__transport *t)
{
    return t->ops->verdict_pending ? t->ops->verdict_pending(t) : 0;
}

int redtls__transport_describe(redtls__transport *t, int what, char *out, size_t outlen)
{
    if (outlen)
        out[0] = '\0';
    return t->ops->describe ? t->ops->describe(t, what, out, outlen) : -1;
}

redtls_status redtls__mem_transport(redtls__transport **out, redtls_status at_end)
{
    mem_transport *m = calloc(1, sizeof *m);
    *out = NULL;
    if (!m)
        return REDTLS_E_NOMEM;
    m->base.ops = &mem_ops;
    m->at_end = at_end;
    *out = &m->base;
    return REDTLS_OK;
}

void redtls__mem_set_end(redtls__transport *t, redtls_status at_end)
{
    ((mem_transport *)t)->at_end = at_end;
}

redtls_status redtls__mem_push(redtls__transport *t, const char *data, size_t len)
{
    mem_transport *m = (mem_transport *)t;
    if (len == 0)
        return REDTLS_OK;
    mem_chunk *c = malloc(sizeof *c + len);
    if (!c)
        return REDTLS_E_NOMEM;
    c->next = NULL;
    c->len = len;
    c->off = 0;
    memcpy(c->data, data, len);
    if (m->tail)
        m->tail->next = c;
    else
        m->head = c;
    m->tail = c;
    return REDTLS_OK;
}

const char *redtls__mem_written(redtls__transport *t, size_t *len)
{
    mem_transport *m = (mem_transport *)t;
    *len = m->out_len;
    return m->out ? m->out : "";
}

size_t redtls__mem_write_calls(redtls__transport *t)
{
    return ((mem_transport *)t)->write_calls;
}

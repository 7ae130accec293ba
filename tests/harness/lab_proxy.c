/* The fault proxy and redis-server restarts; see lab_proxy.h. */
#include "lab_proxy.h"
#include "lab_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROXY_MAX_CONNS 64
#define PROXY_BUF 16384
/* The child looks at the control block at least this often. */
#define PROXY_TICK_MS 5
#define PROXY_ACK_TIMEOUT_MS 2000
#define TLS_HEADER 5

/* Shared between the test (writer of requests) and the proxy child (which
 * applies them and acknowledges with done = want). */
struct lab_proxy_shm {
    pthread_mutex_t mu;
    unsigned want, done;
    lab_fault fault;
    int fault_changed;
    uint16_t target_port;
    unsigned cut_req, freeze_req;
    int cut_rst;
    lab_proxy_stats stats;
};

typedef struct tls_rec {
    unsigned char hdr[TLS_HEADER];
    unsigned hdr_got;
    size_t body_left, body_pos;
    int target; /* this record is the one to cut */
} tls_rec;

typedef struct pipe_dir {
    unsigned char buf[PROXY_BUF];
    size_t len, off;       /* pending bytes are buf[off..len) */
    long long release_at;  /* delay/trickle: not before this time */
    size_t since_fault;    /* bytes forwarded since the fault was set */
    int eof;               /* the source closed */
} pipe_dir;

typedef struct proxy_conn {
    int fd[2]; /* [0] client side, [1] server side (-1: none) */
    pipe_dir d[2]; /* [0] client->server, [1] server->client */
    int frozen, discard;
    tls_rec rec;     /* server->client record boundaries */
    int rec_wait;    /* CUT_IN_RECORD armed: the next record to start is cut */
} proxy_conn;

typedef struct proxy_state {
    struct lab_proxy_shm *shm;
    int listen_fd;
    lab_fault fault;
    uint16_t target;
    unsigned cut_seen, freeze_seen;
    proxy_conn *conns[PROXY_MAX_CONNS];
} proxy_state;

static void shm_lock(struct lab_proxy_shm *s)
{
    pthread_mutex_lock(&s->mu);
}

static void shm_unlock(struct lab_proxy_shm *s)
{
    pthread_mutex_unlock(&s->mu);
}

static int dir_applies(const lab_fault *f, int d)
{
    unsigned mask = f->dir == 0 ? LAB_BOTH : f->dir;
    return (mask & (d == 0 ? LAB_C2S : LAB_S2C)) != 0;
}

static void stat_add(proxy_state *ps, unsigned long long *field, long long n)
{
    shm_lock(ps->shm);
    *field += (unsigned long long)n;
    shm_unlock(ps->shm);
}

static void conn_close(proxy_state *ps, int i, int rst, int is_cut)
{
    proxy_conn *c = ps->conns[i];
    struct linger lg = {1, 0};
    /* Stats first: a test that saw the close must see it counted. */
    shm_lock(ps->shm);
    ps->shm->stats.active--;
    ps->shm->stats.cuts += is_cut != 0;
    shm_unlock(ps->shm);
    for (int k = 0; k < 2; k++) {
        if (c->fd[k] >= 0) {
            if (rst) {
                setsockopt(c->fd[k], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            }
            close(c->fd[k]);
        }
    }
    free(c);
    ps->conns[i] = NULL;
}

/* The cut after a cut: a one-shot fault reverts to pass-through. */
static void fault_fired(proxy_state *ps)
{
    if (ps->fault.once) {
        memset(&ps->fault, 0, sizeof ps->fault);
        shm_lock(ps->shm);
        /* A fault set meanwhile (not yet applied) wins. */
        if (!ps->shm->fault_changed) {
            memset(&ps->shm->fault, 0, sizeof ps->shm->fault);
        }
        shm_unlock(ps->shm);
    }
}

/* Walks n server->client bytes through the record parser. Returns how many
 * of them may pass before the cut (n when no cut falls inside them). */
static size_t rec_step(tls_rec *r, int *rec_wait, const unsigned char *p, size_t n, size_t after, int *cut)
{
    *cut = 0;
    for (size_t i = 0; i < n; i++) {
        if (r->body_left == 0) {
            r->hdr[r->hdr_got++] = p[i];
            if (r->hdr_got < TLS_HEADER) {
                continue;
            }
            r->hdr_got = 0;
            r->body_left = ((size_t)r->hdr[3] << 8) | r->hdr[4];
            r->body_pos = 0;
            r->target = *rec_wait && r->body_left > 0;
            if (r->target) {
                *rec_wait = 0;
                if (after == 0) {
                    *cut = 1;
                    return i + 1;
                }
            }
            continue;
        }
        r->body_left--;
        r->body_pos++;
        if (r->target && r->body_left > 0 && r->body_pos >= after) {
            *cut = 1;
            return i + 1;
        }
        if (r->body_left == 0) {
            r->target = 0;
        }
    }
    return n;
}

/* Forwards what the fault allows of direction d. Returns -1 when the
 * connection was closed. */
static int dir_flush(proxy_state *ps, int i, int d, long long now)
{
    proxy_conn *c = ps->conns[i];
    pipe_dir *pd = &c->d[d];
    const lab_fault *f = &ps->fault;
    int dst = c->fd[d == 0 ? 1 : 0];
    size_t want = pd->len - pd->off;
    int cut = 0;

    if (c->frozen || c->discard || f->kind == LAB_FAULT_BLACKHOLE) {
        return 0;
    }
    if (want > 0 && dir_applies(f, d)) {
        if ((f->kind == LAB_FAULT_DELAY || f->kind == LAB_FAULT_TRICKLE) && now < pd->release_at) {
            return 0;
        }
        if (f->kind == LAB_FAULT_TRICKLE) {
            want = 1;
        } else if (f->kind == LAB_FAULT_CUT) {
            size_t allow = f->after > pd->since_fault ? f->after - pd->since_fault : 0;
            if (want > allow) {
                want = allow;
                cut = 1;
            }
        } else if (f->kind == LAB_FAULT_CUT_IN_RECORD && d == 1) {
            tls_rec probe = c->rec;
            int wait = c->rec_wait;
            want = rec_step(&probe, &wait, pd->buf + pd->off, want, f->after, &cut);
        }
    }
    while (want > 0) {
        ssize_t w = send(dst, pd->buf + pd->off, want, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            cut = 0; /* not all of it went out yet: cut on a later pass */
            break;
        }
        if (w <= 0) {
            conn_close(ps, i, 1, 0);
            return -1;
        }
        if (d == 1) {
            int ignored;
            rec_step(&c->rec, &c->rec_wait, pd->buf + pd->off, (size_t)w, (size_t)-1, &ignored);
        }
        pd->off += (size_t)w;
        pd->since_fault += (size_t)w;
        want -= (size_t)w;
        stat_add(ps, d == 0 ? &ps->shm->stats.c2s : &ps->shm->stats.s2c, w);
        if (f->kind == LAB_FAULT_TRICKLE && dir_applies(f, d)) {
            pd->release_at = now + f->delay_ms;
        }
    }
    if (cut) {
        int rst = f->rst;
        /* Before the close: the test may set the next fault as soon as it
         * sees the connection go. */
        fault_fired(ps);
        conn_close(ps, i, rst, 1);
        return -1;
    }
    if (pd->off == pd->len) {
        pd->off = pd->len = 0;
        if (pd->eof) {
            conn_close(ps, i, 0, 0);
            return -1;
        }
    }
    return 0;
}

/* Applies the test's requests and acknowledges them. */
static void apply_control(proxy_state *ps)
{
    struct lab_proxy_shm *s = ps->shm;
    int changed, cut, freeze, rst;
    shm_lock(s);
    if (s->want == s->done) {
        shm_unlock(s);
        return;
    }
    changed = s->fault_changed;
    s->fault_changed = 0;
    ps->fault = s->fault;
    ps->target = s->target_port;
    cut = s->cut_req != ps->cut_seen;
    freeze = s->freeze_req != ps->freeze_seen;
    rst = s->cut_rst;
    ps->cut_seen = s->cut_req;
    ps->freeze_seen = s->freeze_req;
    shm_unlock(s);

    for (int i = 0; i < PROXY_MAX_CONNS; i++) {
        proxy_conn *c = ps->conns[i];
        if (c == NULL) {
            continue;
        }
        if (cut) {
            conn_close(ps, i, rst, 1);
            continue;
        }
        if (freeze) {
            c->frozen = 1;
        }
        if (changed) {
            c->d[0].since_fault = c->d[1].since_fault = 0;
            c->rec_wait = ps->fault.kind == LAB_FAULT_CUT_IN_RECORD;
        }
    }
    /* Acknowledge only after the connections saw the change. */
    shm_lock(s);
    s->done = s->want;
    shm_unlock(s);
}

static int connect_upstream(uint16_t port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Loopback connects finish (or are refused) at once. */
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void accept_one(proxy_state *ps)
{
    int slot = -1, cfd, sfd = -1;
    proxy_conn *c;
    cfd = accept(ps->listen_fd, NULL, NULL);
    if (cfd < 0) {
        return;
    }
    stat_add(ps, &ps->shm->stats.accepted, 1);
    for (int i = 0; i < PROXY_MAX_CONNS; i++) {
        if (ps->conns[i] == NULL) {
            slot = i;
            break;
        }
    }
    if (ps->fault.kind != LAB_FAULT_NO_ANSWER) {
        sfd = connect_upstream(ps->target);
    }
    c = slot >= 0 && (sfd >= 0 || ps->fault.kind == LAB_FAULT_NO_ANSWER) ? calloc(1, sizeof *c) : NULL;
    if (c == NULL) {
        /* Like a server that is down: the client sees the door shut. */
        struct linger lg = {1, 0};
        setsockopt(cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(cfd);
        if (sfd >= 0) {
            close(sfd);
        }
        return;
    }
    c->fd[0] = cfd;
    c->fd[1] = sfd;
    c->discard = sfd < 0;
    c->rec_wait = ps->fault.kind == LAB_FAULT_CUT_IN_RECORD;
    fcntl(cfd, F_SETFL, fcntl(cfd, F_GETFL) | O_NONBLOCK);
    if (sfd >= 0) {
        fcntl(sfd, F_SETFL, fcntl(sfd, F_GETFL) | O_NONBLOCK);
    }
    ps->conns[slot] = c;
    stat_add(ps, &ps->shm->stats.active, 1);
}

/* Reads what direction d's source has, when its buffer is free. Returns -1
 * when the connection was closed. */
static int dir_read(proxy_state *ps, int i, int d, long long now)
{
    proxy_conn *c = ps->conns[i];
    pipe_dir *pd = &c->d[d];
    ssize_t r = recv(c->fd[d], pd->buf, sizeof pd->buf, 0);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return 0;
    }
    if (r < 0) {
        conn_close(ps, i, 1, 0);
        return -1;
    }
    if (r == 0) {
        pd->eof = 1;
        if (c->discard) {
            conn_close(ps, i, 0, 0);
            return -1;
        }
        return 0;
    }
    if (c->discard) {
        return 0;
    }
    pd->off = 0;
    pd->len = (size_t)r;
    if (ps->fault.kind == LAB_FAULT_DELAY || ps->fault.kind == LAB_FAULT_TRICKLE) {
        if (dir_applies(&ps->fault, d)) {
            pd->release_at = now + ps->fault.delay_ms;
        }
    }
    return 0;
}

static int proxy_blocked(const proxy_state *ps, const proxy_conn *c)
{
    return c->frozen || ps->fault.kind == LAB_FAULT_BLACKHOLE;
}

static void proxy_loop(proxy_state *ps)
{
    for (;;) {
        struct pollfd pfd[1 + 2 * PROXY_MAX_CONNS];
        int owner[1 + 2 * PROXY_MAX_CONNS];
        int n = 0, timeout = PROXY_TICK_MS;
        long long now;

        apply_control(ps);
        now = lab_now_ms();
        for (int i = 0; i < PROXY_MAX_CONNS; i++) {
            for (int d = 0; d < 2 && ps->conns[i] != NULL; d++) {
                if (dir_flush(ps, i, d, now) < 0) {
                    break;
                }
            }
        }

        pfd[n].fd = ps->listen_fd;
        pfd[n].events = POLLIN;
        owner[n++] = -1;
        for (int i = 0; i < PROXY_MAX_CONNS; i++) {
            proxy_conn *c = ps->conns[i];
            if (c == NULL) {
                continue;
            }
            for (int k = 0; k < 2; k++) {
                /* fd[k] is the source of d[k] and the destination of d[1-k]. */
                const pipe_dir *in = &c->d[k], *out = &c->d[1 - k];
                if (c->fd[k] < 0) {
                    continue;
                }
                pfd[n].fd = c->fd[k];
                pfd[n].events = 0;
                if (c->discard || (!proxy_blocked(ps, c) && in->len == 0 && !in->eof)) {
                    pfd[n].events |= POLLIN;
                }
                if (!proxy_blocked(ps, c) && out->len > out->off) {
                    if (out->release_at > now) {
                        long long wait = out->release_at - now;
                        timeout = wait < timeout ? (int)wait : timeout;
                    } else {
                        pfd[n].events |= POLLOUT;
                    }
                }
                owner[n++] = i * 2 + k;
            }
        }
        if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR) {
            lab__log("proxy: poll: %s", strerror(errno));
            return;
        }
        now = lab_now_ms();
        if (pfd[0].revents & POLLIN) {
            accept_one(ps);
        }
        for (int j = 1; j < n; j++) {
            int i = owner[j] / 2, k = owner[j] % 2;
            if (ps->conns[i] == NULL || ps->conns[i]->fd[k] != pfd[j].fd) {
                continue; /* closed (or its slot reused) during this pass */
            }
            if ((pfd[j].events & POLLIN) && (pfd[j].revents & (POLLIN | POLLHUP | POLLERR))) {
                dir_read(ps, i, k, now);
            } else if (pfd[j].revents & POLLERR) {
                /* A reset while this side was not being read. */
                conn_close(ps, i, 1, 0);
            }
        }
    }
}

int lab_proxy_start(lab_proxy *p, uint16_t target_port)
{
    pthread_mutexattr_t ma;
    struct lab_proxy_shm *s;
    int fd;

    memset(p, 0, sizeof *p);
    s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED) {
        lab__log("proxy: mmap: %s", strerror(errno));
        return -1;
    }
    memset(s, 0, sizeof *s);
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&s->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    s->target_port = target_port;
    s->want = 1; /* the child picks up the target on its first pass */

    fd = lab__listen_tcp(0, &p->port);
    if (fd < 0) {
        lab__log("proxy: listen: %s", strerror(errno));
        munmap(s, sizeof *s);
        return -1;
    }
    p->shm = s;
    snprintf(p->log_path, sizeof p->log_path, "%s/proxy-%d-%u.log", lab_workdir(), (int)getpid(), p->port);
    p->pid = lab__fork_tracked();
    if (p->pid < 0) {
        p->pid = 0;
        close(fd);
        lab_proxy_stop(p);
        return -1;
    }
    if (p->pid == 0) {
        static proxy_state ps;
        lab__child_setup(p->log_path, fd);
        signal(SIGPIPE, SIG_IGN);
        ps.shm = s;
        ps.listen_fd = fd;
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        proxy_loop(&ps);
        _exit(1);
    }
    close(fd);
    return 0;
}

/* Hands a request to the child and waits until it has been applied. */
static void proxy_request_done(lab_proxy *p)
{
    long long end = lab_now_ms() + PROXY_ACK_TIMEOUT_MS;
    struct lab_proxy_shm *s = p->shm;
    s->want++;
    shm_unlock(s);
    for (;;) {
        int done;
        shm_lock(s);
        done = s->done == s->want;
        shm_unlock(s);
        if (done) {
            return;
        }
        if (lab_now_ms() > end) {
            lab__log("proxy pid %d did not apply a request within %d ms", (int)p->pid, PROXY_ACK_TIMEOUT_MS);
            return;
        }
        lab__sleep_ms(1);
    }
}

void lab_proxy_set(lab_proxy *p, const lab_fault *f)
{
    static const lab_fault pass = {0};
    if (p->shm == NULL) {
        return;
    }
    shm_lock(p->shm);
    p->shm->fault = f != NULL ? *f : pass;
    p->shm->fault_changed = 1;
    proxy_request_done(p);
}

void lab_proxy_retarget(lab_proxy *p, uint16_t target_port)
{
    if (p->shm == NULL) {
        return;
    }
    shm_lock(p->shm);
    p->shm->target_port = target_port;
    proxy_request_done(p);
}

void lab_proxy_cut_all(lab_proxy *p, int rst)
{
    if (p->shm == NULL) {
        return;
    }
    shm_lock(p->shm);
    p->shm->cut_req++;
    p->shm->cut_rst = rst;
    proxy_request_done(p);
}

void lab_proxy_freeze_all(lab_proxy *p)
{
    if (p->shm == NULL) {
        return;
    }
    shm_lock(p->shm);
    p->shm->freeze_req++;
    proxy_request_done(p);
}

lab_proxy_stats lab_proxy_get_stats(const lab_proxy *p)
{
    lab_proxy_stats st;
    memset(&st, 0, sizeof st);
    if (p->shm != NULL) {
        shm_lock(p->shm);
        st = p->shm->stats;
        shm_unlock(p->shm);
    }
    return st;
}

void lab_proxy_stop(lab_proxy *p)
{
    if (p == NULL) {
        return;
    }
    if (p->pid > 0) {
        lab_stop_pid(p->pid);
        p->pid = 0;
    }
    if (p->shm != NULL) {
        munmap(p->shm, sizeof *p->shm);
        p->shm = NULL;
    }
}

void lab_sleep_ms(int ms)
{
    lab__sleep_ms(ms);
}

int lab_redis_restart(lab_server *srv, const lab_redis_opts *opts)
{
    static const lab_redis_opts none = {0};
    const char *extra[64];
    char port_s[8];
    size_t n = 0;
    uint16_t port = srv->port;
    lab_redis_opts o = opts != NULL ? *opts : none;
    long long end;

    lab_stop(srv);
    snprintf(port_s, sizeof port_s, "%u", port);
    for (const char *const *e = o.extra; e != NULL && *e != NULL && n < 60; e++) {
        extra[n++] = *e;
    }
    /* redis-server takes the last of repeated options, so this overrides
     * the random port lab_redis_start() picks. */
    extra[n++] = o.tls ? "--tls-port" : "--port";
    extra[n++] = port_s;
    extra[n] = NULL;
    o.extra = extra;
    end = lab_now_ms() + 2000;
    for (;;) {
        if (lab_redis_start(srv, &o) == 0) {
            srv->port = port;
            return 0;
        }
        if (lab_now_ms() > end) {
            return -1;
        }
        lab__sleep_ms(50);
    }
}

/* The session's state machines (lib/conn.c, lib/setup.c, lib/auth.c over
 * lib/tls.c and the memory transport) stepped by hand: the test passes the
 * time, reads the wait each step answers, and feeds the server's bytes
 * itself, so every byte boundary and every timer is reached on purpose.
 * Nothing here sleeps. */
#include "unit_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls.h"

/* The fake clock starts here; any value works, as the core never reads
 * the clock itself. */
#define T0 1000000
#define TOKEN "s3cret-token-for-alice"
/* No exchange here needs more steps; a machine stuck in a loop fails the
 * test instead of hanging it. */
#define STEP_LIMIT 200000

static char dir[64];
static char ca_crt[128], srv_crt[128], srv_key[128];

static int group_setup(void **state)
{
    (void)state;
    unit_tmpdir(dir, sizeof dir);
    if (unit_make_ca_and_server(dir) != 0)
        return -1;
    snprintf(ca_crt, sizeof ca_crt, "%s/ca.crt", dir);
    snprintf(srv_crt, sizeof srv_crt, "%s/srv.crt", dir);
    snprintf(srv_key, sizeof srv_key, "%s/srv.key", dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unit_rmtree(dir);
    return 0;
}

/* ---- replies as text, to compare whole replies at once ---- */

static void render_into(const redisReply *r, char *out, size_t cap, size_t *pos)
{
    int n = 0;
    switch (r->type) {
    case REDIS_REPLY_STATUS:
        n = snprintf(out + *pos, cap - *pos, "+%s", r->str);
        break;
    case REDIS_REPLY_ERROR:
        n = snprintf(out + *pos, cap - *pos, "-%s", r->str);
        break;
    case REDIS_REPLY_INTEGER:
        n = snprintf(out + *pos, cap - *pos, ":%lld", (long long)r->integer);
        break;
    case REDIS_REPLY_STRING:
        n = snprintf(out + *pos, cap - *pos, "$%zu:%.*s", (size_t)r->len, (int)r->len, r->str);
        break;
    case REDIS_REPLY_NIL:
        n = snprintf(out + *pos, cap - *pos, "nil");
        break;
    case REDIS_REPLY_ARRAY:
        n = snprintf(out + *pos, cap - *pos, "[");
        *pos += (size_t)n;
        for (size_t i = 0; i < r->elements; i++) {
            if (i)
                *pos += (size_t)snprintf(out + *pos, cap - *pos, ",");
            render_into(r->element[i], out, cap, pos);
        }
        n = snprintf(out + *pos, cap - *pos, "]");
        break;
    default:
        fail_msg("unexpected reply type %d", r->type);
    }
    assert_true(n >= 0 && (size_t)n < cap - *pos);
    *pos += (size_t)n;
}

/* The reply as text; frees it. */
static const char *render(redisReply *r, char *out, size_t cap)
{
    size_t pos = 0;
    assert_non_null(r);
    render_into(r, out, cap, &pos);
    freeReplyObject(r);
    return out;
}

/* ---- a TLS Redis server inside the test ----
 *
 * OpenSSL runs on memory buffers; the test moves the bytes between them
 * and its end of the socketpair, sending the client at most one byte per
 * server step, so every record the client reads is cut at every byte
 * across its steps. It answers AUTH with +OK and GET with a bulk string. */

typedef struct tsrv {
    int fd; /* the test's end of the socketpair */
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rbio, *wbio;
    int handshake_done;
    char in[1024]; /* the plain text the client sent */
    size_t in_len, in_answered;
    char *out; /* TLS bytes made but not sent yet */
    size_t out_len, out_off, out_cap;
    size_t to_client, from_client, max_packet;
    int commands;
} tsrv;

static void tsrv_init(tsrv *s, int fd)
{
    memset(s, 0, sizeof *s);
    s->fd = fd;
    s->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(s->ctx);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(s->ctx, srv_crt), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(s->ctx, srv_key, SSL_FILETYPE_PEM), 1);
    s->ssl = SSL_new(s->ctx);
    s->rbio = BIO_new(BIO_s_mem());
    s->wbio = BIO_new(BIO_s_mem());
    assert_true(s->ssl && s->rbio && s->wbio);
    /* An empty input buffer means "more to come", not the end. */
    BIO_set_mem_eof_return(s->rbio, -1);
    SSL_set_bio(s->ssl, s->rbio, s->wbio);
    SSL_set_accept_state(s->ssl);
}

static void tsrv_free(tsrv *s)
{
    SSL_free(s->ssl);
    SSL_CTX_free(s->ctx);
    free(s->out);
    close(s->fd);
    ERR_clear_error();
}

/* One line "<type><number>\r\n" at *pos; 0 while it is incomplete. */
static int resp_line(const char *buf, size_t len, size_t *pos, char type, long *num)
{
    const char *nl = memchr(buf + *pos, '\n', len - *pos);
    if (!nl)
        return 0;
    if (buf[*pos] != type)
        fail_msg("the client sent '%c' where a RESP '%c' line belongs", buf[*pos], type);
    *num = strtol(buf + *pos + 1, NULL, 10);
    *pos = (size_t)(nl - buf) + 1;
    return 1;
}

/* The length of the first whole command in buf[0..len) (0: incomplete)
 * and its name. */
static size_t resp_command(const char *buf, size_t len, char *name, size_t namecap)
{
    size_t pos = 0;
    long argc = 0, n = 0;
    if (!resp_line(buf, len, &pos, '*', &argc))
        return 0;
    for (long i = 0; i < argc; i++) {
        if (!resp_line(buf, len, &pos, '$', &n) || len - pos < (size_t)n + 2)
            return 0;
        if (i == 0)
            snprintf(name, namecap, "%.*s", (int)n, buf + pos);
        pos += (size_t)n + 2;
    }
    return pos;
}

static void tsrv_answer(tsrv *s)
{
    char name[32];
    size_t n;
    while ((n = resp_command(s->in + s->in_answered, s->in_len - s->in_answered, name, sizeof name)) > 0) {
        const char *reply = strcmp(name, "AUTH") == 0  ? "+OK\r\n"
                            : strcmp(name, "GET") == 0 ? "$12\r\nhello\r\nworld\r\n"
                                                       : "-ERR unexpected command\r\n";
        size_t done = 0;
        assert_int_equal(SSL_write_ex(s->ssl, reply, strlen(reply), &done), 1);
        s->in_answered += n;
        s->commands++;
    }
}

/* Takes what the client sent, moves the server on, and sends the client
 * at most one byte. */
static void tsrv_step(tsrv *s)
{
    char buf[4096];
    for (;;) {
        ssize_t n = recv(s->fd, buf, sizeof buf, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0)
            fail_msg("the server's recv failed: %s", n == 0 ? "end of file" : strerror(errno));
        assert_int_equal(BIO_write(s->rbio, buf, (int)n), (int)n);
        s->from_client += (size_t)n;
        if ((size_t)n > s->max_packet)
            s->max_packet = (size_t)n;
    }
    if (!s->handshake_done) {
        int rc = SSL_do_handshake(s->ssl);
        if (rc == 1)
            s->handshake_done = 1;
        else if (SSL_get_error(s->ssl, rc) != SSL_ERROR_WANT_READ)
            fail_msg("the server's handshake failed (SSL error %d)", SSL_get_error(s->ssl, rc));
    }
    if (s->handshake_done) {
        size_t got = 0;
        while (SSL_read_ex(s->ssl, s->in + s->in_len, sizeof s->in - 1 - s->in_len, &got) == 1)
            s->in_len += got;
        tsrv_answer(s);
    }
    int pending;
    while ((pending = (int)BIO_ctrl_pending(s->wbio)) > 0) {
        if (s->out_len + (size_t)pending > s->out_cap) {
            s->out_cap = (s->out_len + (size_t)pending) * 2;
            s->out = realloc(s->out, s->out_cap);
            assert_non_null(s->out);
        }
        assert_int_equal(BIO_read(s->wbio, s->out + s->out_len, pending), pending);
        s->out_len += (size_t)pending;
    }
    if (s->out_off < s->out_len) {
        ssize_t n = send(s->fd, s->out + s->out_off, 1, MSG_NOSIGNAL);
        if (n == 1) {
            s->out_off++;
            s->to_client++;
        } else if (!(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) {
            fail_msg("the server's send failed: %s", strerror(errno));
        }
    }
}

/* ---- 1. byte boundaries over TLS ---- */

typedef struct seen_waits {
    int in, out;
} seen_waits;

static void saw(seen_waits *s, int events)
{
    if (events & POLLIN)
        s->in++;
    if (events & POLLOUT)
        s->out++;
}

/* A full session on one byte per socket call: the TLS handshake, the
 * set-up (AUTH user token) and a GET. socktype SOCK_SEQPACKET keeps the
 * client's send() calls apart on the server's side, so their sizes can be
 * checked; with SOCK_STREAM the kernel joins them. */
static void run_tls_session(int socktype, int alternate)
{
    redtls_config *cfg = NULL;
    assert_status(redtls_config_new(&cfg), REDTLS_OK);
    assert_status(redtls_config_set_host(cfg, "redis.test", 6379), REDTLS_OK);
    assert_status(redtls_config_set_ca_file(cfg, ca_crt), REDTLS_OK);
    assert_status(redtls_config_set_user(cfg, "alice"), REDTLS_OK);
    assert_status(redtls_config_set_token(cfg, TOKEN), REDTLS_OK);
    assert_status(redtls_config_set_reconnect(cfg, 0), REDTLS_OK);
    redtls_conn *c = NULL;
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    assert_non_null(c->tls);

    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    tsrv s;
    tsrv_init(&s, sv[1]);
    redtls__transport *tp = NULL;
    assert_status(redtls__tls_start(c->tls, sv[0], redtls__config_verify_name(&c->cfg, c->cfg.host), &c->session,
                                    &tp, c->errmsg),
                  REDTLS_OK);
    tp->io_max = 1;
    tp->io_alternate = alternate;

    size_t steps = 0;
    seen_waits hs = {0, 0}, rest = {0, 0};
    int want = 0;
    do {
        assert_true(++steps < STEP_LIMIT);
        assert_status(tp->ops->handshake(tp, &want, c->errmsg), REDTLS_OK);
        saw(&hs, want);
        tsrv_step(&s);
    } while (want);
    assert_status(redtls__conn_attach(c, tp, 1), REDTLS_OK);

    int64_t now = T0, deadline = T0 + 5000;
    int done = 0;
    redtls__wait w;
    assert_status(redtls__setup_start(c, now, deadline), REDTLS_OK);
    for (;;) {
        assert_true(++steps < STEP_LIMIT);
        assert_status(redtls__setup_step(c, now, deadline, &done, &w), REDTLS_OK);
        if (done)
            break;
        assert_int_equal(w.fd, sv[0]);
        /* Waiting for the socket until the deadline, or "call again now"
         * after bytes that made no whole reply. */
        assert_true(w.events ? w.at == deadline : w.at == now);
        saw(&rest, w.events);
        tsrv_step(&s);
    }

    const char *argv[] = {"GET", "key"};
    assert_status(redtls__conn_append(c, 2, argv, NULL), REDTLS_OK);
    do {
        assert_true(++steps < STEP_LIMIT);
        assert_status(redtls__conn_write_step(c, &want), REDTLS_OK);
        saw(&rest, want);
        tsrv_step(&s);
    } while (want);
    redisReply *r = NULL;
    for (;;) {
        assert_true(++steps < STEP_LIMIT);
        assert_status(redtls__conn_read_step(c, now, &r, &want), REDTLS_OK);
        if (r)
            break;
        saw(&rest, want);
        tsrv_step(&s);
    }
    char text[64];
    assert_string_equal(render(r, text, sizeof text), "$12:hello\r\nworld");

    static const char sent[] = "*3\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$22\r\n" TOKEN "\r\n"
                               "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
    assert_int_equal(s.in_len, sizeof sent - 1);
    assert_memory_equal(s.in, sent, sizeof sent - 1);
    assert_int_equal(s.commands, 2);
    assert_int_equal(redtls_conn_pending(c), 0);
    if (socktype == SOCK_SEQPACKET)
        assert_int_equal(s.max_packet, 1); /* every client send() carried one byte */
    if (alternate) {
        /* Every other socket call answers "try again" and ends the step,
         * so no step can move more than one byte either way. */
        if (steps < s.to_client + s.from_client)
            fail_msg("%zu steps moved %zu + %zu bytes: some step moved more than one", steps, s.to_client,
                     s.from_client);
        assert_true(hs.in > 0 && hs.out > 0);
        assert_true(rest.in > 0 && rest.out > 0);
    } else {
        assert_true(hs.in > 0 && rest.in > 0);
    }

    redtls_conn_free(c);
    redtls_config_free(cfg);
    tsrv_free(&s);
}

static void test_tls_one_byte_per_call(void **state)
{
    (void)state;
    run_tls_session(SOCK_STREAM, 0);
}

static void test_tls_one_byte_per_call_alternating(void **state)
{
    (void)state;
    run_tls_session(SOCK_STREAM, 1);
}

static void test_tls_one_byte_per_send_seen_by_server(void **state)
{
    (void)state;
    run_tls_session(SOCK_SEQPACKET, 0);
}

/* ---- 2. byte boundaries, plain RESP on the memory transport ---- */

/* The answers to AUTH, SELECT and CLIENT SETNAME, then to the pipeline
 * below: every RESP2 type, a bulk string holding CRLF, empty and nil
 * values, and arrays nested two deep. */
static const char server_bytes[] = "+OK\r\n+OK\r\n+OK\r\n"
                                   "+PONG\r\n"
                                   "-ERR boom\r\n"
                                   ":42\r\n"
                                   ":-7\r\n"
                                   "$5\r\nhello\r\n"
                                   "$4\r\na\r\nb\r\n"
                                   "$0\r\n\r\n"
                                   "$-1\r\n"
                                   "*3\r\n:1\r\n*2\r\n$1\r\nx\r\n+y\r\n$-1\r\n"
                                   "*0\r\n"
                                   "*-1\r\n";

static const char *const pipeline_replies[] = {
    "+PONG", "-ERR boom", ":42", ":-7", "$5:hello", "$4:a\r\nb", "$0:", "nil", "[:1,[$1:x,+y],nil]", "[]", "nil",
};
#define N_PIPELINE (sizeof pipeline_replies / sizeof pipeline_replies[0])

static const char client_bytes[] = "*3\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$22\r\n" TOKEN "\r\n"
                                   "*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"
                                   "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$2\r\nw7\r\n";

/* Set-up and pipeline with the server's bytes in two chunks cut at k,
 * read at most io_max bytes per call (0: no limit). */
static void run_plain_session(redtls_config *cfg, size_t io_max, int alternate, size_t k)
{
    const size_t n = sizeof server_bytes - 1;
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    t->io_max = io_max;
    t->io_alternate = alternate;
    unit_pushn(t, server_bytes, k);
    unit_pushn(t, server_bytes + k, n - k);

    int64_t now = T0, deadline = T0 + 1000;
    size_t steps = 0;
    int done = 0;
    redtls__wait w;
    assert_status(redtls__setup_start(c, now, deadline), REDTLS_OK);
    for (;;) {
        assert_true(++steps < STEP_LIMIT);
        assert_status(redtls__setup_step(c, now, deadline, &done, &w), REDTLS_OK);
        if (done)
            break;
        assert_int_equal(w.fd, -1);
        assert_true(w.events ? w.at == deadline : w.at == now);
    }

    static const char *cmds[N_PIPELINE] = {"PING", "A", "B", "C", "D", "E", "F", "G", "H", "I", "J"};
    for (size_t i = 0; i < N_PIPELINE; i++)
        assert_status(redtls__conn_append(c, 1, &cmds[i], NULL), REDTLS_OK);
    int want;
    do {
        assert_true(++steps < STEP_LIMIT);
        assert_status(redtls__conn_write_step(c, &want), REDTLS_OK);
    } while (want || c->olen > 0);
    size_t reads = 0;
    for (size_t i = 0; i < N_PIPELINE; i++) {
        redisReply *r = NULL;
        do {
            assert_true(++reads < STEP_LIMIT);
            assert_status(redtls__conn_read_step(c, now, &r, &want), REDTLS_OK);
        } while (!r);
        char text[128];
        const char *got = render(r, text, sizeof text);
        if (strcmp(got, pipeline_replies[i]) != 0)
            fail_msg("io_max %zu, alternate %d, cut at %zu: reply %zu is %s, expected %s", io_max, alternate, k, i,
                     got, pipeline_replies[i]);
    }
    /* Nothing was left over or made up. */
    redisReply *r = NULL;
    assert_status(redtls__conn_read_step(c, now, &r, &want), REDTLS_OK);
    assert_null(r);
    assert_int_equal(want, POLLIN);
    assert_int_equal(redtls_conn_pending(c), 0);

    size_t len;
    const char *written = redtls__mem_written(t, &len);
    const size_t n_setup = sizeof client_bytes - 1;
    assert_true(len > n_setup);
    assert_memory_equal(written, client_bytes, n_setup);
    static const char head[] = "*1\r\n$4\r\nPING\r\n*1\r\n$1\r\nA\r\n";
    assert_true(len >= n_setup + sizeof head - 1);
    assert_memory_equal(written + n_setup, head, sizeof head - 1);
    /* A read step makes at most one transport read: at one byte per read
     * each reply takes as many steps as it has bytes (the set-up took its
     * own bytes and no more), or more when every other read is refused. */
    const size_t n_replies = n - (sizeof "+OK\r\n+OK\r\n+OK\r\n" - 1);
    if (io_max == 1 && !alternate)
        assert_int_equal(reads, n_replies);
    if (io_max == 1 && alternate)
        assert_true(reads >= 2 * n_replies - 1);
    redtls_conn_free(c);
}

static void test_plain_every_cut(void **state)
{
    (void)state;
    redtls_config *cfg = unit_plain_config();
    assert_status(redtls_config_set_user(cfg, "alice"), REDTLS_OK);
    assert_status(redtls_config_set_token(cfg, TOKEN), REDTLS_OK);
    assert_status(redtls_config_set_db(cfg, 3), REDTLS_OK);
    assert_status(redtls_config_set_client_name(cfg, "w7"), REDTLS_OK);
    /* With io_max 0 a read takes a whole chunk, so the cut at k is the
     * only boundary; with 1 every byte is one. */
    for (size_t io_max = 0; io_max <= 1; io_max++)
        for (int alternate = 0; alternate <= 1; alternate++)
            for (size_t k = 0; k <= sizeof server_bytes - 1; k++)
                run_plain_session(cfg, io_max, alternate, k);
    redtls_config_free(cfg);
}

/* ---- 3 (c, d). the library's own request and the command timeout ---- */

static void test_exchange_times_out_waiting(void **state)
{
    (void)state;
    redtls_config *cfg = unit_plain_config();
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    const int64_t deadline = T0 + 100;
    assert_status(redtls__exch_send(c, 1, (const char *[]){"PING"}, 0), REDTLS_OK);
    redisReply *r = NULL;
    redtls__wait w;
    assert_status(redtls__exch_poll(c, T0, deadline, &r, &w), REDTLS_OK);
    assert_null(r);
    assert_int_equal(w.fd, -1);
    assert_int_equal(w.events, POLLIN);
    assert_true(w.at == deadline);
    size_t len;
    assert_string_equal(redtls__mem_written(t, &len), "*1\r\n$4\r\nPING\r\n");

    assert_status(redtls__exch_poll(c, deadline - 1, deadline, &r, &w), REDTLS_OK);
    assert_null(r);
    assert_int_equal(w.events, POLLIN);
    assert_true(w.at == deadline);
    assert_true(redtls_conn_is_connected(c));

    assert_status(redtls__exch_poll(c, deadline, deadline, &r, &w), REDTLS_E_COMMAND_TIMEOUT);
    assert_null(r);
    assert_string_equal(redtls_conn_errmsg(c), "timed out waiting for the server");
    /* A late answer could be taken for the next request's: the connection
     * is gone. */
    assert_false(redtls_conn_is_connected(c));
    assert_status(redtls__exch_poll(c, deadline, deadline, &r, &w), REDTLS_E_STATE);
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* A socket that will not take the request: the timeout says so. */
static void test_exchange_times_out_writing(void **state)
{
    (void)state;
    redtls_config *cfg = unit_plain_config();
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    t->io_alternate = 1; /* the first write call answers "try again" */
    const int64_t deadline = T0 + 100;
    assert_status(redtls__exch_send(c, 1, (const char *[]){"PING"}, 0), REDTLS_OK);
    redisReply *r = NULL;
    redtls__wait w;
    assert_status(redtls__exch_poll(c, T0, deadline, &r, &w), REDTLS_OK);
    assert_int_equal(w.events, POLLOUT);
    assert_true(w.at == deadline);
    size_t len;
    redtls__mem_written(t, &len);
    assert_int_equal(len, 0);
    /* The socket is still full at the deadline: its next call answers
     * "try again" too. */
    t->io_flip = 0;
    assert_status(redtls__exch_poll(c, deadline, deadline, &r, &w), REDTLS_E_COMMAND_TIMEOUT);
    assert_string_equal(redtls_conn_errmsg(c), "timed out writing to the server");
    assert_false(redtls_conn_is_connected(c));
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

/* A reply that keeps coming (an endless array) never asks to wait for the
 * socket: each step answers "again at once" (w.at == now), so the driver
 * sees the time pass and the deadline ends it. */
static void test_endless_reply_meets_deadline(void **state)
{
    (void)state;
    redtls_config *cfg = unit_plain_config();
    redtls__transport *t;
    redtls_conn *c = unit_mem_conn(cfg, REDTLS_E_COMMAND_TIMEOUT, &t);
    const int64_t deadline = T0 + 50;
    assert_status(redtls__exch_send(c, 2, (const char *[]){"LRANGE", "q"}, 0), REDTLS_OK);
    redisReply *r = NULL;
    redtls__wait w;
    assert_status(redtls__exch_poll(c, T0, deadline, &r, &w), REDTLS_OK);
    assert_int_equal(w.events, POLLIN); /* just written: nothing can be there yet */
    unit_push(t, "*100000\r\n");
    for (int64_t now = T0; now < deadline; now++) {
        unit_push(t, ":1\r\n");
        assert_status(redtls__exch_poll(c, now, deadline, &r, &w), REDTLS_OK);
        assert_null(r);
        assert_int_equal(w.events, 0);
        assert_true(w.at == now);
    }
    unit_push(t, ":1\r\n");
    assert_status(redtls__exch_poll(c, deadline, deadline, &r, &w), REDTLS_E_COMMAND_TIMEOUT);
    assert_null(r);
    assert_contains(redtls_conn_errmsg(c), "timed out waiting for the server");
    assert_false(redtls_conn_is_connected(c));
    redtls_conn_free(c);
    redtls_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_one_byte_per_call),
        cmocka_unit_test(test_tls_one_byte_per_call_alternating),
        cmocka_unit_test(test_tls_one_byte_per_send_seen_by_server),
        cmocka_unit_test(test_plain_every_cut),
        cmocka_unit_test(test_exchange_times_out_waiting),
        cmocka_unit_test(test_exchange_times_out_writing),
        cmocka_unit_test(test_endless_reply_meets_deadline),
    };
    return cmocka_run_group_tests_name("session", tests, group_setup, group_teardown);
}

/* lib/net/tls_bio.c: the handshake BIO hands OpenSSL one TLS record per
 * handshake step, the socket BIO reads straight through. First the BIOs
 * alone, on a socketpair fed with made-up records; then whole handshakes
 * against an OpenSSL server run in memory by the test, whose every flight
 * is put into the socket at once, so each step's share of it can be
 * measured. */
#include "unit_util.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls_internal.h"

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

static redtls__tls_ctx *client_ctx(void)
{
    redtls__tls_settings st;
    memset(&st, 0, sizeof st);
    st.min_version = 12;
    st.ca_file = ca_crt;
    redtls__tls_ctx *ctx = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(redtls__tls_ctx_new(&st, &ctx, err), REDTLS_OK);
    return ctx;
}

/* Bytes waiting in fd's receive queue. */
static int queued(int fd)
{
    int n = -1;
    assert_int_equal(ioctl(fd, FIONREAD, &n), 0);
    return n;
}

static void send_all(int fd, const void *data, size_t len)
{
    assert_int_equal(send(fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* ---- the BIOs alone ---- */

/* A transport with just what the BIOs use, on one end of a socketpair;
 * the test writes the server's side into *peer. */
typedef struct bio_fx {
    redtls__tls_ctx *ctx;
    redtls__tls_transport t;
    BIO *bio;
    int peer;
} bio_fx;

static int bio_setup(void **state)
{
    bio_fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
        return -1;
    f->ctx = client_ctx();
    f->t.fd = sv[0];
    f->peer = sv[1];
    f->t.pace.on = 1;
    f->bio = BIO_new(f->ctx->handshake_method);
    if (!f->bio)
        return -1;
    BIO_set_data(f->bio, &f->t);
    *state = f;
    return 0;
}

static int bio_teardown(void **state)
{
    bio_fx *f = *state;
    BIO_free(f->bio);
    close(f->t.fd);
    if (f->peer >= 0)
        close(f->peer);
    redtls__tls_ctx_free(f->ctx);
    free(f);
    return 0;
}

/* A read the BIO refused on purpose: "retry", but not the socket's. */
static void assert_paced_stop(bio_fx *f, char *buf, int len)
{
    assert_int_equal(BIO_read(f->bio, buf, len), -1);
    assert_true(BIO_should_retry(f->bio) && BIO_should_read(f->bio));
    assert_true(redtls__tls_pace_stopped(&f->t.pace));
    assert_int_equal(f->t.io_want, 0);
}

/* The socket had nothing: "retry" for POLLIN, not a paced stop. */
static void assert_socket_empty(bio_fx *f, char *buf, int len)
{
    assert_int_equal(BIO_read(f->bio, buf, len), -1);
    assert_true(BIO_should_retry(f->bio) && BIO_should_read(f->bio));
    assert_false(redtls__tls_pace_stopped(&f->t.pace));
    assert_int_equal(f->t.io_want, POLLIN);
}

static const char rec_a[] = "\x16\x03\x03\x00\x03" "abc";
static const char rec_b[] = "\x17\x03\x03\x00\x02" "xy";
static const char rec_empty[] = "\x15\x03\x03\x00\x00";

/* Two records in the socket, however much OpenSSL asks for (read ahead):
 * one step gets the first (header, then body), and the next read is
 * refused; the next step gets the second. */
static void test_one_record_per_step(void **state)
{
    bio_fx *f = *state;
    char buf[256];
    send_all(f->peer, rec_a, sizeof rec_a - 1);
    send_all(f->peer, rec_b, sizeof rec_b - 1);
    redtls__tls_pace_step(&f->t.pace);
    assert_int_equal(BIO_read(f->bio, buf, sizeof buf), 5);
    assert_memory_equal(buf, rec_a, 5);
    assert_int_equal(BIO_read(f->bio, buf, sizeof buf), 3);
    assert_memory_equal(buf, "abc", 3);
    assert_paced_stop(f, buf, sizeof buf);
    /* Nothing was taken from the socket for it. */
    assert_int_equal(queued(f->t.fd), sizeof rec_b - 1);

    redtls__tls_pace_step(&f->t.pace);
    assert_int_equal(BIO_read(f->bio, buf, sizeof buf), 5);
    assert_int_equal(BIO_read(f->bio, buf, sizeof buf), 2);
    assert_memory_equal(buf, "xy", 2);
    assert_paced_stop(f, buf, sizeof buf);

    redtls__tls_pace_step(&f->t.pace);
    assert_socket_empty(f, buf, sizeof buf);

    /* A record with an empty body is whole with its header. */
    send_all(f->peer, rec_empty, sizeof rec_empty - 1);
    send_all(f->peer, rec_a, sizeof rec_a - 1);
    assert_int_equal(BIO_read(f->bio, buf, sizeof buf), 5);
    assert_paced_stop(f, buf, sizeof buf);
    assert_int_equal(queued(f->t.fd), sizeof rec_a - 1);
}

/* OpenSSL without read-ahead asks for the header, then the body, exactly;
 * smaller asks never overrun the record either. */
static void test_exact_asks(void **state)
{
    bio_fx *f = *state;
    char buf[16];
    send_all(f->peer, rec_a, sizeof rec_a - 1);
    send_all(f->peer, rec_b, sizeof rec_b - 1);
    redtls__tls_pace_step(&f->t.pace);
    assert_int_equal(BIO_read(f->bio, buf, 3), 3);
    assert_int_equal(BIO_read(f->bio, buf, 2), 2);
    assert_int_equal(BIO_read(f->bio, buf, 1), 1);
    assert_int_equal(BIO_read(f->bio, buf, 5), 2); /* the body's rest only */
    assert_paced_stop(f, buf, 5);
}

/* A record that arrives in pieces: its header split, its body in parts,
 * the socket empty in between; the step ends only when it is whole, and
 * the next record's bytes already there wait. */
static void test_record_in_pieces(void **state)
{
    bio_fx *f = *state;
    char buf[256];
    redtls__tls_pace_step(&f->t.pace);
    send_all(f->peer, "\x16\x03", 2);
    assert_int_equal(BIO_read(f->bio, buf, sizeof buf), 2);
    assert_socket_empty(f, buf, sizeof buf);
    /* The socket's "try again" ends a step too; the next goes on with the
     * same record. */
    redtls__tls_pace_step(&f->t.pace);
    send_all(f->peer, "\x03\x00\x04" "ab", 5);
    assert_int_equal(BIO_read(f->bio, buf, sizeof buf), 3);
    assert_int_equal(BIO_read(f->bio, buf, sizeof buf), 2);
    assert_socket_empty(f, buf, sizeof buf);
    redtls__tls_pace_step(&f->t.pace);
    send_all(f->peer, "cd", 2);
    send_all(f->peer, rec_b, sizeof rec_b - 1);
    assert_int_equal(BIO_read(f->bio, buf, sizeof buf), 2);
    assert_memory_equal(buf, "cd", 2);
    assert_paced_stop(f, buf, sizeof buf);
    assert_int_equal(queued(f->t.fd), sizeof rec_b - 1);
}

/* The tests' one-byte socket calls: every byte a read of its own, the
 * record boundary kept. */
static void test_one_byte_reads(void **state)
{
    bio_fx *f = *state;
    char buf[256];
    f->t.base.io_max = 1;
    send_all(f->peer, rec_a, sizeof rec_a - 1);
    send_all(f->peer, rec_b, sizeof rec_b - 1);
    redtls__tls_pace_step(&f->t.pace);
    for (size_t i = 0; i < sizeof rec_a - 1; i++) {
        assert_int_equal(BIO_read(f->bio, buf, sizeof buf), 1);
        assert_int_equal(buf[0], rec_a[i]);
    }
    assert_paced_stop(f, buf, sizeof buf);
    assert_int_equal(queued(f->t.fd), sizeof rec_b - 1);
}

/* Sending (our flight) is a step's work: the answer waits for the next
 * step. Writes themselves go through unchanged. */
static void test_write_ends_step(void **state)
{
    bio_fx *f = *state;
    char buf[256];
    send_all(f->peer, rec_a, sizeof rec_a - 1);
    redtls__tls_pace_step(&f->t.pace);
    assert_int_equal(BIO_write(f->bio, "hello", 5), 5);
    assert_paced_stop(f, buf, sizeof buf);
    assert_int_equal(recv(f->peer, buf, sizeof buf, 0), 5);
    assert_memory_equal(buf, "hello", 5);
    redtls__tls_pace_step(&f->t.pace);
    assert_int_equal(BIO_read(f->bio, buf, sizeof buf), 5);
}

/* End of file and socket errors come through as they are. */
static void test_eof_and_errors(void **state)
{
    bio_fx *f = *state;
    char buf[256];
    /* A reset: the peer closes with our bytes unread. */
    assert_int_equal(BIO_write(f->bio, "x", 1), 1);
    close(f->peer);
    f->peer = -1;
    redtls__tls_pace_step(&f->t.pace);
    assert_int_equal(BIO_read(f->bio, buf, sizeof buf), -1);
    assert_false(BIO_should_retry(f->bio));
    assert_int_equal(f->t.io_errno, ECONNRESET);
    assert_false(redtls__tls_pace_stopped(&f->t.pace));

    /* A clean end in the middle of a record's header. */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    close(f->t.fd);
    f->t.fd = sv[0];
    f->t.io_errno = 0;
    send_all(sv[1], "\x16\x03", 2);
    close(sv[1]);
    redtls__tls_pace_step(&f->t.pace);
    assert_int_equal(BIO_read(f->bio, buf, sizeof buf), 2);
    assert_int_equal(BIO_read(f->bio, buf, sizeof buf), 0);
    assert_false(BIO_should_retry(f->bio));
    assert_int_equal(f->t.eof, 1);
    assert_int_equal(BIO_eof(f->bio), 1);
}

/* Without the pacing (the handshake done), and always with the socket
 * BIO, a read takes what is there. */
static void test_reads_through(void **state)
{
    bio_fx *f = *state;
    char buf[256];
    send_all(f->peer, rec_a, sizeof rec_a - 1);
    send_all(f->peer, rec_b, sizeof rec_b - 1);
    f->t.pace.on = 0;
    assert_int_equal(BIO_read(f->bio, buf, sizeof buf), (int)(sizeof rec_a + sizeof rec_b - 2));

    BIO *plain = BIO_new(f->ctx->bio_method);
    assert_non_null(plain);
    BIO_set_data(plain, &f->t);
    f->t.pace.on = 1;
    f->t.pace.spent = 1;
    send_all(f->peer, rec_a, sizeof rec_a - 1);
    send_all(f->peer, rec_b, sizeof rec_b - 1);
    assert_int_equal(BIO_read(plain, buf, sizeof buf), (int)(sizeof rec_a + sizeof rec_b - 2));
    assert_int_equal(BIO_write(plain, "hi", 2), 2);
    /* Nor does a write there count for the pacing. */
    f->t.pace.spent = 0;
    assert_int_equal(BIO_write(plain, "hi", 2), 2);
    assert_int_equal(f->t.pace.spent, 0);
    BIO_free(plain);
}

/* ---- whole handshakes, flight by flight ---- */

/* An OpenSSL server on memory BIOs, stepped by the test; *peer is the
 * socket end that faces the client. */
typedef struct relay {
    SSL_CTX *sctx;
    SSL *srv;
    BIO *in, *out; /* the server's: what it reads, what it wrote */
    int peer;
    int client_fd;
    size_t rec[32]; /* the last flight's records (header included) */
    int nrec;
    int first_type[32]; /* each record's content type and first byte */
    int first_byte[32];
} relay;

static void relay_start(relay *r, int max_tls12)
{
    memset(r, 0, sizeof *r);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK), 0);
    assert_int_equal(fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK), 0);
    r->client_fd = sv[0];
    r->peer = sv[1];
    r->sctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(r->sctx);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(r->sctx, srv_crt), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(r->sctx, srv_key, SSL_FILETYPE_PEM), 1);
    if (max_tls12)
        SSL_CTX_set_max_proto_version(r->sctx, TLS1_2_VERSION);
    r->srv = SSL_new(r->sctx);
    r->in = BIO_new(BIO_s_mem());
    r->out = BIO_new(BIO_s_mem());
    assert_true(r->srv && r->in && r->out);
    SSL_set_bio(r->srv, r->in, r->out);
    SSL_set_accept_state(r->srv);
}

static void relay_free(relay *r)
{
    SSL_free(r->srv);
    SSL_CTX_free(r->sctx);
    close(r->peer);
    ERR_clear_error();
}

/* Hands the server what the client sent and lets it answer. Returns
 * SSL_do_handshake's result. */
static int relay_to_server(relay *r)
{
    char buf[16384];
    ssize_t n;
    while ((n = recv(r->peer, buf, sizeof buf, 0)) > 0)
        assert_int_equal(BIO_write(r->in, buf, (int)n), (int)n);
    return SSL_do_handshake(r->srv);
}

/* Puts the server's whole answer into the client's socket at once, noting
 * its records. Returns its size. */
static size_t relay_to_client(relay *r)
{
    static char flight[65536];
    int len = BIO_read(r->out, flight, sizeof flight);
    assert_true(len > 0);
    r->nrec = 0;
    for (int off = 0; off < len;) {
        assert_true(off + 5 <= len && r->nrec < 32);
        size_t body = (size_t)(unsigned char)flight[off + 3] << 8 | (unsigned char)flight[off + 4];
        r->first_type[r->nrec] = (unsigned char)flight[off];
        r->first_byte[r->nrec] = body ? (unsigned char)flight[off + 5] : -1;
        r->rec[r->nrec++] = 5 + body;
        off += (int)(5 + body);
        assert_true(off <= len);
    }
    send_all(r->peer, flight, (size_t)len);
    return (size_t)len;
}

/* Steps the client's handshake while its socket holds a whole flight:
 * every step's share of the bytes into took[], its answer into wants[].
 * Stops when a step waits for the socket or the handshake is done. */
static int steps_over_flight(redtls__transport *t, int fd, size_t *took, int *wants, int max)
{
    char err[REDTLS__ERRMSG_MAX] = "";
    int n = 0;
    for (;;) {
        assert_true(n < max);
        int before = queued(fd), want = -1;
        redtls_status st = t->ops->handshake(t, &want, err);
        if (st != REDTLS_OK)
            fail_msg("handshake step %d: %s (%s)", n, redtls_strerror(st), err);
        took[n] = (size_t)(before - queued(fd));
        wants[n++] = want;
        if (want != REDTLS__AGAIN)
            return n;
    }
}

/* The steps' shares are the flight's records one by one, each step
 * ending "again"; skip_ok: one step may take nothing (the certificate
 * check); it is returned (or -1). */
static int assert_record_per_step(const relay *r, const size_t *took, const int *wants, int n, int skip_ok)
{
    int skipped = -1, k = 0;
    for (int i = 0; i < n; i++) {
        if (took[i] == 0 && skip_ok && skipped < 0 && i > 0) {
            skipped = i;
            continue;
        }
        if (k >= r->nrec || took[i] != r->rec[k])
            fail_msg("step %d took %zu bytes; record %d of the flight has %zu (of %d records)", i, took[i], k,
                     k < r->nrec ? r->rec[k] : 0, r->nrec);
        k++;
    }
    assert_int_equal(k, r->nrec);
    for (int i = 0; i + 1 < n; i++)
        assert_int_equal(wants[i], REDTLS__AGAIN);
    return skipped;
}

static redtls__transport *client_start(redtls__tls_ctx *ctx, relay *r, const char *name)
{
    redtls__transport *t = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(redtls__tls_start(ctx, r->client_fd, name, NULL, &t, err), REDTLS_OK);
    /* The ClientHello goes out, and that is the step's work. */
    int want = -1;
    assert_status(t->ops->handshake(t, &want, err), REDTLS_OK);
    assert_int_equal(want, REDTLS__AGAIN);
    assert_status(t->ops->handshake(t, &want, err), REDTLS_OK);
    assert_int_equal(want, POLLIN);
    return t;
}

/* After the handshake: the server's bytes come through the plain BIO. */
static void assert_talks(redtls__transport *t, relay *r)
{
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_true(SSL_is_init_finished(r->srv) || relay_to_server(r) == 1);
    assert_int_equal(SSL_write(r->srv, "+PONG\r\n", 7), 7);
    char buf[8192];
    int len = BIO_read(r->out, buf, sizeof buf);
    assert_true(len > 0);
    send_all(r->peer, buf, (size_t)len);
    size_t got = 0;
    assert_status(unit_read(t, buf, sizeof buf, &got, redtls__deadline_after(3000), err), REDTLS_OK);
    assert_int_equal(got, 7);
    assert_memory_equal(buf, "+PONG\r\n", 7);
    redtls__tls_transport *tt = (redtls__tls_transport *)t;
    assert_int_equal(tt->pace.on, 0);
    assert_ptr_equal(SSL_get_rbio(tt->ssl), SSL_get_wbio(tt->ssl));
    assert_string_equal(BIO_method_name(SSL_get_rbio(tt->ssl)), "redtls socket");
}

/* TLS 1.3: the server's one flight (ServerHello to Finished) waits in the
 * socket whole; the client takes it a record per step, plus one step for
 * the certificate check, and is done with the last record. */
static void test_tls13_flight(void **state)
{
    (void)state;
    relay r;
    relay_start(&r, 0);
    redtls__tls_ctx *ctx = client_ctx();
    redtls__transport *t = client_start(ctx, &r, "redis.test");
    assert_int_equal(relay_to_server(&r), -1);
    relay_to_client(&r);
    /* ServerHello, EncryptedExtensions, Certificate, CertificateVerify,
     * Finished (and a ChangeCipherSpec for middleboxes). */
    assert_true(r.nrec >= 5);
    size_t took[64];
    int wants[64];
    int n = steps_over_flight(t, r.client_fd, took, wants, 64);
    int skipped = assert_record_per_step(&r, took, wants, n, 1);
    assert_true(skipped > 0);
    assert_int_equal(wants[n - 1], 0);
    assert_int_equal(n, r.nrec + 1);
    assert_talks(t, &r);
    t->ops->close(t, 0);
    relay_free(&r);
    redtls__tls_ctx_free(ctx);
}

/* TLS 1.2: ServerHello, Certificate, ServerKeyExchange, ServerHelloDone a
 * record per step (the certificate check right after the Certificate);
 * our ClientKeyExchange, ChangeCipherSpec and Finished end a step; then
 * the server's ChangeCipherSpec and Finished, a step each. */
static void test_tls12_flights(void **state)
{
    (void)state;
    relay r;
    relay_start(&r, 1);
    redtls__tls_ctx *ctx = client_ctx();
    redtls__transport *t = client_start(ctx, &r, "redis.test");
    assert_int_equal(relay_to_server(&r), -1);
    relay_to_client(&r);
    assert_int_equal(r.nrec, 4);
    size_t took[64];
    int wants[64];
    int n = steps_over_flight(t, r.client_fd, took, wants, 64);
    /* The last step sent our flight and stopped; the one after it finds
     * the socket empty. */
    assert_int_equal(n, r.nrec + 2);
    took[n - 1] = 0;
    int skipped = assert_record_per_step(&r, took, wants, n - 1, 1);
    assert_int_equal(wants[n - 1], POLLIN);
    /* Handshake records are readable in TLS 1.2: the check follows the
     * Certificate message (type 11). */
    assert_int_equal(r.first_type[skipped - 1], 22);
    assert_int_equal(r.first_byte[skipped - 1], 11);

    assert_int_equal(relay_to_server(&r), 1);
    relay_to_client(&r);
    assert_int_equal(r.nrec, 2);
    n = steps_over_flight(t, r.client_fd, took, wants, 64);
    assert_record_per_step(&r, took, wants, n, 0);
    assert_int_equal(n, 2);
    assert_int_equal(wants[1], 0);
    assert_talks(t, &r);
    t->ops->close(t, 0);
    relay_free(&r);
    redtls__tls_ctx_free(ctx);
}

/* The certificate check in its own step still fails with its own status
 * and message. */
static void test_verify_failure_kept(void **state)
{
    (void)state;
    relay r;
    relay_start(&r, 0);
    redtls__tls_ctx *ctx = client_ctx();
    redtls__transport *t = client_start(ctx, &r, "other.test");
    assert_int_equal(relay_to_server(&r), -1);
    relay_to_client(&r);
    char err[REDTLS__ERRMSG_MAX] = "";
    redtls_status st = REDTLS_OK;
    int want = REDTLS__AGAIN, steps = 0;
    while (st == REDTLS_OK && want == REDTLS__AGAIN) {
        assert_true(++steps < 32);
        st = t->ops->handshake(t, &want, err);
    }
    assert_status(st, REDTLS_E_TLS_HOSTNAME);
    assert_string_equal(err, "certificate verify failed: hostname 'other.test' does not match the certificate "
                             "(SAN: DNS:redis.test)");
    /* The records up to the Certificate, then the check. */
    assert_true(steps >= 4);
    assert_int_equal(ERR_peek_error(), 0);
    t->ops->close(t, 0);
    relay_free(&r);
    redtls__tls_ctx_free(ctx);
}

/* Without verification there is no chain check: a handshake that fails
 * later says why (here a TLS 1.2 server demanding a client certificate),
 * not "certificate verify failed" from a check nobody asked for. */
static void test_insecure_failure_is_not_verify(void **state)
{
    (void)state;
    relay r;
    relay_start(&r, 1); /* TLS 1.2 */
    SSL_set_verify(r.srv, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    redtls__tls_settings ts;
    memset(&ts, 0, sizeof ts);
    ts.min_version = 12;
    ts.insecure = 1;
    redtls__tls_ctx *ctx = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(redtls__tls_ctx_new(&ts, &ctx, err), REDTLS_OK);
    redtls__transport *t = client_start(ctx, &r, "redis.test");
    redtls_status st = REDTLS_OK;
    for (int round = 0; round < 6 && st == REDTLS_OK; round++) {
        relay_to_server(&r);
        if (BIO_ctrl_pending(r.out) > 0)
            relay_to_client(&r);
        int want = REDTLS__AGAIN, steps = 0;
        while (st == REDTLS_OK && want == REDTLS__AGAIN) {
            assert_true(++steps < 64);
            st = t->ops->handshake(t, &want, err);
        }
        if (st == REDTLS_OK && want == 0)
            break;
    }
    assert_status(st, REDTLS_E_TLS_CLIENT_CERT);
    t->ops->close(t, 0);
    relay_free(&r);
    redtls__tls_ctx_free(ctx);
}

#define BIO_T(fn) cmocka_unit_test_setup_teardown(fn, bio_setup, bio_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BIO_T(test_one_record_per_step),
        BIO_T(test_exact_asks),
        BIO_T(test_record_in_pieces),
        BIO_T(test_one_byte_reads),
        BIO_T(test_write_ends_step),
        BIO_T(test_eof_and_errors),
        BIO_T(test_reads_through),
        cmocka_unit_test(test_tls13_flight),
        cmocka_unit_test(test_tls12_flights),
        cmocka_unit_test(test_verify_failure_kept),
        cmocka_unit_test(test_insecure_failure_is_not_verify),
    };
    return cmocka_run_group_tests_name("tls_bio", tests, group_setup, group_teardown);
}

/* lib/driver/async.c under the memory transport and a fake clock (and one
 * Unix socket served by the test): one write per pass, replies in order,
 * each command's own deadline with late replies dropped, the silent-server
 * rule, backpressure, callbacks that issue commands or free the handle,
 * commands issued before the connection exists, a broken connection. Every
 * test checks that every callback ran exactly once. */
#include "unit_util.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "async_internal.h"

#define T0 1000000

static int64_t fake_now;
static int64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

/* What the callbacks saw, per command (by its index as userdata). */
#define MAXC 16
typedef struct seen {
    int calls[MAXC];
    redtls_status st[MAXC];
    char reply[MAXC][32];
    char msg[MAXC][200]; /* the handle's message when the callback ran */
    redtls_async *ac;
    int free_in; /* index whose callback frees the handle (-1: none) */
    int issue_in; /* index whose callback issues command issue_as */
    int issue_as;
} seen;

static seen *S;

static void on_reply(redtls_async *ac, redtls_status st, struct redisReply *r, void *ud)
{
    int i = (int)(intptr_t)ud;
    S->calls[i]++;
    S->st[i] = st;
    snprintf(S->msg[i], sizeof S->msg[i], "%s", redtls_async_errmsg(ac));
    S->reply[i][0] = '\0';
    if (r) {
        snprintf(S->reply[i], sizeof S->reply[i], "%s", r->str ? r->str : "");
        freeReplyObject(r);
    } else {
        assert_int_not_equal(st, REDTLS_OK);
    }
    if (i == S->issue_in)
        assert_status(redtls_async_command(ac, on_reply, (void *)(intptr_t)S->issue_as, "GET k%d", S->issue_as),
                      REDTLS_OK);
    if (i == S->free_in)
        redtls_async_free(ac);
}

static void count_reply(redtls_async *ac, redtls_status st, struct redisReply *r, void *ud)
{
    (void)ac;
    assert_status(st, REDTLS_OK);
    freeReplyObject(r);
    (*(int *)ud)++;
}

static void get(redtls_async *ac, int i)
{
    assert_status(redtls_async_command(ac, on_reply, (void *)(intptr_t)i, "GET k%d", i), REDTLS_OK);
}

static void once_each(const seen *s, int n)
{
    for (int i = 0; i < n; i++)
        if (s->calls[i] != 1)
            fail_msg("command %d: callback called %d times", i, s->calls[i]);
}

/* A handle made from cfg whose connection is a memory transport, as if
 * connected at T0. */
static redtls_async *mem_async_with(redtls_config *cfg, redtls__transport **tp)
{
    redtls_async *ac = NULL;
    assert_status(redtls_async_new(cfg, &ac), REDTLS_OK);
    ac->clock = fake_clock;
    fake_now = T0;
    assert_status(redtls__mem_transport(tp, REDTLS_E_COMMAND_TIMEOUT), REDTLS_OK);
    assert_status(redtls__conn_attach(ac->c, *tp, 0), REDTLS_OK);
    ac->up = 1;
    ac->tried = 1; /* as if connected by an attempt: reconnection is off */
    ac->last_read = T0;
    return ac;
}

/* The same with a plain configuration; command timeout 100 ms. */
static redtls_async *mem_async(redtls__transport **tp, redtls_config **cfgp)
{
    redtls_config *cfg = unit_plain_config();
    assert_status(redtls_config_set_command_timeout_ms(cfg, 100), REDTLS_OK);
    *cfgp = cfg;
    return mem_async_with(cfg, tp);
}

static void test_one_write_replies_in_order(void **state)
{
    (void)state;
    seen s = {.free_in = -1, .issue_in = -1};
    S = &s;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    for (int i = 0; i < 3; i++)
        get(ac, i);
    assert_int_equal(redtls_async_pending(ac), 3);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    assert_int_equal(redtls__mem_write_calls(t), 1);
    size_t len;
    const char *w = redtls__mem_written(t, &len);
    assert_int_equal(len, 3 * 21);
    assert_memory_equal(w, "*2\r\n$3\r\nGET\r\n$2\r\nk0\r\n", 21);
    unit_push(t, "$2\r\nv0\r\n$2\r\nv1\r\n");
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_int_equal(s.calls[0], 1);
    assert_int_equal(s.calls[1], 1);
    assert_int_equal(s.calls[2], 0);
    assert_string_equal(s.reply[0], "v0");
    assert_string_equal(s.reply[1], "v1");
    assert_int_equal(redtls_async_events(ac), REDTLS_ASYNC_READ);
    unit_push(t, "$2\r\nv2\r\n");
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_string_equal(s.reply[2], "v2");
    once_each(&s, 3);
    assert_int_equal(redtls_async_pending(ac), 0);
    redtls_async_free(ac);
    redtls_config_free(cfg);
}

/* A pass takes a bounded number of replies (the loop stays fair to other
 * handles) and asks to be called again at once: the rest may sit in the
 * TLS layer with the socket quiet, so waiting for readability could wait
 * for ever. */
static void test_many_replies_come_back_at_once(void **state)
{
    (void)state;
    seen s = {.free_in = -1, .issue_in = -1};
    S = &s;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    int counts[200] = {0};
    for (int i = 0; i < 200; i++)
        assert_status(redtls_async_command(ac, count_reply, &counts[i], "PING"), REDTLS_OK);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    for (int i = 0; i < 200; i++)
        unit_push(t, "+PONG\r\n");
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    size_t left = redtls_async_pending(ac);
    assert_true(left > 0 && left < 200);
    assert_int_equal(redtls_async_timeout_ms(ac), 0);
    for (int i = 0; i < 10 && redtls_async_pending(ac); i++)
        assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    assert_int_equal(redtls_async_pending(ac), 0);
    for (int i = 0; i < 200; i++)
        assert_int_equal(counts[i], 1);
    redtls_async_free(ac);
    redtls_config_free(cfg);
}

/* B and C time out in the middle of a pipeline; their replies come late
 * and are dropped; D, issued after, gets its own reply, never theirs. */
static void test_timeout_mid_pipeline(void **state)
{
    (void)state;
    seen s = {.free_in = -1, .issue_in = -1};
    S = &s;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    for (int i = 0; i < 3; i++)
        get(ac, i);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    fake_now = T0 + 50;
    unit_push(t, "$1\r\na\r\n");
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_string_equal(s.reply[0], "a");
    fake_now = T0 + 60;
    get(ac, 3);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    assert_int_equal(redtls_async_timeout_ms(ac), 40); /* B and C's deadline */
    fake_now = T0 + 100;
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    assert_int_equal(s.calls[1], 1);
    assert_int_equal(s.calls[2], 1);
    assert_status(s.st[1], REDTLS_E_COMMAND_TIMEOUT);
    assert_status(s.st[2], REDTLS_E_COMMAND_TIMEOUT);
    assert_int_equal(s.calls[3], 0);
    assert_true(redtls_async_is_connected(ac)); /* the server spoke 50 ms ago */
    unit_push(t, "$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n");
    fake_now = T0 + 110;
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_int_equal(s.calls[3], 1);
    assert_status(s.st[3], REDTLS_OK);
    assert_string_equal(s.reply[3], "d");
    once_each(&s, 4);
    redtls_async_free(ac);
    redtls_config_free(cfg);
}

/* A command issued from a reply's callback goes out in the same pass, in
 * one write with the others issued there; right after a write with
 * nothing else owed, the pass waits for the socket instead of reading. */
static void test_callback_commands_same_pass(void **state)
{
    (void)state;
    seen s = {.free_in = -1, .issue_in = 0, .issue_as = 1};
    S = &s;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    get(ac, 0);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    assert_int_equal(redtls__mem_write_calls(t), 1);
    unit_push(t, "$1\r\na\r\n");
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_int_equal(s.calls[0], 1);
    assert_int_equal(redtls__mem_write_calls(t), 2); /* 1 went out in that pass */
    size_t len;
    const char *w = redtls__mem_written(t, &len);
    assert_int_equal(len, 2 * 21);
    assert_memory_equal(w + 21, "*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n", 21);
    assert_int_equal(redtls_async_timeout_ms(ac), 100); /* 1's deadline: no pass wanted at once */
    unit_push(t, "$1\r\nb\r\n");
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_string_equal(s.reply[1], "b");
    once_each(&s, 2);
    redtls_async_free(ac);
    redtls_config_free(cfg);
}

/* A command framed behind one in flight and never written before the
 * connection broke was not sent: it is not reported as "may have run"
 * but waits for the next connection (here reconnection is off, so it
 * ends with REDTLS_E_STATE); the one in flight is OUTCOME_UNKNOWN. */
static void test_unwritten_command_not_unknown(void **state)
{
    (void)state;
    seen s = {.free_in = -1, .issue_in = 0, .issue_as = 2};
    S = &s;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    get(ac, 0);
    get(ac, 1);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    size_t len;
    (void)redtls__mem_written(t, &len);
    assert_int_equal(len, 2 * 21);
    /* 0's reply comes, its callback issues 2 (framed behind 1, which is
     * in flight), then the server closes before 2 is written (the end
     * closes t too, so its bytes cannot be looked at afterwards: 2 written
     * would be in flight and end OUTCOME_UNKNOWN, as 1 does). */
    unit_push(t, "$1\r\na\r\n");
    redtls__mem_set_end(t, REDTLS_E_EOF);
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_status(s.st[0], REDTLS_OK);
    assert_status(s.st[1], REDTLS_E_OUTCOME_UNKNOWN);
    assert_status(s.st[2], REDTLS_E_STATE);
    assert_contains(s.msg[2], "reconnection is off");
    once_each(&s, 3);
    redtls_async_free(ac);
    redtls_config_free(cfg);
}

/* Answers every GET kN written since *from with "vN". */
static void serve(redtls__transport *t, size_t *from)
{
    size_t len;
    const char *w = redtls__mem_written(t, &len);
    while (*from < len) {
        const char *k = strstr(w + *from, "GET\r\n$2\r\nk");
        assert_non_null(k);
        char rep[16];
        snprintf(rep, sizeof rep, "$2\r\nv%c\r\n", k[10]);
        unit_push(t, rep);
        *from = (size_t)(k + 13 - w);
    }
}

/* A command framed behind one in flight (from a callback, flags 0) and
 * never written before the break waits for the next connection: there it
 * goes out whole, and every callback gets its own reply. */
static void test_requeued_command_keeps_its_bytes(void **state)
{
    (void)state;
    seen s = {.free_in = -1, .issue_in = 0, .issue_as = 2};
    S = &s;
    redtls__transport *t, *t2;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    ac->c->cfg.reconnect = 1;           /* 2 waits for the next connection, */
    ac->c->next_attempt = T0 + 1000000; /* which the test makes by hand */
    get(ac, 0);
    get(ac, 1);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    unit_push(t, "$1\r\na\r\n");
    redtls__mem_set_end(t, REDTLS_E_EOF);
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_status(s.st[0], REDTLS_OK);
    assert_status(s.st[1], REDTLS_E_OUTCOME_UNKNOWN);
    assert_int_equal(s.calls[2], 0);
    assert_int_equal(redtls_async_pending(ac), 1);
    /* The next connection, made by hand. */
    assert_status(redtls__mem_transport(&t2, REDTLS_E_COMMAND_TIMEOUT), REDTLS_OK);
    assert_status(redtls__conn_attach(ac->c, t2, 0), REDTLS_OK);
    ac->up = 1;
    ac->last_read = fake_now;
    get(ac, 3);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    size_t from = 0;
    serve(t2, &from);
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_int_equal(s.calls[2], 1);
    assert_string_equal(s.reply[2], "v2");
    assert_string_equal(s.reply[3], "v3");
    size_t len;
    (void)redtls__mem_written(t2, &len);
    assert_int_equal(len, 2 * 21);
    once_each(&s, 4);
    redtls_async_free(ac);
    redtls_config_free(cfg);
}


/* A command issued between passes behind one in flight waits in the
 * queue; when the next pass comes after its deadline it ends with
 * COMMAND_TIMEOUT and is never written (it cannot run after its caller
 * was told it timed out). */
static void test_timed_out_unwritten_never_written(void **state)
{
    (void)state;
    seen s = {.free_in = -1, .issue_in = -1};
    S = &s;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    get(ac, 0);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    fake_now = T0 + 10;
    get(ac, 1); /* framed behind 0 */
    fake_now = T0 + 150; /* the loop comes late */
    unit_push(t, "$1\r\n"); /* the server is alive: part of 0's reply */
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_int_equal(s.calls[1], 1);
    assert_status(s.st[1], REDTLS_E_COMMAND_TIMEOUT);
    assert_contains(s.msg[1], "could not be written");
    size_t len;
    (void)redtls__mem_written(t, &len);
    assert_int_equal(len, 21); /* GET k1 never went out */
    redtls_async_free(ac);
    redtls_config_free(cfg);
}


/* A NOAUTH reply asks for a new AUTH before more commands go out: a
 * command framed by an earlier reply's callback of the same batch goes
 * back to the queue and out after the AUTH. */
static void test_framed_before_noauth_waits_for_auth(void **state)
{
    (void)state;
    seen s = {.free_in = -1, .issue_in = 0, .issue_as = 2};
    S = &s;
    redtls__transport *t;
    redtls_config *cfg = unit_plain_config();
    assert_status(redtls_config_set_command_timeout_ms(cfg, 100), REDTLS_OK);
    assert_status(redtls_config_set_token(cfg, "secret"), REDTLS_OK);
    redtls_async *ac = mem_async_with(cfg, &t);
    get(ac, 0);
    get(ac, 1);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    unit_push(t, "$1\r\na\r\n-NOAUTH Authentication required.\r\n");
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_int_equal(s.calls[1], 1);
    size_t len;
    const char *w = redtls__mem_written(t, &len);
    assert_int_equal(len, 2 * 21); /* GET k2 waits for the new AUTH */
    for (int i = 0; i < 3; i++)
        assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    w = redtls__mem_written(t, &len);
    assert_true(len > 2 * 21 + 14);
    assert_memory_equal(w + 2 * 21, "*2\r\n$4\r\nAUTH\r\n", 14);
    unit_push(t, "+OK\r\n");
    for (int i = 0; i < 3; i++)
        assert_status(redtls_async_process(ac, i ? 0 : REDTLS_ASYNC_READ), REDTLS_OK);
    w = redtls__mem_written(t, &len);
    assert_memory_equal(w + len - 21, "*2\r\n$3\r\nGET\r\n$2\r\nk2\r\n", 21);
    unit_push(t, "$1\r\nc\r\n");
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_string_equal(s.reply[2], "c");
    once_each(&s, 3);
    redtls_async_free(ac);
    redtls_config_free(cfg);
}

/* A command issued without a callback: its reply is dropped and it no
 * longer counts as pending once the reply is in (or it ended otherwise). */
static void test_null_callback(void **state)
{
    (void)state;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    assert_status(redtls_async_command(ac, NULL, NULL, "SET a b"), REDTLS_OK);
    assert_status(redtls_async_command(ac, NULL, NULL, "SET c d"), REDTLS_OK);
    assert_int_equal(redtls_async_pending(ac), 2);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    unit_push(t, "+OK\r\n");
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_int_equal(redtls_async_pending(ac), 1);
    fake_now = T0 + 100; /* the second one's deadline */
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    assert_int_equal(redtls_async_pending(ac), 0);
    redtls_async_free(ac);
    redtls_config_free(cfg);
}

/* A connection kept busy still re-authenticates with IAM when due: new
 * commands wait until the replies owed are in, then AUTH goes out, then
 * they do. */
static void test_iam_reauth_on_a_busy_connection(void **state)
{
    (void)state;
    seen s = {.free_in = -1, .issue_in = -1};
    S = &s;
    /* IAM needs TLS in the configuration; the memory transport stands in
     * for the connection. */
    redtls_config *cfg = NULL;
    assert_status(redtls_config_new(&cfg), REDTLS_OK);
    assert_status(redtls_config_set_reconnect(cfg, 0), REDTLS_OK);
    assert_status(redtls_config_set_command_timeout_ms(cfg, 5000), REDTLS_OK);
    assert_status(redtls_config_set_iam(cfg, "my-cache-01", "iam-user-1", "eu-west-1", 0), REDTLS_OK);
    assert_status(redtls_config_set_aws_credentials(cfg, "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                                    NULL),
                  REDTLS_OK);
    assert_status(redtls_config_set_iam_reauth_ms(cfg, 1000), REDTLS_OK);
    cfg->iam.clock = fake_clock;
    redtls__transport *t;
    redtls_async *ac = mem_async_with(cfg, &t);
    ac->c->iam.authed_ms = T0; /* as if AUTH was accepted at T0 */
    get(ac, 0);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    fake_now = T0 + 1000; /* re-AUTH due, 0 still in flight: a pass sees it */
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    get(ac, 1);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    size_t len;
    (void)redtls__mem_written(t, &len);
    assert_int_equal(len, 21); /* 1 held back */
    fake_now = T0 + 1010;
    unit_push(t, "$1\r\na\r\n");
    for (int i = 0; i < 3; i++)
        assert_status(redtls_async_process(ac, i ? 0 : REDTLS_ASYNC_READ), REDTLS_OK);
    assert_status(s.st[0], REDTLS_OK);
    const char *w = redtls__mem_written(t, &len);
    assert_true(len > 21 + 4);
    assert_memory_equal(w + 21, "*3\r\n$4\r\nAUTH\r\n", 14); /* AUTH next, GET k1 not yet */
    for (size_t i = 0; i + 2 <= len; i++)
        assert_false(w[i] == 'k' && w[i + 1] == '1'); /* GET k1 not written */
    unit_push(t, "+OK\r\n");
    for (int i = 0; i < 3; i++)
        assert_status(redtls_async_process(ac, i ? 0 : REDTLS_ASYNC_READ), REDTLS_OK);
    w = redtls__mem_written(t, &len);
    assert_true(len > 21 && memcmp(w + len - 21, "*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n", 21) == 0);
    assert_int_equal(ac->c->iam.authed_ms, T0 + 1010);
    unit_push(t, "$1\r\nb\r\n");
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_string_equal(s.reply[1], "b");
    once_each(&s, 2);
    redtls_async_free(ac);
    redtls_config_free(cfg);
}

/* A command after a long idle spell: the silence rule counts from when
 * its reply became owed, so the connection is not taken for dead. */
static void test_idle_then_command(void **state)
{
    (void)state;
    seen s = {.free_in = -1, .issue_in = -1};
    S = &s;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    fake_now = T0 + 10000;
    get(ac, 0);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    assert_true(redtls_async_is_connected(ac));
    fake_now = T0 + 10050;
    unit_push(t, "$1\r\nx\r\n");
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_status(s.st[0], REDTLS_OK);
    assert_string_equal(s.reply[0], "x");
    once_each(&s, 1);
    redtls_async_free(ac);
    redtls_config_free(cfg);
}

/* Replies owed and nothing from the server for a whole command timeout:
 * the command times out and the connection is closed. */
static void test_silent_server_closes(void **state)
{
    (void)state;
    seen s = {.free_in = -1, .issue_in = -1};
    S = &s;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    get(ac, 0);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    fake_now = T0 + 99;
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    assert_int_equal(s.calls[0], 0);
    assert_true(redtls_async_is_connected(ac));
    fake_now = T0 + 100;
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    assert_int_equal(s.calls[0], 1);
    assert_status(s.st[0], REDTLS_E_COMMAND_TIMEOUT);
    assert_false(redtls_async_is_connected(ac));
    assert_contains(redtls_async_errmsg(ac), "sent nothing for 100 ms");
    once_each(&s, 1);
    redtls_async_free(ac);
    redtls_config_free(cfg);
}

static void test_backpressure(void **state)
{
    (void)state;
    seen s = {.free_in = -1, .issue_in = -1};
    S = &s;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    assert_status(redtls_async_set_max_pending(ac, 2), REDTLS_OK);
    get(ac, 0);
    get(ac, 1);
    assert_status(redtls_async_command(ac, on_reply, (void *)(intptr_t)2, "GET x"), REDTLS_E_LIMIT);
    assert_contains(redtls_async_errmsg(ac), "2 commands are queued or in flight");
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    unit_push(t, "+OK\r\n");
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    get(ac, 2); /* room again */
    redtls_async_free(ac);
    assert_int_equal(s.calls[2], 1);
    assert_status(s.st[1], REDTLS_E_CLOSED);
    assert_status(s.st[2], REDTLS_E_CLOSED);
    once_each(&s, 3);
    redtls_config_free(cfg);
}

/* A callback issues a command; a later callback frees the handle: every
 * other command still owed is told REDTLS_E_CLOSED, once. */
static void test_reentrant_callbacks(void **state)
{
    (void)state;
    seen s = {.free_in = 3, .issue_in = 0, .issue_as = 3};
    S = &s;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    for (int i = 0; i < 3; i++)
        get(ac, i);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    unit_push(t, "$1\r\na\r\n");
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_int_equal(s.calls[0], 1);
    assert_int_equal(redtls_async_pending(ac), 3); /* 1, 2 and the new 3 */
    assert_status(redtls_async_process(ac, 0), REDTLS_OK); /* 3 goes out */
    unit_push(t, "$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n");
    /* 3's callback frees the handle in the middle of this pass. */
    assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    assert_string_equal(s.reply[1], "b");
    assert_string_equal(s.reply[2], "c");
    assert_string_equal(s.reply[3], "d");
    once_each(&s, 4);
    redtls_config_free(cfg);
}

/* Freeing with commands queued and in flight: each callback once, with
 * REDTLS_E_CLOSED; a command issued from such a callback is refused. */
static void test_free_ends_everything(void **state)
{
    (void)state;
    seen s = {.free_in = -1, .issue_in = -1};
    S = &s;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    get(ac, 0);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    get(ac, 1);
    redtls_async_free(ac);
    assert_status(s.st[0], REDTLS_E_CLOSED);
    assert_status(s.st[1], REDTLS_E_CLOSED);
    once_each(&s, 2);
    redtls_config_free(cfg);
}

/* A callback that closes the handle while deadlines are being handed out
 * (three in flight time out in the same pass), and one that frees it from
 * a callback run by close: each callback once, nothing touched after it
 * is gone (ASan and valgrind watch this test). */
static int closer_calls, freer_calls;
static void closer(redtls_async *ac, redtls_status st, struct redisReply *r, void *ud)
{
    (void)st;
    (void)ud;
    freeReplyObject(r);
    if (closer_calls++ == 0)
        redtls_async_close(ac);
}
static void freer(redtls_async *ac, redtls_status st, struct redisReply *r, void *ud)
{
    (void)ud;
    freeReplyObject(r);
    assert_status(st, REDTLS_E_CLOSED);
    if (freer_calls++ == 0)
        redtls_async_free(ac);
}

static void test_close_and_free_from_callbacks(void **state)
{
    (void)state;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    closer_calls = freer_calls = 0;
    for (int i = 0; i < 3; i++)
        assert_status(redtls_async_command(ac, closer, NULL, "GET a"), REDTLS_OK);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    fake_now = T0 + 100;
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    assert_int_equal(closer_calls, 3); /* one timed out, two closed */
    assert_false(redtls_async_is_connected(ac));
    assert_int_equal(redtls_async_pending(ac), 0);
    /* Usable again after close: new commands wait for a connection (none
     * can be made here: reconnection is off and nothing was asked). */
    for (int i = 0; i < 3; i++)
        assert_status(redtls_async_command(ac, freer, NULL, "GET b"), REDTLS_OK);
    redtls_async_close(ac); /* the first callback frees the handle */
    assert_int_equal(freer_calls, 3);
    redtls_config_free(cfg);
}

/* Hooks whose loop cannot take the interest (out of memory): what waits
 * on the socket ends with REDTLS_E_NOMEM instead of waiting for its
 * deadline; the hooks are asked again. */
static int watch_calls, watch_fail, timer_ms, detached;
static int h_watch(void *d, int fd, int ev)
{
    (void)d;
    (void)fd;
    (void)ev;
    watch_calls++;
    return watch_fail ? -1 : 0;
}
static void h_timer(void *d, int ms)
{
    (void)d;
    timer_ms = ms;
}
static void h_detach(void *d)
{
    (void)d;
    detached++;
}

static void test_hooks_watch_failure(void **state)
{
    (void)state;
    seen s = {.free_in = -1, .issue_in = -1};
    S = &s;
    redtls__transport *t;
    redtls_config *cfg;
    redtls_async *ac = mem_async(&t, &cfg);
    watch_calls = watch_fail = detached = 0;
    timer_ms = -2;
    redtls_async_hooks hooks = {NULL, h_watch, h_timer, h_detach};
    assert_status(redtls_async_attach(ac, &hooks), REDTLS_OK);
    assert_true(watch_calls >= 1); /* told at once */
    get(ac, 0);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    get(ac, 1); /* queued, not written yet */
    watch_fail = 1;
    /* Attached again (the old hooks' detach first): the new watch fails. */
    assert_status(redtls_async_attach(ac, &hooks), REDTLS_OK);
    assert_int_equal(detached, 1);
    assert_int_equal(timer_ms, 0); /* come back at once */
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    assert_int_equal(s.calls[0], 1);
    assert_status(s.st[0], REDTLS_E_OUTCOME_UNKNOWN);
    assert_contains(s.msg[0], "could not watch");
    assert_false(redtls_async_is_connected(ac));
    /* Reconnection is off: the queued command ends too. */
    assert_status(s.st[1], REDTLS_E_STATE);
    redtls_async_free(ac);
    assert_int_equal(detached, 2);
    once_each(&s, 2);
    redtls_config_free(cfg);
}

/* ---- with a real (Unix socket) server run by the test ---- */

static char dir[64];

static int group_setup(void **state)
{
    (void)state;
    unit_tmpdir(dir, sizeof dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unit_rmtree(dir);
    return 0;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(l >= 0);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(l, 4), 0);
    return l;
}

/* Reads one command's worth (n bytes) from the server side. */
static void server_expect(int fd, size_t n)
{
    char buf[512];
    size_t got = 0;
    while (got < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
        assert_int_equal(poll(&p, 1, 2000), 1);
        ssize_t k = recv(fd, buf + got, sizeof buf - got, 0);
        assert_true(k > 0);
        got += (size_t)k;
    }
    assert_int_equal(got, n);
}

/* Commands issued before the connection exists wait for it, then go out
 * together; a broken connection loses the one in flight (OUTCOME_UNKNOWN)
 * and resends the idempotent one once on a new connection. */
static void test_queued_before_connect_and_lost(void **state)
{
    (void)state;
    seen s = {.free_in = -1, .issue_in = -1};
    S = &s;
    char path[128];
    snprintf(path, sizeof path, "%s/a.sock", dir);
    int l = listen_unix(path);
    redtls_config *cfg = unit_plain_config();
    assert_status(redtls_config_set_unix_path(cfg, path), REDTLS_OK);
    assert_status(redtls_config_set_reconnect(cfg, 1), REDTLS_OK);
    assert_status(redtls_config_set_backoff(cfg, 10, 10), REDTLS_OK);
    redtls_async *ac = NULL;
    assert_status(redtls_async_new(cfg, &ac), REDTLS_OK);
    get(ac, 0);
    const char *argv[] = {"GET", "k1"};
    assert_status(redtls_async_command_argv(ac, REDTLS_CMD_IDEMPOTENT, 2, argv, NULL, on_reply, (void *)(intptr_t)1),
                  REDTLS_OK);
    assert_false(redtls_async_is_connected(ac));
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    int srv = accept(l, NULL, NULL);
    assert_true(srv >= 0);
    for (int i = 0; i < 20 && !redtls_async_is_connected(ac); i++)
        assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    assert_true(redtls_async_is_connected(ac));
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    server_expect(srv, 42); /* both GETs, one write */
    close(srv);             /* the server goes away with both in flight */
    for (int i = 0; i < 50 && s.calls[0] == 0; i++) {
        struct pollfd p = {.fd = redtls_async_fd(ac), .events = POLLIN, .revents = 0};
        (void)poll(&p, p.fd >= 0 ? 1 : 0, 50);
        assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    }
    assert_int_equal(s.calls[0], 1);
    assert_status(s.st[0], REDTLS_E_OUTCOME_UNKNOWN);
    assert_int_equal(s.calls[1], 0); /* resent on the next connection */
    srv = -1;
    for (int i = 0; i < 100 && srv < 0; i++) {
        assert_status(redtls_async_process(ac, 0), REDTLS_OK);
        struct pollfd p = {.fd = l, .events = POLLIN, .revents = 0};
        if (poll(&p, 1, 20) == 1)
            srv = accept(l, NULL, NULL);
    }
    assert_true(srv >= 0);
    for (int i = 0; i < 20 && !redtls_async_is_connected(ac); i++)
        assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    assert_status(redtls_async_process(ac, 0), REDTLS_OK);
    server_expect(srv, 21);
    assert_int_equal(send(srv, "$2\r\nv1\r\n", 8, 0), 8);
    for (int i = 0; i < 50 && s.calls[1] == 0; i++) {
        struct pollfd p = {.fd = redtls_async_fd(ac), .events = POLLIN, .revents = 0};
        (void)poll(&p, 1, 50);
        assert_status(redtls_async_process(ac, REDTLS_ASYNC_READ), REDTLS_OK);
    }
    assert_status(s.st[1], REDTLS_OK);
    assert_string_equal(s.reply[1], "v1");
    once_each(&s, 2);
    redtls_async_free(ac);
    redtls_config_free(cfg);
    close(srv);
    close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_write_replies_in_order),
        cmocka_unit_test(test_many_replies_come_back_at_once),
        cmocka_unit_test(test_timeout_mid_pipeline),
        cmocka_unit_test(test_silent_server_closes),
        cmocka_unit_test(test_idle_then_command),
        cmocka_unit_test(test_callback_commands_same_pass),
        cmocka_unit_test(test_null_callback),
        cmocka_unit_test(test_requeued_command_keeps_its_bytes),
        cmocka_unit_test(test_timed_out_unwritten_never_written),
        cmocka_unit_test(test_framed_before_noauth_waits_for_auth),
        cmocka_unit_test(test_iam_reauth_on_a_busy_connection),
        cmocka_unit_test(test_unwritten_command_not_unknown),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_reentrant_callbacks),
        cmocka_unit_test(test_free_ends_everything),
        cmocka_unit_test(test_close_and_free_from_callbacks),
        cmocka_unit_test(test_hooks_watch_failure),
        cmocka_unit_test(test_queued_before_connect_and_lost),
    };
    return cmocka_run_group_tests_name("async", tests, group_setup, group_teardown);
}

/* The cluster adapters against a real cluster, whatever the loop; see
 * adapter_cluster_live.h. */
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <redtls/async_cluster.h>

#include "adapter_cluster_live.h"
#include "lab.h"
#include "lab_allochook.h"
#include "lab_assert.h"
#include "lab_cluster.h"
#include "lab_cluster_client.h"
#include "lab_proxy.h"

#define LIVE_MAX 1100 /* commands one test may issue */
#define LIVE_CMD_TIMEOUT_MS 5000

static lab_cluster cl;
static char seeds[128]; /* node1's name and port */
/* For each slot, a hash tag that puts a key in it ("{adapter:N}"). */
static unsigned slot_tag[REDTLS_CLUSTER_SLOTS];

struct live;

/* One command's callback calls. */
struct lcmd {
    struct live *lv;
    int calls;
    redtls_status st;     /* of the last call */
    int type;             /* reply type (REDTLS_REPLY_*), or 0 */
    char str[64];         /* string, status and error replies (cut) */
    int is_get;
    char key[64];
    char value[48];
};

/* What a test holds; live_teardown frees what is left. */
struct live {
    void *loop;
    redtls_async_cluster *acl; /* NULL once freed */
    redtls_config *cfg;
    struct lcmd cmd[LIVE_MAX];
    size_t issued;
    size_t done;            /* callback calls, all commands */
    int get_after_set;      /* a SET's callback issues the GET of its key */
    size_t free_at;         /* the callback that makes done reach it frees the handle (0: none) */
    int attach_in_free;     /* a callback made by the free attaches the handle (once) */
    redtls_status attach_in_free_st;
    int connects;           /* connect callback calls */
    redtls_status connect_st;
    int free_in_connect;    /* the connect callback frees the handle */
};

static struct live live; /* one test at a time */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int live_group_setup(void **state)
{
    lab_cluster_opts o = lab_cluster_default_opts();
    unsigned filled = 0;
    char tag[32];

    (void)state;
    if (lab_init(170) != 0 || lab_certs(NULL) == NULL)
        return -1;
    o.replicas = 0;
    if (lab_cluster_start(&cl, &o) != 0)
        return -1;
    snprintf(seeds, sizeof(seeds), "%s:%u", cl.node[0].hostname, (unsigned)cl.node[0].srv.port);
    /* Tags are numbered from 1, so 0 means "none yet". */
    for (unsigned n = 1; filled < REDTLS_CLUSTER_SLOTS; n++) {
        int len = snprintf(tag, sizeof(tag), "adapter:%u", n);
        unsigned slot = redtls_cluster_key_slot(tag, (size_t)len);
        if (slot_tag[slot] == 0) {
            slot_tag[slot] = n;
            filled++;
        }
    }
    return 0;
}

int live_group_teardown(void **state)
{
    (void)state;
    lab_cluster_stop(&cl);
    return 0;
}

int live_setup(void **state)
{
    memset(&live, 0, sizeof(live));
    if ((live.loop = live_loop.new_loop()) == NULL)
        return -1;
    *state = &live;
    return 0;
}

/* Lets the loop run without waiting until it says it has nothing left
 * (libuv runs close callbacks in the turn after uv_close). */
static int loop_settles(struct live *lv)
{
    for (int i = 0; i < 10; i++) {
        if (live_loop.pass(lv->loop))
            return 1;
    }
    return 0;
}

int live_teardown(void **state)
{
    struct live *lv = *state;
    redtls_async_cluster_free(lv->acl);
    lv->acl = NULL;
    redtls_config_free(lv->cfg);
    assert_true(loop_settles(lv));
    assert_int_equal(live_loop.free_loop(lv->loop), 0);
    return 0;
}

/* A handle for seeds (NULL: the cluster's node 1) with that command
 * timeout, not attached yet. */
static void make_handle(struct live *lv, const char *s, unsigned timeout_ms)
{
    redtls_status st;
    lv->cfg = lab_cluster_client_config(&cl, NULL, NULL, timeout_ms);
    st = redtls_async_cluster_new(lv->cfg, s != NULL ? s : seeds, &lv->acl);
    lab_report_status(st, REDTLS_OK, "redtls_async_cluster_new", redtls_config_errmsg(lv->cfg), __FILE__, __LINE__);
    assert_int_equal(st, REDTLS_OK);
}

static void attach(struct live *lv)
{
    redtls_status st = live_loop.attach(lv->acl, lv->loop);
    lab_report_status(st, REDTLS_OK, "attach", redtls_async_cluster_errmsg(lv->acl), __FILE__, __LINE__);
    assert_int_equal(st, REDTLS_OK);
}

/* Turns the loop until done(lv) holds or ms have passed; 1 when it holds. */
static int run_until(struct live *lv, int (*done)(const struct live *), int ms)
{
    long long end = now_ms() + ms;
    for (;;) {
        live_loop.pass(lv->loop);
        if (done(lv))
            return 1;
        if (now_ms() >= end)
            return 0;
        poll(NULL, 0, 1);
    }
}

static int all_called(const struct live *lv)
{
    return lv->done >= lv->issued;
}

static int connected(const struct live *lv)
{
    return lv->connects > 0;
}

static int freed(const struct live *lv)
{
    return lv->acl == NULL;
}

/* Forgotten first: the callbacks the free makes see a freed handle. */
static void free_handle(struct live *lv)
{
    redtls_async_cluster *acl = lv->acl;
    lv->acl = NULL;
    redtls_async_cluster_free(acl);
}

static redtls_status issue(struct live *lv, size_t i);

static void on_reply(redtls_async_cluster *acl, redtls_status st, struct redisReply *reply, void *userdata)
{
    struct lcmd *c = userdata;
    struct live *lv = c->lv;
    size_t len = 0;
    const char *s;

    c->calls++;
    c->st = st;
    lv->done++;
    if (st == REDTLS_OK && reply != NULL) {
        c->type = (int)redtls_reply_type(reply);
        s = redtls_reply_str(reply, &len);
        if (s != NULL)
            snprintf(c->str, sizeof(c->str), "%.*s", (int)(len < sizeof(c->str) ? len : sizeof(c->str) - 1), s);
    }
    if (st != REDTLS_OK && reply != NULL)
        c->type = -1; /* a reply with a failure: checked below as a wrong type */
    redtls_reply_free(reply);
    if (st == REDTLS_E_CLOSED && lv->attach_in_free) {
        lv->attach_in_free = 0;
        lv->attach_in_free_st = live_loop.attach(acl, lv->loop);
    }
    if (lv->acl == NULL || acl != lv->acl)
        return;
    if (lv->free_at != 0 && lv->done == lv->free_at) {
        free_handle(lv);
        return;
    }
    if (lv->get_after_set && !c->is_get && st == REDTLS_OK && lv->issued < LIVE_MAX) {
        struct lcmd *g = &lv->cmd[lv->issued];
        memcpy(g->key, c->key, sizeof(g->key));
        memcpy(g->value, c->value, sizeof(g->value));
        g->is_get = 1;
        if (issue(lv, lv->issued) != REDTLS_OK)
            print_error("GET %s refused from a callback: %s\n", g->key, redtls_async_cluster_errmsg(acl));
    }
}

/* Issues lv->cmd[i] (key and value set; GET when is_get), i == issued. */
static redtls_status issue(struct live *lv, size_t i)
{
    struct lcmd *c = &lv->cmd[i];
    const char *argv[3];
    redtls_status st;

    assert_true(i == lv->issued && i < LIVE_MAX);
    c->lv = lv;
    argv[0] = c->is_get ? "GET" : "SET";
    argv[1] = c->key;
    argv[2] = c->value;
    st = redtls_async_cluster_command_argv(lv->acl, c->is_get ? REDTLS_CMD_IDEMPOTENT : 0, c->is_get ? 2 : 3, argv,
                                           NULL, on_reply, c);
    if (st == REDTLS_OK)
        lv->issued++;
    return st;
}

/* n SETs whose keys are spread evenly over the slots, from slot first on. */
static void issue_sets(struct live *lv, size_t n, unsigned first)
{
    for (size_t k = 0; k < n; k++) {
        size_t i = lv->issued;
        struct lcmd *c = &lv->cmd[i];
        unsigned slot = (unsigned)((first + k * REDTLS_CLUSTER_SLOTS / n) % REDTLS_CLUSTER_SLOTS);
        snprintf(c->key, sizeof(c->key), "{adapter:%u}:%s:%zu", slot_tag[slot], live_loop.name, i);
        snprintf(c->value, sizeof(c->value), "v-%s-%zu-%lld", live_loop.name, i, now_ms());
        c->is_get = 0;
        redtls_status st = issue(lv, i);
        lab_report_status(st, REDTLS_OK, "SET", redtls_async_cluster_errmsg(lv->acl), __FILE__, __LINE__);
        assert_int_equal(st, REDTLS_OK);
    }
}

/* How many of the commands issued ended with st. */
static size_t count_status(const struct live *lv, redtls_status st)
{
    size_t n = 0;
    for (size_t i = 0; i < lv->issued; i++) {
        if (lv->cmd[i].st == st)
            n++;
    }
    return n;
}

static void assert_each_called_once(const struct live *lv)
{
    int bad = 0;
    for (size_t i = 0; i < lv->issued; i++) {
        if (lv->cmd[i].calls != 1) {
            print_error("%s %s: callback called %d times\n", lv->cmd[i].is_get ? "GET" : "SET", lv->cmd[i].key,
                        lv->cmd[i].calls);
            bad = 1;
        }
    }
    assert_false(bad);
    assert_int_equal(lv->done, lv->issued);
}

/* SETs answered OK and GETs with the value their SET wrote. */
static void assert_replies_right(const struct live *lv)
{
    int bad = 0;
    for (size_t i = 0; i < lv->issued; i++) {
        const struct lcmd *c = &lv->cmd[i];
        const char *want = c->is_get ? c->value : "OK";
        int type = c->is_get ? REDTLS_REPLY_STRING : REDTLS_REPLY_STATUS;
        if (c->st != REDTLS_OK || c->type != type || strcmp(c->str, want) != 0) {
            print_error("%s %s: %s, reply type %d '%s' (want '%s')\n", c->is_get ? "GET" : "SET", c->key,
                        redtls_strerror(c->st), c->type, c->str, want);
            bad = 1;
        }
    }
    assert_false(bad);
}

static void on_connect(redtls_async_cluster *acl, redtls_status st, void *userdata)
{
    struct live *lv = userdata;
    lv->connects++;
    lv->connect_st = st;
    if (lv->free_in_connect && acl == lv->acl)
        free_handle(lv);
}

/* Runs the loop a little longer: no callback may come twice. */
static void linger(struct live *lv, int ms)
{
    size_t done = lv->done;
    int connects = lv->connects;
    long long end = now_ms() + ms;
    while (now_ms() < end) {
        live_loop.pass(lv->loop);
        poll(NULL, 0, 1);
    }
    assert_int_equal(lv->done, done);
    assert_int_equal(lv->connects, connects);
}

/* Whether allocations can be made to fail here: not under the sanitizers
 * nor under valgrind, whose malloc replaces the hook's. */
static int alloc_hook_works(void)
{
    void *(*volatile get)(size_t) = malloc; /* not elided by the compiler */
    void *p;
    if (!LAB_ALLOC_HOOK)
        return 0;
    lab_alloc_arm(1);
    p = get(16);
    lab_alloc_disarm();
    free(p);
    return p == NULL;
}

void test_live_attach_refused(void **state)
{
    struct live *lv = *state;
    make_handle(lv, NULL, LIVE_CMD_TIMEOUT_MS);
    assert_int_equal(live_loop.attach(NULL, lv->loop), REDTLS_E_INVALID);
    assert_int_equal(live_loop.attach(lv->acl, NULL), REDTLS_E_INVALID);
    /* Nothing was made: the loop has nothing to do. */
    assert_true(live_loop.pass(lv->loop));
    /* The handle is still free to attach. */
    attach(lv);
    assert_int_equal(redtls_async_cluster_connect(lv->acl, on_connect, lv), REDTLS_OK);
    assert_true(run_until(lv, connected, 10000));
    assert_int_equal(lv->connect_st, REDTLS_OK);
}

/* Each allocation of the attach failing in turn, on a handle with no node
 * connection yet: REDTLS_E_NOMEM, nothing left allocated or in the loop;
 * then it attaches and works. */
void test_live_attach_nomem(void **state)
{
    struct live *lv = *state;
    if (!alloc_hook_works())
        skip();
    make_handle(lv, NULL, LIVE_CMD_TIMEOUT_MS);
    for (long n = 1;; n++) {
        lab_alloc_arm(n);
        redtls_status st = live_loop.attach(lv->acl, lv->loop);
        long calls = lab_alloc_calls();
        if (n > calls) {
            lab_alloc_disarm();
            assert_int_equal(st, REDTLS_OK);
            break;
        }
        /* What the failed attach made is gone once the loop has turned
         * (libuv frees in close callbacks). */
        int settled = loop_settles(lv);
        long live_blocks = lab_alloc_live();
        lab_alloc_disarm();
        lab_report_status(st, REDTLS_E_NOMEM, "attach", redtls_async_cluster_errmsg(lv->acl), __FILE__, __LINE__);
        assert_int_equal(st, REDTLS_E_NOMEM);
        assert_true(settled);
        assert_int_equal(live_blocks, 0);
    }
    issue_sets(lv, 30, 0);
    assert_true(run_until(lv, all_called, 10000));
    assert_each_called_once(lv);
    assert_replies_right(lv);
}

/* The same on a connected handle: the attach hands each node connection
 * to the loop again, and each of those allocations fails in turn too.
 * After every failure the handle is left with no hooks and nothing of the
 * failed adapter; attached at last, it works. (An allocation made for a
 * node's descriptor may fail without failing the attach: the node's
 * watch hook says so and its connection deals with it, see
 * redtls_async_attach.) */
void test_live_attach_nomem_with_nodes(void **state)
{
    struct live *lv = *state;
    long n, refused = 0;

    if (!alloc_hook_works())
        skip();
    make_handle(lv, NULL, LIVE_CMD_TIMEOUT_MS);
    attach(lv);
    assert_int_equal(redtls_async_cluster_connect(lv->acl, on_connect, lv), REDTLS_OK);
    assert_true(run_until(lv, connected, 10000));
    assert_int_equal(lv->connect_st, REDTLS_OK);
    for (n = 1;; n++) {
        lab_alloc_arm(n);
        redtls_status st = live_loop.attach(lv->acl, lv->loop);
        long calls = lab_alloc_calls();
        if (n > calls) {
            lab_alloc_disarm();
            assert_int_equal(st, REDTLS_OK);
            break;
        }
        for (int i = 0; i < 10; i++)
            live_loop.pass(lv->loop);
        /* Node adapters replaced by the attach were made before counting,
         * so their release counts below zero. */
        long live_blocks = lab_alloc_live();
        lab_alloc_disarm();
        if (st == REDTLS_OK)
            continue;
        lab_report_status(st, REDTLS_E_NOMEM, "attach", redtls_async_cluster_errmsg(lv->acl), __FILE__, __LINE__);
        assert_int_equal(st, REDTLS_E_NOMEM);
        assert_true(live_blocks <= 0);
        refused++;
        /* Nothing is left that the handle could call: taking its hooks out
         * calls none. */
        assert_int_equal(redtls_async_cluster_attach(lv->acl, NULL), REDTLS_OK);
    }
    assert_true(refused >= 2); /* the state, and at least one node's adapter */
    issue_sets(lv, 30, 0);
    assert_true(run_until(lv, all_called, 10000));
    assert_each_called_once(lv);
    assert_replies_right(lv);
}

void test_live_connect(void **state)
{
    struct live *lv = *state;
    make_handle(lv, NULL, LIVE_CMD_TIMEOUT_MS);
    attach(lv);
    assert_int_equal(redtls_async_cluster_connect(lv->acl, on_connect, lv), REDTLS_OK);
    assert_false(redtls_async_cluster_is_ready(lv->acl));
    assert_true(run_until(lv, connected, 10000));
    lab_report_status(lv->connect_st, REDTLS_OK, "connect callback", redtls_async_cluster_errmsg(lv->acl), __FILE__,
                      __LINE__);
    assert_int_equal(lv->connect_st, REDTLS_OK);
    assert_true(redtls_async_cluster_is_ready(lv->acl));
    assert_int_equal(redtls_async_cluster_node_count(lv->acl), 3);
    linger(lv, 50);
    assert_int_equal(redtls_async_cluster_connect(lv->acl, on_connect, lv), REDTLS_E_STATE);
    /* Freed outside callbacks, connected: the connect callback, already
     * called, is not called again. */
    free_handle(lv);
    assert_int_equal(lv->connects, 1);
    assert_true(loop_settles(lv));
}

/* 500 SETs spread evenly over the 16,384 slots, each SET's callback
 * issuing the GET of its key: 1,000 callbacks, each once, with the right
 * replies; and the keys are on the masters that serve their slots. */
void test_live_all_slots(void **state)
{
    struct live *lv = *state;
    int seen[LAB_CLUSTER_MAX_NODES] = {0};
    size_t masters = 0;

    make_handle(lv, NULL, LIVE_CMD_TIMEOUT_MS);
    attach(lv);
    assert_int_equal(redtls_async_cluster_connect(lv->acl, on_connect, lv), REDTLS_OK);
    assert_true(run_until(lv, connected, 10000));
    assert_int_equal(lv->connect_st, REDTLS_OK);
    lv->get_after_set = 1;
    issue_sets(lv, 500, 7);
    assert_true(run_until(lv, all_called, 20000));
    assert_int_equal(lv->issued, 1000);
    linger(lv, 50);
    assert_each_called_once(lv);
    assert_replies_right(lv);
    assert_int_equal(redtls_async_cluster_pending(lv->acl), 0);

    /* Read back on the masters themselves, one key in ten. */
    for (size_t i = 0; i < 500; i += 10) {
        const struct lcmd *c = &lv->cmd[i];
        unsigned slot = redtls_cluster_key_slot(c->key, strlen(c->key));
        int m = lab_cluster_master_of(&cl, slot);
        redisReply *r = NULL;
        assert_true(m >= 0);
        assert_int_equal(lab_cluster_admin(&cl, (size_t)m, &r, "GET %s", c->key), 0);
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_string_equal(r->str, c->value);
        freeReplyObject(r);
        if (!seen[m]++)
            masters++;
    }
    assert_int_equal(masters, 3);
}

/* Commands issued on a handle never told to connect: they start the work
 * themselves and wait for the slot map, within their deadlines. */
void test_live_before_connect(void **state)
{
    struct live *lv = *state;
    make_handle(lv, NULL, LIVE_CMD_TIMEOUT_MS);
    attach(lv);
    issue_sets(lv, 100, 11);
    assert_false(redtls_async_cluster_is_ready(lv->acl));
    assert_true(run_until(lv, all_called, 10000));
    linger(lv, 50);
    assert_each_called_once(lv);
    assert_replies_right(lv);
    assert_true(redtls_async_cluster_is_ready(lv->acl));
}

/* The 100th callback frees the handle with 200 commands still owed:
 * each of those is called once, with REDTLS_E_CLOSED, from inside the
 * free; and what the adapters made leaves the loop by itself. The first
 * of those callbacks tries to attach the handle being freed: the library
 * refuses, and nothing of that attempt is left either. */
void test_live_free_from_reply(void **state)
{
    struct live *lv = *state;
    make_handle(lv, NULL, LIVE_CMD_TIMEOUT_MS);
    attach(lv);
    assert_int_equal(redtls_async_cluster_connect(lv->acl, on_connect, lv), REDTLS_OK);
    assert_true(run_until(lv, connected, 10000));
    assert_int_equal(lv->connect_st, REDTLS_OK);
    lv->free_at = 100;
    lv->attach_in_free = 1;
    lv->attach_in_free_st = REDTLS_OK;
    issue_sets(lv, 300, 3);
    assert_true(run_until(lv, freed, 10000));
    assert_each_called_once(lv);
    assert_int_equal(count_status(lv, REDTLS_OK), 100);
    assert_int_equal(count_status(lv, REDTLS_E_CLOSED), 200);
    assert_int_equal(lv->attach_in_free, 0);
    assert_int_equal(lv->attach_in_free_st, REDTLS_E_INVALID);
    assert_true(loop_settles(lv));
}

/* The connect callback frees the handle, commands waiting for the map:
 * they end with REDTLS_E_CLOSED, once each. */
void test_live_free_from_connect(void **state)
{
    struct live *lv = *state;
    make_handle(lv, NULL, LIVE_CMD_TIMEOUT_MS);
    attach(lv);
    lv->free_in_connect = 1;
    assert_int_equal(redtls_async_cluster_connect(lv->acl, on_connect, lv), REDTLS_OK);
    issue_sets(lv, 50, 5);
    assert_true(run_until(lv, freed, 10000));
    assert_int_equal(lv->connects, 1);
    assert_int_equal(lv->connect_st, REDTLS_OK);
    assert_each_called_once(lv);
    assert_int_equal(count_status(lv, REDTLS_E_CLOSED), 50);
    assert_true(loop_settles(lv));
}

/* A loopback port nothing listens on. */
static unsigned closed_port(void)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &len), 0);
    close(s);
    return ntohs(sin.sin_port);
}

/* The only seed refuses connections, so no node connection holds the
 * commands: the handle does, and only its own timer, run by the adapter,
 * can end them at their deadline. */
void test_live_deadline_by_timer(void **state)
{
    struct live *lv = *state;
    char s[96];
    long long start, took;

    snprintf(s, sizeof(s), "%s:%u", cl.node[0].hostname, closed_port());
    make_handle(lv, s, 300);
    attach(lv);
    start = now_ms();
    assert_int_equal(redtls_async_cluster_connect(lv->acl, on_connect, lv), REDTLS_OK);
    issue_sets(lv, 10, 0);
    assert_true(run_until(lv, all_called, 5000));
    took = now_ms() - start;
    assert_true(took >= 300 - live_loop.clock_tick_ms);
    assert_true(took < 3000);
    assert_each_called_once(lv);
    /* Never sent: each reports why (async_cluster.h, Deadlines). */
    assert_int_equal(count_status(lv, REDTLS_E_CONNECT), 10);
    assert_int_equal(lv->connects, 1);
    lab_report_status(lv->connect_st, REDTLS_E_CONNECT, "connect callback", redtls_async_cluster_errmsg(lv->acl),
                      __FILE__, __LINE__);
    assert_int_equal(lv->connect_st, REDTLS_E_CONNECT);
    assert_false(redtls_async_cluster_is_ready(lv->acl));
}

static lab_proxy proxy;

/* The proxy took three connections: two retries. */
static int retried(const struct live *lv)
{
    (void)lv;
    return lab_proxy_get_stats(&proxy).accepted >= 3;
}

/* The only seed, behind a proxy, cuts every connection at first: commands
 * wait. The handle's refreshes, run by its timer 50 ms apart, keep trying;
 * once the proxy lets connections through, one finds the map and the
 * commands complete. */
void test_live_retry_by_timer(void **state)
{
    struct live *lv = *state;
    lab_fault cut;
    char s[96];

    memset(&proxy, 0, sizeof(proxy));
    memset(&cut, 0, sizeof(cut));
    assert_int_equal(lab_proxy_start(&proxy, cl.node[0].srv.port), 0);
    cut.kind = LAB_FAULT_CUT;
    cut.dir = LAB_C2S;
    cut.after = 0;
    cut.rst = 1;
    lab_proxy_set(&proxy, &cut);
    snprintf(s, sizeof(s), "%s:%u", cl.node[0].hostname, (unsigned)proxy.port);
    lv->cfg = lab_cluster_client_config(&cl, NULL, NULL, 10000);
    assert_cfg_status(lv->cfg, redtls_config_set_backoff(lv->cfg, 20, 100), REDTLS_OK);
    assert_int_equal(redtls_async_cluster_new(lv->cfg, s, &lv->acl), REDTLS_OK);
    assert_int_equal(redtls_async_cluster_set_refresh(lv->acl, 30000, 50), REDTLS_OK);
    attach(lv);
    lv->get_after_set = 1;
    issue_sets(lv, 20, 100);
    if (!run_until(lv, retried, 5000)) {
        print_error("the proxy took %llu connection(s) in 5 s: no retry\n", lab_proxy_get_stats(&proxy).accepted);
        fail();
    }
    assert_int_equal(lv->done, 0);
    assert_false(redtls_async_cluster_is_ready(lv->acl));
    lab_proxy_set(&proxy, NULL);
    assert_true(run_until(lv, all_called, 10000));
    linger(lv, 50);
    assert_each_called_once(lv);
    assert_int_equal(lv->issued, 40);
    assert_replies_right(lv);
    lab_proxy_stop(&proxy);
}

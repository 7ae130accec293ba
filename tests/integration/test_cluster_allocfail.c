/* Allocation failures in the cluster client, blocking and asynchronous,
 * against a real 3-master TLS cluster: slot-map fetch and install,
 * routing, a MOVED redirection, split and merged multi-key commands, and a
 * cross-node pipeline (for the asynchronous API: all of it in flight at
 * once on the built-in loop, each callback exactly once). Connection set-up
 * is covered by integration.allocfail, so here the failure is placed after
 * the allocations of the set-up phase: for N = 1, 2, ... the (S + N)th
 * allocation of each run fails, S being what set-up took in a clean run,
 * until a run completes without reaching it. Every run must end with a
 * status (never a crash) and leave no allocation behind. The allocator hook
 * is tests/harness/lab_allochook.c; sanitizer builds only check that this
 * builds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <redtls/async_cluster.h>
#include <redtls/redtls.h>

#include "lab.h"
#include "lab_allochook.h"
#include "lab_assert.h"
#include "lab_cluster.h"

#define TOKEN "cluster-allocfail-Token-77e1"

static lab_cluster lc;
static char seeds[256];

static int group_setup(void **state)
{
    (void)state;
    if (lab_init(170) != 0 || lab_certs(NULL) == NULL)
        return -1;
    lab_cluster_opts o = lab_cluster_default_opts();
    o.replicas = 0;
    o.password = TOKEN;
    if (lab_cluster_start(&lc, &o) != 0)
        return -1;
    snprintf(seeds, sizeof seeds, "%s:%u", lc.node[0].hostname, (unsigned)lc.node[0].srv.port);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    lab_cluster_stop(&lc);
    return 0;
}

/* Set-up: configuration, handle, first slot map, one connection per master
 * (a PING-like GET per master), and a stale slot so that the work phase
 * meets a MOVED. */
static redtls_status make_config(redtls_config **cfg)
{
    redtls_status st = redtls_config_new(cfg);
    if (st == REDTLS_OK)
        st = redtls_config_set_ca_file(*cfg, lab_cert("ca.crt"));
    if (st == REDTLS_OK)
        st = redtls_config_set_token(*cfg, TOKEN);
    for (size_t i = 0; st == REDTLS_OK && i < lc.n; i++)
        st = redtls_config_add_resolve(*cfg, lc.node[i].hostname, 0, "127.0.0.1");
    if (st == REDTLS_OK)
        st = redtls_config_set_command_timeout_ms(*cfg, 2000);
    return st;
}

static redtls_status setup(redtls_config **cfg, redtls_cluster **cl)
{
    redtls_status st = make_config(cfg);
    if (st == REDTLS_OK)
        st = redtls_cluster_new(*cfg, seeds, cl);
    if (st == REDTLS_OK)
        st = redtls_cluster_set_refresh(*cl, 0, 0);
    if (st == REDTLS_OK)
        st = redtls_cluster_connect(*cl);
    /* Keys on each master: {a} 15495, {b} 3300, {c} 7365. */
    static const char *const warm[] = {"{a}", "{b}", "{c}"};
    for (size_t i = 0; st == REDTLS_OK && i < 3; i++) {
        const char *argv[] = {"GET", warm[i]};
        struct redisReply *r = NULL;
        st = redtls_cluster_command_argv(*cl, 0, 2, argv, NULL, &r);
        redtls_reply_free(r);
    }
    return st;
}

/* The work phase. Returns the first failing status; its message is in
 * first_msg, or else in the handle's errmsg. */
static char first_msg[512];
static redtls_status work(redtls_cluster *cl)
{
    first_msg[0] = '\0';
    struct redisReply *r = NULL;
    redtls_status st = redtls_cluster_refresh(cl);
    const char *mset[] = {"MSET", "{a}1", "x", "{b}1", "y", "{c}1", "z", "{a}2", "w"};
    if (st == REDTLS_OK)
        st = redtls_cluster_command_argv(cl, 0, 9, mset, NULL, &r);
    redtls_reply_free(r);
    r = NULL;
    const char *mget[] = {"MGET", "{c}1", "{a}1", "{b}1", "{a}2", "{x}"};
    if (st == REDTLS_OK)
        st = redtls_cluster_command_argv(cl, 0, 6, mget, NULL, &r);
    if (st == REDTLS_OK && (redtls_reply_len(r) != 5 || redtls_reply_type(redtls_reply_element(r, 4)) != REDTLS_REPLY_NIL))
        st = REDTLS_E_PROTOCOL;
    redtls_reply_free(r);
    r = NULL;
    for (int i = 0; st == REDTLS_OK && i < 9; i++) {
        char key[16];
        snprintf(key, sizeof key, "{%c}n", 'a' + i % 3);
        const char *argv[] = {"INCR", key};
        st = redtls_cluster_append_argv(cl, 0, 2, argv, NULL);
    }
    if (st != REDTLS_OK)
        snprintf(first_msg, sizeof first_msg, "%s", redtls_cluster_errmsg(cl));
    /* Every queued reply is read (a failed one too), so the handle is idle
     * again; the first failure is the run's, with its message. */
    for (int i = 0; i < 9 && redtls_cluster_pending(cl) > 0; i++) {
        redtls_status s = redtls_cluster_get_reply(cl, &r);
        if (st == REDTLS_OK && s != REDTLS_OK) {
            st = s;
            snprintf(first_msg, sizeof first_msg, "%s", redtls_cluster_errmsg(cl));
        }
        redtls_reply_free(r);
        r = NULL;
    }
    if (st != REDTLS_OK && first_msg[0])
        return st;
    const char *del[] = {"DEL", "{a}1", "{b}1", "{c}1", "{a}2"};
    if (st == REDTLS_OK)
        st = redtls_cluster_command_argv(cl, 0, 5, del, NULL, &r);
    redtls_reply_free(r);
    return st;
}

/* ---- the asynchronous API ---- */

typedef struct async_run {
    redtls_async_cluster *acl;
    int calls[32];      /* per command: callbacks seen */
    redtls_status st[32];
    int issued;
    redtls_status first;
    char first_msg[512];
} async_run;

static async_run *the_run;

static void on_cmd(redtls_async_cluster *acl, redtls_status st, struct redisReply *r, void *ud)
{
    size_t i = (size_t)(uintptr_t)ud;
    async_run *ar = the_run;
    ar->calls[i]++;
    ar->st[i] = st;
    if (st != REDTLS_OK && ar->first == REDTLS_OK) {
        ar->first = st;
        snprintf(ar->first_msg, sizeof ar->first_msg, "%s", redtls_async_cluster_errmsg(acl));
    }
    redtls_reply_free(r);
}

static void on_ready(redtls_async_cluster *acl, redtls_status st, void *ud)
{
    (void)acl;
    *(redtls_status *)ud = st;
}

static redtls_status async_issue(async_run *ar, int argc, const char **argv)
{
    int i = ar->issued;
    redtls_status st = redtls_async_cluster_command_argv(ar->acl, 0, argc, argv, NULL, on_cmd, (void *)(uintptr_t)i);
    if (st == REDTLS_OK)
        ar->issued++;
    return st;
}

static redtls_status async_setup(redtls_config **cfg, async_run *ar)
{
    redtls_status st = make_config(cfg);
    if (st == REDTLS_OK)
        st = redtls_async_cluster_new(*cfg, seeds, &ar->acl);
    if (st == REDTLS_OK)
        st = redtls_async_cluster_set_refresh(ar->acl, 0, 0);
    redtls_status ready = REDTLS_E_STATE;
    if (st == REDTLS_OK)
        st = redtls_async_cluster_connect(ar->acl, on_ready, &ready);
    if (st == REDTLS_OK)
        st = redtls_async_cluster_run(ar->acl, 5000);
    if (st == REDTLS_OK)
        st = ready;
    static const char *const warm[] = {"{a}", "{b}", "{c}"};
    for (size_t i = 0; st == REDTLS_OK && i < 3; i++) {
        const char *argv[] = {"GET", warm[i]};
        st = async_issue(ar, 2, argv);
    }
    if (st == REDTLS_OK)
        st = redtls_async_cluster_run(ar->acl, 5000);
    if (st == REDTLS_OK)
        st = ar->first;
    return st;
}

/* The work phase: everything issued at once, then the loop runs until
 * every callback came. */
static redtls_status async_work(async_run *ar)
{
    int before = ar->issued;
    redtls_status st = redtls_async_cluster_refresh(ar->acl);
    const char *mset[] = {"MSET", "{a}1", "x", "{b}1", "y", "{c}1", "z", "{a}2", "w"};
    if (st == REDTLS_OK)
        st = async_issue(ar, 9, mset);
    const char *mget[] = {"MGET", "{c}1", "{a}1", "{b}1", "{a}2", "{x}"};
    if (st == REDTLS_OK)
        st = async_issue(ar, 6, mget);
    for (int i = 0; st == REDTLS_OK && i < 9; i++) {
        char key[16];
        snprintf(key, sizeof key, "{%c}n", 'a' + i % 3);
        const char *argv[] = {"INCR", key};
        st = async_issue(ar, 2, argv);
    }
    const char *del[] = {"DEL", "{a}1", "{b}1", "{c}1", "{a}2"};
    if (st == REDTLS_OK)
        st = async_issue(ar, 5, del);
    if (st != REDTLS_OK && ar->first == REDTLS_OK) {
        ar->first = st;
        snprintf(ar->first_msg, sizeof ar->first_msg, "%s", redtls_async_cluster_errmsg(ar->acl));
    }
    redtls_status rst = redtls_async_cluster_run(ar->acl, 10000);
    /* Exactly once each, even when the run failed somewhere. */
    for (int i = before; i < ar->issued; i++)
        if (ar->calls[i] != 1)
            fail_msg("command %d: %d callbacks", i, ar->calls[i]);
    if (rst != REDTLS_OK)
        fail_msg("the loop did not end: %s", redtls_strerror(rst));
    return ar->first;
}

/* One run: set-up (never failed), then the work phase with its nth
 * allocation failing (0: none), then everything freed. *made: allocations
 * the work phase attempted; *leaked: blocks left behind by the whole run. */
static redtls_status run(int async_api, long n, char *why, size_t whylen, long *setup_allocs, long *made,
                         long *leaked)
{
    redtls_config *cfg = NULL;
    redtls_cluster *cl = NULL;
    async_run ar;
    memset(&ar, 0, sizeof ar);
    the_run = &ar;
    why[0] = '\0';
    lab_alloc_arm(0);
    redtls_status st = async_api ? async_setup(&cfg, &ar) : setup(&cfg, &cl);
    *setup_allocs = lab_alloc_calls();
    long live_setup = lab_alloc_live();
    if (st != REDTLS_OK) {
        snprintf(why, whylen, "set-up failed: %s",
                 async_api ? redtls_async_cluster_errmsg(ar.acl) : cl ? redtls_cluster_errmsg(cl) : "");
        *made = 0;
    } else {
        lab_alloc_arm(n);
        st = async_api ? async_work(&ar) : work(cl);
        *made = lab_alloc_calls();
        if (st != REDTLS_OK)
            snprintf(why, whylen, "%s",
                     async_api ? ar.first_msg : first_msg[0] ? first_msg : redtls_cluster_errmsg(cl));
    }
    /* Freeing the handle and the configuration also releases what set-up
     * made (live_setup blocks), which the work phase's count did not see. */
    redtls_cluster_free(cl);
    redtls_async_cluster_free(ar.acl);
    redtls_config_free(cfg);
    OPENSSL_thread_stop();
    lab_alloc_disarm();
    *leaked = lab_alloc_live() + live_setup;
    return st;
}

static void allocation_failures(int async_api)
{
#if !LAB_ALLOC_HOOK
    (void)run;
    (void)async_api;
    skip();
#else
    char why[512];
    long setup_allocs = 0, made = 0, leaked = 0;
    /* Warm-up: process-wide OpenSSL tables, resolver state. */
    assert_int_equal(run(async_api, 0, why, sizeof why, &setup_allocs, &made, &leaked), REDTLS_OK);
    long by_status[REDTLS_E_CLUSTER_TOPOLOGY + 1] = {0};
    long total = 0, retried = 0;
    for (long n = 1;; n++) {
        redtls_status st = run(async_api, n, why, sizeof why, &setup_allocs, &made, &leaked);
        /* A failure can send a run down a path no earlier run took, where
         * OpenSSL fills process-wide caches (algorithm fetches) that live
         * until exit. Those are filled once; a real leak comes back when
         * the same allocation fails again. */
        if (leaked != 0) {
            retried++;
            st = run(async_api, n, why, sizeof why, &setup_allocs, &made, &leaked);
        }
        if (leaked != 0)
            fail_msg("work allocation %ld failed: %ld allocations leaked (status %s: %s)", n, leaked,
                     redtls_strerror(st), why);
        if (made < n) {
            assert_int_equal(st, REDTLS_OK);
            total = made;
            break;
        }
        unsigned idx = (unsigned)st;
        if (idx > (unsigned)REDTLS_E_CLUSTER_TOPOLOGY) {
            fail_msg("allocation %ld: unknown status %u", n, idx);
            return;
        }
        by_status[idx]++;
        if (st != REDTLS_OK && why[0] == '\0')
            fail_msg("allocation %ld: status %s without a message", n, redtls_strerror(st));
    }
    print_message("%s: %ld allocations in the cluster work phase (refresh, MSET/MGET split over 3 masters, "
                  "9-command cross-node pipeline, DEL); set-up took %ld; failing each work allocation in turn gave:\n",
                  async_api ? "asynchronous" : "blocking", total, setup_allocs);
    for (int i = 0; i <= REDTLS_E_CLUSTER_TOPOLOGY; i++)
        if (by_status[i])
            print_message("  %-50s %ld\n", redtls_strerror((redtls_status)i), by_status[i]);
    print_message("no crash, no leak (%ld runs repeated after OpenSSL filled a process-wide cache)\n", retried);
    assert_true(total > 50);
    assert_true(by_status[REDTLS_E_NOMEM] > 0);
#endif
}

static void test_cluster_allocation_failures(void **state)
{
    (void)state;
    allocation_failures(0);
}

static void test_async_cluster_allocation_failures(void **state)
{
    (void)state;
    allocation_failures(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster_allocation_failures),
        cmocka_unit_test(test_async_cluster_allocation_failures),
    };
    return cmocka_run_group_tests_name("cluster_allocfail", tests, group_setup, group_teardown);
}

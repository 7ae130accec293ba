/* Allocation failures along the whole path: config, connect (DNS, TCP,
 * TLS handshake with verification, AUTH, SELECT, SETNAME), a command and a
 * pipeline, against a real TLS redis-server. For N = 1, 2, ... the Nth
 * allocation of the process fails (redtls's own, OpenSSL's and hiredis's
 * alike), until a run completes without reaching N. Every run must end with
 * a status (REDTLS_E_NOMEM where redtls itself could not allocate), never a
 * crash, and leave no allocation behind.
 *
 * The allocator hook is this test program's own malloc family, which the
 * dynamic linker prefers over libc's for every library in the process; the
 * library itself has no test hook and no global state. Sanitizer builds
 * replace malloc themselves, so there the test only checks it was built. */
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
#include <redtls/redtls.h>

#include "lab.h"
#include "lab_allochook.h"
#include "lab_assert.h"

#define TOKEN "allocfail-Token-3e9d1c"

static lab_server redis;

static int group_setup(void **state)
{
    (void)state;
    return lab_init_redis(85, &redis, &(lab_redis_opts){.tls = 1, .password = TOKEN});
}

static int group_teardown(void **state)
{
    (void)state;
    lab_stop(&redis);
    return 0;
}

/* The scenario. Returns the first failing status (REDTLS_OK when it all
 * worked); frees everything it made on every path. */
static redtls_status scenario(char *why, size_t whylen)
{
    redtls_config *cfg = NULL;
    redtls_conn *conn = NULL;
    struct redisReply *r = NULL;
    redtls_status st = redtls_config_new(&cfg);
    char url[256];
    /* An IP literal: glibc's name-service modules keep allocations of their
     * own when one fails, which is not redtls's to fix. */
    snprintf(url, sizeof url, "rediss://:%s@127.0.0.1:%u/2?cacert=%s&name=allocfail&timeout=2000", TOKEN,
             (unsigned)redis.port, lab_cert("ca.crt"));
    if (st == REDTLS_OK)
        st = redtls_config_set_url(cfg, url);
    if (st == REDTLS_OK)
        st = redtls_config_set_reconnect(cfg, 0);
    if (st == REDTLS_OK)
        st = redtls_conn_new(cfg, &conn);
    if (st != REDTLS_OK && !cfg) /* no handle yet to hold a message */
        snprintf(why, whylen, "redtls_config_new: %s", redtls_strerror(st));
    else if (st != REDTLS_OK)
        snprintf(why, whylen, "config: %s", redtls_config_errmsg(cfg));
    if (st == REDTLS_OK)
        st = redtls_conn_connect(conn);
    if (st == REDTLS_OK)
        st = redtls_conn_command(conn, &r, "SET %s %s", "allocfail:k", "v");
    redtls_reply_free(r);
    r = NULL;
    for (int i = 0; st == REDTLS_OK && i < 8; i++)
        st = redtls_conn_append(conn, "INCR %s", "allocfail:n");
    for (int i = 0; st == REDTLS_OK && i < 8; i++) {
        st = redtls_conn_get_reply(conn, &r);
        redtls_reply_free(r);
        r = NULL;
    }
    if (st != REDTLS_OK && conn)
        snprintf(why, whylen, "%s", redtls_conn_errmsg(conn));
    redtls_conn_free(conn);
    redtls_config_free(cfg);
    return st;
}

static void test_every_allocation_may_fail(void **state)
{
    (void)state;
#if !LAB_ALLOC_HOOK
    (void)scenario;
    skip();
#else
    char why[512];
    /* Warm-up: OpenSSL and the resolver set up their process-wide tables
     * on first use; those are not ours to free. */
    assert_int_equal(scenario(why, sizeof why), REDTLS_OK);
    OPENSSL_thread_stop();
    long total = 0, by_status[REDTLS_E_UNAVAILABLE + 1] = {0};
    for (long n = 1;; n++) {
        why[0] = '\0';
        lab_alloc_arm(n);
        redtls_status st = scenario(why, sizeof why);
        /* OpenSSL keeps this thread's error queue (and the buffers it
         * reuses) until told the thread is done; release it inside the
         * count so only real leaks remain. */
        OPENSSL_thread_stop();
        lab_alloc_disarm();
        long made = lab_alloc_calls();
        if (lab_alloc_live() != 0)
            fail_msg("allocation %ld failed: %ld allocations leaked (status %s: %s)", n, lab_alloc_live(),
                     redtls_strerror(st),
                     why);
        if (made < n) {
            /* The run finished before reaching allocation n: done. */
            assert_int_equal(st, REDTLS_OK);
            total = made;
            break;
        }
        /* OK: the failure was absorbed (OpenSSL's optional caches, a session
         * copy that is only an optimisation). Otherwise a status that names
         * what failed: NOMEM where redtls allocates, and whatever OpenSSL
         * turns an allocation failure inside a handshake into. */
        unsigned idx = (unsigned)st;
        if (idx > (unsigned)REDTLS_E_UNAVAILABLE) {
            fail_msg("allocation %ld: unknown status %u", n, idx);
            return;
        }
        by_status[idx]++;
        if (st != REDTLS_OK && why[0] == '\0')
            fail_msg("allocation %ld: status %s without a message", n, redtls_strerror(st));
    }
    print_message("%ld allocations on the path (connect, AUTH, SELECT, SETNAME, SET, 8-command pipeline); "
                  "failing each one in turn gave:\n",
                  total);
    for (int i = 0; i <= REDTLS_E_UNAVAILABLE; i++)
        if (by_status[i])
            print_message("  %-50s %ld\n", redtls_strerror((redtls_status)i), by_status[i]);
    print_message("no crash, no leak\n");
    assert_true(total > 100);
    assert_true(by_status[REDTLS_E_NOMEM] > 0);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_may_fail),
    };
    return cmocka_run_group_tests_name("allocfail", tests, group_setup, group_teardown);
}

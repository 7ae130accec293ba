/* The asynchronous cluster client (redtls/async_cluster.h) proving who it
 * is and checking who the nodes are, on its built-in loop, against the
 * lab's TLS Redis Cluster and clusters of the tests' own
 * (tests/harness/lab_async_cluster_case.h):
 *   - token rotation over every node with commands flowing, and a live
 *     update the servers refuse;
 *   - a node presenting another node's certificate, a wildcard certificate
 *     with IP endpoints, and IP endpoints verified by announced names.
 * Every test checks that each callback ran exactly once.
 * REDTLS_TEST_FILTER: a cmocka name pattern (e.g. "*token*"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <redtls/async_cluster.h>
#include <redtls/redtls.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_async_cluster.h"
#include "lab_async_cluster_case.h"
#include "lab_cluster.h"
#include "lab_cluster_client.h"

/* ----- 6. token rotation -------------------------------------------------------- */

static int auth_refreshed, token_switched;
static char refreshed_detail[256];
static void on_event(void *ud, redtls_event_type type, const char *detail)
{
    (void)ud;
    if (type == REDTLS_EVENT_AUTH_REFRESHED) {
        auth_refreshed++;
        snprintf(refreshed_detail, sizeof refreshed_detail, "%s", detail != NULL ? detail : "");
    } else if (type == REDTLS_EVENT_AUTH_TOKEN_SWITCHED) {
        token_switched++;
    }
}

/* Runs the flow until n more re-authentications were reported (or 5 s). */
static int flow_until_refreshed(int before, int n)
{
    long long end = lab_now_ms() + 5000;
    while (auth_refreshed < before + n && lab_now_ms() < end)
        lab_acl_flow_run(&T.flow, 20);
    return auth_refreshed - before;
}

/* Old token, both, new token, every step of it on the nodes and in the
 * handle (redtls_async_cluster_set_tokens with two tokens, then one, each
 * with REDTLS_REAUTH_NOW) while INCRs flow over every master, then every
 * connection killed so the new token alone must open them again: no
 * command fails, every INCR is counted. */
static void test_token_rotation(void **state)
{
    (void)state;
    redtls_config *cfg = lab_cluster_client_config(&lc, TOKEN_OLD, NULL, 8000);
    assert_cfg_status(cfg, redtls_config_set_event_callback(cfg, on_event, NULL), REDTLS_OK);
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, seed_of(&lc, 1), &T.acl), REDTLS_OK);
    redtls_config_free(cfg);
    redtls_async_cluster *acl = T.acl;
    auth_refreshed = token_switched = 0;
    assert_int_equal(lab_acl_flow_init(&T.flow, acl, LAB_ACL_FLOW_INCR, 0, 64, 256, "rot", NULL, 0), 0);
    assert_int_equal(lab_acl_flow_reset(&T.flow, 10000), 0);
    lab_acl_flow_start(&T.flow);
    lab_acl_flow_run(&T.flow, 300);
    long long ops0 = T.flow.ops;

    assert_int_equal(redtls_async_cluster_set_tokens(acl, "", NULL, 0), REDTLS_E_INVALID);
    assert_int_equal(redtls_async_cluster_set_tokens(acl, TOKEN_NEW, "", 0), REDTLS_E_INVALID);

    /* The client first: both tokens, the old one preferred. */
    assert_acl_status(acl, redtls_async_cluster_set_tokens(acl, TOKEN_OLD, TOKEN_NEW, REDTLS_REAUTH_NOW), REDTLS_OK);
    int r1 = flow_until_refreshed(auth_refreshed, 3);
    /* The servers: both. */
    T.restore_password = 1;
    assert_int_equal(lab_cluster_admin_all(&lc, "ACL SETUSER default >%s", TOKEN_NEW), 0);
    lab_acl_flow_run(&T.flow, 200);
    /* The client: the new one preferred. */
    assert_acl_status(acl, redtls_async_cluster_set_tokens(acl, TOKEN_NEW, TOKEN_OLD, REDTLS_REAUTH_NOW), REDTLS_OK);
    int r2 = flow_until_refreshed(auth_refreshed, 3);
    /* The servers: the new one only. */
    assert_int_equal(lab_cluster_admin_all(&lc, "ACL SETUSER default <%s", TOKEN_OLD), 0);
    lab_acl_flow_run(&T.flow, 200);
    /* The client: the new one only. */
    assert_acl_status(acl, redtls_async_cluster_set_tokens(acl, TOKEN_NEW, NULL, REDTLS_REAUTH_NOW), REDTLS_OK);
    int r3 = flow_until_refreshed(auth_refreshed, 3);
    long long ops1 = T.flow.ops;
    /* Every connection closed by the servers: new ones must authenticate
     * with the new token alone. Paused first, so nothing is lost in
     * flight (that is the failover tests' matter). */
    assert_int_equal(lab_acl_flow_pause(&T.flow, 10000), 0);
    assert_int_equal(lab_cluster_admin_all(&lc, "CLIENT KILL USER default"), 0);
    lab_acl_flow_resume(&T.flow);
    lab_acl_flow_run(&T.flow, 500);
    assert_int_equal(lab_acl_flow_drain(&T.flow, 10000), 0);
    long long lost = 0, extra = 0;
    assert_int_equal(lab_acl_flow_verify(&T.flow, "rotation", &lost, &extra), 0);
    print_message("rotation over 3 masters: %lld INCRs (%lld before the first update, %lld after the kill); "
                  "re-authentications per update: %d, %d, %d (last: \"%s\"); token switches %d\n",
                  T.flow.ok, ops0, T.flow.ops - ops1, r1, r2, r3, refreshed_detail, token_switched);
    assert_int_equal(T.flow.failed, 0);
    assert_int_equal(T.flow.unknown, 0);
    assert_int_equal(T.flow.timeouts, 0);
    assert_int_equal(T.flow.refused, 0);
    assert_int_equal(lost, 0);
    assert_int_equal(extra, 0);
    /* Each live update re-authenticated every open master connection while
     * commands kept flowing. */
    assert_true(r1 >= 3 && r2 >= 3 && r3 >= 3);
    /* Commands went on flowing after the kill. */
    assert_true(T.flow.ops - ops1 > 100);
    /* The new token was preferred: nothing to switch. */
    assert_int_equal(token_switched, 0);
}

/* A live update to a token the servers refuse: each re-AUTH fails, and,
 * as with redtls_conn_set_tokens, the connections stay open and
 * authenticated as before, so the commands flowing are not affected. */
static void test_token_refused_keeps_connections(void **state)
{
    (void)state;
    redtls_config *cfg = lab_cluster_client_config(&lc, TOKEN_OLD, NULL, 8000);
    assert_cfg_status(cfg, redtls_config_set_event_callback(cfg, on_event, NULL), REDTLS_OK);
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, seed_of(&lc, 2), &T.acl), REDTLS_OK);
    redtls_config_free(cfg);
    auth_refreshed = token_switched = 0;
    assert_int_equal(lab_acl_flow_init(&T.flow, T.acl, LAB_ACL_FLOW_INCR, 0, 64, 256, "refused", NULL, 0), 0);
    assert_int_equal(lab_acl_flow_reset(&T.flow, 10000), 0);
    lab_acl_flow_start(&T.flow);
    lab_acl_flow_run(&T.flow, 300);
    long long ops0 = T.flow.ops;
    redtls_status st = redtls_async_cluster_set_tokens(T.acl, "not-the-password-0a1b2c", NULL, REDTLS_REAUTH_NOW);
    lab_acl_flow_run(&T.flow, 700);
    long long ops1 = T.flow.ops;
    assert_int_equal(lab_acl_flow_drain(&T.flow, 10000), 0);
    print_message("refused live update: set_tokens %s; %lld commands after it: %lld acknowledged, %lld failed, "
                  "%lld outcome unknown (first failure: %s); %d re-authentications reported\n",
                  redtls_strerror(st), ops1 - ops0, T.flow.ok, T.flow.failed, T.flow.unknown, T.flow.first_error,
                  auth_refreshed);
    assert_int_equal(T.flow.failed, 0);
    assert_int_equal(T.flow.unknown, 0);
    long long lost = 0, extra = 0;
    assert_int_equal(lab_acl_flow_verify(&T.flow, "refused token", &lost, &extra), 0);
    assert_int_equal(T.flow.failed, 0);
    assert_int_equal(T.flow.unknown, 0);
    assert_int_equal(T.flow.timeouts, 0);
    assert_int_equal(lost, 0);
    assert_int_equal(extra, 0);
    assert_true(ops1 - ops0 > 100);
    assert_int_equal(auth_refreshed, 0);
}

/* ----- 5. per-node verification ----------------------------------------------------- */

/* A key hashing to slot s ("t<N>"). */
static void tag_for_slot(unsigned s, char *out, size_t cap)
{
    for (unsigned t = 0;; t++) {
        int n = snprintf(out, cap, "t%u", t);
        if (redtls_cluster_key_slot(out, (size_t)n) == s)
            return;
    }
}

static void test_impostor_node(void **state)
{
    (void)state;
    lab_cluster_opts o = lab_cluster_default_opts();
    o.replicas = 0;
    o.password = TOKEN_OLD;
    o.bad_cert_node = 2;
    assert_int_equal(lab_cluster_start(&T.extra, &o), 0);
    static signed char owner[LAB_CLUSTER_SLOTS];
    load_owners(&T.extra, 0, owner);
    T.acl = new_acl(&T.extra, TOKEN_OLD, NULL, 3000);
    new_tally(256);
    assert_acl_status(T.acl, redtls_async_cluster_connect(T.acl, lab_acl_on_connect, &T.conn), REDTLS_OK);
    for (int round = 0; round < 2; round++) {
        size_t base = T.t->issued;
        for (unsigned s = 0; s < LAB_CLUSTER_SLOTS; s += 512) {
            char tag[16];
            tag_for_slot(s, tag, sizeof tag);
            const char *argv[] = {"SET", tag, "v"};
            size_t id;
            assert_acl_status(T.acl, lab_acl_issue_argv(T.t, T.acl, 0, 3, argv, &id), REDTLS_OK);
            T.t->cmd[id].tag = s;
        }
        run_all(T.acl);
        int ok = 0, refused = 0;
        for (size_t i = base; i < T.t->issued; i++) {
            const lab_acl_cmd *c = cmd_of(i);
            if (owner[c->tag] == 1) {
                assert_cmd(i, REDTLS_E_TLS_HOSTNAME);
                assert_contains(c->msg, "node2.cluster.test");
                refused++;
            } else {
                assert_cmd_str(i, "OK");
                ok++;
            }
        }
        print_message("round %d: node2 with node1's certificate: %d commands refused (REDTLS_E_TLS_HOSTNAME), "
                      "%d served by the others\n",
                      round + 1, refused, ok);
        assert_true(refused > 0 && ok > 0);
    }
    assert_int_equal(T.conn.calls, 1);
    assert_acl_status(T.acl, T.conn.st, REDTLS_OK);

    /* The impostor as the only seed: the first pass fails with its
     * verification status. */
    redtls_config *cfg = lab_cluster_client_config(&T.extra, TOKEN_OLD, NULL, 3000);
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, seed_of(&T.extra, 1), &T.acl2), REDTLS_OK);
    redtls_config_free(cfg);
    assert_acl_status(T.acl2, redtls_async_cluster_connect(T.acl2, lab_acl_on_connect, &T.conn2), REDTLS_OK);
    size_t id;
    issue_ok(T.acl2, 0, "GET impostor:k", &id);
    long long t0 = lab_now_ms();
    redtls_status st = redtls_async_cluster_run(T.acl2, 5000);
    long long dt = lab_now_ms() - t0;
    const lab_acl_cmd *c = cmd_of(id);
    print_message("impostor as the only seed: connect %s (%s); GET %s after %lld ms; run() %s after %lld ms\n",
                  redtls_strerror(T.conn2.st), T.conn2.msg, redtls_strerror(c->st), c->done_ms - c->issued_ms,
                  redtls_strerror(st), dt);
    /* Waiting would not help: the command ends with the verification
     * status, long before its deadline. */
    assert_cmd(id, REDTLS_E_TLS_HOSTNAME);
    assert_contains(c->msg, "node2.cluster.test");
    assert_true(c->done_ms - c->issued_ms < 1500);
    assert_acl_status(T.acl2, st, REDTLS_OK);
    assert_int_equal(T.conn2.calls, 1);
    assert_int_equal(T.conn2.st, REDTLS_E_TLS_HOSTNAME);
    assert_contains(T.conn2.msg, "node2.cluster.test");
    assert_int_equal(redtls_async_cluster_is_ready(T.acl2), 0);
    assert_tally("impostor");
}

/* One wildcard certificate, IP endpoints: refused without a name to check
 * (the certificate has no IP address), served with one. */
static void test_wildcard_ip_endpoints(void **state)
{
    (void)state;
    lab_cluster_opts o = lab_cluster_default_opts();
    o.replicas = 0;
    o.password = TOKEN_OLD;
    o.wildcard_cert = 1;
    o.announce_ips = 1;
    assert_int_equal(lab_cluster_start(&T.extra, &o), 0);
    new_tally(512);
    char seeds[64];
    snprintf(seeds, sizeof seeds, "127.0.0.1:%u", (unsigned)T.extra.node[0].srv.port);
    redtls_config *cfg = lab_cluster_client_config(&T.extra, TOKEN_OLD, NULL, 3000);
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, seeds, &T.acl2), REDTLS_OK);
    assert_acl_status(T.acl2, redtls_async_cluster_connect(T.acl2, lab_acl_on_connect, &T.conn2), REDTLS_OK);
    long long end = lab_now_ms() + 5000;
    while (T.conn2.calls == 0 && lab_now_ms() < end)
        (void)redtls_async_cluster_run(T.acl2, 50);
    assert_int_equal(T.conn2.calls, 1);
    assert_int_equal(T.conn2.st, REDTLS_E_TLS_HOSTNAME);

    assert_cfg_status(cfg, redtls_config_set_verify_name(cfg, "node.cluster.test"), REDTLS_OK);
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, seeds, &T.acl), REDTLS_OK);
    redtls_config_free(cfg);
    for (unsigned i = 0; i < 300; i++) {
        char key[16];
        snprintf(key, sizeof key, "w%u", i);
        const char *argv[] = {"SET", key, "v"};
        assert_acl_status(T.acl, lab_acl_issue_argv(T.t, T.acl, 0, 3, argv, NULL), REDTLS_OK);
    }
    run_all(T.acl);
    for (size_t i = 0; i < 300; i++)
        assert_cmd_str(i, "OK");
    assert_int_equal(redtls_async_cluster_node_count(T.acl), 3);
    for (size_t i = 0; i < 3; i++)
        assert_contains(redtls_async_cluster_node_name(T.acl, i), "127.0.0.1:");
    assert_tally("wildcard, IP endpoints");
}

/* IP endpoints with one certificate per node: each verified by the host
 * name it announces next to its IP, with no configuration. */
static void test_ip_endpoints_named(void **state)
{
    (void)state;
    lab_cluster_opts o = lab_cluster_default_opts();
    o.replicas = 0;
    o.password = TOKEN_OLD;
    o.announce_ips = 1;
    assert_int_equal(lab_cluster_start(&T.extra, &o), 0);
    new_tally(512);
    T.acl = new_acl(&T.extra, TOKEN_OLD, NULL, 3000);
    for (unsigned i = 0; i < 300; i++) {
        char key[16];
        snprintf(key, sizeof key, "m%u", i);
        const char *argv[] = {"SET", key, "v"};
        assert_acl_status(T.acl, lab_acl_issue_argv(T.t, T.acl, 0, 3, argv, NULL), REDTLS_OK);
    }
    run_all(T.acl);
    for (size_t i = 0; i < 300; i++)
        assert_cmd_str(i, "OK");
    assert_int_equal(redtls_async_cluster_node_count(T.acl), 3);
    assert_contains(redtls_async_cluster_node_name(T.acl, 0), "127.0.0.1:");
    assert_tally("IP endpoints, named");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_token_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_refused_keeps_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_impostor_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wildcard_ip_endpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ip_endpoints_named, setup, teardown),
    };
    return run_group("integration.async_cluster_auth", tests, sizeof tests / sizeof tests[0]);
}

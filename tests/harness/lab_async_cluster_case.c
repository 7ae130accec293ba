/* The fixture shared by the integration.async_cluster* programs that use
 * the lab cluster (lab_async_cluster_case.h). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Long enough that a node stopped for a second is never marked failing
 * (a failover in the middle of the slow-node test would change its
 * meaning). */
#define NODE_TIMEOUT_MS 5000

lab_cluster lc;
char slot_key[LAB_CLUSTER_SLOTS][16];
lab_acl_case T;
int refused_called;

static void find_slot_keys(void)
{
    size_t found = 0;
    static unsigned char have[LAB_CLUSTER_SLOTS];
    for (unsigned i = 0; found < LAB_CLUSTER_SLOTS; i++) {
        char k[16];
        int n = snprintf(k, sizeof k, "k%u", i);
        unsigned s = redtls_cluster_key_slot(k, (size_t)n);
        if (!have[s]) {
            have[s] = 1;
            memcpy(slot_key[s], k, (size_t)n + 1);
            found++;
        }
    }
}

int group_setup(void **state)
{
    (void)state;
    if (lab_init(85) != 0 || lab_certs(NULL) == NULL)
        return -1;
    find_slot_keys();
    lab_cluster_opts o = lab_cluster_default_opts();
    o.password = TOKEN_OLD;
    o.node_timeout_ms = NODE_TIMEOUT_MS;
    if (lab_cluster_start(&lc, &o) != 0)
        return -1;
    print_message("cluster of %zu TLS nodes up in %lld ms\n", lc.n, lc.start_ms);
    return 0;
}

int group_teardown(void **state)
{
    (void)state;
    lab_cluster_stop(&lc);
    return 0;
}

int run_group(const char *name, const struct CMUnitTest *tests, size_t n)
{
    const char *filter = getenv("REDTLS_TEST_FILTER");
    if (filter != NULL && filter[0] != '\0')
        cmocka_set_test_filter(filter);
    return _cmocka_run_group_tests(name, tests, n, group_setup, group_teardown);
}

int setup(void **state)
{
    (void)state;
    memset(&T, 0, sizeof T);
    T.srv.listen_fd = -1;
    refused_called = 0;
    return 0;
}

int teardown(void **state)
{
    (void)state;
    if (T.stopped > 0)
        lab_signal(T.stopped, SIGCONT);
    redtls_async_cluster_free(T.acl);
    redtls_async_cluster_free(T.acl2);
    lab_acl_flow_free(&T.flow);
    lab_acl_tally_free(T.t);
    lab_stop(&T.srv);
    lab_cluster_stop(&T.extra);
    if (T.restore_password &&
        lab_cluster_admin_all(&lc, "ACL SETUSER default resetpass >%s", TOKEN_OLD) != 0)
        return -1;
    memset(&T, 0, sizeof T);
    return 0;
}

static char seed_buf[256];
const char *seed_of(const lab_cluster *c, size_t i)
{
    snprintf(seed_buf, sizeof seed_buf, "%s:%u", c->node[i].hostname, (unsigned)c->node[i].srv.port);
    return seed_buf;
}

redtls_async_cluster *new_acl(const lab_cluster *c, const char *token, const char *alt, unsigned timeout_ms)
{
    redtls_config *cfg = lab_cluster_client_config(c, token, alt, timeout_ms);
    redtls_async_cluster *acl = NULL;
    assert_cfg_status(cfg, redtls_async_cluster_new(cfg, seed_of(c, 0), &acl), REDTLS_OK);
    redtls_config_free(cfg);
    assert_non_null(acl);
    return acl;
}

void new_tally(size_t cap)
{
    T.t = lab_acl_tally_new(cap);
    assert_non_null(T.t);
    T.conn.tally = T.t;
    T.conn2.tally = T.t;
}

void run_all(redtls_async_cluster *acl)
{
    if (!lab_acl_run_all(acl, T.t, HANG_MS)) {
        print_error("%zu callbacks still owed after %d ms; pending %zu\n", lab_acl_tally_owed(T.t), HANG_MS,
                    redtls_async_cluster_pending(acl));
        fail();
    }
}

void issue_ok(redtls_async_cluster *acl, unsigned flags, const char *line, size_t *id)
{
    assert_acl_status(acl, lab_acl_issue(T.t, acl, flags, line, id), REDTLS_OK);
}

const lab_acl_cmd *cmd_of(size_t id)
{
    assert_true(id < T.t->issued);
    return &T.t->cmd[id];
}

void assert_cmd(size_t id, redtls_status want)
{
    const lab_acl_cmd *c = cmd_of(id);
    if (c->calls != 1 || c->st != want) {
        print_error("command %zu: %d calls, status %s (%s), expected %s\n", id, c->calls, redtls_strerror(c->st),
                    c->msg, redtls_strerror(want));
        fail();
    }
}

void assert_cmd_str(size_t id, const char *want)
{
    const lab_acl_cmd *c = cmd_of(id);
    assert_cmd(id, REDTLS_OK);
    if ((c->type != REDIS_REPLY_STRING && c->type != REDIS_REPLY_STATUS) || strcmp(c->str, want) != 0) {
        print_error("command %zu: reply type %d \"%s\", expected \"%s\"\n", id, c->type, c->str, want);
        fail();
    }
}

void assert_cmd_int(size_t id, long long want)
{
    const lab_acl_cmd *c = cmd_of(id);
    assert_cmd(id, REDTLS_OK);
    if (c->type != REDIS_REPLY_INTEGER || c->integer != want) {
        print_error("command %zu: reply type %d %lld \"%s\", expected %lld\n", id, c->type, c->integer, c->str,
                    want);
        fail();
    }
}

void assert_tally(const char *what)
{
    assert_int_equal(lab_acl_tally_check(T.t, what), 0);
    assert_int_equal(lab_acl_tally_owed(T.t), 0);
}

void never_cb(redtls_async_cluster *acl, redtls_status st, struct redisReply *r, void *ud)
{
    (void)acl;
    (void)st;
    (void)ud;
    refused_called++;
    redtls_reply_free(r);
}

void load_owners(lab_cluster *c, size_t from, signed char *owner)
{
    redisReply *r = NULL;
    memset(owner, -1, LAB_CLUSTER_SLOTS);
    assert_int_equal(lab_cluster_admin(c, from, &r, "CLUSTER SLOTS"), 0);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    for (size_t k = 0; k < r->elements; k++) {
        const redisReply *e = r->element[k];
        int idx = lab_cluster_index_of(c, e->element[2]->element[2]->str);
        assert_true(idx >= 0);
        for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++)
            owner[s] = (signed char)idx;
    }
    freeReplyObject(r);
}

/* lib/cluster/topology.c: CLUSTER SLOTS replies, valid and invalid, given
 * as RESP text and parsed by the limited reader. */
#include "unit_util.h"

#include "topology.h"

static redisReply *resp(const char *text)
{
    redtls__reader rd;
    redtls__limits l = {1000, 4096, 1 << 20};
    char err[REDTLS__ERRMSG_MAX];
    redisReply *r = NULL;
    assert_status(redtls__reader_init(&rd, &l), REDTLS_OK);
    assert_status(redtls__reader_feed(&rd, text, strlen(text), err), REDTLS_OK);
    assert_status(redtls__reader_get(&rd, &r, err), REDTLS_OK);
    assert_non_null(r);
    redtls__reader_free(&rd);
    return r;
}

/* One node entry [host, port, id] for a one-letter host. */
#define NODE(host1, port) "*3\r\n$1\r\n" host1 "\r\n:" port "\r\n$2\r\nid\r\n"

static redtls_status parse(const char *text, const char *asked, redtls__topology **t, char *err)
{
    redisReply *r = resp(text);
    redtls_status st = redtls__topology_parse(r, asked, t, err);
    freeReplyObject(r);
    return st;
}

static void test_three_masters_with_replicas(void **state)
{
    (void)state;
    /* Out of order, as servers send them; replicas shared between ranges
     * are one node each. */
    const char *text = "*4\r\n"
                       "*4\r\n:5461\r\n:10922\r\n*3\r\n$4\r\nn2.x\r\n:7002\r\n$2\r\nb1\r\n"
                       "*3\r\n$4\r\nn5.x\r\n:7005\r\n$2\r\nb2\r\n"
                       "*4\r\n:0\r\n:5460\r\n*3\r\n$4\r\nn1.x\r\n:7001\r\n$2\r\na1\r\n"
                       "*3\r\n$4\r\nn4.x\r\n:7004\r\n$2\r\na2\r\n"
                       "*3\r\n:10923\r\n:16000\r\n*3\r\n$4\r\nn3.x\r\n:7003\r\n$2\r\nc1\r\n"
                       "*3\r\n:16001\r\n:16383\r\n*3\r\n$4\r\nn3.x\r\n:7003\r\n$2\r\nc1\r\n";
    redtls__topology *t = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(parse(text, "seed.x", &t, err), REDTLS_OK);
    assert_int_equal(t->nnodes, 5);
    assert_int_equal(t->nranges, 4);
    assert_int_equal(t->covered, 16384);
    assert_int_equal(t->ranges[0].start, 0);
    assert_string_equal(t->nodes[redtls__topology_master(t, 0)].host, "n1.x");
    assert_string_equal(t->nodes[redtls__topology_master(t, 5460)].host, "n1.x");
    assert_string_equal(t->nodes[redtls__topology_master(t, 5461)].host, "n2.x");
    assert_int_equal(t->nodes[redtls__topology_master(t, 16383)].port, 7003);
    assert_int_equal(redtls__topology_master(t, 16000), redtls__topology_master(t, 16001));
    assert_int_equal(t->ranges[0].nreplicas, 1);
    assert_string_equal(t->nodes[t->ranges[0].replicas[0]].host, "n4.x");
    assert_string_equal(t->nodes[redtls__topology_master(t, 0)].id, "a1");
    redtls__topology_free(t);
}

/* Under RESP3 the metadata is a map (hiredis 1.x parses "%"): the same
 * names are read from it. Built by hand, so it runs on hiredis 0.14 too. */
static void test_resp3_metadata_map(void **state)
{
    (void)state;
    redisReply *r = resp("*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$2\r\n10\r\n:6379\r\n$1\r\na\r\n"
                         "*4\r\n$2\r\nip\r\n$8\r\n10.0.0.1\r\n$8\r\nhostname\r\n$6\r\nnode.a\r\n");
    r->element[0]->element[2]->element[3]->type = REDTLS_REPLY_MAP;
    redtls__topology *t = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(redtls__topology_parse(r, "seed", &t, err), REDTLS_OK);
    long a = redtls__topology_master(t, 0);
    assert_string_equal(t->nodes[a].hostname, "node.a");
    assert_string_equal(t->nodes[a].ip, "10.0.0.1");
    redtls__topology_free(t);
    /* hiredis 0.14 knows no map: back to the array it is, to be freed whole. */
    r->element[0]->element[2]->element[3]->type = REDIS_REPLY_ARRAY;
    freeReplyObject(r);
}

static void test_redis7_metadata_and_endpoints(void **state)
{
    (void)state;
    /* Preferred endpoint a hostname, "ip" in the metadata; an empty
     * endpoint means the address asked; "?" is skipped. */
    const char *text =
        "*3\r\n"
        "*3\r\n:0\r\n:99\r\n*4\r\n$6\r\nnode.a\r\n:6379\r\n$1\r\na\r\n"
        "*4\r\n$2\r\nip\r\n$8\r\n10.0.0.1\r\n$8\r\nhostname\r\n$6\r\nnode.a\r\n"
        "*3\r\n:100\r\n:199\r\n*4\r\n$0\r\n\r\n:6380\r\n$1\r\nb\r\n*0\r\n"
        "*4\r\n:200\r\n:299\r\n*3\r\n$1\r\n?\r\n:6381\r\n$1\r\nc\r\n*3\r\n$6\r\nnode.d\r\n:6382\r\n$1\r\nd\r\n";
    redtls__topology *t = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(parse(text, "config.endpoint", &t, err), REDTLS_OK);
    long a = redtls__topology_master(t, 50), b = redtls__topology_master(t, 150);
    assert_string_equal(t->nodes[a].ip, "10.0.0.1");
    assert_string_equal(t->nodes[a].hostname, "node.a");
    assert_string_equal(t->nodes[b].host, "config.endpoint");
    assert_null(t->nodes[b].ip);
    /* The master of 200-299 has no endpoint: the range is not served, and
     * its replica is not promoted by us. */
    assert_int_equal(redtls__topology_master(t, 250), -1);
    assert_int_equal(t->covered, 200);
    assert_int_equal(redtls__topology_master(t, 300), -1);
    redtls__topology_free(t);
}

static void expect_refused(const char *text, const char *why)
{
    redtls__topology *t = (redtls__topology *)1;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(parse(text, "seed", &t, err), REDTLS_E_PROTOCOL);
    assert_null(t);
    assert_contains(err, why);
}

static void test_invalid_maps_refused(void **state)
{
    (void)state;
    expect_refused("+OK\r\n", "did not answer with an array");
    expect_refused("*1\r\n*2\r\n:0\r\n:10\r\n", "not [start, end, master");
    expect_refused("*1\r\n*3\r\n:0\r\n:16384\r\n" NODE("a", "7000"), "not within 0-16383");
    expect_refused("*1\r\n*3\r\n:-1\r\n:10\r\n" NODE("a", "7000"), "not within 0-16383");
    expect_refused("*1\r\n*3\r\n:10\r\n:9\r\n" NODE("a", "7000"), "not within 0-16383");
    expect_refused("*2\r\n*3\r\n:0\r\n:100\r\n" NODE("a", "7000") "*3\r\n:100\r\n:200\r\n" NODE("b", "7001"),
                   "overlap");
    expect_refused("*1\r\n*3\r\n:0\r\n:10\r\n*3\r\n$1\r\nh\r\n:0\r\n$2\r\naa\r\n", "port 0 out of range");
    expect_refused("*1\r\n*3\r\n:0\r\n:10\r\n*3\r\n$1\r\nh\r\n:70000\r\n$2\r\naa\r\n", "out of range");
    expect_refused("*1\r\n*3\r\n:0\r\n:10\r\n*1\r\n$1\r\nh\r\n", "node entry");
    expect_refused("*1\r\n*3\r\n:0\r\n:10\r\n:5\r\n", "node entry");
    /* An empty endpoint with nothing asked has no host at all. */
    redtls__topology *t = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    redisReply *r = resp("*1\r\n*3\r\n:0\r\n:10\r\n*3\r\n$0\r\n\r\n:7000\r\n$2\r\naa\r\n");
    assert_status(redtls__topology_parse(r, NULL, &t, err), REDTLS_E_PROTOCOL);
    assert_contains(err, "empty or invalid host");
    freeReplyObject(r);
}

static void test_null_endpoint_is_the_address_asked(void **state)
{
    (void)state;
    /* A null preferred endpoint ($-1), for a master and for a replica, is
     * "the endpoint this command was sent to", like "". */
    const char *text = "*2\r\n"
                       "*4\r\n:0\r\n:8191\r\n*3\r\n$-1\r\n:7001\r\n$1\r\na\r\n"
                       "*3\r\n$-1\r\n:7004\r\n$1\r\nd\r\n"
                       "*3\r\n:8192\r\n:16383\r\n*4\r\n$-1\r\n:7002\r\n$1\r\nb\r\n"
                       "*2\r\n$8\r\nhostname\r\n$6\r\nnode.b\r\n";
    redtls__topology *t = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(parse(text, "seed.example", &t, err), REDTLS_OK);
    assert_int_equal(t->covered, 16384);
    assert_int_equal(t->nnodes, 3);
    const redtls__cluster_node *a = &t->nodes[redtls__topology_master(t, 0)];
    const redtls__cluster_node *b = &t->nodes[redtls__topology_master(t, 9000)];
    assert_string_equal(a->host, "seed.example");
    assert_int_equal(a->port, 7001);
    assert_string_equal(b->host, "seed.example");
    assert_int_equal(b->port, 7002);
    assert_string_equal(b->hostname, "node.b");
    assert_int_equal(t->ranges[0].nreplicas, 1);
    assert_string_equal(t->nodes[t->ranges[0].replicas[0]].host, "seed.example");
    assert_int_equal(t->nodes[t->ranges[0].replicas[0]].port, 7004);
    redtls__topology_free(t);
    /* With nothing asked, a null endpoint has no host, as "" has none. */
    redisReply *r = resp("*1\r\n*3\r\n:0\r\n:10\r\n*3\r\n$-1\r\n:7000\r\n$2\r\naa\r\n");
    assert_status(redtls__topology_parse(r, NULL, &t, err), REDTLS_E_PROTOCOL);
    assert_contains(err, "empty or invalid host");
    freeReplyObject(r);
    /* A null port is still no node entry. */
    expect_refused("*1\r\n*3\r\n:0\r\n:10\r\n*3\r\n$1\r\nh\r\n$-1\r\n$2\r\naa\r\n", "node entry");
}

static void test_empty_and_partial_maps(void **state)
{
    (void)state;
    redtls__topology *t = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_status(parse("*0\r\n", "seed", &t, err), REDTLS_OK);
    assert_int_equal(t->covered, 0);
    assert_int_equal(redtls__topology_master(t, 0), -1);
    redtls__topology_free(t);
    assert_status(parse("*1\r\n*3\r\n:7\r\n:7\r\n" NODE("a", "7000"), "seed", &t, err), REDTLS_OK);
    assert_int_equal(t->covered, 1);
    assert_int_equal(redtls__topology_master(t, 6), -1);
    assert_int_equal(redtls__topology_master(t, 7), 0);
    assert_int_equal(redtls__topology_master(t, 8), -1);
    redtls__topology_free(t);
    redtls__topology_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_masters_with_replicas),
        cmocka_unit_test(test_redis7_metadata_and_endpoints),
        cmocka_unit_test(test_resp3_metadata_map),
        cmocka_unit_test(test_invalid_maps_refused),
        cmocka_unit_test(test_null_endpoint_is_the_address_asked),
        cmocka_unit_test(test_empty_and_partial_maps),
    };
    return cmocka_run_group_tests_name("topology", tests, NULL, NULL);
}

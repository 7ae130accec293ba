/* The asynchronous cluster client's merging of a split command's parts
 * (lib/acluster/acluster_cmd.c), without sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "acluster.h"

static redisReply *mk(int type)
{
    redisReply *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->type = type;
    return r;
}

static redisReply *str(const char *s)
{
    redisReply *r = mk(REDIS_REPLY_STRING);
    r->str = strdup(s);
    r->len = strlen(s);
    return r;
}

static redisReply *err_reply(const char *s)
{
    redisReply *r = str(s);
    r->type = REDIS_REPLY_ERROR;
    return r;
}

static redisReply *integer(long long v)
{
    redisReply *r = mk(REDIS_REPLY_INTEGER);
    r->integer = v;
    return r;
}

static redisReply *array(size_t n, ...)
{
    redisReply *r = mk(REDIS_REPLY_ARRAY);
    r->elements = n;
    r->element = calloc(n, sizeof(redisReply *)); // NOLINT(bugprone-sizeof-expression): an array of pointers
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        r->element[i] = va_arg(ap, redisReply *);
    va_end(ap);
    return r;
}

static void split_init(acl_split *sp, int merge, size_t nparts, size_t nkeys)
{
    memset(sp, 0, sizeof *sp);
    sp->merge = merge;
    sp->nparts = nparts;
    sp->nkeys = nkeys;
    sp->replies = calloc(nparts, sizeof *sp->replies);
    assert_non_null(sp->replies);
}

static void split_done(acl_split *sp)
{
    for (size_t k = 0; k < sp->nparts; k++)
        freeReplyObject(sp->replies[k]);
    free(sp->replies);
    free(sp->map);
    free(sp->msg);
}

static void test_mget_back_in_key_order(void **state)
{
    (void)state;
    /* MGET k0 k1 k2 k3 split in two: part 0 has k2, k0; part 1 has k3, k1. */
    acl_split sp;
    split_init(&sp, REDTLS__MERGE_MGET, 2, 4);
    size_t map[] = {2, 0, SIZE_MAX, 3, 1, SIZE_MAX};
    sp.map = malloc(sizeof map);
    memcpy(sp.map, map, sizeof map);
    sp.replies[0] = array(2, str("v2"), mk(REDIS_REPLY_NIL));
    sp.replies[1] = array(2, str("v3"), str("v1"));
    redisReply *out = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_int_equal(redtls__acl_merge(&sp, &out, err), REDTLS_OK);
    assert_int_equal(out->type, REDIS_REPLY_ARRAY);
    assert_int_equal(out->elements, 4);
    assert_int_equal(out->element[0]->type, REDIS_REPLY_NIL);
    assert_string_equal(out->element[1]->str, "v1");
    assert_string_equal(out->element[2]->str, "v2");
    assert_string_equal(out->element[3]->str, "v3");
    freeReplyObject(out);
    split_done(&sp);
}

static void test_mget_part_of_the_wrong_shape(void **state)
{
    (void)state;
    acl_split sp;
    split_init(&sp, REDTLS__MERGE_MGET, 2, 3);
    size_t map[] = {0, SIZE_MAX, 1, 2, SIZE_MAX};
    sp.map = malloc(sizeof map);
    memcpy(sp.map, map, sizeof map);
    sp.replies[0] = array(1, str("a"));
    sp.replies[1] = array(1, str("b")); /* two keys asked, one value */
    redisReply *out = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_int_equal(redtls__acl_merge(&sp, &out, err), REDTLS_E_PROTOCOL);
    assert_null(out);
    assert_non_null(strstr(err, "unexpected shape"));
    split_done(&sp);
}

static void test_sum_ok_and_error_parts(void **state)
{
    (void)state;
    acl_split sp;
    redisReply *out = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    split_init(&sp, REDTLS__MERGE_SUM, 3, 5);
    sp.replies[0] = integer(2);
    sp.replies[1] = integer(0);
    sp.replies[2] = integer(3);
    assert_int_equal(redtls__acl_merge(&sp, &out, err), REDTLS_OK);
    assert_int_equal(out->type, REDIS_REPLY_INTEGER);
    assert_int_equal(out->integer, 5);
    freeReplyObject(out);
    split_done(&sp);

    split_init(&sp, REDTLS__MERGE_SUM, 2, 2);
    sp.replies[0] = integer(1);
    sp.replies[1] = str("not a number");
    assert_int_equal(redtls__acl_merge(&sp, &out, err), REDTLS_E_PROTOCOL);
    split_done(&sp);

    split_init(&sp, REDTLS__MERGE_OK, 2, 4);
    sp.replies[0] = mk(REDIS_REPLY_STATUS);
    sp.replies[1] = mk(REDIS_REPLY_STATUS);
    assert_int_equal(redtls__acl_merge(&sp, &out, err), REDTLS_OK);
    assert_int_equal(out->type, REDIS_REPLY_STATUS);
    freeReplyObject(out);
    split_done(&sp);

    /* A part's error reply is the command's reply. */
    split_init(&sp, REDTLS__MERGE_OK, 2, 4);
    sp.replies[0] = mk(REDIS_REPLY_STATUS);
    sp.replies[1] = err_reply("OOM command not allowed");
    assert_int_equal(redtls__acl_merge(&sp, &out, err), REDTLS_OK);
    assert_int_equal(out->type, REDIS_REPLY_ERROR);
    assert_string_equal(out->str, "OOM command not allowed");
    freeReplyObject(out);
    split_done(&sp);
}

static void test_failed_part(void **state)
{
    (void)state;
    acl_split sp;
    split_init(&sp, REDTLS__MERGE_SUM, 3, 3);
    sp.replies[0] = integer(1);
    sp.st = REDTLS_E_OUTCOME_UNKNOWN;
    sp.msg = strdup("node a:1: the connection broke");
    redisReply *out = NULL;
    char err[REDTLS__ERRMSG_MAX] = "";
    assert_int_equal(redtls__acl_merge(&sp, &out, err), REDTLS_E_OUTCOME_UNKNOWN);
    assert_null(out);
    assert_non_null(strstr(err, "1 of 3 parts completed (not atomic)"));
    assert_non_null(strstr(err, "the connection broke"));
    split_done(&sp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mget_back_in_key_order),
        cmocka_unit_test(test_mget_part_of_the_wrong_shape),
        cmocka_unit_test(test_sum_ok_and_error_parts),
        cmocka_unit_test(test_failed_part),
    };
    return cmocka_run_group_tests_name("acluster_merge", tests, NULL, NULL);
}

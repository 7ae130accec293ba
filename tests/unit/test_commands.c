/* Which multi-key commands a cluster client splits by slot, and which
 * commands it refuses because they hold a connection's state
 * (lib/cluster/commands.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "keys.h"

static int kind(const char *name)
{
    return redtls__cluster_split_kind(name, strlen(name));
}

static const char *state(const char *name)
{
    return redtls__cluster_state_command(name, strlen(name));
}

static void test_split_kinds(void **unused)
{
    (void)unused;
    assert_int_equal(kind("MGET"), REDTLS__MERGE_MGET);
    assert_int_equal(kind("mget"), REDTLS__MERGE_MGET);
    assert_int_equal(kind("MSET"), REDTLS__MERGE_OK);
    assert_int_equal(kind("Del"), REDTLS__MERGE_SUM);
    assert_int_equal(kind("UNLINK"), REDTLS__MERGE_SUM);
    assert_int_equal(kind("EXISTS"), REDTLS__MERGE_SUM);
    assert_int_equal(kind("TOUCH"), REDTLS__MERGE_SUM);
    /* Never split: not atomic to merge, or not multi-key in that sense. */
    static const char *const never[] = {"MSETNX", "GET", "SUNION", "RENAME", "EVAL", "MGETX", "MGE", ""};
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        assert_int_equal(kind(never[i]), REDTLS__MERGE_NONE);
    /* The length decides, not a NUL: "DELETE" cut at 3 is DEL. */
    assert_int_equal(redtls__cluster_split_kind("DELETE", 3), REDTLS__MERGE_SUM);
    assert_int_equal(redtls__cluster_split_kind("DEL", 2), REDTLS__MERGE_NONE);
}

static void test_state_commands(void **unused)
{
    (void)unused;
    static const char *const refused[] = {"MULTI",    "exec",      "DISCARD",    "WATCH",        "UNWATCH",
                                          "SUBSCRIBE", "psubscribe", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
                                          "SUNSUBSCRIBE", "MONITOR", "SELECT",     "AUTH",         "HELLO",
                                          "RESET",    "QUIT",      "READONLY",   "READWRITE",    "ASKING",
                                          "SYNC",     "PSYNC",     "REPLCONF"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        const char *canon = state(refused[i]);
        assert_non_null(canon);
        /* The canonical (upper-case) name, for the error message. */
        assert_int_equal(strlen(canon), strlen(refused[i]));
    }
    assert_string_equal(state("multi"), "MULTI");
    static const char *const fine[] = {"GET", "PUBLISH", "SPUBLISH", "CLIENT", "MULTIX", "WATC", "INFO", ""};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++)
        assert_null(state(fine[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_kinds),
        cmocka_unit_test(test_state_commands),
    };
    return cmocka_run_group_tests_name("commands", tests, NULL, NULL);
}

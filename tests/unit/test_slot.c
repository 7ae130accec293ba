/* lib/cluster/slot.c: CRC16/XMODEM and the hash-tag rules. The same keys
 * are checked against a real server's CLUSTER KEYSLOT in
 * tests/integration/test_keyslot.c. */
#include "unit_util.h"

static unsigned slot(const char *key)
{
    return redtls_cluster_key_slot(key, strlen(key));
}

static void test_known_values(void **state)
{
    (void)state;
    /* CRC16/XMODEM("123456789") is the catalogue check value 0x31C3. */
    assert_int_equal(slot("123456789"), 0x31C3 & 16383);
    assert_int_equal(slot("foo"), 12182);
    assert_int_equal(slot(""), 0);
    assert_int_equal(redtls_cluster_key_slot(NULL, 0), 0);
    assert_int_equal(REDTLS_CLUSTER_SLOTS, 16384);
}

static void test_hash_tags(void **state)
{
    (void)state;
    /* The tag is hashed alone. */
    assert_int_equal(slot("{user1000}.following"), slot("user1000"));
    assert_int_equal(slot("{user1000}.followers"), slot("user1000"));
    assert_int_equal(slot("foo{bar}baz"), slot("bar"));
    /* Only the first '{' and the first '}' after it count. */
    assert_int_equal(slot("foo{{bar}}zap"), slot("{bar"));
    assert_int_equal(slot("foo{bar}{zap}"), slot("bar"));
    assert_int_equal(slot("{a}{b}"), slot("a"));
    /* No usable tag: the whole key. */
    assert_int_equal(slot("{}x"), redtls_cluster_key_slot("{}x", 3));
    assert_int_not_equal(slot("{}x"), slot("x"));
    assert_int_equal(slot("foo{}{bar}"), redtls_cluster_key_slot("foo{}{bar}", 10));
    assert_int_not_equal(slot("foo{}{bar}"), slot("bar"));
    assert_int_not_equal(slot("x{"), slot(""));
    assert_int_not_equal(slot("}{x"), slot("x"));
    assert_int_equal(slot("}{x}"), slot("x"));
}

static void test_binary_keys(void **state)
{
    (void)state;
    const char k[] = {'a', '\0', '{', 'b', '\0', '}', 'c'};
    const char tag[] = {'b', '\0'};
    assert_int_equal(redtls_cluster_key_slot(k, sizeof k), redtls_cluster_key_slot(tag, sizeof tag));
    /* A tag closed only beyond len does not count. */
    assert_int_equal(redtls_cluster_key_slot("a{b}", 3), redtls_cluster_key_slot("a{b", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_hash_tags),
        cmocka_unit_test(test_binary_keys),
    };
    return cmocka_run_group_tests_name("slot", tests, NULL, NULL);
}

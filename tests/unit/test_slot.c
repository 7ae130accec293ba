/* lib/cluster/slot.c: CRC16/XMODEM and the hash-tag rules. The same keys
 * are checked against a real server's CLUSTER KEYSLOT in
 * tests/integration/test_keyslot.c, and random keys of every length
 * against the CRC's bit-by-bit definition here. */
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

/* CRC16/XMODEM bit by bit, straight from its definition. */
static unsigned crc16_bits(const unsigned char *p, size_t len)
{
    unsigned crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (unsigned)p[i] << 8;
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000U) ? ((crc << 1) ^ 0x1021U) & 0xffffU : (crc << 1) & 0xffffU;
    }
    return crc;
}

/* The hash-tag rule written plainly, over the reference CRC. */
static unsigned slot_reference(const unsigned char *p, size_t len)
{
    size_t open = 0;
    while (open < len && p[open] != '{')
        open++;
    if (open < len) {
        size_t close = open + 1;
        while (close < len && p[close] != '}')
            close++;
        if (close < len && close > open + 1)
            return crc16_bits(p + open + 1, close - open - 1) % 16384;
    }
    return crc16_bits(p, len) % 16384;
}

/* Every key length up to 70 (the table-driven code takes four bytes at a
 * time and the rest one by one), random bytes with and without braces at
 * every position, against the reference. */
static void test_against_the_definition(void **state)
{
    (void)state;
    unsigned char k[70];
    uint32_t x = 12345;
    for (size_t len = 0; len <= sizeof k; len++) {
        for (int round = 0; round < 200; round++) {
            for (size_t i = 0; i < len; i++) {
                x = x * 1103515245U + 12345U;
                k[i] = (unsigned char)(x >> 16);
            }
            if (len > 0 && round % 2) {
                x = x * 1103515245U + 12345U;
                k[(x >> 16) % len] = '{';
                x = x * 1103515245U + 12345U;
                k[(x >> 16) % len] = '}';
            }
            assert_int_equal(redtls_cluster_key_slot((const char *)k, len), slot_reference(k, len));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_hash_tags),
        cmocka_unit_test(test_binary_keys),
        cmocka_unit_test(test_against_the_definition),
    };
    return cmocka_run_group_tests_name("slot", tests, NULL, NULL);
}

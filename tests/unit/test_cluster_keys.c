/* lib/cluster/keys.c: key positions of every key layout, case, binary and
 * malformed argv, a short pos array, unknown commands, and the cost of a
 * lookup. The whole table is checked against a real server's COMMAND and
 * COMMAND GETKEYS in tests/integration/test_cluster_keys.c. */
#include "unit_util.h"

#include <time.h>

#include "keys.h"

#define K REDTLS__CMD_KNOWN
#define KR (REDTLS__CMD_KNOWN | REDTLS__CMD_READONLY)
#define KM (REDTLS__CMD_KNOWN | REDTLS__CMD_MALFORMED)
#define KRM (REDTLS__CMD_KNOWN | REDTLS__CMD_READONLY | REDTLS__CMD_MALFORMED)
#define KN (REDTLS__CMD_KNOWN | REDTLS__CMD_NOKEYS)
#define KRN (REDTLS__CMD_KNOWN | REDTLS__CMD_READONLY | REDTLS__CMD_NOKEYS)

#define MAX_KEYS 32

/* CHECK(flags, "1 3", "MSET", "a", "1", "b", "2"): the argv (C strings)
 * has exactly these key positions, in this order, and these flags. */
#define CHECK(want_flags, want_keys, ...) \
    check_keys(__FILE__, __LINE__, (const char *const[]){__VA_ARGS__, NULL}, (want_flags), (want_keys))

static void check_keys(const char *file, int line, const char *const *argv, unsigned want_flags, const char *want)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    size_t pos[MAX_KEYS];
    unsigned flags = 0xdead;
    size_t n = redtls__command_keys(argc, argv, NULL, pos, MAX_KEYS, &flags);
    char got[256] = "", cmd[256] = "";
    for (size_t i = 0; i < n && i < MAX_KEYS; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%zu", i ? " " : "", pos[i]);
    for (int i = 0; i < argc; i++)
        snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), "%s%s", i ? " " : "", argv[i]);
    if (n > MAX_KEYS || flags != want_flags || strcmp(got, want) != 0)
        fail_msg("%s:%d: %s: keys \"%s\" (%zu) flags %u, expected \"%s\" flags %u", file, line, cmd, got, n, flags,
                 want, want_flags);
}

static void test_single_key(void **state)
{
    (void)state;
    CHECK(KR, "1", "GET", "k");
    CHECK(K, "1", "SET", "k", "v", "EX", "10", "GET");
    CHECK(K, "1", "HSET", "h", "f", "v", "f2", "v2");
    CHECK(KR, "1", "ZRANGE", "z", "0", "-1", "WITHSCORES");
    CHECK(KR, "1", "DUMP", "k");
    CHECK(K, "1", "RESTORE", "k", "0", "\x0b\x00", "REPLACE");
    CHECK(K, "1", "XADD", "s", "*", "f", "v");
    CHECK(K, "1", "SPUBLISH", "channel", "message");
    CHECK(KR, "1", "BITFIELD_RO", "b", "GET", "u8", "0");
    /* 7.2 added WITHSCORE: the arity is a minimum, so the key still counts. */
    CHECK(KR, "1", "ZRANK", "z", "m", "WITHSCORE");
}

static void test_case_insensitive(void **state)
{
    (void)state;
    CHECK(KR, "1", "get", "k");
    CHECK(KR, "1", "gEt", "k");
    CHECK(KR, "2", "object", "ENCODING", "k");
    CHECK(KR, "2", "Object", "freq", "k");
    CHECK(KR, "2", "xInFo", "StReAm", "s", "FULL");
    CHECK(K, "2", "xgroup", "createconsumer", "s", "g", "c");
    CHECK(KR, "4", "xread", "count", "1", "streams", "a", "0");
    CHECK(K, "1 3", "sort", "k", "store", "d");
    CHECK(KN, "", "cluster", "INFO");
    CHECK(KN, "", "Client", "No-Evict", "on");
    CHECK(KR, "1", "Georadius_Ro", "k", "1", "2", "3", "km");
}

static void test_ranges(void **state)
{
    (void)state;
    CHECK(KR, "1 2 3", "MGET", "a", "b", "c");
    CHECK(K, "1 2", "DEL", "a", "b");
    CHECK(K, "1 2 3", "UNLINK", "a", "b", "c");
    CHECK(KR, "1 2", "EXISTS", "a", "b");
    CHECK(KR, "1", "TOUCH", "a");
    CHECK(K, "1 2", "WATCH", "a", "b");
    CHECK(KR, "1 2", "PFCOUNT", "a", "b");
    CHECK(K, "1 2 3", "PFMERGE", "d", "a", "b");
    CHECK(K, "1", "PFMERGE", "d");
    /* MSET: every other argument; an odd tail still counts, as in the
     * server (which then reports the arity). */
    CHECK(K, "1 3 5", "MSET", "a", "1", "b", "2", "c", "3");
    CHECK(K, "1 3", "MSETNX", "a", "1", "b", "2");
    CHECK(K, "1 3", "MSET", "a", "1", "b");
    /* Blocking pops: keys, then the timeout. */
    CHECK(K, "1 2", "BLPOP", "a", "b", "0");
    CHECK(K, "1", "BRPOP", "a", "1.5");
    CHECK(K, "1 2 3", "BZPOPMIN", "a", "b", "c", "0");
    CHECK(K, "1", "BZPOPMAX", "a", "0");
    /* BITOP op dest src...: the operation is not a key. */
    CHECK(K, "2 3 4", "BITOP", "AND", "d", "a", "b");
    CHECK(K, "2 3", "BITOP", "NOT", "d", "a");
    CHECK(K, "1 2", "SMOVE", "src", "dst", "m");
    CHECK(K, "1 2", "RENAME", "a", "b");
    CHECK(K, "1 2", "RENAMENX", "a", "b");
    CHECK(K, "1 2", "COPY", "a", "b", "DB", "1", "REPLACE");
    CHECK(KR, "1 2", "LCS", "a", "b", "IDX", "MINMATCHLEN", "2");
    CHECK(K, "1 2", "LMOVE", "a", "b", "LEFT", "RIGHT");
    CHECK(K, "1 2", "BLMOVE", "a", "b", "LEFT", "RIGHT", "0");
    CHECK(K, "1 2", "RPOPLPUSH", "a", "b");
    CHECK(K, "1 2", "BRPOPLPUSH", "a", "b", "0");
    CHECK(K, "1 2 3", "SINTERSTORE", "d", "a", "b");
    CHECK(K, "1 2", "SUNIONSTORE", "d", "a");
    CHECK(K, "1 2 3", "SDIFFSTORE", "d", "a", "b");
    CHECK(KR, "1 2", "SINTER", "a", "b");
    CHECK(K, "1 2", "ZRANGESTORE", "d", "s", "0", "-1");
    CHECK(K, "1 2", "GEOSEARCHSTORE", "d", "s", "FROMMEMBER", "m", "BYRADIUS", "1", "km");
    CHECK(KR, "1", "GEOSEARCH", "s", "FROMMEMBER", "m", "BYRADIUS", "1", "km");
    /* Shard channels hash like keys. */
    CHECK(K, "1 2", "SSUBSCRIBE", "a", "b");
    CHECK(K, "1", "SUNSUBSCRIBE", "a");
    CHECK(K, "", "SUNSUBSCRIBE");
}

static void test_subcommands(void **state)
{
    (void)state;
    CHECK(KR, "2", "OBJECT", "ENCODING", "k");
    CHECK(KR, "2", "OBJECT", "FREQ", "k");
    CHECK(KR, "2", "OBJECT", "IDLETIME", "k");
    CHECK(KR, "2", "OBJECT", "REFCOUNT", "k");
    CHECK(KN, "", "OBJECT", "HELP");
    CHECK(KR, "2", "MEMORY", "USAGE", "k", "SAMPLES", "5");
    CHECK(KN, "", "MEMORY", "STATS");
    CHECK(KR, "2", "XINFO", "STREAM", "s");
    CHECK(KR, "2", "XINFO", "GROUPS", "s");
    CHECK(KR, "2", "XINFO", "CONSUMERS", "s", "g");
    CHECK(K, "2", "XGROUP", "CREATE", "s", "g", "$", "MKSTREAM");
    CHECK(K, "2", "XGROUP", "DESTROY", "s", "g");
    CHECK(K, "2", "XGROUP", "SETID", "s", "g", "0");
    CHECK(K, "2", "XGROUP", "DELCONSUMER", "s", "g", "c");
    /* A container alone: keyed subcommands make it unreadable. */
    CHECK(KM, "", "OBJECT");
    CHECK(KM, "", "XINFO");
    CHECK(KN, "", "CLIENT");
    CHECK(KN, "", "CONFIG");
    /* An unknown subcommand is not known. */
    CHECK(0, "", "OBJECT", "BOGUS", "k");
    CHECK(0, "", "CLIENT", "FROBNICATE");
    /* 7.2 additions. */
    CHECK(KN, "", "CLIENT", "NO-TOUCH", "on");
    CHECK(KN, "", "CLIENT", "SETINFO", "lib-name", "redtls");
    CHECK(KN, "", "CLUSTER", "MYSHARDID");
    CHECK(KN, "", "WAITAOF", "1", "0", "0");
}

static void test_numkeys(void **state)
{
    (void)state;
    /* EVAL and friends: numkeys at argv[2], 0 allowed. */
    CHECK(K, "", "EVAL", "return 1", "0");
    CHECK(K, "", "EVAL", "return 1", "0", "arg");
    CHECK(K, "3 4 5", "EVAL", "return 1", "3", "a", "b", "c", "arg1", "arg2");
    CHECK(K, "3", "EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "1", "a");
    CHECK(KR, "3 4", "EVAL_RO", "return 1", "2", "a", "b");
    CHECK(KR, "3", "EVALSHA_RO", "sha", "1", "a");
    CHECK(K, "3", "FCALL", "f", "1", "a", "x");
    CHECK(KR, "", "FCALL_RO", "f", "0");
    /* Destination, then numkeys. */
    CHECK(K, "1 3 4", "ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2");
    CHECK(K, "1 3", "ZINTERSTORE", "d", "1", "a", "AGGREGATE", "MAX");
    CHECK(K, "1 3 4", "ZDIFFSTORE", "d", "2", "a", "b");
    /* numkeys at argv[1]. */
    CHECK(KR, "2 3", "ZUNION", "2", "a", "b", "WITHSCORES");
    CHECK(KR, "2 3", "ZINTER", "2", "a", "b");
    CHECK(KR, "2", "ZDIFF", "1", "a");
    CHECK(KR, "2 3", "ZINTERCARD", "2", "a", "b", "LIMIT", "1");
    CHECK(KR, "2 3", "SINTERCARD", "2", "a", "b");
    CHECK(K, "2 3", "LMPOP", "2", "a", "b", "LEFT", "COUNT", "2");
    CHECK(K, "2", "ZMPOP", "1", "a", "MIN");
    /* Timeout, then numkeys. */
    CHECK(K, "3 4", "BLMPOP", "0", "2", "a", "b", "LEFT");
    CHECK(K, "3", "BZMPOP", "1.5", "1", "a", "MAX");
}

static void test_numkeys_malformed(void **state)
{
    (void)state;
    CHECK(KM, "", "EVAL", "return 1", "x", "a");
    CHECK(KM, "", "EVAL", "return 1", "-1", "a");
    CHECK(KM, "", "EVAL", "return 1", "+1", "a");
    CHECK(KM, "", "EVAL", "return 1", " 1", "a");
    CHECK(KM, "", "EVAL", "return 1", "1x", "a");
    CHECK(KM, "", "EVAL", "return 1", "01", "a");
    CHECK(KM, "", "EVAL", "return 1", "", "a");
    CHECK(KM, "", "EVAL", "return 1", "2", "a");
    CHECK(KM, "", "EVAL", "return 1", "99999999999", "a");
    CHECK(KM, "", "EVAL", "return 1", "4294967297", "a");
    CHECK(KRM, "", "FCALL_RO", "f", "3", "a", "b");
    /* These need at least one key. */
    CHECK(KM, "", "ZUNIONSTORE", "d", "0", "a");
    CHECK(KRM, "", "ZUNION", "0", "a");
    CHECK(KRM, "", "SINTERCARD", "0", "a");
    CHECK(KM, "", "BLMPOP", "0", "0", "a", "LEFT");
    CHECK(KM, "", "ZINTERSTORE", "d", "3", "a", "b");
    CHECK(KM, "", "LMPOP", "two", "a", "b", "LEFT");
}

static void test_streams(void **state)
{
    (void)state;
    CHECK(KR, "2 3", "XREAD", "STREAMS", "a", "b", "0", "0");
    CHECK(KR, "6", "XREAD", "COUNT", "1", "BLOCK", "0", "STREAMS", "a", "$");
    CHECK(K, "7 8", "XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "a", "b", "0", "0");
    CHECK(K, "6", "XREADGROUP", "GROUP", "g", "c", "NOACK", "STREAMS", "a", ">");
    /* "STREAMS" as a group, consumer or key name. */
    CHECK(K, "5", "XREADGROUP", "GROUP", "streams", "STREAMS", "STREAMS", "streams", ">");
    CHECK(KR, "2", "XREAD", "STREAMS", "STREAMS", "0");
    /* No STREAMS, an odd count after it, an unknown option. */
    CHECK(KRM, "", "XREAD", "COUNT", "1", "a", "0");
    CHECK(KRM, "", "XREAD", "STREAMS", "a", "b", "0");
    CHECK(KRM, "", "XREAD", "BLOCK", "0", "COUNT", "STREAMS");
    CHECK(KRM, "", "XREAD", "FOO", "STREAMS", "a", "0");
    CHECK(KM, "", "XREADGROUP", "GROUP", "g", "c", "STREAMS", "a", "b", "0");
    CHECK(KM, "", "XREADGROUP", "GROUP", "g", "c", "BLOCK", "5", "STREAMS");
}

static void test_sort(void **state)
{
    (void)state;
    CHECK(K, "1", "SORT", "k");
    CHECK(K, "1 5", "SORT", "k", "BY", "w_*", "STORE", "d");
    CHECK(K, "1 11", "SORT", "k", "BY", "w_*", "LIMIT", "0", "10", "GET", "#", "ALPHA", "STORE", "d");
    /* The last STORE wins, as in the server. */
    CHECK(K, "1 5", "SORT", "k", "STORE", "a", "STORE", "b");
    /* Pattern arguments are skipped, even when they read "store". */
    CHECK(K, "1", "SORT", "k", "GET", "store", "BY", "STORE");
    CHECK(K, "1 6", "SORT", "k", "LIMIT", "0", "STORE", "STORE", "d");
    CHECK(K, "1", "SORT", "k", "DESC", "STORE");
    /* SORT_RO has no STORE. */
    CHECK(KR, "1", "SORT_RO", "k", "BY", "x", "STORE", "d");
}

static void test_migrate(void **state)
{
    (void)state;
    CHECK(K, "3", "MIGRATE", "10.0.0.1", "6379", "k", "0", "5000");
    CHECK(K, "3", "MIGRATE", "10.0.0.1", "6379", "k", "0", "5000", "COPY", "REPLACE");
    /* An empty key argument is still the key when there is no KEYS. */
    CHECK(K, "3", "MIGRATE", "10.0.0.1", "6379", "", "0", "5000");
    CHECK(K, "7 8", "MIGRATE", "10.0.0.1", "6379", "", "0", "5000", "KEYS", "a", "b");
    CHECK(K, "11 12", "MIGRATE", "h", "1", "", "0", "5", "COPY", "REPLACE", "AUTH", "keys", "KEYS", "a", "b");
    CHECK(K, "10", "MIGRATE", "h", "1", "", "0", "5", "AUTH2", "keys", "keys", "KEYS", "a");
    /* KEYS with a key argument is a syntax error; KEYS with nothing after
     * it moves nothing. */
    CHECK(KM, "", "MIGRATE", "h", "1", "k", "0", "5", "KEYS", "a");
    CHECK(K, "", "MIGRATE", "h", "1", "", "0", "5", "KEYS");
}

static void test_georadius(void **state)
{
    (void)state;
    CHECK(K, "1", "GEORADIUS", "k", "15", "37", "200", "km", "WITHDIST");
    CHECK(K, "1 7", "GEORADIUS", "k", "15", "37", "200", "km", "STORE", "d");
    CHECK(K, "1 7", "GEORADIUS", "k", "15", "37", "200", "km", "STOREDIST", "d");
    /* Both: in argument order. */
    CHECK(K, "1 7 9", "GEORADIUS", "k", "15", "37", "200", "km", "STOREDIST", "d", "STORE", "e");
    CHECK(K, "1 8 10", "GEORADIUS", "k", "15", "37", "200", "km", "ASC", "STORE", "e", "STOREDIST", "d");
    /* The first of each keyword; one in the last place has no key. */
    CHECK(K, "1 7", "GEORADIUS", "k", "15", "37", "200", "km", "STORE", "a", "STORE", "b");
    CHECK(K, "1", "GEORADIUS", "k", "15", "37", "200", "km", "STORE");
    CHECK(K, "1 6", "GEORADIUSBYMEMBER", "k", "m", "100", "km", "STORE", "d");
    CHECK(K, "1 6", "GEORADIUSBYMEMBER", "k", "STORE", "100", "km", "STORE", "d");
    /* The read-only variants take no STORE. */
    CHECK(KR, "1", "GEORADIUS_RO", "k", "15", "37", "200", "km", "STORE", "d");
    CHECK(KR, "1", "GEORADIUSBYMEMBER_RO", "k", "m", "100", "km");
}

static void test_keyless(void **state)
{
    (void)state;
    CHECK(KN, "", "PING");
    CHECK(KN, "", "PING", "hello");
    CHECK(KN, "", "INFO", "keyspace");
    CHECK(KN, "", "CLUSTER", "SLOTS");
    CHECK(KN, "", "CLUSTER", "COUNTKEYSINSLOT", "1");
    CHECK(KN, "", "CONFIG", "GET", "maxmemory");
    CHECK(KRN, "", "SCAN", "0", "MATCH", "k*");
    CHECK(KRN, "", "DBSIZE");
    CHECK(KRN, "", "KEYS", "*");
    CHECK(KRN, "", "RANDOMKEY");
    CHECK(KN, "", "FLUSHALL", "ASYNC");
    CHECK(KN, "", "PUBLISH", "channel", "message");
    CHECK(KN, "", "SUBSCRIBE", "a", "b");
    CHECK(KN, "", "PUBSUB", "SHARDNUMSUB", "a");
    CHECK(KN, "", "SCRIPT", "LOAD", "return 1");
    CHECK(KN, "", "FUNCTION", "LIST");
    CHECK(KN, "", "ACL", "WHOAMI");
    CHECK(KN, "", "CLIENT", "LIST");
    CHECK(KN, "", "COMMAND");
    CHECK(KN, "", "COMMAND", "GETKEYS", "GET", "k");
    CHECK(KN, "", "MULTI");
    CHECK(KN, "", "EXEC");
    CHECK(KN, "", "READONLY");
    CHECK(KN, "", "AUTH", "token");
    CHECK(KN, "", "HELLO", "3");
    /* Too few arguments do not matter when there are no keys anyway. */
    CHECK(KN, "", "PUBLISH");
}

static void test_too_few_args(void **state)
{
    (void)state;
    CHECK(KRM, "", "GET");
    CHECK(KRM, "", "MGET");
    CHECK(KM, "", "SET", "k");
    CHECK(KM, "", "BITOP", "AND", "d");
    CHECK(KM, "", "LMOVE", "a", "b", "LEFT");
    CHECK(KM, "", "BLPOP", "a");
    CHECK(KM, "", "MSET", "a");
    CHECK(KRM, "", "OBJECT", "ENCODING");
    CHECK(KRM, "", "XINFO", "CONSUMERS", "s");
    CHECK(KM, "", "EVAL", "return 1");
    CHECK(KRM, "", "ZUNION", "1");
    CHECK(KM, "", "BLMPOP", "0", "1", "a");
    CHECK(KRM, "", "XREAD", "STREAMS", "a");
    CHECK(KM, "", "XREADGROUP", "GROUP", "g", "c", "STREAMS", "a");
    CHECK(KM, "", "SORT");
    CHECK(KM, "", "MIGRATE", "h", "1", "k", "0");
    CHECK(KM, "", "GEORADIUS", "k", "15", "37", "200");
    CHECK(KM, "", "SPUBLISH", "ch");

    unsigned flags = 0xdead;
    assert_int_equal(redtls__command_keys(0, NULL, NULL, NULL, 0, &flags), 0);
    assert_int_equal(flags, 0);
    const char *none[] = {NULL};
    flags = 0xdead;
    assert_int_equal(redtls__command_keys(0, none, NULL, NULL, 0, &flags), 0);
    assert_int_equal(flags, 0);
    /* flags may be NULL. */
    const char *get[] = {"GET", "k"};
    size_t pos[1];
    assert_int_equal(redtls__command_keys(2, get, NULL, pos, 1, NULL), 1);
    assert_int_equal(pos[0], 1);
}

static void test_short_pos_array(void **state)
{
    (void)state;
    const char *argv[] = {"MGET", "a", "b", "c", "d", "e"};
    size_t pos[6] = {99, 99, 99, 99, 99, 99};
    unsigned flags = 0;
    assert_int_equal(redtls__command_keys(6, argv, NULL, pos, 2, &flags), 5);
    assert_int_equal(flags, KR);
    assert_int_equal(pos[0], 1);
    assert_int_equal(pos[1], 2);
    assert_int_equal(pos[2], 99);
    /* Counting only. */
    assert_int_equal(redtls__command_keys(6, argv, NULL, NULL, 0, &flags), 5);
    assert_int_equal(redtls__command_keys(6, argv, NULL, NULL, 6, &flags), 5);
    assert_int_equal(redtls__command_keys(6, argv, NULL, pos, 0, &flags), 5);
    assert_int_equal(pos[0], 1);
    /* Again with room for all of them. */
    assert_int_equal(redtls__command_keys(6, argv, NULL, pos, 6, &flags), 5);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(pos[i], i + 1);
    assert_int_equal(pos[5], 99);

    const char *eval[] = {"EVAL", "s", "3", "a", "b", "c"};
    size_t one[2] = {99, 99};
    assert_int_equal(redtls__command_keys(6, eval, NULL, one, 1, &flags), 3);
    assert_int_equal(one[0], 3);
    assert_int_equal(one[1], 99);
}

static void test_binary_argv(void **state)
{
    (void)state;
    size_t pos[4];
    unsigned flags;

    /* lens, no terminators: "GETX" read as "GET". */
    const char *get[] = {"GETX", "k\0ey"};
    const size_t get_lens[] = {3, 4};
    assert_int_equal(redtls__command_keys(2, get, get_lens, pos, 4, &flags), 1);
    assert_int_equal(flags, KR);
    assert_int_equal(pos[0], 1);

    /* A NUL inside the name does not match "get". */
    const char *nul[] = {"GET\0X", "k"};
    const size_t nul_lens[] = {5, 1};
    assert_int_equal(redtls__command_keys(2, nul, nul_lens, pos, 4, &flags), 0);
    assert_int_equal(flags, 0);
    const size_t nul_lens4[] = {4, 1};
    assert_int_equal(redtls__command_keys(2, nul, nul_lens4, pos, 4, &flags), 0);
    assert_int_equal(flags, 0);
    const char *nul2[] = {"G\0T", "k"};
    const size_t nul2_lens[] = {3, 1};
    assert_int_equal(redtls__command_keys(2, nul2, nul2_lens, pos, 4, &flags), 0);
    assert_int_equal(flags, 0);

    /* Bytes above 0x7f, and an upper-case subcommand given by length. */
    const char *high[] = {"G\xc9T", "k"};
    assert_int_equal(redtls__command_keys(2, high, NULL, pos, 4, &flags), 0);
    assert_int_equal(flags, 0);
    const char *obj[] = {"OBJECTS", "FREQUENCY", "k"};
    const size_t obj_lens[] = {6, 4, 1};
    assert_int_equal(redtls__command_keys(3, obj, obj_lens, pos, 4, &flags), 1);
    assert_int_equal(flags, KR);
    assert_int_equal(pos[0], 2);

    /* Keywords are compared by length too. */
    const char *xr[] = {"XREAD", "STREAMSX", "a", "0"};
    const size_t xr_lens[] = {5, 7, 1, 1};
    assert_int_equal(redtls__command_keys(4, xr, xr_lens, pos, 4, &flags), 1);
    assert_int_equal(flags, KR);
    assert_int_equal(pos[0], 2);
    const char *xr2[] = {"XREAD", "STREAMS\0", "a", "0"};
    const size_t xr2_lens[] = {5, 8, 1, 1};
    assert_int_equal(redtls__command_keys(4, xr2, xr2_lens, pos, 4, &flags), 0);
    assert_int_equal(flags, KRM);

    /* numkeys is read within its length. */
    const char *ev[] = {"EVAL", "s", "12", "a"};
    const size_t ev_lens[] = {4, 1, 1, 1};
    assert_int_equal(redtls__command_keys(4, ev, ev_lens, pos, 4, &flags), 1);
    assert_int_equal(flags, K);
    assert_int_equal(pos[0], 3);

    /* MIGRATE's key argument is empty by length, not by its first byte. */
    const char *mig[] = {"MIGRATE", "h", "1", "kk", "0", "5", "KEYS", "a"};
    const size_t mig_lens[] = {7, 1, 1, 0, 1, 1, 4, 1};
    assert_int_equal(redtls__command_keys(8, mig, mig_lens, pos, 4, &flags), 1);
    assert_int_equal(flags, K);
    assert_int_equal(pos[0], 7);
}

static void test_unknown(void **state)
{
    (void)state;
    CHECK(0, "", "FT.SEARCH", "idx", "hello");
    CHECK(0, "", "JSON.GET", "k");
    CHECK(0, "", "GETX", "k");
    CHECK(0, "", "GE", "k");
    CHECK(0, "", "", "k");
    /* Before the first name and after the last one. */
    CHECK(0, "", "AAA");
    CHECK(0, "", "ZZZZ");
    CHECK(0, "", "georadiusbymember_ro_and_then_some_more", "k");
    /* Prefixes and extensions of real names. */
    CHECK(0, "", "SUNSUBSCRIBEX");
    CHECK(0, "", "ZUNIONSTOR", "d", "1", "a");
    /* SENTINEL is not a Redis command. */
    CHECK(0, "", "SENTINEL", "MASTERS");
}

static void test_readonly(void **state)
{
    (void)state;
    CHECK(KR, "1", "GET", "k");
    CHECK(K, "1", "INCR", "k");
    CHECK(KR, "1", "BITCOUNT", "k");
    CHECK(K, "1", "BITFIELD", "k", "GET", "u8", "0");
    CHECK(KR, "1", "PTTL", "k");
    CHECK(KR, "1", "EXPIRETIME", "k");
    CHECK(K, "1", "GETEX", "k");
    CHECK(KR, "1", "SSCAN", "s", "0");
    CHECK(K, "1", "XAUTOCLAIM", "s", "g", "c", "0", "0");
    CHECK(KR, "1", "XPENDING", "s", "g");
    CHECK(K, "1", "SPOP", "s");
    CHECK(KR, "1", "SRANDMEMBER", "s");
    CHECK(K, "1", "PFADD", "h", "x");
    /* Shard pub/sub and WATCH are not "readonly" commands. */
    CHECK(K, "1", "WATCH", "k");
    CHECK(KN, "", "UNWATCH");
}

/* A lookup of GET costs a binary search over the lower-cased name. */
#define COST_ROUNDS 7
#define COST_CALLS 200000

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Valgrind runs programs in LD_PRELOAD'ed vgpreload objects. */
static int under_valgrind(void)
{
    const char *p = getenv("LD_PRELOAD");
    return p != NULL && strstr(p, "vgpreload") != NULL;
}

static double cost_ns(int argc, const char *const *argv, int calls)
{
    size_t pos[4];
    unsigned flags;
    size_t sink = 0;
    double best = 1e30;
    /* The best of several rounds: the machine may be busy with other tests. */
    for (int round = 0; round < COST_ROUNDS; round++) {
        double t0 = now_ns();
        for (int i = 0; i < calls; i++)
            sink += redtls__command_keys(argc, argv, NULL, pos, 4, &flags);
        double per = (now_ns() - t0) / calls;
        if (per < best)
            best = per;
    }
    assert_int_equal(sink, (size_t)COST_ROUNDS * (size_t)calls);
    return best;
}


/* The one-name cache gives exactly what the plain lookup gives, over a
 * sequence that switches commands, spelling, containers and an unknown
 * name, and with a name longer than the cache holds. */
static void test_cache_matches(void **state)
{
    (void)state;
    static const char *const cmds[][6] = {
        {"GET", "a"},           {"GET", "b"},          {"get", "c"},        {"SET", "k", "v"},
        {"OBJECT", "ENCODING", "k"}, {"OBJECT", "FREQ", "k"}, {"OBJECT", "HELP"}, {"MGET", "a", "b", "c"},
        {"NOSUCHCMD", "x"},     {"NOSUCHCMD", "y"},    {"GET", "d"},        {"XINFO", "STREAM", "s"},
        {"EVAL", "s", "2", "k1", "k2"}, {"ZUNIONSTORE", "d", "2", "a", "b"}, {"GET", "e"},
        {"AVERYLONGCOMMANDNAMEBEYONDTHECACHE", "x"}, {"ping"}, {"PING"}, {"GET", "f"},
    };
    redtls__cmd_cache cache;
    memset(&cache, 0, sizeof cache);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        int argc = 0;
        while (argc < 6 && cmds[i][argc])
            argc++;
        size_t p1[8], p2[8];
        unsigned f1 = 99, f2 = 77;
        size_t n1 = redtls__command_keys(argc, cmds[i], NULL, p1, 8, &f1);
        size_t n2 = redtls__command_keys_cached(&cache, argc, cmds[i], NULL, p2, 8, &f2);
        assert_int_equal(n1, n2);
        assert_int_equal(f1, f2);
        for (size_t k = 0; k < n1 && k < 8; k++)
            assert_int_equal(p1[k], p2[k]);
    }
}

/* redtls__command_one_key (inline, the cluster clients' common case):
 * after a lookup of a one-key command it answers for the same name,
 * spelled the same way, at every length its comparison treats apart
 * (1 to 3, 4 to 8, beyond), and not for a name of the same length that
 * differs at its first, middle or last byte, or for another case. */
static void test_one_key_inline(void **state)
{
    (void)state;
    static const char *const names[] = {"GET", "INCR", "LPUSH", "HGETALL", "GETRANGE", "INCRBYFLOAT",
                                        "ZREVRANGEBYSCORE"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        redtls__cmd_cache cache;
        memset(&cache, 0, sizeof cache);
        const char *argv[] = {names[i], "k", "a", "b"};
        size_t lens[] = {strlen(names[i]), 1, 1, 1};
        size_t pos[8];
        unsigned f = 0, g = 99;
        redtls__command_keys_cached(&cache, 4, argv, lens, pos, 8, &f);
        assert_int_equal(redtls__command_one_key(&cache, 4, argv, lens, &g), 1);
        assert_int_equal(g, f);
        char other[32];
        size_t n = lens[0];
        size_t at[] = {0, n / 2, n - 1};
        for (size_t j = 0; j < 3; j++) {
            memcpy(other, names[i], n + 1);
            other[at[j]] = other[at[j]] == 'Q' ? 'X' : 'Q';
            const char *oargv[] = {other, "k", "a", "b"};
            g = 99;
            assert_int_equal(redtls__command_one_key(&cache, 4, oargv, lens, &g), 0);
            assert_int_equal(g, 99);
        }
        for (size_t k = 0; k < n; k++)
            other[k] = (char)(names[i][k] | 0x20);
        other[n] = '\0';
        const char *largv[] = {other, "k", "a", "b"};
        assert_int_equal(redtls__command_one_key(&cache, 4, largv, lens, &g), 0);
    }
    /* One byte: a name the cache holds only from a lookup of its own. */
    redtls__cmd_cache cache;
    memset(&cache, 0, sizeof cache);
    cache.len = 1;
    cache.name[0] = 'X';
    cache.one_key_argc = 2;
    cache.one_key_flags = REDTLS__CMD_KNOWN;
    const char *x[] = {"X", "k"}, *y[] = {"Y", "k"};
    size_t xl[] = {1, 1};
    unsigned g = 0;
    assert_int_equal(redtls__command_one_key(&cache, 2, x, xl, &g), 1);
    assert_int_equal(g, REDTLS__CMD_KNOWN);
    assert_int_equal(redtls__command_one_key(&cache, 2, y, xl, &g), 0);
}

/* The lookup's cost per call, printed: time is measured, never asserted
 * (on a shared machine it moves by 10-100 %; the instruction counts of
 * scripts/bench.sh are the figure to compare). */
static void test_lookup_cost(void **state)
{
    (void)state;
    const char *get[] = {"GET", "some:key"};
    const char *zrevbs[] = {"zrevrangebyscore", "k", "+inf", "-inf"};
    const char *xinfo[] = {"XINFO", "STREAM", "s"};
    /* Fewer calls under valgrind, which is slow. */
    int calls = under_valgrind() ? COST_CALLS / 100 : COST_CALLS;
    double g = cost_ns(2, get, calls);
    double z = cost_ns(4, zrevbs, calls);
    double x = cost_ns(3, xinfo, calls);
    print_message("lookup cost: GET %.1f ns, ZREVRANGEBYSCORE %.1f ns, XINFO STREAM %.1f ns\n", g, z, x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_key),
        cmocka_unit_test(test_case_insensitive),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_subcommands),
        cmocka_unit_test(test_numkeys),
        cmocka_unit_test(test_numkeys_malformed),
        cmocka_unit_test(test_streams),
        cmocka_unit_test(test_sort),
        cmocka_unit_test(test_migrate),
        cmocka_unit_test(test_georadius),
        cmocka_unit_test(test_keyless),
        cmocka_unit_test(test_too_few_args),
        cmocka_unit_test(test_short_pos_array),
        cmocka_unit_test(test_binary_argv),
        cmocka_unit_test(test_unknown),
        cmocka_unit_test(test_readonly),
        cmocka_unit_test(test_cache_matches),
        cmocka_unit_test(test_one_key_inline),
        cmocka_unit_test(test_lookup_cost),
    };
    return cmocka_run_group_tests_name("cluster_keys", tests, NULL, NULL);
}

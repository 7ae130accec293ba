/* Key positions of Redis commands, for cluster routing: a static table.
 *
 * Why a table compiled in, rather than asking the server (COMMAND, or
 * COMMAND GETKEYS per call): no extra round trip when a node is connected,
 * it works where COMMAND is renamed or blocked (several managed services do
 * that), and routing is deterministic: the same argv goes to the same slot
 * whatever node we happened to ask first and whatever its version.
 *
 * The table. `commands` holds one entry per Redis 7.0 command plus the 7.2
 * additions (WAITAOF, CLIENT NO-TOUCH, CLIENT SETINFO, CLUSTER MYSHARDID);
 * a container command (OBJECT, XINFO, CLIENT, ...) points to its own table
 * of subcommands. Every table is sorted by name in strcmp() order, names in
 * lower case, so a lookup is a binary search over the lower-cased argument
 * (about 8 steps in 241 entries; a lookup of GET costs about 15 ns in an
 * optimised build, measured in tests/unit/test_cluster_keys.c). Each entry has
 * the command's arity as Redis declares it (negative: at least that many
 * arguments, counting the command name; we only use it as a minimum, so a
 * later version that adds optional arguments still routes), the "readonly"
 * flag, and a key layout (a new row goes in name order: a misplaced one is
 * never found, which the integration test below notices):
 *
 *   NOKEYS                     no keys (PING, CLUSTER INFO, SCAN, PUBLISH)
 *   RANGE first last step      keys at first, first+step, ... up to last;
 *                              a negative last counts from the end (-1 is
 *                              the last argument, -2 the one before: BLPOP
 *                              k1 k2 timeout). The legacy first/last/step
 *                              triple of COMMAND.
 *   KEYNUM at dest min         a key count at argv[at] (at least min) with
 *                              that many keys right after it; dest 1 when
 *                              argv[1] is a destination key (ZUNIONSTORE)
 *   STREAMS                    XREAD/XREADGROUP: the options parsed as the
 *                              server does; after STREAMS the first half of
 *                              the arguments are keys, the second half IDs
 *   SORT                       argv[1] and the destination of the last STORE
 *   MIGRATE                    argv[3], or the list after KEYS when argv[3]
 *                              is empty
 *   GEO from                   argv[1], and the arguments after the first
 *                              STORE and the first STOREDIST at or after
 *                              argv[from] (GEORADIUS, GEORADIUSBYMEMBER)
 *
 * The movable layouts follow the server's own key extraction (key specs,
 * falling back to the getkeys functions, as cluster routing and COMMAND
 * GETKEYS do in 7.0). Shard channels (SPUBLISH, SSUBSCRIBE, SUNSUBSCRIBE)
 * are listed as keys: their key specs carry NOT_KEY, but they hash to a slot
 * and must go to its node.
 *
 * How it was checked: tests/integration/test_cluster_keys.c asks a real
 * redis-server for COMMAND and requires every command and subcommand it
 * lists to be in the table with the same "readonly" flag, keyless ones as
 * NOKEYS; it compares our key positions with COMMAND GETKEYS for every keyed
 * command (several argument counts) and for hand-written samples of each
 * movable-key command. The table was first generated from that server's
 * COMMAND output and then reviewed by hand. */
#include <string.h>
#include <strings.h>

#include "keys.h"
#include "common.h"

enum {
    LAYOUT_NOKEYS,
    LAYOUT_RANGE,
    LAYOUT_KEYNUM,
    LAYOUT_STREAMS,
    LAYOUT_SORT,
    LAYOUT_MIGRATE,
    LAYOUT_GEO,
    LAYOUT_CONTAINER
};

typedef struct cmd_entry {
    const char *name;             /* lower case */
    const struct cmd_entry *sub;  /* LAYOUT_CONTAINER: sorted subcommands */
    unsigned char nsub;
    signed char arity;            /* as Redis declares it */
    unsigned char readonly;
    unsigned char layout;
    signed char a, b, c;          /* RANGE: first, last, step; KEYNUM: at,
                                   * dest, min; GEO: from */
} cmd_entry;

/* Table rows: name, arity, RO or 0 (the "readonly" flag), then the
 * layout's parameters. */
#define RO 1
#define NOKEYS(n, ar, ro) {(n), NULL, 0, (ar), (ro), LAYOUT_NOKEYS, 0, 0, 0}
#define RANGE(n, ar, ro, first, last, step) {(n), NULL, 0, (ar), (ro), LAYOUT_RANGE, (first), (last), (step)}
#define KEYNUM(n, ar, ro, at, dest, min) {(n), NULL, 0, (ar), (ro), LAYOUT_KEYNUM, (at), (dest), (min)}
#define STREAMS(n, ar, ro) {(n), NULL, 0, (ar), (ro), LAYOUT_STREAMS, 0, 0, 0}
#define SORT(n, ar, ro) {(n), NULL, 0, (ar), (ro), LAYOUT_SORT, 0, 0, 0}
#define MIGRATE(n, ar, ro) {(n), NULL, 0, (ar), (ro), LAYOUT_MIGRATE, 0, 0, 0}
#define GEO(n, ar, ro, from) {(n), NULL, 0, (ar), (ro), LAYOUT_GEO, (from), 0, 0}
#define CONTAINER(n, t) {(n), (t), (unsigned char)(sizeof(t) / sizeof((t)[0])), -2, 0, LAYOUT_CONTAINER, 0, 0, 0}

/* Subcommands first, so the main table can point to them. */
static const cmd_entry acl_subcommands[] = {
    NOKEYS("cat", -2, 0),
    NOKEYS("deluser", -3, 0),
    NOKEYS("dryrun", -4, 0),
    NOKEYS("genpass", -2, 0),
    NOKEYS("getuser", 3, 0),
    NOKEYS("help", 2, 0),
    NOKEYS("list", 2, 0),
    NOKEYS("load", 2, 0),
    NOKEYS("log", -2, 0),
    NOKEYS("save", 2, 0),
    NOKEYS("setuser", -3, 0),
    NOKEYS("users", 2, 0),
    NOKEYS("whoami", 2, 0),
};

static const cmd_entry client_subcommands[] = {
    NOKEYS("caching", 3, 0),
    NOKEYS("getname", 2, 0),
    NOKEYS("getredir", 2, 0),
    NOKEYS("help", 2, 0),
    NOKEYS("id", 2, 0),
    NOKEYS("info", 2, 0),
    NOKEYS("kill", -3, 0),
    NOKEYS("list", -2, 0),
    NOKEYS("no-evict", 3, 0),
    NOKEYS("no-touch", 3, 0),
    NOKEYS("pause", -3, 0),
    NOKEYS("reply", 3, 0),
    NOKEYS("setinfo", 4, 0),
    NOKEYS("setname", 3, 0),
    NOKEYS("tracking", -3, 0),
    NOKEYS("trackinginfo", 2, 0),
    NOKEYS("unblock", -3, 0),
    NOKEYS("unpause", 2, 0),
};

static const cmd_entry cluster_subcommands[] = {
    NOKEYS("addslots", -3, 0),
    NOKEYS("addslotsrange", -4, 0),
    NOKEYS("bumpepoch", 2, 0),
    NOKEYS("count-failure-reports", 3, 0),
    NOKEYS("countkeysinslot", 3, 0),
    NOKEYS("delslots", -3, 0),
    NOKEYS("delslotsrange", -4, 0),
    NOKEYS("failover", -2, 0),
    NOKEYS("flushslots", 2, 0),
    NOKEYS("forget", 3, 0),
    NOKEYS("getkeysinslot", 4, 0),
    NOKEYS("help", 2, 0),
    NOKEYS("info", 2, 0),
    NOKEYS("keyslot", 3, 0),
    NOKEYS("links", 2, 0),
    NOKEYS("meet", -4, 0),
    NOKEYS("myid", 2, 0),
    NOKEYS("myshardid", 2, 0),
    NOKEYS("nodes", 2, 0),
    NOKEYS("replicas", 3, 0),
    NOKEYS("replicate", 3, 0),
    NOKEYS("reset", -2, 0),
    NOKEYS("saveconfig", 2, 0),
    NOKEYS("set-config-epoch", 3, 0),
    NOKEYS("setslot", -4, 0),
    NOKEYS("shards", 2, 0),
    NOKEYS("slaves", 3, 0),
    NOKEYS("slots", 2, 0),
};

static const cmd_entry command_subcommands[] = {
    NOKEYS("count", 2, 0),
    NOKEYS("docs", -2, 0),
    NOKEYS("getkeys", -4, 0),
    NOKEYS("getkeysandflags", -4, 0),
    NOKEYS("help", 2, 0),
    NOKEYS("info", -2, 0),
    NOKEYS("list", -2, 0),
};

static const cmd_entry config_subcommands[] = {
    NOKEYS("get", -3, 0),
    NOKEYS("help", 2, 0),
    NOKEYS("resetstat", 2, 0),
    NOKEYS("rewrite", 2, 0),
    NOKEYS("set", -4, 0),
};

static const cmd_entry function_subcommands[] = {
    NOKEYS("delete", 3, 0),
    NOKEYS("dump", 2, 0),
    NOKEYS("flush", -2, 0),
    NOKEYS("help", 2, 0),
    NOKEYS("kill", 2, 0),
    NOKEYS("list", -2, 0),
    NOKEYS("load", -3, 0),
    NOKEYS("restore", -3, 0),
    NOKEYS("stats", 2, 0),
};

static const cmd_entry latency_subcommands[] = {
    NOKEYS("doctor", 2, 0),
    NOKEYS("graph", 3, 0),
    NOKEYS("help", 2, 0),
    NOKEYS("histogram", -2, 0),
    NOKEYS("history", 3, 0),
    NOKEYS("latest", 2, 0),
    NOKEYS("reset", -2, 0),
};

static const cmd_entry memory_subcommands[] = {
    NOKEYS("doctor", 2, 0),
    NOKEYS("help", 2, 0),
    NOKEYS("malloc-stats", 2, 0),
    NOKEYS("purge", 2, 0),
    NOKEYS("stats", 2, 0),
    RANGE("usage", -3, RO, 2, 2, 1),
};

static const cmd_entry module_subcommands[] = {
    NOKEYS("help", 2, 0),
    NOKEYS("list", 2, 0),
    NOKEYS("load", -3, 0),
    NOKEYS("loadex", -3, 0),
    NOKEYS("unload", 3, 0),
};

static const cmd_entry object_subcommands[] = {
    RANGE("encoding", 3, RO, 2, 2, 1),
    RANGE("freq", 3, RO, 2, 2, 1),
    NOKEYS("help", 2, 0),
    RANGE("idletime", 3, RO, 2, 2, 1),
    RANGE("refcount", 3, RO, 2, 2, 1),
};

static const cmd_entry pubsub_subcommands[] = {
    NOKEYS("channels", -2, 0),
    NOKEYS("help", 2, 0),
    NOKEYS("numpat", 2, 0),
    NOKEYS("numsub", -2, 0),
    NOKEYS("shardchannels", -2, 0),
    NOKEYS("shardnumsub", -2, 0),
};

static const cmd_entry script_subcommands[] = {
    NOKEYS("debug", 3, 0),
    NOKEYS("exists", -3, 0),
    NOKEYS("flush", -2, 0),
    NOKEYS("help", 2, 0),
    NOKEYS("kill", 2, 0),
    NOKEYS("load", 3, 0),
};

static const cmd_entry slowlog_subcommands[] = {
    NOKEYS("get", -2, 0),
    NOKEYS("help", 2, 0),
    NOKEYS("len", 2, 0),
    NOKEYS("reset", 2, 0),
};

static const cmd_entry xgroup_subcommands[] = {
    RANGE("create", -5, 0, 2, 2, 1),
    RANGE("createconsumer", 5, 0, 2, 2, 1),
    RANGE("delconsumer", 5, 0, 2, 2, 1),
    RANGE("destroy", 4, 0, 2, 2, 1),
    NOKEYS("help", 2, 0),
    RANGE("setid", -5, 0, 2, 2, 1),
};

static const cmd_entry xinfo_subcommands[] = {
    RANGE("consumers", 4, RO, 2, 2, 1),
    RANGE("groups", 3, RO, 2, 2, 1),
    NOKEYS("help", 2, 0),
    RANGE("stream", -3, RO, 2, 2, 1),
};

/* Redis 7.0 commands, plus WAITAOF from 7.2. */
static const cmd_entry commands[] = {
    CONTAINER("acl", acl_subcommands),
    RANGE("append", 3, 0, 1, 1, 1),
    NOKEYS("asking", 1, 0),
    NOKEYS("auth", -2, 0),
    NOKEYS("bgrewriteaof", 1, 0),
    NOKEYS("bgsave", -1, 0),
    RANGE("bitcount", -2, RO, 1, 1, 1),
    RANGE("bitfield", -2, 0, 1, 1, 1),
    RANGE("bitfield_ro", -2, RO, 1, 1, 1),
    RANGE("bitop", -4, 0, 2, -1, 1),
    RANGE("bitpos", -3, RO, 1, 1, 1),
    RANGE("blmove", 6, 0, 1, 2, 1),
    KEYNUM("blmpop", -5, 0, 2, 0, 1),
    RANGE("blpop", -3, 0, 1, -2, 1),
    RANGE("brpop", -3, 0, 1, -2, 1),
    RANGE("brpoplpush", 4, 0, 1, 2, 1),
    KEYNUM("bzmpop", -5, 0, 2, 0, 1),
    RANGE("bzpopmax", -3, 0, 1, -2, 1),
    RANGE("bzpopmin", -3, 0, 1, -2, 1),
    CONTAINER("client", client_subcommands),
    CONTAINER("cluster", cluster_subcommands),
    CONTAINER("command", command_subcommands),
    CONTAINER("config", config_subcommands),
    RANGE("copy", -3, 0, 1, 2, 1),
    NOKEYS("dbsize", 1, RO),
    NOKEYS("debug", -2, 0),
    RANGE("decr", 2, 0, 1, 1, 1),
    RANGE("decrby", 3, 0, 1, 1, 1),
    RANGE("del", -2, 0, 1, -1, 1),
    NOKEYS("discard", 1, 0),
    RANGE("dump", 2, RO, 1, 1, 1),
    NOKEYS("echo", 2, 0),
    KEYNUM("eval", -3, 0, 2, 0, 0),
    KEYNUM("eval_ro", -3, RO, 2, 0, 0),
    KEYNUM("evalsha", -3, 0, 2, 0, 0),
    KEYNUM("evalsha_ro", -3, RO, 2, 0, 0),
    NOKEYS("exec", 1, 0),
    RANGE("exists", -2, RO, 1, -1, 1),
    RANGE("expire", -3, 0, 1, 1, 1),
    RANGE("expireat", -3, 0, 1, 1, 1),
    RANGE("expiretime", 2, RO, 1, 1, 1),
    NOKEYS("failover", -1, 0),
    KEYNUM("fcall", -3, 0, 2, 0, 0),
    KEYNUM("fcall_ro", -3, RO, 2, 0, 0),
    NOKEYS("flushall", -1, 0),
    NOKEYS("flushdb", -1, 0),
    CONTAINER("function", function_subcommands),
    RANGE("geoadd", -5, 0, 1, 1, 1),
    RANGE("geodist", -4, RO, 1, 1, 1),
    RANGE("geohash", -2, RO, 1, 1, 1),
    RANGE("geopos", -2, RO, 1, 1, 1),
    GEO("georadius", -6, 0, 6),
    RANGE("georadius_ro", -6, RO, 1, 1, 1),
    GEO("georadiusbymember", -5, 0, 5),
    RANGE("georadiusbymember_ro", -5, RO, 1, 1, 1),
    RANGE("geosearch", -7, RO, 1, 1, 1),
    RANGE("geosearchstore", -8, 0, 1, 2, 1),
    RANGE("get", 2, RO, 1, 1, 1),
    RANGE("getbit", 3, RO, 1, 1, 1),
    RANGE("getdel", 2, 0, 1, 1, 1),
    RANGE("getex", -2, 0, 1, 1, 1),
    RANGE("getrange", 4, RO, 1, 1, 1),
    RANGE("getset", 3, 0, 1, 1, 1),
    RANGE("hdel", -3, 0, 1, 1, 1),
    NOKEYS("hello", -1, 0),
    RANGE("hexists", 3, RO, 1, 1, 1),
    RANGE("hget", 3, RO, 1, 1, 1),
    RANGE("hgetall", 2, RO, 1, 1, 1),
    RANGE("hincrby", 4, 0, 1, 1, 1),
    RANGE("hincrbyfloat", 4, 0, 1, 1, 1),
    RANGE("hkeys", 2, RO, 1, 1, 1),
    RANGE("hlen", 2, RO, 1, 1, 1),
    RANGE("hmget", -3, RO, 1, 1, 1),
    RANGE("hmset", -4, 0, 1, 1, 1),
    RANGE("hrandfield", -2, RO, 1, 1, 1),
    RANGE("hscan", -3, RO, 1, 1, 1),
    RANGE("hset", -4, 0, 1, 1, 1),
    RANGE("hsetnx", 4, 0, 1, 1, 1),
    RANGE("hstrlen", 3, RO, 1, 1, 1),
    RANGE("hvals", 2, RO, 1, 1, 1),
    RANGE("incr", 2, 0, 1, 1, 1),
    RANGE("incrby", 3, 0, 1, 1, 1),
    RANGE("incrbyfloat", 3, 0, 1, 1, 1),
    NOKEYS("info", -1, 0),
    NOKEYS("keys", 2, RO),
    NOKEYS("lastsave", 1, 0),
    CONTAINER("latency", latency_subcommands),
    RANGE("lcs", -3, RO, 1, 2, 1),
    RANGE("lindex", 3, RO, 1, 1, 1),
    RANGE("linsert", 5, 0, 1, 1, 1),
    RANGE("llen", 2, RO, 1, 1, 1),
    RANGE("lmove", 5, 0, 1, 2, 1),
    KEYNUM("lmpop", -4, 0, 1, 0, 1),
    NOKEYS("lolwut", -1, RO),
    RANGE("lpop", -2, 0, 1, 1, 1),
    RANGE("lpos", -3, RO, 1, 1, 1),
    RANGE("lpush", -3, 0, 1, 1, 1),
    RANGE("lpushx", -3, 0, 1, 1, 1),
    RANGE("lrange", 4, RO, 1, 1, 1),
    RANGE("lrem", 4, 0, 1, 1, 1),
    RANGE("lset", 4, 0, 1, 1, 1),
    RANGE("ltrim", 4, 0, 1, 1, 1),
    CONTAINER("memory", memory_subcommands),
    RANGE("mget", -2, RO, 1, -1, 1),
    MIGRATE("migrate", -6, 0),
    CONTAINER("module", module_subcommands),
    NOKEYS("monitor", 1, 0),
    RANGE("move", 3, 0, 1, 1, 1),
    RANGE("mset", -3, 0, 1, -1, 2),
    RANGE("msetnx", -3, 0, 1, -1, 2),
    NOKEYS("multi", 1, 0),
    CONTAINER("object", object_subcommands),
    RANGE("persist", 2, 0, 1, 1, 1),
    RANGE("pexpire", -3, 0, 1, 1, 1),
    RANGE("pexpireat", -3, 0, 1, 1, 1),
    RANGE("pexpiretime", 2, RO, 1, 1, 1),
    RANGE("pfadd", -2, 0, 1, 1, 1),
    RANGE("pfcount", -2, RO, 1, -1, 1),
    RANGE("pfdebug", 3, 0, 2, 2, 1),
    RANGE("pfmerge", -2, 0, 1, -1, 1),
    NOKEYS("pfselftest", 1, 0),
    NOKEYS("ping", -1, 0),
    RANGE("psetex", 4, 0, 1, 1, 1),
    NOKEYS("psubscribe", -2, 0),
    NOKEYS("psync", -3, 0),
    RANGE("pttl", 2, RO, 1, 1, 1),
    NOKEYS("publish", 3, 0),
    CONTAINER("pubsub", pubsub_subcommands),
    NOKEYS("punsubscribe", -1, 0),
    NOKEYS("quit", -1, 0),
    NOKEYS("randomkey", 1, RO),
    NOKEYS("readonly", 1, 0),
    NOKEYS("readwrite", 1, 0),
    RANGE("rename", 3, 0, 1, 2, 1),
    RANGE("renamenx", 3, 0, 1, 2, 1),
    NOKEYS("replconf", -1, 0),
    NOKEYS("replicaof", 3, 0),
    NOKEYS("reset", 1, 0),
    RANGE("restore", -4, 0, 1, 1, 1),
    RANGE("restore-asking", -4, 0, 1, 1, 1),
    NOKEYS("role", 1, 0),
    RANGE("rpop", -2, 0, 1, 1, 1),
    RANGE("rpoplpush", 3, 0, 1, 2, 1),
    RANGE("rpush", -3, 0, 1, 1, 1),
    RANGE("rpushx", -3, 0, 1, 1, 1),
    RANGE("sadd", -3, 0, 1, 1, 1),
    NOKEYS("save", 1, 0),
    NOKEYS("scan", -2, RO),
    RANGE("scard", 2, RO, 1, 1, 1),
    CONTAINER("script", script_subcommands),
    RANGE("sdiff", -2, RO, 1, -1, 1),
    RANGE("sdiffstore", -3, 0, 1, -1, 1),
    NOKEYS("select", 2, 0),
    RANGE("set", -3, 0, 1, 1, 1),
    RANGE("setbit", 4, 0, 1, 1, 1),
    RANGE("setex", 4, 0, 1, 1, 1),
    RANGE("setnx", 3, 0, 1, 1, 1),
    RANGE("setrange", 4, 0, 1, 1, 1),
    NOKEYS("shutdown", -1, 0),
    RANGE("sinter", -2, RO, 1, -1, 1),
    KEYNUM("sintercard", -3, RO, 1, 0, 1),
    RANGE("sinterstore", -3, 0, 1, -1, 1),
    RANGE("sismember", 3, RO, 1, 1, 1),
    NOKEYS("slaveof", 3, 0),
    CONTAINER("slowlog", slowlog_subcommands),
    RANGE("smembers", 2, RO, 1, 1, 1),
    RANGE("smismember", -3, RO, 1, 1, 1),
    RANGE("smove", 4, 0, 1, 2, 1),
    SORT("sort", -2, 0),
    RANGE("sort_ro", -2, RO, 1, 1, 1),
    RANGE("spop", -2, 0, 1, 1, 1),
    RANGE("spublish", 3, 0, 1, 1, 1),
    RANGE("srandmember", -2, RO, 1, 1, 1),
    RANGE("srem", -3, 0, 1, 1, 1),
    RANGE("sscan", -3, RO, 1, 1, 1),
    RANGE("ssubscribe", -2, 0, 1, -1, 1),
    RANGE("strlen", 2, RO, 1, 1, 1),
    NOKEYS("subscribe", -2, 0),
    RANGE("substr", 4, RO, 1, 1, 1),
    RANGE("sunion", -2, RO, 1, -1, 1),
    RANGE("sunionstore", -3, 0, 1, -1, 1),
    RANGE("sunsubscribe", -1, 0, 1, -1, 1),
    NOKEYS("swapdb", 3, 0),
    NOKEYS("sync", 1, 0),
    NOKEYS("time", 1, 0),
    RANGE("touch", -2, RO, 1, -1, 1),
    RANGE("ttl", 2, RO, 1, 1, 1),
    RANGE("type", 2, RO, 1, 1, 1),
    RANGE("unlink", -2, 0, 1, -1, 1),
    NOKEYS("unsubscribe", -1, 0),
    NOKEYS("unwatch", 1, 0),
    NOKEYS("wait", 3, 0),
    NOKEYS("waitaof", 4, 0),
    RANGE("watch", -2, 0, 1, -1, 1),
    RANGE("xack", -4, 0, 1, 1, 1),
    RANGE("xadd", -5, 0, 1, 1, 1),
    RANGE("xautoclaim", -6, 0, 1, 1, 1),
    RANGE("xclaim", -6, 0, 1, 1, 1),
    RANGE("xdel", -3, 0, 1, 1, 1),
    CONTAINER("xgroup", xgroup_subcommands),
    CONTAINER("xinfo", xinfo_subcommands),
    RANGE("xlen", 2, RO, 1, 1, 1),
    RANGE("xpending", -3, RO, 1, 1, 1),
    RANGE("xrange", -4, RO, 1, 1, 1),
    STREAMS("xread", -4, RO),
    STREAMS("xreadgroup", -7, 0),
    RANGE("xrevrange", -4, RO, 1, 1, 1),
    RANGE("xsetid", -3, 0, 1, 1, 1),
    RANGE("xtrim", -4, 0, 1, 1, 1),
    RANGE("zadd", -4, 0, 1, 1, 1),
    RANGE("zcard", 2, RO, 1, 1, 1),
    RANGE("zcount", 4, RO, 1, 1, 1),
    KEYNUM("zdiff", -3, RO, 1, 0, 1),
    KEYNUM("zdiffstore", -4, 0, 2, 1, 1),
    RANGE("zincrby", 4, 0, 1, 1, 1),
    KEYNUM("zinter", -3, RO, 1, 0, 1),
    KEYNUM("zintercard", -3, RO, 1, 0, 1),
    KEYNUM("zinterstore", -4, 0, 2, 1, 1),
    RANGE("zlexcount", 4, RO, 1, 1, 1),
    KEYNUM("zmpop", -4, 0, 1, 0, 1),
    RANGE("zmscore", -3, RO, 1, 1, 1),
    RANGE("zpopmax", -2, 0, 1, 1, 1),
    RANGE("zpopmin", -2, 0, 1, 1, 1),
    RANGE("zrandmember", -2, RO, 1, 1, 1),
    RANGE("zrange", -4, RO, 1, 1, 1),
    RANGE("zrangebylex", -4, RO, 1, 1, 1),
    RANGE("zrangebyscore", -4, RO, 1, 1, 1),
    RANGE("zrangestore", -5, 0, 1, 2, 1),
    RANGE("zrank", 3, RO, 1, 1, 1),
    RANGE("zrem", -3, 0, 1, 1, 1),
    RANGE("zremrangebylex", 4, 0, 1, 1, 1),
    RANGE("zremrangebyrank", 4, 0, 1, 1, 1),
    RANGE("zremrangebyscore", 4, 0, 1, 1, 1),
    RANGE("zrevrange", -4, RO, 1, 1, 1),
    RANGE("zrevrangebylex", -4, RO, 1, 1, 1),
    RANGE("zrevrangebyscore", -4, RO, 1, 1, 1),
    RANGE("zrevrank", 3, RO, 1, 1, 1),
    RANGE("zscan", -3, RO, 1, 1, 1),
    RANGE("zscore", 3, RO, 1, 1, 1),
    KEYNUM("zunion", -3, RO, 1, 0, 1),
    KEYNUM("zunionstore", -4, 0, 2, 1, 1),
};

#define COUNT(t) (sizeof(t) / sizeof((t)[0]))
/* Longer than any name in the tables. */
#define CMD_NAME_MAX 24

/* Where found keys go: the first cap positions are stored, all are
 * counted. */
typedef struct key_out {
    size_t *pos;
    size_t cap;
    size_t n;
} key_out;

static void put(key_out *out, size_t i)
{
    if (out->n < out->cap)
        out->pos[out->n] = i;
    out->n++;
}

static size_t arg_len(const char *const *argv, const size_t *lens, size_t i)
{
    return lens ? lens[i] : strlen(argv[i]);
}

/* argv[i] equals word (lower case) ignoring ASCII case. */
static int arg_is(const char *const *argv, const size_t *lens, size_t i, const char *word)
{
    size_t len = arg_len(argv, lens, i);
    if (len != strlen(word))
        return 0;
    for (size_t k = 0; k < len; k++) {
        unsigned char ch = (unsigned char)argv[i][k];
        if (ch >= 'A' && ch <= 'Z')
            ch = (unsigned char)(ch - 'A' + 'a');
        if (ch != (unsigned char)word[k])
            return 0;
    }
    return 1;
}

/* strcmp() order between a table name and the lower-cased key[0..len),
 * which may hold any byte, NUL included. */
static int name_cmp(const char *name, const unsigned char *key, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch != key[i])
            return ch < key[i] ? -1 : 1;
        if (ch == '\0')
            return -1;
    }
    return name[len] != '\0';
}

static const cmd_entry *lookup(const cmd_entry *table, size_t n, const char *name, size_t len)
{
    unsigned char low[CMD_NAME_MAX];
    if (len == 0 || len > sizeof low)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        low[i] = ch >= 'A' && ch <= 'Z' ? (unsigned char)(ch - 'A' + 'a') : ch;
    }
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        /* Most steps are decided by the first byte. */
        unsigned char first = (unsigned char)table[mid].name[0];
        int c = first != low[0] ? (first < low[0] ? -1 : 1) : name_cmp(table[mid].name, low, len);
        if (c == 0)
            return &table[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void range_keys(const cmd_entry *e, size_t argc, key_out *out)
{
    size_t first = (size_t)e->a, step = (size_t)e->c;
    /* A negative last counts from the end; it may fall before first (a
     * SUNSUBSCRIBE without channels), and then there are no keys. */
    if (e->b < 0 && (size_t)(-e->b) > argc)
        return;
    size_t last = e->b >= 0 ? (size_t)e->b : argc - (size_t)(-e->b);
    for (size_t i = first; i <= last && i < argc; i += step)
        put(out, i);
}

/* numkeys at argv[at], then the keys. The server's own parser (string2ll)
 * takes no sign, no spaces and no leading zeros, so neither do we. */
static int keynum_keys(const cmd_entry *e, size_t argc, const char *const *argv, const size_t *lens, key_out *out)
{
    size_t at = (size_t)e->a;
    size_t len = arg_len(argv, lens, at);
    unsigned long numkeys;
    if (len > 1 && argv[at][0] == '0')
        return -1;
    if (redtls__parse_decimal(argv[at], len, (unsigned long)(argc - at - 1), &numkeys) != 0 ||
        numkeys < (unsigned long)e->c)
        return -1;
    if (e->b)
        put(out, 1);
    for (size_t k = 0; k < numkeys; k++)
        put(out, at + 1 + k);
    return 0;
}

/* XREAD [COUNT n] [BLOCK ms] STREAMS k1 .. kN id1 .. idN, and XREADGROUP
 * GROUP g c [COUNT n] [BLOCK ms] [NOACK] STREAMS ...: the options are
 * skipped as the server does, since "STREAMS" may also be a group, a
 * consumer or a key name. */
static int streams_keys(size_t argc, const char *const *argv, const size_t *lens, key_out *out)
{
    size_t i = 1, streams = 0;
    while (i < argc) {
        if (arg_is(argv, lens, i, "count") || arg_is(argv, lens, i, "block")) {
            i += 2;
        } else if (arg_is(argv, lens, i, "group")) {
            i += 3;
        } else if (arg_is(argv, lens, i, "noack")) {
            i += 1;
        } else {
            if (arg_is(argv, lens, i, "streams"))
                streams = i;
            break;
        }
    }
    size_t rest = streams ? argc - streams - 1 : 0;
    if (rest == 0 || rest % 2 != 0)
        return -1;
    for (size_t k = 0; k < rest / 2; k++)
        put(out, streams + 1 + k);
    return 0;
}

/* SORT key [BY p] [LIMIT o c] [GET p ...] [ASC|DESC] [ALPHA] [STORE dst]:
 * the last STORE wins, as in the server. */
static void sort_keys(size_t argc, const char *const *argv, const size_t *lens, key_out *out)
{
    size_t store = 0;
    for (size_t i = 2; i < argc; i++) {
        if (arg_is(argv, lens, i, "limit"))
            i += 2;
        else if (arg_is(argv, lens, i, "get") || arg_is(argv, lens, i, "by"))
            i += 1;
        else if (arg_is(argv, lens, i, "store") && i + 1 < argc)
            store = i + 1;
    }
    put(out, 1);
    if (store)
        put(out, store);
}

/* MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw]
 * [AUTH2 user pw] [KEYS k1 ...]. */
static int migrate_keys(size_t argc, const char *const *argv, const size_t *lens, key_out *out)
{
    for (size_t i = 6; i < argc; i++) {
        if (arg_is(argv, lens, i, "keys")) {
            /* KEYS needs the single-key argument empty. */
            if (arg_len(argv, lens, 3) != 0)
                return -1;
            for (size_t k = i + 1; k < argc; k++)
                put(out, k);
            return 0;
        }
        if (arg_is(argv, lens, i, "auth"))
            i += 1;
        else if (arg_is(argv, lens, i, "auth2"))
            i += 2;
    }
    put(out, 3);
    return 0;
}

/* GEORADIUS key lon lat radius unit ... [STORE k] [STOREDIST k]: like the
 * server's key specs, the first of each keyword from argv[from] on; a
 * keyword in the last place has no key after it. */
static void geo_keys(const cmd_entry *e, size_t argc, const char *const *argv, const size_t *lens, key_out *out)
{
    size_t store = 0, storedist = 0;
    for (size_t i = (size_t)e->a; i + 1 < argc; i++) {
        if (!store && arg_is(argv, lens, i, "store"))
            store = i + 1;
        else if (!storedist && arg_is(argv, lens, i, "storedist"))
            storedist = i + 1;
    }
    size_t lo = store < storedist ? store : storedist, hi = store < storedist ? storedist : store;
    put(out, 1);
    if (lo)
        put(out, lo);
    if (hi)
        put(out, hi);
}

static int container_has_keys(const cmd_entry *e)
{
    for (size_t i = 0; i < e->nsub; i++)
        if (e->sub[i].layout != LAYOUT_NOKEYS)
            return 1;
    return 0;
}

/* Command names are short: a loop beats a call to memcmp. */
static int same_name(const char *a, const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

size_t redtls__command_keys(int argc, const char *const *argv, const size_t *lens, size_t *pos, size_t cap,
                            unsigned *flags)
{
    return redtls__command_keys_cached(NULL, argc, argv, lens, pos, cap, flags);
}

size_t redtls__command_keys_cached(redtls__cmd_cache *cache, int argc, const char *const *argv, const size_t *lens,
                                   size_t *pos, size_t cap, unsigned *flags)
{
    key_out out = {pos, pos ? cap : 0, 0};
    unsigned fl = 0;
    const cmd_entry *e = NULL;
    if (argc > 0 && argv) {
        size_t len = arg_len(argv, lens, 0);
        if (cache && cache->entry && cache->len == len && same_name(cache->name, argv[0], len)) {
            e = cache->entry;
        } else {
            e = lookup(commands, COUNT(commands), argv[0], len);
            if (cache && e && len <= sizeof cache->name) {
                memcpy(cache->name, argv[0], len);
                cache->len = len;
                cache->entry = e;
                size_t need = (size_t)(e->arity < 0 ? -e->arity : e->arity);
                int one = e->layout == LAYOUT_RANGE && e->a == 1 && e->b == 1;
                cache->one_key_argc = one ? (need > 2 ? need : 2) : 0;
                cache->one_key_flags = REDTLS__CMD_KNOWN | (e->readonly ? REDTLS__CMD_READONLY : 0);
            }
        }
    }
    if (e && e->layout == LAYOUT_CONTAINER) {
        if (argc < 2) {
            if (flags)
                *flags = REDTLS__CMD_KNOWN | (container_has_keys(e) ? REDTLS__CMD_MALFORMED : REDTLS__CMD_NOKEYS);
            return 0;
        }
        e = lookup(e->sub, e->nsub, argv[1], arg_len(argv, lens, 1));
    }
    if (!e) {
        if (flags)
            *flags = 0;
        return 0;
    }
    size_t n = (size_t)argc;
    /* The common shape (GET, SET, INCR...): one key, the first argument. */
    if (e->layout == LAYOUT_RANGE && e->a == 1 && e->b == 1 && n > 1 &&
        n >= (size_t)(e->arity < 0 ? -e->arity : e->arity)) {
        if (cap > 0 && pos)
            pos[0] = 1;
        if (flags)
            *flags = REDTLS__CMD_KNOWN | (e->readonly ? REDTLS__CMD_READONLY : 0);
        return 1;
    }
    int rc = 0;
    fl = REDTLS__CMD_KNOWN | (e->readonly ? REDTLS__CMD_READONLY : 0);
    if (e->layout == LAYOUT_NOKEYS) {
        fl |= REDTLS__CMD_NOKEYS;
    } else if (n < (size_t)(e->arity < 0 ? -e->arity : e->arity)) {
        rc = -1;
    } else {
        switch (e->layout) {
        case LAYOUT_RANGE:
            range_keys(e, n, &out);
            break;
        case LAYOUT_KEYNUM:
            rc = keynum_keys(e, n, argv, lens, &out);
            break;
        case LAYOUT_STREAMS:
            rc = streams_keys(n, argv, lens, &out);
            break;
        case LAYOUT_SORT:
            sort_keys(n, argv, lens, &out);
            break;
        case LAYOUT_MIGRATE:
            rc = migrate_keys(n, argv, lens, &out);
            break;
        case LAYOUT_GEO:
            geo_keys(e, n, argv, lens, &out);
            break;
        default:
            break;
        }
    }
    if (rc != 0) {
        fl |= REDTLS__CMD_MALFORMED;
        out.n = 0;
    }
    if (flags)
        *flags = fl;
    return out.n;
}

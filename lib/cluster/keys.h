/* Which arguments of a command are keys, for Redis Cluster routing, and
 * whether the command is read-only. A static table of the Redis 7.0/7.2
 * commands (see keys.c); no COMMAND round trip. */
#ifndef REDTLS_CLUSTER_KEYS_H
#define REDTLS_CLUSTER_KEYS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* argv[0] (and the subcommand for container commands) is in the table. */
#define REDTLS__CMD_KNOWN 1u
/* Read-only command (Redis flag "readonly"): may be served by a replica
 * after READONLY. */
#define REDTLS__CMD_READONLY 2u
/* Known command, but its key layout cannot be read from argv (numkeys not a
 * number or out of range, STREAMS missing, too few args): the caller sends
 * it anywhere and lets the server report the error. */
#define REDTLS__CMD_MALFORMED 4u
/* Known command that takes no keys. */
#define REDTLS__CMD_NOKEYS 8u

/* Finds the key arguments of a command. argv/lens as in the redtls API
 * (binary safe; lens may be NULL for C strings). Command and subcommand
 * names match case-insensitively. Writes up to cap argument indexes (into
 * argv) into pos, in the order the keys appear, and returns the total number
 * of keys (which may exceed cap: call again with a bigger array). *flags
 * receives the REDTLS__CMD_* bits. Never allocates, never reads past
 * argv[argc-1].
 *
 * A MALFORMED command reports 0 keys. Shard channels (SPUBLISH, SSUBSCRIBE,
 * SUNSUBSCRIBE) count as keys: they hash to a slot the same way. An unknown
 * command (a module's) or an unknown subcommand reports 0 keys and no
 * flags. A container command without its subcommand is KNOWN and
 * MALFORMED when some of its subcommands take keys (OBJECT, MEMORY, XINFO,
 * XGROUP), KNOWN and NOKEYS otherwise. */
size_t redtls__command_keys(int argc, const char *const *argv, const size_t *lens, size_t *pos, size_t cap,
                            unsigned *flags);

/* The same, remembering the last command name looked up (spelled exactly
 * the same way) so that a stream of one command skips the table search.
 * cache starts zeroed; NULL works like redtls__command_keys(). */
typedef struct redtls__cmd_cache {
    char name[24];
    size_t len;
    const void *entry;
    /* The cached command takes one key, the first argument: the fewest
     * arguments it takes (0: it is not such a command), and its flags. */
    size_t one_key_argc;
    unsigned one_key_flags;
} redtls__cmd_cache;
size_t redtls__command_keys_cached(redtls__cmd_cache *cache, int argc, const char *const *argv, const size_t *lens,
                                   size_t *pos, size_t cap, unsigned *flags);

/* The answer of redtls__command_keys_cached without the call, for the
 * common case: argv[0] is the cached command, which takes one key
 * (argv[1]), and argc is enough. 1 with *flags set, or 0: ask
 * redtls__command_keys_cached. */
static inline int redtls__command_one_key(const redtls__cmd_cache *cache, int argc, const char *const *argv,
                                          const size_t *lens, unsigned *flags)
{
    if (!cache->one_key_argc || !lens || argc < 0 || (size_t)argc < cache->one_key_argc || lens[0] != cache->len)
        return 0;
    /* Names are short: two overlapping loads from each side (never past
     * either name's end) rather than a loop. */
    const char *a = argv[0], *b = cache->name;
    size_t n = cache->len;
    if (n >= 4 && n <= 8) {
        uint32_t a0, a1, b0, b1;
        memcpy(&a0, a, 4);
        memcpy(&b0, b, 4);
        memcpy(&a1, a + n - 4, 4);
        memcpy(&b1, b + n - 4, 4);
        if (a0 != b0 || a1 != b1)
            return 0;
    } else if (n >= 2 && n < 4) {
        uint16_t a0, a1, b0, b1;
        memcpy(&a0, a, 2);
        memcpy(&b0, b, 2);
        memcpy(&a1, a + n - 2, 2);
        memcpy(&b1, b + n - 2, 2);
        if (a0 != b0 || a1 != b1)
            return 0;
    } else if (memcmp(a, b, n) != 0) {
        return 0;
    }
    *flags = cache->one_key_flags;
    return 1;
}

/* How the parts of a multi-key command split by slot are merged: MGET
 * (values back in key order), MSET ("OK"), DEL/UNLINK/EXISTS/TOUCH (the
 * sum); REDTLS__MERGE_NONE for a command that is never split. */
enum { REDTLS__MERGE_NONE, REDTLS__MERGE_MGET, REDTLS__MERGE_OK, REDTLS__MERGE_SUM };
int redtls__cluster_split_kind(const char *name, size_t len);

/* The canonical name when the command changes the state of the connection
 * it runs on (MULTI, SUBSCRIBE, SELECT, AUTH...), which a cluster client
 * that shares its node connections cannot route; NULL otherwise. */
const char *redtls__cluster_state_command(const char *name, size_t len);

#endif

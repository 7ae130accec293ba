/* What a cluster client must know of a command beyond its keys: whether
 * a multi-key command may be split by slot (and how its parts merge), and
 * whether it changes the state of the connection it runs on. */
#include <stddef.h>
#include <strings.h>

#include "keys.h"

int redtls__cluster_split_kind(const char *name, size_t len)
{
    static const struct {
        const char *name;
        size_t len;
        int merge;
    } kinds[] = {{"MGET", 4, REDTLS__MERGE_MGET}, {"MSET", 4, REDTLS__MERGE_OK},      {"DEL", 3, REDTLS__MERGE_SUM},
                 {"UNLINK", 6, REDTLS__MERGE_SUM}, {"EXISTS", 6, REDTLS__MERGE_SUM}, {"TOUCH", 5, REDTLS__MERGE_SUM}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (kinds[i].len == len && strncasecmp(kinds[i].name, name, len) == 0)
            return kinds[i].merge;
    return REDTLS__MERGE_NONE;
}

/* Commands that change the state of the connection they run on (or need a
 * dedicated one) cannot be routed command by command: a transaction's
 * MULTI and EXEC could reach different nodes, a subscription would take
 * over a connection the handle shares. */
#define NAMED(s) {s, sizeof(s) - 1}

const char *redtls__cluster_state_command(const char *name, size_t len)
{
    static const struct {
        const char *name;
        size_t len;
    } refused[] = {NAMED("MULTI"),        NAMED("EXEC"),        NAMED("DISCARD"),      NAMED("WATCH"),
                   NAMED("UNWATCH"),      NAMED("SUBSCRIBE"),   NAMED("PSUBSCRIBE"),   NAMED("SSUBSCRIBE"),
                   NAMED("UNSUBSCRIBE"),  NAMED("PUNSUBSCRIBE"), NAMED("SUNSUBSCRIBE"), NAMED("MONITOR"),
                   NAMED("SELECT"),       NAMED("AUTH"),        NAMED("HELLO"),        NAMED("RESET"),
                   NAMED("QUIT"),         NAMED("READONLY"),    NAMED("READWRITE"),    NAMED("ASKING"),
                   NAMED("SYNC"),         NAMED("PSYNC"),       NAMED("REPLCONF")};
    /* Lengths first: this runs for every command. */
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (refused[i].len == len && strncasecmp(refused[i].name, name, len) == 0)
            return refused[i].name;
    return NULL;
}

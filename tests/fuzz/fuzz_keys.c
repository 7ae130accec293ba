/* libFuzzer target: key extraction for cluster routing on arbitrary
 * argument vectors. The input is split at NUL bytes into at most 64
 * arguments, each in its own exactly sized allocation, so a read past an
 * argument is caught. Invariants: every key position is an argument after
 * the command name, in increasing order; a smaller output array reports
 * the same count and the same first positions; the cached lookup agrees
 * with the plain one; MALFORMED, NOKEYS and
 * unknown commands report no keys. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"

#define CHECK(cond)                                                                                              \
    do {                                                                                                         \
        if (!(cond)) {                                                                                           \
            fprintf(stderr, "fuzz_keys: invariant failed at line %d: %s\n", __LINE__, #cond);                    \
            abort();                                                                                             \
        }                                                                                                        \
    } while (0)

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *argv[MAX_ARGS];
    size_t lens[MAX_ARGS];
    int argc = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && argc < MAX_ARGS; i++) {
        if (i == size || data[i] == 0) {
            size_t n = i - start;
            argv[argc] = malloc(n ? n : 1);
            if (!argv[argc])
                break;
            memcpy(argv[argc], data + start, n);
            lens[argc++] = n;
            start = i + 1;
        }
    }
    if (argc > 0) {
        size_t pos[MAX_ARGS * 2], small[2];
        unsigned flags = 0, flags2 = 0;
        size_t n = redtls__command_keys(argc, (const char *const *)argv, lens, pos, MAX_ARGS * 2, &flags);
        size_t n2 = redtls__command_keys(argc, (const char *const *)argv, lens, small, 2, &flags2);
        CHECK(n == n2);
        CHECK(flags == flags2);
        /* The one-name cache (kept across inputs) agrees with the table. */
        static redtls__cmd_cache cache;
        size_t cached[MAX_ARGS * 2];
        unsigned flags3 = 0;
        size_t n3 = redtls__command_keys_cached(&cache, argc, (const char *const *)argv, lens, cached, MAX_ARGS * 2,
                                                &flags3);
        CHECK(n3 == n && flags3 == flags);
        for (size_t k = 0; k < n && k < MAX_ARGS * 2; k++)
            CHECK(cached[k] == pos[k]);
        CHECK(n < (size_t)argc);
        for (size_t k = 0; k < n; k++) {
            CHECK(pos[k] >= 1 && pos[k] < (size_t)argc);
            if (k > 0)
                CHECK(pos[k] > pos[k - 1]);
            if (k < 2)
                CHECK(small[k] == pos[k]);
        }
        if ((flags & (REDTLS__CMD_MALFORMED | REDTLS__CMD_NOKEYS)) || !(flags & REDTLS__CMD_KNOWN))
            CHECK(n == 0);
    }
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    return 0;
}

/* lab_allochook: allocation-failure injection for allocfail tests. The
 * test program's own malloc family (linked from this object whenever a
 * test calls lab_alloc_*) is preferred by the dynamic linker over libc's
 * for every library in the process, redtls, OpenSSL and hiredis alike; the
 * library under test has no hook of its own. Sanitizer builds replace
 * malloc themselves: there LAB_ALLOC_HOOK is 0 and nothing is counted. */
#ifndef REDTLS_TESTS_LAB_ALLOCHOOK_H
#define REDTLS_TESTS_LAB_ALLOCHOOK_H

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define LAB_ALLOC_HOOK 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define LAB_ALLOC_HOOK 0
#endif
#endif
#ifndef LAB_ALLOC_HOOK
#define LAB_ALLOC_HOOK 1
#endif

/* Starts counting allocations; the fail_at-th one (1-based) returns NULL
 * (0: none fails). */
void lab_alloc_arm(long fail_at);
/* Stops counting. */
void lab_alloc_disarm(void);
/* Allocations attempted since lab_alloc_arm(). */
long lab_alloc_calls(void);
/* Allocations made minus blocks freed while counting. */
long lab_alloc_live(void);
/* Also counts blocks of at least min bytes (0: stops): how many were made
 * while counting, and how many more were made than freed (negative when
 * blocks made before counting were freed). */
void lab_alloc_track_big(size_t min);
long lab_alloc_big_calls(void);
long lab_alloc_big_live(void);

#endif

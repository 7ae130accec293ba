#include <stddef.h>
#include <stdlib.h>

#include "lab_allochook.h"

/* Test-program state, not the library's. */
static long fail_at; /* 0: off; else the number of the failing call */
static long calls;   /* allocations since arming */
static long live;    /* allocations minus frees while counting */
static int counting;
static size_t big_min;  /* 0: big blocks are not tracked */
static long big_calls;  /* blocks of at least big_min made while counting */
static long big_live;   /* ... made minus freed while counting */

void lab_alloc_arm(long n)
{
    fail_at = n;
    calls = 0;
    live = 0;
    big_calls = 0;
    big_live = 0;
    counting = 1;
}

void lab_alloc_disarm(void)
{
    counting = 0;
}

long lab_alloc_calls(void)
{
    return calls;
}

long lab_alloc_live(void)
{
    return live;
}

void lab_alloc_track_big(size_t min)
{
    big_min = min;
}

long lab_alloc_big_calls(void)
{
    return big_calls;
}

long lab_alloc_big_live(void)
{
    return big_live;
}

#if LAB_ALLOC_HOOK
#include <malloc.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static void made(void *p, size_t n)
{
    if (!p || !counting)
        return;
    live++;
    if (big_min && n >= big_min) {
        big_calls++;
        big_live++;
    }
}

/* A block's size is known again from the allocator; it is at least what
 * was asked for, and at most a few words more. */
static void unmade(void *p)
{
    if (!p || !counting)
        return;
    if (big_min && malloc_usable_size(p) >= big_min)
        big_live--;
}

static int should_fail(void)
{
    if (!counting)
        return 0;
    calls++;
    return fail_at > 0 && calls == fail_at;
}

void *malloc(size_t n)
{
    if (should_fail())
        return NULL;
    void *p = __libc_malloc(n);
    made(p, n);
    return p;
}

void *calloc(size_t a, size_t b)
{
    if (should_fail())
        return NULL;
    void *p = __libc_calloc(a, b);
    made(p, b && a > (size_t)-1 / b ? 0 : a * b);
    return p;
}

void *realloc(void *old, size_t n)
{
    if (should_fail())
        return NULL;
    size_t was = old && counting && big_min ? malloc_usable_size(old) : 0;
    void *p = __libc_realloc(old, n);
    if (p && !old && counting)
        live++;
    if (p && counting && big_min) {
        if (was >= big_min)
            big_live--;
        if (n >= big_min) {
            big_calls++;
            big_live++;
        }
    }
    return p;
}

void free(void *p)
{
    if (p && counting)
        live--;
    unmade(p);
    __libc_free(p);
}
#endif

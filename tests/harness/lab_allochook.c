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

/* Blocks are classed by the size the allocator gave them (at least what
 * was asked for, a few words more at most), the same way when made and
 * when freed. */
static int is_big(void *p)
{
    return p && big_min && malloc_usable_size(p) >= big_min;
}

static void made(void *p)
{
    if (!p || !counting)
        return;
    live++;
    if (is_big(p)) {
        big_calls++;
        big_live++;
    }
}

static void unmade(void *p)
{
    if (!p || !counting)
        return;
    if (is_big(p))
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
    made(p);
    return p;
}

void *calloc(size_t a, size_t b)
{
    if (should_fail())
        return NULL;
    void *p = __libc_calloc(a, b);
    made(p);
    return p;
}

void *realloc(void *old, size_t n)
{
    if (should_fail())
        return NULL;
    int was_big = counting && is_big(old);
    void *p = __libc_realloc(old, n);
    if (p && !old && counting)
        live++;
    if (p && counting) {
        int now_big = is_big(p);
        big_live += now_big - was_big;
        if (now_big && (p != old || !was_big))
            big_calls++;
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

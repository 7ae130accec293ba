#include <stddef.h>
#include <stdlib.h>

#include "lab_allochook.h"

/* Test-program state, not the library's. */
static long fail_at; /* 0: off; else the number of the failing call */
static long calls;   /* allocations since arming */
static long live;    /* allocations minus frees while counting */
static int counting;

void lab_alloc_arm(long n)
{
    fail_at = n;
    calls = 0;
    live = 0;
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

#if LAB_ALLOC_HOOK
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

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
    if (p && counting)
        live++;
    return p;
}

void *calloc(size_t a, size_t b)
{
    if (should_fail())
        return NULL;
    void *p = __libc_calloc(a, b);
    if (p && counting)
        live++;
    return p;
}

void *realloc(void *old, size_t n)
{
    if (should_fail())
        return NULL;
    void *p = __libc_realloc(old, n);
    if (p && !old && counting)
        live++;
    return p;
}

void free(void *p)
{
    if (p && counting)
        live--;
    __libc_free(p);
}
#endif

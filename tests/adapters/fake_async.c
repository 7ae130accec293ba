#include <stdlib.h>
#include <string.h>

#include "fake_async.h"

struct redtls_async {
    redtls_async_hooks hooks;
    int attached;
    redtls_status fail_attach;
    fake_process_fn fn;
    void *arg;
    int processing; /* inside redtls_async_process */
    int freed;      /* redtls_async_free came during it: freed on return */
};

struct fake_async_counts fake_counts;

void fake_async_reset_counts(void)
{
    memset(&fake_counts, 0, sizeof(fake_counts));
}

redtls_async *fake_async_new(void)
{
    return calloc(1, sizeof(redtls_async));
}

void fake_async_on_process(redtls_async *ac, fake_process_fn fn, void *arg)
{
    ac->fn = fn;
    ac->arg = arg;
}

void fake_async_fail_attach(redtls_async *ac, redtls_status st)
{
    ac->fail_attach = st;
}

int fake_async_watch(redtls_async *ac, int fd, int events)
{
    return ac->attached ? ac->hooks.watch(ac->hooks.data, fd, events) : 0;
}

void fake_async_timer(redtls_async *ac, int ms)
{
    if (ac->attached)
        ac->hooks.timer(ac->hooks.data, ms);
}

int fake_async_attached(const redtls_async *ac)
{
    return ac->attached;
}

static void detach(redtls_async *ac)
{
    if (!ac->attached)
        return;
    ac->attached = 0;
    fake_counts.detaches++;
    ac->hooks.detach(ac->hooks.data);
}

/* As documented: a failed call changes nothing and calls no hook; new
 * hooks replace the old ones, which are detached first. */
redtls_status redtls_async_attach(redtls_async *ac, const redtls_async_hooks *hooks)
{
    if (ac == NULL)
        return REDTLS_E_INVALID;
    if (ac->fail_attach != REDTLS_OK) {
        redtls_status st = ac->fail_attach;
        ac->fail_attach = REDTLS_OK;
        return st;
    }
    if (hooks != NULL && (hooks->watch == NULL || hooks->timer == NULL || hooks->detach == NULL))
        return REDTLS_E_INVALID;
    detach(ac);
    if (hooks != NULL) {
        ac->hooks = *hooks;
        ac->attached = 1;
    }
    return REDTLS_OK;
}

redtls_status redtls_async_process(redtls_async *ac, int events)
{
    if (ac == NULL)
        return REDTLS_E_INVALID;
    fake_counts.processes++;
    fake_counts.last_events = events;
    ac->processing++;
    if (ac->fn != NULL)
        ac->fn(ac, events, ac->arg);
    ac->processing--;
    if (ac->freed && ac->processing == 0) {
        fake_counts.frees++;
        free(ac);
    }
    return REDTLS_OK;
}

/* Detaches at once, even inside redtls_async_process (the hooks are not
 * called again); the memory goes when that call returns. */
void redtls_async_free(redtls_async *ac)
{
    if (ac == NULL)
        return;
    detach(ac);
    if (ac->processing > 0) {
        ac->freed = 1;
        return;
    }
    fake_counts.frees++;
    free(ac);
}

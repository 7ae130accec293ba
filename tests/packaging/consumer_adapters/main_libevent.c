/* A minimal user of the libevent adapter: the header compiles in user
 * code under strict warnings, attach checks its arguments, freeing the
 * handle deletes what the adapter made (the base has no events left), the
 * same for a cluster handle (redtls_async_cluster_attach_libevent), and,
 * when REDTLS_PACKAGING_URL is set, a PING goes through the loop, the
 * handle being freed from its callback (consumer.c). Exits 0 on success. */
#include <redtls/async_libevent.h>

#include <stdio.h>
#include <stdlib.h>

#include "consumer.h"

const char consumer_name[] = "consumer_libevent";

static void ping(const char *url)
{
    struct consumer_ping p = {NULL, 0, 0};
    struct event_base *base = event_base_new();
    redtls_async *ac = consumer_new_handle(url);

    consumer_check(ac != NULL, "redtls_async_new with REDTLS_PACKAGING_URL");
    if (ac == NULL || base == NULL)
        return;
    consumer_check(redtls_async_attach_libevent(ac, base) == REDTLS_OK, "attach for PING");
    consumer_ping_issue(&p, ac);
    consumer_check(event_base_dispatch(base) == 1, "dispatch ends with no events left");
    int answered = consumer_ping_answered(&p);
    redtls_async_free(p.ac); /* NULL unless the loop ran out of work without an answer */
    event_base_free(base);
    if (answered)
        printf("consumer_libevent: PING -> PONG through libevent\n");
}

int main(void)
{
    struct event_base *base = event_base_new();
    redtls_async *ac;
    redtls_async_cluster *acl;
    const char *url = getenv("REDTLS_PACKAGING_URL");

    consumer_check(base != NULL, "event_base_new");
    if (base == NULL)
        return 1;
    ac = consumer_new_handle("rediss://cache.example.com:6380");
    consumer_check(ac != NULL, "redtls_async_new");
    consumer_check(redtls_async_attach_libevent(NULL, base) == REDTLS_E_INVALID,
                   "attach(NULL, base) is REDTLS_E_INVALID");
    consumer_check(redtls_async_attach_libevent(ac, NULL) == REDTLS_E_INVALID, "attach(ac, NULL) is REDTLS_E_INVALID");
    consumer_check(redtls_async_attach_libevent(ac, base) == REDTLS_OK, "attach");
    consumer_check(redtls_async_attach_libevent(ac, base) == REDTLS_OK, "attach again (the first adapter is released)");
    redtls_async_free(ac);
    consumer_check(event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK) == 1, "no event left once the handle is freed");

    acl = consumer_new_cluster("rediss://cache.example.com:6380", "node1.example.com:6380,node2.example.com:6380");
    consumer_check(acl != NULL, "redtls_async_cluster_new");
    consumer_check(redtls_async_cluster_attach_libevent(NULL, base) == REDTLS_E_INVALID,
                   "cluster attach(NULL, base) is REDTLS_E_INVALID");
    consumer_check(redtls_async_cluster_attach_libevent(acl, NULL) == REDTLS_E_INVALID,
                   "cluster attach(acl, NULL) is REDTLS_E_INVALID");
    consumer_check(redtls_async_cluster_attach_libevent(acl, base) == REDTLS_OK, "cluster attach");
    consumer_check(redtls_async_cluster_attach_libevent(acl, base) == REDTLS_OK,
                   "cluster attach again (the first adapter is released)");
    redtls_async_cluster_free(acl);
    consumer_check(event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK) == 1,
                   "no event left once the cluster handle is freed");
    event_base_free(base);

    if (url != NULL && url[0] != '\0')
        ping(url);

    if (consumer_failures() != 0)
        return 1;
    printf("consumer_libevent: ok (redtls %s, libevent %s)\n", redtls_version(), event_get_version());
    return 0;
}

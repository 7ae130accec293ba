/* A minimal user of the libuv adapter: the header compiles in user code
 * under strict warnings, attach checks its arguments, freeing the handle
 * closes what the adapter made (uv_loop_close succeeds), the same for a
 * cluster handle (redtls_async_cluster_attach_libuv), and, when
 * REDTLS_PACKAGING_URL is set, a PING goes through the loop, the handle
 * being freed from its callback (consumer.c). Exits 0 on success. */
#include <redtls/async_libuv.h>

#include <stdio.h>
#include <stdlib.h>

#include "consumer.h"

const char consumer_name[] = "consumer_libuv";

static void ping(const char *url)
{
    struct consumer_ping p = {NULL, 0, 0};
    uv_loop_t loop;
    redtls_async *ac = consumer_new_handle(url);

    consumer_check(ac != NULL, "redtls_async_new with REDTLS_PACKAGING_URL");
    if (ac == NULL || uv_loop_init(&loop) != 0)
        return;
    consumer_check(redtls_async_attach_libuv(ac, &loop) == REDTLS_OK, "attach for PING");
    consumer_ping_issue(&p, ac);
    uv_run(&loop, UV_RUN_DEFAULT);
    int answered = consumer_ping_answered(&p);
    if (p.ac != NULL) { /* the loop ran out of work without an answer */
        redtls_async_free(p.ac);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    consumer_check(uv_loop_close(&loop) == 0, "uv handles closed after freeing from a callback");
    if (answered)
        printf("consumer_libuv: PING -> PONG through libuv\n");
}

int main(void)
{
    uv_loop_t loop;
    redtls_async *ac;
    redtls_async_cluster *acl;
    const char *url = getenv("REDTLS_PACKAGING_URL");

    consumer_check(uv_loop_init(&loop) == 0, "uv_loop_init");
    ac = consumer_new_handle("rediss://cache.example.com:6380");
    consumer_check(ac != NULL, "redtls_async_new");
    consumer_check(redtls_async_attach_libuv(NULL, &loop) == REDTLS_E_INVALID, "attach(NULL, loop) is REDTLS_E_INVALID");
    consumer_check(redtls_async_attach_libuv(ac, NULL) == REDTLS_E_INVALID, "attach(ac, NULL) is REDTLS_E_INVALID");
    consumer_check(redtls_async_attach_libuv(ac, &loop) == REDTLS_OK, "attach");
    consumer_check(redtls_async_attach_libuv(ac, &loop) == REDTLS_OK, "attach again (the first adapter is released)");
    redtls_async_free(ac);

    acl = consumer_new_cluster("rediss://cache.example.com:6380", "node1.example.com:6380,node2.example.com:6380");
    consumer_check(acl != NULL, "redtls_async_cluster_new");
    consumer_check(redtls_async_cluster_attach_libuv(NULL, &loop) == REDTLS_E_INVALID,
                   "cluster attach(NULL, loop) is REDTLS_E_INVALID");
    consumer_check(redtls_async_cluster_attach_libuv(acl, NULL) == REDTLS_E_INVALID,
                   "cluster attach(acl, NULL) is REDTLS_E_INVALID");
    consumer_check(redtls_async_cluster_attach_libuv(acl, &loop) == REDTLS_OK, "cluster attach");
    consumer_check(redtls_async_cluster_attach_libuv(acl, &loop) == REDTLS_OK,
                   "cluster attach again (the first adapter is released)");
    redtls_async_cluster_free(acl);
    uv_run(&loop, UV_RUN_DEFAULT); /* the adapters' close callbacks */
    consumer_check(uv_loop_close(&loop) == 0, "no uv handle left once the handles are freed and the loop has run");

    if (url != NULL && url[0] != '\0')
        ping(url);

    if (consumer_failures() != 0)
        return 1;
    printf("consumer_libuv: ok (redtls %s, libuv %s)\n", redtls_version(), uv_version_string());
    return 0;
}

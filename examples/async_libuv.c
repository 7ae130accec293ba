/*
 * async_libuv: the asynchronous API on a libuv loop. Connects, then, each
 * from the previous command's callback: SET, GET, INCR, and a pipeline of
 * -n GETs with -P of them kept in flight (each reply issues the next GET).
 * The last callback frees the handle, which closes the adapter's uv
 * handles, so uv_run() returns by itself.
 *
 * This file is what is particular to libuv; the options, the handle and
 * the callbacks are in async_example.c, shared with async_libevent.
 *
 *   async_libuv -u 'rediss://:TOKEN@localhost:6380' --cacert ca.crt
 *
 * Exit status: 0 every reply was as expected, 1 an error reply or an
 * unexpected value, 2 usage or configuration error, 3 connection, TLS,
 * authentication or I/O failure.
 */
#include <stdio.h>

#include <redtls/async_libuv.h>

#include "async_example.h"

int main(int argc, char **argv)
{
    struct app app;
    uv_loop_t loop;
    int rc = app_open(&app, "libuv", argc, argv);

    if (rc != APP_RUN)
        return rc;
    if (uv_loop_init(&loop) != 0) {
        redtls_async_free(app.ac);
        return EXIT_CONNECT;
    }
    /* The loop's thread owns the handle from here on. */
    app_connect(&app, redtls_async_attach_libuv(app.ac, &loop));
    uv_run(&loop, UV_RUN_DEFAULT);
    if (app_left_open(&app))
        uv_run(&loop, UV_RUN_NOWAIT); /* closes the adapter's handles */
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "async_libuv: uv handles left open\n");
        return EXIT_CONNECT;
    }
    return app.rc;
}

/*
 * async_libevent: the asynchronous API on a libevent event_base. Connects,
 * then, each from the previous command's callback: SET, GET, INCR, and a
 * pipeline of -n GETs with -P of them kept in flight (each reply issues the
 * next GET). The last callback frees the handle, which deletes the
 * adapter's events, so event_base_dispatch() returns by itself.
 *
 * This file is what is particular to libevent; the options, the handle and
 * the callbacks are in async_example.c, shared with async_libuv.
 *
 *   async_libevent -u 'rediss://:TOKEN@localhost:6380' --cacert ca.crt
 *
 * Exit status: 0 every reply was as expected, 1 an error reply or an
 * unexpected value, 2 usage or configuration error, 3 connection, TLS,
 * authentication or I/O failure.
 */
#include <redtls/async_libevent.h>

#include "async_example.h"

int main(int argc, char **argv)
{
    struct app app;
    struct event_base *base;
    int rc = app_open(&app, "libevent", argc, argv);

    if (rc != APP_RUN)
        return rc;
    base = event_base_new();
    if (base == NULL) {
        redtls_async_free(app.ac);
        return EXIT_CONNECT;
    }
    /* The base's thread owns the handle from here on. */
    app_connect(&app, redtls_async_attach_libevent(app.ac, base));
    event_base_dispatch(base);
    app_left_open(&app);
    event_base_free(base); /* after the handle: its events belong to the base */
    return app.rc;
}

/*
 * What the examples async_libuv and async_libevent share: everything but
 * the loop. async_example.c parses the command line, builds the
 * configuration and the handle, and holds the callbacks: once connected,
 * SET, GET, INCR, and a pipeline of -n GETs with -P of them kept in flight,
 * each issued from the previous command's callback. The last callback
 * frees the handle, which releases what the adapter made in the loop, so
 * the loop returns by itself. A program of its own adds the loop:
 *
 *   struct app app;
 *   int rc = app_open(&app, "libuv", argc, argv);  (prints as async_libuv)
 *   if (rc != APP_RUN)
 *       return rc;
 *   ... make the loop ...
 *   app_connect(&app, redtls_async_attach_libuv(app.ac, &loop));
 *   ... run the loop until it returns ...
 *   app_left_open(&app);
 *   return app.rc;
 */
#ifndef REDTLS_EXAMPLE_ASYNC_EXAMPLE_H
#define REDTLS_EXAMPLE_ASYNC_EXAMPLE_H

#include <time.h>

#include <redtls/async.h>

/* The exit statuses: usage() in async_example.c says the same. */
enum { EXIT_OK = 0, EXIT_REPLY = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3, APP_RUN = -1 };

struct app {
    char name[32];    /* "async_<loop>", in messages */
    char key[64];     /* redtls:example:async_<loop>:key */
    char counter[64]; /* redtls:example:async_<loop>:counter */
    char value[64];   /* "hello from <loop>" */
    redtls_async *ac; /* NULL once finishing: callbacks then only free their reply */
    long total;       /* GETs in the pipeline */
    long depth;       /* kept in flight */
    long issued;
    long done;
    struct timespec start;
    int rc;
};

/* Reads the options (the loop's name goes into messages and keys) and
 * makes app->ac from them. Returns APP_RUN, or the exit status to end
 * with (EXIT_OK after --help); on APP_RUN the handle is the caller's. */
int app_open(struct app *app, const char *loop, int argc, char **argv);

/* Connects, attached says how attaching the handle to the loop went.
 * When either fails, says why and frees the handle: the loop then has
 * nothing to do. */
void app_connect(struct app *app, redtls_status attached);

/* Frees the handle (once): pending commands, if any, get REDTLS_E_CLOSED;
 * rc becomes the exit status unless one is already set. */
void app_finish(struct app *app, int rc);

/* After the loop returned: whether the handle was still open (it should
 * not be: the last callback frees it). If it was, says so and frees it,
 * and the loop is to run once more for the adapter's clean-up. */
int app_left_open(struct app *app);

#endif /* REDTLS_EXAMPLE_ASYNC_EXAMPLE_H */

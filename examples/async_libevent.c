/*
 * async_libevent: the asynchronous API on a libevent event_base. Connects,
 * then, each from the previous command's callback: SET, GET, INCR, and a
 * pipeline of -n GETs with -P of them kept in flight (each reply issues the
 * next GET). The last callback frees the handle, which deletes the
 * adapter's events, so event_base_dispatch() returns by itself.
 *
 *   async_libevent -u 'rediss://:TOKEN@localhost:6380' --cacert ca.crt
 *
 * Exit status: 0 every reply was as expected, 1 an error reply or an
 * unexpected value, 2 usage or configuration error, 3 connection, TLS,
 * authentication or I/O failure.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <redtls/async_libevent.h>

enum { EXIT_OK = 0, EXIT_REPLY = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3 };

#define KEY "redtls:example:async_libevent:key"
#define COUNTER "redtls:example:async_libevent:counter"
#define VALUE "hello from libevent"

struct app {
    redtls_async *ac; /* NULL once finishing: callbacks then only free their reply */
    long total;       /* GETs in the pipeline */
    long depth;       /* kept in flight */
    long issued;
    long done;
    struct timespec start;
    int rc;
};

static void usage(FILE *out)
{
    fputs("Usage: async_libevent [options]\n"
          "  -u, --url URL      rediss://[[USER]:TOKEN@]HOST[:PORT][/DB][?PARAMS]\n"
          "                     (default rediss://127.0.0.1:6379)\n"
          "      --cacert FILE  trust the CA certificates in FILE\n"
          "  -n N               GETs in the pipeline (default 1000)\n"
          "  -P N               GETs kept in flight (default 64)\n"
          "      --help         print this help and exit\n"
          "Exit status: 0 as expected, 1 error reply or unexpected value, 2 usage\n"
          "or configuration error, 3 connection, TLS, authentication or I/O failure.\n",
          out);
}

static int parse_count(const char *s, long max, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s < '0' || *s > '9' || *end != '\0' || v < 1 || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Frees the handle (once): pending commands, if any, get REDTLS_E_CLOSED. */
static void finish(struct app *app, int rc)
{
    redtls_async *ac = app->ac;
    if (ac == NULL)
        return;
    app->ac = NULL;
    if (app->rc == EXIT_OK)
        app->rc = rc;
    redtls_async_free(ac);
}

/* A command that did not get the reply it should: says why and finishes. */
static int failed(struct app *app, const char *what, redtls_status st, const struct redisReply *reply)
{
    const char *text;
    size_t len = 0;

    if (st != REDTLS_OK) {
        fprintf(stderr, "async_libevent: %s: %s: %s\n", what, redtls_strerror(st), redtls_async_errmsg(app->ac));
        finish(app, EXIT_CONNECT);
        return 1;
    }
    if (reply != NULL && redtls_reply_type(reply) == REDTLS_REPLY_ERROR) {
        text = redtls_reply_str(reply, &len);
        fprintf(stderr, "async_libevent: %s: %.*s\n", what, (int)len, text != NULL ? text : "");
        finish(app, EXIT_REPLY);
        return 1;
    }
    return 0;
}

static int issued(struct app *app, const char *what, redtls_status st)
{
    if (st == REDTLS_OK)
        return 1;
    fprintf(stderr, "async_libevent: %s: %s: %s\n", what, redtls_strerror(st), redtls_async_errmsg(app->ac));
    finish(app, EXIT_CONNECT);
    return 0;
}

static double ms_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) * 1e3 + (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}

static void on_pipelined_get(redtls_async *ac, redtls_status st, struct redisReply *reply, void *userdata);

/* GET may be sent again if the connection breaks before its reply. */
static void issue_get(struct app *app)
{
    const char *argv[] = {"GET", KEY};
    app->issued++;
    issued(app, "GET", redtls_async_command_argv(app->ac, REDTLS_CMD_IDEMPOTENT, 2, argv, NULL, on_pipelined_get, app));
}

static void on_pipelined_get(redtls_async *ac, redtls_status st, struct redisReply *reply, void *userdata)
{
    struct app *app = userdata;
    const char *s;
    size_t len = 0;

    (void)ac;
    if (app->ac == NULL || failed(app, "GET (pipeline)", st, reply))
        goto out;
    s = redtls_reply_str(reply, &len);
    if (s == NULL || len != strlen(VALUE) || memcmp(s, VALUE, len) != 0) {
        fprintf(stderr, "async_libevent: GET (pipeline): unexpected reply\n");
        finish(app, EXIT_REPLY);
        goto out;
    }
    app->done++;
    if (app->issued < app->total)
        issue_get(app);
    else if (app->done == app->total) {
        printf("pipeline: %ld GETs, at most %ld in flight, all '%s', in %.1f ms\n", app->total, app->depth, VALUE,
               ms_since(&app->start));
        finish(app, EXIT_OK); /* the last callback frees the handle */
    }
out:
    redtls_reply_free(reply);
}

static void on_incr(redtls_async *ac, redtls_status st, struct redisReply *reply, void *userdata)
{
    struct app *app = userdata;

    (void)ac;
    if (app->ac == NULL || failed(app, "INCR", st, reply))
        goto out;
    printf("INCR %s -> %lld\n", COUNTER, redtls_reply_integer(reply));
    clock_gettime(CLOCK_MONOTONIC, &app->start);
    while (app->ac != NULL && app->issued < app->depth && app->issued < app->total)
        issue_get(app);
out:
    redtls_reply_free(reply);
}

static void on_get(redtls_async *ac, redtls_status st, struct redisReply *reply, void *userdata)
{
    struct app *app = userdata;
    const char *s;
    size_t len = 0;

    (void)ac;
    if (app->ac == NULL || failed(app, "GET", st, reply))
        goto out;
    s = redtls_reply_str(reply, &len);
    printf("GET %s -> %.*s\n", KEY, (int)len, s != NULL ? s : "(nil)");
    issued(app, "INCR", redtls_async_command(app->ac, on_incr, app, "INCR %s", COUNTER));
out:
    redtls_reply_free(reply);
}

static void on_set(redtls_async *ac, redtls_status st, struct redisReply *reply, void *userdata)
{
    struct app *app = userdata;
    const char *s;
    size_t len = 0;

    (void)ac;
    if (app->ac == NULL || failed(app, "SET", st, reply))
        goto out;
    s = redtls_reply_str(reply, &len);
    printf("SET %s -> %.*s\n", KEY, (int)len, s != NULL ? s : "");
    issued(app, "GET", redtls_async_command(app->ac, on_get, app, "GET %s", KEY));
out:
    redtls_reply_free(reply);
}

static void on_connect(redtls_async *ac, redtls_status st, void *userdata)
{
    struct app *app = userdata;

    (void)ac;
    if (app->ac == NULL || failed(app, "connect", st, NULL))
        return;
    printf("connected\n");
    issued(app, "SET", redtls_async_command(app->ac, on_set, app, "SET %s %s", KEY, VALUE));
}

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"url", required_argument, NULL, 'u'},
        {"cacert", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *url = "rediss://127.0.0.1:6379";
    const char *cacert = NULL;
    struct app app;
    redtls_config *cfg = NULL;
    struct event_base *base;
    redtls_status st;
    int c;

    memset(&app, 0, sizeof(app));
    app.total = 1000;
    app.depth = 64;
    while ((c = getopt_long(argc, argv, "u:n:P:", long_options, NULL)) != -1) {
        switch (c) {
        case 'u': url = optarg; break;
        case 'C': cacert = optarg; break;
        case 'n':
            if (parse_count(optarg, 100000000, &app.total) != 0) {
                fprintf(stderr, "async_libevent: bad -n '%s' (1-100000000)\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'P':
            /* More in flight would be refused (REDTLS_E_LIMIT). */
            if (parse_count(optarg, REDTLS_ASYNC_DEFAULT_MAX_PENDING, &app.depth) != 0) {
                fprintf(stderr, "async_libevent: bad -P '%s' (1-%d)\n", optarg, REDTLS_ASYNC_DEFAULT_MAX_PENDING);
                return EXIT_USAGE;
            }
            break;
        case 'h': usage(stdout); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return EXIT_USAGE;
    }

    if (redtls_config_new(&cfg) != REDTLS_OK)
        return EXIT_USAGE;
    st = redtls_config_set_url(cfg, url);
    if (st == REDTLS_OK && cacert != NULL)
        st = redtls_config_set_ca_file(cfg, cacert);
    if (st == REDTLS_OK)
        st = redtls_async_new(cfg, &app.ac);
    if (st != REDTLS_OK) {
        fprintf(stderr, "async_libevent: %s: %s\n", redtls_strerror(st), redtls_config_errmsg(cfg));
        redtls_config_free(cfg);
        return EXIT_USAGE;
    }
    redtls_config_free(cfg); /* the handle has its own copy */

    base = event_base_new();
    if (base == NULL) {
        redtls_async_free(app.ac);
        return EXIT_CONNECT;
    }
    /* The base's thread owns the handle from here on. */
    st = redtls_async_attach_libevent(app.ac, base);
    if (st == REDTLS_OK)
        st = redtls_async_connect(app.ac, on_connect, &app);
    if (st != REDTLS_OK) {
        fprintf(stderr, "async_libevent: %s: %s\n", redtls_strerror(st), redtls_async_errmsg(app.ac));
        finish(&app, st == REDTLS_E_NOMEM ? EXIT_CONNECT : EXIT_USAGE);
    }
    event_base_dispatch(base);
    /* Only if the loop stopped with the handle still there (it should not). */
    if (app.ac != NULL) {
        fprintf(stderr, "async_libevent: the loop ran out of work with the handle still open\n");
        finish(&app, EXIT_CONNECT);
    }
    event_base_free(base); /* after the handle: its events belong to the base */
    return app.rc;
}

/*
 * The part of async_libuv and async_libevent that does not depend on the
 * loop (async_example.h): options, the handle, and the callbacks, each of
 * which issues the next command.
 */
#include "async_example.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(const struct app *app, FILE *out)
{
    fprintf(out, "Usage: %s [options]\n", app->name);
    fputs("  -u, --url URL      rediss://[[USER]:TOKEN@]HOST[:PORT][/DB][?PARAMS]\n"
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

void app_finish(struct app *app, int rc)
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
    if (st != REDTLS_OK) {
        fprintf(stderr, "%s: %s: %s: %s\n", app->name, what, redtls_strerror(st), redtls_async_errmsg(app->ac));
        app_finish(app, EXIT_CONNECT);
        return 1;
    }
    if (reply != NULL && redtls_reply_type(reply) == REDTLS_REPLY_ERROR) {
        size_t len = 0;
        const char *text = redtls_reply_str(reply, &len);
        fprintf(stderr, "%s: %s: %.*s\n", app->name, what, (int)len, text != NULL ? text : "");
        app_finish(app, EXIT_REPLY);
        return 1;
    }
    return 0;
}

static int issued(struct app *app, const char *what, redtls_status st)
{
    if (st == REDTLS_OK)
        return 1;
    fprintf(stderr, "%s: %s: %s: %s\n", app->name, what, redtls_strerror(st), redtls_async_errmsg(app->ac));
    app_finish(app, EXIT_CONNECT);
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
    const char *argv[] = {"GET", app->key};
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
    if (s == NULL || len != strlen(app->value) || memcmp(s, app->value, len) != 0) {
        fprintf(stderr, "%s: GET (pipeline): unexpected reply\n", app->name);
        app_finish(app, EXIT_REPLY);
        goto out;
    }
    app->done++;
    if (app->issued < app->total)
        issue_get(app);
    else if (app->done == app->total) {
        printf("pipeline: %ld GETs, at most %ld in flight, all '%s', in %.1f ms\n", app->total, app->depth,
               app->value, ms_since(&app->start));
        app_finish(app, EXIT_OK); /* the last callback frees the handle */
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
    printf("INCR %s -> %lld\n", app->counter, redtls_reply_integer(reply));
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
    printf("GET %s -> %.*s\n", app->key, (int)len, s != NULL ? s : "(nil)");
    issued(app, "INCR", redtls_async_command(app->ac, on_incr, app, "INCR %s", app->counter));
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
    printf("SET %s -> %.*s\n", app->key, (int)len, s != NULL ? s : "");
    issued(app, "GET", redtls_async_command(app->ac, on_get, app, "GET %s", app->key));
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
    issued(app, "SET", redtls_async_command(app->ac, on_set, app, "SET %s %s", app->key, app->value));
}

int app_open(struct app *app, const char *loop, int argc, char **argv)
{
    static const struct option long_options[] = {
        {"url", required_argument, NULL, 'u'},
        {"cacert", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *url = "rediss://127.0.0.1:6379";
    const char *cacert = NULL;
    redtls_config *cfg = NULL;
    redtls_status st;
    int c;

    memset(app, 0, sizeof(*app));
    snprintf(app->name, sizeof(app->name), "async_%s", loop);
    snprintf(app->key, sizeof(app->key), "redtls:example:%s:key", app->name);
    snprintf(app->counter, sizeof(app->counter), "redtls:example:%s:counter", app->name);
    snprintf(app->value, sizeof(app->value), "hello from %s", loop);
    app->total = 1000;
    app->depth = 64;
    while ((c = getopt_long(argc, argv, "u:n:P:", long_options, NULL)) != -1) {
        switch (c) {
        case 'u': url = optarg; break;
        case 'C': cacert = optarg; break;
        case 'n':
            if (parse_count(optarg, 100000000, &app->total) != 0) {
                fprintf(stderr, "%s: bad -n '%s' (1-100000000)\n", app->name, optarg);
                return EXIT_USAGE;
            }
            break;
        case 'P':
            /* More in flight would be refused (REDTLS_E_LIMIT). */
            if (parse_count(optarg, REDTLS_ASYNC_DEFAULT_MAX_PENDING, &app->depth) != 0) {
                fprintf(stderr, "%s: bad -P '%s' (1-%d)\n", app->name, optarg, REDTLS_ASYNC_DEFAULT_MAX_PENDING);
                return EXIT_USAGE;
            }
            break;
        case 'h': usage(app, stdout); return EXIT_OK;
        default: usage(app, stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        usage(app, stderr);
        return EXIT_USAGE;
    }

    if (redtls_config_new(&cfg) != REDTLS_OK)
        return EXIT_USAGE;
    st = redtls_config_set_url(cfg, url);
    if (st == REDTLS_OK && cacert != NULL)
        st = redtls_config_set_ca_file(cfg, cacert);
    if (st == REDTLS_OK)
        st = redtls_async_new(cfg, &app->ac);
    if (st != REDTLS_OK) {
        fprintf(stderr, "%s: %s: %s\n", app->name, redtls_strerror(st), redtls_config_errmsg(cfg));
        redtls_config_free(cfg);
        return EXIT_USAGE;
    }
    redtls_config_free(cfg); /* the handle has its own copy */
    return APP_RUN;
}

void app_connect(struct app *app, redtls_status attached)
{
    redtls_status st = attached;

    if (st == REDTLS_OK)
        st = redtls_async_connect(app->ac, on_connect, app);
    if (st != REDTLS_OK) {
        fprintf(stderr, "%s: %s: %s\n", app->name, redtls_strerror(st), redtls_async_errmsg(app->ac));
        app_finish(app, st == REDTLS_E_NOMEM ? EXIT_CONNECT : EXIT_USAGE);
    }
}

int app_left_open(struct app *app)
{
    if (app->ac == NULL)
        return 0;
    fprintf(stderr, "%s: the loop ran out of work with the handle still open\n", app->name);
    app_finish(app, EXIT_CONNECT);
    return 1;
}

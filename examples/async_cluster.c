/*
 * async_cluster: the asynchronous cluster client on a libuv loop. Finds
 * the nodes from the seeds, then SETs -n keys spread over the hash slots,
 * -P of them kept in flight, each SET's callback issuing the GET of its
 * key and each GET's the next SET; then one DEL of every key, which the
 * client splits by slot. Prints the nodes, a summary and the client's
 * counters. The last callback frees the handle, which closes every uv
 * handle the adapters made, so uv_run() returns by itself.
 *
 *   async_cluster --cacert ca.crt node1.example.com:6379
 *   async_cluster -u 'rediss://node1.example.com:6379?cacert=ca.crt'
 *
 * Every node is verified against the name the cluster announces for it;
 * --resolve reaches such names when DNS does not know them. The token comes
 * from REDTLS_TOKEN (or --token, which `ps` shows).
 *
 * Exit status: 0 every reply was as expected, 1 an error reply or an
 * unexpected value, 2 usage or configuration error, 3 connection, TLS,
 * authentication or I/O failure.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <redtls/async_libuv.h>

#include "cli_common.h"

enum { EXIT_OK = 0, EXIT_REPLY = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3, EXIT_CONTINUE = -1 };

/* Long-only options get values outside the range of characters. */
enum { OPT_CACERT = 256, OPT_CERT, OPT_KEY, OPT_USER, OPT_TOKEN, OPT_TIMEOUT, OPT_TLS_MIN, OPT_RESOLVE, OPT_HELP };

static const struct option long_options[] = {
    {"url", required_argument, NULL, 'u'},
    {"cacert", required_argument, NULL, OPT_CACERT},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"user", required_argument, NULL, OPT_USER},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"tls-min", required_argument, NULL, OPT_TLS_MIN},
    {"resolve", required_argument, NULL, OPT_RESOLVE},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

#define MAX_RESOLVE 32
#define NAME "async_cluster"

struct options {
    const char *url;
    const char *seeds; /* NULL: the URL's host and port */
    const char *cacert;
    const char *cert;
    const char *key;
    const char *user;
    const char *token;
    long timeout_ms; /* -1: not given */
    int tls_min;
    int nresolve;
    const char *resolve[MAX_RESOLVE];
    long total;
    long depth;
};

/* One key: the userdata of its commands. */
struct key {
    struct app *app;
    char name[80];
    char value[32];
};

struct app {
    redtls_async_cluster *acl; /* NULL once finishing: callbacks then only free their reply */
    struct key *keys;
    long total;                /* keys */
    long depth;                /* SET/GET pairs kept in flight */
    long issued;               /* SETs issued */
    long done;                 /* GETs answered as expected */
    unsigned char slot_used[REDTLS_CLUSTER_SLOTS];
    struct timespec start;
    int rc;
};

static void usage(FILE *out)
{
    fputs("Usage: " NAME " [options] [SEED[,SEED...]]\n"
          "\n"
          "SETs and GETs keys spread over every hash slot of a TLS Redis Cluster\n"
          "through the asynchronous cluster client on a libuv loop, then DELs them.\n"
          "SEED is HOST:PORT (default: the URL's host and port).\n"
          "\n"
          "  -u, --url URL      rediss://[[USER]:TOKEN@]HOST[:PORT][?PARAMS]: the\n"
          "                     settings every node connection uses\n"
          "      --cacert FILE  trust the CA certificates in FILE\n"
          "      --cert FILE    client certificate (needs --key)\n"
          "      --key FILE     client private key (needs --cert)\n"
          "      --tls-min V    lowest TLS version: 1.2 (default) or 1.3\n"
          "      --user NAME    ACL user name\n"
          "      --token TOKEN  password or token; prefer REDTLS_TOKEN\n"
          "      --timeout MS   connect, handshake and command timeout (0: none)\n"
          "      --resolve HOST:PORT:ADDR  connect to ADDR when asked for HOST:PORT\n"
          "                     (PORT * or 0: any port), still verifying HOST;\n"
          "                     repeatable\n"
          "  -n N               keys (default 300)\n"
          "  -P N               keys in flight (default 64)\n"
          "      --help         print this help and exit\n"
          "Exit status: 0 as expected, 1 error reply or unexpected value, 2 usage\n"
          "or configuration error, 3 connection, TLS, authentication or I/O failure.\n",
          out);
}

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, NAME ": %s '%s'\nTry '" NAME " --help'.\n", what, arg);
    return EXIT_USAGE;
}

static int parse_options(struct options *o, int argc, char **argv)
{
    int c;

    memset(o, 0, sizeof(*o));
    o->url = "rediss://127.0.0.1:6379";
    o->timeout_ms = -1;
    o->total = 300;
    o->depth = 64;
    while ((c = getopt_long(argc, argv, "u:n:P:", long_options, NULL)) != -1) {
        switch (c) {
        case 'u': o->url = optarg; break;
        case OPT_CACERT: o->cacert = optarg; break;
        case OPT_CERT: o->cert = optarg; break;
        case OPT_KEY: o->key = optarg; break;
        case OPT_USER: o->user = optarg; break;
        case OPT_TOKEN: o->token = optarg; break;
        case OPT_TIMEOUT:
            if (cli_parse_number(optarg, 0, INT_MAX, &o->timeout_ms) != 0)
                return usage_error("bad --timeout", optarg);
            break;
        case OPT_TLS_MIN:
            if ((o->tls_min = cli_parse_tls_min(optarg)) == 0)
                return usage_error("bad --tls-min (1.2 or 1.3)", optarg);
            break;
        case OPT_RESOLVE:
            if (o->nresolve == MAX_RESOLVE)
                return usage_error("too many --resolve, at", optarg);
            o->resolve[o->nresolve++] = optarg;
            break;
        case 'n':
            if (cli_parse_number(optarg, 1, 100000, &o->total) != 0)
                return usage_error("bad -n (1-100000)", optarg);
            break;
        case 'P':
            /* Two commands per key may be owed at once: SET then GET. */
            if (cli_parse_number(optarg, 1, REDTLS_ASYNC_DEFAULT_MAX_PENDING / 2, &o->depth) != 0)
                return usage_error("bad -P", optarg);
            break;
        case OPT_HELP: usage(stdout); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc)
        o->seeds = argv[optind++];
    if (optind < argc)
        return usage_error("one SEED list (comma-separated), not", argv[optind]);
    if ((o->cert == NULL) != (o->key == NULL))
        return usage_error("--cert and --key go together; got only", o->cert != NULL ? o->cert : o->key);
    if (o->token == NULL) {
        const char *env = getenv("REDTLS_TOKEN");
        if (env != NULL && *env != '\0')
            o->token = env;
    }
    return EXIT_CONTINUE;
}

/* The URL first, then the options, so that options win. The messages
 * never hold the token. */
static int make_config(const struct options *o, redtls_config *cfg)
{
    redtls_status st = redtls_config_set_url(cfg, o->url);
    const char *what = "--url";
    unsigned ms = (unsigned)o->timeout_ms;

    if (st == REDTLS_OK && o->cacert != NULL && (st = redtls_config_set_ca_file(cfg, o->cacert)) != REDTLS_OK)
        what = "--cacert";
    if (st == REDTLS_OK && o->cert != NULL &&
        (st = redtls_config_set_client_cert_file(cfg, o->cert, o->key)) != REDTLS_OK)
        what = "--cert/--key";
    if (st == REDTLS_OK && o->tls_min != 0 &&
        (st = redtls_config_set_tls_min_version(cfg, (redtls_tls_version)o->tls_min)) != REDTLS_OK)
        what = "--tls-min";
    if (st == REDTLS_OK && o->user != NULL && (st = redtls_config_set_user(cfg, o->user)) != REDTLS_OK)
        what = "--user";
    if (st == REDTLS_OK && o->token != NULL && (st = redtls_config_set_token(cfg, o->token)) != REDTLS_OK)
        what = "--token";
    if (st == REDTLS_OK && o->timeout_ms != -1) {
        what = "--timeout";
        st = redtls_config_set_connect_timeout_ms(cfg, ms);
        if (st == REDTLS_OK)
            st = redtls_config_set_handshake_timeout_ms(cfg, ms);
        if (st == REDTLS_OK)
            st = redtls_config_set_command_timeout_ms(cfg, ms);
    }
    if (st != REDTLS_OK) {
        const char *detail = redtls_config_errmsg(cfg);
        fprintf(stderr, NAME ": %s: %s\n", what, *detail != '\0' ? detail : redtls_strerror(st));
        return EXIT_USAGE;
    }
    for (int i = 0; i < o->nresolve; i++) {
        if (cli_apply_resolve(cfg, o->resolve[i], NAME, "--resolve") != 0)
            return EXIT_USAGE;
    }
    return EXIT_CONTINUE;
}

static double ms_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) * 1e3 + (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}

/* Frees the handle (once): commands still owed get REDTLS_E_CLOSED, which
 * the callbacks ignore; rc becomes the exit status unless one is set. */
static void finish(struct app *app, int rc)
{
    redtls_async_cluster *acl = app->acl;
    if (acl == NULL)
        return;
    app->acl = NULL;
    if (app->rc == EXIT_OK)
        app->rc = rc;
    redtls_async_cluster_free(acl);
}

/* A command that did not get the reply it should: says why and finishes. */
static int failed(struct app *app, const char *what, redtls_status st, const struct redisReply *reply)
{
    if (st != REDTLS_OK) {
        fprintf(stderr, NAME ": %s: %s: %s\n", what, redtls_strerror(st), redtls_async_cluster_errmsg(app->acl));
        finish(app, EXIT_CONNECT);
        return 1;
    }
    if (reply != NULL && redtls_reply_type(reply) == REDTLS_REPLY_ERROR) {
        size_t len = 0;
        const char *text = redtls_reply_str(reply, &len);
        fprintf(stderr, NAME ": %s: %.*s\n", what, (int)len, text != NULL ? text : "");
        finish(app, EXIT_REPLY);
        return 1;
    }
    return 0;
}

static void issued(struct app *app, const char *what, redtls_status st)
{
    if (st == REDTLS_OK)
        return;
    fprintf(stderr, NAME ": %s: %s: %s\n", what, redtls_strerror(st), redtls_async_cluster_errmsg(app->acl));
    finish(app, EXIT_CONNECT);
}

static void print_stats(const redtls_async_cluster *acl)
{
    printf("counters: slot maps %llu, MOVED %llu, ASK %llu, TRYAGAIN/CLUSTERDOWN %llu, node failures %llu, "
           "splits %llu\n",
           (unsigned long long)redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_REFRESHES),
           (unsigned long long)redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_MOVED),
           (unsigned long long)redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_ASK),
           (unsigned long long)redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_TRYAGAIN),
           (unsigned long long)redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_NODE_FAILURES),
           (unsigned long long)redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_SPLITS));
}

static void on_del(redtls_async_cluster *acl, redtls_status st, struct redisReply *reply, void *userdata)
{
    struct app *app = userdata;

    if (app->acl == NULL || failed(app, "DEL", st, reply))
        goto out;
    printf("DEL of the %ld keys, split by slot: %lld deleted\n", app->total, redtls_reply_integer(reply));
    print_stats(acl);
    finish(app, redtls_reply_integer(reply) == app->total ? EXIT_OK : EXIT_REPLY); /* the last callback */
out:
    redtls_reply_free(reply);
}

/* One command whose keys span every slot used: the client splits it. */
static void issue_del(struct app *app)
{
    const char **argv = malloc(((size_t)app->total + 1) * sizeof(*argv));
    long i;

    if (argv == NULL) {
        issued(app, "DEL", REDTLS_E_NOMEM);
        return;
    }
    argv[0] = "DEL";
    for (i = 0; i < app->total; i++)
        argv[i + 1] = app->keys[i].name;
    issued(app, "DEL",
           redtls_async_cluster_command_argv(app->acl, 0, (int)app->total + 1, argv, NULL, on_del, app));
    free(argv); /* the command holds its own copy */
}

static void issue_set(struct app *app);

static void on_get(redtls_async_cluster *acl, redtls_status st, struct redisReply *reply, void *userdata)
{
    struct key *k = userdata;
    struct app *app = k->app;
    const char *s;
    size_t len = 0;
    size_t slots = 0;

    (void)acl;
    if (app->acl == NULL || failed(app, "GET", st, reply))
        goto out;
    s = redtls_reply_str(reply, &len);
    if (s == NULL || len != strlen(k->value) || memcmp(s, k->value, len) != 0) {
        fprintf(stderr, NAME ": GET %s: not the value SET wrote\n", k->name);
        finish(app, EXIT_REPLY);
        goto out;
    }
    if (++app->done < app->total) {
        if (app->issued < app->total)
            issue_set(app);
        goto out;
    }
    for (size_t i = 0; i < REDTLS_CLUSTER_SLOTS; i++)
        slots += app->slot_used[i];
    printf("%ld SETs and %ld GETs (each GET issued by its SET's callback) over %zu slots, at most %ld keys in "
           "flight, in %.1f ms\n",
           app->total, app->total, slots, app->depth, ms_since(&app->start));
    issue_del(app);
out:
    redtls_reply_free(reply);
}

static void on_set(redtls_async_cluster *acl, redtls_status st, struct redisReply *reply, void *userdata)
{
    struct key *k = userdata;
    struct app *app = k->app;
    const char *argv[2];

    (void)acl;
    if (app->acl == NULL || failed(app, "SET", st, reply))
        goto out;
    argv[0] = "GET";
    argv[1] = k->name;
    issued(app, "GET", redtls_async_cluster_command_argv(app->acl, REDTLS_CMD_IDEMPOTENT, 2, argv, NULL, on_get, k));
out:
    redtls_reply_free(reply);
}

static void issue_set(struct app *app)
{
    struct key *k = &app->keys[app->issued++];
    const char *argv[3] = {"SET", k->name, k->value};

    app->slot_used[redtls_cluster_key_slot(k->name, strlen(k->name))] = 1;
    issued(app, "SET", redtls_async_cluster_command_argv(app->acl, 0, 3, argv, NULL, on_set, k));
}

static void on_connect(redtls_async_cluster *acl, redtls_status st, void *userdata)
{
    struct app *app = userdata;
    size_t n, i;

    if (app->acl == NULL || failed(app, "connect", st, NULL))
        return;
    n = redtls_async_cluster_node_count(acl);
    printf("connected: %zu nodes\n", n);
    for (i = 0; i < n; i++)
        printf("  %s  %s\n", redtls_async_cluster_node_name(acl, i),
               redtls_async_cluster_node_is_master(acl, i) ? "master" : "replica");
    clock_gettime(CLOCK_MONOTONIC, &app->start);
    while (app->acl != NULL && app->issued < app->depth && app->issued < app->total)
        issue_set(app);
}

/* The keys, named by the process and their number: the slots they hash
 * to spread over the whole range. */
static int make_keys(struct app *app)
{
    long i;
    long pid = (long)getpid();

    app->keys = calloc((size_t)app->total, sizeof(*app->keys));
    if (app->keys == NULL)
        return -1;
    for (i = 0; i < app->total; i++) {
        app->keys[i].app = app;
        snprintf(app->keys[i].name, sizeof(app->keys[i].name), "redtls:example:" NAME ":%ld:%ld", pid, i);
        snprintf(app->keys[i].value, sizeof(app->keys[i].value), "value %ld", i);
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options o;
    struct app app;
    redtls_config *cfg = NULL;
    uv_loop_t loop;
    redtls_status st;
    int rc = parse_options(&o, argc, argv);

    if (rc != EXIT_CONTINUE)
        return rc;
    memset(&app, 0, sizeof(app));
    app.total = o.total;
    app.depth = o.depth;
    if (redtls_config_new(&cfg) != REDTLS_OK || make_keys(&app) != 0) {
        fputs(NAME ": out of memory\n", stderr);
        redtls_config_free(cfg);
        return EXIT_CONNECT;
    }
    rc = make_config(&o, cfg);
    if (rc == EXIT_CONTINUE) {
        st = redtls_async_cluster_new(cfg, o.seeds, &app.acl);
        if (st != REDTLS_OK) {
            const char *detail = redtls_config_errmsg(cfg);
            fprintf(stderr, NAME ": %s: %s\n", redtls_strerror(st), *detail != '\0' ? detail : "bad seeds");
            rc = st == REDTLS_E_NOMEM ? EXIT_CONNECT : EXIT_USAGE;
        }
    }
    redtls_config_free(cfg); /* the handle has its own copy */
    if (rc != EXIT_CONTINUE || uv_loop_init(&loop) != 0) {
        redtls_async_cluster_free(app.acl);
        free(app.keys);
        return rc != EXIT_CONTINUE ? rc : EXIT_CONNECT;
    }

    /* The loop's thread owns the handle from here on. */
    st = redtls_async_cluster_attach_libuv(app.acl, &loop);
    if (st == REDTLS_OK)
        st = redtls_async_cluster_connect(app.acl, on_connect, &app);
    if (st != REDTLS_OK) {
        fprintf(stderr, NAME ": %s: %s\n", redtls_strerror(st), redtls_async_cluster_errmsg(app.acl));
        finish(&app, EXIT_CONNECT);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (app.acl != NULL) {
        fputs(NAME ": the loop ran out of work with the handle still open\n", stderr);
        finish(&app, EXIT_CONNECT);
        uv_run(&loop, UV_RUN_NOWAIT); /* closes the adapters' handles */
    }
    free(app.keys);
    if (uv_loop_close(&loop) != 0) {
        fputs(NAME ": uv handles left open\n", stderr);
        return EXIT_CONNECT;
    }
    return app.rc;
}

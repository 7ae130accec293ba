/*
 * redtls-cli: run one Redis command over TLS and print the reply the way
 * `redis-cli --raw` does. See usage() for options and exit codes; scripts
 * rely on both, so change them only by adding.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redtls/redtls.h>

#include "cli_common.h"

enum {
    EXIT_REPLY = 0,       /* a reply was printed */
    EXIT_ERROR_REPLY = 1, /* the server answered with an error reply */
    EXIT_USAGE = 2,       /* bad options or configuration */
    EXIT_CONNECT = 3,     /* connection, TLS, AUTH or I/O failure */
    EXIT_CONTINUE = -1    /* internal: options parsed, go on */
};

/* Long-only options get values outside the range of characters. */
enum {
    OPT_CACERT = 256,
    OPT_CERT,
    OPT_KEY,
    OPT_SNI,
    OPT_USER,
    OPT_TOKEN,
    OPT_TOKEN_ALT,
    OPT_TIMEOUT,
    OPT_TLS_MIN,
    OPT_PLAIN,
    OPT_INSECURE,
    OPT_RESOLVE,
    OPT_CLUSTER,
    OPT_IAM,
    OPT_REGION,
    OPT_SERVERLESS,
    OPT_IAM_SERVICE,
    OPT_IAM_TOKEN,
    OPT_IAM_TIME,
    OPT_HELP
};

static const struct option long_options[] = {
    {"url", required_argument, NULL, 'u'},
    {"host", required_argument, NULL, 'h'},
    {"port", required_argument, NULL, 'p'},
    {"verbose", no_argument, NULL, 'v'},
    {"cacert", required_argument, NULL, OPT_CACERT},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"sni", required_argument, NULL, OPT_SNI},
    {"user", required_argument, NULL, OPT_USER},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"token-alt", required_argument, NULL, OPT_TOKEN_ALT},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"tls-min", required_argument, NULL, OPT_TLS_MIN},
    {"plain", no_argument, NULL, OPT_PLAIN},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"resolve", required_argument, NULL, OPT_RESOLVE},
    {"cluster", no_argument, NULL, OPT_CLUSTER},
    {"iam", required_argument, NULL, OPT_IAM},
    {"region", required_argument, NULL, OPT_REGION},
    {"serverless", no_argument, NULL, OPT_SERVERLESS},
    {"iam-service", required_argument, NULL, OPT_IAM_SERVICE},
    {"iam-token", no_argument, NULL, OPT_IAM_TOKEN},
    {"iam-time", required_argument, NULL, OPT_IAM_TIME},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* "+" stops at the first non-option, so command arguments such as
 * "INCRBY k -5" are never taken for options. */
static const char short_options[] = "+u:h:p:v";

#define MAX_RESOLVE 32

/* What the command line asked for. NULL / 0 / -1 mean "not given". */
struct cli_options {
    const char *url;
    const char *host;
    long port;
    const char *cacert;
    const char *cert;
    const char *key;
    const char *sni;
    const char *user;
    const char *token;
    const char *token_alt;
    long timeout_ms;
    int tls_min;
    int plain;
    int insecure;
    int verbose;
    int cluster;
    int nresolve;
    const char *resolve[MAX_RESOLVE]; /* HOST:PORT:ADDR */
    const char *iam;         /* cache name */
    const char *region;
    int serverless;
    const char *iam_service;
    int iam_token;           /* print the token and exit */
    long long iam_time;      /* signing time (unix seconds), 0: now */
    int argc; /* the command and its arguments */
    const char **argv;
};

static void usage(FILE *out)
{
    fputs("Usage: redtls-cli [options] [--] COMMAND [ARG...]\n"
          "\n"
          "Runs one command over TLS (certificate and host name verified) and\n"
          "prints the reply like `redis-cli --raw`.\n"
          "\n"
          "Options are applied on top of the URL, whatever their order.\n"
          "  -u, --url URL      rediss://[[USER]:TOKEN@]HOST[:PORT][/DB][?PARAMS]\n"
          "                     (redis:// is plain TCP, unix:///PATH a Unix socket)\n"
          "  -h, --host HOST    server host; -h and -p replace the URL's host and\n"
          "  -p, --port PORT    port together (defaults 127.0.0.1 and 6379)\n"
          "      --plain        no TLS: plain TCP, for local servers only\n"
          "      --timeout MS   connect, handshake and command timeout (0: none)\n"
          "      --cacert FILE  trust the CA certificates in FILE instead of the\n"
          "                     system store\n"
          "      --cert FILE    client certificate (needs --key)\n"
          "      --key FILE     client private key (needs --cert)\n"
          "      --sni NAME     name sent as SNI and verified in the certificate\n"
          "      --tls-min V    lowest TLS version: 1.2 (default) or 1.3\n"
          "      --insecure     DANGEROUS: skip certificate and host name checks\n"
          "      --user NAME    ACL user name\n"
          "      --token TOKEN  password or token; prefer REDTLS_TOKEN, as command\n"
          "                     line arguments are visible to other users in `ps`\n"
          "      --token-alt T  second token, tried when the first is refused\n"
          "                     (AUTH token rotation); REDTLS_TOKEN_ALT also works\n"
          "      --resolve HOST:PORT:ADDR  connect to ADDR when asked for HOST:PORT\n"
          "                     (PORT * or 0: any port), still verifying HOST;\n"
          "                     repeatable ([::1] style brackets for IPv6)\n"
          "      --cluster      cluster mode: -h/-p (or the URL) is a seed node; the\n"
          "                     command is routed by its keys, redirects followed\n"
          "      --iam CACHE    ElastiCache/MemoryDB IAM authentication for the cache\n"
          "                     (replication group or serverless cache name, lower\n"
          "                     case); needs --region and --user USER-ID; AWS\n"
          "                     credentials from AWS_ACCESS_KEY_ID,\n"
          "                     AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN\n"
          "      --region R     the cache's AWS region (e.g. us-east-1)\n"
          "      --serverless   the cache is serverless\n"
          "      --iam-service S  elasticache (default) or memorydb\n"
          "      --iam-token    print the IAM token on one line and exit (it is a\n"
          "                     credential, valid for 15 minutes); no command\n"
          "      --iam-time T   sign at T (YYYYMMDDTHHMMSSZ) instead of now\n"
          "  -v, --verbose      print TLS version, cipher and server certificate\n"
          "                     to stderr (never the token)\n"
          "      --help         print this help and exit\n"
          "\n"
          "Environment:\n"
          "  REDTLS_TOKEN       the token, used when --token is not given\n"
          "  REDTLS_TOKEN_ALT   the second token, used when --token-alt is not given\n"
          "\n"
          "Exit status:\n"
          "  0  the reply was printed\n"
          "  1  the server answered with an error reply (printed on stdout)\n"
          "  2  usage or configuration error\n"
          "  3  connection, TLS, authentication or I/O failure\n",
          out);
}

static int usage_error(const char *fmt, ...) REDTLS_PRINTF(1, 2);

/* YYYYMMDDTHHMMSSZ (UTC) to seconds since the epoch. */
static int parse_iam_time(const char *s, long long *out)
{
    int f[6];
    static const int width[6] = {4, 2, 2, 2, 2, 2};
    const char *p = s;
    if (strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z')
        return -1;
    for (int i = 0; i < 6; i++) {
        if (i == 3)
            p++; /* the T */
        f[i] = 0;
        for (int k = 0; k < width[i]; k++, p++) {
            if (*p < '0' || *p > '9')
                return -1;
            f[i] = f[i] * 10 + (*p - '0');
        }
    }
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (f[0] % 4 == 0 && f[0] % 100 != 0) || f[0] % 400 == 0;
    if (f[0] < 1971 || f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > mdays[f[1] - 1] ||
        (f[1] == 2 && f[2] == 29 && !leap) || f[3] > 23 || f[4] > 59 || f[5] > 59)
        return -1;
    /* Days since the epoch, proleptic Gregorian (no timegm: not POSIX). */
    int y = f[0], m = f[1];
    if (m <= 2)
        y--;
    long long era = y / 400, yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + f[2] - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    long long days = era * 146097 + doe - 719468;
    *out = days * 86400 + f[3] * 3600 + f[4] * 60 + f[5];
    return 0;
}

static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("redtls-cli: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'redtls-cli --help'.\n", stderr);
    return EXIT_USAGE;
}

static int parse_options(int argc, char **argv, struct cli_options *o)
{
    int c, i;

    memset(o, 0, sizeof(*o));
    o->port = -1;
    o->timeout_ms = -1;

    while ((c = getopt_long(argc, argv, short_options, long_options, NULL)) != -1) {
        switch (c) {
        case 'u': o->url = optarg; break;
        case 'h': o->host = optarg; break;
        case 'p':
            if (cli_parse_number(optarg, 1, 65535, &o->port) != 0)
                return usage_error("bad port '%s' (1-65535)", optarg);
            break;
        case 'v': o->verbose = 1; break;
        case OPT_CACERT: o->cacert = optarg; break;
        case OPT_CERT: o->cert = optarg; break;
        case OPT_KEY: o->key = optarg; break;
        case OPT_SNI: o->sni = optarg; break;
        case OPT_USER: o->user = optarg; break;
        case OPT_TOKEN: o->token = optarg; break;
        case OPT_TOKEN_ALT: o->token_alt = optarg; break;
        case OPT_TIMEOUT:
            /* INT_MAX keeps the value in range wherever long is 32 bits. */
            if (cli_parse_number(optarg, 0, INT_MAX, &o->timeout_ms) != 0)
                return usage_error("bad --timeout '%s' (milliseconds)", optarg);
            break;
        case OPT_TLS_MIN:
            if ((o->tls_min = cli_parse_tls_min(optarg)) == 0)
                return usage_error("bad --tls-min '%s' (1.2 or 1.3)", optarg);
            break;
        case OPT_PLAIN: o->plain = 1; break;
        case OPT_INSECURE: o->insecure = 1; break;
        case OPT_CLUSTER: o->cluster = 1; break;
        case OPT_IAM: o->iam = optarg; break;
        case OPT_REGION: o->region = optarg; break;
        case OPT_SERVERLESS: o->serverless = 1; break;
        case OPT_IAM_SERVICE: o->iam_service = optarg; break;
        case OPT_IAM_TOKEN: o->iam_token = 1; break;
        case OPT_IAM_TIME:
            if (parse_iam_time(optarg, &o->iam_time) != 0)
                return usage_error("--iam-time '%s' is not YYYYMMDDTHHMMSSZ", optarg);
            break;
        case OPT_RESOLVE:
            if (o->nresolve == MAX_RESOLVE)
                return usage_error("at most %d --resolve options", MAX_RESOLVE);
            o->resolve[o->nresolve++] = optarg;
            break;
        case OPT_HELP: usage(stdout); return EXIT_REPLY;
        default: /* getopt_long has already named the problem */
            fputs("Try 'redtls-cli --help'.\n", stderr);
            return EXIT_USAGE;
        }
    }

    if ((o->cert == NULL) != (o->key == NULL))
        return usage_error("--cert and --key go together");
    if ((o->iam_token || o->iam_time || o->region || o->serverless || o->iam_service) && o->iam == NULL)
        return usage_error("--region, --serverless, --iam-service, --iam-token and --iam-time go with --iam");
    if (o->iam != NULL && (o->region == NULL || o->user == NULL))
        return usage_error("--iam needs --region and --user (the IAM user id)");
    if (o->iam_time && !o->iam_token)
        return usage_error("--iam-time goes with --iam-token (a connection signs with the clock)");
    if (o->iam_token && optind < argc)
        return usage_error("--iam-token prints the token; it takes no command");
    if (optind >= argc && !o->iam_token)
        return usage_error("no command given");
    if (o->token == NULL) {
        const char *env = getenv("REDTLS_TOKEN");
        if (env != NULL && *env != '\0')
            o->token = env;
    }
    if (o->token_alt == NULL) {
        const char *env = getenv("REDTLS_TOKEN_ALT");
        if (env != NULL && *env != '\0')
            o->token_alt = env;
    }
    /* A copy, since C will not pass main's char ** as const char **. */
    o->argc = argc - optind;
    o->argv = calloc((size_t)o->argc, sizeof(*o->argv));
    if (o->argv == NULL) {
        fputs("redtls-cli: out of memory\n", stderr);
        return EXIT_CONNECT;
    }
    for (i = 0; i < o->argc; i++)
        o->argv[i] = argv[optind + i];
    return EXIT_CONTINUE;
}

/* Reports a failed configuration call; the message never holds the token. */
static int config_failed(const redtls_config *cfg, const char *what, redtls_status st)
{
    const char *detail = redtls_config_errmsg(cfg);

    fprintf(stderr, "redtls-cli: %s: %s\n", what, *detail != '\0' ? detail : redtls_strerror(st));
    return EXIT_USAGE;
}

/* URL first, then the explicit options, so that options always win. */
static int apply_options(const struct cli_options *o, redtls_config *cfg)
{
    redtls_status st;

#define APPLY(what, call)                                   \
    do {                                                    \
        if ((st = (call)) != REDTLS_OK)                     \
            return config_failed(cfg, (what), st);          \
    } while (0)

    if (o->url != NULL)
        APPLY("--url", redtls_config_set_url(cfg, o->url));
    if (o->host != NULL || o->port != -1)
        APPLY("--host/--port", redtls_config_set_host(cfg, o->host != NULL ? o->host : "127.0.0.1",
                                                      (uint16_t)(o->port != -1 ? o->port : 6379)));
    if (o->plain)
        APPLY("--plain", redtls_config_set_tls(cfg, 0));
    if (o->cacert != NULL)
        APPLY("--cacert", redtls_config_set_ca_file(cfg, o->cacert));
    if (o->cert != NULL)
        APPLY("--cert/--key", redtls_config_set_client_cert_file(cfg, o->cert, o->key));
    if (o->sni != NULL)
        APPLY("--sni", redtls_config_set_verify_name(cfg, o->sni));
    if (o->tls_min != 0)
        APPLY("--tls-min", redtls_config_set_tls_min_version(cfg, (redtls_tls_version)o->tls_min));
    if (o->insecure) {
        fputs("redtls-cli: WARNING: --insecure turns off certificate and host name "
              "verification; anyone on the network path can read and change the "
              "traffic, token included.\n",
              stderr);
        APPLY("--insecure", redtls_config_set_insecure_skip_verify(cfg, 1));
    }
    for (int i = 0; i < o->nresolve; i++) {
        if (cli_apply_resolve(cfg, o->resolve[i], "redtls-cli", "--resolve") != 0)
            return EXIT_USAGE;
    }
    if (o->user != NULL)
        APPLY("--user", redtls_config_set_user(cfg, o->user));
    if (o->token != NULL)
        APPLY("--token", redtls_config_set_token(cfg, o->token));
    if (o->token_alt != NULL)
        APPLY("--token-alt", redtls_config_set_token_alt(cfg, o->token_alt));
    if (o->iam != NULL) {
        APPLY("--iam", redtls_config_set_iam(cfg, o->iam, o->user, o->region, o->serverless ? REDTLS_IAM_SERVERLESS : 0));
        if (o->iam_service != NULL)
            APPLY("--iam-service", redtls_config_set_iam_service(cfg, o->iam_service));
        APPLY("--iam", redtls_config_set_aws_credentials_from_env(cfg));
    }
    if (o->timeout_ms != -1) {
        unsigned ms = (unsigned)o->timeout_ms;
        APPLY("--timeout", redtls_config_set_connect_timeout_ms(cfg, ms));
        APPLY("--timeout", redtls_config_set_handshake_timeout_ms(cfg, ms));
        APPLY("--timeout", redtls_config_set_command_timeout_ms(cfg, ms));
    }
#undef APPLY
    return EXIT_CONTINUE;
}

static const char *or_none(const char *s)
{
    return s != NULL ? s : "(none)";
}

static void print_tls_details(redtls_conn *conn)
{
    const char *version = redtls_conn_tls_version(conn);

    if (version == NULL) {
        fputs("* TLS: off (plain connection)\n", stderr);
        return;
    }
    fprintf(stderr, "* TLS version: %s\n", version);
    fprintf(stderr, "* cipher: %s\n", or_none(redtls_conn_tls_cipher(conn)));
    fprintf(stderr, "* peer subject: %s\n", or_none(redtls_conn_peer_subject(conn)));
    fprintf(stderr, "* peer SANs: %s\n", or_none(redtls_conn_peer_sans(conn)));
    fprintf(stderr, "* peer expires: %s\n", or_none(redtls_conn_peer_not_after(conn)));
}

/* Byte for byte what `redis-cli --raw` prints (checked against redis-cli
 * 7.0): array elements one per line with nested arrays flattened, nil as
 * nothing, and an error's text followed by a newline of its own. The caller
 * adds the final newline. */
static void print_raw(const struct redisReply *r)
{
    const char *s;
    size_t len = 0;
    size_t i;

    switch (redtls_reply_type(r)) {
    case REDTLS_REPLY_STRING:
    case REDTLS_REPLY_STATUS:
        s = redtls_reply_str(r, &len);
        fwrite(s, 1, len, stdout);
        break;
    case REDTLS_REPLY_ERROR:
        s = redtls_reply_str(r, &len);
        fwrite(s, 1, len, stdout);
        putchar('\n');
        break;
    case REDTLS_REPLY_INTEGER:
        printf("%lld", redtls_reply_integer(r));
        break;
    case REDTLS_REPLY_ARRAY:
        for (i = 0; i < redtls_reply_len(r); i++) {
            if (i > 0)
                putchar('\n');
            print_raw(redtls_reply_element(r, i));
        }
        break;
    default: /* nil */
        break;
    }
}

static int print_reply(struct redisReply *reply)
{
    int rc;

    print_raw(reply);
    putchar('\n');
    rc = redtls_reply_type(reply) == REDTLS_REPLY_ERROR ? EXIT_ERROR_REPLY : EXIT_REPLY;
    if (fflush(stdout) != 0) {
        fprintf(stderr, "redtls-cli: writing the reply: %s\n", strerror(errno));
        rc = EXIT_CONNECT;
    }
    redtls_reply_free(reply);
    return rc;
}

/* Cluster mode: the configured host:port is the seed. */
static int run_cluster(const struct cli_options *o, redtls_config *cfg)
{
    redtls_cluster *cl = NULL;
    struct redisReply *reply = NULL;
    redtls_status st;

    st = redtls_cluster_new(cfg, NULL, &cl);
    if (st != REDTLS_OK)
        return config_failed(cfg, "configuration", st);
    st = redtls_cluster_connect(cl);
    if (st == REDTLS_OK)
        st = redtls_cluster_command_argv(cl, 0, o->argc, o->argv, NULL, &reply);
    if (st != REDTLS_OK) {
        const char *detail = redtls_cluster_errmsg(cl);
        fprintf(stderr, "redtls-cli: %s\n", *detail != '\0' ? detail : redtls_strerror(st));
        redtls_cluster_free(cl);
        return EXIT_CONNECT;
    }
    if (o->verbose) {
        size_t i;
        for (i = 0; i < redtls_cluster_node_count(cl); i++)
            fprintf(stderr, "* node %s (%s)\n", redtls_cluster_node_name(cl, i),
                    redtls_cluster_node_is_master(cl, i) ? "master" : "replica");
    }
    redtls_cluster_free(cl);
    return print_reply(reply);
}

static int run(const struct cli_options *o, redtls_config *cfg)
{
    redtls_conn *conn = NULL;
    struct redisReply *reply = NULL;
    redtls_status st;

    st = redtls_conn_new(cfg, &conn);
    if (st != REDTLS_OK)
        return config_failed(cfg, "configuration", st);

    st = redtls_conn_connect(conn);
    if (st == REDTLS_OK) {
        if (o->verbose)
            print_tls_details(conn);
        st = redtls_conn_command_argv(conn, o->argc, o->argv, NULL, &reply);
    }
    if (st != REDTLS_OK) {
        const char *detail = redtls_conn_errmsg(conn);
        fprintf(stderr, "redtls-cli: %s\n", *detail != '\0' ? detail : redtls_strerror(st));
        redtls_conn_free(conn);
        return EXIT_CONNECT;
    }

    redtls_conn_free(conn);
    return print_reply(reply);
}

/* --iam-token: the token on one line, nothing sent anywhere. */
static int print_iam_token(const struct cli_options *o, redtls_config *cfg)
{
    static char token[32768];
    redtls_status st = redtls_iam_token(cfg, o->iam_time, token, sizeof token);
    if (st != REDTLS_OK) {
        fprintf(stderr, "redtls-cli: --iam-token: %s\n", redtls_config_errmsg(cfg));
        return st == REDTLS_E_CONFIG ? EXIT_USAGE : EXIT_CONNECT;
    }
    int rc = puts(token) < 0 || fflush(stdout) != 0 ? EXIT_CONNECT : EXIT_REPLY;
    memset(token, 0, sizeof token);
    return rc;
}

int main(int argc, char **argv)
{
    struct cli_options opts;
    redtls_config *cfg = NULL;
    redtls_status st;
    int rc;

    rc = parse_options(argc, argv, &opts);
    if (rc != EXIT_CONTINUE)
        return rc;

    st = redtls_config_new(&cfg);
    if (st != REDTLS_OK) {
        fprintf(stderr, "redtls-cli: %s\n", redtls_strerror(st));
        rc = EXIT_CONNECT;
    } else {
        rc = apply_options(&opts, cfg);
    }
    if (rc == EXIT_CONTINUE && opts.iam_token)
        rc = print_iam_token(&opts, cfg);
    else if (rc == EXIT_CONTINUE)
        rc = opts.cluster ? run_cluster(&opts, cfg) : run(&opts, cfg);
    redtls_config_free(cfg);
    free(opts.argv);
    return rc;
}

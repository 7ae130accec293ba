/*
 * redtls-migrate: copy the keys of one Redis (plain or TLS, standalone or
 * cluster) to another with DUMP / PTTL / RESTORE ... ABSTTL, both ends
 * verified as redtls always does. Never writes to the source. See usage()
 * for options and exit codes.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redtls/redtls.h>

#include "cli_common.h"
#include "migrate.h"

enum {
    OPT_FROM = 256,
    OPT_TO,
    OPT_FROM_CLUSTER,
    OPT_TO_CLUSTER,
    OPT_FROM_CACERT,
    OPT_TO_CACERT,
    OPT_FROM_SNI,
    OPT_TO_SNI,
    OPT_FROM_USER,
    OPT_TO_USER,
    OPT_FROM_TOKEN,
    OPT_TO_TOKEN,
    OPT_FROM_TOKEN_ALT,
    OPT_TO_TOKEN_ALT,
    OPT_FROM_CERT,
    OPT_TO_CERT,
    OPT_FROM_KEY,
    OPT_TO_KEY,
    OPT_FROM_TLS_MIN,
    OPT_TO_TLS_MIN,
    OPT_FROM_RESOLVE,
    OPT_TO_RESOLVE,
    OPT_FROM_IAM,
    OPT_TO_IAM,
    OPT_FROM_REGION,
    OPT_TO_REGION,
    OPT_FROM_SERVERLESS,
    OPT_TO_SERVERLESS,
    OPT_FROM_IAM_SERVICE,
    OPT_TO_IAM_SERVICE,
    OPT_MATCH,
    OPT_DB,
    OPT_NO_REPLACE,
    OPT_DRY_RUN,
    OPT_BATCH,
    OPT_VERIFY,
    OPT_VERIFY_ONLY,
    OPT_SAMPLE,
    OPT_TIMEOUT,
    OPT_CHUNK_LIMIT,
    OPT_FROM_MAX_BULK,
    OPT_PARALLEL,
    OPT_MAX_OPS,
    OPT_CHECKPOINT,
    OPT_RESUME,
    OPT_HELP
};

static const struct option long_options[] = {
    {"from", required_argument, NULL, OPT_FROM},
    {"to", required_argument, NULL, OPT_TO},
    {"from-cluster", no_argument, NULL, OPT_FROM_CLUSTER},
    {"to-cluster", no_argument, NULL, OPT_TO_CLUSTER},
    {"from-cacert", required_argument, NULL, OPT_FROM_CACERT},
    {"to-cacert", required_argument, NULL, OPT_TO_CACERT},
    {"from-sni", required_argument, NULL, OPT_FROM_SNI},
    {"to-sni", required_argument, NULL, OPT_TO_SNI},
    {"from-user", required_argument, NULL, OPT_FROM_USER},
    {"to-user", required_argument, NULL, OPT_TO_USER},
    {"from-token", required_argument, NULL, OPT_FROM_TOKEN},
    {"to-token", required_argument, NULL, OPT_TO_TOKEN},
    {"from-token-alt", required_argument, NULL, OPT_FROM_TOKEN_ALT},
    {"to-token-alt", required_argument, NULL, OPT_TO_TOKEN_ALT},
    {"from-cert", required_argument, NULL, OPT_FROM_CERT},
    {"to-cert", required_argument, NULL, OPT_TO_CERT},
    {"from-key", required_argument, NULL, OPT_FROM_KEY},
    {"to-key", required_argument, NULL, OPT_TO_KEY},
    {"from-tls-min", required_argument, NULL, OPT_FROM_TLS_MIN},
    {"to-tls-min", required_argument, NULL, OPT_TO_TLS_MIN},
    {"from-resolve", required_argument, NULL, OPT_FROM_RESOLVE},
    {"to-resolve", required_argument, NULL, OPT_TO_RESOLVE},
    {"from-iam", required_argument, NULL, OPT_FROM_IAM},
    {"to-iam", required_argument, NULL, OPT_TO_IAM},
    {"from-region", required_argument, NULL, OPT_FROM_REGION},
    {"to-region", required_argument, NULL, OPT_TO_REGION},
    {"from-serverless", no_argument, NULL, OPT_FROM_SERVERLESS},
    {"to-serverless", no_argument, NULL, OPT_TO_SERVERLESS},
    {"from-iam-service", required_argument, NULL, OPT_FROM_IAM_SERVICE},
    {"to-iam-service", required_argument, NULL, OPT_TO_IAM_SERVICE},
    {"match", required_argument, NULL, OPT_MATCH},
    {"db", required_argument, NULL, OPT_DB},
    {"no-replace", no_argument, NULL, OPT_NO_REPLACE},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"verify", no_argument, NULL, OPT_VERIFY},
    {"verify-only", no_argument, NULL, OPT_VERIFY_ONLY},
    {"sample", required_argument, NULL, OPT_SAMPLE},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"chunk-limit", required_argument, NULL, OPT_CHUNK_LIMIT},
    {"from-max-bulk", required_argument, NULL, OPT_FROM_MAX_BULK},
    {"parallel", required_argument, NULL, OPT_PARALLEL},
    {"max-ops", required_argument, NULL, OPT_MAX_OPS},
    {"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
    {"resume", no_argument, NULL, OPT_RESUME},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
    fputs("Usage: redtls-migrate --from URL --to URL [options]\n"
          "\n"
          "Copies every key (or those matching --match) from the source to the\n"
          "target with DUMP, PTTL and RESTORE ... ABSTTL: values of every type and\n"
          "TTLs to the millisecond; keys that expire on the way are not copied.\n"
          "Nothing is ever written to the source. Both ends are verified as redtls\n"
          "always does (certificate and host name for rediss:// URLs).\n"
          "\n"
          "  --from URL, --to URL   rediss://[[USER]:TOKEN@]HOST[:PORT][/DB] (TLS) or\n"
          "                         redis://... (plain TCP); prefer the token options\n"
          "                         or environment to a token in the URL\n"
          "  --from-cluster, --to-cluster  that side is a Redis Cluster (the URL's\n"
          "                         host:port is a seed node)\n"
          "  --from-cacert F, --to-cacert F  trust the CA certificates in F\n"
          "  --from-sni N, --to-sni N  name sent as SNI and verified\n"
          "  --from-cert F --from-key F, --to-cert F --to-key F  client certificate\n"
          "  --from-tls-min V, --to-tls-min V  lowest TLS version: 1.2 (default), 1.3\n"
          "  --from-resolve H:P:A, --to-resolve H:P:A  connect to A when asked for\n"
          "                         H:P, still verifying H (P * : any port); repeatable\n"
          "  --from-user U, --to-user U  ACL user name\n"
          "  --from-iam CACHE, --to-iam CACHE  ElastiCache/MemoryDB IAM authentication\n"
          "                         for that side's cache (replication group or\n"
          "                         serverless cache name); needs --X-region and\n"
          "                         --X-user (the IAM user id); AWS credentials from\n"
          "                         AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and\n"
          "                         AWS_SESSION_TOKEN (or iam=CACHE&region=R in the URL)\n"
          "  --from-region R, --to-region R  the cache's AWS region\n"
          "  --from-serverless, --to-serverless  the cache is serverless\n"
          "  --from-iam-service S, --to-iam-service S  elasticache (default) or memorydb\n"
          "  --from-token T, --to-token T  password or token (or REDTLS_FROM_TOKEN,\n"
          "                         REDTLS_TO_TOKEN: arguments are visible in `ps`)\n"
          "  --from-token-alt T, --to-token-alt T  second token, tried when the\n"
          "                         first is refused (AUTH token rotation)\n"
          "  --match PATTERN        copy only keys matching PATTERN (SCAN MATCH)\n"
          "  --db N                 database of standalone sides (default: the URL's)\n"
          "  --no-replace           leave keys that already exist on the target\n"
          "                         (counted as skipped)\n"
          "  --dry-run              count keys and DUMP bytes, write nothing\n"
          "  --verify               after the copy, compare every key by DUMP payload\n"
          "                         (sets and hashes by contents) and TTL (within 2 s),\n"
          "                         and the key counts (DBSIZE; a target with fewer\n"
          "                         keys differs); differences listed on stdout, exit 1\n"
          "                         if any\n"
          "  --verify-only          the comparison without a copy\n"
          "  --sample N             with --verify(-only): compare N keys drawn at\n"
          "                         random instead of every key (RANDOMKEY on each\n"
          "                         master by its share of the keys, or a SCAN when N\n"
          "                         is over a quarter of them or with --match)\n",
          out);
    /* Two strings: C99 promises string literals of 4,095 bytes only. */
    fputs("  --batch N              keys per SCAN and pipeline (default 500)\n"
          "  --parallel N           copy at most N source nodes at once (default: every\n"
          "                         master of a cluster source, each by its own thread\n"
          "                         with its own connections; a standalone source is one)\n"
          "  --max-ops N            read at most N keys per second from each source node\n"
          "  --checkpoint FILE      keep each source node's progress (SCAN cursor and\n"
          "                         counts) in FILE, replaced atomically as batches\n"
          "                         complete; refused if FILE exists without --resume\n"
          "  --resume               continue the run recorded in the --checkpoint FILE\n"
          "                         (the same --from, --to, --match and --db; a missing\n"
          "                         FILE starts afresh); the report counts every run\n"
          "  --timeout MS           connect, handshake and command timeout\n"
          "  --chunk-limit BYTES    a value whose DUMP is larger (default 64m; k, m, g\n"
          "                         suffixes count 1024s), or larger than the target's\n"
          "                         proto-max-bulk-len, is copied by type in pieces\n"
          "                         under a temporary key, then renamed; a stream loses\n"
          "                         its consumer groups that way (a warning says so),\n"
          "                         module types fail\n"
          "  --from-max-bulk BYTES  largest reply read from the source (default 512m):\n"
          "                         bounds this tool's memory; a bigger DUMP is copied\n"
          "                         in pieces too, a bigger single element fails its key\n"
          "  --help                 print this help and exit\n"
          "\n"
          "Progress goes to stderr (a bar redrawn in place on a terminal, a line a\n"
          "second otherwise), the final report to stdout. A batch or SCAN step that\n"
          "fails on a broken connection is retried on a new one (up to 6 attempts\n"
          "over about 8 s) before the run gives up with status 3.\n"
          "\n"
          "Exit status:\n"
          "  0  every key was copied (or skipped, or expired on the way)\n"
          "  1  some keys failed, or --verify found differences\n"
          "  2  usage or configuration error, or source and target are the same server\n"
          "  3  connection, TLS, authentication or I/O failure\n"
          "  130, 143  stopped by SIGINT or SIGTERM (after the batches in progress;\n"
          "     with --checkpoint, --resume continues); a second signal ends it at once\n",
          out);
}

static int usage_error(const char *fmt, ...) REDTLS_PRINTF(1, 2);

static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("redtls-migrate: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'redtls-migrate --help'.\n", stderr);
    return EXIT_USAGE;
}

static const char *env_or(const char *given, const char *var)
{
    const char *env;

    if (given != NULL)
        return given;
    env = getenv(var);
    return env != NULL && *env != '\0' ? env : NULL;
}

/* BYTES with an optional k, m or g (powers of 1024) in [min, max]. */
static int parse_size(const char *s, unsigned long long min, unsigned long long max, unsigned long long *out)
{
    char *end;
    unsigned long long v, mult = 1;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0)
        return -1;
    switch (*end) {
    case 'k':
    case 'K': mult = 1ULL << 10, end++; break;
    case 'm':
    case 'M': mult = 1ULL << 20, end++; break;
    case 'g':
    case 'G': mult = 1ULL << 30, end++; break;
    default: break;
    }
    if (*end != '\0' || v > max / mult || v * mult < min)
        return -1;
    *out = v * mult;
    return 0;
}

static int parse_options(int argc, char **argv, struct migrate_options *o)
{
    int c;

    memset(o, 0, sizeof(*o));
    o->from.name = "source";
    o->to.name = "target";
    o->db = -1;
    o->batch = 500;
    o->timeout_ms = -1;
    o->chunk_limit = 64ULL << 20;

    while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (c) {
        case OPT_FROM: o->from.url = optarg; break;
        case OPT_TO: o->to.url = optarg; break;
        case OPT_FROM_CLUSTER: o->from.cluster = 1; break;
        case OPT_TO_CLUSTER: o->to.cluster = 1; break;
        case OPT_FROM_CACERT: o->from.cacert = optarg; break;
        case OPT_TO_CACERT: o->to.cacert = optarg; break;
        case OPT_FROM_SNI: o->from.sni = optarg; break;
        case OPT_TO_SNI: o->to.sni = optarg; break;
        case OPT_FROM_USER: o->from.user = optarg; break;
        case OPT_TO_USER: o->to.user = optarg; break;
        case OPT_FROM_TOKEN: o->from.token = optarg; break;
        case OPT_TO_TOKEN: o->to.token = optarg; break;
        case OPT_FROM_TOKEN_ALT: o->from.token_alt = optarg; break;
        case OPT_TO_TOKEN_ALT: o->to.token_alt = optarg; break;
        case OPT_FROM_CERT: o->from.cert = optarg; break;
        case OPT_TO_CERT: o->to.cert = optarg; break;
        case OPT_FROM_KEY: o->from.key = optarg; break;
        case OPT_TO_KEY: o->to.key = optarg; break;
        case OPT_FROM_TLS_MIN:
        case OPT_TO_TLS_MIN: {
            struct side_options *so = c == OPT_FROM_TLS_MIN ? &o->from : &o->to;
            if ((so->tls_min = cli_parse_tls_min(optarg)) == 0)
                return usage_error("bad --%s-tls-min '%s' (1.2 or 1.3)", c == OPT_FROM_TLS_MIN ? "from" : "to", optarg);
            break;
        }
        case OPT_FROM_IAM: o->from.iam = optarg; break;
        case OPT_TO_IAM: o->to.iam = optarg; break;
        case OPT_FROM_REGION: o->from.region = optarg; break;
        case OPT_TO_REGION: o->to.region = optarg; break;
        case OPT_FROM_SERVERLESS: o->from.serverless = 1; break;
        case OPT_TO_SERVERLESS: o->to.serverless = 1; break;
        case OPT_FROM_IAM_SERVICE: o->from.iam_service = optarg; break;
        case OPT_TO_IAM_SERVICE: o->to.iam_service = optarg; break;
        case OPT_FROM_RESOLVE:
        case OPT_TO_RESOLVE: {
            struct side_options *so = c == OPT_FROM_RESOLVE ? &o->from : &o->to;
            if (so->nresolve == MAX_RESOLVE)
                return usage_error("at most %d --%s-resolve options", MAX_RESOLVE,
                                   c == OPT_FROM_RESOLVE ? "from" : "to");
            so->resolve[so->nresolve++] = optarg;
            break;
        }
        case OPT_MATCH: o->match = optarg; break;
        case OPT_DB:
            if (cli_parse_number(optarg, 0, INT_MAX, &o->db) != 0)
                return usage_error("bad --db '%s'", optarg);
            break;
        case OPT_NO_REPLACE: o->no_replace = 1; break;
        case OPT_DRY_RUN: o->dry_run = 1; break;
        case OPT_VERIFY: o->verify = 1; break;
        case OPT_VERIFY_ONLY: o->verify = 2; break;
        case OPT_SAMPLE:
            if (cli_parse_number(optarg, 1, 100000000, &o->sample) != 0)
                return usage_error("bad --sample '%s' (1-100000000 keys)", optarg);
            break;
        case OPT_BATCH:
            if (cli_parse_number(optarg, 1, 100000, &o->batch) != 0)
                return usage_error("bad --batch '%s' (1-100000)", optarg);
            break;
        case OPT_TIMEOUT:
            if (cli_parse_number(optarg, 0, INT_MAX, &o->timeout_ms) != 0)
                return usage_error("bad --timeout '%s' (milliseconds)", optarg);
            break;
        case OPT_CHUNK_LIMIT:
            if (parse_size(optarg, 1024, 1ULL << 40, &o->chunk_limit) != 0)
                return usage_error("bad --chunk-limit '%s' (bytes, at least 1k; k, m, g suffixes)", optarg);
            break;
        case OPT_FROM_MAX_BULK:
            if (parse_size(optarg, 64ULL << 10, (unsigned long long)SIZE_MAX / 2, &o->from_max_bulk) != 0)
                return usage_error("bad --from-max-bulk '%s' (bytes, at least 64k; k, m, g suffixes)", optarg);
            break;
        case OPT_PARALLEL:
            if (cli_parse_number(optarg, 1, MAX_NODES, &o->parallel) != 0)
                return usage_error("bad --parallel '%s' (1-%d)", optarg, MAX_NODES);
            break;
        case OPT_MAX_OPS:
            if (cli_parse_number(optarg, 1, 100000000, &o->max_ops) != 0)
                return usage_error("bad --max-ops '%s' (keys per second, 1-100000000)", optarg);
            break;
        case OPT_CHECKPOINT:
            if (*optarg == '\0')
                return usage_error("--checkpoint needs a file name");
            o->checkpoint = optarg;
            break;
        case OPT_RESUME: o->resume = 1; break;
        case OPT_HELP: usage(stdout); return EXIT_ALL_COPIED;
        default: fputs("Try 'redtls-migrate --help'.\n", stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (o->from.url == NULL || o->to.url == NULL)
        return usage_error("--from and --to are both needed");
    if (o->verify != 0 && o->dry_run)
        return usage_error("--dry-run writes nothing, so there is nothing to --verify");
    if (o->sample > 0 && o->verify == 0)
        return usage_error("--sample goes with --verify or --verify-only");
    if ((o->from.cert == NULL) != (o->from.key == NULL) || (o->to.cert == NULL) != (o->to.key == NULL))
        return usage_error("--from-cert and --from-key (--to-cert and --to-key) go together");
    if (o->db > 0 && o->from.cluster && o->to.cluster)
        return usage_error("--db is for standalone sides (a cluster has database 0 only)");
    for (int i = 0; i < 2; i++) {
        const struct side_options *so = i == 0 ? &o->from : &o->to;
        const char *side = i == 0 ? "from" : "to";
        if ((so->region != NULL || so->serverless || so->iam_service != NULL) && so->iam == NULL)
            return usage_error("--%s-region, --%s-serverless and --%s-iam-service go with --%s-iam", side, side, side,
                               side);
        if (so->iam != NULL && (so->region == NULL || so->user == NULL))
            return usage_error("--%s-iam needs --%s-region and --%s-user (the IAM user id)", side, side, side);
    }
    if (o->resume && o->checkpoint == NULL)
        return usage_error("--resume needs the --checkpoint FILE of the run to continue");
    if (o->checkpoint != NULL && (o->dry_run || o->verify == 2))
        return usage_error("--checkpoint keeps the progress of a copy: not with --%s",
                           o->dry_run ? "dry-run" : "verify-only");
    o->from.token = env_or(o->from.token, "REDTLS_FROM_TOKEN");
    o->to.token = env_or(o->to.token, "REDTLS_TO_TOKEN");
    o->from.token_alt = env_or(o->from.token_alt, "REDTLS_FROM_TOKEN_ALT");
    o->to.token_alt = env_or(o->to.token_alt, "REDTLS_TO_TOKEN_ALT");
    for (int i = 0; i < 2; i++) {
        const struct side_options *so = i == 0 ? &o->from : &o->to;
        const char *side = i == 0 ? "from" : "to";
        if (so->iam != NULL && (so->token != NULL || so->token_alt != NULL))
            return usage_error("--%s-iam signs its own tokens: no --%s-token or --%s-token-alt with it (nor "
                               "REDTLS_%s_TOKEN or REDTLS_%s_TOKEN_ALT in the environment)",
                               side, side, side, i == 0 ? "FROM" : "TO", i == 0 ? "FROM" : "TO");
    }
    return EXIT_CONTINUE;
}

/* A key for a message: printable bytes as they are, others as \xHH, cut
 * at 60 bytes. */
static void print_key(FILE *f, const char *k, size_t len)
{
    size_t i;
    for (i = 0; i < len && i < 60; i++) {
        unsigned char ch = (unsigned char)k[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\')
            fputc(ch, f);
        else
            fprintf(f, "\\x%02x", ch);
    }
    if (len > 60)
        fputs("...", f);
}

struct batch_key {
    const char *key;
    size_t key_len;
    struct redisReply *dump;
    long long pttl;
    long long abs_ms; /* 0: no TTL */
    int live;         /* still there when read */
    int chunk;        /* too big for one RESTORE: copied in pieces */
    /* set by each attempt to write the batch */
    int sent;   /* a RESTORE went out */
    int check;  /* an EXISTS follows its RESTORE */
    int pieces; /* copied in pieces after the RESTOREs */
};

/* One SCAN step's keys on their way from the source to the target: read
 * by the worker's thread, written by its writer thread (two batches, so
 * the source reads the next one while the target restores this one). */
enum batch_state { BATCH_FREE, BATCH_READY, BATCH_WRITING };

/* Batches in hand per worker: the one being written and those read ahead
 * (a key whose RESTORE takes long, like a hash of millions of fields, does
 * not stop the reads meanwhile). */
#ifndef BATCHES_AHEAD
#define BATCHES_AHEAD 4
#endif
/* ... and no further ahead once the batches in hand hold this many DUMP
 * bytes (a batch of big values is then written before the next is read). */
#define AHEAD_MAX_BYTES (256ULL << 20)

struct batch {
    enum batch_state state;  /* under run.mu */
    struct redisReply *scan; /* owns the key names */
    struct batch_key *keys;
    size_t nkeys, cap;
    char cursor[CURSOR_MAX]; /* the SCAN cursor after these keys */
    int last;                /* the node's last batch */
    struct counts n;         /* reading it, then writing it */
    unsigned long long held; /* DUMP bytes in hand once read */
};

/* One worker: a source node at a time, with its own handles: source and
 * target, and a second source handle for the writer thread's copies in
 * pieces (prepared, not connected: the handle connects on its first
 * command, so a run without big values never opens it). */
struct run {
    const struct migrate_options *o;
    struct migration *c;
    struct side *from, *to, *pieces_from;
    struct side from_side, to_side, pieces_side;
    long long skew;
    double next_read;              /* --max-ops: the earliest start of the next batch */
    unsigned long long chunk_over; /* DUMP payloads above: in pieces */
    struct chunk_job chunks;
    /* the node being copied, between the two threads */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct batch buf[BATCHES_AHEAD];
    size_t node_idx;
    struct counts base;      /* the node's counts before this run */
    struct counts done;      /* the batches written, this run */
    int reader_done;         /* no more batches will come */
    unsigned long long held; /* DUMP bytes of the batches read and not yet written */
    int writer_rc;           /* EXIT_CONTINUE, or why the writer stopped */
    double t0;
};

/* Which DUMP payloads go in pieces, and how big a piece is: the smaller
 * of --chunk-limit and what the target takes in one argument (its
 * proto-max-bulk-len less some room); pieces of at most 4 MiB, the chunk
 * limit, and half of either end's bulk limit. */
static int plan_pieces(struct run *r)
{
    unsigned long long target_max, reader = r->o->from_max_bulk, piece = 4ULL << 20;
    int rc;

    if ((rc = chunk_target_limit(r->to, &target_max)) != EXIT_CONTINUE)
        return rc;
    if (reader == 0)
        reader = redtls_default_max_bulk_len();
    r->chunk_over = target_max > 8192 ? target_max - 4096 : target_max / 2;
    if (r->o->chunk_limit < r->chunk_over)
        r->chunk_over = r->o->chunk_limit;
    if (r->o->chunk_limit < piece)
        piece = r->o->chunk_limit;
    if (target_max / 2 < piece)
        piece = target_max / 2;
    if (reader / 2 < piece)
        piece = reader / 2;
    r->chunks.o = r->o;
    r->chunks.from = r->from;
    r->chunks.to = r->to;
    r->chunks.skew = r->skew;
    r->chunks.piece = (size_t)(piece > 0 ? piece : 1);
    return EXIT_CONTINUE;
}

struct run *run_new(struct migration *c, int *rc)
{
    struct run *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        fputs("redtls-migrate: out of memory\n", stderr);
        *rc = EXIT_CONNECT;
        return NULL;
    }
    r->o = c->o;
    r->c = c;
    r->skew = c->skew;
    r->from = &r->from_side;
    r->to = &r->to_side;
    r->pieces_from = &r->pieces_side;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    *rc = side_prepare(c->o, &c->o->to, r->to);
    if (*rc == EXIT_CONTINUE)
        *rc = side_prepare(c->o, &c->o->from, r->from);
    if (*rc == EXIT_CONTINUE)
        *rc = side_prepare(c->o, &c->o->from, r->pieces_from);
    if (*rc == EXIT_CONTINUE)
        *rc = side_connect(r->to);
    if (*rc == EXIT_CONTINUE)
        *rc = side_connect(r->from);
    if (*rc == EXIT_CONTINUE)
        *rc = plan_pieces(r);
    if (*rc != EXIT_CONTINUE) {
        run_free(r);
        return NULL;
    }
    /* Pieces are read on a handle of their own: the worker's thread reads
     * the next batch on r->from meanwhile. */
    r->chunks.from = r->pieces_from;
    return r;
}

static void free_batch(struct batch *b)
{
    size_t i;
    for (i = 0; i < b->nkeys; i++)
        redtls_reply_free(b->keys[i].dump);
    if (b->cap > 0)
        memset(b->keys, 0, b->cap * sizeof(*b->keys));
    redtls_reply_free(b->scan);
    b->scan = NULL;
    b->nkeys = 0;
    b->last = 0;
    memset(&b->n, 0, sizeof b->n);
}

void run_free(struct run *r)
{
    if (r == NULL)
        return;
    for (int i = 0; i < BATCHES_AHEAD; i++) {
        free_batch(&r->buf[i]);
        free(r->buf[i].keys);
    }
    side_close(&r->from_side);
    side_close(&r->to_side);
    side_close(&r->pieces_side);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static void key_failed(struct run *r, struct counts *n, const struct batch_key *k, const char *why, size_t why_len)
{
    struct migration *c = r->c;

    n->failed++;
    pthread_mutex_lock(&c->mu);
    if (c->errors_shown++ < 20) {
        copy_clear_bar(c);
        fputs("redtls-migrate: key '", stderr);
        print_key(stderr, k->key, k->key_len);
        fprintf(stderr, "' failed: %.*s\n", (int)(why_len > 200 ? 200 : why_len), why);
    }
    pthread_mutex_unlock(&c->mu);
}

/* Reads and drops n pipelined replies, whatever their status. */
static void skip_replies(struct side *s, size_t n)
{
    for (; n > 0; n--) {
        struct redisReply *rep = NULL;
        (void)side_get_reply(s, &rep);
        redtls_reply_free(rep);
    }
}

/* DUMP + PTTL for the batch, pipelined on the source. A failed read is a
 * source failure (EXIT_CONNECT: the batch is read again), except a DUMP over
 * the reader's limit (--from-max-bulk), which marks that key for a copy in
 * pieces. Counts go to b->n. */
static int read_batch(struct run *r, struct batch *b)
{
    size_t i, first = 0;
    redtls_status st;
    long long t0;
    size_t nkeys = b->nkeys;

again:
    for (i = first; i < nkeys; i++) {
        const char *argv[2] = {"DUMP", b->keys[i].key};
        size_t lens[2] = {4, b->keys[i].key_len};
        if ((st = side_append(r->from, 2, argv, lens)) != REDTLS_OK)
            goto failed;
        argv[0] = "PTTL";
        if ((st = side_append(r->from, 2, argv, lens)) != REDTLS_OK)
            goto failed;
    }
    /* Taken before the PTTLs run, so the absolute expiry computed from them
     * is never later than the source's. */
    t0 = now_ms();
    for (i = first; i < nkeys; i++) {
        struct batch_key *k = &b->keys[i];
        struct redisReply *ttl = NULL;
        if ((st = side_get_reply(r->from, &k->dump)) == REDTLS_E_LIMIT) {
            /* The reader closed that connection, and the replies after this
             * one went with it: this key goes in pieces, the rest are read
             * again. */
            k->live = k->chunk = 1;
            b->n.bytes += chunk_refused_len(side_errmsg(r->from, st));
            skip_replies(r->from, 2 * (nkeys - i) - 1);
            first = i + 1;
            goto again;
        }
        if (st != REDTLS_OK)
            goto failed;
        if ((st = side_get_reply(r->from, &ttl)) != REDTLS_OK)
            goto failed;
        if (redtls_reply_type(k->dump) == REDTLS_REPLY_ERROR) {
            size_t len;
            const char *e = redtls_reply_str(k->dump, &len);
            key_failed(r, &b->n, k, e, len);
        } else if (redtls_reply_type(k->dump) == REDTLS_REPLY_STRING &&
                   redtls_reply_type(ttl) == REDTLS_REPLY_INTEGER && redtls_reply_integer(ttl) != -2) {
            k->pttl = redtls_reply_integer(ttl);
            k->abs_ms = k->pttl >= 0 ? t0 + r->skew + k->pttl : 0;
            k->live = 1;
            size_t len;
            (void)redtls_reply_str(k->dump, &len);
            b->n.bytes += len;
            if (len > r->chunk_over) {
                k->chunk = 1;
                redtls_reply_free(k->dump);
                k->dump = NULL;
            }
        } else if (redtls_reply_type(k->dump) == REDTLS_REPLY_STRING && redtls_reply_type(ttl) == REDTLS_REPLY_ERROR) {
            /* Without its TTL the key cannot be copied right (an ACL without
             * PTTL, say): a failure, never "expired". */
            size_t len;
            const char *e = redtls_reply_str(ttl, &len);
            key_failed(r, &b->n, k, e, len);
        } else if (redtls_reply_type(k->dump) == REDTLS_REPLY_STRING &&
                   redtls_reply_type(ttl) != REDTLS_REPLY_INTEGER) {
            static const char why[] = "the source's PTTL answer is not a number";
            key_failed(r, &b->n, k, why, sizeof why - 1);
        } else {
            b->n.expired++; /* DUMP nil or PTTL -2: gone on the way */
        }
        redtls_reply_free(ttl);
    }
    return EXIT_CONTINUE;
failed:
    fprintf(stderr, "redtls-migrate: source: %s\n", side_errmsg(r->from, st));
    return EXIT_CONNECT;
}

/* RESTORE ... ABSTTL with a time already past answers OK and creates
 * nothing, so a key that may expire before its RESTORE runs (within the
 * command timeout, plus a second) is followed by EXISTS to count it right. */
static long long expiry_margin_ms(const struct migrate_options *o)
{
    long long t = o->timeout_ms > 0 ? o->timeout_ms : o->timeout_ms == 0 ? 60000 : REDTLS_DEFAULT_COMMAND_TIMEOUT_MS;
    return t + 1000;
}

/* One key through migrate_chunk.c, counted in n. */
static int copy_in_pieces(struct run *r, struct counts *n, const struct batch_key *k)
{
    struct chunk_result res;

    switch (chunk_copy_key(&r->chunks, k->key, k->key_len, &res)) {
    case CHUNK_COPIED:
        n->copied++;
        n->chunked++;
        if (res.warn[0] != '\0') {
            pthread_mutex_lock(&r->c->mu);
            copy_clear_bar(r->c);
            fputs("redtls-migrate: warning: key '", stderr);
            print_key(stderr, k->key, k->key_len);
            fprintf(stderr, "': %s\n", res.warn);
            pthread_mutex_unlock(&r->c->mu);
        }
        break;
    case CHUNK_SKIPPED: n->skipped++; break;
    case CHUNK_EXPIRED: n->expired++; break;
    case CHUNK_FAILED: key_failed(r, n, k, res.msg, strlen(res.msg)); break;
    default: fprintf(stderr, "redtls-migrate: %s\n", res.msg); return EXIT_CONNECT;
    }
    return EXIT_CONTINUE;
}

/* One attempt at writing batch b: RESTOREs pipelined, then the keys that
 * go in pieces. Counts go to *n, which the caller keeps only when the
 * attempt did not end with EXIT_CONNECT (a broken connection: the whole
 * batch is written again; RESTORE ... REPLACE of the same payload changes
 * nothing). The batch's keys are not changed, so an attempt can be
 * repeated. */
static int write_batch(struct run *r, struct batch *b, struct counts *n)
{
    size_t i, queued = 0, nkeys = b->nkeys;
    redtls_status st, lost = REDTLS_OK;
    long long now = now_ms() + r->skew, margin = expiry_margin_ms(r->o);
    char ttlbuf[32];

    for (i = 0; i < nkeys; i++) {
        struct batch_key *k = &b->keys[i];
        const char *argv[6];
        size_t lens[6];
        int argc = 0;
        size_t plen;
        const char *payload;

        k->sent = k->check = k->pieces = 0;
        if (!k->live)
            continue;
        if (k->abs_ms != 0 && k->abs_ms <= now) {
            /* RESTORE would not create it either: it expired on the way. */
            n->expired++;
            continue;
        }
        if (r->o->dry_run) {
            n->copied++;
            n->chunked += (unsigned)k->chunk;
            continue;
        }
        if (k->chunk) {
            k->pieces = 1; /* after this batch's RESTOREs */
            continue;
        }
        payload = redtls_reply_str(k->dump, &plen);
        snprintf(ttlbuf, sizeof ttlbuf, "%lld", k->abs_ms);
        argv[argc] = "RESTORE", lens[argc++] = 7;
        argv[argc] = k->key, lens[argc++] = k->key_len;
        argv[argc] = ttlbuf, lens[argc++] = strlen(ttlbuf);
        argv[argc] = payload, lens[argc++] = plen;
        if (!r->o->no_replace)
            argv[argc] = "REPLACE", lens[argc++] = 7;
        argv[argc] = "ABSTTL", lens[argc++] = 6;
        if ((st = side_append(r->to, argc, argv, lens)) != REDTLS_OK) {
            fprintf(stderr, "redtls-migrate: target: %s\n", side_errmsg(r->to, st));
            return EXIT_CONNECT;
        }
        k->sent = 1;
        queued++;
        if (k->abs_ms != 0 && k->abs_ms - now < margin) {
            argv[0] = "EXISTS", lens[0] = 6;
            if ((st = side_append(r->to, 2, argv, lens)) != REDTLS_OK) {
                fprintf(stderr, "redtls-migrate: target: %s\n", side_errmsg(r->to, st));
                return EXIT_CONNECT;
            }
            k->check = 1;
        }
    }
    for (i = 0; i < nkeys && queued > 0; i++) {
        struct batch_key *k = &b->keys[i];
        struct redisReply *rep = NULL, *exists = NULL;
        if (!k->sent)
            continue;
        queued--;
        st = side_get_reply(r->to, &rep);
        if (k->check && side_get_reply(r->to, &exists) == REDTLS_OK && st == REDTLS_OK &&
            redtls_reply_type(rep) == REDTLS_REPLY_STATUS && redtls_reply_type(exists) == REDTLS_REPLY_INTEGER &&
            redtls_reply_integer(exists) == 0) {
            n->expired++; /* RESTORE ran after the expiry time: nothing made */
        } else if (st != REDTLS_OK) {
            lost = st; /* the connection broke: the whole batch is written again */
        } else if (redtls_reply_type(rep) == REDTLS_REPLY_ERROR) {
            size_t len;
            const char *e = redtls_reply_str(rep, &len);
            if (r->o->no_replace && len >= 7 && memcmp(e, "BUSYKEY", 7) == 0)
                n->skipped++;
            else
                key_failed(r, n, k, e, len);
        } else {
            n->copied++;
        }
        redtls_reply_free(rep);
        redtls_reply_free(exists);
    }
    if (lost != REDTLS_OK) {
        fprintf(stderr, "redtls-migrate: target: %s\n", side_errmsg(r->to, lost));
        return EXIT_CONNECT;
    }
    for (i = 0; i < nkeys; i++)
        if (b->keys[i].pieces && copy_in_pieces(r, n, &b->keys[i]) != EXIT_CONTINUE)
            return EXIT_CONNECT;
    return EXIT_CONTINUE;
}

/* A batch or SCAN step lost with its connection is tried again on a new
 * one, this many times in all, after pauses doubling from RETRY_FIRST_MS. */
#define RETRY_ATTEMPTS 6
#define RETRY_FIRST_MS 250

static void retry_pause(struct run *r, const char *what, int attempt)
{
    long ms = (long)RETRY_FIRST_MS << (attempt - 1);

    pthread_mutex_lock(&r->c->mu);
    copy_clear_bar(r->c);
    fprintf(stderr, "redtls-migrate: %s failed (attempt %d of %d); trying again in %ld ms\n", what, attempt,
            RETRY_ATTEMPTS, ms);
    pthread_mutex_unlock(&r->c->mu);
    sleep_s((double)ms / 1000.0);
}

static void give_up(struct run *r, const char *what)
{
    pthread_mutex_lock(&r->c->mu);
    copy_clear_bar(r->c);
    fprintf(stderr, "redtls-migrate: %s failed %d times; giving up%s\n", what, RETRY_ATTEMPTS,
            r->o->checkpoint != NULL ? " (the checkpoint keeps what was done: --resume continues)" : "");
    pthread_mutex_unlock(&r->c->mu);
}

/* Back to the state SCAN left: DUMP replies dropped, keys kept, the
 * read's counts taken back. */
static void reset_batch(struct batch *b)
{
    size_t i;
    for (i = 0; i < b->nkeys; i++) {
        struct batch_key *k = &b->keys[i];
        const char *key = k->key;
        size_t len = k->key_len;
        redtls_reply_free(k->dump);
        memset(k, 0, sizeof(*k));
        k->key = key;
        k->key_len = len;
    }
    memset(&b->n, 0, sizeof b->n);
    b->n.scanned = b->nkeys;
}

/* Reads batch b (DUMP + PTTL), again on a new connection when one breaks. */
static int read_batch_retried(struct run *r, struct batch *b, const char *what)
{
    int attempt, rc = EXIT_CONTINUE;

    for (attempt = 1; attempt <= RETRY_ATTEMPTS; attempt++) {
        if (attempt > 1) {
            side_discard(r->from);
            reset_batch(b);
            retry_pause(r, what, attempt - 1);
        }
        rc = read_batch(r, b);
        if (rc != EXIT_CONNECT)
            return rc;
    }
    give_up(r, what);
    return rc;
}

/* Writes batch b, again on a new connection when one breaks; its counts
 * join b->n once an attempt went through. */
static int write_batch_retried(struct run *r, struct batch *b, const char *what)
{
    int attempt, rc = EXIT_CONTINUE;

    for (attempt = 1; attempt <= RETRY_ATTEMPTS; attempt++) {
        struct counts n;
        memset(&n, 0, sizeof n);
        if (attempt > 1) {
            side_discard(r->to);
            side_discard(r->pieces_from);
            retry_pause(r, what, attempt - 1);
        }
        rc = write_batch(r, b, &n);
        if (rc != EXIT_CONNECT) {
            add_counts(&b->n, &n);
            return rc;
        }
    }
    give_up(r, what);
    return rc;
}

static int scan_step(struct run *r, const char *node, const char *count, char *cursor, struct redisReply **rep)
{
    int attempt, rc = EXIT_CONTINUE;

    for (attempt = 1; attempt <= RETRY_ATTEMPTS; attempt++) {
        if (attempt > 1)
            retry_pause(r, "SCAN", attempt - 1);
        rc = side_scan(r->from, node, r->o->match, count, cursor, CURSOR_MAX, rep);
        if (rc != EXIT_CONNECT || r->from->refused)
            return rc; /* the server's own refusal (an ACL, say) is not retried */
    }
    give_up(r, "SCAN");
    return rc;
}

/* --max-ops: a batch of nkeys that began at started is done; waits
 * until reading them at the allowed rate would have taken that long (the
 * batch's own time counts, a pause before it does not). */
static void throttle(struct run *r, size_t nkeys, double started)
{
    double now, wait;

    if (r->o->max_ops <= 0)
        return;
    now = mono_s();
    if (r->next_read < started)
        r->next_read = started;
    r->next_read += (double)nkeys / (double)r->o->max_ops;
    wait = r->next_read - now;
    if (wait > 0)
        sleep_s(wait);
}

/* The writer thread of a worker: writes the batches in the order they were
 * read, then publishes the node's cursor and counts, so a checkpoint only
 * ever holds batches the target acknowledged. */
static void *writer_main(void *arg)
{
    struct run *r = arg;
    struct migration *c = r->c;
    struct node_progress *np = &c->cp->node[r->node_idx];
    char what[NODE_ADDR_MAX + 16];
    size_t next = 0;
    int rc = EXIT_CONTINUE;

    snprintf(what, sizeof what, "writing the batch%s%s", c->standalone ? "" : " from ", c->standalone ? "" : np->addr);
    for (;;) {
        struct batch *b = &r->buf[next % BATCHES_AHEAD];
        pthread_mutex_lock(&r->mu);
        while (b->state != BATCH_READY && !r->reader_done)
            pthread_cond_wait(&r->cv, &r->mu);
        if (b->state != BATCH_READY) {
            pthread_mutex_unlock(&r->mu);
            break;
        }
        b->state = BATCH_WRITING;
        pthread_mutex_unlock(&r->mu);

        rc = b->nkeys > 0 ? write_batch_retried(r, b, what) : EXIT_CONTINUE;
        if (rc == EXIT_CONTINUE) {
            add_counts(&r->done, &b->n);
            pthread_mutex_lock(&c->mu);
            np->n = r->base;
            add_counts(&np->n, &r->done);
            memcpy(np->cursor, b->cursor, sizeof np->cursor);
            np->done = b->last;
            c->version++;
            if (b->last && !c->standalone) {
                copy_clear_bar(c);
                fprintf(stderr, "redtls-migrate: node %s done: %llu keys scanned, %llu copied in %.1f s\n", np->addr,
                        np->n.scanned, np->n.copied, mono_s() - r->t0);
            }
            pthread_mutex_unlock(&c->mu);
        }
        pthread_mutex_lock(&r->mu);
        r->held -= b->held;
        b->held = 0;
        free_batch(b);
        b->state = BATCH_FREE;
        if (rc != EXIT_CONTINUE)
            r->writer_rc = rc;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        if (rc != EXIT_CONTINUE)
            break;
        next++;
    }
    return NULL;
}

/* The worker's thread: SCAN and DUMP + PTTL, a batch ahead of the writer. */
static int read_node(struct run *r, const char *node, char *cursor)
{
    struct migration *c = r->c;
    char count[32], what[NODE_ADDR_MAX + 16];
    size_t next = 0;
    int last = 0;

    snprintf(count, sizeof count, "%ld",
             r->o->max_ops > 0 && r->o->max_ops < r->o->batch ? r->o->max_ops : r->o->batch);
    snprintf(what, sizeof what, "batch%s%s", node != NULL ? " from " : "", node != NULL ? node : "");
    do {
        struct batch *b = &r->buf[next % BATCHES_AHEAD];
        const struct redisReply *keys;
        size_t n, i;
        double started = mono_s();
        int rc, stop;

        pthread_mutex_lock(&r->mu);
        while ((b->state != BATCH_FREE || r->held >= AHEAD_MAX_BYTES) && r->writer_rc == EXIT_CONTINUE)
            pthread_cond_wait(&r->cv, &r->mu);
        rc = r->writer_rc;
        pthread_mutex_unlock(&r->mu);
        pthread_mutex_lock(&c->mu);
        stop = c->stop;
        pthread_mutex_unlock(&c->mu);
        if (rc != EXIT_CONTINUE || stop)
            return rc;

        if ((rc = scan_step(r, node, count, cursor, &b->scan)) != EXIT_CONTINUE)
            return rc;
        keys = redtls_reply_element(b->scan, 1);
        n = redtls_reply_len(keys);
        /* COUNT is a hint: a reply may hold more keys (a bucket chain). */
        if (n > b->cap) {
            struct batch_key *grown = realloc(b->keys, n * sizeof(*grown));
            if (grown == NULL) {
                free_batch(b);
                fputs("redtls-migrate: out of memory\n", stderr);
                return EXIT_CONNECT;
            }
            memset(grown + b->cap, 0, (n - b->cap) * sizeof(*grown));
            b->keys = grown;
            b->cap = n;
        }
        for (i = 0; i < n; i++) {
            const struct redisReply *k = redtls_reply_element(keys, i);
            b->keys[i].key = redtls_reply_str(k, &b->keys[i].key_len);
        }
        b->nkeys = n;
        b->n.scanned = n;
        if (n > 0 && (rc = read_batch_retried(r, b, what)) != EXIT_CONTINUE) {
            free_batch(b);
            return rc;
        }
        last = strcmp(cursor, "0") == 0;
        memcpy(b->cursor, cursor, sizeof b->cursor);
        b->last = last;
        pthread_mutex_lock(&r->mu);
        b->held = b->n.bytes;
        r->held += b->held;
        b->state = BATCH_READY;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        next++;
        throttle(r, n, started);
    } while (!last);
    return EXIT_CONTINUE;
}

int copy_node(struct run *r, size_t idx)
{
    struct migration *c = r->c;
    struct node_progress *np = &c->cp->node[idx];
    const char *node = c->standalone ? NULL : c->names[idx];
    char cursor[CURSOR_MAX];
    pthread_t writer;
    int rc;

    pthread_mutex_lock(&c->mu);
    r->base = np->n;
    memcpy(cursor, np->cursor, sizeof cursor);
    pthread_mutex_unlock(&c->mu);
    memset(&r->done, 0, sizeof r->done);
    r->node_idx = idx;
    r->reader_done = 0;
    r->held = 0;
    r->writer_rc = EXIT_CONTINUE;
    r->t0 = mono_s();
    if ((rc = pthread_create(&writer, NULL, writer_main, r)) != 0) {
        fprintf(stderr, "redtls-migrate: cannot start a thread: %s\n", strerror(rc));
        return EXIT_CONNECT;
    }
    rc = read_node(r, node, cursor);
    pthread_mutex_lock(&r->mu);
    r->reader_done = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(writer, NULL);
    /* A batch read but never written (the writer stopped first). */
    for (int i = 0; i < BATCHES_AHEAD; i++) {
        free_batch(&r->buf[i]);
        r->buf[i].state = BATCH_FREE;
        r->buf[i].held = 0;
    }
    if (rc == EXIT_CONTINUE)
        rc = r->writer_rc;
    return rc;
}

int main(int argc, char **argv)
{
    struct migrate_options o;
    struct side from, to;
    struct checkpoint *saved = NULL;
    int rc;

    rc = parse_options(argc, argv, &o);
    if (rc != EXIT_CONTINUE)
        return rc;
    memset(&from, 0, sizeof from);
    memset(&to, 0, sizeof to);
    /* Both configurations before any connection, so a mistake in either is
     * a usage error (2) (and before the checkpoint, whose messages quote
     * the URLs: only URLs the library accepted, secrets taken out); then
     * the target first: one that fails verification is refused before the
     * source is even read. */
    rc = side_prepare(&o, &o.to, &to);
    if (rc == EXIT_CONTINUE)
        rc = side_prepare(&o, &o.from, &from);
    if (rc == EXIT_CONTINUE)
        rc = checkpoint_open(&o, &saved);
    if (rc == EXIT_CONTINUE)
        rc = side_connect(&to);
    if (rc == EXIT_CONTINUE)
        rc = side_connect(&from);
    if (rc == EXIT_CONTINUE)
        rc = refuse_same_server(&from, &to);
    if (rc == EXIT_CONTINUE && o.verify != 2)
        rc = run_copy(&o, &from, &to, saved);
    if ((rc == EXIT_ALL_COPIED && o.verify == 1) || (rc == EXIT_CONTINUE && o.verify == 2))
        rc = verify_run(&o, &from, &to);
    free(saved);
    side_close(&from);
    side_close(&to);
    return rc;
}

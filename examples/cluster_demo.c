/*
 * cluster_demo: connect to a TLS Redis Cluster and walk through what a
 * cluster handle does: it finds the nodes, routes each command to the
 * master serving its keys, splits cross-slot MSET/MGET, spreads a pipeline
 * over the nodes, and counts what happened.
 *
 *   cluster_demo SEED_HOST:PORT [--cacert FILE] [--resolve HOST:PORT:ADDR ...]
 *
 *   --cacert FILE   trust the CA certificates in FILE (default: system store)
 *   --resolve H:P:A connect to address A when asked for H:P (P may be * or 0
 *                   for any port), while SNI and certificate verification
 *                   still use H; repeatable, like curl's --resolve
 *
 * The password comes from the REDTLS_TOKEN environment variable (and the ACL
 * user from REDTLS_USER), never from the command line, where `ps` shows it.
 *
 * Every node is verified against the host name the cluster announces for it
 * (Redis 7 with cluster-preferred-endpoint-type hostname), so its
 * certificate must hold that name. --resolve is how a client reaches such
 * names when DNS does not know them (tests, SSH tunnels, bastions).
 *
 * Writes keys under "cluster_demo:" and deletes them at the end. Exits 0
 * when every step worked, 1 on a failure (the library's message is printed),
 * 2 on bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redtls/redtls.h>

#define MAX_MASTERS 64   /* masters this demo keeps track of */
#define MAX_CANDIDATES 200 /* keys tried while looking for one per master */

static int usage(void)
{
    fputs("usage: cluster_demo SEED_HOST:PORT [--cacert FILE] [--resolve HOST:PORT:ADDR ...]\n"
          "       password in REDTLS_TOKEN, ACL user in REDTLS_USER\n",
          stderr);
    return 2;
}

/* HOST:PORT:ADDR (HOST may be [bracketed] IPv6; ADDR is the rest, so an
 * IPv6 address needs no brackets) into a config address override. */
static int add_resolve(redtls_config *cfg, const char *spec)
{
    char buf[512];
    char *host = buf, *port, *addr, *end;
    size_t len = strlen(spec);
    long p = 0;

    if (len >= sizeof buf)
        return -1;
    memcpy(buf, spec, len + 1);
    if (*host == '[') {
        end = strchr(host, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        *end = '\0';
        host++;
        port = end + 2;
    } else {
        port = strchr(host, ':');
        if (port == NULL)
            return -1;
        *port++ = '\0';
    }
    addr = strchr(port, ':');
    if (addr == NULL || *host == '\0' || addr[1] == '\0')
        return -1;
    *addr++ = '\0';
    if (strcmp(port, "*") != 0) {
        p = strtol(port, &end, 10);
        if (end == port || *end != '\0' || p < 0 || p > 65535)
            return -1;
    }
    if (redtls_config_add_resolve(cfg, host, (uint16_t)p, addr) != REDTLS_OK) {
        fprintf(stderr, "cluster_demo: --resolve: %s\n", redtls_config_errmsg(cfg));
        return -1;
    }
    return 0;
}

static void failed(const redtls_cluster *cl, const char *what, redtls_status st)
{
    const char *detail = redtls_cluster_errmsg(cl);
    fprintf(stderr, "cluster_demo: %s: %s: %s\n", what, redtls_strerror(st), *detail ? detail : "-");
}

/* Prints a reply on one line: strings quoted, arrays in brackets. */
static void print_reply(const struct redisReply *r)
{
    size_t len = 0, i;
    const char *s;

    switch (redtls_reply_type(r)) {
    case REDTLS_REPLY_STRING:
        s = redtls_reply_str(r, &len);
        printf("\"%.*s\"", (int)len, s);
        break;
    case REDTLS_REPLY_STATUS:
        s = redtls_reply_str(r, &len);
        printf("%.*s", (int)len, s);
        break;
    case REDTLS_REPLY_ERROR:
        s = redtls_reply_str(r, &len);
        printf("(error) %.*s", (int)len, s);
        break;
    case REDTLS_REPLY_INTEGER:
        printf("(integer) %lld", redtls_reply_integer(r));
        break;
    case REDTLS_REPLY_ARRAY:
        putchar('[');
        for (i = 0; i < redtls_reply_len(r); i++) {
            if (i > 0)
                fputs(", ", stdout);
            print_reply(redtls_reply_element(r, i));
        }
        putchar(']');
        break;
    default:
        fputs("(nil)", stdout);
        break;
    }
}

/* Runs one routed command. A library failure or a Redis error reply ends
 * the demo (returns -1); otherwise the caller owns *reply (may pass NULL). */
static int run(redtls_cluster *cl, int argc, const char **argv, struct redisReply **reply)
{
    struct redisReply *r = NULL;
    /* argvlen NULL: the arguments are NUL-terminated strings. */
    redtls_status st = redtls_cluster_command_argv(cl, 0, argc, argv, NULL, &r);

    if (st != REDTLS_OK) {
        failed(cl, argv[0], st);
        return -1;
    }
    if (redtls_reply_type(r) == REDTLS_REPLY_ERROR) {
        fprintf(stderr, "cluster_demo: %s: %s\n", argv[0], redtls_reply_str(r, NULL));
        redtls_reply_free(r);
        return -1;
    }
    if (reply != NULL)
        *reply = r;
    else
        redtls_reply_free(r);
    return 0;
}

/* Which node holds key? Only to show where routing sent it: asks one
 * master directly (command_node does not follow redirections), which
 * answers itself or names the owner in a "MOVED slot host:port" reply. */
static int owner_of(redtls_cluster *cl, const char *probe_node, const char *key, char *out, size_t outlen)
{
    const char *argv[] = {"EXISTS", key};
    struct redisReply *r = NULL;
    redtls_status st = redtls_cluster_command_node(cl, probe_node, 0, 2, argv, NULL, &r);
    const char *s, *sp;
    int rc = 0;

    if (st != REDTLS_OK) {
        failed(cl, "EXISTS (direct)", st);
        return -1;
    }
    s = redtls_reply_str(r, NULL);
    if (redtls_reply_type(r) != REDTLS_REPLY_ERROR)
        snprintf(out, outlen, "%s", probe_node);
    else if (strncmp(s, "MOVED ", 6) == 0 && (sp = strrchr(s, ' ')) != NULL)
        snprintf(out, outlen, "%s", sp + 1);
    else {
        fprintf(stderr, "cluster_demo: EXISTS (direct): %s\n", s);
        rc = -1;
    }
    redtls_reply_free(r);
    return rc;
}

/* Step 2: SET and GET keys until every master holds one. keys[m] gets the
 * first key found on master m (storage provided by the caller). */
static int spread_keys(redtls_cluster *cl, char **masters, size_t nmasters, char keys[][64])
{
    size_t found = 0;

    for (int i = 0; i < MAX_CANDIDATES && found < nmasters; i++) {
        char key[64], value[64], owner[300];
        struct redisReply *r = NULL;
        size_t m;

        snprintf(key, sizeof key, "cluster_demo:key:%d", i);
        snprintf(value, sizeof value, "value-%d", i);
        if (owner_of(cl, masters[0], key, owner, sizeof owner) != 0)
            return -1;
        for (m = 0; m < nmasters && strcmp(masters[m], owner) != 0; m++)
            ;
        if (m == nmasters || keys[m][0] != '\0')
            continue; /* a master we already have a key for */
        snprintf(keys[m], 64, "%s", key);
        found++;

        /* The same calls as for one server: redtls picks the node from the
         * key's hash slot. */
        const char *set[] = {"SET", key, value};
        const char *get[] = {"GET", key};
        if (run(cl, 3, set, NULL) != 0 || run(cl, 2, get, &r) != 0)
            return -1;
        printf("  SET/GET %-20s slot %5u on %-28s -> ", key,
               redtls_cluster_key_slot(key, strlen(key)), owner);
        print_reply(r);
        putchar('\n');
        size_t len = 0;
        const char *got = redtls_reply_str(r, &len);
        int same = got != NULL && len == strlen(value) && memcmp(got, value, len) == 0;
        redtls_reply_free(r);
        if (!same) {
            fprintf(stderr, "cluster_demo: GET %s did not return %s\n", key, value);
            return -1;
        }
    }
    if (found < nmasters) {
        fprintf(stderr, "cluster_demo: no key found on %zu of %zu masters\n", nmasters - found, nmasters);
        return -1;
    }
    return 0;
}

/* Step 3: one MSET and one MGET over keys on different masters. */
static int mset_mget(redtls_cluster *cl, char keys[][64], size_t n)
{
    const char *argv[1 + 2 * MAX_MASTERS];
    char values[MAX_MASTERS][32];
    struct redisReply *r = NULL;
    int rc = 0;

    argv[0] = "MSET";
    for (size_t i = 0; i < n; i++) {
        snprintf(values[i], sizeof values[i], "mset-%zu", i);
        argv[1 + 2 * i] = keys[i];
        argv[2 + 2 * i] = values[i];
    }
    /* The keys hash to different slots, so the server alone would answer
     * CROSSSLOT. redtls splits the command into one MSET per slot and
     * merges the replies. That is NOT atomic: another client may see some
     * keys updated before others, and if one part fails the others may
     * already have run. Use a shared {hash tag} when atomicity matters,
     * or REDTLS_CLUSTER_STRICT to refuse splitting. */
    if (run(cl, 1 + 2 * (int)n, argv, &r) != 0)
        return -1;
    printf("  MSET over %zu slots -> ", n);
    print_reply(r);
    putchar('\n');
    redtls_reply_free(r);

    argv[0] = "MGET";
    for (size_t i = 0; i < n; i++)
        argv[1 + i] = keys[i];
    if (run(cl, 1 + (int)n, argv, &r) != 0)
        return -1;
    printf("  MGET over %zu slots -> ", n);
    print_reply(r);
    putchar('\n');
    /* The merged reply lists the values in the order of the keys asked. */
    for (size_t i = 0; i < n; i++) {
        const char *s = redtls_reply_str(redtls_reply_element(r, i), NULL);
        if (s == NULL || strcmp(s, values[i]) != 0) {
            fprintf(stderr, "cluster_demo: MGET value %zu is not %s\n", i, values[i]);
            rc = -1;
        }
    }
    redtls_reply_free(r);
    return rc;
}

/* Step 4: a pipeline whose commands go to different nodes. */
struct piped {
    int argc;
    const char *argv[3];
};

static int pipeline(redtls_cluster *cl, char keys[][64], size_t n)
{
    struct piped cmds[3 * MAX_MASTERS + 1];
    size_t ncmds = 0;
    redtls_status st;
    int rc = 0;

    for (size_t i = 0; i < n; i++) {
        /* Per slot, commands keep their order: GET sees the SET before it. */
        cmds[ncmds++] = (struct piped){3, {"SET", keys[i], "piped"}};
        cmds[ncmds++] = (struct piped){2, {"GET", keys[i], NULL}};
        cmds[ncmds++] = (struct piped){3, {"APPEND", keys[i], "!"}};
    }
    cmds[ncmds++] = (struct piped){1, {"PING", NULL, NULL}}; /* no key: any master */

    /* Queued (copied) only; nothing is sent until the first get_reply. */
    for (size_t i = 0; i < ncmds; i++) {
        st = redtls_cluster_append_argv(cl, 0, cmds[i].argc, cmds[i].argv, NULL);
        if (st != REDTLS_OK) {
            failed(cl, "append", st);
            return -1;
        }
    }
    printf("  %zu commands queued\n", redtls_cluster_pending(cl));

    /* The first call writes every node's batch before reading any, and
     * retries redirected commands; the replies come back in the order the
     * commands were queued. Read them all even after a failure, so that
     * nothing stays pending on the handle. */
    for (size_t i = 0; i < ncmds; i++) {
        struct redisReply *r = NULL;
        st = redtls_cluster_get_reply(cl, &r);
        if (st != REDTLS_OK) {
            failed(cl, cmds[i].argv[0], st);
            rc = -1;
            continue;
        }
        printf("  %2zu %-6s %-20s -> ", i + 1, cmds[i].argv[0], cmds[i].argc > 1 ? cmds[i].argv[1] : "");
        print_reply(r);
        putchar('\n');
        if (redtls_reply_type(r) == REDTLS_REPLY_ERROR)
            rc = -1;
        redtls_reply_free(r);
    }
    return rc;
}

static void print_counters(const redtls_cluster *cl)
{
    static const struct {
        redtls_cluster_stat which;
        const char *name;
    } stats[] = {
        {REDTLS_CLUSTER_STAT_REFRESHES, "slot maps installed"},
        {REDTLS_CLUSTER_STAT_REFRESH_REJECTED, "slot maps rejected"},
        {REDTLS_CLUSTER_STAT_MOVED, "MOVED redirections"},
        {REDTLS_CLUSTER_STAT_ASK, "ASK redirections"},
        {REDTLS_CLUSTER_STAT_TRYAGAIN, "TRYAGAIN/CLUSTERDOWN retries"},
        {REDTLS_CLUSTER_STAT_NODE_FAILURES, "node failures"},
        {REDTLS_CLUSTER_STAT_SPLITS, "cross-slot splits"},
        {REDTLS_CLUSTER_STAT_REPLICA_READS, "replica reads"},
    };
    for (size_t i = 0; i < sizeof stats / sizeof stats[0]; i++)
        printf("  %-30s %llu\n", stats[i].name,
               (unsigned long long)redtls_cluster_stat_get(cl, stats[i].which));
}

int main(int argc, char **argv)
{
    redtls_config *cfg = NULL;
    redtls_cluster *cl = NULL;
    const char *seed = NULL, *env;
    char *masters[MAX_MASTERS];
    char keys[MAX_MASTERS][64];
    size_t nmasters = 0;
    redtls_status st;
    int rc = 1;

    if (redtls_config_new(&cfg) != REDTLS_OK) {
        fputs("cluster_demo: out of memory\n", stderr);
        return 1;
    }

    /* 1. Configuration: one config serves every node of the cluster (TLS
     *    settings, credentials, timeouts). */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--cacert") == 0 && i + 1 < argc) {
            if (redtls_config_set_ca_file(cfg, argv[++i]) != REDTLS_OK) {
                fprintf(stderr, "cluster_demo: --cacert: %s\n", redtls_config_errmsg(cfg));
                goto out;
            }
        } else if (strcmp(argv[i], "--resolve") == 0 && i + 1 < argc) {
            if (add_resolve(cfg, argv[++i]) != 0) {
                fprintf(stderr, "cluster_demo: bad --resolve '%s' (HOST:PORT:ADDR)\n", argv[i]);
                rc = usage();
                goto out;
            }
        } else if (argv[i][0] != '-' && seed == NULL) {
            seed = argv[i];
        } else {
            rc = usage();
            goto out;
        }
    }
    if (seed == NULL) {
        rc = usage();
        goto out;
    }
    if ((env = getenv("REDTLS_USER")) != NULL && *env != '\0' && redtls_config_set_user(cfg, env) != REDTLS_OK) {
        fprintf(stderr, "cluster_demo: REDTLS_USER: %s\n", redtls_config_errmsg(cfg));
        goto out;
    }
    if ((env = getenv("REDTLS_TOKEN")) != NULL && *env != '\0' && redtls_config_set_token(cfg, env) != REDTLS_OK) {
        fprintf(stderr, "cluster_demo: REDTLS_TOKEN: %s\n", redtls_config_errmsg(cfg));
        goto out;
    }

    /* The handle copies the config; ours can go right away. */
    st = redtls_cluster_new(cfg, seed, &cl);
    if (st != REDTLS_OK) {
        fprintf(stderr, "cluster_demo: %s: %s\n", redtls_strerror(st), redtls_config_errmsg(cfg));
        goto out;
    }
    redtls_config_free(cfg);
    cfg = NULL;

    /* Optional: commands would fetch the slot map by themselves, but
     * connecting first reports a bad seed, CA or token right here. */
    st = redtls_cluster_connect(cl);
    if (st != REDTLS_OK) {
        failed(cl, "connect", st);
        goto out;
    }
    printf("connected through seed %s; %zu nodes:\n", seed, redtls_cluster_node_count(cl));
    for (size_t i = 0; i < redtls_cluster_node_count(cl); i++) {
        int master = redtls_cluster_node_is_master(cl, i);
        printf("  %-28s %s\n", redtls_cluster_node_name(cl, i), master ? "master" : "replica");
        /* Node names are borrowed until the next call on cl; keep copies
         * only where needed, here for the masters. */
        if (master && nmasters < MAX_MASTERS)
            masters[nmasters++] = strdup(redtls_cluster_node_name(cl, i));
    }
    for (size_t m = 0; m < nmasters; m++) {
        if (masters[m] == NULL) {
            fputs("cluster_demo: out of memory\n", stderr);
            goto out;
        }
        keys[m][0] = '\0';
    }
    if (nmasters == 0) {
        fputs("cluster_demo: the cluster has no master\n", stderr);
        goto out;
    }

    /* 2. Single-key commands: routed by the key's hash slot. */
    printf("\nSET/GET, one key per master:\n");
    if (spread_keys(cl, masters, nmasters, keys) != 0)
        goto out;

    /* 3. Multi-key commands across slots (split, not atomic). */
    printf("\nMSET/MGET across slots (split per slot, NOT atomic):\n");
    if (mset_mget(cl, keys, nmasters) != 0)
        goto out;

    /* 4. Pipelines. */
    printf("\npipeline over %zu masters:\n", nmasters);
    if (pipeline(cl, keys, nmasters) != 0)
        goto out;

    /* 5. Clean up: DEL is split across slots too; its reply is the sum. */
    {
        const char *del[1 + MAX_MASTERS];
        struct redisReply *r = NULL;
        del[0] = "DEL";
        for (size_t m = 0; m < nmasters; m++)
            del[1 + m] = keys[m];
        if (run(cl, 1 + (int)nmasters, del, &r) != 0)
            goto out;
        printf("\nDEL of the demo keys -> ");
        print_reply(r);
        putchar('\n');
        redtls_reply_free(r);
    }

    printf("\ncounters:\n");
    print_counters(cl);
    rc = 0;
    printf("\ncluster demo finished without a failed command\n");
out:
    for (size_t m = 0; m < nmasters; m++)
        free(masters[m]);
    redtls_cluster_free(cl);
    redtls_config_free(cfg);
    return rc;
}

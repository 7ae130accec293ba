/* redtls-migrate: the two ends, standalone or cluster, behind one set of
 * calls; configuration from the command line; the same-server check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_common.h"
#include "migrate.h"

/* The library's message never holds a token. */
static int config_failed(const struct side_options *so, const redtls_config *cfg, const char *what, redtls_status st)
{
    const char *detail = redtls_config_errmsg(cfg);

    fprintf(stderr, "redtls-migrate: %s %s: %s\n", so->name, what, *detail != '\0' ? detail : redtls_strerror(st));
    return EXIT_USAGE;
}

static int build_config(const struct migrate_options *mo, const struct side_options *so, redtls_config **out)
{
    redtls_config *cfg = NULL;
    redtls_status st;

    *out = NULL;
    if ((st = redtls_config_new(&cfg)) != REDTLS_OK) {
        fprintf(stderr, "redtls-migrate: %s\n", redtls_strerror(st));
        return EXIT_CONNECT;
    }
    *out = cfg;

#define APPLY(what, call)                                                                                              \
    do {                                                                                                               \
        if ((st = (call)) != REDTLS_OK)                                                                                \
            return config_failed(so, cfg, (what), st);                                                                 \
    } while (0)

    APPLY("URL", redtls_config_set_url(cfg, so->url));
    if (so->cacert != NULL)
        APPLY("CA file", redtls_config_set_ca_file(cfg, so->cacert));
    if (so->cert != NULL)
        APPLY("client certificate", redtls_config_set_client_cert_file(cfg, so->cert, so->key));
    if (so->sni != NULL)
        APPLY("SNI", redtls_config_set_verify_name(cfg, so->sni));
    if (so->tls_min != 0)
        APPLY("TLS minimum", redtls_config_set_tls_min_version(cfg, (redtls_tls_version)so->tls_min));
    for (int i = 0; i < so->nresolve; i++)
        if (cli_apply_resolve(cfg, so->resolve[i], "redtls-migrate",
                              so == &mo->from ? "--from-resolve" : "--to-resolve") != 0)
            return EXIT_USAGE;
    if (so->user != NULL)
        APPLY("user", redtls_config_set_user(cfg, so->user));
    if (so->token != NULL)
        APPLY("token", redtls_config_set_token(cfg, so->token));
    if (so->token_alt != NULL)
        APPLY("alternate token", redtls_config_set_token_alt(cfg, so->token_alt));
    if (so->iam != NULL) {
        APPLY("IAM",
              redtls_config_set_iam(cfg, so->iam, so->user, so->region, so->serverless ? REDTLS_IAM_SERVERLESS : 0));
        if (so->iam_service != NULL)
            APPLY("IAM service", redtls_config_set_iam_service(cfg, so->iam_service));
        APPLY("IAM", redtls_config_set_aws_credentials_from_env(cfg));
    }
    if (mo->db >= 0 && !so->cluster)
        APPLY("--db", redtls_config_set_db(cfg, (int)mo->db));
    if (mo->timeout_ms >= 0) {
        unsigned ms = (unsigned)mo->timeout_ms;
        APPLY("--timeout", redtls_config_set_connect_timeout_ms(cfg, ms));
        APPLY("--timeout", redtls_config_set_handshake_timeout_ms(cfg, ms));
        APPLY("--timeout", redtls_config_set_command_timeout_ms(cfg, ms));
    }
    if (so == &mo->from && mo->from_max_bulk > 0) {
        /* The reader's buffer must hold one such reply and then some. */
        size_t room = (size_t)mo->from_max_bulk + ((size_t)64 << 10);
        APPLY("--from-max-bulk", redtls_config_set_max_bulk_len(cfg, (size_t)mo->from_max_bulk));
        if (room > redtls_default_max_buffer())
            APPLY("--from-max-bulk", redtls_config_set_max_buffer(cfg, room));
    }
    APPLY("client name", redtls_config_set_client_name(cfg, "redtls-migrate"));
#undef APPLY
    return EXIT_CONTINUE;
}

const char *side_errmsg(const struct side *s, redtls_status st)
{
    const char *m = s->cl != NULL ? redtls_cluster_errmsg(s->cl) : redtls_conn_errmsg(s->conn);
    return m != NULL && *m != '\0' ? m : redtls_strerror(st);
}

/* Configuration and handle; nothing is sent yet. */
int side_prepare(const struct migrate_options *mo, const struct side_options *so, struct side *s)
{
    redtls_status st;
    int rc;

    s->o = so;
    rc = build_config(mo, so, &s->cfg);
    if (rc != EXIT_CONTINUE)
        return rc;
    st = so->cluster ? redtls_cluster_new(s->cfg, NULL, &s->cl) : redtls_conn_new(s->cfg, &s->conn);
    if (st != REDTLS_OK)
        return config_failed(so, s->cfg, "configuration", st);
    return EXIT_CONTINUE;
}

int side_connect(struct side *s)
{
    redtls_status st = s->cl != NULL ? redtls_cluster_connect(s->cl) : redtls_conn_connect(s->conn);
    if (st != REDTLS_OK) {
        fprintf(stderr, "redtls-migrate: %s: %s\n", s->o->name, side_errmsg(s, st));
        return EXIT_CONNECT;
    }
    return EXIT_CONTINUE;
}

void side_close(struct side *s)
{
    redtls_conn_free(s->conn);
    redtls_cluster_free(s->cl);
    redtls_config_free(s->cfg);
    memset(s, 0, sizeof(*s));
}

/* node: a cluster node's name, or NULL for a standalone side. */
redtls_status side_command(struct side *s, const char *node, int argc, const char **argv, const size_t *lens,
                           struct redisReply **reply)
{
    if (s->cl != NULL)
        return redtls_cluster_command_node(s->cl, node, REDTLS_CMD_IDEMPOTENT, argc, argv, lens, reply);
    return redtls_conn_command_argv_ex(s->conn, REDTLS_CMD_IDEMPOTENT, argc, argv, lens, reply);
}

redtls_status side_append(struct side *s, int argc, const char **argv, const size_t *lens)
{
    if (s->cl != NULL)
        return redtls_cluster_append_argv(s->cl, 0, argc, argv, lens);
    return redtls_conn_append_argv(s->conn, argc, argv, lens);
}

redtls_status side_get_reply(struct side *s, struct redisReply **reply)
{
    if (s->cl != NULL)
        return redtls_cluster_get_reply(s->cl, reply);
    return redtls_conn_get_reply(s->conn, reply);
}

void side_discard(struct side *s)
{
    size_t n = s->cl != NULL ? redtls_cluster_pending(s->cl) : redtls_conn_pending(s->conn);

    /* Each call hands out one owed reply or its failure; a connection
     * that cannot even be re-established keeps them, and closing it
     * drops them. */
    while (n-- > 0) {
        struct redisReply *r = NULL;
        (void)side_get_reply(s, &r);
        redtls_reply_free(r);
    }
    if (s->conn != NULL && redtls_conn_pending(s->conn) > 0)
        redtls_conn_close(s->conn);
}

/* The nodes to SCAN (cluster masters) or to identify; a standalone side
 * has one, NULL. Returns the count; names are borrowed from the handle. */
size_t side_masters(const struct side *s, const char **names, size_t cap)
{
    size_t n = 0, i;

    if (s->cl == NULL) {
        names[0] = NULL;
        return 1;
    }
    for (i = 0; i < redtls_cluster_node_count(s->cl) && n < cap; i++)
        if (redtls_cluster_node_is_master(s->cl, i))
            names[n++] = redtls_cluster_node_name(s->cl, i);
    return n;
}

int side_node_run_id(struct side *s, const char *node, char *id)
{
    static const char *argv[] = {"INFO", "server"};
    struct redisReply *r = NULL;
    redtls_status st = side_command(s, node, 2, argv, NULL, &r);
    const char *text, *p;
    size_t len;

    if (st != REDTLS_OK) {
        fprintf(stderr, "redtls-migrate: %s INFO: %s\n", s->o->name, side_errmsg(s, st));
        return EXIT_CONNECT;
    }
    if (redtls_reply_type(r) != REDTLS_REPLY_STRING) {
        fprintf(stderr, "redtls-migrate: %s: INFO server was refused; cannot tell the servers apart\n", s->o->name);
        redtls_reply_free(r);
        return EXIT_USAGE;
    }
    text = redtls_reply_str(r, &len);
    p = strstr(text, "run_id:");
    if (p == NULL || strlen(p + 7) < RUN_ID_LEN) {
        fprintf(stderr, "redtls-migrate: %s: INFO server has no run_id\n", s->o->name);
        redtls_reply_free(r);
        return EXIT_USAGE;
    }
    memcpy(id, p + 7, RUN_ID_LEN);
    id[RUN_ID_LEN] = '\0';
    redtls_reply_free(r);
    return EXIT_CONTINUE;
}

/* run_id of every master of the side, from INFO server. */
static int side_run_ids(struct side *s, char (*ids)[RUN_ID_LEN + 1], size_t *nids)
{
    const char *names[MAX_NODES];
    size_t n = side_masters(s, names, MAX_NODES), i;

    *nids = 0;
    for (i = 0; i < n; i++) {
        int rc = side_node_run_id(s, names[i], ids[*nids]);
        if (rc != EXIT_CONTINUE)
            return rc;
        (*nids)++;
    }
    return EXIT_CONTINUE;
}

int refuse_same_server(struct side *from, struct side *to)
{
    static char a[MAX_NODES][RUN_ID_LEN + 1], b[MAX_NODES][RUN_ID_LEN + 1];
    size_t na, nb, i, j;
    int rc;

    if ((rc = side_run_ids(from, a, &na)) != EXIT_CONTINUE)
        return rc;
    if ((rc = side_run_ids(to, b, &nb)) != EXIT_CONTINUE)
        return rc;
    for (i = 0; i < na; i++)
        for (j = 0; j < nb; j++)
            if (strcmp(a[i], b[j]) == 0) {
                fprintf(stderr,
                        "redtls-migrate: source and target are the same server (run_id %s); "
                        "nothing was written\n",
                        a[i]);
                return EXIT_USAGE;
            }
    return EXIT_CONTINUE;
}

int side_scan(struct side *s, const char *node, const char *match, const char *count, char *cursor, size_t cap,
              struct redisReply **reply)
{
    const char *argv[6] = {"SCAN", cursor, "COUNT", count, "MATCH", match};
    struct redisReply *rep = NULL;
    size_t clen;
    const char *c;
    redtls_status st = side_command(s, node, match != NULL ? 6 : 4, argv, NULL, &rep);

    *reply = NULL;
    s->refused = 0;
    if (st != REDTLS_OK) {
        fprintf(stderr, "redtls-migrate: %s SCAN: %s\n", s->o->name, side_errmsg(s, st));
        return EXIT_CONNECT;
    }
    if (redtls_reply_type(rep) != REDTLS_REPLY_ARRAY || redtls_reply_len(rep) != 2 ||
        redtls_reply_type(redtls_reply_element(rep, 0)) != REDTLS_REPLY_STRING ||
        redtls_reply_type(redtls_reply_element(rep, 1)) != REDTLS_REPLY_ARRAY) {
        size_t len = 0;
        const char *e = redtls_reply_type(rep) == REDTLS_REPLY_ERROR ? redtls_reply_str(rep, &len) : "";
        fprintf(stderr, "redtls-migrate: %s SCAN: %s%.*s\n", s->o->name,
                len > 0 ? "refused: " : "unexpected reply (not a cursor and a list of keys)", (int)len, e);
        redtls_reply_free(rep);
        s->refused = 1;
        return EXIT_CONNECT;
    }
    c = redtls_reply_str(redtls_reply_element(rep, 0), &clen);
    if (clen >= cap) {
        redtls_reply_free(rep);
        fprintf(stderr, "redtls-migrate: %s SCAN: cursor too long\n", s->o->name);
        return EXIT_CONNECT;
    }
    memcpy(cursor, c, clen);
    cursor[clen] = '\0';
    *reply = rep;
    return EXIT_CONTINUE;
}

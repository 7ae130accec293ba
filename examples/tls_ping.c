/*
 * tls_ping: connect to Redis over TLS, send PING and print the reply.
 *
 *   tls_ping [URL]        default: rediss://localhost:6379
 *   tls_ping 'rediss://:TOKEN@localhost:6379?cacert=ca.pem'
 *
 * Exits 0 when the server answered, 1 otherwise.
 */
#include <stdio.h>

#include <redtls/redtls.h>

static void report(const char *step, redtls_status st, const char *detail)
{
    fprintf(stderr, "tls_ping: %s: %s: %s\n", step, redtls_strerror(st), detail);
}

int main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : "rediss://localhost:6379";
    redtls_config *cfg = NULL;
    redtls_conn *conn = NULL;
    struct redisReply *reply = NULL;
    const char *text;
    size_t len = 0;
    int rc = 1;
    redtls_status st;

    st = redtls_config_new(&cfg);
    if (st != REDTLS_OK) {
        report("config", st, "");
        return 1;
    }

    /* The URL carries the host, port, credentials and TLS options. */
    st = redtls_config_set_url(cfg, url);
    if (st != REDTLS_OK) {
        report("url", st, redtls_config_errmsg(cfg));
        goto out;
    }

    /* The connection keeps its own copy of the configuration. */
    st = redtls_conn_new(cfg, &conn);
    if (st != REDTLS_OK) {
        report("config", st, redtls_config_errmsg(cfg));
        goto out;
    }

    /* Connects, verifies the certificate and host name, then sends AUTH. */
    st = redtls_conn_connect(conn);
    if (st != REDTLS_OK) {
        report("connect", st, redtls_conn_errmsg(conn));
        goto out;
    }

    st = redtls_conn_command(conn, &reply, "PING");
    if (st != REDTLS_OK) {
        report("PING", st, redtls_conn_errmsg(conn));
        goto out;
    }

    /* A server error such as "-NOAUTH ..." is a reply, not a failed call. */
    text = redtls_reply_str(reply, &len);
    printf("%.*s\n", (int)len, text ? text : "");
    rc = redtls_reply_type(reply) == REDTLS_REPLY_ERROR ? 1 : 0;

out:
    redtls_reply_free(reply);
    redtls_conn_free(conn);
    redtls_config_free(cfg);
    return rc;
}

/* A minimal redtls user: checks that header and library agree, builds a
 * configuration from a URL and, when REDTLS_PACKAGING_URL is set, connects
 * and sends PING. Exits 0 on success. */
#include <redtls/redtls.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "consumer: FAILED: %s\n", what);
        failures++;
    }
}

static int ping(const char *url)
{
    redtls_config *cfg = NULL;
    redtls_conn *conn = NULL;
    struct redisReply *reply = NULL;
    const char *argv[] = {"PING"};
    const char *str;
    size_t len = 0;
    redtls_status st;
    int ok = 0;

    if (redtls_config_new(&cfg) != REDTLS_OK) {
        return 0;
    }
    st = redtls_config_set_url(cfg, url);
    if (st != REDTLS_OK) {
        fprintf(stderr, "consumer: url: %s: %s\n", redtls_strerror(st), redtls_config_errmsg(cfg));
        goto out;
    }
    st = redtls_conn_new(cfg, &conn);
    if (st != REDTLS_OK) {
        fprintf(stderr, "consumer: conn_new: %s: %s\n", redtls_strerror(st), redtls_config_errmsg(cfg));
        goto out;
    }
    st = redtls_conn_connect(conn);
    if (st != REDTLS_OK) {
        fprintf(stderr, "consumer: connect: %s: %s\n", redtls_strerror(st), redtls_conn_errmsg(conn));
        goto out;
    }
    st = redtls_conn_command_argv(conn, 1, argv, NULL, &reply);
    if (st != REDTLS_OK) {
        fprintf(stderr, "consumer: PING: %s: %s\n", redtls_strerror(st), redtls_conn_errmsg(conn));
        goto out;
    }
    str = redtls_reply_str(reply, &len);
    ok = redtls_reply_type(reply) == REDTLS_REPLY_STATUS && str != NULL && len == 4 && memcmp(str, "PONG", 4) == 0;
    printf("consumer: PING -> %s over %s\n", str ? str : "(null)", redtls_conn_tls_version(conn));
out:
    redtls_reply_free(reply);
    redtls_conn_free(conn);
    redtls_config_free(cfg);
    return ok;
}

int main(void)
{
    redtls_config *cfg = NULL;
    const char *url = getenv("REDTLS_PACKAGING_URL");

    check(redtls_version_number() == REDTLS_VERSION_NUMBER, "redtls_version_number() == REDTLS_VERSION_NUMBER");
    check(strcmp(redtls_version(), REDTLS_VERSION_STRING) == 0, "redtls_version() == REDTLS_VERSION_STRING");
    check(strcmp(redtls_strerror(REDTLS_OK), redtls_strerror(REDTLS_E_TLS_HOSTNAME)) != 0, "distinct strerror texts");
    check(redtls_default_command_timeout_ms() == REDTLS_DEFAULT_COMMAND_TIMEOUT_MS, "default timeout macro == function");

    check(redtls_config_new(&cfg) == REDTLS_OK && cfg != NULL, "redtls_config_new");
    if (cfg != NULL) {
        check(redtls_config_set_url(cfg, "rediss://app:secret@cache.example.com:6380/2?timeout=1500") == REDTLS_OK,
              "redtls_config_set_url accepts a valid URL");
        check(redtls_config_set_url(cfg, "rediss://app:secret@cache.example.com:notaport") == REDTLS_E_URL,
              "redtls_config_set_url rejects a bad port with REDTLS_E_URL");
        check(redtls_config_errmsg(cfg)[0] != '\0', "a failed set_url leaves a message");
        check(strstr(redtls_config_errmsg(cfg), "secret") == NULL, "the message does not hold the token");
    }
    redtls_config_free(cfg);
    redtls_config_free(NULL);

    if (url != NULL && url[0] != '\0') {
        check(ping(url), "connect and PING REDTLS_PACKAGING_URL");
    }

    if (failures != 0) {
        return 1;
    }
    printf("consumer: ok (redtls %s)\n", redtls_version());
    return 0;
}

/* A minimal redtls user: checks that header and library agree, that it sees
 * the hiredis redtls was built with, builds a configuration from a URL and,
 * when REDTLS_PACKAGING_URL is set, connects and sends PING. Exits 0 on
 * success. */
#include <redtls/redtls.h>

/* Through redtls's usage requirements (its CMake targets, or
 * `pkg-config --cflags redtls`), not a path of the consumer's own. */
#include <hiredis/hiredis.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The hiredis version redtls was built with, passed in by run.sh. */
#if !defined(EXPECT_HIREDIS_MAJOR) || !defined(EXPECT_HIREDIS_MINOR) || !defined(EXPECT_HIREDIS_PATCH)
#error "build with -DEXPECT_HIREDIS_MAJOR=.. -DEXPECT_HIREDIS_MINOR=.. -DEXPECT_HIREDIS_PATCH=.."
#endif
#if HIREDIS_MAJOR != EXPECT_HIREDIS_MAJOR || HIREDIS_MINOR != EXPECT_HIREDIS_MINOR || \
    HIREDIS_PATCH != EXPECT_HIREDIS_PATCH
#error "<hiredis/hiredis.h> is not the hiredis redtls was built with: redtls's targets / redtls.pc must carry hiredis's include directories"
#endif

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

/* One reply made by the hiredis this program links, read both through this
 * program's view of redisReply (its hiredis headers) and through redtls's
 * accessors (compiled with the headers redtls was built with): the two
 * agree only if headers, libredtls and libhiredis all match. */
static void check_hiredis(void)
{
    static const char resp[] = "*2\r\n$5\r\nhello\r\n:42\r\n";
    redisReader *reader = redisReaderCreate();
    void *obj = NULL;
    redisReply *reply;
    const redisReply *e0;
    const redisReply *e1;
    const char *str;
    size_t len = 0;

    check(reader != NULL, "redisReaderCreate");
    if (reader == NULL) {
        return;
    }
    check(redisReaderFeed(reader, resp, sizeof resp - 1) == REDIS_OK, "redisReaderFeed");
    check(redisReaderGetReply(reader, &obj) == REDIS_OK && obj != NULL, "redisReaderGetReply gives a reply");
    reply = obj;
    if (reply != NULL) {
        check(redtls_reply_type(reply) == REDTLS_REPLY_ARRAY && redtls_reply_len(reply) == 2,
              "redtls_reply_type, redtls_reply_len");
        check(reply->type == REDIS_REPLY_ARRAY && reply->elements == 2, "reply->type, reply->elements");
    }
    /* With another layout, reply->element is not a pointer to follow. */
    if (reply != NULL && failures == 0) {
        e0 = redtls_reply_element(reply, 0);
        e1 = redtls_reply_element(reply, 1);
        check(e0 != NULL && e0 == reply->element[0] && e1 != NULL && e1 == reply->element[1],
              "redtls_reply_element == reply->element[i]");
        if (e0 != NULL && e1 != NULL) {
            str = redtls_reply_str(e0, &len);
            check(e0->type == REDIS_REPLY_STRING && e0->len == 5 && e0->str != NULL && memcmp(e0->str, "hello", 5) == 0,
                  "element 0 read through the hiredis headers");
            check(str == e0->str && len == 5, "redtls_reply_str agrees with element 0's fields");
            check(e1->type == REDIS_REPLY_INTEGER && e1->integer == 42 && redtls_reply_integer(e1) == 42,
                  "element 1: integer 42 both ways");
        }
    }
    freeReplyObject(reply);
    redisReaderFree(reader);
    printf("consumer: hiredis headers %d.%d.%d\n", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
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

    check_hiredis();

    if (url != NULL && url[0] != '\0') {
        check(ping(url), "connect and PING REDTLS_PACKAGING_URL");
    }

    if (failures != 0) {
        return 1;
    }
    printf("consumer: ok (redtls %s)\n", redtls_version());
    return 0;
}

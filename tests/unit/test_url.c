/* lib/url.c: redtls_config_set_url. */
#include "unit_util.h"

#include "config.h"

#define SECRET "sup3rsecret"

static char dir[64];
static char ca_path[128], cert_path[128], key_path[128], other_key_path[128];

static int group_setup(void **state)
{
    (void)state;
    unit_tmpdir(dir, sizeof dir);
    unit_make_cert(dir, "ca");
    unit_make_cert(dir, "client");
    unit_make_cert(dir, "other");
    snprintf(ca_path, sizeof ca_path, "%s/ca.crt", dir);
    snprintf(cert_path, sizeof cert_path, "%s/client.crt", dir);
    snprintf(key_path, sizeof key_path, "%s/client.key", dir);
    snprintf(other_key_path, sizeof other_key_path, "%s/other.key", dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unit_rmtree(dir);
    return 0;
}

static int cfg_setup(void **state)
{
    redtls_config *cfg = NULL;
    if (redtls_config_new(&cfg) != REDTLS_OK)
        return -1;
    *state = cfg;
    return 0;
}

static int cfg_teardown(void **state)
{
    redtls_config_free(*state);
    return 0;
}

static void test_rediss_host(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_tls(cfg, 0), REDTLS_OK);
    assert_status(redtls_config_set_url(cfg, "rediss://cache.example.com"), REDTLS_OK);
    assert_string_equal(cfg->host, "cache.example.com");
    assert_int_equal(cfg->port, 6379);
    assert_int_equal(cfg->use_tls, 1);
    assert_null(cfg->unix_path);
    assert_null(cfg->user);
    assert_null(cfg->token.data);
    assert_int_equal(cfg->db, 0);
    assert_string_equal(redtls_config_errmsg(cfg), "");
}

static void test_redis_host_port(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_url(cfg, "redis://10.1.2.3:6380"), REDTLS_OK);
    assert_string_equal(cfg->host, "10.1.2.3");
    assert_int_equal(cfg->port, 6380);
    assert_int_equal(cfg->use_tls, 0);
    assert_status(redtls_config_set_url(cfg, "REDISS://h:65535"), REDTLS_OK);
    assert_int_equal(cfg->use_tls, 1);
    assert_int_equal(cfg->port, 65535);
    assert_status(redtls_config_set_url(cfg, "rediss://h:1"), REDTLS_OK);
    assert_int_equal(cfg->port, 1);
}

static void test_ipv6(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_url(cfg, "rediss://[::1]:6380"), REDTLS_OK);
    assert_string_equal(cfg->host, "::1");
    assert_int_equal(cfg->port, 6380);
    assert_status(redtls_config_set_url(cfg, "rediss://[2001:db8::7]/2"), REDTLS_OK);
    assert_string_equal(cfg->host, "2001:db8::7");
    assert_int_equal(cfg->port, 6379);
    assert_int_equal(cfg->db, 2);
}

static void test_userinfo(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_url(cfg, "rediss://alice:" SECRET "@h"), REDTLS_OK);
    assert_string_equal(cfg->user, "alice");
    assert_non_null(cfg->token.data);
    assert_string_equal(cfg->token.data, SECRET);
    assert_int_equal(cfg->token.len, strlen(SECRET));
    assert_string_equal(cfg->host, "h");

    redtls_config *cfg2 = NULL;
    assert_status(redtls_config_new(&cfg2), REDTLS_OK);
    assert_status(redtls_config_set_url(cfg2, "rediss://:tok3n@h:7000"), REDTLS_OK);
    assert_null(cfg2->user);
    assert_string_equal(cfg2->token.data, "tok3n");
    assert_int_equal(cfg2->port, 7000);
    redtls_config_free(cfg2);
}

static void test_percent_encoded_token(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_url(cfg, "rediss://us%65r:p%40ss%2Fw%3Fr%23d%3a%25x@h"), REDTLS_OK);
    assert_string_equal(cfg->user, "user");
    assert_string_equal(cfg->token.data, "p@ss/w?r#d:%x");
    assert_int_equal(cfg->token.len, 13);
    assert_string_equal(cfg->host, "h");
    /* An unencoded '@' in the token: the last '@' before the path ends the
     * userinfo. */
    assert_status(redtls_config_set_url(cfg, "rediss://:a@b@h2"), REDTLS_OK);
    assert_string_equal(cfg->token.data, "a@b");
    assert_string_equal(cfg->host, "h2");
}

static void test_db_path(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_url(cfg, "rediss://h/3"), REDTLS_OK);
    assert_int_equal(cfg->db, 3);
    assert_status(redtls_config_set_url(cfg, "rediss://h:6390/15?timeout=10"), REDTLS_OK);
    assert_int_equal(cfg->db, 15);
    assert_int_equal(cfg->port, 6390);
    /* A bare '/' leaves the database alone. */
    assert_status(redtls_config_set_url(cfg, "rediss://h/"), REDTLS_OK);
    assert_int_equal(cfg->db, 15);
}

static void test_query_params(void **state)
{
    redtls_config *cfg = *state;
    char url[1024];
    snprintf(url, sizeof url,
             "rediss://:%s@h:6380/1?cacert=%s&capath=%s&connect_timeout=100&handshake_timeout=200&timeout=300"
             "&name=my-app&tls_min=1.3&sni=redis.example.com&db=4",
             SECRET, ca_path, dir);
    assert_status(redtls_config_set_url(cfg, url), REDTLS_OK);
    assert_string_equal(cfg->tls.ca_file, ca_path);
    assert_string_equal(cfg->tls.ca_dir, dir);
    assert_int_equal(cfg->connect_timeout_ms, 100);
    assert_int_equal(cfg->handshake_timeout_ms, 200);
    assert_int_equal(cfg->command_timeout_ms, 300);
    assert_string_equal(cfg->client_name, "my-app");
    assert_int_equal(cfg->tls.min_version, 13);
    assert_string_equal(cfg->verify_name, "redis.example.com");
    assert_int_equal(cfg->db, 4); /* the parameter comes after the path */
    assert_string_equal(cfg->token.data, SECRET);

    assert_status(redtls_config_set_url(cfg, "rediss://h?tls_min=1.2&timeout=0&name=a%2Db"), REDTLS_OK);
    assert_int_equal(cfg->tls.min_version, 12);
    assert_int_equal(cfg->command_timeout_ms, 0);
    assert_string_equal(cfg->client_name, "a-b");
    /* Empty items between '&' are ignored. */
    assert_status(redtls_config_set_url(cfg, "rediss://h?&timeout=5&&"), REDTLS_OK);
    assert_int_equal(cfg->command_timeout_ms, 5);
}

static void test_client_cert_params(void **state)
{
    redtls_config *cfg = *state;
    char url[1024];
    snprintf(url, sizeof url, "rediss://h?cert=%s&key=%s", cert_path, key_path);
    assert_status(redtls_config_set_url(cfg, url), REDTLS_OK);
    size_t len = 0;
    char *pem = unit_slurp(cert_path, &len);
    assert_non_null(cfg->tls.cert_pem);
    assert_int_equal(cfg->tls.cert_pem_len, len);
    assert_memory_equal(cfg->tls.cert_pem, pem, len);
    free(pem);
    pem = unit_slurp(key_path, &len);
    assert_int_equal(cfg->tls.key_pem.len, len);
    assert_memory_equal(cfg->tls.key_pem.data, pem, len);
    free(pem);
}

static void test_unix(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_url(cfg, "unix:///var/run/redis/redis.sock"), REDTLS_OK);
    assert_string_equal(cfg->unix_path, "/var/run/redis/redis.sock");
    assert_int_equal(cfg->use_tls, 0);
    assert_status(redtls_config_set_url(cfg, "unix://bob:" SECRET "@/tmp/r%20s.sock?db=2&name=x"), REDTLS_OK);
    assert_string_equal(cfg->unix_path, "/tmp/r s.sock");
    assert_string_equal(cfg->user, "bob");
    assert_string_equal(cfg->token.data, SECRET);
    assert_int_equal(cfg->db, 2);
    assert_string_equal(cfg->client_name, "x");
    /* A host URL afterwards clears the socket path. */
    assert_status(redtls_config_set_url(cfg, "rediss://h"), REDTLS_OK);
    assert_null(cfg->unix_path);
    assert_string_equal(cfg->host, "h");
}

/* Settings not named in the URL are kept. */
static void test_applies_on_top(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_client_name(cfg, "keep"), REDTLS_OK);
    assert_status(redtls_config_set_command_timeout_ms(cfg, 777), REDTLS_OK);
    assert_status(redtls_config_set_url(cfg, "rediss://h:7001"), REDTLS_OK);
    assert_string_equal(cfg->client_name, "keep");
    assert_int_equal(cfg->command_timeout_ms, 777);
}

/* ---- errors ---- */

/* Everything a URL can change, for "the config is unchanged" checks. */
typedef struct snap {
    char host[256], unix_path[256], user[64], token[64], name[64], ca_file[256], verify_name[256];
    int has_unix, has_user, has_token, has_name, has_ca, has_vn, has_cert;
    uint16_t port;
    int use_tls, db, min_version;
    unsigned ct, ht, cmt;
} snap;

static void copy_opt(char *dst, size_t n, int *has, const char *src)
{
    *has = src != NULL;
    snprintf(dst, n, "%s", src ? src : "");
}

static snap take(const redtls_config *cfg)
{
    snap s;
    memset(&s, 0, sizeof s);
    snprintf(s.host, sizeof s.host, "%s", cfg->host);
    copy_opt(s.unix_path, sizeof s.unix_path, &s.has_unix, cfg->unix_path);
    copy_opt(s.user, sizeof s.user, &s.has_user, cfg->user);
    copy_opt(s.token, sizeof s.token, &s.has_token, cfg->token.data);
    copy_opt(s.name, sizeof s.name, &s.has_name, cfg->client_name);
    copy_opt(s.ca_file, sizeof s.ca_file, &s.has_ca, cfg->tls.ca_file);
    copy_opt(s.verify_name, sizeof s.verify_name, &s.has_vn, cfg->verify_name);
    s.has_cert = cfg->tls.cert_pem != NULL;
    s.port = cfg->port;
    s.use_tls = cfg->use_tls;
    s.db = cfg->db;
    s.min_version = cfg->tls.min_version;
    s.ct = cfg->connect_timeout_ms;
    s.ht = cfg->handshake_timeout_ms;
    s.cmt = cfg->command_timeout_ms;
    return s;
}

static const char *snap_diff(const snap *a, const snap *b)
{
#define S(f) if (strcmp(a->f, b->f) != 0) return #f
#define N(f) if (a->f != b->f) return #f
    S(host); S(unix_path); S(user); S(token); S(name); S(ca_file); S(verify_name);
    N(has_unix); N(has_user); N(has_token); N(has_name); N(has_ca); N(has_vn); N(has_cert);
    N(port); N(use_tls); N(db); N(min_version); N(ct); N(ht); N(cmt);
#undef S
#undef N
    return NULL;
}

/* Applies url to a configured cfg, expects want, checks that the message
 * mentions `mention` and never the secret, and that nothing changed. */
static void expect_fail(redtls_config *cfg, const char *url, redtls_status want, const char *mention)
{
    snap before = take(cfg);
    redtls_status st = redtls_config_set_url(cfg, url);
    const char *msg = redtls_config_errmsg(cfg);
    if (st != want)
        fail_msg("URL \"%s\": status %s (\"%s\"), expected %s", url, redtls_strerror(st), msg, redtls_strerror(want));
    if (mention && !strstr(msg, mention))
        fail_msg("URL \"%s\": message \"%s\" does not mention \"%s\"", url, msg, mention);
    assert_true(msg[0] != '\0');
    assert_not_contains(msg, SECRET);
    assert_not_contains(msg, "sup3r");
    assert_not_contains(msg, "secret");
    snap after = take(cfg);
    const char *changed = snap_diff(&before, &after);
    if (changed)
        fail_msg("URL \"%s\" changed %s although it failed", url, changed);
}

static void prepare(redtls_config *cfg)
{
    assert_status(redtls_config_set_host(cfg, "orig.example", 6000), REDTLS_OK);
    assert_status(redtls_config_set_user(cfg, "origuser"), REDTLS_OK);
    assert_status(redtls_config_set_token(cfg, "origtoken"), REDTLS_OK);
    assert_status(redtls_config_set_db(cfg, 9), REDTLS_OK);
    assert_status(redtls_config_set_client_name(cfg, "orig"), REDTLS_OK);
    assert_status(redtls_config_set_command_timeout_ms(cfg, 1234), REDTLS_OK);
}

static void test_err_port(void **state)
{
    redtls_config *cfg = *state;
    prepare(cfg);
    expect_fail(cfg, "rediss://:" SECRET "@host:99999", REDTLS_E_URL, "port");
    expect_fail(cfg, "rediss://:" SECRET "@host:65536", REDTLS_E_URL, "port");
    expect_fail(cfg, "rediss://:" SECRET "@host:0", REDTLS_E_URL, "port");
    expect_fail(cfg, "rediss://:" SECRET "@host:12ab", REDTLS_E_URL, "port");
    expect_fail(cfg, "rediss://:" SECRET "@host:", REDTLS_E_URL, "port");
    expect_fail(cfg, "rediss://:" SECRET "@host:-1", REDTLS_E_URL, "port");
    expect_fail(cfg, "rediss://:" SECRET "@[::1]:99999", REDTLS_E_URL, "port");
}

static void test_err_reserved_in_token(void **state)
{
    redtls_config *cfg = *state;
    prepare(cfg);
    expect_fail(cfg, "rediss://:sup3r/secret@host", REDTLS_E_URL, "percent-encode");
    expect_fail(cfg, "rediss://:sup3r?secret@host", REDTLS_E_URL, "percent-encode");
    expect_fail(cfg, "rediss://:sup3r#secret@host", REDTLS_E_URL, "percent-encode");
    expect_fail(cfg, "rediss://user:sup3r/secret@host:6379/2", REDTLS_E_URL, "'/'");
    expect_fail(cfg, "unix://:sup3r?secret@/tmp/x.sock", REDTLS_E_URL, "percent-encode");
}

static void test_err_bad_escapes(void **state)
{
    redtls_config *cfg = *state;
    prepare(cfg);
    expect_fail(cfg, "rediss://:sup3r%zzsecret@host", REDTLS_E_URL, "token has an invalid percent escape");
    expect_fail(cfg, "rediss://:sup3r%2secret@host", REDTLS_E_URL, "token has an invalid percent escape");
    expect_fail(cfg, "rediss://:sup3rsecret%@host", REDTLS_E_URL, "token has an invalid percent escape");
    expect_fail(cfg, "rediss://:sup3r%00secret@host", REDTLS_E_URL, "token has an invalid percent escape");
    expect_fail(cfg, "rediss://us%zzer:" SECRET "@host", REDTLS_E_URL, "user name");
    expect_fail(cfg, "rediss://host?name=a%zz", REDTLS_E_URL, "'name'");
    expect_fail(cfg, "unix:///tmp/a%00b", REDTLS_E_URL, "socket path");
}

static void test_err_query(void **state)
{
    redtls_config *cfg = *state;
    prepare(cfg);
    expect_fail(cfg, "rediss://:" SECRET "@host?bogus=1", REDTLS_E_URL, "'bogus'");
    expect_fail(cfg, "rediss://:" SECRET "@host?timeout=abc", REDTLS_E_URL, "'abc'");
    expect_fail(cfg, "rediss://:" SECRET "@host?timeout=86400001", REDTLS_E_URL, "86400001");
    expect_fail(cfg, "rediss://:" SECRET "@host?connect_timeout=-5", REDTLS_E_URL, "'-5'");
    expect_fail(cfg, "rediss://:" SECRET "@host?tls_min=1.1", REDTLS_E_URL, "'1.1'");
    expect_fail(cfg, "rediss://:" SECRET "@host?db=x", REDTLS_E_URL, "db='x'");
    expect_fail(cfg, "rediss://:" SECRET "@host?noequals", REDTLS_E_URL, "'noequals'");
    expect_fail(cfg, "rediss://:" SECRET "@host?=1", REDTLS_E_URL, "not key=value");
    /* Several settings, then a bad one: none of them applied. */
    expect_fail(cfg, "rediss://:" SECRET "@newhost:7000/4?name=new&timeout=9&bogus=1", REDTLS_E_URL, "'bogus'");
}

static void test_err_query_values_are_url_errors(void **state)
{
    redtls_config *cfg = *state;
    prepare(cfg);
    /* Values that the typed setters refuse are still URL errors: the
     * documented codes are REDTLS_E_URL, REDTLS_E_CONFIG and NOMEM. */
    expect_fail(cfg, "rediss://:" SECRET "@host?name=a%20b", REDTLS_E_URL, "name");
    expect_fail(cfg, "rediss://:" SECRET "@host?sni=", REDTLS_E_URL, "sni");
}

static void test_err_cert_key(void **state)
{
    redtls_config *cfg = *state;
    prepare(cfg);
    char url[1024];
    snprintf(url, sizeof url, "rediss://:%s@host?cert=%s", SECRET, cert_path);
    expect_fail(cfg, url, REDTLS_E_URL, "cert and key must be given together");
    snprintf(url, sizeof url, "rediss://:%s@host?key=%s", SECRET, key_path);
    expect_fail(cfg, url, REDTLS_E_URL, "cert and key must be given together");
    snprintf(url, sizeof url, "rediss://:%s@host?cert=%s&key=%s", SECRET, cert_path, other_key_path);
    expect_fail(cfg, url, REDTLS_E_CONFIG, "does not match");
    snprintf(url, sizeof url, "rediss://:%s@host?cert=%s/missing.crt&key=%s", SECRET, dir, key_path);
    expect_fail(cfg, url, REDTLS_E_CONFIG, "missing.crt");
    snprintf(url, sizeof url, "rediss://:%s@host?cacert=%s/nope.pem", SECRET, dir);
    expect_fail(cfg, url, REDTLS_E_CONFIG, "nope.pem");
    snprintf(url, sizeof url, "rediss://:%s@host?cacert=%s", SECRET, key_path);
    expect_fail(cfg, url, REDTLS_E_CONFIG, "holds no PEM certificate");
    snprintf(url, sizeof url, "rediss://:%s@host?capath=%s", SECRET, ca_path);
    expect_fail(cfg, url, REDTLS_E_CONFIG, "is not a directory");
}

static void test_err_host(void **state)
{
    redtls_config *cfg = *state;
    prepare(cfg);
    expect_fail(cfg, "rediss://:" SECRET "@", REDTLS_E_URL, "host is empty");
    expect_fail(cfg, "rediss://:" SECRET "@:6379", REDTLS_E_URL, "host is empty");
    expect_fail(cfg, "rediss://", REDTLS_E_URL, "host is empty");
    expect_fail(cfg, "rediss:///3", REDTLS_E_URL, "host is empty");
    expect_fail(cfg, "rediss://:" SECRET "@[::1", REDTLS_E_URL, "no closing ']'");
    expect_fail(cfg, "rediss://:" SECRET "@[::1]x", REDTLS_E_URL, "junk after ']'");
    expect_fail(cfg, "rediss://:" SECRET "@[]:6379", REDTLS_E_URL, "host is empty");
}

static void test_err_db_path(void **state)
{
    redtls_config *cfg = *state;
    prepare(cfg);
    expect_fail(cfg, "rediss://:" SECRET "@host/abc", REDTLS_E_URL, "'/abc'");
    expect_fail(cfg, "rediss://:" SECRET "@host/3/4", REDTLS_E_URL, "'/3/4'");
    expect_fail(cfg, "rediss://:" SECRET "@host/-1", REDTLS_E_URL, "'/-1'");
    expect_fail(cfg, "rediss://:" SECRET "@host/99999999", REDTLS_E_URL, "99999999");
    expect_fail(cfg, "rediss://:" SECRET "@host/1#frag", REDTLS_E_URL, "fragment");
}

static void test_err_scheme(void **state)
{
    redtls_config *cfg = *state;
    prepare(cfg);
    expect_fail(cfg, "host:6379", REDTLS_E_URL, "must start with redis://, rediss:// or unix://");
    expect_fail(cfg, ":" SECRET "@host:6379", REDTLS_E_URL, "must start with");
    expect_fail(cfg, "", REDTLS_E_URL, "must start with");
    expect_fail(cfg, "http://:" SECRET "@host", REDTLS_E_URL, "'http'");
    expect_fail(cfg, "redisss://host", REDTLS_E_URL, "'redisss'");
    expect_fail(cfg, "://host", REDTLS_E_URL, "scheme");
}

static void test_err_userinfo(void **state)
{
    redtls_config *cfg = *state;
    prepare(cfg);
    expect_fail(cfg, "rediss://user:@host", REDTLS_E_URL, "token after ':' is empty");
    expect_fail(cfg, "rediss://a%20b:" SECRET "@host", REDTLS_E_URL, "user name");
    expect_fail(cfg, "unix://:" SECRET "@relative/path", REDTLS_E_URL, "absolute");
    expect_fail(cfg, "unix://:" SECRET "@", REDTLS_E_URL, "unix://");
    expect_fail(cfg, "unix:///", REDTLS_E_URL, "no socket path");
}

static void test_null_arguments(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_url(NULL, "rediss://h"), REDTLS_E_INVALID);
    assert_status(redtls_config_set_url(cfg, NULL), REDTLS_E_INVALID);
    assert_contains(redtls_config_errmsg(cfg), "NULL");
    /* A later success clears the message. */
    assert_status(redtls_config_set_url(cfg, "rediss://h"), REDTLS_OK);
    assert_string_equal(redtls_config_errmsg(cfg), "");
}

/* A long token is not copied into the message either, even when the part
 * shown is long. */
/* The port is never echoed: when "user:token" lacks its "@host", the part
 * after the colon is the token. */
static void test_port_never_echoed(void **state)
{
    redtls_config *cfg = *state;
    expect_fail(cfg, "rediss://default:" SECRET, REDTLS_E_URL, "port");
    expect_fail(cfg, "rediss://default:" SECRET "/2", REDTLS_E_URL, "port");
}

static void test_long_url_message_bounded(void **state)
{
    redtls_config *cfg = *state;
    char url[2048];
    char longparam[600];
    memset(longparam, 'q', sizeof longparam - 1);
    longparam[sizeof longparam - 1] = '\0';
    snprintf(url, sizeof url, "rediss://:%s@host:6379?%s=1", SECRET, longparam);
    expect_fail(cfg, url, REDTLS_E_URL, "...");
    assert_true(strlen(redtls_config_errmsg(cfg)) < REDTLS__ERRMSG_MAX);
}

/* protocol=2|3: RESP3 needs a build against hiredis 1.x; otherwise
 * protocol=3 is the setter's configuration error, and nothing changes. */
static void test_protocol_param(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_url(cfg, "rediss://h?protocol=2"), REDTLS_OK);
    assert_int_equal(cfg->protocol, 2);
    if (redtls_protocol_supported(3)) {
        assert_status(redtls_config_set_url(cfg, "rediss://h?protocol=3&name=x"), REDTLS_OK);
        assert_int_equal(cfg->protocol, 3);
        assert_status(redtls_config_set_url(cfg, "rediss://h?protocol=2"), REDTLS_OK);
        assert_int_equal(cfg->protocol, 2);
    } else {
        expect_fail(cfg, "rediss://:" SECRET "@host?protocol=3", REDTLS_E_CONFIG, "RESP3 needs hiredis 1.0 or later");
    }
    prepare(cfg);
    expect_fail(cfg, "rediss://:" SECRET "@host?protocol=4", REDTLS_E_URL, "protocol='4' must be 2 or 3");
    expect_fail(cfg, "rediss://:" SECRET "@host?protocol=", REDTLS_E_URL, "protocol='' must be 2 or 3");
    expect_fail(cfg, "rediss://:" SECRET "@host?protocol=03", REDTLS_E_URL, "protocol='03' must be 2 or 3");
    expect_fail(cfg, "rediss://:" SECRET "@host?protocol=resp3", REDTLS_E_URL, "must be 2 or 3");
}

#define T(f) cmocka_unit_test_setup_teardown(f, cfg_setup, cfg_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_rediss_host),
        T(test_redis_host_port),
        T(test_ipv6),
        T(test_userinfo),
        T(test_percent_encoded_token),
        T(test_db_path),
        T(test_query_params),
        T(test_client_cert_params),
        T(test_unix),
        T(test_applies_on_top),
        T(test_err_port),
        T(test_err_reserved_in_token),
        T(test_err_bad_escapes),
        T(test_err_query),
        T(test_err_query_values_are_url_errors),
        T(test_err_cert_key),
        T(test_err_host),
        T(test_err_db_path),
        T(test_err_scheme),
        T(test_err_userinfo),
        T(test_null_arguments),
        T(test_long_url_message_bounded),
        T(test_port_never_echoed),
        T(test_protocol_param),
    };
    return cmocka_run_group_tests_name("url", tests, group_setup, group_teardown);
}

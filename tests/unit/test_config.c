/* lib/config.c: defaults, setters' validation, and the copy a connection
 * keeps. */
#include "unit_util.h"

#include <sys/stat.h>

#include <redtls/cluster.h>

#include "conn.h"

static char dir[64];
static char a_crt[128], a_key[128], b_crt[128], b_key[128], enc_key[128], weak_crt[128], weak_key[128];
static char bundle[128], junk[128];

static int group_setup(void **state)
{
    (void)state;
    unit_tmpdir(dir, sizeof dir);
    unit_make_cert(dir, "a");
    unit_make_cert(dir, "b");
    snprintf(a_crt, sizeof a_crt, "%s/a.crt", dir);
    snprintf(a_key, sizeof a_key, "%s/a.key", dir);
    snprintf(b_crt, sizeof b_crt, "%s/b.crt", dir);
    snprintf(b_key, sizeof b_key, "%s/b.key", dir);
    snprintf(enc_key, sizeof enc_key, "%s/enc.key", dir);
    snprintf(weak_crt, sizeof weak_crt, "%s/weak.crt", dir);
    snprintf(weak_key, sizeof weak_key, "%s/weak.key", dir);
    snprintf(bundle, sizeof bundle, "%s/bundle.pem", dir);
    snprintf(junk, sizeof junk, "%s/junk.pem", dir);
    if (unit_sh("openssl pkey -in '%s' -aes256 -passout pass:pw -out '%s'", a_key, enc_key) != 0)
        return -1;
    if (unit_sh("openssl req -x509 -newkey rsa:1024 -nodes -keyout '%s' -out '%s' -subj /CN=weak -days 2", weak_key,
                weak_crt) != 0)
        return -1;
    char *pa = unit_slurp(a_crt, NULL), *pb = unit_slurp(b_crt, NULL);
    size_t na = strlen(pa), nb = strlen(pb);
    char *both = malloc(na + nb + 1);
    if (!both)
        return -1;
    memcpy(both, pa, na);
    memcpy(both + na, pb, nb + 1);
    unit_write_file(bundle, both);
    free(both);
    free(pa);
    free(pb);
    unit_write_file(junk, "this is not a certificate\n");
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

#define T(f) cmocka_unit_test_setup_teardown(f, cfg_setup, cfg_teardown)

static void test_defaults(void **state)
{
    redtls_config *cfg = *state;
    assert_string_equal(cfg->host, "127.0.0.1");
    assert_int_equal(cfg->port, 6379);
    assert_null(cfg->unix_path);
    assert_int_equal(cfg->use_tls, 1);
    assert_null(cfg->verify_name);
    assert_int_equal(cfg->tls.min_version, 12);
    assert_int_equal(cfg->tls.insecure, 0);
    assert_null(cfg->tls.ca_file);
    assert_null(cfg->tls.ca_dir);
    assert_null(cfg->tls.ca_pem);
    assert_null(cfg->tls.cert_pem);
    assert_null(cfg->tls.key_pem.data);
    assert_null(cfg->tls.tls12_ciphers);
    assert_null(cfg->tls.tls13_suites);
    assert_null(cfg->user);
    assert_null(cfg->token.data);
    assert_int_equal(cfg->db, 0);
    assert_null(cfg->client_name);
    assert_int_equal(cfg->connect_timeout_ms, REDTLS_DEFAULT_CONNECT_TIMEOUT_MS);
    assert_int_equal(cfg->handshake_timeout_ms, REDTLS_DEFAULT_HANDSHAKE_TIMEOUT_MS);
    assert_int_equal(cfg->command_timeout_ms, REDTLS_DEFAULT_COMMAND_TIMEOUT_MS);
    assert_int_equal(cfg->connect_timeout_ms, redtls_default_connect_timeout_ms());
    assert_int_equal(cfg->handshake_timeout_ms, redtls_default_handshake_timeout_ms());
    assert_int_equal(cfg->command_timeout_ms, redtls_default_command_timeout_ms());
    assert_int_equal(cfg->limits.max_elements, REDTLS_DEFAULT_MAX_ARRAY_ELEMENTS);
    assert_int_equal(cfg->limits.max_bulk, REDTLS_DEFAULT_MAX_BULK_LEN);
    assert_int_equal(cfg->limits.max_buffer, REDTLS_DEFAULT_MAX_BUFFER);
    assert_int_equal(cfg->limits.max_elements, redtls_default_max_array_elements());
    assert_int_equal(cfg->limits.max_bulk, redtls_default_max_bulk_len());
    assert_int_equal(cfg->limits.max_buffer, redtls_default_max_buffer());
    assert_string_equal(redtls_config_errmsg(cfg), "");
}

static void test_null_handles(void **state)
{
    (void)state;
    assert_status(redtls_config_new(NULL), REDTLS_E_INVALID);
    redtls_config_free(NULL);
    assert_string_equal(redtls_config_errmsg(NULL), "");
    assert_status(redtls_config_set_host(NULL, "h", 1), REDTLS_E_INVALID);
    assert_status(redtls_config_set_unix_path(NULL, "/x"), REDTLS_E_INVALID);
    assert_status(redtls_config_set_tls(NULL, 1), REDTLS_E_INVALID);
    assert_status(redtls_config_set_ca_file(NULL, a_crt), REDTLS_E_INVALID);
    assert_status(redtls_config_set_ca_dir(NULL, dir), REDTLS_E_INVALID);
    assert_status(redtls_config_set_ca_pem(NULL, "x", 1), REDTLS_E_INVALID);
    assert_status(redtls_config_set_client_cert_file(NULL, a_crt, a_key), REDTLS_E_INVALID);
    assert_status(redtls_config_set_client_cert_pem(NULL, "x", 1, "y", 1), REDTLS_E_INVALID);
    assert_status(redtls_config_set_verify_name(NULL, "n"), REDTLS_E_INVALID);
    assert_status(redtls_config_set_tls_min_version(NULL, REDTLS_TLS_1_3), REDTLS_E_INVALID);
    assert_status(redtls_config_set_tls12_ciphers(NULL, "ECDHE-RSA-AES128-GCM-SHA256"), REDTLS_E_INVALID);
    assert_status(redtls_config_set_tls13_ciphersuites(NULL, "TLS_AES_128_GCM_SHA256"), REDTLS_E_INVALID);
    assert_status(redtls_config_set_insecure_skip_verify(NULL, 1), REDTLS_E_INVALID);
    assert_status(redtls_config_set_user(NULL, "u"), REDTLS_E_INVALID);
    assert_status(redtls_config_set_token(NULL, "t"), REDTLS_E_INVALID);
    assert_status(redtls_config_set_db(NULL, 1), REDTLS_E_INVALID);
    assert_status(redtls_config_set_client_name(NULL, "n"), REDTLS_E_INVALID);
    assert_status(redtls_config_set_connect_timeout_ms(NULL, 1), REDTLS_E_INVALID);
    assert_status(redtls_config_set_handshake_timeout_ms(NULL, 1), REDTLS_E_INVALID);
    assert_status(redtls_config_set_command_timeout_ms(NULL, 1), REDTLS_E_INVALID);
    assert_status(redtls_config_set_max_array_elements(NULL, 1), REDTLS_E_INVALID);
    assert_status(redtls_config_set_max_bulk_len(NULL, 1), REDTLS_E_INVALID);
    assert_status(redtls_config_set_max_buffer(NULL, 1), REDTLS_E_INVALID);
    assert_status(redtls_config_set_url(NULL, "rediss://h"), REDTLS_E_INVALID);
    redtls_conn *conn = (redtls_conn *)1;
    assert_status(redtls_conn_new(NULL, &conn), REDTLS_E_INVALID);
    assert_null(conn);
}

static void test_host_and_unix(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_host(cfg, NULL, 6379), REDTLS_E_INVALID);
    assert_contains(redtls_config_errmsg(cfg), "host must be non-empty");
    assert_status(redtls_config_set_host(cfg, "", 6379), REDTLS_E_INVALID);
    assert_status(redtls_config_set_host(cfg, "h", 0), REDTLS_E_INVALID);
    assert_contains(redtls_config_errmsg(cfg), "port non-zero");
    assert_string_equal(cfg->host, "127.0.0.1");
    assert_int_equal(cfg->port, 6379);

    assert_status(redtls_config_set_host(cfg, "redis.example.com", 6380), REDTLS_OK);
    assert_string_equal(redtls_config_errmsg(cfg), "");
    assert_string_equal(cfg->host, "redis.example.com");
    assert_int_equal(cfg->port, 6380);
    assert_status(redtls_config_set_host(cfg, "[::1]", 7000), REDTLS_OK);
    assert_string_equal(cfg->host, "::1");
    assert_status(redtls_config_set_host(cfg, "::1", 7000), REDTLS_OK);
    assert_string_equal(cfg->host, "::1");

    assert_status(redtls_config_set_unix_path(cfg, ""), REDTLS_E_INVALID);
    assert_status(redtls_config_set_unix_path(cfg, NULL), REDTLS_E_INVALID);
    assert_null(cfg->unix_path);
    assert_status(redtls_config_set_unix_path(cfg, "/run/redis.sock"), REDTLS_OK);
    assert_string_equal(cfg->unix_path, "/run/redis.sock");
    /* Setting a host clears the socket path. */
    assert_status(redtls_config_set_host(cfg, "h", 1), REDTLS_OK);
    assert_null(cfg->unix_path);
}

/* One server address at a time, and the last setter (or URL) wins: a Unix
 * socket path clears the host, a host clears the path. */
static void test_unix_path_replaces_host(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_host(cfg, "redis.example.com", 6380), REDTLS_OK);
    /* A refused path changes nothing. */
    assert_status(redtls_config_set_unix_path(cfg, ""), REDTLS_E_INVALID);
    assert_string_equal(cfg->host, "redis.example.com");
    assert_null(cfg->unix_path);

    assert_status(redtls_config_set_unix_path(cfg, "/run/redis.sock"), REDTLS_OK);
    assert_string_equal(cfg->unix_path, "/run/redis.sock");
    assert_null(cfg->host);
    /* A connection made now has no host to fall back on, and no TLS. */
    redtls_conn *conn = NULL;
    assert_status(redtls_conn_new(cfg, &conn), REDTLS_OK);
    assert_null(conn->cfg.host);
    assert_string_equal(conn->cfg.unix_path, "/run/redis.sock");
    assert_null(conn->tls);
    redtls_conn_free(conn);
    /* The cluster needs TCP seeds, even given explicitly. */
    redtls_cluster *cl = (redtls_cluster *)1;
    assert_status(redtls_cluster_new(cfg, "seed.example:7000", &cl), REDTLS_E_INVALID);
    assert_null(cl);
    assert_contains(redtls_config_errmsg(cfg), "not a Unix socket");

    /* A later host replaces the path, with the port given then. */
    assert_status(redtls_config_set_host(cfg, "other.example", 7000), REDTLS_OK);
    assert_string_equal(cfg->host, "other.example");
    assert_int_equal(cfg->port, 7000);
    assert_null(cfg->unix_path);
    assert_status(redtls_conn_new(cfg, &conn), REDTLS_OK);
    assert_non_null(conn->tls);
    redtls_conn_free(conn);

    /* URLs follow the same rule in both directions. */
    assert_status(redtls_config_set_url(cfg, "unix:///tmp/r.sock"), REDTLS_OK);
    assert_string_equal(cfg->unix_path, "/tmp/r.sock");
    assert_null(cfg->host);
    assert_status(redtls_config_set_url(cfg, "rediss://h3:7001"), REDTLS_OK);
    assert_string_equal(cfg->host, "h3");
    assert_int_equal(cfg->port, 7001);
    assert_null(cfg->unix_path);
    assert_status(redtls_config_set_unix_path(cfg, "/tmp/r2.sock"), REDTLS_OK);
    assert_status(redtls_config_set_url(cfg, "redis://h4"), REDTLS_OK);
    assert_string_equal(cfg->host, "h4");
    assert_int_equal(cfg->port, 6379);
    assert_null(cfg->unix_path);
}

static void test_tls_flags(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_tls(cfg, 0), REDTLS_OK);
    assert_int_equal(cfg->use_tls, 0);
    assert_status(redtls_config_set_tls(cfg, 42), REDTLS_OK);
    assert_int_equal(cfg->use_tls, 1);
    assert_status(redtls_config_set_insecure_skip_verify(cfg, 7), REDTLS_OK);
    assert_int_equal(cfg->tls.insecure, 1);
    assert_status(redtls_config_set_insecure_skip_verify(cfg, 0), REDTLS_OK);
    assert_int_equal(cfg->tls.insecure, 0);

    assert_status(redtls_config_set_tls_min_version(cfg, REDTLS_TLS_1_3), REDTLS_OK);
    assert_int_equal(cfg->tls.min_version, 13);
    assert_status(redtls_config_set_tls_min_version(cfg, (redtls_tls_version)11), REDTLS_E_INVALID);
    assert_contains(redtls_config_errmsg(cfg), "1.2 or 1.3");
    assert_int_equal(cfg->tls.min_version, 13);
    assert_status(redtls_config_set_tls_min_version(cfg, (redtls_tls_version)14), REDTLS_E_INVALID);
    assert_status(redtls_config_set_tls_min_version(cfg, REDTLS_TLS_1_2), REDTLS_OK);
    assert_int_equal(cfg->tls.min_version, 12);

    assert_status(redtls_config_set_verify_name(cfg, ""), REDTLS_E_INVALID);
    assert_null(cfg->verify_name);
    assert_status(redtls_config_set_verify_name(cfg, "redis.internal"), REDTLS_OK);
    assert_string_equal(cfg->verify_name, "redis.internal");
    assert_status(redtls_config_set_verify_name(cfg, NULL), REDTLS_OK);
    assert_null(cfg->verify_name);
}

static void test_ca_file(void **state)
{
    redtls_config *cfg = *state;
    char missing[160];
    snprintf(missing, sizeof missing, "%s/does-not-exist.pem", dir);
    assert_status(redtls_config_set_ca_file(cfg, missing), REDTLS_E_CONFIG);
    assert_contains(redtls_config_errmsg(cfg), missing);
    assert_contains(redtls_config_errmsg(cfg), "No such file");
    assert_null(cfg->tls.ca_file);

    assert_status(redtls_config_set_ca_file(cfg, junk), REDTLS_E_CONFIG);
    assert_contains(redtls_config_errmsg(cfg), "holds no PEM certificate");
    assert_status(redtls_config_set_ca_file(cfg, a_key), REDTLS_E_CONFIG);
    assert_status(redtls_config_set_ca_file(cfg, dir), REDTLS_E_CONFIG);
    assert_contains(redtls_config_errmsg(cfg), dir);
    assert_status(redtls_config_set_ca_file(cfg, ""), REDTLS_E_INVALID);
    assert_status(redtls_config_set_ca_file(cfg, NULL), REDTLS_E_INVALID);
    assert_null(cfg->tls.ca_file);

    assert_status(redtls_config_set_ca_file(cfg, a_crt), REDTLS_OK);
    assert_string_equal(cfg->tls.ca_file, a_crt);
    assert_string_equal(redtls_config_errmsg(cfg), "");
    assert_status(redtls_config_set_ca_file(cfg, bundle), REDTLS_OK);
    assert_string_equal(cfg->tls.ca_file, bundle);
    /* A failed call keeps the previous file. */
    assert_status(redtls_config_set_ca_file(cfg, missing), REDTLS_E_CONFIG);
    assert_string_equal(cfg->tls.ca_file, bundle);
}

static void test_ca_dir_and_pem(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_ca_dir(cfg, a_crt), REDTLS_E_CONFIG);
    assert_contains(redtls_config_errmsg(cfg), "is not a directory");
    assert_status(redtls_config_set_ca_dir(cfg, "/nonexistent-redtls-dir"), REDTLS_E_CONFIG);
    assert_contains(redtls_config_errmsg(cfg), "/nonexistent-redtls-dir");
    assert_status(redtls_config_set_ca_dir(cfg, ""), REDTLS_E_INVALID);
    assert_null(cfg->tls.ca_dir);
    assert_status(redtls_config_set_ca_dir(cfg, dir), REDTLS_OK);
    assert_string_equal(cfg->tls.ca_dir, dir);

    size_t len = 0;
    char *pem = unit_slurp(bundle, &len);
    assert_status(redtls_config_set_ca_pem(cfg, "garbage", 7), REDTLS_E_CONFIG);
    assert_contains(redtls_config_errmsg(cfg), "no certificate");
    assert_status(redtls_config_set_ca_pem(cfg, NULL, 5), REDTLS_E_INVALID);
    assert_status(redtls_config_set_ca_pem(cfg, pem, 0), REDTLS_E_INVALID);
    assert_null(cfg->tls.ca_pem);
    assert_status(redtls_config_set_ca_pem(cfg, pem, len), REDTLS_OK);
    assert_non_null(cfg->tls.ca_pem);
    assert_ptr_not_equal(cfg->tls.ca_pem, pem);
    assert_int_equal(cfg->tls.ca_pem_len, len);
    assert_memory_equal(cfg->tls.ca_pem, pem, len);
    /* The input is copied. */
    memset(pem, 'x', len);
    assert_memory_equal(cfg->tls.ca_pem, "-----BEGIN", 10);
    free(pem);

    /* Each kind can be combined with the others and a connection builds. */
    assert_status(redtls_config_set_ca_file(cfg, a_crt), REDTLS_OK);
    redtls_conn *conn = NULL;
    assert_status(redtls_conn_new(cfg, &conn), REDTLS_OK);
    assert_non_null(conn->tls);
    redtls_conn_free(conn);
}

static void test_client_cert(void **state)
{
    redtls_config *cfg = *state;
    size_t clen, klen, bklen, elen;
    char *crt = unit_slurp(a_crt, &clen);
    char *key = unit_slurp(a_key, &klen);
    char *bkey = unit_slurp(b_key, &bklen);
    char *ekey = unit_slurp(enc_key, &elen);

    assert_status(redtls_config_set_client_cert_pem(cfg, crt, clen, bkey, bklen), REDTLS_E_CONFIG);
    assert_string_equal(redtls_config_errmsg(cfg), "client key does not match the client certificate");
    assert_null(cfg->tls.cert_pem);
    assert_null(cfg->tls.key_pem.data);

    assert_status(redtls_config_set_client_cert_pem(cfg, crt, clen, ekey, elen), REDTLS_E_CONFIG);
    assert_contains(redtls_config_errmsg(cfg), "encrypted keys are not supported");
    assert_status(redtls_config_set_client_cert_pem(cfg, "junk", 4, key, klen), REDTLS_E_CONFIG);
    assert_contains(redtls_config_errmsg(cfg), "no PEM certificate");
    assert_status(redtls_config_set_client_cert_pem(cfg, crt, clen, "junk", 4), REDTLS_E_CONFIG);
    assert_contains(redtls_config_errmsg(cfg), "private key");
    assert_not_contains(redtls_config_errmsg(cfg), "junk");
    assert_status(redtls_config_set_client_cert_pem(cfg, crt, 0, key, klen), REDTLS_E_INVALID);
    assert_status(redtls_config_set_client_cert_pem(cfg, crt, clen, NULL, klen), REDTLS_E_INVALID);
    assert_null(cfg->tls.cert_pem);

    assert_status(redtls_config_set_client_cert_pem(cfg, crt, clen, key, klen), REDTLS_OK);
    assert_int_equal(cfg->tls.cert_pem_len, clen);
    assert_memory_equal(cfg->tls.cert_pem, crt, clen);
    assert_int_equal(cfg->tls.key_pem.len, klen);
    assert_memory_equal(cfg->tls.key_pem.data, key, klen);
    assert_ptr_not_equal(cfg->tls.key_pem.data, key);

    /* A refused pair leaves the accepted one in place. */
    assert_status(redtls_config_set_client_cert_pem(cfg, crt, clen, bkey, bklen), REDTLS_E_CONFIG);
    assert_memory_equal(cfg->tls.key_pem.data, key, klen);

    free(crt);
    free(key);
    free(bkey);
    free(ekey);
}

static void test_client_cert_file(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_client_cert_file(cfg, a_crt, b_key), REDTLS_E_CONFIG);
    assert_contains(redtls_config_errmsg(cfg), "does not match");
    assert_contains(redtls_config_errmsg(cfg), a_crt);
    assert_contains(redtls_config_errmsg(cfg), b_key);
    assert_not_contains(redtls_config_errmsg(cfg), "PRIVATE KEY");
    char missing[160];
    snprintf(missing, sizeof missing, "%s/missing.key", dir);
    assert_status(redtls_config_set_client_cert_file(cfg, a_crt, missing), REDTLS_E_CONFIG);
    assert_contains(redtls_config_errmsg(cfg), missing);
    assert_status(redtls_config_set_client_cert_file(cfg, NULL, a_key), REDTLS_E_INVALID);
    assert_null(cfg->tls.cert_pem);
    assert_status(redtls_config_set_client_cert_file(cfg, a_crt, a_key), REDTLS_OK);
    assert_non_null(cfg->tls.cert_pem);
    assert_non_null(cfg->tls.key_pem.data);
    redtls_conn *conn = NULL;
    assert_status(redtls_conn_new(cfg, &conn), REDTLS_OK);
    redtls_conn_free(conn);
}

static void test_ciphers(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_tls12_ciphers(cfg, "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305"),
                  REDTLS_OK);
    assert_string_equal(cfg->tls.tls12_ciphers, "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305");

    /* Neither forward secret nor AEAD. */
    assert_status(redtls_config_set_tls12_ciphers(cfg, "AES128-SHA"), REDTLS_E_CONFIG);
    assert_contains(redtls_config_errmsg(cfg), "AES128-SHA");
    /* Forward secret but not AEAD. */
    assert_status(redtls_config_set_tls12_ciphers(cfg, "ECDHE-RSA-AES128-SHA"), REDTLS_E_CONFIG);
    assert_contains(redtls_config_errmsg(cfg), "ECDHE-RSA-AES128-SHA");
    /* AEAD but not ECDHE. */
    assert_status(redtls_config_set_tls12_ciphers(cfg, "AES128-GCM-SHA256"), REDTLS_E_CONFIG);
    assert_status(redtls_config_set_tls12_ciphers(cfg, "DHE-RSA-AES128-GCM-SHA256"), REDTLS_E_CONFIG);
    assert_status(redtls_config_set_tls12_ciphers(cfg, "NO-SUCH-CIPHER"), REDTLS_E_CONFIG);
    assert_status(redtls_config_set_tls12_ciphers(cfg, ""), REDTLS_E_INVALID);
    /* Refusals keep the previous list. */
    assert_string_equal(cfg->tls.tls12_ciphers, "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305");
    assert_status(redtls_config_set_tls12_ciphers(cfg, NULL), REDTLS_OK);
    assert_null(cfg->tls.tls12_ciphers);

    assert_status(redtls_config_set_tls13_ciphersuites(cfg, "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"),
                  REDTLS_OK);
    assert_string_equal(cfg->tls.tls13_suites, "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
    assert_status(redtls_config_set_tls13_ciphersuites(cfg, "NOT_A_SUITE"), REDTLS_E_CONFIG);
    assert_contains(redtls_config_errmsg(cfg), "NOT_A_SUITE");
    assert_status(redtls_config_set_tls13_ciphersuites(cfg, ""), REDTLS_E_INVALID);
    assert_string_equal(cfg->tls.tls13_suites, "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
}

static void test_credentials_and_names(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_user(cfg, ""), REDTLS_E_INVALID);
    assert_status(redtls_config_set_user(cfg, "al ice"), REDTLS_E_INVALID);
    assert_status(redtls_config_set_user(cfg, "alice\r\n"), REDTLS_E_INVALID);
    assert_null(cfg->user);
    assert_status(redtls_config_set_user(cfg, "alice"), REDTLS_OK);
    assert_string_equal(cfg->user, "alice");
    assert_status(redtls_config_set_user(cfg, NULL), REDTLS_OK);
    assert_null(cfg->user);

    assert_status(redtls_config_set_token(cfg, ""), REDTLS_E_INVALID);
    assert_not_contains(redtls_config_errmsg(cfg), "hunter");
    assert_null(cfg->token.data);
    assert_status(redtls_config_set_token(cfg, "hunter2 with spaces"), REDTLS_OK);
    assert_string_equal(cfg->token.data, "hunter2 with spaces");
    assert_int_equal(cfg->token.len, 19);
    assert_status(redtls_config_set_token(cfg, NULL), REDTLS_OK);
    assert_null(cfg->token.data);

    assert_status(redtls_config_set_db(cfg, -1), REDTLS_E_INVALID);
    assert_contains(redtls_config_errmsg(cfg), ">= 0");
    assert_int_equal(cfg->db, 0);
    assert_status(redtls_config_set_db(cfg, 15), REDTLS_OK);
    assert_int_equal(cfg->db, 15);

    assert_status(redtls_config_set_client_name(cfg, "has space"), REDTLS_E_INVALID);
    assert_status(redtls_config_set_client_name(cfg, ""), REDTLS_E_INVALID);
    assert_status(redtls_config_set_client_name(cfg, "a\nb"), REDTLS_E_INVALID);
    assert_null(cfg->client_name);
    assert_status(redtls_config_set_client_name(cfg, "worker-1"), REDTLS_OK);
    assert_string_equal(cfg->client_name, "worker-1");
    assert_status(redtls_config_set_client_name(cfg, NULL), REDTLS_OK);
    assert_null(cfg->client_name);
}

static void test_timeouts_and_limits(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_connect_timeout_ms(cfg, 1), REDTLS_OK);
    assert_status(redtls_config_set_handshake_timeout_ms(cfg, 0), REDTLS_OK);
    assert_status(redtls_config_set_command_timeout_ms(cfg, 4000000000u), REDTLS_OK);
    assert_int_equal(cfg->connect_timeout_ms, 1);
    assert_int_equal(cfg->handshake_timeout_ms, 0);
    assert_int_equal(cfg->command_timeout_ms, 4000000000u);

    assert_status(redtls_config_set_max_array_elements(cfg, 5), REDTLS_OK);
    assert_status(redtls_config_set_max_bulk_len(cfg, 6), REDTLS_OK);
    assert_status(redtls_config_set_max_buffer(cfg, 7), REDTLS_OK);
    assert_int_equal(cfg->limits.max_elements, 5);
    assert_int_equal(cfg->limits.max_bulk, 6);
    assert_int_equal(cfg->limits.max_buffer, 7);
    /* 0 restores the default. */
    assert_status(redtls_config_set_max_array_elements(cfg, 0), REDTLS_OK);
    assert_status(redtls_config_set_max_bulk_len(cfg, 0), REDTLS_OK);
    assert_status(redtls_config_set_max_buffer(cfg, 0), REDTLS_OK);
    assert_int_equal(cfg->limits.max_elements, REDTLS_DEFAULT_MAX_ARRAY_ELEMENTS);
    assert_int_equal(cfg->limits.max_bulk, REDTLS_DEFAULT_MAX_BULK_LEN);
    assert_int_equal(cfg->limits.max_buffer, REDTLS_DEFAULT_MAX_BUFFER);
}

/* The connection keeps its own deep copy: later changes, and freeing the
 * configuration, do not reach it. */
static void test_conn_copies_config(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_host(cfg, "first.example", 6001), REDTLS_OK);
    assert_status(redtls_config_set_user(cfg, "u1"), REDTLS_OK);
    assert_status(redtls_config_set_token(cfg, "token-one"), REDTLS_OK);
    assert_status(redtls_config_set_client_name(cfg, "n1"), REDTLS_OK);
    assert_status(redtls_config_set_ca_file(cfg, a_crt), REDTLS_OK);
    assert_status(redtls_config_set_client_cert_file(cfg, a_crt, a_key), REDTLS_OK);
    assert_status(redtls_config_set_max_bulk_len(cfg, 100), REDTLS_OK);
    assert_status(redtls_config_set_command_timeout_ms(cfg, 111), REDTLS_OK);
    assert_status(redtls_config_set_db(cfg, 3), REDTLS_OK);

    redtls_conn *conn = NULL;
    assert_status(redtls_conn_new(cfg, &conn), REDTLS_OK);
    assert_ptr_not_equal(conn->cfg.host, cfg->host);
    assert_ptr_not_equal(conn->cfg.token.data, cfg->token.data);
    assert_ptr_not_equal(conn->cfg.tls.key_pem.data, cfg->tls.key_pem.data);
    assert_ptr_not_equal(conn->cfg.tls.cert_pem, cfg->tls.cert_pem);

    assert_status(redtls_config_set_host(cfg, "second.example", 6002), REDTLS_OK);
    assert_status(redtls_config_set_user(cfg, "u2"), REDTLS_OK);
    assert_status(redtls_config_set_token(cfg, "token-two"), REDTLS_OK);
    assert_status(redtls_config_set_client_name(cfg, NULL), REDTLS_OK);
    assert_status(redtls_config_set_ca_file(cfg, b_crt), REDTLS_OK);
    assert_status(redtls_config_set_max_bulk_len(cfg, 200), REDTLS_OK);
    assert_status(redtls_config_set_command_timeout_ms(cfg, 222), REDTLS_OK);
    assert_status(redtls_config_set_db(cfg, 4), REDTLS_OK);
    assert_status(redtls_config_set_tls(cfg, 0), REDTLS_OK);

    assert_string_equal(conn->cfg.host, "first.example");
    assert_int_equal(conn->cfg.port, 6001);
    assert_string_equal(conn->cfg.user, "u1");
    assert_string_equal(conn->cfg.token.data, "token-one");
    assert_string_equal(conn->cfg.client_name, "n1");
    assert_string_equal(conn->cfg.tls.ca_file, a_crt);
    assert_int_equal(conn->cfg.limits.max_bulk, 100);
    assert_int_equal(conn->cfg.command_timeout_ms, 111);
    assert_int_equal(conn->cfg.db, 3);
    assert_int_equal(conn->cfg.use_tls, 1);

    /* Freeing the configuration does not touch the copy. */
    redtls_config_free(cfg);
    *state = NULL;
    assert_string_equal(conn->cfg.host, "first.example");
    assert_string_equal(conn->cfg.token.data, "token-one");
    assert_non_null(conn->cfg.tls.key_pem.data);
    redtls_conn_free(conn);
}

static void test_conn_new_errors(void **state)
{
    redtls_config *cfg = *state;
    redtls_conn *conn = (redtls_conn *)1;
    assert_status(redtls_conn_new(cfg, NULL), REDTLS_E_INVALID);

    /* A CA file that went away between the setter and the connection. */
    char moving[160];
    snprintf(moving, sizeof moving, "%s/moving.pem", dir);
    assert_int_equal(unit_sh("cp '%s' '%s'", a_crt, moving), 0);
    assert_status(redtls_config_set_ca_file(cfg, moving), REDTLS_OK);
    assert_int_equal(unlink(moving), 0);
    assert_status(redtls_conn_new(cfg, &conn), REDTLS_E_CONFIG);
    assert_null(conn);
    assert_contains(redtls_config_errmsg(cfg), "moving.pem");

    /* Without TLS no context is built, so the missing file does not matter. */
    assert_status(redtls_config_set_tls(cfg, 0), REDTLS_OK);
    assert_status(redtls_conn_new(cfg, &conn), REDTLS_OK);
    assert_null(conn->tls);
    assert_int_equal(redtls_conn_is_connected(conn), 0);
    assert_int_equal(redtls_conn_pending(conn), 0);
    assert_string_equal(redtls_conn_errmsg(conn), "");
    redtls_conn_free(conn);
}

/* A 1024-bit RSA client key is below security level 2: the pair itself is
 * consistent, so the setter takes it and the connection's context refuses
 * it. */
static void test_weak_client_key(void **state)
{
    redtls_config *cfg = *state;
    assert_status(redtls_config_set_client_cert_file(cfg, weak_crt, weak_key), REDTLS_OK);
    redtls_conn *conn = (redtls_conn *)1;
    assert_status(redtls_conn_new(cfg, &conn), REDTLS_E_CONFIG);
    assert_null(conn);
    assert_string_equal(redtls_config_errmsg(cfg), "client certificate cannot be used: ee key too small");
}

static void test_conn_null_accessors(void **state)
{
    (void)state;
    redtls_conn_free(NULL);
    redtls_conn_close(NULL);
    assert_int_equal(redtls_conn_is_connected(NULL), 0);
    assert_int_equal(redtls_conn_pending(NULL), 0);
    assert_string_equal(redtls_conn_errmsg(NULL), "");
    assert_status(redtls_conn_connect(NULL), REDTLS_E_INVALID);
    assert_null(redtls_conn_tls_version(NULL));
    assert_null(redtls_conn_peer_sans(NULL));
}

/* Connections made from one configuration share its TLS context; a later
 * setting makes a new one for later connections only, and connections
 * outlive the configuration. */
static void test_tls_context_shared(void **state)
{
    (void)state;
    redtls_config *cfg = NULL;
    redtls_conn *a = NULL, *b = NULL, *c = NULL;
    assert_status(redtls_config_new(&cfg), REDTLS_OK);
    assert_status(redtls_conn_new(cfg, &a), REDTLS_OK);
    assert_status(redtls_conn_new(cfg, &b), REDTLS_OK);
    assert_non_null(a->tls);
    assert_ptr_equal(a->tls, b->tls);
    assert_status(redtls_config_set_tls_min_version(cfg, REDTLS_TLS_1_3), REDTLS_OK);
    assert_null(cfg->tls_cache);
    assert_status(redtls_conn_new(cfg, &c), REDTLS_OK);
    assert_ptr_not_equal(c->tls, a->tls);
    redtls_config_free(cfg);
    redtls_conn_free(a);
    /* b still holds the first context; freeing it last releases it (ASan
     * and valgrind runs check that nothing leaks or is freed twice). */
    assert_non_null(b->tls);
    redtls_conn_free(b);
    redtls_conn_free(c);
    /* Plain connections have none. */
    cfg = unit_plain_config();
    assert_status(redtls_conn_new(cfg, &a), REDTLS_OK);
    assert_null(a->tls);
    redtls_conn_free(a);
    redtls_config_free(cfg);
}


/* Address overrides and verify-name mappings: lookup rules, replacement,
 * bracket handling, precedence of the fixed name, deep copies. */
static void test_host_maps(void **state)
{
    redtls_config *cfg = *state;
    assert_int_equal(redtls_config_add_resolve(NULL, "a", 1, "b"), REDTLS_E_INVALID);
    assert_int_equal(redtls_config_add_resolve(cfg, "", 1, "b"), REDTLS_E_INVALID);
    assert_int_equal(redtls_config_add_resolve(cfg, "a", 1, NULL), REDTLS_E_INVALID);
    assert_int_equal(redtls_config_map_verify_name(cfg, "10.0.0.1", ""), REDTLS_E_INVALID);

    assert_int_equal(redtls_config_add_resolve(cfg, "node.example", 0, "10.0.0.9"), REDTLS_OK);
    assert_int_equal(redtls_config_add_resolve(cfg, "Node.Example", 7001, "10.0.0.1"), REDTLS_OK);
    assert_int_equal(redtls_config_add_resolve(cfg, "[::1]", 6379, "[fe80::1]"), REDTLS_OK);
    /* An exact port wins over "any port"; names compare case-insensitively. */
    assert_string_equal(redtls__config_connect_addr(cfg, "node.example", 7001), "10.0.0.1");
    assert_string_equal(redtls__config_connect_addr(cfg, "NODE.example", 7002), "10.0.0.9");
    assert_string_equal(redtls__config_connect_addr(cfg, "other", 7001), "other");
    assert_string_equal(redtls__config_connect_addr(cfg, "::1", 6379), "fe80::1");
    assert_string_equal(redtls__config_connect_addr(cfg, "::1", 6380), "::1");
    /* A second entry for the same host and port replaces the first. */
    assert_int_equal(redtls_config_add_resolve(cfg, "node.example", 7001, "10.0.0.2"), REDTLS_OK);
    assert_string_equal(redtls__config_connect_addr(cfg, "node.example", 7001), "10.0.0.2");
    assert_int_equal(cfg->resolve.n, 3);

    /* Verify names: mapping, then a fixed name over every mapping. */
    assert_string_equal(redtls__config_verify_name(cfg, "10.0.0.5"), "10.0.0.5");
    assert_int_equal(redtls_config_map_verify_name(cfg, "10.0.0.5", "node5.example"), REDTLS_OK);
    assert_string_equal(redtls__config_verify_name(cfg, "10.0.0.5"), "node5.example");
    assert_int_equal(redtls_config_set_verify_name(cfg, "fixed.example"), REDTLS_OK);
    assert_string_equal(redtls__config_verify_name(cfg, "10.0.0.5"), "fixed.example");
    assert_int_equal(redtls_config_set_verify_name(cfg, NULL), REDTLS_OK);

    /* A connection's copy keeps them; clearing the config does not reach it. */
    redtls_config copy;
    char copy_err[REDTLS__ERRMSG_MAX];
    assert_int_equal(redtls__config_copy(&copy, cfg, copy_err), REDTLS_OK);
    assert_int_equal(redtls_config_clear_host_maps(cfg), REDTLS_OK);
    assert_string_equal(redtls__config_connect_addr(cfg, "node.example", 7001), "node.example");
    assert_string_equal(redtls__config_verify_name(cfg, "10.0.0.5"), "10.0.0.5");
    assert_string_equal(redtls__config_connect_addr(&copy, "node.example", 7001), "10.0.0.2");
    assert_string_equal(redtls__config_verify_name(&copy, "10.0.0.5"), "node5.example");
    redtls__config_release(&copy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        cmocka_unit_test(test_tls_context_shared),
        cmocka_unit_test(test_null_handles),
        T(test_host_and_unix),
        T(test_unix_path_replaces_host),
        T(test_tls_flags),
        T(test_ca_file),
        T(test_ca_dir_and_pem),
        T(test_client_cert),
        T(test_client_cert_file),
        T(test_ciphers),
        T(test_host_maps),
        T(test_credentials_and_names),
        T(test_timeouts_and_limits),
        T(test_conn_copies_config),
        T(test_conn_new_errors),
        T(test_weak_client_key),
        cmocka_unit_test(test_conn_null_accessors),
    };
    return cmocka_run_group_tests_name("config", tests, group_setup, group_teardown);
}

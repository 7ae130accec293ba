/* Helpers shared by the unit tests: cmocka, status/substring assertions,
 * a connection on the memory transport, a scratch folder with certificates
 * made by the openssl command-line tool, and the process's resident size. */
#ifndef REDTLS_UNIT_UTIL_H
#define REDTLS_UNIT_UTIL_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "blocking.h"
#include "conn.h"
#include "unit_wait.h"

#define assert_status(actual, expected)                                                                          \
    do {                                                                                                         \
        redtls_status a_ = (actual), e_ = (expected);                                                            \
        if (a_ != e_)                                                                                            \
            fail_msg("status %d (%s), expected %d (%s)", (int)a_, redtls_strerror(a_), (int)e_,                  \
                     redtls_strerror(e_));                                                                       \
    } while (0)

#define assert_contains(hay, needle)                                                                             \
    do {                                                                                                         \
        const char *h_ = (hay), *n_ = (needle);                                                                  \
        if (!h_ || !strstr(h_, n_))                                                                              \
            fail_msg("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_);                                  \
    } while (0)

#define assert_not_contains(hay, needle)                                                                         \
    do {                                                                                                         \
        const char *h_ = (hay), *n_ = (needle);                                                                  \
        if (h_ && strstr(h_, n_))                                                                                \
            fail_msg("\"%s\" must not contain \"%s\"", h_, n_);                                                  \
    } while (0)

/* A configuration without TLS, so connections need no trust store. */
static inline redtls_config *unit_plain_config(void)
{
    redtls_config *cfg = NULL;
    assert_status(redtls_config_new(&cfg), REDTLS_OK);
    assert_non_null(cfg);
    assert_status(redtls_config_set_tls(cfg, 0), REDTLS_OK);
    /* Memory-transport tests drive the connection by hand: a dropped
     * connection must stay dropped, not be redialled on 127.0.0.1:6379. */
    assert_status(redtls_config_set_reconnect(cfg, 0), REDTLS_OK);
    return cfg;
}

/* A connection made from cfg with a memory transport attached. *tp stays
 * valid until the connection is dropped or freed. */
static inline redtls_conn *unit_mem_conn(redtls_config *cfg, redtls_status at_end, redtls__transport **tp)
{
    redtls_conn *conn = NULL;
    redtls__transport *t = NULL;
    assert_status(redtls_conn_new(cfg, &conn), REDTLS_OK);
    assert_status(redtls__mem_transport(&t, at_end), REDTLS_OK);
    assert_status(redtls__conn_attach(conn, t, 0), REDTLS_OK);
    assert_true(redtls_conn_is_connected(conn));
    *tp = t;
    return conn;
}

static inline void unit_push(redtls__transport *t, const char *s)
{
    assert_status(redtls__mem_push(t, s, strlen(s)), REDTLS_OK);
}

static inline void unit_pushn(redtls__transport *t, const char *s, size_t n)
{
    assert_status(redtls__mem_push(t, s, n), REDTLS_OK);
}

/* Resident set size in bytes (from /proc/self/statm). */
static inline size_t unit_rss(void)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%lu %lu", &size, &resident), 2);
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* Runs a shell command quietly; returns its exit status. */
static inline int unit_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int unit_sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    cmd[0] = '(';
    int n = vsnprintf(cmd + 1, sizeof cmd - 24, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof cmd - 24);
    strcat(cmd, ") >/dev/null 2>&1");
    return system(cmd);
}

/* A fresh scratch folder under /tmp. */
static inline void unit_tmpdir(char *out, size_t outlen)
{
    assert_true(outlen > 32);
    snprintf(out, outlen, "/tmp/redtls-unit-XXXXXX");
    assert_non_null(mkdtemp(out));
}

static inline int unit_rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void unit_rmtree(const char *dir)
{
    if (dir && dir[0])
        nftw(dir, unit_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes a self-signed P-256 certificate and its key as DIR/NAME.crt and
 * DIR/NAME.key. */
static inline void unit_make_cert(const char *dir, const char *name)
{
    int rc = unit_sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                     "-keyout '%s/%s.key' -out '%s/%s.crt' -subj '/CN=redtls-unit-%s' -days 2",
                     dir, name, dir, name, name);
    if (rc != 0)
        fail_msg("openssl could not make a test certificate in %s", dir);
}

/* Makes DIR/ca.crt and ca.key (a P-256 test CA) and DIR/srv.crt and
 * srv.key, a server certificate it signed for DNS:redis.test. 0, or -1
 * when openssl failed. */
static inline int unit_make_ca_and_server(const char *dir)
{
    int rc = unit_sh("cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                     "-keyout ca.key -out ca.crt -subj /CN=redtls-unit-ca -days 2 "
                     "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign && "
                     "printf 'subjectAltName=DNS:redis.test\\nbasicConstraints=CA:FALSE\\n' > ext.cnf && "
                     "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                     "-keyout srv.key -out srv.csr -subj /CN=redis.test && "
                     "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
                     "-extfile ext.cnf -out srv.crt",
                     dir);
    return rc == 0 ? 0 : -1;
}

/* Reads a whole file into a NUL-terminated heap buffer. */
static inline char *unit_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static inline void unit_write_file(const char *path, const char *data)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, strlen(data), f), strlen(data));
    fclose(f);
}

#endif

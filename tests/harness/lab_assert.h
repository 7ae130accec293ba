/* cmocka assertions for redtls results that print the status name and the
 * handle's message when they fail. Include after <cmocka.h> and
 * <redtls/redtls.h>. */
#ifndef REDTLS_TESTS_LAB_ASSERT_H
#define REDTLS_TESTS_LAB_ASSERT_H

#include <string.h>

static inline void lab_report_status(int got, int want, const char *what, const char *msg, const char *file,
                                     int line)
{
    if (got != want) {
        print_error("%s:%d: %s returned %d (%s), expected %d (%s)\n    message: %s\n", file, line, what, got,
                    redtls_strerror((redtls_status)got), want, redtls_strerror((redtls_status)want),
                    msg != NULL ? msg : "(none)");
    }
}

/* assert_conn_status(conn, call, REDTLS_E_...) */
#define assert_conn_status(conn, call, want)                                                      \
    do {                                                                                          \
        int lab_got_ = (int)(call);                                                               \
        lab_report_status(lab_got_, (int)(want), #call, redtls_conn_errmsg(conn), __FILE__, __LINE__); \
        assert_int_equal(lab_got_, (int)(want));                                                  \
    } while (0)

#define assert_cfg_status(cfg, call, want)                                                          \
    do {                                                                                            \
        int lab_got_ = (int)(call);                                                                 \
        lab_report_status(lab_got_, (int)(want), #call, redtls_config_errmsg(cfg), __FILE__, __LINE__); \
        assert_int_equal(lab_got_, (int)(want));                                                    \
    } while (0)

/* assert_acl_status(acl, call, REDTLS_E_...) for a redtls_async_cluster
 * (needs <redtls/async_cluster.h>). */
#define assert_acl_status(acl, call, want)                                                                    \
    do {                                                                                                      \
        int lab_got_ = (int)(call);                                                                           \
        lab_report_status(lab_got_, (int)(want), #call, redtls_async_cluster_errmsg(acl), __FILE__, __LINE__); \
        assert_int_equal(lab_got_, (int)(want));                                                              \
    } while (0)

/* haystack (may be NULL) contains needle. */
#define assert_contains(haystack, needle)                                                 \
    do {                                                                                  \
        const char *lab_h_ = (haystack);                                                  \
        if (lab_h_ == NULL || strstr(lab_h_, (needle)) == NULL) {                         \
            print_error("%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,    \
                        lab_h_ != NULL ? lab_h_ : "(null)", (needle));                    \
            fail();                                                                       \
        }                                                                                 \
    } while (0)

#define assert_not_contains(haystack, needle)                                          \
    do {                                                                               \
        const char *lab_h_ = (haystack);                                               \
        if (lab_h_ != NULL && strstr(lab_h_, (needle)) != NULL) {                      \
            print_error("%s:%d: \"%s\" must not contain \"%s\"\n", __FILE__, __LINE__, \
                        lab_h_, (needle));                                             \
            fail();                                                                    \
        }                                                                              \
    } while (0)

/* A reply of the given type whose bytes equal the C string want. */
#define assert_reply_str(reply, type, want)                                                      \
    do {                                                                                         \
        const struct redisReply *lab_r_ = (reply);                                               \
        size_t lab_len_ = 0;                                                                     \
        const char *lab_s_ = redtls_reply_str(lab_r_, &lab_len_);                                \
        if (redtls_reply_type(lab_r_) != (type) || lab_s_ == NULL || lab_len_ != strlen(want) || \
            memcmp(lab_s_, (want), lab_len_) != 0) {                                             \
            print_error("%s:%d: reply type %d \"%s\", expected type %d \"%s\"\n", __FILE__,      \
                        __LINE__, redtls_reply_type(lab_r_), lab_s_ != NULL ? lab_s_ : "(null)", \
                        (int)(type), (want));                                                    \
            fail();                                                                              \
        }                                                                                        \
    } while (0)

#endif /* REDTLS_TESTS_LAB_ASSERT_H */

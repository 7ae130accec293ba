/* Client-side helpers shared by the integration.cluster_* tests: a redtls
 * configuration that reaches a lab cluster (CA, tokens, every node name
 * mapped to 127.0.0.1), and a status assertion for cluster handles. Include
 * after <cmocka.h>, <redtls/redtls.h>, lab_assert.h and lab_cluster.h. */
#ifndef REDTLS_TESTS_LAB_CLUSTER_CLIENT_H
#define REDTLS_TESTS_LAB_CLUSTER_CLIENT_H

#define assert_cl_status(cl, call, want)                                                                \
    do {                                                                                                \
        int lab_got_ = (int)(call);                                                                     \
        lab_report_status(lab_got_, (int)(want), #call, redtls_cluster_errmsg(cl), __FILE__, __LINE__); \
        assert_int_equal(lab_got_, (int)(want));                                                        \
    } while (0)

/* token / token_alt may be NULL; timeout_ms is the command timeout. */
static inline redtls_config *lab_cluster_client_config(const lab_cluster *c, const char *token,
                                                       const char *token_alt, unsigned timeout_ms)
{
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_ca_file(cfg, lab_cert("ca.crt")), REDTLS_OK);
    if (token)
        assert_cfg_status(cfg, redtls_config_set_token(cfg, token), REDTLS_OK);
    if (token_alt)
        assert_cfg_status(cfg, redtls_config_set_token_alt(cfg, token_alt), REDTLS_OK);
    for (size_t i = 0; i < c->n; i++)
        assert_cfg_status(cfg, redtls_config_add_resolve(cfg, c->node[i].hostname, 0, "127.0.0.1"), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_command_timeout_ms(cfg, timeout_ms), REDTLS_OK);
    return cfg;
}

#endif

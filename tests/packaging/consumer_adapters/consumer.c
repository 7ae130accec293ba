/* See consumer.h. */
#include "consumer.h"

#include <stdio.h>
#include <string.h>

static int failures;

void consumer_check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "%s: FAILED: %s\n", consumer_name, what);
        failures++;
    }
}

int consumer_failures(void)
{
    return failures;
}

redtls_async *consumer_new_handle(const char *url)
{
    redtls_config *cfg = NULL;
    redtls_async *ac = NULL;
    redtls_status st;

    if (redtls_config_new(&cfg) != REDTLS_OK)
        return NULL;
    st = redtls_config_set_url(cfg, url);
    if (st == REDTLS_OK)
        st = redtls_async_new(cfg, &ac);
    if (st != REDTLS_OK)
        fprintf(stderr, "%s: %s: %s: %s\n", consumer_name, url, redtls_strerror(st), redtls_config_errmsg(cfg));
    redtls_config_free(cfg);
    return ac;
}

redtls_async_cluster *consumer_new_cluster(const char *url, const char *seeds)
{
    redtls_config *cfg = NULL;
    redtls_async_cluster *acl = NULL;
    redtls_status st;

    if (redtls_config_new(&cfg) != REDTLS_OK)
        return NULL;
    st = redtls_config_set_url(cfg, url);
    if (st == REDTLS_OK)
        st = redtls_async_cluster_new(cfg, seeds, &acl);
    if (st != REDTLS_OK)
        fprintf(stderr, "%s: %s %s: %s: %s\n", consumer_name, url, seeds, redtls_strerror(st),
                redtls_config_errmsg(cfg));
    redtls_config_free(cfg);
    return acl;
}

static void on_pong(redtls_async *ac, redtls_status st, struct redisReply *reply, void *userdata)
{
    struct consumer_ping *p = userdata;
    size_t len = 0;
    const char *s = redtls_reply_str(reply, &len);

    if (st != REDTLS_OK)
        fprintf(stderr, "%s: PING: %s: %s\n", consumer_name, redtls_strerror(st), redtls_async_errmsg(ac));
    p->replied++;
    p->pong = st == REDTLS_OK && redtls_reply_type(reply) == REDTLS_REPLY_STATUS && s != NULL && len == 4 &&
              memcmp(s, "PONG", 4) == 0;
    redtls_reply_free(reply);
    redtls_async_free(ac); /* from its own callback: the loop then has nothing left to do */
    p->ac = NULL;
}

void consumer_ping_issue(struct consumer_ping *p, redtls_async *ac)
{
    p->ac = ac;
    consumer_check(redtls_async_connect(ac, NULL, NULL) == REDTLS_OK, "connect started");
    /* Waits for the connection, within its own deadline. */
    consumer_check(redtls_async_command(ac, on_pong, p, "PING") == REDTLS_OK, "PING issued");
}

int consumer_ping_answered(const struct consumer_ping *p)
{
    int ok = p->replied == 1 && p->pong;
    consumer_check(ok, "PING answered PONG through the loop");
    return ok;
}

/* A minimal user of the libevent adapter: the header compiles in user
 * code under strict warnings, attach checks its arguments, freeing the
 * handle deletes what the adapter made (the base has no events left), and,
 * when REDTLS_PACKAGING_URL is set, a PING goes through the loop, the
 * handle being freed from its callback. Exits 0 on success. */
#include <redtls/async_libevent.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "consumer_libevent: FAILED: %s\n", what);
        failures++;
    }
}

static redtls_async *new_handle(const char *url)
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
        fprintf(stderr, "consumer_libevent: %s: %s: %s\n", url, redtls_strerror(st), redtls_config_errmsg(cfg));
    redtls_config_free(cfg);
    return ac;
}

struct ping {
    redtls_async *ac; /* NULL once freed */
    int replied;
    int pong;
};

static void on_pong(redtls_async *ac, redtls_status st, struct redisReply *reply, void *userdata)
{
    struct ping *p = userdata;
    size_t len = 0;
    const char *s = redtls_reply_str(reply, &len);

    if (st != REDTLS_OK)
        fprintf(stderr, "consumer_libevent: PING: %s: %s\n", redtls_strerror(st), redtls_async_errmsg(ac));
    p->replied++;
    p->pong = st == REDTLS_OK && redtls_reply_type(reply) == REDTLS_REPLY_STATUS && s != NULL && len == 4 &&
              memcmp(s, "PONG", 4) == 0;
    redtls_reply_free(reply);
    redtls_async_free(ac); /* from its own callback: the loop then has nothing left to do */
    p->ac = NULL;
}

static void ping(const char *url)
{
    struct ping p = {NULL, 0, 0};
    struct event_base *base = event_base_new();
    redtls_async *ac = new_handle(url);

    check(ac != NULL, "redtls_async_new with REDTLS_PACKAGING_URL");
    if (ac == NULL || base == NULL)
        return;
    check(redtls_async_attach_libevent(ac, base) == REDTLS_OK, "attach for PING");
    p.ac = ac;
    check(redtls_async_connect(ac, NULL, NULL) == REDTLS_OK, "connect started");
    /* Waits for the connection, within its own deadline. */
    check(redtls_async_command(ac, on_pong, &p, "PING") == REDTLS_OK, "PING issued");
    check(event_base_dispatch(base) == 1, "dispatch ends with no events left");
    check(p.replied == 1 && p.pong, "PING answered PONG through the loop");
    redtls_async_free(p.ac); /* NULL unless the loop ran out of work without an answer */
    event_base_free(base);
    if (p.replied == 1 && p.pong)
        printf("consumer_libevent: PING -> PONG through libevent\n");
}

int main(void)
{
    struct event_base *base = event_base_new();
    redtls_async *ac;
    const char *url = getenv("REDTLS_PACKAGING_URL");

    check(base != NULL, "event_base_new");
    if (base == NULL)
        return 1;
    ac = new_handle("rediss://cache.example.com:6380");
    check(ac != NULL, "redtls_async_new");
    check(redtls_async_attach_libevent(NULL, base) == REDTLS_E_INVALID, "attach(NULL, base) is REDTLS_E_INVALID");
    check(redtls_async_attach_libevent(ac, NULL) == REDTLS_E_INVALID, "attach(ac, NULL) is REDTLS_E_INVALID");
    check(redtls_async_attach_libevent(ac, base) == REDTLS_OK, "attach");
    check(redtls_async_attach_libevent(ac, base) == REDTLS_OK, "attach again (the first adapter is released)");
    redtls_async_free(ac);
    check(event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK) == 1, "no event left once the handle is freed");
    event_base_free(base);

    if (url != NULL && url[0] != '\0')
        ping(url);

    if (failures != 0)
        return 1;
    printf("consumer_libevent: ok (redtls %s, libevent %s)\n", redtls_version(), event_get_version());
    return 0;
}

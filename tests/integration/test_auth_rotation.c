/* AUTH tokens and zero-downtime rotation against a real TLS redis-server:
 * the ElastiCache-style walk old -> old+new -> new while a client keeps
 * running commands across reconnects, ACL users with two passwords, both
 * tokens wrong, a server without a password, live token updates, the
 * credential callback, and NOAUTH recovery. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <redtls/redtls.h>

#include "lab.h"
#include "lab_assert.h"
#include "lab_client.h"

#define OLD_TOKEN "rotation-OLD-token-4f1e2d"
#define NEW_TOKEN "rotation-NEW-token-9a8b7c"
#define ADMIN_PASS "rotation-admin-pass-77aa"
/* Stretched under valgrind: a process's first TLS handshake alone can
 * take 2 s there. */
#define TIMEOUT_MS (3000U * (unsigned)lab_time_scale())

static lab_server redis;   /* default user starts with OLD_TOKEN; "admin" ACL user */
static lab_server nopass;  /* no password at all */
static lab_server optional; /* asks for a client certificate, does not require one */

typedef struct events {
    int switched;
    int refreshed;
    int connected;
    char last[256]; /* detail of the last AUTH event */
} events;

static void on_event(void *ud, redtls_event_type type, const char *detail)
{
    events *ev = ud;
    if (type == REDTLS_EVENT_AUTH_TOKEN_SWITCHED)
        ev->switched++;
    else if (type == REDTLS_EVENT_AUTH_REFRESHED)
        ev->refreshed++;
    else {
        ev->connected += type == REDTLS_EVENT_CONNECTED;
        return;
    }
    snprintf(ev->last, sizeof ev->last, "%s", detail);
}

static int group_setup(void **state)
{
    (void)state;
    static const char *const admin[] = {"--user", "admin", "on", ">" ADMIN_PASS, "~*", "&*", "+@all", NULL};
    if (lab_init(80) != 0 || lab_certs(NULL) == NULL)
        return -1;
    if (lab_redis_start(&redis, &(lab_redis_opts){.tls = 1, .password = OLD_TOKEN, .extra = admin}) != 0)
        return -1;
    if (lab_redis_start(&optional, &(lab_redis_opts){.tls = 1, .password = OLD_TOKEN, .auth_clients = "optional"}) != 0)
        return -1;
    return lab_redis_start(&nopass, &(lab_redis_opts){.tls = 1});
}

static int group_teardown(void **state)
{
    (void)state;
    lab_stop(&redis);
    lab_stop(&nopass);
    lab_stop(&optional);
    return 0;
}

static redtls_config *base_cfg(uint16_t port)
{
    redtls_config *cfg = NULL;
    assert_int_equal(redtls_config_new(&cfg), REDTLS_OK);
    lab_client_protocol(cfg);
    assert_cfg_status(cfg, redtls_config_set_host(cfg, "localhost", port), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_ca_file(cfg, lab_cert("ca.crt")), REDTLS_OK);
    redtls_config_set_connect_timeout_ms(cfg, TIMEOUT_MS);
    redtls_config_set_handshake_timeout_ms(cfg, TIMEOUT_MS);
    redtls_config_set_command_timeout_ms(cfg, TIMEOUT_MS);
    return cfg;
}

static redtls_conn *open_conn(redtls_config *cfg)
{
    redtls_conn *c = NULL;
    assert_cfg_status(cfg, redtls_conn_new(cfg, &c), REDTLS_OK);
    return c;
}

/* The admin connection: ACL user "admin", used to walk the server through
 * the rotation. */
static redtls_conn *admin_conn(void)
{
    redtls_config *cfg = base_cfg(redis.port);
    redtls_config_set_user(cfg, "admin");
    redtls_config_set_token(cfg, ADMIN_PASS);
    redtls_conn *c = open_conn(cfg);
    redtls_config_free(cfg);
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
    return c;
}

static void admin_do(redtls_conn *admin, int argc, const char **argv)
{
    redisReply *r = NULL;
    assert_conn_status(admin, redtls_conn_command_argv(admin, argc, argv, NULL, &r), REDTLS_OK);
    if (r->type == REDIS_REPLY_ERROR)
        print_error("admin command %s failed: %s\n", argv[0], r->str);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    redtls_reply_free(r);
}

static void server_passwords(redtls_conn *admin, const char *add, const char *remove)
{
    char a[128], d[128];
    const char *argv[4] = {"ACL", "SETUSER", "default", NULL};
    if (add) {
        snprintf(a, sizeof a, ">%s", add);
        argv[3] = a;
        admin_do(admin, 4, argv);
    }
    if (remove) {
        snprintf(d, sizeof d, "<%s", remove);
        argv[3] = d;
        admin_do(admin, 4, argv);
    }
}

/* Runs `rounds` INCRs, reconnecting before every fourth one; counts
 * anything that is not an integer reply as a failed command. */
static redtls_conn *loop_admin; /* for server-side kills, when set */

/* Runs `rounds` INCRs and forces a new connection before every fourth:
 * alternately the server kills the client's connection (CLIENT KILL from
 * the admin connection; redtls must reconnect by itself) and the client
 * closes it. Anything that is not an integer reply is a failed command. */
static int client_loop(redtls_conn *c, int rounds, const char *key)
{
    int failed = 0;
    for (int i = 0; i < rounds; i++) {
        if (i % 8 == 0 && loop_admin) {
            const char *kill[] = {"CLIENT", "KILL", "USER", "default"};
            redisReply *k = NULL;
            if (redtls_conn_command_argv(loop_admin, 4, kill, NULL, &k) != REDTLS_OK)
                failed++;
            redtls_reply_free(k);
        } else if (i % 4 == 0) {
            redtls_conn_close(c);
        }
        redisReply *r = NULL;
        redtls_status st = redtls_conn_command(c, &r, "INCR %s", key);
        if (st != REDTLS_OK || r->type != REDIS_REPLY_INTEGER) {
            print_error("INCR failed: %s %s\n", redtls_strerror(st), st ? redtls_conn_errmsg(c) : r->str);
            failed++;
        }
        redtls_reply_free(r);
    }
    return failed;
}

/* The walk, with the client configured (first, second); returns the
 * events seen in each phase. */
static void rotation_walk(const char *first, const char *second, const char *key, int switched[3])
{
    redtls_conn *admin = admin_conn();
    events ev = {0};
    redtls_config *cfg = base_cfg(redis.port);
    assert_cfg_status(cfg, redtls_config_set_token(cfg, first), REDTLS_OK);
    assert_cfg_status(cfg, redtls_config_set_token_alt(cfg, second), REDTLS_OK);
    redtls_config_set_event_callback(cfg, on_event, &ev);
    redtls_conn *c = open_conn(cfg);
    redtls_config_free(cfg);
    loop_admin = admin;

    /* Phase 1: only the old token is valid (server as started). */
    assert_int_equal(client_loop(c, 20, key), 0);
    switched[0] = ev.switched;
    /* Phase 2 (ElastiCache ROTATE): both valid. */
    server_passwords(admin, NEW_TOKEN, NULL);
    assert_int_equal(client_loop(c, 20, key), 0);
    switched[1] = ev.switched - switched[0];
    /* Phase 3 (ElastiCache SET): only the new one. */
    server_passwords(admin, NULL, OLD_TOKEN);
    assert_int_equal(client_loop(c, 20, key), 0);
    switched[2] = ev.switched - switched[0] - switched[1];
    assert_int_equal(redtls_conn_preferred_token(c), strcmp(first, NEW_TOKEN) == 0 ? 1 : 2);
    /* The event names token numbers only. */
    assert_null(strstr(ev.last, OLD_TOKEN));
    assert_null(strstr(ev.last, NEW_TOKEN));

    loop_admin = NULL;
    /* 60 commands, a new connection before every fourth: 15 connections,
     * 8 of them after a server-side kill. */
    print_message("connections made: %d\n", ev.connected);
    assert_int_equal(ev.connected, 15);
    /* Back to the starting state for the next test. */
    server_passwords(admin, OLD_TOKEN, NEW_TOKEN);
    redisReply *r = NULL;
    assert_conn_status(c, redtls_conn_command(c, &r, "GET %s", key), REDTLS_OK);
    assert_string_equal(r->str, "60");
    redtls_reply_free(r);
    redtls_conn_free(c);
    redtls_conn_free(admin);
}

static void test_rotation_old_then_new(void **state)
{
    (void)state;
    int switched[3];
    rotation_walk(OLD_TOKEN, NEW_TOKEN, "rot:a", switched);
    /* Old preferred: nothing to report until the old token is removed. */
    assert_int_equal(switched[0], 0);
    assert_int_equal(switched[1], 0);
    assert_int_equal(switched[2], 1);
}

static void test_rotation_new_then_old(void **state)
{
    (void)state;
    int switched[3];
    rotation_walk(NEW_TOKEN, OLD_TOKEN, "rot:b", switched);
    /* New preferred, deployed before the ROTATE: the first connection falls
     * back to the old token once, then sticks to it while it works; the
     * SET phase switches back to the new token once. */
    assert_int_equal(switched[0], 1);
    assert_int_equal(switched[1], 0);
    assert_int_equal(switched[2], 1);
}

static void test_rotation_deployed_during_window(void **state)
{
    (void)state;
    redtls_conn *admin = admin_conn();
    server_passwords(admin, NEW_TOKEN, NULL);
    events ev = {0};
    redtls_config *cfg = base_cfg(redis.port);
    redtls_config_set_token(cfg, NEW_TOKEN);
    redtls_config_set_token_alt(cfg, OLD_TOKEN);
    redtls_config_set_event_callback(cfg, on_event, &ev);
    redtls_conn *c = open_conn(cfg);
    redtls_config_free(cfg);
    assert_int_equal(client_loop(c, 12, "rot:c"), 0);
    server_passwords(admin, NULL, OLD_TOKEN);
    assert_int_equal(client_loop(c, 12, "rot:c"), 0);
    assert_int_equal(ev.switched, 0);
    assert_int_equal(redtls_conn_preferred_token(c), 1);
    server_passwords(admin, OLD_TOKEN, NEW_TOKEN);
    redtls_conn_free(c);
    redtls_conn_free(admin);
}

static void test_acl_user_two_passwords(void **state)
{
    (void)state;
    redtls_conn *admin = admin_conn();
    const char *mk[] = {"ACL", "SETUSER", "app", "on", ">app-pass-one-1111", ">app-pass-two-2222", "~*", "+@all"};
    admin_do(admin, 8, mk);
    const char *tokens[] = {"app-pass-one-1111", "app-pass-two-2222"};
    for (int i = 0; i < 2; i++) {
        redtls_config *cfg = base_cfg(redis.port);
        redtls_config_set_user(cfg, "app");
        redtls_config_set_token(cfg, tokens[i]);
        redtls_conn *c = open_conn(cfg);
        redtls_config_free(cfg);
        assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
        redisReply *r = NULL;
        assert_conn_status(c, redtls_conn_command(c, &r, "ACL WHOAMI"), REDTLS_OK);
        assert_string_equal(r->str, "app");
        redtls_reply_free(r);
        redtls_conn_free(c);
    }
    /* Wrong token first, right one second: fallback within the ACL user. */
    events ev = {0};
    redtls_config *cfg = base_cfg(redis.port);
    redtls_config_set_user(cfg, "app");
    redtls_config_set_token(cfg, "app-pass-WRONG-0000");
    redtls_config_set_token_alt(cfg, tokens[1]);
    redtls_config_set_event_callback(cfg, on_event, &ev);
    redtls_conn *c = open_conn(cfg);
    redtls_config_free(cfg);
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
    assert_int_equal(ev.switched, 1);
    assert_string_equal(ev.last, "token 2 accepted, token 1 refused");
    redtls_conn_free(c);

    /* Wrong user. */
    cfg = base_cfg(redis.port);
    redtls_config_set_user(cfg, "nosuchuser");
    redtls_config_set_token(cfg, tokens[0]);
    c = open_conn(cfg);
    redtls_config_free(cfg);
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_E_AUTH);
    assert_contains(redtls_conn_errmsg(c), "WRONGPASS");
    assert_null(strstr(redtls_conn_errmsg(c), tokens[0]));
    assert_int_equal(redtls_conn_is_connected(c), 0);
    redtls_conn_free(c);
    redtls_conn_free(admin);
}

static void test_both_tokens_wrong(void **state)
{
    (void)state;
    const char *bad1 = "bad-token-one-ZZZZ", *bad2 = "bad-token-two-YYYY";
    redtls_config *cfg = base_cfg(redis.port);
    redtls_config_set_token(cfg, bad1);
    redtls_config_set_token_alt(cfg, bad2);
    redtls_conn *c = open_conn(cfg);
    redtls_config_free(cfg);
    long long t0 = lab_now_ms();
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_E_AUTH);
    /* No retry storm: one attempt per token, well inside a second (ten
     * under valgrind). */
    assert_true(lab_now_ms() - t0 < 1000LL * lab_time_scale());
    const char *msg = redtls_conn_errmsg(c);
    assert_contains(msg, "both tokens");
    assert_contains(msg, "WRONGPASS");
    assert_null(strstr(msg, bad1));
    assert_null(strstr(msg, bad2));
    assert_null(strstr(msg, "bad-token"));
    assert_int_equal(redtls_conn_is_connected(c), 0);
    redtls_conn_free(c);
}

static void test_server_without_password(void **state)
{
    (void)state;
    /* Documented: a token for a server that has no password is a
     * configuration mistake reported as REDTLS_E_AUTH, not ignored. */
    redtls_config *cfg = base_cfg(nopass.port);
    redtls_config_set_token(cfg, OLD_TOKEN);
    redtls_conn *c = open_conn(cfg);
    redtls_config_free(cfg);
    const char *proto = getenv("REDTLS_TEST_PROTOCOL");
    if (proto && strcmp(proto, "3") == 0) {
        /* README: under RESP3, HELLO 3 AUTH names the default user, which
         * a server without a password accepts with any password. */
        assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
        redtls_conn_free(c);
        return;
    }
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_E_AUTH);
    assert_contains(redtls_conn_errmsg(c), "without any password configured");
    assert_null(strstr(redtls_conn_errmsg(c), OLD_TOKEN));
    redtls_conn_free(c);
}

static long long client_id(redtls_conn *c)
{
    redisReply *r = NULL;
    assert_conn_status(c, redtls_conn_command(c, &r, "CLIENT ID"), REDTLS_OK);
    long long id = r->integer;
    redtls_reply_free(r);
    return id;
}

static void test_live_update_reauth(void **state)
{
    (void)state;
    redtls_conn *admin = admin_conn();
    events ev = {0};
    redtls_config *cfg = base_cfg(redis.port);
    redtls_config_set_token(cfg, OLD_TOKEN);
    redtls_config_set_event_callback(cfg, on_event, &ev);
    redtls_conn *c = open_conn(cfg);
    redtls_config_free(cfg);
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
    long long id = client_id(c);

    /* The server moves to the new token only; this connection stays
     * authenticated (Redis keeps it), the next one would not. */
    server_passwords(admin, NEW_TOKEN, OLD_TOKEN);
    assert_conn_status(c, redtls_conn_set_tokens(c, NEW_TOKEN, NULL, REDTLS_REAUTH_NOW), REDTLS_OK);
    assert_int_equal(ev.refreshed, 1);
    assert_int_equal(client_id(c), id); /* not dropped */

    /* A refused live update keeps the connection open and usable. */
    assert_conn_status(c, redtls_conn_set_tokens(c, "live-WRONG-token-1234", NULL, REDTLS_REAUTH_NOW), REDTLS_E_AUTH);
    assert_null(strstr(redtls_conn_errmsg(c), "live-WRONG"));
    assert_int_equal(client_id(c), id);

    /* Without REAUTH_NOW only later connections use the new token. */
    assert_conn_status(c, redtls_conn_set_tokens(c, NEW_TOKEN, NULL, 0), REDTLS_OK);
    assert_int_equal(ev.refreshed, 1);
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
    assert_int_not_equal(client_id(c), id);

    server_passwords(admin, OLD_TOKEN, NEW_TOKEN);
    redtls_conn_free(c);
    redtls_conn_free(admin);
}

typedef struct cred_state {
    int calls;
    int attempts[8];
    int wrong_first;
    int fail;
} cred_state;

static int credentials(void *ud, int attempt, char *user, size_t user_cap, char *token, size_t token_cap,
                       char *errbuf, size_t errbuf_cap)
{
    cred_state *s = ud;
    (void)user_cap;
    if (s->calls < 8)
        s->attempts[s->calls] = attempt;
    s->calls++;
    if (s->fail) {
        snprintf(errbuf, errbuf_cap, "token service unavailable");
        return -1;
    }
    user[0] = '\0';
    snprintf(token, token_cap, "%s", (s->wrong_first && attempt == 0) ? "callback-WRONG-token" : OLD_TOKEN);
    return 0;
}

static void test_credential_callback(void **state)
{
    (void)state;
    cred_state s = {0};
    redtls_config *cfg = base_cfg(redis.port);
    redtls_config_set_credential_callback(cfg, credentials, &s);
    redtls_conn *c = open_conn(cfg);
    redtls_config_free(cfg);
    for (int i = 0; i < 3; i++)
        assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
    assert_int_equal(s.calls, 3); /* once per connection */
    assert_int_equal(s.attempts[2], 0);

    s = (cred_state){.wrong_first = 1};
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
    assert_int_equal(s.calls, 2); /* asked again after the refusal */
    assert_int_equal(s.attempts[0], 0);
    assert_int_equal(s.attempts[1], 1);

    s = (cred_state){.fail = 1};
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_E_AUTH);
    assert_contains(redtls_conn_errmsg(c), "token service unavailable");
    redtls_conn_free(c);
}

static void test_noauth_reauth_once(void **state)
{
    (void)state;
    events ev = {0};
    redtls_config *cfg = base_cfg(redis.port);
    redtls_config_set_token(cfg, OLD_TOKEN);
    redtls_config_set_event_callback(cfg, on_event, &ev);
    redtls_conn *c = open_conn(cfg);
    redtls_config_free(cfg);
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
    redisReply *r = NULL;
    assert_conn_status(c, redtls_conn_command(c, &r, "DEL noauth:k"), REDTLS_OK);
    redtls_reply_free(r);
    /* RESET drops the connection back to the unauthenticated default user,
     * exactly the state of a server that came back with a password. */
    assert_conn_status(c, redtls_conn_command(c, &r, "RESET"), REDTLS_OK);
    redtls_reply_free(r);
    assert_conn_status(c, redtls_conn_command(c, &r, "INCR noauth:k"), REDTLS_OK);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 1); /* refused once, executed once */
    redtls_reply_free(r);
    assert_int_equal(ev.refreshed, 1);
    redtls_conn_free(c);
}

static void test_probe_noauth_is_not_a_reauth(void **state)
{
    (void)state;
    /* The server asks for a client certificate under TLS 1.3, so redtls
     * sends a PING before AUTH; the NOAUTH it gets back is expected and
     * must not cost an extra AUTH later. */
    events ev = {0};
    redtls_config *cfg = base_cfg(optional.port);
    redtls_config_set_token(cfg, OLD_TOKEN);
    redtls_config_set_event_callback(cfg, on_event, &ev);
    redtls_conn *c = open_conn(cfg);
    redtls_config_free(cfg);
    assert_conn_status(c, redtls_conn_connect(c), REDTLS_OK);
    redisReply *r = NULL;
    assert_conn_status(c, redtls_conn_command(c, &r, "INCR probe:k"), REDTLS_OK);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    redtls_reply_free(r);
    assert_int_equal(ev.refreshed, 0);
    redtls_conn_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotation_old_then_new),
        cmocka_unit_test(test_rotation_new_then_old),
        cmocka_unit_test(test_rotation_deployed_during_window),
        cmocka_unit_test(test_acl_user_two_passwords),
        cmocka_unit_test(test_both_tokens_wrong),
        cmocka_unit_test(test_server_without_password),
        cmocka_unit_test(test_live_update_reauth),
        cmocka_unit_test(test_credential_callback),
        cmocka_unit_test(test_noauth_reauth_once),
        cmocka_unit_test(test_probe_noauth_is_not_a_reauth),
    };
    return cmocka_run_group_tests_name("auth_rotation", tests, group_setup, group_teardown);
}

/* auth_rotation: walks a server through an AUTH token rotation while a
 * client configured with two tokens keeps working, and prints what redtls
 * does in each phase. The server is left as it was found.
 *
 *   auth_rotation 'rediss://:CURRENT-TOKEN@localhost:6380?cacert=ca.crt'
 *
 * The URL's token is the server's current password for the default user;
 * it is also used for the admin connection that changes the passwords
 * (ACL SETUSER, the Redis equivalent of ElastiCache's ROTATE and SET). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <redtls/redtls.h>

static void on_event(void *userdata, redtls_event_type type, const char *detail)
{
    (void)userdata;
    printf("    event %d: %s\n", (int)type, detail);
}

static redtls_conn *connect_url(const char *url, const char *token_alt, int with_events)
{
    redtls_config *cfg = NULL;
    redtls_conn *conn = NULL;
    if (redtls_config_new(&cfg) != REDTLS_OK)
        return NULL;
    if (redtls_config_set_url(cfg, url) != REDTLS_OK ||
        (token_alt && redtls_config_set_token_alt(cfg, token_alt) != REDTLS_OK) ||
        (with_events && redtls_config_set_event_callback(cfg, on_event, NULL) != REDTLS_OK) ||
        redtls_conn_new(cfg, &conn) != REDTLS_OK) {
        fprintf(stderr, "auth_rotation: configuration: %s\n", redtls_config_errmsg(cfg));
        redtls_config_free(cfg);
        return NULL;
    }
    redtls_config_free(cfg);
    return conn;
}

/* Runs one command; 0 on a non-error reply. */
static int run(redtls_conn *conn, const char *what, int argc, const char **argv)
{
    redisReply *r = NULL;
    redtls_status st = redtls_conn_command_argv(conn, argc, argv, NULL, &r);
    if (st != REDTLS_OK) {
        fprintf(stderr, "auth_rotation: %s: %s: %s\n", what, redtls_strerror(st), redtls_conn_errmsg(conn));
        return -1;
    }
    int failed = r->type == REDIS_REPLY_ERROR;
    if (failed)
        fprintf(stderr, "auth_rotation: %s: %s\n", what, r->str);
    redtls_reply_free(r);
    return failed ? -1 : 0;
}

static int set_password(redtls_conn *admin, char op, const char *token)
{
    char arg[300];
    snprintf(arg, sizeof arg, "%c%s", op, token);
    const char *argv[] = {"ACL", "SETUSER", "default", arg};
    return run(admin, op == '>' ? "add password" : "remove password", 4, argv);
}

/* The client's view of one phase: a fresh connection and one command. */
static int client_step(redtls_conn *app, const char *phase)
{
    printf("%s\n", phase);
    redtls_status st = redtls_conn_connect(app);
    if (st != REDTLS_OK) {
        fprintf(stderr, "auth_rotation: connect: %s: %s\n", redtls_strerror(st), redtls_conn_errmsg(app));
        return -1;
    }
    const char *incr[] = {"INCR", "auth_rotation:commands"};
    if (run(app, "INCR", 2, incr) != 0)
        return -1;
    printf("    connected and ran INCR; preferred token is now token %d\n", redtls_conn_preferred_token(app));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s 'rediss://:CURRENT-TOKEN@HOST:PORT?cacert=FILE'\n", argv[0]);
        return 2;
    }
    /* A new token for this run; the old one comes from the URL. */
    char new_token[64];
    unsigned char rnd[12] = {0};
    FILE *ur = fopen("/dev/urandom", "rb");
    if (!ur || fread(rnd, 1, sizeof rnd, ur) != sizeof rnd) {
        fprintf(stderr, "auth_rotation: cannot read /dev/urandom\n");
        if (ur)
            fclose(ur);
        return 1;
    }
    fclose(ur);
    int n = snprintf(new_token, sizeof new_token, "rotated-");
    for (size_t i = 0; i < sizeof rnd; i++)
        n += snprintf(new_token + n, sizeof new_token - (size_t)n, "%02x", rnd[i]);

    redtls_conn *admin = connect_url(argv[1], NULL, 0);
    redtls_conn *app = connect_url(argv[1], new_token, 1); /* token 1 = old, token 2 = new */
    int rc = 1;
    if (!admin || !app)
        goto out;
    if (redtls_conn_connect(admin) != REDTLS_OK) {
        fprintf(stderr, "auth_rotation: admin connect: %s\n", redtls_conn_errmsg(admin));
        goto out;
    }
    if (client_step(app, "phase 1: only the old token is valid (client has old + new)") != 0)
        goto out;
    if (set_password(admin, '>', new_token) != 0)
        goto out;
    if (client_step(app, "phase 2: ROTATE - old and new are both valid") != 0)
        goto out;

    /* Removing the old password needs its text. redtls has no getter that
     * hands a token back, so take it from the URL ("://:TOKEN@"). */
    const char *colon = strstr(argv[1], "://:");
    const char *at = colon ? strchr(colon + 4, '@') : NULL;
    if (!colon || !at || at - (colon + 4) >= 256) {
        fprintf(stderr, "auth_rotation: the URL must carry the token as ://:TOKEN@\n");
        goto out;
    }
    char old_token[256];
    memcpy(old_token, colon + 4, (size_t)(at - (colon + 4)));
    old_token[at - (colon + 4)] = '\0';

    if (set_password(admin, '<', old_token) != 0)
        goto out;
    if (client_step(app, "phase 3: SET - only the new token is valid") != 0)
        goto out;
    if (client_step(app, "phase 4: later connections go straight to the new token (no event)") != 0)
        goto out;
    rc = 0;

    printf("restoring the server's original password\n");
    if (set_password(admin, '>', old_token) != 0 || set_password(admin, '<', new_token) != 0)
        rc = 1;
out:
    redtls_conn_free(app);
    redtls_conn_free(admin);
    printf("%s\n", rc == 0 ? "rotation finished without a failed command" : "rotation failed");
    return rc;
}

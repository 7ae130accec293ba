/* lib/cluster/keys.c's static command table against a real redis-server,
 * over TLS: every command and subcommand COMMAND lists must be in the table
 * with the same "readonly" flag (keyless ones as NOKEYS), and our key
 * positions must match COMMAND GETKEYS for every keyed command (at several
 * argument counts) and for hand-written samples of each movable-key
 * command. COMMAND's full reply nests deeper than the reader allows
 * (REDTLS_MAX_REPLY_DEPTH), so the names come from COMMAND LIST and the
 * details from COMMAND INFO. This test compiles keys.c in (see
 * tests/CMakeLists.txt); it uses no other library internals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <redtls/redtls.h>

#include "keys.h"
#include "lab.h"
#include "lab_assert.h"

#define TOKEN "cluster-keys-Token-3f81c2"
#define MAX_CMDS 512
#define MAX_ARGS 24
#define MAX_KEYS 24
#define ARG_LEN 32
#define REPORT_MAX 8192

typedef struct cmd_info {
    char parent[ARG_LEN]; /* "" for a top-level command */
    char name[ARG_LEN];   /* the command, or the subcommand's own name */
    long long arity, first, last, step;
    int readonly, movable, nspecs, not_key, container;
    int have_info; /* 0: a container COMMAND INFO was not asked about */
} cmd_info;

static lab_server redis;
static redtls_conn *conn;
static cmd_info cmds[MAX_CMDS];
static size_t ncmds;

/* Mismatches, one per line, reported all at once. */
static char report[REPORT_MAX];
static size_t mismatches;

static void mismatch(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void mismatch(const char *fmt, ...)
{
    size_t used = strlen(report);
    va_list ap;
    va_start(ap, fmt);
    if (used + 2 < sizeof report) {
        report[used++] = '\n';
        report[used] = '\0';
        vsnprintf(report + used, sizeof report - used, fmt, ap);
    }
    va_end(ap);
    mismatches++;
}

static void reset_report(void)
{
    report[0] = '\0';
    mismatches = 0;
}

static int reply_is(const struct redisReply *r, const char *s)
{
    size_t len = 0;
    const char *p = redtls_reply_str(r, &len);
    return p != NULL && len == strlen(s) && memcmp(p, s, len) == 0;
}

static int has_flag(const struct redisReply *flags, const char *flag)
{
    for (size_t i = 0; i < redtls_reply_len(flags); i++)
        if (reply_is(redtls_reply_element(flags, i), flag))
            return 1;
    return 0;
}

/* A key spec in RESP2 is a flat array of names and values. */
static int spec_not_key(const struct redisReply *spec)
{
    for (size_t i = 0; i + 1 < redtls_reply_len(spec); i += 2)
        if (reply_is(redtls_reply_element(spec, i), "flags") && has_flag(redtls_reply_element(spec, i + 1), "not_key"))
            return 1;
    return 0;
}

/* "parent|name" or "name" into out (2 * ARG_LEN bytes). */
static void full_name(char *out, const cmd_info *ci)
{
    size_t p = strlen(ci->parent), n = strlen(ci->name);
    memcpy(out, ci->parent, p);
    if (p)
        out[p++] = '|';
    memcpy(out + p, ci->name, n + 1);
}

static cmd_info *find_cmd(const char *full, size_t len)
{
    for (size_t i = 0; i < ncmds; i++) {
        char name[2 * ARG_LEN];
        full_name(name, &cmds[i]);
        if (strlen(name) == len && memcmp(name, full, len) == 0)
            return &cmds[i];
    }
    return NULL;
}

/* One COMMAND INFO entry: name, arity, flags, first, last, step, ACL
 * categories, tips, key specs, subcommands. */
static void read_info(const struct redisReply *c)
{
    if (redtls_reply_type(c) != REDTLS_REPLY_ARRAY || redtls_reply_len(c) < 10)
        fail_msg("COMMAND INFO entry is not a 10-element array (Redis 7 expected)");
    size_t len = 0;
    const char *s = redtls_reply_str(redtls_reply_element(c, 0), &len);
    cmd_info *ci = s ? find_cmd(s, len) : NULL;
    if (ci == NULL) {
        fail_msg("COMMAND INFO answered for a command COMMAND LIST did not list");
        return;
    }
    ci->have_info = 1;
    ci->arity = redtls_reply_integer(redtls_reply_element(c, 1));
    const struct redisReply *flags = redtls_reply_element(c, 2);
    ci->readonly = has_flag(flags, "readonly");
    ci->movable = has_flag(flags, "movablekeys");
    ci->first = redtls_reply_integer(redtls_reply_element(c, 3));
    ci->last = redtls_reply_integer(redtls_reply_element(c, 4));
    ci->step = redtls_reply_integer(redtls_reply_element(c, 5));
    const struct redisReply *specs = redtls_reply_element(c, 8);
    ci->nspecs = (int)redtls_reply_len(specs);
    for (size_t i = 0; i < redtls_reply_len(specs); i++)
        ci->not_key |= spec_not_key(redtls_reply_element(specs, i));
}

static int is_keyed(const cmd_info *ci)
{
    return ci->first > 0 || ci->movable || ci->nspecs > 0;
}

static int container_has_keys(const cmd_info *parent)
{
    for (size_t i = 0; i < ncmds; i++)
        if (strcmp(cmds[i].parent, parent->name) == 0 && is_keyed(&cmds[i]))
            return 1;
    return 0;
}

/* COMMAND INFO for the listed commands (pick says which). */
static int command_info(int (*pick)(const cmd_info *))
{
    static char names[MAX_CMDS][2 * ARG_LEN];
    static const char *argv[MAX_CMDS + 2];
    int argc = 0;
    argv[argc++] = "COMMAND";
    argv[argc++] = "INFO";
    for (size_t i = 0; i < ncmds; i++) {
        if (!pick(&cmds[i]))
            continue;
        full_name(names[i], &cmds[i]);
        argv[argc++] = names[i];
    }
    if (argc == 2)
        return 0;
    struct redisReply *r = NULL;
    if (redtls_conn_command_argv(conn, argc, argv, NULL, &r) != REDTLS_OK ||
        redtls_reply_type(r) != REDTLS_REPLY_ARRAY || redtls_reply_len(r) != (size_t)argc - 2) {
        print_error("COMMAND INFO: %s\n", redtls_conn_errmsg(conn));
        redtls_reply_free(r);
        return -1;
    }
    for (size_t i = 0; i < redtls_reply_len(r); i++)
        read_info(redtls_reply_element(r, i));
    redtls_reply_free(r);
    return 0;
}

static int pick_plain(const cmd_info *ci)
{
    return !ci->container;
}

/* A container's COMMAND INFO lists its subcommands' key specs, which nest
 * deeper than the reader allows (REDTLS_MAX_REPLY_DEPTH): only containers
 * whose subcommands have no keys are asked about. */
static int pick_keyless_container(const cmd_info *ci)
{
    return ci->container && !container_has_keys(ci);
}

static int group_setup(void **state)
{
    (void)state;
    if (lab_init(60) != 0 || lab_certs(NULL) == NULL)
        return -1;
    if (lab_redis_start(&redis, &(lab_redis_opts){.tls = 1, .password = TOKEN}) != 0)
        return -1;
    redtls_config *cfg = NULL;
    if (redtls_config_new(&cfg) != REDTLS_OK || redtls_config_set_host(cfg, "127.0.0.1", redis.port) != REDTLS_OK ||
        redtls_config_set_ca_file(cfg, lab_cert("ca.crt")) != REDTLS_OK ||
        redtls_config_set_token(cfg, TOKEN) != REDTLS_OK || redtls_conn_new(cfg, &conn) != REDTLS_OK) {
        redtls_config_free(cfg);
        return -1;
    }
    redtls_config_free(cfg);
    if (redtls_conn_connect(conn) != REDTLS_OK) {
        print_error("connect: %s\n", redtls_conn_errmsg(conn));
        return -1;
    }

    /* Every command and subcommand ("parent|sub"), flat. */
    const char *argv[] = {"COMMAND", "LIST"};
    struct redisReply *r = NULL;
    if (redtls_conn_command_argv(conn, 2, argv, NULL, &r) != REDTLS_OK || redtls_reply_type(r) != REDTLS_REPLY_ARRAY ||
        redtls_reply_len(r) > MAX_CMDS) {
        print_error("COMMAND LIST: %s\n", redtls_conn_errmsg(conn));
        redtls_reply_free(r);
        return -1;
    }
    for (size_t i = 0; i < redtls_reply_len(r); i++) {
        size_t len = 0;
        const char *s = redtls_reply_str(redtls_reply_element(r, i), &len);
        const char *bar = s ? memchr(s, '|', len) : NULL;
        cmd_info *ci = &cmds[ncmds++];
        memset(ci, 0, sizeof *ci);
        if (s == NULL || len >= ARG_LEN) {
            redtls_reply_free(r);
            return -1;
        }
        if (bar) {
            snprintf(ci->parent, sizeof ci->parent, "%.*s", (int)(bar - s), s);
            snprintf(ci->name, sizeof ci->name, "%.*s", (int)(len - (size_t)(bar - s) - 1), bar + 1);
        } else {
            snprintf(ci->name, sizeof ci->name, "%.*s", (int)len, s);
        }
    }
    redtls_reply_free(r);
    for (size_t i = 0; i < ncmds; i++)
        for (size_t j = 0; j < ncmds && !cmds[i].parent[0]; j++)
            if (strcmp(cmds[j].parent, cmds[i].name) == 0)
                cmds[i].container = 1;
    if (command_info(pick_plain) != 0 || command_info(pick_keyless_container) != 0)
        return -1;
    return ncmds > 200 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    redtls_conn_free(conn);
    lab_stop(&redis);
    return 0;
}

/* argv for a command: its name(s), then "k<i>" up to argc. The strings
 * live in store. */
static int make_argv(const cmd_info *ci, int argc, const char **argv, char store[][ARG_LEN])
{
    int n = 0;
    if (ci->parent[0])
        argv[n++] = ci->parent;
    argv[n++] = ci->name;
    if (argc < n)
        argc = n;
    for (; n < argc && n < MAX_ARGS; n++) {
        snprintf(store[n], ARG_LEN, "k%d", n);
        argv[n] = store[n];
    }
    return n;
}

static void join_argv(char *out, size_t cap, int argc, const char *const *argv, const size_t *lens)
{
    out[0] = '\0';
    for (int i = 0; i < argc; i++) {
        size_t used = strlen(out);
        int len = (int)(lens ? lens[i] : strlen(argv[i]));
        snprintf(out + used, cap - used, "%s%s%.*s%s", i ? " " : "", len ? "" : "\"", len, argv[i], len ? "" : "\"");
    }
}

static void test_every_command_is_known(void **state)
{
    (void)state;
    reset_report();
    size_t keyed = 0, movable = 0, keyless = 0, containers = 0, no_info = 0;
    for (size_t i = 0; i < ncmds; i++) {
        const cmd_info *ci = &cmds[i];
        const char *argv[MAX_ARGS];
        char store[MAX_ARGS][ARG_LEN];
        long long want_argc = ci->arity < 0 ? -ci->arity : ci->arity;
        int argc = make_argv(ci, ci->container ? 1 : (int)want_argc, argv, store);
        unsigned flags = 0;
        size_t pos[MAX_KEYS];
        redtls__command_keys(argc, argv, NULL, pos, MAX_KEYS, &flags);
        char what[128];
        join_argv(what, sizeof what, argc, argv, NULL);

        if (!(flags & REDTLS__CMD_KNOWN)) {
            mismatch("%s: not in the table", what);
            continue;
        }
        if (ci->have_info && !!(flags & REDTLS__CMD_READONLY) != ci->readonly)
            mismatch("%s: READONLY %d, server readonly %d", what, !!(flags & REDTLS__CMD_READONLY), ci->readonly);
        if (ci->container) {
            containers++;
            no_info += !ci->have_info;
            unsigned want = container_has_keys(ci) ? REDTLS__CMD_MALFORMED : REDTLS__CMD_NOKEYS;
            if ((flags & (REDTLS__CMD_MALFORMED | REDTLS__CMD_NOKEYS)) != want)
                mismatch("%s (container alone): flags %u", what, flags);
        } else if (is_keyed(ci)) {
            keyed++;
            movable += ci->movable != 0;
            if (flags & REDTLS__CMD_NOKEYS)
                mismatch("%s: NOKEYS, but the server lists keys", what);
        } else {
            keyless++;
            if (!(flags & REDTLS__CMD_NOKEYS))
                mismatch("%s: the server lists no keys, flags %u", what, flags);
        }
    }
    print_message("%zu commands and subcommands checked: %zu keyed (%zu movable), %zu keyless, %zu containers (%zu "
                  "with keyed subcommands, whose COMMAND INFO nests too deep to read its flags)\n",
                  ncmds, keyed, movable, keyless, containers, no_info);
    if (mismatches)
        fail_msg("%zu mismatches:%s", mismatches, report);
    assert_true(keyed > 150 && movable >= 20 && keyless > 100);
}

/* Our keys for argv, as argument strings; returns the count, or -1 when
 * the table says MALFORMED. */
static int our_keys(int argc, const char *const *argv, const size_t *lens, const char **out, size_t *out_lens,
                    unsigned *flags)
{
    size_t pos[MAX_KEYS];
    size_t n = redtls__command_keys(argc, argv, lens, pos, MAX_KEYS, flags);
    if (n > MAX_KEYS)
        fail_msg("more than %d keys", MAX_KEYS);
    if (*flags & REDTLS__CMD_MALFORMED)
        return -1;
    for (size_t i = 0; i < n; i++) {
        out[i] = argv[pos[i]];
        out_lens[i] = lens ? lens[pos[i]] : strlen(argv[pos[i]]);
    }
    return (int)n;
}

/* COMMAND GETKEYS argv: the key strings in *reply (freed by the caller);
 * the count, or -1 for an error reply. */
static int server_keys(int argc, const char *const *argv, const size_t *lens, const char **out, size_t *out_lens,
                       struct redisReply **reply)
{
    const char *full[MAX_ARGS + 2] = {"COMMAND", "GETKEYS"};
    size_t full_lens[MAX_ARGS + 2] = {7, 7};
    for (int i = 0; i < argc; i++) {
        full[i + 2] = argv[i];
        full_lens[i + 2] = lens ? lens[i] : strlen(argv[i]);
    }
    *reply = NULL;
    assert_conn_status(conn, redtls_conn_command_argv(conn, argc + 2, full, full_lens, reply), REDTLS_OK);
    if (redtls_reply_type(*reply) == REDTLS_REPLY_ERROR)
        return -1;
    assert_int_equal(redtls_reply_type(*reply), REDTLS_REPLY_ARRAY);
    size_t n = redtls_reply_len(*reply);
    if (n > MAX_KEYS)
        fail_msg("GETKEYS returned %zu keys", n);
    for (size_t i = 0; i < n; i++)
        out[i] = redtls_reply_str(redtls_reply_element(*reply, i), &out_lens[i]);
    return (int)n;
}

static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

static void sort_keys(const char **k, size_t *len, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && key_cmp(k[j - 1], len[j - 1], k[j], len[j]) > 0; j--) {
            const char *t = k[j];
            size_t tl = len[j];
            k[j] = k[j - 1];
            len[j] = len[j - 1];
            k[j - 1] = t;
            len[j - 1] = tl;
        }
}

/* Same keys regardless of order (we list them in argument order, the
 * server in key-spec order, which differs for GEORADIUS ... STOREDIST a
 * STORE b). */
static int same_keys(const char **a, size_t *alen, int na, const char **b, size_t *blen, int nb)
{
    if (na != nb)
        return 0;
    sort_keys(a, alen, na);
    sort_keys(b, blen, nb);
    for (int i = 0; i < na; i++)
        if (key_cmp(a[i], alen[i], b[i], blen[i]) != 0)
            return 0;
    return 1;
}

static void keys_text(char *out, size_t cap, const char **k, const size_t *len, int n)
{
    if (n < 0) {
        snprintf(out, cap, "(error/malformed)");
        return;
    }
    snprintf(out, cap, "%s", n == 0 ? "(none)" : "");
    for (int i = 0; i < n; i++) {
        size_t used = strlen(out);
        snprintf(out + used, cap - used, "%s\"%.*s\"", i ? " " : "", (int)len[i], k[i]);
    }
}

static int name_eq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if ((*a | 0x20) != (*b | 0x20))
            return 0;
    return *a == *b;
}

/* Where we differ from COMMAND GETKEYS on purpose. PFMERGE dest without
 * sources is a valid command that writes dest, but 7.0's key-spec walk
 * gives up on it (the sources' spec starts past the last argument) and
 * GETKEYS answers with an error: we route it by dest. */
static const char *known_difference(int argc, const char *const *argv)
{
    if (argc == 2 && name_eq(argv[0], "pfmerge"))
        return "PFMERGE without sources: routed by its destination key";
    return NULL;
}

/* Compares one argv; returns 1 when it matched. */
static int compare_one(int argc, const char *const *argv, const size_t *lens)
{
    const char *ours[MAX_KEYS], *theirs[MAX_KEYS];
    size_t ours_len[MAX_KEYS], theirs_len[MAX_KEYS];
    unsigned flags = 0;
    struct redisReply *r = NULL;
    int n_ours = our_keys(argc, argv, lens, ours, ours_len, &flags);
    int n_theirs = server_keys(argc, argv, lens, theirs, theirs_len, &r);
    /* MALFORMED for us: the server must find no keys either (an error, or
     * none for EVAL and friends, whose keys are optional). */
    int ok = n_ours < 0 ? n_theirs <= 0
                        : n_theirs >= 0 && same_keys(ours, ours_len, n_ours, theirs, theirs_len, n_theirs);
    const char *why = ok ? NULL : known_difference(argc, argv);
    if (why) {
        print_message("known difference: %s\n", why);
        ok = 1;
    }
    if (!ok) {
        char what[256], a[256], b[256];
        join_argv(what, sizeof what, argc, argv, lens);
        keys_text(a, sizeof a, ours, ours_len, n_ours);
        keys_text(b, sizeof b, theirs, theirs_len, n_theirs);
        mismatch("%s: ours %s, COMMAND GETKEYS %s", what, a, b);
    }
    redtls_reply_free(r);
    return ok;
}

/* Shard channels: the server's GETKEYS answers "no key arguments" (their
 * key specs say NOT_KEY), so compare with the first/last/step it lists. */
static void compare_not_key(const cmd_info *ci, int argc, const char *const *argv)
{
    const char *ours[MAX_KEYS];
    size_t ours_len[MAX_KEYS];
    unsigned flags = 0;
    int n = our_keys(argc, argv, NULL, ours, ours_len, &flags);
    long long last = ci->last < 0 ? argc + ci->last : ci->last;
    int want = 0;
    for (long long i = ci->first; i <= last && i < argc; i += ci->step) {
        if (want >= n || ours[want] != argv[i]) {
            want = -1;
            break;
        }
        want++;
    }
    if (want != n) {
        char what[256];
        join_argv(what, sizeof what, argc, argv, NULL);
        mismatch("%s: ours %d keys, the server's first/last/step disagree", what, n);
    }
}

static void test_fixed_keys_match_getkeys(void **state)
{
    (void)state;
    reset_report();
    size_t compared = 0, commands = 0;
    for (size_t i = 0; i < ncmds; i++) {
        const cmd_info *ci = &cmds[i];
        if (ci->container || ci->movable || !is_keyed(ci))
            continue;
        commands++;
        int base = (int)(ci->arity < 0 ? -ci->arity : ci->arity);
        /* Variadic commands also with 1, 2 and 3 more arguments (MSET's
         * step, BLPOP's timeout after the keys). */
        for (int extra = 0; extra <= (ci->arity < 0 ? 3 : 0); extra++) {
            const char *argv[MAX_ARGS];
            char store[MAX_ARGS][ARG_LEN];
            int argc = make_argv(ci, base + extra, argv, store);
            if (ci->not_key)
                compare_not_key(ci, argc, argv);
            else
                compare_one(argc, argv, NULL);
            compared++;
        }
    }
    print_message("%zu keyed commands without movable keys compared with COMMAND GETKEYS in %zu argument lists\n",
                  commands, compared);
    if (mismatches)
        fail_msg("%zu mismatches:%s", mismatches, report);
    assert_true(commands > 150);
}

/* Hand-written argvs for every movable-key command; NULL-terminated. */
static const char *const samples[][MAX_ARGS] = {
    {"EVAL", "return 1", "0"},
    {"EVAL", "return 1", "3", "a", "b", "c", "x", "y"},
    {"EVAL", "return 1", "1", "a"},
    {"eval", "return 1", "2", "{t}a", "{t}b", "ARGV"},
    {"EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"},
    {"EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "2", "a", "b", "x"},
    {"EVAL_RO", "return 1", "0"},
    {"EVAL_RO", "return 1", "2", "a", "b"},
    {"EVALSHA_RO", "sha", "1", "a"},
    {"EVALSHA_RO", "sha", "0", "x"},
    {"FCALL", "f", "0"},
    {"FCALL", "f", "2", "a", "b", "x"},
    {"FCALL_RO", "f", "1", "a"},
    {"FCALL_RO", "f", "0", "x"},
    {"ZUNIONSTORE", "dest", "2", "a", "b", "WEIGHTS", "1", "2"},
    {"ZUNIONSTORE", "dest", "1", "a", "AGGREGATE", "MIN"},
    {"ZINTERSTORE", "dest", "3", "a", "b", "c"},
    {"ZINTERSTORE", "dest", "1", "a"},
    {"ZDIFFSTORE", "dest", "2", "a", "b"},
    {"ZDIFFSTORE", "dest", "1", "a"},
    {"ZUNION", "2", "a", "b", "WITHSCORES"},
    {"ZUNION", "1", "a"},
    {"ZINTER", "3", "a", "b", "c"},
    {"ZINTER", "1", "a", "WEIGHTS", "2"},
    {"ZDIFF", "2", "a", "b"},
    {"ZDIFF", "1", "a", "WITHSCORES"},
    {"ZINTERCARD", "2", "a", "b", "LIMIT", "5"},
    {"ZINTERCARD", "1", "a"},
    {"SINTERCARD", "2", "a", "b"},
    {"SINTERCARD", "3", "a", "b", "c", "LIMIT", "1"},
    {"LMPOP", "2", "a", "b", "LEFT"},
    {"LMPOP", "1", "a", "RIGHT", "COUNT", "2"},
    {"ZMPOP", "1", "a", "MIN"},
    {"ZMPOP", "2", "a", "b", "MAX", "COUNT", "3"},
    {"BLMPOP", "0", "2", "a", "b", "LEFT"},
    {"BLMPOP", "1.5", "1", "a", "RIGHT", "COUNT", "2"},
    {"BZMPOP", "0", "1", "a", "MIN"},
    {"BZMPOP", "2", "3", "a", "b", "c", "MAX"},
    {"XREAD", "STREAMS", "a", "0"},
    {"XREAD", "COUNT", "1", "BLOCK", "0", "STREAMS", "a", "b", "0", "0"},
    {"xread", "streams", "a", "b", "c", "0", "0", "0"},
    {"XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "a", "b", "0", "0"},
    {"XREADGROUP", "GROUP", "g", "c", "NOACK", "STREAMS", "a", ">"},
    {"XREADGROUP", "GROUP", "streams", "STREAMS", "STREAMS", "s", ">"},
    {"SORT", "k"},
    {"SORT", "k", "BY", "x", "STORE", "dst"},
    {"SORT", "k", "LIMIT", "0", "10", "GET", "#", "ALPHA", "STORE", "dst"},
    {"SORT", "k", "STORE", "a", "STORE", "b"},
    {"SORT", "k", "GET", "store", "DESC"},
    {"SORT_RO", "k"},
    {"SORT_RO", "k", "BY", "x", "GET", "#", "ALPHA"},
    {"MIGRATE", "10.0.0.1", "6379", "k", "0", "5000"},
    {"MIGRATE", "10.0.0.1", "6379", "", "0", "5000"},
    {"MIGRATE", "10.0.0.1", "6379", "", "0", "5000", "KEYS", "a", "b"},
    {"MIGRATE", "10.0.0.1", "6379", "", "0", "5000", "COPY", "REPLACE", "AUTH", "keys", "KEYS", "a", "b", "c"},
    {"MIGRATE", "10.0.0.1", "6379", "", "0", "5000", "AUTH2", "u", "keys", "KEYS", "a"},
    {"MIGRATE", "10.0.0.1", "6379", "k", "0", "5000", "COPY"},
    {"GEORADIUS", "k", "15", "37", "200", "km"},
    {"GEORADIUS", "k", "15", "37", "200", "km", "STORE", "dst"},
    {"GEORADIUS", "k", "15", "37", "200", "km", "WITHDIST", "COUNT", "5", "STOREDIST", "dst"},
    {"GEORADIUS", "k", "15", "37", "200", "km", "STOREDIST", "d1", "STORE", "d2"},
    {"GEORADIUS", "k", "15", "37", "200", "km", "STORE", "d1", "STORE", "d2"},
    {"GEORADIUSBYMEMBER", "k", "m", "100", "km", "STORE", "dst"},
    {"GEORADIUSBYMEMBER", "k", "m", "100", "km"},
    {"GEORADIUSBYMEMBER", "k", "STORE", "100", "km", "ASC", "STOREDIST", "dst"},
    /* Malformed for us, and the server finds no keys in them either. */
    {"EVAL", "return 1", "3", "a", "b"},
    {"EVAL", "return 1", "-1", "a"},
    {"ZUNIONSTORE", "dest", "0", "a"},
    {"ZUNION", "3", "a", "b"},
    {"MIGRATE", "10.0.0.1", "6379", "k", "0", "5000", "KEYS", "a"},
};

static int argv_count(const char *const *argv)
{
    int n = 0;
    while (n < MAX_ARGS && argv[n])
        n++;
    return n;
}

static void test_movable_keys_match_getkeys(void **state)
{
    (void)state;
    reset_report();
    size_t nsamples = sizeof samples / sizeof samples[0], matched = 0;
    for (size_t i = 0; i < nsamples; i++)
        matched += (size_t)compare_one(argv_count(samples[i]), samples[i], NULL);
    /* Every movable-key command the server lists has at least two. */
    size_t movable = 0;
    for (size_t i = 0; i < ncmds; i++) {
        if (!cmds[i].movable)
            continue;
        movable++;
        int have = 0;
        for (size_t j = 0; j < nsamples; j++)
            have += name_eq(samples[j][0], cmds[i].name);
        if (have < 2)
            mismatch("%s: %d sample(s), at least 2 wanted", cmds[i].name, have);
    }
    print_message("%zu samples of %zu movable-key commands compared with COMMAND GETKEYS, %zu matched\n", nsamples,
                  movable, matched);
    if (mismatches)
        fail_msg("%zu mismatches:%s", mismatches, report);
}

/* Binary-safe arguments travel to the server and through the table alike. */
static void test_binary_arguments(void **state)
{
    (void)state;
    reset_report();
    const char *mset[] = {"MSET", "a\0b", "1", "\xff{x}\r\n", "2"};
    const size_t mset_lens[] = {4, 3, 1, 6, 1};
    const char *zu[] = {"ZUNIONSTORE", "d\0", "2", "\0", "b", "WEIGHTS", "1", "2"};
    const size_t zu_lens[] = {11, 2, 1, 1, 1, 7, 1, 1};
    const char *xr[] = {"XREAD", "STREAMS", "s\0\0", "0"};
    const size_t xr_lens[] = {5, 7, 3, 1};
    compare_one(5, mset, mset_lens);
    compare_one(8, zu, zu_lens);
    compare_one(4, xr, xr_lens);
    if (mismatches)
        fail_msg("%zu mismatches:%s", mismatches, report);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_command_is_known),
        cmocka_unit_test(test_fixed_keys_match_getkeys),
        cmocka_unit_test(test_movable_keys_match_getkeys),
        cmocka_unit_test(test_binary_arguments),
    };
    return cmocka_run_group_tests_name("cluster_keys", tests, group_setup, group_teardown);
}

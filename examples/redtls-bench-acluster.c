/*
 * redtls-bench --async --cluster: throughput of the asynchronous cluster
 * client (redtls/async_cluster.h) on its built-in loop. One cluster handle
 * per -c keeps --inflight commands in flight; each reply issues the next
 * command. Replies from different nodes come back in any order, so each
 * command carries the index of its issue time.
 */
#include <stdlib.h>
#include <string.h>

#include <redtls/async_cluster.h>

#include "redtls-bench.h"

struct acl_bench {
    const struct bench_options *o;
    redtls_async_cluster **cls;
    long ncls;
    struct prepared_cmd cmds[MAX_TESTS];
    int ncmds, next_cmd;
    uint64_t rng;
    long requests, sent, done, errors;
    redtls_status failed;
    struct histogram *hist;
    uint64_t *issued_at; /* per token */
    long *free_tokens;
    long nfree;
};

static void fail(struct acl_bench *b, redtls_async_cluster *acl, const char *what, redtls_status st)
{
    if (b->failed == REDTLS_OK) {
        const char *detail = redtls_async_cluster_errmsg(acl);
        fprintf(stderr, "redtls-bench: %s: %s\n", what, *detail ? detail : redtls_strerror(st));
        b->failed = st;
    }
}

static void on_reply(redtls_async_cluster *acl, redtls_status st, struct redisReply *reply, void *ud);

static int issue_one(struct acl_bench *b, redtls_async_cluster *acl)
{
    struct prepared_cmd *p = &b->cmds[b->next_cmd];
    if (++b->next_cmd == b->ncmds)
        b->next_cmd = 0;
    randomize_key(p, &b->rng, (uint64_t)b->o->keyspace);
    long t = b->free_tokens[--b->nfree];
    b->issued_at[t] = now_ns();
    redtls_status st =
        redtls_async_cluster_command_argv(acl, 0, p->argc, p->argv, p->argvlen, on_reply, (void *)(intptr_t)t);
    if (st != REDTLS_OK) {
        b->free_tokens[b->nfree++] = t;
        fail(b, acl, "command", st);
        return -1;
    }
    b->sent++;
    return 0;
}

static struct acl_bench *the_bench; /* the callbacks' context (one run at a time) */

static void on_reply(redtls_async_cluster *acl, redtls_status st, struct redisReply *reply, void *ud)
{
    struct acl_bench *b = the_bench;
    long t = (long)(intptr_t)ud;
    b->free_tokens[b->nfree++] = t;
    if (st != REDTLS_OK) {
        fail(b, acl, "reply", st);
        return;
    }
    hist_record(b->hist, now_ns() - b->issued_at[t]);
    if (redtls_reply_type(reply) == REDTLS_REPLY_ERROR) {
        if (b->errors == 0) {
            size_t len = 0;
            const char *s = redtls_reply_str(reply, &len);
            fprintf(stderr, "redtls-bench: first error reply: %.*s\n", (int)(len > 200 ? 200 : len), s);
        }
        b->errors++;
    }
    redtls_reply_free(reply);
    b->done++;
    if (b->failed == REDTLS_OK && b->sent < b->requests)
        (void)issue_one(b, acl);
}

static void on_ready(redtls_async_cluster *acl, redtls_status st, void *ud)
{
    struct acl_bench *b = ud;
    if (st != REDTLS_OK)
        fail(b, acl, "cluster connect", st);
}

/* Runs every handle's loop in turn until none has work (one handle: just
 * its loop). */
static int run_all(struct acl_bench *b)
{
    for (;;) {
        int busy = 0;
        for (long i = 0; i < b->ncls; i++) {
            if (redtls_async_cluster_run(b->cls[i], b->ncls > 1 ? 1 : -1) != REDTLS_OK && b->ncls == 1)
                return -1;
            busy |= redtls_async_cluster_pending(b->cls[i]) > 0;
        }
        if (!busy || b->failed != REDTLS_OK)
            return b->failed == REDTLS_OK ? 0 : -1;
    }
}

int run_async_cluster_throughput(const struct bench_options *o, redtls_config *cfg, const char *url)
{
    struct acl_bench b;
    struct bench_options shown = *o;
    char *value = malloc((size_t)o->datasize + 1);
    long slots = o->inflight * o->conns;
    int rc = EXIT_DONE;

    memset(&b, 0, sizeof b);
    the_bench = &b;
    b.o = o;
    b.ncls = o->conns;
    b.rng = o->seed * 0x9E3779B97F4A7C15ULL + 1;
    b.cls = calloc((size_t)o->conns, sizeof *b.cls);
    b.hist = malloc(sizeof *b.hist);
    b.issued_at = calloc((size_t)slots, sizeof *b.issued_at);
    b.free_tokens = calloc((size_t)slots, sizeof *b.free_tokens);
    if (!value || !b.cls || !b.hist || !b.issued_at || !b.free_tokens) {
        fputs("redtls-bench: out of memory\n", stderr);
        rc = EXIT_CONNECT;
        goto out;
    }
    for (long t = 0; t < slots; t++)
        b.free_tokens[b.nfree++] = t;
    memset(value, 'x', (size_t)o->datasize);
    value[o->datasize] = '\0';
    for (long i = 0; i < o->conns; i++) {
        redtls_status st = redtls_async_cluster_new(cfg, NULL, &b.cls[i]);
        if (st != REDTLS_OK) {
            rc = config_failed(cfg, "cluster", st);
            goto out;
        }
        (void)redtls_async_cluster_connect(b.cls[i], on_ready, &b);
    }
    /* The map, and every master's connection (a PING to each slot range
     * would do; one command per node of the map is enough). */
    if (run_all(&b) != 0 || b.failed != REDTLS_OK) {
        rc = EXIT_CONNECT;
        goto out;
    }
    shown.pipeline = o->inflight;
    if (o->format == FORMAT_TABLE)
        printf("redtls-bench %s  %s  tls-cluster  async, builtin loop  handles %ld  in flight %ld  value %ld B  "
               "keyspace %ld\n%-16s %10s %12s %9s %9s %9s %10s %7s\n",
               redtls_version(), url, o->conns, o->inflight, o->datasize, o->keyspace, "test", "requests", "ops/s",
               "p50 us", "p99 us", "p99.9 us", "cpu us/op", "errors");
    else
        print_throughput_header(&shown, url, "tls-cluster");
    for (int t = 0; t < o->ntests; t++) {
        struct result res;
        memset(&res, 0, sizeof res);
        b.ncmds = 1;
        b.next_cmd = 0;
        prepare_cmd(&b.cmds[0], o->tests[t], value, (size_t)o->datasize, o->hash_tag);
        snprintf(res.test, sizeof res.test, "%s", test_names[o->tests[t]]);
        b.requests = o->requests;
        b.sent = b.done = b.errors = 0;
        memset(b.hist, 0, sizeof *b.hist);
        uint64_t cpu_start = cpu_ns(), t_start = now_ns();
        for (long k = 0; k < o->inflight && b.failed == REDTLS_OK; k++)
            for (long i = 0; i < o->conns && b.sent < b.requests && b.failed == REDTLS_OK; i++)
                (void)issue_one(&b, b.cls[i]);
        int r = b.failed == REDTLS_OK ? run_all(&b) : -1;
        uint64_t t_end = now_ns(), cpu_end = cpu_ns();
        if (r != 0 || b.failed != REDTLS_OK || b.done != b.requests) {
            if (b.failed == REDTLS_OK)
                fprintf(stderr, "redtls-bench: the loop ended after %ld of %ld replies\n", b.done, b.requests);
            rc = EXIT_CONNECT;
            goto out;
        }
        fill_result(&res, b.done, b.errors, b.hist, t_end - t_start, cpu_end - cpu_start);
        if (b.errors > 0)
            rc = EXIT_ERROR_REPLY;
        print_throughput(&shown, "tls-cluster", &res);
    }
out:
    if (b.cls)
        for (long i = 0; i < o->conns; i++)
            redtls_async_cluster_free(b.cls[i]);
    free(b.cls);
    free(b.hist);
    free(b.issued_at);
    free(b.free_tokens);
    free(value);
    the_bench = NULL;
    return rc;
}

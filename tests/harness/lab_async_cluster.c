/* The tally and the flow of the asynchronous cluster client's integration
 * tests; see lab_async_cluster.h. */
#include "lab_async_cluster.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lab.h"

/* ----- the tally ------------------------------------------------------------ */

lab_acl_tally *lab_acl_tally_new(size_t cap)
{
    lab_acl_tally *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->cmd = calloc(cap, sizeof *t->cmd);
    if (t->cmd == NULL) {
        free(t);
        return NULL;
    }
    t->cap = cap;
    return t;
}

void lab_acl_tally_free(lab_acl_tally *t)
{
    if (t != NULL)
        free(t->cmd);
    free(t);
}

void lab_acl_on_reply(redtls_async_cluster *acl, redtls_status st, struct redisReply *r, void *ud)
{
    lab_acl_cmd *c = ud;
    lab_acl_tally *t = c->tally;
    if (c->calls++ == 0)
        t->done++;
    c->st = st;
    c->done_ms = lab_now_ms();
    c->seq = ++t->seq;
    if ((unsigned)st < sizeof t->by_status / sizeof t->by_status[0])
        t->by_status[st]++;
    if ((st == REDTLS_OK) != (r != NULL))
        t->bad_reply++;
    if (r != NULL) {
        c->type = r->type;
        c->integer = r->integer;
        c->elements = r->elements;
        if (r->str != NULL)
            snprintf(c->str, sizeof c->str, "%.*s", (int)(r->len < 63 ? r->len : 63), r->str);
    }
    if (st != REDTLS_OK)
        snprintf(c->msg, sizeof c->msg, "%s", redtls_async_cluster_errmsg(acl));
    if (t->after != NULL)
        t->after(t, acl, c, r);
    redtls_reply_free(r);
}

/* The next record, counted before the call: a pass run from inside it
 * could call back. */
lab_acl_cmd *lab_acl_tally_reserve(lab_acl_tally *t)
{
    if (t->issued == t->cap) {
        fprintf(stderr, "lab_acl_issue: the tally holds %zu commands\n", t->cap);
        return NULL;
    }
    lab_acl_cmd *c = &t->cmd[t->issued];
    memset(c, 0, sizeof *c);
    c->tally = t;
    c->id = t->issued;
    c->issued_ms = lab_now_ms();
    t->issued++;
    return c;
}

void lab_acl_tally_unreserve(lab_acl_tally *t)
{
    if (t->issued > 0)
        t->issued--;
}

static redtls_status issued(lab_acl_tally *t, lab_acl_cmd *c, redtls_status st, size_t *id)
{
    if (st != REDTLS_OK) {
        lab_acl_tally_unreserve(t);
        return st;
    }
    if (id != NULL)
        *id = c->id;
    return REDTLS_OK;
}

redtls_status lab_acl_issue_argv(lab_acl_tally *t, redtls_async_cluster *acl, unsigned flags, int argc,
                                 const char **argv, size_t *id)
{
    lab_acl_cmd *c = lab_acl_tally_reserve(t);
    if (c == NULL)
        return REDTLS_E_NOMEM;
    return issued(t, c, redtls_async_cluster_command_argv(acl, flags, argc, argv, NULL, lab_acl_on_reply, c), id);
}

redtls_status lab_acl_issue_slot(lab_acl_tally *t, redtls_async_cluster *acl, unsigned slot, unsigned flags,
                                 int argc, const char **argv, size_t *id)
{
    lab_acl_cmd *c = lab_acl_tally_reserve(t);
    if (c == NULL)
        return REDTLS_E_NOMEM;
    return issued(t, c,
                  redtls_async_cluster_command_slot(acl, slot, flags, argc, argv, NULL, lab_acl_on_reply, c), id);
}

redtls_status lab_acl_issue_node(lab_acl_tally *t, redtls_async_cluster *acl, const char *node, unsigned flags,
                                 int argc, const char **argv, size_t *id)
{
    lab_acl_cmd *c = lab_acl_tally_reserve(t);
    if (c == NULL)
        return REDTLS_E_NOMEM;
    return issued(t, c,
                  redtls_async_cluster_command_node(acl, node, flags, argc, argv, NULL, lab_acl_on_reply, c), id);
}

redtls_status lab_acl_issue(lab_acl_tally *t, redtls_async_cluster *acl, unsigned flags, const char *line,
                            size_t *id)
{
    char words[16][128];
    const char *argv[16];
    int argc = 0;
    for (const char *p = line; *p != '\0' && argc < 16;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n == 0)
            break;
        snprintf(words[argc], sizeof words[argc], "%.*s", (int)(n < 127 ? n : 127), p);
        argv[argc] = words[argc];
        argc++;
        p += n;
    }
    return lab_acl_issue_argv(t, acl, flags, argc, argv, id);
}

void lab_acl_on_connect(redtls_async_cluster *acl, redtls_status st, void *ud)
{
    lab_acl_conn *c = ud;
    c->calls++;
    c->st = st;
    c->done_ms = lab_now_ms();
    if (c->tally != NULL)
        c->seq = ++c->tally->seq;
    snprintf(c->msg, sizeof c->msg, "%s", st == REDTLS_OK ? "" : redtls_async_cluster_errmsg(acl));
}

size_t lab_acl_tally_owed(const lab_acl_tally *t)
{
    return t->issued - t->done;
}

int lab_acl_tally_check(const lab_acl_tally *t, const char *what)
{
    int bad = 0;
    for (size_t i = 0; i < t->issued; i++) {
        if (t->cmd[i].calls != 1) {
            if (bad++ < 10)
                fprintf(stderr, "%s: command %zu: callback called %d times (last status %s)\n", what, i,
                        t->cmd[i].calls, redtls_strerror(t->cmd[i].st));
        }
    }
    if (bad > 10)
        fprintf(stderr, "%s: ... %d commands in all not called exactly once\n", what, bad);
    if (t->bad_reply) {
        fprintf(stderr, "%s: %d callbacks had a reply that did not match their status\n", what, t->bad_reply);
        bad++;
    }
    return bad ? -1 : 0;
}

int lab_acl_run_all(redtls_async_cluster *acl, const lab_acl_tally *t, int ms)
{
    long long end = lab_now_ms() + ms;
    while (lab_acl_tally_owed(t) > 0) {
        long long left = end - lab_now_ms();
        if (left <= 0)
            return 0;
        /* OK with callbacks still owed would be the library's bug: do not
         * spin on it, let the time run out. */
        if (redtls_async_cluster_run(acl, (int)left) == REDTLS_OK && lab_acl_tally_owed(t) > 0)
            poll(NULL, 0, 1);
    }
    return 1;
}

/* ----- the flow ---------------------------------------------------------- */

/* What a flow keeps per key beyond the public record. */
typedef struct flow_slot {
    lab_acl_flow *flow;
    size_t k;
    long long n;        /* SET: the value in flight */
    long long sent_ms;
    /* The read-back. */
    int read_done;
    redtls_status read_st;
    long long value;
    char read_err[128];
} flow_slot;

static flow_slot *slots_of(lab_acl_flow *f)
{
    return f->priv;
}

int lab_acl_flow_init(lab_acl_flow *f, redtls_async_cluster *acl, lab_acl_flow_mode mode, unsigned flags,
                      size_t window, size_t nkeys, const char *prefix, const unsigned *slots, size_t nslots)
{
    memset(f, 0, sizeof *f);
    f->acl = acl;
    f->mode = mode;
    f->flags = flags;
    f->window = window;
    f->nkeys = nkeys;
    f->keys = calloc(nkeys, sizeof *f->keys);
    f->priv = calloc(nkeys, sizeof(flow_slot));
    if (f->keys == NULL || f->priv == NULL) {
        lab_acl_flow_free(f);
        return -1;
    }
    flow_slot *s = slots_of(f);
    for (size_t k = 0; k < nkeys; k++) {
        s[k].flow = f;
        s[k].k = k;
        if (slots != NULL && nslots > 0) {
            unsigned want = slots[k % nslots];
            for (unsigned t = 0;; t++) {
                char tag[16];
                int n = snprintf(tag, sizeof tag, "t%u", t);
                if (redtls_cluster_key_slot(tag, (size_t)n) == want) {
                    snprintf(f->keys[k].name, sizeof f->keys[k].name, "%s{%s}%zu", prefix, tag, k);
                    break;
                }
            }
        } else {
            snprintf(f->keys[k].name, sizeof f->keys[k].name, "%s:%zu", prefix, k);
        }
    }
    return 0;
}

void lab_acl_flow_free(lab_acl_flow *f)
{
    free(f->keys);
    free(f->priv);
    f->keys = NULL;
    f->priv = NULL;
}

static void flow_fill(lab_acl_flow *f);

static void flow_on_reply(redtls_async_cluster *acl, redtls_status st, struct redisReply *r, void *ud)
{
    flow_slot *s = ud;
    lab_acl_flow *f = s->flow;
    lab_acl_flow_key *key = &f->keys[s->k];
    long long dt = lab_now_ms() - s->sent_ms;
    key->busy = 0;
    f->in_flight--;
    f->ops++;
    if (dt > f->max_latency_ms)
        f->max_latency_ms = dt;
    if ((unsigned)st < sizeof f->by_status / sizeof f->by_status[0])
        f->by_status[st]++;
    const char *err = NULL;
    if (st == REDTLS_OK && r != NULL && f->mode == LAB_ACL_FLOW_INCR && r->type == REDIS_REPLY_INTEGER) {
        key->acked++;
        f->ok++;
    } else if (st == REDTLS_OK && r != NULL && f->mode == LAB_ACL_FLOW_SET && r->type == REDIS_REPLY_STATUS) {
        if (s->n > key->acked)
            key->acked = s->n;
        f->ok++;
    } else if (st == REDTLS_E_OUTCOME_UNKNOWN || st == REDTLS_E_COMMAND_TIMEOUT) {
        /* May have run. */
        key->unknown++;
        if (st == REDTLS_E_OUTCOME_UNKNOWN)
            f->unknown++;
        else
            f->timeouts++;
        err = redtls_async_cluster_errmsg(acl);
    } else {
        f->failed++;
        err = st == REDTLS_OK && r != NULL && r->str != NULL ? r->str : redtls_async_cluster_errmsg(acl);
    }
    if (err != NULL && f->first_error[0] == '\0')
        snprintf(f->first_error, sizeof f->first_error, "%s %s: %s: %s", f->mode == LAB_ACL_FLOW_INCR ? "INCR" : "SET",
                 key->name, redtls_strerror(st), err);
    redtls_reply_free(r);
    flow_fill(f);
}

/* Issues one command on the next key with nothing in flight. 1: issued,
 * 0: none free or refused. */
static int flow_issue_one(lab_acl_flow *f)
{
    flow_slot *slots = slots_of(f);
    size_t k = f->nkeys;
    for (size_t tries = 0; tries < f->nkeys; tries++) {
        size_t c = f->next++ % f->nkeys;
        if (!f->keys[c].busy) {
            k = c;
            break;
        }
    }
    if (k == f->nkeys)
        return 0;
    lab_acl_flow_key *key = &f->keys[k];
    flow_slot *s = &slots[k];
    char num[32];
    key->busy = 1;
    key->issued++;
    s->n = key->issued;
    s->sent_ms = lab_now_ms();
    f->in_flight++;
    snprintf(num, sizeof num, "%lld", s->n);
    const char *incr[] = {"INCR", key->name};
    const char *set[] = {"SET", key->name, num};
    redtls_status st = f->mode == LAB_ACL_FLOW_INCR
                           ? redtls_async_cluster_command_argv(f->acl, f->flags, 2, incr, NULL, flow_on_reply, s)
                           : redtls_async_cluster_command_argv(f->acl, f->flags, 3, set, NULL, flow_on_reply, s);
    if (st != REDTLS_OK) {
        key->busy = 0;
        key->issued--;
        f->in_flight--;
        f->refused++;
        if (f->first_error[0] == '\0')
            snprintf(f->first_error, sizeof f->first_error, "issue %s refused: %s: %s", key->name,
                     redtls_strerror(st), redtls_async_cluster_errmsg(f->acl));
        return 0;
    }
    return 1;
}

static void flow_fill(lab_acl_flow *f)
{
    while (!f->stop && !f->hold && f->in_flight < f->window)
        if (!flow_issue_one(f))
            break;
}

static void delete_done(redtls_async_cluster *acl, redtls_status st, struct redisReply *r, void *ud)
{
    flow_slot *s = ud;
    s->read_done = 1;
    s->read_st = st;
    if (st == REDTLS_OK && r != NULL && r->type == REDIS_REPLY_ERROR)
        snprintf(s->read_err, sizeof s->read_err, "%s", r->str);
    else if (st != REDTLS_OK)
        snprintf(s->read_err, sizeof s->read_err, "%s", redtls_async_cluster_errmsg(acl));
    redtls_reply_free(r);
}

static void read_done(redtls_async_cluster *acl, redtls_status st, struct redisReply *r, void *ud)
{
    flow_slot *s = ud;
    s->read_done = 1;
    s->read_st = st;
    s->value = 0;
    if (st == REDTLS_OK && r != NULL && r->type == REDIS_REPLY_STRING)
        s->value = atoll(r->str);
    else if (st == REDTLS_OK && r != NULL && r->type != REDIS_REPLY_NIL)
        snprintf(s->read_err, sizeof s->read_err, "reply type %d %s", r->type, r->str != NULL ? r->str : "");
    else if (st != REDTLS_OK)
        snprintf(s->read_err, sizeof s->read_err, "%s", redtls_async_cluster_errmsg(acl));
    redtls_reply_free(r);
}

/* Sends cmd (DEL or GET) for every key and runs until all answered. */
static int flow_each_key(lab_acl_flow *f, const char *cmd, redtls_async_cluster_reply_cb cb, int ms)
{
    flow_slot *slots = slots_of(f);
    for (size_t k = 0; k < f->nkeys; k++) {
        const char *argv[] = {cmd, f->keys[k].name};
        slots[k].read_done = 0;
        slots[k].read_err[0] = '\0';
        redtls_status st = redtls_async_cluster_command_argv(f->acl, 0, 2, argv, NULL, cb, &slots[k]);
        if (st != REDTLS_OK) {
            fprintf(stderr, "flow: %s %s refused: %s: %s\n", cmd, f->keys[k].name, redtls_strerror(st),
                    redtls_async_cluster_errmsg(f->acl));
            return -1;
        }
    }
    long long end = lab_now_ms() + ms;
    for (;;) {
        size_t left = 0;
        for (size_t k = 0; k < f->nkeys; k++)
            left += !slots[k].read_done;
        if (left == 0)
            break;
        if (lab_now_ms() >= end) {
            fprintf(stderr, "flow: %zu %s commands unanswered after %d ms\n", left, cmd, ms);
            return -1;
        }
        if (redtls_async_cluster_run(f->acl, (int)(end - lab_now_ms())) == REDTLS_OK)
            poll(NULL, 0, 1);
    }
    int bad = 0;
    for (size_t k = 0; k < f->nkeys; k++) {
        if (slots[k].read_st != REDTLS_OK || slots[k].read_err[0] != '\0') {
            if (bad++ < 5)
                fprintf(stderr, "flow: %s %s: %s: %s\n", cmd, f->keys[k].name, redtls_strerror(slots[k].read_st),
                        slots[k].read_err);
        }
    }
    return bad ? -1 : 0;
}

int lab_acl_flow_reset(lab_acl_flow *f, int ms)
{
    return flow_each_key(f, "DEL", delete_done, ms);
}

void lab_acl_flow_start(lab_acl_flow *f)
{
    f->stop = 0;
    f->hold = 0;
    flow_fill(f);
}

void lab_acl_flow_run(lab_acl_flow *f, int ms)
{
    long long end = lab_now_ms() + ms;
    for (;;) {
        long long left = end - lab_now_ms();
        if (left <= 0)
            return;
        /* The window may have emptied (every command refused): refill. */
        flow_fill(f);
        if (redtls_async_cluster_run(f->acl, (int)left) == REDTLS_OK)
            poll(NULL, 0, (int)(left < 5 ? left : 5));
    }
}

static int flow_settle(lab_acl_flow *f, int ms)
{
    long long end = lab_now_ms() + ms;
    while (f->in_flight > 0) {
        long long left = end - lab_now_ms();
        if (left <= 0) {
            fprintf(stderr, "flow: %zu commands still in flight after %d ms\n", f->in_flight, ms);
            return -1;
        }
        if (redtls_async_cluster_run(f->acl, (int)left) == REDTLS_OK && f->in_flight > 0)
            poll(NULL, 0, 1);
    }
    return 0;
}

int lab_acl_flow_pause(lab_acl_flow *f, int ms)
{
    f->hold = 1;
    return flow_settle(f, ms);
}

void lab_acl_flow_resume(lab_acl_flow *f)
{
    f->hold = 0;
    flow_fill(f);
}

int lab_acl_flow_drain(lab_acl_flow *f, int ms)
{
    f->stop = 1;
    return flow_settle(f, ms);
}

void lab_acl_stats_line(const redtls_async_cluster *acl, char *buf, size_t cap)
{
    snprintf(buf, cap,
             "MOVED %llu ASK %llu TRYAGAIN/CLUSTERDOWN %llu node failures %llu refreshes %llu (rejected %llu) "
             "splits %llu",
             (unsigned long long)redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_MOVED),
             (unsigned long long)redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_ASK),
             (unsigned long long)redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_TRYAGAIN),
             (unsigned long long)redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_NODE_FAILURES),
             (unsigned long long)redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_REFRESHES),
             (unsigned long long)redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_REFRESH_REJECTED),
             (unsigned long long)redtls_async_cluster_stat_get(acl, REDTLS_CLUSTER_STAT_SPLITS));
}

int lab_acl_flow_verify(lab_acl_flow *f, const char *what, long long *lost, long long *extra)
{
    *lost = 0;
    *extra = 0;
    if (f->in_flight > 0) {
        fprintf(stderr, "flow: verify with %zu commands in flight\n", f->in_flight);
        return -1;
    }
    if (flow_each_key(f, "GET", read_done, 20000) != 0)
        return -1;
    flow_slot *slots = slots_of(f);
    long long acked = 0, issued = 0;
    for (size_t k = 0; k < f->nkeys; k++) {
        const lab_acl_flow_key *key = &f->keys[k];
        long long v = slots[k].value;
        issued += key->issued;
        if (f->mode == LAB_ACL_FLOW_INCR) {
            acked += key->acked;
            if (v < key->acked)
                *lost += key->acked - v;
            if (v > key->acked + key->unknown)
                *extra += v - key->acked - key->unknown;
        } else {
            acked += key->acked > 0;
            if (v < key->acked)
                (*lost)++;
            if (v > key->issued)
                (*extra)++;
        }
    }
    char stats[512];
    lab_acl_stats_line(f->acl, stats, sizeof stats);
    fprintf(stderr,
            "%s: %lld commands issued, %lld acknowledged, %lld outcome unknown, %lld timed out, %lld failed, "
            "%lld refused, %lld lost, %lld unexplained, max latency %lld ms; %s\n",
            what, issued, f->ok, f->unknown, f->timeouts, f->failed, f->refused, *lost, *extra, f->max_latency_ms,
            stats);
    (void)acked;
    if (f->first_error[0] != '\0')
        fprintf(stderr, "%s: first failure: %s\n", what, f->first_error);
    return 0;
}

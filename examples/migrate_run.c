/* redtls-migrate: the run around the batches of redtls-migrate.c. The
 * source's masters are handed out to worker threads (one per master, at
 * most --parallel), each with its own two handles since a handle is used
 * by one thread at a time; the main thread meanwhile shows the progress
 * and keeps the checkpoint, then prints the report. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "migrate.h"

long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sleep_s(double s)
{
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0)
        ;
}

void copy_clear_bar(struct migration *c)
{
    if (c->bar) {
        fputs("\r\033[K", stderr);
        c->bar = 0;
    }
}

void add_counts(struct counts *to, const struct counts *n)
{
    to->scanned += n->scanned;
    to->copied += n->copied;
    to->skipped += n->skipped;
    to->expired += n->expired;
    to->failed += n->failed;
    to->bytes += n->bytes;
    to->chunked += n->chunked;
}

/* Under c->mu: the sum over every node, earlier runs included. */
static struct counts sum_counts(const struct migration *c)
{
    struct counts sum;
    size_t i;

    memset(&sum, 0, sizeof sum);
    for (i = 0; i < c->cp->nnodes; i++)
        add_counts(&sum, &c->cp->node[i].n);
    return sum;
}

/* Under c->mu. On a terminal one line redrawn in place at most five times
 * a second; otherwise a line a second, and one at the end (final). */
static void progress(struct migration *c, int final)
{
    double t = mono_s(), el = t - c->start;
    struct counts n = sum_counts(c);
    double now_scanned = (double)(n.scanned - c->earlier.scanned);
    double rate = el > 0 ? now_scanned / el : 0.0;
    double copy_rate = el > 0 ? (double)(n.copied - c->earlier.copied) / el : 0.0;
    /* With --match, DBSIZE counts keys that will not be copied: no ETA. */
    int known = c->total > 0 && c->o->match == NULL;
    long long left = known ? c->total - (long long)n.scanned : 0;

    if (!final && t - c->last_line < (c->tty ? 0.2 : 1.0))
        return;
    c->last_line = t;
    if (c->tty) {
        if (known) {
            double share = (double)n.scanned / (double)c->total;
            int fill = (int)(20.0 * (share > 1.0 ? 1.0 : share)), i;
            fputs("\rredtls-migrate: [", stderr);
            for (i = 0; i < 20; i++)
                fputc(i < fill ? '#' : '.', stderr);
            fprintf(stderr, "] %3.0f%% %llu/%lld keys, %llu copied, %llu MB, %.0f keys/s", 100.0 * share, n.scanned,
                    c->total, n.copied, n.bytes / 1000000, copy_rate);
            if (!final && rate > 0)
                fprintf(stderr, ", ETA %.0f s", left > 0 ? (double)left / rate : 0.0);
        } else {
            fprintf(stderr, "\rredtls-migrate: %llu keys scanned, %llu copied, %llu MB, %.0f keys/s", n.scanned,
                    n.copied, n.bytes / 1000000, copy_rate);
        }
        /* The cursor waits at the start of the line: a message a worker
         * prints without the lock then writes over the bar instead of
         * after it. */
        fputs(final ? "\033[K\n" : "\033[K\r", stderr);
        c->bar = !final;
        fflush(stderr);
        return;
    }
    fprintf(stderr, "redtls-migrate: %llu keys scanned, %llu copied, %llu MB, %.0f keys/s", n.scanned, n.copied,
            n.bytes / 1000000, copy_rate);
    if (known && !final && rate > 0)
        fprintf(stderr, ", about %.0f%% of %lld, %.0f s left", 100.0 * (double)n.scanned / (double)c->total, c->total,
                left > 0 ? (double)left / rate : 0.0);
    fputc('\n', stderr);
}

/* ABSTTL is read by the target's clock, the expiry times are computed by
 * ours: how far ahead the target's clock is, at least (TIME ran somewhere
 * between our two readings, and taking the later one errs towards earlier
 * expiry, never later). One node of a cluster target stands for all. */
static int target_clock_skew(struct side *to, long long *skew)
{
    const char *names[MAX_NODES];
    static const char *argv[] = {"TIME"};
    struct redisReply *r = NULL;
    long long sec, usec, after;

    side_masters(to, names, MAX_NODES);
    redtls_status st = side_command(to, names[0], 1, argv, NULL, &r);
    after = now_ms();
    if (st != REDTLS_OK) {
        fprintf(stderr, "redtls-migrate: target TIME: %s\n", side_errmsg(to, st));
        return EXIT_CONNECT;
    }
    if (redtls_reply_type(r) != REDTLS_REPLY_ARRAY || redtls_reply_len(r) != 2 ||
        redtls_reply_type(redtls_reply_element(r, 0)) != REDTLS_REPLY_STRING ||
        redtls_reply_type(redtls_reply_element(r, 1)) != REDTLS_REPLY_STRING) {
        fputs("redtls-migrate: target: TIME was refused; cannot carry TTLs over\n", stderr);
        redtls_reply_free(r);
        return EXIT_USAGE;
    }
    sec = strtoll(redtls_reply_str(redtls_reply_element(r, 0), NULL), NULL, 10);
    usec = strtoll(redtls_reply_str(redtls_reply_element(r, 1), NULL), NULL, 10);
    redtls_reply_free(r);
    *skew = sec * 1000 + usec / 1000 - after;
    if (*skew > 1000 || *skew < -1000)
        fprintf(stderr,
                "redtls-migrate: note: the target's clock is %lld ms %s this machine's; TTLs are "
                "corrected for it\n",
                *skew > 0 ? *skew : -*skew, *skew > 0 ? "ahead of" : "behind");
    return EXIT_CONTINUE;
}

/* Keys in the source (every master's DBSIZE), for the progress ETA. */
static long long source_size(struct side *s)
{
    const char *names[MAX_NODES];
    size_t n = side_masters(s, names, MAX_NODES), i;
    static const char *argv[] = {"DBSIZE"};
    long long total = 0;

    for (i = 0; i < n; i++) {
        struct redisReply *r = NULL;
        if (side_command(s, names[i], 1, argv, NULL, &r) != REDTLS_OK || redtls_reply_type(r) != REDTLS_REPLY_INTEGER) {
            redtls_reply_free(r);
            return -1;
        }
        total += redtls_reply_integer(r);
        redtls_reply_free(r);
    }
    return total;
}

/* A worker thread: its handles, and the shared state. */
struct worker {
    struct migration *c;
    struct run *r;
    pthread_t thread;
};

/* Takes the nodes not done one at a time until none is left or the run
 * stops. */
static void *worker(void *arg)
{
    struct worker *w = arg;
    struct migration *c = w->c;
    int rc = EXIT_CONTINUE;

    for (;;) {
        size_t idx;
        pthread_mutex_lock(&c->mu);
        while (c->next < c->cp->nnodes && c->cp->node[c->next].done)
            c->next++;
        if (c->stop || c->next == c->cp->nnodes) {
            pthread_mutex_unlock(&c->mu);
            break;
        }
        idx = c->next++;
        pthread_mutex_unlock(&c->mu);
        if ((rc = copy_node(w->r, idx)) != EXIT_CONTINUE)
            break;
    }
    pthread_mutex_lock(&c->mu);
    if (rc != EXIT_CONTINUE) {
        c->stop = 1;
        if (c->rc == EXIT_CONTINUE)
            c->rc = rc;
    }
    c->running--;
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t len = strlen(src);
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* The source's nodes with their run_ids; with a saved checkpoint, each
 * node found there with the same run_id continues from its cursor. */
static int plan_nodes(struct migration *c, struct side *from, const struct checkpoint *saved)
{
    const char *names[MAX_NODES];
    size_t n = side_masters(from, names, MAX_NODES), i, j;
    struct checkpoint *cp = c->cp;

    c->standalone = from->cl == NULL;
    cp->nnodes = n;
    for (i = 0; i < n; i++) {
        struct node_progress *np = &cp->node[i];
        if (names[i] != NULL) {
            copy_str(c->names[i], sizeof c->names[i], names[i]);
            checkpoint_escape(names[i], strlen(names[i]), np->addr, sizeof np->addr);
        } else {
            copy_str(np->addr, sizeof np->addr, cp->from);
        }
        copy_str(np->cursor, sizeof np->cursor, "0");
        int rc = side_node_run_id(from, names[i], np->run_id);
        if (rc != EXIT_CONTINUE)
            return rc;
    }
    if (saved == NULL)
        return EXIT_CONTINUE;
    for (j = 0; j < saved->nnodes; j++) {
        const struct node_progress *old = &saved->node[j];
        for (i = 0; i < n && strcmp(cp->node[i].addr, old->addr) != 0; i++)
            ;
        if (i == n) {
            fprintf(stderr,
                    "redtls-migrate: note: node %s of the checkpoint is no longer a source master; its keys are "
                    "copied from the masters that serve them now\n",
                    old->addr);
        } else if (strcmp(cp->node[i].run_id, old->run_id) != 0) {
            fprintf(stderr,
                    "redtls-migrate: note: node %s restarted since the checkpoint (run_id %.8s..., now %.8s...): "
                    "copied again from the start\n",
                    old->addr, old->run_id, cp->node[i].run_id);
        } else {
            cp->node[i] = *old;
            add_counts(&c->earlier, &old->n);
        }
    }
    return EXIT_CONTINUE;
}

static void save_checkpoint(const struct migration *c, const struct checkpoint *snap)
{
    char why[512];
    if (checkpoint_save(c->o->checkpoint, snap, why, sizeof why) != 0)
        fprintf(stderr, "redtls-migrate: warning: checkpoint not updated: %s\n", why);
}

/* SIGINT or SIGTERM during the copy: the workers stop after their batch
 * and the checkpoint is written; a second one ends the program at once. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
    if (stop_signal != 0) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_signal = sig;
}

static void catch_stop_signals(int on)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on ? on_stop_signal : SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Starts the workers, each with its own source and target handles (a
 * handle is used by one thread at a time), then shows progress and keeps
 * the checkpoint until they are done. */
static int run_workers(struct migration *c, unsigned nworkers)
{
    struct worker *w = calloc(nworkers, sizeof(*w));
    struct checkpoint *snap = c->o->checkpoint != NULL ? malloc(sizeof(*snap)) : NULL;
    unsigned i, started = 0;
    unsigned long long saved_version = 0;
    double last_save = 0;
    sigset_t stop_set, old_set;
    int rc = EXIT_CONTINUE;

    if (w == NULL || (c->o->checkpoint != NULL && snap == NULL)) {
        free(w);
        free(snap);
        fputs("redtls-migrate: out of memory\n", stderr);
        return EXIT_CONNECT;
    }
    for (i = 0; i < nworkers && rc == EXIT_CONTINUE; i++) {
        w[i].c = c;
        w[i].r = run_new(c, &rc);
    }
    c->start = c->last_line = mono_s();
    /* The workers inherit a mask without SIGINT and SIGTERM: the main
     * thread takes them. */
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_set, &old_set);
    for (i = 0; i < nworkers && rc == EXIT_CONTINUE; i++) {
        c->running++;
        if (pthread_create(&w[i].thread, NULL, worker, &w[i]) != 0) {
            c->running--;
            fputs("redtls-migrate: cannot start a worker thread\n", stderr);
            rc = EXIT_CONNECT;
            break;
        }
        started++;
    }
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    if (rc != EXIT_CONTINUE) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        c->rc = rc;
        pthread_mutex_unlock(&c->mu);
    }
    for (;;) {
        int more, save = 0;
        double t = mono_s();
        pthread_mutex_lock(&c->mu);
        more = c->running > 0;
        if (stop_signal != 0 && !c->stop) {
            c->stop = 1;
            copy_clear_bar(c);
            fprintf(stderr, "redtls-migrate: %s: stopping after the batches in progress%s\n",
                    stop_signal == SIGINT ? "interrupted" : "terminated",
                    c->o->checkpoint != NULL ? "; --resume continues from the checkpoint" : "");
        }
        if (more)
            progress(c, 0);
        if (snap != NULL && c->version != saved_version && (t - last_save >= 0.2 || !more)) {
            *snap = *c->cp;
            saved_version = c->version;
            save = 1;
        }
        pthread_mutex_unlock(&c->mu);
        if (save) {
            save_checkpoint(c, snap);
            last_save = t;
        }
        if (!more)
            break;
        sleep_s(0.05);
    }
    for (i = 0; i < started; i++)
        pthread_join(w[i].thread, NULL);
    for (i = 0; i < nworkers; i++)
        run_free(w[i].r);
    free(w);
    free(snap);
    return c->rc;
}

static void report(const struct migration *c, double el)
{
    struct counts n = sum_counts(c);
    size_t i, done = 0;

    printf("keys scanned: %llu\n"
           "keys copied: %llu\n"
           "keys skipped: %llu\n"
           "expired on the way: %llu\n"
           "keys failed: %llu\n"
           "keys chunked: %llu\n"
           "payload bytes: %llu\n"
           "seconds: %.3f\n"
           "keys/s: %.0f\n",
           n.scanned, n.copied, n.skipped, n.expired, n.failed, n.chunked, n.bytes, el,
           el > 0 ? (double)(n.copied - c->earlier.copied) / el : 0.0);
    for (i = 0; i < c->cp->nnodes; i++) {
        const struct node_progress *np = &c->cp->node[i];
        done += np->done != 0;
        printf("node %s: %llu scanned, %llu copied, %llu skipped, %llu expired, %llu failed, %s\n", np->addr,
               np->n.scanned, np->n.copied, np->n.skipped, np->n.expired, np->n.failed, np->done ? "done" : "not done");
    }
    if (c->earlier.scanned > 0)
        printf("from earlier runs: %llu keys scanned, %llu copied (counted above)\n", c->earlier.scanned,
               c->earlier.copied);
    if (c->o->checkpoint != NULL)
        printf("checkpoint: %s, %zu of %zu nodes done\n", c->o->checkpoint, done, c->cp->nnodes);
    if (c->o->dry_run)
        puts("dry run: nothing was written");
    fflush(stdout);
}

int run_copy(const struct migrate_options *o, struct side *from, struct side *to, const struct checkpoint *saved)
{
    struct migration *c = calloc(1, sizeof(*c));
    int rc;

    if (c == NULL || (c->cp = calloc(1, sizeof(*c->cp))) == NULL) {
        free(c);
        fputs("redtls-migrate: out of memory\n", stderr);
        return EXIT_CONNECT;
    }
    c->o = o;
    c->rc = EXIT_CONTINUE;
    catch_stop_signals(1);
    c->tty = isatty(STDERR_FILENO);
    pthread_mutex_init(&c->mu, NULL);
    checkpoint_fingerprint(o, c->cp);
    rc = plan_nodes(c, from, saved);
    if (rc == EXIT_CONTINUE) {
        c->total = source_size(from);
        rc = target_clock_skew(to, &c->skew);
    }
    if (rc == EXIT_CONTINUE && o->checkpoint != NULL) {
        char why[512];
        /* Before anything is copied: a checkpoint that cannot be kept is
         * a mistake in the command. */
        if (checkpoint_save(o->checkpoint, c->cp, why, sizeof why) != 0) {
            fprintf(stderr, "redtls-migrate: --checkpoint: %s\n", why);
            rc = EXIT_USAGE;
        }
    }
    if (rc == EXIT_CONTINUE) {
        struct counts n;
        size_t i, todo = 0;
        unsigned nworkers;
        for (i = 0; i < c->cp->nnodes; i++)
            todo += c->cp->node[i].done == 0;
        nworkers = (unsigned)(o->parallel > 0 && (size_t)o->parallel < todo ? (size_t)o->parallel : todo);
        if (todo == 0 && saved != NULL)
            fputs("redtls-migrate: note: every source node is done in the checkpoint; nothing left to copy\n", stderr);
        c->start = mono_s();
        if (nworkers > 0)
            rc = run_workers(c, nworkers);
        pthread_mutex_lock(&c->mu);
        progress(c, 1);
        report(c, mono_s() - c->start);
        n = sum_counts(c);
        pthread_mutex_unlock(&c->mu);
        if (rc == EXIT_CONTINUE && stop_signal != 0)
            rc = 128 + stop_signal;
        if (rc == EXIT_CONTINUE)
            rc = n.failed > 0 ? EXIT_SOME_FAILED : EXIT_ALL_COPIED;
    }
    catch_stop_signals(0);
    pthread_mutex_destroy(&c->mu);
    free(c->cp);
    free(c);
    return rc;
}

/* redtls-migrate's pieces shared between its files: the two ends of a
 * copy as the command line describes them, and as connected handles. */
#ifndef REDTLS_EXAMPLES_MIGRATE_H
#define REDTLS_EXAMPLES_MIGRATE_H

#include <pthread.h>
#include <stddef.h>

#include <redtls/redtls.h>

enum {
    EXIT_ALL_COPIED = 0,
    EXIT_SOME_FAILED = 1,
    EXIT_USAGE = 2,
    EXIT_CONNECT = 3,
    EXIT_CONTINUE = -1 /* internal: go on */
};

#define MAX_RESOLVE 32

/* One end of the copy, as the command line describes it. */
struct side_options {
    const char *name; /* "source" or "target", for messages */
    const char *url;
    int cluster;
    const char *cacert;
    const char *sni;
    const char *user;
    const char *token;
    const char *token_alt;
    const char *cert, *key; /* client certificate */
    int tls_min;
    int nresolve;
    const char *resolve[MAX_RESOLVE]; /* HOST:PORT:ADDR */
    const char *iam;                  /* IAM authentication for this cache name */
    const char *region;
    int serverless;
    const char *iam_service;
};

struct migrate_options {
    struct side_options from, to;
    const char *match;
    long db; /* -1: not given */
    int no_replace;
    int dry_run;
    long batch;
    long timeout_ms;                  /* -1: library defaults */
    int verify;                       /* 1: after the copy, 2: instead of it */
    unsigned long long chunk_limit;   /* DUMP payloads above: copied in pieces */
    unsigned long long from_max_bulk; /* the source reader's bulk limit, 0: default */
    long sample;                      /* --verify: keys to compare, 0: every key */
    long parallel;                    /* workers at most; 0: one per source master */
    long max_ops;                     /* keys read per second per source node; 0: no limit */
    const char *checkpoint;
    int resume;
};

/* A connected end: a standalone connection or a cluster handle. */
struct side {
    const struct side_options *o;
    redtls_config *cfg;
    redtls_conn *conn;
    redtls_cluster *cl;
    int refused; /* side_scan's last failure was the server's answer, not the connection */
};

#define MAX_NODES 256

/* Builds the side's configuration and handle; nothing is sent yet.
 * Returns EXIT_CONTINUE or an exit status (the cause printed). */
int side_prepare(const struct migrate_options *mo, const struct side_options *so, struct side *s);
/* Connects (a cluster fetches its slot map). EXIT_CONTINUE or EXIT_CONNECT. */
int side_connect(struct side *s);
void side_close(struct side *s);
/* The handle's last detailed message, or the status's text. */
const char *side_errmsg(const struct side *s, redtls_status st);
/* One command on node (a cluster node's name; NULL for a standalone side). */
redtls_status side_command(struct side *s, const char *node, int argc, const char **argv, const size_t *lens,
                           struct redisReply **reply);
/* Pipelining, routed by key on a cluster. */
redtls_status side_append(struct side *s, int argc, const char **argv, const size_t *lens);
redtls_status side_get_reply(struct side *s, struct redisReply **reply);
/* The masters of a cluster side (names borrowed), or one NULL entry. */
size_t side_masters(const struct side *s, const char **names, size_t cap);
/* One SCAN step on node: cursor (a C string, cap bytes) becomes the next
 * one; *reply is the checked [cursor, [keys...]] reply, for the caller to
 * free. EXIT_CONTINUE or EXIT_CONNECT (said on stderr). */
int side_scan(struct side *s, const char *node, const char *match, const char *count, char *cursor, size_t cap,
              struct redisReply **reply);
/* EXIT_USAGE when the two sides share a server (run_id), after saying so. */
int refuse_same_server(struct side *from, struct side *to);

/* --verify: compares every source key (matching --match), or o->sample
 * keys drawn at random, with the target's, and the two key counts; lists
 * the differences on stdout. EXIT_ALL_COPIED when none, EXIT_SOME_FAILED,
 * or EXIT_CONNECT. */
int verify_run(const struct migrate_options *o, struct side *from, struct side *to);

/* Values copied in pieces (migrate_chunk.c). */
struct chunk_job {
    const struct migrate_options *o;
    struct side *from, *to;
    long long skew; /* the target's clock minus ours, ms */
    size_t piece;   /* most bytes in one write (and one string piece) */
};

enum chunk_outcome { CHUNK_COPIED, CHUNK_SKIPPED, CHUNK_EXPIRED, CHUNK_FAILED, CHUNK_CONNECT };

struct chunk_result {
    char msg[320];  /* CHUNK_FAILED, CHUNK_CONNECT: why */
    char warn[160]; /* copied, but something did not travel */
};

/* Copies one key by type in pieces: into a temporary key of the key's hash
 * slot (with a safety TTL while it is built, renewed before each later
 * round of writes; its size checked against what was written), then its
 * expiry (the source's after the copy: PEXPIREAT or PERSIST), then RENAME
 * (RENAMENX with --no-replace) onto key. Nothing may be pending on either side. Returns
 * an enum chunk_outcome; the temporary key is removed on every outcome but
 * CHUNK_CONNECT (its safety TTL removes it then). No shared state: workers
 * with sides of their own may call it side by side. */
int chunk_copy_key(const struct chunk_job *j, const char *key, size_t len, struct chunk_result *res);
/* The DUMP length the source reader refused, from its message ("bulk
 * string of N bytes exceeds the limit ..."), 0 when it does not say: a key
 * over --from-max-bulk still counts in "payload bytes". */
unsigned long long chunk_refused_len(const char *errmsg);
/* The stream ID right after id ("ms-seq"): seq + 1, or ms + 1 and seq 0,
 * written to out; an exclusive XRANGE start that Redis before 6.2 takes
 * too. 0, 1 when id is the largest there is, -1 when it is no such ID or
 * out is too small. */
int stream_next_id(const char *id, size_t len, char *out, size_t cap);
/* The largest RESTORE payload the target accepts: the smallest
 * proto-max-bulk-len of its masters (512 MiB when CONFIG is refused, as on
 * ElastiCache). EXIT_CONTINUE or EXIT_CONNECT. */
int chunk_target_limit(struct side *to, unsigned long long *limit);

#define RUN_ID_LEN 40
/* node's run_id (INFO server) into id (RUN_ID_LEN + 1 bytes).
 * EXIT_CONTINUE, EXIT_CONNECT or EXIT_USAGE (said on stderr). */
int side_node_run_id(struct side *s, const char *node, char *id);
/* After a failed pipeline: the replies still owed are read and dropped,
 * so the next batch starts clean (the handle reconnects when needed). */
void side_discard(struct side *s);

struct counts {
    unsigned long long scanned, copied, skipped, expired, failed, bytes, chunked;
};

#define CURSOR_MAX 32
#define NODE_ADDR_MAX 256
#define FINGERPRINT_MAX 1024

/* How far one source node's copy went: every key SCAN returned before
 * cursor was written and acknowledged on the target. */
struct node_progress {
    char addr[NODE_ADDR_MAX]; /* node name, or the source URL without secrets; escaped */
    char run_id[RUN_ID_LEN + 1];
    char cursor[CURSOR_MAX];
    int done;        /* SCAN came back to cursor 0 */
    struct counts n; /* over every run that worked on it */
};

/* --checkpoint: the run's fingerprint (the options that decide which keys
 * go where, secrets left out) and each source node's progress. */
struct checkpoint {
    char from[FINGERPRINT_MAX], to[FINGERPRINT_MAX], match[FINGERPRINT_MAX], db[32];
    size_t nnodes;
    struct node_progress node[MAX_NODES];
};

/* The fingerprint of the run o describes. */
void checkpoint_fingerprint(const struct migrate_options *o, struct checkpoint *cp);
/* Escapes bytes outside '!'..'~' and '%' as %XX into out (cap bytes). */
void checkpoint_escape(const char *in, size_t len, char *out, size_t cap);
/* Reads path into cp: 0, 1 when there is no such file, or -1 after saying
 * what is wrong with it. */
int checkpoint_load(const char *path, struct checkpoint *cp);
/* EXIT_CONTINUE when saved was written by the run now describes, else
 * EXIT_USAGE after naming the option that differs. */
int checkpoint_match(const char *path, const struct checkpoint *saved, const struct checkpoint *now);
/* Writes cp atomically (a temporary file in the same directory, fsync,
 * rename). 0, or -1 with the cause in why (cap bytes). */
int checkpoint_save(const char *path, const struct checkpoint *cp, char *why, size_t cap);

/* --checkpoint without --resume refuses an existing FILE; --resume loads
 * it into *saved (NULL when there is none yet, with a note) and refuses one
 * of another run. EXIT_CONTINUE or an exit status, the cause said. */
int checkpoint_open(const struct migrate_options *o, struct checkpoint **saved);

/* The run (migrate_run.c), shared by its workers; the fields from mu on
 * are under it. */
struct migration {
    const struct migrate_options *o;
    char names[MAX_NODES][NODE_ADDR_MAX]; /* source masters; a standalone source has none */
    int standalone;
    long long total; /* DBSIZE of the source at the start, -1: unknown */
    long long skew;  /* target clock minus ours (ms), a lower bound */
    double start, last_line;
    int tty;
    struct counts earlier; /* what the checkpoint held at the start */
    pthread_mutex_t mu;
    struct checkpoint *cp; /* every source node's progress */
    size_t next;           /* the next node to hand out */
    unsigned running;      /* workers not finished */
    unsigned long long version;
    int stop; /* a worker gave up, or a signal came: the others end after their batch */
    int rc;
    int bar; /* a progress bar is on the terminal's last line */
    unsigned long long errors_shown;
};

long long now_ms(void); /* unix time */
double mono_s(void);    /* monotonic */
void sleep_s(double s);
void add_counts(struct counts *to, const struct counts *n);
/* Under c->mu: ends a progress bar's line, so a message has one of its own. */
void copy_clear_bar(struct migration *c);
/* Copies every source node not done in saved (NULL: every node) with
 * worker threads, prints the report. An exit status. */
int run_copy(const struct migrate_options *o, struct side *from, struct side *to, const struct checkpoint *saved);

/* One worker (redtls-migrate.c): its own source and target handles. */
struct run;
/* Connected, or NULL with *rc an exit status (the cause said). */
struct run *run_new(struct migration *c, int *rc);
void run_free(struct run *r);
/* SCANs source node idx of c->cp to the end from its recorded cursor (or
 * until c->stop), publishing cursor and counts after each batch the target
 * acknowledged. EXIT_CONTINUE or an exit status. */
int copy_node(struct run *r, size_t idx);

#endif

/*
 * lab_async_cluster: what the asynchronous cluster client's integration
 * tests (integration.async_cluster*) share.
 *
 * A tally of callbacks: every command issued through it, and every
 * connect, records each call of its callback (status, reply, the handle's
 * message at that moment, when it came and in which order), so a test can
 * check that each ran exactly once and when.
 *
 * A flow: a writer that keeps a window of commands in flight over a set of
 * keys, one command per key at a time (so each key's history is a line),
 * each callback issuing the next command until it is told to stop. INCR
 * (counted) or SET of a sequence number (optionally REDTLS_CMD_IDEMPOTENT).
 * Afterwards every key is read back and compared with what was
 * acknowledged. A flow belongs to the thread that runs its handle's loop;
 * only stop and hold may be set from another thread.
 *
 * Nothing here uses cmocka: failures print to stderr and return -1.
 */
#ifndef REDTLS_TESTS_LAB_ASYNC_CLUSTER_H
#define REDTLS_TESTS_LAB_ASYNC_CLUSTER_H

#include <stddef.h>

#include <hiredis/hiredis.h>
#include <redtls/async_cluster.h>

#define LAB_ACL_MSG_MAX 400

/* ----- the tally ------------------------------------------------------- */

typedef struct lab_acl_tally lab_acl_tally;

/* One command's callback calls. */
typedef struct lab_acl_cmd {
    lab_acl_tally *tally;
    size_t id;
    int calls;
    redtls_status st;       /* of the last call */
    int type;               /* reply type (REDIS_REPLY_*), or 0 */
    long long integer;      /* integer replies */
    size_t elements;        /* array replies */
    char str[64];           /* string, status and error replies (cut) */
    char msg[LAB_ACL_MSG_MAX]; /* redtls_async_cluster_errmsg() when st was not OK */
    long long issued_ms;    /* lab_now_ms() when issued */
    long long done_ms;      /* ... and when its callback ran */
    size_t seq;             /* place among the tally's callbacks (connects included), from 1 */
    unsigned tag;           /* the test's */
} lab_acl_cmd;

/* One redtls_async_cluster_connect()'s callback calls. */
typedef struct lab_acl_conn {
    lab_acl_tally *tally;   /* for seq; may be NULL */
    int calls;
    redtls_status st;
    char msg[LAB_ACL_MSG_MAX];
    long long done_ms;
    size_t seq;
} lab_acl_conn;

/* Called after a command's callback was recorded, before the reply is
 * freed (reply NULL unless st is REDTLS_OK). */
typedef void (*lab_acl_after_cb)(lab_acl_tally *t, redtls_async_cluster *acl, lab_acl_cmd *c,
                                 const redisReply *reply);

struct lab_acl_tally {
    lab_acl_cmd *cmd;
    size_t cap;
    size_t issued;      /* records used: ids 0 .. issued-1 */
    size_t done;        /* commands whose callback ran at least once */
    size_t seq;         /* callback calls, connects included */
    size_t by_status[32];
    int bad_reply;      /* a reply with a failure, or none with REDTLS_OK */
    lab_acl_after_cb after;
    void *ud;           /* the test's */
};

lab_acl_tally *lab_acl_tally_new(size_t cap);
void lab_acl_tally_free(lab_acl_tally *t);

/* Issue a command whose callback the tally records (argvlen NULL: strlen),
 * through redtls_async_cluster_command_argv / _slot / _node. Return what
 * that call returned; a refused command leaves no record. *id (may be
 * NULL) gets its id. */
redtls_status lab_acl_issue_argv(lab_acl_tally *t, redtls_async_cluster *acl, unsigned flags, int argc,
                                 const char **argv, size_t *id);
redtls_status lab_acl_issue_slot(lab_acl_tally *t, redtls_async_cluster *acl, unsigned slot, unsigned flags,
                                 int argc, const char **argv, size_t *id);
redtls_status lab_acl_issue_node(lab_acl_tally *t, redtls_async_cluster *acl, const char *node, unsigned flags,
                                 int argc, const char **argv, size_t *id);
/* The same from a space-separated line (no quoting; at most 16 words of
 * 127 bytes). */
redtls_status lab_acl_issue(lab_acl_tally *t, redtls_async_cluster *acl, unsigned flags, const char *line,
                            size_t *id);

/* For a test that calls the library itself (the printf form): a record
 * counted as issued, or NULL when t is full; pass it as userdata of
 * lab_acl_on_reply, and give it back with lab_acl_tally_unreserve() when
 * the call is refused (nothing else may have been reserved in between). */
lab_acl_cmd *lab_acl_tally_reserve(lab_acl_tally *t);
void lab_acl_tally_unreserve(lab_acl_tally *t);
void lab_acl_on_reply(redtls_async_cluster *acl, redtls_status st, struct redisReply *r, void *ud);

/* The connect callback for a lab_acl_conn passed as userdata. */
void lab_acl_on_connect(redtls_async_cluster *acl, redtls_status st, void *ud);

/* Callbacks still owed: issued minus those called at least once. */
size_t lab_acl_tally_owed(const lab_acl_tally *t);

/* 0 when every command issued through t had its callback called exactly
 * once and every reply matched its status; else -1, each offender on
 * stderr (prefixed with what). */
int lab_acl_tally_check(const lab_acl_tally *t, const char *what);

/* Runs redtls_async_cluster_run() in slices until no callback of t is owed
 * or ms have passed. Returns 1 when none is owed. */
int lab_acl_run_all(redtls_async_cluster *acl, const lab_acl_tally *t, int ms);

/* ----- the flow ---------------------------------------------------------- */

typedef enum lab_acl_flow_mode {
    LAB_ACL_FLOW_INCR = 0,  /* INCR key; the value counts the INCRs that ran */
    LAB_ACL_FLOW_SET        /* SET key <n>, n = 1, 2, ... per key */
} lab_acl_flow_mode;

#define LAB_ACL_FLOW_KEY_MAX 48

typedef struct lab_acl_flow_key {
    char name[LAB_ACL_FLOW_KEY_MAX];
    int busy;               /* a command on it is in flight */
    long long issued;       /* commands issued (SET: the last n) */
    long long acked;        /* INCR: acknowledged; SET: the highest n acknowledged */
    long long unknown;      /* INCR: outcome unknown or timed out (may have run) */
} lab_acl_flow_key;

typedef struct lab_acl_flow {
    redtls_async_cluster *acl;
    lab_acl_flow_mode mode;
    unsigned flags;         /* for every command (REDTLS_CMD_IDEMPOTENT) */
    size_t window;          /* commands in flight at most */
    size_t nkeys;
    lab_acl_flow_key *keys;
    size_t next;            /* next key to try */
    size_t in_flight;
    volatile int stop;      /* no more commands: the flow drains */
    volatile int hold;      /* no new commands until cleared (lab_acl_flow_resume) */
    long long ops;          /* callbacks */
    long long ok;           /* acknowledged */
    long long unknown;      /* REDTLS_E_OUTCOME_UNKNOWN */
    long long timeouts;     /* REDTLS_E_COMMAND_TIMEOUT */
    long long failed;       /* anything else (error replies included) */
    long long refused;      /* issue calls refused at once */
    long long max_latency_ms;
    size_t by_status[32];
    char first_error[512];
    void *priv;             /* lab_async_cluster.c's, per key */
} lab_acl_flow;

/* Keys "prefix:N" (N = 0..nkeys-1), or, with slots, "prefix{TAG}N" whose
 * tag hashes to slots[N % nslots]. Returns 0 or -1. */
int lab_acl_flow_init(lab_acl_flow *f, redtls_async_cluster *acl, lab_acl_flow_mode mode, unsigned flags,
                      size_t window, size_t nkeys, const char *prefix, const unsigned *slots, size_t nslots);
void lab_acl_flow_free(lab_acl_flow *f);

/* Deletes every key (through the handle) and waits up to ms. 0 or -1. */
int lab_acl_flow_reset(lab_acl_flow *f, int ms);

/* Fills the window. Callbacks keep it full until stop or hold. */
void lab_acl_flow_start(lab_acl_flow *f);

/* Runs the handle's loop for ms (commands keep flowing). */
void lab_acl_flow_run(lab_acl_flow *f, int ms);

/* Sets hold and runs until nothing is in flight (up to ms). 0 or -1. */
int lab_acl_flow_pause(lab_acl_flow *f, int ms);
/* Clears hold and fills the window again. */
void lab_acl_flow_resume(lab_acl_flow *f);

/* Sets stop and runs until nothing is in flight (up to ms). 0 or -1. */
int lab_acl_flow_drain(lab_acl_flow *f, int ms);

/* Reads every key back through the handle and compares: *lost gets the
 * acknowledged writes missing (INCR: acked - value when the value is
 * lower; SET: keys whose value is below the highest acknowledged n),
 * *extra the writes no command explains (INCR: value above acked +
 * unknown; SET: a value above the last n issued). Prints a summary line
 * with the handle's counters. Returns 0, or -1 when a read failed. */
int lab_acl_flow_verify(lab_acl_flow *f, const char *what, long long *lost, long long *extra);

/* One line of the handle's counters into buf. */
void lab_acl_stats_line(const redtls_async_cluster *acl, char *buf, size_t cap);

#endif /* REDTLS_TESTS_LAB_ASYNC_CLUSTER_H */

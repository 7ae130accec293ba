/*
 * lab_async: the asynchronous API's integration tests run each scenario on
 * three loops: the built-in one (redtls_async_run), libuv and libevent
 * (through <redtls/async_libuv.h> and <redtls/async_libevent.h>). A loop
 * drives any number of handles until a condition holds or time runs out.
 *
 * And a tally of callbacks: every command issued through it, and every
 * connect, records each call of its callback (status, reply, the handle's
 * message at that moment), so a test can check that each ran exactly once,
 * on success, failure, close and free alike.
 *
 * And the set most tests hold (lab_async_env): configuration, admin
 * connection, loop and tally, made and freed together.
 *
 * Loops other than the built-in one exist when the build found their
 * library (LAB_HAVE_LIBUV, LAB_HAVE_LIBEVENT); lab_loop_new() returns NULL
 * for a missing one, and lab_loop_available() says which.
 */
#ifndef REDTLS_TESTS_LAB_ASYNC_H
#define REDTLS_TESTS_LAB_ASYNC_H

#include <stddef.h>

#include <hiredis/hiredis.h>
#include <redtls/async.h>

typedef enum lab_loop_kind { LAB_LOOP_BUILTIN = 0, LAB_LOOP_LIBUV, LAB_LOOP_LIBEVENT } lab_loop_kind;
#define LAB_LOOP_KINDS 3

const char *lab_loop_name(lab_loop_kind kind);
int lab_loop_available(lab_loop_kind kind);

typedef struct lab_loop lab_loop;

/* A loop of that kind (libuv: a private uv_loop_t; libevent: its own
 * event_base), or NULL (not built, or out of memory). */
lab_loop *lab_loop_new(lab_loop_kind kind);

/* Drives ac from this loop: attaches the adapter, or (built-in) adds it to
 * the handles redtls_async_run() is given. Up to 64 handles. Returns 0 or
 * -1 (the message on stderr). */
int lab_loop_add(lab_loop *lp, redtls_async *ac);

/* Frees a handle this loop drives, outside any callback (pending callbacks
 * run now, with REDTLS_E_CLOSED), then lets the loop run once without
 * waiting so what the adapter made is released. Accepts NULL. */
void lab_loop_free_handle(lab_loop *lp, redtls_async *ac);

/* A handle freed by one of its own callbacks (adapters only; the built-in
 * loop forbids it): the loop forgets it. */
void lab_loop_forget(lab_loop *lp, redtls_async *ac);

/* Runs the loop until done(ud) is true (looked at after every turn, and at
 * least every 10 ms) or ms have passed. done NULL: run for ms. Returns 1
 * when done held, else 0. */
int lab_loop_run_until(lab_loop *lp, int (*done)(void *ud), void *ud, int ms);

/* Frees every handle still driven (as lab_loop_free_handle), then the
 * loop. Returns 0, or -1 when the loop still held something the adapters
 * made (libuv: uv_loop_close() said UV_EBUSY). Accepts NULL. */
int lab_loop_free(lab_loop *lp);

/* ----- the tally ---------------------------------------------------------- */

#define LAB_MSG_MAX 400

typedef struct lab_tally lab_tally;

/* One command's callback calls. */
typedef struct lab_acmd {
    lab_tally *tally;
    size_t id;
    int calls;
    redtls_status st;       /* of the last call */
    int type;               /* reply type (REDIS_REPLY_*), or 0 */
    long long integer;      /* integer replies */
    char str[64];           /* string, status and error replies (cut) */
    char msg[LAB_MSG_MAX];  /* redtls_async_errmsg() when st was not OK */
} lab_acmd;

/* One redtls_async_connect()'s callback calls. */
typedef struct lab_aconn {
    int calls;
    redtls_status st;
    char msg[LAB_MSG_MAX];
} lab_aconn;

/* Called after a command's callback was recorded, before the reply is
 * freed (reply NULL unless st is REDTLS_OK): to issue the next command,
 * close or free the handle. */
typedef void (*lab_after_cb)(lab_tally *t, redtls_async *ac, lab_acmd *c, const redisReply *reply);

struct lab_tally {
    lab_acmd *cmd;
    size_t cap;
    size_t issued;      /* records used: ids 0 .. issued-1 */
    size_t done;        /* callback calls, all commands */
    size_t by_status[32];
    int bad_reply;      /* a reply with a failure, or none with REDTLS_OK */
    lab_after_cb after;
    void *ud;           /* the test's */
};

/* A tally for up to cap commands. */
lab_tally *lab_tally_new(size_t cap);
void lab_tally_free(lab_tally *t);

/* Issues a command whose callback the tally records (argvlen NULL:
 * strlen). Returns what redtls_async_command_argv() returned; a refused
 * command leaves no record. *id (may be NULL) gets its id. */
redtls_status lab_issue_argv(lab_tally *t, redtls_async *ac, unsigned flags, int argc, const char **argv,
                             size_t *id);
/* The same, from a space-separated command line (no quoting; at most 16
 * words of 127 bytes). */
redtls_status lab_issue(lab_tally *t, redtls_async *ac, unsigned flags, const char *line, size_t *id);

/* The connect callback for a lab_aconn passed as userdata. */
void lab_on_connect(redtls_async *ac, redtls_status st, void *ud);

/* Callbacks still owed: issued minus those called at least once. */
size_t lab_tally_owed(const lab_tally *t);

/* 0 when every command issued through t had its callback called exactly
 * once and every reply matched its status; else -1, each offender on
 * stderr (prefixed with what). */
int lab_tally_check(const lab_tally *t, const char *what);

/* 0 when c's callback ran exactly once; else -1 (on stderr). */
int lab_aconn_check(const lab_aconn *c, const char *what);

/* ----- a test's set ------------------------------------------------------- */

/* What an asynchronous test usually holds: its configuration, a blocking
 * connection straight to the server for its own commands (CLIENT KILL and
 * the like), a loop and a tally. Zeroed, it holds nothing. */
typedef struct lab_async_env {
    redtls_config *cfg;
    redtls_conn *admin;
    lab_loop *loop;
    lab_tally *tally;
} lab_async_env;

/* e->loop of that kind and e->tally for up to cap commands. Returns 0, or
 * -1 (on stderr; lab_loop_available() says whether the loop was built). */
int lab_async_env_open(lab_async_env *e, lab_loop_kind kind, size_t cap);

/* A handle made from e->cfg and driven by e->loop, which frees it, or NULL
 * (on stderr). */
redtls_async *lab_async_env_handle(lab_async_env *e);

/* Runs e->loop until no callback of e->tally is owed, or ms have passed.
 * Returns 1 when none is owed. */
int lab_async_env_run_all(lab_async_env *e, int ms);

/* Frees what e holds, the loop with its handles first, and zeroes it.
 * Returns what lab_loop_free() returned. */
int lab_async_env_free(lab_async_env *e);

#endif /* REDTLS_TESTS_LAB_ASYNC_H */

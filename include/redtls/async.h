/* redtls asynchronous API: the same connection (settings, verification,
 * AUTH with rotation, reconnection, events) driven by an event loop.
 *
 * Rules, beyond those of redtls.h:
 * Threads
 *   - A handle belongs to the thread of the loop that drives it: every call
 *     on it, and every callback it makes, happens on that thread.
 * Callbacks
 *   - Every command's callback is called exactly once: with its reply, or
 *     with the status that ended it (a time-out, the connection lost, the
 *     handle closed or freed). A call that fails at once (REDTLS_E_INVALID,
 *     REDTLS_E_LIMIT, REDTLS_E_NOMEM...) returns that status and never calls
 *     the callback.
 *   - Callbacks may issue commands, close the handle or free it.
 *   - A reply passed to a callback belongs to the callback: free it with
 *     redtls_reply_free(). It is NULL when the status is not REDTLS_OK.
 * Outcomes (as in the blocking API)
 *   - REDTLS_E_OUTCOME_UNKNOWN: the command was written and the connection
 *     broke before its reply; it may have run. Only commands issued with
 *     REDTLS_CMD_IDEMPOTENT are sent again (once).
 *   - Each command has its own deadline (the command timeout, counted from
 *     when it was issued; from a callback, from the start of the loop's
 *     pass that ran it). One that passes it gets REDTLS_E_COMMAND_TIMEOUT
 *     alone: while the server keeps answering, the connection stays, and
 *     the late reply, recognised by its place in the order, is dropped. The
 *     connection is closed when replies are owed and the server has sent
 *     nothing for a whole command timeout.
 *   - Commands issued while the connection is being made or remade wait,
 *     each within its own deadline; so do those never written when a
 *     connection broke (they are not REDTLS_E_OUTCOME_UNKNOWN).
 *   - An AUTH that falls due (NOAUTH, IAM's scheduled re-AUTH) goes out
 *     once the replies owed are in; commands issued meanwhile wait for it.
 * Backpressure
 *   - At most redtls_async_set_max_pending() commands may be queued or in
 *     flight (default REDTLS_ASYNC_DEFAULT_MAX_PENDING); one more is refused
 *     at once with REDTLS_E_LIMIT. Everything issued between two passes of
 *     the loop goes out in one write.
 * Plugging into a loop, three ways
 *   1. By hand (FFI, epoll/kqueue loops): redtls_async_fd(),
 *      redtls_async_events() and redtls_async_timeout_ms() say what to wait
 *      for; call redtls_async_process() when the descriptor is ready or the
 *      time has come (and after issuing commands).
 *   2. An adapter: redtls_async_attach() with hooks that set read/write
 *      interest and one timer; redtls/async_libuv.h and
 *      redtls/async_libevent.h provide them for libuv and libevent.
 *   3. The built-in loop: redtls_async_run().
 */
#ifndef REDTLS_ASYNC_H
#define REDTLS_ASYNC_H

#include <redtls/redtls.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct redtls_async redtls_async;

/* Events for redtls_async_events() / redtls_async_process(). */
#define REDTLS_ASYNC_READ 1
#define REDTLS_ASYNC_WRITE 2

/* Queued plus in-flight commands allowed by default: deep enough for
 * pipelines of thousands, small enough that a stalled server cannot make a
 * producer hold unbounded memory (each command holds its framed bytes). */
#define REDTLS_ASYNC_DEFAULT_MAX_PENDING 65536
REDTLS_EXTERN size_t redtls_async_default_max_pending(void);

/* Called once per command. reply: owned by the callback (NULL unless st is
 * REDTLS_OK; a Redis error reply is REDTLS_OK with an error reply). */
typedef void (*redtls_async_reply_cb)(redtls_async *ac, redtls_status st, struct redisReply *reply, void *userdata);
/* Called once per redtls_async_connect(): REDTLS_OK when connected and set
 * up, or why not (the attempt's status). */
typedef void (*redtls_async_connect_cb)(redtls_async *ac, redtls_status st, void *userdata);

/* Makes a handle from cfg (copied, as redtls_conn_new does). Nothing is
 * connected yet. Errors: REDTLS_E_INVALID, REDTLS_E_NOMEM, REDTLS_E_CONFIG
 * (the TLS settings cannot be loaded). */
REDTLS_EXTERN redtls_status redtls_async_new(redtls_config *cfg, redtls_async **out);

/* Frees the handle; every pending callback is called first with
 * REDTLS_E_CLOSED (the connect callback too). Accepts NULL. May be called
 * from a callback. */
REDTLS_EXTERN void redtls_async_free(redtls_async *ac);

/* Closes the connection (close_notify on TLS); pending callbacks get
 * REDTLS_E_CLOSED. The handle stays usable: a later command or connect
 * connects again. */
REDTLS_EXTERN void redtls_async_close(redtls_async *ac);

/* Starts connecting; cb (may be NULL) is called once with the outcome of
 * this connection attempt (reconnection after that is automatic when the
 * configuration allows it, see redtls_config_set_reconnect). Errors at
 * once: REDTLS_E_STATE (already connecting or connected). */
REDTLS_EXTERN redtls_status redtls_async_connect(redtls_async *ac, redtls_async_connect_cb cb, void *userdata);

/* Issues one command (argvlen NULL: strlen). flags: REDTLS_CMD_IDEMPOTENT.
 * Errors at once (the callback is not called): REDTLS_E_INVALID,
 * REDTLS_E_LIMIT (backpressure), REDTLS_E_NOMEM, REDTLS_E_UNAVAILABLE (the
 * handle gave up reconnecting; redtls_async_connect starts again). A
 * command issued on an unconnected handle connects it. */
REDTLS_EXTERN redtls_status redtls_async_command_argv(redtls_async *ac, unsigned flags, int argc, const char **argv,
                                                      const size_t *argvlen, redtls_async_reply_cb cb,
                                                      void *userdata);
/* The same with hiredis's printf-like format. */
REDTLS_EXTERN redtls_status redtls_async_command(redtls_async *ac, redtls_async_reply_cb cb, void *userdata,
                                                 const char *fmt, ...) REDTLS_PRINTF(4, 5);

/* Commands queued or in flight (their callbacks not yet called). */
REDTLS_EXTERN size_t redtls_async_pending(const redtls_async *ac);
/* Backpressure limit (0: the default). */
REDTLS_EXTERN redtls_status redtls_async_set_max_pending(redtls_async *ac, size_t max);
/* The last failure's detailed message (borrowed until the next call). */
REDTLS_EXTERN const char *redtls_async_errmsg(const redtls_async *ac);
/* 1 when connected and set up. */
REDTLS_EXTERN int redtls_async_is_connected(const redtls_async *ac);

/* ---- by hand ---- */

/* The descriptor to watch, or -1 (none now: only the time matters). */
REDTLS_EXTERN int redtls_async_fd(const redtls_async *ac);
/* REDTLS_ASYNC_READ and/or REDTLS_ASYNC_WRITE to watch for on it. */
REDTLS_EXTERN int redtls_async_events(const redtls_async *ac);
/* Milliseconds until redtls_async_process() must be called even if the
 * descriptor stays quiet: -1 for no time, 0 for at once. A TLS handshake
 * answers 0 between its steps: each call does the work of one TLS record
 * (a certificate's decoding, a signature check), so no single call holds
 * the loop for long, and the bytes still to come may already be in the
 * socket (an edge-triggered loop would not hear of them again). */
REDTLS_EXTERN int redtls_async_timeout_ms(const redtls_async *ac);
/* Does what can be done now: reads, writes, set-up steps, deadlines,
 * reconnection; callbacks run from here. events: what the loop saw (0 is
 * fine: the handle looks itself). REDTLS_OK, or REDTLS_E_INVALID. */
REDTLS_EXTERN redtls_status redtls_async_process(redtls_async *ac, int events);

/* ---- adapters ---- */

/* What an event loop provides. watch: set the interest in fd to events
 * (REDTLS_ASYNC_READ|WRITE; 0: none; fd may change between calls, -1: no
 * descriptor); 0, or -1 when the loop could not take it (out of memory):
 * the handle then ends what waits on that socket with REDTLS_E_NOMEM and
 * asks again. timer: call redtls_async_process() after ms (-1: cancel).
 * detach: the handle is freed or detached; release what was made for it.
 * When the loop reports readiness or the timer fires, it calls
 * redtls_async_process(ac, events). */
typedef struct redtls_async_hooks {
    void *data;
    int (*watch)(void *data, int fd, int events);
    void (*timer)(void *data, int ms);
    void (*detach)(void *data);
} redtls_async_hooks;

/* Installs hooks (copied); the handle tells them what it wants at once,
 * then after every call that changes it. NULL detaches. The contract the
 * adapters rely on: a failed attach calls no hook; attaching again calls
 * the old hooks' detach first; detach (may be NULL) is the last call to a
 * set of hooks, and may come from inside redtls_async_process() when a
 * callback frees the handle; when a descriptor number is reused for a new
 * socket, watch(-1, 0) comes before the new socket's watch, so a loop
 * never keeps a registration that belonged to a closed socket. A loop
 * driven by hand must likewise drop its registration when
 * redtls_async_fd() changes, and re-register after a pass in which the
 * handle reconnected. */
REDTLS_EXTERN redtls_status redtls_async_attach(redtls_async *ac, const redtls_async_hooks *hooks);

/* ---- built-in loop ---- */

/* Runs the handles' work with poll() until every one of them has nothing
 * pending (no command, no connect under way, no subscription: see
 * redtls/pubsub.h) or timeout_ms passes (-1: no limit). Returns REDTLS_OK, or REDTLS_E_COMMAND_TIMEOUT when time ran
 * out with work pending. Its callbacks may close a handle of the array but
 * not free it (free it after this returns). */
REDTLS_EXTERN redtls_status redtls_async_run(redtls_async **handles, size_t n, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif

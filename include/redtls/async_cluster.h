/* redtls asynchronous cluster client: the cluster client of
 * <redtls/cluster.h> (routing, redirections, retries, refreshes, per-node
 * verification, multi-key splits, replica reads, token updates) driven by
 * an event loop, on one asynchronous connection (<redtls/async.h>) per
 * node.
 *
 * Rules, beyond those of redtls/async.h and redtls/cluster.h:
 * Never blocking
 *   - redtls_async_cluster_connect() returns at once; its callback says
 *     when the first slot map is installed (or why a first pass over the
 *     seeds failed). Commands issued before that wait, within their own
 *     deadlines, and are sent as soon as a map is in.
 *   - Slot-map refreshes run in the background (CLUSTER SLOTS on a node
 *     connection like any command) while commands keep flowing.
 * Per node, one multiplexed connection
 *   - Every command routed to a node in one pass of the loop goes out in
 *     one write; each node's replies are taken as they arrive, so a slow
 *     node holds back only its own commands.
 * Callbacks
 *   - Every command's callback is called exactly once, with the final
 *     outcome after redirections and retries: its reply, or the status that
 *     ended it. A call that fails at once returns the status and never calls
 *     the callback. Callbacks may issue commands and free the handle.
 * Deadlines
 *   - A command's deadline is the command timeout counted from when it was
 *     issued (from a callback: from the start of the loop's pass that ran
 *     it), across every redirection and retry. A command written and not
 *     answered by then gets REDTLS_E_COMMAND_TIMEOUT (it may have run; its
 *     late reply is dropped). One never sent ends with what kept it back:
 *     the last retryable error reply it got (TRYAGAIN, CLUSTERDOWN...) as
 *     its reply, or the status of the last failure (a node that could not
 *     be reached, REDTLS_E_CONNECT_TIMEOUT or REDTLS_E_HANDSHAKE_TIMEOUT
 *     for a connection still being made, REDTLS_E_CLUSTER_TOPOLOGY for a
 *     slot map that could not be fetched), or REDTLS_E_COMMAND_TIMEOUT;
 *     the message says "not sent within the command timeout". With no
 *     command timeout (0), retries end after the configuration's outage
 *     limit or a minute.
 * At-most-once
 *   - As for the blocking cluster client: MOVED, ASK, TRYAGAIN,
 *     CLUSTERDOWN, LOADING, MASTERDOWN, READONLY and a node that could not
 *     be reached mean the command did not run, so it is sent again (after a
 *     backoff delay for all but MOVED and ASK); a command lost after being
 *     written is REDTLS_E_OUTCOME_UNKNOWN unless REDTLS_CMD_IDEMPOTENT.
 * Nodes
 *   - After a new map is installed, the connections of addresses outside it
 *     (nodes that left, seeds that are not nodes, redirection targets) are
 *     closed once their commands are done.
 *   - A node's connection is made on first use and remade with the backoff
 *     policy whatever redtls_config_set_reconnect() says; while it is down,
 *     the commands for its slots wait for a refresh (a failover) or its
 *     next attempt, within their deadlines.
 * Threads
 *   - The handle, and every node connection it makes, belongs to the thread
 *     of the loop that drives it.
 * Plugging into a loop
 *   - redtls_async_cluster_attach() with hooks that attach each node
 *     connection to the loop (as redtls_async_attach_libuv() does) and run
 *     one timer; redtls/async_libuv.h and redtls/async_libevent.h provide
 *     redtls_async_cluster_attach_libuv() and
 *     redtls_async_cluster_attach_libevent().
 *   - Or the built-in loop, redtls_async_cluster_run().
 */
#ifndef REDTLS_ASYNC_CLUSTER_H
#define REDTLS_ASYNC_CLUSTER_H

#include <redtls/async.h>
#include <redtls/cluster.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct redtls_async_cluster redtls_async_cluster;

/* Called once per command. reply: owned by the callback (NULL unless st is
 * REDTLS_OK; a Redis error reply, such as a redirection that could not be
 * followed, is REDTLS_OK with an error reply). */
typedef void (*redtls_async_cluster_reply_cb)(redtls_async_cluster *acl, redtls_status st,
                                              struct redisReply *reply, void *userdata);
/* Called once per redtls_async_cluster_connect(): REDTLS_OK when the first
 * slot map is installed, or the status of the last seed tried when a whole
 * pass over the seeds failed (the handle keeps trying in the background
 * while commands wait). */
typedef void (*redtls_async_cluster_connect_cb)(redtls_async_cluster *acl, redtls_status st, void *userdata);

/* Makes a handle from a copy of cfg. seeds as for redtls_cluster_new()
 * ("host:port,host:port"; NULL or "" for cfg's host and port). Nothing is
 * sent yet. Errors: REDTLS_E_INVALID (seeds; a Unix socket; a database
 * other than 0), REDTLS_E_NOMEM, REDTLS_E_CONFIG (TLS settings; details in
 * redtls_config_errmsg(cfg)). */
REDTLS_EXTERN redtls_status redtls_async_cluster_new(redtls_config *cfg, const char *seeds,
                                                     redtls_async_cluster **out);

/* Frees the handle and every node connection; every pending callback is
 * called first with REDTLS_E_CLOSED (the connect callback too). Accepts
 * NULL. May be called from a callback. */
REDTLS_EXTERN void redtls_async_cluster_free(redtls_async_cluster *acl);

/* The last failure's detailed message ("" if none; borrowed). */
REDTLS_EXTERN const char *redtls_async_cluster_errmsg(const redtls_async_cluster *acl);

/* Starts fetching the first slot map; cb (may be NULL) is called once, as
 * described above. Commands issued without it start the same work.
 * Errors at once: REDTLS_E_STATE (a connect is already under way, or the
 * map is in). */
REDTLS_EXTERN redtls_status redtls_async_cluster_connect(redtls_async_cluster *acl,
                                                         redtls_async_cluster_connect_cb cb, void *userdata);

/* 1 once a slot map is installed. */
REDTLS_EXTERN int redtls_async_cluster_is_ready(const redtls_async_cluster *acl);

/* Issues one command, routed by its keys (argvlen NULL: strlen). flags:
 * REDTLS_CMD_IDEMPOTENT, REDTLS_CLUSTER_STRICT. Errors at once (the callback
 * is not called): REDTLS_E_INVALID (including the commands that change a
 * connection's state, see redtls/cluster.h), REDTLS_E_LIMIT (backpressure),
 * REDTLS_E_NOMEM. */
REDTLS_EXTERN redtls_status redtls_async_cluster_command_argv(redtls_async_cluster *acl, unsigned flags, int argc,
                                                              const char **argv, const size_t *argvlen,
                                                              redtls_async_cluster_reply_cb cb, void *userdata);
/* The same with hiredis's printf-like format. */
REDTLS_EXTERN redtls_status redtls_async_cluster_command(redtls_async_cluster *acl, redtls_async_cluster_reply_cb cb,
                                                         void *userdata, const char *fmt, ...) REDTLS_PRINTF(4, 5);
/* On the master serving slot (0..16383), whatever the keys; redirections
 * are followed. */
REDTLS_EXTERN redtls_status redtls_async_cluster_command_slot(redtls_async_cluster *acl, unsigned slot,
                                                              unsigned flags, int argc, const char **argv,
                                                              const size_t *argvlen,
                                                              redtls_async_cluster_reply_cb cb, void *userdata);
/* On one node ("host:port"); redirections are handed back as they are, and
 * a node that cannot be reached ends the command with its connect status. */
REDTLS_EXTERN redtls_status redtls_async_cluster_command_node(redtls_async_cluster *acl, const char *node,
                                                              unsigned flags, int argc, const char **argv,
                                                              const size_t *argvlen,
                                                              redtls_async_cluster_reply_cb cb, void *userdata);

/* Commands whose callbacks are still owed. */
REDTLS_EXTERN size_t redtls_async_cluster_pending(const redtls_async_cluster *acl);
/* Backpressure: commands owed a callback allowed at once (0: the default,
 * REDTLS_ASYNC_DEFAULT_MAX_PENDING); one more gets REDTLS_E_LIMIT. */
REDTLS_EXTERN redtls_status redtls_async_cluster_set_max_pending(redtls_async_cluster *acl, size_t max);
/* As redtls_cluster_set_max_redirects, _set_refresh and
 * _set_read_from_replicas. */
REDTLS_EXTERN redtls_status redtls_async_cluster_set_max_redirects(redtls_async_cluster *acl, unsigned n);
REDTLS_EXTERN redtls_status redtls_async_cluster_set_refresh(redtls_async_cluster *acl, unsigned interval_ms,
                                                             unsigned min_gap_ms);
REDTLS_EXTERN redtls_status redtls_async_cluster_set_read_from_replicas(redtls_async_cluster *acl, int on);
/* Asks for a slot-map refresh now (in the background; the throttle does
 * not apply). */
REDTLS_EXTERN redtls_status redtls_async_cluster_refresh(redtls_async_cluster *acl);
/* Token update on every node connection and for those made later (rules
 * of redtls_cluster_set_tokens). With REDTLS_REAUTH_NOW each open
 * connection sends AUTH before its next command (once the replies it owes
 * are in); a refusal keeps that connection authenticated as it was
 * (REDTLS_EVENT_AUTH_REFRESH_FAILED) and the new tokens apply from its
 * next connection. */
REDTLS_EXTERN redtls_status redtls_async_cluster_set_tokens(redtls_async_cluster *acl, const char *token,
                                                            const char *token_alt, int flags);

/* Nodes of the current map, as redtls_cluster_node_count/_name/_is_master. */
REDTLS_EXTERN size_t redtls_async_cluster_node_count(const redtls_async_cluster *acl);
REDTLS_EXTERN const char *redtls_async_cluster_node_name(const redtls_async_cluster *acl, size_t i);
REDTLS_EXTERN int redtls_async_cluster_node_is_master(const redtls_async_cluster *acl, size_t i);
/* Counters (the redtls_cluster_stat values). */
REDTLS_EXTERN uint64_t redtls_async_cluster_stat_get(const redtls_async_cluster *acl, redtls_cluster_stat which);

/* ---- loops ---- */

/* What an event loop provides. attach_node: drive a node connection the
 * handle has just made (typically redtls_async_attach_libuv(node, loop));
 * REDTLS_OK, or a failure that ends the commands waiting for that node with
 * it. timer: call redtls_async_cluster_process() after ms (-1: cancel).
 * detach: the handle is freed or detached; release what was made for it
 * (node connections release their own attachment when freed). */
typedef struct redtls_async_cluster_hooks {
    void *data;
    redtls_status (*attach_node)(void *data, redtls_async *node);
    void (*timer)(void *data, int ms);
    void (*detach)(void *data);
} redtls_async_cluster_hooks;

/* Installs hooks (copied): existing node connections are attached at once,
 * later ones when they are made. NULL detaches the handle's timer (node
 * connections stay as they are). detach is the last call to a set of hooks.
 * When attaching an existing node connection fails, the call returns that
 * failure with no hooks installed: the new hooks' detach has been called
 * (the old ones' too), and node connections attached before the failure
 * stay on their loop. */
REDTLS_EXTERN redtls_status redtls_async_cluster_attach(redtls_async_cluster *acl,
                                                        const redtls_async_cluster_hooks *hooks);
/* Does the handle's own timed work: deadlines, retries after a backoff,
 * refreshes. For the timer hook. */
REDTLS_EXTERN redtls_status redtls_async_cluster_process(redtls_async_cluster *acl);
/* Milliseconds until redtls_async_cluster_process() is due (-1: none). */
REDTLS_EXTERN int redtls_async_cluster_timeout_ms(const redtls_async_cluster *acl);

/* The built-in loop: poll() over every node connection and the handle's
 * timer until no command is pending, no connect is under way and no shard
 * subscription is held (redtls/pubsub.h), or
 * timeout_ms passes (-1: no limit). REDTLS_OK, or REDTLS_E_COMMAND_TIMEOUT
 * when time ran out with work pending. Not for a handle attached to hooks.
 * Its callbacks must not free the handle (free it after this returns).
 * Each turn reads every node that has answered (its callbacks run) before
 * it writes to any, so the commands those callbacks issue go out in one
 * write per node; a node's replies are never held back for another's. */
REDTLS_EXTERN redtls_status redtls_async_cluster_run(redtls_async_cluster *acl, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif

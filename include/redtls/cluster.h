/* redtls cluster helpers. Included by <redtls/redtls.h>; the rules stated
 * at the top of that header hold here too. */
#ifndef REDTLS_CLUSTER_H
#define REDTLS_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <redtls/redtls.h> /* REDTLS_EXTERN; harmless when included from it */

#ifdef __cplusplus
extern "C" {
#endif

/* Number of hash slots in a Redis Cluster. */
#define REDTLS_CLUSTER_SLOTS 16384

/* The hash slot of a key, as Redis Cluster computes it (CLUSTER KEYSLOT):
 * CRC16/XMODEM of the key, or of its hash tag, modulo 16384. The hash tag
 * is the part between the first '{' and the first '}' after it, when that
 * part is not empty ("{user1}.name" and "{user1}.mail" share a slot;
 * "{}x", "x{" and "}{x" hash whole). Binary safe; key may be NULL when len
 * is 0. */
REDTLS_EXTERN unsigned redtls_cluster_key_slot(const char *key, size_t len);

/* ------------------------------------------------------------------ */
/* Cluster handle                                                      */
/* ------------------------------------------------------------------ */

/*
 * A Redis Cluster client. Every node connection is made from one copy of
 * the configuration: the same TLS settings, credentials (with token
 * rotation), timeouts and backoff. Each node is verified against its own
 * name, sent as SNI and checked against the certificate: the endpoint the
 * cluster announces for it, or, when that endpoint is an IP address and
 * the node announces a host name next to it (Redis 7 "hostname" metadata),
 * that host name. Otherwise, for clusters that announce bare IP addresses,
 * use redtls_config_set_verify_name() (one name for every node) or
 * redtls_config_map_verify_name() (a name per announced address); both take
 * precedence over the metadata. redtls_config_add_resolve() reaches
 * announced names through tunnels. A node first met by IP in a redirection
 * is connected once a slot-map refresh has told its host name (if any).
 *
 * Routing: the hash slot of a command's keys picks the master serving it.
 * Key positions come from a table of every keyed command of Redis 7.2
 * (README "Cluster mode"); commands without keys go to any master; unknown
 * commands (modules) are routed by their first argument. Connections to
 * nodes are opened on first use and reconnect with the backoff policy.
 *
 * Redirections: MOVED updates the slot at once and asks for a topology
 * refresh; ASK sends ASKING and the command to the named node without
 * changing the map; TRYAGAIN and CLUSTERDOWN are retried after a backoff
 * delay; all within the command timeout. More than max_redirects MOVED/ASK
 * redirections for one command end it with REDTLS_E_CLUSTER_REDIRECTS. A
 * node that cannot be reached triggers a refresh, and the command (which
 * was not sent) is retried until the command timeout, so a failover is
 * absorbed by calls whose timeout exceeds the failover time. With a command
 * timeout of 0 (none), retries end after the configuration's outage limit
 * (redtls_config_set_reconnect_limits) or a minute. Node connections always
 * reconnect (the cluster handles the policy), whatever
 * redtls_config_set_reconnect() says; the configuration must use database
 * 0 (REDTLS_E_INVALID otherwise). A refresh asks one node at a time, each
 * within the command timeout, while the call's commands wait within their
 * own.
 *
 * This handle is a blocking loop over the asynchronous cluster client of
 * <redtls/async_cluster.h> (one connection per node, every node written in
 * one pass, replies taken as they arrive); nothing runs between calls.
 *
 * At-most-once holds across redirections and failover: a redirected
 * command was not executed, so following it is safe; a command lost after
 * being written is REDTLS_E_OUTCOME_UNKNOWN unless REDTLS_CMD_IDEMPOTENT.
 *
 * Multi-key commands whose keys span slots (MGET, MSET, DEL, UNLINK,
 * EXISTS, TOUCH) are split per slot and merged: MGET values in key order,
 * MSET "OK", the others the sum of the integer replies. This is NOT
 * atomic: another client may see some parts before others, and if a part
 * fails the others may have run (the call then returns the part's error
 * reply or status). REDTLS_CLUSTER_STRICT sends them unsplit, so the server
 * answers CROSSSLOT. Other multi-key commands are never split.
 *
 * Commands that change the state of their connection are refused with
 * REDTLS_E_INVALID, since the handle shares its node connections between
 * commands: MULTI/EXEC/DISCARD/WATCH/UNWATCH, (P/S)SUBSCRIBE and their
 * UNSUBSCRIBEs, MONITOR, SELECT, AUTH, HELLO, RESET, QUIT, READONLY,
 * READWRITE, ASKING and the replication commands. For a transaction, open a
 * redtls_conn to the node serving its slot.
 */
typedef struct redtls_cluster redtls_cluster;

/* Flags for the cluster command calls (REDTLS_CMD_IDEMPOTENT also works). */
#define REDTLS_CLUSTER_STRICT 0x100u /* never split a multi-key command */

/* Creates a cluster handle from a copy of cfg. seeds: comma-separated
 * "host:port" entries ("[::1]:7000" for IPv6), e.g. a configuration
 * endpoint; NULL or "" uses cfg's host and port. Nothing is sent yet.
 * Errors: REDTLS_E_INVALID (seed list; cfg on a Unix socket), REDTLS_E_NOMEM,
 * REDTLS_E_CONFIG (TLS settings; details in redtls_config_errmsg(cfg)). */
REDTLS_EXTERN redtls_status redtls_cluster_new(redtls_config *cfg, const char *seeds, redtls_cluster **out);

/* Closes every node connection and frees. Accepts NULL. */
REDTLS_EXTERN void redtls_cluster_free(redtls_cluster *cl);

/* Detailed message of the last failure on cl ("" if none). Borrowed. */
REDTLS_EXTERN const char *redtls_cluster_errmsg(const redtls_cluster *cl);

/* Redirect limit per command (default 5, at least 1). */
REDTLS_EXTERN redtls_status redtls_cluster_set_max_redirects(redtls_cluster *cl, unsigned n);

/* Topology refresh: every interval_ms (default 30000; 0: only when asked
 * for by a MOVED or a node failure), and never more often than once per
 * min_gap_ms (default 500), so a storm of MOVED replies costs one refresh
 * (at the next call: redirections are followed at once). The gap holds
 * without a slot map too: a command that finds none waits for the next
 * allowed attempt within its timeout, and reports why the last one failed.
 * An explicit redtls_cluster_connect() or redtls_cluster_refresh() always
 * asks at once. After a new map is installed, connections to addresses
 * outside it (nodes that left, seeds that are not nodes, redirection
 * targets) are closed once their replies are in. Besides the map's nodes
 * and the seeds, at most 16 other addresses are kept: past that, those no
 * command in progress needs are forgotten. */
REDTLS_EXTERN redtls_status redtls_cluster_set_refresh(redtls_cluster *cl, unsigned interval_ms, unsigned min_gap_ms);

/* Read-only commands (Redis "readonly" flag) go to a random replica of the
 * slot's master, on connections that sent READONLY; off by default. Reads
 * from a replica may be stale. When no replica is usable the master serves
 * them. */
REDTLS_EXTERN redtls_status redtls_cluster_set_read_from_replicas(redtls_cluster *cl, int on);

/* Fetches the slot map (CLUSTER SLOTS) from the seeds in turn; the first
 * valid map is used. Calls do this by themselves when needed; calling it
 * first reports a bad seed or credentials early. Errors: the last seed's
 * connect/TLS/AUTH status, REDTLS_E_CLUSTER_TOPOLOGY. */
REDTLS_EXTERN redtls_status redtls_cluster_connect(redtls_cluster *cl);

/* Fetches the slot map now (ignores the throttle). A map that fails
 * validation (ranges outside 0..16383, overlaps, empty hosts) is refused
 * and the current one kept: REDTLS_E_CLUSTER_TOPOLOGY. */
REDTLS_EXTERN redtls_status redtls_cluster_refresh(redtls_cluster *cl);

/* Runs one command, routed by its keys, and returns its reply (which may
 * be an error reply), within the command timeout. flags:
 * REDTLS_CMD_IDEMPOTENT, REDTLS_CLUSTER_STRICT. Must not be called while
 * pipelined replies are pending (REDTLS_E_STATE). */
REDTLS_EXTERN redtls_status redtls_cluster_command_argv(redtls_cluster *cl, unsigned flags, int argc,
                                                        const char **argv, const size_t *argvlen,
                                                        struct redisReply **reply);

/* printf-style convenience (hiredis format, as redtls_conn_command). */
REDTLS_EXTERN redtls_status redtls_cluster_command(redtls_cluster *cl, struct redisReply **reply, const char *fmt,
                                                   ...);

/* Runs a command on the master serving slot (0..16383), whatever its
 * keys; redirections are followed. For admin commands such as CLUSTER
 * COUNTKEYSINSLOT. */
REDTLS_EXTERN redtls_status redtls_cluster_command_slot(redtls_cluster *cl, unsigned slot, unsigned flags, int argc,
                                                        const char **argv, const size_t *argvlen,
                                                        struct redisReply **reply);

/* Runs a command on one node, named "host:port" as in
 * redtls_cluster_node_name(); redirections are returned as they are, not
 * followed, and a node that cannot be reached fails the call at once (its
 * connect status) instead of being retried. The node need not be in the
 * map (it is verified like any other). */
REDTLS_EXTERN redtls_status redtls_cluster_command_node(redtls_cluster *cl, const char *node, unsigned flags,
                                                        int argc, const char **argv, const size_t *argvlen,
                                                        struct redisReply **reply);

/* Nodes of the current map: count, "host:port" (borrowed), and whether
 * the node serves slots as a master (1) or is a replica (0). */
REDTLS_EXTERN size_t redtls_cluster_node_count(const redtls_cluster *cl);
REDTLS_EXTERN const char *redtls_cluster_node_name(const redtls_cluster *cl, size_t i);
REDTLS_EXTERN int redtls_cluster_node_is_master(const redtls_cluster *cl, size_t i);

/* Pipelines: queue commands (copied), then read their replies in order.
 * The first redtls_cluster_get_reply() runs the whole batch: commands are
 * grouped by node and every node's batch is written before any is read.
 * Replies are handed out in the order the commands were queued; while a
 * call waits for one node, the others' replies are read as they arrive,
 * and a redirected command (MOVED, ASK) is sent on at once, while slower
 * nodes are still awaited. (When every node of the batch is connected and
 * idle, each reply is parsed when its call asks for it, as on a single
 * connection; otherwise the batch runs on the asynchronous engine. The
 * outcomes are the same.) The command timeout counts from the first
 * redtls_cluster_get_reply(): at that time only the commands of nodes
 * that still owe a reply fail (REDTLS_E_COMMAND_TIMEOUT: they may or may
 * not have run), and only those nodes' connections are closed; a reply
 * that had arrived by then is always delivered. The batch is not atomic, and
 * commands on different nodes run in no particular order relative to each
 * other. Commands for the same slot are written in the order queued, but a
 * command retried after TRYAGAIN, CLUSTERDOWN or an unreachable node runs
 * after the ones that were not. */
REDTLS_EXTERN redtls_status redtls_cluster_append_argv(redtls_cluster *cl, unsigned flags, int argc,
                                                       const char **argv, const size_t *argvlen);
REDTLS_EXTERN redtls_status redtls_cluster_get_reply(redtls_cluster *cl, struct redisReply **reply);
/* Queued or not yet read replies. */
REDTLS_EXTERN size_t redtls_cluster_pending(const redtls_cluster *cl);

/* Live token update on every node connection and for connections made
 * later. With REDTLS_REAUTH_NOW each open connection re-authenticates
 * before its next command (a refusal keeps it authenticated as it was, and
 * raises REDTLS_EVENT_AUTH_REFRESH_FAILED). The same rules as
 * redtls_conn_set_tokens():
 * REDTLS_E_INVALID for an empty token or an empty (non-NULL) token_alt.
 * REDTLS_E_NOMEM leaves the previous pair (token and alternate together)
 * in use everywhere; a node connection that cannot take the new pair for
 * lack of memory is closed, to be remade with it. Returns the first
 * failure. */
REDTLS_EXTERN redtls_status redtls_cluster_set_tokens(redtls_cluster *cl, const char *token, const char *token_alt,
                                                      int flags);

/* Counters, for monitoring and tests. */
typedef enum redtls_cluster_stat {
    REDTLS_CLUSTER_STAT_REFRESHES = 1,   /* slot maps installed */
    REDTLS_CLUSTER_STAT_REFRESH_REJECTED = 2, /* replies refused by validation */
    REDTLS_CLUSTER_STAT_MOVED = 3,
    REDTLS_CLUSTER_STAT_ASK = 4,
    REDTLS_CLUSTER_STAT_TRYAGAIN = 5,    /* TRYAGAIN and CLUSTERDOWN replies retried */
    REDTLS_CLUSTER_STAT_NODE_FAILURES = 6, /* node connect/IO failures seen by commands */
    REDTLS_CLUSTER_STAT_SPLITS = 7,      /* multi-key commands split across slots */
    REDTLS_CLUSTER_STAT_REPLICA_READS = 8
} redtls_cluster_stat;
REDTLS_EXTERN uint64_t redtls_cluster_stat_get(const redtls_cluster *cl, redtls_cluster_stat which);

#ifdef __cplusplus
}
#endif

#endif

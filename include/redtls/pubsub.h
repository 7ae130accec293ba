/* redtls Pub/Sub: subscriptions on the asynchronous API, and a blocking
 * subscriber built on it.
 *
 * Rules, beyond those of redtls.h and async.h:
 * Subscriptions
 *   - A subscription is a kind (channel, pattern or shard channel) and a
 *     name (binary-safe). Each has one callback, called on the loop's
 *     thread: with every message published to it, and with notices about
 *     the subscription itself (REDTLS_MSG_SUBSCRIBED when the server
 *     confirmed it, REDTLS_MSG_RESTORED when it was made again on a new
 *     connection, REDTLS_MSG_UNSUBSCRIBED last of all). After
 *     REDTLS_MSG_UNSUBSCRIBED the callback and its userdata are never used
 *     again: that is the moment to free the userdata.
 *   - Subscribing twice to the same kind and name is refused
 *     (REDTLS_E_STATE); unsubscribe first.
 *   - Messages of a subscription are delivered in the order the server
 *     sent them. A message that matches several subscriptions (a channel
 *     and a pattern) reaches each of them, as the server sends it once per
 *     subscription.
 * Reconnection
 *   - When the connection is lost, every subscription is made again on the
 *     next connection, by itself (the handle reconnects for it, with the
 *     usual backoff). Each one's callback then gets REDTLS_MSG_RESTORED:
 *     messages published while it was not subscribed are not delivered
 *     (Pub/Sub keeps nothing), and none is delivered twice because of the
 *     restore. The configuration's event callback also gets
 *     REDTLS_EVENT_SUBSCRIPTIONS_RESTORED.
 *   - A subscription the server refuses (an ACL without the channel, say)
 *     ends with REDTLS_MSG_UNSUBSCRIBED carrying REDTLS_E_REFUSED and the
 *     server's message.
 *   - A connection with subscriptions is watched by a keepalive PING sent
 *     when the server has been silent for the health-check interval
 *     (redtls_config_set_health_check_ms; 30 s when that is 0): a server
 *     that stops answering is noticed within that interval plus the command
 *     timeout (with no command timeout, plus the interval again: then any
 *     reply owed on the handle must come within the interval), and the
 *     subscriptions move to a new connection.
 *   - With reconnection off (or its limits exhausted), a lost connection
 *     leaves the subscriptions waiting for redtls_async_connect, which
 *     restores them; redtls_async_run does not wait for them meanwhile.
 *     Unsubscribing one then ends it from the next pass, with no
 *     connection made for it.
 * Protocols
 *   - RESP2: a connection with subscriptions is in the server's subscriber
 *     mode, where ordinary commands are refused. Ordinary commands issued
 *     while the handle has any subscription are refused at once with
 *     REDTLS_E_STATE (use a second handle); those issued before the first
 *     subscription still get their replies. IAM's scheduled re-AUTH cannot
 *     run in subscriber mode: ElastiCache ends such a connection after 12
 *     hours and the subscriptions are restored on a new one.
 *   - RESP3 (redtls_config_set_protocol(cfg, 3), hiredis 1.x): messages
 *     arrive as pushes, and commands can be mixed with subscriptions on
 *     one handle; other pushes (CLIENT TRACKING's invalidations) still go
 *     to the push callback, and re-authentication (NOAUTH, IAM's schedule)
 *     runs as on any connection.
 *   - SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their UNSUBSCRIBE forms sent as
 *     ordinary commands (redtls_async_command*, redtls_conn_command*) are
 *     refused with REDTLS_E_INVALID: their replies do not pair with
 *     commands. PUBLISH and SPUBLISH are ordinary commands.
 */
#ifndef REDTLS_PUBSUB_H
#define REDTLS_PUBSUB_H

#include <redtls/async.h>
#include <redtls/async_cluster.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum redtls_sub_kind {
    REDTLS_SUB_CHANNEL = 1, /* SUBSCRIBE */
    REDTLS_SUB_PATTERN = 2, /* PSUBSCRIBE */
    REDTLS_SUB_SHARD = 3    /* SSUBSCRIBE (Redis 7): a shard channel */
} redtls_sub_kind;

typedef enum redtls_msg_type {
    /* A message published to the subscription. */
    REDTLS_MSG_MESSAGE = 1,
    /* The server confirmed the subscription (once, the first time). */
    REDTLS_MSG_SUBSCRIBED = 2,
    /* The subscription was made again on a new connection: messages
     * published since the old one was lost may have been missed. */
    REDTLS_MSG_RESTORED = 3,
    /* The subscription ended: unsubscribed (REDTLS_OK), refused by the
     * server (REDTLS_E_REFUSED), or the handle closed or freed
     * (REDTLS_E_CLOSED). The last call of the callback. */
    REDTLS_MSG_UNSUBSCRIBED = 4
} redtls_msg_type;

/* A message or notice, opaque (read it through the accessors below). */
typedef struct redtls_message redtls_message;

/* Type of the message; 0 for NULL. */
REDTLS_EXTERN int redtls_message_type(const redtls_message *m);
/* The subscription it belongs to: its kind and name (a channel, a pattern
 * or a shard channel). */
REDTLS_EXTERN redtls_sub_kind redtls_message_sub_kind(const redtls_message *m);
REDTLS_EXTERN const char *redtls_message_subscription(const redtls_message *m, size_t *len);
/* REDTLS_MSG_MESSAGE: the channel it was published to (for a pattern
 * subscription the matching channel, otherwise the subscription's name)
 * and its payload (binary-safe; a NUL follows it). NULL (*len 0) for
 * notices. */
REDTLS_EXTERN const char *redtls_message_channel(const redtls_message *m, size_t *len);
REDTLS_EXTERN const char *redtls_message_payload(const redtls_message *m, size_t *len);
/* REDTLS_MSG_UNSUBSCRIBED: why (REDTLS_OK when asked for) and a text
 * naming the cause ("" when none). REDTLS_OK / "" for other types. */
REDTLS_EXTERN redtls_status redtls_message_status(const redtls_message *m);
REDTLS_EXTERN const char *redtls_message_detail(const redtls_message *m);
/* Frees a message returned by redtls_subscriber_next(). Accepts NULL. The
 * messages passed to asynchronous callbacks are borrowed: never free
 * those. */
REDTLS_EXTERN void redtls_message_free(redtls_message *m);

/* ------------------------------------------------------------------ */
/* Asynchronous API                                                    */
/* ------------------------------------------------------------------ */

/* m is borrowed for the call. The callback may subscribe, unsubscribe,
 * issue commands, close the handle or free it. */
typedef void (*redtls_async_message_cb)(redtls_async *ac, const redtls_message *m, void *userdata);

/* Subscribes to name[0..len) of the given kind. Returns at once: the
 * subscription is sent with the next pass of the loop (after connecting,
 * when not connected), and cb gets REDTLS_MSG_SUBSCRIBED once the server
 * confirmed it. Errors (cb never called): REDTLS_E_INVALID (NULL handle
 * or cb, an unknown kind, an empty name), REDTLS_E_STATE (already
 * subscribed to it), REDTLS_E_LIMIT (the handle's pending limit),
 * REDTLS_E_NOMEM, REDTLS_E_UNAVAILABLE (the reconnect limits are
 * exhausted). */
REDTLS_EXTERN redtls_status redtls_async_subscribe(redtls_async *ac, redtls_sub_kind kind, const char *name, size_t len,
                                                   redtls_async_message_cb cb, void *userdata);

/* Ends a subscription: no message is delivered to it from now on, and its
 * callback gets REDTLS_MSG_UNSUBSCRIBED (from the loop, never from inside
 * this call) once the server confirmed it or the connection is gone.
 * REDTLS_E_STATE when there is no such subscription (or it is already
 * ending); REDTLS_E_LIMIT / REDTLS_E_NOMEM as for commands. */
REDTLS_EXTERN redtls_status redtls_async_unsubscribe(redtls_async *ac, redtls_sub_kind kind, const char *name,
                                                     size_t len);

/* Subscriptions the handle holds (including those being set up or ended). */
REDTLS_EXTERN size_t redtls_async_subscriptions(const redtls_async *ac);

/* ------------------------------------------------------------------ */
/* Sharded Pub/Sub on the asynchronous cluster client                  */
/* ------------------------------------------------------------------ */

/* Each shard channel is subscribed on the master that owns its slot (the
 * channel hashes like a key, hash tags included), through a second
 * connection to that node made for subscriptions. The subscription follows
 * its slot: when the node answers MOVED, when it ends the subscription
 * because the slot migrated away (Redis 7 sends SUNSUBSCRIBE), when a new
 * slot map names another owner (a failover) or when the node is gone, it
 * is made again on the owner the refreshed map names, and the callback
 * gets REDTLS_MSG_RESTORED once it is confirmed there (messages published
 * meanwhile were not delivered). The callback's rules are those of
 * redtls_async_message_cb; m's kind is always REDTLS_SUB_SHARD.
 * SPUBLISH is an ordinary command of the cluster client. Subscriptions
 * count as work for redtls_async_cluster_run. */
typedef void (*redtls_async_cluster_message_cb)(redtls_async_cluster *acl, const redtls_message *m,
                                                void *userdata);

/* Subscribes to a shard channel. Returns at once; cb gets
 * REDTLS_MSG_SUBSCRIBED once the owner confirmed it (after the first slot
 * map, when there is none yet). Errors (cb never called): REDTLS_E_INVALID
 * (NULL handle or cb, empty name), REDTLS_E_STATE (already subscribed, or
 * being unsubscribed), REDTLS_E_NOMEM. */
REDTLS_EXTERN redtls_status redtls_async_cluster_ssubscribe(redtls_async_cluster *acl, const char *channel,
                                                            size_t len, redtls_async_cluster_message_cb cb,
                                                            void *userdata);
/* Ends a shard subscription: no message is delivered from now on, and cb
 * gets REDTLS_MSG_UNSUBSCRIBED from the loop. REDTLS_E_STATE when there is
 * no such subscription (or it is already ending). */
REDTLS_EXTERN redtls_status redtls_async_cluster_sunsubscribe(redtls_async_cluster *acl, const char *channel,
                                                              size_t len);
/* Shard subscriptions the handle holds. */
REDTLS_EXTERN size_t redtls_async_cluster_subscriptions(const redtls_async_cluster *acl);

/* ------------------------------------------------------------------ */
/* Blocking subscriber                                                 */
/* ------------------------------------------------------------------ */

/* A connection for subscriptions driven by blocking calls: an
 * asynchronous handle on the built-in loop underneath, so it reconnects
 * and restores its subscriptions in the same way. One thread at a time. */
typedef struct redtls_subscriber redtls_subscriber;

/* Copies cfg. Nothing is connected until the first subscribe. Errors:
 * REDTLS_E_INVALID, REDTLS_E_CONFIG (details in redtls_config_errmsg),
 * REDTLS_E_NOMEM. */
REDTLS_EXTERN redtls_status redtls_subscriber_new(redtls_config *cfg, redtls_subscriber **out);
/* A blocking subscriber for the shard channels of a cluster: the
 * asynchronous cluster client underneath (redtls_async_cluster_new's seeds
 * and rules), so each subscription follows its slot as described above and
 * a move shows up as REDTLS_MSG_RESTORED from redtls_subscriber_next. Only
 * REDTLS_SUB_SHARD is taken (REDTLS_E_INVALID otherwise). */
REDTLS_EXTERN redtls_status redtls_subscriber_new_cluster(redtls_config *cfg, const char *seeds,
                                                          redtls_subscriber **out);
/* Closes the connection(s) and frees everything, including messages not
 * taken. Accepts NULL. */
REDTLS_EXTERN void redtls_subscriber_free(redtls_subscriber *s);

/* Subscribes and waits for the server's confirmation, within the command
 * timeout (connecting first when needed, within its own timeouts).
 * REDTLS_OK: subscribed, and every message published from now on will be
 * delivered. Errors: those of redtls_async_subscribe; REDTLS_E_REFUSED
 * (the server refused it, its message in redtls_subscriber_errmsg);
 * REDTLS_E_COMMAND_TIMEOUT (no confirmation in time: the subscription
 * stays and may still be confirmed); connection failures. Messages that
 * arrive meanwhile are kept for redtls_subscriber_next(). */
REDTLS_EXTERN redtls_status redtls_subscriber_subscribe(redtls_subscriber *s, redtls_sub_kind kind, const char *name,
                                                        size_t len);
/* Unsubscribes and waits for the confirmation (within the command
 * timeout). No message of it is delivered afterwards, including those
 * already waiting. REDTLS_E_STATE when not subscribed. */
REDTLS_EXTERN redtls_status redtls_subscriber_unsubscribe(redtls_subscriber *s, redtls_sub_kind kind, const char *name,
                                                          size_t len);

/* Waits up to timeout_ms (0: only what has already arrived; -1: without
 * limit) for the next message or notice. REDTLS_OK with *out a message
 * (yours: redtls_message_free) or NULL when none came in time. Notices
 * delivered here: REDTLS_MSG_RESTORED (the connection was remade: a gap)
 * and REDTLS_MSG_UNSUBSCRIBED when the server ended a subscription.
 * While it waits the subscriber reconnects as needed. Errors:
 * REDTLS_E_INVALID, REDTLS_E_STATE (no subscription), REDTLS_E_UNAVAILABLE
 * (the reconnect limits are exhausted; the subscriptions are restored by
 * the next redtls_subscriber_next once a connection can be made again).
 * *out is NULL on errors. */
REDTLS_EXTERN redtls_status redtls_subscriber_next(redtls_subscriber *s, int timeout_ms, redtls_message **out);

/* Messages received and not yet taken. */
REDTLS_EXTERN size_t redtls_subscriber_backlog(const redtls_subscriber *s);

/* The last error's detailed message ("" when none). Borrowed. */
REDTLS_EXTERN const char *redtls_subscriber_errmsg(const redtls_subscriber *s);

#ifdef __cplusplus
}
#endif

#endif /* REDTLS_PUBSUB_H */

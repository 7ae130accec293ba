/*
 * redtls: a TLS-first client library for Redis and Valkey.
 *
 * This is the one header applications include.
 *
 * Rules that hold for every function below
 * ----------------------------------------
 * Ownership
 *   - Every public type is opaque and created by a *_new function; the
 *     matching *_free function accepts NULL.
 *   - Input strings and byte buffers are copied; the caller may free or reuse
 *     them as soon as the call returns.
 *   - A returned `const char *` is borrowed from the handle it came from and
 *     stays valid until the next call on that handle (or its free).
 *   - Objects returned through an out-parameter belong to the caller. On
 *     failure every out-parameter is set to NULL.
 *   - A connection copies its configuration when it is created; later changes
 *     to the configuration do not reach existing connections.
 *   - Replies are hiredis `redisReply` objects; free them with
 *     redtls_reply_free() (or hiredis's freeReplyObject()).
 * Errors
 *   - Functions return a redtls_status. REDTLS_OK is 0; other values are never
 *     renumbered, new ones are only appended. redtls_strerror() gives a static
 *     description; redtls_conn_errmsg() / redtls_config_errmsg() give the
 *     detailed message of the last failure on that handle.
 *   - A Redis error reply ("-ERR ...") is not a library failure: the call
 *     returns REDTLS_OK and the reply has type REDTLS_REPLY_ERROR.
 *   - Secrets (tokens, private keys) never appear in any message.
 * Threads
 *   - There is no global state and no initialisation call. A handle may be
 *     used by one thread at a time; different handles may be used from
 *     different threads in parallel.
 *   - A host name that needs a lookup is resolved on a short-lived thread
 *     the library starts (all signals blocked on it), so the lookup can be
 *     bounded by the connect timeout. A lookup given up on keeps its thread
 *     until the system resolver answers; a connection keeps at most one
 *     such lookup and takes it up again on its next attempt. IP literals,
 *     "localhost" (answered with 127.0.0.1 and ::1, RFC 6761) and address
 *     overrides to a literal start no thread. Once a process has started a
 *     thread, glibc runs its system calls in their multi-threaded form for
 *     good, and a fork() while a lookup runs leaves the child's resolver
 *     as glibc documents for fork in threaded processes.
 * Side effects
 *   - The library never prints, never exits or aborts, and never changes
 *     signal handlers. Writes use MSG_NOSIGNAL, so a closed peer never raises
 *     SIGPIPE.
 *   - OpenSSL's per-thread error queue: reads and writes leave what the
 *     application put there alone; the library empties it after a TLS
 *     failure it reports and around a handshake.
 * Memory
 *   - A TLS connection holds OpenSSL's two record buffers and a 16 KiB read
 *     buffer (about 50 KiB) while it is used back to back. When a connection
 *     has nothing owed and its previous such quiet moment is a second or
 *     more ago (or it was just set up), it gives them back, so a connection
 *     used now and then, or connected and idle, holds about 33 KiB. One
 *     that stops right after a busy spell keeps them until its next call.
 */
#ifndef REDTLS_REDTLS_H
#define REDTLS_REDTLS_H

#include <stddef.h>
#include <stdint.h>

#include <redtls/version.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define REDTLS_EXTERN __declspec(dllimport)
#elif defined(REDTLS_BUILDING) && defined(__GNUC__)
#define REDTLS_EXTERN __attribute__((visibility("default")))
#else
#define REDTLS_EXTERN
#endif

#if defined(__GNUC__)
#define REDTLS_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define REDTLS_PRINTF(fmt, args)
#endif

/* hiredis's reply type. Include <hiredis/hiredis.h> to read its fields
 * directly, or use the redtls_reply_* accessors, which do not depend on the
 * struct layout (it differs between hiredis versions). */
struct redisReply;

/* ------------------------------------------------------------------ */
/* Status codes                                                        */
/* ------------------------------------------------------------------ */

typedef enum redtls_status {
    REDTLS_OK = 0,
    /* A NULL handle, a negative count, or an out-of-range value. */
    REDTLS_E_INVALID = 1,
    /* An allocation failed. Nothing was changed. */
    REDTLS_E_NOMEM = 2,
    /* A URL could not be parsed; the message names the part. */
    REDTLS_E_URL = 3,
    /* The configuration cannot be used: unreadable CA or certificate file,
     * a key that does not match its certificate, an impossible combination. */
    REDTLS_E_CONFIG = 4,
    /* The host name could not be resolved. */
    REDTLS_E_RESOLVE = 5,
    /* No address accepted the TCP (or Unix socket) connection. */
    REDTLS_E_CONNECT = 6,
    /* The connect timeout expired before a TCP connection was established. */
    REDTLS_E_CONNECT_TIMEOUT = 7,
    /* The TLS handshake did not complete within the handshake timeout (for
     * example a plain-text port, or a server that accepts and never answers). */
    REDTLS_E_HANDSHAKE_TIMEOUT = 8,
    /* The command timeout expired. The connection is closed, since a late
     * reply must never be taken for the answer to a later command. */
    REDTLS_E_COMMAND_TIMEOUT = 9,
    /* A TLS failure other than the certificate: during the handshake a
     * protocol-version mismatch, no shared cipher, a fatal alert or a peer
     * that does not speak TLS; afterwards a corrupt record or a fatal alert. */
    REDTLS_E_TLS = 10,
    /* The server certificate chain was not accepted: untrusted issuer,
     * self-signed, expired, not yet valid, revoked or malformed. */
    REDTLS_E_TLS_VERIFY = 11,
    /* The server certificate is valid but not for the name (or IP address)
     * being verified. */
    REDTLS_E_TLS_HOSTNAME = 12,
    /* The server requires a client certificate and none (or an unacceptable
     * one) was presented. */
    REDTLS_E_TLS_CLIENT_CERT = 13,
    /* The server refused the credentials (AUTH failed). */
    REDTLS_E_AUTH = 14,
    /* A step of the connection set-up after AUTH (SELECT, CLIENT SETNAME)
     * was refused by the server, or, under protocol 3, the server does not
     * speak RESP3 (no HELLO, NOPROTO). */
    REDTLS_E_SETUP = 15,
    /* A socket read or write failed (connection reset, broken pipe, ...). */
    REDTLS_E_IO = 16,
    /* The peer closed the connection without a TLS close_notify, or in the
     * middle of a reply. Never reported as a clean end. */
    REDTLS_E_EOF = 17,
    /* The connection was closed cleanly while a reply was still expected:
     * by the peer (TLS close_notify), or, in the asynchronous API, by the
     * application (redtls_async_close / redtls_async_free). The message
     * says which. */
    REDTLS_E_CLOSED = 18,
    /* The server sent bytes that are not valid RESP. */
    REDTLS_E_PROTOCOL = 19,
    /* A reply exceeded a reader limit (array elements, bulk length, bytes
     * buffered, nesting depth). The connection is closed. */
    REDTLS_E_LIMIT = 20,
    /* The call does not fit the handle's state: not connected, no reply
     * pending, a pipeline already in progress. */
    REDTLS_E_STATE = 21,
    /* The connection broke after the command's bytes may have reached the
     * server: it may or may not have run. It is not resent (at-most-once)
     * unless it was sent with REDTLS_CMD_IDEMPOTENT. */
    REDTLS_E_OUTCOME_UNKNOWN = 22,
    /* The server could not be reached within the call's deadline and the
     * reconnect backoff schedules the next attempt later (or the reconnect
     * limits are exhausted); the message gives the last cause. The command
     * was not sent. */
    REDTLS_E_UNAVAILABLE = 23,
    /* Cluster: a command was redirected (MOVED/ASK) more times than the
     * redirect limit allows; the message names the slot and the last
     * target. The last redirection was not followed. */
    REDTLS_E_CLUSTER_REDIRECTS = 24,
    /* Cluster: no usable slot map (no seed or node answered CLUSTER SLOTS
     * with a valid map), or the slot of a command has no master in it. */
    REDTLS_E_CLUSTER_TOPOLOGY = 25,
    /* The server refused a request of the library's own with an error
     * reply (a subscription, say); the message quotes the server. */
    REDTLS_E_REFUSED = 26
} redtls_status;

/* Static, human-readable description of a status. Never NULL. */
REDTLS_EXTERN const char *redtls_strerror(redtls_status status);

/* The library version as "MAJOR.MINOR.PATCH" (static storage) and as
 * MAJOR*10000 + MINOR*100 + PATCH, for comparing against the header's
 * REDTLS_VERSION_NUMBER at run time. */
REDTLS_EXTERN const char *redtls_version(void);
REDTLS_EXTERN unsigned redtls_version_number(void);

/* ------------------------------------------------------------------ */
/* Limits and defaults (each both a macro and a function)              */
/* ------------------------------------------------------------------ */

/* Connect timeout: TCP connect over all resolved addresses. */
#define REDTLS_DEFAULT_CONNECT_TIMEOUT_MS 5000
/* TLS handshake (and the AUTH/SELECT/SETNAME round trips that follow). */
#define REDTLS_DEFAULT_HANDSHAKE_TIMEOUT_MS 5000
/* Per command: from the first byte written to the last byte of its reply. */
#define REDTLS_DEFAULT_COMMAND_TIMEOUT_MS 5000
/* Largest array (multi-bulk) a reply may announce. */
#define REDTLS_DEFAULT_MAX_ARRAY_ELEMENTS ((size_t)16 * 1024 * 1024)
/* Largest bulk string a reply may announce: Redis's own proto-max-bulk-len. */
#define REDTLS_DEFAULT_MAX_BULK_LEN ((size_t)512 * 1024 * 1024)
/* Most bytes an unfinished reply may hold in memory: input not parsed yet
 * plus the reply objects built so far (about 80 bytes each, string
 * payloads not included). */
#define REDTLS_DEFAULT_MAX_BUFFER ((size_t)512 * 1024 * 1024 + (size_t)64 * 1024)
/* Deepest nesting of arrays in a reply (hiredis 0.14 cannot go deeper). */
#define REDTLS_MAX_REPLY_DEPTH 7
/* Reconnect backoff: first delay and cap. */
#define REDTLS_DEFAULT_BACKOFF_BASE_MS 100
#define REDTLS_DEFAULT_BACKOFF_CAP_MS 5000
/* TCP_USER_TIMEOUT. */
#define REDTLS_DEFAULT_TCP_USER_TIMEOUT_MS 30000

REDTLS_EXTERN unsigned redtls_default_connect_timeout_ms(void);
REDTLS_EXTERN unsigned redtls_default_handshake_timeout_ms(void);
REDTLS_EXTERN unsigned redtls_default_command_timeout_ms(void);
REDTLS_EXTERN size_t redtls_default_max_array_elements(void);
REDTLS_EXTERN size_t redtls_default_max_bulk_len(void);
REDTLS_EXTERN size_t redtls_default_max_buffer(void);
REDTLS_EXTERN unsigned redtls_max_reply_depth(void);
REDTLS_EXTERN unsigned redtls_default_backoff_base_ms(void);
REDTLS_EXTERN unsigned redtls_default_backoff_cap_ms(void);
REDTLS_EXTERN unsigned redtls_default_tcp_user_timeout_ms(void);

/* ------------------------------------------------------------------ */
/* Configuration                                                       */
/* ------------------------------------------------------------------ */

typedef struct redtls_config redtls_config;

typedef enum redtls_tls_version {
    REDTLS_TLS_1_2 = 12,
    REDTLS_TLS_1_3 = 13
} redtls_tls_version;

/* A new configuration with the hardened defaults: host 127.0.0.1 port 6379,
 * TLS on, TLS 1.2 minimum, system CA store, hostname verification on, no
 * credentials, database 0, default timeouts and limits.
 * Errors: REDTLS_E_INVALID (out NULL), REDTLS_E_NOMEM. */
REDTLS_EXTERN redtls_status redtls_config_new(redtls_config **out);

/* Frees the configuration and wipes the secrets it holds. Accepts NULL. */
REDTLS_EXTERN void redtls_config_free(redtls_config *cfg);

/* Detailed message of the last failed call on cfg ("" if none). Never
 * contains a secret. Borrowed until the next call on cfg. */
REDTLS_EXTERN const char *redtls_config_errmsg(const redtls_config *cfg);

/* Applies a URL on top of the current settings. Forms:
 *   rediss://[[USER]:TOKEN@]HOST[:PORT][/DB][?PARAMS]   TLS (port 6379)
 *   redis://[[USER]:TOKEN@]HOST[:PORT][/DB][?PARAMS]    plain TCP
 *   unix://[[USER]:TOKEN@]/PATH/TO/SOCKET[?db=N&...]    Unix socket
 * HOST may be a name, an IPv4 address or a bracketed IPv6 address; it is
 * set as with redtls_config_set_host() (which clears a Unix socket path),
 * and a unix:// path as with redtls_config_set_unix_path() (which clears the
 * host). unix:// also turns TLS off, as redtls_config_set_tls(cfg, 0) does:
 * a host set later connects over plain TCP unless TLS is turned on again
 * (redtls_config_set_tls(cfg, 1) or a rediss:// URL). A HOST with a trailing
 * dot follows the rule under redtls_config_set_verify_name(). USER and
 * TOKEN are percent-decoded. Query parameters (see README "URL format"):
 *   cacert=FILE capath=DIR cert=FILE key=FILE sni=NAME tls_min=1.2|1.3
 *   connect_timeout=MS handshake_timeout=MS timeout=MS (command)
 *   name=CLIENTNAME db=N protocol=2|3
 * Errors: REDTLS_E_URL (message names the bad part, never the token),
 * REDTLS_E_CONFIG (a named file cannot be used), REDTLS_E_NOMEM.
 * On failure cfg is unchanged. */
REDTLS_EXTERN redtls_status redtls_config_set_url(redtls_config *cfg, const char *url);

/* Server address: a host and port, or a Unix socket path, never both. The
 * last of these calls (or of redtls_config_set_url()) decides: setting a
 * host clears the Unix socket path; setting a Unix socket path clears the
 * host (a later redtls_config_set_host() names host and port anew). A
 * failed call changes nothing. A Unix socket never uses TLS (the TLS
 * settings are kept for a later host), and redtls_cluster_new() refuses a
 * configuration whose address is a Unix socket (REDTLS_E_INVALID). host may
 * be a DNS name, an IPv4 address or an IPv6 address, with or without
 * brackets; a DNS name may end in a dot (see the server identity rules
 * under redtls_config_set_verify_name()). Errors: REDTLS_E_INVALID (empty
 * host or path, port 0), REDTLS_E_NOMEM. */
REDTLS_EXTERN redtls_status redtls_config_set_host(redtls_config *cfg, const char *host, uint16_t port);
REDTLS_EXTERN redtls_status redtls_config_set_unix_path(redtls_config *cfg, const char *path);

/* TLS on (1, the default) or off (0: plain TCP or Unix socket, for local
 * use only). */
REDTLS_EXTERN redtls_status redtls_config_set_tls(redtls_config *cfg, int enabled);

/* Trust anchors. Without any of these the system CA store is used. Each call
 * replaces the previous source of the same kind; they can be combined. The
 * PEM may hold several certificates. Errors: REDTLS_E_CONFIG when the file
 * cannot be read or holds no certificate. */
REDTLS_EXTERN redtls_status redtls_config_set_ca_file(redtls_config *cfg, const char *path);
REDTLS_EXTERN redtls_status redtls_config_set_ca_dir(redtls_config *cfg, const char *path);
REDTLS_EXTERN redtls_status redtls_config_set_ca_pem(redtls_config *cfg, const char *pem, size_t len);

/* Mutual TLS: certificate chain (leaf first) and private key, from files or
 * PEM bytes. The key is held in wiped memory and checked against the
 * certificate here: REDTLS_E_CONFIG when they do not match or cannot be
 * parsed. Encrypted keys are not supported. */
REDTLS_EXTERN redtls_status redtls_config_set_client_cert_file(redtls_config *cfg, const char *cert_path,
                                                               const char *key_path);
REDTLS_EXTERN redtls_status redtls_config_set_client_cert_pem(redtls_config *cfg, const char *cert_pem,
                                                              size_t cert_len, const char *key_pem,
                                                              size_t key_len);

/* The name sent as SNI and checked against the server certificate, when it
 * differs from the host connected to (an IP address, a tunnel endpoint).
 * NULL restores the default: the connect host.
 *
 * Server identity (RFC 9525), for every name verified: this one, a host, a
 * URL host, a mapped name (redtls_config_map_verify_name()) or a name a
 * cluster announces.
 *   - The name is matched against the certificate's subjectAltName only:
 *     DNS names against DNS entries (a wildcard covers one whole left-most
 *     label), IP literals against IP entries. The subject CN is never used;
 *     a certificate without a matching subjectAltName is refused with
 *     REDTLS_E_TLS_HOSTNAME even when its CN equals the name.
 *   - A trailing dot ends an absolute name ("cache.example.com.") and is
 *     dropped: the name without it is verified and sent as SNI (which never
 *     carries the dot), as curl and Go do. Only the TLS side drops it: the
 *     TCP connection resolves the host as given, and address overrides and
 *     verify-name mappings are looked up by the host as given (with its
 *     dot). A name that is empty or still ends in a dot after that ("a..")
 *     fails the connection with REDTLS_E_CONFIG.
 *   - SNI is sent for DNS names, never for IP literals. */
REDTLS_EXTERN redtls_status redtls_config_set_verify_name(redtls_config *cfg, const char *name);

/* Address override, like curl's --resolve: when asked to connect to
 * host:port, connect to address instead (an IP address or another name,
 * e.g. the local end of an SSH tunnel or a bastion), while SNI and
 * certificate verification still use host. port 0 matches any port; an
 * exact port wins over 0; a second entry for the same host and port
 * replaces the first. Applies to the configured host and, in cluster
 * mode, to every node address the cluster announces or redirects to. */
REDTLS_EXTERN redtls_status redtls_config_add_resolve(redtls_config *cfg, const char *host, uint16_t port,
                                                      const char *address);

/* Verify-name mapping: a connection to host (as configured or as announced
 * by a cluster) sends SNI and checks the certificate against name instead
 * of host. For clusters that announce bare IP addresses while their
 * certificates carry DNS names: map each announced address to its node's
 * name. A name fixed with redtls_config_set_verify_name() takes precedence
 * over every mapping (one name for every node, e.g. a wildcard
 * certificate's "node.example.com"). */
REDTLS_EXTERN redtls_status redtls_config_map_verify_name(redtls_config *cfg, const char *host, const char *name);

/* Removes every address override and verify-name mapping. */
REDTLS_EXTERN redtls_status redtls_config_clear_host_maps(redtls_config *cfg);

/* Lowest TLS version accepted: REDTLS_TLS_1_2 (default) or REDTLS_TLS_1_3. */
REDTLS_EXTERN redtls_status redtls_config_set_tls_min_version(redtls_config *cfg, redtls_tls_version v);

/* Narrow the TLS 1.2 cipher list / TLS 1.3 cipher suites (OpenSSL syntax).
 * The security level (2) and the ECDHE+AEAD rule for TLS 1.2 still apply:
 * ciphers outside them are never offered. Errors: REDTLS_E_CONFIG when
 * nothing usable is left. */
REDTLS_EXTERN redtls_status redtls_config_set_tls12_ciphers(redtls_config *cfg, const char *list);
REDTLS_EXTERN redtls_status redtls_config_set_tls13_ciphersuites(redtls_config *cfg, const char *list);

/* INSECURE. Turns certificate and hostname verification off, so any party
 * on the network path can read and change the traffic, credentials
 * included. Only for throwaway local experiments; never for a server
 * reached over a network. 1 disables verification, 0 restores it. */
REDTLS_EXTERN redtls_status redtls_config_set_insecure_skip_verify(redtls_config *cfg, int skip);

/* Credentials. With a token and no user, "AUTH token" is sent; with both,
 * "AUTH user token" (Redis 6+ ACL). The token is held in wiped memory.
 * NULL clears. */
REDTLS_EXTERN redtls_status redtls_config_set_user(redtls_config *cfg, const char *user);
REDTLS_EXTERN redtls_status redtls_config_set_token(redtls_config *cfg, const char *token);

/* A second token, valid at the same time as the first during a rotation
 * window. On connect the preferred token (initially the first) is tried;
 * when the server refuses it as a credential failure (WRONGPASS, "invalid
 * password", "invalid username-password pair"), the other one is tried on
 * the same connection. If that one is accepted it becomes the preferred
 * token for every later connection of the handle and
 * REDTLS_EVENT_AUTH_TOKEN_SWITCHED is reported. Both refused: REDTLS_E_AUTH,
 * whose message quotes the server's answers but never a token. NULL clears.
 * Held in wiped memory. */
REDTLS_EXTERN redtls_status redtls_config_set_token_alt(redtls_config *cfg, const char *token);

/* ElastiCache's AUTH token rules: 16 to 128 printable ASCII characters,
 * none of '/', '"', '@' (and no space). Returns REDTLS_OK or
 * REDTLS_E_INVALID with *reason (may be NULL) set to a static explanation
 * that never quotes the token. Usable on its own. */
REDTLS_EXTERN redtls_status redtls_token_check_elasticache(const char *token, const char **reason);

/* Opt-in strict mode: every token given to this configuration (setters,
 * URL, credential callback, live updates of its connections) must pass
 * redtls_token_check_elasticache(). Turning it on checks the tokens
 * already set. Plain Redis ACL passwords are not restricted by default. */
REDTLS_EXTERN redtls_status redtls_config_set_strict_elasticache_tokens(redtls_config *cfg, int on);

/* Credential callback, for short-lived tokens (IAM auth tokens and the
 * like). Called for each new connection with attempt 0, and again with
 * attempt 1 when the server refused the credentials it returned. Write a
 * NUL-terminated user (leave it empty for the default user) and token into
 * the buffers (user_cap and token_cap bytes; redtls wipes them after use)
 * and return 0; return REDTLS_CREDENTIAL_PENDING (below) to be asked again
 * shortly; return any other non-zero value to fail the connection with
 * REDTLS_E_AUTH and the message written into errbuf. When set, it replaces the tokens
 * configured with the setters. Called on the thread using the
 * connection. */
/* What a credential callback returns when its answer is not ready yet (a
 * token service is being asked): redtls asks again with the same attempt
 * number, first after 5 ms and then at doubling intervals of at most
 * 100 ms, until the answer comes or the handshake timeout passes
 * (REDTLS_E_HANDSHAKE_TIMEOUT; on an open connection being re-authenticated,
 * the command timeout). The blocking API waits in between; nothing else
 * waits. */
#define REDTLS_CREDENTIAL_PENDING 0x50454e44 /* 'PEND' */
typedef int (*redtls_credential_cb)(void *userdata, int attempt, char *user, size_t user_cap, char *token,
                                    size_t token_cap, char *errbuf, size_t errbuf_cap);
REDTLS_EXTERN redtls_status redtls_config_set_credential_callback(redtls_config *cfg, redtls_credential_cb cb,
                                                                  void *userdata);

/* ElastiCache / MemoryDB IAM authentication.
 *
 * With IAM the password is a SigV4 presigned request made in the library:
 * `<cache_name>/?Action=connect&User=<user_id>[&ResourceType=ServerlessCache]`
 * signed for `service` in `region` with the AWS credentials, valid for 15
 * minutes. redtls sends it as "AUTH <user_id> <token>", reuses it for the
 * handle's (re)connections while it is younger than 10 minutes (then makes
 * a new one), makes a fresh one and retries once when the server refuses
 * it (clock skew, rotated keys), and re-authenticates an open connection
 * before the server's 12-hour limit (see redtls_config_set_iam_reauth_ms).
 * A cluster handle's node connections each keep their own token. On
 * connect, a failure to make a token (no credentials, the source failed) is
 * REDTLS_E_AUTH with the cause in the message. A scheduled
 * re-authentication that fails keeps the connection and reports
 * REDTLS_EVENT_AUTH_REFRESH_FAILED.
 *
 * cache_name: the replication group id or serverless cache name, in lower
 * case as AWS requires; user_id: the ElastiCache user id (authentication
 * mode IAM), sent as the ACL user; region: e.g. "us-east-1"; flags:
 * REDTLS_IAM_SERVERLESS for a serverless cache. NULL cache_name turns IAM
 * off. IAM replaces the token setters and the credential callback. TLS is
 * required: redtls_conn_new() and redtls_cluster_new() refuse an IAM
 * configuration without it (REDTLS_E_CONFIG). Errors: REDTLS_E_INVALID
 * (names the field), REDTLS_E_NOMEM. */
#define REDTLS_IAM_SERVERLESS 1u
REDTLS_EXTERN redtls_status redtls_config_set_iam(redtls_config *cfg, const char *cache_name, const char *user_id,
                                                  const char *region, unsigned flags);
/* The signing service: "elasticache" (the default) or "memorydb". */
REDTLS_EXTERN redtls_status redtls_config_set_iam_service(redtls_config *cfg, const char *service);
/* How long an open connection keeps its authentication before it sends a
 * fresh AUTH: default REDTLS_DEFAULT_IAM_REAUTH_MS (11 hours; ElastiCache
 * closes a connection 12 hours after it authenticated, so more than that
 * only makes sense for a server without the limit). It happens at the start
 * of a call while the connection owes no replies; 0: never. */
#define REDTLS_DEFAULT_IAM_REAUTH_MS (11u * 3600u * 1000u)
REDTLS_EXTERN redtls_status redtls_config_set_iam_reauth_ms(redtls_config *cfg, uint32_t ms);

/* AWS credentials for IAM, from one of three sources (the last call wins):
 * - explicit: access key id, secret access key, optional session token
 *   (NULL or ""), held in wiped memory;
 * - the environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
 *   AWS_SESSION_TOKEN (optional), read each time a token is made;
 * - a callback, for instance metadata, STS, a vault: it writes
 *   NUL-terminated values into the buffers (redtls wipes them after use;
 *   an empty session token means none) and returns 0, or returns non-zero
 *   with a reason in errbuf. Called on the thread using the connection,
 *   each time a token is made.
 * The library itself never goes to the network for credentials. */
REDTLS_EXTERN redtls_status redtls_config_set_aws_credentials(redtls_config *cfg, const char *access_key_id,
                                                              const char *secret_access_key,
                                                              const char *session_token);
REDTLS_EXTERN redtls_status redtls_config_set_aws_credentials_from_env(redtls_config *cfg);
typedef int (*redtls_aws_credentials_cb)(void *userdata, char *access_key_id, size_t id_cap, char *secret_key,
                                         size_t secret_cap, char *session_token, size_t session_cap, char *errbuf,
                                         size_t errbuf_cap);
REDTLS_EXTERN redtls_status redtls_config_set_aws_credentials_callback(redtls_config *cfg,
                                                                       redtls_aws_credentials_cb cb,
                                                                       void *userdata);

/* Makes the IAM token cfg's connections would send, signed at unix_time
 * (seconds since the epoch, at most 1e11; 0: now), into out (cap bytes,
 * NUL-terminated). For scripts and
 * checks (redtls-cli --iam-token); it is a credential: wipe it after use.
 * Errors (details in redtls_config_errmsg(cfg), never a secret):
 * REDTLS_E_CONFIG (IAM not set, no credentials), REDTLS_E_AUTH (the
 * credential source failed), REDTLS_E_LIMIT (cap too small). */
REDTLS_EXTERN redtls_status redtls_iam_token(redtls_config *cfg, int64_t unix_time, char *out, size_t cap);

/* Events reported to the optional event callback. Details never contain a
 * secret. */
typedef enum redtls_event_type {
    /* The non-preferred token was accepted after the preferred one was
     * refused; detail says which ("token 2 accepted, token 1 refused"). */
    REDTLS_EVENT_AUTH_TOKEN_SWITCHED = 1,
    /* An open connection re-authenticated (live token update, or after a
     * NOAUTH reply). */
    REDTLS_EVENT_AUTH_REFRESHED = 2,
    /* A connection was established; detail: "full handshake", "resumed TLS
     * session" or "plain TCP". */
    REDTLS_EVENT_CONNECTED = 3,
    /* An established connection was lost or closed; detail: the cause. */
    REDTLS_EVENT_DISCONNECTED = 4,
    /* A reconnect attempt failed; detail: "next attempt in N ms: cause". */
    REDTLS_EVENT_RECONNECT_SCHEDULED = 5,
    /* A scheduled IAM re-authentication failed (the credential source, a
     * refusal, the deadline). The connection stays: the server honours its
     * earlier AUTH until its own limit; another try comes a minute later.
     * detail: the cause. */
    REDTLS_EVENT_AUTH_REFRESH_FAILED = 6,
    /* Pub/Sub: the subscriptions were made again on a new connection;
     * messages published meanwhile were not delivered. detail: how many. */
    REDTLS_EVENT_SUBSCRIPTIONS_RESTORED = 7
} redtls_event_type;

typedef void (*redtls_event_cb)(void *userdata, redtls_event_type type, const char *detail);

/* Sets (or with NULL clears) the event callback. It is called on the
 * thread using the connection, from inside the call that caused the event;
 * it must not call back into the same connection. */
REDTLS_EXTERN redtls_status redtls_config_set_event_callback(redtls_config *cfg, redtls_event_cb cb, void *userdata);

/* SELECT this database after AUTH when it is not 0. */
REDTLS_EXTERN redtls_status redtls_config_set_db(redtls_config *cfg, int db);

/* CLIENT SETNAME after AUTH/SELECT (under protocol 3, SETNAME inside the
 * set-up's HELLO 3). NULL clears. No spaces allowed. */
REDTLS_EXTERN redtls_status redtls_config_set_client_name(redtls_config *cfg, const char *name);

/* The protocol the connection speaks: 2 (RESP2, the default) or 3
 * (RESP3). With 3 the set-up is one "HELLO 3 [AUTH user token] [SETNAME
 * name]" round trip in place of AUTH and CLIENT SETNAME (SELECT and
 * READONLY stay separate steps), with the same token rotation, credential
 * callback, IAM and messages as AUTH; without a user name HELLO
 * authenticates as "default", which is the user a plain AUTH token
 * stands for. Replies then come with RESP3's kinds (maps, sets, doubles,
 * booleans, big numbers, verbatim strings; see "Replies" below), and
 * server pushes go to the push callback, never in place of a reply (see
 * redtls_config_set_push_callback()). A server without HELLO (before
 * Redis 6) fails the connection with REDTLS_E_SETUP, and so does one that
 * refuses protocol 3 (NOPROTO). Re-authentication on an open connection
 * (NOAUTH, a live token update, the IAM schedule) sends a plain AUTH
 * under both protocols: HELLO would reset the connection's protocol and
 * name, which the set-up made already, and AUTH's "+OK" is the same
 * under RESP2 and RESP3. Cluster handles made from the configuration use
 * it for every node. Errors: REDTLS_E_INVALID (not 2 or 3),
 * REDTLS_E_CONFIG (3 in a build against hiredis older than 1.0, which
 * cannot parse RESP3; the message names the hiredis version). */
REDTLS_EXTERN redtls_status redtls_config_set_protocol(redtls_config *cfg, int version);

/* 1 when this build of redtls can speak protocol version (2 or 3: 3 needs
 * hiredis 1.0 or later at build time), else 0. Thread-safe. */
REDTLS_EXTERN int redtls_protocol_supported(int version);

/* Server pushes (RESP3, protocol 3): out-of-band data that answers no
 * command, such as CLIENT TRACKING's invalidations ("invalidate" and the
 * keys). A push never takes the place of a command's reply: each is
 * handed to cb (reply kind REDTLS_REPLY_PUSH, its first element the
 * push's name) and freed after cb returns; without a callback pushes are
 * dropped. An attribute (RESP3 '|', kind REDTLS_REPLY_ATTR: a map of
 * keys and values about the reply that follows it) is handed to cb in
 * the same way, right before the command's reply it describes is
 * returned; the reply itself is returned as usual. The reply is borrowed
 * for the call only: copy what is needed. When cb runs: blocking API,
 * during any call that reads replies (a command, redtls_conn_get_reply,
 * the set-up and the library's own round trips), and at the start of a
 * command on a connection with nothing owed, where what arrived while it
 * was idle is read first; asynchronous API, from the loop's processing,
 * like the reply callbacks. cb must not call any function on the same
 * connection or asynchronous handle (nor free it); it may use other
 * handles. NULL clears. */
typedef void (*redtls_push_cb)(void *userdata, const struct redisReply *push);
REDTLS_EXTERN redtls_status redtls_config_set_push_callback(redtls_config *cfg, redtls_push_cb cb, void *userdata);

/* Timeouts in milliseconds; 0 means no limit (not recommended). The
 * connect timeout covers resolving the host name (on a short-lived thread
 * of the library's, see "Threads" above; IP literals, "localhost" and
 * address overrides to a literal need none) and the TCP connect, shared
 * between the resolved addresses; the handshake timeout starts when TCP is
 * up and covers TLS, AUTH (with the credential callback's "pending"
 * answers), SELECT, CLIENT SETNAME; the command timeout covers one command,
 * write and reply. */
REDTLS_EXTERN redtls_status redtls_config_set_connect_timeout_ms(redtls_config *cfg, unsigned ms);
REDTLS_EXTERN redtls_status redtls_config_set_handshake_timeout_ms(redtls_config *cfg, unsigned ms);
REDTLS_EXTERN redtls_status redtls_config_set_command_timeout_ms(redtls_config *cfg, unsigned ms);

/* Reader limits; exceeding one ends the read with REDTLS_E_LIMIT and closes
 * the connection. 0 restores the default. */
REDTLS_EXTERN redtls_status redtls_config_set_max_array_elements(redtls_config *cfg, size_t n);
REDTLS_EXTERN redtls_status redtls_config_set_max_bulk_len(redtls_config *cfg, size_t n);
REDTLS_EXTERN redtls_status redtls_config_set_max_buffer(redtls_config *cfg, size_t n);

/* Reconnection (on by default). A connection that broke, or that was
 * never connected, is re-established with the full handshake (TCP, TLS,
 * AUTH with the rotation rules, SELECT, SETNAME) by the next call that needs
 * it. Attempts are spaced by a "decorrelated jitter" backoff: each delay is
 * a random value between base_ms and three times the previous delay,
 * capped at cap_ms (defaults REDTLS_DEFAULT_BACKOFF_BASE_MS and _CAP_MS). A call waits for the
 * connection only within its own command timeout: when the next attempt is
 * due later than that, it fails at once with REDTLS_E_UNAVAILABLE (and
 * redtls_conn_next_attempt_ms() tells when the next attempt is due). If an
 * attempt is made during the call and fails, the call returns that
 * attempt's status (REDTLS_E_CONNECT, REDTLS_E_TLS_VERIFY, REDTLS_E_AUTH...).
 * With reconnect off, calls on a broken connection return REDTLS_E_STATE. */
REDTLS_EXTERN redtls_status redtls_config_set_reconnect(redtls_config *cfg, int enabled);
REDTLS_EXTERN redtls_status redtls_config_set_backoff(redtls_config *cfg, unsigned base_ms, unsigned cap_ms);

/* Gives up after max_attempts consecutive failed attempts, or once an
 * outage has lasted max_outage_ms (0: no limit, the defaults). Then calls
 * fail at once with REDTLS_E_UNAVAILABLE until redtls_conn_connect() is
 * called, which starts afresh. */
REDTLS_EXTERN redtls_status redtls_config_set_reconnect_limits(redtls_config *cfg, unsigned max_attempts,
                                                               unsigned max_outage_ms);

/* Before a command is written on a connection idle for at least idle_ms, it
 * is checked with a PING round trip; a failed check reconnects instead of
 * risking the command. 0 (default) disables the PING check. Independently,
 * redtls always looks (without a round trip) whether the server has closed
 * an idle connection before writing to it. */
REDTLS_EXTERN redtls_status redtls_config_set_health_check_ms(redtls_config *cfg, unsigned idle_ms);

/* TCP_USER_TIMEOUT: how long written data may stay unacknowledged before
 * the kernel declares the peer dead (default 30000 ms; 0 leaves the
 * system default). TCP keepalive is always on (60 s idle, 10 s interval,
 * 3 probes). */
REDTLS_EXTERN redtls_status redtls_config_set_tcp_user_timeout_ms(redtls_config *cfg, unsigned ms);

/* TLS session resumption (on by default): the session of the last
 * successful handshake (TLS 1.2 session or TLS 1.3 ticket) is kept per
 * handle and reused on reconnect, also after an abrupt disconnect. Turning
 * it off forces a full handshake every time. */
REDTLS_EXTERN redtls_status redtls_config_set_tls_session_resumption(redtls_config *cfg, int enabled);

/* ------------------------------------------------------------------ */
/* Connection                                                          */
/* ------------------------------------------------------------------ */

typedef struct redtls_conn redtls_conn;

/* Creates a connection handle from a copy of cfg. Nothing is sent yet.
 * The TLS context (CA store, client certificate) is built by the first
 * redtls_conn_new() on cfg (so a CA file that cannot be used fails now) and
 * shared, read-only and reference counted, by every connection made from
 * cfg until one of cfg's setters is called. cfg is written to (the shared
 * context, the message), so it must not be used from two threads at once.
 * Errors: REDTLS_E_INVALID, REDTLS_E_NOMEM, REDTLS_E_CONFIG (details in
 * redtls_config_errmsg(cfg)). */
REDTLS_EXTERN redtls_status redtls_conn_new(redtls_config *cfg, redtls_conn **out);

/* Closes (sending TLS close_notify when the connection is healthy) and frees.
 * Accepts NULL. Replies already returned stay valid. An event callback
 * receives REDTLS_EVENT_DISCONNECTED from inside this call when a connection
 * was open, so its userdata must still be valid here. */
REDTLS_EXTERN void redtls_conn_free(redtls_conn *conn);

/* Blocking connect: resolve, TCP connect (every address in turn, within the
 * connect timeout), TLS handshake with certificate and hostname verification
 * (handshake timeout), then AUTH, SELECT and CLIENT SETNAME as configured
 * (under protocol 3: HELLO 3 with AUTH and SETNAME, then SELECT).
 * Credentials are only sent once the server certificate has been verified.
 * An open connection is closed first. Errors: REDTLS_E_RESOLVE,
 * REDTLS_E_CONNECT, REDTLS_E_CONNECT_TIMEOUT, REDTLS_E_HANDSHAKE_TIMEOUT,
 * REDTLS_E_TLS, REDTLS_E_TLS_VERIFY, REDTLS_E_TLS_HOSTNAME,
 * REDTLS_E_TLS_CLIENT_CERT, REDTLS_E_AUTH, REDTLS_E_SETUP, REDTLS_E_IO,
 * REDTLS_E_EOF, REDTLS_E_NOMEM. On failure the connection is closed. */
REDTLS_EXTERN redtls_status redtls_conn_connect(redtls_conn *conn);

/* Live token update: replaces the connection's tokens (token may not be
 * NULL; token_alt may be) and makes token the preferred one. Later
 * connections use them. With REDTLS_REAUTH_NOW an open connection is
 * re-authenticated at once with the same fallback rules, without being
 * dropped; it must have no pipelined replies pending (REDTLS_E_STATE). If
 * the server refuses both tokens the call returns REDTLS_E_AUTH and the
 * connection stays open and authenticated as before (Redis keeps the
 * previous identity after a failed AUTH). */
#define REDTLS_REAUTH_NOW 1
REDTLS_EXTERN redtls_status redtls_conn_set_tokens(redtls_conn *conn, const char *token, const char *token_alt,
                                                   int flags);

/* 1 when the current TLS connection resumed an earlier session (no full
 * handshake), 0 otherwise. */
REDTLS_EXTERN int redtls_conn_tls_resumed(const redtls_conn *conn);

/* Milliseconds until the next reconnect attempt is allowed (0 when it is
 * allowed now or the connection is up); UINT32_MAX after giving up. */
REDTLS_EXTERN uint32_t redtls_conn_next_attempt_ms(const redtls_conn *conn);

/* Which configured token the handle currently prefers: 1 or 2 (0 when no
 * tokens are configured or a credential callback is used). */
REDTLS_EXTERN int redtls_conn_preferred_token(const redtls_conn *conn);

/* Closes the connection cleanly (TLS close_notify). The handle can be
 * connected again. Pending pipelined commands are dropped. */
REDTLS_EXTERN void redtls_conn_close(redtls_conn *conn);

/* 1 when the connection is established and usable, else 0. */
REDTLS_EXTERN int redtls_conn_is_connected(const redtls_conn *conn);

/* Detailed message of the last failure on conn ("" if none). Borrowed. */
REDTLS_EXTERN const char *redtls_conn_errmsg(const redtls_conn *conn);

/* Runs one command and waits for its reply, within the command timeout.
 * argv/argvlen are binary safe (argvlen may be NULL for C strings).
 * *reply is the server's reply, which may be an error reply. Must not be
 * called while pipelined replies are pending (REDTLS_E_STATE). On a
 * transport, timeout, protocol or limit failure the connection is closed. */
REDTLS_EXTERN redtls_status redtls_conn_command_argv(redtls_conn *conn, int argc, const char **argv,
                                                     const size_t *argvlen, struct redisReply **reply);

/* NOAUTH: when a single command is refused with NOAUTH (for example the
 * server restarted with a password) and credentials are configured, the
 * connection re-authenticates once and resends that command once: the
 * server did not execute it. In a pipeline a NOAUTH reply is returned as it
 * is and the connection re-authenticates before the next command. */

/* Protocol: a connection speaks RESP2 unless its configuration asks for
 * RESP3 (redtls_config_set_protocol(cfg, 3), or protocol=3 in the URL;
 * a build against hiredis 1.0 or later is needed). A HELLO asking for
 * another protocol than the connection's (under RESP2 HELLO 3, under
 * RESP3 HELLO 2) is refused by every command and append call with
 * REDTLS_E_INVALID before anything is written: the replies of every later
 * command would be read in the wrong protocol. HELLO without a version,
 * and HELLO with the connection's own version, pass. Server pushes never
 * take the place of a reply: they go to the push callback
 * (redtls_config_set_push_callback()) or are dropped; a RESP3 attribute
 * goes to the same callback right before the reply it describes. A server
 * that sends RESP3 to a RESP2 connection anyway is read the same way with
 * hiredis 1.x; with hiredis 0.14, which cannot parse RESP3, the
 * connection ends with REDTLS_E_PROTOCOL. Every reply kind, RESP2 or
 * RESP3, is held to the same limits. */

/* Flags for redtls_conn_command_argv_ex(). */
#define REDTLS_CMD_IDEMPOTENT 1u /* safe to run twice: resent once after a
                                  * broken connection instead of reporting
                                  * REDTLS_E_OUTCOME_UNKNOWN */

/* redtls_conn_command_argv() with flags. At-most-once is the default: a
 * command whose bytes may have reached the server is never resent by
 * itself; a command not yet written when the connection broke is sent on
 * the new connection. REDTLS_CMD_IDEMPOTENT allows one resend. */
REDTLS_EXTERN redtls_status redtls_conn_command_argv_ex(redtls_conn *conn, unsigned flags, int argc,
                                                        const char **argv, const size_t *argvlen,
                                                        struct redisReply **reply);

/* printf-style convenience using hiredis's format: %s (C string), %b
 * (pointer + size_t length), %d/%lld etc. Each space separates arguments. */
REDTLS_EXTERN redtls_status redtls_conn_command(redtls_conn *conn, struct redisReply **reply, const char *fmt,
                                                ...);

/* Pipelining: append commands to the output buffer (nothing is written),
 * then read their replies in order with redtls_conn_get_reply(), which first
 * writes everything appended in as few writes as the socket allows. */
REDTLS_EXTERN redtls_status redtls_conn_append_argv(redtls_conn *conn, int argc, const char **argv,
                                                    const size_t *argvlen);
REDTLS_EXTERN redtls_status redtls_conn_append(redtls_conn *conn, const char *fmt, ...);

/* Writes any appended commands, then reads the next pending reply within
 * the command timeout (counted per reply). REDTLS_E_STATE when no reply is
 * pending. If the connection broke after the pipeline was written, each
 * remaining reply is reported as REDTLS_E_OUTCOME_UNKNOWN (one call per
 * command, so the caller learns each command's fate); if it broke before
 * anything was written, the commands are sent on a new connection. */
REDTLS_EXTERN redtls_status redtls_conn_get_reply(redtls_conn *conn, struct redisReply **reply);

/* Writes appended commands without reading. */
REDTLS_EXTERN redtls_status redtls_conn_flush(redtls_conn *conn);

/* Number of commands sent or appended whose replies have not been read. */
REDTLS_EXTERN size_t redtls_conn_pending(const redtls_conn *conn);

/* TLS details of the current connection, borrowed; NULL when not connected
 * or not TLS, or when there is no memory for the texts (redtls_conn_errmsg
 * says so; they are made on the first call). Subject and SANs describe the
 * server's leaf certificate; SANs are comma-separated ("DNS:a,
 * IP:127.0.0.1"); not_after is "YYYY-MM-DD HH:MM:SS UTC". */
REDTLS_EXTERN const char *redtls_conn_tls_version(redtls_conn *conn);
REDTLS_EXTERN const char *redtls_conn_tls_cipher(redtls_conn *conn);
REDTLS_EXTERN const char *redtls_conn_peer_subject(redtls_conn *conn);
REDTLS_EXTERN const char *redtls_conn_peer_sans(redtls_conn *conn);
REDTLS_EXTERN const char *redtls_conn_peer_not_after(redtls_conn *conn);

/* ------------------------------------------------------------------ */
/* Replies                                                             */
/* ------------------------------------------------------------------ */

/* Same values as hiredis's REDIS_REPLY_* (hiredis 1.x numbers the RESP3
 * types 7 to 14; hiredis 0.14 knows only 1 to 6). The RESP3 kinds only
 * come from a connection configured for protocol 3 (see
 * redtls_config_set_protocol()), or from a server that sends them unasked
 * to a client built against hiredis 1.x. */
typedef enum redtls_reply_kind {
    REDTLS_REPLY_STRING = 1,
    REDTLS_REPLY_ARRAY = 2,
    REDTLS_REPLY_INTEGER = 3,
    REDTLS_REPLY_NIL = 4, /* RESP2's null bulk and array, RESP3's null */
    REDTLS_REPLY_STATUS = 5,
    REDTLS_REPLY_ERROR = 6, /* RESP3's blob errors too */
    REDTLS_REPLY_DOUBLE = 7,
    REDTLS_REPLY_BOOL = 8,
    REDTLS_REPLY_MAP = 9,
    REDTLS_REPLY_SET = 10,
    REDTLS_REPLY_ATTR = 11, /* only ever seen by the push callback */
    REDTLS_REPLY_PUSH = 12, /* only ever seen by the push callback */
    REDTLS_REPLY_BIGNUM = 13,
    REDTLS_REPLY_VERB = 14
} redtls_reply_kind;

/* Frees a reply and all its elements. Accepts NULL. Use it (rather than
 * hiredis's freeReplyObject()) for an attribute (REDTLS_REPLY_ATTR) a
 * push callback copied: hiredis 1.2's freeReplyObject() does not know that
 * type and would leak its elements. */
REDTLS_EXTERN void redtls_reply_free(struct redisReply *reply);
/* Type of the reply (a redtls_reply_kind); 0 for NULL. */
REDTLS_EXTERN int redtls_reply_type(const struct redisReply *reply);
/* The bytes of a reply that has text, and their length (*len may be NULL;
 * it is 0 when NULL is returned). A NUL always follows the bytes, but
 * binary data may hold NULs of its own. NULL for other kinds.
 *   STRING, STATUS, ERROR: the text as sent.
 *   DOUBLE: the number as the server wrote it ("3.14", "inf", "-inf",
 *     "nan"); redtls_reply_double() gives its value.
 *   BIGNUM: its decimal digits, with a leading '-' when negative.
 *   VERB: the text without its format prefix ("txt:"); the format is
 *     redtls_reply_verbatim_format()'s. */
REDTLS_EXTERN const char *redtls_reply_str(const struct redisReply *reply, size_t *len);
/* INTEGER replies: the value; 0 otherwise (a BOOL is not an integer: see
 * redtls_reply_bool()). */
REDTLS_EXTERN long long redtls_reply_integer(const struct redisReply *reply);
/* DOUBLE replies: the value (infinities and NaN included); 0.0
 * otherwise. */
REDTLS_EXTERN double redtls_reply_double(const struct redisReply *reply);
/* BOOL replies: 1 for true, 0 for false; -1 for any other reply (NULL
 * included), so a caller can tell "false" from "not a BOOL". */
REDTLS_EXTERN int redtls_reply_bool(const struct redisReply *reply);
/* VERB replies: the three-letter format, "txt" (plain text) or "mkd"
 * (markdown), borrowed from reply; NULL for other kinds. */
REDTLS_EXTERN const char *redtls_reply_verbatim_format(const struct redisReply *reply);
/* Aggregates (ARRAY, MAP, SET, PUSH, ATTR): the number of elements; 0 for
 * other kinds. A MAP or ATTR holds its keys and values interleaved (key 0,
 * value 0, key 1, value 1, ...), so its length is twice its number of
 * pairs. */
REDTLS_EXTERN size_t redtls_reply_len(const struct redisReply *reply);
/* Aggregates: element i (borrowed from reply) in the order above; NULL
 * when out of range or reply is not an aggregate. */
REDTLS_EXTERN const struct redisReply *redtls_reply_element(const struct redisReply *reply, size_t i);

#ifdef __cplusplus
}
#endif

#include <redtls/cluster.h>

#endif /* REDTLS_REDTLS_H */

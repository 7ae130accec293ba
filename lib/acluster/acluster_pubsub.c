/* Sharded Pub/Sub on the asynchronous cluster client: each shard channel
 * is subscribed on the master that owns its slot, through a second
 * connection to that node (n->sub_ac: under RESP2 a subscribed connection
 * takes no other command), and follows its slot.
 *
 * A cluster subscription ("csub") is placed on one node at a time. It is
 * placed again, on the owner the slot map names, when:
 *   - the node says it is not the owner (MOVED/ASK or a cluster error in
 *     answer to SSUBSCRIBE);
 *   - the node ends it by itself (the slot migrated away: Redis 7 sends
 *     SUNSUBSCRIBE);
 *   - a new slot map names another owner (a failover, a resharding);
 *   - its node's subscriber connection closed for good.
 * A placement whose node is down is kept (its connection restores it when
 * the node comes back) while refreshes of the map look for a new owner.
 * Each time it is confirmed on a new placement after the first, the
 * application gets REDTLS_MSG_RESTORED: messages published meanwhile were
 * not delivered.
 *
 * The node-level subscription's callback gets the csub; notices of a
 * placement the csub has left (its node is no longer csub->node) only
 * drop the csub's count of placements. */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include <redtls/pubsub.h>

#include "acluster.h"
#include "pubsub.h"
#include "subscriber.h"

struct acl_csub {
    struct acl_csub *prev, *next;
    redtls_async_cluster_message_cb cb;
    void *ud;
    uint32_t slot;
    acl_node *node;     /* the placement (NULL: to be placed) */
    int closing;        /* the application ended it */
    int end_due;        /* ...and its notice is owed from the next tick */
    int confirmed_once; /* SUBSCRIBED was delivered */
    int gap;            /* placed again: RESTORED when confirmed */
    unsigned refs;      /* node-level subscriptions not yet ended */
    int dead;           /* ended: freed with its last placement */
    int need_map;       /* placed only after the refresh that follows... */
    unsigned wait_map;  /* ...this count of refreshes done */
    size_t len;
    char name[];
};

static acl_csub *find(const redtls_async_cluster *acl, const char *name, size_t len)
{
    for (acl_csub *c = acl->ps_head; c; c = c->next)
        if (!c->dead && c->len == len && memcmp(c->name, name, len) == 0)
            return c;
    return NULL;
}

static void unlink_free(redtls_async_cluster *acl, acl_csub *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        acl->ps_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        acl->ps_tail = c->prev;
    free(c);
}

/* The application's last notice; the record goes with its last placement. */
static void end_csub(redtls_async_cluster *acl, acl_csub *c, redtls_status st, const char *detail)
{
    c->dead = 1;
    acl->n_subs--;
    redtls_message m = {.type = REDTLS_MSG_UNSUBSCRIBED,
                        .kind = REDTLS_SUB_SHARD,
                        .sub = c->name,
                        .sub_len = c->len,
                        .status = st,
                        .detail = detail};
    c->cb(acl, &m, c->ud);
    if (c->refs == 0 && !acl->freeing)
        unlink_free(acl, c);
}

static void notice(redtls_async_cluster *acl, acl_csub *c, int type)
{
    redtls_message m = {.type = type, .kind = REDTLS_SUB_SHARD, .sub = c->name, .sub_len = c->len};
    c->cb(acl, &m, c->ud);
}

/* Look for the owner again: after the next refresh of the map. */
static void unplace(redtls_async_cluster *acl, acl_csub *c)
{
    c->node = NULL;
    c->gap = c->confirmed_once;
    c->need_map = 1;
    c->wait_map = acl->refreshes_done;
    acl->want_refresh = 1;
    redtls__acl_arm(acl);
}

/* What a node-level subscription brings. */
static void node_msg(redtls_async *ac, const redtls_message *m, void *ud)
{
    acl_node *n = ac->owner;
    acl_csub *c = ud;
    if (!n)
        return; /* the cluster handle is being freed */
    redtls_async_cluster *acl = n->acl;
    int here = c->node == n && !c->dead;
    switch (m->type) {
    case REDTLS_MSG_MESSAGE:
        if (here && !c->closing)
            c->cb(acl, m, c->ud);
        return;
    case REDTLS_MSG_SUBSCRIBED:
    case REDTLS_MSG_RESTORED:
        if (!here || c->closing)
            return;
        /* Confirmed at a new placement after an earlier one (or restored
         * on a new connection to the same node): a gap. */
        notice(acl, c, c->confirmed_once ? REDTLS_MSG_RESTORED : REDTLS_MSG_SUBSCRIBED);
        c->confirmed_once = 1;
        c->gap = 0;
        return;
    }
    /* REDTLS_MSG_UNSUBSCRIBED: this placement is over. */
    c->refs--;
    if (!here) {
        if (c->dead && c->refs == 0 && !acl->freeing)
            unlink_free(acl, c);
        return;
    }
    if (c->closing) {
        end_csub(acl, c, REDTLS_OK, "");
        return;
    }
    if (m->status == REDTLS_E_REFUSED && !m->moved) {
        /* Refused for good (an ACL without the channel). */
        end_csub(acl, c, m->status, m->detail ? m->detail : "");
        return;
    }
    if (acl->freeing)
        return;
    unplace(acl, c);
}

/* Places c on the owner of its slot; nothing when the map has none (yet)
 * or the node cannot take it now (it is tried again at the next tick). */
static void place(redtls_async_cluster *acl, acl_csub *c)
{
    if (!acl->have_map || (c->need_map && acl->refreshes_done == c->wait_map))
        return;
    c->need_map = 0;
    uint32_t ni = acl->slot_node[c->slot];
    if (ni == ACL_NO_SLOT) {
        acl->want_refresh = 1;
        return;
    }
    acl_node *n = acl->nodes[ni];
    if (!n->sub_ac && redtls__acl_node_sub_conn_new(acl, n) != REDTLS_OK)
        return;
    /* Its reconnect limits ran out: the map names it still, so again. */
    if (n->sub_ac->gave_up)
        (void)redtls_async_connect(n->sub_ac, NULL, NULL);
    if (redtls_async_subscribe(n->sub_ac, REDTLS_SUB_SHARD, c->name, c->len, node_msg, c) != REDTLS_OK)
        return; /* still being ended there from an earlier placement */
    c->refs++;
    c->node = n;
}

/* ---- the public calls ---- */

redtls_status redtls_async_cluster_ssubscribe(redtls_async_cluster *acl, const char *channel, size_t len,
                                              redtls_async_cluster_message_cb cb, void *userdata)
{
    if (!acl || acl->freeing)
        return REDTLS_E_INVALID;
    acl->errmsg[0] = '\0';
    if (!channel || len == 0)
        return redtls__fail(acl->errmsg, REDTLS_E_INVALID, "a subscription needs a non-empty shard channel name");
    if (!cb)
        return redtls__fail(acl->errmsg, REDTLS_E_INVALID, "a subscription needs a message callback");
    acl_csub *c = find(acl, channel, len);
    if (c)
        return redtls__fail(acl->errmsg, REDTLS_E_STATE,
                            c->closing ? "that shard channel is being unsubscribed: subscribe again after "
                                         "REDTLS_MSG_UNSUBSCRIBED"
                                       : "already subscribed to that shard channel");
    if (!(c = calloc(1, sizeof *c + len + 1)))
        return redtls__fail(acl->errmsg, REDTLS_E_NOMEM, "out of memory");
    c->cb = cb;
    c->ud = userdata;
    c->len = len;
    memcpy(c->name, channel, len);
    c->slot = redtls_cluster_key_slot(channel, len);
    c->prev = acl->ps_tail;
    if (acl->ps_tail)
        acl->ps_tail->next = c;
    else
        acl->ps_head = c;
    acl->ps_tail = c;
    acl->n_subs++;
    if (!acl->have_map && !acl->connect_asked)
        acl->want_refresh = 1; /* the first map, for it */
    place(acl, c);
    redtls__acl_arm(acl);
    return REDTLS_OK;
}

redtls_status redtls_async_cluster_sunsubscribe(redtls_async_cluster *acl, const char *channel, size_t len)
{
    if (!acl || acl->freeing)
        return REDTLS_E_INVALID;
    acl->errmsg[0] = '\0';
    acl_csub *c = channel && len ? find(acl, channel, len) : NULL;
    if (!c || c->closing)
        return redtls__fail(acl->errmsg, REDTLS_E_STATE,
                            c ? "that shard channel is already being unsubscribed"
                              : "not subscribed to that shard channel");
    c->closing = 1;
    if (c->node && c->node->sub_ac &&
        redtls_async_unsubscribe(c->node->sub_ac, REDTLS_SUB_SHARD, c->name, c->len) == REDTLS_OK)
        return REDTLS_OK;
    /* Not placed (or no memory to say so to its node): its notice comes
     * from the next tick. */
    c->end_due = 1;
    acl->retry_at = redtls__acl_now();
    redtls__acl_arm(acl);
    return REDTLS_OK;
}

size_t redtls_async_cluster_subscriptions(const redtls_async_cluster *acl)
{
    return acl ? acl->n_subs : 0;
}

/* ---- the engine's hooks ---- */

void redtls__acl_ps_lost(redtls_async *ac)
{
    acl_node *n = ac->owner;
    if (!n)
        return;
    /* The node may be gone for good (a failover): ask the cluster. */
    n->acl->want_refresh = 1;
}

void redtls__acl_ps_tick(redtls_async_cluster *acl)
{
    for (acl_csub *c = acl->ps_head, *next; c && !acl->freeing; c = next) {
        next = c->next;
        if (c->dead)
            continue;
        if (c->end_due) {
            end_csub(acl, c, REDTLS_OK, "");
            continue;
        }
        if (c->closing)
            continue;
        if (!c->node)
            place(acl, c);
        /* Placed on a node that cannot be reached: refreshes look for a
         * new owner meanwhile. */
        if (!c->node || !redtls_async_is_connected(c->node->sub_ac))
            acl->want_refresh = 1;
    }
    /* Subscriber connections nothing is subscribed on any more go. */
    for (size_t i = 0; i < acl->nnodes && !acl->freeing; i++) {
        acl_node *n = acl->nodes[i];
        if (n->sub_ac && redtls_async_subscriptions(n->sub_ac) == 0 && redtls_async_pending(n->sub_ac) == 0 &&
            !n->sub_ac->in_process) {
            redtls_async *ac = n->sub_ac;
            n->sub_ac = NULL;
            ac->owner = NULL;
            redtls_async_free(ac);
        }
    }
}

void redtls__acl_ps_map_installed(redtls_async_cluster *acl)
{
    for (acl_csub *c = acl->ps_head; c && !acl->freeing; c = c->next) {
        if (c->dead || c->closing)
            continue;
        if (c->node) {
            uint32_t ni = acl->slot_node[c->slot];
            if (ni != ACL_NO_SLOT && acl->nodes[ni] == c->node)
                continue;
            /* The slot has another owner: leave the old placement (its
             * notices are ignored from now on) and take the new one. */
            acl_node *old = c->node;
            c->node = NULL;
            c->gap = c->confirmed_once;
            if (old->sub_ac)
                (void)redtls_async_unsubscribe(old->sub_ac, REDTLS_SUB_SHARD, c->name, c->len);
        }
        place(acl, c);
    }
}

void redtls__acl_ps_end_all(redtls_async_cluster *acl)
{
    /* Only while freeing: end_csub keeps the records (ps_free frees them). */
    for (acl_csub *c = acl->ps_head, *next; c; c = next) {
        next = c->next;
        if (!c->dead)
            end_csub(acl, c, REDTLS_E_CLOSED, "the cluster handle was freed");
    }
}

void redtls__acl_ps_free(redtls_async_cluster *acl)
{
    for (acl_csub *c = acl->ps_head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    acl->ps_head = acl->ps_tail = NULL;
    acl->n_subs = 0;
}

/* ---- the blocking subscriber's cluster back end (lib/driver/subscriber.h) ---- */

static void sub_on_message(redtls_async_cluster *acl, const redtls_message *m, void *ud)
{
    (void)acl;
    redtls__subscriber_take(ud, m);
}

static redtls_status sub_change(redtls_subscriber *s, redtls_sub_kind kind, const char *name, size_t len, int on)
{
    redtls_async_cluster *acl = s->handle;
    if (kind != REDTLS_SUB_SHARD)
        return redtls__fail(s->errmsg, REDTLS_E_INVALID,
                            "a cluster subscriber takes shard channels (REDTLS_SUB_SHARD) only: for a channel or "
                            "pattern, subscribe on one node with redtls_subscriber_new (the cluster forwards "
                            "PUBLISH to every node)");
    redtls_status st = on ? redtls_async_cluster_ssubscribe(acl, name, len, sub_on_message, s)
                          : redtls_async_cluster_sunsubscribe(acl, name, len);
    if (st != REDTLS_OK)
        redtls__fail(s->errmsg, st, "%s", acl->errmsg);
    return st;
}

static int sub_done(void *arg)
{
    const redtls_subscriber *s = arg;
    return s->done(s);
}

static int sub_run_until(redtls_subscriber *s, int (*done)(const redtls_subscriber *), int64_t deadline)
{
    redtls_async_cluster *acl = s->handle;
    s->done = done;
    redtls_status st = redtls__acl_run_until(acl, sub_done, s, deadline);
    if (done(s))
        return 1;
    if (st == REDTLS_OK || st == REDTLS_E_COMMAND_TIMEOUT)
        return 0;
    redtls__fail(s->errmsg, st, "%s", acl->errmsg);
    return -1;
}

static size_t sub_count(const redtls_subscriber *s)
{
    return ((const redtls_async_cluster *)s->handle)->n_subs;
}

static int64_t sub_answer_ms(const redtls_subscriber *s)
{
    const redtls_async_cluster *acl = s->handle;
    unsigned ms = acl->base.command_timeout_ms;
    /* A slot map first (one round trip), then the owner's connection and
     * its answer. */
    return ms ? 2 * (int64_t)ms + acl->base.connect_timeout_ms + acl->base.handshake_timeout_ms : -1;
}

static const char *sub_cause(const redtls_subscriber *s)
{
    return ((const redtls_async_cluster *)s->handle)->errmsg;
}

/* Node connections start again by themselves when the map names them. */
static int sub_gave_up(const redtls_subscriber *s)
{
    (void)s;
    return 0;
}

static void sub_restart(redtls_subscriber *s)
{
    (void)s;
}

static void sub_free(redtls_subscriber *s)
{
    redtls_async_cluster_free(s->handle);
}

static const redtls__sub_backend cluster_backend = {sub_change, sub_run_until, sub_count,   sub_answer_ms,
                                                    sub_cause,  sub_gave_up,   sub_restart, sub_free};

redtls_status redtls_subscriber_new_cluster(redtls_config *cfg, const char *seeds, redtls_subscriber **out)
{
    if (!out)
        return REDTLS_E_INVALID;
    *out = NULL;
    redtls_async_cluster *acl = NULL;
    redtls_status st = redtls_async_cluster_new(cfg, seeds, &acl);
    if (st != REDTLS_OK)
        return st;
    if ((st = redtls__subscriber_wrap(&cluster_backend, acl, out)) != REDTLS_OK)
        redtls_async_cluster_free(acl);
    return st;
}

/* Pub/Sub on the asynchronous handle: subscriptions are ordinary commands
 * of the handle's queue (one SUBSCRIBE or UNSUBSCRIBE per name, so each
 * has exactly one confirmation, which pairs with it in order). Messages
 * never pair: a whole message frame at the front of the reader's buffer is
 * taken as it lies (redtls__async_ps_take_views), and any other (cut
 * across reads, or met by the reader's general parser) is taken out of
 * the reply stream by the claim hook and queued; both are handed to their
 * subscription's callback in the server's order.
 *
 * A subscription's life: OPENING (its SUBSCRIBE queued or in flight) ->
 * ACTIVE (confirmed) -> LOST (the connection went; made again on the next
 * one, back to OPENING) ... -> CLOSING (its UNSUBSCRIBE queued or in
 * flight) -> gone, after REDTLS_MSG_UNSUBSCRIBED. */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "async_internal.h"
#include "pubsub.h"

/* Silence before a subscribed connection is checked with a PING, when the
 * configuration sets no health-check interval. */
#define REDTLS__PS_KEEPALIVE_MS 30000

typedef struct redtls__ps {
    redtls__subs t;
    redtls_message *in_head, *in_tail; /* messages read, not yet delivered */
    long long server_count;            /* the server's count on this connection */
    size_t restoring;                  /* restored subscriptions not yet confirmed */
    size_t restored;                   /* of this restore, confirmed */
    int retry;                         /* a lost subscription's SUBSCRIBE could
                                        * not be issued (out of memory): the
                                        * next pass tries again */
    char *scratch;                     /* a taken message's copy */
    size_t scratch_cap;
    int delivering;
} redtls__ps;

/* RESP3 carries messages as pushes; RESP2 as arrays in subscriber mode. */
static int resp3(const redtls_async *ac)
{
    return ac->c->cfg.protocol == 3;
}

static void set_arrays(redtls_async *ac)
{
    redtls_conn *c = ac->c;
    int on = !resp3(ac) && ac->ps && ac->ps->server_count > 0;
    c->sub_arrays = on;
    c->rd.claim_arrays = on;
}

/* ---- notices ---- */

static void notice(redtls_async *ac, redtls__sub *s, int type, redtls_status st, const char *detail)
{
    redtls_message m = {
        .type = type, .kind = s->kind, .sub = s->name, .sub_len = s->len, .status = st, .detail = detail};
    s->cb(ac, &m, s->ud);
}

/* The restore's event, once every subscription it made again is
 * confirmed or ended. */
static void restore_check(redtls_async *ac)
{
    redtls__ps *ps = ac->ps;
    if (!ps->restoring || ps->restored < ps->restoring)
        return;
    size_t n = ps->restored;
    ps->restoring = ps->restored = 0;
    if (n)
        redtls__emit(ac->c, REDTLS_EVENT_SUBSCRIPTIONS_RESTORED,
                     "%zu subscriptions restored on a new connection; messages published while they were "
                     "not subscribed were not delivered",
                     n);
}

/* The last notice: the entry leaves the table (freed once no command names
 * it). */
static void end_sub_moved(redtls_async *ac, redtls__sub *s, redtls_status st, const char *detail, int moved)
{
    redtls__ps *ps = ac->ps;
    if (!ps)
        return; /* never: an entry lives in the handle's table */
    redtls_async_message_cb cb = s->cb;
    void *ud = s->ud;
    redtls_message m = {
        .type = REDTLS_MSG_UNSUBSCRIBED, .kind = s->kind, .status = st, .detail = detail, .moved = moved};
    /* The name outlives the entry for the call. */
    char small[128], *name = s->len < sizeof small ? small : malloc(s->len + 1);
    if (name) {
        memcpy(name, s->name, s->len + 1);
        m.sub = name;
        m.sub_len = s->len;
    }
    if (s->gap && ps->restoring) {
        ps->restoring--;
        restore_check(ac);
    }
    redtls__subs_remove(&ps->t, s);
    ac->n_subs = ps->t.n;
    ac->c->msg_views = ac->n_subs != 0;
    cb(ac, &m, ud);
    if (name != small)
        free(name);
}

static void end_sub(redtls_async *ac, redtls__sub *s, redtls_status st, const char *detail)
{
    end_sub_moved(ac, s, st, detail, 0);
}

/* Error replies that mean "not here": the subscription belongs on another
 * node (cluster). */
static int is_moved_error(const redisReply *r)
{
    static const char *const words[] = {"MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "LOADING"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (r->len >= strlen(words[i]) && strncmp(r->str, words[i], strlen(words[i])) == 0)
            return 1;
    return 0;
}

/* ---- the claim hook: messages out of the reply stream ---- */

/* Frees a message of the inbox undelivered. */
static void drop_in(redtls_message *m)
{
    if (m->owner)
        redtls__sub_unref(m->owner);
    m->owner = NULL;
    m->sub = NULL;
    redtls_message_free(m);
}

/* Frees every message of the inbox undelivered. */
static void drain_in(redtls__ps *ps)
{
    redtls_message *m;
    while ((m = ps->in_head) != NULL) {
        ps->in_head = m->next;
        drop_in(m);
    }
    ps->in_tail = NULL;
}

static void queue_in(redtls__ps *ps, redtls_message *m)
{
    if (ps->in_tail)
        ps->in_tail->next = m;
    else
        ps->in_head = m;
    ps->in_tail = m;
}

static int claim(void *ud, struct redisReply *r)
{
    redtls_async *ac = ud;
    redtls__ps_reply pr;
    switch (redtls__ps_classify(r, &pr)) {
    case REDTLS__PS_CONFIRM: {
        /* The answer to the oldest command owed when that is a SUBSCRIBE
         * or UNSUBSCRIBE of ours going the same way; otherwise the server
         * ended a subscription by itself (a shard channel whose slot moved
         * away): taken here, so replies stay paired. */
        const redtls__acmd *h = ac->s_head;
        unsigned want = pr.subscribe ? REDTLS__ACMD_PS_SUB : REDTLS__ACMD_PS_UNSUB;
        if (h && (h->flags & want))
            return 2;
        ac->ps->server_count = pr.count;
        redtls_message *m = pr.subscribe || !pr.name ? NULL : calloc(1, sizeof *m);
        if (!m) {
            freeReplyObject(r); /* nothing to end (or no memory): dropped */
            return 1;
        }
        *m = (redtls_message){.type = REDTLS_MSG_UNSUBSCRIBED,
                              .kind = pr.kind,
                              .sub = pr.name,
                              .sub_len = pr.name_len,
                              .status = REDTLS_E_REFUSED,
                              .moved = 1,
                              .reply = r};
        queue_in(ac->ps, m);
        return 1;
    }
    case REDTLS__PS_OTHER: return 0;
    }
    /* malloc: the literal below sets every field, and glibc's calloc
     * skips the per-thread cache (the message is freed right after its
     * delivery, so the cache has one ready). */
    redtls_message *m = malloc(sizeof *m);
    if (!m) {
        /* Dropped, like a message the server could not deliver: the
         * connection goes on. */
        freeReplyObject(r);
        return 1;
    }
    *m = (redtls_message){.type = REDTLS_MSG_MESSAGE,
                          .kind = pr.kind,
                          .sub = pr.name,
                          .sub_len = pr.name_len,
                          .channel = pr.channel,
                          .channel_len = pr.channel_len,
                          .payload = pr.payload,
                          .payload_len = pr.payload_len,
                          .reply = r};
    queue_in(ac->ps, m);
    return 1;
}

void redtls__async_ps_deliver(redtls_async *ac)
{
    redtls__ps *ps = ac->ps;
    if (!ps || ps->delivering)
        return;
    unsigned epoch = ac->epoch;
    ps->delivering = 1;
    redtls_message *m;
    while (ac->epoch == epoch && (m = ps->in_head) != NULL) {
        ps->in_head = m->next;
        if (!ps->in_head)
            ps->in_tail = NULL;
        redtls__sub *s = redtls__subs_find(&ps->t, m->kind, m->sub, m->sub_len);
        if (m->owner) {
            /* An end asked for while the subscription was on no
             * connection (end_from_loop). */
            redtls__sub *own = m->owner;
            m->owner = NULL;
            m->sub = NULL;
            int alive = !own->dead;
            redtls__sub_unref(own);
            if (alive)
                end_sub(ac, own, REDTLS_OK, "");
            redtls_message_free(m);
            continue;
        }
        if (m->type == REDTLS_MSG_UNSUBSCRIBED) {
            /* Ended by the server: unless the application is ending it
             * itself, that is the subscription's end (the cluster client
             * makes it again at the slot's new owner). */
            set_arrays(ac);
            if (s && s->state != REDTLS__SUB_CLOSING)
                end_sub_moved(ac, s, REDTLS_E_REFUSED,
                              "the server ended the subscription (in a cluster: its slot moved to another node)", 1);
            redtls_message_free(m);
            continue;
        }
        /* Only to a subscription the server confirmed: not one being
         * ended, nor a stale message for a name unsubscribed. */
        if (s && s->state == REDTLS__SUB_ACTIVE) {
            /* The entry's own name: the reply's is freed with it. */
            m->sub = s->name;
            s->cb(ac, m, s->ud);
        }
        redtls_message_free(m);
    }
    /* A callback that closed or freed the handle ended everything; the
     * table lives until the handle's memory goes. */
    ps->delivering = 0;
}

/* ---- messages taken without reply objects ---- */

int redtls__async_ps_take_views(redtls_async *ac)
{
    redtls__ps *ps = ac->ps;
    if (!ps || ps->delivering || ps->in_head)
        return 0;
    unsigned epoch = ac->epoch;
    redtls__msg_view v;
    while (ac->c->tp && redtls__reader_take_message(&ac->c->rd, &v)) {
        const char *name = v.kind == REDTLS_SUB_PATTERN ? v.pattern : v.channel;
        size_t name_len = v.kind == REDTLS_SUB_PATTERN ? v.pattern_len : v.channel_len;
        redtls__sub *s = redtls__subs_find(&ps->t, (redtls_sub_kind)v.kind, name, name_len);
        /* As for a claimed message: only to a confirmed subscription. */
        if (!s || s->state != REDTLS__SUB_ACTIVE)
            continue;
        /* The callback gets copies: it may close the handle, which frees
         * the reader's buffer the view points into. */
        size_t need = v.channel_len + v.payload_len + 2;
        if (need > ps->scratch_cap) {
            char *grown = realloc(ps->scratch, need);
            if (!grown)
                continue; /* dropped, as a message the server could not deliver */
            ps->scratch = grown;
            ps->scratch_cap = need;
        }
        char *ch = ps->scratch, *pl = ps->scratch + v.channel_len + 1;
        memcpy(ch, v.channel, v.channel_len);
        ch[v.channel_len] = '\0';
        memcpy(pl, v.payload, v.payload_len);
        pl[v.payload_len] = '\0';
        redtls_message m = {.type = REDTLS_MSG_MESSAGE,
                            .kind = s->kind,
                            .sub = s->name,
                            .sub_len = s->len,
                            .channel = ch,
                            .channel_len = v.channel_len,
                            .payload = pl,
                            .payload_len = v.payload_len};
        ps->delivering = 1;
        s->cb(ac, &m, s->ud);
        ps->delivering = 0;
        if (ac->epoch != epoch)
            return -1;
    }
    return 0;
}

/* ---- the commands' replies ---- */

static redtls_status send_sub(redtls_async *ac, redtls__sub *s, int subscribe);

static void subscribed(redtls_async *ac, redtls_status st, redisReply *reply, void *ud)
{
    redtls__sub *s = ud;
    redtls__ps *ps = ac->ps;
    redtls__ps_reply pr;
    int what = reply ? redtls__ps_classify(reply, &pr) : REDTLS__PS_OTHER;
    if (s->dead || s->state != REDTLS__SUB_OPENING) {
        /* Being ended (its UNSUBSCRIBE follows and ends it), or ended.
         * The server holds it meanwhile: its messages may come before the
         * UNSUBSCRIBE's confirmation and must not pair with it. */
        if (st == REDTLS_OK && what == REDTLS__PS_CONFIRM && ps) {
            ps->server_count = pr.count;
            set_arrays(ac);
        }
    } else if (st == REDTLS_OK && what == REDTLS__PS_CONFIRM && pr.subscribe) {
        ps->server_count = pr.count;
        s->state = REDTLS__SUB_ACTIVE;
        int type = s->confirmed_once ? REDTLS_MSG_RESTORED : REDTLS_MSG_SUBSCRIBED;
        s->confirmed_once = 1;
        int was_gap = s->gap;
        s->gap = 0;
        set_arrays(ac);
        notice(ac, s, type, REDTLS_OK, "");
        if (was_gap && ps->restoring) {
            ps->restored++;
            restore_check(ac);
        }
    } else if (st == REDTLS_OK) {
        /* An error reply (an ACL without the channel, say) or something
         * that is no confirmation: the subscription ends with the text. */
        char text[256] = "";
        int moved = 0;
        if (reply && reply->type == REDIS_REPLY_ERROR && reply->str) {
            snprintf(text, sizeof text, "the server refused the subscription: %.200s", reply->str);
            moved = is_moved_error(reply);
        } else {
            snprintf(text, sizeof text,
                     "the server answered the subscription with something that is no "
                     "confirmation");
        }
        end_sub_moved(ac, s, REDTLS_E_REFUSED, text, moved);
    } else if (st == REDTLS_E_CLOSED) {
        /* Closing: redtls__async_ps_end ends it. */
    } else {
        /* Not confirmed (lost with its connection, never written, timed
         * out): made again on the next connection, or at once on this one
         * when it is still up (a second SUBSCRIBE of a name the server
         * took after all only confirms it again). */
        s->state = REDTLS__SUB_LOST;
        if (ac->up && send_sub(ac, s, 1) == REDTLS_OK)
            s->state = REDTLS__SUB_OPENING;
        else if (ac->up && ps)
            ps->retry = 1; /* out of memory: the next pass tries again */
    }
    if (reply)
        freeReplyObject(reply);
    redtls__sub_unref(s);
}

static void unsubscribed(redtls_async *ac, redtls_status st, redisReply *reply, void *ud)
{
    redtls__sub *s = ud;
    redtls__ps_reply pr;
    if (st == REDTLS_OK && reply && redtls__ps_classify(reply, &pr) == REDTLS__PS_CONFIRM && ac->ps)
        ac->ps->server_count = pr.count;
    if (reply)
        freeReplyObject(reply);
    if (ac->ps)
        set_arrays(ac);
    /* Confirmed, or the connection that held it is gone: either way no
     * message of it comes any more. */
    if (!s->dead && st != REDTLS_E_CLOSED)
        end_sub(ac, s, REDTLS_OK, "");
    redtls__sub_unref(s);
}

static redtls_status send_sub(redtls_async *ac, redtls__sub *s, int subscribe)
{
    const char *argv[2] = {redtls__ps_command(s->kind, subscribe), s->name};
    size_t lens[2] = {strlen(argv[0]), s->len};
    s->refs++;
    redtls_status st = redtls__async_issue_argv(ac, subscribe ? REDTLS__ACMD_PS_SUB : REDTLS__ACMD_PS_UNSUB, 2, argv,
                                                lens, subscribe ? subscribed : unsubscribed, s);
    if (st != REDTLS_OK)
        s->refs--;
    return st;
}

/* ---- the public calls ---- */

static redtls_status check_name(redtls_async *ac, redtls_sub_kind kind, const char *name, size_t len)
{
    if (!redtls__ps_command(kind, 1))
        return redtls__fail(ac->c->errmsg, REDTLS_E_INVALID,
                            "unknown subscription kind %d (REDTLS_SUB_CHANNEL, _PATTERN or _SHARD)", (int)kind);
    if (!name || len == 0)
        return redtls__fail(ac->c->errmsg, REDTLS_E_INVALID, "a subscription needs a non-empty name");
    return REDTLS_OK;
}

static const char *kind_word(redtls_sub_kind kind)
{
    return kind == REDTLS_SUB_PATTERN ? "pattern" : kind == REDTLS_SUB_SHARD ? "shard channel" : "channel";
}

redtls_status redtls_async_subscribe(redtls_async *ac, redtls_sub_kind kind, const char *name, size_t len,
                                     redtls_async_message_cb cb, void *userdata)
{
    if (!ac || ac->freeing)
        return REDTLS_E_INVALID;
    ac->c->errmsg[0] = '\0';
    redtls_status st = check_name(ac, kind, name, len);
    if (st != REDTLS_OK)
        return st;
    if (!cb)
        return redtls__fail(ac->c->errmsg, REDTLS_E_INVALID, "a subscription needs a message callback");
    if ((st = redtls__async_check_issue(ac)) != REDTLS_OK)
        return st;
    if (!ac->ps) {
        if (!(ac->ps = calloc(1, sizeof *ac->ps)))
            return redtls__fail(ac->c->errmsg, REDTLS_E_NOMEM, "out of memory");
        ac->c->sub_claim = claim;
        ac->c->sub_ud = ac;
    }
    redtls__ps *ps = ac->ps;
    redtls__sub *s = redtls__subs_find(&ps->t, kind, name, len);
    if (s)
        return redtls__fail(ac->c->errmsg, REDTLS_E_STATE,
                            s->state == REDTLS__SUB_CLOSING
                                ? "that %s is being unsubscribed: subscribe again after REDTLS_MSG_UNSUBSCRIBED"
                                : "already subscribed to that %s",
                            kind_word(kind));
    if (!(s = redtls__subs_add(&ps->t, kind, name, len, cb, userdata)))
        return redtls__fail(ac->c->errmsg, REDTLS_E_NOMEM, "out of memory");
    ac->n_subs = ps->t.n;
    ac->c->msg_views = ac->n_subs != 0;
    if ((st = send_sub(ac, s, 1)) != REDTLS_OK) {
        redtls__subs_remove(&ps->t, s);
        ac->n_subs = ps->t.n;
        ac->c->msg_views = ac->n_subs != 0;
    }
    return st;
}

/* A lost subscription is on no connection: ended from the next pass
 * without opening one for its UNSUBSCRIBE. */
static redtls_status end_from_loop(redtls_async *ac, redtls__sub *s)
{
    redtls_message *m = calloc(1, sizeof *m);
    if (!m)
        return redtls__fail(ac->c->errmsg, REDTLS_E_NOMEM, "out of memory");
    *m = (redtls_message){
        .type = REDTLS_MSG_UNSUBSCRIBED, .kind = s->kind, .sub = s->name, .sub_len = s->len, .status = REDTLS_OK};
    s->refs++; /* the entry's name stays valid while the message waits */
    m->owner = s;
    queue_in(ac->ps, m);
    ac->wanted = 1;
    redtls__async_kick(ac);
    return REDTLS_OK;
}

redtls_status redtls_async_unsubscribe(redtls_async *ac, redtls_sub_kind kind, const char *name, size_t len)
{
    if (!ac || ac->freeing)
        return REDTLS_E_INVALID;
    ac->c->errmsg[0] = '\0';
    redtls_status st = check_name(ac, kind, name, len);
    if (st != REDTLS_OK)
        return st;
    redtls__sub *s = ac->ps ? redtls__subs_find(&ac->ps->t, kind, name, len) : NULL;
    if (!s || s->state == REDTLS__SUB_CLOSING)
        return redtls__fail(ac->c->errmsg, REDTLS_E_STATE,
                            s ? "that %s is already being unsubscribed" : "not subscribed to that %s", kind_word(kind));
    int was = s->state;
    /* A lost one sends nothing: the reconnect limits (REDTLS_E_UNAVAILABLE
     * for commands) do not stand in its way. */
    if (was == REDTLS__SUB_LOST && s->refs == 0) {
        if ((st = end_from_loop(ac, s)) == REDTLS_OK)
            s->state = REDTLS__SUB_CLOSING;
        return st;
    }
    if ((st = redtls__async_check_issue(ac)) != REDTLS_OK)
        return st;
    s->state = REDTLS__SUB_CLOSING;
    if ((st = send_sub(ac, s, 0)) != REDTLS_OK)
        s->state = was;
    return st;
}

size_t redtls_async_subscriptions(const redtls_async *ac)
{
    return ac ? ac->n_subs : 0;
}

/* ---- the driver's hooks ---- */

redtls_status redtls__async_ps_refuse(redtls_async *ac)
{
    if (!ac->n_subs || resp3(ac))
        return REDTLS_OK;
    return redtls__fail(ac->c->errmsg, REDTLS_E_STATE,
                        "the handle has subscriptions and speaks RESP2, where a subscribed connection takes no "
                        "other command: use a second handle, or RESP3 (redtls_config_set_protocol)");
}

void redtls__async_ps_lost(redtls_async *ac)
{
    redtls__ps *ps = ac->ps;
    if (!ps)
        return;
    ps->server_count = 0;
    /* A restore under way is counted again by the next one. */
    ps->restoring = ps->restored = 0;
    set_arrays(ac);
    for (redtls__sub *s = ps->t.head; s; s = s->next)
        if (s->state == REDTLS__SUB_ACTIVE)
            s->state = REDTLS__SUB_LOST;
    if (ps->t.n && ac->ps_lost)
        ac->ps_lost(ac);
}

void redtls__async_ps_retry(redtls_async *ac)
{
    redtls__ps *ps = ac->ps;
    if (!ps || !ps->retry || !ac->up || ac->readying)
        return;
    ps->retry = 0;
    for (redtls__sub *s = ps->t.head; s; s = s->next) {
        if (s->state != REDTLS__SUB_LOST)
            continue;
        if (send_sub(ac, s, 1) != REDTLS_OK) {
            ps->retry = 1;
            return;
        }
        s->state = REDTLS__SUB_OPENING;
        if (s->confirmed_once)
            s->gap = 1;
    }
}

int redtls__async_ps_wants_connection(const redtls_async *ac)
{
    if (!ac->ps)
        return 0;
    for (redtls__sub *s = ac->ps->t.head; s; s = s->next)
        if (s->state == REDTLS__SUB_LOST)
            return 1;
    return 0;
}

void redtls__async_ps_restore(redtls_async *ac)
{
    redtls__ps *ps = ac->ps;
    if (!ps)
        return;
    for (redtls__sub *s = ps->t.head; s; s = s->next) {
        if (s->state != REDTLS__SUB_LOST)
            continue;
        /* Sent even past the pending limit: it is not a new command. */
        if (send_sub(ac, s, 1) != REDTLS_OK) {
            ps->retry = 1; /* out of memory: the next pass tries again */
            continue;
        }
        s->state = REDTLS__SUB_OPENING;
        if (s->confirmed_once)
            s->gap = 1;
    }
    /* Every one with a RESTORED owed, including those whose SUBSCRIBE was
     * never written and waits in the queue. */
    ps->restoring = ps->restored = 0;
    for (redtls__sub *s = ps->t.head; s; s = s->next)
        ps->restoring += s->gap ? 1U : 0U;
}

int64_t redtls__async_ps_keepalive_due(const redtls_async *ac)
{
    if (!ac->n_subs || !ac->up || ac->readying || ac->s_head || ac->q_head)
        return REDTLS__NO_DEADLINE;
    return ac->last_read + (int64_t)redtls__async_ps_keepalive_ms(ac);
}

unsigned redtls__async_ps_keepalive_ms(const redtls_async *ac)
{
    return ac->c->cfg.health_check_ms ? ac->c->cfg.health_check_ms : REDTLS__PS_KEEPALIVE_MS;
}

void redtls__async_ps_keepalive(redtls_async *ac, int64_t now)
{
    if (now < redtls__async_ps_keepalive_due(ac))
        return;
    const char *argv[1] = {"PING"};
    /* Its reply (a "pong" array under RESP2) pairs with it and is
     * dropped; none within the command timeout drops the connection (the
     * silence rule), and the subscriptions move to a new one. Out of
     * memory: the next pass tries again. */
    (void)redtls__async_issue_argv(ac, 0, 1, argv, NULL, NULL, NULL);
}

void redtls__async_ps_end(redtls_async *ac, int freeing)
{
    redtls__ps *ps = ac->ps;
    if (!ps)
        return;
    drain_in(ps);
    /* Every subscription's last call. Those a callback adds meanwhile
     * (refused while freeing) are behind them and stay. */
    unsigned epoch = ac->epoch;
    for (size_t n = ps->t.n; n > 0 && ps->t.head && ac->epoch == epoch; n--)
        end_sub(ac, ps->t.head, REDTLS_E_CLOSED,
                freeing ? "the handle was freed" : "the handle was closed by the application");
    ps->server_count = 0;
    ps->restoring = ps->restored = 0;
    set_arrays(ac);
}

void redtls__async_ps_free(redtls_async *ac)
{
    redtls__ps *ps = ac->ps;
    if (!ps)
        return;
    drain_in(ps);
    free(ps->scratch);
    redtls__subs_free(&ps->t);
    free(ps);
    ac->ps = NULL;
    ac->n_subs = 0;
    ac->c->msg_views = 0;
}

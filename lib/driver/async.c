/* The asynchronous API: a driver that steps the session's machines when an
 * event loop says the socket is ready or a time has come, and keeps its
 * own record of the commands issued (callbacks, deadlines, the order the
 * replies come back in). See include/redtls/async.h for the rules; the
 * command records are in async_cmd.c, the built-in loop in async_run.c. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "async_internal.h"
#include "wait.h"

size_t redtls_async_default_max_pending(void)
{
    return REDTLS_ASYNC_DEFAULT_MAX_PENDING;
}

static int64_t real_clock(void *ud)
{
    (void)ud;
    return redtls__now_ms();
}

redtls_status redtls_async_new(redtls_config *cfg, redtls_async **out)
{
    if (!out)
        return REDTLS_E_INVALID;
    *out = NULL;
    if (!cfg)
        return REDTLS_E_INVALID;
    redtls_async *ac = calloc(1, sizeof *ac);
    if (!ac)
        return redtls__fail(cfg->errmsg, REDTLS_E_NOMEM, "out of memory");
    redtls_status st = redtls_conn_new(cfg, &ac->c);
    if (st != REDTLS_OK) {
        free(ac);
        return st;
    }
    ac->clock = real_clock;
    ac->max_pending = REDTLS_ASYNC_DEFAULT_MAX_PENDING;
    *out = ac;
    return REDTLS_OK;
}

const char *redtls_async_errmsg(const redtls_async *ac)
{
    return ac ? ac->c->errmsg : "";
}

int redtls_async_is_connected(const redtls_async *ac)
{
    return ac && ac->up;
}

size_t redtls_async_pending(const redtls_async *ac)
{
    return ac ? ac->n_alive : 0;
}

redtls_status redtls_async_set_max_pending(redtls_async *ac, size_t max)
{
    if (!ac)
        return REDTLS_E_INVALID;
    ac->max_pending = max ? max : REDTLS_ASYNC_DEFAULT_MAX_PENDING;
    return REDTLS_OK;
}

/* ---- connecting ---- */

static void connect_done(redtls_async *ac, redtls_status st)
{
    redtls_async_connect_cb cb = ac->ccb;
    void *ud = ac->cud;
    ac->ccb = NULL;
    ac->connect_asked = 0;
    if (cb)
        cb(ac, st, ud);
}

redtls_status redtls_async_connect(redtls_async *ac, redtls_async_connect_cb cb, void *userdata)
{
    if (!ac || ac->freeing)
        return REDTLS_E_INVALID;
    ac->c->errmsg[0] = '\0';
    if (ac->up || ac->attempting || ac->connect_asked)
        return redtls__fail(ac->c->errmsg, REDTLS_E_STATE, "already connected or connecting");
    ac->ccb = cb;
    ac->cud = userdata;
    ac->connect_asked = 1;
    ac->gave_up = 0;
    redtls__attempt_succeeded(ac->c); /* an explicit connect starts afresh */
    ac->wanted = 1;
    redtls__async_kick(ac);
    return REDTLS_OK;
}

/* The connection is gone (st, the message in errmsg): commands in flight
 * are lost (resent once when idempotent), those framed but never written
 * wait for the next connection with the queue, the timed-out ones'
 * replies will never come, and the connection is made again when
 * commands wait. */
static void connection_lost(redtls_async *ac, redtls_status st)
{
    redtls_conn *c = ac->c;
    ac->sock_gen++;
    int was_up = ac->up;
    ac->up = 0;
    redtls__async_ps_lost(ac);
    redtls__acmd *nomem_head = NULL, *nomem_tail = NULL;
    redtls__async_unframe_tail(ac, &nomem_head, &nomem_tail);
    redtls__conn_abandon(c, st);
    redtls__acmd *m, *m_tail, *resend_head = NULL, *resend_tail = NULL, *lost_head = NULL, *lost_tail = NULL;
    redtls__async_s_take(ac, &m, &m_tail);
    while (m) {
        redtls__acmd *next = m->next;
        if (!m->cb)
            redtls__acmd_free(ac, m);
        else if ((m->flags & REDTLS_CMD_IDEMPOTENT) && !m->resent && m->frame)
            redtls__alist_push(&resend_head, &resend_tail, m);
        else
            redtls__alist_push(&lost_head, &lost_tail, m);
        m = next;
    }
    /* Resends go first, in their order, then what was never written. */
    if (resend_head) {
        for (redtls__acmd *r = resend_head; r; r = r->next)
            r->resent = 1;
        resend_tail->next = ac->q_head;
        ac->q_head = resend_head;
        if (!ac->q_tail)
            ac->q_tail = resend_tail;
    }
    if (!was_up && !lost_head && !nomem_head)
        return;
    if (lost_head) {
        char cause[REDTLS__ERRMSG_MAX];
        memcpy(cause, c->errmsg, sizeof cause);
        redtls__fail(c->errmsg, REDTLS_E_OUTCOME_UNKNOWN,
                     "the connection broke after the command was sent, so it may or may not have run (%.400s)", cause);
        redtls__async_finish_all(ac, &lost_head, &lost_tail, REDTLS_E_OUTCOME_UNKNOWN);
        memcpy(c->errmsg, cause, sizeof cause);
    }
    /* Later commands than those, so their callbacks come after; ended
     * even when one of those callbacks closed or freed the handle (they
     * are in none of its lists; its memory lasts until the outermost
     * call returns). */
    redtls__async_end_unkept(ac, &nomem_head, &nomem_tail);
}

void redtls__async_drop(redtls_async *ac, redtls_status st)
{
    connection_lost(ac, st);
}

/* Not connected, with work waiting: an attempt when the backoff allows. */
static void step_connect(redtls_async *ac, int64_t now)
{
    redtls_conn *c = ac->c;
    if (!ac->attempting) {
        /* Subscriptions to restore make a connection too, until the
         * reconnect limits run out (redtls_async_connect starts again). */
        if (!ac->q_head && !ac->connect_asked && (ac->gave_up || !redtls__async_ps_wants_connection(ac)))
            return;
        if (ac->tried && !c->cfg.reconnect && !ac->connect_asked) {
            const char *cause = redtls__conn_cause(c);
            redtls__fail(c->errmsg, REDTLS_E_STATE, "not connected, and reconnection is off%s%.300s%s: call "
                         "redtls_async_connect",
                         cause[0] ? " (last failure: " : "", cause, cause[0] ? ")" : "");
            redtls__async_finish_all(ac, &ac->q_head, &ac->q_tail, REDTLS_E_STATE);
            return;
        }
        if (c->next_attempt > now) {
            ac->wake_at = c->next_attempt;
            return;
        }
        redtls_status st = redtls__attempt_start(c, now, REDTLS__NO_DEADLINE);
        ac->tried = 1;
        ac->sock_gen++;
        if (st != REDTLS_OK) {
            ac->attempt_st = st;
            goto failed;
        }
        ac->attempting = 1;
    }
    int done = 0;
    redtls_status st = redtls__attempt_step(c, now, &done, &ac->w);
    if (st == REDTLS_OK && !done)
        return;
    ac->attempting = 0;
    ac->sock_gen++;
    ac->w = (redtls__wait){-1, 0, REDTLS__NO_DEADLINE};
    if (st == REDTLS_OK) {
        redtls__attempt_succeeded(c);
        ac->up = 1;
        ac->last_read = now;
        redtls__async_ps_restore(ac);
        connect_done(ac, REDTLS_OK);
        return;
    }
    ac->attempt_st = st;
failed:
    c->last_status = ac->attempt_st;
    redtls__attempt_failed(c, now);
    connect_done(ac, ac->attempt_st);
    if (c->gave_up) {
        ac->gave_up = 1;
        redtls__fail(c->errmsg, REDTLS_E_UNAVAILABLE,
                     "gave up reconnecting after %u attempts (last failure: %.300s); call redtls_async_connect to start "
                     "again",
                     c->attempts, redtls__conn_cause(c));
        redtls__async_finish_all(ac, &ac->q_head, &ac->q_tail, REDTLS_E_UNAVAILABLE);
    } else if (!c->cfg.reconnect || ac->fail_queued) {
        redtls__async_finish_all(ac, &ac->q_head, &ac->q_tail, ac->attempt_st);
    }
}

/* ---- deadlines ---- */

/* Commands past their deadline end alone: those not written yet leave the
 * queue; those in flight keep their place (their reply, when it comes, is
 * dropped) but their callback is called now. */
static void expire(redtls_async *ac, int64_t now)
{
    /* Commands framed into the buffer but not written yet (by callbacks
     * of the loop's read phase, which writes nothing) whose deadline has
     * come go back to the queue first, to end there as not sent: ended
     * from the list of those written, they would be reported as "may have
     * run" and then written all the same. (Deadlines grow along the list:
     * none is due while s_live is not; those not due go out from the
     * queue in this pass.) */
    if (ac->c->unsent && ac->s_live && ac->s_live->deadline <= now) {
        redtls__acmd *nh = NULL, *nt = NULL;
        unsigned ep = ac->epoch;
        redtls__async_unframe_tail(ac, &nh, &nt);
        redtls__async_end_unkept(ac, &nh, &nt);
        if (ac->epoch != ep)
            return;
    }
    /* Deadlines grow along the lists: only their fronts can be due. */
    if (ac->q_head && ac->q_head->deadline <= now) {
        redtls__acmd *late_head = ac->q_head, *late_tail = ac->q_head;
        while (late_tail->next && late_tail->next->deadline <= now)
            late_tail = late_tail->next;
        ac->q_head = late_tail->next;
        if (!ac->q_head)
            ac->q_tail = NULL;
        late_tail->next = NULL;
        redtls_conn *c = ac->c;
        char cause[REDTLS__ERRMSG_MAX];
        memcpy(cause, c->errmsg, sizeof cause);
        if (ac->up)
            redtls__fail(c->errmsg, REDTLS_E_COMMAND_TIMEOUT, "the command could not be written within the command timeout");
        else
            redtls__fail(c->errmsg, REDTLS_E_COMMAND_TIMEOUT,
                         "not connected within the command timeout; the command was not sent (last failure: %.300s)",
                         redtls__conn_cause(c)[0] ? redtls__conn_cause(c) : "none yet");
        redtls__async_finish_all(ac, &late_head, &late_tail, REDTLS_E_COMMAND_TIMEOUT);
        memcpy(c->errmsg, cause, sizeof cause);
    }
    unsigned epoch = ac->epoch;
    redtls__acmd *m;
    while (ac->epoch == epoch && (m = ac->s_live) != NULL && m->deadline <= now) {
        /* The record stays in the list (its reply is still to come); the
         * ones behind it all have callbacks owed. A callback that closes
         * the handle frees them all, hence the epoch. */
        ac->s_live = m->next;
        redtls__fail(ac->c->errmsg, REDTLS_E_COMMAND_TIMEOUT,
                     "no reply within the command timeout (the command may have run; its reply, if it comes, "
                     "is dropped)");
        redtls__async_finish(ac, m, REDTLS_E_COMMAND_TIMEOUT, NULL);
    }
}

/* ---- connected: writes and reads ---- */

/* Reads the replies that have come, in order, and calls their callbacks;
 * -1 when the connection was lost or a callback closed the handle (the
 * caller returns at once); 1 when it stopped because the transport had
 * nothing more (nothing is buffered in the TLS layer either); else 0. */
static REDTLS__INLINE_ALWAYS int read_replies(redtls_async *ac, int64_t now, unsigned epoch)
{
    redtls_conn *c = ac->c;
    /* Replies, in order, as far as they have come; not for commands
     * the callbacks framed but that are not written yet (no reply can
     * have come for them: a read would only say "try again"). */
    for (int reads = 0; c->tp && (redtls__conn_in_flight(c) > 0 || redtls__async_subscribed(ac)) && ac->epoch == epoch;
         reads++) {
        redisReply *r = NULL;
        int rwant = 0;
        size_t got = 0;
        if (c->msg_views && redtls__async_ps_take_views(ac) < 0)
            return -1;
        redtls_status st = redtls__conn_take_parsed(c, now, &r);
        if (st == REDTLS_OK && !r) {
            if (reads > 64) {
                /* Back to the loop for fairness; come back at once
                 * (what is left may sit in the TLS layer, with the
                 * socket quiet). */
                ac->wanted = 1;
                break;
            }
            st = redtls__conn_read_more(c, now, REDTLS__READ_CHUNK, &got, &r, &rwant);
            if (got)
                ac->last_read = now;
        }
        /* Messages that came before this reply go first. */
        if (ac->ps) {
            redtls__async_ps_deliver(ac);
            if (ac->epoch != epoch) {
                if (r)
                    freeReplyObject(r);
                return -1;
            }
        }
        if (st != REDTLS_OK) {
            /* A reply that breaks a limit or the protocol was the
             * first owed one's: that command ends with it, as in the
             * blocking API; those behind it lose their connection. */
            if (st != REDTLS_E_EOF && st != REDTLS_E_CLOSED && st != REDTLS_E_IO && st != REDTLS_E_TLS) {
                redtls__acmd *first = redtls__async_s_pop(ac);
                if (first && first->cb)
                    redtls__async_finish(ac, first, st, NULL);
                if (first)
                    redtls__acmd_free(ac, first);
                if (ac->epoch != epoch)
                    return -1;
            }
            connection_lost(ac, st);
            return -1;
        }
        if (!r) {
            if (rwant)
                return 1;
            continue;
        }
        ac->last_read = now;
        ac->live_pass = 1;
        redtls__acmd *m = redtls__async_s_pop(ac);
        if (!m) {
            /* Subscribed, nothing owed, and a reply came. */
            freeReplyObject(r);
            redtls__fail(c->errmsg, REDTLS_E_PROTOCOL, "the server sent a reply to no command");
            connection_lost(ac, REDTLS_E_PROTOCOL);
            return -1;
        }
        if (m->cb)
            redtls__async_finish(ac, m, REDTLS_OK, r);
        else
            freeReplyObject(r);
        redtls__acmd_free(ac, m);
    }
    return 0;
}

/* Replies owed, and nothing at all from the server for the silence limit
 * (a command timeout; Pub/Sub's keepalive when there is none). */
static int silent_too_long(const redtls_async *ac, int64_t now)
{
    int64_t silence = redtls__async_silence_ms(ac);
    return ac->s_head && silence && now - ac->last_read >= silence;
}

static void close_silent(redtls_async *ac)
{
    redtls__fail(ac->c->errmsg, REDTLS_E_COMMAND_TIMEOUT,
                 "the server sent nothing for %lld ms while replies were owed: the connection is closed",
                 (long long)redtls__async_silence_ms(ac));
    connection_lost(ac, REDTLS_E_COMMAND_TIMEOUT);
}

static void step_up(redtls_async *ac, int64_t now)
{
    redtls_conn *c = ac->c;
    unsigned epoch = ac->epoch;
    /* Read to the end just before, in the loop's read phase: nothing can
     * be waiting in the TLS layer, and the socket is the loop's to watch. */
    int drained = ac->drained;
    ac->drained = 0;
    ac->hold = 0;
    if (ac->s_head) {
        /* A connection that never drains would never re-authenticate
         * (ElastiCache closes an IAM connection 12 hours after its last
         * AUTH): when one is due, new commands wait in the queue until
         * the replies owed are in; the ready machine then sends AUTH.
         * Looked at once per pass (the wall clock), so those issued
         * before the pass that notices may still go first. */
        if (redtls__iam_on(&c->cfg.iam) && redtls__iam_reauth_due(&c->cfg.iam, &c->iam))
            ac->hold = 1;
    } else if (!redtls__async_subscribed(ac) || c->cfg.protocol == 3) {
        /* (Subscribed under RESP2, messages arrive unasked and the server
         * takes no other command: no idle check, no ready machine; the
         * keepalive PING watches the connection. Under RESP3 the idle
         * check reads what came, messages included, and a due re-AUTH
         * runs as on any connection.) */
        redtls_status idle = REDTLS_OK;
        if (ac->q_head) {
            /* Before commands go out on a connection with nothing owed, as
             * the blocking API does: has the server closed it, is a
             * health-check PING due, is an AUTH owed (the ready machine,
             * allowed one attempt: reconnecting is ours). */
            if (redtls__ready_needed(c, now, &idle)) {
                redtls__ready_start(c, now, ac->q_head->deadline, 1, idle);
                ac->readying = 1;
                return;
            }
        } else if (!redtls__async_subscribed(ac) && (idle = redtls__conn_idle_check(c)) != REDTLS_OK) {
            /* Nothing owed and the server closed the connection (or sent
             * something unasked): noticed now, not at the next command,
             * so the loop does not watch a socket that stays readable.
             * (Subscribed, the read below takes what came, messages first
             * and without reply objects.) */
            connection_lost(ac, idle);
            return;
        }
    }
    /* Everything issued since the last pass goes out in one write; not
     * while a re-authentication is owed (NOAUTH: it waits until the
     * replies owed are in). */
    if (ac->q_head && !c->need_reauth && !ac->hold) {
        /* The silence rule counts from when replies start being owed, not
         * from the last reply of an earlier busy spell. */
        if (!ac->s_head)
            ac->last_read = now;
        else if (silent_too_long(ac, now)) {
            /* Already dead by the silence rule (below), which no pass has
             * applied yet (the loop was not run, or a slow callback): what
             * has come is read first, and if nothing has, the connection
             * is closed before the queue goes out. Written, the queue
             * would be lost with it as "may have run", unseen by the
             * server; held back, it waits for the next connection. */
            if (!drained && read_replies(ac, now, epoch) < 0)
                return;
            if (ac->epoch != epoch || !c->tp)
                return;
            if (silent_too_long(ac, now)) {
                close_silent(ac);
                return;
            }
        }
        while (ac->q_head) {
            redtls__acmd *m = redtls__alist_pop(&ac->q_head, &ac->q_tail);
            if (redtls__conn_append_raw(c, m->frame, m->len) != REDTLS_OK) {
                /* Never written: it ends now with the cause, not at its
                 * deadline with a time-out. */
                redtls__async_finish(ac, m, REDTLS_E_NOMEM, NULL);
                redtls__acmd_free(ac, m);
                if (ac->epoch != epoch)
                    return;
                continue;
            }
            if (!(m->flags & REDTLS_CMD_IDEMPOTENT) || m->resent) {
                if (!m->borrowed)
                    free(m->frame);
                m->frame = NULL;
                m->borrowed = 0;
            }
            redtls__async_s_push(ac, m);
        }
    }
    /* Write, read what has come, and write again what the callbacks
     * issued (framed straight into the buffer), a few turns at most. */
    for (int turn = 0;; turn++) {
        /* Replies to what was written before can be waiting; right after
         * the only requests in flight went out, nothing can be yet: the
         * loop waits for the socket instead of a read that finds nothing
         * (as it does when the read phase just found nothing more). */
        int fresh = turn == 0 && drained;
        int earlier = redtls__conn_in_flight(c) > 0 && !fresh;
        if (c->need_reauth && c->unsent) {
            /* A NOAUTH came after callbacks framed commands: those go
             * back to the queue and out after the new AUTH. */
            redtls__acmd *nh = NULL, *nt = NULL;
            redtls__async_unframe_tail(ac, &nh, &nt);
            redtls__async_end_unkept(ac, &nh, &nt);
            if (ac->epoch != epoch)
                return;
        }
        int want = 0;
        redtls_status st = redtls__conn_write_step(c, &want);
        if (st != REDTLS_OK) {
            connection_lost(ac, st);
            return;
        }
        ac->write_want = want;
        if (!earlier && (redtls__conn_read_want(c) || fresh))
            break;
        c->just_wrote = 0;
        if (read_replies(ac, now, epoch) < 0)
            return;
        if (ac->epoch != epoch || !c->tp)
            return;
        if (turn >= 3 || ac->q_head || c->olen <= c->ooff || ac->write_want)
            break;
    }
    if (ac->epoch != epoch || !c->tp)
        return;
    /* Replies owed and nothing at all from the server for a whole command
     * timeout: the connection is dead, whatever TCP says. */
    if (silent_too_long(ac, now))
        close_silent(ac);
}

static void step_ready(redtls_async *ac, int64_t now)
{
    int done = 0;
    unsigned sockets = ac->c->sockets;
    redtls_status st = redtls__ready_step(ac->c, now, &done, &ac->w);
    /* The machine may have dropped and remade the connection (the new
     * socket can have the old one's number, the new transport the old
     * one's address): a new socket, as far as the loop knows. Not for
     * every step: each would make the loop watch the socket anew. */
    if (ac->c->sockets != sockets)
        ac->sock_gen++;
    if (st == REDTLS_OK && !done)
        return;
    ac->readying = 0;
    ac->w = (redtls__wait){-1, 0, REDTLS__NO_DEADLINE};
    if (!ac->c->tp) {
        ac->up = 0;
        connection_lost(ac, st != REDTLS_OK ? st : REDTLS_E_IO);
    }
}

/* The loop could not watch the socket: what waits on it ends (an attempt
 * fails and is booked; a connection is lost). */
static void watch_failed(redtls_async *ac, int64_t now)
{
    redtls_conn *c = ac->c;
    ac->watch_failed = 0;
    redtls__fail(c->errmsg, REDTLS_E_NOMEM, "the event loop could not watch the connection's socket (out of memory)");
    if (ac->attempting) {
        redtls__attempt_cancel(c);
        ac->attempting = 0;
        ac->w = (redtls__wait){-1, 0, REDTLS__NO_DEADLINE};
        ac->attempt_st = c->last_status = REDTLS_E_NOMEM;
        redtls__attempt_failed(c, now);
        connect_done(ac, REDTLS_E_NOMEM);
    } else if (ac->readying) {
        redtls__ready_cancel(c);
        ac->readying = 0;
        ac->w = (redtls__wait){-1, 0, REDTLS__NO_DEADLINE};
        connection_lost(ac, REDTLS_E_NOMEM);
    } else if (ac->up) {
        connection_lost(ac, REDTLS_E_NOMEM);
    }
}

/* One pass: deadlines, then whatever the state allows, until nothing more
 * can be done now. */
static void pass(redtls_async *ac)
{
    int64_t now = redtls__async_clock_now(ac);
    ac->wake_at = REDTLS__NO_DEADLINE;
    ac->live_pass = ac->issued_in_pass = 0;
    if (ac->watch_failed)
        watch_failed(ac, now);
    unsigned epoch = ac->epoch;
    if (ac->n_subs) {
        redtls__async_ps_keepalive(ac, now);
        redtls__async_ps_retry(ac);
    }
    for (int round = 0; round < 8 && ac->epoch == epoch; round++) {
        int was_up = ac->up, was_ready = ac->readying, was_attempting = ac->attempting;
        expire(ac, now);
        if (ac->epoch != epoch)
            break;
        if (ac->readying)
            step_ready(ac, now);
        else if (ac->up)
            step_up(ac, now);
        else
            step_connect(ac, now);
        if (ac->up == was_up && ac->readying == was_ready && ac->attempting == was_attempting)
            break;
    }
    ac->drained = 0;
    /* Commands the callbacks issued that this pass did not write: the
     * next pass, at once. */
    redtls_conn *c = ac->c;
    if (ac->issued_in_pass && (!ac->up || ac->readying || ac->q_head || (c->olen > c->ooff && !ac->write_want)))
        ac->wanted = 1;
    /* Commands queued behind replies that are all in now (a re-AUTH or
     * an IAM hold waited for them): the next pass sends them. */
    if (ac->up && !ac->readying && !ac->s_head && ac->q_head)
        ac->wanted = 1;
    ac->live_pass = ac->issued_in_pass = 0;
    /* Messages read outside the read loop (by an idle check), and ends
     * owed from the loop. */
    if (ac->ps && ac->epoch == epoch)
        redtls__async_ps_deliver(ac);
}

/* ---- what the loop is to watch ---- */

int redtls_async_fd(const redtls_async *ac)
{
    if (!ac)
        return -1;
    if (ac->readying || ac->attempting)
        return ac->w.events ? ac->w.fd : -1;
    return ac->up && ac->c->tp ? ac->c->fd : -1;
}

int redtls_async_events(const redtls_async *ac)
{
    if (!ac)
        return 0;
    int w = ac->readying || ac->attempting ? ac->w.events : ac->up ? POLLIN | ac->write_want : 0;
    return ((w & POLLIN) ? REDTLS_ASYNC_READ : 0) | ((w & POLLOUT) ? REDTLS_ASYNC_WRITE : 0);
}

/* The earliest time process must run: a machine's time, the first
 * deadline, the silence limit, the next attempt. */
static int64_t next_time(const redtls_async *ac)
{
    int64_t t = ac->wake_at;
    if (ac->readying || ac->attempting)
        t = redtls__deadline_min(t, ac->w.at);
    /* Deadlines grow along the lists (async_internal.h). */
    if (ac->q_head)
        t = redtls__deadline_min(t, ac->q_head->deadline);
    if (ac->s_live)
        t = redtls__deadline_min(t, ac->s_live->deadline);
    if (ac->up && ac->s_head && redtls__async_silence_ms(ac))
        t = redtls__deadline_min(t, ac->last_read + redtls__async_silence_ms(ac));
    if (ac->n_subs)
        t = redtls__deadline_min(t, redtls__async_ps_keepalive_due(ac));
    if (ac->wanted)
        t = redtls__deadline_min(t, ac->now);
    return t;
}

int64_t redtls__async_due(const redtls_async *ac)
{
    return next_time(ac);
}

int redtls_async_timeout_ms(const redtls_async *ac)
{
    if (!ac)
        return -1;
    int64_t t = next_time(ac);
    if (t == REDTLS__NO_DEADLINE)
        return -1;
    int64_t left = t - ac->clock(ac->clock_ud);
    return left <= 0 ? 0 : left > 86400000 ? 86400000 : (int)left;
}

/* Tells the adapter what is wanted now. */
void redtls__async_kick(redtls_async *ac)
{
    if (!ac->has_hooks || ac->in_process)
        return;
    int fd = redtls_async_fd(ac), ev = redtls_async_events(ac);
    const redtls_conn *c = ac->c;
    /* Sockets are told apart by a generation, not by their number or the
     * address of their transport: both come back for the next socket. */
    size_t dial = c->at.dial.index + (c->at.dial.fd >= 0 ? 1U : 0U);
    int same_socket = ac->sock_gen == ac->hooked_gen && dial == ac->hooked_dial;
    if (!same_socket && ac->hooked_fd >= 0) {
        /* Whatever the number now, the loop's registration belonged to a
         * socket that may be closed. */
        (void)ac->hooks.watch(ac->hooks.data, -1, 0);
        ac->hooked_fd = -1;
        ac->hooked_events = 0;
    }
    ac->hooked_gen = ac->sock_gen;
    ac->hooked_dial = dial;
    if (fd != ac->hooked_fd || ev != ac->hooked_events) {
        if (ac->hooks.watch(ac->hooks.data, fd, ev) != 0) {
            /* Ended in the next pass, which the timer brings at once. */
            ac->watch_failed = 1;
            ac->wanted = 1;
            ac->hooked_fd = -2;
        } else {
            ac->hooked_fd = fd;
            ac->hooked_events = ev;
        }
    }
    int ms = redtls_async_timeout_ms(ac);
    if (ms != ac->hooked_ms || ms >= 0) {
        ac->hooks.timer(ac->hooks.data, ms);
        ac->hooked_ms = ms;
    }
}

static void really_free(redtls_async *ac);

void redtls__async_read_phase(redtls_async *ac, int64_t now)
{
    /* Only a connection in use with replies owed, and not subscribed
     * (messages come unasked there, the pass takes them). */
    if (ac->in_process || ac->freeing || !ac->up || ac->readying || !ac->s_head || !ac->c->tp ||
        redtls__async_subscribed(ac))
        return;
    ac->in_process = 1;
    ac->busy++;
    ac->live_pass = ac->issued_in_pass = 0;
    if (ac->clock == real_clock)
        ac->now = ac->c->now = now;
    else
        now = redtls__async_clock_now(ac); /* a test's clock */
    /* The loop saw the socket readable: a read is due even right after a
     * write. */
    ac->c->just_wrote = 0;
    int rc = read_replies(ac, now, ac->epoch);
    if (rc >= 0) {
        ac->drained = rc == 1;
        /* What the callbacks issued goes out in the pass that follows. */
        if (ac->issued_in_pass)
            ac->wanted = 1;
        if (ac->ps)
            redtls__async_ps_deliver(ac);
    }
    ac->in_process = 0;
    if (--ac->busy == 0 && ac->freeing) {
        really_free(ac);
        return;
    }
    redtls__async_kick(ac);
}

redtls_status redtls_async_process(redtls_async *ac, int events)
{
    (void)events;
    if (!ac)
        return REDTLS_E_INVALID;
    if (ac->in_process || ac->freeing)
        return REDTLS_OK;
    ac->in_process = 1;
    ac->busy++;
    ac->wanted = 0;
    pass(ac);
    ac->in_process = 0;
    if (--ac->busy == 0 && ac->freeing) {
        really_free(ac);
        return REDTLS_OK;
    }
    redtls__async_kick(ac);
    return REDTLS_OK;
}

redtls_status redtls_async_attach(redtls_async *ac, const redtls_async_hooks *hooks)
{
    if (!ac || (hooks && (!hooks->watch || !hooks->timer)))
        return REDTLS_E_INVALID;
    if (ac->has_hooks && ac->hooks.detach)
        ac->hooks.detach(ac->hooks.data);
    ac->has_hooks = hooks != NULL;
    if (hooks)
        ac->hooks = *hooks;
    ac->hooked_fd = -2;
    ac->hooked_events = -1;
    ac->hooked_ms = -2;
    redtls__async_kick(ac);
    return REDTLS_OK;
}

/* ---- closing ---- */

static void end_everything(redtls_async *ac, redtls_status st, const char *why)
{
    redtls_conn *c = ac->c;
    ac->epoch++;
    ac->sock_gen++;
    redtls__fail(c->errmsg, st, "%s", why);
    if (ac->attempting)
        redtls__attempt_cancel(c);
    if (ac->readying)
        redtls__ready_cancel(c);
    ac->attempting = ac->readying = 0;
    ac->w = (redtls__wait){-1, 0, REDTLS__NO_DEADLINE};
    redtls_conn_close(c);
    ac->up = 0;
    connect_done(ac, st);
    redtls__acmd *sh, *st_;
    redtls__async_s_take(ac, &sh, &st_);
    redtls__async_finish_all(ac, &sh, &st_, st);
    redtls__async_finish_all(ac, &ac->q_head, &ac->q_tail, st);
    redtls__async_ps_end(ac, ac->freeing);
}

void redtls_async_close(redtls_async *ac)
{
    if (!ac || ac->freeing)
        return;
    ac->busy++;
    end_everything(ac, REDTLS_E_CLOSED, "closed by the application");
    if (--ac->busy == 0 && ac->freeing) {
        really_free(ac);
        return;
    }
    redtls__async_kick(ac);
}

static void really_free(redtls_async *ac)
{
    if (ac->has_hooks && ac->hooks.detach)
        ac->hooks.detach(ac->hooks.data);
    redtls__async_ps_free(ac);
    redtls_conn_free(ac->c);
    while (ac->pool) {
        redtls__acmd *m = ac->pool;
        ac->pool = m->next;
        free(m);
    }
    free(ac);
}

void redtls_async_free(redtls_async *ac)
{
    if (!ac || ac->freeing)
        return;
    ac->freeing = 1;
    ac->busy++;
    /* Commands issued from those callbacks are refused (freeing). */
    end_everything(ac, REDTLS_E_CLOSED, "the handle was freed");
    /* Freed by the outermost call that runs callbacks (this one, or the
     * process or close a callback of which called us). */
    if (--ac->busy == 0)
        really_free(ac);
}

redtls_status redtls__async_set_tokens(redtls_async *ac, const char *token, const char *token_alt, int flags)
{
    redtls_conn *c = ac->c;
    redtls_status st = redtls__set_token_pair(&c->cfg, token, token_alt, c->errmsg);
    if (st != REDTLS_OK)
        return st;
    c->preferred = 0;
    if ((flags & REDTLS_REAUTH_NOW) && ac->up && !c->cfg.cred_cb && !redtls__iam_on(&c->cfg.iam)) {
        /* The ready machine sends it before the next write that finds
         * nothing owed; a pass is wanted so an idle connection does it
         * now. */
        if (!c->need_reauth)
            c->need_reauth = REDTLS__REAUTH_LIVE;
        ac->wanted = 1;
        redtls__async_kick(ac);
    }
    return REDTLS_OK;
}

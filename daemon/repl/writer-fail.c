/* A replica that fails: the set in etcd says so (OutOfSync, by CAS)
 * before the change is acknowledged without it; the regions it misses are
 * marked on every other in-sync replica and in this node's own record;
 * fewer in sync than min fails the change (-EIO).  And fencing: a writer
 * whose lease may be gone, or whose epoch a replica refuses, stops. */
#include "writer-internal.h"
#include "audit/audit.h"
#include "cluster/cluster.h"
#include "core/error.h"
#include "daemon.h"
#include "log.h"
#include "peer/peer.h"

#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#define SET_RETRIES 20

unsigned repl_insync(struct cvd_repl_writer *w)
{
    /* This node: a writer in the set holds an in-sync replica; one
     * outside it (diskless) holds nothing that counts. */
    unsigned n = w->diskless ? 0 : 1;

    pthread_mutex_lock(&w->lock);
    for (unsigned i = 0; i < w->npeers; i++)
        n += w->p[i].role == ROLE_INSYNC;
    pthread_mutex_unlock(&w->lock);
    return n;
}

int repl_peer_index(struct cvd_repl_writer *w, const char *node)
{
    for (unsigned i = 0; i < w->npeers; i++)
        if (!strcmp(w->p[i].node, node))
            return (int)i;
    return -1;
}

int repl_fence_check(struct cvd_repl_writer *w)
{
    int64_t ms;

    if (atomic_load(&w->fenced))
        return cv_error(-EIO, "volume %s: this node stopped writing it "
                        "(fenced): detach and attach again", w->volume);
    /* A lease replaced (the old one expired) took the attach record with
     * it, however live the new one is. */
    if ((ms = cvd_node_lease_valid_ms(w->d)) >= REPL_FENCE_MARGIN_MS &&
        cvd_node_lease(w->d) == w->lease)
        return 0;
    if (!atomic_exchange(&w->fenced, 1))
        cvd_err("volume %s: node lease may have expired: stopped writing "
                "(epoch %llu)", w->volume, (unsigned long long)w->epoch);
    return cv_error(-EIO, "volume %s: node lease may have expired: stopped "
                    "writing", w->volume);
}

void repl_fence(struct cvd_repl_writer *w, const char *node)
{
    if (!atomic_exchange(&w->fenced, 1))
        cvd_err("volume %s: replica %s refused epoch %llu: another node "
                "writes it now: stopped writing", w->volume, node,
                (unsigned long long)w->epoch);
    cv_error(-EIO, "volume %s: replica %s refused epoch %llu: another node "
             "writes it now", w->volume, node, (unsigned long long)w->epoch);
}

int repl_set_update(struct cvd_repl_writer *w,
                    int (*fn)(struct cvd_replica_set *s, void *arg),
                    void *arg)
{
    struct cvd_meta *m = w->d->meta;
    struct cvd_replica_set s;
    int r = 0;

    for (int k = 0; k < SET_RETRIES; k++) {
        if ((r = m->ops->replicas_get(m, w->volume, &s)) < 0)
            break;
        if ((r = fn(&s, arg)) != 0)
            return r < 0 ? r : 0;
        s.writer_lease = w->lease;      /* only while we hold the attach */
        if ((r = m->ops->replicas_put(m, &s)) != -EBUSY)
            break;
    }
    if (r < 0)
        return cv_error_prefix(r, "volume %s: updating its replica set",
                               w->volume);
    return 0;
}

struct state_change {
    const char *node;
    enum cvd_replica_state state;
    const char *error;
};

static int change_state(struct cvd_replica_set *s, void *arg)
{
    struct state_change *c = arg;

    for (unsigned i = 0; i < s->n; i++) {
        struct cvd_replica *r = &s->r[i];

        if (strcmp(r->node, c->node))
            continue;
        if (r->state == c->state ||
            (r->state == CVD_REPLICA_REBUILDING &&
             c->state == CVD_REPLICA_OUTOFSYNC))
            return 1;   /* a rebuild stays one */
        r->state = c->state;
        r->since = time(NULL);
        /* Cut to the field: the log has the whole message. */
        snprintf(r->error, sizeof r->error, "%.*s", (int)sizeof r->error - 1,
                 c->error ? c->error : "");
        if (c->state == CVD_REPLICA_INSYNC)
            r->behind = r->sync_done = r->sync_total = 0;
        return 0;
    }
    return 1;           /* not in the set (any more): nothing to say */
}

int repl_set_state(struct cvd_repl_writer *w, const char *node,
                   enum cvd_replica_state state, const char *error)
{
    struct state_change c = { node, state, error };

    return repl_set_update(w, change_state, &c);
}

struct mark_wait {
    sem_t done;
    int err[CVD_MAX_REPLICAS];
};

struct mark_slot {
    struct mark_wait *mw;
    unsigned i;
};

static void mark_done(void *arg, int err, uint16_t type, const void *resp,
                      size_t len)
{
    struct mark_slot *s = arg;

    (void)type, (void)resp, (void)len;
    s->mw->err[s->i] = err;
    sem_post(&s->mw->done);
}

int repl_mark_all(struct cvd_repl_writer *w, uint16_t type, const char *node,
                  uint64_t off, uint64_t len)
{
    struct repl_req q = { .type = type, .epoch = w->epoch, .off = off,
                          .len = len };
    struct repl_conn *conn[CVD_MAX_REPLICAS] = { 0 };
    int asked[CVD_MAX_REPLICAS] = { 0 };
    struct mark_slot slot[CVD_MAX_REPLICAS];
    struct mark_wait mw = { .err = { 0 } };
    unsigned n = 0;
    struct iovec iov;
    void *req = NULL;
    size_t rlen = 0;
    int r;

    snprintf(q.volume, sizeof q.volume, "%s", w->volume);
    snprintf(q.name, sizeof q.name, "%s", node);
    if ((r = repl_encode(&q, &req, &rlen)) < 0)
        return r;
    iov.iov_base = req;
    iov.iov_len = rlen;
    sem_init(&mw.done, 0, 0);
    for (unsigned i = 0; i < w->npeers; i++) {
        int in, sent;

        pthread_mutex_lock(&w->lock);
        in = w->p[i].role == ROLE_INSYNC;
        pthread_mutex_unlock(&w->lock);
        if (!in)
            continue;
        /* In sync without a stream: it fails, it is not skipped (the
         * mark would be missing there unseen). */
        asked[i] = 1;
        if (!(conn[i] = repl_conn_get(w, &w->p[i]))) {
            mw.err[i] = -ENOTCONN;
            continue;
        }
        slot[i].mw = &mw;
        slot[i].i = i;
        n++;
        /* mark_done may have set mw.err[i] by the time the send returns:
         * only a failed send (done not called) sets it here. */
        mw.err[i] = 0;
        sent = cvd_peer_stream_send(conn[i]->s, type, &iov, 1,
                                    REPL_IO_TIMEOUT_MS, mark_done, &slot[i]);
        if (sent < 0) {
            mw.err[i] = sent;
            sem_post(&mw.done);
        }
    }
    free(req);
    for (unsigned k = 0; k < n; k++)
        while (sem_wait(&mw.done) != 0)
            ;
    sem_destroy(&mw.done);
    r = 0;
    for (unsigned i = 0; i < w->npeers; i++) {
        repl_conn_put(conn[i]);
        /* The mark is missing there, not data: it fails, nothing more. */
        if (asked[i] && mw.err[i] && mw.err[i] != -ESTALE &&
            repl_fail_peer(w, i, mw.err[i], 0, 0, 0) < 0)
            r = -EIO;
        if (asked[i] && mw.err[i] == -ESTALE) {
            repl_fence(w, w->p[i].node);
            r = -EIO;
        }
    }
    return r;
}

static void mark_bits(struct repl_peer *p, uint64_t a, uint64_t b,
                      uint64_t nregions)
{
    for (uint64_t k = a; k < b && k < nregions; k++)
        p->marked[k / 8] |= (uint8_t)(1u << (k % 8));
}

/* [a, b): the first run of regions in [r0, r1) not marked for p. */
static int unmarked_run(struct cvd_repl_writer *w, struct repl_peer *p,
                        uint64_t r0, uint64_t r1, uint64_t *a, uint64_t *b)
{
    uint64_t k = r0;

    if (r1 > w->nregions)
        r1 = w->nregions;
    while (k < r1 && ((p->marked[k / 8] >> (k % 8)) & 1))
        k++;
    *a = k;
    while (k < r1 && !((p->marked[k / 8] >> (k % 8)) & 1))
        k++;
    *b = k;
    return *a < *b;
}

/* A writer without a replica whose mark of what p misses reached no
 * in-sync replica: the record is nowhere a later writer reads, so p is
 * rebuilt (a full copy needs no record) rather than resynced. */
static void rebuild_unmarked(struct cvd_repl_writer *w, struct repl_peer *p)
{
    if (!w->diskless || atomic_load(&w->fenced))
        return;
    if (repl_set_state(w, p->node, CVD_REPLICA_REBUILDING,
                       "what it missed could not be recorded on an in-sync "
                       "replica") < 0)
        cvd_warn("volume %s: replica %s: %s", w->volume, p->node,
                 cv_last_error());
}

static int mark_range(struct cvd_repl_writer *w, unsigned i, uint64_t off,
                      uint64_t len)
{
    struct repl_peer *p = &w->p[i];
    uint64_t r0 = off / REPL_REGION, a, b, from;
    uint64_t r1 = (off + len + REPL_REGION - 1) / REPL_REGION;
    int r = 0, run;

    for (from = r0;; from = b) {
        pthread_mutex_lock(&w->lock);
        run = unmarked_run(w, p, from, r1, &a, &b);
        pthread_mutex_unlock(&w->lock);
        if (!run)
            return 0;
        if ((r = repl_mark_all(w, REPL_MARK, p->node, a * REPL_REGION,
                               (b - a) * REPL_REGION)) < 0) {
            rebuild_unmarked(w, p);
            return r;
        }
        if ((r = repl_missed_mark(p->missed, a * REPL_REGION,
                                  (b - a) * REPL_REGION)) < 0)
            return cv_error_prefix(r, "volume %s: replica %s: its record",
                                   w->volume, p->node);
        pthread_mutex_lock(&w->lock);
        mark_bits(p, a, b, w->nregions);
        pthread_mutex_unlock(&w->lock);
    }
}

static int open_missed(struct cvd_repl_writer *w, struct repl_peer *p)
{
    int r;

    if (p->missed)
        return 0;
    if ((r = repl_missed_open(w->state_dir, p->node, &p->missed)) < 0)
        return cv_error_prefix(r, "volume %s: replica %s: its record",
                               w->volume, p->node);
    return 0;
}

int repl_mark_missed(struct cvd_repl_writer *w, unsigned i, uint64_t off,
                     uint64_t len)
{
    int r;

    if (len == 0)
        return 0;
    pthread_mutex_lock(&w->fail_lock);
    if ((r = open_missed(w, &w->p[i])) == 0 && len != UINT64_MAX) {
        r = mark_range(w, i, off, len);
    } else if (r == 0) {
        /* Every region in the activity log (a flush it did not make);
         * read under w->lock (a resize's repl_regions_grow moves it). */
        for (uint64_t k = 0; r == 0; k++) {
            int in, end;

            pthread_mutex_lock(&w->lock);
            end = k >= w->nregions;
            in = !end && ((w->active_bits[k / 8] >> (k % 8)) & 1);
            pthread_mutex_unlock(&w->lock);
            if (end)
                break;
            if (in)
                r = mark_range(w, i, k * REPL_REGION, REPL_REGION);
        }
    }
    pthread_mutex_unlock(&w->fail_lock);
    return r;
}

/* Under fail_lock: i leaves the in-sync ones, in etcd first. */
static int peer_out(struct cvd_repl_writer *w, unsigned i, int err,
                    int rebuild)
{
    struct repl_peer *p = &w->p[i];
    enum cvd_replica_state st = rebuild ? CVD_REPLICA_REBUILDING
                                        : CVD_REPLICA_OUTOFSYNC;
    struct repl_conn *conn;
    char why[300];
    int r;

    pthread_mutex_lock(&w->lock);
    p->role = ROLE_OUT;
    conn = p->conn;
    p->conn = NULL;
    pthread_mutex_unlock(&w->lock);
    repl_conn_put(conn);
    repl_peer_why(p, err, why, sizeof why);
    if (!p->unrecorded)
        cvd_warn("volume %s: replica %s: %s: %s", w->volume, p->node,
                 cvd_replica_state_name(st), why);
    /* A writer whose lease may be gone leaves the set alone: another node
     * may write the volume by now, and the set is its.  (A partitioned
     * writer's update, held until the network returns, would mark the new
     * writer's replicas OutOfSync.) */
    if ((r = repl_fence_check(w)) < 0)
        return r;
    if ((r = repl_set_state(w, p->node, st, why)) < 0) {
        cvd_err("volume %s: replica %s failed and the set cannot say so: "
                "%s", w->volume, p->node, cv_last_error());
        if (!p->unrecorded)
            atomic_fetch_add(&w->nunrecorded, 1);
        p->unrecorded = rebuild ? 2 : 1;
        return cv_error(-EIO, "volume %s: replica %s failed (%s) and its "
                        "state could not be recorded", w->volume, p->node,
                        why);
    }
    if (p->unrecorded) {
        p->unrecorded = 0;
        atomic_fetch_sub(&w->nunrecorded, 1);
        cvd_info("volume %s: replica %s: %s recorded at last", w->volume,
                 p->node, cvd_replica_state_name(st));
    }
    cvd_audit(w->d->audit, "cryptvold", rebuild ? "replica.rebuild"
              : "replica.outofsync", w->volume, 1, "node %s: %s", p->node,
              why);
    if (w->d->repl)
        repl_repair_kick(w->d);
    return open_missed(w, p);
}

int repl_fail_peer(struct cvd_repl_writer *w, unsigned i, int err,
                   int rebuild, uint64_t off, uint64_t len)
{
    unsigned in;
    int r = 0, was;

    pthread_mutex_lock(&w->fail_lock);
    pthread_mutex_lock(&w->lock);
    was = w->p[i].role == ROLE_INSYNC;
    pthread_mutex_unlock(&w->lock);
    /* A writer without a replica never leaves the volume with none in
     * sync: the last in-sync replica holds every acknowledged write, so it
     * stays InSync and the change fails (not acknowledged). */
    if (was && w->diskless && repl_insync(w) == 1) {
        char why[300];

        pthread_mutex_unlock(&w->fail_lock);
        repl_peer_why(&w->p[i], err, why, sizeof why);
        return cv_error(-EIO, "volume %s: replica %s, the last in sync, "
                        "failed (%s): it stays InSync and the change fails",
                        w->volume, w->p[i].node, why);
    }
    if (was || w->p[i].unrecorded)
        r = peer_out(w, i, err, rebuild);
    if (r == 0)
        r = repl_mark_missed(w, i, off, len);
    pthread_mutex_unlock(&w->fail_lock);
    if (r < 0)
        return r;
    if ((in = repl_insync(w)) < w->min)
        return cv_error(-EIO, "volume %s: replica %s failed: %u of its "
                        "replicas in sync, min-replicas is %u", w->volume,
                        w->p[i].node, in, w->min);
    return 0;
}

int repl_recorded_check(struct cvd_repl_writer *w)
{
    int r = 0;

    if (!atomic_load(&w->nunrecorded))
        return 0;
    pthread_mutex_lock(&w->fail_lock);
    for (unsigned i = 0; i < w->npeers && r == 0; i++)
        if (w->p[i].unrecorded)
            r = peer_out(w, i, -EIO, w->p[i].unrecorded == 2);
    pthread_mutex_unlock(&w->fail_lock);
    return r;
}

static int raise_shape_gen(struct cvd_replica_set *s, void *arg)
{
    (void)arg;
    s->shape_gen++;
    return 0;
}

int repl_shape_check(struct cvd_repl_writer *w)
{
    int behind = 0;

    pthread_mutex_lock(&w->lock);
    for (unsigned i = 0; i < w->npeers; i++) {
        /* Not across a copy either: a resync target's stale head would
         * become the snapshot's layer, and the copy then fills only the
         * new head. */
        if (w->p[i].role == ROLE_TARGET) {
            int rebuild = w->p[i].rebuild;

            pthread_mutex_unlock(&w->lock);
            return cv_error(-EBUSY, "volume %s: replica %s is being %s: "
                            "try again when it is InSync", w->volume,
                            w->p[i].node, rebuild ? "rebuilt" : "resynced");
        }
        behind |= w->p[i].role != ROLE_INSYNC && w->p[i].role != ROLE_GONE;
    }
    pthread_mutex_unlock(&w->lock);
    /* A replica that missed it cannot be resynced across it. */
    return behind ? repl_set_update(w, raise_shape_gen, NULL) : 0;
}

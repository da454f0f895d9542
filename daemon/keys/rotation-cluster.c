/* KEK rotation and KEK distribution on a cluster (etcd).
 *
 * Every member runs one worker thread that the node's watch wakes (and a
 * timer, as a backstop for a missed event).  Each time it reads the
 * cluster record and does this node's part:
 *   - it holds a copy of the current generation and, during a rotation,
 *     of the target one: if not, it gets the KEK from a member that holds
 *     it over the peer port (kek-peer.c), seals it itself and stores it.
 *     That is also how a member gets generation 1 when encryption was
 *     enabled on another node, and how one that was Offline catches up;
 *   - in EncryptingDEKs it re-wraps the tokens of the volumes whose data
 *     it holds (their LUKS headers are in its store) and records kek_gen.
 * One member, the runner, also moves the stored state on: it holds the
 * etcd lock "rotation" with its node lease and is named in the record
 * (rotation_node).  DistributingKEK ends when every member that is not
 * Removed holds the target; EncryptingDEKs when every volume is at it.
 * A member that is Offline is waited for, not skipped: a volume wrapped
 * with a generation a node lacks could not be attached there.  When the
 * runner dies its lease, and the lock, go: the first member to take the
 * lock names itself in the record and carries on from the stored state. */
#include "cluster-kek.h"
#include "cluster-kek-internal.h"
#include "audit/audit.h"
#include "cluster/cluster.h"
#include "daemon.h"
#include "core/error.h"
#include "keyring.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The backstop: the worker looks again this often with no event. */
#define RECHECK_MS 5000

static const char *self(struct cvd_cluster *c)
{
    return c->d->cfg.node_name;
}

/* An error the worker meets again and again is logged once. */
static void note(struct cvd_cluster *c, const char *what)
{
    const char *e = cv_last_error();

    if (!strcmp(c->last_error, e))
        return;
    snprintf(c->last_error, sizeof c->last_error, "%s", e);
    cvd_warn("cluster: %s: %s", what, e);
}

void cvd_rotation_cluster_kick(struct cvd_cluster *c)
{
    pthread_mutex_lock(&c->lock);
    c->kick = 1;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
}

/* On the watch thread: hand over, never block. */
static void on_event(void *arg, enum cvd_meta_event ev, const char *name,
                     int deleted)
{
    struct cvd_cluster *c = arg;

    if (ev == CVD_META_EV_SECRET || ev == CVD_META_EV_CLASS ||
        ev == CVD_META_EV_SEALKEY)
        return;
    pthread_mutex_lock(&c->lock);
    /* The runner's lock gone (its lease expired), or events missed: the
     * worker tries to take it. */
    if ((ev == CVD_META_EV_LOCK && deleted &&
         !strcmp(name, CVD_ROTATION_LOCK)) || ev == CVD_META_EV_RESYNC)
        c->lock_gone = 1;
    c->kick = 1;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
}

static int holds(struct cvd *d, const char *node, uint32_t gen)
{
    struct cvd_kek_rec rec = { 0 };
    int r = d->meta->ops->kek_get(d->meta, gen, node, &rec);

    cvd_kek_rec_free(&rec);
    return r == 0 ? 1 : r == -ENOENT ? 0 : r;
}

/* This node has its own stored copy of gen, or gets one now. */
static int have_gen(struct cvd_cluster *c, uint32_t gen,
                    const char *protection)
{
    int r = holds(c->d, self(c), gen);

    if (r != 0)
        return r < 0 ? r : 0;
    return cvd_kek_peer_fetch(c, gen, protection);
}

/* The keyring's hook: an attach or a create here needs a generation this
 * node has no copy of yet. */
static int fetch_for_keyring(void *arg, uint32_t gen)
{
    struct cvd_cluster *c = arg;
    struct cvd_cluster_rec cur;
    int r = c->d->meta->ops->cluster_get(c->d->meta, &cur);

    if (r == 0 && (strcmp(cur.encryption, CVD_ENC_ENABLED) ||
                   (gen != cur.current_gen && gen != cur.target_gen)))
        return cv_error(-ENOENT, "node %s has no copy of it", self(c));
    return r < 0 ? r : have_gen(c, gen, cur.protection);
}

/* Is this node the one that re-wraps v?  The one holding its data; a
 * volume with no placement (from before the cluster) is the runner's. */
static int mine(struct cvd_cluster *c, const struct cvd_volume_rec *v)
{
    return v->node[0] ? !strcmp(v->node, self(c)) : c->runner;
}

/* EncryptingDEKs, this node's part: its volumes' tokens to the target. */
static int own_pass(struct cvd_cluster *c, const struct cvd_cluster_rec *cur)
{
    struct cvd_volume_rec *all = NULL;
    const char *batch[CVD_ROTATION_BATCH];
    uint32_t target = cur->target_gen, done = 0, failed = 0;
    size_t n = 0, i, nb = 0;
    int r;

    r = c->d->meta->ops->volume_list(c->d->meta, &all, &n);
    for (i = 0; r == 0 && i < n && !cvd_rotation_stopping(c); i++) {
        if (!mine(c, &all[i]) || !cvd_rotation_needs_rewrap(&all[i], target))
            continue;
        if (cvd_rotation_rewrap_one(c, &all[i], target) < 0) {
            cvd_rotation_failed(c, &all[i], " (retried at the next change)");
            failed++;
        } else {
            batch[nb++] = all[i].name;
            done++;
        }
        if (nb == CVD_ROTATION_BATCH)
            r = cvd_rotation_flush(c, batch, &nb, target);
        cvd_rotation_delay(c, 1);
    }
    if (r == 0)
        r = cvd_rotation_flush(c, batch, &nb, target);
    if (r == 0 && (done || failed))
        cvd_info("cluster: KEK rotation to generation %u: %u volumes of "
                 "node %s re-wrapped, %u failed", target, done, self(c),
                 failed);
    free(all);
    return r;
}

/* Takes the runner's lock if it is free (its holder died, or the rotation
 * was started by a node that stopped): this node then runs it. */
static int try_take(struct cvd_cluster *c, const struct cvd_cluster_rec *cur)
{
    struct cvd *d = c->d;
    struct cvd_cluster_rec next = *cur;
    char held_by[CVD_NAME_MAX + 1] = "";
    int64_t lease = cvd_node_lease(d);
    int r;

    if (!lease)
        return 0;
    r = d->meta->ops->lock_take(d->meta, CVD_ROTATION_LOCK, lease, self(c),
                                held_by);
    if (r == -EBUSY)
        return 0;               /* held: by a live runner (or our old lease) */
    if (r < 0)
        return r;
    snprintf(next.rotation_node, sizeof next.rotation_node, "%s", self(c));
    r = d->meta->ops->cluster_update(d->meta, &next, cur, NULL);
    if (r < 0) {
        d->meta->ops->lock_release(d->meta, CVD_ROTATION_LOCK, lease);
        return r;
    }
    c->runner = 1;
    cvd_warn("cluster: node %s runs the KEK rotation to generation %u from "
             "here on (%s; node %s no longer holds it)", self(c),
             cur->target_gen, cur->rotation, cur->rotation_node[0] ?
             cur->rotation_node : "?");
    cvd_audit(d->audit, "cryptvold", "kek.rotation.takeover", "cluster", 1,
              "generation %u, %s, from node %s", cur->target_gen,
              cur->rotation, cur->rotation_node[0] ? cur->rotation_node :
              "?");
    return 0;
}

static void release(struct cvd_cluster *c)
{
    int64_t lease = cvd_node_lease(c->d);

    if (c->runner && lease)
        c->d->meta->ops->lock_release(c->d->meta, CVD_ROTATION_LOCK, lease);
    c->runner = 0;
}

static int finish(struct cvd_cluster *c, const struct cvd_cluster_rec *cur)
{
    struct cvd *d = c->d;
    struct cvd_rotation_view v;
    struct cvd_cluster_rec next = *cur;
    int r = cvd_rotation_cluster_view(c, cur, &v);

    if (r == 0)
        r = cvd_rotation_advance(c, &next, CVD_ROT_NONE);
    if (r == 0)
        r = cvd_rotation_prune(c, cur->target_gen);
    if (r == 0) {
        cvd_audit(d->audit, "cryptvold", "kek.rotation.finish", "cluster", 1,
                  "generation %u: %u volumes at it, run by node %s",
                  cur->target_gen, v.total, self(c));
        cvd_info("cluster: KEK rotation to generation %u finished (%u "
                 "volumes)", cur->target_gen, v.total);
        release(c);
    }
    return r;
}

/* The runner's part: the state moves on once nothing is waited for.  The
 * record is read again after the pause, so a change meanwhile (another
 * runner, after a partition) is seen, and the update would refuse it. */
static int run(struct cvd_cluster *c)
{
    struct cvd_cluster_rec cur;
    struct cvd_rotation_view v;
    int r = c->d->meta->ops->cluster_get(c->d->meta, &cur);

    if (r == 0)
        r = cvd_rotation_cluster_view(c, &cur, &v);
    if (r < 0 || v.waiting[0] || !strcmp(cur.rotation, CVD_ROT_NONE))
        return r;
    cvd_rotation_delay(c, 20);
    if (cvd_rotation_stopping(c))
        return 0;
    r = c->d->meta->ops->cluster_get(c->d->meta, &cur);
    if (r == 0 && strcmp(cur.rotation_node, self(c))) {
        cvd_warn("cluster: node %s runs the KEK rotation now, not this one",
                 cur.rotation_node);
        c->runner = 0;
        return 0;
    }
    /* A member added, or a volume created at the old generation, during
     * the pause. */
    if (r == 0)
        r = cvd_rotation_cluster_view(c, &cur, &v);
    if (r < 0 || v.waiting[0])
        return r;
    if (!strcmp(cur.rotation, CVD_ROT_DISTRIBUTE))
        return cvd_rotation_advance(c, &cur, CVD_ROT_ENCRYPT);
    if (!strcmp(cur.rotation, CVD_ROT_ENCRYPT))
        return finish(c, &cur);
    return 0;
}

/* One look at the cluster record, and this node's part of it. */
static void step(struct cvd_cluster *c, int try_lock)
{
    struct cvd_cluster_rec cur;
    int r;

    pthread_mutex_lock(&c->lock);
    if (c->took_lock)
        c->runner = 1;
    c->took_lock = 0;
    pthread_mutex_unlock(&c->lock);
    r = c->d->meta->ops->cluster_get(c->d->meta, &cur);

    if (r < 0) {
        note(c, "reading the cluster record");
        return;
    }
    if (strcmp(cur.encryption, CVD_ENC_ENABLED))
        return;
    if (have_gen(c, cur.current_gen, cur.protection) < 0)
        note(c, "getting the current KEK generation");
    if (!strcmp(cur.rotation, CVD_ROT_NONE)) {
        release(c);
        return;
    }
    if (have_gen(c, cur.target_gen, cur.protection) < 0)
        note(c, "KEK rotation: getting the new generation");
    if (!strcmp(cur.rotation, CVD_ROT_ENCRYPT) && own_pass(c, &cur) < 0)
        note(c, "KEK rotation: re-wrapping this node's volumes");
    if (c->runner && strcmp(cur.rotation_node, self(c)))
        c->runner = 0;          /* someone took over while we were cut off */
    if (!c->runner && (try_lock || !cur.rotation_node[0]) &&
        try_take(c, &cur) < 0)
        note(c, "KEK rotation: taking the runner's lock");
    if (c->runner && run(c) < 0)
        note(c, "KEK rotation");
}

static void deadline_in(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *worker(void *arg)
{
    struct cvd_cluster *c = arg;
    struct timespec ts;
    int try_lock = 1, timed_out;

    for (;;) {
        /* The lock is tried at start, when it went (a LOCK event), after
         * a resync and when no event came for a while (a missed one):
         * trying on every volume event would cost a txn each. */
        step(c, try_lock);
        pthread_mutex_lock(&c->lock);
        deadline_in(&ts, RECHECK_MS);
        timed_out = 0;
        while (!c->kick && !c->stop && !timed_out)
            timed_out = pthread_cond_timedwait(&c->wake, &c->lock, &ts) ==
                        ETIMEDOUT;
        try_lock = timed_out || c->lock_gone;
        c->kick = 0;
        c->lock_gone = 0;
        if (c->stop) {
            pthread_mutex_unlock(&c->lock);
            break;
        }
        pthread_mutex_unlock(&c->lock);
    }
    release(c);
    return NULL;
}

int cvd_rotation_cluster_start(struct cvd_cluster *c)
{
    struct cvd *d = c->d;
    int r;

    pthread_cond_init(&c->wake, NULL);
    cvd_keyring_set_fetch(d->keys, fetch_for_keyring, c);
    r = cvd_kek_peer_serve(c);
    if (r == 0)
        r = cvd_node_listen(d, on_event, c);
    if (r == 0 && pthread_create(&c->worker, NULL, worker, c) != 0)
        r = cv_error(-EAGAIN, "cluster: cannot start the KEK worker thread");
    if (r < 0) {
        cvd_keyring_set_fetch(d->keys, NULL, NULL);
        pthread_cond_destroy(&c->wake);
        return r;
    }
    c->clustered = 1;
    return 0;
}

void cvd_rotation_cluster_stop(struct cvd_cluster *c)
{
    if (!c->clustered)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = 1;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->worker, NULL);
    cvd_keyring_set_fetch(c->d->keys, NULL, NULL);
    pthread_cond_destroy(&c->wake);
    c->clustered = 0;
}

int cvd_rotation_cluster_begin(struct cvd_cluster *c,
                               const struct cvd_cluster_rec *cur,
                               struct cvd_cluster_rec *next,
                               const struct cvd_kek_rec *kek)
{
    struct cvd *d = c->d;
    char held_by[CVD_NAME_MAX + 1] = "";
    int64_t lease = cvd_node_lease(d);
    int r;

    if (!lease)
        return cv_error(-EAGAIN, "cluster: node %s has no lease yet (not "
                        "started as a member): cannot run a rotation",
                        self(c));
    r = d->meta->ops->lock_take(d->meta, CVD_ROTATION_LOCK, lease, self(c),
                                held_by);
    if (r == -EBUSY)
        return cv_error(-EBUSY, "cluster: node %s holds the KEK rotation's "
                        "lock (a rotation it runs is finishing)", held_by);
    if (r < 0)
        return r;
    snprintf(next->rotation_node, sizeof next->rotation_node, "%s", self(c));
    r = d->meta->ops->cluster_update(d->meta, next, cur, kek);
    if (r < 0) {
        d->meta->ops->lock_release(d->meta, CVD_ROTATION_LOCK, lease);
        return r;
    }
    /* The worker owns c->runner: it takes this over before it next reads
     * the record, which then names this node. */
    c->took_lock = 1;
    c->kick = 1;
    pthread_cond_signal(&c->wake);
    return 0;
}

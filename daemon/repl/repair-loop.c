/* The repair loop: one thread per node that, on every kick (a replica
 * set or an attach record changed, a node came or went: the cluster's
 * watch) and every REPAIR_INTERVAL_MS, looks at every replica set for a
 * replica that is not InSync (nor Failed) on an Online node, and repairs
 * it from this node when this node is the one to:
 *  - this node is the volume's writer (repl_writer_find): it repairs;
 *  - nobody writes the volume and this node holds its first InSync
 *    replica among the Online nodes: it opens the volume
 *    (cvd_export_get_store, which makes it the writer through the
 *    registry's hook), repairs, and lets go.
 * (The contract says "the first InSync replica"; among the Online ones,
 * so that a dead first replica does not stop every repair.)
 *
 * OutOfSync: resync (repair-copy.c); if the replica's OPEN finds another
 * shape (REPL_ERR_SHAPE), it is Rebuilding from now on and rebuilt.
 * Rebuilding: rebuild.  A copy that fails leaves the replica as it is for
 * the next pass, unless the target's disk refused it (full, read-only):
 * then it is Failed, with the error, and the volume goes on without it. */
#include "cluster/cluster.h"
#include "daemon.h"
#include "audit/audit.h"
#include "core/error.h"
#include "export/export.h"
#include "log.h"
#include "meta/meta.h"
#include "repair-internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct repl_repair {
    struct repl_repair *next;
    struct cvd *d;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;        /* on CLOCK_MONOTONIC */
    int running, stop, kick, listening;
    /* The loop thread's only: replicas whose last copy failed wait before
     * the next (a pass that failed at once would attach the volume every
     * few seconds, and attaches elsewhere would be refused meanwhile). */
    struct backoff {
        char volume[CVD_NAME_MAX + 1], node[CVD_NAME_MAX + 1];
        int64_t next_ms;
        unsigned delay_ms;
        int gone;               /* its node was Offline since: forget it */
    } bo[REPAIR_BACKOFF_SLOTS];
};

/* The watch has no way to unlisten, so a loop's state outlives its stop
 * (a stopped one ignores events) and is found again by its daemon. */
static pthread_mutex_t repairs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct repl_repair *repairs;

static struct repl_repair *repair_of(struct cvd *d, int make)
{
    struct repl_repair *rp;
    pthread_condattr_t ca;

    pthread_mutex_lock(&repairs_lock);
    for (rp = repairs; rp && rp->d != d; rp = rp->next)
        ;
    if (!rp && make && (rp = calloc(1, sizeof *rp))) {
        rp->d = d;
        pthread_mutex_init(&rp->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&rp->wake, &ca);
        pthread_condattr_destroy(&ca);
        rp->next = repairs;
        repairs = rp;
    }
    pthread_mutex_unlock(&repairs_lock);
    return rp;
}

static struct backoff *backoff_find(struct repl_repair *rp,
                                     const char *volume, const char *node,
                                     int make)
{
    struct backoff *b, *slot = NULL;

    for (b = rp->bo; b < rp->bo + REPAIR_BACKOFF_SLOTS; b++) {
        if (b->volume[0] && !strcmp(b->volume, volume) &&
            !strcmp(b->node, node))
            return b;
        /* For a new one: an empty slot, else the one due soonest. */
        if (!slot || (slot->volume[0] &&
                      (!b->volume[0] || b->next_ms < slot->next_ms)))
            slot = b;
    }
    if (!make)
        return NULL;
    memset(slot, 0, sizeof *slot);
    snprintf(slot->volume, sizeof slot->volume, "%.*s",
             (int)sizeof slot->volume - 1, volume);
    snprintf(slot->node, sizeof slot->node, "%.*s",
             (int)sizeof slot->node - 1, node);
    return slot;
}

static int backing_off(struct repl_repair *rp, const char *volume,
                       const char *node)
{
    struct backoff *b = backoff_find(rp, volume, node, 0);

    if (b && b->gone) {
        memset(b, 0, sizeof *b);        /* back: try at once */
        return 0;
    }
    return b && repair_now_ms() < b->next_ms;
}

/* r: the copy's result; a success forgets the replica's failures. */
static void backoff_note(struct repl_repair *rp, const char *volume,
                         const char *node, int r)
{
    struct backoff *b = backoff_find(rp, volume, node, r < 0);

    if (!b)
        return;
    if (r == 0) {
        memset(b, 0, sizeof *b);
        return;
    }
    b->delay_ms = b->delay_ms ? b->delay_ms * 2 : REPAIR_INTERVAL_MS;
    if (b->delay_ms > REPAIR_BACKOFF_MAX_MS)
        b->delay_ms = REPAIR_BACKOFF_MAX_MS;
    b->next_ms = repair_now_ms() + b->delay_ms;
}

static void kick(struct repl_repair *rp)
{
    pthread_mutex_lock(&rp->lock);
    rp->kick = 1;
    pthread_cond_signal(&rp->wake);
    pthread_mutex_unlock(&rp->lock);
}

static void on_event(void *arg, enum cvd_meta_event ev, const char *name,
                     int deleted)
{
    (void)name;
    (void)deleted;
    if (ev == CVD_META_EV_REPLICAS || ev == CVD_META_EV_ATTACH ||
        ev == CVD_META_EV_ALIVE || ev == CVD_META_EV_NODE ||
        ev == CVD_META_EV_RESYNC)
        kick(arg);
}

static int stopping(struct repl_repair *rp)
{
    return __atomic_load_n(&rp->stop, __ATOMIC_ACQUIRE);
}

/* ---- one replica -------------------------------------------------------- */

/* Errors of the target's own disk: retrying would fail the same way. */
static int disk_refused(int r)
{
    return r == -ENOSPC || r == -EDQUOT || r == -EROFS;
}

static int repair_one(struct repl_repair *rp, struct cvd_export *e,
                       struct cvd_repl_writer *w, const char *volume,
                       const struct cvd_replica *rep)
{
    struct cvd *d = rp->d;
    struct repair_job j = { .d = d, .e = e, .w = w,
                            .c = repl_writer_chain(w), .volume = volume,
                            .node = rep->node, .stop = &rp->stop };
    char obj[2 * CVD_NAME_MAX + 16], why[400];
    int r = REPL_ERR_SHAPE, rebuilt = 0;

    j.buf = malloc(REPAIR_PIECE);
    if (!j.buf) {
        cvd_warn("volume %s: replica %s: no memory for a copy", volume,
                 rep->node);
        return -ENOMEM;
    }
    snprintf(obj, sizeof obj, "volume/%s", volume);
    /* A writer without a replica here copies from an in-sync one. */
    if (rep->state == CVD_REPLICA_OUTOFSYNC)
        r = repl_writer_diskless(w) ? repl_remote_resync(&j)
                                    : repair_resync(&j);
    /* Not -ESTALE: that is an epoch refusal (another node writes it; the
     * writer fenced itself), which no rebuild mends. */
    if (r == REPL_ERR_SHAPE) {
        /* Another shape (or a record it no longer has): a full copy. */
        if (rep->state == CVD_REPLICA_OUTOFSYNC) {
            cvd_info("volume %s: replica %s: its shape is not ours: "
                     "rebuilding it", volume, rep->node);
            repair_set_state(d, volume, rep->node, CVD_REPLICA_REBUILDING,
                             "its layers differ from the writer's");
        }
        cvd_audit(d->audit, "cryptvold", "replica.rebuild", obj, 1,
                  "node %s, from %s", rep->node, d->cfg.node_name);
        rebuilt = 1;
        r = repair_rebuild(&j);
    }
    if (r == 0)
        cvd_info("volume %s: replica %s: InSync after a %s of %llu bytes",
                 volume, rep->node, rebuilt ? "rebuild" : "resync",
                 (unsigned long long)j.done);
    else if (r == REPL_ERR_NO_PARENT) {
        /* A clone's replica on a node without its parent: no retry mends
         * it (the target said why; its own words are the reason). */
        snprintf(why, sizeof why, "%s", cv_last_error());
        cvd_warn("volume %s: replica %s: Failed: %s", volume, rep->node,
                 why);
        repair_set_state(d, volume, rep->node, CVD_REPLICA_FAILED, why);
    } else if (disk_refused(r)) {
        /* The cause first: the set's error field is short. */
        snprintf(why, sizeof why, "%s: %s", strerror(-r), cv_last_error());
        cvd_warn("volume %s: replica %s: Failed: %s", volume, rep->node,
                 cv_last_error());
        repair_set_state(d, volume, rep->node, CVD_REPLICA_FAILED, why);
    } else if (r != -ECANCELED)
        cvd_warn("volume %s: replica %s: %s (retried later)", volume,
                 rep->node, cv_last_error());
    free(j.buf);
    return r;
}

/* ---- one volume --------------------------------------------------------- */

static int is_online(const char *node, const struct cvd_node_rec *on,
                     size_t non, const char *self)
{
    size_t i;

    if (!strcmp(node, self))
        return 1;
    for (i = 0; i < non; i++)
        if (!strcmp(on[i].name, node))
            return 1;
    return 0;
}

/* 1 if this node is to repair s when nobody writes it: it holds the
 * first InSync replica among the Online nodes. */
static int first_insync(const struct cvd_replica_set *s,
                        const struct cvd_node_rec *on, size_t non,
                        const char *self)
{
    unsigned i;

    for (i = 0; i < s->n; i++)
        if (s->r[i].state == CVD_REPLICA_INSYNC &&
            is_online(s->r[i].node, on, non, self))
            return !strcmp(s->r[i].node, self);
    return 0;
}

/* Replicas of s to repair now: not InSync nor Failed, on an Online node
 * other than this one.  Returns how many went into todo. */
static unsigned to_repair(struct repl_repair *rp,
                          const struct cvd_replica_set *s,
                          const struct cvd_node_rec *on, size_t non,
                          const char *self, struct cvd_replica *todo)
{
    unsigned i, k = 0;

    for (i = 0; i < s->n; i++)
        if ((s->r[i].state == CVD_REPLICA_OUTOFSYNC ||
             s->r[i].state == CVD_REPLICA_REBUILDING) &&
            strcmp(s->r[i].node, self) &&
            is_online(s->r[i].node, on, non, self) &&
            !backing_off(rp, s->volume, s->r[i].node))
            todo[k++] = s->r[i];
    return k;
}

static void repair_volume(struct repl_repair *rp, const char *volume,
                          const struct cvd_node_rec *on, size_t non)
{
    struct cvd *d = rp->d;
    const char *self = d->cfg.node_name;
    struct cvd_replica todo[CVD_MAX_REPLICAS];
    struct cvd_replica_set s;
    struct cvd_attach_rec a;
    struct cvd_repl_writer *w;
    struct cvd_export *e = NULL;
    unsigned n, i;

    if (d->meta->ops->replicas_get(d->meta, volume, &s) < 0)
        return;                 /* none (or unreadable: the next pass) */
    n = to_repair(rp, &s, on, non, self, todo);
    if (n == 0)
        return;
    w = repl_writer_find(d, volume);
    if (w)
        repl_writer_put(w);
    else if (d->meta->ops->attach_get(d->meta, volume, &a) != -ENOENT ||
             !first_insync(&s, on, non, self))
        return;                 /* another node writes it, or repairs it */
    /* Ours, or shared with the connections that write it: the writer's
     * hook runs when it opens. */
    if (cvd_export_get_store(d->reg, volume, 0, &e) < 0) {
        cvd_debug("volume %s: not repaired from here: %s", volume,
                  cv_last_error());
        return;
    }
    w = repl_writer_find(d, volume);
    if (!w) {
        cvd_debug("volume %s: opened, but this node is not its writer",
                  volume);
        cvd_export_put_store(e);
        return;
    }
    for (i = 0; i < n && !stopping(rp); i++)
        backoff_note(rp, volume, todo[i].node,
                     repair_one(rp, e, w, volume, &todo[i]));
    repl_writer_put(w);
    cvd_export_put_store(e);
}

static void pass(struct repl_repair *rp)
{
    struct cvd *d = rp->d;
    struct cvd_volume_rec *vols = NULL;
    struct cvd_node_rec *on = NULL;
    size_t nv = 0, non = 0, i;

    if (d->meta->ops->volume_list(d->meta, &vols, &nv) < 0 ||
        cvd_node_online(d, &on, &non) < 0) {
        cvd_debug("repair: %s", cv_last_error());
        free(vols);
        return;
    }
    /* A node that comes back is repaired at once, whatever failed
     * before it went. */
    for (i = 0; i < REPAIR_BACKOFF_SLOTS; i++)
        if (rp->bo[i].volume[0] &&
            !is_online(rp->bo[i].node, on, non, d->cfg.node_name))
            rp->bo[i].gone = 1;
    for (i = 0; i < nv && !stopping(rp); i++)
        repair_volume(rp, vols[i].name, on, non);
    free(on);
    free(vols);
}

/* ---- the thread --------------------------------------------------------- */

static void deadline(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Waits for a kick or the interval; but at least REPAIR_GAP_MS between
 * passes: a pass's own changes of a set (progress, a failed OPEN's state)
 * come back as events, which must not make the loop spin. */
static void *repair_main(void *arg)
{
    struct repl_repair *rp = arg;
    struct timespec until, gap;

    pthread_mutex_lock(&rp->lock);
    while (!rp->stop) {
        rp->kick = 0;
        pthread_mutex_unlock(&rp->lock);
        pass(rp);
        deadline(&gap, REPAIR_GAP_MS);
        deadline(&until, REPAIR_INTERVAL_MS);
        pthread_mutex_lock(&rp->lock);
        while (!rp->stop &&
               pthread_cond_timedwait(&rp->wake, &rp->lock, &gap) == 0)
            ;
        while (!rp->stop && !rp->kick &&
               pthread_cond_timedwait(&rp->wake, &rp->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&rp->lock);
    return NULL;
}

int repl_repair_start(struct cvd *d)
{
    struct repl_repair *rp;
    int r;

    if (!d->node)
        return 0;               /* a single node: no replica sets */
    rp = repair_of(d, 1);
    if (!rp)
        return cv_error(-ENOMEM, "repair loop: out of memory");
    if (rp->running)
        return 0;
    rp->stop = 0;
    rp->kick = 1;
    if (!rp->listening) {
        r = cvd_node_listen(d, on_event, rp);
        if (r < 0)
            return cv_error_prefix(r, "repair loop");
        rp->listening = 1;
    }
    r = pthread_create(&rp->thread, NULL, repair_main, rp);
    if (r != 0)
        return cv_error(-r, "repair loop: starting its thread: %s",
                        strerror(r));
    rp->running = 1;
    return 0;
}

void repl_repair_stop(struct cvd *d)
{
    struct repl_repair *rp = repair_of(d, 0);

    if (!rp || !rp->running)
        return;
    pthread_mutex_lock(&rp->lock);
    __atomic_store_n(&rp->stop, 1, __ATOMIC_RELEASE);
    pthread_cond_signal(&rp->wake);
    pthread_mutex_unlock(&rp->lock);
    pthread_join(rp->thread, NULL);
    rp->running = 0;
}

void cvd_repl_stop_repair(struct cvd *d)
{
    repl_repair_stop(d);
}

void repl_repair_kick(struct cvd *d)
{
    struct repl_repair *rp = repair_of(d, 0);

    if (rp && rp->running)
        kick(rp);
}

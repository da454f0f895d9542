/* Becoming a volume's writer and letting go: the attach record (raising
 * the epoch), OPEN on every in-sync replica with its layers checked
 * against ours, the activity log replayed after an unclean end, the
 * chain's mirror; and detach: flush, CLOSE, release (clean or not). */
#include "writer-internal.h"
#include "audit/audit.h"
#include "cluster/cluster.h"
#include "core/error.h"
#include "daemon.h"
#include "log.h"
#include "peer/peer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* "n1, n2 or n3": the in-sync nodes, for the refusal. */
static void insync_names(const struct cvd_replica_set *s, char *buf,
                         size_t len)
{
    size_t used = 0;
    unsigned k = 0, n = 0;

    buf[0] = '\0';
    for (unsigned i = 0; i < s->n; i++)
        n += s->r[i].state == CVD_REPLICA_INSYNC;
    for (unsigned i = 0; i < s->n && used < len; i++) {
        if (s->r[i].state != CVD_REPLICA_INSYNC)
            continue;
        k++;
        used += (size_t)snprintf(buf + used, len - used, "%s%s",
                                 k == 1 ? "" : k == n ? " or " : ", ",
                                 s->r[i].node);
    }
}

/* A node of the set must hold an in-sync replica to write (its chain is
 * the one written); a node outside it writes without one (remote-*.c). */
static int own_replica(struct cvd *d, const struct cvd_replica_set *s)
{
    char names[256];

    for (unsigned i = 0; i < s->n; i++)
        if (!strcmp(s->r[i].node, d->cfg.node_name) &&
            s->r[i].state == CVD_REPLICA_INSYNC)
            return 0;
    insync_names(s, names, sizeof names);
    if (!names[0])
        return cv_error(-EIO, "volume %s: no replica is in sync", s->volume);
    return cv_error(-EREMOTE, "volume %s: the replica on node %s is not in "
                    "sync; attach on %s (or here once it is InSync)",
                    s->volume, d->cfg.node_name, names);
}

int repl_in_set(const struct cvd_replica_set *s, const char *node)
{
    for (unsigned i = 0; i < s->n; i++)
        if (!strcmp(s->r[i].node, node))
            return 1;
    return 0;
}

struct cvd_repl_writer *repl_writer_new(struct cvd *d, const char *volume,
                                        struct cv_chain *c)
{
    struct cvd_repl_writer *w = calloc(1, sizeof *w);
    pthread_mutexattr_t a;

    if (!w)
        return NULL;
    w->d = d;
    w->c = c;
    w->refs = 1;
    snprintf(w->volume, sizeof w->volume, "%s", volume);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->changed, NULL);
    pthread_cond_init(&w->unheld, NULL);
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&w->fail_lock, &a);
    pthread_mutexattr_destroy(&a);
    return w;
}

void repl_writer_free(struct cvd_repl_writer *w)
{
    for (unsigned i = 0; i < w->npeers; i++) {
        repl_conn_put(w->p[i].conn);
        repl_missed_close(w->p[i].missed);
        free(w->p[i].marked);
    }
    repl_targets_free(w);
    repl_missed_close(w->active);
    free(w->active_bits);
    free(w->busy);
    free(w->gen);
    free(w->tsent);
    repl_open_reply_free(&w->shape);
    pthread_mutex_destroy(&w->fail_lock);
    pthread_cond_destroy(&w->changed);
    pthread_cond_destroy(&w->unheld);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

/* A record's marked regions into bits. */
void repl_load_bits(struct repl_missed *m, uint8_t *bits, uint64_t n)
{
    uint64_t from = 0, off, len;

    while (repl_missed_next(m, from, &off, &len) == 0 && len) {
        for (uint64_t k = off / REPL_REGION;
             k < (off + len) / REPL_REGION && k < n; k++)
            bits[k / 8] |= (uint8_t)(1u << (k % 8));
        from = off + len;
    }
}

/* The set's other nodes as peers, with addresses and records. */
int repl_load_peers(struct cvd_repl_writer *w,
                    const struct cvd_replica_set *s)
{
    struct cvd_meta *m = w->d->meta;
    int r;

    for (unsigned i = 0; i < s->n; i++) {
        struct repl_peer *p = &w->p[w->npeers];
        struct cvd_node_rec rec;

        if (!strcmp(s->r[i].node, w->d->cfg.node_name))
            continue;
        w->npeers++;
        snprintf(p->node, sizeof p->node, "%s", s->r[i].node);
        p->role = s->r[i].state == CVD_REPLICA_INSYNC ? ROLE_INSYNC
                                                      : ROLE_OUT;
        if (m->ops->node_get(m, p->node, &rec) == 0)
            snprintf(p->address, sizeof p->address, "%s", rec.address);
        if (!(p->marked = calloc(1, (w->nregions + 7) / 8)))
            return cv_error(-ENOMEM, "volume %s: out of memory", w->volume);
        if (p->role == ROLE_OUT) {
            if ((r = repl_missed_open(w->state_dir, p->node,
                                      &p->missed)) < 0)
                return cv_error_prefix(r, "volume %s: replica %s",
                                       w->volume, p->node);
            repl_load_bits(p->missed, p->marked, w->nregions);
        }
    }
    return 0;
}

/* The set as etcd has it now: nodes new to it become peers (not in
 * sync: the repair loop adds them as targets), nodes that left it get
 * nothing more, and its min applies. */
int repl_writer_sync_set(struct cvd_repl_writer *w)
{
    struct cvd_meta *m = w->d->meta;
    struct cvd_replica_set s;
    int r;

    if ((r = m->ops->replicas_get(m, w->volume, &s)) < 0)
        return cv_error_prefix(r, "volume %s: its replica set", w->volume);
    pthread_mutex_lock(&w->fail_lock);
    w->min = s.min;
    for (unsigned i = 0; i < w->npeers; i++) {
        struct repl_conn *conn = NULL;
        int in = 0;

        for (unsigned k = 0; k < s.n; k++)
            in |= !strcmp(s.r[k].node, w->p[i].node);
        pthread_mutex_lock(&w->lock);
        if (!in && w->p[i].role != ROLE_GONE) {
            if (w->p[i].role == ROLE_TARGET)    /* else pick_fast never */
                atomic_fetch_sub(&w->ntargets, 1);
            w->p[i].role = ROLE_GONE;
            conn = w->p[i].conn;
            w->p[i].conn = NULL;
        }
        pthread_mutex_unlock(&w->lock);
        repl_conn_put(conn);
    }
    for (unsigned k = 0; k < s.n && r == 0; k++) {
        struct repl_peer *p;
        struct cvd_node_rec rec;

        if (!strcmp(s.r[k].node, w->d->cfg.node_name) ||
            repl_peer_index(w, s.r[k].node) >= 0)
            continue;
        if (w->npeers == CVD_MAX_REPLICAS)
            break;
        p = &w->p[w->npeers];
        memset(p, 0, sizeof *p);
        snprintf(p->node, sizeof p->node, "%s", s.r[k].node);
        p->role = ROLE_OUT;
        if (m->ops->node_get(m, p->node, &rec) == 0)
            snprintf(p->address, sizeof p->address, "%s", rec.address);
        if ((r = repl_missed_open(w->state_dir, p->node, &p->missed)) < 0)
            cv_error_prefix(r, "volume %s: replica %s", w->volume, p->node);
        /* marked sized and published under w->lock: a resize's
         * repl_regions_grow grows only the peers it sees. */
        pthread_mutex_lock(&w->lock);
        if (r == 0 && !(p->marked = calloc(1, (w->nregions + 7) / 8)))
            r = cv_error(-ENOMEM, "volume %s: out of memory", w->volume);
        if (r == 0)
            __atomic_store_n(&w->npeers, w->npeers + 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&w->lock);
        if (r < 0) {
            repl_missed_close(p->missed);
            p->missed = NULL;
        }
    }
    pthread_mutex_unlock(&w->fail_lock);
    return r;
}

/* The replica's layers equal ours (ids, snapshots), and its sizes. */
int repl_same_shape(struct cvd_repl_writer *w,
                      const struct repl_open_reply *o)
{
    struct cv_chain_layer_info *li = NULL;
    size_t n = 0, k = 0;
    int same = 1;

    if (w->diskless)
        return repl_remote_same_shape(&w->shape, o);
    if (cv_chain_layers(w->c, &li, &n) < 0)
        return 0;
    if (o->data_offset != cv_chain_data_offset(w->c) ||
        o->raw_size != cv_chain_size(w->c))
        same = 0;
    for (size_t i = 0; i < n && same; i++) {
        if (!li[i].own)
            continue;
        while (k < o->nlayers && o->layers[k].id >= CV_CHAIN_PARENT_ID)
            k++;
        if (k >= o->nlayers || o->layers[k].id != li[i].id ||
            strcmp(o->layers[k].snapshot, li[i].snapshot))
            same = 0;
        k++;
    }
    while (same && k < o->nlayers && o->layers[k].id >= CV_CHAIN_PARENT_ID)
        k++;
    free(li);
    return same && k == o->nlayers;
}

/* One replica's OPEN, on its own thread (a replica that does not answer
 * costs the attach one timeout, not one each). */
struct open_job {
    struct cvd_repl_writer *w;
    unsigned i;
    int r;
    struct repl_open_reply o;
    char why[256];
    pthread_t t;
    int started;
    int offline;                /* its node is not Online: not dialled */
};

static int node_in(const char *node, const struct cvd_node_rec *on, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(on[i].name, node))
            return 1;
    return 0;
}

/* The in-sync peers whose node is not Online (its lease gone from etcd:
 * dead, or cut off, and fenced by now) are not dialled: a dial to a node
 * that does not answer would cost the attach the connect timeout, for a
 * replica that fails anyway.  When the nodes cannot be read, every peer
 * is dialled, as a dial decides as well.  A writer without a replica
 * keeps the last in-sync one InSync whatever it answers
 * (repl_fail_peer), so when none of its in-sync replicas is Online it
 * dials them all: one that is reachable still serves. */
static void find_offline(struct cvd_repl_writer *w, struct open_job *jobs)
{
    struct cvd_node_rec *on = NULL;
    size_t non = 0;
    unsigned online = 0, off = 0;

    if (cvd_node_online(w->d, &on, &non) < 0) {
        cvd_debug("volume %s: every replica dialled, Online or not: %s",
                  w->volume, cv_last_error());
        return;
    }
    for (unsigned i = 0; i < w->npeers; i++) {
        if (w->p[i].role != ROLE_INSYNC)
            continue;
        jobs[i].offline = !node_in(w->p[i].node, on, non);
        off += jobs[i].offline;
        online += !jobs[i].offline;
    }
    free(on);
    if (w->diskless && !online)
        for (unsigned i = 0; i < w->npeers; i++)
            jobs[i].offline = 0;
    else if (off)
        cvd_debug("volume %s: %u of its in-sync replicas not Online",
                  w->volume, off);
}

static void *open_one(void *arg)
{
    struct open_job *j = arg;
    struct repl_peer *p = &j->w->p[j->i];

    if (!p->address[0])
        j->r = cv_error(-ENOENT, "node %s: not a member", p->node);
    else if (j->offline)
        j->r = cv_error(-EHOSTDOWN, "volume %s: replica %s: node %s is not "
                        "Online: not dialled, OutOfSync", j->w->volume,
                        p->node, p->node);
    else
        j->r = repl_conn_open(j->w, p, &j->o, 0);
    if (j->r < 0)
        snprintf(j->why, sizeof j->why, "%s", cv_last_error());
    return NULL;
}

/* A writer without a replica: the first in-sync replica that answered is
 * what the others must equal (there is no chain here to compare with),
 * and where reads go first. */
static void take_reference(struct cvd_repl_writer *w,
                           const struct open_job *jobs)
{
    for (unsigned i = 0; i < w->npeers; i++) {
        const struct repl_open_reply *o = &jobs[i].o;

        if (w->p[i].role != ROLE_INSYNC || jobs[i].r < 0 || !o->nlayers)
            continue;
        w->shape = *o;
        if (!(w->shape.layers = calloc(o->nlayers, sizeof *o->layers))) {
            memset(&w->shape, 0, sizeof w->shape);
            return;
        }
        memcpy(w->shape.layers, o->layers, o->nlayers * sizeof *o->layers);
        w->read_from = i;
        return;
    }
}

/* OPEN on every in-sync replica at once; one that fails it is OutOfSync,
 * one of another shape Rebuilding. */
void repl_open_peers(struct cvd_repl_writer *w)
{
    struct open_job jobs[CVD_MAX_REPLICAS];

    memset(jobs, 0, sizeof jobs);
    find_offline(w, jobs);
    for (unsigned i = 0; i < w->npeers; i++) {
        jobs[i].w = w;
        jobs[i].i = i;
        if (w->p[i].role != ROLE_INSYNC)
            continue;
        if (jobs[i].offline) {      /* no thread: it fails at once */
            open_one(&jobs[i]);
            continue;
        }
        jobs[i].started = pthread_create(&jobs[i].t, NULL, open_one,
                                         &jobs[i]) == 0;
        if (!jobs[i].started)
            open_one(&jobs[i]);
    }
    for (unsigned i = 0; i < w->npeers; i++)
        if (jobs[i].started)
            pthread_join(jobs[i].t, NULL);
    if (w->diskless)
        take_reference(w, jobs);
    for (unsigned i = 0; i < w->npeers; i++) {
        struct open_job *j = &jobs[i];

        if (w->p[i].role != ROLE_INSYNC)
            continue;
        if (j->r == -ESTALE) {
            /* It saw a newer epoch than the one just taken: another node
             * attached since; this writer must not write at all. */
            cvd_warn("%s", j->why);
            repl_fence(w, w->p[i].node);
        } else if (j->r < 0) {
            cvd_warn("%s", j->why);
            /* The attach goes on; writes are refused while this lasts
             * (below min-replicas, the last in-sync replica of a writer
             * without one, a set that could not be updated). */
            if (repl_fail_peer(w, i, j->r, 0, 0, 0) < 0)
                cvd_warn("%s", cv_last_error());
        } else if (!repl_same_shape(w, &j->o)) {
            cvd_warn("volume %s: replica %s holds other layers than %s: "
                     "rebuilding it", w->volume, w->p[i].node,
                     w->diskless ? "the other replicas" : "this node");
            repl_fail_peer(w, i, -ESTALE, 1, 0, 0);
        }
        repl_open_reply_free(&j->o);
    }
}

/* A writer of volume here that is letting go (its export closed while a
 * new one opens): its release comes first. */
static void wait_local_release(struct cvd *d, const char *volume)
{
    struct cvd_repl *rp = d->repl;
    struct timespec until;
    int busy = 1;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&rp->lock);
    while (busy) {
        busy = 0;
        for (struct cvd_repl_writer *w = rp->writers; w; w = w->next)
            busy |= !strcmp(w->volume, volume);
        if (busy && pthread_cond_timedwait(&rp->gone, &rp->lock,
                                           &until) != 0)
            break;
    }
    pthread_mutex_unlock(&rp->lock);
}

/* The attach record taken (the epoch raised) and this node's state of
 * the volume made: its epoch, its activity log.  *prev: the set as the
 * record's transaction saw it. */
int repl_writer_take(struct cvd_repl_writer *w, const struct cvd_replica_set *s,
                     struct cvd_replica_set *prev)
{
    struct cvd *d = w->d;
    int64_t lease;
    int r;

    if ((lease = cvd_node_lease(d)) == 0)
        return cv_error(-EAGAIN, "volume %s: node %s has no lease yet",
                        w->volume, d->cfg.node_name);
    memset(prev, 0, sizeof *prev);
    wait_local_release(d, w->volume);
    if ((r = d->meta->ops->attach_take(d->meta, w->volume, d->cfg.node_name,
                                       lease, &w->epoch, prev)) < 0)
        return r;
    w->taken = 1;
    w->lease = lease;
    w->min = prev->min ? prev->min : s->min;
    if ((r = repl_state_dir(d->cfg.data_dir, w->volume, w->state_dir,
                            sizeof w->state_dir)) < 0 ||
        (r = repl_epoch_put(w->state_dir, w->epoch)) < 0 ||
        (r = repl_missed_open(w->state_dir, REPL_ACTIVE_NODE,
                              &w->active)) < 0)
        return cv_error_prefix(r, "volume %s: its replication state",
                               w->volume);
    /* This node's replica side: a request of the last writer that passed
     * its epoch check before the epoch above ends first, and its own open
     * of the chain goes (the registry's is the one written from now on). */
    if (!w->diskless && (r = repl_replica_fence(d, w->volume, w->epoch)) < 0)
        return cv_error_prefix(r, "volume %s: fencing its replica here",
                               w->volume);
    return 0;
}

/* A failed attach: the record let go (if taken), the writer freed. */
void repl_writer_abort(struct cvd_repl_writer *w)
{
    if (w->taken)
        w->d->meta->ops->attach_release(w->d->meta, w->volume,
                                        w->d->cfg.node_name, w->epoch, 0);
    repl_writer_free(w);
}

/* Attached: found by the repair loop from now on. */
void repl_writer_publish(struct cvd_repl_writer *w)
{
    struct cvd *d = w->d;

    pthread_mutex_lock(&d->repl->lock);
    w->next = d->repl->writers;
    d->repl->writers = w;
    pthread_mutex_unlock(&d->repl->lock);
    cvd_info("volume %s: writer on node %s%s (epoch %llu; %u of %u "
             "replicas in sync, min %u)", w->volume, d->cfg.node_name,
             w->diskless ? ", which holds no replica" : "",
             (unsigned long long)w->epoch, repl_insync(w),
             w->npeers + !w->diskless, w->min);
    cvd_audit(d->audit, "cryptvold", "volume.attach", w->volume, 1,
              "epoch %llu%s", (unsigned long long)w->epoch,
              w->diskless ? ", no replica here" : "");
}

int cvd_repl_attach(struct cvd *d, const char *volume, struct cv_chain *c,
                    struct cvd_repl_writer **out)
{
    struct cvd_replica_set s, prev;
    struct cvd_repl_writer *w = NULL;
    struct cv_chain_mirror mirror = repl_writer_mirror_ops;
    int r;

    *out = NULL;
    if (!d->repl || (r = repl_set_lookup(d, volume, &s)) <= 0)
        return d->repl ? r : 0;
    if ((r = own_replica(d, &s)) < 0)
        return r;
    if (!(w = repl_writer_new(d, volume, c)))
        return cv_error(-ENOMEM, "volume %s: out of memory", volume);
    if ((r = repl_writer_take(w, &s, &prev)) < 0 ||
        (r = repl_regions_grow(w, cv_chain_size(c))) < 0 ||
        (r = repl_load_peers(w, prev.n ? &prev : &s)) < 0)
        goto fail;
    repl_load_bits(w->active, w->active_bits, w->nregions);
    repl_open_peers(w);
    mirror.arg = w;
    if ((r = cv_chain_set_mirror(c, &mirror)) < 0)
        goto fail;
    /* Through the mirror: what the last writer may have left half-written
     * is made the same everywhere. */
    if (prev.last_writer[0] && !prev.clean &&
        (r = repl_replay_active(w, prev.last_writer)) < 0) {
        cv_chain_set_mirror(c, NULL);
        goto fail;
    }
    repl_writer_publish(w);
    *out = w;
    return 0;
fail:
    repl_writer_abort(w);
    return r;
}

/* Detach begins: found no more, the repair loop's holds end first. */
static void writer_closing(struct cvd_repl_writer *w)
{
    struct cvd_repl *rp = w->d->repl;

    pthread_mutex_lock(&rp->lock);
    w->closing = 1;
    while (w->refs > 1)
        pthread_cond_wait(&w->unheld, &rp->lock);
    pthread_mutex_unlock(&rp->lock);
}

/* Detach ended (the attach record released): an attach here waiting for
 * it goes on. */
static void writer_unlist(struct cvd_repl_writer *w)
{
    struct cvd_repl *rp = w->d->repl;
    struct cvd_repl_writer **p;

    pthread_mutex_lock(&rp->lock);
    for (p = &rp->writers; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    pthread_cond_broadcast(&rp->gone);
    pthread_mutex_unlock(&rp->lock);
}


static void close_peers(struct cvd_repl_writer *w)
{
    struct repl_req q = { .type = REPL_CLOSE, .epoch = w->epoch };

    snprintf(q.volume, sizeof q.volume, "%s", w->volume);
    for (unsigned i = 0; i < w->npeers; i++) {
        struct repl_peer *p = &w->p[i];

        if (p->conn && p->role != ROLE_OUT &&
            repl_peer_call(w, p, &q, NULL, 0, NULL, NULL) < 0)
            cvd_warn("%s", cv_last_error());
    }
}

void cvd_repl_detach(struct cvd_repl_writer *w)
{
    struct cvd *d;
    int clean;

    if (!w)
        return;
    d = w->d;
    writer_closing(w);
    repl_targets_free(w);
    /* Every in-sync replica durable: the next writer need not replay. */
    clean = cv_chain_flush(w->c) == 0 && !atomic_load(&w->fenced);
    if (!clean)
        cvd_warn("volume %s: detaching without a flush on every replica: "
                 "%s", w->volume, cv_last_error());
    if (w->diskless)
        repl_remote_store_detach(w);
    else
        cv_chain_set_mirror(w->c, NULL);
    if (!atomic_load(&w->fenced))
        close_peers(w);
    if (d->meta->ops->attach_release(d->meta, w->volume, d->cfg.node_name,
                                     w->epoch, clean) < 0)
        cvd_warn("volume %s: releasing its attach record: %s", w->volume,
                 cv_last_error());
    cvd_info("volume %s: writer on node %s let go (epoch %llu%s)", w->volume,
             d->cfg.node_name, (unsigned long long)w->epoch,
             clean ? "" : ", unclean");
    writer_unlist(w);
    repl_writer_free(w);
}

struct cvd_repl_writer *repl_writer_find(struct cvd *d, const char *volume)
{
    struct cvd_repl_writer *w;

    if (!d->repl)
        return NULL;
    pthread_mutex_lock(&d->repl->lock);
    for (w = d->repl->writers; w; w = w->next)
        if (!w->closing && !strcmp(w->volume, volume)) {
            w->refs++;
            break;
        }
    pthread_mutex_unlock(&d->repl->lock);
    return w;
}

void repl_writer_put(struct cvd_repl_writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->d->repl->lock);
    w->refs--;
    pthread_cond_broadcast(&w->unheld);
    pthread_mutex_unlock(&w->d->repl->lock);
}

const char *repl_writer_volume(const struct cvd_repl_writer *w)
{
    return w->volume;
}

uint64_t repl_writer_epoch(const struct cvd_repl_writer *w)
{
    return w->epoch;
}

struct cv_chain *repl_writer_chain(struct cvd_repl_writer *w)
{
    return w->c;
}

int repl_writer_diskless(const struct cvd_repl_writer *w)
{
    return w->diskless;
}

/* Sync targets: a replica being resynced or rebuilt gets every change from
 * the moment it is added (not counting for acknowledgements), while the
 * repair loop copies what it misses.  A copied range is locked: live
 * writes to it reach the target after the copy of it (deferred), and the
 * lock waits for live writes sent to the target before it, so neither
 * overwrites the newer with the older.  And the replay of the activity
 * log after an unclean end. */
#include "writer-internal.h"
#include "audit/audit.h"
#include "core/error.h"
#include "daemon.h"
#include "log.h"
#include "peer/peer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

static int overlaps(const struct repl_range *g, uint64_t off, uint64_t len)
{
    return off < g->off + g->len && g->off < off + len;
}

/* Under w->lock. */
static int range_locked(struct cvd_repl_writer *w, uint64_t off,
                        uint64_t len)
{
    for (struct repl_range *g = w->ranges; g; g = g->next)
        if (overlaps(g, off, len))
            return 1;
    return 0;
}

int repl_target_defer(struct cvd_repl_writer *w, unsigned i, uint16_t type,
                      const struct repl_chunk *chunks, unsigned n,
                      uint64_t off, uint64_t len)
{
    struct repl_peer *p = &w->p[i];
    int defer;

    pthread_mutex_lock(&w->lock);
    defer = p->deferred || w->flushing || range_locked(w, off, len);
    if (!defer && len)
        for (uint64_t k = off / REPL_REGION;
             k < (off + len + REPL_REGION - 1) / REPL_REGION &&
             k < w->nregions; k++)
            w->tsent[k]++;
    for (unsigned k = 0; defer && k < n; k++) {
        struct repl_deferred *e = malloc(sizeof *e + chunks[k].plen +
                                         chunks[k].len);

        if (!e) {
            /* No memory to keep it: the target misses it (the caller
             * drops it, repl_target_failed, which records what it
             * misses, this change's chunks kept so far included). */
            defer = -ENOMEM;
            break;
        }
        e->next = NULL;
        e->type = type;
        e->off = off;
        e->rlen = len;
        e->len = chunks[k].plen + chunks[k].len;
        memcpy(e->data, chunks[k].prefix, chunks[k].plen);
        if (chunks[k].len)
            memcpy(e->data + chunks[k].plen, chunks[k].data, chunks[k].len);
        if (!p->deferred)
            p->deferred_tail = &p->deferred;
        *p->deferred_tail = e;
        p->deferred_tail = &e->next;
    }
    pthread_mutex_unlock(&w->lock);
    if (defer < 0)
        return cv_error(defer, "volume %s: replica %s: out of memory for a "
                        "deferred change", w->volume, p->node);
    return defer;
}

void repl_target_sent(struct cvd_repl_writer *w, uint64_t r0, uint64_t r1,
                      int delta)
{
    pthread_mutex_lock(&w->lock);
    for (uint64_t k = r0; k < r1 && k < w->nregions; k++)
        w->tsent[k] = (uint32_t)((int64_t)w->tsent[k] + delta);
    if (delta < 0)
        pthread_cond_broadcast(&w->changed);
    pthread_mutex_unlock(&w->lock);
}

static void free_deferred(struct cvd_repl_writer *w, unsigned i, int mark)
{
    struct repl_deferred *e;

    pthread_mutex_lock(&w->lock);
    e = w->p[i].deferred;
    w->p[i].deferred = NULL;
    pthread_mutex_unlock(&w->lock);
    while (e) {
        struct repl_deferred *next = e->next;

        if (mark && repl_mark_missed(w, i, e->off, e->rlen) < 0)
            cvd_warn("%s", cv_last_error());
        free(e);
        e = next;
    }
}

/* i leaves the targets (its state in the set stays as it is).  An
 * in-sync replica's stream is its own (a target made InSync meanwhile):
 * only a target's, or the one add_target opened, is dropped. */
static void target_out(struct cvd_repl_writer *w, unsigned i)
{
    struct repl_conn *conn = NULL;
    int was;

    pthread_mutex_lock(&w->lock);
    was = w->p[i].role == ROLE_TARGET;
    if (was) {
        w->p[i].role = ROLE_OUT;
        w->p[i].rebuild = 0;
    }
    if (w->p[i].role != ROLE_INSYNC) {
        conn = w->p[i].conn;
        w->p[i].conn = NULL;
    }
    pthread_mutex_unlock(&w->lock);
    if (was)
        atomic_fetch_sub(&w->ntargets, 1);
    repl_conn_put(conn);
    free_deferred(w, i, 1);
}

void repl_target_failed(struct cvd_repl_writer *w, unsigned i, int err,
                        uint64_t off, uint64_t len)
{
    char why[300];

    if (err == -ESTALE)
        repl_fence(w, w->p[i].node);
    repl_peer_why(&w->p[i], err, why, sizeof why);
    cvd_warn("volume %s: replica %s: sync target dropped: %s", w->volume,
             w->p[i].node, why);
    pthread_mutex_lock(&w->fail_lock);
    target_out(w, i);
    if (len && repl_mark_missed(w, i, off, len) < 0)
        cvd_warn("%s", cv_last_error());
    pthread_mutex_unlock(&w->fail_lock);
}

/* Sends the targets' deferred changes, in order, once no range is
 * locked. */
static void flush_deferred(struct cvd_repl_writer *w)
{
    pthread_mutex_lock(&w->lock);
    if (w->flushing || w->ranges) {
        pthread_mutex_unlock(&w->lock);
        return;
    }
    w->flushing = 1;
    for (unsigned i = 0; i < w->npeers; i++) {
        struct repl_deferred *e;

        /* The copy's requests in flight on an older stream (peer-tls
         * changed) are answered first: a deferred write on the new one
         * could overtake them. */
        while (w->p[i].deferred && w->p[i].copying &&
               w->p[i].copy_conn != w->p[i].conn)
            pthread_cond_wait(&w->changed, &w->lock);
        while (w->p[i].role == ROLE_TARGET && (e = w->p[i].deferred)) {
            struct iovec iov = { .iov_base = e->data, .iov_len = e->len };
            int r;

            w->p[i].deferred = e->next;
            pthread_mutex_unlock(&w->lock);
            r = repl_peer_send_raw(w, &w->p[i], e->type, &iov, 1, NULL,
                                   NULL);
            if (r < 0)
                repl_target_failed(w, i, r, e->off, e->rlen);
            free(e);
            pthread_mutex_lock(&w->lock);
        }
    }
    w->flushing = 0;
    pthread_mutex_unlock(&w->lock);
}

void repl_writer_range_lock(struct cvd_repl_writer *w, uint64_t off,
                            uint64_t len)
{
    struct repl_range *g = malloc(sizeof *g);
    uint64_t r0 = off / REPL_REGION;
    uint64_t r1 = (off + len + REPL_REGION - 1) / REPL_REGION;
    int busy = 1;

    pthread_mutex_lock(&w->lock);
    /* Without memory the range is not locked: the wait below still
     * orders the copy after what was sent (only a later live write may
     * then be overwritten: the caller's copy fails its check). */
    if (g) {
        g->off = off;
        g->len = len;
        g->next = w->ranges;
        w->ranges = g;
    }
    while (busy) {
        busy = 0;
        for (uint64_t k = r0; k < r1 && k < w->nregions && !busy; k++)
            busy = w->tsent[k] != 0;
        if (busy)
            pthread_cond_wait(&w->changed, &w->lock);
    }
    pthread_mutex_unlock(&w->lock);
}

void repl_writer_range_unlock(struct cvd_repl_writer *w, uint64_t off,
                              uint64_t len)
{
    struct repl_range **p, *g = NULL;

    pthread_mutex_lock(&w->lock);
    for (p = &w->ranges; *p; p = &(*p)->next)
        if ((*p)->off == off && (*p)->len == len) {
            g = *p;
            *p = g->next;
            break;
        }
    pthread_mutex_unlock(&w->lock);
    free(g);
    flush_deferred(w);
}

static int target_index(struct cvd_repl_writer *w, const char *node,
                        int want_target)
{
    int i = repl_peer_index(w, node);

    /* A replica added to the set since the attach. */
    if (i < 0 && !want_target && repl_writer_sync_set(w) == 0)
        i = repl_peer_index(w, node);
    if (i < 0)
        return cv_error(-ENOENT, "volume %s: node %s holds no replica of it",
                        w->volume, node);
    pthread_mutex_lock(&w->lock);
    if (want_target && w->p[i].role != ROLE_TARGET)
        i = cv_error(-ENOENT, "volume %s: replica %s is not being synced",
                     w->volume, node);
    else if (!want_target && w->p[i].role != ROLE_OUT)
        i = cv_error(-EBUSY, "volume %s: replica %s is %s", w->volume, node,
                     w->p[i].role == ROLE_TARGET ? "being synced already"
                                                 : "in sync");
    pthread_mutex_unlock(&w->lock);
    return i;
}

/* A clone's parent into REBUILD: the target's chain reads through its
 * own replica of the parent, as ours does. */
static void rebuild_parent(struct cvd_repl_writer *w, struct repl_req *q)
{
    struct cv_chain_parent pa;

    if (cv_chain_parent(w->c, &pa) < 0 || !pa.volume) {
        cv_clear_error();
        return;
    }
    snprintf(q->parent, sizeof q->parent, "%s", pa.volume);
    snprintf(q->parent_snapshot, sizeof q->parent_snapshot, "%s",
             pa.snapshot);
    q->parent_flags = pa.own_format ? REPL_PARENT_OWN_FORMAT : 0;
}

/* REBUILD: an empty chain of our own layers there (and our parent), writes
 * go to it. */
static int send_rebuild(struct cvd_repl_writer *w, struct repl_peer *p)
{
    struct repl_req q = { .type = REPL_REBUILD, .epoch = w->epoch };
    struct cv_chain_layer_info *li = NULL;
    size_t n = 0;
    int r;

    snprintf(q.volume, sizeof q.volume, "%s", w->volume);
    rebuild_parent(w, &q);
    if ((r = cv_chain_layers(w->c, &li, &n)) < 0)
        return r;
    if (!(q.layers = calloc(n ? n : 1, sizeof *q.layers))) {
        free(li);
        return cv_error(-ENOMEM, "volume %s: out of memory", w->volume);
    }
    for (size_t i = 0; i < n; i++) {
        if (!li[i].own)
            continue;
        q.layers[q.nlayers].id = li[i].id;
        q.layers[q.nlayers].created = li[i].created;
        snprintf(q.layers[q.nlayers].snapshot,
                 sizeof q.layers[q.nlayers].snapshot, "%s", li[i].snapshot);
        q.nlayers++;
    }
    q.data_offset = cv_chain_data_offset(w->c);
    q.raw_size = cv_chain_size(w->c);
    r = repl_peer_call(w, p, &q, NULL, 0, NULL, NULL);
    free(q.layers);
    free(li);
    /* REBUILD makes a missing chain: -ENOENT is only its parent's. */
    return r == -ENOENT && q.parent[0] ? REPL_ERR_NO_PARENT : r;
}

int repl_writer_add_target(struct cvd_repl_writer *w, const char *node,
                           int rebuild)
{
    struct repl_open_reply o = { 0 };
    struct cv_chain_mirror m = repl_writer_mirror_ops;
    unsigned seq = atomic_load(&w->shape_seq);
    struct repl_peer *p;
    int i = target_index(w, node, 0), r;

    if (i < 0)
        return i;
    /* A rebuild copies every layer from the writer's chain: one without a
     * chain leaves it to a replica's node (repair-loop.c). */
    if (rebuild && w->diskless)
        return cv_error(-EAGAIN, "volume %s: replica %s: rebuilt once the "
                        "volume is attached on a node holding a replica, or "
                        "let go (node %s holds none)", w->volume, node,
                        w->d->cfg.node_name);
    p = &w->p[i];
    if ((r = repl_conn_open(w, p, &o, rebuild)) < 0) {
        if (r == -ESTALE)
            repl_fence(w, node);        /* another node writes it now */
        return r;
    }
    if (!rebuild && !repl_same_shape(w, &o))
        r = cv_error(REPL_ERR_SHAPE, "volume %s: replica %s holds other "
                     "layers: it needs a rebuild", w->volume, node);
    repl_open_reply_free(&o);
    if (r == 0 && rebuild)
        r = send_rebuild(w, p);
    if (r == -ESTALE)
        repl_fence(w, node);    /* another node writes it now */
    if (r < 0) {
        target_out(w, (unsigned)i);
        return r;
    }
    pthread_mutex_lock(&w->lock);
    p->role = ROLE_TARGET;
    p->rebuild = rebuild;
    p->copy_err = 0;
    pthread_mutex_unlock(&w->lock);
    atomic_fetch_add(&w->ntargets, 1);
    /* A barrier: the changes in flight, which it did not get, end; every
     * later one goes to it. */
    m.arg = w;
    r = 0;
    if (w->diskless)
        repl_remote_barrier(w);
    else
        r = cv_chain_set_mirror(w->c, &m);
    if (r == 0 && atomic_load(&w->shape_seq) != seq)
        r = cv_error(-EAGAIN, "volume %s: its shape changed while replica "
                     "%s was added: try again", w->volume, node);
    if (r < 0) {
        target_out(w, (unsigned)i);
        return r;
    }
    cvd_info("volume %s: replica %s: %s started", w->volume, node,
             rebuild ? "rebuild" : "resync");
    return 0;
}

/* A copy's request in flight to target i, until its answer. */
struct copy_sent {
    struct cvd_repl_writer *w;
    unsigned i;
};

/* On the stream's reader: the answer counted, a failure kept. */
static void copy_answered(void *arg, int err, uint16_t type,
                          const void *resp, size_t len)
{
    struct copy_sent *cs = arg;
    struct cvd_repl_writer *w = cs->w;
    struct repl_peer *p = &w->p[cs->i];

    (void)type;
    (void)resp;
    (void)len;
    pthread_mutex_lock(&w->lock);
    if (err < 0 && !p->copy_err) {
        p->copy_err = err;
        snprintf(p->copy_why, sizeof p->copy_why, "%s", cv_last_error());
    }
    p->copying--;
    pthread_cond_broadcast(&w->changed);
    pthread_mutex_unlock(&w->lock);
    free(cs);
}

/* Waits until fewer than limit copy requests to target i are in flight
 * (1: none); the first failed answer, if any. */
static int copy_wait(struct cvd_repl_writer *w, unsigned i, unsigned limit)
{
    struct repl_peer *p = &w->p[i];
    char why[sizeof p->copy_why];
    int r;

    pthread_mutex_lock(&w->lock);
    while (p->copying >= limit)
        pthread_cond_wait(&w->changed, &w->lock);
    r = p->copy_err;
    if (r < 0)
        memcpy(why, p->copy_why, sizeof why);
    pthread_mutex_unlock(&w->lock);
    /* A copy refused by epoch: another node writes it now. */
    if (r == -ESTALE)
        repl_fence(w, p->node);
    if (r < 0)
        cv_error(r, "volume %s: replica %s: %s", w->volume, p->node, why);
    return r;
}

/* Target i's stream for the copy, held (the caller puts it): the one the
 * copy's requests in flight are on, or the peer's current one once none
 * is in flight; p->copy_conn keeps its own hold until copy_release. */
static struct repl_conn *copy_stream(struct cvd_repl_writer *w, unsigned i)
{
    struct repl_peer *p = &w->p[i];
    struct repl_conn *c = repl_conn_get(w, p), *old = NULL;

    if (!c)
        return NULL;
    pthread_mutex_lock(&w->lock);
    if (p->copy_conn != c) {
        while (p->copying)
            pthread_cond_wait(&w->changed, &w->lock);
        old = p->copy_conn;
        atomic_fetch_add(&c->refs, 1);
        p->copy_conn = c;
    }
    pthread_mutex_unlock(&w->lock);
    repl_conn_put(old);
    return c;
}

/* Once nothing of the copy is in flight: its hold on the stream. */
static void copy_release(struct cvd_repl_writer *w, unsigned i)
{
    struct repl_conn *old;

    (void)copy_wait(w, i, 1);
    pthread_mutex_lock(&w->lock);
    old = w->p[i].copy_conn;
    w->p[i].copy_conn = NULL;
    pthread_mutex_unlock(&w->lock);
    repl_conn_put(old);
}

/* One copy request on target i's stream, not waiting for its answer. */
static int copy_send(struct cvd_repl_writer *w, unsigned i,
                     const struct repl_req *q, const void *data, size_t len)
{
    struct repl_peer *p = &w->p[i];
    struct copy_sent *cs = NULL;
    struct repl_conn *c = NULL;
    struct iovec iov[2];
    void *prefix = NULL;
    size_t plen = 0;
    char why[300];
    int r;

    if ((r = copy_wait(w, i, REPL_COPY_WINDOW)) < 0 ||
        (r = repl_encode(q, &prefix, &plen)) < 0)
        return r;
    if (!(cs = malloc(sizeof *cs)))
        r = cv_error(-ENOMEM, "volume %s: out of memory", w->volume);
    else if (!(c = copy_stream(w, i)))
        r = cv_error(-ENOTCONN, "volume %s: replica %s: no stream",
                     w->volume, p->node);
    if (r == 0) {
        cs->w = w;
        cs->i = i;
        iov[0] = (struct iovec){ .iov_base = prefix, .iov_len = plen };
        iov[1] = (struct iovec){ .iov_base = (void *)data, .iov_len = len };
        pthread_mutex_lock(&w->lock);
        p->copying++;
        pthread_mutex_unlock(&w->lock);
        r = cvd_peer_stream_send(c->s, (uint16_t)q->type, iov,
                                 data ? 2 : 1, REPL_IO_TIMEOUT_MS,
                                 copy_answered, cs);
        if (r == 0) {
            cs = NULL;          /* copy_answered frees it */
        } else {
            pthread_mutex_lock(&w->lock);
            p->copying--;
            pthread_mutex_unlock(&w->lock);
            repl_peer_why(p, r, why, sizeof why);
            cv_error(r, "volume %s: replica %s: %s", w->volume, p->node,
                     why);
        }
    }
    free(cs);
    repl_conn_put(c);
    free(prefix);
    return r;
}

int repl_writer_target_write(struct cvd_repl_writer *w, const char *node,
                             uint32_t layer, const void *buf, size_t len,
                             uint64_t off)
{
    struct repl_req q = { .epoch = w->epoch, .layer = layer, .off = off,
                          .len = len };
    int i = target_index(w, node, 1), r = 0;

    if (i < 0)
        return i;
    snprintf(q.volume, sizeof q.volume, "%s", w->volume);
    q.type = layer == REPL_HEADER_LAYER ? REPL_HEADER
           : buf ? REPL_WRITE : REPL_PUNCH;
    if (q.type == REPL_HEADER)
        q.layer = 0;
    if (!buf)
        return copy_send(w, (unsigned)i, &q, NULL, 0);
    for (size_t at = 0; at < len && r == 0; at += REPL_READ_MAX) {
        size_t n = len - at < REPL_READ_MAX ? len - at : REPL_READ_MAX;

        q.off = off + at;
        r = copy_send(w, (unsigned)i, &q, (const char *)buf + at, n);
    }
    return r;
}

int repl_writer_target_wait(struct cvd_repl_writer *w, const char *node)
{
    int i = repl_peer_index(w, node);

    if (i < 0)
        return cv_error(-ENOENT, "volume %s: node %s holds no replica of it",
                        w->volume, node);
    return copy_wait(w, (unsigned)i, 1);
}

static int simple(struct cvd_repl_writer *w, struct repl_peer *p,
                  uint16_t type)
{
    struct repl_req q = { .type = type, .epoch = w->epoch };

    snprintf(q.volume, sizeof q.volume, "%s", w->volume);
    return repl_peer_call(w, p, &q, NULL, 0, NULL, NULL);
}

/* Every region of record m (of node) marked on target i: MARK, one per
 * run, cut to the image's end (a record may reach past it after a
 * shrink; the replica refuses a mark there). */
static int send_record(struct cvd_repl_writer *w, unsigned i,
                       const char *node, struct repl_missed *m)
{
    struct repl_req q = { .type = REPL_MARK, .epoch = w->epoch };
    uint64_t lim = (cv_chain_size(w->c) + REPL_REGION - 1) / REPL_REGION *
                   REPL_REGION;
    uint64_t from = 0, off, len;
    int r = 0;

    snprintf(q.volume, sizeof q.volume, "%s", w->volume);
    snprintf(q.name, sizeof q.name, "%s", node);
    while (r == 0 && repl_missed_next(m, from, &off, &len) == 0 && len &&
           off < lim) {
        from = off + len;
        q.off = off;
        q.len = len < lim - off ? len : lim - off;
        r = repl_peer_call(w, &w->p[i], &q, NULL, 0, NULL, NULL);
    }
    return r;
}

/* Under fail_lock (no mark is made meanwhile: the activity log's and the
 * missed regions' are made under it too), before target i is InSync: it
 * gets the records the in-sync replicas keep, which went only to them
 * while it was a target (and COMMIT dropped its old ones): the activity
 * log, and what every other replica not in sync misses.  Else, should it
 * become the writer, it would resync those replicas from empty records,
 * or replay no activity log after this writer's crash. */
static int target_records(struct cvd_repl_writer *w, unsigned i)
{
    int r = send_record(w, i, REPL_ACTIVE_NODE, w->active);

    for (unsigned j = 0; j < w->npeers && r == 0; j++) {
        struct repl_missed *m;
        enum repl_role role;

        pthread_mutex_lock(&w->lock);
        role = w->p[j].role;
        pthread_mutex_unlock(&w->lock);
        if (j == i || role == ROLE_INSYNC || role == ROLE_GONE)
            continue;
        if (!(m = repl_writer_missed(w, w->p[j].node)))
            r = cv_error_prefix(-EIO, "volume %s: replica %s: its record",
                                w->volume, w->p[j].node);
        else
            r = send_record(w, i, w->p[j].node, m);
    }
    return r;
}

int repl_writer_target_done(struct cvd_repl_writer *w, const char *node)
{
    int i = target_index(w, node, 1), r;
    uint64_t all = w->nregions * (uint64_t)REPL_REGION;
    struct repl_peer *p;

    if (i < 0)
        return i;
    p = &w->p[i];
    flush_deferred(w);
    r = copy_wait(w, (unsigned)i, 1);
    copy_release(w, (unsigned)i);
    if (r == 0 && (r = simple(w, p, REPL_FLUSH)) == 0 && p->rebuild)
        r = simple(w, p, REPL_COMMIT);
    if (r == -ESTALE)
        repl_fence(w, node);
    pthread_mutex_lock(&w->fail_lock);
    if (r == 0 && w->p[i].role != ROLE_TARGET)
        r = cv_error(-EIO, "volume %s: replica %s failed while synced",
                     w->volume, node);
    if (r == 0)
        r = target_records(w, (unsigned)i);
    /* Nothing missed any more, everywhere, then InSync. */
    if (r == 0)
        r = repl_mark_all(w, REPL_CLEAR, node, 0, all);
    if (r == 0 && p->missed)
        r = repl_missed_clear(p->missed, 0, all);
    if (r == 0)
        r = repl_set_state(w, node, CVD_REPLICA_INSYNC, NULL);
    if (r == 0) {
        pthread_mutex_lock(&w->lock);
        p->role = ROLE_INSYNC;
        p->rebuild = 0;
        memset(p->marked, 0, (w->nregions + 7) / 8);
        pthread_mutex_unlock(&w->lock);
        atomic_fetch_sub(&w->ntargets, 1);
    }
    pthread_mutex_unlock(&w->fail_lock);
    if (r < 0) {
        repl_writer_target_drop(w, node);
        return r;
    }
    cvd_info("volume %s: replica %s: InSync", w->volume, node);
    cvd_audit(w->d->audit, "cryptvold", "replica.insync", w->volume, 1,
              "node %s", node);
    return 0;
}

void repl_writer_target_drop(struct cvd_repl_writer *w, const char *node)
{
    int i = repl_peer_index(w, node);

    if (i < 0)
        return;
    target_out(w, (unsigned)i);
    copy_release(w, (unsigned)i);           /* answers still to come */
}

struct repl_missed *repl_writer_missed(struct cvd_repl_writer *w,
                                       const char *node)
{
    int i = repl_peer_index(w, node);

    if (i < 0)
        return NULL;
    if (!w->p[i].missed &&
        repl_missed_open(w->state_dir, node, &w->p[i].missed) < 0)
        return NULL;
    return w->p[i].missed;
}

void repl_targets_free(struct cvd_repl_writer *w)
{
    for (unsigned i = 0; i < w->npeers; i++) {
        if (w->p[i].role == ROLE_TARGET)
            target_out(w, i);
        copy_release(w, i);
    }
    while (w->ranges) {
        struct repl_range *g = w->ranges;

        w->ranges = g->next;
        free(g);
    }
}

/* One run of the head as it is here, through the mirror: its own blocks
 * rewritten (the same bytes), the others punched. */
static int replay_run(struct cvd_repl_writer *w, uint64_t off, uint64_t len,
                      void *buf)
{
    while (len > 0) {
        uint64_t run = 0;
        int held = cv_chain_layer_has(w->c, CV_CHAIN_TOP, off, len, &run);
        int r;

        if (held < 0)
            return held;
        if (run == 0 || run > len)
            run = len;
        if (held)
            r = cv_chain_read(w->c, buf, (size_t)run, off, CV_CHAIN_TOP,
                              NULL, NULL) ?:
                cv_chain_write(w->c, buf, (size_t)run, off, 0);
        else
            r = cv_chain_punch(w->c, off, run);
        if (r < 0)
            return r;
        off += run;
        len -= run;
    }
    return 0;
}

int repl_replay_active(struct cvd_repl_writer *w, const char *last)
{
    uint64_t doff = cv_chain_data_offset(w->c), size = cv_chain_size(w->c);
    struct cv_backend *b = cv_chain_backend(w->c);
    void *buf = malloc(REPL_REGION > doff ? REPL_REGION : doff);
    uint64_t from = 0, off, len;
    unsigned n = 0;
    int r = 0;

    if (!buf)
        return cv_error(-ENOMEM, "volume %s: out of memory", w->volume);
    while (r == 0 && repl_missed_next(w->active, from, &off, &len) == 0 &&
           len) {
        from = off + len;
        /* The part inside the header, as header writes. */
        if (off < doff) {
            size_t hl = (size_t)((off + len < doff ? off + len : doff) - off);

            if ((r = cv_backend_pread(b, buf, hl, off)) == 0)
                r = cv_backend_pwrite(b, buf, hl, off, 0);
        }
        for (uint64_t at = off < doff ? doff : off;
             r == 0 && at < off + len && at < size; at += REPL_REGION) {
            uint64_t end = at - at % REPL_REGION + REPL_REGION;

            if (end > off + len)
                end = off + len;
            if (end > size)
                end = size;
            r = replay_run(w, at, end - at, buf);
            n++;
        }
    }
    free(buf);
    if (r < 0)
        return cv_error_prefix(r, "volume %s: replaying the activity log",
                               w->volume);
    if (n)
        cvd_info("volume %s: node %s ended uncleanly: %u regions of the "
                 "activity log copied to the replicas", w->volume, last, n);
    return 0;
}

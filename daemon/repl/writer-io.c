/* The writer's fan-out: the chain's mirror callbacks (store/chain.h).
 * begin encodes the request's prefix once and sends it, with the caller's
 * buffer as the second iovec part, to every in-sync replica and sync
 * target on its stream (pipelined: no wait); the local write then runs in
 * parallel; end waits for every answer and handles the failures
 * (writer-fail.c) before the change is acknowledged. */
#include "writer-internal.h"
#include "core/error.h"
#include "daemon.h"
#include "log.h"
#include "peer/peer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

/* A WRITE larger than this goes as several requests (peer frames are at
 * most CVD_PEER_MAX_PAYLOAD). */
#define REPL_CHUNK (8u << 20)
/* Regions idle since a flush leave the activity log at most this often. */
#define REPL_CLEAR_INTERVAL_MS 5000

struct repl_tok;

struct repl_slot {
    struct repl_tok *t;
    unsigned peer;
    int err;
};

/* One change in flight. */
struct repl_tok {
    struct cvd_repl_writer *w;
    sem_t done;                 /* posted once: every slot answered */
    atomic_uint pending;        /* slots unanswered, + 1 while sending */
    unsigned nslots, nchunks;
    /* w->npeers when it began: slot[] is sized by it, and --set N+1
     * (repl_writer_sync_set) may raise w->npeers meanwhile. */
    unsigned npeers;
    enum cv_mirror_type type;
    enum cv_mirror_shape shape;
    uint32_t layer;             /* a WRITE's: 0 the head, else a fill's */
    uint16_t rtype;
    int regions;                /* busy[] was raised for [r0, r1) */
    unsigned tsent_n;           /* tsent[] raised this often */
    unsigned tmask;             /* the peers that were sync targets */
    unsigned dmask;             /* the targets that deferred it */
    int perr[CVD_MAX_REPLICAS]; /* failed without a slot (no stream) */
    uint32_t flush_gen;
    uint64_t r0, r1, off, len;
    void *zeros;                /* a HEADER of zeros */
    struct repl_chunk *chunk;
    struct repl_conn *conn[CVD_MAX_REPLICAS];
    struct repl_slot slot[];
};

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Under w->lock: the arrays are read under it (the repair loop's range
 * lock, a target's marks, the activity log's clear), and realloc moves
 * them. */
static int regions_grow_locked(struct cvd_repl_writer *w, uint64_t n)
{
    uint8_t *bits;
    uint32_t *busy, *gen, *tsent;

    bits = realloc(w->active_bits, (n + 7) / 8);
    if (bits)
        w->active_bits = bits;
    busy = realloc(w->busy, n * sizeof *busy);
    if (busy)
        w->busy = busy;
    gen = realloc(w->gen, n * sizeof *gen);
    if (gen)
        w->gen = gen;
    tsent = realloc(w->tsent, n * sizeof *tsent);
    if (tsent)
        w->tsent = tsent;
    if (!bits || !busy || !gen || !tsent)
        return cv_error(-ENOMEM, "volume %s: out of memory", w->volume);
    memset(bits + (w->nregions + 7) / 8, 0,
           (n + 7) / 8 - (w->nregions + 7) / 8);
    for (uint64_t r = w->nregions; r < n; r++) {
        if (r % 8 && r / 8 == w->nregions / 8)
            bits[r / 8] &= (uint8_t)~(1u << (r % 8));
        busy[r] = gen[r] = tsent[r] = 0;
    }
    for (unsigned i = 0; i < w->npeers; i++) {
        uint8_t *m = realloc(w->p[i].marked, (n + 7) / 8);

        if (!m)
            return cv_error(-ENOMEM, "volume %s: out of memory", w->volume);
        memset(m + (w->nregions + 7) / 8, 0,
               (n + 7) / 8 - (w->nregions + 7) / 8);
        w->p[i].marked = m;
    }
    w->nregions = n;
    return 0;
}

int repl_regions_grow(struct cvd_repl_writer *w, uint64_t raw_size)
{
    uint64_t n = (raw_size + REPL_REGION - 1) / REPL_REGION;
    int r = 0;

    pthread_mutex_lock(&w->lock);
    if (n > w->nregions)
        r = regions_grow_locked(w, n);
    pthread_mutex_unlock(&w->lock);
    return r;
}

/* The changes of bytes at an offset: a replica that misses one misses
 * its regions (a header write's too: inside [0, data offset), which a
 * resync copies as header), and the activity log and a copy's range lock
 * cover them. */
static int data_op_type(enum cv_mirror_type t)
{
    return t == CV_MIRROR_WRITE || t == CV_MIRROR_PUNCH ||
           t == CV_MIRROR_HEADER;
}

static int bit(const uint8_t *b, uint64_t r)
{
    return (b[r / 8] >> (r % 8)) & 1;
}

static void set_bit(uint8_t *b, uint64_t r)
{
    b[r / 8] |= (uint8_t)(1u << (r % 8));
}

/* The activity log: regions [r0, r1) marked "@active" on every in-sync
 * replica and locally before the first write to them.  Its marks and
 * clears are serialized (fail_lock, which target_done holds while it
 * hands the log to a new in-sync replica): a CLEAR sent after a MARK of
 * the same region must not land before it. */
static int active_mark_locked(struct cvd_repl_writer *w, uint64_t r0,
                              uint64_t r1)
{
    uint64_t a = r1, b = r0;
    int r;

    pthread_mutex_lock(&w->lock);
    for (uint64_t k = r0; k < r1 && k < w->nregions; k++)
        if (!bit(w->active_bits, k)) {
            a = k < a ? k : a;
            b = k + 1;
        }
    pthread_mutex_unlock(&w->lock);
    if (a >= b)
        return 0;
    r = repl_mark_all(w, REPL_MARK, REPL_ACTIVE_NODE, a * REPL_REGION,
                      (b - a) * REPL_REGION);
    if (r == 0 && (r = repl_missed_mark(w->active, a * REPL_REGION,
                                        (b - a) * REPL_REGION)) < 0)
        cv_error_prefix(r, "volume %s: the activity log", w->volume);
    if (r < 0)
        return r;
    pthread_mutex_lock(&w->lock);
    for (uint64_t k = a; k < b && k < w->nregions; k++)
        set_bit(w->active_bits, k);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

static int active_mark(struct cvd_repl_writer *w, uint64_t r0, uint64_t r1)
{
    int r;

    pthread_mutex_lock(&w->fail_lock);
    r = active_mark_locked(w, r0, r1);
    pthread_mutex_unlock(&w->fail_lock);
    return r;
}

/* Before a write reaches [off, off+len): the activity log, and the marks
 * of the regions each not in-sync replica misses. */
static int before_data(struct cvd_repl_writer *w, uint64_t off, uint64_t len,
                       uint64_t r0, uint64_t r1)
{
    int r;

    if ((r = active_mark(w, r0, r1)) < 0)
        return r;
    for (unsigned i = 0; i < w->npeers; i++) {
        int out;

        pthread_mutex_lock(&w->lock);
        out = w->p[i].role == ROLE_OUT;
        pthread_mutex_unlock(&w->lock);
        if (out && (r = repl_mark_missed(w, i, off, len)) < 0)
            return r;
    }
    return 0;
}

/* One wakeup of the waiting writer per change, not one per replica. */
static void slot_done(struct repl_tok *t)
{
    if (atomic_fetch_sub(&t->pending, 1) == 1)
        sem_post(&t->done);
}

static void sent_done(void *arg, int err, uint16_t type, const void *resp,
                      size_t len)
{
    struct repl_slot *s = arg;

    (void)type, (void)resp, (void)len;
    s->err = err;
    slot_done(s->t);
}

static void fill_req(struct cvd_repl_writer *w, const struct cv_mirror_op *op,
                     struct repl_req *q)
{
    memset(q, 0, sizeof *q);
    q->epoch = w->epoch;
    snprintf(q->volume, sizeof q->volume, "%s", w->volume);
    switch (op->type) {
    case CV_MIRROR_WRITE:
        q->type = REPL_WRITE;
        q->layer = op->layer;
        q->flags = op->flags;
        q->off = op->off;
        break;
    case CV_MIRROR_PUNCH:
        q->type = REPL_PUNCH;
        q->off = op->off;
        q->len = op->len;
        break;
    case CV_MIRROR_HEADER:
        q->type = REPL_HEADER;
        q->off = op->off;
        break;
    case CV_MIRROR_RESIZE:
        q->type = REPL_RESIZE;
        q->raw_size = op->size;
        break;
    case CV_MIRROR_FLUSH:
        q->type = REPL_FLUSH;
        break;
    case CV_MIRROR_SHAPE:
        q->type = REPL_SHAPE;
        q->shape_op = (uint16_t)op->shape;
        q->id = op->id;
        q->created = op->shape == CV_SHAPE_DATA_OFFSET ? (int64_t)op->size
                                                       : op->created;
        snprintf(q->name, sizeof q->name, "%s", op->name ? op->name : "");
        break;
    }
}

static int data_op(const struct cv_mirror_op *op)
{
    return data_op_type(op->type);
}

/* The requests of op: one per chunk of its data, prefixes encoded once
 * for every peer. */
static int encode_chunks(struct repl_tok *t, const struct cv_mirror_op *op,
                         const void *data)
{
    struct cvd_repl_writer *w = t->w;
    struct repl_req q;
    int r;

    fill_req(w, op, &q);
    t->rtype = q.type;
    for (unsigned k = 0; k < t->nchunks; k++) {
        struct repl_chunk *c = &t->chunk[k];
        uint64_t at = (uint64_t)k * REPL_CHUNK;

        if (q.type == REPL_WRITE || q.type == REPL_HEADER) {
            q.off = op->off + at;
            c->data = (const char *)data + at;
            c->len = (size_t)(op->len - at < REPL_CHUNK ? op->len - at
                                                        : REPL_CHUNK);
        }
        if ((r = repl_encode(&q, &c->prefix, &c->plen)) < 0)
            return cv_error_prefix(r, "volume %s: encoding a request",
                                   w->volume);
    }
    return 0;
}

/* Which peers get op now: their conns held in t->conn.  A sync target
 * whose range is being copied gets it later (deferred: a copy). */
/* The common case in one hold of the lock: no sync target, no stale
 * stream.  0 if it did not apply (then nothing was taken). */
static int pick_fast(struct cvd_repl_writer *w, struct repl_tok *t)
{
    unsigned n = t->npeers;

    if (atomic_load(&w->ntargets))
        return 0;
    pthread_mutex_lock(&w->lock);
    for (unsigned i = 0; i < n; i++) {
        struct repl_conn *c = w->p[i].conn;

        if (w->p[i].role == ROLE_TARGET ||
            (w->p[i].role == ROLE_INSYNC && c &&
             cvd_peer_stream_stale(c->s))) {
            pthread_mutex_unlock(&w->lock);
            return 0;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        struct repl_conn *c = w->p[i].conn;

        if (w->p[i].role == ROLE_INSYNC && c) {
            atomic_fetch_add(&c->refs, 1);
            t->conn[i] = c;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return 1;
}

static void pick_all(struct cvd_repl_writer *w, struct repl_tok *t,
                     const struct cv_mirror_op *op)
{
    if (pick_fast(w, t))
        return;
    for (unsigned i = 0; i < t->npeers; i++) {
        struct repl_peer *p = &w->p[i];
        enum repl_role role;

        pthread_mutex_lock(&w->lock);
        role = p->role;
        pthread_mutex_unlock(&w->lock);
        if (role != ROLE_INSYNC && role != ROLE_TARGET)
            continue;
        if (role == ROLE_TARGET && data_op(op)) {
            /* Not deferred: tsent raised in the same hold of the lock as
             * the decision, so no range lock can pass in between. */
            int d = repl_target_defer(w, i, t->rtype, t->chunk, t->nchunks,
                                      op->off, op->len);

            if (d < 0) {
                repl_target_failed(w, i, d, op->off, op->len);
                continue;
            }
            if (d) {
                t->dmask |= 1u << i;
                continue;
            }
            t->tsent_n += op->len != 0;
        }
        if ((t->conn[i] = repl_conn_get(w, p)) && role == ROLE_TARGET)
            t->tmask |= 1u << i;
    }
}

/* Under w->lock: [r0, r1) is marked for p (what it misses is recorded). */
static int regions_marked(struct cvd_repl_writer *w, const struct repl_peer *p,
                          uint64_t r0, uint64_t r1)
{
    for (uint64_t k = r0; k < r1 && k < w->nregions; k++)
        if (!bit(p->marked, k))
            return 0;
    return 1;
}

/* After the pick, in one hold of the lock: a peer the change does not
 * reach.  In sync without a stream: it fails (not skipped).  Not in sync
 * and the regions not marked for it: it left InSync (or the targets)
 * after begin_regions marked, its failure being recorded on another
 * thread, which marks only its own request's region: this change's are
 * marked now (repl_mark_missed waits for that thread's set update on
 * fail_lock), before it is sent and can be acknowledged. */
static int pick_unreached(struct cvd_repl_writer *w, struct repl_tok *t)
{
    unsigned need = 0;
    int r = 0;

    pthread_mutex_lock(&w->lock);
    for (unsigned i = 0; i < t->npeers; i++) {
        struct repl_peer *p = &w->p[i];

        if (t->conn[i] || (t->dmask & (1u << i)))
            continue;
        if (p->role == ROLE_INSYNC)
            t->perr[i] = -ENOTCONN;
        else if (p->role != ROLE_GONE && t->regions &&
                 !regions_marked(w, p, t->r0, t->r1))
            need |= 1u << i;
    }
    pthread_mutex_unlock(&w->lock);
    for (unsigned i = 0; i < t->npeers && r == 0; i++)
        if (need & (1u << i))
            r = repl_mark_missed(w, i, t->off, t->len);
    return r;
}

static int pick_peers(struct cvd_repl_writer *w, struct repl_tok *t,
                      const struct cv_mirror_op *op)
{
    int r;

    pick_all(w, t, op);
    if ((r = pick_unreached(w, t)) < 0) {
        for (unsigned i = 0; i < t->npeers; i++) {
            repl_conn_put(t->conn[i]);
            t->conn[i] = NULL;
        }
    }
    return r;
}

static void send_all(struct repl_tok *t)
{
    unsigned n = 0;

    for (unsigned k = 0; k < t->nchunks; k++) {
        struct repl_chunk *c = &t->chunk[k];
        struct iovec iov[2] = {
            { .iov_base = c->prefix, .iov_len = c->plen },
            { .iov_base = (void *)c->data, .iov_len = c->len },
        };

        for (unsigned i = 0; i < t->npeers; i++) {
            struct repl_slot *s;
            int r;

            if (!t->conn[i])
                continue;
            s = &t->slot[n++];
            s->t = t;
            s->peer = i;
            s->err = 0;
            atomic_fetch_add(&t->pending, 1);
            /* Not stored straight into s->err: sent_done may have set it
             * by the time the send returns, and a 0 must not undo that. */
            /* Posted: the prefixes and the caller's buffer live until
             * mirror_end has every answer. */
            r = cvd_peer_stream_post(t->conn[i]->s, t->rtype, iov,
                                     c->len ? 2 : 1, REPL_IO_TIMEOUT_MS,
                                     sent_done, s);
            if (r < 0) {
                s->err = r;
                slot_done(t);           /* done will not be called */
            }
        }
    }
    t->nslots = n;
    slot_done(t);                       /* the sending's own hold */
}

static void tok_free(struct repl_tok *t)
{
    for (unsigned k = 0; k < t->nchunks; k++)
        free(t->chunk[k].prefix);
    sem_destroy(&t->done);
    free(t->zeros);
    free(t->chunk);
    free(t);
}

static int check_begin(struct cvd_repl_writer *w,
                       const struct cv_mirror_op *op)
{
    unsigned in;
    int r;

    /* A flush makes what was acknowledged durable: never refused here
     * (a stale writer's is refused by the replicas). */
    if (op->type == CV_MIRROR_FLUSH ||
        (op->type == CV_MIRROR_SHAPE && op->shape == CV_SHAPE_SYNC_LAYER))
        return 0;
    if ((r = repl_fence_check(w)) < 0 || (r = repl_recorded_check(w)) < 0)
        return r;
    if ((in = repl_insync(w)) < w->min)
        return cv_error(-EIO, "volume %s: %u of its replicas in sync, "
                        "min-replicas is %u: writes refused", w->volume, in,
                        w->min);
    if (op->type == CV_MIRROR_SHAPE && op->shape != CV_SHAPE_SYNC_LAYER) {
        atomic_fetch_add(&w->shape_seq, 1);
        return repl_shape_check(w);
    }
    if (op->type == CV_MIRROR_RESIZE) {
        atomic_fetch_add(&w->shape_seq, 1);
        return repl_regions_grow(w, op->size);
    }
    return 0;
}

static struct repl_tok *tok_new(struct cvd_repl_writer *w,
                                const struct cv_mirror_op *op)
{
    uint64_t len = op->type == CV_MIRROR_WRITE || op->type == CV_MIRROR_HEADER
                   ? op->len : 0;
    unsigned nchunks = len > REPL_CHUNK ? (unsigned)((len + REPL_CHUNK - 1) /
                                                     REPL_CHUNK) : 1;
    unsigned npeers = __atomic_load_n(&w->npeers, __ATOMIC_ACQUIRE);
    struct repl_tok *t;

    t = calloc(1, sizeof *t + (size_t)nchunks * npeers * sizeof t->slot[0]);
    if (t && !(t->chunk = calloc(nchunks, sizeof *t->chunk))) {
        free(t);
        t = NULL;
    }
    if (!t) {
        cv_error(-ENOMEM, "volume %s: out of memory", w->volume);
        return NULL;
    }
    t->w = w;
    t->npeers = npeers;
    t->nchunks = nchunks;
    t->type = op->type;
    t->shape = op->shape;
    t->layer = op->type == CV_MIRROR_WRITE ? op->layer : 0;
    t->off = op->off;
    t->len = op->len;
    sem_init(&t->done, 0, 0);
    atomic_init(&t->pending, 1);
    return t;
}

/* Under w->lock: [r0, r1) needs no mark. */
static int regions_ready(struct cvd_repl_writer *w, uint64_t r0, uint64_t r1)
{
    for (uint64_t k = r0; k < r1 && k < w->nregions; k++) {
        if (!bit(w->active_bits, k))
            return 0;
        for (unsigned i = 0; i < w->npeers; i++)
            if (w->p[i].role == ROLE_OUT && !bit(w->p[i].marked, k))
                return 0;
    }
    return 1;
}

/* Before a data op is sent: the marks, and the regions busy. */
static int begin_regions(struct cvd_repl_writer *w, struct repl_tok *t)
{
    int ready, r;

    t->r0 = t->off / REPL_REGION;
    t->r1 = (t->off + t->len + REPL_REGION - 1) / REPL_REGION;
    /* Busy before the marks: an activity log clear between them and the
     * write would take the regions out of the log, and the write would
     * run outside it.  Nothing to mark (the regions are in the activity
     * log, every peer not in sync has them marked): one hold. */
    pthread_mutex_lock(&w->lock);
    ready = regions_ready(w, t->r0, t->r1);
    for (uint64_t k = t->r0; k < t->r1 && k < w->nregions; k++)
        w->busy[k]++;
    pthread_mutex_unlock(&w->lock);
    t->regions = 1;
    if (ready || (r = before_data(w, t->off, t->len, t->r0, t->r1)) == 0)
        return 0;
    pthread_mutex_lock(&w->lock);
    for (uint64_t k = t->r0; k < t->r1 && k < w->nregions; k++)
        w->busy[k]--;
    pthread_mutex_unlock(&w->lock);
    t->regions = 0;
    return r;
}

static void end_regions(struct cvd_repl_writer *w, struct repl_tok *t)
{
    pthread_mutex_lock(&w->lock);
    for (uint64_t k = t->r0; k < t->r1 && k < w->nregions; k++) {
        w->busy[k]--;
        w->gen[k] = w->flush_gen;
    }
    pthread_mutex_unlock(&w->lock);
    if (t->tsent_n)
        repl_target_sent(w, t->r0, t->r1, -(int)t->tsent_n);
}

static int mirror_begin(void *arg, const struct cv_mirror_op *op,
                        void **token)
{
    struct cvd_repl_writer *w = arg;
    const void *data = op->buf;
    struct repl_tok *t;
    int r;

    if ((r = check_begin(w, op)) < 0)
        return r;
    if (!(t = tok_new(w, op)))
        return -ENOMEM;
    if (op->type == CV_MIRROR_HEADER && !data && op->len &&
        !(data = t->zeros = calloc(1, op->len))) {
        tok_free(t);
        return cv_error(-ENOMEM, "volume %s: out of memory", w->volume);
    }
    if ((r = encode_chunks(t, op, data)) < 0 ||
        (data_op(op) && op->len && (r = begin_regions(w, t)) < 0)) {
        tok_free(t);
        return r;
    }
    if (op->type == CV_MIRROR_FLUSH) {
        pthread_mutex_lock(&w->lock);
        t->flush_gen = ++w->flush_gen;
        pthread_mutex_unlock(&w->lock);
    }
    if ((r = pick_peers(w, t, op)) < 0) {
        if (t->regions)
            end_regions(w, t);
        tok_free(t);
        return r;
    }
    send_all(t);
    *token = t;
    return 0;
}

/* After a flush that every in-sync replica made: the regions no write
 * touched since it began (and none in flight) leave the activity log. */
static void active_clear(struct cvd_repl_writer *w, uint32_t g)
{
    int64_t now = mono_ms();
    uint64_t k = 0;

    pthread_mutex_lock(&w->lock);
    if (now - w->last_clear_ms < REPL_CLEAR_INTERVAL_MS) {
        pthread_mutex_unlock(&w->lock);
        return;
    }
    w->last_clear_ms = now;
    pthread_mutex_unlock(&w->lock);
    /* Serialized with the log's marks (active_mark): a MARK of a region
     * cleared here is sent after this CLEAR, never overtaken by it. */
    pthread_mutex_lock(&w->fail_lock);
    for (;;) {
        uint64_t a, b;

        pthread_mutex_lock(&w->lock);
        if (k >= w->nregions) {
            pthread_mutex_unlock(&w->lock);
            break;
        }
        while (k < w->nregions && !(bit(w->active_bits, k) && !w->busy[k] &&
                                    (int32_t)(w->gen[k] - g) < 0))
            k++;
        a = k;
        while (k < w->nregions && bit(w->active_bits, k) && !w->busy[k] &&
               (int32_t)(w->gen[k] - g) < 0) {
            w->active_bits[k / 8] &= (uint8_t)~(1u << (k % 8));
            k++;
        }
        b = k;
        pthread_mutex_unlock(&w->lock);
        if (a >= b)
            break;
        /* A failed clear leaves regions marked: only more to resync. */
        if (repl_mark_all(w, REPL_CLEAR, REPL_ACTIVE_NODE, a * REPL_REGION,
                          (b - a) * REPL_REGION) < 0 ||
            repl_missed_clear(w->active, a * REPL_REGION,
                              (b - a) * REPL_REGION) < 0)
            cvd_warn("%s", cv_last_error());
    }
    pthread_mutex_unlock(&w->fail_lock);
}

/* The region a failed request leaves a replica missing. */
static void failed_region(struct repl_tok *t, uint64_t *off, uint64_t *len,
                          int *rebuild)
{
    /* A lower layer's write (a merge's or flatten's fill) missed: a resync
     * copies only the head, so only a rebuild brings it. */
    *rebuild = t->type == CV_MIRROR_SHAPE || t->type == CV_MIRROR_RESIZE ||
               (t->type == CV_MIRROR_WRITE && t->layer != 0);
    *off = t->off;
    *len = t->len;
    if (t->type == CV_MIRROR_FLUSH) {
        /* Not durable there: whatever may not have reached its disk. */
        *off = 0;
        *len = UINT64_MAX;
    } else if (!data_op_type(t->type)) {
        *len = 0;
    }
}

static int end_failures(struct cvd_repl_writer *w, struct repl_tok *t)
{
    int err[CVD_MAX_REPLICAS] = { 0 }, r = 0;
    uint64_t off, len;
    int rebuild;

    for (unsigned k = 0; k < t->nslots; k++)
        if (t->slot[k].err && !err[t->slot[k].peer])
            err[t->slot[k].peer] = t->slot[k].err;
    for (unsigned i = 0; i < t->npeers; i++)
        if (!err[i])
            err[i] = t->perr[i];
    failed_region(t, &off, &len, &rebuild);
    for (unsigned i = 0; i < t->npeers; i++) {
        enum repl_role role;
        int rr;

        if (!err[i])
            continue;
        if (err[i] == -ESTALE) {
            repl_fence(w, w->p[i].node);
            r = -EIO;
            continue;
        }
        /* Its role now, not at the pick: a target that target_done made
         * InSync since fails as an in-sync replica (else it would stay
         * InSync without a stream, skipped by every later change). */
        pthread_mutex_lock(&w->lock);
        role = w->p[i].role;
        pthread_mutex_unlock(&w->lock);
        if (role == ROLE_TARGET ||
            (role != ROLE_INSYNC && (t->tmask & (1u << i)))) {
            repl_target_failed(w, i, err[i], off, len);
            continue;
        }
        rr = repl_fail_peer(w, i, err[i], rebuild, off, len);
        if (rr < 0 && r == 0)
            r = rr;
    }
    return r;
}

/* The in-sync replicas a data change reached, this node's included (a
 * diskless writer's node holds none).  It
 * may have passed check_begin with enough in sync and found fewer when its
 * peers were picked: one failed meanwhile (a change waits in before_data
 * while a failure is recorded), and a change sent to no peer has no failed
 * slot to say so. */
static unsigned end_copies(const struct repl_tok *t)
{
    unsigned copies = t->w->diskless ? 0 : 1;
    int bad[CVD_MAX_REPLICAS] = { 0 };

    for (unsigned k = 0; k < t->nslots; k++)
        if (t->slot[k].err)
            bad[t->slot[k].peer] = 1;
    for (unsigned i = 0; i < t->npeers; i++)
        copies += t->conn[i] && !(t->tmask & (1u << i)) && !bad[i];
    return copies;
}

static int mirror_end(void *arg, void *token, int local)
{
    struct cvd_repl_writer *w = arg;
    struct repl_tok *t = token;
    unsigned copies;
    int r;

    while (sem_wait(&t->done) != 0)
        ;
    copies = end_copies(t);
    for (unsigned i = 0; i < t->npeers; i++)
        if (t->conn[i])
            repl_conn_put(t->conn[i]);
    if (t->regions)
        end_regions(w, t);
    r = end_failures(w, t);
    if (r == 0 && data_op_type(t->type) && copies < w->min)
        r = cv_error(-EIO, "volume %s: a write reached %u of its replicas, "
                     "min-replicas is %u", w->volume, copies, w->min);
    if (r == 0 && local == 0 && t->type == CV_MIRROR_FLUSH)
        active_clear(w, t->flush_gen);
    tok_free(t);
    return r;
}

const struct cv_chain_mirror repl_writer_mirror_ops = {
    .begin = mirror_begin,
    .end = mirror_end,
};

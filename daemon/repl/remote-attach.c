/* Attaching a volume on a node outside its replica set (as Longhorn's
 * engine, DRBD's diskless node): the attach record and the epoch as for
 * any writer, OPEN on every in-sync replica, and a chain over them
 * (remote-store.c) instead of one in the data dir.  And the replay of an
 * unclean end, which such a writer makes from the first in-sync replica
 * since it has no content of its own (docs/replication.md, "Attaching
 * where no replica is"). */
#include "writer-internal.h"
#include "core/error.h"
#include "daemon.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned count_insync(const struct cvd_replica_set *s)
{
    unsigned n = 0;

    for (unsigned i = 0; i < s->n; i++)
        n += s->r[i].state == CVD_REPLICA_INSYNC;
    return n;
}

/* A clone's view holds its parent's layers too, whose blocks a READ of
 * the view does not tell apart (their format, so their key): not served
 * from here. */
static int is_clone(const struct repl_open_reply *o)
{
    for (uint32_t i = 0; i < o->nlayers; i++)
        if (o->layers[i].id >= CV_CHAIN_PARENT_ID)
            return 1;
    return 0;
}

/* A replica that was not in sync before this writer came: what it misses
 * is recorded on the in-sync replicas, not here (marks go to replicas).
 * This node's record of it says every region, so a resync from here
 * copies the whole head (a replica's node, which has the record, would
 * copy less); one that fails while this node writes is recorded here
 * from its first missed write on, as on any writer. */
static int miss_everything(struct cvd_repl_writer *w, unsigned out)
{
    int r;

    for (unsigned i = 0; i < w->npeers; i++)
        if ((out >> i & 1) && w->p[i].missed &&
            (r = repl_missed_mark(w->p[i].missed, 0,
                                  w->shape.raw_size)) < 0)
            return cv_error_prefix(r, "volume %s: replica %s: its record",
                                   w->volume, w->p[i].node);
    return 0;
}

/* The writer, its peers opened and the reference shape taken. */
static int remote_writer(struct cvd *d, const struct cvd_replica_set *s,
                         struct cvd_repl_writer *w,
                         struct cvd_replica_set *prev)
{
    unsigned out = 0;
    int r;

    w->diskless = 1;
    /* One region until the replicas say the size. */
    if ((r = repl_writer_take(w, s, prev)) < 0 ||
        (r = repl_regions_grow(w, REPL_REGION)) < 0)
        return r;
    if (repl_in_set(prev, d->cfg.node_name))
        return cv_error(-EAGAIN, "volume %s: node %s joined its replica "
                        "set meanwhile: attach again", w->volume,
                        d->cfg.node_name);
    if ((r = repl_load_peers(w, prev->n ? prev : s)) < 0)
        return r;
    for (unsigned i = 0; i < w->npeers; i++)
        out |= (w->p[i].role == ROLE_OUT) << i;
    repl_load_bits(w->active, w->active_bits, w->nregions);
    repl_open_peers(w);
    if (!w->shape.nlayers)
        return cv_error(-EIO, "volume %s: no in-sync replica answered "
                        "(node %s holds none of its own)", w->volume,
                        d->cfg.node_name);
    if (is_clone(&w->shape))
        return cv_error(-EREMOTE, "volume %s: a clone (it reads through its "
                        "parent's layers, which may be of another key) is "
                        "served only where a replica is", w->volume);
    if ((r = repl_regions_grow(w, w->shape.raw_size)) < 0)
        return r;
    repl_load_bits(w->active, w->active_bits, w->nregions);
    return miss_everything(w, out);
}

int cvd_repl_attach_remote(struct cvd *d, const char *volume,
                           const char *snapshot, struct cv_chain **chain,
                           struct cv_backend **store,
                           struct cvd_repl_writer **out)
{
    struct cvd_replica_set s, prev;
    struct cvd_repl_writer *w;
    struct cv_backend *b = NULL;
    struct cv_chain *c = NULL;
    int r;

    *chain = NULL;
    *store = NULL;
    *out = NULL;
    if (!d->repl || (r = repl_set_lookup(d, volume, &s)) <= 0)
        return d->repl ? r : 0;
    if (repl_in_set(&s, d->cfg.node_name))
        return 0;
    if (snapshot)
        return cv_error(-EREMOTE, "volume %s: node %s holds no replica of "
                        "it: its snapshots are served where a replica is",
                        volume, d->cfg.node_name);
    if (count_insync(&s) == 0)
        return cv_error(-EIO, "volume %s: no replica is in sync", volume);
    if (!(w = repl_writer_new(d, volume, NULL)))
        return cv_error(-ENOMEM, "volume %s: out of memory", volume);
    if ((r = remote_writer(d, &s, w, &prev)) < 0 ||
        (r = repl_remote_store_new(w, &b)) < 0 ||
        (r = cv_chain_wrap(b, w->shape.data_offset, &c)) < 0)
        goto fail;
    w->c = c;
    if (prev.last_writer[0] && !prev.clean &&
        (r = repl_remote_replay(w, prev.last_writer)) < 0)
        goto fail;
    repl_writer_publish(w);
    *chain = c;
    *store = b;
    *out = w;
    return 0;
fail:
    cv_chain_close(c);
    if (b) {
        repl_remote_store_detach(w);
        cv_backend_close(b);
    }
    repl_writer_abort(w);
    return r;
}

/* ---- the replay of an unclean end ------------------------------------ */

static int held_bit(const uint8_t *m, size_t i)
{
    return (m[i / 8] >> (i % 8)) & 1;
}

/* The head's own blocks of [off, off+len) as the first in-sync replica
 * has them, sent to every in-sync replica: held runs written, the others
 * punched (the same bytes where they are already). */
static int replay_data(struct cvd_repl_writer *w, void *buf, uint8_t *held,
                       uint64_t off, uint64_t len)
{
    size_t nblk = (size_t)(len / CV_CHAIN_BLOCK), b = 0, e;
    int r = repl_remote_read(w, repl_remote_head(w), buf, (size_t)len, off,
                             held);

    while (r == 0 && b < nblk) {
        struct cv_mirror_op op = { .layer = CV_CHAIN_TOP };
        int h = held_bit(held, b);

        for (e = b; e < nblk && held_bit(held, e) == h; e++)
            ;
        op.type = h ? CV_MIRROR_WRITE : CV_MIRROR_PUNCH;
        op.off = off + b * CV_CHAIN_BLOCK;
        op.len = (e - b) * CV_CHAIN_BLOCK;
        op.buf = h ? (char *)buf + b * CV_CHAIN_BLOCK : NULL;
        r = repl_remote_send(w, &op);
        b = e;
    }
    return r;
}

static int replay_header(struct cvd_repl_writer *w, void *buf, uint8_t *held,
                         uint64_t off, uint64_t end)
{
    struct cv_mirror_op op = { .type = CV_MIRROR_HEADER, .off = off,
                               .len = end - off, .buf = buf };
    int r = repl_remote_read(w, 0, buf, (size_t)(end - off), off, held);

    return r < 0 ? r : repl_remote_send(w, &op);
}

/* [off, off+len) in pieces of a region at most. */
static int replay_range(struct cvd_repl_writer *w, void *buf, uint8_t *held,
                        uint64_t off, uint64_t len)
{
    uint64_t doff = w->shape.data_offset, size = w->shape.raw_size;
    uint64_t end = off + len < size ? off + len : size;
    int r = 0;

    for (uint64_t at = off; at < end && r == 0;) {
        uint64_t stop = at - at % REPL_REGION + REPL_REGION;

        if (stop > end)
            stop = end;
        if (at < doff && stop > doff)
            stop = doff;
        memset(held, 0, REPL_REGION / CV_CHAIN_BLOCK / 8);
        r = at < doff ? replay_header(w, buf, held, at, stop)
                      : replay_data(w, buf, held, at, stop - at);
        at = stop;
    }
    return r;
}

/* Which regions: this node's activity log if it was the last writer
 * itself, else every region (the last writer's log is on the replicas,
 * which answer no question about it): a whole copy, once. */
int repl_remote_replay(struct cvd_repl_writer *w, const char *last)
{
    void *buf = malloc(REPL_REGION);
    uint8_t *held = malloc(REPL_REGION / CV_CHAIN_BLOCK / 8);
    uint64_t from = 0, off, len, n = 0;
    int r = 0;

    if (!buf || !held) {
        r = cv_error(-ENOMEM, "volume %s: out of memory", w->volume);
    } else if (repl_insync(w) < 2) {
        r = 0;                  /* one copy: nothing to make equal */
    } else if (strcmp(last, w->d->cfg.node_name)) {
        r = replay_range(w, buf, held, 0, w->shape.raw_size);
        n = (w->shape.raw_size + REPL_REGION - 1) / REPL_REGION;
    } else {
        while (r == 0 && repl_missed_next(w->active, from, &off, &len) == 0 &&
               len) {
            from = off + len;
            r = replay_range(w, buf, held, off, len);
            n += len / REPL_REGION;
        }
    }
    free(buf);
    free(held);
    if (r < 0)
        return cv_error_prefix(r, "volume %s: replaying what node %s left "
                               "unclean", w->volume, last);
    if (n)
        cvd_info("volume %s: node %s ended uncleanly: %llu regions copied "
                 "from replica %s to the other in-sync replicas", w->volume,
                 last, (unsigned long long)n, w->p[w->read_from].node);
    return 0;
}

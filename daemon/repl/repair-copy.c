/* A repair's copy, on the volume's writer, to one sync target
 * (repl-internal.h): what the target misses is read from the local chain
 * as ciphertext, as it is stored, and sent with repl_writer_target_write,
 * one piece (REPAIR_PIECE: whole regions) at a time under the writer's
 * range lock (a live write of the same blocks reaches the target after
 * the copy of them, so the copy never overwrites newer data with older)
 * and the export's shape lock (no snapshot or merge changes which layer
 * holds what between a piece's read and its send).
 *
 * Resync: the regions of the writer's own record of what the node
 * misses.  The replica's layers are ours (OPEN checked it), so only the
 * head can differ: a block the head holds is written into the replica's
 * head, a block it does not hold is punched there (it then shows what the
 * layers below show, which are equal).  So the layer files end up equal,
 * not only the view.
 *
 * Rebuild: the replica makes an empty chain of our layers (same ids); we
 * send the header, then each own layer's blocks, oldest layer first.
 *
 * Neither marks anything InSync: repl_writer_target_done does, after a
 * FLUSH (and COMMIT) the target answered.  The record of what the node
 * misses is cleared by target_done too (locally and on every InSync
 * replica), not region by region: a region cleared before the target
 * made it durable would be lost if the target lost power mid-copy. */
#include "daemon.h"
#include "core/error.h"
#include "export/export.h"
#include "log.h"
#include "repair-internal.h"
#include "store/backend.h"
#include "store/chain.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int repair_cancelled(const struct repair_job *j)
{
    if (j->stop && __atomic_load_n(j->stop, __ATOMIC_ACQUIRE))
        return cv_error(-ECANCELED, "volume %s: replica %s: copy stopped: "
                        "the daemon stops", j->volume, j->node);
    return 0;
}

static uint64_t min64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* The header bytes [off, end) (inside [0, data offset)). */
static int send_header(struct repair_job *j, uint64_t off, uint64_t end)
{
    size_t len = end - off;
    int r;

    r = cv_backend_pread(cv_chain_backend(j->c), j->buf, len, off);
    if (r < 0)
        return cv_error_prefix(r, "volume %s: reading its header at %llu",
                               j->volume, (unsigned long long)off);
    return repl_writer_target_write(j->w, j->node, REPL_HEADER_LAYER,
                                    j->buf, len, off);
}

/* Resync of [off, end) of the data area: the head's blocks written, the
 * rest punched. */
static int send_head(struct repair_job *j, uint64_t off, uint64_t end)
{
    uint64_t pos = off, run;
    int held, r;

    r = cv_chain_read(j->c, j->buf, end - off, off, CV_CHAIN_TOP, NULL,
                      NULL);
    if (r < 0)
        return r;
    while (pos < end) {
        held = cv_chain_layer_has(j->c, CV_CHAIN_TOP, pos, end - pos, &run);
        if (held < 0)
            return held;
        if (run == 0 || run > end - pos)
            return cv_error(-EIO, "volume %s: lookup at %llu answered a "
                            "run of %llu bytes", j->volume,
                            (unsigned long long)pos,
                            (unsigned long long)run);
        r = repl_writer_target_write(j->w, j->node, 0,
                                     held ? (char *)j->buf + (pos - off)
                                          : NULL, run, pos);
        if (r < 0)
            return r;
        pos += run;
    }
    return 0;
}

/* Locks region [off, end) of the image against writes and changes of
 * shape, for one piece of a copy. */
static void piece_lock(struct repair_job *j, uint64_t off, uint64_t end)
{
    cvd_export_shape_lock(j->e);
    repl_writer_range_lock(j->w, off, end - off);
}

static void piece_unlock(struct repair_job *j, uint64_t off, uint64_t end)
{
    repl_writer_range_unlock(j->w, off, end - off);
    cvd_export_shape_unlock(j->e);
}

/* One region of a resync: whatever of it is header and data. */
static int resync_region(struct repair_job *j, uint64_t off, uint64_t len)
{
    uint64_t doff = cv_chain_data_offset(j->c);
    uint64_t end = min64(off + len, cv_chain_size(j->c));
    int r = 0;

    if (off >= end)
        return 0;               /* past the end: shrunk meanwhile */
    piece_lock(j, off, end);
    if (off < doff)
        r = send_header(j, off, min64(end, doff));
    if (r == 0 && end > doff)
        r = send_head(j, off > doff ? off : doff, end);
    piece_unlock(j, off, end);
    return r;
}

int repair_finish(struct repair_job *j, int r, const char *what)
{
    if (r == 0) {
        repair_progress(j, 1);
        return repl_writer_target_done(j->w, j->node);
    }
    cv_error_prefix(r, "volume %s: replica %s: %s", j->volume, j->node, what);
    repl_writer_target_drop(j->w, j->node);
    return r;
}

int repair_resync(struct repair_job *j)
{
    struct repl_missed *m;
    uint64_t from = 0, off, len, o;
    int r;

    r = repl_writer_add_target(j->w, j->node, 0);
    if (r < 0)
        return r;
    m = repl_writer_missed(j->w, j->node);
    if (!m) {
        repl_writer_target_drop(j->w, j->node);
        return cv_error(-ENOENT, "volume %s: replica %s: no record of what "
                        "it misses here", j->volume, j->node);
    }
    j->total = repl_missed_bytes(m);
    j->done = 0;
    cvd_info("volume %s: replica %s: resync of %llu bytes begins",
             j->volume, j->node, (unsigned long long)j->total);
    repair_progress(j, 1);
    while ((r = repl_missed_next(m, from, &off, &len)) == 0) {
        for (o = off; o < off + len && r == 0; o += REPAIR_PIECE) {
            uint64_t n = min64(REPAIR_PIECE, off + len - o);

            r = repair_cancelled(j);
            if (r == 0)
                r = resync_region(j, o, n);
            j->done += n;
            repair_progress(j, 0);
        }
        if (r < 0)
            break;
        from = off + len;
    }
    if (r > 0)
        r = 0;                  /* no run left */
    return repair_finish(j, r, "resync");
}

/* Rebuild of layer id's own blocks in [off, end); above: the layer over
 * it (CV_CHAIN_TOP for the head), whose view underneath shows id's blocks
 * where id holds any. */
static int rebuild_region(struct repair_job *j, const struct
                          cv_chain_layer_info *l, unsigned above,
                          uint64_t off, uint64_t end)
{
    uint64_t pos = off, run;
    int held, r = 0;

    piece_lock(j, off, end);
    while (pos < end && r == 0) {
        held = cv_chain_layer_has(j->c, l->head ? CV_CHAIN_TOP : l->id,
                                  pos, end - pos, &run);
        if (held < 0 || run == 0 || run > end - pos) {
            r = held < 0 ? held
                         : cv_error(-EIO, "volume %s: layer %u at %llu: a "
                                    "run of %llu bytes", j->volume, l->id,
                                    (unsigned long long)pos,
                                    (unsigned long long)run);
            break;
        }
        if (held) {
            r = cv_chain_read(j->c, j->buf, run, pos, above, NULL, NULL);
            if (r == 0)
                r = repl_writer_target_write(j->w, j->node,
                                             l->head ? 0 : l->id, j->buf,
                                             run, pos);
            j->done += run;
        }
        pos += run;
    }
    piece_unlock(j, off, end);
    return r;
}

static int rebuild_layers(struct repair_job *j)
{
    struct cv_chain_layer_info *l = NULL;
    size_t n = 0, i;
    uint64_t doff = cv_chain_data_offset(j->c), size, off;
    unsigned above;
    int r;

    r = cv_chain_layers(j->c, &l, &n);
    if (r < 0)
        return r;
    j->total = doff;
    for (i = 0; i < n; i++)
        if (l[i].own)
            j->total += l[i].allocated;
    repair_progress(j, 1);
    for (off = 0; off < doff && r == 0; off += REPAIR_PIECE) {
        piece_lock(j, off, min64(off + REPAIR_PIECE, doff));
        r = send_header(j, off, min64(off + REPAIR_PIECE, doff));
        piece_unlock(j, off, min64(off + REPAIR_PIECE, doff));
        j->done = min64(off + REPAIR_PIECE, doff);
    }
    size = cv_chain_size(j->c);
    for (i = 0; i < n && r == 0; i++) {
        if (!l[i].own)
            continue;
        above = i + 1 < n && !l[i].head ? l[i + 1].id : CV_CHAIN_TOP;
        for (off = doff; off < size && r == 0; off += REPAIR_PIECE) {
            r = repair_cancelled(j);
            if (r == 0)
                r = rebuild_region(j, &l[i], above, off,
                               min64(off + REPAIR_PIECE, size));
            repair_progress(j, 0);
        }
    }
    free(l);
    return r;
}

int repair_rebuild(struct repair_job *j)
{
    int r;

    r = repl_writer_add_target(j->w, j->node, 1);
    if (r < 0)
        return cv_error_prefix(r, "volume %s: replica %s: rebuild",
                               j->volume, j->node);
    j->done = 0;
    cvd_info("volume %s: replica %s: rebuild begins", j->volume, j->node);
    r = rebuild_layers(j);
    if (r == 0)
        j->done = j->total;
    return repair_finish(j, r, "rebuild");
}

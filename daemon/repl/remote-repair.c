/* A resync run by a writer that holds no replica (remote-attach.c): the
 * same copy as repair-copy.c's, under the same locks (the export's shape
 * lock, the writer's range lock), but what the target misses is read from
 * an in-sync replica (REPL_READ of the head's own blocks, with which of
 * them it holds) instead of a local chain.  The replica's layers are the
 * others' (OPEN checked it), so only the head can differ: held blocks are
 * written into its head, the others punched, and its layer files end up
 * equal to the source's.  A rebuild needs every layer's blocks and is left
 * to a node holding a replica (repl_writer_add_target refuses it). */
#include "repair-internal.h"
#include "writer-internal.h"
#include "core/error.h"
#include "daemon.h"
#include "export/export.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int held_bit(const uint8_t *m, size_t i)
{
    return (m[i / 8] >> (i % 8)) & 1;
}

/* [off, end) of the header (inside one READ). */
static int copy_header(struct repair_job *j, uint8_t *held, uint64_t off,
                       uint64_t end)
{
    int r = repl_remote_read(j->w, 0, j->buf, (size_t)(end - off), off,
                             held);

    return r < 0 ? r : repl_writer_target_write(j->w, j->node,
                                                REPL_HEADER_LAYER, j->buf,
                                                (size_t)(end - off), off);
}

/* [off, end) of the data area (inside one READ): the head's own blocks. */
static int copy_head(struct repair_job *j, uint8_t *held, uint64_t off,
                     uint64_t end)
{
    size_t nblk = (size_t)((end - off) / CV_CHAIN_BLOCK), b = 0, e;
    int r = repl_remote_read(j->w, repl_remote_head(j->w), j->buf,
                             (size_t)(end - off), off, held);

    while (r == 0 && b < nblk) {
        int h = held_bit(held, b);

        for (e = b; e < nblk && held_bit(held, e) == h; e++)
            ;
        r = repl_writer_target_write(j->w, j->node, 0,
                                     h ? (char *)j->buf + b * CV_CHAIN_BLOCK
                                       : NULL,
                                     (e - b) * CV_CHAIN_BLOCK,
                                     off + b * CV_CHAIN_BLOCK);
        b = e;
    }
    return r;
}

static int copy_region(struct repair_job *j, uint8_t *held, uint64_t off,
                       uint64_t len)
{
    uint64_t doff = j->w->shape.data_offset;
    uint64_t end = off + len < j->w->shape.raw_size ? off + len
                                                    : j->w->shape.raw_size;
    int r = 0;

    if (off >= end)
        return 0;
    cvd_export_shape_lock(j->e);
    repl_writer_range_lock(j->w, off, end - off);
    memset(held, 0, REPAIR_PIECE / CV_CHAIN_BLOCK / 8);
    if (off < doff)
        r = copy_header(j, held, off, end < doff ? end : doff);
    memset(held, 0, REPAIR_PIECE / CV_CHAIN_BLOCK / 8);
    if (r == 0 && end > doff)
        r = copy_head(j, held, off > doff ? off : doff, end);
    repl_writer_range_unlock(j->w, off, end - off);
    cvd_export_shape_unlock(j->e);
    return r;
}

static int walk(struct repair_job *j, struct repl_missed *m, uint8_t *held)
{
    uint64_t from = 0, off, len;
    int r;

    while ((r = repl_missed_next(m, from, &off, &len)) == 0) {
        for (uint64_t o = off; o < off + len && r == 0; o += REPAIR_PIECE) {
            uint64_t n = off + len - o < REPAIR_PIECE ? off + len - o
                                                      : REPAIR_PIECE;

            r = repair_cancelled(j);
            if (r == 0)
                r = copy_region(j, held, o, n);
            j->done += n;
            repair_progress(j, 0);
        }
        if (r < 0)
            return r;
        from = off + len;
    }
    return r > 0 ? 0 : r;
}

int repl_remote_resync(struct repair_job *j)
{
    uint8_t *held = malloc(REPAIR_PIECE / CV_CHAIN_BLOCK / 8);
    struct repl_missed *m;
    int r;

    if (!held)
        return cv_error(-ENOMEM, "volume %s: out of memory", j->volume);
    if ((r = repl_writer_add_target(j->w, j->node, 0)) < 0) {
        free(held);
        return r;
    }
    if (!(m = repl_writer_missed(j->w, j->node))) {
        repl_writer_target_drop(j->w, j->node);
        free(held);
        return cv_error(-ENOENT, "volume %s: replica %s: no record of what "
                        "it misses here", j->volume, j->node);
    }
    j->total = repl_missed_bytes(m);
    j->done = 0;
    cvd_info("volume %s: replica %s: resync of %llu bytes from the in-sync "
             "replicas begins", j->volume, j->node,
             (unsigned long long)j->total);
    repair_progress(j, 1);
    r = walk(j, m, held);
    free(held);
    return repair_finish(j, r, "resync");
}

/* The data path's requests on a replica (repl-proto.h): each is the same
 * call on this node's chain that the writer's made on its own, at the
 * same point of the write stream; the chain's messages carry its path
 * (a full disk says where), and a failed call leaves the chain as it was
 * before (store/chain.h).  Run under the entry's shared hold with the
 * chain open (replica-table.c). */
#include "replica-internal.h"

#include "core/error.h"
#include "peer/peer.h"
#include "store/backend.h"
#include "store/chain.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int replica_write(struct replica *e, const struct repl_req *q)
{
    int r;

    if (q->layer == 0) {
        r = cv_chain_write(e->c, q->data, (size_t)q->len, q->off,
                           q->flags & CV_WRITE_FUA);
    } else {
        r = cv_chain_write_layer(e->c, q->layer, q->data, (size_t)q->len,
                                 q->off);
        if (r == 0 && (q->flags & CV_WRITE_FUA))
            r = cv_chain_sync_layer(e->c, q->layer);
    }
    if (r < 0)
        return replica_fail(e, r, "write of %llu bytes at %llu (layer %u)",
                            (unsigned long long)q->len,
                            (unsigned long long)q->off, q->layer);
    return 0;
}

int replica_punch(struct replica *e, const struct repl_req *q)
{
    int r = cv_chain_punch(e->c, q->off, q->len);

    if (r < 0)
        return replica_fail(e, r, "punch of %llu bytes at %llu",
                            (unsigned long long)q->len,
                            (unsigned long long)q->off);
    return 0;
}

int replica_flush(struct replica *e, const struct repl_req *q)
{
    int r = cv_chain_flush(e->c);

    (void)q;
    return r < 0 ? replica_fail(e, r, "flush") : 0;
}

int replica_header(struct replica *e, const struct repl_req *q)
{
    uint64_t end = cv_chain_data_offset(e->c);
    int r;

    if (q->off > end || q->len > end - q->off)
        return cv_error(-ERANGE, "volume %s: replica %s: header "
                        "write of %llu bytes at %llu: past the data offset "
                        "%llu", e->volume, replica_node(e),
                        (unsigned long long)q->len,
                        (unsigned long long)q->off, (unsigned long long)end);
    if (!q->len)
        return 0;
    r = cv_backend_pwrite(cv_chain_backend(e->c), q->data, (size_t)q->len,
                          q->off, 0);
    if (r < 0)
        return replica_fail(e, r, "header write of %llu bytes at %llu",
                            (unsigned long long)q->len,
                            (unsigned long long)q->off);
    return 0;
}

int replica_resize(struct replica *e, const struct repl_req *q)
{
    int r = cv_chain_resize(e->c, q->raw_size);

    if (r < 0)
        return replica_fail(e, r, "resize to %llu",
                            (unsigned long long)q->raw_size);
    return 0;
}

/* A snapshot replayed: the writer's chain gave its layer id q->id (when
 * it says), and so must ours, or the replicas' layers differ. */
static int snapshot(struct replica *e, const struct repl_req *q)
{
    unsigned id, above;
    int r;

    if ((r = cv_chain_snapshot(e->c, q->name, q->created)) < 0)
        return r;
    if (q->id && cv_chain_snapshot_layer(e->c, q->name, &id, &above) == 0 &&
        id != q->id)
        return cv_error(-ESTALE, "snapshot \"%s\" is layer %u here, %u on "
                        "the writer: the replica needs a rebuild", q->name,
                        id, q->id);
    return 0;
}

int replica_shape(struct replica *e, const struct repl_req *q)
{
    static const char *const names[] = {
        "?", "snapshot", "rollback", "mark merging", "drop layer",
        "drop parent", "sync layer", "data offset",
    };
    struct cv_chain *c = e->c;
    int r;

    switch (q->shape_op) {
    case REPL_SHAPE_SNAPSHOT: r = snapshot(e, q); break;
    case REPL_SHAPE_ROLLBACK: r = cv_chain_rollback(c, q->name); break;
    case REPL_SHAPE_MARK_MERGING: r = cv_chain_mark_merging(c, q->id); break;
    case REPL_SHAPE_DROP_LAYER: r = cv_chain_drop_layer(c, q->id); break;
    case REPL_SHAPE_DROP_PARENT: r = cv_chain_drop_parent(c); break;
    case REPL_SHAPE_SYNC_LAYER: r = cv_chain_sync_layer(c, q->id); break;
    case REPL_SHAPE_DATA_OFFSET:
        r = q->created < 0 ? cv_error(-EINVAL, "data offset %lld",
                                      (long long)q->created)
                           : cv_chain_set_data_offset(c,
                                                      (uint64_t)q->created);
        break;
    default:
        r = cv_error(-EBADMSG, "shape op %u", q->shape_op);
        break;
    }
    if (r < 0)
        return replica_fail(e, r, "%s (\"%s\", layer %u)",
                            names[q->shape_op <= 7 ? q->shape_op : 0],
                            q->name, q->id);
    return 0;
}

/* MARK and CLEAR: the record of q->name.  The writer marks whole
 * regions, so the limit is the image's end rounded up to one (a last,
 * partial region is marked whole).  A mark past it is refused (the record
 * would grow with it); a clear is cut to it. */
int replica_mark(struct replica *e, const struct repl_req *q)
{
    uint64_t size = cv_chain_size(e->c), len = q->len;
    uint64_t lim = (size + REPL_REGION - 1) / REPL_REGION * REPL_REGION;
    struct repl_missed *m;
    int r;

    if (q->type == REPL_MARK && (q->off > lim || len > lim - q->off))
        return cv_error(-ERANGE, "volume %s: replica %s: missed "
                        "region [%llu, +%llu) of node %s: past the end %llu",
                        e->volume, replica_node(e),
                        (unsigned long long)q->off, (unsigned long long)len,
                        q->name, (unsigned long long)lim);
    if (q->type == REPL_CLEAR && (q->off > lim || len > lim - q->off))
        len = q->off < lim ? lim - q->off : 0;
    if ((r = replica_record(e, q->name, &m)) < 0)
        return replica_fail(e, r, "the record of node %s", q->name);
    r = q->type == REPL_MARK ? repl_missed_mark(m, q->off, len)
                             : repl_missed_clear(m, q->off, len);
    if (r < 0)
        return replica_fail(e, r, "the record of node %s", q->name);
    return 0;
}

struct held_ctx {
    uint8_t *held;
};

static int held_run(void *arg, size_t buf_off, size_t len, int format)
{
    struct held_ctx *h = arg;

    if (format == CV_CHAIN_HOLE)
        return 0;
    for (size_t b = buf_off / CV_CHAIN_BLOCK;
         b < (buf_off + len) / CV_CHAIN_BLOCK; b++)
        h->held[b / 8] |= (uint8_t)(1u << (b % 8));
    return 0;
}

/* The answer: u32 nblocks | held bitmap | the held blocks' data. */
static int pack(const uint8_t *buf, const uint8_t *held, uint32_t nblk,
                struct cvd_peer_reply *reply)
{
    size_t maplen = (nblk + 7) / 8, n = 0, at;
    uint32_t be = htobe32(nblk);
    uint8_t *out;

    for (uint32_t b = 0; b < nblk; b++)
        n += (held[b / 8] >> (b % 8)) & 1;
    if (!(out = malloc(4 + maplen + n * CV_CHAIN_BLOCK)))
        return -ENOMEM;
    memcpy(out, &be, 4);
    memcpy(out + 4, held, maplen);
    at = 4 + maplen;
    for (uint32_t b = 0; b < nblk; b++)
        if ((held[b / 8] >> (b % 8)) & 1) {
            memcpy(out + at, buf + (size_t)b * CV_CHAIN_BLOCK,
                   CV_CHAIN_BLOCK);
            at += CV_CHAIN_BLOCK;
        }
    reply->data = out;
    reply->len = at;
    return 0;
}

int replica_read(struct replica *e, const struct repl_req *q,
                 struct cvd_peer_reply *reply)
{
    uint32_t nblk = (uint32_t)(q->len / CV_CHAIN_BLOCK);
    uint8_t *buf = malloc((size_t)q->len), *held = calloc(1, (nblk + 7) / 8);
    struct held_ctx h = { held };
    int r;

    if (!buf || !held) {
        r = cv_error(-ENOMEM, "out of memory");
    } else if (q->layer == 0 && q->off < cv_chain_data_offset(e->c)) {
        /* The header (a writer without a replica unlocks from it): all
         * of it is held, holes read as the zeros they are. */
        if (q->off + q->len > cv_chain_data_offset(e->c))
            r = cv_error(-ERANGE, "crosses the data offset %llu",
                         (unsigned long long)cv_chain_data_offset(e->c));
        else
            r = cv_backend_pread(cv_chain_backend(e->c), buf,
                                 (size_t)q->len, q->off);
        for (uint32_t b = 0; r == 0 && b < nblk; b++)
            held[b / 8] |= (uint8_t)(1u << (b % 8));
    } else if (q->layer == 0) {
        r = cv_chain_read(e->c, buf, (size_t)q->len, q->off, CV_CHAIN_TOP,
                          held_run, &h);
    } else {
        r = cv_chain_read_layer(e->c, q->layer, buf, (size_t)q->len, q->off,
                                held);
    }
    if (r == 0 && pack(buf, held, nblk, reply) < 0)
        r = cv_error(-ENOMEM, "out of memory");
    free(buf);
    free(held);
    if (r < 0)
        return replica_fail(e, r, "read of %llu bytes at %llu (layer %u)",
                            (unsigned long long)q->len,
                            (unsigned long long)q->off, q->layer);
    return 0;
}

/* The store a writer without a replica on its node serves the volume from
 * (docs/replication.md, "Attaching where no replica is"): a cv_backend
 * that a chain wraps (cv_chain_wrap).  Reads go to one in-sync replica
 * (REPL_READ of the head's view, the next in-sync one if it fails), with
 * the blocks it holds, so the chain reports the others as holes and the
 * image layer serves them as plaintext zeros, as on a replica's node
 * (backend.h, pread_held).  Writes, punches, header writes and flushes go
 * to every in-sync replica through the writer's mirror (writer-io.c), as
 * the changes of a local chain do, with no local change: nothing of the
 * volume is written here. */
#include "writer-internal.h"
#include "core/error.h"
#include "daemon.h"
#include "log.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK CV_BACKEND_BLOCK

struct repl_remote_store {
    struct cv_backend b;
    /* Every call holds it shared; a sync target's barrier exclusive. */
    pthread_rwlock_t barrier;
    struct cvd_repl_writer *w;          /* NULL once detached */
    uint64_t data_offset, size;
    char name[CVD_NAME_MAX + 32];
    char no_shape[300];
};

static struct repl_remote_store *rs_of(struct cv_backend *b)
{
    return (struct repl_remote_store *)b;
}

/* ---- reads ------------------------------------------------------------ */

static int bit(const uint8_t *m, size_t i)
{
    return (m[i / 8] >> (i % 8)) & 1;
}

/* READ's answer (u32 n | held bitmap | the held blocks) into buf and
 * held, checked against what was asked. */
static int unpack(const struct cvd_repl_writer *w, const uint8_t *resp,
                  size_t rlen, void *buf, size_t len, uint8_t *held)
{
    size_t nblk = len / BLOCK, maplen = (nblk + 7) / 8, n = 0, at;
    uint32_t be;

    if (rlen < 4 + maplen)
        return cv_error(-EBADMSG, "volume %s: a read's answer of %zu bytes",
                        w->volume, rlen);
    memcpy(&be, resp, 4);
    for (size_t b = 0; b < nblk; b++)
        n += bit(resp + 4, b);
    if (be32toh(be) != nblk || rlen != 4 + maplen + n * BLOCK)
        return cv_error(-EBADMSG, "volume %s: a read of %zu blocks answered "
                        "%u blocks in %zu bytes", w->volume, nblk,
                        be32toh(be), rlen);
    at = 4 + maplen;
    for (size_t b = 0; b < nblk; b++) {
        char *dst = (char *)buf + b * BLOCK;

        if (!bit(resp + 4, b)) {
            memset(dst, 0, BLOCK);
            continue;
        }
        memcpy(dst, resp + at, BLOCK);
        at += BLOCK;
        held[b / 8] |= (uint8_t)(1u << (b % 8));
    }
    return 0;
}

static int read_one(struct cvd_repl_writer *w, unsigned i, uint32_t layer,
                    void *buf, size_t len, uint64_t off, uint8_t *held)
{
    struct repl_req q = { .type = REPL_READ, .epoch = w->epoch,
                          .layer = layer, .off = off, .len = len };
    void *resp = NULL;
    size_t rlen = 0;
    int r;

    snprintf(q.volume, sizeof q.volume, "%s", w->volume);
    r = repl_peer_call(w, &w->p[i], &q, NULL, 0, &resp, &rlen);
    if (r == 0)
        r = unpack(w, resp, rlen, buf, len, held);
    free(resp);
    return r;
}

static int insync(struct cvd_repl_writer *w, unsigned i)
{
    int in;

    pthread_mutex_lock(&w->lock);
    in = w->p[i].role == ROLE_INSYNC;
    pthread_mutex_unlock(&w->lock);
    return in;
}

/* One piece (at most a READ's) from the first in-sync replica that
 * answers, beginning with the one the last read went to. */
static int read_piece(struct cvd_repl_writer *w, uint32_t layer, void *buf,
                      size_t len, uint64_t off, uint8_t *held)
{
    unsigned n = __atomic_load_n(&w->npeers, __ATOMIC_ACQUIRE);
    unsigned first = __atomic_load_n(&w->read_from, __ATOMIC_RELAXED);
    char why[400] = "";

    for (unsigned k = 0; k < n; k++) {
        unsigned i = (first + k) % n;

        if (!insync(w, i))
            continue;
        memset(held, 0, (len / BLOCK + 7) / 8);
        if (read_one(w, i, layer, buf, len, off, held) == 0) {
            if (i != first)
                __atomic_store_n(&w->read_from, i, __ATOMIC_RELAXED);
            return 0;
        }
        snprintf(why, sizeof why, "%s", cv_last_error());
        cvd_warn("%s (reading from the next in-sync replica)", why);
    }
    if (why[0])
        return cv_error(-EIO, "volume %s: no in-sync replica could be read: "
                        "%s", w->volume, why);
    return cv_error(-EIO, "volume %s: no replica in sync to read from",
                    w->volume);
}

int repl_remote_read(struct cvd_repl_writer *w, uint32_t layer, void *buf,
                     size_t len, uint64_t off, uint8_t *held)
{
    int r = 0;

    if (off % BLOCK || len % BLOCK)
        return cv_error(-EINVAL, "volume %s: read of %zu bytes at %llu: not "
                        "whole blocks", w->volume, len,
                        (unsigned long long)off);
    /* Pieces of a READ's size are whole bytes of the bitmap. */
    for (size_t at = 0; at < len && r == 0; at += REPL_READ_MAX) {
        size_t n = len - at < REPL_READ_MAX ? len - at : REPL_READ_MAX;

        r = read_piece(w, layer, (char *)buf + at, n, off + at,
                       held + at / BLOCK / 8);
    }
    return r;
}

/* [off, off+len) of the raw image, the header's part and the data's part
 * read apart (a replica reads its header from another file); the header
 * is held throughout. */
static int rs_read_held(struct repl_remote_store *rs, void *buf, size_t len,
                        uint64_t off, uint8_t *held)
{
    uint64_t doff = rs->data_offset;
    size_t h = off < doff ? (size_t)(doff - off < len ? doff - off : len) : 0;
    size_t nblk = len / BLOCK;
    uint8_t *part = NULL;
    int r = 0;

    if (!rs->w)
        return cv_error(-EIO, "%s: detached", rs->name);
    if (h == 0)
        return repl_remote_read(rs->w, 0, buf, len, off, held);
    if (!(part = calloc(1, nblk / 8 + 1)))
        return cv_error(-ENOMEM, "%s: out of memory", rs->name);
    r = repl_remote_read(rs->w, 0, buf, h, off, part);
    for (size_t b = 0; b < h / BLOCK; b++)
        held[b / 8] |= (uint8_t)(1u << (b % 8));
    if (r == 0 && len > h) {
        memset(part, 0, nblk / 8 + 1);
        r = repl_remote_read(rs->w, 0, (char *)buf + h, len - h, off + h,
                             part);
        for (size_t b = 0; r == 0 && b < (len - h) / BLOCK; b++)
            if (bit(part, b))
                held[(h / BLOCK + b) / 8] |=
                    (uint8_t)(1u << ((h / BLOCK + b) % 8));
    }
    free(part);
    return r;
}

static int rs_pread_held(struct cv_backend *b, void *buf, size_t len,
                         uint64_t off, uint8_t *held)
{
    struct repl_remote_store *rs = rs_of(b);
    int r;

    pthread_rwlock_rdlock(&rs->barrier);
    r = rs_read_held(rs, buf, len, off, held);
    pthread_rwlock_unlock(&rs->barrier);
    return r;
}

/* Byte-granular (libcryptsetup reads the header so): whole blocks read,
 * the part asked for copied out. */
static int rs_pread(struct cv_backend *b, void *buf, size_t len,
                    uint64_t off)
{
    struct repl_remote_store *rs = rs_of(b);
    uint64_t a = off / BLOCK * BLOCK;
    uint64_t e = (off + len + BLOCK - 1) / BLOCK * BLOCK;
    char *bounce = malloc((size_t)(e - a));
    uint8_t *held = calloc(1, (size_t)((e - a) / BLOCK / 8 + 1));
    int r = -ENOMEM;

    if (bounce && held) {
        pthread_rwlock_rdlock(&rs->barrier);
        r = rs_read_held(rs, bounce, (size_t)(e - a), a, held);
        pthread_rwlock_unlock(&rs->barrier);
    } else {
        cv_error(r, "%s: out of memory", rs->name);
    }
    if (r == 0)
        memcpy(buf, bounce + (off - a), len);
    free(bounce);
    free(held);
    return r;
}

/* ---- changes ---------------------------------------------------------- */

int repl_remote_send(struct cvd_repl_writer *w, const struct cv_mirror_op *op)
{
    void *token = NULL;
    int r = repl_writer_mirror_ops.begin(w, op, &token);

    /* Nothing to do here: the change is made where the replicas are. */
    return r < 0 ? r : repl_writer_mirror_ops.end(w, token, 0);
}

/* Whole blocks: a replica refuses anything else, which would cost it its
 * place in the set. */
static int whole(struct repl_remote_store *rs, const char *what,
                 uint64_t off, uint64_t len)
{
    if (off % BLOCK || len % BLOCK)
        return cv_error(-EINVAL, "%s: %s of %llu bytes at %llu: not whole "
                        "%u-byte blocks", rs->name, what,
                        (unsigned long long)len, (unsigned long long)off,
                        BLOCK);
    return 0;
}

/* The header's part of [off, off+len) as a HEADER (buf NULL: zeros), the
 * data's as data (a WRITE or a PUNCH). */
static int rs_change(struct repl_remote_store *rs, enum cv_mirror_type type,
                     const void *buf, uint64_t len, uint64_t off,
                     unsigned flags)
{
    uint64_t doff = rs->data_offset;
    uint64_t h = off < doff ? (doff - off < len ? doff - off : len) : 0;
    struct cv_mirror_op op = { .type = CV_MIRROR_HEADER, .off = off,
                               .len = h, .buf = buf };
    int r = 0;

    pthread_rwlock_rdlock(&rs->barrier);
    if (!rs->w)
        r = cv_error(-EIO, "%s: detached", rs->name);
    if (r == 0 && h)
        r = repl_remote_send(rs->w, &op);
    if (r == 0 && len > h &&
        (r = whole(rs, type == CV_MIRROR_WRITE ? "write" : "punch", off + h,
                   len - h)) == 0) {
        memset(&op, 0, sizeof op);
        op.type = type;
        op.layer = CV_CHAIN_TOP;
        op.flags = flags;
        op.off = off + h;
        op.len = len - h;
        op.buf = buf ? (const char *)buf + h : NULL;
        r = repl_remote_send(rs->w, &op);
    }
    pthread_rwlock_unlock(&rs->barrier);
    return r;
}

static int rs_pwrite(struct cv_backend *b, const void *buf, size_t len,
                     uint64_t off, unsigned flags)
{
    return rs_change(rs_of(b), CV_MIRROR_WRITE, buf, len, off, flags);
}

static int rs_discard(struct cv_backend *b, uint64_t off, uint64_t len)
{
    return rs_change(rs_of(b), CV_MIRROR_PUNCH, NULL, len, off, 0);
}

static int rs_flush(struct cv_backend *b)
{
    struct repl_remote_store *rs = rs_of(b);
    struct cv_mirror_op op = { .type = CV_MIRROR_FLUSH };
    int r = 0;

    pthread_rwlock_rdlock(&rs->barrier);
    /* Detached: every write was answered by the replicas, and the detach
     * flushed them. */
    if (rs->w && repl_insync(rs->w) == 0)
        r = cv_error(-EIO, "volume %s: no replica in sync to make it "
                     "durable", rs->w->volume);
    else if (rs->w)
        r = repl_remote_send(rs->w, &op);
    pthread_rwlock_unlock(&rs->barrier);
    return r;
}

static int rs_get_size(struct cv_backend *b, uint64_t *size)
{
    *size = rs_of(b)->size;
    return 0;
}

static int rs_resize(struct cv_backend *b, uint64_t size)
{
    (void)size;
    return cv_error(-ENOTSUP, "%s", rs_of(b)->no_shape);
}

static void rs_close(struct cv_backend *b)
{
    struct repl_remote_store *rs = rs_of(b);

    pthread_rwlock_destroy(&rs->barrier);
    free(rs);
}

static const struct cv_backend_ops remote_ops = {
    .kind = "replicas",
    .pread = rs_pread,
    .pwrite = rs_pwrite,
    .flush = rs_flush,
    .discard = rs_discard,
    .get_size = rs_get_size,
    .resize = rs_resize,
    .close = rs_close,
    .pread_held = rs_pread_held,
};

/* "n1 or n2": where the volume's shape can change. */
static void insync_nodes(struct cvd_repl_writer *w, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (unsigned i = 0; i < w->npeers && used < len; i++)
        if (w->p[i].role == ROLE_INSYNC)
            used += (size_t)snprintf(buf + used, len - used, "%s%s",
                                     used ? " or " : "", w->p[i].node);
}

int repl_remote_store_new(struct cvd_repl_writer *w, struct cv_backend **out)
{
    struct repl_remote_store *rs = calloc(1, sizeof *rs);
    char nodes[128];

    if (!rs)
        return cv_error(-ENOMEM, "volume %s: out of memory", w->volume);
    snprintf(rs->name, sizeof rs->name, "volume %s (its replicas)",
             w->volume);
    /* cv_backend_close frees the name. */
    if (!(rs->b.name = strdup(rs->name))) {
        free(rs);
        return cv_error(-ENOMEM, "volume %s: out of memory", w->volume);
    }
    rs->b.ops = &remote_ops;
    rs->b.no_shape = rs->no_shape;
    insync_nodes(w, nodes, sizeof nodes);
    /* The callers name the volume and the change. */
    snprintf(rs->no_shape, sizeof rs->no_shape, "attached on node %s, "
             "which holds no replica of it: snapshots, rollback, merges, "
             "flatten and resize are done while it is attached on a node "
             "holding one (%s), or detached", w->d->cfg.node_name, nodes);
    pthread_rwlock_init(&rs->barrier, NULL);
    rs->w = w;
    rs->data_offset = w->shape.data_offset;
    rs->size = w->shape.raw_size;
    w->store = rs;
    *out = &rs->b;
    return 0;
}

void repl_remote_store_detach(struct cvd_repl_writer *w)
{
    struct repl_remote_store *rs = w->store;

    if (!rs)
        return;
    pthread_rwlock_wrlock(&rs->barrier);
    rs->w = NULL;
    pthread_rwlock_unlock(&rs->barrier);
    w->store = NULL;
}

void repl_remote_barrier(struct cvd_repl_writer *w)
{
    if (!w->store)
        return;
    pthread_rwlock_wrlock(&w->store->barrier);
    pthread_rwlock_unlock(&w->store->barrier);
}

int repl_remote_same_shape(const struct repl_open_reply *ref,
                           const struct repl_open_reply *o)
{
    if (o->data_offset != ref->data_offset ||
        o->raw_size != ref->raw_size || o->nlayers != ref->nlayers)
        return 0;
    for (uint32_t i = 0; i < o->nlayers; i++)
        if (o->layers[i].id != ref->layers[i].id ||
            strcmp(o->layers[i].snapshot, ref->layers[i].snapshot))
            return 0;
    return 1;
}

uint32_t repl_remote_head(const struct cvd_repl_writer *w)
{
    return w->shape.nlayers ? w->shape.layers[w->shape.nlayers - 1].id : 0;
}

/* A volume's bytes as a chain of layers (DESIGN.md, "Volumes, snapshots,
 * clones"; the layout and its bounds: docs/store.md).
 *
 * A chain is a directory: a manifest ("chain"), the volume's LUKS header
 * ("header": bytes [0, data offset) of the raw image) and layer files
 * ("layer-NNNNNN"), oldest first, the newest being the writable head.
 * Layer files are sparse and image-shaped: raw byte X of the volume (X at
 * or past the data offset) is byte X of a layer file, so a single-file
 * image becomes a chain of one layer without moving a byte.  Layers hold
 * ciphertext only; each knows its format, that is which volume's header
 * (and so which volume key) decrypts it: 0 is the chain's own header,
 * 1.. the headers of the own-format ancestors a clone reads through.
 *
 * A read takes each CV_CHAIN_BLOCK from the newest layer holding it;
 * blocks no layer holds read as zeros (and the image layer above serves
 * them as plaintext zeros, without decrypting).  Which layer holds what is
 * what the file system says (SEEK_DATA/SEEK_HOLE), read once at open into
 * an in-memory map and kept as the head is written: memory grows with the
 * data a chain holds, not with its size (docs/store.md).
 *
 * Offsets here are raw image offsets, as in the LUKS header: the data
 * offset must be a multiple of CV_CHAIN_BLOCK.
 *
 * Every function is thread-safe.  Reads and writes run in parallel; the
 * changes of shape (a snapshot, a merged layer removed, a parent dropped)
 * wait for the I/O in flight and take microseconds to milliseconds. */
#ifndef CRYPTVOL_CHAIN_H
#define CRYPTVOL_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#define CV_CHAIN_BLOCK 4096u
/* Layers of one chain, parents' included. */
#define CV_CHAIN_MAX_LAYERS 256
/* Own-format ancestors + 1. */
#define CV_CHAIN_MAX_FORMATS 8
#define CV_CHAIN_NAME_MAX 64
/* The ids of a parent's layers in a clone's chain (own layers' ids are
 * their file numbers, below it): unique in one open chain, not stable
 * across opens. */
#define CV_CHAIN_PARENT_ID 0x40000000u

struct cv_backend;
struct cv_chain;

/* Where a clone reads through: the snapshot `snapshot` of the sibling
 * chain directory `volume` (same parent directory).  own_format: the
 * clone has its own header and key, so the parent's layers are of another
 * format than the clone's; else the clone's header is a copy of the
 * parent's (same volume key) and the parent's layers keep their format. */
struct cv_chain_parent {
    const char *volume;
    const char *snapshot;
    int own_format;
};

/* Makes a new chain at dir (which must not exist): a header of
 * data_offset bytes (holes), an empty head of raw_size bytes, the
 * manifest.  Everything in dir is synced, and dir itself; the directory
 * holding dir is not (the caller renames dir into place and syncs that). */
int cv_chain_create(const char *dir, uint64_t data_offset, uint64_t raw_size,
                    const struct cv_chain_parent *parent);

/* Makes the single-file image at image (a raw LUKS image whose header
 * ends at data_offset; 0 for a raw plaintext file) the one layer of a new
 * chain at dir, without copying its data: the header is copied out and
 * punched from the layer.  Crash-safe: after a cut at any point, calling
 * it again finishes it (image then may be gone: it is dir's layer). */
int cv_chain_adopt_image(const char *image, const char *dir,
                         uint64_t data_offset);

/* Removes the chain's files and dir, syncing the directory holding it.
 * A missing dir is not an error. */
int cv_chain_remove(const char *dir);

#define CV_CHAIN_READONLY 1u

/* Opens the chain at dir: with snapshot NULL its head (writable unless
 * CV_CHAIN_READONLY), else the read-only view of that snapshot.  The
 * parents' layers are found through their manifests, read now.  Layer
 * files listed nowhere (a snapshot cut short) are removed, and a merge or
 * flatten a crash interrupted is left for cv_chain_job to report. */
int cv_chain_open(const char *dir, const char *snapshot, unsigned flags,
                  struct cv_chain **out);
/* A chain of one layer over an existing store b (a raw image file that
 * cryptsetup made): every block is held (no map: raw images read as
 * cryptsetup reads them), the header is b's own first bytes, no
 * snapshots.  b stays the caller's. */
int cv_chain_wrap(struct cv_backend *b, uint64_t data_offset,
                  struct cv_chain **out);
void cv_chain_close(struct cv_chain *c);

/* dir, or the wrapped store's name: for messages. */
const char *cv_chain_name(const struct cv_chain *c);
int cv_chain_readonly(const struct cv_chain *c);
uint64_t cv_chain_data_offset(const struct cv_chain *c);
/* After a format (the header's size is known only then).  Layers are not
 * touched; the header file is cut to the new size. */
int cv_chain_set_data_offset(struct cv_chain *c, uint64_t data_offset);

/* The raw image as one store, for libcryptsetup and whole-image copies:
 * [0, data offset) is the header (of format 0), the rest the chain's
 * view.  Writes go to the header or the head; its size is the head's and
 * resize changes the head's.  Valid until cv_chain_close. */
struct cv_backend *cv_chain_backend(struct cv_chain *c);

/* Formats: how many (1 for a chain without an own-format ancestor), and
 * for each the name of the volume whose header it is ("" for format 0,
 * the chain's own) and that header as a read-only store (for unlocking;
 * format 0's is cv_chain_backend).  Valid until cv_chain_close. */
unsigned cv_chain_formats(const struct cv_chain *c);
const char *cv_chain_format_volume(const struct cv_chain *c, unsigned fmt);
struct cv_backend *cv_chain_format_header(struct cv_chain *c, unsigned fmt);

/* Reads raw [off, off+len) of the view (off and len whole blocks, inside
 * the data area), every run from the newest layer holding it, holes as
 * zeros; then calls run for each run, in order, with where it is in buf
 * and its format (CV_CHAIN_HOLE for blocks no layer holds), so the caller
 * can decrypt each with its key.  The view is one consistent state: no
 * change of shape happens between the reads and the callbacks.  below, if
 * not CV_CHAIN_TOP, reads the view under layer id below (what that layer
 * lets show through). */
#define CV_CHAIN_HOLE (-1)
#define CV_CHAIN_TOP 0u
typedef int (*cv_chain_run_fn)(void *arg, size_t buf_off, size_t len,
                               int format);
int cv_chain_read(struct cv_chain *c, void *buf, size_t len, uint64_t off,
                  unsigned below, cv_chain_run_fn run, void *arg);

/* cv_chain_read for a caller that transforms what it reads (decrypts):
 * xf(arg, dst, src, n, buf_off, format) must write n bytes at dst made from
 * the n bytes at src, for each run in order (src == dst: in place; holes
 * come as zeros with format CV_CHAIN_HOLE, in place).  On a wrapped store
 * that allows it (backend.h, pread_xform) src is the store's own memory,
 * which saves a copy; else runs are read into buf and transformed there. */
typedef int (*cv_chain_xform_fn)(void *arg, void *dst, const void *src,
                                 size_t n, size_t buf_off, int format);
int cv_chain_read_xform(struct cv_chain *c, void *buf, size_t len,
                        uint64_t off, unsigned below, cv_chain_xform_fn xf,
                        void *arg);
/* cv_chain_write of what xf (backend.h) makes of buf, as format 0's
 * data (encrypts): on a wrapped store that allows it straight into the
 * store's memory, else into a scratch buffer (core/scratch.h) that is
 * then written, the transform running before the chain's lock is taken.
 * buf is not changed. */
int cv_chain_write_xform(struct cv_chain *c, const void *buf, size_t len,
                         uint64_t off, unsigned flags, cv_xform_fn xf,
                         void *arg);

/* flags: CV_WRITE_FUA (backend.h).  Whole blocks, or the caller has made
 * sure the rest of each block it touches is already in the head (a block
 * the head gets partly written would show zeros where it was not). */
int cv_chain_write(struct cv_chain *c, const void *buf, size_t len,
                   uint64_t off, unsigned flags);
/* Deallocates whole blocks of the head: they fall through to the layers
 * below (or read as holes). */
int cv_chain_punch(struct cv_chain *c, uint64_t off, uint64_t len);
/* Durable: the head, and the header. */
int cv_chain_flush(struct cv_chain *c);
/* The head's size changes to raw_size (grow or shrink); lower layers are
 * not touched (past their end they hold nothing). */
int cv_chain_resize(struct cv_chain *c, uint64_t raw_size);
uint64_t cv_chain_size(const struct cv_chain *c);

/* Where data is, for BLOCK_STATUS, diffs and copies: which layer (by id,
 * CV_CHAIN_HOLE if none) holds the block at off in the view under below
 * (CV_CHAIN_TOP: the whole view), its format, and in *run how many bytes
 * from off have the same answer (at most len; whole blocks). */
int cv_chain_lookup(struct cv_chain *c, uint64_t off, uint64_t len,
                    unsigned below, uint64_t *run, int *format);
/* 1 if layer id holds the block at off (with *run bytes of the same
 * answer, at most len), 0 if not.  id CV_CHAIN_TOP: the head. */
int cv_chain_layer_has(struct cv_chain *c, unsigned id, uint64_t off,
                       uint64_t len, uint64_t *run);
/* Writes into own layer id (CV_CHAIN_TOP or the head's id: the head).
 * For the image layer's merge and flatten, which fill a layer with what
 * showed through it from below, which changes no view, also of a
 * snapshot layer.  Whole blocks. */
int cv_chain_write_layer(struct cv_chain *c, unsigned id, const void *buf,
                         size_t len, uint64_t off);
int cv_chain_sync_layer(struct cv_chain *c, unsigned id);

/* The chain's layers, oldest first (parents' included), as listed now. */
struct cv_chain_layer_info {
    unsigned id;                /* stable: the file's number */
    int format;
    int own;                    /* in this chain's directory, not a parent's */
    int head;
    char snapshot[CV_CHAIN_NAME_MAX + 1];   /* "" for the head, a parent's */
    int64_t created;            /* seconds since the epoch */
    uint64_t allocated;         /* bytes it holds */
    enum { CV_LAYER_READY, CV_LAYER_MERGING } state;
};
/* *out malloc'ed. */
int cv_chain_layers(struct cv_chain *c, struct cv_chain_layer_info **out,
                    size_t *n);
/* This chain's parent, if any (strings point into the chain). */
int cv_chain_parent(const struct cv_chain *c, struct cv_chain_parent *out);

/* Changes of shape.  Each is durable when it returns (the manifest is
 * replaced by a rename and its directory synced) and all or nothing
 * across a crash.  None works on a read-only view or a wrapped store.
 *
 * snapshot: the head is synced and becomes the snapshot's layer; a new
 * empty head takes its place.  Writes wait while it runs (the sync and
 * two small file creations).  -EEXIST if the name is taken. */
int cv_chain_snapshot(struct cv_chain *c, const char *name, int64_t created);
/* The id of the layer of snapshot name and of the layer above it (the
 * head or the next snapshot's); -ENOENT if there is no such snapshot. */
int cv_chain_snapshot_layer(struct cv_chain *c, const char *name,
                            unsigned *id, unsigned *above);
/* Deleting a snapshot: mark_merging records that layer id's blocks are
 * being copied into the layer above (its snapshot is gone for users from
 * now on, and a crash resumes the copy); drop_layer then removes it from
 * the manifest and deletes its file, once the caller has copied and
 * synced.  -EBUSY if it is not a snapshot layer of this chain. */
int cv_chain_mark_merging(struct cv_chain *c, unsigned id);
int cv_chain_drop_layer(struct cv_chain *c, unsigned id);
/* Rollback: the head is replaced by an empty one on top of snapshot
 * name's layer, which must be the newest snapshot (-EBUSY naming the
 * newer ones otherwise). */
int cv_chain_rollback(struct cv_chain *c, const char *name);
/* Flatten: the chain's oldest own layer must hold every block the
 * parents' layers held (the caller copied them); the parents' layers and
 * formats leave the chain and the manifest names no parent. */
int cv_chain_drop_parent(struct cv_chain *c);
/* The oldest own layer's id (where flatten copies to). */
unsigned cv_chain_bottom(const struct cv_chain *c);

/* ---- The mirror (replication: daemon/repl/, docs/replication.md) ----
 *
 * A chain with a mirror hands every change it makes, with its bytes
 * (ciphertext), to the mirror at the point where it makes it locally, under
 * the same locks: writes and punches under the shared hold (so concurrent
 * writes are mirrored concurrently), changes of shape, resize and the data
 * offset under the exclusive hold (so every write before a change is
 * answered before it is sent, and no write after it is sent before it).
 * A replica that replays the ops in the order they were begun has the same
 * layers with the same ids.
 *
 * begin starts sending op (it must not wait for the answer) and returns
 * a token for end, or a negative errno: then the change is not made and
 * fails with it (end is not called).  The local change then runs, in
 * parallel with the remote ones; end(token, local) gets its result (0 or a
 * negative errno), waits for the remote answers and returns what the
 * change returns: local if it failed, else 0 or a negative errno that
 * fails the change although it was made locally.  op is read by begin
 * only; the bytes it points to (buf, name) stay valid until end returns,
 * so a transport may send them from where they are.
 *
 * Shape ops are begun after the change's checks passed, so a replica in
 * the same state makes the same change. */
enum cv_mirror_type {
    CV_MIRROR_WRITE = 1,    /* layer (0: the head), flags, off, buf, len */
    CV_MIRROR_PUNCH,        /* off, len: the head's blocks */
    CV_MIRROR_HEADER,       /* off, buf, len inside [0, data offset); buf
                             * NULL: zeros (a discard of the header) */
    CV_MIRROR_RESIZE,       /* size: the head's new raw size */
    CV_MIRROR_FLUSH,        /* head and header durable */
    CV_MIRROR_SHAPE,        /* shape below */
};
/* The same numbers as repl-proto.h's enum repl_shape_op. */
enum cv_mirror_shape {
    CV_SHAPE_SNAPSHOT = 1,      /* name, created */
    CV_SHAPE_ROLLBACK = 2,      /* name */
    CV_SHAPE_MARK_MERGING = 3,  /* id */
    CV_SHAPE_DROP_LAYER = 4,    /* id */
    CV_SHAPE_DROP_PARENT = 5,
    CV_SHAPE_SYNC_LAYER = 6,    /* id */
    CV_SHAPE_DATA_OFFSET = 7,   /* size: the new data offset */
};
struct cv_mirror_op {
    enum cv_mirror_type type;
    enum cv_mirror_shape shape;
    unsigned layer, flags, id;
    uint64_t off, len, size;
    const void *buf;
    const char *name;
    int64_t created;
};
struct cv_chain_mirror {
    int (*begin)(void *arg, const struct cv_mirror_op *op, void **token);
    int (*end)(void *arg, void *token, int local);
    void *arg;
};
/* Sets (m copied) or with m NULL removes c's mirror, waiting for the I/O
 * in flight.  -ENOTSUP on a wrapped store, -EROFS on a read-only view. */
int cv_chain_set_mirror(struct cv_chain *c, const struct cv_chain_mirror *m);

/* ---- Rebuilding a replica (daemon/repl/replica-*.c) ----
 *
 * A replica rebuilt from its writer must have the writer's layers with the
 * same ids, so the shape changes replayed afterwards give the same ids
 * too.  create_layers makes a new chain at dir (which must not exist) of
 * n empty layers, oldest first, with exactly these ids (increasing, below
 * CV_CHAIN_PARENT_ID), the last being the head (snapshot ""), each of
 * raw_size bytes, a header of data_offset bytes (holes), and, when parent
 * is not NULL, the parent it names (not checked: the open checks it).
 * Everything in dir is synced, and dir; the directory holding it is not
 * (the caller renames dir into place and syncs that). */
struct cv_chain_new_layer {
    unsigned id;
    int64_t created;
    const char *snapshot;       /* "" for the head */
};
int cv_chain_create_layers(const char *dir, uint64_t data_offset,
                           uint64_t raw_size,
                           const struct cv_chain_new_layer *layers, size_t n,
                           const struct cv_chain_parent *parent);
/* The blocks of raw [off, off+len) (whole blocks, inside the data area)
 * that own layer id holds (CV_CHAIN_TOP: the head): their bits set in held
 * (one per block, LSB first, (len / CV_CHAIN_BLOCK + 7) / 8 bytes, zeroed
 * first), their data at their place in buf, zeros elsewhere. */
int cv_chain_read_layer(struct cv_chain *c, unsigned id, void *buf,
                        size_t len, uint64_t off, uint8_t *held);

#endif

/* The layer chain's insides (chain.h says what it does; docs/store.md the
 * layout and bounds).  Shared by lib/store/chain*.c only. */
#ifndef CRYPTVOL_CHAIN_INTERNAL_H
#define CRYPTVOL_CHAIN_INTERNAL_H

#include "backend.h"
#include "chain.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define CHAIN_MANIFEST "chain"
#define CHAIN_MANIFEST_TMP "chain.tmp"
#define CHAIN_HEADER "header"
#define CHAIN_LAYER_FMT "layer-%06u"
#define CHAIN_LAYER_NAME_MAX 32
/* A manifest is small (256 layers of ~80 bytes); anything far larger is
 * not one of ours. */
#define CHAIN_MANIFEST_MAX (1u << 20)

/* ---- chain-map.c: which 4 KiB blocks a layer holds ----
 *
 * Two levels: one pointer per 128 MiB region (a leaf of 4 KiB = 32768
 * bits), the leaf allocated when the layer first holds data there.  Bits
 * and leaf pointers are read and changed with atomics, so lookups run
 * while writers set bits; only a resize (under the chain's exclusive
 * lock) replaces the pointer array. */
#define MAP_LEAF_BYTES 4096u
#define MAP_LEAF_BITS (MAP_LEAF_BYTES * 8u)
#define MAP_LEAF_WORDS (MAP_LEAF_BYTES / 8u)
#define MAP_REGION ((uint64_t)MAP_LEAF_BITS * CV_CHAIN_BLOCK)

struct chain_map {
    uint64_t nblocks;           /* blocks the layer's size covers */
    size_t nleaves;
    uint64_t **leaves;          /* NULL: the region holds nothing */
};

int chain_map_init(struct chain_map *m, uint64_t size);
void chain_map_free(struct chain_map *m);
/* To size bytes: bits past the new end are dropped. */
int chain_map_resize(struct chain_map *m, uint64_t size);
/* Allocates the leaves [blk, blk+n) needs, so chain_map_set cannot fail
 * after the data is written. */
int chain_map_reserve(struct chain_map *m, uint64_t blk, uint64_t n);
/* Leaves must be reserved. */
void chain_map_set(struct chain_map *m, uint64_t blk, uint64_t n);
void chain_map_clear(struct chain_map *m, uint64_t blk, uint64_t n);
int chain_map_test(const struct chain_map *m, uint64_t blk);
/* How many blocks from blk (at most n) have the bit equal to value. */
uint64_t chain_map_run(const struct chain_map *m, uint64_t blk, uint64_t n,
                       int value);
/* Blocks held at or past blk. */
uint64_t chain_map_count(const struct chain_map *m, uint64_t blk);
/* Sets the bits from what the file system says fd holds in
 * [from, size): SEEK_DATA/SEEK_HOLE.  Returns 0 or -errno (no message). */
int chain_map_scan(struct chain_map *m, int fd, uint64_t from, uint64_t to);
/* Bytes of memory the map takes (for the memory bound's measure). */
size_t chain_map_memory(const struct chain_map *m);

/* ---- chain-manifest.c: the "chain" file ---- */
struct chain_manifest_layer {
    unsigned id;
    char snapshot[CV_CHAIN_NAME_MAX + 1];   /* "" for the head */
    int64_t created;
    int merging;
};

struct chain_manifest {
    uint64_t data_offset;
    unsigned next_id;
    int has_parent;
    char parent_volume[CV_CHAIN_NAME_MAX + 1];
    char parent_snapshot[CV_CHAIN_NAME_MAX + 1];
    int parent_own_format;
    size_t nlayers;
    struct chain_manifest_layer layers[CV_CHAIN_MAX_LAYERS];
};

/* Reads dir's manifest (dirfd open on dir; dir for messages) and checks
 * it whole. */
int chain_manifest_read(int dirfd, const char *dir, struct chain_manifest *m);
/* chain.tmp, fsync, rename over chain, fsync dirfd. */
int chain_manifest_write(int dirfd, const char *dir,
                         const struct chain_manifest *m);
/* A snapshot or volume name the manifest may hold: 1..64 bytes, printable,
 * no '/' or '@', not "." or "..". */
int chain_name_ok(const char *name);
/* The index of the layer of snapshot name, or -1. */
int chain_manifest_find(const struct chain_manifest *m, const char *name);

/* ---- the chain ---- */
struct chain_layer {
    unsigned id;
    int format;
    int own;
    int fd;                     /* -1 for a wrapped store */
    struct cv_backend *store;   /* the wrapped store (no map: all held) */
    char snapshot[CV_CHAIN_NAME_MAX + 1];
    int64_t created;
    int merging;
    uint64_t size;              /* the file's size (changed under the
                                 * exclusive lock only) */
    /* Odd while a punch runs; each punch adds 2.  A read that took a run
     * from this layer retries when it changed (it may have read the hole
     * being made, which is neither the old data nor what falls through). */
    unsigned punch_seq;
    struct chain_map map;
};

struct chain_format {
    char volume[CV_CHAIN_NAME_MAX + 1];     /* "" for format 0 */
    struct cv_backend *header;              /* formats 1..: read-only */
};

struct cv_chain {
    struct cv_backend view;     /* cv_chain_backend; name: dir */
    char *dir;
    int dirfd;                  /* -1 for a wrapped store */
    int header_fd;              /* own header; -1 for a wrapped store */
    int readonly;
    char *snapshot;             /* a snapshot's view: its name; else NULL */
    struct cv_backend *wrapped; /* cv_chain_wrap's store, else NULL */
    /* Shared by every I/O call, exclusive for changes of shape, never
     * taken twice by one thread (writer-preferring, so a snapshot is not
     * starved by a stream of reads). */
    pthread_rwlock_t lock;
    /* Serializes the changes of shape (taken before lock), so a snapshot
     * can make its new head's file before it makes I/O wait. */
    pthread_mutex_t shape_lock;
    struct chain_manifest man;  /* as on disk now (own chains) */
    uint64_t data_offset;
    /* Oldest first: the parents' (nparent of them), then own.  The view's
     * top is layers[nlayers - 1] (the head, or a snapshot's layer). */
    struct chain_layer *layers[CV_CHAIN_MAX_LAYERS];
    size_t nlayers;
    size_t nparent;
    unsigned nformats;
    struct chain_format formats[CV_CHAIN_MAX_FORMATS];
    /* cv_chain_set_mirror's (changed under the exclusive lock); has_mirror
     * 0: none, and nothing costs more than this test. */
    int has_mirror;
    struct cv_chain_mirror mirror;
};

/* The chain's lock, never taken twice by one thread: a nested shared
 * hold deadlocks behind a waiting writer (writer-preferring), one under
 * the exclusive hold fails and unbalances it.  Debug builds (no NDEBUG)
 * abort on a nested take. */
void chain_rdlock(struct cv_chain *c);
void chain_wrlock(struct cv_chain *c);
void chain_unlock(struct cv_chain *c);

/* chain.c: I/O with the lock already held shared (or exclusive). */
struct chain_layer *chain_head(struct cv_chain *c);
int chain_writable(struct cv_chain *c, const char *what);
uint64_t chain_view_size(struct cv_chain *c);
int chain_read_locked(struct cv_chain *c, void *buf, size_t len,
                      uint64_t off, size_t top, cv_chain_run_fn run,
                      void *arg);
int chain_write_locked(struct cv_chain *c, struct chain_layer *l,
                       const void *buf, size_t len, uint64_t off,
                       unsigned flags);
int chain_punch_locked(struct cv_chain *c, uint64_t off, uint64_t len);
/* Newest layer at index < top holding blk: its index or -1, with *run
 * blocks (at most n) of the same answer. */
int chain_find(struct cv_chain *c, size_t top, uint64_t blk, uint64_t n,
               uint64_t *run);
/* The index of layer id (own layers first), or -1. */
int chain_index(struct cv_chain *c, unsigned id);
void chain_layer_free(struct chain_layer *l);
/* A new layer struct with an empty map of size bytes and no file. */
int chain_layer_new(struct cv_chain *c, unsigned id, uint64_t size,
                    struct chain_layer **out);
int chain_layer_open(struct cv_chain *c, const char *dir, int dirfd,
                     unsigned id, int writable, int format, int own,
                     struct chain_layer **out);
int chain_fsync_dir(int dirfd, const char *dir);

/* The mirror (chain.h), with the lock held: begin, the local change, end.
 * chain_mirror_begin gives 0 and *token, or the error that fails the
 * change before it is made; chain_mirror_end gives the change's result.
 * Both only when c->has_mirror. */
int chain_mirror_begin(struct cv_chain *c, const struct cv_mirror_op *op,
                       void **token);
int chain_mirror_end(struct cv_chain *c, void *token, int local);

/* chain-parent.c: the parents' layers and formats, at open. */
int chain_resolve_parents(struct cv_chain *c);

/* chain-backend.c */
void chain_view_init(struct cv_chain *c);
/* A read-only store over a header file (formats 1..). */
int chain_header_store(const char *path, struct cv_backend **out);

#endif

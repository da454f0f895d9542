/* Exports: volumes opened for serving, shared by every NBD connection that
 * names them.
 *
 * The registry opens a volume on first use (unlocking it with its stored
 * secret) and closes it when the last connection lets go.  Because every
 * connection to a volume shares one open volume and one backing file, a
 * FLUSH on any connection makes every completed write durable, which is what
 * NBD_FLAG_CAN_MULTI_CONN promises.
 *
 * Where volumes live and what unlocks them comes from the metadata store
 * through two callbacks, so this file knows nothing of SQLite or etcd. */
#ifndef CRYPTVOLD_EXPORT_H
#define CRYPTVOLD_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "image/volume.h"
#include "luks/luks.h"
#include "store/chain.h"
#include "core/secret-file.h"

struct cv_workers;

/* A volume's name (meta.h's CVD_NAME_MAX, which this folder does not
 * include). */
#define CVD_EXPORT_NAME_MAX 64
struct cvd_registry;
struct cvd_export;

/* What the metadata store says about a volume. */
struct cvd_volume_spec {
    char *path;                 /* its chain directory (malloc'ed) */
    int plaintext;              /* no LUKS: served raw (comparison only) */
    /* What may be served, from the volume's record: at most what the image
     * holds; 0: all it holds.  During an online grow the image is larger
     * than the record until the record commits: no client sees the new
     * size before then. */
    uint64_t size;
};

/* The keys of every format of a chain (store/chain.h), in format order,
 * each a volume key in locked memory checked against its header. */
struct cvd_volume_keys {
    unsigned n;
    struct cv_volume_key k[CV_CHAIN_MAX_FORMATS];
};
void cvd_volume_keys_free(struct cvd_volume_keys *k);

/* Fills spec for name (a volume, never "VOL@SNAP"), or returns -ENOENT,
 * or another negative errno, with a message ("volume db1: is Pending").
 * serving: for a connection, which only a served state allows; else for
 * the daemon's own work, which any state with a chain allows. */
typedef int (*cvd_resolve_fn)(void *opaque, const char *name, int serving,
                              struct cvd_volume_spec *spec);
/* Unlocks every format of chain c (volume name's, open): its own secret
 * or KEK token for format 0, each own-format ancestor's for the others;
 * the message names the secret that is missing or wrong. */
typedef int (*cvd_unlock_fn)(void *opaque, const char *name,
                             struct cv_chain *c, struct cvd_volume_keys *out);
/* Calls cb for each volume that can be served, in name order; stops early
 * and returns cb's value if it is not 0. */
typedef int (*cvd_list_fn)(void *opaque,
                           int (*cb)(void *arg, const char *name), void *arg);

void cvd_volume_spec_free(struct cvd_volume_spec *spec);

int cvd_registry_new(cvd_resolve_fn resolve, cvd_unlock_fn unlock,
                     cvd_list_fn list, void *opaque,
                     struct cv_workers *workers, struct cvd_registry **out);
/* Flushes and closes every open volume.  No export may be held. */
void cvd_registry_free(struct cvd_registry *r);

/* Replication's hook (repl/repl.h): attach is called whenever a volume's
 * head is opened writable on chain c (for a connection and for the
 * daemon's own work), before anything is read or written: it may set c's
 * mirror and give a writer (*writer, NULL for a volume without replicas),
 * or fail the open.  detach gets that writer when the chain is closed
 * (after the last flush).  Set once, before the registry is used. */
typedef int (*cvd_writer_attach_fn)(void *opaque, const char *volume,
                                    struct cv_chain *c, void **writer);
typedef void (*cvd_writer_detach_fn)(void *opaque, void *writer);
void cvd_registry_set_writer(struct cvd_registry *r,
                             cvd_writer_attach_fn attach,
                             cvd_writer_detach_fn detach, void *opaque);

/* Replication's hook for a node outside a volume's replica set
 * (repl/repl.h: cvd_repl_attach_remote): called when a connection opens
 * the volume (snapshot NULL) or one of its snapshots, before the chain is
 * opened from the data dir.  It gives a chain over the replicas (*c) that
 * wraps *store (closed after the chain) and the writer (*writer, detached
 * as attach's), or *c NULL: the chain is opened here as always.  The
 * writer's opaque.  Set once, before the registry is used. */
struct cv_backend;
typedef int (*cvd_remote_open_fn)(void *opaque, const char *volume,
                                  const char *snapshot, struct cv_chain **c,
                                  struct cv_backend **store, void **writer);
void cvd_registry_set_remote(struct cvd_registry *r, cvd_remote_open_fn open);

/* Key derivations (an argon2id unlock holds hundreds of MiB) run at most
 * max_unlocks at a time, daemon-wide; others wait up to
 * CVD_UNLOCK_WAIT_S, then are refused (-EBUSY).  A volume whose unlock
 * failed is not tried again for retry_delay_s seconds (-EAGAIN, saying
 * so, without deriving).  0 and 0 (the default): no limits. */
#define CVD_UNLOCK_WAIT_S 30
void cvd_registry_set_unlock_limits(struct cvd_registry *r,
                                    unsigned max_unlocks,
                                    unsigned retry_delay_s);

int cvd_registry_list(struct cvd_registry *r,
                      int (*cb)(void *arg, const char *name), void *arg);
/* 1 if an NBD connection holds the export called name open ("VOL" or
 * "VOL@SNAP"); for a volume also one of its snapshots' (any: true). */
int cvd_registry_in_use(struct cvd_registry *r, const char *name, int any);
/* Flushes every open volume (SIGTERM, shutdown). */
int cvd_registry_flush_all(struct cvd_registry *r);

/* A connection holding an export (NBD, after NBD_OPT_GO), as the daemon
 * knows it: refusals name who is connected.  In the caller's memory from
 * cvd_export_hold until cvd_export_unhold. */
struct cvd_export_holder {
    struct cvd_export_holder *next;     /* the export's list */
    char peer[128];             /* "127.0.0.1:40312", "unix:pid=9,uid=0" */
    char identity[128];         /* "CN=alice", "psk:alice"; "" without TLS */
    uint64_t size;              /* the size it negotiated */
    int64_t since;              /* when it attached (time()) */
};
void cvd_export_hold(struct cvd_export *e, struct cvd_export_holder *h);
void cvd_export_unhold(struct cvd_export *e, struct cvd_export_holder *h);
/* Calls cb for each holder of the volume called name, under the registry's
 * lock (cb must not block nor call the registry); stops when cb returns
 * non-zero.  Returns how many holders cb was called for. */
int cvd_registry_holders(struct cvd_registry *r, const char *name,
                         int (*cb)(void *arg,
                                   const struct cvd_export_holder *h),
                         void *arg);
/* The volume's image grew to hold size bytes (durably, and its record
 * says so): if it is open, connections made from now on get size.  Those
 * already connected keep the size they negotiated (NBD has no resize
 * notice in the baseline protocol) and their requests stay bounded by it
 * (nbd_check_request).  One being opened gets it as it opens.  Never
 * lowers the size. */
int cvd_registry_grow(struct cvd_registry *r, const char *name,
                      uint64_t size);

#define CVD_EXPORT_READONLY   1u
#define CVD_EXPORT_PLAINTEXT  2u

/* Opens (or shares) the export called name: a volume, or "VOL@SNAP", a
 * snapshot, read-only.  The message says which volume and why it failed:
 * "volume db1: wrong key", "volume x: no such volume".  This is what a
 * connection that will read and write holds: it counts as serving. */
int cvd_export_get(struct cvd_registry *r, const char *name,
                   struct cvd_export **out);
/* The volume's chain, for the daemon's own work on it (header reads and
 * changes, snapshots, merges, flatten): the one every connection to it
 * shares, opened without unlocking if none is.  Does not count as
 * serving.  unlock: also unlock it (a merge or flatten decrypts). */
int cvd_export_get_store(struct cvd_registry *r, const char *name,
                         int unlock, struct cvd_export **out);
/* The volume's head to read its header and layers (volume info): the
 * open export if there is one, else the chain opened read-only for the
 * caller alone: no writer attach, so a replicated volume's info neither
 * takes its attach record nor raises its epoch.  Put with
 * cvd_export_put_store. */
int cvd_export_get_view(struct cvd_registry *r, const char *name,
                        struct cvd_export **out);
void cvd_export_put(struct cvd_export *e);
void cvd_export_put_store(struct cvd_export *e);
struct cv_chain *cvd_export_chain(struct cvd_export *e);
/* NULL unless unlocked (cvd_export_get, or _get_store with unlock), and
 * for a plaintext volume. */
struct cv_volume *cvd_export_volume(struct cvd_export *e);
/* Serialises the daemon's changes of one volume's shape (snapshot,
 * merge, rollback, flatten): held while one runs. */
void cvd_export_shape_lock(struct cvd_export *e);
void cvd_export_shape_unlock(struct cvd_export *e);

const char *cvd_export_name(const struct cvd_export *e);
uint64_t cvd_export_size(const struct cvd_export *e);
unsigned cvd_export_flags(const struct cvd_export *e);
/* The size a client should align to for best speed (the LUKS sector). */
unsigned cvd_export_block_size(const struct cvd_export *e);

/* Any offset and length inside the size; -ERANGE past it.  Thread-safe. */
int cvd_export_pread(struct cvd_export *e, void *buf, size_t len,
                     uint64_t off);
/* flags: CV_WRITE_FUA (backend.h). */
int cvd_export_pwrite(struct cvd_export *e, const void *buf, size_t len,
                      uint64_t off, unsigned flags);
int cvd_export_flush(struct cvd_export *e);
/* Deallocates whole sectors inside the range; what a trimmed range reads
 * back as is unspecified (NBD allows this). */
int cvd_export_trim(struct cvd_export *e, uint64_t off, uint64_t len,
                    unsigned flags);
/* The range reads back as zeros afterwards. */
int cvd_export_zero(struct cvd_export *e, uint64_t off, uint64_t len,
                    unsigned flags);

#define CVD_EXTENT_HOLE 1u      /* NBD_STATE_HOLE */
#define CVD_EXTENT_ZERO 2u      /* NBD_STATE_ZERO */
/* Describes [off, off+len) as extents for base:allocation: cb gets each
 * extent's length and CVD_EXTENT_* flags, in order, covering at least the
 * first byte; stops when cb returns non-zero. */
int cvd_export_extents(struct cvd_export *e, uint64_t off, uint64_t len,
                       int (*cb)(void *arg, uint64_t len, unsigned flags),
                       void *arg);

#endif

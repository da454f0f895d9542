/* The writer's insides (writer-*.c, repl.c): one struct cvd_repl_writer
 * per volume this node writes, its replicas (peers), the requests in
 * flight.  docs/replication.md, "The write path", says the rules. */
#ifndef CRYPTVOLD_REPL_WRITER_INTERNAL_H
#define CRYPTVOLD_REPL_WRITER_INTERNAL_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>

#include "repl-internal.h"
#include "meta/meta.h"
#include "store/chain.h"

struct cvd_peer_stream;
struct repl_remote_store;

/* A stream and the operations holding it: a stale stream (peer-tls
 * changed) is replaced, and the old one closed by its last user. */
struct repl_conn {
    struct cvd_peer_stream *s;
    atomic_int refs;
};

enum repl_role {
    ROLE_INSYNC,        /* gets every change and counts for acks */
    ROLE_OUT,           /* OutOfSync, Rebuilding, Failed: gets nothing */
    ROLE_TARGET,        /* a sync target: gets every change, does not count */
    ROLE_GONE,          /* left the set */
};

/* A change a sync target gets after the copy of its range (range lock). */
struct repl_deferred {
    struct repl_deferred *next;
    uint16_t type;
    uint64_t off, rlen;         /* the change's range (for its marks) */
    size_t len;                 /* of data: the encoded request */
    unsigned char data[];
};

struct repl_peer {
    char node[CVD_NAME_MAX + 1];
    char address[CVD_ADDRESS_MAX + 1];
    enum repl_role role;        /* under w->lock */
    int rebuild;                /* target: a rebuild (REPL_REBUILD sent) */
    struct repl_conn *conn;     /* under w->lock; NULL when ROLE_OUT */
    /* Not InSync: this node's record of the regions it misses, and which
     * of them were marked on the in-sync replicas already (w->lock). */
    struct repl_missed *missed;
    uint8_t *marked;
    struct repl_deferred *deferred, **deferred_tail;
    /* A target: the copy's sends in flight (answers not yet in), and the
     * first of them that failed, with its message (w->lock). */
    unsigned copying;
    int copy_err;
    char copy_why[320];
    /* The stream those requests are on, held until they are answered: a
     * new stream (peer-tls changed) is used by the copy only once the old
     * one has nothing of it in flight, so its requests stay in order. */
    struct repl_conn *copy_conn;
    /* Out locally, but the set in etcd could not be told (it may still
     * say InSync there): writes are refused until it is (fail_lock).
     * 1: to be OutOfSync, 2: Rebuilding. */
    int unrecorded;
};

/* A range the repair loop copies: live writes to it go to the targets
 * after it is unlocked. */
struct repl_range {
    struct repl_range *next;
    uint64_t off, len;
};

struct cvd_repl_writer {
    struct cvd *d;
    struct cvd_repl_writer *next;       /* d->repl->writers */
    int refs;                           /* d->repl->lock */
    int closing;                        /* detaching (d->repl->lock) */
    pthread_cond_t unheld;              /* refs fell (d->repl->lock) */
    char volume[CVD_NAME_MAX + 1];
    char state_dir[512];
    struct cv_chain *c;
    uint64_t epoch;
    int64_t lease;                      /* the attach record's */
    unsigned min;
    /* Peers: the set's nodes but this one.  Roles and conns change under
     * lock; the array's size does not change after attach. */
    pthread_mutex_t lock;
    pthread_cond_t changed;             /* ranges, in-flight counts */
    unsigned npeers;
    struct repl_peer p[CVD_MAX_REPLICAS];
    /* Serializes failures: the set's update, the marks, in order. */
    pthread_mutex_t fail_lock;
    atomic_int fenced;                  /* stopped writing: every op -EIO */
    atomic_int nunrecorded;             /* peers with unrecorded set */
    atomic_int ntargets;
    /* The activity log: regions marked "@active" (bit), the in-flight
     * writes per region and the flush generation of their last end. */
    struct repl_missed *active;
    uint64_t nregions;
    uint8_t *active_bits;
    uint32_t *busy, *gen;
    uint32_t flush_gen;
    int64_t last_clear_ms;
    /* Per-region count of writes sent to a target, in flight (the range
     * lock waits for them). */
    uint32_t *tsent;
    struct repl_range *ranges;
    int flushing;                       /* deferred lists being sent */
    atomic_uint shape_seq;              /* changes of shape begun */
    int taken;                          /* the attach record is ours */
    /* A writer on a node outside the set (remote-*.c): c wraps store, a
     * view of the in-sync replicas; this node counts for nothing in the
     * in-sync count.  shape: the layers the replicas have (the first
     * in-sync one's OPEN answer), read_from: the peer reads go to first. */
    int diskless;
    struct repl_remote_store *store;
    struct repl_open_reply shape;
    unsigned read_from;
};

/* writer-io.c: the mirror's callbacks. */
extern const struct cv_chain_mirror repl_writer_mirror_ops;
int repl_regions_grow(struct cvd_repl_writer *w, uint64_t raw_size);

/* writer-peer.c: streams and requests to one peer. */
/* may_lack: a replica without the volume (-ENOENT) is fine (a rebuild). */
int repl_conn_open(struct cvd_repl_writer *w, struct repl_peer *p,
                   struct repl_open_reply *reply, int may_lack);
void repl_conn_put(struct repl_conn *c);
struct repl_conn *repl_conn_get(struct cvd_repl_writer *w,
                                struct repl_peer *p);
struct iovec;
/* One request already encoded, and its answer, on p's stream. */
int repl_peer_send_raw(struct cvd_repl_writer *w, struct repl_peer *p,
                       uint16_t type, const struct iovec *iov, int iovcnt,
                       void **resp, size_t *resp_len);
/* One request and its answer on p's stream (MARK, CLEAR, CLOSE, ...). */
int repl_peer_call(struct cvd_repl_writer *w, struct repl_peer *p,
                   const struct repl_req *req, const void *data,
                   size_t len, void **resp, size_t *resp_len);

/* One request of a change (a WRITE larger than a frame is several). */
struct repl_chunk {
    void *prefix;               /* repl_encode's */
    size_t plen;
    const void *data;           /* the caller's, or NULL */
    size_t len;
};

/* writer-fail.c: peer i failed a request (err: its errno): the set
 * updated (OutOfSync; Rebuilding when rebuild: its shape may differ), the
 * region [off, off+len) marked for it on the others and locally.  0 when
 * the change may be acknowledged, else -EIO (fewer than min in sync, or
 * the set could not be updated).  len UINT64_MAX: every region in the
 * activity log. */
int repl_fail_peer(struct cvd_repl_writer *w, unsigned i, int err,
                   int rebuild, uint64_t off, uint64_t len);
/* A replica refused our epoch: another node writes the volume now. */
void repl_fence(struct cvd_repl_writer *w, const char *node);
/* Marks [off, off+len) for the not in-sync peer i where not yet marked:
 * on every in-sync replica and in the local record. */
int repl_mark_missed(struct cvd_repl_writer *w, unsigned i, uint64_t off,
                     uint64_t len);
/* Sends MARK (or CLEAR) for node to every in-sync peer and waits; a peer
 * that fails it fails (repl_fail_peer). */
int repl_mark_all(struct cvd_repl_writer *w, uint16_t type, const char *node,
                  uint64_t off, uint64_t len);
/* The set changed by fn (0: write it; 1: no change), with CAS retries. */
int repl_set_update(struct cvd_repl_writer *w,
                    int (*fn)(struct cvd_replica_set *s, void *arg),
                    void *arg);
int repl_set_state(struct cvd_repl_writer *w, const char *node,
                   enum cvd_replica_state state, const char *error);
/* In-sync replicas now (this node included). */
unsigned repl_insync(struct cvd_repl_writer *w);
/* 0, or -EIO while a failed replica's state is not in etcd yet (tried
 * again now): a write acknowledged without it then would be lost to a
 * writer that trusts the set. */
int repl_recorded_check(struct cvd_repl_writer *w);
/* 0, or -EIO once the lease may be gone (then fenced for good). */
int repl_fence_check(struct cvd_repl_writer *w);
int repl_peer_index(struct cvd_repl_writer *w, const char *node);
/* Before a change of shape: -EBUSY while a rebuild target exists; the
 * set's shape_gen raised while some replica is not InSync. */
int repl_shape_check(struct cvd_repl_writer *w);

/* writer-attach.c: becoming the writer, step by step (cvd_repl_attach
 * and repl_remote_attach): a new writer of chain c (NULL for now without
 * a replica here), the attach record taken, the set's peers loaded and
 * opened, the writer listed; abort undoes a failed attach. */
struct cvd_repl_writer *repl_writer_new(struct cvd *d, const char *volume,
                                        struct cv_chain *c);
void repl_writer_free(struct cvd_repl_writer *w);
int repl_writer_take(struct cvd_repl_writer *w,
                     const struct cvd_replica_set *s,
                     struct cvd_replica_set *prev);
int repl_load_peers(struct cvd_repl_writer *w,
                    const struct cvd_replica_set *s);
void repl_load_bits(struct repl_missed *m, uint8_t *bits, uint64_t n);
void repl_open_peers(struct cvd_repl_writer *w);
void repl_writer_publish(struct cvd_repl_writer *w);
void repl_writer_abort(struct cvd_repl_writer *w);
int repl_in_set(const struct cvd_replica_set *s, const char *node);

/* remote-*.c: the writer without a replica here. */
/* The layers o reports equal the reference's (ids, names, sizes). */
int repl_remote_same_shape(const struct repl_open_reply *ref,
                           const struct repl_open_reply *o);
/* The store over the replicas, for w (w->store), and its end: after
 * detach its calls fail (-EIO), a flush does nothing. */
int repl_remote_store_new(struct cvd_repl_writer *w,
                          struct cv_backend **out);
void repl_remote_store_detach(struct cvd_repl_writer *w);
/* Waits for the store's calls in flight (a sync target's barrier, as
 * cv_chain_set_mirror is for a chain). */
void repl_remote_barrier(struct cvd_repl_writer *w);
/* Reads [off, off+len) (whole blocks; inside the header or the data
 * area) of layer (0: the head's view, else that layer's own blocks) from
 * an in-sync replica, trying the next when one fails: held gets a bit per
 * block held (LSB first, zeroed first), buf their data and zeros. */
int repl_remote_read(struct cvd_repl_writer *w, uint32_t layer, void *buf,
                     size_t len, uint64_t off, uint8_t *held);
/* One change sent through the writer as the mirror would send it. */
int repl_remote_send(struct cvd_repl_writer *w, const struct cv_mirror_op *op);
/* After an unclean end of the last writer: what it may have left
 * different on the in-sync replicas made the same, from the first. */
int repl_remote_replay(struct cvd_repl_writer *w, const char *last);
/* The head's id (the last layer of the reference). */
uint32_t repl_remote_head(const struct cvd_repl_writer *w);

/* writer-attach.c: the set re-read (new nodes, gone nodes, min). */
int repl_writer_sync_set(struct cvd_repl_writer *w);
/* The layers a replica's OPEN reported equal ours. */
int repl_same_shape(struct cvd_repl_writer *w,
                    const struct repl_open_reply *o);

/* writer-target.c */
/* After an unclean end of the last writer (last): the regions of this
 * node's activity log copied from here to every in-sync replica. */
int repl_replay_active(struct cvd_repl_writer *w, const char *last);
void repl_targets_free(struct cvd_repl_writer *w);
/* 1 if target i gets this data op later (its range is being copied):
 * then it was copied to its deferred list.  0: it is sent now, and
 * tsent[] was raised over its regions in the same hold of w->lock (the
 * caller lowers it, repl_target_sent -1, once answered).  -ENOMEM: not
 * kept (the caller drops the target: repl_target_failed). */
int repl_target_defer(struct cvd_repl_writer *w, unsigned i, uint16_t type,
                      const struct repl_chunk *chunks, unsigned n,
                      uint64_t off, uint64_t len);
/* Writes sent to a target in flight over [r0, r1): delta +1 / -1. */
void repl_target_sent(struct cvd_repl_writer *w, uint64_t r0, uint64_t r1,
                      int delta);
/* A target failed a live request: dropped, the region recorded. */
void repl_target_failed(struct cvd_repl_writer *w, unsigned i, int err,
                        uint64_t off, uint64_t len);

/* The state shared by the writer, replica side and repair loop (d->repl).
 * replica-*.c and repair-*.c keep theirs behind their pointers. */
struct cvd_repl {
    struct cvd *d;
    pthread_mutex_t lock;
    /* Writers here, the ones letting go too (closing) until they did. */
    struct cvd_repl_writer *writers;
    pthread_cond_t gone;                /* one left the list */
    void *replica;
    void *repair;
};

/* "peer n3 (127.0.0.13:10810): timed out" for err. */
void repl_peer_why(const struct repl_peer *p, int err, char *buf,
                   size_t len);

#endif

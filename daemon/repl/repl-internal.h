/* Inside daemon/repl/: the writer (writer-*.c, fan-out and fencing), the
 * replica side (replica-*.c), the repair loop (repair-*.c: resync and
 * rebuild).  The writer's owner may add fields; the functions below are
 * what the repair loop calls (docs/replication.md says the rules). */
#ifndef CRYPTVOLD_REPL_INTERNAL_H
#define CRYPTVOLD_REPL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "repl.h"
#include "repl-proto.h"
#include "missed.h"
#include "replica.h"

struct cvd;
struct cvd_export;

/* Timeouts (docs/replication.md, "Timeouts").  A replica request not
 * answered within REPL_IO_TIMEOUT_MS fails that replica (OutOfSync); the
 * writer stops writing when its node lease's last renewal is older than
 * the lease's TTL less REPL_FENCE_MARGIN_MS (cvd_node_lease_valid_ms). */
#define REPL_IO_TIMEOUT_MS 5000
#define REPL_FENCE_MARGIN_MS 2000

/* volume's replica set into *s: 1, or 0 when it has none (a single node,
 * or a volume of one replica), or a negative errno with a message. */
int repl_set_lookup(struct cvd *d, const char *volume,
                    struct cvd_replica_set *s);

/* ---- the writer (writer-*.c) ---- */

/* The writer of volume on this node, held (repl_writer_put), or NULL. */
struct cvd_repl_writer *repl_writer_find(struct cvd *d, const char *volume);
void repl_writer_put(struct cvd_repl_writer *w);
const char *repl_writer_volume(const struct cvd_repl_writer *w);
uint64_t repl_writer_epoch(const struct cvd_repl_writer *w);
struct cv_chain *repl_writer_chain(struct cvd_repl_writer *w);
/* 1 for a writer on a node outside the volume's set (remote-*.c): its
 * chain is a view of the in-sync replicas. */
int repl_writer_diskless(const struct cvd_repl_writer *w);

/* A sync target: node (in the set, not InSync) gets every write from now
 * on, without counting for acknowledgements (its failure fails no write:
 * the target is dropped, the node stays OutOfSync/Rebuilding, and the
 * regions it missed meanwhile are recorded as for any OutOfSync replica).
 * rebuild: REPL_REBUILD with the chain's layers first (writes then go to
 * the new chain), else REPL_OPEN (resync: its shape must equal ours, else
 * REPL_ERR_SHAPE: rebuild instead; -ESTALE is only a replica's refusal of
 * our epoch, and the writer is fenced then).  The writer's shape changes
 * are refused (-EBUSY "volume db1: replica n3 is being rebuilt", or
 * resynced) while a target exists. */
int repl_writer_add_target(struct cvd_repl_writer *w, const char *node,
                           int rebuild);
/* What repl_writer_add_target returns when the target refused the
 * REBUILD of a clone because it holds no replica of the clone's parent
 * (or not its snapshot): no retry can mend that, so the repair marks the
 * replica Failed with the target's message. */
#define REPL_ERR_NO_PARENT (-ENOLINK)
/* What repl_writer_add_target returns when a resync target's layers are
 * not ours (it needs a rebuild).  Not -ESTALE, a replica's refusal of
 * our epoch, which must fence, not rebuild. */
#define REPL_ERR_SHAPE (-EILSEQ)
/* Writes to [off, off+len) wait while it is locked (what a resync copies
 * must not cross a live write of the same blocks). */
void repl_writer_range_lock(struct cvd_repl_writer *w, uint64_t off,
                            uint64_t len);
void repl_writer_range_unlock(struct cvd_repl_writer *w, uint64_t off,
                              uint64_t len);
/* Sends to target node only: a WRITE (of layer) or a PUNCH (buf NULL) of
 * blocks the copy read from the local chain, or a HEADER (layer
 * REPL_HEADER_LAYER).  Returns once the request is on the stream (buf may
 * be reused then), with up to REPL_COPY_WINDOW requests in flight: the
 * stream keeps their order, so a live write deferred behind the range
 * lock still reaches the target after the copy of its blocks.  An answer
 * that failed fails the next call (and repl_writer_target_wait). */
#define REPL_HEADER_LAYER 0xffffffffu
#define REPL_COPY_WINDOW 8
int repl_writer_target_write(struct cvd_repl_writer *w, const char *node,
                             uint32_t layer, const void *buf, size_t len,
                             uint64_t off);
/* Waits for the answers of every copy request in flight to node: 0, or
 * the first failure with its message.  target_done and target_drop wait
 * too. */
int repl_writer_target_wait(struct cvd_repl_writer *w, const char *node);
/* The copy is complete: FLUSH (and COMMIT after a rebuild) on it, CLEAR of
 * its records on every in-sync replica and locally, and the set updated:
 * node InSync.  From then on it counts. */
int repl_writer_target_done(struct cvd_repl_writer *w, const char *node);
void repl_writer_target_drop(struct cvd_repl_writer *w, const char *node);
/* This node's own record of what node misses (the writer is a replica
 * too), for the resync to walk. */
struct repl_missed *repl_writer_missed(struct cvd_repl_writer *w,
                                       const char *node);

/* ---- the replica side (replica-*.c) ---- */
int repl_replica_start(struct cvd *d);
void repl_replica_stop(struct cvd *d);
/* repl_replica_fence, repl_replica_handle: replica.h. */

/* ---- the repair loop (repair-*.c) ---- */
int repl_repair_start(struct cvd *d);
void repl_repair_stop(struct cvd *d);
/* Wakes the loop (a replica set changed, a node came back). */
void repl_repair_kick(struct cvd *d);

#endif

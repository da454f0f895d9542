/* Replication: a volume's layer chain on N nodes (docs/replication.md).
 *
 * The writer of a volume is the node that attaches it (an NBD client, or
 * the daemon's own work on its head: snapshots, merges).  It takes the
 * volume's attach record in etcd, attached to its node lease, which raises
 * the volume's epoch; encrypts each write once; writes it to its own
 * replica and sends the ciphertext to every other in-sync replica over one
 * peer stream each; and acknowledges it when all have it (FLUSH and FUA:
 * durable on all).  A replica that fails is marked OutOfSync in etcd before
 * a write is acknowledged without it, and the in-sync replicas record the
 * regions it misses (missed.h).  Fewer in-sync replicas than the set's min:
 * writes fail with -EIO, reads go on.  A writer whose lease may be gone
 * stops writing before it can have expired.
 *
 * The replica side answers the writer's requests (repl-proto.h) for the
 * volumes this node holds a replica of.  The repair loop resyncs and
 * rebuilds replicas that are not InSync, from the writer (a volume nobody
 * attaches is opened for it by its first in-sync replica's node).
 *
 * On a single node, and for volumes without a replica set, nothing here
 * does anything: cvd_repl_attach gives NULL, and the volume is served as
 * before. */
#ifndef CRYPTVOLD_REPL_H
#define CRYPTVOLD_REPL_H

#include <stdint.h>

#include "meta/meta.h"

struct cvd;
struct cv_chain;
struct cvd_repl;
struct cvd_repl_writer;

/* After cvd_node_start: registers the replica side's handlers on d->peer
 * and starts the repair loop (d->repl).  0 and nothing on a single node. */
int cvd_repl_start(struct cvd *d);
/* Stops the loop; every writer must be detached already. */
void cvd_repl_stop(struct cvd *d);
/* Stops the repair loop only (its copy ends at the next region, and the
 * volume it held is let go): before the registry is freed, which the loop
 * opens volumes through.  cvd_repl_stop does it too; twice is fine. */
void cvd_repl_stop_repair(struct cvd *d);

/* The export registry's hook (export.h: cvd_registry_set_writer) when it
 * opens volume's head writable on chain c: for a replicated volume takes
 * the attach record (-EBUSY "volume db1: attached on node n1"), opens the
 * replicas and sets c's mirror (store/chain.h), so every change of c goes
 * to them; *out NULL (and 0) for a volume without a replica set. */
int cvd_repl_attach(struct cvd *d, const char *volume, struct cv_chain *c,
                    struct cvd_repl_writer **out);
/* The export registry's other hook (export.h: cvd_registry_set_remote),
 * before it opens a volume's chain from the data dir for a connection:
 * on a node outside the volume's replica set, becomes its writer as
 * cvd_repl_attach does (record, epoch, OPEN) and gives a chain over the
 * in-sync replicas (*chain, wrapping *store, which is closed after the
 * chain) with its writer (*out, detached by cvd_repl_detach).  *chain
 * NULL (and 0) where the volume has no set or this node is in it.  A
 * snapshot (not NULL) is refused there: it is read where a replica is. */
struct cv_backend;
int cvd_repl_attach_remote(struct cvd *d, const char *volume,
                           const char *snapshot, struct cv_chain **chain,
                           struct cv_backend **store,
                           struct cvd_repl_writer **out);
/* Flushes, closes the replicas, releases the attach record (clean when
 * every in-sync replica flushed).  NULL is ignored. */
void cvd_repl_detach(struct cvd_repl_writer *w);

/* 1 if this node holds a replica of volume (in its set), 0 if not, and
 * -ENOENT when volume has no replica set. */
int cvd_repl_is_replica(struct cvd *d, const char *volume);

/* volume replicas NAME --set N: adds replicas (Rebuilding, on the nodes
 * placement picks) or removes them (the not InSync first; never below
 * min, never the writer's), making the set if the volume had none.  The
 * repair loop does the copying. */
int cvd_repl_set_count(struct cvd *d, const char *actor, const char *volume,
                       unsigned n, unsigned min);
/* A new volume's set (volume create --replicas N --min-replicas M, made
 * on this node): this node InSync, the others Rebuilding. */
int cvd_repl_create_set(struct cvd *d, const char *volume, unsigned n,
                        unsigned min);
/* The nodes holding an InSync replica of volume parent (a clone's
 * replicas may go only there), or, for a volume without a replica set,
 * the node it was made on; at most CVD_MAX_REPLICAS into out, *n of them. */
int cvd_repl_parent_nodes(struct cvd *d, const char *parent,
                          char (*out)[CVD_NAME_MAX + 1], unsigned *n);
/* Volume delete: REPL_DELETE on every replica but this node, then the
 * set removed.  Nothing for a volume without one. */
int cvd_repl_delete(struct cvd *d, const char *volume);

#endif

/* The repair loop's parts (repair-loop.c: the thread, who repairs what;
 * repair-copy.c: a resync's and a rebuild's copy; repair-set.c: the
 * replica set's progress and states in the store).  docs/replication.md,
 * "Resync and rebuild". */
#ifndef CRYPTVOLD_REPL_REPAIR_INTERNAL_H
#define CRYPTVOLD_REPL_REPAIR_INTERNAL_H

#include <stdint.h>

#include "repl-internal.h"

struct cvd;
struct cvd_export;

/* How often a pass runs without a kick, and how often a copy reports its
 * progress in the set (a CAS on etcd each time). */
#define REPAIR_INTERVAL_MS 3000
#define REPAIR_PROGRESS_MS 1000
/* What one step of a copy reads and sends (whole regions, at most what
 * one READ or WRITE carries): the lock it holds is short, the round trips
 * few. */
#define REPAIR_PIECE (4u * REPL_REGION)
/* A replica whose copy failed waits 3 s, then twice as long after each
 * failure, up to a minute (or until a node comes or goes). */
#define REPAIR_BACKOFF_MAX_MS 60000
#define REPAIR_BACKOFF_SLOTS 32
#define REPAIR_GAP_MS 500           /* at least, between two passes */

/* One copy to one target node.  e: the volume's export, held for the
 * copy (its shape lock keeps snapshots and merges out of each piece). */
struct repair_job {
    struct cvd *d;
    struct cvd_export *e;
    struct cvd_repl_writer *w;
    struct cv_chain *c;
    const char *volume, *node;
    uint64_t done, total;       /* bytes: progress shown by volume info */
    int64_t reported_ms;        /* CLOCK_MONOTONIC of the last report */
    void *buf;                  /* REPAIR_PIECE bytes */
    int *stop;                  /* set: the daemon stops (-ECANCELED) */
};

/* Resync: the regions of the writer's record of what node misses.
 * REPL_ERR_SHAPE when the replica's shape is not ours (rebuild it
 * instead). */
int repair_resync(struct repair_job *j);
/* The same resync by a writer that holds no replica (remote-repair.c):
 * read from an in-sync replica. */
int repl_remote_resync(struct repair_job *j);
/* Rebuild: the header and every own layer's blocks, into a new chain on
 * node. */
int repair_rebuild(struct repair_job *j);
/* The end of a copy whose result is r: done (flushed, InSync) when 0,
 * else the target dropped and r returned with "resync"/"rebuild" (what)
 * in its message. */
int repair_finish(struct repair_job *j, int r, const char *what);

/* The set's progress of node's copy (CAS retried; a state other than
 * OutOfSync/Rebuilding is left alone).  force: even within
 * REPAIR_PROGRESS_MS of the last report. */
void repair_progress(struct repair_job *j, int force);
/* node Failed (error: why), or Rebuilding (a copy that must start over);
 * only if it is not InSync meanwhile. */
int repair_set_state(struct cvd *d, const char *volume, const char *node,
                     enum cvd_replica_state state, const char *error);

int64_t repair_now_ms(void);
/* -ECANCELED once the loop is told to stop, else 0. */
int repair_cancelled(const struct repair_job *j);

#endif

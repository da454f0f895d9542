/* What cluster-kek.c shares with rotation.c, rotation-cluster.c,
 * kek-peer.c and cluster-kek-info.c. */
#ifndef CRYPTVOLD_CLUSTER_INTERNAL_H
#define CRYPTVOLD_CLUSTER_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "meta/meta.h"

struct cvd;

/* The etcd lock the node running a rotation holds, with its node lease:
 * it goes when that node's lease does (the node died). */
#define CVD_ROTATION_LOCK "rotation"

struct cvd_cluster {
    struct cvd *d;
    /* Serialises enable and rotate, and guards the fields below. */
    pthread_mutex_t lock;
    pthread_t thread;
    int running;                /* a rotation thread exists (join it) */
    int active;                 /* ... and has not finished */
    int stop;                   /* the daemon is stopping */
    /* Progress of the rotation in EncryptingDEKs. */
    uint32_t done, total, failed;

    /* ---- A cluster on etcd (rotation-cluster.c). ---- */
    int clustered;              /* the worker below runs */
    pthread_t worker;
    pthread_cond_t wake;        /* an event came, or stop */
    int kick;
    int lock_gone;              /* ... and it said the runner's lock went */
    /* This process holds CVD_ROTATION_LOCK: it runs the rotation (moves
     * the stored state on).  Every member does its own part anyway. */
    int runner;                 /* the worker's alone */
    int took_lock;              /* cluster kek rotate took it (c->lock) */
    /* The last error the worker logged, so one that repeats is logged
     * once. */
    char last_error[256];
};

/* Starts the rotation thread, which carries on from the stored state;
 * nothing if one is running.  Called with c->lock held or before any
 * request is served.  (One node; a cluster's worker does it there.) */
int cvd_rotation_start(struct cvd_cluster *c);
/* Asks the thread to stop after its current volume and joins it. */
void cvd_rotation_stop(struct cvd_cluster *c);
/* The rotation's next state, stored if the record is still *cur (then
 * *cur is the new record): EncryptingDEKs makes the target generation the
 * current one, NoRotation records when it finished. */
int cvd_rotation_advance(struct cvd_cluster *c, struct cvd_cluster_rec *cur,
                         const char *rotation);
/* At the end of a rotation: the generations below target_gen that no
 * volume names are deleted, except those Completed backups of this
 * cluster in the backup target still need (all are kept when the target
 * cannot be listed). */
int cvd_rotation_prune(struct cvd_cluster *c, uint32_t target_gen);
/* A volume whose token could not be re-wrapped (the thread's message
 * says why): logged, with then after it, and audited. */
void cvd_rotation_failed(struct cvd_cluster *c, const struct cvd_volume_rec *v,
                         const char *then);

/* ---- Shared by the single-node rotation and the cluster's (rotation.c).
 * Records are written in batches: the token is the truth, the record an
 * index, so a crash that loses a batch only makes the resumed rotation
 * look at those volumes again. */
#define CVD_ROTATION_BATCH 64
int cvd_rotation_stopping(struct cvd_cluster *c);
/* The pauses tests use to kill the daemon in a given state: times times
 * rotation-delay-ms. */
void cvd_rotation_delay(struct cvd_cluster *c, unsigned times);
/* Re-wraps one volume's token to target, through the registry (it may be
 * served), under the header lock. */
int cvd_rotation_rewrap_one(struct cvd_cluster *c,
                            const struct cvd_volume_rec *v, uint32_t target);
/* Sets kek_gen = target on the *n names, and *n = 0. */
int cvd_rotation_flush(struct cvd_cluster *c, const char **names, size_t *n,
                       uint32_t target);
/* A volume whose token a rotation to target still has to re-wrap. */
int cvd_rotation_needs_rewrap(const struct cvd_volume_rec *v,
                              uint32_t target);

/* ---- A cluster (rotation-cluster.c). ---- */
/* At start: the listener on the node's watch, the peer handler, and the
 * worker, which at once fetches missing generations and carries on a
 * rotation in progress. */
int cvd_rotation_cluster_start(struct cvd_cluster *c);
void cvd_rotation_cluster_stop(struct cvd_cluster *c);
/* cluster kek rotate on a cluster: takes the lock, stores target gen with
 * this node's copy and rotation_node = this node, and wakes the worker.
 * Called with c->lock held. */
int cvd_rotation_cluster_begin(struct cvd_cluster *c,
                               const struct cvd_cluster_rec *cur,
                               struct cvd_cluster_rec *next,
                               const struct cvd_kek_rec *kek);
/* Wakes the worker (an event, a change made here). */
void cvd_rotation_cluster_kick(struct cvd_cluster *c);

/* What a cluster's rotation waits for, from the store alone (so every
 * node says the same): "waiting for node n3 (Offline) to receive KEK
 * generation 3", or "" when nothing; and the volumes at the target of all
 * those a rotation moves. */
struct cvd_rotation_view {
    char waiting[512];
    uint32_t done, total;
};
int cvd_rotation_cluster_view(struct cvd_cluster *c,
                              const struct cvd_cluster_rec *cur,
                              struct cvd_rotation_view *out);

/* ---- The peer port's CVD_PEER_KEK (kek-peer.c). ---- */
/* Registers the handler that gives a member one generation this node
 * holds. */
int cvd_kek_peer_serve(struct cvd_cluster *c);
/* This node has no copy of gen: asks a member that holds it (Online ones,
 * in name order), seals it for itself with protection and stores it. */
int cvd_kek_peer_fetch(struct cvd_cluster *c, uint32_t gen,
                       const char *protection);

#endif

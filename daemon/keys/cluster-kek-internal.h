/* What cluster-kek.c shares with rotation.c and cluster-kek-info.c. */
#ifndef CRYPTVOLD_CLUSTER_INTERNAL_H
#define CRYPTVOLD_CLUSTER_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

struct cvd;

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
};

/* Starts the rotation thread, which carries on from the stored state;
 * nothing if one is running.  Called with c->lock held or before any
 * request is served. */
int cvd_rotation_start(struct cvd_cluster *c);
/* Asks the thread to stop after its current volume and joins it. */
void cvd_rotation_stop(struct cvd_cluster *c);

#endif

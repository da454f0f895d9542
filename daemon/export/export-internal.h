/* The registry's export, shared by export.c (the registry: open, unlock,
 * share, close) and export-io.c (requests). */
#ifndef CRYPTVOLD_EXPORT_INTERNAL_H
#define CRYPTVOLD_EXPORT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "export.h"

enum export_state { OPENING, OPEN };
/* The key: none yet (a store opened for the daemon's own work), being
 * derived (others wait), or there. */
enum unlock_state { LOCKED, UNLOCKING, UNLOCKED };

struct cvd_export {
    struct cvd_registry *r;
    struct cvd_export *next;
    char *name;                 /* "VOL" or "VOL@SNAP" */
    char *snapshot;             /* the snapshot served (malloc'ed); NULL: head */
    char volume[CVD_EXPORT_NAME_MAX + 1];
    enum export_state state;
    enum unlock_state unlock;
    unsigned refs;              /* under r->lock */
    unsigned conns;             /* of refs, NBD connections; under r->lock */
    struct cv_chain *chain;
    struct cv_volume *vol;      /* NULL until unlocked, and for plaintext */
    int plaintext;
    /* What new connections get; raised by an online grow while requests
     * run (each connection keeps what it negotiated). */
    _Atomic uint64_t size;
    uint64_t record_size;       /* the record's bound at open; 0: none */
    uint64_t grow_to;           /* a grow while OPENING; under r->lock */
    struct cvd_export_holder *holders;  /* under r->lock */
    unsigned flags;
    unsigned block_size;
    pthread_mutex_t shape;
    /* Replication's writer of the head (cvd_registry_set_writer), or
     * NULL: a volume without replicas, or a snapshot. */
    void *writer;
    /* The store a chain over another node's replicas wraps
     * (cvd_registry_set_remote): closed after the chain.  NULL else. */
    struct cv_backend *store;
    /* A read-only view for one caller (cvd_export_get_view): not in the
     * registry's list, no writer, freed by its last put. */
    int view;
};

#endif

/* Snapshots and clones of volumes (docs/store.md): what the admin API
 * calls.  Names are "VOL@SNAP" only in the API and over NBD; here the two
 * parts are apart.  Errors as volumes.h says: -EINVAL bad input, -ENOENT
 * no such volume or snapshot, -EEXIST taken, -EBUSY served, depended on,
 * or busy with another job. */
#ifndef CRYPTVOLD_SNAPSHOTS_H
#define CRYPTVOLD_SNAPSHOTS_H

#include <stddef.h>
#include <stdint.h>

#include "meta/meta.h"

struct cvd;

struct cvd_snapshot_info {
    char name[CVD_NAME_MAX + 1];
    int64_t created;
    uint64_t allocated;         /* bytes its layer holds */
};

/* Instant and crash-consistent, also while the volume is served and
 * written: every write acknowledged before it is in it, none after. */
int cvd_snapshot_create(struct cvd *d, const char *volume, const char *snap,
                        struct cvd_snapshot_info *out);
/* Oldest first; *out malloc'ed. */
int cvd_snapshot_list(struct cvd *d, const char *volume,
                      struct cvd_snapshot_info **out, size_t *n);
/* Gone from lists at once; its layer is merged into the next one by a
 * background job (jobs.h), which a restart resumes. */
int cvd_snapshot_delete(struct cvd *d, const char *volume, const char *snap);
/* The volume reads as the snapshot did; refused while served, and while
 * newer snapshots exist. */
int cvd_snapshot_rollback(struct cvd *d, const char *volume,
                          const char *snap, struct cvd_volume_rec *out);
/* How many snapshots volume has (0 for one without a chain yet). */
int cvd_volume_snapshot_count(struct cvd *d, const char *volume);
/* The volumes cloned from volume (any of its snapshots when snap is NULL),
 * "a, b and 3 more" into buf; returns how many. */
int cvd_volume_clones(struct cvd *d, const char *volume, const char *snap,
                      char *buf, size_t len);
/* After recovery: restarts the merges a stop interrupted. */
int cvd_snapshots_resume(struct cvd *d);

/* Splits "VOL@SNAP", checking both names. */
int cvd_split_snapshot(const char *full, char *volume, char *snap);

/* clone.c: NEW reads through parent VOL@SNAP.  secret NULL and no class:
 * it inherits the parent's format, key and secret; else it gets its own
 * LUKS format (luks_version, aes_bits) and key, made to fit the parent's
 * data offset. */
struct cvd_clone_req {
    const char *name;
    const char *parent;         /* "VOL@SNAP" */
    const char *secret;
    const char *class_name;
    int luks_version;           /* 0: the parent's */
    unsigned aes_bits;          /* 0: the parent's */
    /* 0: the class's (with one), else the parent's set's (1 without);
     * min 0: the parent's with its count, else replicas - 1. */
    unsigned replicas, min_replicas;
};
int cvd_volume_clone(struct cvd *d, const struct cvd_clone_req *req,
                     struct cvd_volume_rec *out);
/* Starts the copy of every parent block into the clone (a job). */
int cvd_volume_flatten(struct cvd *d, const char *name);
/* The secrets an open of v needs: its own, then each own-format
 * ancestor's, comma-separated into buf. */
int cvd_volume_needs_secrets(struct cvd *d, const struct cvd_volume_rec *v,
                             char *buf, size_t len);

/* transfer.c: import of a LUKS image file (a job; the volume is
 * Importing until it is done) and export of a volume or snapshot as one. */
int cvd_volume_import(struct cvd *d, const char *name, const char *file,
                      const char *secret, struct cvd_volume_rec *out);
int cvd_volume_export(struct cvd *d, const char *name, const char *file,
                      const char *snap, int sparse);

#endif

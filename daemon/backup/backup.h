/* Encrypted incremental backups of volumes to a backup target, a directory
 * (in practice an NFS mount) that several clusters may share
 * (docs/backup.md).  A backup is of one snapshot: the LUKS header as it is
 * when the backup runs and the snapshot's ciphertext, in content-addressed
 * blocks (target.h), listed by one manifest authenticated with a key
 * derived from the volume key.  Nothing in a target is plaintext, and the
 * volume's secret alone opens a restored volume.
 *
 * What the admin API calls.  Every function returns 0 or a negative errno
 * with a message naming the volume or backup: -EINVAL bad input, -ENOENT
 * no such volume or backup, -EEXIST taken, -EBUSY busy, -ENOSPC the target
 * is full, -ENODEV no backup target is set. */
#ifndef CRYPTVOLD_BACKUP_H
#define CRYPTVOLD_BACKUP_H

#include <stddef.h>
#include <stdint.h>

#include "meta/meta.h"

struct cvd;

/* "bk-" and 16 hex digits (64 random bits), unique in the target. */
#define CVD_BACKUP_ID_MAX 24

enum cvd_backup_state {
    CVD_BACKUP_IN_PROGRESS,
    CVD_BACKUP_COMPLETED,
    CVD_BACKUP_FAILED,
};
/* "InProgress", "Completed", "Failed" (the API's and the manifest's). */
const char *cvd_backup_state_name(enum cvd_backup_state s);
int cvd_backup_state_parse(const char *name, enum cvd_backup_state *out);

struct cvd_backup_info {
    char id[CVD_BACKUP_ID_MAX + 1];
    char volume[CVD_NAME_MAX + 1];
    char snapshot[CVD_NAME_MAX + 1];    /* the snapshot it is of */
    char uuid[40];                      /* the LUKS header's UUID */
    /* Who made it: the cluster's id ("" on a single node without one) and
     * the node (the daemon's node name), so that a daemon marks Failed
     * only the backups it left InProgress itself. */
    char cluster[64];
    char node[CVD_NAME_MAX + 1];
    char secret[CVD_NAME_MAX + 1];      /* opens it; "" KEK only */
    uint32_t kek_gen;                   /* 0: no KEK token */
    char type[12];                      /* "luks2", "luks1" */
    char cipher[64];
    unsigned key_bits, sector_size;
    uint64_t size;                      /* effective bytes */
    uint64_t data_offset;               /* header bytes */
    uint64_t raw_size;                  /* data_offset + the data area */
    char base[CVD_BACKUP_ID_MAX + 1];   /* incremental to; "" full */
    int64_t created, finished;          /* seconds; finished 0 */
    uint64_t bytes_held;    /* header and data it holds: what a restore writes */
    uint64_t bytes_new;     /* of blocks the target did not have before it */
    uint64_t blocks;        /* entries of its manifest */
    enum cvd_backup_state state;
    char error[512];                    /* Failed: why */
    /* InProgress on this daemon: its job's bytes done and total, else 0. */
    uint64_t done, total;
};

/* After the volumes are recovered: opens d->cfg.backup_target (made if it
 * is an empty or new directory; refused if it is not a target), marks
 * Failed the backups this daemon left InProgress, and resumes the restores
 * a stop cut short.  Without backup-target, d->backups stays NULL and the
 * rest answers -ENODEV ("no backup target is set: backup-target in
 * cryptvold.conf or --backup-target"). */
int cvd_backups_start(struct cvd *d);
/* After the jobs are stopped.  NULL d->backups is ignored. */
void cvd_backups_stop(struct cvd *d);

struct cvd_backup_target_info {
    char path[4096];
    uint64_t backups;       /* manifests, of every volume and cluster */
    uint64_t blocks;        /* block files */
    uint64_t bytes;         /* bytes of block files */
    uint64_t free_bytes;    /* statvfs of the target */
};
int cvd_backup_target_info(struct cvd *d, struct cvd_backup_target_info *out);

/* Starts a backup of volume's snapshot (NULL: a new snapshot named
 * "backup-" and the id part of the backup's id, made now): a job
 * (CVD_JOB_BACKUP) on the volume; *out is its manifest, InProgress.  The
 * first backup of a volume is full; a next one reads only the blocks
 * written since the previous Completed backup's snapshot, when that
 * snapshot still exists, and stores only blocks the target lacks.
 * -EINVAL for a plaintext volume or a clone with its own format. */
int cvd_backup_create(struct cvd *d, const char *volume, const char *snapshot,
                      struct cvd_backup_info *out);
/* Every backup in the target (of volume only, if not NULL), newest first;
 * *out malloc'ed. */
int cvd_backup_list(struct cvd *d, const char *volume,
                    struct cvd_backup_info **out, size_t *n);
int cvd_backup_get(struct cvd *d, const char *id,
                   struct cvd_backup_info *out);

enum cvd_backup_problem_kind {
    CVD_BACKUP_BLOCK_MISSING,
    CVD_BACKUP_BLOCK_CHECKSUM,      /* its bytes are not its checksum's */
    CVD_BACKUP_BLOCK_SIZE,          /* shorter or longer than listed */
};
struct cvd_backup_problem {
    uint64_t offset;                /* raw image offset of the block */
    char sha256[65];
    enum cvd_backup_problem_kind kind;
};
struct cvd_backup_verify {
    /* The manifest's MAC checked with the key of the header it lists;
     * when 0, auth_error says why (no such secret here, wrong MAC). */
    int authenticated;
    char auth_error[512];
    uint64_t blocks, bytes;         /* checked */
    size_t nproblems;
    struct cvd_backup_problem *problems;    /* malloc'ed */
};
void cvd_backup_verify_free(struct cvd_backup_verify *v);
/* Rereads every block of backup id.  Returns 0 when the check ran (ok or
 * not: out says), a negative errno when it could not (no such backup, a
 * manifest that does not parse).  secret: the one that opens its header
 * (NULL: the backup's own, or the KEK token). */
int cvd_backup_verify(struct cvd *d, const char *id, const char *secret,
                      struct cvd_backup_verify *out);

/* A new volume name with backup id's exact effective size and header,
 * state restoring (never served) until every block is written and
 * checked, then ready.  secret: NULL for the backup's own secret (by its
 * name), else one that must open the backup's header (checked before
 * anything is written).  class_name: recorded as the volume's class.  A
 * missing secret makes the volume pending, waiting for it, as volume
 * create does.  *out is the new record (restoring or pending). */
int cvd_backup_restore(struct cvd *d, const char *id, const char *name,
                       const char *secret, const char *class_name,
                       struct cvd_volume_rec *out);
/* volumes-pending.c: if pending volume v is a restore waiting for its
 * secret, starts it and returns 1; 0 if v is not a restore; -ENOENT while
 * the secret is still missing. */
int cvd_backup_restore_pending(struct cvd *d, struct cvd_volume_rec *v);
/* volumes recovery: a volume left restoring by a stop is restored again
 * from the start (writing a block twice is harmless) or, if its backup is
 * gone, removed; returns 1 if v was a restore it took over. */
int cvd_backup_restore_recover(struct cvd *d, struct cvd_volume_rec *v);

/* The oldest cluster KEK generation a Completed backup of this cluster
 * names (0: none, or no target set), for a KEK rotation, which must not
 * delete it: a KEK-only backup restores only through it.  A target that is
 * set but cannot be listed is an error (the rotation then keeps every
 * generation). */
int cvd_backups_kek_floor(struct cvd *d, uint32_t *floor);

/* Removes backup id's manifest, then every block no other manifest names
 * (under the target's exclusive lock: -EBUSY while a backup, restore or
 * verify of any cluster holds it).  *freed: bytes of blocks removed. */
int cvd_backup_delete(struct cvd *d, const char *id, uint64_t *freed);

#endif

/* The daemon's backups inside backup/ (backup*.c): the target it opened at
 * start (d->backups), who this daemon is in manifests, and the job that
 * runs a backup. */
#ifndef CRYPTVOLD_BACKUPS_INTERNAL_H
#define CRYPTVOLD_BACKUPS_INTERNAL_H

#include <pthread.h>
#include <stddef.h>

#include "backup.h"
#include "target.h"

struct cvd;

#define CVD_BACKUP_KEYS_KEPT 64

struct cvd_backups {
    pthread_mutex_t lock;
    /* NULL until it opens: at start, or at the first request after. */
    struct cvd_target *target;
    /* backup-keys.c: MAC keys by LUKS UUID (keys: locked memory, the
     * places used in turn). */
    char key_uuid[CVD_BACKUP_KEYS_KEPT][40];
    unsigned char *keys;
    unsigned key_next;
};

/* backup-keys.c: the MAC keys of volumes backed up since the start, so a
 * next backup unlocks no keyslot.  find: 1 and the key in out if kept. */
int cvd_backups_keys_init(struct cvd_backups *b);
void cvd_backups_keys_free(struct cvd_backups *b);
int cvd_backups_mac_key_find(struct cvd *d, const char *uuid,
                             unsigned char out[CVD_BACKUP_MAC_KEY]);
void cvd_backups_mac_key_keep(struct cvd *d, const char *uuid,
                              const unsigned char key[CVD_BACKUP_MAC_KEY]);

/* How long a backup, verify or restore waits for the target's shared
 * lock, and a delete for its exclusive one, before -EBUSY. */
#define CVD_BACKUP_LOCK_WAIT_MS 5000

/* d's open target (opened now if it could not be at start); -ENODEV
 * "no backup target is set: backup-target in cryptvold.conf or
 * --backup-target" without one; -ENODEV too, saying why, for one that
 * does not open. */
int cvd_backups_target(struct cvd *d, struct cvd_target **out);
/* This daemon's cluster id ("" on a single node without one), as the
 * manifests of its backups name it. */
void cvd_backups_cluster(struct cvd *d, char *buf, size_t len);
/* 1 if info was made by this daemon (its cluster and node). */
int cvd_backup_is_ours(struct cvd *d, const struct cvd_backup_info *info);
/* -EINVAL unless id is a backup id ("bk-" and 16 hex digits): checked
 * before it becomes a file name. */
int cvd_backup_check_id(const char *id);
/* While info is InProgress and its job runs here: the job's done and
 * total into info (else both 0); when its job failed and could not mark
 * the manifest (a full target), Failed with the job's error. */
void cvd_backup_fill_progress(struct cvd *d, struct cvd_backup_info *info);

#endif

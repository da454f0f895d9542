/* Inside the restore (backup-restore.c, restore-job.c): what a restore
 * carries from its checks to its job, and its journal. */
#ifndef CRYPTVOLD_BACKUP_RESTORE_INTERNAL_H
#define CRYPTVOLD_BACKUP_RESTORE_INTERNAL_H

#include <limits.h>
#include <stdint.h>

#include "backup-internal.h"

struct cvd;
struct cvd_job;

/* DATA-DIR/restores/NAME.json: which backup a volume in state restoring
 * (or pending, waiting for a secret) is restored from, so that the next
 * start can do it again.  secret "": the backup's own. */
struct cvd_restore_journal {
    char backup[CVD_BACKUP_ID_MAX + 1];
    char secret[CVD_NAME_MAX + 1];
    char class_name[CVD_NAME_MAX + 1];
    char uuid[40];      /* the backup's LUKS UUID: the record's too */
};
/* Written durably (temporary name, synced, renamed, directory synced). */
int cvd_restore_journal_write(struct cvd *d, const char *name,
                              const struct cvd_restore_journal *j);
/* -ENOENT (no message) if there is none. */
int cvd_restore_journal_read(struct cvd *d, const char *name,
                             struct cvd_restore_journal *j);
/* A missing journal is not an error. */
int cvd_restore_journal_remove(struct cvd *d, const char *name);

/* A restore whose backup is open, checked and authenticated: the job's
 * argument (freed with cvd_restore_free, which releases the lock). */
struct cvd_restore {
    struct cvd_target *t;
    int lock_fd;                        /* the target's shared lock */
    struct cvd_manifest m;              /* authenticated */
    char name[CVD_NAME_MAX + 1];
    char chain[PATH_MAX];               /* the ".creating" chain */
    char final[PATH_MAX];
    unsigned delay_ms;                  /* backup-delay-ms: tests */
};
void cvd_restore_free(void *arg);

/* The job (CVD_JOB_RESTORE) of volume rs->name, whose record is restoring
 * and whose ".creating" chain is made: every block fetched, checked and
 * written, then the chain renamed into place and the volume ready; on a
 * failure the chain, the record and the journal are removed. */
int cvd_restore_run(struct cvd *d, struct cvd_job *job, void *arg);

#endif

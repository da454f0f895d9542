/* Backup delete: under the target's exclusive lock (no backup, restore or
 * verify of any daemon sharing the target runs), the manifest goes, then
 * every block no manifest names: also what backups that failed or were
 * killed left behind. */
#include "backup.h"
#include "backups-internal.h"
#include "daemon.h"
#include "core/error.h"
#include "log.h"
#include "target.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* A manifest that does not parse (cut short, edited) is still removed:
 * deleting is how a user gets rid of it. */
static int check_exists(struct cvd_target *t, const char *id,
                        struct cvd_backup_info *info)
{
    struct cvd_manifest m = { 0 };
    int r = cvd_manifest_read(t, id, NULL, &m);

    memset(info, 0, sizeof *info);
    if (r == -ENOENT)
        return cv_error(-ENOENT, "backup %s: no such backup in %s", id,
                        cvd_target_dir(t));
    if (r < 0) {
        cvd_warn("backup %s: deleting a manifest that does not read: %s", id,
                 cv_last_error());
        cv_clear_error();
        r = 0;
    } else {
        *info = m.info;
    }
    cvd_manifest_free(&m);
    return r;
}

int cvd_backup_delete(struct cvd *d, const char *id, uint64_t *freed)
{
    struct cvd_backup_info info;
    struct cvd_target *t = NULL;
    int fd = -1, r = cvd_backup_check_id(id);

    *freed = 0;
    if (r == 0)
        r = cvd_backups_target(d, &t);
    if (r == 0)
        r = cvd_target_lock(t, CVD_TARGET_EXCLUSIVE, CVD_BACKUP_LOCK_WAIT_MS,
                            &fd);
    if (r == 0)
        r = check_exists(t, id, &info);
    if (r == 0)
        r = cvd_manifest_remove(t, id);
    if (r == 0 && (r = cvd_target_collect(t, freed)) < 0)
        cv_error_prefix(r, "backup %s: removed; collecting the blocks no "
                        "other backup uses (the next delete tries again)", id);
    if (fd >= 0)
        cvd_target_unlock(fd);
    if (r == 0)
        cvd_info("backup %s%s%s deleted: %llu bytes of blocks freed", id,
                 info.volume[0] ? " of volume " : "", info.volume,
                 (unsigned long long)*freed);
    return r;
}

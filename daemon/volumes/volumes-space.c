/* Room for metadata on a full disk.
 *
 * SQLite needs new blocks to commit anything, also a delete, so a data
 * directory whose file system is full could not delete the volume that
 * would free it.  DATA-DIR/space.reserve is a file of RESERVE_BYTES,
 * allocated at start while there is room.  A delete (and the undo of a
 * failed step) whose metadata write fails for want of space removes the
 * reserve and tries once more; the reserve is made again once a delete has
 * freed space.  Other requests never use it: they fail with a message
 * saying the disk is full and what to do. */
#include "volumes-util.h"
#include "daemon.h"
#include "core/error.h"
#include "log.h"
#include "meta/meta.h"
#include "metrics/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Far more than a few record updates need, also when the WAL must grow
 * to its checkpoint size (1000 pages of 4 KiB). */
#define RESERVE_BYTES (8u << 20)

static void reserve_path(struct cvd *d, char *buf, size_t len)
{
    snprintf(buf, len, "%s/space.reserve", d->cfg.data_dir);
}

int cvd_space_reserve(struct cvd *d)
{
    char path[PATH_MAX];
    struct stat st;
    int fd, r = 0;

    reserve_path(d, path, sizeof path);
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return cv_error(-errno, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_blocks * 512 >= RESERVE_BYTES)
        goto out;
    r = posix_fallocate(fd, 0, RESERVE_BYTES);
    if (r == 0 && fsync(fd) < 0)
        r = errno;
    if (r)
        r = cv_error(-r, "%s: allocating %u MiB kept free for metadata on a "
                     "full disk: %s", path, RESERVE_BYTES >> 20, strerror(r));
out:
    close(fd);
    return r;
}

/* 1 if a reserve was there and is gone now, 0 if there was none. */
static int release(struct cvd *d, const char *why)
{
    char path[PATH_MAX];

    reserve_path(d, path, sizeof path);
    if (unlink(path) < 0)
        return 0;
    cvd_warn("disk full under %s: released the %u MiB kept for metadata %s; "
             "delete volumes or free space on that file system",
             d->cfg.data_dir, RESERVE_BYTES >> 20, why);
    return 1;
}

void cvd_space_at_start(struct cvd *d)
{
    struct statvfs vfs;

    /* Opening the metadata makes its WAL and index files: on a full disk
     * that fails, and the daemon could not start to delete anything. */
    if (statvfs(d->cfg.data_dir, &vfs) == 0 &&
        (uint64_t)vfs.f_bavail * vfs.f_frsize < RESERVE_BYTES / 2)
        release(d, "to open the metadata");
}

int cvd_space_volume_update(struct cvd *d, struct cvd_volume_rec *v,
                            const char *expect)
{
    int r = d->meta->ops->volume_update(d->meta, v, expect);

    if (r == -ENOSPC && release(d, "to record a delete"))
        r = d->meta->ops->volume_update(d->meta, v, expect);
    return r;
}

int cvd_space_volume_remove(struct cvd *d, const char *name)
{
    int r = d->meta->ops->volume_remove(d->meta, name);

    if (r == -ENOSPC && release(d, "to record a delete"))
        r = d->meta->ops->volume_remove(d->meta, name);
    /* The record is gone: so are its counters (a volume made again with
     * this name starts from 0). */
    if (r == 0)
        cvd_metrics_volume_forget(d->metrics, name);
    return r;
}

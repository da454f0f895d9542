/* The target's lock: flock(2) on DIR/lock, shared by backups, restores
 * and verifies (which only add blocks or read them), exclusive for a
 * delete (which removes blocks another backup may be about to name).
 * flock locks the open file, so two descriptors of one process exclude
 * each other as two processes do, and NFS v4 carries them across
 * clients. */
#include "target-internal.h"

#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Polls rather than blocks: a blocking flock cannot be given a deadline
 * without a signal, which a thread of the daemon must not take. */
static int take(int fd, int op, unsigned wait_ms)
{
    int64_t deadline = now_ms() + wait_ms;
    unsigned pause = 5;

    for (;;) {
        if (flock(fd, op | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        if (now_ms() >= deadline)
            return -EBUSY;
        sleep_ms(pause);
        if (pause < 100)
            pause *= 2;
    }
}

int cvd_target_lock(struct cvd_target *t, enum cvd_target_lock_kind kind,
                    unsigned wait_ms, int *fd)
{
    int exclusive = kind == CVD_TARGET_EXCLUSIVE, lfd, r;
    char path[PATH_MAX];

    r = cvd_target_path(t, path, sizeof path, "lock");
    if (r < 0)
        return r;
    lfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0)
        return cvd_target_fail(t, errno, "lock", "open");
    r = take(lfd, exclusive ? LOCK_EX : LOCK_SH, wait_ms);
    if (r == -EBUSY)
        r = cv_error(-EBUSY, "backup target %s is busy: %s (maybe of "
                     "another cluster) holds its lock; waited %u ms for it",
                     t->dir, exclusive ?
                     "a backup, restore, verify or delete" : "a delete",
                     wait_ms);
    else if (r < 0)
        r = cvd_target_fail(t, -r, "lock", exclusive ? "flock exclusive" :
                            "flock shared");
    if (r < 0) {
        close(lfd);
        return r;
    }
    *fd = lfd;
    return 0;
}

void cvd_target_unlock(int fd)
{
    if (fd >= 0)
        close(fd);      /* drops the flock with the open file */
}

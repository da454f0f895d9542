/* powercut-shim: an LD_PRELOAD library that records, in order, every write,
 * sync and namespace change a process makes under one directory, so that
 * tests/tools/powercut.py can rebuild the directory "as of a power cut" at
 * any point of the run (docs/testing.md, "The power-loss harness").
 *
 *   CV_POWERCUT_ROOT=DIR  only files under DIR (resolved at start; it must
 *                         exist) are recorded
 *   CV_POWERCUT_LOG=FILE  the log, appended to (outside DIR)
 *
 * Each record is one header line and its payload, appended with one
 * write(2) under a mutex, so records never interleave and the log never
 * records itself:
 *
 *   OP DEV:INO OFF LEN START FLAGS PLEN P2LEN DLEN\n PATH PATH2 DATA
 *
 * PATH and PATH2 are relative to DIR ("." is DIR itself), DATA is what a
 * write wrote.  A write, truncate or allocation is recorded after the real
 * call succeeded and before the wrapper returns, so it precedes anything
 * the caller does on the strength of it.  A sync record is appended when
 * the real sync returned 0 and carries in START the log's length when the
 * sync began: it covers the writes recorded before that, no later ones.
 * A path is that of the descriptor at the time of the call
 * (/proc/self/fd/N, which follows renames); a file already unlinked
 * ("(deleted)") is not recorded, nor are mmap'ed writes or stdio.
 *
 * This file has the log, writes, sizes and syncs; powercut-names.c the
 * opens and the namespace.  Built without sanitizers: it is preloaded
 * into ASan processes too (tests/lib.sh sets verify_asan_link_order=0 for
 * them). */
#include "powercut-internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

struct pc_real pc_real;

/* Configuration, set once at start. */
static char root[PATH_MAX];
static size_t root_len;
static int log_fd = -1;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void die(const char *what)
{
    char msg[PATH_MAX + 256];
    int n = snprintf(msg, sizeof msg, "powercut-shim: %s: %s\n", what,
                     strerror(errno));

    if (pc_real.write && n > 0)
        pc_real.write(2, msg, (size_t)n);
    abort();
}

static void *next(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);

    if (!p) {
        errno = ENOSYS;
        die(name);
    }
    return p;
}

static void find_real(void)
{
    pc_real.write = next("write");
    pc_real.writev = next("writev");
    pc_real.pwrite = next("pwrite64");
    pc_real.pwritev = next("pwritev64");
    pc_real.pwritev2 = next("pwritev64v2");
    pc_real.fsync = next("fsync");
    pc_real.fdatasync = next("fdatasync");
    pc_real.sync_file_range = next("sync_file_range");
    pc_real.syncfs = next("syncfs");
    pc_real.sync = next("sync");
    pc_real.ftruncate = next("ftruncate64");
    pc_real.truncate = next("truncate64");
    pc_real.fallocate = next("fallocate64");
    pc_real.posix_fallocate = next("posix_fallocate64");
    pc_real.open = next("open64");
    pc_real.openat = next("openat64");
    pc_real.renameat = next("renameat");
    pc_real.renameat2 = next("renameat2");
    pc_real.linkat = next("linkat");
    pc_real.unlinkat = next("unlinkat");
    pc_real.mkdirat = next("mkdirat");
}

static void append(const void *buf, size_t len);

static void init(void)
{
    const char *r = getenv("CV_POWERCUT_ROOT"), *l = getenv("CV_POWERCUT_LOG");
    char head[PATH_MAX + 64];
    int n;

    find_real();
    if (!r || !*r || !l || !*l)
        return;                 /* not asked to record: a plain process */
    if (!realpath(r, root))
        die("CV_POWERCUT_ROOT");
    root_len = strlen(root);
    log_fd = pc_real.open(l, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (log_fd < 0)
        die("CV_POWERCUT_LOG");
    /* Informational: which process started recording, and where. */
    n = snprintf(head, sizeof head, "P %ld:0 0 0 0 - %zu 0 0\n%s",
                 (long)getpid(), root_len, root);
    append(head, (size_t)n);
}

void pc_init(void)
{
    pthread_once(&once, init);
}

int pc_recording(void)
{
    pc_init();
    return log_fd >= 0;
}

__attribute__((constructor)) static void start(void)
{
    pc_recording();
}

/* All of iov to the log, the caller holding log_lock; a log we cannot
 * write would make every replay a lie, so that ends the process. */
static void append_locked(struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        ssize_t w = pc_real.writev(log_fd, iov, cnt);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("writing the log");
        while (cnt > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
}

static void append_iov(struct iovec *iov, int cnt)
{
    pthread_mutex_lock(&log_lock);
    append_locked(iov, cnt);
    pthread_mutex_unlock(&log_lock);
}

static void append(const void *buf, size_t len)
{
    struct iovec iov = { (void *)buf, len };

    append_iov(&iov, 1);
}

/* The log's length now: a sync started now covers what is below it. */
static long long log_length(void)
{
    struct stat st;
    long long n;

    pthread_mutex_lock(&log_lock);
    if (fstat(log_fd, &st) < 0)
        die("fstat of the log");
    n = (long long)st.st_size;
    pthread_mutex_unlock(&log_lock);
    return n;
}

/* abs relative to the root, into rel; 0 if abs is not under it. */
static int under_root(const char *abs, char *rel, size_t len)
{
    if (strncmp(abs, root, root_len) != 0)
        return 0;
    if (abs[root_len] == '\0')
        snprintf(rel, len, ".");
    else if (abs[root_len] == '/' || root_len == 1)
        snprintf(rel, len, "%s", abs + root_len + (root_len > 1));
    else
        return 0;
    return 1;
}

/* The file behind fd, if it is one under the root and still linked. */
int pc_fd_target(int fd, struct pc_target *t)
{
    char link[64], abs[PATH_MAX];
    struct stat st;
    ssize_t n;
    size_t dl = sizeof " (deleted)" - 1;

    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, abs, sizeof abs - 1);
    if (n <= 0 || abs[0] != '/')
        return 0;               /* sockets, pipes, anon inodes */
    abs[n] = '\0';
    if ((size_t)n > dl && !strcmp(abs + n - dl, " (deleted)"))
        return 0;
    if (!under_root(abs, t->rel, sizeof t->rel) || fstat(fd, &st) < 0)
        return 0;
    t->dev = st.st_dev;
    t->ino = st.st_ino;
    t->mode = st.st_mode;
    return 1;
}

/* The entry (dirfd, path) names, its last component not followed: the
 * directory part resolved, the name appended.  0 if not under the root. */
int pc_entry_rel(int dirfd, const char *path, char *rel, size_t len)
{
    char dir[PATH_MAX], base[PATH_MAX], rdir[PATH_MAX], abs[2 * PATH_MAX];
    const char *slash;
    size_t plen = strlen(path);

    while (plen > 1 && path[plen - 1] == '/')
        plen--;                 /* "dir/" names dir */
    if (plen >= sizeof dir)
        return 0;
    memcpy(dir, path, plen);
    dir[plen] = '\0';
    slash = strrchr(dir, '/');
    snprintf(base, sizeof base, "%s", slash ? slash + 1 : dir);
    if (slash)
        dir[slash == dir ? 1 : slash - dir] = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    if (dir[0] != '/' && dirfd != AT_FDCWD) {
        char link[64], at[PATH_MAX], joined[2 * PATH_MAX];
        ssize_t n;

        snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
        n = readlink(link, at, sizeof at - 1);
        if (n <= 0)
            return 0;
        at[n] = '\0';
        snprintf(joined, sizeof joined, "%s/%s", at, dir);
        if (!realpath(joined, rdir))
            return 0;
    } else if (!realpath(dir, rdir)) {
        return 0;
    }
    if (!strcmp(base, ".") || !strcmp(base, "..") || !base[0])
        return 0;               /* not an entry we can name */
    snprintf(abs, sizeof abs, "%s%s%s", rdir, strcmp(rdir, "/") ? "/" : "",
             base);
    return under_root(abs, rel, len);
}

/* One record: header, paths, data. */
void pc_record(char op, dev_t dev, ino_t ino, long long off,
                   long long len, long long start, const char *flags,
                   const char *p1, const char *p2, const struct iovec *data,
                   int ndata, size_t dlen)
{
    char head[256];
    struct iovec iov[3 + 64];
    int cnt = 0, i;
    size_t left = dlen;
    size_t l1 = p1 ? strlen(p1) : 0, l2 = p2 ? strlen(p2) : 0;
    int n = snprintf(head, sizeof head, "%c %llu:%llu %lld %lld %lld %s %zu "
                     "%zu %zu\n", op, (unsigned long long)dev,
                     (unsigned long long)ino, off, len, start,
                     flags && *flags ? flags : "-", l1, l2, dlen);

    iov[cnt++] = (struct iovec){ head, (size_t)n };
    if (l1)
        iov[cnt++] = (struct iovec){ (void *)p1, l1 };
    if (l2)
        iov[cnt++] = (struct iovec){ (void *)p2, l2 };
    /* One record is one append under the lock, even when its data comes
     * in more buffers than fit in one writev. */
    pthread_mutex_lock(&log_lock);
    for (i = 0; i < ndata && left > 0; i++) {
        size_t take = data[i].iov_len < left ? data[i].iov_len : left;

        if (cnt == (int)(sizeof iov / sizeof iov[0])) {
            append_locked(iov, cnt);
            cnt = 0;
        }
        if (take)
            iov[cnt++] = (struct iovec){ data[i].iov_base, take };
        left -= take;
    }
    append_locked(iov, cnt);
    pthread_mutex_unlock(&log_lock);
}

/* A write of n bytes at off (or, off < 0, ending at the file position)
 * that fd has just done. */
static void record_write(int fd, const struct iovec *iov, int cnt, ssize_t n,
                         off_t off, int rwf)
{
    struct pc_target t;
    int fl, durable;

    if (n <= 0 || !pc_recording() || !pc_fd_target(fd, &t) || !S_ISREG(t.mode))
        return;
    fl = fcntl(fd, F_GETFL);
    if (rwf & RWF_APPEND) {     /* at the end, whatever off says */
        struct stat st;
        off = fstat(fd, &st) == 0 ? st.st_size - n : -1;
    } else if (off < 0) {       /* at the file position (O_APPEND: the end) */
        off = lseek(fd, 0, SEEK_CUR) - n;
    }
    if (off < 0) {
        errno = EINVAL;
        die("finding where a write went");
    }
    /* O_SYNC/O_DSYNC and RWF_SYNC/RWF_DSYNC: durable when it returns. */
    durable = (fl >= 0 && (fl & (O_SYNC | O_DSYNC))) ||
              (rwf & (RWF_SYNC | RWF_DSYNC));
    pc_record('W', t.dev, t.ino, (long long)off, n, 0, durable ? "d" : "-",
           t.rel, NULL, iov, cnt, (size_t)n);
}

/* ---- writes ------------------------------------------------------------ */

EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
    ssize_t n;
    struct iovec iov = { (void *)buf, len };

    pc_init();
    n = pc_real.write(fd, buf, len);
    if (n > 0) {
        int e = errno;
        record_write(fd, &iov, 1, n, -1, 0);
        errno = e;
    }
    return n;
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    ssize_t n;

    pc_init();
    n = pc_real.writev(fd, iov, cnt);
    if (n > 0) {
        int e = errno;
        record_write(fd, iov, cnt, n, -1, 0);
        errno = e;
    }
    return n;
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    ssize_t n;
    struct iovec iov = { (void *)buf, len };

    pc_init();
    n = pc_real.pwrite(fd, buf, len, off);
    if (n > 0) {
        int e = errno;
        record_write(fd, &iov, 1, n, off, 0);
        errno = e;
    }
    return n;
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    return pwrite64(fd, buf, len, off);
}

/* pwritev2 with off -1 writes at the file position, like writev. */
EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt,
                           off_t off, int flags)
{
    ssize_t n;

    pc_init();
    n = pc_real.pwritev2(fd, iov, cnt, off, flags);
    if (n > 0) {
        int e = errno;
        record_write(fd, iov, cnt, n, off, flags);
        errno = e;
    }
    return n;
}

EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off,
                        int flags)
{
    return pwritev64v2(fd, iov, cnt, off, flags);
}

EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    ssize_t n;

    pc_init();
    n = pc_real.pwritev(fd, iov, cnt, off);
    if (n > 0) {
        int e = errno;
        record_write(fd, iov, cnt, n, off, 0);
        errno = e;
    }
    return n;
}

EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    return pwritev64(fd, iov, cnt, off);
}

/* ---- sizes and allocation ---------------------------------------------- */

static void record_size_op(int fd, char op, off_t off, off_t len,
                           const char *flags)
{
    struct pc_target t;
    int e = errno;

    if (pc_recording() && pc_fd_target(fd, &t) && S_ISREG(t.mode))
        pc_record(op, t.dev, t.ino, (long long)off, (long long)len, 0, flags,
               t.rel, NULL, NULL, 0, 0);
    errno = e;
}

EXPORT int ftruncate64(int fd, off_t size)
{
    int r;

    pc_init();
    r = pc_real.ftruncate(fd, size);
    if (r == 0)
        record_size_op(fd, 'T', size, 0, "-");
    return r;
}

EXPORT int ftruncate(int fd, off_t size)
{
    return ftruncate64(fd, size);
}

EXPORT int truncate64(const char *path, off_t size)
{
    int r, fd;

    pc_init();
    r = pc_real.truncate(path, size);
    if (r == 0 && pc_recording()) {
        int e = errno;
        /* The file by its descriptor, for its inode and canonical path. */
        fd = pc_real.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd >= 0) {
            record_size_op(fd, 'T', size, 0, "-");
            close(fd);
        }
        errno = e;
    }
    return r;
}

EXPORT int truncate(const char *path, off_t size)
{
    return truncate64(path, size);
}

/* Punching a hole or zeroing a range reads back as zeros ('Z'; FLAGS 'p'
 * for a hole: the layer store tells held blocks from holes, so the replay
 * must make the hole, not write zeros); a plain allocation only changes
 * the size, unless FALLOC_FL_KEEP_SIZE ('A'). */
static void record_fallocate(int fd, int mode, off_t off, off_t len)
{
    const char *keep = (mode & FALLOC_FL_KEEP_SIZE) ? "k" : "-";

    if (mode & FALLOC_FL_PUNCH_HOLE)
        record_size_op(fd, 'Z', off, len, "kp");    /* PUNCH needs KEEP_SIZE */
    else if (mode & FALLOC_FL_ZERO_RANGE)
        record_size_op(fd, 'Z', off, len, keep);
    else if (!(mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)))
        record_size_op(fd, 'A', off, len, keep);
    else
        record_size_op(fd, '?', off, len, "-");  /* not modelled: replay refuses */
}

EXPORT int fallocate64(int fd, int mode, off_t off, off_t len)
{
    int r;

    pc_init();
    r = pc_real.fallocate(fd, mode, off, len);
    if (r == 0)
        record_fallocate(fd, mode, off, len);
    return r;
}

EXPORT int fallocate(int fd, int mode, off_t off, off_t len)
{
    return fallocate64(fd, mode, off, len);
}

EXPORT int posix_fallocate64(int fd, off_t off, off_t len)
{
    int r;

    pc_init();
    r = pc_real.posix_fallocate(fd, off, len);
    if (r == 0)
        record_fallocate(fd, 0, off, len);
    return r;
}

EXPORT int posix_fallocate(int fd, off_t off, off_t len)
{
    return posix_fallocate64(fd, off, len);
}

/* ---- syncs ------------------------------------------------------------- */

/* fsync or fdatasync: 'S' for a file, 'D' for a directory (its entries). */
static int do_sync(int fd, int (*fn)(int), const char *kind)
{
    struct pc_target t;
    long long start = 0;
    int mine, r;

    pc_init();
    mine = pc_recording() && pc_fd_target(fd, &t) &&
           (S_ISREG(t.mode) || S_ISDIR(t.mode));
    if (mine)
        start = log_length();
    r = fn(fd);
    if (r == 0 && mine) {
        int e = errno;
        pc_record(S_ISDIR(t.mode) ? 'D' : 'S', t.dev, t.ino, 0, 0, start, kind,
               t.rel, NULL, NULL, 0, 0);
        errno = e;
    }
    return r;
}

EXPORT int fsync(int fd)
{
    return do_sync(fd, pc_real.fsync, "f");
}

EXPORT int fdatasync(int fd)
{
    return do_sync(fd, pc_real.fdatasync, "d");
}

/* Starts writeback only: no promise of durability (no metadata, no disk
 * cache flush), so recorded for information ('I') and never a cover. */
EXPORT int sync_file_range(int fd, off_t off, off_t len, unsigned flags)
{
    int r;

    pc_init();
    r = pc_real.sync_file_range(fd, off, len, flags);
    if (r == 0)
        record_size_op(fd, 'I', off, len, "-");
    return r;
}

/* Everything on the file system ('G'): the root is assumed to be on one. */
static void record_global(long long start)
{
    int e = errno;

    pc_record('G', 0, 0, 0, 0, start, "-", NULL, NULL, NULL, 0, 0);
    errno = e;
}

EXPORT int syncfs(int fd)
{
    long long start = 0;
    int r;

    pc_init();
    if (pc_recording())
        start = log_length();
    r = pc_real.syncfs(fd);
    if (r == 0 && pc_recording())
        record_global(start);
    return r;
}

EXPORT void sync(void)
{
    long long start = 0;

    pc_init();
    if (pc_recording())
        start = log_length();
    pc_real.sync();
    if (pc_recording())
        record_global(start);
}


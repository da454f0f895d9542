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
 * Built without sanitizers: it is preloaded into ASan processes too
 * (tests/lib.sh sets verify_asan_link_order=0 for them). */
#undef _FILE_OFFSET_BITS        /* we define both open and open64 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* The real functions, found once. */
static struct {
    ssize_t (*write)(int, const void *, size_t);
    ssize_t (*writev)(int, const struct iovec *, int);
    ssize_t (*pwrite)(int, const void *, size_t, off_t);
    ssize_t (*pwritev)(int, const struct iovec *, int, off_t);
    ssize_t (*pwritev2)(int, const struct iovec *, int, off_t, int);
    int (*fsync)(int);
    int (*fdatasync)(int);
    int (*sync_file_range)(int, off_t, off_t, unsigned);
    int (*syncfs)(int);
    void (*sync)(void);
    int (*ftruncate)(int, off_t);
    int (*truncate)(const char *, off_t);
    int (*fallocate)(int, int, off_t, off_t);
    int (*posix_fallocate)(int, off_t, off_t);
    int (*open)(const char *, int, ...);
    int (*openat)(int, const char *, int, ...);
    int (*renameat)(int, const char *, int, const char *);
    int (*renameat2)(int, const char *, int, const char *, unsigned);
    int (*linkat)(int, const char *, int, const char *, int);
    int (*unlinkat)(int, const char *, int);
    int (*mkdirat)(int, const char *, mode_t);
} real;

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

    if (real.write && n > 0)
        real.write(2, msg, (size_t)n);
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
    real.write = next("write");
    real.writev = next("writev");
    real.pwrite = next("pwrite64");
    real.pwritev = next("pwritev64");
    real.pwritev2 = next("pwritev64v2");
    real.fsync = next("fsync");
    real.fdatasync = next("fdatasync");
    real.sync_file_range = next("sync_file_range");
    real.syncfs = next("syncfs");
    real.sync = next("sync");
    real.ftruncate = next("ftruncate64");
    real.truncate = next("truncate64");
    real.fallocate = next("fallocate64");
    real.posix_fallocate = next("posix_fallocate64");
    real.open = next("open64");
    real.openat = next("openat64");
    real.renameat = next("renameat");
    real.renameat2 = next("renameat2");
    real.linkat = next("linkat");
    real.unlinkat = next("unlinkat");
    real.mkdirat = next("mkdirat");
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
    log_fd = real.open(l, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (log_fd < 0)
        die("CV_POWERCUT_LOG");
    /* Informational: which process started recording, and where. */
    n = snprintf(head, sizeof head, "P %ld:0 0 0 0 - %zu 0 0\n%s",
                 (long)getpid(), root_len, root);
    append(head, (size_t)n);
}

static int recording(void)
{
    pthread_once(&once, init);
    return log_fd >= 0;
}

__attribute__((constructor)) static void start(void)
{
    recording();
}

/* All of iov to the log, the caller holding log_lock; a log we cannot
 * write would make every replay a lie, so that ends the process. */
static void append_locked(struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        ssize_t w = real.writev(log_fd, iov, cnt);

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

/* What a record is about: a file (or directory) under the root. */
struct target {
    char rel[PATH_MAX];
    dev_t dev;
    ino_t ino;
    mode_t mode;
};

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
static int fd_target(int fd, struct target *t)
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
static int entry_rel(int dirfd, const char *path, char *rel, size_t len)
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
static void record(char op, dev_t dev, ino_t ino, long long off,
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
    struct target t;
    int fl, durable;

    if (n <= 0 || !recording() || !fd_target(fd, &t) || !S_ISREG(t.mode))
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
    record('W', t.dev, t.ino, (long long)off, n, 0, durable ? "d" : "-",
           t.rel, NULL, iov, cnt, (size_t)n);
}

/* ---- writes ------------------------------------------------------------ */

EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
    ssize_t n;
    struct iovec iov = { (void *)buf, len };

    pthread_once(&once, init);
    n = real.write(fd, buf, len);
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

    pthread_once(&once, init);
    n = real.writev(fd, iov, cnt);
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

    pthread_once(&once, init);
    n = real.pwrite(fd, buf, len, off);
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

    pthread_once(&once, init);
    n = real.pwritev2(fd, iov, cnt, off, flags);
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

    pthread_once(&once, init);
    n = real.pwritev(fd, iov, cnt, off);
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
    struct target t;
    int e = errno;

    if (recording() && fd_target(fd, &t) && S_ISREG(t.mode))
        record(op, t.dev, t.ino, (long long)off, (long long)len, 0, flags,
               t.rel, NULL, NULL, 0, 0);
    errno = e;
}

EXPORT int ftruncate64(int fd, off_t size)
{
    int r;

    pthread_once(&once, init);
    r = real.ftruncate(fd, size);
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

    pthread_once(&once, init);
    r = real.truncate(path, size);
    if (r == 0 && recording()) {
        int e = errno;
        /* The file by its descriptor, for its inode and canonical path. */
        fd = real.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
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

/* Punching a hole or zeroing a range reads back as zeros ('Z'); a plain
 * allocation only changes the size, unless FALLOC_FL_KEEP_SIZE ('A'). */
static void record_fallocate(int fd, int mode, off_t off, off_t len)
{
    const char *keep = (mode & FALLOC_FL_KEEP_SIZE) ? "k" : "-";

    if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
        record_size_op(fd, 'Z', off, len, keep);
    else if (!(mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)))
        record_size_op(fd, 'A', off, len, keep);
    else
        record_size_op(fd, '?', off, len, "-");  /* not modelled: replay refuses */
}

EXPORT int fallocate64(int fd, int mode, off_t off, off_t len)
{
    int r;

    pthread_once(&once, init);
    r = real.fallocate(fd, mode, off, len);
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

    pthread_once(&once, init);
    r = real.posix_fallocate(fd, off, len);
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
    struct target t;
    long long start = 0;
    int mine, r;

    pthread_once(&once, init);
    mine = recording() && fd_target(fd, &t) &&
           (S_ISREG(t.mode) || S_ISDIR(t.mode));
    if (mine)
        start = log_length();
    r = fn(fd);
    if (r == 0 && mine) {
        int e = errno;
        record(S_ISDIR(t.mode) ? 'D' : 'S', t.dev, t.ino, 0, 0, start, kind,
               t.rel, NULL, NULL, 0, 0);
        errno = e;
    }
    return r;
}

EXPORT int fsync(int fd)
{
    return do_sync(fd, real.fsync, "f");
}

EXPORT int fdatasync(int fd)
{
    return do_sync(fd, real.fdatasync, "d");
}

/* Starts writeback only: no promise of durability (no metadata, no disk
 * cache flush), so recorded for information ('I') and never a cover. */
EXPORT int sync_file_range(int fd, off_t off, off_t len, unsigned flags)
{
    int r;

    pthread_once(&once, init);
    r = real.sync_file_range(fd, off, len, flags);
    if (r == 0)
        record_size_op(fd, 'I', off, len, "-");
    return r;
}

/* Everything on the file system ('G'): the root is assumed to be on one. */
static void record_global(long long start)
{
    int e = errno;

    record('G', 0, 0, 0, 0, start, "-", NULL, NULL, NULL, 0, 0);
    errno = e;
}

EXPORT int syncfs(int fd)
{
    long long start = 0;
    int r;

    pthread_once(&once, init);
    if (recording())
        start = log_length();
    r = real.syncfs(fd);
    if (r == 0 && recording())
        record_global(start);
    return r;
}

EXPORT void sync(void)
{
    long long start = 0;

    pthread_once(&once, init);
    if (recording())
        start = log_length();
    real.sync();
    if (recording())
        record_global(start);
}

/* ---- opens ------------------------------------------------------------- */

/* After a successful open: 'C' if O_CREAT made the file, 'T' (to 0) if
 * O_TRUNC cut an existing one. */
static void record_open(int fd, int flags, int existed)
{
    struct target t;
    int e = errno;

    if (fd >= 0 && recording() && fd_target(fd, &t) && S_ISREG(t.mode)) {
        if ((flags & O_CREAT) && !existed)
            record('C', t.dev, t.ino, 0, 0, 0, "-", t.rel, NULL, NULL, 0, 0);
        else if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY)
            record('T', t.dev, t.ino, 0, 0, 0, "-", t.rel, NULL, NULL, 0, 0);
    }
    errno = e;
}

static int existed_before(int dirfd, const char *path, int flags)
{
    struct stat st;

    if (!(flags & O_CREAT) || !recording())
        return 1;
    return fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static int open_common(int dirfd, const char *path, int flags, mode_t mode)
{
    int existed, fd;

    pthread_once(&once, init);
    existed = existed_before(dirfd, path, flags);
    fd = dirfd == AT_FDCWD ? real.open(path, flags, mode)
                           : real.openat(dirfd, path, flags, mode);
    if (fd >= 0 && (flags & (O_CREAT | O_TRUNC)))
        record_open(fd, flags, existed);
    return fd;
}

/* The mode argument is there only with O_CREAT or O_TMPFILE. */
#define MODE_ARG(flags, mode)                                           \
    do {                                                                \
        if ((flags) & (O_CREAT | __O_TMPFILE)) {                        \
            va_list ap;                                                 \
            va_start(ap, flags);                                        \
            mode = (mode_t)va_arg(ap, int);                             \
            va_end(ap);                                                 \
        }                                                               \
    } while (0)

EXPORT int open64(const char *path, int flags, ...)
{
    mode_t mode = 0;

    MODE_ARG(flags, mode);
    return open_common(AT_FDCWD, path, flags, mode);
}

EXPORT int open(const char *path, int flags, ...)
{
    mode_t mode = 0;

    MODE_ARG(flags, mode);
    return open_common(AT_FDCWD, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;

    MODE_ARG(flags, mode);
    return open_common(dirfd, path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;

    MODE_ARG(flags, mode);
    return open_common(dirfd, path, flags, mode);
}

/* _FORTIFY_SOURCE's checked opens (libcryptsetup calls __open_2). */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

EXPORT int __open_2(const char *path, int flags)
{
    return open_common(AT_FDCWD, path, flags, 0);
}

EXPORT int __open64_2(const char *path, int flags)
{
    return open_common(AT_FDCWD, path, flags, 0);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
    return open_common(dirfd, path, flags, 0);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
    return open_common(dirfd, path, flags, 0);
}

EXPORT int creat64(const char *path, mode_t mode)
{
    return open_common(AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC, mode);
}

EXPORT int creat(const char *path, mode_t mode)
{
    return creat64(path, mode);
}

/* ---- the namespace ----------------------------------------------------- */

/* The inode an entry names now (0 if it cannot be found). */
static void entry_inode(int dirfd, const char *path, dev_t *dev, ino_t *ino)
{
    struct stat st;

    *dev = 0;
    *ino = 0;
    if (fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        *dev = st.st_dev;
        *ino = st.st_ino;
    }
}

/* rename or link (op 'R', 'L') of (fd1, p1) to (fd2, p2), done: the paths
 * were resolved before (p1 may be gone after a rename). */
static void record_move(char op, int in1, const char *rel1, int fd2,
                        const char *p2, const char *flags)
{
    char rel2[PATH_MAX];
    dev_t dev;
    ino_t ino;
    int in2, e = errno;

    in2 = entry_rel(fd2, p2, rel2, sizeof rel2);
    entry_inode(fd2, p2, &dev, &ino);
    if (in1 && in2)
        record(op, dev, ino, 0, 0, 0, flags, rel1, rel2, NULL, 0, 0);
    else if (in1 && op == 'R')
        record('U', 0, 0, 0, 0, 0, "-", rel1, NULL, NULL, 0, 0);
    else if (in2)   /* content from outside the root: replay refuses */
        record('E', dev, ino, 0, 0, 0, "-", rel2, NULL, NULL, 0, 0);
    errno = e;
}

static int rename_common(int fd1, const char *p1, int fd2, const char *p2,
                         unsigned flags)
{
    char rel1[PATH_MAX];
    int in1 = 0, r;

    pthread_once(&once, init);
    if (recording())
        in1 = entry_rel(fd1, p1, rel1, sizeof rel1);
    r = flags ? real.renameat2(fd1, p1, fd2, p2, flags)
              : real.renameat(fd1, p1, fd2, p2);
    if (r == 0 && recording())
        record_move('R', in1, rel1, fd2, p2,
                    (flags & RENAME_EXCHANGE) ? "x" : "-");
    return r;
}

EXPORT int rename(const char *from, const char *to)
{
    return rename_common(AT_FDCWD, from, AT_FDCWD, to, 0);
}

EXPORT int renameat(int fd1, const char *from, int fd2, const char *to)
{
    return rename_common(fd1, from, fd2, to, 0);
}

EXPORT int renameat2(int fd1, const char *from, int fd2, const char *to,
                     unsigned flags)
{
    return rename_common(fd1, from, fd2, to, flags);
}

static int link_common(int fd1, const char *p1, int fd2, const char *p2,
                       int flags)
{
    char rel1[PATH_MAX];
    int in1 = 0, r;

    pthread_once(&once, init);
    if (recording())
        in1 = entry_rel(fd1, p1, rel1, sizeof rel1);
    r = real.linkat(fd1, p1, fd2, p2, flags);
    if (r == 0 && recording())
        record_move('L', in1, rel1, fd2, p2, "-");
    return r;
}

EXPORT int link(const char *from, const char *to)
{
    return link_common(AT_FDCWD, from, AT_FDCWD, to, 0);
}

EXPORT int linkat(int fd1, const char *from, int fd2, const char *to,
                  int flags)
{
    return link_common(fd1, from, fd2, to, flags);
}

/* unlink, rmdir and mkdir: op 'U', 'X', 'M' on one entry. */
static void record_entry(char op, int dirfd, const char *path)
{
    char rel[PATH_MAX];
    dev_t dev = 0;
    ino_t ino = 0;
    int e = errno;

    if (op == 'M')
        entry_inode(dirfd, path, &dev, &ino);
    if (entry_rel(dirfd, path, rel, sizeof rel))
        record(op, dev, ino, 0, 0, 0, "-", rel, NULL, NULL, 0, 0);
    errno = e;
}

EXPORT int unlinkat(int dirfd, const char *path, int flags)
{
    char rel[PATH_MAX];
    int in = 0, r;

    pthread_once(&once, init);
    if (recording())
        in = entry_rel(dirfd, path, rel, sizeof rel);
    r = real.unlinkat(dirfd, path, flags);
    if (r == 0 && in) {
        int e = errno;
        record((flags & AT_REMOVEDIR) ? 'X' : 'U', 0, 0, 0, 0, 0, "-", rel,
               NULL, NULL, 0, 0);
        errno = e;
    }
    return r;
}

EXPORT int unlink(const char *path)
{
    return unlinkat(AT_FDCWD, path, 0);
}

EXPORT int rmdir(const char *path)
{
    return unlinkat(AT_FDCWD, path, AT_REMOVEDIR);
}

EXPORT int mkdirat(int dirfd, const char *path, mode_t mode)
{
    int r;

    pthread_once(&once, init);
    r = real.mkdirat(dirfd, path, mode);
    if (r == 0 && recording())
        record_entry('M', dirfd, path);
    return r;
}

EXPORT int mkdir(const char *path, mode_t mode)
{
    return mkdirat(AT_FDCWD, path, mode);
}

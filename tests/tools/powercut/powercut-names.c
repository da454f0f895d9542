/* powercut-shim, the namespace: opens that create or truncate files, and
 * renames, links, unlinks and mkdirs under the root, each recorded after
 * it succeeded (powercut-shim.c has the log; docs/testing.md the format). */
#include "powercut-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- opens ------------------------------------------------------------- */

/* After a successful open: 'C' if O_CREAT made the file, 'T' (to 0) if
 * O_TRUNC cut an existing one. */
static void record_open(int fd, int flags, int existed)
{
    struct pc_target t;
    int e = errno;

    if (fd >= 0 && pc_recording() && pc_fd_target(fd, &t) && S_ISREG(t.mode)) {
        if ((flags & O_CREAT) && !existed)
            pc_record('C', t.dev, t.ino, 0, 0, 0, "-", t.rel, NULL, NULL, 0, 0);
        else if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY)
            pc_record('T', t.dev, t.ino, 0, 0, 0, "-", t.rel, NULL, NULL, 0, 0);
    }
    errno = e;
}

static int existed_before(int dirfd, const char *path, int flags)
{
    struct stat st;

    if (!(flags & O_CREAT) || !pc_recording())
        return 1;
    return fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static int open_common(int dirfd, const char *path, int flags, mode_t mode)
{
    int existed, fd;

    pc_init();
    existed = existed_before(dirfd, path, flags);
    fd = dirfd == AT_FDCWD ? pc_real.open(path, flags, mode)
                           : pc_real.openat(dirfd, path, flags, mode);
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

    in2 = pc_entry_rel(fd2, p2, rel2, sizeof rel2);
    entry_inode(fd2, p2, &dev, &ino);
    if (in1 && in2)
        pc_record(op, dev, ino, 0, 0, 0, flags, rel1, rel2, NULL, 0, 0);
    else if (in1 && op == 'R')
        pc_record('U', 0, 0, 0, 0, 0, "-", rel1, NULL, NULL, 0, 0);
    else if (in2)   /* content from outside the root: replay refuses */
        pc_record('E', dev, ino, 0, 0, 0, "-", rel2, NULL, NULL, 0, 0);
    errno = e;
}

static int rename_common(int fd1, const char *p1, int fd2, const char *p2,
                         unsigned flags)
{
    char rel1[PATH_MAX];
    int in1 = 0, r;

    pc_init();
    if (pc_recording())
        in1 = pc_entry_rel(fd1, p1, rel1, sizeof rel1);
    r = flags ? pc_real.renameat2(fd1, p1, fd2, p2, flags)
              : pc_real.renameat(fd1, p1, fd2, p2);
    if (r == 0 && pc_recording())
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

    pc_init();
    if (pc_recording())
        in1 = pc_entry_rel(fd1, p1, rel1, sizeof rel1);
    r = pc_real.linkat(fd1, p1, fd2, p2, flags);
    if (r == 0 && pc_recording())
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
    if (pc_entry_rel(dirfd, path, rel, sizeof rel))
        pc_record(op, dev, ino, 0, 0, 0, "-", rel, NULL, NULL, 0, 0);
    errno = e;
}

EXPORT int unlinkat(int dirfd, const char *path, int flags)
{
    char rel[PATH_MAX];
    int in = 0, r;

    pc_init();
    if (pc_recording())
        in = pc_entry_rel(dirfd, path, rel, sizeof rel);
    r = pc_real.unlinkat(dirfd, path, flags);
    if (r == 0 && in) {
        int e = errno;
        pc_record((flags & AT_REMOVEDIR) ? 'X' : 'U', 0, 0, 0, 0, 0, "-", rel,
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

    pc_init();
    r = pc_real.mkdirat(dirfd, path, mode);
    if (r == 0 && pc_recording())
        record_entry('M', dirfd, path);
    return r;
}

EXPORT int mkdir(const char *path, mode_t mode)
{
    return mkdirat(AT_FDCWD, path, mode);
}

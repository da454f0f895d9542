/* Shared by the shim's files (powercut-shim.c: the log, writes, sizes and
 * syncs; powercut-names.c: opens and the namespace). */
#ifndef POWERCUT_INTERNAL_H
#define POWERCUT_INTERNAL_H

#undef _FILE_OFFSET_BITS        /* we define both open and open64 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <limits.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#define EXPORT __attribute__((visibility("default")))

/* The real functions, found once. */
struct pc_real {
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
};
extern struct pc_real pc_real;

/* What a record is about: a file (or directory) under the root. */
struct pc_target {
    char rel[PATH_MAX];
    dev_t dev;
    ino_t ino;
    mode_t mode;
};

/* Finds the real functions and reads the configuration, once. */
void pc_init(void);
/* 1 if this process records (after pc_init). */
int pc_recording(void);
/* The file behind fd, if it is one under the root and still linked. */
int pc_fd_target(int fd, struct pc_target *t);
/* The entry (dirfd, path) names, its last component not followed, as a
 * path relative to the root; 0 if it is not under it. */
int pc_entry_rel(int dirfd, const char *path, char *rel, size_t len);
/* Appends one record (docs/testing.md, "The log"). */
void pc_record(char op, dev_t dev, ino_t ino, long long off, long long len,
               long long start, const char *flags, const char *p1,
               const char *p2, const struct iovec *data, int ndata,
               size_t dlen);

#endif

/* The backup target as a directory (docs/backup.md, "Layout"): opening or
 * making one, the durable writes every file of it goes through, new
 * backup ids, and its usage. */
#include "target-internal.h"

#include "core/error.h"
#include "core/json-util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

int cvd_target_path(const struct cvd_target *t, char *buf, size_t len,
                    const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(buf, len, "%s/", t->dir), m;

    if (n < 0 || (size_t)n >= len)
        return cv_error(-ENAMETOOLONG, "backup target %s: path too long",
                        t->dir);
    va_start(ap, fmt);
    m = vsnprintf(buf + n, len - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0 || (size_t)m >= len - (size_t)n)
        return cv_error(-ENAMETOOLONG, "backup target %s: path too long",
                        t->dir);
    return 0;
}

int cvd_target_fail(const struct cvd_target *t, int err, const char *what,
                    const char *op)
{
    /* A quota is as full as a disk to whoever runs the backup. */
    if (err == ENOSPC || err == EDQUOT)
        return cv_error(-ENOSPC, "backup target %s is full: %s: %s: %s",
                        t->dir, what, op, strerror(err));
    return cv_error(-err, "backup target %s: %s: %s: %s", t->dir, what, op,
                    strerror(err));
}

int cvd_target_sync_dir(const struct cvd_target *t, const char *path,
                        const char *what)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

    if (fd < 0)
        return cvd_target_fail(t, errno, what, "open directory");
    if (fsync(fd) != 0)
        r = cvd_target_fail(t, errno, what, "fsync directory");
    close(fd);
    return r;
}

/* The directory part of path (which has a '/'), into buf. */
static void parent_of(const char *path, char *buf, size_t len)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;

    if (n >= len)
        n = len - 1;
    memcpy(buf, path, n);
    buf[n] = '\0';
}

int cvd_target_mkdir(const struct cvd_target *t, const char *path,
                     const char *what)
{
    char parent[PATH_MAX];

    if (mkdir(path, 0755) != 0)
        return errno == EEXIST ? 0 : cvd_target_fail(t, errno, what, "mkdir");
    parent_of(path, parent, sizeof parent);
    return cvd_target_sync_dir(t, parent, what);
}

/* Writes and syncs all of buf to fd. */
static int write_sync(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return fdatasync(fd) == 0 ? 0 : -errno;
}

int cvd_target_write_file(const struct cvd_target *t, const char *path,
                          const void *buf, size_t len, const char *what)
{
    char parent[PATH_MAX], tmp[PATH_MAX];
    const char *base = strrchr(path, '/');
    int fd, r, n;

    parent_of(path, parent, sizeof parent);
    n = snprintf(tmp, sizeof tmp, "%s/" CVD_TARGET_TMP "%s-XXXXXX", parent,
                 base ? base + 1 : path);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return cv_error(-ENAMETOOLONG, "backup target %s: %s: path too long",
                        t->dir, what);
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return cvd_target_fail(t, errno, what, "create");
    r = write_sync(fd, buf, len);
    if (r < 0) {
        r = cvd_target_fail(t, -r, what, "write");
        close(fd);
        goto fail;
    }
    /* NFS reports a write it could not store at close at the latest. */
    if (close(fd) != 0) {
        r = cvd_target_fail(t, errno, what, "close");
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        r = cvd_target_fail(t, errno, what, "rename");
        goto fail;
    }
    return cvd_target_sync_dir(t, parent, what);
fail:
    unlink(tmp);
    return r;
}

int cvd_target_read_file(const struct cvd_target *t, const char *path,
                         size_t max, char **out, size_t *len,
                         const char *what)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;
    struct stat st;
    char *buf = NULL;
    size_t got = 0;

    if (fd < 0)
        return errno == ENOENT ? -ENOENT :
               cvd_target_fail(t, errno, what, "open");
    if (fstat(fd, &st) != 0) {
        r = cvd_target_fail(t, errno, what, "stat");
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        r = cv_error(-EFBIG, "backup target %s: %s: %lld bytes, more than "
                     "the %zu it may have", t->dir, what,
                     (long long)st.st_size, max);
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        r = cv_error(-ENOMEM, "backup target %s: %s: out of memory", t->dir,
                     what);
        goto out;
    }
    /* Up to the size fstat saw: a file that grows meanwhile is cut there
     * (and then fails its MAC or its parse), one that shrinks ends early. */
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = cvd_target_fail(t, errno, what, "read");
            goto out;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return r;
}

static int hex_run(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[n] == '\0';
}

int cvd_target_hex_ok(const char *s)
{
    return s && strlen(s) == 64 && hex_run(s, 64);
}

int cvd_target_id_ok(const char *s)
{
    return s && strlen(s) == 19 && !strncmp(s, "bk-", 3) && hex_run(s + 3, 16);
}

const char *cvd_target_dir(const struct cvd_target *t)
{
    return t->dir;
}

void cvd_target_close(struct cvd_target *t)
{
    free(t);
}

/* 1: the marker is there and of this format; 0: no marker. */
static int read_marker(struct cvd_target *t)
{
    char path[PATH_MAX], *text = NULL;
    json_object *o = NULL;
    int64_t format;
    size_t len;
    int r;

    r = cvd_target_path(t, path, sizeof path, CVD_TARGET_MARKER);
    if (r == 0)
        r = cvd_target_read_file(t, path, 4096, &text, &len,
                                 CVD_TARGET_MARKER);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    o = json_tokener_parse(text);
    if (!o || cv_json_int(o, "format", 0, INT32_MAX, &format) < 0)
        r = cv_error(-EINVAL, "backup target %s: its " CVD_TARGET_MARKER
                     " file is not {\"format\": N}", t->dir);
    else if (format != CVD_TARGET_FORMAT)
        r = cv_error(-EINVAL, "backup target %s: format %lld, not the %d "
                     "this cryptvold reads", t->dir, (long long)format,
                     CVD_TARGET_FORMAT);
    else
        r = 1;
    json_object_put(o);
    free(text);
    return r;
}

/* A directory without a marker may become a target only if it is empty
 * (a new file system's lost+found aside, and a marker a cut left half
 * made): never a directory holding someone else's files. */
static int check_empty(struct cvd_target *t)
{
    DIR *d = opendir(t->dir);
    struct dirent *e;
    int r = 0;

    if (!d)
        return cvd_target_fail(t, errno, "directory", "opendir");
    while (r == 0 && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            !strcmp(e->d_name, "lost+found"))
            continue;
        if (!strncmp(e->d_name, CVD_TARGET_TMP CVD_TARGET_MARKER,
                     strlen(CVD_TARGET_TMP CVD_TARGET_MARKER)) &&
            unlinkat(dirfd(d), e->d_name, 0) == 0)
            continue;
        r = cv_error(-EINVAL, "backup target %s: not a backup target: it "
                     "holds other files (%s) and no " CVD_TARGET_MARKER
                     " marker; give an empty directory", t->dir, e->d_name);
    }
    closedir(d);
    return r;
}

/* The marker first, then the rest: a cut in between leaves a target that
 * the next open completes, never a half-made one it refuses. */
static int make_layout(struct cvd_target *t, int marked)
{
    static const char marker[] = "{\"format\": 1}\n";
    static const char *const dirs[] = { "blocks", "backups", "volumes" };
    char path[PATH_MAX];
    size_t i;
    int r = 0, fd;

    if (!marked) {
        r = cvd_target_path(t, path, sizeof path, CVD_TARGET_MARKER);
        if (r == 0)
            r = cvd_target_write_file(t, path, marker, sizeof marker - 1,
                                      CVD_TARGET_MARKER);
    }
    for (i = 0; r == 0 && i < sizeof dirs / sizeof dirs[0]; i++) {
        r = cvd_target_path(t, path, sizeof path, "%s", dirs[i]);
        if (r == 0)
            r = cvd_target_mkdir(t, path, dirs[i]);
    }
    if (r == 0)
        r = cvd_target_path(t, path, sizeof path, "lock");
    if (r == 0) {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return cvd_target_fail(t, errno, "lock", "create");
        close(fd);
    }
    return r;
}

int cvd_target_open(const char *dir, struct cvd_target **out)
{
    struct cvd_target *t = NULL;
    size_t n = strlen(dir);
    struct stat st;
    int r;

    if (stat(dir, &st) != 0)
        return cv_error(-errno, "backup target %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return cv_error(-ENOTDIR, "backup target %s: not a directory", dir);
    /* Room for the longest name inside: blocks/AB/CD/.tmp-SHA256-XXXXXX. */
    if (n == 0 || n > PATH_MAX - 256)
        return cv_error(-ENAMETOOLONG, "backup target %s: path too long",
                        dir);
    t = calloc(1, sizeof *t);
    if (!t)
        return cv_error(-ENOMEM, "backup target %s: out of memory", dir);
    memcpy(t->dir, dir, n + 1);
    while (n > 1 && t->dir[n - 1] == '/')
        t->dir[--n] = '\0';
    r = read_marker(t);
    if (r == 0)
        r = check_empty(t);
    if (r >= 0)
        r = make_layout(t, r == 1);
    if (r < 0) {
        free(t);
        return r;
    }
    *out = t;
    return 0;
}

int cvd_target_new_id(struct cvd_target *t, char id[CVD_BACKUP_ID_MAX + 1])
{
    char path[PATH_MAX], dir[PATH_MAX];
    unsigned char b[8];
    int tries, fd, r;

    r = cvd_target_path(t, dir, sizeof dir, "backups");
    for (tries = 0; r == 0 && tries < 16; tries++) {
        if (RAND_bytes(b, sizeof b) != 1)
            return cv_error(-EIO, "backup target %s: RAND_bytes failed",
                            t->dir);
        snprintf(id, CVD_BACKUP_ID_MAX + 1,
                 "bk-%02x%02x%02x%02x%02x%02x%02x%02x",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]);
        r = cvd_target_path(t, path, sizeof path, "backups/%s.json", id);
        if (r < 0)
            break;
        /* O_EXCL: another daemon on the same target cannot take it too. */
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            close(fd);
            return cvd_target_sync_dir(t, dir, "backups");
        }
        if (errno != EEXIST)
            return cvd_target_fail(t, errno, "backups", "create a manifest");
    }
    return r < 0 ? r : cv_error(-EEXIST, "backup target %s: no free backup "
                                "id after %d tries", t->dir, tries);
}

/* Calls fn on each entry of path other than "." and "..". */
static int each_entry(const struct cvd_target *t, const char *path,
                      int (*fn)(const char *dir, const char *name, void *arg),
                      void *arg)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int r = 0;

    if (!d)
        return errno == ENOENT ? 0 : cvd_target_fail(t, errno, path, "opendir");
    while (r == 0 && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            r = fn(path, e->d_name, arg);
    closedir(d);
    return r;
}

struct walk {
    const struct cvd_target *t;
    int (*fn)(const char *path, const char *name, const struct stat *st,
              void *arg);
    void *arg;
    int depth;
};

static int walk_entry(const char *dir, const char *name, void *arg)
{
    struct walk *w = arg, sub = *w;
    char path[PATH_MAX];
    struct stat st;
    int n = snprintf(path, sizeof path, "%s/%s", dir, name);

    if (n < 0 || (size_t)n >= sizeof path)
        return cv_error(-ENAMETOOLONG, "backup target %s: path too long",
                        w->t->dir);
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : cvd_target_fail(w->t, errno, path, "stat");
    if (w->depth < 2 && S_ISDIR(st.st_mode)) {
        sub.depth++;
        return each_entry(w->t, path, walk_entry, &sub);
    }
    return w->depth == 2 ? w->fn(path, name, &st, w->arg) : 0;
}

int cvd_target_walk_blocks(const struct cvd_target *t,
                           int (*fn)(const char *path, const char *name,
                                     const struct stat *st, void *arg),
                           void *arg)
{
    char path[PATH_MAX];
    struct walk w = { t, fn, arg, 0 };
    int r = cvd_target_path(t, path, sizeof path, "blocks");

    return r < 0 ? r : each_entry(t, path, walk_entry, &w);
}

struct usage {
    uint64_t blocks, bytes;
};

static int count_block(const char *path, const char *name,
                       const struct stat *st, void *arg)
{
    struct usage *u = arg;

    (void)path;
    if (S_ISREG(st->st_mode) && cvd_target_hex_ok(name)) {
        u->blocks++;
        u->bytes += (uint64_t)st->st_size;
    }
    return 0;
}

int cvd_target_usage(struct cvd_target *t, uint64_t *blocks, uint64_t *bytes,
                     uint64_t *free_bytes)
{
    struct usage u = { 0, 0 };
    struct statvfs vfs;
    int r;

    if (statvfs(t->dir, &vfs) != 0)
        return cvd_target_fail(t, errno, "directory", "statvfs");
    r = cvd_target_walk_blocks(t, count_block, &u);
    if (r < 0)
        return r;
    *blocks = u.blocks;
    *bytes = u.bytes;
    *free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    return 0;
}

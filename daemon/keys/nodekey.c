#include "nodekey.h"
#include "core/error.h"
#include "log.h"
#include "core/secmem.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_all(int fd, unsigned char *buf, size_t len, size_t *got)
{
    *got = 0;
    while (*got < len) {
        ssize_t n = read(fd, buf + *got, len - *got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        *got += (size_t)n;
    }
    return 0;
}

static int load(const char *path, unsigned char *key)
{
    unsigned char extra;
    struct stat st;
    size_t got;
    int fd, r;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0)
        return cv_error(-errno, "node key %s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        r = cv_error(-errno, "node key %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = cv_error(-EINVAL, "node key %s: not a regular file", path);
        goto out;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        r = cv_error(-EPERM, "node key %s: mode %04o lets group or others "
                     "read it; refusing (chmod 600 %s)", path,
                     (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    if (st.st_uid != geteuid()) {
        r = cv_error(-EPERM, "node key %s: owned by uid %u, not by this "
                     "process (uid %u); refusing", path, (unsigned)st.st_uid,
                     (unsigned)geteuid());
        goto out;
    }
    r = read_all(fd, key, CVD_NODEKEY_LEN, &got);
    if (r == 0 && got == CVD_NODEKEY_LEN)
        r = read_all(fd, &extra, 1, &got);
    else if (r == 0)
        got = 1;        /* short */
    if (r < 0)
        r = cv_error(r, "node key %s: %s", path, strerror(-r));
    else if (got != 0)
        r = cv_error(-EINVAL, "node key %s: not %d bytes (damaged?)", path,
                     CVD_NODEKEY_LEN);
out:
    close(fd);
    return r;
}

/* Written to a temporary file, made durable, then linked into place: link()
 * fails if another process got there first, and nobody ever sees a key that
 * is only partly written. */
static int create(const char *dir, const char *path, unsigned char *key)
{
    char tmp[PATH_MAX];
    int fd, r = 0;

    if (snprintf(tmp, sizeof tmp, "%s/.node.key.%ld", dir,
                 (long)getpid()) >= (int)sizeof tmp)
        return cv_error(-ENAMETOOLONG, "node key %s: path too long", path);
    if (RAND_bytes(key, CVD_NODEKEY_LEN) != 1)
        return cv_error(-EIO, "node key %s: no random bytes", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return cv_error(-errno, "node key %s: %s", tmp, strerror(errno));
    if (write(fd, key, CVD_NODEKEY_LEN) != CVD_NODEKEY_LEN || fsync(fd) < 0)
        r = cv_error(-EIO, "node key %s: writing: %s", tmp, strerror(errno));
    close(fd);
    if (r == 0 && link(tmp, path) < 0)
        r = -errno;     /* EEXIST: someone else made it; read theirs */
    unlink(tmp);
    if (r == -EEXIST)
        return load(path, key);
    if (r < 0)
        return cv_error(r, "node key %s: %s", path, strerror(-r));
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    cvd_info("node key %s: created", path);
    return 0;
}

/* A node key is made only for a data dir that has no metadata yet: a new
 * key for old metadata would make every sealed value unreadable. */
static int has_metadata(const char *data_dir)
{
    char path[PATH_MAX];
    struct stat st;

    snprintf(path, sizeof path, "%s/meta.db", data_dir);
    return stat(path, &st) == 0 && st.st_size > 0;
}

int cvd_nodekey_load(const char *data_dir, unsigned char **key)
{
    char path[PATH_MAX];
    unsigned char *k;
    int r;

    *key = NULL;
    if (snprintf(path, sizeof path, "%s/node.key", data_dir) >= (int)sizeof path)
        return cv_error(-ENAMETOOLONG, "node key in %s: path too long", data_dir);
    k = cv_secmem_alloc(CVD_NODEKEY_LEN);
    if (!k)
        return cv_error_prefix(-ENOMEM, "node key %s", path);
    if (access(path, F_OK) == 0)
        r = load(path, k);
    else if (!has_metadata(data_dir))
        r = create(data_dir, path, k);
    else
        r = cv_error(-ENOENT, "node key %s is missing, but %s/meta.db "
                     "exists: the secrets and cluster KEKs stored there are "
                     "sealed with it, and nothing can be unlocked without "
                     "it.  Restore node.key from the backup made with "
                     "meta.db (or move meta.db away to start empty)", path,
                     data_dir);
    if (r < 0) {
        cv_secmem_free(k, CVD_NODEKEY_LEN);
        return r;
    }
    *key = k;
    return 0;
}

void cvd_nodekey_free(unsigned char *key)
{
    cv_secmem_free(key, CVD_NODEKEY_LEN);
}

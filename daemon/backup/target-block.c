/* Content-addressed blocks: DIR/blocks/AB/CD/SHA256, named by the SHA-256
 * of their bytes (two levels of 256 directories, so that no directory
 * holds more than a few thousand files even for millions of blocks).  A
 * block is stored once whoever backs it up; a reader checks its size and
 * checksum before it trusts a byte of it. */
#include "target-internal.h"

#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cvd_target_sha256(const void *buf, size_t len, char hex[65])
{
    unsigned char md[32];
    unsigned int n = 0, i;

    if (EVP_Digest(buf, len, md, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return cv_error(-EIO, "sha256 of %zu bytes failed", len);
    for (i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* The block's path, or its directory's at level 1 (AB) or 2 (AB/CD). */
static int block_path(const struct cvd_target *t, const char *hex, int level,
                      char *buf, size_t len)
{
    if (!cvd_target_hex_ok(hex))
        return cv_error(-EINVAL, "backup target %s: \"%s\" is not a block "
                        "name (64 lower-case hex digits)", t->dir, hex);
    if (level == 1)
        return cvd_target_path(t, buf, len, "blocks/%.2s", hex);
    if (level == 2)
        return cvd_target_path(t, buf, len, "blocks/%.2s/%.2s", hex, hex + 2);
    return cvd_target_path(t, buf, len, "blocks/%.2s/%.2s/%s", hex, hex + 2,
                           hex);
}

int cvd_target_block_exists(struct cvd_target *t, const char *hex)
{
    char path[PATH_MAX];
    struct stat st;

    return block_path(t, hex, 3, path, sizeof path) == 0 &&
           stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int cvd_target_block_put(struct cvd_target *t, const char *hex,
                         const void *buf, size_t len, int *stored)
{
    char path[PATH_MAX], what[80];
    struct stat st;
    int level, r;

    *stored = 0;
    r = block_path(t, hex, 3, path, sizeof path);
    if (r < 0)
        return r;
    /* Same name, same bytes: nothing to do.  One of another size was cut
     * short by something else than this code (which never leaves one) and
     * is replaced, as a missing one is stored. */
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size == len)
        return 0;
    snprintf(what, sizeof what, "block %s", hex);
    for (level = 1; level <= 2; level++) {
        char dir[PATH_MAX];

        r = block_path(t, hex, level, dir, sizeof dir);
        if (r == 0)
            r = cvd_target_mkdir(t, dir, what);
        if (r < 0)
            return r;
    }
    r = cvd_target_write_file(t, path, buf, len, what);
    if (r == 0)
        *stored = 1;
    return r;
}

/* Reads exactly len bytes of fd (whose size was checked) into buf. */
static int read_all(int fd, void *buf, size_t len)
{
    char *p = buf;

    while (len > 0) {
        ssize_t n = read(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EMSGSIZE;   /* shrank since fstat */
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int cvd_target_block_get(struct cvd_target *t, const char *hex, void *buf,
                         size_t len)
{
    char path[PATH_MAX], what[80], got[65];
    struct stat st;
    int fd, r;

    r = block_path(t, hex, 3, path, sizeof path);
    if (r < 0)
        return r;
    snprintf(what, sizeof what, "block %s", hex);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ?
               cv_error(-ENOENT, "backup target %s: block %s is missing",
                        t->dir, hex) :
               cvd_target_fail(t, errno, what, "open");
    if (fstat(fd, &st) != 0) {
        r = cvd_target_fail(t, errno, what, "stat");
        goto out;
    }
    if ((uint64_t)st.st_size != len) {
        r = cv_error(-EMSGSIZE, "backup target %s: block %s is %lld bytes, "
                     "not %zu", t->dir, hex, (long long)st.st_size, len);
        goto out;
    }
    r = read_all(fd, buf, len);
    if (r == -EMSGSIZE)
        r = cv_error(-EMSGSIZE, "backup target %s: block %s is shorter than "
                     "%zu bytes", t->dir, hex, len);
    else if (r < 0)
        r = cvd_target_fail(t, -r, what, "read");
    if (r == 0)
        r = cvd_target_sha256(buf, len, got);
    if (r == 0 && CRYPTO_memcmp(got, hex, 64) != 0)
        r = cv_error(-EBADMSG, "backup target %s: block %s: checksum "
                     "mismatch (its bytes hash to %s)", t->dir, hex, got);
out:
    close(fd);
    return r;
}

int cvd_target_block_remove(struct cvd_target *t, const char *hex)
{
    char path[PATH_MAX], what[80];
    int r = block_path(t, hex, 3, path, sizeof path);

    if (r < 0)
        return r;
    snprintf(what, sizeof what, "block %s", hex);
    if (unlink(path) != 0 && errno != ENOENT)
        return cvd_target_fail(t, errno, what, "unlink");
    return 0;
}

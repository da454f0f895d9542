/* Missed-region records (missed.h): the file missed-NODE is the bitmap
 * itself, one bit per REPL_REGION of the raw image (LSB first), held in
 * memory whole.  A mark that sets a bit writes the bytes it changed and
 * fdatasyncs before it returns; a clear only writes (a clear lost in a
 * crash costs a region copied again, never a region skipped). */
#include "missed.h"

#include "core/error.h"
#include "core/fd-io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EPOCH_FILE "epoch"
#define EPOCH_TMP "epoch.tmp"

struct repl_missed {
    pthread_mutex_t lock;
    int fd;
    char path[PATH_MAX];
    uint8_t *bits;
    size_t nbytes;              /* of bits (the file's size, at least) */
};

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r = 0;

    if (fd < 0 || fsync(fd) < 0)
        r = cv_error(-errno, "%s: syncing the directory: %s", dir,
                     strerror(errno));
    if (fd >= 0)
        close(fd);
    return r;
}

/* mkdir 0700 of path; when it was made, its parent synced (so what goes
 * into it is found after a crash). */
static int make_dir(const char *path, const char *parent)
{
    if (mkdir(path, 0700) == 0)
        return sync_dir(parent);
    if (errno == EEXIST)
        return 0;
    return cv_error(-errno, "%s: making the directory: %s", path,
                    strerror(errno));
}

int repl_state_dir(const char *data_dir, const char *volume, char *buf,
                   unsigned long len)
{
    char top[PATH_MAX];
    int r;

    if ((size_t)snprintf(top, sizeof top, "%s/replicas", data_dir) >=
            sizeof top ||
        (size_t)snprintf(buf, len, "%s/%s", top, volume) >= len)
        return cv_error(-ENAMETOOLONG, "volume %s: replication state "
                        "directory: path too long", volume);
    r = make_dir(top, data_dir);
    if (r == 0)
        r = make_dir(buf, top);
    return r;
}

/* The record's bytes in memory cover at least n (zeros added). */
static int grow(struct repl_missed *m, size_t n)
{
    uint8_t *nb;

    if (n <= m->nbytes)
        return 0;
    nb = realloc(m->bits, n);
    if (!nb)
        return cv_error(-ENOMEM, "%s: out of memory for %zu bytes", m->path,
                        n);
    memset(nb + m->nbytes, 0, n - m->nbytes);
    m->bits = nb;
    m->nbytes = n;
    return 0;
}

static int load(struct repl_missed *m)
{
    struct stat st;
    int r;

    if (fstat(m->fd, &st) < 0)
        return cv_error(-errno, "%s: %s", m->path, strerror(errno));
    if ((uint64_t)st.st_size > (1ull << 32))
        return cv_error(-EFBIG, "%s: %lld bytes: not a missed-region record",
                        m->path, (long long)st.st_size);
    r = grow(m, (size_t)st.st_size);
    if (r == 0 && st.st_size > 0) {
        r = cv_pread_zeros(m->fd, m->bits, (size_t)st.st_size, 0);
        if (r < 0)
            r = cv_error(r, "%s: reading: %s", m->path, strerror(-r));
    }
    return r;
}

int repl_missed_open(const char *dir, const char *node,
                     struct repl_missed **out)
{
    struct repl_missed *m;
    int r, made;

    *out = NULL;
    m = calloc(1, sizeof *m);
    if (!m)
        return cv_error(-ENOMEM, "missed-region record: out of memory");
    m->fd = -1;
    pthread_mutex_init(&m->lock, NULL);
    if ((size_t)snprintf(m->path, sizeof m->path, "%s/missed-%s", dir,
                         node) >= sizeof m->path) {
        r = cv_error(-ENAMETOOLONG, "%s/missed-%s: path too long", dir, node);
        goto fail;
    }
    made = access(m->path, F_OK) < 0;
    m->fd = open(m->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (m->fd < 0) {
        r = cv_error(-errno, "%s: %s", m->path, strerror(errno));
        goto fail;
    }
    r = load(m);
    if (r == 0 && made)
        r = sync_dir(dir);
    if (r < 0)
        goto fail;
    *out = m;
    return 0;
fail:
    repl_missed_close(m);
    return r;
}

/* The regions [first, end) that [off, off+len) touches (whole: that it
 * covers wholly); first == end when none. */
static int regions(uint64_t off, uint64_t len, int whole, uint64_t *first,
                   uint64_t *end)
{
    if (off + len < off)
        return cv_error(-EINVAL, "missed regions: offset %llu + length %llu "
                        "overflows", (unsigned long long)off,
                        (unsigned long long)len);
    if (whole) {
        *first = (off + REPL_REGION - 1) / REPL_REGION;
        *end = (off + len) / REPL_REGION;
    } else {
        *first = off / REPL_REGION;
        *end = len ? (off + len - 1) / REPL_REGION + 1 : *first;
    }
    if (*end < *first)
        *end = *first;
    /* A bitmap of 2^32 bytes covers 4 PiB: past that is no image's. */
    if (*end > (1ull << 35))
        return cv_error(-EFBIG, "missed regions: offset %llu past any "
                        "volume's end", (unsigned long long)(off + len));
    return 0;
}

/* Bits [first, end) set to value; *lo, *hi the changed bytes' range
 * (lo == hi: nothing changed). */
static void set_bits(struct repl_missed *m, uint64_t first, uint64_t end,
                     int value, size_t *lo, size_t *hi)
{
    uint64_t i;

    *lo = *hi = 0;
    for (i = first; i < end; i++) {
        uint8_t bit = (uint8_t)(1u << (i % 8)), *b = &m->bits[i / 8];

        if (!!(*b & bit) == value)
            continue;
        *b ^= bit;
        if (*lo == *hi)
            *lo = i / 8;
        *hi = i / 8 + 1;
    }
}

int repl_missed_mark(struct repl_missed *m, uint64_t off, uint64_t len)
{
    uint64_t first = 0, end = 0;
    uint8_t *old = NULL;
    size_t lo, hi, n;
    int r;

    r = regions(off, len, 0, &first, &end);
    if (r < 0 || end == first)
        return r;
    pthread_mutex_lock(&m->lock);
    r = grow(m, (size_t)((end + 7) / 8));
    /* The old bytes, to put back if the write fails: a bit set in memory
     * but not on disk would make the next mark of it skip the write. */
    n = (size_t)((end + 7) / 8 - first / 8);
    if (r == 0 && !(old = malloc(n)))
        r = cv_error(-ENOMEM, "%s: out of memory", m->path);
    if (r < 0)
        goto out;
    memcpy(old, m->bits + first / 8, n);
    set_bits(m, first, end, 1, &lo, &hi);
    if (lo == hi)
        goto out;
    r = cv_pwrite_all(m->fd, m->bits + lo, hi - lo, lo);
    if (r == 0 && fdatasync(m->fd) < 0)
        r = -errno;
    if (r < 0) {
        memcpy(m->bits + first / 8, old, n);
        r = cv_error(r, "%s: recording missed regions: %s", m->path,
                     strerror(-r));
    }
out:
    pthread_mutex_unlock(&m->lock);
    free(old);
    return r;
}

int repl_missed_clear(struct repl_missed *m, uint64_t off, uint64_t len)
{
    uint64_t first = 0, end = 0;
    size_t lo, hi;
    int r;

    r = regions(off, len, 1, &first, &end);
    if (r < 0)
        return r;
    pthread_mutex_lock(&m->lock);
    if (end > (uint64_t)m->nbytes * 8)
        end = (uint64_t)m->nbytes * 8;
    if (first < end) {
        set_bits(m, first, end, 0, &lo, &hi);
        if (lo != hi) {
            r = cv_pwrite_all(m->fd, m->bits + lo, hi - lo, lo);
            if (r < 0)
                r = cv_error(r, "%s: clearing missed regions: %s", m->path,
                             strerror(-r));
        }
    }
    pthread_mutex_unlock(&m->lock);
    return r;
}

uint64_t repl_missed_bytes(struct repl_missed *m)
{
    uint64_t n = 0;
    size_t i;

    pthread_mutex_lock(&m->lock);
    for (i = 0; i < m->nbytes; i++)
        n += (uint64_t)__builtin_popcount(m->bits[i]);
    pthread_mutex_unlock(&m->lock);
    return n * REPL_REGION;
}

static int bit(const struct repl_missed *m, uint64_t i)
{
    return (m->bits[i / 8] >> (i % 8)) & 1;
}

int repl_missed_next(struct repl_missed *m, uint64_t from, uint64_t *off,
                     uint64_t *len)
{
    uint64_t i, j, nbits;
    int r = 1;

    pthread_mutex_lock(&m->lock);
    nbits = (uint64_t)m->nbytes * 8;
    for (i = from / REPL_REGION; i < nbits; i++) {
        if (!m->bits[i / 8]) {
            i |= 7;             /* a zero byte: skip it whole */
            continue;
        }
        if (bit(m, i))
            break;
    }
    if (i < nbits) {
        for (j = i; j < nbits && bit(m, j); j++)
            ;
        *off = i * REPL_REGION > from ? i * REPL_REGION : from;
        *len = j * REPL_REGION - *off;
        r = 0;
    }
    pthread_mutex_unlock(&m->lock);
    return r;
}

void repl_missed_close(struct repl_missed *m)
{
    if (!m)
        return;
    if (m->fd >= 0)
        close(m->fd);
    pthread_mutex_destroy(&m->lock);
    free(m->bits);
    free(m);
}

int repl_missed_remove(const char *dir, const char *node)
{
    char path[PATH_MAX];

    if ((size_t)snprintf(path, sizeof path, "%s/missed-%s", dir, node) >=
        sizeof path)
        return cv_error(-ENAMETOOLONG, "%s/missed-%s: path too long", dir,
                        node);
    if (unlink(path) < 0) {
        if (errno == ENOENT)
            return 0;
        return cv_error(-errno, "%s: removing: %s", path, strerror(errno));
    }
    return sync_dir(dir);
}

int repl_epoch_get(const char *dir, uint64_t *epoch)
{
    char path[PATH_MAX], text[32], *end;
    unsigned long long v;
    int fd, r;
    ssize_t n;

    *epoch = 0;
    snprintf(path, sizeof path, "%s/" EPOCH_FILE, dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return cv_error(-errno, "%s: %s", path, strerror(errno));
    }
    n = read(fd, text, sizeof text - 1);
    r = n < 0 ? -errno : 0;
    close(fd);
    if (r < 0)
        return cv_error(r, "%s: reading: %s", path, strerror(-r));
    text[n] = '\0';
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno || end == text || (*end && *end != '\n'))
        return cv_error(-EBADMSG, "%s: not an epoch: \"%.20s\"", path, text);
    *epoch = v;
    return 0;
}

int repl_epoch_put(const char *dir, uint64_t epoch)
{
    char path[PATH_MAX], tmp[PATH_MAX], text[32];
    int fd, r = 0, n;

    snprintf(path, sizeof path, "%s/" EPOCH_FILE, dir);
    snprintf(tmp, sizeof tmp, "%s/" EPOCH_TMP, dir);
    n = snprintf(text, sizeof text, "%llu\n", (unsigned long long)epoch);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return cv_error(-errno, "%s: %s", tmp, strerror(errno));
    r = cv_pwrite_all(fd, text, (size_t)n, 0);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    close(fd);
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmp);
        return cv_error(r, "%s: recording epoch %llu: %s", path,
                        (unsigned long long)epoch, strerror(-r));
    }
    return sync_dir(dir);
}

#include "volume.h"
#include "store/backend.h"
#include "core/error.h"
#include "core/rangelock.h"
#include "core/secmem.h"
#include "crypto/xts.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Zeroes are written in pieces of this size. */
#define ZERO_CHUNK (1024 * 1024)

struct cv_volume {
    struct cv_backend *b;
    struct cv_xts *xts;
    struct cv_luks_info info;
    /* What I/O may reach: info.effective_size at open, then what
     * cv_volume_set_size says (an online grow, while requests run). */
    _Atomic uint64_t size;
    struct cv_rangelock locks;
    unsigned flags;
};

int cv_volume_open(struct cv_backend *b, const char *pass, size_t passlen,
                   struct cv_workers *workers, unsigned flags,
                   struct cv_volume **out)
{
    return cv_volume_open_keyslot(b, -1, pass, passlen, workers, flags, out);
}

int cv_volume_open_keyslot(struct cv_backend *b, int keyslot,
                           const char *pass, size_t passlen,
                           struct cv_workers *workers, unsigned flags,
                           struct cv_volume **out)
{
    struct cv_luks *l = NULL;
    struct cv_volume *v;
    unsigned char *key = NULL;
    size_t keylen = 0;
    int r;

    v = calloc(1, sizeof *v);
    if (!v)
        return cv_error(-ENOMEM, "%s: out of memory", b->name);
    r = cv_luks_load(b, &l);
    if (r < 0)
        goto out;
    r = cv_luks_info(l, &v->info);
    if (r < 0)
        goto out;
    r = cv_luks_unlock_keyslot(l, keyslot, pass, passlen, &key, &keylen);
    if (r < 0)
        goto out;
    /* The cipher runs on every core for large requests; the store gets
     * one call per request. */
    r = cv_xts_new(key, keylen, v->info.sector_size, workers, &v->xts);
    if (r < 0) {
        cv_error_prefix(r, "%s", b->name);
        goto out;
    }
    v->b = b;
    v->flags = flags;
    atomic_init(&v->size, v->info.effective_size);
    cv_rangelock_init(&v->locks);
    *out = v;
out:
    cv_secmem_free(key, keylen);
    cv_luks_free(l);
    if (r < 0)
        free(v);
    return r < 0 ? r : 0;
}

int cv_volume_open_key(struct cv_backend *b, const struct cv_luks_info *info,
                       const unsigned char *key, size_t keylen,
                       struct cv_workers *workers, unsigned flags,
                       struct cv_volume **out)
{
    struct cv_volume *v = calloc(1, sizeof *v);
    int r;

    if (!v)
        return cv_error(-ENOMEM, "%s: out of memory", b->name);
    v->info = *info;
    r = cv_xts_new(key, keylen, v->info.sector_size, workers, &v->xts);
    if (r < 0) {
        free(v);
        return cv_error_prefix(r, "%s", b->name);
    }
    v->b = b;
    v->flags = flags;
    atomic_init(&v->size, v->info.effective_size);
    cv_rangelock_init(&v->locks);
    *out = v;
    return 0;
}

void cv_volume_close(struct cv_volume *v)
{
    if (!v)
        return;
    cv_xts_free(v->xts);
    cv_rangelock_destroy(&v->locks);
    free(v);
}

uint64_t cv_volume_size(const struct cv_volume *v)
{
    return atomic_load(&v->size);
}

int cv_volume_set_size(struct cv_volume *v, uint64_t size)
{
    uint64_t raw = 0, ss = v->info.sector_size;
    int r = cv_backend_size(v->b, &raw);

    if (r < 0)
        return r;
    if (size % ss || raw < v->info.data_offset ||
        size > raw - v->info.data_offset)
        return cv_error(-EINVAL, "%s: a size of %llu bytes is not whole "
                        "%llu-byte sectors within the %llu bytes the store "
                        "holds after the data offset", v->b->name,
                        (unsigned long long)size, (unsigned long long)ss,
                        (unsigned long long)(raw > v->info.data_offset ?
                                             raw - v->info.data_offset : 0));
    atomic_store(&v->size, size);
    return 0;
}

unsigned cv_volume_sector_size(const struct cv_volume *v)
{
    return v->info.sector_size;
}

const struct cv_luks_info *cv_volume_info(const struct cv_volume *v)
{
    return &v->info;
}

static int check_range(struct cv_volume *v, const char *op, uint64_t len,
                       uint64_t off)
{
    uint64_t size = atomic_load(&v->size);

    if (off > size || len > size - off)
        return cv_error(-ERANGE, "%s: %s of %llu bytes at offset %llu is "
                        "beyond the end of the volume (%llu bytes)",
                        v->b->name, op, (unsigned long long)len,
                        (unsigned long long)off, (unsigned long long)size);
    return 0;
}

/* Sector span [*first, *end) covering [off, off+len), in bytes. */
static void span(const struct cv_volume *v, uint64_t off, uint64_t len,
                 uint64_t *first, uint64_t *end)
{
    uint64_t ss = v->info.sector_size;

    *first = off / ss * ss;
    *end = (off + len + ss - 1) / ss * ss;
}

/* Reads and decrypts whole sectors [first, first+len) of the segment: one
 * store call, then the cipher on every core for a large request. */
static int read_sectors(struct cv_volume *v, void *buf, size_t len,
                        uint64_t first)
{
    int r = cv_backend_pread(v->b, buf, len, v->info.data_offset + first);

    return r < 0 ? r : cv_xts_decrypt(v->xts, buf, buf, len, first / 512);
}

/* Encrypts whole sectors from in into out (on every core for a large
 * request) and writes them at first in one store call, without FUA. */
static int write_sectors(struct cv_volume *v, char *out, const char *in,
                         size_t len, uint64_t first)
{
    int r = cv_xts_encrypt(v->xts, out, in, len, first / 512);

    return r < 0 ? r : cv_backend_pwrite(v->b, out, len,
                                         v->info.data_offset + first, 0);
}

int cv_volume_read(struct cv_volume *v, void *buf, size_t len, uint64_t off)
{
    uint64_t first, end;
    char *bounce;
    int r;

    r = check_range(v, "read", len, off);
    if (r < 0 || len == 0)
        return r;
    span(v, off, len, &first, &end);
    if (first == off && end == off + len)
        return read_sectors(v, buf, len, first);
    bounce = malloc(end - first);
    if (!bounce)
        return cv_error(-ENOMEM, "%s: out of memory", v->b->name);
    r = read_sectors(v, bounce, end - first, first);
    if (r == 0)
        memcpy(buf, bounce + (off - first), len);
    free(bounce);
    return r;
}

/* Fills the partial first and last sectors of bounce with what the volume
 * holds now, so the new bytes can be laid over them. */
static int read_edges(struct cv_volume *v, char *bounce, uint64_t first,
                      uint64_t end, uint64_t off, uint64_t len)
{
    uint64_t ss = v->info.sector_size;
    int r = 0;

    if (off != first)
        r = read_sectors(v, bounce, ss, first);
    if (r == 0 && (off + len) % ss != 0 && (end - ss != first || off == first))
        r = read_sectors(v, bounce + (end - ss - first), ss, end - ss);
    return r;
}

/* A write without FUA: read-modify-write of partial edge sectors, the
 * cipher, one store call. */
static int write_range(struct cv_volume *v, const void *buf, size_t len,
                       uint64_t off)
{
    uint64_t first, end;
    struct cv_range range;
    const char *plain = buf;
    char *bounce;
    int r = 0;

    span(v, off, len, &first, &end);
    bounce = malloc(end - first);
    if (!bounce)
        return cv_error(-ENOMEM, "%s: out of memory", v->b->name);
    /* Every write holds its sectors, so an aligned write cannot slip in
     * between the read and the write of another's read-modify-write. */
    cv_range_lock(&v->locks, &range, first, end);
    if (first != off || end != off + len) {
        r = read_edges(v, bounce, first, end, off, len);
        if (r == 0)
            memcpy(bounce + (off - first), buf, len);
        plain = bounce;         /* encrypted in place */
    }
    /* An aligned write encrypts straight from the caller's buffer. */
    if (r == 0)
        r = write_sectors(v, bounce, plain, end - first, first);
    cv_range_unlock(&v->locks, &range);
    free(bounce);
    return r;
}

static int check_writable(struct cv_volume *v)
{
    return (v->flags & CV_VOLUME_READONLY) ?
        cv_error(-EROFS, "%s: volume is open read-only", v->b->name) : 0;
}

/* FUA means the whole request is durable when it returns: one flush after
 * all of its data is written (DESIGN.md, "Encryption at rest"). */
static int finish_fua(struct cv_volume *v, int r, unsigned flags)
{
    return r == 0 && (flags & CV_WRITE_FUA) ? cv_backend_flush(v->b) : r;
}

int cv_volume_write(struct cv_volume *v, const void *buf, size_t len,
                    uint64_t off, unsigned flags)
{
    int r = check_writable(v);

    if (r == 0)
        r = check_range(v, "write", len, off);
    if (r < 0 || len == 0)
        return r;
    return finish_fua(v, write_range(v, buf, len, off), flags);
}

int cv_volume_write_zeroes(struct cv_volume *v, uint64_t len, uint64_t off,
                           unsigned flags)
{
    size_t chunk = len < ZERO_CHUNK ? (size_t)len : ZERO_CHUNK;
    char *zeros;
    int r = check_writable(v);

    if (r == 0)
        r = check_range(v, "write zeroes", len, off);
    if (r < 0 || len == 0)
        return r;
    zeros = calloc(1, chunk);
    if (!zeros)
        return cv_error(-ENOMEM, "%s: out of memory", v->b->name);
    while (len > 0 && r == 0) {
        size_t n = len < chunk ? (size_t)len : chunk;
        r = write_range(v, zeros, n, off);
        off += n;
        len -= n;
    }
    free(zeros);
    return finish_fua(v, r, flags);
}

int cv_volume_discard(struct cv_volume *v, uint64_t len, uint64_t off)
{
    uint64_t ss = v->info.sector_size;
    uint64_t first = (off + ss - 1) / ss * ss, end = (off + len) / ss * ss;
    struct cv_range range;
    int r;

    r = check_range(v, "discard", len, off);
    if (r < 0 || end <= first)
        return r;
    /* Partial sectors at the edges keep their data: deallocating them
     * would destroy the bytes outside the range. */
    cv_range_lock(&v->locks, &range, first, end);
    r = cv_backend_discard(v->b, v->info.data_offset + first, end - first);
    cv_range_unlock(&v->locks, &range);
    return r;
}

int cv_volume_flush(struct cv_volume *v)
{
    return cv_backend_flush(v->b);
}

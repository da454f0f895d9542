#include "volume.h"
#include "store/backend.h"
#include "core/error.h"
#include "core/rangelock.h"
#include "core/secmem.h"
#include "core/workers.h"
#include "crypto/xts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Zeroes are written in pieces of this size. */
#define ZERO_CHUNK (1024 * 1024)
/* Below this a request is not worth handing to other threads. */
#define PARALLEL_MIN (128 * 1024)

struct cv_volume {
    struct cv_backend *b;
    struct cv_xts *xts;
    struct cv_workers *workers;
    struct cv_luks_info info;
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
    /* Requests are split here, crypto and store I/O together, so the xts
     * layer needs no pool of its own. */
    r = cv_xts_new(key, keylen, v->info.sector_size, NULL, &v->xts);
    if (r < 0) {
        cv_error_prefix(r, "%s", b->name);
        goto out;
    }
    v->b = b;
    v->workers = workers;
    v->flags = flags;
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
    r = cv_xts_new(key, keylen, v->info.sector_size, NULL, &v->xts);
    if (r < 0) {
        free(v);
        return cv_error_prefix(r, "%s", b->name);
    }
    v->b = b;
    v->workers = workers;
    v->flags = flags;
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
    return v->info.effective_size;
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
    uint64_t size = v->info.effective_size;

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

/* Reads and decrypts whole sectors [first, first+len) of the segment. */
static int read_sectors(struct cv_volume *v, void *buf, size_t len,
                        uint64_t first)
{
    int r = cv_backend_pread(v->b, buf, len, v->info.data_offset + first);

    return r < 0 ? r : cv_xts_decrypt(v->xts, buf, buf, len, first / 512);
}

/* Encrypts whole sectors from in into out and writes them at first. */
static int write_sectors(struct cv_volume *v, char *out, const char *in,
                         size_t len, uint64_t first, unsigned flags)
{
    int r = cv_xts_encrypt(v->xts, out, in, len, first / 512);

    return r < 0 ? r : cv_backend_pwrite(v->b, out, len,
                                         v->info.data_offset + first, flags);
}

/* A whole-sector request cut into equal runs of sectors, one per core;
 * each run does its own crypto and its own store call, so neither the
 * cipher nor the copy into the store waits on one thread. */
struct split {
    struct cv_volume *v;
    int write;
    char *out;                  /* read: destination; write: ciphertext */
    const char *in;             /* write: plaintext */
    size_t len, part_len;
    uint64_t first;
    unsigned flags;
    int result;
    char message[256];
};

static void split_part(void *arg, unsigned part)
{
    struct split *s = arg;
    size_t off = (size_t)part * s->part_len;
    size_t len = s->len - off < s->part_len ? s->len - off : s->part_len;
    int r, none = 0;

    if (s->write)
        r = write_sectors(s->v, s->out + off, s->in + off, len,
                          s->first + off, s->flags);
    else
        r = read_sectors(s->v, s->out + off, len, s->first + off);
    if (r < 0 && __atomic_compare_exchange_n(&s->result, &none, r, 0,
                                             __ATOMIC_ACQ_REL,
                                             __ATOMIC_ACQUIRE))
        snprintf(s->message, sizeof s->message, "%s", cv_last_error());
}

static int run_split(struct cv_volume *v, int write, char *out,
                     const char *in, size_t len, uint64_t first,
                     unsigned flags)
{
    unsigned n = cv_workers_count(v->workers) + 1, nparts;
    size_t ss = v->info.sector_size;
    struct split s = { .v = v, .write = write, .out = out, .in = in,
                       .len = len, .first = first, .flags = flags };

    if (len < PARALLEL_MIN || n == 1)
        return write ? write_sectors(v, out, in, len, first, flags)
                     : read_sectors(v, out, len, first);
    s.part_len = (len / n + ss - 1) / ss * ss;
    nparts = (unsigned)((len + s.part_len - 1) / s.part_len);
    cv_workers_run(v->workers, nparts, split_part, &s);
    return s.result < 0 ? cv_error(s.result, "%s", s.message) : 0;
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
        return run_split(v, 0, buf, NULL, len, first, 0);
    bounce = malloc(end - first);
    if (!bounce)
        return cv_error(-ENOMEM, "%s: out of memory", v->b->name);
    r = run_split(v, 0, bounce, NULL, end - first, first, 0);
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

int cv_volume_write(struct cv_volume *v, const void *buf, size_t len,
                    uint64_t off, unsigned flags)
{
    uint64_t first, end;
    struct cv_range range;
    const char *plain = buf;
    char *bounce;
    int r;

    if (v->flags & CV_VOLUME_READONLY)
        return cv_error(-EROFS, "%s: volume is open read-only", v->b->name);
    r = check_range(v, "write", len, off);
    if (r < 0 || len == 0)
        return r;
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
        r = run_split(v, 1, bounce, plain, end - first, first, flags);
    cv_range_unlock(&v->locks, &range);
    free(bounce);
    return r;
}

int cv_volume_write_zeroes(struct cv_volume *v, uint64_t len, uint64_t off,
                           unsigned flags)
{
    size_t chunk = len < ZERO_CHUNK ? (size_t)len : ZERO_CHUNK;
    char *zeros;
    int r;

    r = check_range(v, "write zeroes", len, off);
    if (r < 0 || len == 0)
        return r;
    zeros = calloc(1, chunk);
    if (!zeros)
        return cv_error(-ENOMEM, "%s: out of memory", v->b->name);
    while (len > 0 && r == 0) {
        size_t n = len < chunk ? (size_t)len : chunk;
        r = cv_volume_write(v, zeros, n, off, len == n ? flags : 0);
        off += n;
        len -= n;
    }
    free(zeros);
    return r;
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

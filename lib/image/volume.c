/* An open volume on a layer chain: open and close, reads, and writes with
 * their read-modify-write and copy-up (volume.h).  Zeroing, discard and
 * extents are in volume-zero.c; merge and flatten in volume-fill.c. */
#include "volume.h"
#include "volume-internal.h"
#include "store/backend.h"
#include "store/chain.h"
#include "core/error.h"
#include "core/rangelock.h"
#include "core/scratch.h"
#include "core/secmem.h"
#include "crypto/xts.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *vol_name(const struct cv_volume *v)
{
    return cv_chain_name(v->c);
}

void cv_volume_close(struct cv_volume *v)
{
    unsigned i;

    if (!v)
        return;
    for (i = 0; i < v->nformats; i++)
        cv_xts_free(v->xts[i]);
    cv_rangelock_destroy(&v->locks);
    if (v->own_chain)
        cv_chain_close(v->c);
    free(v);
}

/* The volume of chain c with one cipher per key; on failure c is left to
 * the caller. */
static int volume_new(struct cv_chain *c, int own_chain,
                      const struct cv_volume_key *keys, unsigned nkeys,
                      struct cv_workers *workers, unsigned flags,
                      struct cv_volume **out)
{
    struct cv_volume *v = calloc(1, sizeof *v);
    int r = 0;

    if (!v)
        return cv_error(-ENOMEM, "%s: out of memory", cv_chain_name(c));
    v->c = c;
    v->info = keys[0].info;
    /* The cipher runs on every core for large requests; the store gets
     * one call per request. */
    for (v->nformats = 0; v->nformats < nkeys && r == 0; v->nformats++) {
        const struct cv_volume_key *k = &keys[v->nformats];
        r = cv_xts_new(k->key, k->keylen, k->info.sector_size, workers,
                       &v->xts[v->nformats]);
        if (r < 0)
            break;
    }
    if (r < 0) {
        cv_error_prefix(r, "%s: format %u", cv_chain_name(c), v->nformats);
        cv_volume_close(v);
        return r;
    }
    v->own_chain = v->raw = own_chain;
    v->flags = flags;
    atomic_init(&v->size, v->info.effective_size);
    cv_rangelock_init(&v->locks);
    *out = v;
    return 0;
}

/* A raw image on b (cryptsetup's semantics) as a chain of one layer. */
static int open_wrapped(struct cv_backend *b, const struct cv_luks_info *info,
                        const unsigned char *key, size_t keylen,
                        struct cv_workers *workers, unsigned flags,
                        struct cv_volume **out)
{
    struct cv_volume_key k = { .key = key, .keylen = keylen, .info = *info };
    struct cv_chain *c = NULL;
    int r = cv_chain_wrap(b, info->data_offset, &c);

    if (r < 0)
        return r;
    r = volume_new(c, 1, &k, 1, workers, flags, out);
    if (r < 0)
        cv_chain_close(c);
    return r;
}

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
    struct cv_luks_info info;
    unsigned char *key = NULL;
    size_t keylen = 0;
    int r;

    r = cv_luks_load(b, &l);
    if (r >= 0)
        r = cv_luks_info(l, &info);
    /* The keyslot that opened, or an error. */
    if (r >= 0)
        r = cv_luks_unlock_keyslot(l, keyslot, pass, passlen, &key, &keylen);
    if (r >= 0)
        r = open_wrapped(b, &info, key, keylen, workers, flags, out);
    cv_secmem_free(key, keylen);
    cv_luks_free(l);
    return r < 0 ? r : 0;
}

int cv_volume_open_key(struct cv_backend *b, const struct cv_luks_info *info,
                       const unsigned char *key, size_t keylen,
                       struct cv_workers *workers, unsigned flags,
                       struct cv_volume **out)
{
    return open_wrapped(b, info, key, keylen, workers, flags, out);
}

/* Every format's data must sit where format 0's does: a block's offset
 * and IV (in 512-byte units from the data start, for any sector size) are
 * then the same in every format.  Sector sizes may differ (a LUKS1 clone
 * of a LUKS2 parent of 4 KiB sectors): the chain hands whole 4 KiB blocks
 * of one format, which are whole sectors of any size LUKS allows. */
static int check_keys(struct cv_chain *c, const struct cv_volume_key *keys,
                      unsigned nkeys)
{
    unsigned n = cv_chain_formats(c), k;

    if (nkeys != n || n == 0 || n > CV_CHAIN_MAX_FORMATS)
        return cv_error(-EINVAL, "%s: the chain has %u formats, but %u keys "
                        "were given", cv_chain_name(c), n, nkeys);
    for (k = 0; k < nkeys; k++) {
        const struct cv_luks_info *ik = &keys[k].info;
        if (ik->data_offset != cv_chain_data_offset(c))
            return cv_error(-EINVAL, "%s: format %u (%s) puts the data at "
                            "%llu, the chain at %llu: its blocks cannot be "
                            "read in place", cv_chain_name(c), k,
                            k ? cv_chain_format_volume(c, k) : "its own",
                            (unsigned long long)ik->data_offset,
                            (unsigned long long)cv_chain_data_offset(c));
        if (ik->sector_size < 512 || ik->sector_size > CV_CHAIN_BLOCK)
            return cv_error(-EINVAL, "%s: format %u has %u-byte sectors",
                            cv_chain_name(c), k, ik->sector_size);
    }
    return 0;
}

int cv_volume_open_chain(struct cv_chain *c, const struct cv_volume_key *keys,
                         unsigned nkeys, struct cv_workers *workers,
                         unsigned flags, struct cv_volume **out)
{
    int r = check_keys(c, keys, nkeys);

    return r < 0 ? r : volume_new(c, 0, keys, nkeys, workers, flags, out);
}

struct cv_chain *cv_volume_chain(const struct cv_volume *v)
{
    return v->c;
}

uint64_t cv_volume_size(const struct cv_volume *v)
{
    return atomic_load(&v->size);
}

int cv_volume_set_size(struct cv_volume *v, uint64_t size)
{
    uint64_t raw = cv_chain_size(v->c), ss = v->info.sector_size;

    if (size % ss || raw < v->info.data_offset ||
        size > raw - v->info.data_offset)
        return cv_error(-EINVAL, "%s: a size of %llu bytes is not whole "
                        "%llu-byte sectors within the %llu bytes the store "
                        "holds after the data offset", vol_name(v),
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

int vol_check_range(struct cv_volume *v, const char *op, uint64_t len,
                    uint64_t off)
{
    uint64_t size = atomic_load(&v->size);

    if (off > size || len > size - off)
        return cv_error(-ERANGE, "%s: %s of %llu bytes at offset %llu is "
                        "beyond the end of the volume (%llu bytes)",
                        vol_name(v), op, (unsigned long long)len,
                        (unsigned long long)off, (unsigned long long)size);
    return 0;
}

int vol_check_writable(struct cv_volume *v)
{
    return (v->flags & CV_VOLUME_READONLY) || cv_chain_readonly(v->c) ?
        cv_error(-EROFS, "%s: volume is open read-only", vol_name(v)) : 0;
}

/* The end of the block at b, or the volume's end if that comes first (a
 * volume of 512-byte sectors need not be whole blocks). */
static uint64_t block_end(struct cv_volume *v, uint64_t b)
{
    uint64_t size = atomic_load(&v->size);

    return b + CV_CHAIN_BLOCK < size ? b + CV_CHAIN_BLOCK : size;
}

struct decrypt_runs {
    struct cv_volume *v;
    uint64_t off;               /* volume offset of buf[0] */
};

/* Holes are already zeros; every other run is its format's ciphertext,
 * decrypted into dst (from the store's memory where it allows). */
static int decrypt_run(void *arg, void *dst, const void *src, size_t len,
                       size_t buf_off, int format)
{
    struct decrypt_runs *d = arg;
    struct cv_volume *v = d->v;
    int r;

    if (format == CV_CHAIN_HOLE)
        return 0;
    if (format < 0 || (unsigned)format >= v->nformats)
        return cv_error(-EIO, "%s: a layer of format %d at offset %llu, but "
                        "the volume has %u keys", vol_name(v), format,
                        (unsigned long long)(d->off + buf_off), v->nformats);
    r = cv_xts_decrypt(v->xts[format], dst, src, len,
                       (d->off + buf_off) / 512);
    return r < 0 ? cv_error_prefix(r, "%s", vol_name(v)) : 0;
}

/* A wrapped raw image that ends inside a block (512-byte sectors): the
 * chain reads whole blocks, so the sectors past the last whole block are
 * read from the image itself (every block of it is held, of format 0). */
static int read_raw_tail(struct cv_volume *v, char *buf, size_t len,
                         uint64_t off)
{
    int r = cv_backend_pread(cv_chain_backend(v->c), buf, len,
                             vol_raw(v, off));

    if (r == 0 && (r = cv_xts_decrypt(v->xts[0], buf, buf, len,
                                      off / 512)) < 0)
        r = cv_error_prefix(r, "%s", vol_name(v));
    return r;
}

int vol_read_plain(struct cv_volume *v, void *buf, size_t len, uint64_t off,
                   unsigned below)
{
    struct decrypt_runs d = { .v = v, .off = off };
    size_t whole = len / CV_CHAIN_BLOCK * CV_CHAIN_BLOCK;
    int r = 0;

    if (whole == len || !v->raw)
        return cv_chain_read_xform(v->c, buf, len, vol_raw(v, off), below,
                                   decrypt_run, &d);
    if (whole)
        r = cv_chain_read_xform(v->c, buf, whole, vol_raw(v, off), below,
                                decrypt_run, &d);
    return r < 0 ? r : read_raw_tail(v, (char *)buf + whole, len - whole,
                                     off + whole);
}

int cv_volume_read(struct cv_volume *v, void *buf, size_t len, uint64_t off)
{
    uint64_t first, end;
    char *bounce;
    int r;

    r = vol_check_range(v, "read", len, off);
    if (r < 0 || len == 0)
        return r;
    /* The chain reads whole blocks. */
    first = vol_block_floor(off);
    end = block_end(v, vol_block_floor(off + len - 1));
    if (first == off && end == off + len)
        return vol_read_plain(v, buf, len, off, CV_CHAIN_TOP);
    bounce = cv_scratch_get(end - first);
    if (!bounce)
        return cv_error_prefix(-ENOMEM, "%s", vol_name(v));
    r = vol_read_plain(v, bounce, end - first, first, CV_CHAIN_TOP);
    if (r == 0)
        memcpy(buf, bounce + (off - first), len);
    cv_scratch_put(bounce);
    return r;
}

struct encrypt_arg {
    struct cv_volume *v;
    uint64_t off;               /* volume offset of the plaintext's start */
};

static int encrypt_xform(void *arg, void *dst, const void *src, size_t n,
                         size_t pos)
{
    struct encrypt_arg *e = arg;
    int r = cv_xts_encrypt(e->v->xts[0], dst, src, n, (e->off + pos) / 512);

    return r < 0 ? cv_error_prefix(r, "%s", vol_name(e->v)) : 0;
}

/* Encrypts plaintext in with format 0's key (on every core for a large
 * request) and writes it in one chain call: straight into the store's
 * memory where it allows, else through a scratch buffer.  in is not
 * changed. */
static int write_cipher(struct cv_volume *v, const char *in, size_t len,
                        uint64_t off)
{
    struct encrypt_arg e = { .v = v, .off = off };

    return cv_chain_write_xform(v->c, in, len, vol_raw(v, off), 0,
                                encrypt_xform, &e);
}

/* The edge blocks of a write that it covers in part, where the head held
 * them when the write began (it then writes only its sectors there). */
struct edges {
    uint64_t b[2];
    int holder[2];              /* the head's layer id then */
    unsigned n;
};

/* Whether a write of [off, off+len) must take in the whole block at b: it
 * covers part of it, and the head does not hold it (so the rest would read
 * as zeros once the head holds the part).  Where the head holds it, its
 * id goes into e. */
static int needs_copy_up(struct cv_volume *v, uint64_t b, uint64_t off,
                         uint64_t len, struct edges *e, int *out)
{
    uint64_t run = 0, n = block_end(v, b) - b;
    int r, format = 0;

    *out = 0;
    /* A wrapped raw image holds every block, and takes no snapshots. */
    if (v->raw || (off <= b && off + len >= b + n))
        return 0;
    r = cv_chain_layer_has(v->c, CV_CHAIN_TOP, vol_raw(v, b), n, &run);
    if (r < 0)
        return r;
    *out = r == 0;
    if (r == 0)
        return 0;
    e->b[e->n] = b;
    r = vol_lookup(v, b, n, CV_CHAIN_TOP, &run, &e->holder[e->n], &format);
    e->n += r == 0;
    return r;
}

/* What the write stores: [*start, *stop), the sectors of [off, off+len)
 * and, where a block is copied up, the whole block. */
static int write_span(struct cv_volume *v, uint64_t off, uint64_t len,
                      uint64_t *start, uint64_t *stop, struct edges *e)
{
    uint64_t ss = v->info.sector_size;
    uint64_t b0 = vol_block_floor(off), b1 = vol_block_floor(off + len - 1);
    int up = 0, r = 0;

    *start = off / ss * ss;
    *stop = (off + len + ss - 1) / ss * ss;
    e->n = 0;
    /* Sectors of a block's size are the blocks: a partial one is read
     * whole below, wherever it comes from, and written whole. */
    if (ss >= CV_CHAIN_BLOCK)
        return 0;
    r = needs_copy_up(v, b0, off, len, e, &up);
    if (r == 0 && up) {
        *start = b0;
        if (b1 == b0)
            *stop = block_end(v, b0);
    }
    if (r == 0 && b1 != b0)
        r = needs_copy_up(v, b1, off, len, e, &up);
    if (r == 0 && b1 != b0 && up)
        *stop = block_end(v, b1);
    return r;
}

/* A snapshot came between the check that the head held block b and the
 * write of part of it: the part went to the new head alone, the rest of
 * the block reading zeros there.  Rewrites the block whole in the head:
 * what shows under the new head (the old one, now the snapshot's layer,
 * as it was before this write), with the write over it.  The range lock
 * still holds b, so nobody else wrote it meanwhile; a whole block is
 * right in whichever head it lands. */
static int rewrite_block(struct cv_volume *v, uint64_t b, const char *buf,
                         uint64_t off, uint64_t len, unsigned head)
{
    uint64_t end = block_end(v, b);
    uint64_t from = off > b ? off : b, to = off + len < end ? off + len : end;
    char *blk = cv_scratch_get(CV_CHAIN_BLOCK);
    int r;

    if (!blk)
        return cv_error_prefix(-ENOMEM, "%s", vol_name(v));
    r = vol_read_plain(v, blk, end - b, b, head);
    if (r == 0) {
        memcpy(blk + (from - b), buf + (from - off), to - from);
        r = write_cipher(v, blk, end - b, b);
    }
    cv_scratch_put(blk);
    return r;
}

/* After a write of part of blocks the head held: if the head is another
 * now, a snapshot came in between (see rewrite_block). */
static int check_edges(struct cv_volume *v, const struct edges *e,
                       const char *buf, uint64_t off, uint64_t len)
{
    uint64_t run = 0;
    int layer = 0, format = 0, r = 0;
    unsigned i;

    for (i = 0; r == 0 && i < e->n; i++) {
        r = vol_lookup(v, e->b[i], block_end(v, e->b[i]) - e->b[i],
                       CV_CHAIN_TOP, &run, &layer, &format);
        if (r == 0 && layer != e->holder[i] && layer != CV_CHAIN_HOLE)
            r = rewrite_block(v, e->b[i], buf, off, len, (unsigned)layer);
    }
    return r;
}

/* Fills [start, off) and [off+len, stop) of bounce (which holds [start,
 * stop)) with the plaintext the volume has there now: each lies in one
 * block, read whole from the view, whatever its format, or zeros. */
static int read_edges(struct cv_volume *v, char *bounce, uint64_t start,
                      uint64_t stop, uint64_t off, uint64_t len)
{
    char *blk = cv_scratch_get(CV_CHAIN_BLOCK);
    uint64_t b0 = vol_block_floor(off), b1 = vol_block_floor(off + len);
    int r = 0;

    if (!blk)
        return cv_error_prefix(-ENOMEM, "%s", vol_name(v));
    if (start < off) {
        r = vol_read_plain(v, blk, block_end(v, b0) - b0, b0, CV_CHAIN_TOP);
        if (r == 0)
            memcpy(bounce, blk + (start - b0), off - start);
    }
    if (r == 0 && off + len < stop) {
        if (b1 != b0 || start >= off)
            r = vol_read_plain(v, blk, block_end(v, b1) - b1, b1,
                               CV_CHAIN_TOP);
        if (r == 0)
            memcpy(bounce + (off + len - start), blk + (off + len - b1),
                   stop - (off + len));
    }
    cv_scratch_put(blk);
    return r;
}

int vol_write_range(struct cv_volume *v, const void *buf, size_t len,
                    uint64_t off)
{
    uint64_t start = 0, stop = 0;
    struct cv_range range;
    const char *plain = buf;
    char *bounce = NULL;
    struct edges e;
    int r;

    /* Every write holds its blocks, so no other write can slip in between
     * the read and the write of a read-modify-write or a copy-up, and the
     * decision to copy up stays true until the write. */
    cv_range_lock(&v->locks, &range, vol_block_floor(off),
                  vol_block_ceil(off + len));
    r = write_span(v, off, len, &start, &stop, &e);
    /* A partial write: the plaintext of its whole sectors (or blocks). */
    if (r == 0 && (start != off || stop != off + len)) {
        if (!(bounce = cv_scratch_get(stop - start)))
            r = cv_error_prefix(-ENOMEM, "%s", vol_name(v));
        if (r == 0)
            r = read_edges(v, bounce, start, stop, off, len);
        if (r == 0)
            memcpy(bounce + (off - start), buf, len);
        plain = bounce;
    }
    /* An aligned write encrypts straight from the caller's buffer. */
    if (r == 0)
        r = write_cipher(v, plain, stop - start, start);
    if (r == 0)
        r = check_edges(v, &e, buf, off, len);
    cv_range_unlock(&v->locks, &range);
    cv_scratch_put(bounce);
    return r;
}

/* FUA means the whole request is durable when it returns: one flush after
 * all of its data is written (DESIGN.md, "Encryption at rest"). */
int vol_finish_fua(struct cv_volume *v, int r, unsigned flags)
{
    return r == 0 && (flags & CV_WRITE_FUA) ? cv_chain_flush(v->c) : r;
}

int cv_volume_write(struct cv_volume *v, const void *buf, size_t len,
                    uint64_t off, unsigned flags)
{
    int r = vol_check_writable(v);

    if (r == 0)
        r = vol_check_range(v, "write", len, off);
    if (r < 0 || len == 0)
        return r;
    return vol_finish_fua(v, vol_write_range(v, buf, len, off), flags);
}

int cv_volume_flush(struct cv_volume *v)
{
    return cv_chain_flush(v->c);
}

int cv_volume_encrypt(struct cv_volume *v, void *buf, size_t len,
                      uint64_t off)
{
    unsigned ss = v->info.sector_size;
    int r = vol_check_range(v, "encrypt", len, off);

    if (r < 0)
        return r;
    if (off % ss || len % ss)
        return cv_error(-EINVAL, "%s: encrypt of %zu bytes at offset %llu: "
                        "not whole %u-byte sectors", vol_name(v), len,
                        (unsigned long long)off, ss);
    r = cv_xts_encrypt(v->xts[0], buf, buf, len, off / 512);
    return r < 0 ? cv_error_prefix(r, "%s", vol_name(v)) : 0;
}

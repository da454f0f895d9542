/* Zeroing, discard and extents on a layer chain (volume.h).
 *
 * A whole block that no layer below the head holds is punched from the
 * head: it then is a hole, which reads as zeros and costs nothing.  A
 * whole block some lower layer holds gets encrypted zeros in the head
 * instead, since a hole there would let the older data show through.  A
 * wrapped raw image (cryptsetup's semantics) has no holes: zeroing writes
 * encrypted zeros, discard deallocates and leaves what zeroed ciphertext
 * decrypts to.  A snapshot may come between a look and a punch: each punch
 * is looked at again (punch_checked). */
#include "volume.h"
#include "volume-internal.h"
#include "store/backend.h"
#include "store/chain.h"
#include "core/error.h"
#include "core/rangelock.h"
#include "crypto/xts.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int vol_lookup(struct cv_volume *v, uint64_t off, uint64_t len,
               unsigned below, uint64_t *run, int *layer, int *format)
{
    int r;

    *format = 0;
    r = cv_chain_lookup(v->c, vol_raw(v, off), len, below, run, format);

    /* The layer's id, or CV_CHAIN_HOLE (which is also -EPERM: the chain
     * says a hole by its format too). */
    if (r < 0 && !(r == CV_CHAIN_HOLE && *format == CV_CHAIN_HOLE))
        return r;
    *layer = r;
    if (*run == 0 || *run > len)
        return cv_error(-EIO, "%s: the chain's lookup at %llu answered for "
                        "%llu bytes of %llu", vol_name(v),
                        (unsigned long long)off, (unsigned long long)*run,
                        (unsigned long long)len);
    return 0;
}

/* Encrypted zeros over [off, off+len) (whole blocks, the range held), a
 * piece at a time, without FUA. */
static int write_cipher_zeros(struct cv_volume *v, uint64_t off, uint64_t len)
{
    size_t chunk = len < VOL_PIECE ? (size_t)len : VOL_PIECE;
    char *zeros = calloc(1, chunk), *out = malloc(chunk);
    int r = 0;

    if (!zeros || !out)
        r = cv_error(-ENOMEM, "%s: out of memory", vol_name(v));
    while (r == 0 && len > 0) {
        size_t n = len < chunk ? (size_t)len : chunk;
        r = cv_xts_encrypt(v->xts[0], out, zeros, n, off / 512);
        if (r < 0)
            r = cv_error_prefix(r, "%s", vol_name(v));
        else
            r = cv_chain_write(v->c, out, n, vol_raw(v, off), 0);
        off += n;
        len -= n;
    }
    free(zeros);
    free(out);
    return r;
}

/* Punches [off, off+len) from the head, which holds it and under which
 * nothing does; then looks again: if a snapshot came in between, the old
 * head's data now shows through the new one, and gets encrypted zeros. */
static int punch_checked(struct cv_volume *v, uint64_t off, uint64_t len)
{
    uint64_t end = off + len, run = 0;
    int layer = 0, format = 0;
    int r = cv_chain_punch(v->c, vol_raw(v, off), len);

    while (r == 0 && off < end) {
        r = vol_lookup(v, off, end - off, CV_CHAIN_TOP, &run, &layer,
                       &format);
        if (r == 0 && layer != CV_CHAIN_HOLE)
            r = write_cipher_zeros(v, off, run);
        off += run;
    }
    return r;
}

/* Blocks [off, off+len) that head (layer id) holds: punched where nothing
 * below holds them, encrypted zeros where something does. */
static int zero_head_run(struct cv_volume *v, uint64_t off, uint64_t len,
                         unsigned head)
{
    uint64_t end = off + len, run = 0;
    int layer = 0, format = 0, r = 0;

    while (r == 0 && off < end) {
        r = vol_lookup(v, off, end - off, head, &run, &layer, &format);
        if (r == 0)
            r = layer == CV_CHAIN_HOLE ? punch_checked(v, off, run)
                                       : write_cipher_zeros(v, off, run);
        off += run;
    }
    return r;
}

/* Makes the whole blocks [off, off+len) read as zeros, looking at each run
 * of the view: a hole stays one; a run the head lacks (a lower layer's)
 * gets encrypted zeros; a run the head holds is punched where nothing
 * below it holds the blocks.  Holds the range while it looks and writes. */
static int zero_blocks(struct cv_volume *v, uint64_t off, uint64_t len)
{
    struct cv_range range;
    uint64_t run = 0, hrun = 0, end = off + len;
    int layer = 0, format = 0, r = 0, head;

    cv_range_lock(&v->locks, &range, off, end);
    while (r == 0 && off < end) {
        r = vol_lookup(v, off, end - off, CV_CHAIN_TOP, &run, &layer,
                       &format);
        if (r < 0 || layer == CV_CHAIN_HOLE) {
            off += run;
            continue;
        }
        head = cv_chain_layer_has(v->c, CV_CHAIN_TOP, vol_raw(v, off), run,
                                  &hrun);
        if (head < 0)
            r = head;
        else if (hrun == 0 || hrun > run)
            r = cv_error(-EIO, "%s: the chain's head answered for %llu bytes "
                         "of %llu", vol_name(v), (unsigned long long)hrun,
                         (unsigned long long)run);
        else if (head)          /* the view's top layer is the head */
            r = zero_head_run(v, off, hrun, (unsigned)layer);
        else
            r = write_cipher_zeros(v, off, hrun);
        off += hrun;
    }
    cv_range_unlock(&v->locks, &range);
    return r;
}

/* A wrapped raw image: encrypted zeros everywhere, in pieces, each an
 * ordinary write (with its read-modify-write at the edges). */
static int zero_raw(struct cv_volume *v, uint64_t len, uint64_t off)
{
    size_t chunk = len < VOL_PIECE ? (size_t)len : VOL_PIECE;
    char *zeros = calloc(1, chunk);
    int r = 0;

    if (!zeros)
        return cv_error(-ENOMEM, "%s: out of memory", vol_name(v));
    while (len > 0 && r == 0) {
        size_t n = len < chunk ? (size_t)len : chunk;
        r = vol_write_range(v, zeros, n, off);
        off += n;
        len -= n;
    }
    free(zeros);
    return r;
}

/* Zeros written over [off, off+len), inside one block. */
static int zero_partial(struct cv_volume *v, uint64_t off, uint64_t len)
{
    static const char zeros[CV_CHAIN_BLOCK];

    return len ? vol_write_range(v, zeros, len, off) : 0;
}

/* The whole blocks of [off, off+len): [*first, *end), empty if none.  A
 * volume that ends inside a block (512-byte sectors) has its last partial
 * block counted as partial. */
static void whole_blocks(uint64_t off, uint64_t len, uint64_t *first,
                         uint64_t *end)
{
    *first = vol_block_ceil(off);
    *end = vol_block_floor(off + len);
    if (*end < *first)
        *end = *first;
}

int cv_volume_write_zeroes(struct cv_volume *v, uint64_t len, uint64_t off,
                           unsigned flags)
{
    uint64_t first, end;
    int r = vol_check_writable(v);

    if (r == 0)
        r = vol_check_range(v, "write zeroes", len, off);
    if (r < 0 || len == 0)
        return r;
    if (v->raw)
        return vol_finish_fua(v, zero_raw(v, len, off), flags);
    whole_blocks(off, len, &first, &end);
    if (first == end) {         /* inside one block, or across one edge */
        uint64_t mid = first < off + len ? first : off + len;
        r = zero_partial(v, off, mid - off);
        if (r == 0)
            r = zero_partial(v, mid, off + len - mid);
    } else {
        r = zero_partial(v, off, first - off);
        if (r == 0)
            r = zero_blocks(v, first, end - first);
        if (r == 0)
            r = zero_partial(v, end, off + len - end);
    }
    return vol_finish_fua(v, r, flags);
}

int cv_volume_discard(struct cv_volume *v, uint64_t len, uint64_t off)
{
    uint64_t first, end;
    struct cv_range range;
    int r = vol_check_writable(v);

    if (r == 0)
        r = vol_check_range(v, "discard", len, off);
    whole_blocks(off, len, &first, &end);
    if (r < 0 || end <= first)
        return r;
    /* Partial blocks at the edges keep their data: deallocating them
     * would destroy the bytes outside the range. */
    if (!v->raw)
        return zero_blocks(v, first, end - first);
    cv_range_lock(&v->locks, &range, first, end);
    r = cv_chain_punch(v->c, vol_raw(v, first), end - first);
    cv_range_unlock(&v->locks, &range);
    return r;
}

struct extent {
    uint64_t len;
    unsigned flags;
};

int cv_volume_extents(struct cv_volume *v, uint64_t off, uint64_t len,
                      int (*cb)(void *arg, uint64_t len, unsigned flags),
                      void *arg)
{
    uint64_t end = off + len, size = cv_volume_size(v), run = 0;
    struct extent cur = { 0, 0 };
    int layer = 0, format = 0, r = vol_check_range(v, "extents", len, off);

    /* A wrapped raw image is data throughout. */
    if (r == 0 && v->raw && len)
        return cb(arg, len, 0);
    while (r == 0 && off < end) {
        uint64_t b = vol_block_floor(off);
        uint64_t want = (vol_block_ceil(end) < size ? vol_block_ceil(end)
                         : size) - b;
        unsigned flags;

        r = vol_lookup(v, b, want, CV_CHAIN_TOP, &run, &layer, &format);
        if (r < 0)
            break;
        flags = layer == CV_CHAIN_HOLE ? CV_EXTENT_HOLE | CV_EXTENT_ZERO : 0;
        run = (b + run < end ? b + run : end) - off;
        /* Runs of different layers with the same flags are one extent. */
        if (cur.len && cur.flags != flags) {
            r = cb(arg, cur.len, cur.flags);
            cur.len = 0;
        }
        cur.flags = flags;
        cur.len += run;
        off += run;
    }
    if (r == 0 && cur.len)
        r = cb(arg, cur.len, cur.flags);
    return r;
}

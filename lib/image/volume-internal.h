/* What lib/image/volume.c (open, read, write), volume-zero.c (zeroing,
 * discard, extents) and volume-fill.c (merge and flatten) share.  Not for
 * other folders: they go through volume.h. */
#ifndef CRYPTVOL_VOLUME_INTERNAL_H
#define CRYPTVOL_VOLUME_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/rangelock.h"
#include "luks/luks.h"
#include "store/chain.h"

struct cv_xts;

/* Work is done in pieces of this size: zeros written, blocks copied. */
#define VOL_PIECE (1024 * 1024)

struct cv_volume {
    struct cv_chain *c;
    /* cv_volume_open* wrapped a backend: the chain is the volume's, closed
     * with it. */
    int own_chain;
    /* That chain is a raw image (cryptsetup's semantics): every block is
     * held, of format 0, and a punched block is not a hole but zeroed
     * ciphertext. */
    int raw;
    /* One cipher per format of the chain; xts[0] encrypts every write. */
    struct cv_xts *xts[CV_CHAIN_MAX_FORMATS];
    unsigned nformats;
    struct cv_luks_info info;   /* format 0's header */
    /* What I/O may reach: info.effective_size at open, then what
     * cv_volume_set_size says (an online grow, while requests run). */
    _Atomic uint64_t size;
    /* Writes hold the 4 KiB blocks they touch, so a copy-up or a
     * read-modify-write never interleaves with another write of the
     * same block, nor with a merge or flatten filling it. */
    struct cv_rangelock locks;
    unsigned flags;
};

const char *vol_name(const struct cv_volume *v);

/* Raw image offset of volume offset off. */
static inline uint64_t vol_raw(const struct cv_volume *v, uint64_t off)
{
    return v->info.data_offset + off;
}

static inline uint64_t vol_block_floor(uint64_t off)
{
    return off / CV_CHAIN_BLOCK * CV_CHAIN_BLOCK;
}

static inline uint64_t vol_block_ceil(uint64_t off)
{
    return (off + CV_CHAIN_BLOCK - 1) / CV_CHAIN_BLOCK * CV_CHAIN_BLOCK;
}

/* -ERANGE, saying so, unless [off, off+len) is inside the volume. */
int vol_check_range(struct cv_volume *v, const char *op, uint64_t len,
                    uint64_t off);
/* -EROFS unless the volume (and its chain) may be written. */
int vol_check_writable(struct cv_volume *v);

/* Reads the plaintext of [off, off+len) (volume offsets; off a block
 * boundary, len whole blocks or reaching the volume's end) from the view
 * under layer below (CV_CHAIN_TOP: the whole view): holes are zeros,
 * every other run is decrypted with its format's key. */
int vol_read_plain(struct cv_volume *v, void *buf, size_t len, uint64_t off,
                   unsigned below);

/* A write of plaintext buf to [off, off+len) under the range lock, with
 * the read-modify-write of partial sectors and the copy-up of partial
 * blocks the head does not hold.  No FUA. */
int vol_write_range(struct cv_volume *v, const void *buf, size_t len,
                    uint64_t off);

/* With FUA, one flush of the chain after a request's data is written. */
int vol_finish_fua(struct cv_volume *v, int r, unsigned flags);

/* cv_chain_lookup: *layer gets the id of the layer holding the block at
 * off (volume offset) in the view under below, or CV_CHAIN_HOLE; *format
 * its format; *run the bytes with that answer. */
int vol_lookup(struct cv_volume *v, uint64_t off, uint64_t len,
               unsigned below, uint64_t *run, int *layer, int *format);

#endif

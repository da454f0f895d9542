/* AES-XTS over whole encryption sectors with the LUKS/dm-crypt plain64 IV:
 * the tweak is the little-endian 64-bit number of the sector's first
 * 512-byte unit counted from the start of the data segment, also when the
 * encryption sector is 4096 bytes (no iv_large_sectors, as librbd does).
 *
 * The cipher is libgcrypt's.  One call handles a whole request: a cipher
 * handle keyed once is taken from the volume's few (at most two per CPU),
 * and buffers of 128 KiB and more are split across the worker pool's
 * threads.  Key schedules live in libgcrypt's secure memory, locked in RAM
 * and excluded from core dumps; the key itself in cv_secmem_alloc's. */
#ifndef CRYPTVOL_XTS_H
#define CRYPTVOL_XTS_H

#include <stddef.h>
#include <stdint.h>

struct cv_workers;
struct cv_xts;

/* Initialises libgcrypt for the process, once, whichever thread calls
 * first: its secure memory pool (half of RLIMIT_MEMLOCK, at most 4 MiB),
 * locked and marked MADV_DONTDUMP.  cv_xts_new calls it; a daemon calls it
 * at start to fail early (RLIMIT_MEMLOCK too small) rather than at the
 * first attach.  libgcrypt must not have been initialised by anyone else. */
int cv_xts_init(void);
/* The size of that pool in bytes (0 before cv_xts_init). */
size_t cv_xts_secmem_size(void);

/* key is the full XTS key (32 bytes for AES-128, 64 for AES-256); it is
 * copied into locked memory.  workers may be NULL (single-threaded).
 * Fails when libgcrypt refuses the key or its secure memory is full. */
int cv_xts_new(const void *key, size_t keylen, unsigned sector_size,
               struct cv_workers *workers, struct cv_xts **out);
void cv_xts_free(struct cv_xts *x);

/* len must be a multiple of the sector size; first_sector512 is the IV of
 * the first sector in 512-byte units.  in == out is allowed. */
int cv_xts_encrypt(struct cv_xts *x, void *out, const void *in, size_t len,
                   uint64_t first_sector512);
int cv_xts_decrypt(struct cv_xts *x, void *out, const void *in, size_t len,
                   uint64_t first_sector512);

#endif

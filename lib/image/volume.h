/* An open encrypted volume: byte-addressed reads and writes over a LUKS
 * data segment, at any offset and length.  Writes that cover part of a
 * sector are read-modify-write under a lock on that sector range.
 *
 * The volume sits on a layer chain (store/chain.h).  A block no layer
 * holds reads as zeros; a block of a parent's format is decrypted with
 * that format's key and, when a write covers part of it, copied up into
 * the head re-encrypted with the head's (the partial block is read,
 * overlaid and written whole under the range lock, so concurrent writers
 * never tear it).  Zeroing or trimming a block some lower layer holds
 * writes encrypted zeros into the head (a hole there would let the older
 * data show through); where nothing below holds it, the head's block is
 * punched. */
#ifndef CRYPTVOL_VOLUME_H
#define CRYPTVOL_VOLUME_H

#include <stddef.h>
#include <stdint.h>

#include "luks/luks.h"

struct cv_backend;
struct cv_workers;
struct cv_volume;

#define CV_VOLUME_READONLY 1u

/* Unlocks the LUKS volume on b with a passphrase.  b stays the caller's
 * and must outlive the volume.  workers (may be NULL) encrypts large
 * requests on several cores.  The message names the volume as b->name. */
int cv_volume_open(struct cv_backend *b, const char *pass, size_t passlen,
                   struct cv_workers *workers, unsigned flags,
                   struct cv_volume **out);
/* As cv_volume_open, trying only keyslot (-1: any). */
int cv_volume_open_keyslot(struct cv_backend *b, int keyslot,
                           const char *pass, size_t passlen,
                           struct cv_workers *workers, unsigned flags,
                           struct cv_volume **out);
/* Opens with a volume key already checked against the header whose info
 * is given (cv_luks_verify_key): no keyslot is read.  key stays the
 * caller's. */
int cv_volume_open_key(struct cv_backend *b, const struct cv_luks_info *info,
                       const unsigned char *key, size_t keylen,
                       struct cv_workers *workers, unsigned flags,
                       struct cv_volume **out);
/* The key of one format of a chain: the volume key (locked memory, the
 * caller's; copied into the cipher) and the header it was checked
 * against. */
struct cv_chain;
struct cv_volume_key {
    const unsigned char *key;
    size_t keylen;
    struct cv_luks_info info;
};
/* Opens the volume of chain c (c stays the caller's and must outlive the
 * volume) with one key per format of the chain (cv_chain_formats), in
 * format order.  Every format must have the data offset of the chain (a
 * clone's header is made to fit its parent's); sector sizes may differ
 * (a LUKS1 clone of a LUKS2 parent of 4 KiB sectors), as the chain hands
 * whole 4 KiB blocks, whole sectors of every format.  The volume's sector
 * size is format 0's. */
int cv_volume_open_chain(struct cv_chain *c, const struct cv_volume_key *keys,
                         unsigned nkeys, struct cv_workers *workers,
                         unsigned flags, struct cv_volume **out);
/* Wipes the key. */
void cv_volume_close(struct cv_volume *v);
struct cv_chain *cv_volume_chain(const struct cv_volume *v);

/* Effective size in bytes: the data segment, whole sectors (at open; then
 * what cv_volume_set_size set). */
uint64_t cv_volume_size(const struct cv_volume *v);
/* Sets the size I/O may reach, while requests run: lower (a cap the
 * caller knows of) or higher (the store grew: an online grow).  Whole
 * sectors, within what the store holds after the data offset; -EINVAL
 * otherwise, saying so.  The header is not touched: a LUKS2 data segment
 * that is "dynamic" and a LUKS1 payload both run to the end of the store,
 * but a LUKS2 segment of a fixed size does not, so a caller growing the
 * store checks the header's effective size first. */
int cv_volume_set_size(struct cv_volume *v, uint64_t size);
unsigned cv_volume_sector_size(const struct cv_volume *v);
const struct cv_luks_info *cv_volume_info(const struct cv_volume *v);

/* Out-of-range I/O fails with -ERANGE and touches nothing. */
int cv_volume_read(struct cv_volume *v, void *buf, size_t len, uint64_t off);
/* flags: CV_WRITE_FUA. */
int cv_volume_write(struct cv_volume *v, const void *buf, size_t len,
                    uint64_t off, unsigned flags);
/* Makes the range read as zeros (encrypted zeros are written). */
int cv_volume_write_zeroes(struct cv_volume *v, uint64_t len, uint64_t off,
                           unsigned flags);
/* Deallocates what it can inside the range (what dm-crypt's
 * allow_discards does: which blocks are unused becomes visible in the
 * store).  On a chain the whole blocks inside it then read as zeros, as
 * cv_volume_write_zeroes leaves them; on a wrapped raw image (cryptsetup's
 * semantics) they read as whatever zeroed ciphertext decrypts to. */
int cv_volume_discard(struct cv_volume *v, uint64_t len, uint64_t off);
int cv_volume_flush(struct cv_volume *v);

/* Extents for NBD base:allocation: cb gets each extent of [off, off+len)
 * (volume offsets) in order, with CV_EXTENT_* flags, covering at least the
 * first byte; stops when cb returns non-zero (that value is returned). */
#define CV_EXTENT_HOLE 1u
#define CV_EXTENT_ZERO 2u
int cv_volume_extents(struct cv_volume *v, uint64_t off, uint64_t len,
                      int (*cb)(void *arg, uint64_t len, unsigned flags),
                      void *arg);

/* Encrypts len bytes of plaintext in buf, in place, as format 0 stores
 * them at volume offset off (whole sectors): an export's holes. */
int cv_volume_encrypt(struct cv_volume *v, void *buf, size_t len,
                      uint64_t off);

/* Merge and flatten: copies into own layer target (a chain id) every
 * block of [off, off+len) (volume offsets) that target lacks and that
 * shows through it from a layer listed in from (nfrom 0: any layer below
 * it), decrypted with the key of its format and encrypted with target's
 * (copied raw when they are the same).  No view changes: what target
 * showed, it now holds.  Writes to the same blocks are ordered by the
 * volume's range lock, so it runs while the volume is written.  Blocks
 * target already holds are skipped, so after a crash it resumes by being
 * called again.  progress (may be NULL) gets the bytes copied so far after
 * each piece; non-zero from it stops the copy with that value.  Target is
 * not synced (cv_chain_sync_layer). */
typedef int (*cv_volume_progress_fn)(void *arg, uint64_t done);
int cv_volume_fill_layer(struct cv_volume *v, unsigned target,
                         const unsigned *from, size_t nfrom, uint64_t off,
                         uint64_t len, cv_volume_progress_fn progress,
                         void *arg);

#endif

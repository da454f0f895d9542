/* An open encrypted volume: byte-addressed reads and writes over a LUKS
 * data segment, at any offset and length.  Writes that cover part of a
 * sector are read-modify-write under a lock on that sector range. */
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
/* Wipes the key. */
void cv_volume_close(struct cv_volume *v);

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
/* Deallocates the whole sectors inside the range in the store (what
 * dm-crypt's allow_discards does: which sectors are unused becomes visible
 * in the store).  They then read back as whatever the zeroed ciphertext
 * decrypts to; callers that need zeros use cv_volume_write_zeroes. */
int cv_volume_discard(struct cv_volume *v, uint64_t len, uint64_t off);
int cv_volume_flush(struct cv_volume *v);

#endif

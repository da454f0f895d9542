/* Shared inside backup/: opening a backup's LUKS header, which the target
 * holds as the manifest's header blocks, to get the volume key (format 0)
 * and from it the key that authenticates the manifest.  Restore and
 * verify both do this before they trust a manifest (backup-header.c). */
#ifndef CRYPTVOLD_BACKUP_INTERNAL_H
#define CRYPTVOLD_BACKUP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "backup.h"
#include "target.h"
#include "luks/luks.h"

struct cv_backend;
struct cvd;

/* A backup's volume key and what opened it. */
struct cvd_backup_key {
    unsigned char *key;             /* locked memory */
    size_t keylen;
    struct cv_luks_info info;       /* of the header it was checked with */
    /* The secret whose value opened a keyslot, or "" when the header's
     * cryptvol-kek token did (then kek_gen is its generation). */
    char secret[CVD_NAME_MAX + 1];
    uint32_t kek_gen;
    unsigned char mac_key[CVD_BACKUP_MAC_KEY];  /* cvd_backup_mac_key */
};
/* Wipes; safe on a zeroed struct. */
void cvd_backup_key_free(struct cvd_backup_key *k);

/* Block b of backup id from the target into buf (b->len bytes), checked
 * against its size and checksum by cvd_target_block_get; a bad one is
 * named: "backup ID: block at offset N (sha256 H): checksum mismatch"
 * (-EBADMSG), "...: missing from the target" (-ENOENT), "...: not the
 * size its manifest lists" (-EMSGSIZE). */
int cvd_backup_block_get(struct cvd_target *t, const char *id,
                         const struct cvd_manifest_block *b, void *buf);

/* The header of manifest m, bytes [0, data_offset), in a new in-memory
 * store named "backup ID header": its blocks read from the target (each
 * checked against its checksum by cvd_target_block_get; a missing or
 * damaged one is named: "backup ID: block at offset N (sha256 H): ..."). */
int cvd_backup_header_read(struct cvd_target *t, const struct cvd_manifest *m,
                           struct cv_backend **out);

/* Unlocks the header hdr of the backup info describes.  secret: the name
 * of a secret of this daemon; NULL: the backup's own (info->secret), or,
 * when it has none, its cryptvol-kek token through this node's keyring.
 * The header's UUID must be info->uuid.  Errors:
 *   -ENOENT  "backup ID: secret \"s\" does not exist" (out->secret names
 *            it too, for a restore that waits for it)
 *   -CV_EWRONGKEY "backup ID: secret \"s\" does not open its header", or
 *            "backup ID: cluster KEK generation G does not unwrap its
 *            token"
 *   others from the keyring (a generation this node does not hold) or
 *   the header (damaged), prefixed with "backup ID: ".
 * On success out has the key, the header's info and the MAC key. */
int cvd_backup_header_key(struct cvd *d, const struct cvd_backup_info *info,
                          struct cv_backend *hdr, const char *secret,
                          struct cvd_backup_key *out);

/* Both, for manifest m as read (unauthenticated): header read, unlocked,
 * MAC key derived.  The caller then reads the manifest again with
 * out->mac_key and checks cvd_backup_same_header() against the one it
 * opened, before trusting it. */
int cvd_backup_unlock(struct cvd *d, struct cvd_target *t,
                      const struct cvd_manifest *m, const char *secret,
                      struct cvd_backup_key *out);

/* 1 if a and b list the same header blocks (offsets, lengths, checksums,
 * held sectors below data_offset) and the same data offset and UUID. */
int cvd_backup_same_header(const struct cvd_manifest *a,
                           const struct cvd_manifest *b);

#endif

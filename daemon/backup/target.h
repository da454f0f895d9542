/* The backup target's files (docs/backup.md, "Layout"), used only inside
 * backup/: the lock, content-addressed blocks, manifests and their MACs,
 * the per-volume index, and the collection of blocks nothing names.
 *
 *   DIR/cryptvol-backup             {"format": 1}: this is a target
 *   DIR/lock                        flock(2): shared by backups, restores
 *                                   and verifies, exclusive for deletes
 *   DIR/blocks/AB/CD/SHA256         a block: its bytes are named by their
 *                                   SHA-256 (hex), stored once
 *   DIR/backups/ID.json             a backup's manifest
 *   DIR/backups/ID.mac              HMAC-SHA256 of ID.json's bytes (hex),
 *                                   present once the backup is Completed
 *   DIR/volumes/VOLUME/ID           the per-volume index (empty files)
 *
 * Every file is written to a temporary name, synced, renamed into place
 * and its directory synced: a cut leaves the old file or the new one.
 * Functions return 0 or a negative errno with a message naming the target
 * and the file or block. */
#ifndef CRYPTVOLD_BACKUP_TARGET_H
#define CRYPTVOLD_BACKUP_TARGET_H

#include <stddef.h>
#include <stdint.h>

#include "backup.h"
#include "store/chain.h"

/* A backup block: this much of the raw image (the last may be shorter),
 * the unit of incremental backups and of content addressing. */
#define CVD_BACKUP_BLOCK (1024u * 1024u)
#define CVD_BACKUP_BLOCK_SECTORS (CVD_BACKUP_BLOCK / CV_CHAIN_BLOCK)

struct cvd_target;

/* Opens dir: makes the layout in a new or empty directory; refuses a
 * directory with other files and no marker ("not a backup target"), or a
 * marker of another format.  -ENOENT if dir does not exist. */
int cvd_target_open(const char *dir, struct cvd_target **out);
void cvd_target_close(struct cvd_target *t);
const char *cvd_target_dir(const struct cvd_target *t);

/* Takes the target's lock (flock on DIR/lock, which NFS v4 keeps across
 * clients), waiting up to wait_ms; -EBUSY after that, saying that another
 * backup, restore, verify or delete (maybe of another cluster) holds it.
 * *fd: pass it to cvd_target_unlock. */
enum cvd_target_lock_kind { CVD_TARGET_SHARED, CVD_TARGET_EXCLUSIVE };
int cvd_target_lock(struct cvd_target *t, enum cvd_target_lock_kind kind,
                    unsigned wait_ms, int *fd);
void cvd_target_unlock(int fd);

/* SHA-256 of buf, lower-case hex. */
int cvd_target_sha256(const void *buf, size_t len, char hex[65]);
/* Stores buf as a block unless the target has it (its name is hex, which
 * the caller computed with cvd_target_sha256).  *stored: 1 if it was
 * written now.  Durable when it returns.  -ENOSPC: "backup target DIR is
 * full: ..." (a partial file is removed). */
int cvd_target_block_put(struct cvd_target *t, const char *hex,
                         const void *buf, size_t len, int *stored);
/* Reads block hex, which must be exactly len bytes and hash to hex:
 * -ENOENT missing, -EMSGSIZE another size, -EBADMSG another checksum,
 * each naming the block. */
int cvd_target_block_get(struct cvd_target *t, const char *hex, void *buf,
                         size_t len);
/* 1 if the target has block hex, 0 if not. */
int cvd_target_block_exists(struct cvd_target *t, const char *hex);
int cvd_target_block_remove(struct cvd_target *t, const char *hex);

/* One manifest entry: the block of raw bytes [offset, offset+len), and
 * which of its CV_CHAIN_BLOCK sectors the volume held (the others were
 * holes: read as zeros from the block, written as nothing on restore). */
struct cvd_manifest_block {
    uint64_t offset;
    uint32_t len;
    char sha256[65];
    uint8_t held[CVD_BACKUP_BLOCK_SECTORS / 8];     /* bit i: sector i */
};
/* blocks: ascending offsets, only blocks with at least one held sector;
 * the header's blocks ([0, data_offset)) first, as every other. */
struct cvd_manifest {
    struct cvd_backup_info info;
    size_t nblocks;
    struct cvd_manifest_block *blocks;      /* malloc'ed */
};
void cvd_manifest_free(struct cvd_manifest *m);

/* The MAC key of a volume's manifests: HKDF-SHA256 of its volume key
 * (format 0), the LUKS UUID as info.  out: 32 bytes, the caller's locked
 * memory. */
#define CVD_BACKUP_MAC_KEY 32
int cvd_backup_mac_key(const void *volume_key, size_t len, const char *uuid,
                       unsigned char out[CVD_BACKUP_MAC_KEY]);

/* A new id no manifest of the target has (created with O_EXCL, so two
 * daemons cannot both take it: the manifest file then exists, empty, until
 * cvd_manifest_write fills it). */
int cvd_target_new_id(struct cvd_target *t, char id[CVD_BACKUP_ID_MAX + 1]);
/* Writes m (and its index entry) durably.  mac_key: writes ID.mac too
 * (a Completed backup); NULL: removes any ID.mac (InProgress, Failed). */
int cvd_manifest_write(struct cvd_target *t, const struct cvd_manifest *m,
                       const unsigned char *mac_key);
/* Reads manifest id.  mac_key NULL: not authenticated; else its MAC must
 * match (-EBADMSG "backup ID: its manifest does not match its MAC: changed,
 * or not made with this volume's key"; -ENOENT no MAC for a Completed
 * one).  A manifest whose id is not its file's name, that does not parse,
 * or whose blocks are out of order or past raw_size: -EBADMSG naming it. */
int cvd_manifest_read(struct cvd_target *t, const char *id,
                      const unsigned char *mac_key, struct cvd_manifest *out);
/* The info part of every manifest (of volume only, through the index,
 * when not NULL), newest first; ones that do not parse are skipped and
 * logged.  *out malloc'ed. */
int cvd_manifest_list(struct cvd_target *t, const char *volume,
                      struct cvd_backup_info **out, size_t *n);
/* Removes manifest id, its MAC and its index entry. */
int cvd_manifest_remove(struct cvd_target *t, const char *id);

/* Under the exclusive lock: removes every block no manifest names (also
 * the leftovers of a backup that failed or was killed), and temporary
 * files.  *freed: bytes removed. */
int cvd_target_collect(struct cvd_target *t, uint64_t *freed);
/* Counts for cvd_backup_target_info. */
int cvd_target_usage(struct cvd_target *t, uint64_t *blocks, uint64_t *bytes,
                     uint64_t *free_bytes);

#endif

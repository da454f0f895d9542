/* LUKS1 and LUKS2 headers through libcryptsetup.
 *
 * The header area of a backing store is copied into a memfd and
 * libcryptsetup works on that (as Ceph's librbd does), so any backend, not
 * only a local file, can hold a LUKS volume.  Changes are written back to
 * the store block by block, keyslot material before the header that points
 * at it. */
#ifndef CRYPTVOL_LUKS_H
#define CRYPTVOL_LUKS_H

#include <stddef.h>
#include <stdint.h>

struct cv_backend;
struct cv_luks;

#define CV_LUKS_MAX_SLOTS 32

/* Key derivation settings; zero fields take libcryptsetup's defaults. */
struct cv_pbkdf {
    const char *type;           /* "argon2id", "argon2i", "pbkdf2", NULL */
    uint32_t iterations;        /* fixed cost: no benchmark */
    uint32_t memory_kib;
    uint32_t time_ms;
};

struct cv_format_params {
    int luks_version;           /* 1 or 2 */
    unsigned key_bits;          /* AES key bits: 128 or 256 */
    unsigned sector_size;       /* 0: 4096 for LUKS2, 512 for LUKS1 */
    struct cv_pbkdf pbkdf;
    /* LUKS2 only: the keyslots area holds this many keyslots of the
     * volume's key and no more (0: libcryptsetup's default, 16 MiB less
     * the two header copies, more than LUKS2's 32 keyslots fill).
     * libcryptsetup fills the whole area with random bytes at format, so
     * this is what a format costs; the data offset is the next MiB
     * boundary after it. */
    unsigned keyslots;
    /* Where the data starts, in bytes (a multiple of 4096; 0: where
     * libcryptsetup puts it, after the keyslots area).  The header is made
     * to end there: a LUKS2 keyslots area fills the room (up to the
     * default 16 MiB; or holds exactly `keyslots`), LUKS1's 8 keyslots
     * must fit.  A clone's header is made so, to fit its parent's data
     * offset.  A header that cannot fit is refused, saying the bytes it
     * needs (-ENOSPC). */
    uint64_t data_offset;
    /* The store was just made (it reads as zeros) and nobody reads it
     * until the caller has flushed it: a file under a temporary name,
     * renamed once synced.  The format writes only what is not zero, and
     * neither it nor any change through the handle cv_luks_format_open
     * returns is flushed (the order of the writes is kept).  0: the store
     * is compared and rewritten where it differs, and each change is
     * flushed, keyslot material before the header. */
    int new_store;
};

/* The bytes one LUKS keyslot of a key of key_bytes takes in the keyslots
 * area: its anti-forensic split (4000 stripes), in whole 4 KiB blocks. */
uint64_t cv_luks_keyslot_area_size(size_t key_bytes);

struct cv_luks_info {
    int luks_version;
    char uuid[40];
    char cipher[64];            /* "aes-xts-plain64" */
    unsigned key_bits;          /* XTS key bits: 256 or 512 */
    unsigned sector_size;
    uint64_t data_offset;       /* bytes */
    uint64_t raw_size;          /* bytes in the store */
    uint64_t effective_size;    /* usable bytes: whole sectors after offset */
    int nslots;                 /* keyslots in use */
    int slots[CV_LUKS_MAX_SLOTS];
    uint64_t keyslots_size;     /* LUKS2: bytes of the keyslots area */
    int max_slots;              /* keyslots of this key size that fit */
};

/* Writes a new header to b.  Returns 0 or a negative errno. */
int cv_luks_format(struct cv_backend *b, const struct cv_format_params *p,
                   const char *pass, size_t passlen);
/* The same, and returns the handle of the new header (as cv_luks_load
 * would give it, without reading it back) for further changes: a second
 * keyslot, a token. */
int cv_luks_format_open(struct cv_backend *b,
                        const struct cv_format_params *p, const char *pass,
                        size_t passlen, struct cv_luks **out);

/* 1 if b carries a LUKS header, even a damaged one (a magic where
 * cryptsetup puts a header copy), 0 if not, or a negative errno. */
int cv_luks_probe(struct cv_backend *b);

/* Reads the header of b; a damaged LUKS2 primary header falls back to the
 * secondary copy.  The handle does not own b. */
int cv_luks_load(struct cv_backend *b, struct cv_luks **out);
/* Reads only the LUKS2 header and JSON areas (both copies), not the
 * keyslot areas: enough for info and tokens, quick enough to do for
 * every volume of a cluster.  Unlocking or changing keyslots through such
 * a handle fails with -EINVAL. */
int cv_luks_load_metadata(struct cv_backend *b, struct cv_luks **out);
void cv_luks_free(struct cv_luks *l);

int cv_luks_info(struct cv_luks *l, struct cv_luks_info *info);

/* Unlocks with a passphrase: on success returns the keyslot and a volume
 * key in locked memory (free with cv_secmem_free(key, keylen)).  A wrong
 * passphrase is CV_EWRONGKEY. */
int cv_luks_unlock(struct cv_luks *l, const char *pass, size_t passlen,
                   unsigned char **key, size_t *keylen);

/* As cv_luks_unlock, trying only keyslot (a volume may have a slow
 * argon2id keyslot beside the one the caller knows opens). */
int cv_luks_unlock_keyslot(struct cv_luks *l, int keyslot, const char *pass,
                           size_t passlen, unsigned char **key,
                           size_t *keylen);

/* 0 if key is the volume key (checked against the header's digest, which
 * needs no keyslot: a metadata-only handle will do), CV_EWRONGKEY if not. */
int cv_luks_verify_key(struct cv_luks *l, const unsigned char *key,
                       size_t keylen);

/* LUKS2 tokens.  token_find: the id of the first token of type, with its
 * JSON (malloc'ed) in *json, or -ENOENT.  token_put: stores json as token
 * id (CV_LUKS_NEW_TOKEN for a new one; an existing id is replaced in
 * place) and writes only the two header copies back, [0, 2 * metadata
 * size), never a keyslot area, so it works on a metadata-only handle:
 * the primary copy is written and flushed before the secondary, so a
 * crash leaves the old token or the new one.  Returns the id.  Both
 * -ENOTSUP on LUKS1; libcryptsetup refuses a token without a "type" or
 * naming a keyslot that does not exist. */
#define CV_LUKS_NEW_TOKEN (-1)
int cv_luks_token_find(struct cv_luks *l, const char *type, char **json);
int cv_luks_token_put(struct cv_luks *l, int token, const char *json);
/* The UUID; "" if none. */
const char *cv_luks_uuid(struct cv_luks *l);
/* The store's name (b->name), for messages. */
const char *cv_luks_name(const struct cv_luks *l);

/* The key derivation of keyslot (type points into the handle), and the
 * seconds the last keyslot made through l (format, add or change) took:
 * its key derivation, with libcryptsetup's benchmark of it, is nearly
 * all of that. */
int cv_luks_keyslot_pbkdf(struct cv_luks *l, int keyslot, struct cv_pbkdf *out);
double cv_luks_keyslot_seconds(const struct cv_luks *l);

/* Keyslot management; each writes the changed header back to the store.
 * Return the keyslot added or changed, or a negative errno.  A keyslots
 * area with no room left is -ENOSPC, saying how many it holds. */
int cv_luks_add_key(struct cv_luks *l, const char *pass, size_t passlen,
                    const char *newpass, size_t newlen,
                    const struct cv_pbkdf *pbkdf);
int cv_luks_change_key(struct cv_luks *l, const char *pass, size_t passlen,
                       const char *newpass, size_t newlen,
                       const struct cv_pbkdf *pbkdf);
/* Removes the keyslot pass opens; the last one only with force. */
int cv_luks_remove_key(struct cv_luks *l, const char *pass, size_t passlen,
                       int force);

#endif

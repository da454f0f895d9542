/* The cryptvol-kek LUKS2 token: how a volume opens without a user secret
 * when cluster encryption is on (as systemd-cryptenroll's tokens do for a
 * TPM).  The volume has a keyslot whose passphrase is CV_KEK_PASS_LEN
 * random bytes (high entropy, so PBKDF2 at minimum cost is enough); the
 * token holds those bytes sealed (lib/crypto/seal.h, AES-256-GCM) under one
 * generation of the cluster key-encryption key, with the volume's LUKS
 * UUID as associated data, so a token copied to another volume does not
 * open it.  Rotating the KEK rewrites the token only: no keyslot and no
 * data is re-encrypted.
 *
 * The token's JSON, in the LUKS2 header's tokens object:
 *   {"type": "cryptvol-kek", "keyslots": ["1"],
 *    "kek_generation": 3, "wrapped": "<base64 of the sealed blob>",
 *    "wrapped_key": "<base64>"}
 * "wrapped_key" is the volume key itself sealed under the same KEK (with
 * "UUID/volume-key" as associated data): an attach then skips the
 * keyslot's anti-forensic merge, which costs milliseconds, and checks the
 * key against the LUKS digest instead.  It gives nothing the keyslot
 * passphrase does not: whoever has the KEK has both.  cryptsetup and the
 * escrow use the keyslot.
 *
 * Functions return 0 or a negative errno with a message naming the store
 * (b->name): -ENOENT no token, CV_EWRONGKEY (negated) the KEK does not
 * unwrap it, -ENOTSUP a LUKS1 volume (no tokens). */
#ifndef CRYPTVOL_KEK_TOKEN_H
#define CRYPTVOL_KEK_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "luks.h"
#include "core/secret-file.h"

#define CV_KEK_LEN 32
#define CV_KEK_PASS_LEN 32
#define CV_KEK_TOKEN_TYPE "cryptvol-kek"

struct cv_kek_token {
    int token;                  /* LUKS2 token id */
    int keyslot;                /* the keyslot it opens */
    uint32_t gen;               /* KEK generation that wraps it */
    unsigned char *wrapped;     /* sealed passphrase (malloc'ed) */
    size_t wrapped_len;
    unsigned char *wrapped_key; /* sealed volume key, or NULL (malloc'ed) */
    size_t wrapped_key_len;
};

/* Adds a keyslot for a fresh random passphrase (unlocked by pass, an
 * existing passphrase of the volume) and a token wrapping it under kek
 * generation gen.  pbkdf NULL: PBKDF2 at its minimum cost.  Returns the
 * new keyslot.  -EEXIST if the volume has a cryptvol-kek token already;
 * needs a full handle (cv_luks_load), else -EINVAL.  Two header writes:
 * should the token's fail, the keyslot is removed again. */
int cv_kek_enroll(struct cv_luks *l, const char *pass, size_t passlen,
                  const unsigned char *kek, uint32_t gen,
                  const struct cv_pbkdf *pbkdf);

/* Adds a token for a keyslot that already opens with kpass (a volume just
 * formatted with a random passphrase).  Checks that kpass opens keyslot
 * (CV_EWRONGKEY if not, -ENOENT if it is not in use), so it needs a full
 * handle (cv_luks_load; -EINVAL on a metadata-only one); -EEXIST if the
 * volume has a cryptvol-kek token already. */
int cv_kek_token_add(struct cv_luks *l, int keyslot, const char *kpass,
                     size_t kpasslen, const unsigned char *kek, uint32_t gen);

/* Reads the volume's cryptvol-kek token (a metadata-only handle is
 * enough).  A token whose fields are not as above is -EINVAL. */
int cv_kek_token_get(struct cv_luks *l, struct cv_kek_token *t);
void cv_kek_token_free(struct cv_kek_token *t);

/* The keyslot passphrase the token wraps, in locked memory.  uuid is the
 * volume's LUKS UUID. */
int cv_kek_token_unwrap(const struct cv_kek_token *t, const unsigned char *kek,
                        const char *uuid, struct cv_secret *pass);

/* The volume key the token wraps, in locked memory (free with
 * cv_secmem_free(*key, *keylen)); -ENOENT if the token carries none.
 * The caller checks it against the header (cv_luks_verify_key). */
int cv_kek_token_unwrap_key(const struct cv_kek_token *t,
                            const unsigned char *kek, const char *uuid,
                            unsigned char **key, size_t *keylen);

/* Re-wraps t (as read from l) from oldkek to newkek generation newgen and
 * writes the header back; only the header's JSON areas change, the token
 * keeps its id, and the header write is the one commit point (see
 * cv_luks_token_put).  Works on a metadata-only handle, which is the
 * quick way (about 1 ms a volume on tmpfs).  Rewrapping a token that is
 * already at newgen is a no-op; a wrong oldkek is CV_EWRONGKEY and
 * changes nothing. */
int cv_kek_token_rewrap(struct cv_luks *l, const struct cv_kek_token *t,
                        const unsigned char *oldkek,
                        const unsigned char *newkek, uint32_t newgen);

#endif

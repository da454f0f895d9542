/* Sealing small secrets at rest: AES-256-GCM with a random 96-bit nonce and
 * the secret's name as associated data, so a sealed value cannot be moved
 * to another name in the store, nor changed, without unsealing failing.
 *
 * A sealed blob is: version (1 byte, 1) | nonce (12) | ciphertext | tag (16).
 * The version byte is authenticated too, so a later format (another key
 * generation, another cipher) can be told apart and cannot be downgraded. */
#ifndef CRYPTVOL_SEAL_H
#define CRYPTVOL_SEAL_H

#include <stddef.h>

#include "core/secret-file.h"

#define CV_SEAL_KEY_LEN 32
#define CV_SEAL_VERSION 1
#define CV_SEAL_OVERHEAD (1 + 12 + 16)

/* Seals len bytes of value under key, bound to name.  *blob is malloc'ed
 * (it holds no clear text) and *bloblen is len + CV_SEAL_OVERHEAD. */
int cv_seal(const unsigned char *key, const char *name, const void *value,
            size_t len, unsigned char **blob, size_t *bloblen);

/* Unseals blob into out (locked memory).  A wrong key, a wrong name or a
 * changed blob is CV_EWRONGKEY; an unknown version is -ENOTSUP. */
int cv_unseal(const unsigned char *key, const char *name,
              const unsigned char *blob, size_t bloblen, struct cv_secret *out);

#endif

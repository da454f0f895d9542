/* Sealing the cluster KEK to this node's TPM 2.0, through tpm2-tss (ESAPI).
 *
 * The KEK becomes the sensitive part of a keyed-hash sealed-data object
 * under a primary storage key that the TPM derives again from its owner
 * seed on every use, so nothing but the sealed object's public and private
 * parts is stored; those are useless without this TPM.  Sessions are
 * salted and encrypt the KEK on its way to and from the TPM.
 *
 * tcti is a TCTI configuration as tpm2-tools takes it
 * ("device:/dev/tpmrm0", "swtpm:host=127.0.0.1,port=2321"), or NULL for
 * tpm2-tss's default.  Errors say what failed and how to reach the TPM. */
#ifndef CRYPTVOLD_TPM_H
#define CRYPTVOLD_TPM_H

#include <stddef.h>

#include "core/secret-file.h"

/* *blob (malloc'ed, no clear text) is what cvd_tpm_unseal takes back. */
int cvd_tpm_seal(const char *tcti, const void *data, size_t len,
                 unsigned char **blob, size_t *bloblen);
/* -EIO (with the TPM's response code in the message) when this TPM did not
 * seal blob, -ENODEV when no TPM answers. */
int cvd_tpm_unseal(const char *tcti, const unsigned char *blob,
                   size_t bloblen, struct cv_secret *out);

#endif

#include "seal.h"
#include "core/error.h"
#include "core/secmem.h"

#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#define NONCE_LEN 12
#define TAG_LEN 16

/* The associated data is the version byte and the name: both are checked,
 * neither is secret.  EVP_CipherUpdate serves both directions. */
static int add_aad(EVP_CIPHER_CTX *ctx, const char *name)
{
    unsigned char version = CV_SEAL_VERSION;
    int n;

    if (EVP_CipherUpdate(ctx, NULL, &n, &version, 1) != 1 ||
        EVP_CipherUpdate(ctx, NULL, &n, (const unsigned char *)name,
                         (int)strlen(name)) != 1)
        return -1;
    return 0;
}

int cv_seal(const unsigned char *key, const char *name, const void *value,
            size_t len, unsigned char **blob, size_t *bloblen)
{
    EVP_CIPHER_CTX *ctx = NULL;
    unsigned char *b = NULL, *nonce, *ct;
    int n, r = -EIO;

    *blob = NULL;
    if (len > INT_MAX - CV_SEAL_OVERHEAD)
        return cv_error(-EFBIG, "secret %s: too large to seal", name);
    b = malloc(len + CV_SEAL_OVERHEAD);
    ctx = EVP_CIPHER_CTX_new();
    if (!b || !ctx) {
        r = cv_error(-ENOMEM, "secret %s: sealing: out of memory", name);
        goto out;
    }
    b[0] = CV_SEAL_VERSION;
    nonce = b + 1;
    ct = nonce + NONCE_LEN;
    if (RAND_bytes(nonce, NONCE_LEN) != 1 ||
        EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
        add_aad(ctx, name) < 0 ||
        EVP_EncryptUpdate(ctx, ct, &n, value, (int)len) != 1 ||
        EVP_EncryptFinal_ex(ctx, ct + n, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, ct + len) != 1) {
        r = cv_error(-EIO, "secret %s: sealing with AES-256-GCM failed", name);
        goto out;
    }
    *blob = b;
    *bloblen = len + CV_SEAL_OVERHEAD;
    b = NULL;
    r = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    free(b);
    return r;
}

int cv_unseal(const unsigned char *key, const char *name,
              const unsigned char *blob, size_t bloblen, struct cv_secret *out)
{
    EVP_CIPHER_CTX *ctx = NULL;
    const unsigned char *nonce, *ct;
    unsigned char tag[TAG_LEN];
    size_t len;
    int n, r;

    memset(out, 0, sizeof *out);
    if (bloblen < CV_SEAL_OVERHEAD || bloblen > INT_MAX)
        return cv_error(-EINVAL, "secret %s: sealed value of %zu bytes is "
                        "damaged", name, bloblen);
    if (blob[0] != CV_SEAL_VERSION)
        return cv_error(-ENOTSUP, "secret %s: sealed with format %u, which "
                        "this version does not know", name, blob[0]);
    nonce = blob + 1;
    ct = nonce + NONCE_LEN;
    len = bloblen - CV_SEAL_OVERHEAD;
    memcpy(tag, ct + len, TAG_LEN);
    out->alloc = len ? len : 1;
    out->data = cv_secmem_alloc(out->alloc);
    ctx = EVP_CIPHER_CTX_new();
    if (!out->data || !ctx) {
        r = cv_error_prefix(-ENOMEM, "secret %s: unsealing", name);
        goto out;
    }
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
        add_aad(ctx, name) < 0 ||
        EVP_DecryptUpdate(ctx, (unsigned char *)out->data, &n, ct,
                          (int)len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1) {
        r = cv_error(-EIO, "secret %s: unsealing with AES-256-GCM failed", name);
        goto out;
    }
    if (EVP_DecryptFinal_ex(ctx, (unsigned char *)out->data + n, &n) != 1) {
        r = cv_error(-CV_EWRONGKEY, "secret %s: cannot unseal: wrong node key "
                     "or the stored value was changed", name);
        goto out;
    }
    out->len = len;
    r = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    if (r < 0)
        cv_secret_free(out);
    return r;
}

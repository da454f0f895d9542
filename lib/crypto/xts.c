#include "xts.h"
#include "core/error.h"
#include "core/secmem.h"
#include "core/workers.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Below this a request is not worth handing to other threads. */
#define PARALLEL_MIN (128 * 1024)

struct ctx_pair {
    EVP_CIPHER_CTX *enc, *dec;
    struct ctx_pair *next;
};

struct cv_xts {
    EVP_CIPHER *cipher;
    unsigned char *key;             /* locked memory */
    size_t keylen;
    unsigned sector_size;
    struct cv_workers *workers;
    pthread_mutex_t lock;
    struct ctx_pair *free_ctx;      /* keyed contexts not in use */
};

static void ctx_pair_free(struct ctx_pair *c)
{
    if (!c)
        return;
    EVP_CIPHER_CTX_free(c->enc);
    EVP_CIPHER_CTX_free(c->dec);
    free(c);
}

static int openssl_error(const char *what)
{
    char buf[256];

    ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
    return cv_error(-EIO, "AES-XTS: %s: %s", what, buf);
}

/* Keys a new pair of contexts: the key schedule is computed once here and
 * each sector afterwards only sets its tweak. */
static int ctx_pair_new(struct cv_xts *x, struct ctx_pair **out)
{
    struct ctx_pair *c = calloc(1, sizeof *c);
    int r = 0;

    if (!c)
        return cv_error(-ENOMEM, "AES-XTS: out of memory");
    c->enc = EVP_CIPHER_CTX_new();
    c->dec = EVP_CIPHER_CTX_new();
    if (!c->enc || !c->dec) {
        r = cv_error(-ENOMEM, "AES-XTS: out of memory");
        goto out;
    }
    if (!EVP_EncryptInit_ex2(c->enc, x->cipher, x->key, NULL, NULL) ||
        !EVP_DecryptInit_ex2(c->dec, x->cipher, x->key, NULL, NULL))
        r = openssl_error("setting the key");
out:
    if (r < 0)
        ctx_pair_free(c);
    else
        *out = c;
    return r;
}

static int ctx_get(struct cv_xts *x, struct ctx_pair **out)
{
    pthread_mutex_lock(&x->lock);
    *out = x->free_ctx;
    if (*out)
        x->free_ctx = (*out)->next;
    pthread_mutex_unlock(&x->lock);
    return *out ? 0 : ctx_pair_new(x, out);
}

static void ctx_put(struct cv_xts *x, struct ctx_pair *c)
{
    pthread_mutex_lock(&x->lock);
    c->next = x->free_ctx;
    x->free_ctx = c;
    pthread_mutex_unlock(&x->lock);
}

int cv_xts_new(const void *key, size_t keylen, unsigned sector_size,
               struct cv_workers *workers, struct cv_xts **out)
{
    const char *name = keylen == 64 ? "AES-256-XTS" :
                       keylen == 32 ? "AES-128-XTS" : NULL;
    struct cv_xts *x;

    if (!name)
        return cv_error(-EINVAL, "AES-XTS: key of %zu bytes (need 32 or 64)",
                        keylen);
    if (sector_size < 512 || sector_size > 4096 ||
        (sector_size & (sector_size - 1)))
        return cv_error(-EINVAL, "AES-XTS: sector size %u", sector_size);
    x = calloc(1, sizeof *x);
    if (!x)
        return cv_error(-ENOMEM, "AES-XTS: out of memory");
    x->cipher = EVP_CIPHER_fetch(NULL, name, NULL);
    x->key = cv_secmem_alloc(keylen);
    if (!x->cipher || !x->key) {
        int r = x->cipher ? -ENOMEM : openssl_error(name);
        cv_xts_free(x);
        return r;
    }
    memcpy(x->key, key, keylen);
    x->keylen = keylen;
    x->sector_size = sector_size;
    x->workers = workers;
    pthread_mutex_init(&x->lock, NULL);
    *out = x;
    return 0;
}

void cv_xts_free(struct cv_xts *x)
{
    struct ctx_pair *c;

    if (!x)
        return;
    while ((c = x->free_ctx)) {
        x->free_ctx = c->next;
        ctx_pair_free(c);
    }
    pthread_mutex_destroy(&x->lock);
    cv_secmem_free(x->key, x->keylen);
    EVP_CIPHER_free(x->cipher);
    free(x);
}

/* One context, a run of consecutive sectors. */
static int crypt_run(struct cv_xts *x, int enc, unsigned char *out,
                     const unsigned char *in, size_t len, uint64_t iv512)
{
    unsigned step = x->sector_size / 512;
    unsigned char iv[16] = { 0 };
    struct ctx_pair *c;
    EVP_CIPHER_CTX *ctx;
    size_t off;
    int outl, r;

    r = ctx_get(x, &c);
    if (r < 0)
        return r;
    ctx = enc ? c->enc : c->dec;
    for (off = 0; off < len; off += x->sector_size, iv512 += step) {
        uint64_t v = iv512;
        unsigned i;

        for (i = 0; i < 8; i++, v >>= 8)
            iv[i] = (unsigned char)v;
        if (!EVP_CipherInit_ex2(ctx, NULL, NULL, iv, enc, NULL) ||
            !EVP_CipherUpdate(ctx, out + off, &outl, in + off,
                              (int)x->sector_size)) {
            r = openssl_error(enc ? "encrypt" : "decrypt");
            break;
        }
    }
    ctx_put(x, c);
    return r;
}

struct split {
    struct cv_xts *x;
    int enc;
    unsigned char *out;
    const unsigned char *in;
    size_t part_len, len;
    uint64_t iv512;
    int result;
    char message[256];
};

static void split_part(void *arg, unsigned part)
{
    struct split *s = arg;
    size_t off = (size_t)part * s->part_len;
    size_t len = s->len - off < s->part_len ? s->len - off : s->part_len;
    int r, none = 0;

    r = crypt_run(s->x, s->enc, s->out + off, s->in + off, len,
                  s->iv512 + off / 512);

    if (r < 0 && __atomic_compare_exchange_n(&s->result, &none, r, 0,
                                             __ATOMIC_ACQ_REL,
                                             __ATOMIC_ACQUIRE))
        snprintf(s->message, sizeof s->message, "%s", cv_last_error());
}

static int xts_crypt(struct cv_xts *x, int enc, void *out, const void *in,
                     size_t len, uint64_t iv512)
{
    unsigned nthreads = cv_workers_count(x->workers) + 1;
    struct split s = { .x = x, .enc = enc, .out = out, .in = in, .len = len,
                       .iv512 = iv512 };
    unsigned nparts;

    if (len % x->sector_size)
        return cv_error(-EINVAL, "AES-XTS: %zu bytes is not a whole number "
                        "of %u-byte sectors", len, x->sector_size);
    if (len < PARALLEL_MIN || nthreads == 1)
        return crypt_run(x, enc, out, in, len, iv512);
    /* Equal parts, each a whole number of sectors. */
    s.part_len = (len / nthreads + x->sector_size - 1) / x->sector_size *
                 x->sector_size;
    nparts = (unsigned)((len + s.part_len - 1) / s.part_len);
    cv_workers_run(x->workers, nparts, split_part, &s);
    if (s.result < 0)
        return cv_error(s.result, "%s", s.message);
    return 0;
}

int cv_xts_encrypt(struct cv_xts *x, void *out, const void *in, size_t len,
                   uint64_t first_sector512)
{
    return xts_crypt(x, 1, out, in, len, first_sector512);
}

int cv_xts_decrypt(struct cv_xts *x, void *out, const void *in, size_t len,
                   uint64_t first_sector512)
{
    return xts_crypt(x, 0, out, in, len, first_sector512);
}

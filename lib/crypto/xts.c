/* AES-XTS through libgcrypt.  A sector costs one gcry_cipher_setiv (a
 * 16-byte copy) and one gcry_cipher_encrypt on a handle keyed once, where
 * OpenSSL 3 needs an EVP_CipherInit_ex2 per sector that costs more than
 * the cipher itself (bench/README.md).  Handles are opened with
 * GCRY_CIPHER_SECURE, so the key schedules live in libgcrypt's secure
 * memory, which gcrypt-init.c locks and excludes from core dumps. */
#include "xts.h"
#include "core/error.h"
#include "core/secmem.h"
#include "core/workers.h"

#include <errno.h>
#include <gcrypt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Below this a request is not worth handing to other threads. */
#define PARALLEL_MIN (128 * 1024)
/* Parts of a parallel request: at least this big, and about four per
 * thread, so that a thread that starts late (a worker waking up) takes the
 * parts still left instead of the caller waiting for one half. */
#define PART_MIN (64 * 1024)
#define PARTS_PER_THREAD 4

struct handle {
    gcry_cipher_hd_t hd;
    struct handle *next;
};

struct cv_xts {
    int algo;
    unsigned char *key;             /* locked memory: keys new handles */
    size_t keylen;
    unsigned sector_size;
    struct cv_workers *workers;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    struct handle *free_list;       /* keyed handles not in use */
    unsigned nhandles, max_handles;
    /* libgcrypt counts the tweak on by itself (probe_auto_iv): with
     * 512-byte sectors, one setiv per run instead of one per sector. */
    int auto_iv;
};

static int gcry_fail(gcry_error_t err, const char *what)
{
    int e = gcry_err_code_to_errno(gcry_err_code(err));

    return cv_error(e > 0 ? -e : -EIO, "AES-XTS: %s: %s", what,
                    gcry_strerror(err));
}

static void handle_free(struct handle *h)
{
    if (!h)
        return;
    gcry_cipher_close(h->hd);       /* secure memory is wiped on release */
    free(h);
}

/* Opens and keys a handle: the key schedule is computed once here and
 * each sector afterwards only sets its tweak. */
static int handle_new(struct cv_xts *x, struct handle **out)
{
    struct handle *h = calloc(1, sizeof *h);
    gcry_error_t err;
    int r = 0;

    if (!h)
        return cv_error(-ENOMEM, "AES-XTS: out of memory");
    err = gcry_cipher_open(&h->hd, x->algo, GCRY_CIPHER_MODE_XTS,
                           GCRY_CIPHER_SECURE);
    if (err) {
        h->hd = NULL;
        r = gcry_err_code(err) == GPG_ERR_ENOMEM ?
            cv_error(-ENOMEM, "AES-XTS: libgcrypt's secure memory (%zu KiB) "
                     "is full: too many volumes open at once",
                     cv_xts_secmem_size() / 1024) :
            gcry_fail(err, "opening a cipher handle");
        goto out;
    }
    err = gcry_cipher_setkey(h->hd, x->key, x->keylen);
    if (err)
        r = gcry_fail(err, "setting the key");
out:
    if (r < 0)
        handle_free(h);
    else
        *out = h;
    return r;
}

/* A free handle, a new one while there are fewer than max_handles, or else
 * the next one another thread returns: the cipher is CPU-bound, so more
 * handles than threads that can run gain nothing and cost secure memory. */
static int handle_get(struct cv_xts *x, struct handle **out)
{
    int r;

    pthread_mutex_lock(&x->lock);
    for (;;) {
        if ((*out = x->free_list)) {
            x->free_list = (*out)->next;
            pthread_mutex_unlock(&x->lock);
            return 0;
        }
        if (x->nhandles < x->max_handles)
            break;
        pthread_cond_wait(&x->freed, &x->lock);
    }
    x->nhandles++;
    pthread_mutex_unlock(&x->lock);
    r = handle_new(x, out);
    if (r < 0) {
        pthread_mutex_lock(&x->lock);
        x->nhandles--;
        /* Secure memory is shared by every volume: when it is full, wait
         * for a handle of this volume rather than fail the request. */
        if (r == -ENOMEM && x->nhandles > 0) {
            x->max_handles = x->nhandles;
            pthread_mutex_unlock(&x->lock);
            return handle_get(x, out);
        }
        pthread_mutex_unlock(&x->lock);
    }
    return r;
}

static void handle_put(struct cv_xts *x, struct handle *h)
{
    pthread_mutex_lock(&x->lock);
    h->next = x->free_list;
    x->free_list = h;
    pthread_cond_signal(&x->freed);
    pthread_mutex_unlock(&x->lock);
}

static void iv_bytes(unsigned char iv[16], uint64_t v)
{
    unsigned i;

    memset(iv, 0, 16);
    for (i = 0; i < 8; i++, v >>= 8)
        iv[i] = (unsigned char)v;
}

/* libgcrypt's XTS adds one to its 128-bit data-unit number after each
 * encrypt or decrypt call (cipher-xts.c: "Auto-increment data-unit
 * sequence number"), which for 512-byte sectors is plain64's next IV.
 * That is not in its manual, so each new cipher checks it, on its own
 * handle: sectors 0x1ff and 0x200 (a carry into the second byte) with a
 * setiv each, and with one setiv; the same bytes or no shortcut. */
static int probe_auto_iv(struct handle *h)
{
    unsigned char a[1024] = { 0 }, b[1024] = { 0 }, iv[16];

    iv_bytes(iv, 0x1ff);
    if (gcry_cipher_setiv(h->hd, iv, sizeof iv) ||
        gcry_cipher_encrypt(h->hd, a, 512, NULL, 0))
        return 0;
    iv_bytes(iv, 0x200);
    if (gcry_cipher_setiv(h->hd, iv, sizeof iv) ||
        gcry_cipher_encrypt(h->hd, a + 512, 512, NULL, 0))
        return 0;
    iv_bytes(iv, 0x1ff);
    if (gcry_cipher_setiv(h->hd, iv, sizeof iv) ||
        gcry_cipher_encrypt(h->hd, b, 512, NULL, 0) ||
        gcry_cipher_encrypt(h->hd, b + 512, 512, NULL, 0))
        return 0;
    /* Ciphertext of zeros: nothing an image does not show anyway. */
    return memcmp(a, b, sizeof a) == 0;
}

static unsigned handles_per_volume(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n > 1 ? 2 * (unsigned)n : 2;
}

static int check_params(size_t keylen, unsigned sector_size)
{
    if (keylen != 64 && keylen != 32)
        return cv_error(-EINVAL, "AES-XTS: key of %zu bytes (need 32 or 64)",
                        keylen);
    if (sector_size < 512 || sector_size > 4096 ||
        (sector_size & (sector_size - 1)))
        return cv_error(-EINVAL, "AES-XTS: sector size %u", sector_size);
    return 0;
}

int cv_xts_new(const void *key, size_t keylen, unsigned sector_size,
               struct cv_workers *workers, struct cv_xts **out)
{
    struct cv_xts *x;
    struct handle *h = NULL;
    int r;

    r = check_params(keylen, sector_size);
    if (r == 0)
        r = cv_xts_init();
    if (r < 0)
        return r;
    x = calloc(1, sizeof *x);
    if (!x)
        return cv_error(-ENOMEM, "AES-XTS: out of memory");
    /* The lock and condition exist before anything can fail, so the one
     * cleanup path (cv_xts_free) may always destroy them. */
    if (pthread_mutex_init(&x->lock, NULL) != 0) {
        free(x);
        return cv_error(-ENOMEM, "AES-XTS: cannot create a mutex");
    }
    if (pthread_cond_init(&x->freed, NULL) != 0) {
        pthread_mutex_destroy(&x->lock);
        free(x);
        return cv_error(-ENOMEM, "AES-XTS: cannot create a condition");
    }
    x->algo = keylen == 64 ? GCRY_CIPHER_AES256 : GCRY_CIPHER_AES128;
    x->keylen = keylen;
    x->sector_size = sector_size;
    x->workers = workers;
    x->max_handles = handles_per_volume();
    x->key = cv_secmem_alloc(keylen);
    r = x->key ? 0 : -ENOMEM;
    if (r == 0) {
        memcpy(x->key, key, keylen);
        /* One handle now: a key gcrypt refuses, or secure memory that is
         * full, fails the open rather than the first I/O. */
        r = handle_get(x, &h);
    }
    if (r < 0) {
        cv_xts_free(x);
        return r;
    }
    x->auto_iv = sector_size == 512 && probe_auto_iv(h);
    handle_put(x, h);
    *out = x;
    return 0;
}

void cv_xts_free(struct cv_xts *x)
{
    struct handle *h;

    if (!x)
        return;
    while ((h = x->free_list)) {
        x->free_list = h->next;
        handle_free(h);
    }
    pthread_cond_destroy(&x->freed);
    pthread_mutex_destroy(&x->lock);
    cv_secmem_free(x->key, x->keylen);
    free(x);
}

/* One handle, a run of consecutive sectors.  With auto_iv, libgcrypt's
 * own count gives each 512-byte sector its IV after the first; a setiv
 * again where plain64's 64 bits wrap (libgcrypt carries into 128). */
static int crypt_run(struct cv_xts *x, int enc, unsigned char *out,
                     const unsigned char *in, size_t len, uint64_t iv512)
{
    unsigned step = x->sector_size / 512;
    unsigned char iv[16];
    struct handle *h;
    gcry_error_t err = 0;
    size_t off, ss = x->sector_size;
    int r, set = 1;

    r = handle_get(x, &h);
    if (r < 0)
        return r;
    for (off = 0; off < len && !err; off += ss, iv512 += step) {
        if (set) {
            iv_bytes(iv, iv512);
            err = gcry_cipher_setiv(h->hd, iv, sizeof iv);
        }
        /* In place when in == out: gcrypt takes a NULL input for that. */
        if (!err && enc)
            err = gcry_cipher_encrypt(h->hd, out + off, ss,
                                      in == out ? NULL : in + off,
                                      in == out ? 0 : ss);
        else if (!err)
            err = gcry_cipher_decrypt(h->hd, out + off, ss,
                                      in == out ? NULL : in + off,
                                      in == out ? 0 : ss);
        set = !x->auto_iv || iv512 + step == 0;
    }
    handle_put(x, h);
    return err ? gcry_fail(err, enc ? "encrypt" : "decrypt") : 0;
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
    if (len == 0)
        return 0;
    if (len < PARALLEL_MIN || nthreads == 1)
        return crypt_run(x, enc, out, in, len, iv512);
    /* Equal parts, each a whole number of sectors. */
    s.part_len = len / (nthreads * PARTS_PER_THREAD);
    if (s.part_len < PART_MIN)
        s.part_len = PART_MIN;
    s.part_len = (s.part_len + x->sector_size - 1) / x->sector_size *
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

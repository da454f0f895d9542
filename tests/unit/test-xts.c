/* cv_xts: AES-XTS with plain64 IVs counted in 512-byte units, checked
 * against OpenSSL's EVP interface called directly, one sector at a time. */
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/workers.h"
#include "crypto/xts.h"

#define MiB (1024u * 1024)

/* Deterministic bytes: the tests are reproducible. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static void fill_random(void *buf, size_t len)
{
    unsigned char *p = buf;
    size_t i;

    for (i = 0; i < len; i++)
        p[i] = (unsigned char)(rng_next() >> 24);
}

/* A random XTS key whose two halves differ (OpenSSL rejects equal ones). */
static void make_key(unsigned char *key, size_t keylen)
{
    do
        fill_random(key, keylen);
    while (memcmp(key, key + keylen / 2, keylen / 2) == 0);
}

/* The reference: one sector through EVP with an explicit IV. */
static void evp_sector(int enc, const unsigned char *key, size_t keylen,
                       unsigned char *out, const unsigned char *in,
                       unsigned sector_size, uint64_t iv512)
{
    const EVP_CIPHER *cipher = keylen == 64 ? EVP_aes_256_xts() :
                                              EVP_aes_128_xts();
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    unsigned char iv[16] = { 0 };
    int outl = 0, i;

    assert_non_null(ctx);
    for (i = 0; i < 8; i++)
        iv[i] = (unsigned char)(iv512 >> (8 * i));
    assert_int_equal(EVP_CipherInit_ex(ctx, cipher, NULL, key, iv, enc), 1);
    assert_int_equal(EVP_CipherUpdate(ctx, out, &outl, in, (int)sector_size),
                     1);
    assert_int_equal(outl, (int)sector_size);
    EVP_CIPHER_CTX_free(ctx);
}

static void round_trip(size_t keylen, unsigned sector_size)
{
    const size_t len = 16 * (size_t)sector_size;
    unsigned char key[64], *plain = malloc(len), *cipher = malloc(len),
                  *back = malloc(len);
    struct cv_xts *x = NULL;
    uint64_t bases[] = { 0, 1, 8, 4095, 0x1234567890ull };
    size_t b;

    assert_non_null(plain);
    assert_non_null(cipher);
    assert_non_null(back);
    make_key(key, keylen);
    fill_random(plain, len);
    assert_int_equal(cv_xts_new(key, keylen, sector_size, NULL, &x), 0);
    for (b = 0; b < sizeof bases / sizeof bases[0]; b++) {
        assert_int_equal(cv_xts_encrypt(x, cipher, plain, len, bases[b]), 0);
        assert_memory_not_equal(cipher, plain, sector_size);
        assert_int_equal(cv_xts_decrypt(x, back, cipher, len, bases[b]), 0);
        assert_memory_equal(back, plain, len);
        /* In place gives the same bytes. */
        memcpy(back, plain, len);
        assert_int_equal(cv_xts_encrypt(x, back, back, len, bases[b]), 0);
        assert_memory_equal(back, cipher, len);
        assert_int_equal(cv_xts_decrypt(x, back, back, len, bases[b]), 0);
        assert_memory_equal(back, plain, len);
        /* Decrypting under another IV does not give the plaintext. */
        assert_int_equal(cv_xts_decrypt(x, back, cipher, len, bases[b] + 1),
                         0);
        assert_memory_not_equal(back, plain, sector_size);
    }
    cv_xts_free(x);
    free(plain);
    free(cipher);
    free(back);
}

static void test_round_trip_aes128_512(void **state)
{
    (void)state;
    round_trip(32, 512);
}

static void test_round_trip_aes128_4096(void **state)
{
    (void)state;
    round_trip(32, 4096);
}

static void test_round_trip_aes256_512(void **state)
{
    (void)state;
    round_trip(64, 512);
}

static void test_round_trip_aes256_4096(void **state)
{
    (void)state;
    round_trip(64, 4096);
}

static void test_round_trip_other_sector_sizes(void **state)
{
    (void)state;
    round_trip(64, 1024);
    round_trip(64, 2048);
}

/* Sector k of a buffer starting at 512-unit IV base B has IV
 * B + k * (sector_size / 512), little-endian, in both directions. */
static void iv_rule(size_t keylen, unsigned sector_size, uint64_t base)
{
    const unsigned nsectors = 12, step = sector_size / 512;
    const size_t len = nsectors * (size_t)sector_size;
    unsigned char key[64], *plain = malloc(len), *cipher = malloc(len),
                  *ref = malloc(sector_size), *back = malloc(len);
    struct cv_xts *x = NULL;
    unsigned k;

    assert_non_null(plain);
    assert_non_null(cipher);
    assert_non_null(ref);
    assert_non_null(back);
    make_key(key, keylen);
    fill_random(plain, len);
    assert_int_equal(cv_xts_new(key, keylen, sector_size, NULL, &x), 0);
    assert_int_equal(cv_xts_encrypt(x, cipher, plain, len, base), 0);
    for (k = 0; k < nsectors; k++) {
        evp_sector(1, key, keylen, ref, plain + (size_t)k * sector_size,
                   sector_size, base + (uint64_t)step * k);
        if (memcmp(ref, cipher + (size_t)k * sector_size, sector_size) != 0)
            fail_msg("key %zu bytes, sector size %u, base %llu: sector %u "
                     "differs from EVP with IV %llu", keylen, sector_size,
                     (unsigned long long)base, k,
                     (unsigned long long)(base + (uint64_t)step * k));
        /* And the reference decrypts what cv_xts encrypted. */
        evp_sector(0, key, keylen, ref, cipher + (size_t)k * sector_size,
                   sector_size, base + (uint64_t)step * k);
        assert_memory_equal(ref, plain + (size_t)k * sector_size, sector_size);
    }
    /* cv_xts decrypts what EVP encrypted. */
    for (k = 0; k < nsectors; k++)
        evp_sector(1, key, keylen, cipher + (size_t)k * sector_size,
                   plain + (size_t)k * sector_size, sector_size,
                   base + (uint64_t)step * k);
    assert_int_equal(cv_xts_decrypt(x, back, cipher, len, base), 0);
    assert_memory_equal(back, plain, len);
    cv_xts_free(x);
    free(plain);
    free(cipher);
    free(ref);
    free(back);
}

static void test_iv_rule_4096_aes256(void **state)
{
    (void)state;
    iv_rule(64, 4096, 0);
    iv_rule(64, 4096, 8);
    iv_rule(64, 4096, 2048);        /* 1 MiB into the segment */
    iv_rule(64, 4096, 0xfffffff8ull);       /* crosses 2^32 */
    iv_rule(64, 4096, 0x0123456789abcdf0ull);       /* every byte used */
}

static void test_iv_rule_4096_aes128(void **state)
{
    (void)state;
    iv_rule(32, 4096, 0);
    iv_rule(32, 4096, 0x100000000ull);
}

static void test_iv_rule_512(void **state)
{
    (void)state;
    iv_rule(64, 512, 0);
    iv_rule(64, 512, 7);
    iv_rule(64, 512, 0xfffffffcull);
    iv_rule(32, 512, 0x0123456789abcdefull);
    /* plain64 wraps at 2^64 (libgcrypt's own count, which cv_xts uses
     * for 512-byte sectors, would carry into a 65th bit). */
    iv_rule(64, 512, 0xfffffffffffffffaull);
}

static void test_iv_rule_wraps_4096(void **state)
{
    (void)state;
    iv_rule(64, 4096, 0xffffffffffffffe0ull);
}

/* The first sector of a 4096-byte-sector buffer with base 8 is what the
 * second sector of a buffer with base 0 was: IVs are in 512-byte units,
 * not counted in encryption sectors. */
static void test_iv_is_not_large_sectors(void **state)
{
    const size_t len = 2 * 4096;
    unsigned char key[64], plain[2 * 4096], a[2 * 4096], b[4096], c[4096];
    struct cv_xts *x = NULL;

    (void)state;
    make_key(key, sizeof key);
    fill_random(plain, len);
    assert_int_equal(cv_xts_new(key, sizeof key, 4096, NULL, &x), 0);
    assert_int_equal(cv_xts_encrypt(x, a, plain, len, 0), 0);
    assert_int_equal(cv_xts_encrypt(x, b, plain + 4096, 4096, 8), 0);
    assert_memory_equal(a + 4096, b, 4096);
    /* IV 1 (iv_large_sectors numbering) would be something else. */
    assert_int_equal(cv_xts_encrypt(x, c, plain + 4096, 4096, 1), 0);
    assert_memory_not_equal(c, b, 4096);
    cv_xts_free(x);
}

/* 4 MiB through a pool of two threads plus the caller: the same bytes as
 * the single-threaded path, both ways. */
static void parallel_matches(size_t keylen, unsigned sector_size,
                             size_t len, uint64_t base)
{
    unsigned char key[64], *plain = malloc(len), *one = malloc(len),
                  *many = malloc(len);
    struct cv_workers *w = NULL;
    struct cv_xts *xs = NULL, *xp = NULL;
    size_t off;

    assert_non_null(plain);
    assert_non_null(one);
    assert_non_null(many);
    make_key(key, keylen);
    fill_random(plain, len);
    assert_int_equal(cv_workers_new(2, &w), 0);
    assert_int_equal(cv_workers_count(w), 2);
    assert_int_equal(cv_xts_new(key, keylen, sector_size, NULL, &xs), 0);
    assert_int_equal(cv_xts_new(key, keylen, sector_size, w, &xp), 0);

    assert_int_equal(cv_xts_encrypt(xs, one, plain, len, base), 0);
    assert_int_equal(cv_xts_encrypt(xp, many, plain, len, base), 0);
    for (off = 0; off < len; off += sector_size)
        if (memcmp(one + off, many + off, sector_size) != 0)
            fail_msg("%zu bytes, sector size %u: parallel output differs at "
                     "sector %zu", len, sector_size, off / sector_size);
    /* Spot-check the single-threaded output against EVP too. */
    {
        unsigned char *ref = malloc(sector_size);
        size_t last = len - sector_size;
        assert_non_null(ref);
        evp_sector(1, key, keylen, ref, plain + last, sector_size,
                   base + last / 512);
        assert_memory_equal(ref, one + last, sector_size);
        free(ref);
    }

    assert_int_equal(cv_xts_decrypt(xp, many, one, len, base), 0);
    assert_memory_equal(many, plain, len);
    /* In place, parallel. */
    memcpy(many, plain, len);
    assert_int_equal(cv_xts_encrypt(xp, many, many, len, base), 0);
    assert_memory_equal(many, one, len);

    cv_xts_free(xs);
    cv_xts_free(xp);
    cv_workers_free(w);
    free(plain);
    free(one);
    free(many);
}

static void test_parallel_4mib(void **state)
{
    (void)state;
    parallel_matches(64, 4096, 4 * MiB, 0);
    parallel_matches(64, 4096, 4 * MiB, 0x123456780ull);
    parallel_matches(32, 512, 4 * MiB, 3);
}

static void test_parallel_uneven_split(void **state)
{
    (void)state;
    /* 1000 sectors do not split evenly in three. */
    parallel_matches(64, 4096, 1000 * 4096, 16);
    /* Just over the parallel threshold, in 512-byte sectors. */
    parallel_matches(64, 512, 128 * 1024 + 512, 0);
}

/* Several callers share one pool and one cv_xts at once. */
struct shared_job {
    struct cv_xts *x;
    const unsigned char *plain, *want;
    size_t len;
    int ok;
};

static void *shared_main(void *arg)
{
    struct shared_job *j = arg;
    unsigned char *out = malloc(j->len);
    int i;

    j->ok = out != NULL;
    for (i = 0; j->ok && i < 4; i++)
        j->ok = cv_xts_encrypt(j->x, out, j->plain, j->len, 0) == 0 &&
                memcmp(out, j->want, j->len) == 0;
    free(out);
    return NULL;
}

static void test_parallel_concurrent_callers(void **state)
{
    const size_t len = 1 * MiB;
    unsigned char key[64], *plain = malloc(len), *want = malloc(len);
    struct cv_workers *w = NULL;
    struct cv_xts *xp = NULL, *xs = NULL;
    struct shared_job jobs[4];
    pthread_t t[4];
    int i;

    (void)state;
    assert_non_null(plain);
    assert_non_null(want);
    make_key(key, sizeof key);
    fill_random(plain, len);
    assert_int_equal(cv_workers_new(2, &w), 0);
    assert_int_equal(cv_xts_new(key, sizeof key, 4096, NULL, &xs), 0);
    assert_int_equal(cv_xts_new(key, sizeof key, 4096, w, &xp), 0);
    assert_int_equal(cv_xts_encrypt(xs, want, plain, len, 0), 0);
    for (i = 0; i < 4; i++) {
        jobs[i] = (struct shared_job){ .x = xp, .plain = plain, .want = want,
                                       .len = len };
        assert_int_equal(pthread_create(&t[i], NULL, shared_main, &jobs[i]),
                         0);
    }
    for (i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (i = 0; i < 4; i++)
        if (!jobs[i].ok)
            fail_msg("concurrent caller %d got different bytes", i);
    cv_xts_free(xp);
    cv_xts_free(xs);
    cv_workers_free(w);
    free(plain);
    free(want);
}

static void test_partial_sector_refused(void **state)
{
    unsigned char key[64], buf[3 * 4096], copy[3 * 4096];
    static const size_t bad4096[] = { 1, 511, 512, 4095, 4097, 8191 };
    static const size_t bad512[] = { 1, 511, 513, 1000 };
    struct cv_xts *x4 = NULL, *x5 = NULL;
    size_t i;

    (void)state;
    make_key(key, sizeof key);
    fill_random(buf, sizeof buf);
    memcpy(copy, buf, sizeof buf);
    assert_int_equal(cv_xts_new(key, sizeof key, 4096, NULL, &x4), 0);
    assert_int_equal(cv_xts_new(key, sizeof key, 512, NULL, &x5), 0);
    for (i = 0; i < sizeof bad4096 / sizeof bad4096[0]; i++) {
        cv_clear_error();
        assert_int_equal(cv_xts_encrypt(x4, buf, buf, bad4096[i], 0), -EINVAL);
        assert_non_null(strstr(cv_last_error(), "sector"));
        assert_int_equal(cv_xts_decrypt(x4, buf, buf, bad4096[i], 0), -EINVAL);
    }
    for (i = 0; i < sizeof bad512 / sizeof bad512[0]; i++) {
        assert_int_equal(cv_xts_encrypt(x5, buf, buf, bad512[i], 0), -EINVAL);
        assert_int_equal(cv_xts_decrypt(x5, buf, buf, bad512[i], 0), -EINVAL);
    }
    /* Nothing was touched. */
    assert_memory_equal(buf, copy, sizeof buf);
    /* Zero sectors is a whole number of them. */
    assert_int_equal(cv_xts_encrypt(x4, buf, buf, 0, 0), 0);
    assert_memory_equal(buf, copy, sizeof buf);
    cv_xts_free(x4);
    cv_xts_free(x5);
}

static void test_bad_parameters(void **state)
{
    unsigned char key[64];
    struct cv_xts *x = NULL;

    (void)state;
    make_key(key, sizeof key);
    assert_int_equal(cv_xts_new(key, 16, 512, NULL, &x), -EINVAL);
    assert_int_equal(cv_xts_new(key, 48, 512, NULL, &x), -EINVAL);
    assert_int_equal(cv_xts_new(key, 63, 512, NULL, &x), -EINVAL);
    assert_int_equal(cv_xts_new(key, 64, 256, NULL, &x), -EINVAL);
    assert_int_equal(cv_xts_new(key, 64, 8192, NULL, &x), -EINVAL);
    assert_int_equal(cv_xts_new(key, 64, 1536, NULL, &x), -EINVAL);
    assert_null(x);
    cv_xts_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_aes128_512),
        cmocka_unit_test(test_round_trip_aes128_4096),
        cmocka_unit_test(test_round_trip_aes256_512),
        cmocka_unit_test(test_round_trip_aes256_4096),
        cmocka_unit_test(test_round_trip_other_sector_sizes),
        cmocka_unit_test(test_iv_rule_4096_aes256),
        cmocka_unit_test(test_iv_rule_4096_aes128),
        cmocka_unit_test(test_iv_rule_512),
        cmocka_unit_test(test_iv_rule_wraps_4096),
        cmocka_unit_test(test_iv_is_not_large_sectors),
        cmocka_unit_test(test_parallel_4mib),
        cmocka_unit_test(test_parallel_uneven_split),
        cmocka_unit_test(test_parallel_concurrent_callers),
        cmocka_unit_test(test_partial_sector_refused),
        cmocka_unit_test(test_bad_parameters),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

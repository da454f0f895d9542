/* cv_volume on the in-memory backend: byte I/O at any offset checked
 * against a plaintext shadow, range checks, wrong passphrases, concurrent
 * read-modify-write of one sector, zeroing, damaged and missing headers. */
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

#include "store/backend.h"
#include "core/error.h"
#include "luks/luks.h"
#include "core/secmem.h"
#include "image/volume.h"
#include "core/workers.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)

/* Effective size every fixture's volume gets. */
#define VOL_SIZE (3 * MiB)
/* Bytes past the last whole sector: not part of the volume. */
#define TAIL 100
/* Enough for any header cryptsetup makes by default. */
#define FORMAT_STORE (16 * MiB + VOL_SIZE)

static const char PASS[] = "correct horse battery staple";
#define PASSLEN (sizeof PASS - 1)

struct cfg {
    const char *name;
    int version;
    unsigned sector_size;       /* as passed to format; 0: default */
    unsigned key_bits;
    unsigned want_sector_size;
};

static const struct cfg luks2_4096 = { "mem-luks2-4096", 2, 4096, 256, 4096 };
static const struct cfg luks2_512 = { "mem-luks2-512-aes128", 2, 512, 128, 512 };
static const struct cfg luks2_default = { "mem-luks2-default", 2, 0, 256, 4096 };
static const struct cfg luks1 = { "mem-luks1", 1, 0, 256, 512 };

struct fixture {
    const struct cfg *c;
    struct cv_backend *b;
    struct cv_workers *w;
    struct cv_volume *v;
    uint64_t data_offset;
    uint64_t size;              /* effective */
    unsigned ss;
};

/* ------------------------------------------------------------------ */
/* Helpers */

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static uint64_t rng_below(uint64_t n)
{
    return n ? rng_next() % n : 0;
}

static void fill_random(void *buf, size_t len)
{
    unsigned char *p = buf;
    size_t i;

    for (i = 0; i < len; i++)
        p[i] = (unsigned char)(rng_next() >> 32);
}

static void format_params(const struct cfg *c, struct cv_format_params *p)
{
    memset(p, 0, sizeof *p);
    p->luks_version = c->version;
    p->key_bits = c->key_bits;
    p->sector_size = c->sector_size;
    p->pbkdf.type = "pbkdf2";
    p->pbkdf.iterations = 1000;
}

static void check_ok(int r, const char *what)
{
    if (r < 0)
        fail_msg("%s: %d (%s)", what, r, cv_last_error());
}

static void assert_message_has(const char *needle)
{
    const char *msg = cv_last_error();

    if (!strstr(msg, needle))
        fail_msg("message \"%s\" lacks \"%s\"", msg, needle);
    if (strchr(msg, '\n'))
        fail_msg("message \"%s\" is more than one line", msg);
}

/* The whole raw store, to show that something touched nothing. */
static unsigned char *snapshot(struct cv_backend *b, uint64_t *len)
{
    unsigned char *p;

    check_ok(cv_backend_size(b, len), "store size");
    p = malloc(*len ? *len : 1);
    assert_non_null(p);
    check_ok(cv_backend_pread(b, p, *len, 0), "store read");
    return p;
}

static void assert_store_is(struct cv_backend *b, const unsigned char *snap,
                            uint64_t len, const char *what)
{
    uint64_t now_len, i;
    unsigned char *now = snapshot(b, &now_len);

    if (now_len != len) {
        free(now);
        fail_msg("%s: store size changed from %llu to %llu", what,
                 (unsigned long long)len, (unsigned long long)now_len);
    }
    for (i = 0; i < len; i++)
        if (now[i] != snap[i])
            break;
    free(now);
    if (i < len)
        fail_msg("%s: store changed at byte %llu", what, (unsigned long long)i);
}

static int open_volume(struct fixture *f)
{
    int r = cv_volume_open(f->b, PASS, PASSLEN, f->w, 0, &f->v);

    if (r == 0) {
        f->size = cv_volume_size(f->v);
        f->ss = cv_volume_sector_size(f->v);
        f->data_offset = cv_volume_info(f->v)->data_offset;
    }
    return r;
}

static void reopen(struct fixture *f)
{
    cv_volume_close(f->v);
    f->v = NULL;
    check_ok(open_volume(f), "reopen");
}

static void read_all(struct fixture *f, unsigned char *buf)
{
    check_ok(cv_volume_read(f->v, buf, f->size, 0), "read of the volume");
}

static void assert_volume_is(struct fixture *f, const unsigned char *shadow,
                             const char *what)
{
    unsigned char *now = malloc(f->size);
    uint64_t i;

    assert_non_null(now);
    read_all(f, now);
    for (i = 0; i < f->size; i++)
        if (now[i] != shadow[i])
            break;
    free(now);
    if (i < f->size)
        fail_msg("%s: volume differs from the shadow at byte %llu "
                 "(sector %llu)", what, (unsigned long long)i,
                 (unsigned long long)(i / f->ss));
}

/* ------------------------------------------------------------------ */
/* Fixture: a store holding a freshly formatted volume of VOL_SIZE
 * effective bytes plus a partial sector, opened with a pool of two
 * threads. */

static int setup(void **state)
{
    const struct cfg *c = *state;
    struct cv_format_params p;
    struct cv_luks_info info;
    struct cv_luks *l = NULL;
    struct fixture *f = calloc(1, sizeof *f);
    int r;

    if (!f)
        return -1;
    f->c = c;
    format_params(c, &p);
    r = cv_backend_mem_new(c->name, FORMAT_STORE, &f->b);
    if (r == 0)
        r = cv_luks_format(f->b, &p, PASS, PASSLEN);
    if (r == 0)
        r = cv_luks_load(f->b, &l);
    if (r == 0)
        r = cv_luks_info(l, &info);
    cv_luks_free(l);
    if (r == 0)
        r = cv_backend_resize(f->b, info.data_offset + VOL_SIZE + TAIL);
    if (r == 0)
        r = cv_workers_new(2, &f->w);
    if (r == 0)
        r = open_volume(f);
    if (r < 0) {
        fprintf(stderr, "setup %s: %s\n", c->name, cv_last_error());
        cv_workers_free(f->w);
        cv_backend_close(f->b);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    cv_volume_close(f->v);
    cv_workers_free(f->w);
    cv_backend_close(f->b);
    free(f);
    return 0;
}

/* ------------------------------------------------------------------ */

static void test_geometry(void **state)
{
    struct fixture *f = *state;
    const struct cv_luks_info *i = cv_volume_info(f->v);

    assert_int_equal(i->luks_version, f->c->version);
    assert_string_equal(i->cipher, "aes-xts-plain64");
    assert_int_equal(i->key_bits, 2 * f->c->key_bits);
    assert_int_equal(f->ss, f->c->want_sector_size);
    assert_int_equal(i->sector_size, f->ss);
    assert_int_equal(i->data_offset % f->ss, 0);
    assert_int_equal(i->raw_size, f->data_offset + VOL_SIZE + TAIL);
    /* The partial sector at the end is not part of the volume. */
    assert_int_equal(f->size, VOL_SIZE);
    assert_int_equal(i->nslots, 1);
}

/* Decrypts sector k of the store with OpenSSL directly: the IV counts
 * 512-byte units from the start of the data segment. */
static void check_sector_with_evp(struct fixture *f, const unsigned char *key,
                                  size_t keylen, uint64_t k,
                                  const unsigned char *want)
{
    const EVP_CIPHER *cipher = keylen == 64 ? EVP_aes_256_xts() :
                                              EVP_aes_128_xts();
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    unsigned char iv[16] = { 0 }, *raw = malloc(f->ss), *plain = malloc(f->ss);
    uint64_t iv512 = k * f->ss / 512;
    int outl = 0, i;

    assert_non_null(ctx);
    assert_non_null(raw);
    assert_non_null(plain);
    check_ok(cv_backend_pread(f->b, raw, f->ss, f->data_offset + k * f->ss),
             "raw read");
    for (i = 0; i < 8; i++)
        iv[i] = (unsigned char)(iv512 >> (8 * i));
    assert_int_equal(EVP_DecryptInit_ex(ctx, cipher, NULL, key, iv), 1);
    assert_int_equal(EVP_DecryptUpdate(ctx, plain, &outl, raw, (int)f->ss), 1);
    EVP_CIPHER_CTX_free(ctx);
    if (memcmp(plain, want, f->ss) != 0)
        fail_msg("sector %llu: the store does not decrypt with IV %llu to "
                 "what the volume returns", (unsigned long long)k,
                 (unsigned long long)iv512);
    /* And the ciphertext is not the plaintext. */
    assert_memory_not_equal(raw, want, f->ss);
    free(raw);
    free(plain);
}

static uint64_t random_length(struct fixture *f, uint64_t off)
{
    uint64_t max = f->size - off, len;

    switch (rng_below(6)) {
    case 0: len = 1 + rng_below(16); break;                 /* a few bytes */
    case 1: len = 1 + rng_below(f->ss); break;              /* in a sector */
    case 2: len = f->ss - off % f->ss; break;               /* to the edge */
    case 3: len = 1 + rng_below(3 * (uint64_t)f->ss); break; /* span */
    case 4: len = (1 + rng_below(8)) * (uint64_t)f->ss; break;
    default: len = 1 + rng_below(300 * KiB); break;        /* parallel */
    }
    return len < max ? len : max;
}

static uint64_t random_offset(struct fixture *f)
{
    switch (rng_below(4)) {
    case 0: return rng_below(f->size / f->ss) * f->ss;     /* aligned */
    case 1: return f->size - 1 - rng_below(2 * (uint64_t)f->ss); /* end */
    default: return rng_below(f->size);
    }
}

static void test_random_io_matches_shadow(void **state)
{
    struct fixture *f = *state;
    unsigned char *shadow = malloc(f->size), *buf = malloc(f->size);
    unsigned char *key = NULL;
    size_t keylen = 0;
    struct cv_luks *l = NULL;
    uint64_t off, len, k;
    int i;

    assert_non_null(shadow);
    assert_non_null(buf);
    /* Untouched sectors decrypt to noise: that is the starting point. */
    read_all(f, shadow);
    for (i = 0; i < 600; i++) {
        off = random_offset(f);
        len = random_length(f, off);
        if (rng_below(3) != 0) {
            fill_random(buf, len);
            if (cv_volume_write(f->v, buf, len, off, rng_below(8) ? 0 :
                                CV_WRITE_FUA) != 0)
                fail_msg("write %d of %llu bytes at %llu: %s", i,
                         (unsigned long long)len, (unsigned long long)off,
                         cv_last_error());
            memcpy(shadow + off, buf, len);
        } else {
            if (cv_volume_read(f->v, buf, len, off) != 0)
                fail_msg("read %d of %llu bytes at %llu: %s", i,
                         (unsigned long long)len, (unsigned long long)off,
                         cv_last_error());
            if (memcmp(buf, shadow + off, len) != 0)
                fail_msg("read %d of %llu bytes at %llu differs from the "
                         "shadow", i, (unsigned long long)len,
                         (unsigned long long)off);
        }
    }
    /* The last byte and the first. */
    assert_int_equal(cv_volume_write(f->v, "Z", 1, f->size - 1, 0), 0);
    shadow[f->size - 1] = 'Z';
    assert_int_equal(cv_volume_write(f->v, "A", 1, 0, 0), 0);
    shadow[0] = 'A';
    assert_int_equal(cv_volume_flush(f->v), 0);
    assert_volume_is(f, shadow, "after random writes");

    /* It is on the store, not in the handle. */
    reopen(f);
    assert_volume_is(f, shadow, "after reopening");

    /* And it is standard XTS with plain64 IVs from the segment start. */
    check_ok(cv_luks_load(f->b, &l), "load");
    check_ok(cv_luks_unlock(l, PASS, PASSLEN, &key, &keylen), "unlock");
    assert_int_equal(keylen, f->c->key_bits / 4);
    for (k = 0; k < f->size / f->ss; k += 1 + k * 3)
        check_sector_with_evp(f, key, keylen, k, shadow + k * f->ss);
    k = f->size / f->ss - 1;
    check_sector_with_evp(f, key, keylen, k, shadow + k * f->ss);
    cv_secmem_free(key, keylen);
    cv_luks_free(l);
    free(shadow);
    free(buf);
}

static void test_out_of_range(void **state)
{
    struct fixture *f = *state;
    const uint64_t size = f->size;
    const struct { uint64_t off; uint64_t len; } bad[] = {
        { size, 1 },
        { size - 1, 2 },
        { size - 10, 20 },
        { size - f->ss, f->ss + 1 },
        { size + 4096, 1 },
        { size + 1, 0 },
        { 0, size + 1 },
        { 1, size },
        { UINT64_MAX, 1 },
        { UINT64_MAX - 5, 10 },         /* off + len wraps around */
        { 16, UINT64_MAX - 8 },         /* (write_zeroes only) wraps */
    };
    unsigned char *buf = malloc(size + 1), *pattern = malloc(size + 1);
    unsigned char *snap;
    uint64_t snap_len;
    size_t i;

    assert_non_null(buf);
    assert_non_null(pattern);
    fill_random(pattern, size + 1);
    snap = snapshot(f->b, &snap_len);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t off = bad[i].off, len = bad[i].len;
        size_t io_len = len <= size + 1 ? (size_t)len : 0;
        char what[128];
        int r;

        snprintf(what, sizeof what, "%llu bytes at offset %llu",
                 (unsigned long long)len, (unsigned long long)off);
        if (len <= size + 1) {
            memcpy(buf, pattern, size + 1);
            cv_clear_error();
            r = cv_volume_read(f->v, buf, io_len, off);
            if (r != -ERANGE)
                fail_msg("read of %s: %d, expected -ERANGE", what, r);
            assert_message_has(f->c->name);
            assert_message_has("beyond the end");
            assert_memory_equal(buf, pattern, size + 1);

            cv_clear_error();
            r = cv_volume_write(f->v, pattern, io_len, off, 0);
            if (r != -ERANGE)
                fail_msg("write of %s: %d, expected -ERANGE", what, r);
            assert_message_has(f->c->name);
            assert_message_has("beyond the end");
        }
        cv_clear_error();
        r = cv_volume_write_zeroes(f->v, len, off, 0);
        if (r != -ERANGE)
            fail_msg("write_zeroes of %s: %d, expected -ERANGE", what, r);
        assert_message_has(f->c->name);
        assert_store_is(f->b, snap, snap_len, what);
    }
    free(snap);

    /* Right up to the end is fine. */
    assert_int_equal(cv_volume_write(f->v, pattern, 1, size - 1, 0), 0);
    assert_int_equal(cv_volume_read(f->v, buf, 1, size - 1), 0);
    assert_int_equal(buf[0], pattern[0]);
    assert_int_equal(cv_volume_write(f->v, pattern, f->ss, size - f->ss, 0), 0);
    assert_int_equal(cv_volume_read(f->v, buf, f->ss, size - f->ss), 0);
    assert_memory_equal(buf, pattern, f->ss);
    assert_int_equal(cv_volume_read(f->v, buf, size, 0), 0);
    assert_int_equal(cv_volume_read(f->v, buf, 0, size), 0);
    assert_int_equal(cv_volume_write(f->v, buf, 0, size, 0), 0);
    assert_int_equal(cv_volume_write_zeroes(f->v, 0, size, 0), 0);
    free(buf);
    free(pattern);
}

static void test_wrong_passphrase(void **state)
{
    struct fixture *f = *state;
    static const char *wrong[] = {
        "wrong",
        "correct horse battery stapl",          /* a prefix */
        "correct horse battery staple\n",       /* a newline more */
        "Correct horse battery staple",
    };
    struct cv_volume *v = NULL;
    unsigned char *snap;
    uint64_t snap_len;
    size_t i;
    int r;

    /* The documented constant is EKEYREJECTED, apart from every I/O errno. */
    assert_int_equal(CV_EWRONGKEY, EKEYREJECTED);
    cv_volume_close(f->v);
    f->v = NULL;
    snap = snapshot(f->b, &snap_len);
    for (i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        cv_clear_error();
        r = cv_volume_open(f->b, wrong[i], strlen(wrong[i]), NULL, 0, &v);
        if (r != -CV_EWRONGKEY)
            fail_msg("passphrase \"%s\": %d (%s), expected -EKEYREJECTED",
                     wrong[i], r, cv_last_error());
        assert_message_has(f->c->name);
        assert_message_has("wrong passphrase");
    }
    assert_store_is(f->b, snap, snap_len, "failed unlocks");
    free(snap);
    check_ok(open_volume(f), "open with the right passphrase");
}

/* ------------------------------------------------------------------ */
/* Eight threads read-modify-write distinct bytes of the same sector(s). */

#define RMW_THREADS 8
#define RMW_ROUNDS 300
#define RMW_LEN 17

struct rmw_arg {
    struct cv_volume *v;
    uint64_t off;
    unsigned id;
    unsigned char last[RMW_LEN];
    char error[256];
};

static void rmw_pattern(unsigned id, unsigned round, unsigned char *p)
{
    unsigned j;

    for (j = 0; j < RMW_LEN; j++)
        p[j] = (unsigned char)(id * 37 + round * 11 + j * 3 + 1);
}

static void *rmw_main(void *arg)
{
    struct rmw_arg *a = arg;
    unsigned char back[RMW_LEN];
    unsigned round;
    int r;

    for (round = 0; round < RMW_ROUNDS; round++) {
        rmw_pattern(a->id, round, a->last);
        r = cv_volume_write(a->v, a->last, RMW_LEN, a->off, 0);
        if (r < 0) {
            snprintf(a->error, sizeof a->error, "write: %s", cv_last_error());
            return NULL;
        }
        /* Nobody else writes these bytes: they are ours until we write
         * them again, whatever the others do to the rest of the sector. */
        r = cv_volume_read(a->v, back, RMW_LEN, a->off);
        if (r < 0) {
            snprintf(a->error, sizeof a->error, "read: %s", cv_last_error());
            return NULL;
        }
        if (memcmp(back, a->last, RMW_LEN) != 0) {
            snprintf(a->error, sizeof a->error, "round %u: own bytes at %llu "
                     "lost to another thread's write", round,
                     (unsigned long long)a->off);
            return NULL;
        }
    }
    return NULL;
}

static void concurrent_rmw(struct fixture *f, const uint64_t *offs)
{
    struct rmw_arg args[RMW_THREADS];
    pthread_t t[RMW_THREADS];
    unsigned char back[RMW_LEN];
    unsigned i;

    for (i = 0; i < RMW_THREADS; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].v = f->v;
        args[i].off = offs[i];
        args[i].id = i;
    }
    for (i = 0; i < RMW_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, rmw_main, &args[i]), 0);
    for (i = 0; i < RMW_THREADS; i++)
        pthread_join(t[i], NULL);
    for (i = 0; i < RMW_THREADS; i++)
        if (args[i].error[0])
            fail_msg("thread %u: %s", i, args[i].error);
    /* Every thread's last write is there, also after reopening. */
    reopen(f);
    for (i = 0; i < RMW_THREADS; i++) {
        assert_int_equal(cv_volume_read(f->v, back, RMW_LEN, offs[i]), 0);
        if (memcmp(back, args[i].last, RMW_LEN) != 0)
            fail_msg("thread %u: its last write at %llu was lost", i,
                     (unsigned long long)offs[i]);
    }
}

static void test_concurrent_same_sector(void **state)
{
    struct fixture *f = *state;
    uint64_t offs[RMW_THREADS], base = 5 * (uint64_t)f->ss + 3;
    unsigned i;

    /* Distinct, unaligned, all in sector 5. */
    for (i = 0; i < RMW_THREADS; i++)
        offs[i] = base + i * (RMW_LEN + 40);
    assert_true(offs[RMW_THREADS - 1] + RMW_LEN <= 6 * (uint64_t)f->ss);
    concurrent_rmw(f, offs);
}

static void test_concurrent_across_boundary(void **state)
{
    struct fixture *f = *state;
    uint64_t offs[RMW_THREADS], boundary = 9 * (uint64_t)f->ss;
    unsigned i;

    /* Around the boundary of sectors 8 and 9; one range straddles it. */
    for (i = 0; i < RMW_THREADS; i++)
        offs[i] = boundary - 4 * RMW_LEN - 7 + i * RMW_LEN;
    concurrent_rmw(f, offs);
}

/* ------------------------------------------------------------------ */

static void test_write_zeroes(void **state)
{
    struct fixture *f = *state;
    unsigned char *shadow = malloc(f->size), *raw = malloc(f->ss);
    struct { uint64_t off, len; } z[] = {
        { (uint64_t)f->ss + 3, MiB + 2 * (uint64_t)f->ss + 5 }, /* > 1 chunk */
        { 7, 1 },
        { 2 * MiB, f->ss },
        { f->size - 7, 7 },
        { 2 * MiB + 3 * (uint64_t)f->ss - 1, 2 },
    };
    uint64_t inside;
    size_t i;

    assert_non_null(shadow);
    assert_non_null(raw);
    fill_random(shadow, f->size);
    check_ok(cv_volume_write(f->v, shadow, f->size, 0, 0), "fill");
    for (i = 0; i < sizeof z / sizeof z[0]; i++) {
        check_ok(cv_volume_write_zeroes(f->v, z[i].len, z[i].off,
                                        i == 0 ? CV_WRITE_FUA : 0),
                 "write_zeroes");
        memset(shadow + z[i].off, 0, z[i].len);
        assert_volume_is(f, shadow, "after write_zeroes");
    }
    reopen(f);
    assert_volume_is(f, shadow, "after write_zeroes and reopening");

    /* Encrypted zeros are written: a zeroed sector is not zeros on the
     * store (a hole would decrypt to noise). */
    inside = 2 * (uint64_t)f->ss;
    check_ok(cv_backend_pread(f->b, raw, f->ss, f->data_offset + inside),
             "raw read");
    {
        size_t j, nonzero = 0;
        for (j = 0; j < f->ss; j++)
            nonzero += raw[j] != 0;
        assert_true(nonzero > f->ss / 2);
    }
    assert_int_equal(cv_volume_write_zeroes(f->v, 0, 0, 0), 0);
    free(shadow);
    free(raw);
}

/* A store that forwards to another and logs, in order, each write ('W',
 * or 'F' when it carries FUA) and each flush ('f'). */
struct counting {
    struct cv_backend base;
    struct cv_backend *inner;
    pthread_mutex_t lock;
    char log[64];
    size_t n;
};

static void count(struct cv_backend *b, char what)
{
    struct counting *c = (struct counting *)b;

    pthread_mutex_lock(&c->lock);
    if (c->n < sizeof c->log - 1)
        c->log[c->n++] = what;
    pthread_mutex_unlock(&c->lock);
}

static int cnt_pread(struct cv_backend *b, void *buf, size_t len, uint64_t off)
{
    return cv_backend_pread(((struct counting *)b)->inner, buf, len, off);
}

static int cnt_pwrite(struct cv_backend *b, const void *buf, size_t len,
                      uint64_t off, unsigned flags)
{
    count(b, flags & CV_WRITE_FUA ? 'F' : 'W');
    return cv_backend_pwrite(((struct counting *)b)->inner, buf, len, off,
                             flags);
}

static int cnt_flush(struct cv_backend *b)
{
    count(b, 'f');
    return cv_backend_flush(((struct counting *)b)->inner);
}

static int cnt_discard(struct cv_backend *b, uint64_t off, uint64_t len)
{
    return cv_backend_discard(((struct counting *)b)->inner, off, len);
}

static int cnt_size(struct cv_backend *b, uint64_t *size)
{
    return cv_backend_size(((struct counting *)b)->inner, size);
}

static const struct cv_backend_ops counting_ops = {
    .kind = "counting", .pread = cnt_pread, .pwrite = cnt_pwrite,
    .flush = cnt_flush, .discard = cnt_discard, .get_size = cnt_size,
};

static void counting_reset(struct counting *c)
{
    memset(c->log, 0, sizeof c->log);
    c->n = 0;
}

/* FUA means the request is durable: one store write per request, never a
 * FUA on some of its parts, and one flush after all of them (DESIGN.md). */
static void test_fua_once_per_request(void **state)
{
    struct fixture *f = *state;
    struct counting c = { .base = { .ops = &counting_ops,
                                    .name = (char *)"counting" },
                          .inner = f->b };
    struct cv_volume *v = NULL;
    size_t len = MiB;               /* split across the pool's threads */
    unsigned char *buf = malloc(len);
    size_t i;

    assert_non_null(buf);
    fill_random(buf, len);
    assert_int_equal(pthread_mutex_init(&c.lock, NULL), 0);
    check_ok(cv_volume_open(&c.base, PASS, PASSLEN, f->w, 0, &v), "open");

    counting_reset(&c);
    check_ok(cv_volume_write(v, buf, len, 0, CV_WRITE_FUA), "FUA write");
    assert_string_equal(c.log, "Wf");

    counting_reset(&c);
    check_ok(cv_volume_write(v, buf, len, 0, 0), "write");
    assert_string_equal(c.log, "W");

    /* Unaligned, over three 1 MiB chunks. */
    counting_reset(&c);
    check_ok(cv_volume_write_zeroes(v, 2 * MiB + 2 * (uint64_t)f->ss + 5,
                                    (uint64_t)f->ss + 3, CV_WRITE_FUA),
             "FUA write zeroes");
    if (c.n < 3 || c.log[c.n - 1] != 'f')
        fail_msg("write zeroes with FUA: store calls \"%s\", want writes "
                 "then one flush", c.log);
    for (i = 0; i + 1 < c.n; i++)
        if (c.log[i] != 'W')
            fail_msg("write zeroes with FUA: store calls \"%s\", want "
                     "writes without FUA then one flush", c.log);

    counting_reset(&c);
    check_ok(cv_volume_write_zeroes(v, 2 * MiB, 0, 0), "write zeroes");
    assert_string_equal(c.log, "WW");

    cv_volume_close(v);
    pthread_mutex_destroy(&c.lock);
    free(buf);
}

static void test_readonly(void **state)
{
    struct fixture *f = *state;
    struct cv_volume *ro = NULL;
    unsigned char buf[64] = { 0 }, *snap;
    uint64_t snap_len;

    snap = snapshot(f->b, &snap_len);
    check_ok(cv_volume_open(f->b, PASS, PASSLEN, NULL, CV_VOLUME_READONLY, &ro),
             "read-only open");
    assert_int_equal(cv_volume_read(ro, buf, sizeof buf, 100), 0);
    assert_int_equal(cv_volume_write(ro, buf, sizeof buf, 100, 0), -EROFS);
    assert_int_equal(cv_volume_write_zeroes(ro, sizeof buf, 100, 0), -EROFS);
    cv_volume_close(ro);
    assert_store_is(f->b, snap, snap_len, "read-only volume");
    free(snap);
}

/* The last keyslot goes only with force; afterwards nothing unlocks. */
static void test_last_keyslot(void **state)
{
    struct fixture *f = *state;
    struct cv_volume *v = NULL;
    struct cv_luks *l = NULL;
    unsigned char *snap;
    uint64_t snap_len;

    cv_volume_close(f->v);
    f->v = NULL;
    snap = snapshot(f->b, &snap_len);
    check_ok(cv_luks_load(f->b, &l), "load");
    cv_clear_error();
    assert_int_equal(cv_luks_remove_key(l, PASS, PASSLEN, 0), -EBUSY);
    assert_message_has(f->c->name);
    assert_message_has("last one");
    assert_int_equal(cv_luks_remove_key(l, "wrong", 5, 1), -CV_EWRONGKEY);
    cv_luks_free(l);
    assert_store_is(f->b, snap, snap_len, "refused keyslot removal");
    free(snap);
    check_ok(open_volume(f), "open after the refused removal");
    cv_volume_close(f->v);
    f->v = NULL;

    check_ok(cv_luks_load(f->b, &l), "load");
    assert_int_equal(cv_luks_remove_key(l, PASS, PASSLEN, 1), 0);
    cv_luks_free(l);
    cv_clear_error();
    assert_int_equal(cv_volume_open(f->b, PASS, PASSLEN, NULL, 0, &v), -ENOENT);
    assert_message_has(f->c->name);
    assert_message_has("no keyslot left");
}

/* A passphrase of keyslot 1 opens the volume (an unlock returns the
 * keyslot, not 0), by any keyslot and by that one. */
static void test_second_keyslot(void **state)
{
    struct fixture *f = *state;
    static const char other[] = "second passphrase";
    static const struct cv_pbkdf fast = { .type = "pbkdf2",
                                          .iterations = 1000 };
    unsigned char data[1000], back[1000];
    struct cv_volume *v = NULL;
    struct cv_luks *l = NULL;
    int slot;

    fill_random(data, sizeof data);
    check_ok(cv_volume_write(f->v, data, sizeof data, 12345, 0), "write");
    check_ok(cv_luks_load(f->b, &l), "load");
    slot = cv_luks_add_key(l, PASS, PASSLEN, other, sizeof other - 1, &fast);
    check_ok(slot, "add a key");
    assert_int_equal(slot, 1);
    cv_luks_free(l);
    check_ok(cv_volume_open(f->b, other, sizeof other - 1, NULL, 0, &v),
             "open by keyslot 1");
    assert_non_null(v);
    check_ok(cv_volume_read(v, back, sizeof back, 12345), "read");
    assert_memory_equal(back, data, sizeof data);
    cv_volume_close(v);
    v = NULL;
    check_ok(cv_volume_open_keyslot(f->b, 1, other, sizeof other - 1, NULL, 0,
                                    &v), "open keyslot 1");
    assert_non_null(v);
    check_ok(cv_volume_read(v, back, sizeof back, 12345), "read");
    assert_memory_equal(back, data, sizeof data);
    cv_volume_close(v);
}

/* ------------------------------------------------------------------ */
/* Damaged headers (LUKS2 keeps two copies). */

static uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    int i;

    for (i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void scribble(struct cv_backend *b, uint64_t off, size_t len,
                     unsigned char byte)
{
    unsigned char *p = malloc(len);

    assert_non_null(p);
    memset(p, byte, len);
    check_ok(cv_backend_pwrite(b, p, len, off, 0), "damaging the header");
    free(p);
}

/* Writes recognisable data, closes the volume; returns the hdr_size the
 * primary binary header gives. */
static uint64_t prepare_damage(struct fixture *f, unsigned char *data,
                               size_t len, uint64_t off)
{
    unsigned char hdr[16];

    fill_random(data, len);
    check_ok(cv_volume_write(f->v, data, len, off, 0), "write");
    cv_volume_close(f->v);
    f->v = NULL;
    check_ok(cv_backend_pread(f->b, hdr, sizeof hdr, 0), "read header");
    assert_memory_equal(hdr, "LUKS\xba\xbe\x00\x02", 8);
    return be64(hdr + 8);
}

static void expect_data(struct fixture *f, const unsigned char *data,
                        size_t len, uint64_t off)
{
    unsigned char *back = malloc(len);

    assert_non_null(back);
    check_ok(cv_volume_read(f->v, back, len, off), "read");
    assert_memory_equal(back, data, len);
    free(back);
}

static void test_damaged_primary_json(void **state)
{
    struct fixture *f = *state;
    unsigned char data[10000], *snap;
    uint64_t hdr_size, snap_len;

    hdr_size = prepare_damage(f, data, sizeof data, 12345);
    assert_int_equal(hdr_size, 16384);
    /* Garbage over the primary's JSON area: its checksum fails. */
    scribble(f->b, 4096, 4096, 0x5a);
    snap = snapshot(f->b, &snap_len);
    check_ok(open_volume(f), "open with a damaged primary header");
    expect_data(f, data, sizeof data, 12345);
    assert_int_equal(f->size, VOL_SIZE);
    /* Opening repaired nothing on the store behind our back. */
    assert_store_is(f->b, snap, snap_len, "open with a damaged primary");
    free(snap);
}

static void test_damaged_primary_magic(void **state)
{
    struct fixture *f = *state;
    unsigned char data[5000];

    prepare_damage(f, data, sizeof data, 2 * MiB + 1);
    /* No primary magic at all: only the secondary can be found. */
    scribble(f->b, 0, 4096, 0);
    check_ok(open_volume(f), "open with the primary header wiped");
    expect_data(f, data, sizeof data, 2 * MiB + 1);
}

static void test_damaged_both_headers(void **state)
{
    struct fixture *f = *state;
    unsigned char data[4096];
    uint64_t hdr_size;
    struct cv_volume *v = NULL;
    struct cv_luks *l = NULL;
    int r;

    hdr_size = prepare_damage(f, data, sizeof data, 0);
    assert_int_equal(hdr_size, 16384);
    scribble(f->b, 4096, 4096, 0x5a);
    /* The secondary copy sits hdr_size bytes in, JSON 4 KiB after it. */
    scribble(f->b, hdr_size + 4096, 4096, 0xa5);
    cv_clear_error();
    r = cv_volume_open(f->b, PASS, PASSLEN, NULL, 0, &v);
    assert_int_equal(r, -EINVAL);
    assert_message_has(f->c->name);
    assert_message_has("LUKS header damaged");
    cv_clear_error();
    assert_int_equal(cv_luks_load(f->b, &l), -EINVAL);
    assert_message_has("LUKS header damaged");
    assert_null(l);
}

/* ------------------------------------------------------------------ */
/* Stores that cannot hold a volume. */

static void test_too_small_for_header(void **state)
{
    const struct cfg *c = *state;
    struct cv_format_params p;
    struct cv_backend *b = NULL;
    unsigned char *snap;
    uint64_t snap_len, sizes[] = { MiB, 4096, 0 };
    size_t i;
    int r;

    format_params(c, &p);
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        check_ok(cv_backend_mem_new(c->name, sizes[i], &b), "mem store");
        snap = snapshot(b, &snap_len);
        cv_clear_error();
        r = cv_luks_format(b, &p, PASS, PASSLEN);
        if (r >= 0)
            fail_msg("format of a %llu-byte store succeeded",
                     (unsigned long long)sizes[i]);
        assert_int_equal(r, -ENOSPC);
        assert_message_has(c->name);
        assert_message_has("too small");
        assert_store_is(b, snap, snap_len, "refused format");
        free(snap);
        cv_backend_close(b);
    }
}

/* A header plus exactly one sector is the smallest store; one byte less
 * is refused. */
static void test_smallest_store(void **state)
{
    const struct cfg *c = *state;
    struct cv_format_params p;
    struct cv_backend *b = NULL;
    struct cv_volume *v = NULL;
    struct cv_luks *l = NULL;
    struct cv_luks_info info;
    unsigned char sector[4096], back[4096];

    format_params(c, &p);
    /* Learn the data offset from a roomy store first. */
    check_ok(cv_backend_mem_new(c->name, FORMAT_STORE, &b), "mem store");
    check_ok(cv_luks_format(b, &p, PASS, PASSLEN), "format");
    check_ok(cv_luks_load(b, &l), "load");
    check_ok(cv_luks_info(l, &info), "info");
    cv_luks_free(l);
    cv_backend_close(b);

    check_ok(cv_backend_mem_new(c->name, info.data_offset + info.sector_size
                                - 1, &b), "mem store");
    assert_int_equal(cv_luks_format(b, &p, PASS, PASSLEN), -ENOSPC);
    cv_backend_close(b);

    check_ok(cv_backend_mem_new(c->name, info.data_offset + info.sector_size,
                                &b), "mem store");
    check_ok(cv_luks_format(b, &p, PASS, PASSLEN), "format, one sector");
    check_ok(cv_volume_open(b, PASS, PASSLEN, NULL, 0, &v), "open");
    assert_int_equal(cv_volume_size(v), info.sector_size);
    fill_random(sector, sizeof sector);
    check_ok(cv_volume_write(v, sector, info.sector_size, 0, 0), "write");
    check_ok(cv_volume_read(v, back, info.sector_size, 0), "read");
    assert_memory_equal(back, sector, info.sector_size);
    assert_int_equal(cv_volume_write(v, sector, 1, info.sector_size, 0),
                     -ERANGE);
    cv_volume_close(v);
    cv_backend_close(b);
}

static void test_truncated(void **state)
{
    struct fixture *f = *state;
    struct cv_volume *v = NULL;
    int r;

    cv_volume_close(f->v);
    f->v = NULL;
    check_ok(cv_backend_resize(f->b, f->data_offset / 2), "truncate");
    cv_clear_error();
    r = cv_volume_open(f->b, PASS, PASSLEN, NULL, 0, &v);
    assert_true(r < 0);
    assert_int_not_equal(r, -CV_EWRONGKEY);
    assert_message_has(f->c->name);
    assert_message_has("truncated");
}

static void test_not_luks(void **state)
{
    struct cv_backend *b = NULL;
    struct cv_volume *v = NULL;
    unsigned char *junk = malloc(MiB);
    uint64_t off;

    (void)state;
    assert_non_null(junk);
    check_ok(cv_backend_mem_new("mem-junk", FORMAT_STORE, &b), "mem store");
    for (off = 0; off < FORMAT_STORE; off += MiB) {
        fill_random(junk, MiB);
        check_ok(cv_backend_pwrite(b, junk, MiB, off, 0), "fill");
    }
    cv_clear_error();
    assert_int_equal(cv_volume_open(b, PASS, PASSLEN, NULL, 0, &v), -EINVAL);
    assert_message_has("mem-junk");
    assert_message_has("not a LUKS image");
    cv_backend_close(b);

    check_ok(cv_backend_mem_new("mem-zeros", FORMAT_STORE, &b), "mem store");
    cv_clear_error();
    assert_int_equal(cv_volume_open(b, PASS, PASSLEN, NULL, 0, &v), -EINVAL);
    assert_message_has("mem-zeros");
    assert_message_has("not a LUKS image");
    cv_backend_close(b);

    check_ok(cv_backend_mem_new("mem-tiny", 100, &b), "mem store");
    cv_clear_error();
    assert_int_equal(cv_volume_open(b, PASS, PASSLEN, NULL, 0, &v), -EINVAL);
    assert_message_has("mem-tiny");
    assert_message_has("too small");
    cv_backend_close(b);
    free(junk);
}

/* ------------------------------------------------------------------ */

#define FOR_ALL(fn)                                                         \
    cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown,           \
                                             (void *)&luks2_4096),          \
    cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown,           \
                                             (void *)&luks2_512),           \
    cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown,           \
                                             (void *)&luks1)

int main(void)
{
    const struct CMUnitTest tests[] = {
        FOR_ALL(test_geometry),
        cmocka_unit_test_prestate_setup_teardown(test_geometry, setup,
                                                 teardown,
                                                 (void *)&luks2_default),
        FOR_ALL(test_random_io_matches_shadow),
        FOR_ALL(test_out_of_range),
        FOR_ALL(test_wrong_passphrase),
        FOR_ALL(test_concurrent_same_sector),
        FOR_ALL(test_concurrent_across_boundary),
        FOR_ALL(test_write_zeroes),
        FOR_ALL(test_fua_once_per_request),
        FOR_ALL(test_readonly),
        FOR_ALL(test_last_keyslot),
        FOR_ALL(test_second_keyslot),
        FOR_ALL(test_truncated),
        cmocka_unit_test_prestate_setup_teardown(test_damaged_primary_json,
                                                 setup, teardown,
                                                 (void *)&luks2_4096),
        cmocka_unit_test_prestate_setup_teardown(test_damaged_primary_json,
                                                 setup, teardown,
                                                 (void *)&luks2_512),
        cmocka_unit_test_prestate_setup_teardown(test_damaged_primary_magic,
                                                 setup, teardown,
                                                 (void *)&luks2_4096),
        cmocka_unit_test_prestate_setup_teardown(test_damaged_both_headers,
                                                 setup, teardown,
                                                 (void *)&luks2_4096),
        cmocka_unit_test_prestate(test_too_small_for_header,
                                  (void *)&luks2_4096),
        cmocka_unit_test_prestate(test_too_small_for_header, (void *)&luks1),
        cmocka_unit_test_prestate(test_smallest_store, (void *)&luks2_4096),
        cmocka_unit_test_prestate(test_smallest_store, (void *)&luks1),
        cmocka_unit_test(test_not_luks),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* What test-volume-chain.c and test-volume-fill.c share: volumes as layer
 * chains in a temporary directory ("base", and "clone" of base@s1), each
 * formatted through its chain's raw store with its own passphrase, opened
 * with one key per format; and checks of the layer files themselves with
 * OpenSSL's AES-XTS, independent of the project's cipher. */
#ifndef VOLUME_CHAIN_FIXTURE_H
#define VOLUME_CHAIN_FIXTURE_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* Each test program uses some of these. */
#pragma GCC diagnostic ignored "-Wunused-function"

#include "core/error.h"
#include "core/secmem.h"
#include "crypto/xts.h"
#include "image/volume.h"
#include "luks/luks.h"
#include "store/backend.h"
#include "store/chain.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define BLK 4096u
/* Fits a LUKS1 header of AES-256 and a LUKS2 one of 8 keyslots. */
#define DATA_OFFSET (2 * MiB)
#define VOL_SIZE (1 * MiB)
/* A block of recognisable plaintext, and one the base never writes. */
#define MARK_BLOCK 9u
#define HOLE_BLOCK 17u
#define MARKER_LEN 64

static const char BASE_PASS[] = "base passphrase";
static const char CLONE_PASS[] = "clone passphrase";

struct cfg {
    int base_version;
    unsigned base_ss, base_aes;
    int clone_version;          /* the clone's own format */
    unsigned clone_ss, clone_aes;
};

/* LUKS2 parent, LUKS1 clone; LUKS1 parent, LUKS2 clone; 512-byte sectors
 * on both sides with keys of different sizes. */
static const struct cfg luks2_luks1 = { 2, 4096, 256, 1, 512, 256 };
static const struct cfg luks1_luks2 = { 1, 512, 256, 2, 4096, 128 };
static const struct cfg luks2_512 = { 2, 512, 128, 2, 512, 256 };

struct fx {
    const struct cfg *cfg;
    char dir[PATH_MAX];
    char base[PATH_MAX + 8], clone[PATH_MAX + 8];
    const char *clone_pass;     /* the base's for a clone of its format */
};

/* An open volume: its chain, the volume, a key per format. */
struct vol {
    const char *path;
    const char *snapshot;
    unsigned flags;
    struct cv_chain *c;
    struct cv_volume *v;
    unsigned char *key[CV_CHAIN_MAX_FORMATS];
    size_t keylen[CV_CHAIN_MAX_FORMATS];
    unsigned nkeys;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

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

static void fill_marker(unsigned char *p, size_t len)
{
    static const char text[] = "cryptvol clone plaintext marker ";
    size_t i;

    for (i = 0; i < len; i++)
        p[i] = (unsigned char)text[i % (sizeof text - 1)];
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
}

/* A chain at path formatted with a header that ends at DATA_OFFSET. */
static void make_volume(const char *path, int version, unsigned ss,
                        unsigned aes, const struct cv_chain_parent *parent,
                        const char *pass)
{
    struct cv_format_params p = { .luks_version = version, .key_bits = aes,
                                  .sector_size = ss, .data_offset = DATA_OFFSET,
                                  .pbkdf = { .type = "pbkdf2",
                                             .iterations = 1000 } };
    struct cv_chain *c = NULL;

    check_ok(cv_chain_create(path, DATA_OFFSET, DATA_OFFSET + VOL_SIZE,
                             parent), "chain create");
    check_ok(cv_chain_open(path, NULL, 0, &c), "chain open");
    check_ok(cv_luks_format(cv_chain_backend(c), &p, pass, strlen(pass)),
             "format");
    cv_chain_close(c);
}

/* A clone of base@s1: of its own format, or with a copy of the base's
 * header (same key). */
static void make_clone(struct fx *f, int own_format)
{
    struct cv_chain_parent parent = { .volume = "base", .snapshot = "s1",
                                      .own_format = own_format };
    struct cv_chain *b = NULL, *c = NULL;
    unsigned char *hdr;

    if (own_format) {
        make_volume(f->clone, f->cfg->clone_version, f->cfg->clone_ss,
                    f->cfg->clone_aes, &parent, CLONE_PASS);
        f->clone_pass = CLONE_PASS;
        return;
    }
    hdr = malloc(DATA_OFFSET);
    assert_non_null(hdr);
    check_ok(cv_chain_create(f->clone, DATA_OFFSET, DATA_OFFSET + VOL_SIZE,
                             &parent), "chain create");
    check_ok(cv_chain_open(f->base, NULL, CV_CHAIN_READONLY, &b), "open base");
    check_ok(cv_chain_open(f->clone, NULL, 0, &c), "open clone");
    check_ok(cv_backend_pread(cv_chain_backend(b), hdr, DATA_OFFSET, 0),
             "read the base's header");
    check_ok(cv_backend_pwrite(cv_chain_backend(c), hdr, DATA_OFFSET, 0, 0),
             "write the clone's header");
    check_ok(cv_chain_flush(c), "flush");
    cv_chain_close(b);
    cv_chain_close(c);
    free(hdr);
    f->clone_pass = BASE_PASS;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");

    if (!f)
        return -1;
    f->cfg = *state;
    snprintf(f->dir, sizeof f->dir, "%s/test-volume-chain-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->base, sizeof f->base, "%s/base", f->dir);
    snprintf(f->clone, sizeof f->clone, "%s/clone", f->dir);
    make_volume(f->base, f->cfg->base_version, f->cfg->base_ss,
                f->cfg->base_aes, NULL, BASE_PASS);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    cv_chain_remove(f->clone);
    cv_chain_remove(f->base);
    rmdir(f->dir);
    free(f);
    return 0;
}

#define FX_TESTS(fn)                                                        \
    cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown,           \
                                             (void *)&luks2_luks1),         \
    cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown,           \
                                             (void *)&luks1_luks2),         \
    cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown,           \
                                             (void *)&luks2_512)

/* The passphrase of the volume whose header format k of o is. */
static const char *pass_of(struct fx *f, struct vol *o, unsigned k)
{
    const char *name = cv_chain_format_volume(o->c, k);

    if (k == 0)
        return strcmp(o->path, f->base) == 0 ? BASE_PASS : f->clone_pass;
    if (strcmp(name, "base") == 0)
        return BASE_PASS;
    fail_msg("format %u is of volume \"%s\"", k, name);
    return NULL;
}

static void vol_open(struct fx *f, const char *path, const char *snapshot,
                     unsigned flags, struct vol *o)
{
    struct cv_volume_key keys[CV_CHAIN_MAX_FORMATS];
    unsigned k;

    memset(o, 0, sizeof *o);
    o->path = path;
    o->snapshot = snapshot;
    o->flags = flags;
    check_ok(cv_chain_open(path, snapshot, snapshot ? CV_CHAIN_READONLY : 0,
                           &o->c), "chain open");
    o->nkeys = cv_chain_formats(o->c);
    for (k = 0; k < o->nkeys; k++) {
        struct cv_luks *l = NULL;
        const char *pass = pass_of(f, o, k);

        check_ok(cv_luks_load(cv_chain_format_header(o->c, k), &l), "load");
        check_ok(cv_luks_info(l, &keys[k].info), "info");
        check_ok(cv_luks_unlock(l, pass, strlen(pass), &o->key[k],
                                &o->keylen[k]), "unlock");
        cv_luks_free(l);
        keys[k].key = o->key[k];
        keys[k].keylen = o->keylen[k];
    }
    check_ok(cv_volume_open_chain(o->c, keys, o->nkeys, NULL,
                                  snapshot ? CV_VOLUME_READONLY : flags,
                                  &o->v), "open the volume");
}

static void vol_close(struct vol *o)
{
    unsigned k;

    cv_volume_close(o->v);
    cv_chain_close(o->c);
    for (k = 0; k < o->nkeys; k++)
        cv_secmem_free(o->key[k], o->keylen[k]);
    memset(o, 0, sizeof *o);
}

static void vol_reopen(struct fx *f, struct vol *o)
{
    const char *path = o->path, *snapshot = o->snapshot;
    unsigned flags = o->flags;

    vol_close(o);
    vol_open(f, path, snapshot, flags, o);
}

static void assert_vol_is(struct vol *o, const unsigned char *shadow,
                          const char *what)
{
    unsigned char *now = malloc(VOL_SIZE);
    uint64_t i;

    assert_non_null(now);
    check_ok(cv_volume_read(o->v, now, VOL_SIZE, 0), "read the volume");
    for (i = 0; i < VOL_SIZE && now[i] == shadow[i]; i++)
        ;
    free(now);
    if (i < VOL_SIZE)
        fail_msg("%s: the volume differs at byte %llu (block %llu)", what,
                 (unsigned long long)i, (unsigned long long)(i / BLK));
}

/* Bytes of [off, off+len) (volume offsets) that layer id holds. */
static uint64_t layer_holds(struct vol *o, unsigned id, uint64_t off,
                            uint64_t len)
{
    uint64_t held = 0, run = 0, end = off + len;
    int r;

    while (off < end) {
        r = cv_chain_layer_has(o->c, id, DATA_OFFSET + off, end - off, &run);
        check_ok(r, "layer_has");
        assert_true(run > 0);
        if (r)
            held += run;
        off += run;
    }
    return held;
}

static unsigned head_id(struct vol *o)
{
    struct cv_chain_layer_info *l = NULL;
    size_t n = 0, i;
    unsigned id = 0;

    check_ok(cv_chain_layers(o->c, &l, &n), "layers");
    for (i = 0; i < n; i++)
        if (l[i].head)
            id = l[i].id;
    free(l);
    assert_int_not_equal(id, 0);
    return id;
}

/* The file number of the base's layer that the clone reads first: its
 * snapshot s1's, as the base's own chain names it (in the clone's chain a
 * parent's layer has an id of its own, CV_CHAIN_PARENT_ID and up). */
static unsigned first_parent_layer(struct vol *o, const char *base)
{
    struct cv_chain_layer_info *l = NULL;
    struct cv_chain *c = NULL;
    unsigned id = 0, above = 0;
    size_t n = 0;

    check_ok(cv_chain_layers(o->c, &l, &n), "layers");
    assert_true(n > 0 && !l[0].own);
    assert_true(l[0].id >= CV_CHAIN_PARENT_ID);
    free(l);
    check_ok(cv_chain_open(base, "s1", CV_CHAIN_READONLY, &c), "open base");
    check_ok(cv_chain_snapshot_layer(c, "s1", &id, &above), "s1's layer");
    cv_chain_close(c);
    return id;
}

/* Block b of the layer file id in chain directory dir, raw. */
static void layer_block(const char *dir, unsigned id, uint64_t b,
                        unsigned char *raw)
{
    char path[PATH_MAX + 32];
    int fd;

    snprintf(path, sizeof path, "%s/layer-%06u", dir, id);
    fd = open(path, O_RDONLY);
    if (fd < 0)
        fail_msg("%s: %s", path, strerror(errno));
    assert_int_equal(pread(fd, raw, BLK, (off_t)(DATA_OFFSET + b * BLK)),
                     BLK);
    close(fd);
}

/* Decrypts block b of layer id with OpenSSL, sector by sector (the IV
 * counts 512-byte units from the data start); it must (match 1) or must
 * not (match 0) give want. */
static void layer_block_decrypts(const char *dir, unsigned id, uint64_t b,
                                 const unsigned char *key, size_t keylen,
                                 unsigned ss, const unsigned char *want,
                                 int match, const char *what)
{
    const EVP_CIPHER *cipher = keylen == 64 ? EVP_aes_256_xts() :
                                              EVP_aes_128_xts();
    unsigned char raw[BLK], plain[BLK], iv[16];
    unsigned s, i;
    int outl = 0;

    layer_block(dir, id, b, raw);
    for (s = 0; s < BLK / ss; s++) {
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        uint64_t iv512 = (b * BLK + (uint64_t)s * ss) / 512;

        assert_non_null(ctx);
        memset(iv, 0, sizeof iv);
        for (i = 0; i < 8; i++)
            iv[i] = (unsigned char)(iv512 >> (8 * i));
        assert_int_equal(EVP_DecryptInit_ex(ctx, cipher, NULL, key, iv), 1);
        assert_int_equal(EVP_DecryptUpdate(ctx, plain + s * ss, &outl,
                                           raw + s * ss, (int)ss), 1);
        EVP_CIPHER_CTX_free(ctx);
    }
    if (match && memcmp(plain, want, BLK) != 0)
        fail_msg("%s: block %llu of layer %u does not decrypt with the key "
                 "(%u-byte sectors) to what the volume reads", what,
                 (unsigned long long)b, id, ss);
    if (!match && memcmp(plain, want, BLK) == 0)
        fail_msg("%s: block %llu of layer %u decrypts with the wrong key",
                 what, (unsigned long long)b, id);
    assert_memory_not_equal(raw, want, BLK);
}

/* The same with the project's cipher. */
static void xts_decrypts(const char *dir, unsigned id, uint64_t b,
                         const unsigned char *key, size_t keylen, unsigned ss,
                         const unsigned char *want)
{
    unsigned char raw[BLK];
    struct cv_xts *x = NULL;

    layer_block(dir, id, b, raw);
    check_ok(cv_xts_new(key, keylen, ss, NULL, &x), "xts");
    check_ok(cv_xts_decrypt(x, raw, raw, BLK, b * BLK / 512), "decrypt");
    cv_xts_free(x);
    if (memcmp(raw, want, BLK) != 0)
        fail_msg("block %llu of layer %u: cv_xts does not decrypt it to what "
                 "the volume reads", (unsigned long long)b, id);
}

/* No plaintext in the layer file. */
static void assert_file_lacks(const char *dir, unsigned id,
                              const unsigned char *needle, size_t len)
{
    char path[PATH_MAX + 32];
    unsigned char *buf;
    struct stat st;
    int fd;

    snprintf(path, sizeof path, "%s/layer-%06u", dir, id);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    buf = malloc((size_t)st.st_size);
    assert_non_null(buf);
    assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    if (memmem(buf, (size_t)st.st_size, needle, len))
        fail_msg("%s holds plaintext", path);
    free(buf);
}

/* The base's data in s1 (a marker block among random ones), then more
 * writes to the base's head that the clone must not see. */
static void base_with_snapshot(struct fx *f, unsigned char *shadow)
{
    unsigned char *later = malloc(VOL_SIZE);
    struct vol o;

    assert_non_null(later);
    vol_open(f, f->base, NULL, 0, &o);
    fill_random(shadow, VOL_SIZE);
    fill_marker(shadow + MARK_BLOCK * BLK, BLK);
    memset(shadow + HOLE_BLOCK * BLK, 0, BLK);
    check_ok(cv_volume_write(o.v, shadow, HOLE_BLOCK * BLK, 0, 0), "fill");
    check_ok(cv_volume_write(o.v, shadow + (HOLE_BLOCK + 1) * BLK,
                             VOL_SIZE - (HOLE_BLOCK + 1) * BLK,
                             (HOLE_BLOCK + 1) * BLK, 0), "fill");
    check_ok(cv_chain_snapshot(o.c, "s1", 1), "snapshot");
    fill_random(later, VOL_SIZE);
    check_ok(cv_volume_write(o.v, later, VOL_SIZE, 0, 0), "after s1");
    vol_close(&o);
    free(later);
}

/* Extents as a list. */
struct extents {
    uint64_t len[64];
    unsigned flags[64];
    size_t n;
};

static int add_extent(void *arg, uint64_t len, unsigned flags)
{
    struct extents *e = arg;

    if (e->n == 64)
        return -E2BIG;
    e->len[e->n] = len;
    e->flags[e->n++] = flags;
    return 0;
}

static void collect_extents(struct vol *o, uint64_t off, uint64_t len,
                            struct extents *e)
{
    e->n = 0;
    check_ok(cv_volume_extents(o->v, off, len, add_extent, e), "extents");
}

static void expect_extent(const struct extents *e, size_t i, uint64_t len,
                          unsigned flags)
{
    if (i >= e->n || e->len[i] != len || e->flags[i] != flags)
        fail_msg("extent %zu: %llu bytes, flags %u; want %llu bytes, flags "
                 "%u", i, i < e->n ? (unsigned long long)e->len[i] : 0,
                 i < e->n ? e->flags[i] : 0, (unsigned long long)len, flags);
}

#endif

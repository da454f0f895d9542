/* Transforms on the way into and out of a store (store/backend.h,
 * cv_backend_pwrite_xform / _pread_xform; chain.h, cv_chain_*_xform):
 * the memory store runs them in its own memory (no copy), every other
 * store through a buffer, and the bytes are the same either way.  Then
 * the volume layer on both: the same writes (aligned, unaligned, across
 * blocks, LUKS2 and LUKS1, one thread or the pool) leave the same
 * ciphertext in a memory store as in one that only copies, and read
 * back the same. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/workers.h"
#include "image/volume.h"
#include "luks/luks.h"
#include "store/backend.h"

#define KiB 1024ull
#define MiB (1024 * KiB)

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void fill(void *buf, size_t len)
{
    unsigned char *p = buf;

    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(rnd() >> 33);
}

static void check_ok(int r, const char *what)
{
    if (r < 0)
        fail_msg("%s: %d (%s)", what, r, cv_last_error());
}

/* ---- a store that only copies: no xform ops ---- */
struct copying {
    struct cv_backend base;
    struct cv_backend *inner;
};

static struct cv_backend *inner(struct cv_backend *b)
{
    return ((struct copying *)b)->inner;
}

static int cp_pread(struct cv_backend *b, void *buf, size_t len, uint64_t off)
{
    return cv_backend_pread(inner(b), buf, len, off);
}

static int cp_pwrite(struct cv_backend *b, const void *buf, size_t len,
                     uint64_t off, unsigned flags)
{
    return cv_backend_pwrite(inner(b), buf, len, off, flags);
}

static int cp_flush(struct cv_backend *b)
{
    return cv_backend_flush(inner(b));
}

static int cp_discard(struct cv_backend *b, uint64_t off, uint64_t len)
{
    return cv_backend_discard(inner(b), off, len);
}

static int cp_size(struct cv_backend *b, uint64_t *size)
{
    return cv_backend_size(inner(b), size);
}

static const struct cv_backend_ops copying_ops = {
    .kind = "copying", .pread = cp_pread, .pwrite = cp_pwrite,
    .flush = cp_flush, .discard = cp_discard, .get_size = cp_size,
};

/* ---- a transform: XOR with a byte that depends on the position ---- */
struct xor_arg {
    void *last_dst;
    const void *last_src;
    int fail;
};

static int xor_xf(void *arg, void *dst, const void *src, size_t n, size_t pos)
{
    struct xor_arg *x = arg;
    unsigned char *d = dst;
    const unsigned char *s = src;

    x->last_dst = dst;
    x->last_src = src;
    if (x->fail)
        return cv_error(-EILSEQ, "the transform failed on purpose");
    for (size_t i = 0; i < n; i++)
        d[i] = s[i] ^ (unsigned char)(0x5a + (pos + i) / 512);
    return 0;
}

static void xor_expect(unsigned char *out, const unsigned char *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] ^ (unsigned char)(0x5a + i / 512);
}

static void backend_roundtrip(struct cv_backend *b, int direct)
{
    size_t len = 64 * KiB;
    unsigned char *in = malloc(len), *copy = malloc(len), *want = malloc(len),
                  *got = malloc(len), *again = malloc(len);
    struct xor_arg x = { 0 };

    assert_true(in && copy && want && got && again);
    fill(in, len);
    memcpy(copy, in, len);
    xor_expect(want, in, len);
    check_ok(cv_backend_pwrite_xform(b, in, len, 4096, 0, xor_xf, &x),
             "pwrite_xform");
    if (memcmp(in, copy, len) != 0)
        fail_msg("%s: pwrite_xform changed the caller's buffer",
                 b->ops->kind);
    check_ok(cv_backend_pread(b, got, len, 4096), "pread");
    if (memcmp(got, want, len) != 0)
        fail_msg("%s: the store does not hold what the transform made",
                 b->ops->kind);
    /* Where the transform wrote: the store's own memory (a later write
     * shows there), or a buffer of its own that the store copied. */
    fill(again, len);
    check_ok(cv_backend_pwrite(b, again, len, 4096, 0), "pwrite");
    if (direct && memcmp(x.last_dst, again, len) != 0)
        fail_msg("%s: the transform did not write into the store's memory",
                 b->ops->kind);
    if (!direct && x.last_dst == in)
        fail_msg("%s: the transform wrote into the caller's buffer",
                 b->ops->kind);

    /* Read back: xor is its own inverse. */
    check_ok(cv_backend_pread_xform(b, got, len, 4096, xor_xf, &x),
             "pread_xform");
    xor_expect(want, again, len);
    if (memcmp(got, want, len) != 0)
        fail_msg("%s: pread_xform did not give the transform of what the "
                 "store holds", b->ops->kind);
    if (x.last_dst != got)
        fail_msg("%s: pread_xform's output went elsewhere than the "
                 "caller's buffer", b->ops->kind);
    if (direct == (x.last_src == got))
        fail_msg("%s: pread_xform read %s", b->ops->kind, direct ?
                 "a copy, not the store's memory" : "not a copy");

    /* A failing transform fails the call with its message and the
     * store's name. */
    x.fail = 1;
    assert_int_equal(cv_backend_pwrite_xform(b, in, len, 4096, 0, xor_xf, &x),
                     -EILSEQ);
    if (!strstr(cv_last_error(), "the transform failed on purpose") ||
        strncmp(cv_last_error(), b->name, strlen(b->name)))
        fail_msg("%s: message \"%s\"", b->ops->kind, cv_last_error());
    assert_int_equal(cv_backend_pread_xform(b, got, len, 4096, xor_xf, &x),
                     -EILSEQ);
    if (!strstr(cv_last_error(), "the transform failed on purpose") ||
        strncmp(cv_last_error(), b->name, strlen(b->name)))
        fail_msg("%s: message \"%s\"", b->ops->kind, cv_last_error());
    /* Out of range, as pwrite and pread say it. */
    x.fail = 0;
    assert_int_equal(cv_backend_pwrite_xform(b, in, len, MiB, 0, xor_xf, &x),
                     -ENOSPC);
    assert_int_equal(cv_backend_pread_xform(b, got, len, MiB, xor_xf, &x),
                     -EIO);
    free(in);
    free(copy);
    free(want);
    free(got);
    free(again);
}

static void test_backend_xform(void **state)
{
    struct cv_backend *m;
    struct copying c = { .base = { .ops = &copying_ops,
                                   .name = (char *)"copying" } };

    (void)state;
    check_ok(cv_backend_mem_new("xf-mem", MiB, &m), "mem store");
    assert_non_null(m->ops->pwrite_xform);
    backend_roundtrip(m, 1);
    c.inner = m;
    backend_roundtrip(&c.base, 0);
    cv_backend_close(m);
}

/* ---- the volume layer on both kinds of store ---- */
#define VOL_STORE (20 * MiB)

static const char PASS[] = "xform test passphrase";

struct pair {
    struct cv_backend *direct, *copied_inner;
    struct copying copied;
    struct cv_volume *vd, *vc;
};

static void pair_open(struct pair *p, int version, struct cv_workers *w)
{
    struct cv_format_params fp = {
        .luks_version = version, .key_bits = 256,
        .pbkdf = { .type = "pbkdf2", .iterations = 1000 } };
    unsigned char *raw = malloc(VOL_STORE);

    assert_non_null(raw);
    check_ok(cv_backend_mem_new("xf-direct", VOL_STORE, &p->direct), "store");
    check_ok(cv_luks_format(p->direct, &fp, PASS, strlen(PASS)), "format");
    /* The same header, so the same key: the same ciphertext is due. */
    check_ok(cv_backend_pread(p->direct, raw, VOL_STORE, 0), "store read");
    check_ok(cv_backend_mem_new("xf-inner", VOL_STORE, &p->copied_inner),
             "store");
    check_ok(cv_backend_pwrite(p->copied_inner, raw, VOL_STORE, 0, 0),
             "store write");
    free(raw);
    p->copied = (struct copying){ .base = { .ops = &copying_ops,
                                            .name = (char *)"xf-copied" },
                                  .inner = p->copied_inner };
    check_ok(cv_volume_open(p->direct, PASS, strlen(PASS), w, 0, &p->vd),
             "open direct");
    check_ok(cv_volume_open(&p->copied.base, PASS, strlen(PASS), w, 0,
                            &p->vc), "open copied");
}

static void pair_close(struct pair *p)
{
    cv_volume_close(p->vd);
    cv_volume_close(p->vc);
    cv_backend_close(p->direct);
    cv_backend_close(p->copied_inner);
}

static void assert_same_stores(struct pair *p, const char *what)
{
    unsigned char *a = malloc(VOL_STORE), *b = malloc(VOL_STORE);
    size_t i;

    assert_true(a && b);
    check_ok(cv_backend_pread(p->direct, a, VOL_STORE, 0), "read direct");
    check_ok(cv_backend_pread(p->copied_inner, b, VOL_STORE, 0),
             "read copied");
    for (i = 0; i < VOL_STORE && a[i] == b[i]; i++)
        ;
    if (i < VOL_STORE)
        fail_msg("%s: the memory store and the copying one differ from raw "
                 "byte %zu", what, i);
    free(a);
    free(b);
}

static void same_bytes(int version, struct cv_workers *w)
{
    struct pair p;
    size_t maxlen = 2 * MiB;
    unsigned char *buf = malloc(maxlen), *a = malloc(maxlen),
                  *b = malloc(maxlen);
    uint64_t size;
    unsigned i, ss;
    char what[96];

    assert_true(buf && a && b);
    pair_open(&p, version, w);
    size = cv_volume_size(p.vd);
    ss = cv_volume_sector_size(p.vd);
    for (i = 0; i < 120; i++) {
        /* Aligned and large (the pool splits those), or any offset. */
        size_t len = i % 3 == 0 ? (size_t)(1 + rnd() % (maxlen / ss)) * ss
                                : (size_t)(1 + rnd() % (70 * KiB));
        uint64_t off = i % 3 == 0 ? rnd() % ((size - len) / ss) * ss
                                  : rnd() % (size - len);

        fill(buf, len);
        snprintf(what, sizeof what, "LUKS%d, %s, write %u of %zu bytes at "
                 "%llu", version, w ? "pool" : "one thread", i, len,
                 (unsigned long long)off);
        check_ok(cv_volume_write(p.vd, buf, len, off, 0), what);
        check_ok(cv_volume_write(p.vc, buf, len, off, 0), what);
        check_ok(cv_volume_read(p.vd, a, len, off), what);
        check_ok(cv_volume_read(p.vc, b, len, off), what);
        if (memcmp(a, buf, len) || memcmp(b, buf, len))
            fail_msg("%s: does not read back (memory store %s, copying "
                     "store %s)", what, memcmp(a, buf, len) ? "wrong" : "ok",
                     memcmp(b, buf, len) ? "wrong" : "ok");
        if (i % 20 == 19)
            assert_same_stores(&p, what);
    }
    assert_same_stores(&p, "at the end");
    pair_close(&p);
    free(buf);
    free(a);
    free(b);
}

static void test_volume_same_bytes_luks2(void **state)
{
    (void)state;
    same_bytes(2, NULL);
}

static void test_volume_same_bytes_luks1(void **state)
{
    (void)state;
    same_bytes(1, NULL);
}

static void test_volume_same_bytes_pool(void **state)
{
    struct cv_workers *w;

    (void)state;
    check_ok(cv_workers_new(2, &w), "workers");
    same_bytes(2, w);
    same_bytes(1, w);
    cv_workers_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_xform),
        cmocka_unit_test(test_volume_same_bytes_luks2),
        cmocka_unit_test(test_volume_same_bytes_luks1),
        cmocka_unit_test(test_volume_same_bytes_pool),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

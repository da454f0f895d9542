/* The layout of a new LUKS2 header (lib/luks/luks.c): a keyslots area
 * sized for a number of keyslots (cv_format_params.keyslots), what happens
 * when it is full, the default area kept, and the format of a new store
 * (cv_format_params.new_store): no flush, only what is not zero written,
 * the header usable through the handle cv_luks_format_open returns.  That
 * cryptsetup opens such headers is tests/volume-keyslots.sh's part. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/backend.h"
#include "core/error.h"
#include "core/secmem.h"
#include "luks/kek-token.h"
#include "luks/luks.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define STORE (20 * MiB)

static const char *const PASS[] = { "p0", "p1", "p2", "p3", "p4" };

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

static void params(struct cv_format_params *p, unsigned aes_bits,
                   unsigned keyslots)
{
    memset(p, 0, sizeof *p);
    p->luks_version = 2;
    p->key_bits = aes_bits;
    p->keyslots = keyslots;
    p->pbkdf.type = "pbkdf2";
    p->pbkdf.iterations = 1000;
}

static const struct cv_pbkdf FAST = { .type = "pbkdf2", .iterations = 1000 };

static void opens(struct cv_backend *b, const char *pass)
{
    struct cv_luks *l = NULL;
    unsigned char *key = NULL;
    size_t len = 0;

    check_ok(cv_luks_load(b, &l), "load");
    check_ok(cv_luks_unlock(l, pass, strlen(pass), &key, &len), pass);
    cv_secmem_free(key, len);
    cv_luks_free(l);
}

/* ---- the keyslots area ------------------------------------------------- */

/* Four keyslots of an AES-256 (512-bit XTS) key: 4 x 252 KiB, data at
 * 2 MiB; of AES-128: 4 x 128 KiB, data at 1 MiB.  All four fit, a fifth
 * is refused, saying why, with the store unchanged. */
static void area_of(unsigned aes_bits, uint64_t slot, uint64_t data)
{
    struct cv_format_params p;
    struct cv_backend *b = NULL;
    struct cv_luks *l = NULL;
    struct cv_luks_info info;
    unsigned char *before, *after;
    int i, r;

    assert_int_equal(cv_luks_keyslot_area_size(aes_bits / 4), slot);
    params(&p, aes_bits, 4);
    check_ok(cv_backend_mem_new("mem-small-area", STORE, &b), "mem store");
    check_ok(cv_luks_format(b, &p, PASS[0], 2), "format");
    check_ok(cv_luks_load(b, &l), "load");
    check_ok(cv_luks_info(l, &info), "info");
    assert_int_equal(info.keyslots_size, 4 * slot);
    assert_int_equal(info.max_slots, 4);
    assert_int_equal(info.data_offset, data);
    for (i = 1; i < 4; i++)
        check_ok(cv_luks_add_key(l, PASS[0], 2, PASS[i], 2, &FAST),
                 "add a keyslot");
    cv_luks_free(l);

    before = malloc(data);
    after = malloc(data);
    assert_non_null(before);
    assert_non_null(after);
    check_ok(cv_backend_pread(b, before, data, 0), "read the header");
    check_ok(cv_luks_load(b, &l), "load");
    cv_clear_error();
    r = cv_luks_add_key(l, PASS[0], 2, PASS[4], 2, &FAST);
    assert_int_equal(r, -ENOSPC);
    assert_message_has("mem-small-area");
    assert_message_has("no room left in the keyslots area");
    assert_message_has("4 keyslots of this key size, 4 in use");
    cv_luks_free(l);
    check_ok(cv_backend_pread(b, after, data, 0), "read the header");
    assert_memory_equal(before, after, data);
    for (i = 0; i < 4; i++)
        opens(b, PASS[i]);
    free(before);
    free(after);
    cv_backend_close(b);
}

static void test_area_aes256(void **state)
{
    (void)state;
    area_of(256, 258048, 2 * MiB);
}

static void test_area_aes128(void **state)
{
    (void)state;
    area_of(128, 131072, 1 * MiB);
}

/* Without keyslots, libcryptsetup's default stands: 16 MiB less the two
 * 16 KiB header copies, data at 16 MiB (images made before, and by
 * cryptsetup). */
static void test_default_area(void **state)
{
    struct cv_format_params p;
    struct cv_backend *b = NULL;
    struct cv_luks *l = NULL;
    struct cv_luks_info info;

    (void)state;
    params(&p, 256, 0);
    check_ok(cv_backend_mem_new("mem-default", STORE, &b), "mem store");
    check_ok(cv_luks_format(b, &p, PASS[0], 2), "format");
    check_ok(cv_luks_load(b, &l), "load");
    check_ok(cv_luks_info(l, &info), "info");
    assert_int_equal(info.keyslots_size, 16 * MiB - 32 * KiB);
    assert_int_equal(info.data_offset, 16 * MiB);
    assert_int_equal(info.max_slots, 32);
    cv_luks_free(l);
    cv_backend_close(b);
}

static void test_area_refused(void **state)
{
    struct cv_format_params p;
    struct cv_backend *b = NULL;

    (void)state;
    check_ok(cv_backend_mem_new("mem-refused", STORE, &b), "mem store");
    params(&p, 256, 4);
    p.luks_version = 1;
    cv_clear_error();
    assert_int_equal(cv_luks_format(b, &p, PASS[0], 2), -EINVAL);
    assert_message_has("LUKS1 has a fixed layout");
    params(&p, 256, 33);
    cv_clear_error();
    assert_int_equal(cv_luks_format(b, &p, PASS[0], 2), -EINVAL);
    assert_message_has("1 to 32");
    assert_int_equal(cv_luks_probe(b), 0);      /* nothing written */
    cv_backend_close(b);
}

/* ---- a new store ------------------------------------------------------- */

/* Forwards to a memory store, counting flushes and the bytes written. */
struct counting {
    struct cv_backend base;
    struct cv_backend *inner;
    unsigned flushes;
    uint64_t written;
};

static struct cv_backend *inner(struct cv_backend *b)
{
    return ((struct counting *)b)->inner;
}

static int cnt_pread(struct cv_backend *b, void *buf, size_t len, uint64_t off)
{
    return cv_backend_pread(inner(b), buf, len, off);
}

static int cnt_pwrite(struct cv_backend *b, const void *buf, size_t len,
                      uint64_t off, unsigned flags)
{
    ((struct counting *)b)->written += len;
    return cv_backend_pwrite(inner(b), buf, len, off, flags);
}

static int cnt_flush(struct cv_backend *b)
{
    ((struct counting *)b)->flushes++;
    return cv_backend_flush(inner(b));
}

static int cnt_size(struct cv_backend *b, uint64_t *size)
{
    return cv_backend_size(inner(b), size);
}

static const struct cv_backend_ops counting_ops = {
    .kind = "counting", .pread = cnt_pread, .pwrite = cnt_pwrite,
    .flush = cnt_flush, .get_size = cnt_size,
};

static void counting_new(struct counting *c, const char *name)
{
    memset(c, 0, sizeof *c);
    c->base.ops = &counting_ops;
    c->base.name = (char *)name;
    check_ok(cv_backend_mem_new(name, STORE, &c->inner), "mem store");
}

/* With new_store, the format and the changes through its handle (a
 * second keyslot, a token) flush nothing and write the keyslots area
 * once, not the zeros around it; once the caller has flushed, the store
 * holds a header both passphrases and the token open.  Without it, each
 * change is flushed, keyslot material before the header. */
static void test_new_store(void **state)
{
    static const unsigned char kek[32] = { 1, 2, 3 };
    struct cv_format_params p;
    struct counting c;
    struct cv_luks *l = NULL;
    struct cv_luks_info info;
    struct cv_kek_token t;
    uint64_t most;

    (void)state;
    counting_new(&c, "mem-new");
    params(&p, 256, 4);
    p.new_store = 1;
    check_ok(cv_luks_format_open(&c.base, &p, PASS[0], 2, &l), "format");
    check_ok(cv_luks_info(l, &info), "info");
    /* The keyslots area (random) and the two header copies, no more. */
    most = info.keyslots_size + 2 * 16 * KiB;
    if (c.written > most)
        fail_msg("a new store got %llu bytes written, at most %llu expected",
                 (unsigned long long)c.written, (unsigned long long)most);
    assert_true(cv_luks_keyslot_seconds(l) > 0);
    check_ok(cv_kek_enroll(l, PASS[0], 2, kek, 1, NULL), "enroll");
    assert_int_equal(c.flushes, 0);
    cv_luks_free(l);
    check_ok(cv_backend_flush(&c.base), "flush");
    opens(&c.base, PASS[0]);
    check_ok(cv_luks_load_metadata(&c.base, &l), "load metadata");
    check_ok(cv_kek_token_get(l, &t), "token");
    cv_kek_token_free(&t);
    cv_luks_free(l);
    cv_backend_close(c.inner);

    counting_new(&c, "mem-old");
    p.new_store = 0;
    check_ok(cv_luks_format_open(&c.base, &p, PASS[0], 2, &l), "format");
    assert_int_equal(c.flushes, 2);
    check_ok(cv_luks_add_key(l, PASS[0], 2, PASS[1], 2, &FAST), "add");
    assert_int_equal(c.flushes, 4);
    cv_luks_free(l);
    opens(&c.base, PASS[1]);
    cv_backend_close(c.inner);
}

/* What a keyslot's key derivation is, read back for the log. */
static void test_keyslot_pbkdf(void **state)
{
    static const struct cv_pbkdf slow = { .type = "argon2id",
                                          .iterations = 4,
                                          .memory_kib = 8192 };
    struct cv_format_params p;
    struct cv_backend *b = NULL;
    struct cv_luks *l = NULL;
    struct cv_pbkdf got;
    int slot;

    (void)state;
    params(&p, 256, 4);
    check_ok(cv_backend_mem_new("mem-kdf", STORE, &b), "mem store");
    check_ok(cv_luks_format_open(b, &p, PASS[0], 2, &l), "format");
    check_ok(cv_luks_keyslot_pbkdf(l, 0, &got), "keyslot 0");
    assert_string_equal(got.type, "pbkdf2");
    assert_int_equal(got.iterations, 1000);
    slot = cv_luks_add_key(l, PASS[0], 2, PASS[1], 2, &slow);
    check_ok(slot, "add");
    check_ok(cv_luks_keyslot_pbkdf(l, slot, &got), "new keyslot");
    assert_string_equal(got.type, "argon2id");
    assert_int_equal(got.iterations, 4);
    assert_int_equal(got.memory_kib, 8192);
    assert_true(cv_luks_keyslot_seconds(l) > 0);
    cv_clear_error();
    assert_true(cv_luks_keyslot_pbkdf(l, 3, &got) < 0);
    assert_message_has("keyslot 3");
    cv_luks_free(l);
    cv_backend_close(b);
}

/* ---- a header made to end at a given data offset ----------------------- */

/* The header bytes [0, data) of b written to a file, and cryptsetup's own
 * luksDump of it: an independent reading of where the data starts. */
static void dump_says(struct cv_backend *b, uint64_t data, const char *want)
{
    char path[] = "/tmp/test-luks-layout-XXXXXX", cmd[256], line[256];
    unsigned char *buf = malloc(data);
    int fd = mkstemp(path), seen = 0;
    FILE *f;

    assert_non_null(buf);
    assert_true(fd >= 0);
    check_ok(cv_backend_pread(b, buf, data, 0), "read the header");
    assert_int_equal(write(fd, buf, data), (ssize_t)data);
    /* One more sector, so that the data area is not empty. */
    assert_int_equal(ftruncate(fd, (off_t)(data + 4096)), 0);
    close(fd);
    snprintf(cmd, sizeof cmd, "cryptsetup luksDump %s 2>&1", path);
    f = popen(cmd, "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f))
        seen |= strstr(line, want) != NULL;
    pclose(f);
    unlink(path);
    free(buf);
    if (!seen)
        fail_msg("cryptsetup luksDump does not say \"%s\"", want);
}

static void format_at(struct cv_backend *b, int version, unsigned aes_bits,
                      uint64_t data_offset)
{
    struct cv_format_params p;

    params(&p, aes_bits, 0);
    p.luks_version = version;
    p.data_offset = data_offset;
    check_ok(cv_luks_format(b, &p, PASS[0], 2), "format at a data offset");
}

static void info_of(struct cv_backend *b, struct cv_luks_info *info)
{
    struct cv_luks *l = NULL;

    check_ok(cv_luks_load(b, &l), "load");
    check_ok(cv_luks_info(l, info), "info");
    cv_luks_free(l);
}

/* A format that cannot fit before the data offset touches nothing and
 * says, in bytes, what it needs and where the data must start. */
static void refused_at(int version, unsigned aes_bits, uint64_t data_offset,
                       int code, const char *msg)
{
    struct cv_format_params p;
    struct cv_backend *b = NULL;
    unsigned char *zero = calloc(1, 4 * MiB), *now = malloc(4 * MiB);

    assert_true(zero && now);
    params(&p, aes_bits, 0);
    p.luks_version = version;
    p.data_offset = data_offset;
    check_ok(cv_backend_mem_new("mem-offset", 4 * MiB, &b), "mem store");
    cv_clear_error();
    assert_int_equal(cv_luks_format(b, &p, PASS[0], 2), code);
    assert_message_has("mem-offset");
    assert_message_has(msg);
    check_ok(cv_backend_pread(b, now, 4 * MiB, 0), "read the store");
    assert_memory_equal(now, zero, 4 * MiB);
    cv_backend_close(b);
    free(zero);
    free(now);
}

/* A LUKS2 parent whose data starts at 2 MiB (4 AES-256 keyslots) and a
 * LUKS1 AES-256 clone header made to fit it: its data starts there too,
 * and cryptsetup reads it so; the same at a default LUKS2 header's 16 MiB.
 * At 1 MiB it cannot fit. */
static void test_luks1_at_luks2_offset(void **state)
{
    struct cv_format_params p;
    struct cv_backend *parent = NULL, *b = NULL;
    struct cv_luks_info pinfo, info;

    (void)state;
    params(&p, 256, 4);
    check_ok(cv_backend_mem_new("mem-parent", STORE, &parent), "mem store");
    check_ok(cv_luks_format(parent, &p, PASS[0], 2), "format the parent");
    info_of(parent, &pinfo);
    assert_int_equal(pinfo.data_offset, 2 * MiB);

    check_ok(cv_backend_mem_new("mem-clone", STORE, &b), "mem store");
    format_at(b, 1, 256, pinfo.data_offset);
    info_of(b, &info);
    assert_int_equal(info.luks_version, 1);
    assert_int_equal(info.data_offset, pinfo.data_offset);
    assert_int_equal(info.effective_size, STORE - pinfo.data_offset);
    opens(b, PASS[0]);
    dump_says(b, info.data_offset, "Payload offset:\t4096");
    cv_backend_close(b);

    /* At a default LUKS2 parent's 16 MiB, which LUKS1 would not choose. */
    check_ok(cv_backend_mem_new("mem-clone", STORE, &b), "mem store");
    format_at(b, 1, 256, 16 * MiB);
    info_of(b, &info);
    assert_int_equal(info.data_offset, 16 * MiB);
    opens(b, PASS[0]);
    dump_says(b, info.data_offset, "Payload offset:\t32768");

    /* 4 KiB of header and 8 keyslots of 252 KiB. */
    refused_at(1, 256, MiB, -ENOSPC, "a LUKS1 header for AES-256 needs "
               "2068480 bytes; the data must start at 1048576");
    refused_at(1, 256, 2 * MiB + 512, -EINVAL, "not a multiple of 4096");
    cv_backend_close(parent);
    cv_backend_close(b);
}

/* A LUKS1 parent (data at 2 MiB, cryptsetup's default) and a LUKS2 clone
 * header made to fit it: the keyslots area fills the room (2 MiB less the
 * two 16 KiB header copies: 8 AES-256 keyslots), the data starts at 2 MiB,
 * and a second keyslot can be added.  Past 16 MiB the area stays at the
 * default; below one keyslot's room, it is refused. */
static void test_luks2_at_luks1_offset(void **state)
{
    struct cv_backend *parent = NULL, *b = NULL;
    struct cv_luks_info pinfo, info;
    struct cv_luks *l = NULL;

    (void)state;
    check_ok(cv_backend_mem_new("mem-parent", STORE, &parent), "mem store");
    format_at(parent, 1, 256, 0);
    info_of(parent, &pinfo);
    assert_int_equal(pinfo.data_offset, 2 * MiB);

    check_ok(cv_backend_mem_new("mem-clone", STORE, &b), "mem store");
    format_at(b, 2, 256, pinfo.data_offset);
    info_of(b, &info);
    assert_int_equal(info.luks_version, 2);
    assert_int_equal(info.data_offset, pinfo.data_offset);
    assert_int_equal(info.keyslots_size, 2 * MiB - 32 * KiB);
    assert_int_equal(info.max_slots, 8);
    assert_int_equal(info.effective_size, STORE - pinfo.data_offset);
    check_ok(cv_luks_load(b, &l), "load");
    check_ok(cv_luks_add_key(l, PASS[0], 2, PASS[1], 2, &FAST), "add a key");
    cv_luks_free(l);
    opens(b, PASS[0]);
    opens(b, PASS[1]);
    dump_says(b, info.data_offset, "offset: 2097152 [bytes]");
    cv_backend_close(b);

    check_ok(cv_backend_mem_new("mem-clone", STORE, &b), "mem store");
    format_at(b, 2, 128, 18 * MiB);
    info_of(b, &info);
    assert_int_equal(info.data_offset, 18 * MiB);
    assert_int_equal(info.keyslots_size, 16 * MiB - 32 * KiB);
    cv_backend_close(b);

    /* Two 16 KiB copies and one keyslot of 252 KiB. */
    refused_at(2, 256, 256 * KiB, -ENOSPC, "a LUKS2 header for AES-256 "
               "needs 290816 bytes; the data must start at 262144");
    cv_backend_close(parent);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_area_aes256),
        cmocka_unit_test(test_area_aes128),
        cmocka_unit_test(test_default_area),
        cmocka_unit_test(test_area_refused),
        cmocka_unit_test(test_new_store),
        cmocka_unit_test(test_keyslot_pbkdf),
        cmocka_unit_test(test_luks1_at_luks2_offset),
        cmocka_unit_test(test_luks2_at_luks1_offset),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

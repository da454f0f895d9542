/* The cryptvol-kek LUKS2 token on the in-memory backend: enroll, read,
 * unwrap, rewrap (header only, keyslots untouched), tokens that do not
 * belong to the volume or are malformed, metadata-only handles, LUKS1. */
#include <errno.h>
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
#include "luks/kek-token.h"
#include "luks/luks.h"
#include "crypto/seal.h"
#include "core/secmem.h"
#include "image/volume.h"

#define MiB (1024ull * 1024)
#define STORE_SIZE (17 * MiB)

static const char PASS[] = "correct horse battery staple";
#define PASSLEN (sizeof PASS - 1)

/* The KDF is not what these tests are about. */
static const struct cv_pbkdf fast = { .type = "pbkdf2", .iterations = 1000 };

static const unsigned char KEK1[CV_KEK_LEN] = "kek generation one, 32 bytes...";
static const unsigned char KEK2[CV_KEK_LEN] = "kek generation two, 32 bytes...";

struct fixture {
    struct cv_backend *b;
    struct cv_luks *l;
};

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

static void format(struct cv_backend *b, int version, const char *pass,
                   size_t passlen)
{
    struct cv_format_params p = {
        .luks_version = version, .key_bits = 256, .pbkdf = fast,
    };

    check_ok(cv_luks_format(b, &p, pass, passlen), "format");
}

static struct cv_backend *new_volume(const char *name, int version)
{
    struct cv_backend *b = NULL;

    check_ok(cv_backend_mem_new(name, STORE_SIZE, &b), "mem backend");
    format(b, version, PASS, PASSLEN);
    return b;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);

    assert_non_null(f);
    f->b = new_volume("vol-a", 2);
    check_ok(cv_luks_load(f->b, &f->l), "load");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    cv_luks_free(f->l);
    cv_backend_close(f->b);
    free(f);
    return 0;
}

static void reload(struct fixture *f, int metadata_only)
{
    cv_luks_free(f->l);
    f->l = NULL;
    check_ok(metadata_only ? cv_luks_load_metadata(f->b, &f->l)
                           : cv_luks_load(f->b, &f->l), "reload");
}

/* The whole raw store. */
static unsigned char *snapshot(struct cv_backend *b)
{
    unsigned char *p = malloc(STORE_SIZE);

    assert_non_null(p);
    check_ok(cv_backend_pread(b, p, STORE_SIZE, 0), "store read");
    return p;
}

/* Size of one LUKS2 header copy, from the binary header (big-endian). */
static uint64_t hdr_size(const unsigned char *store)
{
    uint64_t n = 0;
    int i;

    for (i = 0; i < 8; i++)
        n = n << 8 | store[8 + i];
    return n;
}

static void unwrap_ok(struct cv_luks *l, const unsigned char *kek,
                      struct cv_secret *pass)
{
    struct cv_kek_token t;

    check_ok(cv_kek_token_get(l, &t), "token get");
    check_ok(cv_kek_token_unwrap(&t, kek, cv_luks_uuid(l), pass), "unwrap");
    assert_int_equal(pass->len, CV_KEK_PASS_LEN);
    cv_kek_token_free(&t);
}

/* ------------------------------------------------------------------ */

static void enroll_get_unwrap(void **state)
{
    struct fixture *f = *state;
    unsigned char *k1 = NULL, *k2 = NULL;
    size_t l1 = 0, l2 = 0;
    struct cv_volume *v = NULL;
    struct cv_kek_token t;
    struct cv_secret pass;
    int slot;

    slot = cv_kek_enroll(f->l, PASS, PASSLEN, KEK1, 1, NULL);
    check_ok(slot, "enroll");
    assert_int_equal(slot, 1);
    /* It is on the store, not only in the handle. */
    reload(f, 0);
    check_ok(cv_kek_token_get(f->l, &t), "token get");
    assert_int_equal(t.token, 0);
    assert_int_equal(t.keyslot, slot);
    assert_int_equal(t.gen, 1);
    assert_int_equal(t.wrapped_len, CV_KEK_PASS_LEN + CV_SEAL_OVERHEAD);
    check_ok(cv_kek_token_unwrap(&t, KEK1, cv_luks_uuid(f->l), &pass),
             "unwrap");
    assert_int_equal(pass.len, CV_KEK_PASS_LEN);
    /* The unwrapped passphrase opens its keyslot, to the same volume key
     * as the user's passphrase. */
    assert_int_equal(cv_luks_unlock_keyslot(f->l, slot, pass.data, pass.len,
                                            &k1, &l1), slot);
    assert_int_equal(cv_luks_unlock(f->l, PASS, PASSLEN, &k2, &l2), 0);
    assert_int_equal(l1, l2);
    assert_memory_equal(k1, k2, l1);
    /* Keyslot 0 is the user's: the KEK passphrase does not open it. */
    assert_int_equal(cv_luks_unlock_keyslot(f->l, 0, pass.data, pass.len,
                                            &k1, &l1), -CV_EWRONGKEY);
    assert_message_has("keyslot 0");
    check_ok(cv_volume_open_keyslot(f->b, slot, pass.data, pass.len, NULL,
                                    CV_VOLUME_READONLY, &v), "open keyslot");
    cv_volume_close(v);
    assert_int_equal(cv_volume_open_keyslot(f->b, 0, pass.data, pass.len,
                                            NULL, 0, &v), -CV_EWRONGKEY);
    assert_int_equal(cv_luks_unlock_keyslot(f->l, 7, PASS, PASSLEN, &k1, &l1),
                     -ENOENT);
    assert_message_has("keyslot 7 is not in use");
    assert_int_equal(cv_luks_unlock_keyslot(f->l, 99, PASS, PASSLEN, &k1, &l1),
                     -EINVAL);
    /* A second token of the kind would never be read. */
    assert_int_equal(cv_kek_enroll(f->l, PASS, PASSLEN, KEK2, 2, NULL),
                     -EEXIST);
    cv_secmem_free(k1, l1);
    cv_secmem_free(k2, l2);
    cv_secret_free(&pass);
    cv_kek_token_free(&t);
}

static void wrong_kek(void **state)
{
    struct fixture *f = *state;
    struct cv_kek_token t;
    struct cv_secret pass;

    check_ok(cv_kek_enroll(f->l, PASS, PASSLEN, KEK1, 1, NULL), "enroll");
    check_ok(cv_kek_token_get(f->l, &t), "token get");
    assert_int_equal(cv_kek_token_unwrap(&t, KEK2, cv_luks_uuid(f->l), &pass),
                     -CV_EWRONGKEY);
    assert_null(pass.data);
    assert_message_has("KEK generation 1 does not unwrap");
    assert_int_equal(cv_kek_enroll(f->l, "wrong", 5, KEK1, 1, NULL),
                     -EEXIST);
    cv_kek_token_free(&t);
}

static void enroll_wrong_passphrase(void **state)
{
    struct fixture *f = *state;
    unsigned char *before = snapshot(f->b), *after;

    assert_int_equal(cv_kek_enroll(f->l, "wrong", 5, KEK1, 1, NULL),
                     -CV_EWRONGKEY);
    after = snapshot(f->b);
    assert_memory_equal(before, after, STORE_SIZE);
    free(before);
    free(after);
}

/* The token of volume A copied into the header of volume B does not
 * unwrap there: the UUID is the associated data. */
static void token_moved(void **state)
{
    struct fixture *f = *state;
    struct cv_backend *b2 = new_volume("vol-b", 2);
    struct cv_luks *l2 = NULL;
    struct cv_kek_token t, t2;
    struct cv_secret pass;
    char *json = NULL;

    check_ok(cv_kek_enroll(f->l, PASS, PASSLEN, KEK1, 1, NULL), "enroll");
    check_ok(cv_luks_load(b2, &l2), "load b");
    /* B needs a keyslot 1 for libcryptsetup to take a token naming it. */
    assert_int_equal(cv_luks_add_key(l2, PASS, PASSLEN, "x", 1, &fast), 1);
    assert_string_not_equal(cv_luks_uuid(f->l), cv_luks_uuid(l2));
    assert_int_equal(cv_luks_token_find(f->l, CV_KEK_TOKEN_TYPE, &json), 0);
    assert_int_equal(cv_luks_token_put(l2, CV_LUKS_NEW_TOKEN, json), 0);
    check_ok(cv_kek_token_get(l2, &t2), "token get b");
    assert_int_equal(cv_kek_token_unwrap(&t2, KEK1, cv_luks_uuid(l2), &pass),
                     -CV_EWRONGKEY);
    assert_message_has(cv_luks_uuid(l2));
    check_ok(cv_kek_token_get(f->l, &t), "token get a");
    assert_int_equal(cv_kek_token_unwrap(&t, KEK1, cv_luks_uuid(l2), &pass),
                     -CV_EWRONGKEY);
    check_ok(cv_kek_token_unwrap(&t, KEK1, cv_luks_uuid(f->l), &pass),
             "unwrap a");
    cv_secret_free(&pass);
    cv_kek_token_free(&t);
    cv_kek_token_free(&t2);
    free(json);
    cv_luks_free(l2);
    cv_backend_close(b2);
}

/* Rewrap through a metadata-only handle: the new KEK unwraps, the old
 * does not, the passphrase is the same, and only the two header copies
 * changed on the store. */
static void rewrap(void **state)
{
    struct fixture *f = *state;
    struct cv_secret p1, p2, p3;
    unsigned char *before, *after, *key = NULL;
    struct cv_kek_token t;
    size_t keylen = 0;
    uint64_t meta;
    int slot;

    slot = cv_kek_enroll(f->l, PASS, PASSLEN, KEK1, 1, NULL);
    check_ok(slot, "enroll");
    unwrap_ok(f->l, KEK1, &p1);
    before = snapshot(f->b);
    meta = hdr_size(before);
    assert_true(meta >= 16384 && meta <= 4 * MiB);

    reload(f, 1);
    check_ok(cv_kek_token_get(f->l, &t), "token get");
    /* A wrong old KEK changes nothing. */
    assert_int_equal(cv_kek_token_rewrap(f->l, &t, KEK2, KEK2, 2),
                     -CV_EWRONGKEY);
    assert_message_has("vol-a");
    after = snapshot(f->b);
    assert_memory_equal(before, after, STORE_SIZE);
    free(after);

    check_ok(cv_kek_token_rewrap(f->l, &t, KEK1, KEK2, 2), "rewrap");
    cv_kek_token_free(&t);
    after = snapshot(f->b);
    /* Keyslot areas and data: byte for byte the same. */
    assert_memory_equal(before + 2 * meta, after + 2 * meta,
                        STORE_SIZE - 2 * meta);
    assert_memory_not_equal(before, after, meta);
    assert_memory_not_equal(before + meta, after + meta, meta);

    reload(f, 0);
    check_ok(cv_kek_token_get(f->l, &t), "token get after rewrap");
    assert_int_equal(t.token, 0);
    assert_int_equal(t.keyslot, slot);
    assert_int_equal(t.gen, 2);
    assert_int_equal(cv_kek_token_unwrap(&t, KEK1, cv_luks_uuid(f->l), &p3),
                     -CV_EWRONGKEY);
    check_ok(cv_kek_token_unwrap(&t, KEK2, cv_luks_uuid(f->l), &p2),
             "unwrap new");
    assert_int_equal(p1.len, p2.len);
    assert_memory_equal(p1.data, p2.data, p1.len);
    assert_int_equal(cv_luks_unlock_keyslot(f->l, slot, p2.data, p2.len, &key,
                                            &keylen), slot);
    cv_secmem_free(key, keylen);
    free(before);
    free(after);

    /* Already at generation 2: nothing is written. */
    before = snapshot(f->b);
    check_ok(cv_kek_token_rewrap(f->l, &t, KEK1, KEK2, 2), "rewrap no-op");
    after = snapshot(f->b);
    assert_memory_equal(before, after, STORE_SIZE);

    cv_kek_token_free(&t);
    cv_secret_free(&p1);
    cv_secret_free(&p2);
    free(before);
    free(after);
}

/* The primary header copy, its token included, is what a crash could
 * leave half-written: the secondary alone still holds a whole token. */
static void rewrap_damaged_primary(void **state)
{
    struct fixture *f = *state;
    unsigned char junk[512];
    struct cv_kek_token t;
    struct cv_secret pass;

    check_ok(cv_kek_enroll(f->l, PASS, PASSLEN, KEK1, 1, NULL), "enroll");
    reload(f, 1);
    check_ok(cv_kek_token_get(f->l, &t), "token get");
    check_ok(cv_kek_token_rewrap(f->l, &t, KEK1, KEK2, 2), "rewrap");
    cv_kek_token_free(&t);
    memset(junk, 'x', sizeof junk);
    check_ok(cv_backend_pwrite(f->b, junk, sizeof junk, 4096 + 100, 0),
             "damage primary JSON");
    /* The metadata-only load falls back to the full one, which reads the
     * secondary copy. */
    reload(f, 1);
    unwrap_ok(f->l, KEK2, &pass);
    cv_secret_free(&pass);
}

static void metadata_only_refuses_keyslots(void **state)
{
    struct fixture *f = *state;
    unsigned char *before, *after, *key = NULL;
    struct cv_luks_info info;
    size_t keylen = 0;

    before = snapshot(f->b);
    reload(f, 1);
    assert_int_equal(cv_luks_unlock(f->l, PASS, PASSLEN, &key, &keylen),
                     -EINVAL);
    assert_message_has("without its keyslot areas");
    assert_null(key);
    assert_int_equal(cv_luks_unlock_keyslot(f->l, 0, PASS, PASSLEN, &key,
                                            &keylen), -EINVAL);
    assert_int_equal(cv_luks_add_key(f->l, PASS, PASSLEN, "new", 3, NULL),
                     -EINVAL);
    assert_int_equal(cv_luks_change_key(f->l, PASS, PASSLEN, "new", 3, NULL),
                     -EINVAL);
    assert_int_equal(cv_luks_remove_key(f->l, PASS, PASSLEN, 1), -EINVAL);
    assert_int_equal(cv_kek_enroll(f->l, PASS, PASSLEN, KEK1, 1, NULL),
                     -EINVAL);
    assert_int_equal(cv_kek_token_add(f->l, 0, PASS, PASSLEN, KEK1, 1),
                     -EINVAL);
    /* What needs no keyslot works. */
    check_ok(cv_luks_info(f->l, &info), "info");
    assert_int_equal(info.luks_version, 2);
    assert_int_equal(info.nslots, 1);
    assert_true(info.effective_size > 0);
    assert_string_equal(info.uuid, cv_luks_uuid(f->l));
    after = snapshot(f->b);
    assert_memory_equal(before, after, STORE_SIZE);
    free(before);
    free(after);
}

/* A volume formatted with a random passphrase, as the daemon makes them,
 * gets its token with cv_kek_token_add. */
static void token_add(void **state)
{
    struct fixture *f = *state;
    static const char kpass[CV_KEK_PASS_LEN] = "\x01\x00random keyslot passphrase\xff";
    struct cv_backend *b = NULL;
    struct cv_luks *l = NULL;
    struct cv_kek_token t;
    struct cv_secret pass;

    check_ok(cv_backend_mem_new("vol-c", STORE_SIZE, &b), "mem backend");
    format(b, 2, kpass, sizeof kpass);
    check_ok(cv_luks_load(b, &l), "load");
    assert_int_equal(cv_kek_token_add(l, 0, "not it", 6, KEK1, 5),
                     -CV_EWRONGKEY);
    assert_int_equal(cv_kek_token_add(l, 3, kpass, sizeof kpass, KEK1, 5),
                     -ENOENT);
    check_ok(cv_kek_token_add(l, 0, kpass, sizeof kpass, KEK1, 5), "add");
    assert_int_equal(cv_kek_token_add(l, 0, kpass, sizeof kpass, KEK1, 5),
                     -EEXIST);
    assert_message_has("already has a cryptvol-kek token");
    cv_luks_free(l);
    check_ok(cv_luks_load_metadata(b, &l), "load metadata");
    check_ok(cv_kek_token_get(l, &t), "get");
    assert_int_equal(t.keyslot, 0);
    assert_int_equal(t.gen, 5);
    check_ok(cv_kek_token_unwrap(&t, KEK1, cv_luks_uuid(l), &pass), "unwrap");
    assert_int_equal(pass.len, sizeof kpass);
    assert_memory_equal(pass.data, kpass, sizeof kpass);
    cv_secret_free(&pass);
    cv_kek_token_free(&t);
    cv_luks_free(l);
    cv_backend_close(b);
    (void)f;
}

static void no_token(void **state)
{
    struct fixture *f = *state;
    struct cv_kek_token t;

    assert_int_equal(cv_kek_token_get(f->l, &t), -ENOENT);
    assert_message_has("no cryptvol-kek token");
    assert_null(t.wrapped);
}

/* Tokens that libcryptsetup takes (type, keyslots) but whose own fields
 * are wrong: the header is untrusted input. */
static void malformed_tokens(void **state)
{
    static const char *bad[] = {
        "{\"type\":\"cryptvol-kek\",\"keyslots\":[\"1\"]}",
        "{\"type\":\"cryptvol-kek\",\"keyslots\":[\"1\"],\"wrapped\":\""
            "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8w\"}",
        "{\"type\":\"cryptvol-kek\",\"keyslots\":[\"1\"],\"kek_generation\":\"3\","
            "\"wrapped\":\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8w\"}",
        "{\"type\":\"cryptvol-kek\",\"keyslots\":[\"1\"],\"kek_generation\":-1,"
            "\"wrapped\":\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8w\"}",
        "{\"type\":\"cryptvol-kek\",\"keyslots\":[\"1\"],\"kek_generation\":4294967296,"
            "\"wrapped\":\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8w\"}",
        "{\"type\":\"cryptvol-kek\",\"keyslots\":[\"1\"],\"kek_generation\":1.5,"
            "\"wrapped\":\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8w\"}",
        "{\"type\":\"cryptvol-kek\",\"keyslots\":[\"1\"],\"kek_generation\":1}",
        "{\"type\":\"cryptvol-kek\",\"keyslots\":[\"1\"],\"kek_generation\":1,"
            "\"wrapped\":\"not base64!\"}",
        "{\"type\":\"cryptvol-kek\",\"keyslots\":[\"1\"],\"kek_generation\":1,"
            "\"wrapped\":\"\"}",
        "{\"type\":\"cryptvol-kek\",\"keyslots\":[\"1\"],\"kek_generation\":1,"
            "\"wrapped\":\"QUJD\"}",
        "{\"type\":\"cryptvol-kek\",\"keyslots\":[\"1\"],\"kek_generation\":1,"
            "\"wrapped\":\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8\"}",
        "{\"type\":\"cryptvol-kek\",\"keyslots\":[\"1\"],\"kek_generation\":1,"
            "\"wrapped\":\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHy\\u0000hIiMkJSYnKCkqKywtLi8w\"}",
        "{\"type\":\"cryptvol-kek\",\"keyslots\":[\"1\"],\"kek_generation\":1,"
            "\"wrapped\":42}",
        "{\"type\":\"cryptvol-kek\",\"keyslots\":[],\"kek_generation\":1,"
            "\"wrapped\":\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8w\"}",
        "{\"type\":\"cryptvol-kek\",\"keyslots\":[\"0\",\"1\"],\"kek_generation\":1,"
            "\"wrapped\":\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8w\"}",
    };
    struct fixture *f = *state;
    struct cv_kek_token t;
    char big[4096];
    size_t i;
    int n;

    assert_int_equal(cv_luks_add_key(f->l, PASS, PASSLEN, "x", 1, &fast), 1);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (cv_luks_token_put(f->l, 0, bad[i]) != 0)
            fail_msg("libcryptsetup refused case %zu: %s", i, cv_last_error());
        reload(f, 1);
        if (cv_kek_token_get(f->l, &t) != -EINVAL)
            fail_msg("case %zu accepted: %s", i, bad[i]);
        assert_message_has("cryptvol-kek token 0 is malformed");
        assert_null(t.wrapped);
    }
    /* A wrapped value of kilobytes. */
    n = snprintf(big, sizeof big, "{\"type\":\"cryptvol-kek\",\"keyslots\":"
                 "[\"1\"],\"kek_generation\":1,\"wrapped\":\"");
    memset(big + n, 'A', 2000);
    memcpy(big + n + 2000, "\"}", 3);
    check_ok(cv_luks_token_put(f->l, 0, big), "put big");
    assert_int_equal(cv_kek_token_get(f->l, &t), -EINVAL);
    assert_message_has("\"wrapped\"");
    /* libcryptsetup itself refuses a token naming a keyslot that does
     * not exist, so parsing never sees one. */
    assert_true(cv_luks_token_put(f->l, 1, "{\"type\":\"cryptvol-kek\","
                                  "\"keyslots\":[\"9\"]}") < 0);
}

static void luks1_not_supported(void **state)
{
    struct cv_backend *b = new_volume("vol-luks1", 1);
    struct cv_luks *l = NULL;
    unsigned char *key = NULL;
    struct cv_kek_token t;
    size_t keylen = 0;
    char *json = NULL;

    (void)state;
    /* A LUKS1 "metadata" load is a full load: keyslots work. */
    check_ok(cv_luks_load_metadata(b, &l), "load metadata");
    assert_int_equal(cv_luks_unlock(l, PASS, PASSLEN, &key, &keylen), 0);
    cv_secmem_free(key, keylen);
    assert_int_equal(cv_kek_enroll(l, PASS, PASSLEN, KEK1, 1, NULL), -ENOTSUP);
    assert_message_has("LUKS1");
    assert_int_equal(cv_kek_token_get(l, &t), -ENOTSUP);
    assert_int_equal(cv_kek_token_add(l, 0, PASS, PASSLEN, KEK1, 1), -ENOTSUP);
    assert_int_equal(cv_luks_token_find(l, CV_KEK_TOKEN_TYPE, &json), -ENOTSUP);
    assert_int_equal(cv_luks_token_put(l, 0, "{}"), -ENOTSUP);
    cv_luks_free(l);
    cv_backend_close(b);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(enroll_get_unwrap),
        T(wrong_kek),
        T(enroll_wrong_passphrase),
        T(token_moved),
        T(rewrap),
        T(rewrap_damaged_primary),
        T(metadata_only_refuses_keyslots),
        T(token_add),
        T(no_token),
        T(malformed_tokens),
        cmocka_unit_test(luks1_not_supported),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

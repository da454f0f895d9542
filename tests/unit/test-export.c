/* The export registry: one open volume shared by every holder, concurrent
 * first opens, the wrong-key and missing-volume messages, plaintext range
 * checks, trim and zero, flush on last close, and online growth (the
 * record's size as a bound, holders, a grow while open and while
 * opening). */
#include <errno.h>
#include <pthread.h>
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
#include "export/export.h"
#include "store/chain.h"
#include "luks/luks.h"
#include "core/secmem.h"

#define MiB (1024ull * 1024)

struct world {
    char dir[64];
    char luks_path[128];
    char plain_path[128];
    const char *secret;         /* what resolve hands out for "enc" */
    int resolves;               /* how many times resolve ran */
    uint64_t cap;               /* the size resolve says may be served */
    uint64_t grow_in_open;      /* resolve grows the volume to this */
    pthread_mutex_t lock;
    struct cvd_registry *reg;
};

/* serving: the check of every connection's get; the open is the other. */
static int resolve(void *opaque, const char *name, int serving,
                   struct cvd_volume_spec *s)
{
    struct world *w = opaque;

    if (serving)
        return !strcmp(name, "enc") || !strcmp(name, "plain") ? 0 :
               cv_error(-ENOENT, "volume %s: no such volume", name);
    pthread_mutex_lock(&w->lock);
    w->resolves++;
    pthread_mutex_unlock(&w->lock);
    s->size = w->cap;
    /* A grow that commits while this open runs (resolve runs unlocked). */
    if (w->grow_in_open)
        assert_int_equal(cvd_registry_grow(w->reg, name, w->grow_in_open), 0);
    if (!strcmp(name, "enc")) {
        s->path = strdup(w->luks_path);
        return 0;
    }
    if (!strcmp(name, "plain")) {
        s->path = strdup(w->plain_path);
        s->plaintext = 1;
        return 0;
    }
    return cv_error(-ENOENT, "volume %s: no such volume", name);
}

/* The key of "enc"'s one format, from the passphrase of the moment. */
static int unlock(void *opaque, const char *name, struct cv_chain *c,
                  struct cvd_volume_keys *out)
{
    struct world *w = opaque;
    struct cv_luks *l = NULL;
    unsigned char *key = NULL;
    size_t keylen = 0;
    int r = cv_luks_load(cv_chain_backend(c), &l);

    memset(out, 0, sizeof *out);
    if (r == 0)
        r = cv_luks_unlock(l, w->secret, strlen(w->secret), &key, &keylen);
    if (r == -CV_EWRONGKEY)
        r = cv_error(r, "volume %s: wrong key: its secret opens no keyslot",
                     name);
    if (r == 0)
        r = cv_luks_info(l, &out->k[0].info);
    if (r == 0) {
        out->k[0].key = key;
        out->k[0].keylen = keylen;
        out->n = 1;
        key = NULL;
    }
    cv_secmem_free(key, keylen);
    cv_luks_free(l);
    return r;
}

/* The head layer of a chain of one layer (docs/store.md). */
static const char *head_of(const char *chain)
{
    static char path[192];

    snprintf(path, sizeof path, "%s/layer-000001", chain);
    return path;
}

static int list(void *opaque, int (*cb)(void *, const char *), void *arg)
{
    int r;

    (void)opaque;
    r = cb(arg, "enc");
    return r ? r : cb(arg, "plain");
}

static void make_file(const char *path, uint64_t size)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), (off_t)size), 0);
    fclose(f);
}

/* The image at path becomes the one layer of a chain at path itself, as
 * the daemon upgrades an older data directory. */
static void make_chain(const char *path, uint64_t data_offset)
{
    char image[160];

    snprintf(image, sizeof image, "%s.img", path);
    assert_int_equal(rename(path, image), 0);
    assert_int_equal(cv_chain_adopt_image(image, path, data_offset), 0);
}

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof *w);
    struct cv_luks_info info;
    struct cv_luks *l = NULL;
    struct cv_backend *b;
    struct cv_format_params p = {
        .luks_version = 2, .key_bits = 256,
        .pbkdf = { .type = "pbkdf2", .iterations = 1000 },
    };

    strcpy(w->dir, "/tmp/test-export.XXXXXX");
    assert_non_null(mkdtemp(w->dir));
    snprintf(w->luks_path, sizeof w->luks_path, "%s/enc.img", w->dir);
    snprintf(w->plain_path, sizeof w->plain_path, "%s/plain.img", w->dir);
    make_file(w->luks_path, 20 * MiB);
    make_file(w->plain_path, 4 * MiB);
    assert_int_equal(cv_backend_file_open(w->luks_path, 0, &b), 0);
    assert_int_equal(cv_luks_format(b, &p, "right", 5), 0);
    assert_int_equal(cv_luks_load(b, &l), 0);
    assert_int_equal(cv_luks_info(l, &info), 0);
    cv_luks_free(l);
    cv_backend_close(b);
    make_chain(w->luks_path, info.data_offset);
    make_chain(w->plain_path, 0);
    w->secret = "right";
    pthread_mutex_init(&w->lock, NULL);
    assert_int_equal(cvd_registry_new(resolve, unlock, list, w, NULL,
                                      &w->reg), 0);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;
    char cmd[128];

    cvd_registry_free(w->reg);
    snprintf(cmd, sizeof cmd, "rm -rf %s", w->dir);
    assert_int_equal(system(cmd), 0);
    pthread_mutex_destroy(&w->lock);
    free(w);
    return 0;
}

static void test_shared_open(void **state)
{
    struct world *w = *state;
    struct cvd_export *a, *b;
    char buf[5];

    assert_int_equal(cvd_export_get(w->reg, "enc", &a), 0);
    assert_int_equal(cvd_export_get(w->reg, "enc", &b), 0);
    assert_ptr_equal(a, b);
    assert_int_equal(w->resolves, 1);
    assert_int_equal(cvd_export_size(a), 4 * MiB);
    assert_int_equal(cvd_export_block_size(a), 4096);
    assert_int_equal(cvd_registry_in_use(w->reg, "enc", 0), 1);
    assert_int_equal(cvd_export_pwrite(a, "hello", 5, 4093, 0), 0);
    cvd_export_put(a);
    assert_int_equal(cvd_export_pread(b, buf, 5, 4093), 0);
    assert_memory_equal(buf, "hello", 5);
    cvd_export_put(b);
    assert_int_equal(cvd_registry_in_use(w->reg, "enc", 0), 0);

    /* Reopened from disk: the last put flushed and closed it. */
    assert_int_equal(cvd_export_get(w->reg, "enc", &a), 0);
    assert_int_equal(w->resolves, 2);
    assert_int_equal(cvd_export_pread(a, buf, 5, 4093), 0);
    assert_memory_equal(buf, "hello", 5);
    cvd_export_put(a);
}

struct getter {
    struct world *w;
    struct cvd_export *e;
    int r;
};

static void *get_thread(void *arg)
{
    struct getter *g = arg;

    g->r = cvd_export_get(g->w->reg, "enc", &g->e);
    return NULL;
}

static void test_concurrent_first_open(void **state)
{
    struct world *w = *state;
    struct getter g[8];
    pthread_t t[8];

    for (int i = 0; i < 8; i++) {
        g[i] = (struct getter){ .w = w };
        assert_int_equal(pthread_create(&t[i], NULL, get_thread, &g[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(g[i].r, 0);
        assert_ptr_equal(g[i].e, g[0].e);
    }
    assert_int_equal(w->resolves, 1);
    for (int i = 0; i < 8; i++)
        cvd_export_put(g[i].e);
    assert_int_equal(cvd_registry_in_use(w->reg, "enc", 0), 0);
}

static void test_wrong_key_and_missing(void **state)
{
    struct world *w = *state;
    struct cvd_export *e = NULL;

    w->secret = "wrong";
    assert_int_equal(cvd_export_get(w->reg, "enc", &e), -CV_EWRONGKEY);
    assert_non_null(strstr(cv_last_error(), "volume enc: wrong key"));
    assert_int_equal(cvd_registry_in_use(w->reg, "enc", 0), 0);
    w->secret = "right";
    assert_int_equal(cvd_export_get(w->reg, "enc", &e), 0);
    cvd_export_put(e);

    assert_int_equal(cvd_export_get(w->reg, "nope", &e), -ENOENT);
    assert_non_null(strstr(cv_last_error(), "volume nope: no such volume"));
}

static void test_plaintext(void **state)
{
    struct world *w = *state;
    struct cvd_export *e;
    char buf[8] = "xxxxxxx";

    assert_int_equal(cvd_export_get(w->reg, "plain", &e), 0);
    assert_true(cvd_export_flags(e) & CVD_EXPORT_PLAINTEXT);
    assert_int_equal(cvd_export_size(e), 4 * MiB);
    assert_int_equal(cvd_export_pwrite(e, "abcdefg", 7, 4 * MiB - 7, 0), 0);
    assert_int_equal(cvd_export_pwrite(e, "abcdefg", 7, 4 * MiB - 6, 0),
                     -ERANGE);
    assert_int_equal(cvd_export_pread(e, buf, 7, 4 * MiB - 7), 0);
    assert_memory_equal(buf, "abcdefg", 7);
    assert_int_equal(cvd_export_zero(e, 4 * MiB - 7, 7, 0), 0);
    assert_int_equal(cvd_export_pread(e, buf, 7, 4 * MiB - 7), 0);
    assert_memory_equal(buf, "\0\0\0\0\0\0\0", 7);
    assert_int_equal(cvd_export_trim(e, 0, 4 * MiB + 1, 0), -ERANGE);
    cvd_export_put(e);
}

/* Adds each extent's length; the holes' (they must read as zeros too)
 * to total[1]. */
static int count_extent(void *arg, uint64_t len, unsigned flags)
{
    uint64_t *total = arg;

    assert_true(flags == 0 ||
                flags == (CVD_EXTENT_HOLE | CVD_EXTENT_ZERO));
    total[0] += len;
    if (flags)
        total[1] += len;
    return 0;
}

static void test_zero_trim_extents(void **state)
{
    struct world *w = *state;
    struct cvd_export *e;
    static char buf[3 * 4096];
    uint64_t total[2] = { 0, 0 };

    assert_int_equal(cvd_export_get(w->reg, "enc", &e), 0);
    memset(buf, 0xab, sizeof buf);
    assert_int_equal(cvd_export_pwrite(e, buf, sizeof buf, 0, CV_WRITE_FUA), 0);
    /* Trim keeps the partial sectors at its edges intact. */
    assert_int_equal(cvd_export_trim(e, 100, 2 * 4096, 0), 0);
    assert_int_equal(cvd_export_pread(e, buf, 100, 0), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal((unsigned char)buf[i], 0xab);
    assert_int_equal(cvd_export_pread(e, buf, 100, 2 * 4096), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal((unsigned char)buf[i], 0xab);
    assert_int_equal(cvd_export_zero(e, 10, 3 * 4096 - 20, 0), 0);
    assert_int_equal(cvd_export_pread(e, buf, sizeof buf, 0), 0);
    for (size_t i = 10; i < sizeof buf - 10; i++)
        assert_int_equal(buf[i], 0);
    /* The whole block zeroed is a hole again; the last, zeroed but for
     * its last 10 bytes, holds data. */
    assert_int_equal(cvd_export_extents(e, 4096, 8192, count_extent, total),
                     0);
    assert_int_equal(total[0], 8192);
    assert_int_equal(total[1], 4096);
    assert_int_equal(cvd_export_extents(e, 4 * MiB, 1, count_extent, total),
                     -ERANGE);
    cvd_export_put(e);
}

static int holder_peers(void *arg, const struct cvd_export_holder *h)
{
    char *out = arg;

    sprintf(out + strlen(out), "%s/%s/%llu,", h->peer, h->identity,
            (unsigned long long)h->size);
    return 0;
}

/* The image holds 8 MiB, the record 4 (a grow not yet committed): 4 MiB
 * served until the grow reaches the registry, then 8 to new holders; the
 * size never goes past the image nor down. */
static void test_grow(void **state)
{
    struct world *w = *state;
    struct cvd_export_holder h1 = { .peer = "127.0.0.1:1", .identity =
                                    "CN=a", .size = 4 * MiB };
    struct cvd_export *e;
    char buf[8], peers[128] = "";

    assert_int_equal(truncate(head_of(w->luks_path), 24 * MiB), 0);
    /* (header 16 + 8) */
    w->cap = 4 * MiB;
    assert_int_equal(cvd_export_get(w->reg, "enc", &e), 0);
    assert_int_equal(cvd_export_size(e), 4 * MiB);
    assert_int_equal(cvd_export_pread(e, buf, 8, 4 * MiB), -ERANGE);
    cvd_export_hold(e, &h1);
    assert_int_equal(cvd_registry_holders(w->reg, "enc", holder_peers, peers),
                     1);
    assert_string_equal(peers, "127.0.0.1:1/CN=a/4194304,");
    assert_int_equal(cvd_registry_holders(w->reg, "plain", holder_peers,
                                          peers), 0);
    assert_int_equal(cvd_registry_grow(w->reg, "enc", 8 * MiB), 0);
    assert_int_equal(cvd_export_size(e), 8 * MiB);
    assert_int_equal(cvd_export_pwrite(e, "grown", 5, 6 * MiB, CV_WRITE_FUA),
                     0);
    assert_int_equal(cvd_export_pread(e, buf, 5, 6 * MiB), 0);
    assert_memory_equal(buf, "grown", 5);
    /* Past the image: refused, the size stays; smaller: ignored. */
    assert_int_equal(cvd_registry_grow(w->reg, "enc", 12 * MiB), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "within the 8388608 bytes"));
    assert_int_equal(cvd_registry_grow(w->reg, "enc", 4 * MiB), 0);
    assert_int_equal(cvd_export_size(e), 8 * MiB);
    assert_int_equal(cvd_export_pread(e, buf, 8, 8 * MiB), -ERANGE);
    cvd_export_unhold(e, &h1);
    assert_int_equal(cvd_registry_holders(w->reg, "enc", holder_peers, peers),
                     0);
    cvd_export_put(e);
    /* Not open: nothing to do. */
    assert_int_equal(cvd_registry_grow(w->reg, "enc", 8 * MiB), 0);

    /* Plaintext: the file's size, bounded by the record the same way. */
    assert_int_equal(truncate(head_of(w->plain_path), 8 * MiB), 0);
    assert_int_equal(cvd_export_get(w->reg, "plain", &e), 0);
    assert_int_equal(cvd_export_size(e), 4 * MiB);
    assert_int_equal(cvd_export_pread(e, buf, 8, 4 * MiB), -ERANGE);
    assert_int_equal(cvd_registry_grow(w->reg, "plain", 8 * MiB), 0);
    assert_int_equal(cvd_export_pread(e, buf, 8, 4 * MiB), 0);
    assert_int_equal(cvd_registry_grow(w->reg, "plain", 9 * MiB), -EINVAL);
    cvd_export_put(e);
}

/* A grow that reaches the registry while the volume is being opened (it
 * read the old record) is applied once the open is done. */
static void test_grow_while_opening(void **state)
{
    struct world *w = *state;
    struct cvd_export *e;

    assert_int_equal(truncate(head_of(w->luks_path), 24 * MiB), 0);
    w->cap = 4 * MiB;
    w->grow_in_open = 8 * MiB;
    assert_int_equal(cvd_export_get(w->reg, "enc", &e), 0);
    assert_int_equal(cvd_export_size(e), 8 * MiB);
    cvd_export_put(e);
    w->grow_in_open = 0;
}

static int add_name(void *arg, const char *name)
{
    strcat(arg, name);
    strcat(arg, ",");
    return 0;
}

static void test_list(void **state)
{
    struct world *w = *state;
    char names[64] = "";

    assert_int_equal(cvd_registry_list(w->reg, add_name, names), 0);
    assert_string_equal(names, "enc,plain,");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shared_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_first_open, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wrong_key_and_missing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_plaintext, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_trim_extents, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grow_while_opening, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

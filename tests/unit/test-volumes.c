/* Volume and secret management (daemon/volumes/volumes.c, secrets.c,
 * volumes-serve.c) on a real data directory, without the HTTP layer. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/backend.h"
#include "daemon.h"
#include "keys/cluster-kek.h"
#include "core/error.h"
#include "keys/keyring.h"
#include "export/export.h"
#include "meta/meta.h"
#include "volumes/volumes-util.h"
#include "luks/luks.h"
#include "core/secmem.h"
#include "image/volume.h"
#include "volumes/volumes.h"

#define MiB (1ull << 20)

/* The registry is not under test: which volume it "serves" is set here.
 * Weak, so the real one wins if it is ever linked in. */
static const char *served;

__attribute__((weak)) int cvd_registry_in_use(struct cvd_registry *r,
                                              const char *name)
{
    (void)r;
    return served && !strcmp(served, name);
}

/* The served volume's one client, as the NBD server would hold it. */
static struct cvd_export_holder client = {
    .peer = "127.0.0.1:40312", .identity = "CN=alice", .size = 4 << 20,
};

__attribute__((weak)) int cvd_registry_holders(
    struct cvd_registry *r, const char *name,
    int (*cb)(void *arg, const struct cvd_export_holder *h), void *arg)
{
    (void)r;
    if (!served || strcmp(served, name))
        return 0;
    cb(arg, &client);
    return 1;
}

/* What the volumes told the registry last (an online grow). */
static char grown_name[CVD_NAME_MAX + 1];
static uint64_t grown_size;

__attribute__((weak)) int cvd_registry_grow(struct cvd_registry *r,
                                            const char *name, uint64_t size)
{
    (void)r;
    snprintf(grown_name, sizeof grown_name, "%s", name);
    grown_size = size;
    return 0;
}

struct fixture {
    char dir[PATH_MAX];
    struct cvd d;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");

    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/cv-vols-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    f->d.cfg.data_dir = f->dir;
    f->d.cfg.pbkdf = (struct cv_pbkdf){ .type = "pbkdf2", .iterations = 1000 };
    f->d.reg = (struct cvd_registry *)f;    /* not NULL: ask the stub */
    if (cvd_meta_open_sqlite(f->dir, &f->d.meta) < 0)
        return -1;
    /* The cluster layer, encryption off until a test enables it. */
    f->d.cfg.node_name = "node1";
    pthread_mutex_init(&f->d.header_lock, NULL);
    if (cvd_keyring_new(&f->d, &f->d.keys) < 0 ||
        cvd_cluster_new(&f->d, &f->d.cluster) < 0)
        return -1;
    served = NULL;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[PATH_MAX + 16];

    cvd_cluster_free(f->d.cluster);
    cvd_keyring_free(f->d.keys);
    cvd_meta_close(f->d.meta);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static struct cvd_volume_req req(const char *name, uint64_t size)
{
    return (struct cvd_volume_req){ .name = name, .size = size,
                                    .luks_version = 2, .aes_bits = 256 };
}

static uint64_t file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* Opens the volume the way the registry does: resolve, then unlock. */
static void open_through_resolve(struct fixture *f, const char *name,
                                 uint64_t size)
{
    struct cvd_volume_spec spec;
    struct cv_backend *b;
    struct cv_volume *v;

    assert_int_equal(cvd_volumes_resolve(&f->d, name, &spec), 0);
    assert_int_equal(spec.plaintext, 0);
    assert_int_equal(cv_backend_file_open(spec.path, 0, &b), 0);
    assert_int_equal(cv_volume_open(b, spec.secret.data, spec.secret.len,
                                    NULL, 0, &v), 0);
    assert_int_equal(cv_volume_size(v), size);
    cv_volume_close(v);
    cv_backend_close(b);
    free(spec.path);
    cv_secret_free(&spec.secret);
}

static void create_generated_secret(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("v1", 8 * MiB);
    struct cvd_volume_rec v;
    struct cvd_secret_rec s;

    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_string_equal(v.state, CVD_VOL_READY);
    assert_string_equal(v.type, "luks2");
    assert_string_equal(v.cipher, "aes-xts-plain64");
    assert_int_equal(v.key_bits, 512);
    assert_int_equal(v.sector_size, 4096);
    assert_string_equal(v.secret, "v1");
    assert_int_equal(strlen(v.uuid), 36);
    assert_int_equal(file_size(v.path), v.data_offset + 8 * MiB);
    assert_int_equal(f->d.meta->ops->secret_get(f->d.meta, "v1", &s), 0);
    assert_string_equal(s.owner, "v1");
    assert_int_equal(s.sealed_len, 32 + 29);
    cvd_secret_rec_free(&s);
    open_through_resolve(f, "v1", 8 * MiB);
}

static void create_named_secret_luks1(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("db1", 4 * MiB);
    struct cvd_volume_rec v;

    r.secret = "pw";
    r.luks_version = 1;
    r.aes_bits = 128;
    assert_int_equal(cvd_secret_create(&f->d, "pw", "a passphrase", 12), 0);
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_string_equal(v.state, CVD_VOL_READY);
    assert_string_equal(v.type, "luks1");
    assert_int_equal(v.key_bits, 256);
    assert_int_equal(v.sector_size, 512);
    assert_string_equal(v.secret, "pw");
    open_through_resolve(f, "db1", 4 * MiB);
    /* The named secret is the user's: it outlives the volume, and cannot
     * be deleted while the volume uses it. */
    assert_int_equal(cvd_secret_delete(&f->d, "pw"), -EBUSY);
    assert_string_equal(cv_last_error(), "secret pw: used by volume db1");
    assert_int_equal(cvd_volume_delete(&f->d, "db1"), 0);
    assert_false(exists(v.path));
    assert_int_equal(cvd_secret_delete(&f->d, "pw"), 0);
}

static void create_plaintext(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("raw", 1 * MiB);
    struct cvd_volume_spec spec;
    struct cvd_volume_rec v;
    struct cvd_secret_rec *all;
    size_t n;

    r.plaintext = 1;
    r.secret = "x";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), -EINVAL);
    r.secret = NULL;
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_string_equal(v.type, "plaintext");
    assert_string_equal(v.secret, "");
    assert_int_equal(file_size(v.path), 1 * MiB);
    assert_int_equal(cvd_volumes_resolve(&f->d, "raw", &spec), 0);
    assert_int_equal(spec.plaintext, 1);
    assert_null(spec.secret.data);
    free(spec.path);
    /* No secret was generated for it. */
    assert_int_equal(f->d.meta->ops->secret_list(f->d.meta, &all, &n), 0);
    assert_int_equal(n, 0);
    free(all);
}

static void create_refuses_bad_input(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("../etc", 4 * MiB);
    struct cvd_volume_rec v;

    assert_int_equal(cvd_volume_create(&f->d, &r, &v), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "volume \"../etc\": not a valid name"));
    r = req("ok", 4 * MiB + 512);
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "4096-byte sector"));
    r = req("ok", 0);
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), -EINVAL);
    r = req("ok", 4 * MiB);
    r.luks_version = 1;
    r.have_pbkdf = 1;
    r.pbkdf.type = "argon2id";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), -EINVAL);
    r = req("ok", 4 * MiB);
    r.secret = "bad name";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), -EINVAL);
    assert_int_equal(cvd_volume_get(&f->d, "ok", &v), -ENOENT);
}

/* A failure after the record was made leaves no record and no secret, and
 * does not touch a file it did not make. */
static void create_is_atomic(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("v2", 4 * MiB);
    struct cvd_volume_rec v;
    struct cvd_secret_rec s;
    char path[PATH_MAX + 32];
    FILE *fp;

    snprintf(path, sizeof path, "%s/volumes", f->dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/volumes/v2.img", f->dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("someone else's", fp);
    fclose(fp);
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), -EEXIST);
    assert_non_null(strstr(cv_last_error(), "already exists with no volume record"));
    assert_int_equal(file_size(path), 14);
    assert_int_equal(cvd_volume_get(&f->d, "v2", &v), -ENOENT);
    assert_int_equal(f->d.meta->ops->secret_get(f->d.meta, "v2", &s), -ENOENT);
    /* A format failure (size too large for the file system) too. */
    unlink(path);
    r.size = 1ull << 59;
    assert_true(cvd_volume_create(&f->d, &r, &v) < 0);
    assert_false(exists(path));
    assert_int_equal(cvd_volume_get(&f->d, "v2", &v), -ENOENT);
    assert_int_equal(f->d.meta->ops->secret_get(f->d.meta, "v2", &s), -ENOENT);
}

static void create_conflicts(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("v3", 4 * MiB);
    struct cvd_volume_rec v;

    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), -EEXIST);
    assert_string_equal(cv_last_error(), "volume v3: already exists");
    assert_true(exists(v.path));
    /* The generated secret's name is taken by a user's secret. */
    assert_int_equal(cvd_secret_create(&f->d, "v4", "x", 1), 0);
    r.name = "v4";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), -EEXIST);
    assert_non_null(strstr(cv_last_error(), "a secret called v4 already exists"));
}

static void resize(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("v5", 8 * MiB);
    struct cvd_volume_rec v;

    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_int_equal(cvd_volume_resize(&f->d, "v5", 16 * MiB, 0, &v), 0);
    assert_int_equal(v.size, 16 * MiB);
    assert_int_equal(file_size(v.path), v.data_offset + 16 * MiB);
    open_through_resolve(f, "v5", 16 * MiB);
    assert_int_equal(cvd_volume_resize(&f->d, "v5", 4 * MiB, 0, &v), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "allowShrink"));
    assert_int_equal(cvd_volume_resize(&f->d, "v5", 4 * MiB + 1, 1, &v), -EINVAL);
    assert_int_equal(cvd_volume_resize(&f->d, "v5", 4 * MiB, 1, &v), 0);
    assert_int_equal(cvd_volume_get(&f->d, "v5", &v), 0);
    assert_int_equal(v.size, 4 * MiB);
    assert_string_equal(v.state, CVD_VOL_READY);
    open_through_resolve(f, "v5", 4 * MiB);
    assert_int_equal(cvd_volume_resize(&f->d, "nope", 4 * MiB, 1, &v), -ENOENT);
}

static void busy_while_served(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("v6", 4 * MiB);
    struct cvd_volume_rec v;

    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    served = "v6";
    /* A grow works online and tells the registry; a shrink does not, and
     * names the client. */
    grown_name[0] = '\0';
    assert_int_equal(cvd_volume_resize(&f->d, "v6", 8 * MiB, 0, &v), 0);
    assert_int_equal(v.size, 8 * MiB);
    assert_string_equal(grown_name, "v6");
    assert_int_equal(grown_size, 8 * MiB);
    assert_int_equal(cvd_volume_clients_older(&f->d, "v6", 8 * MiB), 1);
    assert_int_equal(cvd_volume_resize(&f->d, "v6", 4 * MiB, 1, &v), -EBUSY);
    assert_string_equal(cv_last_error(), "volume v6: in use by 1 NBD client "
                        "(127.0.0.1:40312 CN=alice); shrinking it needs "
                        "every client disconnected");
    assert_int_equal(cvd_volume_resize(&f->d, "v6", 4 * MiB, 0, &v), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "is 8.0 MiB now"));
    assert_int_equal(cvd_volume_get(&f->d, "v6", &v), 0);
    assert_int_equal(v.size, 8 * MiB);
    assert_int_equal(file_size(v.path), v.data_offset + 8 * MiB);
    assert_int_equal(cvd_volume_delete(&f->d, "v6"), -EBUSY);
    assert_int_equal(cvd_volume_get(&f->d, "v6", &v), 0);
    assert_string_equal(v.state, CVD_VOL_READY);
    assert_true(exists(v.path));
    served = NULL;
    assert_int_equal(cvd_volume_delete(&f->d, "v6"), 0);
    assert_false(exists(v.path));
    assert_int_equal(cvd_volume_delete(&f->d, "v6"), -ENOENT);
}

static void delete_removes_generated_secret(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("v7", 4 * MiB);
    struct cvd_volume_rec v;
    struct cvd_secret_rec s;

    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_int_equal(cvd_secret_delete(&f->d, "v7"), -EBUSY);
    assert_int_equal(cvd_volume_delete(&f->d, "v7"), 0);
    assert_int_equal(f->d.meta->ops->secret_get(f->d.meta, "v7", &s), -ENOENT);
}

static int collect(void *arg, const char *name)
{
    char *buf = arg;

    strcat(buf, name);
    strcat(buf, " ");
    return 0;
}

static void aside(const struct cvd_volume_rec *v, const char *suffix,
                  char *buf, size_t len)
{
    assert_int_equal(cvd_aside_path(v->path, suffix, buf, len), 0);
}

/* A daemon that died mid-change: the next start finishes or undoes it,
 * and removes only files whose removal was committed: a create's
 * ".creating" file and a committed delete's ".deleting" one. */
static void recover(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r;
    struct cvd_volume_rec a, b, c, d, e;
    char names[256] = "", path[PATH_MAX + 16];
    const char *n;

    for (n = "abcde"; *n; n++) {
        char name[2] = { *n, 0 };
        struct cvd_volume_rec *v = *n == 'a' ? &a : *n == 'b' ? &b :
                                   *n == 'c' ? &c : *n == 'd' ? &d : &e;
        r = req(name, 4 * MiB);
        assert_int_equal(cvd_volume_create(&f->d, &r, v), 0);
    }
    /* a was being created (its image still under the .creating name), b
     * resized to 8 MiB, c deleted (committed: renamed to .deleting), d's
     * refused delete could not be put back (image at its own path), e was
     * being created with a file at its own path (not known to be ours). */
    snprintf(a.state, sizeof a.state, CVD_VOL_CREATING);
    assert_int_equal(f->d.meta->ops->volume_update(f->d.meta, &a, CVD_VOL_READY), 0);
    aside(&a, CVD_CREATING_SUFFIX, path, sizeof path);
    assert_int_equal(rename(a.path, path), 0);
    snprintf(b.state, sizeof b.state, CVD_VOL_RESIZING);
    assert_int_equal(f->d.meta->ops->volume_update(f->d.meta, &b, CVD_VOL_READY), 0);
    assert_int_equal(truncate(b.path, (off_t)(b.data_offset + 8 * MiB)), 0);
    snprintf(c.state, sizeof c.state, CVD_VOL_DELETING);
    assert_int_equal(f->d.meta->ops->volume_update(f->d.meta, &c, CVD_VOL_READY), 0);
    aside(&c, CVD_DELETING_SUFFIX, path, sizeof path);
    assert_int_equal(rename(c.path, path), 0);
    snprintf(d.state, sizeof d.state, CVD_VOL_DELETING);
    assert_int_equal(f->d.meta->ops->volume_update(f->d.meta, &d, CVD_VOL_READY), 0);
    snprintf(e.state, sizeof e.state, CVD_VOL_CREATING);
    assert_int_equal(f->d.meta->ops->volume_update(f->d.meta, &e, CVD_VOL_READY), 0);
    /* Not served meanwhile. */
    assert_int_equal(cvd_volumes_list(&f->d, collect, names), 0);
    assert_string_equal(names, "");
    assert_int_equal(cvd_volumes_recover(&f->d), 0);
    assert_int_equal(cvd_volume_get(&f->d, "a", &a), -ENOENT);
    aside(&a, CVD_CREATING_SUFFIX, path, sizeof path);
    assert_false(exists(path));
    assert_false(exists(a.path));
    assert_int_equal(cvd_volume_get(&f->d, "b", &b), 0);
    assert_int_equal(b.size, 8 * MiB);
    assert_string_equal(b.state, CVD_VOL_READY);
    assert_int_equal(cvd_volume_get(&f->d, "c", &c), -ENOENT);
    aside(&c, CVD_DELETING_SUFFIX, path, sizeof path);
    assert_false(exists(path));
    assert_false(exists(c.path));
    assert_int_equal(cvd_volume_get(&f->d, "d", &d), 0);
    assert_string_equal(d.state, CVD_VOL_READY);
    assert_true(exists(d.path));
    assert_int_equal(cvd_volume_get(&f->d, "e", &e), -ENOENT);
    assert_true(exists(e.path));
    assert_int_equal(cvd_volumes_list(&f->d, collect, names), 0);
    assert_string_equal(names, "b d ");
}

/* A metadata store whose writes fail once the first has gone through,
 * and a client that connects right after it: the moment a delete's claim
 * has moved the record to deleting and its undo must put it back. */
static const char *state_of(struct fixture *f, const char *name);
static const struct cvd_meta_ops *real_ops;
static int updates_seen;

static int failing_update(struct cvd_meta *m, const struct cvd_volume_rec *v,
                          const char *expect)
{
    if (updates_seen++ == 0) {
        served = v->name;
        return real_ops->volume_update(m, v, expect);
    }
    return cv_error(-EIO, "metadata: injected write failure");
}

static char *read_all(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf;

    assert_non_null(fp);
    *len = (size_t)file_size(path);
    buf = malloc(*len);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, *len, fp), *len);
    fclose(fp);
    return buf;
}

/* A refused delete whose undo fails: the error says so, the record stays
 * deleting with the image untouched, and the next start puts the volume
 * back (before, it unlinked the image). */
static void delete_undo_fails(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("keep", 4 * MiB);
    struct cvd_meta_ops fake;
    struct cvd_volume_rec v;
    size_t len0, len1;
    char *before, *after;

    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    before = read_all(v.path, &len0);
    real_ops = f->d.meta->ops;
    fake = *real_ops;
    fake.volume_update = failing_update;
    updates_seen = 0;
    f->d.meta->ops = &fake;
    assert_int_equal(cvd_volume_delete(&f->d, "keep"), -EBUSY);
    f->d.meta->ops = real_ops;
    assert_non_null(strstr(cv_last_error(), "volume keep: in use by 1 NBD "
                           "client (127.0.0.1:40312 CN=alice); deleting it "
                           "needs every client disconnected"));
    assert_non_null(strstr(cv_last_error(), "until the daemon restarts"));
    assert_non_null(strstr(cv_last_error(), "injected write failure"));
    assert_string_equal(state_of(f, "keep"), CVD_VOL_DELETING);
    assert_true(exists(v.path));
    served = NULL;              /* the client left; the daemon restarts */
    assert_int_equal(cvd_volumes_recover(&f->d), 0);
    assert_string_equal(state_of(f, "keep"), CVD_VOL_READY);
    after = read_all(v.path, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    open_through_resolve(f, "keep", 4 * MiB);
    free(before);
    free(after);
}

/* An online grow whose commit fails: the image goes back to its old size
 * (no client was served the new one), the record is Available at the old
 * size, the registry is not told. */
static int commit_fails(struct cvd_meta *m, const struct cvd_volume_rec *v,
                        const char *expect)
{
    if (!strcmp(v->state, CVD_VOL_READY) && !strcmp(expect, CVD_VOL_GROWING)
        && updates_seen++ == 0)
        return cv_error(-EIO, "metadata: injected write failure");
    return real_ops->volume_update(m, v, expect);
}

static void grow_commit_fails(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("g1", 4 * MiB);
    struct cvd_meta_ops fake;
    struct cvd_volume_rec v;

    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    served = "g1";
    real_ops = f->d.meta->ops;
    fake = *real_ops;
    fake.volume_update = commit_fails;
    updates_seen = 0;
    grown_name[0] = '\0';
    f->d.meta->ops = &fake;
    assert_int_equal(cvd_volume_resize(&f->d, "g1", 8 * MiB, 0, &v), -EIO);
    f->d.meta->ops = real_ops;
    assert_non_null(strstr(cv_last_error(), "injected write failure"));
    assert_int_equal(cvd_volume_get(&f->d, "g1", &v), 0);
    assert_string_equal(v.state, CVD_VOL_READY);
    assert_int_equal(v.size, 4 * MiB);
    assert_int_equal(file_size(v.path), v.data_offset + 4 * MiB);
    assert_string_equal(grown_name, "");
    served = NULL;
    open_through_resolve(f, "g1", 4 * MiB);
}

/* While growing the volume is served at its recorded size, also when the
 * image is already longer; a start settles a cut-off grow (or shrink) at
 * the image's size, old or new. */
static void growing_served_and_recovered(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("g2", 4 * MiB);
    struct cvd_volume_spec spec;
    struct cvd_volume_desc desc;
    struct cvd_volume_rec v;

    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    snprintf(v.state, sizeof v.state, CVD_VOL_GROWING);
    assert_int_equal(f->d.meta->ops->volume_update(f->d.meta, &v,
                                                   CVD_VOL_READY), 0);
    assert_int_equal(truncate(v.path, (off_t)(v.data_offset + 8 * MiB)), 0);
    assert_int_equal(cvd_volumes_resolve(&f->d, "g2", &spec), 0);
    assert_int_equal(spec.size, 4 * MiB);
    free(spec.path);            /* not cvd_volume_spec_free: that would */
    cv_secret_free(&spec.secret);   /* link the real registry in */
    assert_int_equal(cvd_volume_describe(&f->d, "g2", &desc), 0);
    assert_int_equal(desc.size, 4 * MiB);
    /* Another change waits for the grow. */
    assert_int_equal(cvd_volume_resize(&f->d, "g2", 12 * MiB, 0, &v), -EBUSY);
    assert_non_null(strstr(cv_last_error(), "is Growing"));
    assert_int_equal(cvd_volumes_recover(&f->d), 0);
    assert_int_equal(cvd_volume_get(&f->d, "g2", &v), 0);
    assert_string_equal(v.state, CVD_VOL_READY);
    assert_int_equal(v.size, 8 * MiB);
    open_through_resolve(f, "g2", 8 * MiB);
    /* Cut off before the longer file was durable: the old size. */
    snprintf(v.state, sizeof v.state, CVD_VOL_GROWING);
    v.size = 4 * MiB;           /* as the record said before the commit */
    assert_int_equal(f->d.meta->ops->volume_update(f->d.meta, &v,
                                                   CVD_VOL_READY), 0);
    assert_int_equal(truncate(v.path, (off_t)(v.data_offset + 4 * MiB)), 0);
    assert_int_equal(cvd_volumes_recover(&f->d), 0);
    assert_int_equal(cvd_volume_get(&f->d, "g2", &v), 0);
    assert_string_equal(v.state, CVD_VOL_READY);
    assert_int_equal(v.size, 4 * MiB);
    open_through_resolve(f, "g2", 4 * MiB);
}

/* Sizes out of range say the range and the size now, in human units. */
static void resize_refusals(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("g3", 4 * MiB);
    struct cvd_volume_rec v;

    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_int_equal(cvd_volume_resize(&f->d, "g3", 2ull << 60, 0, &v),
                     -EINVAL);
    assert_string_equal(cv_last_error(), "volume g3: a size of 2.0 EiB is "
                        "out of range: 4.0 KiB to 1.0 EiB, in whole "
                        "4096-byte sectors (it is 4.0 MiB now)");
    assert_int_equal(cvd_volume_resize(&f->d, "g3", 0, 1, &v), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "out of range"));
    assert_int_equal(cvd_volume_resize(&f->d, "g3", 4 * MiB + 512, 0, &v),
                     -EINVAL);
    assert_non_null(strstr(cv_last_error(), "not a whole number of "
                           "4096-byte sectors"));
    assert_int_equal(cvd_volume_resize(&f->d, "g3", 1 * MiB, 0, &v), -EINVAL);
    assert_string_equal(cv_last_error(), "volume g3: is 4.0 MiB now; "
                        "shrinking it to 1.0 MiB destroys the data past "
                        "1.0 MiB: that needs allowShrink (--allow-shrink) "
                        "and every client disconnected");
    assert_int_equal(cvd_volume_get(&f->d, "g3", &v), 0);
    assert_int_equal(v.size, 4 * MiB);
}

static void resolve_errors(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_spec spec;

    assert_int_equal(cvd_volumes_resolve(&f->d, "nope", &spec), -ENOENT);
    assert_string_equal(cv_last_error(), "volume nope: no such volume");
    assert_int_equal(cvd_volumes_resolve(&f->d, "../x", &spec), -ENOENT);
}

/* The state of volume name. */
static const char *state_of(struct fixture *f, const char *name)
{
    static struct cvd_volume_rec v;

    if (cvd_volume_get(&f->d, name, &v) < 0)
        return "(none)";
    return v.state;
}

/* A missing secret makes a Pending volume with no file; creating the
 * secret makes it, through cvd_secret_create's retry. */
static void pending_until_secret(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("db1", 4 * MiB);
    struct cvd_volume_spec spec;
    struct cvd_volume_rec v;
    char used_by[CVD_NAME_MAX + 1];

    r.secret = "db-1";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_string_equal(v.state, CVD_VOL_PENDING);
    assert_string_equal(v.wait_secret, "db-1");
    assert_string_equal(v.secret, "");
    assert_int_equal(v.key_bits, 512);
    assert_false(exists(v.path));
    /* Not served, and says why; not resized; not listed. */
    assert_int_equal(cvd_volumes_resolve(&f->d, "db1", &spec), -EBUSY);
    assert_string_equal(cv_last_error(),
                        "volume db1: is Pending: waiting for secret \"db-1\"");
    assert_int_equal(cvd_volume_resize(&f->d, "db1", 8 * MiB, 0, &v), -EBUSY);
    assert_string_equal(cv_last_error(),
                        "volume db1: is Pending: waiting for secret \"db-1\"");
    /* Retrying without the secret changes nothing. */
    assert_int_equal(cvd_volumes_retry_pending(&f->d, NULL), 0);
    assert_string_equal(state_of(f, "db1"), CVD_VOL_PENDING);
    assert_int_equal(cvd_secret_create(&f->d, "db-1", "pass", 4), 0);
    assert_int_equal(cvd_volume_get(&f->d, "db1", &v), 0);
    assert_string_equal(v.state, CVD_VOL_READY);
    assert_string_equal(v.secret, "db-1");
    assert_string_equal(v.wait_secret, "");
    assert_int_equal(file_size(v.path), v.data_offset + 4 * MiB);
    open_through_resolve(f, "db1", 4 * MiB);
    assert_int_equal(f->d.meta->ops->secret_remove(f->d.meta, "db-1", used_by),
                     -EBUSY);
}

static void pending_delete(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("p1", 4 * MiB);
    struct cvd_volume_rec v;

    r.secret = "later";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_string_equal(v.state, CVD_VOL_PENDING);
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), -EEXIST);
    assert_int_equal(cvd_volume_delete(&f->d, "p1"), 0);
    assert_int_equal(cvd_volume_get(&f->d, "p1", &v), -ENOENT);
    /* The secret appearing later makes nothing. */
    assert_int_equal(cvd_secret_create(&f->d, "later", "x", 1), 0);
    assert_int_equal(cvd_volume_get(&f->d, "p1", &v), -ENOENT);
    assert_false(exists(v.path));
}

/* A secret that appears in the store without cvd_secret_create (another
 * node): the retry thread finds it. */
static void pending_retry_thread(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("t1", 4 * MiB);
    struct cvd_pending *p;
    struct cvd_volume_rec v;
    time_t deadline;

    r.secret = "remote";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_int_equal(cvd_pending_start(&f->d, 0, &p), 0);
    assert_null(p);
    assert_int_equal(cvd_pending_start(&f->d, 1, &p), 0);
    assert_non_null(p);
    assert_int_equal(cvd_meta_secret_add(f->d.meta, "remote", "v", 1, NULL), 0);
    deadline = time(NULL) + 10;
    while (strcmp(state_of(f, "t1"), CVD_VOL_READY) && time(NULL) < deadline)
        usleep(50 * 1000);
    cvd_pending_stop(p);
    assert_string_equal(state_of(f, "t1"), CVD_VOL_READY);
    open_through_resolve(f, "t1", 4 * MiB);
}

/* Killed while a pending volume was being made: back to pending, no file;
 * then made again. */
static void recover_creating_from_pending(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("c1", 4 * MiB);
    struct cvd_volume_rec v;
    char dir[PATH_MAX + 16];
    FILE *fp;

    snprintf(dir, sizeof dir, "%s/volumes", f->dir);
    mkdir(dir, 0700);
    r.secret = "s";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_int_equal(cvd_meta_secret_add(f->d.meta, "s", "v", 1, NULL), 0);
    /* What cvd_volume_finish_pending leaves between its steps. */
    snprintf(v.secret, sizeof v.secret, "s");
    snprintf(v.state, sizeof v.state, CVD_VOL_CREATING);
    assert_int_equal(f->d.meta->ops->volume_update(f->d.meta, &v,
                                                   CVD_VOL_PENDING), 0);
    aside(&v, CVD_CREATING_SUFFIX, dir, sizeof dir);   /* made there */
    fp = fopen(dir, "w");
    assert_non_null(fp);
    fputs("half a header", fp);
    fclose(fp);
    assert_int_equal(cvd_volumes_recover(&f->d), 0);
    assert_int_equal(cvd_volume_get(&f->d, "c1", &v), 0);
    assert_string_equal(v.state, CVD_VOL_PENDING);
    assert_string_equal(v.wait_secret, "s");
    assert_string_equal(v.secret, "");
    assert_false(exists(dir));
    assert_false(exists(v.path));
    assert_int_equal(cvd_volumes_retry_pending(&f->d, "s"), 1);
    assert_string_equal(state_of(f, "c1"), CVD_VOL_READY);
    open_through_resolve(f, "c1", 4 * MiB);
}

static void class_req(void **state)
{
    struct fixture *f = *state;
    struct cvd_class_rec g = { .name = "gold", .encrypted = 1,
                               .secret = "shared", .type = "luks1",
                               .aes_bits = 128, .replicas = 1 };
    struct cvd_class_rec t = { .name = "per", .encrypted = 1,
                               .secret_template = "${class.name}-${volume.name}",
                               .type = "luks2", .aes_bits = 256,
                               .replicas = 1 };
    struct cvd_class_rec p = { .name = "none", .type = "luks2",
                               .aes_bits = 256, .replicas = 1 };
    struct cvd_class_rec big = { .name = "big", .encrypted = 1,
                                 .type = "luks2", .aes_bits = 256,
                                 .replicas = 3 };
    struct cvd_volume_req r;
    struct cvd_volume_rec v;

    assert_int_equal(f->d.meta->ops->class_add(f->d.meta, &g), 0);
    assert_int_equal(f->d.meta->ops->class_add(f->d.meta, &t), 0);
    assert_int_equal(f->d.meta->ops->class_add(f->d.meta, &p), 0);
    assert_int_equal(f->d.meta->ops->class_add(f->d.meta, &big), 0);
    assert_int_equal(cvd_secret_create(&f->d, "shared", "s3cret", 6), 0);
    r = req("g1", 4 * MiB);
    r.class_name = "gold";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_string_equal(v.state, CVD_VOL_READY);
    assert_string_equal(v.type, "luks1");
    assert_int_equal(v.key_bits, 256);
    assert_string_equal(v.secret, "shared");
    assert_string_equal(v.class_name, "gold");
    r = req("v9", 4 * MiB);
    r.class_name = "per";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_string_equal(v.state, CVD_VOL_PENDING);
    assert_string_equal(v.wait_secret, "per-v9");
    r = req("raw", 4 * MiB);
    r.class_name = "none";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_string_equal(v.type, "plaintext");
    /* Settings the class makes cannot also be given. */
    r = req("x", 4 * MiB);
    r.class_name = "gold";
    r.secret = "shared";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), -EINVAL);
    assert_string_equal(cv_last_error(), "volume x: \"secret\" conflicts with "
                        "class gold (the class sets type, cipher, secret and "
                        "encryption)");
    r = req("x", 4 * MiB);
    r.class_name = "big";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), -EINVAL);
    assert_string_equal(cv_last_error(), "volume x: class big asks for 3 "
                        "replicas; this cluster has 1 node");
    r.class_name = "tin";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), -ENOENT);
    assert_string_equal(cv_last_error(), "volume x: class tin: no such class");
    assert_int_equal(cvd_volume_get(&f->d, "x", &v), -ENOENT);
    /* A class in use stays. */
    assert_int_equal(f->d.meta->ops->class_remove(f->d.meta, "per",
                                                  (char[CVD_NAME_MAX + 1]){ 0 }),
                     -EBUSY);
}

/* Opens the volume's file with pass: 1, 0 (wrong key), or an error. */
static int file_opens(const char *path, const char *pass)
{
    struct cv_backend *b;
    struct cv_luks *l;
    unsigned char *key;
    size_t len;
    int r;

    assert_int_equal(cv_backend_file_open(path, 0, &b), 0);
    assert_int_equal(cv_luks_load(b, &l), 0);
    r = cv_luks_unlock(l, pass, strlen(pass), &key, &len);
    if (r >= 0)
        cv_secmem_free(key, len);
    cv_luks_free(l);
    cv_backend_close(b);
    return r >= 0 ? 1 : r == -CV_EWRONGKEY ? 0 : r;
}

static int keyslots(const char *path)
{
    struct cv_backend *b;
    struct cv_luks *l;
    struct cv_luks_info info;

    assert_int_equal(cv_backend_file_open(path, 0, &b), 0);
    assert_int_equal(cv_luks_load(b, &l), 0);
    assert_int_equal(cv_luks_info(l, &info), 0);
    cv_luks_free(l);
    cv_backend_close(b);
    return info.nslots;
}

static void rekey(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("k1", 4 * MiB);
    struct cvd_volume_rec v;
    struct cvd_secret_rec s;

    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);  /* generated */
    assert_int_equal(cvd_secret_create(&f->d, "new", "new pass", 8), 0);
    served = "k1";                       /* online: allowed while served */
    assert_int_equal(cvd_volume_rekey(&f->d, "k1", "new", &v), 0);
    served = NULL;
    assert_string_equal(v.secret, "new");
    assert_string_equal(v.state, CVD_VOL_READY);
    assert_int_equal(file_opens(v.path, "new pass"), 1);
    assert_int_equal(keyslots(v.path), 1);
    /* The generated secret is no longer used: gone. */
    assert_int_equal(f->d.meta->ops->secret_get(f->d.meta, "k1", &s), -ENOENT);
    open_through_resolve(f, "k1", 4 * MiB);
    /* Again to the same: nothing to do. */
    assert_int_equal(cvd_volume_rekey(&f->d, "k1", "new", &v), 0);
    /* To a secret with the same value: only the record changes. */
    assert_int_equal(cvd_secret_create(&f->d, "same", "new pass", 8), 0);
    assert_int_equal(cvd_volume_rekey(&f->d, "k1", "same", &v), 0);
    assert_string_equal(v.secret, "same");
    assert_int_equal(file_opens(v.path, "new pass"), 1);
    assert_int_equal(keyslots(v.path), 1);
    assert_int_equal(cvd_secret_delete(&f->d, "new"), 0);  /* a user's: kept */
}

static void rekey_refusals(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("k2", 4 * MiB);
    struct cvd_volume_rec v;
    unsigned char before[4096], after[4096];
    FILE *fp;

    assert_int_equal(cvd_secret_create(&f->d, "old", "old pass", 8), 0);
    assert_int_equal(cvd_secret_create(&f->d, "new", "new pass", 8), 0);
    r.secret = "old";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_int_equal(cvd_volume_rekey(&f->d, "k2", "nope", &v), -ENOENT);
    assert_string_equal(cv_last_error(),
                        "volume k2: secret \"nope\" does not exist");
    assert_int_equal(cvd_volume_rekey(&f->d, "k2", "a/b", &v), -EINVAL);
    assert_int_equal(cvd_volume_rekey(&f->d, "nope", "new", &v), -ENOENT);
    /* The stored secret no longer opens the header: nothing is written. */
    {
        struct cv_backend *b;
        struct cv_luks *l;
        assert_int_equal(cv_backend_file_open(v.path, 0, &b), 0);
        assert_int_equal(cv_luks_load(b, &l), 0);
        assert_true(cv_luks_change_key(l, "old pass", 8, "other", 5,
                                       &f->d.cfg.pbkdf) >= 0);
        cv_luks_free(l);
        cv_backend_close(b);
    }
    fp = fopen(v.path, "r");
    assert_int_equal(fread(before, 1, sizeof before, fp), sizeof before);
    fclose(fp);
    assert_int_equal(cvd_volume_rekey(&f->d, "k2", "new", &v), -CV_EWRONGKEY);
    assert_string_equal(cv_last_error(),
                        "volume k2: wrong key: its secret opens no keyslot");
    fp = fopen(v.path, "r");
    assert_int_equal(fread(after, 1, sizeof after, fp), sizeof after);
    fclose(fp);
    assert_memory_equal(before, after, sizeof before);
    assert_int_equal(cvd_volume_get(&f->d, "k2", &v), 0);
    assert_string_equal(v.state, CVD_VOL_READY);
    assert_string_equal(v.secret, "old");
    assert_int_equal(file_opens(v.path, "new pass"), 0);
    /* Plaintext and pending volumes have nothing to rekey. */
    r = req("raw", 1 * MiB);
    r.plaintext = 1;
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_int_equal(cvd_volume_rekey(&f->d, "raw", "new", &v), -EINVAL);
    assert_string_equal(cv_last_error(), "volume raw: is not encrypted "
                        "(plaintext); it has no key to change");
    /* One that only a cluster KEK token opens has no secret to move. */
    r = req("kek", 4 * MiB);
    r.secret = "old";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    v.secret[0] = '\0';
    assert_int_equal(f->d.meta->ops->volume_update(f->d.meta, &v,
                                                   CVD_VOL_READY), 0);
    assert_int_equal(cvd_volume_rekey(&f->d, "kek", "new", &v), -EINVAL);
    assert_string_equal(cv_last_error(), "volume kek: has no secret to move "
                        "from: only the cluster KEK opens it");
    r = req("p", 4 * MiB);
    r.secret = "missing";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_int_equal(cvd_volume_rekey(&f->d, "p", "new", &v), -EBUSY);
    assert_string_equal(cv_last_error(),
                        "volume p: is Pending: waiting for secret \"missing\"");
}

/* Killed mid-rekey: before the new keyslot was written the volume stays
 * with its secret; after, the move is finished. */
static void recover_rekeying(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r;
    struct cvd_volume_rec a, b;
    char used_by[CVD_NAME_MAX + 1];
    struct cv_backend *be;
    struct cv_luks *l;

    assert_int_equal(cvd_secret_create(&f->d, "old", "old pass", 8), 0);
    assert_int_equal(cvd_secret_create(&f->d, "new", "new pass", 8), 0);
    r = req("a", 4 * MiB);
    r.secret = "old";
    assert_int_equal(cvd_volume_create(&f->d, &r, &a), 0);
    r = req("b", 4 * MiB);
    assert_int_equal(cvd_volume_create(&f->d, &r, &b), 0);  /* generated */
    snprintf(a.wait_secret, sizeof a.wait_secret, "new");
    snprintf(a.state, sizeof a.state, CVD_VOL_REKEYING);
    assert_int_equal(f->d.meta->ops->volume_update(f->d.meta, &a,
                                                   CVD_VOL_READY), 0);
    snprintf(b.wait_secret, sizeof b.wait_secret, "new");
    snprintf(b.state, sizeof b.state, CVD_VOL_REKEYING);
    assert_int_equal(f->d.meta->ops->volume_update(f->d.meta, &b,
                                                   CVD_VOL_READY), 0);
    /* The secret being moved to cannot go meanwhile. */
    assert_int_equal(f->d.meta->ops->secret_remove(f->d.meta, "new", used_by),
                     -EBUSY);
    /* b's new keyslot was written; a's was not. */
    {
        struct cv_secret gen;
        assert_int_equal(cvd_meta_secret_value(f->d.meta, "b", &gen), 0);
        assert_int_equal(cv_backend_file_open(b.path, 0, &be), 0);
        assert_int_equal(cv_luks_load(be, &l), 0);
        assert_true(cv_luks_add_key(l, gen.data, gen.len, "new pass", 8,
                                    &f->d.cfg.pbkdf) >= 0);
        cv_luks_free(l);
        cv_backend_close(be);
        cv_secret_free(&gen);
    }
    assert_int_equal(keyslots(b.path), 2);
    assert_int_equal(cvd_volumes_recover(&f->d), 0);
    assert_int_equal(cvd_volume_get(&f->d, "a", &a), 0);
    assert_string_equal(a.state, CVD_VOL_READY);
    assert_string_equal(a.secret, "old");
    assert_string_equal(a.wait_secret, "");
    assert_int_equal(file_opens(a.path, "old pass"), 1);
    assert_int_equal(cvd_volume_get(&f->d, "b", &b), 0);
    assert_string_equal(b.state, CVD_VOL_READY);
    assert_string_equal(b.secret, "new");
    assert_int_equal(keyslots(b.path), 1);
    assert_int_equal(file_opens(b.path, "new pass"), 1);
    open_through_resolve(f, "a", 4 * MiB);
    open_through_resolve(f, "b", 4 * MiB);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(create_generated_secret),
        T(create_named_secret_luks1),
        T(create_plaintext),
        T(create_refuses_bad_input),
        T(create_is_atomic),
        T(create_conflicts),
        T(resize),
        T(grow_commit_fails),
        T(growing_served_and_recovered),
        T(resize_refusals),
        T(busy_while_served),
        T(delete_removes_generated_secret),
        T(recover),
        T(delete_undo_fails),
        T(resolve_errors),
        T(pending_until_secret),
        T(pending_delete),
        T(pending_retry_thread),
        T(recover_creating_from_pending),
        T(class_req),
        T(rekey),
        T(rekey_refusals),
        T(recover_rekeying),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

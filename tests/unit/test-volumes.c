/* Volume and secret management (daemon/volumes/volumes.c, secrets.c,
 * volumes-serve.c, volumes-store.c, volumes-unlock.c) on a real data
 * directory of layer chains, through the real export registry, without
 * the HTTP layer or the NBD server.  "Served" is what a connection does:
 * cvd_export_get, holding the export with a named client. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include "store/chain.h"
#include "daemon.h"
#include "keys/cluster-kek.h"
#include "core/error.h"
#include "keys/keyring.h"
#include "export/export.h"
#include "meta/meta.h"
#include "volumes/jobs.h"
#include "volumes/volumes-util.h"
#include "luks/luks.h"
#include "core/secmem.h"
#include "image/volume.h"
#include "volumes/volumes.h"

#define MiB (1ull << 20)

/* A served volume's one client, as the NBD server would hold it. */
static struct cvd_export_holder client = {
    .peer = "127.0.0.1:40312", .identity = "CN=alice", .size = 4 << 20,
};

struct fixture {
    char dir[256];
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
    if (cvd_meta_open_sqlite(f->dir, &f->d.meta) < 0)
        return -1;
    /* The cluster layer, encryption off until a test enables it. */
    f->d.cfg.node_name = "node1";
    pthread_mutex_init(&f->d.header_lock, NULL);
    pthread_mutex_init(&f->d.nbd_lock, NULL);
    if (cvd_keyring_new(&f->d, &f->d.keys) < 0 ||
        cvd_cluster_new(&f->d, &f->d.cluster) < 0)
        return -1;
    /* The registry the daemon runs, on the daemon's own callbacks: every
     * volume operation reaches the chain through it. */
    if (cvd_registry_new(cvd_volumes_resolve, cvd_volumes_unlock,
                         cvd_volumes_list, &f->d, NULL, &f->d.reg) < 0 ||
        cvd_jobs_new(&f->d.jobs) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[PATH_MAX + 16];

    cvd_jobs_free(f->d.jobs);
    cvd_registry_free(f->d.reg);
    cvd_cluster_free(f->d.cluster);
    cvd_keyring_free(f->d.keys);
    cvd_meta_close(f->d.meta);
    pthread_mutex_destroy(&f->d.nbd_lock);
    pthread_mutex_destroy(&f->d.header_lock);
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

/* DATA-DIR/volumes/NAME, the chain directory a record must name. */
static void chain_dir(struct fixture *f, const char *name, char *buf,
                      size_t len)
{
    snprintf(buf, len, "%s/volumes/%s", f->dir, name);
}

/* The head layer's file of the chain at path (layer-NNNNNN). */
static void head_file(const char *path, char *buf, size_t len)
{
    struct cv_chain_layer_info *li;
    struct cv_chain *c;
    size_t n, i;
    unsigned id = 0;

    assert_int_equal(cv_chain_open(path, NULL, CV_CHAIN_READONLY, &c), 0);
    assert_int_equal(cv_chain_layers(c, &li, &n), 0);
    for (i = 0; i < n; i++)
        if (li[i].head)
            id = li[i].id;
    free(li);
    cv_chain_close(c);
    assert_true(id > 0);
    snprintf(buf, len, "%s/layer-%06u", path, id);
    assert_true(exists(buf));
}

/* The raw size of the chain at path as the store reports it (the
 * header's bytes and the head's), checked against the head file's length
 * on disk: layers are image-shaped. */
static uint64_t chain_size(const char *path)
{
    char head[PATH_MAX + 32];
    struct cv_chain *c;
    uint64_t size;

    assert_int_equal(cv_chain_open(path, NULL, CV_CHAIN_READONLY, &c), 0);
    size = cv_chain_size(c);
    cv_chain_close(c);
    head_file(path, head, sizeof head);
    assert_int_equal(file_size(head), size);
    return size;
}

/* Sets the chain's raw size by hand, durably: what a resize the daemon
 * did not finish leaves. */
static void resize_chain(const char *path, uint64_t raw)
{
    struct cv_chain *c;

    assert_int_equal(cv_chain_open(path, NULL, 0, &c), 0);
    assert_int_equal(cv_chain_resize(c, raw), 0);
    assert_int_equal(cv_chain_flush(c), 0);
    cv_chain_close(c);
}

/* Opens the volume the way a connection does: through the registry
 * (resolve for serving, then the chain, then the keys), and reads its
 * last sector; a read past the size it serves is refused. */
static void open_through_resolve(struct fixture *f, const char *name,
                                 uint64_t size)
{
    struct cvd_volume_spec spec;
    struct cvd_export *e;
    struct cv_volume *v;
    char want[PATH_MAX], buf[4096];

    assert_int_equal(cvd_volumes_resolve(&f->d, name, 1, &spec), 0);
    assert_int_equal(spec.plaintext, 0);
    chain_dir(f, name, want, sizeof want);
    assert_string_equal(spec.path, want);
    cvd_volume_spec_free(&spec);
    if (cvd_export_get(f->d.reg, name, &e) < 0)
        fail_msg("volume %s: not served: %s", name, cv_last_error());
    v = cvd_export_volume(e);
    assert_non_null(v);
    assert_int_equal(cvd_export_flags(e) & CVD_EXPORT_PLAINTEXT, 0);
    assert_int_equal(cv_volume_size(v), size);
    assert_int_equal(cvd_export_size(e), size);
    assert_int_equal(cvd_export_pread(e, buf, sizeof buf, size - sizeof buf),
                     0);
    assert_int_equal(cvd_export_pread(e, buf, sizeof buf, size), -ERANGE);
    cvd_export_put(e);
}

/* Serves name to the named client, as the NBD server does after
 * NBD_OPT_GO; unserve lets go. */
static struct cvd_export *serve(struct fixture *f, const char *name)
{
    struct cvd_export *e = NULL;

    assert_int_equal(cvd_export_get(f->d.reg, name, &e), 0);
    cvd_export_hold(e, &client);
    return e;
}

static void unserve(struct cvd_export *e)
{
    cvd_export_unhold(e, &client);
    cvd_export_put(e);
}

static void create_generated_secret(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("v1", 8 * MiB);
    struct cvd_volume_rec v;
    struct cvd_secret_rec s;
    char path[PATH_MAX + 16];
    struct cv_chain *c;

    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_string_equal(v.state, CVD_VOL_READY);
    assert_string_equal(v.type, "luks2");
    assert_string_equal(v.cipher, "aes-xts-plain64");
    assert_int_equal(v.key_bits, 512);
    assert_int_equal(v.sector_size, 4096);
    assert_string_equal(v.secret, "v1");
    assert_int_equal(strlen(v.uuid), 36);
    /* A chain directory, its header as long as the LUKS header says. */
    chain_dir(f, "v1", path, sizeof path);
    assert_string_equal(v.path, path);
    assert_int_equal(chain_size(v.path), v.data_offset + 8 * MiB);
    snprintf(path, sizeof path, "%s/header", v.path);
    assert_int_equal(file_size(path), v.data_offset);
    assert_int_equal(cv_chain_open(v.path, NULL, CV_CHAIN_READONLY, &c), 0);
    assert_int_equal(cv_chain_data_offset(c), v.data_offset);
    cv_chain_close(c);
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
    char aside[PATH_MAX + 32];

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
    snprintf(aside, sizeof aside, "%s%s", v.path, CVD_DELETING_SUFFIX);
    assert_false(exists(aside));
    assert_int_equal(cvd_secret_delete(&f->d, "pw"), 0);
}

static void create_plaintext(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("raw", 1 * MiB);
    struct cvd_volume_spec spec;
    struct cvd_volume_rec v;
    struct cvd_secret_rec *all;
    struct cvd_export *e;
    size_t n;

    r.plaintext = 1;
    r.secret = "x";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), -EINVAL);
    r.secret = NULL;
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_string_equal(v.type, "plaintext");
    assert_string_equal(v.secret, "");
    assert_int_equal(chain_size(v.path), 1 * MiB);
    assert_int_equal(cvd_volumes_resolve(&f->d, "raw", 1, &spec), 0);
    assert_int_equal(spec.plaintext, 1);
    cvd_volume_spec_free(&spec);
    /* Served raw: nothing is unlocked (there is no key to derive). */
    assert_int_equal(cvd_export_get(f->d.reg, "raw", &e), 0);
    assert_int_equal(cvd_export_flags(e) & CVD_EXPORT_PLAINTEXT,
                     CVD_EXPORT_PLAINTEXT);
    assert_null(cvd_export_volume(e));
    assert_int_equal(cvd_export_size(e), 1 * MiB);
    cvd_export_put(e);
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
    char path[PATH_MAX + 32], aside[PATH_MAX + 48];
    FILE *fp;

    snprintf(path, sizeof path, "%s/volumes", f->dir);
    mkdir(path, 0700);
    chain_dir(f, "v2", path, sizeof path);
    snprintf(aside, sizeof aside, "%s%s", path, CVD_CREATING_SUFFIX);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("someone else's", fp);
    fclose(fp);
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), -EEXIST);
    assert_non_null(strstr(cv_last_error(), "already exists with no volume record"));
    assert_int_equal(file_size(path), 14);
    assert_false(exists(aside));
    assert_int_equal(cvd_volume_get(&f->d, "v2", &v), -ENOENT);
    assert_int_equal(f->d.meta->ops->secret_get(f->d.meta, "v2", &s), -ENOENT);
    /* A format failure (size too large for the file system) too. */
    unlink(path);
    r.size = 1ull << 59;
    assert_true(cvd_volume_create(&f->d, &r, &v) < 0);
    assert_false(exists(path));
    assert_false(exists(aside));
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
    assert_int_equal(chain_size(v.path), v.data_offset + 16 * MiB);
    open_through_resolve(f, "v5", 16 * MiB);
    assert_int_equal(cvd_volume_resize(&f->d, "v5", 4 * MiB, 0, &v), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "allowShrink"));
    assert_int_equal(cvd_volume_resize(&f->d, "v5", 4 * MiB + 1, 1, &v), -EINVAL);
    assert_int_equal(cvd_volume_resize(&f->d, "v5", 4 * MiB, 1, &v), 0);
    assert_int_equal(cvd_volume_get(&f->d, "v5", &v), 0);
    assert_int_equal(v.size, 4 * MiB);
    assert_string_equal(v.state, CVD_VOL_READY);
    assert_int_equal(chain_size(v.path), v.data_offset + 4 * MiB);
    open_through_resolve(f, "v5", 4 * MiB);
    assert_int_equal(cvd_volume_resize(&f->d, "nope", 4 * MiB, 1, &v), -ENOENT);
}

static void busy_while_served(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("v6", 4 * MiB);
    struct cvd_volume_rec v;
    struct cvd_export *e;

    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    e = serve(f, "v6");
    assert_int_equal(cvd_export_size(e), 4 * MiB);
    /* A grow works online and tells the registry (new connections get
     * the new size); a shrink does not, and names the client. */
    assert_int_equal(cvd_volume_resize(&f->d, "v6", 8 * MiB, 0, &v), 0);
    assert_int_equal(v.size, 8 * MiB);
    assert_int_equal(cvd_export_size(e), 8 * MiB);
    assert_int_equal(cv_volume_size(cvd_export_volume(e)), 8 * MiB);
    assert_int_equal(cvd_volume_clients_older(&f->d, "v6", 8 * MiB), 1);
    assert_int_equal(cvd_volume_resize(&f->d, "v6", 4 * MiB, 1, &v), -EBUSY);
    assert_string_equal(cv_last_error(), "volume v6: in use by 1 NBD client "
                        "(127.0.0.1:40312 CN=alice); shrinking it needs "
                        "every client disconnected");
    assert_int_equal(cvd_volume_resize(&f->d, "v6", 4 * MiB, 0, &v), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "is 8.0 MiB now"));
    assert_int_equal(cvd_volume_get(&f->d, "v6", &v), 0);
    assert_int_equal(v.size, 8 * MiB);
    assert_int_equal(cvd_export_size(e), 8 * MiB);
    assert_int_equal(cv_chain_size(cvd_export_chain(e)),
                     v.data_offset + 8 * MiB);
    assert_int_equal(cvd_volume_delete(&f->d, "v6"), -EBUSY);
    assert_non_null(strstr(cv_last_error(), "in use by 1 NBD client "
                           "(127.0.0.1:40312 CN=alice); deleting it"));
    assert_int_equal(cvd_volume_get(&f->d, "v6", &v), 0);
    assert_string_equal(v.state, CVD_VOL_READY);
    assert_true(exists(v.path));
    unserve(e);
    assert_int_equal(chain_size(v.path), v.data_offset + 8 * MiB);
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
 * and removes only chains whose removal was committed: a create's
 * ".creating" one and a committed delete's ".deleting" one. */
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
    /* a was being created (its chain still under the .creating name), b
     * resized to 8 MiB, c deleted (committed: renamed to .deleting), d's
     * refused delete could not be put back (chain at its own path), e was
     * being created with a chain at its own path (not known to be ours). */
    snprintf(a.state, sizeof a.state, CVD_VOL_CREATING);
    assert_int_equal(f->d.meta->ops->volume_update(f->d.meta, &a, CVD_VOL_READY), 0);
    aside(&a, CVD_CREATING_SUFFIX, path, sizeof path);
    assert_int_equal(rename(a.path, path), 0);
    snprintf(b.state, sizeof b.state, CVD_VOL_RESIZING);
    assert_int_equal(f->d.meta->ops->volume_update(f->d.meta, &b, CVD_VOL_READY), 0);
    resize_chain(b.path, b.data_offset + 8 * MiB);
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
    open_through_resolve(f, "b", 8 * MiB);
    assert_int_equal(cvd_volume_get(&f->d, "c", &c), -ENOENT);
    aside(&c, CVD_DELETING_SUFFIX, path, sizeof path);
    assert_false(exists(path));
    assert_false(exists(c.path));
    assert_int_equal(cvd_volume_get(&f->d, "d", &d), 0);
    assert_string_equal(d.state, CVD_VOL_READY);
    assert_true(exists(d.path));
    open_through_resolve(f, "d", 4 * MiB);
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
static struct fixture *connecting;      /* whose registry it connects to */
static struct cvd_export *late;         /* the client that connected */

static int failing_update(struct cvd_meta *m, struct cvd_volume_rec *v,
                          const char *expect)
{
    if (updates_seen++ == 0) {
        /* Between the claim's first check and its move: still served. */
        late = serve(connecting, v->name);
        return real_ops->volume_update(m, v, expect);
    }
    return cv_error(-EIO, "metadata: injected write failure");
}

/* Every file of the chain at path, in name order, each name followed by
 * its bytes: what "untouched" is compared on. */
static char *read_all(const char *path, size_t *len)
{
    struct dirent **list;
    char file[PATH_MAX + 300], *buf = NULL;
    size_t used = 0;
    int n = scandir(path, &list, NULL, alphasort), i;

    assert_true(n > 2);
    for (i = 0; i < n; i++) {
        const char *name = list[i]->d_name;
        size_t nl = strlen(name) + 1, fl;
        struct stat st;
        FILE *fp;

        snprintf(file, sizeof file, "%s/%s", path, name);
        if (name[0] != '.' && lstat(file, &st) == 0 && S_ISREG(st.st_mode)) {
            fl = (size_t)st.st_size;
            buf = realloc(buf, used + nl + fl);
            assert_non_null(buf);
            memcpy(buf + used, name, nl);
            used += nl;
            fp = fopen(file, "rb");
            assert_non_null(fp);
            assert_int_equal(fread(buf + used, 1, fl, fp), fl);
            fclose(fp);
            used += fl;
        }
        free(list[i]);
    }
    free(list);
    *len = used;
    return buf;
}

/* A refused delete whose undo fails: the error says so, the record stays
 * deleting with the chain untouched, and the next start puts the volume
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
    connecting = f;
    late = NULL;
    f->d.meta->ops = &fake;
    assert_int_equal(cvd_volume_delete(&f->d, "keep"), -EBUSY);
    f->d.meta->ops = real_ops;
    assert_non_null(late);
    assert_non_null(strstr(cv_last_error(), "volume keep: in use by 1 NBD "
                           "client (127.0.0.1:40312 CN=alice); deleting it "
                           "needs every client disconnected"));
    assert_non_null(strstr(cv_last_error(), "until the daemon restarts"));
    assert_non_null(strstr(cv_last_error(), "injected write failure"));
    assert_string_equal(state_of(f, "keep"), CVD_VOL_DELETING);
    assert_true(exists(v.path));
    unserve(late);              /* the client left; the daemon restarts */
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
static int commit_fails(struct cvd_meta *m, struct cvd_volume_rec *v,
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
    struct cvd_export *e;

    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    e = serve(f, "g1");
    real_ops = f->d.meta->ops;
    fake = *real_ops;
    fake.volume_update = commit_fails;
    updates_seen = 0;
    f->d.meta->ops = &fake;
    assert_int_equal(cvd_volume_resize(&f->d, "g1", 8 * MiB, 0, &v), -EIO);
    f->d.meta->ops = real_ops;
    assert_non_null(strstr(cv_last_error(), "injected write failure"));
    assert_int_equal(cvd_volume_get(&f->d, "g1", &v), 0);
    assert_string_equal(v.state, CVD_VOL_READY);
    assert_int_equal(v.size, 4 * MiB);
    /* Not told: new connections still get the old size, and the chain the
     * registry holds is back at it. */
    assert_int_equal(cvd_export_size(e), 4 * MiB);
    assert_int_equal(cv_volume_size(cvd_export_volume(e)), 4 * MiB);
    assert_int_equal(cv_chain_size(cvd_export_chain(e)),
                     v.data_offset + 4 * MiB);
    unserve(e);
    assert_int_equal(chain_size(v.path), v.data_offset + 4 * MiB);
    open_through_resolve(f, "g1", 4 * MiB);
}

/* While growing the volume is served at its recorded size, also when the
 * chain is already longer; a start settles a cut-off grow (or shrink) at
 * the chain's size, old or new. */
static void growing_served_and_recovered(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("g2", 4 * MiB);
    struct cvd_volume_spec spec;
    struct cvd_volume_desc desc;
    struct cvd_volume_rec v;
    struct cvd_export *e;
    char buf[4096];

    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    snprintf(v.state, sizeof v.state, CVD_VOL_GROWING);
    assert_int_equal(f->d.meta->ops->volume_update(f->d.meta, &v,
                                                   CVD_VOL_READY), 0);
    resize_chain(v.path, v.data_offset + 8 * MiB);
    assert_int_equal(cvd_volumes_resolve(&f->d, "g2", 1, &spec), 0);
    assert_int_equal(spec.size, 4 * MiB);
    cvd_volume_spec_free(&spec);
    assert_int_equal(cvd_export_get(f->d.reg, "g2", &e), 0);
    assert_int_equal(cvd_export_size(e), 4 * MiB);
    assert_int_equal(cv_volume_size(cvd_export_volume(e)), 4 * MiB);
    assert_int_equal(cvd_export_pread(e, buf, sizeof buf, 4 * MiB), -ERANGE);
    cvd_export_put(e);
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
    resize_chain(v.path, v.data_offset + 4 * MiB);
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
    struct cvd_export *e;

    assert_int_equal(cvd_volumes_resolve(&f->d, "nope", 1, &spec), -ENOENT);
    assert_string_equal(cv_last_error(), "volume nope: no such volume");
    assert_int_equal(cvd_volumes_resolve(&f->d, "nope", 0, &spec), -ENOENT);
    assert_int_equal(cvd_volumes_resolve(&f->d, "../x", 1, &spec), -ENOENT);
    /* What a connection naming it gets. */
    assert_int_equal(cvd_export_get(f->d.reg, "nope", &e), -ENOENT);
    assert_string_equal(cv_last_error(), "volume nope: no such volume");
    assert_int_equal(cvd_export_get(f->d.reg, "../x", &e), -ENOENT);
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
    struct cvd_export *e;
    char used_by[CVD_NAME_MAX + 1];

    r.secret = "db-1";
    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);
    assert_string_equal(v.state, CVD_VOL_PENDING);
    assert_string_equal(v.wait_secret, "db-1");
    assert_string_equal(v.secret, "");
    assert_int_equal(v.key_bits, 512);
    assert_false(exists(v.path));
    /* Not served, and says why; not resized; not listed. */
    assert_int_equal(cvd_volumes_resolve(&f->d, "db1", 1, &spec), -EBUSY);
    assert_string_equal(cv_last_error(),
                        "volume db1: is Pending: waiting for secret \"db-1\"");
    assert_int_equal(cvd_export_get(f->d.reg, "db1", &e), -EBUSY);
    assert_string_equal(cv_last_error(),
                        "volume db1: is Pending: waiting for secret \"db-1\"");
    /* Nor opened for the daemon's own work: it has no chain yet. */
    assert_int_equal(cvd_volumes_resolve(&f->d, "db1", 0, &spec), -EBUSY);
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
    assert_int_equal(chain_size(v.path), v.data_offset + 4 * MiB);
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

/* Killed while a pending volume was being made: back to pending, no
 * chain; then made again. */
static void recover_creating_from_pending(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("c1", 4 * MiB);
    struct cvd_volume_rec v;
    char dir[PATH_MAX + 16], header[PATH_MAX + 32];
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
    /* Its chain made there, cut off while its header was written. */
    aside(&v, CVD_CREATING_SUFFIX, dir, sizeof dir);
    assert_int_equal(cv_chain_create(dir, 64 * MiB, 68 * MiB, NULL), 0);
    snprintf(header, sizeof header, "%s/header", dir);
    fp = fopen(header, "r+");
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

/* Opens the header of the volume's chain at path with pass: 1, 0 (wrong
 * key), or an error. */
static int file_opens(const char *path, const char *pass)
{
    struct cv_chain *c;
    struct cv_luks *l;
    unsigned char *key;
    size_t len;
    int r;

    assert_int_equal(cv_chain_open(path, NULL, CV_CHAIN_READONLY, &c), 0);
    assert_int_equal(cv_luks_load(cv_chain_backend(c), &l), 0);
    r = cv_luks_unlock(l, pass, strlen(pass), &key, &len);
    if (r >= 0)
        cv_secmem_free(key, len);
    cv_luks_free(l);
    cv_chain_close(c);
    return r >= 0 ? 1 : r == -CV_EWRONGKEY ? 0 : r;
}

static int keyslots(const char *path)
{
    struct cv_chain *c;
    struct cv_luks *l;
    struct cv_luks_info info;

    assert_int_equal(cv_chain_open(path, NULL, CV_CHAIN_READONLY, &c), 0);
    assert_int_equal(cv_luks_load(cv_chain_backend(c), &l), 0);
    assert_int_equal(cv_luks_info(l, &info), 0);
    cv_luks_free(l);
    cv_chain_close(c);
    return info.nslots;
}

/* The chain's header file's bytes (the whole LUKS header). */
static char *header_bytes(const char *path, size_t *len)
{
    char file[PATH_MAX + 16], *buf;
    FILE *fp;

    snprintf(file, sizeof file, "%s/header", path);
    *len = (size_t)file_size(file);
    assert_true(*len > 0);
    buf = malloc(*len);
    assert_non_null(buf);
    fp = fopen(file, "rb");
    assert_non_null(fp);
    assert_int_equal(fread(buf, 1, *len, fp), *len);
    fclose(fp);
    return buf;
}

static void rekey(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req r = req("k1", 4 * MiB);
    struct cvd_volume_rec v;
    struct cvd_secret_rec s;
    struct cvd_export *e;
    struct cv_luks *l;
    char buf[4096];

    assert_int_equal(cvd_volume_create(&f->d, &r, &v), 0);  /* generated */
    assert_int_equal(cvd_secret_create(&f->d, "new", "new pass", 8), 0);
    e = serve(f, "k1");                 /* online: allowed while served */
    assert_int_equal(cvd_volume_rekey(&f->d, "k1", "new", &v), 0);
    /* The served chain has the new header, and keeps serving. */
    assert_int_equal(cv_luks_load(cv_chain_backend(cvd_export_chain(e)), &l),
                     0);
    cv_luks_free(l);
    assert_int_equal(cvd_export_pread(e, buf, sizeof buf, 0), 0);
    unserve(e);
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
    char *before, *after;
    size_t len0, len1;

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
        struct cv_chain *c;
        struct cv_luks *l;
        assert_int_equal(cv_chain_open(v.path, NULL, 0, &c), 0);
        assert_int_equal(cv_luks_load(cv_chain_backend(c), &l), 0);
        assert_true(cv_luks_change_key(l, "old pass", 8, "other", 5,
                                       &f->d.cfg.pbkdf) >= 0);
        cv_luks_free(l);
        assert_int_equal(cv_chain_flush(c), 0);
        cv_chain_close(c);
    }
    before = header_bytes(v.path, &len0);
    assert_int_equal(cvd_volume_rekey(&f->d, "k2", "new", &v), -CV_EWRONGKEY);
    assert_string_equal(cv_last_error(),
                        "volume k2: wrong key: its secret opens no keyslot");
    after = header_bytes(v.path, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    free(before);
    free(after);
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
    struct cv_chain *c;
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
        assert_int_equal(cv_chain_open(b.path, NULL, 0, &c), 0);
        assert_int_equal(cv_luks_load(cv_chain_backend(c), &l), 0);
        assert_true(cv_luks_add_key(l, gen.data, gen.len, "new pass", 8,
                                    &f->d.cfg.pbkdf) >= 0);
        cv_luks_free(l);
        assert_int_equal(cv_chain_flush(c), 0);
        cv_chain_close(c);
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

/* An older data directory's single-file volume, made as cryptvold made
 * them before chains: DATA-DIR/volumes/NAME.img, formatted in a file with
 * room for any header and cut to the data offset plus size, size bytes of
 * data written through the image layer (plaintext: the file is the
 * data), and a record naming that file. */
static void make_single_file(struct fixture *f, const char *name,
                             int plaintext, const void *data, uint64_t size,
                             struct cvd_volume_rec *v)
{
    struct cv_format_params fp = { .luks_version = 2, .key_bits = 256,
                                   .new_store = 1, .keyslots = 4 };
    struct cv_luks_info info = { .cipher = "none", .sector_size = 512 };
    struct cv_backend *b;
    struct cv_volume *vol;
    struct cv_luks *l;
    char dir[PATH_MAX];
    int fd;

    fp.pbkdf = f->d.cfg.pbkdf;
    snprintf(dir, sizeof dir, "%s/volumes", f->dir);
    mkdir(dir, 0700);
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", name);
    snprintf(v->path, sizeof v->path, "%s/volumes/%s.img", f->dir, name);
    fd = open(v->path, O_CREAT | O_EXCL | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(cv_backend_file_open(v->path, 0, &b), 0);
    if (plaintext) {
        assert_int_equal(cv_backend_resize(b, size), 0);
        assert_int_equal(cv_backend_pwrite(b, data, size, 0, 0), 0);
    } else {
        assert_int_equal(cv_backend_resize(b, 64 * MiB + size), 0);
        assert_int_equal(cv_luks_format_open(b, &fp, "old pass", 8, &l), 0);
        assert_int_equal(cv_luks_info(l, &info), 0);
        cv_luks_free(l);
        assert_int_equal(cv_backend_resize(b, info.data_offset + size), 0);
        assert_int_equal(cv_volume_open(b, "old pass", 8, NULL, 0, &vol), 0);
        assert_int_equal(cv_volume_write(vol, data, size, 0, 0), 0);
        assert_int_equal(cv_volume_flush(vol), 0);
        cv_volume_close(vol);
    }
    assert_int_equal(cv_backend_flush(b), 0);
    cv_backend_close(b);
    v->size = size;
    snprintf(v->type, sizeof v->type, "%s", plaintext ? "plaintext" : "luks2");
    snprintf(v->cipher, sizeof v->cipher, "%s", info.cipher);
    snprintf(v->uuid, sizeof v->uuid, "%s", plaintext ? "" : info.uuid);
    snprintf(v->secret, sizeof v->secret, "%s", plaintext ? "" : "old");
    v->key_bits = plaintext ? 0 : info.key_bits;
    v->sector_size = info.sector_size;
    v->data_offset = plaintext ? 0 : info.data_offset;
    snprintf(v->state, sizeof v->state, CVD_VOL_READY);
    v->created = (int64_t)time(NULL);
    assert_int_equal(f->d.meta->ops->volume_add(f->d.meta, v, NULL), 0);
}

/* After the upgrade: the record names the chain DATA-DIR/volumes/NAME,
 * the old file is gone into it as its one layer (the same inode: no data
 * was copied), the header was copied out to "header" and punched from
 * the layer, and the registry serves the same plaintext. */
static void check_upgraded(struct fixture *f, const char *name,
                           const struct stat *old, const char *hdr,
                           const unsigned char *data, uint64_t size)
{
    struct cv_chain_layer_info *li;
    struct cvd_volume_rec v;
    struct cvd_export *e;
    struct cv_chain *c;
    struct stat st;
    char want[PATH_MAX], head[PATH_MAX + 32], *got;
    size_t n, len;
    int fd;

    assert_int_equal(cvd_volume_get(&f->d, name, &v), 0);
    assert_string_equal(v.state, CVD_VOL_READY);
    chain_dir(f, name, want, sizeof want);
    assert_string_equal(v.path, want);
    snprintf(want, sizeof want, "%s/volumes/%s.img", f->dir, name);
    assert_false(exists(want));
    assert_int_equal(cv_chain_open(v.path, NULL, CV_CHAIN_READONLY, &c), 0);
    assert_int_equal(cv_chain_layers(c, &li, &n), 0);
    assert_int_equal(n, 1);
    assert_true(li[0].head && li[0].own);
    assert_string_equal(li[0].snapshot, "");
    free(li);
    assert_int_equal(cv_chain_data_offset(c), v.data_offset);
    assert_int_equal(cv_chain_size(c), v.data_offset + size);
    cv_chain_close(c);
    head_file(v.path, head, sizeof head);
    assert_int_equal(stat(head, &st), 0);
    assert_int_equal(st.st_ino, old->st_ino);
    assert_int_equal(st.st_dev, old->st_dev);
    if (v.data_offset) {
        got = header_bytes(v.path, &len);
        assert_int_equal(len, v.data_offset);
        assert_memory_equal(got, hdr, len);
        free(got);
        fd = open(head, O_RDONLY);
        assert_true(fd >= 0);
        assert_int_equal(lseek(fd, 0, SEEK_DATA), (off_t)v.data_offset);
        close(fd);
    }
    got = malloc(size);
    assert_non_null(got);
    assert_int_equal(cvd_export_get(f->d.reg, name, &e), 0);
    assert_int_equal(cvd_export_size(e), size);
    assert_int_equal(cvd_export_pread(e, got, size, 0), 0);
    cvd_export_put(e);
    assert_memory_equal(got, data, size);
    free(got);
}

/* The file's first len bytes. */
static char *read_prefix(const char *path, size_t len)
{
    char *buf = malloc(len);
    FILE *fp = fopen(path, "rb");

    assert_non_null(buf);
    assert_non_null(fp);
    assert_int_equal(fread(buf, 1, len, fp), len);
    fclose(fp);
    return buf;
}

/* An older data directory (single-file volumes at volumes/NAME.img) is
 * upgraded at start: each volume becomes a chain of one layer in place,
 * also when the last start was cut off between the adopt and the
 * record's change. */
static void upgrade_single_file(void **state)
{
    struct fixture *f = *state;
    const uint64_t size = 4 * MiB, raw_size = 1 * MiB;
    struct cvd_volume_rec v, p, w;
    struct cvd_volume_req r = req("later", 4 * MiB);
    struct stat old_v, old_p;
    unsigned char *data = malloc(size);
    uint32_t x = 2463534242u;
    char *hdr, want[PATH_MAX];
    size_t i;

    assert_non_null(data);
    for (i = 0; i < size; i++) {        /* xorshift32: no run of zeros */
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data[i] = (unsigned char)x;
    }
    assert_int_equal(cvd_secret_create(&f->d, "old", "old pass", 8), 0);
    make_single_file(f, "old", 0, data, size, &v);
    make_single_file(f, "oldraw", 1, data, raw_size, &p);
    assert_int_equal(stat(v.path, &old_v), 0);
    assert_int_equal(stat(p.path, &old_p), 0);
    hdr = read_prefix(v.path, v.data_offset);
    /* A Pending volume of then: a record naming NAME.img, no file. */
    r.secret = "then";
    assert_int_equal(cvd_volume_create(&f->d, &r, &w), 0);
    assert_string_equal(w.state, CVD_VOL_PENDING);
    snprintf(w.path, sizeof w.path, "%s/volumes/later.img", f->dir);
    assert_int_equal(f->d.meta->ops->volume_update(f->d.meta, &w,
                                                   CVD_VOL_PENDING), 0);
    assert_int_equal(cvd_volumes_recover(&f->d), 0);
    check_upgraded(f, "old", &old_v, hdr, data, size);
    check_upgraded(f, "oldraw", &old_p, NULL, data, raw_size);
    open_through_resolve(f, "old", size);
    /* The Pending one now names where its chain will be, and is made
     * there once its secret exists. */
    assert_int_equal(cvd_volume_get(&f->d, "later", &w), 0);
    assert_string_equal(w.state, CVD_VOL_PENDING);
    chain_dir(f, "later", want, sizeof want);
    assert_string_equal(w.path, want);
    assert_int_equal(cvd_secret_create(&f->d, "then", "pass", 4), 0);
    assert_int_equal(cvd_volume_get(&f->d, "later", &w), 0);
    assert_string_equal(w.state, CVD_VOL_READY);
    assert_string_equal(w.path, want);
    assert_int_equal(chain_size(want), w.data_offset + 4 * MiB);
    open_through_resolve(f, "later", 4 * MiB);
    /* Cut after the adopt, before the record named the chain: the next
     * start finishes (the image is already the chain's layer). */
    assert_int_equal(cvd_volume_get(&f->d, "old", &v), 0);
    snprintf(v.path, sizeof v.path, "%s/volumes/old.img", f->dir);
    assert_int_equal(f->d.meta->ops->volume_update(f->d.meta, &v,
                                                   CVD_VOL_READY), 0);
    assert_int_equal(cvd_volumes_recover(&f->d), 0);
    check_upgraded(f, "old", &old_v, hdr, data, size);
    free(hdr);
    free(data);
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
        T(upgrade_single_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

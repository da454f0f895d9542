/* The metadata store (SQLite backend): records, transactions, sealing,
 * schema version, node key. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "meta/meta.h"
#include "keys/nodekey.h"

struct fixture {
    char dir[PATH_MAX];
    struct cvd_meta *m;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");

    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/cv-meta-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir) || cvd_meta_open_sqlite(f->dir, &f->m) < 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[PATH_MAX + 16];

    cvd_meta_close(f->m);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static void path_in(struct fixture *f, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", f->dir, name);
}

static struct cvd_volume_rec volume(const char *name, const char *secret)
{
    struct cvd_volume_rec v;

    memset(&v, 0, sizeof v);
    snprintf(v.name, sizeof v.name, "%s", name);
    snprintf(v.uuid, sizeof v.uuid, "uuid-%s", name);
    v.size = 1 << 20;
    snprintf(v.type, sizeof v.type, "luks2");
    snprintf(v.cipher, sizeof v.cipher, "aes-xts-plain64");
    v.key_bits = 512;
    v.sector_size = 4096;
    v.data_offset = 16 << 20;
    snprintf(v.secret, sizeof v.secret, "%s", secret ? secret : "");
    snprintf(v.path, sizeof v.path, "/data/volumes/%s.img", name);
    snprintf(v.state, sizeof v.state, CVD_VOL_READY);
    v.created = 1700000000;
    return v;
}

static void files_are_private(void **state)
{
    struct fixture *f = *state;
    char p[PATH_MAX + 16];
    struct stat st;

    path_in(f, "node.key", p, sizeof p);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, CVD_NODEKEY_LEN);
    path_in(f, "meta.db", p, sizeof p);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void schema_and_wal(void **state)
{
    struct fixture *f = *state;
    char p[PATH_MAX + 16];
    sqlite3 *db;
    sqlite3_stmt *st;

    path_in(f, "meta.db", p, sizeof p);
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 4);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    /* A file from a newer version is refused, not misread. */
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    cvd_meta_close(f->m);
    f->m = NULL;
    assert_int_equal(cvd_meta_open_sqlite(f->dir, &f->m), -ENOTSUP);
    assert_non_null(strstr(cv_last_error(), "schema version 99"));
}

static void reopen_keeps_records(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_rec v = volume("vol1", "s1"), got;
    struct cv_secret s;

    assert_int_equal(cvd_meta_secret_add(f->m, "s1", "pw", 2, NULL), 0);
    assert_int_equal(f->m->ops->volume_add(f->m, &v, NULL), 0);
    cvd_meta_close(f->m);
    assert_int_equal(cvd_meta_open_sqlite(f->dir, &f->m), 0);
    assert_int_equal(f->m->ops->volume_get(f->m, "vol1", &got), 0);
    assert_memory_equal(&got, &v, sizeof v);
    /* Same node key: the secret still unseals. */
    assert_int_equal(cvd_meta_secret_value(f->m, "s1", &s), 0);
    assert_int_equal(s.len, 2);
    assert_memory_equal(s.data, "pw", 2);
    cv_secret_free(&s);
}

static void nodekey_refused_if_readable(void **state)
{
    struct fixture *f = *state;
    char p[PATH_MAX + 16];
    unsigned char *key;

    path_in(f, "node.key", p, sizeof p);
    assert_int_equal(chmod(p, 0640), 0);
    assert_int_equal(cvd_nodekey_load(f->dir, &key), -EPERM);
    assert_null(key);
    assert_non_null(strstr(cv_last_error(), "node.key"));
    assert_non_null(strstr(cv_last_error(), "0640"));
    assert_int_equal(chmod(p, 0600), 0);
    assert_int_equal(cvd_nodekey_load(f->dir, &key), 0);
    assert_memory_equal(key, f->m->seal_key, CVD_NODEKEY_LEN);
    cvd_nodekey_free(key);
    /* A short (damaged) key is refused. */
    assert_int_equal(truncate(p, 16), 0);
    assert_int_equal(cvd_nodekey_load(f->dir, &key), -EINVAL);
}

static void volume_records(void **state)
{
    struct fixture *f = *state;
    const struct cvd_meta_ops *o = f->m->ops;
    struct cvd_volume_rec a = volume("a", "s"), b = volume("b", "s"), got, *all;
    size_t n;

    assert_int_equal(cvd_meta_secret_add(f->m, "s", "x", 1, NULL), 0);
    assert_int_equal(o->volume_add(f->m, &b, NULL), 0);
    assert_int_equal(o->volume_add(f->m, &a, NULL), 0);
    assert_int_equal(o->volume_add(f->m, &a, NULL), -EEXIST);
    assert_string_equal(cv_last_error(), "volume a: already exists");
    assert_int_equal(o->volume_get(f->m, "nope", &got), -ENOENT);
    assert_int_equal(o->volume_list(f->m, &all, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(all[0].name, "a");
    assert_string_equal(all[1].name, "b");
    free(all);

    /* Update is compare-and-set on the state. */
    a.size = 2 << 20;
    snprintf(a.state, sizeof a.state, CVD_VOL_RESIZING);
    assert_int_equal(o->volume_update(f->m, &a, CVD_VOL_READY), 0);
    assert_int_equal(o->volume_update(f->m, &a, CVD_VOL_READY), -EBUSY);
    assert_non_null(strstr(cv_last_error(), "is resizing"));
    assert_int_equal(o->volume_get(f->m, "a", &got), 0);
    assert_int_equal(got.size, 2 << 20);
    assert_string_equal(got.state, CVD_VOL_RESIZING);
    assert_int_equal(o->volume_remove(f->m, "a"), 0);
    assert_int_equal(o->volume_remove(f->m, "a"), -ENOENT);
    assert_int_equal(o->volume_list(f->m, &all, &n), 0);
    assert_int_equal(n, 1);
    free(all);
}

/* A volume naming a secret that does not exist is not added. */
static void volume_needs_secret(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_rec v = volume("db1", "missing"), p = volume("raw", NULL);
    struct cvd_volume_rec got;

    assert_int_equal(f->m->ops->volume_add(f->m, &v, NULL), -ENOENT);
    assert_string_equal(cv_last_error(), "volume db1: secret \"missing\" does not exist");
    assert_int_equal(f->m->ops->volume_get(f->m, "db1", &got), -ENOENT);
    /* A plaintext volume has no secret at all. */
    assert_int_equal(f->m->ops->volume_add(f->m, &p, NULL), 0);
    assert_int_equal(f->m->ops->volume_get(f->m, "raw", &got), 0);
    assert_string_equal(got.secret, "");
}

/* A volume and the secret generated for it go in together, or neither. */
static void volume_with_owned_secret(void **state)
{
    struct fixture *f = *state;
    const struct cvd_meta_ops *o = f->m->ops;
    struct cvd_volume_rec v = volume("db1", "db1"), other = volume("db2", "db1");
    struct cvd_secret_rec s, *all;
    struct cvd_volume_rec got;
    size_t n;

    assert_int_equal(cvd_meta_seal(f->m, "db1", "key", 3, "db1", &s), 0);
    assert_int_equal(o->volume_add(f->m, &v, &s), 0);
    /* Again: the secret's name is taken, and the volume is not added. */
    snprintf(v.name, sizeof v.name, "db3");
    assert_int_equal(o->volume_add(f->m, &v, &s), -EEXIST);
    assert_string_equal(cv_last_error(), "secret db1: already exists");
    assert_int_equal(o->volume_get(f->m, "db3", &got), -ENOENT);
    cvd_secret_rec_free(&s);

    assert_int_equal(o->secret_list(f->m, &all, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(all[0].owner, "db1");
    assert_null(all[0].sealed);
    free(all);

    /* Another volume uses db1's secret: deleting db1 keeps it. */
    assert_int_equal(o->volume_add(f->m, &other, NULL), 0);
    assert_int_equal(o->volume_remove(f->m, "db1"), 0);
    assert_int_equal(o->secret_list(f->m, &all, &n), 0);
    assert_int_equal(n, 1);
    free(all);
    /* Owned secrets go with the volume when nothing else uses them. */
    assert_int_equal(cvd_meta_secret_add(f->m, "db4", "k", 1, "db4"), 0);
    snprintf(v.name, sizeof v.name, "db4");
    snprintf(v.secret, sizeof v.secret, "db4");
    assert_int_equal(o->volume_add(f->m, &v, NULL), 0);
    assert_int_equal(o->volume_remove(f->m, "db4"), 0);
    assert_int_equal(o->secret_get(f->m, "db4", &s), -ENOENT);
}

static void secret_records(void **state)
{
    struct fixture *f = *state;
    const struct cvd_meta_ops *o = f->m->ops;
    struct cvd_volume_rec v = volume("db1", "s1");
    char used_by[CVD_NAME_MAX + 1];
    struct cv_secret val;

    assert_int_equal(cvd_meta_secret_add(f->m, "s1", "hunter2", 7, NULL), 0);
    assert_int_equal(cvd_meta_secret_add(f->m, "s1", "other", 5, NULL), -EEXIST);
    assert_int_equal(cvd_meta_secret_add(f->m, "bad/name", "x", 1, NULL), -EINVAL);
    assert_int_equal(cvd_meta_secret_value(f->m, "s1", &val), 0);
    assert_int_equal(val.len, 7);
    assert_memory_equal(val.data, "hunter2", 7);
    cv_secret_free(&val);
    assert_int_equal(cvd_meta_secret_value(f->m, "s2", &val), -ENOENT);
    assert_string_equal(cv_last_error(), "secret s2: no such secret");

    assert_int_equal(o->volume_add(f->m, &v, NULL), 0);
    assert_int_equal(o->secret_remove(f->m, "s1", used_by), -EBUSY);
    assert_string_equal(used_by, "db1");
    assert_string_equal(cv_last_error(), "secret s1: used by volume db1");
    assert_int_equal(o->volume_remove(f->m, "db1"), 0);
    /* Not owned by db1: still there. */
    assert_int_equal(o->secret_remove(f->m, "s1", used_by), 0);
    assert_int_equal(o->secret_remove(f->m, "s1", used_by), -ENOENT);
}

/* The value never reaches the file in clear. */
static void value_not_in_file(void **state)
{
    struct fixture *f = *state;
    const char value[] = "clear-text-passphrase-0123456789";
    char p[PATH_MAX + 16], *buf;
    struct stat st;
    FILE *fp;

    assert_int_equal(cvd_meta_secret_add(f->m, "s", value, sizeof value - 1, NULL), 0);
    cvd_meta_close(f->m);           /* checkpoints the WAL into the file */
    f->m = NULL;
    path_in(f, "meta.db", p, sizeof p);
    assert_int_equal(stat(p, &st), 0);
    buf = malloc((size_t)st.st_size);
    assert_non_null(buf);
    fp = fopen(p, "rb");
    assert_non_null(fp);
    assert_int_equal(fread(buf, 1, (size_t)st.st_size, fp), (size_t)st.st_size);
    fclose(fp);
    assert_null(memmem(buf, (size_t)st.st_size, value, sizeof value - 1));
    free(buf);
    assert_int_equal(cvd_meta_open_sqlite(f->dir, &f->m), 0);
}

static void names(void **state)
{
    static const char *const good[] = { "a", "db1", "A.b_c-d", "0", "x.", NULL };
    static const char *const bad[] = { "", ".a", "-a", "_a", "a/b", "a b",
                                       "a\n", "é", "../x", NULL };
    char longest[CVD_NAME_MAX + 2];
    int i;

    (void)state;
    for (i = 0; good[i]; i++)
        assert_true(cvd_name_valid(good[i]));
    for (i = 0; bad[i]; i++)
        assert_false(cvd_name_valid(bad[i]));
    memset(longest, 'a', sizeof longest);
    longest[CVD_NAME_MAX] = '\0';
    assert_true(cvd_name_valid(longest));
    longest[CVD_NAME_MAX] = 'a';
    longest[CVD_NAME_MAX + 1] = '\0';
    assert_false(cvd_name_valid(longest));
}

#define THREADS 4
#define PER_THREAD 40

struct worker {
    struct cvd_meta *m;
    int id, failures;
};

static void class_records(void **state)
{
    struct fixture *f = *state;
    const struct cvd_meta_ops *o = f->m->ops;
    struct cvd_class_rec c = { .name = "gold", .encrypted = 1,
                               .secret_template = "${volume.name}",
                               .type = "luks2", .aes_bits = 256,
                               .replicas = 1 }, got, *all;
    struct cvd_volume_rec v = volume("v", "");
    char used[CVD_NAME_MAX + 1];
    size_t n;

    assert_int_equal(o->class_add(f->m, &c), 0);
    assert_int_equal(o->class_add(f->m, &c), -EEXIST);
    assert_int_equal(o->class_get(f->m, "gold", &got), 0);
    assert_memory_equal(&got, &c, sizeof c);
    assert_int_equal(o->class_get(f->m, "nope", &got), -ENOENT);
    /* A volume of an unknown class is refused; of a known one, it pins it. */
    snprintf(v.class_name, sizeof v.class_name, "tin");
    assert_int_equal(o->volume_add(f->m, &v, NULL), -ENOENT);
    assert_non_null(strstr(cv_last_error(), "class tin does not exist"));
    snprintf(v.class_name, sizeof v.class_name, "gold");
    assert_int_equal(o->volume_add(f->m, &v, NULL), 0);
    assert_int_equal(o->class_remove(f->m, "gold", used), -EBUSY);
    assert_string_equal(used, "v");
    assert_int_equal(o->class_list(f->m, &all, &n), 0);
    assert_int_equal(n, 1);
    free(all);
    assert_int_equal(o->volume_remove(f->m, "v"), 0);
    assert_int_equal(o->class_remove(f->m, "gold", used), 0);
    assert_int_equal(o->class_remove(f->m, "gold", used), -ENOENT);
}

static void cluster_and_keks(void **state)
{
    struct fixture *f = *state;
    const struct cvd_meta_ops *o = f->m->ops;
    struct cvd_cluster_rec c, next;
    struct cvd_kek_rec k = { .gen = 1, .node = "n1", .protection = "software",
                             .sealed = (unsigned char *)"sealed",
                             .sealed_len = 6 }, got;
    struct cvd_volume_rec v = volume("v", "");
    const char *names[] = { "v" };
    uint32_t *gens;
    size_t n;

    assert_int_equal(o->cluster_get(f->m, &c), 0);
    assert_string_equal(c.encryption, CVD_ENC_DISABLED);
    assert_string_equal(c.rotation, CVD_ROT_NONE);
    next = c;
    snprintf(next.encryption, sizeof next.encryption, CVD_ENC_ENABLED);
    next.current_gen = 1;
    assert_int_equal(o->cluster_update(f->m, &next, &c, &k), 0);
    /* Compare-and-set: a second writer with the old view loses, and its
     * KEK is not stored either. */
    k.gen = 2;
    assert_int_equal(o->cluster_update(f->m, &next, &c, &k), -EBUSY);
    assert_int_equal(o->kek_get(f->m, 2, "n1", &got), -ENOENT);
    assert_int_equal(o->kek_get(f->m, 1, "n1", &got), 0);
    assert_int_equal(got.sealed_len, 6);
    assert_memory_equal(got.sealed, "sealed", 6);
    cvd_kek_rec_free(&got);
    c = next;
    next.current_gen = 2;
    assert_int_equal(o->cluster_update(f->m, &next, &c, &k), 0);
    assert_int_equal(o->kek_list(f->m, "n1", &gens, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(gens[0], 1);
    assert_int_equal(gens[1], 2);
    free(gens);
    /* Generation 1 stays while a volume needs it. */
    v.kek_gen = 1;
    assert_int_equal(o->volume_add(f->m, &v, NULL), 0);
    assert_int_equal(o->kek_prune(f->m, 2), 0);
    assert_int_equal(o->kek_get(f->m, 1, "n1", &got), 0);
    cvd_kek_rec_free(&got);
    assert_int_equal(o->volume_set_kek_gen(f->m, names, 1, 2), 0);
    assert_int_equal(o->kek_prune(f->m, 2), 0);
    assert_int_equal(o->kek_get(f->m, 1, "n1", &got), -ENOENT);
    assert_int_equal(o->volume_get(f->m, "v", &v), 0);
    assert_int_equal(v.kek_gen, 2);
}

static void *add_many(void *p)
{
    struct worker *w = p;
    char name[32];
    int i;

    for (i = 0; i < PER_THREAD; i++) {
        struct cvd_volume_rec v;
        snprintf(name, sizeof name, "t%d-%d", w->id, i);
        v = volume(name, "shared");
        if (cvd_meta_secret_add(w->m, name, "v", 1, NULL) < 0 ||
            w->m->ops->volume_add(w->m, &v, NULL) < 0)
            w->failures++;
    }
    return NULL;
}

static void concurrent_writers(void **state)
{
    struct fixture *f = *state;
    struct worker w[THREADS];
    pthread_t t[THREADS];
    struct cvd_secret_rec *all;
    size_t n;
    int i;

    assert_int_equal(cvd_meta_secret_add(f->m, "shared", "x", 1, NULL), 0);
    for (i = 0; i < THREADS; i++) {
        w[i] = (struct worker){ .m = f->m, .id = i };
        assert_int_equal(pthread_create(&t[i], NULL, add_many, &w[i]), 0);
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    assert_int_equal(f->m->ops->secret_list(f->m, &all, &n), 0);
    assert_int_equal(n, THREADS * PER_THREAD + 1);
    free(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(files_are_private, setup, teardown),
        cmocka_unit_test_setup_teardown(schema_and_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(reopen_keeps_records, setup, teardown),
        cmocka_unit_test_setup_teardown(nodekey_refused_if_readable, setup, teardown),
        cmocka_unit_test_setup_teardown(volume_records, setup, teardown),
        cmocka_unit_test_setup_teardown(volume_needs_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(volume_with_owned_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(secret_records, setup, teardown),
        cmocka_unit_test_setup_teardown(value_not_in_file, setup, teardown),
        cmocka_unit_test(names),
        cmocka_unit_test_setup_teardown(class_records, setup, teardown),
        cmocka_unit_test_setup_teardown(cluster_and_keks, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_writers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

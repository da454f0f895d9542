/* NBD access lists: identities and their kinds, the decision, the store's
 * lists (cascading with their volume or class), and the in-place
 * migration of a schema version 2 data directory to version 3. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "keys/nodekey.h"
#include "meta/meta.h"
#include "volumes/access.h"

static void parse_kinds(void **state)
{
    struct cvd_identity id;
    char buf[CVD_IDENTITY_TEXT_MAX + 1];

    (void)state;
    assert_int_equal(cvd_identity_parse("tenant-a", &id), 0);
    assert_int_equal(id.kind, CVD_ID_CERT);
    cvd_identity_format(&id, buf, sizeof buf);
    assert_string_equal(buf, "cert:tenant-a");
    assert_int_equal(cvd_identity_parse("psk:tenant-a", &id), 0);
    assert_int_equal(id.kind, CVD_ID_PSK);
    assert_int_equal(cvd_identity_parse("cn:a:b", &id), 0);
    assert_string_equal(id.name, "a:b");
    assert_int_equal(cvd_identity_parse("uid:1000", &id), 0);
    assert_int_equal(cvd_identity_parse("uid:01", &id), -EINVAL);
    assert_int_equal(cvd_identity_parse("uid:4294967296", &id), -EINVAL);
    assert_int_equal(cvd_identity_parse("uid:x", &id), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "a uid is a number"));
    assert_int_equal(cvd_identity_parse("user:x", &id), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "unknown kind"));
    assert_int_equal(cvd_identity_parse("cn:", &id), -EINVAL);
    assert_int_equal(cvd_identity_parse("cn:a\nb", &id), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "printable ASCII"));
}

static struct cvd_access_entry entry(const char *s, int allow)
{
    struct cvd_access_entry e = { .allow = allow };

    assert_int_equal(cvd_identity_parse(s, &e.id), 0);
    return e;
}

static void decide(void **state)
{
    struct cvd_client_ids a = { .authenticated = 1 }, p = a, u = a;
    struct cvd_access_entry l[3];

    (void)state;
    cvd_client_add(&a, CVD_ID_CN, "tenant-a");
    cvd_client_add(&a, CVD_ID_DNS, "A.example.com");
    cvd_client_add(&p, CVD_ID_PSK, "tenant-a");
    cvd_client_add(&u, CVD_ID_UID, "1000");
    /* No list: the default decides. */
    assert_int_equal(cvd_access_decide(NULL, 0, &a, 1), CVD_ACCESS_ALLOWED);
    assert_int_equal(cvd_access_decide(NULL, 0, &a, 0), CVD_ACCESS_CLOSED);
    /* A certificate name never matches a PSK identity, nor the reverse. */
    l[0] = entry("tenant-a", 1);
    assert_int_equal(cvd_access_decide(l, 1, &a, 1), CVD_ACCESS_ALLOWED);
    assert_int_equal(cvd_access_decide(l, 1, &p, 1), CVD_ACCESS_NOT_LISTED);
    l[0] = entry("psk:tenant-a", 1);
    assert_int_equal(cvd_access_decide(l, 1, &p, 0), CVD_ACCESS_ALLOWED);
    assert_int_equal(cvd_access_decide(l, 1, &a, 1), CVD_ACCESS_NOT_LISTED);
    /* dns: ignores case, cn: does not. */
    l[0] = entry("dns:a.EXAMPLE.com", 1);
    assert_int_equal(cvd_access_decide(l, 1, &a, 0), CVD_ACCESS_ALLOWED);
    l[0] = entry("cn:Tenant-a", 1);
    assert_int_equal(cvd_access_decide(l, 1, &a, 1), CVD_ACCESS_NOT_LISTED);
    /* deny wins over allow; deny-only lists leave the rest to the default */
    l[0] = entry("cn:tenant-a", 1);
    l[1] = entry("dns:a.example.com", 0);
    assert_int_equal(cvd_access_decide(l, 2, &a, 1), CVD_ACCESS_DENIED);
    l[0] = entry("uid:1000", 0);
    assert_int_equal(cvd_access_decide(l, 1, &u, 1), CVD_ACCESS_DENIED);
    assert_int_equal(cvd_access_decide(l, 1, &a, 1), CVD_ACCESS_ALLOWED);
    assert_int_equal(cvd_access_decide(l, 1, &a, 0), CVD_ACCESS_CLOSED);
}

/* --- The store ---------------------------------------------------------- */

struct fixture {
    char dir[PATH_MAX];
    struct cvd_meta *m;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");

    snprintf(f->dir, sizeof f->dir, "%s/cv-access-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
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

/* What cryptvold before this change wrote: schema versions 1 and 2. */
static const char schema_v2[] =
    "CREATE TABLE secrets (name TEXT PRIMARY KEY NOT NULL, sealed BLOB NOT "
    "NULL, owner TEXT, created INTEGER NOT NULL);"
    "CREATE TABLE volumes (name TEXT PRIMARY KEY NOT NULL, uuid TEXT NOT NULL,"
    " size INTEGER NOT NULL, type TEXT NOT NULL, cipher TEXT NOT NULL,"
    " key_bits INTEGER NOT NULL, sector_size INTEGER NOT NULL, data_offset "
    "INTEGER NOT NULL, secret TEXT REFERENCES secrets(name), path TEXT NOT "
    "NULL, state TEXT NOT NULL, created INTEGER NOT NULL);"
    "CREATE INDEX volumes_secret ON volumes(secret);"
    "CREATE TABLE classes (name TEXT PRIMARY KEY NOT NULL, encrypted INTEGER "
    "NOT NULL, secret TEXT, secret_template TEXT, type TEXT NOT NULL,"
    " aes_bits INTEGER NOT NULL, replicas INTEGER NOT NULL, created INTEGER "
    "NOT NULL);"
    "ALTER TABLE volumes ADD COLUMN class TEXT REFERENCES classes(name);"
    "ALTER TABLE volumes ADD COLUMN wait_secret TEXT;"
    "ALTER TABLE volumes ADD COLUMN kek_gen INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX volumes_class ON volumes(class);"
    "CREATE INDEX volumes_kek_gen ON volumes(kek_gen);"
    "CREATE TABLE cluster (one INTEGER PRIMARY KEY CHECK (one = 1), id TEXT "
    "NOT NULL, encryption TEXT NOT NULL, protection TEXT NOT NULL,"
    " current_gen INTEGER NOT NULL, rotation TEXT NOT NULL, target_gen "
    "INTEGER NOT NULL, rotation_started INTEGER NOT NULL, rotation_finished "
    "INTEGER NOT NULL);"
    "CREATE TABLE kek (gen INTEGER NOT NULL, node TEXT NOT NULL, protection "
    "TEXT NOT NULL, sealed BLOB NOT NULL, created INTEGER NOT NULL,"
    " PRIMARY KEY (gen, node));"
    "INSERT INTO classes VALUES ('gold', 0, NULL, NULL, 'luks2', 256, 1, 1);"
    "INSERT INTO volumes VALUES ('old', '', 4096, 'plaintext', 'none', 0, "
    "512, 0, NULL, '/nonexistent/old.img', 'ready', 1, 'gold', NULL, 0);"
    "PRAGMA user_version = 2;";

static void make_v2(struct fixture *f)
{
    char p[PATH_MAX + 16];
    unsigned char *key;
    sqlite3 *db;

    /* The node key first: a meta.db without one is refused. */
    assert_int_equal(cvd_nodekey_load(f->dir, &key), 0);
    cvd_nodekey_free(key);
    snprintf(p, sizeof p, "%s/meta.db", f->dir);
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, schema_v2, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void migrate_v2(void **state)
{
    struct fixture *f = *state;
    struct cvd_access_rec set[2] = { { "cn:tenant-a", 1 }, { "uid:33", 0 } };
    const char *del[] = { "uid:33" };
    struct cvd_access_rec *l;
    struct cvd_volume_rec v;
    size_t n;

    make_v2(f);
    assert_int_equal(cvd_meta_open_sqlite(f->dir, &f->m), 0);
    /* The old records are all there, with empty lists. */
    assert_int_equal(f->m->ops->volume_get(f->m, "old", &v), 0);
    assert_string_equal(v.class_name, "gold");
    assert_int_equal(f->m->ops->access_list(f->m, CVD_ACCESS_VOLUME, "old",
                                            &l, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(f->m->ops->access_edit(f->m, CVD_ACCESS_VOLUME, "old", 0,
                                            set, 2, NULL, 0), 0);
    assert_int_equal(f->m->ops->access_edit(f->m, CVD_ACCESS_CLASS, "gold", 0,
                                            set, 1, NULL, 0), 0);
    /* Allow becomes deny in place; removal; one transaction each. */
    set[0].allow = 0;
    assert_int_equal(f->m->ops->access_edit(f->m, CVD_ACCESS_VOLUME, "old", 0,
                                            set, 1, del, 1), 0);
    assert_int_equal(f->m->ops->access_list(f->m, CVD_ACCESS_VOLUME, "old",
                                            &l, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(l[0].identity, "cn:tenant-a");
    assert_int_equal(l[0].allow, 0);
    free(l);
    /* Reopening keeps them; no such volume or class is -ENOENT. */
    cvd_meta_close(f->m);
    assert_int_equal(cvd_meta_open_sqlite(f->dir, &f->m), 0);
    assert_int_equal(f->m->ops->access_list(f->m, CVD_ACCESS_CLASS, "gold",
                                            &l, &n), 0);
    assert_int_equal(n, 1);
    free(l);
    assert_int_equal(f->m->ops->access_list(f->m, CVD_ACCESS_VOLUME, "nope",
                                            &l, &n), -ENOENT);
    assert_non_null(strstr(cv_last_error(), "volume nope: no such volume"));
    assert_int_equal(f->m->ops->access_edit(f->m, CVD_ACCESS_CLASS, "nope", 1,
                                            NULL, 0, NULL, 0), -ENOENT);
    /* A list goes with its volume: a new volume of that name has none. */
    assert_int_equal(f->m->ops->volume_remove(f->m, "old"), 0);
    assert_int_equal(f->m->ops->volume_add(f->m, &v, NULL), 0);
    assert_int_equal(f->m->ops->access_list(f->m, CVD_ACCESS_VOLUME, "old",
                                            &l, &n), 0);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_kinds),
        cmocka_unit_test(decide),
        cmocka_unit_test_setup_teardown(migrate_v2, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

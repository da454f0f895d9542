/* The metadata store in one SQLite file, DATA-DIR/meta.db: the single-node
 * default.  WAL journal, synchronous=FULL (a record must not outlive a
 * power cut less well than the file it describes), foreign keys on, every
 * statement prepared once.  One connection shared by all threads behind a
 * mutex: SQLite's own serialisation is per call, and a transaction is
 * several calls. */
#include "meta/meta.h"
#include "meta-sqlite.h"
#include "core/error.h"
#include "keys/nodekey.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCHEMA_VERSION 4

static const char schema_v1[] =
    "CREATE TABLE secrets ("
    " name TEXT PRIMARY KEY NOT NULL,"
    " sealed BLOB NOT NULL,"
    " owner TEXT,"                  /* volume it was generated for */
    " created INTEGER NOT NULL);"
    "CREATE TABLE volumes ("
    " name TEXT PRIMARY KEY NOT NULL,"
    " uuid TEXT NOT NULL,"
    " size INTEGER NOT NULL,"
    " type TEXT NOT NULL,"
    " cipher TEXT NOT NULL,"
    " key_bits INTEGER NOT NULL,"
    " sector_size INTEGER NOT NULL,"
    " data_offset INTEGER NOT NULL,"
    " secret TEXT REFERENCES secrets(name),"
    " path TEXT NOT NULL,"
    " state TEXT NOT NULL,"
    " created INTEGER NOT NULL);"
    "CREATE INDEX volumes_secret ON volumes(secret);";

/* Volume classes, cluster encryption, KEK generations.  A class names its
 * secret without a foreign key: a class may name a secret that does not
 * exist yet, whose volumes wait in state pending. */
static const char schema_v2[] =
    "CREATE TABLE classes ("
    " name TEXT PRIMARY KEY NOT NULL,"
    " encrypted INTEGER NOT NULL,"
    " secret TEXT,"
    " secret_template TEXT,"
    " type TEXT NOT NULL,"
    " aes_bits INTEGER NOT NULL,"
    " replicas INTEGER NOT NULL,"
    " created INTEGER NOT NULL);"
    "ALTER TABLE volumes ADD COLUMN class TEXT REFERENCES classes(name);"
    "ALTER TABLE volumes ADD COLUMN wait_secret TEXT;"
    "ALTER TABLE volumes ADD COLUMN kek_gen INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX volumes_class ON volumes(class);"
    "CREATE INDEX volumes_kek_gen ON volumes(kek_gen);"
    "CREATE TABLE cluster ("
    " one INTEGER PRIMARY KEY CHECK (one = 1),"
    " id TEXT NOT NULL,"
    " encryption TEXT NOT NULL,"
    " protection TEXT NOT NULL,"
    " current_gen INTEGER NOT NULL,"
    " rotation TEXT NOT NULL,"
    " target_gen INTEGER NOT NULL,"
    " rotation_started INTEGER NOT NULL,"
    " rotation_finished INTEGER NOT NULL);"
    "CREATE TABLE kek ("
    " gen INTEGER NOT NULL,"
    " node TEXT NOT NULL,"
    " protection TEXT NOT NULL,"
    " sealed BLOB NOT NULL,"
    " created INTEGER NOT NULL,"
    " PRIMARY KEY (gen, node));";

/* NBD access lists (volumes/access.h); removed with their volume or
 * class. */
static const char schema_v3[] =
    "CREATE TABLE volume_access ("
    " volume TEXT NOT NULL REFERENCES volumes(name) ON DELETE CASCADE,"
    " identity TEXT NOT NULL,"
    " allow INTEGER NOT NULL,"
    " PRIMARY KEY (volume, identity));"
    "CREATE TABLE class_access ("
    " class TEXT NOT NULL REFERENCES classes(name) ON DELETE CASCADE,"
    " identity TEXT NOT NULL,"
    " allow INTEGER NOT NULL,"
    " PRIMARY KEY (class, identity));";

/* Clones (docs/store.md): the snapshot a volume reads through. */
static const char schema_v4[] =
    "ALTER TABLE volumes ADD COLUMN parent TEXT;"
    "CREATE INDEX volumes_parent ON volumes(parent);";

#define VOL_COLS "name, uuid, size, type, cipher, key_bits, sector_size, " \
                 "data_offset, secret, path, state, created, class, " \
                 "wait_secret, kek_gen, parent"


static const char *const sql[NSTMT] = {
    [BEGIN] = "BEGIN IMMEDIATE",
    [COMMIT] = "COMMIT",
    [ROLLBACK] = "ROLLBACK",
    [VOL_INSERT] = "INSERT INTO volumes (" VOL_COLS ") VALUES "
                   "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
                   "?14, ?15, ?16)",
    [VOL_GET] = "SELECT " VOL_COLS " FROM volumes WHERE name = ?1",
    [VOL_UPDATE] = "UPDATE volumes SET uuid = ?2, size = ?3, cipher = ?5, "
                   "key_bits = ?6, sector_size = ?7, data_offset = ?8, "
                   "secret = ?9, path = ?10, state = ?11, "
                   "wait_secret = ?14, kek_gen = ?15, parent = ?16 "
                   "WHERE name = ?1 AND state = ?17",
    [VOL_DELETE] = "DELETE FROM volumes WHERE name = ?1",
    [VOL_LIST] = "SELECT " VOL_COLS " FROM volumes ORDER BY name",
    [SEC_INSERT] = "INSERT INTO secrets (name, sealed, owner, created) "
                   "VALUES (?1, ?2, ?3, ?4)",
    [SEC_GET] = "SELECT name, owner, created, sealed FROM secrets "
                "WHERE name = ?1",
    [SEC_EXISTS] = "SELECT 1 FROM secrets WHERE name = ?1",
    /* A volume waiting for a secret, or moving to it, needs it too. */
    [SEC_USER] = "SELECT name FROM volumes WHERE secret = ?1 OR "
                 "wait_secret = ?1 ORDER BY name LIMIT 1",
    [SEC_DELETE] = "DELETE FROM secrets WHERE name = ?1",
    [SEC_DELETE_OWNED] = "DELETE FROM secrets WHERE owner = ?1 AND NOT "
                         "EXISTS (SELECT 1 FROM volumes WHERE secret = "
                         "secrets.name)",
    [SEC_LIST] = "SELECT name, owner, created, NULL FROM secrets "
                 "ORDER BY name",
    [SEC_UPDATE] = "UPDATE secrets SET sealed = ?2 WHERE name = ?1",
};



int cvd_sq_db_error(struct sq *s, int rc, const char *what)
{
    int code = rc == SQLITE_FULL ? -ENOSPC :
               rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? -EBUSY :
               rc == SQLITE_READONLY || rc == SQLITE_PERM ? -EACCES : -EIO;

    if (rc == SQLITE_FULL) {
        char dir[PATH_MAX];

        snprintf(dir, sizeof dir, "%s", s->path);
        return cv_error(code, "metadata %s: %s: disk full: delete a volume "
                        "(cryptvol volume delete) or free space on the file "
                        "system of %s", s->path, what, dirname(dir));
    }
    return cv_error(code, "metadata %s: %s: %s", s->path, what,
                    sqlite3_errmsg(s->db));
}

int cvd_sq_prepare(struct sq *s, const char *const *text, int n,
                   sqlite3_stmt **st)
{
    for (int i = 0; i < n; i++) {
        int rc = sqlite3_prepare_v3(s->db, text[i], -1,
                                    SQLITE_PREPARE_PERSISTENT, &st[i], NULL);

        if (rc != SQLITE_OK)
            return cvd_sq_db_error(s, rc, text[i]);
    }
    return 0;
}

void cvd_sq_finalize(sqlite3_stmt **st, int n)
{
    for (int i = 0; i < n; i++)
        sqlite3_finalize(st[i]);
}

sqlite3_stmt *cvd_sq_reset(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

static sqlite3_stmt *stmt(struct sq *s, int which)
{
    return cvd_sq_reset(s->st[which]);
}

void cvd_sq_bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v && v[0])
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

void cvd_sq_col_text(sqlite3_stmt *st, int i, char *buf, size_t len)
{
    const unsigned char *t = sqlite3_column_text(st, i);

    snprintf(buf, len, "%s", t ? (const char *)t : "");
}

/* Runs a statement that returns no rows (or whose rows do not matter). */
int cvd_sq_step(struct sq *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return cvd_sq_db_error(s, rc, what);
    return 0;
}

static int run(struct sq *s, int which, const char *what)
{
    return cvd_sq_step(s, s->st[which], what);
}

int cvd_sq_begin(struct sq *s)
{
    int r;

    pthread_mutex_lock(&s->lock);
    stmt(s, BEGIN);
    r = run(s, BEGIN, "begin transaction");
    if (r < 0)
        pthread_mutex_unlock(&s->lock);
    return r;
}

/* Commits when r is 0, else rolls back; returns r or the commit's error. */
int cvd_sq_end(struct sq *s, int r)
{
    if (r == 0)
        r = run(s, COMMIT, "commit");
    if (r < 0) {
        sqlite3_step(stmt(s, ROLLBACK));
        sqlite3_reset(s->st[ROLLBACK]);
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

static void bind_volume(sqlite3_stmt *st, const struct cvd_volume_rec *v)
{
    sqlite3_bind_text(st, 1, v->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, v->uuid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)v->size);
    sqlite3_bind_text(st, 4, v->type, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, v->cipher, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 6, (int)v->key_bits);
    sqlite3_bind_int(st, 7, (int)v->sector_size);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)v->data_offset);
    cvd_sq_bind_text(st, 9, v->secret);
    sqlite3_bind_text(st, 10, v->path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 11, v->state, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 12, (sqlite3_int64)v->created);
    cvd_sq_bind_text(st, 13, v->class_name);
    cvd_sq_bind_text(st, 14, v->wait_secret);
    sqlite3_bind_int64(st, 15, (sqlite3_int64)v->kek_gen);
    cvd_sq_bind_text(st, 16, v->parent);
}

static void read_volume(sqlite3_stmt *st, struct cvd_volume_rec *v)
{
    memset(v, 0, sizeof *v);
    cvd_sq_col_text(st, 0, v->name, sizeof v->name);
    cvd_sq_col_text(st, 1, v->uuid, sizeof v->uuid);
    v->size = (uint64_t)sqlite3_column_int64(st, 2);
    cvd_sq_col_text(st, 3, v->type, sizeof v->type);
    cvd_sq_col_text(st, 4, v->cipher, sizeof v->cipher);
    v->key_bits = (unsigned)sqlite3_column_int(st, 5);
    v->sector_size = (unsigned)sqlite3_column_int(st, 6);
    v->data_offset = (uint64_t)sqlite3_column_int64(st, 7);
    cvd_sq_col_text(st, 8, v->secret, sizeof v->secret);
    cvd_sq_col_text(st, 9, v->path, sizeof v->path);
    cvd_sq_col_text(st, 10, v->state, sizeof v->state);
    v->created = (int64_t)sqlite3_column_int64(st, 11);
    cvd_sq_col_text(st, 12, v->class_name, sizeof v->class_name);
    cvd_sq_col_text(st, 13, v->wait_secret, sizeof v->wait_secret);
    v->kek_gen = (uint32_t)sqlite3_column_int64(st, 14);
    cvd_sq_col_text(st, 15, v->parent, sizeof v->parent);
}

static int insert_secret(struct sq *s, const struct cvd_secret_rec *sec)
{
    sqlite3_stmt *st = stmt(s, SEC_INSERT);
    int rc;

    sqlite3_bind_text(st, 1, sec->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, sec->sealed, (int)sec->sealed_len,
                      SQLITE_TRANSIENT);
    cvd_sq_bind_text(st, 3, sec->owner);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)sec->created);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_CONSTRAINT)
        return cv_error(-EEXIST, "secret %s: already exists", sec->name);
    if (rc != SQLITE_DONE)
        return cvd_sq_db_error(s, rc, "adding a secret");
    return 0;
}

static int secret_exists(struct sq *s, const char *name)
{
    sqlite3_stmt *st = stmt(s, SEC_EXISTS);
    int rc;

    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc != SQLITE_DONE)
        return cvd_sq_db_error(s, rc, "looking up a secret");
    return 0;
}

static int get_volume(struct sq *s, int which, const char *name,
                      struct cvd_volume_rec *out)
{
    sqlite3_stmt *st = stmt(s, which);
    int rc;

    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && out)
        read_volume(st, out);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return cv_error(-ENOENT, "volume %s: no such volume", name);
    if (rc != SQLITE_ROW)
        return cvd_sq_db_error(s, rc, "reading a volume");
    return 0;
}

static int sq_volume_add(struct cvd_meta *m, const struct cvd_volume_rec *v,
                         const struct cvd_secret_rec *sec)
{
    struct sq *s = cvd_sq_of(m);
    sqlite3_stmt *st;
    int r, rc;

    if ((r = cvd_sq_begin(s)) < 0)
        return r;
    /* The volume's name first: that is the conflict a caller names. */
    r = get_volume(s, VOL_GET, v->name, NULL);
    if (r == 0)
        r = cv_error(-EEXIST, "volume %s: already exists", v->name);
    r = r == -ENOENT ? 0 : r;
    if (r == 0 && sec)
        r = insert_secret(s, sec);
    if (r == 0 && v->secret[0]) {
        r = secret_exists(s, v->secret);
        if (r == 0)
            r = cv_error(-ENOENT, "volume %s: secret \"%s\" does not exist",
                         v->name, v->secret);
        r = r < 0 ? r : 0;
    }
    if (r == 0 && v->class_name[0]) {
        r = cvd_sq_class_exists(s, v->class_name);
        if (r == 0)
            r = cv_error(-ENOENT, "volume %s: class %s does not exist",
                         v->name, v->class_name);
        r = r < 0 ? r : 0;
    }
    if (r == 0) {
        st = stmt(s, VOL_INSERT);
        bind_volume(st, v);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_CONSTRAINT)
            r = cv_error(-EEXIST, "volume %s: already exists", v->name);
        else if (rc != SQLITE_DONE)
            r = cvd_sq_db_error(s, rc, "adding a volume");
    }
    return cvd_sq_end(s, r);
}

static int sq_volume_get(struct cvd_meta *m, const char *name,
                         struct cvd_volume_rec *out)
{
    struct sq *s = cvd_sq_of(m);
    int r;

    pthread_mutex_lock(&s->lock);
    r = get_volume(s, VOL_GET, name, out);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int sq_volume_update(struct cvd_meta *m, struct cvd_volume_rec *v,
                            const char *expect_state)
{
    struct sq *s = cvd_sq_of(m);
    struct cvd_volume_rec cur;
    sqlite3_stmt *st;
    int r, rc;

    if ((r = cvd_sq_begin(s)) < 0)
        return r;
    st = stmt(s, VOL_UPDATE);
    bind_volume(st, v);
    sqlite3_bind_text(st, 17, expect_state, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        r = cvd_sq_db_error(s, rc, "updating a volume");
    else if (sqlite3_changes(s->db) == 0) {
        r = get_volume(s, VOL_GET, v->name, &cur);
        if (r == 0)
            r = cv_error(-EBUSY, "volume %s: is %s (another request is "
                         "working on it)", v->name, cur.state);
    }
    return cvd_sq_end(s, r);
}

static int sq_volume_remove(struct cvd_meta *m, const char *name)
{
    struct sq *s = cvd_sq_of(m);
    sqlite3_stmt *st;
    int r;

    if ((r = cvd_sq_begin(s)) < 0)
        return r;
    st = stmt(s, VOL_DELETE);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    r = run(s, VOL_DELETE, "removing a volume");
    if (r == 0 && sqlite3_changes(s->db) == 0)
        r = cv_error(-ENOENT, "volume %s: no such volume", name);
    if (r == 0) {
        st = stmt(s, SEC_DELETE_OWNED);
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        r = run(s, SEC_DELETE_OWNED, "removing a volume's secret");
    }
    return cvd_sq_end(s, r);
}

/* Steps through a listing statement, growing one array of records. */
int cvd_sq_list(struct sq *s, sqlite3_stmt *st, size_t recsize,
                void (*read)(sqlite3_stmt *, void *), void **out, size_t *n)
{
    size_t cap = 0;
    char *a = NULL, *bigger;
    int rc, r = 0;

    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            bigger = realloc(a, cap * recsize);
            if (!bigger) {
                r = cv_error(-ENOMEM, "metadata %s: listing: out of memory",
                             s->path);
                break;
            }
            a = bigger;
        }
        read(st, a + *n * recsize);
        (*n)++;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = cvd_sq_db_error(s, rc, "listing");
    sqlite3_reset(st);
    if (r < 0) {
        free(a);
        a = NULL;
        *n = 0;
    }
    *out = a;
    return r;
}

static void read_volume_any(sqlite3_stmt *st, void *v)
{
    read_volume(st, v);
}

static int sq_volume_list(struct cvd_meta *m, struct cvd_volume_rec **out,
                          size_t *n)
{
    struct sq *s = cvd_sq_of(m);
    void *a;
    int r;

    pthread_mutex_lock(&s->lock);
    r = cvd_sq_list(s, stmt(s, VOL_LIST), sizeof **out, read_volume_any, &a, n);
    pthread_mutex_unlock(&s->lock);
    *out = a;
    return r;
}

static void read_secret(sqlite3_stmt *st, void *p)
{
    struct cvd_secret_rec *sec = p;

    memset(sec, 0, sizeof *sec);
    cvd_sq_col_text(st, 0, sec->name, sizeof sec->name);
    cvd_sq_col_text(st, 1, sec->owner, sizeof sec->owner);
    sec->created = (int64_t)sqlite3_column_int64(st, 2);
}

static int sq_secret_add(struct cvd_meta *m, const struct cvd_secret_rec *sec)
{
    struct sq *s = cvd_sq_of(m);
    int r;

    if ((r = cvd_sq_begin(s)) < 0)
        return r;
    return cvd_sq_end(s, insert_secret(s, sec));
}

static int copy_sealed(sqlite3_stmt *st, struct cvd_secret_rec *out)
{
    const void *b = sqlite3_column_blob(st, 3);
    int len = sqlite3_column_bytes(st, 3);

    out->sealed = malloc(len > 0 ? (size_t)len : 1);
    if (!out->sealed)
        return cv_error(-ENOMEM, "secret %s: out of memory", out->name);
    if (len > 0)
        memcpy(out->sealed, b, (size_t)len);
    out->sealed_len = (size_t)len;
    return 0;
}

static int sq_secret_get(struct cvd_meta *m, const char *name,
                         struct cvd_secret_rec *out)
{
    struct sq *s = cvd_sq_of(m);
    sqlite3_stmt *st;
    int rc, r = 0;

    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->lock);
    st = stmt(s, SEC_GET);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        read_secret(st, out);
        r = copy_sealed(st, out);
    } else if (rc == SQLITE_DONE) {
        r = cv_error(-ENOENT, "secret %s: no such secret", name);
    } else {
        r = cvd_sq_db_error(s, rc, "reading a secret");
    }
    sqlite3_reset(st);
    pthread_mutex_unlock(&s->lock);
    return r;
}

int cvd_sq_remove_unused(struct sq *s, sqlite3_stmt *user, sqlite3_stmt *del,
                         const char *what, const char *name,
                         char used_by[CVD_NAME_MAX + 1])
{
    char msg[64];
    int r, rc;

    used_by[0] = '\0';
    if ((r = cvd_sq_begin(s)) < 0)
        return r;
    sqlite3_bind_text(cvd_sq_reset(user), 1, name, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(user);
    if (rc == SQLITE_ROW) {
        cvd_sq_col_text(user, 0, used_by, CVD_NAME_MAX + 1);
        r = cv_error(-EBUSY, "%s %s: used by volume %s", what, name, used_by);
    } else if (rc != SQLITE_DONE) {
        snprintf(msg, sizeof msg, "looking up a %s's volumes", what);
        r = cvd_sq_db_error(s, rc, msg);
    }
    sqlite3_reset(user);
    if (r == 0) {
        sqlite3_bind_text(cvd_sq_reset(del), 1, name, -1, SQLITE_TRANSIENT);
        snprintf(msg, sizeof msg, "removing a %s", what);
        r = cvd_sq_step(s, del, msg);
    }
    if (r == 0 && sqlite3_changes(s->db) == 0)
        r = cv_error(-ENOENT, "%s %s: no such %s", what, name, what);
    return cvd_sq_end(s, r);
}

static int sq_secret_remove(struct cvd_meta *m, const char *name,
                            char used_by[CVD_NAME_MAX + 1])
{
    struct sq *s = cvd_sq_of(m);

    return cvd_sq_remove_unused(s, s->st[SEC_USER], s->st[SEC_DELETE],
                                "secret", name, used_by);
}

static int sq_secret_list(struct cvd_meta *m, struct cvd_secret_rec **out,
                          size_t *n)
{
    struct sq *s = cvd_sq_of(m);
    void *a;
    int r;

    pthread_mutex_lock(&s->lock);
    r = cvd_sq_list(s, stmt(s, SEC_LIST), sizeof **out, read_secret, &a, n);
    pthread_mutex_unlock(&s->lock);
    *out = a;
    return r;
}

static int sq_secret_update(struct cvd_meta *m,
                            struct cvd_secret_rec *sec)
{
    struct sq *s = cvd_sq_of(m);
    sqlite3_stmt *st;
    int r;

    if ((r = cvd_sq_begin(s)) < 0)
        return r;
    st = stmt(s, SEC_UPDATE);
    sqlite3_bind_text(st, 1, sec->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, sec->sealed, (int)sec->sealed_len,
                      SQLITE_TRANSIENT);
    r = run(s, SEC_UPDATE, "updating a secret");
    if (r == 0 && sqlite3_changes(s->db) == 0)
        r = cv_error(-ENOENT, "secret %s: no such secret", sec->name);
    return cvd_sq_end(s, r);
}

static void sq_close(struct cvd_meta *m)
{
    struct sq *s = cvd_sq_of(m);

    cvd_sq_finalize(s->st, NSTMT);
    cvd_sq_keys_finalize(s);
    cvd_sq_access_finalize(s);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    cvd_nodekey_free(s->base.seal_key);
    free(s->path);
    free(s);
}

static const struct cvd_meta_ops sqlite_ops = {
    .kind = "sqlite",
    .volume_add = sq_volume_add,
    .volume_get = sq_volume_get,
    .volume_update = sq_volume_update,
    .volume_remove = sq_volume_remove,
    .volume_list = sq_volume_list,
    .secret_add = sq_secret_add,
    .secret_get = sq_secret_get,
    .secret_remove = sq_secret_remove,
    .secret_list = sq_secret_list,
    CVD_SQ_KEY_OPS,
    CVD_SQ_ACCESS_OPS,
    CVD_SQ_CLUSTER_OPS,
    .close = sq_close,
    .secret_update = sq_secret_update,
};

static int exec(struct sq *s, const char *q, const char *what)
{
    int rc = sqlite3_exec(s->db, q, NULL, NULL, NULL);

    return rc == SQLITE_OK ? 0 : cvd_sq_db_error(s, rc, what);
}

static int pragma_int(struct sq *s, const char *q, int *val)
{
    sqlite3_stmt *st;
    int rc;

    rc = sqlite3_prepare_v2(s->db, q, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return cvd_sq_db_error(s, rc, q);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *val = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : cvd_sq_db_error(s, rc, q);
}

/* Brings the schema to SCHEMA_VERSION inside one transaction; a file from
 * a newer cryptvold is refused rather than misread. */
static int migrate(struct sq *s)
{
    int version = 0, r;

    r = exec(s, "BEGIN IMMEDIATE", "begin schema update");
    if (r < 0)
        return r;
    r = pragma_int(s, "PRAGMA user_version", &version);
    if (r == 0 && version > SCHEMA_VERSION)
        r = cv_error(-ENOTSUP, "metadata %s: schema version %d is newer than "
                     "this cryptvold knows (%d)", s->path, version,
                     SCHEMA_VERSION);
    if (r == 0 && version < 1)
        r = exec(s, schema_v1, "creating schema version 1");
    if (r == 0 && version < 2)
        r = exec(s, schema_v2, "updating the schema to version 2");
    if (r == 0 && version < 3)
        r = exec(s, schema_v3, "updating the schema to version 3");
    if (r == 0 && version < 4)
        r = exec(s, schema_v4, "updating the schema to version 4");
    if (r == 0 && version < SCHEMA_VERSION) {
        char q[64];
        snprintf(q, sizeof q, "PRAGMA user_version = %d", SCHEMA_VERSION);
        r = exec(s, q, "setting the schema version");
    }
    if (r == 0)
        return exec(s, "COMMIT", "commit schema update");
    exec(s, "ROLLBACK", "rollback schema update");
    return r;
}

/* The file is made 0600 before SQLite opens it (SQLite gives its -wal and
 * -shm files the database's mode). */
static int open_db(struct sq *s)
{
    int fd, rc, r;
    char mode[16] = "";

    fd = open(s->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return cv_error(-errno, "metadata %s: %s", s->path, strerror(errno));
    close(fd);
    rc = sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE |
                         SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK)
        return cvd_sq_db_error(s, rc, "open");
    sqlite3_busy_timeout(s->db, 5000);
    r = exec(s, "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL",
             "setting options");
    if (r == 0) {
        sqlite3_stmt *st;
        rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st,
                                NULL);
        if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
            snprintf(mode, sizeof mode, "%s", sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        if (strcmp(mode, "wal"))
            r = cvd_sq_db_error(s, rc, "switching to WAL journal");
    }
    if (r == 0)
        r = migrate(s);
    if (r == 0)
        r = cvd_sq_prepare(s, sql, NSTMT, s->st);
    if (r == 0)
        r = cvd_sq_keys_prepare(s);
    if (r == 0)
        r = cvd_sq_access_prepare(s);
    return r;
}

int cvd_meta_open_sqlite(const char *data_dir, struct cvd_meta **out)
{
    struct sq *s;
    int r;

    *out = NULL;
    s = calloc(1, sizeof *s);
    if (!s)
        return cv_error(-ENOMEM, "metadata: out of memory");
    s->base.ops = &sqlite_ops;
    pthread_mutex_init(&s->lock, NULL);
    if (asprintf(&s->path, "%s/meta.db", data_dir) < 0) {
        s->path = NULL;
        sq_close(&s->base);
        return cv_error(-ENOMEM, "metadata: out of memory");
    }
    r = cvd_nodekey_load(data_dir, &s->base.seal_key);
    if (r == 0)
        r = open_db(s);
    if (r < 0) {
        sq_close(&s->base);
        return r;
    }
    *out = &s->base;
    return 0;
}

/* The SQLite metadata store, part two: volume classes, the cluster
 * encryption record and the sealed KEK generations. */
#include "meta/meta.h"
#include "meta-sqlite.h"
#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLS_COLS "name, encrypted, secret, secret_template, type, aes_bits, " \
                 "replicas, created"
#define CLU_COLS "id, encryption, protection, current_gen, rotation, " \
                 "target_gen, rotation_started, rotation_finished"

static const char *const ksql[NKSTMT] = {
    [CLS_INSERT] = "INSERT INTO classes (" CLS_COLS ") VALUES "
                   "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [CLS_GET] = "SELECT " CLS_COLS " FROM classes WHERE name = ?1",
    [CLS_EXISTS] = "SELECT 1 FROM classes WHERE name = ?1",
    [CLS_USER] = "SELECT name FROM volumes WHERE class = ?1 "
                 "ORDER BY name LIMIT 1",
    [CLS_DELETE] = "DELETE FROM classes WHERE name = ?1",
    [CLS_LIST] = "SELECT " CLS_COLS " FROM classes ORDER BY name",
    [CLU_GET] = "SELECT " CLU_COLS " FROM cluster WHERE one = 1",
    [CLU_PUT] = "INSERT OR REPLACE INTO cluster (one, " CLU_COLS ") VALUES "
                "(1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [KEK_INSERT] = "INSERT INTO kek (gen, node, protection, sealed, created) "
                   "VALUES (?1, ?2, ?3, ?4, ?5)",
    [KEK_GET] = "SELECT gen, node, protection, created, sealed FROM kek "
                "WHERE gen = ?1 AND node = ?2",
    [KEK_LIST] = "SELECT gen FROM kek WHERE node = ?1 ORDER BY gen",
    [KEK_PRUNE] = "DELETE FROM kek WHERE gen < ?1 AND gen NOT IN "
                  "(SELECT kek_gen FROM volumes)",
    [VOL_SET_GEN] = "UPDATE volumes SET kek_gen = ?2 WHERE name = ?1",
};

int cvd_sq_keys_prepare(struct sq *s)
{
    return cvd_sq_prepare(s, ksql, NKSTMT, s->kst);
}

void cvd_sq_keys_finalize(struct sq *s)
{
    cvd_sq_finalize(s->kst, NKSTMT);
}

static sqlite3_stmt *kstmt(struct sq *s, int which)
{
    return cvd_sq_reset(s->kst[which]);
}

/* One-row lookup: 1 found, 0 not, or an error. */
static int exists(struct sq *s, int which, const char *name, const char *what)
{
    sqlite3_stmt *st = kstmt(s, which);
    int rc;

    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : cvd_sq_db_error(s, rc, what);
}

int cvd_sq_class_exists(struct sq *s, const char *name)
{
    return exists(s, CLS_EXISTS, name, "looking up a class");
}

static void read_class(sqlite3_stmt *st, void *p)
{
    struct cvd_class_rec *c = p;

    memset(c, 0, sizeof *c);
    cvd_sq_col_text(st, 0, c->name, sizeof c->name);
    c->encrypted = sqlite3_column_int(st, 1);
    cvd_sq_col_text(st, 2, c->secret, sizeof c->secret);
    cvd_sq_col_text(st, 3, c->secret_template, sizeof c->secret_template);
    cvd_sq_col_text(st, 4, c->type, sizeof c->type);
    c->aes_bits = (unsigned)sqlite3_column_int(st, 5);
    c->replicas = (unsigned)sqlite3_column_int(st, 6);
    c->created = (int64_t)sqlite3_column_int64(st, 7);
}

int cvd_sq_class_add(struct cvd_meta *m, const struct cvd_class_rec *c)
{
    struct sq *s = cvd_sq_of(m);
    sqlite3_stmt *st;
    int r, rc;

    if ((r = cvd_sq_begin(s)) < 0)
        return r;
    st = kstmt(s, CLS_INSERT);
    sqlite3_bind_text(st, 1, c->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, c->encrypted);
    cvd_sq_bind_text(st, 3, c->secret);
    cvd_sq_bind_text(st, 4, c->secret_template);
    sqlite3_bind_text(st, 5, c->type, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 6, (int)c->aes_bits);
    sqlite3_bind_int(st, 7, (int)c->replicas);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)c->created);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_CONSTRAINT)
        r = cv_error(-EEXIST, "class %s: already exists", c->name);
    else if (rc != SQLITE_DONE)
        r = cvd_sq_db_error(s, rc, "adding a class");
    return cvd_sq_end(s, r);
}

int cvd_sq_class_get(struct cvd_meta *m, const char *name,
                     struct cvd_class_rec *out)
{
    struct sq *s = cvd_sq_of(m);
    sqlite3_stmt *st;
    int rc, r = 0;

    pthread_mutex_lock(&s->lock);
    st = kstmt(s, CLS_GET);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_class(st, out);
    else if (rc == SQLITE_DONE)
        r = cv_error(-ENOENT, "class %s: no such class", name);
    else
        r = cvd_sq_db_error(s, rc, "reading a class");
    sqlite3_reset(st);
    pthread_mutex_unlock(&s->lock);
    return r;
}

int cvd_sq_class_remove(struct cvd_meta *m, const char *name,
                        char used_by[CVD_NAME_MAX + 1])
{
    struct sq *s = cvd_sq_of(m);

    return cvd_sq_remove_unused(s, s->kst[CLS_USER], s->kst[CLS_DELETE],
                                "class", name, used_by);
}

int cvd_sq_class_list(struct cvd_meta *m, struct cvd_class_rec **out,
                      size_t *n)
{
    struct sq *s = cvd_sq_of(m);
    void *a;
    int r;

    pthread_mutex_lock(&s->lock);
    r = cvd_sq_list(s, kstmt(s, CLS_LIST), sizeof **out, read_class, &a, n);
    pthread_mutex_unlock(&s->lock);
    *out = a;
    return r;
}

static int read_cluster(struct sq *s, struct cvd_cluster_rec *c)
{
    sqlite3_stmt *st = kstmt(s, CLU_GET);
    int rc, r = 0;

    memset(c, 0, sizeof *c);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        cvd_sq_col_text(st, 0, c->id, sizeof c->id);
        cvd_sq_col_text(st, 1, c->encryption, sizeof c->encryption);
        cvd_sq_col_text(st, 2, c->protection, sizeof c->protection);
        c->current_gen = (uint32_t)sqlite3_column_int64(st, 3);
        cvd_sq_col_text(st, 4, c->rotation, sizeof c->rotation);
        c->target_gen = (uint32_t)sqlite3_column_int64(st, 5);
        c->rotation_started = (int64_t)sqlite3_column_int64(st, 6);
        c->rotation_finished = (int64_t)sqlite3_column_int64(st, 7);
    } else if (rc == SQLITE_DONE) {
        snprintf(c->encryption, sizeof c->encryption, CVD_ENC_DISABLED);
        snprintf(c->rotation, sizeof c->rotation, CVD_ROT_NONE);
    } else {
        r = cvd_sq_db_error(s, rc, "reading the cluster record");
    }
    sqlite3_reset(st);
    return r;
}

int cvd_sq_cluster_get(struct cvd_meta *m, struct cvd_cluster_rec *out)
{
    struct sq *s = cvd_sq_of(m);
    int r;

    pthread_mutex_lock(&s->lock);
    r = read_cluster(s, out);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int same_cluster(const struct cvd_cluster_rec *a,
                        const struct cvd_cluster_rec *b)
{
    return !strcmp(a->id, b->id) && !strcmp(a->encryption, b->encryption) &&
           !strcmp(a->protection, b->protection) &&
           a->current_gen == b->current_gen &&
           !strcmp(a->rotation, b->rotation) && a->target_gen == b->target_gen;
}

static int insert_kek(struct sq *s, const struct cvd_kek_rec *k)
{
    sqlite3_stmt *st = kstmt(s, KEK_INSERT);
    int rc;

    sqlite3_bind_int64(st, 1, k->gen);
    sqlite3_bind_text(st, 2, k->node, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, k->protection, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 4, k->sealed, (int)k->sealed_len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)k->created);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_CONSTRAINT)
        return cv_error(-EEXIST, "KEK generation %u for node %s: already "
                        "stored", k->gen, k->node);
    return rc == SQLITE_DONE ? 0 : cvd_sq_db_error(s, rc, "adding a KEK");
}

int cvd_sq_cluster_update(struct cvd_meta *m, const struct cvd_cluster_rec *c,
                          const struct cvd_cluster_rec *expect,
                          const struct cvd_kek_rec *kek)
{
    struct sq *s = cvd_sq_of(m);
    struct cvd_cluster_rec cur;
    sqlite3_stmt *st;
    int r;

    if ((r = cvd_sq_begin(s)) < 0)
        return r;
    r = read_cluster(s, &cur);
    if (r == 0 && !same_cluster(&cur, expect))
        r = cv_error(-EBUSY, "cluster: its state changed meanwhile (now "
                     "encryption %s, rotation %s)", cur.encryption,
                     cur.rotation);
    if (r == 0 && kek)
        r = insert_kek(s, kek);
    if (r == 0) {
        st = kstmt(s, CLU_PUT);
        sqlite3_bind_text(st, 1, c->id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, c->encryption, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, c->protection, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, c->current_gen);
        sqlite3_bind_text(st, 5, c->rotation, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 6, c->target_gen);
        sqlite3_bind_int64(st, 7, (sqlite3_int64)c->rotation_started);
        sqlite3_bind_int64(st, 8, (sqlite3_int64)c->rotation_finished);
        r = cvd_sq_step(s, st, "storing the cluster record");
    }
    return cvd_sq_end(s, r);
}

int cvd_sq_kek_get(struct cvd_meta *m, uint32_t gen, const char *node,
                   struct cvd_kek_rec *out)
{
    struct sq *s = cvd_sq_of(m);
    sqlite3_stmt *st;
    const void *b;
    int rc, r = 0, len;

    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->lock);
    st = kstmt(s, KEK_GET);
    sqlite3_bind_int64(st, 1, gen);
    sqlite3_bind_text(st, 2, node, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->gen = (uint32_t)sqlite3_column_int64(st, 0);
        cvd_sq_col_text(st, 1, out->node, sizeof out->node);
        cvd_sq_col_text(st, 2, out->protection, sizeof out->protection);
        out->created = (int64_t)sqlite3_column_int64(st, 3);
        b = sqlite3_column_blob(st, 4);
        len = sqlite3_column_bytes(st, 4);
        out->sealed = malloc(len > 0 ? (size_t)len : 1);
        if (!out->sealed)
            r = cv_error(-ENOMEM, "KEK generation %u: out of memory", gen);
        else if (len > 0)
            memcpy(out->sealed, b, (size_t)len);
        out->sealed_len = len > 0 ? (size_t)len : 0;
    } else if (rc == SQLITE_DONE) {
        r = cv_error(-ENOENT, "KEK generation %u: none stored for node %s",
                     gen, node);
    } else {
        r = cvd_sq_db_error(s, rc, "reading a KEK");
    }
    sqlite3_reset(st);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static void read_gen(sqlite3_stmt *st, void *p)
{
    *(uint32_t *)p = (uint32_t)sqlite3_column_int64(st, 0);
}

int cvd_sq_kek_list(struct cvd_meta *m, const char *node, uint32_t **gens,
                    size_t *n)
{
    struct sq *s = cvd_sq_of(m);
    sqlite3_stmt *st;
    void *a;
    int r;

    pthread_mutex_lock(&s->lock);
    st = kstmt(s, KEK_LIST);
    sqlite3_bind_text(st, 1, node, -1, SQLITE_TRANSIENT);
    r = cvd_sq_list(s, st, sizeof **gens, read_gen, &a, n);
    pthread_mutex_unlock(&s->lock);
    *gens = a;
    return r;
}

int cvd_sq_kek_prune(struct cvd_meta *m, uint32_t keep_from)
{
    struct sq *s = cvd_sq_of(m);
    sqlite3_stmt *st;
    int r;

    if ((r = cvd_sq_begin(s)) < 0)
        return r;
    st = kstmt(s, KEK_PRUNE);
    sqlite3_bind_int64(st, 1, keep_from);
    r = cvd_sq_step(s, st, "removing unused KEK generations");
    return cvd_sq_end(s, r);
}

int cvd_sq_volume_set_kek_gen(struct cvd_meta *m, const char *const *names,
                              size_t n, uint32_t gen)
{
    struct sq *s = cvd_sq_of(m);
    sqlite3_stmt *st;
    size_t i;
    int r;

    if ((r = cvd_sq_begin(s)) < 0)
        return r;
    for (i = 0; r == 0 && i < n; i++) {
        st = kstmt(s, VOL_SET_GEN);
        sqlite3_bind_text(st, 1, names[i], -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, gen);
        r = cvd_sq_step(s, st, "recording a volume's KEK generation");
    }
    return cvd_sq_end(s, r);
}

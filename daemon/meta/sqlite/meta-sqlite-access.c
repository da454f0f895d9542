/* The SQLite metadata store, part three: the NBD access lists of volumes
 * and classes (tables volume_access and class_access, schema version 3). */
#include "meta/meta.h"
#include "meta-sqlite.h"
#include "core/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ACC_SQL(tbl, owner, col)                                            \
    "SELECT 1 FROM " owner " WHERE name = ?1",                              \
    "SELECT identity, allow FROM " tbl " WHERE " col " = ?1 "               \
        "ORDER BY identity",                                                \
    "DELETE FROM " tbl " WHERE " col " = ?1",                               \
    "INSERT OR REPLACE INTO " tbl " (" col ", identity, allow) "            \
        "VALUES (?1, ?2, ?3)",                                              \
    "DELETE FROM " tbl " WHERE " col " = ?1 AND identity = ?2"

static const char *const asql[NASTMT] = {
    ACC_SQL("volume_access", "volumes", "volume"),
    ACC_SQL("class_access", "classes", "class"),
};

/* The statements of one target: OWNER, LIST, CLEAR, SET, DEL in order. */
enum { OWNER, LIST, CLEAR, SET, DEL, PER_TARGET };

int cvd_sq_access_prepare(struct sq *s)
{
    return cvd_sq_prepare(s, asql, NASTMT, s->ast);
}

void cvd_sq_access_finalize(struct sq *s)
{
    cvd_sq_finalize(s->ast, NASTMT);
}

static sqlite3_stmt *ast(struct sq *s, enum cvd_access_target t, int which,
                         const char *name)
{
    sqlite3_stmt *st = cvd_sq_reset(s->ast[(t == CVD_ACCESS_CLASS ?
                                            PER_TARGET : 0) + which]);

    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    return st;
}

static const char *what(enum cvd_access_target t)
{
    return t == CVD_ACCESS_CLASS ? "class" : "volume";
}

/* 0 if the volume or class exists, -ENOENT naming it if not. */
static int owner_exists(struct sq *s, enum cvd_access_target t,
                        const char *name)
{
    sqlite3_stmt *st = ast(s, t, OWNER, name);
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return cv_error(-ENOENT, "%s %s: no such %s", what(t), name, what(t));
    return cvd_sq_db_error(s, rc, "looking up an access list's owner");
}

static void read_rec(sqlite3_stmt *st, void *p)
{
    struct cvd_access_rec *a = p;

    memset(a, 0, sizeof *a);
    cvd_sq_col_text(st, 0, a->identity, sizeof a->identity);
    a->allow = sqlite3_column_int(st, 1) != 0;
}

int cvd_sq_access_list(struct cvd_meta *m, enum cvd_access_target t,
                       const char *name, struct cvd_access_rec **out,
                       size_t *n)
{
    struct sq *s = cvd_sq_of(m);
    void *a = NULL;
    int r;

    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&s->lock);
    r = owner_exists(s, t, name);
    if (r == 0)
        r = cvd_sq_list(s, ast(s, t, LIST, name), sizeof **out, read_rec, &a,
                        n);
    pthread_mutex_unlock(&s->lock);
    *out = a;
    return r;
}

int cvd_sq_access_edit(struct cvd_meta *m, enum cvd_access_target t,
                       const char *name, int clear,
                       const struct cvd_access_rec *set, size_t nset,
                       const char *const *del, size_t ndel)
{
    struct sq *s = cvd_sq_of(m);
    sqlite3_stmt *st;
    size_t i;
    int r;

    if ((r = cvd_sq_begin(s)) < 0)
        return r;
    r = owner_exists(s, t, name);
    if (r == 0 && clear)
        r = cvd_sq_step(s, ast(s, t, CLEAR, name), "clearing an access list");
    for (i = 0; r == 0 && i < nset; i++) {
        st = ast(s, t, SET, name);
        sqlite3_bind_text(st, 2, set[i].identity, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 3, set[i].allow != 0);
        r = cvd_sq_step(s, st, "changing an access list");
    }
    for (i = 0; r == 0 && i < ndel; i++) {
        st = ast(s, t, DEL, name);
        sqlite3_bind_text(st, 2, del[i], -1, SQLITE_TRANSIENT);
        r = cvd_sq_step(s, st, "changing an access list");
    }
    return cvd_sq_end(s, r);
}

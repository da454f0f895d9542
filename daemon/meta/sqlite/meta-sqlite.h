/* What meta-sqlite.c (volumes, secrets, the file) shares with
 * meta-sqlite-keys.c (classes, cluster encryption, KEK generations). */
#ifndef CRYPTVOLD_META_SQLITE_H
#define CRYPTVOLD_META_SQLITE_H

#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>

#include "meta/meta.h"

enum {
    BEGIN, COMMIT, ROLLBACK,
    VOL_INSERT, VOL_GET, VOL_UPDATE, VOL_DELETE, VOL_LIST,
    SEC_INSERT, SEC_GET, SEC_EXISTS, SEC_USER, SEC_DELETE, SEC_DELETE_OWNED,
    SEC_LIST, SEC_UPDATE, NSTMT
};

enum {
    CLS_INSERT, CLS_GET, CLS_EXISTS, CLS_USER, CLS_DELETE, CLS_LIST,
    CLU_GET, CLU_PUT, KEK_INSERT, KEK_GET, KEK_LIST, KEK_PRUNE, VOL_SET_GEN,
    NKSTMT
};

/* meta-sqlite-access.c, per target (volume, class). */
enum {
    ACC_OWNER_V, ACC_LIST_V, ACC_CLEAR_V, ACC_SET_V, ACC_DEL_V,
    ACC_OWNER_C, ACC_LIST_C, ACC_CLEAR_C, ACC_SET_C, ACC_DEL_C,
    NASTMT
};

struct sq {
    struct cvd_meta base;
    sqlite3 *db;
    char *path;
    pthread_mutex_t lock;
    sqlite3_stmt *st[NSTMT];
    sqlite3_stmt *kst[NKSTMT];
    sqlite3_stmt *ast[NASTMT];
};

static inline struct sq *cvd_sq_of(struct cvd_meta *m)
{
    return (struct sq *)m;
}

/* A negative errno with a message naming the file and what failed. */
int cvd_sq_db_error(struct sq *s, int rc, const char *what);
/* Prepares the n statements of text into st (persistent); finalize frees
 * them (NULL ones too). */
int cvd_sq_prepare(struct sq *s, const char *const *text, int n,
                   sqlite3_stmt **st);
void cvd_sq_finalize(sqlite3_stmt **st, int n);
/* Resets st and clears its bindings; returns st. */
sqlite3_stmt *cvd_sq_reset(sqlite3_stmt *st);
/* Steps st once (rows ignored) and resets it. */
int cvd_sq_step(struct sq *s, sqlite3_stmt *st, const char *what);
void cvd_sq_bind_text(sqlite3_stmt *st, int i, const char *v);
void cvd_sq_col_text(sqlite3_stmt *st, int i, char *buf, size_t len);
/* A transaction: begin takes the lock; end commits when r is 0, else
 * rolls back, and drops the lock. */
int cvd_sq_begin(struct sq *s);
int cvd_sq_end(struct sq *s, int r);
/* Steps a listing statement (bound by the caller), growing one array. */
int cvd_sq_list(struct sq *s, sqlite3_stmt *st, size_t recsize,
                void (*read)(sqlite3_stmt *, void *), void **out, size_t *n);

/* Deletes the record name with del unless user (a query for the volumes
 * that use it) finds one: -EBUSY naming that volume in used_by, -ENOENT
 * if there is no such record.  what: "secret", "class". */
int cvd_sq_remove_unused(struct sq *s, sqlite3_stmt *user, sqlite3_stmt *del,
                         const char *what, const char *name,
                         char used_by[CVD_NAME_MAX + 1]);

/* meta-sqlite-keys.c */
int cvd_sq_keys_prepare(struct sq *s);
void cvd_sq_keys_finalize(struct sq *s);
/* 1 if the class exists, 0 if not; call inside a transaction. */
int cvd_sq_class_exists(struct sq *s, const char *name);

int cvd_sq_class_add(struct cvd_meta *m, const struct cvd_class_rec *c);
int cvd_sq_class_get(struct cvd_meta *m, const char *name,
                     struct cvd_class_rec *out);
int cvd_sq_class_remove(struct cvd_meta *m, const char *name,
                        char used_by[CVD_NAME_MAX + 1]);
int cvd_sq_class_list(struct cvd_meta *m, struct cvd_class_rec **out,
                      size_t *n);
int cvd_sq_cluster_get(struct cvd_meta *m, struct cvd_cluster_rec *out);
int cvd_sq_cluster_update(struct cvd_meta *m, const struct cvd_cluster_rec *c,
                          const struct cvd_cluster_rec *expect,
                          const struct cvd_kek_rec *kek);
int cvd_sq_kek_get(struct cvd_meta *m, uint32_t gen, const char *node,
                   struct cvd_kek_rec *out);
int cvd_sq_kek_list(struct cvd_meta *m, const char *node, uint32_t **gens,
                    size_t *n);
int cvd_sq_kek_prune(struct cvd_meta *m, uint32_t keep_from);
int cvd_sq_volume_set_kek_gen(struct cvd_meta *m, const char *const *names,
                              size_t n, uint32_t gen);

/* meta-sqlite-access.c */
int cvd_sq_access_prepare(struct sq *s);
void cvd_sq_access_finalize(struct sq *s);
int cvd_sq_access_list(struct cvd_meta *m, enum cvd_access_target t,
                       const char *name, struct cvd_access_rec **out,
                       size_t *n);
int cvd_sq_access_edit(struct cvd_meta *m, enum cvd_access_target t,
                       const char *name, int clear,
                       const struct cvd_access_rec *set, size_t nset,
                       const char *const *del, size_t ndel);
#define CVD_SQ_ACCESS_OPS \
    .access_list = cvd_sq_access_list, \
    .access_edit = cvd_sq_access_edit

#define CVD_SQ_KEY_OPS \
    .class_add = cvd_sq_class_add, \
    .class_get = cvd_sq_class_get, \
    .class_remove = cvd_sq_class_remove, \
    .class_list = cvd_sq_class_list, \
    .cluster_get = cvd_sq_cluster_get, \
    .cluster_update = cvd_sq_cluster_update, \
    .kek_get = cvd_sq_kek_get, \
    .kek_list = cvd_sq_kek_list, \
    .kek_prune = cvd_sq_kek_prune, \
    .volume_set_kek_gen = cvd_sq_volume_set_kek_gen

/* meta-sqlite-cluster.c: a single node has no cluster. */
int cvd_sq_found(struct cvd_meta *m, const struct cvd_cluster_rec *c, const struct cvd_node_rec *self, const struct cvd_kek_rec *sealkey);
int cvd_sq_node_add(struct cvd_meta *m, const struct cvd_node_rec *n);
int cvd_sq_node_get(struct cvd_meta *m, const char *name, struct cvd_node_rec *out);
int cvd_sq_node_list(struct cvd_meta *m, struct cvd_node_rec **out, size_t *n);
int cvd_sq_node_update(struct cvd_meta *m, struct cvd_node_rec *n);
int cvd_sq_sealkey_get(struct cvd_meta *m, const char *node, struct cvd_kek_rec *out);
int cvd_sq_sealkey_put(struct cvd_meta *m, const struct cvd_kek_rec *k);
int cvd_sq_kek_put(struct cvd_meta *m, const struct cvd_kek_rec *k);
int cvd_sq_lease_grant(struct cvd_meta *m, int64_t ttl, int64_t *id);
int cvd_sq_lease_keepalive(struct cvd_meta *m, int64_t id);
int cvd_sq_lease_revoke(struct cvd_meta *m, int64_t id);
int cvd_sq_alive_put(struct cvd_meta *m, const char *node, int64_t lease, const char *json);
int cvd_sq_lock_take(struct cvd_meta *m, const char *lock, int64_t lease, const char *holder, char held_by[CVD_NAME_MAX + 1]);
int cvd_sq_lock_release(struct cvd_meta *m, const char *lock, int64_t lease);
int cvd_sq_watch(struct cvd_meta *m, cvd_meta_watch_fn cb, void *arg);
int cvd_sq_audit_append(struct cvd_meta *m, const char *node, const char *json_line);
int cvd_sq_audit_read(struct cvd_meta *m, int64_t since,
                        int (*cb)(void *arg, json_object *ev), void *arg);
void cvd_sq_status(struct cvd_meta *m, struct cvd_meta_status *out);
int cvd_sq_replicas_get(struct cvd_meta *m, const char *volume, struct cvd_replica_set *out);
int cvd_sq_replicas_put(struct cvd_meta *m, struct cvd_replica_set *s);
int cvd_sq_replicas_remove(struct cvd_meta *m, const char *volume);
int cvd_sq_replicas_list(struct cvd_meta *m, struct cvd_replica_set **out, size_t *n);
int cvd_sq_attach_take(struct cvd_meta *m, const char *volume, const char *node, int64_t lease, uint64_t *epoch, struct cvd_replica_set *prev);
int cvd_sq_attach_get(struct cvd_meta *m, const char *volume, struct cvd_attach_rec *out);
int cvd_sq_attach_release(struct cvd_meta *m, const char *volume, const char *node, uint64_t epoch, int clean);

#define CVD_SQ_CLUSTER_OPS \
    .found = cvd_sq_found, \
    .node_add = cvd_sq_node_add, \
    .node_get = cvd_sq_node_get, \
    .node_list = cvd_sq_node_list, \
    .node_update = cvd_sq_node_update, \
    .sealkey_get = cvd_sq_sealkey_get, \
    .sealkey_put = cvd_sq_sealkey_put, \
    .kek_put = cvd_sq_kek_put, \
    .lease_grant = cvd_sq_lease_grant, \
    .lease_keepalive = cvd_sq_lease_keepalive, \
    .lease_revoke = cvd_sq_lease_revoke, \
    .alive_put = cvd_sq_alive_put, \
    .lock_take = cvd_sq_lock_take, \
    .lock_release = cvd_sq_lock_release, \
    .watch = cvd_sq_watch, \
    .audit_append = cvd_sq_audit_append, \
    .audit_read = cvd_sq_audit_read, \
    .replicas_get = cvd_sq_replicas_get, \
    .replicas_put = cvd_sq_replicas_put, \
    .replicas_remove = cvd_sq_replicas_remove, \
    .replicas_list = cvd_sq_replicas_list, \
    .attach_take = cvd_sq_attach_take, \
    .attach_get = cvd_sq_attach_get, \
    .attach_release = cvd_sq_attach_release, \
    .status = cvd_sq_status

#endif

/* The metadata store on etcd v3, through its JSON gateway (etcd 3.4:
 * POST /v3/kv/range, put, deleterange, txn, /v3/lease/..., /v3/watch).
 * Keys and values are base64 in the gateway's JSON, int64 fields are
 * strings, and a field at its default (0, false, "") is left out.
 *
 *   etcd-client.c   endpoints, failover, TLS, timeouts, curl handles,
 *                   reachability (status)
 *   etcd-kv.c       range, put, deleterange, txn builder; the key prefix
 *   etcd-records.c  volumes and secrets
 *   etcd-keys.c     classes, the cluster record, KEK generations, access
 *   etcd-cluster.c  found, nodes, seal keys, leases, liveness, locks, audit
 *   etcd-replicas.c replica sets and attach records (replication)
 *   etcd-watch.c    the watch thread
 *   etcd.c          open, close, the ops table
 *
 * Key layout and values: /work/tools/issue12-api.md's table, docs/cluster.md
 * ("Metadata in etcd"). */
#ifndef CRYPTVOLD_META_ETCD_INTERNAL_H
#define CRYPTVOLD_META_ETCD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "meta/meta.h"

#define EK_MAX_ENDPOINTS 16
/* etcd's --max-txn-ops default: at most this many compares, and as many
 * operations on each side, in one txn. */
#define EK_TXN_MAX_OPS 128
/* A read-check-txn loop gives up (-EBUSY) after this many lost races. */
#define EK_RETRIES 8
/* Idle curl handles kept (each keeps its connection open). */
#define EK_POOL 8

/* ---- etcd-client.c ---------------------------------------------------- */
struct ek_client {
    char *urls[EK_MAX_ENDPOINTS];   /* "https://127.0.0.1:2379", no '/' */
    size_t n;
    char *ca, *cert, *key;          /* NULL without a TLS directory */
    unsigned timeout_ms;
    /* cfg->source resolved (source_len 0: none): the address each
     * connection of its family is bound to before it connects. */
    struct sockaddr_storage source;
    socklen_t source_len;
    pthread_mutex_t lock;           /* guards what follows */
    size_t current;                 /* the endpoint tried first */
    struct cvd_meta_status st;
    int known;                      /* st says something yet */
    CURL *pool[EK_POOL];
    size_t npool;
};

int ek_client_init(struct ek_client *c, const struct cvd_etcd_config *cfg);
void ek_client_free(struct ek_client *c);
/* POSTs req to path ("/v3/kv/range") on the first endpoint that answers,
 * starting with the one that answered last; *resp is the answer (put it).
 * A connection error, a timeout or an "unavailable" answer (no leader)
 * moves on to the next endpoint; when none answers, -ENOTCONN with
 * "metadata store unreachable: etcd URL: why; etcd URL2: why".  An error
 * etcd answers is mapped: NotFound -ENOENT, InvalidArgument -EINVAL,
 * OutOfRange (compacted) -ERANGE, ResourceExhausted (too many operations,
 * too large) -E2BIG, PermissionDenied/Unauthenticated -EACCES, else -EIO,
 * each with "etcd URL: what etcd said". */
int ek_call(struct ek_client *c, const char *path, json_object *req,
            json_object **resp);
void ek_client_status(struct ek_client *c, struct cvd_meta_status *out);
/* For the watch: the endpoint to try first; a handle set up for url i
 * (TLS, no signals, keepalive), with no timeout of its own; and what came
 * of it (ok: it answered; else why not), which status and failover use. */
size_t ek_client_first(struct ek_client *c);
int ek_client_setup(struct ek_client *c, CURL *h, size_t i, const char *path);
void ek_client_result(struct ek_client *c, size_t i, int ok,
                      const char *why);

/* ---- etcd-kv.c -------------------------------------------------------- */
struct ek {
    struct cvd_meta base;
    struct ek_client c;
    char *prefix;                   /* "/cryptvol/" */
    atomic_uint audit_seq;
    pthread_mutex_t watch_lock;
    struct ek_watch *watch;         /* etcd-watch.c; NULL until watch */
};

static inline struct ek *ek_of(struct cvd_meta *m)
{
    return (struct ek *)m;
}

/* One key as read: key without the prefix; value NUL-terminated (an extra
 * byte past len) so a JSON value can be parsed as it is. */
struct ek_kv {
    char *key;
    char *value;
    size_t len;
    int64_t create_rev, mod_rev, version, lease;
};

struct ek_range {
    struct ek_kv *kvs;
    size_t n;
    int64_t rev;                    /* the store's revision when read */
    int more;                       /* a limit cut it short */
};
void ek_range_free(struct ek_range *r);

/* Reads key (prefix: every key starting with it), at revision rev (0:
 * the latest), at most limit keys (0: all), in key order. */
int ek_range(struct ek *e, const char *key, int prefix, int64_t rev,
             int64_t limit, struct ek_range *out);
/* The keys at or after from that start with within, as ek_range. */
int ek_range_from(struct ek *e, const char *from, const char *within,
                  int64_t rev, int64_t limit, struct ek_range *out);
/* One key: 0 and *out filled, 1 if absent (*out zeroed); *rev (may be
 * NULL) the store's revision. */
int ek_get(struct ek *e, const char *key, struct ek_kv *out, int64_t *rev);
void ek_kv_free(struct ek_kv *kv);

enum ek_target { EK_CREATE, EK_MOD, EK_VALUE, EK_LEASE };
enum ek_result { EK_EQUAL, EK_GREATER, EK_LESS, EK_NOT_EQUAL };

/* A txn being built: compares, then the operations on success and on
 * failure.  Each call checks the limits and allocation; a failure is kept
 * and returned by ek_txn_commit. */
struct ek_txn {
    struct ek *e;
    json_object *req, *cmp, *then, *orelse;
    size_t ncmp, nthen, nelse;
    int err;
};
struct ek_txn_result {
    int succeeded;
    int64_t rev;
    /* One per operation of the side that ran: a range's keys; a put or a
     * delete has none (n 0). */
    struct ek_range *r;
    size_t n;
};

void ek_txn_init(struct ek_txn *t, struct ek *e);
void ek_txn_free(struct ek_txn *t);
/* A compare on key (prefix: over every key it starts; the range's keys
 * must each pass), of target against val: a revision, or for EK_VALUE the
 * NUL-terminated value text, for EK_LEASE a lease id. */
void ek_cmp(struct ek_txn *t, const char *key, int prefix,
            enum ek_target target, enum ek_result result, int64_t val);
void ek_cmp_value(struct ek_txn *t, const char *key, const char *value);
/* Operations; on_fail: on the failure side. */
void ek_op_put(struct ek_txn *t, int on_fail, const char *key,
               const char *value, int64_t lease);
/* As ek_op_put with the JSON text of obj (obj is put). */
void ek_op_put_json(struct ek_txn *t, int on_fail, const char *key,
                    json_object *obj, int64_t lease);
void ek_op_del(struct ek_txn *t, int on_fail, const char *key, int prefix);
void ek_op_get(struct ek_txn *t, int on_fail, const char *key, int prefix);
/* Sends t (and frees its request either way); *res (free with
 * ek_txn_result_free) says which side ran. */
int ek_txn_commit(struct ek *e, struct ek_txn *t, struct ek_txn_result *res);
void ek_txn_result_free(struct ek_txn_result *res);

/* prefix + key as o's "key" (base64); with prefix, "range_end" too: the
 * key after every key that starts with it.  Errors are kept in *err. */
void ek_add_key(struct ek *e, json_object *o, const char *key, int prefix,
                int *err);
/* Record keys: "volumes/NAME" etc. into buf, -ENAMETOOLONG if too long. */
int ek_key(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- JSON helpers (etcd-kv.c) ----------------------------------------- */
/* An int64 member that the gateway writes as a string, or we as a number;
 * 0 when absent. */
int64_t ek_json_i64(json_object *o, const char *key);
/* A string member into buf ("" when absent); -EBADMSG if it does not fit. */
int ek_json_str(json_object *o, const char *key, char *buf, size_t len);
/* A base64 member, decoded (malloc'ed); -EBADMSG if it is not base64. */
int ek_json_b64(json_object *o, const char *key, unsigned char **data,
                size_t *len);
/* Adds members; errors (ENOMEM) are kept in *err. */
void ek_add_str(json_object *o, const char *key, const char *v, int *err);
void ek_add_i64(json_object *o, const char *key, int64_t v, int *err);
void ek_add_bool(json_object *o, const char *key, int v, int *err);
void ek_add_b64(json_object *o, const char *key, const void *v, size_t len,
                int *err);
/* The value of kv parsed as a JSON object; -EBADMSG naming the key if it
 * is not one. */
int ek_parse(const struct ek_kv *kv, json_object **out);

/* ---- etcd-records.c, etcd-keys.c, etcd-cluster.c ---------------------- */
/* "DIR" + name into buf; -EINVAL ("WHAT \"name\": not a valid name") for
 * a name that is empty, too long or has a '/'. */
int ek_name_key(char *buf, size_t len, const char *dir, const char *what,
                const char *name);
/* Removes DIR/name (a secret or a class, and a class's access list) in a
 * txn that holds only if no volume changed since they were read and
 * found not to use it: -EBUSY naming the first user in used_by, -ENOENT
 * if there is no such record. */
enum ek_user { EK_USER_SECRET, EK_USER_CLASS };
int ek_remove_unused(struct ek *e, const char *dir, const char *what,
                     const char *name, enum ek_user user,
                     char used_by[CVD_NAME_MAX + 1]);
int ek_volume_add(struct cvd_meta *m, const struct cvd_volume_rec *v,
                  const struct cvd_secret_rec *s);
int ek_volume_get(struct cvd_meta *m, const char *name,
                  struct cvd_volume_rec *out);
int ek_volume_update(struct cvd_meta *m, struct cvd_volume_rec *v,
                     const char *expect_state);
int ek_volume_remove(struct cvd_meta *m, const char *name);
int ek_volume_list(struct cvd_meta *m, struct cvd_volume_rec **out,
                   size_t *n);
int ek_secret_add(struct cvd_meta *m, const struct cvd_secret_rec *s);
int ek_secret_get(struct cvd_meta *m, const char *name,
                  struct cvd_secret_rec *out);
int ek_secret_remove(struct cvd_meta *m, const char *name,
                     char used_by[CVD_NAME_MAX + 1]);
int ek_secret_list(struct cvd_meta *m, struct cvd_secret_rec **out,
                   size_t *n);
int ek_secret_update(struct cvd_meta *m, struct cvd_secret_rec *s);
/* The volumes at the latest revision (*rev), for the in-use checks. */
int ek_volumes_read(struct ek *e, struct cvd_volume_rec **out, size_t *n,
                    int64_t *rev);
int ek_volume_decode(const struct ek_kv *kv, struct cvd_volume_rec *v);
json_object *ek_volume_encode(const struct cvd_volume_rec *v, int *err);

int ek_class_add(struct cvd_meta *m, const struct cvd_class_rec *c);
int ek_class_get(struct cvd_meta *m, const char *name,
                 struct cvd_class_rec *out);
int ek_class_remove(struct cvd_meta *m, const char *name,
                    char used_by[CVD_NAME_MAX + 1]);
int ek_class_list(struct cvd_meta *m, struct cvd_class_rec **out, size_t *n);
int ek_cluster_get(struct cvd_meta *m, struct cvd_cluster_rec *out);
int ek_cluster_update(struct cvd_meta *m, const struct cvd_cluster_rec *c,
                      const struct cvd_cluster_rec *expect,
                      const struct cvd_kek_rec *kek);
json_object *ek_cluster_encode(const struct cvd_cluster_rec *c, int *err);
int ek_kek_get(struct cvd_meta *m, uint32_t gen, const char *node,
               struct cvd_kek_rec *out);
int ek_kek_list(struct cvd_meta *m, const char *node, uint32_t **gens,
                size_t *n);
int ek_kek_prune(struct cvd_meta *m, uint32_t keep_from);
int ek_volume_set_kek_gen(struct cvd_meta *m, const char *const *names,
                          size_t n, uint32_t gen);
int ek_access_list(struct cvd_meta *m, enum cvd_access_target t,
                   const char *name, struct cvd_access_rec **out, size_t *n);
int ek_access_edit(struct cvd_meta *m, enum cvd_access_target t,
                   const char *name, int clear,
                   const struct cvd_access_rec *set, size_t nset,
                   const char *const *del, size_t ndel);
/* A KEK or seal key record: gen is left out for a seal key. */
json_object *ek_kek_encode(const struct cvd_kek_rec *k, int with_gen,
                           int *err);
int ek_kek_decode(const struct ek_kv *kv, struct cvd_kek_rec *k);
int ek_kek_key(char *buf, size_t len, uint32_t gen, const char *node);

int ek_found(struct cvd_meta *m, const struct cvd_cluster_rec *c,
             const struct cvd_node_rec *self,
             const struct cvd_kek_rec *sealkey);
int ek_node_add(struct cvd_meta *m, const struct cvd_node_rec *n);
int ek_node_get(struct cvd_meta *m, const char *name,
                struct cvd_node_rec *out);
int ek_node_list(struct cvd_meta *m, struct cvd_node_rec **out, size_t *n);
int ek_node_update(struct cvd_meta *m, struct cvd_node_rec *n);
int ek_sealkey_get(struct cvd_meta *m, const char *node,
                   struct cvd_kek_rec *out);
int ek_sealkey_put(struct cvd_meta *m, const struct cvd_kek_rec *k);
int ek_kek_put(struct cvd_meta *m, const struct cvd_kek_rec *k);
int ek_lease_grant(struct cvd_meta *m, int64_t ttl, int64_t *id);
int ek_lease_keepalive(struct cvd_meta *m, int64_t id);
int ek_lease_revoke(struct cvd_meta *m, int64_t id);
int ek_alive_put(struct cvd_meta *m, const char *node, int64_t lease,
                 const char *json);
int ek_lock_take(struct cvd_meta *m, const char *lock, int64_t lease,
                 const char *holder, char held_by[CVD_NAME_MAX + 1]);
int ek_lock_release(struct cvd_meta *m, const char *lock, int64_t lease);
int ek_audit_append(struct cvd_meta *m, const char *node,
                    const char *json_line);
int ek_audit_read(struct cvd_meta *m, int64_t since,
                  int (*cb)(void *arg, json_object *ev), void *arg);

/* ---- etcd-replicas.c ------------------------------------------------- */
int ek_replicas_get(struct cvd_meta *m, const char *volume,
                    struct cvd_replica_set *out);
int ek_replicas_put(struct cvd_meta *m, struct cvd_replica_set *s);
int ek_replicas_remove(struct cvd_meta *m, const char *volume);
int ek_replicas_list(struct cvd_meta *m, struct cvd_replica_set **out,
                     size_t *n);
int ek_attach_take(struct cvd_meta *m, const char *volume, const char *node,
                   int64_t lease, uint64_t *epoch,
                   struct cvd_replica_set *prev);
int ek_attach_get(struct cvd_meta *m, const char *volume,
                  struct cvd_attach_rec *out);
int ek_attach_release(struct cvd_meta *m, const char *volume,
                      const char *node, uint64_t epoch, int clean);

/* ---- etcd-watch.c ----------------------------------------------------- */
struct ek_watch;
int ek_watch(struct cvd_meta *m, cvd_meta_watch_fn cb, void *arg);
/* Stops and joins the thread; NULL is ignored. */
void ek_watch_stop(struct ek_watch *w);

#endif

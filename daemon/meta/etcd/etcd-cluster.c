/* The cluster's own records in etcd: founding, P nodes/NAME, P
 * sealkeys/NODE, leases, P alive/NAME (with the node's lease) and P
 * seen/NAME, P locks/NAME (with the holder's lease), and the cluster-wide
 * audit log P audit/TTTTTTTTTTTTTTTTTTTT-NODE-SSSSSSSS (T: nanoseconds
 * since the epoch, so that key order is time order). */
#include "etcd-internal.h"
#include "core/error.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const state_name[] = {
    [CVD_NODE_JOINING] = "Joining", [CVD_NODE_MEMBER] = "Member",
    [CVD_NODE_REMOVED] = "Removed",
};

static json_object *node_encode(const struct cvd_node_rec *n, int *err)
{
    json_object *o = json_object_new_object();

    if (!o) {
        *err = -ENOMEM;
        return NULL;
    }
    ek_add_str(o, "name", n->name, err);
    ek_add_str(o, "address", n->address, err);
    ek_add_str(o, "state", state_name[n->state <= CVD_NODE_REMOVED ?
                                      n->state : CVD_NODE_REMOVED], err);
    ek_add_i64(o, "added", n->added, err);
    ek_add_i64(o, "joined", n->joined, err);
    ek_add_i64(o, "removed", n->removed, err);
    return o;
}

static int node_decode(const struct ek_kv *kv, struct cvd_node_rec *n)
{
    char state[16];
    json_object *o;
    int r, s;

    memset(n, 0, sizeof *n);
    r = ek_parse(kv, &o);
    if (r < 0)
        return r;
    r = ek_json_str(o, "name", n->name, sizeof n->name);
    if (r == 0)
        r = ek_json_str(o, "address", n->address, sizeof n->address);
    if (r == 0)
        r = ek_json_str(o, "state", state, sizeof state);
    for (s = CVD_NODE_JOINING; r == 0 && s <= CVD_NODE_REMOVED; s++)
        if (!strcmp(state, state_name[s]))
            break;
    if (r == 0 && s > CVD_NODE_REMOVED)
        r = cv_error(-EBADMSG, "state \"%s\" is not Joining, Member or "
                     "Removed", state);
    n->state = (enum cvd_node_state)s;
    n->added = ek_json_i64(o, "added");
    n->joined = ek_json_i64(o, "joined");
    n->removed = ek_json_i64(o, "removed");
    n->rev = kv->mod_rev;
    json_object_put(o);
    return r < 0 ? cv_error_prefix(r, "etcd key %s: ", kv->key) : 0;
}

static int node_key(char *buf, size_t len, const char *dir, const char *name)
{
    return ek_name_key(buf, len, dir, "node", name);
}

int ek_found(struct cvd_meta *m, const struct cvd_cluster_rec *c,
             const struct cvd_node_rec *self,
             const struct cvd_kek_rec *sealkey)
{
    struct ek *e = ek_of(m);
    struct cvd_node_rec member = *self;
    struct cvd_kek_rec key = *sealkey;
    struct ek_txn_result res;
    struct ek_txn t;
    char nkey[128], skey[128], id[40] = "";
    int r, err = 0;

    r = node_key(nkey, sizeof nkey, "nodes/", self->name);
    if (r == 0)
        r = node_key(skey, sizeof skey, "sealkeys/", self->name);
    if (r < 0)
        return r;
    member.state = CVD_NODE_MEMBER;
    key.gen = 0;
    snprintf(key.node, sizeof key.node, "%s", self->name);
    ek_txn_init(&t, e);
    ek_cmp(&t, "cluster", 0, EK_CREATE, EK_EQUAL, 0);
    ek_op_get(&t, 1, "cluster", 0);
    ek_op_put_json(&t, 0, "cluster", ek_cluster_encode(c, &err), 0);
    ek_op_put_json(&t, 0, nkey, node_encode(&member, &err), 0);
    ek_op_put_json(&t, 0, skey, ek_kek_encode(&key, 0, &err), 0);
    if (err)
        t.err = err;
    r = ek_txn_commit(e, &t, &res);
    if (r == 0 && !res.succeeded) {
        json_object *o = NULL;
        if (res.n && res.r[0].n && ek_parse(&res.r[0].kvs[0], &o) == 0)
            ek_json_str(o, "id", id, sizeof id);
        json_object_put(o);
        r = cv_error(-EEXIST, "cluster: already founded (cluster id %s)",
                     id[0] ? id : "?");
    }
    ek_txn_result_free(&res);
    return r;
}

int ek_node_add(struct cvd_meta *m, const struct cvd_node_rec *n)
{
    struct ek *e = ek_of(m);
    struct cvd_node_rec cur;
    struct ek_txn_result res;
    struct ek_txn t;
    char key[128];
    int r, err = 0;

    r = node_key(key, sizeof key, "nodes/", n->name);
    if (r < 0)
        return r;
    ek_txn_init(&t, e);
    ek_cmp(&t, key, 0, EK_CREATE, EK_EQUAL, 0);
    ek_op_get(&t, 1, key, 0);
    ek_op_put_json(&t, 0, key, node_encode(n, &err), 0);
    if (err)
        t.err = err;
    r = ek_txn_commit(e, &t, &res);
    if (r == 0 && !res.succeeded) {
        if (res.n && res.r[0].n && node_decode(&res.r[0].kvs[0], &cur) == 0)
            r = cv_error(-EEXIST, "node %s: already exists (%s)", n->name,
                         state_name[cur.state]);
        else
            r = cv_error(-EEXIST, "node %s: already exists", n->name);
    }
    ek_txn_result_free(&res);
    return r;
}

/* alive/NAME and seen/NAME into n (alive, last_seen). */
static void liveness(const struct ek_range *alive, const struct ek_range *seen,
                     struct cvd_node_rec *n)
{
    json_object *o;
    size_t i;

    for (i = 0; i < alive->n; i++)
        if (!strcmp(alive->kvs[i].key + strlen("alive/"), n->name))
            n->alive = 1;
    for (i = 0; i < seen->n; i++)
        if (!strcmp(seen->kvs[i].key + strlen("seen/"), n->name) &&
            ek_parse(&seen->kvs[i], &o) == 0) {
            n->last_seen = ek_json_i64(o, "time");
            json_object_put(o);
        }
}

/* Nodes, liveness and last seen at one revision; prefix: every node. */
static int read_nodes(struct ek *e, const char *name, int prefix,
                      struct ek_txn_result *res)
{
    char k[3][128];
    struct ek_txn t;
    int r;

    r = ek_key(k[0], sizeof k[0], "nodes/%s", name);
    if (r == 0)
        r = ek_key(k[1], sizeof k[1], "alive/%s", name);
    if (r == 0)
        r = ek_key(k[2], sizeof k[2], "seen/%s", name);
    if (r < 0)
        return r;
    ek_txn_init(&t, e);
    ek_op_get(&t, 0, k[0], prefix);
    ek_op_get(&t, 0, k[1], prefix);
    ek_op_get(&t, 0, k[2], prefix);
    r = ek_txn_commit(e, &t, res);
    if (r == 0 && res->n != 3) {
        ek_txn_result_free(res);
        r = cv_error(-EBADMSG, "etcd: a txn of three reads answered %zu",
                     res->n);
    }
    return r;
}

int ek_node_get(struct cvd_meta *m, const char *name,
                struct cvd_node_rec *out)
{
    struct ek_txn_result res;
    char key[128];
    int r;

    memset(out, 0, sizeof *out);
    r = node_key(key, sizeof key, "nodes/", name);
    if (r == 0)
        r = read_nodes(ek_of(m), name, 0, &res);
    if (r < 0)
        return r;
    if (res.r[0].n == 0)
        r = cv_error(-ENOENT, "node %s: no such node", name);
    else
        r = node_decode(&res.r[0].kvs[0], out);
    if (r == 0)
        liveness(&res.r[1], &res.r[2], out);
    ek_txn_result_free(&res);
    return r;
}

int ek_node_list(struct cvd_meta *m, struct cvd_node_rec **out, size_t *n)
{
    struct ek_txn_result res;
    size_t i;
    int r;

    *out = NULL;
    *n = 0;
    r = read_nodes(ek_of(m), "", 1, &res);
    if (r < 0)
        return r;
    *out = calloc(res.r[0].n ? res.r[0].n : 1, sizeof **out);
    if (!*out)
        r = cv_error(-ENOMEM, "nodes: out of memory");
    for (i = 0; r == 0 && i < res.r[0].n; i++) {
        r = node_decode(&res.r[0].kvs[i], &(*out)[i]);
        if (r == 0)
            liveness(&res.r[1], &res.r[2], &(*out)[i]);
    }
    ek_txn_result_free(&res);
    if (r < 0) {
        free(*out);
        *out = NULL;
        return r;
    }
    *n = i;
    return 0;
}

int ek_node_update(struct cvd_meta *m, struct cvd_node_rec *n)
{
    struct ek *e = ek_of(m);
    struct cvd_node_rec cur;
    struct ek_txn_result res;
    struct ek_txn t;
    char key[128];
    int r, i, err;

    r = node_key(key, sizeof key, "nodes/", n->name);
    for (i = 0; r == 0 && i < EK_RETRIES; i++) {
        r = ek_node_get(m, n->name, &cur);
        if (r < 0)
            break;
        if (n->rev && n->rev != cur.rev)
            return cv_error(-EBUSY, "node %s: changed meanwhile (read at "
                            "revision %" PRId64 ", now %" PRId64 "); read "
                            "it again", n->name, n->rev, cur.rev);
        snprintf(cur.address, sizeof cur.address, "%s", n->address);
        cur.state = n->state;
        cur.joined = n->joined;
        cur.removed = n->removed;
        err = 0;
        ek_txn_init(&t, e);
        ek_cmp(&t, key, 0, EK_MOD, EK_EQUAL, cur.rev);
        ek_op_put_json(&t, 0, key, node_encode(&cur, &err), 0);
        if (err)
            t.err = err;
        r = ek_txn_commit(e, &t, &res);
        if (r == 0 && res.succeeded) {
            n->rev = res.rev;
            ek_txn_result_free(&res);
            return 0;
        }
        ek_txn_result_free(&res);
    }
    if (r == 0)
        r = cv_error(-EBUSY, "node %s: changed by others %d times while "
                     "being updated", n->name, EK_RETRIES);
    return r;
}

int ek_sealkey_get(struct cvd_meta *m, const char *node,
                   struct cvd_kek_rec *out)
{
    char key[128];
    struct ek_kv kv;
    int r;

    memset(out, 0, sizeof *out);
    r = node_key(key, sizeof key, "sealkeys/", node);
    if (r == 0)
        r = ek_get(ek_of(m), key, &kv, NULL);
    if (r == 1)
        return cv_error(-ENOENT, "seal key: none stored for node %s", node);
    if (r == 0)
        r = ek_kek_decode(&kv, out);
    if (r == 0)
        out->gen = 0;
    ek_kv_free(&kv);
    return r;
}

/* One put of a sealed key copy (a replace: the node's latest copy). */
static int put_key(struct ek *e, const char *key, json_object *o, int err)
{
    struct ek_txn_result res;
    struct ek_txn t;
    int r;

    ek_txn_init(&t, e);
    ek_op_put_json(&t, 0, key, o, 0);
    if (err)
        t.err = err;
    r = ek_txn_commit(e, &t, &res);
    ek_txn_result_free(&res);
    return r;
}

int ek_sealkey_put(struct cvd_meta *m, const struct cvd_kek_rec *k)
{
    char key[128];
    int r, err = 0;
    json_object *o;

    r = node_key(key, sizeof key, "sealkeys/", k->node);
    if (r < 0)
        return r;
    o = ek_kek_encode(k, 0, &err);
    return put_key(ek_of(m), key, o, err);
}

int ek_kek_put(struct cvd_meta *m, const struct cvd_kek_rec *k)
{
    char key[160];
    int r, err = 0;
    json_object *o;

    r = ek_kek_key(key, sizeof key, k->gen, k->node);
    if (r < 0)
        return r;
    o = ek_kek_encode(k, 1, &err);
    return put_key(ek_of(m), key, o, err);
}

/* ---- leases ----------------------------------------------------------- */
static int lease_call(struct ek *e, const char *path, int64_t ttl, int64_t id,
                      json_object **resp)
{
    json_object *req = json_object_new_object();
    char buf[24];
    int err = 0, r;

    if (!req)
        return cv_error(-ENOMEM, "etcd: out of memory");
    if (ttl) {
        snprintf(buf, sizeof buf, "%" PRId64, ttl);
        ek_add_str(req, "TTL", buf, &err);
    }
    if (id) {
        snprintf(buf, sizeof buf, "%" PRId64, id);
        ek_add_str(req, "ID", buf, &err);
    }
    r = err ? cv_error(err, "etcd: out of memory")
            : ek_call(&e->c, path, req, resp);
    json_object_put(req);
    return r;
}

int ek_lease_grant(struct cvd_meta *m, int64_t ttl, int64_t *id)
{
    json_object *resp = NULL;
    int r;

    *id = 0;
    if (ttl <= 0)
        return cv_error(-EINVAL, "lease: a time to live of %" PRId64 " s",
                        ttl);
    r = lease_call(ek_of(m), "/v3/lease/grant", ttl, 0, &resp);
    if (r == 0) {
        *id = ek_json_i64(resp, "ID");
        if (*id == 0)
            r = cv_error(-EIO, "lease: etcd granted none: %s",
                         json_object_get_string(resp));
    }
    json_object_put(resp);
    return r;
}

/* The gateway answers a keepalive (a stream in gRPC) with one message,
 * {"result": {"ID", "TTL"}}: no TTL is a lease that has expired. */
int ek_lease_keepalive(struct cvd_meta *m, int64_t id)
{
    json_object *resp = NULL, *res = NULL;
    int r;

    r = lease_call(ek_of(m), "/v3/lease/keepalive", 0, id, &resp);
    if (r == 0 && !json_object_object_get_ex(resp, "result", &res))
        r = cv_error(-EIO, "lease %" PRId64 ": keepalive answered %s", id,
                     json_object_get_string(resp));
    if (r == 0 && ek_json_i64(res, "TTL") <= 0)
        r = cv_error(-ENOENT, "lease %" PRId64 ": expired", id);
    json_object_put(resp);
    return r;
}

int ek_lease_revoke(struct cvd_meta *m, int64_t id)
{
    json_object *resp = NULL;
    int r;

    r = lease_call(ek_of(m), "/v3/lease/revoke", 0, id, &resp);
    json_object_put(resp);
    if (r == -ENOENT)
        r = cv_error(-ENOENT, "lease %" PRId64 ": no such lease (expired "
                     "or revoked)", id);
    return r;
}

int ek_alive_put(struct cvd_meta *m, const char *node, int64_t lease,
                 const char *json)
{
    struct ek *e = ek_of(m);
    struct ek_txn_result res;
    struct ek_txn t;
    char akey[128], skey[128];
    json_object *self = json_tokener_parse(json), *seen;
    int r, err = 0;

    r = node_key(akey, sizeof akey, "alive/", node);
    if (r == 0)
        r = node_key(skey, sizeof skey, "seen/", node);
    if (r == 0 && !json_object_is_type(self, json_type_object))
        r = cv_error(-EINVAL, "node %s: its liveness value is not a JSON "
                     "object", node);
    if (r < 0) {
        json_object_put(self);
        return r;
    }
    seen = json_object_new_object();
    if (seen)
        ek_add_i64(seen, "time", (int64_t)time(NULL), &err);
    ek_txn_init(&t, e);
    ek_op_put_json(&t, 0, akey, self, lease);
    ek_op_put_json(&t, 0, skey, seen, 0);
    if (err)
        t.err = err;
    r = ek_txn_commit(e, &t, &res);
    ek_txn_result_free(&res);
    if (r == -ENOENT)
        r = cv_error_prefix(r, "node %s: liveness with lease %" PRId64 ": ",
                            node, lease);
    return r;
}

/* ---- locks ------------------------------------------------------------ */
static void holder_of(const struct ek_kv *kv, char held_by[CVD_NAME_MAX + 1])
{
    json_object *o = NULL;

    held_by[0] = '\0';
    if (ek_parse(kv, &o) == 0 &&
        ek_json_str(o, "holder", held_by, CVD_NAME_MAX + 1) < 0)
        snprintf(held_by, CVD_NAME_MAX + 1, "?");
    json_object_put(o);
}

int ek_lock_take(struct cvd_meta *m, const char *lock, int64_t lease,
                 const char *holder, char held_by[CVD_NAME_MAX + 1])
{
    struct ek *e = ek_of(m);
    struct ek_txn_result res;
    struct ek_txn t;
    json_object *o;
    char key[128];
    int r, err = 0;

    held_by[0] = '\0';
    r = ek_name_key(key, sizeof key, "locks/", "lock", lock);
    if (r < 0)
        return r;
    o = json_object_new_object();
    if (o)
        ek_add_str(o, "holder", holder, &err);
    ek_txn_init(&t, e);
    ek_cmp(&t, key, 0, EK_CREATE, EK_EQUAL, 0);
    ek_op_get(&t, 1, key, 0);
    ek_op_put_json(&t, 0, key, o, lease);
    if (err)
        t.err = err;
    r = ek_txn_commit(e, &t, &res);
    if (r == 0 && !res.succeeded && res.n && res.r[0].n) {
        holder_of(&res.r[0].kvs[0], held_by);
        /* Taken again under the lease that holds it: already ours. */
        if (res.r[0].kvs[0].lease != lease || strcmp(held_by, holder))
            r = cv_error(-EBUSY, "lock %s: held by %s", lock, held_by);
    }
    ek_txn_result_free(&res);
    if (r == -ENOENT)
        r = cv_error_prefix(r, "lock %s: lease %" PRId64 ": ", lock, lease);
    return r;
}

/* Releasing a lock that is not held (its lease expired) is done already;
 * one held under another lease is not ours to release. */
int ek_lock_release(struct cvd_meta *m, const char *lock, int64_t lease)
{
    struct ek *e = ek_of(m);
    char key[128], held_by[CVD_NAME_MAX + 1];
    struct ek_txn_result res;
    struct ek_txn t;
    int r;

    r = ek_name_key(key, sizeof key, "locks/", "lock", lock);
    if (r < 0)
        return r;
    ek_txn_init(&t, e);
    ek_cmp(&t, key, 0, EK_LEASE, EK_EQUAL, lease);
    ek_op_get(&t, 1, key, 0);
    ek_op_del(&t, 0, key, 0);
    r = ek_txn_commit(e, &t, &res);
    if (r == 0 && !res.succeeded && res.n && res.r[0].n) {
        holder_of(&res.r[0].kvs[0], held_by);
        r = cv_error(-EBUSY, "lock %s: held by %s (under another lease)",
                     lock, held_by);
    }
    ek_txn_result_free(&res);
    return r;
}

/* ---- the audit log ---------------------------------------------------- */
int ek_audit_append(struct cvd_meta *m, const char *node,
                    const char *json_line)
{
    struct ek *e = ek_of(m);
    json_object *ev = json_tokener_parse(json_line), *nv;
    struct ek_txn_result res;
    struct ek_txn t;
    struct timespec ts;
    char key[160];
    int r, err = 0, i;

    if (!json_object_is_type(ev, json_type_object)) {
        json_object_put(ev);
        return cv_error(-EINVAL, "audit: the event is not a JSON object");
    }
    r = node_key(key, sizeof key, "audit/", node);
    nv = json_object_new_string(node);
    if (r == 0 && (!nv || json_object_object_add(ev, "node", nv) < 0)) {
        json_object_put(nv);
        r = cv_error(-ENOMEM, "audit: out of memory");
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    /* Unique per node by the sequence number; a collision (a clock that
     * went back) takes the next one. */
    for (i = 0; r == 0 && i < EK_RETRIES; i++) {
        r = ek_key(key, sizeof key, "audit/%020" PRId64 "-%s-%08u",
                   (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, node,
                   atomic_fetch_add(&e->audit_seq, 1) % 100000000u);
        if (r < 0)
            break;
        ek_txn_init(&t, e);
        ek_cmp(&t, key, 0, EK_CREATE, EK_EQUAL, 0);
        ek_op_put_json(&t, 0, key, json_object_get(ev), 0);
        if (err)
            t.err = err;
        r = ek_txn_commit(e, &t, &res);
        if (r == 0 && res.succeeded) {
            ek_txn_result_free(&res);
            break;
        }
        ek_txn_result_free(&res);
        if (r == 0 && i == EK_RETRIES - 1)
            r = cv_error(-EEXIST, "audit: key %s taken", key);
    }
    json_object_put(ev);
    return r;
}

#define AUDIT_PAGE 512

int ek_audit_read(struct cvd_meta *m, int64_t since,
                  int (*cb)(void *arg, json_object *ev), void *arg)
{
    struct ek *e = ek_of(m);
    struct ek_range rg;
    json_object *ev;
    char from[160];
    int64_t rev = 0;
    size_t i, skip = 0;
    int r, stop = 0, more = 1;

    r = ek_key(from, sizeof from, "audit/%020" PRId64,
               since > 0 ? since * 1000000000 : 0);
    while (r == 0 && more && !stop) {
        r = ek_range_from(e, from, "audit/", rev, AUDIT_PAGE, &rg);
        if (r < 0)
            break;
        rev = rg.rev;
        more = rg.more;
        /* A page after the first starts with the last key of the one
         * before. */
        for (i = skip; r == 0 && !stop && i < rg.n; i++) {
            if (ek_parse(&rg.kvs[i], &ev) < 0)
                continue;
            stop = cb(arg, ev);
            json_object_put(ev);
        }
        if (rg.n)
            r = ek_key(from, sizeof from, "%s", rg.kvs[rg.n - 1].key);
        skip = 1;
        ek_range_free(&rg);
    }
    if (r == 0 && stop < 0)
        r = stop;
    return r;
}

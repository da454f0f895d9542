/* Replication's records in etcd (docs/replication.md): P replicas/VOL, a
 * volume's replica set (JSON), and P attach/VOL, who writes it now,
 * attached to the writer's node lease so that it goes when the node does.
 *
 * Taking the attach record and raising the set's epoch is one txn (no
 * attach record, and the set still at the revision it was read at), so
 * two nodes cannot both become the writer, nor one with a stale epoch.
 * Letting go is one txn too: only the record as it was read (its node and
 * epoch) is deleted, with the set's clean flag. */
#include "etcd-internal.h"
#include "core/error.h"
#include "core/json-util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static json_object *replica_encode(const struct cvd_replica *p, int *err)
{
    json_object *o = json_object_new_object();

    if (!o) {
        *err = -ENOMEM;
        return NULL;
    }
    ek_add_str(o, "node", p->node, err);
    ek_add_str(o, "state", cvd_replica_state_name(p->state), err);
    ek_add_i64(o, "since", p->since, err);
    ek_add_i64(o, "behind", (int64_t)p->behind, err);
    ek_add_i64(o, "syncDone", (int64_t)p->sync_done, err);
    ek_add_i64(o, "syncTotal", (int64_t)p->sync_total, err);
    ek_add_str(o, "error", p->error, err);
    return o;
}

static json_object *set_encode(const struct cvd_replica_set *s, int *err)
{
    json_object *o = json_object_new_object(), *a = json_object_new_array();
    unsigned i;

    if (!o || !a) {
        json_object_put(o);
        json_object_put(a);
        *err = -ENOMEM;
        return NULL;
    }
    ek_add_str(o, "volume", s->volume, err);
    ek_add_i64(o, "want", s->want, err);
    ek_add_i64(o, "min", s->min, err);
    ek_add_i64(o, "epoch", (int64_t)s->epoch, err);
    ek_add_i64(o, "shapeGen", (int64_t)s->shape_gen, err);
    ek_add_str(o, "lastWriter", s->last_writer, err);
    ek_add_bool(o, "clean", s->clean, err);
    for (i = 0; i < s->n; i++)
        if (cv_json_append(a, replica_encode(&s->r[i], err)) < 0 && !*err)
            *err = -ENOMEM;
    if (cv_json_add(o, "replicas", a) < 0 && !*err)
        *err = -ENOMEM;
    return o;
}

static int replica_decode(json_object *o, struct cvd_replica *p)
{
    char state[16];
    int r;

    r = ek_json_str(o, "node", p->node, sizeof p->node);
    if (r == 0)
        r = ek_json_str(o, "state", state, sizeof state);
    if (r == 0 && cvd_replica_state_parse(state, &p->state) < 0)
        r = cv_error(-EBADMSG, "replica %s: state \"%s\"", p->node, state);
    if (r == 0)
        r = ek_json_str(o, "error", p->error, sizeof p->error);
    p->since = ek_json_i64(o, "since");
    p->behind = (uint64_t)ek_json_i64(o, "behind");
    p->sync_done = (uint64_t)ek_json_i64(o, "syncDone");
    p->sync_total = (uint64_t)ek_json_i64(o, "syncTotal");
    return r;
}

static int set_decode(const struct ek_kv *kv, struct cvd_replica_set *s)
{
    json_object *o, *a = NULL;
    size_t i, n = 0;
    int r;

    memset(s, 0, sizeof *s);
    r = ek_parse(kv, &o);
    if (r < 0)
        return r;
    r = ek_json_str(o, "volume", s->volume, sizeof s->volume);
    if (r == 0)
        r = ek_json_str(o, "lastWriter", s->last_writer,
                        sizeof s->last_writer);
    if (r == 0 && (!json_object_object_get_ex(o, "replicas", &a) ||
                   !json_object_is_type(a, json_type_array) ||
                   (n = json_object_array_length(a)) > CVD_MAX_REPLICAS))
        r = cv_error(-EBADMSG, "member \"replicas\" is not an array of at "
                     "most %d", CVD_MAX_REPLICAS);
    for (i = 0; r == 0 && i < n; i++)
        r = replica_decode(json_object_array_get_idx(a, i), &s->r[i]);
    s->n = (unsigned)i;
    s->want = (unsigned)ek_json_i64(o, "want");
    s->min = (unsigned)ek_json_i64(o, "min");
    s->epoch = (uint64_t)ek_json_i64(o, "epoch");
    s->shape_gen = (uint64_t)ek_json_i64(o, "shapeGen");
    s->clean = (int)ek_json_i64(o, "clean");
    s->rev = kv->mod_rev;
    json_object_put(o);
    if (r < 0)
        return cv_error_prefix(r, "etcd key %s: ", kv->key);
    return 0;
}

static json_object *attach_encode(const struct cvd_attach_rec *a, int *err)
{
    json_object *o = json_object_new_object();

    if (!o) {
        *err = -ENOMEM;
        return NULL;
    }
    ek_add_str(o, "volume", a->volume, err);
    ek_add_str(o, "node", a->node, err);
    ek_add_i64(o, "epoch", (int64_t)a->epoch, err);
    ek_add_i64(o, "since", a->since, err);
    return o;
}

static int attach_decode(const struct ek_kv *kv, struct cvd_attach_rec *a)
{
    json_object *o;
    int r;

    memset(a, 0, sizeof *a);
    r = ek_parse(kv, &o);
    if (r < 0)
        return r;
    r = ek_json_str(o, "volume", a->volume, sizeof a->volume);
    if (r == 0)
        r = ek_json_str(o, "node", a->node, sizeof a->node);
    a->epoch = (uint64_t)ek_json_i64(o, "epoch");
    a->since = ek_json_i64(o, "since");
    a->lease = kv->lease;
    json_object_put(o);
    if (r < 0)
        return cv_error_prefix(r, "etcd key %s: ", kv->key);
    return 0;
}

/* P replicas/VOL and P attach/VOL. */
static int keys(const char *volume, char rkey[160], char akey[160])
{
    int r = ek_name_key(rkey, 160, "replicas/", "volume", volume);

    if (r == 0)
        r = ek_name_key(akey, 160, "attach/", "volume", volume);
    return r;
}

static int set_check(const struct cvd_replica_set *s)
{
    unsigned i;

    if (s->n == 0 || s->n > CVD_MAX_REPLICAS)
        return cv_error(-EINVAL, "volume %s: a replica set of %u nodes "
                        "(1 to %d)", s->volume, s->n, CVD_MAX_REPLICAS);
    for (i = 0; i < s->n; i++)
        if (!cvd_name_valid(s->r[i].node))
            return cv_error(-EINVAL, "volume %s: replica \"%s\": not a "
                            "valid node name", s->volume, s->r[i].node);
    return 0;
}

int ek_replicas_get(struct cvd_meta *m, const char *volume,
                    struct cvd_replica_set *out)
{
    char rkey[160], akey[160];
    struct ek_kv kv;
    int r;

    memset(out, 0, sizeof *out);
    r = keys(volume, rkey, akey);
    if (r == 0)
        r = ek_get(ek_of(m), rkey, &kv, NULL);
    if (r == 1)
        return cv_error(-ENOENT, "volume %s: no replica set", volume);
    if (r == 0)
        r = set_decode(&kv, out);
    ek_kv_free(&kv);
    return r;
}

int ek_replicas_put(struct cvd_meta *m, struct cvd_replica_set *s)
{
    struct ek *e = ek_of(m);
    struct ek_txn_result res;
    char rkey[160], akey[160];
    struct ek_txn t;
    int r, err = 0;

    r = keys(s->volume, rkey, akey);
    if (r == 0)
        r = set_check(s);
    if (r < 0)
        return r;
    ek_txn_init(&t, e);
    ek_cmp(&t, rkey, 0, s->rev ? EK_MOD : EK_CREATE, EK_EQUAL, s->rev);
    if (s->writer_lease)
        ek_cmp(&t, akey, 0, EK_LEASE, EK_EQUAL, s->writer_lease);
    ek_op_put_json(&t, 0, rkey, set_encode(s, &err), 0);
    ek_op_get(&t, 1, rkey, 0);
    ek_op_get(&t, 1, akey, 0);
    if (err)
        t.err = err;
    r = ek_txn_commit(e, &t, &res);
    if (r == 0 && res.succeeded)
        s->rev = res.rev;
    else if (r == 0 && s->writer_lease &&
             (res.n < 2 || !res.r[1].n ||
              res.r[1].kvs[0].lease != s->writer_lease))
        r = cv_error(-ESTALE, "volume %s: its attach record is not this "
                     "writer's any more (lease %" PRId64 " gone): its replica "
                     "set is left to the new writer", s->volume,
                     s->writer_lease);
    else if (r == 0 && !s->rev)
        r = cv_error(-EEXIST, "volume %s: has a replica set already",
                     s->volume);
    else if (r == 0 && (!res.n || !res.r[0].n))
        r = cv_error(-ENOENT, "volume %s: no replica set (removed "
                     "meanwhile)", s->volume);
    else if (r == 0)
        r = cv_error(-EBUSY, "volume %s: replica set changed meanwhile (read "
                     "at revision %" PRId64 ", now %" PRId64 "); read it "
                     "again", s->volume, s->rev, res.r[0].kvs[0].mod_rev);
    ek_txn_result_free(&res);
    return r;
}

int ek_replicas_list(struct cvd_meta *m, struct cvd_replica_set **out,
                     size_t *n)
{
    struct ek_range rg;
    size_t i;
    int r;

    *out = NULL;
    *n = 0;
    r = ek_range(ek_of(m), "replicas/", 1, 0, 0, &rg);
    if (r < 0)
        return r;
    *out = calloc(rg.n ? rg.n : 1, sizeof **out);
    if (!*out)
        r = cv_error(-ENOMEM, "replica sets: out of memory");
    for (i = 0; r == 0 && i < rg.n; i++)
        r = set_decode(&rg.kvs[i], &(*out)[i]);
    ek_range_free(&rg);
    if (r < 0) {
        free(*out);
        *out = NULL;
        return r;
    }
    *n = i;
    return 0;
}

/* The attach record goes with the set: a removed volume has no writer. */
int ek_replicas_remove(struct cvd_meta *m, const char *volume)
{
    struct ek *e = ek_of(m);
    struct ek_txn_result res;
    char rkey[160], akey[160];
    struct ek_txn t;
    int r;

    r = keys(volume, rkey, akey);
    if (r < 0)
        return r;
    ek_txn_init(&t, e);
    ek_op_del(&t, 0, rkey, 0);
    ek_op_del(&t, 0, akey, 0);
    r = ek_txn_commit(e, &t, &res);
    ek_txn_result_free(&res);
    return r;
}

/* The set and the attach record at one revision: 0 or -errno; *has_set,
 * *has_attach say which exist; *akv keeps the attach record's key. */
static int read_both(struct ek *e, const char *volume, const char *rkey,
                     const char *akey, struct cvd_replica_set *set,
                     struct cvd_attach_rec *att, struct ek_kv *akv,
                     int *has_set, int *has_attach)
{
    struct ek_txn_result res;
    struct ek_txn t;
    int r;

    memset(akv, 0, sizeof *akv);
    ek_txn_init(&t, e);
    ek_op_get(&t, 0, rkey, 0);
    ek_op_get(&t, 0, akey, 0);
    r = ek_txn_commit(e, &t, &res);
    if (r == 0 && res.n != 2)
        r = cv_error(-EBADMSG, "volume %s: a txn of two reads answered %zu",
                     volume, res.n);
    *has_set = r == 0 && res.r[0].n;
    *has_attach = r == 0 && res.r[1].n;
    if (*has_set)
        r = set_decode(&res.r[0].kvs[0], set);
    if (r == 0 && *has_attach) {
        r = attach_decode(&res.r[1].kvs[0], att);
        *akv = res.r[1].kvs[0];
        memset(&res.r[1].kvs[0], 0, sizeof res.r[1].kvs[0]);
    }
    ek_txn_result_free(&res);
    return r;
}

static int attached_elsewhere(const char *volume, const struct ek_kv *kv)
{
    struct cvd_attach_rec a;

    if (attach_decode(kv, &a) < 0)
        snprintf(a.node, sizeof a.node, "?");
    return cv_error(-EBUSY, "volume %s: attached on node %s (epoch %" PRIu64
                    ")", volume, a.node, a.epoch);
}

/* One try: 1 when the set changed between the read and the txn. */
static int take_once(struct ek *e, const char *volume, const char *node,
                     int64_t lease, const char *rkey, const char *akey,
                     uint64_t *epoch, struct cvd_replica_set *prev)
{
    struct cvd_replica_set set, next;
    struct cvd_attach_rec att;
    struct ek_txn_result res;
    struct ek_kv akv;
    struct ek_txn t;
    int r, has_set, has_att, err = 0;

    r = read_both(e, volume, rkey, akey, &set, &att, &akv, &has_set,
                  &has_att);
    if (r == 0 && !has_set)
        r = cv_error(-ENOENT, "volume %s: no replica set", volume);
    if (r == 0 && has_att)
        r = attached_elsewhere(volume, &akv);
    ek_kv_free(&akv);
    if (r < 0)
        return r;
    next = set;
    next.epoch = set.epoch + 1;
    snprintf(next.last_writer, sizeof next.last_writer, "%s", node);
    next.clean = 0;
    memset(&att, 0, sizeof att);
    snprintf(att.volume, sizeof att.volume, "%s", volume);
    snprintf(att.node, sizeof att.node, "%s", node);
    att.epoch = next.epoch;
    att.since = (int64_t)time(NULL);
    ek_txn_init(&t, e);
    ek_cmp(&t, akey, 0, EK_CREATE, EK_EQUAL, 0);
    ek_cmp(&t, rkey, 0, EK_MOD, EK_EQUAL, set.rev);
    ek_op_put_json(&t, 0, akey, attach_encode(&att, &err), lease);
    ek_op_put_json(&t, 0, rkey, set_encode(&next, &err), 0);
    if (err)
        t.err = err;
    r = ek_txn_commit(e, &t, &res);
    if (r == 0 && res.succeeded) {
        *epoch = next.epoch;
        if (prev)
            *prev = set;
    } else if (r == 0) {
        r = 1;
    } else if (r == -ENOENT) {
        r = cv_error_prefix(r, "volume %s: attach with lease %" PRId64 ": ",
                            volume, lease);
    }
    ek_txn_result_free(&res);
    return r;
}

int ek_attach_take(struct cvd_meta *m, const char *volume, const char *node,
                   int64_t lease, uint64_t *epoch,
                   struct cvd_replica_set *prev)
{
    char rkey[160], akey[160];
    int r, i;

    *epoch = 0;
    r = keys(volume, rkey, akey);
    if (r == 0 && !cvd_name_valid(node))
        r = cv_error(-EINVAL, "volume %s: node \"%s\": not a valid name",
                     volume, node);
    for (i = 0; r == 0 && i < EK_RETRIES; i++) {
        r = take_once(ek_of(m), volume, node, lease, rkey, akey, epoch, prev);
        if (r == 1 && i < EK_RETRIES - 1)
            r = 0;
        else if (r == 1)
            r = cv_error(-EBUSY, "volume %s: replica set changed by others "
                         "%d times while attaching", volume, EK_RETRIES);
        else
            break;
    }
    return r;
}

int ek_attach_get(struct cvd_meta *m, const char *volume,
                  struct cvd_attach_rec *out)
{
    char rkey[160], akey[160];
    struct ek_kv kv;
    int r;

    memset(out, 0, sizeof *out);
    r = keys(volume, rkey, akey);
    if (r == 0)
        r = ek_get(ek_of(m), akey, &kv, NULL);
    if (r == 1)
        return cv_error(-ENOENT, "volume %s: not attached", volume);
    if (r == 0)
        r = attach_decode(&kv, out);
    ek_kv_free(&kv);
    return r;
}

/* One try: 1 when the records changed between the read and the txn. */
static int release_once(struct ek *e, const char *volume, const char *node,
                        uint64_t epoch, int clean, const char *rkey,
                        const char *akey)
{
    struct cvd_replica_set set;
    struct cvd_attach_rec att;
    struct ek_txn_result res;
    struct ek_kv akv;
    struct ek_txn t;
    int r, has_set, has_att, err = 0;

    r = read_both(e, volume, rkey, akey, &set, &att, &akv, &has_set,
                  &has_att);
    /* Not ours (any more): nothing to let go. */
    if (r < 0 || !has_att || strcmp(att.node, node) || att.epoch != epoch) {
        ek_kv_free(&akv);
        return r;
    }
    ek_txn_init(&t, e);
    ek_cmp_value(&t, akey, akv.value);
    ek_cmp(&t, akey, 0, EK_MOD, EK_EQUAL, akv.mod_rev);
    ek_cmp(&t, rkey, 0, has_set ? EK_MOD : EK_CREATE, EK_EQUAL,
           has_set ? set.rev : 0);
    ek_op_del(&t, 0, akey, 0);
    if (has_set) {
        set.clean = clean != 0;
        ek_op_put_json(&t, 0, rkey, set_encode(&set, &err), 0);
    }
    if (err)
        t.err = err;
    ek_kv_free(&akv);
    r = ek_txn_commit(e, &t, &res);
    if (r == 0 && !res.succeeded)
        r = 1;
    ek_txn_result_free(&res);
    return r;
}

int ek_attach_release(struct cvd_meta *m, const char *volume,
                      const char *node, uint64_t epoch, int clean)
{
    char rkey[160], akey[160];
    int r, i;

    r = keys(volume, rkey, akey);
    for (i = 0; r == 0 && i < EK_RETRIES; i++) {
        r = release_once(ek_of(m), volume, node, epoch, clean, rkey, akey);
        if (r == 1 && i < EK_RETRIES - 1)
            r = 0;
        else if (r == 1)
            r = cv_error(-EBUSY, "volume %s: replica set changed by others "
                         "%d times while detaching", volume, EK_RETRIES);
        else
            break;
    }
    return r;
}

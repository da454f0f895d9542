/* Classes, the cluster record, KEK generations and access lists in etcd:
 * P classes/NAME, P cluster, P keks/GEN/NODE (GEN zero-padded to 10
 * digits so that a range is in generation order), P access/volume/NAME and
 * P access/class/NAME. */
#include "etcd-internal.h"
#include "core/error.h"
#include "core/json-util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- classes ---------------------------------------------------------- */
static json_object *class_encode(const struct cvd_class_rec *c, int *err)
{
    json_object *o = json_object_new_object();

    if (!o) {
        *err = -ENOMEM;
        return NULL;
    }
    ek_add_str(o, "name", c->name, err);
    ek_add_bool(o, "encrypted", c->encrypted, err);
    ek_add_str(o, "secret", c->secret, err);
    ek_add_str(o, "secretTemplate", c->secret_template, err);
    ek_add_str(o, "type", c->type, err);
    ek_add_i64(o, "aesBits", c->aes_bits, err);
    ek_add_i64(o, "replicas", c->replicas, err);
    ek_add_i64(o, "created", c->created, err);
    return o;
}

static int class_decode(const struct ek_kv *kv, struct cvd_class_rec *c)
{
    json_object *o;
    int r;

    memset(c, 0, sizeof *c);
    r = ek_parse(kv, &o);
    if (r < 0)
        return r;
    r = ek_json_str(o, "name", c->name, sizeof c->name);
    if (r == 0)
        r = ek_json_str(o, "secret", c->secret, sizeof c->secret);
    if (r == 0)
        r = ek_json_str(o, "secretTemplate", c->secret_template,
                        sizeof c->secret_template);
    if (r == 0)
        r = ek_json_str(o, "type", c->type, sizeof c->type);
    c->encrypted = ek_json_i64(o, "encrypted") != 0;
    c->aes_bits = (unsigned)ek_json_i64(o, "aesBits");
    c->replicas = (unsigned)ek_json_i64(o, "replicas");
    c->created = ek_json_i64(o, "created");
    c->rev = kv->mod_rev;
    json_object_put(o);
    return r < 0 ? cv_error_prefix(r, "etcd key %s: ", kv->key) : 0;
}

int ek_class_add(struct cvd_meta *m, const struct cvd_class_rec *c)
{
    struct ek *e = ek_of(m);
    struct ek_txn_result res;
    struct ek_txn t;
    char key[128];
    int r, err = 0;

    r = ek_name_key(key, sizeof key, "classes/", "class", c->name);
    if (r < 0)
        return r;
    ek_txn_init(&t, e);
    ek_cmp(&t, key, 0, EK_CREATE, EK_EQUAL, 0);
    ek_op_put_json(&t, 0, key, class_encode(c, &err), 0);
    if (err)
        t.err = err;
    r = ek_txn_commit(e, &t, &res);
    if (r == 0 && !res.succeeded)
        r = cv_error(-EEXIST, "class %s: already exists", c->name);
    ek_txn_result_free(&res);
    return r;
}

int ek_class_get(struct cvd_meta *m, const char *name,
                 struct cvd_class_rec *out)
{
    char key[128];
    struct ek_kv kv;
    int r;

    memset(out, 0, sizeof *out);
    r = ek_name_key(key, sizeof key, "classes/", "class", name);
    if (r == 0)
        r = ek_get(ek_of(m), key, &kv, NULL);
    if (r == 1)
        return cv_error(-ENOENT, "class %s: no such class", name);
    if (r == 0)
        r = class_decode(&kv, out);
    ek_kv_free(&kv);
    return r;
}

int ek_class_remove(struct cvd_meta *m, const char *name,
                    char used_by[CVD_NAME_MAX + 1])
{
    return ek_remove_unused(ek_of(m), "classes/", "class", name,
                            EK_USER_CLASS, used_by);
}

int ek_class_list(struct cvd_meta *m, struct cvd_class_rec **out, size_t *n)
{
    struct ek_range rg;
    size_t i;
    int r;

    *out = NULL;
    *n = 0;
    r = ek_range(ek_of(m), "classes/", 1, 0, 0, &rg);
    if (r < 0)
        return r;
    *out = calloc(rg.n ? rg.n : 1, sizeof **out);
    if (!*out)
        r = cv_error(-ENOMEM, "classes: out of memory");
    for (i = 0; r == 0 && i < rg.n; i++)
        r = class_decode(&rg.kvs[i], &(*out)[i]);
    ek_range_free(&rg);
    if (r < 0) {
        free(*out);
        *out = NULL;
        return r;
    }
    *n = i;
    return 0;
}

/* ---- the cluster record ----------------------------------------------- */
json_object *ek_cluster_encode(const struct cvd_cluster_rec *c, int *err)
{
    json_object *o = json_object_new_object();

    if (!o) {
        *err = -ENOMEM;
        return NULL;
    }
    ek_add_str(o, "id", c->id, err);
    ek_add_str(o, "encryption", c->encryption, err);
    ek_add_str(o, "protection", c->protection, err);
    ek_add_i64(o, "currentGen", c->current_gen, err);
    ek_add_str(o, "rotation", c->rotation, err);
    ek_add_i64(o, "targetGen", c->target_gen, err);
    ek_add_i64(o, "rotationStarted", c->rotation_started, err);
    ek_add_i64(o, "rotationFinished", c->rotation_finished, err);
    ek_add_str(o, "rotationNode", c->rotation_node, err);
    return o;
}

/* The record as stored, or Disabled (rev 0) when there is none. */
static int read_cluster(struct ek *e, struct cvd_cluster_rec *c)
{
    struct ek_kv kv;
    json_object *o = NULL;
    int r;

    memset(c, 0, sizeof *c);
    snprintf(c->encryption, sizeof c->encryption, CVD_ENC_DISABLED);
    snprintf(c->rotation, sizeof c->rotation, CVD_ROT_NONE);
    r = ek_get(e, "cluster", &kv, NULL);
    if (r == 1)
        return 0;
    if (r == 0)
        r = ek_parse(&kv, &o);
    if (r == 0)
        r = ek_json_str(o, "id", c->id, sizeof c->id);
    if (r == 0)
        r = ek_json_str(o, "encryption", c->encryption,
                        sizeof c->encryption);
    if (r == 0)
        r = ek_json_str(o, "protection", c->protection,
                        sizeof c->protection);
    if (r == 0)
        r = ek_json_str(o, "rotation", c->rotation, sizeof c->rotation);
    if (r == 0)
        r = ek_json_str(o, "rotationNode", c->rotation_node,
                        sizeof c->rotation_node);
    c->current_gen = (uint32_t)ek_json_i64(o, "currentGen");
    c->target_gen = (uint32_t)ek_json_i64(o, "targetGen");
    c->rotation_started = ek_json_i64(o, "rotationStarted");
    c->rotation_finished = ek_json_i64(o, "rotationFinished");
    c->rev = kv.mod_rev;
    json_object_put(o);
    if (r == -EBADMSG)
        r = cv_error_prefix(r, "etcd key cluster: ");
    ek_kv_free(&kv);
    return r;
}

int ek_cluster_get(struct cvd_meta *m, struct cvd_cluster_rec *out)
{
    return read_cluster(ek_of(m), out);
}

/* What cluster_update's expect is compared on (as SQLite does, and the
 * node running a rotation). */
static int same_cluster(const struct cvd_cluster_rec *a,
                        const struct cvd_cluster_rec *b)
{
    return !strcmp(a->id, b->id) && !strcmp(a->encryption, b->encryption) &&
           !strcmp(a->protection, b->protection) &&
           a->current_gen == b->current_gen &&
           !strcmp(a->rotation, b->rotation) &&
           a->target_gen == b->target_gen &&
           !strcmp(a->rotation_node, b->rotation_node);
}

int ek_kek_key(char *buf, size_t len, uint32_t gen, const char *node)
{
    if (!node[0] || strchr(node, '/'))
        return cv_error(-EINVAL, "KEK generation %u: node \"%.80s\" is not "
                        "a valid name", gen, node);
    return ek_key(buf, len, "keks/%010u/%s", gen, node);
}

/* expect is compared field by field with the record just read, and the
 * txn with that record's revision: a change between the two is a lost
 * race, tried again.  expect->rev is not compared: callers chain updates
 * (the c of one is the expect of the next), and the fields are what they
 * mean. */
int ek_cluster_update(struct cvd_meta *m, const struct cvd_cluster_rec *c,
                      const struct cvd_cluster_rec *expect,
                      const struct cvd_kek_rec *kek)
{
    struct ek *e = ek_of(m);
    struct cvd_cluster_rec cur;
    struct ek_txn_result res;
    struct ek_txn t;
    char kkey[160];
    int r = 0, i, err;

    if (kek)
        r = ek_kek_key(kkey, sizeof kkey, kek->gen, kek->node);
    for (i = 0; r == 0 && i < EK_RETRIES; i++) {
        r = read_cluster(e, &cur);
        if (r < 0)
            break;
        if (!same_cluster(&cur, expect))
            return cv_error(-EBUSY, "cluster: its state changed meanwhile "
                            "(now encryption %s, rotation %s)",
                            cur.encryption, cur.rotation);
        err = 0;
        ek_txn_init(&t, e);
        if (cur.rev)
            ek_cmp(&t, "cluster", 0, EK_MOD, EK_EQUAL, cur.rev);
        else
            ek_cmp(&t, "cluster", 0, EK_CREATE, EK_EQUAL, 0);
        if (kek) {
            ek_cmp(&t, kkey, 0, EK_CREATE, EK_EQUAL, 0);
            ek_op_get(&t, 1, kkey, 0);
            ek_op_put_json(&t, 0, kkey, ek_kek_encode(kek, 1, &err), 0);
        }
        ek_op_put_json(&t, 0, "cluster", ek_cluster_encode(c, &err), 0);
        if (err)
            t.err = err;
        r = ek_txn_commit(e, &t, &res);
        if (r == 0 && res.succeeded) {
            ek_txn_result_free(&res);
            return 0;
        }
        if (r == 0 && kek && res.n && res.r[0].n)
            r = cv_error(-EEXIST, "KEK generation %u for node %s: already "
                         "stored", kek->gen, kek->node);
        ek_txn_result_free(&res);
    }
    if (r == 0)
        r = cv_error(-EBUSY, "cluster: changed by others %d times while "
                     "being updated", EK_RETRIES);
    return r;
}

/* ---- KEK generations -------------------------------------------------- */
json_object *ek_kek_encode(const struct cvd_kek_rec *k, int with_gen,
                           int *err)
{
    json_object *o = json_object_new_object();

    if (!o) {
        *err = -ENOMEM;
        return NULL;
    }
    if (with_gen)
        ek_add_i64(o, "gen", k->gen, err);
    ek_add_str(o, "node", k->node, err);
    ek_add_str(o, "protection", k->protection, err);
    ek_add_i64(o, "created", k->created, err);
    ek_add_b64(o, "sealed", k->sealed, k->sealed_len, err);
    return o;
}

int ek_kek_decode(const struct ek_kv *kv, struct cvd_kek_rec *k)
{
    json_object *o;
    int r;

    memset(k, 0, sizeof *k);
    r = ek_parse(kv, &o);
    if (r < 0)
        return r;
    r = ek_json_str(o, "node", k->node, sizeof k->node);
    if (r == 0)
        r = ek_json_str(o, "protection", k->protection,
                        sizeof k->protection);
    if (r == 0)
        r = ek_json_b64(o, "sealed", &k->sealed, &k->sealed_len);
    k->gen = (uint32_t)ek_json_i64(o, "gen");
    k->created = ek_json_i64(o, "created");
    json_object_put(o);
    if (r < 0) {
        cvd_kek_rec_free(k);
        return cv_error_prefix(r, "etcd key %s: ", kv->key);
    }
    return 0;
}

int ek_kek_get(struct cvd_meta *m, uint32_t gen, const char *node,
               struct cvd_kek_rec *out)
{
    char key[160];
    struct ek_kv kv;
    int r;

    memset(out, 0, sizeof *out);
    r = ek_kek_key(key, sizeof key, gen, node);
    if (r == 0)
        r = ek_get(ek_of(m), key, &kv, NULL);
    if (r == 1)
        return cv_error(-ENOENT, "KEK generation %u: none stored for node "
                        "%s", gen, node);
    if (r == 0)
        r = ek_kek_decode(&kv, out);
    ek_kv_free(&kv);
    return r;
}

/* The generation and node of a key "keks/GEN/NODE"; -1 if it is not one. */
static int kek_key_parse(const char *key, uint32_t *gen, const char **node)
{
    char *end;
    unsigned long g;

    if (strncmp(key, "keks/", 5))
        return -1;
    g = strtoul(key + 5, &end, 10);
    if (end != key + 15 || *end != '/' || g > UINT32_MAX)
        return -1;
    *gen = (uint32_t)g;
    *node = end + 1;
    return 0;
}

int ek_kek_list(struct cvd_meta *m, const char *node, uint32_t **gens,
                size_t *n)
{
    struct ek_range rg;
    const char *kn;
    uint32_t g;
    size_t i;
    int r;

    *gens = NULL;
    *n = 0;
    r = ek_range(ek_of(m), "keks/", 1, 0, 0, &rg);
    if (r < 0)
        return r;
    *gens = calloc(rg.n ? rg.n : 1, sizeof **gens);
    if (!*gens)
        r = cv_error(-ENOMEM, "KEK generations: out of memory");
    for (i = 0; r == 0 && i < rg.n; i++)
        if (kek_key_parse(rg.kvs[i].key, &g, &kn) == 0 && !strcmp(kn, node))
            (*gens)[(*n)++] = g;
    ek_range_free(&rg);
    if (r < 0)
        *gens = NULL;
    return r;
}

/* One batch of kek_prune: deletes keys (at most EK_TXN_MAX_OPS) if no
 * volume changed since rev.  1 if it did (read again). */
static int prune_batch(struct ek *e, char **keys, size_t n, int64_t rev)
{
    struct ek_txn_result res;
    struct ek_txn t;
    size_t i;
    int r;

    ek_txn_init(&t, e);
    ek_cmp(&t, "volumes/", 1, EK_MOD, EK_LESS, rev + 1);
    for (i = 0; i < n; i++)
        ek_op_del(&t, 0, keys[i], 0);
    r = ek_txn_commit(e, &t, &res);
    if (r == 0 && !res.succeeded)
        r = 1;
    ek_txn_result_free(&res);
    return r;
}

/* One pass: the generations below keep_from that no volume names, at one
 * revision, deleted in batches; 1 if the volumes changed meanwhile. */
static int prune_pass(struct ek *e, uint32_t keep_from)
{
    struct cvd_volume_rec *vs = NULL;
    struct ek_range rg = { 0 };
    char **del = NULL;
    const char *node;
    size_t nv, i, j, nd = 0, k;
    int64_t rev;
    uint32_t g;
    int r, used;

    r = ek_volumes_read(e, &vs, &nv, &rev);
    if (r == 0)
        r = ek_range(e, "keks/", 1, rev, 0, &rg);
    if (r == 0 && !(del = calloc(rg.n ? rg.n : 1, sizeof *del)))
        r = cv_error(-ENOMEM, "KEK generations: out of memory");
    for (i = 0; r == 0 && i < rg.n; i++) {
        if (kek_key_parse(rg.kvs[i].key, &g, &node) < 0 || g >= keep_from)
            continue;
        for (used = 0, j = 0; j < nv && !used; j++)
            used = vs[j].kek_gen == g;
        if (!used)
            del[nd++] = rg.kvs[i].key;
    }
    /* Each batch holds only if no volume took up a generation it deletes;
     * a generation's keys go in one batch or several, which a second
     * prune finishes if this one stops half way. */
    for (k = 0; r == 0 && k < nd; k += EK_TXN_MAX_OPS)
        r = prune_batch(e, del + k, nd - k < EK_TXN_MAX_OPS ?
                        nd - k : EK_TXN_MAX_OPS, rev);
    free(del);
    ek_range_free(&rg);
    free(vs);
    return r;
}

int ek_kek_prune(struct cvd_meta *m, uint32_t keep_from)
{
    int r = 1, i;

    for (i = 0; r == 1 && i < EK_RETRIES; i++)
        r = prune_pass(ek_of(m), keep_from);
    if (r == 1)
        r = cv_error(-EBUSY, "KEK generations: the volumes changed %d times "
                     "while unused generations were being removed",
                     EK_RETRIES);
    return r;
}

/* Sets kek_gen of names[0..n) (at most EK_TXN_MAX_OPS) in one txn, each
 * volume compared on the revision just read; 1 if one changed meanwhile.
 * A name with no volume is skipped, as SQLite's UPDATE does. */
static int set_gen_batch(struct ek *e, const char *const *names, size_t n,
                         uint32_t gen)
{
    struct cvd_volume_rec v;
    struct ek_txn_result res;
    struct ek_txn t;
    char key[128];
    size_t i;
    int r = 0, err = 0;

    ek_txn_init(&t, e);
    for (i = 0; r == 0 && i < n; i++) {
        r = ek_volume_get(&e->base, names[i], &v);
        if (r == -ENOENT) {
            r = 0;
            continue;
        }
        if (r == 0)
            r = ek_name_key(key, sizeof key, "volumes/", "volume", names[i]);
        if (r < 0)
            break;
        v.kek_gen = gen;
        ek_cmp(&t, key, 0, EK_MOD, EK_EQUAL, v.rev);
        ek_op_put_json(&t, 0, key, ek_volume_encode(&v, &err), 0);
    }
    if (r < 0) {
        ek_txn_free(&t);
        return r;
    }
    if (err)
        t.err = err;
    r = ek_txn_commit(e, &t, &res);
    if (r == 0 && !res.succeeded)
        r = 1;
    ek_txn_result_free(&res);
    return r;
}

/* In batches of EK_TXN_MAX_OPS volumes, because etcd refuses a txn with
 * more compares or operations (--max-txn-ops, 128 by default).  kek_gen
 * is an index for rotation (the volume's token is the truth): a rotation
 * that stops between batches finds the rest still at the old generation
 * when it resumes, and each volume is changed only from the revision it
 * was read at, so no other change to it is lost. */
int ek_volume_set_kek_gen(struct cvd_meta *m, const char *const *names,
                          size_t n, uint32_t gen)
{
    size_t k, len;
    int r = 0, i;

    for (k = 0; r == 0 && k < n; k += len) {
        len = n - k < EK_TXN_MAX_OPS ? n - k : EK_TXN_MAX_OPS;
        for (r = 1, i = 0; r == 1 && i < EK_RETRIES; i++)
            r = set_gen_batch(ek_of(m), names + k, len, gen);
        if (r == 1)
            r = cv_error(-EBUSY, "volume %s: changed by others %d times "
                         "while its KEK generation was being recorded",
                         names[k], EK_RETRIES);
    }
    return r;
}

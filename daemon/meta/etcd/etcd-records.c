/* Volumes and secrets in etcd: P volumes/NAME and P secrets/NAME, JSON
 * values (docs/cluster.md, "Metadata in etcd").  Every change is one txn
 * whose compares keep what SQLite keeps with SQL: a name is unique
 * (create_revision == 0), a volume's secret and class exist
 * (create_revision > 0), a record changes only from the revision it was
 * read at (mod_revision ==), and "no volume uses it" holds at the revision
 * the volumes were read at (mod_revision < R+1 over every volume). */
#include "etcd-internal.h"
#include "core/error.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "DIR/NAME" for a record name that cannot leave its directory. */
int ek_name_key(char *buf, size_t len, const char *dir, const char *what,
                const char *name)
{
    if (!name[0] || strchr(name, '/') || strlen(name) > CVD_NAME_MAX)
        return cv_error(-EINVAL, "%s \"%.80s\": not a valid name", what,
                        name);
    return ek_key(buf, len, "%s%s", dir, name);
}

json_object *ek_volume_encode(const struct cvd_volume_rec *v, int *err)
{
    json_object *o = json_object_new_object();

    if (!o) {
        *err = -ENOMEM;
        return NULL;
    }
    ek_add_str(o, "name", v->name, err);
    ek_add_str(o, "uuid", v->uuid, err);
    ek_add_i64(o, "size", (int64_t)v->size, err);
    ek_add_str(o, "type", v->type, err);
    ek_add_str(o, "cipher", v->cipher, err);
    ek_add_i64(o, "keyBits", v->key_bits, err);
    ek_add_i64(o, "sectorSize", v->sector_size, err);
    ek_add_i64(o, "dataOffset", (int64_t)v->data_offset, err);
    ek_add_str(o, "secret", v->secret, err);
    ek_add_str(o, "path", v->path, err);
    ek_add_str(o, "state", v->state, err);
    ek_add_i64(o, "created", v->created, err);
    ek_add_str(o, "class", v->class_name, err);
    ek_add_str(o, "waitSecret", v->wait_secret, err);
    ek_add_i64(o, "kekGen", v->kek_gen, err);
    ek_add_str(o, "parent", v->parent, err);
    ek_add_str(o, "node", v->node, err);
    return o;
}

int ek_volume_decode(const struct ek_kv *kv, struct cvd_volume_rec *v)
{
    json_object *o;
    int r;

    memset(v, 0, sizeof *v);
    r = ek_parse(kv, &o);
    if (r < 0)
        return r;
    r = ek_json_str(o, "name", v->name, sizeof v->name);
    if (r == 0)
        r = ek_json_str(o, "uuid", v->uuid, sizeof v->uuid);
    if (r == 0)
        r = ek_json_str(o, "type", v->type, sizeof v->type);
    if (r == 0)
        r = ek_json_str(o, "cipher", v->cipher, sizeof v->cipher);
    if (r == 0)
        r = ek_json_str(o, "secret", v->secret, sizeof v->secret);
    if (r == 0)
        r = ek_json_str(o, "path", v->path, sizeof v->path);
    if (r == 0)
        r = ek_json_str(o, "state", v->state, sizeof v->state);
    if (r == 0)
        r = ek_json_str(o, "class", v->class_name, sizeof v->class_name);
    if (r == 0)
        r = ek_json_str(o, "waitSecret", v->wait_secret,
                        sizeof v->wait_secret);
    if (r == 0)
        r = ek_json_str(o, "parent", v->parent, sizeof v->parent);
    if (r == 0)
        r = ek_json_str(o, "node", v->node, sizeof v->node);
    v->size = (uint64_t)ek_json_i64(o, "size");
    v->key_bits = (unsigned)ek_json_i64(o, "keyBits");
    v->sector_size = (unsigned)ek_json_i64(o, "sectorSize");
    v->data_offset = (uint64_t)ek_json_i64(o, "dataOffset");
    v->created = ek_json_i64(o, "created");
    v->kek_gen = (uint32_t)ek_json_i64(o, "kekGen");
    v->rev = kv->mod_rev;
    json_object_put(o);
    if (r < 0)
        return cv_error_prefix(r, "etcd key %s: ", kv->key);
    return 0;
}

int ek_volumes_read(struct ek *e, struct cvd_volume_rec **out, size_t *n,
                    int64_t *rev)
{
    struct ek_range rg;
    size_t i;
    int r;

    *out = NULL;
    *n = 0;
    r = ek_range(e, "volumes/", 1, 0, 0, &rg);
    if (r < 0)
        return r;
    *rev = rg.rev;
    *out = calloc(rg.n ? rg.n : 1, sizeof **out);
    if (!*out)
        r = cv_error(-ENOMEM, "volumes: out of memory");
    for (i = 0; r == 0 && i < rg.n; i++)
        r = ek_volume_decode(&rg.kvs[i], &(*out)[i]);
    ek_range_free(&rg);
    if (r < 0) {
        free(*out);
        *out = NULL;
        return r;
    }
    *n = i;
    return 0;
}

int ek_volume_list(struct cvd_meta *m, struct cvd_volume_rec **out,
                   size_t *n)
{
    int64_t rev;

    return ek_volumes_read(ek_of(m), out, n, &rev);
}

/* Reads one volume; -ENOENT if there is none. */
static int read_volume(struct ek *e, const char *name,
                       struct cvd_volume_rec *out)
{
    char key[128];
    struct ek_kv kv;
    int r;

    r = ek_name_key(key, sizeof key, "volumes/", "volume", name);
    if (r == 0)
        r = ek_get(e, key, &kv, NULL);
    if (r == 1)
        return cv_error(-ENOENT, "volume %s: no such volume", name);
    if (r == 0)
        r = ek_volume_decode(&kv, out);
    ek_kv_free(&kv);
    return r;
}

int ek_volume_get(struct cvd_meta *m, const char *name,
                  struct cvd_volume_rec *out)
{
    return read_volume(ek_of(m), name, out);
}

/* A secret's JSON: name, owner, created, sealed. */
static json_object *secret_encode(const struct cvd_secret_rec *s, int *err)
{
    json_object *o = json_object_new_object();

    if (!o) {
        *err = -ENOMEM;
        return NULL;
    }
    ek_add_str(o, "name", s->name, err);
    ek_add_str(o, "owner", s->owner, err);
    ek_add_i64(o, "created", s->created, err);
    ek_add_b64(o, "sealed", s->sealed, s->sealed_len, err);
    return o;
}

static int secret_decode(const struct ek_kv *kv, int sealed,
                         struct cvd_secret_rec *s)
{
    json_object *o;
    int r;

    memset(s, 0, sizeof *s);
    r = ek_parse(kv, &o);
    if (r < 0)
        return r;
    r = ek_json_str(o, "name", s->name, sizeof s->name);
    if (r == 0)
        r = ek_json_str(o, "owner", s->owner, sizeof s->owner);
    if (r == 0 && sealed)
        r = ek_json_b64(o, "sealed", &s->sealed, &s->sealed_len);
    s->created = ek_json_i64(o, "created");
    s->rev = kv->mod_rev;
    json_object_put(o);
    if (r < 0) {
        cvd_secret_rec_free(s);
        return cv_error_prefix(r, "etcd key %s: ", kv->key);
    }
    return 0;
}

/* Why a volume_add txn failed, from the failure side's reads (in the
 * order the compares were made). */
static int add_refused(const struct cvd_volume_rec *v,
                       const struct cvd_secret_rec *s, int need_secret,
                       const struct ek_txn_result *res)
{
    size_t i = 0;

    if (res->n > i && res->r[i].n)
        return cv_error(-EEXIST, "volume %s: already exists", v->name);
    i++;
    if (s && res->n > i++ && res->r[i - 1].n)
        return cv_error(-EEXIST, "secret %s: already exists", s->name);
    if (need_secret && res->n > i++ && res->r[i - 1].n == 0)
        return cv_error(-ENOENT, "volume %s: secret \"%s\" does not exist",
                        v->name, v->secret);
    if (v->class_name[0] && res->n > i++ && res->r[i - 1].n == 0)
        return cv_error(-ENOENT, "volume %s: class %s does not exist",
                        v->name, v->class_name);
    return cv_error(-EBUSY, "volume %s: the store changed meanwhile; try "
                    "again", v->name);
}

int ek_volume_add(struct cvd_meta *m, const struct cvd_volume_rec *v,
                  const struct cvd_secret_rec *s)
{
    struct ek *e = ek_of(m);
    char vkey[128], skey[128] = "", ukey[128] = "", ckey[128] = "";
    int need_secret = v->secret[0] && (!s || strcmp(v->secret, s->name));
    struct ek_txn_result res;
    struct ek_txn t;
    int r, err = 0;

    r = ek_name_key(vkey, sizeof vkey, "volumes/", "volume", v->name);
    if (r == 0 && s)
        r = ek_name_key(skey, sizeof skey, "secrets/", "secret", s->name);
    if (r == 0 && need_secret)
        r = ek_name_key(ukey, sizeof ukey, "secrets/", "secret", v->secret);
    if (r == 0 && v->class_name[0])
        r = ek_name_key(ckey, sizeof ckey, "classes/", "class",
                        v->class_name);
    if (r < 0)
        return r;
    ek_txn_init(&t, e);
    ek_cmp(&t, vkey, 0, EK_CREATE, EK_EQUAL, 0);
    ek_op_get(&t, 1, vkey, 0);
    if (s) {
        ek_cmp(&t, skey, 0, EK_CREATE, EK_EQUAL, 0);
        ek_op_get(&t, 1, skey, 0);
        ek_op_put_json(&t, 0, skey, secret_encode(s, &err), 0);
    }
    if (need_secret) {
        ek_cmp(&t, ukey, 0, EK_CREATE, EK_GREATER, 0);
        ek_op_get(&t, 1, ukey, 0);
    }
    if (v->class_name[0]) {
        ek_cmp(&t, ckey, 0, EK_CREATE, EK_GREATER, 0);
        ek_op_get(&t, 1, ckey, 0);
    }
    ek_op_put_json(&t, 0, vkey, ek_volume_encode(v, &err), 0);
    if (err)
        t.err = err;
    r = ek_txn_commit(e, &t, &res);
    if (r == 0 && !res.succeeded)
        r = add_refused(v, s, need_secret, &res);
    ek_txn_result_free(&res);
    return r;
}

/* The fields volume_update replaces (meta.h). */
static void copy_mutable(struct cvd_volume_rec *to,
                         const struct cvd_volume_rec *v)
{
    memcpy(to->uuid, v->uuid, sizeof to->uuid);
    to->size = v->size;
    memcpy(to->cipher, v->cipher, sizeof to->cipher);
    to->key_bits = v->key_bits;
    to->sector_size = v->sector_size;
    to->data_offset = v->data_offset;
    memcpy(to->secret, v->secret, sizeof to->secret);
    memcpy(to->path, v->path, sizeof to->path);
    memcpy(to->state, v->state, sizeof to->state);
    memcpy(to->wait_secret, v->wait_secret, sizeof to->wait_secret);
    to->kek_gen = v->kek_gen;
    memcpy(to->parent, v->parent, sizeof to->parent);
}

static int changed(const char *what, const char *name, int64_t had,
                   int64_t now)
{
    return cv_error(-EBUSY, "%s %s: changed meanwhile (read at revision "
                    "%" PRId64 ", now %" PRId64 "); read it again",
                    what, name, had, now);
}

int ek_volume_update(struct cvd_meta *m, struct cvd_volume_rec *v,
                     const char *expect_state)
{
    struct ek *e = ek_of(m);
    struct cvd_volume_rec cur;
    struct ek_txn_result res;
    struct ek_txn t;
    char key[128];
    int r, i, err;

    r = ek_name_key(key, sizeof key, "volumes/", "volume", v->name);
    for (i = 0; r == 0 && i < EK_RETRIES; i++) {
        r = read_volume(e, v->name, &cur);
        if (r < 0)
            break;
        if (strcmp(cur.state, expect_state))
            return cv_error(-EBUSY, "volume %s: is %s (another request is "
                            "working on it)", v->name, cur.state);
        if (v->rev && v->rev != cur.rev)
            return changed("volume", v->name, v->rev, cur.rev);
        copy_mutable(&cur, v);
        err = 0;
        ek_txn_init(&t, e);
        ek_cmp(&t, key, 0, EK_MOD, EK_EQUAL, cur.rev);
        ek_op_put_json(&t, 0, key, ek_volume_encode(&cur, &err), 0);
        if (err)
            t.err = err;
        r = ek_txn_commit(e, &t, &res);
        if (r == 0 && res.succeeded) {
            v->rev = res.rev;
            ek_txn_result_free(&res);
            return 0;
        }
        ek_txn_result_free(&res);
    }
    if (r == 0)
        r = cv_error(-EBUSY, "volume %s: changed by others %d times while "
                     "being updated", v->name, EK_RETRIES);
    return r;
}

/* 1 if volume v uses the secret called name (as its secret, or the one it
 * waits for or moves to). */
static int uses_secret(const struct cvd_volume_rec *v, const char *name)
{
    return !strcmp(v->secret, name) || !strcmp(v->wait_secret, name);
}

static int uses_class(const struct cvd_volume_rec *v, const char *name)
{
    return !strcmp(v->class_name, name);
}

/* The secrets volume vol owns that no other volume uses, at revision rev:
 * their keys and mod revisions compared in t, and deleted. */
static int owned_secrets(struct ek *e, struct ek_txn *t, const char *vol,
                         const struct cvd_volume_rec *vs, size_t nv,
                         int64_t rev)
{
    struct cvd_secret_rec s;
    struct ek_range rg;
    char key[128];
    size_t i, j;
    int r, used;

    r = ek_range(e, "secrets/", 1, rev, 0, &rg);
    for (i = 0; r == 0 && i < rg.n; i++) {
        r = secret_decode(&rg.kvs[i], 0, &s);
        if (r < 0 || strcmp(s.owner, vol))
            continue;
        for (used = 0, j = 0; j < nv && !used; j++)
            used = strcmp(vs[j].name, vol) && uses_secret(&vs[j], s.name);
        if (used)
            continue;
        r = ek_key(key, sizeof key, "%s", rg.kvs[i].key);
        if (r == 0) {
            ek_cmp(t, key, 0, EK_MOD, EK_EQUAL, rg.kvs[i].mod_rev);
            ek_op_del(t, 0, key, 0);
        }
    }
    ek_range_free(&rg);
    return r;
}

int ek_volume_remove(struct cvd_meta *m, const char *name)
{
    struct ek *e = ek_of(m);
    struct cvd_volume_rec *vs = NULL;
    struct ek_txn_result res;
    struct ek_txn t;
    char key[128], akey[160];
    size_t n, i;
    int64_t rev, vrev;
    int r, k;

    r = ek_name_key(key, sizeof key, "volumes/", "volume", name);
    if (r == 0)
        r = ek_key(akey, sizeof akey, "access/volume/%s", name);
    for (k = 0; r == 0 && k < EK_RETRIES; k++) {
        r = ek_volumes_read(e, &vs, &n, &rev);
        if (r < 0)
            break;
        for (vrev = 0, i = 0; i < n; i++)
            if (!strcmp(vs[i].name, name))
                vrev = vs[i].rev;
        if (!vrev) {
            free(vs);
            return cv_error(-ENOENT, "volume %s: no such volume", name);
        }
        ek_txn_init(&t, e);
        ek_cmp(&t, key, 0, EK_MOD, EK_EQUAL, vrev);
        ek_cmp(&t, "volumes/", 1, EK_MOD, EK_LESS, rev + 1);
        r = owned_secrets(e, &t, name, vs, n, rev);
        free(vs);
        vs = NULL;
        if (r < 0) {
            ek_txn_free(&t);
            break;
        }
        ek_op_del(&t, 0, key, 0);
        ek_op_del(&t, 0, akey, 0);
        r = ek_txn_commit(e, &t, &res);
        if (r == 0 && res.succeeded) {
            ek_txn_result_free(&res);
            return 0;
        }
        ek_txn_result_free(&res);
    }
    if (r == 0)
        r = cv_error(-EBUSY, "volume %s: the volumes changed %d times while "
                     "it was being removed", name, EK_RETRIES);
    return r;
}

int ek_remove_unused(struct ek *e, const char *dir, const char *what,
                     const char *name, enum ek_user user,
                     char used_by[CVD_NAME_MAX + 1])
{
    struct cvd_volume_rec *vs = NULL;
    struct ek_txn_result res;
    struct ek_txn t;
    char key[128];
    size_t n, i;
    int64_t rev;
    int r, k, inuse;

    used_by[0] = '\0';
    r = ek_name_key(key, sizeof key, dir, what, name);
    for (k = 0; r == 0 && k < EK_RETRIES; k++) {
        r = ek_volumes_read(e, &vs, &n, &rev);
        if (r < 0)
            break;
        for (i = 0; i < n; i++) {
            inuse = user == EK_USER_SECRET ? uses_secret(&vs[i], name)
                                           : uses_class(&vs[i], name);
            if (inuse)
                break;
        }
        if (i < n) {
            /* The range is in key order: the first user by name. */
            snprintf(used_by, CVD_NAME_MAX + 1, "%s", vs[i].name);
            free(vs);
            return cv_error(-EBUSY, "%s %s: used by volume %s", what, name,
                            used_by);
        }
        free(vs);
        ek_txn_init(&t, e);
        ek_cmp(&t, "volumes/", 1, EK_MOD, EK_LESS, rev + 1);
        ek_cmp(&t, key, 0, EK_CREATE, EK_GREATER, 0);
        ek_op_get(&t, 1, key, 0);
        ek_op_del(&t, 0, key, 0);
        if (user == EK_USER_CLASS) {
            char akey[160];
            r = ek_key(akey, sizeof akey, "access/class/%s", name);
            ek_op_del(&t, 0, akey, 0);
        }
        if (r == 0)
            r = ek_txn_commit(e, &t, &res);
        else
            ek_txn_free(&t);
        if (r == 0 && res.succeeded) {
            ek_txn_result_free(&res);
            return 0;
        }
        if (r == 0 && res.n && res.r[0].n == 0)
            r = cv_error(-ENOENT, "%s %s: no such %s", what, name, what);
        ek_txn_result_free(&res);
        if (r < 0)
            break;
    }
    if (r == 0)
        r = cv_error(-EBUSY, "%s %s: the volumes changed %d times while it "
                     "was being removed", what, name, EK_RETRIES);
    return r;
}

int ek_secret_add(struct cvd_meta *m, const struct cvd_secret_rec *s)
{
    struct ek *e = ek_of(m);
    struct ek_txn_result res;
    struct ek_txn t;
    char key[128];
    int r, err = 0;

    r = ek_name_key(key, sizeof key, "secrets/", "secret", s->name);
    if (r < 0)
        return r;
    ek_txn_init(&t, e);
    ek_cmp(&t, key, 0, EK_CREATE, EK_EQUAL, 0);
    ek_op_put_json(&t, 0, key, secret_encode(s, &err), 0);
    if (err)
        t.err = err;
    r = ek_txn_commit(e, &t, &res);
    if (r == 0 && !res.succeeded)
        r = cv_error(-EEXIST, "secret %s: already exists", s->name);
    ek_txn_result_free(&res);
    return r;
}

static int read_secret(struct ek *e, const char *name, int sealed,
                       struct cvd_secret_rec *out)
{
    char key[128];
    struct ek_kv kv;
    int r;

    memset(out, 0, sizeof *out);
    r = ek_name_key(key, sizeof key, "secrets/", "secret", name);
    if (r == 0)
        r = ek_get(e, key, &kv, NULL);
    if (r == 1)
        return cv_error(-ENOENT, "secret %s: no such secret", name);
    if (r == 0)
        r = secret_decode(&kv, sealed, out);
    ek_kv_free(&kv);
    return r;
}

int ek_secret_get(struct cvd_meta *m, const char *name,
                  struct cvd_secret_rec *out)
{
    return read_secret(ek_of(m), name, 1, out);
}

int ek_secret_remove(struct cvd_meta *m, const char *name,
                     char used_by[CVD_NAME_MAX + 1])
{
    return ek_remove_unused(ek_of(m), "secrets/", "secret", name,
                            EK_USER_SECRET, used_by);
}

int ek_secret_list(struct cvd_meta *m, struct cvd_secret_rec **out,
                   size_t *n)
{
    struct ek_range rg;
    size_t i;
    int r;

    *out = NULL;
    *n = 0;
    r = ek_range(ek_of(m), "secrets/", 1, 0, 0, &rg);
    if (r < 0)
        return r;
    *out = calloc(rg.n ? rg.n : 1, sizeof **out);
    if (!*out)
        r = cv_error(-ENOMEM, "secrets: out of memory");
    for (i = 0; r == 0 && i < rg.n; i++)
        r = secret_decode(&rg.kvs[i], 0, &(*out)[i]);
    ek_range_free(&rg);
    if (r < 0) {
        free(*out);
        *out = NULL;
        return r;
    }
    *n = i;
    return 0;
}

int ek_secret_update(struct cvd_meta *m, struct cvd_secret_rec *s)
{
    struct ek *e = ek_of(m);
    struct cvd_secret_rec cur;
    struct ek_txn_result res;
    struct ek_txn t;
    char key[128];
    int r, i, err;

    r = ek_name_key(key, sizeof key, "secrets/", "secret", s->name);
    for (i = 0; r == 0 && i < EK_RETRIES; i++) {
        r = read_secret(e, s->name, 0, &cur);
        if (r < 0)
            break;
        if (s->rev && s->rev != cur.rev)
            return changed("secret", s->name, s->rev, cur.rev);
        cur.sealed = s->sealed;
        cur.sealed_len = s->sealed_len;
        err = 0;
        ek_txn_init(&t, e);
        ek_cmp(&t, key, 0, EK_MOD, EK_EQUAL, cur.rev);
        ek_op_put_json(&t, 0, key, secret_encode(&cur, &err), 0);
        if (err)
            t.err = err;
        r = ek_txn_commit(e, &t, &res);
        if (r == 0 && res.succeeded) {
            s->rev = res.rev;
            ek_txn_result_free(&res);
            return 0;
        }
        ek_txn_result_free(&res);
    }
    if (r == 0)
        r = cv_error(-EBUSY, "secret %s: changed by others %d times while "
                     "being updated", s->name, EK_RETRIES);
    return r;
}

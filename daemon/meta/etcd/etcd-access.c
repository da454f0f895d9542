/* NBD access lists in etcd: P access/volume/NAME and P access/class/NAME,
 * {"entries":[{"identity":..,"allow":true}]} in identity order, absent
 * when empty; removed with their volume or class (etcd-records.c). */
#include "etcd-internal.h"
#include "core/error.h"
#include "core/json-util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *what(enum cvd_access_target t)
{
    return t == CVD_ACCESS_CLASS ? "class" : "volume";
}

static int keys(enum cvd_access_target t, const char *name, char *owner,
                char *list, size_t len)
{
    int r = ek_name_key(owner, len, t == CVD_ACCESS_CLASS ? "classes/" :
                        "volumes/", what(t), name);

    if (r == 0)
        r = ek_key(list, len, "access/%s/%s", what(t), name);
    return r;
}

static int decode(const struct ek_kv *kv, struct cvd_access_rec **out,
                  size_t *n)
{
    json_object *o, *arr, *one;
    size_t i, len = 0;
    int r;

    *out = NULL;
    *n = 0;
    r = ek_parse(kv, &o);
    if (r < 0)
        return r;
    if (json_object_object_get_ex(o, "entries", &arr) &&
        json_object_is_type(arr, json_type_array))
        len = json_object_array_length(arr);
    if (len && !(*out = calloc(len, sizeof **out)))
        r = cv_error(-ENOMEM, "access list: out of memory");
    for (i = 0; r == 0 && i < len; i++) {
        one = json_object_array_get_idx(arr, i);
        r = ek_json_str(one, "identity", (*out)[i].identity,
                        sizeof (*out)[i].identity);
        (*out)[i].allow = ek_json_i64(one, "allow") != 0;
    }
    json_object_put(o);
    if (r < 0) {
        free(*out);
        *out = NULL;
        return cv_error_prefix(r, "etcd key %s: ", kv->key);
    }
    *n = len;
    return 0;
}

/* The owner and its list at one revision: 1 if there is no owner. */
static int read_both(struct ek *e, const char *owner, const char *list,
                     struct ek_txn_result *res)
{
    struct ek_txn t;
    int r;

    ek_txn_init(&t, e);
    ek_op_get(&t, 0, owner, 0);
    ek_op_get(&t, 0, list, 0);
    r = ek_txn_commit(e, &t, res);
    if (r == 0 && (res->n != 2 || res->r[0].n == 0))
        r = 1;
    return r;
}

int ek_access_list(struct cvd_meta *m, enum cvd_access_target t,
                   const char *name, struct cvd_access_rec **out, size_t *n)
{
    struct ek_txn_result res = { 0 };
    char owner[128], list[160];
    int r;

    *out = NULL;
    *n = 0;
    r = keys(t, name, owner, list, sizeof owner);
    if (r == 0)
        r = read_both(ek_of(m), owner, list, &res);
    if (r == 1)
        r = cv_error(-ENOENT, "%s %s: no such %s", what(t), name, what(t));
    else if (r == 0 && res.r[1].n)
        r = decode(&res.r[1].kvs[0], out, n);
    ek_txn_result_free(&res);
    return r;
}

static int by_identity(const void *a, const void *b)
{
    return strcmp(((const struct cvd_access_rec *)a)->identity,
                  ((const struct cvd_access_rec *)b)->identity);
}

/* cur (n entries, room for n + nset) edited as access_edit says. */
static void apply(struct cvd_access_rec *cur, size_t *n, int clear,
                  const struct cvd_access_rec *set, size_t nset,
                  const char *const *del, size_t ndel)
{
    size_t i, j;

    if (clear)
        *n = 0;
    for (i = 0; i < nset; i++) {
        for (j = 0; j < *n && strcmp(cur[j].identity, set[i].identity); j++)
            ;
        if (j == *n)
            (*n)++;
        cur[j] = set[i];
        cur[j].allow = set[i].allow != 0;
    }
    for (i = 0; i < ndel; i++)
        for (j = 0; j < *n; j++)
            if (!strcmp(cur[j].identity, del[i])) {
                cur[j] = cur[--*n];
                break;
            }
    qsort(cur, *n, sizeof *cur, by_identity);
}

static json_object *encode(const struct cvd_access_rec *a, size_t n,
                           int *err)
{
    json_object *o = json_object_new_object(), *arr, *one;
    size_t i;

    arr = json_object_new_array();
    if (!o || !arr || cv_json_add(o, "entries", arr) < 0) {
        json_object_put(o);
        *err = -ENOMEM;
        return NULL;
    }
    for (i = 0; i < n; i++) {
        one = json_object_new_object();
        if (cv_json_append(arr, one) < 0) {
            *err = -ENOMEM;
            break;
        }
        ek_add_str(one, "identity", a[i].identity, err);
        ek_add_bool(one, "allow", a[i].allow, err);
    }
    return o;
}

/* One try: 0 done, 1 lost a race. */
static int edit_once(struct ek *e, enum cvd_access_target t,
                     const char *name, const char *owner, const char *list,
                     int clear, const struct cvd_access_rec *set, size_t nset,
                     const char *const *del, size_t ndel)
{
    struct cvd_access_rec *cur = NULL, *room = NULL;
    struct ek_txn_result res, done;
    struct ek_txn txn;
    int64_t owner_create, list_mod = 0;
    size_t n = 0;
    int r, err = 0;

    r = read_both(e, owner, list, &res);
    if (r == 1) {
        ek_txn_result_free(&res);
        return cv_error(-ENOENT, "%s %s: no such %s", what(t), name, what(t));
    }
    if (r < 0)
        return r;
    owner_create = res.r[0].kvs[0].create_rev;
    if (res.r[1].n) {
        list_mod = res.r[1].kvs[0].mod_rev;
        r = decode(&res.r[1].kvs[0], &cur, &n);
    }
    ek_txn_result_free(&res);
    if (r == 0 && !(room = realloc(cur, (n + nset + 1) * sizeof *cur)))
        r = cv_error(-ENOMEM, "access list: out of memory");
    if (r < 0) {
        free(cur);
        return r;
    }
    cur = room;
    apply(cur, &n, clear, set, nset, del, ndel);
    ek_txn_init(&txn, e);
    /* The same owner (not one removed and made again) and list. */
    ek_cmp(&txn, owner, 0, EK_CREATE, EK_EQUAL, owner_create);
    ek_cmp(&txn, list, 0, EK_MOD, EK_EQUAL, list_mod);
    if (n)
        ek_op_put_json(&txn, 0, list, encode(cur, n, &err), 0);
    else
        ek_op_del(&txn, 0, list, 0);
    free(cur);
    if (err)
        txn.err = err;
    r = ek_txn_commit(e, &txn, &done);
    if (r == 0 && !done.succeeded)
        r = 1;
    ek_txn_result_free(&done);
    return r;
}

int ek_access_edit(struct cvd_meta *m, enum cvd_access_target t,
                   const char *name, int clear,
                   const struct cvd_access_rec *set, size_t nset,
                   const char *const *del, size_t ndel)
{
    char owner[128], list[160];
    int r, i;

    r = keys(t, name, owner, list, sizeof owner);
    for (i = 0; r == 0 && i < EK_RETRIES; i++) {
        r = edit_once(ek_of(m), t, name, owner, list, clear, set, nset, del,
                      ndel);
        if (r != 1)
            return r;
        r = 0;
    }
    if (r == 0)
        r = cv_error(-EBUSY, "%s %s: its access list changed %d times while "
                     "being edited", what(t), name, EK_RETRIES);
    return r;
}

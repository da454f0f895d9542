/* The key-value layer: ranges and txns in the gateway's JSON, keys under
 * the store's prefix (added here on the way out, removed on the way in),
 * base64 keys and values, int64 fields as strings. */
#include "etcd-internal.h"
#include "core/base64.h"
#include "core/error.h"
#include "core/json-util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A value larger than etcd takes (--max-request-bytes, 1.5 MiB). */
#define MAX_VALUE (4u << 20)

int ek_key(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len)
        return cv_error(-ENAMETOOLONG, "etcd: key \"%.64s...\" too long",
                        buf);
    return 0;
}

/* ---- JSON helpers ----------------------------------------------------- */
int64_t ek_json_i64(json_object *o, const char *key)
{
    json_object *v;

    if (!o || !json_object_object_get_ex(o, key, &v))
        return 0;
    if (json_object_is_type(v, json_type_string))
        return strtoll(json_object_get_string(v), NULL, 10);
    if (json_object_is_type(v, json_type_int))
        return json_object_get_int64(v);
    if (json_object_is_type(v, json_type_boolean))
        return json_object_get_boolean(v);
    return 0;
}

int ek_json_str(json_object *o, const char *key, char *buf, size_t len)
{
    json_object *v;
    const char *s;

    buf[0] = '\0';
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v,
                                                          json_type_null))
        return 0;
    s = cv_json_string(o, key);
    if (!s || strlen(s) >= len)
        return cv_error(-EBADMSG, "member \"%s\" is not a string of at most "
                        "%zu bytes", key, len - 1);
    memcpy(buf, s, strlen(s) + 1);
    return 0;
}

int ek_json_b64(json_object *o, const char *key, unsigned char **data,
                size_t *len)
{
    const char *s = cv_json_string(o, key);

    *data = NULL;
    *len = 0;
    if (!s)
        return cv_error(-EBADMSG, "member \"%s\" missing", key);
    if (cv_base64_decode(s, MAX_VALUE, data, len) < 0)
        return cv_error(-EBADMSG, "member \"%s\" is not base64", key);
    return 0;
}

static void add(json_object *o, const char *key, json_object *v, int *err)
{
    if (cv_json_add(o, key, v) < 0 && !*err)
        *err = -ENOMEM;
}

void ek_add_str(json_object *o, const char *key, const char *v, int *err)
{
    add(o, key, json_object_new_string(v ? v : ""), err);
}

void ek_add_i64(json_object *o, const char *key, int64_t v, int *err)
{
    add(o, key, json_object_new_int64(v), err);
}

void ek_add_bool(json_object *o, const char *key, int v, int *err)
{
    add(o, key, json_object_new_boolean(v != 0), err);
}

void ek_add_b64(json_object *o, const char *key, const void *v, size_t len,
                int *err)
{
    char *text = NULL;

    if (cv_base64_encode(v, len, &text) < 0) {
        if (!*err)
            *err = -ENOMEM;
        return;
    }
    add(o, key, json_object_new_string(text), err);
    free(text);
}

/* A gateway int64 (a string). */
static void add_rev(json_object *o, const char *key, int64_t v, int *err)
{
    char buf[24];

    snprintf(buf, sizeof buf, "%" PRId64, v);
    add(o, key, json_object_new_string(buf), err);
}

int ek_parse(const struct ek_kv *kv, json_object **out)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = NULL;

    *out = NULL;
    if (!tok)
        return cv_error(-ENOMEM, "etcd: out of memory");
    o = json_tokener_parse_ex(tok, kv->value, (int)kv->len);
    if (json_tokener_get_error(tok) != json_tokener_success ||
        !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        json_tokener_free(tok);
        return cv_error(-EBADMSG, "etcd key %s: its value is not a JSON "
                        "object", kv->key);
    }
    json_tokener_free(tok);
    *out = o;
    return 0;
}

/* ---- keys ------------------------------------------------------------- */
/* prefix + key, base64, as a member of o; with prefix, range_end too:
 * the key after every key that starts with it. */
void ek_add_key(struct ek *e, json_object *o, const char *key, int prefix,
                int *err)
{
    size_t plen = strlen(e->prefix), klen = strlen(key), n;
    unsigned char *full = malloc(plen + klen + 1);

    if (!full) {
        *err = *err ? *err : -ENOMEM;
        return;
    }
    memcpy(full, e->prefix, plen);
    memcpy(full + plen, key, klen);
    n = plen + klen;
    ek_add_b64(o, "key", full, n, err);
    if (prefix) {
        while (n && full[n - 1] == 0xff)
            n--;
        if (n == 0) {
            /* Every key: etcd's "\0" range end. */
            ek_add_b64(o, "range_end", "", 1, err);
        } else {
            full[n - 1]++;
            ek_add_b64(o, "range_end", full, n, err);
        }
    }
    free(full);
}

void ek_kv_free(struct ek_kv *kv)
{
    free(kv->key);
    free(kv->value);
    memset(kv, 0, sizeof *kv);
}

void ek_range_free(struct ek_range *r)
{
    for (size_t i = 0; i < r->n; i++)
        ek_kv_free(&r->kvs[i]);
    free(r->kvs);
    memset(r, 0, sizeof *r);
}

static int decode_kv(struct ek *e, json_object *o, struct ek_kv *kv)
{
    size_t plen = strlen(e->prefix), len;
    unsigned char *key, *val = NULL;
    const char *v64;
    int r;

    memset(kv, 0, sizeof *kv);
    r = ek_json_b64(o, "key", &key, &len);
    if (r < 0)
        return cv_error_prefix(r, "etcd: an answer's key: ");
    if (len < plen || memcmp(key, e->prefix, plen) ||
        memchr(key, '\0', len)) {
        free(key);
        return cv_error(-EBADMSG, "etcd: a key outside the prefix %s",
                        e->prefix);
    }
    kv->key = strndup((char *)key + plen, len - plen);
    free(key);
    v64 = cv_json_string(o, "value");
    if (v64 && cv_base64_decode(v64, MAX_VALUE, &val, &len) < 0)
        return cv_error(-EBADMSG, "etcd key %s: its value is not base64",
                        kv->key ? kv->key : "?");
    kv->value = malloc((v64 ? len : 0) + 1);
    if (!kv->key || !kv->value) {
        free(val);
        return cv_error(-ENOMEM, "etcd: out of memory");
    }
    kv->len = v64 ? len : 0;
    if (kv->len)
        memcpy(kv->value, val, kv->len);
    kv->value[kv->len] = '\0';
    free(val);
    kv->create_rev = ek_json_i64(o, "create_revision");
    kv->mod_rev = ek_json_i64(o, "mod_revision");
    kv->version = ek_json_i64(o, "version");
    kv->lease = ek_json_i64(o, "lease");
    return 0;
}

/* A range answer (the object with header, kvs, more). */
static int decode_range(struct ek *e, json_object *o, struct ek_range *out)
{
    json_object *kvs, *hdr;
    size_t i, n;
    int r = 0;

    memset(out, 0, sizeof *out);
    if (json_object_object_get_ex(o, "header", &hdr))
        out->rev = ek_json_i64(hdr, "revision");
    out->more = ek_json_i64(o, "more") != 0;
    if (!json_object_object_get_ex(o, "kvs", &kvs) ||
        !json_object_is_type(kvs, json_type_array))
        return 0;
    n = json_object_array_length(kvs);
    out->kvs = calloc(n ? n : 1, sizeof *out->kvs);
    if (!out->kvs)
        return cv_error(-ENOMEM, "etcd: out of memory");
    for (i = 0; r == 0 && i < n; i++) {
        r = decode_kv(e, json_object_array_get_idx(kvs, i), &out->kvs[i]);
        out->n = i + 1;
    }
    if (r < 0)
        ek_range_free(out);
    return r;
}

static json_object *range_req(struct ek *e, const char *key, int prefix,
                              int64_t rev, int64_t limit, int *err)
{
    json_object *o = json_object_new_object();

    if (!o) {
        *err = -ENOMEM;
        return NULL;
    }
    ek_add_key(e, o, key, prefix, err);
    if (rev)
        add_rev(o, "revision", rev, err);
    if (limit)
        add_rev(o, "limit", limit, err);
    return o;
}

int ek_range_from(struct ek *e, const char *from, const char *within,
                  int64_t rev, int64_t limit, struct ek_range *out)
{
    json_object *req, *resp = NULL, *end = NULL, *v;
    int err = 0, r;

    memset(out, 0, sizeof *out);
    req = range_req(e, from, 0, rev, limit, &err);
    /* within's range end, from a request made for it. */
    if (req)
        end = range_req(e, within, 1, 0, 0, &err);
    if (end && json_object_object_get_ex(end, "range_end", &v))
        add(req, "range_end", json_object_get(v), &err);
    r = err ? cv_error(err, "etcd: out of memory") : 0;
    if (r == 0)
        r = ek_call(&e->c, "/v3/kv/range", req, &resp);
    if (r == 0)
        r = decode_range(e, resp, out);
    json_object_put(end);
    json_object_put(req);
    json_object_put(resp);
    return r;
}

int ek_range(struct ek *e, const char *key, int prefix, int64_t rev,
             int64_t limit, struct ek_range *out)
{
    json_object *req, *resp = NULL;
    int err = 0, r;

    memset(out, 0, sizeof *out);
    req = range_req(e, key, prefix, rev, limit, &err);
    r = err ? cv_error(err, "etcd: out of memory") : 0;
    if (r == 0)
        r = ek_call(&e->c, "/v3/kv/range", req, &resp);
    if (r == 0)
        r = decode_range(e, resp, out);
    json_object_put(req);
    json_object_put(resp);
    return r;
}

int ek_get(struct ek *e, const char *key, struct ek_kv *out, int64_t *rev)
{
    struct ek_range rg;
    int r;

    memset(out, 0, sizeof *out);
    r = ek_range(e, key, 0, 0, 0, &rg);
    if (r < 0)
        return r;
    if (rev)
        *rev = rg.rev;
    if (rg.n == 0) {
        ek_range_free(&rg);
        return 1;
    }
    *out = rg.kvs[0];
    memset(&rg.kvs[0], 0, sizeof rg.kvs[0]);
    ek_range_free(&rg);
    return 0;
}

/* ---- txn -------------------------------------------------------------- */
static void txn_fail(struct ek_txn *t, int err)
{
    if (!t->err)
        t->err = err;
}

void ek_txn_init(struct ek_txn *t, struct ek *e)
{
    memset(t, 0, sizeof *t);
    t->e = e;
    t->req = json_object_new_object();
    t->cmp = json_object_new_array();
    t->then = json_object_new_array();
    t->orelse = json_object_new_array();
    if (!t->req || !t->cmp || !t->then || !t->orelse) {
        txn_fail(t, -ENOMEM);
        return;
    }
    json_object_object_add(t->req, "compare", json_object_get(t->cmp));
    json_object_object_add(t->req, "success", json_object_get(t->then));
    json_object_object_add(t->req, "failure", json_object_get(t->orelse));
}

void ek_txn_free(struct ek_txn *t)
{
    json_object_put(t->req);
    json_object_put(t->cmp);
    json_object_put(t->then);
    json_object_put(t->orelse);
    memset(t, 0, sizeof *t);
}

static const char *const target_name[] = {
    [EK_CREATE] = "CREATE", [EK_MOD] = "MOD", [EK_VALUE] = "VALUE",
    [EK_LEASE] = "LEASE",
};
static const char *const result_name[] = {
    [EK_EQUAL] = "EQUAL", [EK_GREATER] = "GREATER", [EK_LESS] = "LESS",
    [EK_NOT_EQUAL] = "NOT_EQUAL",
};

static json_object *new_cmp(struct ek_txn *t, const char *key,
                            int prefix, enum ek_target target,
                            enum ek_result result)
{
    json_object *c;

    if (t->err)
        return NULL;
    if (t->ncmp == EK_TXN_MAX_OPS) {
        txn_fail(t, -E2BIG);
        return NULL;
    }
    c = json_object_new_object();
    if (!c || json_object_array_add(t->cmp, c) < 0) {
        json_object_put(c);
        txn_fail(t, -ENOMEM);
        return NULL;
    }
    t->ncmp++;
    ek_add_key(t->e, c, key, prefix, &t->err);
    ek_add_str(c, "target", target_name[target], &t->err);
    ek_add_str(c, "result", result_name[result], &t->err);
    return c;
}

void ek_cmp(struct ek_txn *t, const char *key, int prefix,
            enum ek_target target, enum ek_result result, int64_t val)
{
    static const char *const field[] = {
        [EK_CREATE] = "create_revision", [EK_MOD] = "mod_revision",
        [EK_VALUE] = "value", [EK_LEASE] = "lease",
    };
    json_object *c = new_cmp(t, key, prefix, target, result);

    if (c)
        add_rev(c, field[target], val, &t->err);
}

void ek_cmp_value(struct ek_txn *t, const char *key, const char *value)
{
    json_object *c = new_cmp(t, key, 0, EK_VALUE, EK_EQUAL);

    if (c)
        ek_add_b64(c, "value", value, strlen(value), &t->err);
}

/* A new {"request_KIND": {...}} on one side; the inner object. */
static json_object *new_op(struct ek_txn *t, int on_fail, const char *kind,
                           const char *key, int prefix)
{
    json_object *side = on_fail ? t->orelse : t->then, *op, *in;
    size_t *n = on_fail ? &t->nelse : &t->nthen;

    if (t->err)
        return NULL;
    if (*n == EK_TXN_MAX_OPS) {
        txn_fail(t, -E2BIG);
        return NULL;
    }
    op = json_object_new_object();
    in = json_object_new_object();
    if (!op || !in || json_object_array_add(side, op) < 0) {
        json_object_put(op);
        json_object_put(in);
        txn_fail(t, -ENOMEM);
        return NULL;
    }
    (*n)++;
    add(op, kind, in, &t->err);
    ek_add_key(t->e, in, key, prefix, &t->err);
    return in;
}

void ek_op_put(struct ek_txn *t, int on_fail, const char *key,
               const char *value, int64_t lease)
{
    json_object *in = new_op(t, on_fail, "request_put", key, 0);

    if (!in)
        return;
    ek_add_b64(in, "value", value, strlen(value), &t->err);
    if (lease)
        add_rev(in, "lease", lease, &t->err);
}

void ek_op_put_json(struct ek_txn *t, int on_fail, const char *key,
                    json_object *obj, int64_t lease)
{
    if (!obj)
        txn_fail(t, -ENOMEM);
    else
        ek_op_put(t, on_fail, key,
                  json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN),
                  lease);
    json_object_put(obj);
}

void ek_op_del(struct ek_txn *t, int on_fail, const char *key, int prefix)
{
    new_op(t, on_fail, "request_delete_range", key, prefix);
}

void ek_op_get(struct ek_txn *t, int on_fail, const char *key, int prefix)
{
    new_op(t, on_fail, "request_range", key, prefix);
}

void ek_txn_result_free(struct ek_txn_result *res)
{
    for (size_t i = 0; i < res->n; i++)
        ek_range_free(&res->r[i]);
    free(res->r);
    memset(res, 0, sizeof *res);
}

static int decode_txn(struct ek *e, json_object *o, struct ek_txn_result *res)
{
    json_object *hdr, *list, *one, *range;
    size_t i, n = 0;
    int r = 0;

    if (json_object_object_get_ex(o, "header", &hdr))
        res->rev = ek_json_i64(hdr, "revision");
    res->succeeded = ek_json_i64(o, "succeeded") != 0;
    if (json_object_object_get_ex(o, "responses", &list) &&
        json_object_is_type(list, json_type_array))
        n = json_object_array_length(list);
    res->r = calloc(n ? n : 1, sizeof *res->r);
    if (!res->r)
        return cv_error(-ENOMEM, "etcd: out of memory");
    for (i = 0; r == 0 && i < n; i++) {
        one = json_object_array_get_idx(list, i);
        res->n = i + 1;
        if (json_object_object_get_ex(one, "response_range", &range))
            r = decode_range(e, range, &res->r[i]);
    }
    return r;
}

int ek_txn_commit(struct ek *e, struct ek_txn *t, struct ek_txn_result *res)
{
    json_object *resp = NULL;
    int r;

    memset(res, 0, sizeof *res);
    if (t->err == -E2BIG)
        r = cv_error(-E2BIG, "etcd: a txn of more than %d operations",
                     EK_TXN_MAX_OPS);
    else if (t->err)
        r = cv_error(t->err, "etcd: building a txn: %s", strerror(-t->err));
    else
        r = ek_call(&e->c, "/v3/kv/txn", t->req, &resp);
    if (r == 0)
        r = decode_txn(e, resp, res);
    if (r < 0)
        ek_txn_result_free(res);
    json_object_put(resp);
    ek_txn_free(t);
    return r;
}

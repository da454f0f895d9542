/* /v1/secrets: create, list, delete.  A value comes in once, base64, and
 * is never sent back: not here, not in a log. */
#include "admin-internal.h"
#include "daemon.h"
#include "error.h"
#include "meta.h"
#include "secmem.h"
#include "volumes.h"
#include "volumes-util.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Strict base64 (padding optional, no whitespace) into locked memory. */
static int decode_base64(const char *name, const char *in, struct cv_secret *out)
{
    size_t len = strlen(in);
    EVP_ENCODE_CTX *ctx;
    int n = 0, m = 0, r = 0;

    memset(out, 0, sizeof *out);
    if (len == 0 || len > (CV_SECRET_MAX / 3 + 1) * 4)
        return cv_error(-EINVAL, "secret %s: value must be 1 to %d bytes, "
                        "base64", name, CV_SECRET_MAX);
    if (strspn(in, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
               "0123456789+/=") != len)
        return cv_error(-EINVAL, "secret %s: value is not base64", name);
    out->alloc = len / 4 * 3 + 3;
    out->data = cv_secmem_alloc(out->alloc);
    ctx = EVP_ENCODE_CTX_new();
    if (!out->data || !ctx) {
        r = cv_error(-ENOMEM, "secret %s: out of memory", name);
        goto out;
    }
    EVP_DecodeInit(ctx);
    if (EVP_DecodeUpdate(ctx, (unsigned char *)out->data, &n,
                         (const unsigned char *)in, (int)len) < 0 ||
        EVP_DecodeFinal(ctx, (unsigned char *)out->data + n, &m) != 1) {
        r = cv_error(-EINVAL, "secret %s: value is not base64", name);
        goto out;
    }
    out->len = (size_t)(n + m);
    if (out->len == 0)
        r = cv_error(-EINVAL, "secret %s: value is empty", name);
out:
    EVP_ENCODE_CTX_free(ctx);
    if (r < 0)
        cv_secret_free(out);
    return r;
}

static json_object *create(struct cvd *d, json_object *body, unsigned *code)
{
    static const char *const fields[] = { "name", "value", NULL };
    const char *name = NULL, *value = NULL;
    struct cv_secret s = { 0 };
    json_object *o;
    int r;

    r = cvd_admin_known_fields(body, fields);
    if (r == 0 && (r = cvd_admin_get_string(body, "name", &name)) == 0)
        r = cv_error(-EINVAL, "request body: \"name\" is missing");
    if (r > 0)
        r = cvd_check_name("secret", name);
    if (r >= 0 && (r = cvd_admin_get_string(body, "value", &value)) == 0)
        r = cv_error(-EINVAL, "secret %s: \"value\" (base64) is missing", name);
    if (r >= 0)
        r = decode_base64(name, value, &s);
    /* json-c's copy of the value goes when the body is freed: wipe it
     * first (the string is the body object's own buffer). */
    if (value)
        OPENSSL_cleanse((char *)value, strlen(value));
    if (r >= 0)
        r = cvd_secret_create(d, name, s.data, s.len);
    cv_secret_free(&s);
    if (r < 0)
        return cvd_admin_fail(code, r);
    o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "created", cvd_admin_time((int64_t)time(NULL)));
    *code = 201;
    return o;
}

static json_object *list(struct cvd *d, unsigned *code)
{
    struct cvd_secret_rec *secs = NULL;
    struct cvd_volume_rec *vols = NULL;
    size_t ns = 0, nv = 0, i, j;
    json_object *a, *o, *used;
    int r;

    r = d->meta->ops->secret_list(d->meta, &secs, &ns);
    if (r == 0)
        r = d->meta->ops->volume_list(d->meta, &vols, &nv);
    if (r < 0) {
        free(secs);
        return cvd_admin_fail(code, r);
    }
    a = json_object_new_array();
    for (i = 0; i < ns; i++) {
        o = json_object_new_object();
        used = json_object_new_array();
        for (j = 0; j < nv; j++)
            if (!strcmp(vols[j].secret, secs[i].name) ||
                !strcmp(vols[j].wait_secret, secs[i].name))
                json_object_array_add(used, json_object_new_string(vols[j].name));
        json_object_object_add(o, "name", json_object_new_string(secs[i].name));
        json_object_object_add(o, "created", cvd_admin_time(secs[i].created));
        json_object_object_add(o, "generated_for", secs[i].owner[0] ?
                               json_object_new_string(secs[i].owner) : NULL);
        json_object_object_add(o, "used_by", used);
        json_object_array_add(a, o);
    }
    free(secs);
    free(vols);
    *code = 200;
    return a;
}

static json_object *delete(struct cvd *d, const char *name, unsigned *code)
{
    return cvd_admin_deleted(code, cvd_secret_delete(d, name), name);
}

json_object *cvd_admin_secrets(struct cvd *d, const char *actor,
                               const char *method,
                               const char *rest, json_object *body,
                               unsigned *code)
{
    (void)actor;
    if (!rest[0] || !strcmp(rest, "/")) {
        if (!strcmp(method, "GET"))
            return list(d, code);
        if (!strcmp(method, "POST"))
            return create(d, body, code);
        return cvd_admin_error(code, 405, "/v1/secrets: use GET or POST");
    }
    if (strchr(rest + 1, '/'))
        return cvd_admin_error(code, 404, "no such endpoint under /v1/secrets");
    if (!strcmp(method, "DELETE"))
        return delete(d, rest + 1, code);
    return cvd_admin_error(code, 405, "/v1/secrets/NAME: use DELETE (a "
                           "secret's value is never returned)");
}

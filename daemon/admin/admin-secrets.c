/* /v1/secrets: create, list, update, delete.  A value comes in base64 and
 * is never sent back: not here, not in a log, not in the audit log, which
 * records every change and every refused one by name. */
#include "admin-internal.h"
#include "audit/audit.h"
#include "daemon.h"
#include "core/error.h"
#include "meta/meta.h"
#include "core/secmem.h"
#include "volumes/volumes.h"
#include "volumes/volumes-util.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Strict base64, padding optional, decoded by EVP_DecodeBlock from a
 * padded copy in locked memory: OpenSSL's streaming decoder keeps input
 * in a context that it frees without wiping. */
int cvd_admin_decode_secret(const char *name, const char *in,
                            struct cv_secret *out)
{
    size_t len = strlen(in), pad = 0, padded, i;
    unsigned char *copy = NULL;
    int n, r = 0;

    memset(out, 0, sizeof *out);
    if (len == 0 || len > (CV_SECRET_MAX / 3 + 1) * 4)
        return cv_error(-EINVAL, "secret %s: value must be 1 to %d bytes, "
                        "base64", name, CV_SECRET_MAX);
    while (pad < 2 && pad < len && in[len - 1 - pad] == '=')
        pad++;
    for (i = 0; i < len - pad && is_b64(in[i]); i++)
        ;
    if (i != len - pad || (len - pad) % 4 == 1 || (pad && len % 4))
        return cv_error(-EINVAL, "secret %s: value is not base64", name);
    padded = (len + 3) / 4 * 4;
    copy = cv_secmem_alloc(padded);
    out->alloc = padded / 4 * 3;
    out->data = cv_secmem_alloc(out->alloc);
    if (!copy || !out->data) {
        r = cv_error(-ENOMEM, "secret %s: out of memory", name);
        goto out;
    }
    memcpy(copy, in, len);
    memset(copy + len, '=', padded - len);
    n = EVP_DecodeBlock((unsigned char *)out->data, copy, (int)padded);
    if (n < 0 || (size_t)n != out->alloc) {
        r = cv_error(-EINVAL, "secret %s: value is not base64", name);
        goto out;
    }
    out->len = (len - pad) * 3 / 4;     /* 6 bits a character */
out:
    cv_secmem_free(copy, padded);
    if (r < 0)
        cv_secret_free(out);
    return r;
}

/* The "value" field, decoded into locked memory. */
static int take_value(json_object *body, const char *name, struct cv_secret *s)
{
    const char *value = NULL;
    int r = cvd_admin_get_string(body, "value", &value);

    if (r == 0)
        r = cv_error(-EINVAL, "secret %s: \"value\" (base64) is missing", name);
    if (r > 0)
        r = cvd_admin_decode_secret(name, value, s);
    return r;
}

/* json-c's copy of the value goes when the body is freed: wipe it first
 * (the string is the body object's own buffer), whether or not the
 * request got as far as reading it. */
static void wipe_value(json_object *body)
{
    json_object *v;

    if (json_object_object_get_ex(body, "value", &v) &&
        json_object_is_type(v, json_type_string))
        OPENSSL_cleanse((char *)json_object_get_string(v),
                        (size_t)json_object_get_string_len(v));
}

/* The volumes that use secret name, for the audit record of a change:
 * "" if none or if they cannot be listed. */
static void users_of(struct cvd *d, const char *name, char *buf, size_t len)
{
    struct cvd_volume_rec *vols = NULL;
    size_t n = 0, i, at = 0;

    buf[0] = '\0';
    if (d->meta->ops->volume_list(d->meta, &vols, &n) < 0)
        return;
    for (i = 0; i < n && at < len; i++)
        if (!strcmp(vols[i].secret, name))
            at += (size_t)snprintf(buf + at, len - at, "%s%s",
                                   at ? ", " : "", vols[i].name);
    free(vols);
}

/* Records what a request did to a secret: ok (with detail, may be NULL),
 * or refused with the request's error message, which names things and
 * never holds a value. */
static void audit(struct cvd *d, const char *actor, const char *event,
                  const char *name, int r, const char *detail)
{
    char object[CVD_NAME_MAX * 4];

    snprintf(object, sizeof object, "secret/%s", name ? name : "");
    if (r < 0)
        cvd_audit(d->audit, actor, event, object, 0, "%s",
                  cv_last_error()[0] ? cv_last_error() : strerror(-r));
    else if (detail)
        cvd_audit(d->audit, actor, event, object, 1, "%s", detail);
    else
        cvd_audit(d->audit, actor, event, object, 1, NULL);
}

static json_object *done(const char *name, const char *what, unsigned status,
                         unsigned *code)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, what, cvd_admin_time((int64_t)time(NULL)));
    *code = status;
    return o;
}

/* The names of the volumes Pending for secret name. */
static json_object *pending_for(struct cvd *d, const char *name)
{
    struct cvd_volume_rec *vols = NULL;
    json_object *a = json_object_new_array();
    size_t n = 0, i;

    if (d->meta->ops->volume_list(d->meta, &vols, &n) < 0) {
        cv_clear_error();
        return a;
    }
    for (i = 0; i < n; i++)
        if (!strcmp(vols[i].state, CVD_VOL_PENDING) &&
            !strcmp(vols[i].wait_secret, name))
            json_object_array_add(a, json_object_new_string(vols[i].name));
    free(vols);
    return a;
}

/* How long a volume that another thread is making (the pending retry
 * thread saw the new secret too) is waited for. */
#define MAKING_WAIT_MS 30000

/* v's record once it is no longer Creating (or the wait is over); -1 if
 * it is gone. */
static int settled(struct cvd *d, const char *name, struct cvd_volume_rec *v)
{
    struct timespec step = { 0, 100 * 1000 * 1000 };
    int waited = 0;

    for (;;) {
        if (d->meta->ops->volume_get(d->meta, name, v) < 0)
            return -1;          /* deleted meanwhile */
        if (strcmp(v->state, CVD_VOL_CREATING) || waited >= MAKING_WAIT_MS)
            return 0;
        nanosleep(&step, NULL);
        waited += 100;
    }
}

/* Of the volumes that waited, those Available now ("madeAvailable") and
 * those still Pending (their making failed: the log says why). */
static void pending_outcome(struct cvd *d, json_object *waited, json_object *o)
{
    json_object *made = json_object_new_array();
    json_object *still = json_object_new_array();
    struct cvd_volume_rec v;
    size_t i, n = json_object_array_length(waited);

    for (i = 0; i < n; i++) {
        const char *name = json_object_get_string(
            json_object_array_get_idx(waited, i));
        if (settled(d, name, &v) < 0)
            continue;
        json_object_array_add(!strcmp(v.state, CVD_VOL_READY) ? made : still,
                              json_object_new_string(name));
    }
    cv_clear_error();
    json_object_object_add(o, "madeAvailable", made);
    json_object_object_add(o, "stillPending", still);
}

static json_object *create(struct cvd *d, const char *actor, json_object *body,
                           unsigned *code)
{
    json_object *waited = NULL, *o;
    static const char *const fields[] = { "name", "value", NULL };
    const char *name = NULL;
    struct cv_secret s = { 0 };
    int r;

    r = cvd_admin_known_fields(body, fields);
    if (r == 0 && (r = cvd_admin_get_string(body, "name", &name)) == 0)
        r = cv_error(-EINVAL, "request body: \"name\" is missing");
    if (r > 0)
        r = cvd_check_name("secret", name);
    if (r >= 0)
        r = take_value(body, name, &s);
    wipe_value(body);
    if (r >= 0) {
        waited = pending_for(d, name);
        r = cvd_secret_create(d, name, s.data, s.len);
    }
    cv_secret_free(&s);
    audit(d, actor, "secret.create", name, r, NULL);
    if (r < 0) {
        json_object_put(waited);
        return cvd_admin_fail(code, r);
    }
    o = done(name, "created", 201, code);
    pending_outcome(d, waited, o);
    json_object_put(waited);
    return o;
}

/* cvd_secret_check_volumes's callback: the volumes the value does not
 * open, into an array. */
static void not_opened(void *arg, const char *volume, int opens)
{
    if (!opens)
        json_object_array_add(arg, json_object_new_string(volume));
}

/* PUT /v1/secrets/NAME {"value"}: the body may also repeat the name, as
 * POST's does, but not name another secret. */
static json_object *update(struct cvd *d, const char *actor, const char *name,
                           json_object *body, unsigned *code)
{
    static const char *const fields[] = { "name", "value", NULL };
    const char *same = NULL;
    struct cv_secret s = { 0 };
    char users[512] = "", detail[600];
    json_object *bad = NULL, *o;
    int r, unchecked = 0;

    r = cvd_check_name("secret", name);
    if (r == 0)
        r = cvd_admin_known_fields(body, fields);
    if (r == 0 && (r = cvd_admin_get_string(body, "name", &same)) > 0 &&
        strcmp(same, name))
        r = cv_error(-EINVAL, "secret %s: the request body names secret "
                     "\"%.64s\"", name, same);
    if (r >= 0)
        r = take_value(body, name, &s);
    wipe_value(body);
    if (r >= 0)
        r = cvd_secret_update(d, name, s.data, s.len);
    if (r >= 0) {
        bad = json_object_new_array();
        unchecked = cvd_secret_check_volumes(d, name, s.data, s.len,
                                             CVD_SECRET_CHECK_MAX, not_opened,
                                             bad);
    }
    cv_secret_free(&s);
    if (r >= 0)
        users_of(d, name, users, sizeof users);
    if (r >= 0 && users[0])
        snprintf(detail, sizeof detail, "used by %s, whose keyslots are "
                 "unchanged", users);
    audit(d, actor, "secret.update", name, r,
          r >= 0 && users[0] ? detail : NULL);
    if (r < 0)
        return cvd_admin_fail(code, r);
    o = done(name, "updated", 200, code);
    json_object_object_add(o, "doesNotOpen", bad);
    json_object_object_add(o, "unchecked", json_object_new_int(
                               unchecked > 0 ? unchecked : 0));
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
        json_object_object_add(o, "generatedFor", secs[i].owner[0] ?
                               json_object_new_string(secs[i].owner) : NULL);
        json_object_object_add(o, "usedBy", used);
        json_object_array_add(a, o);
    }
    free(secs);
    free(vols);
    *code = 200;
    return a;
}

static json_object *delete(struct cvd *d, const char *actor, const char *name,
                           unsigned *code)
{
    int r = cvd_secret_delete(d, name);

    audit(d, actor, "secret.delete", name, r, NULL);
    return cvd_admin_deleted(code, r, name);
}

json_object *cvd_admin_secrets(struct cvd *d, const char *actor,
                               const char *method,
                               const char *rest, json_object *body,
                               unsigned *code)
{
    if (!rest[0] || !strcmp(rest, "/")) {
        if (!strcmp(method, "GET"))
            return list(d, code);
        if (!strcmp(method, "POST"))
            return create(d, actor, body, code);
        return cvd_admin_error(code, 405, "/v1/secrets: use GET or POST");
    }
    if (strchr(rest + 1, '/'))
        return cvd_admin_error(code, 404, "no such endpoint under /v1/secrets");
    if (!strcmp(method, "PUT"))
        return update(d, actor, rest + 1, body, code);
    if (!strcmp(method, "DELETE"))
        return delete(d, actor, rest + 1, code);
    return cvd_admin_error(code, 405, "/v1/secrets/NAME: use PUT or DELETE "
                           "(a secret's value is never returned)");
}

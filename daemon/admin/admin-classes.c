/* /v1/classes: list, create, info, delete. */
#include "admin-internal.h"
#include "volumes/classes.h"
#include "daemon.h"
#include "core/error.h"
#include "meta/meta.h"
#include "volumes/volumes-util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_object *class_json(const struct cvd_class_rec *c)
{
    json_object *o = json_object_new_object();

#define ADD(k, val) json_object_object_add(o, k, val)
    ADD("name", json_object_new_string(c->name));
    ADD("encrypted", json_object_new_boolean(c->encrypted));
    ADD("secret", c->secret[0] ? json_object_new_string(c->secret) : NULL);
    ADD("secretTemplate", c->secret_template[0] ?
        json_object_new_string(c->secret_template) : NULL);
    ADD("type", json_object_new_string(c->type));
    ADD("cipher", json_object_new_string("aes-xts-plain64"));
    ADD("keyBits", json_object_new_int((int)c->aes_bits * 2));
    ADD("replicas", json_object_new_int64((int64_t)c->replicas));
    ADD("created", cvd_admin_time(c->created));
#undef ADD
    return o;
}

static json_object *list(struct cvd *d, unsigned *code)
{
    struct cvd_class_rec *all;
    json_object *a;
    size_t n, i;
    int r;

    r = d->meta->ops->class_list(d->meta, &all, &n);
    if (r < 0)
        return cvd_admin_fail(code, r);
    a = json_object_new_array();
    for (i = 0; i < n; i++)
        json_object_array_add(a, class_json(&all[i]));
    free(all);
    *code = 200;
    return a;
}

static json_object *info(struct cvd *d, const char *name, unsigned *code)
{
    struct cvd_class_rec c;
    json_object *o, *access;
    int r = cvd_class_get(d, name, &c);

    if (r < 0)
        return cvd_admin_fail(code, r);
    *code = 200;
    o = class_json(&c);
    if (cvd_admin_access_json(d, CVD_ACCESS_CLASS, c.name, NULL, &access) == 0)
        json_object_object_add(o, "access", access);
    return o;
}

/* The strings of the body, checked for length before they are copied into
 * the record's fixed fields (a cut name could be a valid other one). */
static int copy_strings(struct cvd_class_rec *c, const char *name,
                        const char *secret, const char *tmpl,
                        const char *type)
{
    int r;

    if (secret && (r = cvd_check_name("secret", secret)) < 0)
        return cv_error_prefix(r, "class %s", name);
    if (tmpl && !tmpl[0])
        return cv_error(-EINVAL, "class %s: the secret template is empty",
                        name);
    if (tmpl && strlen(tmpl) > CVD_TEMPLATE_MAX)
        return cv_error(-EINVAL, "class %s: the secret template is longer "
                        "than %d characters", name, CVD_TEMPLATE_MAX);
    if (strlen(type) >= sizeof c->type)
        return cv_error(-EINVAL, "class %s: type \"%.32s\" (use luks2 or "
                        "luks1)", name, type);
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->secret, sizeof c->secret, "%s", secret ? secret : "");
    snprintf(c->secret_template, sizeof c->secret_template, "%s",
             tmpl ? tmpl : "");
    snprintf(c->type, sizeof c->type, "%s", type);
    return 0;
}

static int parse_create(json_object *body, struct cvd_class_rec *c)
{
    static const char *const fields[] = { "name", "encrypted", "secret",
                                          "secretTemplate", "type", "cipher",
                                          "keyBits", "replicas", NULL };
    const char *name = NULL, *secret = NULL, *tmpl = NULL, *type = "luks2",
               *cipher = "aes-xts-plain64";
    uint64_t key_size = 0, replicas = 1;
    char what[CVD_NAME_MAX + 8];
    int r;

    memset(c, 0, sizeof *c);
    r = cvd_admin_known_fields(body, fields);
    if (r == 0 && (r = cvd_admin_get_string(body, "name", &name)) == 0)
        r = cv_error(-EINVAL, "request body: \"name\" is missing");
    if (r > 0)
        r = cvd_check_name("class", name);
    if (r >= 0)
        r = cvd_admin_get_bool(body, "encrypted", &c->encrypted);
    if (r >= 0)
        r = cvd_admin_get_string(body, "secret", &secret);
    if (r >= 0)
        r = cvd_admin_get_string(body, "secretTemplate", &tmpl);
    if (r >= 0)
        r = cvd_admin_get_string(body, "type", &type);
    if (r >= 0)
        r = cvd_admin_get_string(body, "cipher", &cipher);
    if (r >= 0)
        r = cvd_admin_get_u64(body, "keyBits", &key_size);
    if (r >= 0)
        r = cvd_admin_get_u64(body, "replicas", &replicas);
    if (r >= 0 && (key_size > UINT_MAX || replicas > UINT_MAX))
        r = cv_error(-EINVAL, "class %s: keyBits or replicas is too large",
                     name);
    if (r >= 0)
        r = copy_strings(c, name, secret, tmpl, type);
    if (r < 0)
        return r;
    snprintf(what, sizeof what, "class %s", name);
    c->replicas = (unsigned)replicas;
    return cvd_parse_cipher(what, cipher, (unsigned)key_size, &c->aes_bits);
}

static json_object *create(struct cvd *d, json_object *body, unsigned *code)
{
    struct cvd_class_rec c;
    int r = parse_create(body, &c);

    if (r == 0)
        r = cvd_class_create(d, &c, &c);
    if (r < 0)
        return cvd_admin_fail(code, r);
    *code = 201;
    return class_json(&c);
}

/* "NAME/access", or no such endpoint. */
static json_object *access_or_404(struct cvd *d, const char *actor,
                                  const char *method, const char *rest,
                                  json_object *body, unsigned *code)
{
    const char *slash = strchr(rest, '/');
    char name[CVD_NAME_MAX + 2];
    size_t len = (size_t)(slash - rest);

    if (strcmp(slash, "/access"))
        return cvd_admin_error(code, 404, "no such endpoint under "
                               "/v1/classes (GET or POST "
                               "/v1/classes/NAME/access)");
    if (len > CVD_NAME_MAX)
        len = CVD_NAME_MAX + 1;     /* still invalid: the check says so */
    memcpy(name, rest, len);
    name[len] = '\0';
    return cvd_admin_access(d, actor, method, CVD_ACCESS_CLASS, name, body,
                            code);
}

json_object *cvd_admin_classes(struct cvd *d, const char *actor,
                               const char *method, const char *rest,
                               json_object *body, unsigned *code)
{
    if (!rest[0] || !strcmp(rest, "/")) {
        if (!strcmp(method, "GET"))
            return list(d, code);
        if (!strcmp(method, "POST"))
            return create(d, body, code);
        return cvd_admin_error(code, 405, "/v1/classes: use GET or POST");
    }
    if (strchr(rest + 1, '/'))
        return access_or_404(d, actor, method, rest + 1, body, code);
    if (!strcmp(method, "GET"))
        return info(d, rest + 1, code);
    if (!strcmp(method, "DELETE"))
        return cvd_admin_deleted(code, cvd_class_delete(d, rest + 1),
                                 rest + 1);
    return cvd_admin_error(code, 405, "/v1/classes/NAME: use GET or DELETE");
}

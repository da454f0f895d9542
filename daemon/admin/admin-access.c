/* /v1/volumes/NAME/access and /v1/classes/NAME/access: the NBD access
 * lists (volumes/access.h).  GET shows a list and the one that applies;
 * POST {"allow": [...], "deny": [...], "remove": [...], "clear": true}
 * changes it in one transaction. */
#include "admin-internal.h"
#include "audit/audit.h"
#include "daemon.h"
#include "core/error.h"
#include "meta/meta.h"
#include "volumes/access.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Identities one request may name: enough for any list a person types. */
#define MAX_IDS 256

static const char *what(enum cvd_access_target t)
{
    return t == CVD_ACCESS_CLASS ? "class" : "volume";
}

static json_object *entries_json(const struct cvd_access_rec *r, size_t n)
{
    json_object *a = json_object_new_array();

    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_new_object();
        json_object_object_add(e, "identity",
                               json_object_new_string(r[i].identity));
        json_object_object_add(e, "allow", json_object_new_boolean(r[i].allow));
        json_object_array_add(a, e);
    }
    return a;
}

/* A volume's own list, its class's, and which one applies. */
static int add_effective(struct cvd *d, json_object *o, size_t nown,
                         const char *class_name)
{
    struct cvd_access_rec *cl = NULL;
    size_t ncl = 0;
    int r = 0;

    if (!nown && class_name && class_name[0])
        r = d->meta->ops->access_list(d->meta, CVD_ACCESS_CLASS, class_name,
                                      &cl, &ncl);
    if (r < 0)
        return r;
    json_object_object_add(o, "class", class_name && class_name[0] ?
                           json_object_new_string(class_name) : NULL);
    json_object_object_add(o, "applies", json_object_new_string(
                           nown ? "volume" : ncl ? "class" : "default"));
    if (!nown && ncl)
        json_object_object_add(o, "classEntries", entries_json(cl, ncl));
    free(cl);
    return 0;
}

int cvd_admin_access_json(struct cvd *d, enum cvd_access_target t,
                          const char *name, const char *class_name,
                          json_object **out)
{
    struct cvd_access_rec *own = NULL;
    json_object *o;
    size_t n = 0;
    int r;

    *out = NULL;
    r = d->meta->ops->access_list(d->meta, t, name, &own, &n);
    if (r < 0)
        return r;
    o = json_object_new_object();
    json_object_object_add(o, "entries", entries_json(own, n));
    json_object_object_add(o, "default", json_object_new_string(
                           d->cfg.nbd_access_closed ? "closed" : "open"));
    if (t == CVD_ACCESS_VOLUME)
        r = add_effective(d, o, n, class_name);
    free(own);
    if (r < 0) {
        json_object_put(o);
        return r;
    }
    *out = o;
    return 0;
}

struct edit {
    struct cvd_access_rec set[MAX_IDS];
    size_t nset;
    char del[MAX_IDS][CVD_IDENTITY_TEXT_MAX + 1];
    const char *delp[MAX_IDS];
    size_t ndel;
    int clear;
    char summary[512];
};

/* Canonical text of an identity in the body, or -EINVAL. */
static int canonical(json_object *v, char *buf)
{
    struct cvd_identity id;
    int r;

    if (!json_object_is_type(v, json_type_string))
        return cv_error(-EINVAL, "request body: identities must be strings");
    if (strlen(json_object_get_string(v)) !=
        (size_t)json_object_get_string_len(v))
        return cv_error(-EINVAL, "request body: an identity holds a NUL");
    r = cvd_identity_parse(json_object_get_string(v), &id);
    if (r == 0)
        cvd_identity_format(&id, buf, CVD_IDENTITY_TEXT_MAX + 1);
    return r;
}

static int seen(const struct edit *e, const char *id)
{
    for (size_t i = 0; i < e->nset; i++)
        if (!strcmp(e->set[i].identity, id))
            return 1;
    for (size_t i = 0; i < e->ndel; i++)
        if (!strcmp(e->del[i], id))
            return 1;
    return 0;
}

/* One of "allow", "deny", "remove": an array of identities. */
static int parse_ids(json_object *body, const char *key, int allow,
                     struct edit *e)
{
    char id[CVD_IDENTITY_TEXT_MAX + 1];
    json_object *a;
    size_t n, i;
    int r = 0;

    if (!json_object_object_get_ex(body, key, &a) || !a)
        return 0;
    if (!json_object_is_type(a, json_type_array))
        return cv_error(-EINVAL, "request body: \"%s\" must be an array of "
                        "identities", key);
    n = json_object_array_length(a);
    for (i = 0; i < n && r == 0; i++) {
        r = canonical(json_object_array_get_idx(a, i), id);
        if (r == 0 && seen(e, id))
            r = cv_error(-EINVAL, "identity %s: named twice", id);
        if (r == 0 && e->nset + e->ndel >= MAX_IDS)
            r = cv_error(-EINVAL, "request body: more than %d identities",
                         MAX_IDS);
        if (r < 0)
            break;
        if (allow >= 0) {
            snprintf(e->set[e->nset].identity, sizeof e->set[0].identity,
                     "%s", id);
            e->set[e->nset++].allow = allow;
        } else {
            snprintf(e->del[e->ndel], sizeof e->del[0], "%s", id);
            e->delp[e->ndel] = e->del[e->ndel];
            e->ndel++;
        }
        snprintf(e->summary + strlen(e->summary),
                 sizeof e->summary - strlen(e->summary), "%s%s %s",
                 e->summary[0] ? ", " : "", key, id);
    }
    return r;
}

static int parse_edit(json_object *body, struct edit *e)
{
    static const char *const fields[] = { "allow", "deny", "remove", "clear",
                                          NULL };
    int r = cvd_admin_known_fields(body, fields);

    if (r == 0)
        r = parse_ids(body, "allow", 1, e);
    if (r == 0)
        r = parse_ids(body, "deny", 0, e);
    if (r == 0)
        r = parse_ids(body, "remove", -1, e);
    if (r == 0)
        r = cvd_admin_get_bool(body, "clear", &e->clear);
    if (r < 0)
        return r;
    if (e->clear)
        snprintf(e->summary + strlen(e->summary),
                 sizeof e->summary - strlen(e->summary), "%sclear",
                 e->summary[0] ? ", " : "");
    if (!e->nset && !e->ndel && !e->clear)
        return cv_error(-EINVAL, "request body: nothing to change (give "
                        "\"allow\", \"deny\", \"remove\" or \"clear\")");
    return 0;
}

static json_object *show(struct cvd *d, enum cvd_access_target t,
                         const char *name, unsigned *code)
{
    struct cvd_volume_rec v = { 0 };
    json_object *o;
    int r = 0;

    if (!cvd_name_valid(name))
        return cvd_admin_error(code, 404, "no such volume or class");
    if (t == CVD_ACCESS_VOLUME)
        r = d->meta->ops->volume_get(d->meta, name, &v);
    if (r == 0)
        r = cvd_admin_access_json(d, t, name, v.class_name, &o);
    if (r < 0)
        return cvd_admin_fail(code, r);
    json_object_object_add(o, "name", json_object_new_string(name));
    *code = 200;
    return o;
}

static json_object *change(struct cvd *d, const char *actor,
                           enum cvd_access_target t, const char *name,
                           json_object *body, unsigned *code)
{
    struct edit *e = calloc(1, sizeof *e);
    char object[CVD_NAME_MAX + 16];
    int r;

    if (!e)
        return cvd_admin_error(code, 500, "out of memory");
    r = cvd_name_valid(name) ? parse_edit(body, e) :
        cv_error(-ENOENT, "%s \"%.64s\": no such %s", what(t), name, what(t));
    if (r == 0)
        r = d->meta->ops->access_edit(d->meta, t, name, e->clear, e->set,
                                      e->nset, e->delp, e->ndel);
    snprintf(object, sizeof object, "%s/%.*s", what(t), CVD_NAME_MAX, name);
    cvd_audit(d->audit, actor, "access.change", object, r == 0, "%s",
              r == 0 ? e->summary : cv_last_error());
    free(e);
    if (r < 0)
        return cvd_admin_fail(code, r);
    return show(d, t, name, code);
}

json_object *cvd_admin_access(struct cvd *d, const char *actor,
                              const char *method, enum cvd_access_target t,
                              const char *name, json_object *body,
                              unsigned *code)
{
    if (!strcmp(method, "GET"))
        return show(d, t, name, code);
    if (!strcmp(method, "POST"))
        return change(d, actor, t, name, body, code);
    return cvd_admin_error(code, 405, t == CVD_ACCESS_CLASS ?
                           "/v1/classes/NAME/access: use GET or POST" :
                           "/v1/volumes/NAME/access: use GET or POST");
}

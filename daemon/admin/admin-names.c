/* The admin API's one naming rule for JSON members: camelCase, as
 * Kubernetes, Longhorn and Lightbits write them, times in RFC 3339 (see
 * cvd_admin_time).  Bodies written before the rule used snake_case for
 * the few names below: they are still read, for one release, as the
 * camelCase name they became (docs/admin-api.md lists them as
 * deprecated).  Answers use only the new names. */
#include "admin-internal.h"
#include "core/error.h"

#include <errno.h>
#include <string.h>

static const struct {
    const char *old, *now;
} deprecated[] = {
    { "allow_shrink", "allowShrink" },          /* volume resize */
    { "memory_kib", "memoryKib" },              /* volume create: pbkdf */
    { "time_ms", "timeMs" },                    /* volume create: pbkdf */
    { "secret_template", "secretTemplate" },    /* class create */
    { "key_size", "keyBits" },                  /* class create */
};

static const char *renamed(const char *key)
{
    size_t i;

    for (i = 0; i < sizeof deprecated / sizeof *deprecated; i++)
        if (!strcmp(deprecated[i].old, key))
            return deprecated[i].now;
    return NULL;
}

/* Renames the deprecated members of o (not of its members). */
static int rename_members(json_object *o)
{
    const char *olds[sizeof deprecated / sizeof *deprecated];
    size_t n = 0, i;
    json_object *v;

    json_object_object_foreach(o, key, val) {
        (void)val;
        if (renamed(key) && n < sizeof olds / sizeof *olds)
            olds[n++] = key;
    }
    for (i = 0; i < n; i++) {
        const char *now = renamed(olds[i]);
        if (json_object_object_get_ex(o, now, NULL))
            return cv_error(-EINVAL, "request body: \"%s\" and its deprecated "
                            "name \"%s\" both given", now, olds[i]);
        json_object_object_get_ex(o, olds[i], &v);
        if (json_object_object_add(o, now, json_object_get(v)) != 0) {
            json_object_put(v);
            return cv_error(-ENOMEM, "request body: renaming \"%s\"", olds[i]);
        }
        json_object_object_del(o, olds[i]);     /* olds[i] is freed here */
    }
    return 0;
}

int cvd_admin_accept_aliases(json_object *body)
{
    json_object *pbkdf;
    int r;

    if (!json_object_is_type(body, json_type_object))
        return 0;
    r = rename_members(body);
    if (r == 0 && json_object_object_get_ex(body, "pbkdf", &pbkdf) &&
        json_object_is_type(pbkdf, json_type_object))
        r = rename_members(pbkdf);
    return r;
}

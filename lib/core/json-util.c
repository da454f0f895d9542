#include "json-util.h"

#include <errno.h>
#include <string.h>
#include <time.h>

int cv_json_add(json_object *obj, const char *key, json_object *val)
{
    if (!val)
        return -ENOMEM;
    if (json_object_object_add(obj, key, val) != 0) {
        json_object_put(val);
        return -ENOMEM;
    }
    return 0;
}

int cv_json_append(json_object *arr, json_object *val)
{
    if (!val)
        return -ENOMEM;
    if (json_object_array_add(arr, val) != 0) {
        json_object_put(val);
        return -ENOMEM;
    }
    return 0;
}

const char *cv_json_string(json_object *obj, const char *key)
{
    json_object *v;
    const char *s;

    if (!json_object_object_get_ex(obj, key, &v) ||
        !json_object_is_type(v, json_type_string))
        return NULL;
    s = json_object_get_string(v);
    return strlen(s) == (size_t)json_object_get_string_len(v) ? s : NULL;
}

int cv_json_int(json_object *obj, const char *key, int64_t min, int64_t max,
                int64_t *out)
{
    json_object *v;
    int64_t n;

    if (!json_object_object_get_ex(obj, key, &v) ||
        !json_object_is_type(v, json_type_int))
        return -EINVAL;
    /* Beyond int64 json-c keeps a uint64 and reads back INT64_MAX. */
    n = json_object_get_int64(v);
    if (n < min || n > max)
        return -EINVAL;
    *out = n;
    return 0;
}

json_object *cv_json_time(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    char buf[32];

    if (t == 0 || !gmtime_r(&tt, &tm))
        return NULL;
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_object_new_string(buf);
}

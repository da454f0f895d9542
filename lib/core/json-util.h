/* Small json-c helpers for the documents cryptvol writes and reads back
 * (tokens, escrows): adding members with allocation checked, and reading
 * typed members of untrusted JSON. */
#ifndef CRYPTVOL_JSON_UTIL_H
#define CRYPTVOL_JSON_UTIL_H

#include <json-c/json.h>
#include <stdint.h>

/* Adds val (which may be NULL: a failed json_object_new_*) as key of obj,
 * taking ownership of it either way.  Returns 0 or -ENOMEM. */
int cv_json_add(json_object *obj, const char *key, json_object *val);
/* As cv_json_add, appending to an array. */
int cv_json_append(json_object *arr, json_object *val);

/* The string member key of obj, or NULL when it is missing, not a string
 * or holds a NUL (which C code would silently cut there). */
const char *cv_json_string(json_object *obj, const char *key);

/* The integer member key of obj when it is a JSON integer (not a string,
 * not a fraction) in [min, max]; else -EINVAL. */
int cv_json_int(json_object *obj, const char *key, int64_t min, int64_t max,
                int64_t *out);

/* The one way the API and the CLI write a time: an RFC 3339 string in UTC
 * ("2026-12-01T12:00:00Z"), or NULL (JSON null) for t == 0, "never". */
json_object *cv_json_time(int64_t t);

#endif

/* Which parts of a LUKS2 header area hold anything: the two header copies
 * and the keyslot areas the JSON metadata lists.  Loading only those
 * (about 300 KiB for one keyslot) instead of the whole 16 MiB keyslots
 * region is what makes attaching a volume cost milliseconds. */
#include "luks-internal.h"
#include "store/backend.h"
#include "core/error.h"

#include <errno.h>
#include <json-c/json.h>
#include <libcryptsetup.h>
#include <stdlib.h>
#include <string.h>

static int u64_field(json_object *o, const char *key, uint64_t *out)
{
    json_object *v;
    const char *s;
    char *end;

    if (!json_object_object_get_ex(o, key, &v) ||
        !json_object_is_type(v, json_type_string))
        return -1;
    s = json_object_get_string(v);
    errno = 0;
    *out = strtoull(s, &end, 10);
    return errno || end == s || *end ? -1 : 0;
}

int luks_keyslot_areas(struct cv_luks *l, struct luks_area *a, size_t max,
                       size_t *n)
{
    const char *json = NULL;
    json_object *root = NULL, *slots, *area;
    int r = 0;

    *n = 0;
    if (crypt_dump_json(l->cd, &json, 0) < 0 || !json ||
        !(root = json_tokener_parse(json)) ||
        !json_object_object_get_ex(root, "keyslots", &slots) ||
        !json_object_is_type(slots, json_type_object)) {
        json_object_put(root);
        return cv_error(-EINVAL, "%s: LUKS2 metadata has no keyslots "
                        "object", l->b->name);
    }
    json_object_object_foreach(slots, key, slot) {
        (void)key;
        if (*n == max || !json_object_object_get_ex(slot, "area", &area) ||
            u64_field(area, "offset", &a[*n].off) < 0 ||
            u64_field(area, "size", &a[*n].len) < 0) {
            r = cv_error(-EINVAL, "%s: LUKS2 keyslot %s: no usable area",
                         l->b->name, key);
            break;
        }
        (*n)++;
    }
    json_object_put(root);
    return r;
}

/* LUKS2 tokens: find one by type, store one, and write back only the
 * header copies that hold them (never the keyslot areas, which a handle
 * from cv_luks_load_metadata does not even have). */
#include "luks.h"
#include "store/backend.h"
#include "core/error.h"
#include "luks-internal.h"

#include <errno.h>
#include <libcryptsetup.h>
#include <stdlib.h>
#include <string.h>

static int no_tokens(struct cv_luks *l)
{
    return cv_error(-ENOTSUP, "%s: a LUKS1 header has no tokens (LUKS2 "
                    "only)", l->b->name);
}

int cv_luks_token_find(struct cv_luks *l, const char *type, char **json)
{
    int id, max = crypt_token_max(CRYPT_LUKS2), r;
    const char *t, *j = NULL;

    *json = NULL;
    if (!luks_is_luks2(l))
        return no_tokens(l);
    for (id = 0; id < max; id++) {
        crypt_token_info s = crypt_token_status(l->cd, id, &t);
        if (s == CRYPT_TOKEN_INVALID || s == CRYPT_TOKEN_INACTIVE || !t ||
            strcmp(t, type) != 0)
            continue;
        r = crypt_token_json_get(l->cd, id, &j);
        if (r < 0)
            return cv_error(r, "%s: reading token %d: %s", l->b->name, id,
                            luks_cs_msg(l, r));
        *json = strdup(j);
        if (!*json)
            return cv_error(-ENOMEM, "%s: out of memory", l->b->name);
        return id;
    }
    return cv_error(-ENOENT, "%s: no %s token in the LUKS2 header",
                    l->b->name, type);
}

/* libcryptsetup has written both header copies to the memfd with a new
 * sequence id.  The primary goes to the store first and is made durable,
 * then the secondary: whenever a crash comes, one whole copy is on the
 * store, old or new, and libcryptsetup loads the valid copy with the
 * higher sequence id.  Writing the primary is the commit point. */
static int commit_metadata(struct cv_luks *l)
{
    uint64_t meta, ks;
    int r;

    r = crypt_get_metadata_size(l->cd, &meta, &ks);
    if (r < 0)
        return cv_error(r, "%s: LUKS2 metadata size: %s", l->b->name,
                        luks_cs_msg(l, r));
    r = luks_write_back(l, 0, meta);
    if (r == 0)
        r = luks_flush(l);
    if (r == 0)
        r = luks_write_back(l, meta, 2 * meta);
    if (r == 0)
        r = luks_flush(l);
    return r < 0 ? cv_error_prefix(r, "%s: writing LUKS2 header",
                                   l->b->name) : 0;
}

int cv_luks_token_put(struct cv_luks *l, int token, const char *json)
{
    int id, r;

    if (!luks_is_luks2(l))
        return no_tokens(l);
    l->log[0] = '\0';
    id = crypt_token_json_set(l->cd, token == CV_LUKS_NEW_TOKEN ?
                              CRYPT_ANY_TOKEN : token, json);
    if (id < 0)
        return cv_error(id, "%s: storing token: %s", l->b->name,
                        luks_cs_msg(l, id));
    r = commit_metadata(l);
    return r < 0 ? r : id;
}

const char *cv_luks_uuid(struct cv_luks *l)
{
    const char *uuid = crypt_get_uuid(l->cd);

    return uuid ? uuid : "";
}

const char *cv_luks_name(const struct cv_luks *l)
{
    return l->b->name;
}

/* The keys of an open chain, for the export registry: each format's
 * header unlocked with the secret of the volume it belongs to (a clone
 * with its own format needs its own and its parent's), or with the
 * volume key a cryptvol-kek token wraps. */
#include "daemon.h"
#include "core/error.h"
#include "core/secmem.h"
#include "keys/keyring.h"
#include "luks/kek-token.h"
#include "luks/luks.h"
#include "meta/meta.h"
#include "store/chain.h"
#include "volumes.h"
#include "volumes-util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* How one format opens: a passphrase (and the keyslot it is for, or -1),
 * or a volume key already checked against the header's digest. */
struct opener {
    struct cv_secret pass;
    int keyslot;
    unsigned char *key;
    size_t keylen;
};

static void opener_free(struct opener *o)
{
    cv_secret_free(&o->pass);
    cv_secmem_free(o->key, o->keylen);
    memset(o, 0, sizeof *o);
}

/* The record's UUID is the token's associated data: a header swapped in
 * from another volume does not unwrap. */
static int kek_opener(struct cvd *d, const struct cvd_volume_rec *v,
                      struct cv_luks *l, struct opener *o)
{
    struct cv_kek_token t = { 0 };
    const unsigned char *kek = NULL;
    int r = cv_kek_token_get(l, &t);

    if (r == 0)
        r = cvd_keyring_get(d->keys, t.gen, &kek);
    if (r == 0 && !t.wrapped_key) {
        r = cv_kek_token_unwrap(&t, kek, v->uuid, &o->pass);
        o->keyslot = t.keyslot;
    } else if (r == 0) {
        r = cv_kek_token_unwrap_key(&t, kek, v->uuid, &o->key, &o->keylen);
        if (r == 0)
            r = cv_luks_verify_key(l, o->key, o->keylen);
    }
    if (r == -CV_EWRONGKEY)
        r = cv_error(r, "volume %s: wrong key: cluster KEK generation %u "
                     "does not unwrap its token (was the image file "
                     "replaced?)", v->name, t.gen);
    else if (r < 0)
        r = cv_error_prefix(r, "volume %s", v->name);
    cv_kek_token_free(&t);
    return r;
}

/* what: "" for the volume's own secret, else "its parent P's " (for the
 * messages of a clone). */
static int secret_opener(struct cvd *d, const struct cvd_volume_rec *v,
                         const char *name, const char *what,
                         struct opener *o)
{
    int r = cvd_meta_secret_value(d->meta, v->secret, &o->pass);

    if (r == -ENOENT)
        return cv_error(-ENOENT, "volume %s: %ssecret \"%s\" does not exist",
                        name, what, v->secret);
    return r < 0 ? cv_error_prefix(r, "volume %s", name) : 0;
}

/* One format: hdr is its header (in the open chain), v the record of the
 * volume it belongs to.  The header is read under header_lock, so no
 * rekey or re-wrap is half written; the derivation runs on the copy. */
static int unlock_format(struct cvd *d, const char *name,
                         const struct cvd_volume_rec *v, struct cv_backend *hdr,
                         const char *what, struct cv_volume_key *out)
{
    struct opener o = { .keyslot = -1 };
    struct cv_luks *l = NULL;
    unsigned char *key = NULL;
    size_t keylen = 0;
    int r;

    pthread_mutex_lock(&d->header_lock);
    r = v->kek_gen ? cv_luks_load_metadata(hdr, &l) : cv_luks_load(hdr, &l);
    if (r == 0 && v->kek_gen && (r = kek_opener(d, v, l, &o)) == 0 &&
        !o.key) {
        cv_luks_free(l);        /* a keyslot to open: needs its area */
        l = NULL;
        r = cv_luks_load(hdr, &l);
    }
    pthread_mutex_unlock(&d->header_lock);
    if (r == 0 && !v->kek_gen)
        r = secret_opener(d, v, name, what, &o);
    if (r == 0 && o.key) {
        key = o.key;
        keylen = o.keylen;
        o.key = NULL;
    } else if (r == 0) {
        r = cv_luks_unlock_keyslot(l, o.keyslot, o.pass.data, o.pass.len,
                                   &key, &keylen);
        if (r == -CV_EWRONGKEY)
            r = cv_error(r, "volume %s: wrong key: %ssecret \"%s\" opens no "
                         "keyslot", name, what, v->secret[0] ? v->secret :
                         "(KEK token)");
        else if (r > 0)
            r = 0;      /* the keyslot that opened: after a rekey, not 0 */
    }
    if (r == 0)
        r = cv_luks_info(l, &out->info);
    if (r == 0) {
        out->key = key;
        out->keylen = keylen;
        key = NULL;
    }
    cv_secmem_free(key, keylen);
    cv_luks_free(l);
    opener_free(&o);
    return r < 0 ? r : 0;
}

int cvd_volumes_unlock(void *opaque, const char *name, struct cv_chain *c,
                       struct cvd_volume_keys *out)
{
    struct cvd *d = opaque;
    struct cvd_volume_rec v;
    char what[CVD_NAME_MAX + 32];
    unsigned n = cv_chain_formats(c), i;
    int r = 0;

    memset(out, 0, sizeof *out);
    for (i = 0; r == 0 && i < n && i < CV_CHAIN_MAX_FORMATS; i++) {
        const char *owner = i ? cv_chain_format_volume(c, i) : name;

        r = d->meta->ops->volume_get(d->meta, owner, &v);
        if (r == -ENOENT && i)
            r = cv_error(-ENOENT, "volume %s: its parent volume %s is gone",
                         name, owner);
        what[0] = '\0';
        if (i)
            snprintf(what, sizeof what, "its parent %s's ", owner);
        if (r == 0)
            r = unlock_format(d, name, &v, cv_chain_format_header(c, i),
                              what, &out->k[i]);
        if (r == 0)
            out->n = i + 1;
    }
    if (r < 0)
        cvd_volume_keys_free(out);
    return r;
}

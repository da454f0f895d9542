/* What the export registry and a restarting daemon need from the volume
 * records: resolving a name to a file and its unlocked secret (only an
 * Available volume: a Pending one says what it waits for), listing what
 * can be served, and recovering from a crash mid-change. */
#include "store/backend.h"
#include "daemon.h"
#include "core/error.h"
#include "core/secmem.h"
#include "core/size.h"
#include "luks/kek-token.h"
#include "keys/keyring.h"
#include "log.h"
#include "luks/luks.h"
#include "meta/meta.h"
#include "volumes.h"
#include "volumes-util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Opens a volume with a cryptvol-kek token: the volume key it wraps,
 * checked against the header's digest, or (a token without one) the
 * keyslot passphrase.  The record's UUID is the associated data: an image
 * file swapped in from another volume does not unwrap. */
static int kek_unwrap(struct cvd *d, const struct cvd_volume_rec *v,
                      struct cv_luks *l, struct cvd_volume_spec *spec)
{
    struct cv_kek_token t = { 0 };
    const unsigned char *kek = NULL;
    int r = cv_kek_token_get(l, &t);

    if (r == 0)
        r = cvd_keyring_get(d->keys, t.gen, &kek);
    if (r == 0 && !t.wrapped_key) {
        r = cv_kek_token_unwrap(&t, kek, v->uuid, &spec->secret);
        spec->keyslot = t.keyslot;
    } else if (r == 0) {
        r = cv_kek_token_unwrap_key(&t, kek, v->uuid, &spec->key,
                                    &spec->keylen);
        if (r == 0)
            r = cv_luks_verify_key(l, spec->key, spec->keylen);
        if (r == 0)
            r = cv_luks_info(l, &spec->info);
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

static int kek_passphrase(struct cvd *d, const struct cvd_volume_rec *v,
                          struct cvd_volume_spec *spec)
{
    struct cv_backend *b = NULL;
    struct cv_luks *l = NULL;
    int r;

    pthread_mutex_lock(&d->header_lock);
    r = cv_backend_file_open(v->path, 0, &b);
    if (r == 0)
        r = cv_luks_load_metadata(b, &l);
    pthread_mutex_unlock(&d->header_lock);
    if (r == 0)
        r = kek_unwrap(d, v, l, spec);
    else
        r = cv_error_prefix(r, "volume %s", v->name);
    cv_luks_free(l);
    cv_backend_close(b);
    if (r < 0) {
        cv_secmem_free(spec->key, spec->keylen);
        spec->key = NULL;
        spec->keylen = 0;
    }
    return r;
}

int cvd_volumes_resolve(void *opaque, const char *name,
                        struct cvd_volume_spec *spec)
{
    struct cvd *d = opaque;
    struct cvd_volume_rec v;
    int r;

    memset(spec, 0, sizeof *spec);
    spec->keyslot = -1;
    if (!cvd_name_valid(name))
        return cv_error(-ENOENT, "volume \"%.64s\": no such volume", name);
    r = d->meta->ops->volume_get(d->meta, name, &v);
    if (r < 0)
        return r;
    if (!cvd_state_served(v.state))
        return cvd_state_error(&v);
    spec->plaintext = !strcmp(v.type, "plaintext");
    spec->size = v.size;
    spec->path = strdup(v.path);
    if (!spec->path)
        return cv_error(-ENOMEM, "volume %s: out of memory", name);
    if (!spec->plaintext && v.kek_gen) {
        r = kek_passphrase(d, &v, spec);
    } else if (!spec->plaintext) {
        r = cvd_meta_secret_value(d->meta, v.secret, &spec->secret);
        if (r == -ENOENT)
            r = cv_error(-ENOENT, "volume %s: secret \"%s\" does not exist",
                         name, v.secret);
        else if (r < 0)
            r = cv_error_prefix(r, "volume %s", name);
    }
    if (r < 0) {
        free(spec->path);
        cv_secret_free(&spec->secret);
        memset(spec, 0, sizeof *spec);
    }
    return r;
}

/* Read-only, header only: the keyslot areas are not even read. */
static int describe_file(struct cvd *d, const struct cvd_volume_rec *v,
                         struct cvd_volume_desc *out)
{
    struct cv_luks_info info;
    struct cv_backend *b = NULL;
    struct cv_luks *l = NULL;
    int r;

    pthread_mutex_lock(&d->header_lock);
    r = cv_backend_file_open(v->path, 1, &b);
    if (r == 0 && out->plaintext)
        r = cv_backend_size(b, &out->size);
    else if (r == 0)
        r = cv_luks_load_metadata(b, &l);
    if (r == 0 && l)
        r = cv_luks_info(l, &info);
    pthread_mutex_unlock(&d->header_lock);
    if (r == 0 && l) {
        out->size = info.effective_size;
        out->block_size = info.sector_size;
    }
    /* As an open would serve it: at most the recorded size. */
    if (r == 0 && v->size < out->size)
        out->size = v->size;
    cv_luks_free(l);
    cv_backend_close(b);
    return r < 0 ? cv_error_prefix(r, "volume %s", v->name) : 0;
}

int cvd_volume_describe(struct cvd *d, const char *name,
                        struct cvd_volume_desc *out)
{
    struct cvd_volume_rec v;
    int r;

    memset(out, 0, sizeof *out);
    if (!cvd_name_valid(name))
        return cv_error(-ENOENT, "volume \"%.64s\": no such volume", name);
    r = d->meta->ops->volume_get(d->meta, name, &v);
    if (r < 0)
        return r;
    if (!cvd_state_served(v.state))
        return cvd_state_error(&v);
    out->plaintext = !strcmp(v.type, "plaintext");
    /* As export.c serves a plaintext volume. */
    out->block_size = 4096;
    return describe_file(d, &v, out);
}

int cvd_volumes_list(void *opaque, int (*cb)(void *arg, const char *name),
                     void *arg)
{
    struct cvd *d = opaque;
    struct cvd_volume_rec *all;
    size_t n, i;
    int r;

    r = d->meta->ops->volume_list(d->meta, &all, &n);
    for (i = 0; r == 0 && i < n; i++)
        if (cvd_state_served(all[i].state))
            r = cb(arg, all[i].name);
    free(all);
    return r;
}

/* The size a resize left in the file: the truth, whatever the record says. */
static int size_from_file(struct cvd_volume_rec *v)
{
    struct stat st;

    if (stat(v->path, &st) < 0)
        return cv_error(-errno, "volume %s: %s: %s", v->name, v->path,
                        strerror(errno));
    if ((uint64_t)st.st_size < v->data_offset + v->sector_size)
        return cv_error(-EIO, "volume %s: %s is shorter than its header",
                        v->name, v->path);
    v->size = ((uint64_t)st.st_size - v->data_offset) / v->sector_size *
              v->sector_size;
    return 0;
}

/* A resize cut off: the image's size is the truth (it is made durable
 * before the record changes), old or new; the record takes it.  A grow
 * was served at the recorded size meanwhile, so no client saw more than
 * the image holds. */
static int recover_resize(struct cvd *d, struct cvd_volume_rec *v)
{
    char state[sizeof v->state], was[32], now[32];
    uint64_t old = v->size;
    int r = size_from_file(v);

    if (r < 0)
        return r;
    snprintf(state, sizeof state, "%s", v->state);
    snprintf(v->state, sizeof v->state, CVD_VOL_READY);
    cv_format_size(old, was, sizeof was);
    cv_format_size(v->size, now, sizeof now);
    cvd_warn("volume %s: was %s when the daemon stopped; its size is %s "
             "(%llu bytes; recorded %s)", v->name,
             strcmp(state, CVD_VOL_GROWING) ? "resizing" : "growing", now,
             (unsigned long long)v->size, was);
    return d->meta->ops->volume_update(d->meta, v, state);
}

/* Removes the ".suffix" file of v if there is one; 1 if it was there. */
static int remove_aside(const struct cvd_volume_rec *v, const char *suffix)
{
    char aside[sizeof v->path + 16];
    int r;

    if (cvd_aside_path(v->path, suffix, aside, sizeof aside) < 0)
        return cv_error_prefix(-ENAMETOOLONG, "volume %s", v->name);
    r = cvd_remove_file(aside);
    if (r == 0)
        return 1;
    if (r == -ENOENT)
        return 0;
    return cv_error(r, "volume %s: removing %s: %s", v->name, aside,
                    strerror(-r));
}

/* A create that did not finish: only its ".creating" file goes.  A file
 * at the volume's own path is kept: it was put there a moment before the
 * record would have said ready, or it is not ours. */
static int undo_create(struct cvd_volume_rec *v)
{
    int r = remove_aside(v, CVD_CREATING_SUFFIX);

    if (r >= 0 && access(v->path, F_OK) == 0)
        cvd_warn("volume %s: was being created when the daemon stopped; %s "
                 "is kept (it may be the new image, or a file that was "
                 "there before): move it away to create %s again", v->name,
                 v->path, v->name);
    return r < 0 ? r : 0;
}

/* A volume being made from pending (wait_secret still set): its file
 * goes, the record goes back to waiting. */
static int back_to_pending(struct cvd *d, struct cvd_volume_rec *v)
{
    int r = undo_create(v);

    if (r < 0)
        return r;
    v->secret[0] = '\0';
    snprintf(v->state, sizeof v->state, CVD_VOL_PENDING);
    cvd_warn("volume %s: was being created when the daemon stopped; "
             "Pending again: waiting for secret \"%s\"", v->name,
             v->wait_secret);
    return d->meta->ops->volume_update(d->meta, v, CVD_VOL_CREATING);
}

/* A delete is committed once the image has its ".deleting" name (or a
 * volume had no image: pending).  One that was not (the daemon stopped
 * first, or a refused delete could not put the record back) leaves the
 * image at its own path: the volume is kept. */
static int recover_delete(struct cvd *d, struct cvd_volume_rec *v)
{
    int r = remove_aside(v, CVD_DELETING_SUFFIX);

    if (r == 0 && access(v->path, F_OK) == 0) {
        snprintf(v->state, sizeof v->state, CVD_VOL_READY);
        cvd_warn("volume %s: a delete that was never committed (the daemon "
                 "stopped, or a refused delete could not be undone): kept, "
                 "Available", v->name);
        return d->meta->ops->volume_update(d->meta, v, CVD_VOL_DELETING);
    }
    if (r < 0)
        return r;
    cvd_warn("volume %s: was being deleted when the daemon stopped; "
             "removed", v->name);
    return cvd_space_volume_remove(d, v->name);
}

static int recover_one(struct cvd *d, struct cvd_volume_rec *v)
{
    char state[sizeof v->state];
    int r;

    snprintf(state, sizeof state, "%s", v->state);
    if (!strcmp(state, CVD_VOL_CREATING) && v->wait_secret[0])
        return back_to_pending(d, v);
    if (!strcmp(state, CVD_VOL_REKEYING))
        return cvd_volume_rekey_recover(d, v);
    if (!strcmp(state, CVD_VOL_DELETING))
        return recover_delete(d, v);
    if (!strcmp(state, CVD_VOL_CREATING)) {
        r = undo_create(v);
        if (r < 0)
            return r;
        cvd_warn("volume %s: was being created when the daemon stopped; "
                 "its record is removed", v->name);
        return cvd_space_volume_remove(d, v->name);
    }
    if (!strcmp(state, CVD_VOL_RESIZING) || !strcmp(state, CVD_VOL_GROWING))
        return recover_resize(d, v);
    return 0;
}

int cvd_volumes_recover(struct cvd *d)
{
    struct cvd_volume_rec *all;
    size_t n, i;
    int r;

    r = d->meta->ops->volume_list(d->meta, &all, &n);
    if (r < 0)
        return r;
    for (i = 0; r == 0 && i < n; i++)
        r = recover_one(d, &all[i]);
    free(all);
    if (r == 0 && cvd_space_reserve(d) < 0)
        cvd_warn("%s", cv_last_error());
    return r;
}

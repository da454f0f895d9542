/* What the export registry and a restarting daemon need from the volume
 * records: resolving a name to a file and its unlocked secret (only an
 * Available volume: a Pending one says what it waits for), listing what
 * can be served, and recovering from a crash mid-change. */
#include "store/backend.h"
#include "store/chain.h"
#include "backup/backup.h"
#include "export/export.h"
#include "cluster/cluster.h"
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

/* A state with a chain the daemon may work on (not pending: no chain
 * yet; not creating or restoring: only a ".creating" one; not deleting). */
static int state_has_chain(const char *state)
{
    return strcmp(state, CVD_VOL_PENDING) && strcmp(state, CVD_VOL_CREATING) &&
           strcmp(state, CVD_VOL_DELETING) && strcmp(state, CVD_VOL_RESTORING);
}

int cvd_volumes_resolve(void *opaque, const char *name, int serving,
                        struct cvd_volume_spec *spec)
{
    struct cvd *d = opaque;
    struct cvd_volume_rec v;
    int r;

    memset(spec, 0, sizeof *spec);
    if (!cvd_name_valid(name))
        return cv_error(-ENOENT, "volume \"%.64s\": no such volume", name);
    r = d->meta->ops->volume_get(d->meta, name, &v);
    /* Its layers are on the node it was made on: nothing opens them here. */
    if (r == 0)
        r = serving ? cvd_node_check_attach(d, &v)
                    : cvd_node_check_placement(d, &v);
    if (r < 0)
        return r;
    if (serving ? !cvd_state_served(v.state) : !state_has_chain(v.state))
        return cvd_state_error(&v);
    spec->plaintext = !strcmp(v.type, "plaintext");
    spec->size = v.size;
    /* A replica on another node than the one it was made on keeps the
     * chain in its own data dir. */
    {
        char path[sizeof v.path];   /* not v.path itself: snprintf from it */

        cvd_volume_local_path(d, &v, path, sizeof path);
        spec->path = strdup(path);
    }
    if (!spec->path)
        return cv_error(-ENOMEM, "volume %s: out of memory", name);
    return 0;
}

/* Header only, through the chain the registry holds: the keyslot areas
 * are not even read.  A snapshot is described by its view's size. */
static int describe_chain(struct cvd *d, const struct cvd_volume_rec *v,
                          const char *name, struct cvd_volume_desc *out)
{
    struct cv_luks_info info;
    struct cvd_export *e = NULL;
    struct cv_luks *l = NULL;
    int r;

    /* A replicated volume on a node outside its set (repl/remote-*.c):
     * the header is on the replicas; the record says the size, and the
     * block size is the chain's block, which any sector size divides. */
    if (!cvd_node_is_local(d, v) && v->size) {
        out->size = v->size;
        out->block_size = CV_CHAIN_BLOCK;
        return 0;
    }
    r = cvd_store_get(d, name, 0, &e);
    if (r == 0 && out->plaintext) {
        out->size = cv_chain_size(cvd_export_chain(e));
    } else if (r == 0) {
        pthread_mutex_lock(&d->header_lock);
        r = cv_luks_load_metadata(cvd_store_backend(e), &l);
        if (r == 0)
            r = cv_luks_info(l, &info);
        pthread_mutex_unlock(&d->header_lock);
    }
    if (r == 0 && l) {
        out->size = info.effective_size;
        out->block_size = info.sector_size;
    }
    /* As an open would serve it: at most the recorded size. */
    if (r == 0 && v->size < out->size)
        out->size = v->size;
    cv_luks_free(l);
    cvd_export_put_store(e);
    return r < 0 ? cv_error_prefix(r, "volume %s", name) : 0;
}

int cvd_volume_describe(struct cvd *d, const char *name,
                        struct cvd_volume_desc *out)
{
    struct cvd_volume_rec v;
    int r;

    char volume[CVD_NAME_MAX + 1];
    const char *at = strchr(name, '@');

    memset(out, 0, sizeof *out);
    snprintf(volume, sizeof volume, "%.*s",
             at ? (int)(at - name) : (int)strlen(name), name);
    if (!cvd_name_valid(volume) || (at && !cvd_name_valid(at + 1)))
        return cv_error(-ENOENT, "volume \"%.64s\": no such volume", name);
    r = d->meta->ops->volume_get(d->meta, volume, &v);
    if (r == 0)
        r = cvd_node_check_attach(d, &v);
    if (r < 0)
        return r;
    if (!cvd_state_served(v.state))
        return cvd_state_error(&v);
    out->plaintext = !strcmp(v.type, "plaintext");
    /* As export.c serves a plaintext volume. */
    out->block_size = 4096;
    out->readonly = at != NULL;
    if (at && out->plaintext)
        return cv_error(-ENOENT, "volume \"%.64s\": no such volume", name);
    return describe_chain(d, &v, name, out);
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
        if (cvd_state_served(all[i].state) && cvd_node_is_local(d, &all[i]))
            r = cb(arg, all[i].name);
    free(all);
    return r;
}

/* A resize cut off: the image's size is the truth (it is made durable
 * before the record changes), old or new; the record takes it.  A grow
 * was served at the recorded size meanwhile, so no client saw more than
 * the image holds. */
static int recover_resize(struct cvd *d, struct cvd_volume_rec *v)
{
    char state[sizeof v->state], was[32], now[32];
    uint64_t old = v->size;
    int r = cvd_store_size(d, v, &v->size);

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
    r = cvd_store_remove(aside);
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

/* A rollback cut short: the chain's change is all or nothing, so the
 * volume is Available again with whichever head the manifest names. */
static int recover_rollback(struct cvd *d, struct cvd_volume_rec *v)
{
    snprintf(v->state, sizeof v->state, CVD_VOL_READY);
    cvd_warn("volume %s: was being rolled back when the daemon stopped; "
             "Available (rolled back, or not: see its data)", v->name);
    return d->meta->ops->volume_update(d->meta, v, CVD_VOL_ROLLING_BACK);
}

static int recover_one(struct cvd *d, struct cvd_volume_rec *v)
{
    char state[sizeof v->state];
    int r;

    snprintf(state, sizeof state, "%s", v->state);
    if ((state_has_chain(state) || !strcmp(state, CVD_VOL_PENDING)) &&
        strcmp(state, CVD_VOL_IMPORTING) && strcmp(state, CVD_VOL_RESTORING) &&
        (r = cvd_store_upgrade(d, v)) < 0)
        return r;
    /* Its journal says which backup: restored again from the start, or
     * removed (backup-restore.c). */
    if (!strcmp(state, CVD_VOL_RESTORING))
        return cvd_backup_restore_recover(d, v) < 0 ? -EIO : 0;
    if (!strcmp(state, CVD_VOL_ROLLING_BACK))
        return recover_rollback(d, v);
    if (!strcmp(state, CVD_VOL_CREATING) && v->wait_secret[0])
        return back_to_pending(d, v);
    if (!strcmp(state, CVD_VOL_REKEYING))
        return cvd_volume_rekey_recover(d, v);
    if (!strcmp(state, CVD_VOL_DELETING))
        return recover_delete(d, v);
    if (!strcmp(state, CVD_VOL_CREATING) || !strcmp(state, CVD_VOL_IMPORTING)) {
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
    /* Only the ones made here: another node's files are not here, and a
     * replica's record is settled by the node it was made on. */
    for (i = 0; r == 0 && i < n; i++)
        if (cvd_volume_made_here(d, &all[i]))
            r = recover_one(d, &all[i]);
    free(all);
    if (r == 0 && cvd_space_reserve(d) < 0)
        cvd_warn("%s", cv_last_error());
    return r;
}

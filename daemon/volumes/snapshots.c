/* Snapshots: made, listed, merged away and rolled back through the chain
 * the registry holds for the volume, so a served volume and its
 * connections see each change at once (docs/store.md). */
#include "snapshots.h"
#include "cluster/cluster.h"
#include "daemon.h"
#include "core/error.h"
#include "export/export.h"
#include "image/volume.h"
#include "jobs.h"
#include "log.h"
#include "store/chain.h"
#include "volumes.h"
#include "volumes-util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cvd_split_snapshot(const char *full, char *volume, char *snap)
{
    const char *at = strchr(full, '@');
    char part[CVD_NAME_MAX + 8];
    int r;

    if (!at)
        return cv_error(-EINVAL, "\"%.140s\": expected VOL@SNAP", full);
    /* A part too long to be a name stays too long in the copy. */
    snprintf(part, sizeof part, "%.*s", (int)(at - full), full);
    r = cvd_check_name("volume", part);
    if (r == 0)
        r = cvd_check_name("snapshot", at + 1);
    if (r == 0) {
        /* Both checked: at most CVD_NAME_MAX characters. */
        memcpy(volume, part, strlen(part) + 1);
        memcpy(snap, at + 1, strlen(at + 1) + 1);
    }
    return r;
}

/* The volume's record, which must have a chain with snapshots: LUKS, and
 * in a state with its files. */
static int snapshot_volume(struct cvd *d, const char *volume,
                           struct cvd_volume_rec *v)
{
    int r = cvd_volume_get(d, volume, v);

    if (r < 0)
        return r;
    if (!strcmp(v->type, "plaintext"))
        return cv_error(-EINVAL, "volume %s: a plaintext volume (a "
                        "benchmark comparison) has no snapshots", volume);
    if (!cvd_state_served(v->state))
        return cvd_state_error(v);
    return 0;
}

static int check_names(const char *volume, const char *snap)
{
    int r = cvd_check_name("volume", volume);

    return r < 0 ? r : cvd_check_name("snapshot", snap);
}

int cvd_snapshot_create(struct cvd *d, const char *volume, const char *snap,
                        struct cvd_snapshot_info *out)
{
    struct cvd_volume_rec v;
    struct cvd_export *e = NULL;
    int64_t now = (int64_t)time(NULL);
    int r = check_names(volume, snap);

    if (r == 0)
        r = snapshot_volume(d, volume, &v);
    if (r == 0)
        r = cvd_store_get(d, volume, 0, &e);
    if (r < 0)
        return r;
    cvd_export_shape_lock(e);
    r = cv_chain_snapshot(cvd_export_chain(e), snap, now);
    cvd_export_shape_unlock(e);
    cvd_export_put_store(e);
    if (r == -EEXIST)
        return cv_error(-EEXIST, "volume %s: snapshot \"%s\" already exists",
                        volume, snap);
    if (r < 0)
        return cv_error_prefix(cvd_store_hide_path(r, v.path),
                               "volume %s: snapshot %s", volume, snap);
    cvd_info("volume %s: snapshot %s made", volume, snap);
    if (out) {
        memset(out, 0, sizeof *out);
        snprintf(out->name, sizeof out->name, "%s", snap);
        out->created = now;
    }
    return 0;
}

/* The snapshots of the chain (its own layers with a name, not merging). */
static int list_chain(struct cv_chain *c, struct cvd_snapshot_info **out,
                      size_t *n)
{
    struct cv_chain_layer_info *l = NULL;
    size_t nl = 0, i;
    int r = cv_chain_layers(c, &l, &nl);

    *out = NULL;
    *n = 0;
    if (r < 0)
        return r;
    *out = calloc(nl ? nl : 1, sizeof **out);
    if (!*out) {
        free(l);
        return cv_error(-ENOMEM, "%s: out of memory", cv_chain_name(c));
    }
    for (i = 0; i < nl; i++) {
        if (!l[i].own || !l[i].snapshot[0] || l[i].state != CV_LAYER_READY)
            continue;
        snprintf((*out)[*n].name, sizeof (*out)[*n].name, "%s",
                 l[i].snapshot);
        (*out)[*n].created = l[i].created;
        (*out)[(*n)++].allocated = l[i].allocated;
    }
    free(l);
    return 0;
}

int cvd_snapshot_list(struct cvd *d, const char *volume,
                      struct cvd_snapshot_info **out, size_t *n)
{
    struct cvd_volume_rec v;
    struct cvd_export *e = NULL;
    int r = cvd_volume_get(d, volume, &v);

    *out = NULL;
    *n = 0;
    if (r < 0)
        return r;
    if (!strcmp(v.type, "plaintext") || !strcmp(v.state, CVD_VOL_PENDING) ||
        !strcmp(v.state, CVD_VOL_CREATING) ||
        !strcmp(v.state, CVD_VOL_IMPORTING) ||
        !strcmp(v.state, CVD_VOL_RESTORING))
        return 0;               /* no chain (yet): no snapshots */
    r = cvd_store_get_view(d, volume, &e);
    if (r == 0)
        r = list_chain(cvd_export_chain(e), out, n);
    cvd_export_put_store(e);
    return r;
}

int cvd_volume_snapshot_count(struct cvd *d, const char *volume)
{
    struct cvd_snapshot_info *s = NULL;
    size_t n = 0;
    int r = cvd_snapshot_list(d, volume, &s, &n);

    free(s);
    return r < 0 ? r : (int)n;
}

#define CLONES_SHOWN 4

int cvd_volume_clones(struct cvd *d, const char *volume, const char *snap,
                      char *buf, size_t len)
{
    struct cvd_volume_rec *all = NULL;
    size_t n = 0, i, used = 0, vl = strlen(volume);
    int found = 0;
    int r = d->meta->ops->volume_list(d->meta, &all, &n);

    if (len)
        buf[0] = '\0';
    for (i = 0; r == 0 && i < n; i++) {
        const char *p = all[i].parent;

        if (strncmp(p, volume, vl) || p[vl] != '@' ||
            (snap && strcmp(p + vl + 1, snap)))
            continue;
        if (found++ < CLONES_SHOWN && used < len) {
            int w = snprintf(buf + used, len - used, "%s%s",
                             used ? ", " : "", all[i].name);
            used += w < 0 ? 0 : (size_t)w;
        }
    }
    if (found > CLONES_SHOWN && used < len)
        snprintf(buf + used, len - used, " and %d more",
                 found - CLONES_SHOWN);
    free(all);
    return r < 0 ? r : found;
}

/* --- Delete: the merge ------------------------------------------------- */

struct merge {
    unsigned id, above;
};

static int merge_progress(void *arg, uint64_t done)
{
    return cvd_job_progress(arg, done);
}

/* The job: the layer's blocks that the one above lacks are copied there
 * (the view does not change), that layer is synced, the layer dropped. */
static int merge_run(struct cvd *d, struct cvd_job *job, void *arg)
{
    struct merge *m = arg;
    const char *volume = (const char *)(m + 1);
    struct cvd_export *e = NULL;
    struct cv_volume *vol;
    struct cv_chain *c;
    int r;

    r = cvd_store_get(d, volume, 1, &e);
    if (r < 0)
        return r;
    c = cvd_export_chain(e);
    vol = cvd_export_volume(e);
    cvd_export_shape_lock(e);
    r = vol ? 0 : cv_error(-EINVAL, "%s: not unlocked", cv_chain_name(c));
    if (r == 0)
        r = cv_volume_fill_layer(vol, m->above, &m->id, 1, 0,
                                 cv_volume_size(vol), merge_progress, job);
    if (r == 0)
        r = cv_chain_sync_layer(c, m->above);
    if (r == 0)
        r = cv_chain_drop_layer(c, m->id);
    if (r < 0)
        cv_error_prefix(cvd_store_hide_path(r, cv_chain_name(c)),
                        "volume %s: merge", volume);
    cvd_export_shape_unlock(e);
    cvd_export_put_store(e);
    return r;
}

/* arg: a struct merge followed by the volume's name. */
static int start_merge(struct cvd *d, const char *volume, const char *snap,
                       unsigned id, unsigned above, uint64_t total)
{
    size_t len = strlen(volume) + 1;
    struct merge *m = malloc(sizeof *m + len);

    if (!m)
        return cv_error(-ENOMEM, "volume %s: out of memory", volume);
    m->id = id;
    m->above = above;
    memcpy(m + 1, volume, len);
    return cvd_job_start(d, volume, CVD_JOB_MERGE, snap, total, merge_run, m,
                         free);
}

static uint64_t layer_allocated(struct cv_chain *c, unsigned id)
{
    struct cv_chain_layer_info *l = NULL;
    size_t n = 0, i;
    uint64_t bytes = 0;

    if (cv_chain_layers(c, &l, &n) < 0)
        return 0;
    for (i = 0; i < n; i++)
        if (l[i].id == id)
            bytes = l[i].allocated;
    free(l);
    return bytes;
}

/* Refusals first (clones, served, a job), then the mark that makes the
 * snapshot gone for users and resumable, then the job. */
int cvd_snapshot_delete(struct cvd *d, const char *volume, const char *snap)
{
    struct cvd_volume_rec v;
    struct cvd_export *e = NULL;
    char clones[256], full[2 * CVD_NAME_MAX + 2];
    unsigned id = 0, above = 0;
    uint64_t total = 0;
    int r = check_names(volume, snap);

    if (r == 0)
        r = snapshot_volume(d, volume, &v);
    if (r == 0 && (r = cvd_volume_clones(d, volume, snap, clones,
                                         sizeof clones)) > 0)
        r = cv_error(-EBUSY, "volume %s: snapshot %s has clones (%s); "
                     "flatten or delete them first", volume, snap, clones);
    snprintf(full, sizeof full, "%s@%s", volume, snap);
    if (r == 0 && d->reg && cvd_registry_in_use(d->reg, full, 0))
        r = cvd_in_use_error(d, full, "deleting");
    if (r == 0)
        r = cvd_job_check_idle(d, volume);
    if (r == 0)
        r = cvd_store_get(d, volume, 0, &e);
    if (r < 0)
        return r;
    cvd_export_shape_lock(e);
    r = cv_chain_snapshot_layer(cvd_export_chain(e), snap, &id, &above);
    if (r == -ENOENT)
        r = cv_error(-ENOENT, "volume %s: no snapshot \"%s\"", volume, snap);
    if (r == 0 && (r = cv_chain_mark_merging(cvd_export_chain(e), id)) < 0)
        cv_error_prefix(cvd_store_hide_path(r, v.path), "volume %s", volume);
    if (r == 0)
        total = layer_allocated(cvd_export_chain(e), id);
    cvd_export_shape_unlock(e);
    cvd_export_put_store(e);
    if (r == 0)
        r = start_merge(d, volume, snap, id, above, total);
    if (r == 0)
        cvd_info("volume %s: snapshot %s deleted; merging its layer", volume,
                 snap);
    return r;
}

int cvd_snapshot_rollback(struct cvd *d, const char *volume,
                          const char *snap, struct cvd_volume_rec *out)
{
    struct cvd_volume_rec v;
    struct cvd_export *e = NULL;
    char from[sizeof v.state];
    int r = check_names(volume, snap);

    if (r == 0)
        r = snapshot_volume(d, volume, &v);
    if (r == 0)
        r = cvd_job_check_idle(d, volume);
    if (r == 0)
        r = cvd_volume_claim(d, volume, CVD_VOL_ROLLING_BACK, "rolling back",
                             &v, from);
    if (r < 0)
        return r;
    r = cvd_store_get(d, volume, 0, &e);
    if (r == 0) {
        cvd_export_shape_lock(e);
        r = cv_chain_rollback(cvd_export_chain(e), snap);
        cvd_export_shape_unlock(e);
    }
    cvd_export_put_store(e);
    if (r == -ENOENT)
        r = cv_error(-ENOENT, "volume %s: no snapshot \"%s\"", volume, snap);
    else if (r < 0)
        cv_error_prefix(cvd_store_hide_path(r, v.path),
                        "volume %s: rollback to %s", volume, snap);
    if (r < 0) {
        cvd_volume_put_back(d, &v, from, r);
        return r;
    }
    snprintf(v.state, sizeof v.state, "%s", from);
    r = d->meta->ops->volume_update(d->meta, &v, CVD_VOL_ROLLING_BACK);
    if (r == 0)
        cvd_info("volume %s: rolled back to snapshot %s", volume, snap);
    if (r == 0 && out)
        *out = v;
    return r;
}

/* A chain with a layer marked merging: its merge starts again. */
static int resume_one(struct cvd *d, const struct cvd_volume_rec *v)
{
    struct cv_chain_layer_info *l = NULL;
    struct cvd_export *e = NULL;
    size_t n = 0, i;
    int r = cvd_store_get(d, v->name, 0, &e);

    if (r == 0)
        r = cv_chain_layers(cvd_export_chain(e), &l, &n);
    for (i = 0; r == 0 && i < n; i++) {
        if (!l[i].own || l[i].state != CV_LAYER_MERGING || i + 1 >= n)
            continue;
        cvd_warn("volume %s: the merge of deleted snapshot %s was cut "
                 "short; resuming it", v->name, l[i].snapshot);
        r = start_merge(d, v->name, l[i].snapshot, l[i].id, l[i + 1].id,
                        l[i].allocated);
        break;                  /* one job at a time: the next at the next
                                   start, or a later delete */
    }
    free(l);
    cvd_export_put_store(e);
    return r;
}

/* A flatten cut after its chain dropped the parent but before the record
 * did: the chain is the truth. */
static int mend_parent(struct cvd *d, struct cvd_volume_rec *v)
{
    struct cv_chain_parent p;
    struct cvd_export *e = NULL;
    int has, r = cvd_store_get(d, v->name, 0, &e);

    if (r < 0)
        return r;
    has = cv_chain_parent(cvd_export_chain(e), &p) == 0;
    cvd_export_put_store(e);
    if (has)
        return 0;
    cv_clear_error();
    cvd_warn("volume %s: its flatten was done when the daemon stopped; it "
             "no longer reads through %s", v->name, v->parent);
    v->parent[0] = '\0';
    return d->meta->ops->volume_update(d->meta, v, v->state);
}

int cvd_snapshots_resume(struct cvd *d)
{
    struct cvd_volume_rec *all = NULL;
    size_t n = 0, i;
    int r = d->meta->ops->volume_list(d->meta, &all, &n);

    for (i = 0; r == 0 && i < n; i++) {
        if (!strcmp(all[i].type, "plaintext") ||
            !cvd_state_served(all[i].state) ||
            !cvd_volume_made_here(d, &all[i]))
            continue;
        if (all[i].parent[0] && mend_parent(d, &all[i]) < 0)
            cvd_err("%s", cv_last_error());
        if (resume_one(d, &all[i]) < 0)
            cvd_err("%s", cv_last_error());
    }
    free(all);
    return r;
}

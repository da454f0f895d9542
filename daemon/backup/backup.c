/* The daemon's backup target: opened at start, where a stop left backups
 * of this daemon InProgress they are marked Failed, and what the admin API
 * reads of it (the target's use, the list of backups, one backup with its
 * job's progress). */
#include "backup.h"
#include "backups-internal.h"
#include "daemon.h"
#include "core/error.h"
#include "log.h"
#include "meta/meta.h"
#include "target.h"
#include "volumes/jobs.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The state names (cvd_backup_state_name, _parse) are target-manifest.c's:
 * the manifest's encoding needs them. */

static int fail_left_in_progress(struct cvd *d, struct cvd_target *t);

/* Under b->lock: opens the target if it is not open yet; the first open
 * marks this daemon's leftovers Failed. */
static int open_target(struct cvd *d, struct cvd_backups *b)
{
    struct cvd_target *t = NULL;
    int r;

    if (b->target)
        return 0;
    /* Whatever keeps it from opening, there is no target to use: the
     * message says why (the API's NoBackupTarget), so it stays as it is
     * and only the code changes. */
    r = cvd_target_open(d->cfg.backup_target, &t);
    if (r < 0)
        return -ENODEV;
    b->target = t;
    if (fail_left_in_progress(d, t) < 0) {
        cvd_err("backup target %s: %s", d->cfg.backup_target,
                cv_last_error());
        cv_clear_error();
    }
    cvd_info("backup target %s", d->cfg.backup_target);
    return 0;
}

int cvd_backups_target(struct cvd *d, struct cvd_target **out)
{
    struct cvd_backups *b = d->backups;
    int r;

    if (!b)
        return cv_error(-ENODEV, "no backup target is set: backup-target in "
                        "cryptvold.conf or --backup-target");
    pthread_mutex_lock(&b->lock);
    r = open_target(d, b);
    if (r == 0)
        *out = b->target;
    pthread_mutex_unlock(&b->lock);
    return r;
}

void cvd_backups_cluster(struct cvd *d, char *buf, size_t len)
{
    struct cvd_cluster_rec c;

    buf[0] = '\0';
    /* A single node has an id only once cluster encryption was enabled. */
    if (d->meta && d->meta->ops->cluster_get(d->meta, &c) == 0)
        snprintf(buf, len, "%s", c.id);
    else
        cv_clear_error();
}

int cvd_backup_is_ours(struct cvd *d, const struct cvd_backup_info *info)
{
    char cluster[sizeof info->cluster];

    cvd_backups_cluster(d, cluster, sizeof cluster);
    return !strcmp(info->cluster, cluster) &&
           !strcmp(info->node, d->cfg.node_name ? d->cfg.node_name : "");
}

/* The job of a backup is its volume's, with the backup's id as target. */
void cvd_backup_fill_progress(struct cvd *d, struct cvd_backup_info *info)
{
    struct cvd_job_info j;

    info->done = info->total = 0;
    if (info->state != CVD_BACKUP_IN_PROGRESS ||
        cvd_job_get(d, info->volume, &j) < 0)
        return;
    if (j.kind != CVD_JOB_BACKUP || strcmp(j.target, info->id) ||
        !cvd_backup_is_ours(d, info))
        return;
    /* A job that failed and could not even mark its manifest (a full
     * target): its error, until the next start marks the manifest. */
    if (j.state == CVD_JOB_FAILED) {
        info->state = CVD_BACKUP_FAILED;
        info->finished = j.finished;
        snprintf(info->error, sizeof info->error, "%s", j.error);
        return;
    }
    if (j.state != CVD_JOB_RUNNING)
        return;
    info->done = j.done;
    info->total = j.total;
}

/* A backup this daemon left InProgress: no job of this process runs it
 * (none has started yet), so it can never finish. */
static int mark_failed(struct cvd *d, struct cvd_target *t, const char *id)
{
    struct cvd_manifest m = { 0 };
    int r = cvd_manifest_read(t, id, NULL, &m);

    if (r == 0 && m.info.state == CVD_BACKUP_IN_PROGRESS) {
        m.info.state = CVD_BACKUP_FAILED;
        m.info.finished = (int64_t)time(NULL);
        snprintf(m.info.error, sizeof m.info.error, "the daemon stopped "
                 "(node %s) before this backup finished",
                 d->cfg.node_name ? d->cfg.node_name : "");
        r = cvd_manifest_write(t, &m, NULL);
        if (r == 0)
            cvd_warn("backup %s of volume %s: left InProgress by a stop; "
                     "marked Failed", id, m.info.volume);
    }
    cvd_manifest_free(&m);
    return r;
}

static int fail_left_in_progress(struct cvd *d, struct cvd_target *t)
{
    struct cvd_backup_info *all = NULL;
    size_t n = 0, i;
    int r = cvd_manifest_list(t, NULL, &all, &n);

    for (i = 0; r == 0 && i < n; i++) {
        if (all[i].state != CVD_BACKUP_IN_PROGRESS ||
            !cvd_backup_is_ours(d, &all[i]))
            continue;
        /* One that cannot be marked stays InProgress: logged, not fatal
         * (the daemon still serves its volumes). */
        if (mark_failed(d, t, all[i].id) < 0)
            cvd_err("%s", cv_last_error());
    }
    free(all);
    return r;
}

/* A target that cannot be opened now (an NFS mount not there yet, a
 * directory that is not a target) does not stop the daemon serving its
 * volumes: it is logged, and every backup request tries again, answering
 * with the reason until it opens. */
int cvd_backups_start(struct cvd *d)
{
    struct cvd_backups *b;

    d->backups = NULL;
    if (!d->cfg.backup_target)
        return 0;
    b = calloc(1, sizeof *b);
    if (!b)
        return cv_error(-ENOMEM, "backups: out of memory");
    pthread_mutex_init(&b->lock, NULL);
    if (cvd_backups_keys_init(b) < 0) {
        pthread_mutex_destroy(&b->lock);
        free(b);
        return cv_error(-ENOMEM, "backups: out of locked memory");
    }
    d->backups = b;
    if (open_target(d, b) < 0) {
        cvd_err("%s; backups are tried again at each request",
                cv_last_error());
        cv_clear_error();
    }
    return 0;
}

void cvd_backups_stop(struct cvd *d)
{
    if (!d->backups)
        return;
    if (d->backups->target)
        cvd_target_close(d->backups->target);
    cvd_backups_keys_free(d->backups);
    pthread_mutex_destroy(&d->backups->lock);
    free(d->backups);
    d->backups = NULL;
}

int cvd_backup_target_info(struct cvd *d, struct cvd_backup_target_info *out)
{
    struct cvd_backup_info *all = NULL;
    struct cvd_target *t = NULL;
    size_t n = 0;
    int r = cvd_backups_target(d, &t);

    memset(out, 0, sizeof *out);
    if (r == 0)
        r = cvd_manifest_list(t, NULL, &all, &n);
    free(all);
    if (r == 0)
        r = cvd_target_usage(t, &out->blocks, &out->bytes, &out->free_bytes);
    if (r < 0)
        return r;
    snprintf(out->path, sizeof out->path, "%s", cvd_target_dir(t));
    out->backups = n;
    return 0;
}

int cvd_backup_list(struct cvd *d, const char *volume,
                    struct cvd_backup_info **out, size_t *n)
{
    struct cvd_target *t = NULL;
    int r = cvd_backups_target(d, &t);

    *out = NULL;
    *n = 0;
    if (r < 0)
        return r;
    r = cvd_manifest_list(t, volume, out, n);
    for (size_t i = 0; r == 0 && i < *n; i++)
        cvd_backup_fill_progress(d, &(*out)[i]);
    return r;
}

int cvd_backups_kek_floor(struct cvd *d, uint32_t *floor)
{
    struct cvd_backup_info *all = NULL;
    char cluster[sizeof all->cluster];
    size_t n = 0;
    int r;

    *floor = 0;
    if (!d->backups)
        return 0;               /* no target: nothing to keep for it */
    r = cvd_backup_list(d, NULL, &all, &n);
    if (r < 0)
        return cv_error_prefix(r, "the KEK generations backups need");
    cvd_backups_cluster(d, cluster, sizeof cluster);
    for (size_t i = 0; i < n; i++) {
        const struct cvd_backup_info *b = &all[i];

        /* Another cluster's generations are not ours to keep or drop. */
        if (b->state != CVD_BACKUP_COMPLETED || !b->kek_gen ||
            strcmp(b->cluster, cluster))
            continue;
        if (!*floor || b->kek_gen < *floor)
            *floor = b->kek_gen;
    }
    free(all);
    return 0;
}

/* An id a manifest could have ("bk-" and 16 hex digits): anything else is
 * refused before it becomes a file name. */
static int check_id(const char *id)
{
    size_t i, len = strlen(id);
    int ok = len == 19 && !strncmp(id, "bk-", 3);

    for (i = 3; ok && i < len; i++)
        ok = (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f');
    return ok ? 0 : cv_error(-EINVAL, "backup \"%.40s\": not a backup id "
                             "(bk- and 16 hex digits)", id);
}

int cvd_backup_check_id(const char *id)
{
    return check_id(id);
}

int cvd_backup_get(struct cvd *d, const char *id, struct cvd_backup_info *out)
{
    struct cvd_manifest m = { 0 };
    struct cvd_target *t = NULL;
    int r = check_id(id);

    if (r == 0)
        r = cvd_backups_target(d, &t);
    if (r == 0)
        r = cvd_manifest_read(t, id, NULL, &m);
    if (r == -ENOENT)
        r = cv_error(-ENOENT, "backup %s: no such backup in %s", id,
                     cvd_target_dir(t));
    if (r == 0) {
        *out = m.info;
        out->blocks = m.nblocks;
        cvd_backup_fill_progress(d, out);
    }
    cvd_manifest_free(&m);
    return r;
}

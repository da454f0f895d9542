/* Restore of a backup into a new volume (docs/backup.md).  Before anything
 * is written the backup is proved: its manifest read, its header rebuilt
 * from the target and opened with the secret, the MAC key derived from
 * the volume key and the manifest read again with it.  Then the volume is
 * recorded restoring (never served), its journal written, a ".creating"
 * chain made and a job (restore-job.c) fills it.  A secret that does not
 * exist yet makes the volume pending instead, as volume create does; the
 * pending retry (volumes-pending.c) and the recovery after a kill
 * (volumes-serve.c) come back here through the journal. */
#include "restore-internal.h"
#include "backups-internal.h"

#include "daemon.h"
#include "cluster/cluster.h"
#include "core/error.h"
#include "log.h"
#include "meta/meta.h"
#include "store/chain.h"
#include "volumes/jobs.h"
#include "volumes/volumes-util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A restore waits this long for a delete (which holds the target's lock
 * exclusively) to finish. */
#define LOCK_WAIT_MS 10000

static struct cvd_restore *restore_new(void)
{
    struct cvd_restore *rs = calloc(1, sizeof *rs);

    if (rs)
        rs->lock_fd = -1;
    else
        cv_error(-ENOMEM, "restore: out of memory");
    return rs;
}

/* What the manifest's state allows; the fields a restore relies on. */
static int check_manifest(const struct cvd_backup_info *i)
{
    if (i->state == CVD_BACKUP_IN_PROGRESS)
        return cv_error(-EBUSY, "backup %s: is InProgress; restore it once "
                        "it is Completed", i->id);
    if (i->state != CVD_BACKUP_COMPLETED)
        return cv_error(-EINVAL, "backup %s: is Failed (%s) and cannot be "
                        "restored", i->id, i->error);
    if (i->data_offset == 0 || i->data_offset % CV_CHAIN_BLOCK ||
        i->raw_size < i->data_offset + i->size)
        return cv_error(-EBADMSG, "backup %s: its manifest's data offset "
                        "%llu, size %llu and raw size %llu do not fit", i->id,
                        (unsigned long long)i->data_offset,
                        (unsigned long long)i->size,
                        (unsigned long long)i->raw_size);
    return 0;
}

/* The manifest as read, and the header it lists opened: *key. */
static int open_header(struct cvd *d, struct cvd_restore *rs, const char *id,
                       const char *secret, struct cvd_manifest *m0,
                       struct cvd_backup_key *key)
{
    int r = cvd_manifest_read(rs->t, id, NULL, m0);

    if (r == 0)
        r = check_manifest(&m0->info);
    if (r == 0)
        r = cvd_backup_unlock(d, rs->t, m0, secret, key);
    return r;
}

/* Opens the target with its shared lock, reads backup id, opens its header
 * with secret (NULL: the backup's own) and reads the manifest again
 * authenticated into rs->m.  A secret that does not exist: -ENOENT with
 * key->secret naming it (and key->key NULL). */
static int open_backup(struct cvd *d, const char *id, const char *secret,
                       struct cvd_restore *rs, struct cvd_backup_key *key)
{
    struct cvd_manifest m0 = { 0 };
    int r;

    memset(key, 0, sizeof *key);
    if (!d->cfg.backup_target)
        return cv_error(-ENODEV, "no backup target is set: backup-target in "
                        "cryptvold.conf or --backup-target");
    r = cvd_backup_check_id(id);
    if (r == 0 && !rs->t)
        r = cvd_target_open(d->cfg.backup_target, &rs->t);
    if (r == 0 && rs->lock_fd < 0)
        r = cvd_target_lock(rs->t, CVD_TARGET_SHARED, LOCK_WAIT_MS,
                            &rs->lock_fd);
    if (r == 0)
        r = open_header(d, rs, id, secret, &m0, key);
    if (r == 0)
        r = cvd_manifest_read(rs->t, id, key->mac_key, &rs->m);
    /* The header that proved the key is the one the MAC covers. */
    if (r == 0 && (!cvd_backup_same_header(&m0, &rs->m) ||
                   key->info.data_offset != rs->m.info.data_offset))
        r = cv_error(-EBADMSG, "backup %s: its manifest changed while it was "
                     "read", id);
    if (r == 0)
        r = check_manifest(&rs->m.info);
    if (r < 0 && !(r == -ENOENT && key->secret[0] && !key->key)) {
        key->secret[0] = '\0';  /* only a missing secret is waited for */
    }
    cvd_manifest_free(&m0);
    return r;
}

/* The new volume's record: the backup's header, size and cipher. */
static void restore_record(struct cvd *d, const char *name,
                           const struct cvd_backup_info *i,
                           const char *class_name, struct cvd_volume_rec *v)
{
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", name);
    snprintf(v->uuid, sizeof v->uuid, "%s", i->uuid);
    v->size = i->size;
    snprintf(v->type, sizeof v->type, "%s", i->type);
    snprintf(v->cipher, sizeof v->cipher, "%s", i->cipher);
    v->key_bits = i->key_bits;
    v->sector_size = i->sector_size;
    v->data_offset = i->data_offset;
    snprintf(v->class_name, sizeof v->class_name, "%s",
             class_name ? class_name : "");
    cvd_volume_path(d, name, v->path, sizeof v->path);
    snprintf(v->state, sizeof v->state, CVD_VOL_RESTORING);
    v->created = (int64_t)time(NULL);
    cvd_node_place(d, v);
}

/* What opened the header is what opens the volume: the token (kek_gen)
 * or the named secret. */
static void take_key(struct cvd_volume_rec *v, const struct cvd_backup_key *k)
{
    snprintf(v->secret, sizeof v->secret, "%s", k->kek_gen ? "" : k->secret);
    v->kek_gen = k->kek_gen;
    v->wait_secret[0] = '\0';
}

/* The ".creating" chain of v (restoring) and the job that fills it; rs is
 * the job's from here on (freed on failure too).  On failure the chain is
 * removed; the record and the journal are the caller's. */
static int launch(struct cvd *d, struct cvd_restore *rs,
                  const struct cvd_volume_rec *v)
{
    struct cvd_volume_rec tmp = *v;
    const struct cvd_backup_info *i = &rs->m.info;
    int r;

    snprintf(rs->name, sizeof rs->name, "%s", v->name);
    snprintf(rs->final, sizeof rs->final, "%s", v->path);
    rs->delay_ms = d->cfg.backup_delay_ms;
    r = cvd_aside_path(v->path, CVD_CREATING_SUFFIX, rs->chain,
                       sizeof rs->chain);
    if (r < 0)
        r = cv_error(r, "volume %s: its path is too long", v->name);
    snprintf(tmp.path, sizeof tmp.path, "%s", rs->chain);
    if (r == 0)
        r = cvd_store_make(d, &tmp, i->data_offset,
                           i->raw_size - i->data_offset, NULL);
    if (r < 0) {
        cvd_restore_free(rs);
        return r;
    }
    cvd_info("volume %s: restoring backup %s (%llu bytes)", v->name, i->id,
             (unsigned long long)i->bytes_held);
    r = cvd_job_start(d, v->name, CVD_JOB_RESTORE, i->id, i->bytes_held,
                      cvd_restore_run, rs, cvd_restore_free);
    if (r < 0) {
        char first[CVD_ERROR_MAX];

        snprintf(first, sizeof first, "%s", cv_last_error());
        cvd_store_remove(tmp.path);
        cv_error(r, "%s", first);
    }
    return r;
}

/* After a failed step whose message is the last one: the record and the
 * journal go (the journal first would leave a record that recovery
 * removes anyway). */
static int forget(struct cvd *d, const char *name, int r)
{
    char first[CVD_ERROR_MAX];

    snprintf(first, sizeof first, "%s", cv_last_error());
    cvd_undo(first, cvd_space_volume_remove(d, name));
    cvd_undo(first, cvd_restore_journal_remove(d, name));
    return r;
}

static void journal_of(const struct cvd_backup_info *i, const char *secret,
                       const char *class_name, struct cvd_restore_journal *j)
{
    memset(j, 0, sizeof *j);
    snprintf(j->backup, sizeof j->backup, "%s", i->id);
    snprintf(j->secret, sizeof j->secret, "%s", secret ? secret : "");
    snprintf(j->class_name, sizeof j->class_name, "%s",
             class_name ? class_name : "");
    snprintf(j->uuid, sizeof j->uuid, "%s", i->uuid);
}

/* The secret does not exist: recorded pending (no chain), with the
 * journal the retry reads.  The backup's UUID in the record marks it as a
 * restore (a plain pending volume has none). */
static int record_pending(struct cvd *d, const char *name,
                          const struct cvd_manifest *m0, const char *missing,
                          const struct cvd_restore_journal *j,
                          struct cvd_volume_rec *v)
{
    int r;

    restore_record(d, name, &m0->info, j->class_name[0] ? j->class_name :
                   NULL, v);
    snprintf(v->state, sizeof v->state, CVD_VOL_PENDING);
    snprintf(v->wait_secret, sizeof v->wait_secret, "%s", missing);
    r = d->meta->ops->volume_add(d->meta, v, NULL);
    if (r == 0 && (r = cvd_restore_journal_write(d, name, j)) < 0)
        forget(d, name, r);
    if (r == 0)
        cvd_info("volume %s: restore of backup %s pending: waiting for "
                 "secret \"%s\"", name, j->backup, missing);
    return r;
}

int cvd_backup_restore(struct cvd *d, const char *id, const char *name,
                       const char *secret, const char *class_name,
                       struct cvd_volume_rec *out)
{
    struct cvd_restore_journal j;
    struct cvd_backup_key key = { 0 };
    struct cvd_manifest m0 = { 0 };
    struct cvd_volume_rec v;
    struct cvd_restore *rs = NULL;
    int r = cvd_check_name("volume", name);

    if (r == 0 && secret)
        r = cvd_check_name("secret", secret);
    if (r == 0 && class_name)
        r = cvd_check_name("class", class_name);
    if (r == 0 && d->meta->ops->volume_get(d->meta, name, &v) == 0)
        r = cv_error(-EEXIST, "volume %s: already exists", name);
    if (r == 0 && !(rs = restore_new()))
        r = -ENOMEM;
    if (r == 0)
        r = open_backup(d, id, secret, rs, &key);
    if (r == -ENOENT && key.secret[0]) {
        r = cvd_manifest_read(rs->t, id, NULL, &m0);
        journal_of(&m0.info, secret, class_name, &j);
        if (r == 0)
            r = record_pending(d, name, &m0, key.secret, &j, &v);
        goto out;
    }
    if (r < 0)
        goto out;
    journal_of(&rs->m.info, secret, class_name, &j);
    restore_record(d, name, &rs->m.info, class_name, &v);
    take_key(&v, &key);
    r = d->meta->ops->volume_add(d->meta, &v, NULL);
    if (r == 0 && (r = cvd_restore_journal_write(d, name, &j)) < 0)
        forget(d, name, r);
    if (r == 0) {
        r = launch(d, rs, &v);
        rs = NULL;              /* the job's, or freed */
        if (r < 0)
            forget(d, name, r);
    }
out:
    if (r == 0 && out)
        *out = v;
    cvd_manifest_free(&m0);
    cvd_backup_key_free(&key);
    cvd_restore_free(rs);
    return r;
}

/* Picks up the restore of v (pending or restoring) from its journal:
 * opens the backup again, from the start.  *missing: the secret still
 * missing. */
static int reopen(struct cvd *d, const struct cvd_volume_rec *v,
                  const struct cvd_restore_journal *j,
                  struct cvd_restore **out, struct cvd_backup_key *key)
{
    struct cvd_restore *rs = restore_new();
    int r = rs ? 0 : -ENOMEM;

    if (r == 0)
        r = open_backup(d, j->backup, j->secret[0] ? j->secret : NULL, rs,
                        key);
    if (r == 0 && strcmp(rs->m.info.uuid, v->uuid))
        r = cv_error(-EBADMSG, "volume %s: backup %s has LUKS UUID %s, not "
                     "the volume's %s", v->name, j->backup, rs->m.info.uuid,
                     v->uuid);
    if (r < 0) {
        cvd_restore_free(rs);
        rs = NULL;
    }
    *out = rs;
    return r;
}

/* The journal of v, if it is v's (a journal left by an earlier volume of
 * the same name has another UUID). */
static int own_journal(struct cvd *d, const struct cvd_volume_rec *v,
                       struct cvd_restore_journal *j)
{
    int r = cvd_restore_journal_read(d, v->name, j);

    if (r == 0 && strcmp(j->uuid, v->uuid))
        r = -ENOENT;
    return r;
}

int cvd_backup_restore_pending(struct cvd *d, struct cvd_volume_rec *v)
{
    struct cvd_restore_journal j;
    struct cvd_backup_key key = { 0 };
    struct cvd_restore *rs = NULL;
    int r;

    if (strcmp(v->state, CVD_VOL_PENDING) || !v->uuid[0])
        return 0;               /* a pending create has no UUID yet */
    r = own_journal(d, v, &j);
    if (r == -ENOENT) {
        cvd_warn("volume %s: a pending restore without its journal: "
                 "removed", v->name);
        return forget(d, v->name, 1);
    }
    if (r == 0)
        r = reopen(d, v, &j, &rs, &key);
    if (r == -ENOENT && key.secret[0]) {
        r = -ENOENT;            /* still waiting: no message */
        cv_clear_error();
        goto out;
    }
    if (r == -ENOENT) {
        /* the backup is gone: nothing can ever finish this restore */
        cvd_err("volume %s: pending restore: %s; removed", v->name,
                cv_last_error());
        forget(d, v->name, r);
        goto out;
    }
    if (r < 0) {
        cv_error_prefix(r, "volume %s: pending restore", v->name);
        goto out;
    }
    /* pending -> restoring: the compare-and-set lets one retry take it */
    take_key(v, &key);
    snprintf(v->state, sizeof v->state, CVD_VOL_RESTORING);
    r = d->meta->ops->volume_update(d->meta, v, CVD_VOL_PENDING);
    if (r == 0) {
        r = launch(d, rs, v);
        rs = NULL;
        if (r < 0)
            forget(d, v->name, r);
    }
out:
    cvd_backup_key_free(&key);
    cvd_restore_free(rs);
    return r < 0 ? r : 1;
}

/* Recovery: the restore could not be taken up again now (a transient
 * error: no target, the lock busy, I/O) and stays restoring, never served,
 * until the next start. */
static int transient(int r)
{
    return r == -ENODEV || r == -EBUSY || r == -EIO || r == -EAGAIN ||
           r == -ENOMEM || r == -ETIMEDOUT;
}

static int remove_aside(const struct cvd_volume_rec *v)
{
    char aside[PATH_MAX + 16];
    int r = cvd_aside_path(v->path, CVD_CREATING_SUFFIX, aside, sizeof aside);

    if (r == 0)
        r = cvd_store_remove(aside);
    return r == -ENOENT ? 0 : r;
}

/* The chain at the volume's own path is there only once every block was
 * written and flushed (the rename is the job's last step but the record):
 * the restore had finished. */
static int finish_placed(struct cvd *d, struct cvd_volume_rec *v)
{
    int r;

    snprintf(v->state, sizeof v->state, CVD_VOL_READY);
    r = d->meta->ops->volume_update(d->meta, v, CVD_VOL_RESTORING);
    if (r == 0 && cvd_restore_journal_remove(d, v->name) < 0)
        cvd_warn("%s", cv_last_error());
    if (r == 0)
        cvd_warn("volume %s: its restore had finished when the daemon "
                 "stopped: Available", v->name);
    return r;
}

/* Back to waiting: the secret that opened it is gone now. */
static int back_to_pending(struct cvd *d, struct cvd_volume_rec *v,
                           const char *missing)
{
    v->secret[0] = '\0';
    v->kek_gen = 0;
    snprintf(v->wait_secret, sizeof v->wait_secret, "%s", missing);
    snprintf(v->state, sizeof v->state, CVD_VOL_PENDING);
    cvd_warn("volume %s: was being restored when the daemon stopped; "
             "Pending: waiting for secret \"%s\"", v->name, missing);
    return d->meta->ops->volume_update(d->meta, v, CVD_VOL_RESTORING);
}

static int restart(struct cvd *d, struct cvd_volume_rec *v,
                   const struct cvd_restore_journal *j)
{
    struct cvd_backup_key key = { 0 };
    struct cvd_restore *rs = NULL;
    int r = reopen(d, v, j, &rs, &key);

    if (r == -ENOENT && key.secret[0])
        r = back_to_pending(d, v, key.secret);
    else if (r < 0 && transient(r))
        cvd_warn("volume %s: was being restored when the daemon stopped; "
                 "stays Restoring until the next start: %s", v->name,
                 cv_last_error());
    else if (r < 0) {
        cvd_err("volume %s: was being restored when the daemon stopped and "
                "cannot be restored again: %s; removed", v->name,
                cv_last_error());
        forget(d, v->name, r);
    } else {
        cvd_warn("volume %s: was being restored from backup %s when the "
                 "daemon stopped; restoring it again from the start",
                 v->name, j->backup);
        /* what opened it now is what opens it (a token that no longer
         * unwraps here, and the secret did) */
        take_key(v, &key);
        r = d->meta->ops->volume_update(d->meta, v, CVD_VOL_RESTORING);
        if (r == 0)
            r = launch(d, rs, v);
        else
            cvd_restore_free(rs);
        if (r < 0) {
            cvd_err("volume %s: restoring it again: %s; removed", v->name,
                    cv_last_error());
            forget(d, v->name, r);
        }
    }
    cvd_backup_key_free(&key);
    return 0;
}

int cvd_backup_restore_recover(struct cvd *d, struct cvd_volume_rec *v)
{
    struct cvd_restore_journal j;
    int r;

    if (strcmp(v->state, CVD_VOL_RESTORING))
        return 0;
    /* cvd_volumes_recover runs again at the admin API's start: a restore
     * it took up then is running. */
    if (cvd_job_check_idle(d, v->name) < 0) {
        cv_clear_error();
        return 1;
    }
    /* ... or ran and ended since v was listed: it settled the record */
    r = d->meta->ops->volume_get(d->meta, v->name, v);
    if (r < 0 || strcmp(v->state, CVD_VOL_RESTORING)) {
        cv_clear_error();
        return 1;
    }
    r = remove_aside(v);
    if (r == 0 && access(v->path, F_OK) == 0)
        r = finish_placed(d, v);
    else if (r == 0 && (r = own_journal(d, v, &j)) == -ENOENT) {
        cvd_warn("volume %s: was being restored when the daemon stopped, "
                 "and its restore journal is gone: removed", v->name);
        r = forget(d, v->name, 0);
    } else if (r == 0) {
        r = restart(d, v, &j);
    }
    if (r < 0)
        cvd_err("volume %s: recovering its restore: %s", v->name,
                cv_last_error());
    return 1;
}

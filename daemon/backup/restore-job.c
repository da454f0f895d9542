/* The work of a restore: a new chain filled from a backup's blocks, each
 * fetched and checked against its checksum before a byte of it is written,
 * then put into place; and the journal that lets the next start do it
 * again after a kill.  The volume is restoring (never served) until the
 * chain has its name and every block is in it. */
#include "restore-internal.h"

#include "daemon.h"
#include "audit/audit.h"
#include "core/error.h"
#include "core/fd-io.h"
#include "core/json-util.h"
#include "log.h"
#include "meta/meta.h"
#include "store/backend.h"
#include "store/chain.h"
#include "volumes/jobs.h"
#include "volumes/volumes-util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* --- Journal ----------------------------------------------------------- */

static int journal_path(struct cvd *d, const char *name, char *buf,
                        size_t len)
{
    int n = snprintf(buf, len, "%s/restores/%s.json", d->cfg.data_dir, name);

    return n < 0 || (size_t)n >= len ?
           cv_error(-ENAMETOOLONG, "volume %s: its restore journal's path "
                    "is too long", name) : 0;
}

static int make_dir(struct cvd *d)
{
    char dir[PATH_MAX];

    snprintf(dir, sizeof dir, "%s/restores", d->cfg.data_dir);
    if (mkdir(dir, 0700) == 0)
        return cvd_sync_dir_of(dir);
    return errno == EEXIST ? 0 : cv_error(-errno, "%s: %s", dir,
                                          strerror(errno));
}

/* A member that is a string, or JSON null for "" (the backup's own
 * secret; no class). */
static int add_string(json_object *o, const char *key, const char *s)
{
    if (!s[0])
        return json_object_object_add(o, key, NULL) < 0 ? -ENOMEM : 0;
    return cv_json_add(o, key, json_object_new_string(s));
}

static json_object *journal_doc(const struct cvd_restore_journal *j)
{
    json_object *o = json_object_new_object();

    if (o && (add_string(o, "backup", j->backup) < 0 ||
              add_string(o, "secret", j->secret) < 0 ||
              add_string(o, "class", j->class_name) < 0 ||
              add_string(o, "uuid", j->uuid) < 0)) {
        json_object_put(o);
        o = NULL;
    }
    return o;
}

int cvd_restore_journal_write(struct cvd *d, const char *name,
                              const struct cvd_restore_journal *j)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    json_object *o = journal_doc(j);
    const char *text;
    int fd = -1, r = o ? make_dir(d) : -ENOMEM;

    if (r == 0)
        r = journal_path(d, name, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (r == 0 && (fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                             0600)) < 0)
        r = -errno;
    if (r == 0) {
        text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        r = cv_pwrite_all(fd, text, strlen(text), 0);
    }
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (fd >= 0)
        close(fd);
    if (r == 0)
        r = cvd_rename_file(tmp, path, 0);
    if (r < 0 && fd >= 0)
        unlink(tmp);
    json_object_put(o);
    return r < 0 ? cv_error(r, "volume %s: writing its restore journal: %s",
                            name, strerror(-r)) : 0;
}

static int copy_member(json_object *o, const char *key, char *buf,
                       size_t len, int nullable)
{
    json_object *v = NULL;
    const char *s = cv_json_string(o, key);

    if (!s && nullable && json_object_object_get_ex(o, key, &v) && !v) {
        buf[0] = '\0';
        return 0;
    }
    if (!s || strlen(s) >= len)
        return -EINVAL;
    snprintf(buf, len, "%s", s);
    return 0;
}

int cvd_restore_journal_read(struct cvd *d, const char *name,
                             struct cvd_restore_journal *j)
{
    char path[PATH_MAX];
    json_object *o = NULL;
    int r = journal_path(d, name, path, sizeof path);

    memset(j, 0, sizeof *j);
    if (r < 0)
        return r;
    if (access(path, F_OK) < 0)
        return errno == ENOENT ? -ENOENT :
               cv_error(-errno, "volume %s: its restore journal: %s", name,
                        strerror(errno));
    o = json_object_from_file(path);
    if (!o || copy_member(o, "backup", j->backup, sizeof j->backup, 0) ||
        copy_member(o, "secret", j->secret, sizeof j->secret, 1) ||
        copy_member(o, "class", j->class_name, sizeof j->class_name, 1) ||
        copy_member(o, "uuid", j->uuid, sizeof j->uuid, 0))
        r = cv_error(-EBADMSG, "volume %s: its restore journal %s does not "
                     "parse", name, path);
    json_object_put(o);
    return r;
}

int cvd_restore_journal_remove(struct cvd *d, const char *name)
{
    char path[PATH_MAX];
    int r = journal_path(d, name, path, sizeof path);

    if (r == 0)
        r = cvd_remove_file(path);
    if (r == -ENOENT)
        return 0;
    return r < 0 ? cv_error(r, "volume %s: removing its restore journal: %s",
                            name, strerror(-r)) : 0;
}

/* --- The job ----------------------------------------------------------- */

void cvd_restore_free(void *arg)
{
    struct cvd_restore *rs = arg;

    if (!rs)
        return;
    if (rs->lock_fd >= 0)
        cvd_target_unlock(rs->lock_fd);
    cvd_target_close(rs->t);
    cvd_manifest_free(&rs->m);
    free(rs);
}

static int is_held(const struct cvd_manifest_block *b, unsigned i)
{
    return b->held[i / 8] >> (i % 8) & 1;
}

/* [off, off + len) of the raw image: the header part through the chain's
 * store (its header file), the data part as whole blocks of the head. */
static int put_run(struct cv_chain *c, const unsigned char *buf, uint64_t off,
                   uint64_t len)
{
    uint64_t data = cv_chain_data_offset(c), low = 0;
    int r = 0;

    if (off < data) {
        low = data - off < len ? data - off : len;
        r = cv_backend_pwrite(cv_chain_backend(c), buf, low, off, 0);
    }
    if (r == 0 && low < len)
        r = cv_chain_write(c, buf + low, len - low, off + low, 0);
    return r;
}

/* The held sectors of b, in runs. */
static int put_block(struct cv_chain *c, const struct cvd_manifest_block *b,
                     const unsigned char *buf)
{
    unsigned n = (b->len + CV_CHAIN_BLOCK - 1) / CV_CHAIN_BLOCK, i = 0, end;
    int r = 0;

    while (r == 0 && i < n) {
        uint64_t from, to;

        if (!is_held(b, i)) {
            i++;
            continue;
        }
        for (end = i; end < n && is_held(b, end); end++)
            ;
        from = (uint64_t)i * CV_CHAIN_BLOCK;
        to = (uint64_t)end * CV_CHAIN_BLOCK;
        if (to > b->len)
            to = b->len;
        r = put_run(c, buf + from, b->offset + from, to - from);
        i = end;
    }
    return r;
}

static uint64_t held_bytes(const struct cvd_manifest_block *b)
{
    unsigned n = (b->len + CV_CHAIN_BLOCK - 1) / CV_CHAIN_BLOCK, i;
    uint64_t bytes = 0;

    for (i = 0; i < n; i++)
        if (is_held(b, i))
            bytes += i + 1 < n ? CV_CHAIN_BLOCK :
                     b->len - (uint64_t)i * CV_CHAIN_BLOCK;
    return bytes;
}

/* The block, checked (its size and its SHA-256), then written. */
static int restore_block(struct cvd_restore *rs, struct cv_chain *c,
                         const struct cvd_manifest_block *b,
                         unsigned char *buf)
{
    int r = cvd_backup_block_get(rs->t, rs->m.info.id, b, buf);

    if (r == 0 && (r = put_block(c, b, buf)) < 0)
        r = cv_error_prefix(r, "volume %s: writing the block at offset %llu",
                            rs->name, (unsigned long long)b->offset);
    return r;
}

static void pause_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000,
                           .tv_nsec = (long)(ms % 1000) * 1000000L };

    while (ms && nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int fill_chain(struct cvd_restore *rs, struct cvd_job *job)
{
    struct cv_chain *c = NULL;
    unsigned char *buf = malloc(CVD_BACKUP_BLOCK);
    uint64_t done = 0;
    size_t i;
    int r = buf ? 0 : cv_error(-ENOMEM, "volume %s: out of memory", rs->name);

    if (r == 0)
        r = cv_chain_open(rs->chain, NULL, 0, &c);
    if (r < 0)
        r = cvd_store_hide_path(r, rs->chain);
    for (i = 0; r == 0 && i < rs->m.nblocks; i++) {
        pause_ms(rs->delay_ms);
        r = restore_block(rs, c, &rs->m.blocks[i], buf);
        done += held_bytes(&rs->m.blocks[i]);
        if (r == 0)
            r = cvd_job_progress(job, done);
    }
    if (r == 0)
        r = cv_chain_flush(c);
    cv_chain_close(c);
    free(buf);
    return r;
}

/* The chain in place, then the record ready: from then on it is served. */
static int publish(struct cvd *d, struct cvd_restore *rs, int *placed)
{
    struct cvd_volume_rec v;
    int r = cvd_rename_file(rs->chain, rs->final, 1);

    if (r == -EEXIST)
        r = cv_error(-EEXIST, "volume %s: %s already exists with no volume "
                     "record (left over? move it away)", rs->name, rs->final);
    else if (r < 0)
        r = cv_error(r, "volume %s: putting its chain in place: %s",
                     rs->name, strerror(-r));
    *placed = r == 0;
    if (r == 0)
        r = d->meta->ops->volume_get(d->meta, rs->name, &v);
    if (r == 0) {
        snprintf(v.state, sizeof v.state, CVD_VOL_READY);
        r = d->meta->ops->volume_update(d->meta, &v, CVD_VOL_RESTORING);
    }
    return r;
}

/* A failure: nothing of the restore is left (the job's error says why);
 * a stop of the daemon (-ECANCELED) leaves the record and the journal
 * for the next start, which does it again. */
static void undo(struct cvd *d, struct cvd_restore *rs, int r, int placed)
{
    char first[CVD_ERROR_MAX];

    snprintf(first, sizeof first, "%s", cv_last_error());
    if (placed)
        cvd_store_remove(rs->final);
    cvd_store_remove(rs->chain);
    if (r == -ECANCELED && !placed) {
        cvd_info("volume %s: restore of backup %s stopped with the daemon; "
                 "the next start does it again", rs->name, rs->m.info.id);
        cv_error(r, "%s", first);
        return;
    }
    cvd_undo(first, cvd_space_volume_remove(d, rs->name));
    cvd_undo(first, cvd_restore_journal_remove(d, rs->name));
}

/* The outcome, as the admin API records the request (object
 * "backup/ID", detail "volume NAME: ..."): the job's own event. */
static void audit_outcome(struct cvd *d, const struct cvd_restore *rs, int ok)
{
    char object[CVD_BACKUP_ID_MAX + 8];

    snprintf(object, sizeof object, "backup/%s", rs->m.info.id);
    cvd_audit(d->audit, "cryptvold", "backup.restore", object, ok,
              "volume %s: %s", rs->name, ok ? "restored" : cv_last_error());
}

int cvd_restore_run(struct cvd *d, struct cvd_job *job, void *arg)
{
    struct cvd_restore *rs = arg;
    int placed = 0;
    int r = fill_chain(rs, job);

    if (r == 0)
        r = publish(d, rs, &placed);
    if (r == 0) {
        if (cvd_restore_journal_remove(d, rs->name) < 0)
            cvd_warn("%s", cv_last_error());
        cvd_info("volume %s: restored from backup %s (%llu bytes written)",
                 rs->name, rs->m.info.id,
                 (unsigned long long)rs->m.info.bytes_held);
        audit_outcome(d, rs, 1);
        return 0;
    }
    undo(d, rs, r, placed);
    /* job_main logs the failure */
    if (r != -ECANCELED)
        audit_outcome(d, rs, 0);
    return r;
}

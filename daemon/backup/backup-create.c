/* Backup create: a snapshot's ciphertext and the volume's LUKS header into
 * the target's content-addressed blocks, listed by a manifest that the
 * volume key authenticates (docs/backup.md).
 *
 * The request (cvd_backup_create) checks the volume, takes the target's
 * shared lock (a delete's collect cannot remove a block this backup put
 * before its manifest names it), makes or finds the snapshot, opens its
 * read-only view and writes the manifest InProgress; then a job
 * (CVD_JOB_BACKUP, target: the backup's id) does the rest:
 *   - the MAC key, from the volume key of the view's header;
 *   - the base: the newest Completed backup of this volume (same LUKS UUID
 *     and cluster) whose snapshot is still in the chain, below or at this
 *     one;
 *   - the header, [0, data offset), read whole under header_lock, as
 *     blocks with every sector held;
 *   - each data block: with a base, one that no layer above the base's
 *     snapshot layer (up to this snapshot's) holds a sector of is the
 *     base's entry as it was; every other is read, its held sectors noted
 *     from the chain's runs, hashed and put (put skips a block the target
 *     has);
 *   - the manifest Completed, with its MAC.
 * A failure (the target full, I/O, the daemon stopping) writes the
 * manifest Failed with the message and no blocks: the blocks it put are
 * left to the collect of the next delete. */
#include "backup.h"
#include "backups-internal.h"
#include "daemon.h"
#include "core/error.h"
#include "core/secmem.h"
#include "core/workers.h"
#include "export/export.h"
#include "log.h"
#include "meta/meta.h"
#include "store/backend.h"
#include "store/chain.h"
#include "target.h"
#include "volumes/jobs.h"
#include "volumes/snapshots.h"
#include "volumes/volumes.h"
#include "volumes/volumes-util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Blocks read before they are hashed and put at once, on the job's own
 * threads (each put syncs its file: in parallel the syncs overlap; the
 * daemon's crypto pool is left to the data path). */
#define BATCH 8

struct bk_job {
    struct cvd_target *t;
    struct cvd_export *view;        /* "VOL@SNAP", held as a store */
    int lock_fd;                    /* the target's shared lock */
    unsigned delay_ms;              /* backup-delay-ms */
    struct cvd_manifest m;          /* info; the job adds the blocks */
    size_t cap;                     /* of m.blocks */
    unsigned char *mac_key;         /* CVD_BACKUP_MAC_KEY, locked */
    struct cvd_manifest base;       /* nblocks 0 and info.id "": none */
    int base_layer;                 /* index in layers; -1 none */
    struct cv_chain_layer_info *layers;
    size_t nlayers;
    uint64_t done;                  /* bytes read */
    struct cv_workers *pool;        /* BATCH - 1 threads */
};

static void job_free(void *arg)
{
    struct bk_job *b = arg;

    if (!b)
        return;
    if (b->lock_fd >= 0)
        cvd_target_unlock(b->lock_fd);
    if (b->view)
        cvd_export_put_store(b->view);
    cvd_manifest_free(&b->m);
    cvd_manifest_free(&b->base);
    cv_secmem_free(b->mac_key, CVD_BACKUP_MAC_KEY);
    cv_workers_free(b->pool);
    free(b->layers);
    free(b);
}

static int add_block(struct bk_job *b, const struct cvd_manifest_block *blk)
{
    if (b->m.nblocks == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        void *p = realloc(b->m.blocks, cap * sizeof *b->m.blocks);

        if (!p)
            return cv_error(-ENOMEM, "backup %s: out of memory", b->m.info.id);
        b->m.blocks = p;
        b->cap = cap;
    }
    b->m.blocks[b->m.nblocks++] = *blk;
    return 0;
}

/* The bytes of blk's held sectors (what a restore writes). */
static uint64_t held_bytes(const struct cvd_manifest_block *blk)
{
    uint64_t n = 0;

    for (uint32_t s = 0; (uint64_t)s * CV_CHAIN_BLOCK < blk->len; s++) {
        uint64_t at = (uint64_t)s * CV_CHAIN_BLOCK;

        if (blk->held[s / 8] & (1u << (s % 8)))
            n += blk->len - at < CV_CHAIN_BLOCK ? blk->len - at
                                                : CV_CHAIN_BLOCK;
    }
    return n;
}

/* --- The MAC key and the base ------------------------------------------- */

/* The volume key of the view's header (format 0), as the registry would
 * unlock it: its secret or its KEK token. */
static int make_mac_key(struct cvd *d, struct bk_job *b)
{
    struct cvd_volume_keys keys = { 0 };
    struct cv_chain *c = cvd_export_chain(b->view);
    int r;

    b->mac_key = cv_secmem_alloc(CVD_BACKUP_MAC_KEY);
    if (!b->mac_key)
        return cv_error(-ENOMEM, "backup %s: out of locked memory",
                        b->m.info.id);
    if (cvd_backups_mac_key_find(d, b->m.info.uuid, b->mac_key))
        return 0;
    r = cvd_volumes_unlock(d, b->m.info.volume, c, &keys);
    if (r == 0 && strcmp(keys.k[0].info.uuid, b->m.info.uuid))
        r = cv_error(-EINVAL, "volume %s: its header's UUID %s is not its "
                     "record's (%s)", b->m.info.volume, keys.k[0].info.uuid,
                     b->m.info.uuid);
    if (r == 0)
        r = cvd_backup_mac_key(keys.k[0].key, keys.k[0].keylen,
                               b->m.info.uuid, b->mac_key);
    if (r == 0)
        cvd_backups_mac_key_keep(d, b->m.info.uuid, b->mac_key);
    cvd_volume_keys_free(&keys);
    return r;
}

/* The index of the view's own layer of snapshot name, READY and made no
 * later than the base backup (a snapshot deleted and made again under the
 * same name is another one); -1 if none. */
static int snapshot_index(const struct bk_job *b, const char *name,
                          int64_t made_before)
{
    for (size_t i = 0; i < b->nlayers; i++) {
        const struct cv_chain_layer_info *l = &b->layers[i];

        if (l->own && l->state == CV_LAYER_READY && !strcmp(l->snapshot, name))
            return l->created <= made_before ? (int)i : -1;
    }
    return -1;
}

/* A candidate base: Completed, of this volume's header and cluster, with
 * the same block geometry and its snapshot still in the chain: the index
 * of that snapshot's layer, else -1. */
static int base_index(const struct bk_job *b, const struct cvd_backup_info *c)
{
    const struct cvd_backup_info *me = &b->m.info;

    if (c->state != CVD_BACKUP_COMPLETED || strcmp(c->uuid, me->uuid) ||
        strcmp(c->cluster, me->cluster) || c->data_offset != me->data_offset ||
        !strcmp(c->id, me->id))
        return -1;
    return snapshot_index(b, c->snapshot, c->created);
}

/* Its manifest must authenticate with our key (a manifest of another
 * volume key, or changed, is never a base). */
static int try_base(struct bk_job *b, const struct cvd_backup_info *c, int idx)
{
    int r = cvd_manifest_read(b->t, c->id, b->mac_key, &b->base);

    if (r < 0) {
        cvd_warn("backup %s: %s; not using it as the base", b->m.info.id,
                 cv_last_error());
        cv_clear_error();
        cvd_manifest_free(&b->base);
        memset(&b->base, 0, sizeof b->base);
        return 0;
    }
    b->base_layer = idx;
    return 1;
}

/* The base is the candidate whose snapshot is the newest in the chain:
 * the layers' order, not the manifests' created times, which are whole
 * seconds (two backups of one second would tie). */
static int find_base(struct bk_job *b)
{
    struct cvd_backup_info *all = NULL;
    size_t n = 0, i, best;
    int *idx = NULL, r = cv_chain_layers(cvd_export_chain(b->view),
                                         &b->layers, &b->nlayers);

    b->base_layer = -1;
    if (r == 0)
        r = cvd_manifest_list(b->t, b->m.info.volume, &all, &n);
    if (r == 0 && n && !(idx = calloc(n, sizeof *idx)))
        r = cv_error(-ENOMEM, "backup %s: out of memory", b->m.info.id);
    for (i = 0; r == 0 && i < n; i++)
        idx[i] = base_index(b, &all[i]);
    for (;;) {
        for (best = n, i = 0; r == 0 && i < n; i++)
            if (idx[i] >= 0 && (best == n || idx[i] > idx[best]))
                best = i;
        if (r < 0 || best == n || try_base(b, &all[best], idx[best]))
            break;
        idx[best] = -1;
    }
    free(idx);
    free(all);
    if (r == 0 && b->base_layer >= 0) {
        snprintf(b->m.info.base, sizeof b->m.info.base, "%s",
                 b->base.info.id);
        cvd_info("backup %s of volume %s: incremental to %s (snapshot %s)",
                 b->m.info.id, b->m.info.volume, b->base.info.id,
                 b->base.info.snapshot);
    }
    return r;
}

/* --- What each data block needs ----------------------------------------- */

/* Read it; the base's entry (or nothing, where the base held nothing);
 * nothing (no layer of the view holds a sector of it). */
enum block_plan { PLAN_READ, PLAN_BASE, PLAN_HOLE };

/* 1 if no layer of the view holds a sector of [off, off+len): a sparse
 * volume's unwritten blocks are neither read nor listed. */
static int all_hole(struct bk_job *b, uint64_t off, uint64_t len)
{
    uint64_t run = 0;
    int fmt = 0;
    int r = cv_chain_lookup(cvd_export_chain(b->view), off, len,
                            CV_CHAIN_TOP, &run, &fmt);

    if (r < 0 && r != CV_CHAIN_HOLE)
        return r;
    return r == CV_CHAIN_HOLE && run >= len;
}

/* 1 if a layer above the base's, up to the view's top, holds a sector of
 * [off, off+len) (whole sectors). */
static int changed_since_base(struct bk_job *b, uint64_t off, uint64_t len)
{
    struct cv_chain *c = cvd_export_chain(b->view);

    for (size_t i = (size_t)b->base_layer + 1; i < b->nlayers; i++) {
        uint64_t run = 0;
        int r = cv_chain_layer_has(c, b->layers[i].id, off, len, &run);

        if (r < 0)
            return r;
        if (r > 0 || run < len)
            return 1;
    }
    return 0;
}

/* PLAN_BASE when the base holds this block as it is now: the base covered
 * all of it, and nothing above the base's layer wrote into it.  A tail
 * shorter than a sector is always read. */
static int plan_block(struct bk_job *b, uint64_t off, uint64_t len)
{
    int r;

    if (len % CV_CHAIN_BLOCK)
        return PLAN_READ;
    r = all_hole(b, off, len);
    if (r != 0)
        return r < 0 ? r : PLAN_HOLE;
    if (b->base_layer < 0 || off + len > b->base.info.raw_size)
        return PLAN_READ;
    r = changed_since_base(b, off, len);
    return r < 0 ? r : r ? PLAN_READ : PLAN_BASE;
}

/* The base's entry at off (ascending: *pos moves on), or NULL if the base
 * held nothing there. */
static const struct cvd_manifest_block *base_entry(const struct bk_job *b,
                                                   uint64_t off, size_t *pos)
{
    const struct cvd_manifest *m = &b->base;

    while (*pos < m->nblocks && m->blocks[*pos].offset < off)
        (*pos)++;
    return *pos < m->nblocks && m->blocks[*pos].offset == off ?
           &m->blocks[*pos] : NULL;
}

/* --- Reading, hashing, putting ------------------------------------------ */

struct slot {
    struct cvd_manifest_block blk;
    char *buf;
    int read;                       /* else copied from the base */
    int keep;                       /* has a held sector */
    int stored;
    int r;
    char msg[CVD_ERROR_MAX];
};

struct batch {
    struct bk_job *b;
    struct slot s[BATCH];
    unsigned n;
};

struct held_arg {
    uint8_t *held;
};

static int note_held(void *arg, size_t buf_off, size_t len, int format)
{
    struct held_arg *h = arg;

    if (format == CV_CHAIN_HOLE)
        return 0;
    for (size_t s = buf_off / CV_CHAIN_BLOCK;
         s < (buf_off + len) / CV_CHAIN_BLOCK; s++)
        h->held[s / 8] |= (uint8_t)(1u << (s % 8));
    return 0;
}

/* The view's bytes of the block, holes as zeros, and which sectors it
 * holds.  A tail shorter than a sector (a volume of 512-byte sectors) is
 * read through the byte view and counted held. */
static int read_data(struct cv_chain *c, struct slot *s)
{
    uint32_t whole = s->blk.len / CV_CHAIN_BLOCK * CV_CHAIN_BLOCK;
    struct held_arg h = { s->blk.held };
    int r = 0;

    memset(s->blk.held, 0, sizeof s->blk.held);
    if (whole)
        r = cv_chain_read(c, s->buf, whole, s->blk.offset, CV_CHAIN_TOP,
                          note_held, &h);
    if (r == 0 && s->blk.len > whole) {
        r = cv_backend_pread(cv_chain_backend(c), s->buf + whole,
                             s->blk.len - whole, s->blk.offset + whole);
        note_held(&h, whole, CV_CHAIN_BLOCK, 0);
    }
    for (size_t i = 0; r == 0 && i < sizeof s->blk.held; i++)
        if (s->blk.held[i])
            s->keep = 1;
    return r;
}

/* On a worker thread: the block's checksum, then the target has it. */
static void hash_put(void *arg, unsigned part)
{
    struct batch *bt = arg;
    struct slot *s = &bt->s[part];

    if (!s->read || !s->keep)
        return;
    s->r = cvd_target_sha256(s->buf, s->blk.len, s->blk.sha256);
    if (s->r == 0)
        s->r = cvd_target_block_put(bt->b->t, s->blk.sha256, s->buf,
                                    s->blk.len, &s->stored);
    if (s->r < 0)
        snprintf(s->msg, sizeof s->msg, "%s", cv_last_error());
}

/* The batch's blocks into the manifest, in order; the first failure's
 * message is the job's. */
static int finish_batch(struct batch *bt)
{
    struct bk_job *b = bt->b;
    unsigned reads = 0;
    int r = 0;

    for (unsigned i = 0; i < bt->n; i++)
        reads += bt->s[i].read && bt->s[i].keep;
    /* An incremental's unchanged blocks are the base's entries: a batch of
     * only those is not worth waking the threads for (a 1 GiB volume has
     * 128 such batches). */
    if (reads)
        cv_workers_run(b->pool, bt->n, hash_put, bt);
    for (unsigned i = 0; r == 0 && i < bt->n; i++) {
        struct slot *s = &bt->s[i];

        if (s->r < 0)
            r = cv_error(s->r, "%s", s->msg);
        else if (s->keep)
            r = add_block(b, &s->blk);
        if (r == 0 && s->keep)
            b->m.info.bytes_held += held_bytes(&s->blk);
        if (r == 0 && s->stored)
            b->m.info.bytes_new += s->blk.len;
    }
    bt->n = 0;
    return r;
}

static int step(struct cvd_job *job, struct bk_job *b, uint64_t bytes)
{
    b->done += bytes;
    if (b->delay_ms)
        usleep(b->delay_ms * 1000u);
    return cvd_job_progress(job, b->done);
}

/* The header, read whole under header_lock (a rekey writes it there), as
 * blocks whose every sector is held. */
static int put_header(struct cvd *d, struct cvd_job *job, struct bk_job *b,
                      struct batch *bt)
{
    uint64_t len = b->m.info.data_offset, off;
    char *hdr = malloc(len ? len : 1);
    int r = hdr ? 0 : cv_error(-ENOMEM, "backup %s: out of memory",
                               b->m.info.id);

    if (r == 0) {
        pthread_mutex_lock(&d->header_lock);
        r = cv_backend_pread(cv_chain_backend(cvd_export_chain(b->view)), hdr,
                             len, 0);
        pthread_mutex_unlock(&d->header_lock);
        if (r < 0)
            cv_error_prefix(r, "backup %s: reading the header of volume %s",
                            b->m.info.id, b->m.info.volume);
    }
    for (off = 0; r == 0 && off < len; off += CVD_BACKUP_BLOCK) {
        struct slot *s = &bt->s[bt->n++];

        memset(&s->blk, 0, sizeof s->blk);
        s->blk.offset = off;
        s->blk.len = (uint32_t)(len - off < CVD_BACKUP_BLOCK ? len - off :
                                CVD_BACKUP_BLOCK);
        memset(s->blk.held, 0xff, sizeof s->blk.held);
        memcpy(s->buf, hdr + off, s->blk.len);
        s->read = s->keep = 1;
        s->stored = s->r = 0;
        if (bt->n == BATCH || off + s->blk.len >= len)
            r = finish_batch(bt);
        if (r == 0)
            r = step(job, b, s->blk.len);
    }
    free(hdr);
    return r;
}

/* The data blocks [data offset, raw size), each read or the base's. */
static int put_data(struct cvd_job *job, struct bk_job *b, struct batch *bt)
{
    struct cv_chain *c = cvd_export_chain(b->view);
    uint64_t end = b->m.info.raw_size, off;
    size_t pos = 0;
    int r = 0;

    for (off = b->m.info.data_offset; r == 0 && off < end;
         off += CVD_BACKUP_BLOCK) {
        uint64_t len = end - off < CVD_BACKUP_BLOCK ? end - off :
                       CVD_BACKUP_BLOCK;
        int plan = plan_block(b, off, len);
        struct slot *s = &bt->s[bt->n];

        if (plan < 0) {
            r = plan;
            break;
        }
        if (plan == PLAN_HOLE)
            continue;
        memset(&s->blk, 0, sizeof s->blk);
        s->blk.offset = off;
        s->blk.len = (uint32_t)len;
        s->stored = s->r = s->keep = 0;
        s->read = plan == PLAN_READ;
        if (!s->read) {
            const struct cvd_manifest_block *e = base_entry(b, off, &pos);

            if (e && e->len == len) {
                s->blk = *e;
                s->keep = 1;
            }
        } else {
            r = read_data(c, s);
        }
        if (r == 0)
            bt->n++;
        if (r == 0 && (bt->n == BATCH || off + len >= end))
            r = finish_batch(bt);
        if (r == 0 && s->read)
            r = step(job, b, len);
    }
    if (r == 0 && bt->n)
        r = finish_batch(bt);
    return r;
}

/* What the job reads: the header and every block the plan does not take
 * from the base. */
static int count_reads(struct bk_job *b, uint64_t *total)
{
    uint64_t end = b->m.info.raw_size, off;

    *total = b->m.info.data_offset;
    for (off = b->m.info.data_offset; off < end; off += CVD_BACKUP_BLOCK) {
        uint64_t len = end - off < CVD_BACKUP_BLOCK ? end - off :
                       CVD_BACKUP_BLOCK;
        int plan = plan_block(b, off, len);

        if (plan < 0)
            return plan;
        if (plan == PLAN_READ)
            *total += len;
    }
    return 0;
}

static int batch_alloc(struct batch *bt, struct bk_job *b)
{
    memset(bt, 0, sizeof *bt);
    bt->b = b;
    for (unsigned i = 0; i < BATCH; i++)
        if (!(bt->s[i].buf = malloc(CVD_BACKUP_BLOCK)))
            return cv_error(-ENOMEM, "backup %s: out of memory",
                            b->m.info.id);
    return 0;
}

static void batch_free(struct batch *bt)
{
    for (unsigned i = 0; i < BATCH; i++)
        free(bt->s[i].buf);
}

/* The failure r (its message the last) into the manifest: Failed, no
 * blocks (what it put is collected by the next delete).  If even that
 * write fails, the manifest stays InProgress; this daemon answers Failed
 * from the job until its next start marks it. */
static int record_failure(struct bk_job *b, int r)
{
    char msg[CVD_ERROR_MAX];

    snprintf(msg, sizeof msg, "%s", cv_last_error());
    b->m.info.state = CVD_BACKUP_FAILED;
    b->m.info.finished = (int64_t)time(NULL);
    snprintf(b->m.info.error, sizeof b->m.info.error, "%s", msg);
    b->m.nblocks = 0;
    b->m.info.blocks = 0;
    if (cvd_manifest_write(b->t, &b->m, NULL) < 0)
        cvd_err("backup %s: marking it Failed: %s", b->m.info.id,
                cv_last_error());
    return cv_error(r, "%s", msg);
}

static int backup_run(struct cvd *d, struct cvd_job *job, void *arg)
{
    struct bk_job *b = arg;
    struct batch bt;
    uint64_t total = 0;
    int r = batch_alloc(&bt, b);

    if (r == 0)
        r = cv_workers_new(BATCH - 1, &b->pool);
    if (r == 0)
        r = make_mac_key(d, b);
    if (r == 0)
        r = find_base(b);
    if (r == 0)
        r = count_reads(b, &total);
    if (r == 0) {
        cvd_job_set_total(job, total);
        r = put_header(d, job, b, &bt);
    }
    if (r == 0)
        r = put_data(job, b, &bt);
    batch_free(&bt);
    if (r == 0) {
        b->m.info.state = CVD_BACKUP_COMPLETED;
        b->m.info.finished = (int64_t)time(NULL);
        b->m.info.blocks = b->m.nblocks;
        r = cvd_manifest_write(b->t, &b->m, b->mac_key);
    }
    if (r < 0)
        return record_failure(b, r);
    cvd_info("backup %s of volume %s (snapshot %s) Completed: %llu bytes "
             "held, %llu new", b->m.info.id, b->m.info.volume,
             b->m.info.snapshot, (unsigned long long)b->m.info.bytes_held,
             (unsigned long long)b->m.info.bytes_new);
    return 0;
}

/* --- The request -------------------------------------------------------- */

/* A volume that can be backed up: encrypted, Available, not a clone with
 * its own format (one header cannot open its parent's blocks), no job. */
static int check_volume(struct cvd *d, const char *volume,
                        struct cvd_volume_rec *v)
{
    struct cvd_export *e = NULL;
    int r = cvd_volume_get(d, volume, v);

    if (r < 0)
        return r;
    if (!strcmp(v->type, "plaintext"))
        return cv_error(-EINVAL, "volume %s: a plaintext volume (a benchmark "
                        "comparison) cannot be backed up: backups hold "
                        "ciphertext only", volume);
    if (!cvd_state_served(v->state))
        return cvd_state_error(v);
    r = cvd_store_get(d, volume, 0, &e);
    if (r == 0 && cv_chain_formats(cvd_export_chain(e)) > 1)
        r = cv_error(-EINVAL, "volume %s: a clone with its own format cannot "
                     "be backed up: flatten it first", volume);
    cvd_export_put_store(e);
    if (r == 0)
        r = cvd_job_check_idle(d, volume);
    return r;
}

static int open_view(struct cvd *d, const char *volume, const char *snap,
                     struct cvd_export **out)
{
    char full[2 * CVD_NAME_MAX + 2];
    int r;

    snprintf(full, sizeof full, "%s@%s", volume, snap);
    r = cvd_store_get(d, full, 0, out);
    if (r == -ENOENT)
        r = cv_error(-ENOENT, "volume %s: no snapshot \"%s\"", volume, snap);
    return r;
}

/* The manifest's info: the record's header facts, the view's size. */
static void fill_info(struct cvd *d, const struct cvd_volume_rec *v,
                      struct bk_job *b, const char *id, const char *snap)
{
    struct cvd_backup_info *i = &b->m.info;
    struct cv_chain *c = cvd_export_chain(b->view);
    uint64_t doff = cv_chain_data_offset(c), raw = cv_chain_size(c);
    unsigned ss = v->sector_size ? v->sector_size : 512;
    uint64_t size = raw > doff ? (raw - doff) / ss * ss : 0;

    memset(i, 0, sizeof *i);
    snprintf(i->id, sizeof i->id, "%s", id);
    snprintf(i->volume, sizeof i->volume, "%s", v->name);
    snprintf(i->snapshot, sizeof i->snapshot, "%s", snap);
    snprintf(i->uuid, sizeof i->uuid, "%s", v->uuid);
    cvd_backups_cluster(d, i->cluster, sizeof i->cluster);
    snprintf(i->node, sizeof i->node, "%s",
             d->cfg.node_name ? d->cfg.node_name : "");
    snprintf(i->secret, sizeof i->secret, "%s", v->secret);
    i->kek_gen = v->kek_gen;
    snprintf(i->type, sizeof i->type, "%s", v->type);
    snprintf(i->cipher, sizeof i->cipher, "%s", v->cipher);
    i->key_bits = v->key_bits;
    i->sector_size = v->sector_size;
    /* A volume grown since the snapshot: the snapshot's size; one being
     * grown now: the record's, which is what is served. */
    i->size = size < v->size ? size : v->size;
    i->data_offset = doff;
    i->raw_size = doff + i->size;
    i->created = (int64_t)time(NULL);
    i->state = CVD_BACKUP_IN_PROGRESS;
}

/* The snapshot (made now if not given), its view, the manifest
 * InProgress. */
static int prepare(struct cvd *d, const struct cvd_volume_rec *v,
                   const char *snapshot, struct bk_job *b, int *made)
{
    char id[CVD_BACKUP_ID_MAX + 1], snap[CVD_NAME_MAX + 1];
    int r = cvd_target_new_id(b->t, id);

    if (r < 0)
        return r;
    snprintf(snap, sizeof snap, "%s", snapshot ? snapshot : "");
    if (!snapshot) {
        snprintf(snap, sizeof snap, "backup-%s", id + 3);
        r = cvd_snapshot_create(d, v->name, snap, NULL);
        *made = r == 0;
    }
    if (r == 0)
        r = open_view(d, v->name, snap, &b->view);
    if (r == 0) {
        fill_info(d, v, b, id, snap);
        r = cvd_manifest_write(b->t, &b->m, NULL);
    }
    if (r < 0) {
        char first[CVD_ERROR_MAX];

        snprintf(first, sizeof first, "%s", cv_last_error());
        /* The empty file cvd_target_new_id made, or ours; the snapshot
         * made for it (its delete is a merge job). */
        cvd_undo(first, cvd_manifest_remove(b->t, id));
        if (*made)
            cvd_undo(first, cvd_snapshot_delete(d, v->name, snap));
        *made = 0;
    }
    return r;
}

int cvd_backup_create(struct cvd *d, const char *volume, const char *snapshot,
                      struct cvd_backup_info *out)
{
    struct cvd_volume_rec v;
    struct cvd_backup_info info;
    struct cvd_target *t = NULL;
    struct bk_job *b = NULL;
    int made = 0, r = cvd_backups_target(d, &t);

    if (r == 0)
        r = cvd_check_name("volume", volume);
    if (r == 0 && snapshot)
        r = cvd_check_name("snapshot", snapshot);
    if (r == 0)
        r = check_volume(d, volume, &v);
    if (r == 0 && !(b = calloc(1, sizeof *b)))
        r = cv_error(-ENOMEM, "volume %s: out of memory", volume);
    if (r < 0)
        return r;
    b->t = t;
    b->lock_fd = -1;
    b->delay_ms = d->cfg.backup_delay_ms;
    r = cvd_target_lock(t, CVD_TARGET_SHARED, CVD_BACKUP_LOCK_WAIT_MS,
                        &b->lock_fd);
    if (r == 0)
        r = prepare(d, &v, snapshot, b, &made);
    if (r < 0) {
        job_free(b);
        return r;
    }
    info = b->m.info;
    r = cvd_job_start(d, volume, CVD_JOB_BACKUP, info.id,
                      info.raw_size, backup_run, b, job_free);
    /* b is the job's now, freed also when it could not start. */
    if (r < 0) {
        char first[CVD_ERROR_MAX];
        struct cvd_manifest m = { .info = info };

        snprintf(first, sizeof first, "%s", cv_last_error());
        m.info.state = CVD_BACKUP_FAILED;
        m.info.finished = (int64_t)time(NULL);
        snprintf(m.info.error, sizeof m.info.error, "%s", first);
        cvd_undo(first, cvd_manifest_write(t, &m, NULL));
        return r;
    }
    cvd_info("volume %s: backup %s of snapshot %s started%s", volume,
             info.id, info.snapshot, made ? " (snapshot made for it)" : "");
    if (out)
        *out = info;
    return 0;
}

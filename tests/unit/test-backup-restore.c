/* Restore of a backup into a new volume (daemon/backup/backup-restore.c,
 * restore-job.c, backup-header.c) on a real data directory and a real
 * target directory, with the daemon's volume code and jobs.  The backups
 * are made here, by hand, with target.h (what a backup create stores:
 * the header and the held blocks of a volume's chain, a manifest and its
 * MAC), so that the restore is tested on its own. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit/audit.h"
#include "backup/backup.h"
#include "backup/target.h"
#include "core/error.h"
#include "core/secmem.h"
#include "daemon.h"
#include "export/export.h"
#include "keys/cluster-kek.h"
#include "keys/keyring.h"
#include "luks/luks.h"
#include "meta/meta.h"
#include "store/backend.h"
#include "store/chain.h"
#include "volumes/jobs.h"
#include "volumes/volumes.h"

#define MiB (1ull << 20)
#define VOL_SIZE (4 * MiB)

struct fixture {
    char dir[256];
    char target[300];
    struct cvd d;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");

    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/cv-restore-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->target, sizeof f->target, "%s/target", f->dir);
    if (mkdir(f->target, 0700) < 0)
        return -1;
    f->d.cfg.data_dir = f->dir;
    f->d.cfg.backup_target = f->target;
    f->d.cfg.node_name = "node1";
    f->d.cfg.pbkdf = (struct cv_pbkdf){ .type = "pbkdf2", .iterations = 1000 };
    if (cvd_meta_open_sqlite(f->dir, &f->d.meta) < 0)
        return -1;
    pthread_mutex_init(&f->d.header_lock, NULL);
    pthread_mutex_init(&f->d.nbd_lock, NULL);
    if (cvd_keyring_new(&f->d, &f->d.keys) < 0 ||
        cvd_cluster_new(&f->d, &f->d.cluster) < 0 ||
        cvd_registry_new(cvd_volumes_resolve, cvd_volumes_unlock,
                         cvd_volumes_list, &f->d, NULL, &f->d.reg) < 0 ||
        cvd_jobs_new(&f->d.jobs) < 0 ||
        cvd_audit_open(f->dir, &f->d.audit) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[PATH_MAX + 16];

    cvd_jobs_free(f->d.jobs);
    cvd_audit_close(f->d.audit);
    cvd_registry_free(f->d.reg);
    cvd_cluster_free(f->d.cluster);
    cvd_keyring_free(f->d.keys);
    cvd_meta_close(f->d.meta);
    pthread_mutex_destroy(&f->d.nbd_lock);
    pthread_mutex_destroy(&f->d.header_lock);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static void path_of(struct fixture *f, const char *fmt, const char *name,
                    char *buf, size_t len)
{
    char rel[256];

    snprintf(rel, sizeof rel, fmt, name);
    snprintf(buf, len, "%s/%s", f->dir, rel);
}

/* A volume with secret `secret` (made with value pass) and data: 1 MiB of
 * a pattern at 0, one 4 KiB block at 3 MiB + 8 KiB, the rest holes. */
static void make_volume(struct fixture *f, const char *name,
                        const char *secret, const char *pass)
{
    struct cvd_volume_req req = { .name = name, .size = VOL_SIZE,
                                  .secret = secret, .luks_version = 2,
                                  .aes_bits = 256 };
    struct cvd_volume_rec v;
    struct cvd_export *e;
    unsigned char *buf = malloc(MiB);
    size_t i;

    assert_non_null(buf);
    if (pass)
        assert_int_equal(cvd_secret_create(&f->d, secret, pass,
                                           strlen(pass)), 0);
    if (cvd_volume_create(&f->d, &req, &v) < 0)
        fail_msg("volume create: %s", cv_last_error());
    for (i = 0; i < MiB; i++)
        buf[i] = (unsigned char)(i * 7 + 3);
    assert_int_equal(cvd_export_get(f->d.reg, name, &e), 0);
    assert_int_equal(cvd_export_pwrite(e, buf, MiB, 0, 0), 0);
    assert_int_equal(cvd_export_pwrite(e, buf + 100, 4096, 3 * MiB + 8192,
                                       0), 0);
    assert_int_equal(cvd_export_flush(e), 0);
    cvd_export_put(e);
    free(buf);
}

static void set_held(struct cvd_manifest_block *b, unsigned i)
{
    b->held[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* One backup block at off: which of its sectors the chain holds (the
 * header: all), its bytes (holes zero) stored in the target.  0 if it
 * holds none. */
static int backup_block(struct cvd_target *t, struct cv_chain *c,
                        uint64_t off, uint64_t raw, unsigned char *buf,
                        struct cvd_manifest_block *b)
{
    uint64_t len = raw - off < CVD_BACKUP_BLOCK ? raw - off : CVD_BACKUP_BLOCK;
    uint64_t data = cv_chain_data_offset(c), s;
    int any = 0, stored;

    memset(b, 0, sizeof *b);
    b->offset = off;
    b->len = (uint32_t)len;
    for (s = 0; s < len; s += CV_CHAIN_BLOCK) {
        uint64_t run;
        int fmt;

        if (off + s < data ||
            cv_chain_lookup(c, off + s, CV_CHAIN_BLOCK, CV_CHAIN_TOP, &run,
                            &fmt) != CV_CHAIN_HOLE) {
            set_held(b, (unsigned)(s / CV_CHAIN_BLOCK));
            any = 1;
        }
    }
    if (!any)
        return 0;
    assert_int_equal(cv_backend_pread(cv_chain_backend(c), buf, len, off), 0);
    assert_int_equal(cvd_target_sha256(buf, len, b->sha256), 0);
    assert_int_equal(cvd_target_block_put(t, b->sha256, buf, len, &stored),
                     0);
    return 1;
}

static void backup_info(const struct cvd_volume_rec *v, uint64_t raw,
                        struct cvd_backup_info *i)
{
    memset(i, 0, sizeof *i);
    snprintf(i->volume, sizeof i->volume, "%s", v->name);
    snprintf(i->snapshot, sizeof i->snapshot, "backup-test");
    snprintf(i->uuid, sizeof i->uuid, "%s", v->uuid);
    snprintf(i->node, sizeof i->node, "node1");
    snprintf(i->secret, sizeof i->secret, "%s", v->secret);
    i->kek_gen = v->kek_gen;
    snprintf(i->type, sizeof i->type, "%s", v->type);
    snprintf(i->cipher, sizeof i->cipher, "%s", v->cipher);
    i->key_bits = v->key_bits;
    i->sector_size = v->sector_size;
    i->size = v->size;
    i->data_offset = v->data_offset;
    i->raw_size = raw;
    i->created = i->finished = (int64_t)time(NULL);
    i->state = CVD_BACKUP_COMPLETED;
}

/* The MAC key, from the volume key as an attach gets it (its secret or
 * its KEK token). */
static void mac_key_of(struct fixture *f, struct cv_chain *c,
                       const struct cvd_volume_rec *v,
                       unsigned char mac[CVD_BACKUP_MAC_KEY])
{
    struct cvd_volume_keys keys;

    if (cvd_volumes_unlock(&f->d, v->name, c, &keys) < 0)
        fail_msg("unlock %s: %s", v->name, cv_last_error());
    assert_int_equal(cvd_backup_mac_key(keys.k[0].key, keys.k[0].keylen,
                                        v->uuid, mac), 0);
    cvd_volume_keys_free(&keys);
}

/* A Completed backup of volume name, as backup create would store it. */
static void make_backup(struct fixture *f, const char *name,
                        char id[CVD_BACKUP_ID_MAX + 1])
{
    struct cvd_manifest m = { 0 };
    struct cvd_volume_rec v;
    struct cvd_target *t = NULL;
    struct cv_chain *c = NULL;
    unsigned char mac[CVD_BACKUP_MAC_KEY];
    unsigned char *buf = malloc(CVD_BACKUP_BLOCK);
    char dir[PATH_MAX];
    uint64_t off, raw;

    assert_non_null(buf);
    assert_int_equal(cvd_volume_get(&f->d, name, &v), 0);
    path_of(f, "volumes/%s", name, dir, sizeof dir);
    assert_int_equal(cv_chain_open(dir, NULL, CV_CHAIN_READONLY, &c), 0);
    raw = cv_chain_size(c);
    assert_int_equal(cvd_target_open(f->target, &t), 0);
    m.blocks = calloc(raw / CVD_BACKUP_BLOCK + 1, sizeof *m.blocks);
    assert_non_null(m.blocks);
    for (off = 0; off < raw; off += CVD_BACKUP_BLOCK)
        m.nblocks += (size_t)backup_block(t, c, off, raw, buf,
                                          &m.blocks[m.nblocks]);
    backup_info(&v, raw, &m.info);
    m.info.blocks = m.nblocks;
    for (size_t i = 0; i < m.nblocks; i++)
        m.info.bytes_held += m.blocks[i].len;
    assert_int_equal(cvd_target_new_id(t, m.info.id), 0);
    mac_key_of(f, c, &v, mac);
    assert_int_equal(cvd_manifest_write(t, &m, mac), 0);
    snprintf(id, CVD_BACKUP_ID_MAX + 1, "%s", m.info.id);
    cvd_manifest_free(&m);
    cvd_target_close(t);
    cv_chain_close(c);
    free(buf);
}

/* The target's file of block i (in manifest order) of backup id. */
static void block_file(struct fixture *f, const char *id, size_t i,
                       char *path, size_t len, uint64_t *offset)
{
    struct cvd_manifest m = { 0 };
    struct cvd_target *t = NULL;

    assert_int_equal(cvd_target_open(f->target, &t), 0);
    assert_int_equal(cvd_manifest_read(t, id, NULL, &m), 0);
    assert_true(i < m.nblocks);
    snprintf(path, len, "%s/blocks/%.2s/%.2s/%s", f->target,
             m.blocks[i].sha256, m.blocks[i].sha256 + 2, m.blocks[i].sha256);
    if (offset)
        *offset = m.blocks[i].offset;
    cvd_manifest_free(&m);
    cvd_target_close(t);
}

static void flip_byte(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    unsigned char c;

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, at), 1);
    c ^= 0x40;
    assert_int_equal(pwrite(fd, &c, 1, at), 1);
    close(fd);
}

struct find_event {
    const char *object, *result;
    char detail[1024];
    int found;
};

static int find_cb(void *arg, json_object *e)
{
    struct find_event *fe = arg;
    json_object *v;

    if (json_object_object_get_ex(e, "event", &v) &&
        !strcmp(json_object_get_string(v), "backup.restore") &&
        json_object_object_get_ex(e, "object", &v) &&
        !strcmp(json_object_get_string(v), fe->object) &&
        json_object_object_get_ex(e, "result", &v) &&
        !strcmp(json_object_get_string(v), fe->result) &&
        json_object_object_get_ex(e, "detail", &v)) {
        snprintf(fe->detail, sizeof fe->detail, "%s",
                 json_object_get_string(v));
        fe->found++;
    }
    return 0;
}

/* The detail of the backup.restore event of backup id with result
 * ("ok", "refused"): there is exactly one. */
static void audited(struct fixture *f, const char *id, const char *result,
                    const char *detail)
{
    char object[64];
    struct find_event fe = { .object = object, .result = result };

    snprintf(object, sizeof object, "backup/%s", id);
    assert_true(cvd_audit_read(f->d.audit, 0, find_cb, &fe) >= 0);
    if (fe.found != 1)
        fail_msg("%d backup.restore events %s of %s", fe.found, result, id);
    assert_string_equal(fe.detail, detail);
}

/* The restore job of volume name, once it is done. */
static void wait_job(struct fixture *f, const char *name,
                     struct cvd_job_info *info)
{
    int i;

    for (i = 0; i < 2000; i++) {
        assert_int_equal(cvd_job_get(&f->d, name, info), 0);
        if (info->state != CVD_JOB_RUNNING)
            return;
        usleep(10000);
    }
    fail_msg("volume %s: its job is still running", name);
}

/* The two chains hold the same header and the same blocks. */
static void assert_same_image(struct fixture *f, const char *a, const char *b)
{
    struct cv_chain *ca = NULL, *cb = NULL;
    unsigned char *ba = malloc(CVD_BACKUP_BLOCK), *bb = malloc(CVD_BACKUP_BLOCK);
    char da[PATH_MAX], db[PATH_MAX];
    uint64_t off, raw;

    path_of(f, "volumes/%s", a, da, sizeof da);
    path_of(f, "volumes/%s", b, db, sizeof db);
    assert_int_equal(cv_chain_open(da, NULL, CV_CHAIN_READONLY, &ca), 0);
    assert_int_equal(cv_chain_open(db, NULL, CV_CHAIN_READONLY, &cb), 0);
    assert_int_equal(cv_chain_data_offset(ca), cv_chain_data_offset(cb));
    raw = cv_chain_size(ca);
    assert_int_equal(cv_chain_size(cb), raw);
    for (off = 0; off < raw; off += CVD_BACKUP_BLOCK) {
        size_t len = raw - off < CVD_BACKUP_BLOCK ? raw - off : CVD_BACKUP_BLOCK;

        assert_int_equal(cv_backend_pread(cv_chain_backend(ca), ba, len, off), 0);
        assert_int_equal(cv_backend_pread(cv_chain_backend(cb), bb, len, off), 0);
        if (memcmp(ba, bb, len))
            fail_msg("%s and %s differ in the block at %llu", a, b,
                     (unsigned long long)off);
    }
    /* Holes stay holes: the restore writes held sectors only. */
    for (off = cv_chain_data_offset(ca); off < raw; off += CV_CHAIN_BLOCK) {
        uint64_t run;
        int fmt;
        int ha = cv_chain_lookup(ca, off, CV_CHAIN_BLOCK, CV_CHAIN_TOP, &run,
                                 &fmt) != CV_CHAIN_HOLE;
        int hb = cv_chain_lookup(cb, off, CV_CHAIN_BLOCK, CV_CHAIN_TOP, &run,
                                 &fmt) != CV_CHAIN_HOLE;

        if (ha != hb)
            fail_msg("%s holds the block at %llu and %s does not (or the "
                     "other way)", ha ? a : b, (unsigned long long)off,
                     ha ? b : a);
    }
    cv_chain_close(ca);
    cv_chain_close(cb);
    free(ba);
    free(bb);
}

/* Nothing of a restore into name is left: no record, chain, journal. */
static void assert_no_trace(struct fixture *f, const char *name)
{
    struct cvd_volume_rec v;
    char p[PATH_MAX];

    assert_int_equal(cvd_volume_get(&f->d, name, &v), -ENOENT);
    path_of(f, "volumes/%s", name, p, sizeof p);
    assert_false(exists(p));
    path_of(f, "volumes/%s.creating", name, p, sizeof p);
    assert_false(exists(p));
    path_of(f, "restores/%s.json", name, p, sizeof p);
    assert_false(exists(p));
}

static void restored_ok(struct fixture *f, const char *from, const char *to,
                        const char *secret)
{
    struct cvd_job_info job;
    struct cvd_volume_rec src, v;
    struct cvd_export *e;
    unsigned char buf[4096];
    char p[PATH_MAX];

    wait_job(f, to, &job);
    if (job.state != CVD_JOB_COMPLETED)
        fail_msg("restore of %s: %s", to, job.error);
    assert_int_equal(job.kind, CVD_JOB_RESTORE);
    assert_int_equal(cvd_volume_get(&f->d, from, &src), 0);
    assert_int_equal(cvd_volume_get(&f->d, to, &v), 0);
    assert_string_equal(v.state, CVD_VOL_READY);
    assert_string_equal(v.uuid, src.uuid);
    assert_string_equal(v.secret, secret);
    assert_int_equal(v.size, src.size);
    assert_int_equal(v.data_offset, src.data_offset);
    assert_same_image(f, from, to);
    path_of(f, "restores/%s.json", to, p, sizeof p);
    assert_false(exists(p));
    /* It opens with the secret and reads the pattern. */
    if (cvd_export_get(f->d.reg, to, &e) < 0)
        fail_msg("restored %s does not open: %s", to, cv_last_error());
    assert_int_equal(cvd_export_pread(e, buf, sizeof buf, 4096), 0);
    assert_int_equal(buf[0], (unsigned char)(4096 * 7 + 3));
    assert_int_equal(cvd_export_pread(e, buf, sizeof buf, 3 * MiB + 8192), 0);
    assert_int_equal(buf[0], (unsigned char)(100 * 7 + 3));
    cvd_export_put(e);
}

static void test_restore(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_rec out;
    char id[CVD_BACKUP_ID_MAX + 1];

    make_volume(f, "v1", "s1", "pass one");
    make_backup(f, "v1", id);
    if (cvd_backup_restore(&f->d, id, "r1", NULL, NULL, &out) < 0)
        fail_msg("restore: %s", cv_last_error());
    assert_true(!strcmp(out.state, CVD_VOL_RESTORING) ||
                !strcmp(out.state, CVD_VOL_READY));
    restored_ok(f, "v1", "r1", "s1");
    audited(f, id, "ok", "volume r1: restored");
    /* A name taken is refused, and the volume is not touched. */
    assert_int_equal(cvd_backup_restore(&f->d, id, "r1", NULL, NULL, &out),
                     -EEXIST);
}

static void test_wrong_secret(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_rec out;
    char id[CVD_BACKUP_ID_MAX + 1], want[200];

    make_volume(f, "v1", "s1", "pass one");
    make_backup(f, "v1", id);
    assert_int_equal(cvd_secret_create(&f->d, "other", "not it", 6), 0);
    assert_int_equal(cvd_backup_restore(&f->d, id, "r2", "other", NULL, &out),
                     -CV_EWRONGKEY);
    snprintf(want, sizeof want, "backup %s: secret \"other\" does not open "
             "its header", id);
    assert_string_equal(cv_last_error(), want);
    assert_no_trace(f, "r2");
    /* The right one, given, opens it; the volume then names it. */
    assert_int_equal(cvd_secret_create(&f->d, "same", "pass one", 8), 0);
    if (cvd_backup_restore(&f->d, id, "r2", "same", NULL, &out) < 0)
        fail_msg("restore: %s", cv_last_error());
    restored_ok(f, "v1", "r2", "same");
}

static void test_pending(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_rec out, v;
    char id[CVD_BACKUP_ID_MAX + 1], p[PATH_MAX];

    make_volume(f, "v1", "s1", "pass one");
    make_backup(f, "v1", id);
    if (cvd_backup_restore(&f->d, id, "r3", "later", NULL, &out) < 0)
        fail_msg("restore: %s", cv_last_error());
    assert_string_equal(out.state, CVD_VOL_PENDING);
    assert_string_equal(out.wait_secret, "later");
    path_of(f, "restores/%s.json", "r3", p, sizeof p);
    assert_true(exists(p));
    /* Still missing: the retry leaves it. */
    assert_int_equal(cvd_volumes_retry_pending(&f->d, NULL), 0);
    assert_int_equal(cvd_volume_get(&f->d, "r3", &v), 0);
    assert_string_equal(v.state, CVD_VOL_PENDING);
    /* Created: the restore runs. */
    assert_int_equal(cvd_secret_create(&f->d, "later", "pass one", 8), 0);
    restored_ok(f, "v1", "r3", "later");
}

static void test_bad_block(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_rec out;
    struct cvd_job_info job;
    char id[CVD_BACKUP_ID_MAX + 1], file[PATH_MAX], want[300];
    struct cvd_manifest m = { 0 };
    struct cvd_target *t = NULL;
    uint64_t offset;
    size_t last;

    make_volume(f, "v1", "s1", "pass one");
    make_backup(f, "v1", id);
    assert_int_equal(cvd_target_open(f->target, &t), 0);
    assert_int_equal(cvd_manifest_read(t, id, NULL, &m), 0);
    last = m.nblocks - 1;       /* a data block: the one at 3 MiB */
    assert_true(m.blocks[last].offset >= m.info.data_offset);
    block_file(f, id, last, file, sizeof file, &offset);
    flip_byte(file, 8192 + 5);
    if (cvd_backup_restore(&f->d, id, "r4", NULL, NULL, &out) < 0)
        fail_msg("restore: %s", cv_last_error());
    wait_job(f, "r4", &job);
    assert_int_equal(job.state, CVD_JOB_FAILED);
    snprintf(want, sizeof want, "backup %s: block at offset %llu (sha256 %s): "
             "checksum mismatch", id, (unsigned long long)offset,
             m.blocks[last].sha256);
    assert_string_equal(job.error, want);
    assert_no_trace(f, "r4");
    {
        char detail[400];

        snprintf(detail, sizeof detail, "volume r4: %s", want);
        audited(f, id, "refused", detail);
    }
    /* A deleted block: named the same way. */
    flip_byte(file, 8192 + 5);
    assert_int_equal(unlink(file), 0);
    if (cvd_backup_restore(&f->d, id, "r4", NULL, NULL, &out) < 0)
        fail_msg("restore: %s", cv_last_error());
    wait_job(f, "r4", &job);
    assert_int_equal(job.state, CVD_JOB_FAILED);
    assert_non_null(strstr(job.error, "missing from the target"));
    assert_no_trace(f, "r4");
    cvd_manifest_free(&m);
    cvd_target_close(t);
}

/* A header block damaged: the header cannot be opened, refused at once. */
static void test_bad_header(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_rec out;
    char id[CVD_BACKUP_ID_MAX + 1], file[PATH_MAX], want[300];
    uint64_t offset;

    make_volume(f, "v1", "s1", "pass one");
    make_backup(f, "v1", id);
    block_file(f, id, 0, file, sizeof file, &offset);
    flip_byte(file, 100);
    assert_int_equal(cvd_backup_restore(&f->d, id, "r5", NULL, NULL, &out),
                     -EBADMSG);
    snprintf(want, sizeof want, "backup %s: block at offset 0 (sha256 ", id);
    assert_memory_equal(cv_last_error(), want, strlen(want));
    assert_non_null(strstr(cv_last_error(), "checksum mismatch"));
    assert_no_trace(f, "r5");
}

/* A manifest changed after its MAC: refused before anything is made. */
static void test_edited_manifest(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_rec out;
    char id[CVD_BACKUP_ID_MAX + 1], path[PATH_MAX], *text, *at;
    FILE *fp;
    long n;

    make_volume(f, "v1", "s1", "pass one");
    make_backup(f, "v1", id);
    snprintf(path, sizeof path, "%s/backups/%s.json", f->target, id);
    fp = fopen(path, "r+");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    text = calloc(1, (size_t)n + 1);
    rewind(fp);
    assert_int_equal(fread(text, 1, (size_t)n, fp), (size_t)n);
    at = strstr(text, "\"snapshot\":\"backup-test\"");
    assert_non_null(at);
    at[strlen("\"snapshot\":\"backup-tes")] = 'x';
    rewind(fp);
    assert_int_equal(fwrite(text, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    free(text);
    assert_int_equal(cvd_backup_restore(&f->d, id, "r6", NULL, NULL, &out),
                     -EBADMSG);
    assert_non_null(strstr(cv_last_error(), "does not match its MAC"));
    assert_no_trace(f, "r6");
}

/* A stop in the middle (the job cancelled, as a daemon stop does) leaves
 * the volume restoring with its journal; the next start's recovery does
 * it again from the start.  Without the journal, recovery removes it. */
static void test_recover(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_rec out, v;
    struct cvd_job_info job;
    char id[CVD_BACKUP_ID_MAX + 1], p[PATH_MAX];

    make_volume(f, "v1", "s1", "pass one");
    make_backup(f, "v1", id);
    f->d.cfg.backup_delay_ms = 100;
    if (cvd_backup_restore(&f->d, id, "r7", NULL, NULL, &out) < 0)
        fail_msg("restore: %s", cv_last_error());
    usleep(150000);
    cvd_jobs_free(f->d.jobs);           /* the daemon stops */
    assert_int_equal(cvd_jobs_new(&f->d.jobs), 0);
    assert_int_equal(cvd_volume_get(&f->d, "r7", &v), 0);
    assert_string_equal(v.state, CVD_VOL_RESTORING);
    path_of(f, "restores/%s.json", "r7", p, sizeof p);
    assert_true(exists(p));
    /* What a kill -9 leaves besides: the ".creating" chain, half full. */
    path_of(f, "volumes/%s.creating", "r7", p, sizeof p);
    assert_int_equal(cv_chain_create(p, v.data_offset, v.data_offset + MiB,
                                     NULL), 0);
    f->d.cfg.backup_delay_ms = 0;
    assert_int_equal(cvd_volumes_recover(&f->d), 0);
    /* A second recovery (the admin API's start) leaves the running job. */
    assert_int_equal(cvd_volumes_recover(&f->d), 0);
    restored_ok(f, "v1", "r7", "s1");

    /* Killed after the chain's rename, before the record said ready: the
     * chain is whole (it is flushed before it is renamed). */
    assert_int_equal(cvd_volume_get(&f->d, "r7", &v), 0);
    snprintf(v.state, sizeof v.state, CVD_VOL_RESTORING);
    assert_int_equal(f->d.meta->ops->volume_update(f->d.meta, &v,
                                                   CVD_VOL_READY), 0);
    assert_int_equal(cvd_volumes_recover(&f->d), 0);
    assert_int_equal(cvd_volume_get(&f->d, "r7", &v), 0);
    assert_string_equal(v.state, CVD_VOL_READY);
    assert_same_image(f, "v1", "r7");

    /* Again, then the journal lost: removed. */
    f->d.cfg.backup_delay_ms = 100;
    if (cvd_backup_restore(&f->d, id, "r8", NULL, NULL, &out) < 0)
        fail_msg("restore: %s", cv_last_error());
    usleep(150000);
    cvd_jobs_free(f->d.jobs);
    assert_int_equal(cvd_jobs_new(&f->d.jobs), 0);
    path_of(f, "restores/%s.json", "r8", p, sizeof p);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(cvd_volumes_recover(&f->d), 0);
    assert_int_equal(cvd_job_get(&f->d, "r8", &job), -ENOENT);
    assert_no_trace(f, "r8");
}

/* A volume only its cryptvol-kek token opens (cluster encryption on, no
 * user secret): restored through this node's keyring, and the restored
 * volume opens the same way. */
static void test_kek(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_rec out, v;
    char id[CVD_BACKUP_ID_MAX + 1];

    if (cvd_cluster_enable(f->d.cluster, "test", CVD_KEK_SOFTWARE) < 0)
        fail_msg("enable: %s", cv_last_error());
    make_volume(f, "k1", NULL, NULL);
    assert_int_equal(cvd_volume_get(&f->d, "k1", &v), 0);
    assert_string_equal(v.secret, "");
    assert_true(v.kek_gen > 0);
    make_backup(f, "k1", id);
    if (cvd_backup_restore(&f->d, id, "kr1", NULL, NULL, &out) < 0)
        fail_msg("restore: %s", cv_last_error());
    restored_ok(f, "k1", "kr1", "");
    assert_int_equal(cvd_volume_get(&f->d, "kr1", &out), 0);
    assert_int_equal(out.kek_gen, v.kek_gen);
}

/* The header key with no secret of that name here: -ENOENT naming it;
 * refused states and ids. */
static void test_refusals(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_rec out;
    char want[200];

    assert_int_equal(cvd_backup_restore(&f->d, "bk-0123456789abcdef", "r9",
                                        NULL, NULL, &out), -ENOENT);
    assert_no_trace(f, "r9");
    assert_int_equal(cvd_backup_restore(&f->d, "../x", "r9", NULL, NULL,
                                        &out), -EINVAL);
    f->d.cfg.backup_target = NULL;
    assert_int_equal(cvd_backup_restore(&f->d, "bk-0123456789abcdef", "r9",
                                        NULL, NULL, &out), -ENODEV);
    snprintf(want, sizeof want, "no backup target is set: backup-target in "
             "cryptvold.conf or --backup-target");
    assert_string_equal(cv_last_error(), want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edited_manifest, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_recover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kek, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

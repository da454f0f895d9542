/* Backup create (daemon/backup/backup-create.c) on a real data directory
 * and target, with the daemon's volume code, snapshots and jobs.  Every
 * backup made is checked against the snapshot's own view, read here
 * block by block without any of create's planning: each 1 MiB block that
 * holds a sector must be listed with exactly the sectors the view holds
 * and the checksum of its bytes (holes zero), the header whole, nothing
 * else listed.  So an incremental that copies a stale entry from its base,
 * or drops a block, fails whatever the reason.  The cases are the ones the
 * base is chosen in: snapshots between, merged, the base's own snapshot
 * deleted, a snapshot made again under the base's name, a base whose
 * manifest does not authenticate, a volume grown since; and the
 * refusals. */
#include <dirent.h>
#include <errno.h>
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

#include "backup/backup.h"
#include "backup/target.h"
#include "core/error.h"
#include "daemon.h"
#include "export/export.h"
#include "keys/cluster-kek.h"
#include "keys/keyring.h"
#include "meta/meta.h"
#include "store/backend.h"
#include "store/chain.h"
#include "volumes/jobs.h"
#include "volumes/snapshots.h"
#include "volumes/volumes.h"

#define MiB (1ull << 20)
#define VOL_SIZE (8 * MiB)

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
    snprintf(f->dir, sizeof f->dir, "%s/cv-bkcreate-XXXXXX",
             tmp ? tmp : "/tmp");
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
        cvd_jobs_new(&f->d.jobs) < 0 || cvd_backups_start(&f->d) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[PATH_MAX + 16];

    cvd_jobs_free(f->d.jobs);
    cvd_backups_stop(&f->d);
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

static void make_volume(struct fixture *f, const char *name)
{
    struct cvd_volume_req req = { .name = name, .size = VOL_SIZE,
                                  .secret = "k", .luks_version = 2,
                                  .aes_bits = 256 };
    struct cvd_volume_rec v;

    if (cvd_secret_create(&f->d, "k", "pass", 4) < 0)
        cv_clear_error();       /* the second volume: made already */
    if (cvd_volume_create(&f->d, &req, &v) < 0)
        fail_msg("volume create %s: %s", name, cv_last_error());
}

/* len bytes of a pattern seeded by seed at off (plaintext, through the
 * volume as a client writes). */
static void write_at(struct fixture *f, const char *name, uint64_t off,
                     size_t len, unsigned seed)
{
    unsigned char *buf = malloc(len);
    struct cvd_export *e;

    assert_non_null(buf);
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)((i / 512) * 131 + seed * 17 + i);
    assert_int_equal(cvd_export_get(f->d.reg, name, &e), 0);
    if (cvd_export_pwrite(e, buf, len, off, 0) < 0)
        fail_msg("write %s at %llu: %s", name, (unsigned long long)off,
                 cv_last_error());
    assert_int_equal(cvd_export_flush(e), 0);
    cvd_export_put(e);
    free(buf);
}

static void wait_job(struct fixture *f, const char *name)
{
    struct cvd_job_info j;

    for (int i = 0; i < 3000; i++) {
        if (cvd_job_get(&f->d, name, &j) < 0 || j.state != CVD_JOB_RUNNING)
            return;
        usleep(10000);
    }
    fail_msg("volume %s: its job still runs after 30 s", name);
}

/* A backup of name (of snapshot snap, or a new one), waited for: it must
 * be Completed. */
static void backup(struct fixture *f, const char *name, const char *snap,
                   struct cvd_backup_info *out)
{
    struct cvd_backup_info b;

    if (cvd_backup_create(&f->d, name, snap, &b) < 0)
        fail_msg("backup create %s: %s", name, cv_last_error());
    assert_int_equal(b.state, CVD_BACKUP_IN_PROGRESS);
    wait_job(f, name);
    assert_int_equal(cvd_backup_get(&f->d, b.id, out), 0);
    if (out->state != CVD_BACKUP_COMPLETED)
        fail_msg("backup %s: %s: %s", b.id,
                 cvd_backup_state_name(out->state), out->error);
}

static int note_held(void *arg, size_t buf_off, size_t len, int format)
{
    uint8_t *held = arg;

    for (size_t s = buf_off / CV_CHAIN_BLOCK;
         format != CV_CHAIN_HOLE && s < (buf_off + len) / CV_CHAIN_BLOCK; s++)
        held[s / 8] |= (uint8_t)(1u << (s % 8));
    return 0;
}

/* The manifest of backup id lists exactly what its snapshot's view holds
 * (see the top of this file). */
static void check_against_view(struct fixture *f, const char *id)
{
    struct cvd_manifest m = { 0 };
    struct cvd_target *t = NULL;
    struct cvd_export *e = NULL;
    unsigned char *buf = malloc(CVD_BACKUP_BLOCK);
    char full[2 * CVD_NAME_MAX + 2], sha[65];
    struct cv_chain *c;
    uint64_t off;
    size_t k = 0;

    assert_non_null(buf);
    assert_int_equal(cvd_target_open(f->target, &t), 0);
    assert_int_equal(cvd_manifest_read(t, id, NULL, &m), 0);
    snprintf(full, sizeof full, "%s@%s", m.info.volume, m.info.snapshot);
    assert_int_equal(cvd_export_get_store(f->d.reg, full, 0, &e), 0);
    c = cvd_export_chain(e);
    assert_int_equal(m.info.data_offset, cv_chain_data_offset(c));
    for (off = 0; off < m.info.raw_size; off += CVD_BACKUP_BLOCK) {
        uint64_t len = m.info.raw_size - off < CVD_BACKUP_BLOCK ?
                       m.info.raw_size - off : CVD_BACKUP_BLOCK;
        uint8_t held[CVD_BACKUP_BLOCK_SECTORS / 8] = { 0 };
        int any = 0;

        if (off < m.info.data_offset) {
            len = m.info.data_offset - off < len ? m.info.data_offset - off
                                                 : len;
            memset(held, 0xff, sizeof held);
            assert_int_equal(cv_backend_pread(cv_chain_backend(c), buf, len,
                                              off), 0);
        } else {
            assert_int_equal(cv_chain_read(c, buf, len, off, CV_CHAIN_TOP,
                                           note_held, held), 0);
        }
        for (size_t i = 0; i < sizeof held; i++)
            any |= held[i] != 0;
        if (!any) {
            if (k < m.nblocks && m.blocks[k].offset == off)
                fail_msg("backup %s lists the block at %llu, which its "
                         "snapshot does not hold", id,
                         (unsigned long long)off);
            continue;
        }
        if (k >= m.nblocks || m.blocks[k].offset != off)
            fail_msg("backup %s does not list the block at %llu, which its "
                     "snapshot holds", id, (unsigned long long)off);
        assert_int_equal(m.blocks[k].len, len);
        assert_int_equal(cvd_target_sha256(buf, len, sha), 0);
        if (strcmp(sha, m.blocks[k].sha256))
            fail_msg("backup %s: the block at %llu is listed with another "
                     "checksum than its snapshot's bytes (a stale copy?)", id,
                     (unsigned long long)off);
        if (memcmp(held, m.blocks[k].held, sizeof held))
            fail_msg("backup %s: the block at %llu is listed with other "
                     "held sectors than its snapshot's", id,
                     (unsigned long long)off);
        k++;
        if (off < m.info.data_offset && off + len == m.info.data_offset)
            off = m.info.data_offset - CVD_BACKUP_BLOCK;    /* data next */
    }
    if (k != m.nblocks)
        fail_msg("backup %s lists %zu blocks past its size", id,
                 m.nblocks - k);
    cvd_export_put_store(e);
    cvd_manifest_free(&m);
    cvd_target_close(t);
    free(buf);
}

/* Full, then incrementals with snapshots of the user's between them, one
 * merged away: each lists exactly its snapshot, each next one names the
 * one before as its base and stores little. */
static void test_incrementals(void **state)
{
    struct fixture *f = *state;
    struct cvd_backup_info b1, b2, b3, b4;

    make_volume(f, "v");
    write_at(f, "v", 0, 3 * MiB, 1);
    write_at(f, "v", 6 * MiB + 4096, 8192, 2);
    backup(f, "v", NULL, &b1);
    assert_string_equal(b1.base, "");
    check_against_view(f, b1.id);

    /* A write, a snapshot of the user's, another write: both are above
     * the base's layer. */
    write_at(f, "v", MiB + 512 * 1024, 4096, 3);
    assert_int_equal(cvd_snapshot_create(&f->d, "v", "mine", NULL), 0);
    write_at(f, "v", 5 * MiB, 100 * 1024, 4);
    backup(f, "v", NULL, &b2);
    assert_string_equal(b2.base, b1.id);
    check_against_view(f, b2.id);
    /* Two blocks changed: at most those were stored new (and the header's
     * blocks, which did not change, were not). */
    assert_true(b2.bytes_new <= 2 * MiB);

    /* The user's snapshot deleted (merged into the layer above), a write
     * into a block the base holds. */
    assert_int_equal(cvd_snapshot_delete(&f->d, "v", "mine"), 0);
    wait_job(f, "v");
    write_at(f, "v", 2 * MiB + 8192, 4096, 5);
    backup(f, "v", NULL, &b3);
    assert_string_equal(b3.base, b2.id);
    check_against_view(f, b3.id);

    /* Nothing written: everything is the base's, nothing new. */
    backup(f, "v", NULL, &b4);
    assert_string_equal(b4.base, b3.id);
    assert_int_equal(b4.bytes_new, 0);
    assert_int_equal(b4.bytes_held, b3.bytes_held);
    check_against_view(f, b4.id);
}

/* The base's snapshot deleted: the next backup is full.  A snapshot made
 * again under the base's snapshot's name is another one: not a base. */
static void test_base_gone(void **state)
{
    struct fixture *f = *state;
    struct cvd_backup_info b1, b2, b3, b4;

    make_volume(f, "v");
    write_at(f, "v", 0, 2 * MiB, 1);
    backup(f, "v", NULL, &b1);
    assert_int_equal(cvd_snapshot_delete(&f->d, "v", b1.snapshot), 0);
    wait_job(f, "v");
    write_at(f, "v", 4 * MiB, 4096, 2);
    backup(f, "v", NULL, &b2);
    assert_string_equal(b2.base, "");
    check_against_view(f, b2.id);

    assert_int_equal(cvd_snapshot_create(&f->d, "v", "s", NULL), 0);
    backup(f, "v", "s", &b3);
    assert_string_equal(b3.base, b2.id);
    check_against_view(f, b3.id);
    assert_int_equal(cvd_snapshot_delete(&f->d, "v", "s"), 0);
    wait_job(f, "v");
    /* Also delete b2's snapshot: the only candidate left is b3's "s". */
    assert_int_equal(cvd_snapshot_delete(&f->d, "v", b2.snapshot), 0);
    wait_job(f, "v");
    sleep(1);           /* the new "s" is of a later second than b3 */
    write_at(f, "v", 0, 4096, 3);
    assert_int_equal(cvd_snapshot_create(&f->d, "v", "s", NULL), 0);
    write_at(f, "v", MiB, 4096, 4);
    backup(f, "v", NULL, &b4);
    if (b4.base[0])
        fail_msg("backup %s is incremental to %s, whose snapshot \"s\" was "
                 "deleted and made again", b4.id, b4.base);
    check_against_view(f, b4.id);
}

/* A base whose manifest does not authenticate is not used: full. */
static void test_base_not_authentic(void **state)
{
    struct fixture *f = *state;
    struct cvd_backup_info b1, b2;
    char path[PATH_MAX + 64];
    FILE *fp;

    make_volume(f, "v");
    write_at(f, "v", 0, MiB, 1);
    backup(f, "v", NULL, &b1);
    snprintf(path, sizeof path, "%s/backups/%s.mac", f->target, b1.id);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("00000000000000000000000000000000"
          "00000000000000000000000000000000\n", fp);
    fclose(fp);
    write_at(f, "v", 3 * MiB, 4096, 2);
    backup(f, "v", NULL, &b2);
    assert_string_equal(b2.base, "");
    check_against_view(f, b2.id);
}

/* A volume's next backup derives no key: its MAC key is kept from the
 * first (backup-keys.c).  Shown by a secret whose value no longer opens
 * the volume: only a backup that unlocks nothing still completes. */
static void test_key_kept(void **state)
{
    struct fixture *f = *state;
    struct cvd_backup_info b1, b2, b3;

    make_volume(f, "v");
    make_volume(f, "w");
    write_at(f, "v", 0, MiB, 1);
    backup(f, "v", NULL, &b1);
    write_at(f, "v", 2 * MiB, 4096, 2);
    write_at(f, "w", 0, 4096, 3);
    if (cvd_secret_update(&f->d, "k", "wrong", 5) < 0)
        fail_msg("secret update: %s", cv_last_error());
    backup(f, "v", NULL, &b2);
    assert_string_equal(b2.base, b1.id);
    check_against_view(f, b2.id);
    /* w was never backed up: its first backup unlocks, and fails. */
    assert_int_equal(cvd_backup_create(&f->d, "w", NULL, &b3), 0);
    wait_job(f, "w");
    assert_int_equal(cvd_backup_get(&f->d, b3.id, &b3), 0);
    assert_int_equal(b3.state, CVD_BACKUP_FAILED);
}

/* Grown since the base: the blocks past the base's end are read. */
static void test_grown(void **state)
{
    struct fixture *f = *state;
    struct cvd_backup_info b1, b2;
    struct cvd_volume_rec v;

    make_volume(f, "v");
    write_at(f, "v", 0, MiB, 1);
    backup(f, "v", NULL, &b1);
    if (cvd_volume_resize(&f->d, "v", VOL_SIZE + 3 * MiB, 0, &v) < 0)
        fail_msg("resize: %s", cv_last_error());
    write_at(f, "v", VOL_SIZE + MiB, 8192, 2);
    backup(f, "v", NULL, &b2);
    assert_string_equal(b2.base, b1.id);
    assert_int_equal(b2.size, VOL_SIZE + 3 * MiB);
    check_against_view(f, b2.id);
}

/* Files in DIR/sub of the target. */
static int files_in(struct fixture *f, const char *sub)
{
    char path[PATH_MAX + 64];
    struct dirent *e;
    DIR *d;
    int n = 0;

    snprintf(path, sizeof path, "%s/%s", f->target, sub);
    d = opendir(path);
    assert_non_null(d);
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void expect_refused(struct fixture *f, const char *volume,
                           const char *snap, int err, const char *msg)
{
    struct cvd_backup_info b;
    int r = cvd_backup_create(&f->d, volume, snap, &b);

    if (r != err || !strstr(cv_last_error(), msg))
        fail_msg("backup of %s: %d \"%s\", expected %d \"%s\"", volume, r,
                 cv_last_error(), err, msg);
}

static void test_refusals(void **state)
{
    struct fixture *f = *state;
    struct cvd_volume_req plain = { .name = "p", .size = VOL_SIZE,
                                    .plaintext = 1 };
    struct cvd_clone_req clone = { .name = "c", .parent = "v@s",
                                   .secret = "k" };
    struct cvd_backup_info *all = NULL;
    struct cvd_volume_rec v;
    struct cvd_backups *saved;
    size_t n = 9;

    make_volume(f, "v");
    expect_refused(f, "v", "nope", -ENOENT, "volume v: no snapshot \"nope\"");
    expect_refused(f, "gone", NULL, -ENOENT, "gone");
    assert_int_equal(cvd_volume_create(&f->d, &plain, &v), 0);
    expect_refused(f, "p", NULL, -EINVAL, "cannot be backed up: backups hold "
                   "ciphertext only");
    assert_int_equal(cvd_snapshot_create(&f->d, "v", "s", NULL), 0);
    if (cvd_volume_clone(&f->d, &clone, &v) < 0)
        fail_msg("clone: %s", cv_last_error());
    expect_refused(f, "c", NULL, -EINVAL, "flatten it first");
    /* Nothing refused left a manifest (not even the empty file an id is
     * taken with) or a snapshot behind. */
    assert_int_equal(cvd_backup_list(&f->d, NULL, &all, &n), 0);
    assert_int_equal(n, 0);
    free(all);
    if (files_in(f, "backups"))
        fail_msg("a refused backup left %d files in the target's backups/",
                 files_in(f, "backups"));
    assert_int_equal(cvd_volume_snapshot_count(&f->d, "v"), 1);

    saved = f->d.backups;
    f->d.backups = NULL;
    expect_refused(f, "v", NULL, -ENODEV, "no backup target is set");
    f->d.backups = saved;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_incrementals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base_not_authentic, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_grown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

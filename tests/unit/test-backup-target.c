/* The backup target's files (daemon/backup/target.h): opening and making a
 * target, blocks stored once and checked on every read, manifests and
 * their MACs (edited, cut short, swapped, another key), the lock shared
 * and exclusive across descriptors and processes, collection, and a full
 * target leaving no partial file. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "backup/target.h"
#include "core/error.h"

#define KiB 1024u
#define UUID "0b9d5c2e-1111-4222-8333-444455556666"

struct world {
    char dir[64];
    char mounted[128];          /* a tmpfs to unmount, "" none */
    struct cvd_target *t;
    unsigned char key[CVD_BACKUP_MAC_KEY];
};

static void rm_rf(const char *dir)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof *w);
    unsigned char vk[64];

    snprintf(w->dir, sizeof w->dir, "/tmp/cv-bktarget-XXXXXX");
    assert_non_null(mkdtemp(w->dir));
    assert_int_equal(cvd_target_open(w->dir, &w->t), 0);
    memset(vk, 0x11, sizeof vk);
    assert_int_equal(cvd_backup_mac_key(vk, sizeof vk, UUID, w->key), 0);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;

    if (w->t)
        cvd_target_close(w->t);
    /* Also when the test failed with the tmpfs mounted. */
    if (w->mounted[0] && umount2(w->mounted, MNT_DETACH) != 0)
        fprintf(stderr, "umount %s: %s\n", w->mounted, strerror(errno));
    rm_rf(w->dir);
    free(w);
    return 0;
}

static void path_of(struct world *w, char *buf, size_t len, const char *rel)
{
    snprintf(buf, len, "%s/%s", w->dir, rel);
}

static void block_file(struct world *w, const char *hex, char *buf,
                       size_t len)
{
    snprintf(buf, len, "%s/blocks/%.2s/%.2s/%s", w->dir, hex, hex + 2, hex);
}

static int exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

static void fill(void *buf, size_t len, unsigned seed)
{
    unsigned char *p = buf;
    size_t i;

    for (i = 0; i < len; i++)
        p[i] = (unsigned char)((i * 131 + seed * 7919) >> 3);
}

/* Stores a block of len bytes made from seed; its name into hex. */
static void put_seed(struct world *w, unsigned seed, size_t len,
                     char hex[65])
{
    void *buf = malloc(len);
    int stored = -1;

    fill(buf, len, seed);
    assert_int_equal(cvd_target_sha256(buf, len, hex), 0);
    assert_int_equal(cvd_target_block_put(w->t, hex, buf, len, &stored), 0);
    assert_int_equal(stored, 1);
    free(buf);
}

/* Counts files under dir whose name starts with prefix. */
static int count_files(const char *dir, const char *prefix)
{
    char cmd[256];
    FILE *p;
    int n = -1;

    snprintf(cmd, sizeof cmd, "find '%s' -type f -name '%s*' | wc -l", dir,
             prefix);
    p = popen(cmd, "r");
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

static void test_open(void **state)
{
    struct world *w = *state;
    char path[128], other[64];
    struct cvd_target *t = NULL;
    FILE *f;

    path_of(w, path, sizeof path, "cryptvol-backup");
    assert_true(exists(path));
    path_of(w, path, sizeof path, "lock");
    assert_true(exists(path));
    /* Opened again, as a target. */
    assert_int_equal(cvd_target_open(w->dir, &t), 0);
    cvd_target_close(t);

    /* A directory with someone else's files is refused, and left as it
     * was. */
    snprintf(other, sizeof other, "/tmp/cv-bktarget-XXXXXX");
    assert_non_null(mkdtemp(other));
    snprintf(path, sizeof path, "%s/photos.tar", other);
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(cvd_target_open(other, &t), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "not a backup target"));
    assert_non_null(strstr(cv_last_error(), "photos.tar"));
    snprintf(path, sizeof path, "%s/cryptvol-backup", other);
    assert_false(exists(path));
    assert_int_equal(count_files(other, ""), 1);

    /* A marker of another format. */
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"format\": 2}\n", f);
    fclose(f);
    assert_int_equal(cvd_target_open(other, &t), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "format 2"));
    rm_rf(other);

    assert_int_equal(cvd_target_open(other, &t), -ENOENT);
    assert_non_null(strstr(cv_last_error(), other));
}

static void test_block_round_trip(void **state)
{
    struct world *w = *state;
    size_t len = 300 * KiB;
    char *buf = malloc(len), *back = malloc(len), hex[65], path[256];
    struct stat before, after;
    int stored = -1;

    fill(buf, len, 1);
    assert_int_equal(cvd_target_sha256(buf, len, hex), 0);
    assert_int_equal(cvd_target_block_exists(w->t, hex), 0);
    assert_int_equal(cvd_target_block_put(w->t, hex, buf, len, &stored), 0);
    assert_int_equal(stored, 1);
    assert_int_equal(cvd_target_block_exists(w->t, hex), 1);
    assert_int_equal(cvd_target_block_get(w->t, hex, back, len), 0);
    assert_memory_equal(buf, back, len);

    /* Stored once: a second put writes nothing. */
    block_file(w, hex, path, sizeof path);
    assert_int_equal(stat(path, &before), 0);
    assert_int_equal(cvd_target_block_put(w->t, hex, buf, len, &stored), 0);
    assert_int_equal(stored, 0);
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino);
    assert_int_equal(count_files(w->dir, ".tmp-"), 0);

    assert_int_equal(cvd_target_block_remove(w->t, hex), 0);
    assert_int_equal(cvd_target_block_exists(w->t, hex), 0);
    free(buf);
    free(back);
}

static void test_block_damage(void **state)
{
    struct world *w = *state;
    size_t len = 64 * KiB;
    char *buf = malloc(len), hex[65], path[256];
    int fd;

    put_seed(w, 2, len, hex);
    block_file(w, hex, path, sizeof path);

    /* One flipped byte. */
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, 1, 4097), 1);
    buf[0] ^= 0x20;
    assert_int_equal(pwrite(fd, buf, 1, 4097), 1);
    close(fd);
    assert_int_equal(cvd_target_block_get(w->t, hex, buf, len), -EBADMSG);
    assert_non_null(strstr(cv_last_error(), hex));
    assert_non_null(strstr(cv_last_error(), "checksum mismatch"));

    /* Another size than the manifest's: cut short, or asked for more. */
    assert_int_equal(truncate(path, len - 1), 0);
    assert_int_equal(cvd_target_block_get(w->t, hex, buf, len), -EMSGSIZE);
    assert_non_null(strstr(cv_last_error(), hex));
    assert_non_null(strstr(cv_last_error(), "not 65536"));

    /* A put of the right bytes mends a block of the wrong size. */
    fill(buf, len, 2);
    {
        int stored = -1;

        assert_int_equal(cvd_target_block_put(w->t, hex, buf, len, &stored),
                         0);
        assert_int_equal(stored, 1);
        assert_int_equal(cvd_target_block_get(w->t, hex, buf, len), 0);
    }

    /* Missing. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(cvd_target_block_get(w->t, hex, buf, len), -ENOENT);
    assert_non_null(strstr(cv_last_error(), hex));
    assert_non_null(strstr(cv_last_error(), "missing"));

    /* Not a name at all: never a path outside blocks/. */
    assert_int_equal(cvd_target_block_get(w->t, "../../etc/passwd", buf, len),
                     -EINVAL);
    free(buf);
}

/* A manifest of volume db1: a header block, a block with some sectors
 * held, and a short last one. */
static void make_manifest(struct cvd_manifest *m, const char *id,
                          const char *sha[3])
{
    memset(m, 0, sizeof *m);
    snprintf(m->info.id, sizeof m->info.id, "%s", id);
    strcpy(m->info.volume, "db1");
    strcpy(m->info.snapshot, "backup-0123456789abcdef");
    strcpy(m->info.uuid, UUID);
    strcpy(m->info.cluster, "c-42");
    strcpy(m->info.node, "n1");
    strcpy(m->info.secret, "db1");
    m->info.kek_gen = 3;
    strcpy(m->info.type, "luks2");
    strcpy(m->info.cipher, "aes-xts-plain64");
    m->info.key_bits = 512;
    m->info.sector_size = 4096;
    m->info.data_offset = CVD_BACKUP_BLOCK;
    m->info.raw_size = 3 * (uint64_t)CVD_BACKUP_BLOCK - 8192;
    m->info.size = m->info.raw_size - m->info.data_offset;
    strcpy(m->info.base, "bk-00000000000000aa");
    m->info.created = 1796040000;
    m->info.finished = 1796040060;
    m->info.state = CVD_BACKUP_COMPLETED;
    m->info.bytes_held = CVD_BACKUP_BLOCK + 3 * 4096 + 8192;
    m->info.bytes_new = 12345;
    m->nblocks = 3;
    m->blocks = calloc(3, sizeof *m->blocks);
    m->blocks[0].offset = 0;
    m->blocks[0].len = CVD_BACKUP_BLOCK;
    memset(m->blocks[0].held, 0xff, sizeof m->blocks[0].held);
    m->blocks[1].offset = CVD_BACKUP_BLOCK;
    m->blocks[1].len = CVD_BACKUP_BLOCK;
    m->blocks[1].held[0] = 0x05;            /* sectors 0 and 2 */
    m->blocks[1].held[31] = 0x80;           /* and the last */
    m->blocks[2].offset = 2 * (uint64_t)CVD_BACKUP_BLOCK;
    m->blocks[2].len = CVD_BACKUP_BLOCK - 8192;
    memset(m->blocks[2].held, 0xff, sizeof m->blocks[2].held - 1);
    m->blocks[2].held[31] = 0x3f;           /* all 254 of its sectors */
    for (int i = 0; i < 3; i++)
        strcpy(m->blocks[i].sha256, sha[i]);
}

static const char *shas[3] = {
    "1111111111111111111111111111111111111111111111111111111111111111",
    "2222222222222222222222222222222222222222222222222222222222222222",
    "3333333333333333333333333333333333333333333333333333333333333333",
};

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    char *buf = malloc(1 << 20);

    assert_non_null(f);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static void spit(const char *path, const char *buf, size_t len)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    fclose(f);
}

static void test_manifest_round_trip(void **state)
{
    struct world *w = *state;
    struct cvd_manifest m, back;
    char id[CVD_BACKUP_ID_MAX + 1], path[128], *text;
    size_t len;

    assert_int_equal(cvd_target_new_id(w->t, id), 0);
    assert_int_equal(strlen(id), 19);
    assert_int_equal(strncmp(id, "bk-", 3), 0);
    /* Taken: the manifest file exists, empty, until it is written. */
    {
        char other[CVD_BACKUP_ID_MAX + 1];
        struct stat st;

        snprintf(path, sizeof path, "%s/backups/%s.json", w->dir, id);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, 0);
        assert_int_equal(cvd_target_new_id(w->t, other), 0);
        assert_string_not_equal(id, other);
    }
    make_manifest(&m, id, shas);
    assert_int_equal(cvd_manifest_write(w->t, &m, w->key), 0);
    assert_int_equal(cvd_manifest_read(w->t, id, w->key, &back), 0);
    m.info.blocks = 3;
    assert_memory_equal(&m.info, &back.info, sizeof m.info);
    assert_int_equal(back.nblocks, 3);
    assert_memory_equal(m.blocks, back.blocks, 3 * sizeof *m.blocks);

    /* The JSON shape: held only where some sector is not. */
    snprintf(path, sizeof path, "%s/backups/%s.json", w->dir, id);
    text = slurp(path, &len);
    assert_non_null(strstr(text, "\"kekGeneration\":3"));
    assert_non_null(strstr(text, "\"created\":\"2026-11-30T12:00:00Z\""));
    assert_non_null(strstr(text, "\"blockSize\":1048576"));
    assert_non_null(strstr(text, "\"state\":\"Completed\""));
    assert_non_null(strstr(text, "\"error\":null"));
    assert_non_null(strstr(text, "\"held\":\"05000000"));
    assert_null(strstr(strstr(text, "\"held\"") + 1, "\"held\""));
    free(text);
    /* The index. */
    snprintf(path, sizeof path, "%s/volumes/db1/%s", w->dir, id);
    assert_true(exists(path));
    cvd_manifest_free(&back);

    /* A KEK-only backup, full, not finished. */
    memset(m.info.secret, 0, sizeof m.info.secret);
    m.info.kek_gen = 0;
    memset(m.info.base, 0, sizeof m.info.base);
    m.info.finished = 0;
    m.info.state = CVD_BACKUP_FAILED;
    strcpy(m.info.error, "backup target /x is full: block ...");
    assert_int_equal(cvd_manifest_write(w->t, &m, NULL), 0);
    assert_int_equal(cvd_manifest_read(w->t, id, NULL, &back), 0);
    assert_memory_equal(&m.info, &back.info, sizeof m.info);
    cvd_manifest_free(&back);
    cvd_manifest_free(&m);
}

/* Writes a Completed backup with w->key; its id into id. */
static void completed(struct world *w, char id[CVD_BACKUP_ID_MAX + 1])
{
    struct cvd_manifest m;

    assert_int_equal(cvd_target_new_id(w->t, id), 0);
    make_manifest(&m, id, shas);
    assert_int_equal(cvd_manifest_write(w->t, &m, w->key), 0);
    cvd_manifest_free(&m);
}

static void expect_refused(struct world *w, const char *id,
                           const unsigned char *key, int code,
                           const char *words)
{
    struct cvd_manifest m;

    assert_int_equal(cvd_manifest_read(w->t, id, key, &m), code);
    assert_non_null(strstr(cv_last_error(), id));
    if (!strstr(cv_last_error(), words))
        fail_msg("message \"%s\" lacks \"%s\"", cv_last_error(), words);
    assert_null(m.blocks);
}

static void test_mac_edited(void **state)
{
    struct world *w = *state;
    char id[CVD_BACKUP_ID_MAX + 1], path[128], *text, *p;
    size_t len;

    completed(w, id);
    snprintf(path, sizeof path, "%s/backups/%s.json", w->dir, id);
    text = slurp(path, &len);
    /* One digit of a block's checksum. */
    p = strstr(text, "2222");
    assert_non_null(p);
    *p = '4';
    spit(path, text, len);
    expect_refused(w, id, w->key, -EBADMSG, "does not match its MAC");
    free(text);
}

static void test_mac_truncated(void **state)
{
    struct world *w = *state;
    char id[CVD_BACKUP_ID_MAX + 1], path[128];
    struct stat st;

    completed(w, id);
    snprintf(path, sizeof path, "%s/backups/%s.json", w->dir, id);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 2), 0);
    expect_refused(w, id, w->key, -EBADMSG, "does not match its MAC");
    /* Without the key it does not parse either. */
    expect_refused(w, id, NULL, -EBADMSG, "does not parse");
}

static void test_mac_swapped(void **state)
{
    struct world *w = *state;
    char a[CVD_BACKUP_ID_MAX + 1], b[CVD_BACKUP_ID_MAX + 1], from[128],
         to[128], *text;
    size_t len;

    completed(w, a);
    completed(w, b);
    /* b's manifest and MAC (a genuine pair, same key) under a's name. */
    snprintf(from, sizeof from, "%s/backups/%s.json", w->dir, b);
    snprintf(to, sizeof to, "%s/backups/%s.json", w->dir, a);
    text = slurp(from, &len);
    spit(to, text, len);
    free(text);
    snprintf(from, sizeof from, "%s/backups/%s.mac", w->dir, b);
    snprintf(to, sizeof to, "%s/backups/%s.mac", w->dir, a);
    text = slurp(from, &len);
    spit(to, text, len);
    free(text);
    expect_refused(w, a, w->key, -EBADMSG, b);
    expect_refused(w, a, NULL, -EBADMSG, "swapped");
}

static void test_mac_wrong_key(void **state)
{
    struct world *w = *state;
    unsigned char other[CVD_BACKUP_MAC_KEY], vk[64];
    char id[CVD_BACKUP_ID_MAX + 1];
    struct cvd_manifest m;

    completed(w, id);
    /* Another volume key, or the same key and another volume's UUID. */
    memset(vk, 0x12, sizeof vk);
    assert_int_equal(cvd_backup_mac_key(vk, sizeof vk, UUID, other), 0);
    expect_refused(w, id, other, -EBADMSG, "not made with this volume's key");
    memset(vk, 0x11, sizeof vk);
    assert_int_equal(cvd_backup_mac_key(vk, sizeof vk,
                                        "0b9d5c2e-1111-4222-8333-444455556667",
                                        other), 0);
    expect_refused(w, id, other, -EBADMSG, "does not match its MAC");
    assert_int_equal(cvd_manifest_read(w->t, id, w->key, &m), 0);
    cvd_manifest_free(&m);
}

/* HKDF-SHA256 as docs/backup.md says: salt "cryptvol-backup-mac-v1", info
 * the UUID (computed with Python's hmac module). */
static void test_mac_key(void **state)
{
    static const char want[] =
        "455cfde44fd70d268c4a6cba8debaca47101ed4ce251f6cb012c15ba51eb522c";
    struct world *w = *state;
    char hex[65];

    for (int i = 0; i < CVD_BACKUP_MAC_KEY; i++)
        snprintf(hex + 2 * i, 3, "%02x", w->key[i]);
    assert_string_equal(hex, want);
}

static void test_in_progress(void **state)
{
    struct world *w = *state;
    char id[CVD_BACKUP_ID_MAX + 1], mac[128];
    struct cvd_manifest m, back;

    assert_int_equal(cvd_target_new_id(w->t, id), 0);
    make_manifest(&m, id, shas);
    free(m.blocks);
    m.blocks = NULL;
    m.nblocks = 0;
    m.info.state = CVD_BACKUP_IN_PROGRESS;
    m.info.finished = 0;
    assert_int_equal(cvd_manifest_write(w->t, &m, NULL), 0);
    snprintf(mac, sizeof mac, "%s/backups/%s.mac", w->dir, id);
    assert_false(exists(mac));
    assert_int_equal(cvd_manifest_read(w->t, id, NULL, &back), 0);
    assert_int_equal(back.info.state, CVD_BACKUP_IN_PROGRESS);
    assert_int_equal(back.nblocks, 0);
    /* With a key it cannot be authenticated. */
    expect_refused(w, id, w->key, -ENOENT, "no MAC");

    /* Completed, then Failed again: the MAC goes with Completed. */
    m.info.state = CVD_BACKUP_COMPLETED;
    assert_int_equal(cvd_manifest_write(w->t, &m, w->key), 0);
    assert_true(exists(mac));
    /* A cut between the manifest and its MAC: not Completed. */
    assert_int_equal(unlink(mac), 0);
    assert_int_equal(cvd_manifest_read(w->t, id, NULL, &back), 0);
    assert_int_equal(back.info.state, CVD_BACKUP_IN_PROGRESS);
    expect_refused(w, id, w->key, -ENOENT, "no MAC");
    assert_int_equal(cvd_manifest_write(w->t, &m, w->key), 0);
    m.info.state = CVD_BACKUP_FAILED;
    assert_int_equal(cvd_manifest_write(w->t, &m, NULL), 0);
    assert_false(exists(mac));
    cvd_manifest_free(&m);
}

static void test_manifest_checks(void **state)
{
    struct world *w = *state;
    char id[CVD_BACKUP_ID_MAX + 1], path[128], *text, *p;
    struct cvd_manifest m;
    struct cvd_manifest_block tmp;
    size_t len;

    /* Blocks out of order are refused on reading. */
    assert_int_equal(cvd_target_new_id(w->t, id), 0);
    make_manifest(&m, id, shas);
    tmp = m.blocks[0];
    m.blocks[0] = m.blocks[1];
    m.blocks[1] = tmp;
    assert_int_equal(cvd_manifest_write(w->t, &m, w->key), 0);
    expect_refused(w, id, w->key, -EBADMSG, "out of order");
    cvd_manifest_free(&m);

    /* Past rawSize. */
    make_manifest(&m, id, shas);
    m.info.raw_size -= 4096;
    m.info.size -= 4096;
    assert_int_equal(cvd_manifest_write(w->t, &m, NULL), 0);
    expect_refused(w, id, NULL, -EBADMSG, "past \"rawSize\"");
    cvd_manifest_free(&m);

    /* A held bitmap naming no sector. */
    make_manifest(&m, id, shas);
    assert_int_equal(cvd_manifest_write(w->t, &m, NULL), 0);
    snprintf(path, sizeof path, "%s/backups/%s.json", w->dir, id);
    text = slurp(path, &len);
    p = strstr(text, "\"held\":\"05");
    assert_non_null(p);
    memset(p + 8, '0', 64);
    spit(path, text, len);
    expect_refused(w, id, NULL, -EBADMSG, "\"held\"");
    free(text);
    cvd_manifest_free(&m);

    /* An id that would be a path. */
    assert_int_equal(cvd_manifest_read(w->t, "../cryptvol-backup", NULL, &m),
                     -EINVAL);
}

/* A child holds the lock shared until told to stop. */
static void test_lock(void **state)
{
    struct world *w = *state;
    int a = -1, b = -1, c = -1, ready[2], go[2];
    struct timespec t0, t1;
    char x = 0;
    pid_t pid;
    long ms;

    /* Shared with shared, across descriptors. */
    assert_int_equal(cvd_target_lock(w->t, CVD_TARGET_SHARED, 0, &a), 0);
    assert_int_equal(cvd_target_lock(w->t, CVD_TARGET_SHARED, 0, &b), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(cvd_target_lock(w->t, CVD_TARGET_EXCLUSIVE, 200, &c),
                     -EBUSY);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 200);
    assert_non_null(strstr(cv_last_error(), "busy"));
    assert_non_null(strstr(cv_last_error(), w->dir));
    cvd_target_unlock(a);
    cvd_target_unlock(b);

    /* Another process's shared lock. */
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd;

        if (cvd_target_lock(w->t, CVD_TARGET_SHARED, 0, &fd) < 0)
            _exit(1);
        if (write(ready[1], "r", 1) != 1 || read(go[0], &x, 1) != 1)
            _exit(2);
        _exit(0);
    }
    assert_int_equal(read(ready[0], &x, 1), 1);
    assert_int_equal(cvd_target_lock(w->t, CVD_TARGET_EXCLUSIVE, 50, &c),
                     -EBUSY);
    assert_int_equal(cvd_target_lock(w->t, CVD_TARGET_SHARED, 0, &a), 0);
    cvd_target_unlock(a);
    /* The exclusive lock waits for the child to let go. */
    assert_int_equal(write(go[1], "g", 1), 1);
    assert_int_equal(cvd_target_lock(w->t, CVD_TARGET_EXCLUSIVE, 5000, &c), 0);
    {
        int status;

        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    /* And excludes shared ones while held. */
    assert_int_equal(cvd_target_lock(w->t, CVD_TARGET_SHARED, 20, &a), -EBUSY);
    assert_non_null(strstr(cv_last_error(), "a delete"));
    cvd_target_unlock(c);
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);
}

static void test_collect(void **state)
{
    struct world *w = *state;
    char id[CVD_BACKUP_ID_MAX + 1], keep1[65], keep2[65], gone[65],
         path[256], empty[CVD_BACKUP_ID_MAX + 1];
    const char *named[3];
    uint64_t freed = 0, blocks, bytes, free_bytes;
    struct cvd_manifest m;
    FILE *f;

    put_seed(w, 10, CVD_BACKUP_BLOCK, keep1);
    put_seed(w, 11, 8 * KiB, keep2);
    put_seed(w, 12, 20 * KiB, gone);
    assert_int_equal(cvd_target_usage(w->t, &blocks, &bytes, &free_bytes), 0);
    assert_int_equal(blocks, 3);
    assert_int_equal(bytes, CVD_BACKUP_BLOCK + 28 * KiB);
    assert_true(free_bytes > 0);
    /* A temporary file a cut left beside a block. */
    snprintf(path, sizeof path, "%s/blocks/%.2s/%.2s/.tmp-%s-abcdef", w->dir,
             gone, gone + 2, gone);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("half", f);
    fclose(f);
    /* An id taken by a daemon killed before it wrote the manifest. */
    assert_int_equal(cvd_target_new_id(w->t, empty), 0);

    assert_int_equal(cvd_target_new_id(w->t, id), 0);
    named[0] = keep1;
    named[1] = keep2;
    named[2] = keep1;
    make_manifest(&m, id, named);
    m.blocks[2].sha256[0] = '\0';
    strcpy(m.blocks[2].sha256, keep2);
    assert_int_equal(cvd_manifest_write(w->t, &m, NULL), 0);

    assert_int_equal(cvd_target_collect(w->t, &freed), 0);
    assert_int_equal(freed, 20 * KiB + 4);
    assert_int_equal(cvd_target_block_exists(w->t, keep1), 1);
    assert_int_equal(cvd_target_block_exists(w->t, keep2), 1);
    assert_int_equal(cvd_target_block_exists(w->t, gone), 0);
    assert_false(exists(path));
    snprintf(path, sizeof path, "%s/backups/%s.json", w->dir, empty);
    assert_false(exists(path));

    /* A manifest that cannot be read stops it before anything goes. */
    put_seed(w, 12, 20 * KiB, gone);
    snprintf(path, sizeof path, "%s/backups/%s.json", w->dir, id);
    assert_int_equal(truncate(path, 100), 0);
    assert_int_equal(cvd_target_collect(w->t, &freed), -EBADMSG);
    assert_non_null(strstr(cv_last_error(), "no block removed"));
    assert_non_null(strstr(cv_last_error(), id));
    assert_int_equal(cvd_target_block_exists(w->t, gone), 1);
    assert_int_equal(cvd_target_block_exists(w->t, keep1), 1);

    /* Once that backup is removed, its blocks go too. */
    assert_int_equal(cvd_manifest_remove(w->t, id), 0);
    assert_int_equal(cvd_target_collect(w->t, &freed), 0);
    assert_int_equal(freed, CVD_BACKUP_BLOCK + 28 * KiB);
    assert_int_equal(cvd_target_usage(w->t, &blocks, &bytes, &free_bytes), 0);
    assert_int_equal(blocks, 0);
    cvd_manifest_free(&m);
}

static void test_list_remove(void **state)
{
    struct world *w = *state;
    char ids[3][CVD_BACKUP_ID_MAX + 1], path[128];
    struct cvd_backup_info *v;
    struct cvd_manifest m;
    size_t n;
    int i;

    for (i = 0; i < 3; i++) {
        assert_int_equal(cvd_target_new_id(w->t, ids[i]), 0);
        make_manifest(&m, ids[i], shas);
        m.info.created += i;        /* ids[2] is the newest */
        if (i == 1)
            strcpy(m.info.volume, "web");
        assert_int_equal(cvd_manifest_write(w->t, &m, w->key), 0);
        cvd_manifest_free(&m);
    }
    assert_int_equal(cvd_manifest_list(w->t, NULL, &v, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(v[0].id, ids[2]);
    assert_string_equal(v[1].id, ids[1]);
    assert_string_equal(v[2].id, ids[0]);
    assert_int_equal(v[0].blocks, 3);
    free(v);
    assert_int_equal(cvd_manifest_list(w->t, "db1", &v, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].id, ids[2]);
    assert_string_equal(v[1].id, ids[0]);
    free(v);
    assert_int_equal(cvd_manifest_list(w->t, "none", &v, &n), 0);
    assert_int_equal(n, 0);
    free(v);

    assert_int_equal(cvd_manifest_remove(w->t, ids[2]), 0);
    snprintf(path, sizeof path, "%s/backups/%s.mac", w->dir, ids[2]);
    assert_false(exists(path));
    snprintf(path, sizeof path, "%s/volumes/db1/%s", w->dir, ids[2]);
    assert_false(exists(path));
    assert_int_equal(cvd_manifest_list(w->t, "db1", &v, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].id, ids[0]);
    free(v);
    assert_int_equal(cvd_manifest_remove(w->t, ids[2]), -ENOENT);
    assert_non_null(strstr(cv_last_error(), ids[2]));
    expect_refused(w, ids[2], NULL, -ENOENT, "no such backup");

    assert_string_equal(cvd_backup_state_name(CVD_BACKUP_IN_PROGRESS),
                        "InProgress");
    {
        enum cvd_backup_state s;

        assert_int_equal(cvd_backup_state_parse("Failed", &s), 0);
        assert_int_equal(s, CVD_BACKUP_FAILED);
        assert_int_equal(cvd_backup_state_parse("failed", &s), -EINVAL);
    }
}

/* A tmpfs too small for the block: ENOSPC, said clearly, and nothing of
 * the block left. */
static void test_full(void **state)
{
    struct world *w = *state;
    char dir[128], hex[65], *buf;
    struct cvd_target *t = NULL;
    int stored = -1, r;

    snprintf(dir, sizeof dir, "%s/small", w->dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    if (mount("tmpfs", dir, "tmpfs", 0, "size=512k") != 0) {
        fprintf(stderr, "[  SKIP    ] test_full: cannot mount a tmpfs at %s: "
                "%s\n", dir, strerror(errno));
        skip();
    }
    snprintf(w->mounted, sizeof w->mounted, "%s", dir);
    buf = malloc(CVD_BACKUP_BLOCK);
    fill(buf, CVD_BACKUP_BLOCK, 20);
    assert_int_equal(cvd_target_sha256(buf, CVD_BACKUP_BLOCK, hex), 0);
    r = cvd_target_open(dir, &t);
    if (r == 0)
        r = cvd_target_block_put(t, hex, buf, CVD_BACKUP_BLOCK, &stored);
    if (r != -ENOSPC)
        fprintf(stderr, "put: %d %s\n", r, cv_last_error());
    assert_int_equal(r, -ENOSPC);
    assert_non_null(strstr(cv_last_error(), "is full"));
    assert_non_null(strstr(cv_last_error(), dir));
    assert_non_null(strstr(cv_last_error(), hex));
    assert_int_equal(stored, 0);
    assert_int_equal(count_files(dir, ".tmp-"), 0);
    assert_int_equal(cvd_target_block_exists(t, hex), 0);
    /* Smaller blocks still fit. */
    assert_int_equal(cvd_target_sha256(buf, 64 * KiB, hex), 0);
    assert_int_equal(cvd_target_block_put(t, hex, buf, 64 * KiB, &stored), 0);
    assert_int_equal(stored, 1);
    cvd_target_close(t);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_round_trip, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mac_edited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mac_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mac_swapped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mac_wrong_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mac_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

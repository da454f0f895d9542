/* The layer chain (lib/store/chain.h, docs/store.md): reads from the
 * newest layer, holes, punches, snapshots frozen while the head is
 * written, merge, rollback, parents and formats, adoption after a cut,
 * leftovers removed, the map against SEEK_DATA, the raw view, a wrapped
 * store (and one that knows its holes), removal.  test-chain-stress.c has the model, the races and the
 * bounds. */
#include "chain-test.h"

static void test_holes_and_writes(void **state)
{
    unsigned char buf[4 * BLK];
    struct runs runs = { .n = 0 };
    struct cv_chain *c = make("v");
    uint64_t run;
    int fmt;

    (void)state;
    assert_int_equal(cv_chain_size(c), RAW);
    assert_int_equal(cv_chain_data_offset(c), DOFF);
    assert_int_equal(cv_chain_formats(c), 1);
    assert_string_equal(cv_chain_format_volume(c, 0), "");
    /* A fresh chain: holes, read as zeros (the buffer was not). */
    memset(buf, 0xaa, sizeof buf);
    assert_int_equal(cv_chain_read(c, buf, sizeof buf, at(0), CV_CHAIN_TOP,
                                   record_run, &runs), 0);
    assert_string_equal(runs.s, "....");
    for (size_t i = 0; i < sizeof buf; i++)
        if (buf[i])
            fail_msg("byte %zu of a fresh chain is %u", i, buf[i]);
    assert_int_equal(cv_chain_lookup(c, at(0), NBLK * BLK, CV_CHAIN_TOP,
                                     &run, &fmt), CV_CHAIN_HOLE);
    assert_int_equal(run, NBLK * BLK);
    /* Written blocks are held by the head (id 1), others stay holes. */
    put(c, 1, 7);
    put(c, 2, 8);
    runs.n = 0;
    assert_int_equal(cv_chain_read(c, buf, sizeof buf, at(0), CV_CHAIN_TOP,
                                   record_run, &runs), 0);
    assert_string_equal(runs.s, ".00.");
    assert_int_equal(tag_of(buf + BLK, at(1) / BLK), 7);
    assert_int_equal(tag_of(buf + 2 * BLK, at(2) / BLK), 8);
    assert_int_equal(cv_chain_lookup(c, at(1), 8 * BLK, CV_CHAIN_TOP, &run,
                                     &fmt), 1);
    assert_int_equal(run, 2 * BLK);
    assert_int_equal(fmt, 0);
    /* Out of the data area, or not whole blocks: refused, saying so. */
    assert_int_equal(cv_chain_read(c, buf, BLK, 0, CV_CHAIN_TOP, NULL, NULL),
                     -ERANGE);
    assert_non_null(strstr(cv_last_error(), "outside the data area"));
    assert_int_equal(cv_chain_read(c, buf, BLK, RAW, CV_CHAIN_TOP, NULL,
                                   NULL), -ERANGE);
    assert_int_equal(cv_chain_read(c, buf, 100, at(0), CV_CHAIN_TOP, NULL,
                                   NULL), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "not whole"));
    assert_int_equal(cv_chain_write(c, buf, BLK, RAW - BLK / 2, 0), -ERANGE);
    /* Durable and still there after a reopen (the map comes from the
     * file system). */
    assert_int_equal(cv_chain_flush(c), 0);
    cv_chain_close(c);
    c = reopen("v", NULL, 0);
    assert_int_equal(get(c, 1), 7);
    assert_int_equal(get(c, 2), 8);
    assert_int_equal(get(c, 3), 0);
    cv_chain_close(c);
}

static void test_snapshot_frozen(void **state)
{
    struct cv_chain *c = make("v"), *s;
    struct cv_chain_layer_info *li;
    unsigned char buf[BLK];
    unsigned id, above;
    size_t n;
    uint64_t run;
    int fmt;

    (void)state;
    put(c, 0, 1);
    put(c, 1, 1);
    assert_int_equal(cv_chain_snapshot(c, "s1", 1764590000), 0);
    assert_true(file_exists("v", "layer-000002"));
    put(c, 1, 2);           /* into the new head */
    put(c, 2, 2);
    /* The head reads the newest layer holding each block. */
    assert_int_equal(get(c, 0), 1);
    assert_int_equal(get(c, 1), 2);
    assert_int_equal(get(c, 2), 2);
    /* Under the head (layer 2): the snapshot's view. */
    assert_int_equal(get_below(c, 1, 2), 1);
    assert_int_equal(get_below(c, 2, 2), 0);
    assert_int_equal(cv_chain_lookup(c, at(0), BLK, CV_CHAIN_TOP, &run,
                                     &fmt), 1);
    assert_int_equal(cv_chain_lookup(c, at(1), 2 * BLK, CV_CHAIN_TOP, &run,
                                     &fmt), 2);
    assert_int_equal(run, 2 * BLK);
    assert_int_equal(cv_chain_layer_has(c, 1, at(1), 4 * BLK, &run), 1);
    assert_int_equal(run, BLK);
    assert_int_equal(cv_chain_layer_has(c, CV_CHAIN_TOP, at(0), 4 * BLK,
                                        &run), 0);
    assert_int_equal(run, BLK);
    assert_int_equal(cv_chain_snapshot_layer(c, "s1", &id, &above), 0);
    assert_int_equal(id, 1);
    assert_int_equal(above, 2);
    assert_int_equal(cv_chain_snapshot_layer(c, "nope", &id, &above),
                     -ENOENT);
    /* The name is taken. */
    assert_int_equal(cv_chain_snapshot(c, "s1", 1), -EEXIST);
    assert_non_null(strstr(cv_last_error(), "snapshot \"s1\" exists"));
    assert_non_null(strstr(cv_last_error(), root));
    assert_int_equal(cv_chain_snapshot(c, "a/b", 1), -EINVAL);
    /* The snapshot's own view, opened while the head is written: frozen
     * and read-only. */
    s = reopen("v", "s1", 0);
    assert_true(cv_chain_readonly(s));
    assert_int_equal(get(s, 1), 1);
    put(c, 0, 3);
    assert_int_equal(get(s, 0), 1);
    assert_int_equal(get(c, 0), 3);
    fill(buf, at(0) / BLK, 9);
    assert_int_equal(cv_chain_write(s, buf, BLK, at(0), 0), -EROFS);
    assert_non_null(strstr(cv_last_error(), "snapshot \"s1\" is read-only"));
    assert_int_equal(cv_backend_pwrite(cv_chain_backend(s), buf, BLK, at(0),
                                       0), -EROFS);
    assert_int_equal(cv_chain_snapshot(s, "s2", 1), -EROFS);
    assert_int_equal(cv_chain_layers(s, &li, &n), 0);
    assert_int_equal(n, 1);
    assert_false(li[0].head);
    free(li);
    cv_chain_close(s);
    /* The list: ids, names, time, allocation from the map. */
    assert_int_equal(cv_chain_layers(c, &li, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(li[0].id, 1);
    assert_string_equal(li[0].snapshot, "s1");
    assert_int_equal(li[0].created, 1764590000);
    assert_int_equal(li[0].allocated, 2 * BLK);
    assert_false(li[0].head);
    assert_true(li[0].own);
    assert_int_equal(li[1].id, 2);
    assert_string_equal(li[1].snapshot, "");
    assert_true(li[1].head);
    assert_int_equal(li[1].allocated, 3 * BLK);
    assert_int_equal(li[1].state, CV_LAYER_READY);
    free(li);
    /* A missing snapshot view. */
    cv_chain_close(c);
    {
        char dir[300];

        path_of(dir, sizeof dir, "v");
        assert_int_equal(cv_chain_open(dir, "s9", 0, &s), -ENOENT);
        assert_non_null(strstr(cv_last_error(), "no snapshot \"s9\""));
    }
}

static void test_punch_falls_through(void **state)
{
    struct cv_chain *c = make("v");
    uint64_t run;
    int fmt;

    (void)state;
    put(c, 0, 1);
    assert_int_equal(cv_chain_snapshot(c, "s1", 1), 0);
    put(c, 0, 2);
    put(c, 5, 2);
    assert_int_equal(get(c, 0), 2);
    assert_int_equal(cv_chain_punch(c, at(0), BLK), 0);
    assert_int_equal(get(c, 0), 1);         /* the snapshot's shows */
    assert_int_equal(cv_chain_punch(c, at(5), BLK), 0);
    assert_int_equal(get(c, 5), 0);         /* nothing below: a hole */
    assert_int_equal(cv_chain_lookup(c, at(5), BLK, CV_CHAIN_TOP, &run,
                                     &fmt), CV_CHAIN_HOLE);
    assert_int_equal(cv_chain_punch(c, at(0) + 1, BLK), -EINVAL);
    /* The punch is in the file system, not only in the map. */
    cv_chain_close(c);
    c = reopen("v", NULL, 0);
    assert_int_equal(get(c, 0), 1);
    assert_int_equal(get(c, 5), 0);
    cv_chain_close(c);
}

/* Blocks the layer file holds by SEEK_DATA/SEEK_HOLE, independently. */
static void fs_map(const char *name, const char *file, char *held,
                   size_t nblk)
{
    char p[400];
    int fd;
    off_t pos = DOFF, end = (off_t)(DOFF + nblk * BLK);

    snprintf(p, sizeof p, "%s/%s/%s", root, name, file);
    assert_true((fd = open(p, O_RDONLY)) >= 0);
    memset(held, 0, nblk);
    while (pos < end) {
        off_t d = lseek(fd, pos, SEEK_DATA), h;

        if (d < 0 || d >= end)
            break;
        h = lseek(fd, d, SEEK_HOLE);
        for (off_t b = d; b < h && b < end; b += BLK)
            held[(b - DOFF) / BLK] = 1;
        pos = h;
    }
    close(fd);
}

static void test_map_matches_seek_data(void **state)
{
    struct cv_chain *c = make("v");
    char held[NBLK];
    uint64_t count = 0;
    struct cv_chain_layer_info *li;
    size_t n;

    (void)state;
    srand(42);
    for (unsigned i = 0; i < 40; i++)
        put(c, (unsigned)rand() % NBLK, 1);
    for (unsigned i = 0; i < 10; i++)
        assert_int_equal(cv_chain_punch(c, at((unsigned)rand() % NBLK), BLK),
                         0);
    cv_chain_close(c);
    c = reopen("v", NULL, CV_CHAIN_READONLY);
    fs_map("v", "layer-000001", held, NBLK);
    for (unsigned b = 0; b < NBLK; b++) {
        uint64_t run;
        int has = cv_chain_layer_has(c, CV_CHAIN_TOP, at(b), BLK, &run);

        if (has != held[b])
            fail_msg("block %u: map says %d, SEEK_DATA says %d", b, has,
                     held[b]);
        count += (uint64_t)held[b];
    }
    assert_true(count > 10);
    assert_int_equal(cv_chain_layers(c, &li, &n), 0);
    assert_int_equal(li[0].allocated, count * BLK);
    free(li);
    /* Read-only: no writes. */
    assert_int_equal(cv_chain_punch(c, at(0), BLK), -EROFS);
    assert_non_null(strstr(cv_last_error(), "read-only"));
    cv_chain_close(c);
}

/* s1 (blocks 0, 1), s2 (1, 2), head (2, 3): deleting s1 copies block 0
 * into s2 and drops s1; every view stays. */
static void test_merge_drop(void **state)
{
    struct cv_chain *c = make("v");
    struct cv_chain_layer_info *li;
    unsigned char buf[BLK];
    unsigned id, above;
    size_t n;
    uint64_t run;

    (void)state;
    put(c, 0, 1);
    put(c, 1, 1);
    assert_int_equal(cv_chain_snapshot(c, "s1", 1), 0);
    put(c, 1, 2);
    put(c, 2, 2);
    assert_int_equal(cv_chain_snapshot(c, "s2", 2), 0);
    put(c, 2, 3);
    put(c, 3, 3);
    assert_int_equal(cv_chain_snapshot_layer(c, "s1", &id, &above), 0);
    assert_int_equal(cv_chain_drop_layer(c, id), -EBUSY);   /* not marked */
    assert_non_null(strstr(cv_last_error(), "not being merged"));
    assert_int_equal(cv_chain_mark_merging(c, 3), -EBUSY);  /* the head */
    assert_int_equal(cv_chain_mark_merging(c, 99), -EBUSY);
    assert_int_equal(cv_chain_mark_merging(c, id), 0);
    /* Marked in the manifest: seen after a reopen. */
    cv_chain_close(c);
    c = reopen("v", NULL, 0);
    assert_int_equal(cv_chain_layers(c, &li, &n), 0);
    assert_int_equal(li[0].state, CV_LAYER_MERGING);
    free(li);
    assert_int_equal(cv_chain_mark_merging(c, id), 0);      /* resumes */
    /* The copy the image layer does: what s1 shows through s2. */
    for (unsigned b = 0; b < NBLK; b++) {
        if (cv_chain_layer_has(c, above, at(b), BLK, &run) == 1 ||
            cv_chain_layer_has(c, id, at(b), BLK, &run) != 1)
            continue;
        assert_int_equal(cv_chain_read(c, buf, BLK, at(b), above, NULL,
                                       NULL), 0);
        assert_int_equal(cv_chain_write_layer(c, above, buf, BLK, at(b)), 0);
    }
    assert_int_equal(cv_chain_sync_layer(c, above), 0);
    assert_int_equal(cv_chain_drop_layer(c, id), 0);
    assert_false(file_exists("v", "layer-000001"));
    assert_int_equal(cv_chain_snapshot_layer(c, "s1", &id, &above), -ENOENT);
    /* Views unchanged: s2's and the head's. */
    assert_int_equal(get_below(c, 0, 3), 1);
    assert_int_equal(get_below(c, 1, 3), 2);
    assert_int_equal(get_below(c, 2, 3), 2);
    assert_int_equal(get(c, 0), 1);
    assert_int_equal(get(c, 2), 3);
    cv_chain_close(c);
    c = reopen("v", "s2", 0);
    assert_int_equal(get(c, 0), 1);
    assert_int_equal(get(c, 1), 2);
    assert_int_equal(get(c, 3), 0);
    assert_int_equal(cv_chain_layers(c, &li, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(li[0].id, 2);
    free(li);
    cv_chain_close(c);
}

static void test_rollback(void **state)
{
    struct cv_chain *c = make("v");
    unsigned id, above;

    (void)state;
    put(c, 0, 1);
    assert_int_equal(cv_chain_snapshot(c, "s1", 1), 0);
    put(c, 0, 2);
    assert_int_equal(cv_chain_snapshot(c, "s2", 2), 0);
    put(c, 0, 3);
    put(c, 1, 3);
    assert_int_equal(cv_chain_rollback(c, "s1"), -EBUSY);
    assert_non_null(strstr(cv_last_error(), "newer are \"s2\""));
    assert_int_equal(get(c, 0), 3);                 /* nothing changed */
    assert_int_equal(cv_chain_rollback(c, "s9"), -ENOENT);
    assert_int_equal(cv_chain_resize(c, RAW + BLK), 0);
    assert_int_equal(cv_chain_rollback(c, "s2"), 0);
    assert_int_equal(cv_chain_size(c), RAW);    /* s2's size */
    assert_int_equal(get(c, 0), 2);
    assert_int_equal(get(c, 1), 0);
    assert_false(file_exists("v", "layer-000003"));  /* the old head */
    assert_true(file_exists("v", "layer-000004"));
    put(c, 1, 4);
    cv_chain_close(c);
    c = reopen("v", NULL, 0);
    assert_int_equal(get(c, 0), 2);
    assert_int_equal(get(c, 1), 4);
    assert_int_equal(cv_chain_snapshot_layer(c, "s2", &id, &above), 0);
    assert_int_equal(above, 4);
    cv_chain_close(c);
}

static void write_header(struct cv_chain *c, unsigned char byte)
{
    unsigned char hdr[DOFF];

    memset(hdr, byte, sizeof hdr);
    assert_int_equal(cv_backend_pwrite(cv_chain_backend(c), hdr, DOFF, 0, 0),
                     0);
}

/* base@gold <- own (its own format) @c1 <- same (the same format as own):
 * same reads base's layers as format 1 with base's header. */
static void test_parents_formats(void **state)
{
    struct cv_chain_parent p = { "base", "gold", 1 }, q = { "own", "c1", 0 };
    struct cv_chain_parent got;
    struct cv_chain *base = make("base"), *own, *same;
    struct cv_chain_layer_info *li;
    unsigned char hdr[DOFF], buf[4 * BLK];
    struct runs runs = { .n = 0 };
    uint64_t size;
    char dir[300];
    size_t n;

    (void)state;
    write_header(base, 0xb0);
    put(base, 0, 1);
    put(base, 1, 1);
    assert_int_equal(cv_chain_snapshot(base, "gold", 1), 0);
    put(base, 1, 9);            /* after gold: no clone sees it */
    path_of(dir, sizeof dir, "own");
    assert_int_equal(cv_chain_create(dir, DOFF, RAW, &p), 0);
    assert_int_equal(cv_chain_open(dir, NULL, 0, &own), 0);
    write_header(own, 0x0c);
    assert_int_equal(cv_chain_formats(own), 2);
    assert_string_equal(cv_chain_format_volume(own, 1), "base");
    assert_int_equal(cv_backend_size(cv_chain_format_header(own, 1), &size),
                     0);
    assert_int_equal(size, DOFF);
    assert_int_equal(cv_backend_pread(cv_chain_format_header(own, 1), hdr,
                                      DOFF, 0), 0);
    assert_int_equal(hdr[0], 0xb0);
    assert_int_equal(hdr[DOFF - 1], 0xb0);
    assert_int_equal(cv_backend_pwrite(cv_chain_format_header(own, 1), hdr,
                                       DOFF, 0, 0), -EROFS);
    assert_int_equal(cv_chain_parent(own, &got), 0);
    assert_string_equal(got.volume, "base");
    assert_string_equal(got.snapshot, "gold");
    assert_true(got.own_format);
    assert_int_equal(get(own, 1), 1);       /* gold's, not the head's 9 */
    put(own, 1, 2);
    assert_int_equal(cv_chain_snapshot(own, "c1", 2), 0);
    /* A clone of the same format as own. */
    path_of(dir, sizeof dir, "same");
    assert_int_equal(cv_chain_create(dir, DOFF, RAW, &q), 0);
    assert_int_equal(cv_chain_open(dir, NULL, 0, &same), 0);
    assert_int_equal(cv_chain_formats(same), 2);
    assert_string_equal(cv_chain_format_volume(same, 0), "");
    assert_string_equal(cv_chain_format_volume(same, 1), "base");
    put(same, 3, 3);
    assert_int_equal(cv_chain_read(same, buf, sizeof buf, at(0),
                                   CV_CHAIN_TOP, record_run, &runs), 0);
    /* block 0 base's (format 1), 1 own's (0), 2 a hole, 3 same's (0) */
    assert_string_equal(runs.s, "10.0");
    assert_int_equal(tag_of(buf, at(0) / BLK), 1);
    assert_int_equal(tag_of(buf + BLK, at(1) / BLK), 2);
    assert_int_equal(cv_chain_layers(same, &li, &n), 0);
    assert_int_equal(n, 3);     /* base's 1, own's 1, same's head */
    assert_false(li[0].own);
    assert_int_equal(li[0].format, 1);
    assert_false(li[1].own);
    assert_int_equal(li[1].format, 0);
    assert_true(li[2].own);
    assert_true(li[2].head);
    free(li);
    assert_int_equal(cv_chain_bottom(same), 1);
    /* Flatten: refused until the bottom holds every parent block. */
    assert_int_equal(cv_chain_drop_parent(same), -EBUSY);
    assert_non_null(strstr(cv_last_error(), "not flattened"));
    for (unsigned b = 0; b < 2; b++) {
        assert_int_equal(cv_chain_read(same, buf, BLK, at(b),
                                       cv_chain_bottom(same), NULL, NULL), 0);
        assert_int_equal(cv_chain_write_layer(same, cv_chain_bottom(same),
                                              buf, BLK, at(b)), 0);
    }
    assert_int_equal(cv_chain_drop_parent(same), 0);
    assert_int_equal(cv_chain_formats(same), 1);
    assert_int_equal(cv_chain_parent(same, &got), -ENOENT);
    assert_int_equal(get(same, 0), 1);
    assert_int_equal(cv_chain_drop_parent(same), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "has no parent"));
    cv_chain_close(same);
    same = reopen("same", NULL, 0);
    assert_int_equal(cv_chain_formats(same), 1);
    assert_int_equal(get(same, 0), 1);
    assert_int_equal(get(same, 1), 2);
    assert_int_equal(get(same, 3), 3);
    cv_chain_close(same);
    /* A clone of a missing snapshot: nothing made. */
    p.snapshot = "nope";
    path_of(dir, sizeof dir, "bad");
    assert_int_equal(cv_chain_create(dir, DOFF, RAW, &p), -ENOENT);
    assert_non_null(strstr(cv_last_error(), "no snapshot \"nope\""));
    assert_false(file_exists("bad", ""));
    cv_chain_close(own);
    cv_chain_close(base);
}

/* An image file: header bytes 0x11, data blocks tagged. */
static void make_image(const char *path)
{
    unsigned char hdr[DOFF], buf[BLK];
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    memset(hdr, 0x11, sizeof hdr);
    assert_int_equal(pwrite(fd, hdr, DOFF, 0), DOFF);
    for (unsigned b = 0; b < NBLK; b += 2) {
        fill(buf, at(b) / BLK, 5);
        assert_int_equal(pwrite(fd, buf, BLK, (off_t)at(b)), BLK);
    }
    assert_int_equal(ftruncate(fd, RAW), 0);
    close(fd);
}

static void check_adopted(const char *name)
{
    struct cv_chain *c = reopen(name, NULL, 0);
    unsigned char hdr[DOFF];
    char held[NBLK];

    assert_int_equal(cv_backend_pread(cv_chain_backend(c), hdr, DOFF, 0), 0);
    assert_int_equal(hdr[0], 0x11);
    assert_int_equal(hdr[DOFF - 1], 0x11);
    for (unsigned b = 0; b < NBLK; b++)
        assert_int_equal(get(c, b), b % 2 ? 0 : 5);
    assert_int_equal(cv_chain_size(c), RAW);
    cv_chain_close(c);
    /* The header is out of the layer: a hole there. */
    {
        char p[400];
        int fd;

        snprintf(p, sizeof p, "%s/%s/layer-000001", root, name);
        assert_true((fd = open(p, O_RDONLY)) >= 0);
        assert_true(lseek(fd, 0, SEEK_DATA) >= DOFF);
        close(fd);
    }
    fs_map(name, "layer-000001", held, NBLK);
    assert_int_equal(held[0], 1);
    assert_int_equal(held[1], 0);
}

static void test_adopt(void **state)
{
    char img[300], dir[300], tmp[320], cmd[2000];

    (void)state;
    path_of(img, sizeof img, "v.img");
    path_of(dir, sizeof dir, "v");
    make_image(img);
    assert_int_equal(cv_chain_adopt_image(img, dir, DOFF), 0);
    check_adopted("v");
    /* Done: again is a no-op; an image of that name now is refused. */
    assert_int_equal(cv_chain_adopt_image(img, dir, DOFF), 0);
    check_adopted("v");

    /* A cut before the image moved: a half-made v2.adopting. */
    path_of(img, sizeof img, "v2.img");
    path_of(dir, sizeof dir, "v2");
    snprintf(tmp, sizeof tmp, "%s.adopting", dir);
    make_image(img);
    assert_int_equal(mkdir(tmp, 0700), 0);
    snprintf(cmd, sizeof cmd, "echo junk > '%s/header.tmp'; echo '{' > "
             "'%s/chain'", tmp, tmp);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(cv_chain_adopt_image(img, dir, DOFF), 0);
    assert_int_equal(access(img, F_OK), -1);
    assert_int_equal(access(tmp, F_OK), -1);
    check_adopted("v2");

    /* A cut after the move, before the punch: the image is v3.adopting's
     * layer with its header still in it. */
    path_of(img, sizeof img, "v3.img");
    path_of(dir, sizeof dir, "v3");
    snprintf(tmp, sizeof tmp, "%s.adopting", dir);
    make_image(img);
    assert_int_equal(cv_chain_adopt_image(img, dir, DOFF), 0);
    snprintf(cmd, sizeof cmd, "mv '%s' '%s' && dd if=/dev/zero bs=%u "
             "count=4 2>/dev/null | tr '\\0' '\\021' | "
             "dd of='%s/layer-000001' conv=notrunc 2>/dev/null", dir, tmp,
             BLK, tmp);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(cv_chain_adopt_image(img, dir, DOFF), 0);
    check_adopted("v3");

    /* Bad input: nothing of that name, an offset that is not a block. */
    path_of(img, sizeof img, "none.img");
    path_of(dir, sizeof dir, "none");
    assert_int_equal(cv_chain_adopt_image(img, dir, DOFF), -ENOENT);
    assert_non_null(strstr(cv_last_error(), "no such image"));
    assert_int_equal(cv_chain_adopt_image(img, dir, 100), -EINVAL);
}

static void test_leftovers_removed(void **state)
{
    struct cv_chain *c = make("v");
    char cmd[600];

    (void)state;
    put(c, 0, 1);
    cv_chain_close(c);
    snprintf(cmd, sizeof cmd, "cd '%s/v' && echo x > layer-000007 && "
             "echo x > chain.tmp && echo x > notes && echo x > layer-7",
             root);
    assert_int_equal(system(cmd), 0);
    /* Read-only opens leave them. */
    c = reopen("v", NULL, CV_CHAIN_READONLY);
    cv_chain_close(c);
    assert_true(file_exists("v", "layer-000007"));
    c = reopen("v", NULL, 0);
    assert_false(file_exists("v", "layer-000007"));
    assert_false(file_exists("v", "chain.tmp"));
    assert_true(file_exists("v", "layer-000001"));
    assert_true(file_exists("v", "notes"));     /* not ours */
    assert_true(file_exists("v", "layer-7"));
    assert_int_equal(get(c, 0), 1);
    cv_chain_close(c);
}

static void write_manifest(const char *json)
{
    char p[400];
    FILE *f;

    snprintf(p, sizeof p, "%s/v/chain", root);
    assert_non_null(f = fopen(p, "w"));
    fputs(json, f);
    fclose(f);
}

static void expect_bad(const char *json, const char *msg)
{
    struct cv_chain *c;
    char dir[300];

    write_manifest(json);
    path_of(dir, sizeof dir, "v");
    assert_int_equal(cv_chain_open(dir, NULL, 0, &c), -EINVAL);
    if (!strstr(cv_last_error(), msg) || !strstr(cv_last_error(), "manifest"))
        fail_msg("manifest %s: \"%s\" lacks \"%s\"", json, cv_last_error(),
                 msg);
}

static void test_bad_manifest(void **state)
{
    struct cv_chain *c = make("v");

    (void)state;
    cv_chain_close(c);
    expect_bad("{", "not JSON");
    expect_bad("{\"format\": \"x\", \"version\": 1}", "not a cryptvol-chain");
    expect_bad("{\"format\": \"cryptvol-chain\", \"version\": 2}",
               "version 2");
    expect_bad("{\"format\": \"cryptvol-chain\", \"version\": 1, "
               "\"dataOffset\": 100, \"nextId\": 2, \"layers\": "
               "[{\"id\": 1}]}",
               "dataOffset");
    expect_bad("{\"format\": \"cryptvol-chain\", \"version\": 1, "
               "\"dataOffset\": 16384, \"nextId\": 2, \"layers\": []}",
               "\"layers\"");
    expect_bad("{\"format\": \"cryptvol-chain\", \"version\": 1, "
               "\"dataOffset\": 16384, \"nextId\": 2, \"layers\": "
               "[{\"id\": 1, \"snapshot\": \"s\"}]}", "the head");
    expect_bad("{\"format\": \"cryptvol-chain\", \"version\": 1, "
               "\"dataOffset\": 16384, \"nextId\": 3, \"layers\": "
               "[{\"id\": 1}, {\"id\": 2}]}", "names no snapshot");
    expect_bad("{\"format\": \"cryptvol-chain\", \"version\": 1, "
               "\"dataOffset\": 16384, \"nextId\": 2, \"layers\": "
               "[{\"id\": 2}]}", "below nextId");
    expect_bad("{\"format\": \"cryptvol-chain\", \"version\": 1, "
               "\"dataOffset\": 16384, \"nextId\": 4, \"layers\": "
               "[{\"id\": 1, \"snapshot\": \"a\"}, {\"id\": 2, \"snapshot\": "
               "\"a\"}, {\"id\": 3}]}", "listed twice");
    expect_bad("{\"format\": \"cryptvol-chain\", \"version\": 1, "
               "\"dataOffset\": 16384, \"nextId\": 2, \"parent\": "
               "{\"volume\": \"../x\", \"snapshot\": \"s\", \"ownFormat\": "
               "false}, \"layers\": [{\"id\": 1}]}", "\"parent\"");
    expect_bad("{\"format\": \"cryptvol-chain\", \"version\": 1, "
               "\"dataOffset\": 16384, \"nextId\": 3, \"layers\": "
               "[{\"id\": 1, \"snapshot\": \"a\", \"state\": \"done\"}, "
               "{\"id\": 2}]}", "\"state\"");
    /* The files named in a bad manifest are left alone. */
    assert_true(file_exists("v", "layer-000001"));
}

static void test_backend_view(void **state)
{
    struct cv_chain *c = make("v");
    struct cv_backend *b = cv_chain_backend(c);
    unsigned char buf[3 * BLK], hdr[DOFF];
    uint64_t size;

    (void)state;
    /* [0, data offset): the header file. */
    write_header(c, 0x5a);
    assert_int_equal(cv_backend_pread(b, hdr, DOFF, 0), 0);
    assert_int_equal(hdr[DOFF - 1], 0x5a);
    {
        char p[400];
        struct stat st;

        snprintf(p, sizeof p, "%s/v/header", root);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_size, DOFF);
    }
    /* A write across the data offset: the header's part and the head's. */
    memset(buf, 0x77, sizeof buf);
    assert_int_equal(cv_backend_pwrite(b, buf, 2 * BLK, DOFF - BLK, 0), 0);
    assert_int_equal(cv_backend_pread(b, hdr, DOFF, 0), 0);
    assert_int_equal(hdr[DOFF - 1], 0x77);
    assert_int_equal(hdr[DOFF - BLK - 1], 0x5a);
    assert_int_equal(cv_chain_read(c, buf, BLK, at(0), CV_CHAIN_TOP, NULL,
                                   NULL), 0);
    assert_int_equal(buf[0], 0x77);
    /* A partial write to a block only a snapshot holds is completed from
     * it, not from zeros. */
    put(c, 1, 4);
    assert_int_equal(cv_chain_snapshot(c, "s", 1), 0);
    memset(buf, 0xee, 100);
    assert_int_equal(cv_backend_pwrite(b, buf, 100, at(1) + 8, 0), 0);
    assert_int_equal(cv_chain_read(c, buf, BLK, at(1), CV_CHAIN_TOP, NULL,
                                   NULL), 0);
    assert_int_equal(buf[8], 0xee);
    assert_int_equal(buf[107], 0xee);
    assert_int_equal(buf[108], 4);      /* the tag byte of fill() */
    assert_int_equal(buf[4], 4);
    assert_int_equal(buf[0], (unsigned char)(at(1) / BLK));
    /* Unaligned reads. */
    assert_int_equal(cv_backend_pread(b, buf, 10, at(1) + 3), 0);
    assert_int_equal(buf[5], 0xee);
    /* Discard of a block the snapshot holds: zeros, not the snapshot's. */
    assert_int_equal(cv_backend_discard(b, at(1), BLK), 0);
    assert_int_equal(get(c, 1), 0);
    assert_int_equal(cv_chain_layer_has(c, CV_CHAIN_TOP, at(1), BLK, &size),
                     1);
    /* Size and resize: the head's. */
    assert_int_equal(cv_backend_size(b, &size), 0);
    assert_int_equal(size, RAW);
    assert_int_equal(cv_backend_resize(b, RAW + 8 * BLK), 0);
    assert_int_equal(cv_chain_size(c), RAW + 8 * BLK);
    put(c, NBLK + 7, 6);
    assert_int_equal(get(c, NBLK + 7), 6);
    assert_int_equal(cv_backend_pread(b, buf, BLK, RAW + 8 * BLK), -ERANGE);
    /* A shrink drops what was past the end; a grow does not bring it
     * back. */
    assert_int_equal(cv_chain_resize(c, RAW), 0);
    assert_int_equal(cv_chain_resize(c, RAW + 8 * BLK), 0);
    assert_int_equal(get(c, NBLK + 7), 0);
    assert_int_equal(cv_chain_resize(c, DOFF - BLK), -EINVAL);
    /* A shrink that would drop data a snapshot holds (and bring it back
     * with a later grow) is refused, naming it; nothing changes. */
    assert_int_equal(cv_chain_resize(c, at(1)), -EBUSY);
    assert_non_null(strstr(cv_last_error(), "snapshot \"s\""));
    assert_int_equal(cv_chain_size(c), RAW + 8 * BLK);
    assert_int_equal(cv_chain_resize(c, at(2)), 0);
    assert_int_equal(cv_chain_resize(c, RAW), 0);
    assert_int_equal(get(c, 1), 0);     /* the head's zeros, kept */
    /* set_data_offset cuts the header file and is in the manifest. */
    assert_int_equal(cv_chain_set_data_offset(c, 2 * BLK), 0);
    assert_int_equal(cv_chain_data_offset(c), 2 * BLK);
    assert_int_equal(cv_chain_set_data_offset(c, 100), -EINVAL);
    cv_chain_close(c);
    c = reopen("v", NULL, 0);
    assert_int_equal(cv_chain_data_offset(c), 2 * BLK);
    cv_chain_close(c);
}

static void test_wrap(void **state)
{
    struct cv_backend *mem;
    struct cv_chain *c;
    unsigned char buf[BLK];
    struct runs runs = { .n = 0 };
    uint64_t run;
    int fmt;

    (void)state;
    assert_int_equal(cv_backend_mem_new("raw", RAW, &mem), 0);
    assert_int_equal(cv_chain_wrap(mem, 100, &c), -EINVAL);
    assert_int_equal(cv_chain_wrap(mem, DOFF, &c), 0);
    assert_ptr_equal(cv_chain_backend(c), mem);
    assert_ptr_equal(cv_chain_format_header(c, 0), mem);
    assert_string_equal(cv_chain_name(c), "raw");
    /* Every block held: read as it is (raw zeros, not a hole). */
    assert_int_equal(cv_chain_read(c, buf, BLK, at(0), CV_CHAIN_TOP,
                                   record_run, &runs), 0);
    assert_string_equal(runs.s, "0");
    assert_int_equal(cv_chain_lookup(c, at(0), NBLK * BLK, CV_CHAIN_TOP,
                                     &run, &fmt), 1);
    assert_int_equal(run, NBLK * BLK);
    put(c, 3, 2);
    assert_int_equal(get(c, 3), 2);
    assert_int_equal(cv_backend_pread(mem, buf, BLK, at(3)), 0);
    assert_int_equal(tag_of(buf, at(3) / BLK), 2);
    assert_int_equal(cv_chain_snapshot(c, "s", 1), -ENOTSUP);
    assert_non_null(strstr(cv_last_error(), "raw"));
    assert_int_equal(cv_chain_rollback(c, "s"), -ENOTSUP);
    assert_int_equal(cv_chain_flush(c), 0);
    assert_int_equal(cv_chain_size(c), RAW);
    cv_chain_close(c);
    cv_backend_close(mem);
}

/* A store that says which blocks hold data (backend.h, pread_held): a
 * memory store whose written blocks are held. */
struct held_store {
    struct cv_backend b;
    struct cv_backend *mem;
    uint8_t held[RAW / BLK / 8 + 1];
};

static int hs_pread(struct cv_backend *b, void *buf, size_t len, uint64_t off)
{
    return cv_backend_pread(((struct held_store *)b)->mem, buf, len, off);
}

static int hs_pread_held(struct cv_backend *b, void *buf, size_t len,
                         uint64_t off, uint8_t *held)
{
    struct held_store *h = (struct held_store *)b;

    for (size_t i = 0; i < len / BLK; i++) {
        size_t blk = off / BLK + i;

        if (h->held[blk / 8] & (1u << (blk % 8)))
            held[i / 8] |= (uint8_t)(1u << (i % 8));
    }
    /* Unheld blocks read as garbage here: the chain must zero them. */
    memset(buf, 0xee, len);
    for (size_t i = 0; i < len / BLK; i++)
        if (held[i / 8] & (1u << (i % 8)))
            assert_int_equal(cv_backend_pread(h->mem, (char *)buf + i * BLK,
                                              BLK, off + i * BLK), 0);
    return 0;
}

static int hs_pwrite(struct cv_backend *b, const void *buf, size_t len,
                     uint64_t off, unsigned flags)
{
    struct held_store *h = (struct held_store *)b;

    for (uint64_t blk = off / BLK; blk < (off + len + BLK - 1) / BLK; blk++)
        h->held[blk / 8] |= (uint8_t)(1u << (blk % 8));
    return cv_backend_pwrite(h->mem, buf, len, off, flags);
}

static int hs_size(struct cv_backend *b, uint64_t *size)
{
    return cv_backend_size(((struct held_store *)b)->mem, size);
}

static int hs_flush(struct cv_backend *b)
{
    (void)b;
    return 0;
}

static const struct cv_backend_ops held_ops = {
    .kind = "held", .pread = hs_pread, .pwrite = hs_pwrite,
    .flush = hs_flush, .get_size = hs_size, .pread_held = hs_pread_held,
};

static int xform_runs(void *arg, void *dst, const void *src, size_t n,
                      size_t buf_off, int format)
{
    assert_ptr_equal(dst, src);
    return record_run(arg, buf_off, n, format);
}

static void test_wrap_held(void **state)
{
    struct held_store h = { .b = { .ops = &held_ops, .name = "remote" } };
    unsigned char buf[4 * BLK];
    struct runs runs = { .n = 0 };
    struct cv_chain *c;

    (void)state;
    assert_int_equal(cv_backend_mem_new("raw", RAW, &h.mem), 0);
    h.b.no_shape = "volume v: its layers are not here";
    assert_int_equal(cv_chain_wrap(&h.b, DOFF, &c), 0);
    /* Nothing written: every block a hole, read as zeros. */
    assert_int_equal(cv_chain_read(c, buf, sizeof buf, at(0), CV_CHAIN_TOP,
                                   record_run, &runs), 0);
    assert_string_equal(runs.s, "....");
    for (size_t i = 0; i < sizeof buf; i++)
        if (buf[i])
            fail_msg("byte %zu of a hole is %u", i, buf[i]);
    put(c, 1, 5);
    put(c, 3, 6);
    runs.n = 0;
    assert_int_equal(cv_chain_read(c, buf, sizeof buf, at(0), CV_CHAIN_TOP,
                                   record_run, &runs), 0);
    assert_string_equal(runs.s, ".0.0");
    assert_int_equal(tag_of(buf + BLK, at(1) / BLK), 5);
    assert_int_equal(tag_of(buf + 3 * BLK, at(3) / BLK), 6);
    assert_int_equal(buf[0], 0);
    assert_int_equal(buf[2 * BLK], 0);
    /* The transforming read gets the holes as runs of their own, in
     * place. */
    runs.n = 0;
    assert_int_equal(cv_chain_read_xform(c, buf, sizeof buf, at(0),
                                         CV_CHAIN_TOP, xform_runs, &runs), 0);
    assert_string_equal(runs.s, ".0.0");
    assert_int_equal(buf[2 * BLK], 0);
    /* A change of shape says what the store says. */
    assert_int_equal(cv_chain_snapshot(c, "s", 1), -ENOTSUP);
    assert_string_equal(cv_last_error(), "volume v: its layers are not here");
    cv_chain_close(c);
    cv_backend_close(h.mem);
}

static void test_remove(void **state)
{
    struct cv_chain *c = make("v");
    char dir[300];

    (void)state;
    assert_int_equal(cv_chain_snapshot(c, "s", 1), 0);
    cv_chain_close(c);
    path_of(dir, sizeof dir, "v");
    assert_int_equal(cv_chain_remove(dir), 0);
    assert_int_equal(access(dir, F_OK), -1);
    assert_int_equal(cv_chain_remove(dir), 0);      /* missing: fine */
    /* create refuses an existing dir. */
    c = make("w");
    cv_chain_close(c);
    path_of(dir, sizeof dir, "w");
    assert_int_equal(cv_chain_create(dir, DOFF, RAW, NULL), -EEXIST);
    assert_non_null(strstr(cv_last_error(), dir));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_holes_and_writes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_frozen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_punch_falls_through, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_map_matches_seek_data, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_merge_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parents_formats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leftovers_removed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_manifest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_view, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrap_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

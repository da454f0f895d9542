/* cv_volume_fill_layer: deleting a snapshot merges its layer into the one
 * above (no view changes, also while the volume is written), and flatten
 * copies a clone's parent blocks into its own bottom layer, re-encrypted
 * with the clone's key where the formats differ and byte for byte where
 * they are the same; then the parent can go and the clone opens with its
 * own key alone. */
#include "volume-chain-fixture.h"

#include <sched.h>
#include <stdatomic.h>

struct progress {
    unsigned calls;
    uint64_t last;
    int stop;                   /* returned from the first call */
};

static int on_progress(void *arg, uint64_t done)
{
    struct progress *p = arg;

    assert_true(done >= p->last);
    p->calls++;
    p->last = done;
    return p->stop;
}

static void write_blocks(struct vol *o, unsigned char *shadow, uint64_t b0,
                         uint64_t n)
{
    unsigned char *buf = malloc(n * BLK);

    assert_non_null(buf);
    fill_random(buf, n * BLK);
    check_ok(cv_volume_write(o->v, buf, n * BLK, b0 * BLK, 0), "write");
    memcpy(shadow + b0 * BLK, buf, n * BLK);
    free(buf);
}

/* A writer of partial writes over the volume while a merge into the head
 * copies: each must survive the copy. */
struct writer {
    struct vol *o;
    unsigned char *shadow;
    _Atomic int stop;
    _Atomic unsigned writes;
    int result;
    char message[256];
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    unsigned char buf[600];

    while (!atomic_load(&w->stop) && w->result == 0) {
        uint64_t off = rng_below(VOL_SIZE - sizeof buf);
        size_t len = 1 + (size_t)rng_below(sizeof buf);

        fill_random(buf, len);
        w->result = cv_volume_write(w->o->v, buf, len, off, 0);
        if (w->result < 0)
            snprintf(w->message, sizeof w->message, "%s", cv_last_error());
        memcpy(w->shadow + off, buf, len);
        atomic_fetch_add(&w->writes, 1);
    }
    return NULL;
}

/* Merges of a snapshot holding the whole volume into the head while it is
 * written: the merge holds the blocks it copies, so no write in between
 * is undone by the old data it copies. */
static void test_merge_while_written(void **state)
{
    struct fx *f = *state;
    unsigned char *shadow = malloc(VOL_SIZE);
    struct writer w;
    struct vol o;
    unsigned id, above, round, before;
    pthread_t t;
    char name[8];

    assert_non_null(shadow);
    vol_open(f, f->base, NULL, 0, &o);
    write_blocks(&o, shadow, 0, VOL_SIZE / BLK);
    for (round = 0; round < 8; round++) {
        snprintf(name, sizeof name, "m%u", round);
        check_ok(cv_chain_snapshot(o.c, name, round), "snapshot");
        check_ok(cv_chain_snapshot_layer(o.c, name, &id, &above), "layer");
        check_ok(cv_chain_mark_merging(o.c, id), "mark merging");
        w = (struct writer){ .o = &o, .shadow = shadow };
        assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
        while (atomic_load(&w.writes) == 0)
            sched_yield();
        before = atomic_load(&w.writes);
        check_ok(cv_volume_fill_layer(o.v, above, &id, 1, 0, VOL_SIZE, NULL,
                                      NULL), "merge into the head");
        atomic_store(&w.stop, 1);
        pthread_join(t, NULL);
        if (w.result < 0)
            fail_msg("writer: %d (%s)", w.result, w.message);
        check_ok(cv_chain_drop_layer(o.c, id), "drop");
        assert_int_equal(layer_holds(&o, CV_CHAIN_TOP, 0, VOL_SIZE),
                         VOL_SIZE);
        if (atomic_load(&w.writes) == before)
            fprintf(stderr, "round %u: no write during the merge\n", round);
        assert_vol_is(&o, shadow, "the head after a merge while written");
    }
    vol_close(&o);
    free(shadow);
}

/* s1: blocks 0-9; s2: 5-14; head: 12-20.  Deleting s1 fills s2's layer
 * with blocks 0-4; deleting s2 fills the head with 0-11. */
static void test_merge(void **state)
{
    struct fx *f = *state;
    unsigned char *head = calloc(1, VOL_SIZE), *s2 = calloc(1, VOL_SIZE);
    struct progress p = { 0 };
    struct vol o, v2;
    unsigned id1, id2, above, hid;

    assert_true(head && s2);
    vol_open(f, f->base, NULL, 0, &o);
    write_blocks(&o, head, 0, 10);
    check_ok(cv_chain_snapshot(o.c, "s1", 1), "snapshot s1");
    write_blocks(&o, head, 5, 10);
    check_ok(cv_chain_snapshot(o.c, "s2", 2), "snapshot s2");
    memcpy(s2, head, VOL_SIZE);
    write_blocks(&o, head, 12, 9);
    check_ok(cv_chain_snapshot_layer(o.c, "s1", &id1, &above), "s1's layer");
    check_ok(cv_chain_snapshot_layer(o.c, "s2", &id2, &hid), "s2's layer");
    assert_int_equal(above, id2);

    /* Refused: a target below its source, a range not of whole blocks. */
    cv_clear_error();
    assert_int_equal(cv_volume_fill_layer(o.v, id1, &id2, 1, 0, VOL_SIZE,
                                          NULL, NULL), -EINVAL);
    assert_message_has("is not below layer");
    cv_clear_error();
    assert_int_equal(cv_volume_fill_layer(o.v, id2, &id1, 1, 512, BLK, NULL,
                                          NULL), -EINVAL);
    assert_message_has("not whole 4096-byte blocks");

    /* s1 into s2: blocks 0-4 copied, no view changes. */
    check_ok(cv_chain_mark_merging(o.c, id1), "mark s1 merging");
    check_ok(cv_volume_fill_layer(o.v, id2, &id1, 1, 0, VOL_SIZE, on_progress,
                                  &p), "merge s1 into s2");
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.last, 5 * BLK);
    assert_int_equal(layer_holds(&o, id2, 0, VOL_SIZE), 15 * BLK);
    assert_vol_is(&o, head, "the head after s1 merged into s2");
    /* Called again (a resume), nothing is left to copy. */
    p = (struct progress){ 0 };
    check_ok(cv_volume_fill_layer(o.v, id2, &id1, 1, 0, VOL_SIZE, on_progress,
                                  &p), "merge again");
    assert_int_equal(p.last, 0);
    check_ok(cv_chain_sync_layer(o.c, id2), "sync s2");
    check_ok(cv_chain_drop_layer(o.c, id1), "drop s1");
    assert_vol_is(&o, head, "the head after s1 is gone");
    vol_open(f, f->base, "s2", 0, &v2);
    assert_vol_is(&v2, s2, "s2 after s1 is gone");
    vol_close(&v2);

    /* s2 into the head: blocks 0-11. */
    p = (struct progress){ 0 };
    check_ok(cv_chain_mark_merging(o.c, id2), "mark s2 merging");
    check_ok(cv_volume_fill_layer(o.v, hid, &id2, 1, 0, VOL_SIZE, on_progress,
                                  &p), "merge s2 into the head");
    assert_int_equal(p.last, 12 * BLK);
    assert_int_equal(layer_holds(&o, CV_CHAIN_TOP, 0, VOL_SIZE), 21 * BLK);
    check_ok(cv_chain_drop_layer(o.c, id2), "drop s2");
    assert_vol_is(&o, head, "the head after s2 merged into it");
    vol_reopen(f, &o);
    assert_vol_is(&o, head, "the head after both merges, reopened");

    /* Only the layers named are copied from: s4's block 30, not what s3
     * under it holds.  Progress that says stop stops the copy with its
     * value. */
    check_ok(cv_chain_snapshot(o.c, "s3", 3), "snapshot s3");
    write_blocks(&o, head, 30, 1);
    check_ok(cv_chain_snapshot(o.c, "s4", 4), "snapshot s4");
    check_ok(cv_chain_snapshot_layer(o.c, "s4", &id1, &above), "s4's layer");
    p = (struct progress){ .stop = 42 };
    assert_int_equal(cv_volume_fill_layer(o.v, above, &id1, 1, 0, VOL_SIZE,
                                          on_progress, &p), 42);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.last, BLK);
    assert_int_equal(layer_holds(&o, CV_CHAIN_TOP, 0, VOL_SIZE), BLK);
    p = (struct progress){ 0 };
    check_ok(cv_volume_fill_layer(o.v, above, &id1, 1, 0, VOL_SIZE,
                                  on_progress, &p), "merge s4 into the head");
    assert_int_equal(p.last, 0);
    assert_vol_is(&o, head, "the head after s4 merged into it");
    vol_close(&o);
    free(head);
    free(s2);
}

/* Flatten a clone: every parent block its bottom layer lacks is copied
 * there; then the parent is dropped, and deleted, and the clone still
 * reads the same with its own key alone. */
static void flatten(struct fx *f, int own_format)
{
    unsigned char *shadow = malloc(VOL_SIZE), a[BLK], b[BLK];
    struct progress p = { 0 };
    struct vol o;
    unsigned parent, bottom;
    uint64_t k;

    assert_non_null(shadow);
    base_with_snapshot(f, shadow);
    make_clone(f, own_format);
    vol_open(f, f->clone, NULL, 0, &o);
    assert_int_equal(cv_chain_formats(o.c), own_format ? 2 : 1);
    /* Two blocks copied up already, one written where the parent has a
     * hole. */
    write_blocks(&o, shadow, MARK_BLOCK + 1, 1);
    check_ok(cv_volume_write(o.v, "x", 1, 3 * BLK + 5, 0), "copy up");
    shadow[3 * BLK + 5] = 'x';
    write_blocks(&o, shadow, HOLE_BLOCK, 1);
    parent = first_parent_layer(&o, f->base);
    bottom = cv_chain_bottom(o.c);

    check_ok(cv_volume_fill_layer(o.v, bottom, NULL, 0, 0, VOL_SIZE,
                                  on_progress, &p), "flatten");
    /* The parent holds every block but HOLE_BLOCK; two were copied up. */
    assert_int_equal(p.last, (VOL_SIZE / BLK - 3) * BLK);
    assert_int_equal(layer_holds(&o, bottom, 0, VOL_SIZE), VOL_SIZE);
    assert_vol_is(&o, shadow, "the clone after the copy");
    check_ok(cv_chain_sync_layer(o.c, bottom), "sync");
    for (k = 0; k < VOL_SIZE / BLK; k += 7) {
        if (k == MARK_BLOCK + 1 || k == 3 || k == HOLE_BLOCK)
            continue;
        if (own_format) {
            layer_block_decrypts(f->clone, bottom, k, o.key[0], o.keylen[0],
                                 cv_volume_sector_size(o.v),
                                 shadow + k * BLK, 1, "the flattened clone");
            continue;
        }
        /* Same format: the parent's ciphertext, copied as it is. */
        layer_block(f->clone, bottom, k, a);
        layer_block(f->base, parent, k, b);
        if (memcmp(a, b, BLK) != 0)
            fail_msg("block %llu: the clone's copy is not the parent's "
                     "ciphertext", (unsigned long long)k);
    }
    assert_file_lacks(f->clone, bottom, shadow + MARK_BLOCK * BLK,
                      MARKER_LEN);

    check_ok(cv_chain_drop_parent(o.c), "drop the parent");
    vol_close(&o);
    check_ok(cv_chain_remove(f->base), "remove the base");
    vol_open(f, f->clone, NULL, 0, &o);
    assert_int_equal(cv_chain_formats(o.c), 1);
    assert_vol_is(&o, shadow, "the flattened clone, its parent gone");
    vol_close(&o);
    free(shadow);
}

static void test_flatten_own_format(void **state)
{
    flatten(*state, 1);
}

static void test_flatten_same_format(void **state)
{
    flatten(*state, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TESTS(test_merge),
        FX_TESTS(test_merge_while_written),
        FX_TESTS(test_flatten_own_format),
        FX_TESTS(test_flatten_same_format),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

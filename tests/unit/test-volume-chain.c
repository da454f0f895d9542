/* cv_volume on layer chains (lib/store/chain.h) in a temporary directory:
 * a fresh volume reads zeros, partial writes over a snapshot's blocks copy
 * them up, a clone of its own format reads each block with its format's
 * key and re-encrypts what it copies up (checked against OpenSSL's
 * AES-XTS on the layer files themselves), zeroing over lower layers hides
 * them, extents show holes, concurrent partial writers of one parent
 * block never tear it.  Merge and flatten (cv_volume_fill_layer) are
 * test-volume-fill.c's. */
#include "volume-chain-fixture.h"

#include <sched.h>
#include <stdatomic.h>

/* ------------------------------------------------------------------ */

/* A fresh volume reads zeros, has no data, and a write of one byte makes
 * its block (only) data, the rest of that block still zeros. */
static void test_fresh_reads_zeros(void **state)
{
    struct fx *f = *state;
    struct vol o;
    unsigned char *shadow = calloc(1, VOL_SIZE);
    struct extents e = { 0 };
    static const unsigned char one = 0xa5;

    assert_non_null(shadow);
    vol_open(f, f->base, NULL, 0, &o);
    assert_int_equal(cv_volume_size(o.v), VOL_SIZE);
    assert_vol_is(&o, shadow, "a fresh volume");
    collect_extents(&o, 0, VOL_SIZE, &e);
    expect_extent(&e, 0, VOL_SIZE, CV_EXTENT_HOLE | CV_EXTENT_ZERO);
    assert_int_equal(e.n, 1);
    assert_int_equal(layer_holds(&o, CV_CHAIN_TOP, 0, VOL_SIZE), 0);

    check_ok(cv_volume_write(o.v, &one, 1, 5000, 0), "write one byte");
    shadow[5000] = one;
    assert_vol_is(&o, shadow, "one byte written");
    assert_int_equal(layer_holds(&o, CV_CHAIN_TOP, 0, VOL_SIZE), BLK);
    vol_reopen(f, &o);
    assert_vol_is(&o, shadow, "one byte written, reopened");
    collect_extents(&o, 0, VOL_SIZE, &e);
    assert_int_equal(e.n, 3);
    expect_extent(&e, 0, BLK, CV_EXTENT_HOLE | CV_EXTENT_ZERO);
    expect_extent(&e, 1, BLK, 0);
    expect_extent(&e, 2, VOL_SIZE - 2 * BLK, CV_EXTENT_HOLE | CV_EXTENT_ZERO);
    vol_close(&o);
    free(shadow);
}

/* The writes of test_snapshot_partial_writes: inside a sector, sectors
 * inside a block (the copy-up of 512-byte sectors), across blocks. */
static void partial_write(struct vol *o, unsigned char *shadow, uint64_t off,
                          uint64_t len)
{
    unsigned char *buf = malloc(len);

    assert_non_null(buf);
    fill_random(buf, len);
    check_ok(cv_volume_write(o->v, buf, len, off, 0), "partial write");
    memcpy(shadow + off, buf, len);
    free(buf);
}

static void test_snapshot_partial_writes(void **state)
{
    struct fx *f = *state;
    unsigned char *shadow = malloc(VOL_SIZE), *old = malloc(VOL_SIZE);
    struct vol o, s;
    uint64_t ss, off, len;
    int i;

    assert_true(shadow && old);
    vol_open(f, f->base, NULL, 0, &o);
    ss = cv_volume_sector_size(o.v);
    fill_random(shadow, VOL_SIZE);
    check_ok(cv_volume_write(o.v, shadow, VOL_SIZE, 0, 0), "fill");
    memcpy(old, shadow, VOL_SIZE);
    check_ok(cv_chain_snapshot(o.c, "s1", 1), "snapshot");
    assert_int_equal(layer_holds(&o, CV_CHAIN_TOP, 0, VOL_SIZE), 0);

    /* One sector in the middle of a block, and one byte. */
    partial_write(&o, shadow, 3 * BLK + ss, ss);
    partial_write(&o, shadow, 5 * BLK + 77, 1);
    assert_vol_is(&o, shadow, "a sector and a byte over the snapshot");
    assert_int_equal(layer_holds(&o, CV_CHAIN_TOP, 0, VOL_SIZE), 2 * BLK);
    for (i = 0; i < 200; i++) {
        off = rng_below(VOL_SIZE - 1);
        switch (i % 4) {
        case 0: len = 1 + rng_below(ss); break;
        case 1: off = off / ss * ss; len = ss * (1 + rng_below(3)); break;
        case 2: len = 1 + rng_below(3 * BLK); break;
        default: len = BLK - off % BLK + 1 + rng_below(BLK); break;
        }
        if (len > VOL_SIZE - off)
            len = VOL_SIZE - off;
        partial_write(&o, shadow, off, len);
        if (i % 50 == 49)
            assert_vol_is(&o, shadow, "partial writes over the snapshot");
    }
    vol_reopen(f, &o);
    assert_vol_is(&o, shadow, "partial writes over the snapshot, reopened");
    vol_open(f, f->base, "s1", 0, &s);
    assert_vol_is(&s, old, "the snapshot after writes over it");
    assert_int_equal(cv_volume_write(s.v, shadow, 1, 0, 0), -EROFS);
    vol_close(&s);
    vol_close(&o);
    free(shadow);
    free(old);
}

/* ------------------------------------------------------------------ */
/* A clone of its own format. */

static void test_clone_formats(void **state)
{
    struct fx *f = *state;
    unsigned char *shadow = malloc(VOL_SIZE), blk[BLK];
    struct cv_volume_key one;
    struct cv_volume *v = NULL;
    struct vol o;
    unsigned base_layer;
    uint64_t ss;

    assert_non_null(shadow);
    base_with_snapshot(f, shadow);
    make_clone(f, 1);
    vol_open(f, f->clone, NULL, 0, &o);
    assert_int_equal(cv_chain_formats(o.c), 2);
    ss = cv_volume_sector_size(o.v);
    assert_int_equal(ss, f->cfg->clone_ss);
    assert_vol_is(&o, shadow, "the clone, before any write");

    /* A parent block is the parent's ciphertext, in the parent's layer. */
    base_layer = first_parent_layer(&o, f->base);
    layer_block_decrypts(f->base, base_layer, MARK_BLOCK, o.key[1],
                         o.keylen[1], f->cfg->base_ss,
                         shadow + MARK_BLOCK * BLK, 1, "the base's s1 layer");

    /* A partial write copies the marker block up, re-encrypted with the
     * clone's key; a sector-aligned one inside a block too; the hole
     * block stays zeros around the write. */
    partial_write(&o, shadow, MARK_BLOCK * BLK + 300, 100);
    partial_write(&o, shadow, (MARK_BLOCK + 2) * BLK + ss % BLK, ss);
    partial_write(&o, shadow, HOLE_BLOCK * BLK + 1000, 10);
    assert_vol_is(&o, shadow, "the clone after partial writes");
    assert_int_equal(layer_holds(&o, CV_CHAIN_TOP, 0, VOL_SIZE), 3 * BLK);
    layer_block_decrypts(f->clone, head_id(&o), MARK_BLOCK, o.key[0],
                         o.keylen[0], ss, shadow + MARK_BLOCK * BLK, 1,
                         "the clone's head");
    layer_block_decrypts(f->clone, head_id(&o), MARK_BLOCK, o.key[1],
                         o.keylen[1], f->cfg->base_ss,
                         shadow + MARK_BLOCK * BLK, 0, "the clone's head");
    layer_block_decrypts(f->clone, head_id(&o), MARK_BLOCK + 2, o.key[0],
                         o.keylen[0], ss, shadow + (MARK_BLOCK + 2) * BLK, 1,
                         "the clone's head");
    layer_block_decrypts(f->clone, head_id(&o), HOLE_BLOCK, o.key[0],
                         o.keylen[0], ss, shadow + HOLE_BLOCK * BLK, 1,
                         "the clone's head");
    /* The project's own cipher agrees with OpenSSL's. */
    xts_decrypts(f->clone, head_id(&o), MARK_BLOCK, o.key[0], o.keylen[0], ss,
                 shadow + MARK_BLOCK * BLK);
    assert_file_lacks(f->clone, head_id(&o), shadow + MARK_BLOCK * BLK,
                      MARKER_LEN);

    vol_reopen(f, &o);
    assert_vol_is(&o, shadow, "the clone after partial writes, reopened");
    check_ok(cv_volume_read(o.v, blk, BLK, MARK_BLOCK * BLK), "read");

    /* One key for two formats is refused, saying so; so is a key whose
     * header puts the data elsewhere. */
    one.key = o.key[0];
    one.keylen = o.keylen[0];
    one.info = *cv_volume_info(o.v);
    cv_clear_error();
    assert_int_equal(cv_volume_open_chain(o.c, &one, 1, NULL, 0, &v), -EINVAL);
    assert_message_has("the chain has 2 formats, but 1 keys were given");
    assert_null(v);
    {
        struct cv_volume_key two[2] = { one, one };
        two[1].info.data_offset += BLK;
        cv_clear_error();
        assert_int_equal(cv_volume_open_chain(o.c, two, 2, NULL, 0, &v),
                         -EINVAL);
        assert_message_has("format 1 (base) puts the data at");
        assert_null(v);
    }
    vol_close(&o);
    free(shadow);
}

/* ------------------------------------------------------------------ */
/* Zeroing and discard over a lower layer. */

static void test_zero_over_lower(void **state)
{
    struct fx *f = *state;
    unsigned char *shadow = malloc(VOL_SIZE), *buf = malloc(10 * BLK);
    struct vol o, s;
    unsigned char *old = malloc(VOL_SIZE);

    assert_true(shadow && buf && old);
    vol_open(f, f->base, NULL, 0, &o);
    memset(shadow, 0, VOL_SIZE);
    fill_random(shadow, 100 * BLK);
    check_ok(cv_volume_write(o.v, shadow, 100 * BLK, 0, 0), "fill");
    memcpy(old, shadow, VOL_SIZE);
    check_ok(cv_chain_snapshot(o.c, "s1", 1), "snapshot");
    /* Blocks 150-159 are the head's alone. */
    fill_random(buf, 10 * BLK);
    check_ok(cv_volume_write(o.v, buf, 10 * BLK, 150 * BLK, 0), "write");
    memcpy(shadow + 150 * BLK, buf, 10 * BLK);

    /* Over the snapshot's blocks: encrypted zeros in the head. */
    check_ok(cv_volume_write_zeroes(o.v, 50 * BLK + 100, 0, CV_WRITE_FUA),
             "zero over the snapshot");
    memset(shadow, 0, 50 * BLK + 100);
    assert_vol_is(&o, shadow, "zeroed over the snapshot");
    assert_int_equal(layer_holds(&o, CV_CHAIN_TOP, 0, 51 * BLK), 51 * BLK);
    /* Over the head's own blocks: punched. */
    check_ok(cv_volume_write_zeroes(o.v, 10 * BLK, 150 * BLK, 0),
             "zero over the head's own blocks");
    memset(shadow + 150 * BLK, 0, 10 * BLK);
    assert_int_equal(layer_holds(&o, CV_CHAIN_TOP, 150 * BLK, 10 * BLK), 0);
    /* Inside one block, and across a block edge, over the snapshot. */
    check_ok(cv_volume_write_zeroes(o.v, 7, 70 * BLK + 9, 0), "zero 7 bytes");
    memset(shadow + 70 * BLK + 9, 0, 7);
    check_ok(cv_volume_write_zeroes(o.v, 200, 72 * BLK - 100, 0),
             "zero across a block edge");
    memset(shadow + 72 * BLK - 100, 0, 200);
    assert_vol_is(&o, shadow, "zeroed");

    /* Discard: the whole blocks read as zeros, partial ones keep their
     * data. */
    check_ok(cv_volume_discard(o.v, 10 * BLK - 10, 80 * BLK + 10),
             "discard over the snapshot");
    memset(shadow + 81 * BLK, 0, 9 * BLK);
    fill_random(buf, BLK);
    check_ok(cv_volume_write(o.v, buf, BLK, 120 * BLK, 0), "write");
    memcpy(shadow + 120 * BLK, buf, BLK);
    check_ok(cv_volume_discard(o.v, BLK, 120 * BLK), "discard the head's own");
    memset(shadow + 120 * BLK, 0, BLK);
    assert_int_equal(layer_holds(&o, CV_CHAIN_TOP, 120 * BLK, BLK), 0);
    assert_vol_is(&o, shadow, "discarded");
    vol_reopen(f, &o);
    assert_vol_is(&o, shadow, "zeroed and discarded, reopened");
    vol_open(f, f->base, "s1", 0, &s);
    assert_vol_is(&s, old, "the snapshot under zeroes");
    assert_int_equal(cv_volume_discard(s.v, BLK, 0), -EROFS);
    vol_close(&s);
    vol_close(&o);
    free(shadow);
    free(buf);
    free(old);
}

/* ------------------------------------------------------------------ */
/* Extents. */

static int stop_second(void *arg, uint64_t len, unsigned flags)
{
    int *calls = arg;

    (void)len, (void)flags;
    return ++*calls == 2 ? 7 : 0;
}

static void test_extents(void **state)
{
    struct fx *f = *state;
    unsigned char *buf = malloc(10 * BLK);
    struct extents e = { 0 };
    struct vol o;
    int calls = 0;

    assert_non_null(buf);
    fill_random(buf, 10 * BLK);
    vol_open(f, f->base, NULL, 0, &o);
    check_ok(cv_volume_write(o.v, buf, 10 * BLK, 0, 0), "write 0-9");
    check_ok(cv_chain_snapshot(o.c, "s1", 1), "snapshot");
    check_ok(cv_volume_write(o.v, buf, 10 * BLK, 20 * BLK, 0), "write 20-29");
    /* Zeros over the snapshot are data (encrypted zeros), not a hole. */
    check_ok(cv_volume_write_zeroes(o.v, 3 * BLK, 5 * BLK, 0), "zero 5-7");
    /* Data in the snapshot and the head next to each other: one extent. */
    check_ok(cv_volume_write(o.v, buf, 2 * BLK, 10 * BLK, 0), "write 10-11");

    collect_extents(&o, 100, VOL_SIZE - 100, &e);
    assert_int_equal(e.n, 4);
    expect_extent(&e, 0, 12 * BLK - 100, 0);
    expect_extent(&e, 1, 8 * BLK, CV_EXTENT_HOLE | CV_EXTENT_ZERO);
    expect_extent(&e, 2, 10 * BLK, 0);
    expect_extent(&e, 3, VOL_SIZE - 30 * BLK,
                  CV_EXTENT_HOLE | CV_EXTENT_ZERO);
    /* Inside one block. */
    collect_extents(&o, 15 * BLK + 5, 10, &e);
    assert_int_equal(e.n, 1);
    expect_extent(&e, 0, 10, CV_EXTENT_HOLE | CV_EXTENT_ZERO);
    /* The callback's non-zero stops it. */
    assert_int_equal(cv_volume_extents(o.v, 0, VOL_SIZE, stop_second, &calls),
                     7);
    assert_int_equal(calls, 2);
    cv_clear_error();
    assert_int_equal(cv_volume_extents(o.v, VOL_SIZE - 1, 2, stop_second,
                                       &calls), -ERANGE);
    assert_message_has("beyond the end of the volume");
    vol_close(&o);
    free(buf);
}

/* ------------------------------------------------------------------ */
/* Concurrent partial writers of one block the head does not hold. */

/* Three writers of three of the eight pieces of a block: the other five
 * keep what the layer below holds.  Few threads, so that on two cores they
 * do run at once; rounds over every block, a snapshot before each round
 * after the first, so that each round copies every block up again. */
#define WRITERS 3
#define PIECES 8
#define ROUNDS 4
#define RACE_BLOCKS (VOL_SIZE / BLK)

struct racer {
    struct vol *o;
    unsigned id, round;
    uint64_t piece;             /* bytes each writer owns in a block */
    pthread_barrier_t *start;
    int result;
    char message[256];
};

static void racer_pattern(unsigned id, unsigned round, uint64_t b,
                          unsigned char *p, uint64_t len)
{
    memset(p, (int)(0x10 + id + 4 * round + 16 * (b % 8)), len);
}

static void *racer_main(void *arg)
{
    struct racer *r = arg;
    unsigned char buf[BLK];
    uint64_t b;

    for (b = 0; b < RACE_BLOCKS && r->result == 0; b++) {
        racer_pattern(r->id, r->round, b, buf, r->piece);
        pthread_barrier_wait(r->start);
        r->result = cv_volume_write(r->o->v, buf, r->piece,
                                    b * BLK + r->id * 2 * r->piece, 0);
        if (r->result < 0)
            snprintf(r->message, sizeof r->message, "%s", cv_last_error());
    }
    /* The others must not wait at a barrier this one left. */
    for (; b < RACE_BLOCKS; b++)
        pthread_barrier_wait(r->start);
    return NULL;
}

static void race_round(struct vol *o, unsigned round)
{
    struct racer r[WRITERS];
    pthread_t t[WRITERS];
    pthread_barrier_t start;
    unsigned i;

    assert_int_equal(pthread_barrier_init(&start, NULL, WRITERS), 0);
    for (i = 0; i < WRITERS; i++) {
        r[i] = (struct racer){ .o = o, .id = i, .round = round,
                               .piece = BLK / PIECES, .start = &start };
        assert_int_equal(pthread_create(&t[i], NULL, racer_main, &r[i]), 0);
    }
    for (i = 0; i < WRITERS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    for (i = 0; i < WRITERS; i++)
        if (r[i].result < 0)
            fail_msg("writer %u: %d (%s)", i, r[i].result, r[i].message);
}

/* Each writer owns every other piece of a block (a sector of 512-byte
 * sectors, or 512 bytes of a 4 KiB one): whatever the order, each block
 * must end as what lay below (the pieces nobody writes included) under
 * every writer's piece.  A copy-up that did not hold the whole block
 * would bring back the lower layer's bytes over another writer's piece. */
static void test_concurrent_copy_up(void **state)
{
    struct fx *f = *state;
    unsigned char *shadow = malloc(VOL_SIZE), got[BLK];
    uint64_t b, piece = BLK / PIECES;
    unsigned i, round, k;
    struct vol o;
    char name[16];

    assert_non_null(shadow);
    base_with_snapshot(f, shadow);
    make_clone(f, 1);
    vol_open(f, f->clone, NULL, 0, &o);
    for (round = 0; round < ROUNDS; round++) {
        snprintf(name, sizeof name, "r%u", round);
        if (round)
            check_ok(cv_chain_snapshot(o.c, name, round), "snapshot");
        race_round(&o, round);
        for (b = 0; b < RACE_BLOCKS; b++)
            for (i = 0; i < WRITERS; i++)
                racer_pattern(i, round, b, shadow + b * BLK + i * 2 * piece,
                              piece);
        for (b = 0; b < RACE_BLOCKS; b++) {
            check_ok(cv_volume_read(o.v, got, BLK, b * BLK), "read");
            for (k = 0; k < BLK && got[k] == shadow[b * BLK + k]; k++)
                ;
            if (k < BLK)
                fail_msg("round %u: block %llu torn at byte %u (%s): 0x%02x, "
                         "want 0x%02x", round, (unsigned long long)b, k,
                         k / piece % 2 == 0 && k / piece / 2 < WRITERS ?
                         "a writer's piece" : "a piece nobody wrote",
                         got[k], shadow[b * BLK + k]);
        }
    }
    vol_close(&o);
    free(shadow);
}

/* ------------------------------------------------------------------ */
/* Snapshots while the volume is written. */

struct snap_writer {
    struct vol *o;
    unsigned char *shadow;
    _Atomic int stop;
    _Atomic unsigned writes;
    int result;
    char message[256];
};

/* Sector writes and writes of a few bytes inside blocks the head holds
 * (the paths that write only their sectors there), over RACE_SPAN blocks
 * written before the first snapshot: few, so that most writes find their
 * block in the head. */
#define RACE_SPAN 4

static void *snap_writer_main(void *arg)
{
    struct snap_writer *w = arg;
    uint64_t ss = cv_volume_sector_size(w->o->v), off, len;
    unsigned char buf[BLK];
    unsigned kind = 0;

    while (!atomic_load(&w->stop) && w->result == 0) {
        off = rng_below(RACE_SPAN * BLK - ss);
        if (kind++ % 2 == 0) {
            off = off / ss * ss;
            len = ss;
        } else {
            len = 1 + rng_below(100);
        }
        fill_random(buf, len);
        w->result = cv_volume_write(w->o->v, buf, len, off, 0);
        memcpy(w->shadow + off, buf, len);
        if (w->result < 0)
            snprintf(w->message, sizeof w->message, "%s", cv_last_error());
        atomic_fetch_add(&w->writes, 1);
    }
    return NULL;
}

/* A snapshot that comes between a write's look at the head and its write
 * must not leave a part of a block alone in the new head (the rest would
 * read zeros).  A race: the more snapshots, the likelier one comes there. */
#define SNAPSHOTS 60
static void test_snapshot_while_written(void **state)
{
    struct fx *f = *state;
    unsigned char *shadow = calloc(1, VOL_SIZE);
    struct snap_writer w;
    struct vol o;
    pthread_t t;
    unsigned i, seen;
    char name[16];

    assert_non_null(shadow);
    vol_open(f, f->base, NULL, 0, &o);
    fill_random(shadow, RACE_SPAN * BLK);
    check_ok(cv_volume_write(o.v, shadow, RACE_SPAN * BLK, 0, 0), "fill");
    w = (struct snap_writer){ .o = &o, .shadow = shadow };
    assert_int_equal(pthread_create(&t, NULL, snap_writer_main, &w), 0);
    for (i = 0; i < SNAPSHOTS; i++) {
        seen = atomic_load(&w.writes);
        while (atomic_load(&w.writes) < seen + 3 && !w.result)
            sched_yield();
        snprintf(name, sizeof name, "w%u", i);
        check_ok(cv_chain_snapshot(o.c, name, i), "snapshot while written");
    }
    atomic_store(&w.stop, 1);
    pthread_join(t, NULL);
    if (w.result < 0)
        fail_msg("writer: %d (%s)", w.result, w.message);
    assert_vol_is(&o, shadow, "the volume after snapshots while written");
    vol_reopen(f, &o);
    assert_vol_is(&o, shadow, "the volume after snapshots, reopened");
    vol_close(&o);
    free(shadow);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TESTS(test_fresh_reads_zeros),
        FX_TESTS(test_snapshot_partial_writes),
        FX_TESTS(test_clone_formats),
        FX_TESTS(test_zero_over_lower),
        FX_TESTS(test_extents),
        FX_TESTS(test_concurrent_copy_up),
        FX_TESTS(test_snapshot_while_written),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

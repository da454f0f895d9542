/* The layer chain under load: a model of its layers under random
 * changes, maps across 128 MiB regions, the memory bound of a 1 TiB chain,
 * punches racing reads, readers and writers across snapshots
 * (docs/testing.md, "The layer chain"). */
#include <malloc.h>
#include <signal.h>
#include <sys/wait.h>

#include "chain-test.h"

/* ---- a model of the layers against the chain, under random changes ---- */
#define MB 200u                 /* data blocks */
#define ML 12                   /* layers at most */

struct model {
    size_t n;                   /* layers, oldest first; the last: head */
    unsigned id[ML + 1];
    unsigned tag[ML + 1][MB];   /* 0: not held */
    unsigned next_id;
};

/* The index of the layer the view under index top reads blk from, or -1. */
static int model_find(const struct model *m, size_t top, unsigned blk)
{
    for (size_t i = top; i-- > 0;)
        if (m->tag[i][blk])
            return (int)i;
    return -1;
}

static void model_check(struct cv_chain *c, const struct model *m)
{
    static unsigned char buf[MB * BLK];
    struct cv_chain_layer_info *li;
    size_t n;

    assert_int_equal(cv_chain_layers(c, &li, &n), 0);
    assert_int_equal(n, m->n);
    for (size_t i = 0; i < n; i++) {
        uint64_t held = 0;

        assert_int_equal(li[i].id, m->id[i]);
        for (unsigned b = 0; b < MB; b++)
            held += m->tag[i][b] != 0;
        assert_int_equal(li[i].allocated, held * BLK);
    }
    free(li);
    /* Every view: the head's and the one under each layer. */
    for (size_t top = 0; top <= m->n; top++) {
        unsigned below = top == m->n ? CV_CHAIN_TOP : m->id[top];

        assert_int_equal(cv_chain_read(c, buf, sizeof buf, at(0), below, NULL,
                                       NULL), 0);
        for (unsigned b = 0; b < MB; b++) {
            int i = model_find(m, top, b);
            unsigned want = i < 0 ? 0 : m->tag[i][b];
            unsigned got = tag_of(buf + (size_t)b * BLK, at(b) / BLK);

            if (got != want)
                fail_msg("view under %u, block %u: read %u, expected %u "
                         "(layer %d)", below, b, got, want,
                         i < 0 ? -1 : (int)m->id[i]);
        }
        /* Lookups: runs of one answer, each block right. */
        for (unsigned b = 0; b < MB;) {
            uint64_t run;
            int fmt, id = cv_chain_lookup(c, at(b), (MB - b) * BLK, below,
                                          &run, &fmt);

            assert_true(run >= BLK && run % BLK == 0);
            for (unsigned k = 0; k < run / BLK; k++) {
                int i = model_find(m, top, b + k);

                if (id != (i < 0 ? CV_CHAIN_HOLE : (int)m->id[i]))
                    fail_msg("view under %u, block %u: lookup says layer %d "
                             "(run from %u), expected %d", below, b + k, id,
                             b, i < 0 ? -1 : (int)m->id[i]);
            }
            if (b + run / BLK < MB) {   /* the run is the longest */
                int i = model_find(m, top, b + (unsigned)(run / BLK));

                assert_int_not_equal(id, i < 0 ? CV_CHAIN_HOLE
                                               : (int)m->id[i]);
            }
            b += (unsigned)(run / BLK);
        }
    }
}

static void model_write(struct cv_chain *c, struct model *m, unsigned tag)
{
    unsigned b = (unsigned)rand() % MB, n = 1 + (unsigned)rand() % 5;
    unsigned char buf[5 * BLK];

    if (b + n > MB)
        n = MB - b;
    for (unsigned k = 0; k < n; k++) {
        fill(buf + (size_t)k * BLK, at(b + k) / BLK, tag);
        m->tag[m->n - 1][b + k] = tag;
    }
    assert_int_equal(cv_chain_write(c, buf, n * BLK, at(b), 0), 0);
}

static void model_punch(struct cv_chain *c, struct model *m)
{
    unsigned b = (unsigned)rand() % MB, n = 1 + (unsigned)rand() % 8;

    if (b + n > MB)
        n = MB - b;
    for (unsigned k = 0; k < n; k++)
        m->tag[m->n - 1][b + k] = 0;
    assert_int_equal(cv_chain_punch(c, at(b), n * BLK), 0);
}

static void model_snapshot(struct cv_chain *c, struct model *m, unsigned tag)
{
    char name[32];

    snprintf(name, sizeof name, "s%u", tag);
    assert_int_equal(cv_chain_snapshot(c, name, tag), 0);
    m->id[m->n] = m->next_id++;
    memset(m->tag[m->n], 0, sizeof m->tag[0]);
    m->n++;
}

/* Deletes a random snapshot as the image layer will: mark, copy what it
 * shows through the layer above, drop. */
static void model_merge(struct cv_chain *c, struct model *m)
{
    size_t i = (size_t)rand() % (m->n - 1);
    unsigned id = m->id[i], above = m->id[i + 1];
    unsigned char buf[BLK];

    assert_int_equal(cv_chain_mark_merging(c, id), 0);
    for (unsigned b = 0; b < MB; b++) {
        uint64_t run;

        if (cv_chain_layer_has(c, above, at(b), BLK, &run) ||
            !cv_chain_layer_has(c, id, at(b), BLK, &run))
            continue;
        assert_int_equal(cv_chain_read(c, buf, BLK, at(b), above, NULL,
                                       NULL), 0);
        assert_int_equal(cv_chain_write_layer(c, above, buf, BLK, at(b)), 0);
        m->tag[i + 1][b] = m->tag[i][b];
    }
    assert_int_equal(cv_chain_drop_layer(c, id), 0);
    memmove(&m->id[i], &m->id[i + 1], (m->n - i - 1) * sizeof m->id[0]);
    memmove(&m->tag[i], &m->tag[i + 1], (m->n - i - 1) * sizeof m->tag[0]);
    m->n--;
}

static void model_rollback(struct cv_chain *c, struct model *m)
{
    struct cv_chain_layer_info *li;
    size_t n;

    assert_int_equal(cv_chain_layers(c, &li, &n), 0);
    assert_int_equal(cv_chain_rollback(c, li[n - 2].snapshot), 0);
    free(li);
    m->id[m->n - 1] = m->next_id++;
    memset(m->tag[m->n - 1], 0, sizeof m->tag[0]);
}

static void test_model(void **state)
{
    struct model *m = calloc(1, sizeof *m);
    struct cv_chain *c;
    char dir[300];

    (void)state;
    path_of(dir, sizeof dir, "v");
    assert_int_equal(cv_chain_create(dir, DOFF, DOFF + MB * BLK, NULL), 0);
    c = reopen("v", NULL, 0);
    m->n = 1;
    m->id[0] = 1;
    m->next_id = 2;
    srand(7);
    for (unsigned op = 1; op <= 600; op++) {
        int r = rand() % 100;

        if (r < 60)
            model_write(c, m, op);
        else if (r < 75)
            model_punch(c, m);
        else if (r < 83 && m->n < ML)
            model_snapshot(c, m, op);
        else if (r < 90 && m->n > 1)
            model_merge(c, m);
        else if (r < 93 && m->n > 1)
            model_rollback(c, m);
        else if (r < 96) {
            cv_chain_close(c);
            c = reopen("v", NULL, 0);
        }
        if (op % 10 == 0)
            model_check(c, m);
    }
    model_check(c, m);
    cv_chain_close(c);
    c = reopen("v", NULL, 0);
    model_check(c, m);
    cv_chain_close(c);
    free(m);
}

/* Maps over several 128 MiB regions (a leaf each): runs cross leaves and
 * regions with no leaf, before and after a reopen. */
#define REGION (128ull << 20)

static void test_map_regions(void **state)
{
    const uint64_t raw = 3 * REGION + 64 * BLK;
    const uint64_t offs[] = { REGION - BLK, REGION, REGION + 63 * BLK,
                              REGION + 64 * BLK, 3 * REGION + 63 * BLK };
    unsigned char buf[BLK];
    struct cv_chain *c;
    char dir[300];

    (void)state;
    path_of(dir, sizeof dir, "v");
    assert_int_equal(cv_chain_create(dir, DOFF, raw, NULL), 0);
    c = reopen("v", NULL, 0);
    for (int pass = 0; pass < 2; pass++) {
        uint64_t run, pos = DOFF;
        int fmt;

        for (size_t i = 0; pass == 0 && i < sizeof offs / sizeof offs[0];
             i++) {
            fill(buf, offs[i] / BLK, 1);
            assert_int_equal(cv_chain_write(c, buf, BLK, offs[i], 0), 0);
        }
        /* hole to REGION - BLK, data 2 blocks, hole 62, data 2, hole to
         * 3 REGION + 63 BLK, data 1. */
        const struct { int held; uint64_t len; } want[] = {
            { 0, REGION - BLK - DOFF }, { 1, 2 * BLK }, { 0, 62 * BLK },
            { 1, 2 * BLK }, { 0, 2 * REGION - 2 * BLK }, { 1, BLK },
        };
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
            int id = cv_chain_lookup(c, pos, raw - pos, CV_CHAIN_TOP, &run,
                                     &fmt);

            if ((id == 1) != want[i].held || run != want[i].len)
                fail_msg("pass %d, extent %zu at %llu: layer %d for %llu "
                         "bytes, expected %s for %llu", pass, i,
                         (unsigned long long)pos, id,
                         (unsigned long long)run,
                         want[i].held ? "data" : "a hole",
                         (unsigned long long)want[i].len);
            pos += run;
        }
        assert_int_equal(pos, raw);
        assert_int_equal(cv_chain_read(c, buf, BLK, REGION, CV_CHAIN_TOP,
                                       NULL, NULL), 0);
        assert_int_equal(tag_of(buf, REGION / BLK), 1);
        cv_chain_close(c);
        c = reopen("v", NULL, 0);
    }
    cv_chain_close(c);
}

/* The memory bound of docs/store.md: an open 1 TiB chain of 21 layers
 * (20 snapshots, one block written before each) costs a pointer per
 * 128 MiB per layer and a 4 KiB leaf per region written. */
static void test_memory_bound(void **state)
{
    const uint64_t raw = 1ull << 40;
    const size_t layers = 21;
    const double bound = (double)layers * (double)(raw / REGION) * 8 +
                         20.0 * 4096 + 64 * 1024;   /* + the chain itself */
    struct cv_chain *c;
    struct mallinfo2 before, after;
    unsigned char buf[BLK];
    char dir[300];
    double used;

    (void)state;
    path_of(dir, sizeof dir, "v");
    assert_int_equal(cv_chain_create(dir, DOFF, raw, NULL), 0);
    c = reopen("v", NULL, 0);
    for (unsigned i = 0; i < 20; i++) {
        char name[16];
        uint64_t off = (uint64_t)i * 50 * REGION + DOFF;

        fill(buf, off / BLK, i + 1);
        assert_int_equal(cv_chain_write(c, buf, BLK, off, 0), 0);
        snprintf(name, sizeof name, "s%u", i);
        assert_int_equal(cv_chain_snapshot(c, name, i), 0);
    }
    cv_chain_close(c);
    before = mallinfo2();
    c = reopen("v", NULL, 0);
    after = mallinfo2();
    used = (double)after.uordblks - (double)before.uordblks;
    printf("open 1 TiB chain, 21 layers, 20 regions written: %.0f KiB of "
           "maps and chain (bound %.0f KiB)\n", used / 1024, bound / 1024);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    /* (the sanitizers' allocators are not malloc's) */
    assert_true(used > 21 * 8192 * 8);
    assert_true(used < bound);
#endif
    assert_int_equal(get_below(c, (unsigned)((19 * 50 * REGION) / BLK), 0),
                     20);
    cv_chain_close(c);
}

/* ---- readers and writers across a snapshot ---- */
#define CW_WRITERS 3
#define CW_READERS 2
#define CW_BLOCKS 48u           /* blocks of each writer: b % writers */

struct cw {
    struct cv_chain *c;
    unsigned started[NBLK];     /* tag of the write begun (atomic) */
    unsigned acked[NBLK];       /* tag of the write returned (atomic) */
    int stop;
    int errors;
    uint64_t worst_us[CW_WRITERS];  /* each writer's slowest write */
};

struct cw_arg {
    struct cw *w;
    unsigned idx;
};

static void *cw_writer(void *p)
{
    struct cw_arg *a = p;
    struct cw *w = a->w;
    unsigned char buf[BLK];

    for (unsigned tag = 1; !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE);
         tag++) {
        for (unsigned b = a->idx; b < CW_BLOCKS; b += CW_WRITERS) {
            fill(buf, at(b) / BLK, tag);
            struct timespec t0, t1;
            uint64_t us;

            __atomic_store_n(&w->started[b], tag, __ATOMIC_SEQ_CST);
            clock_gettime(CLOCK_MONOTONIC, &t0);
            if (cv_chain_write(w->c, buf, BLK, at(b), 0) != 0)
                __atomic_fetch_add(&w->errors, 1, __ATOMIC_SEQ_CST);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            __atomic_store_n(&w->acked[b], tag, __ATOMIC_SEQ_CST);
            us = (uint64_t)((int64_t)(t1.tv_sec - t0.tv_sec) * 1000000 +
                            (int64_t)(t1.tv_nsec - t0.tv_nsec) / 1000);
            if (us > w->worst_us[a->idx])
                w->worst_us[a->idx] = us;
        }
    }
    return NULL;
}

/* A block read while writes to it run may mix them (pread and pwrite of
 * one page are not atomic, as on any disk); anything else (another
 * block's data) is wrong.  The oldest tag in it, or TORN. */
static unsigned tag_racing(const unsigned char *buf, uint64_t blk)
{
    uint32_t a, b, lo = UINT32_MAX;

    for (size_t i = 0; i < BLK; i += 8) {
        memcpy(&a, buf + i, 4);
        memcpy(&b, buf + i + 4, 4);
        if (a == 0 && b == 0)   /* not written yet */
            a = (uint32_t)blk;
        if (a != (uint32_t)blk)
            return TORN;
        lo = b < lo ? b : lo;
    }
    return lo;
}

static void *cw_reader(void *p)
{
    struct cw *w = p;
    unsigned char buf[CW_BLOCKS * BLK];
    unsigned last[CW_BLOCKS] = { 0 };

    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        if (cv_chain_read(w->c, buf, sizeof buf, at(0), CV_CHAIN_TOP, NULL,
                          NULL) != 0) {
            __atomic_fetch_add(&w->errors, 1, __ATOMIC_SEQ_CST);
            continue;
        }
        for (unsigned b = 0; b < CW_BLOCKS; b++) {
            unsigned t = tag_racing(buf + (size_t)b * BLK, at(b) / BLK);

            /* Another block's, or a read that went back in time. */
            if (t == TORN || t < last[b])
                __atomic_fetch_add(&w->errors, 1, __ATOMIC_SEQ_CST);
            last[b] = t;
        }
    }
    return NULL;
}

/* ---- punches racing reads: a punched block falls through, never reads
 * as the hole it is for a moment ---- */
struct pr {
    struct cv_chain *c;
    int stop;
    int bad;
    unsigned flips;
};

static void *pr_flipper(void *p)
{
    struct pr *w = p;
    unsigned char buf[BLK];

    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        for (unsigned b = 0; b < 16; b++) {
            fill(buf, at(b) / BLK, 2);
            if (cv_chain_write(w->c, buf, BLK, at(b), 0) != 0 ||
                cv_chain_punch(w->c, at(b), BLK) != 0)
                __atomic_fetch_add(&w->bad, 1, __ATOMIC_SEQ_CST);
        }
        __atomic_fetch_add(&w->flips, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

static void *pr_reader(void *p)
{
    struct pr *w = p;
    unsigned char buf[16 * BLK];

    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        if (cv_chain_read(w->c, buf, sizeof buf, at(0), CV_CHAIN_TOP, NULL,
                          NULL) != 0) {
            __atomic_fetch_add(&w->bad, 1, __ATOMIC_SEQ_CST);
            continue;
        }
        /* Every 8 bytes: this block's, of the snapshot (1) or the head (2);
         * zeros would be the head's hole showing. */
        for (unsigned b = 0; b < 16; b++)
            for (size_t i = 0; i < BLK; i += 8) {
                uint32_t a, t;

                memcpy(&a, buf + (size_t)b * BLK + i, 4);
                memcpy(&t, buf + (size_t)b * BLK + i + 4, 4);
                if (a != at(b) / BLK || (t != 1 && t != 2)) {
                    __atomic_fetch_add(&w->bad, 1, __ATOMIC_SEQ_CST);
                    break;
                }
            }
    }
    return NULL;
}

static void test_punch_race(void **state)
{
    struct pr w = { .c = make("v") };
    pthread_t ft, rt[2];

    (void)state;
    for (unsigned b = 0; b < 16; b++)
        put(w.c, b, 1);
    assert_int_equal(cv_chain_snapshot(w.c, "base", 1), 0);
    assert_int_equal(pthread_create(&ft, NULL, pr_flipper, &w), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&rt[i], NULL, pr_reader, &w), 0);
    usleep(300 * 1000);
    __atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
    pthread_join(ft, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(rt[i], NULL);
    assert_true(w.flips > 10);
    if (w.bad)
        fail_msg("%d reads saw a block neither the snapshot's nor the "
                 "head's (over %u rounds of write and punch)", w.bad,
                 w.flips);
    cv_chain_close(w.c);
}

#define CW_SNAPS 10

static void test_concurrent_snapshot(void **state)
{
    struct cw w = { .c = make("v") };
    struct cw_arg args[CW_WRITERS];
    pthread_t wt[CW_WRITERS], rt[CW_READERS];
    static unsigned before[CW_SNAPS][CW_BLOCKS], after[CW_SNAPS][CW_BLOCKS];
    static unsigned seen[CW_SNAPS][CW_BLOCKS];
    static unsigned char buf[CW_BLOCKS * BLK];
    struct timespec t0, t1;
    double ms, worst = 0;

    (void)state;
    for (unsigned i = 0; i < CW_WRITERS; i++) {
        args[i] = (struct cw_arg){ &w, i };
        assert_int_equal(pthread_create(&wt[i], NULL, cw_writer, &args[i]),
                         0);
    }
    for (unsigned i = 0; i < CW_READERS; i++)
        assert_int_equal(pthread_create(&rt[i], NULL, cw_reader, &w), 0);
    for (unsigned k = 0; k < CW_SNAPS; k++) {
        unsigned id, above;
        char name[16];

        usleep(20 * 1000);
        snprintf(name, sizeof name, "mid%u", k);
        for (unsigned b = 0; b < CW_BLOCKS; b++)
            before[k][b] = __atomic_load_n(&w.acked[b], __ATOMIC_SEQ_CST);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(cv_chain_snapshot(w.c, name, k), 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        for (unsigned b = 0; b < CW_BLOCKS; b++)
            after[k][b] = __atomic_load_n(&w.started[b], __ATOMIC_SEQ_CST);
        ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
             (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        worst = ms > worst ? ms : worst;
        /* What the snapshot holds as soon as it is taken... */
        assert_int_equal(cv_chain_snapshot_layer(w.c, name, &id, &above), 0);
        assert_int_equal(cv_chain_read(w.c, buf, sizeof buf, at(0), above,
                                       NULL, NULL), 0);
        for (unsigned b = 0; b < CW_BLOCKS; b++)
            seen[k][b] = tag_of(buf + (size_t)b * BLK, at(b) / BLK);
    }
    usleep(20 * 1000);
    __atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < CW_WRITERS; i++)
        pthread_join(wt[i], NULL);
    for (unsigned i = 0; i < CW_READERS; i++)
        pthread_join(rt[i], NULL);
    assert_int_equal(w.errors, 0);
    {
        uint64_t lat = 0;

        for (unsigned i = 0; i < CW_WRITERS; i++)
            lat = w.worst_us[i] > lat ? w.worst_us[i] : lat;
        printf("%u snapshots under 3 writers and 2 readers: slowest "
               "snapshot %.2f ms, slowest write %.2f ms\n", CW_SNAPS, worst,
               (double)lat / 1000);
    }
    /* ... it holds for good (no write in flight landed in it later): every
     * write acknowledged before it began and none begun after it
     * returned. */
    for (unsigned k = 0; k < CW_SNAPS; k++) {
        char name[16];
        struct cv_chain *s;

        snprintf(name, sizeof name, "mid%u", k);
        s = reopen("v", name, 0);
        for (unsigned b = 0; b < CW_BLOCKS; b++) {
            unsigned t = get(s, b);

            if (t != seen[k][b])
                fail_msg("snapshot %u, block %u: held write %u when taken, "
                         "%u later", k, b, seen[k][b], t);
            if (t < before[k][b] || t > after[k][b])
                fail_msg("snapshot %u, block %u: holds write %u, "
                         "acknowledged before it %u, begun by its end %u", k,
                         b, t, before[k][b], after[k][b]);
            if (k == CW_SNAPS - 1)      /* the writers did run */
                assert_true(before[k][b] > 0);
        }
        cv_chain_close(s);
    }
    /* The head reads the last writes. */
    for (unsigned b = 0; b < CW_BLOCKS; b++)
        assert_int_equal(get(w.c, b), w.acked[b]);
    /* An idle head: a snapshot is a sync and two small files. */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(cv_chain_snapshot(w.c, "idle", 2), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
         (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("snapshot of an idle head: %.2f ms\n", ms);
    assert_true(ms < 1000);     /* a loaded machine's bound, not the aim */
    cv_chain_close(w.c);
}

/* ---- kill -9 in the middle of snapshots ----
 * A child writes blocks 0..7 with tag i, then takes snapshot "s<i>", over
 * and over; it is killed at a random moment.  The chain must then open,
 * hold no file its manifest does not list, and each snapshot it lists
 * must be whole: s<i> reads tag i everywhere.  (kill -9 keeps the page
 * cache: this checks that every cut leaves one manifest or the other and
 * that what a cut leaves behind is cleaned, not durability.) */
static void kill_child(const char *dir, int ready)
{
    struct cv_chain *c;
    unsigned char buf[8 * BLK];

    if (cv_chain_open(dir, NULL, 0, &c) != 0)
        _exit(2);
    for (unsigned i = 1;; i++) {
        char name[16];

        for (unsigned b = 0; b < 8; b++)
            fill(buf + (size_t)b * BLK, at(b) / BLK, i);
        snprintf(name, sizeof name, "s%u", i);
        if (cv_chain_write(c, buf, sizeof buf, at(0), 0) != 0 ||
            cv_chain_snapshot(c, name, i) != 0)
            _exit(3);
        if (i == 1 && (write(ready, "1", 1) != 1 || close(ready) != 0))
            _exit(5);
        if (i % 100 == 0) {     /* keep under the layer limit: merge one */
            unsigned id, above;
            char old[16];

            snprintf(old, sizeof old, "s%u", i - 99);
            if (cv_chain_snapshot_layer(c, old, &id, &above) != 0 ||
                cv_chain_mark_merging(c, id) != 0 ||
                cv_chain_drop_layer(c, id) != 0)    /* above holds all 8 */
                _exit(4);
        }
    }
}

static void check_after_kill(const char *name, unsigned round)
{
    struct cv_chain *c = reopen(name, NULL, 0);
    struct cv_chain_layer_info *li;
    char dirpath[400];
    size_t n, snaps = 0;
    DIR *d;
    struct dirent *e;

    assert_int_equal(cv_chain_layers(c, &li, &n), 0);
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned tag;

        if (li[i].state == CV_LAYER_MERGING)
            continue;   /* being deleted when killed: the view holds */
        assert_int_equal(sscanf(li[i].snapshot, "s%u", &tag), 1);
        for (unsigned b = 0; b < 8; b++)
            if (get_below(c, b, li[i + 1].id) != tag)
                fail_msg("round %u: snapshot %s, block %u: reads %u", round,
                         li[i].snapshot, b, get_below(c, b, li[i + 1].id));
        snaps++;
    }
    /* Every layer file is listed (the leftovers of the cut are gone). */
    snprintf(dirpath, sizeof dirpath, "%s/%s", root, name);
    assert_non_null(d = opendir(dirpath));
    while ((e = readdir(d))) {
        unsigned id;
        int listed = 0;

        if (sscanf(e->d_name, "layer-%u", &id) != 1)
            continue;
        for (size_t i = 0; i < n; i++)
            listed |= li[i].id == id;
        if (!listed)
            fail_msg("round %u: %s is listed nowhere", round, e->d_name);
    }
    closedir(d);
    assert_false(file_exists(name, "chain.tmp"));
    assert_true(snaps > 0);
    free(li);
    cv_chain_close(c);
}

static void test_kill_during_snapshots(void **state)
{
    (void)state;
    srand((unsigned)time(NULL));
    for (unsigned round = 0; round < 10; round++) {
        char name[16], dir[300];
        struct cv_chain *c;
        pid_t pid;
        int status, ready[2];
        char one;

        snprintf(name, sizeof name, "k%u", round);
        c = make(name);
        cv_chain_close(c);
        path_of(dir, sizeof dir, name);
        assert_int_equal(pipe(ready), 0);
        assert_true((pid = fork()) >= 0);
        if (pid == 0) {
            close(ready[0]);
            kill_child(dir, ready[1]);
        }
        close(ready[1]);
        /* Killed after its first snapshot, anywhere in the next ones. */
        assert_int_equal(read(ready[0], &one, 1), 1);
        close(ready[0]);
        usleep((useconds_t)(rand() % 60000));
        assert_int_equal(kill(pid, SIGKILL), 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status))
            fail_msg("round %u: the child stopped by itself (status %d)",
                     round, status);
        check_after_kill(name, round);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_regions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_punch_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_snapshot, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_kill_during_snapshots, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

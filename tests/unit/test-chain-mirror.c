/* The chain's mirror (lib/store/chain.h, "The mirror"): a recording mirror
 * sees every change with its bytes, in the order the chain made them
 * (writes ended before a change of shape begins), changes whose checks
 * fail are not sent, a mirror's error fails the change (begin: not made
 * locally; end: made but failed), and a chain without one is unchanged. */
#include "chain-test.h"

#define MAX_OPS 1024

struct rec_op {
    struct cv_mirror_op op;
    unsigned char *data;        /* a copy of buf */
    char name[CV_CHAIN_NAME_MAX + 1];
    int local;                  /* what end was given */
    int ended;
};

struct rec {
    pthread_mutex_t lock;
    struct rec_op ops[MAX_OPS];
    size_t n;
    /* The log of begins and ends: 'b' or 'e' then the op's index. */
    struct { char what; size_t i; } log[2 * MAX_OPS];
    size_t nlog;
    int fail_begin, fail_end;   /* the errno to fail with, for type */
    enum cv_mirror_type fail_type;
};

static int rec_begin(void *arg, const struct cv_mirror_op *op, void **token)
{
    struct rec *r = arg;
    struct rec_op *o;

    if (r->fail_begin && op->type == r->fail_type)
        return cv_error(-r->fail_begin, "mirror: begin refused");
    pthread_mutex_lock(&r->lock);
    assert_true(r->n < MAX_OPS);
    o = &r->ops[r->n];
    o->op = *op;
    o->data = NULL;
    if (op->buf) {
        o->data = malloc(op->len);
        memcpy(o->data, op->buf, op->len);
    }
    snprintf(o->name, sizeof o->name, "%s", op->name ? op->name : "");
    o->op.name = o->name;
    r->log[r->nlog].what = 'b';
    r->log[r->nlog++].i = r->n;
    *token = (void *)(uintptr_t)(r->n++ + 1);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

static int rec_end(void *arg, void *token, int local)
{
    struct rec *r = arg;
    size_t i = (uintptr_t)token - 1;
    struct rec_op *o;

    pthread_mutex_lock(&r->lock);
    o = &r->ops[i];
    /* The bytes are still the caller's until end returns. */
    if (o->data)
        assert_memory_equal(o->data, o->op.buf, o->op.len);
    o->local = local;
    o->ended = 1;
    r->log[r->nlog].what = 'e';
    r->log[r->nlog++].i = i;
    pthread_mutex_unlock(&r->lock);
    if (r->fail_end && o->op.type == r->fail_type)
        return cv_error(-r->fail_end, "mirror: replica failed");
    return 0;
}

static struct rec *rec_new(void)
{
    struct rec *r = calloc(1, sizeof *r);

    assert_non_null(r);
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

static void rec_free(struct rec *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->ops[i].data);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static void attach(struct cv_chain *c, struct rec *r)
{
    struct cv_chain_mirror m = { .begin = rec_begin, .end = rec_end,
                                 .arg = r };

    assert_int_equal(cv_chain_set_mirror(c, &m), 0);
}

static const struct rec_op *op_at(struct rec *r, size_t i,
                                  enum cv_mirror_type type)
{
    if (i >= r->n)
        fail_msg("op %zu: only %zu recorded", i, r->n);
    if (r->ops[i].op.type != type)
        fail_msg("op %zu: type %d, expected %d", i, r->ops[i].op.type, type);
    assert_true(r->ops[i].ended);
    return &r->ops[i];
}

static void test_every_op(void **state)
{
    struct cv_chain *c = make("v");
    struct rec *r = rec_new();
    struct cv_backend *b = cv_chain_backend(c);
    unsigned char blk[BLK], hdr[100], part[10];
    const struct rec_op *o;
    unsigned id, above;
    size_t i = 0;

    (void)state;
    attach(c, r);
    /* A head write: layer 0, the bytes, FUA passed on. */
    fill(blk, at(3) / BLK, 9);
    assert_int_equal(cv_chain_write(c, blk, BLK, at(3), CV_WRITE_FUA), 0);
    o = op_at(r, i++, CV_MIRROR_WRITE);
    assert_int_equal(o->op.layer, 0);
    assert_int_equal(o->op.off, at(3));
    assert_int_equal(o->op.len, BLK);
    assert_int_equal(o->op.flags, CV_WRITE_FUA);
    assert_memory_equal(o->data, blk, BLK);
    assert_int_equal(o->local, 0);
    /* A punch. */
    assert_int_equal(cv_chain_punch(c, at(3), 2 * BLK), 0);
    o = op_at(r, i++, CV_MIRROR_PUNCH);
    assert_int_equal(o->op.off, at(3));
    assert_int_equal(o->op.len, 2 * BLK);
    /* The raw view: the header part and the data part of one write, and a
     * part of a block the head lacks, sent as the whole block written. */
    memset(hdr, 0x5a, sizeof hdr);
    assert_int_equal(cv_backend_pwrite(b, hdr, sizeof hdr, 200, 0), 0);
    o = op_at(r, i++, CV_MIRROR_HEADER);
    assert_int_equal(o->op.off, 200);
    assert_int_equal(o->op.len, sizeof hdr);
    assert_memory_equal(o->data, hdr, sizeof hdr);
    put(c, 5, 4);
    i++;
    memset(part, 0x77, sizeof part);
    assert_int_equal(cv_backend_pwrite(b, part, sizeof part, at(6) + 8, 0),
                     0);
    o = op_at(r, i++, CV_MIRROR_WRITE);
    assert_int_equal(o->op.off, at(6));
    assert_int_equal(o->op.len, BLK);
    assert_memory_equal(o->data + 8, part, sizeof part);
    /* A discard of the header: zeros (buf NULL). */
    assert_int_equal(cv_backend_discard(b, 0, BLK), 0);
    o = op_at(r, i++, CV_MIRROR_HEADER);
    assert_null(o->op.buf);
    assert_int_equal(o->op.len, BLK);
    /* Flush, resize. */
    assert_int_equal(cv_chain_flush(c), 0);
    op_at(r, i++, CV_MIRROR_FLUSH);
    assert_int_equal(cv_chain_resize(c, RAW + 8 * BLK), 0);
    o = op_at(r, i++, CV_MIRROR_RESIZE);
    assert_int_equal(o->op.size, RAW + 8 * BLK);
    assert_int_equal(cv_chain_resize(c, RAW), 0);
    i++;
    /* A snapshot with its name and time; a refused one is not sent. */
    assert_int_equal(cv_chain_snapshot(c, "s1", 1764590000), 0);
    o = op_at(r, i++, CV_MIRROR_SHAPE);
    assert_int_equal(o->op.shape, CV_SHAPE_SNAPSHOT);
    assert_string_equal(o->name, "s1");
    assert_int_equal(o->op.created, 1764590000);
    assert_int_equal(cv_chain_snapshot(c, "s1", 1), -EEXIST);
    assert_int_equal(r->n, i);
    /* A layer's fill (merge): the layer's id, then its sync. */
    assert_int_equal(cv_chain_snapshot_layer(c, "s1", &id, &above), 0);
    fill(blk, at(7) / BLK, 3);
    assert_int_equal(cv_chain_write_layer(c, above, blk, BLK, at(7)), 0);
    o = op_at(r, i++, CV_MIRROR_WRITE);
    assert_int_equal(o->op.layer, 0);   /* above is the head */
    assert_int_equal(cv_chain_snapshot(c, "s2", 1764590001), 0);
    i++;
    assert_int_equal(cv_chain_write_layer(c, above, blk, BLK, at(8)), 0);
    o = op_at(r, i++, CV_MIRROR_WRITE);
    assert_int_equal(o->op.layer, above);
    assert_int_equal(cv_chain_sync_layer(c, above), 0);
    o = op_at(r, i++, CV_MIRROR_SHAPE);
    assert_int_equal(o->op.shape, CV_SHAPE_SYNC_LAYER);
    assert_int_equal(o->op.id, above);
    /* Merge s1 away: mark (a second mark resumes: not sent), drop. */
    assert_int_equal(cv_chain_mark_merging(c, id), 0);
    o = op_at(r, i++, CV_MIRROR_SHAPE);
    assert_int_equal(o->op.shape, CV_SHAPE_MARK_MERGING);
    assert_int_equal(o->op.id, id);
    assert_int_equal(cv_chain_mark_merging(c, id), 0);
    assert_int_equal(r->n, i);
    assert_int_equal(cv_chain_drop_layer(c, id), 0);
    o = op_at(r, i++, CV_MIRROR_SHAPE);
    assert_int_equal(o->op.shape, CV_SHAPE_DROP_LAYER);
    assert_int_equal(o->op.id, id);
    /* Rollback to s2; a refused one is not sent. */
    assert_int_equal(cv_chain_rollback(c, "nope"), -ENOENT);
    assert_int_equal(r->n, i);
    assert_int_equal(cv_chain_rollback(c, "s2"), 0);
    o = op_at(r, i++, CV_MIRROR_SHAPE);
    assert_int_equal(o->op.shape, CV_SHAPE_ROLLBACK);
    assert_string_equal(o->name, "s2");
    /* The data offset. */
    assert_int_equal(cv_chain_set_data_offset(c, 2 * BLK), 0);
    o = op_at(r, i++, CV_MIRROR_SHAPE);
    assert_int_equal(o->op.shape, CV_SHAPE_DATA_OFFSET);
    assert_int_equal(o->op.size, 2 * BLK);
    assert_int_equal(r->n, i);
    /* Removed: nothing more is sent. */
    assert_int_equal(cv_chain_set_mirror(c, NULL), 0);
    put(c, 9, 1);
    assert_int_equal(cv_chain_flush(c), 0);
    assert_int_equal(r->n, i);
    cv_chain_close(c);
    rec_free(r);
}

/* A clone's flatten: the parent dropped, through the mirror. */
static void test_drop_parent(void **state)
{
    struct cv_chain *p = make("p"), *c;
    struct cv_chain_parent par = { .volume = "p", .snapshot = "base" };
    struct rec *r = rec_new();
    unsigned char blk[BLK];
    char dir[300];

    (void)state;
    put(p, 2, 5);
    assert_int_equal(cv_chain_snapshot(p, "base", 1), 0);
    path_of(dir, sizeof dir, "c");
    assert_int_equal(cv_chain_create(dir, DOFF, RAW, &par), 0);
    assert_int_equal(cv_chain_open(dir, NULL, 0, &c), 0);
    attach(c, r);
    /* Refused while the bottom lacks the parent's block: not sent. */
    assert_int_equal(cv_chain_drop_parent(c), -EBUSY);
    assert_int_equal(r->n, 0);
    fill(blk, at(2) / BLK, 5);
    assert_int_equal(cv_chain_write_layer(c, cv_chain_bottom(c), blk, BLK,
                                          at(2)), 0);
    assert_int_equal(cv_chain_drop_parent(c), 0);
    assert_int_equal(r->n, 2);
    assert_int_equal(r->ops[1].op.shape, CV_SHAPE_DROP_PARENT);
    cv_chain_close(c);
    cv_chain_close(p);
    rec_free(r);
}

/* begin's error: the change is not made, and fails with it. */
static void test_begin_fails(void **state)
{
    struct cv_chain *c = make("v");
    struct rec *r = rec_new();
    unsigned char blk[BLK];
    struct cv_chain_layer_info *li;
    size_t n;

    (void)state;
    attach(c, r);
    r->fail_begin = EIO;
    r->fail_type = CV_MIRROR_WRITE;
    fill(blk, at(1) / BLK, 6);
    assert_int_equal(cv_chain_write(c, blk, BLK, at(1), 0), -EIO);
    assert_non_null(strstr(cv_last_error(), "begin refused"));
    r->fail_begin = 0;
    assert_int_equal(get(c, 1), 0);
    r->fail_begin = EIO;
    r->fail_type = CV_MIRROR_SHAPE;
    assert_int_equal(cv_chain_snapshot(c, "s", 1), -EIO);
    assert_int_equal(cv_chain_layers(c, &li, &n), 0);
    assert_int_equal(n, 1);
    free(li);
    assert_int_equal(r->n, 0);
    cv_chain_close(c);
    rec_free(r);
}

/* end's error: made locally, but the change fails (the caller does not
 * acknowledge it); a local error wins over the mirror's. */
static void test_end_fails(void **state)
{
    struct cv_chain *c = make("v");
    struct rec *r = rec_new();

    (void)state;
    attach(c, r);
    r->fail_end = EIO;
    r->fail_type = CV_MIRROR_FLUSH;
    assert_int_equal(cv_chain_flush(c), -EIO);
    assert_non_null(strstr(cv_last_error(), "replica failed"));
    r->fail_type = CV_MIRROR_WRITE;
    {
        unsigned char blk[BLK];

        fill(blk, at(1), 1);
        assert_int_equal(cv_chain_write(c, blk, BLK, at(1), 0), -EIO);
        /* A write past the layer's end fails its own check: not sent. */
        assert_int_equal(cv_chain_write_layer(c, CV_CHAIN_TOP, blk, BLK,
                                              RAW), -ERANGE);
    }
    assert_int_equal(r->n, 2);
    cv_chain_close(c);
    rec_free(r);
}

/* Writes racing a snapshot: every write begun before the snapshot's begin
 * has ended before it (replicas see the same order), and none begins
 * between the snapshot's begin and end. */
struct writer_arg {
    struct cv_chain *c;
    volatile int stop;
    unsigned writes;
};

static void *writer(void *arg)
{
    struct writer_arg *w = arg;

    while (!w->stop && w->writes < 200) {
        put(w->c, w->writes % NBLK, 1 + w->writes % 100);
        w->writes++;
    }
    return NULL;
}

static void test_order(void **state)
{
    struct cv_chain *c = make("v");
    struct rec *r = rec_new();
    struct writer_arg w[2] = { { .c = c }, { .c = c } };
    pthread_t t[2];
    char name[16];
    int open[MAX_OPS] = { 0 };
    size_t nopen = 0, snaps = 0;

    (void)state;
    attach(c, r);
    for (int k = 0; k < 2; k++)
        assert_int_equal(pthread_create(&t[k], NULL, writer, &w[k]), 0);
    for (int k = 0; k < 6; k++) {
        struct timespec ts = { 0, 200000 };

        nanosleep(&ts, NULL);
        snprintf(name, sizeof name, "s%d", k);
        assert_int_equal(cv_chain_snapshot(c, name, k), 0);
    }
    w[0].stop = w[1].stop = 1;
    for (int k = 0; k < 2; k++)
        pthread_join(t[k], NULL);
    assert_int_equal(cv_chain_set_mirror(c, NULL), 0);
    for (size_t k = 0; k < r->nlog; k++) {
        size_t i = r->log[k].i;
        int shape = r->ops[i].op.type == CV_MIRROR_SHAPE;

        if (r->log[k].what == 'b') {
            if (shape && nopen)
                fail_msg("snapshot begun with %zu writes in flight", nopen);
            if (!shape && nopen && r->ops[open[0]].op.type == CV_MIRROR_SHAPE)
                fail_msg("a write begun while a snapshot was in flight");
            open[nopen++] = (int)i;
            snaps += shape;
        } else {
            for (size_t j = 0; j < nopen; j++)
                if ((size_t)open[j] == i) {
                    open[j] = open[--nopen];
                    break;
                }
        }
    }
    assert_true(snaps >= 1);
    assert_int_equal(nopen, 0);
    cv_chain_close(c);
    rec_free(r);
}

/* Mirrors only on a writable head; and a chain without a mirror writes as
 * fast as before (one test of a flag): shown by timing, not asserted. */
static void test_refused_and_cost(void **state)
{
    struct cv_chain *c = make("v"), *ro;
    struct rec *r = rec_new();
    struct cv_chain_mirror m = { .begin = rec_begin, .end = rec_end,
                                 .arg = r };
    unsigned char blk[BLK];
    struct timespec t0, t1;

    (void)state;
    assert_int_equal(cv_chain_snapshot(c, "s", 1), 0);
    ro = reopen("v", "s", 0);
    assert_int_equal(cv_chain_set_mirror(ro, &m), -EROFS);
    cv_chain_close(ro);
    fill(blk, at(0) / BLK, 1);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int k = 0; k < 20000; k++)
        assert_int_equal(cv_chain_write(c, blk, BLK, at(0), 0), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    print_message("20000 writes without a mirror: %.1f ms\n",
                  (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    assert_int_equal(r->n, 0);
    cv_chain_close(c);
    rec_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_op, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_parent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_begin_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_end_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_and_cost, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

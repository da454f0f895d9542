/* The replica side (daemon/repl/replica-*.c), its handlers called as the
 * peer port would on a temporary data directory: writes land; an older
 * epoch is refused, also after the replica side restarted; an unknown
 * volume is -ENOENT; a malformed payload is -EBADMSG and changes nothing;
 * READ serves the header too; REBUILD + WRITEs + COMMIT give layer files
 * equal to the source's; a clone's REBUILD reads through its parent
 * here, refused without it; a
 * replayed snapshot gets the writer's layer id. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "daemon.h"
#include "peer/peer.h"
#include "repl/missed.h"
#include "repl/repl-proto.h"
#include "repl/replica.h"
#include "store/chain.h"

#define BLK 4096u
#define DOFF (4 * BLK)
#define RAW (DOFF + (8u << 20))

struct fixture {
    char dir[256];
    struct cvd d;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    char path[300];

    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/cv-replica-XXXXXX",
             tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    f->d.cfg.data_dir = f->dir;
    f->d.cfg.node_name = "n3";
    snprintf(path, sizeof path, "%s/volumes", f->dir);
    if (mkdir(path, 0700) < 0 || repl_replica_start(&f->d) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[300];

    repl_replica_stop(&f->d);
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static void vol_path(struct fixture *f, const char *name, char *buf,
                     size_t len)
{
    snprintf(buf, len, "%s/volumes/%s", f->dir, name);
}

/* A request: the encoded fields, then data (WRITE, HEADER).  Returns what
 * the handler returns; *reply freed unless out is given. */
static int call(struct fixture *f, struct repl_req *q, const void *data,
                size_t dlen, void **out, size_t *outlen)
{
    struct cvd_peer_reply reply = { 0 };
    uint8_t *msg;
    void *p;
    size_t n;
    int r;

    assert_int_equal(repl_encode(q, &p, &n), 0);
    msg = malloc(n + dlen + 1);
    assert_non_null(msg);
    memcpy(msg, p, n);
    if (dlen)
        memcpy(msg + n, data, dlen);
    free(p);
    cv_clear_error();
    r = repl_replica_handle(&f->d, (uint16_t)q->type, msg, n + dlen, &reply);
    free(msg);
    if (out) {
        *out = reply.data;
        *outlen = reply.len;
    } else {
        free(reply.data);
    }
    return r;
}

static struct repl_req req(enum repl_type t, uint64_t epoch,
                           const char *volume)
{
    struct repl_req q;

    memset(&q, 0, sizeof q);
    q.type = t;
    q.epoch = epoch;
    snprintf(q.volume, sizeof q.volume, "%s", volume);
    return q;
}

static void make_volume(struct fixture *f, const char *name)
{
    char path[300];

    vol_path(f, name, path, sizeof path);
    assert_int_equal(cv_chain_create(path, DOFF, RAW, NULL), 0);
}

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 12));
}

static void expect_ok(int r)
{
    if (r != 0)
        fail_msg("%d: %s", r, cv_last_error());
}

static int do_write(struct fixture *f, uint64_t epoch, const char *volume,
                    uint32_t layer, uint64_t off, const void *buf, size_t len)
{
    struct repl_req q = req(REPL_WRITE, epoch, volume);

    q.layer = layer;
    q.off = off;
    return call(f, &q, buf, len, NULL, NULL);
}

/* READ of the head's view: the held bitmap and blocks, unpacked to a
 * buffer with zeros for the blocks not held. */
static void do_read(struct fixture *f, uint64_t epoch, const char *volume,
                    uint64_t off, size_t len, uint8_t *buf, uint8_t *held)
{
    struct repl_req q = req(REPL_READ, epoch, volume);
    uint32_t nblk = (uint32_t)(len / BLK), be;
    size_t n, at;
    uint8_t *p;
    void *out;

    q.off = off;
    q.len = len;
    expect_ok(call(f, &q, NULL, 0, &out, &n));
    p = out;
    memcpy(&be, p, 4);
    assert_int_equal(be32toh(be), nblk);
    memcpy(held, p + 4, (nblk + 7) / 8);
    at = 4 + (nblk + 7) / 8;
    memset(buf, 0, len);
    for (uint32_t b = 0; b < nblk; b++)
        if ((held[b / 8] >> (b % 8)) & 1) {
            assert_true(at + BLK <= n);
            memcpy(buf + (size_t)b * BLK, p + at, BLK);
            at += BLK;
        }
    assert_int_equal(at, n);
    free(out);
}

static void test_writes_land(void **state)
{
    struct fixture *f = *state;
    struct repl_req q = req(REPL_OPEN, 5, "db1");
    struct repl_open_reply o;
    uint8_t buf[4 * BLK], got[4 * BLK], hdr[DOFF], held[1];
    struct cv_chain *c;
    char path[300];
    void *out;
    size_t n;

    make_volume(f, "db1");
    expect_ok(call(f, &q, NULL, 0, &out, &n));
    assert_int_equal(repl_open_reply_decode(out, n, &o), 0);
    free(out);
    assert_true(o.epoch == 5 && o.data_offset == DOFF && o.raw_size == RAW);
    assert_int_equal(o.nlayers, 1);
    assert_int_equal(o.layers[0].id, 1);
    repl_open_reply_free(&o);

    fill(buf, sizeof buf, 1);
    expect_ok(do_write(f, 5, "db1", 0, DOFF + BLK, buf, 2 * BLK));
    q = req(REPL_FLUSH, 5, "db1");
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    do_read(f, 5, "db1", DOFF, 4 * BLK, got, held);
    assert_int_equal(held[0], 0x6);     /* blocks 1 and 2 */
    assert_memory_equal(got + BLK, buf, 2 * BLK);

    /* A punch, a header write. */
    q = req(REPL_PUNCH, 5, "db1");
    q.off = DOFF + 2 * BLK;
    q.len = BLK;
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    q = req(REPL_HEADER, 5, "db1");
    q.off = 100;
    expect_ok(call(f, &q, "LUKS", 4, NULL, NULL));
    q.off = DOFF - 2;           /* past the data offset */
    assert_int_equal(call(f, &q, "LUKS", 4, NULL, NULL), -ERANGE);
    /* READ inside the header (a writer without a replica unlocks from
     * it): the header's bytes, every block held; across the data offset
     * refused. */
    do_read(f, 5, "db1", 0, DOFF, hdr, held);
    assert_int_equal(held[0], 0xf);
    assert_memory_equal(hdr + 100, "LUKS", 4);
    assert_int_equal(hdr[0], 0);
    q = req(REPL_READ, 5, "db1");
    q.off = DOFF - BLK;
    q.len = 2 * BLK;
    assert_int_equal(call(f, &q, NULL, 0, NULL, NULL), -ERANGE);
    q = req(REPL_CLOSE, 5, "db1");
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));

    vol_path(f, "db1", path, sizeof path);
    assert_int_equal(cv_chain_open(path, NULL, CV_CHAIN_READONLY, &c), 0);
    assert_int_equal(cv_chain_read(c, got, 2 * BLK, DOFF + BLK, CV_CHAIN_TOP,
                                   NULL, NULL), 0);
    assert_memory_equal(got, buf, BLK);
    memset(buf, 0, BLK);
    assert_memory_equal(got + BLK, buf, BLK);
    assert_int_equal(cv_backend_pread(cv_chain_backend(c), got, 4, 100), 0);
    assert_memory_equal(got, "LUKS", 4);
    cv_chain_close(c);
}

static void test_epoch_fencing(void **state)
{
    struct fixture *f = *state;
    struct repl_req q = req(REPL_OPEN, 7, "db1");
    uint8_t buf[BLK], got[BLK], held[1];

    make_volume(f, "db1");
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    fill(buf, sizeof buf, 2);
    expect_ok(do_write(f, 7, "db1", 0, DOFF, buf, BLK));

    /* Restarted: the epoch file still says 7. */
    repl_replica_stop(&f->d);
    expect_ok(repl_replica_start(&f->d));
    memset(got, 0xee, sizeof got);
    assert_int_equal(do_write(f, 6, "db1", 0, DOFF, got, BLK), -ESTALE);
    assert_string_equal(cv_last_error(), "volume db1: epoch 6 is older than "
                        "7: another node writes it now");
    q = req(REPL_OPEN, 6, "db1");
    assert_int_equal(call(f, &q, NULL, 0, NULL, NULL), -ESTALE);
    do_read(f, 7, "db1", DOFF, BLK, got, held);
    assert_memory_equal(got, buf, BLK);

    /* A newer one is recorded by any request, and fences the older. */
    expect_ok(do_write(f, 9, "db1", 0, DOFF, buf, BLK));
    assert_int_equal(do_write(f, 7, "db1", 0, DOFF, buf, BLK), -ESTALE);
    /* The node becoming the writer fences too. */
    expect_ok(repl_replica_fence(&f->d, "db1", 10));
    assert_int_equal(do_write(f, 9, "db1", 0, DOFF, buf, BLK), -ESTALE);
    assert_int_equal(repl_replica_fence(&f->d, "db1", 8), -ESTALE);
    /* And so does its writer recording the epoch itself: writer-attach.c
     * writes the epoch file, then fences the replica side with it (which
     * no longer looks at the file per request). */
    {
        char dir[300];

        expect_ok(do_write(f, 10, "db1", 0, DOFF, buf, BLK));
        assert_int_equal(repl_state_dir(f->dir, "db1", dir, sizeof dir), 0);
        assert_int_equal(repl_epoch_put(dir, 12), 0);
        expect_ok(repl_replica_fence(&f->d, "db1", 12));
        assert_int_equal(do_write(f, 10, "db1", 0, DOFF, buf, BLK), -ESTALE);
        assert_non_null(strstr(cv_last_error(), "older than 12"));
    }
}

static void test_unknown_volume(void **state)
{
    struct fixture *f = *state;
    struct repl_req q = req(REPL_OPEN, 1, "nope");
    uint8_t buf[BLK] = { 0 };
    char path[300];

    assert_int_equal(call(f, &q, NULL, 0, NULL, NULL), -ENOENT);
    assert_string_equal(cv_last_error(),
                        "node n3 holds no replica of volume nope");
    assert_int_equal(do_write(f, 1, "nope", 0, DOFF, buf, BLK), -ENOENT);
    q = req(REPL_STATUS, 1, "nope");
    assert_int_equal(call(f, &q, NULL, 0, NULL, NULL), -ENOENT);
    /* Nothing made for it. */
    snprintf(path, sizeof path, "%s/replicas/nope", f->dir);
    assert_int_equal(access(path, F_OK), -1);
    /* DELETE of nothing is done. */
    q = req(REPL_DELETE, 1, "nope");
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
}

static void test_malformed(void **state)
{
    struct fixture *f = *state;
    struct repl_req q = req(REPL_WRITE, 3, "db1");
    struct cvd_peer_reply reply = { 0 };
    uint8_t buf[BLK + 64], got[BLK], held[1];
    void *p, *out;
    size_t n, sn;
    int r;

    make_volume(f, "db1");
    q = req(REPL_OPEN, 3, "db1");
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    /* A WRITE of epoch 50 cut short of a whole block: refused, and
     * neither the data nor the epoch changed. */
    q = req(REPL_WRITE, 50, "db1");
    q.off = DOFF;
    assert_int_equal(repl_encode(&q, &p, &n), 0);
    memcpy(buf, p, n);
    fill(buf + n, BLK - 1, 3);
    free(p);
    r = repl_replica_handle(&f->d, REPL_WRITE, buf, n + BLK - 1, &reply);
    assert_int_equal(r, -EBADMSG);
    assert_non_null(strstr(cv_last_error(), "replication WRITE"));
    /* The prefix alone, cut. */
    assert_int_equal(repl_replica_handle(&f->d, REPL_WRITE, buf, 9, &reply),
                     -EBADMSG);
    do_read(f, 3, "db1", DOFF, BLK, got, held);
    assert_int_equal(held[0], 0);
    q = req(REPL_STATUS, 3, "db1");
    expect_ok(call(f, &q, NULL, 0, &out, &sn));
    assert_non_null(strstr((char *)out, "\"epoch\":3"));
    free(out);
}

/* A source chain with two snapshots and data in each layer, rebuilt on
 * the replica as the repair loop does: REBUILD with its layers, every
 * layer's own blocks, the header, COMMIT. */
static void test_rebuild(void **state)
{
    struct fixture *f = *state;
    struct repl_req q = req(REPL_REBUILD, 4, "db2");
    struct repl_layer_desc desc[3];
    struct cv_chain_layer_info *li;
    struct cv_chain *src;
    uint8_t buf[64 * BLK], held[8], hdr[DOFF];
    char path[300], a[400], b[400];
    size_t n;
    void *out;
    size_t sn;

    snprintf(path, sizeof path, "%s/src", f->dir);
    assert_int_equal(cv_chain_create(path, DOFF, RAW, NULL), 0);
    assert_int_equal(cv_chain_open(path, NULL, 0, &src), 0);
    fill(hdr, sizeof hdr, 9);
    assert_int_equal(cv_backend_pwrite(cv_chain_backend(src), hdr, DOFF, 0,
                                       0), 0);
    for (unsigned i = 0; i < 3; i++) {
        fill(buf, 4 * BLK, 10 + i);
        assert_int_equal(cv_chain_write(src, buf, 4 * BLK,
                                        DOFF + (i * 3 + 1) * BLK, 0), 0);
        if (i < 2)
            assert_int_equal(cv_chain_snapshot(src, i ? "s2" : "s1",
                                               1000 + i), 0);
    }
    assert_int_equal(cv_chain_flush(src), 0);
    assert_int_equal(cv_chain_layers(src, &li, &n), 0);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        desc[i].id = li[i].id;
        desc[i].created = li[i].created;
        snprintf(desc[i].snapshot, sizeof desc[i].snapshot, "%s",
                 li[i].snapshot);
    }
    q.data_offset = DOFF;
    q.raw_size = RAW;
    q.nlayers = 3;
    q.layers = desc;
    /* Over an old replica holding other data, and twice: the first
     * rebuild, cut short, starts over. */
    make_volume(f, "db2");
    fill(buf, BLK, 77);
    expect_ok(do_write(f, 3, "db2", 0, DOFF + 60 * BLK, buf, BLK));
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    expect_ok(do_write(f, 4, "db2", 0, DOFF + 61 * BLK, buf, BLK));
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    /* A MARK meanwhile: dropped by the commit. */
    q = req(REPL_MARK, 4, "db2");
    snprintf(q.name, sizeof q.name, "n1");
    q.off = DOFF;
    q.len = 1;
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    q = req(REPL_STATUS, 4, "db2");
    expect_ok(call(f, &q, NULL, 0, &out, &sn));
    assert_non_null(strstr((char *)out, "\"rebuilding\":true"));
    assert_non_null(strstr((char *)out, "\"n1\":1048576"));
    free(out);

    q = req(REPL_HEADER, 4, "db2");
    expect_ok(call(f, &q, hdr, DOFF, NULL, NULL));
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(cv_chain_read_layer(src, li[i].id, buf, sizeof buf,
                                             DOFF, held), 0);
        for (unsigned blk = 0; blk < 64; blk++)
            if ((held[blk / 8] >> (blk % 8)) & 1)
                expect_ok(do_write(f, 4, "db2", li[i].head ? 0 : li[i].id,
                                   DOFF + blk * BLK, buf + blk * BLK, BLK));
    }
    q = req(REPL_COMMIT, 4, "db2");
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    q = req(REPL_STATUS, 4, "db2");
    expect_ok(call(f, &q, NULL, 0, &out, &sn));
    assert_non_null(strstr((char *)out, "\"rebuilding\":false"));
    assert_non_null(strstr((char *)out, "\"missed\":{}"));
    free(out);
    q = req(REPL_CLOSE, 4, "db2");
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));

    for (size_t i = 0; i <= n; i++) {
        char name[32], cmd[900];

        if (i < n)
            snprintf(name, sizeof name, "layer-%06u", li[i].id);
        else
            snprintf(name, sizeof name, "header");
        snprintf(a, sizeof a, "%s/%s", path, name);
        snprintf(b, sizeof b, "%s/volumes/db2/%s", f->dir, name);
        snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
        if (system(cmd) != 0)
            fail_msg("%s differs from the source's", b);
    }
    snprintf(b, sizeof b, "%s/volumes/db2.rebuilding", f->dir);
    assert_int_equal(access(b, F_OK), -1);
    snprintf(b, sizeof b, "%s/volumes/db2.replaced", f->dir);
    assert_int_equal(access(b, F_OK), -1);
    free(li);
    cv_chain_close(src);

    /* DELETE takes the chain and the state. */
    q = req(REPL_DELETE, 4, "db2");
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    snprintf(b, sizeof b, "%s/volumes/db2", f->dir);
    assert_int_equal(access(b, F_OK), -1);
    snprintf(b, sizeof b, "%s/replicas/db2", f->dir);
    assert_int_equal(access(b, F_OK), -1);
}

/* The writer marks whole regions: the last one of an image whose size is
 * not a multiple of a region is marked whole; one past it is refused. */
static void test_mark_bounds(void **state)
{
    struct fixture *f = *state;
    struct repl_req q;
    void *out;
    size_t sn;

    make_volume(f, "db3");
    q = req(REPL_MARK, 2, "db3");
    snprintf(q.name, sizeof q.name, "n2");
    q.off = RAW / REPL_REGION * REPL_REGION;    /* RAW is not a multiple */
    q.len = REPL_REGION;
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    q.off += REPL_REGION;
    assert_int_equal(call(f, &q, NULL, 0, NULL, NULL), -ERANGE);
    q = req(REPL_STATUS, 2, "db3");
    expect_ok(call(f, &q, NULL, 0, &out, &sn));
    assert_non_null(strstr((char *)out, "\"n2\":1048576"));
    free(out);
    /* A clear past the end is cut to it, and clears the last region. */
    q = req(REPL_CLEAR, 2, "db3");
    snprintf(q.name, sizeof q.name, "n2");
    q.off = 0;
    q.len = 64ull << 20;
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    q = req(REPL_STATUS, 2, "db3");
    expect_ok(call(f, &q, NULL, 0, &out, &sn));
    assert_non_null(strstr((char *)out, "\"n2\":0") ||
                    strstr((char *)out, "\"missed\":{}"));
    free(out);
}

/* A clone's REBUILD names its parent: refused (-ENOENT, saying so, no
 * chain made) while this node has no replica of the parent, or one
 * without the snapshot; then made reading through the parent's snapshot
 * here: the manifest names it and the view shows the parent's blocks. */
static void test_rebuild_clone(void **state)
{
    struct fixture *f = *state;
    struct repl_req q = req(REPL_REBUILD, 2, "c1");
    struct repl_layer_desc head = { 1, 0, "" };
    struct cv_chain_parent pa;
    struct cv_chain *p, *c;
    uint8_t buf[4 * BLK], got[4 * BLK], held[1];
    char path[300];

    q.data_offset = DOFF;
    q.raw_size = RAW;
    q.nlayers = 1;
    q.layers = &head;
    snprintf(q.parent, sizeof q.parent, "p1");
    snprintf(q.parent_snapshot, sizeof q.parent_snapshot, "s1");
    assert_int_equal(call(f, &q, NULL, 0, NULL, NULL), -ENOENT);
    assert_string_equal(cv_last_error(),
                        "node n3: volume c1's parent p1@s1 is not here");
    vol_path(f, "c1.rebuilding", path, sizeof path);
    assert_int_equal(access(path, F_OK), -1);

    make_volume(f, "p1");
    vol_path(f, "p1", path, sizeof path);
    assert_int_equal(cv_chain_open(path, NULL, 0, &p), 0);
    fill(buf, sizeof buf, 5);
    assert_int_equal(cv_chain_write(p, buf, sizeof buf, DOFF + 8 * BLK, 0),
                     0);
    assert_int_equal(cv_chain_snapshot(p, "s0", 1000), 0);
    assert_int_equal(call(f, &q, NULL, 0, NULL, NULL), -ENOENT);
    assert_non_null(strstr(cv_last_error(), "parent p1@s1 is not here"));
    assert_int_equal(cv_chain_snapshot(p, "s1", 1001), 0);
    cv_chain_close(p);

    q.parent_flags = 0;
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    q = req(REPL_COMMIT, 2, "c1");
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    do_read(f, 2, "c1", DOFF + 8 * BLK, sizeof got, got, held);
    assert_memory_equal(got, buf, sizeof buf);
    q = req(REPL_CLOSE, 2, "c1");
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    vol_path(f, "c1", path, sizeof path);
    assert_int_equal(cv_chain_open(path, NULL, CV_CHAIN_READONLY, &c), 0);
    assert_int_equal(cv_chain_parent(c, &pa), 0);
    assert_string_equal(pa.volume, "p1");
    assert_string_equal(pa.snapshot, "s1");
    assert_int_equal(pa.own_format, 0);
    cv_chain_close(c);
}

/* The writer's snapshots and rollback replayed give the same layers, ids
 * included; a snapshot whose id differs is refused. */
static void test_shape_replay(void **state)
{
    struct fixture *f = *state;
    struct cv_chain_layer_info *wl, *rl;
    struct cv_chain *w, *r;
    struct repl_req q;
    unsigned id, above;
    char path[300];
    size_t wn, rn;

    make_volume(f, "db1");
    make_volume(f, "writer");
    vol_path(f, "writer", path, sizeof path);
    assert_int_equal(cv_chain_open(path, NULL, 0, &w), 0);
    q = req(REPL_OPEN, 2, "db1");
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));

    assert_int_equal(cv_chain_snapshot(w, "a", 111), 0);
    assert_int_equal(cv_chain_snapshot(w, "b", 222), 0);
    assert_int_equal(cv_chain_rollback(w, "b"), 0);
    assert_int_equal(cv_chain_snapshot_layer(w, "a", &id, &above), 0);
    assert_int_equal(cv_chain_mark_merging(w, id), 0);
    assert_int_equal(cv_chain_drop_layer(w, id), 0);
    assert_int_equal(cv_chain_snapshot(w, "c", 333), 0);

    q = req(REPL_SHAPE, 2, "db1");
    q.shape_op = REPL_SHAPE_SNAPSHOT;
    snprintf(q.name, sizeof q.name, "a");
    q.created = 111;
    q.id = 1;
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    snprintf(q.name, sizeof q.name, "b");
    q.created = 222;
    q.id = 2;
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    q.shape_op = REPL_SHAPE_ROLLBACK;
    q.id = 0;
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    q.shape_op = REPL_SHAPE_MARK_MERGING;
    q.name[0] = '\0';
    q.id = id;
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    q.shape_op = REPL_SHAPE_DROP_LAYER;
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    assert_int_equal(cv_chain_snapshot_layer(w, "c", &id, &above), 0);
    q.shape_op = REPL_SHAPE_SNAPSHOT;
    snprintf(q.name, sizeof q.name, "c");
    q.created = 333;
    q.id = id;
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    /* One the writer says got another id. */
    snprintf(q.name, sizeof q.name, "d");
    q.id = 99;
    assert_int_equal(call(f, &q, NULL, 0, NULL, NULL), -ESTALE);
    assert_non_null(strstr(cv_last_error(), "needs a rebuild"));
    q = req(REPL_CLOSE, 2, "db1");
    expect_ok(call(f, &q, NULL, 0, NULL, NULL));
    assert_int_equal(cv_chain_snapshot(w, "d", 333), 0);

    vol_path(f, "db1", path, sizeof path);
    assert_int_equal(cv_chain_open(path, NULL, 0, &r), 0);
    assert_int_equal(cv_chain_layers(w, &wl, &wn), 0);
    assert_int_equal(cv_chain_layers(r, &rl, &rn), 0);
    assert_int_equal(wn, rn);
    for (size_t i = 0; i < wn; i++) {
        assert_int_equal(wl[i].id, rl[i].id);
        assert_string_equal(wl[i].snapshot, rl[i].snapshot);
        assert_true(wl[i].created == rl[i].created);
    }
    free(wl);
    free(rl);
    cv_chain_close(r);
    cv_chain_close(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_writes_land, setup, teardown),
        cmocka_unit_test_setup_teardown(test_epoch_fencing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_volume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mark_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_clone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shape_replay, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The replication protocol's payloads (daemon/repl/repl-proto.h): every
 * type round trips; every truncation of every type, a byte too many, an
 * oversize count or name and a bad field are refused with -EBADMSG and a
 * message. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "repl/repl-proto.h"

static struct repl_layer_desc layers3[] = {
    { 1, 1700000000, "s1" }, { 4, 1700000100, "nightly.2" }, { 5, 0, "" },
};

/* One request of each type, with every field it carries set. */
static struct repl_req sample(enum repl_type t)
{
    struct repl_req r;

    memset(&r, 0, sizeof r);
    r.type = t;
    r.epoch = 0x0102030405060708ull;
    strcpy(r.volume, "db1");
    switch (t) {
    case REPL_WRITE:
        r.layer = 4;
        r.flags = 1;
        r.off = 1ull << 40;
        break;
    case REPL_HEADER:
        r.off = 512;
        break;
    case REPL_PUNCH:
        r.off = 8192;
        r.len = 3 * 4096;
        break;
    case REPL_RESIZE:
        r.raw_size = 5ull << 30;
        break;
    case REPL_SHAPE:
        r.shape_op = REPL_SHAPE_SNAPSHOT;
        r.id = 7;
        r.created = -5;
        strcpy(r.name, "snap-1");
        break;
    case REPL_MARK:
    case REPL_CLEAR:
        strcpy(r.name, t == REPL_MARK ? "n3" : REPL_ACTIVE_NODE);
        r.off = 3 << 20;
        r.len = 12345;
        break;
    case REPL_READ:
        r.layer = 0;
        r.off = 4096;
        r.len = REPL_READ_MAX;
        break;
    case REPL_REBUILD:
        r.data_offset = 16 << 20;
        r.raw_size = 1ull << 34;
        r.nlayers = 3;
        r.layers = layers3;
        strcpy(r.parent, "db0");
        strcpy(r.parent_snapshot, "gold");
        r.parent_flags = REPL_PARENT_OWN_FORMAT;
        break;
    default:
        break;
    }
    return r;
}

/* The encoded fields, plus data for WRITE and HEADER (as the second iovec
 * part would carry it). */
static uint8_t *encode(const struct repl_req *r, size_t datalen, size_t *len,
                       size_t *fields)
{
    void *p;
    uint8_t *out;
    size_t n, i;

    assert_int_equal(repl_encode(r, &p, &n), 0);
    out = malloc(n + datalen);
    assert_non_null(out);
    memcpy(out, p, n);
    for (i = 0; i < datalen; i++)
        out[n + i] = (uint8_t)(i * 7 + 1);
    free(p);
    *fields = n;
    *len = n + datalen;
    return out;
}

static size_t datalen_of(enum repl_type t)
{
    return t == REPL_WRITE ? 8192 : t == REPL_HEADER ? 100 : 0;
}

static void expect_bad(uint16_t type, const void *p, size_t len)
{
    struct repl_req q;
    int r;

    cv_clear_error();
    r = repl_decode(type, p, len, &q);
    if (r != -EBADMSG)
        fail_msg("type 0x%04x, %zu bytes: %d, expected -EBADMSG", type, len,
                 r);
    assert_true(strstr(cv_last_error(), "replication") != NULL);
    assert_null(q.layers);
}

static void test_round_trips(void **state)
{
    enum repl_type t;

    (void)state;
    for (t = REPL_OPEN; t <= REPL_CLOSE; t++) {
        struct repl_req r = sample(t), q;
        size_t len, fields, dl = datalen_of(t);
        uint8_t *p = encode(&r, dl, &len, &fields);
        uint32_t i;

        if (repl_decode(t, p, len, &q) != 0)
            fail_msg("type 0x%04x: %s", t, cv_last_error());
        assert_int_equal(q.type, t);
        assert_true(q.epoch == r.epoch);
        assert_string_equal(q.volume, "db1");
        assert_int_equal(q.layer, r.layer);
        assert_int_equal(q.flags, r.flags);
        assert_true(q.off == r.off);
        assert_true(q.len == (dl ? dl : r.len));
        if (dl)
            assert_memory_equal(q.data, p + fields, dl);
        assert_int_equal(q.shape_op, r.shape_op);
        assert_int_equal(q.id, r.id);
        assert_true(q.created == r.created);
        assert_string_equal(q.name, r.name);
        assert_true(q.data_offset == r.data_offset);
        assert_true(q.raw_size == r.raw_size);
        assert_int_equal(q.nlayers, r.nlayers);
        assert_string_equal(q.parent, r.parent);
        assert_string_equal(q.parent_snapshot, r.parent_snapshot);
        assert_int_equal(q.parent_flags, r.parent_flags);
        for (i = 0; i < q.nlayers; i++) {
            assert_int_equal(q.layers[i].id, r.layers[i].id);
            assert_true(q.layers[i].created == r.layers[i].created);
            assert_string_equal(q.layers[i].snapshot, r.layers[i].snapshot);
        }
        repl_req_free(&q);
        free(p);
    }
}

/* Every prefix of every type's encoding is refused (for WRITE and
 * HEADER: every prefix of its fields; a WRITE's data cut short of a
 * whole block too), and so is one byte more for the types with no data. */
static void test_truncations(void **state)
{
    enum repl_type t;

    (void)state;
    for (t = REPL_OPEN; t <= REPL_CLOSE; t++) {
        struct repl_req r = sample(t);
        size_t len, fields, cut, dl = datalen_of(t);
        uint8_t *p = encode(&r, dl + 1, &len, &fields);

        for (cut = 0; cut < fields + (t == REPL_WRITE); cut++)
            expect_bad(t, p, cut);
        if (t == REPL_WRITE)
            for (cut = fields + 1; cut < fields + dl; cut += 511)
                expect_bad(t, p, cut);
        if (!dl)
            expect_bad(t, p, fields + 1);   /* a byte too many */
        else if (t == REPL_WRITE)
            expect_bad(t, p, fields + dl + 1);
        free(p);
    }
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* A count larger than the bound, or than the payload can hold, refused
 * before anything is allocated; names longer than 64 bytes refused. */
static void test_oversize(void **state)
{
    struct repl_req r = sample(REPL_REBUILD), q;
    struct repl_layer_desc many[REPL_MAX_LAYERS + 1];
    struct repl_open_reply o = { 9, 4096, 1 << 20, 3, layers3 }, oq;
    size_t len, fields;
    uint8_t *p;
    void *e;
    size_t elen;
    /* REBUILD's count sits after u64 epoch, u16+3 name, u64, u64. */
    const size_t count_at = 8 + 2 + 3 + 8 + 8;

    (void)state;
    memset(many, 0, sizeof many);
    r.nlayers = REPL_MAX_LAYERS + 1;
    r.layers = many;
    assert_int_equal(repl_encode(&r, &e, &elen), -EINVAL);

    r = sample(REPL_REBUILD);
    p = encode(&r, 0, &len, &fields);
    put32(p + count_at, REPL_MAX_LAYERS + 1);
    expect_bad(REPL_REBUILD, p, len);
    put32(p + count_at, 0xffffffffu);
    expect_bad(REPL_REBUILD, p, len);
    put32(p + count_at, 4);     /* one more than present */
    expect_bad(REPL_REBUILD, p, len);
    put32(p + count_at, 0);
    expect_bad(REPL_REBUILD, p, len);
    free(p);

    /* The volume's name length: 65 (with 65 bytes there) is refused. */
    {
        uint8_t buf[8 + 2 + 65];

        memset(buf, 'a', sizeof buf);
        memset(buf, 0, 8);
        buf[8] = 0;
        buf[9] = 65;
        expect_bad(REPL_OPEN, buf, sizeof buf);
        buf[9] = 64;            /* 64 is fine, but then a byte is left */
        expect_bad(REPL_OPEN, buf, sizeof buf);
        assert_int_equal(repl_decode(REPL_OPEN, buf, sizeof buf - 1, &q), 0);
        buf[10] = '/';
        expect_bad(REPL_OPEN, buf, sizeof buf - 1);
    }

    assert_int_equal(repl_open_reply_encode(&o, &e, &elen), 0);
    assert_int_equal(repl_open_reply_decode(e, elen, &oq), 0);
    assert_int_equal(oq.nlayers, 3);
    assert_string_equal(oq.layers[1].snapshot, "nightly.2");
    assert_int_equal(oq.layers[2].id, 5);
    assert_true(oq.epoch == 9 && oq.data_offset == 4096 &&
                oq.raw_size == 1 << 20);
    repl_open_reply_free(&oq);
    for (len = 0; len < elen; len++)
        assert_int_equal(repl_open_reply_decode(e, len, &oq), -EBADMSG);
    put32((uint8_t *)e + 24, 0xffffffffu);
    assert_int_equal(repl_open_reply_decode(e, elen, &oq), -EBADMSG);
    assert_null(oq.layers);
    free(e);
}

/* Fields a type checks: whole blocks, READ's bound, a shape op, a node,
 * an unknown type. */
static void test_bad_fields(void **state)
{
    struct repl_req r;
    size_t len, fields;
    uint8_t *p;

    (void)state;
    r = sample(REPL_PUNCH);
    r.off = 100;
    p = encode(&r, 0, &len, &fields);
    expect_bad(REPL_PUNCH, p, len);
    free(p);

    r = sample(REPL_READ);
    r.len = REPL_READ_MAX + 4096;
    p = encode(&r, 0, &len, &fields);
    expect_bad(REPL_READ, p, len);
    free(p);
    r.len = 0;
    p = encode(&r, 0, &len, &fields);
    expect_bad(REPL_READ, p, len);
    free(p);

    r = sample(REPL_SHAPE);
    r.shape_op = 99;
    p = encode(&r, 0, &len, &fields);
    expect_bad(REPL_SHAPE, p, len);
    free(p);

    r = sample(REPL_MARK);
    strcpy(r.name, "../etc");
    p = encode(&r, 0, &len, &fields);
    expect_bad(REPL_MARK, p, len);
    free(p);
    strcpy(r.name, "@other");
    p = encode(&r, 0, &len, &fields);
    expect_bad(REPL_MARK, p, len);
    free(p);

    r = sample(REPL_MARK);
    r.off = UINT64_MAX - 5;
    p = encode(&r, 0, &len, &fields);
    expect_bad(REPL_MARK, p, len);
    free(p);

    r = sample(REPL_OPEN);
    strcpy(r.volume, ".hidden");
    p = encode(&r, 0, &len, &fields);
    expect_bad(REPL_OPEN, p, len);
    expect_bad(0x0250, p, len);
    expect_bad(REPL_CLOSE + 1, p, len);
    free(p);
}

/* REBUILD's parent: none round trips; a volume without its snapshot (or
 * the reverse), flags for no parent, an unknown flag, an invalid parent
 * name, each refused. */
static void test_rebuild_parent(void **state)
{
    struct repl_req r = sample(REPL_REBUILD), q;
    size_t len, fields;
    uint8_t *p;

    (void)state;
    r.parent[0] = r.parent_snapshot[0] = '\0';
    r.parent_flags = 0;
    p = encode(&r, 0, &len, &fields);
    assert_int_equal(repl_decode(REPL_REBUILD, p, len, &q), 0);
    assert_string_equal(q.parent, "");
    assert_string_equal(q.parent_snapshot, "");
    repl_req_free(&q);
    p[len - 1] = 1;             /* own format, but no parent */
    expect_bad(REPL_REBUILD, p, len);
    free(p);

    r = sample(REPL_REBUILD);
    r.parent_snapshot[0] = '\0';
    p = encode(&r, 0, &len, &fields);
    expect_bad(REPL_REBUILD, p, len);
    free(p);
    r = sample(REPL_REBUILD);
    r.parent[0] = '\0';
    p = encode(&r, 0, &len, &fields);
    expect_bad(REPL_REBUILD, p, len);
    free(p);
    r = sample(REPL_REBUILD);
    r.parent_flags = 2;
    p = encode(&r, 0, &len, &fields);
    expect_bad(REPL_REBUILD, p, len);
    free(p);
    r = sample(REPL_REBUILD);
    strcpy(r.parent, ".hidden");
    p = encode(&r, 0, &len, &fields);
    expect_bad(REPL_REBUILD, p, len);
    free(p);
    r = sample(REPL_REBUILD);
    strcpy(r.parent_snapshot, "a/b");
    p = encode(&r, 0, &len, &fields);
    expect_bad(REPL_REBUILD, p, len);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_rebuild_parent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

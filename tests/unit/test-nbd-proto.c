/* lib/nbd/nbd-proto.c: parsers and builders, byte for byte against the NBD
 * spec (doc/proto.md of the NBD project). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "nbd/nbd-proto.h"

#define MiB (1024u * 1024u)

/* Compares n bytes and prints the first difference. */
static void expect_bytes(const uint8_t *got, const uint8_t *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            fail_msg("byte %zu: got 0x%02x, want 0x%02x", i, got[i], want[i]);
}

static void test_greeting(void **state)
{
    static const uint8_t want[] = {
        'N', 'B', 'D', 'M', 'A', 'G', 'I', 'C',
        'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T',
        0x00, 0x03,
    };
    uint8_t out[NBD_HANDSHAKE_LEN];

    (void)state;
    nbd_build_greeting(out);
    expect_bytes(out, want, sizeof want);
}

static void test_client_flags(void **state)
{
    static const uint8_t good[] = { 0, 0, 0, 3 }, bad[] = { 0, 0, 0, 4 };
    static const uint8_t none[] = { 0, 0, 0, 0 }, high[] = { 0x80, 0, 0, 1 };
    uint32_t f = 99;

    (void)state;
    assert_int_equal(nbd_parse_client_flags(good, &f), 0);
    assert_int_equal(f, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    assert_int_equal(nbd_parse_client_flags(none, &f), 0);
    assert_int_equal(f, 0);
    assert_int_equal(nbd_parse_client_flags(bad, &f), -EPROTO);
    assert_int_equal(nbd_parse_client_flags(high, &f), -EPROTO);
}

static void test_opt_hdr(void **state)
{
    uint8_t in[NBD_OPT_HDR_LEN] = {
        'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T',
        0, 0, 0, 7, 0x00, 0x01, 0x02, 0x03,
    };
    struct nbd_opt_hdr h;

    (void)state;
    assert_int_equal(nbd_parse_opt_hdr(in, &h), 0);
    assert_int_equal(h.option, NBD_OPT_GO);
    assert_int_equal(h.len, 0x010203);
    in[0] = 'X';
    assert_int_equal(nbd_parse_opt_hdr(in, &h), -EPROTO);
    assert_non_null(strstr(cv_last_error(), "IHAVEOPT"));
}

static void test_opt_go(void **state)
{
    /* name "db1", two info requests: NAME, BLOCK_SIZE */
    static const uint8_t in[] = {
        0, 0, 0, 3, 'd', 'b', '1', 0, 2, 0, 1, 0, 3,
    };
    struct nbd_opt_go g;

    (void)state;
    assert_int_equal(nbd_parse_opt_go(in, sizeof in, &g), 0);
    assert_int_equal(g.name_len, 3);
    assert_memory_equal(g.name, "db1", 3);
    assert_int_equal(g.ninfo, 2);
    assert_int_equal(nbd_get16(g.info), NBD_INFO_NAME);
    assert_int_equal(nbd_get16(g.info + 2), NBD_INFO_BLOCK_SIZE);

    /* empty name, no info requests */
    static const uint8_t empty[] = { 0, 0, 0, 0, 0, 0 };
    assert_int_equal(nbd_parse_opt_go(empty, sizeof empty, &g), 0);
    assert_int_equal(g.name_len, 0);
    assert_int_equal(g.ninfo, 0);
}

static void test_opt_go_invalid(void **state)
{
    static const uint8_t name_too_long[] = { 0, 0, 0, 9, 'a', 'b', 0, 0 };
    static const uint8_t no_count[] = { 0, 0, 0, 1, 'a' };
    static const uint8_t odd_info[] = { 0, 0, 0, 1, 'a', 0, 1, 0, 1, 0 };
    static const uint8_t too_few[] = { 0, 0, 0, 1, 'a', 0, 2, 0, 1 };
    static const uint8_t nul[] = { 0, 0, 0, 2, 'a', 0, 0, 0 };
    static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 0, 0 };
    struct nbd_opt_go g;

    (void)state;
    assert_int_equal(nbd_parse_opt_go(name_too_long, 8, &g), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "export name"));
    assert_int_equal(nbd_parse_opt_go(no_count, 5, &g), -EINVAL);
    assert_int_equal(nbd_parse_opt_go(odd_info, 10, &g), -EINVAL);
    assert_int_equal(nbd_parse_opt_go(too_few, 9, &g), -EINVAL);
    assert_int_equal(nbd_parse_opt_go(nul, 8, &g), -EINVAL);
    assert_int_equal(nbd_parse_opt_go(huge, 6, &g), -EINVAL);
    assert_int_equal(nbd_parse_opt_go(huge, 0, &g), -EINVAL);
    assert_int_equal(nbd_parse_opt_go(huge, 3, &g), -EINVAL);
}

static void test_opt_meta(void **state)
{
    static const uint8_t in[] = {
        0, 0, 0, 2, 'v', '1',
        0, 0, 0, 2,
        0, 0, 0, 15, 'b', 'a', 's', 'e', ':', 'a', 'l', 'l', 'o', 'c',
        'a', 't', 'i', 'o', 'n',
        0, 0, 0, 5, 'b', 'a', 's', 'e', ':',
    };
    struct nbd_opt_meta m;
    const char *q;
    uint32_t qlen;

    (void)state;
    assert_int_equal(nbd_parse_opt_meta(in, sizeof in, &m), 0);
    assert_int_equal(m.name_len, 2);
    assert_int_equal(m.nqueries, 2);
    assert_int_equal(nbd_meta_next_query(&m, &q, &qlen), 1);
    assert_int_equal(qlen, 15);
    assert_true(nbd_meta_query_matches(q, qlen, 0));
    assert_int_equal(nbd_meta_next_query(&m, &q, &qlen), 1);
    assert_int_equal(qlen, 5);
    assert_false(nbd_meta_query_matches(q, qlen, 0));
    assert_true(nbd_meta_query_matches(q, qlen, 1));
    assert_int_equal(nbd_meta_next_query(&m, &q, &qlen), 0);

    assert_false(nbd_meta_query_matches("base:alloc", 10, 1));
    assert_false(nbd_meta_query_matches("qemu:dirty-bitmap:x", 19, 1));
}

static void test_opt_meta_invalid(void **state)
{
    /* claims 2 queries, has 1 */
    static const uint8_t short_q[] = {
        0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 'x',
    };
    /* trailing garbage */
    static const uint8_t trailing[] = {
        0, 0, 0, 0, 0, 0, 0, 0, 'x',
    };
    /* query length past the end */
    static const uint8_t past[] = {
        0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 'x',
    };
    /* huge query count, no data: must fail quickly */
    static const uint8_t many[] = {
        0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
    };
    struct nbd_opt_meta m;

    (void)state;
    assert_int_equal(nbd_parse_opt_meta(short_q, sizeof short_q, &m), -EINVAL);
    assert_int_equal(nbd_parse_opt_meta(trailing, sizeof trailing, &m),
                     -EINVAL);
    assert_int_equal(nbd_parse_opt_meta(past, sizeof past, &m), -EINVAL);
    assert_int_equal(nbd_parse_opt_meta(many, sizeof many, &m), -EINVAL);
    assert_int_equal(nbd_parse_opt_meta(many, 3, &m), -EINVAL);
    assert_int_equal(nbd_parse_opt_meta(many, 6, &m), -EINVAL);
}

static void test_opt_replies(void **state)
{
    uint8_t out[64];
    static const uint8_t ack[] = {
        0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9,
        0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0,
    };
    static const uint8_t server[] = {
        0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9,
        0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 7,
        0, 0, 0, 3, 'd', 'b', '1',
    };
    static const uint8_t err[] = {
        0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9,
        0, 0, 0, 99, 0x80, 0, 0, 1, 0, 0, 0, 2, 'n', 'o',
    };

    (void)state;
    assert_int_equal(nbd_build_opt_reply(out, NBD_OPT_GO, NBD_REP_ACK, 0), 20);
    expect_bytes(out, ack, sizeof ack);
    assert_int_equal(nbd_build_rep_server(out, sizeof out, NBD_OPT_LIST,
                                          "db1"), sizeof server);
    expect_bytes(out, server, sizeof server);
    assert_int_equal(nbd_build_opt_error(out, sizeof out, 99,
                                         NBD_REP_ERR_UNSUP, "no"), sizeof err);
    expect_bytes(out, err, sizeof err);
    /* too small a buffer: nothing */
    assert_int_equal(nbd_build_rep_server(out, 26, NBD_OPT_LIST, "db1"), 0);
    assert_int_equal(nbd_build_opt_error(out, sizeof out, 1, NBD_REP_ERR_UNSUP,
                                         NULL), 20);
}

static void test_info_replies(void **state)
{
    uint8_t out[64];
    static const uint8_t exp[] = {
        0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9,
        0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 12,
        0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0x01, 0x4d,
    };
    static const uint8_t bs[] = {
        0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9,
        0, 0, 0, 6, 0, 0, 0, 3, 0, 0, 0, 14,
        0, 3, 0, 0, 0, 1, 0, 0, 0x10, 0, 0x02, 0, 0, 0,
    };
    static const uint8_t name[] = {
        0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9,
        0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 4, 0, 1, 'v', '1',
    };
    static const uint8_t meta[] = {
        0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9,
        0, 0, 0, 10, 0, 0, 0, 4, 0, 0, 0, 19, 0, 0, 0, 1,
        'b', 'a', 's', 'e', ':', 'a', 'l', 'l', 'o', 'c', 'a', 't', 'i',
        'o', 'n',
    };

    (void)state;
    assert_int_equal(nbd_build_info_export(out, sizeof out, NBD_OPT_GO,
                                           UINT64_C(1) << 32, 0x14d), 32);
    expect_bytes(out, exp, sizeof exp);
    assert_int_equal(nbd_build_info_block_size(out, sizeof out, NBD_OPT_INFO,
                                               1, 4096, 32 * MiB), sizeof bs);
    expect_bytes(out, bs, sizeof bs);
    assert_int_equal(nbd_build_info_string(out, sizeof out, NBD_OPT_GO,
                                           NBD_INFO_NAME, "v1"), sizeof name);
    expect_bytes(out, name, sizeof name);
    assert_int_equal(nbd_build_meta_context(out, sizeof out,
                                            NBD_OPT_SET_META_CONTEXT, 1,
                                            NBD_META_BASE_ALLOCATION),
                     sizeof meta);
    expect_bytes(out, meta, sizeof meta);
}

static void test_export_name_reply(void **state)
{
    uint8_t out[NBD_EXPORT_NAME_REPLY_LEN];
    static const uint8_t want[] = { 0, 0, 0, 0, 0, 0x10, 0, 0, 0x01, 0x0d };

    (void)state;
    memset(out, 0xaa, sizeof out);
    assert_int_equal(nbd_build_export_name_reply(out, 1 * MiB, 0x10d, 1), 10);
    expect_bytes(out, want, sizeof want);
    assert_int_equal(out[10], 0xaa);
    assert_int_equal(nbd_build_export_name_reply(out, 1 * MiB, 0x10d, 0), 134);
    expect_bytes(out, want, sizeof want);
    for (int i = 10; i < 134; i++)
        assert_int_equal(out[i], 0);
}

static void test_long_strings_are_cut(void **state)
{
    static uint8_t out[2 * NBD_MAX_STRING];
    static char msg[NBD_MAX_STRING + 100];

    (void)state;
    memset(msg, 'm', sizeof msg - 1);
    assert_int_equal(nbd_build_opt_error(out, sizeof out, 1,
                                         NBD_REP_ERR_UNKNOWN, msg),
                     20 + NBD_MAX_STRING);
    assert_int_equal(nbd_get32(out + 16), NBD_MAX_STRING);
    assert_false(nbd_string_ok(msg, sizeof msg - 1));
    assert_true(nbd_string_ok(msg, 10));
    assert_false(nbd_string_ok("a\0b", 3));
}

static void test_request_parse(void **state)
{
    uint8_t in[NBD_REQUEST_LEN] = {
        0x25, 0x60, 0x95, 0x13, 0x00, 0x01, 0x00, 0x01,
        1, 2, 3, 4, 5, 6, 7, 8,
        0, 0, 0, 0, 0, 0, 0x10, 0,
        0, 0, 0x02, 0,
    };
    struct nbd_request r;

    (void)state;
    assert_int_equal(nbd_parse_request(in, &r), 0);
    assert_int_equal(r.flags, NBD_CMD_FLAG_FUA);
    assert_int_equal(r.type, NBD_CMD_WRITE);
    assert_true(r.handle == UINT64_C(0x0102030405060708));
    assert_int_equal(r.offset, 4096);
    assert_int_equal(r.len, 512);
    in[3] = 0x14;
    assert_int_equal(nbd_parse_request(in, &r), -EPROTO);
}

static struct nbd_session_info session(int ro)
{
    struct nbd_session_info s = {
        .size = 1 * MiB,
        .tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
                  (ro ? NBD_FLAG_READ_ONLY : NBD_FLAG_SEND_FUA),
        .structured = 1,
        .meta = 1,
    };
    return s;
}

static int check(uint16_t type, uint16_t flags, uint64_t off, uint32_t len,
                 const struct nbd_session_info *s)
{
    struct nbd_request r = { .type = type, .flags = flags, .handle = 1,
                             .offset = off, .len = len };
    return nbd_check_request(&r, s);
}

static void test_request_check(void **state)
{
    struct nbd_session_info s = session(0), ro = session(1);

    (void)state;
    assert_int_equal(check(NBD_CMD_READ, 0, 0, 4096, &s), 0);
    assert_int_equal(check(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 4096, &s), 0);
    assert_int_equal(check(NBD_CMD_READ, 0, 1 * MiB - 1, 1, &s), 0);
    assert_int_equal(check(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 7, 9, &s), 0);
    assert_int_equal(check(NBD_CMD_FLUSH, 0, 0, 0, &s), 0);
    assert_int_equal(check(NBD_CMD_TRIM, 0, 0, 1 * MiB, &s), 0);
    assert_int_equal(check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 0,
                           512, &s), 0);
    assert_int_equal(check(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 0,
                           1 * MiB, &s), 0);
    assert_int_equal(check(NBD_CMD_DISC, 0, 0, 0, &s), 0);
    /* reads, flush and block status are fine on a read-only export */
    assert_int_equal(check(NBD_CMD_READ, 0, 0, 1, &ro), 0);
    assert_int_equal(check(NBD_CMD_FLUSH, 0, 0, 0, &ro), 0);
}

static void test_request_check_errors(void **state)
{
    struct nbd_session_info s = session(0), ro = session(1);
    struct nbd_session_info plain = s;

    (void)state;
    plain.structured = 0;
    plain.meta = 0;
    /* unknown command and flags: EINVAL */
    assert_int_equal(check(99, 0, 0, 1, &s), -EINVAL);
    assert_int_equal(check(NBD_CMD_CACHE, 0, 0, 1, &s), -EINVAL);
    assert_int_equal(check(NBD_CMD_READ, 1u << 15, 0, 1, &s), -EINVAL);
    assert_int_equal(check(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 1, &plain),
                     -EINVAL);
    assert_int_equal(check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 0,
                           1, &s), -EINVAL);
    assert_int_equal(check(NBD_CMD_WRITE, NBD_CMD_FLAG_NO_HOLE, 0, 1, &s),
                     -EINVAL);
    assert_int_equal(check(NBD_CMD_BLOCK_STATUS, 0, 0, 1, &plain), -EINVAL);
    /* ranges */
    assert_int_equal(check(NBD_CMD_READ, 0, 1 * MiB, 1, &s), -EINVAL);
    assert_non_null(strstr(cv_last_error(), "past the end"));
    assert_int_equal(check(NBD_CMD_READ, 0, UINT64_MAX, 2, &s), -EINVAL);
    assert_int_equal(check(NBD_CMD_WRITE, 0, 1 * MiB - 1, 2, &s), -ENOSPC);
    assert_int_equal(check(NBD_CMD_TRIM, 0, UINT64_MAX - 1, 4, &s), -ENOSPC);
    assert_int_equal(check(NBD_CMD_BLOCK_STATUS, 0, 1 * MiB, 1, &s),
                     -EINVAL);
    assert_int_equal(check(NBD_CMD_READ, 0, 0, 0, &s), -EINVAL);
    assert_int_equal(check(NBD_CMD_FLUSH, 0, 1, 0, &s), -EINVAL);
    assert_int_equal(check(NBD_CMD_FLUSH, 0, 0, 1, &s), -EINVAL);
    /* too large */
    s.size = UINT64_C(1) << 40;
    assert_int_equal(check(NBD_CMD_READ, 0, 0, 32 * MiB, &s), 0);
    assert_int_equal(check(NBD_CMD_READ, 0, 0, 32 * MiB + 1, &s), -EOVERFLOW);
    assert_int_equal(check(NBD_CMD_WRITE, 0, 0, UINT32_MAX, &s), -EOVERFLOW);
    /* trim and zero carry no payload: no payload limit */
    assert_int_equal(check(NBD_CMD_TRIM, 0, 0, UINT32_MAX, &s), 0);
    /* read-only */
    assert_int_equal(check(NBD_CMD_WRITE, 0, 0, 1, &ro), -EPERM);
    assert_int_equal(check(NBD_CMD_TRIM, 0, 0, 1, &ro), -EPERM);
    assert_int_equal(check(NBD_CMD_WRITE_ZEROES, 0, 0, 1, &ro), -EPERM);
}

static void test_errno_map(void **state)
{
    (void)state;
    assert_int_equal(nbd_errno(0), 0);
    assert_int_equal(nbd_errno(-EPERM), NBD_EPERM);
    assert_int_equal(nbd_errno(-EROFS), NBD_EPERM);
    assert_int_equal(nbd_errno(-EIO), NBD_EIO);
    assert_int_equal(nbd_errno(-ENOMEM), NBD_ENOMEM);
    assert_int_equal(nbd_errno(-ERANGE), NBD_EINVAL);
    assert_int_equal(nbd_errno(-EINVAL), NBD_EINVAL);
    assert_int_equal(nbd_errno(-ENOSPC), NBD_ENOSPC);
    assert_int_equal(nbd_errno(-EDQUOT), NBD_ENOSPC);
    assert_int_equal(nbd_errno(-EFBIG), NBD_ENOSPC);
    assert_int_equal(nbd_errno(-EOVERFLOW), NBD_EOVERFLOW);
    assert_int_equal(nbd_errno(-ESHUTDOWN), NBD_ESHUTDOWN);
    assert_int_equal(nbd_errno(-EKEYREJECTED), NBD_EIO);
}

static void test_transmission_replies(void **state)
{
    uint8_t out[64];
    static const uint8_t simple[] = {
        0x67, 0x44, 0x66, 0x98, 0, 0, 0, 22, 0, 0, 0, 0, 0, 0, 0, 9,
    };
    static const uint8_t data[] = {
        0x66, 0x8e, 0x33, 0xef, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9,
        0, 0, 0x10, 8, 0, 0, 0, 0, 0, 0, 0x20, 0,
    };
    static const uint8_t err[] = {
        0x66, 0x8e, 0x33, 0xef, 0, 1, 0x80, 1, 0, 0, 0, 0, 0, 0, 0, 9,
        0, 0, 0, 8, 0, 0, 0, 5, 0, 2, 'n', 'o',
    };

    (void)state;
    assert_int_equal(nbd_build_simple_reply(out, NBD_EINVAL, 9), 16);
    expect_bytes(out, simple, sizeof simple);
    assert_int_equal(nbd_build_offset_data(out, NBD_REPLY_FLAG_DONE, 9, 8192,
                                           4096), 28);
    expect_bytes(out, data, sizeof data);
    assert_int_equal(nbd_build_error_chunk(out, sizeof out, 9, NBD_EIO, "no"),
                     sizeof err);
    expect_bytes(out, err, sizeof err);
    /* cut to the buffer; never an error value of 0 */
    assert_int_equal(nbd_build_error_chunk(out, 27, 9, 0, "no"), 27);
    assert_int_equal(nbd_get32(out + 16), 7);
    assert_int_equal(nbd_get32(out + 20), NBD_EIO);
    assert_int_equal(nbd_get16(out + 24), 1);
    assert_int_equal(nbd_build_error_chunk(out, 25, 9, 5, "no"), 0);
}

static void test_extents(void **state)
{
    uint8_t buf[24 + 3 * 8];
    struct nbd_extents ex;
    static const uint8_t want[] = {
        0x66, 0x8e, 0x33, 0xef, 0, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 4,
        0, 0, 0, 28, 0, 0, 0, 1,
        0, 0, 0x30, 0, 0, 0, 0, 0,
        0, 0, 0x10, 0, 0, 0, 0, 3,
        0, 0, 0x10, 0, 0, 0, 0, 0,
    };

    (void)state;
    assert_int_equal(nbd_extents_init(&ex, buf, sizeof buf, 4, 1, 20480, 0),
                     0);
    assert_int_equal(nbd_extents_add(&ex, 4096, 0), 0);
    assert_int_equal(nbd_extents_add(&ex, 8192, 0), 0);     /* merges */
    assert_int_equal(nbd_extents_add(&ex, 4096, 3), 0);
    /* past the request: cut at 20480, and full */
    assert_int_equal(nbd_extents_add(&ex, 1 * MiB, 0), 1);
    assert_int_equal(ex.n, 3);
    assert_int_equal(nbd_extents_finish(&ex), sizeof want);
    expect_bytes(buf, want, sizeof want);
}

static void test_extents_limits(void **state)
{
    uint8_t buf[24 + 2 * 8];
    struct nbd_extents ex;

    (void)state;
    /* REQ_ONE: one descriptor */
    assert_int_equal(nbd_extents_init(&ex, buf, sizeof buf, 1, 1, 8192, 1), 0);
    assert_int_equal(nbd_extents_add(&ex, 4096, 0), 1);
    assert_int_equal(nbd_extents_finish(&ex), 32);
    /* buffer full */
    assert_int_equal(nbd_extents_init(&ex, buf, sizeof buf, 1, 1, 8192, 0), 0);
    assert_int_equal(nbd_extents_add(&ex, 1024, 0), 0);
    assert_int_equal(nbd_extents_add(&ex, 1024, 1), 1);
    assert_int_equal(nbd_extents_finish(&ex), 40);
    /* a request of 4 GiB - 1 in one extent of more than that */
    assert_int_equal(nbd_extents_init(&ex, buf, sizeof buf, 1, 1, UINT32_MAX,
                                      0), 0);
    assert_int_equal(nbd_extents_add(&ex, UINT64_C(1) << 40, 2), 1);
    assert_int_equal(ex.n, 1);
    assert_int_equal(nbd_get32(buf + 24), UINT32_MAX);
    /* nothing added: nothing to send */
    assert_int_equal(nbd_extents_init(&ex, buf, sizeof buf, 1, 1, 10, 0), 0);
    assert_int_equal(nbd_extents_add(&ex, 0, 0), 0);
    assert_int_equal(nbd_extents_finish(&ex), 0);
    assert_int_equal(nbd_extents_init(&ex, buf, 31, 1, 1, 10, 0), -EINVAL);
}

static void test_names(void **state)
{
    char buf[32];

    (void)state;
    assert_string_equal(nbd_opt_name(NBD_OPT_GO, buf, sizeof buf),
                        "NBD_OPT_GO");
    assert_string_equal(nbd_opt_name(4, buf, sizeof buf), "option 4");
    assert_string_equal(nbd_opt_name(UINT32_MAX, buf, sizeof buf),
                        "option 4294967295");
    assert_string_equal(nbd_cmd_name(NBD_CMD_BLOCK_STATUS, buf, sizeof buf),
                        "NBD_CMD_BLOCK_STATUS");
    assert_string_equal(nbd_cmd_name(1000, buf, sizeof buf), "command 1000");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greeting),
        cmocka_unit_test(test_client_flags),
        cmocka_unit_test(test_opt_hdr),
        cmocka_unit_test(test_opt_go),
        cmocka_unit_test(test_opt_go_invalid),
        cmocka_unit_test(test_opt_meta),
        cmocka_unit_test(test_opt_meta_invalid),
        cmocka_unit_test(test_opt_replies),
        cmocka_unit_test(test_info_replies),
        cmocka_unit_test(test_export_name_reply),
        cmocka_unit_test(test_long_strings_are_cut),
        cmocka_unit_test(test_request_parse),
        cmocka_unit_test(test_request_check),
        cmocka_unit_test(test_request_check_errors),
        cmocka_unit_test(test_errno_map),
        cmocka_unit_test(test_transmission_replies),
        cmocka_unit_test(test_extents),
        cmocka_unit_test(test_extents_limits),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

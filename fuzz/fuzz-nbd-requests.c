/* libFuzzer: the transmission phase's request parsing and checking.  The
 * first 12 input bytes choose the session (export size, flags, structured
 * replies, metadata context); the rest is a stream of requests, each
 * checked and answered as the server would, with block status extents
 * taken from the input too.  Checked on the way: a request that passes
 * nbd_check_request lies inside the export and within the payload limit,
 * and every reply the builders make fits its buffer. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "nbd/nbd-proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[NBD_CHUNK_HDR_LEN + 4 + 8 * 64];

static void answer(const struct nbd_request *r,
                   const struct nbd_session_info *s, int err,
                   const uint8_t *extents, size_t nextents)
{
    struct nbd_extents ex;
    size_t len;

    if (err) {
        len = nbd_build_error_chunk(out, sizeof out, r->handle, nbd_errno(err),
                                    cv_last_error());
        if (len == 0 || len > sizeof out)
            abort();
        return;
    }
    if (r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) {
        if (r->len > NBD_MAX_PAYLOAD)
            abort();
    }
    if (r->type != NBD_CMD_FLUSH && r->type != NBD_CMD_DISC &&
        (r->offset > s->size || r->len > s->size - r->offset))
        abort();
    if (r->type != NBD_CMD_BLOCK_STATUS)
        return;
    if (nbd_extents_init(&ex, out, sizeof out, r->handle, 1, r->len,
                         r->flags & NBD_CMD_FLAG_REQ_ONE) < 0)
        abort();
    for (size_t i = 0; i < nextents; i++)
        if (nbd_extents_add(&ex, nbd_get32(extents + 4 * i) & 0xffffff,
                            extents[4 * i] & 3))
            break;
    len = nbd_extents_finish(&ex);
    if (len > sizeof out)
        abort();
    uint64_t sum = 0;
    for (unsigned i = 0; i < ex.n; i++)
        sum += nbd_get32(out + 24 + 8 * i);
    if (sum > r->len)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct nbd_session_info s;
    struct nbd_request r;
    const uint8_t *p = data, *end = data + size;

    if (size < 12)
        return 0;
    s.size = nbd_get64(p) >> (p[8] & 63);
    s.tflags = nbd_get16(p + 9);
    s.structured = p[11] & 1;
    s.meta = s.structured && (p[11] & 2);
    for (p += 12; end - p >= NBD_REQUEST_LEN;) {
        int err;

        if (nbd_parse_request(p, &r) < 0)
            return 0;
        p += NBD_REQUEST_LEN;
        err = nbd_check_request(&r, &s);
        /* Extents for block status come from what follows. */
        size_t n = (size_t)(end - p) / 4;
        answer(&r, &s, err, p, n > 64 ? 64 : n);
        if (r.type == NBD_CMD_WRITE)
            p += (size_t)(end - p) < r.len ? (size_t)(end - p) : r.len;
    }
    return 0;
}

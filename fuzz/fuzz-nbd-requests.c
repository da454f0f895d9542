/* libFuzzer: the server's transmission phase.  The first 12 input bytes
 * choose the session: byte 8 the export (modulo FUZZ_NEXPORTS: plaintext,
 * plaintext of an odd size, LUKS2), byte 11 bit 0 structured replies and
 * bit 1 the base:allocation context (with structured replies); the other
 * bytes are not used (the export sets the size and flags).  The harness
 * negotiates that session with well-formed options and the rest of the
 * input is the request stream, fed to the real server (fuzz-server.c):
 * nbd_transmit()'s request reader (read_request, read_payload: a write's
 * payload read, or drained when the request is refused), the checks, and
 * every command on the export.
 *
 * Before the server gets the stream, the harness walks it as the server's
 * reader does and checks nbd_check_request's verdicts (the function the
 * reader calls): an accepted request lies inside the export and a READ or
 * WRITE within the payload limit.  The export's own range checks would
 * refuse such a request too, quietly, so the server alone would not show
 * that nbd_check_request let it through. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-server.h"
#include "nbd/nbd-proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SESSION_LEN 12

/* Appends an option with its payload; returns the new length. */
static size_t put_opt(uint8_t *p, size_t at, uint32_t opt,
                      const uint8_t *payload, uint32_t len)
{
    nbd_put64(p + at, NBD_OPTS_MAGIC);
    nbd_put32(p + at + 8, opt);
    nbd_put32(p + at + 12, len);
    memcpy(p + at + NBD_OPT_HDR_LEN, payload, len);
    return at + NBD_OPT_HDR_LEN + len;
}

/* The options a client sends to reach that session. */
static size_t handshake(uint8_t *p, const uint8_t *session)
{
    const char *name = fuzz_export_name(session[8] % FUZZ_NEXPORTS);
    const char *ctx = NBD_META_BASE_ALLOCATION;
    uint32_t nlen = (uint32_t)strlen(name), clen = (uint32_t)strlen(ctx);
    int structured = session[11] & 1, meta = structured && (session[11] & 2);
    uint8_t pl[64];
    size_t at = 4;

    nbd_put32(p, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    if (structured)
        at = put_opt(p, at, NBD_OPT_STRUCTURED_REPLY, pl, 0);
    if (meta) {
        /* export name, one query: base:allocation */
        nbd_put32(pl, nlen);
        memcpy(pl + 4, name, nlen);
        nbd_put32(pl + 4 + nlen, 1);
        nbd_put32(pl + 8 + nlen, clen);
        memcpy(pl + 12 + nlen, ctx, clen);
        at = put_opt(p, at, NBD_OPT_SET_META_CONTEXT, pl, 12 + nlen + clen);
    }
    /* export name, no info requests */
    nbd_put32(pl, nlen);
    memcpy(pl + 4, name, nlen);
    nbd_put16(pl + 4 + nlen, 0);
    return put_opt(p, at, NBD_OPT_GO, pl, 6 + nlen);
}

/* Aborts if nbd_check_request accepts a request it must refuse.  The
 * flags are all allowed but read-only: the ranges are what is checked. */
static void check_verdicts(const uint8_t *session, const uint8_t *p,
                           const uint8_t *end)
{
    struct nbd_session_info s = {
        .size = fuzz_export_size(session[8] % FUZZ_NEXPORTS),
        .tflags = (uint16_t)~NBD_FLAG_READ_ONLY,
        .structured = session[11] & 1,
        .meta = (session[11] & 1) && (session[11] & 2),
    };
    struct nbd_request r;

    while (end - p >= NBD_REQUEST_LEN && nbd_parse_request(p, &r) == 0) {
        p += NBD_REQUEST_LEN;
        if (r.type == NBD_CMD_DISC)
            return;
        if (nbd_check_request(&r, &s) == 0) {
            if ((r.type == NBD_CMD_READ || r.type == NBD_CMD_WRITE) &&
                r.len > NBD_MAX_PAYLOAD)
                abort();
            if (r.type != NBD_CMD_FLUSH &&
                (r.offset > s.size || r.len > s.size - r.offset))
                abort();
        }
        /* The server reads a write's payload, or reads past it. */
        if (r.type == NBD_CMD_WRITE)
            p += (size_t)(end - p) < r.len ? (size_t)(end - p) : r.len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t prefix[256];

    if (size < SESSION_LEN)
        return 0;
    check_verdicts(data, data + SESSION_LEN, data + size);
    fuzz_server_run(prefix, handshake(prefix, data), data + SESSION_LEN,
                    size - SESSION_LEN);
    return 0;
}

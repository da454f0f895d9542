#include "nbd-proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

#define EXPORT_NAME_ZEROES 124

const char *nbd_opt_name(uint32_t opt, char *buf, size_t len)
{
    static const char *const names[] = {
        [NBD_OPT_EXPORT_NAME] = "NBD_OPT_EXPORT_NAME",
        [NBD_OPT_ABORT] = "NBD_OPT_ABORT",
        [NBD_OPT_LIST] = "NBD_OPT_LIST",
        [NBD_OPT_STARTTLS] = "NBD_OPT_STARTTLS",
        [NBD_OPT_INFO] = "NBD_OPT_INFO",
        [NBD_OPT_GO] = "NBD_OPT_GO",
        [NBD_OPT_STRUCTURED_REPLY] = "NBD_OPT_STRUCTURED_REPLY",
        [NBD_OPT_LIST_META_CONTEXT] = "NBD_OPT_LIST_META_CONTEXT",
        [NBD_OPT_SET_META_CONTEXT] = "NBD_OPT_SET_META_CONTEXT",
    };

    if (opt < sizeof names / sizeof names[0] && names[opt])
        return names[opt];
    snprintf(buf, len, "option %u", (unsigned)opt);
    return buf;
}

const char *nbd_cmd_name(uint16_t type, char *buf, size_t len)
{
    static const char *const names[] = {
        [NBD_CMD_READ] = "NBD_CMD_READ",
        [NBD_CMD_WRITE] = "NBD_CMD_WRITE",
        [NBD_CMD_DISC] = "NBD_CMD_DISC",
        [NBD_CMD_FLUSH] = "NBD_CMD_FLUSH",
        [NBD_CMD_TRIM] = "NBD_CMD_TRIM",
        [NBD_CMD_CACHE] = "NBD_CMD_CACHE",
        [NBD_CMD_WRITE_ZEROES] = "NBD_CMD_WRITE_ZEROES",
        [NBD_CMD_BLOCK_STATUS] = "NBD_CMD_BLOCK_STATUS",
    };

    if (type < sizeof names / sizeof names[0] && names[type])
        return names[type];
    snprintf(buf, len, "command %u", (unsigned)type);
    return buf;
}

/* --- Handshake ---------------------------------------------------------- */

void nbd_build_greeting(uint8_t out[NBD_HANDSHAKE_LEN])
{
    nbd_put64(out, NBD_MAGIC);
    nbd_put64(out + 8, NBD_OPTS_MAGIC);
    nbd_put16(out + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
}

int nbd_parse_client_flags(const uint8_t in[4], uint32_t *flags)
{
    uint32_t f = nbd_get32(in);

    /* The spec: the server MUST drop the connection on unknown flags. */
    if (f & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES))
        return cv_error(-EPROTO, "client flags 0x%08x: unknown bits",
                        (unsigned)f);
    *flags = f;
    return 0;
}

int nbd_parse_opt_hdr(const uint8_t in[NBD_OPT_HDR_LEN],
                      struct nbd_opt_hdr *h)
{
    uint64_t magic = nbd_get64(in);

    if (magic != NBD_OPTS_MAGIC)
        return cv_error(-EPROTO, "option magic 0x%016llx is not IHAVEOPT",
                        (unsigned long long)magic);
    h->option = nbd_get32(in + 8);
    h->len = nbd_get32(in + 12);
    return 0;
}

int nbd_string_ok(const char *s, size_t len)
{
    return len <= NBD_MAX_STRING && memchr(s, '\0', len) == NULL;
}

/* A 32-bit length and that many bytes of string at *p, not past end. */
static int take_string(const uint8_t **p, const uint8_t *end,
                       const char *what, const char **s, uint32_t *slen)
{
    uint32_t n;

    if (end - *p < 4)
        return cv_error(-EINVAL, "%s: length field cut short", what);
    n = nbd_get32(*p);
    *p += 4;
    if ((uint64_t)(end - *p) < n)
        return cv_error(-EINVAL, "%s is %u bytes but only %u remain", what,
                        (unsigned)n, (unsigned)(end - *p));
    if (!nbd_string_ok((const char *)*p, n))
        return cv_error(-EINVAL, "%s is too long or contains NUL", what);
    *s = (const char *)*p;
    *slen = n;
    *p += n;
    return 0;
}

int nbd_parse_opt_go(const uint8_t *data, uint32_t len,
                     struct nbd_opt_go *out)
{
    const uint8_t *p = data, *end = data + len;
    int r;

    r = take_string(&p, end, "export name", &out->name, &out->name_len);
    if (r < 0)
        return r;
    if (end - p < 2)
        return cv_error(-EINVAL, "number of information requests missing");
    out->ninfo = nbd_get16(p);
    p += 2;
    if ((size_t)(end - p) != 2u * out->ninfo)
        return cv_error(-EINVAL, "%u information requests need %u bytes, "
                        "the option has %u", (unsigned)out->ninfo,
                        2u * out->ninfo, (unsigned)(end - p));
    out->info = p;
    return 0;
}

int nbd_parse_opt_meta(const uint8_t *data, uint32_t len,
                       struct nbd_opt_meta *out)
{
    const uint8_t *p = data, *end = data + len;
    const char *q;
    uint32_t qlen;
    int r;

    r = take_string(&p, end, "export name", &out->name, &out->name_len);
    if (r < 0)
        return r;
    if (end - p < 4)
        return cv_error(-EINVAL, "number of queries missing");
    out->nqueries = nbd_get32(p);
    p += 4;
    out->queries = p;
    out->end = end;
    /* Validate every query now so the caller's loop cannot fail. */
    for (uint32_t i = 0; i < out->nqueries; i++) {
        r = take_string(&p, end, "query", &q, &qlen);
        if (r < 0)
            return r;
    }
    if (p != end)
        return cv_error(-EINVAL, "%u bytes after the last query",
                        (unsigned)(end - p));
    return 0;
}

int nbd_meta_next_query(struct nbd_opt_meta *m, const char **q,
                        uint32_t *qlen)
{
    if (m->nqueries == 0)
        return 0;
    *qlen = nbd_get32(m->queries);
    *q = (const char *)m->queries + 4;
    m->queries += 4 + (size_t)*qlen;
    m->nqueries--;
    return 1;
}

int nbd_meta_query_matches(const char *q, uint32_t qlen, int listing)
{
    static const char base[] = NBD_META_BASE_ALLOCATION;
    size_t blen = sizeof base - 1;

    if (qlen == blen && memcmp(q, base, blen) == 0)
        return 1;
    /* "base:" lists every context in the namespace. */
    return listing && qlen == 5 && memcmp(q, "base:", 5) == 0;
}

size_t nbd_build_opt_reply(uint8_t out[NBD_OPT_REPLY_HDR_LEN], uint32_t opt,
                           uint32_t type, uint32_t len)
{
    nbd_put64(out, NBD_REP_MAGIC);
    nbd_put32(out + 8, opt);
    nbd_put32(out + 12, type);
    nbd_put32(out + 16, len);
    return NBD_OPT_REPLY_HDR_LEN;
}

static size_t str_len(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    return n > NBD_MAX_STRING ? NBD_MAX_STRING : n;
}

/* A reply whose payload is head (hlen bytes) then a string. */
static size_t build_with_string(uint8_t *out, size_t cap, uint32_t opt,
                                uint32_t type, const uint8_t *head,
                                size_t hlen, const char *s)
{
    size_t slen = str_len(s), total = NBD_OPT_REPLY_HDR_LEN + hlen + slen;

    if (cap < total)
        return 0;
    nbd_build_opt_reply(out, opt, type, (uint32_t)(hlen + slen));
    if (hlen)           /* head is NULL for a bare message */
        memcpy(out + NBD_OPT_REPLY_HDR_LEN, head, hlen);
    if (slen)
        memcpy(out + NBD_OPT_REPLY_HDR_LEN + hlen, s, slen);
    return total;
}

size_t nbd_build_opt_error(uint8_t *out, size_t cap, uint32_t opt,
                           uint32_t type, const char *msg)
{
    return build_with_string(out, cap, opt, type, NULL, 0, msg);
}

size_t nbd_build_rep_server(uint8_t *out, size_t cap, uint32_t opt,
                            const char *name)
{
    uint8_t head[4];

    nbd_put32(head, (uint32_t)str_len(name));
    return build_with_string(out, cap, opt, NBD_REP_SERVER, head, 4, name);
}

size_t nbd_build_info_export(uint8_t *out, size_t cap, uint32_t opt,
                             uint64_t size, uint16_t tflags)
{
    uint8_t head[12];

    nbd_put16(head, NBD_INFO_EXPORT);
    nbd_put64(head + 2, size);
    nbd_put16(head + 10, tflags);
    return build_with_string(out, cap, opt, NBD_REP_INFO, head, 12, NULL);
}

size_t nbd_build_info_block_size(uint8_t *out, size_t cap, uint32_t opt,
                                 uint32_t min, uint32_t pref, uint32_t max)
{
    uint8_t head[14];

    nbd_put16(head, NBD_INFO_BLOCK_SIZE);
    nbd_put32(head + 2, min);
    nbd_put32(head + 6, pref);
    nbd_put32(head + 10, max);
    return build_with_string(out, cap, opt, NBD_REP_INFO, head, 14, NULL);
}

size_t nbd_build_info_string(uint8_t *out, size_t cap, uint32_t opt,
                             uint16_t info, const char *s)
{
    uint8_t head[2];

    nbd_put16(head, info);
    return build_with_string(out, cap, opt, NBD_REP_INFO, head, 2, s);
}

size_t nbd_build_meta_context(uint8_t *out, size_t cap, uint32_t opt,
                              uint32_t id, const char *name)
{
    uint8_t head[4];

    nbd_put32(head, id);
    return build_with_string(out, cap, opt, NBD_REP_META_CONTEXT, head, 4,
                             name);
}

size_t nbd_build_export_name_reply(uint8_t out[NBD_EXPORT_NAME_REPLY_LEN],
                                   uint64_t size, uint16_t tflags,
                                   int no_zeroes)
{
    nbd_put64(out, size);
    nbd_put16(out + 8, tflags);
    if (no_zeroes)
        return 10;
    memset(out + 10, 0, EXPORT_NAME_ZEROES);
    return NBD_EXPORT_NAME_REPLY_LEN;
}

/* --- Transmission ------------------------------------------------------- */

int nbd_parse_request(const uint8_t in[NBD_REQUEST_LEN],
                      struct nbd_request *r)
{
    uint32_t magic = nbd_get32(in);

    if (magic != NBD_REQUEST_MAGIC)
        return cv_error(-EPROTO, "request magic 0x%08x is not 0x%08x",
                        (unsigned)magic, (unsigned)NBD_REQUEST_MAGIC);
    r->flags = nbd_get16(in + 4);
    r->type = nbd_get16(in + 6);
    r->handle = nbd_get64(in + 8);
    r->offset = nbd_get64(in + 16);
    r->len = nbd_get32(in + 24);
    return 0;
}

/* The command flags each command accepts.  FUA is accepted everywhere
 * (the spec: clients are known to set it on any command); DF only once
 * structured replies are on. */
static uint16_t allowed_flags(const struct nbd_request *r,
                              const struct nbd_session_info *s)
{
    uint16_t f = NBD_CMD_FLAG_FUA;

    switch (r->type) {
    case NBD_CMD_READ:
        return s->structured ? f | NBD_CMD_FLAG_DF : f;
    case NBD_CMD_WRITE_ZEROES:
        return f | NBD_CMD_FLAG_NO_HOLE;
    case NBD_CMD_BLOCK_STATUS:
        return f | NBD_CMD_FLAG_REQ_ONE;
    default:
        return f;
    }
}

static int is_write(uint16_t type)
{
    return type == NBD_CMD_WRITE || type == NBD_CMD_TRIM ||
           type == NBD_CMD_WRITE_ZEROES;
}

/* Offset, length and size rules once the command itself is known good. */
static int check_range(const struct nbd_request *r,
                       const struct nbd_session_info *s, const char *name)
{
    if (r->type == NBD_CMD_FLUSH) {
        if (r->offset || r->len)
            return cv_error(-EINVAL, "%s with offset %llu and length %u "
                            "(both must be 0)", name,
                            (unsigned long long)r->offset, (unsigned)r->len);
        return 0;
    }
    if (r->len == 0)
        return cv_error(-EINVAL, "%s of 0 bytes", name);
    if ((r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) &&
        r->len > NBD_MAX_PAYLOAD)
        return cv_error(-EOVERFLOW, "%s of %u bytes is above the maximum "
                        "block size (%u)", name, (unsigned)r->len,
                        (unsigned)NBD_MAX_PAYLOAD);
    if (r->offset > s->size || r->len > s->size - r->offset)
        return cv_error(is_write(r->type) ? -ENOSPC : -EINVAL,
                        "%s of %u bytes at %llu is past the end (%llu bytes)",
                        name, (unsigned)r->len, (unsigned long long)r->offset,
                        (unsigned long long)s->size);
    return 0;
}

int nbd_check_request(const struct nbd_request *r,
                      const struct nbd_session_info *s)
{
    char buf[32];
    const char *name = nbd_cmd_name(r->type, buf, sizeof buf);
    uint16_t bad;

    switch (r->type) {
    case NBD_CMD_READ: case NBD_CMD_WRITE: case NBD_CMD_FLUSH:
    case NBD_CMD_TRIM: case NBD_CMD_WRITE_ZEROES: case NBD_CMD_DISC:
        break;
    case NBD_CMD_BLOCK_STATUS:
        if (!s->meta)
            return cv_error(-EINVAL, "%s without a negotiated metadata "
                            "context", name);
        break;
    default:
        return cv_error(-EINVAL, "unknown %s", name);
    }
    bad = r->flags & (uint16_t)~allowed_flags(r, s);
    if (bad)
        return cv_error(-EINVAL, "%s with unsupported flags 0x%x", name,
                        (unsigned)bad);
    if (r->type == NBD_CMD_DISC)
        return 0;
    if (is_write(r->type) && (s->tflags & NBD_FLAG_READ_ONLY))
        return cv_error(-EPERM, "%s on a read-only export", name);
    return check_range(r, s, name);
}

uint32_t nbd_errno(int err)
{
    switch (err < 0 ? -err : err) {
    case 0: return 0;
    case EPERM: case EROFS: case EACCES: return NBD_EPERM;
    case ENOMEM: return NBD_ENOMEM;
    case EINVAL: case ERANGE: return NBD_EINVAL;
    case ENOSPC: case EDQUOT: case EFBIG: return NBD_ENOSPC;
    case EOVERFLOW: return NBD_EOVERFLOW;
    case ENOTSUP: return NBD_ENOTSUP;
    case ESHUTDOWN: return NBD_ESHUTDOWN;
    default: return NBD_EIO;
    }
}

size_t nbd_build_simple_reply(uint8_t out[NBD_SIMPLE_REPLY_LEN],
                              uint32_t error, uint64_t handle)
{
    nbd_put32(out, NBD_SIMPLE_REPLY_MAGIC);
    nbd_put32(out + 4, error);
    nbd_put64(out + 8, handle);
    return NBD_SIMPLE_REPLY_LEN;
}

size_t nbd_build_chunk(uint8_t out[NBD_CHUNK_HDR_LEN], uint16_t flags,
                       uint16_t type, uint64_t handle, uint32_t len)
{
    nbd_put32(out, NBD_STRUCTURED_REPLY_MAGIC);
    nbd_put16(out + 4, flags);
    nbd_put16(out + 6, type);
    nbd_put64(out + 8, handle);
    nbd_put32(out + 16, len);
    return NBD_CHUNK_HDR_LEN;
}

size_t nbd_build_offset_data(uint8_t out[NBD_OFFSET_DATA_HDR_LEN],
                             uint16_t flags, uint64_t handle, uint64_t offset,
                             uint32_t datalen)
{
    nbd_build_chunk(out, flags, NBD_REPLY_TYPE_OFFSET_DATA, handle,
                    datalen + 8);
    nbd_put64(out + NBD_CHUNK_HDR_LEN, offset);
    return NBD_OFFSET_DATA_HDR_LEN;
}

size_t nbd_build_error_chunk(uint8_t *out, size_t cap, uint64_t handle,
                             uint32_t error, const char *msg)
{
    size_t fixed = NBD_CHUNK_HDR_LEN + 6, mlen = str_len(msg);

    if (cap < fixed)
        return 0;
    if (mlen > cap - fixed)
        mlen = cap - fixed;
    /* error MUST be non-zero in an error chunk */
    nbd_build_chunk(out, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, handle,
                    (uint32_t)(6 + mlen));
    nbd_put32(out + NBD_CHUNK_HDR_LEN, error ? error : NBD_EIO);
    nbd_put16(out + NBD_CHUNK_HDR_LEN + 4, (uint16_t)mlen);
    if (mlen)
        memcpy(out + fixed, msg, mlen);
    return fixed + mlen;
}

#define EXTENTS_HDR (NBD_CHUNK_HDR_LEN + 4)

int nbd_extents_init(struct nbd_extents *ex, uint8_t *buf, size_t cap,
                     uint64_t handle, uint32_t ctx_id, uint32_t req_len,
                     int req_one)
{
    if (cap < EXTENTS_HDR + 8)
        return cv_error(-EINVAL, "block status buffer of %zu bytes is too "
                        "small", cap);
    ex->buf = buf;
    ex->cap = cap;
    ex->handle = handle;
    ex->ctx_id = ctx_id;
    ex->remaining = req_len;
    ex->max = req_one ? 1 : (unsigned)((cap - EXTENTS_HDR) / 8);
    ex->n = 0;
    return 0;
}

int nbd_extents_add(struct nbd_extents *ex, uint64_t len, uint32_t flags)
{
    uint8_t *last = ex->buf + EXTENTS_HDR + 8 * (size_t)(ex->n ? ex->n - 1 : 0);
    uint64_t room;

    if (ex->remaining == 0 || len == 0)
        return ex->remaining == 0;
    if (len > ex->remaining)
        len = ex->remaining;
    if (ex->n && nbd_get32(last + 4) == flags &&
        (room = UINT32_MAX - nbd_get32(last)) > 0) {
        uint64_t take = len < room ? len : room;

        nbd_put32(last, nbd_get32(last) + (uint32_t)take);
        ex->remaining -= take;
        len -= take;
        if (len == 0)
            return ex->remaining == 0;
    }
    while (len && ex->n < ex->max) {
        uint8_t *d = ex->buf + EXTENTS_HDR + 8 * (size_t)ex->n;
        uint32_t take = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;

        nbd_put32(d, take);
        nbd_put32(d + 4, flags);
        ex->n++;
        ex->remaining -= take;
        len -= take;
    }
    return ex->remaining == 0 || ex->n == ex->max;
}

size_t nbd_extents_finish(struct nbd_extents *ex)
{
    size_t len = 4 + 8 * (size_t)ex->n;

    if (ex->n == 0)
        return 0;
    nbd_build_chunk(ex->buf, NBD_REPLY_FLAG_DONE,
                    NBD_REPLY_TYPE_BLOCK_STATUS, ex->handle, (uint32_t)len);
    nbd_put32(ex->buf + NBD_CHUNK_HDR_LEN, ex->ctx_id);
    return NBD_CHUNK_HDR_LEN + len;
}

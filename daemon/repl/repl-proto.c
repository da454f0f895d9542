/* The replication protocol's payloads (repl-proto.h): a cursor over a
 * buffer that reads or writes big-endian fields and checks every length
 * against what is left, so a short or long payload is refused with a
 * message saying how long it was and how long it had to be. */
#include "repl-proto.h"

#include "core/error.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *type_name(uint16_t type)
{
    static const char *const names[] = {
        "OPEN", "WRITE", "PUNCH", "FLUSH", "HEADER", "RESIZE", "SHAPE",
        "MARK", "CLEAR", "READ", "REBUILD", "COMMIT", "DELETE", "STATUS",
        "CLOSE",
    };

    if (type >= REPL_OPEN && type <= REPL_CLOSE)
        return names[type - REPL_OPEN];
    return "?";
}

/* ---- decoding ---- */

struct rd {
    const uint8_t *p;
    size_t len, pos;
    const char *what;           /* "replication WRITE" */
    int err;                    /* the first error; later reads do nothing */
};

/* The payload ends before the field: how many bytes it had, how many the
 * fields so far need. */
static int rd_short(struct rd *r, size_t need)
{
    if (!r->err)
        r->err = cv_error(-EBADMSG, "%s: %zu bytes, needs %zu", r->what,
                          r->len, r->pos + need);
    return r->err;
}

static const uint8_t *rd_take(struct rd *r, size_t n)
{
    const uint8_t *at;

    if (r->err)
        return NULL;
    if (r->len - r->pos < n) {
        rd_short(r, n);
        return NULL;
    }
    at = r->p + r->pos;
    r->pos += n;
    return at;
}

static uint16_t rd_u16(struct rd *r)
{
    const uint8_t *at = rd_take(r, 2);
    uint16_t v;

    if (!at)
        return 0;
    memcpy(&v, at, 2);
    return be16toh(v);
}

static uint32_t rd_u32(struct rd *r)
{
    const uint8_t *at = rd_take(r, 4);
    uint32_t v;

    if (!at)
        return 0;
    memcpy(&v, at, 4);
    return be32toh(v);
}

static uint64_t rd_u64(struct rd *r)
{
    const uint8_t *at = rd_take(r, 8);
    uint64_t v;

    if (!at)
        return 0;
    memcpy(&v, at, 8);
    return be64toh(v);
}

static int rd_bad(struct rd *r, const char *fmt, const char *field,
                  unsigned long long v)
{
    char msg[128];

    if (!r->err) {
        snprintf(msg, sizeof msg, fmt, field, v);
        r->err = cv_error(-EBADMSG, "%s: %s", r->what, msg);
    }
    return r->err;
}

/* A snapshot name or a node: printable, no '/', no space; "" allowed
 * only when empty_ok. */
static int name_chars_ok(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '/')
            return 0;
    return 1;
}

enum name_kind { NAME_VOLUME, NAME_NODE, NAME_SNAPSHOT };

/* u16 len | bytes, into out (CVD_NAME_MAX + 1 bytes). */
static void rd_name(struct rd *r, char *out, enum name_kind kind,
                    const char *field)
{
    uint16_t n = rd_u16(r);
    const uint8_t *at;

    if (r->err)
        return;
    if (n > CVD_NAME_MAX) {
        rd_bad(r, "%s is %llu bytes, at most 64", field, n);
        return;
    }
    at = rd_take(r, n);
    if (!at)
        return;
    memcpy(out, at, n);
    out[n] = '\0';
    if (!name_chars_ok(out, n) || strlen(out) != n)
        rd_bad(r, "%s has a byte not allowed in a name (%llu bytes)", field,
               n);
    else if (kind == NAME_VOLUME && !cvd_name_valid(out))
        rd_bad(r, "%s is not a valid name (%llu bytes)", field, n);
    else if (kind == NAME_NODE && !cvd_name_valid(out) &&
             strcmp(out, REPL_ACTIVE_NODE) != 0)
        rd_bad(r, "%s is not a node's name (%llu bytes)", field, n);
}

/* Whole blocks: off and len multiples of 4 KiB. */
#define REPL_BLOCK 4096u

static void rd_blocks(struct rd *r, uint64_t off, uint64_t len)
{
    if (off % REPL_BLOCK)
        rd_bad(r, "%s %llu is not a multiple of 4096", "offset", off);
    else if (len % REPL_BLOCK)
        rd_bad(r, "%s %llu is not a multiple of 4096", "length", len);
    else if (off + len < off)
        rd_bad(r, "%s %llu: offset + length overflows", "length", len);
}

static void rd_end(struct rd *r)
{
    if (!r->err && r->pos != r->len)
        r->err = cv_error(-EBADMSG, "%s: %zu bytes, needs %zu", r->what,
                          r->len, r->pos);
}

/* n x (u32 id | i64 created | u16 len | name), n checked first. */
static struct repl_layer_desc *rd_layers(struct rd *r, uint32_t n)
{
    struct repl_layer_desc *l;
    uint32_t i;

    if (r->err)
        return NULL;
    if (n == 0 || n > REPL_MAX_LAYERS) {
        rd_bad(r, "%s: %llu, 1 to 256", "layers", n);
        return NULL;
    }
    /* Each layer takes at least 14 bytes: a count past what the payload
     * can hold is refused before anything is allocated. */
    if ((r->len - r->pos) / 14 < n) {
        rd_short(r, (size_t)n * 14);
        return NULL;
    }
    l = calloc(n, sizeof *l);
    if (!l) {
        r->err = cv_error(-ENOMEM, "%s: out of memory", r->what);
        return NULL;
    }
    for (i = 0; i < n && !r->err; i++) {
        l[i].id = rd_u32(r);
        l[i].created = (int64_t)rd_u64(r);
        rd_name(r, l[i].snapshot, NAME_SNAPSHOT, "a layer's snapshot");
    }
    if (r->err) {
        free(l);
        return NULL;
    }
    return l;
}

/* REBUILD's parent: both names or neither ("" and "" and flags 0 for a
 * volume that is no clone: one encoding for each meaning), flags known. */
static void rd_parent(struct rd *r, struct repl_req *q)
{
    rd_name(r, q->parent, NAME_SNAPSHOT, "the parent volume");
    rd_name(r, q->parent_snapshot, NAME_SNAPSHOT, "the parent's snapshot");
    q->parent_flags = rd_u32(r);
    if (r->err)
        return;
    if (q->parent[0] && !cvd_name_valid(q->parent))
        rd_bad(r, "%s is not a valid name (%llu bytes)", "the parent volume",
               strlen(q->parent));
    else if (!q->parent[0] != !q->parent_snapshot[0])
        rd_bad(r, "%s: a parent volume and its snapshot, or neither (%llu "
               "bytes)", "the parent", strlen(q->parent));
    else if (q->parent_flags & ~REPL_PARENT_OWN_FORMAT ||
             (!q->parent[0] && q->parent_flags))
        rd_bad(r, "%s 0x%llx are not known", "the parent's flags",
               q->parent_flags);
}

static void decode_fields(struct rd *r, struct repl_req *q)
{
    switch (q->type) {
    case REPL_WRITE:
        q->layer = rd_u32(r);
        q->flags = rd_u32(r);
        q->off = rd_u64(r);
        q->len = r->err ? 0 : r->len - r->pos;
        q->data = r->p + r->pos;
        r->pos = r->len;
        if (!r->err && q->len == 0)
            rd_bad(r, "%s: %llu bytes of data", "no data", 0);
        rd_blocks(r, q->off, q->len);
        break;
    case REPL_HEADER:
        q->off = rd_u64(r);
        q->len = r->err ? 0 : r->len - r->pos;
        q->data = r->p + r->pos;
        r->pos = r->len;
        if (!r->err && q->off + q->len < q->off)
            rd_bad(r, "%s %llu: offset + length overflows", "offset", q->off);
        break;
    case REPL_PUNCH:
        q->off = rd_u64(r);
        q->len = rd_u64(r);
        rd_blocks(r, q->off, q->len);
        break;
    case REPL_RESIZE:
        q->raw_size = rd_u64(r);
        break;
    case REPL_SHAPE:
        q->shape_op = rd_u16(r);
        q->id = rd_u32(r);
        q->created = (int64_t)rd_u64(r);
        rd_name(r, q->name, NAME_SNAPSHOT, "the snapshot's name");
        if (!r->err && (q->shape_op < REPL_SHAPE_SNAPSHOT ||
                        q->shape_op > REPL_SHAPE_DATA_OFFSET))
            rd_bad(r, "%s %llu is not one", "shape op", q->shape_op);
        break;
    case REPL_MARK:
    case REPL_CLEAR:
        rd_name(r, q->name, NAME_NODE, "the node");
        q->off = rd_u64(r);
        q->len = rd_u64(r);
        if (!r->err && q->off + q->len < q->off)
            rd_bad(r, "%s %llu: offset + length overflows", "length", q->len);
        break;
    case REPL_READ:
        q->layer = rd_u32(r);
        q->off = rd_u64(r);
        q->len = rd_u32(r);
        rd_blocks(r, q->off, q->len);
        if (!r->err && (q->len == 0 || q->len > REPL_READ_MAX))
            rd_bad(r, "%s %llu: 4096 to 4 MiB", "length", q->len);
        break;
    case REPL_REBUILD:
        q->data_offset = rd_u64(r);
        q->raw_size = rd_u64(r);
        q->nlayers = rd_u32(r);
        q->layers = rd_layers(r, q->nlayers);
        rd_parent(r, q);
        break;
    default:                    /* OPEN FLUSH COMMIT DELETE STATUS CLOSE */
        break;
    }
}

int repl_decode(uint16_t type, const void *payload, size_t len,
                struct repl_req *out)
{
    char what[32];
    struct rd r = { payload, len, 0, what, 0 };

    memset(out, 0, sizeof *out);
    snprintf(what, sizeof what, "replication %s", type_name(type));
    if (type < REPL_OPEN || type > REPL_CLOSE)
        return cv_error(-EBADMSG, "replication: message type 0x%04x is not "
                        "one", type);
    out->type = type;
    out->epoch = rd_u64(&r);
    rd_name(&r, out->volume, NAME_VOLUME, "the volume");
    decode_fields(&r, out);
    rd_end(&r);
    if (r.err) {
        repl_req_free(out);
        return r.err;
    }
    return 0;
}

void repl_req_free(struct repl_req *r)
{
    if (!r)
        return;
    free(r->layers);
    r->layers = NULL;
    r->nlayers = 0;
}

/* ---- encoding ---- */

struct wr {
    uint8_t *p;
    size_t len, cap;
    int err;
};

static void wr_put(struct wr *w, const void *src, size_t n)
{
    uint8_t *np;
    size_t cap;

    if (w->err)
        return;
    if (w->cap - w->len < n) {
        cap = w->cap ? w->cap : 64;
        while (cap - w->len < n)
            cap *= 2;
        np = realloc(w->p, cap);
        if (!np) {
            w->err = cv_error(-ENOMEM, "replication: encoding: out of "
                              "memory");
            return;
        }
        w->p = np;
        w->cap = cap;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void wr_u16(struct wr *w, uint16_t v)
{
    v = htobe16(v);
    wr_put(w, &v, 2);
}

static void wr_u32(struct wr *w, uint32_t v)
{
    v = htobe32(v);
    wr_put(w, &v, 4);
}

static void wr_u64(struct wr *w, uint64_t v)
{
    v = htobe64(v);
    wr_put(w, &v, 8);
}

static void wr_name(struct wr *w, const char *s)
{
    size_t n = strnlen(s, CVD_NAME_MAX + 1);

    if (n > CVD_NAME_MAX && !w->err)
        w->err = cv_error(-EINVAL, "replication: name \"%.64s...\" is "
                          "longer than %d bytes", s, CVD_NAME_MAX);
    wr_u16(w, (uint16_t)n);
    wr_put(w, s, n);
}

static void wr_layers(struct wr *w, uint32_t n,
                      const struct repl_layer_desc *l)
{
    uint32_t i;

    if (n > REPL_MAX_LAYERS && !w->err)
        w->err = cv_error(-EINVAL, "replication: %u layers, at most %d", n,
                          REPL_MAX_LAYERS);
    wr_u32(w, n);
    for (i = 0; i < n && !w->err; i++) {
        wr_u32(w, l[i].id);
        wr_u64(w, (uint64_t)l[i].created);
        wr_name(w, l[i].snapshot);
    }
}

static void encode_fields(struct wr *w, const struct repl_req *r)
{
    switch (r->type) {
    case REPL_WRITE:
        wr_u32(w, r->layer);
        wr_u32(w, r->flags);
        wr_u64(w, r->off);
        break;
    case REPL_HEADER:
        wr_u64(w, r->off);
        break;
    case REPL_PUNCH:
        wr_u64(w, r->off);
        wr_u64(w, r->len);
        break;
    case REPL_RESIZE:
        wr_u64(w, r->raw_size);
        break;
    case REPL_SHAPE:
        wr_u16(w, r->shape_op);
        wr_u32(w, r->id);
        wr_u64(w, (uint64_t)r->created);
        wr_name(w, r->name);
        break;
    case REPL_MARK:
    case REPL_CLEAR:
        wr_name(w, r->name);
        wr_u64(w, r->off);
        wr_u64(w, r->len);
        break;
    case REPL_READ:
        wr_u32(w, r->layer);
        wr_u64(w, r->off);
        wr_u32(w, (uint32_t)r->len);
        break;
    case REPL_REBUILD:
        wr_u64(w, r->data_offset);
        wr_u64(w, r->raw_size);
        wr_layers(w, r->nlayers, r->layers);
        wr_name(w, r->parent);
        wr_name(w, r->parent_snapshot);
        wr_u32(w, r->parent_flags);
        break;
    default:
        break;
    }
}

int repl_encode(const struct repl_req *r, void **out, size_t *len)
{
    struct wr w = { 0 };

    *out = NULL;
    *len = 0;
    if (r->type < REPL_OPEN || r->type > REPL_CLOSE)
        return cv_error(-EINVAL, "replication: message type 0x%04x is not "
                        "one", r->type);
    wr_u64(&w, r->epoch);
    wr_name(&w, r->volume);
    encode_fields(&w, r);
    if (w.err) {
        free(w.p);
        return w.err;
    }
    *out = w.p;
    *len = w.len;
    return 0;
}

int repl_open_reply_encode(const struct repl_open_reply *o, void **out,
                           size_t *len)
{
    struct wr w = { 0 };

    *out = NULL;
    *len = 0;
    wr_u64(&w, o->epoch);
    wr_u64(&w, o->data_offset);
    wr_u64(&w, o->raw_size);
    wr_layers(&w, o->nlayers, o->layers);
    if (w.err) {
        free(w.p);
        return w.err;
    }
    *out = w.p;
    *len = w.len;
    return 0;
}

int repl_open_reply_decode(const void *payload, size_t len,
                           struct repl_open_reply *out)
{
    struct rd r = { payload, len, 0, "replication OPEN's answer", 0 };

    memset(out, 0, sizeof *out);
    out->epoch = rd_u64(&r);
    out->data_offset = rd_u64(&r);
    out->raw_size = rd_u64(&r);
    out->nlayers = rd_u32(&r);
    out->layers = rd_layers(&r, out->nlayers);
    rd_end(&r);
    if (r.err) {
        repl_open_reply_free(out);
        return r.err;
    }
    return 0;
}

void repl_open_reply_free(struct repl_open_reply *o)
{
    if (!o)
        return;
    free(o->layers);
    o->layers = NULL;
    o->nlayers = 0;
}

/* A manifest as JSON (docs/backup.md, "Layout"): written with json-c, and
 * read back checking every member, since a manifest may come from another
 * daemon, another version or someone with write access to the target.
 * The MAC (target-manifest.c) is over these exact bytes. */
#include "target-internal.h"

#include "audit/audit.h"
#include "core/error.h"
#include "core/json-util.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECTORS(len) (((len) + CV_CHAIN_BLOCK - 1) / CV_CHAIN_BLOCK)

/* key: s, or null when s is "". */
static int add_string_or_null(json_object *o, const char *key, const char *s)
{
    if (!s[0])
        return json_object_object_add(o, key, NULL) == 0 ? 0 : -ENOMEM;
    return cv_json_add(o, key, json_object_new_string(s));
}

static int add_int(json_object *o, const char *key, int64_t v)
{
    return cv_json_add(o, key, json_object_new_int64(v));
}

static int add_time_or_null(json_object *o, const char *key, int64_t t)
{
    if (t == 0)
        return json_object_object_add(o, key, NULL) == 0 ? 0 : -ENOMEM;
    return cv_json_add(o, key, cv_json_time(t));
}

/* 1 when every sector of a block of len bytes is held. */
static int all_held(const struct cvd_manifest_block *b)
{
    uint32_t i, n = SECTORS(b->len);

    for (i = 0; i < n; i++)
        if (!(b->held[i / 8] & (1u << (i % 8))))
            return 0;
    return 1;
}

static int encode_block(json_object *arr, const struct cvd_manifest_block *b)
{
    json_object *o = json_object_new_object();
    char held[2 * sizeof b->held + 1];
    size_t i;
    int r;

    if (!o)
        return -ENOMEM;
    r = add_int(o, "offset", (int64_t)b->offset);
    if (r == 0)
        r = add_int(o, "length", b->len);
    if (r == 0)
        r = cv_json_add(o, "sha256", json_object_new_string(b->sha256));
    if (r == 0 && !all_held(b)) {
        for (i = 0; i < sizeof b->held; i++)
            snprintf(held + 2 * i, 3, "%02x", b->held[i]);
        r = cv_json_add(o, "held", json_object_new_string(held));
    }
    if (r < 0) {
        json_object_put(o);
        return r;
    }
    return cv_json_append(arr, o);
}

static int encode_info(json_object *o, const struct cvd_backup_info *i)
{
    int r = add_int(o, "format", 1);

    if (r == 0) r = cv_json_add(o, "id", json_object_new_string(i->id));
    if (r == 0) r = cv_json_add(o, "volume", json_object_new_string(i->volume));
    if (r == 0) r = cv_json_add(o, "snapshot", json_object_new_string(i->snapshot));
    if (r == 0) r = cv_json_add(o, "uuid", json_object_new_string(i->uuid));
    if (r == 0) r = cv_json_add(o, "cluster", json_object_new_string(i->cluster));
    if (r == 0) r = cv_json_add(o, "node", json_object_new_string(i->node));
    if (r == 0) r = add_string_or_null(o, "secret", i->secret);
    if (r == 0)
        r = i->kek_gen ? add_int(o, "kekGeneration", i->kek_gen) :
            (json_object_object_add(o, "kekGeneration", NULL) == 0 ? 0 : -ENOMEM);
    if (r == 0) r = cv_json_add(o, "type", json_object_new_string(i->type));
    if (r == 0) r = cv_json_add(o, "cipher", json_object_new_string(i->cipher));
    if (r == 0) r = add_int(o, "keyBits", i->key_bits);
    if (r == 0) r = add_int(o, "sectorSize", i->sector_size);
    if (r == 0) r = add_int(o, "size", (int64_t)i->size);
    if (r == 0) r = add_int(o, "dataOffset", (int64_t)i->data_offset);
    if (r == 0) r = add_int(o, "rawSize", (int64_t)i->raw_size);
    if (r == 0) r = add_string_or_null(o, "base", i->base);
    if (r == 0) r = cv_json_add(o, "created", cv_json_time(i->created));
    if (r == 0) r = add_time_or_null(o, "finished", i->finished);
    if (r == 0)
        r = cv_json_add(o, "state",
                        json_object_new_string(cvd_backup_state_name(i->state)));
    if (r == 0) r = add_string_or_null(o, "error", i->error);
    if (r == 0) r = add_int(o, "bytesHeld", (int64_t)i->bytes_held);
    if (r == 0) r = add_int(o, "bytesNew", (int64_t)i->bytes_new);
    if (r == 0) r = add_int(o, "blockSize", CVD_BACKUP_BLOCK);
    return r;
}

int cvd_manifest_encode(const struct cvd_manifest *m, char **out,
                        size_t *len)
{
    json_object *o = json_object_new_object(), *arr = NULL;
    const char *text;
    size_t i, n = 0;
    int r = o ? encode_info(o, &m->info) : -ENOMEM;

    if (r == 0) {
        arr = json_object_new_array_ext((int)m->nblocks);
        r = cv_json_add(o, "blocks", arr);
    }
    for (i = 0; r == 0 && i < m->nblocks; i++)
        r = encode_block(arr, &m->blocks[i]);
    if (r == 0) {
        text = json_object_to_json_string_length(
            o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
        *out = text ? malloc(n + 2) : NULL;
        if (!*out)
            r = -ENOMEM;
        else {
            memcpy(*out, text, n);
            (*out)[n++] = '\n';
            (*out)[n] = '\0';
            *len = n;
        }
    }
    json_object_put(o);
    return r < 0 ? cv_error(r, "backup %s: manifest: out of memory",
                            m->info.id) : 0;
}

/* Reading: each check leaves its own message; bad() makes it -EBADMSG
 * naming the backup. */
static int bad(const char *id, const char *what)
{
    return cv_error(-EBADMSG, "backup %s: its manifest does not parse: %s",
                    id, what);
}

/* String member key into buf (len bytes with its NUL); null allowed (as
 * "") when nullable. */
static int get_string(json_object *o, const char *key, int nullable,
                      char *buf, size_t len)
{
    json_object *v;
    const char *s;

    if (!json_object_object_get_ex(o, key, &v))
        return -1;
    if (!v && nullable) {
        buf[0] = '\0';
        return 0;
    }
    s = cv_json_string(o, key);
    if (!s || strlen(s) >= len || (nullable && !s[0]))
        return -1;
    memcpy(buf, s, strlen(s) + 1);
    return 0;
}

static int get_time(json_object *o, const char *key, int nullable,
                    int64_t *out)
{
    json_object *v;
    const char *s;

    if (!json_object_object_get_ex(o, key, &v))
        return -1;
    if (!v && nullable) {
        *out = 0;
        return 0;
    }
    s = cv_json_string(o, key);
    return s && cvd_audit_parse_time(s, out) == 0 && *out > 0 ? 0 : -1;
}

static int get_u64(json_object *o, const char *key, int64_t min, int64_t max,
                   uint64_t *out)
{
    int64_t v;

    if (cv_json_int(o, key, min, max, &v) < 0)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static int decode_strings(const char *id, json_object *o,
                          struct cvd_backup_info *i)
{
    static const struct { const char *key; size_t off, len; int nullable; } s[] = {
#define S(k, f, n) { k, offsetof(struct cvd_backup_info, f), \
                     sizeof ((struct cvd_backup_info *)0)->f, n }
        S("id", id, 0), S("volume", volume, 0), S("snapshot", snapshot, 0),
        S("uuid", uuid, 0), S("node", node, 0), S("secret", secret, 1),
        S("type", type, 0), S("cipher", cipher, 0), S("base", base, 1),
        S("error", error, 1),
#undef S
    };
    char what[96];
    size_t k;

    for (k = 0; k < sizeof s / sizeof s[0]; k++)
        if (get_string(o, s[k].key, s[k].nullable, (char *)i + s[k].off,
                       s[k].len) < 0) {
            snprintf(what, sizeof what, "\"%s\" is missing, not a%s string "
                     "or too long", s[k].key, s[k].nullable ? " non-empty" : "");
            return bad(id, what);
        }
    /* A single node without a cluster id writes "". */
    if (get_string(o, "cluster", 0, i->cluster, sizeof i->cluster) < 0)
        return bad(id, "\"cluster\" is missing, not a string or too long");
    return 0;
}

static int decode_numbers(const char *id, json_object *o,
                          struct cvd_backup_info *i)
{
    uint64_t key_bits, sector_size, block_size;
    json_object *v;
    int64_t gen;

    if (!json_object_object_get_ex(o, "kekGeneration", &v))
        return bad(id, "\"kekGeneration\" is missing");
    if (!v)
        i->kek_gen = 0;
    else if (cv_json_int(o, "kekGeneration", 1, UINT32_MAX, &gen) == 0)
        i->kek_gen = (uint32_t)gen;
    else
        return bad(id, "\"kekGeneration\" is not null or a generation");
    if (get_u64(o, "keyBits", 128, 1024, &key_bits) < 0)
        return bad(id, "\"keyBits\" is not a number of key bits");
    if (get_u64(o, "sectorSize", 512, 4096, &sector_size) < 0 ||
        (sector_size & (sector_size - 1)))
        return bad(id, "\"sectorSize\" is not 512, 1024, 2048 or 4096");
    i->key_bits = (unsigned)key_bits;
    i->sector_size = (unsigned)sector_size;
    if (get_u64(o, "size", 0, INT64_MAX, &i->size) < 0 ||
        get_u64(o, "dataOffset", 0, INT64_MAX, &i->data_offset) < 0 ||
        get_u64(o, "rawSize", 0, INT64_MAX, &i->raw_size) < 0 ||
        get_u64(o, "bytesHeld", 0, INT64_MAX, &i->bytes_held) < 0 ||
        get_u64(o, "bytesNew", 0, INT64_MAX, &i->bytes_new) < 0)
        return bad(id, "\"size\", \"dataOffset\", \"rawSize\", \"bytesHeld\" "
                   "or \"bytesNew\" is not a count of bytes");
    if (i->data_offset > i->raw_size ||
        i->size > i->raw_size - i->data_offset)
        return bad(id, "\"size\" and \"dataOffset\" do not fit in \"rawSize\"");
    if (get_u64(o, "blockSize", 0, INT64_MAX, &block_size) < 0 ||
        block_size != CVD_BACKUP_BLOCK)
        return bad(id, "\"blockSize\" is not 1048576");
    return 0;
}

static int decode_info(const char *id, json_object *o,
                       struct cvd_backup_info *i)
{
    const char *state;
    int64_t format;
    char what[160];
    int r;

    if (cv_json_int(o, "format", 0, INT32_MAX, &format) < 0)
        return bad(id, "no \"format\"");
    if (format != 1) {
        snprintf(what, sizeof what, "format %lld, not the 1 this cryptvold "
                 "reads", (long long)format);
        return bad(id, what);
    }
    r = decode_strings(id, o, i);
    if (r < 0)
        return r;
    /* A manifest copied over another's name: it says whose it is. */
    if (strcmp(i->id, id))
        return cv_error(-EBADMSG, "backup %s: its manifest is of backup %s "
                        "(swapped or copied)", id, i->id);
    if (!cvd_target_id_ok(i->id) || (i->base[0] && !cvd_target_id_ok(i->base)))
        return bad(id, "\"id\" or \"base\" is not a backup id");
    r = decode_numbers(id, o, i);
    if (r < 0)
        return r;
    if (get_time(o, "created", 0, &i->created) < 0 ||
        get_time(o, "finished", 1, &i->finished) < 0)
        return bad(id, "\"created\" or \"finished\" is not an RFC 3339 time");
    state = cv_json_string(o, "state");
    if (!state || cvd_backup_state_parse(state, &i->state) < 0)
        return bad(id, "\"state\" is not InProgress, Completed or Failed");
    return 0;
}

static int hex_byte(const char *s, uint8_t *out)
{
    unsigned v;

    if (sscanf(s, "%2x", &v) != 1)
        return -1;
    *out = (uint8_t)v;
    return 0;
}

/* "held" or, without it, every sector of the block. */
static int decode_held(json_object *o, struct cvd_manifest_block *b)
{
    uint32_t i, n = SECTORS(b->len);
    const char *s;
    json_object *v;
    int any = 0;

    memset(b->held, 0, sizeof b->held);
    if (!json_object_object_get_ex(o, "held", &v)) {
        for (i = 0; i < n; i++)
            b->held[i / 8] |= (uint8_t)(1u << (i % 8));
        return 0;
    }
    s = cv_json_string(o, "held");
    if (!s || strlen(s) != 2 * sizeof b->held)
        return -1;
    for (i = 0; i < sizeof b->held; i++) {
        if (!strchr("0123456789abcdef", s[2 * i]) || !s[2 * i] ||
            !strchr("0123456789abcdef", s[2 * i + 1]) || !s[2 * i + 1] ||
            hex_byte(s + 2 * i, &b->held[i]) < 0)
            return -1;
        any |= b->held[i];
    }
    /* Held sectors past the block's end, or none held at all. */
    for (i = n; i < CVD_BACKUP_BLOCK_SECTORS; i++)
        if (b->held[i / 8] & (1u << (i % 8)))
            return -1;
    return any ? 0 : -1;
}

static int decode_block(const char *id, json_object *o, uint64_t end,
                        uint64_t raw_size, struct cvd_manifest_block *b)
{
    char what[160];
    uint64_t len;
    const char *sha;

    if (!json_object_is_type(o, json_type_object) ||
        get_u64(o, "offset", 0, INT64_MAX, &b->offset) < 0 ||
        get_u64(o, "length", 1, CVD_BACKUP_BLOCK, &len) < 0)
        return bad(id, "a block without \"offset\" or \"length\"");
    b->len = (uint32_t)len;
    if (b->offset % CV_CHAIN_BLOCK || b->offset < end ||
        b->offset > raw_size || len > raw_size - b->offset ||
        (len % CV_CHAIN_BLOCK && b->offset + len != raw_size)) {
        snprintf(what, sizeof what, "block at offset %llu (%llu bytes) is "
                 "out of order, not aligned or past \"rawSize\"",
                 (unsigned long long)b->offset, (unsigned long long)len);
        return bad(id, what);
    }
    sha = cv_json_string(o, "sha256");
    if (!cvd_target_hex_ok(sha)) {
        snprintf(what, sizeof what, "block at offset %llu: \"sha256\" is not "
                 "64 hex digits", (unsigned long long)b->offset);
        return bad(id, what);
    }
    memcpy(b->sha256, sha, 65);
    if (decode_held(o, b) < 0) {
        snprintf(what, sizeof what, "block at offset %llu: \"held\" is not "
                 "64 hex digits naming some of its sectors",
                 (unsigned long long)b->offset);
        return bad(id, what);
    }
    return 0;
}

static int decode_blocks(const char *id, json_object *arr, uint64_t raw_size,
                         struct cvd_manifest *m)
{
    size_t n = json_object_array_length(arr), i;
    uint64_t end = 0;
    int r = 0;

    m->blocks = n ? calloc(n, sizeof *m->blocks) : NULL;
    if (n && !m->blocks)
        return cv_error(-ENOMEM, "backup %s: %zu blocks: out of memory", id, n);
    for (i = 0; r == 0 && i < n; i++) {
        r = decode_block(id, json_object_array_get_idx(arr, i), end, raw_size,
                         &m->blocks[i]);
        end = m->blocks[i].offset + m->blocks[i].len;
    }
    m->nblocks = n;
    return r;
}

/* The text as one JSON object and nothing after it but white space. */
static json_object *parse_whole(const char *text, size_t len)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = NULL;
    size_t end;

    if (!tok || len > INT32_MAX)
        goto out;
    o = json_tokener_parse_ex(tok, text, (int)len);
    if (!o || json_tokener_get_error(tok) != json_tokener_success)
        goto fail;
    for (end = json_tokener_get_parse_end(tok); end < len; end++)
        if (!strchr(" \t\r\n", text[end]))
            goto fail;
    goto out;
fail:
    json_object_put(o);
    o = NULL;
out:
    json_tokener_free(tok);
    return o;
}

int cvd_manifest_decode(const char *id, const char *text, size_t len,
                        int with_blocks, struct cvd_manifest *out)
{
    json_object *o = parse_whole(text, len), *arr;
    int r;

    memset(out, 0, sizeof *out);
    if (!o || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return bad(id, len ? "not a JSON object (cut short?)" : "empty");
    }
    r = decode_info(id, o, &out->info);
    if (r == 0 && (!json_object_object_get_ex(o, "blocks", &arr) ||
                   !json_object_is_type(arr, json_type_array)))
        r = bad(id, "\"blocks\" is not an array");
    if (r == 0 && with_blocks)
        r = decode_blocks(id, arr, out->info.raw_size, out);
    if (r == 0)
        out->info.blocks = json_object_array_length(arr);
    json_object_put(o);
    if (r < 0)
        cvd_manifest_free(out);
    return r;
}

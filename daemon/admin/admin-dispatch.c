/* Routing and the JSON conventions of the admin API: every answer is a
 * JSON value, every error {"error": "what failed and on what", "code":
 * "NotFound"} with 400, 404, 405, 409, 413 or 500 (docs/admin-api.md). */
#include "admin-internal.h"
#include "cluster/cluster.h"
#include "daemon.h"
#include "core/error.h"
#include "core/json-util.h"
#include "meta/meta.h"

#include <errno.h>
#include <json-c/printbuf.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef CRYPTVOL_VERSION
#define CRYPTVOL_VERSION "unknown"
#endif

/* The error's name, as Kubernetes' Status.reason names an HTTP status:
 * what a program tests rather than the message. */
const char *cvd_admin_error_name(unsigned status)
{
    switch (status) {
    case 400: return "BadRequest";
    case 403: return "Forbidden";     /* admin-https.c writes it itself */
    case 404: return "NotFound";
    case 405: return "MethodNotAllowed";
    case 409: return "Conflict";
    case 413: return "RequestEntityTooLarge";
    case 503: return "Unavailable";
    default:  return "InternalError";
    }
}

json_object *cvd_admin_error(unsigned *status, unsigned code, const char *msg)
{
    json_object *o = json_object_new_object();

    *status = code;
    json_object_object_add(o, "error", json_object_new_string(msg));
    json_object_object_add(o, "code", json_object_new_string(
                               cvd_admin_error_name(code)));
    return o;
}

unsigned cvd_admin_status_of(int r)
{
    switch (-r) {
    case EINVAL: case ERANGE: case EFBIG: case ENAMETOOLONG: case ENOTSUP:
        return 400;
    case ENOENT:
        return 404;
    case EEXIST: case EBUSY: case EKEYREJECTED: case EREMOTE:
        return 409;
    /* The metadata store cannot be reached, or this node is not ready
     * (joining, no seal key yet): try again later, elsewhere. */
    case ENOTCONN: case EAGAIN:
        return 503;
    default:
        return 500;
    }
}

json_object *cvd_admin_fail(unsigned *status, int r)
{
    const char *msg = cv_last_error();
    json_object *o = cvd_admin_error(status, cvd_admin_status_of(r),
                                     msg[0] ? msg : strerror(-r));

    /* A secret that opens no keyslot: a conflict with what the header
     * holds, which clients tell apart from others (the CLI exits 3). */
    if (r == -CV_EWRONGKEY)
        json_object_object_add(o, "code", json_object_new_string("WrongKey"));
    /* The volume's data lives on another node (the message names it). */
    if (r == -EREMOTE)
        json_object_object_add(o, "code", json_object_new_string("WrongNode"));
    return o;
}

json_object *cvd_admin_deleted(unsigned *status, int r, const char *name)
{
    json_object *o;

    if (r < 0)
        return cvd_admin_fail(status, r);
    o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "deleted", json_object_new_boolean(1));
    *status = 200;
    return o;
}

/* ---- parsing a body that may hold a secret ----------------------------
 *
 * json-c copies each string twice: into its tokener's buffer, then into a
 * string object, and a duplicate key frees the first value's object at
 * once.  So: the tokener's buffer is made as large as the body before the
 * parse (it never reallocates, leaving a copy behind) and wiped after;
 * every string object is marked as soon as it is in an object, so that
 * json-c wipes it when it frees it, whenever that is (a duplicate key, a
 * syntax error, trailing bytes, or the end of the request).  The body is
 * fed up to each '"': before a key is read, every value before it is
 * marked. */

static const char wipe_mark = 0;

/* json-c calls this just before it frees a marked string. */
static void wipe_string(json_object *o, void *userdata)
{
    (void)userdata;
    OPENSSL_cleanse((char *)json_object_get_string(o),
                    (size_t)json_object_get_string_len(o));
}

static void mark(json_object *o, int deep)
{
    size_t i;

    if (json_object_is_type(o, json_type_string)) {
        if (json_object_get_userdata(o) != &wipe_mark)
            json_object_set_userdata(o, (void *)&wipe_mark, wipe_string);
    } else if (json_object_is_type(o, json_type_object)) {
        json_object_object_foreach(o, key, v) {
            (void)key;
            if (deep || json_object_is_type(v, json_type_string))
                mark(v, deep);
        }
    } else if (deep && json_object_is_type(o, json_type_array)) {
        for (i = 0; i < json_object_array_length(o); i++)
            mark(json_object_array_get_idx(o, i), deep);
    }
}

/* Marks the strings of the objects being built; -E2BIG when one has too
 * many members to walk at every quote. */
static int mark_stack(json_tokener *tok, int deep)
{
    int i;

    for (i = 0; i <= tok->depth; i++) {
        json_object *o = tok->stack[i].current;
        if (json_object_is_type(o, json_type_object) &&
            json_object_object_length(o) > CVD_ADMIN_FIELDS_MAX)
            return -E2BIG;
        mark(o, deep);
    }
    return 0;
}

/* A NUL byte, raw or as the escape \u0000 (a backslash escaped by
 * another is not one): json-c would cut a key at it. */
static int has_nul(const char *body, size_t len)
{
    size_t i, bs;

    if (memchr(body, '\0', len))
        return 1;
    for (i = 0; i + 6 <= len; i++) {
        if (memcmp(body + i, "\\u0000", 6))
            continue;
        for (bs = 1; bs <= i && body[i - bs] == '\\'; bs++)
            ;
        if (bs % 2)             /* the backslash at i is not escaped */
            return 1;
    }
    return 0;
}

/* Feeds body to tok, a quote at a time; *end is where the value ended. */
static json_object *feed(json_tokener *tok, const char *body, size_t len,
                         size_t *end, int *too_many)
{
    json_object *o = NULL;
    size_t pos = 0, q;

    while (!o && pos < len) {
        const char *next = memchr(body + pos + 1, '"', len - pos - 1);
        q = next ? (size_t)(next - body) : len;
        o = json_tokener_parse_ex(tok, body + pos, (int)(q - pos));
        *end = pos + json_tokener_get_parse_end(tok);
        if (json_tokener_get_error(tok) != json_tokener_continue && !o)
            break;
        if (mark_stack(tok, 0) < 0) {
            *too_many = 1;
            break;
        }
        pos = q;
    }
    return o;
}

static const char *parse_error(json_tokener *tok, json_object *o, size_t len,
                               size_t end, int too_many)
{
    enum json_tokener_error je = json_tokener_get_error(tok);

    if (len == 0)
        return "empty (expected a JSON object)";
    if (too_many)
        return "an object with more than " CVD_ADMIN_FIELDS_MAX_S " fields";
    if (je != json_tokener_success && je != json_tokener_continue)
        return json_tokener_error_desc(je);
    if (o && end == len)
        return "not a JSON object";
    return "not one complete JSON object";
}

json_object *cvd_admin_parse(const char *body, size_t len, unsigned *status,
                             json_object **err)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = NULL;
    char msg[256];
    size_t end = 0;
    int too_many = 0, i;

    *err = NULL;
    if (!tok || printbuf_memset(tok->pb, 0, 0, (int)len + 8) < 0) {
        json_tokener_free(tok);
        *err = cvd_admin_error(status, 500, "request body: out of memory");
        return NULL;
    }
    printbuf_reset(tok->pb);
    if (has_nul(body, len)) {
        json_tokener_free(tok);
        *err = cvd_admin_error(status, 400, "request body: a NUL character "
                               "(\\u0000) is not allowed");
        return NULL;
    }
    o = feed(tok, body, len, &end, &too_many);
    while (o && end < len && strchr(" \t\r\n", body[end]))
        end++;
    if (o)
        mark(o, 1);
    if (!o || json_tokener_get_error(tok) != json_tokener_success ||
        end != len || !json_object_is_type(o, json_type_object)) {
        snprintf(msg, sizeof msg, "request body: %s",
                 parse_error(tok, o, len, end, too_many));
        *err = cvd_admin_error(status, 400, msg);
        json_object_put(o);
        o = NULL;
    }
    /* What an error left half built is freed with the tokener. */
    for (i = 0; i <= tok->depth; i++)
        if (tok->stack[i].current)
            mark(tok->stack[i].current, 1);
    OPENSSL_cleanse(tok->pb->buf, (size_t)tok->pb->size);
    json_tokener_free(tok);
    return o;
}

int cvd_admin_known_fields(json_object *o, const char *const *allowed)
{
    json_object_object_foreach(o, key, val) {
        const char *const *a;
        (void)val;
        for (a = allowed; *a && strcmp(*a, key); a++)
            ;
        if (!*a)
            return cv_error(-EINVAL, "request body: unknown field \"%.64s\"",
                            key);
    }
    return 0;
}

int cvd_admin_get_string(json_object *o, const char *key, const char **out)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v) || !v)
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return cv_error(-EINVAL, "request body: \"%s\" must be a string", key);
    /* json-c's strings carry a length: a NUL in one is refused, never
     * taken as its end (has_nul refuses bodies with one; URL arguments
     * come here too). */
    if (strlen(json_object_get_string(v)) !=
        (size_t)json_object_get_string_len(v))
        return cv_error(-EINVAL, "request body: \"%s\" contains a NUL "
                        "character", key);
    *out = json_object_get_string(v);
    return 1;
}

int cvd_admin_get_bool(json_object *o, const char *key, int *out)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v) || !v)
        return 0;
    if (!json_object_is_type(v, json_type_boolean))
        return cv_error(-EINVAL, "request body: \"%s\" must be true or false",
                        key);
    *out = json_object_get_boolean(v);
    return 1;
}

int cvd_admin_get_u64(json_object *o, const char *key, uint64_t *out)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v) || !v)
        return 0;
    /* json-c keeps integers above INT64_MAX as uint64. */
    if (!json_object_is_type(v, json_type_int) ||
        (json_object_get_int64(v) < 0))
        return cv_error(-EINVAL, "request body: \"%s\" must be a "
                        "non-negative integer", key);
    *out = json_object_get_uint64(v);
    return 1;
}

json_object *cvd_admin_time(int64_t t)
{
    return cv_json_time(t);
}

/* "/v1/volumes/x" against "/v1/volumes": the rest ("/x"), or NULL. */
static const char *under(const char *url, const char *prefix)
{
    size_t n = strlen(prefix);

    if (strncmp(url, prefix, n) || (url[n] && url[n] != '/'))
        return NULL;
    return url + n;
}

json_object *cvd_admin_dispatch(struct cvd *d, const char *actor,
                                const char *method, const char *url,
                                json_object *query, const char *body,
                                size_t len, unsigned *code)
{
    json_object *in = NULL, *out, *err;
    const char *rest;
    char msg[160];
    int r;

    if (!strcmp(method, "POST") || !strcmp(method, "PUT")) {
        in = cvd_admin_parse(body, len, code, &err);
        if (!in)
            return err;
        if ((r = cvd_admin_accept_aliases(in)) < 0) {
            json_object_put(in);
            return cvd_admin_fail(code, r);
        }
    } else {
        in = json_object_get(query);
    }
    /* A node still joining the cluster has no keys: only its status and
     * the node list answer (503 says why for the rest). */
    if (!strcmp(url, "/v1/status") && !strcmp(method, "GET"))
        out = cvd_admin_status(d, code);
    else if (cvd_admin_is_stats(url))
        out = cvd_admin_node_stats(d, method, url, code);
    else if (!strcmp(url, "/v1/node/peer-tls"))
        out = cvd_admin_peer_tls(d, actor, method, "", in, code);
    else if ((rest = under(url, "/v1/nodes")))
        out = cvd_admin_nodes(d, actor, method, rest, in, code);
    else if ((r = cvd_node_ready(d)) < 0)
        out = cvd_admin_fail(code, r);
    else if ((rest = under(url, "/v1/volumes")))
        out = cvd_admin_volumes(d, actor, method, rest, in, code);
    else if ((rest = under(url, "/v1/cluster")))
        out = cvd_admin_cluster(d, actor, method, rest, in, code);
    else if ((rest = under(url, "/v1/secrets")))
        out = cvd_admin_secrets(d, actor, method, rest, in, code);
    else if ((rest = under(url, "/v1/audit")))
        out = cvd_admin_audit(d, actor, method, rest, in, code);
    else if ((rest = under(url, "/v1/classes")))
        out = cvd_admin_classes(d, actor, method, rest, in, code);
    else if ((rest = under(url, "/v1/backups")))
        out = cvd_admin_backups(d, actor, method, rest, in, code);
    else if ((rest = under(url, "/v1/backup/target")))
        out = cvd_admin_backup_target(d, method, rest, code);
    else {
        snprintf(msg, sizeof msg, "no such endpoint: %.8s %.100s", method, url);
        out = cvd_admin_error(code, 404, msg);
    }
    json_object_put(in);
    return out;
}

/* /v1/volumes: list, create, info, resize, rekey, delete. */
#include "admin-internal.h"
#include "audit/audit.h"
#include "cluster/cluster.h"
#include "daemon.h"
#include "core/error.h"
#include "meta/meta.h"
#include "nbd/nbd-server.h"
#include "volumes/volumes.h"
#include "volumes/volumes-util.h"
#include "volumes/snapshots.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The NBD connections serving v, from the server's list. */
static json_object *connections_json(const struct cvd_volume_rec *v,
                                     const struct cvd_nbd_session *s, size_t n)
{
    json_object *a = json_object_new_array(), *o;
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcmp(s[i].volume, v->name))
            continue;
        o = json_object_new_object();
        json_object_object_add(o, "peer", json_object_new_string(s[i].peer));
        json_object_object_add(o, "identity", s[i].identity[0] ?
                               json_object_new_string(s[i].identity) : NULL);
        json_object_object_add(o, "tls", json_object_new_boolean(s[i].tls));
        json_object_object_add(o, "since", cvd_admin_time(s[i].since));
        json_object_array_add(a, o);
    }
    return a;
}

/* The bytes the volume's files hold on disk (its layers are sparse), or
 * NULL when it has none (Pending). */
static json_object *allocated_json(struct cvd *d,
                                   const struct cvd_volume_rec *v)
{
    uint64_t bytes;

    char path[sizeof v->path];

    cvd_volume_local_path(d, v, path, sizeof path);
    if (!strcmp(v->state, CVD_VOL_PENDING) || !cvd_node_is_local(d, v) ||
        cvd_store_allocated(path, &bytes) < 0)
        return NULL;
    return json_object_new_int64((int64_t)bytes);
}

/* "snapshots": their names, oldest first (null without a chain). */
static json_object *snapshot_names(struct cvd *d,
                                   const struct cvd_volume_rec *v)
{
    struct cvd_snapshot_info *s = NULL;
    size_t n = 0, i;
    json_object *a;

    if (cvd_snapshot_list(d, v->name, &s, &n) < 0) {
        cv_clear_error();
        return NULL;
    }
    a = json_object_new_array();
    for (i = 0; i < n; i++)
        json_object_array_add(a, json_object_new_string(s[i].name));
    free(s);
    return a;
}

/* "needsSecrets": the secrets an open needs (a clone with its own format:
 * its own and its parent's). */
static json_object *needs_secrets(struct cvd *d,
                                  const struct cvd_volume_rec *v)
{
    char buf[512], *tok, *save = NULL;
    json_object *a;

    if (!strcmp(v->type, "plaintext") || !cvd_state_served(v->state) ||
        cvd_volume_needs_secrets(d, v, buf, sizeof buf) < 0) {
        cv_clear_error();
        return NULL;
    }
    a = json_object_new_array();
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        json_object_array_add(a, json_object_new_string(tok));
    return a;
}

/* detail: also what reading the chain tells (one volume's info, not a
 * list of all). */
static json_object *volume_json(struct cvd *d, const struct cvd_volume_rec *v,
                                const struct cvd_nbd_session *sessions,
                                size_t nsessions, int detail)
{
    json_object *o = json_object_new_object();
    int encrypted = strcmp(v->type, "plaintext") != 0;
    /* A pending volume's secret is the one it waits for. */
    const char *secret = v->secret[0] ? v->secret :
                         !strcmp(v->state, CVD_VOL_PENDING) ? v->wait_secret : "";
    char reason[CVD_NAME_MAX + 64];
    json_object *access;

#define ADD(k, val) json_object_object_add(o, k, val)
    ADD("name", json_object_new_string(v->name));
    ADD("uuid", v->uuid[0] ? json_object_new_string(v->uuid) : NULL);
    ADD("size", json_object_new_int64((int64_t)v->size));
    ADD("allocated", allocated_json(d, v));
    ADD("type", json_object_new_string(v->type));
    ADD("cipher", json_object_new_string(v->cipher));
    ADD("keyBits", json_object_new_int((int)v->key_bits));
    ADD("sectorSize", json_object_new_int((int)v->sector_size));
    ADD("dataOffset", json_object_new_int64((int64_t)v->data_offset));
    ADD("secret", secret[0] ? json_object_new_string(secret) : NULL);
    ADD("kekGeneration", v->kek_gen ? json_object_new_int64(v->kek_gen) :
        NULL);
    ADD("class", v->class_name[0] ? json_object_new_string(v->class_name) :
        NULL);
    ADD("encrypted", json_object_new_boolean(encrypted));
    ADD("inUse", json_object_new_boolean(cvd_volume_in_use(d, v->name)));
    ADD("state", json_object_new_string(cvd_state_shown(v->state)));
    cvd_state_reason(v, reason, sizeof reason);
    ADD("reason", reason[0] ? json_object_new_string(reason) : NULL);
    ADD("path", json_object_new_string(v->path));
    ADD("node", v->node[0] ? json_object_new_string(v->node) : NULL);
    ADD("created", cvd_admin_time(v->created));
    ADD("connections", connections_json(v, sessions, nsessions));
    ADD("parent", v->parent[0] ? json_object_new_string(v->parent) : NULL);
    if (detail) {
        ADD("snapshots", snapshot_names(d, v));
        ADD("needsSecrets", needs_secrets(d, v));
    }
    ADD("job", cvd_admin_job_json(d, v->name));
    cvd_admin_replicas_json(d, v->name, o);
    if (cvd_admin_access_json(d, CVD_ACCESS_VOLUME, v->name, v->class_name,
                              &access) == 0)
        ADD("access", access);
#undef ADD
    return o;
}

/* v as the API shows it, with its connections. */
json_object *cvd_admin_volume_json(struct cvd *d, const struct cvd_volume_rec *v,
                             unsigned *code)
{
    struct cvd_nbd_session *s = NULL;
    size_t n = 0;
    json_object *o;
    int r = cvd_nbd_sessions(d, v->name, &s, &n, NULL);

    if (r < 0)
        return cvd_admin_fail(code, r);
    o = volume_json(d, v, s, n, 1);
    free(s);
    return o;
}

static json_object *list(struct cvd *d, unsigned *code)
{
    struct cvd_volume_rec *all;
    struct cvd_nbd_session *s = NULL;
    size_t n, i, ns = 0;
    json_object *a;
    int r;

    r = d->meta->ops->volume_list(d->meta, &all, &n);
    if (r < 0)
        return cvd_admin_fail(code, r);
    r = cvd_nbd_sessions(d, NULL, &s, &ns, NULL);
    if (r < 0) {
        free(all);
        return cvd_admin_fail(code, r);
    }
    a = json_object_new_array();
    for (i = 0; i < n; i++)
        json_object_array_add(a, volume_json(d, &all[i], s, ns, 0));
    free(s);
    free(all);
    *code = 200;
    return a;
}

static json_object *info(struct cvd *d, const char *name, unsigned *code)
{
    struct cvd_volume_rec v;
    int r = cvd_volume_get(d, name, &v);

    if (r < 0)
        return cvd_admin_fail(code, r);
    *code = 200;
    return cvd_admin_volume_json(d, &v, code);
}

static int parse_pbkdf(json_object *o, struct cvd_volume_req *req)
{
    static const char *const fields[] = { "type", "iterations", "memoryKib",
                                          "timeMs", NULL };
    uint64_t n;
    int r;

    if (!json_object_is_type(o, json_type_object))
        return cv_error(-EINVAL, "request body: \"pbkdf\" must be an object");
    r = cvd_admin_known_fields(o, fields);
    if (r == 0 && cvd_admin_get_string(o, "type", &req->pbkdf.type) > 0 &&
        strcmp(req->pbkdf.type, "argon2id") && strcmp(req->pbkdf.type, "argon2i") &&
        strcmp(req->pbkdf.type, "pbkdf2"))
        r = cv_error(-EINVAL, "request body: pbkdf type \"%.32s\" (use "
                     "argon2id, argon2i or pbkdf2)", req->pbkdf.type);
#define U32(key, field)                                                  \
    if (r >= 0 && (r = cvd_admin_get_u64(o, key, &n)) > 0) {             \
        if (n > UINT32_MAX)                                              \
            r = cv_error(-EINVAL, "request body: pbkdf %s is too large", key); \
        req->pbkdf.field = (uint32_t)n;                                  \
    }
    U32("iterations", iterations)
    U32("memoryKib", memory_kib)
    U32("timeMs", time_ms)
#undef U32
    req->have_pbkdf = 1;
    return r < 0 ? r : 0;
}

/* A class sets these: naming one beside it is a conflict, not an
 * override. */
static int class_conflicts(json_object *body, const struct cvd_volume_req *req)
{
    static const char *const set_by_class[] = { "secret", "type", "cipher",
                                                "plaintext", NULL };
    const char *const *f;
    json_object *v;

    for (f = set_by_class; *f; f++)
        if (json_object_object_get_ex(body, *f, &v) && v)
            return cv_error(-EINVAL, "volume %s: \"%s\" conflicts with "
                            "class %s (the class sets type, cipher, "
                            "secret and encryption)", req->name, *f,
                            req->class_name);
    return 0;
}

/* "replicas" and "minReplicas": absent is 0 (the class's, or 1; and
 * replicas - 1); given, each at least 1. */
static int parse_replicas(json_object *body, struct cvd_volume_req *req)
{
    uint64_t n = 0, min = 0;
    int r = cvd_admin_get_u64(body, "replicas", &n);

    if (r > 0 && (n < 1 || n > CVD_MAX_REPLICAS))
        return cv_error(-EINVAL, "volume %s: \"replicas\" must be from 1 to "
                        "%d", req->name, CVD_MAX_REPLICAS);
    if (r >= 0 && (r = cvd_admin_get_u64(body, "minReplicas", &min)) > 0 &&
        (min < 1 || min > CVD_MAX_REPLICAS))
        return cv_error(-EINVAL, "volume %s: \"minReplicas\" must be from 1 "
                        "to the replicas", req->name);
    req->replicas = (unsigned)n;
    req->min_replicas = (unsigned)min;
    return r < 0 ? r : 0;
}

/* Fills req from the body; strings point into body. */
static int parse_create(json_object *body, struct cvd_volume_req *req)
{
    static const char *const fields[] = { "name", "size", "secret", "type",
                                          "cipher", "plaintext", "pbkdf",
                                          "class", "replicas", "minReplicas",
                                          NULL };
    const char *type = "luks2", *cipher = "aes-256";
    json_object *pbkdf;
    int r;

    memset(req, 0, sizeof *req);
    r = cvd_admin_known_fields(body, fields);
    if (r == 0 && (r = cvd_admin_get_string(body, "name", &req->name)) == 0)
        r = cv_error(-EINVAL, "request body: \"name\" is missing");
    if (r >= 0 && (r = cvd_admin_get_u64(body, "size", &req->size)) == 0)
        r = cv_error(-EINVAL, "volume %s: \"size\" (bytes) is missing",
                     req->name);
    if (r >= 0)
        r = cvd_admin_get_string(body, "secret", &req->secret);
    if (r >= 0)
        r = cvd_admin_get_string(body, "type", &type);
    if (r >= 0)
        r = cvd_admin_get_string(body, "cipher", &cipher);
    if (r >= 0)
        r = cvd_admin_get_bool(body, "plaintext", &req->plaintext);
    if (r >= 0 && json_object_object_get_ex(body, "pbkdf", &pbkdf) && pbkdf)
        r = parse_pbkdf(pbkdf, req);
    if (r >= 0 && (r = cvd_admin_get_string(body, "class",
                                            &req->class_name)) > 0 &&
        (r = cvd_check_name("volume", req->name)) == 0 &&
        (r = cvd_check_name("class", req->class_name)) == 0)
        r = class_conflicts(body, req);
    if (r >= 0)
        r = parse_replicas(body, req);
    if (r < 0)
        return r;
    req->luks_version = !strcmp(type, "luks2") ? 2 : !strcmp(type, "luks1") ? 1 : 0;
    req->aes_bits = !strcmp(cipher, "aes-256") ? 256 :
                    !strcmp(cipher, "aes-128") ? 128 : 0;
    if (!req->luks_version)
        return cv_error(-EINVAL, "volume %s: type \"%.32s\" (use luks2 or "
                        "luks1)", req->name, type);
    if (!req->aes_bits)
        return cv_error(-EINVAL, "volume %s: cipher \"%.32s\" (use aes-256 "
                        "or aes-128)", req->name, cipher);
    return 0;
}

/* Volume events for the audit log: which key protects it, or why not. */
static void audit(struct cvd *d, const char *actor, const char *event,
                  const char *name, int r, const char *detail)
{
    char object[CVD_NAME_MAX + 16];

    snprintf(object, sizeof object, "volume/%.*s", CVD_NAME_MAX, name);
    cvd_audit(d->audit, actor, event, object, r >= 0, "%s",
              r < 0 ? cv_last_error() : detail);
}

static json_object *create(struct cvd *d, const char *actor, json_object *body,
                           unsigned *code)
{
    struct cvd_volume_req req = { 0 };
    struct cvd_volume_rec v;
    char detail[CVD_NAME_MAX + 96];
    int r;

    if (json_object_object_get_ex(body, "parent", NULL))
        return cvd_admin_clone(d, actor, body, code);
    if (json_object_object_get_ex(body, "import", NULL))
        return cvd_admin_import(d, actor, body, code);
    r = parse_create(body, &req);
    if (r == 0)
        r = cvd_volume_create(d, &req, &v);
    if (r == 0)
        snprintf(detail, sizeof detail, "%s%s%s%s", v.secret[0] ? "secret " :
                 "", v.secret, v.secret[0] && v.kek_gen ? ", " : "",
                 v.kek_gen ? "cluster KEK" : v.secret[0] ? "" :
                 !strcmp(v.state, CVD_VOL_PENDING) ? "pending" : "plaintext");
    if (r >= 0 || req.name)
        audit(d, actor, "volume.create", req.name ? req.name : "?", r,
              r == 0 ? detail : NULL);
    if (r < 0)
        return cvd_admin_fail(code, r);
    /* Accepted, not made yet: it waits for its secret. */
    *code = strcmp(v.state, CVD_VOL_PENDING) ? 201 : 202;
    return cvd_admin_volume_json(d, &v, code);
}

static json_object *rekey(struct cvd *d, const char *actor, const char *name,
                          json_object *body, unsigned *code)
{
    static const char *const fields[] = { "secret", NULL };
    struct cvd_volume_rec v;
    const char *secret = NULL;
    int r;

    r = cvd_admin_known_fields(body, fields);
    if (r == 0 && (r = cvd_admin_get_string(body, "secret", &secret)) == 0)
        r = cv_error(-EINVAL, "volume %.64s: \"secret\" (the new secret's "
                     "name) is missing", name);
    if (r > 0) {
        char detail[CVD_NAME_MAX + 16];
        snprintf(detail, sizeof detail, "to secret %s", secret);
        r = cvd_volume_rekey(d, name, secret, &v);
        audit(d, actor, "volume.rekey", name, r, detail);
    }
    if (r < 0)
        return cvd_admin_fail(code, r);
    *code = 200;
    return cvd_admin_volume_json(d, &v, code);
}

static json_object *resize(struct cvd *d, const char *name, json_object *body,
                           unsigned *code)
{
    static const char *const fields[] = { "size", "allowShrink", NULL };
    struct cvd_volume_rec v;
    json_object *o;
    uint64_t size = 0;
    int shrink = 0, r;

    r = cvd_admin_known_fields(body, fields);
    if (r == 0 && (r = cvd_admin_get_u64(body, "size", &size)) == 0)
        r = cv_error(-EINVAL, "volume %s: \"size\" (bytes) is missing", name);
    if (r > 0)
        r = cvd_admin_get_bool(body, "allowShrink", &shrink);
    if (r >= 0)
        r = cvd_volume_resize(d, name, size, shrink, &v);
    if (r < 0)
        return cvd_admin_fail(code, r);
    *code = 200;
    o = cvd_admin_volume_json(d, &v, code);
    /* After an online grow: who still sees less, until they reconnect. */
    if (o && *code == 200)
        json_object_object_add(o, "clientsKeepOldSize", json_object_new_int(
            cvd_volume_clients_older(d, v.name, v.size)));
    return o;
}

static json_object *delete(struct cvd *d, const char *actor, const char *name,
                           unsigned *code)
{
    int r = cvd_volume_delete(d, name);

    audit(d, actor, "volume.delete", name, r, "image and record removed");
    return cvd_admin_deleted(code, r, name);
}

/* In a cluster a volume's data is changed only on the node holding it:
 * asked of another node, a request about it is forwarded there
 * (admin-forward.c), and so is its info, which holds that node's job
 * progress.  The holder is its writer while it is attached, else the node
 * it was made on.  0 when it is answered here: a single node, the access
 * list (metadata, any node), a volume this node holds, a request another
 * node forwarded (refused when the volume's data is not here: -EREMOTE
 * naming the holder), or an info whose holder cannot answer (the record
 * then).  1 and *to the node to forward to. */
static int placed_elsewhere(struct cvd *d, const char *actor,
                            const char *name, const char *slash,
                            struct cvd_volume_rec *v,
                            char to[CVD_NAME_MAX + 1])
{
    int r;

    to[0] = '\0';
    if (!d->node || (slash && !strcmp(slash, "/access")) ||
        !cvd_name_valid(name))
        return 0;
    r = d->meta->ops->volume_get(d->meta, name, v);
    if (r < 0) {
        cv_clear_error();
        return 0;               /* the endpoint says what is wrong */
    }
    cvd_admin_volume_holder(d, v, to);
    if (!to[0] || !strcmp(to, d->cfg.node_name))
        return 0;
    if (!cvd_admin_forwarded(actor))
        return 1;
    return cvd_node_check_placement(d, v);
}

static json_object *forward(struct cvd *d, const char *actor,
                            const char *method, const char *rest,
                            const struct cvd_volume_rec *v, const char *to,
                            json_object *in, unsigned *code)
{
    char url[CVD_NAME_MAX + 256];
    json_object *out;
    int answered;

    cv_clear_error();
    snprintf(url, sizeof url, "/v1/volumes/%s", rest);
    out = cvd_admin_forward(d, v->name, to, actor, method, url, in,
                            code, &answered);
    /* An info its holder cannot give is answered from the record. */
    if (!answered && !strchr(rest, '/') && !strcmp(method, "GET")) {
        json_object_put(out);
        return NULL;
    }
    return out;
}

/* rest is "", "/NAME", "/NAME/resize" or "/NAME/rekey". */
json_object *cvd_admin_volumes(struct cvd *d, const char *actor,
                               const char *method,
                               const char *rest, json_object *body,
                               unsigned *code)
{
    char name[CVD_NAME_MAX + 2], to[CVD_NAME_MAX + 1];
    struct cvd_volume_rec v;
    json_object *out;
    const char *slash;
    size_t len;
    int r;

    if (!rest[0] || !strcmp(rest, "/")) {
        if (!strcmp(method, "GET"))
            return list(d, code);
        if (!strcmp(method, "POST"))
            return create(d, actor, body, code);
        return cvd_admin_error(code, 405, "/v1/volumes: use GET or POST");
    }
    rest++;
    slash = strchr(rest, '/');
    len = slash ? (size_t)(slash - rest) : strlen(rest);
    if (len > CVD_NAME_MAX)
        len = CVD_NAME_MAX + 1;     /* still invalid: the check says so */
    memcpy(name, rest, len);
    name[len] = '\0';
    if ((r = placed_elsewhere(d, actor, name, slash, &v, to)) < 0)
        return cvd_admin_fail(code, r);
    if (r > 0 && (out = forward(d, actor, method, rest, &v, to, body, code)))
        return out;
    if (slash && !strcmp(slash, "/replicas"))
        return cvd_admin_replicas(d, actor, method, name, body, code);
    if (slash && !strcmp(slash, "/resize") && !strcmp(method, "POST"))
        return resize(d, name, body, code);
    if (slash && !strcmp(slash, "/rekey") && !strcmp(method, "POST"))
        return rekey(d, actor, name, body, code);
    if (slash && (!strcmp(slash, "/snapshots") ||
                  !strncmp(slash, "/snapshots/", 11)))
        return cvd_admin_snapshots(d, actor, method, name, slash + 10, body,
                                   code);
    if (slash && !strcmp(slash, "/flatten") && !strcmp(method, "POST"))
        return cvd_admin_flatten(d, actor, name, body, code);
    if (slash && !strcmp(slash, "/export") && !strcmp(method, "POST"))
        return cvd_admin_export(d, actor, name, body, code);
    if (slash && !strcmp(slash, "/backups") && !strcmp(method, "POST"))
        return cvd_admin_backup_create(d, actor, name, body, code);
    if (slash && !strcmp(slash, "/access"))
        return cvd_admin_access(d, actor, method, CVD_ACCESS_VOLUME, name,
                                body, code);
    if (slash)
        return cvd_admin_error(code, 404, "no such endpoint under /v1/volumes "
                               "(POST /v1/volumes/NAME/resize, "
                               "/v1/volumes/NAME/rekey, /flatten, /export, "
                               "/backups, /replicas, "
                               "GET or POST /v1/volumes/NAME/access, "
                               "/v1/volumes/NAME/snapshots)");
    if (!strcmp(method, "GET"))
        return info(d, name, code);
    if (!strcmp(method, "DELETE"))
        return delete(d, actor, name, code);
    return cvd_admin_error(code, 405, "/v1/volumes/NAME: use GET or DELETE");
}

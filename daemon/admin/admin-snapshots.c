/* The admin API of snapshots, clones, flatten, import and export
 * (/work contract: docs/api.md's "Snapshots and clones"):
 *   GET|POST /v1/volumes/VOL/snapshots, DELETE .../snapshots/SNAP,
 *   POST .../snapshots/SNAP/rollback, POST /v1/volumes/VOL/flatten,
 *   POST /v1/volumes/VOL/export, and POST /v1/volumes with "parent"
 *   (a clone) or "import" (a LUKS image file).
 * Long work answers 202 with the job; GET /v1/volumes/VOL shows it. */
#include "admin-internal.h"
#include "audit/audit.h"
#include "daemon.h"
#include "core/error.h"
#include "volumes/jobs.h"
#include "volumes/snapshots.h"
#include "volumes/volumes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_object *cvd_admin_job_json(struct cvd *d, const char *volume)
{
    struct cvd_job_info j;
    json_object *o;

    if (cvd_job_get(d, volume, &j) < 0)
        return NULL;
    o = json_object_new_object();
#define ADD(k, val) json_object_object_add(o, k, val)
    ADD("kind", json_object_new_string(cvd_job_kind_name(j.kind)));
    ADD("target", j.target[0] ? json_object_new_string(j.target) : NULL);
    ADD("state", json_object_new_string(cvd_job_state_name(j.state)));
    ADD("done", json_object_new_int64((int64_t)j.done));
    ADD("total", json_object_new_int64((int64_t)j.total));
    ADD("started", cvd_admin_time(j.started));
    ADD("finished", j.finished ? cvd_admin_time(j.finished) : NULL);
    ADD("elapsedMs", json_object_new_int64((int64_t)j.elapsed_ms));
    ADD("error", j.error[0] ? json_object_new_string(j.error) : NULL);
#undef ADD
    return o;
}

/* {"volume": VOL, "job": {...}} for a 202. */
static json_object *accepted(struct cvd *d, const char *volume,
                             unsigned *code)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "volume", json_object_new_string(volume));
    json_object_object_add(o, "job", cvd_admin_job_json(d, volume));
    *code = 202;
    return o;
}

static void audit(struct cvd *d, const char *actor, const char *event,
                  const char *name, int r, const char *detail)
{
    char object[2 * CVD_NAME_MAX + 16];

    snprintf(object, sizeof object, "volume/%.*s", 2 * CVD_NAME_MAX + 1,
             name);
    cvd_audit(d->audit, actor, event, object, r >= 0, "%s",
              r < 0 ? cv_last_error() : detail);
}

static json_object *snapshot_json(const char *volume,
                                  const struct cvd_snapshot_info *s,
                                  const char *clones)
{
    json_object *o = json_object_new_object(), *a = json_object_new_array();
    char copy[256], *tok, *save = NULL;

    json_object_object_add(o, "volume", json_object_new_string(volume));
    json_object_object_add(o, "name", json_object_new_string(s->name));
    json_object_object_add(o, "created", cvd_admin_time(s->created));
    json_object_object_add(o, "allocated",
                           json_object_new_int64((int64_t)s->allocated));
    snprintf(copy, sizeof copy, "%s", clones ? clones : "");
    for (tok = strtok_r(copy, ", ", &save); tok;
         tok = strtok_r(NULL, ", ", &save))
        json_object_array_add(a, json_object_new_string(tok));
    json_object_object_add(o, "clones", a);
    return o;
}

static json_object *snapshot_create(struct cvd *d, const char *actor,
                                    const char *volume, json_object *body,
                                    unsigned *code)
{
    static const char *const fields[] = { "name", NULL };
    struct cvd_snapshot_info s;
    const char *snap = NULL;
    int r = cvd_admin_known_fields(body, fields);

    if (r == 0 && (r = cvd_admin_get_string(body, "name", &snap)) == 0)
        r = cv_error(-EINVAL, "request body: \"name\" (the snapshot's) is "
                     "missing");
    if (r > 0)
        r = cvd_snapshot_create(d, volume, snap, &s);
    audit(d, actor, "snapshot.create", volume, r, snap ? snap : "?");
    if (r < 0)
        return cvd_admin_fail(code, r);
    *code = 201;
    return snapshot_json(volume, &s, NULL);
}

static json_object *snapshot_list(struct cvd *d, const char *volume,
                                  unsigned *code)
{
    struct cvd_snapshot_info *s = NULL;
    json_object *o, *a;
    char clones[256];
    size_t n = 0, i;
    int r = cvd_snapshot_list(d, volume, &s, &n);

    if (r < 0)
        return cvd_admin_fail(code, r);
    a = json_object_new_array();
    for (i = 0; i < n; i++) {
        if (cvd_volume_clones(d, volume, s[i].name, clones,
                              sizeof clones) < 0)
            clones[0] = '\0';
        json_object_array_add(a, snapshot_json(volume, &s[i], clones));
    }
    free(s);
    o = json_object_new_object();
    json_object_object_add(o, "snapshots", a);
    *code = 200;
    return o;
}

static json_object *snapshot_one(struct cvd *d, const char *actor,
                                 const char *method, const char *volume,
                                 const char *rest, unsigned *code)
{
    char snap[CVD_NAME_MAX + 2], full[2 * CVD_NAME_MAX + 4];
    const char *slash = strchr(rest, '/');
    size_t len = slash ? (size_t)(slash - rest) : strlen(rest);
    struct cvd_volume_rec v;
    int r;

    if (len > CVD_NAME_MAX)
        len = CVD_NAME_MAX + 1;
    memcpy(snap, rest, len);
    snap[len] = '\0';
    snprintf(full, sizeof full, "%s@%s", volume, snap);
    if (!slash && !strcmp(method, "DELETE")) {
        r = cvd_snapshot_delete(d, volume, snap);
        audit(d, actor, "snapshot.delete", full, r, "merging its layer");
        return r < 0 ? cvd_admin_fail(code, r) : accepted(d, volume, code);
    }
    if (slash && !strcmp(slash, "/rollback") && !strcmp(method, "POST")) {
        r = cvd_snapshot_rollback(d, volume, snap, &v);
        audit(d, actor, "snapshot.rollback", full, r, "head replaced");
        if (r < 0)
            return cvd_admin_fail(code, r);
        *code = 200;
        return cvd_admin_volume_json(d, &v, code);
    }
    return cvd_admin_error(code, 404, "no such endpoint (DELETE "
                           "/v1/volumes/VOL/snapshots/SNAP, POST "
                           "/v1/volumes/VOL/snapshots/SNAP/rollback)");
}

json_object *cvd_admin_snapshots(struct cvd *d, const char *actor,
                                 const char *method, const char *volume,
                                 const char *rest, json_object *body,
                                 unsigned *code)
{
    if (!rest[0] && !strcmp(method, "GET"))
        return snapshot_list(d, volume, code);
    if (!rest[0] && !strcmp(method, "POST"))
        return snapshot_create(d, actor, volume, body, code);
    if (rest[0] == '/' && rest[1])
        return snapshot_one(d, actor, method, volume, rest + 1, code);
    return cvd_admin_error(code, 405, "/v1/volumes/VOL/snapshots: use GET "
                           "or POST");
}

json_object *cvd_admin_flatten(struct cvd *d, const char *actor,
                               const char *volume, json_object *body,
                               unsigned *code)
{
    static const char *const fields[] = { NULL };
    int r = cvd_admin_known_fields(body, fields);

    if (r == 0)
        r = cvd_volume_flatten(d, volume);
    audit(d, actor, "volume.flatten", volume, r, "copying its parent's "
          "blocks");
    return r < 0 ? cvd_admin_fail(code, r) : accepted(d, volume, code);
}

json_object *cvd_admin_export(struct cvd *d, const char *actor,
                              const char *volume, json_object *body,
                              unsigned *code)
{
    static const char *const fields[] = { "file", "snapshot", "sparse",
                                          NULL };
    const char *file = NULL, *snap = NULL;
    int sparse = 0, r = cvd_admin_known_fields(body, fields);

    if (r == 0 && (r = cvd_admin_get_string(body, "file", &file)) == 0)
        r = cv_error(-EINVAL, "request body: \"file\" (an absolute path on "
                     "the daemon's host) is missing");
    if (r > 0)
        r = cvd_admin_get_string(body, "snapshot", &snap);
    if (r >= 0)
        r = cvd_admin_get_bool(body, "sparse", &sparse);
    if (r >= 0)
        r = cvd_volume_export(d, volume, file, snap, sparse);
    audit(d, actor, "volume.export", volume, r, file ? file : "?");
    return r < 0 ? cvd_admin_fail(code, r) : accepted(d, volume, code);
}

/* POST /v1/volumes with "parent": a clone. */
json_object *cvd_admin_clone(struct cvd *d, const char *actor,
                             json_object *body, unsigned *code)
{
    static const char *const fields[] = { "name", "parent", "secret", "type",
                                          "cipher", "class", "replicas",
                                          "minReplicas", NULL };
    struct cvd_clone_req req = { 0 };
    struct cvd_volume_rec v;
    const char *type = NULL, *cipher = NULL;
    uint64_t n = 0, min = 0;
    int r = cvd_admin_known_fields(body, fields);

    if (r == 0 && (r = cvd_admin_get_string(body, "name", &req.name)) == 0)
        r = cv_error(-EINVAL, "request body: \"name\" is missing");
    if (r >= 0)
        r = cvd_admin_get_string(body, "parent", &req.parent);
    if (r >= 0)
        r = cvd_admin_get_string(body, "secret", &req.secret);
    if (r >= 0)
        r = cvd_admin_get_string(body, "class", &req.class_name);
    if (r >= 0)
        r = cvd_admin_get_string(body, "type", &type);
    if (r >= 0)
        r = cvd_admin_get_string(body, "cipher", &cipher);
    if (r >= 0 && type) {
        req.luks_version = !strcmp(type, "luks2") ? 2 :
                           !strcmp(type, "luks1") ? 1 : -1;
        if (req.luks_version < 0)
            r = cv_error(-EINVAL, "volume %s: type \"%.32s\" (use luks2 or "
                         "luks1)", req.name, type);
    }
    if (r >= 0 && cipher) {
        req.aes_bits = !strcmp(cipher, "aes-256") ? 256 :
                       !strcmp(cipher, "aes-128") ? 128 : 1;
        if (req.aes_bits == 1)
            r = cv_error(-EINVAL, "volume %s: cipher \"%.32s\" (use aes-256 "
                         "or aes-128)", req.name, cipher);
    }
    if (r >= 0 && (r = cvd_admin_get_u64(body, "replicas", &n)) > 0 &&
        (n < 1 || n > CVD_MAX_REPLICAS))
        r = cv_error(-EINVAL, "volume %s: \"replicas\" must be from 1 to %d",
                     req.name, CVD_MAX_REPLICAS);
    if (r >= 0 && (r = cvd_admin_get_u64(body, "minReplicas", &min)) > 0 &&
        (min < 1 || min > CVD_MAX_REPLICAS))
        r = cv_error(-EINVAL, "volume %s: \"minReplicas\" must be from 1 "
                     "to the replicas", req.name);
    req.replicas = (unsigned)n;
    req.min_replicas = (unsigned)min;
    if (r >= 0 && (type || cipher) && !req.secret && !req.class_name)
        r = cv_error(-EINVAL, "volume %s: a type or cipher of its own needs "
                     "its own secret (--secret) or class", req.name);
    if (r >= 0)
        r = cvd_volume_clone(d, &req, &v);
    audit(d, actor, "volume.clone", req.name ? req.name : "?", r,
          req.parent ? req.parent : "?");
    if (r < 0)
        return cvd_admin_fail(code, r);
    *code = 201;
    return cvd_admin_volume_json(d, &v, code);
}

/* POST /v1/volumes with "import": a LUKS image file adopted. */
json_object *cvd_admin_import(struct cvd *d, const char *actor,
                              json_object *body, unsigned *code)
{
    static const char *const fields[] = { "name", "import", "secret", NULL };
    const char *name = NULL, *file = NULL, *secret = NULL;
    struct cvd_volume_rec v;
    int r = cvd_admin_known_fields(body, fields);

    if (r == 0 && (r = cvd_admin_get_string(body, "name", &name)) == 0)
        r = cv_error(-EINVAL, "request body: \"name\" is missing");
    if (r >= 0)
        r = cvd_admin_get_string(body, "import", &file);
    if (r >= 0 && (r = cvd_admin_get_string(body, "secret", &secret)) == 0)
        r = cv_error(-EINVAL, "volume %s: \"secret\" (the secret that opens "
                     "the image) is missing", name);
    if (r > 0)
        r = cvd_volume_import(d, name, file, secret, &v);
    audit(d, actor, "volume.import", name ? name : "?", r, file ? file : "?");
    return r < 0 ? cvd_admin_fail(code, r) : accepted(d, name, code);
}

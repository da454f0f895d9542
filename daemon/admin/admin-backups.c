/* The admin API of backups (docs/admin-api.md, "Backups"):
 *   GET /v1/backup/target
 *   POST /v1/volumes/NAME/backups       (admin-volumes.c routes it, so a
 *                                        cluster forwards it to the holder)
 *   GET /v1/backups[?volume=VOL], GET /v1/backups/ID
 *   POST /v1/backups/ID/verify, POST /v1/backups/ID/restore
 *   DELETE /v1/backups/ID
 * No target: 404 NoBackupTarget; a full one: 507 InsufficientStorage. */
#include "admin-internal.h"
#include "audit/audit.h"
#include "backup/backup.h"
#include "daemon.h"
#include "core/error.h"
#include "meta/meta.h"
#include "volumes/volumes-util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The errors of backups that the rest of the API does not have. */
static json_object *fail(unsigned *code, int r)
{
    json_object *o = cvd_admin_fail(code, r);

    if (r == -ENODEV) {
        *code = 404;
        json_object_object_add(o, "code",
                               json_object_new_string("NoBackupTarget"));
    } else if (r == -EBADMSG) {
        /* A manifest that does not parse: what the target holds is
         * damaged, not the request. */
        *code = 409;
        json_object_object_add(o, "code", json_object_new_string(
                                   cvd_admin_error_name(409)));
    } else if (r == -ENOSPC) {
        *code = 507;
        json_object_object_add(o, "code",
                               json_object_new_string("InsufficientStorage"));
    }
    return o;
}

static void audit(struct cvd *d, const char *actor, const char *event,
                  const char *id, const char *volume, int r,
                  const char *detail)
{
    char object[CVD_NAME_MAX + 16];

    if (id && id[0])
        snprintf(object, sizeof object, "backup/%.*s", CVD_BACKUP_ID_MAX, id);
    else
        snprintf(object, sizeof object, "volume/%.*s", CVD_NAME_MAX,
                 volume ? volume : "?");
    cvd_audit(d->audit, actor, event, object, r >= 0, "%s%s%s%s",
              volume && volume[0] ? "volume " : "", volume ? volume : "",
              volume && volume[0] ? ": " : "",
              r < 0 ? cv_last_error() : detail);
}

static json_object *string_or_null(const char *s)
{
    return s[0] ? json_object_new_string(s) : NULL;
}

static json_object *backup_json(const struct cvd_backup_info *b)
{
    json_object *o = json_object_new_object();

#define ADD(k, val) json_object_object_add(o, k, val)
#define I64(v) json_object_new_int64((int64_t)(v))
    ADD("id", json_object_new_string(b->id));
    ADD("volume", json_object_new_string(b->volume));
    ADD("snapshot", json_object_new_string(b->snapshot));
    ADD("uuid", json_object_new_string(b->uuid));
    ADD("cluster", string_or_null(b->cluster));
    ADD("node", string_or_null(b->node));
    ADD("secret", string_or_null(b->secret));
    ADD("kekGeneration", b->kek_gen ? I64(b->kek_gen) : NULL);
    ADD("type", json_object_new_string(b->type));
    ADD("cipher", json_object_new_string(b->cipher));
    ADD("keyBits", I64(b->key_bits));
    ADD("sectorSize", I64(b->sector_size));
    ADD("size", I64(b->size));
    ADD("dataOffset", I64(b->data_offset));
    ADD("rawSize", I64(b->raw_size));
    ADD("base", string_or_null(b->base));
    ADD("created", cvd_admin_time(b->created));
    ADD("finished", b->finished ? cvd_admin_time(b->finished) : NULL);
    ADD("state", json_object_new_string(cvd_backup_state_name(b->state)));
    ADD("error", string_or_null(b->error));
    ADD("bytesHeld", I64(b->bytes_held));
    ADD("bytesNew", I64(b->bytes_new));
    ADD("blockSize", I64(1024 * 1024));
    ADD("blocks", I64(b->blocks));
    if (b->state == CVD_BACKUP_IN_PROGRESS && b->total) {
        json_object *p = json_object_new_object();

        json_object_object_add(p, "done", I64(b->done));
        json_object_object_add(p, "total", I64(b->total));
        ADD("progress", p);
    } else {
        ADD("progress", NULL);
    }
#undef I64
#undef ADD
    return o;
}

static json_object *target_info(struct cvd *d, unsigned *code)
{
    struct cvd_backup_target_info t;
    json_object *o;
    int r = cvd_backup_target_info(d, &t);

    if (r < 0)
        return fail(code, r);
    o = json_object_new_object();
    json_object_object_add(o, "path", json_object_new_string(t.path));
    json_object_object_add(o, "backups", json_object_new_int64(
                               (int64_t)t.backups));
    json_object_object_add(o, "blocks", json_object_new_int64(
                               (int64_t)t.blocks));
    json_object_object_add(o, "bytes", json_object_new_int64(
                               (int64_t)t.bytes));
    json_object_object_add(o, "freeBytes", json_object_new_int64(
                               (int64_t)t.free_bytes));
    *code = 200;
    return o;
}

json_object *cvd_admin_backup_target(struct cvd *d, const char *method,
                                     const char *rest, unsigned *code)
{
    if (rest[0] && strcmp(rest, "/"))
        return cvd_admin_error(code, 404, "no such endpoint (GET "
                               "/v1/backup/target)");
    if (strcmp(method, "GET"))
        return cvd_admin_error(code, 405, "/v1/backup/target: use GET");
    return target_info(d, code);
}

/* POST /v1/volumes/NAME/backups {"snapshot": "s1"?}. */
json_object *cvd_admin_backup_create(struct cvd *d, const char *actor,
                                     const char *volume, json_object *body,
                                     unsigned *code)
{
    static const char *const fields[] = { "snapshot", NULL };
    struct cvd_backup_info b;
    const char *snap = NULL;
    char detail[CVD_NAME_MAX + 64];
    int r = cvd_admin_known_fields(body, fields);

    if (r == 0)
        r = cvd_admin_get_string(body, "snapshot", &snap);
    if (r >= 0)
        r = cvd_backup_create(d, volume, snap, &b);
    if (r == 0)
        snprintf(detail, sizeof detail, "backup of snapshot %s started",
                 b.snapshot);
    audit(d, actor, "backup.create", r == 0 ? b.id : NULL, volume, r,
          r == 0 ? detail : NULL);
    if (r < 0)
        return fail(code, r);
    *code = 202;
    return backup_json(&b);
}

static json_object *list(struct cvd *d, json_object *query, unsigned *code)
{
    struct cvd_backup_info *all = NULL;
    const char *volume = NULL;
    json_object *o, *a;
    size_t n = 0;
    int r = 0;

    if (query) {
        json_object_object_foreach(query, key, val) {
            (void)val;
            if (strcmp(key, "volume"))
                return fail(code, cv_error(-EINVAL, "/v1/backups: unknown "
                                           "argument \"%.64s\" (it takes "
                                           "volume)", key));
        }
    }
    if (query)
        r = cvd_admin_get_string(query, "volume", &volume);
    if (r >= 0 && volume)
        r = cvd_check_name("volume", volume);
    if (r >= 0)
        r = cvd_backup_list(d, volume, &all, &n);
    if (r < 0)
        return fail(code, r);
    a = json_object_new_array();
    for (size_t i = 0; i < n; i++)
        json_object_array_add(a, backup_json(&all[i]));
    free(all);
    o = json_object_new_object();
    json_object_object_add(o, "backups", a);
    *code = 200;
    return o;
}

static json_object *get(struct cvd *d, const char *id, unsigned *code)
{
    struct cvd_backup_info b;
    int r = cvd_backup_get(d, id, &b);

    if (r < 0)
        return fail(code, r);
    *code = 200;
    return backup_json(&b);
}

static const char *problem_name(enum cvd_backup_problem_kind k)
{
    switch (k) {
    case CVD_BACKUP_BLOCK_MISSING: return "missing";
    case CVD_BACKUP_BLOCK_CHECKSUM: return "checksum";
    case CVD_BACKUP_BLOCK_SIZE: return "size";
    }
    return "?";
}

static json_object *verify_json(const char *id,
                                const struct cvd_backup_verify *v)
{
    json_object *o = json_object_new_object(), *a = json_object_new_array();

    for (size_t i = 0; i < v->nproblems; i++) {
        json_object *p = json_object_new_object();

        json_object_object_add(p, "offset", json_object_new_int64(
                                   (int64_t)v->problems[i].offset));
        json_object_object_add(p, "sha256", json_object_new_string(
                                   v->problems[i].sha256));
        json_object_object_add(p, "problem", json_object_new_string(
                                   problem_name(v->problems[i].kind)));
        json_object_array_add(a, p);
    }
    json_object_object_add(o, "id", json_object_new_string(id));
    json_object_object_add(o, "ok", json_object_new_boolean(
                               v->authenticated && !v->nproblems));
    json_object_object_add(o, "authenticated",
                           json_object_new_boolean(v->authenticated));
    json_object_object_add(o, "authError", v->authenticated ? NULL :
                           json_object_new_string(v->auth_error));
    json_object_object_add(o, "blocks", json_object_new_int64(
                               (int64_t)v->blocks));
    json_object_object_add(o, "bytes", json_object_new_int64(
                               (int64_t)v->bytes));
    json_object_object_add(o, "problems", a);
    return o;
}

static json_object *verify(struct cvd *d, const char *actor, const char *id,
                           json_object *body, unsigned *code)
{
    static const char *const fields[] = { "secret", NULL };
    struct cvd_backup_verify v = { 0 };
    struct cvd_backup_info info = { 0 };
    const char *secret = NULL;
    char detail[160];
    json_object *o;
    int audit_r, r = cvd_admin_known_fields(body, fields);

    if (r == 0)
        r = cvd_admin_get_string(body, "secret", &secret);
    if (r >= 0 && cvd_backup_get(d, id, &info) < 0)
        cv_clear_error();       /* verify says why */
    if (r >= 0)
        r = cvd_backup_verify(d, id, secret, &v);
    audit_r = r;
    if (r == 0)
        snprintf(detail, sizeof detail, "%s, %zu problems in %llu blocks",
                 v.authenticated ? "authenticated" : "not authenticated",
                 v.nproblems, (unsigned long long)v.blocks);
    /* A check that ran and found problems is recorded as refused, with
     * what it found. */
    if (r == 0 && !(v.authenticated && !v.nproblems))
        audit_r = cv_error(-EBADMSG, "%s%s%s", detail,
                           v.authenticated ? "" : ": ",
                           v.authenticated ? "" : v.auth_error);
    audit(d, actor, "backup.verify", id, info.volume, audit_r, detail);
    if (r < 0)
        return fail(code, r);
    o = verify_json(id, &v);
    cvd_backup_verify_free(&v);
    *code = 200;
    return o;
}

static json_object *restore(struct cvd *d, const char *actor, const char *id,
                            json_object *body, unsigned *code)
{
    static const char *const fields[] = { "name", "secret", "class", NULL };
    const char *name = NULL, *secret = NULL, *class_name = NULL;
    struct cvd_volume_rec v;
    char detail[2 * CVD_NAME_MAX + 64];
    int r = cvd_admin_known_fields(body, fields);

    if (r == 0 && (r = cvd_admin_get_string(body, "name", &name)) == 0)
        r = cv_error(-EINVAL, "request body: \"name\" (the new volume's) is "
                     "missing");
    if (r > 0)
        r = cvd_admin_get_string(body, "secret", &secret);
    if (r >= 0)
        r = cvd_admin_get_string(body, "class", &class_name);
    if (r >= 0)
        r = cvd_backup_restore(d, id, name, secret, class_name, &v);
    if (r == 0)
        snprintf(detail, sizeof detail, "restoring into volume %s (%s)",
                 name, cvd_state_shown(v.state));
    audit(d, actor, "backup.restore", id, name, r, r == 0 ? detail : NULL);
    if (r < 0)
        return fail(code, r);
    *code = 202;
    return cvd_admin_volume_json(d, &v, code);
}

static json_object *delete(struct cvd *d, const char *actor, const char *id,
                           unsigned *code)
{
    struct cvd_backup_info info = { 0 };
    uint64_t freed = 0;
    char detail[64];
    json_object *o;
    int r;

    if (cvd_backup_get(d, id, &info) < 0)
        cv_clear_error();       /* delete says why */
    r = cvd_backup_delete(d, id, &freed);
    snprintf(detail, sizeof detail, "%llu bytes of blocks freed",
             (unsigned long long)freed);
    audit(d, actor, "backup.delete", id, info.volume, r, detail);
    if (r < 0)
        return fail(code, r);
    o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(id));
    json_object_object_add(o, "freedBytes", json_object_new_int64(
                               (int64_t)freed));
    *code = 200;
    return o;
}

/* rest: "", "/ID", "/ID/verify", "/ID/restore". */
json_object *cvd_admin_backups(struct cvd *d, const char *actor,
                               const char *method, const char *rest,
                               json_object *body, unsigned *code)
{
    char id[CVD_BACKUP_ID_MAX + 2];
    const char *slash;
    size_t len;

    if (!rest[0] || !strcmp(rest, "/")) {
        if (!strcmp(method, "GET"))
            return list(d, body, code);
        return cvd_admin_error(code, 405, "/v1/backups: use GET (a backup "
                               "is made by POST /v1/volumes/NAME/backups)");
    }
    rest++;
    slash = strchr(rest, '/');
    len = slash ? (size_t)(slash - rest) : strlen(rest);
    if (len > CVD_BACKUP_ID_MAX)
        len = CVD_BACKUP_ID_MAX + 1;    /* still invalid: the check says so */
    memcpy(id, rest, len);
    id[len] = '\0';
    if (slash && !strcmp(slash, "/verify") && !strcmp(method, "POST"))
        return verify(d, actor, id, body, code);
    if (slash && !strcmp(slash, "/restore") && !strcmp(method, "POST"))
        return restore(d, actor, id, body, code);
    if (slash)
        return cvd_admin_error(code, 404, "no such endpoint under "
                               "/v1/backups (POST /v1/backups/ID/verify, "
                               "POST /v1/backups/ID/restore)");
    if (!strcmp(method, "GET"))
        return get(d, id, code);
    if (!strcmp(method, "DELETE"))
        return delete(d, actor, id, code);
    return cvd_admin_error(code, 405, "/v1/backups/ID: use GET or DELETE");
}

/* /v1/cluster: encryption state, enabling it, KEK rotation and escrow.
 *
 *   GET    /v1/cluster                  cvd_cluster_info
 *   POST   /v1/cluster/encryption       {"kekProtection": "tpm"|"software"}
 *   DELETE /v1/cluster/encryption       refused, with the reason
 *   POST   /v1/cluster/kek/rotate       {} -> 202 {"targetGeneration": N}
 *   POST   /v1/cluster/kek/export       {"recoveryPassphrase": base64}
 *                                       -> {"escrow": "<document>"} */
#include "admin-internal.h"
#include "keys/cluster-kek.h"
#include "daemon.h"
#include "core/error.h"
#include "core/secret-file.h"
#include "luks/escrow.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_object *info(struct cvd *d, unsigned *code)
{
    json_object *o;
    int r = cvd_cluster_info(d->cluster, &o);

    if (r < 0)
        return cvd_admin_fail(code, r);
    *code = 200;
    return o;
}

static json_object *enable(struct cvd *d, const char *actor, json_object *body,
                           unsigned *code)
{
    static const char *const fields[] = { "kekProtection", NULL };
    const char *protection = "software";
    int r;

    r = cvd_admin_known_fields(body, fields);
    if (r == 0)
        r = cvd_admin_get_string(body, "kekProtection", &protection);
    if (r >= 0)
        r = cvd_cluster_enable(d->cluster, actor, protection);
    return r < 0 ? cvd_admin_fail(code, r) : info(d, code);
}

static json_object *rotate(struct cvd *d, const char *actor, json_object *body,
                           unsigned *code)
{
    static const char *const fields[] = { NULL };
    json_object *o;
    uint32_t gen = 0;
    int r;

    r = cvd_admin_known_fields(body, fields);
    if (r == 0)
        r = cvd_cluster_rotate(d->cluster, actor, &gen);
    if (r < 0)
        return cvd_admin_fail(code, r);
    o = json_object_new_object();
    json_object_object_add(o, "targetGeneration", json_object_new_int64(gen));
    *code = 202;
    return o;
}

static json_object *export_escrow(struct cvd *d, const char *actor,
                                  json_object *body, unsigned *code)
{
    static const char *const fields[] = { "recoveryPassphrase", NULL };
    const char *b64 = NULL;
    struct cv_secret pass = { 0 };
    char *text = NULL;
    json_object *o;
    int r;

    r = cvd_admin_known_fields(body, fields);
    if (r == 0 && cvd_admin_get_string(body, "recoveryPassphrase", &b64) <= 0)
        r = cv_error(-EINVAL, "request body: \"recoveryPassphrase\" (base64) "
                     "is required");
    if (r == 0)
        r = cvd_admin_decode_secret("recovery passphrase", b64, &pass);
    if (r == 0 && pass.len < CV_ESCROW_PASS_MIN)
        r = cv_error(-EINVAL, "recovery passphrase: %zu bytes, at least %d "
                     "are needed", pass.len, CV_ESCROW_PASS_MIN);
    if (r == 0)
        r = cvd_cluster_escrow(d->cluster, actor, pass.data, pass.len, &text);
    cv_secret_free(&pass);
    if (r < 0)
        return cvd_admin_fail(code, r);
    o = json_object_new_object();
    json_object_object_add(o, "escrow", json_object_new_string(text));
    free(text);
    *code = 200;
    return o;
}

json_object *cvd_admin_cluster(struct cvd *d, const char *actor,
                               const char *method, const char *rest,
                               json_object *body, unsigned *code)
{
    char msg[160];

    if ((!rest[0] || !strcmp(rest, "/")) && !strcmp(method, "GET"))
        return info(d, code);
    if (!strcmp(rest, "/encryption") && !strcmp(method, "POST"))
        return enable(d, actor, body, code);
    if (!strcmp(rest, "/encryption") && !strcmp(method, "DELETE"))
        return cvd_admin_fail(code, cvd_cluster_disable(d->cluster, actor));
    if (!strcmp(rest, "/kek/rotate") && !strcmp(method, "POST"))
        return rotate(d, actor, body, code);
    if (!strcmp(rest, "/kek/export") && !strcmp(method, "POST"))
        return export_escrow(d, actor, body, code);
    snprintf(msg, sizeof msg, "no such endpoint: %.8s /v1/cluster%.100s",
             method, rest);
    return cvd_admin_error(code, 404, msg);
}

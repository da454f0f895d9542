/* GET and POST /v1/node/peer-tls: this node's peer-tls mode (peer.h),
 * {"mode": "off" | "on" | "require"}.  A POST changes the running port
 * (new connections both ways follow it, streams are replaced, under
 * require plaintext connections close) and is audited as peer.tls; it
 * lasts until the next SIGHUP rereads the config file, or a restart.
 * docs/admin-api.md, docs/cluster.md "peer-tls". */
#include "admin-internal.h"
#include "audit/audit.h"
#include "core/error.h"
#include "daemon.h"
#include "peer/peer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static json_object *mode_json(enum cvd_peer_tls now, const char *was,
                              unsigned *code)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "mode",
                           json_object_new_string(cvd_peer_tls_name(now)));
    if (was)
        json_object_object_add(o, "previous", json_object_new_string(was));
    *code = 200;
    return o;
}

static json_object *set_mode(struct cvd *d, const char *actor,
                             json_object *in, unsigned *code)
{
    static const char *const fields[] = { "mode", NULL };
    char object[CVD_NAME_MAX + 8];
    const char *s = NULL;
    enum cvd_peer_tls mode, old;
    int r;

    r = cvd_admin_known_fields(in, fields);
    if (r == 0 && (r = cvd_admin_get_string(in, "mode", &s)) == 0)
        r = cv_error(-EINVAL, "request body: \"mode\" is required (off, on "
                     "or require)");
    if (r >= 0)
        r = cvd_peer_tls_parse(s, &mode);
    if (r < 0)
        return cvd_admin_fail(code, r);
    snprintf(object, sizeof object, "node/%s", d->cfg.node_name);
    old = cvd_peer_get_tls(d->peer);
    r = cvd_peer_set_tls(d->peer, mode);
    if (r < 0) {
        cvd_audit(d->audit, actor, "peer.tls", object, 0, "%s",
                  cv_last_error());
        return cvd_admin_fail(code, r);
    }
    d->cfg.peer_tls = (int)mode;
    if (mode != old)
        cvd_audit(d->audit, actor, "peer.tls", object, 1, "%s (was %s)",
                  cvd_peer_tls_name(mode), cvd_peer_tls_name(old));
    return mode_json(mode, cvd_peer_tls_name(old), code);
}

json_object *cvd_admin_peer_tls(struct cvd *d, const char *actor,
                                const char *method, const char *rest,
                                json_object *in, unsigned *code)
{
    (void)rest;
    if (!d->peer)
        return cvd_admin_error(code, 409, "peer-tls: this node has no peer "
                               "port (peer-listen; a single node has no "
                               "peers)");
    if (!strcmp(method, "GET"))
        return mode_json(cvd_peer_get_tls(d->peer), NULL, code);
    if (!strcmp(method, "POST"))
        return set_mode(d, actor, in, code);
    return cvd_admin_error(code, 405, "peer-tls: GET or POST");
}

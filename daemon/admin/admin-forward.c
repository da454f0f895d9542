/* A volume's data operations asked of a node that does not hold its data:
 * carried out by the node that does, over the peer port (CVD_PEER_ADMIN),
 * so the admin API of any node manages every volume of the cluster.  A
 * replicated volume's requests go to its writer while it is attached (the
 * node with the open chain), else to the node it was made on.
 *
 * The request goes as {"actor", "method", "url", "body"} and comes back
 * as {"status", "body"}; the holder runs it through its own dispatcher
 * with the actor "peer:NODE for ACTOR", so its audit log says who asked
 * and through which node.  A forwarded request is never forwarded again
 * (the holder changed meanwhile: it is refused, naming the new one).  The
 * per-volume endpoints take names, sizes and paths, never a secret value,
 * so nothing secret is in these messages. */
#include "admin-internal.h"
#include "core/error.h"
#include "core/json-util.h"
#include "core/secmem.h"
#include "daemon.h"
#include "meta/meta.h"
#include "peer/peer.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FORWARDED "peer:"

void cvd_admin_volume_holder(struct cvd *d, const struct cvd_volume_rec *v,
                             char node[CVD_NAME_MAX + 1])
{
    struct cvd_attach_rec a;

    snprintf(node, CVD_NAME_MAX + 1, "%s", d->node ? v->node : "");
    if (!d->node)
        return;
    if (d->meta->ops->attach_get(d->meta, v->name, &a) == 0)
        snprintf(node, CVD_NAME_MAX + 1, "%s", a.node);
    else
        cv_clear_error();
}

int cvd_admin_forwarded(const char *actor)
{
    return !strncmp(actor, FORWARDED, strlen(FORWARDED));
}

/* One JSON object from len bytes that need not end in a NUL. */
static json_object *parse_object(const void *p, size_t len)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = NULL;

    if (tok && len <= INT32_MAX)
        o = json_tokener_parse_ex(tok, p, (int)len);
    if (o && (json_tokener_get_error(tok) != json_tokener_success ||
              !json_object_is_type(o, json_type_object))) {
        json_object_put(o);
        o = NULL;
    }
    if (tok)
        json_tokener_free(tok);
    return o;
}

/* The holder's address, if it can take the request now. */
static int holder(struct cvd *d, const char *volume, const char *node,
                  struct cvd_node_rec *n)
{
    int r = d->meta->ops->node_get(d->meta, node, n);

    if (r < 0)
        return cv_error_prefix(r, "volume %s: its data is on node %s", volume,
                               node);
    if (n->state != CVD_NODE_MEMBER || !n->alive)
        return cv_error(-EREMOTE, "volume %s: its data is on node %s, "
                        "which is %s: its data can be changed only there",
                        volume, node, n->state == CVD_NODE_REMOVED ?
                        "Removed" : n->alive ? "Joining" : "Offline");
    return 0;
}

static json_object *answer(const void *resp, size_t len, unsigned *code)
{
    json_object *ans = parse_object(resp, len), *body = NULL, *st = NULL;
    json_object *out;
    int64_t status;

    if (!ans || !json_object_object_get_ex(ans, "status", &st) ||
        !json_object_object_get_ex(ans, "body", &body) ||
        (status = json_object_get_int64(st)) < 100 || status > 599) {
        json_object_put(ans);
        return cvd_admin_fail(code, cv_error(-EPROTO, "the node holding the "
                                             "volume sent a malformed "
                                             "answer"));
    }
    *code = (unsigned)status;
    out = json_object_get(body);
    json_object_put(ans);
    return out;
}

json_object *cvd_admin_forward(struct cvd *d, const char *volume,
                               const char *node, const char *actor,
                               const char *method, const char *url,
                               json_object *in, unsigned *code, int *answered)
{
    struct cvd_node_rec n;
    json_object *req = json_object_new_object(), *out;
    const char *text;
    void *resp = NULL;
    size_t rlen = 0;
    uint16_t rtype = 0;
    int r = req ? holder(d, volume, node, &n) : -ENOMEM;

    *answered = 0;
    if (r == 0) {
        json_object_object_add(req, "actor", json_object_new_string(actor));
        json_object_object_add(req, "method", json_object_new_string(method));
        json_object_object_add(req, "url", json_object_new_string(url));
        if (in)
            json_object_object_add(req, "body", json_object_get(in));
        text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
        r = cvd_peer_call(d, node, n.address, CVD_PEER_ADMIN, text,
                          strlen(text), &resp, &rlen, &rtype);
        if (r < 0)
            /* Not cv_error with cv_last_error(): it would format the
             * message over itself. */
            r = cv_error_prefix(-EAGAIN, "volume %s: asking node %s, which "
                                "holds its data", volume, node);
    }
    json_object_put(req);
    if (r < 0)
        return cvd_admin_fail(code, r == -ENOMEM ?
                              cv_error(r, "admin: out of memory") : r);
    out = answer(resp, rlen, code);
    *answered = 1;
    cv_secmem_free(resp, rlen);
    return out;
}

/* The holder's side: only per-volume requests, run as the asking node's
 * actor said, through the same dispatcher as a local one. */
static int serve(void *arg, const char *peer, const void *req, size_t len,
                 struct cvd_peer_reply *reply)
{
    struct cvd *d = arg;
    json_object *in = parse_object(req, len), *body = NULL, *out, *ans;
    const char *actor = in ? cv_json_string(in, "actor") : NULL;
    const char *method = in ? cv_json_string(in, "method") : NULL;
    const char *url = in ? cv_json_string(in, "url") : NULL;
    const char *text = NULL, *s;
    char who[300];
    unsigned code = 500;
    int post;

    if (!actor || !method || !url) {
        json_object_put(in);
        return cv_error(-EPROTO, "peer %s: a forwarded admin request "
                        "without actor, method and url", peer);
    }
    if (strncmp(url, "/v1/volumes/", 12)) {
        json_object_put(in);
        return cv_error(-EPERM, "peer %s: only per-volume requests are "
                        "forwarded, not %.100s", peer, url);
    }
    json_object_object_get_ex(in, "body", &body);
    post = !strcmp(method, "POST") || !strcmp(method, "PUT");
    if (post && body)
        text = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN);
    snprintf(who, sizeof who, FORWARDED "%s for %s", peer, actor);
    out = cvd_admin_dispatch(d, who, method, url, post ? NULL : body,
                             text ? text : "{}", text ? strlen(text) : 2,
                             &code);
    ans = json_object_new_object();
    json_object_object_add(ans, "status", json_object_new_int64(code));
    json_object_object_add(ans, "body", out);
    s = json_object_to_json_string_ext(ans, JSON_C_TO_STRING_PLAIN);
    reply->len = strlen(s);
    reply->data = malloc(reply->len ? reply->len : 1);
    if (reply->data)
        memcpy(reply->data, s, reply->len);
    json_object_put(ans);
    json_object_put(in);
    return reply->data ? 0 : cv_error(-ENOMEM, "admin: out of memory");
}

int cvd_admin_forward_start(struct cvd *d)
{
    return d->peer ? cvd_peer_handle(d->peer, CVD_PEER_ADMIN, serve, d) : 0;
}

/* GET /v1/node/stats: this node's TLS counters (metrics/metrics.h,
 * cvd_metrics_stats); GET /v1/nodes/NAME/stats: another member's, asked
 * over the peer port (CVD_PEER_STATS) at the address the store has for
 * it.  docs/admin-api.md, "Node stats". */
#include "admin-internal.h"
#include "core/error.h"
#include "core/secmem.h"
#include "daemon.h"
#include "meta/meta.h"
#include "metrics/metrics.h"
#include "peer/peer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define NODES "/v1/nodes/"
#define STATS "/stats"

int cvd_admin_is_stats(const char *url)
{
    size_t n = strlen(url), s = strlen(STATS), p = strlen(NODES);

    if (!strcmp(url, "/v1/node/stats"))
        return 1;
    return n > p + s && !strncmp(url, NODES, p) &&
           !strcmp(url + n - s, STATS) &&
           !memchr(url + p, '/', n - p - s);
}

static json_object *local(struct cvd *d, unsigned *code)
{
    json_object *o;
    int r = cvd_metrics_stats(d, &o);

    if (r < 0)
        return cvd_admin_fail(code, r);
    *code = 200;
    return o;
}

/* The JSON text a peer answered, parsed (it arrives in locked memory; it
 * holds no secret, but is freed as the call says). */
static json_object *parse_answer(const char *name, void *data, size_t len,
                                 unsigned *code)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = tok ? json_tokener_parse_ex(tok, data, (int)len) : NULL;
    char msg[160];

    if (o && (json_tokener_get_error(tok) != json_tokener_success ||
              !json_object_is_type(o, json_type_object))) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    cv_secmem_free(data, len);
    if (o) {
        *code = 200;
        return o;
    }
    snprintf(msg, sizeof msg, "node %s: its stats answer is not a JSON "
             "object", name);
    return cvd_admin_error(code, 500, msg);
}

static json_object *remote(struct cvd *d, const char *name, unsigned *code)
{
    struct cvd_node_rec n;
    void *data = NULL;
    size_t len = 0;
    uint16_t type = 0;
    char msg[512];
    int r;

    if (d->cfg.node_name && !strcmp(name, d->cfg.node_name))
        return local(d, code);
    if (!cvd_name_valid(name))
        return cvd_admin_fail(code, cv_error(-EINVAL, "node \"%.64s\": not "
                                             "a valid name", name));
    memset(&n, 0, sizeof n);
    r = d->meta->ops->node_get(d->meta, name, &n);
    if (r < 0)
        return cvd_admin_fail(code, cv_error_prefix(r, "node stats %s",
                                                    name));
    r = cvd_peer_call(d, name, n.address, CVD_PEER_STATS, NULL, 0, &data,
                      &len, &type);
    if (r == 0 && type != CVD_PEER_STATS) {
        cv_secmem_free(data, len);
        r = cv_error(-EPROTO, "node %s answered message type 0x%04x to "
                     "STATS", name, type);
    }
    if (r < 0) {
        /* The other node or the way to it: try again later. */
        snprintf(msg, sizeof msg, "node stats %s: %s", name, cv_last_error());
        return cvd_admin_error(code, 503, msg);
    }
    return parse_answer(name, data, len, code);
}

json_object *cvd_admin_node_stats(struct cvd *d, const char *method,
                                  const char *url, unsigned *code)
{
    char name[CVD_NAME_MAX + 2];
    size_t p = strlen(NODES), n;

    if (strcmp(method, "GET"))
        return cvd_admin_error(code, 405, "node stats: only GET");
    if (!strcmp(url, "/v1/node/stats"))
        return local(d, code);
    n = strlen(url) - p - strlen(STATS);
    snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n :
                                              sizeof name - 1), url + p);
    return remote(d, name, code);
}

/* The peer port's own message types: PING (empty -> empty: the port is up
 * and the peer a member) and STATS (this node's TLS counters as JSON,
 * for GET /v1/nodes/NAME/stats on another node). */
#include "peer-internal.h"

#include "core/error.h"
#include "daemon.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

static int ping(void *arg, const char *peer, const void *req, size_t len,
                struct cvd_peer_reply *reply)
{
    (void)arg; (void)peer; (void)req;
    if (len)
        return cv_error(-EINVAL, "PING takes no payload (%zu bytes sent)",
                        len);
    reply->type = CVD_PEER_PING;
    return 0;
}

static int stats(void *arg, const char *peer, const void *req, size_t len,
                 struct cvd_peer_reply *reply)
{
    struct cvd *d = arg;
    json_object *o = NULL;
    const char *text;
    int r;

    (void)peer; (void)req;
    if (len)
        return cv_error(-EINVAL, "STATS takes no payload (%zu bytes sent)",
                        len);
    r = cvd_metrics_stats(d, &o);
    if (r < 0)
        return r;
    text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    reply->len = strlen(text);
    reply->data = malloc(reply->len ? reply->len : 1);
    if (reply->data)
        memcpy(reply->data, text, reply->len);
    json_object_put(o);
    if (!reply->data)
        return cv_error(-ENOMEM, "node stats: out of memory");
    reply->type = CVD_PEER_STATS;
    return 0;
}

int peer_builtin_handlers(struct cvd_peer *p)
{
    /* PING also on plaintext: a stream's keepalive. */
    int r = cvd_peer_handle_flags(p, CVD_PEER_PING, ping, NULL,
                                  CVD_PEER_PLAIN_OK);

    if (r == 0)
        r = cvd_peer_handle(p, CVD_PEER_STATS, stats, p->d);
    return r;
}

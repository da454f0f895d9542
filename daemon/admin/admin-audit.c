/* GET /v1/audit?since=T: the audit log's events, oldest first: in a
 * cluster the cluster-wide log in etcd, on a single node the local file.  T is
 * seconds since the epoch, an RFC 3339 time or an age ("10m", "2h", "1d"),
 * read by cvd_audit_parse_since. */
#include "admin-internal.h"
#include "audit/audit.h"
#include "daemon.h"
#include "core/error.h"

#include <errno.h>
#include <string.h>
#include <time.h>

static int collect(void *arg, json_object *event)
{
    json_object *e = json_object_get(event);

    if (json_object_array_add(arg, e) == 0)
        return 0;
    json_object_put(e);
    return cv_error(-ENOMEM, "audit log: out of memory");
}

/* since is the only argument: a typo is an error, not every event. */
static int parse_query(json_object *q, int64_t *since)
{
    const char *s = NULL;
    int r = 0;

    *since = 0;
    if (!q)
        return 0;
    json_object_object_foreach(q, key, val) {
        (void)val;
        if (strcmp(key, "since"))
            return cv_error(-EINVAL, "/v1/audit: unknown argument "
                            "\"%.64s\" (it takes since)", key);
    }
    r = cvd_admin_get_string(q, "since", &s);
    if (r > 0)
        r = cvd_audit_parse_since(s, (int64_t)time(NULL), since);
    return r;
}

json_object *cvd_admin_audit(struct cvd *d, const char *actor,
                             const char *method, const char *rest,
                             json_object *query, unsigned *code)
{
    json_object *events, *o;
    int64_t since;
    int r;

    (void)actor;
    if (rest[0] && strcmp(rest, "/"))
        return cvd_admin_error(code, 404, "no such endpoint under /v1/audit");
    if (strcmp(method, "GET"))
        return cvd_admin_error(code, 405, "/v1/audit: use GET");
    r = parse_query(query, &since);
    if (r < 0)
        return cvd_admin_fail(code, r);
    events = json_object_new_array();
    if (!events)
        return cvd_admin_error(code, 500, "audit log: out of memory");
    /* A cluster: every node's events, from the store (each names its
     * node); one node: the local file. */
    r = cvd_audit_read_cluster(d->audit, since, collect, events);
    if (r < 0) {
        json_object_put(events);
        return cvd_admin_fail(code, r);
    }
    o = json_object_new_object();
    json_object_object_add(o, "events", events);
    json_object_object_add(o, "skipped", json_object_new_int(r));
    *code = 200;
    return o;
}

/* A volume's replicas in the admin API (docs/admin-api.md, "Replicas"):
 * what GET /v1/volumes/NAME adds for a volume with a replica set, and
 * POST /v1/volumes/NAME/replicas {"count": N, "min": M}, which changes how
 * many nodes hold it (repl/: cvd_repl_set_count adds Rebuilding replicas
 * or removes some; the repair loop copies). */
#include "admin-internal.h"
#include "cluster/cluster.h"
#include "core/error.h"
#include "daemon.h"
#include "meta/meta.h"
#include "repl/repl.h"
#include "volumes/volumes.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static json_object *replica_json(const struct cvd_replica *p)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "node", json_object_new_string(p->node));
    json_object_object_add(o, "state", json_object_new_string(
                               cvd_replica_state_name(p->state)));
    json_object_object_add(o, "since", cvd_admin_time(p->since));
    json_object_object_add(o, "behind", json_object_new_int64(
                               (int64_t)p->behind));
    json_object_object_add(o, "syncDone", json_object_new_int64(
                               (int64_t)p->sync_done));
    json_object_object_add(o, "syncTotal", json_object_new_int64(
                               (int64_t)p->sync_total));
    json_object_object_add(o, "error", p->error[0] ?
                           json_object_new_string(p->error) : NULL);
    return o;
}

void cvd_admin_replicas_json(struct cvd *d, const char *volume,
                             json_object *o)
{
    struct cvd_replica_set s;
    struct cvd_attach_rec a;
    json_object *arr;
    unsigned i;

    if (!d->node || d->meta->ops->replicas_get(d->meta, volume, &s) < 0) {
        cv_clear_error();
        return;
    }
    arr = json_object_new_array();
    for (i = 0; i < s.n; i++)
        json_object_array_add(arr, replica_json(&s.r[i]));
    json_object_object_add(o, "replicas", arr);
    json_object_object_add(o, "replicaCount", json_object_new_int64(
                               s.want ? s.want : s.n));
    json_object_object_add(o, "minReplicas", json_object_new_int64(s.min));
    json_object_object_add(o, "epoch", json_object_new_int64(
                               (int64_t)s.epoch));
    if (d->meta->ops->attach_get(d->meta, volume, &a) < 0) {
        cv_clear_error();
        json_object_object_add(o, "writer", NULL);
    } else {
        json_object_object_add(o, "writer", json_object_new_string(a.node));
    }
}

/* The numbers asked for, checked: count 1 to CVD_MAX_REPLICAS, min 1 to
 * count (absent: the set's, at most count - 1, or count - 1), and, when
 * replicas are added, enough Online nodes for them. */
static int check_count(struct cvd *d, const char *volume, uint64_t count,
                       int has_min, uint64_t min, unsigned *out_min)
{
    char nodes[CVD_MAX_REPLICAS][CVD_NAME_MAX + 1];
    char have[CVD_MAX_REPLICAS][CVD_NAME_MAX + 1];
    struct cvd_replica_set s;
    unsigned i, n = 0, dflt = count > 1 ? (unsigned)count - 1 : 1;
    int r;

    if (!d->node)
        return cv_error(-EINVAL, "volume %s: a single node has no replicas "
                        "(replication needs a cluster)", volume);
    if (count < 1 || count > CVD_MAX_REPLICAS)
        return cv_error(-EINVAL, "volume %s: \"count\" must be from 1 to %d",
                        volume, CVD_MAX_REPLICAS);
    if (has_min && (min < 1 || min > count))
        return cv_error(-EINVAL, "volume %s: \"min\" must be from 1 to the "
                        "count (%u)", volume, (unsigned)count);
    r = d->meta->ops->replicas_get(d->meta, volume, &s);
    if (r == -ENOENT) {
        cv_clear_error();
        memset(&s, 0, sizeof s);
        r = 0;
    }
    if (r < 0)
        return r;
    *out_min = has_min ? (unsigned)min :
               s.n && s.min && s.min < dflt ? s.min : dflt;
    for (i = 0; i < s.n; i++)
        snprintf(have[n++], sizeof have[0], "%s", s.r[i].node);
    /* A volume without a set is on this node alone (it was forwarded
     * here, its node). */
    if (!s.n)
        snprintf(have[n++], sizeof have[0], "%s", d->cfg.node_name);
    if (count > n) {
        r = cvd_node_place_replicas(d, (unsigned)count - n,
                                    (const char (*)[CVD_NAME_MAX + 1])have, n,
                                    nodes);
        if (r < 0)
            return cv_error_prefix(-EINVAL, "volume %s: %u replicas", volume,
                                   (unsigned)count);
    }
    return 0;
}

json_object *cvd_admin_replicas(struct cvd *d, const char *actor,
                                const char *method, const char *volume,
                                json_object *body, unsigned *code)
{
    static const char *const fields[] = { "count", "min", NULL };
    struct cvd_volume_rec v;
    uint64_t count = 0, min = 0;
    unsigned use_min = 0;
    int r, has_min = 0;

    if (strcmp(method, "POST"))
        return cvd_admin_error(code, 405, "/v1/volumes/NAME/replicas: use "
                               "POST (GET /v1/volumes/NAME shows them)");
    r = cvd_volume_get(d, volume, &v);
    if (r == 0)
        r = cvd_admin_known_fields(body, fields);
    if (r == 0 && (r = cvd_admin_get_u64(body, "count", &count)) == 0)
        r = cv_error(-EINVAL, "volume %s: \"count\" (how many nodes hold "
                     "it) is missing", volume);
    if (r > 0)
        r = has_min = cvd_admin_get_u64(body, "min", &min);
    if (r >= 0)
        r = check_count(d, volume, count, has_min, min, &use_min);
    if (r >= 0)
        r = cvd_repl_set_count(d, actor, volume, (unsigned)count, use_min);
    if (r == 0)
        r = cvd_volume_get(d, volume, &v);
    if (r < 0)
        return cvd_admin_fail(code, r);
    *code = 200;
    return cvd_admin_volume_json(d, &v, code);
}

/* /v1/nodes: the members of the cluster (daemon/cluster/).
 *
 *   GET    /v1/nodes            {"nodes": [...], "etcd": {...}}
 *   POST   /v1/nodes            {"name", "address"} -> 201, the node
 *   DELETE /v1/nodes/NAME       -> 200; 409 while volumes are placed on it
 *
 * A single node answers 400: it has no cluster. */
#include "admin-internal.h"
#include "cluster/cluster.h"
#include "daemon.h"
#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static json_object *list(struct cvd *d, unsigned *code)
{
    json_object *o = NULL;
    int r = cvd_node_list(d, &o);

    if (r < 0)
        return cvd_admin_fail(code, r);
    *code = 200;
    return o;
}

static json_object *add(struct cvd *d, const char *actor, json_object *body,
                        unsigned *code)
{
    static const char *const fields[] = { "name", "address", NULL };
    const char *name = NULL, *address = NULL;
    json_object *o = NULL;
    int r = cvd_admin_known_fields(body, fields);

    if (r == 0)
        r = cvd_admin_get_string(body, "name", &name);
    if (r >= 0)
        r = cvd_admin_get_string(body, "address", &address);
    if (r >= 0 && !name)
        r = cv_error(-EINVAL, "request body: \"name\" (the node's "
                     "certificate name) is required");
    if (r >= 0)
        r = cvd_node_add(d, actor, name, address, &o);
    if (r < 0)
        return cvd_admin_fail(code, r);
    *code = 201;
    return o;
}

json_object *cvd_admin_nodes(struct cvd *d, const char *actor,
                             const char *method, const char *rest,
                             json_object *body, unsigned *code)
{
    if (!rest[0] || !strcmp(rest, "/")) {
        if (!strcmp(method, "GET"))
            return list(d, code);
        if (!strcmp(method, "POST"))
            return add(d, actor, body, code);
        return cvd_admin_error(code, 405, "/v1/nodes: use GET or POST");
    }
    rest++;
    if (strchr(rest, '/'))
        return cvd_admin_error(code, 404, "no such endpoint under /v1/nodes "
                               "(GET or POST /v1/nodes, DELETE "
                               "/v1/nodes/NAME)");
    if (!strcmp(method, "DELETE"))
        return cvd_admin_deleted(code, cvd_node_remove(d, actor, rest), rest);
    return cvd_admin_error(code, 405, "/v1/nodes/NAME: use DELETE");
}

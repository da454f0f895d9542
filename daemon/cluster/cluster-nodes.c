/* The members as the admin API manages them (node add, list, remove) and
 * placement: which node holds a volume's data. */
#include "cluster.h"
#include "cluster-internal.h"
#include "audit/audit.h"
#include "daemon.h"
#include "core/error.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int no_cluster(void)
{
    return cv_error(-EINVAL, "no cluster: this is a single node (metadata "
                    "in SQLite); nodes are members of a cluster on etcd "
                    "(etcd-endpoints)");
}

/* ---- placement -------------------------------------------------------- */

/* 1 if this node is in v's replica set; 0 if not, or v has none (or the
 * store cannot say: its data is then taken to be elsewhere). */
static int in_replica_set(struct cvd *d, const struct cvd_volume_rec *v)
{
    struct cvd_replica_set s;
    unsigned i;

    if (d->meta->ops->replicas_get(d->meta, v->name, &s) < 0) {
        cv_clear_error();
        return 0;
    }
    for (i = 0; i < s.n; i++)
        if (!strcmp(s.r[i].node, d->cfg.node_name))
            return 1;
    return 0;
}

/* A replicated volume is on every node of its set (v->node is the one
 * it was made on, its first replica). */
int cvd_node_is_local(struct cvd *d, const struct cvd_volume_rec *v)
{
    if (!d->node || !v->node[0] || !strcmp(v->node, d->cfg.node_name))
        return 1;
    return in_replica_set(d, v);
}

void cvd_node_place(struct cvd *d, struct cvd_volume_rec *v)
{
    snprintf(v->node, sizeof v->node, "%s", d->node ? d->cfg.node_name : "");
}

int cvd_node_check_placement(struct cvd *d, const struct cvd_volume_rec *v)
{
    if (cvd_node_is_local(d, v))
        return 0;
    return cv_error(-EREMOTE, "volume %s: its data is on node %s (use its "
                    "admin API)", v->name, v->node);
}

/* Any member may attach a replicated volume: a node of its set must hold
 * an InSync replica (repl/writer-attach.c), another serves it from the
 * in-sync replicas (repl/remote-*.c). */
int cvd_node_check_attach(struct cvd *d, const struct cvd_volume_rec *v)
{
    struct cvd_replica_set s;

    if (cvd_node_is_local(d, v))
        return 0;
    if (d->node && d->meta->ops->replicas_get(d->meta, v->name, &s) == 0)
        return 0;
    cv_clear_error();
    return cv_error(-EREMOTE, "volume %s: its data is on node %s (attach it "
                    "there)", v->name, v->node);
}

/* ---- placement of replicas -------------------------------------------- */

struct candidate {
    char name[CVD_NAME_MAX + 1];
    unsigned replicas;
};

static int by_load(const void *a, const void *b)
{
    const struct candidate *x = a, *y = b;

    if (x->replicas != y->replicas)
        return x->replicas < y->replicas ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int excluded(const char *name, const char (*exclude)[CVD_NAME_MAX + 1],
                    unsigned nexclude)
{
    unsigned i;

    for (i = 0; i < nexclude; i++)
        if (!strcmp(exclude[i], name))
            return 1;
    return 0;
}

/* The Online members not excluded, each with how many replica sets name
 * it; *online: how many members are Online. */
static int candidates(struct cvd *d, const char (*exclude)[CVD_NAME_MAX + 1],
                      unsigned nexclude, struct candidate **out, size_t *n,
                      size_t *online)
{
    struct cvd_node_rec *all = NULL;
    struct cvd_replica_set *sets = NULL;
    size_t nall = 0, nsets = 0, i, j, k = 0;
    unsigned m;
    int r = d->meta->ops->node_list(d->meta, &all, &nall);

    if (r == 0)
        r = d->meta->ops->replicas_list(d->meta, &sets, &nsets);
    *out = r == 0 ? calloc(nall ? nall : 1, sizeof **out) : NULL;
    if (r == 0 && !*out)
        r = cv_error(-ENOMEM, "placement: out of memory");
    *online = 0;
    for (i = 0; r == 0 && i < nall; i++) {
        if (all[i].state != CVD_NODE_MEMBER || !all[i].alive)
            continue;
        ++*online;
        if (excluded(all[i].name, exclude, nexclude))
            continue;
        snprintf((*out)[k].name, sizeof (*out)[k].name, "%s", all[i].name);
        for (j = 0; j < nsets; j++)
            for (m = 0; m < sets[j].n; m++)
                (*out)[k].replicas += !strcmp(sets[j].r[m].node, all[i].name);
        k++;
    }
    free(all);
    free(sets);
    *n = k;
    return r;
}

/* Keeps only the candidates named in within (nwithin of them). */
static size_t keep_within(struct candidate *c, size_t nc,
                          const char (*within)[CVD_NAME_MAX + 1],
                          unsigned nwithin)
{
    size_t i, k = 0;

    for (i = 0; i < nc; i++)
        if (excluded(c[i].name, within, nwithin))
            c[k++] = c[i];
    return k;
}

int cvd_node_place_replicas(struct cvd *d, unsigned n,
                            const char (*exclude)[CVD_NAME_MAX + 1],
                            unsigned nexclude,
                            char (*out)[CVD_NAME_MAX + 1])
{
    return cvd_node_place_replicas_within(d, n, exclude, nexclude, NULL, 0,
                                          out);
}

int cvd_node_place_replicas_within(struct cvd *d, unsigned n,
                                   const char (*exclude)[CVD_NAME_MAX + 1],
                                   unsigned nexclude,
                                   const char (*within)[CVD_NAME_MAX + 1],
                                   unsigned nwithin,
                                   char (*out)[CVD_NAME_MAX + 1])
{
    struct candidate *c = NULL;
    size_t nc = 0, online = 0, i, k = 0;
    int r;

    if (!d->node)
        return cv_error(-EINVAL, "a single node has no replicas");
    r = candidates(d, exclude, nexclude, &c, &nc, &online);
    if (r < 0)
        return r;
    if (within) {
        nc = keep_within(c, nc, within, nwithin);
        online = nc + nexclude;
    }
    /* This node first: the volume is made here, its first replica. */
    for (i = 0; i < nc && k < n; i++)
        if (!strcmp(c[i].name, d->cfg.node_name))
            snprintf(out[k++], CVD_NAME_MAX + 1, "%s", c[i].name);
    qsort(c, nc, sizeof *c, by_load);
    for (i = 0; i < nc && k < n; i++)
        if (strcmp(c[i].name, d->cfg.node_name))
            snprintf(out[k++], CVD_NAME_MAX + 1, "%s", c[i].name);
    free(c);
    if (k < n)
        return cv_error(-ENOSPC, "%u replica%s need%s %u Online node%s%s; "
                        "the cluster has %zu Online%s", n, n == 1 ? "" : "s",
                        n == 1 ? "s" : "", n + nexclude,
                        n + nexclude == 1 ? "" : "s",
                        nexclude ? " (with those it has)" : "", online,
                        nexclude ? "" : " (each replica is on its own node)");
    return 0;
}

/* ---- node list -------------------------------------------------------- */

const char *cluster_state_name(const struct cvd_node_rec *r)
{
    switch (r->state) {
    case CVD_NODE_JOINING: return "Joining";
    case CVD_NODE_REMOVED: return "Removed";
    default: return r->alive ? "Online" : "Offline";
    }
}

static json_object *time_json(int64_t t)
{
    char buf[32];

    if (!t)
        return NULL;
    cvd_audit_format_time(t, buf, sizeof buf);
    return json_object_new_string(buf);
}

int cluster_node_json(struct cvd *d, const struct cvd_node_rec *r,
                      const struct cvd_volume_rec *vols, size_t nvols,
                      json_object **out)
{
    json_object *o, *g;
    uint32_t *gens = NULL;
    size_t n = 0, i;
    int64_t count = 0;
    int rc = d->meta->ops->kek_list(d->meta, r->name, &gens, &n);

    if (rc < 0)
        return rc;
    g = json_object_new_array();
    for (i = 0; i < n; i++)
        json_object_array_add(g, json_object_new_int64(gens[i]));
    free(gens);
    for (i = 0; i < nvols; i++)
        count += !strcmp(vols[i].node, r->name);
    o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(r->name));
    json_object_object_add(o, "address", json_object_new_string(r->address));
    json_object_object_add(o, "state",
                           json_object_new_string(cluster_state_name(r)));
    json_object_object_add(o, "lastSeen", time_json(r->last_seen));
    json_object_object_add(o, "added", time_json(r->added));
    json_object_object_add(o, "joined", time_json(r->joined));
    json_object_object_add(o, "removed", time_json(r->removed));
    json_object_object_add(o, "kekGenerations", g);
    json_object_object_add(o, "volumes", json_object_new_int64(count));
    json_object_object_add(o, "self", json_object_new_boolean(
                               !strcmp(r->name, d->cfg.node_name)));
    *out = o;
    return 0;
}

static json_object *etcd_json(struct cvd *d)
{
    struct cvd_meta_status st;
    json_object *o = json_object_new_object();

    memset(&st, 0, sizeof st);
    d->meta->ops->status(d->meta, &st);
    json_object_object_add(o, "reachable", json_object_new_boolean(
                               st.reachable));
    json_object_object_add(o, "endpoint", json_object_new_string(
                               st.endpoint));
    json_object_object_add(o, "since", time_json(st.since));
    json_object_object_add(o, "error", st.error[0] ?
                           json_object_new_string(st.error) : NULL);
    return o;
}

static int list_nodes(struct cvd *d, json_object **out)
{
    struct cvd_node_rec *all = NULL;
    struct cvd_volume_rec *vols = NULL;
    size_t n = 0, nv = 0, i;
    json_object *arr = json_object_new_array(), *o;
    int r = d->meta->ops->node_list(d->meta, &all, &n);

    if (r == 0)
        r = d->meta->ops->volume_list(d->meta, &vols, &nv);
    for (i = 0; r == 0 && i < n; i++) {
        r = cluster_node_json(d, &all[i], vols, nv, &o);
        if (r == 0)
            json_object_array_add(arr, o);
    }
    free(all);
    free(vols);
    if (r < 0) {
        json_object_put(arr);
        return r;
    }
    *out = arr;
    return 0;
}

/* etcd out of reach: the last list this node made, marked stale, with
 * why; the answer is still 200 (node list says so). */
int cvd_node_list(struct cvd *d, json_object **out)
{
    struct cvd_node *n = d->node;
    json_object *nodes = NULL, *o;
    int r, stale = 0;

    if (!n)
        return no_cluster();
    r = list_nodes(d, &nodes);
    pthread_mutex_lock(&n->lock);
    if (r == 0) {
        json_object_put(n->last_list);
        n->last_list = json_object_get(nodes);
    } else if (r == -ENOTCONN) {
        cvd_warn("node list: %s (answering with the last list)",
                 cv_last_error());
        nodes = n->last_list ? json_object_get(n->last_list)
                             : json_object_new_array();
        stale = 1;
        r = 0;
    }
    pthread_mutex_unlock(&n->lock);
    if (r < 0)
        return r;
    o = json_object_new_object();
    json_object_object_add(o, "cluster", json_object_new_string(n->id));
    json_object_object_add(o, "nodes", nodes);
    json_object_object_add(o, "stale", json_object_new_boolean(stale));
    json_object_object_add(o, "etcd", etcd_json(d));
    *out = o;
    return 0;
}

int cvd_node_online(struct cvd *d, struct cvd_node_rec **out, size_t *count)
{
    struct cvd_node_rec *all = NULL;
    size_t n = 0, i, k = 0;
    int r;

    *out = NULL;
    *count = 0;
    if (!d->node)
        return no_cluster();
    r = d->meta->ops->node_list(d->meta, &all, &n);
    if (r < 0)
        return r;
    for (i = 0; i < n; i++)
        if (all[i].state == CVD_NODE_MEMBER && all[i].alive &&
            strcmp(all[i].name, d->cfg.node_name))
            all[k++] = all[i];
    *out = all;
    *count = k;
    return 0;
}

/* ---- add and remove --------------------------------------------------- */

/* "HOST:PORT", the port a number 1..65535, the host not empty. */
static int check_address(const char *name, const char *address)
{
    const char *colon = address ? strrchr(address, ':') : NULL;
    char *end;
    long port;

    if (!address || !*address)
        return cv_error(-EINVAL, "node %s: an address (HOST:PORT, its peer "
                        "port) is required", name);
    if (strlen(address) > CVD_ADDRESS_MAX)
        return cv_error(-EINVAL, "node %s: address longer than %d bytes",
                        name, CVD_ADDRESS_MAX);
    if (!colon || colon == address)
        return cv_error(-EINVAL, "node %s: address \"%s\" is not HOST:PORT",
                        name, address);
    port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || port < 1 || port > 65535)
        return cv_error(-EINVAL, "node %s: address \"%s\": the port is not "
                        "a number from 1 to 65535", name, address);
    return 0;
}

int cvd_node_add(struct cvd *d, const char *actor, const char *name,
                 const char *address, json_object **out)
{
    struct cvd_node_rec rec = { 0 };
    char object[CVD_NAME_MAX + 8];
    int r;

    if (!d->node)
        return no_cluster();
    if (!name || !cvd_name_valid(name))
        return cv_error(-EINVAL, "node \"%.64s\": not a valid name (letters, "
                        "digits, '.', '_', '-'; at most %d; its "
                        "certificate's name)", name ? name : "", CVD_NAME_MAX);
    r = check_address(name, address);
    if (r < 0)
        return r;
    snprintf(rec.name, sizeof rec.name, "%s", name);
    snprintf(rec.address, sizeof rec.address, "%s", address);
    rec.state = CVD_NODE_JOINING;
    rec.added = (int64_t)time(NULL);
    snprintf(object, sizeof object, "node/%s", name);
    r = d->meta->ops->node_add(d->meta, &rec);
    if (r < 0) {
        cvd_audit(d->audit, actor, "node.add", object, 0, "%s",
                  cv_last_error());
        return r;
    }
    cvd_info("cluster: node %s added (%s); it joins when it starts", name,
             address);
    cvd_audit(d->audit, actor, "node.add", object, 1, "address %s", address);
    return out ? cluster_node_json(d, &rec, NULL, 0, out) : 0;
}

/* -EBUSY naming a volume placed on the node, if any. */
static int check_no_volumes(struct cvd *d, const char *name)
{
    struct cvd_volume_rec *vols = NULL;
    size_t nv = 0, i, count = 0;
    const char *first = NULL;
    int r = d->meta->ops->volume_list(d->meta, &vols, &nv);

    for (i = 0; r == 0 && i < nv; i++)
        if (!strcmp(vols[i].node, name) && count++ == 0)
            first = vols[i].name;
    if (r == 0 && count)
        r = cv_error(-EBUSY, "node %s: volume %s%s is placed on it (its data "
                     "is there); delete %s first", name, first,
                     count > 1 ? " and others" : "",
                     count > 1 ? "them" : "it");
    free(vols);
    return r;
}

int cvd_node_remove(struct cvd *d, const char *actor, const char *name)
{
    struct cvd_node_rec rec;
    char object[CVD_NAME_MAX + 8];
    int r;

    if (!d->node)
        return no_cluster();
    if (!name || !cvd_name_valid(name))
        return cv_error(-ENOENT, "node \"%.64s\": no such node",
                        name ? name : "");
    snprintf(object, sizeof object, "node/%s", name);
    r = d->meta->ops->node_get(d->meta, name, &rec);
    if (r == 0 && rec.state == CVD_NODE_REMOVED)
        r = cv_error(-ENOENT, "node %s: already removed", name);
    if (r == 0 && !strcmp(name, d->cfg.node_name))
        r = cv_error(-EBUSY, "node %s: this is the node answering; remove it "
                     "through another member", name);
    if (r == 0)
        r = check_no_volumes(d, name);
    if (r == 0) {
        rec.state = CVD_NODE_REMOVED;
        rec.removed = (int64_t)time(NULL);
        r = d->meta->ops->node_update(d->meta, &rec);
    }
    if (r < 0) {
        cvd_audit(d->audit, actor, "node.remove", object, 0, "%s",
                  cv_last_error());
        return r;
    }
    cvd_info("cluster: node %s removed; its peer connections are refused",
             name);
    cvd_audit(d->audit, actor, "node.remove", object, 1, NULL);
    return 0;
}

/* What a single node's store answers to the cluster operations of the
 * metadata interface: it has no cluster, so each is refused, saying so,
 * and the store is always reachable. */
#include "meta/meta.h"
#include "meta-sqlite.h"
#include "core/error.h"

#include <errno.h>
#include <string.h>
#include <time.h>

static int single(const char *what)
{
    return cv_error(-EOPNOTSUPP, "%s: this node is a single node with "
                    "SQLite metadata (start it with --etcd-endpoints to "
                    "make it part of a cluster)", what);
}

int cvd_sq_found(struct cvd_meta *m, const struct cvd_cluster_rec *c,
                    const struct cvd_node_rec *self,
                    const struct cvd_kek_rec *sealkey)
{
    (void)m, (void)c, (void)self, (void)sealkey;
    return single("founding a cluster");
}

int cvd_sq_node_add(struct cvd_meta *m, const struct cvd_node_rec *n)
{
    (void)m, (void)n;
    return single("node add");
}

int cvd_sq_node_get(struct cvd_meta *m, const char *name,
                       struct cvd_node_rec *out)
{
    (void)m, (void)name, (void)out;
    return single("node records");
}

int cvd_sq_node_list(struct cvd_meta *m, struct cvd_node_rec **out,
                        size_t *n)
{
    (void)m, (void)out, (void)n;
    return single("node list");
}

int cvd_sq_node_update(struct cvd_meta *m, struct cvd_node_rec *n)
{
    (void)m, (void)n;
    return single("node records");
}

int cvd_sq_sealkey_get(struct cvd_meta *m, const char *node,
                          struct cvd_kek_rec *out)
{
    (void)m, (void)node, (void)out;
    return single("the cluster seal key");
}

int cvd_sq_sealkey_put(struct cvd_meta *m, const struct cvd_kek_rec *k)
{
    (void)m, (void)k;
    return single("the cluster seal key");
}

int cvd_sq_kek_put(struct cvd_meta *m, const struct cvd_kek_rec *k)
{
    (void)m, (void)k;
    return single("a KEK copy for another node");
}

int cvd_sq_lease_grant(struct cvd_meta *m, int64_t ttl, int64_t *id)
{
    (void)m, (void)ttl, (void)id;
    return single("leases");
}

int cvd_sq_lease_keepalive(struct cvd_meta *m, int64_t id)
{
    (void)m, (void)id;
    return single("leases");
}

int cvd_sq_lease_revoke(struct cvd_meta *m, int64_t id)
{
    (void)m, (void)id;
    return single("leases");
}

int cvd_sq_alive_put(struct cvd_meta *m, const char *node, int64_t lease,
                        const char *json)
{
    (void)m, (void)node, (void)lease, (void)json;
    return single("liveness");
}

int cvd_sq_lock_take(struct cvd_meta *m, const char *lock, int64_t lease,
                        const char *holder, char held_by[CVD_NAME_MAX + 1])
{
    (void)m, (void)lock, (void)lease, (void)holder, (void)held_by;
    return single("cluster locks");
}

int cvd_sq_lock_release(struct cvd_meta *m, const char *lock,
                           int64_t lease)
{
    (void)m, (void)lock, (void)lease;
    return single("cluster locks");
}

int cvd_sq_watch(struct cvd_meta *m, cvd_meta_watch_fn cb, void *arg)
{
    (void)m, (void)cb, (void)arg;
    return single("watches");
}

int cvd_sq_audit_append(struct cvd_meta *m, const char *node,
                           const char *json_line)
{
    (void)m, (void)node, (void)json_line;
    return single("the cluster-wide audit log");
}

int cvd_sq_audit_read(struct cvd_meta *m, int64_t since,
                         int (*cb)(void *arg, json_object *ev), void *arg)
{
    (void)m, (void)since, (void)cb, (void)arg;
    return single("the cluster-wide audit log");
}

/* A single node keeps one copy of each volume: no replica sets, and no
 * writer to take turns with. */
static int no_replicas(const char *volume)
{
    return cv_error(-EOPNOTSUPP, "volume %s: a single node has no replicas "
                    "(replication needs a cluster: start the node with "
                    "--etcd-endpoints)", volume);
}

int cvd_sq_replicas_get(struct cvd_meta *m, const char *volume,
                        struct cvd_replica_set *out)
{
    (void)m;
    memset(out, 0, sizeof *out);
    return no_replicas(volume);
}

int cvd_sq_replicas_put(struct cvd_meta *m, struct cvd_replica_set *s)
{
    (void)m;
    return no_replicas(s->volume);
}

int cvd_sq_replicas_remove(struct cvd_meta *m, const char *volume)
{
    (void)m;
    return no_replicas(volume);
}

int cvd_sq_replicas_list(struct cvd_meta *m, struct cvd_replica_set **out,
                         size_t *n)
{
    (void)m;
    *out = NULL;
    *n = 0;
    return 0;
}

int cvd_sq_attach_take(struct cvd_meta *m, const char *volume,
                       const char *node, int64_t lease, uint64_t *epoch,
                       struct cvd_replica_set *prev)
{
    (void)m, (void)node, (void)lease, (void)prev;
    *epoch = 0;
    return no_replicas(volume);
}

int cvd_sq_attach_get(struct cvd_meta *m, const char *volume,
                      struct cvd_attach_rec *out)
{
    (void)m;
    memset(out, 0, sizeof *out);
    return no_replicas(volume);
}

int cvd_sq_attach_release(struct cvd_meta *m, const char *volume,
                          const char *node, uint64_t epoch, int clean)
{
    (void)m, (void)node, (void)epoch, (void)clean;
    return no_replicas(volume);
}

void cvd_sq_status(struct cvd_meta *m, struct cvd_meta_status *out)
{
    (void)m;
    memset(out, 0, sizeof *out);
    out->reachable = 1;
}

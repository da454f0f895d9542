/* cryptvold --migrate-to-etcd (cryptvol cluster migrate --to-etcd): a
 * single node's SQLite metadata moved into an empty etcd prefix, founding
 * a cluster whose first member is this node (docs/cluster.md, "From one
 * node to a cluster"). */
#ifndef CRYPTVOLD_MIGRATE_H
#define CRYPTVOLD_MIGRATE_H

struct cvd;

/* d->cfg names the data directory (locked by the caller: no daemon runs
 * on it), etcd, node-name, peer-listen and peer-tls-dir.  Refuses, saying
 * why, when the prefix is not empty, the node's certificate is not
 * node-name, a rotation is under way, or the KEKs are not sealed for
 * node-name.  Founds the cluster with the node's cluster record, copies
 * the KEK generations (sealed as they are), classes, secrets (unsealed
 * with the node key, sealed again with the new cluster seal key),
 * volumes (placed on this node) and access lists, then renames meta.db
 * to meta.db.migrated.  Progress on stderr when it is a terminal. */
int cvd_migrate_to_etcd(struct cvd *d);

#endif

/* This node as a member of a cluster on etcd: founding or joining it,
 * getting the cluster's seal key and KEKs, liveness (an etcd lease), the
 * store's watch and who listens to it, and where a volume's data is.
 *
 * A single node (SQLite) has none of this: d->node is NULL, every call
 * below is a no-op or answers that there is no cluster (docs/cluster.md).
 *
 * (The header guard is not CRYPTVOLD_CLUSTER_H: keys/cluster-kek.h, the
 * cluster-level encryption, has that one.) */
#ifndef CRYPTVOLD_NODE_CLUSTER_H
#define CRYPTVOLD_NODE_CLUSTER_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "meta/meta.h"

struct cvd;
struct cvd_node;

#define CVD_SEAL_KEY_LEN 32

/* Founds a cluster in the empty store m, in one transaction: the cluster
 * record c (a new id when c->id is ""; its rev and rotation_node are
 * cleared), this node (cfg.node_name at cfg.peer_listen) its first Member,
 * and a new random seal key sealed by its node key, which *seal_key gets
 * (CVD_SEAL_KEY_LEN bytes of locked memory, the caller's).  -EEXIST when m
 * already has a cluster.  What cvd_node_start does on an empty prefix, and
 * what the migration of a single node (daemon/migrate/) starts with. */
int cvd_node_found(struct cvd *d, struct cvd_meta *m,
                   struct cvd_cluster_rec *c, unsigned char **seal_key);

/* After the etcd store is open and before volumes are recovered: checks
 * that --node-name is this node's certificate name, founds the cluster on
 * an empty prefix or joins it (it must have been added), gets the seal key
 * (installs d->meta->seal_key) and the KEKs, starts the peer port, the
 * lease and the watch.  Refuses to start, saying why, when this node is
 * not a member, is Removed, or its certificate name is not --node-name.
 * A node that must join but finds no member Online starts anyway and
 * keeps trying in the background (cvd_node_ready says why it is not
 * ready).  0 and nothing done on a single node. */
int cvd_node_start(struct cvd *d);
/* Stops the threads, revokes the lease (the node is Offline at once) and
 * stops the peer port.  Safe when not started.  cvd_node_free, after the
 * store is closed (its watch thread calls into this module until then),
 * wipes the seal key and frees. */
void cvd_node_stop(struct cvd *d);
void cvd_node_free(struct cvd *d);

/* At the end of the daemon's start, once volumes are recovered: from now
 * on events make this node retry its pending volumes (and it does once
 * now). */
int cvd_node_serve(struct cvd *d);

/* 0 when this node may serve requests (a single node, or a member that
 * has the keys); else -EAGAIN, "node n2 is joining: ..." (503). */
int cvd_node_ready(struct cvd *d);

/* The watch's listeners register here (pending volumes, rotation):
 * called on the cluster's event thread for each event; must not block
 * long.  -EOPNOTSUPP on a single node. */
int cvd_node_listen(struct cvd *d, cvd_meta_watch_fn cb, void *arg);

/* Placement.  A volume placed on another node: -EREMOTE, "volume db1: its
 * data is on node n2 (use its admin API)"; 0 if it is ours (or a single
 * node, or a record with no node: made before the cluster). */
int cvd_node_check_placement(struct cvd *d, const struct cvd_volume_rec *v);
/* The same for an NBD attach: "... (attach it there)". */
int cvd_node_check_attach(struct cvd *d, const struct cvd_volume_rec *v);
/* 1 if this node holds v's data (what loops over every volume test). */
int cvd_node_is_local(struct cvd *d, const struct cvd_volume_rec *v);
/* A new volume record: placed on this node (v->node; "" on one node). */
void cvd_node_place(struct cvd *d, struct cvd_volume_rec *v);

/* node add / remove / list (admin API).  -EINVAL "no cluster" on a single
 * node.  remove: -EBUSY while a volume is placed on it (naming one). */
int cvd_node_add(struct cvd *d, const char *actor, const char *name,
                 const char *address, json_object **out);
int cvd_node_remove(struct cvd *d, const char *actor, const char *name);
/* {"nodes": [...], "etcd": {...}} as docs/admin-api.md shows it. */
int cvd_node_list(struct cvd *d, json_object **out);

/* This node's lease (what its liveness key and the KEK rotation's lock
 * are attached to), or 0 before it has one and on a single node.  It
 * changes when an expired lease is replaced. */
int64_t cvd_node_lease(struct cvd *d);

/* Online members other than this one, in name order, for peer calls
 * (rotation): *out one malloc'ed array (name, address, alive set). */
int cvd_node_online(struct cvd *d, struct cvd_node_rec **out, size_t *n);

/* Fencing (repl/): how many more milliseconds this node's lease is surely
 * live: the lease's TTL after the start of the last keepalive etcd
 * answered, less now (CLOCK_MONOTONIC); <= 0 when it may have expired (or
 * no lease yet).  A writer stops writing before this reaches 0. */
int64_t cvd_node_lease_valid_ms(struct cvd *d);

/* Placement of a replicated volume: n distinct nodes, this node first,
 * then the Online members holding the fewest replicas (ties by name),
 * skipping those in exclude (nexclude may be 0).  -ENOSPC, naming how
 * many are Online, when there are not enough. */
int cvd_node_place_replicas(struct cvd *d, unsigned n,
                            const char (*exclude)[CVD_NAME_MAX + 1],
                            unsigned nexclude,
                            char (*out)[CVD_NAME_MAX + 1]);
/* The same among the nodes named in within only (a clone's replicas go
 * where its parent has an InSync replica); within NULL: any.  The
 * -ENOSPC message then counts the Online nodes of within. */
int cvd_node_place_replicas_within(struct cvd *d, unsigned n,
                                   const char (*exclude)[CVD_NAME_MAX + 1],
                                   unsigned nexclude,
                                   const char (*within)[CVD_NAME_MAX + 1],
                                   unsigned nwithin,
                                   char (*out)[CVD_NAME_MAX + 1]);

#endif

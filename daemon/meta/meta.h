/* The metadata store: volumes, secrets, volume classes, and the cluster's
 * encryption state and KEK generations, behind one interface so that a
 * cluster can keep them in etcd where a single node keeps them in SQLite.
 *
 * A backend stores records and sealed blobs; it never sees a secret's
 * value.  Sealing (AES-256-GCM under the node key, lib/crypto/seal.h) happens here,
 * above the backend, so every backend stores secrets the same way.
 *
 * Every operation is one transaction, safe from any thread.  Errors are a
 * negative errno with a message naming the record: -ENOENT (no such
 * record), -EEXIST (the name is taken), -EBUSY (used, or changed by someone
 * else), others for the store itself. */
#ifndef CRYPTVOLD_META_H
#define CRYPTVOLD_META_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "core/secret-file.h"

#define CVD_NAME_MAX 64

/* Volume states.  A volume is served only when "ready" (or "growing");
 * the others mark work in progress, which the next start finishes or
 * undoes when the daemon died in the middle of it. */
#define CVD_VOL_CREATING "creating"
#define CVD_VOL_READY    "ready"
#define CVD_VOL_RESIZING "resizing"     /* shrinking: never served */
/* An online grow: still served, at the recorded (old) size until the
 * record commits the new one; the image may already be larger. */
#define CVD_VOL_GROWING  "growing"
#define CVD_VOL_DELETING "deleting"
/* Waiting for its secret (wait_secret) to be created; no file yet. */
#define CVD_VOL_PENDING  "pending"
/* Moving to another secret: wait_secret names the new one. */
#define CVD_VOL_REKEYING "rekeying"
/* Being filled from a LUKS image file (volume import): never served. */
#define CVD_VOL_IMPORTING "importing"
/* Being filled from a backup (backup restore): never served. */
#define CVD_VOL_RESTORING "restoring"
/* Its head being replaced by a snapshot's view: never served. */
#define CVD_VOL_ROLLING_BACK "rollingback"

#define CVD_TEMPLATE_MAX 128

struct cvd_volume_rec {
    char name[CVD_NAME_MAX + 1];
    char uuid[40];              /* LUKS UUID; "" for plaintext */
    uint64_t size;              /* effective bytes */
    char type[12];              /* "luks2", "luks1", "plaintext" */
    char cipher[64];            /* "aes-xts-plain64", "none" */
    unsigned key_bits;          /* XTS key bits: 512 (AES-256), 256; 0 */
    unsigned sector_size;
    uint64_t data_offset;       /* bytes before the data segment */
    char secret[CVD_NAME_MAX + 1];  /* "" for plaintext */
    char path[PATH_MAX];        /* its chain directory (docs/store.md) */
    char state[16];
    int64_t created;            /* seconds since the epoch */
    char class_name[CVD_NAME_MAX + 1];  /* "" for none */
    /* pending: the secret it waits for; rekeying: the new secret. */
    char wait_secret[CVD_NAME_MAX + 1];
    /* The KEK generation its cryptvol-kek token is wrapped with, 0 for a
     * volume without one.  An index for rotation: the token is the truth. */
    uint32_t kek_gen;
    /* A clone: "VOL@SNAP", the snapshot it reads through until it is
     * flattened; "" for none. */
    char parent[2 * CVD_NAME_MAX + 2];
    /* Placement: the node whose store holds its layers ("" on a single
     * node: this one).  Until replication, only that node serves it. */
    char node[CVD_NAME_MAX + 1];
    /* The store's revision of this record when it was read (etcd's
     * mod_revision; 0 from SQLite, or for a record not read from a store).
     * An update of a record with rev != 0 applies only if the stored one
     * still has that revision (-EBUSY if not): no lost updates.  A
     * successful volume_update, secret_update or node_update writes the
     * record's new revision back into rev, so that the caller's record can
     * be updated again. */
    int64_t rev;
};

/* A volume class (Longhorn's StorageClass parameters): how its volumes
 * are encrypted and unlocked. */
struct cvd_class_rec {
    char name[CVD_NAME_MAX + 1];
    int encrypted;              /* volumes get a user-secret keyslot */
    char secret[CVD_NAME_MAX + 1];          /* global: one for all, or "" */
    char secret_template[CVD_TEMPLATE_MAX + 1]; /* per volume, or "" */
    char type[12];              /* "luks2", "luks1" */
    unsigned aes_bits;          /* 256 or 128 */
    unsigned replicas;
    int64_t created;
    int64_t rev;                /* as in cvd_volume_rec */
};

/* Cluster-level encryption (Lightbits' model).  Strings are the names
 * `cryptvol cluster info` shows. */
#define CVD_ENC_DISABLED "Disabled"
#define CVD_ENC_ENABLING "Enabling"
#define CVD_ENC_ENABLED  "Enabled"
#define CVD_ROT_NONE       "NoRotation"
#define CVD_ROT_DISTRIBUTE "DistributingKEK"
#define CVD_ROT_ENCRYPT    "EncryptingDEKs"

struct cvd_cluster_rec {
    char id[40];                /* made once, at first start */
    char encryption[16];        /* CVD_ENC_* */
    char protection[16];        /* "tpm", "software", "" while disabled */
    uint32_t current_gen;       /* new tokens are wrapped with this */
    char rotation[20];          /* CVD_ROT_* */
    uint32_t target_gen;        /* the generation a rotation moves to */
    int64_t rotation_started;
    int64_t rotation_finished;
    /* A cluster on etcd: the node running the rotation ("" when none or
     * on a single node), so `cluster info` says the same on every node. */
    char rotation_node[CVD_NAME_MAX + 1];
    int64_t rev;                /* as in cvd_volume_rec */
};

/* One KEK generation as one node keeps it: sealed by that node's TPM or
 * node key, never in the clear. */
struct cvd_kek_rec {
    uint32_t gen;
    char node[CVD_NAME_MAX + 1];
    char protection[16];
    int64_t created;
    unsigned char *sealed;      /* get only; malloc'ed */
    size_t sealed_len;
};

struct cvd_secret_rec {
    char name[CVD_NAME_MAX + 1];
    /* The volume this secret was generated for (deleted with it), or "". */
    char owner[CVD_NAME_MAX + 1];
    int64_t created;
    unsigned char *sealed;      /* get only; malloc'ed; NULL in lists */
    size_t sealed_len;
    int64_t rev;                /* as in cvd_volume_rec */
};

/* A member of a cluster on etcd (daemon/cluster/).  The stored state is
 * Joining (added by `node add`, has not received the keys yet), Member,
 * or Removed; Online and Offline are what `node list` makes of a Member
 * from its liveness key (alive). */
enum cvd_node_state { CVD_NODE_JOINING, CVD_NODE_MEMBER, CVD_NODE_REMOVED };
#define CVD_ADDRESS_MAX 255
struct cvd_node_rec {
    char name[CVD_NAME_MAX + 1];    /* its certificate's CN or SAN DNS */
    char address[CVD_ADDRESS_MAX + 1];  /* its peer port, "HOST:PORT" */
    enum cvd_node_state state;
    int64_t added, joined, removed; /* seconds since the epoch; 0: not yet */
    /* Filled by node_get and node_list, not stored with the record: its
     * liveness key exists (its lease is live), and when it last wrote it. */
    int alive;
    int64_t last_seen;
    int64_t rev;                    /* as in cvd_volume_rec */
};

/* What a watch reports (watch below): which kind of record changed. */
enum cvd_meta_event {
    CVD_META_EV_VOLUME, CVD_META_EV_SECRET, CVD_META_EV_CLASS,
    CVD_META_EV_CLUSTER, CVD_META_EV_KEK, CVD_META_EV_SEALKEY,
    CVD_META_EV_NODE, CVD_META_EV_ALIVE, CVD_META_EV_LOCK,
    /* A volume's replica set (name: the volume), its attach record. */
    CVD_META_EV_REPLICAS, CVD_META_EV_ATTACH,
    /* The watch was cut and is back: events may have been missed, so a
     * listener re-reads what it cares about.  name is "". */
    CVD_META_EV_RESYNC,
};
/* Called on the watch thread, in the store's order; must not block long
 * (hand work to another thread).  name: the record's name (a KEK: "GEN/NODE",
 * a lock: its name); deleted: the record is gone. */
typedef void (*cvd_meta_watch_fn)(void *arg, enum cvd_meta_event ev,
                                  const char *name, int deleted);

/* How the store is reached (node list, cvd_meta_ops.status). */
struct cvd_meta_status {
    int reachable;              /* the last request got an answer */
    int64_t since;              /* ... since then (seconds since the epoch) */
    char endpoint[256];         /* the one answering or last tried; "" SQLite */
    char error[256];            /* why it is unreachable, "" if it is not */
};

/* One entry of an NBD access list (volumes/access.h says what the
 * identities mean; the store keeps them as text). */
enum cvd_access_target { CVD_ACCESS_VOLUME, CVD_ACCESS_CLASS };
#define CVD_IDENTITY_TEXT_MAX 300
struct cvd_access_rec {
    char identity[CVD_IDENTITY_TEXT_MAX + 1];   /* "cn:tenant-a" */
    int allow;                                  /* 0: a deny entry */
};

/* Replication (daemon/repl/, docs/replication.md).  A volume of more than
 * one replica has a replica set: which nodes hold its layer chain, in what
 * state, the minimum of in-sync replicas writes need, and its epoch, which
 * each attach raises (fencing).  A volume without a set (every volume on a
 * single node, and a cluster's 1-replica volumes) lives on v->node alone,
 * as before.  The set is its own record (etcd: PREFIX/replicas/VOL) so that
 * replica states change without racing the volume record's updates. */
#define CVD_MAX_REPLICAS 5
enum cvd_replica_state {
    CVD_REPLICA_INSYNC,         /* has every acknowledged write */
    CVD_REPLICA_OUTOFSYNC,      /* missed writes: its regions are recorded */
    CVD_REPLICA_REBUILDING,     /* new, or its record is gone: full copy */
    CVD_REPLICA_FAILED,         /* cannot be used (error says why) */
};
/* "InSync", "OutOfSync", "Rebuilding", "Failed"; parse: -EINVAL. */
const char *cvd_replica_state_name(enum cvd_replica_state s);
int cvd_replica_state_parse(const char *s, enum cvd_replica_state *out);

struct cvd_replica {
    char node[CVD_NAME_MAX + 1];
    enum cvd_replica_state state;
    int64_t since;              /* when it entered state (seconds) */
    /* What the writer last recorded: bytes of regions it misses, and a
     * resync or rebuild's progress (0/0: none running). */
    uint64_t behind;
    uint64_t sync_done, sync_total;
    char error[160];            /* why it is OutOfSync or Failed; "" */
};
struct cvd_replica_set {
    char volume[CVD_NAME_MAX + 1];
    unsigned want;              /* replicas asked for (N) */
    unsigned min;               /* in-sync replicas a write needs */
    uint64_t epoch;             /* raised by every attach_take */
    /* Raised by every change of the chain's shape (snapshot, rollback,
     * merge, flatten) while some replica is not InSync: a replica whose
     * shape_gen differs from the set's cannot be resynced, only rebuilt. */
    uint64_t shape_gen;
    unsigned n;
    struct cvd_replica r[CVD_MAX_REPLICAS];
    /* The writer that held it last and whether it let go cleanly (flushed
     * and released); an unclean end makes the next writer resync the
     * regions the last one had writes in flight in (its activity log). */
    char last_writer[CVD_NAME_MAX + 1];
    int clean;
    int64_t rev;                /* as in cvd_volume_rec */
    /* Not stored.  Non-zero: replicas_put succeeds only while the attach
     * record is on this lease (the writer's), in the same txn, else
     * -ESTALE: a writer whose update was held past its lease's end (a
     * partition healing) must not change the set of the next writer. */
    int64_t writer_lease;
};
/* Who writes a volume now: the attach record, attached to that node's
 * lease, so it goes when the node does. */
struct cvd_attach_rec {
    char volume[CVD_NAME_MAX + 1];
    char node[CVD_NAME_MAX + 1];
    uint64_t epoch;
    int64_t lease;
    int64_t since;
};

struct cvd_meta;

struct cvd_meta_ops {
    const char *kind;
    /* Adds v and, when s is not NULL, the secret generated for it, both or
     * neither.  -EEXIST if either name is taken, -ENOENT if v->secret
     * or v->class_name names nothing. */
    int (*volume_add)(struct cvd_meta *m, const struct cvd_volume_rec *v,
                      const struct cvd_secret_rec *s);
    int (*volume_get)(struct cvd_meta *m, const char *name,
                      struct cvd_volume_rec *out);
    /* Replaces v's mutable fields (uuid, size, cipher, key_bits,
     * sector_size, data_offset, secret, path, state, wait_secret, kek_gen,
     * parent) if the stored state is still
     * expect_state: -EBUSY if not, so two requests cannot both start work
     * on one volume. */
    int (*volume_update)(struct cvd_meta *m, struct cvd_volume_rec *v,
                         const char *expect_state);
    /* Removes the volume and the secrets it owns that no volume uses. */
    int (*volume_remove)(struct cvd_meta *m, const char *name);
    /* All volumes in name order; *out is one malloc'ed array. */
    int (*volume_list)(struct cvd_meta *m, struct cvd_volume_rec **out,
                       size_t *n);
    int (*secret_add)(struct cvd_meta *m, const struct cvd_secret_rec *s);
    int (*secret_get)(struct cvd_meta *m, const char *name,
                      struct cvd_secret_rec *out);
    /* -EBUSY while a volume uses it (as its secret or its wait_secret);
     * used_by gets that volume's name. */
    int (*secret_remove)(struct cvd_meta *m, const char *name,
                         char used_by[CVD_NAME_MAX + 1]);
    int (*secret_list)(struct cvd_meta *m, struct cvd_secret_rec **out,
                       size_t *n);
    /* Replaces the sealed value of the secret s->name (nothing else):
     * -ENOENT if there is none.  No volume is touched. */
    int (*secret_update)(struct cvd_meta *m, struct cvd_secret_rec *s);

    /* -EEXIST if the name is taken.  c->secret need not exist yet: the
     * volumes of the class wait for it in state pending. */
    int (*class_add)(struct cvd_meta *m, const struct cvd_class_rec *c);
    int (*class_get)(struct cvd_meta *m, const char *name,
                     struct cvd_class_rec *out);
    /* -EBUSY while a volume uses it; used_by gets that volume's name. */
    int (*class_remove)(struct cvd_meta *m, const char *name,
                        char used_by[CVD_NAME_MAX + 1]);
    int (*class_list)(struct cvd_meta *m, struct cvd_class_rec **out,
                      size_t *n);

    /* The cluster record; a store that never had one answers Disabled. */
    int (*cluster_get)(struct cvd_meta *m, struct cvd_cluster_rec *out);
    /* Replaces the cluster record if it still equals expect (-EBUSY if
     * not), storing kek (when not NULL) in the same transaction, so a new
     * generation and the state that names it are stored together. */
    int (*cluster_update)(struct cvd_meta *m, const struct cvd_cluster_rec *c,
                          const struct cvd_cluster_rec *expect,
                          const struct cvd_kek_rec *kek);
    /* The sealed KEK of generation gen for node; -ENOENT if none. */
    int (*kek_get)(struct cvd_meta *m, uint32_t gen, const char *node,
                   struct cvd_kek_rec *out);
    /* Generations stored for node, ascending (*gens malloc'ed). */
    int (*kek_list)(struct cvd_meta *m, const char *node, uint32_t **gens,
                    size_t *n);
    /* Removes generations below keep_from that no volume's kek_gen names. */
    int (*kek_prune)(struct cvd_meta *m, uint32_t keep_from);
    /* Sets kek_gen of the named volumes, in one transaction. */
    int (*volume_set_kek_gen)(struct cvd_meta *m, const char *const *names,
                              size_t n, uint32_t gen);
    /* The access list of a volume or class, in identity order (*out
     * malloc'ed, NULL when empty).  -ENOENT if there is no such record. */
    int (*access_list)(struct cvd_meta *m, enum cvd_access_target t,
                       const char *name, struct cvd_access_rec **out,
                       size_t *n);
    /* In one transaction: empties the list when clear, then sets each of
     * set (an identity already listed changes to the new allow), then
     * removes each identity of del.  -ENOENT if there is no such record. */
    int (*access_edit)(struct cvd_meta *m, enum cvd_access_target t,
                       const char *name, int clear,
                       const struct cvd_access_rec *set, size_t nset,
                       const char *const *del, size_t ndel);

    /* ---- A cluster on etcd.  SQLite answers each with -EOPNOTSUPP and a
     * message saying a single node has no such thing; a store that cannot
     * be reached answers -ENOTCONN ("metadata store unreachable: etcd
     * https://127.0.0.10:2379: ...") from every operation. ---- */

    /* Founds the cluster on an empty store, in one transaction: the
     * cluster record c, the first member self (state Member), and the seal
     * key sealed for it (sealkey, gen 0, node self->name).  -EEXIST when
     * the store already has a cluster. */
    int (*found)(struct cvd_meta *m, const struct cvd_cluster_rec *c,
                 const struct cvd_node_rec *self,
                 const struct cvd_kek_rec *sealkey);
    /* -EEXIST if the name is taken (also by a Removed node). */
    int (*node_add)(struct cvd_meta *m, const struct cvd_node_rec *n);
    int (*node_get)(struct cvd_meta *m, const char *name,
                    struct cvd_node_rec *out);
    /* In name order, Removed ones too; *out one malloc'ed array. */
    int (*node_list)(struct cvd_meta *m, struct cvd_node_rec **out,
                     size_t *n);
    /* Replaces address, state, joined, removed if n->rev still matches. */
    int (*node_update)(struct cvd_meta *m, struct cvd_node_rec *n);
    /* The cluster's seal key as node keeps it (a cvd_kek_rec with gen 0),
     * sealed by that node's TPM or node key.  put replaces. */
    int (*sealkey_get)(struct cvd_meta *m, const char *node,
                       struct cvd_kek_rec *out);
    int (*sealkey_put)(struct cvd_meta *m, const struct cvd_kek_rec *k);
    /* One more node's sealed copy of a KEK generation (a node that joined
     * or received a new generation); replaces its earlier copy. */
    int (*kek_put)(struct cvd_meta *m, const struct cvd_kek_rec *k);
    /* Leases: ttl in seconds; keepalive gives -ENOENT once it expired. */
    int (*lease_grant)(struct cvd_meta *m, int64_t ttl, int64_t *id);
    int (*lease_keepalive)(struct cvd_meta *m, int64_t id);
    int (*lease_revoke)(struct cvd_meta *m, int64_t id);
    /* The node's liveness key, attached to lease; value: a small JSON
     * object the node says about itself.  Also records last_seen. */
    int (*alive_put)(struct cvd_meta *m, const char *node, int64_t lease,
                     const char *json);
    /* A named lock attached to lease (the KEK rotation's runner): taken if
     * free; -EBUSY with holder's name in held_by if not. */
    int (*lock_take)(struct cvd_meta *m, const char *lock, int64_t lease,
                     const char *holder, char held_by[CVD_NAME_MAX + 1]);
    int (*lock_release)(struct cvd_meta *m, const char *lock, int64_t lease);
    /* Starts (once) the thread that calls cb on every change to the
     * store; it reconnects by itself (then CVD_META_EV_RESYNC).  Stopped
     * by close. */
    int (*watch)(struct cvd_meta *m, cvd_meta_watch_fn cb, void *arg);
    /* The cluster-wide audit log: one event (a JSON line, with its node)
     * appended; read gives each at or after since, oldest first, to cb
     * (the object is cb's to json_object_get); cb non-zero stops. */
    int (*audit_append)(struct cvd_meta *m, const char *node,
                        const char *json_line);
    int (*audit_read)(struct cvd_meta *m, int64_t since,
                      int (*cb)(void *arg, json_object *ev), void *arg);
    /* Replica sets (etcd only; SQLite answers -EOPNOTSUPP).  get: -ENOENT
     * for a volume that has none.  put: s->rev 0 creates (-EEXIST if one
     * exists), else replaces only if the stored revision is still s->rev
     * (-EBUSY), writing the new revision back.  remove: none is fine. */
    int (*replicas_get)(struct cvd_meta *m, const char *volume,
                        struct cvd_replica_set *out);
    int (*replicas_put)(struct cvd_meta *m, struct cvd_replica_set *s);
    int (*replicas_remove)(struct cvd_meta *m, const char *volume);
    /* Every replica set, in volume name order: *out one malloc'ed array
     * (placement counts them; the repair loop walks them).  SQLite: none
     * (0, *n 0), as a single node has no sets. */
    int (*replicas_list)(struct cvd_meta *m, struct cvd_replica_set **out,
                         size_t *n);
    /* Becomes the volume's writer, in one transaction: only if no attach
     * record exists, makes one for node attached to lease, and raises the
     * set's epoch by one; *epoch gets the new one, *prev (may be NULL) the
     * set as it was before (its last_writer and clean say whether the last
     * writer let go cleanly); the stored set then has last_writer = node,
     * clean = 0.  -EBUSY when another holds it: "volume db1: attached on
     * node n1"; -ENOENT without a replica set. */
    int (*attach_take)(struct cvd_meta *m, const char *volume,
                       const char *node, int64_t lease, uint64_t *epoch,
                       struct cvd_replica_set *prev);
    /* -ENOENT when no one holds it. */
    int (*attach_get)(struct cvd_meta *m, const char *volume,
                      struct cvd_attach_rec *out);
    /* Lets go, only if node holds it with epoch: deletes the record and
     * sets the set's clean to clean, in one transaction.  Not holding it
     * is not an error (the lease may be gone). */
    int (*attach_release)(struct cvd_meta *m, const char *volume,
                          const char *node, uint64_t epoch, int clean);

    /* Never fails: how the store is reached now. */
    void (*status)(struct cvd_meta *m, struct cvd_meta_status *out);

    void (*close)(struct cvd_meta *m);
};

/* What every backend starts with. */
struct cvd_meta {
    const struct cvd_meta_ops *ops;
    /* What seals secret values, locked memory: on SQLite the node key; on
     * etcd the cluster's seal key, NULL until the node has it (founded,
     * or received it when it joined: daemon/cluster/), and meanwhile
     * secret values can be neither sealed nor read (-EAGAIN, saying so). */
    unsigned char *seal_key;
    int clustered;              /* an etcd store: the cluster ops work */
};

/* Installs the key that seals secret values (on etcd: the cluster's seal
 * key, once this node has it): CVD_NODEKEY_LEN bytes of locked memory from
 * cv_secmem_alloc, which the store owns from then on (wiped and freed by
 * close, or by the next call).  Before other threads use the store.
 * Until a store on etcd has one, cvd_meta_seal and cvd_meta_secret_value
 * answer -EAGAIN ("this node has not received the cluster's seal key
 * yet"). */
void cvd_meta_set_seal_key(struct cvd_meta *m, unsigned char *key);

/* Opens (creating if needed) data_dir/meta.db and data_dir/node.key. */
int cvd_meta_open_sqlite(const char *data_dir, struct cvd_meta **out);

/* How a node reaches etcd: --etcd-endpoints, --etcd-tls-dir (ca-cert.pem,
 * client-cert.pem, client-key.pem), the key prefix (etcd-prefix, default
 * "/cryptvol/"), and per-request timeout. */
struct cvd_etcd_config {
    const char *endpoints;      /* "https://127.0.0.10:2379[,URL...]" */
    const char *tls_dir;        /* NULL: plain http (refused for https) */
    const char *prefix;
    unsigned timeout_ms;        /* 0: 5000 */
    /* A numeric address connections to etcd leave from (the node's
     * peer-listen host), when the endpoint is of its family; NULL or "":
     * the kernel's choice. */
    const char *source;
};
/* Connects (trying each endpoint) and checks the gateway answers; the
 * store starts with seal_key NULL.  Fails, naming each endpoint and why,
 * when none answers. */
int cvd_meta_open_etcd(const struct cvd_etcd_config *cfg,
                       struct cvd_meta **out);
/* NULL is ignored. */
void cvd_meta_close(struct cvd_meta *m);

/* Seals value for a secret called name into s (s->sealed is malloc'ed). */
int cvd_meta_seal(struct cvd_meta *m, const char *name, const void *value,
                  size_t len, const char *owner, struct cvd_secret_rec *s);
void cvd_secret_rec_free(struct cvd_secret_rec *s);
void cvd_kek_rec_free(struct cvd_kek_rec *k);

/* Seals and stores a new secret. */
int cvd_meta_secret_add(struct cvd_meta *m, const char *name,
                        const void *value, size_t len, const char *owner);
/* The value of a secret, unsealed into locked memory. */
int cvd_meta_secret_value(struct cvd_meta *m, const char *name,
                          struct cv_secret *out);

/* 1 if name is a valid volume or secret name: [A-Za-z0-9][A-Za-z0-9._-]*,
 * at most CVD_NAME_MAX characters. */
int cvd_name_valid(const char *name);

#endif

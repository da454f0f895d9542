/* A single node's metadata into an empty etcd prefix (migrate.h).
 *
 * Order: every check first (the prefix is empty, the certificate is the
 * node's, no rotation runs, the KEKs are this node's), then the founding
 * transaction, then the records.  A failure after the founding leaves a
 * partial copy in etcd and meta.db untouched: the message says to delete
 * the prefix and run again (a second run refuses a non-empty prefix). */
#include "migrate.h"
#include "migrate-internal.h"
#include "audit/audit.h"
#include "cluster/cluster.h"
#include "core/error.h"
#include "core/secmem.h"
#include "daemon.h"
#include "keys/keyring.h"
#include "keys/nodekey.h"
#include "log.h"
#include "meta/meta.h"
#include "peer/peer.h"

#include <errno.h>
#include <syslog.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *prefix_of(const struct cvd *d)
{
    return d->cfg.etcd_prefix ? d->cfg.etcd_prefix : "/cryptvol/";
}

static int check_options(const struct cvd *d)
{
    const struct cvd_config *c = &d->cfg;
    char cert[CVD_NAME_MAX + 1];
    int r;

    if (!c->etcd_endpoints || !c->peer_tls_dir || !c->peer_listen)
        return cv_error(-EINVAL, "migrate-to-etcd needs etcd-endpoints, "
                        "peer-tls-dir and peer-listen: the node becomes a "
                        "cluster member");
    r = cvd_peer_own_name(c->peer_tls_dir, cert, sizeof cert);
    if (r < 0)
        return cv_error_prefix(r, "peer-tls-dir %s", c->peer_tls_dir);
    if (strcmp(cert, c->node_name))
        return cv_error(-EINVAL, "node name \"%s\" (node-name) is not the "
                        "name of its certificate in %s (\"%s\"): a node's "
                        "name must be its certificate's", c->node_name,
                        c->peer_tls_dir, cert);
    return 0;
}

/* Only into an empty prefix: no cluster, node, volume, secret or class. */
static int check_empty(struct migration *mg)
{
    struct cvd_meta *m = mg->dst;
    struct cvd_cluster_rec c;
    struct cvd_node_rec *nodes = NULL;
    struct cvd_volume_rec *vols = NULL;
    struct cvd_secret_rec *secs = NULL;
    struct cvd_class_rec *cls = NULL;
    size_t nn = 0, nv = 0, ns = 0, nc = 0;
    int r = m->ops->cluster_get(m, &c);

    if (r == -ENOENT) {
        cv_clear_error();
        c.id[0] = '\0';
        r = 0;
    }
    if (r == 0)
        r = m->ops->node_list(m, &nodes, &nn);
    if (r == 0)
        r = m->ops->volume_list(m, &vols, &nv);
    if (r == 0)
        r = m->ops->secret_list(m, &secs, &ns);
    if (r == 0)
        r = m->ops->class_list(m, &cls, &nc);
    if (r == 0 && (c.id[0] || nn || nv || ns || nc))
        r = cv_error(-EEXIST, "etcd prefix %s is not empty (%s%s, %zu "
                     "nodes, %zu volumes, %zu secrets, %zu classes): a node "
                     "migrates only into an empty prefix (to join an "
                     "existing cluster, add it with node add instead)",
                     prefix_of(mg->d), c.id[0] ? "cluster " : "no cluster",
                     c.id, nn, nv, ns, nc);
    free(nodes);
    free(vols);
    free(secs);
    free(cls);
    return r;
}

/* The node's cluster record, checked: no rotation under way, and every
 * KEK generation a volume may need sealed for node-name. */
static int check_source(struct migration *mg)
{
    struct cvd_cluster_rec *c = &mg->cluster;
    const char *me = mg->d->cfg.node_name;
    size_t i;
    int r = mg->src->ops->cluster_get(mg->src, c);

    if (r < 0)
        return cv_error_prefix(r, "meta.db: the cluster record");
    if ((c->rotation[0] && strcmp(c->rotation, CVD_ROT_NONE)) ||
        !strcmp(c->encryption, CVD_ENC_ENABLING))
        return cv_error(-EBUSY, "a KEK rotation or the enabling of cluster "
                        "encryption is under way (%s, %s): start the node "
                        "once to finish it, stop it, then migrate",
                        c->encryption, c->rotation);
    r = mg->src->ops->kek_list(mg->src, me, &mg->gens, &mg->ngens);
    if (r < 0)
        return cv_error_prefix(r, "meta.db: the KEK generations of node %s",
                               me);
    if (strcmp(c->encryption, CVD_ENC_ENABLED))
        return 0;
    for (i = 0; i < mg->ngens; i++)
        if (mg->gens[i] == c->current_gen)
            return 0;
    return cv_error(-ENOENT, "cluster encryption is Enabled but KEK "
                    "generation %u is not sealed for node \"%s\" in meta.db: "
                    "migrate under the node name it ran with (node-name; "
                    "its certificate must have that name)", c->current_gen,
                    me);
}

/* As daemon/cluster/ founds a cluster (a new seal key sealed by the node
 * key, the first member, one transaction), but with the node's own
 * cluster record: its id, encryption state and KEK generation go on. */
static int found(struct migration *mg)
{
    struct cvd *d = mg->d;
    struct cvd_cluster_rec c = mg->cluster;
    int r;

    r = cvd_node_found(d, mg->dst, &c, &mg->seal_key);
    if (r < 0)
        return cv_error_prefix(r, "founding the cluster on etcd prefix %s",
                               prefix_of(d));
    /* The store owns it from here (wiped when it is closed). */
    cvd_meta_set_seal_key(mg->dst, mg->seal_key);
    mg->seal_key = NULL;
    mg->cluster = c;
    cvd_log(LOG_NOTICE, "cluster %s: founded on etcd prefix %s by node %s "
            "(migrated from its data directory)", c.id, prefix_of(d),
            d->cfg.node_name);
    cvd_audit(d->audit, "cryptvold", "cluster.found", c.id, 1,
              "first member %s at %s, migrated from %s", d->cfg.node_name,
              d->cfg.peer_listen ? d->cfg.peer_listen : "", d->cfg.data_dir);
    return 0;
}

/* meta.db (and what SQLite keeps beside it) becomes meta.db.migrated:
 * a node started on this data directory without etcd finds no metadata
 * rather than an old copy, and the copy stays for an operator. */
static int retire_sqlite(const char *dir)
{
    static const char *sfx[] = { "", "-wal", "-shm" };
    char from[4096], to[4096];
    size_t i;
    int fd;

    for (i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        snprintf(from, sizeof from, "%s/meta.db%s", dir, sfx[i]);
        snprintf(to, sizeof to, "%s/meta.db.migrated%s", dir, sfx[i]);
        if (rename(from, to) < 0 && (i == 0 || errno != ENOENT))
            return cv_error(-errno, "renaming %s to %s: %s", from, to,
                            strerror(errno));
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    return 0;
}

static int open_stores(struct migration *mg)
{
    struct cvd *d = mg->d;
    char src[256];
    struct cvd_etcd_config ec = {
        .endpoints = d->cfg.etcd_endpoints,
        .tls_dir = d->cfg.etcd_tls_dir,
        .prefix = prefix_of(d),
        .timeout_ms = d->cfg.etcd_timeout_ms,
        .source = src,
    };
    char path[4096], done[4200];
    struct stat st;
    int r;

    cvd_peer_own_host(d->cfg.peer_listen, src, sizeof src);
    snprintf(path, sizeof path, "%s/meta.db", d->cfg.data_dir);
    snprintf(done, sizeof done, "%s.migrated", path);
    if (stat(path, &st) < 0)
        return cv_error(-ENOENT, "data dir %s: no meta.db to migrate%s",
                        d->cfg.data_dir, stat(done, &st) == 0 ?
                        " (it was migrated already: meta.db.migrated)" : "");
    r = cvd_meta_open_sqlite(d->cfg.data_dir, &mg->src);
    if (r == 0)
        r = cvd_meta_open_etcd(&ec, &mg->dst);
    if (r == 0)
        r = cvd_nodekey_load(d->cfg.data_dir, &mg->node_key);
    if (r == 0)
        r = cvd_keyring_new(d, &d->keys);
    if (r == 0) {
        /* The keyring seals and unseals for the etcd store, with the
         * node key as a cluster member does. */
        d->meta = mg->dst;
        cvd_keyring_set_node_key(d->keys, mg->node_key);
    }
    return r;
}

static void close_stores(struct migration *mg)
{
    struct cvd *d = mg->d;

    cvd_meta_close(mg->dst);
    cvd_meta_close(mg->src);
    d->meta = NULL;
    cvd_keyring_free(d->keys);
    d->keys = NULL;
    cv_secmem_free(mg->seal_key, CVD_SEAL_KEY_LEN);
    if (mg->node_key)
        cvd_nodekey_free(mg->node_key);
    free(mg->gens);
}

static int migrate(struct migration *mg)
{
    int r = check_options(mg->d);

    if (r == 0)
        r = open_stores(mg);
    if (r == 0)
        r = check_empty(mg);
    if (r == 0)
        r = check_source(mg);
    if (r == 0)
        r = found(mg);
    if (r == 0) {
        r = migrate_copy(mg);
        if (r < 0)
            r = cv_error_prefix(r, "etcd prefix %s now holds a partial "
                                "copy (meta.db is untouched): delete it "
                                "(etcdctl del --prefix %s) and migrate "
                                "again; the copy stopped at",
                                prefix_of(mg->d), prefix_of(mg->d));
    }
    return r;
}

int cvd_migrate_to_etcd(struct cvd *d)
{
    struct migration mg = { .d = d, .tty = isatty(STDERR_FILENO) };
    int r = cvd_audit_open(d->cfg.audit_dir, &d->audit);

    if (r == 0)
        r = migrate(&mg);
    close_stores(&mg);
    if (r == 0)
        r = retire_sqlite(d->cfg.data_dir);
    if (r == 0) {
        cvd_audit(d->audit, "cryptvold", "cluster.migrate", d->cfg.node_name,
                  1, "%zu volumes, %zu secrets, %zu classes, %zu KEK "
                  "generations into etcd prefix %s", mg.nvolumes,
                  mg.nsecrets, mg.nclasses, mg.ngens, prefix_of(d));
        cvd_log(LOG_NOTICE, "migrated %zu volumes, %zu secrets, %zu classes, %zu KEK "
                 "generations into etcd prefix %s; meta.db is now "
                 "meta.db.migrated: start the node with the same etcd and "
                 "peer options", mg.nvolumes, mg.nsecrets, mg.nclasses,
                 mg.ngens, prefix_of(d));
    } else if (d->audit) {
        char why[1024];

        snprintf(why, sizeof why, "%s", cv_last_error());
        cvd_audit(d->audit, "cryptvold", "cluster.migrate",
                  d->cfg.node_name, 0, "%s", why);
        cv_error(r, "%s", why);
    }
    cvd_audit_close(d->audit);
    d->audit = NULL;
    return r;
}

/* Starting and stopping this node as a cluster member (cluster.h):
 * its name against its certificate, founding the cluster on an empty
 * prefix, or finding its own record and its sealed copy of the seal key;
 * joining (cluster-join.c) when it has none yet. */
#include "cluster.h"
#include "cluster-internal.h"
#include "audit/audit.h"
#include "daemon.h"
#include "core/error.h"
#include "core/uuid.h"
#include "core/secmem.h"
#include "keys/keyring.h"
#include "keys/nodekey.h"
#include "log.h"
#include "peer/peer.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int new_node(struct cvd *d, struct cvd_node **out)
{
    struct cvd_node *n = calloc(1, sizeof *n);
    pthread_condattr_t ca;

    if (!n)
        return cv_error(-ENOMEM, "cluster: out of memory");
    n->d = d;
    pthread_mutex_init(&n->lock, NULL);
    pthread_mutex_init(&n->listen_lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->wake, &ca);
    pthread_condattr_destroy(&ca);
    *out = n;
    return 0;
}

static void free_node(struct cvd_node *n)
{
    if (!n)
        return;
    /* The keyring that pointed at the node key is gone; the seal key was
     * the store's (cvd_meta_set_seal_key). */
    cvd_nodekey_free(n->node_key);
    json_object_put(n->last_list);
    free(n->online);
    pthread_cond_destroy(&n->wake);
    pthread_mutex_destroy(&n->listen_lock);
    pthread_mutex_destroy(&n->lock);
    free(n);
}

/* A node's name is its certificate's: the peer port tells members apart
 * by it, so a node under another name could pass for that node. */
static int check_name(struct cvd *d)
{
    char cert[CVD_NAME_MAX + 1];
    int r;

    if (!d->cfg.peer_tls_dir || !d->cfg.peer_listen)
        return cv_error(-EINVAL, "a cluster node (etcd-endpoints) needs "
                        "peer-listen and peer-tls-dir: members reach each "
                        "other on the peer port with their certificates");
    r = cvd_peer_own_name(d->cfg.peer_tls_dir, cert, sizeof cert);
    if (r < 0)
        return cv_error_prefix(r, "peer-tls-dir %s", d->cfg.peer_tls_dir);
    if (strcmp(cert, d->cfg.node_name))
        return cv_error(-EINVAL, "node name \"%s\" (node-name) is not the "
                        "name of its certificate in %s (\"%s\"): a node's "
                        "name must be its certificate's", d->cfg.node_name,
                        d->cfg.peer_tls_dir, cert);
    return 0;
}

int cvd_node_found(struct cvd *d, struct cvd_meta *m,
                   struct cvd_cluster_rec *c, unsigned char **seal_key)
{
    struct cvd_node_rec self = { 0 };
    struct cvd_kek_rec sk = { 0 };
    unsigned char *key = cv_secmem_alloc(CVD_SEAL_KEY_LEN);
    int64_t now = (int64_t)time(NULL);
    int r;

    if (!key)
        return cv_error(-ENOMEM, "cluster: out of memory");
    r = RAND_priv_bytes(key, CVD_SEAL_KEY_LEN) == 1 ? 0 :
        cv_error(-EIO, "cluster: no random bytes for the seal key");
    if (r == 0 && !c->id[0])
        r = cv_uuid_new(c->id, sizeof c->id, "cluster");
    c->rev = 0;
    c->rotation_node[0] = '\0';
    snprintf(self.name, sizeof self.name, "%s", d->cfg.node_name);
    snprintf(self.address, sizeof self.address, "%s",
             d->cfg.peer_listen ? d->cfg.peer_listen : "");
    self.state = CVD_NODE_MEMBER;
    self.added = self.joined = now;
    if (r == 0)
        r = cvd_keyring_seal(d->keys, 0, CVD_KEK_SOFTWARE, key, &sk);
    if (r == 0)
        r = m->ops->found(m, c, &self, &sk);
    cvd_kek_rec_free(&sk);
    if (r < 0) {
        cv_secmem_free(key, CVD_SEAL_KEY_LEN);
        return r;
    }
    *seal_key = key;
    return 0;
}

/* An empty prefix: this node founds the cluster, first member, with a new
 * seal key sealed by its node key.  -EEXIST when another node founded it
 * first (the caller then goes on as a member would). */
static int found(struct cvd_node *n)
{
    struct cvd *d = n->d;
    struct cvd_cluster_rec c = { 0 };
    unsigned char *key = NULL;
    char object[64];
    int r;

    snprintf(c.encryption, sizeof c.encryption, CVD_ENC_DISABLED);
    snprintf(c.rotation, sizeof c.rotation, CVD_ROT_NONE);
    r = cvd_node_found(d, d->meta, &c, &key);
    if (r < 0)
        return r;
    snprintf(n->id, sizeof n->id, "%s", c.id);
    cvd_info("cluster %s: founded by this node (%s), its first member",
             c.id, d->cfg.node_name);
    snprintf(object, sizeof object, "cluster/%s", c.id);
    cvd_audit(d->audit, "cryptvold", "cluster.found", object, 1,
              "first member %s at %s", d->cfg.node_name, d->cfg.peer_listen);
    return cluster_become_ready(n, key);
}

/* A member with its sealed copy: the seal key back, and each KEK it holds
 * unsealed now, so that a TPM or node key problem shows at start. */
static int unseal_own(struct cvd_node *n)
{
    struct cvd *d = n->d;
    struct cvd_kek_rec sk = { 0 };
    struct cv_secret s = { 0 };
    const unsigned char *kek;
    unsigned char *key = NULL;
    uint32_t *gens = NULL;
    size_t ngens = 0, i;
    int r;

    r = d->meta->ops->sealkey_get(d->meta, d->cfg.node_name, &sk);
    if (r == 0)
        r = cvd_keyring_unseal(d->keys, &sk, &s);
    if (r == 0 && s.len != CVD_SEAL_KEY_LEN)
        r = cv_error(-EINVAL, "the cluster seal key of node %s: %zu bytes, "
                     "not %d", d->cfg.node_name, s.len, CVD_SEAL_KEY_LEN);
    if (r == 0 && !(key = cv_secmem_alloc(CVD_SEAL_KEY_LEN)))
        r = cv_error(-ENOMEM, "cluster: out of memory");
    if (r == 0)
        memcpy(key, s.data, CVD_SEAL_KEY_LEN);
    cv_secret_free(&s);
    cvd_kek_rec_free(&sk);
    if (r < 0)
        return r;
    if (d->meta->ops->kek_list(d->meta, d->cfg.node_name, &gens, &ngens) < 0)
        cvd_warn("cluster: listing this node's KEK generations: %s",
                 cv_last_error());
    for (i = 0; i < ngens; i++)
        if (cvd_keyring_get(d->keys, gens[i], &kek) < 0)
            cvd_err("cluster: %s", cv_last_error());
    free(gens);
    return cluster_become_ready(n, key);
}

static int not_member(struct cvd_node *n)
{
    const char *me = n->d->cfg.node_name;

    return cv_error(-EACCES, "node %s is not a member of cluster %s: add it "
                    "first with `cryptvol node add %s --address HOST:PORT` "
                    "on a member", me, n->id, me);
}

/* What this node's record says it must do: unseal its keys, join, or
 * refuse to start. */
static int membership(struct cvd_node *n)
{
    struct cvd *d = n->d;
    struct cvd_node_rec self;
    struct cvd_kek_rec sk = { 0 };
    char when[32];
    int r = d->meta->ops->node_get(d->meta, d->cfg.node_name, &self);

    if (r == -ENOENT)
        return not_member(n);
    if (r < 0)
        return r;
    if (self.state == CVD_NODE_REMOVED) {
        cvd_audit_format_time(self.removed, when, sizeof when);
        return cv_error(-EACCES, "node %s was removed from cluster %s (%s): "
                        "a removed node cannot serve or rejoin under its "
                        "name", self.name, n->id, when);
    }
    if (self.state == CVD_NODE_MEMBER) {
        r = d->meta->ops->sealkey_get(d->meta, self.name, &sk);
        cvd_kek_rec_free(&sk);
        if (r == 0)
            return unseal_own(n);
        if (r != -ENOENT)
            return r;
        cv_clear_error();
        cvd_warn("cluster %s: node %s is a member without its copy of the "
                 "seal key: getting the keys from a member again", n->id,
                 self.name);
    }
    r = cluster_join_once(n);
    if (r != -EAGAIN)
        return r;
    /* No member could give the keys now: keep trying, not ready. */
    pthread_mutex_lock(&n->lock);
    snprintf(n->why, sizeof n->why, "node %s is joining: %s", self.name,
             cv_last_error());
    pthread_mutex_unlock(&n->lock);
    cvd_warn("%s (trying again in the background)", n->why);
    r = pthread_create(&n->join_thread, NULL, cluster_join_loop, n);
    if (r != 0)
        return cv_error(-r, "cluster: starting the join thread: %s",
                        strerror(r));
    n->join_started = 1;
    return 0;
}

/* The cluster record, or found it. */
static int found_or_join(struct cvd_node *n)
{
    struct cvd *d = n->d;
    struct cvd_cluster_rec c;
    int r = d->meta->ops->cluster_get(d->meta, &c);

    if (r == -ENOENT || (r == 0 && !c.id[0])) {
        cv_clear_error();
        r = found(n);
        if (r != -EEXIST)
            return r;
        cvd_info("cluster: another node founded it first; joining");
        r = d->meta->ops->cluster_get(d->meta, &c);
    }
    if (r < 0)
        return cv_error_prefix(r, "cluster: reading its record");
    snprintf(n->id, sizeof n->id, "%s", c.id);
    return membership(n);
}

int cvd_node_start(struct cvd *d)
{
    struct cvd_node *n = NULL;
    int r;

    if (!d->meta || !d->meta->clustered)
        return 0;
    r = check_name(d);
    if (r == 0)
        r = new_node(d, &n);
    if (r < 0)
        return r;
    d->node = n;
    r = cvd_nodekey_load(d->cfg.data_dir, &n->node_key);
    if (r == 0)
        cvd_keyring_set_node_key(d->keys, n->node_key);
    if (r == 0)
        r = found_or_join(n);
    if (r == 0)
        r = cluster_keys_register(n);
    if (r == 0)
        r = cluster_watch_start(n);
    if (r < 0) {
        r = cv_error_prefix(r, "cluster");
        cvd_node_stop(d);
    }
    return r;
}

void cvd_node_free(struct cvd *d)
{
    free_node(d->node);
    d->node = NULL;
}

/* The seal key and the node key are wiped by cvd_node_free. */
void cvd_node_stop(struct cvd *d)
{
    struct cvd_node *n = d->node;

    if (!n || n->stopped)
        return;
    n->stopped = 1;
    cluster_threads_stop(n);
    if (d->peer) {
        cvd_peer_stop(d->peer);
        d->peer = NULL;
    }
    if (n->lease && d->meta->ops->lease_revoke(d->meta, n->lease) < 0)
        cvd_warn("cluster: revoking this node's lease (it shows Offline "
                 "once the lease expires): %s", cv_last_error());
    __atomic_store_n(&n->lease, 0, __ATOMIC_RELEASE);   /* cvd_node_lease */
}

int cvd_node_ready(struct cvd *d)
{
    struct cvd_node *n = d->node;
    char why[sizeof n->why];
    int ready;

    if (!n)
        return 0;
    pthread_mutex_lock(&n->lock);
    ready = n->ready;
    snprintf(why, sizeof why, "%s", n->why);
    pthread_mutex_unlock(&n->lock);
    return ready ? 0 : cv_error(-EAGAIN, "%s", why);
}

int cvd_node_serve(struct cvd *d)
{
    struct cvd_node *n = d->node;

    if (!n)
        return 0;
    pthread_mutex_lock(&n->lock);
    n->serving = 1;
    n->kick_pending = 1;
    pthread_cond_broadcast(&n->wake);
    pthread_mutex_unlock(&n->lock);
    return 0;
}

int64_t cvd_node_lease(struct cvd *d)
{
    return d->node ? __atomic_load_n(&d->node->lease, __ATOMIC_ACQUIRE) : 0;
}

int cvd_node_listen(struct cvd *d, cvd_meta_watch_fn cb, void *arg)
{
    struct cvd_node *n = d->node;
    int r = 0;

    if (!n)
        return cv_error(-EOPNOTSUPP, "a single node has no cluster to "
                        "watch");
    pthread_mutex_lock(&n->listen_lock);
    if (n->nlisteners == CLUSTER_LISTENERS_MAX)
        r = cv_error(-ENOSPC, "cluster: more than %d watch listeners",
                     CLUSTER_LISTENERS_MAX);
    else
        n->listeners[n->nlisteners++] = (struct cluster_listener){ cb, arg };
    pthread_mutex_unlock(&n->listen_lock);
    return r;
}

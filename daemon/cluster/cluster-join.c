/* Joining: a node that was added (Joining) asks an Online member for the
 * seal key and every KEK generation over the peer port (KEYS, mutual TLS),
 * seals each with its own protection, stores its copies, and only then is
 * a Member and Online.  The member's side answers only a node whose record
 * is Joining or Member, and records that it gave the keys.
 *
 * KEYS payload (locked memory on both sides): u32 count, then per key
 * {u32 gen (0: the seal key), u32 len, len bytes}, integers big-endian. */
#include "cluster.h"
#include "cluster-internal.h"
#include "cluster-keys.h"
#include "audit/audit.h"
#include "daemon.h"
#include "core/error.h"
#include "core/secmem.h"
#include "keys/keyring.h"
#include "log.h"
#include "luks/kek-token.h"
#include "peer/peer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct keys {
    unsigned char *buf;         /* locked */
    size_t len;
};

/* The payload of this node's seal key and every generation it holds. */
static int build_keys(struct cvd_node *n, struct keys *k, char *gens_text,
                      size_t text_len)
{
    struct cvd *d = n->d;
    struct cvd_keys_entry *e = NULL;
    uint32_t *gens = NULL;
    size_t ngens = 0, i, used = 0;
    int r = d->meta->ops->kek_list(d->meta, d->cfg.node_name, &gens, &ngens);

    gens_text[0] = '\0';
    if (r == 0 && ngens >= CVD_KEYS_MAX)
        r = cv_error(-E2BIG, "%zu KEK generations: too many", ngens);
    if (r == 0 && !(e = calloc(ngens + 1, sizeof *e)))
        r = cv_error(-ENOMEM, "cluster: out of memory");
    if (r == 0)
        e[0] = (struct cvd_keys_entry){ 0, n->seal_key };
    for (i = 0; r == 0 && i < ngens; i++) {
        e[i + 1].gen = gens[i];
        r = cvd_keyring_get(d->keys, gens[i], &e[i + 1].key);
        if (r == 0 && used < text_len)
            used += (size_t)snprintf(gens_text + used, text_len - used,
                                     "%s%u", i ? ", " : "", gens[i]);
    }
    if (r == 0)
        r = cvd_keys_encode(e, ngens + 1, &k->buf, &k->len);
    free(e);
    free(gens);
    return r;
}

/* The member's side of KEYS. */
static int serve_keys(void *arg, const char *peer, const void *req,
                      size_t len, struct cvd_peer_reply *reply)
{
    struct cvd_node *n = arg;
    struct cvd *d = n->d;
    struct cvd_node_rec rec;
    struct keys k = { 0 };
    char object[CVD_NAME_MAX + 8], gens[256];
    int r = cvd_node_ready(d);

    (void)req;
    snprintf(object, sizeof object, "node/%s", peer);
    if (r == 0 && len != 0)
        r = cv_error(-EINVAL, "KEYS: a request with %zu bytes (it has "
                     "none)", len);
    if (r == 0)
        r = d->meta->ops->node_get(d->meta, peer, &rec);
    if (r == 0 && rec.state == CVD_NODE_REMOVED)
        r = cv_error(-EACCES, "node %s was removed: no keys for it", peer);
    if (r == -ENOENT)
        r = cv_error(-EACCES, "node %s is not a member: no keys for it",
                     peer);
    if (r == 0)
        r = build_keys(n, &k, gens, sizeof gens);
    if (r < 0) {
        cvd_warn("cluster: node %s asked for the keys: refused: %s", peer,
                 cv_last_error());
        cvd_audit(d->audit, peer, "node.keys", object, 0, "%s",
                  cv_last_error());
        return r;
    }
    reply->type = CVD_PEER_KEYS;
    reply->data = k.buf;
    reply->len = k.len;
    reply->secure = 1;
    cvd_info("cluster: gave node %s the seal key and KEK generations %s",
             peer, gens[0] ? gens : "(none)");
    cvd_audit(d->audit, peer, "node.keys", object, 1, "seal key and KEK "
              "generations %s sent over the peer port", gens[0] ? gens :
              "(none)");
    return 0;
}

/* The peer port is started by main.c (with the store's member check:
 * only Joining and Member nodes get through, a Removed one is refused and
 * counted apart); this module answers KEYS on it. */
int cluster_keys_register(struct cvd_node *n)
{
    struct cvd *d = n->d;

    if (!d->peer)
        return cv_error(-EINVAL, "a cluster node needs its peer port "
                        "(peer-listen)");
    return cvd_peer_handle(d->peer, CVD_PEER_KEYS, serve_keys, n);
}

/* How this node protects its copies: as the cluster's KEKs are (its
 * kekProtection), else with its node key. */
static int protection(struct cvd *d, char *out, size_t len)
{
    struct cvd_cluster_rec c;
    int r = d->meta->ops->cluster_get(d->meta, &c);

    if (r == 0)
        snprintf(out, len, "%s", c.protection[0] ? c.protection :
                 CVD_KEK_SOFTWARE);
    return r;
}

static int store_one(struct cvd *d, uint32_t gen, const char *prot,
                     const unsigned char *key)
{
    struct cvd_kek_rec rec;
    int r = cvd_keyring_seal(d->keys, gen, prot, key, &rec);

    if (r == 0)
        r = gen ? d->meta->ops->kek_put(d->meta, &rec)
                : d->meta->ops->sealkey_put(d->meta, &rec);
    cvd_kek_rec_free(&rec);
    return r;
}

/* The state change that makes this node a Member; a concurrent change of
 * its record (-EBUSY) is read again once. */
static int become_member(struct cvd *d)
{
    struct cvd_node_rec self;
    int r, tries;

    for (tries = 0; tries < 3; tries++) {
        r = d->meta->ops->node_get(d->meta, d->cfg.node_name, &self);
        if (r < 0)
            return r;
        if (self.state == CVD_NODE_REMOVED)
            return cv_error(-EACCES, "node %s was removed while it joined",
                            self.name);
        self.state = CVD_NODE_MEMBER;
        if (!self.joined)
            self.joined = (int64_t)time(NULL);
        r = d->meta->ops->node_update(d->meta, &self);
        if (r != -EBUSY)
            return r;
    }
    return r;
}

/* KEKs first, the seal key last, then the state: a node killed in
 * between finds itself without its copy of the seal key, and joins again
 * (the copies are replaced). */
static int store_keys(struct cvd_node *n, const char *from,
                      const unsigned char *p, size_t len)
{
    struct cvd *d = n->d;
    struct cvd_keys_entry keys[CVD_KEYS_MAX + 1];
    const unsigned char *seal = NULL;
    unsigned char *key;
    char prot[16], text[256] = "", object[CVD_NAME_MAX + 8];
    size_t nkeys, i, used = 0;
    int r = cvd_keys_decode(from, p, len, keys, CVD_KEYS_MAX + 1, &nkeys);

    if (r == 0)
        r = protection(d, prot, sizeof prot);
    for (i = 0; r == 0 && i < nkeys; i++) {
        if (keys[i].gen == 0) {
            seal = keys[i].key;
            continue;
        }
        r = store_one(d, keys[i].gen, prot, keys[i].key);
        if (used < sizeof text)
            used += (size_t)snprintf(text + used, sizeof text - used, "%s%u",
                                     used ? ", " : "", keys[i].gen);
    }
    if (r == 0)
        r = store_one(d, 0, prot, seal);
    if (r == 0)
        r = become_member(d);
    if (r == 0 && !(key = cv_secmem_alloc(CVD_SEAL_KEY_LEN)))
        r = cv_error(-ENOMEM, "cluster: out of memory");
    if (r < 0)
        return cv_error_prefix(r, "node %s: storing the keys from node %s",
                               d->cfg.node_name, from);
    memcpy(key, seal, CVD_SEAL_KEY_LEN);
    cvd_info("cluster %s: joined: the seal key and KEK generations %s from "
             "node %s, sealed here (%s)", n->id, text[0] ? text : "(none)",
             from, prot);
    snprintf(object, sizeof object, "node/%s", d->cfg.node_name);
    cvd_audit(d->audit, "cryptvold", "node.join", object, 1,
              "keys from node %s (KEK generations %s), sealed by %s", from,
              text[0] ? text : "none", prot);
    return cluster_become_ready(n, key);
}

/* Asks one member; -EAGAIN (with why) if it cannot give the keys. */
static int ask(struct cvd_node *n, const struct cvd_node_rec *m)
{
    void *resp = NULL;
    size_t len = 0;
    uint16_t type = 0;
    int r = cvd_peer_call(n->d, m->name, m->address, CVD_PEER_KEYS, NULL, 0,
                          &resp, &len, &type);

    if (r == 0 && type != CVD_PEER_KEYS)
        r = cv_error(-EPROTO, "answered type %u, not KEYS", type);
    if (r < 0) {
        r = cv_error_prefix(-EAGAIN, "node %s (%s)", m->name, m->address);
    } else {
        r = store_keys(n, m->name, resp, len);
        /* A malformed answer: the next member may give a good one (the
         * message stays, the code changes). */
        if (r == -EPROTO)
            r = -EAGAIN;
    }
    if (resp)
        cv_secmem_free(resp, len);
    return r;
}

int cluster_join_once(struct cvd_node *n)
{
    struct cvd *d = n->d;
    struct cvd_node_rec *on = NULL;
    char why[512] = "";
    size_t count = 0, i, used = 0;
    int r = cvd_node_online(d, &on, &count);

    if (r < 0)
        return r == -ENOTCONN ? -EAGAIN : r;  /* the message stays */
    for (i = 0, r = -EAGAIN; r == -EAGAIN && i < count; i++) {
        r = ask(n, &on[i]);
        if (r == -EAGAIN && used < sizeof why)
            used += (size_t)snprintf(why + used, sizeof why - used, "%s%s",
                                     used ? "; " : "", cv_last_error());
    }
    free(on);
    if (r == -EAGAIN)
        return cv_error(-EAGAIN, "%s", count ? why : "no member is Online "
                        "to get the keys from");
    return r;
}

void *cluster_join_loop(void *arg)
{
    struct cvd_node *n = arg;
    time_t last_log = time(NULL);
    int r;

    pthread_mutex_lock(&n->lock);
    while (!cluster_wait(n, &n->kick_join, CLUSTER_JOIN_RETRY_S)) {
        pthread_mutex_unlock(&n->lock);
        r = cluster_join_once(n);
        pthread_mutex_lock(&n->lock);
        if (r == 0)
            break;
        snprintf(n->why, sizeof n->why, "node %s is joining: %s",
                 n->d->cfg.node_name, cv_last_error());
        if (time(NULL) - last_log >= CLUSTER_JOIN_LOG_S) {
            cvd_warn("%s (trying again)", n->why);
            last_log = time(NULL);
        }
    }
    pthread_mutex_unlock(&n->lock);
    return NULL;
}

int cluster_become_ready(struct cvd_node *n, unsigned char *key)
{
    pthread_mutex_lock(&n->lock);
    /* The store owns it from here (wiped when it closes); this module
     * reads it to give it to joining nodes until then. */
    n->seal_key = key;
    cvd_meta_set_seal_key(n->d->meta, key);
    n->ready = 1;
    n->why[0] = '\0';
    n->kick_pending = 1;
    pthread_cond_broadcast(&n->wake);
    pthread_mutex_unlock(&n->lock);
    return cluster_live_start(n);
}

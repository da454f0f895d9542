/* CVD_PEER_KEK: one KEK generation from the member that holds it to the
 * member that lacks it, over their mutually authenticated TLS connection
 * (peer/peer.h).  The request is the generation (u32, network order); the
 * answer the CV_KEK_LEN bytes, in locked memory on both sides.  The
 * receiver seals it itself (its TPM or its node.key) and stores its own
 * copy, so the KEK is in etcd only sealed, once per node.
 *
 * Given out: only the generation new tokens use (currentGen) and the one
 * a rotation moves to (targetGen), only to a node that is a Member (not
 * Joining: a joining node gets its keys with the seal key, cluster/), and
 * only once the event that says so is in the audit log. */
#include "cluster-kek.h"
#include "cluster-kek-internal.h"
#include "audit/audit.h"
#include "daemon.h"
#include "core/error.h"
#include "core/secmem.h"
#include "keyring.h"
#include "log.h"
#include "luks/kek-token.h"
#include "peer/peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether gen may be given out now, and whether peer may have it. */
static int may_give(struct cvd *d, const char *peer, uint32_t gen)
{
    struct cvd_cluster_rec cur;
    struct cvd_node_rec n;
    int r = d->meta->ops->cluster_get(d->meta, &cur);

    if (r == 0 && strcmp(cur.encryption, CVD_ENC_ENABLED))
        return cv_error(-EINVAL, "cluster encryption is %s: no KEK to give "
                        "out", cur.encryption);
    if (r == 0 && gen != cur.current_gen &&
        !(strcmp(cur.rotation, CVD_ROT_NONE) && gen == cur.target_gen))
        return cv_error(-EPERM, "KEK generation %u is neither the current "
                        "one (%u) nor a rotation's target: not given out",
                        gen, cur.current_gen);
    if (r == 0)
        r = d->meta->ops->node_get(d->meta, peer, &n);
    if (r == 0 && n.state != CVD_NODE_MEMBER)
        return cv_error(-EPERM, "node %s is not a member (it is %s): no KEK "
                        "for it", peer, n.state == CVD_NODE_JOINING ?
                        "Joining" : "Removed");
    return r;
}

static int serve(void *arg, const char *peer, const void *req, size_t len,
                 struct cvd_peer_reply *reply)
{
    struct cvd_cluster *c = arg;
    struct cvd *d = c->d;
    struct cvd_kek_rec rec = { 0 };
    const unsigned char *kek = NULL;
    unsigned char *out;
    uint32_t gen;
    int r, a;

    if (len != sizeof gen)
        return cv_error(-EINVAL, "KEK request from node %s: %zu bytes, not "
                        "%zu", peer, len, sizeof gen);
    memcpy(&gen, req, sizeof gen);
    gen = ntohl(gen);
    r = may_give(d, peer, gen);
    /* Only a copy of our own: asking the keyring for one we lack would
     * make it ask a peer in turn. */
    if (r == 0)
        r = d->meta->ops->kek_get(d->meta, gen, d->cfg.node_name, &rec);
    cvd_kek_rec_free(&rec);
    if (r == -ENOENT)
        r = cv_error(-ENOENT, "node %s has no copy of KEK generation %u",
                     d->cfg.node_name, gen);
    if (r == 0)
        r = cvd_keyring_get(d->keys, gen, &kek);
    if (r < 0)
        r = cv_error_prefix(r, "KEK generation %u for node %s", gen, peer);
    a = cvd_audit(d->audit, "cryptvold", "kek.send", "cluster", r == 0,
                  "generation %u to node %s%s%s", gen, peer, r ? ": " : "",
                  r ? cv_last_error() : "");
    if (r == 0 && a < 0)
        r = cvd_audit_refuse(d->audit, a, "cluster: giving out a KEK");
    if (r < 0)
        return r;
    out = cv_secmem_alloc(CV_KEK_LEN);
    if (!out)
        return cv_error(-ENOMEM, "KEK generation %u: out of memory", gen);
    memcpy(out, kek, CV_KEK_LEN);
    reply->type = CVD_PEER_KEK;
    reply->data = out;
    reply->len = CV_KEK_LEN;
    reply->secure = 1;
    cvd_info("cluster: KEK generation %u given to node %s", gen, peer);
    return 0;
}

int cvd_kek_peer_serve(struct cvd_cluster *c)
{
    if (!c->d->peer)
        return 0;
    return cvd_peer_handle(c->d->peer, CVD_PEER_KEK, serve, c);
}

/* One member asked: 0 and the KEK stored, or its error. */
static int ask(struct cvd_cluster *c, const struct cvd_node_rec *n,
               uint32_t gen, const char *protection)
{
    struct cvd *d = c->d;
    uint32_t be = htonl(gen);
    void *resp = NULL;
    size_t len = 0;
    uint16_t type = 0;
    int r;

    r = cvd_peer_call(d, n->name, n->address, CVD_PEER_KEK, &be, sizeof be,
                      &resp, &len, &type);
    if (r == 0 && (type != CVD_PEER_KEK || len != CV_KEK_LEN))
        r = cv_error(-EPROTO, "node %s answered a KEK request with type %u, "
                     "%zu bytes", n->name, type, len);
    if (r == 0)
        r = cvd_keyring_adopt(d->keys, gen, protection, resp);
    if (resp)
        cv_secmem_free(resp, len);
    return r;
}

/* Does node hold a copy of gen (in the store)? */
static int holds(struct cvd *d, const char *node, uint32_t gen)
{
    struct cvd_kek_rec rec = { 0 };
    int r = d->meta->ops->kek_get(d->meta, gen, node, &rec);

    cvd_kek_rec_free(&rec);
    return r == 0;
}

int cvd_kek_peer_fetch(struct cvd_cluster *c, uint32_t gen,
                       const char *protection)
{
    struct cvd *d = c->d;
    struct cvd_node_rec *all = NULL;
    char why[512] = "", from[CVD_NAME_MAX + 1] = "";
    size_t n = 0, i, len = 0;
    int r;

    r = cvd_audit_check(d->audit, "cluster: receiving a KEK");
    if (r == 0)
        r = d->meta->ops->node_list(d->meta, &all, &n);
    for (i = 0; r == 0 && i < n && !from[0]; i++) {
        if (!strcmp(all[i].name, d->cfg.node_name) ||
            all[i].state == CVD_NODE_REMOVED || !holds(d, all[i].name, gen))
            continue;
        if (!all[i].alive) {
            len += (size_t)snprintf(why + len, len < sizeof why ?
                                    sizeof why - len : 0, "%s%s is Offline",
                                    len ? "; " : "", all[i].name);
            continue;
        }
        if (ask(c, &all[i], gen, protection) == 0)
            snprintf(from, sizeof from, "%s", all[i].name);
        else
            len += (size_t)snprintf(why + len, len < sizeof why ?
                                    sizeof why - len : 0, "%s%s: %s",
                                    len ? "; " : "", all[i].name,
                                    cv_last_error());
    }
    free(all);
    if (r == 0 && !from[0])
        r = cv_error(-EAGAIN, "KEK generation %u: no member that holds it "
                     "gave it to node %s (%s)", gen, d->cfg.node_name,
                     why[0] ? why : "no other member holds it");
    if (r == 0) {
        cvd_info("cluster: KEK generation %u received from node %s, sealed "
                 "(%s) and stored", gen, from, protection);
        cvd_audit(d->audit, "cryptvold", "kek.receive", "cluster", 1,
                  "generation %u from node %s, sealed (%s)", gen, from,
                  protection);
    }
    return r;
}

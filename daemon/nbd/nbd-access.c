/* Who an NBD client is, and what it may open: the identities a connection
 * proved (unix uid, TLS PSK or verified certificate), the refusal of
 * anonymous clients, and per-volume decisions (volumes/access.h) with
 * their audit events.  A refused client learns nothing it may not know:
 * "not allowed" and "no such volume" get the same reply. */
#include "nbd-access-internal.h"
#include "nbd-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "core/error.h"
#include "cluster/cluster.h"
#include "daemon.h"
#include "log.h"
#include "meta/meta.h"
#include "tls/tls.h"
#include "volumes/access.h"

void nbd_access_unix_peer(struct nbd_client *c, unsigned uid)
{
    char n[16];

    snprintf(n, sizeof n, "%u", uid);
    cvd_client_add(&c->who, CVD_ID_UID, n);
    c->who.authenticated = 1;
}

void nbd_access_tls_peer(struct nbd_client *c)
{
    struct cv_tls_peer *p = calloc(1, sizeof *p);

    if (!p)
        return;                 /* no identity: the client stays as it was */
    cv_tls_peer_identity(c->conn.ssl, p);
    if (p->auth == CV_TLS_AUTH_PSK) {
        cvd_client_add(&c->who, CVD_ID_PSK, p->psk);
        c->who.authenticated = 1;
    } else if (p->auth == CV_TLS_AUTH_CERT) {
        if (p->cn[0])
            cvd_client_add(&c->who, CVD_ID_CN, p->cn);
        for (unsigned i = 0; i < p->ndns; i++)
            cvd_client_add(&c->who, CVD_ID_DNS, p->dns[i]);
        c->who.authenticated = 1;
    }
    free(p);
}

void nbd_access_actor(const struct nbd_client *c, char *buf, size_t len)
{
    snprintf(buf, len, "nbd:%s%s%s", c->conn.peer,
             c->conn.tls_peer[0] ? " " : "", c->conn.tls_peer);
}

int nbd_access_authenticated(struct nbd_client *c)
{
    struct cvd *d = c->srv->d;
    char actor[300];

    if (c->who.authenticated || d->cfg.nbd_allow_anonymous)
        return 0;
    if (!c->refused_anonymous) {
        /* Once per connection: a client retrying options is one event. */
        c->refused_anonymous = 1;
        nbd_access_actor(c, actor, sizeof actor);
        cvd_audit(d->audit, actor, "nbd.authenticate", "nbd", 0,
                  "anonymous client (no client certificate, PSK or unix "
                  "socket uid) and nbd-allow-anonymous is off");
    }
    return cv_error(-EACCES, "this server needs an authenticated client: "
                    "TLS with a client certificate of its CA, or a PSK%s",
                    c->conn.ssl ? "" : " (send NBD_OPT_STARTTLS)");
}

/* The verdict for name; -ENOENT if there is no such volume. */
static int decide(struct nbd_client *c, const char *name,
                  enum cvd_access_verdict *v, char *detail, size_t dlen)
{
    int r = cvd_access_check(c->srv->d, name, &c->who, v, detail, dlen);

    if (r < 0 && r != -ENOENT)
        cvd_warn("nbd: %s: access to %s: %s", c->conn.peer, name,
                 cv_last_error());
    return r;
}

int nbd_access_volume(struct nbd_client *c, const char *name, int *missing)
{
    struct cvd *d = c->srv->d;
    enum cvd_access_verdict v = CVD_ACCESS_CLOSED;
    char detail[CVD_NAME_MAX + 128], actor[300], object[CVD_NAME_MAX + 16];
    int r = decide(c, name, &v, detail, sizeof detail);

    if (missing)
        *missing = r == -ENOENT;
    if (r == 0 && v == CVD_ACCESS_ALLOWED)
        return 0;
    if (r == 0) {
        nbd_access_actor(c, actor, sizeof actor);
        snprintf(object, sizeof object, "volume/%.*s", CVD_NAME_MAX, name);
        cvd_audit(d->audit, actor, "volume.access", object, 0, "%s", detail);
        cvd_info("nbd: %s: %s refused: %s", c->conn.peer, name, detail);
    }
    /* The same words for "refused" and "missing" (and a store error,
     * which the log has): a client may not learn which names exist. */
    return cv_error(r == -ENOENT || r == 0 ? -EACCES : r,
                    "volume %.64s: no such volume, or this client may not "
                    "open it", name);
}

int nbd_access_visible(struct nbd_client *c, const char *name)
{
    enum cvd_access_verdict v;
    char detail[CVD_NAME_MAX + 128];

    return decide(c, name, &v, detail, sizeof detail) == 0 &&
           v == CVD_ACCESS_ALLOWED;
}

static int count_encrypted(struct cvd *d)
{
    struct cvd_volume_rec *all = NULL;
    size_t n = 0, i;
    int k = 0;

    if (d->meta->ops->volume_list(d->meta, &all, &n) < 0)
        return -1;
    for (i = 0; i < n; i++)
        k += strcmp(all[i].type, "plaintext") != 0 &&
             cvd_node_is_local(d, &all[i]);
    free(all);
    return k;
}

void nbd_access_warn_config(struct cvd *d)
{
    const struct cvd_config *cfg = &d->cfg;
    int k;

    if (cfg->nbd_allow_anonymous)
        cvd_warn("nbd: nbd-allow-anonymous is on: clients with no client "
                 "certificate, PSK or unix socket uid may open every "
                 "volume that has no allow entries%s",
                 cfg->nbd_access_closed ? " (none: nbd-access-default is "
                 "closed)" : "");
    if (!cfg->nbd_listen || cfg->tls_mode == CVD_TLS_REQUIRE)
        return;
    k = count_encrypted(d);
    cvd_warn("nbd: --tls %s on %s: NBD clients may connect without TLS, and "
             "their volumes' data then crosses the network in plaintext "
             "(%d encrypted volume%s now; use --tls require)",
             cfg->tls_mode == CVD_TLS_ON ? "on" : "off", cfg->nbd_listen,
             k < 0 ? 0 : k, k == 1 ? "" : "s");
}

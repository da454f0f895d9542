/* GET /v1/status: the node at a glance, for cryptvol status and
 * monitoring: version, node, data directory, listeners, volumes by state,
 * the cluster KEK's state, NBD connections.  The first four fields
 * (version, volumes, secrets, metadata) are the original answer; the rest
 * were added beside them. */
#include "admin-internal.h"
#include "daemon.h"
#include "core/error.h"
#include "keys/cluster-kek.h"
#include "meta/meta.h"
#include "nbd/nbd-server.h"
#include "volumes/volumes.h"
#include "volumes/volumes-util.h"

#include <stdlib.h>
#include <string.h>

static json_object *by_state(const struct cvd_volume_rec *v, size_t n,
                             int64_t *served, struct cvd *d)
{
    json_object *o = json_object_new_object(), *count;
    size_t i;

    *served = 0;
    for (i = 0; i < n; i++) {
        const char *state = cvd_state_shown(v[i].state);
        if (json_object_object_get_ex(o, state, &count))
            json_object_set_int64(count, json_object_get_int64(count) + 1);
        else
            json_object_object_add(o, state, json_object_new_int64(1));
        *served += cvd_volume_in_use(d, v[i].name);
    }
    return o;
}

static const char *tls_word(enum cvd_tls_mode m)
{
    return m == CVD_TLS_OFF ? "off" : m == CVD_TLS_ON ? "on" : "require";
}

static json_object *listeners(struct cvd *d)
{
    char addrs[8][CVD_NBD_ADDR_MAX];
    json_object *o = json_object_new_object(), *nbd = json_object_new_array();
    size_t i, n = cvd_nbd_listeners(d, addrs, 8);

    for (i = 0; i < n; i++)
        json_object_array_add(nbd, json_object_new_string(addrs[i]));
    json_object_object_add(o, "nbd", nbd);
    json_object_object_add(o, "nbdUnix", d->cfg.nbd_unix ?
                           json_object_new_string(d->cfg.nbd_unix) : NULL);
    json_object_object_add(o, "adminSocket", d->cfg.admin_socket ?
                           json_object_new_string(d->cfg.admin_socket) : NULL);
    json_object_object_add(o, "adminHttps", d->cfg.admin_listen ?
                           json_object_new_string(d->cfg.admin_listen) : NULL);
    return o;
}

/* The cluster KEK's state, as GET /v1/cluster names it. */
static json_object *encryption(struct cvd *d)
{
    static const char *const keep[] = { "encryptionState", "kekProtection",
                                        "currentKekGeneration",
                                        "rotationState", NULL };
    json_object *all = NULL, *o, *v;
    size_t i;

    if (!d->cluster || cvd_cluster_info(d->cluster, &all) < 0) {
        cv_clear_error();
        return NULL;
    }
    o = json_object_new_object();
    for (i = 0; keep[i]; i++)
        if (json_object_object_get_ex(all, keep[i], &v))
            json_object_object_add(o, keep[i], json_object_get(v));
    json_object_put(all);
    return o;
}

json_object *cvd_admin_status(struct cvd *d, unsigned *code)
{
    struct cvd_volume_rec *vols = NULL;
    struct cvd_secret_rec *secs = NULL;
    struct cvd_nbd_session *sessions = NULL;
    size_t nv = 0, ns = 0, nc = 0, hs = 0;
    int64_t served;
    json_object *o;
    int r;

    r = d->meta->ops->volume_list(d->meta, &vols, &nv);
    if (r == 0)
        r = d->meta->ops->secret_list(d->meta, &secs, &ns);
    if (r == 0)
        r = cvd_nbd_sessions(d, NULL, &sessions, &nc, &hs);
    free(secs);
    free(sessions);
    if (r < 0) {
        free(vols);
        return cvd_admin_fail(code, r);
    }
#define ADD(k, v) json_object_object_add(o, k, v)
    o = json_object_new_object();
    ADD("version", json_object_new_string(CRYPTVOL_VERSION));
    ADD("volumes", json_object_new_int64((int64_t)nv));
    ADD("secrets", json_object_new_int64((int64_t)ns));
    ADD("metadata", json_object_new_string(d->meta->ops->kind));
    ADD("node", d->cfg.node_name ? json_object_new_string(d->cfg.node_name) :
        NULL);
    ADD("dataDir", json_object_new_string(d->cfg.data_dir));
    ADD("tls", json_object_new_string(tls_word(d->cfg.tls_mode)));
    ADD("listeners", listeners(d));
    ADD("volumesByState", by_state(vols, nv, &served, d));
    ADD("volumesServed", json_object_new_int64(served));
    ADD("connections", json_object_new_int64((int64_t)(nc + hs)));
    ADD("connectionsHandshaking", json_object_new_int64((int64_t)hs));
    ADD("encryption", encryption(d));
#undef ADD
    free(vols);
    *code = 200;
    return o;
}

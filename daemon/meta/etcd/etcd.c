/* The etcd metadata store: opening (the endpoints must answer), closing
 * (the watch thread stopped first), and the ops table. */
#include "etcd-internal.h"
#include "core/error.h"
#include "keys/nodekey.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void ek_status(struct cvd_meta *m, struct cvd_meta_status *out)
{
    ek_client_status(&ek_of(m)->c, out);
}

static void ek_close(struct cvd_meta *m)
{
    struct ek *e = ek_of(m);

    ek_watch_stop(e->watch);
    pthread_mutex_destroy(&e->watch_lock);
    ek_client_free(&e->c);
    cvd_nodekey_free(e->base.seal_key);
    free(e->prefix);
    free(e);
    curl_global_cleanup();
}

static const struct cvd_meta_ops etcd_ops = {
    .kind = "etcd",
    .volume_add = ek_volume_add,
    .volume_get = ek_volume_get,
    .volume_update = ek_volume_update,
    .volume_remove = ek_volume_remove,
    .volume_list = ek_volume_list,
    .secret_add = ek_secret_add,
    .secret_get = ek_secret_get,
    .secret_remove = ek_secret_remove,
    .secret_list = ek_secret_list,
    .secret_update = ek_secret_update,
    .class_add = ek_class_add,
    .class_get = ek_class_get,
    .class_remove = ek_class_remove,
    .class_list = ek_class_list,
    .cluster_get = ek_cluster_get,
    .cluster_update = ek_cluster_update,
    .kek_get = ek_kek_get,
    .kek_list = ek_kek_list,
    .kek_prune = ek_kek_prune,
    .volume_set_kek_gen = ek_volume_set_kek_gen,
    .access_list = ek_access_list,
    .access_edit = ek_access_edit,
    .found = ek_found,
    .node_add = ek_node_add,
    .node_get = ek_node_get,
    .node_list = ek_node_list,
    .node_update = ek_node_update,
    .sealkey_get = ek_sealkey_get,
    .sealkey_put = ek_sealkey_put,
    .kek_put = ek_kek_put,
    .lease_grant = ek_lease_grant,
    .lease_keepalive = ek_lease_keepalive,
    .lease_revoke = ek_lease_revoke,
    .alive_put = ek_alive_put,
    .lock_take = ek_lock_take,
    .lock_release = ek_lock_release,
    .watch = ek_watch,
    .audit_append = ek_audit_append,
    .audit_read = ek_audit_read,
    .replicas_get = ek_replicas_get,
    .replicas_put = ek_replicas_put,
    .replicas_remove = ek_replicas_remove,
    .replicas_list = ek_replicas_list,
    .attach_take = ek_attach_take,
    .attach_get = ek_attach_get,
    .attach_release = ek_attach_release,
    .status = ek_status,
    .close = ek_close,
};

/* The prefix as given, with a '/' at its end if it has none. */
static int set_prefix(struct ek *e, const char *p)
{
    size_t len;

    p = p && p[0] ? p : "/cryptvol/";
    len = strlen(p);
    if (len > 128)
        return cv_error(-EINVAL, "etcd prefix \"%.32s...\": longer than 128 "
                        "bytes", p);
    if (asprintf(&e->prefix, "%s%s", p, p[len - 1] == '/' ? "" : "/") < 0) {
        e->prefix = NULL;
        return cv_error(-ENOMEM, "etcd: out of memory");
    }
    return 0;
}

int cvd_meta_open_etcd(const struct cvd_etcd_config *cfg,
                       struct cvd_meta **out)
{
    struct ek *e;
    struct ek_kv kv;
    int r;

    *out = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return cv_error(-ENOMEM, "etcd: curl would not start");
    e = calloc(1, sizeof *e);
    if (!e) {
        curl_global_cleanup();
        return cv_error(-ENOMEM, "etcd: out of memory");
    }
    e->base.ops = &etcd_ops;
    e->base.clustered = 1;
    pthread_mutex_init(&e->watch_lock, NULL);
    atomic_init(&e->audit_seq, 0);
    r = ek_client_init(&e->c, cfg);
    if (r == 0)
        r = set_prefix(e, cfg->prefix);
    /* One read: the endpoints answer, our certificate is accepted. */
    if (r == 0)
        r = ek_get(e, "cluster", &kv, NULL);
    if (r >= 0) {
        ek_kv_free(&kv);
        r = 0;
    }
    if (r < 0) {
        ek_close(&e->base);
        return r;
    }
    *out = &e->base;
    return 0;
}

/* `cryptvol cluster info`: the encryption state as operators of Lightbits
 * know it. */
#include "cluster-kek.h"
#include "cluster-kek-internal.h"
#include "daemon.h"
#include "core/error.h"
#include "core/json-util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

/* Generations some volume still needs besides the current one: those a
 * rotation has not reached, or could not move (need not be consecutive). */
static json_object *previous_gens(const struct cvd_volume_rec *all, size_t n,
                                  uint32_t current)
{
    json_object *a = json_object_new_array();
    uint32_t *g = calloc(n ? n : 1, sizeof *g);
    size_t i, m = 0;

    if (!g)
        return a;
    /* A pending volume's kek_gen only says it will get a token. */
    for (i = 0; i < n; i++)
        if (all[i].kek_gen && all[i].kek_gen != current &&
            strcmp(all[i].state, CVD_VOL_PENDING))
            g[m++] = all[i].kek_gen;
    qsort(g, m, sizeof *g, cmp_u32);
    for (i = 0; i < m; i++)
        if (i == 0 || g[i] != g[i - 1])
            json_object_array_add(a, json_object_new_int64(g[i]));
    free(g);
    return a;
}

/* The progress: on one node what its rotation thread counted; on a
 * cluster from the store (volumes at the target of all those that move),
 * so every node shows the same. */
static void progress(struct cvd_cluster *c, const struct cvd_cluster_rec *cur,
                     uint32_t *done, uint32_t *total, uint32_t *failed,
                     char *waiting, size_t len)
{
    struct cvd_rotation_view v;

    waiting[0] = '\0';
    if (c->clustered) {
        if (cvd_rotation_cluster_view(c, cur, &v) < 0)
            snprintf(v.waiting, sizeof v.waiting, "(unknown: %s)",
                     cv_last_error());
        *done = v.done;
        *total = v.total;
        *failed = 0;
        snprintf(waiting, len, "%s", v.waiting);
        return;
    }
    pthread_mutex_lock(&c->lock);
    *done = c->done;
    *total = c->total;
    *failed = c->failed;
    pthread_mutex_unlock(&c->lock);
}

static json_object *rotation_json(struct cvd_cluster *c,
                                  const struct cvd_cluster_rec *cur)
{
    json_object *o = json_object_new_object();
    uint32_t done, total, failed;
    char waiting[sizeof ((struct cvd_rotation_view *)0)->waiting];

    progress(c, cur, &done, &total, &failed, waiting, sizeof waiting);
    json_object_object_add(o, "targetGeneration",
                           json_object_new_int64(cur->target_gen));
    json_object_object_add(o, "volumesDone", json_object_new_int64(done));
    json_object_object_add(o, "volumesTotal", json_object_new_int64(total));
    json_object_object_add(o, "volumesFailed", json_object_new_int64(failed));
    json_object_object_add(o, "started",
                           cv_json_time(cur->rotation_started));
    json_object_object_add(o, "finished",
                           cv_json_time(cur->rotation_finished));
    /* A cluster: the node that runs (or ran) it, and what it waits for. */
    json_object_object_add(o, "node", cur->rotation_node[0] ?
                           json_object_new_string(cur->rotation_node) : NULL);
    json_object_object_add(o, "waiting", waiting[0] ?
                           json_object_new_string(waiting) : NULL);
    return o;
}

int cvd_cluster_info(struct cvd_cluster *c, json_object **out)
{
    struct cvd *d = c->d;
    struct cvd_cluster_rec cur;
    struct cvd_volume_rec *all = NULL;
    size_t n = 0;
    json_object *o;
    int r;

    r = d->meta->ops->cluster_get(d->meta, &cur);
    if (r == 0)
        r = d->meta->ops->volume_list(d->meta, &all, &n);
    if (r < 0)
        return r;
    o = json_object_new_object();
#define ADD(k, v) json_object_object_add(o, k, v)
    ADD("clusterId", cur.id[0] ? json_object_new_string(cur.id) : NULL);
    ADD("node", json_object_new_string(d->cfg.node_name));
    ADD("encryptionState", json_object_new_string(cur.encryption));
    ADD("kekProtection", cur.protection[0] ?
        json_object_new_string(cur.protection) : NULL);
    ADD("currentKekGeneration", json_object_new_int64(cur.current_gen));
    ADD("previousKekGenerations", previous_gens(all, n, cur.current_gen));
    ADD("rotationState", json_object_new_string(cur.rotation));
    ADD("rotation", rotation_json(c, &cur));
    ADD("volumes", json_object_new_int64((int64_t)n));
#undef ADD
    free(all);
    *out = o;
    return 0;
}

int cvd_cluster_progress(struct cvd_cluster *c, struct cvd_meta *m,
                         struct cvd_cluster_progress *out)
{
    char waiting[sizeof ((struct cvd_rotation_view *)0)->waiting];
    int r;

    memset(out, 0, sizeof *out);
    r = m->ops->cluster_get(m, &out->rec);
    if (r == 0 && c)
        progress(c, &out->rec, &out->done, &out->total, &out->failed,
                 waiting, sizeof waiting);
    return r;
}

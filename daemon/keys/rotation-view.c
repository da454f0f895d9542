/* What a cluster's rotation waits for, and how far it is, read from the
 * store alone: the runner decides by it, and `cluster info` shows it, the
 * same on every node. */
#include "cluster-kek.h"
#include "cluster-kek-internal.h"
#include "daemon.h"
#include "core/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *state_name(const struct cvd_node_rec *n)
{
    if (n->state == CVD_NODE_REMOVED)
        return "Removed";
    if (n->state == CVD_NODE_JOINING)
        return "Joining";
    return n->alive ? "Online" : "Offline";
}

/* Appends to out->waiting, cutting with "..." when it is full. */
static void say(struct cvd_rotation_view *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(struct cvd_rotation_view *out, const char *fmt, ...)
{
    size_t len = strlen(out->waiting), room = sizeof out->waiting - len;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(out->waiting + len, room, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n >= room)
        memcpy(out->waiting + sizeof out->waiting - 4, "...", 4);
}

static const struct cvd_node_rec *find_node(const struct cvd_node_rec *all,
                                            size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(all[i].name, name))
            return &all[i];
    return NULL;
}

/* DistributingKEK: the members (not Removed) without their copy. */
static int distributing(struct cvd *d, const struct cvd_cluster_rec *cur,
                        const struct cvd_node_rec *nodes, size_t nn,
                        struct cvd_rotation_view *out)
{
    struct cvd_kek_rec rec;
    unsigned missing = 0;
    int r = 0;

    for (size_t i = 0; r == 0 && i < nn; i++) {
        if (nodes[i].state == CVD_NODE_REMOVED)
            continue;
        memset(&rec, 0, sizeof rec);
        r = d->meta->ops->kek_get(d->meta, cur->target_gen, nodes[i].name,
                                  &rec);
        cvd_kek_rec_free(&rec);
        if (r == -ENOENT) {
            say(out, "%s%s (%s)", missing++ ? ", " : "waiting for node ",
                nodes[i].name, state_name(&nodes[i]));
            r = 0;
        }
    }
    if (r == 0 && missing)
        say(out, " to receive KEK generation %u", cur->target_gen);
    return r;
}

/* A volume EncryptingDEKs still waits for: one to re-wrap, or one being
 * created at the old generation. */
static int waits(const struct cvd_volume_rec *v, uint32_t g)
{
    return cvd_rotation_needs_rewrap(v, g) ||
           (v->kek_gen && v->kek_gen != g &&
            !strcmp(v->state, CVD_VOL_CREATING));
}

/* EncryptingDEKs: per node, the first volume not yet at the target and
 * how many more. */
static void encrypting(const struct cvd_cluster_rec *cur,
                       const struct cvd_volume_rec *v, size_t nv,
                       const struct cvd_node_rec *nodes, size_t nn,
                       struct cvd_rotation_view *out)
{
    uint32_t g = cur->target_gen;
    char *named = calloc(nv ? nv : 1, 1);  /* counted under a first one */
    size_t i, j;

    for (i = 0; i < nv; i++) {
        int moves = v[i].kek_gen && strcmp(v[i].state, CVD_VOL_PENDING) &&
                    strcmp(v[i].state, CVD_VOL_DELETING);
        out->total += moves;
        out->done += moves && v[i].kek_gen == g;
    }
    for (i = 0; i < nv; i++) {
        const struct cvd_node_rec *n;
        unsigned more = 0;

        if (!waits(&v[i], g) || (named && named[i]))
            continue;
        for (j = i + 1; j < nv; j++)
            if (!strcmp(v[j].node, v[i].node) && waits(&v[j], g)) {
                more++;
                if (named)
                    named[j] = 1;
            }
        n = find_node(nodes, nn, v[i].node);
        say(out, "%swaiting for node %s (%s) to re-wrap volume %s",
            out->waiting[0] ? "; " : "", v[i].node[0] ? v[i].node : "?",
            n ? state_name(n) : "unknown", v[i].name);
        if (more)
            say(out, " and %u more", more);
    }
    free(named);
}

int cvd_rotation_cluster_view(struct cvd_cluster *c,
                              const struct cvd_cluster_rec *cur,
                              struct cvd_rotation_view *out)
{
    struct cvd *d = c->d;
    struct cvd_node_rec *nodes = NULL;
    struct cvd_volume_rec *vols = NULL;
    size_t nn = 0, nv = 0;
    int r;

    memset(out, 0, sizeof *out);
    if (!cur->target_gen)
        return 0;               /* no rotation yet */
    r = d->meta->ops->node_list(d->meta, &nodes, &nn);
    if (r == 0 && !strcmp(cur->rotation, CVD_ROT_DISTRIBUTE))
        r = distributing(d, cur, nodes, nn, out);
    /* After a rotation too: how many volumes the last one left at its
     * target. */
    if (r == 0 && strcmp(cur->rotation, CVD_ROT_DISTRIBUTE)) {
        r = d->meta->ops->volume_list(d->meta, &vols, &nv);
        if (r == 0)
            encrypting(cur, vols, nv, nodes, nn, out);
        if (!strcmp(cur->rotation, CVD_ROT_NONE))
            out->waiting[0] = '\0';
    }
    free(nodes);
    free(vols);
    return r;
}

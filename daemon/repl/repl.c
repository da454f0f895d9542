/* Replication's entry points (repl.h): starting the replica side and the
 * repair loop, the replica sets' life (made with a volume, resized by
 * `volume replicas`, removed with it), and who holds a replica. */
#include "writer-internal.h"
#include "audit/audit.h"
#include "cluster/cluster.h"
#include "core/error.h"
#include "core/secmem.h"
#include "daemon.h"
#include "log.h"
#include "peer/peer.h"
#include "volumes/snapshots.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long volume create waits for its new replicas to be in sync. */
#define REPL_CREATE_WAIT_MS 30000

int cvd_repl_start(struct cvd *d)
{
    struct cvd_repl *rp;
    int r;

    if (!d->meta->clustered || !d->peer)
        return 0;
    if (!(rp = calloc(1, sizeof *rp)))
        return cv_error(-ENOMEM, "replication: out of memory");
    rp->d = d;
    pthread_mutex_init(&rp->lock, NULL);
    pthread_cond_init(&rp->gone, NULL);
    d->repl = rp;
    if ((r = repl_replica_start(d)) < 0)
        goto fail;
    if ((r = repl_repair_start(d)) < 0) {
        repl_replica_stop(d);
        goto fail;
    }
    return 0;
fail:
    d->repl = NULL;
    pthread_cond_destroy(&rp->gone);
    pthread_mutex_destroy(&rp->lock);
    free(rp);
    return r;
}

void cvd_repl_stop(struct cvd *d)
{
    struct cvd_repl *rp = d->repl;

    if (!rp)
        return;
    repl_repair_stop(d);
    repl_replica_stop(d);
    if (rp->writers)
        cvd_warn("replication: volume %s still has a writer at shutdown",
                 rp->writers->volume);
    d->repl = NULL;
    pthread_cond_destroy(&rp->gone);
    pthread_mutex_destroy(&rp->lock);
    free(rp);
}

int repl_set_lookup(struct cvd *d, const char *volume,
                    struct cvd_replica_set *s)
{
    int r;

    if (!d->meta->clustered)
        return 0;
    r = d->meta->ops->replicas_get(d->meta, volume, s);
    if (r == -ENOENT || r == -EOPNOTSUPP)
        return 0;
    if (r < 0)
        return cv_error_prefix(r, "volume %s: its replica set", volume);
    return 1;
}

int cvd_repl_is_replica(struct cvd *d, const char *volume)
{
    struct cvd_replica_set s;
    int r;

    if (!d->meta->clustered)
        return -ENOENT;
    if ((r = d->meta->ops->replicas_get(d->meta, volume, &s)) < 0)
        return r == -EOPNOTSUPP ? -ENOENT : r;
    for (unsigned i = 0; i < s.n; i++)
        if (!strcmp(s.r[i].node, d->cfg.node_name))
            return 1;
    return 0;
}

static int check_counts(const char *volume, unsigned n, unsigned *min)
{
    if (n < 1 || n > CVD_MAX_REPLICAS)
        return cv_error(-EINVAL, "volume %s: %u replicas: 1 to %d", volume,
                        n, CVD_MAX_REPLICAS);
    if (*min == 0)
        *min = n > 1 ? n - 1 : 1;
    if (*min > n)
        return cv_error(-EINVAL, "volume %s: min-replicas %u is more than "
                        "its %u replicas", volume, *min, n);
    return 0;
}

int cvd_repl_parent_nodes(struct cvd *d, const char *parent,
                          char (*out)[CVD_NAME_MAX + 1], unsigned *n)
{
    struct cvd_replica_set s;
    struct cvd_volume_rec v;
    int r = d->meta->ops->replicas_get(d->meta, parent, &s);

    *n = 0;
    if (r == -ENOENT || r == -EOPNOTSUPP) {
        /* No set: its one chain is on the node it was made on. */
        cv_clear_error();
        if ((r = d->meta->ops->volume_get(d->meta, parent, &v)) < 0)
            return cv_error_prefix(r, "volume %s", parent);
        snprintf(out[(*n)++], CVD_NAME_MAX + 1, "%s",
                 v.node[0] ? v.node : d->cfg.node_name);
        return 0;
    }
    if (r < 0)
        return cv_error_prefix(r, "volume %s: its replica set", parent);
    for (unsigned i = 0; i < s.n; i++)
        if (s.r[i].state == CVD_REPLICA_INSYNC)
            snprintf(out[(*n)++], CVD_NAME_MAX + 1, "%s", s.r[i].node);
    return 0;
}

/* "n1, n2" of nodes, for messages. */
static void node_words(const char (*nodes)[CVD_NAME_MAX + 1], unsigned n,
                       char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (unsigned i = 0; i < n && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
                         nodes[i]);

        used += w < 0 ? 0 : (size_t)w;
    }
    if (!n)
        snprintf(buf, len, "none");
}

/* Placement of n replicas of volume, none in exclude: any Online member,
 * except that a clone's go only where its parent has an InSync replica
 * (its chain reads through the parent's layers on its own node). */
static int place(struct cvd *d, const char *volume, unsigned n,
                 const char (*exclude)[CVD_NAME_MAX + 1], unsigned nexclude,
                 char (*out)[CVD_NAME_MAX + 1])
{
    char pvol[CVD_NAME_MAX + 1], psnap[CVD_NAME_MAX + 1], words[256];
    char within[CVD_MAX_REPLICAS][CVD_NAME_MAX + 1];
    struct cvd_volume_rec v;
    unsigned nwithin = 0;
    int r = d->meta->ops->volume_get(d->meta, volume, &v);

    if (r < 0)
        return cv_error_prefix(r, "volume %s", volume);
    if (!v.parent[0]) {
        r = cvd_node_place_replicas(d, n, exclude, nexclude, out);
        return r < 0 ? cv_error_prefix(r, "volume %s", volume) : 0;
    }
    if ((r = cvd_split_snapshot(v.parent, pvol, psnap)) < 0 ||
        (r = cvd_repl_parent_nodes(d, pvol, within, &nwithin)) < 0)
        return cv_error_prefix(r, "volume %s", volume);
    r = cvd_node_place_replicas_within(d, n, exclude, nexclude,
                                       (const char (*)[CVD_NAME_MAX + 1])
                                       within, nwithin, out);
    if (r == -ENOSPC) {
        node_words((const char (*)[CVD_NAME_MAX + 1])within, nwithin,
                   words, sizeof words);
        return cv_error(-ENOSPC, "volume %s: %u more replica%s of a clone "
                        "need%s as many Online nodes holding an InSync "
                        "replica of its parent %s (%s%s)", volume, n,
                        n == 1 ? "" : "s", n == 1 ? "s" : "", pvol, words,
                        nexclude ? ", less those it has" : "");
    }
    return r;
}

/* Waits (up to ms) for every replica of the set to be InSync. */
static int wait_insync(struct cvd *d, const char *volume, int ms)
{
    struct timespec step = { 0, 200 * 1000000L };

    for (int waited = 0; waited < ms; waited += 200) {
        struct cvd_replica_set s;
        unsigned in = 0;

        if (d->meta->ops->replicas_get(d->meta, volume, &s) < 0)
            return -EIO;
        for (unsigned i = 0; i < s.n; i++)
            in += s.r[i].state == CVD_REPLICA_INSYNC;
        if (in == s.n)
            return 0;
        nanosleep(&step, NULL);
    }
    return -ETIMEDOUT;
}

int cvd_repl_create_set(struct cvd *d, const char *volume, unsigned n,
                        unsigned min)
{
    char nodes[CVD_MAX_REPLICAS][CVD_NAME_MAX + 1];
    struct cvd_replica_set s;
    int r;

    if (n < 2)
        return 0;
    if (!d->meta->clustered)
        return cv_error(-EINVAL, "volume %s: %u replicas need a cluster",
                        volume, n);
    if ((r = check_counts(volume, n, &min)) < 0)
        return r;
    if ((r = place(d, volume, n, NULL, 0, nodes)) < 0)
        return r;
    memset(&s, 0, sizeof s);
    snprintf(s.volume, sizeof s.volume, "%s", volume);
    s.want = n;
    s.min = min;
    s.clean = 1;
    s.n = n;
    for (unsigned i = 0; i < n; i++) {
        memcpy(s.r[i].node, nodes[i], sizeof s.r[i].node);
        s.r[i].node[CVD_NAME_MAX] = '\0';
        s.r[i].state = i == 0 ? CVD_REPLICA_INSYNC : CVD_REPLICA_REBUILDING;
        s.r[i].since = time(NULL);
    }
    if ((r = d->meta->ops->replicas_put(d->meta, &s)) < 0)
        return cv_error_prefix(r, "volume %s: its replica set", volume);
    cvd_info("volume %s: replica set of %u (min %u) on %s%s%s%s%s", volume,
             n, min, nodes[0], n > 1 ? ", " : "", n > 1 ? nodes[1] : "",
             n > 2 ? ", " : "", n > 2 ? nodes[2] : "");
    if (d->repl)
        repl_repair_kick(d);
    /* A new volume's replicas hold nothing but its header: quick.  One
     * that takes longer goes on in the background. */
    if (wait_insync(d, volume, REPL_CREATE_WAIT_MS) < 0)
        cvd_warn("volume %s: its replicas are not in sync after %d s: the "
                 "repair loop goes on", volume, REPL_CREATE_WAIT_MS / 1000);
    return 0;
}

/* The node holding the attach record, "" if none. */
static void writer_of(struct cvd *d, const char *volume, char *node,
                      size_t len)
{
    struct cvd_attach_rec a;

    node[0] = '\0';
    if (d->meta->ops->attach_get(d->meta, volume, &a) == 0)
        snprintf(node, len, "%s", a.node);
}

/* Drops replicas from s down to n: the not InSync first, newest first,
 * never the writer's nor this node's; removed nodes into gone. */
static int shrink(struct cvd_replica_set *s, unsigned n, const char *writer,
                  const char *self, char (*gone)[CVD_NAME_MAX + 1],
                  unsigned *ngone)
{
    for (int pass = 0; pass < 2 && s->n > n; pass++)
        for (unsigned i = s->n; i-- > 0 && s->n > n;) {
            struct cvd_replica *r = &s->r[i];

            if (!strcmp(r->node, writer) || !strcmp(r->node, self) ||
                (pass == 0 && r->state == CVD_REPLICA_INSYNC))
                continue;
            snprintf(gone[(*ngone)++], CVD_NAME_MAX + 1, "%s", r->node);
            memmove(r, r + 1, (s->n - i - 1) * sizeof *r);
            s->n--;
        }
    if (s->n > n)
        return cv_error(-EBUSY, "volume %s: cannot go below %u replicas: "
                        "its writer's and this node's stay", s->volume,
                        s->n);
    return 0;
}

/* 1 if clone (a volume record) has its chain on node: in its set, or
 * made there when it has none. */
static int clone_on(struct cvd *d, const struct cvd_volume_rec *clone,
                    const char *node)
{
    struct cvd_replica_set s;

    if (d->meta->ops->replicas_get(d->meta, clone->name, &s) < 0) {
        cv_clear_error();
        return !strcmp(clone->node, node);
    }
    for (unsigned i = 0; i < s.n; i++)
        if (!strcmp(s.r[i].node, node))
            return 1;
    return 0;
}

/* A replica of volume that a clone's replica on the same node reads
 * through stays: -EBUSY naming the clone (docs/replication.md, "Clones"). */
static int clones_keep(struct cvd *d, const char *volume,
                       const char (*gone)[CVD_NAME_MAX + 1], unsigned ngone)
{
    struct cvd_volume_rec *all = NULL;
    size_t n = 0, vl = strlen(volume);
    int r = d->meta->ops->volume_list(d->meta, &all, &n);

    for (size_t i = 0; r == 0 && i < n; i++) {
        const char *p = all[i].parent;

        if (strncmp(p, volume, vl) || p[vl] != '@')
            continue;
        for (unsigned k = 0; r == 0 && k < ngone; k++)
            if (clone_on(d, &all[i], gone[k]))
                r = cv_error(-EBUSY, "volume %s: its replica on node %s "
                             "stays: clone %s reads through it there "
                             "(remove that replica of %s, or flatten it, "
                             "first)", volume, gone[k], all[i].name,
                             all[i].name);
    }
    free(all);
    return r;
}

static int grow(struct cvd *d, struct cvd_replica_set *s, unsigned n)
{
    char exclude[CVD_MAX_REPLICAS][CVD_NAME_MAX + 1];
    char nodes[CVD_MAX_REPLICAS + 1][CVD_NAME_MAX + 1];
    unsigned add = n - s->n, k = 0;
    int r;

    for (unsigned i = 0; i < s->n; i++)
        snprintf(exclude[i], sizeof exclude[i], "%s", s->r[i].node);
    /* Placement puts this node first unless excluded: ask one more. */
    if ((r = place(d, s->volume, add + 1, exclude, s->n, nodes)) < 0 &&
        (r = place(d, s->volume, add, exclude, s->n, nodes)) < 0)
        return r;
    for (unsigned i = 0; k < add && i < add + 1; i++) {
        int dup = 0;

        for (unsigned j = 0; j < s->n; j++)
            dup |= !strcmp(s->r[j].node, nodes[i]);
        if (dup || !nodes[i][0])
            continue;
        memset(&s->r[s->n], 0, sizeof s->r[0]);
        memcpy(s->r[s->n].node, nodes[i], sizeof s->r[0].node);
        s->r[s->n].node[CVD_NAME_MAX] = '\0';
        s->r[s->n].state = CVD_REPLICA_REBUILDING;
        s->r[s->n].since = time(NULL);
        s->n++;
        k++;
    }
    return 0;
}

/* REPL_DELETE on node (best effort: a node that is down keeps an orphan
 * its next start finds outside any set). */
static void delete_on(struct cvd *d, const char *volume, uint64_t epoch,
                      const char *node)
{
    struct repl_req q = { .type = REPL_DELETE, .epoch = epoch };
    struct cvd_node_rec rec;
    void *req = NULL, *resp = NULL;
    size_t len = 0, rlen = 0;
    uint16_t rtype = 0;

    snprintf(q.volume, sizeof q.volume, "%s", volume);
    if (d->meta->ops->node_get(d->meta, node, &rec) < 0 ||
        repl_encode(&q, &req, &len) < 0 ||
        cvd_peer_call(d, node, rec.address, REPL_DELETE, req, len, &resp,
                      &rlen, &rtype) < 0)
        cvd_warn("volume %s: replica %s not deleted: %s", volume, node,
                 cv_last_error());
    free(req);
    if (resp)
        cv_secmem_free(resp, rlen);
}

static int new_set(struct cvd *d, const char *volume,
                   struct cvd_replica_set *s)
{
    struct cvd_volume_rec v;
    int r;

    if ((r = d->meta->ops->volume_get(d->meta, volume, &v)) < 0)
        return cv_error_prefix(r, "volume %s", volume);
    memset(s, 0, sizeof *s);
    snprintf(s->volume, sizeof s->volume, "%s", volume);
    s->clean = 1;
    s->n = 1;
    snprintf(s->r[0].node, sizeof s->r[0].node, "%s",
             v.node[0] ? v.node : d->cfg.node_name);
    s->r[0].state = CVD_REPLICA_INSYNC;
    s->r[0].since = time(NULL);
    return 0;
}

int cvd_repl_set_count(struct cvd *d, const char *actor, const char *volume,
                       unsigned n, unsigned min)
{
    char gone[CVD_MAX_REPLICAS][CVD_NAME_MAX + 1], writer[CVD_NAME_MAX + 1];
    struct cvd_repl_writer *w;
    struct cvd_replica_set s;
    unsigned ngone = 0;
    int r;

    if (!d->meta->clustered)
        return cv_error(-EINVAL, "volume %s: replicas need a cluster",
                        volume);
    if ((r = check_counts(volume, n, &min)) < 0)
        return r;
    r = d->meta->ops->replicas_get(d->meta, volume, &s);
    if (r == -ENOENT && n == 1)
        return 0;
    if (r == -ENOENT)
        r = new_set(d, volume, &s);
    if (r < 0)
        return cv_error_prefix(r, "volume %s: its replica set", volume);
    writer_of(d, volume, writer, sizeof writer);
    if (n < s.n) {
        r = shrink(&s, n, writer, d->cfg.node_name, gone, &ngone);
        if (r == 0)
            r = clones_keep(d, volume,
                            (const char (*)[CVD_NAME_MAX + 1])gone, ngone);
    } else if (n > s.n) {
        r = grow(d, &s, n);
    }
    if (r == 0) {
        s.want = n;
        s.min = min;
        r = n == 1 ? d->meta->ops->replicas_remove(d->meta, volume)
                   : d->meta->ops->replicas_put(d->meta, &s);
    }
    if (r < 0) {
        cvd_audit(d->audit, actor, "volume.replicas", volume, 0, "%s",
                  cv_last_error());
        return r;
    }
    /* A writer here follows the set now (one elsewhere: its node got
     * this request, forwarded). */
    if ((w = repl_writer_find(d, volume))) {
        if (repl_writer_sync_set(w) < 0)
            cvd_warn("%s", cv_last_error());
        repl_writer_put(w);
    }
    for (unsigned i = 0; i < ngone; i++)
        delete_on(d, volume, s.epoch, gone[i]);
    cvd_info("volume %s: %u replicas (min %u)", volume, n, min);
    cvd_audit(d->audit, actor, "volume.replicas", volume, 1,
              "%u replicas, min %u", n, min);
    if (d->repl)
        repl_repair_kick(d);
    return 0;
}

int cvd_repl_delete(struct cvd *d, const char *volume)
{
    struct cvd_replica_set s;
    char dir[512];
    int r;

    if ((r = repl_set_lookup(d, volume, &s)) <= 0)
        return r;
    for (unsigned i = 0; i < s.n; i++)
        if (strcmp(s.r[i].node, d->cfg.node_name))
            delete_on(d, volume, s.epoch, s.r[i].node);
    if ((r = d->meta->ops->replicas_remove(d->meta, volume)) < 0)
        return cv_error_prefix(r, "volume %s: removing its replica set",
                               volume);
    /* This node's records of the others. */
    if (repl_state_dir(d->cfg.data_dir, volume, dir, sizeof dir) == 0) {
        for (unsigned i = 0; i < s.n; i++)
            repl_missed_remove(dir, s.r[i].node);
        repl_missed_remove(dir, REPL_ACTIVE_NODE);
    }
    cvd_info("volume %s: replica set removed", volume);
    return 0;
}

/* What the repair loop writes into a replica set: a copy's progress
 * (sync_done/sync_total/behind, shown by volume info) and a replica's
 * state when a copy cannot go on (Failed: its disk is full, ...).  Each
 * is a compare-and-set on the set's revision, retried: the writer
 * changes the set too (OutOfSync, InSync at the end of a copy). */
#include "daemon.h"
#include "core/error.h"
#include "log.h"
#include "meta/meta.h"
#include "repair-internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define SET_CAS_TRIES 8

int64_t repair_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct cvd_replica *find_replica(struct cvd_replica_set *s,
                                        const char *node)
{
    unsigned i;

    for (i = 0; i < s->n; i++)
        if (!strcmp(s->r[i].node, node))
            return &s->r[i];
    return NULL;
}

/* Reads the set, lets change() edit node's entry (it returns 1 to write,
 * 0 to leave the set as it is, or a negative errno), writes it if the
 * revision did not move, else tries again. */
static int set_update(struct cvd *d, const char *volume, const char *node,
                      int (*change)(struct cvd_replica *r, void *arg),
                      void *arg)
{
    struct cvd_replica_set s;
    struct cvd_replica *r;
    int tries, rc = -EBUSY;

    for (tries = 0; tries < SET_CAS_TRIES && rc == -EBUSY; tries++) {
        rc = d->meta->ops->replicas_get(d->meta, volume, &s);
        if (rc < 0)
            break;
        r = find_replica(&s, node);
        if (!r) {
            rc = cv_error(-ENOENT, "volume %s: node %s holds no replica "
                          "of it now", volume, node);
            break;
        }
        rc = change(r, arg);
        if (rc <= 0)
            break;
        rc = d->meta->ops->replicas_put(d->meta, &s);
    }
    if (rc == -EBUSY)
        rc = cv_error(-EBUSY, "volume %s: replica %s: its set changed %d "
                      "times while it was updated", volume, node,
                      SET_CAS_TRIES);
    return rc < 0 ? rc : 0;
}

struct progress {
    uint64_t done, total;
};

static int set_progress(struct cvd_replica *r, void *arg)
{
    const struct progress *p = arg;

    if (r->state != CVD_REPLICA_OUTOFSYNC &&
        r->state != CVD_REPLICA_REBUILDING)
        return 0;
    if (r->sync_done == p->done && r->sync_total == p->total)
        return 0;
    r->sync_done = p->done;
    r->sync_total = p->total;
    r->behind = p->total > p->done ? p->total - p->done : 0;
    return 1;
}

void repair_progress(struct repair_job *j, int force)
{
    struct progress p = { j->done, j->total };
    int64_t now = repair_now_ms();

    if (!force && now - j->reported_ms < REPAIR_PROGRESS_MS)
        return;
    j->reported_ms = now;
    if (p.done > p.total)
        p.done = p.total;
    /* Progress is only shown: a failed report stops no copy. */
    if (set_update(j->d, j->volume, j->node, set_progress, &p) < 0)
        cvd_debug("volume %s: replica %s: progress not recorded: %s",
                  j->volume, j->node, cv_last_error());
}

struct new_state {
    enum cvd_replica_state state;
    const char *error;
};

static int set_state(struct cvd_replica *r, void *arg)
{
    const struct new_state *ns = arg;

    if (r->state == CVD_REPLICA_INSYNC || r->state == ns->state)
        return 0;
    r->state = ns->state;
    r->since = time(NULL);
    r->sync_done = r->sync_total = 0;
    snprintf(r->error, sizeof r->error, "%s", ns->error ? ns->error : "");
    return 1;
}

int repair_set_state(struct cvd *d, const char *volume, const char *node,
                     enum cvd_replica_state state, const char *error)
{
    struct new_state ns = { state, error };

    return set_update(d, volume, node, set_state, &ns);
}

/* Liveness and the watch.
 *
 * A node is Online while its alive key exists: it is attached to an etcd
 * lease of node-lease-ttl seconds that the live thread keeps alive every
 * ttl/3, rewriting the key's value (pid, address, KEK generations) and its
 * last-seen time.  A killed node's lease expires and the key goes with it.
 * A lease that expired while etcd was out of reach is replaced.
 *
 * The store's watch calls node_event for every change; it hands each to
 * the registered listeners (rotation) and turns the ones this module
 * cares about into work for the event thread: a secret or class that
 * appeared may unblock this node's pending volumes; a member that went
 * Online or Offline is logged. */
#include "cluster.h"
#include "cluster-internal.h"
#include "daemon.h"
#include "core/error.h"
#include "log.h"
#include "volumes/volumes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cluster_wait(struct cvd_node *n, int *kick, unsigned seconds)
{
    struct timespec until;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += seconds;
    while (!n->stop && !(kick && *kick) &&
           pthread_cond_timedwait(&n->wake, &n->lock, &until) != ETIMEDOUT)
        ;
    if (kick)
        *kick = 0;
    return n->stop;
}

static unsigned lease_ttl(struct cvd *d)
{
    return d->cfg.node_lease_ttl ? d->cfg.node_lease_ttl : 10;
}

/* The alive key's value: what this node says about itself. */
static int alive_json(struct cvd *d, char **out)
{
    json_object *o = json_object_new_object(), *g = json_object_new_array();
    uint32_t *gens = NULL;
    size_t n = 0, i;
    int r = d->meta->ops->kek_list(d->meta, d->cfg.node_name, &gens, &n);

    for (i = 0; r == 0 && i < n; i++)
        json_object_array_add(g, json_object_new_int64(gens[i]));
    free(gens);
    json_object_object_add(o, "pid", json_object_new_int64(getpid()));
    json_object_object_add(o, "kekGenerations", g);
    json_object_object_add(o, "address",
                           json_object_new_string(d->cfg.peer_listen));
    *out = r == 0 ? strdup(json_object_to_json_string_ext(
                               o, JSON_C_TO_STRING_PLAIN)) : NULL;
    json_object_put(o);
    if (r == 0 && !*out)
        r = cv_error(-ENOMEM, "cluster: out of memory");
    return r;
}

static int put_alive(struct cvd_node *n)
{
    struct cvd *d = n->d;
    char *json = NULL;
    int r = alive_json(d, &json);

    if (r == 0)
        r = d->meta->ops->alive_put(d->meta, d->cfg.node_name, n->lease,
                                    json);
    free(json);
    return r;
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* etcd answered a grant or keepalive sent at start: the lease's TTL runs
 * from no earlier than then. */
static void lease_answered(struct cvd_node *n, int64_t start)
{
    __atomic_store_n(&n->lease_ok_ms, start ? start : 1, __ATOMIC_RELEASE);
}

static int new_lease(struct cvd_node *n)
{
    struct cvd *d = n->d;
    int64_t id, start = monotonic_ms();
    int r = d->meta->ops->lease_grant(d->meta, (int64_t)lease_ttl(d), &id);

    if (r == 0) {   /* read by other threads (cvd_node_lease) */
        __atomic_store_n(&n->lease, id, __ATOMIC_RELEASE);
        lease_answered(n, start);
    }
    return r;
}

int64_t cvd_node_lease_valid_ms(struct cvd *d)
{
    struct cvd_node *n = d->node;
    int64_t ok;

    if (!n || !__atomic_load_n(&n->lease, __ATOMIC_ACQUIRE))
        return 0;
    ok = __atomic_load_n(&n->lease_ok_ms, __ATOMIC_ACQUIRE);
    if (!ok)
        return 0;
    return ok + (int64_t)lease_ttl(d) * 1000 - monotonic_ms();
}

/* One round: keep the lease alive (or replace an expired one) and say we
 * are here.  Logs each change between reachable and not once. */
static void live_round(struct cvd_node *n, int *unreachable)
{
    struct cvd *d = n->d;
    int64_t start = monotonic_ms();
    int r = d->meta->ops->lease_keepalive(d->meta, n->lease);

    if (r == 0)
        lease_answered(n, start);
    if (r == -ENOENT) {
        cvd_warn("cluster: this node's lease %lld expired (etcd was out of "
                 "reach longer than %u s?): taking a new one",
                 (long long)n->lease, lease_ttl(d));
        r = new_lease(n);
    }
    if (r == 0)
        r = put_alive(n);
    if (r < 0 && !*unreachable) {
        cvd_err("cluster: node %s cannot renew its liveness: %s (volumes "
                "open stay served; changes are refused until etcd answers)",
                d->cfg.node_name, cv_last_error());
        *unreachable = 1;
    } else if (r == 0 && *unreachable) {
        cvd_info("cluster: etcd answers again; node %s is Online",
                 d->cfg.node_name);
        *unreachable = 0;
    }
}

static void *live_loop(void *arg)
{
    struct cvd_node *n = arg;
    unsigned every = lease_ttl(n->d) / 3 ? lease_ttl(n->d) / 3 : 1;
    int unreachable = 0;

    pthread_mutex_lock(&n->lock);
    while (!cluster_wait(n, NULL, every)) {
        pthread_mutex_unlock(&n->lock);
        live_round(n, &unreachable);
        pthread_mutex_lock(&n->lock);
    }
    pthread_mutex_unlock(&n->lock);
    return NULL;
}

int cluster_live_start(struct cvd_node *n)
{
    int r = new_lease(n);

    if (r == 0)
        r = put_alive(n);
    if (r < 0)
        return cv_error_prefix(r, "cluster: node %s: its liveness key",
                               n->d->cfg.node_name);
    r = pthread_create(&n->live_thread, NULL, live_loop, n);
    if (r != 0)
        return cv_error(-r, "cluster: starting the liveness thread: %s",
                        strerror(r));
    n->live_started = 1;
    cvd_info("cluster %s: node %s is Online (lease %lld, %u s)", n->id,
             n->d->cfg.node_name, (long long)n->lease, lease_ttl(n->d));
    return 0;
}

/* ---- the watch -------------------------------------------------------- */

/* n->lock held. */
static int was_online(struct cvd_node *n, const char *name)
{
    size_t i;

    for (i = 0; i < n->nonline; i++)
        if (!strcmp(n->online[i], name))
            return 1;
    return 0;
}

static void node_event(void *arg, enum cvd_meta_event ev, const char *name,
                       int deleted)
{
    struct cvd_node *n = arg;
    struct cluster_listener l[CLUSTER_LISTENERS_MAX];
    size_t count, i;
    int stopped;

    /* The store's watch outlives cvd_node_stop (it ends with the store):
     * nothing is done once stopped. */
    pthread_mutex_lock(&n->lock);
    stopped = n->stop;
    pthread_mutex_unlock(&n->lock);
    if (stopped)
        return;
    pthread_mutex_lock(&n->listen_lock);
    count = n->nlisteners;
    memcpy(l, n->listeners, count * sizeof *l);
    pthread_mutex_unlock(&n->listen_lock);
    for (i = 0; i < count; i++)
        l[i].cb(l[i].arg, ev, name, deleted);

    pthread_mutex_lock(&n->lock);
    if ((ev == CVD_META_EV_SECRET || ev == CVD_META_EV_CLASS) && !deleted)
        n->kick_pending = 1;
    if (ev == CVD_META_EV_RESYNC)
        n->kick_pending = n->kick_members = 1;
    /* A live node rewrites its alive key every few seconds: only a key
     * that went, or one not known to be Online, changes who is. */
    if (ev == CVD_META_EV_NODE || (ev == CVD_META_EV_ALIVE &&
                                   (deleted || !was_online(n, name)))) {
        n->kick_members = 1;
        n->kick_join = 1;       /* a member came: a joining node asks it */
    }
    pthread_cond_broadcast(&n->wake);
    pthread_mutex_unlock(&n->lock);
}

/* Logs who went Online or Offline since the last look. */
static void members_changed(struct cvd_node *n)
{
    struct cvd *d = n->d;
    struct cvd_node_rec *all = NULL;
    char (*now)[CVD_NAME_MAX + 1];
    size_t count = 0, i, k = 0;

    if (d->meta->ops->node_list(d->meta, &all, &count) < 0) {
        cv_clear_error();
        return;
    }
    now = calloc(count ? count : 1, sizeof *now);
    for (i = 0; now && i < count; i++) {
        int on = all[i].state == CVD_NODE_MEMBER && all[i].alive;

        if (on)
            snprintf(now[k++], sizeof *now, "%s", all[i].name);
        if (on && !was_online(n, all[i].name))
            cvd_info("cluster: node %s is Online", all[i].name);
        else if (!on && was_online(n, all[i].name))
            cvd_warn("cluster: node %s is %s", all[i].name,
                     all[i].state == CVD_NODE_REMOVED ? "Removed" :
                     "Offline (its lease expired or it stopped)");
        if (!strcmp(all[i].name, d->cfg.node_name) &&
            all[i].state == CVD_NODE_REMOVED)
            cvd_err("cluster: this node (%s) was removed from the cluster; "
                    "the next start is refused", all[i].name);
    }
    if (now) {
        pthread_mutex_lock(&n->lock);
        free(n->online);
        n->online = now;
        n->nonline = k;
        pthread_mutex_unlock(&n->lock);
    }
    free(all);
}

static void *event_loop(void *arg)
{
    struct cvd_node *n = arg;
    int pending, members;

    pthread_mutex_lock(&n->lock);
    for (;;) {
        while (!n->stop && !(n->serving && n->ready && n->kick_pending) &&
               !n->kick_members)
            pthread_cond_wait(&n->wake, &n->lock);
        if (n->stop)
            break;
        pending = n->serving && n->ready && n->kick_pending;
        members = n->kick_members;
        if (pending)
            n->kick_pending = 0;
        n->kick_members = 0;
        pthread_mutex_unlock(&n->lock);
        if (members)
            members_changed(n);
        if (pending && cvd_volumes_retry_pending(n->d, NULL) < 0)
            cvd_warn("cluster: retrying pending volumes: %s",
                     cv_last_error());
        pthread_mutex_lock(&n->lock);
    }
    pthread_mutex_unlock(&n->lock);
    return NULL;
}

int cluster_watch_start(struct cvd_node *n)
{
    struct cvd *d = n->d;
    int r = pthread_create(&n->event_thread, NULL, event_loop, n);

    if (r != 0)
        return cv_error(-r, "cluster: starting the event thread: %s",
                        strerror(r));
    n->event_started = 1;
    pthread_mutex_lock(&n->lock);
    n->kick_members = 1;
    pthread_cond_broadcast(&n->wake);
    pthread_mutex_unlock(&n->lock);
    r = d->meta->ops->watch(d->meta, node_event, n);
    return r < 0 ? cv_error_prefix(r, "cluster: watching etcd") : 0;
}

void cluster_threads_stop(struct cvd_node *n)
{
    pthread_mutex_lock(&n->lock);
    n->stop = 1;
    pthread_cond_broadcast(&n->wake);
    pthread_mutex_unlock(&n->lock);
    /* The join thread may start the live thread: it goes first. */
    if (n->join_started)
        pthread_join(n->join_thread, NULL);
    if (n->live_started)
        pthread_join(n->live_thread, NULL);
    if (n->event_started)
        pthread_join(n->event_thread, NULL);
    n->join_started = n->live_started = n->event_started = 0;
}

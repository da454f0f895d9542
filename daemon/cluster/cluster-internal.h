/* The parts of daemon/cluster/ shared by its files. */
#ifndef CRYPTVOLD_CLUSTER_INTERNAL_H
#define CRYPTVOLD_CLUSTER_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "meta/meta.h"

struct cvd;

#define CLUSTER_LISTENERS_MAX 16
/* A joining node with no member to ask says why this often. */
#define CLUSTER_JOIN_LOG_S 10
/* ... and asks again this often. */
#define CLUSTER_JOIN_RETRY_S 2

struct cluster_listener {
    cvd_meta_watch_fn cb;
    void *arg;
};

struct cvd_node {
    struct cvd *d;
    char id[40];                /* the cluster's */
    /* Under lock: what the threads share. */
    pthread_mutex_t lock;
    pthread_cond_t wake;        /* on a monotonic clock */
    int stop;
    int stopped;                /* cvd_node_stop ran (main thread only) */
    int ready;                  /* has the seal key and its KEKs */
    char why[256];              /* why not, while not ready */
    int serving;                /* cvd_node_serve was called */
    int kick_pending;           /* the event thread retries pending ones */
    int kick_members;           /* ... re-reads who is Online */
    int kick_join;              /* the join thread tries again now */
    json_object *last_list;     /* the last node list, for when etcd is gone */

    /* Locked, CVD_SEAL_KEY_LEN, once ready: the store's (it frees it). */
    unsigned char *seal_key;
    unsigned char *node_key;    /* locked, CVD_NODEKEY_LEN */

    pthread_mutex_t listen_lock;
    struct cluster_listener listeners[CLUSTER_LISTENERS_MAX];
    size_t nlisteners;

    /* Who the event thread last saw Online (to log the changes, and so
     * that the watch ignores the alive keys' refreshes): written by the
     * event thread under lock, read by the watch under lock. */
    char (*online)[CVD_NAME_MAX + 1];
    size_t nonline;

    int64_t lease;              /* live thread only, once ready */
    /* CLOCK_MONOTONIC ms at the start of the last keepalive (or grant)
     * etcd answered: the lease lives at least its TTL from then.  Written
     * by the live thread, read by writers (atomics); 0: none yet. */
    int64_t lease_ok_ms;
    pthread_t live_thread, event_thread, join_thread;
    int live_started, event_started, join_started;
};

/* cluster-join.c: the keys a joining node gets from a member over the
 * peer port (KEYS), and the member's side. */
int cluster_join_once(struct cvd_node *n);
void *cluster_join_loop(void *arg);
int cluster_keys_register(struct cvd_node *n);
/* The node has the seal key (key: locked memory it now owns): installs
 * it, marks the node ready, and starts its liveness. */
int cluster_become_ready(struct cvd_node *n, unsigned char *key);

/* cluster-live.c: the lease and alive key, the watch and its listeners,
 * the event thread. */
int cluster_live_start(struct cvd_node *n);
int cluster_watch_start(struct cvd_node *n);
void cluster_threads_stop(struct cvd_node *n);
/* Waits on n->wake until stop, kick (when not NULL) or seconds pass;
 * returns 1 when stopping.  n->lock held. */
int cluster_wait(struct cvd_node *n, int *kick, unsigned seconds);

/* cluster-nodes.c */
const char *cluster_state_name(const struct cvd_node_rec *r);
int cluster_node_json(struct cvd *d, const struct cvd_node_rec *r,
                      const struct cvd_volume_rec *vols, size_t nvols,
                      json_object **out);

#endif

/* The registry (metrics.h): what is counted as it happens.  Everything
 * here is relaxed atomics but the volume list, whose lock is taken when a
 * connection starts or stops serving a volume, never per request. */
#include "metrics.h"
#include "metrics-internal.h"

#include "core/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RELAXED memory_order_relaxed

const uint64_t cvd_metrics_bucket_ns[CVD_METRICS_BUCKETS] = {
    50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000, 25000000, 50000000,
    100000000, 250000000, 500000000,
    1000000000, 2500000000u, 5000000000u, 10000000000u,
};
const double cvd_metrics_bucket_s[CVD_METRICS_BUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5,
    1, 2.5, 5, 10,
};

const char *cvd_metrics_op_name(enum cvd_metrics_op op)
{
    static const char *const names[CVD_OP_COUNT] = {
        [CVD_OP_READ] = "read", [CVD_OP_WRITE] = "write",
        [CVD_OP_FLUSH] = "flush", [CVD_OP_TRIM] = "trim",
        [CVD_OP_WRITE_ZEROES] = "write_zeroes",
        [CVD_OP_BLOCK_STATUS] = "block_status", [CVD_OP_OTHER] = "other",
    };

    return op < CVD_OP_COUNT ? names[op] : "other";
}

const char *cvd_metrics_refusal_name(enum cvd_refusal why)
{
    static const char *const names[CVD_REFUSED_COUNT] = {
        [CVD_REFUSED_TLS_REQUIRED] = "tls_required",
        [CVD_REFUSED_UNAUTHENTICATED] = "unauthenticated",
        [CVD_REFUSED_ACCESS] = "access",
        [CVD_REFUSED_NO_SUCH_VOLUME] = "no_such_volume",
        [CVD_REFUSED_WRONG_KEY] = "wrong_key",
        [CVD_REFUSED_UNAVAILABLE] = "unavailable",
        [CVD_REFUSED_AUDIT] = "audit",
        [CVD_REFUSED_SHUTDOWN] = "shutdown",
        [CVD_REFUSED_CONNECTION_LIMIT] = "connection_limit",
    };

    return why < CVD_REFUSED_COUNT ? names[why] : "unavailable";
}

const char *cvd_metrics_tls_name(enum cvd_tls_server s)
{
    return s == CVD_TLS_ADMIN ? "admin" : s == CVD_TLS_PEER ? "peer" : "nbd";
}

/* Zeroed memory on 64-byte boundaries, for the _Alignas members. */
static void *alloc_lines(size_t size)
{
    size_t rounded = (size + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded);

    if (p)
        memset(p, 0, rounded);
    return p;
}

int cvd_metrics_new(struct cvd_metrics **out)
{
    struct cvd_metrics *m = alloc_lines(sizeof *m);
    struct timespec now;

    *out = NULL;
    if (!m)
        return cv_error(-ENOMEM, "metrics: out of memory");
    pthread_mutex_init(&m->lock, NULL);
    pthread_mutex_init(&m->peer_lock, NULL);
    clock_gettime(CLOCK_REALTIME, &now);
    m->start_time = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    *out = m;
    return 0;
}

void cvd_metrics_free(struct cvd_metrics *m)
{
    if (!m)
        return;
    /* Connections are gone by now: only the list's references remain. */
    while (m->volumes) {
        struct cvd_volume_metrics *v = m->volumes;

        m->volumes = v->next;
        free(v);
    }
    pthread_mutex_destroy(&m->lock);
    pthread_mutex_destroy(&m->peer_lock);
    free(m->peers);
    free(m);
}

/* Under m->lock: the entry for name, or where one would go (*at). */
static struct cvd_volume_metrics *find(struct cvd_metrics *m, const char *name,
                                       struct cvd_volume_metrics ***at)
{
    struct cvd_volume_metrics **p = &m->volumes;
    int c = 1;

    while (*p && (c = strcmp((*p)->name, name)) < 0)
        p = &(*p)->next;
    *at = p;
    return *p && c == 0 ? *p : NULL;
}

struct cvd_volume_metrics *cvd_metrics_volume_get(struct cvd_metrics *m,
                                                  const char *name)
{
    struct cvd_volume_metrics *v, **at;
    size_t len;

    if (!m)
        return NULL;
    len = strlen(name) + 1;
    pthread_mutex_lock(&m->lock);
    v = find(m, name, &at);
    if (!v && (v = alloc_lines(sizeof *v + len))) {
        memcpy(v->name, name, len);
        v->refs = 1;            /* the list's */
        v->next = *at;
        *at = v;
    }
    if (v)
        v->refs++;
    pthread_mutex_unlock(&m->lock);
    return v;
}

void cvd_metrics_volume_put(struct cvd_metrics *m,
                            struct cvd_volume_metrics *v)
{
    int last;

    if (!m || !v)
        return;
    pthread_mutex_lock(&m->lock);
    last = --v->refs == 0;
    pthread_mutex_unlock(&m->lock);
    if (last)
        free(v);
}

void cvd_metrics_volume_forget(struct cvd_metrics *m, const char *name)
{
    struct cvd_volume_metrics *v, **at;
    int last = 0;

    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    v = find(m, name, &at);
    if (v) {
        *at = v->next;
        last = --v->refs == 0;
    }
    pthread_mutex_unlock(&m->lock);
    /* A connection still holding it counts on into an entry no scrape
     * shows, freed when it lets go. */
    if (last)
        free(v);
}

uint64_t cvd_metrics_now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Most requests take well under a millisecond: a linear search from the
 * smallest bound ends early. */
static unsigned bucket_of(uint64_t ns)
{
    unsigned i = 0;

    while (i < CVD_METRICS_BUCKETS && ns > cvd_metrics_bucket_ns[i])
        i++;
    return i;
}

void cvd_metrics_request(struct cvd_metrics *m, struct cvd_volume_metrics *v,
                         enum cvd_metrics_op op, uint64_t bytes, int failed,
                         uint64_t start_ns)
{
    uint64_t now, ns;
    struct cvd_histogram *h;

    if (!m)
        return;
    if (op >= CVD_OP_COUNT)
        op = CVD_OP_OTHER;
    now = cvd_metrics_now_ns();
    ns = now > start_ns ? now - start_ns : 0;
    h = &m->latency[op];
    atomic_fetch_add_explicit(&h->n[bucket_of(ns)], 1, RELAXED);
    atomic_fetch_add_explicit(&h->sum_ns, ns, RELAXED);
    if (!v)
        return;
    atomic_fetch_add_explicit(&v->op[op].requests, 1, RELAXED);
    if (failed)
        atomic_fetch_add_explicit(&v->op[op].errors, 1, RELAXED);
    else if (bytes)
        atomic_fetch_add_explicit(&v->op[op].bytes, bytes, RELAXED);
}

void cvd_metrics_attach(struct cvd_metrics *m, struct cvd_volume_metrics *v)
{
    if (!m)
        return;
    atomic_fetch_add_explicit(&m->attaches, 1, RELAXED);
    if (v)
        atomic_fetch_add_explicit(&v->attaches, 1, RELAXED);
}

void cvd_metrics_refused(struct cvd_metrics *m, enum cvd_refusal why)
{
    if (m && why < CVD_REFUSED_COUNT)
        atomic_fetch_add_explicit(&m->refused[why], 1, RELAXED);
}

void cvd_metrics_nbd_connection(struct cvd_metrics *m, int delta)
{
    if (!m)
        return;
    atomic_fetch_add_explicit(&m->nbd_connections, delta, RELAXED);
    if (delta > 0)
        atomic_fetch_add_explicit(&m->nbd_accepted, 1, RELAXED);
}

void cvd_metrics_tls_handshake(struct cvd_metrics *m, enum cvd_tls_server s,
                               int ok)
{
    if (!m || s >= CVD_TLS_SERVER_COUNT)
        return;
    if (!ok) {
        atomic_fetch_add_explicit(&m->tls_failed[s], 1, RELAXED);
        return;
    }
    atomic_fetch_add_explicit(&m->tls_established[s], 1, RELAXED);
    atomic_fetch_add_explicit(&m->tls_open[s], 1, RELAXED);
}

void cvd_metrics_tls_closed(struct cvd_metrics *m, enum cvd_tls_server s)
{
    if (m && s < CVD_TLS_SERVER_COUNT)
        atomic_fetch_sub_explicit(&m->tls_open[s], 1, RELAXED);
}

void cvd_metrics_tls_decrypt_error(struct cvd_metrics *m,
                                   enum cvd_tls_server s)
{
    if (m && s < CVD_TLS_SERVER_COUNT)
        atomic_fetch_add_explicit(&m->tls_decrypt[s], 1, RELAXED);
}

/* The registry's layout, shared by metrics.c (recording) and
 * metrics-render.c (the exposition).  Internal to daemon/metrics/. */
#ifndef CRYPTVOLD_METRICS_INTERNAL_H
#define CRYPTVOLD_METRICS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "metrics.h"

/* Request latency buckets, upper bounds: from 50 us (a 4 KiB request
 * served from the page cache) to 10 s (a flush behind a stalled disk). */
#define CVD_METRICS_BUCKETS 17
extern const uint64_t cvd_metrics_bucket_ns[CVD_METRICS_BUCKETS];
extern const double cvd_metrics_bucket_s[CVD_METRICS_BUCKETS];

/* Laid out so that counting a request touches two cache lines: its
 * type's histogram (the sum beside the low buckets, where most requests
 * fall), and its volume's counters (a type's three side by side, reads
 * and writes on one line).  Histograms of different types, and volumes,
 * are on lines of their own. */
struct cvd_histogram {
    _Alignas(64) atomic_uint_fast64_t sum_ns;
    atomic_uint_fast64_t n[CVD_METRICS_BUCKETS + 1];
};

struct cvd_op_counters {
    atomic_uint_fast64_t requests, bytes, errors;
};

struct cvd_volume_metrics {
    struct cvd_volume_metrics *next;    /* by name, under lock */
    unsigned refs;      /* connections, and 1 while listed; under lock */
    _Alignas(64) struct cvd_op_counters op[CVD_OP_COUNT];
    atomic_uint_fast64_t attaches;
    char name[];
};

struct cvd_metrics {
    /* The volume list: taken at attach, detach, delete and scrape, never
     * by a request. */
    pthread_mutex_t lock;
    struct cvd_volume_metrics *volumes;
    struct cvd_histogram latency[CVD_OP_COUNT];
    _Alignas(64) atomic_uint_fast64_t attaches;
    atomic_uint_fast64_t refused[CVD_REFUSED_COUNT];
    atomic_int_fast64_t nbd_connections;
    atomic_uint_fast64_t nbd_accepted;
    atomic_int_fast64_t tls_open[CVD_TLS_SERVER_COUNT];
    atomic_uint_fast64_t tls_established[CVD_TLS_SERVER_COUNT];
    atomic_uint_fast64_t tls_failed[CVD_TLS_SERVER_COUNT];
    atomic_uint_fast64_t tls_decrypt[CVD_TLS_SERVER_COUNT];
    atomic_uint_fast64_t peer_refused[CVD_PEER_REFUSED_COUNT];
    /* Plaintext peer sessions now and since start; peer-tls now and its
     * changes (metrics-peers.c). */
    atomic_int_fast64_t peer_plain_open;
    atomic_uint_fast64_t peer_plain_sessions;
    atomic_int peer_tls_mode;
    atomic_uint_fast64_t peer_tls_changes;
    double start_time;          /* seconds since the epoch */
    /* The peer rows (metrics-peers.c), under peer_lock: taken when a peer
     * session opens or closes and at a scrape, never per request. */
    pthread_mutex_t peer_lock;
    struct cvd_peer_row *peers;
    size_t npeers;
};

/* One peer: a node name (sessions) or an address (refusals). */
struct cvd_peer_row {
    char name[256];         /* "" for an address row */
    char address[64];       /* the last one seen; "other" past the bound */
    char claimed[256];      /* address rows: the certificate's name, if any */
    int64_t open;           /* sessions now */
    uint64_t sessions, decrypt_errors, handshake_failed, refused;
    int64_t plain_open;     /* plaintext sessions now, since start */
    uint64_t plain_sessions;
    enum cvd_peer_refusal last_refusal;
};

/* A copy of the rows, for a scrape or the stats (malloc'ed; *n rows). */
int cvd_metrics_peer_rows(struct cvd_metrics *m, struct cvd_peer_row **out,
                          size_t *n);

/* The label values of the enums (metrics.c). */
const char *cvd_metrics_op_name(enum cvd_metrics_op op);
const char *cvd_metrics_refusal_name(enum cvd_refusal why);
const char *cvd_metrics_tls_name(enum cvd_tls_server s);

#endif

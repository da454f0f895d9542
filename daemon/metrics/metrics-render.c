/* The exposition (GET /metrics): the registry's counters, and gauges read
 * at scrape time from the metadata store (volumes by state), the cluster
 * (KEK generation and rotation) and the audit log (write failures).
 * docs/metrics.md describes each family. */
#include "metrics.h"
#include "metrics-internal.h"
#include "metrics-text.h"

#include "audit/audit.h"
#include "core/error.h"
#include "cluster/cluster.h"
#include "daemon.h"
#include "keys/cluster-kek.h"
#include "meta/meta.h"
#include "peer/peer.h"
#include "volumes/volumes-util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#ifndef CRYPTVOL_VERSION
#define CRYPTVOL_VERSION "unknown"
#endif

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define LABELS(...) ((const char *[]){ __VA_ARGS__, NULL })

struct scrape {
    struct cvd *d;
    struct cvd_metrics *m;      /* may be NULL: zeros */
    struct cvd_prom p;
    struct cvd_volume_rec *vols;        /* by name */
    size_t nvols;
    struct cvd_cluster_progress kek;
};

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct cvd_volume_rec *)a)->name,
                  ((const struct cvd_volume_rec *)b)->name);
}

/* A node's metrics are about the volumes it holds: in a cluster, the
 * others' are theirs to report. */
static void keep_local(struct cvd *d, struct scrape *s)
{
    size_t i, k = 0;

    for (i = 0; i < s->nvols; i++)
        if (cvd_node_is_local(d, &s->vols[i]))
            s->vols[k++] = s->vols[i];
    s->nvols = k;
}

/* What the scrape reads from the rest of the daemon, before writing. */
static int gather(struct scrape *s)
{
    struct cvd *d = s->d;
    int r;

    r = d->meta->ops->volume_list(d->meta, &s->vols, &s->nvols);
    if (r < 0)
        return cv_error_prefix(r, "metrics: listing volumes");
    keep_local(d, s);
    if (s->nvols > 1)
        qsort(s->vols, s->nvols, sizeof *s->vols, by_name);
    r = cvd_cluster_progress(d->cluster, d->meta, &s->kek);
    return r < 0 ? cv_error_prefix(r, "metrics: the cluster's state") : 0;
}

static void process(struct scrape *s)
{
    struct cvd_metrics *m = s->m;
    struct cvd_prom *p = &s->p;

    cvd_prom_family(p, "cryptvol_build_info", CVD_PROM_GAUGE,
                    "Always 1; the version of cryptvold in a label.");
    cvd_prom_u64(p, "cryptvol_build_info",
                 LABELS("version", CRYPTVOL_VERSION), 1);
    cvd_prom_family(p, "process_start_time_seconds", CVD_PROM_GAUGE,
                    "When cryptvold started, in seconds since the epoch.");
    cvd_prom_double(p, "process_start_time_seconds", NULL,
                    m ? m->start_time : 0);
    cvd_prom_family(p, "cryptvol_nbd_connections", CVD_PROM_GAUGE,
                    "NBD connections open now (handshake or serving).");
    cvd_prom_u64(p, "cryptvol_nbd_connections", NULL,
                 m ? (uint64_t)LOAD(m->nbd_connections) : 0);
    cvd_prom_family(p, "cryptvol_nbd_connections_accepted_total",
                    CVD_PROM_COUNTER, "NBD connections admitted.");
    cvd_prom_u64(p, "cryptvol_nbd_connections_accepted_total", NULL,
                 m ? LOAD(m->nbd_accepted) : 0);
}

/* Every state a volume can be in, as the API shows it, even at 0: a
 * series that comes and goes is hard to alert on. */
static void volumes_by_state(struct scrape *s)
{
    static const char *const states[] = {
        CVD_VOL_READY, CVD_VOL_PENDING, CVD_VOL_CREATING, CVD_VOL_RESIZING,
        CVD_VOL_DELETING, CVD_VOL_REKEYING,
    };
    const size_t nknown = sizeof states / sizeof states[0];
    size_t i, j, n;

    cvd_prom_family(&s->p, "cryptvol_volumes", CVD_PROM_GAUGE,
                    "Volumes by state (Available: can be served).");
    for (i = 0; i < nknown; i++) {
        for (j = n = 0; j < s->nvols; j++)
            n += !strcmp(s->vols[j].state, states[i]);
        cvd_prom_u64(&s->p, "cryptvol_volumes",
                     LABELS("state", cvd_state_shown(states[i])), n);
    }
    /* A state from a newer cryptvold sharing the store: shown as stored,
     * once. */
    for (j = 0; j < s->nvols; j++) {
        const char *st = s->vols[j].state;
        int seen = 0;

        for (i = 0; i < nknown && !seen; i++)
            seen = !strcmp(st, states[i]);
        for (i = 0; i < j && !seen; i++)
            seen = !strcmp(st, s->vols[i].state);
        if (seen)
            continue;
        for (i = n = 0; i < s->nvols; i++)
            n += !strcmp(s->vols[i].state, st);
        cvd_prom_u64(&s->p, "cryptvol_volumes", LABELS("state", st), n);
    }
}

static void attaches(struct scrape *s)
{
    struct cvd_metrics *m = s->m;
    unsigned i;

    cvd_prom_family(&s->p, "cryptvol_nbd_attaches_total", CVD_PROM_COUNTER,
                    "Volumes attached by NBD clients.");
    cvd_prom_u64(&s->p, "cryptvol_nbd_attaches_total", NULL,
                 m ? LOAD(m->attaches) : 0);
    cvd_prom_family(&s->p, "cryptvol_nbd_refusals_total", CVD_PROM_COUNTER,
                    "NBD clients refused a volume (NBD_OPT_GO, "
                    "NBD_OPT_EXPORT_NAME) or a connection, by reason.");
    for (i = 0; i < CVD_REFUSED_COUNT; i++)
        cvd_prom_u64(&s->p, "cryptvol_nbd_refusals_total",
                     LABELS("reason", cvd_metrics_refusal_name(i)),
                     m ? LOAD(m->refused[i]) : 0);
}

/* The per-volume counters of s->vols[i], NULL if it was never attached
 * since the start: matched by name, both lists in name order.  Under
 * m->lock. */
static void match(struct scrape *s, struct cvd_volume_metrics **out)
{
    struct cvd_volume_metrics *v = s->m ? s->m->volumes : NULL;

    for (size_t i = 0; i < s->nvols; i++) {
        while (v && strcmp(v->name, s->vols[i].name) < 0)
            v = v->next;
        out[i] = v && !strcmp(v->name, s->vols[i].name) ? v : NULL;
    }
}

/* A family with one series per volume (and per op when op is not
 * CVD_OP_COUNT: the byte counters are of one op each). */
static void per_volume(struct scrape *s, struct cvd_volume_metrics **vm,
                       const char *name, const char *help, int what,
                       enum cvd_metrics_op op)
{
    cvd_prom_family(&s->p, name, CVD_PROM_COUNTER, help);
    for (size_t i = 0; i < s->nvols; i++) {
        const char *vol = s->vols[i].name;
        struct cvd_volume_metrics *v = vm[i];

        if (what == 'a') {
            cvd_prom_u64(&s->p, name, LABELS("volume", vol),
                         v ? LOAD(v->attaches) : 0);
        } else if (what == 'b') {
            cvd_prom_u64(&s->p, name, LABELS("volume", vol),
                         v ? LOAD(v->op[op].bytes) : 0);
        } else {
            for (unsigned o = 0; o < CVD_OP_COUNT; o++)
                cvd_prom_u64(&s->p, name, LABELS("volume", vol, "op",
                                                 cvd_metrics_op_name(o)),
                             !v ? 0 : what == 'r' ? LOAD(v->op[o].requests)
                                                  : LOAD(v->op[o].errors));
        }
    }
}

static int volumes(struct scrape *s)
{
    struct cvd_volume_metrics **vm = calloc(s->nvols ? s->nvols : 1,
                                            sizeof *vm);

    if (!vm)
        return cv_error(-ENOMEM, "metrics: out of memory");
    if (s->m)
        pthread_mutex_lock(&s->m->lock);
    match(s, vm);
    per_volume(s, vm, "cryptvol_volume_requests_total", "NBD requests "
               "answered, by volume and type (errors included).", 'r', 0);
    per_volume(s, vm, "cryptvol_volume_request_errors_total", "NBD "
               "requests answered with an error, by volume and type.", 'e',
               0);
    per_volume(s, vm, "cryptvol_volume_read_bytes_total", "Bytes read by "
               "NBD clients (successful reads).", 'b', CVD_OP_READ);
    per_volume(s, vm, "cryptvol_volume_written_bytes_total", "Bytes "
               "written by NBD clients (successful writes).", 'b',
               CVD_OP_WRITE);
    per_volume(s, vm, "cryptvol_volume_trimmed_bytes_total", "Bytes "
               "trimmed by NBD clients.", 'b', CVD_OP_TRIM);
    per_volume(s, vm, "cryptvol_volume_zeroed_bytes_total", "Bytes "
               "zeroed by NBD clients (NBD_CMD_WRITE_ZEROES).", 'b',
               CVD_OP_WRITE_ZEROES);
    per_volume(s, vm, "cryptvol_volume_attaches_total", "Times NBD clients "
               "attached the volume.", 'a', 0);
    if (s->m)
        pthread_mutex_unlock(&s->m->lock);
    free(vm);
    return 0;
}

static void latency(struct scrape *s)
{
    static const char name[] = "cryptvol_nbd_request_duration_seconds";
    uint64_t n[CVD_METRICS_BUCKETS + 1];

    cvd_prom_family(&s->p, name, CVD_PROM_HISTOGRAM, "NBD request service "
                    "time, from the request (and a write's data) read to "
                    "its reply ready to send, by type.");
    for (unsigned op = 0; op < CVD_OP_COUNT; op++) {
        const struct cvd_histogram *h = s->m ? &s->m->latency[op] : NULL;
        uint64_t sum_ns = h ? LOAD(h->sum_ns) : 0;

        for (unsigned b = 0; b <= CVD_METRICS_BUCKETS; b++)
            n[b] = h ? LOAD(h->n[b]) : 0;
        cvd_prom_histogram(&s->p, name,
                           LABELS("op", cvd_metrics_op_name(op)),
                           cvd_metrics_bucket_s, n, CVD_METRICS_BUCKETS,
                           (double)sum_ns / 1e9);
    }
}

static void tls(struct scrape *s)
{
    struct cvd_metrics *m = s->m;
    unsigned i;

    cvd_prom_family(&s->p, "cryptvol_tls_sessions", CVD_PROM_GAUGE,
                    "TLS sessions open now: NBD, admin HTTPS, or the peer "
                    "port (both ways).");
    for (i = 0; i < CVD_TLS_SERVER_COUNT; i++)
        cvd_prom_u64(&s->p, "cryptvol_tls_sessions",
                     LABELS("server", cvd_metrics_tls_name(i)),
                     m ? (uint64_t)LOAD(m->tls_open[i]) : 0);
    cvd_prom_family(&s->p, "cryptvol_tls_sessions_established_total",
                    CVD_PROM_COUNTER, "TLS handshakes that succeeded.");
    for (i = 0; i < CVD_TLS_SERVER_COUNT; i++)
        cvd_prom_u64(&s->p, "cryptvol_tls_sessions_established_total",
                     LABELS("server", cvd_metrics_tls_name(i)),
                     m ? LOAD(m->tls_established[i]) : 0);
    cvd_prom_family(&s->p, "cryptvol_tls_handshake_failures_total",
                    CVD_PROM_COUNTER, "TLS handshakes that failed (a "
                    "certificate or PSK refused, a client gone).");
    for (i = 0; i < CVD_TLS_SERVER_COUNT; i++)
        cvd_prom_u64(&s->p, "cryptvol_tls_handshake_failures_total",
                     LABELS("server", cvd_metrics_tls_name(i)),
                     m ? LOAD(m->tls_failed[i]) : 0);
    cvd_prom_family(&s->p, "cryptvol_tls_decrypt_errors_total",
                    CVD_PROM_COUNTER, "TLS records that did not decrypt or "
                    "authenticate (bad record MAC): corruption or tampering; "
                    "the session ended with it.");
    for (i = 0; i < CVD_TLS_SERVER_COUNT; i++)
        cvd_prom_u64(&s->p, "cryptvol_tls_decrypt_errors_total",
                     LABELS("server", cvd_metrics_tls_name(i)),
                     m ? LOAD(m->tls_decrypt[i]) : 0);
}

enum peer_field { PF_OPEN, PF_SESSIONS, PF_DECRYPT, PF_FAILED, PF_REFUSED,
                  PF_PLAIN_OPEN, PF_PLAIN };

static uint64_t peer_value(const struct cvd_peer_row *r, enum peer_field f)
{
    switch (f) {
    case PF_OPEN: return r->open > 0 ? (uint64_t)r->open : 0;
    case PF_SESSIONS: return r->sessions;
    case PF_DECRYPT: return r->decrypt_errors;
    case PF_FAILED: return r->handshake_failed;
    case PF_PLAIN_OPEN: return r->plain_open > 0 ? (uint64_t)r->plain_open : 0;
    case PF_PLAIN: return r->plain_sessions;
    default: return r->refused;
    }
}

/* One family over the rows: sessions are by name ("peer" label), failed
 * handshakes and refusals by address ("address"). */
static void peer_family(struct scrape *s, const struct cvd_peer_row *rows,
                        size_t n, const char *metric, enum cvd_prom_type type,
                        const char *help, enum peer_field f)
{
    int by_name = f == PF_OPEN || f == PF_SESSIONS || f == PF_DECRYPT ||
                  f == PF_PLAIN_OPEN || f == PF_PLAIN;

    cvd_prom_family(&s->p, metric, type, help);
    for (size_t i = 0; i < n; i++) {
        if ((rows[i].name[0] != 0) != by_name)
            continue;
        cvd_prom_u64(&s->p, metric, by_name ? LABELS("peer", rows[i].name)
                     : LABELS("address", rows[i].address),
                     peer_value(&rows[i], f));
    }
}

/* peer-tls: 1 for the mode now, 0 for the others; and its changes. */
static void peer_tls_mode(struct scrape *s)
{
    int now = s->m ? atomic_load(&s->m->peer_tls_mode) : 0;

    cvd_prom_family(&s->p, "cryptvol_peer_tls_mode", CVD_PROM_GAUGE,
                    "The peer port's peer-tls mode: 1 for the one set.");
    for (int k = CVD_PEER_TLS_REQUIRE; k <= CVD_PEER_TLS_OFF; k++)
        cvd_prom_u64(&s->p, "cryptvol_peer_tls_mode",
                     LABELS("mode", cvd_peer_tls_name(k)), k == now);
    cvd_prom_family(&s->p, "cryptvol_peer_tls_mode_changes_total",
                    CVD_PROM_COUNTER, "Changes of peer-tls since start (the "
                    "API, SIGHUP).");
    cvd_prom_u64(&s->p, "cryptvol_peer_tls_mode_changes_total", NULL,
                 s->m ? LOAD(s->m->peer_tls_changes) : 0);
}

/* The peer port: refusals by reason, and the per-peer rows. */
static int peers(struct scrape *s)
{
    struct cvd_peer_row *rows = NULL;
    size_t n = 0;
    unsigned k;
    int r;

    cvd_prom_family(&s->p, "cryptvol_peer_refused_total", CVD_PROM_COUNTER,
                    "Connections the peer port refused, by reason.");
    for (k = 0; k < CVD_PEER_REFUSED_COUNT; k++)
        cvd_prom_u64(&s->p, "cryptvol_peer_refused_total",
                     LABELS("reason", cvd_metrics_peer_refusal_name(k)),
                     s->m ? LOAD(s->m->peer_refused[k]) : 0);
    r = cvd_metrics_peer_rows(s->m, &rows, &n);
    if (r < 0)
        return r;
    peer_family(s, rows, n, "cryptvol_peer_sessions", CVD_PROM_GAUGE,
                "TLS sessions with a member open now, by its name.",
                PF_OPEN);
    peer_family(s, rows, n, "cryptvol_peer_sessions_established_total",
                CVD_PROM_COUNTER, "TLS sessions with a member since start, "
                "by its name.", PF_SESSIONS);
    peer_family(s, rows, n, "cryptvol_peer_decrypt_errors_total",
                CVD_PROM_COUNTER, "Records from a member that did not "
                "decrypt or authenticate, by its name.", PF_DECRYPT);
    peer_family(s, rows, n, "cryptvol_peer_plain_sessions", CVD_PROM_GAUGE,
                "Plaintext sessions with a member open now (peer-tls on "
                "or off), by its name.", PF_PLAIN_OPEN);
    peer_family(s, rows, n, "cryptvol_peer_plain_sessions_established_total",
                CVD_PROM_COUNTER, "Plaintext sessions with a member since "
                "start, by its name.", PF_PLAIN);
    peer_tls_mode(s);
    peer_family(s, rows, n, "cryptvol_peer_handshake_failures_total",
                CVD_PROM_COUNTER, "Failed TLS handshakes on the peer port, "
                "by the address they came from.", PF_FAILED);
    peer_family(s, rows, n, "cryptvol_peer_refused_by_address_total",
                CVD_PROM_COUNTER, "Refused peer connections, by the address "
                "they came from.", PF_REFUSED);
    free(rows);
    return 0;
}

/* One series per value of an enum-like state, 1 for the current one. */
static void state_set(struct scrape *s, const char *name, const char *help,
                      const char *label, const char *const *values,
                      const char *current)
{
    cvd_prom_family(&s->p, name, CVD_PROM_GAUGE, help);
    for (size_t i = 0; values[i]; i++)
        cvd_prom_u64(&s->p, name, LABELS(label, values[i]),
                     !strcmp(current, values[i]));
}

static void kek(struct scrape *s)
{
    static const char *const enc[] = { CVD_ENC_DISABLED, CVD_ENC_ENABLING,
                                       CVD_ENC_ENABLED, NULL };
    static const char *const rot[] = { CVD_ROT_NONE, CVD_ROT_DISTRIBUTE,
                                       CVD_ROT_ENCRYPT, NULL };
    const struct cvd_cluster_progress *k = &s->kek;
    struct cvd_prom *p = &s->p;

    state_set(s, "cryptvol_cluster_encryption", "Cluster encryption "
              "state: 1 for the current one.", "state", enc,
              k->rec.encryption);
    cvd_prom_family(p, "cryptvol_kek_generation", CVD_PROM_GAUGE,
                    "The KEK generation new volume tokens are wrapped with "
                    "(0: cluster encryption off).");
    cvd_prom_u64(p, "cryptvol_kek_generation", NULL, k->rec.current_gen);
    state_set(s, "cryptvol_kek_rotation_state", "KEK rotation state: 1 "
              "for the current one.", "state", rot, k->rec.rotation);
    cvd_prom_family(p, "cryptvol_kek_rotation_target_generation",
                    CVD_PROM_GAUGE, "The generation the last or running KEK "
                    "rotation moves volumes to.");
    cvd_prom_u64(p, "cryptvol_kek_rotation_target_generation", NULL,
                 k->rec.target_gen);
    cvd_prom_family(p, "cryptvol_kek_rotation_volumes", CVD_PROM_GAUGE,
                    "Volumes the last or running KEK rotation re-wraps.");
    cvd_prom_u64(p, "cryptvol_kek_rotation_volumes", NULL, k->total);
    cvd_prom_family(p, "cryptvol_kek_rotation_volumes_done", CVD_PROM_GAUGE,
                    "Volumes re-wrapped so far by that rotation.");
    cvd_prom_u64(p, "cryptvol_kek_rotation_volumes_done", NULL, k->done);
    cvd_prom_family(p, "cryptvol_kek_rotation_volumes_failed",
                    CVD_PROM_GAUGE, "Volumes that rotation could not "
                    "re-wrap (left at their generation).");
    cvd_prom_u64(p, "cryptvol_kek_rotation_volumes_failed", NULL, k->failed);
}

/* A cluster: the queue of events on their way to the cluster's log. */
static void audit_cluster(struct scrape *s)
{
    struct cvd_audit_remote_counts c;
    struct cvd_prom *p = &s->p;

    cvd_audit_remote_counts(s->d->audit, &c);
    cvd_prom_family(p, "cryptvol_audit_cluster_appended_total",
                    CVD_PROM_COUNTER, "Audit events appended to the "
                    "cluster-wide log in etcd.");
    cvd_prom_u64(p, "cryptvol_audit_cluster_appended_total", NULL, c.sent);
    cvd_prom_family(p, "cryptvol_audit_cluster_append_failures_total",
                    CVD_PROM_COUNTER, "Appends to the cluster-wide log that "
                    "failed (each event is kept and retried).");
    cvd_prom_u64(p, "cryptvol_audit_cluster_append_failures_total", NULL,
                 c.failures);
    cvd_prom_family(p, "cryptvol_audit_cluster_dropped_total",
                    CVD_PROM_COUNTER, "Audit events not sent to the "
                    "cluster-wide log because its queue was full (they are "
                    "in the local file).");
    cvd_prom_u64(p, "cryptvol_audit_cluster_dropped_total", NULL, c.dropped);
    cvd_prom_family(p, "cryptvol_audit_cluster_queued", CVD_PROM_GAUGE,
                    "Audit events waiting to be appended to the cluster-wide "
                    "log.");
    cvd_prom_u64(p, "cryptvol_audit_cluster_queued", NULL, c.queued);
}

static void audit(struct scrape *s)
{
    cvd_prom_family(&s->p, "cryptvol_audit_write_failures_total",
                    CVD_PROM_COUNTER, "Audit events that could not be "
                    "written (the operation they record was refused when "
                    "it is a key operation).");
    cvd_prom_u64(&s->p, "cryptvol_audit_write_failures_total", NULL,
                 cvd_audit_write_failures(s->d->audit));
    if (cvd_audit_clustered(s->d->audit))
        audit_cluster(s);
}

int cvd_metrics_render(struct cvd *d, unsigned flags, char **text,
                       size_t *len)
{
    struct scrape s = { .d = d, .m = d->metrics };
    int r;

    *text = NULL;
    *len = 0;
    cvd_prom_init(&s.p);
    r = gather(&s);
    if (r == 0) {
        process(&s);
        volumes_by_state(&s);
        attaches(&s);
        if (flags & CVD_METRICS_VOLUMES)
            r = volumes(&s);
    }
    if (r == 0) {
        latency(&s);
        tls(&s);
        r = peers(&s);
    }
    if (r == 0) {
        kek(&s);
        audit(&s);
        r = cvd_prom_finish(&s.p, text, len);
    }
    cvd_prom_free(&s.p);
    free(s.vols);
    return r;
}

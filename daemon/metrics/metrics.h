/* Metrics for Prometheus: GET /metrics on the admin API (unix socket and
 * HTTPS, authorised as the rest of it) and, with --metrics-listen, on a
 * plain HTTP listener of its own (docs/metrics.md lists every metric).
 *
 * One registry per daemon, d->metrics, made at start.  Counters are
 * updated where things happen; gauges that the metadata store, the
 * cluster or the audit log already know are read when a scrape renders
 * them.  The data path only adds to atomics: per volume, and per request
 * type for the latency histograms; no lock is taken there.
 *
 * Every function takes a NULL registry (unit tests, fuzzers) and then
 * records nothing. */
#ifndef CRYPTVOLD_METRICS_H
#define CRYPTVOLD_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct cvd;
struct cvd_metrics;
struct cvd_volume_metrics;

/* NBD request types, as the "op" label names them. */
enum cvd_metrics_op {
    CVD_OP_READ, CVD_OP_WRITE, CVD_OP_FLUSH, CVD_OP_TRIM,
    CVD_OP_WRITE_ZEROES, CVD_OP_BLOCK_STATUS, CVD_OP_OTHER,
    CVD_OP_COUNT
};

/* Why an NBD client did not get the volume it asked for (NBD_OPT_GO or
 * NBD_OPT_EXPORT_NAME), or its connection at all: the "reason" label. */
enum cvd_refusal {
    CVD_REFUSED_TLS_REQUIRED,   /* asked before STARTTLS, TLS required */
    CVD_REFUSED_UNAUTHENTICATED,/* no identity, anonymous not allowed */
    CVD_REFUSED_ACCESS,         /* the access lists say no */
    CVD_REFUSED_NO_SUCH_VOLUME,
    CVD_REFUSED_WRONG_KEY,      /* its secret or KEK opens no keyslot */
    CVD_REFUSED_UNAVAILABLE,    /* not Available, unlock limits, I/O */
    CVD_REFUSED_AUDIT,          /* the attach could not be audited */
    CVD_REFUSED_SHUTDOWN,
    CVD_REFUSED_CONNECTION_LIMIT, /* nbd-max-connections(-per-host) */
    CVD_REFUSED_COUNT
};

/* Who terminates TLS: the "server" label.  peer counts the peer port's
 * sessions both ways: those peers open to us and those we open to them
 * (cvd_peer_call). */
enum cvd_tls_server { CVD_TLS_NBD, CVD_TLS_ADMIN, CVD_TLS_PEER,
                      CVD_TLS_SERVER_COUNT };

/* Why the peer port refused a connection: the "reason" label.  The first
 * three fail the TLS handshake (and count as handshake failures too); the
 * others come after it, from the membership check. */
enum cvd_peer_refusal {
    CVD_PEER_REFUSED_NO_CERT,       /* no client certificate */
    CVD_PEER_REFUSED_OTHER_CA,      /* it did not verify: another CA, ... */
    CVD_PEER_REFUSED_PLAINTEXT,     /* the first bytes are no ClientHello */
    CVD_PEER_REFUSED_NOT_MEMBER,    /* a valid certificate, no member */
    CVD_PEER_REFUSED_REMOVED,       /* a member once, Removed now */
    CVD_PEER_REFUSED_UNVERIFIED,    /* membership could not be checked */
    /* peer-tls on/off: a plaintext HELLO naming a member, from another
     * host than the member's address; a plaintext request of a type that
     * needs TLS (keys, KEKs, admin forwarding). */
    CVD_PEER_REFUSED_PLAIN_HOST,
    CVD_PEER_REFUSED_PLAIN_TYPE,
    CVD_PEER_REFUSED_COUNT
};

int cvd_metrics_new(struct cvd_metrics **out);
void cvd_metrics_free(struct cvd_metrics *m);

/* A volume's counters, held by a connection while it serves the volume.
 * They outlive the connection: the next one gets the same, so they count
 * from the daemon's start (or the volume's creation) until it stops.
 * NULL when m is NULL or memory is short (then nothing is counted). */
struct cvd_volume_metrics *cvd_metrics_volume_get(struct cvd_metrics *m,
                                                  const char *name);
void cvd_metrics_volume_put(struct cvd_metrics *m,
                            struct cvd_volume_metrics *v);
/* The volume's record is gone (delete, an undone create): its series
 * leave /metrics and a volume made again with its name starts at 0. */
void cvd_metrics_volume_forget(struct cvd_metrics *m, const char *name);

/* CLOCK_MONOTONIC in nanoseconds: when a request started. */
uint64_t cvd_metrics_now_ns(void);
/* One NBD request answered: counted for the volume (v may be NULL), its
 * bytes if it succeeded (read, written, trimmed, zeroed), and its latency
 * from start_ns to now in the histogram of its type. */
void cvd_metrics_request(struct cvd_metrics *m, struct cvd_volume_metrics *v,
                         enum cvd_metrics_op op, uint64_t bytes, int failed,
                         uint64_t start_ns);

/* A volume attached over NBD (the audit log's volume.unlock ok). */
void cvd_metrics_attach(struct cvd_metrics *m, struct cvd_volume_metrics *v);
void cvd_metrics_refused(struct cvd_metrics *m, enum cvd_refusal why);
/* An NBD connection admitted (+1) or ended (-1). */
void cvd_metrics_nbd_connection(struct cvd_metrics *m, int delta);
/* TLS handshakes: ok 1 opens a session, ok 0 is a failed handshake; a
 * session that ends is closed with cvd_metrics_tls_closed. */
void cvd_metrics_tls_handshake(struct cvd_metrics *m, enum cvd_tls_server s,
                               int ok);
void cvd_metrics_tls_closed(struct cvd_metrics *m, enum cvd_tls_server s);
/* A TLS record that did not decrypt or authenticate ("bad record mac":
 * corruption or tampering on the wire); the session ends with it. */
void cvd_metrics_tls_decrypt_error(struct cvd_metrics *m,
                                   enum cvd_tls_server s);

/* The peer port's rows, one per peer: by node name for sessions (opened
 * +1 and closed -1, both directions) and their decrypt errors; by address
 * (the host, no port) for failed handshakes and refusals, which prove no
 * name (name: the certificate's, when a valid one was shown, else NULL).
 * At most CVD_METRICS_PEER_ROWS rows; past that, one row "other" takes
 * the rest, so strangers cannot grow the table. */
#define CVD_METRICS_PEER_ROWS 256
void cvd_metrics_peer_session(struct cvd_metrics *m, const char *name,
                              const char *addr, int delta);
void cvd_metrics_peer_decrypt_error(struct cvd_metrics *m, const char *name);
/* Plaintext peer sessions (peer-tls on or off), both directions, by name:
 * opened +1, closed -1.  TLS sessions are cvd_metrics_peer_session's. */
void cvd_metrics_peer_plain_session(struct cvd_metrics *m, const char *name,
                                    const char *addr, int delta);
/* The peer port's peer-tls mode (enum cvd_peer_tls) now; changed: one
 * more change counted. */
void cvd_metrics_peer_tls_mode(struct cvd_metrics *m, int mode, int changed);
void cvd_metrics_peer_handshake_failed(struct cvd_metrics *m,
                                       const char *addr);
void cvd_metrics_peer_refused(struct cvd_metrics *m, enum cvd_peer_refusal why,
                              const char *addr, const char *name);
const char *cvd_metrics_peer_refusal_name(enum cvd_peer_refusal why);

/* This node's TLS counters as GET /v1/node/stats, cryptvol node stats and
 * the peer port's CVD_PEER_STATS give them (docs/admin-api.md):
 * {"node": NAME, "servers": {"nbd": {"TlsCurrTxSw": N, ...}, "admin":
 * {...}, "peer": {..., "Refused": {"noCertificate": N, ...}}}, "peers":
 * [{"name", "address", "TlsCurrTxSw", ..., "refused"}]}. */
struct json_object;
int cvd_metrics_stats(struct cvd *d, struct json_object **out);
/* The exposition.  CVD_METRICS_VOLUMES: with the per-volume series
 * (labelled with volume names); without it, only what names no volume.
 * *text is malloc'ed.  Errors say what could not be read. */
#define CVD_METRICS_VOLUMES 1u
int cvd_metrics_render(struct cvd *d, unsigned flags, char **text,
                       size_t *len);

/* Answers a request for /metrics on a libmicrohttpd connection (the admin
 * API's, or the plain listener's): GET and HEAD; other methods get 405.
 * Returns MHD_YES or MHD_NO. */
struct MHD_Connection;
int cvd_metrics_respond(struct cvd *d, struct MHD_Connection *c,
                        const char *method, unsigned flags);

/* --metrics-listen: plain HTTP serving /metrics only, read-only, with the
 * per-volume series when metrics-volume-names is set.  Errors name the
 * address.  NULL is ignored by stop. */
struct cvd_metrics_http;
int cvd_metrics_http_start(struct cvd *d, struct cvd_metrics_http **out);
void cvd_metrics_http_stop(struct cvd_metrics_http *h);

#endif

/* This node's TLS counters as one JSON object, in the names of the
 * kernel's /proc/net/tls_stat (GET /v1/node/stats, cryptvol node stats,
 * the peer port's CVD_PEER_STATS).  Every session here is a software one
 * with both directions, so TlsCurrTxSw and TlsCurrRxSw are the sessions
 * open now, TlsTxSw and TlsRxSw those opened since start. */
#include "metrics.h"
#include "metrics-internal.h"

#include "core/error.h"
#include "daemon.h"
#include "peer/peer.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

/* The JSON member of each refusal reason (camelCase, as the API writes). */
static const char *refusal_member(enum cvd_peer_refusal why)
{
    static const char *const names[CVD_PEER_REFUSED_COUNT] = {
        [CVD_PEER_REFUSED_NO_CERT] = "noCertificate",
        [CVD_PEER_REFUSED_OTHER_CA] = "otherCa",
        [CVD_PEER_REFUSED_PLAINTEXT] = "plaintext",
        [CVD_PEER_REFUSED_NOT_MEMBER] = "notMember",
        [CVD_PEER_REFUSED_REMOVED] = "removed",
        [CVD_PEER_REFUSED_UNVERIFIED] = "unverified",
        [CVD_PEER_REFUSED_PLAIN_HOST] = "plaintextHost",
        [CVD_PEER_REFUSED_PLAIN_TYPE] = "plaintextType",
    };

    return names[why];
}

static void add_u64(json_object *o, const char *k, uint64_t v)
{
    json_object_object_add(o, k, json_object_new_uint64(v));
}

static void add_str(json_object *o, const char *k, const char *v)
{
    json_object_object_add(o, k, v && v[0] ? json_object_new_string(v)
                                           : NULL);
}

/* The six tls_stat counters of one server or peer. */
static void tls_stat(json_object *o, uint64_t open, uint64_t sessions,
                     uint64_t decrypt, uint64_t failed)
{
    add_u64(o, "TlsCurrTxSw", open);
    add_u64(o, "TlsCurrRxSw", open);
    add_u64(o, "TlsTxSw", sessions);
    add_u64(o, "TlsRxSw", sessions);
    add_u64(o, "TlsDecryptError", decrypt);
    add_u64(o, "TlsHandshakeFail", failed);
}

static json_object *server(struct cvd_metrics *m, enum cvd_tls_server s)
{
    json_object *o = json_object_new_object(), *ref;
    int64_t open = m ? LOAD(m->tls_open[s]) : 0;
    unsigned i;

    tls_stat(o, open > 0 ? (uint64_t)open : 0,
             m ? LOAD(m->tls_established[s]) : 0,
             m ? LOAD(m->tls_decrypt[s]) : 0, m ? LOAD(m->tls_failed[s]) : 0);
    if (s != CVD_TLS_PEER)
        return o;
    open = m ? LOAD(m->peer_plain_open) : 0;
    add_u64(o, "PlainCurr", open > 0 ? (uint64_t)open : 0);
    add_u64(o, "PlainTotal", m ? LOAD(m->peer_plain_sessions) : 0);
    add_str(o, "TlsMode", cvd_peer_tls_name(m ? LOAD(m->peer_tls_mode) : 0));
    add_u64(o, "TlsModeChanges", m ? LOAD(m->peer_tls_changes) : 0);
    ref = json_object_new_object();
    for (i = 0; i < CVD_PEER_REFUSED_COUNT; i++)
        add_u64(ref, refusal_member(i), m ? LOAD(m->peer_refused[i]) : 0);
    json_object_object_add(o, "Refused", ref);
    return o;
}

static json_object *peer_row(const struct cvd_peer_row *r)
{
    json_object *o = json_object_new_object();

    add_str(o, "name", r->name);
    add_str(o, "address", r->address);
    if (!r->name[0])
        add_str(o, "certificate", r->claimed);
    tls_stat(o, r->open > 0 ? (uint64_t)r->open : 0, r->sessions,
             r->decrypt_errors, r->handshake_failed);
    add_u64(o, "PlainCurr", r->plain_open > 0 ? (uint64_t)r->plain_open : 0);
    add_u64(o, "PlainTotal", r->plain_sessions);
    add_u64(o, "refused", r->refused);
    add_str(o, "lastRefusal", r->refused ? refusal_member(r->last_refusal)
                                         : NULL);
    return o;
}

int cvd_metrics_stats(struct cvd *d, json_object **out)
{
    json_object *o, *servers, *peers;
    struct cvd_peer_row *rows = NULL;
    size_t n = 0, i;
    unsigned s;
    int r;

    *out = NULL;
    r = cvd_metrics_peer_rows(d->metrics, &rows, &n);
    if (r < 0)
        return r;
    o = json_object_new_object();
    servers = json_object_new_object();
    peers = json_object_new_array();
    if (!o || !servers || !peers) {
        json_object_put(o);
        json_object_put(servers);
        json_object_put(peers);
        free(rows);
        return cv_error(-ENOMEM, "node stats: out of memory");
    }
    add_str(o, "node", d->cfg.node_name);
    for (s = 0; s < CVD_TLS_SERVER_COUNT; s++)
        json_object_object_add(servers, cvd_metrics_tls_name(s),
                               server(d->metrics, s));
    json_object_object_add(o, "servers", servers);
    for (i = 0; i < n; i++)
        json_object_array_add(peers, peer_row(&rows[i]));
    json_object_object_add(o, "peers", peers);
    free(rows);
    *out = o;
    return 0;
}

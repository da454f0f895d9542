/* The peer port's counters: refusals by reason, and one row per peer (by
 * node name once a member proved its name, by address before).  Rows are
 * kept for the daemon's life and bounded: a stranger calling from many
 * addresses fills at most CVD_METRICS_PEER_ROWS of them, then one "other"
 * row counts the rest. */
#include "metrics.h"
#include "metrics-internal.h"

#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RELAXED memory_order_relaxed

const char *cvd_metrics_peer_refusal_name(enum cvd_peer_refusal why)
{
    static const char *const names[CVD_PEER_REFUSED_COUNT] = {
        [CVD_PEER_REFUSED_NO_CERT] = "no_certificate",
        [CVD_PEER_REFUSED_OTHER_CA] = "other_ca",
        [CVD_PEER_REFUSED_PLAINTEXT] = "plaintext",
        [CVD_PEER_REFUSED_NOT_MEMBER] = "not_member",
        [CVD_PEER_REFUSED_REMOVED] = "removed",
        [CVD_PEER_REFUSED_UNVERIFIED] = "unverified",
        [CVD_PEER_REFUSED_PLAIN_HOST] = "plaintext_host",
        [CVD_PEER_REFUSED_PLAIN_TYPE] = "plaintext_type",
    };

    return why < CVD_PEER_REFUSED_COUNT ? names[why] : "unverified";
}

/* Under peer_lock: the row of a name (by_name) or an address, made if
 * missing; the "other" row when the table is full; NULL without memory. */
static struct cvd_peer_row *row(struct cvd_metrics *m, const char *key,
                                int by_name)
{
    struct cvd_peer_row *r, *grown;
    size_t i;

    for (i = 0; i < m->npeers; i++) {
        r = &m->peers[i];
        if (by_name ? !strcmp(r->name, key)
                    : !r->name[0] && !strcmp(r->address, key))
            return r;
    }
    /* The last row is kept for "other" (an address row, so a node named
     * other has a row of its own while there is room). */
    if (m->npeers >= CVD_METRICS_PEER_ROWS - 1 &&
        (by_name || strcmp(key, "other")))
        return row(m, "other", 0);
    if (m->npeers >= CVD_METRICS_PEER_ROWS)
        return NULL;
    grown = realloc(m->peers, (m->npeers + 1) * sizeof *m->peers);
    if (!grown)
        return NULL;
    m->peers = grown;
    r = &m->peers[m->npeers++];
    memset(r, 0, sizeof *r);
    if (by_name)
        snprintf(r->name, sizeof r->name, "%s", key);
    else
        snprintf(r->address, sizeof r->address, "%s", key);
    return r;
}

void cvd_metrics_peer_session(struct cvd_metrics *m, const char *name,
                              const char *addr, int delta)
{
    struct cvd_peer_row *r;

    if (!m || !name)
        return;
    pthread_mutex_lock(&m->peer_lock);
    r = row(m, name, 1);
    if (r) {
        r->open += delta;
        if (delta > 0)
            r->sessions++;
        if (addr)
            snprintf(r->address, sizeof r->address, "%s", addr);
    }
    pthread_mutex_unlock(&m->peer_lock);
}

void cvd_metrics_peer_plain_session(struct cvd_metrics *m, const char *name,
                                    const char *addr, int delta)
{
    struct cvd_peer_row *r;

    if (!m || !name)
        return;
    atomic_fetch_add_explicit(&m->peer_plain_open, delta, RELAXED);
    if (delta > 0)
        atomic_fetch_add_explicit(&m->peer_plain_sessions, 1, RELAXED);
    pthread_mutex_lock(&m->peer_lock);
    r = row(m, name, 1);
    if (r) {
        r->plain_open += delta;
        if (delta > 0)
            r->plain_sessions++;
        if (addr)
            snprintf(r->address, sizeof r->address, "%s", addr);
    }
    pthread_mutex_unlock(&m->peer_lock);
}

void cvd_metrics_peer_tls_mode(struct cvd_metrics *m, int mode, int changed)
{
    if (!m)
        return;
    atomic_store_explicit(&m->peer_tls_mode, mode, RELAXED);
    if (changed)
        atomic_fetch_add_explicit(&m->peer_tls_changes, 1, RELAXED);
}

void cvd_metrics_peer_decrypt_error(struct cvd_metrics *m, const char *name)
{
    struct cvd_peer_row *r;

    if (!m || !name)
        return;
    pthread_mutex_lock(&m->peer_lock);
    r = row(m, name, 1);
    if (r)
        r->decrypt_errors++;
    pthread_mutex_unlock(&m->peer_lock);
}

void cvd_metrics_peer_handshake_failed(struct cvd_metrics *m,
                                       const char *addr)
{
    struct cvd_peer_row *r;

    if (!m || !addr)
        return;
    pthread_mutex_lock(&m->peer_lock);
    r = row(m, addr, 0);
    if (r)
        r->handshake_failed++;
    pthread_mutex_unlock(&m->peer_lock);
}

void cvd_metrics_peer_refused(struct cvd_metrics *m, enum cvd_peer_refusal why,
                              const char *addr, const char *name)
{
    struct cvd_peer_row *r;

    if (!m || why >= CVD_PEER_REFUSED_COUNT)
        return;
    atomic_fetch_add_explicit(&m->peer_refused[why], 1, RELAXED);
    if (!addr)
        return;
    pthread_mutex_lock(&m->peer_lock);
    r = row(m, addr, 0);
    if (r) {
        r->refused++;
        r->last_refusal = why;
        if (name)
            snprintf(r->claimed, sizeof r->claimed, "%s", name);
    }
    pthread_mutex_unlock(&m->peer_lock);
}

int cvd_metrics_peer_rows(struct cvd_metrics *m, struct cvd_peer_row **out,
                          size_t *n)
{
    int r = 0;

    *out = NULL;
    *n = 0;
    if (!m)
        return 0;
    pthread_mutex_lock(&m->peer_lock);
    if (m->npeers && !(*out = malloc(m->npeers * sizeof **out)))
        r = cv_error(-ENOMEM, "metrics: out of memory");
    else if (m->npeers) {
        memcpy(*out, m->peers, m->npeers * sizeof **out);
        *n = m->npeers;
    }
    pthread_mutex_unlock(&m->peer_lock);
    return r;
}

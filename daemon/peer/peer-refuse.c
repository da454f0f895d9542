/* Refused peers: every refusal is counted (metrics), and logged at most
 * once a minute per peer and reason, so that a stranger retrying in a
 * loop cannot fill the log; the next line says how many went unlogged. */
#include "peer-internal.h"

#include "log.h"

#include <stdio.h>
#include <string.h>

#define LOG_EVERY_MS 60000

static const char *why_text(enum cvd_peer_refusal why)
{
    switch (why) {
    case CVD_PEER_REFUSED_NO_CERT: return "no client certificate";
    case CVD_PEER_REFUSED_OTHER_CA: return "its certificate does not verify "
                                           "against the cluster CA";
    case CVD_PEER_REFUSED_PLAINTEXT: return "not TLS (plaintext)";
    case CVD_PEER_REFUSED_NOT_MEMBER: return "not a member of the cluster";
    case CVD_PEER_REFUSED_REMOVED: return "removed from the cluster";
    case CVD_PEER_REFUSED_PLAIN_HOST: return "a plaintext connection from "
                                             "another host than the member's";
    case CVD_PEER_REFUSED_PLAIN_TYPE: return "a request that needs TLS on "
                                             "a plaintext connection";
    default: return "its membership could not be checked";
    }
}

void peer_refusals_init(struct peer_refusals *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
}

void peer_refusals_destroy(struct peer_refusals *r)
{
    pthread_mutex_destroy(&r->lock);
}

/* Under lock: whether to log now, and how many were quiet before. */
static int due(struct peer_refusals *r, const char *key,
               enum cvd_peer_refusal why, unsigned long *quiet)
{
    int64_t now = peer_now_ms();
    int i, oldest = 0;

    for (i = 0; i < PEER_LOG_SLOTS; i++) {
        if (r->slot[i].key[0] && r->slot[i].why == why &&
            !strcmp(r->slot[i].key, key))
            break;
        if (r->slot[i].logged_ms < r->slot[oldest].logged_ms)
            oldest = i;
    }
    if (i == PEER_LOG_SLOTS) {      /* new: take the least recent slot */
        i = oldest;
        snprintf(r->slot[i].key, sizeof r->slot[i].key, "%s", key);
        r->slot[i].why = why;
        r->slot[i].quiet = 0;
        r->slot[i].logged_ms = now;
        *quiet = 0;
        return 1;
    }
    if (now - r->slot[i].logged_ms < LOG_EVERY_MS) {
        r->slot[i].quiet++;
        return 0;
    }
    *quiet = r->slot[i].quiet;
    r->slot[i].quiet = 0;
    r->slot[i].logged_ms = now;
    return 1;
}

void peer_refuse(struct peer_refusals *r, struct cvd_metrics *m,
                 enum cvd_peer_refusal why, const char *host,
                 const char *peer, const char *name, const char *detail)
{
    char key[sizeof r->slot[0].key], more[64] = "";
    unsigned long quiet = 0;
    int log;

    cvd_metrics_peer_refused(m, why, host, name);
    /* A peer is its host (ports change with every connection), and its
     * name when it showed a valid certificate. */
    snprintf(key, sizeof key, "%s/%s", host, name ? name : "");
    pthread_mutex_lock(&r->lock);
    log = due(r, key, why, &quiet);
    pthread_mutex_unlock(&r->lock);
    if (!log)
        return;
    if (quiet)
        snprintf(more, sizeof more, " (%lu more not logged since the last "
                 "line)", quiet);
    cvd_warn("peer: %s%s%s%s: refused: %s%s%s%s", peer, name ? " (" : "",
             name ? name : "", name ? ")" : "", why_text(why),
             detail && detail[0] ? ": " : "", detail ? detail : "", more);
}

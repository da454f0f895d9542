/* What the admin API sees of the NBD server: the connections serving a
 * volume (who, from where, since when) and the addresses listened on.
 * d->nbd_lock keeps the server from being freed while it is looked at;
 * its client list is read under its own lock. */
#include "nbd-server.h"
#include "daemon.h"
#include "core/error.h"
#include "nbd-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The identity an access list would name the client by: its first (a
 * certificate's CN, a PSK identity, a uid). */
static void session_of(const struct nbd_client *c, struct cvd_nbd_session *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->volume, sizeof s->volume, "%s", c->volume);
    snprintf(s->peer, sizeof s->peer, "%s", c->conn.peer);
    if (c->who.n)
        cvd_identity_format(&c->who.id[0], s->identity, sizeof s->identity);
    s->tls = c->conn.ssl != NULL;
    s->since = c->since;
}

static int collect(struct cvd_nbd *n, const char *volume,
                   struct cvd_nbd_session **out, size_t *count,
                   size_t *handshaking)
{
    const struct nbd_client *c;
    size_t cap = 0, got = 0, hs = 0;
    struct cvd_nbd_session *all = NULL;

    for (c = n->clients; c; c = c->next)
        cap++;
    if (cap && !(all = calloc(cap, sizeof *all)))
        return cv_error(-ENOMEM, "out of memory");
    /* The list is newest first: walk it to the end, then back. */
    for (c = n->clients; c && c->next; c = c->next)
        ;
    for (; c; c = c->prev) {
        if (!c->transmitting) {
            hs++;
            continue;
        }
        if (volume && strcmp(c->volume, volume))
            continue;
        session_of(c, &all[got++]);
    }
    *out = all;
    *count = got;
    if (handshaking)
        *handshaking = hs;
    return 0;
}

int cvd_nbd_sessions(struct cvd *d, const char *volume,
                     struct cvd_nbd_session **out, size_t *n,
                     size_t *handshaking)
{
    int r = 0;

    *out = NULL;
    *n = 0;
    if (handshaking)
        *handshaking = 0;
    pthread_mutex_lock(&d->nbd_lock);
    if (d->nbd) {
        pthread_mutex_lock(&d->nbd->lock);
        r = collect(d->nbd, volume, out, n, handshaking);
        pthread_mutex_unlock(&d->nbd->lock);
    }
    pthread_mutex_unlock(&d->nbd_lock);
    return r;
}

size_t cvd_nbd_listeners(struct cvd *d, char (*addrs)[CVD_NBD_ADDR_MAX],
                         size_t max)
{
    size_t n = 0;

    pthread_mutex_lock(&d->nbd_lock);
    /* bound[] is written before the server is published, never after. */
    for (int i = 0; d->nbd && i < d->nbd->nbound && n < max; i++)
        snprintf(addrs[n++], CVD_NBD_ADDR_MAX, "%s", d->nbd->bound[i]);
    pthread_mutex_unlock(&d->nbd_lock);
    return n;
}

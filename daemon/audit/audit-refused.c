/* Refused attempts are what a client can cause at will (an INFO loop made
 * 560 KB of audit log a second): per event, object and client address,
 * the first few a minute are recorded in full and the rest are counted,
 * then written as one summary event when their minute is over (or at
 * close).  Successful events never pass through here. */
#include "audit-internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WINDOW_S 60
/* Keys followed at once; the least recent is summarised to make room. */
#define MAX_KEYS 256

struct refusal {
    struct audit_summary s;     /* actor: the client without its port */
    int64_t window;             /* start of the current minute */
    unsigned in_window;         /* attempts in it */
};

struct audit_refusals {
    pthread_mutex_t lock;
    unsigned burst;
    unsigned n;
    struct refusal k[MAX_KEYS];
};

struct audit_refusals *audit_refusals_new(unsigned burst)
{
    struct audit_refusals *r = calloc(1, sizeof *r);

    if (!r)
        return NULL;
    pthread_mutex_init(&r->lock, NULL);
    r->burst = burst;
    return r;
}

void audit_refusals_free(struct audit_refusals *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r);
}

void audit_refusals_set_burst(struct audit_refusals *r, unsigned burst)
{
    pthread_mutex_lock(&r->lock);
    r->burst = burst;
    pthread_mutex_unlock(&r->lock);
}

/* The client, not the connection: "nbd:127.0.0.1:40312 CN=x" counts as
 * "nbd:127.0.0.1: CN=x", "nbd:unix:pid=42" as "nbd:unix:pid=" (digits
 * after the last ':' or '=' of the first word go). */
static void client_key(const char *actor, char *out, size_t len)
{
    size_t word = strcspn(actor, " "), cut = word;

    while (cut > 0 && actor[cut - 1] >= '0' && actor[cut - 1] <= '9')
        cut--;
    if (cut == word || cut == 0 ||
        (actor[cut - 1] != ':' && actor[cut - 1] != '='))
        cut = word;
    snprintf(out, len, "%.*s%s", (int)cut, actor, actor + word);
}

static struct refusal *find(struct audit_refusals *r, const char *actor,
                            const char *event, const char *object)
{
    for (unsigned i = 0; i < r->n; i++)
        if (!strcmp(r->k[i].s.actor, actor) &&
            !strcmp(r->k[i].s.event, event) &&
            !strcmp(r->k[i].s.object, object))
            return &r->k[i];
    return NULL;
}

/* Moves k's counted attempts into a summary, if any. */
static void take(struct refusal *k, struct audit_summary *sum, unsigned max,
                 unsigned *nsum)
{
    if (!k->s.count || *nsum >= max)
        return;
    sum[(*nsum)++] = k->s;
    k->s.count = 0;
}

static struct refusal *add(struct audit_refusals *r, const char *actor,
                           const char *event, const char *object,
                           struct audit_summary *sum, unsigned max,
                           unsigned *nsum)
{
    struct refusal *k;

    if (r->n < MAX_KEYS) {
        k = &r->k[r->n++];
    } else {
        k = &r->k[0];
        for (unsigned i = 1; i < r->n; i++)
            if (r->k[i].window < k->window)
                k = &r->k[i];
        take(k, sum, max, nsum);
    }
    memset(k, 0, sizeof *k);
    snprintf(k->s.actor, sizeof k->s.actor, "%s", actor);
    snprintf(k->s.event, sizeof k->s.event, "%s", event);
    snprintf(k->s.object, sizeof k->s.object, "%s", object);
    return k;
}

int audit_refusal(struct audit_refusals *r, const char *actor,
                  const char *event, const char *object,
                  struct audit_summary *sum, unsigned max, unsigned *nsum)
{
    char key[256];
    int64_t now = (int64_t)time(NULL);
    struct refusal *k;
    int full;

    client_key(actor ? actor : "", key, sizeof key);
    *nsum = 0;
    pthread_mutex_lock(&r->lock);
    /* Minutes that are over: their summaries are due. */
    for (unsigned i = 0; i < r->n; i++)
        if (now - r->k[i].window >= WINDOW_S)
            take(&r->k[i], sum, max, nsum);
    k = find(r, key, event ? event : "", object ? object : "");
    if (!k)
        k = add(r, key, event ? event : "", object ? object : "", sum, max,
                nsum);
    if (now - k->window >= WINDOW_S) {
        k->window = now;
        k->in_window = 0;
    }
    full = k->in_window++ < r->burst;
    if (!full) {
        if (!k->s.count++)
            k->s.first = now;
        k->s.last = now;
    }
    pthread_mutex_unlock(&r->lock);
    return full;
}

unsigned audit_refusals_flush(struct audit_refusals *r,
                              struct audit_summary *sum, unsigned max)
{
    unsigned n = 0;

    pthread_mutex_lock(&r->lock);
    for (unsigned i = 0; i < r->n; i++)
        take(&r->k[i], sum, max, &n);
    pthread_mutex_unlock(&r->lock);
    return n;
}

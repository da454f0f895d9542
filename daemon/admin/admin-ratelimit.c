/* Repeated warnings of the admin API, at most a few per kind and window:
 * a client that makes libmicrohttpd or the HTTPS acceptor complain on
 * every connection must not be able to fill the disk with the log. */
#include "admin-internal.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static time_t now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

void cvd_admin_ratelimit_init(struct cvd_admin_ratelimit *rl)
{
    memset(rl, 0, sizeof *rl);
    pthread_mutex_init(&rl->lock, NULL);
}

void cvd_admin_ratelimit_destroy(struct cvd_admin_ratelimit *rl)
{
    pthread_mutex_destroy(&rl->lock);
}

/* The slot of key, or the one whose window is oldest (a kind of message
 * not seen for long loses its count, which only lets it through again). */
static struct cvd_admin_rl_slot *slot_of(struct cvd_admin_ratelimit *rl,
                                         const void *key)
{
    struct cvd_admin_rl_slot *s, *oldest = &rl->slot[0];

    for (s = rl->slot; s < rl->slot + CVD_ADMIN_RL_SLOTS; s++) {
        if (s->key == key)
            return s;
        if (s->start < oldest->start)
            oldest = s;
    }
    memset(oldest, 0, sizeof *oldest);
    oldest->key = key;
    return oldest;
}

int cvd_admin_ratelimit(struct cvd_admin_ratelimit *rl, const void *key,
                        unsigned *dropped)
{
    struct cvd_admin_rl_slot *s;
    time_t t = now();
    int pass;

    *dropped = 0;
    pthread_mutex_lock(&rl->lock);
    s = slot_of(rl, key);
    if (!s->start || t - s->start >= CVD_ADMIN_RL_WINDOW) {
        *dropped = s->dropped;
        s->start = t;
        s->count = 0;
        s->dropped = 0;
    }
    pass = s->count < CVD_ADMIN_RL_BURST;
    if (pass)
        s->count++;
    else
        s->dropped++;
    pthread_mutex_unlock(&rl->lock);
    return pass;
}

void cvd_admin_log_limited(struct cvd_admin_ratelimit *rl, int level,
                           const void *key, const char *fmt, ...)
{
    char msg[512];
    unsigned dropped;
    va_list ap;

    if (!cvd_admin_ratelimit(rl, key, &dropped))
        return;
    if (dropped)
        cvd_log(level, "admin: %u messages like the next one were not "
                "logged in the last %d s", dropped, CVD_ADMIN_RL_WINDOW);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cvd_log(level, "%s", msg);
}

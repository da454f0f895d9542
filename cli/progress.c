#include "progress.h"
#include "core/size.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void draw(struct progress *p, double t)
{
    char a[32], b[32], rate[32];
    double el = t - p->start;

    if (p->total && p->unit) {
        fprintf(stderr, "\r%s: %3u%%  %llu of %llu %s   ", p->label,
                (unsigned)(p->done * 100 / p->total),
                (unsigned long long)p->done, (unsigned long long)p->total,
                p->unit);
    } else if (p->total) {
        cv_format_size(p->done, a, sizeof a);
        cv_format_size(p->total, b, sizeof b);
        cv_format_size(el > 0 ? (uint64_t)((double)p->done / el) : 0, rate,
                       sizeof rate);
        fprintf(stderr, "\r%s: %3u%%  %s of %s  %s/s   ", p->label,
                (unsigned)(p->done * 100 / p->total), a, b, rate);
    } else {
        fprintf(stderr, "\r%s: %.1f s   ", p->label, el);
    }
    fflush(stderr);
    p->last = t;
}

void progress_start(struct progress *p, const char *label, uint64_t total)
{
    p->enabled = isatty(STDERR_FILENO);
    p->label = label;
    p->total = total;
    p->unit = NULL;
    p->done = 0;
    p->start = p->last = now();
    p->ticking = 0;
    pthread_mutex_init(&p->lock, NULL);
}

void progress_start_count(struct progress *p, const char *label,
                          uint64_t total, const char *unit)
{
    progress_start(p, label, total);
    p->unit = unit;
}

void progress_update(struct progress *p, uint64_t done)
{
    double t;

    if (!p->enabled)
        return;
    pthread_mutex_lock(&p->lock);
    p->done = done;
    t = now();
    if (t - p->last >= 0.2)
        draw(p, t);
    pthread_mutex_unlock(&p->lock);
}

static void *tick_main(void *arg)
{
    struct progress *p = arg;

    for (;;) {
        usleep(200 * 1000);
        pthread_mutex_lock(&p->lock);
        if (!p->ticking) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        draw(p, now());
        pthread_mutex_unlock(&p->lock);
    }
}

void progress_tick(struct progress *p)
{
    if (!p->enabled)
        return;
    p->ticking = 1;
    if (pthread_create(&p->ticker, NULL, tick_main, p) != 0)
        p->ticking = 0;
}

void progress_end(struct progress *p, int ok)
{
    int joined = 0;

    if (p->enabled) {
        pthread_mutex_lock(&p->lock);
        joined = p->ticking;
        p->ticking = 0;
        if (ok && p->total)
            p->done = p->total;
        draw(p, now());
        fputs(ok ? "done\n" : "failed\n", stderr);
        pthread_mutex_unlock(&p->lock);
        if (joined)
            pthread_join(p->ticker, NULL);
    }
    pthread_mutex_destroy(&p->lock);
}

#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Configuration, set once before any thread starts. */
static int max_level = LOG_INFO;
static int to_journal;

static const char *const level_names[] = {
    "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
};

void cvd_log_init(int level)
{
    max_level = level;
    to_journal = getenv("JOURNAL_STREAM") != NULL;
}

int cvd_log_level_parse(const char *s)
{
    for (int i = LOG_ERR; i <= LOG_DEBUG; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    if (strcmp(s, "err") == 0 || strcmp(s, "warn") == 0)
        return s[0] == 'e' ? LOG_ERR : LOG_WARNING;
    return -1;
}

static void emit(int level, const char *msg)
{
    /* One fprintf per line so lines from different threads never mix. */
    if (to_journal) {
        fprintf(stderr, "<%d>%s\n", level, msg);
    } else {
        char ts[32];
        struct timespec now;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &now);
        localtime_r(&now.tv_sec, &tm);
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
        fprintf(stderr, "%s.%03ld cryptvold %s: %s\n", ts,
                now.tv_nsec / 1000000, level_names[level], msg);
    }
}

void cvd_log(int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (level > max_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(level, msg);
}

void cvd_ratelimit_init(struct cvd_ratelimit *rl)
{
    memset(rl, 0, sizeof *rl);
    pthread_mutex_init(&rl->lock, NULL);
}

void cvd_ratelimit_destroy(struct cvd_ratelimit *rl)
{
    pthread_mutex_destroy(&rl->lock);
}

static int64_t now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The key's slot, or the least recently used one taken over for it. */
static int find_slot(struct cvd_ratelimit *rl, const char *key)
{
    int oldest = 0;

    for (int i = 0; i < CVD_RATELIMIT_KEYS; i++) {
        if (rl->slot[i].key && !strcmp(rl->slot[i].key, key))
            return i;
        if (!rl->slot[i].key ||
            (rl->slot[oldest].key &&
             rl->slot[i].window_ms < rl->slot[oldest].window_ms))
            oldest = i;
    }
    rl->slot[oldest].key = key;
    rl->slot[oldest].window_ms = 0;
    rl->slot[oldest].lines = 0;
    rl->slot[oldest].suppressed = 0;
    return oldest;
}

/* 1 to print (with *dropped lines suppressed before it), 0 to drop. */
static int ratelimit_pass(struct cvd_ratelimit *rl, const char *key,
                          unsigned long *dropped)
{
    int64_t now = now_ms();
    int i, pass;

    pthread_mutex_lock(&rl->lock);
    i = find_slot(rl, key);
    if (now - rl->slot[i].window_ms >= 1000) {
        rl->slot[i].window_ms = now;
        rl->slot[i].lines = 0;
    }
    pass = rl->slot[i].lines < CVD_RATELIMIT_BURST;
    *dropped = 0;
    if (pass) {
        rl->slot[i].lines++;
        *dropped = rl->slot[i].suppressed;
        rl->slot[i].suppressed = 0;
    } else {
        rl->slot[i].suppressed++;
    }
    pthread_mutex_unlock(&rl->lock);
    return pass;
}

void cvd_log_limited(struct cvd_ratelimit *rl, const char *key, int level,
                     const char *fmt, ...)
{
    char msg[1024];
    unsigned long dropped = 0;
    size_t n;
    va_list ap;

    if (level > max_level || (rl && !ratelimit_pass(rl, key, &dropped)))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    n = strlen(msg);
    if (dropped && n < sizeof msg)
        snprintf(msg + n, sizeof msg - n, " (%lu similar lines suppressed)",
                 dropped);
    emit(level, msg);
}

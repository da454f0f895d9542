/* Daemon logging: levels as syslog's, to stderr, or to the journal when
 * stderr is connected to it (JOURNAL_STREAM is set), where each line gets
 * the "<N>" priority prefix that journald parses.  Safe from any thread. */
#ifndef CRYPTVOLD_LOG_H
#define CRYPTVOLD_LOG_H

#include <pthread.h>
#include <stdint.h>
#include <syslog.h>

/* Messages above level (LOG_ERR .. LOG_DEBUG) are dropped.  Called once at
 * startup, before threads exist. */
void cvd_log_init(int level);
int cvd_log_level_parse(const char *s);     /* "info" -> LOG_INFO, or -1 */

void cvd_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define cvd_err(...)   cvd_log(LOG_ERR, __VA_ARGS__)
#define cvd_warn(...)  cvd_log(LOG_WARNING, __VA_ARGS__)
#define cvd_info(...)  cvd_log(LOG_INFO, __VA_ARGS__)
#define cvd_debug(...) cvd_log(LOG_DEBUG, __VA_ARGS__)

/* Warnings a remote client can cause at will (one per connection, request
 * or refused attempt) go through a rate limiter, so that a client cannot
 * fill the disk or the journal: per key (a static string naming the call
 * site), at most CVD_RATELIMIT_BURST lines a second; the first line after
 * that says how many were suppressed.  The owner (the NBD server, ...)
 * holds one; keys beyond CVD_RATELIMIT_KEYS share the least recent slot. */
#define CVD_RATELIMIT_KEYS 32
#define CVD_RATELIMIT_BURST 5

struct cvd_ratelimit {
    pthread_mutex_t lock;
    struct {
        const char *key;
        int64_t window_ms;      /* start of the current second */
        unsigned lines;         /* printed in it */
        unsigned long suppressed;
    } slot[CVD_RATELIMIT_KEYS];
};

void cvd_ratelimit_init(struct cvd_ratelimit *rl);
void cvd_ratelimit_destroy(struct cvd_ratelimit *rl);

/* As cvd_log, through rl under key; rl NULL logs unlimited. */
void cvd_log_limited(struct cvd_ratelimit *rl, const char *key, int level,
                     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define cvd_warn_limited(rl, key, ...) \
    cvd_log_limited(rl, key, LOG_WARNING, __VA_ARGS__)
#define cvd_info_limited(rl, key, ...) \
    cvd_log_limited(rl, key, LOG_INFO, __VA_ARGS__)

#endif

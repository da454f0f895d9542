/* Daemon logging: levels as syslog's, to one of
 *  - a file (log-file), reopened on SIGHUP for logrotate;
 *  - the journal when stderr is connected to it (JOURNAL_STREAM names
 *    stderr's device and inode), each line with the "<N>" priority prefix
 *    that journald parses;
 *  - syslog, when detached without a log file (never the terminal it was
 *    started from, which may be gone);
 *  - stderr otherwise (in the foreground).
 * Safe from any thread. */
#ifndef CRYPTVOLD_LOG_H
#define CRYPTVOLD_LOG_H

#include <pthread.h>
#include <stdint.h>
#include <syslog.h>

enum cvd_log_target {
    CVD_LOG_STDERR, CVD_LOG_JOURNAL, CVD_LOG_FILE, CVD_LOG_SYSLOG,
};

/* Messages above level (LOG_ERR .. LOG_DEBUG) are dropped.  Called once at
 * startup, before threads exist.  cvd_log_init logs to stderr or the
 * journal (tests, tools); cvd_log_open picks the target as above (path
 * NULL: no log file) and fails if the file cannot be opened. */
void cvd_log_init(int level);
int cvd_log_open(int level, const char *path, int detached);
enum cvd_log_target cvd_log_target(void);
/* Whether warnings and errors are also printed on stderr (until ready,
 * when the log goes to a file or syslog). */
int cvd_log_echoes_stderr(void);
/* Once serving: stops the echo; when detached, also points stderr away
 * from the terminal (to the log file, else /dev/null). */
void cvd_log_ready(int detached);
/* SIGHUP: the log file opened again by name (after logrotate renamed it). */
int cvd_log_reopen(void);
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

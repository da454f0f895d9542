/* Daemon logging: levels as syslog's, to stderr, or to the journal when
 * stderr is connected to it (JOURNAL_STREAM is set), where each line gets
 * the "<N>" priority prefix that journald parses.  Safe from any thread. */
#ifndef CRYPTVOLD_LOG_H
#define CRYPTVOLD_LOG_H

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

#endif

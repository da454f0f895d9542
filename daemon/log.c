#include "log.h"

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

void cvd_log(int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (level > max_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
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

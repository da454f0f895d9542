/* Times in the audit log: written as RFC 3339 UTC with seconds, read back
 * for ?since=, which also takes epoch seconds and an age ("10m"). */
#include "audit.h"
#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void cvd_audit_format_time(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (!gmtime_r(&tt, &tm) ||
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, len, "?");
}

/* Exactly n digits at *p, advancing it; -1 if they are not there. */
static int digits(const char **p, int n)
{
    int v = 0;

    for (; n > 0; n--, (*p)++) {
        if (**p < '0' || **p > '9')
            return -1;
        v = v * 10 + (**p - '0');
    }
    return v;
}

static int days_in_month(int year, int month)
{
    static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    return month == 2 && leap ? 29 : days[month - 1];
}

/* The zone after the seconds: "Z", or "+HH:MM" / "-HH:MM" (seconds east
 * of UTC into *off). */
static int parse_zone(const char *p, long *off)
{
    int sign, h, m;

    *off = 0;
    if ((*p == 'Z' || *p == 'z') && !p[1])
        return 0;
    if (*p != '+' && *p != '-')
        return -1;
    sign = *p++ == '-' ? -1 : 1;
    h = digits(&p, 2);
    if (h < 0 || h > 23 || *p++ != ':')
        return -1;
    m = digits(&p, 2);
    if (m < 0 || m > 59 || *p)
        return -1;
    *off = sign * (h * 3600L + m * 60L);
    return 0;
}

/* RFC 3339 section 5.6 by hand: strptime accepts too much (one-digit
 * fields, spaces) to tell an operator that a time is malformed. */
int cvd_audit_parse_time(const char *s, int64_t *out)
{
    struct tm tm = { 0 };
    const char *p = s;
    long off;
    int year;

    year = digits(&p, 4);
    if (year < 0 || *p++ != '-')
        return -EINVAL;
    tm.tm_mon = digits(&p, 2) - 1;
    if (tm.tm_mon < 0 || tm.tm_mon > 11 || *p++ != '-')
        return -EINVAL;
    tm.tm_mday = digits(&p, 2);
    if (tm.tm_mday < 1 || tm.tm_mday > days_in_month(year, tm.tm_mon + 1))
        return -EINVAL;
    /* RFC 3339 lets a space stand for the T, for readability. */
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -EINVAL;
    p++;
    tm.tm_hour = digits(&p, 2);
    if (tm.tm_hour < 0 || tm.tm_hour > 23 || *p++ != ':')
        return -EINVAL;
    tm.tm_min = digits(&p, 2);
    if (tm.tm_min < 0 || tm.tm_min > 59 || *p++ != ':')
        return -EINVAL;
    tm.tm_sec = digits(&p, 2);
    if (tm.tm_sec < 0 || tm.tm_sec > 60)        /* 60: a leap second */
        return -EINVAL;
    /* Fractions of a second: the log has whole seconds. */
    if (*p == '.') {
        if (p[1] < '0' || p[1] > '9')
            return -EINVAL;
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    }
    if (parse_zone(p, &off) < 0)
        return -EINVAL;
    tm.tm_year = year - 1900;
    *out = (int64_t)timegm(&tm) - off;
    return 0;
}

/* "90s", "10m", "2h", "1d": that long before now. */
static int parse_age(const char *s, int64_t now, int64_t *out)
{
    static const struct { char c; int64_t secs; } units[] = {
        { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 } };
    size_t n = strspn(s, "0123456789"), i;
    int64_t v = 0;

    if (n == 0 || n > 9 || !s[n] || s[n + 1])
        return -EINVAL;
    for (i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    for (i = 0; i < sizeof units / sizeof units[0]; i++)
        if (s[n] == units[i].c) {
            *out = now - v * units[i].secs;
            return 0;
        }
    return -EINVAL;
}

int cvd_audit_parse_since(const char *s, int64_t now, int64_t *out)
{
    size_t n = strspn(s, "0123456789");
    int64_t v = 0;
    size_t i;

    if (n > 0 && !s[n] && n <= 12) {            /* epoch seconds */
        for (i = 0; i < n; i++)
            v = v * 10 + (s[i] - '0');
        *out = v;
        return 0;
    }
    if (parse_age(s, now, out) == 0 || cvd_audit_parse_time(s, out) == 0)
        return 0;
    return cv_error(-EINVAL, "since \"%.64s\": not a time (use seconds since "
                    "the epoch, a UTC time such as 2026-11-23T10:00:00Z, or "
                    "an age such as 10m, 2h or 1d)", s);
}

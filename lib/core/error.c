#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define CV_ERROR_MAX 512

static __thread char last_error[CV_ERROR_MAX];

int cv_error(int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

int cv_error_prefix(int code, const char *fmt, ...)
{
    char prefix[CV_ERROR_MAX], old[CV_ERROR_MAX], both[2 * CV_ERROR_MAX + 2];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    if (old[0] == '\0')
        snprintf(old, sizeof old, "%s", strerror(code < 0 ? -code : code));
    snprintf(both, sizeof both, "%s: %s", prefix, old);
    both[sizeof last_error - 1] = '\0';     /* truncate to fit */
    memcpy(last_error, both, sizeof last_error);
    return code;
}

const char *cv_last_error(void)
{
    return last_error;
}

void cv_clear_error(void)
{
    last_error[0] = '\0';
}

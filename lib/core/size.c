#include "size.h"
#include "error.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

static int suffix_shift(const char *s, unsigned *shift)
{
    static const char units[] = "KMGTPE";
    const char *u;

    if (*s == '\0') {
        *shift = 0;
        return 0;
    }
    if (*s == 'B' || *s == 'b') {
        *shift = 0;
        return s[1] == '\0' ? 0 : -EINVAL;
    }
    for (u = units; *u; u++) {
        if (toupper((unsigned char)*s) == *u) {
            *shift = 10 * (unsigned)(u - units + 1);
            s++;
            if (*s == '\0' || strcasecmp(s, "iB") == 0 ||
                strcasecmp(s, "B") == 0)
                return 0;
            return -EINVAL;
        }
    }
    return -EINVAL;
}

int cv_parse_size(const char *str, uint64_t *out)
{
    unsigned long long n;
    unsigned shift;
    char *end;

    if (!str || !isdigit((unsigned char)str[0]))
        return cv_error(-EINVAL, "size \"%s\": not a number", str ? str : "");
    errno = 0;
    n = strtoull(str, &end, 10);
    if (errno == ERANGE)
        return cv_error(-ERANGE, "size \"%s\": too large", str);
    if (suffix_shift(end, &shift) != 0)
        return cv_error(-EINVAL, "size \"%s\": unknown suffix \"%s\" "
                        "(use K, M, G, T or P)", str, end);
    if (shift && n > (UINT64_MAX >> shift))
        return cv_error(-ERANGE, "size \"%s\": too large", str);
    *out = (uint64_t)n << shift;
    return 0;
}

const char *cv_format_size(uint64_t size, char *buf, size_t len)
{
    static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB",
                                   "EiB" };
    double v = (double)size;
    unsigned i = 0;

    while (v >= 1024 && i < 6) {
        v /= 1024;
        i++;
    }
    if (i == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)size);
    else
        snprintf(buf, len, "%.1f %s", v, units[i]);
    return buf;
}

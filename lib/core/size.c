#include "size.h"
#include "error.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The multiplier a unit names: "" and "B" bytes; K, M, G, T, P, E alone or
 * with "iB" powers of 1024; with "B" alone powers of 1000, as coreutils
 * and the SI read "GB".  0 if s is no unit. */
static uint64_t unit_of(const char *s)
{
    static const char prefixes[] = "KMGTPE";
    const char *p;
    uint64_t m = 1;
    unsigned i, n;
    int decimal;

    if (*s == '\0' || !strcasecmp(s, "B"))
        return 1;
    p = strchr(prefixes, toupper((unsigned char)*s));
    if (!p || !*s)
        return 0;
    if (s[1] == '\0' || !strcasecmp(s + 1, "iB"))
        decimal = 0;
    else if (!strcasecmp(s + 1, "B"))
        decimal = 1;
    else
        return 0;
    n = (unsigned)(p - prefixes) + 1;
    for (i = 0; i < n; i++)
        m *= decimal ? 1000 : 1024;
    return m;
}

/* The digits of str up to a '.', a space or a unit, as a number with
 * *scale decimals: "1.25" is 125 with scale 100. */
static int read_number(const char *str, const char **end, unsigned __int128 *n,
                       uint64_t *scale)
{
    const char *p = str;
    int fraction = 0, digits = 0;

    *n = 0;
    *scale = 1;
    for (; isdigit((unsigned char)*p) || (*p == '.' && !fraction); p++) {
        if (*p == '.') {
            fraction = 1;
            continue;
        }
        if (fraction && *scale >= 1000000000000000000ull)
            return -EINVAL;     /* more decimals than bytes have */
        if (*n > UINT64_MAX)
            return -ERANGE;
        *n = *n * 10 + (unsigned)(*p - '0');
        digits++;
        if (fraction)
            *scale *= 10;
    }
    *end = p;
    /* "1." and "1.x" are typos, not sizes. */
    if (!digits || (fraction && (p[-1] == '.' || *scale == 1)))
        return -EINVAL;
    return 0;
}

int cv_parse_size(const char *str, uint64_t *out)
{
    unsigned __int128 n, bytes;
    const char *unit;
    uint64_t scale, m;
    int r;

    if (!str || !str[0])
        return cv_error(-EINVAL, "size \"%s\": not a number (e.g. 512M, 10G, "
                        "1.5GiB)", str ? str : "");
    if (str[0] == '-')
        return cv_error(-EINVAL, "size \"%s\": negative", str);
    if (!isdigit((unsigned char)str[0]))
        return cv_error(-EINVAL, "size \"%s\": not a number (e.g. 512M, 10G, "
                        "1.5GiB)", str);
    r = read_number(str, &unit, &n, &scale);
    if (r == -ERANGE)
        return cv_error(-ERANGE, "size \"%s\": too large", str);
    if (r < 0)
        return cv_error(-EINVAL, "size \"%s\": not a number (e.g. 512M, 10G, "
                        "1.5GiB)", str);
    /* "1.5 GiB", as sizes are printed, may come back as one argument. */
    if (unit[0] == ' ' && unit[1] && unit[1] != ' ')
        unit++;
    m = unit_of(unit);
    if (!m)
        return cv_error(-EINVAL, "size \"%s\": unknown suffix \"%s\" (K, M, "
                        "G, T, P, E or KiB, MiB, ...: powers of 1024; KB, MB, "
                        "GB, ...: powers of 1000)", str, unit);
    if (n / scale > UINT64_MAX || n > (~(unsigned __int128)0) / m ||
        n * m / scale > UINT64_MAX)
        return cv_error(-ERANGE, "size \"%s\": too large", str);
    bytes = n * m;
    if (bytes % scale)
        return cv_error(-EINVAL, "size \"%s\": not a whole number of bytes "
                        "(give it in a smaller unit)", str);
    *out = (uint64_t)(bytes / scale);
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

const char *cv_format_size_exact(uint64_t size, char *buf, size_t len)
{
    char human[32];
    uint64_t unit = 1, tenths;

    cv_format_size(size, human, sizeof human);
    while (unit < (1ull << 60) && size >= unit * 1024)
        unit *= 1024;
    /* Exact when the one decimal shown says it all. */
    tenths = (uint64_t)(((unsigned __int128)size * 10) / unit);
    if (unit == 1 || (unsigned __int128)tenths * unit == (unsigned __int128)size * 10)
        snprintf(buf, len, "%s", human);
    else
        snprintf(buf, len, "%s (%llu bytes)", human, (unsigned long long)size);
    return buf;
}

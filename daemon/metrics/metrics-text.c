/* The Prometheus text format (metrics-text.h), written strictly: names
 * are checked against the format's grammar, samples must belong to the
 * family declared last, and a family is declared once, so that a mistake
 * in metrics.c is an error in the unit test rather than a scrape that
 * Prometheus rejects or, worse, reads differently. */
#include "metrics-text.h"

#include "core/error.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Families one exposition may declare (ours has about thirty). */
#define MAX_FAMILIES 128

/* Declared family names, to refuse a second declaration. */
struct cvd_prom_families {
    size_t n;
    char *name[MAX_FAMILIES];
    enum cvd_prom_type type[MAX_FAMILIES];
};

__attribute__((format(printf, 3, 4)))
static void fail(struct cvd_prom *p, int err, const char *fmt, ...)
{
    va_list ap;

    if (p->err)
        return;
    p->err = err;
    va_start(ap, fmt);
    vsnprintf(p->why, sizeof p->why, fmt, ap);
    va_end(ap);
}

void cvd_prom_init(struct cvd_prom *p)
{
    memset(p, 0, sizeof *p);
}

static void families_free(struct cvd_prom_families *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        free(f->name[i]);
    free(f);
}

void cvd_prom_free(struct cvd_prom *p)
{
    families_free(p->fam);
    free(p->buf);
    memset(p, 0, sizeof *p);
}

static int room(struct cvd_prom *p, size_t more)
{
    size_t cap = p->cap ? p->cap : 16384;
    char *bigger;

    if (p->err)
        return -1;
    if (p->len + more + 1 <= p->cap)
        return 0;
    while (cap < p->len + more + 1)
        cap *= 2;
    bigger = realloc(p->buf, cap);
    if (!bigger) {
        fail(p, -ENOMEM, "out of memory (%zu bytes)", cap);
        return -1;
    }
    p->buf = bigger;
    p->cap = cap;
    return 0;
}

static void put(struct cvd_prom *p, const char *s, size_t n)
{
    if (room(p, n) < 0)
        return;
    memcpy(p->buf + p->len, s, n);
    p->len += n;
    p->buf[p->len] = '\0';
}

static void puts_(struct cvd_prom *p, const char *s)
{
    put(p, s, strlen(s));
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* for metrics (colon = 1), without the colon
 * for labels. */
static int name_ok(const char *s, int colon)
{
    if (!s || !*s || (*s >= '0' && *s <= '9'))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '_' || (colon && *s == ':')))
            return 0;
    return 1;
}

/* Length of the UTF-8 sequence at s, 0 if it is not a valid one. */
static size_t utf8_len(const unsigned char *s)
{
    size_t n, i;
    unsigned c = s[0];
    unsigned long cp;

    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0)
        n = 2, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0)
        n = 3, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0)
        n = 4, cp = c & 0x07;
    else
        return 0;
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and beyond U+10FFFF are not UTF-8. */
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
        (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* Writes s escaped: backslash and line feed always, the double quote in
 * label values (quote = 1).  The format is UTF-8: other bytes are an
 * error, never passed on or silently changed (two values would merge). */
static void put_escaped(struct cvd_prom *p, const char *s, int quote)
{
    const unsigned char *u = (const unsigned char *)s;

    while (*u) {
        size_t n = utf8_len(u);

        if (n == 0) {
            fail(p, -EINVAL, "\"%.40s\" is not UTF-8", s);
            return;
        }
        if (*u == '\\')
            put(p, "\\\\", 2);
        else if (*u == '\n')
            put(p, "\\n", 2);
        else if (*u == '"' && quote)
            put(p, "\\\"", 2);
        else
            put(p, (const char *)u, n);
        u += n;
    }
}

static const char *type_name(enum cvd_prom_type t)
{
    switch (t) {
    case CVD_PROM_COUNTER:
        return "counter";
    case CVD_PROM_GAUGE:
        return "gauge";
    default:
        return "histogram";
    }
}

void cvd_prom_family(struct cvd_prom *p, const char *name,
                     enum cvd_prom_type type, const char *help)
{
    struct cvd_prom_families *f;

    if (!name_ok(name, 1)) {
        fail(p, -EINVAL, "metric name \"%.60s\" is not valid",
             name ? name : "(null)");
        return;
    }
    if (p->err)
        return;
    if (!p->fam && !(p->fam = calloc(1, sizeof *p->fam))) {
        fail(p, -ENOMEM, "out of memory");
        return;
    }
    f = p->fam;
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->name[i], name)) {
            fail(p, -EINVAL, "metric %s declared twice", name);
            return;
        }
    if (f->n == MAX_FAMILIES) {
        fail(p, -E2BIG, "more than %d metric families", MAX_FAMILIES);
        return;
    }
    if (!(f->name[f->n] = strdup(name))) {
        fail(p, -ENOMEM, "out of memory");
        return;
    }
    f->type[f->n++] = type;
    puts_(p, "# HELP ");
    puts_(p, name);
    put(p, " ", 1);
    put_escaped(p, help, 0);
    puts_(p, "\n# TYPE ");
    puts_(p, name);
    put(p, " ", 1);
    puts_(p, type_name(type));
    put(p, "\n", 1);
}

/* 1 if sample name belongs to the family declared last. */
static int in_family(struct cvd_prom *p, const char *name, int histogram_part)
{
    struct cvd_prom_families *f = p->fam;
    const char *fam;
    size_t n;

    if (!f || !f->n)
        return 0;
    fam = f->name[f->n - 1];
    n = strlen(fam);
    if (f->type[f->n - 1] != CVD_PROM_HISTOGRAM)
        return !histogram_part && !strcmp(name, fam);
    return histogram_part && !strncmp(name, fam, n) &&
           (!strcmp(name + n, "_bucket") || !strcmp(name + n, "_sum") ||
            !strcmp(name + n, "_count"));
}

/* name{a="x",b="y"  (the brace left open when more follows) */
static void put_name_labels(struct cvd_prom *p, const char *name,
                            cvd_prom_labels l, int more)
{
    size_t i;

    puts_(p, name);
    if ((!l || !l[0]) && !more)
        return;
    put(p, "{", 1);
    for (i = 0; l && l[i]; i += 2) {
        if (!name_ok(l[i], 0) || !strncmp(l[i], "__", 2) || !l[i + 1]) {
            fail(p, -EINVAL, "%s: label \"%.40s\" is not valid",
                 name, l[i]);
            return;
        }
        if (more && !strcmp(l[i], "le")) {
            fail(p, -EINVAL, "%s: \"le\" is the histogram's own "
                 "label", name);
            return;
        }
        if (i)
            put(p, ",", 1);
        puts_(p, l[i]);
        put(p, "=\"", 2);
        put_escaped(p, l[i + 1], 1);
        put(p, "\"", 1);
    }
    if (!more)
        put(p, "}", 1);
    else if (i)
        put(p, ",", 1);
}

/* The shortest of %.15g .. %.17g that reads back as v. */
static void format_double(double v, char *buf, size_t len)
{
    if (isnan(v)) {
        snprintf(buf, len, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static void sample(struct cvd_prom *p, const char *name, cvd_prom_labels l,
                   const char *value, int histogram_part)
{
    if (!in_family(p, name, histogram_part)) {
        fail(p, -EINVAL, "sample %.60s is not of the family declared "
             "last", name);
        return;
    }
    put_name_labels(p, name, l, 0);
    put(p, " ", 1);
    puts_(p, value);
    put(p, "\n", 1);
}

void cvd_prom_u64(struct cvd_prom *p, const char *name, cvd_prom_labels l,
                  uint64_t value)
{
    char v[24];

    snprintf(v, sizeof v, "%llu", (unsigned long long)value);
    sample(p, name, l, v, 0);
}

void cvd_prom_double(struct cvd_prom *p, const char *name, cvd_prom_labels l,
                     double value)
{
    char v[40];

    format_double(value, v, sizeof v);
    sample(p, name, l, v, 0);
}

static void bucket(struct cvd_prom *p, const char *name, cvd_prom_labels l,
                   const char *le, uint64_t cumulative)
{
    char v[24];

    put_name_labels(p, name, l, 1);
    puts_(p, "le=\"");
    puts_(p, le);
    snprintf(v, sizeof v, "\"} %llu\n", (unsigned long long)cumulative);
    puts_(p, v);
}

void cvd_prom_histogram(struct cvd_prom *p, const char *name,
                        cvd_prom_labels l, const double *bounds,
                        const uint64_t *counts, size_t n, double sum)
{
    char part[160], le[40];
    uint64_t total = 0;
    size_t i;

    if (strlen(name) + 8 > sizeof part) {
        fail(p, -EINVAL, "metric name %.60s... is too long", name);
        return;
    }
    snprintf(part, sizeof part, "%s_bucket", name);
    if (!in_family(p, part, 1)) {
        fail(p, -EINVAL, "histogram %.60s is not of the family "
             "declared last", name);
        return;
    }
    for (i = 0; i < n; i++) {
        if (i && !(bounds[i] > bounds[i - 1])) {
            fail(p, -EINVAL, "histogram %.60s: bounds not ascending",
                 name);
            return;
        }
        total += counts[i];
        format_double(bounds[i], le, sizeof le);
        bucket(p, part, l, le, total);
    }
    total += counts[n];
    bucket(p, part, l, "+Inf", total);
    snprintf(part, sizeof part, "%s_sum", name);
    format_double(sum, le, sizeof le);
    sample(p, part, l, le, 1);
    snprintf(part, sizeof part, "%s_count", name);
    snprintf(le, sizeof le, "%llu", (unsigned long long)total);
    sample(p, part, l, le, 1);
}

int cvd_prom_finish(struct cvd_prom *p, char **out, size_t *len)
{
    int err;

    *out = NULL;
    *len = 0;
    if (!p->err)
        room(p, 0);             /* an empty exposition is still a buffer */
    if (p->err) {
        err = cv_error(p->err, "metrics: %s", p->why);
        cvd_prom_free(p);
        return err;
    }
    families_free(p->fam);
    *out = p->buf;
    *len = p->len;
    memset(p, 0, sizeof *p);
    return 0;
}

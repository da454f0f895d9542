/* The Prometheus text exposition format, version 0.0.4: families with
 * "# HELP" and "# TYPE" lines, samples with labels, histograms.  What
 * metrics.c renders goes through here, and nothing else writes the format,
 * so the escaping rules live in one place (tests/unit/test-metrics.c).
 *
 * A writer collects into one growing buffer.  Errors (out of memory, a
 * metric or label name the format does not allow) are remembered and
 * reported once, by cvd_prom_finish: callers write a whole exposition
 * without checking each line. */
#ifndef CRYPTVOLD_METRICS_TEXT_H
#define CRYPTVOLD_METRICS_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* What GET /metrics answers with (Prometheus's content negotiation). */
#define CVD_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

enum cvd_prom_type { CVD_PROM_COUNTER, CVD_PROM_GAUGE, CVD_PROM_HISTOGRAM };

struct cvd_prom_families;
struct cvd_prom {
    char *buf;
    size_t len, cap;
    struct cvd_prom_families *fam;  /* declared so far (metrics-text.c) */
    int err;                    /* the first error, a negative errno */
    char why[128];              /* ... and what it was about */
};

/* Labels are given as an array of name/value pairs ending with NULL:
 * (const char *[]){ "volume", "db1", "op", "read", NULL }.  NULL for
 * none. */
typedef const char *const *cvd_prom_labels;

void cvd_prom_init(struct cvd_prom *p);
/* Frees what is held (after an error, or when finish was not called). */
void cvd_prom_free(struct cvd_prom *p);

/* "# HELP name help" (help escaped: backslash, line feed) and "# TYPE
 * name type".  Every sample of the family must follow before the next
 * family starts. */
void cvd_prom_family(struct cvd_prom *p, const char *name,
                     enum cvd_prom_type type, const char *help);
/* name{labels} value.  Label values are escaped (backslash, double quote,
 * line feed). */
void cvd_prom_u64(struct cvd_prom *p, const char *name, cvd_prom_labels l,
                  uint64_t value);
/* The same for a value that is not a whole number: shortest text that
 * reads back as the same double; +Inf, -Inf and NaN as the format spells
 * them. */
void cvd_prom_double(struct cvd_prom *p, const char *name, cvd_prom_labels l,
                     double value);
/* A histogram's samples: name_bucket{labels,le="B"} for each upper bound
 * of bounds (ascending, in the metric's unit) and le="+Inf", cumulative
 * from counts (n + 1 per-bucket counts, the last above every bound), then
 * name_sum and name_count (the sum of counts). */
void cvd_prom_histogram(struct cvd_prom *p, const char *name,
                        cvd_prom_labels l, const double *bounds,
                        const uint64_t *counts, size_t n, double sum);

/* Hands over the text (malloc'ed, NUL-terminated; *len without the NUL),
 * or returns the first error with a message, freeing what was written. */
int cvd_prom_finish(struct cvd_prom *p, char **out, size_t *len);

#endif

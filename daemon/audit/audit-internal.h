/* What audit.c and audit-refused.c share. */
#ifndef CRYPTVOLD_AUDIT_INTERNAL_H
#define CRYPTVOLD_AUDIT_INTERNAL_H

#include <stdint.h>

struct audit_refusals;

/* A summary event to write: what refused attempts were not recorded one
 * by one. */
struct audit_summary {
    char actor[256], event[64], object[256];
    unsigned long count;
    int64_t first, last;        /* seconds since the epoch */
};

/* burst refused attempts per minute per (event, object, client address)
 * are recorded in full. */
struct audit_refusals *audit_refusals_new(unsigned burst);
void audit_refusals_free(struct audit_refusals *r);
void audit_refusals_set_burst(struct audit_refusals *r, unsigned burst);
/* A refused attempt: 1 to record it in full, 0 to count it.  Fills sum
 * (up to max) with summaries now due; *nsum says how many. */
int audit_refusal(struct audit_refusals *r, const char *actor,
                  const char *event, const char *object,
                  struct audit_summary *sum, unsigned max, unsigned *nsum);
/* Every pending summary (at close). */
unsigned audit_refusals_flush(struct audit_refusals *r,
                              struct audit_summary *sum, unsigned max);

#endif

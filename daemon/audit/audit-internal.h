/* What audit.c and audit-refused.c share. */
#ifndef CRYPTVOLD_AUDIT_INTERNAL_H
#define CRYPTVOLD_AUDIT_INTERNAL_H

#include <stddef.h>
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

/* The cluster-wide copy (audit-remote.c): a bounded queue of event lines
 * appended to the metadata store by a thread of its own. */
#define AUDIT_NODE_MAX 64
struct cvd_meta;
struct audit_remote;
struct audit_remote_stats {
    uint64_t sent;              /* events appended */
    uint64_t failures;          /* appends that failed (each retried) */
    uint64_t dropped;           /* events the full queue did not take */
    uint64_t queued;            /* events waiting now */
};
int audit_remote_new(struct cvd_meta *m, const char *node, size_t max,
                     struct audit_remote **out);
/* line: one event, with or without its newlines; copied. */
void audit_remote_push(struct audit_remote *q, const char *line, size_t len);
/* Waits up to ms for the queue to empty: 0, or -ETIMEDOUT. */
int audit_remote_flush(struct audit_remote *q, unsigned ms);
void audit_remote_stats(struct audit_remote *q, struct audit_remote_stats *s);
/* Sends what it can for a moment, then stops.  NULL is ignored. */
void audit_remote_free(struct audit_remote *q);

#endif

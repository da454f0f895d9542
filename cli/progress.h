/* Progress on a terminal for long operations; silent when stderr is not a
 * terminal, so scripts and logs see only results and errors. */
#ifndef CRYPTVOL_PROGRESS_H
#define CRYPTVOL_PROGRESS_H

#include <pthread.h>
#include <stdint.h>

struct progress {
    int enabled;
    const char *label;
    uint64_t total;             /* 0: unknown, show elapsed time */
    const char *unit;           /* NULL: bytes; else what is counted */
    uint64_t done;
    double start, last;
    pthread_t ticker;           /* for steps that report nothing */
    int ticking;
    pthread_mutex_t lock;
};

void progress_start(struct progress *p, const char *label, uint64_t total);
/* Counts things, not bytes: "2 of 5 volumes". */
void progress_start_count(struct progress *p, const char *label,
                          uint64_t total, const char *unit);
void progress_update(struct progress *p, uint64_t done);
/* Shows elapsed time every half second until progress_end (for work with
 * no measurable steps, such as key derivation). */
void progress_tick(struct progress *p);
void progress_end(struct progress *p, int ok);

#endif

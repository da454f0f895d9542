/* Locks on ranges of sectors, so that read-modify-write of a partial sector
 * never interleaves with another write to the same sector, while writes to
 * other ranges go on in parallel. */
#ifndef CRYPTVOL_RANGELOCK_H
#define CRYPTVOL_RANGELOCK_H

#include <pthread.h>
#include <stdint.h>

struct cv_range {
    uint64_t start, end;        /* [start, end) */
    struct cv_range *next;
};

struct cv_rangelock {
    pthread_mutex_t lock;
    pthread_cond_t released;
    struct cv_range *held;
};

void cv_rangelock_init(struct cv_rangelock *rl);
void cv_rangelock_destroy(struct cv_rangelock *rl);

/* Blocks until no held range overlaps [start, end), then holds it; r is
 * caller storage that stays valid until cv_range_unlock. */
void cv_range_lock(struct cv_rangelock *rl, struct cv_range *r,
                   uint64_t start, uint64_t end);
void cv_range_unlock(struct cv_rangelock *rl, struct cv_range *r);

#endif

#include "rangelock.h"

#include <stddef.h>

void cv_rangelock_init(struct cv_rangelock *rl)
{
    pthread_mutex_init(&rl->lock, NULL);
    pthread_cond_init(&rl->released, NULL);
    rl->held = NULL;
}

void cv_rangelock_destroy(struct cv_rangelock *rl)
{
    pthread_cond_destroy(&rl->released);
    pthread_mutex_destroy(&rl->lock);
}

static int overlaps_held(const struct cv_rangelock *rl, uint64_t start,
                         uint64_t end)
{
    const struct cv_range *h;

    for (h = rl->held; h; h = h->next)
        if (h->start < end && start < h->end)
            return 1;
    return 0;
}

void cv_range_lock(struct cv_rangelock *rl, struct cv_range *r,
                   uint64_t start, uint64_t end)
{
    r->start = start;
    r->end = end;
    pthread_mutex_lock(&rl->lock);
    while (overlaps_held(rl, start, end))
        pthread_cond_wait(&rl->released, &rl->lock);
    r->next = rl->held;
    rl->held = r;
    pthread_mutex_unlock(&rl->lock);
}

void cv_range_unlock(struct cv_rangelock *rl, struct cv_range *r)
{
    struct cv_range **pp;

    pthread_mutex_lock(&rl->lock);
    for (pp = &rl->held; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    pthread_cond_broadcast(&rl->released);
    pthread_mutex_unlock(&rl->lock);
}

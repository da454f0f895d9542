/* cv_rangelock: overlapping ranges exclude each other, disjoint ones do
 * not wait. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/rangelock.h"

/* How long a thread that should not block gets before we call it blocked,
 * and how long we watch one that should stay blocked. */
#define NO_BLOCK_TIMEOUT_S 10
#define STAYS_BLOCKED_MS 200

/* A thread that takes [start, end) and says when it holds it. */
struct locker {
    struct cv_rangelock *rl;
    uint64_t start, end;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int acquired;       /* holds the range */
    int release;        /* told to let go */
};

static void *locker_main(void *arg)
{
    struct locker *k = arg;
    struct cv_range r;

    cv_range_lock(k->rl, &r, k->start, k->end);
    pthread_mutex_lock(&k->lock);
    k->acquired = 1;
    pthread_cond_broadcast(&k->cond);
    while (!k->release)
        pthread_cond_wait(&k->cond, &k->lock);
    pthread_mutex_unlock(&k->lock);
    cv_range_unlock(k->rl, &r);
    return NULL;
}

static void locker_start(struct locker *k, struct cv_rangelock *rl,
                         uint64_t start, uint64_t end)
{
    memset(k, 0, sizeof *k);
    k->rl = rl;
    k->start = start;
    k->end = end;
    pthread_mutex_init(&k->lock, NULL);
    pthread_cond_init(&k->cond, NULL);
    assert_int_equal(pthread_create(&k->thread, NULL, locker_main, k), 0);
}

/* Waits up to timeout_ms for the thread to hold its range. */
static int locker_wait_acquired(struct locker *k, long timeout_ms)
{
    struct timespec until;
    int got, rc = 0;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&k->lock);
    while (!k->acquired && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&k->cond, &k->lock, &until);
    got = k->acquired;
    pthread_mutex_unlock(&k->lock);
    return got;
}

static void locker_finish(struct locker *k)
{
    pthread_mutex_lock(&k->lock);
    k->release = 1;
    pthread_cond_broadcast(&k->cond);
    pthread_mutex_unlock(&k->lock);
    pthread_join(k->thread, NULL);
    pthread_cond_destroy(&k->cond);
    pthread_mutex_destroy(&k->lock);
}

/* While [held_start, held_end) is held here, a thread asking for
 * [start, end) must wait, and must get it once the range is released. */
static void expect_blocks(uint64_t held_start, uint64_t held_end,
                          uint64_t start, uint64_t end)
{
    struct cv_rangelock rl;
    struct cv_range held;
    struct locker k;

    cv_rangelock_init(&rl);
    cv_range_lock(&rl, &held, held_start, held_end);
    locker_start(&k, &rl, start, end);
    if (locker_wait_acquired(&k, STAYS_BLOCKED_MS)) {
        cv_range_unlock(&rl, &held);
        locker_finish(&k);
        cv_rangelock_destroy(&rl);
        fail_msg("[%llu, %llu) was granted while [%llu, %llu) was held",
                 (unsigned long long)start, (unsigned long long)end,
                 (unsigned long long)held_start, (unsigned long long)held_end);
    }
    cv_range_unlock(&rl, &held);
    if (!locker_wait_acquired(&k, NO_BLOCK_TIMEOUT_S * 1000L))
        fail_msg("[%llu, %llu) not granted after [%llu, %llu) was released",
                 (unsigned long long)start, (unsigned long long)end,
                 (unsigned long long)held_start, (unsigned long long)held_end);
    locker_finish(&k);
    assert_null(rl.held);
    cv_rangelock_destroy(&rl);
}

/* While [held_start, held_end) is held here, [start, end) is granted at
 * once to another thread. */
static void expect_no_block(uint64_t held_start, uint64_t held_end,
                            uint64_t start, uint64_t end)
{
    struct cv_rangelock rl;
    struct cv_range held;
    struct locker k;
    int got;

    cv_rangelock_init(&rl);
    cv_range_lock(&rl, &held, held_start, held_end);
    locker_start(&k, &rl, start, end);
    got = locker_wait_acquired(&k, NO_BLOCK_TIMEOUT_S * 1000L);
    /* Release first, so a wrongly blocked thread can still finish. */
    cv_range_unlock(&rl, &held);
    locker_finish(&k);
    assert_null(rl.held);
    cv_rangelock_destroy(&rl);
    if (!got)
        fail_msg("[%llu, %llu) blocked by the disjoint [%llu, %llu)",
                 (unsigned long long)start, (unsigned long long)end,
                 (unsigned long long)held_start, (unsigned long long)held_end);
}

static void test_overlapping_ranges_exclude(void **state)
{
    (void)state;
    expect_blocks(0, 4096, 0, 4096);            /* same range */
    expect_blocks(0, 4096, 4095, 8192);         /* last byte */
    expect_blocks(4096, 8192, 0, 4097);         /* first byte */
    expect_blocks(0, 65536, 8192, 12288);       /* inside */
    expect_blocks(8192, 12288, 0, 65536);       /* around */
    expect_blocks(0, UINT64_MAX, 1ull << 62, (1ull << 62) + 1);
}

static void test_disjoint_ranges_do_not_block(void **state)
{
    (void)state;
    expect_no_block(0, 4096, 4096, 8192);       /* adjacent after */
    expect_no_block(4096, 8192, 0, 4096);       /* adjacent before */
    expect_no_block(0, 512, 1 << 20, (1 << 20) + 512);
    expect_no_block(0, 1ull << 62, 1ull << 62, UINT64_MAX);
}

/* One thread may hold many disjoint ranges, and a range freed in the
 * middle of the list is reusable while the others stay held. */
static void test_many_disjoint_held(void **state)
{
    struct cv_rangelock rl;
    struct cv_range r[8];
    struct locker k;
    int i;

    (void)state;
    cv_rangelock_init(&rl);
    for (i = 0; i < 8; i++)
        cv_range_lock(&rl, &r[i], (uint64_t)i * 100, (uint64_t)i * 100 + 100);
    cv_range_unlock(&rl, &r[3]);
    locker_start(&k, &rl, 300, 400);
    assert_true(locker_wait_acquired(&k, NO_BLOCK_TIMEOUT_S * 1000L));
    locker_finish(&k);
    /* [250, 350) still overlaps [200, 300). */
    locker_start(&k, &rl, 250, 350);
    assert_false(locker_wait_acquired(&k, STAYS_BLOCKED_MS));
    cv_range_unlock(&rl, &r[2]);
    assert_true(locker_wait_acquired(&k, NO_BLOCK_TIMEOUT_S * 1000L));
    locker_finish(&k);
    for (i = 0; i < 8; i++)
        if (i != 2 && i != 3)
            cv_range_unlock(&rl, &r[i]);
    assert_null(rl.held);
    cv_rangelock_destroy(&rl);
}

/* Many threads hammer overlapping ranges; a counter of threads inside
 * the shared part must never exceed one, and a plain (non-atomic)
 * read-modify-write under the lock never loses an update. */
#define HAMMER_THREADS 8
#define HAMMER_ROUNDS 2000

struct hammer {
    struct cv_rangelock rl;
    int inside;             /* atomic */
    int violations;         /* atomic */
    volatile uint64_t counter;
};

struct hammer_arg {
    struct hammer *h;
    unsigned id;
};

static void *hammer_main(void *arg)
{
    struct hammer_arg *a = arg;
    struct hammer *h = a->h;
    struct cv_range r;
    unsigned i;

    for (i = 0; i < HAMMER_ROUNDS; i++) {
        /* Different ranges, every one of them covering [1000, 1001). */
        uint64_t start = 1000 - (a->id * 37 + i) % 500;
        uint64_t end = 1001 + (a->id * 53 + i * 7) % 500;
        uint64_t c;

        cv_range_lock(&h->rl, &r, start, end);
        if (__atomic_add_fetch(&h->inside, 1, __ATOMIC_SEQ_CST) != 1)
            __atomic_add_fetch(&h->violations, 1, __ATOMIC_SEQ_CST);
        c = h->counter;
        if (i % 16 == 0)
            sched_yield();
        h->counter = c + 1;
        __atomic_sub_fetch(&h->inside, 1, __ATOMIC_SEQ_CST);
        cv_range_unlock(&h->rl, &r);
    }
    return NULL;
}

static void test_overlapping_exclusion_under_contention(void **state)
{
    struct hammer h;
    struct hammer_arg args[HAMMER_THREADS];
    pthread_t t[HAMMER_THREADS];
    unsigned i;

    (void)state;
    memset(&h, 0, sizeof h);
    cv_rangelock_init(&h.rl);
    for (i = 0; i < HAMMER_THREADS; i++) {
        args[i] = (struct hammer_arg){ .h = &h, .id = i };
        assert_int_equal(pthread_create(&t[i], NULL, hammer_main, &args[i]),
                         0);
    }
    for (i = 0; i < HAMMER_THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(h.violations, 0);
    assert_int_equal(h.counter, (uint64_t)HAMMER_THREADS * HAMMER_ROUNDS);
    assert_null(h.rl.held);
    cv_rangelock_destroy(&h.rl);
}

/* Threads on disjoint ranges are inside their ranges at the same time:
 * each waits, holding its range, until all have arrived. */
#define PARALLEL_THREADS 6

struct rendezvous {
    struct cv_rangelock rl;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int arrived;
    int timed_out;
};

struct rendezvous_arg {
    struct rendezvous *z;
    unsigned id;
};

static void *rendezvous_main(void *arg)
{
    struct rendezvous_arg *a = arg;
    struct rendezvous *z = a->z;
    struct cv_range r;
    struct timespec until;
    int rc = 0;

    cv_range_lock(&z->rl, &r, (uint64_t)a->id * 4096,
                  (uint64_t)a->id * 4096 + 4096);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += NO_BLOCK_TIMEOUT_S;
    pthread_mutex_lock(&z->lock);
    z->arrived++;
    pthread_cond_broadcast(&z->cond);
    while (z->arrived < PARALLEL_THREADS && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&z->cond, &z->lock, &until);
    if (z->arrived < PARALLEL_THREADS)
        z->timed_out = 1;
    pthread_mutex_unlock(&z->lock);
    cv_range_unlock(&z->rl, &r);
    return NULL;
}

static void test_disjoint_held_at_once(void **state)
{
    struct rendezvous z;
    struct rendezvous_arg args[PARALLEL_THREADS];
    pthread_t t[PARALLEL_THREADS];
    unsigned i;

    (void)state;
    memset(&z, 0, sizeof z);
    cv_rangelock_init(&z.rl);
    pthread_mutex_init(&z.lock, NULL);
    pthread_cond_init(&z.cond, NULL);
    for (i = 0; i < PARALLEL_THREADS; i++) {
        args[i] = (struct rendezvous_arg){ .z = &z, .id = i };
        assert_int_equal(pthread_create(&t[i], NULL, rendezvous_main,
                                        &args[i]), 0);
    }
    for (i = 0; i < PARALLEL_THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(z.timed_out, 0);
    assert_int_equal(z.arrived, PARALLEL_THREADS);
    assert_null(z.rl.held);
    pthread_cond_destroy(&z.cond);
    pthread_mutex_destroy(&z.lock);
    cv_rangelock_destroy(&z.rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overlapping_ranges_exclude),
        cmocka_unit_test(test_disjoint_ranges_do_not_block),
        cmocka_unit_test(test_many_disjoint_held),
        cmocka_unit_test(test_overlapping_exclusion_under_contention),
        cmocka_unit_test(test_disjoint_held_at_once),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

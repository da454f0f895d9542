/* The worker pool: every part of every job runs exactly once, from many
 * callers at once, and a pool whose workers went to sleep (idle past their
 * polling time) still wakes them for the next job. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/workers.h"

#define PARTS 16
#define CALLERS 6
#define JOBS 400

struct job_state {
    unsigned runs[PARTS];
    pthread_t caller;
    unsigned by_others;         /* parts that ran on a pool thread */
    unsigned spin_us;           /* each part's work */
};

static void busy_us(unsigned us)
{
    struct timespec a, b;

    clock_gettime(CLOCK_MONOTONIC, &a);
    do
        clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000 <
           us);
}

static void part_fn(void *arg, unsigned part)
{
    struct job_state *s = arg;

    __atomic_add_fetch(&s->runs[part], 1, __ATOMIC_RELAXED);
    if (!pthread_equal(pthread_self(), s->caller))
        __atomic_add_fetch(&s->by_others, 1, __ATOMIC_RELAXED);
    if (s->spin_us)
        busy_us(s->spin_us);
}

static void run_checked(struct cv_workers *w, unsigned spin_us,
                        unsigned *by_others)
{
    struct job_state s;

    memset(&s, 0, sizeof s);
    s.caller = pthread_self();
    s.spin_us = spin_us;
    cv_workers_run(w, PARTS, part_fn, &s);
    for (unsigned i = 0; i < PARTS; i++)
        assert_int_equal(s.runs[i], 1);
    if (by_others)
        *by_others += s.by_others;
}

static void *caller_main(void *arg)
{
    struct cv_workers *w = arg;

    for (unsigned i = 0; i < JOBS; i++)
        run_checked(w, 0, NULL);
    return NULL;
}

static void test_many_callers(void **state)
{
    struct cv_workers *w;
    pthread_t t[CALLERS];

    (void)state;
    assert_int_equal(cv_workers_new(3, &w), 0);
    for (unsigned i = 0; i < CALLERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, caller_main, w), 0);
    for (unsigned i = 0; i < CALLERS; i++)
        pthread_join(t[i], NULL);
    cv_workers_free(w);
}

/* Jobs 5 ms apart: the workers poll for 0.2 ms, then sleep; each job of
 * 16 parts of 1 ms must still get help (a pool that never woke its
 * sleeping workers would leave every part to the caller). */
static void test_sleeping_workers_wake(void **state)
{
    struct cv_workers *w;
    unsigned by_others = 0;

    (void)state;
    assert_int_equal(cv_workers_new(1, &w), 0);
    for (unsigned i = 0; i < 10; i++) {
        usleep(5000);
        run_checked(w, 1000, &by_others);
    }
    assert_true(by_others >= 10);
    cv_workers_free(w);
}

static void test_no_pool(void **state)
{
    (void)state;
    run_checked(NULL, 0, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_callers),
        cmocka_unit_test(test_sleeping_workers_wake),
        cmocka_unit_test(test_no_pool),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

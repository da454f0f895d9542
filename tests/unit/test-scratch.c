/* Per-thread scratch buffers (core/scratch.h): a thread gets its buffer
 * back for its next request of the same or a smaller size, nested gets
 * never share one, buffers past CV_SCRATCH_KEEP are not kept, and threads
 * never see each other's (each fills and checks its own in parallel). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdint.h>
#include <sched.h>
#include <string.h>

#include "core/scratch.h"

#define KiB 1024u

static void test_reuse_across_sizes(void **state)
{
    char *a, *b;

    (void)state;
    a = cv_scratch_get(64 * KiB);
    assert_non_null(a);
    assert_int_equal((uintptr_t)a % 64, 0);
    memset(a, 1, 64 * KiB);
    cv_scratch_put(a);
    assert_int_equal(cv_scratch_kept(), 64 * KiB);
    /* Same or smaller: the same buffer, no new one. */
    b = cv_scratch_get(4 * KiB);
    if (b != a)
        fail_msg("a 4 KiB buffer after a 64 KiB one is %p, not the kept %p",
                 (void *)b, (void *)a);
    cv_scratch_put(b);
    b = cv_scratch_get(64 * KiB);
    assert_ptr_equal(b, a);
    cv_scratch_put(b);
    /* Bigger: grown to a power of two, kept, and reused. */
    a = cv_scratch_get(200 * KiB);
    assert_non_null(a);
    memset(a, 2, 200 * KiB);
    cv_scratch_put(a);
    assert_int_equal(cv_scratch_kept(), 256 * KiB + 64 * KiB);
    b = cv_scratch_get(256 * KiB);
    assert_ptr_equal(b, a);
    memset(b, 3, 256 * KiB);
    /* Released: all but what is in use. */
    cv_scratch_release();
    assert_int_equal(cv_scratch_kept(), 0);
    cv_scratch_put(b);
    assert_int_equal(cv_scratch_kept(), 256 * KiB);
    cv_scratch_release();
    assert_int_equal(cv_scratch_kept(), 0);
}

static void test_nested_gets_do_not_share(void **state)
{
    char *p[CV_SCRATCH_SLOTS + 2];
    unsigned i, j;

    (void)state;
    for (i = 0; i < CV_SCRATCH_SLOTS + 2; i++) {
        p[i] = cv_scratch_get(4 * KiB);
        assert_non_null(p[i]);
        memset(p[i], (int)i + 1, 4 * KiB);
    }
    for (i = 0; i < CV_SCRATCH_SLOTS + 2; i++) {
        for (j = 0; j < 4 * KiB; j++)
            if (p[i][j] != (char)(i + 1))
                fail_msg("buffer %u of %u nested gets was overwritten at "
                         "byte %u: two gets got the same memory", i,
                         CV_SCRATCH_SLOTS + 2, j);
    }
    for (i = CV_SCRATCH_SLOTS + 2; i-- > 0;)
        cv_scratch_put(p[i]);
    /* Those past the slots were freed, not kept. */
    if (cv_scratch_kept() > CV_SCRATCH_SLOTS * (size_t)CV_SCRATCH_KEEP)
        fail_msg("this thread keeps %zu bytes, more than %u slots of %u",
                 cv_scratch_kept(), CV_SCRATCH_SLOTS, CV_SCRATCH_KEEP);
}

static void test_big_not_kept(void **state)
{
    size_t before = cv_scratch_kept();
    char *p;

    (void)state;
    p = cv_scratch_get(CV_SCRATCH_KEEP + 1);
    assert_non_null(p);
    memset(p, 4, CV_SCRATCH_KEEP + 1);
    cv_scratch_put(p);
    if (cv_scratch_kept() != before)
        fail_msg("a buffer of %u bytes was kept (%zu bytes kept, %zu "
                 "before)", CV_SCRATCH_KEEP + 1, cv_scratch_kept(), before);
    cv_scratch_put(NULL);
}

#define THREADS 8
#define ROUNDS 2000

struct thr {
    unsigned id;
    unsigned bad;
    size_t kept;                /* what the thread kept at its end */
};

static void *thread_main(void *arg)
{
    static const size_t sizes[] = { 4 * KiB, 64 * KiB, 4 * KiB, 256 * KiB,
                                    64 * KiB, 3 * 1024 * KiB };
    struct thr *t = arg;
    unsigned i;

    for (i = 0; i < ROUNDS; i++) {
        size_t len = sizes[i % 6], k;
        unsigned char *p = cv_scratch_get(len), *q = cv_scratch_get(512);
        unsigned char tag = (unsigned char)(t->id * 16 + i % 16);

        if (!p || !q) {
            t->bad++;
            break;
        }
        memset(p, tag, len);
        memset(q, tag ^ 0xff, 512);
        sched_yield();
        for (k = 0; k < len; k += 509)
            t->bad += p[k] != tag;
        for (k = 0; k < 512; k++)
            t->bad += q[k] != (unsigned char)(tag ^ 0xff);
        cv_scratch_put(q);
        cv_scratch_put(p);
    }
    t->kept = cv_scratch_kept();
    return NULL;
}

static void test_threads_own_buffers(void **state)
{
    pthread_t th[THREADS];
    struct thr t[THREADS];
    unsigned i;

    (void)state;
    for (i = 0; i < THREADS; i++) {
        t[i] = (struct thr){ .id = i };
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &t[i]), 0);
    }
    for (i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (i = 0; i < THREADS; i++) {
        if (t[i].bad)
            fail_msg("thread %u: %u bytes of its buffers changed under it",
                     i, t[i].bad);
        /* Its own slots: 256 KiB and 64 KiB for the last sizes. */
        if (t[i].kept < 256 * KiB ||
            t[i].kept > CV_SCRATCH_SLOTS * (size_t)CV_SCRATCH_KEEP)
            fail_msg("thread %u kept %zu bytes at its end", i, t[i].kept);
    }
    /* The threads' buffers went with them (ASan's leak check says so);
     * this one's are its own. */
    assert_true(cv_scratch_kept() <= CV_SCRATCH_SLOTS *
                (size_t)CV_SCRATCH_KEEP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_across_sizes),
        cmocka_unit_test(test_nested_gets_do_not_share),
        cmocka_unit_test(test_big_not_kept),
        cmocka_unit_test(test_threads_own_buffers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

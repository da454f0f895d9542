/* Missed-region records and the replica's epoch (daemon/repl/missed.h):
 * marks survive a reopen, next walks runs, clear takes whole regions
 * only, bytes counts, a mark across a region boundary takes both. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "repl/missed.h"

#define MiB (1ull << 20)

static char top[64];

static int setup(void **state)
{
    (void)state;
    snprintf(top, sizeof top, "/tmp/test-repl-missed.XXXXXX");
    return mkdtemp(top) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf %s", top);
    return system(cmd);
}

static void state_dir(char *dir, size_t len)
{
    assert_int_equal(repl_state_dir(top, "db1", dir, len), 0);
}

static void expect_run(struct repl_missed *m, uint64_t from, uint64_t off,
                       uint64_t len)
{
    uint64_t o = 1, l = 1;

    assert_int_equal(repl_missed_next(m, from, &o, &l), 0);
    if (o != off || l != len)
        fail_msg("next from %llu: [%llu, +%llu), expected [%llu, +%llu)",
                 (unsigned long long)from, (unsigned long long)o,
                 (unsigned long long)l, (unsigned long long)off,
                 (unsigned long long)len);
}

static void test_marks_survive_reopen(void **state)
{
    char dir[256], path[300];
    struct repl_missed *m;
    struct stat st;
    uint64_t o, l;

    (void)state;
    state_dir(dir, sizeof dir);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(repl_missed_open(dir, "n3", &m), 0);
    assert_int_equal(repl_missed_next(m, 0, &o, &l), 1);
    assert_true(repl_missed_bytes(m) == 0);
    assert_int_equal(repl_missed_mark(m, 5 * MiB + 4096, 4096), 0);
    assert_int_equal(repl_missed_mark(m, 100 * MiB, 3 * MiB), 0);
    assert_int_equal(repl_missed_mark(m, 0, 0), 0);     /* nothing */
    repl_missed_close(m);

    assert_int_equal(repl_missed_open(dir, "n3", &m), 0);
    assert_true(repl_missed_bytes(m) == 4 * MiB);
    expect_run(m, 0, 5 * MiB, MiB);
    expect_run(m, 6 * MiB, 100 * MiB, 3 * MiB);
    expect_run(m, 101 * MiB + 7, 101 * MiB + 7, 2 * MiB - 7);
    assert_int_equal(repl_missed_next(m, 103 * MiB, &o, &l), 1);
    repl_missed_close(m);

    /* Another node's record is another file. */
    assert_int_equal(repl_missed_open(dir, "@active", &m), 0);
    assert_true(repl_missed_bytes(m) == 0);
    repl_missed_close(m);

    assert_int_equal(repl_missed_remove(dir, "n3"), 0);
    snprintf(path, sizeof path, "%s/missed-n3", dir);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(repl_missed_remove(dir, "n3"), 0);  /* gone: fine */
    assert_int_equal(repl_missed_open(dir, "n3", &m), 0);
    assert_true(repl_missed_bytes(m) == 0);
    repl_missed_close(m);
}

/* A mark of 2 blocks across the 1 MiB boundary takes both regions; a
 * clear takes only the regions it covers wholly. */
static void test_boundary_and_clear(void **state)
{
    char dir[256];
    struct repl_missed *m;
    uint64_t o, l;

    (void)state;
    state_dir(dir, sizeof dir);
    assert_int_equal(repl_missed_open(dir, "n2", &m), 0);
    assert_int_equal(repl_missed_mark(m, 8 * MiB - 4096, 8192), 0);
    assert_true(repl_missed_bytes(m) == 2 * MiB);
    expect_run(m, 0, 7 * MiB, 2 * MiB);

    /* Half of region 7 and all of 8: only 8 goes. */
    assert_int_equal(repl_missed_clear(m, 7 * MiB + MiB / 2, MiB + MiB / 2),
                     0);
    expect_run(m, 0, 7 * MiB, MiB);
    /* Not wholly: stays. */
    assert_int_equal(repl_missed_clear(m, 7 * MiB, MiB - 4096), 0);
    expect_run(m, 0, 7 * MiB, MiB);
    /* Past the record's end: nothing to do, no error. */
    assert_int_equal(repl_missed_clear(m, 1ull << 40, 1ull << 30), 0);
    assert_int_equal(repl_missed_clear(m, 0, 64 * MiB), 0);
    assert_int_equal(repl_missed_next(m, 0, &o, &l), 1);
    repl_missed_close(m);

    /* The clear was written: it holds after a reopen. */
    assert_int_equal(repl_missed_open(dir, "n2", &m), 0);
    assert_true(repl_missed_bytes(m) == 0);
    /* Overflow refused, nothing marked. */
    assert_int_equal(repl_missed_mark(m, UINT64_MAX - 10, 100), -EINVAL);
    assert_int_equal(repl_missed_mark(m, 1ull << 60, MiB), -EFBIG);
    assert_true(repl_missed_bytes(m) == 0);
    repl_missed_close(m);
}

static void test_epoch(void **state)
{
    char dir[256], path[300];
    uint64_t e = 99;
    FILE *f;

    (void)state;
    state_dir(dir, sizeof dir);
    assert_int_equal(repl_epoch_get(dir, &e), 0);
    assert_true(e == 0);
    assert_int_equal(repl_epoch_put(dir, 7), 0);
    assert_int_equal(repl_epoch_get(dir, &e), 0);
    assert_true(e == 7);
    assert_int_equal(repl_epoch_put(dir, 1ull << 50), 0);
    assert_int_equal(repl_epoch_get(dir, &e), 0);
    assert_true(e == 1ull << 50);
    snprintf(path, sizeof path, "%s/epoch.tmp", dir);
    assert_int_equal(access(path, F_OK), -1);

    snprintf(path, sizeof path, "%s/epoch", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("garbage\n", f);
    fclose(f);
    assert_int_equal(repl_epoch_get(dir, &e), -EBADMSG);
    assert_non_null(strstr(cv_last_error(), "not an epoch"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_marks_survive_reopen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_boundary_and_clear, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_epoch, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

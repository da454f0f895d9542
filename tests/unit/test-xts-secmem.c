/* cv_xts's memory: libgcrypt's secure pool (the key schedules) and the key
 * copy are locked and excluded from core dumps, and a failing cv_xts_new
 * cleans up only what it made.  Linked with --wrap=mlock and
 * --wrap=pthread_mutex_{init,destroy} (tests/CMakeLists.txt) so a failure
 * of mlock can be forced and every mutex destroyed checked to have been
 * initialised. */
#include <errno.h>
#include <gcrypt.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/secmem.h"
#include "crypto/xts.h"

/* ------------------------------------------------------------------ */
/* The wraps */

int __real_mlock(const void *addr, size_t len);
int __wrap_mlock(const void *addr, size_t len);
int __real_pthread_mutex_init(pthread_mutex_t *m,
                              const pthread_mutexattr_t *a);
int __wrap_pthread_mutex_init(pthread_mutex_t *m,
                              const pthread_mutexattr_t *a);
int __real_pthread_mutex_destroy(pthread_mutex_t *m);
int __wrap_pthread_mutex_destroy(pthread_mutex_t *m);

/* Single-threaded while tracking is on. */
static struct {
    int fail_mlock, track;
    void *live[64];
    unsigned bad_destroys;
} w;

int __wrap_mlock(const void *addr, size_t len)
{
    if (w.fail_mlock) {
        errno = ENOMEM;
        return -1;
    }
    return __real_mlock(addr, len);
}

int __wrap_pthread_mutex_init(pthread_mutex_t *m,
                              const pthread_mutexattr_t *a)
{
    unsigned i;

    for (i = 0; w.track && i < 64; i++)
        if (!w.live[i]) {
            w.live[i] = m;
            break;
        }
    return __real_pthread_mutex_init(m, a);
}

int __wrap_pthread_mutex_destroy(pthread_mutex_t *m)
{
    unsigned i;

    for (i = 0; w.track && i < 64 && w.live[i] != m; i++)
        ;
    if (w.track && i == 64)
        w.bad_destroys++;
    else if (w.track)
        w.live[i] = NULL;
    return __real_pthread_mutex_destroy(m);
}

/* ------------------------------------------------------------------ */

/* The VmFlags line of the mapping of /proc/self/smaps that holds p. */
static void vmflags_of(const void *p, char *out, size_t len)
{
    FILE *f = fopen("/proc/self/smaps", "re");
    char line[512];
    int in = 0;

    assert_non_null(f);
    out[0] = 0;
    while (fgets(line, sizeof line, f)) {
        uintptr_t lo, hi;

        /* A mapping's first line starts "lo-hi "; its fields do not. */
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) == 2)
            in = lo <= (uintptr_t)p && (uintptr_t)p < hi;
        else if (in && !strncmp(line, "VmFlags:", 8)) {
            snprintf(out, len, "%s", line + 8);
            break;
        }
    }
    fclose(f);
    if (!out[0])
        fail_msg("no mapping in /proc/self/smaps holds %p", p);
}

/* AddressSanitizer makes mlock a no-op, so a sanitizer build cannot show
 * the lock; it still shows the dump exclusion. */
#if defined(__SANITIZE_ADDRESS__)
#define LOCK_VISIBLE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LOCK_VISIBLE 0
#endif
#endif
#ifndef LOCK_VISIBLE
#define LOCK_VISIBLE 1
#endif

static void assert_locked_nodump(const void *p, const char *what)
{
    char flags[512];

    vmflags_of(p, flags, sizeof flags);
    if ((LOCK_VISIBLE && !strstr(flags, " lo")) || !strstr(flags, " dd"))
        fail_msg("%s at %p: VmFlags%s lacks lo (locked) or dd (not dumped)",
                 what, p, flags);
}

/* The key schedules live where cv_xts's handles are: libgcrypt's secure
 * pool, which must be locked and left out of core dumps. */
static void test_secure_pool_locked_nodump(void **state)
{
    void *p;

    (void)state;
    if (cv_xts_init() < 0)
        fail_msg("cv_xts_init: %s", cv_last_error());
    assert_true(cv_xts_secmem_size() >= 16 * 1024);
    p = gcry_malloc_secure(64);
    assert_non_null(p);
    assert_true(gcry_is_secure(p));
    assert_locked_nodump(p, "libgcrypt's secure memory");
    gcry_free(p);
    p = cv_secmem_alloc(64);
    assert_non_null(p);
    assert_locked_nodump(p, "cv_secmem_alloc's memory");
    cv_secmem_free(p, 64);
}

/* When the key's locked copy cannot be made, cv_xts_new fails with the
 * reason and its cleanup destroys no mutex it did not initialise. */
static void test_new_fails_cleanly(void **state)
{
    unsigned char key[64];
    struct cv_xts *x = NULL;
    int r;

    (void)state;
    memset(key, 0x5a, 32);
    memset(key + 32, 0xa5, 32);
    assert_int_equal(cv_xts_init(), 0);     /* the real mlock for the pool */
    memset(&w, 0, sizeof w);
    w.track = 1;
    w.fail_mlock = 1;
    r = cv_xts_new(key, sizeof key, 4096, NULL, &x);
    w.fail_mlock = 0;
    w.track = 0;
    assert_int_equal(r, -ENOMEM);
    assert_null(x);
    if (!strstr(cv_last_error(), "mlock"))
        fail_msg("message \"%s\" does not say mlock failed", cv_last_error());
    if (w.bad_destroys)
        fail_msg("cv_xts_new's failure path destroyed %u mutex(es) it never "
                 "initialised", w.bad_destroys);

    /* And with mlock working again, the same key opens. */
    assert_int_equal(cv_xts_new(key, sizeof key, 4096, NULL, &x), 0);
    cv_xts_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secure_pool_locked_nodump),
        cmocka_unit_test(test_new_fails_cleanly),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* libgcrypt, initialised once for the process by the library: version
 * check, a secure memory pool for the cipher handles' key schedules, and
 * that pool locked in RAM and excluded from core dumps.
 *
 * libgcrypt mlocks its pool but does not mark it MADV_DONTDUMP, and it only
 * warns on stderr when the mlock fails.  So after initialising it we find
 * the pool (its first block is at its start) and lock and mark it
 * ourselves, which also tells us whether the lock held. */
#include "xts.h"
#include "core/error.h"

#include <errno.h>
#include <gcrypt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define NEED_GCRYPT "1.10.0"
/* A keyed AES-256-XTS handle takes about 3 KiB of the pool: 4 MiB holds
 * some 1300, e.g. 160 volumes with 8 handles each. */
#define POOL_MAX (4u << 20)
#define POOL_MIN (16u << 10)        /* libgcrypt's own minimum */

struct init_state {
    pthread_once_t once;
    size_t pool_size;
    int result;
    char message[512];
};

static struct init_state state = { .once = PTHREAD_ONCE_INIT };

/* Half of RLIMIT_MEMLOCK, at most POOL_MAX: the rest stays for the keys
 * and passphrases in cv_secmem_alloc's pages. */
static size_t pool_size(void)
{
    struct rlimit rl;
    size_t n = POOL_MAX;

    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur / 2 < n)
        n = (size_t)(rl.rlim_cur / 2);
    return n < POOL_MIN ? POOL_MIN : n;
}

/* Checks that [start, start+len) lies inside one mapping, so what we lock
 * and mark is libgcrypt's pool and not a neighbour's memory. */
static int inside_one_mapping(uintptr_t start, size_t len)
{
    FILE *f = fopen("/proc/self/maps", "re");
    char line[512];
    int found = 0;

    if (!f)
        return cv_error(-errno, "libgcrypt secure memory: /proc/self/maps: "
                        "%s", strerror(errno));
    while (!found && fgets(line, sizeof line, f)) {
        uintptr_t lo, hi;

        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) == 2 &&
            lo <= start && start < hi)
            found = start + len <= hi ? 1 : -1;
    }
    fclose(f);
    return found == 1 ? 0 :
        cv_error(-EFAULT, "libgcrypt secure memory: the pool of %zu bytes "
                 "is not one mapping", len);
}

static int protect_pool(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t len = (size + page - 1) / page * page;
    void *probe = gcry_malloc_secure(1);
    uintptr_t start;
    int r;

    if (!probe)
        return cv_error(-ENOMEM, "libgcrypt secure memory is not available");
    start = (uintptr_t)probe / page * page;
    gcry_free(probe);
    r = inside_one_mapping(start, len);
    if (r < 0)
        return r;
    if (mlock((void *)start, len) != 0)
        return cv_error(-errno, "libgcrypt secure memory: cannot lock %zu KiB "
                        "in RAM: %s (raise RLIMIT_MEMLOCK: ulimit -l, or "
                        "LimitMEMLOCK= in systemd, to at least %zu KiB)",
                        len / 1024, strerror(errno), 2 * len / 1024 + 64);
    if (madvise((void *)start, len, MADV_DONTDUMP) != 0)
        return cv_error(-errno, "libgcrypt secure memory: cannot exclude it "
                        "from core dumps: %s", strerror(errno));
    return 0;
}

static int gcrypt_init(void)
{
    if (gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P))
        return cv_error(-EBUSY, "libgcrypt was initialised before cryptvol "
                        "could size and protect its secure memory");
    if (!gcry_check_version(NEED_GCRYPT))
        return cv_error(-ENOTSUP, "libgcrypt %s is older than %s",
                        gcry_check_version(NULL), NEED_GCRYPT);
    /* We check the lock ourselves and say what to do; libgcrypt's own
     * "using insecure memory" line on stderr would say less. */
    gcry_control(GCRYCTL_DISABLE_SECMEM_WARN);
    state.pool_size = pool_size();
    /* It fails when its mlock did (GCRY_SECMEM_FLAG_NOT_LOCKED). */
    if (gcry_control(GCRYCTL_INIT_SECMEM, state.pool_size, 0))
        return cv_error(-ENOMEM, "libgcrypt secure memory: cannot lock %zu "
                        "KiB in RAM (raise RLIMIT_MEMLOCK: ulimit -l, or "
                        "LimitMEMLOCK= in systemd, to at least %zu KiB)",
                        state.pool_size / 1024,
                        2 * state.pool_size / 1024 + 64);
    gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
    return protect_pool(state.pool_size);
}

static void init_once(void)
{
    state.result = gcrypt_init();
    if (state.result < 0)
        snprintf(state.message, sizeof state.message, "%s", cv_last_error());
}

int cv_xts_init(void)
{
    pthread_once(&state.once, init_once);
    return state.result < 0 ? cv_error(state.result, "%s", state.message) : 0;
}

size_t cv_xts_secmem_size(void)
{
    return state.pool_size;
}

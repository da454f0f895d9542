#include "secmem.h"
#include "error.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t round_to_pages(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    return (size + page - 1) / page * page;
}

void *cv_secmem_alloc(size_t size)
{
    size_t len = round_to_pages(size ? size : 1);
    void *p;

    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
             -1, 0);
    if (p == MAP_FAILED) {
        cv_error(-errno, "locked memory: mmap of %zu bytes: %s", len,
                 strerror(errno));
        return NULL;
    }
    if (mlock(p, len) != 0) {
        int e = errno;
        munmap(p, len);
        cv_error(-e, "locked memory: mlock of %zu bytes: %s (raise RLIMIT_MEMLOCK)",
                 len, strerror(e));
        return NULL;
    }
    /* Keys must not end up in a core file either. */
    madvise(p, len, MADV_DONTDUMP);
    return p;
}

void cv_secmem_free(void *p, size_t size)
{
    size_t len;

    if (!p)
        return;
    len = round_to_pages(size ? size : 1);
    OPENSSL_cleanse(p, len);
    munlock(p, len);
    munmap(p, len);
}

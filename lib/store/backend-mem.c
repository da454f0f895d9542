/* In-memory backend for unit tests and benchmarks.  Memory comes from mmap
 * so an untouched store costs nothing and reads as zeros. */
#include "backend.h"
#include "core/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct mem_backend {
    struct cv_backend base;
    pthread_rwlock_t lock;      /* resize against I/O */
    char *data;
    uint64_t size;
};

static struct mem_backend *to_mem(struct cv_backend *b)
{
    return (struct mem_backend *)b;
}

static int in_range(struct mem_backend *m, uint64_t len, uint64_t off)
{
    return off <= m->size && len <= m->size - off;
}

static int mem_pread(struct cv_backend *b, void *buf, size_t len, uint64_t off)
{
    struct mem_backend *m = to_mem(b);
    int r = 0;

    pthread_rwlock_rdlock(&m->lock);
    if (in_range(m, len, off))
        memcpy(buf, m->data + off, len);
    else
        r = cv_error(-EIO, "beyond the end of the store");
    pthread_rwlock_unlock(&m->lock);
    return r;
}

static int mem_pwrite(struct cv_backend *b, const void *buf, size_t len,
                      uint64_t off, unsigned flags)
{
    struct mem_backend *m = to_mem(b);
    int r = 0;

    (void)flags;
    pthread_rwlock_rdlock(&m->lock);
    if (in_range(m, len, off))
        memcpy(m->data + off, buf, len);
    else
        r = cv_error(-ENOSPC, "beyond the end of the store");
    pthread_rwlock_unlock(&m->lock);
    return r;
}

/* The transform runs in the store's memory, under the lock that keeps a
 * resize (mremap) from moving it meanwhile. */
static int mem_pwrite_xform(struct cv_backend *b, const void *buf, size_t len,
                            uint64_t off, unsigned flags, cv_xform_fn xf,
                            void *arg)
{
    struct mem_backend *m = to_mem(b);
    int r;

    (void)flags;
    pthread_rwlock_rdlock(&m->lock);
    if (in_range(m, len, off))
        r = xf(arg, m->data + off, buf, len, 0);
    else
        r = cv_error(-ENOSPC, "beyond the end of the store");
    pthread_rwlock_unlock(&m->lock);
    return r;
}

static int mem_pread_xform(struct cv_backend *b, void *buf, size_t len,
                           uint64_t off, cv_xform_fn xf, void *arg)
{
    struct mem_backend *m = to_mem(b);
    int r;

    pthread_rwlock_rdlock(&m->lock);
    if (in_range(m, len, off))
        r = xf(arg, buf, m->data + off, len, 0);
    else
        r = cv_error(-EIO, "beyond the end of the store");
    pthread_rwlock_unlock(&m->lock);
    return r;
}

static int mem_flush(struct cv_backend *b)
{
    (void)b;
    return 0;
}

static int mem_discard(struct cv_backend *b, uint64_t off, uint64_t len)
{
    struct mem_backend *m = to_mem(b);
    int r = 0;

    pthread_rwlock_rdlock(&m->lock);
    if (in_range(m, len, off))
        memset(m->data + off, 0, len);
    else
        r = cv_error(-EIO, "beyond the end of the store");
    pthread_rwlock_unlock(&m->lock);
    return r;
}

static int mem_get_size(struct cv_backend *b, uint64_t *size)
{
    struct mem_backend *m = to_mem(b);

    pthread_rwlock_rdlock(&m->lock);
    *size = m->size;
    pthread_rwlock_unlock(&m->lock);
    return 0;
}

static int mem_resize(struct cv_backend *b, uint64_t size)
{
    struct mem_backend *m = to_mem(b);
    char *p;
    int r = 0;

    pthread_rwlock_wrlock(&m->lock);
    p = mremap(m->data, m->size ? m->size : 1, size ? size : 1, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) {
        r = cv_error(-errno, "%s", strerror(errno));
    } else {
        if (size > m->size)
            memset(p + m->size, 0, size - m->size);
        m->data = p;
        m->size = size;
    }
    pthread_rwlock_unlock(&m->lock);
    return r;
}

static void mem_close(struct cv_backend *b)
{
    struct mem_backend *m = to_mem(b);

    munmap(m->data, m->size ? m->size : 1);
    pthread_rwlock_destroy(&m->lock);
    free(m);
}

static const struct cv_backend_ops mem_ops = {
    .kind = "memory",
    .pread = mem_pread,
    .pwrite = mem_pwrite,
    .flush = mem_flush,
    .discard = mem_discard,
    .get_size = mem_get_size,
    .resize = mem_resize,
    .close = mem_close,
    .pwrite_xform = mem_pwrite_xform,
    .pread_xform = mem_pread_xform,
};

int cv_backend_mem_new(const char *name, uint64_t size, struct cv_backend **out)
{
    struct mem_backend *m = calloc(1, sizeof *m);

    if (!m || !(m->base.name = strdup(name))) {
        free(m);
        return cv_error(-ENOMEM, "%s: out of memory", name);
    }
    m->data = mmap(NULL, size ? size : 1, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m->data == MAP_FAILED) {
        int e = errno;
        free(m->base.name);
        free(m);
        return cv_error(-e, "%s: %s", name, strerror(e));
    }
    pthread_rwlock_init(&m->lock, NULL);
    m->base.ops = &mem_ops;
    m->size = size;
    *out = &m->base;
    return 0;
}

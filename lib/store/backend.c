#include "backend.h"
#include "core/error.h"

#include <stdlib.h>

int cv_backend_pread(struct cv_backend *b, void *buf, size_t len, uint64_t off)
{
    int r = b->ops->pread(b, buf, len, off);

    return r < 0 ? cv_error_prefix(r, "%s: read of %zu bytes at offset %llu",
                                   b->name, len, (unsigned long long)off) : 0;
}

int cv_backend_pwrite(struct cv_backend *b, const void *buf, size_t len,
                      uint64_t off, unsigned flags)
{
    int r = b->ops->pwrite(b, buf, len, off, flags);

    return r < 0 ? cv_error_prefix(r, "%s: write of %zu bytes at offset %llu",
                                   b->name, len, (unsigned long long)off) : 0;
}

int cv_backend_flush(struct cv_backend *b)
{
    int r = b->ops->flush(b);

    return r < 0 ? cv_error_prefix(r, "%s: flush", b->name) : 0;
}

int cv_backend_discard(struct cv_backend *b, uint64_t off, uint64_t len)
{
    int r = b->ops->discard(b, off, len);

    return r < 0 ? cv_error_prefix(r, "%s: discard of %llu bytes at offset %llu",
                                   b->name, (unsigned long long)len,
                                   (unsigned long long)off) : 0;
}

int cv_backend_size(struct cv_backend *b, uint64_t *size)
{
    int r = b->ops->get_size(b, size);

    return r < 0 ? cv_error_prefix(r, "%s: size", b->name) : 0;
}

int cv_backend_resize(struct cv_backend *b, uint64_t size)
{
    int r = b->ops->resize(b, size);

    return r < 0 ? cv_error_prefix(r, "%s: resize to %llu bytes", b->name,
                                   (unsigned long long)size) : 0;
}

void cv_backend_close(struct cv_backend *b)
{
    char *name;

    if (!b)
        return;
    name = b->name;
    b->ops->close(b);
    free(name);
}

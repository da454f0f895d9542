#include "backend.h"
#include "core/error.h"
#include "core/scratch.h"

#include <errno.h>
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

static int xform_fail(struct cv_backend *b, int r, const char *op,
                      size_t len, uint64_t off)
{
    return cv_error_prefix(r, "%s: %s of %zu bytes at offset %llu", b->name,
                           op, len, (unsigned long long)off);
}

int cv_backend_pwrite_xform(struct cv_backend *b, const void *buf, size_t len,
                            uint64_t off, unsigned flags, cv_xform_fn xf,
                            void *arg)
{
    void *bounce;
    int r;

    if (len == 0)
        return 0;
    if (b->ops->pwrite_xform) {
        r = b->ops->pwrite_xform(b, buf, len, off, flags, xf, arg);
        return r < 0 ? xform_fail(b, r, "write", len, off) : 0;
    }
    if (!(bounce = cv_scratch_get(len)))
        return xform_fail(b, -ENOMEM, "write", len, off);
    r = xf(arg, bounce, buf, len, 0);
    if (r < 0)
        r = xform_fail(b, r, "write", len, off);
    else
        r = cv_backend_pwrite(b, bounce, len, off, flags);
    cv_scratch_put(bounce);
    return r;
}

int cv_backend_pread_xform(struct cv_backend *b, void *buf, size_t len,
                           uint64_t off, cv_xform_fn xf, void *arg)
{
    int r;

    if (len == 0)
        return 0;
    if (b->ops->pread_xform) {
        r = b->ops->pread_xform(b, buf, len, off, xf, arg);
        return r < 0 ? xform_fail(b, r, "read", len, off) : 0;
    }
    r = cv_backend_pread(b, buf, len, off);
    if (r == 0 && (r = xf(arg, buf, buf, len, 0)) < 0)
        r = xform_fail(b, r, "read", len, off);
    return r;
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

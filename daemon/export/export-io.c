/* Requests on an open export: through the volume layer (LUKS), or the
 * chain's raw view for a plaintext volume (comparison only). */
#include "export.h"
#include "export-internal.h"
#include "store/backend.h"
#include "core/error.h"
#include "image/volume.h"

#include <errno.h>
#include <stdlib.h>

/* Zeroes for plaintext volumes are written in pieces of this size. */
#define ZERO_CHUNK (1024 * 1024)

static int check_plain_range(struct cvd_export *e, const char *op,
                             uint64_t len, uint64_t off)
{
    uint64_t size = atomic_load(&e->size);

    if (off > size || len > size - off)
        return cv_error(-ERANGE, "volume %s: %s of %llu bytes at offset "
                        "%llu is beyond the end (%llu bytes)", e->name, op,
                        (unsigned long long)len, (unsigned long long)off,
                        (unsigned long long)size);
    return 0;
}

int cvd_export_pread(struct cvd_export *e, void *buf, size_t len,
                     uint64_t off)
{
    int rc;

    if (e->vol)
        return cv_volume_read(e->vol, buf, len, off);
    rc = check_plain_range(e, "read", len, off);
    return rc < 0 ? rc : cv_backend_pread(cv_chain_backend(e->chain), buf, len,
                                         off);
}

int cvd_export_pwrite(struct cvd_export *e, const void *buf, size_t len,
                      uint64_t off, unsigned flags)
{
    int rc;

    if (e->flags & CVD_EXPORT_READONLY)
        return cv_error(-EPERM, "volume %s: read-only", e->name);
    if (e->vol)
        return cv_volume_write(e->vol, buf, len, off, flags);
    rc = check_plain_range(e, "write", len, off);
    return rc < 0 ? rc : cv_backend_pwrite(cv_chain_backend(e->chain), buf,
                                          len, off, flags);
}

int cvd_export_flush(struct cvd_export *e)
{
    return e->vol ? cv_volume_flush(e->vol) : cv_chain_flush(e->chain);
}

/* A plaintext volume has one layer: its whole blocks inside the range
 * are punched (they read as zeros), the partial ones keep their bytes. */
static int trim_plain(struct cvd_export *e, uint64_t off, uint64_t len)
{
    uint64_t first = (off + CV_CHAIN_BLOCK - 1) / CV_CHAIN_BLOCK *
                     CV_CHAIN_BLOCK;
    uint64_t end = (off + len) / CV_CHAIN_BLOCK * CV_CHAIN_BLOCK;

    return end > first ? cv_chain_punch(e->chain, first, end - first) : 0;
}

int cvd_export_trim(struct cvd_export *e, uint64_t off, uint64_t len,
                    unsigned flags)
{
    int rc;

    if (e->flags & CVD_EXPORT_READONLY)
        return cv_error(-EPERM, "volume %s: read-only", e->name);
    if (e->vol)
        rc = cv_volume_discard(e->vol, len, off);
    else if ((rc = check_plain_range(e, "trim", len, off)) == 0)
        rc = trim_plain(e, off, len);
    if (rc == 0 && (flags & CV_WRITE_FUA))
        rc = cvd_export_flush(e);
    return rc;
}

static int zero_plain(struct cvd_export *e, uint64_t off, uint64_t len,
                      unsigned flags)
{
    size_t chunk = len < ZERO_CHUNK ? (size_t)len : ZERO_CHUNK;
    char *zeros;
    int rc = check_plain_range(e, "write zeroes", len, off);

    if (rc < 0 || len == 0)
        return rc;
    zeros = calloc(1, chunk);
    if (!zeros)
        return cv_error(-ENOMEM, "volume %s: out of memory", e->name);
    while (len > 0 && rc == 0) {
        size_t n = len < chunk ? (size_t)len : chunk;

        rc = cv_backend_pwrite(cv_chain_backend(e->chain), zeros, n, off, 0);
        off += n;
        len -= n;
    }
    free(zeros);
    /* FUA: the whole request durable, one flush after all of it. */
    if (rc == 0 && (flags & CV_WRITE_FUA))
        rc = cv_chain_flush(e->chain);
    return rc;
}

int cvd_export_zero(struct cvd_export *e, uint64_t off, uint64_t len,
                    unsigned flags)
{
    if (e->flags & CVD_EXPORT_READONLY)
        return cv_error(-EPERM, "volume %s: read-only", e->name);
    /* Encrypted zeros, never a hole: a hole would decrypt to noise when
     * the image is opened by cryptsetup or qemu. */
    if (e->vol)
        return cv_volume_write_zeroes(e->vol, len, off, flags);
    return zero_plain(e, off, len, flags);
}

int cvd_export_extents(struct cvd_export *e, uint64_t off, uint64_t len,
                       int (*cb)(void *arg, uint64_t len, unsigned flags),
                       void *arg)
{
    int rc = check_plain_range(e, "block status", len, off);

    if (rc < 0)
        return rc;
    if (e->vol)
        return cv_volume_extents(e->vol, off, len, cb, arg);
    /* A plaintext volume: allocated ranges as data, the rest holes. */
    return cb(arg, len, 0) < 0 ? -EIO : 0;
}

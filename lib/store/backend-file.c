/* Local file backend: pread/pwrite on one descriptor, fdatasync for FLUSH
 * and FUA, hole punching for discard. */
#include "backend.h"
#include "core/error.h"
#include "core/fd-io.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

struct file_backend {
    struct cv_backend base;
    int fd;
    int is_blockdev;
};

static struct file_backend *to_file(struct cv_backend *b)
{
    return (struct file_backend *)b;
}

static int file_pread(struct cv_backend *b, void *buf, size_t len, uint64_t off)
{
    int r = cv_pread_zeros(to_file(b)->fd, buf, len, off);

    return r < 0 ? cv_error(r, "%s", strerror(-r)) : 0;
}

static int file_flush(struct cv_backend *b)
{
    if (fdatasync(to_file(b)->fd) != 0)
        return cv_error(-errno, "%s", strerror(errno));
    return 0;
}

static int file_pwrite(struct cv_backend *b, const void *buf, size_t len,
                       uint64_t off, unsigned flags)
{
    int r = cv_pwrite_all(to_file(b)->fd, buf, len, off);

    if (r < 0)
        return cv_error(r, "%s", strerror(-r));
    return (flags & CV_WRITE_FUA) ? file_flush(b) : 0;
}

static int file_discard(struct cv_backend *b, uint64_t off, uint64_t len)
{
    struct file_backend *f = to_file(b);

    if (f->is_blockdev) {
        uint64_t range[2] = { off, len };
        if (ioctl(f->fd, BLKDISCARD, range) != 0)
            return cv_error(-errno, "%s", strerror(errno));
        return 0;
    }
    if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)off, (off_t)len) != 0)
        return cv_error(-errno, "%s", strerror(errno));
    return 0;
}

static int file_get_size(struct cv_backend *b, uint64_t *size)
{
    struct file_backend *f = to_file(b);
    struct stat st;

    if (f->is_blockdev) {
        if (ioctl(f->fd, BLKGETSIZE64, size) != 0)
            return cv_error(-errno, "%s", strerror(errno));
        return 0;
    }
    if (fstat(f->fd, &st) != 0)
        return cv_error(-errno, "%s", strerror(errno));
    *size = (uint64_t)st.st_size;
    return 0;
}

static int file_resize(struct cv_backend *b, uint64_t size)
{
    struct file_backend *f = to_file(b);

    if (f->is_blockdev)
        return cv_error(-ENOTSUP, "a block device cannot be resized here");
    if (ftruncate(f->fd, (off_t)size) != 0)
        return cv_error(-errno, "%s", strerror(errno));
    return 0;
}

static void file_close(struct cv_backend *b)
{
    close(to_file(b)->fd);
    free(b);
}

static const struct cv_backend_ops file_ops = {
    .kind = "file",
    .pread = file_pread,
    .pwrite = file_pwrite,
    .flush = file_flush,
    .discard = file_discard,
    .get_size = file_get_size,
    .resize = file_resize,
    .close = file_close,
};

int cv_backend_file_open(const char *path, int readonly,
                         struct cv_backend **out)
{
    struct file_backend *f;
    struct stat st;
    int fd;

    fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0)
        return cv_error(-errno, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
        close(fd);
        return cv_error(-EINVAL, "%s: not a regular file or block device",
                        path);
    }
    f = calloc(1, sizeof *f);
    if (!f || !(f->base.name = strdup(path))) {
        free(f);
        close(fd);
        return cv_error(-ENOMEM, "%s: out of memory", path);
    }
    f->base.ops = &file_ops;
    f->fd = fd;
    f->is_blockdev = S_ISBLK(st.st_mode);
    *out = &f->base;
    return 0;
}

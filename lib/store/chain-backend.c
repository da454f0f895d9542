/* The chain as one raw store (cv_chain_backend), for libcryptsetup and
 * whole-image copies: [0, data offset) is the header file, the rest the
 * view.  And the read-only stores over ancestors' headers (formats 1..).
 *
 * Unlike cv_chain_read/write these take any offset and length: a write
 * that covers part of a block the head lacks is completed from the view
 * first (under the same shared hold), so the head never holds a block
 * that is partly zeros. */
#include "chain-internal.h"
#include "core/error.h"
#include "core/fd-io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct cv_chain *to_chain(struct cv_backend *b)
{
    return (struct cv_chain *)b;    /* view is the first member */
}

/* The range against the view's size; the header part's length in *hlen. */
static int split(struct cv_chain *c, size_t len, uint64_t off, size_t *hlen)
{
    uint64_t size = chain_view_size(c);

    if (off > size || len > size - off)
        return cv_error(-ERANGE, "beyond the end (%llu bytes)",
                        (unsigned long long)size);
    *hlen = off >= c->data_offset ? 0
          : (size_t)(c->data_offset - off < len ? c->data_offset - off : len);
    return 0;
}

static int view_pread(struct cv_backend *b, void *buf, size_t len,
                      uint64_t off)
{
    struct cv_chain *c = to_chain(b);
    size_t hlen = 0;
    int r;

    chain_rdlock(c);
    if ((r = split(c, len, off, &hlen)) == 0 && hlen &&
        (r = cv_pread_zeros(c->header_fd, buf, hlen, off)) < 0)
        r = cv_error(r, "header: %s", strerror(-r));
    if (r == 0 && len > hlen)
        r = chain_read_locked(c, (char *)buf + hlen, len - hlen, off + hlen,
                              c->nlayers, NULL, NULL);
    chain_unlock(c);
    return r;
}

/* The block at blk, completed from the view where the head lacks it, with
 * [at, at+n) of it replaced by p. */
static int write_partial(struct cv_chain *c, const char *p, size_t n,
                         uint64_t at, unsigned flags)
{
    uint64_t start = at - at % CV_CHAIN_BLOCK;
    char block[CV_CHAIN_BLOCK];
    uint64_t size = chain_view_size(c);
    size_t whole = size - start < CV_CHAIN_BLOCK ? (size_t)(size - start)
                                                 : CV_CHAIN_BLOCK;
    int r;

    if (chain_map_test(&chain_head(c)->map, start / CV_CHAIN_BLOCK))
        return chain_write_locked(c, chain_head(c), p, n, at, flags);
    if ((r = chain_read_locked(c, block, whole, start, c->nlayers, NULL,
                               NULL)) < 0)
        return r;
    memcpy(block + (at - start), p, n);
    return chain_write_locked(c, chain_head(c), block, whole, start, flags);
}

static int data_write(struct cv_chain *c, const char *p, size_t len,
                      uint64_t off, unsigned flags)
{
    while (len > 0) {
        uint64_t in = off % CV_CHAIN_BLOCK;
        size_t n;
        int r;

        if (in || len < CV_CHAIN_BLOCK) {
            n = CV_CHAIN_BLOCK - in < len ? CV_CHAIN_BLOCK - in : len;
            r = chain_head(c)->store
                ? chain_write_locked(c, chain_head(c), p, n, off, flags)
                : write_partial(c, p, n, off, flags);
        } else {
            n = len - len % CV_CHAIN_BLOCK;
            r = chain_write_locked(c, chain_head(c), p, n, off, flags);
        }
        if (r < 0)
            return r;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

static int header_write(struct cv_chain *c, const void *buf, size_t hlen,
                        uint64_t off, unsigned flags)
{
    int r;

    if ((r = cv_pwrite_all(c->header_fd, buf, hlen, off)) < 0)
        return cv_error(r, "header: %s", strerror(-r));
    if ((flags & CV_WRITE_FUA) && fdatasync(c->header_fd) != 0)
        return cv_error(-errno, "header: fdatasync: %s", strerror(errno));
    return 0;
}

static int header_punch(struct cv_chain *c, size_t hlen, uint64_t off)
{
    if (fallocate(c->header_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)off, (off_t)hlen) != 0)
        return cv_error(-errno, "header: punching: %s", strerror(errno));
    return 0;
}

/* A change of the header, through the mirror when there is one (buf NULL:
 * a punch, which replicas make as zeros). */
static int header_change(struct cv_chain *c, const void *buf, size_t hlen,
                         uint64_t off, unsigned flags)
{
    struct cv_mirror_op op = { .type = CV_MIRROR_HEADER, .flags = flags,
                               .off = off, .len = hlen, .buf = buf };
    void *token;
    int r;

    if (!c->has_mirror)
        return buf ? header_write(c, buf, hlen, off, flags)
                   : header_punch(c, hlen, off);
    if ((r = chain_mirror_begin(c, &op, &token)) < 0)
        return r;
    return chain_mirror_end(c, token,
                            buf ? header_write(c, buf, hlen, off, flags)
                                : header_punch(c, hlen, off));
}

static int view_pwrite(struct cv_backend *b, const void *buf, size_t len,
                       uint64_t off, unsigned flags)
{
    struct cv_chain *c = to_chain(b);
    size_t hlen = 0;
    int r;

    chain_rdlock(c);
    if ((r = chain_writable(c, "write")) == 0 &&
        (r = split(c, len, off, &hlen)) == 0 && hlen)
        r = header_change(c, buf, hlen, off, flags);
    if (r == 0 && len > hlen)
        r = data_write(c, (const char *)buf + hlen, len - hlen, off + hlen,
                       flags);
    chain_unlock(c);
    return r;
}

static int view_flush(struct cv_backend *b)
{
    return cv_chain_flush(to_chain(b));
}

/* [off, off+len) of the data area reads as zeros: whole blocks nothing
 * below the head holds are punched, the rest gets zeros written (a hole
 * there would let an older layer's data show through). */
static int data_zero(struct cv_chain *c, uint64_t off, uint64_t len)
{
    static const char zeros[CV_CHAIN_BLOCK];

    while (len > 0) {
        uint64_t in = off % CV_CHAIN_BLOCK, run, n;
        int r;

        n = CV_CHAIN_BLOCK - in < len ? CV_CHAIN_BLOCK - in : len;
        if (in || n < CV_CHAIN_BLOCK) {
            r = data_write(c, zeros, (size_t)n, off, 0);
        } else {
            uint64_t nb = len / CV_CHAIN_BLOCK;
            int i = chain_find(c, c->nlayers - 1, off / CV_CHAIN_BLOCK, nb,
                               &run);

            n = run * CV_CHAIN_BLOCK;
            if (i < 0) {
                r = chain_punch_locked(c, off, n);
            } else {
                n = CV_CHAIN_BLOCK;     /* one at a time from the buffer */
                r = chain_write_locked(c, chain_head(c), zeros, (size_t)n,
                                       off, 0);
            }
        }
        if (r < 0)
            return r;
        off += n;
        len -= n;
    }
    return 0;
}

static int view_discard(struct cv_backend *b, uint64_t off, uint64_t len)
{
    struct cv_chain *c = to_chain(b);
    size_t hlen = 0;
    int r;

    chain_rdlock(c);
    if ((r = chain_writable(c, "discard")) == 0 &&
        (r = split(c, len > SIZE_MAX ? SIZE_MAX : (size_t)len, off,
                   &hlen)) == 0 && hlen)
        r = header_change(c, NULL, hlen, off, 0);
    if (r == 0 && len > hlen)
        r = data_zero(c, off + hlen, len - hlen);
    chain_unlock(c);
    return r;
}

static int view_get_size(struct cv_backend *b, uint64_t *size)
{
    *size = cv_chain_size(to_chain(b));
    return 0;
}

static int view_resize(struct cv_backend *b, uint64_t size)
{
    return cv_chain_resize(to_chain(b), size);
}

static void view_close(struct cv_backend *b)
{
    (void)b;    /* the chain's: cv_chain_close frees it */
}

static const struct cv_backend_ops view_ops = {
    .kind = "chain",
    .pread = view_pread,
    .pwrite = view_pwrite,
    .flush = view_flush,
    .discard = view_discard,
    .get_size = view_get_size,
    .resize = view_resize,
    .close = view_close,
};

void chain_view_init(struct cv_chain *c)
{
    c->view.ops = &view_ops;
    c->view.name = c->dir;
}

struct cv_backend *cv_chain_backend(struct cv_chain *c)
{
    return c->wrapped ? c->wrapped : &c->view;
}

/* ---- an ancestor's header: read-only ---- */
struct header_store {
    struct cv_backend base;
    int fd;
};

static int hdr_pread(struct cv_backend *b, void *buf, size_t len,
                     uint64_t off)
{
    int r = cv_pread_zeros(((struct header_store *)b)->fd, buf, len, off);

    return r < 0 ? cv_error(r, "%s", strerror(-r)) : 0;
}

static int hdr_pwrite(struct cv_backend *b, const void *buf, size_t len,
                      uint64_t off, unsigned flags)
{
    (void)b, (void)buf, (void)len, (void)off, (void)flags;
    return cv_error(-EROFS, "an ancestor's header is read-only here");
}

static int hdr_flush(struct cv_backend *b)
{
    (void)b;
    return 0;
}

static int hdr_discard(struct cv_backend *b, uint64_t off, uint64_t len)
{
    (void)b, (void)off, (void)len;
    return cv_error(-EROFS, "an ancestor's header is read-only here");
}

static int hdr_get_size(struct cv_backend *b, uint64_t *size)
{
    struct stat st;

    if (fstat(((struct header_store *)b)->fd, &st) != 0)
        return cv_error(-errno, "%s", strerror(errno));
    *size = (uint64_t)st.st_size;
    return 0;
}

static int hdr_resize(struct cv_backend *b, uint64_t size)
{
    (void)b, (void)size;
    return cv_error(-EROFS, "an ancestor's header is read-only here");
}

static void hdr_close(struct cv_backend *b)
{
    close(((struct header_store *)b)->fd);
    free(b);
}

static const struct cv_backend_ops hdr_ops = {
    .kind = "chain-header",
    .pread = hdr_pread,
    .pwrite = hdr_pwrite,
    .flush = hdr_flush,
    .discard = hdr_discard,
    .get_size = hdr_get_size,
    .resize = hdr_resize,
    .close = hdr_close,
};

int chain_header_store(const char *path, struct cv_backend **out)
{
    struct header_store *h;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return cv_error(-errno, "%s: %s", path, strerror(errno));
    h = calloc(1, sizeof *h);
    if (!h || !(h->base.name = strdup(path))) {
        free(h);
        close(fd);
        return cv_error(-ENOMEM, "%s: out of memory", path);
    }
    h->base.ops = &hdr_ops;
    h->fd = fd;
    *out = &h->base;
    return 0;
}

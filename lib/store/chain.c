/* The layer chain's I/O: reads from the newest layer holding each block,
 * writes and punches on the head, lookups (chain.h).  Every public call
 * here takes the chain's lock shared, once, and calls only the *_locked
 * helpers under it, so no thread ever takes it twice. */
#include "chain-internal.h"
#include "core/error.h"
#include "core/scratch.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef NDEBUG
/* The chains this thread holds the lock of (a few: a callback may use
 * another chain). */
#define HELD_MAX 8
static __thread const struct cv_chain *locks_held[HELD_MAX];
static __thread unsigned nlocks_held;
#endif

static void enter(struct cv_chain *c)
{
#ifndef NDEBUG
    for (unsigned i = 0; i < nlocks_held; i++)
        assert(locks_held[i] != c && "chain lock taken twice by one thread");
    assert(nlocks_held < HELD_MAX);
    locks_held[nlocks_held++] = c;
#else
    (void)c;
#endif
}

static void leave(struct cv_chain *c)
{
#ifndef NDEBUG
    for (unsigned i = nlocks_held; i-- > 0;)
        if (locks_held[i] == c) {
            locks_held[i] = locks_held[--nlocks_held];
            return;
        }
    assert(!"chain lock released but not held");
#else
    (void)c;
#endif
}

void chain_rdlock(struct cv_chain *c)
{
    enter(c);
    pthread_rwlock_rdlock(&c->lock);
}

void chain_wrlock(struct cv_chain *c)
{
    enter(c);
    pthread_rwlock_wrlock(&c->lock);
}

void chain_unlock(struct cv_chain *c)
{
    pthread_rwlock_unlock(&c->lock);
    leave(c);
}

static void rdlock(struct cv_chain *c)
{
    chain_rdlock(c);
}

static void unlock(struct cv_chain *c)
{
    chain_unlock(c);
}

int chain_fsync_dir(int dirfd, const char *dir)
{
    if (fsync(dirfd) != 0)
        return cv_error(-errno, "%s: fsync of the directory: %s", dir,
                        strerror(errno));
    return 0;
}

struct chain_layer *chain_head(struct cv_chain *c)
{
    return c->layers[c->nlayers - 1];
}

int chain_writable(struct cv_chain *c, const char *what)
{
    if (c->snapshot)
        return cv_error(-EROFS, "%s: %s: snapshot \"%s\" is read-only",
                        c->dir, what, c->snapshot);
    if (c->readonly)
        return cv_error(-EROFS, "%s: %s: opened read-only", c->dir, what);
    return 0;
}

/* The top layer's size: no system call but for a wrapped store (whose
 * owner may resize it). */
uint64_t chain_view_size(struct cv_chain *c)
{
    struct chain_layer *top = chain_head(c);
    uint64_t size = 0;

    if (top->store)
        return cv_backend_size(top->store, &size) < 0 ? 0 : size;
    return top->size;
}

void chain_layer_free(struct chain_layer *l)
{
    if (!l)
        return;
    if (l->fd >= 0)
        close(l->fd);
    chain_map_free(&l->map);
    free(l);
}

int chain_layer_new(struct cv_chain *c, unsigned id, uint64_t size,
                    struct chain_layer **out)
{
    struct chain_layer *l = calloc(1, sizeof *l);

    if (!l || chain_map_init(&l->map, size) < 0) {
        free(l);
        return cv_error(-ENOMEM, "%s: layer %u: out of memory", c->dir, id);
    }
    l->id = id;
    l->fd = -1;
    l->own = 1;
    l->size = size;
    *out = l;
    return 0;
}

int chain_layer_open(struct cv_chain *c, const char *dir, int dirfd,
                     unsigned id, int writable, int format, int own,
                     struct chain_layer **out)
{
    char name[CHAIN_LAYER_NAME_MAX];
    struct chain_layer *l = NULL;
    struct stat st;
    int fd, r;

    snprintf(name, sizeof name, CHAIN_LAYER_FMT, id);
    fd = openat(dirfd, name, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return cv_error(-errno, "%s: %s: %s", dir, name, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        r = cv_error(-EINVAL, "%s: %s: not a regular file", dir, name);
        goto fail;
    }
    if ((r = chain_layer_new(c, id, (uint64_t)st.st_size, &l)) < 0)
        goto fail;
    l->fd = fd;
    l->format = format;
    l->own = own;
    /* The header area of a layer is a hole; data there is no block. */
    r = chain_map_scan(&l->map, fd, c->data_offset, (uint64_t)st.st_size);
    if (r < 0) {
        r = cv_error(r, "%s: %s: mapping its data (SEEK_DATA): %s", dir,
                     name, strerror(-r));
        goto fail;
    }
    *out = l;
    return 0;
fail:
    if (l)
        chain_layer_free(l);
    else
        close(fd);
    return r;
}

int chain_index(struct cv_chain *c, unsigned id)
{
    for (size_t i = c->nparent; i < c->nlayers; i++)
        if (c->layers[i]->id == id)
            return (int)i;
    for (size_t i = 0; i < c->nparent; i++)
        if (c->layers[i]->id == id)
            return (int)i;
    return -1;
}

static uint64_t layer_run(const struct chain_layer *l, uint64_t blk,
                          uint64_t n, int value)
{
    if (l->store)       /* a wrapped store holds every block */
        return value ? n : 0;
    return chain_map_run(&l->map, blk, n, value);
}

int chain_find(struct cv_chain *c, size_t top, uint64_t blk, uint64_t n,
               uint64_t *run)
{
    uint64_t len = n;

    for (size_t i = top; i-- > 0;) {
        uint64_t held = layer_run(c->layers[i], blk, len, 1);

        if (held) {
            *run = held;
            return (int)i;
        }
        /* Not held here: the answer holds while this layer still lacks
         * the blocks (a later block it holds would be a new answer). */
        len = layer_run(c->layers[i], blk, len, 0);
    }
    *run = len;
    return -1;
}

/* The view's top for reads under layer id below (CV_CHAIN_TOP: all). */
static int view_top(struct cv_chain *c, unsigned below, size_t *top)
{
    int i;

    if (below == CV_CHAIN_TOP) {
        *top = c->nlayers;
        return 0;
    }
    if ((i = chain_index(c, below)) < 0)
        return cv_error(-ENOENT, "%s: no layer %u", c->dir, below);
    *top = (size_t)i;
    return 0;
}

static int layer_pread(struct cv_chain *c, struct chain_layer *l, char *p,
                       size_t len, uint64_t off)
{
    if (l->store)
        return cv_backend_pread(l->store, p, len, off);
    while (len > 0) {
        ssize_t n = pread(l->fd, p, len, (off_t)off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return cv_error(-errno, "%s: layer %u: read of %zu bytes at "
                            "%llu: %s", c->dir, l->id, len,
                            (unsigned long long)off, strerror(errno));
        if (n == 0)     /* past a short layer's end */
            break;
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    memset(p, 0, len);
    return 0;
}

static int check_range(struct cv_chain *c, const char *what, uint64_t len,
                       uint64_t off, int aligned)
{
    uint64_t size = chain_view_size(c);

    if (aligned && (off % CV_CHAIN_BLOCK || len % CV_CHAIN_BLOCK))
        return cv_error(-EINVAL, "%s: %s of %llu bytes at %llu: not whole "
                        "%u-byte blocks", c->dir, what,
                        (unsigned long long)len, (unsigned long long)off,
                        CV_CHAIN_BLOCK);
    if (off < c->data_offset || off > size || len > size - off)
        return cv_error(-ERANGE, "%s: %s of %llu bytes at %llu: outside the "
                        "data area [%llu, %llu)", c->dir, what,
                        (unsigned long long)len, (unsigned long long)off,
                        (unsigned long long)c->data_offset,
                        (unsigned long long)size);
    return 0;
}

static int held_bit(const uint8_t *held, size_t b)
{
    return (held[b / 8] >> (b % 8)) & 1;
}

/* A wrapped store that knows which blocks hold data (backend.h,
 * pread_held): the blocks it does not hold are holes, handed to run as
 * CV_CHAIN_HOLE (zeros), the others with the layer's format.  Whole
 * blocks. */
static int held_read(struct cv_chain *c, struct chain_layer *l, char *buf,
                     size_t len, uint64_t off, cv_chain_run_fn run,
                     void *arg)
{
    size_t nblk = len / CV_CHAIN_BLOCK, b = 0, e;
    uint8_t *held = calloc(1, nblk / 8 + 1);
    int r, h;

    if (!held)
        return cv_error(-ENOMEM, "%s: read of %zu bytes: out of memory",
                        c->dir, len);
    r = l->store->ops->pread_held(l->store, buf, len, off, held);
    while (r == 0 && b < nblk) {
        h = held_bit(held, b);
        for (e = b; e < nblk && held_bit(held, e) == h; e++)
            ;
        if (!h)
            memset(buf + b * CV_CHAIN_BLOCK, 0, (e - b) * CV_CHAIN_BLOCK);
        if (run)
            r = run(arg, b * CV_CHAIN_BLOCK, (e - b) * CV_CHAIN_BLOCK,
                    h ? l->format : CV_CHAIN_HOLE);
        b = e;
    }
    free(held);
    return r;
}

static int held_aware(struct cv_chain *c, size_t top, size_t len,
                      uint64_t off)
{
    struct chain_layer *l = top == 1 ? c->layers[0] : NULL;

    return l && l->store && l->store->ops->pread_held && len &&
           off % CV_CHAIN_BLOCK == 0 && len % CV_CHAIN_BLOCK == 0;
}

/* Byte-granular: pieces of blocks are read from the layer holding the
 * block.  Runs of one format are handed to run (if any) once read. */
int chain_read_locked(struct cv_chain *c, void *buf, size_t len,
                      uint64_t off, size_t top, cv_chain_run_fn run,
                      void *arg)
{
    char *p = buf;
    size_t pos = 0, run_start = 0;
    int run_fmt = CV_CHAIN_HOLE, r;

    if (held_aware(c, top, len, off))
        return held_read(c, c->layers[0], buf, len, off, run, arg);
    while (pos < len) {
        uint64_t at = off + pos, blk = at / CV_CHAIN_BLOCK, nblk, end;
        uint64_t last = (off + len + CV_CHAIN_BLOCK - 1) / CV_CHAIN_BLOCK;
        struct chain_layer *head = chain_head(c);
        unsigned seq = __atomic_load_n(&head->punch_seq, __ATOMIC_ACQUIRE);
        int i = chain_find(c, top, blk, last - blk, &nblk);
        int fmt = i < 0 ? CV_CHAIN_HOLE : c->layers[i]->format;
        size_t n;

        end = (blk + nblk) * CV_CHAIN_BLOCK;
        n = (size_t)((end < off + len ? end : off + len) - at);
        if (i < 0)
            memset(p + pos, 0, n);
        else if ((r = layer_pread(c, c->layers[i], p + pos, n, at)) < 0)
            return r;
        if (i >= 0 && c->layers[i] == head) {
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if ((seq & 1) ||
                seq != __atomic_load_n(&head->punch_seq, __ATOMIC_ACQUIRE))
                continue;       /* a punch ran: look again */
        }
        if (run && pos > run_start && fmt != run_fmt) {
            if ((r = run(arg, run_start, pos - run_start, run_fmt)) != 0)
                return r;
            run_start = pos;
        }
        run_fmt = fmt;
        pos += n;
    }
    if (run && pos > run_start)
        return run(arg, run_start, pos - run_start, run_fmt);
    return 0;
}

int cv_chain_read(struct cv_chain *c, void *buf, size_t len, uint64_t off,
                  unsigned below, cv_chain_run_fn run, void *arg)
{
    size_t top = 0;
    int r;

    rdlock(c);
    if ((r = check_range(c, "read", len, off, 1)) == 0 &&
        (r = view_top(c, below, &top)) == 0)
        r = chain_read_locked(c, buf, len, off, top, run, arg);
    unlock(c);
    return r;
}

/* A run of the chain read handed to the caller's transform in place. */
struct xform_runs {
    char *buf;
    cv_chain_xform_fn xf;
    void *arg;
    int format;                 /* for a wrapped store's one run */
};

static int xform_in_place(void *arg, size_t buf_off, size_t len, int format)
{
    struct xform_runs *x = arg;

    return x->xf(x->arg, x->buf + buf_off, x->buf + buf_off, len, buf_off,
                 format);
}

static int xform_store(void *arg, void *dst, const void *src, size_t n,
                       size_t pos)
{
    struct xform_runs *x = arg;

    return x->xf(x->arg, dst, src, n, pos, x->format);
}

int cv_chain_read_xform(struct cv_chain *c, void *buf, size_t len,
                        uint64_t off, unsigned below, cv_chain_xform_fn xf,
                        void *arg)
{
    struct xform_runs x = { .buf = buf, .xf = xf, .arg = arg };
    struct chain_layer *l;
    size_t top = 0;
    int r;

    rdlock(c);
    if ((r = check_range(c, "read", len, off, 1)) == 0 &&
        (r = view_top(c, below, &top)) == 0) {
        l = top == 1 ? c->layers[0] : NULL;
        /* A wrapped store is one layer that holds every block (unless it
         * says which it holds: then its holes are runs of their own). */
        if (l && l->store && len && !l->store->ops->pread_held) {
            x.format = l->format;
            r = cv_backend_pread_xform(l->store, buf, len, off, xform_store,
                                       &x);
        } else {
            r = chain_read_locked(c, buf, len, off, top, xform_in_place, &x);
        }
    }
    unlock(c);
    return r;
}

static int layer_sync(struct cv_chain *c, struct chain_layer *l)
{
    if (l->store)
        return cv_backend_flush(l->store);
    if (fdatasync(l->fd) != 0)
        return cv_error(-errno, "%s: layer %u: fdatasync: %s", c->dir, l->id,
                        strerror(errno));
    return 0;
}

/* Bits are set once the data is in the file: a reader that sees a bit
 * finds the data; one that does not reads the layers below. */
static int layer_write(struct cv_chain *c, struct chain_layer *l,
                       const void *buf, size_t len, uint64_t off,
                       unsigned flags)
{
    uint64_t b0 = off / CV_CHAIN_BLOCK;
    uint64_t nb = (off + len + CV_CHAIN_BLOCK - 1) / CV_CHAIN_BLOCK - b0;
    const char *p = buf;
    size_t done = 0;

    if (l->store)
        return cv_backend_pwrite(l->store, buf, len, off, flags);
    if (chain_map_reserve(&l->map, b0, nb) < 0)
        return cv_error(-ENOMEM, "%s: layer %u: out of memory for its map",
                        c->dir, l->id);
    while (done < len) {
        ssize_t n = pwrite(l->fd, p + done, len - done,
                           (off_t)(off + done));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return cv_error(-errno, "%s: layer %u: write of %zu bytes at "
                            "%llu: %s", c->dir, l->id, len,
                            (unsigned long long)off, strerror(errno));
        done += (size_t)n;
    }
    chain_map_set(&l->map, b0, nb);
    return (flags & CV_WRITE_FUA) ? layer_sync(c, l) : 0;
}

/* Every write into a layer comes here (the head's, a layer's fill, the
 * backend's): the mirror's one place for data. */
int chain_write_locked(struct cv_chain *c, struct chain_layer *l,
                       const void *buf, size_t len, uint64_t off,
                       unsigned flags)
{
    struct cv_mirror_op op = { .type = CV_MIRROR_WRITE };
    void *token;
    int r;

    if (!c->has_mirror)
        return layer_write(c, l, buf, len, off, flags);
    op.layer = l == chain_head(c) ? CV_CHAIN_TOP : l->id;
    op.flags = flags;
    op.off = off;
    op.len = len;
    op.buf = buf;
    if ((r = chain_mirror_begin(c, &op, &token)) < 0)
        return r;
    return chain_mirror_end(c, token, layer_write(c, l, buf, len, off,
                                                  flags));
}

int cv_chain_write(struct cv_chain *c, const void *buf, size_t len,
                   uint64_t off, unsigned flags)
{
    int r;

    rdlock(c);
    if ((r = chain_writable(c, "write")) == 0 &&
        (r = check_range(c, "write", len, off, 0)) == 0)
        r = chain_write_locked(c, chain_head(c), buf, len, off, flags);
    unlock(c);
    return r;
}

int cv_chain_write_xform(struct cv_chain *c, const void *buf, size_t len,
                         uint64_t off, unsigned flags, cv_xform_fn xf,
                         void *arg)
{
    void *bounce;
    int r;

    /* c->wrapped is set once at cv_chain_wrap: no lock to read it. */
    if (c->wrapped) {
        rdlock(c);
        if ((r = chain_writable(c, "write")) == 0 &&
            (r = check_range(c, "write", len, off, 0)) == 0)
            r = cv_backend_pwrite_xform(chain_head(c)->store, buf, len, off,
                                        flags, xf, arg);
        unlock(c);
        return r;
    }
    if (len == 0)
        return cv_chain_write(c, buf, len, off, flags);
    if (!(bounce = cv_scratch_get(len)))
        return cv_error_prefix(-ENOMEM, "%s: write of %zu bytes", c->dir,
                               len);
    r = xf(arg, bounce, buf, len, 0);
    if (r == 0)
        r = cv_chain_write(c, bounce, len, off, flags);
    cv_scratch_put(bounce);
    return r;
}

/* Bits are cleared before the punch: no reader looks for the data in the
 * head once it may be gone. */
static int head_punch(struct cv_chain *c, uint64_t off, uint64_t len)
{
    struct chain_layer *h = chain_head(c);
    uint64_t b0 = off / CV_CHAIN_BLOCK, nb = len / CV_CHAIN_BLOCK;
    int r;

    if (h->store)
        return cv_backend_discard(h->store, off, len);
    if (len == 0)
        return 0;
    __atomic_fetch_add(&h->punch_seq, 1, __ATOMIC_ACQ_REL);
    chain_map_clear(&h->map, b0, nb);
    if (fallocate(h->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)off, (off_t)len) == 0) {
        r = 0;
    } else {
        r = cv_error(-errno, "%s: layer %u: punching %llu bytes at %llu: %s",
                     c->dir, h->id, (unsigned long long)len,
                     (unsigned long long)off, strerror(errno));
        /* Not punched, or part of it: the map says again what the file
         * holds. */
        chain_map_scan(&h->map, h->fd, off, off + len);
    }
    __atomic_fetch_add(&h->punch_seq, 1, __ATOMIC_RELEASE);
    return r;
}

int chain_punch_locked(struct cv_chain *c, uint64_t off, uint64_t len)
{
    struct cv_mirror_op op = { .type = CV_MIRROR_PUNCH };
    void *token;
    int r;

    if (!c->has_mirror || len == 0)
        return head_punch(c, off, len);
    op.off = off;
    op.len = len;
    if ((r = chain_mirror_begin(c, &op, &token)) < 0)
        return r;
    return chain_mirror_end(c, token, head_punch(c, off, len));
}

int cv_chain_punch(struct cv_chain *c, uint64_t off, uint64_t len)
{
    int r;

    rdlock(c);
    if ((r = chain_writable(c, "punch")) == 0 &&
        (r = check_range(c, "punch", len, off, 1)) == 0)
        r = chain_punch_locked(c, off, len);
    unlock(c);
    return r;
}

static int flush_local(struct cv_chain *c)
{
    int r;

    if ((r = layer_sync(c, chain_head(c))) == 0 && c->header_fd >= 0 &&
        fdatasync(c->header_fd) != 0)
        r = cv_error(-errno, "%s: header: fdatasync: %s", c->dir,
                     strerror(errno));
    return r;
}

int cv_chain_flush(struct cv_chain *c)
{
    int r;

    if (cv_chain_readonly(c))
        return 0;       /* nothing written: nothing to make durable */
    rdlock(c);
    if (c->has_mirror) {
        struct cv_mirror_op op = { .type = CV_MIRROR_FLUSH };
        void *token;

        if ((r = chain_mirror_begin(c, &op, &token)) == 0)
            r = chain_mirror_end(c, token, flush_local(c));
    } else {
        r = flush_local(c);
    }
    unlock(c);
    return r;
}

uint64_t cv_chain_size(const struct cv_chain *c)
{
    struct cv_chain *m = (struct cv_chain *)c;   /* the lock only */
    uint64_t size;

    rdlock(m);
    size = chain_view_size(m);
    unlock(m);
    return size;
}

int cv_chain_lookup(struct cv_chain *c, uint64_t off, uint64_t len,
                    unsigned below, uint64_t *run, int *format)
{
    uint64_t nblk;
    size_t top = 0;
    int r, i;

    rdlock(c);
    if ((r = check_range(c, "lookup", len, off, 1)) == 0 &&
        (r = view_top(c, below, &top)) == 0) {
        i = chain_find(c, top, off / CV_CHAIN_BLOCK, len / CV_CHAIN_BLOCK,
                       &nblk);
        *run = nblk * CV_CHAIN_BLOCK;
        *format = i < 0 ? CV_CHAIN_HOLE : c->layers[i]->format;
        r = i < 0 ? CV_CHAIN_HOLE : (int)c->layers[i]->id;
    }
    unlock(c);
    return r;
}

/* An own layer by id (CV_CHAIN_TOP: the view's top). */
static int own_layer(struct cv_chain *c, unsigned id, struct chain_layer **l)
{
    int i = id == CV_CHAIN_TOP ? (int)c->nlayers - 1 : chain_index(c, id);

    if (i < 0 || !c->layers[i]->own)
        return cv_error(-ENOENT, "%s: no layer %u of its own", c->dir, id);
    *l = c->layers[i];
    return 0;
}

int cv_chain_layer_has(struct cv_chain *c, unsigned id, uint64_t off,
                       uint64_t len, uint64_t *run)
{
    struct chain_layer *l;
    uint64_t blk = off / CV_CHAIN_BLOCK, n = len / CV_CHAIN_BLOCK, held;
    int r, i;

    rdlock(c);
    i = id == CV_CHAIN_TOP ? (int)c->nlayers - 1 : chain_index(c, id);
    if (i < 0) {
        r = cv_error(-ENOENT, "%s: no layer %u", c->dir, id);
    } else if ((r = check_range(c, "lookup", len, off, 1)) == 0) {
        l = c->layers[i];
        held = layer_run(l, blk, n, 1);
        r = held > 0;
        *run = (held ? held : layer_run(l, blk, n, 0)) * CV_CHAIN_BLOCK;
    }
    unlock(c);
    return r;
}

int cv_chain_write_layer(struct cv_chain *c, unsigned id, const void *buf,
                         size_t len, uint64_t off)
{
    struct chain_layer *l = NULL;
    int r;

    rdlock(c);
    if ((r = chain_writable(c, "write into a layer")) == 0 &&
        (r = own_layer(c, id, &l)) == 0 &&
        (r = check_range(c, "write into a layer", len, off, 1)) == 0) {
        /* Past a layer's end its map holds nothing: data written there
         * would not be seen. */
        if (!l->store && off + len > l->size)
            r = cv_error(-ERANGE, "%s: layer %u ends at %llu", c->dir, l->id,
                         (unsigned long long)l->size);
        else
            r = chain_write_locked(c, l, buf, len, off, 0);
    }
    unlock(c);
    return r;
}

int cv_chain_sync_layer(struct cv_chain *c, unsigned id)
{
    struct chain_layer *l = NULL;
    int r;

    rdlock(c);
    if ((r = own_layer(c, id, &l)) == 0 && c->has_mirror) {
        struct cv_mirror_op op = { .type = CV_MIRROR_SHAPE,
                                   .shape = CV_SHAPE_SYNC_LAYER, .id = id };
        void *token;

        if ((r = chain_mirror_begin(c, &op, &token)) == 0)
            r = chain_mirror_end(c, token, layer_sync(c, l));
    } else if (r == 0) {
        r = layer_sync(c, l);
    }
    unlock(c);
    return r;
}

const char *cv_chain_name(const struct cv_chain *c)
{
    return c->dir;
}

int cv_chain_readonly(const struct cv_chain *c)
{
    return c->readonly || c->snapshot != NULL;
}

uint64_t cv_chain_data_offset(const struct cv_chain *c)
{
    return c->data_offset;
}

unsigned cv_chain_formats(const struct cv_chain *c)
{
    return __atomic_load_n(&c->nformats, __ATOMIC_ACQUIRE);
}

const char *cv_chain_format_volume(const struct cv_chain *c, unsigned fmt)
{
    return fmt < c->nformats ? c->formats[fmt].volume : NULL;
}

struct cv_backend *cv_chain_format_header(struct cv_chain *c, unsigned fmt)
{
    if (fmt >= c->nformats)
        return NULL;
    return fmt == 0 ? cv_chain_backend(c) : c->formats[fmt].header;
}

int cv_chain_layers(struct cv_chain *c, struct cv_chain_layer_info **out,
                    size_t *n)
{
    struct cv_chain_layer_info *v;
    uint64_t from = c->data_offset / CV_CHAIN_BLOCK;
    int r = 0;

    rdlock(c);
    if (!(v = calloc(c->nlayers, sizeof *v))) {
        r = cv_error(-ENOMEM, "%s: out of memory", c->dir);
        goto out;
    }
    for (size_t i = 0; i < c->nlayers; i++) {
        struct chain_layer *l = c->layers[i];

        v[i].id = l->id;
        v[i].format = l->format;
        v[i].own = l->own;
        v[i].head = i == c->nlayers - 1 && !c->snapshot;
        snprintf(v[i].snapshot, sizeof v[i].snapshot, "%s", l->snapshot);
        v[i].created = l->created;
        v[i].state = l->merging ? CV_LAYER_MERGING : CV_LAYER_READY;
        if (l->store) {
            uint64_t size = chain_view_size(c);

            v[i].allocated = size > c->data_offset ? size - c->data_offset
                                                   : 0;
        } else {
            v[i].allocated = chain_map_count(&l->map, from) * CV_CHAIN_BLOCK;
        }
    }
    *out = v;
    *n = c->nlayers;
out:
    unlock(c);
    return r;
}

int cv_chain_parent(const struct cv_chain *c, struct cv_chain_parent *out)
{
    if (!c->man.has_parent)
        return cv_error(-ENOENT, "%s: has no parent", c->dir);
    out->volume = c->man.parent_volume;
    out->snapshot = c->man.parent_snapshot;
    out->own_format = c->man.parent_own_format;
    return 0;
}

unsigned cv_chain_bottom(const struct cv_chain *c)
{
    struct cv_chain *m = (struct cv_chain *)c;   /* the lock only */
    unsigned id;

    rdlock(m);
    id = m->layers[m->nparent]->id;
    unlock(m);
    return id;
}

/* Backing stores: where a volume's raw (encrypted) bytes live.
 *
 * Every operation is blocking and thread-safe: the NBD server and the
 * parallel import issue many at once from different threads, which is how
 * nbdkit's parallel thread model works.  A store that is asynchronous inside
 * (the replicated store) completes each call by waiting on its own
 * completion, so the volume layer does not change when one is added.
 */
#ifndef CRYPTVOL_BACKEND_H
#define CRYPTVOL_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#define CV_WRITE_FUA 1u     /* durable before the call returns */
/* The blocks pread_held reports on (store/chain.h's CV_CHAIN_BLOCK). */
#define CV_BACKEND_BLOCK 4096u

struct cv_backend;

/* A transform applied to bytes as they move between a caller's buffer and
 * a store (the cipher of the volume layer): writes n bytes at dst made
 * from the n bytes at src, which are [pos, pos+n) of the request; src ==
 * dst is in place.  Returns 0 or a negative errno with cv_error's
 * message. */
typedef int (*cv_xform_fn)(void *arg, void *dst, const void *src, size_t n,
                           size_t pos);

struct cv_backend_ops {
    const char *kind;
    int (*pread)(struct cv_backend *b, void *buf, size_t len, uint64_t off);
    int (*pwrite)(struct cv_backend *b, const void *buf, size_t len,
                  uint64_t off, unsigned flags);
    int (*flush)(struct cv_backend *b);
    /* Deallocates; the range then reads as zeros. */
    int (*discard)(struct cv_backend *b, uint64_t off, uint64_t len);
    int (*get_size)(struct cv_backend *b, uint64_t *size);
    int (*resize)(struct cv_backend *b, uint64_t size);
    void (*close)(struct cv_backend *b);
    /* Optional, for a store whose bytes are memory the caller may reach:
     * the transform runs straight into (out of) that memory, with no copy
     * of its own.  NULL: cv_backend_pwrite_xform and _pread_xform
     * transform in a buffer and copy. */
    int (*pwrite_xform)(struct cv_backend *b, const void *buf, size_t len,
                        uint64_t off, unsigned flags, cv_xform_fn xf,
                        void *arg);
    int (*pread_xform)(struct cv_backend *b, void *buf, size_t len,
                       uint64_t off, cv_xform_fn xf, void *arg);
    /* Optional, for a store that knows which blocks hold data (a view of
     * another node's chain, daemon/repl/remote-store.c): reads
     * [off, off+len) (whole CV_BACKEND_BLOCKs) and sets held's bit (one
     * per block, LSB first, zeroed by the caller) for each block that
     * holds data; the others read as zeros.  A chain wrapping it
     * (cv_chain_wrap) reports those as holes (CV_CHAIN_HOLE), as a chain
     * of layers does, so the image layer serves them as plaintext zeros. */
    int (*pread_held)(struct cv_backend *b, void *buf, size_t len,
                      uint64_t off, uint8_t *held);
};

struct cv_backend {
    const struct cv_backend_ops *ops;
    char *name;         /* for messages: a path or a label */
    /* Set by a store whose layers cannot change here: what a chain
     * wrapping it says when asked for a change of shape. */
    const char *no_shape;
};

/* Wrappers: check the range against the size where the store cannot, and
 * prefix errors with the backend's name. */
int cv_backend_pread(struct cv_backend *b, void *buf, size_t len, uint64_t off);
int cv_backend_pwrite(struct cv_backend *b, const void *buf, size_t len,
                      uint64_t off, unsigned flags);
/* Stores what xf makes of buf's len bytes at off: straight into the
 * store's memory where it has pwrite_xform, else transformed into a
 * scratch buffer (core/scratch.h) that is then written.  buf is not
 * changed.  A failed call leaves [off, off+len) undefined, as a failed
 * write does. */
int cv_backend_pwrite_xform(struct cv_backend *b, const void *buf, size_t len,
                            uint64_t off, unsigned flags, cv_xform_fn xf,
                            void *arg);
/* Reads [off, off+len) into buf transformed by xf: straight out of the
 * store's memory where it has pread_xform, else read into buf and
 * transformed there in place. */
int cv_backend_pread_xform(struct cv_backend *b, void *buf, size_t len,
                           uint64_t off, cv_xform_fn xf, void *arg);
int cv_backend_flush(struct cv_backend *b);
int cv_backend_discard(struct cv_backend *b, uint64_t off, uint64_t len);
int cv_backend_size(struct cv_backend *b, uint64_t *size);
int cv_backend_resize(struct cv_backend *b, uint64_t size);
void cv_backend_close(struct cv_backend *b);

/* A local file or block device.  readonly opens it O_RDONLY. */
int cv_backend_file_open(const char *path, int readonly,
                         struct cv_backend **out);

/* An in-memory store of size bytes (tests and benchmarks). */
int cv_backend_mem_new(const char *name, uint64_t size,
                       struct cv_backend **out);

#endif

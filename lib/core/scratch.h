/* Per-thread scratch buffers for the data path: the bounce buffer of a
 * write to a store that copies, the whole blocks around an unaligned
 * read.  malloc'ing one per request costs a page fault per page once it
 * comes from mmap (glibc does that above its threshold, which starts at
 * 128 KiB, and trims the heap back when a large free leaves its top), and
 * a cold buffer per request besides.  256 KiB covers what NBD clients
 * send most (nbdcopy's requests are 256 KiB, a file system's 4 KiB to
 * 128 KiB) while bounding what a pool of mostly idle threads keeps.  Each thread keeps a few buffers of
 * up to CV_SCRATCH_KEEP bytes (a power of two from 64 KiB) for its next
 * requests; bigger ones are
 * freed when put back, so an idle thread pins at most
 * CV_SCRATCH_SLOTS * CV_SCRATCH_KEEP bytes.  What they held is not wiped:
 * they hold volume data (ciphertext, or plaintext as the caller's own
 * buffers do), never keys. */
#ifndef CRYPTVOL_SCRATCH_H
#define CRYPTVOL_SCRATCH_H

#include <stddef.h>

/* Buffers kept per thread, and the size kept. */
#define CV_SCRATCH_SLOTS 2
#define CV_SCRATCH_KEEP (256 * 1024)

/* A buffer of at least len bytes (len > 0), 64-byte aligned, for this
 * thread until cv_scratch_put; NULL with a message when out of memory.
 * Calls nest: each cv_scratch_get gets a buffer of its own. */
void *cv_scratch_get(size_t len);
/* Gives back a buffer from cv_scratch_get (NULL: nothing). */
void cv_scratch_put(void *p);

/* Frees the buffers this thread keeps (not those in use): for a thread
 * that goes idle for long, so that it pins nothing meanwhile. */
void cv_scratch_release(void);

/* For tests: the bytes this thread keeps now (buffers not in use). */
size_t cv_scratch_kept(void);

#endif

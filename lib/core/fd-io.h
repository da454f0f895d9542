/* Whole reads and writes at an offset, retried on EINTR and short
 * counts: what every store does with its files. */
#ifndef CRYPTVOL_FD_IO_H
#define CRYPTVOL_FD_IO_H

#include <stddef.h>
#include <stdint.h>

/* Reads len bytes at off; past the file's end they read as zeros (a
 * sparse or short file).  0 or -errno, without a message: the caller
 * names the file. */
int cv_pread_zeros(int fd, void *buf, size_t len, uint64_t off);
/* Writes all len bytes at off.  0 or -errno, without a message. */
int cv_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);

#endif

/* Sizes as users type them: a number with an optional K, M, G, T or P suffix
 * (powers of 1024; "KiB" and "KB" spellings accepted). */
#ifndef CRYPTVOL_SIZE_H
#define CRYPTVOL_SIZE_H

#include <stddef.h>
#include <stdint.h>

/* Parses str into *out.  Returns 0, or -EINVAL / -ERANGE with a message. */
int cv_parse_size(const char *str, uint64_t *out);

/* Formats size in human units ("1.5 GiB") into buf. */
const char *cv_format_size(uint64_t size, char *buf, size_t len);

#endif

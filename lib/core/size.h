/* Sizes as users type them: a number, with decimals if it comes out whole
 * bytes ("1.5G"), then an optional unit, with or without one space before
 * it: none or B bytes; K, M, G, T, P, E and KiB, MiB, GiB, TiB, PiB, EiB
 * powers of 1024; KB, MB, GB, TB, PB, EB powers of 1000 (as coreutils and
 * the SI read "GB").  Letters in any case. */
#ifndef CRYPTVOL_SIZE_H
#define CRYPTVOL_SIZE_H

#include <stddef.h>
#include <stdint.h>

/* Parses str into *out.  Returns 0, or -EINVAL / -ERANGE with a message
 * naming str. */
int cv_parse_size(const char *str, uint64_t *out);

/* Formats size in human units ("1.5 GiB") into buf. */
const char *cv_format_size(uint64_t size, char *buf, size_t len);
/* The same, followed by the exact count when the human form rounds it:
 * "1.5 GiB", "1.5 GiB (1610612737 bytes)".  32 + 32 bytes fit. */
const char *cv_format_size_exact(uint64_t size, char *buf, size_t len);

#endif

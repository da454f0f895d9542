/* Base64 (RFC 4648, with padding, no line breaks) through OpenSSL, for
 * binary values in JSON documents. */
#ifndef CRYPTVOL_BASE64_H
#define CRYPTVOL_BASE64_H

#include <stddef.h>

/* *text is malloc'ed and NUL-terminated.  Returns 0, -EINVAL (too long)
 * or -ENOMEM, with no message. */
int cv_base64_encode(const void *data, size_t len, char **text);

/* Decodes text, which must be padded base64 with no blanks, of at most
 * max bytes; *data is malloc'ed.  Returns 0, -EINVAL (not base64, or
 * longer than max) or -ENOMEM, with no message: the caller knows what
 * the value was and says so. */
int cv_base64_decode(const char *text, size_t max, unsigned char **data,
                     size_t *len);

#endif

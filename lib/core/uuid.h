/* Random identifiers in the form users know from LUKS and Ceph. */
#ifndef CRYPTVOL_UUID_H
#define CRYPTVOL_UUID_H

#include <stddef.h>

#define CV_UUID_LEN 37          /* 36 characters and the NUL */

/* A random (version 4) UUID, lower-case, into buf (len >= CV_UUID_LEN).
 * what names the thing it is for in the error ("cluster: no random bytes
 * for its id"). */
int cv_uuid_new(char *buf, size_t len, const char *what);

#endif

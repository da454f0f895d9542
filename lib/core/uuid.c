/* Random (version 4) UUIDs from OpenSSL's generator (uuid.h). */
#include "uuid.h"
#include "error.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>

int cv_uuid_new(char *buf, size_t len, const char *what)
{
    unsigned char u[16];

    if (len < CV_UUID_LEN)
        return cv_error(-EINVAL, "%s: no room for a UUID", what);
    if (RAND_bytes(u, sizeof u) != 1)
        return cv_error(-EIO, "%s: no random bytes for its id", what);
    u[6] = (u[6] & 0x0f) | 0x40;    /* version 4: random */
    u[8] = (u[8] & 0x3f) | 0x80;    /* the RFC 4122 variant */
    snprintf(buf, len, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4], u[5],
             u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    return 0;
}

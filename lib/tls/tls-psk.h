/* PSK files for TLS: lines "identity:hexkey", as GnuTLS psktool writes them
 * and nbdkit, qemu and libnbd read them.  Internal to lib/tls*.c. */
#ifndef CRYPTVOL_TLS_PSK_H
#define CRYPTVOL_TLS_PSK_H

#include <stddef.h>

/* Shorter keys are refused: a captured handshake lets an attacker test
 * guesses offline, so a PSK needs at least 128 bits. */
#define CV_PSK_MIN_KEY 16
/* psktool's own limit, and OpenSSL's PSK_MAX_PSK_LEN. */
#define CV_PSK_MAX_KEY 512

struct cv_psk {
    const char *identity;       /* NUL-terminated */
    const unsigned char *key;
    size_t keylen;
};

/* Every byte of the table (identities too) is in one locked region. */
struct cv_psk_table {
    size_t n;
    struct cv_psk *psk;
    void *mem;
    size_t memlen;
};

/* Reads and checks path (mode 0600 or stricter, at least one key, every
 * non-blank line well formed, no identity twice).  Messages name the file
 * and line, never key bytes. */
int cv_psk_table_read(const char *path, struct cv_psk_table **out);

/* The entry for identity (not NUL-terminated, idlen bytes), or NULL. */
const struct cv_psk *cv_psk_find(const struct cv_psk_table *t,
                                 const void *identity, size_t idlen);

/* Wipes and frees; NULL is ignored. */
void cv_psk_table_free(struct cv_psk_table *t);

#endif

/* The KEYS message of the peer port (peer/peer.h, CVD_PEER_KEYS): what a
 * member gives a joining node.  A request is empty; the answer is
 *     u32 count, then per key {u32 gen, u32 len, len bytes}
 * integers big-endian, gen 0 the cluster's seal key and every other a KEK
 * generation; each key CV_KEK_LEN (32) bytes, the seal key present once.
 * The buffer is locked memory: it holds keys in the clear. */
#ifndef CRYPTVOLD_CLUSTER_KEYS_H
#define CRYPTVOLD_CLUSTER_KEYS_H

#include <stddef.h>
#include <stdint.h>

/* Keys in one message at most: the seal key and this many KEKs. */
#define CVD_KEYS_MAX 1024

struct cvd_keys_entry {
    uint32_t gen;               /* 0: the seal key */
    const unsigned char *key;   /* CV_KEK_LEN bytes */
};

/* *buf: cv_secmem_alloc'ed, *len bytes (free with cv_secmem_free). */
int cvd_keys_encode(const struct cvd_keys_entry *keys, size_t n,
                    unsigned char **buf, size_t *len);
/* Checks the whole message before anything is used: -EPROTO, naming from
 * (the member it came from) and what is wrong, for a message cut short,
 * a key not CV_KEK_LEN bytes, bytes after the last key, a generation
 * given twice, more than max keys, or no seal key.  out[i].key points
 * into p. */
int cvd_keys_decode(const char *from, const void *p, size_t len,
                    struct cvd_keys_entry *out, size_t max, size_t *n);

#endif

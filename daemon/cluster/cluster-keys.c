/* The KEYS message (cluster-keys.h): encoding on the member's side,
 * checking every byte on the joining node's. */
#include "cluster-keys.h"
#include "core/error.h"
#include "core/secmem.h"
#include "luks/kek-token.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

static unsigned char *put_u32(unsigned char *p, uint32_t v)
{
    uint32_t be = htonl(v);

    memcpy(p, &be, 4);
    return p + 4;
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t be;

    memcpy(&be, p, 4);
    return ntohl(be);
}

int cvd_keys_encode(const struct cvd_keys_entry *keys, size_t n,
                    unsigned char **buf, size_t *len)
{
    unsigned char *b, *p;
    size_t i, size = 4 + n * (8 + CV_KEK_LEN);

    *buf = NULL;
    *len = 0;
    if (n > CVD_KEYS_MAX + 1)
        return cv_error(-E2BIG, "KEYS: %zu keys, at most %d", n,
                        CVD_KEYS_MAX + 1);
    if (!(b = cv_secmem_alloc(size)))
        return cv_error(-ENOMEM, "KEYS: out of memory");
    p = put_u32(b, (uint32_t)n);
    for (i = 0; i < n; i++) {
        p = put_u32(p, keys[i].gen);
        p = put_u32(p, CV_KEK_LEN);
        memcpy(p, keys[i].key, CV_KEK_LEN);
        p += CV_KEK_LEN;
    }
    *buf = b;
    *len = size;
    return 0;
}

static int seen(const struct cvd_keys_entry *out, size_t n, uint32_t gen)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (out[i].gen == gen)
            return 1;
    return 0;
}

int cvd_keys_decode(const char *from, const void *msg, size_t len,
                    struct cvd_keys_entry *out, size_t max, size_t *n)
{
    const unsigned char *p = msg;
    size_t count, i, off = 4;

    *n = 0;
    if (len < 4)
        return cv_error(-EPROTO, "the keys from node %s: %zu bytes, not a "
                        "KEYS answer", from, len);
    count = get_u32(p);
    if (count > max)
        return cv_error(-EPROTO, "the keys from node %s: %zu keys, at most "
                        "%zu", from, count, max);
    for (i = 0; i < count; i++) {
        uint32_t gen, klen;

        if (len - off < 8)
            return cv_error(-EPROTO, "the keys from node %s: cut short at "
                            "key %zu of %zu", from, i + 1, count);
        gen = get_u32(p + off);
        klen = get_u32(p + off + 4);
        off += 8;
        if (klen != CV_KEK_LEN)
            return cv_error(-EPROTO, "the keys from node %s: key %zu has %u "
                            "bytes, not %d", from, i + 1, klen, CV_KEK_LEN);
        if (len - off < klen)
            return cv_error(-EPROTO, "the keys from node %s: cut short in "
                            "key %zu of %zu", from, i + 1, count);
        if (seen(out, i, gen))
            return cv_error(-EPROTO, "the keys from node %s: %s %u given "
                            "twice", from, gen ? "KEK generation" :
                            "the seal key, generation", gen);
        out[i] = (struct cvd_keys_entry){ gen, p + off };
        off += klen;
    }
    if (off != len)
        return cv_error(-EPROTO, "the keys from node %s: %zu bytes after the "
                        "last key", from, len - off);
    if (!seen(out, count, 0))
        return cv_error(-EPROTO, "the keys from node %s: no seal key", from);
    *n = count;
    return 0;
}

/* libFuzzer: the replication protocol's decoders (daemon/repl/
 * repl-proto.h), which read what a peer sends.  The first byte picks what
 * the rest is: 0..14 a request of type REPL_OPEN + n (repl_decode), 15
 * OPEN's answer (repl_open_reply_decode).  A length a decoder trusts shows
 * up as an ASan report or a malloc above the fuzzer's limit; and what it
 * accepts must encode back to the same bytes (the encoding is canonical),
 * else a writer and a replica could read one message two ways. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "repl/repl-proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void request(uint16_t type, const uint8_t *p, size_t n)
{
    struct repl_req q;
    size_t len, dlen;
    void *out;

    if (repl_decode(type, p, n, &q) < 0)
        return;
    /* WRITE and HEADER: the data is the rest, sent apart. */
    dlen = type == REPL_WRITE || type == REPL_HEADER ? (size_t)q.len : 0;
    if (repl_encode(&q, &out, &len) < 0 || len + dlen != n ||
        memcmp(out, p, len) || (dlen && q.data != p + len))
        abort();
    free(out);
    repl_req_free(&q);
}

static void open_reply(const uint8_t *p, size_t n)
{
    struct repl_open_reply o;
    size_t len;
    void *out;

    if (repl_open_reply_decode(p, n, &o) < 0)
        return;
    if (repl_open_reply_encode(&o, &out, &len) < 0 || len != n ||
        memcmp(out, p, n))
        abort();
    free(out);
    repl_open_reply_free(&o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned pick;

    if (size < 1)
        return 0;
    pick = data[0] % 16;
    if (pick == 15)
        open_reply(data + 1, size - 1);
    else
        request((uint16_t)(REPL_OPEN + pick), data + 1, size - 1);
    return 0;
}

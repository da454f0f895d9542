/* libFuzzer: the handshake's option parsing.  The input is what a client
 * sends after the greeting: client flags, then options (IHAVEOPT, option,
 * length, payload).  Each option is parsed as the server would, and every
 * reply the server could build from it is built, so a parser that lets a
 * bad length through shows up as an out-of-bounds access under ASan. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nbd/nbd-proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[2 * NBD_MAX_STRING + 64];

static void replies_for_go(uint32_t opt, const uint8_t *p, uint32_t len)
{
    struct nbd_opt_go g;
    char name[NBD_MAX_STRING + 1];

    if (nbd_parse_opt_go(p, len, &g) < 0)
        return;
    memcpy(name, g.name, g.name_len);
    name[g.name_len] = '\0';
    nbd_build_info_string(out, sizeof out, opt, NBD_INFO_NAME, name);
    nbd_build_rep_server(out, sizeof out, opt, name);
    for (uint16_t i = 0; i < g.ninfo; i++)
        (void)nbd_get16(g.info + 2 * i);
}

static void replies_for_meta(uint32_t opt, const uint8_t *p, uint32_t len)
{
    struct nbd_opt_meta m;
    const char *q;
    uint32_t qlen;

    if (nbd_parse_opt_meta(p, len, &m) < 0)
        return;
    while (nbd_meta_next_query(&m, &q, &qlen))
        if (nbd_meta_query_matches(q, qlen, opt == NBD_OPT_LIST_META_CONTEXT))
            nbd_build_meta_context(out, sizeof out, opt, 1,
                                   NBD_META_BASE_ALLOCATION);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    struct nbd_opt_hdr h;
    uint32_t flags;
    char buf[32];

    if (size < 4 || nbd_parse_client_flags(p, &flags) < 0)
        return 0;
    for (p += 4; end - p >= NBD_OPT_HDR_LEN; p += h.len) {
        if (nbd_parse_opt_hdr(p, &h) < 0)
            return 0;
        p += NBD_OPT_HDR_LEN;
        /* The server refuses what is over the limit before parsing it. */
        if (h.len > NBD_MAX_OPTION_LEN || h.len > (size_t)(end - p))
            return 0;
        nbd_opt_name(h.option, buf, sizeof buf);
        if (h.option == NBD_OPT_GO || h.option == NBD_OPT_INFO)
            replies_for_go(h.option, p, h.len);
        else if (h.option == NBD_OPT_LIST_META_CONTEXT ||
                 h.option == NBD_OPT_SET_META_CONTEXT)
            replies_for_meta(h.option, p, h.len);
        else if (h.option == NBD_OPT_EXPORT_NAME &&
                 nbd_string_ok((const char *)p, h.len))
            nbd_build_opt_error(out, sizeof out, h.option,
                                NBD_REP_ERR_UNKNOWN, "no such export");
    }
    return 0;
}

/* The NBD protocol on byte buffers: constants, parsers for what a client
 * sends (option headers and payloads, request headers) and builders for
 * what the server answers.  No I/O and no allocation, so every function
 * here can be fuzzed (fuzz/) and tested byte for byte (test-nbd-proto.c).
 *
 * The wire format is the NBD project's doc/proto.md: fixed newstyle
 * handshake, NBD_OPT_GO/INFO, structured replies, base:allocation.  All
 * numbers are big-endian. */
#ifndef CRYPTVOL_NBD_PROTO_H
#define CRYPTVOL_NBD_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* Handshake. */
#define NBD_MAGIC               UINT64_C(0x4e42444d41474943)   /* NBDMAGIC */
#define NBD_OPTS_MAGIC          UINT64_C(0x49484156454f5054)   /* IHAVEOPT */
#define NBD_REP_MAGIC           UINT64_C(0x0003e889045565a9)

#define NBD_FLAG_FIXED_NEWSTYLE     (1u << 0)
#define NBD_FLAG_NO_ZEROES          (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE   NBD_FLAG_FIXED_NEWSTYLE
#define NBD_FLAG_C_NO_ZEROES        NBD_FLAG_NO_ZEROES

/* Transmission flags. */
#define NBD_FLAG_HAS_FLAGS          (1u << 0)
#define NBD_FLAG_READ_ONLY          (1u << 1)
#define NBD_FLAG_SEND_FLUSH         (1u << 2)
#define NBD_FLAG_SEND_FUA           (1u << 3)
#define NBD_FLAG_ROTATIONAL         (1u << 4)
#define NBD_FLAG_SEND_TRIM          (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES  (1u << 6)
#define NBD_FLAG_SEND_DF            (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN     (1u << 8)
#define NBD_FLAG_SEND_CACHE         (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO     (1u << 11)

/* Options. */
#define NBD_OPT_EXPORT_NAME         1
#define NBD_OPT_ABORT               2
#define NBD_OPT_LIST                3
#define NBD_OPT_STARTTLS            5
#define NBD_OPT_INFO                6
#define NBD_OPT_GO                  7
#define NBD_OPT_STRUCTURED_REPLY    8
#define NBD_OPT_LIST_META_CONTEXT   9
#define NBD_OPT_SET_META_CONTEXT    10

/* Option replies. */
#define NBD_REP_ACK                 1u
#define NBD_REP_SERVER              2u
#define NBD_REP_INFO                3u
#define NBD_REP_META_CONTEXT        4u
#define NBD_REP_ERR(n)              (UINT32_C(0x80000000) | (n))
#define NBD_REP_ERR_UNSUP           NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY          NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID         NBD_REP_ERR(3)
#define NBD_REP_ERR_PLATFORM        NBD_REP_ERR(4)
#define NBD_REP_ERR_TLS_REQD        NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN         NBD_REP_ERR(6)
#define NBD_REP_ERR_SHUTDOWN        NBD_REP_ERR(7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD NBD_REP_ERR(8)
#define NBD_REP_ERR_TOO_BIG         NBD_REP_ERR(9)

#define NBD_INFO_EXPORT             0
#define NBD_INFO_NAME               1
#define NBD_INFO_DESCRIPTION        2
#define NBD_INFO_BLOCK_SIZE         3

/* Transmission. */
#define NBD_REQUEST_MAGIC           UINT32_C(0x25609513)
#define NBD_SIMPLE_REPLY_MAGIC      UINT32_C(0x67446698)
#define NBD_STRUCTURED_REPLY_MAGIC  UINT32_C(0x668e33ef)

#define NBD_CMD_READ                0
#define NBD_CMD_WRITE               1
#define NBD_CMD_DISC                2
#define NBD_CMD_FLUSH               3
#define NBD_CMD_TRIM                4
#define NBD_CMD_CACHE               5
#define NBD_CMD_WRITE_ZEROES        6
#define NBD_CMD_BLOCK_STATUS        7

#define NBD_CMD_FLAG_FUA            (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE        (1u << 1)
#define NBD_CMD_FLAG_DF             (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE        (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO      (1u << 4)

#define NBD_REPLY_FLAG_DONE         (1u << 0)
#define NBD_REPLY_TYPE_NONE         0
#define NBD_REPLY_TYPE_OFFSET_DATA  1
#define NBD_REPLY_TYPE_OFFSET_HOLE  2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR        ((1u << 15) | 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET ((1u << 15) | 2)

#define NBD_STATE_HOLE              (1u << 0)
#define NBD_STATE_ZERO              (1u << 1)

/* Error values (the protocol's, not the host's errno). */
#define NBD_EPERM       1
#define NBD_EIO         5
#define NBD_ENOMEM      12
#define NBD_EINVAL      22
#define NBD_ENOSPC      28
#define NBD_EOVERFLOW   75
#define NBD_ENOTSUP     95
#define NBD_ESHUTDOWN   108

/* Sizes on the wire. */
#define NBD_HANDSHAKE_LEN       18      /* NBDMAGIC, IHAVEOPT, flags */
#define NBD_OPT_HDR_LEN         16
#define NBD_OPT_REPLY_HDR_LEN   20
#define NBD_REQUEST_LEN         28
#define NBD_SIMPLE_REPLY_LEN    16
#define NBD_CHUNK_HDR_LEN       20
#define NBD_OFFSET_DATA_HDR_LEN 28      /* chunk header + offset */
#define NBD_EXPORT_NAME_REPLY_LEN 134   /* size, flags, 124 zeroes */

/* Limits of this server. */
#define NBD_MAX_STRING      4096            /* names and messages */
#define NBD_MAX_OPTION_LEN  (64u * 1024)    /* larger options are refused */
#define NBD_MAX_PAYLOAD     (32u * 1024 * 1024)
#define NBD_META_BASE_ALLOCATION "base:allocation"
#define NBD_META_ID_BASE_ALLOCATION 1

static inline void nbd_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void nbd_put32(uint8_t *p, uint32_t v)
{
    nbd_put16(p, (uint16_t)(v >> 16));
    nbd_put16(p + 2, (uint16_t)v);
}

static inline void nbd_put64(uint8_t *p, uint64_t v)
{
    nbd_put32(p, (uint32_t)(v >> 32));
    nbd_put32(p + 4, (uint32_t)v);
}

static inline uint16_t nbd_get16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t nbd_get32(const uint8_t *p)
{
    return (uint32_t)nbd_get16(p) << 16 | nbd_get16(p + 2);
}

static inline uint64_t nbd_get64(const uint8_t *p)
{
    return (uint64_t)nbd_get32(p) << 32 | nbd_get32(p + 4);
}

/* Names for log lines ("NBD_OPT_GO", "option 99"); buf is used for
 * unknown values. */
const char *nbd_opt_name(uint32_t opt, char *buf, size_t len);
const char *nbd_cmd_name(uint16_t type, char *buf, size_t len);

/* --- Handshake ---------------------------------------------------------- */

/* The server's greeting: NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE | NO_ZEROES. */
void nbd_build_greeting(uint8_t out[NBD_HANDSHAKE_LEN]);

/* The client's 32-bit flags: -EPROTO for bits the server did not offer. */
int nbd_parse_client_flags(const uint8_t in[4], uint32_t *flags);

struct nbd_opt_hdr {
    uint32_t option;
    uint32_t len;                       /* payload bytes that follow */
};

/* -EPROTO if the magic is not IHAVEOPT (the stream is lost). */
int nbd_parse_opt_hdr(const uint8_t in[NBD_OPT_HDR_LEN],
                      struct nbd_opt_hdr *h);

/* NBD_OPT_INFO and NBD_OPT_GO: an export name and the NBD_INFO_* the
 * client asks for.  Pointers point into the parsed buffer. */
struct nbd_opt_go {
    const char *name;                   /* not NUL-terminated */
    uint32_t name_len;
    uint16_t ninfo;
    const uint8_t *info;                /* ninfo big-endian 16-bit values */
};

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT. */
struct nbd_opt_meta {
    const char *name;
    uint32_t name_len;
    uint32_t nqueries;
    const uint8_t *queries;             /* validated: nqueries strings */
    const uint8_t *end;
};

/* Each returns 0 or -EINVAL with a message fit for NBD_REP_ERR_INVALID
 * ("NBD_OPT_GO: export name is 70 bytes but the option has 8").  Strings
 * are checked: at most NBD_MAX_STRING bytes, no NUL. */
int nbd_parse_opt_go(const uint8_t *data, uint32_t len,
                     struct nbd_opt_go *out);
int nbd_parse_opt_meta(const uint8_t *data, uint32_t len,
                       struct nbd_opt_meta *out);
/* The next query of m (already validated); 0 when there is none left. */
int nbd_meta_next_query(struct nbd_opt_meta *m, const char **q,
                        uint32_t *qlen);
/* Whether query q names base:allocation: exactly, or (listing only) by its
 * namespace "base:". */
int nbd_meta_query_matches(const char *q, uint32_t qlen, int listing);
/* 1 if the string may be a name or message: no NUL, not too long. */
int nbd_string_ok(const char *s, size_t len);

/* Option reply header.  Returns NBD_OPT_REPLY_HDR_LEN. */
size_t nbd_build_opt_reply(uint8_t out[NBD_OPT_REPLY_HDR_LEN], uint32_t opt,
                           uint32_t type, uint32_t len);
/* A whole reply with payload into out (cap bytes); these return the bytes
 * written, or 0 if cap is too small.  Strings longer than NBD_MAX_STRING
 * are truncated. */
size_t nbd_build_opt_error(uint8_t *out, size_t cap, uint32_t opt,
                           uint32_t type, const char *msg);
size_t nbd_build_rep_server(uint8_t *out, size_t cap, uint32_t opt,
                            const char *name);
size_t nbd_build_info_export(uint8_t *out, size_t cap, uint32_t opt,
                             uint64_t size, uint16_t tflags);
size_t nbd_build_info_block_size(uint8_t *out, size_t cap, uint32_t opt,
                                 uint32_t min, uint32_t pref, uint32_t max);
/* NBD_INFO_NAME or NBD_INFO_DESCRIPTION. */
size_t nbd_build_info_string(uint8_t *out, size_t cap, uint32_t opt,
                             uint16_t info, const char *s);
size_t nbd_build_meta_context(uint8_t *out, size_t cap, uint32_t opt,
                              uint32_t id, const char *name);
/* The answer to NBD_OPT_EXPORT_NAME: size, flags, and 124 zeroes unless
 * the client set NBD_FLAG_C_NO_ZEROES.  Returns 10 or 134. */
size_t nbd_build_export_name_reply(uint8_t out[NBD_EXPORT_NAME_REPLY_LEN],
                                   uint64_t size, uint16_t tflags,
                                   int no_zeroes);

/* --- Transmission ------------------------------------------------------- */

struct nbd_request {
    uint16_t flags;
    uint16_t type;
    uint64_t handle;
    uint64_t offset;
    uint32_t len;
};

/* -EPROTO if the magic is wrong (the stream is lost). */
int nbd_parse_request(const uint8_t in[NBD_REQUEST_LEN],
                      struct nbd_request *r);

/* What was negotiated, for nbd_check_request. */
struct nbd_session_info {
    uint64_t size;
    uint16_t tflags;            /* as sent to the client */
    int structured;             /* NBD_OPT_STRUCTURED_REPLY */
    int meta;                   /* base:allocation selected */
};

/* Validates a request against the session: 0, or a negative errno with a
 * message that nbd_errno() turns into the reply's error ("write of 4096
 * bytes at 1048576 is past the end (1048576 bytes)"): -EINVAL (unknown
 * command or flag, zero length, read past the end), -ENOSPC (write past
 * the end), -EPERM (write to a read-only export), -EOVERFLOW (a READ or
 * WRITE above NBD_MAX_PAYLOAD).  A WRITE's payload follows its header
 * whatever this returns. */
int nbd_check_request(const struct nbd_request *r,
                      const struct nbd_session_info *s);

/* A negative errno as the protocol's error value (EIO when unsure). */
uint32_t nbd_errno(int err);

/* Returns NBD_SIMPLE_REPLY_LEN. */
size_t nbd_build_simple_reply(uint8_t out[NBD_SIMPLE_REPLY_LEN],
                              uint32_t error, uint64_t handle);
/* A structured chunk header.  Returns NBD_CHUNK_HDR_LEN. */
size_t nbd_build_chunk(uint8_t out[NBD_CHUNK_HDR_LEN], uint16_t flags,
                       uint16_t type, uint64_t handle, uint32_t len);
/* NBD_REPLY_TYPE_OFFSET_DATA header for datalen bytes at offset, which
 * follow it.  Returns NBD_OFFSET_DATA_HDR_LEN. */
size_t nbd_build_offset_data(uint8_t out[NBD_OFFSET_DATA_HDR_LEN],
                             uint16_t flags, uint64_t handle, uint64_t offset,
                             uint32_t datalen);
/* NBD_REPLY_TYPE_ERROR with a message, flag DONE.  Returns the bytes
 * written (the message is cut to fit cap), or 0 if cap < 26. */
size_t nbd_build_error_chunk(uint8_t *out, size_t cap, uint64_t handle,
                             uint32_t error, const char *msg);

/* NBD_REPLY_TYPE_BLOCK_STATUS, built one extent at a time: adjacent
 * extents with the same flags merge, extents are cut at the end of the
 * request and at 4 GiB - 1, and adding stops when the buffer is full, the
 * request is covered, or (REQ_ONE) one extent is there. */
struct nbd_extents {
    uint8_t *buf;               /* chunk header, context id, extents */
    size_t cap;
    uint64_t handle;
    uint32_t ctx_id;
    uint64_t remaining;         /* bytes of the request not yet described */
    unsigned max;               /* descriptors that fit (or 1: REQ_ONE) */
    unsigned n;
};

/* cap must hold at least one extent (32 bytes). -EINVAL otherwise. */
int nbd_extents_init(struct nbd_extents *ex, uint8_t *buf, size_t cap,
                     uint64_t handle, uint32_t ctx_id, uint32_t req_len,
                     int req_one);
/* Returns 1 when no more extents are wanted, else 0. */
int nbd_extents_add(struct nbd_extents *ex, uint64_t len, uint32_t flags);
/* Finishes the chunk header (flag DONE) and returns the reply's length;
 * 0 if no extent was added (the caller must then send an error). */
size_t nbd_extents_finish(struct nbd_extents *ex);

#endif

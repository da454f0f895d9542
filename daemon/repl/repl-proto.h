/* The replication protocol: the payloads of the peer frames 0x0200..
 * (peer/peer.h) that a volume's writer sends to its replicas, and their
 * answers (docs/replication.md, "The wire").
 *
 * Every request starts with the same prefix, big-endian:
 *     u64 epoch | u16 namelen | name (the volume, cvd_name_valid)
 * then the type's fields below, then (WRITE, HEADER) the data, which is
 * the rest of the payload.  A replica refuses a request whose epoch is
 * older than the newest it has seen for the volume (-ESTALE, "volume db1:
 * epoch 6 is older than 7: another node writes it now"), and remembers a
 * newer one durably before it answers (OPEN raises it; other types only
 * check it).  A request for a volume the node holds no replica of is
 * -ENOENT ("node n3 holds no replica of volume db1").  Answers are empty
 * unless said.  Decoding never trusts a length: repl_decode checks every
 * field against the payload's size (fuzz/fuzz-repl-proto.c). */
#ifndef CRYPTVOLD_REPL_PROTO_H
#define CRYPTVOLD_REPL_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "meta/meta.h"

enum repl_type {
    /* -> OPEN's answer below.  Opens the replica's chain for the writer
     * (a rebuilding one if a rebuild is under way). */
    REPL_OPEN = 0x0200,
    /* u32 layer (0: the head, else a layer id, store/chain.h) | u32 flags
     * (CV_WRITE_FUA) | u64 off (raw image offset, whole 4 KiB blocks) |
     * data.  Layer writes are a merge's or flatten's fill. */
    REPL_WRITE = 0x0201,
    REPL_PUNCH = 0x0202,        /* u64 off | u64 len (whole blocks) */
    REPL_FLUSH = 0x0203,        /* durable: head and header */
    REPL_HEADER = 0x0204,       /* u64 off | data: inside [0, data offset) */
    REPL_RESIZE = 0x0205,       /* u64 raw_size (the head's) */
    /* u16 op (enum repl_shape_op) | u32 id | i64 created | u16 len | name:
     * the same change of shape the writer's chain made, at the same point
     * of the write stream. */
    REPL_SHAPE = 0x0206,
    /* u16 len | node | u64 off | u64 len: node misses [off, off+len) (its
     * missed-region record, missed.h; durable before the answer).  The
     * node "@active" is the writer's activity log. */
    REPL_MARK = 0x0207,
    REPL_CLEAR = 0x0208,        /* as MARK: the regions are no longer missed */
    /* u32 layer (0: the view of the head, or inside [0, data offset) the
     * header, every block held; else one layer's own blocks) |
     * u64 off | u32 len (whole blocks, at most 4 MiB) -> u32 nblocks |
     * held bitmap (1 bit per 4 KiB block, LSB first, ceil(n/8) bytes) |
     * the data of the held blocks only, in order. */
    REPL_READ = 0x0209,
    /* A rebuild begins: u64 data_offset | u64 raw_size | u32 n | n x
     * (u32 id | i64 created | u16 len | snapshot name, "" for the head),
     * oldest first (the volume's own layers only) | u16 len | parent
     * volume | u16 len | parent snapshot | u32 parent flags
     * (REPL_PARENT_OWN_FORMAT): a clone's parent, store/chain.h's
     * cv_chain_parent ("" and "" and 0 for none).  Makes an empty chain of
     * those layers (same ids), reading through that parent's snapshot in
     * the replica's own copy of the parent, beside the replica's; writes
     * go to it from now on.  -ENOENT when this node holds no replica of
     * the parent or not the snapshot. */
    REPL_REBUILD = 0x020a,
    /* The rebuild is complete: its chain is synced and replaces the old,
     * and the replica's missed-region records are dropped. */
    REPL_COMMIT = 0x020b,
    REPL_DELETE = 0x020c,       /* the replica and its records removed */
    /* -> JSON text {"epoch","layers":[{"id","snapshot","allocated"}],
     *    "missed":{"n3":bytes,...},"rebuilding":bool} */
    REPL_STATUS = 0x020d,
    REPL_CLOSE = 0x020e,        /* the writer lets go: flushed, closed */
};

enum repl_shape_op {
    REPL_SHAPE_SNAPSHOT = 1,    /* name, created */
    REPL_SHAPE_ROLLBACK = 2,    /* name */
    REPL_SHAPE_MARK_MERGING = 3,/* id */
    REPL_SHAPE_DROP_LAYER = 4,  /* id */
    REPL_SHAPE_DROP_PARENT = 5,
    REPL_SHAPE_SYNC_LAYER = 6,  /* id */
    REPL_SHAPE_DATA_OFFSET = 7, /* created holds the new data offset */
};

#define REPL_ACTIVE_NODE "@active"
/* REBUILD's parent flags: the clone has its own format (header, key). */
#define REPL_PARENT_OWN_FORMAT 1u
#define REPL_MAX_LAYERS 256     /* store/chain.h's CV_CHAIN_MAX_LAYERS */
#define REPL_READ_MAX (4u << 20)

struct repl_layer_desc {
    uint32_t id;
    int64_t created;
    char snapshot[CVD_NAME_MAX + 1];    /* "" for the head */
};

/* One decoded request.  Pointers point into the payload decoded. */
struct repl_req {
    enum repl_type type;
    uint64_t epoch;
    char volume[CVD_NAME_MAX + 1];
    uint32_t layer, flags;
    uint64_t off, len;          /* WRITE/HEADER: len = data's length */
    const void *data;
    uint16_t shape_op;
    uint32_t id;
    int64_t created;
    char name[CVD_NAME_MAX + 1];        /* SHAPE's snapshot; MARK's node */
    uint64_t data_offset, raw_size;     /* REBUILD; RESIZE: raw_size */
    uint32_t nlayers;
    struct repl_layer_desc *layers;     /* REBUILD: malloc'ed */
    /* REBUILD: the clone's parent ("" for none), REPL_PARENT_* flags. */
    char parent[CVD_NAME_MAX + 1];
    char parent_snapshot[CVD_NAME_MAX + 1];
    uint32_t parent_flags;
};

/* OPEN's answer: u64 epoch (now recorded) | u64 data_offset | u64 raw_size
 * | u32 n | n x layer (as REBUILD), oldest first, the head last. */
struct repl_open_reply {
    uint64_t epoch, data_offset, raw_size;
    uint32_t nlayers;
    struct repl_layer_desc *layers;     /* malloc'ed */
};

/* Encoders: *out malloc'ed, the prefix and fields only (for WRITE and
 * HEADER the data is sent as a second iovec part after it). */
int repl_encode(const struct repl_req *r, void **out, size_t *len);
/* -EBADMSG with a message saying what is wrong ("replication WRITE: 12
 * bytes, needs 24") for anything malformed; type is the frame's. */
int repl_decode(uint16_t type, const void *payload, size_t len,
                struct repl_req *out);
void repl_req_free(struct repl_req *r);
int repl_open_reply_encode(const struct repl_open_reply *o, void **out,
                           size_t *len);
int repl_open_reply_decode(const void *payload, size_t len,
                           struct repl_open_reply *out);
void repl_open_reply_free(struct repl_open_reply *o);

#endif

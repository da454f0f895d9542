/* The peer port: how the nodes of a cluster talk to each other
 * (docs/cluster.md, "The peer port").
 *
 * Mutual TLS 1.3 only, with the node's certificate from the cluster CA
 * (cfg.peer_tls_dir, as cryptvol tls issue writes it): a peer is accepted
 * only if its client certificate chains to ca-cert.pem *and* its name (the
 * certificate's CN, else its first DNS subjectAltName) is a member that
 * may talk to us now.  Everything else is refused and counted by reason
 * (metrics/metrics.h: enum cvd_peer_refusal), and logged at most once a
 * minute per peer and reason.
 *
 * Frames, both ways: a 16-byte header in network byte order
 *     u32 magic "CVP1" | u16 type | u16 flags (0) | u32 length | u32 id
 * then length bytes of payload (at most CVD_PEER_MAX_PAYLOAD).  A request
 * is answered by one frame with the same id; a connection's requests are
 * answered in order.  A frame that breaks these rules (magic, flags, an
 * oversize length) closes the connection, with a log line naming the
 * peer.  A type with no handler is answered CVD_PEER_ERROR EOPNOTSUPP. */
#ifndef CRYPTVOLD_PEER_H
#define CRYPTVOLD_PEER_H

#include <stddef.h>
#include <stdint.h>

struct cvd;
struct cvd_peer;

#define CVD_PEER_MAGIC 0x43565031u          /* "CVP1" */
#define CVD_PEER_HEADER 16
#define CVD_PEER_MAX_PAYLOAD (16u << 20)    /* 16 MiB */

/* Message types; 0x0100.. are the cluster's, 0x0200.. replication's
 * (next issue). */
enum cvd_peer_type {
    CVD_PEER_ERROR = 1,        /* payload: int32 errno (network order) + message text */
    CVD_PEER_PING = 2,         /* empty -> empty */
    CVD_PEER_STATS = 3,        /* empty -> JSON text of node stats (peer helper) */
    CVD_PEER_KEYS = 0x0100,    /* join: empty -> keys payload (cluster helper) */
    CVD_PEER_KEK = 0x0101,     /* rotation: u32 gen -> one KEK (rotation helper) */
    /* A per-volume admin request for the node holding the volume's data:
     * JSON {"actor","method","url","body"} -> {"status","body"}
     * (admin/admin-forward.c). */
    CVD_PEER_ADMIN = 0x0102,
};

/* A handler answers one request from an authenticated member peer.
 * type 0 answers with the request's type. */
struct cvd_peer_reply { uint16_t type; void *data; size_t len; int secure; };
/* data: malloc'ed, or cv_secmem_alloc'ed when secure (then wiped and freed
 * as such).  The request req is in locked memory, wiped after the handler
 * returns.  Return <0 to answer CVD_PEER_ERROR with cv_last_error() (then
 * reply is ignored, and freed if set).  Handlers run on the connection's
 * thread: one at a time per connection, many at once across them. */
typedef int (*cvd_peer_handler)(void *arg, const char *peer, const void *req,
                                size_t len, struct cvd_peer_reply *reply);

/* Is name a member that may talk to us now (Joining or Member)?
 * CVD_PEER_MEMBER yes; CVD_PEER_NOT_MEMBER no (unknown name);
 * CVD_PEER_REMOVED no, it was removed (counted apart); <0 cannot tell
 * (the store unreachable: refused too, counted as unverified). */
enum { CVD_PEER_NOT_MEMBER = 0, CVD_PEER_MEMBER = 1, CVD_PEER_REMOVED = 2 };
typedef int (*cvd_peer_member_fn)(void *arg, const char *name);

/* The member check from the metadata store (peer-members.c): arg is the
 * struct cvd; node_get's state decides, so a single node on SQLite (which
 * has no nodes) refuses every peer. */
int cvd_peer_meta_member(void *arg, const char *name);

/* Listens on cfg.peer_listen (HOST:PORT, "[V6]:PORT", as nbd-listen);
 * refuses, saying why, without cfg.etcd_endpoints or cfg.peer_tls_dir, or
 * when the certificate cannot be read.  Registers PING and STATS.  member
 * NULL means cvd_peer_meta_member with d.  d->metrics counts (may be NULL). */
int cvd_peer_start(struct cvd *d, cvd_peer_member_fn member, void *arg,
                   struct cvd_peer **out);   /* listens on cfg.peer_listen */
/* Registers (or replaces, or with h NULL removes) the handler of type;
 * before or after start.  -ENOSPC past CVD_PEER_MAX_HANDLERS types. */
#define CVD_PEER_MAX_HANDLERS 32
int cvd_peer_handle(struct cvd_peer *p, uint16_t type, cvd_peer_handler h,
                    void *arg);              /* before or after start */
/* Stops listening, closes every connection and waits for their threads
 * (a handler running finishes first).  NULL is ignored. */
void cvd_peer_stop(struct cvd_peer *p);
/* The address the listener is bound to ("127.0.0.1:41234"): with port 0
 * in peer-listen, the one the kernel chose. */
const char *cvd_peer_bound(const struct cvd_peer *p);
/* SIGHUP: the certificate, key and CA again (new connections use them). */
int cvd_peer_reload(struct cvd_peer *p);

/* One request to the node called name at address (HOST:PORT): mutual TLS
 * 1.3 with the certificate in cfg.peer_tls_dir; the server must chain to
 * the cluster CA *and* its certificate name must be name. The answer is
 * read into locked memory (*resp, free with cv_secmem_free(*resp, *len));
 * a CVD_PEER_ERROR answer becomes its errno and message.  Errors name the
 * peer: "peer n2 (127.0.0.12:7400): ...".  Connecting and each read and
 * write time out after CVD_PEER_TIMEOUT_MS (-ETIMEDOUT). */
#define CVD_PEER_TIMEOUT_MS 10000
int cvd_peer_call(struct cvd *d, const char *name, const char *address,
                  uint16_t type, const void *req, size_t len,
                  void **resp, size_t *resp_len, uint16_t *resp_type);
/* The certificate name (CN, else first SAN DNS) of cfg.peer_tls_dir's
 * certificate: a node's name must equal it. */
int cvd_peer_own_name(const char *tls_dir, char *name, size_t len);

#endif

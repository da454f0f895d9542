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
    /* The first frame of a plaintext connection (peer-tls on or off):
     * the caller's node name, id 0 -> empty, or ERROR (refused). */
    CVD_PEER_HELLO = 4,
    CVD_PEER_KEYS = 0x0100,    /* join: empty -> keys payload (cluster helper) */
    CVD_PEER_KEK = 0x0101,     /* rotation: u32 gen -> one KEK (rotation helper) */
    /* A per-volume admin request for the node holding the volume's data:
     * JSON {"actor","method","url","body"} -> {"status","body"}
     * (admin/admin-forward.c). */
    CVD_PEER_ADMIN = 0x0102,
    /* 0x0200..0x02ff: replication (daemon/repl/repl-proto.h). */
    CVD_PEER_REPL_FIRST = 0x0200,
    CVD_PEER_REPL_LAST = 0x02ff,
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
 * peer: "peer n2 (127.0.0.12:7400): ...".  The TCP connect times out
 * after CVD_PEER_CONNECT_MS, the TLS handshake and each read and write
 * after CVD_PEER_TIMEOUT_MS (-ETIMEDOUT). */
#define CVD_PEER_TIMEOUT_MS 10000
/* The TCP connect of every call and stream (peer-client.c's dial), apart
 * from the I/O timeout: a member answers a SYN at once, so a node that
 * has not in 3 s is down or cut off, and an attach dialling it (OPEN)
 * waits this long for it, not CVD_PEER_TIMEOUT_MS (docs/replication.md,
 * "Timeouts").  Within the caller's deadline, which also bounds the
 * handshake after it. */
#define CVD_PEER_CONNECT_MS 3000
int cvd_peer_call(struct cvd *d, const char *name, const char *address,
                  uint16_t type, const void *req, size_t len,
                  void **resp, size_t *resp_len, uint16_t *resp_type);
/* The certificate name (CN, else first SAN DNS) of cfg.peer_tls_dir's
 * certificate: a node's name must equal it. */
int cvd_peer_own_name(const char *tls_dir, char *name, size_t len);
/* The host of peer_listen ("HOST:PORT", "[V6]:PORT") when it names one
 * address, else "" (none, a wildcard, a malformed spec): the address this
 * node's own connections come from, to peers and to etcd, so that each
 * node's traffic is told apart by its address (a firewall on a
 * multi-homed host; the partition test's nftables rules). */
void cvd_peer_own_host(const char *peer_listen, char *host, size_t len);


/* ---- Replication's transport (peer-stream.c) ---------------------------
 *
 * peer-tls (cfg, changeable by SIGHUP and POST /v1/node/peer-tls):
 *   off      dials plaintext; accepts plaintext and TLS
 *   on       dials TLS;       accepts plaintext and TLS
 *   require  dials TLS;       accepts TLS only (the default)
 * so a cluster moves from off to require node by node: every node to on,
 * then every node to require (docs/replication.md).  A plaintext
 * connection starts with a HELLO naming the member; it is accepted only
 * from that member's registered host, and carries only the types whose
 * handler was registered with CVD_PEER_PLAIN_OK (replication's, which
 * move ciphertext only); keys, KEKs and admin requests need TLS always. */
/* REQUIRE is 0: a zeroed configuration is the safe default. */
enum cvd_peer_tls { CVD_PEER_TLS_REQUIRE = 0, CVD_PEER_TLS_ON, CVD_PEER_TLS_OFF };
/* "off", "on", "require"; parse: -EINVAL with a message. */
const char *cvd_peer_tls_name(enum cvd_peer_tls m);
int cvd_peer_tls_parse(const char *s, enum cvd_peer_tls *out);
/* Changes the mode of the running port: new connections (both ways)
 * follow it; open streams made under another mode report
 * cvd_peer_stream_stale from now on, so their owners replace them; under
 * require, accepted plaintext connections are closed.  Logged, audited by
 * the caller, and counted (metrics: peer sessions by kind). */
int cvd_peer_set_tls(struct cvd_peer *p, enum cvd_peer_tls mode);
enum cvd_peer_tls cvd_peer_get_tls(const struct cvd_peer *p);

/* Handler flags (cvd_peer_handle_flags).  BULK: the request is in plain
 * heap memory, not locked memory, and the reply is never secure (it moves
 * ciphertext: up to CVD_PEER_MAX_PAYLOAD per frame would not fit under
 * RLIMIT_MEMLOCK).  PLAIN_OK: may be called on a plaintext connection. */
#define CVD_PEER_BULK 1u
#define CVD_PEER_PLAIN_OK 2u
/* QUICK (with BULK): the handler does not wait on a disk (no sync), so
 * answers to the requests before it may wait while it runs, and its own
 * may wait for the next requests' (one write for them all).  Any other
 * handler sends what waits before it runs. */
#define CVD_PEER_QUICK 4u
int cvd_peer_handle_flags(struct cvd_peer *p, uint16_t type,
                          cvd_peer_handler h, void *arg, unsigned flags);

/* A stream: one persistent connection to one member (name at address),
 * TLS or not as the mode says when it is opened, with requests pipelined:
 * sent in order, answered in order, many in flight.  For replication,
 * which sends every write of a volume to each replica over one stream per
 * peer. */
struct cvd_peer_stream;
/* Called once per request, on the stream's reader thread: err 0 with the
 * answer (type, and the payload, valid only during the call), or a
 * negative errno with cv_error's message naming the peer (the answer
 * was CVD_PEER_ERROR: its errno; the stream broke or the request timed
 * out: -ECONNRESET, -ETIMEDOUT, ...; the stream was closed: -ECANCELED).
 * Must not block long nor call the stream's send. */
typedef void (*cvd_peer_done_fn)(void *arg, int err, uint16_t type,
                                 const void *resp, size_t len);
/* Connects now (the TLS handshake included), with CVD_PEER_TIMEOUT_MS
 * in all, the TCP connect within CVD_PEER_CONNECT_MS of it. */
int cvd_peer_stream_open(struct cvd *d, const char *name,
                         const char *address, struct cvd_peer_stream **out);
/* Sends one request whose payload is the iovcnt parts of iov (at most 3
 * parts, CVD_PEER_MAX_PAYLOAD in all), waiting while
 * CVD_PEER_STREAM_DEPTH are in flight.  done gets its answer; the request
 * fails with -ETIMEDOUT when no answer came within timeout_ms (0:
 * CVD_PEER_TIMEOUT_MS), and then the stream is broken: every request in
 * flight fails and later sends fail at once.  A failed write fails the
 * request through done as well.  Returns 0 once the frame is written or
 * the stream broke, so the parts may be reused (done will be called), or
 * a negative errno (done will not be called).  Thread-safe. */
#define CVD_PEER_STREAM_DEPTH 256
struct iovec;
int cvd_peer_stream_send(struct cvd_peer_stream *s, uint16_t type,
                         const struct iovec *iov, int iovcnt,
                         unsigned timeout_ms, cvd_peer_done_fn done,
                         void *arg);
/* As cvd_peer_stream_send, but returns once the request is queued: while
 * another sender writes, it writes this frame too, with its own.  The
 * parts must stay valid until done is called. */
int cvd_peer_stream_post(struct cvd_peer_stream *s, uint16_t type,
                         const struct iovec *iov, int iovcnt,
                         unsigned timeout_ms, cvd_peer_done_fn done,
                         void *arg);
/* One request and its answer, as cvd_peer_call but on the stream: *resp
 * malloc'ed (free()). */
int cvd_peer_stream_call(struct cvd_peer_stream *s, uint16_t type,
                         const void *req, size_t len, unsigned timeout_ms,
                         void **resp, size_t *resp_len);
/* 1 once it broke (then only close it). */
int cvd_peer_stream_broken(const struct cvd_peer_stream *s);
/* 1 once the port's mode changed since it was opened: send no more on
 * it; wait for what is in flight (cvd_peer_stream_drain), then close it
 * and open a new one. */
int cvd_peer_stream_stale(const struct cvd_peer_stream *s);
/* Waits until nothing is in flight (answered or failed). */
void cvd_peer_stream_drain(struct cvd_peer_stream *s);
int cvd_peer_stream_tls(const struct cvd_peer_stream *s);  /* 1: TLS */
/* Fails what is in flight with -ECANCELED, closes, joins the reader. */
void cvd_peer_stream_close(struct cvd_peer_stream *s);

#endif

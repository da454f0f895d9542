/* Shared by the peer port's files: TLS I/O with deadlines and frames
 * (peer-io.c), the server (peer-server.c), refusals (peer-refuse.c), the
 * built-in handlers (peer-handlers.c) and the client (peer-client.c).
 * Internal to daemon/peer/. */
#ifndef CRYPTVOLD_PEER_INTERNAL_H
#define CRYPTVOLD_PEER_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "peer.h"
#include "log.h"
#include "metrics/metrics.h"
#include "tls/tls.h"

/* Bounds, constants rather than settings: a peer port serves a handful of
 * nodes.  Connections at once (each a thread, each may hold a payload of
 * up to 16 MiB in locked memory); the whole TLS handshake; a connection
 * with no request. */
#define PEER_MAX_CONNS 64
#define PEER_HANDSHAKE_MS 10000
#define PEER_IO_MS CVD_PEER_TIMEOUT_MS
#define PEER_IDLE_MS 60000
#define PEER_LINGER_MS 500      /* reading what a refused peer sent */
#define PEER_MAX_LISTEN 8
#define PEER_ADDR_MAX 64        /* a numeric host, IPv6 with a scope */
#define PEER_ERROR_TEXT_MAX 1024
/* OpenSSL's read-ahead buffer: many records per read(2) when a stream's
 * frames are large (the default takes one 16 KiB record per call). */
#define PEER_READ_BUFFER (256u << 10)

/* One stream on a non-blocking socket, TLS (ssl set) or plaintext (ssl
 * NULL); every call ends by deadline.  A stream's reader and writers
 * (peer-stream.c) each have their own peer_io on one SSL: ssl_lock then
 * serialises every SSL call (OpenSSL allows one at a time per SSL object,
 * and a non-blocking call never holds it while waiting), and wake_fd, when
 * readable, makes a wait look at the deadline again (it may have moved
 * earlier). */
struct peer_io {
    SSL *ssl;
    int fd;
    int64_t deadline;           /* CLOCK_MONOTONIC ms; atomic accesses */
    enum cv_tls_failure fail;   /* why the last SSL_ERROR_SSL happened */
    pthread_mutex_t *ssl_lock;  /* NULL: the SSL is this thread's alone */
    int wake_fd;                /* used when use_wake */
    int use_wake;
    /* Held frames (a served connection's answers, peer_io_hold): written
     * when the next read would wait, when full, or by peer_io_flush.
     * hold says whether the frame being written may wait there. */
    uint8_t *held;
    size_t held_len, held_cap;
    int hold;
};

int64_t peer_now_ms(void);
void peer_io_deadline(struct peer_io *io, int ms);
/* Lowers the deadline to at (never raises it), from another thread. */
void peer_io_deadline_lower(struct peer_io *io, int64_t at);
/* 0, or -ETIMEDOUT, -ECONNRESET (closed), -EBADMSG (a record did not
 * decrypt or authenticate), -EPROTO (any other TLS error; io->fail says
 * which kind), with a message. */
int peer_io_handshake(struct peer_io *io, int server);
int peer_io_read(struct peer_io *io, void *buf, size_t len);
int peer_io_write(struct peer_io *io, const void *buf, size_t len);
struct iovec;
/* The parts in order: one writev on plaintext; on TLS, small parts
 * gathered into one record (fewer records, fewer segments). */
int peer_io_writev(struct peer_io *io, const struct iovec *iov, int n);
/* Answers held from now on, up to cap bytes, while io->hold is set:
 * many answers to pipelined requests leave in one write (one TLS record,
 * one segment, one wake-up of the peer's reader) instead of one each.
 * A read that would wait writes them first, so the peer always gets
 * every answer before we wait for it. */
int peer_io_hold(struct peer_io *io, size_t cap);
/* The held frames written now (by a deadline of PEER_IO_MS). */
int peer_io_flush(struct peer_io *io);
void peer_io_hold_free(struct peer_io *io);
/* Bytes already read and buffered (TLS), so a poll would not show them. */
int peer_io_pending(struct peer_io *io);
/* close_notify, without waiting for the peer's. */
void peer_io_close(struct peer_io *io);

struct peer_hdr {
    uint16_t type, flags;
    uint32_t len, id;
};
void peer_hdr_pack(uint8_t out[CVD_PEER_HEADER], const struct peer_hdr *h);
/* -EPROTO with a message for a bad magic, flags or length. */
int peer_hdr_unpack(const uint8_t in[CVD_PEER_HEADER], struct peer_hdr *h);
/* A frame: header and payload in one write (one TLS record when small). */
int peer_write_frame(struct peer_io *io, uint16_t type, uint32_t id,
                     const void *data, size_t len);
/* A frame whose payload is the n parts of iov (at most
 * CVD_PEER_MAX_PAYLOAD in all). */
int peer_write_framev(struct peer_io *io, uint16_t type, uint32_t id,
                      const struct iovec *iov, int n);
/* An ERROR frame: errno (positive) and text. */
int peer_write_error(struct peer_io *io, uint32_t id, int err,
                     const char *text);
/* A received ERROR payload as its negative errno, the message set to its
 * text (after "who: " when who is set). */
int peer_error_of(const char *who, const uint8_t *data, size_t len);

/* Host and port of "HOST:PORT", "[V6]:PORT" (what = the option's name
 * for messages). */
int peer_split_hostport(const char *what, const char *spec, char *host,
                        size_t hlen, const char **port);
/* "127.0.0.1:4000" / "[::1]:4000", and the host alone. */
void peer_addr_name(const void *sa, unsigned len, char *buf, size_t blen,
                    char host[PEER_ADDR_MAX]);

/* Refusals: counted always, logged at most once a minute per peer (its
 * host, or its name) and reason, saying how many were not logged. */
#define PEER_LOG_SLOTS 64
struct peer_refusals {
    pthread_mutex_t lock;
    struct {
        char key[PEER_ADDR_MAX + 1 + CV_TLS_NAME_MAX + 1];
        enum cvd_peer_refusal why;
        int64_t logged_ms;
        unsigned long quiet;
    } slot[PEER_LOG_SLOTS];
};
void peer_refusals_init(struct peer_refusals *r);
void peer_refusals_destroy(struct peer_refusals *r);
void peer_refuse(struct peer_refusals *r, struct cvd_metrics *m,
                 enum cvd_peer_refusal why, const char *host,
                 const char *peer, const char *name, const char *detail);

struct peer_handler {
    uint16_t type;
    unsigned flags;             /* CVD_PEER_BULK, CVD_PEER_PLAIN_OK */
    cvd_peer_handler fn;
    void *arg;
};

/* One accepted connection (peer-conn.c), on its own thread. */
struct peer_conn {
    struct cvd_peer *p;
    struct peer_io io;
    char host[PEER_ADDR_MAX];   /* the address alone: refusals' rows */
    char addr[PEER_ADDR_MAX + 8];   /* "host:port" for logs */
    char name[CV_TLS_NAME_MAX + 1]; /* the member, once accepted */
    int session;                /* the TLS handshake succeeded */
    uint8_t *bulk;              /* BULK requests' buffer, reused */
    size_t bulk_cap;
    int linger;                 /* refused: drain its input before close */
    int plain;                  /* a plaintext session (atomic) */
    struct peer_conn *prev, *next;
};

struct cvd_peer {
    struct cvd *d;
    cvd_peer_member_fn member;
    void *member_arg;
    struct cv_tls *server_tls;  /* calls make their own (peer-client.c) */
    int listen_fd[PEER_MAX_LISTEN];
    int nlisten;
    char bound[PEER_ADDR_MAX + 8];
    int wake[2];
    pthread_t accept_thread;
    int accept_started;
    struct peer_refusals refusals;
    struct cvd_ratelimit rl;    /* other lines a stranger can cause */
    /* The connections, their count and stopping: under lock; idle is
     * signalled when the last one ends. */
    pthread_mutex_t lock;
    pthread_cond_t idle;
    struct peer_conn *conns;
    unsigned nconns;
    int stopping;
    /* The dispatch table, read per request under hlock. */
    pthread_mutex_t hlock;
    struct peer_handler handlers[CVD_PEER_MAX_HANDLERS];
    unsigned nhandlers;
    /* peer-tls: the mode, and a generation raised by every change (a
     * stream opened under another is stale); atomic accesses. */
    int tls_mode;
    unsigned tls_gen;
};

/* The mode now, and its generation (peer-tls.c). */
enum cvd_peer_tls peer_tls_mode(const struct cvd_peer *p, unsigned *gen);

/* Serves fd (accepted from sa) on a thread of its own; takes fd. */
void peer_conn_start(struct cvd_peer *p, int fd, const void *sa,
                     unsigned salen);
/* The handler of type, copied (fn NULL: none). */
struct peer_handler peer_handler_of(struct cvd_peer *p, uint16_t type);

/* A connection we open to the member name at address (peer-client.c):
 * dialled with TCP_NODELAY, then the TLS handshake checking the server's
 * certificate is name's, or (plain) a HELLO naming us.  Counted as a
 * session of name.  cvd_peer_call uses one per call; streams keep one. */
struct peer_link {
    struct cvd *d;
    const char *name, *address;
    char host[256];
    struct peer_io io;
    struct cv_tls *tls;         /* made for this link */
    int session;
    int plain;
};
/* Both without the "peer NAME (ADDRESS): " prefix; by io.deadline. */
int peer_link_open(struct peer_link *l, int plain);
void peer_link_close(struct peer_link *l);
/* TCP_NODELAY: a frame goes out when written (requests are pipelined,
 * answers small). */
void peer_nodelay(int fd);

/* Plaintext (peer-plain.c).  The client's HELLO on l (dialled); the
 * server's answer to one (0 admitted, <0 refused and counted); a request
 * of a type that needs TLS refused (<0, the connection ends); a switch to
 * require shuts every plaintext connection down. */
int peer_plain_hello(struct peer_link *l);
int peer_plain_accept(struct peer_conn *c);
struct peer_hdr;
int peer_plain_refuse_type(struct peer_conn *c, const struct peer_hdr *h);
void peer_plain_close_all(struct cvd_peer *p);

/* PING and STATS (peer-handlers.c). */
int peer_builtin_handlers(struct cvd_peer *p);

#endif

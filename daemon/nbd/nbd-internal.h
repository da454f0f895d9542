/* What the NBD server's files share: the server, one client connection,
 * and the two phases a connection goes through (nbd-handshake.c, then
 * nbd-transmit.c).  Not for use outside daemon/nbd-*.c. */
#ifndef CRYPTVOLD_NBD_INTERNAL_H
#define CRYPTVOLD_NBD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "export/export.h"
#include "log.h"

#include "nbd-conn.h"
#include "nbd/nbd-proto.h"
#include "volumes/access.h"

struct cvd;
struct cvd_export;
struct cvd_volume_metrics;

#define NBD_MAX_LISTEN 8
/* Request worker threads per connection when the configuration says 0,
 * as nbdkit's parallel thread model. */
#define NBD_DEFAULT_THREADS 16
/* Small stacks: 64 connections of 17 threads must not cost gigabytes. */
#define NBD_THREAD_STACK (256u * 1024)
/* Room before a request buffer's data for a reply header; a cache line. */
#define NBD_BUF_HEADROOM 64

struct nbd_client;
struct nbd_budget;
struct nbd_pool;

struct cvd_nbd {
    struct cvd *d;
    int listen_fd[NBD_MAX_LISTEN];
    int nlisten;
    char *unix_path;            /* unlinked at stop */
    char bound[NBD_MAX_LISTEN][96]; /* the TCP addresses, as clients write them */
    int nbound;
    int wake[2];                /* a pipe that stops the accept thread */
    pthread_t accept_thread;
    int accept_started;
    unsigned threads;           /* workers per connection */

    pthread_mutex_t lock;       /* the client list; not on the data path */
    pthread_cond_t idle;        /* the last client is gone */
    struct nbd_client *clients;
    int stopping;

    /* Bounds (nbd-limits.c), from d->cfg.bounds; counts under lock. */
    struct cvd_ratelimit rl;    /* every per-connection warning */
    unsigned max_conns, max_conns_host, nclients;
    int spare_fd;               /* given up to accept when out of fds */
    pthread_t reaper;           /* handshake deadlines, idle timeouts */
    int reaper_started;
    pthread_cond_t reap;        /* a client came, or stop */
    struct nbd_budget *budget;  /* request memory, daemon-wide */
};

/* Why the reaper closed a connection. */
enum nbd_expiry { NBD_EXPIRED_NO, NBD_EXPIRED_HANDSHAKE, NBD_EXPIRED_IDLE };

struct nbd_client {
    struct cvd_nbd *srv;
    struct nbd_client *prev, *next;
    struct cvd_conn conn;
    char host[80];              /* the peer's address without the port (at least nbd-server.c's HOST_MAX) */
    int is_unix;

    /* For the reaper: under srv->lock, but for the atomics. */
    int transmitting;           /* 0: in the handshake */
    int64_t deadline_ms;        /* the handshake's end (monotonic) */
    atomic_llong last_ms;       /* last request read or reply sent */
    atomic_int expired;         /* enum nbd_expiry */
    struct nbd_pool *pool;      /* request buffers (nbd-limits.c) */

    /* Negotiated in the handshake. */
    int no_zeroes;
    int structured;
    int meta;                   /* base:allocation selected ... */
    char *meta_export;          /* ... for this export name */
    unsigned nopts;
    struct cvd_export *export;
    struct cvd_volume_metrics *vmetrics;    /* the export's counters */
    struct nbd_session_info info;
    struct cvd_export_holder holder;    /* on export's list while set */

    /* For the admin API (nbd-sessions.c): when it connected, and once
     * transmitting (under srv->lock) the volume it serves. */
    int64_t since;
    char volume[CVD_NAME_MAX + 1];

    /* Who the client proved to be (nbd-access.c). */
    struct cvd_client_ids who;
    int refused_anonymous;      /* its audit event is written */
};

/* What nbd_handshake returns when it does not fail. */
#define NBD_HS_TRANSMIT 1       /* c->export is set: serve it */
#define NBD_HS_END      2       /* the client aborted */

/* Runs option haggling.  Returns NBD_HS_*, or a negative errno with a
 * message for the log (the connection is then closed). */
int nbd_handshake(struct nbd_client *c);

/* Serves requests until the client disconnects or the server stops; every
 * request read is answered (if the socket allows) before this returns.
 * Returns 0 on a clean NBD_CMD_DISC, else a negative errno. */
int nbd_transmit(struct nbd_client *c);

/* --- nbd-limits.c ------------------------------------------------------ */

int64_t nbd_now_ms(void);
/* Limits from the configuration and RLIMIT_NOFILE, the spare descriptor,
 * the reaper thread.  Errors say what failed. */
int nbd_limits_start(struct cvd_nbd *n);
/* After the accept thread stopped; before nbd_free. */
void nbd_limits_stop(struct cvd_nbd *n);
/* Adds c to the client list if the connection limits allow it; -EBUSY
 * with a message if not (the caller closes it). */
int nbd_admit(struct cvd_nbd *n, struct nbd_client *c);
/* accept() failed with EMFILE or ENFILE: the pending client is taken with
 * the spare descriptor and closed, so the listener does not stay readable
 * (a busy loop) while descriptors are short. */
void nbd_out_of_fds(struct cvd_nbd *n, int lfd, int err);
/* The handshake is over: from now on only the idle timeout applies. */
void nbd_transmitting(struct nbd_client *c);

/* Request buffers: bytes held by a connection's requests, bounded per
 * connection (nbd-buffer-limit) and daemon-wide (nbd-buffer-total).  A
 * buffer comes from the connection's pool or is allocated; when either
 * bound is reached the reader waits for requests in flight to finish
 * (backpressure: no more requests are read), never grows past it.  Pools
 * of idle connections are freed (by the reaper, or by a connection that
 * needs the room). */
int nbd_pool_new(struct nbd_client *c);
void nbd_pool_free(struct nbd_client *c);
/* A buffer of at least len bytes after NBD_BUF_HEADROOM bytes (room for a
 * reply header), page-aligned; *cap is what it holds.  Waits for room.
 * -ECONNRESET when the connection is closing, or -ENOMEM, with a
 * message. */
int nbd_buf_get(struct nbd_client *c, size_t len, void **buf, size_t *cap);
/* Back to the pool once the reply is sent. */
void nbd_buf_put(struct nbd_client *c, void *buf, size_t cap);
/* Wakes readers waiting for room (the connection is closing). */
void nbd_pool_wake(struct nbd_client *c);

/* The transmission flags for export e on this connection. */
uint16_t nbd_tflags(const struct nbd_client *c, const struct cvd_export *e);

#endif

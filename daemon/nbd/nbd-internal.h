/* What the NBD server's files share: the server, one client connection,
 * and the two phases a connection goes through (nbd-handshake.c, then
 * nbd-transmit.c).  Not for use outside daemon/nbd-*.c. */
#ifndef CRYPTVOLD_NBD_INTERNAL_H
#define CRYPTVOLD_NBD_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "nbd-conn.h"
#include "nbd/nbd-proto.h"
#include "volumes/access.h"

struct cvd;
struct cvd_export;

#define NBD_MAX_LISTEN 8
/* Request worker threads per connection when the configuration says 0,
 * as nbdkit's parallel thread model. */
#define NBD_DEFAULT_THREADS 16
/* Small stacks: 64 connections of 17 threads must not cost gigabytes. */
#define NBD_THREAD_STACK (256u * 1024)

struct nbd_client;

struct cvd_nbd {
    struct cvd *d;
    int listen_fd[NBD_MAX_LISTEN];
    int nlisten;
    char *unix_path;            /* unlinked at stop */
    int wake[2];                /* a pipe that stops the accept thread */
    pthread_t accept_thread;
    int accept_started;
    unsigned threads;           /* workers per connection */

    pthread_mutex_t lock;       /* the client list; not on the data path */
    pthread_cond_t idle;        /* the last client is gone */
    struct nbd_client *clients;
    int stopping;
};

struct nbd_client {
    struct cvd_nbd *srv;
    struct nbd_client *prev, *next;
    struct cvd_conn conn;

    /* Negotiated in the handshake. */
    int no_zeroes;
    int structured;
    int meta;                   /* base:allocation selected ... */
    char *meta_export;          /* ... for this export name */
    unsigned nopts;
    struct cvd_export *export;
    struct nbd_session_info info;

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

/* The transmission flags for export e on this connection. */
uint16_t nbd_tflags(const struct nbd_client *c, const struct cvd_export *e);

#endif

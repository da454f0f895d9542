/* The NBD server: fixed newstyle handshake with STARTTLS, then the
 * transmission phase with pipelined requests served concurrently. */
#ifndef CRYPTVOLD_NBD_SERVER_H
#define CRYPTVOLD_NBD_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "meta/meta.h"
#include "volumes/access.h"

struct cvd;
struct cvd_nbd;

/* Listens on d->cfg.nbd_listen and/or d->cfg.nbd_unix and serves the
 * exports of d->reg, with TLS per d->cfg.tls_mode and d->tls.  Returns once
 * listening (errors name the address), serving from its own threads. */
int cvd_nbd_start(struct cvd *d, struct cvd_nbd **out);

/* Serves one client already connected on fd (a socket) on the calling
 * thread, as a connection the accept thread takes is served (limits,
 * handshake, transmission, logs), and returns once it has ended and fd is
 * closed.  The daemon only accepts; the fuzzers (fuzz/fuzz-server.c) feed
 * the real server through this, over a socketpair. */
void cvd_nbd_serve_fd(struct cvd_nbd *n, int fd);

/* Stops accepting, lets requests in flight finish and be answered, closes
 * every connection and releases its exports. */
void cvd_nbd_stop(struct cvd_nbd *n);

/* What the admin API shows of one connection serving a volume (volume
 * info and list, status). */
struct cvd_nbd_session {
    char volume[CVD_NAME_MAX + 1];
    char peer[128];             /* "127.0.0.1:40312", "unix:pid=9,uid=0" */
    char identity[CVD_IDENTITY_TEXT_MAX + 1];   /* "cn:x", "uid:0"; "" none */
    int tls;
    int64_t since;              /* connected at, epoch seconds */
};

/* The sessions serving volume (NULL: any) into *out (malloc'ed, *n of
 * them), in the order they connected; none while the server is not
 * running.  *handshaking (may be NULL): connections not serving a volume
 * yet. */
int cvd_nbd_sessions(struct cvd *d, const char *volume,
                     struct cvd_nbd_session **out, size_t *n,
                     size_t *handshaking);

/* The addresses listened on, as clients write them ("127.0.0.1:10809",
 * "[::1]:10809"; the unix socket is d->cfg.nbd_unix), up to max. */
#define CVD_NBD_ADDR_MAX 96
size_t cvd_nbd_listeners(struct cvd *d, char (*addrs)[CVD_NBD_ADDR_MAX],
                         size_t max);

#endif

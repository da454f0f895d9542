/* The NBD server: fixed newstyle handshake with STARTTLS, then the
 * transmission phase with pipelined requests served concurrently. */
#ifndef CRYPTVOLD_NBD_SERVER_H
#define CRYPTVOLD_NBD_SERVER_H

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

#endif

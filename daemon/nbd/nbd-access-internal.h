/* Authorization in the NBD handshake (nbd-access.c).  Internal to
 * daemon/nbd/. */
#ifndef CRYPTVOLD_NBD_ACCESS_H
#define CRYPTVOLD_NBD_ACCESS_H

#include <stddef.h>

struct cvd;
struct nbd_client;

/* A client of the unix socket: identity uid:N, authenticated. */
void nbd_access_unix_peer(struct nbd_client *c, unsigned uid);
/* After STARTTLS: the PSK identity or the verified certificate's names. */
void nbd_access_tls_peer(struct nbd_client *c);
/* The audit log's actor: "nbd:127.0.0.1:4711 CN=tenant-a". */
void nbd_access_actor(const struct nbd_client *c, char *buf, size_t len);

/* 0 if the client may name volumes at all (authenticated, or anonymous
 * clients are allowed); else -EACCES with a message for the client, and
 * one audit event per connection. */
int nbd_access_authenticated(struct nbd_client *c);
/* 0 if the client may open volume name.  Otherwise -EACCES with the same
 * message whether the volume is missing or refused, and for a refusal an
 * audit event volume.access.  *missing (if not NULL) tells the two apart
 * for the metrics, which the operator reads: 1 missing, 0 refused (or
 * the store failed). */
int nbd_access_volume(struct nbd_client *c, const char *name, int *missing);
/* 1 if NBD_OPT_LIST may show name to the client. */
int nbd_access_visible(struct nbd_client *c, const char *name);

/* Start-up warnings: anonymous clients allowed, NBD over TCP without
 * required TLS. */
void nbd_access_warn_config(struct cvd *d);

#endif

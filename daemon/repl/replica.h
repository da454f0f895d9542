/* The replica side's entry points (replica-*.c; docs/replication.md, "On
 * a replica"), for repl.c, the writer's attach and the unit test, which
 * calls the handlers as the peer port would. */
#ifndef CRYPTVOLD_REPLICA_H
#define CRYPTVOLD_REPLICA_H

#include <stddef.h>
#include <stdint.h>

struct cvd;
struct cvd_peer_reply;

/* Registers the handler of every REPL_* type on d->peer (none when it is
 * NULL) with CVD_PEER_BULK | CVD_PEER_PLAIN_OK; stop unregisters them,
 * waits for those running and closes every replica. */
int repl_replica_start(struct cvd *d);
void repl_replica_stop(struct cvd *d);
/* One request of type (repl-proto.h) as the peer port hands it to the
 * handler: 0 with *reply set (type 0: the request's), or a negative errno
 * with cv_error's message. */
int repl_replica_handle(struct cvd *d, uint16_t type, const void *req,
                        size_t len, struct cvd_peer_reply *reply);
/* This node becomes volume's writer at epoch (attach): the replica side
 * records the epoch durably (older requests are refused from now on, also
 * after a restart) and closes its own open of the chain, which the
 * registry opens now.  -ESTALE if a newer epoch was seen. */
int repl_replica_fence(struct cvd *d, const char *volume, uint64_t epoch);

#endif

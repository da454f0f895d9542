/* Missed-region records: which regions of a volume one replica node
 * misses, kept by every other replica (DRBD's bitmap), so a replica that
 * returns catches up by copying only them.  One bit per
 * REPL_REGION bytes of the raw image, in a file
 * DATA-DIR/replicas/VOLUME/missed-NODE that a set bit reaches durably
 * (pwrite + fdatasync) before repl_missed_mark returns: a crash loses no
 * record.  Also the writer's activity log (node REPL_ACTIVE_NODE).
 * Thread-safe. */
#ifndef CRYPTVOLD_REPL_MISSED_H
#define CRYPTVOLD_REPL_MISSED_H

#include <stdint.h>

#define REPL_REGION (1u << 20)

struct repl_missed;

/* DATA-DIR/replicas/VOLUME (made if missing, 0700), for the records and
 * the replica's epoch. */
int repl_state_dir(const char *data_dir, const char *volume, char *buf,
                   unsigned long len);
/* Opens (making it empty when missing) node's record under dir. */
int repl_missed_open(const char *dir, const char *node,
                     struct repl_missed **out);
/* Marks every region [off, off+len) touches; durable on return. */
int repl_missed_mark(struct repl_missed *m, uint64_t off, uint64_t len);
/* Clears the regions [off, off+len) covers wholly. */
int repl_missed_clear(struct repl_missed *m, uint64_t off, uint64_t len);
/* Bytes of the regions marked. */
uint64_t repl_missed_bytes(struct repl_missed *m);
/* The first marked run at or after from: 0 and *off, *len; 1 if none. */
int repl_missed_next(struct repl_missed *m, uint64_t from, uint64_t *off,
                     uint64_t *len);
void repl_missed_close(struct repl_missed *m);
/* Removes node's record (a replica rebuilt, or gone). */
int repl_missed_remove(const char *dir, const char *node);

/* The newest epoch this node has seen for the volume whose state dir is
 * dir (0 if none), and recording a newer one durably. */
int repl_epoch_get(const char *dir, uint64_t *epoch);
int repl_epoch_put(const char *dir, uint64_t epoch);

#endif

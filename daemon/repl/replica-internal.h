/* The replica side (replica-*.c): the writer's requests (repl-proto.h)
 * applied to this node's replicas.  replica-table.c keeps the open ones
 * and fences by epoch, replica-io.c applies the data path's requests,
 * replica-rebuild.c opening, rebuilding, deleting and status. */
#ifndef CRYPTVOLD_REPLICA_INTERNAL_H
#define CRYPTVOLD_REPLICA_INTERNAL_H

#include "repl-internal.h"

#include <limits.h>
#include <pthread.h>
#include <sys/types.h>
#include <time.h>

struct cvd_peer_reply;

/* An idle replica (no request for this long) is closed. */
#define REPLICA_IDLE_S 600
#define REPLICA_MAX_RECORDS 16          /* missed-NODE records open at once */
#define REPLICA_REBUILDING ".rebuilding"
#define REPLICA_REPLACED ".replaced"

struct replica_record {
    char node[CVD_NAME_MAX + 1];
    struct repl_missed *m;
};

/* One volume this node holds (or is asked about).  lock: shared for a
 * request that uses c as it is, exclusive to raise the epoch or to
 * replace c (open, rebuild, commit, close, delete), so no request of an
 * older epoch runs once a newer one is recorded. */
struct replica {
    struct replica *next;
    struct replica_table *t;
    unsigned refs;              /* the table's lock */
    time_t used;                /* the table's lock */
    int gone;                   /* deleted: out of the table */
    pthread_rwlock_t lock;
    char volume[CVD_NAME_MAX + 1];
    char path[PATH_MAX];        /* DATA-DIR/volumes/NAME */
    char state[PATH_MAX];       /* DATA-DIR/replicas/NAME */
    uint64_t epoch;             /* the newest seen (the epoch file's) */
    int epoch_read;
    struct cv_chain *c;         /* NULL: not open */
    int rebuilding;             /* c is NAME.rebuilding */
    pthread_mutex_t rec_lock;
    struct replica_record rec[REPLICA_MAX_RECORDS];
    unsigned nrec;
};

struct replica_table {
    struct cvd *d;
    struct replica_table *next; /* the tables of every struct cvd */
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* with lock: the reaper's wake-up */
    struct replica *list;
    unsigned active;            /* handlers running (tables' lock) */
    pthread_cond_t done;        /* with the tables' lock: active is 0 */
    int stopping;
    pthread_t reaper;
    int has_reaper;
};

/* What a request needs before it runs (replica_enter). */
enum {
    NEED_CHAIN = 1,             /* c open (opened if not) */
    NEED_EXCL = 2,              /* the exclusive hold */
    MAY_BE_ABSENT = 4,          /* no chain dir is not -ENOENT */
};

/* replica-table.c (and replica.h) */
/* Out of the table (deleted): freed when the last request lets go. */
void replica_unlink(struct replica *e);
/* The node's name, for messages. */
const char *replica_node(const struct replica *e);
/* Closes c (flushed) and the records; exclusive hold. */
int replica_close_chain(struct replica *e);
/* Opens NAME.rebuilding if there is one, else NAME; exclusive hold. */
int replica_open_chain(struct replica *e);
/* The record of node, opened if not (state dir made). */
int replica_record(struct replica *e, const char *node,
                   struct repl_missed **out);
void replica_close_records(struct replica *e);
/* "volume db1: replica on node n3: WHAT: " + the last message; r. */
int replica_fail(struct replica *e, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* replica-io.c */
int replica_write(struct replica *e, const struct repl_req *q);
int replica_punch(struct replica *e, const struct repl_req *q);
int replica_flush(struct replica *e, const struct repl_req *q);
int replica_header(struct replica *e, const struct repl_req *q);
int replica_resize(struct replica *e, const struct repl_req *q);
int replica_shape(struct replica *e, const struct repl_req *q);
int replica_mark(struct replica *e, const struct repl_req *q);
int replica_read(struct replica *e, const struct repl_req *q,
                 struct cvd_peer_reply *reply);

/* replica-rebuild.c */
int replica_open(struct replica *e, const struct repl_req *q,
                 struct cvd_peer_reply *reply);
int replica_rebuild(struct replica *e, const struct repl_req *q);
int replica_commit(struct replica *e, const struct repl_req *q);
int replica_delete(struct replica *e, const struct repl_req *q);
int replica_status(struct replica *e, const struct repl_req *q,
                   struct cvd_peer_reply *reply);
int replica_close(struct replica *e, const struct repl_req *q);

#endif

/* The replica side's table of open replicas and its fencing: every
 * request is decoded, its volume's entry found (made on first use), its
 * epoch checked against the newest recorded (older: -ESTALE; newer:
 * recorded durably first, under the exclusive hold, so no request of the
 * older epoch is still running or can start), then the type's function
 * runs.  Replicas nobody used for REPLICA_IDLE_S are closed. */
#include "replica-internal.h"

#include "core/error.h"
#include "daemon.h"
#include "log.h"
#include "peer/peer.h"
#include "store/chain.h"
#include "volumes/volumes-util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The tables by struct cvd: a handler finds its table here (its arg is
 * the struct cvd, which outlives every handler), so a handler the peer
 * port calls after the table is gone finds none. */
static pthread_mutex_t tables_lock = PTHREAD_MUTEX_INITIALIZER;
static struct replica_table *tables;

const char *replica_node(const struct replica *e)
{
    return e->t->d->cfg.node_name ? e->t->d->cfg.node_name : "?";
}

int replica_fail(struct replica *e, int r, const char *fmt, ...)
{
    char what[256], path[PATH_MAX];
    const char *last = cv_last_error(), *colon;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    /* A full disk said short, naming the file (every message of the
     * chain, the records and the epoch starts with it): the writer keeps
     * the reason in the replica set, in 160 bytes. */
    if (r == -ENOSPC && last[0] == '/' && (colon = strstr(last, ": "))) {
        snprintf(path, sizeof path, "%.*s", (int)(colon - last), last);
        return cv_error(r, "volume %s: replica %s: %s: no space left on "
                        "device (%s)", e->volume, replica_node(e), path,
                        what);
    }
    return cv_error_prefix(r, "volume %s: replica %s: %s", e->volume,
                           replica_node(e), what);
}

/* ---- entries ---- */

static struct replica *entry_new(struct replica_table *t, const char *volume)
{
    struct replica *e = calloc(1, sizeof *e);
    char *p;

    if (!e)
        return NULL;
    e->t = t;
    pthread_rwlock_init(&e->lock, NULL);
    pthread_mutex_init(&e->rec_lock, NULL);
    snprintf(e->volume, sizeof e->volume, "%s", volume);
    cvd_volume_path(t->d, volume, e->path, sizeof e->path);
    /* DATA-DIR/replicas/NAME, beside DATA-DIR/volumes/NAME. */
    snprintf(e->state, sizeof e->state, "%s", e->path);
    p = strrchr(e->state, '/');
    if (p && p - e->state >= 8 && !strncmp(p - 8, "/volumes", 8))
        snprintf(p - 8, sizeof e->state - (size_t)(p - 8 - e->state),
                 "/replicas/%s", volume);
    return e;
}

static void entry_free(struct replica *e)
{
    if (!e)
        return;
    if (e->c)
        replica_close_chain(e);
    replica_close_records(e);
    pthread_rwlock_destroy(&e->lock);
    pthread_mutex_destroy(&e->rec_lock);
    free(e);
}

static int entry_get(struct replica_table *t, const char *volume,
                     struct replica **out)
{
    struct replica *e;

    pthread_mutex_lock(&t->lock);
    for (e = t->list; e && strcmp(e->volume, volume); e = e->next)
        ;
    if (!e && (e = entry_new(t, volume))) {
        e->next = t->list;
        t->list = e;
    }
    if (e) {
        e->refs++;
        e->used = time(NULL);
    }
    pthread_mutex_unlock(&t->lock);
    *out = e;
    return e ? 0 : cv_error(-ENOMEM, "volume %s: out of memory", volume);
}

void replica_unlink(struct replica *e)
{
    struct replica_table *t = e->t;
    struct replica **pp;

    pthread_mutex_lock(&t->lock);
    for (pp = &t->list; *pp && *pp != e; pp = &(*pp)->next)
        ;
    if (*pp)
        *pp = e->next;
    e->gone = 1;
    pthread_mutex_unlock(&t->lock);
}

static void entry_put(struct replica *e)
{
    struct replica_table *t = e->t;
    int free_it;

    pthread_mutex_lock(&t->lock);
    e->used = time(NULL);
    free_it = --e->refs == 0 && e->gone;
    pthread_mutex_unlock(&t->lock);
    if (free_it)
        entry_free(e);
}

/* ---- the chain and the records ---- */

int replica_open_chain(struct replica *e)
{
    char rb[PATH_MAX + 16], old[PATH_MAX + 16];
    int r;

    snprintf(rb, sizeof rb, "%s" REPLICA_REBUILDING, e->path);
    snprintf(old, sizeof old, "%s" REPLICA_REPLACED, e->path);
    /* What a commit cut short left: the old chain (the new one is in
     * place, or the rebuild goes on and restarts). */
    if (access(old, F_OK) == 0 && (r = cv_chain_remove(old)) < 0)
        return replica_fail(e, r, "removing the replaced chain");
    e->rebuilding = access(rb, F_OK) == 0;
    r = cv_chain_open(e->rebuilding ? rb : e->path, NULL, 0, &e->c);
    if (r < 0) {
        e->c = NULL;
        return replica_fail(e, r, "opening its chain");
    }
    cvd_debug("volume %s: replica %s: opened%s", e->volume,
              replica_node(e), e->rebuilding ? " (rebuilding)" : "");
    return 0;
}

int replica_close_chain(struct replica *e)
{
    int r = 0;

    if (e->c) {
        r = cv_chain_flush(e->c);
        if (r < 0)
            cvd_warn("volume %s: replica %s: flush at close: %s",
                     e->volume, replica_node(e), cv_last_error());
        cv_chain_close(e->c);
        e->c = NULL;
    }
    return r;
}

int replica_record(struct replica *e, const char *node,
                   struct repl_missed **out)
{
    char dir[PATH_MAX];
    unsigned i;
    int r = 0;

    pthread_mutex_lock(&e->rec_lock);
    for (i = 0; i < e->nrec && strcmp(e->rec[i].node, node); i++)
        ;
    if (i == e->nrec) {
        if (i == REPLICA_MAX_RECORDS)
            r = cv_error(-E2BIG, "more than %d missed-region records",
                         REPLICA_MAX_RECORDS);
        else if ((r = repl_state_dir(e->t->d->cfg.data_dir, e->volume, dir,
                                     sizeof dir)) == 0 &&
                 (r = repl_missed_open(dir, node, &e->rec[i].m)) == 0) {
            snprintf(e->rec[i].node, sizeof e->rec[i].node, "%s", node);
            e->nrec++;
        }
    }
    *out = r == 0 ? e->rec[i].m : NULL;
    pthread_mutex_unlock(&e->rec_lock);
    return r;
}

void replica_close_records(struct replica *e)
{
    pthread_mutex_lock(&e->rec_lock);
    for (unsigned i = 0; i < e->nrec; i++)
        repl_missed_close(e->rec[i].m);
    e->nrec = 0;
    pthread_mutex_unlock(&e->rec_lock);
}

/* ---- fencing ---- */

static int holds_replica(struct replica *e)
{
    char rb[PATH_MAX + 16];

    snprintf(rb, sizeof rb, "%s" REPLICA_REBUILDING, e->path);
    return e->c || access(e->path, F_OK) == 0 || access(rb, F_OK) == 0;
}

static int raise_epoch(struct replica *e, uint64_t epoch)
{
    char dir[PATH_MAX];
    int r;

    if ((r = repl_state_dir(e->t->d->cfg.data_dir, e->volume, dir,
                            sizeof dir)) < 0 ||
        (r = repl_epoch_put(dir, epoch)) < 0)
        return replica_fail(e, r, "epoch %llu", (unsigned long long)epoch);
    cvd_info("volume %s: replica %s: epoch %llu", e->volume,
             replica_node(e), (unsigned long long)epoch);
    e->epoch = epoch;
    return 0;
}

/* Exclusive hold: e->epoch from the file (never lowered). */
static int read_epoch(struct replica *e)
{
    uint64_t v;
    int r;

    if ((r = repl_epoch_get(e->state, &v)) < 0)
        return r;
    if (v > e->epoch)
        e->epoch = v;
    e->epoch_read = 1;
    return 0;
}

/* Under the hold (either): the request's epoch is not older; the node
 * holds the replica (unless MAY_BE_ABSENT). */
static int check(struct replica *e, const struct repl_req *q, unsigned need)
{
    if (q->epoch < e->epoch)
        return cv_error(-ESTALE, "volume %s: epoch %llu is older than %llu: "
                        "another node writes it now", e->volume,
                        (unsigned long long)q->epoch,
                        (unsigned long long)e->epoch);
    if (!(need & MAY_BE_ABSENT) && !holds_replica(e))
        return cv_error(-ENOENT, "node %s holds no replica of volume %s",
                        replica_node(e), e->volume);
    return 0;
}

static void unlock_entry(struct replica *e)
{
    pthread_rwlock_unlock(&e->lock);
}

/* Takes the hold need says, with the epoch checked (and raised when the
 * request's is newer) and the chain opened if need be. */
static int enter(struct replica *e, const struct repl_req *q, unsigned need)
{
    int excl = !!(need & NEED_EXCL), r;

    for (;;) {
        if (excl)
            pthread_rwlock_wrlock(&e->lock);
        else
            pthread_rwlock_rdlock(&e->lock);
        /* Read at first use, under the exclusive hold (a retry below).
         * This node's own writer records its attach's epoch in the file
         * and then raises it here (repl_replica_fence), so no request
         * needs to look at the file again. */
        if (!e->epoch_read) {
            if (!excl) {
                unlock_entry(e);
                excl = 1;
                continue;
            }
            if ((r = read_epoch(e)) < 0)
                goto fail;
        }
        if ((r = check(e, q, need)) < 0)
            goto fail;
        if (q->epoch > e->epoch || ((need & NEED_CHAIN) && !e->c)) {
            if (!excl) {
                unlock_entry(e);
                excl = 1;
                continue;
            }
            if (q->epoch > e->epoch && (r = raise_epoch(e, q->epoch)) < 0)
                goto fail;
            if ((need & NEED_CHAIN) && !e->c &&
                (r = replica_open_chain(e)) < 0)
                goto fail;
        }
        return 0;
    fail:
        unlock_entry(e);
        return r;
    }
}

/* ---- dispatch ---- */

static unsigned needs(uint16_t type)
{
    switch (type) {
    case REPL_OPEN:             /* opens the chain anew itself */
        return NEED_EXCL;
    case REPL_REBUILD:
        return NEED_EXCL | MAY_BE_ABSENT;
    case REPL_DELETE:
        return NEED_EXCL | MAY_BE_ABSENT;
    case REPL_COMMIT:
        return NEED_CHAIN | NEED_EXCL;
    case REPL_CLOSE:
        return NEED_EXCL;
    default:                    /* MARK and CLEAR too: bounded by its size */
        return NEED_CHAIN;
    }
}

static int run(struct replica *e, const struct repl_req *q,
               struct cvd_peer_reply *reply)
{
    switch (q->type) {
    case REPL_OPEN: return replica_open(e, q, reply);
    case REPL_WRITE: return replica_write(e, q);
    case REPL_PUNCH: return replica_punch(e, q);
    case REPL_FLUSH: return replica_flush(e, q);
    case REPL_HEADER: return replica_header(e, q);
    case REPL_RESIZE: return replica_resize(e, q);
    case REPL_SHAPE: return replica_shape(e, q);
    case REPL_MARK: case REPL_CLEAR: return replica_mark(e, q);
    case REPL_READ: return replica_read(e, q, reply);
    case REPL_REBUILD: return replica_rebuild(e, q);
    case REPL_COMMIT: return replica_commit(e, q);
    case REPL_DELETE: return replica_delete(e, q);
    case REPL_STATUS: return replica_status(e, q, reply);
    case REPL_CLOSE: return replica_close(e, q);
    }
    return cv_error(-EBADMSG, "replication: type 0x%04x", q->type);
}

static int handle_in(struct replica_table *t, uint16_t type, const void *req,
                     size_t len, struct cvd_peer_reply *reply)
{
    struct repl_req q;
    struct replica *e;
    int r;

    if ((r = repl_decode(type, req, len, &q)) < 0)
        return r;
    if ((r = entry_get(t, q.volume, &e)) == 0) {
        if ((r = enter(e, &q, needs(type))) == 0) {
            r = run(e, &q, reply);
            unlock_entry(e);
        }
        entry_put(e);
    }
    repl_req_free(&q);
    if (r == 0 && !reply->type)
        reply->type = type;
    return r;
}

static struct replica_table *table_of(struct cvd *d)
{
    struct replica_table *t;

    for (t = tables; t && t->d != d; t = t->next)
        ;
    return t;
}

int repl_replica_handle(struct cvd *d, uint16_t type, const void *req,
                        size_t len, struct cvd_peer_reply *reply)
{
    struct replica_table *t;
    int r;

    pthread_mutex_lock(&tables_lock);
    t = table_of(d);
    if (t && !t->stopping)
        t->active++;
    else
        t = NULL;
    pthread_mutex_unlock(&tables_lock);
    if (!t)
        return cv_error(-ESHUTDOWN, "node %s: replication is stopping",
                        d->cfg.node_name ? d->cfg.node_name : "?");
    r = handle_in(t, type, req, len, reply);
    pthread_mutex_lock(&tables_lock);
    if (--t->active == 0)
        pthread_cond_broadcast(&t->done);
    pthread_mutex_unlock(&tables_lock);
    return r;
}

/* One handler per type: the peer port hands a handler no type. */
#define HANDLER(NAME, TYPE)                                                 \
    static int NAME(void *arg, const char *peer, const void *req,           \
                    size_t len, struct cvd_peer_reply *reply)               \
    {                                                                       \
        (void)peer;                                                         \
        return repl_replica_handle(arg, TYPE, req, len, reply);             \
    }
HANDLER(h_open, REPL_OPEN)
HANDLER(h_write, REPL_WRITE)
HANDLER(h_punch, REPL_PUNCH)
HANDLER(h_flush, REPL_FLUSH)
HANDLER(h_header, REPL_HEADER)
HANDLER(h_resize, REPL_RESIZE)
HANDLER(h_shape, REPL_SHAPE)
HANDLER(h_mark, REPL_MARK)
HANDLER(h_clear, REPL_CLEAR)
HANDLER(h_read, REPL_READ)
HANDLER(h_rebuild, REPL_REBUILD)
HANDLER(h_commit, REPL_COMMIT)
HANDLER(h_delete, REPL_DELETE)
HANDLER(h_status, REPL_STATUS)
HANDLER(h_close, REPL_CLOSE)

static const cvd_peer_handler handlers[] = {
    h_open, h_write, h_punch, h_flush, h_header, h_resize, h_shape, h_mark,
    h_clear, h_read, h_rebuild, h_commit, h_delete, h_status, h_close,
};

/* Writes, punches and reads only reach the page cache (a FUA write
 * syncs, rarely): their answers may wait to leave with the next ones. */
static unsigned handler_flags(uint16_t type)
{
    unsigned f = CVD_PEER_BULK | CVD_PEER_PLAIN_OK;

    if (type == REPL_WRITE || type == REPL_PUNCH || type == REPL_READ)
        f |= CVD_PEER_QUICK;
    return f;
}

/* ---- the idle reaper, start, stop ---- */

static void *reaper(void *arg)
{
    struct replica_table *t = arg;
    struct replica *idle, *e, **pp;
    struct timespec until;

    pthread_mutex_lock(&t->lock);
    while (!t->stopping) {
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 30;
        pthread_cond_timedwait(&t->cond, &t->lock, &until);
        idle = NULL;
        for (pp = &t->list; (e = *pp);) {
            if (e->refs == 0 && time(NULL) - e->used >= REPLICA_IDLE_S) {
                *pp = e->next;
                e->next = idle;
                idle = e;
            } else {
                pp = &e->next;
            }
        }
        pthread_mutex_unlock(&t->lock);
        while ((e = idle)) {
            idle = e->next;
            if (e->c)
                cvd_info("volume %s: replica %s: closed (idle)",
                         e->volume, replica_node(e));
            entry_free(e);
        }
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

static void table_free(struct replica_table *t)
{
    struct replica *e;

    while ((e = t->list)) {
        t->list = e->next;
        entry_free(e);
    }
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
    pthread_cond_destroy(&t->done);
    free(t);
}

int repl_replica_start(struct cvd *d)
{
    struct replica_table *t = calloc(1, sizeof *t);
    unsigned i;
    int r = 0;

    if (!t)
        return cv_error(-ENOMEM, "replication: out of memory");
    t->d = d;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    pthread_cond_init(&t->done, NULL);
    if (pthread_create(&t->reaper, NULL, reaper, t) != 0) {
        table_free(t);
        return cv_error(-EAGAIN, "replication: starting a thread failed");
    }
    t->has_reaper = 1;
    pthread_mutex_lock(&tables_lock);
    t->next = tables;
    tables = t;
    pthread_mutex_unlock(&tables_lock);
    for (i = 0; d->peer && r == 0 && i < sizeof handlers / sizeof *handlers;
         i++)
        r = cvd_peer_handle_flags(d->peer, (uint16_t)(REPL_OPEN + i),
                                  handlers[i], d, handler_flags(
                                      (uint16_t)(REPL_OPEN + i)));
    if (r < 0) {
        repl_replica_stop(d);
        return cv_error_prefix(r, "replication: registering its handlers");
    }
    return 0;
}

void repl_replica_stop(struct cvd *d)
{
    struct replica_table *t, **pp;

    for (unsigned i = 0; d->peer && i < sizeof handlers / sizeof *handlers;
         i++)
        cvd_peer_handle(d->peer, (uint16_t)(REPL_OPEN + i), NULL, NULL);
    pthread_mutex_lock(&tables_lock);
    for (pp = &tables; *pp && (*pp)->d != d; pp = &(*pp)->next)
        ;
    t = *pp;
    if (t) {
        t->stopping = 1;
        /* Handlers still running finish first (their table goes). */
        while (t->active)
            pthread_cond_wait(&t->done, &tables_lock);
        *pp = t->next;
    }
    pthread_mutex_unlock(&tables_lock);
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
    if (t->has_reaper)
        pthread_join(t->reaper, NULL);
    table_free(t);
}

int repl_replica_fence(struct cvd *d, const char *volume, uint64_t epoch)
{
    struct repl_req q = { .type = REPL_CLOSE, .epoch = epoch };
    struct replica_table *t;
    struct replica *e;
    int r;

    pthread_mutex_lock(&tables_lock);
    t = table_of(d);
    if (t && !t->stopping)
        t->active++;
    else
        t = NULL;
    pthread_mutex_unlock(&tables_lock);
    if (!t)
        return 0;
    snprintf(q.volume, sizeof q.volume, "%s", volume);
    if ((r = entry_get(t, volume, &e)) == 0) {
        /* The exclusive hold: raises the epoch if newer, refuses an older
         * one; then the replica's own open of the chain goes. */
        if ((r = enter(e, &q, NEED_EXCL | MAY_BE_ABSENT)) == 0) {
            replica_close_chain(e);
            replica_close_records(e);
            unlock_entry(e);
        }
        entry_put(e);
    }
    pthread_mutex_lock(&tables_lock);
    if (--t->active == 0)
        pthread_cond_broadcast(&t->done);
    pthread_mutex_unlock(&tables_lock);
    return r;
}

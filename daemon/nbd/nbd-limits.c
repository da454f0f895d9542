/* Bounds on what NBD clients may hold (bounds.h): connections in total and
 * per address, descriptors, the whole handshake's time, idle time, and
 * request memory.  One reaper thread per server enforces the deadlines by
 * shutting the socket down, which wakes whatever call the connection's
 * thread is blocked in (a read, SSL_accept, a write). */
#include "nbd-internal.h"
#include "export/export.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "daemon.h"

/* Descriptors kept for everything but NBD connections (the admin sockets
 * and their connections, open volumes, metadata, the audit log), at most
 * half of RLIMIT_NOFILE. */
#define FD_RESERVE 256
/* The automatic connection limit never goes above this. */
#define AUTO_MAX_CONNS 1024
/* A connection with no request in flight for this long gives its request
 * buffers back. */
#define IDLE_TRIM_MS 1000
/* A reader waiting for daemon-wide room looks again this often. */
#define ROOM_POLL_MS 50
#define POOL_MAX 64
#define MIN_BUF (64u * 1024)

struct nbd_budget {
    pthread_mutex_t lock;
    pthread_cond_t room;        /* memory was given back */
    uint64_t used;              /* bytes allocated, all connections */
    uint64_t total;             /* nbd-buffer-total */
    uint64_t conn_limit;        /* nbd-buffer-limit */
};

struct nbd_pool {
    pthread_mutex_t lock;
    pthread_cond_t room;        /* a buffer came back */
    struct { void *p; size_t cap; } free[POOL_MAX];
    unsigned nfree;
    uint64_t held;              /* bytes allocated: free and in flight */
    unsigned inflight;
    atomic_int closing;
};

int64_t nbd_now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void deadline_ts(int64_t ms_from_now, struct timespec *ts)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms_from_now / 1000;
    ts->tv_nsec += (ms_from_now % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* --- Connections and descriptors --------------------------------------- */

/* What RLIMIT_NOFILE leaves for connections: each may hold a socket and
 * one open volume. */
static unsigned fd_conn_limit(rlim_t nofile)
{
    rlim_t reserve = nofile / 2 < FD_RESERVE ? nofile / 2 : FD_RESERVE;
    rlim_t n = (nofile - reserve) / 2;

    return n < 1 ? 1 : n > AUTO_MAX_CONNS ? AUTO_MAX_CONNS : (unsigned)n;
}

static void set_conn_limits(struct cvd_nbd *n)
{
    const struct cvd_bounds *b = &n->d->cfg.bounds;
    struct rlimit rl = { .rlim_cur = 1024 };
    unsigned fit;

    getrlimit(RLIMIT_NOFILE, &rl);
    fit = fd_conn_limit(rl.rlim_cur);
    n->max_conns = b->nbd_max_conns ? b->nbd_max_conns : fit;
    if (n->max_conns > fit) {
        cvd_warn("nbd-max-connections %u: RLIMIT_NOFILE %llu leaves room "
                 "for %u; using %u", n->max_conns,
                 (unsigned long long)rl.rlim_cur, fit, fit);
        n->max_conns = fit;
    }
    n->max_conns_host = b->nbd_max_conns_host;
    cvd_info("nbd: at most %u connections, %u per address%s "
             "(RLIMIT_NOFILE %llu)", n->max_conns, n->max_conns_host,
             n->max_conns_host ? "" : " (no limit)",
             (unsigned long long)rl.rlim_cur);
}

int nbd_admit(struct cvd_nbd *n, struct nbd_client *c)
{
    unsigned same = 0;
    int r = 0;

    pthread_mutex_lock(&n->lock);
    for (struct nbd_client *o = n->clients; o && !c->is_unix; o = o->next)
        same += !o->is_unix && !strcmp(o->host, c->host);
    if (n->nclients >= n->max_conns)
        r = cv_error(-EBUSY, "%u connections already (nbd-max-connections)",
                     n->nclients);
    else if (n->max_conns_host && same >= n->max_conns_host)
        r = cv_error(-EBUSY, "%u connections from %s already "
                     "(nbd-max-connections-per-host)", same, c->host);
    if (r == 0) {
        c->deadline_ms = nbd_now_ms() +
            1000 * (int64_t)n->d->cfg.bounds.nbd_handshake_timeout;
        c->next = n->clients;
        if (c->next)
            c->next->prev = c;
        n->clients = c;
        n->nclients++;
        pthread_cond_signal(&n->reap);
    }
    pthread_mutex_unlock(&n->lock);
    return r;
}

void nbd_out_of_fds(struct cvd_nbd *n, int lfd, int err)
{
    int fd;

    cvd_warn_limited(&n->rl, "nbd-accept-fds", "nbd: accept: %s; closing "
                     "the new connection", strerror(err));
    if (n->spare_fd < 0) {
        usleep(100000);         /* no spare: at least do not spin */
        return;
    }
    close(n->spare_fd);
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        close(fd);
    n->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void nbd_transmitting(struct nbd_client *c)
{
    pthread_mutex_lock(&c->srv->lock);
    c->transmitting = 1;
    snprintf(c->volume, sizeof c->volume, "%s", cvd_export_name(c->export));
    atomic_store(&c->last_ms, nbd_now_ms());
    pthread_mutex_unlock(&c->srv->lock);
}

/* --- The reaper --------------------------------------------------------- */

static void expire(struct nbd_client *c, enum nbd_expiry why)
{
    atomic_store(&c->expired, why);
    shutdown(c->conn.fd, SHUT_RDWR);
    nbd_pool_wake(c);
}

static void pool_trim(struct nbd_pool *p, struct nbd_budget *b);

/* Under n->lock: acts on c at now; returns when to look again. */
static int64_t reap_one(struct cvd_nbd *n, struct nbd_client *c, int64_t now)
{
    unsigned idle_s = n->d->cfg.bounds.nbd_idle_timeout;
    int64_t next = INT64_MAX, last = atomic_load(&c->last_ms), t;

    if (atomic_load(&c->expired))
        return next;
    if (!c->transmitting) {
        if (now >= c->deadline_ms)
            expire(c, NBD_EXPIRED_HANDSHAKE);
        return c->deadline_ms;
    }
    if (idle_s) {
        t = last + 1000 * (int64_t)idle_s;
        if (now >= t)
            expire(c, NBD_EXPIRED_IDLE);
        next = t;
    }
    /* Buffers held: look again until they are given back. */
    pthread_mutex_lock(&c->pool->lock);
    if (c->pool->nfree && !c->pool->inflight && now >= last + IDLE_TRIM_MS)
        pool_trim(c->pool, n->budget);
    if (c->pool->held) {
        t = last + IDLE_TRIM_MS > now ? last + IDLE_TRIM_MS
                                      : now + IDLE_TRIM_MS / 4;
        next = t < next ? t : next;
    }
    pthread_mutex_unlock(&c->pool->lock);
    return next;
}

static void *reaper_main(void *arg)
{
    struct cvd_nbd *n = arg;
    struct timespec ts;

    pthread_mutex_lock(&n->lock);
    while (!n->stopping) {
        int64_t now = nbd_now_ms(), next = INT64_MAX;

        for (struct nbd_client *c = n->clients; c; c = c->next) {
            int64_t t = reap_one(n, c, now);

            next = t < next ? t : next;
        }
        if (next == INT64_MAX) {
            pthread_cond_wait(&n->reap, &n->lock);
            continue;
        }
        /* A little late rather than early: then it is due. */
        deadline_ts(next - now + 5, &ts);
        pthread_cond_timedwait(&n->reap, &n->lock, &ts);
    }
    pthread_mutex_unlock(&n->lock);
    return NULL;
}

/* --- Request memory ----------------------------------------------------- */

static size_t map_len(size_t cap)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    return (NBD_BUF_HEADROOM + cap + page - 1) / page * page;
}

/* Buffers are mapped, not malloc'ed, so that what is given back leaves
 * the process (malloc keeps freed arena memory resident). */
static void buf_unmap(void *p, size_t cap)
{
    munmap(p, map_len(cap));
}

static void budget_release(struct nbd_budget *b, uint64_t bytes)
{
    if (!bytes)
        return;
    pthread_mutex_lock(&b->lock);
    b->used -= bytes;
    pthread_cond_broadcast(&b->room);
    pthread_mutex_unlock(&b->lock);
}

/* Under p->lock: frees every buffer not in use. */
static void pool_trim(struct nbd_pool *p, struct nbd_budget *b)
{
    uint64_t freed = 0;

    while (p->nfree) {
        p->nfree--;
        buf_unmap(p->free[p->nfree].p, p->free[p->nfree].cap);
        freed += p->free[p->nfree].cap;
    }
    p->held -= freed;
    budget_release(b, freed);
}

/* Frees the unused buffers of every connection: the daemon-wide bound is
 * reached and someone needs the room. */
static void reclaim_all(struct cvd_nbd *n)
{
    pthread_mutex_lock(&n->lock);
    for (struct nbd_client *c = n->clients; c; c = c->next) {
        if (!c->pool)
            continue;
        pthread_mutex_lock(&c->pool->lock);
        pool_trim(c->pool, n->budget);
        pthread_mutex_unlock(&c->pool->lock);
    }
    pthread_mutex_unlock(&n->lock);
}

/* Takes need bytes of the daemon-wide budget, waiting for room.  Called
 * without the pool lock (reclaim_all takes every pool's). */
static int budget_take(struct nbd_client *c, uint64_t need)
{
    struct nbd_budget *b = c->srv->budget;
    struct timespec ts;
    int r = 0, reclaimed = 0;

    pthread_mutex_lock(&b->lock);
    while (b->used + need > b->total) {
        if (atomic_load(&c->expired) || c->pool->closing) {
            r = cv_error(-ECONNRESET, "connection closing");
            break;
        }
        pthread_mutex_unlock(&b->lock);
        if (!reclaimed++)
            cvd_debug("nbd: %s: nbd-buffer-total reached; waiting",
                      c->conn.peer);
        reclaim_all(c->srv);
        pthread_mutex_lock(&b->lock);
        if (b->used + need <= b->total)
            break;
        deadline_ts(ROOM_POLL_MS, &ts);
        pthread_cond_timedwait(&b->room, &b->lock, &ts);
    }
    if (r == 0)
        b->used += need;
    pthread_mutex_unlock(&b->lock);
    return r;
}

/* Under p->lock: the smallest free buffer that holds len, or -1. */
static int best_fit(const struct nbd_pool *p, size_t len)
{
    int best = -1;

    for (unsigned i = 0; i < p->nfree; i++)
        if (p->free[i].cap >= len &&
            (best < 0 || p->free[i].cap < p->free[best].cap))
            best = (int)i;
    return best;
}

static void *take_free(struct nbd_pool *p, int i, size_t *cap)
{
    void *buf = p->free[i].p;

    *cap = p->free[i].cap;
    p->free[i] = p->free[--p->nfree];
    p->inflight++;
    return buf;
}

/* Under p->lock: waits until this connection may hold need more bytes,
 * freeing its unused buffers first.  0, or -ECONNRESET when closing. */
static int conn_room(struct nbd_client *c, uint64_t need)
{
    struct nbd_pool *p = c->pool;
    struct nbd_budget *b = c->srv->budget;

    while (p->held + need > b->conn_limit) {
        if (p->closing)
            return cv_error(-ECONNRESET, "connection closing");
        if (p->nfree) {
            p->nfree--;
            buf_unmap(p->free[p->nfree].p, p->free[p->nfree].cap);
            p->held -= p->free[p->nfree].cap;
            budget_release(b, p->free[p->nfree].cap);
            continue;
        }
        /* Requests in flight hold it all: stop reading until one is
         * answered. */
        pthread_cond_wait(&p->room, &p->lock);
    }
    return p->closing ? cv_error(-ECONNRESET, "connection closing") : 0;
}

int nbd_buf_get(struct nbd_client *c, size_t len, void **out, size_t *cap)
{
    struct nbd_pool *p = c->pool;
    size_t want = MIN_BUF;
    void *buf;
    int i, r;

    while (want < len)
        want *= 2;
    pthread_mutex_lock(&p->lock);
    i = best_fit(p, len);
    if (i >= 0) {
        *out = take_free(p, i, cap);
        pthread_mutex_unlock(&p->lock);
        return 0;
    }
    r = conn_room(c, want);
    if (r == 0)
        p->held += want;        /* ours while we look for the memory */
    pthread_mutex_unlock(&p->lock);
    if (r < 0)
        return r;
    r = budget_take(c, want);
    buf = r < 0 ? MAP_FAILED : mmap(NULL, map_len(want),
                                    PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED && r == 0) {
        budget_release(c->srv->budget, want);
        r = cv_error(-ENOMEM, "out of memory for a %zu-byte request", len);
    }
    pthread_mutex_lock(&p->lock);
    if (r < 0) {
        p->held -= want;
        pthread_cond_broadcast(&p->room);
    } else {
        p->inflight++;
    }
    pthread_mutex_unlock(&p->lock);
    if (r == 0) {
        /* The reaper gives it back once the connection is idle. */
        pthread_mutex_lock(&c->srv->lock);
        pthread_cond_signal(&c->srv->reap);
        pthread_mutex_unlock(&c->srv->lock);
    }
    *cap = want;
    *out = r < 0 ? NULL : buf;
    return r;
}

void nbd_buf_put(struct nbd_client *c, void *buf, size_t cap)
{
    struct nbd_pool *p = c->pool;
    uint64_t freed = 0;

    if (!buf)
        return;
    pthread_mutex_lock(&p->lock);
    p->inflight--;
    if (p->nfree < POOL_MAX && !p->closing) {
        p->free[p->nfree].p = buf;
        p->free[p->nfree++].cap = cap;
    } else {
        buf_unmap(buf, cap);
        p->held -= cap;
        freed = cap;
    }
    pthread_cond_broadcast(&p->room);
    pthread_mutex_unlock(&p->lock);
    budget_release(c->srv->budget, freed);
}

void nbd_pool_wake(struct nbd_client *c)
{
    if (!c->pool)
        return;
    pthread_mutex_lock(&c->pool->lock);
    c->pool->closing = 1;
    pthread_cond_broadcast(&c->pool->room);
    pthread_mutex_unlock(&c->pool->lock);
}

int nbd_pool_new(struct nbd_client *c)
{
    struct nbd_pool *p = calloc(1, sizeof *p);

    if (!p)
        return cv_error(-ENOMEM, "out of memory");
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->room, NULL);
    c->pool = p;
    return 0;
}

/* Under n->lock (the reaper and reclaim_all walk the pools). */
void nbd_pool_free(struct nbd_client *c)
{
    struct nbd_pool *p = c->pool;

    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    pool_trim(p, c->srv->budget);
    pthread_mutex_unlock(&p->lock);
    pthread_cond_destroy(&p->room);
    pthread_mutex_destroy(&p->lock);
    free(p);
    c->pool = NULL;
}

/* --- Start and stop ----------------------------------------------------- */

int nbd_limits_start(struct cvd_nbd *n)
{
    const struct cvd_bounds *bd = &n->d->cfg.bounds;
    struct nbd_budget *b = calloc(1, sizeof *b);
    int r;

    if (!b)
        return cv_error(-ENOMEM, "nbd: out of memory");
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->room, NULL);
    b->total = bd->nbd_buffer_total;
    b->conn_limit = bd->nbd_buffer_limit;
    n->budget = b;
    set_conn_limits(n);
    n->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    r = pthread_create(&n->reaper, NULL, reaper_main, n);
    if (r != 0)
        return cv_error(-r, "nbd: cannot start the reaper thread: %s",
                        strerror(r));
    n->reaper_started = 1;
    return 0;
}

void nbd_limits_stop(struct cvd_nbd *n)
{
    if (n->reaper_started) {
        pthread_mutex_lock(&n->lock);
        pthread_cond_broadcast(&n->reap);
        pthread_mutex_unlock(&n->lock);
        pthread_join(n->reaper, NULL);
        n->reaper_started = 0;
    }
    if (n->spare_fd >= 0)
        close(n->spare_fd);
    n->spare_fd = -1;
    if (n->budget) {
        pthread_cond_destroy(&n->budget->room);
        pthread_mutex_destroy(&n->budget->lock);
        free(n->budget);
        n->budget = NULL;
    }
}

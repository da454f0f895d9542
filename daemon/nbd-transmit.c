/* The NBD transmission phase.
 *
 * The connection's thread reads requests (headers and write payloads) into
 * slots and queues them; worker threads of this connection serve them and
 * write each reply as one message, in whatever order they finish, as
 * nbdkit's parallel thread model does.  A slot keeps its buffer from one
 * request to the next, so the data path allocates nothing once warm, and
 * the buffer has room in front of the data for the reply header, so a read
 * goes out as one contiguous write (one TLS record run, one send).
 * The only lock on the data path is this connection's queue lock. */
#include "nbd-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "backend.h"
#include "error.h"
#include "export.h"
#include "log.h"

/* Requests in flight per connection: the reader waits beyond this. */
#define MAX_SLOTS 64
/* Room before the data for a reply header; a cache line. */
#define HEADROOM 64
/* Block status answers at most this many extents at once. */
#define MAX_EXTENTS 2048
#define EXTENTS_BUF (NBD_CHUNK_HDR_LEN + 4 + 8 * MAX_EXTENTS)
/* A WRITE above NBD_MAX_PAYLOAD is read and refused up to this size; a
 * larger one hangs up (see docs/nbd.md). */
#define MAX_DRAIN_WRITE (64u * 1024 * 1024)

struct slot {
    struct slot *next;
    struct nbd_request req;
    int err;                    /* refused by the reader: negative errno */
    char msg[256];              /* ... and why */
    uint8_t *buf;               /* HEADROOM + data */
    size_t cap;                 /* data bytes buf holds */
};

struct tx {
    struct nbd_client *c;
    pthread_mutex_t lock;
    pthread_cond_t work;        /* a request was queued, or done */
    pthread_cond_t freed;       /* a slot came back */
    struct slot *head, *tail, *free;
    unsigned queued, nslots;
    pthread_t threads[64];
    unsigned nthreads, max_threads, idle;
    int done;                   /* no more requests will be queued */
    int broken;                 /* a reply failed: stop reading */
    unsigned long served;
};

static int slot_reserve(struct slot *s, size_t len)
{
    void *p;

    if (len <= s->cap)
        return 0;
    /* Grow to the next power of two (at least 64 KiB), not byte by byte. */
    size_t cap = 65536;
    while (cap < len)
        cap *= 2;
    if (posix_memalign(&p, HEADROOM, HEADROOM + cap) != 0)
        return cv_error(-ENOMEM, "out of memory for a %zu-byte request",
                        len);
    free(s->buf);
    s->buf = p;
    s->cap = cap;
    return 0;
}

/* --- Replies ------------------------------------------------------------ */

/* Writes a reply; if that fails the stream is broken, so the reader is
 * stopped too. */
static void send_reply(struct tx *t, const void *buf, size_t len)
{
    struct nbd_client *c = t->c;

    if (cvd_conn_write(&c->conn, buf, len) == 0)
        return;
    cvd_debug("nbd: %s: reply not sent: %s", c->conn.peer, cv_last_error());
    pthread_mutex_lock(&t->lock);
    if (!t->broken)
        shutdown(c->conn.fd, SHUT_RDWR);
    t->broken = 1;
    pthread_mutex_unlock(&t->lock);
}

static void reply_error(struct tx *t, const struct nbd_request *r, int err,
                        const char *msg)
{
    uint8_t buf[NBD_CHUNK_HDR_LEN + 6 + 256];
    size_t len;

    /* Structured replies carry the message; simple ones only the code. */
    if (t->c->structured)
        len = nbd_build_error_chunk(buf, sizeof buf, r->handle,
                                    nbd_errno(err), msg);
    else
        len = nbd_build_simple_reply(buf, nbd_errno(err), r->handle);
    send_reply(t, buf, len);
}

static void reply_ok(struct tx *t, const struct nbd_request *r)
{
    uint8_t buf[NBD_SIMPLE_REPLY_LEN];

    send_reply(t, buf, nbd_build_simple_reply(buf, 0, r->handle));
}

/* --- Serving one request ------------------------------------------------ */

static int do_read(struct tx *t, struct slot *s)
{
    const struct nbd_request *r = &s->req;
    uint8_t *data;
    size_t hlen;
    int rc;

    rc = slot_reserve(s, r->len);
    if (rc < 0)
        return rc;
    data = s->buf + HEADROOM;
    rc = cvd_export_pread(t->c->export, data, r->len, r->offset);
    if (rc < 0)
        return rc;
    /* One content chunk, so DF is always honoured. */
    if (t->c->structured)
        hlen = nbd_build_offset_data(data - NBD_OFFSET_DATA_HDR_LEN,
                                     NBD_REPLY_FLAG_DONE, r->handle,
                                     r->offset, r->len);
    else
        hlen = nbd_build_simple_reply(data - NBD_SIMPLE_REPLY_LEN, 0,
                                      r->handle);
    send_reply(t, data - hlen, hlen + r->len);
    return 1;
}

static int add_extent(void *arg, uint64_t len, unsigned flags)
{
    unsigned f = (flags & CVD_EXTENT_HOLE ? NBD_STATE_HOLE : 0) |
                 (flags & CVD_EXTENT_ZERO ? NBD_STATE_ZERO : 0);

    return nbd_extents_add(arg, len, f);
}

static int do_block_status(struct tx *t, struct slot *s)
{
    const struct nbd_request *r = &s->req;
    struct nbd_extents ex;
    size_t len;
    int rc;

    rc = slot_reserve(s, EXTENTS_BUF);
    if (rc == 0)
        rc = nbd_extents_init(&ex, s->buf, EXTENTS_BUF, r->handle,
                              NBD_META_ID_BASE_ALLOCATION, r->len,
                              r->flags & NBD_CMD_FLAG_REQ_ONE);
    if (rc == 0)
        rc = cvd_export_extents(t->c->export, r->offset, r->len, add_extent,
                                &ex);
    if (rc < 0)
        return rc;
    len = nbd_extents_finish(&ex);
    if (len == 0)
        return cv_error(-EIO, "block status: no extent for %u bytes at %llu",
                        (unsigned)r->len, (unsigned long long)r->offset);
    send_reply(t, s->buf, len);
    return 1;
}

/* Returns 1 if the reply was sent, 0 to send a plain success, or a
 * negative errno with a message. */
static int serve(struct tx *t, struct slot *s)
{
    const struct nbd_request *r = &s->req;
    struct cvd_export *e = t->c->export;
    unsigned fua = r->flags & NBD_CMD_FLAG_FUA ? CV_WRITE_FUA : 0;

    switch (r->type) {
    case NBD_CMD_READ:
        return do_read(t, s);
    case NBD_CMD_WRITE:
        return cvd_export_pwrite(e, s->buf + HEADROOM, r->len, r->offset,
                                 fua);
    case NBD_CMD_FLUSH:
        return cvd_export_flush(e);
    case NBD_CMD_TRIM:
        return cvd_export_trim(e, r->offset, r->len, fua);
    case NBD_CMD_WRITE_ZEROES:
        /* Zeroes are always written encrypted, never a hole: NO_HOLE
         * holds whatever the flag says. */
        return cvd_export_zero(e, r->offset, r->len, fua);
    case NBD_CMD_BLOCK_STATUS:
        return do_block_status(t, s);
    default:
        return cv_error(-EINVAL, "unexpected command %u", r->type);
    }
}

static void handle(struct tx *t, struct slot *s)
{
    char name[32];
    int rc;

    if (s->err) {
        reply_error(t, &s->req, s->err, s->msg);
        return;
    }
    rc = serve(t, s);
    if (rc == 0)
        reply_ok(t, &s->req);
    if (rc >= 0)
        return;
    /* Range and flag errors were caught by the reader: what fails here is
     * the server's problem, worth a warning. */
    cvd_warn("nbd: %s: %s: %s: %s", t->c->conn.peer,
             cvd_export_name(t->c->export),
             nbd_cmd_name(s->req.type, name, sizeof name), cv_last_error());
    reply_error(t, &s->req, rc, cv_last_error());
}

/* --- Workers ------------------------------------------------------------ */

static void slot_release(struct tx *t, struct slot *s)
{
    pthread_mutex_lock(&t->lock);
    s->next = t->free;
    t->free = s;
    t->served++;
    pthread_cond_signal(&t->freed);
    pthread_mutex_unlock(&t->lock);
}

static void *worker(void *arg)
{
    struct tx *t = arg;
    struct slot *s;

    for (;;) {
        pthread_mutex_lock(&t->lock);
        while (!t->head && !t->done) {
            t->idle++;
            pthread_cond_wait(&t->work, &t->lock);
            t->idle--;
        }
        s = t->head;
        if (s) {
            t->head = s->next;
            if (!t->head)
                t->tail = NULL;
            t->queued--;
        }
        pthread_mutex_unlock(&t->lock);
        if (!s)
            return NULL;        /* done and nothing left */
        handle(t, s);
        slot_release(t, s);
    }
}

/* Called with t->lock held: one more worker if every one is busy. */
static void maybe_spawn(struct tx *t)
{
    pthread_attr_t attr;

    if (t->queued <= t->idle || t->nthreads >= t->max_threads)
        return;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, NBD_THREAD_STACK);
    if (pthread_create(&t->threads[t->nthreads], &attr, worker, t) == 0)
        t->nthreads++;
    else if (t->nthreads == 0)
        cvd_warn("nbd: %s: cannot start a worker thread", t->c->conn.peer);
    pthread_attr_destroy(&attr);
}

static void enqueue(struct tx *t, struct slot *s)
{
    pthread_mutex_lock(&t->lock);
    s->next = NULL;
    if (t->tail)
        t->tail->next = s;
    else
        t->head = s;
    t->tail = s;
    t->queued++;
    maybe_spawn(t);
    pthread_cond_signal(&t->work);
    pthread_mutex_unlock(&t->lock);
}

/* A free slot, waiting while MAX_SLOTS requests are in flight.  NULL if a
 * reply failed meanwhile (the connection is going away). */
static struct slot *slot_get(struct tx *t)
{
    struct slot *s = NULL;

    pthread_mutex_lock(&t->lock);
    while (!t->free && t->nslots >= MAX_SLOTS && !t->broken)
        pthread_cond_wait(&t->freed, &t->lock);
    if (t->broken) {
        pthread_mutex_unlock(&t->lock);
        return NULL;
    }
    if (t->free) {
        s = t->free;
        t->free = s->next;
    } else {
        s = calloc(1, sizeof *s);
        if (s)
            t->nslots++;
    }
    pthread_mutex_unlock(&t->lock);
    if (!s)
        cv_error(-ENOMEM, "out of memory for a request slot");
    return s;
}

/* --- The reader --------------------------------------------------------- */

/* Reads a write's payload, or (if the request was refused) reads past it.
 * Returns 0, or a negative errno when the connection must close. */
static int read_payload(struct tx *t, struct slot *s)
{
    const struct nbd_request *r = &s->req;
    int rc;

    if (r->type != NBD_CMD_WRITE)
        return 0;
    if (s->err == 0) {
        rc = slot_reserve(s, r->len);
        if (rc == 0)
            return cvd_conn_read(&t->c->conn, s->buf + HEADROOM, r->len);
        /* No memory: refuse it like any other, reading past it. */
        s->err = rc;
        snprintf(s->msg, sizeof s->msg, "%s", cv_last_error());
    }
    if (r->len > MAX_DRAIN_WRITE)
        return cv_error(-EOVERFLOW, "NBD_CMD_WRITE of %u bytes: far above "
                        "the maximum block size, closing",
                        (unsigned)r->len);
    return cvd_conn_discard(&t->c->conn, r->len);
}

/* Reads one request into s.  Returns 1 to queue it, 0 on NBD_CMD_DISC, or
 * a negative errno. */
static int read_request(struct tx *t, struct slot *s)
{
    uint8_t hdr[NBD_REQUEST_LEN];
    char name[32];
    int rc;

    rc = cvd_conn_read(&t->c->conn, hdr, sizeof hdr);
    if (rc == 0)
        rc = nbd_parse_request(hdr, &s->req);
    if (rc < 0)
        return rc;
    if (s->req.type == NBD_CMD_DISC)
        return 0;
    s->err = nbd_check_request(&s->req, &t->c->info);
    if (s->err) {
        snprintf(s->msg, sizeof s->msg, "%s", cv_last_error());
        cvd_debug("nbd: %s: %s refused: %s", t->c->conn.peer,
                  nbd_cmd_name(s->req.type, name, sizeof name), s->msg);
    }
    rc = read_payload(t, s);
    return rc < 0 ? rc : 1;
}

static int reader(struct tx *t)
{
    struct slot *s;
    int rc;

    for (;;) {
        s = slot_get(t);
        if (!s)
            return t->broken ? -EPIPE : -ENOMEM;
        rc = read_request(t, s);
        if (rc <= 0) {
            /* A write cut short is dropped: it never reaches the volume. */
            slot_release(t, s);
            return rc;
        }
        enqueue(t, s);
    }
}

static void tx_finish(struct tx *t)
{
    struct slot *s;

    pthread_mutex_lock(&t->lock);
    t->done = 1;
    pthread_cond_broadcast(&t->work);
    pthread_mutex_unlock(&t->lock);
    /* Workers drain the queue first: every request read gets its reply. */
    for (unsigned i = 0; i < t->nthreads; i++)
        pthread_join(t->threads[i], NULL);
    /* Only if no worker could be started at all. */
    while ((s = t->head)) {
        t->head = s->next;
        handle(t, s);
        s->next = t->free;
        t->free = s;
    }
    while ((s = t->free)) {
        t->free = s->next;
        free(s->buf);
        free(s);
    }
    pthread_cond_destroy(&t->work);
    pthread_cond_destroy(&t->freed);
    pthread_mutex_destroy(&t->lock);
}

int nbd_transmit(struct nbd_client *c)
{
    struct tx t = { .c = c };
    unsigned threads = c->srv->threads;
    int rc;

    t.max_threads = threads < 64 ? threads : 64;
    if (t.max_threads == 0)
        t.max_threads = 1;
    pthread_mutex_init(&t.lock, NULL);
    pthread_cond_init(&t.work, NULL);
    pthread_cond_init(&t.freed, NULL);
    rc = reader(&t);
    if (rc < 0)
        rc = cv_error_prefix(rc, "after %lu requests", t.served);
    tx_finish(&t);
    return rc;
}

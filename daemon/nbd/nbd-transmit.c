/* The NBD transmission phase.
 *
 * Each connection has up to N worker threads (nbd-threads, 16 by default)
 * that take turns on the socket, as nbdkit's parallel thread model does: a
 * worker holds the read lock while it reads one request (header and write
 * payload), lets go, serves the request and writes the reply as one
 * message.  Replies go out in whatever order requests finish.  Nothing is
 * handed from thread to thread, so a request costs no extra wake-up.  A
 * new worker starts only when a request arrives and no worker is waiting
 * to read, so an idle or strictly serial client costs one thread.
 *
 * A request's buffer (a READ's data, a WRITE's payload) is taken from the
 * connection's pool by the reader, before it reads the next request, and
 * given back once the reply is sent (nbd-limits.c): the bytes a connection
 * and all of them hold are bounded, and when a bound is reached the reader
 * waits, so a client that pipelines large requests and does not read the
 * replies is no longer read from, instead of growing the daemon.  Warm
 * buffers are reused (the data path allocates nothing once warm) and given
 * back when the connection is idle.  Each has room in front of the data
 * for the reply header, so a read reply goes out as one contiguous write:
 * one send, or one SSL_write.  The locks on the data path are this
 * connection's: reading and writing the socket, and its pool. */
#include "nbd-internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "store/backend.h"
#include "core/error.h"
#include "daemon.h"
#include "export/export.h"
#include "log.h"
#include "metrics/metrics.h"

#define MAX_THREADS 64
#define HEADROOM NBD_BUF_HEADROOM
/* Block status answers at most this many extents at once. */
#define MAX_EXTENTS 2048
#define EXTENTS_BUF (NBD_CHUNK_HDR_LEN + 4 + 8 * MAX_EXTENTS)
/* A WRITE above NBD_MAX_PAYLOAD is read and refused up to this size; a
 * larger one hangs up (see docs/nbd.md). */
#define MAX_DRAIN_WRITE (64u * 1024 * 1024)

/* One worker's request and buffer. */
struct slot {
    struct nbd_request req;
    int err;                    /* refused by the reader: negative errno */
    char msg[256];              /* ... and why */
    uint8_t *buf;               /* HEADROOM + data, from the pool */
    size_t cap;                 /* data bytes buf holds */
    uint64_t start_ns;          /* read whole, about to be served */
};

struct tx {
    struct nbd_client *c;
    pthread_mutex_t read_lock;  /* one reader of the socket at a time */
    atomic_uint waiting;        /* workers waiting for read_lock */
    /* Under read_lock: */
    int done;                   /* no more requests will be read */
    int result;                 /* why: 0 for NBD_CMD_DISC */
    char why[256];              /* ... and its message */
    pthread_t threads[MAX_THREADS];
    unsigned nthreads, max_threads;
    pthread_mutex_t lock;       /* the rest */
    int broken;                 /* a reply failed */
    atomic_ulong served;
};

/* The buffer request r needs while it is served: its data, or the
 * extents of a block status reply. */
static size_t buffer_need(const struct nbd_request *r)
{
    switch (r->type) {
    case NBD_CMD_READ: case NBD_CMD_WRITE:
        return r->len;
    case NBD_CMD_BLOCK_STATUS:
        return EXTENTS_BUF;
    default:
        return 0;
    }
}

/* --- Replies ------------------------------------------------------------ */

/* Writes a reply; if that fails the stream is broken, so the reader is
 * stopped too. */
static void send_reply(struct tx *t, const void *buf, size_t len)
{
    struct nbd_client *c = t->c;

    if (cvd_conn_write(&c->conn, buf, len) == 0) {
        atomic_store(&c->last_ms, nbd_now_ms());
        return;
    }
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

/* --- Metrics ------------------------------------------------------------ */

static enum cvd_metrics_op op_of(uint16_t type)
{
    switch (type) {
    case NBD_CMD_READ:
        return CVD_OP_READ;
    case NBD_CMD_WRITE:
        return CVD_OP_WRITE;
    case NBD_CMD_FLUSH:
        return CVD_OP_FLUSH;
    case NBD_CMD_TRIM:
        return CVD_OP_TRIM;
    case NBD_CMD_WRITE_ZEROES:
        return CVD_OP_WRITE_ZEROES;
    case NBD_CMD_BLOCK_STATUS:
        return CVD_OP_BLOCK_STATUS;
    default:
        return CVD_OP_OTHER;
    }
}

/* Counted before its reply is sent, so a client that has its reply sees
 * the request in the next scrape.  Bytes are the data moved or changed:
 * none for a flush or a block status. */
static void counted(struct tx *t, const struct slot *s, int failed)
{
    enum cvd_metrics_op op = op_of(s->req.type);
    uint64_t bytes = op == CVD_OP_READ || op == CVD_OP_WRITE ||
                     op == CVD_OP_TRIM || op == CVD_OP_WRITE_ZEROES ?
                     s->req.len : 0;

    cvd_metrics_request(t->c->srv->d->metrics, t->c->vmetrics, op, bytes,
                        failed, s->start_ns);
}

/* --- Serving one request ------------------------------------------------ */

static int do_read(struct tx *t, struct slot *s)
{
    const struct nbd_request *r = &s->req;
    uint8_t *data;
    size_t hlen;
    int rc;

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
    counted(t, s, 0);
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
    counted(t, s, 0);
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

    s->start_ns = cvd_metrics_now_ns();
    if (s->err) {
        counted(t, s, 1);
        reply_error(t, &s->req, s->err, s->msg);
        return;
    }
    rc = serve(t, s);
    if (rc == 0) {
        counted(t, s, 0);
        reply_ok(t, &s->req);
    }
    if (rc >= 0)
        return;
    counted(t, s, 1);
    /* Range and flag errors were caught by the reader: what fails here is
     * the server's problem, worth a warning. */
    cvd_warn("nbd: %s: %s: %s: %s", t->c->conn.peer,
             cvd_export_name(t->c->export),
             nbd_cmd_name(s->req.type, name, sizeof name), cv_last_error());
    reply_error(t, &s->req, rc, cv_last_error());
}

/* --- Reading requests --------------------------------------------------------- */

/* Takes the request's buffer from the pool, waiting for room.  Returns 0
 * (a refusal for want of memory goes into s), or a negative errno when the
 * connection is closing. */
static int take_buffer(struct tx *t, struct slot *s)
{
    size_t need = s->err ? 0 : buffer_need(&s->req);
    void *buf = NULL;
    int rc;

    if (!need)
        return 0;
    rc = nbd_buf_get(t->c, need, &buf, &s->cap);
    s->buf = buf;
    if (rc != -ENOMEM)
        return rc;
    s->err = rc;
    snprintf(s->msg, sizeof s->msg, "%s", cv_last_error());
    return 0;
}

/* Reads a write's payload, or (if the request was refused) reads past it.
 * Returns 0, or a negative errno when the connection must close. */
static int read_payload(struct tx *t, struct slot *s)
{
    const struct nbd_request *r = &s->req;

    if (r->type != NBD_CMD_WRITE)
        return 0;
    if (s->err == 0)
        return cvd_conn_read(&t->c->conn, s->buf + HEADROOM, r->len);
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
    atomic_store(&t->c->last_ms, nbd_now_ms());
    if (s->req.type == NBD_CMD_DISC)
        return 0;
    s->err = nbd_check_request(&s->req, &t->c->info);
    if (s->err) {
        snprintf(s->msg, sizeof s->msg, "%s", cv_last_error());
        cvd_debug("nbd: %s: %s refused: %s", t->c->conn.peer,
                  nbd_cmd_name(s->req.type, name, sizeof name), s->msg);
    }
    rc = take_buffer(t, s);
    if (rc == 0)
        rc = read_payload(t, s);
    return rc < 0 ? rc : 1;
}

static void *worker_main(void *arg);

/* Called under read_lock after a request was read: if nobody waits to
 * read the next one, start another worker. */
static void maybe_spawn(struct tx *t)
{
    pthread_attr_t attr;

    if (atomic_load(&t->waiting) > 0 || t->nthreads >= t->max_threads)
        return;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, NBD_THREAD_STACK);
    if (pthread_create(&t->threads[t->nthreads], &attr, worker_main, t) == 0)
        t->nthreads++;
    pthread_attr_destroy(&attr);
}

/* Reads the next request into s under read_lock.  Returns 1 to serve it,
 * 0 when the connection is done. */
static int next_request(struct tx *t, struct slot *s)
{
    int rc;

    atomic_fetch_add(&t->waiting, 1);
    pthread_mutex_lock(&t->read_lock);
    atomic_fetch_sub(&t->waiting, 1);
    if (t->done) {
        pthread_mutex_unlock(&t->read_lock);
        return 0;
    }
    rc = read_request(t, s);
    if (rc <= 0) {
        /* The first to fail says why; a write cut short is dropped. */
        t->done = 1;
        t->result = rc;
        if (rc < 0)
            snprintf(t->why, sizeof t->why, "%s", cv_last_error());
    } else {
        maybe_spawn(t);
    }
    pthread_mutex_unlock(&t->read_lock);
    return rc > 0;
}

static void worker(struct tx *t)
{
    struct slot s = { .buf = NULL };

    while (next_request(t, &s)) {
        handle(t, &s);
        atomic_fetch_add(&t->served, 1);
        nbd_buf_put(t->c, s.buf, s.cap);
        s.buf = NULL;
    }
    /* A request read in part (the connection ended in its payload). */
    nbd_buf_put(t->c, s.buf, s.cap);
}

static void *worker_main(void *arg)
{
    worker(arg);
    return NULL;
}

int nbd_transmit(struct nbd_client *c)
{
    struct tx t = { .c = c };
    unsigned threads = c->srv->threads;
    int rc;

    t.max_threads = threads < MAX_THREADS ? threads : MAX_THREADS;
    /* This thread is the first worker; it is not in threads[]. */
    t.max_threads = t.max_threads > 1 ? t.max_threads - 1 : 0;
    atomic_init(&t.waiting, 0);
    atomic_init(&t.served, 0);
    pthread_mutex_init(&t.read_lock, NULL);
    pthread_mutex_init(&t.lock, NULL);
    worker(&t);
    for (unsigned i = 0; i < t.nthreads; i++)
        pthread_join(t.threads[i], NULL);
    /* The read that ended it may have been on another thread. */
    rc = t.result;
    if (rc < 0)
        cv_error(rc, "%s (after %lu requests)", t.why,
                 atomic_load(&t.served));
    pthread_mutex_destroy(&t.read_lock);
    pthread_mutex_destroy(&t.lock);
    return rc;
}

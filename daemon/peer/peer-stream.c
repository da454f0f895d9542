/* Streams (peer.h): one persistent connection to a member, requests
 * pipelined.  A request is queued with its frame; one sender at a time
 * (writing) writes every frame queued, in order, many in one write: the
 * frames queued while it writes are its next batch, and their senders do
 * not wait for it (cvd_peer_stream_post) or wait only for their frame's
 * turn (cvd_peer_stream_send).  So concurrent writes of a volume leave
 * in few TLS records and segments, and the replica wakes once for many.
 * (A plaintext stream's senders write their own frames, one at a time:
 * see struct pending.)
 * One reader thread reads the answers, which come in the order of the
 * requests, and completes the oldest request with each.  TLS: the reader
 * and the writers share one SSL object, so every SSL call is made under
 * ssl_lock, and none waits while holding it (the socket is non-blocking:
 * a call that cannot go on returns WANT_READ/WANT_WRITE, the lock is let
 * go, and poll waits).  The reader never writes but for an idle PING, and
 * then only if no sender is writing (a reader blocked on writing could
 * not read the answers that unblock the peer). */
#include "peer-internal.h"

#include "core/error.h"
#include "daemon.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* An idle stream sends a PING this often: the server closes connections
 * idle for PEER_IDLE_MS, and a dead peer is found before a write. */
#define STREAM_PING_MS (PEER_IDLE_MS / 3)
/* A request's payload in at most this many parts; a batch of at most
 * this many frames (iovecs: header and parts each; plain sendmsg takes
 * 64). */
#define STREAM_PARTS 3
#define STREAM_BATCH 16

struct pending {
    uint32_t id;
    unsigned timeout_ms;
    int64_t deadline;
    cvd_peer_done_fn done;      /* NULL: the reader's own PING */
    void *arg;
    /* The frame, until written: the parts are the sender's memory, valid
     * until done is called.  On TLS they are read only before the frame's
     * last byte leaves (OpenSSL copies them into its records), so before
     * any answer.  A plaintext stream's sendmsg reads nothing after, but
     * ASan's check of it reads them after the call: there each sender
     * writes only its own frame (queue), and its answer is completed
     * once that sendmsg returned (complete), which it does at once. */
    uint8_t hdr[CVD_PEER_HEADER];
    struct iovec iov[STREAM_PARTS];
    int iovcnt;
    uint64_t seq;               /* its place among all frames queued */
};

struct cvd_peer_stream {
    struct cvd *d;
    char name[CV_TLS_NAME_MAX + 1];
    char address[256];
    struct peer_link link;      /* the connection; link.io for setup */
    struct peer_io rio, wio;    /* the reader's, the writers' */
    pthread_mutex_t ssl_lock;   /* every SSL call */
    /* The requests in flight (a ring, oldest at head; the last unsent of
     * them not written yet) and the state: under lock; cond signals room,
     * an empty queue, frames written, a break, the writer gone. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct pending q[CVD_PEER_STREAM_DEPTH];
    unsigned head, n, unsent;
    enum { WRITING_NONE, WRITING_SENDER, WRITING_PING } writing;
    uint64_t queued, written;   /* frames so far */
    uint32_t next_id;
    int broken;                 /* 0, or why (negative errno) */
    char why[256];
    int closing;
    int wake[2];                /* the reader's: a deadline moved */
    pthread_t reader;
    unsigned gen;               /* the port's peer-tls generation */
    uint8_t *rbuf;              /* the reader's answer buffer */
    size_t rcap;
};

/* ---- state ------------------------------------------------------------- */

static enum cvd_peer_tls mode_now(struct cvd *d, unsigned *gen)
{
    if (d->peer)
        return peer_tls_mode(d->peer, gen);
    *gen = 0;
    return (enum cvd_peer_tls)d->cfg.peer_tls;
}

static void wake_reader(struct cvd_peer_stream *s)
{
    if (write(s->wake[1], "w", 1) < 0 && errno != EAGAIN)
        cvd_debug("peer %s: waking the stream's reader: %s", s->name,
                  strerror(errno));
}

/* The first break is the one remembered; the socket is shut down so
 * that the reader and any writer stop waiting. */
static void stream_break(struct cvd_peer_stream *s, int err, const char *why)
{
    pthread_mutex_lock(&s->lock);
    if (!s->broken) {
        s->broken = err;
        snprintf(s->why, sizeof s->why, "%s", why);
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    shutdown(s->link.io.fd, SHUT_RDWR);
    wake_reader(s);
}

/* Why a request cannot be sent, or failed: under lock. */
static int refusal(struct cvd_peer_stream *s)
{
    if (s->closing)
        return cv_error(-ECANCELED, "peer %s (%s): stream closed", s->name,
                        s->address);
    return cv_error(s->broken, "peer %s (%s): stream broken: %s", s->name,
                    s->address, s->why);
}

static int64_t earliest(struct cvd_peer_stream *s)
{
    int64_t at = INT64_MAX;

    for (unsigned i = 0; i < s->n; i++) {
        const struct pending *e = &s->q[(s->head + i) % CVD_PEER_STREAM_DEPTH];

        at = e->deadline < at ? e->deadline : at;
    }
    return at;
}

/* Queues a request and its frame, unsent (under lock; the parts checked
 * by the caller): the reader's deadline follows. */
static struct pending *push(struct cvd_peer_stream *s, uint16_t type,
                            const struct iovec *iov, int iovcnt,
                            unsigned timeout_ms, cvd_peer_done_fn done,
                            void *arg)
{
    struct pending *e = &s->q[(s->head + s->n) % CVD_PEER_STREAM_DEPTH];
    int64_t cur = __atomic_load_n(&s->rio.deadline, __ATOMIC_RELAXED);
    struct peer_hdr h = { .type = type };

    if (++s->next_id == 0)
        s->next_id = 1;
    *e = (struct pending){ .id = s->next_id, .timeout_ms = timeout_ms,
                           .deadline = peer_now_ms() + timeout_ms,
                           .done = done, .arg = arg, .iovcnt = iovcnt,
                           .seq = s->queued++ };
    for (int i = 0; i < iovcnt; i++) {
        e->iov[i] = iov[i];
        h.len += (uint32_t)iov[i].iov_len;
    }
    h.id = e->id;
    peer_hdr_pack(e->hdr, &h);
    s->unsent++;
    if (s->n++ == 0 || e->deadline < cur) {
        /* The reader waits until the earliest deadline of what is in
         * flight: this one may be earlier. */
        peer_io_deadline_lower(&s->rio, e->deadline);
        wake_reader(s);
    }
    return e;
}

/* The unsent frames, a batch at a time, by the one sender that set
 * s->writing (under lock; returns with it held and writing cleared).
 * The batch's parts stay valid while it is written: their requests are
 * not answered before, and fail_all waits for the writer to be gone. */
static void write_queued(struct cvd_peer_stream *s)
{
    struct iovec v[STREAM_BATCH * (1 + STREAM_PARTS)];
    int64_t deadline;
    unsigned k, nv, first;
    int r = 0;

    while (s->unsent && !s->broken && !s->closing) {
        first = s->n - s->unsent;
        deadline = INT64_MAX;
        for (k = 0, nv = 0; k < s->unsent && k < STREAM_BATCH; k++) {
            struct pending *e = &s->q[(s->head + first + k) %
                                      CVD_PEER_STREAM_DEPTH];

            v[nv++] = (struct iovec){ e->hdr, sizeof e->hdr };
            for (int i = 0; i < e->iovcnt; i++)
                v[nv++] = e->iov[i];
            deadline = e->deadline < deadline ? e->deadline : deadline;
        }
        /* Taken off unsent now: their answers may come (and take them
         * off the queue) before this write returns. */
        s->unsent -= k;
        __atomic_store_n(&s->wio.deadline, deadline, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&s->lock);
        r = peer_io_writev(&s->wio, v, (int)nv);
        if (r < 0)
            stream_break(s, r, cv_last_error());
        pthread_mutex_lock(&s->lock);
        if (r < 0)
            break;
        s->written += k;
        pthread_cond_broadcast(&s->cond);
    }
    s->writing = WRITING_NONE;
    pthread_cond_broadcast(&s->cond);
}

/* ---- the reader -------------------------------------------------------- */

/* Completes the oldest request, then takes it off the queue (so that
 * drain returns only after its done did). */
static void complete(struct cvd_peer_stream *s, int err, uint16_t type,
                     const void *resp, size_t len)
{
    struct pending e;

    pthread_mutex_lock(&s->lock);
    if (!s->n) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    /* Plaintext: its sender's sendmsg may not have returned yet (the peer
     * had its last byte); it returns at once, then done may free the
     * parts (see struct pending). */
    while (!s->wio.ssl && s->writing == WRITING_SENDER &&
           s->written <= s->q[s->head].seq)
        pthread_cond_wait(&s->cond, &s->lock);
    e = s->q[s->head];
    pthread_mutex_unlock(&s->lock);
    if (e.done)
        e.done(e.arg, err, type, resp, len);
    pthread_mutex_lock(&s->lock);
    s->head = (s->head + 1) % CVD_PEER_STREAM_DEPTH;
    s->n--;
    if (s->unsent > s->n)
        s->unsent = s->n;       /* failed unwritten (broken) */
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* Once broken or closed: every request in flight fails, oldest first;
 * those past their deadline with -ETIMEDOUT. */
static void fail_all(struct cvd_peer_stream *s)
{
    int64_t now = peer_now_ms();
    struct pending e;
    int err;

    pthread_mutex_lock(&s->lock);
    /* A sender still writing uses the parts of requests: their done (which
     * may free them) waits until it is gone (broken: it stops soon). */
    while (s->writing)
        pthread_cond_wait(&s->cond, &s->lock);
    while (s->n) {
        e = s->q[s->head];
        if (!s->closing && e.deadline <= now)
            err = cv_error(-ETIMEDOUT, "peer %s (%s): no answer within %u "
                           "ms", s->name, s->address, e.timeout_ms);
        else
            err = refusal(s);
        pthread_mutex_unlock(&s->lock);
        complete(s, err, 0, NULL, 0);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
}

/* One answer: it must be the oldest request's. */
static int read_answer(struct cvd_peer_stream *s)
{
    uint8_t hdr[CVD_PEER_HEADER];
    struct peer_hdr h;
    uint32_t want = 0;
    void *nb;
    int r;

    r = peer_io_read(&s->rio, hdr, sizeof hdr);
    if (r == 0)
        r = peer_hdr_unpack(hdr, &h);
    if (r < 0)
        return r;
    if (h.len > s->rcap) {
        if (!(nb = realloc(s->rbuf, h.len)))
            return cv_error(-ENOMEM, "an answer of %u bytes: out of memory",
                            h.len);
        s->rbuf = nb;
        s->rcap = h.len;
    }
    r = h.len ? peer_io_read(&s->rio, s->rbuf, h.len) : 0;
    if (r < 0)
        return r;
    pthread_mutex_lock(&s->lock);
    if (s->n)
        want = s->q[s->head].id;
    pthread_mutex_unlock(&s->lock);
    if (h.type == CVD_PEER_ERROR && (h.id == 0 || h.id != want))
        return peer_error_of("refused", s->rbuf, h.len);
    if (!want || h.id != want)
        return cv_error(-EPROTO, "an answer to request %u, expected %u",
                        h.id, want);
    if (h.type == CVD_PEER_ERROR) {
        char who[sizeof s->name + sizeof s->address + 8];

        snprintf(who, sizeof who, "peer %s (%s)", s->name, s->address);
        complete(s, peer_error_of(who, s->rbuf, h.len), h.type, NULL, 0);
    } else {
        complete(s, 0, h.type, s->rbuf, h.len);
    }
    return 0;
}

/* No sender is writing and the stream has been idle: a PING. */
static void ping(struct cvd_peer_stream *s)
{
    /* Only on an idle stream, with no sender writing: one header, which
     * the socket takes at once.  Senders wait meanwhile (queue): the
     * reader writes no frame of theirs, as a reader blocked on writing
     * could not read the answers that unblock the peer. */
    pthread_mutex_lock(&s->lock);
    if (!s->n && !s->writing && !s->broken && !s->closing) {
        push(s, CVD_PEER_PING, NULL, 0, CVD_PEER_TIMEOUT_MS, NULL, NULL);
        s->writing = WRITING_PING;
        write_queued(s);
    }
    pthread_mutex_unlock(&s->lock);
}

/* Nothing in flight: waits for bytes (a refusal, a close), a wake (a
 * request was queued) or the time to PING.  1: read now. */
static int idle_wait(struct cvd_peer_stream *s)
{
    struct pollfd pf[2] = { { .fd = s->rio.fd, .events = POLLIN },
                            { .fd = s->wake[0], .events = POLLIN } };
    char junk[64];
    int n;

    if (peer_io_pending(&s->rio))
        return 1;
    n = poll(pf, 2, STREAM_PING_MS);
    if (n > 0 && pf[1].revents) {
        if (read(s->wake[0], junk, sizeof junk) < 0 && errno != EAGAIN)
            cvd_debug("peer %s: wake pipe: %s", s->name, strerror(errno));
        return 0;
    }
    if (n > 0)
        return 1;
    if (n == 0)
        ping(s);
    return 0;
}

static void *reader_thread(void *arg)
{
    struct cvd_peer_stream *s = arg;
    int idle, r;

    for (;;) {
        pthread_mutex_lock(&s->lock);
        if (s->broken || s->closing) {
            pthread_mutex_unlock(&s->lock);
            break;
        }
        idle = s->n == 0;
        /* Idle: no deadline until a request is queued (push lowers it;
         * a later one would fire before the request's). */
        __atomic_store_n(&s->rio.deadline, idle ? INT64_MAX : earliest(s),
                         __ATOMIC_RELAXED);
        pthread_mutex_unlock(&s->lock);
        if (idle && !idle_wait(s))
            continue;
        r = read_answer(s);
        if (r == -EBADMSG) {
            cvd_metrics_tls_decrypt_error(s->d->metrics, CVD_TLS_PEER);
            cvd_metrics_peer_decrypt_error(s->d->metrics, s->name);
        }
        if (r == -ETIMEDOUT)
            cv_error(r, "no answer in time");
        if (r < 0)
            stream_break(s, r, cv_last_error());
    }
    fail_all(s);
    return NULL;
}

/* ---- the API ----------------------------------------------------------- */

static void stream_free(struct cvd_peer_stream *s)
{
    peer_link_close(&s->link);
    for (int i = 0; i < 2; i++)
        if (s->wake[i] >= 0)
            close(s->wake[i]);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->ssl_lock);
    free(s->rbuf);
    free(s);
}

static struct cvd_peer_stream *stream_new(struct cvd *d, const char *name,
                                          const char *address)
{
    struct cvd_peer_stream *s = calloc(1, sizeof *s);

    if (!s)
        return NULL;
    s->d = d;
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->address, sizeof s->address, "%s", address);
    s->link = (struct peer_link){ .d = d, .name = s->name,
                                  .address = s->address,
                                  .io = { .fd = -1 } };
    s->wake[0] = s->wake[1] = -1;
    pthread_mutex_init(&s->ssl_lock, NULL);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    return s;
}

int cvd_peer_stream_open(struct cvd *d, const char *name,
                         const char *address, struct cvd_peer_stream **out)
{
    struct cvd_peer_stream *s = stream_new(d, name, address);
    enum cvd_peer_tls mode;
    int r = 0;

    *out = NULL;
    if (!s)
        return cv_error(-ENOMEM, "peer %s: out of memory", name);
    mode = mode_now(d, &s->gen);
    if (mode != CVD_PEER_TLS_OFF && !d->cfg.peer_tls_dir)
        r = cv_error(-EINVAL, "no peer-tls-dir to connect with");
    if (r == 0 && pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) < 0)
        r = cv_error(-errno, "pipe: %s", strerror(errno));
    if (r == 0) {
        peer_io_deadline(&s->link.io, CVD_PEER_TIMEOUT_MS);
        r = peer_link_open(&s->link, mode == CVD_PEER_TLS_OFF);
    }
    /* A stream carries replication only (ciphertext, headers, marks):
     * keys go by cvd_peer_call, so its answers need no wiping. */
    if (r == 0 && s->link.io.ssl)
        SSL_clear_options(s->link.io.ssl, SSL_OP_CLEANSE_PLAINTEXT);
    if (r == 0) {
        s->rio = s->wio = s->link.io;
        s->rio.ssl_lock = s->wio.ssl_lock = s->link.io.ssl ? &s->ssl_lock
                                                           : NULL;
        s->rio.wake_fd = s->wake[0];
        s->rio.use_wake = 1;
        r = -pthread_create(&s->reader, NULL, reader_thread, s);
        if (r < 0)
            cv_error(r, "cannot start the stream's reader: %s",
                     strerror(-r));
    }
    if (r < 0) {
        stream_free(s);
        return cv_error_prefix(r, "peer %s (%s)", name, address);
    }
    *out = s;
    return 0;
}

/* Queues the request (waiting for room) and, unless another sender is
 * writing, writes every frame queued.  *seq: its frame's place. */
static int queue(struct cvd_peer_stream *s, uint16_t type,
                 const struct iovec *iov, int iovcnt, unsigned timeout_ms,
                 cvd_peer_done_fn done, void *arg, uint64_t *seq)
{
    size_t len = 0;
    int r = 0;

    if (!done || iovcnt < 0 || iovcnt > STREAM_PARTS)
        return cv_error(-EINVAL, "peer %s: a request without done or of "
                        "%d parts (at most %d)", s->name, iovcnt,
                        STREAM_PARTS);
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    if (len > CVD_PEER_MAX_PAYLOAD)
        return cv_error(-EMSGSIZE, "peer %s: a frame of %zu bytes (at most "
                        "%u)", s->name, len, CVD_PEER_MAX_PAYLOAD);
    pthread_mutex_lock(&s->lock);
    /* Room, and no PING being written (the reader writes its own frame
     * only); plaintext: no other sender writing (see struct pending). */
    while (!s->broken && !s->closing &&
           (s->n == CVD_PEER_STREAM_DEPTH || s->writing == WRITING_PING ||
            (s->writing && !s->wio.ssl)))
        pthread_cond_wait(&s->cond, &s->lock);
    if (s->broken || s->closing) {
        r = refusal(s);
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    *seq = push(s, type, iov, iovcnt, timeout_ms ? timeout_ms
                : CVD_PEER_TIMEOUT_MS, done, arg)->seq;
    if (!s->writing) {
        s->writing = WRITING_SENDER;
        write_queued(s);
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int cvd_peer_stream_post(struct cvd_peer_stream *s, uint16_t type,
                         const struct iovec *iov, int iovcnt,
                         unsigned timeout_ms, cvd_peer_done_fn done,
                         void *arg)
{
    uint64_t seq;

    return queue(s, type, iov, iovcnt, timeout_ms, done, arg, &seq);
}

int cvd_peer_stream_send(struct cvd_peer_stream *s, uint16_t type,
                         const struct iovec *iov, int iovcnt,
                         unsigned timeout_ms, cvd_peer_done_fn done,
                         void *arg)
{
    uint64_t seq;
    int r;

    if ((r = queue(s, type, iov, iovcnt, timeout_ms, done, arg, &seq)) < 0)
        return r;
    /* Another sender writes it: its parts are used until then (or until
     * a break stops that sender). */
    pthread_mutex_lock(&s->lock);
    while (s->written <= seq && s->writing)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* ---- one call on a stream ------------------------------------------- */

struct call_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int finished, err;
    char msg[512];
    void *resp;
    size_t len;
};

static void call_done(void *arg, int err, uint16_t type, const void *resp,
                      size_t len)
{
    struct call_wait *w = arg;

    (void)type;
    if (err == 0 && (w->resp = malloc(len ? len : 1)) != NULL) {
        memcpy(w->resp, resp, len);
        w->len = len;
    } else if (err == 0) {
        err = cv_error(-ENOMEM, "an answer of %zu bytes: out of memory",
                       len);
    }
    pthread_mutex_lock(&w->lock);
    w->err = err;
    if (err < 0)
        snprintf(w->msg, sizeof w->msg, "%s", cv_last_error());
    w->finished = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int cvd_peer_stream_call(struct cvd_peer_stream *s, uint16_t type,
                         const void *req, size_t len, unsigned timeout_ms,
                         void **resp, size_t *resp_len)
{
    struct call_wait w = { .err = 0 };
    struct iovec v = { (void *)req, len };
    int r;

    *resp = NULL;
    *resp_len = 0;
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    r = cvd_peer_stream_send(s, type, &v, len ? 1 : 0, timeout_ms,
                             call_done, &w);
    if (r == 0) {
        pthread_mutex_lock(&w.lock);
        while (!w.finished)
            pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
        r = w.err;
        if (r < 0)
            cv_error(r, "%s", w.msg);
    }
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    if (r == 0) {
        *resp = w.resp;
        *resp_len = w.len;
    }
    return r;
}

/* ---- state, drain, close --------------------------------------------- */

int cvd_peer_stream_broken(const struct cvd_peer_stream *s)
{
    return __atomic_load_n(&s->broken, __ATOMIC_RELAXED) != 0;
}

int cvd_peer_stream_stale(const struct cvd_peer_stream *s)
{
    unsigned gen;

    mode_now(s->d, &gen);
    return gen != s->gen;
}

int cvd_peer_stream_tls(const struct cvd_peer_stream *s)
{
    return s->link.io.ssl != NULL;
}

void cvd_peer_stream_drain(struct cvd_peer_stream *s)
{
    pthread_mutex_lock(&s->lock);
    while (s->n)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

void cvd_peer_stream_close(struct cvd_peer_stream *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->closing = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    shutdown(s->link.io.fd, SHUT_RDWR);
    wake_reader(s);
    pthread_join(s->reader, NULL);
    stream_free(s);
}

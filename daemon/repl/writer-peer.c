/* The writer's streams, one per replica (peer/peer.h): opened with
 * REPL_OPEN, held by each change in flight, replaced when stale (the
 * peer-tls mode changed: the old one is closed by its last user, so what
 * was in flight on it is answered first), and single requests on them. */
#include "writer-internal.h"
#include "core/error.h"
#include "daemon.h"
#include "log.h"
#include "peer/peer.h"

#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

void repl_peer_why(const struct repl_peer *p, int err, char *buf,
                   size_t len)
{
    snprintf(buf, len, "peer %.64s (%.100s): %.100s", p->node, p->address,
             err == -ETIMEDOUT ? "timed out" : strerror(-err));
}

void repl_conn_put(struct repl_conn *c)
{
    if (c && atomic_fetch_sub(&c->refs, 1) == 1) {
        cvd_peer_stream_close(c->s);
        free(c);
    }
}

/* A new stream to p, with OPEN answered (reply: what the replica holds;
 * may be NULL). */
static int conn_new(struct cvd_repl_writer *w, struct repl_peer *p,
                    struct repl_open_reply *reply, int may_lack,
                    struct repl_conn **out)
{
    struct repl_conn *c = calloc(1, sizeof *c);
    struct repl_open_reply o = { 0 };
    struct repl_req q = { .type = REPL_OPEN, .epoch = w->epoch };
    void *req = NULL, *resp = NULL;
    size_t len = 0, rlen = 0;
    int r;

    if (!c)
        return cv_error(-ENOMEM, "volume %s: out of memory", w->volume);
    atomic_init(&c->refs, 1);
    snprintf(q.volume, sizeof q.volume, "%s", w->volume);
    if ((r = cvd_peer_stream_open(w->d, p->node, p->address, &c->s)) < 0) {
        free(c);
        return r;
    }
    if ((r = repl_encode(&q, &req, &len)) == 0 &&
        (r = cvd_peer_stream_call(c->s, REPL_OPEN, req, len,
                                  REPL_IO_TIMEOUT_MS, &resp, &rlen)) == 0)
        r = repl_open_reply_decode(resp, rlen, &o);
    free(req);
    free(resp);
    /* A node to be rebuilt may hold nothing yet: REBUILD makes it. */
    if (r == -ENOENT && may_lack) {
        memset(&o, 0, sizeof o);
        r = 0;
    }
    if (r < 0) {
        cvd_peer_stream_close(c->s);
        free(c);
        return r;
    }
    if (reply)
        *reply = o;
    else
        repl_open_reply_free(&o);
    *out = c;
    return 0;
}

int repl_conn_open(struct cvd_repl_writer *w, struct repl_peer *p,
                   struct repl_open_reply *reply, int may_lack)
{
    struct repl_conn *c = NULL, *old;
    int r = conn_new(w, p, reply, may_lack, &c);

    if (r < 0)
        return r;
    pthread_mutex_lock(&w->lock);
    old = p->conn;
    p->conn = c;
    pthread_mutex_unlock(&w->lock);
    repl_conn_put(old);
    return 0;
}

/* p's stream, held; replaced first when stale.  NULL: none (the change
 * then fails on p as a broken stream would). */
struct repl_conn *repl_conn_get(struct cvd_repl_writer *w,
                                struct repl_peer *p)
{
    struct repl_conn *c, *fresh = NULL, *old = NULL;

    pthread_mutex_lock(&w->lock);
    c = p->conn;
    if (c && cvd_peer_stream_stale(c->s)) {
        pthread_mutex_unlock(&w->lock);
        if (conn_new(w, p, NULL, 1, &fresh) < 0)
            cvd_warn("volume %s: replica %s: replacing its stream: %s",
                     w->volume, p->node, cv_last_error());
        pthread_mutex_lock(&w->lock);
        if (fresh && p->conn == c) {
            cvd_info("volume %s: replica %s: stream replaced (peer-tls "
                     "changed; %s now)", w->volume, p->node,
                     cvd_peer_stream_tls(fresh->s) ? "TLS" : "plaintext");
            p->conn = fresh;
            fresh = NULL;
            old = c;        /* the peer's hold; users keep theirs */
        }
        c = p->conn;
    }
    if (c)
        atomic_fetch_add(&c->refs, 1);
    pthread_mutex_unlock(&w->lock);
    /* Outside w->lock: the last put closes the stream, which waits for
     * its reader, whose callbacks (the copy's) take w->lock. */
    repl_conn_put(old);
    repl_conn_put(fresh);
    return c;
}

struct call_wait {
    sem_t done;
    int err;
    uint16_t type;
    void *resp;
    size_t len;
    char msg[256];              /* err's message, from the reader thread */
};

static void call_done(void *arg, int err, uint16_t type, const void *resp,
                      size_t len)
{
    struct call_wait *c = arg;

    c->type = type;
    if (err == 0 && len) {
        if ((c->resp = malloc(len))) {
            memcpy(c->resp, resp, len);
            c->len = len;
        } else {
            /* Not a success with an empty answer. */
            err = cv_error(-ENOMEM, "an answer of %zu bytes: out of memory",
                           len);
        }
    }
    c->err = err;
    if (err < 0)
        snprintf(c->msg, sizeof c->msg, "%s", cv_last_error());
    sem_post(&c->done);
}

int repl_peer_send_raw(struct cvd_repl_writer *w, struct repl_peer *p,
                       uint16_t type, const struct iovec *iov, int iovcnt,
                       void **resp, size_t *resp_len)
{
    struct repl_conn *c = repl_conn_get(w, p);
    struct call_wait cw = { .err = 0 };
    int r;

    if (!c)
        return cv_error(-ENOTCONN, "volume %s: replica %s: no stream",
                        w->volume, p->node);
    sem_init(&cw.done, 0, 0);
    r = cvd_peer_stream_send(c->s, type, iov, iovcnt, REPL_IO_TIMEOUT_MS,
                             call_done, &cw);
    if (r < 0)                  /* call_done is not called */
        snprintf(cw.msg, sizeof cw.msg, "%s", cv_last_error());
    if (r == 0) {
        while (sem_wait(&cw.done) != 0)
            ;
        r = cw.err;
    }
    sem_destroy(&cw.done);
    repl_conn_put(c);
    if (r < 0) {
        char why[300];

        free(cw.resp);
        /* A refused REBUILD says why in the replica's words ("peer n3
         * (ADDRESS): node n3: volume c1's parent db1@s1 is not here"):
         * the set keeps it as the reason. */
        if (type == REPL_REBUILD && cw.msg[0])
            return cv_error(r, "%s", cw.msg);
        /* The stream's message says what the replica (or the stream)
         * said, "peer n3 (ADDRESS): volume db1: ...": not only errno's
         * words. */
        if (cw.msg[0])
            return cv_error(r, "volume %s: replica %s: %s", w->volume,
                            p->node, cw.msg);
        repl_peer_why(p, r, why, sizeof why);
        return cv_error(r, "volume %s: replica %s: %s", w->volume, p->node,
                        why);
    }
    if (resp) {
        *resp = cw.resp;
        *resp_len = cw.len;
    } else {
        free(cw.resp);
    }
    return 0;
}

int repl_peer_call(struct cvd_repl_writer *w, struct repl_peer *p,
                   const struct repl_req *req, const void *data,
                   size_t len, void **resp, size_t *resp_len)
{
    struct iovec iov[2];
    void *prefix = NULL;
    size_t plen = 0;
    int r;

    if ((r = repl_encode(req, &prefix, &plen)) < 0)
        return r;
    iov[0].iov_base = prefix;
    iov[0].iov_len = plen;
    iov[1].iov_base = (void *)data;
    iov[1].iov_len = len;
    r = repl_peer_send_raw(w, p, (uint16_t)req->type, iov, data ? 2 : 1,
                           resp, resp_len);
    free(prefix);
    return r;
}

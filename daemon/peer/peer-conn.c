/* One connection to the peer port, on its own thread: the first bytes
 * must be a TLS ClientHello, the handshake must show a certificate from
 * the cluster CA, its name must be a member; then requests are read and
 * answered one after the other until the peer closes, idles, sends a bad
 * frame, or the server stops. */
#include "peer-internal.h"

#include "core/error.h"
#include "core/secmem.h"
#include "daemon.h"
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TLS_HANDSHAKE_RECORD 0x16
#define TLS_MAJOR_VERSION 0x03
/* A BULK buffer larger than this is freed after its request. */
#define BULK_KEEP (4u << 20)
/* Answers held to leave together (peer_io_hold): a stream's writes of
 * 4 KiB come dozens at a time, each answered in a few bytes. */
#define ANSWERS_HELD (64u << 10)

static struct cvd_metrics *metrics(struct peer_conn *c)
{
    return c->p->d->metrics;
}

static void handshake_failed(struct peer_conn *c)
{
    cvd_metrics_tls_handshake(metrics(c), CVD_TLS_PEER, 0);
    cvd_metrics_peer_handshake_failed(metrics(c), c->host);
}

/* What came first, looked at without taking it: a TLS handshake record
 * (0x16 0x03 ..: 0), our frames' magic (a plaintext peer, peer-tls on or
 * off: 1), or anything else, refused (-1). */
static int first_bytes(struct peer_conn *c)
{
    static const unsigned char magic[4] = { 'C', 'V', 'P', '1' };
    struct pollfd pf = { .fd = c->io.fd, .events = POLLIN };
    unsigned char b[4];
    ssize_t n = -1;
    int64_t left;

    peer_io_deadline(&c->io, PEER_HANDSHAKE_MS);
    while ((left = c->io.deadline - peer_now_ms()) > 0) {
        if (poll(&pf, 1, (int)left) < 0 && errno != EINTR)
            break;
        n = recv(c->io.fd, b, sizeof b, MSG_PEEK);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        /* The magic needs all four bytes; a TLS record one or two. */
        if (n > 0 && n < 4 && !memcmp(b, magic, (size_t)n)) {
            poll(NULL, 0, 1);
            continue;
        }
        break;
    }
    if (n <= 0) {
        handshake_failed(c);
        cvd_debug("peer: %s: %s before a TLS handshake", c->addr,
                  n == 0 ? "closed" : "nothing sent");
        return -1;
    }
    if (n == 4 && !memcmp(b, magic, 4))
        return 1;
    if (b[0] != TLS_HANDSHAKE_RECORD ||
        (n >= 2 && b[1] != TLS_MAJOR_VERSION)) {
        handshake_failed(c);
        peer_refuse(&c->p->refusals, metrics(c), CVD_PEER_REFUSED_PLAINTEXT,
                    c->host, c->addr, NULL, NULL);
        return -1;
    }
    return 0;
}

static int handshake(struct peer_conn *c)
{
    enum cvd_peer_refusal why;
    int r;

    c->io.ssl = cv_tls_ssl_new(c->p->server_tls, c->io.fd);
    if (!c->io.ssl) {
        cvd_err("peer: %s: %s", c->addr, cv_last_error());
        return -1;
    }
    /* Keys travel here: OpenSSL wipes its plaintext buffers. */
    SSL_set_options(c->io.ssl, SSL_OP_CLEANSE_PLAINTEXT);
    /* Fewer reads: a stream's requests come many at a time. */
    SSL_set_read_ahead(c->io.ssl, 1);
    SSL_set_default_read_buffer_len(c->io.ssl, PEER_READ_BUFFER);
    r = peer_io_handshake(&c->io, 1);
    if (r == 0) {
        c->session = 1;
        cvd_metrics_tls_handshake(metrics(c), CVD_TLS_PEER, 1);
        return 0;
    }
    handshake_failed(c);
    c->linger = 1;
    if (r == -EBADMSG)
        cvd_metrics_tls_decrypt_error(metrics(c), CVD_TLS_PEER);
    if (c->io.fail == CV_TLS_FAIL_NO_CERT || c->io.fail == CV_TLS_FAIL_VERIFY) {
        why = c->io.fail == CV_TLS_FAIL_NO_CERT ? CVD_PEER_REFUSED_NO_CERT
                                                : CVD_PEER_REFUSED_OTHER_CA;
        peer_refuse(&c->p->refusals, metrics(c), why, c->host, c->addr, NULL,
                    cv_last_error());
    } else {
        cvd_info_limited(&c->p->rl, "peer-handshake", "peer: %s: %s", c->addr,
                         cv_last_error());
    }
    return -1;
}

/* Tells a refused peer why (it is authenticated by the CA: the answer
 * helps its operator), then the connection closes. */
static void refuse_member(struct peer_conn *c, enum cvd_peer_refusal why,
                          const char *name, const char *detail)
{
    char msg[CV_TLS_NAME_MAX + 128];

    peer_refuse(&c->p->refusals, metrics(c), why, c->host, c->addr, name,
                detail);
    snprintf(msg, sizeof msg, "%s is %s", name ? name : "this certificate",
             why == CVD_PEER_REFUSED_REMOVED ? "removed from the cluster" :
             why == CVD_PEER_REFUSED_UNVERIFIED ? "not known to be a member "
             "now (membership cannot be checked)" :
             "not a member of the cluster");
    peer_io_deadline(&c->io, PEER_IO_MS);
    peer_write_error(&c->io, 0, EACCES, msg);
    c->linger = 1;
}

/* A refused client has sent its first request already (TLS 1.3 lets it
 * before it knows).  Closing with those bytes unread would reset the
 * connection, and the reset can overtake our alert or ERROR frame: read
 * them for a moment so that it learns why. */
static void linger(struct peer_conn *c)
{
    struct pollfd pf = { .fd = c->io.fd, .events = POLLIN };
    char junk[4096];
    int64_t end = peer_now_ms() + PEER_LINGER_MS, left;

    shutdown(c->io.fd, SHUT_WR);
    while ((left = end - peer_now_ms()) > 0 && poll(&pf, 1, (int)left) > 0)
        if (read(c->io.fd, junk, sizeof junk) <= 0 && errno != EAGAIN &&
            errno != EINTR)
            break;
}

/* The peer's name from its verified certificate, and whether it is a
 * member that may talk to us now. */
static int admit(struct peer_conn *c)
{
    struct cv_tls_peer id;
    const char *name;
    int m;

    cv_tls_peer_identity(c->io.ssl, &id);
    name = cv_tls_peer_node_name(&id);
    if (!name) {
        refuse_member(c, CVD_PEER_REFUSED_NOT_MEMBER, NULL,
                      "its certificate names no node (no CN or DNS name "
                      "in printable ASCII)");
        return -1;
    }
    cv_clear_error();
    m = c->p->member(c->p->member_arg, name);
    if (m != CVD_PEER_MEMBER) {
        refuse_member(c, m == CVD_PEER_REMOVED ? CVD_PEER_REFUSED_REMOVED :
                      m < 0 ? CVD_PEER_REFUSED_UNVERIFIED :
                      CVD_PEER_REFUSED_NOT_MEMBER, name,
                      m < 0 ? cv_last_error() : NULL);
        return -1;
    }
    snprintf(c->name, sizeof c->name, "%s", name);
    cvd_metrics_peer_session(metrics(c), c->name, c->host, 1);
    cvd_debug("peer: %s: %s connected", c->addr, c->name);
    return 0;
}

static void free_reply(struct cvd_peer_reply *rep)
{
    if (rep->secure)
        cv_secmem_free(rep->data, rep->len);
    else
        free(rep->data);
    rep->data = NULL;
}

/* Runs the handler hd on req and sends its answer. */
static int answer(struct peer_conn *c, const struct peer_hdr *h,
                  const struct peer_handler *hd, const void *req)
{
    struct cvd_peer_reply rep = { 0 };
    char msg[64];
    int r;

    peer_io_deadline(&c->io, PEER_IO_MS);
    if (c->plain && !(hd->flags & CVD_PEER_PLAIN_OK))
        return peer_plain_refuse_type(c, h);
    if (!hd->fn) {
        snprintf(msg, sizeof msg, "no handler for message type 0x%04x",
                 h->type);
        return peer_write_error(&c->io, h->id, EOPNOTSUPP, msg);
    }
    cv_clear_error();
    r = hd->fn(hd->arg, c->name, req, h->len, &rep);
    if (r == 0 && rep.len > CVD_PEER_MAX_PAYLOAD)
        r = cv_error(-EMSGSIZE, "an answer of %zu bytes (at most %u)",
                     rep.len, CVD_PEER_MAX_PAYLOAD);
    if (r < 0) {
        free_reply(&rep);
        return peer_write_error(&c->io, h->id, -r, cv_last_error()[0] ?
                                cv_last_error() : strerror(-r));
    }
    r = peer_write_frame(&c->io, rep.type ? rep.type : h->type, h->id,
                         rep.data, rep.len);
    free_reply(&rep);
    return r;
}

/* Where a request's payload goes: locked memory, or for a BULK handler
 * (ciphertext, up to 16 MiB) the connection's own heap buffer, kept for
 * the next one (no allocation, no page faults per request). */
static void *payload_buf(struct peer_conn *c, const struct peer_handler *hd,
                         size_t len)
{
    void *nb;

    if (!len)
        return NULL;
    if (!(hd->flags & CVD_PEER_BULK))
        return cv_secmem_alloc(len);
    if (len > c->bulk_cap) {
        if (!(nb = realloc(c->bulk, len)))
            return NULL;
        c->bulk = nb;
        c->bulk_cap = len;
    }
    return c->bulk;
}

static void payload_free(struct peer_conn *c, const struct peer_handler *hd,
                         void *buf, size_t len)
{
    if (!(hd->flags & CVD_PEER_BULK)) {
        cv_secmem_free(buf, len);
    } else if (c->bulk_cap > BULK_KEEP) {
        free(c->bulk);          /* a rare big one: not kept */
        c->bulk = NULL;
        c->bulk_cap = 0;
    }
}

/* Why a connection ended, in the log: a closed or idle one quietly. */
static void ended(struct peer_conn *c, int r, const char *what)
{
    if (r == -EBADMSG) {
        cvd_metrics_tls_decrypt_error(metrics(c), CVD_TLS_PEER);
        cvd_metrics_peer_decrypt_error(metrics(c), c->name);
    }
    if (r == -ECONNRESET || r == -ETIMEDOUT || r == -EACCES ||
        c->p->stopping)
        cvd_debug("peer: %s (%s): %s: %s", c->addr, c->name, what,
                  cv_last_error());
    else
        cvd_warn("peer: %s (%s): %s: %s; closing the connection", c->addr,
                 c->name, what, cv_last_error());
}

static int one_request(struct peer_conn *c)
{
    uint8_t hdr[CVD_PEER_HEADER];
    struct peer_handler hd;
    struct peer_hdr h;
    void *buf = NULL;
    int r;

    peer_io_deadline(&c->io, PEER_IDLE_MS);
    r = peer_io_read(&c->io, hdr, sizeof hdr);
    if (r < 0) {
        ended(c, r, "reading a request");
        return r;
    }
    r = peer_hdr_unpack(hdr, &h);
    if (r < 0) {
        ended(c, r, "request");
        return r;
    }
    hd = peer_handler_of(c->p, h.type);
    /* A QUICK handler's answer may wait for the next ones; any other's
     * goes at once, and what waits goes before it runs (it may sync). */
    c->io.hold = (hd.flags & CVD_PEER_QUICK) && (hd.flags & CVD_PEER_BULK);
    if (!c->io.hold && (r = peer_io_flush(&c->io)) < 0) {
        ended(c, r, "answering");
        return r;
    }
    /* OpenSSL wipes what it decrypted of a request that may carry a key;
     * a BULK one's payload is ciphertext, not worth a pass over it. */
    if (c->io.ssl && (hd.flags & CVD_PEER_BULK))
        SSL_clear_options(c->io.ssl, SSL_OP_CLEANSE_PLAINTEXT);
    else if (c->io.ssl)
        SSL_set_options(c->io.ssl, SSL_OP_CLEANSE_PLAINTEXT);
    if (h.len && !(buf = payload_buf(c, &hd, h.len))) {
        ended(c, -ENOMEM, "request payload");
        return -ENOMEM;
    }
    /* A large payload takes a while to come: what waits goes first. */
    if (h.len > ANSWERS_HELD && (r = peer_io_flush(&c->io)) < 0) {
        ended(c, r, "answering");
        payload_free(c, &hd, buf, h.len);
        return r;
    }
    peer_io_deadline(&c->io, PEER_IO_MS);
    r = h.len ? peer_io_read(&c->io, buf, h.len) : 0;
    if (r == 0)
        r = answer(c, &h, &hd, buf);
    if (r < 0)
        ended(c, r, "request");
    payload_free(c, &hd, buf, h.len);
    return r;
}

static void conn_end(struct peer_conn *c)
{
    struct cvd_peer *p = c->p;

    c->io.hold = 0;
    if (peer_io_flush(&c->io) < 0)
        cvd_debug("peer: %s (%s): answers not sent: %s", c->addr, c->name,
                  cv_last_error());
    peer_io_hold_free(&c->io);
    if (c->session) {
        peer_io_close(&c->io);
        cvd_metrics_tls_closed(metrics(c), CVD_TLS_PEER);
    }
    if (c->name[0] && c->plain)
        cvd_metrics_peer_plain_session(metrics(c), c->name, NULL, -1);
    else if (c->name[0])
        cvd_metrics_peer_session(metrics(c), c->name, NULL, -1);
    if (c->linger && !p->stopping)
        linger(c);
    SSL_free(c->io.ssl);
    free(c->bulk);
    /* Closed under the lock: stop never shuts down a reused descriptor. */
    pthread_mutex_lock(&p->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    close(c->io.fd);
    if (--p->nconns == 0)
        pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->lock);
    free(c);
}

static void *conn_thread(void *arg)
{
    struct peer_conn *c = arg;

    int kind = first_bytes(c), r = -1;

    if (kind == 0 && handshake(c) == 0)
        r = admit(c);
    else if (kind == 1)
        r = peer_plain_accept(c);
    if (r == 0 && (r = peer_io_hold(&c->io, ANSWERS_HELD)) < 0)
        cvd_err("peer: %s (%s): %s", c->addr, c->name, cv_last_error());
    while (r == 0)
        r = one_request(c);
    conn_end(c);
    return NULL;
}

void peer_conn_start(struct cvd_peer *p, int fd, const void *sa,
                     unsigned salen)
{
    struct peer_conn *c = calloc(1, sizeof *c);
    pthread_attr_t attr;
    pthread_t t;
    int r;

    if (!c) {
        close(fd);
        return;
    }
    c->p = p;
    c->io.fd = fd;
    peer_addr_name(sa, salen, c->addr, sizeof c->addr, c->host);
    pthread_mutex_lock(&p->lock);
    if (p->stopping || p->nconns >= PEER_MAX_CONNS) {
        pthread_mutex_unlock(&p->lock);
        cvd_warn_limited(&p->rl, "peer-full", "peer: %s: refused: %d "
                         "connections at once already", c->addr,
                         PEER_MAX_CONNS);
        close(fd);
        free(c);
        return;
    }
    c->next = p->conns;
    if (p->conns)
        p->conns->prev = c;
    p->conns = c;
    p->nconns++;
    pthread_mutex_unlock(&p->lock);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    r = pthread_create(&t, &attr, conn_thread, c);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        cvd_err("peer: %s: cannot start a thread: %s", c->addr, strerror(r));
        conn_end(c);
    }
}

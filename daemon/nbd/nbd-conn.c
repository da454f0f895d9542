#include "nbd-conn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "core/error.h"
#include "tls/tls.h"

/* Under TLS a reader that finds nothing waits in poll() without the SSL
 * lock; a writer could in theory pull a record into OpenSSL's buffer in
 * that window, so the reader wakes now and then to look again. */
#define TLS_POLL_MS 500
/* Small messages of several pieces are copied into one TLS record. */
#define TLS_BATCH 16384
/* Records are gathered here and sent with one write per reply instead of
 * one per 16 KiB record; reads take what the socket has, not a record at a
 * time. */
#define TLS_WBUF (256 * 1024)
#define TLS_RBUF (64 * 1024)
#define MAX_IOV 8
/* Read-ahead for plaintext; larger reads (write payloads) bypass it. */
#define RBUF 65536

void cvd_conn_init(struct cvd_conn *c, int fd)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
    pthread_mutex_init(&c->write_lock, NULL);
    pthread_mutex_init(&c->ssl_lock, NULL);
    strcpy(c->peer, "?");
}

void cvd_conn_destroy(struct cvd_conn *c)
{
    if (c->ssl) {
        /* Best effort close_notify; the socket may be gone already. */
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
        ERR_clear_error();
        c->ssl = NULL;
    }
    free(c->rbuf);
    c->rbuf = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    pthread_mutex_destroy(&c->write_lock);
    pthread_mutex_destroy(&c->ssl_lock);
}

void cvd_conn_shutdown_read(struct cvd_conn *c)
{
    shutdown(c->fd, SHUT_RD);
}

static int wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd p = { .fd = fd, .events = events };

    if (poll(&p, 1, timeout_ms) < 0 && errno != EINTR)
        return cv_error(-errno, "poll: %s", strerror(errno));
    return 0;
}

/* Turns a failed SSL_* call into 1 (retry after waiting), or an error. */
static int ssl_retry(struct cvd_conn *c, int err, const char *op)
{
    char buf[256];

    switch (err) {
    case SSL_ERROR_WANT_READ:
        return wait_fd(c->fd, POLLIN, TLS_POLL_MS) < 0 ? -EIO : 1;
    case SSL_ERROR_WANT_WRITE:
        return wait_fd(c->fd, POLLOUT, TLS_POLL_MS) < 0 ? -EIO : 1;
    case SSL_ERROR_ZERO_RETURN:
        return cv_error(-ECONNRESET, "TLS %s: peer closed the session", op);
    case SSL_ERROR_SYSCALL:
        if (errno == 0 || errno == ECONNRESET || errno == EPIPE)
            return cv_error(-ECONNRESET, "TLS %s: connection closed", op);
        return cv_error(-errno, "TLS %s: %s", op, strerror(errno));
    default:
        if (cv_tls_failure_of() == CV_TLS_FAIL_DECRYPT)
            c->decrypt_error = 1;
        return cv_error(-EPROTO, "TLS %s: %s", op,
                        cv_tls_error_string(buf, sizeof buf));
    }
}

static int tls_read(struct cvd_conn *c, uint8_t *buf, size_t len)
{
    size_t done = 0, n;
    int ok, err, r;

    while (done < len) {
        pthread_mutex_lock(&c->ssl_lock);
        ok = SSL_read_ex(c->ssl, buf + done, len - done, &n);
        err = ok ? SSL_ERROR_NONE : SSL_get_error(c->ssl, 0);
        pthread_mutex_unlock(&c->ssl_lock);
        if (ok) {
            done += n;
            continue;
        }
        r = ssl_retry(c, err, "read");
        if (r < 0)
            return r;
    }
    return 0;
}

static int plain_recv(struct cvd_conn *c, uint8_t *buf, size_t len,
                      int flags, size_t *got)
{
    *got = 0;   /* defined on every path, not only on success */
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, flags);

        if (n > 0) {
            *got = (size_t)n;
            return 0;
        }
        if (n == 0)
            return cv_error(-ECONNRESET, "connection closed by the client");
        if (errno != EINTR)
            return cv_error(-errno, "read: %s", strerror(errno));
    }
}

static int plain_read(struct cvd_conn *c, uint8_t *buf, size_t len)
{
    size_t done = 0, n;
    int r;

    if (!c->rbuf && !(c->rbuf = malloc(RBUF)))
        return cv_error(-ENOMEM, "out of memory");
    while (done < len) {
        if (c->rpos < c->rlen) {
            n = c->rlen - c->rpos < len - done ? c->rlen - c->rpos
                                                 : len - done;
            memcpy(buf + done, c->rbuf + c->rpos, n);
            c->rpos += n;
            done += n;
            continue;
        }
        /* Big reads go straight to the caller's buffer. */
        if (len - done >= RBUF / 2) {
            r = plain_recv(c, buf + done, len - done, MSG_WAITALL, &n);
            if (r < 0)
                return r;
            done += n;
            continue;
        }
        r = plain_recv(c, c->rbuf, RBUF, 0, &n);
        if (r < 0)
            return r;
        c->rpos = 0;
        c->rlen = n;
    }
    return 0;
}

size_t cvd_conn_pending(const struct cvd_conn *c)
{
    return c->ssl ? 0 : c->rlen - c->rpos;
}

int cvd_conn_read(struct cvd_conn *c, void *buf, size_t len)
{
    return c->ssl ? tls_read(c, buf, len) : plain_read(c, buf, len);
}

int cvd_conn_discard(struct cvd_conn *c, uint64_t len)
{
    uint8_t junk[16384];
    int r = 0;

    while (len && r == 0) {
        size_t n = len < sizeof junk ? (size_t)len : sizeof junk;

        r = cvd_conn_read(c, junk, n);
        len -= n;
    }
    return r;
}

static int tls_write_one(struct cvd_conn *c, const void *buf, size_t len)
{
    size_t n;
    int ok, err, r;

    if (len == 0)
        return 0;
    /* After WANT_WRITE, OpenSSL wants the same call again; write_lock
     * (held by the caller) keeps other writers out meanwhile. */
    for (;;) {
        pthread_mutex_lock(&c->ssl_lock);
        ok = SSL_write_ex(c->ssl, buf, len, &n);
        err = ok ? SSL_ERROR_NONE : SSL_get_error(c->ssl, 0);
        pthread_mutex_unlock(&c->ssl_lock);
        if (ok)
            return 0;
        r = ssl_retry(c, err, "write");
        if (r < 0)
            return r;
    }
}

/* Sends what the buffering BIO holds; the caller holds write_lock. */
static int tls_flush(struct cvd_conn *c)
{
    char why[256];

    for (;;) {
        BIO *wbio;
        int ok, retry;

        pthread_mutex_lock(&c->ssl_lock);
        wbio = SSL_get_wbio(c->ssl);
        ok = BIO_flush(wbio) > 0;
        retry = !ok && BIO_should_retry(wbio);
        pthread_mutex_unlock(&c->ssl_lock);
        if (ok)
            return 0;
        if (!retry)
            return cv_error(-EIO, "TLS write: %s",
                            errno ? strerror(errno)
                                  : cv_tls_error_string(why, sizeof why));
        if (wait_fd(c->fd, POLLOUT, TLS_POLL_MS) < 0)
            return -EIO;
    }
}

static int tls_writev(struct cvd_conn *c, const struct iovec *iov, int iovcnt)
{
    uint8_t batch[TLS_BATCH];
    size_t total = 0;
    int r = 0;

    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (iovcnt > 1 && total <= sizeof batch) {
        size_t off = 0;

        for (int i = 0; i < iovcnt; i++) {
            memcpy(batch + off, iov[i].iov_base, iov[i].iov_len);
            off += iov[i].iov_len;
        }
        r = tls_write_one(c, batch, total);
        return r < 0 ? r : tls_flush(c);
    }
    for (int i = 0; i < iovcnt && r == 0; i++)
        r = tls_write_one(c, iov[i].iov_base, iov[i].iov_len);
    return r < 0 ? r : tls_flush(c);
}

static int plain_writev(struct cvd_conn *c, const struct iovec *iov,
                        int iovcnt)
{
    struct iovec v[MAX_IOV];
    struct msghdr msg = { .msg_iov = v, .msg_iovlen = (size_t)iovcnt };

    if (iovcnt > MAX_IOV)
        return cv_error(-EINVAL, "write: %d pieces", iovcnt);
    memcpy(v, iov, sizeof *v * (size_t)iovcnt);
    while (msg.msg_iovlen) {
        /* MSG_NOSIGNAL: a client gone away is an error, not SIGPIPE. */
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return cv_error(-errno, "write: %s", strerror(errno));
        }
        while (msg.msg_iovlen && (size_t)n >= msg.msg_iov->iov_len) {
            n -= (ssize_t)msg.msg_iov->iov_len;
            msg.msg_iov++;
            msg.msg_iovlen--;
        }
        if (msg.msg_iovlen) {
            msg.msg_iov->iov_base = (uint8_t *)msg.msg_iov->iov_base + n;
            msg.msg_iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

int cvd_conn_writev(struct cvd_conn *c, const struct iovec *iov, int iovcnt)
{
    int r;

    pthread_mutex_lock(&c->write_lock);
    r = c->ssl ? tls_writev(c, iov, iovcnt) : plain_writev(c, iov, iovcnt);
    pthread_mutex_unlock(&c->write_lock);
    return r;
}

int cvd_conn_write(struct cvd_conn *c, const void *buf, size_t len)
{
    struct iovec v = { .iov_base = (void *)buf, .iov_len = len };

    return cvd_conn_writev(c, &v, 1);
}

/* After the handshake (OpenSSL buffers that itself): a buffering BIO in
 * front of the socket for writes, and read-ahead for reads.  tls_read never
 * polls while OpenSSL may hold unread bytes: it polls only on WANT_READ. */
static int tls_buffer(SSL *ssl)
{
    BIO *sock = SSL_get_wbio(ssl), *buf = BIO_new(BIO_f_buffer());

    if (!buf || !BIO_set_write_buffer_size(buf, TLS_WBUF) ||
        !BIO_up_ref(sock)) {
        BIO_free(buf);
        return cv_error(-ENOMEM, "TLS: out of memory");
    }
    BIO_push(buf, sock);
    SSL_set0_wbio(ssl, buf);
    SSL_set_default_read_buffer_len(ssl, TLS_RBUF);
    SSL_set_read_ahead(ssl, 1);
    return 0;
}

int cvd_conn_start_tls(struct cvd_conn *c, struct cv_tls *tls)
{
    char why[256];
    SSL *ssl;
    int r, flags;

    ssl = cv_tls_ssl_new(tls, c->fd);
    if (!ssl)
        return cv_error_prefix(-ENOMEM, "TLS");
    /* Handshake on the blocking socket: only this thread uses it yet. */
    ERR_clear_error();
    r = SSL_accept(ssl);
    if (r != 1) {
        int err = SSL_get_error(ssl, r);

        if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
            snprintf(why, sizeof why, "%s", errno ? strerror(errno) :
                     "connection closed during the handshake");
        else
            cv_tls_error_string(why, sizeof why);
        SSL_free(ssl);
        return cv_error(-EPROTO, "TLS handshake failed: %s", why);
    }
    cv_tls_peer_name(ssl, c->tls_peer, sizeof c->tls_peer);
    flags = fcntl(c->fd, F_GETFL);
    if (flags < 0 || fcntl(c->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        r = -errno;
        SSL_free(ssl);
        return cv_error(r, "TLS: making the socket non-blocking: %s",
                        strerror(-r));
    }
    r = tls_buffer(ssl);
    if (r < 0) {
        SSL_free(ssl);
        return r;
    }
    c->ssl = ssl;
    return 0;
}

/* The peer port's byte stream: TLS on a non-blocking socket, each call
 * bounded by a deadline (a peer that sends a byte now and then holds no
 * thread forever), and the 16-byte frames on it. */
#include "peer-internal.h"

#include "core/error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

int64_t peer_now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void peer_io_deadline(struct peer_io *io, int ms)
{
    __atomic_store_n(&io->deadline, peer_now_ms() + ms, __ATOMIC_RELAXED);
}

void peer_io_deadline_lower(struct peer_io *io, int64_t at)
{
    int64_t cur = __atomic_load_n(&io->deadline, __ATOMIC_RELAXED);

    while (at < cur && !__atomic_compare_exchange_n(&io->deadline, &cur, at,
                                                    0, __ATOMIC_RELAXED,
                                                    __ATOMIC_RELAXED))
        ;
}

/* Waits for events on the socket until the deadline; a wake (its pipe
 * drained) returns 0 too: the caller tries again, and the next wait looks
 * at the deadline anew. */
static int wait_fd(struct peer_io *io, short events)
{
    struct pollfd p[2] = { { .fd = io->fd, .events = events },
                           { .fd = io->wake_fd, .events = POLLIN } };
    char junk[64];
    int64_t left;
    int n;

    for (;;) {
        left = __atomic_load_n(&io->deadline, __ATOMIC_RELAXED) -
               peer_now_ms();
        if (left <= 0)
            return cv_error(-ETIMEDOUT, "timed out");
        if (left > PEER_IDLE_MS)
            left = PEER_IDLE_MS;    /* no deadline (INT64_MAX): look again */
        n = poll(p, io->use_wake ? 2 : 1, (int)left);
        if (n > 0 && io->use_wake && p[1].revents) {
            if (read(io->wake_fd, junk, sizeof junk) < 0 && errno != EAGAIN)
                return cv_error(-errno, "wake pipe: %s", strerror(errno));
            continue;           /* the deadline may have moved */
        }
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return cv_error(-errno, "poll: %s", strerror(errno));
    }
}

enum io_op { IO_READ, IO_WRITE, IO_ACCEPT, IO_CONNECT };

/* One SSL call, under ssl_lock when the SSL is shared; 0 done, else its
 * SSL_get_error code (taken under the lock too) and errno in *sys. */
static int ssl_call(struct peer_io *io, enum io_op op, void *buf, size_t len,
                    size_t *n, int *sys)
{
    int ret, err = 0;

    if (io->ssl_lock)
        pthread_mutex_lock(io->ssl_lock);
    errno = 0;
    switch (op) {
    case IO_READ:
        ret = SSL_read_ex(io->ssl, buf, len, n);
        break;
    case IO_WRITE:
        ret = SSL_write_ex(io->ssl, buf, len, n);
        break;
    case IO_ACCEPT:
        ret = SSL_accept(io->ssl);
        break;
    default:
        ret = SSL_connect(io->ssl);
        break;
    }
    *sys = errno;
    if (ret != 1)
        err = SSL_get_error(io->ssl, ret);
    if (io->ssl_lock)
        pthread_mutex_unlock(io->ssl_lock);
    return err;
}

/* After a failed SSL call: 0 to try again (it waited), or the error. */
static int ssl_fail(struct peer_io *io, int err, int sys, const char *op)
{
    char why[256];

    switch (err) {
    case SSL_ERROR_WANT_READ:
        return wait_fd(io, POLLIN);
    case SSL_ERROR_WANT_WRITE:
        return wait_fd(io, POLLOUT);
    case SSL_ERROR_ZERO_RETURN:
        return cv_error(-ECONNRESET, "TLS %s: closed by the peer", op);
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && (sys == 0 || sys == ECONNRESET ||
                                      sys == EPIPE)) {
            ERR_clear_error();
            return cv_error(-ECONNRESET, "TLS %s: connection closed", op);
        }
        if (ERR_peek_error() == 0)
            return cv_error(-sys, "TLS %s: %s", op, strerror(sys));
        /* OpenSSL said why */
        __attribute__((fallthrough));
    default:
        /* Gone without close_notify: a close like any other. */
        if (ERR_GET_REASON(ERR_peek_error()) ==
            SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error();
            return cv_error(-ECONNRESET, "TLS %s: connection closed", op);
        }
        io->fail = cv_tls_failure_of();
        cv_tls_error_string(why, sizeof why);
        return cv_error(io->fail == CV_TLS_FAIL_DECRYPT ? -EBADMSG : -EPROTO,
                        "TLS %s: %s", op, why);
    }
}

int peer_io_handshake(struct peer_io *io, int server)
{
    size_t n;
    int err, sys, r;

    ERR_clear_error();
    io->fail = CV_TLS_FAIL_OTHER;
    for (;;) {
        err = ssl_call(io, server ? IO_ACCEPT : IO_CONNECT, NULL, 0,
                       &n, &sys);
        if (!err)
            return 0;
        r = ssl_fail(io, err, sys, "handshake");
        if (r < 0)
            return r;
    }
}

/* Plaintext: a socket error as a message, or 0 after waiting for more. */
static int plain_fail(struct peer_io *io, ssize_t n, short events,
                      const char *op)
{
    if (n == 0)
        return cv_error(-ECONNRESET, "%s: closed by the peer", op);
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return wait_fd(io, events);
    if (errno == EINTR)
        return 0;
    if (errno == ECONNRESET || errno == EPIPE)
        return cv_error(-ECONNRESET, "%s: connection closed", op);
    return cv_error(-errno, "%s: %s", op, strerror(errno));
}

int peer_io_read(struct peer_io *io, void *buf, size_t len)
{
    size_t done = 0, n;
    ssize_t got;
    int err, sys, r;

    if (!io->ssl) {
        while (done < len) {
            got = recv(io->fd, (char *)buf + done, len - done, 0);
            if (got > 0) {
                done += (size_t)got;
                continue;
            }
            if (got < 0 && errno == EAGAIN && io->held_len) {
                if ((r = peer_io_flush(io)) < 0)
                    return r;
                continue;
            }
            r = plain_fail(io, got, POLLIN, "read");
            if (r < 0)
                return r;
        }
        return 0;
    }
    ERR_clear_error();
    while (done < len) {
        err = ssl_call(io, IO_READ, (char *)buf + done, len - done, &n,
                       &sys);
        if (!err) {
            done += n;
            continue;
        }
        if (err == SSL_ERROR_WANT_READ && io->held_len) {
            if ((r = peer_io_flush(io)) < 0)
                return r;
            continue;
        }
        r = ssl_fail(io, err, sys, "read");
        if (r < 0)
            return r;
    }
    return 0;
}

static int plain_writev(struct peer_io *io, const struct iovec *iov, int cnt)
{
    struct iovec v[64];
    struct msghdr mh = { .msg_iov = v };
    ssize_t got;
    int r, i;

    if (cnt > 64)
        return cv_error(-EINVAL, "write: %d parts (at most 64)", cnt);
    memcpy(v, iov, sizeof *v * (size_t)cnt);
    for (i = 0; i < cnt && !v[i].iov_len; i++)
        ;
    while (i < cnt) {
        mh.msg_iov = v + i;
        mh.msg_iovlen = (size_t)(cnt - i);
        got = sendmsg(io->fd, &mh, MSG_NOSIGNAL);
        if (got < 0) {
            r = plain_fail(io, got, POLLOUT, "write");
            if (r < 0)
                return r;
            continue;
        }
        for (; i < cnt && (size_t)got >= v[i].iov_len; i++)
            got -= (ssize_t)v[i].iov_len;
        if (i < cnt) {
            v[i].iov_base = (char *)v[i].iov_base + got;
            v[i].iov_len -= (size_t)got;
        }
    }
    return 0;
}

int peer_io_write(struct peer_io *io, const void *buf, size_t len)
{
    size_t done = 0, n;
    int err, sys, r;

    if (!io->ssl) {
        struct iovec v = { (void *)buf, len };

        return plain_writev(io, &v, 1);
    }
    ERR_clear_error();
    while (done < len) {
        err = ssl_call(io, IO_WRITE, (char *)buf + done, len - done, &n,
                       &sys);
        if (!err) {
            done += n;
            continue;
        }
        r = ssl_fail(io, err, sys, "write");
        if (r < 0)
            return r;
    }
    return 0;
}

/* TLS: parts smaller than this are gathered with their neighbours into
 * one record; larger ones are written where they are (no copy). */
#define GATHER_MAX 16384

/* 1 if the parts were appended to the held frames. */
static int held_append(struct peer_io *io, const struct iovec *iov, int n)
{
    size_t len = 0;

    for (int i = 0; i < n; i++)
        len += iov[i].iov_len;
    if (!io->hold || len > io->held_cap - io->held_len)
        return 0;
    for (int i = 0; i < n; i++) {
        memcpy(io->held + io->held_len, iov[i].iov_base, iov[i].iov_len);
        io->held_len += iov[i].iov_len;
    }
    return 1;
}

static int writev_now(struct peer_io *io, const struct iovec *iov, int n);

int peer_io_writev(struct peer_io *io, const struct iovec *iov, int n)
{
    int r;

    if (!io->held_cap)
        return writev_now(io, iov, n);
    if (held_append(io, iov, n))
        return 0;
    /* Full, or this frame may not wait: what is held goes first. */
    if ((r = peer_io_flush(io)) < 0)
        return r;
    return held_append(io, iov, n) ? 0 : writev_now(io, iov, n);
}

int peer_io_hold(struct peer_io *io, size_t cap)
{
    if (!(io->held = malloc(cap)))
        return cv_error(-ENOMEM, "a buffer of %zu bytes: out of memory",
                        cap);
    io->held_cap = cap;
    io->held_len = 0;
    return 0;
}

int peer_io_flush(struct peer_io *io)
{
    int64_t saved = __atomic_load_n(&io->deadline, __ATOMIC_RELAXED);
    struct iovec v = { io->held, io->held_len };
    int r;

    if (!io->held_len)
        return 0;
    peer_io_deadline(io, PEER_IO_MS);
    r = writev_now(io, &v, 1);
    __atomic_store_n(&io->deadline, saved, __ATOMIC_RELAXED);
    io->held_len = 0;
    return r;
}

void peer_io_hold_free(struct peer_io *io)
{
    free(io->held);
    io->held = NULL;
    io->held_cap = io->held_len = 0;
}

static int writev_now(struct peer_io *io, const struct iovec *iov, int n)
{
    uint8_t gather[GATHER_MAX];
    size_t used = 0, most = 0;
    int r = 0, i;

    if (!io->ssl)
        return plain_writev(io, iov, n);
    for (i = 0; i < n && r == 0; i++) {
        if (iov[i].iov_len <= sizeof gather - used) {
            memcpy(gather + used, iov[i].iov_base, iov[i].iov_len);
            used += iov[i].iov_len;
            most = used > most ? used : most;
            continue;
        }
        if (used)
            r = peer_io_write(io, gather, used);
        used = 0;
        if (r == 0)
            r = peer_io_write(io, iov[i].iov_base, iov[i].iov_len);
    }
    if (r == 0 && used)
        r = peer_io_write(io, gather, used);
    /* What was gathered may be a key (cvd_peer_call's answers). */
    OPENSSL_cleanse(gather, most);
    return r;
}

int peer_io_pending(struct peer_io *io)
{
    int n;

    if (!io->ssl)
        return 0;
    if (io->ssl_lock)
        pthread_mutex_lock(io->ssl_lock);
    n = SSL_has_pending(io->ssl);
    if (io->ssl_lock)
        pthread_mutex_unlock(io->ssl_lock);
    return n;
}

void peer_io_close(struct peer_io *io)
{
    if (io->ssl) {
        if (io->ssl_lock)
            pthread_mutex_lock(io->ssl_lock);
        SSL_shutdown(io->ssl);      /* one try: the socket is non-blocking */
        if (io->ssl_lock)
            pthread_mutex_unlock(io->ssl_lock);
        ERR_clear_error();
    }
}

/* ---- frames -------------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
    v = htonl(v);
    memcpy(p, &v, 4);
}

static void put16(uint8_t *p, uint16_t v)
{
    v = htons(v);
    memcpy(p, &v, 2);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return ntohl(v);
}

static uint16_t get16(const uint8_t *p)
{
    uint16_t v;

    memcpy(&v, p, 2);
    return ntohs(v);
}

void peer_hdr_pack(uint8_t out[CVD_PEER_HEADER], const struct peer_hdr *h)
{
    put32(out, CVD_PEER_MAGIC);
    put16(out + 4, h->type);
    put16(out + 6, h->flags);
    put32(out + 8, h->len);
    put32(out + 12, h->id);
}

int peer_hdr_unpack(const uint8_t in[CVD_PEER_HEADER], struct peer_hdr *h)
{
    uint32_t magic = get32(in);

    h->type = get16(in + 4);
    h->flags = get16(in + 6);
    h->len = get32(in + 8);
    h->id = get32(in + 12);
    if (magic != CVD_PEER_MAGIC)
        return cv_error(-EPROTO, "bad frame: magic 0x%08x, expected "
                        "0x%08x (\"CVP1\")", magic, CVD_PEER_MAGIC);
    if (h->flags)
        return cv_error(-EPROTO, "bad frame: flags 0x%04x (none are "
                        "defined)", h->flags);
    if (h->len > CVD_PEER_MAX_PAYLOAD)
        return cv_error(-EPROTO, "bad frame: %u bytes of payload, more "
                        "than the %u allowed", h->len, CVD_PEER_MAX_PAYLOAD);
    return 0;
}

int peer_write_framev(struct peer_io *io, uint16_t type, uint32_t id,
                      const struct iovec *iov, int n)
{
    struct peer_hdr h = { .type = type, .id = id };
    struct iovec v[1 + 16];
    uint8_t hdr[CVD_PEER_HEADER];
    size_t len = 0;

    if (n > 16)
        return cv_error(-EINVAL, "a frame of %d parts (at most 16)", n);
    for (int i = 0; i < n; i++) {
        len += iov[i].iov_len;
        v[1 + i] = iov[i];
    }
    if (len > CVD_PEER_MAX_PAYLOAD)
        return cv_error(-EMSGSIZE, "a frame of %zu bytes (at most %u)", len,
                        CVD_PEER_MAX_PAYLOAD);
    h.len = (uint32_t)len;
    peer_hdr_pack(hdr, &h);
    v[0] = (struct iovec){ hdr, sizeof hdr };
    return peer_io_writev(io, v, 1 + n);
}

int peer_write_frame(struct peer_io *io, uint16_t type, uint32_t id,
                     const void *data, size_t len)
{
    struct iovec v = { (void *)data, len };

    return peer_write_framev(io, type, id, &v, len ? 1 : 0);
}

int peer_write_error(struct peer_io *io, uint32_t id, int err,
                     const char *text)
{
    uint8_t buf[4 + PEER_ERROR_TEXT_MAX];
    size_t n = strnlen(text, PEER_ERROR_TEXT_MAX);

    put32(buf, (uint32_t)err);
    memcpy(buf + 4, text, n);
    return peer_write_frame(io, CVD_PEER_ERROR, id, buf, 4 + n);
}

int peer_error_of(const char *who, const uint8_t *data, size_t len)
{
    char text[PEER_ERROR_TEXT_MAX + 1];
    int32_t err;
    size_t i, n;

    if (len < 4)
        return cv_error(-EPROTO, "an error answer of %zu bytes (no errno)",
                        len);
    err = (int32_t)get32(data);
    n = len - 4 < PEER_ERROR_TEXT_MAX ? len - 4 : PEER_ERROR_TEXT_MAX;
    /* The peer's text goes into our messages and logs: printable only. */
    for (i = 0; i < n; i++)
        text[i] = data[4 + i] >= 0x20 && data[4 + i] < 0x7f
                  ? (char)data[4 + i] : '?';
    text[n] = '\0';
    if (err <= 0 || err > 4095)
        err = EIO;
    return cv_error(-err, "%s%s%s", who ? who : "", who ? ": " : "",
                    n ? text : strerror(err));
}

/* ---- addresses ----------------------------------------------------------- */

int peer_split_hostport(const char *what, const char *spec, char *host,
                        size_t hlen, const char **port)
{
    const char *colon, *h = spec;
    size_t n;

    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');

        if (!end || end[1] != ':')
            return cv_error(-EINVAL, "%s \"%s\": expected [ADDRESS]:PORT",
                            what, spec);
        h = spec + 1;
        n = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(spec, ':');
        if (!colon)
            return cv_error(-EINVAL, "%s \"%s\": expected HOST:PORT", what,
                            spec);
        n = (size_t)(colon - spec);
    }
    if (n >= hlen || !colon[1])
        return cv_error(-EINVAL, "%s \"%s\": bad host or port", what, spec);
    memcpy(host, h, n);
    host[n] = '\0';
    *port = colon + 1;
    return 0;
}

void cvd_peer_own_host(const char *peer_listen, char *host, size_t len)
{
    const char *port;

    if (!peer_listen || peer_split_hostport("peer-listen", peer_listen, host,
                                            len, &port) < 0) {
        cv_clear_error();
        host[0] = '\0';
        return;
    }
    if (!strcmp(host, "*") || !strcmp(host, "0.0.0.0") || !strcmp(host, "::"))
        host[0] = '\0';
}

void peer_addr_name(const void *sa, unsigned len, char *buf, size_t blen,
                    char host[PEER_ADDR_MAX])
{
    const struct sockaddr *s = sa;
    char serv[16];

    if (getnameinfo(s, len, host, PEER_ADDR_MAX, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV)) {
        snprintf(host, PEER_ADDR_MAX, "?");
        snprintf(buf, blen, "?");
    } else if (s->sa_family == AF_INET6) {
        snprintf(buf, blen, "[%s]:%s", host, serv);
    } else {
        snprintf(buf, blen, "%s:%s", host, serv);
    }
}

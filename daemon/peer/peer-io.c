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
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/err.h>

int64_t peer_now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void peer_io_deadline(struct peer_io *io, int ms)
{
    io->deadline = peer_now_ms() + ms;
}

static int wait_fd(struct peer_io *io, short events)
{
    struct pollfd p = { .fd = io->fd, .events = events };
    int64_t left;
    int n;

    for (;;) {
        left = io->deadline - peer_now_ms();
        if (left <= 0)
            return cv_error(-ETIMEDOUT, "timed out");
        n = poll(&p, 1, (int)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return cv_error(-errno, "poll: %s", strerror(errno));
    }
}

/* After a failed SSL call: 0 to try again (it waited), or the error. */
static int ssl_fail(struct peer_io *io, int ret, const char *op)
{
    int err = SSL_get_error(io->ssl, ret);
    char why[256];

    switch (err) {
    case SSL_ERROR_WANT_READ:
        return wait_fd(io, POLLIN);
    case SSL_ERROR_WANT_WRITE:
        return wait_fd(io, POLLOUT);
    case SSL_ERROR_ZERO_RETURN:
        return cv_error(-ECONNRESET, "TLS %s: closed by the peer", op);
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && (errno == 0 || errno == ECONNRESET ||
                                      errno == EPIPE)) {
            ERR_clear_error();
            return cv_error(-ECONNRESET, "TLS %s: connection closed", op);
        }
        if (ERR_peek_error() == 0)
            return cv_error(-errno, "TLS %s: %s", op, strerror(errno));
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
    int ret, r;

    ERR_clear_error();
    io->fail = CV_TLS_FAIL_OTHER;
    for (;;) {
        ret = server ? SSL_accept(io->ssl) : SSL_connect(io->ssl);
        if (ret == 1)
            return 0;
        r = ssl_fail(io, ret, "handshake");
        if (r < 0)
            return r;
    }
}

int peer_io_read(struct peer_io *io, void *buf, size_t len)
{
    size_t done = 0, n;
    int r;

    ERR_clear_error();
    while (done < len) {
        if (SSL_read_ex(io->ssl, (char *)buf + done, len - done, &n)) {
            done += n;
            continue;
        }
        r = ssl_fail(io, 0, "read");
        if (r < 0)
            return r;
    }
    return 0;
}

int peer_io_write(struct peer_io *io, const void *buf, size_t len)
{
    size_t done = 0, n;
    int r;

    ERR_clear_error();
    while (done < len) {
        if (SSL_write_ex(io->ssl, (const char *)buf + done, len - done, &n)) {
            done += n;
            continue;
        }
        r = ssl_fail(io, 0, "write");
        if (r < 0)
            return r;
    }
    return 0;
}

void peer_io_close(struct peer_io *io)
{
    if (io->ssl) {
        SSL_shutdown(io->ssl);      /* one try: the socket is non-blocking */
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

int peer_write_frame(struct peer_io *io, uint16_t type, uint32_t id,
                     const void *data, size_t len)
{
    struct peer_hdr h = { .type = type, .len = (uint32_t)len, .id = id };
    uint8_t hdr[CVD_PEER_HEADER];
    int r;

    if (len > CVD_PEER_MAX_PAYLOAD)
        return cv_error(-EMSGSIZE, "a frame of %zu bytes (at most %u)", len,
                        CVD_PEER_MAX_PAYLOAD);
    peer_hdr_pack(hdr, &h);
    r = peer_io_write(io, hdr, sizeof hdr);
    if (r == 0 && len)
        r = peer_io_write(io, data, len);
    return r;
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

/* cvd_peer_call: one request to another node over its peer port.  The
 * server must prove it is the node we mean: its certificate chains to the
 * cluster CA (OpenSSL checks that in the handshake, purpose serverAuth)
 * and its name (CN, else first DNS name) is exactly the name asked for --
 * not merely a certificate of the cluster, which every member has. */
#include "peer-internal.h"

#include "core/error.h"
#include "core/secmem.h"
#include "daemon.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void peer_nodelay(int fd)
{
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Connections leave from the host of our own peer-listen (when it names
 * one, numerically): that is the address the other nodes have for us, and
 * a plaintext peer is accepted only from its member's address. */
static void bind_own_host(struct peer_link *c, int fd, int family)
{
    struct addrinfo hints = { .ai_family = family,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICHOST | AI_PASSIVE };
    struct addrinfo *res = NULL;
    char host[256];

    cvd_peer_own_host(c->d->cfg.peer_listen, host, sizeof host);
    if (!host[0] || getaddrinfo(host, "0", &hints, &res) != 0)
        return;
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
        cvd_debug("peer %s: binding to %s: %s", c->name, host,
                  strerror(errno));
    freeaddrinfo(res);
}

/* A non-blocking connect to one address, finished by until (ms). */
static int connect_one(struct peer_link *c, const struct addrinfo *ai,
                       int64_t until)
{
    struct pollfd pf;
    socklen_t elen = sizeof(int);
    int fd, err = 0, n;
    int64_t left;

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                ai->ai_protocol);
    if (fd < 0)
        return -errno;
    bind_own_host(c, fd, ai->ai_family);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS)
        err = errno;
    pf = (struct pollfd){ .fd = fd, .events = POLLOUT };
    while (!err && (left = until - peer_now_ms()) > 0 &&
           (n = poll(&pf, 1, (int)left)) <= 0)
        if (n < 0 && errno != EINTR)
            err = errno;
    if (!err && !(pf.revents & (POLLOUT | POLLERR | POLLHUP)))
        err = ETIMEDOUT;
    if (!err && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
        err = errno;
    if (err) {
        close(fd);
        return -err;
    }
    peer_nodelay(fd);
    c->io.fd = fd;
    return 0;
}

static int dial(struct peer_link *c)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    struct addrinfo *res = NULL, *ai;
    const char *port;
    /* A member answers a SYN at once (a lost one is sent again after 1 s):
     * one that has not within CVD_PEER_CONNECT_MS is down or cut off, and
     * its caller (an attach's OPEN) goes on without it sooner.  The
     * handshake after keeps the rest of the caller's deadline. */
    int64_t start = peer_now_ms(), until = start + CVD_PEER_CONNECT_MS;
    int r;

    if (until > c->io.deadline)
        until = c->io.deadline;
    r = peer_split_hostport("address", c->address, c->host, sizeof c->host,
                            &port);
    if (r < 0)
        return r;
    r = getaddrinfo(c->host, port, &hints, &res);
    if (r != 0)
        return cv_error(-EHOSTUNREACH, "%s", gai_strerror(r));
    r = -EHOSTUNREACH;
    for (ai = res; ai && r < 0; ai = ai->ai_next)
        r = connect_one(c, ai, until);
    freeaddrinfo(res);
    if (r == -ETIMEDOUT)
        return cv_error(r, "connect: no answer within %lld ms",
                        (long long)(until - start));
    if (r < 0)
        return cv_error(r, "connect: %s", strerror(-r));
    return 0;
}

/* The handshake, and the name the server's certificate carries. */
static int secure(struct peer_link *c)
{
    struct cvd_metrics *m = c->d->metrics;
    struct cv_tls_config cfg = { .x509_dir = c->d->cfg.peer_tls_dir };
    struct cv_tls_peer id;
    const char *got;
    int r = 0;

    /* Made per link, from the files as they are now: a renewed
     * certificate is used at once, and no context is shared with the
     * peer port's server, which may stop meanwhile.  It costs reading
     * three small files; calls are rare (joins, rotations, stats), and a
     * stream lives long. */
    r = cv_tls_client_new(&cfg, &c->tls);
    if (r < 0)
        return cv_error_prefix(r, "peer-tls-dir");
    c->io.ssl = cv_tls_ssl_new(c->tls, c->io.fd);
    if (!c->io.ssl)
        return -ENOMEM;
    SSL_set_options(c->io.ssl, SSL_OP_CLEANSE_PLAINTEXT);
    /* Fewer reads: a stream's answers come many at a time. */
    SSL_set_read_ahead(c->io.ssl, 1);
    SSL_set_default_read_buffer_len(c->io.ssl, PEER_READ_BUFFER);
    r = peer_io_handshake(&c->io, 0);
    if (r == 0) {
        cv_tls_peer_identity(c->io.ssl, &id);
        got = cv_tls_peer_node_name(&id);
        if (!got || strcmp(got, c->name))
            r = cv_error(-EACCES, "its certificate is for %s, not %s "
                         "(refusing it)", got ? got : "no node name",
                         c->name);
    }
    if (r < 0) {
        cvd_metrics_tls_handshake(m, CVD_TLS_PEER, 0);
        cvd_metrics_peer_handshake_failed(m, c->host);
        return r;
    }
    c->session = 1;
    cvd_metrics_tls_handshake(m, CVD_TLS_PEER, 1);
    cvd_metrics_peer_session(m, c->name, c->host, 1);
    return 0;
}

/* The answer to request id: its header, then its payload in locked
 * memory; an ERROR answer as its errno and message. */
static int receive(struct peer_link *c, uint32_t id, void **resp, size_t *len,
                   uint16_t *type)
{
    uint8_t hdr[CVD_PEER_HEADER];
    struct peer_hdr h;
    void *buf = NULL;
    int r;

    r = peer_io_read(&c->io, hdr, sizeof hdr);
    if (r == 0)
        r = peer_hdr_unpack(hdr, &h);
    if (r == 0 && h.id != id && h.type != CVD_PEER_ERROR)
        r = cv_error(-EPROTO, "an answer to request %u, not %u", h.id, id);
    if (r == 0 && h.len && !(buf = cv_secmem_alloc(h.len)))
        r = -ENOMEM;
    if (r == 0 && h.len)
        r = peer_io_read(&c->io, buf, h.len);
    /* Request id 0: the server refused us before reading a request. */
    if (r == 0 && h.type == CVD_PEER_ERROR)
        r = peer_error_of(h.id == id ? NULL : "refused", buf, h.len);
    if (r < 0) {
        cv_secmem_free(buf, h.len);
        return r;
    }
    *resp = buf;
    *len = h.len;
    if (type)
        *type = h.type;
    return 0;
}

int peer_link_open(struct peer_link *c, int plain)
{
    int r = dial(c);

    if (r == 0)
        r = plain ? peer_plain_hello(c) : secure(c);
    return r;
}

void peer_link_close(struct peer_link *c)
{
    if (c->session && c->plain) {
        cvd_metrics_peer_plain_session(c->d->metrics, c->name, NULL, -1);
    } else if (c->session) {
        peer_io_close(&c->io);
        cvd_metrics_tls_closed(c->d->metrics, CVD_TLS_PEER);
        cvd_metrics_peer_session(c->d->metrics, c->name, NULL, -1);
    }
    SSL_free(c->io.ssl);
    if (c->io.fd >= 0)
        close(c->io.fd);
    cv_tls_free(c->tls);
}

int cvd_peer_call(struct cvd *d, const char *name, const char *address,
                  uint16_t type, const void *req, size_t len,
                  void **resp, size_t *resp_len, uint16_t *resp_type)
{
    struct peer_link c = { .d = d, .name = name, .address = address,
                           .io = { .fd = -1 } };
    const uint32_t id = 1;      /* one request per connection */
    int r;

    *resp = NULL;
    *resp_len = 0;
    if (!d->cfg.peer_tls_dir)
        return cv_error(-EINVAL, "peer %s: no peer-tls-dir to call it "
                        "with", name);
    peer_io_deadline(&c.io, CVD_PEER_TIMEOUT_MS);
    r = peer_link_open(&c, 0);     /* keys and KEKs: TLS always */
    if (r == 0) {
        peer_io_deadline(&c.io, CVD_PEER_TIMEOUT_MS);
        r = peer_write_frame(&c.io, type, id, req, len);
    }
    if (r == 0) {
        peer_io_deadline(&c.io, CVD_PEER_TIMEOUT_MS);
        r = receive(&c, id, resp, resp_len, resp_type);
    }
    if (r == -EBADMSG) {
        cvd_metrics_tls_decrypt_error(d->metrics, CVD_TLS_PEER);
        if (c.session)
            cvd_metrics_peer_decrypt_error(d->metrics, name);
    }
    peer_link_close(&c);
    return r < 0 ? cv_error_prefix(r, "peer %s (%s)", name, address) : 0;
}

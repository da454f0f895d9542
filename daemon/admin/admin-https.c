/* HTTPS for the admin API with OpenSSL rather than libmicrohttpd's GnuTLS,
 * so one TLS library and one set of credentials (lib/tls/tls.h) serve NBD and
 * the admin API alike.
 *
 * We accept TCP connections ourselves and do the TLS handshake; each
 * connection then gets a socketpair, one end handed to MHD with
 * MHD_add_connection as if the client had connected there, the other end
 * relayed to and from the SSL by a thread of ours.  Every wait polls a
 * stop eventfd too, so stopping is prompt even mid-handshake. */
#include "admin-internal.h"
#include "daemon.h"
#include "core/error.h"
#include "log.h"
#include "tls/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define HANDSHAKE_TIMEOUT_MS 15000

struct cvd_admin_https {
    struct MHD_Daemon *mhd;
    struct cv_tls *tls;
    int listen_fd, stop_fd;
    pthread_t acceptor;
    int started;
    pthread_mutex_t lock;       /* guards relays */
    pthread_cond_t idle;
    unsigned relays;            /* relay threads still running */
};

struct relay {
    struct cvd_admin_https *h;
    int fd, pair;               /* the client's TCP socket, our pair end */
    char peer[NI_MAXHOST + NI_MAXSERV + 4];
    char who[256];              /* the client certificate's name, or "" */
    SSL *ssl;
};

/* Waits for fd to be ready for events (or for stop); 1 ready, 0 timed
 * out or stopping, -1 error. */
static int wait_fd(struct cvd_admin_https *h, int fd, short events, int ms)
{
    struct pollfd p[2] = { { .fd = fd, .events = events },
                           { .fd = h->stop_fd, .events = POLLIN } };
    int n;

    do
        n = poll(p, 2, ms);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if (n == 0 || p[1].revents)
        return 0;
    return 1;
}

/* Waits as OpenSSL asks after a WANT_READ / WANT_WRITE. */
static int ssl_wait(struct relay *rl, int ret, int ms)
{
    int err = SSL_get_error(rl->ssl, ret);

    if (err == SSL_ERROR_WANT_READ)
        return wait_fd(rl->h, rl->fd, POLLIN, ms);
    if (err == SSL_ERROR_WANT_WRITE)
        return wait_fd(rl->h, rl->fd, POLLOUT, ms);
    return -1;
}

static int handshake(struct relay *rl)
{
    char why[256];
    int ret, w;

    while ((ret = SSL_accept(rl->ssl)) != 1) {
        w = ssl_wait(rl, ret, HANDSHAKE_TIMEOUT_MS);
        if (w <= 0) {
            cvd_warn("admin https: %s: TLS handshake failed: %s", rl->peer,
                     w == 0 ? "timed out or stopping" :
                     cv_tls_error_string(why, sizeof why));
            return -1;
        }
    }
    cv_tls_peer_name(rl->ssl, rl->who, sizeof rl->who);
    cvd_debug("admin https: %s: connected (%s)", rl->peer, rl->who);
    return 0;
}

static int ssl_write_all(struct relay *rl, const char *buf, size_t len)
{
    while (len) {
        int n = SSL_write(rl->ssl, buf, (int)len);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (ssl_wait(rl, n, -1) <= 0) {
            return -1;
        }
    }
    return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Moves bytes both ways until either side closes or we stop. */
static void relay(struct relay *rl)
{
    char buf[16384];
    struct pollfd p[3] = { { .fd = rl->fd, .events = POLLIN },
                           { .fd = rl->pair, .events = POLLIN },
                           { .fd = rl->h->stop_fd, .events = POLLIN } };

    for (;;) {
        int n, pending = SSL_pending(rl->ssl);

        n = poll(p, 3, pending ? 0 : -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || p[2].revents)
            return;
        if (pending || p[0].revents) {
            n = SSL_read(rl->ssl, buf, sizeof buf);
            if (n > 0 && write_all(rl->pair, buf, (size_t)n) < 0)
                return;
            if (n <= 0 && SSL_get_error(rl->ssl, n) != SSL_ERROR_WANT_READ)
                return;         /* closed, or a TLS error */
        }
        if (p[1].revents) {
            ssize_t m = read(rl->pair, buf, sizeof buf);
            if (m <= 0 || ssl_write_all(rl, buf, (size_t)m) < 0)
                return;
        }
    }
}

static void relay_done(struct relay *rl)
{
    struct cvd_admin_https *h = rl->h;

    if (rl->ssl) {
        SSL_shutdown(rl->ssl);
        SSL_free(rl->ssl);
    }
    close(rl->fd);
    if (rl->pair >= 0)
        close(rl->pair);
    free(rl);
    pthread_mutex_lock(&h->lock);
    if (--h->relays == 0)
        pthread_cond_broadcast(&h->idle);
    pthread_mutex_unlock(&h->lock);
}

static void *relay_main(void *arg)
{
    /* MHD is told the truth, a unix socket, so it does not try TCP
     * options on it.  The path names the real client, which the request
     * handler reads back as the actor for the audit log (admin.c). */
    struct sockaddr_un su = { .sun_family = AF_UNIX };
    struct relay *rl = arg;
    int sp[2];

    if (handshake(rl) < 0)
        goto out;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
        cvd_err("admin https: %s: socketpair: %s", rl->peer, strerror(errno));
        goto out;
    }
    rl->pair = sp[0];
    snprintf(su.sun_path, sizeof su.sun_path, "https:%.40s %.60s", rl->who,
             rl->peer);
    /* MHD owns sp[1] from here, even when it refuses it. */
    if (MHD_add_connection(rl->h->mhd, sp[1], (struct sockaddr *)&su,
                           sizeof su) != MHD_YES) {
        cvd_err("admin https: %s: the HTTP server refused the connection",
                rl->peer);
        goto out;
    }
    relay(rl);
out:
    relay_done(rl);
    return NULL;
}

static void start_relay(struct cvd_admin_https *h, int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?", serv[8] = "?";   /* numeric only */
    struct relay *rl = calloc(1, sizeof *rl);
    pthread_attr_t attr;
    pthread_t t;

    if (!rl) {
        close(fd);
        return;
    }
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, serv,
                    sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(rl->peer, sizeof rl->peer, "%s port %s", host, serv);
    rl->h = h;
    rl->fd = fd;
    rl->pair = -1;
    rl->ssl = cv_tls_ssl_new(h->tls, fd);
    if (!rl->ssl) {
        cvd_err("admin https: %s: %s", rl->peer, cv_last_error());
        close(fd);
        free(rl);
        return;
    }
    pthread_mutex_lock(&h->lock);
    h->relays++;
    pthread_mutex_unlock(&h->lock);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, relay_main, rl) != 0) {
        cvd_err("admin https: %s: cannot start a thread", rl->peer);
        relay_done(rl);
    }
    pthread_attr_destroy(&attr);
}

static void *accept_main(void *arg)
{
    struct cvd_admin_https *h = arg;

    for (;;) {
        int w = wait_fd(h, h->listen_fd, POLLIN, -1), fd;

        if (w <= 0)
            return NULL;        /* stopping */
        fd = accept4(h->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0)
            start_relay(h, fd);
        else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            cvd_warn("admin https: accept: %s", strerror(errno));
    }
}

/* The address the kernel bound (with port 0 the configured one says
 * nothing). */
static void log_bound(int fd)
{
    struct sockaddr_storage ss = { 0 };
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?", serv[8] = "?";

    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, serv,
                    sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV);
    cvd_info("admin API: https://%s%s%s:%s", ss.ss_family == AF_INET6 ?
             "[" : "", host, ss.ss_family == AF_INET6 ? "]" : "", serv);
}

/* "HOST:PORT", "[V6]:PORT" or ":PORT" (every address). */
static int listen_tcp(const char *spec, int *out)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *ai = NULL;
    char host[256];
    const char *port = strrchr(spec, ':');
    size_t hl;
    int fd = -1, one = 1, rc, r = 0;

    if (!port || !port[1])
        return cv_error(-EINVAL, "admin listen %s: expected HOST:PORT", spec);
    hl = (size_t)(port - spec);
    if (hl >= sizeof host)
        return cv_error(-EINVAL, "admin listen %s: host too long", spec);
    memcpy(host, spec, hl);
    host[hl] = '\0';
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    rc = getaddrinfo(host[0] ? host : NULL, port + 1, &hints, &ai);
    if (rc != 0)
        return cv_error(-EINVAL, "admin listen %s: %s", spec, gai_strerror(rc));
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                ai->ai_protocol);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
        r = cv_error(-errno, "admin listen %s: %s", spec, strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    freeaddrinfo(ai);
    if (r == 0) {
        log_bound(fd);
        *out = fd;
    }
    return r;
}

int cvd_admin_https_start(struct cvd *d, struct MHD_Daemon *mhd,
                          struct cvd_admin_https **out)
{
    struct cv_tls_config tc = { .x509_dir = d->cfg.tls_dir,
                                .verify_peer = d->cfg.tls_verify_peer };
    struct cvd_admin_https *h;
    int r;

    *out = NULL;
    if (!d->cfg.tls_dir)
        return cv_error(-EINVAL, "admin listen %s: HTTPS needs a TLS "
                        "directory (tls-dir) with server-cert.pem and "
                        "server-key.pem", d->cfg.admin_listen);
    h = calloc(1, sizeof *h);
    if (!h)
        return cv_error(-ENOMEM, "admin https: out of memory");
    h->mhd = mhd;
    h->listen_fd = -1;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->idle, NULL);
    h->stop_fd = eventfd(0, EFD_CLOEXEC);
    r = h->stop_fd < 0 ? cv_error(-errno, "admin https: eventfd: %s",
                                  strerror(errno)) : 0;
    if (r == 0)
        r = cv_tls_server_new(&tc, &h->tls);
    if (r < 0)
        cv_error_prefix(r, "admin listen %s", d->cfg.admin_listen);
    if (r == 0)
        r = listen_tcp(d->cfg.admin_listen, &h->listen_fd);
    if (r == 0 && pthread_create(&h->acceptor, NULL, accept_main, h) != 0)
        r = cv_error(-EAGAIN, "admin https: cannot start a thread");
    h->started = r == 0;
    if (r < 0) {
        cvd_admin_https_stop(h);
        return r;
    }
    *out = h;
    return 0;
}

void cvd_admin_https_stop(struct cvd_admin_https *h)
{
    uint64_t one = 1;

    if (!h)
        return;
    if (h->stop_fd >= 0 && write(h->stop_fd, &one, sizeof one) < 0)
        cvd_warn("admin https: stop: %s", strerror(errno));
    if (h->started)
        pthread_join(h->acceptor, NULL);
    pthread_mutex_lock(&h->lock);
    while (h->relays)
        pthread_cond_wait(&h->idle, &h->lock);
    pthread_mutex_unlock(&h->lock);
    if (h->listen_fd >= 0)
        close(h->listen_fd);
    if (h->stop_fd >= 0)
        close(h->stop_fd);
    cv_tls_free(h->tls);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->idle);
    free(h);
}

int cvd_admin_https_reload(struct cvd_admin_https *h)
{
    return cv_tls_reload(h->tls);
}

/* HTTPS for the admin API with OpenSSL rather than libmicrohttpd's GnuTLS,
 * so one TLS library and one set of credentials (lib/tls/tls.h) serve NBD and
 * the admin API alike.
 *
 * We accept TCP connections ourselves and do the TLS handshake; each
 * connection then gets a socketpair, one end handed to MHD with
 * MHD_add_connection as if the client had connected there, the other end
 * relayed to and from the SSL by a thread of ours.  Every wait polls a
 * stop eventfd too, so stopping is prompt even mid-handshake.
 *
 * Every client presents a certificate: of the admin CA (admin-tls-dir),
 * or of the NBD CA and named by admin-allow.  A data-path certificate is
 * never an admin one.  Connections are limited in total and per address,
 * and the libmicrohttpd daemon they reach is not the unix socket's. */
#include "admin-internal.h"
#include "audit/audit.h"
#include "daemon.h"
#include "core/error.h"
#include "log.h"
#include "metrics/metrics.h"
#include "tls/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* One admin identity of admin-allow. */
enum allow_kind { ALLOW_CN, ALLOW_DNS };
struct allow {
    enum allow_kind kind;
    char *value;
};

struct cvd_admin_https {
    struct cvd *d;
    struct MHD_Daemon *mhd;
    struct cvd_ratelimit *rl;
    struct cvd_admin_reserve *reserve;
    struct cv_tls *tls;
    struct allow *allow;        /* NULL: every certificate of the CA */
    size_t nallow;
    int listen_fd, stop_fd;
    pthread_t acceptor;
    int started;
    pthread_mutex_t lock;       /* guards relays and slots */
    pthread_cond_t idle;
    unsigned relays;            /* relay threads still running */
    unsigned max, per_peer;
    /* The client address of each relay (max of them; "" when free): the
     * per-address limit counts them. */
    char (*slots)[INET6_ADDRSTRLEN];
};

struct relay {
    struct cvd_admin_https *h;
    int fd, pair;               /* the client's TCP socket, our pair end */
    int slot;
    struct timespec deadline;   /* of the whole handshake */
    char host[INET6_ADDRSTRLEN];
    char peer[NI_MAXHOST + NI_MAXSERV + 4];
    char who[256];              /* the client certificate's subject */
    SSL *ssl;
    int session;                /* the handshake succeeded (metrics) */
};

static int ms_left(const struct timespec *deadline)
{
    struct timespec now;
    long long ms;

    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = (long long)(deadline->tv_sec - now.tv_sec) * 1000 +
         (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms < 0 ? 0 : ms > INT_MAX ? INT_MAX : (int)ms;
}

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

/* The whole handshake has one deadline: a client sending a byte now
 * and then does not keep a relay thread forever. */
static int handshake(struct relay *rl)
{
    char why[256];
    int ret, w;

    while ((ret = SSL_accept(rl->ssl)) != 1) {
        w = ssl_wait(rl, ret, ms_left(&rl->deadline));
        if (w <= 0) {
            cvd_metrics_tls_handshake(rl->h->d->metrics, CVD_TLS_ADMIN, 0);
            cvd_log_limited(rl->h->rl, "handshake", LOG_WARNING,
                                  "admin https: %s: TLS handshake failed: "
                                  "%s", rl->peer, w == 0 ?
                                  "timed out or stopping" :
                                  cv_tls_error_string(why, sizeof why));
            return -1;
        }
    }
    rl->session = 1;
    cvd_metrics_tls_handshake(rl->h->d->metrics, CVD_TLS_ADMIN, 1);
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

static void relay_loop(struct relay *rl, char *buf, size_t size)
{
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
            n = SSL_read(rl->ssl, buf, (int)size);
            if (n > 0 && write_all(rl->pair, buf, (size_t)n) < 0)
                return;
            if (n <= 0 && SSL_get_error(rl->ssl, n) != SSL_ERROR_WANT_READ) {
                if (cv_tls_failure_of() == CV_TLS_FAIL_DECRYPT)
                    cvd_metrics_tls_decrypt_error(rl->h->d->metrics,
                                                  CVD_TLS_ADMIN);
                return;         /* closed, or a TLS error */
            }
        }
        if (p[1].revents) {
            ssize_t m = read(rl->pair, buf, size);
            if (m <= 0 || ssl_write_all(rl, buf, (size_t)m) < 0)
                return;
        }
    }
}

/* Moves bytes both ways until either side closes or we stop.  What went
 * through may be a secret: the buffer is wiped (a thread's stack is kept
 * for the next thread), and OpenSSL wipes its own (SSL_OP_CLEANSE_PLAINTEXT,
 * set in start_relay). */
static void relay(struct relay *rl)
{
    char buf[16384];

    relay_loop(rl, buf, sizeof buf);
    OPENSSL_cleanse(buf, sizeof buf);
}

static void relay_done(struct relay *rl)
{
    struct cvd_admin_https *h = rl->h;

    if (rl->ssl) {
        SSL_shutdown(rl->ssl);
        SSL_free(rl->ssl);
    }
    if (rl->session)
        cvd_metrics_tls_closed(h->d->metrics, CVD_TLS_ADMIN);
    close(rl->fd);
    if (rl->pair >= 0)
        close(rl->pair);
    pthread_mutex_lock(&h->lock);
    if (rl->slot >= 0)
        h->slots[rl->slot][0] = '\0';
    if (--h->relays == 0)
        pthread_cond_broadcast(&h->idle);
    pthread_mutex_unlock(&h->lock);
    free(rl);
}

/* 1 if the verified peer has a commonName (or, for dns, a DNS
 * subjectAltName) equal to value: the same names, read the same way, as
 * NBD access lists use (lib/tls/tls.h: a name with a NUL or non-ASCII in
 * it is not read, so it matches nothing). */
static int peer_has(const struct cv_tls_peer *p, enum allow_kind kind,
                    const char *value)
{
    unsigned i;

    if (kind == ALLOW_CN)
        return p->cn[0] && !strcmp(p->cn, value);
    for (i = 0; i < p->ndns; i++)
        if (!strcasecmp(p->dns[i], value))     /* DNS names: any case */
            return 1;
    return 0;
}

/* Whether the handshaken client may administer: every certificate of the
 * admin CA without admin-allow, else only those it names. */
static int allowed(const struct relay *rl)
{
    struct cv_tls_peer *p;
    size_t i;
    int ok = 0;

    if (!SSL_get0_peer_certificate(rl->ssl))
        return 0;       /* cannot happen: the handshake requires one */
    if (!rl->h->allow)
        return 1;
    p = calloc(1, sizeof *p);
    if (!p)
        return 0;
    cv_tls_peer_identity(rl->ssl, p);
    for (i = 0; p->auth == CV_TLS_AUTH_CERT && !ok && i < rl->h->nallow; i++)
        ok = peer_has(p, rl->h->allow[i].kind, rl->h->allow[i].value);
    free(p);
    return ok;
}

/* The answer to a certificate of the CA that admin-allow does not name:
 * a whole HTTP response, so that the client sees why. */
static void refuse(struct relay *rl, const char *actor)
{
    static const char body[] = "{\"error\":\"this client certificate may "
                               "not administer cryptvold (admin-allow)\","
                               "\"code\":\"Forbidden\"}\n";
    char resp[512];
    int n;

    cvd_log_limited(rl->h->rl, "not allowed", LOG_WARNING,
                          "admin https: %s: refused: not in admin-allow",
                          actor);
    cvd_audit(rl->h->d->audit, actor, "admin.refused", "https", 0,
              "the certificate is not in admin-allow");
    n = snprintf(resp, sizeof resp, "HTTP/1.1 403 Forbidden\r\n"
                 "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n%s", sizeof body - 1, body);
    ssl_write_all(rl, resp, (size_t)n);
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
    snprintf(su.sun_path, sizeof su.sun_path, "https:%.60s %.40s", rl->who,
             rl->peer);
    if (!allowed(rl)) {
        refuse(rl, su.sun_path);
        goto out;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
        cvd_err("admin https: %s: socketpair: %s", rl->peer, strerror(errno));
        goto out;
    }
    rl->pair = sp[0];
    /* MHD owns sp[1] from here, even when it refuses it. */
    if (MHD_add_connection(rl->h->mhd, sp[1], (struct sockaddr *)&su,
                           sizeof su) != MHD_YES) {
        cvd_log_limited(rl->h->rl, "add https", LOG_ERR,
                              "admin https: %s: the HTTP server refused the "
                              "connection", rl->peer);
        goto out;
    }
    relay(rl);
out:
    relay_done(rl);
    return NULL;
}

/* A slot for a client from host, or -1 when there are max connections,
 * or per_peer from host.  Called with h->lock held. */
static int take_slot(struct cvd_admin_https *h, const char *host,
                     const char **why)
{
    unsigned i, same = 0;
    int free_slot = -1;

    for (i = 0; i < h->max; i++) {
        if (!h->slots[i][0])
            free_slot = free_slot < 0 ? (int)i : free_slot;
        else if (!strcmp(h->slots[i], host))
            same++;
    }
    *why = free_slot < 0 ? "admin-max-connections reached" :
           same >= h->per_peer ? "admin-max-per-peer reached for this "
                                 "address" : NULL;
    if (*why)
        return -1;
    snprintf(h->slots[free_slot], sizeof h->slots[free_slot], "%s", host);
    return free_slot;
}

static struct relay *relay_new(struct cvd_admin_https *h, int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char serv[8] = "?";         /* numeric only */
    struct relay *rl = calloc(1, sizeof *rl);

    if (!rl)
        return NULL;
    snprintf(rl->host, sizeof rl->host, "?");
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        getnameinfo((struct sockaddr *)&ss, sl, rl->host, sizeof rl->host,
                    serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(rl->peer, sizeof rl->peer, "%s port %s", rl->host, serv);
    rl->h = h;
    rl->fd = fd;
    rl->pair = -1;
    rl->slot = -1;
    clock_gettime(CLOCK_MONOTONIC, &rl->deadline);
    rl->deadline.tv_sec += CVD_ADMIN_HANDSHAKE_S;
    return rl;
}

static void start_relay(struct cvd_admin_https *h, int fd)
{
    struct relay *rl = relay_new(h, fd);
    const char *why = NULL;
    pthread_attr_t attr;
    pthread_t t;

    if (!rl) {
        close(fd);
        return;
    }
    pthread_mutex_lock(&h->lock);
    rl->slot = take_slot(h, rl->host, &why);
    if (rl->slot >= 0)
        h->relays++;
    pthread_mutex_unlock(&h->lock);
    if (rl->slot < 0) {
        cvd_log_limited(h->rl, "https limit", LOG_WARNING,
                              "admin https: %s: refused: %s", rl->peer, why);
        close(fd);
        free(rl);
        return;
    }
    rl->ssl = cv_tls_ssl_new(h->tls, fd);
    if (!rl->ssl) {
        cvd_err("admin https: %s: %s", rl->peer, cv_last_error());
        relay_done(rl);
        return;
    }
    SSL_set_options(rl->ssl, SSL_OP_CLEANSE_PLAINTEXT);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, relay_main, rl) != 0) {
        cvd_log_limited(h->rl, "https thread", LOG_ERR,
                              "admin https: %s: cannot start a thread",
                              rl->peer);
        relay_done(rl);
    }
    pthread_attr_destroy(&attr);
}

/* Out of descriptors, accept() fails while the socket stays readable:
 * we wait a little rather than poll it in a loop.  While the unix
 * socket's reserve descriptor is given up, we do not accept: the next
 * descriptor that frees is the local administrator's. */
static void *accept_main(void *arg)
{
    struct cvd_admin_https *h = arg;

    for (;;) {
        int w = wait_fd(h, h->listen_fd, POLLIN, -1), fd;

        if (w <= 0)
            return NULL;        /* stopping */
        if (!cvd_admin_reserve_refill(h->reserve)) {
            wait_fd(h, -1, 0, 100);     /* a stop ends the next wait */
            continue;
        }
        fd = accept4(h->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            start_relay(h, fd);
        } else if (errno != EAGAIN && errno != EINTR &&
                   errno != ECONNABORTED) {
            cvd_log_limited(h->rl, "https accept", LOG_WARNING,
                                  "admin https: accept: %s", strerror(errno));
            wait_fd(h, -1, 0, 100);     /* a stop ends the next wait */
        }
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

unsigned cvd_admin_https_max(const struct cvd *d)
{
    return d->cfg.admin_max_connections ? d->cfg.admin_max_connections : 64;
}

/* admin-allow: "cn:ops1, dns:ops.example.com" */
static int parse_allow(struct cvd_admin_https *h, const char *spec)
{
    char *copy = strdup(spec), *save = NULL, *item;
    int r = copy ? 0 : cv_error(-ENOMEM, "admin-allow: out of memory");

    for (item = copy ? strtok_r(copy, ",", &save) : NULL; r == 0 && item;
         item = strtok_r(NULL, ",", &save)) {
        struct allow *bigger, *e;
        item += strspn(item, " \t");
        item[strcspn(item, " \t")] = '\0';
        bigger = realloc(h->allow, (h->nallow + 1) * sizeof *h->allow);
        if (!bigger) {
            r = cv_error(-ENOMEM, "admin-allow: out of memory");
            break;
        }
        h->allow = bigger;
        e = &h->allow[h->nallow];
        e->kind = !strncmp(item, "cn:", 3) ? ALLOW_CN : ALLOW_DNS;
        if ((strncmp(item, "cn:", 3) && strncmp(item, "dns:", 4)) ||
            !item[e->kind == ALLOW_CN ? 3 : 4])
            r = cv_error(-EINVAL, "admin-allow: \"%.64s\" is not cn:NAME "
                         "or dns:NAME", item);
        else if (!(e->value = strdup(item + (e->kind == ALLOW_CN ? 3 : 4))))
            r = cv_error(-ENOMEM, "admin-allow: out of memory");
        else
            h->nallow++;
    }
    if (r == 0 && h->nallow == 0)
        r = cv_error(-EINVAL, "admin-allow: names no identity");
    free(copy);
    return r;
}

/* The certificates of dir/ca-cert.pem, or NULL with a message. */
static STACK_OF(X509_INFO) *read_cas(const char *dir)
{
    char path[PATH_MAX];
    STACK_OF(X509_INFO) *infos = NULL;
    BIO *b;

    snprintf(path, sizeof path, "%s/ca-cert.pem", dir);
    b = BIO_new_file(path, "r");
    if (b)
        infos = PEM_X509_INFO_read_bio(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!infos)
        cv_error(-EINVAL, "admin-tls-dir: cannot read %s", path);
    return infos;
}

/* -EINVAL if a CA of admin_dir is also one of nbd_dir, which would make
 * every NBD client certificate an admin one. */
static int check_own_ca(const char *admin_dir, const char *nbd_dir)
{
    STACK_OF(X509_INFO) *a = read_cas(admin_dir), *n = NULL;
    int i, j, shared = 0, r = 0;

    if (!a)
        return -EINVAL;
    n = read_cas(nbd_dir);
    if (!n) {
        /* The NBD side may have no CA (no client certificates): none to
         * share. */
        cv_clear_error();
    }
    for (i = 0; n && i < sk_X509_INFO_num(a); i++)
        for (j = 0; j < sk_X509_INFO_num(n); j++) {
            X509 *x = sk_X509_INFO_value(a, i)->x509;
            X509 *y = sk_X509_INFO_value(n, j)->x509;
            if (x && y && !X509_cmp(x, y))
                shared = 1;
        }
    if (shared)
        r = cv_error(-EINVAL, "admin-tls-dir %s: its ca-cert.pem is also "
                     "the NBD CA (tls-dir %s), so every NBD client "
                     "certificate would be an admin one: use a CA of its own "
                     "or admin-allow", admin_dir, nbd_dir);
    sk_X509_INFO_pop_free(a, X509_INFO_free);
    sk_X509_INFO_pop_free(n, X509_INFO_free);
    return r;
}

/* Client certificates are always required: from admin-tls-dir's CA, or
 * from tls-dir's CA and named by admin-allow (config.c refuses any other
 * combination). */
static int https_setup(struct cvd_admin_https *h)
{
    const struct cvd_config *c = &h->d->cfg;
    struct cv_tls_config tc = { .x509_dir = c->admin_tls_dir ?
                                            c->admin_tls_dir : c->tls_dir,
                                .verify_peer = 1 };
    int r = 0;

    if (c->admin_allow)
        r = parse_allow(h, c->admin_allow);
    if (r == 0 && c->admin_tls_dir && c->tls_dir && !c->admin_allow)
        r = check_own_ca(c->admin_tls_dir, c->tls_dir);
    if (r == 0)
        r = cv_tls_server_new(&tc, &h->tls);
    if (r == 0 && !(h->slots = calloc(h->max, sizeof *h->slots)))
        r = cv_error(-ENOMEM, "admin https: out of memory");
    if (r == 0)
        cvd_info("admin https: admins are the client certificates of %s/"
                 "ca-cert.pem%s%s", tc.x509_dir, c->admin_allow ?
                 " named by admin-allow: " : "",
                 c->admin_allow ? c->admin_allow : "");
    return r;
}

int cvd_admin_https_start(struct cvd *d, struct MHD_Daemon *mhd,
                          struct cvd_ratelimit *rl,
                          struct cvd_admin_reserve *reserve,
                          struct cvd_admin_https **out)
{
    struct cvd_admin_https *h;
    int r;

    *out = NULL;
    h = calloc(1, sizeof *h);
    if (!h)
        return cv_error(-ENOMEM, "admin https: out of memory");
    h->d = d;
    h->mhd = mhd;
    h->rl = rl;
    h->reserve = reserve;
    h->max = cvd_admin_https_max(d);
    h->per_peer = d->cfg.admin_max_per_peer ? d->cfg.admin_max_per_peer : 16;
    h->listen_fd = -1;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->idle, NULL);
    h->stop_fd = eventfd(0, EFD_CLOEXEC);
    r = h->stop_fd < 0 ? cv_error(-errno, "admin https: eventfd: %s",
                                  strerror(errno)) : 0;
    if (r == 0)
        r = https_setup(h);
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
    while (h->nallow)
        free(h->allow[--h->nallow].value);
    free(h->allow);
    free(h->slots);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->idle);
    free(h);
}

int cvd_admin_https_reload(struct cvd_admin_https *h)
{
    return cv_tls_reload(h->tls);
}

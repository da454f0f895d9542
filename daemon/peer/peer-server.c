/* The peer port's server: the listening sockets, one thread that accepts,
 * the dispatch table, start and stop.  Each connection is served on a
 * thread of its own (peer-conn.c). */
#include "peer-internal.h"

#include "core/error.h"
#include "daemon.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the dispatch table ---------------------------------------------- */

int cvd_peer_handle(struct cvd_peer *p, uint16_t type, cvd_peer_handler h,
                    void *arg)
{
    return cvd_peer_handle_flags(p, type, h, arg, 0);
}

int cvd_peer_handle_flags(struct cvd_peer *p, uint16_t type,
                          cvd_peer_handler h, void *arg, unsigned flags)
{
    unsigned i;
    int r = 0;

    pthread_mutex_lock(&p->hlock);
    for (i = 0; i < p->nhandlers && p->handlers[i].type != type; i++)
        ;
    if (i == p->nhandlers && h && p->nhandlers == CVD_PEER_MAX_HANDLERS)
        r = cv_error(-ENOSPC, "peer: more than %d message types",
                     CVD_PEER_MAX_HANDLERS);
    else if (h)
        p->handlers[i] = (struct peer_handler){ type, flags, h, arg };
    else if (i < p->nhandlers)
        p->handlers[i] = p->handlers[--p->nhandlers];
    if (r == 0 && h && i == p->nhandlers)
        p->nhandlers++;
    pthread_mutex_unlock(&p->hlock);
    return r;
}

struct peer_handler peer_handler_of(struct cvd_peer *p, uint16_t type)
{
    struct peer_handler h = { type, 0, NULL, NULL };

    pthread_mutex_lock(&p->hlock);
    for (unsigned i = 0; i < p->nhandlers; i++)
        if (p->handlers[i].type == type)
            h = p->handlers[i];
    pthread_mutex_unlock(&p->hlock);
    return h;
}

/* ---- listening --------------------------------------------------------- */

static int listen_addr(struct cvd_peer *p, const struct addrinfo *ai,
                       const char *spec)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    char host[PEER_ADDR_MAX];
    int fd, one = 1, r;

    if (p->nlisten == PEER_MAX_LISTEN)
        return cv_error(-EMFILE, "peer-listen %s: more than %d addresses",
                        spec, PEER_MAX_LISTEN);
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0)
        return cv_error(-errno, "peer-listen %s: socket: %s", spec,
                        strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
        r = -errno;
        close(fd);
        return cv_error(r, "peer-listen %s: %s", spec, strerror(-r));
    }
    p->listen_fd[p->nlisten++] = fd;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0 && !p->bound[0])
        peer_addr_name(&sa, len, p->bound, sizeof p->bound, host);
    return 0;
}

static int peer_listen(struct cvd_peer *p, const char *spec)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE };
    struct addrinfo *res = NULL, *ai;
    char host[256];
    const char *port;
    int r, bound = 0;

    r = peer_split_hostport("peer-listen", spec, host, sizeof host, &port);
    if (r < 0)
        return r;
    r = getaddrinfo(host[0] && strcmp(host, "*") ? host : NULL, port, &hints,
                    &res);
    if (r != 0)
        return cv_error(-EINVAL, "peer-listen %s: %s", spec, gai_strerror(r));
    r = 0;
    for (ai = res; ai; ai = ai->ai_next)
        if ((r = listen_addr(p, ai, spec)) == 0)
            bound++;
    freeaddrinfo(res);
    return bound ? 0 : r;
}

static void *accept_thread(void *arg)
{
    struct cvd_peer *p = arg;
    struct pollfd fds[PEER_MAX_LISTEN + 1];
    struct sockaddr_storage sa;
    socklen_t len;
    int i, fd;

    for (i = 0; i < p->nlisten; i++)
        fds[i] = (struct pollfd){ .fd = p->listen_fd[i], .events = POLLIN };
    fds[p->nlisten] = (struct pollfd){ .fd = p->wake[0], .events = POLLIN };
    for (;;) {
        if (poll(fds, (nfds_t)p->nlisten + 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            cvd_err("peer: poll: %s", strerror(errno));
            return NULL;
        }
        if (fds[p->nlisten].revents)
            return NULL;
        for (i = 0; i < p->nlisten; i++) {
            if (!(fds[i].revents & POLLIN))
                continue;
            len = sizeof sa;
            fd = accept4(fds[i].fd, (struct sockaddr *)&sa, &len,
                         SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd >= 0) {
                peer_nodelay(fd);
                peer_conn_start(p, fd, &sa, len);
            }
            else if (errno == EMFILE || errno == ENFILE)
                poll(NULL, 0, 100);     /* let connections end first */
        }
    }
}

/* ---- start and stop ---------------------------------------------------- */

static void peer_free(struct cvd_peer *p)
{
    for (int i = 0; i < p->nlisten; i++)
        close(p->listen_fd[i]);
    for (int i = 0; i < 2; i++)
        if (p->wake[i] >= 0)
            close(p->wake[i]);
    cv_tls_free(p->server_tls);
    peer_refusals_destroy(&p->refusals);
    cvd_ratelimit_destroy(&p->rl);
    pthread_cond_destroy(&p->idle);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->hlock);
    free(p);
}

static int check_config(const struct cvd_config *c)
{
    if (!c->peer_listen)
        return cv_error(-EINVAL, "peer: no peer-listen address");
    if (!c->etcd_endpoints)
        return cv_error(-EINVAL, "peer-listen %s needs etcd-endpoints: the "
                        "peer port serves the members of a cluster, and a "
                        "single node (SQLite) has none", c->peer_listen);
    if (!c->peer_tls_dir)
        return cv_error(-EINVAL, "peer-listen %s needs peer-tls-dir (the "
                        "node's certificate from the cluster CA, as "
                        "cryptvol tls issue writes it)", c->peer_listen);
    return 0;
}

static int make_tls(struct cvd_peer *p, const char *dir)
{
    struct cv_tls_config sc = { .x509_dir = dir, .verify_peer = 1 };
    int r;

    r = cv_tls_server_new(&sc, &p->server_tls);
    return r < 0 ? cv_error_prefix(r, "peer-tls-dir") : 0;
}

static struct cvd_peer *peer_new(struct cvd *d, cvd_peer_member_fn member,
                                 void *arg)
{
    struct cvd_peer *p = calloc(1, sizeof *p);

    if (!p)
        return NULL;
    p->d = d;
    p->member = member ? member : cvd_peer_meta_member;
    p->member_arg = member ? arg : d;
    p->wake[0] = p->wake[1] = -1;
    p->tls_mode = d->cfg.peer_tls;
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->hlock, NULL);
    pthread_cond_init(&p->idle, NULL);
    peer_refusals_init(&p->refusals);
    cvd_ratelimit_init(&p->rl);
    return p;
}

int cvd_peer_start(struct cvd *d, cvd_peer_member_fn member, void *arg,
                   struct cvd_peer **out)
{
    struct cvd_peer *p;
    int r;

    *out = NULL;
    r = check_config(&d->cfg);
    if (r < 0)
        return r;
    p = peer_new(d, member, arg);
    if (!p)
        return cv_error(-ENOMEM, "peer: out of memory");
    /* A peer that goes away must cost an error, not the process. */
    signal(SIGPIPE, SIG_IGN);
    r = make_tls(p, d->cfg.peer_tls_dir);
    if (r == 0)
        r = peer_builtin_handlers(p);
    if (r == 0 && pipe2(p->wake, O_CLOEXEC) < 0)
        r = cv_error(-errno, "peer: pipe: %s", strerror(errno));
    if (r == 0)
        r = peer_listen(p, d->cfg.peer_listen);
    if (r == 0 && (r = -pthread_create(&p->accept_thread, NULL,
                                       accept_thread, p)) < 0)
        cv_error(r, "peer: cannot start the accept thread: %s",
                 strerror(-r));
    if (r < 0) {
        peer_free(p);
        return r;
    }
    p->accept_started = 1;
    cvd_metrics_peer_tls_mode(d->metrics, p->tls_mode, 0);
    cvd_info("peer: listening on %s (mutual TLS 1.3, members only; "
             "peer-tls %s)", p->bound, cvd_peer_tls_name(p->tls_mode));
    *out = p;
    return 0;
}

const char *cvd_peer_bound(const struct cvd_peer *p)
{
    return p->bound;
}

int cvd_peer_reload(struct cvd_peer *p)
{
    return cv_tls_reload(p->server_tls);
}

void cvd_peer_stop(struct cvd_peer *p)
{
    struct peer_conn *c;

    if (!p)
        return;
    if (p->accept_started) {
        if (write(p->wake[1], "x", 1) < 0)
            cvd_err("peer: waking the accept thread: %s", strerror(errno));
        pthread_join(p->accept_thread, NULL);
    }
    /* Wake every connection blocked in poll: its socket reads EOF. */
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    for (c = p->conns; c; c = c->next)
        shutdown(c->io.fd, SHUT_RDWR);
    while (p->nconns)
        pthread_cond_wait(&p->idle, &p->lock);
    pthread_mutex_unlock(&p->lock);
    peer_free(p);
}

/* The NBD server: listening sockets, one thread that accepts, and one
 * thread per connection for the handshake and then for reading requests
 * (with its own request workers, nbd-transmit.c). */
#include "nbd-server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "core/error.h"
#include "core/size.h"
#include "export/export.h"
#include "log.h"
#include "metrics/metrics.h"
#include "nbd-internal.h"
#include "nbd-access-internal.h"

/* How long stop waits for replies in flight before it closes connections
 * whose clients do not read them. */
#define STOP_GRACE_S 5

/* --- Listening ---------------------------------------------------------- */

/* Splits "HOST:PORT", "[V6]:PORT" or ":PORT" (any address). */
static int split_hostport(const char *spec, char *host, size_t hlen,
                          const char **port)
{
    const char *colon, *h = spec;
    size_t n;

    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');

        if (!end || end[1] != ':')
            return cv_error(-EINVAL, "nbd-listen \"%s\": expected "
                            "[ADDRESS]:PORT", spec);
        h = spec + 1;
        n = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(spec, ':');
        if (!colon)
            return cv_error(-EINVAL, "nbd-listen \"%s\": expected HOST:PORT",
                            spec);
        n = (size_t)(colon - spec);
    }
    if (n >= hlen || !colon[1])
        return cv_error(-EINVAL, "nbd-listen \"%s\": bad host or port", spec);
    memcpy(host, h, n);
    host[n] = '\0';
    *port = colon + 1;
    return 0;
}

static int add_listener(struct cvd_nbd *n, int fd)
{
    if (n->nlisten >= NBD_MAX_LISTEN) {
        close(fd);
        return cv_error(-EMFILE, "more than %d listening sockets",
                        NBD_MAX_LISTEN);
    }
    n->listen_fd[n->nlisten++] = fd;
    return 0;
}

/* A TCP address as clients write it: "127.0.0.1:10809", "[::1]:10809";
 * host (HOST_MAX bytes), if not NULL, gets the address alone ("?" when
 * there is none). */
#define HOST_MAX 64              /* numeric (IPv6 with a scope fits) */
static void addr_name(const struct sockaddr_storage *sa, socklen_t len,
                      char *buf, size_t blen, char *host_out)
{
    char host[HOST_MAX], serv[16];

    if (getnameinfo((const struct sockaddr *)sa, len, host, sizeof host,
                    serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV))
        snprintf(host, sizeof host, "?");
    if (host_out)
        snprintf(host_out, HOST_MAX, "%s", host);
    if (!strcmp(host, "?"))
        snprintf(buf, blen, "?");
    else if (sa->ss_family == AF_INET6)
        snprintf(buf, blen, "[%s]:%s", host, serv);
    else
        snprintf(buf, blen, "%s:%s", host, serv);
}

/* The address the kernel bound, which is what clients must use (with port
 * 0 the configured one says nothing). */
static void log_bound(struct cvd_nbd *n, int fd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    char name[96];

    if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
        addr_name(&sa, len, name, sizeof name, NULL);
        cvd_info("nbd: listening on %s", name);
        if (n->nbound < NBD_MAX_LISTEN)
            snprintf(n->bound[n->nbound++], sizeof n->bound[0], "%s", name);
    }
}

static int listen_addr(struct cvd_nbd *n, const struct addrinfo *ai,
                       const char *spec)
{
    int fd, one = 1, r;

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0)
        return cv_error(-errno, "nbd-listen %s: socket: %s", spec,
                        strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* One socket per family, so "localhost" can bind ::1 and 127.0.0.1. */
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
        r = -errno;
        close(fd);
        return cv_error(r, "nbd-listen %s: %s", spec, strerror(-r));
    }
    log_bound(n, fd);
    return add_listener(n, fd);
}

static int listen_tcp(struct cvd_nbd *n, const char *spec)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE };
    struct addrinfo *res = NULL, *ai;
    char host[256];
    const char *port = NULL;
    int r, bound = 0;

    r = split_hostport(spec, host, sizeof host, &port);
    if (r < 0)
        return r;
    r = getaddrinfo(host[0] && strcmp(host, "*") ? host : NULL, port, &hints,
                    &res);
    if (r != 0)
        return cv_error(-EINVAL, "nbd-listen %s: %s", spec, gai_strerror(r));
    r = 0;
    for (ai = res; ai; ai = ai->ai_next) {
        r = listen_addr(n, ai, spec);
        if (r == 0)
            bound++;
    }
    freeaddrinfo(res);
    /* Some addresses of a name may not bind (no IPv6); one is enough. */
    return bound ? 0 : r;
}

/* The gid of nbd-unix-group (a name or a number). */
static int unix_group(const char *name, gid_t *gid)
{
    char buf[4096], *end;
    struct group g, *res = NULL;
    unsigned long v;

    if (getgrnam_r(name, &g, buf, sizeof buf, &res) == 0 && res) {
        *gid = res->gr_gid;
        return 0;
    }
    errno = 0;
    v = strtoul(name, &end, 10);
    if (!errno && end != name && !*end && v < (gid_t)-1) {
        *gid = (gid_t)v;
        return 0;
    }
    return cv_error(-ENOENT, "nbd-unix-group %s: no such group", name);
}

/* Its clients are authenticated by uid, so the socket is the owner's
 * alone, or also a configured group's. */
static int unix_mode(const char *path, const char *group)
{
    gid_t gid;
    int r;

    if (!group && chmod(path, 0600) < 0)
        return cv_error(-errno, "nbd-unix %s: chmod: %s", path,
                        strerror(errno));
    if (!group)
        return 0;
    r = unix_group(group, &gid);
    if (r < 0)
        return r;
    if (chown(path, (uid_t)-1, gid) < 0 || chmod(path, 0660) < 0)
        return cv_error(-errno, "nbd-unix %s: giving it to group %s: %s",
                        path, group, strerror(errno));
    return 0;
}

static int listen_unix(struct cvd_nbd *n, const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    int fd, r;

    if (strlen(path) >= sizeof sa.sun_path)
        return cv_error(-ENAMETOOLONG, "nbd-unix %s: path too long", path);
    strcpy(sa.sun_path, path);
    /* A socket left by a daemon that died; anything else is not ours. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return cv_error(-errno, "nbd-unix %s: socket: %s", path,
                        strerror(errno));
    /* The mode is set before listen(): until then no one can connect. */
    r = bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ?
        cv_error(-errno, "nbd-unix %s: %s", path, strerror(errno)) : 0;
    if (r == 0)
        r = unix_mode(path, n->d->cfg.nbd_unix_group);
    if (r == 0 && listen(fd, 128) < 0)
        r = cv_error(-errno, "nbd-unix %s: %s", path, strerror(errno));
    if (r < 0) {
        close(fd);
        return r;
    }
    n->unix_path = strdup(path);
    if (!n->unix_path) {
        close(fd);
        return cv_error(-ENOMEM, "out of memory");
    }
    return add_listener(n, fd);
}

/* --- Connections -------------------------------------------------------- */

/* c->conn.peer ("127.0.0.1:40312", "[::1]:40312", "unix:pid=9,uid=0"),
 * c->host (the address the per-host limit counts) and, for a unix socket
 * client, its uid (the identity access lists name). */
static void peer_name(struct nbd_client *c, int fd,
                      const struct sockaddr_storage *sa, socklen_t len)
{
    char *buf = c->conn.peer;
    size_t blen = sizeof c->conn.peer;

    if (sa->ss_family == AF_UNIX) {
        struct ucred cred;
        socklen_t clen = sizeof cred;

        c->is_unix = 1;
        snprintf(c->host, sizeof c->host, "unix");
        /* The kernel's word for who connected: the client's identity. */
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
            snprintf(buf, blen, "unix:pid=%d,uid=%u", (int)cred.pid,
                     (unsigned)cred.uid);
            nbd_access_unix_peer(c, (unsigned)cred.uid);
        } else {
            snprintf(buf, blen, "unix");
        }
        return;
    }
    addr_name(sa, len, buf, blen, c->host);
}

static void client_free(struct nbd_client *c)
{
    struct cvd_nbd *n = c->srv;
    struct cvd_metrics *m = n->d->metrics;

    /* The export goes first: cvd_nbd_stop returns when the list is empty,
     * and the registry may then be freed. */
    if (c->export) {
        cvd_export_unhold(c->export, &c->holder);
        cvd_export_put(c->export);
    }
    cvd_metrics_volume_put(m, c->vmetrics);
    if (c->conn.ssl)
        cvd_metrics_tls_closed(m, CVD_TLS_NBD);
    if (c->conn.decrypt_error)
        cvd_metrics_tls_decrypt_error(m, CVD_TLS_NBD);
    cvd_metrics_nbd_connection(m, -1);
    pthread_mutex_lock(&n->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        n->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    n->nclients--;
    nbd_pool_free(c);
    cvd_conn_destroy(&c->conn);        /* under the lock: see stop */
    if (!n->clients)
        pthread_cond_broadcast(&n->idle);
    pthread_mutex_unlock(&n->lock);
    free(c->meta_export);
    free(c);
}

/* The reaper (nbd-limits.c) shut the connection down: say why, instead
 * of the error that woke the thread. */
static int expired_error(struct nbd_client *c, int r)
{
    const struct cvd_bounds *b = &c->srv->d->cfg.bounds;

    switch (atomic_load(&c->expired)) {
    case NBD_EXPIRED_HANDSHAKE:
        return cv_error(-ETIMEDOUT, "handshake: not finished within %u s "
                        "(nbd-handshake-timeout); closed",
                        b->nbd_handshake_timeout);
    case NBD_EXPIRED_IDLE:
        return cv_error(-ETIMEDOUT, "no request for %u s "
                        "(nbd-idle-timeout); closed", b->nbd_idle_timeout);
    default:
        return r;
    }
}

static void *client_thread(void *arg)
{
    struct nbd_client *c = arg;
    struct cvd_ratelimit *rl = &c->srv->rl;
    char human[64];
    int r;

    r = nbd_handshake(c);
    if (r == NBD_HS_TRANSMIT) {
        nbd_transmitting(c);
        cvd_info_limited(rl, "nbd-serving", "nbd: %s: serving %s (%s%s%s)",
                         c->conn.peer, cvd_export_name(c->export),
                         cv_format_size_exact(c->info.size, human,
                                              sizeof human),
                         c->info.tflags & NBD_FLAG_READ_ONLY ? ", read-only"
                                                             : "",
                         c->conn.ssl ? ", TLS" : "");
        r = nbd_transmit(c);
    }
    if (r < 0)
        r = expired_error(c, r);
    if (r < 0 && r != -ECONNRESET)
        cvd_warn_limited(rl, "nbd-conn-error", "nbd: %s: %s", c->conn.peer,
                         cv_last_error());
    cvd_info_limited(rl, "nbd-disconnected", "nbd: %s: disconnected%s%s",
                     c->conn.peer, c->export ? " from " : "",
                     c->export ? cvd_export_name(c->export) : "");
    client_free(c);
    return NULL;
}

/* A connection over the limits is closed at once, with one line (rate
 * limited: a flood of them is what the limits are for). */
static void refuse_client(struct cvd_nbd *n, struct nbd_client *c)
{
    cvd_warn_limited(&n->rl, "nbd-refused", "nbd: %s: refused: %s",
                     c->conn.peer, cv_last_error());
    nbd_pool_free(c);
    cvd_conn_destroy(&c->conn);
    free(c);
}

/* A connection on fd, named, admitted by the limits and on the client
 * list; NULL (fd closed, the refusal logged) if not. */
static struct nbd_client *client_new(struct cvd_nbd *n, int fd,
                                     const struct sockaddr_storage *sa,
                                     socklen_t len)
{
    struct nbd_client *c = calloc(1, sizeof *c);
    int one = 1, r;

    if (!c) {
        cvd_warn_limited(&n->rl, "nbd-oom", "nbd: out of memory for a "
                         "connection");
        close(fd);
        return NULL;
    }
    if (sa->ss_family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->srv = n;
    c->since = (int64_t)time(NULL);
    cvd_conn_init(&c->conn, fd);
    peer_name(c, fd, sa, len);
    r = nbd_pool_new(c);
    if (r == 0 && (r = nbd_admit(n, c)) == -EBUSY)
        cvd_metrics_refused(n->d->metrics, CVD_REFUSED_CONNECTION_LIMIT);
    if (r < 0) {
        refuse_client(n, c);
        return NULL;
    }
    cvd_metrics_nbd_connection(n->d->metrics, 1);
    cvd_info_limited(&n->rl, "nbd-connected", "nbd: %s: connected",
                     c->conn.peer);
    return c;
}

static void start_client(struct cvd_nbd *n, int fd,
                         const struct sockaddr_storage *sa, socklen_t len)
{
    struct nbd_client *c = client_new(n, fd, sa, len);
    pthread_attr_t attr;
    pthread_t tid;
    int r;

    if (!c)
        return;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, NBD_THREAD_STACK);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    r = pthread_create(&tid, &attr, client_thread, c);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        cvd_warn_limited(&n->rl, "nbd-thread", "nbd: %s: cannot start a "
                         "thread: %s", c->conn.peer, strerror(r));
        client_free(c);
    }
}

void cvd_nbd_serve_fd(struct cvd_nbd *n, int fd)
{
    struct sockaddr_storage sa = { .ss_family = AF_UNIX };
    socklen_t len = sizeof sa;
    struct nbd_client *c;

    if (getpeername(fd, (struct sockaddr *)&sa, &len) < 0) {
        sa.ss_family = AF_UNIX;
        len = sizeof sa.ss_family;
    }
    c = client_new(n, fd, &sa, len);
    if (c)
        client_thread(c);
}

static void accept_one(struct cvd_nbd *n, int lfd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    int fd = accept4(lfd, (struct sockaddr *)&sa, &len, SOCK_CLOEXEC);

    if (fd >= 0)
        start_client(n, fd, &sa, len);
    else if (errno == EMFILE || errno == ENFILE)
        nbd_out_of_fds(n, lfd, errno);
}

static void *accept_thread(void *arg)
{
    struct cvd_nbd *n = arg;
    struct pollfd p[NBD_MAX_LISTEN + 1];

    for (int i = 0; i < n->nlisten; i++)
        p[i] = (struct pollfd){ .fd = n->listen_fd[i], .events = POLLIN };
    p[n->nlisten] = (struct pollfd){ .fd = n->wake[0], .events = POLLIN };
    for (;;) {
        if (poll(p, (nfds_t)n->nlisten + 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            cvd_err("nbd: poll: %s", strerror(errno));
            return NULL;
        }
        if (p[n->nlisten].revents)
            return NULL;
        for (int i = 0; i < n->nlisten; i++)
            if (p[i].revents & POLLIN)
                accept_one(n, p[i].fd);
    }
}

/* --- Start and stop ----------------------------------------------------- */

static void nbd_free(struct cvd_nbd *n)
{
    for (int i = 0; i < n->nlisten; i++)
        close(n->listen_fd[i]);
    if (n->unix_path)
        unlink(n->unix_path);
    free(n->unix_path);
    if (n->wake[0] >= 0)
        close(n->wake[0]);
    if (n->wake[1] >= 0)
        close(n->wake[1]);
    nbd_limits_stop(n);
    cvd_ratelimit_destroy(&n->rl);
    pthread_cond_destroy(&n->reap);
    pthread_cond_destroy(&n->idle);
    pthread_mutex_destroy(&n->lock);
    free(n);
}

static int nbd_listen(struct cvd_nbd *n)
{
    const struct cvd_config *cfg = &n->d->cfg;
    int r = 0;

    if (cfg->nbd_listen)
        r = listen_tcp(n, cfg->nbd_listen);
    if (r == 0 && cfg->nbd_unix)
        r = listen_unix(n, cfg->nbd_unix);
    if (r == 0 && cfg->nbd_unix)
        cvd_info("nbd: listening on %s", cfg->nbd_unix);
    if (r == 0)
        nbd_access_warn_config(n->d);
    return r;
}

int cvd_nbd_start(struct cvd *d, struct cvd_nbd **out)
{
    struct cvd_nbd *n = calloc(1, sizeof *n);
    int r;

    if (!n)
        return cv_error(-ENOMEM, "out of memory");
    n->d = d;
    n->wake[0] = n->wake[1] = -1;
    n->spare_fd = -1;
    n->threads = d->cfg.nbd_threads ? d->cfg.nbd_threads
                                    : NBD_DEFAULT_THREADS;
    pthread_mutex_init(&n->lock, NULL);
    pthread_cond_init(&n->idle, NULL);
    pthread_cond_init(&n->reap, NULL);
    cvd_ratelimit_init(&n->rl);
    /* A client that goes away must cost an error, not the process
     * (OpenSSL writes to the socket with write(2)). */
    signal(SIGPIPE, SIG_IGN);
    if (pipe2(n->wake, O_CLOEXEC) < 0) {
        r = cv_error(-errno, "nbd: pipe: %s", strerror(errno));
        goto fail;
    }
    r = nbd_listen(n);
    if (r == 0)
        r = nbd_limits_start(n);
    if (r < 0)
        goto fail;
    r = pthread_create(&n->accept_thread, NULL, accept_thread, n);
    if (r != 0) {
        r = cv_error(-r, "nbd: cannot start the accept thread: %s",
                     strerror(r));
        goto fail;
    }
    n->accept_started = 1;
    pthread_mutex_lock(&d->nbd_lock);
    d->nbd = n;
    pthread_mutex_unlock(&d->nbd_lock);
    *out = n;
    return 0;
fail:
    nbd_free(n);
    return r;
}

void cvd_nbd_stop(struct cvd_nbd *n)
{
    struct nbd_client *c;
    struct timespec deadline;
    int timed_out = 0;
    char b = 0;

    if (!n)
        return;
    /* No admin request looks at the server from here on. */
    pthread_mutex_lock(&n->d->nbd_lock);
    n->d->nbd = NULL;
    pthread_mutex_unlock(&n->d->nbd_lock);
    pthread_mutex_lock(&n->lock);
    n->stopping = 1;
    pthread_mutex_unlock(&n->lock);
    if (n->accept_started) {
        if (write(n->wake[1], &b, 1) < 0)
            cvd_warn("nbd: waking the accept thread: %s", strerror(errno));
        pthread_join(n->accept_thread, NULL);
    }
    /* No new connections now.  Readers see end of file; requests already
     * read are still served and answered ... */
    pthread_mutex_lock(&n->lock);
    for (c = n->clients; c; c = c->next)
        cvd_conn_shutdown_read(&c->conn);
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += STOP_GRACE_S;
    while (n->clients && !timed_out)
        timed_out = pthread_cond_timedwait(&n->idle, &n->lock,
                                           &deadline) == ETIMEDOUT;
    /* ... unless a client stopped reading them: then writes fail too. */
    for (c = n->clients; c; c = c->next) {
        cvd_warn_limited(&n->rl, "nbd-stop-unread", "nbd: %s: not reading "
                         "its replies; closing", c->conn.peer);
        shutdown(c->conn.fd, SHUT_RDWR);
        nbd_pool_wake(c);
    }
    while (n->clients)
        pthread_cond_wait(&n->idle, &n->lock);
    pthread_mutex_unlock(&n->lock);
    nbd_free(n);
}

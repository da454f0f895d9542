/* The admin API's HTTP layer: libmicrohttpd, one daemon for the unix
 * socket we create (mode 0600: whoever can connect can manage every
 * volume) and another for the connections handed over by the HTTPS
 * listener (admin-https.c).  We accept on both sockets ourselves. */
#include "admin.h"
#include "admin-internal.h"
#include "daemon.h"
#include "core/error.h"
#include "log.h"
#include "metrics/metrics.h"
#include "volumes/volumes.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

enum admin_transport { ADMIN_UNIX, ADMIN_HTTPS };

/* One libmicrohttpd daemon.  The unix socket and HTTPS each have their
 * own, so that remote clients filling one's connection limit cannot lock
 * the local administrator out. */
struct server {
    struct cvd_admin *a;
    enum admin_transport kind;
    struct MHD_Daemon *mhd;
};

struct cvd_admin {
    struct cvd *d;
    struct server local, remote;
    char *sock_path;
    int listen_fd, stop_fd;
    struct cvd_admin_reserve reserve;
    pthread_t acceptor;
    int accepting;
    struct cvd_admin_https *https;
    struct cvd_ratelimit rl;
};

/* One request's body as it arrives.  It may carry a secret: wiped on
 * free. */
struct body {
    char *data;
    size_t len, cap;
    int too_large;
    int refused;                /* answered before its body: ignore it */
};

static void body_free(struct body *b)
{
    if (!b)
        return;
    if (b->data) {
        OPENSSL_cleanse(b->data, b->cap);
        free(b->data);
    }
    free(b);
}

static int body_append(struct body *b, const char *data, size_t len)
{
    size_t cap;
    char *bigger;

    if (b->too_large || b->len + len > CVD_ADMIN_BODY_MAX) {
        b->too_large = 1;
        return 0;
    }
    if (b->len + len + 1 > b->cap) {
        /* Grown by copying, not realloc, so no unwiped copy is left. */
        cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len + 1)
            cap *= 2;
        bigger = malloc(cap);
        if (!bigger)
            return -ENOMEM;
        if (b->data) {
            memcpy(bigger, b->data, b->len);
            OPENSSL_cleanse(b->data, b->cap);
            free(b->data);
        }
        b->data = bigger;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status,
                                 json_object *o)
{
    const char *text = json_object_to_json_string_ext(o,
                           JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    struct MHD_Response *resp;
    enum MHD_Result ret;
    size_t len = strlen(text);
    char *copy = malloc(len + 1);

    if (!copy) {
        json_object_put(o);
        return MHD_NO;
    }
    memcpy(copy, text, len);
    copy[len] = '\n';
    json_object_put(o);
    resp = MHD_create_response_from_buffer(len + 1, copy, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(copy);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "application/json");
    ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Who sent a request: on our own unix socket the kernel tells us the user;
 * the HTTPS relay names its client (certificate subject and address) in
 * the address it gives MHD. */
static void actor_of(const struct server *srv, struct MHD_Connection *c,
                     char *buf, size_t len)
{
    const union MHD_ConnectionInfo *ci;
    struct ucred cred;
    socklen_t cl = sizeof cred;
    struct passwd pw, *pwp = NULL;
    char pwbuf[1024];
    int fd;

    if (srv->kind == ADMIN_HTTPS) {
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr && ci->client_addr->sa_family == AF_UNIX) {
            const struct sockaddr_un *su = (const void *)ci->client_addr;
            snprintf(buf, len, "%.*s", (int)sizeof su->sun_path,
                     su->sun_path);
        } else {
            snprintf(buf, len, "https:unknown");
        }
        return;
    }
    ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    fd = ci ? ci->connect_fd : -1;
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
        snprintf(buf, len, "unknown");
        return;
    }
    getpwuid_r(cred.uid, &pw, pwbuf, sizeof pwbuf, &pwp);
    snprintf(buf, len, "uid=%u(%s) pid=%d", (unsigned)cred.uid,
             pwp ? pwp->pw_name : "?", (int)cred.pid);
}

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind,
                               const char *key, const char *value)
{
    (void)kind;
    json_object_object_add(cls, key, json_object_new_string(value ? value
                                                                  : ""));
    return MHD_YES;
}

/* The URL's arguments (MHD hands the handler the path alone), decoded:
 * "?since=1h" is {"since": "1h"}, a bare "?since" {"since": ""}. */
static json_object *query_of(struct MHD_Connection *c)
{
    json_object *q = json_object_new_object();

    if (q)
        MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_arg, q);
    return q;
}

static int mutating(const char *method)
{
    return strcmp(method, "GET") && strcmp(method, "HEAD");
}

/* "%00" anywhere: our unescaper leaves a string that would decode to a
 * NUL byte as it came (unescape below), so that a name is refused rather
 * than cut at the NUL. */
static int has_encoded_nul(const char *s)
{
    for (; (s = strchr(s, '%')); s++)
        if (s[1] == '0' && s[2] == '0')
            return 1;
    return 0;
}

static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return has_encoded_nul(s) ? strlen(s) : MHD_http_unescape(s);
}

/* What the request's headers say before its body is read. */
struct headers {
    unsigned content_length, transfer_encoding;
    int nul_arg;
};

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind,
                                    const char *key, const char *value)
{
    struct headers *h = cls;

    (void)value;
    if (kind == MHD_HEADER_KIND && !strcasecmp(key, "Content-Length"))
        h->content_length++;
    if (kind == MHD_HEADER_KIND && !strcasecmp(key, "Transfer-Encoding"))
        h->transfer_encoding++;
    if (kind == MHD_GET_ARGUMENT_KIND &&
        (has_encoded_nul(key) || (value && has_encoded_nul(value))))
        h->nul_arg = 1;
    return MHD_YES;
}

/* An error for a request that must not go further, or NULL.  A body
 * whose length two headers say differently is one that a proxy in front
 * may frame differently from us (request smuggling): refused. */
static json_object *refuse_early(struct MHD_Connection *c, const char *url,
                                 unsigned *status)
{
    struct headers h = { 0 };

    MHD_get_connection_values(c, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND,
                              count_header, &h);
    if (h.content_length > 1)
        return cvd_admin_error(status, 400, "request: more than one "
                               "Content-Length header");
    if (h.transfer_encoding > 1 ||
        (h.transfer_encoding && h.content_length))
        return cvd_admin_error(status, 400, "request: Transfer-Encoding "
                               "with Content-Length or twice");
    if (has_encoded_nul(url) || h.nul_arg)
        return cvd_admin_error(status, 400, "request: an encoded NUL byte "
                               "(%00) in the URL");
    return NULL;
}

static void log_request(const char *method, const char *url, unsigned status,
                        json_object *out)
{
    json_object *e = NULL;

    /* Names and outcomes only: bodies may hold secret values. */
    if (mutating(method)) {
        json_object_object_get_ex(out, "error", &e);
        cvd_info("admin: %s %s: %u%s%s", method, url, status, e ? " " : "",
                 e ? json_object_get_string(e) : "");
    } else {
        cvd_debug("admin: %s %s: %u", method, url, status);
    }
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **ctx)
{
    struct server *srv = cls;
    struct body *b = *ctx;
    unsigned status = 500;
    json_object *out;

    (void)version;
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b)
            return MHD_NO;
        *ctx = b;
        out = refuse_early(c, url, &status);
        if (!out)
            return MHD_YES;
        b->refused = 1;
        log_request(method, url, status, out);
        return send_json(c, status, out);
    }
    if (*upload_size) {
        /* MHD's buffer is its own and writable: the copy in it is wiped
         * once we have ours (the body may hold a secret). */
        if (!b->refused && body_append(b, upload, *upload_size) < 0)
            return MHD_NO;
        OPENSSL_cleanse((char *)upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (b->refused)
        return MHD_YES;
    if (b->too_large) {
        char msg[96];
        snprintf(msg, sizeof msg, "request body: larger than %d bytes",
                 CVD_ADMIN_BODY_MAX);
        out = cvd_admin_error(&status, 413, msg);
    } else if (!strcmp(url, "/metrics")) {
        /* Prometheus text, not JSON; the same callers as every endpoint
         * (the socket's mode, HTTPS's admin certificates). */
        cvd_debug("admin: %s %s", method, url);
        return (enum MHD_Result)cvd_metrics_respond(srv->a->d, c, method,
                                                    CVD_METRICS_VOLUMES);
    } else {
        char actor[128];
        json_object *query = query_of(c);
        actor_of(srv, c, actor, sizeof actor);
        cv_clear_error();
        out = cvd_admin_dispatch(srv->a->d, actor, method, url, query,
                                 b->data ? b->data : "", b->len, &status);
        json_object_put(query);
    }
    log_request(method, url, status, out);
    return send_json(c, status, out);
}

static void completed(void *cls, struct MHD_Connection *c, void **ctx,
                      enum MHD_RequestTerminationCode why)
{
    (void)cls;
    (void)c;
    (void)why;
    body_free(*ctx);
    *ctx = NULL;
}

/* MHD repeats itself when a client makes it fail on every connection:
 * rate-limited by the kind of message, its format string. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct server *srv = cls;
    char msg[512];
    size_t n;

    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    /* HTTPS connections reach MHD as socketpairs, where its TCP options
     * cannot apply and Nagle delays cannot happen: not worth a warning. */
    if (strstr(msg, "TCP_NODELAY") || strstr(msg, "TCP_CORK") ||
        strstr(msg, "push the data"))
        cvd_debug("admin: %s", msg);
    else
        cvd_log_limited(&srv->a->rl, fmt, LOG_WARNING, "admin%s: %s",
                              srv->kind == ADMIN_HTTPS ? " https" : "", msg);
}

/* A socket file left by a daemon that died is removed; one that a running
 * daemon answers on is not. */
static int clear_stale_socket(const char *path, const struct sockaddr_un *sa)
{
    struct stat st;
    int fd, live;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : cv_error(-errno, "admin socket %s: %s",
                                              path, strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return cv_error(-EEXIST, "admin socket %s: exists and is not a "
                        "socket", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return cv_error(-errno, "admin socket %s: %s", path, strerror(errno));
    live = connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0;
    close(fd);
    if (live)
        return cv_error(-EADDRINUSE, "admin socket %s: another cryptvold "
                        "is listening there", path);
    unlink(path);
    return 0;
}

static int listen_unix(const char *path, int *out)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    mode_t old;
    int fd, r;

    if (strlen(path) >= sizeof sa.sun_path)
        return cv_error(-ENAMETOOLONG, "admin socket %s: path longer than "
                        "%zu bytes", path, sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    r = clear_stale_socket(path, &sa);
    if (r < 0)
        return r;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return cv_error(-errno, "admin socket %s: %s", path, strerror(errno));
    /* The socket is born 0600: no moment where others may connect.  umask
     * is per process, but this runs at startup before any thread makes
     * files. */
    old = umask(0177);
    r = bind(fd, (const struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (r == 0)
        r = listen(fd, 64);
    if (r < 0) {
        r = cv_error(-errno, "admin socket %s: %s", path, strerror(errno));
        close(fd);
        return r;
    }
    *out = fd;
    return 0;
}

/* Waits up to ms for fd to be readable or for stop: 1 readable, 0 not
 * (timed out, or stopping when *stopping says so), -1 error. */
static int wait_readable(struct cvd_admin *a, int fd, int ms, int *stopping)
{
    struct pollfd p[2] = { { .fd = a->stop_fd, .events = POLLIN },
                           { .fd = fd, .events = POLLIN } };
    int n;

    do
        n = poll(p, fd >= 0 ? 2 : 1, ms);
    while (n < 0 && errno == EINTR);
    *stopping = n > 0 && p[0].revents;
    if (n < 0)
        return -1;
    return n > 0 && !*stopping && fd >= 0 && p[1].revents;
}

int cvd_admin_reserve_refill(struct cvd_admin_reserve *rs)
{
    int held;

    pthread_mutex_lock(&rs->lock);
    if (rs->fd < 0)
        rs->fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    held = rs->fd >= 0;
    pthread_mutex_unlock(&rs->lock);
    return held;
}

int cvd_admin_reserve_release(struct cvd_admin_reserve *rs)
{
    int had;

    pthread_mutex_lock(&rs->lock);
    had = rs->fd >= 0;
    if (had)
        close(rs->fd);
    rs->fd = -1;
    pthread_mutex_unlock(&rs->lock);
    return had;
}

/* accept() on the unix socket; when no descriptor is left (NBD or HTTPS
 * clients took them), the reserve is given up for this connection. */
static int accept_local(struct cvd_admin *a, struct sockaddr_un *su,
                        socklen_t *sl)
{
    int fd, err;

    *sl = sizeof *su;
    fd = accept4(a->listen_fd, (struct sockaddr *)su, sl,
                 SOCK_CLOEXEC | SOCK_NONBLOCK);
    err = errno;
    if (fd < 0 && (err == EMFILE || err == ENFILE) &&
        cvd_admin_reserve_release(&a->reserve)) {
        *sl = sizeof *su;
        fd = accept4(a->listen_fd, (struct sockaddr *)su, sl,
                     SOCK_CLOEXEC | SOCK_NONBLOCK);
        err = errno;
    }
    errno = err;
    return fd;
}

/* Without a reserve, we look for one every 100 ms; with none and no
 * descriptor either, we wait instead of polling a socket that stays
 * readable in a loop. */
static void *accept_main(void *arg)
{
    struct cvd_admin *a = arg;
    struct sockaddr_un su;
    socklen_t sl;
    int stopping = 0, fd, held;

    while (!stopping) {
        held = cvd_admin_reserve_refill(&a->reserve);
        if (wait_readable(a, a->listen_fd, held ? -1 : 100, &stopping) <= 0)
            continue;
        fd = accept_local(a, &su, &sl);
        if (fd >= 0) {
            /* MHD owns fd from here, even when it refuses it. */
            if (MHD_add_connection(a->local.mhd, fd, (struct sockaddr *)&su,
                                   sl) != MHD_YES)
                cvd_log_limited(&a->rl, "add local", LOG_WARNING,
                                      "admin: the HTTP server refused a "
                                      "connection on %s", a->sock_path);
        } else if (errno != EAGAIN && errno != EINTR &&
                   errno != ECONNABORTED) {
            cvd_log_limited(&a->rl, "accept local", LOG_WARNING,
                                  "admin: accept on %s: %s", a->sock_path,
                                  strerror(errno));
            wait_readable(a, -1, 100, &stopping);
        }
    }
    return NULL;
}

/* A libmicrohttpd daemon without a socket of its own: connections come
 * from our acceptors.  A thread per connection: requests are few and some
 * (LUKS formatting) are slow.  Its memory pool is larger than 32 KiB so
 * that MHD maps it rather than mallocs it: it is zeroed between requests
 * and unmapped at the end, and no request body is left in freed heap. */
static int server_start(struct cvd_admin *a, struct server *srv,
                        enum admin_transport kind, unsigned limit,
                        unsigned timeout)
{
    srv->a = a;
    srv->kind = kind;
    srv->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
                                MHD_USE_THREAD_PER_CONNECTION | MHD_USE_AUTO |
                                MHD_USE_ITC | MHD_USE_ERROR_LOG |
                                MHD_USE_NO_LISTEN_SOCKET,
                                0, NULL, NULL, handle, srv,
                                MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
                                MHD_OPTION_NOTIFY_COMPLETED, completed, srv,
                                MHD_OPTION_UNESCAPE_CALLBACK, unescape, srv,
                                MHD_OPTION_CONNECTION_LIMIT, limit,
                                MHD_OPTION_CONNECTION_TIMEOUT, timeout,
                                MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                (size_t)CVD_ADMIN_POOL_SIZE,
                                MHD_OPTION_END);
    if (!srv->mhd)
        return cv_error(-EIO, "admin: the HTTP server did not start");
    return 0;
}

static int start_local(struct cvd_admin *a)
{
    int r;

    a->sock_path = strdup(a->d->cfg.admin_socket);
    if (!a->sock_path)
        return cv_error(-ENOMEM, "admin: out of memory");
    r = listen_unix(a->sock_path, &a->listen_fd);
    if (r == 0)
        r = server_start(a, &a->local, ADMIN_UNIX, 128, 120);
    if (r == 0 && (a->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0)
        r = cv_error(-errno, "admin: eventfd: %s", strerror(errno));
    if (r == 0)
        cvd_admin_reserve_refill(&a->reserve);
    if (r == 0 && pthread_create(&a->acceptor, NULL, accept_main, a) != 0)
        r = cv_error(-EAGAIN, "admin: cannot start a thread");
    a->accepting = r == 0;
    return r;
}

int cvd_admin_start(struct cvd *d, struct cvd_admin **out)
{
    struct cvd_admin *a;
    int r;

    *out = NULL;
    /* Finish what a daemon that died mid-request left, before any new
     * request can see it. */
    r = cvd_volumes_recover(d);
    if (r < 0)
        return r;
    a = calloc(1, sizeof *a);
    if (!a)
        return cv_error(-ENOMEM, "admin: out of memory");
    a->d = d;
    a->listen_fd = a->stop_fd = a->reserve.fd = -1;
    pthread_mutex_init(&a->reserve.lock, NULL);
    cvd_ratelimit_init(&a->rl);
    r = start_local(a);
    if (r == 0)
        r = cvd_admin_forward_start(d);
    if (r == 0 && d->cfg.admin_listen)
        r = server_start(a, &a->remote, ADMIN_HTTPS,
                         cvd_admin_https_max(d), CVD_ADMIN_HTTPS_IDLE_S);
    if (r == 0 && d->cfg.admin_listen)
        r = cvd_admin_https_start(d, a->remote.mhd, &a->rl, &a->reserve,
                                  &a->https);
    if (r < 0) {
        cvd_admin_stop(a);
        return r;
    }
    cvd_info("admin API on %s", a->sock_path);  /* HTTPS: logged as bound */
    *out = a;
    return 0;
}

void cvd_admin_stop(struct cvd_admin *a)
{
    uint64_t one = 1;

    if (!a)
        return;
    cvd_admin_https_stop(a->https);
    if (a->stop_fd >= 0 && write(a->stop_fd, &one, sizeof one) < 0)
        cvd_warn("admin: stop: %s", strerror(errno));
    if (a->accepting)
        pthread_join(a->acceptor, NULL);
    if (a->remote.mhd)
        MHD_stop_daemon(a->remote.mhd);
    if (a->local.mhd)
        MHD_stop_daemon(a->local.mhd);
    if (a->listen_fd >= 0)
        close(a->listen_fd);
    if (a->stop_fd >= 0)
        close(a->stop_fd);
    cvd_admin_reserve_release(&a->reserve);
    pthread_mutex_destroy(&a->reserve.lock);
    if (a->sock_path && a->listen_fd >= 0)
        unlink(a->sock_path);
    free(a->sock_path);
    cvd_ratelimit_destroy(&a->rl);
    free(a);
}

int cvd_admin_reload_tls(struct cvd_admin *a)
{
    return a && a->https ? cvd_admin_https_reload(a->https) : 0;
}

/* The admin API's HTTP layer: libmicrohttpd on a unix socket we create
 * (mode 0600: whoever can connect can manage every volume), and on
 * connections handed over by the HTTPS listener (admin-https.c).  A thread
 * per connection: requests are few and some (LUKS formatting) are slow. */
#include "admin.h"
#include "admin-internal.h"
#include "daemon.h"
#include "core/error.h"
#include "log.h"
#include "volumes/volumes.h"

#include <errno.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct cvd_admin {
    struct cvd *d;
    struct MHD_Daemon *mhd;
    char *sock_path;
    struct cvd_admin_https *https;
};

/* One request's body as it arrives.  It may carry a secret: wiped on
 * free. */
struct body {
    char *data;
    size_t len, cap;
    int too_large;
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

/* 1 if fd was accepted on our named admin socket, 0 if it is the MHD end
 * of an HTTPS relay's socketpair (which has no name). */
static int on_admin_socket(int fd)
{
    struct sockaddr_un sa;
    socklen_t sl = sizeof sa;

    return getsockname(fd, (struct sockaddr *)&sa, &sl) == 0 &&
           sl > offsetof(struct sockaddr_un, sun_path) && sa.sun_path[0];
}

/* Who sent a request: on our own unix socket the kernel tells us the user;
 * the HTTPS relay names its client in the address it gives MHD.  Which of
 * the two a connection is comes from the socket itself: the client address
 * MHD keeps for an accepted unix connection is not all initialised, so its
 * path says nothing. */
static void actor_of(struct MHD_Connection *c, char *buf, size_t len)
{
    const union MHD_ConnectionInfo *ci;
    struct ucred cred;
    socklen_t cl = sizeof cred;
    struct passwd pw, *pwp = NULL;
    char pwbuf[1024];
    int fd;

    ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    fd = ci ? ci->connect_fd : -1;
    if (fd >= 0 && !on_admin_socket(fd)) {
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr && ci->client_addr->sa_family == AF_UNIX) {
            const struct sockaddr_un *su = (const void *)ci->client_addr;
            snprintf(buf, len, "%.*s", (int)sizeof su->sun_path,
                     su->sun_path);
        } else {
            snprintf(buf, len, "unknown");
        }
        return;
    }
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

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **ctx)
{
    struct cvd_admin *a = cls;
    struct body *b = *ctx;
    unsigned status = 500;
    json_object *out;

    (void)version;
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b)
            return MHD_NO;
        *ctx = b;
        return MHD_YES;
    }
    if (*upload_size) {
        if (body_append(b, upload, *upload_size) < 0)
            return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    if (b->too_large) {
        char msg[96];
        snprintf(msg, sizeof msg, "request body: larger than %d bytes",
                 CVD_ADMIN_BODY_MAX);
        out = cvd_admin_error(&status, 413, msg);
    } else {
        char actor[128];
        json_object *query = query_of(c);
        actor_of(c, actor, sizeof actor);
        cv_clear_error();
        out = cvd_admin_dispatch(a->d, actor, method, url, query,
                                 b->data ? b->data : "", b->len, &status);
        json_object_put(query);
    }
    /* Names and outcomes only: bodies may hold secret values. */
    if (mutating(method)) {
        json_object *e = NULL;
        json_object_object_get_ex(out, "error", &e);
        cvd_info("admin: %s %s: %u%s%s", method, url, status, e ? " " : "",
                 e ? json_object_get_string(e) : "");
    } else {
        cvd_debug("admin: %s %s: %u", method, url, status);
    }
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

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;

    (void)cls;
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
        cvd_warn("admin: %s", msg);
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

int cvd_admin_start(struct cvd *d, struct cvd_admin **out)
{
    struct cvd_admin *a;
    int fd = -1, r;

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
    a->sock_path = strdup(d->cfg.admin_socket);
    r = a->sock_path ? listen_unix(a->sock_path, &fd) :
                       cv_error(-ENOMEM, "admin: out of memory");
    if (r < 0) {
        free(a->sock_path);
        free(a);
        return r;
    }
    a->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
                              MHD_USE_THREAD_PER_CONNECTION | MHD_USE_AUTO |
                              MHD_USE_ITC | MHD_USE_ERROR_LOG,
                              0, NULL, NULL, handle, a,
                              MHD_OPTION_EXTERNAL_LOGGER, mhd_log, a,
                              MHD_OPTION_LISTEN_SOCKET, fd,
                              MHD_OPTION_NOTIFY_COMPLETED, completed, a,
                              MHD_OPTION_CONNECTION_LIMIT, 128u,
                              MHD_OPTION_CONNECTION_TIMEOUT, 120u,
                              MHD_OPTION_END);
    if (!a->mhd) {
        close(fd);
        r = cv_error(-EIO, "admin socket %s: the HTTP server did not start",
                     a->sock_path);
    }
    if (r == 0 && d->cfg.admin_listen)
        r = cvd_admin_https_start(d, a->mhd, &a->https);
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
    if (!a)
        return;
    cvd_admin_https_stop(a->https);
    if (a->mhd)
        MHD_stop_daemon(a->mhd);
    if (a->sock_path)
        unlink(a->sock_path);
    free(a->sock_path);
    free(a);
}

int cvd_admin_reload_tls(struct cvd_admin *a)
{
    return a && a->https ? cvd_admin_https_reload(a->https) : 0;
}

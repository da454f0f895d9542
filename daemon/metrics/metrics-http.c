/* /metrics over HTTP: the answer on any libmicrohttpd connection (the admin
 * API's, authorised there), and --metrics-listen, a plain HTTP listener
 * for scrapers that cannot use a unix socket or a client certificate.
 *
 * The plain listener is unauthenticated, so it serves GET and HEAD of
 * /metrics and nothing else, reads no request body, and holds little: one
 * thread polls every connection (a scrape renders in milliseconds), at
 * most MAX_CONNS connections, PER_IP from one address, each closed after
 * IDLE_S seconds of silence.  It leaves out the per-volume series unless
 * metrics-volume-names says otherwise: volume names are what an NBD
 * client may only see once authenticated (docs/metrics.md). */
#include "metrics.h"
#include "metrics-text.h"

#include "core/error.h"
#include "daemon.h"
#include "log.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 16
#define PER_IP 4
#define IDLE_S 10
/* Request headers only: nothing else is read. */
#define CONN_MEMORY (32 * 1024)

struct cvd_metrics_http {
    struct cvd *d;
    struct MHD_Daemon *mhd;
    struct cvd_ratelimit rl;
    unsigned flags;             /* CVD_METRICS_VOLUMES or 0 */
};

static int send_text(struct MHD_Connection *c, unsigned status,
                     const char *type, char *text, size_t len)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* A short error in plain text; the scraper shows it as the target's. */
__attribute__((format(printf, 3, 4)))
static int send_error(struct MHD_Connection *c, unsigned status,
                      const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return MHD_NO;
    return send_text(c, status, "text/plain; charset=utf-8", msg, (size_t)n);
}

int cvd_metrics_respond(struct cvd *d, struct MHD_Connection *c,
                        const char *method, unsigned flags)
{
    char *text;
    size_t len;
    int r;

    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "/metrics: %.16s "
                          "is not allowed (GET or HEAD)\n", method);
    cv_clear_error();
    r = cvd_metrics_render(d, flags, &text, &len);
    if (r < 0) {
        cvd_warn("%s", cv_last_error());
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s\n",
                          cv_last_error());
    }
    return send_text(c, MHD_HTTP_OK, CVD_PROM_CONTENT_TYPE, text, len);
}

/* The first call of each request answers it: no body is ever read. */
static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **ctx)
{
    struct cvd_metrics_http *h = cls;

    (void)version;
    (void)upload;
    (void)upload_size;
    if (*ctx)                   /* the body of a request already answered */
        return MHD_YES;
    *ctx = h;
    cvd_debug("metrics: %.16s %.100s", method, url);
    if (strcmp(url, "/metrics"))
        return (enum MHD_Result)send_error(c, MHD_HTTP_NOT_FOUND, "%.100s: "
                                           "not found (this listener "
                                           "serves /metrics only)\n", url);
    return (enum MHD_Result)cvd_metrics_respond(h->d, c, method, h->flags);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct cvd_metrics_http *h = cls;
    char msg[512];
    size_t n;

    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    cvd_log_limited(&h->rl, fmt, LOG_WARNING, "metrics: %s", msg);
}

/* Splits "HOST:PORT", "[V6]:PORT" or ":PORT" (every address). */
static int split(const char *spec, char *host, size_t hlen, const char **port)
{
    const char *colon = strrchr(spec, ':'), *h = spec;
    size_t n;

    if (!colon || !colon[1])
        return cv_error(-EINVAL, "metrics-listen %s: expected HOST:PORT",
                        spec);
    n = (size_t)(colon - spec);
    if (n >= 2 && spec[0] == '[' && spec[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n >= hlen)
        return cv_error(-EINVAL, "metrics-listen %s: host too long", spec);
    memcpy(host, h, n);
    host[n] = '\0';
    *port = colon + 1;
    return 0;
}

static void log_bound(const struct cvd_metrics_http *h, int fd)
{
    struct sockaddr_storage ss = { 0 };
    socklen_t sl = sizeof ss;
    char host[NI_MAXHOST] = "?", serv[NI_MAXSERV] = "?";
    int v6;

    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, serv,
                    sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV);
    v6 = ss.ss_family == AF_INET6;
    cvd_info("metrics: http://%s%s%s:%s/metrics (plain HTTP, %s)",
             v6 ? "[" : "", host, v6 ? "]" : "", serv,
             h->flags & CVD_METRICS_VOLUMES ?
             "with volume names: metrics-volume-names" :
             "without per-volume series");
}

/* The first address of the name that binds; errors name the address. */
static int listen_on(const char *spec, int *out)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res = NULL, *ai;
    char host[256];
    const char *port = NULL;
    int fd = -1, one = 1, r;

    r = split(spec, host, sizeof host, &port);
    if (r < 0)
        return r;
    r = getaddrinfo(host[0] && strcmp(host, "*") ? host : NULL, port, &hints,
                    &res);
    if (r != 0)
        return cv_error(-EINVAL, "metrics-listen %s: %s", spec,
                        gai_strerror(r));
    r = -EADDRNOTAVAIL;
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd >= 0 &&
            (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
             bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
             listen(fd, 64) < 0)) {
            r = cv_error(-errno, "metrics-listen %s: %s", spec,
                         strerror(errno));
            close(fd);
            fd = -1;
        } else if (fd < 0) {
            r = cv_error(-errno, "metrics-listen %s: socket: %s", spec,
                         strerror(errno));
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return r == -EADDRNOTAVAIL ? cv_error(r, "metrics-listen %s: no "
                                              "address", spec) : r;
    *out = fd;
    return 0;
}

int cvd_metrics_http_start(struct cvd *d, struct cvd_metrics_http **out)
{
    struct cvd_metrics_http *h;
    int fd = -1, r;

    *out = NULL;
    if (!d->cfg.metrics_listen)
        return 0;
    h = calloc(1, sizeof *h);
    if (!h)
        return cv_error(-ENOMEM, "metrics-listen: out of memory");
    h->d = d;
    h->flags = d->cfg.metrics_volume_names ? CVD_METRICS_VOLUMES : 0;
    cvd_ratelimit_init(&h->rl);
    r = listen_on(d->cfg.metrics_listen, &fd);
    if (r == 0) {
        log_bound(h, fd);
        /* MHD owns fd from here and closes it when stopped (after a
         * failed start too, in some versions: not closed here then, a
         * descriptor left at exit rather than one closed twice). */
        h->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
                                  MHD_USE_AUTO | MHD_USE_ERROR_LOG,
                                  0, NULL, NULL, handle, h,
                                  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
                                  MHD_OPTION_LISTEN_SOCKET, fd,
                                  MHD_OPTION_CONNECTION_LIMIT,
                                  (unsigned)MAX_CONNS,
                                  MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                  (unsigned)PER_IP,
                                  MHD_OPTION_CONNECTION_TIMEOUT,
                                  (unsigned)IDLE_S,
                                  MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                  (size_t)CONN_MEMORY,
                                  MHD_OPTION_END);
        if (!h->mhd)
            r = cv_error(-EIO, "metrics-listen %s: the HTTP server did not "
                         "start", d->cfg.metrics_listen);
    }
    if (r < 0) {
        cvd_metrics_http_stop(h);
        return r;
    }
    if (h->flags & CVD_METRICS_VOLUMES)
        cvd_warn("metrics-listen %s: metrics-volume-names is on: volume "
                 "names are shown to anyone who can connect",
                 d->cfg.metrics_listen);
    *out = h;
    return 0;
}

void cvd_metrics_http_stop(struct cvd_metrics_http *h)
{
    if (!h)
        return;
    if (h->mhd)
        MHD_stop_daemon(h->mhd);
    cvd_ratelimit_destroy(&h->rl);
    free(h);
}

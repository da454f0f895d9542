/* The gateway client: one POST of a JSON document to etcd's JSON gateway,
 * on the endpoint that answered last, moving on to the next one when it
 * does not answer.  Thread-safe: each call takes an idle curl handle from a
 * small pool (a handle keeps its TLS connection open for the next call) or
 * makes one.  Reachability is recorded for status and logged once when the
 * store goes unreachable and once when it is back. */
#include "etcd-internal.h"
#include "core/error.h"
#include "log.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* An answer larger than this is refused: etcd's own request limit is
 * 1.5 MiB, and a range of every volume stays far below. */
#define MAX_ANSWER (256u << 20)
/* When every endpoint answered "unavailable" (an election), the round is
 * tried again after this long, within the request's timeout. */
#define UNAVAILABLE_PAUSE_MS 200

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int tls_file(const char *dir, const char *name, char **out)
{
    struct stat st;

    if (asprintf(out, "%s/%s", dir, name) < 0) {
        *out = NULL;
        return cv_error(-ENOMEM, "etcd: out of memory");
    }
    if (stat(*out, &st) < 0)
        return cv_error(-errno, "etcd TLS directory %s: %s: %s", dir, name,
                        strerror(errno));
    return 0;
}

/* "https://h:p[,URL...]": each URL with its scheme, at most
 * EK_MAX_ENDPOINTS, a trailing '/' dropped. */
static int parse_endpoints(struct ek_client *c, const char *list)
{
    const char *p = list, *end;
    size_t len;

    while (*p) {
        end = strchr(p, ',');
        len = end ? (size_t)(end - p) : strlen(p);
        while (len && p[len - 1] == '/')
            len--;
        if (len == 0)
            return cv_error(-EINVAL, "etcd endpoints \"%s\": an empty "
                            "endpoint", list);
        if (strncmp(p, "http://", 7) && strncmp(p, "https://", 8))
            return cv_error(-EINVAL, "etcd endpoint \"%.*s\": not an "
                            "http:// or https:// URL", (int)len, p);
        if (c->n == EK_MAX_ENDPOINTS)
            return cv_error(-EINVAL, "etcd endpoints: more than %d",
                            EK_MAX_ENDPOINTS);
        c->urls[c->n] = strndup(p, len);
        if (!c->urls[c->n])
            return cv_error(-ENOMEM, "etcd: out of memory");
        c->n++;
        p = end ? end + 1 : p + len;
    }
    if (c->n == 0)
        return cv_error(-EINVAL, "etcd endpoints: none given");
    return 0;
}

/* cfg->source as an address to bind to; one that is not a numeric
 * address is ignored, as the peer connections ignore it. */
static void resolve_source(struct ek_client *c, const char *host)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICHOST | AI_PASSIVE };
    struct addrinfo *res = NULL;

    if (!host || !host[0] || getaddrinfo(host, "0", &hints, &res) != 0)
        return;
    if (res->ai_addrlen <= sizeof c->source) {
        memcpy(&c->source, res->ai_addr, res->ai_addrlen);
        c->source_len = res->ai_addrlen;
    }
    freeaddrinfo(res);
}

/* curl's socket-option callback: a new connection leaves from the
 * source address when it is of the address's family (an IPv6 endpoint
 * with an IPv4 source goes unbound).  A failed bind is logged and the
 * connection made unbound: it is an address choice, not a credential. */
static int bind_source(void *arg, curl_socket_t fd, curlsocktype purpose)
{
    struct ek_client *c = arg;
    int domain = 0, one = 1;
    socklen_t len = sizeof domain;

    if (purpose != CURLSOCKTYPE_IPCXN ||
        getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
        domain != c->source.ss_family)
        return CURL_SOCKOPT_OK;
    /* The port is picked at connect, per destination, as unbound. */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&c->source, c->source_len) < 0)
        cvd_debug("etcd: binding a connection to its source address: %s",
                  strerror(errno));
    return CURL_SOCKOPT_OK;
}

int ek_client_init(struct ek_client *c, const struct cvd_etcd_config *cfg)
{
    size_t i;
    int r;

    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 5000;
    resolve_source(c, cfg->source);
    r = parse_endpoints(c, cfg->endpoints ? cfg->endpoints : "");
    for (i = 0; r == 0 && !cfg->tls_dir && i < c->n; i++)
        if (!strncmp(c->urls[i], "https://", 8))
            r = cv_error(-EINVAL, "etcd %s: https needs --etcd-tls-dir "
                         "(ca-cert.pem, client-cert.pem, client-key.pem)",
                         c->urls[i]);
    if (r == 0 && cfg->tls_dir) {
        r = tls_file(cfg->tls_dir, "ca-cert.pem", &c->ca);
        if (r == 0)
            r = tls_file(cfg->tls_dir, "client-cert.pem", &c->cert);
        if (r == 0)
            r = tls_file(cfg->tls_dir, "client-key.pem", &c->key);
    }
    snprintf(c->st.endpoint, sizeof c->st.endpoint, "%s",
             c->n ? c->urls[0] : "");
    return r;
}

void ek_client_free(struct ek_client *c)
{
    size_t i;

    for (i = 0; i < c->npool; i++)
        curl_easy_cleanup(c->pool[i]);
    for (i = 0; i < c->n; i++)
        free(c->urls[i]);
    free(c->ca);
    free(c->cert);
    free(c->key);
    pthread_mutex_destroy(&c->lock);
}

size_t ek_client_first(struct ek_client *c)
{
    size_t i;

    pthread_mutex_lock(&c->lock);
    i = c->current;
    pthread_mutex_unlock(&c->lock);
    return i;
}

/* Records what came of a request to endpoint i; logs the changes. */
void ek_client_result(struct ek_client *c, size_t i, int ok, const char *why)
{
    int was, known;

    pthread_mutex_lock(&c->lock);
    was = c->st.reachable;
    known = c->known;
    if (ok) {
        c->current = i;
        snprintf(c->st.endpoint, sizeof c->st.endpoint, "%s", c->urls[i]);
        c->st.error[0] = '\0';
    } else {
        snprintf(c->st.error, sizeof c->st.error, "%s", why);
    }
    if (!known || was != ok)
        c->st.since = (int64_t)time(NULL);
    c->st.reachable = ok;
    c->known = 1;
    pthread_mutex_unlock(&c->lock);
    if (ok && known && !was)
        cvd_info("metadata store reachable again: etcd %s", c->urls[i]);
    else if (!ok && (was || !known))
        cvd_warn("%s", why);
}

void ek_client_status(struct ek_client *c, struct cvd_meta_status *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->st;
    pthread_mutex_unlock(&c->lock);
}

int ek_client_setup(struct ek_client *c, CURL *h, size_t i, const char *path)
{
    char url[512];
    int bad = 0;

    snprintf(url, sizeof url, "%s%s", c->urls[i], path);
    bad |= curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_POST, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 5L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 2L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                            (long)c->timeout_ms) != CURLE_OK;
    if (c->source_len) {
        bad |= curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, bind_source) !=
               CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_SOCKOPTDATA, c) != CURLE_OK;
    }
    if (c->ca) {
        bad |= curl_easy_setopt(h, CURLOPT_CAINFO, c->ca) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_SSLKEY, c->key) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_SSLVERSION,
                                (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK;
    }
    return bad ? cv_error(-EINVAL, "etcd %s: curl refused an option", url)
               : 0;
}

static CURL *take_handle(struct ek_client *c)
{
    CURL *h = NULL;

    pthread_mutex_lock(&c->lock);
    if (c->npool)
        h = c->pool[--c->npool];
    pthread_mutex_unlock(&c->lock);
    if (h)
        curl_easy_reset(h);
    else
        h = curl_easy_init();
    return h;
}

static void give_handle(struct ek_client *c, CURL *h)
{
    pthread_mutex_lock(&c->lock);
    if (c->npool < EK_POOL) {
        c->pool[c->npool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    if (h)
        curl_easy_cleanup(h);
}

struct answer {
    char *data;
    size_t len, cap;
};

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t add = size * n;
    char *bigger;

    if (a->len + add + 1 > MAX_ANSWER)
        return 0;
    if (a->len + add + 1 > a->cap) {
        size_t cap = a->cap ? a->cap : 4096;
        while (cap < a->len + add + 1)
            cap *= 2;
        bigger = realloc(a->data, cap);
        if (!bigger)
            return 0;
        a->data = bigger;
        a->cap = cap;
    }
    memcpy(a->data + a->len, p, add);
    a->len += add;
    a->data[a->len] = '\0';
    return add;
}

/* gRPC status codes (google.golang.org/grpc/codes) etcd answers with. */
enum {
    GRPC_DEADLINE = 4, GRPC_NOT_FOUND = 5, GRPC_INVALID = 3,
    GRPC_PERMISSION = 7, GRPC_EXHAUSTED = 8, GRPC_OUT_OF_RANGE = 11,
    GRPC_UNAVAILABLE = 14, GRPC_UNAUTHENTICATED = 16,
};

static int grpc_errno(int64_t code)
{
    switch (code) {
    case GRPC_NOT_FOUND: return -ENOENT;
    case GRPC_INVALID: return -EINVAL;
    case GRPC_OUT_OF_RANGE: return -ERANGE;
    case GRPC_EXHAUSTED: return -E2BIG;
    case GRPC_PERMISSION: case GRPC_UNAUTHENTICATED: return -EACCES;
    default: return -EIO;
    }
}

/* What one endpoint did with the request. */
enum outcome { ANSWERED, UNREACHABLE, UNAVAILABLE };

/* Why endpoint i did not answer, appended to why. */
static void add_why(char *why, size_t len, const char *url, const char *what)
{
    size_t used = strlen(why);

    snprintf(why + used, len - used, "%setcd %s: %s", used ? "; " : "", url,
             what);
}

static enum outcome transfer_error(CURL *h, CURLcode rc, const char *errbuf,
                                   const char *url, char *why, size_t len)
{
    long os = 0;
    char what[CURL_ERROR_SIZE + 64];

    curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os);
    if (rc == CURLE_WRITE_ERROR)
        snprintf(what, sizeof what, "answer larger than %u bytes or out of "
                 "memory", MAX_ANSWER);
    else if (os && rc != CURLE_OPERATION_TIMEDOUT)
        snprintf(what, sizeof what, "%s", strerror((int)os));
    else
        snprintf(what, sizeof what, "%s", errbuf[0] ? errbuf :
                 curl_easy_strerror(rc));
    add_why(why, len, url, what);
    return UNREACHABLE;
}

/* An answer with a gRPC error in it: -errno with etcd's message, or
 * UNAVAILABLE for the next endpoint. */
static int answer_error(json_object *doc, long status, const char *url,
                        char *why, size_t len, enum outcome *out)
{
    json_object *err = NULL;
    const char *msg = NULL;
    int64_t code = 0;

    if (doc && json_object_is_type(doc, json_type_object)) {
        code = ek_json_i64(doc, "code");
        if (json_object_object_get_ex(doc, "message", &err) ||
            json_object_object_get_ex(doc, "error", &err))
            msg = json_object_get_string(err);
    }
    if (code == GRPC_UNAVAILABLE || code == GRPC_DEADLINE ||
        (!doc && status >= 500)) {
        char what[300];
        snprintf(what, sizeof what, "%s", msg ? msg : "unavailable");
        add_why(why, len, url, what);
        *out = UNAVAILABLE;
        return 0;
    }
    *out = ANSWERED;
    if (code)
        return cv_error(grpc_errno(code), "etcd %s: %s", url,
                        msg ? msg : "error");
    return cv_error(-EIO, "etcd %s: HTTP status %ld%s", url, status,
                    doc ? "" : " with an answer that is not JSON");
}

/* One try on endpoint i.  0 (answered, *resp set), <0 (answered with an
 * error), or 0 with *out UNREACHABLE/UNAVAILABLE and why extended. */
static int try_one(struct ek_client *c, CURL *h, size_t i, const char *path,
                   const char *body, long timeout_ms, json_object **resp,
                   enum outcome *out, char *why, size_t len)
{
    struct answer a = { 0 };
    struct curl_slist *hdr = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    json_object *doc = NULL;
    long status = 0;
    CURLcode rc;
    int r;

    curl_easy_reset(h);
    hdr = curl_slist_append(NULL, "Content-Type: application/json");
    r = hdr ? ek_client_setup(c, h, i, path)
            : cv_error(-ENOMEM, "etcd: out of memory");
    if (r == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &a);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        rc = curl_easy_perform(h);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
        if (rc != CURLE_OK) {
            *out = transfer_error(h, rc, errbuf, c->urls[i], why, len);
        } else {
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
            doc = a.data ? json_tokener_parse(a.data) : NULL;
            if (status == 200 && doc &&
                json_object_is_type(doc, json_type_object)) {
                *out = ANSWERED;
                *resp = doc;
                doc = NULL;
            } else {
                r = answer_error(doc, status, c->urls[i], why, len, out);
            }
        }
    }
    json_object_put(doc);
    curl_slist_free_all(hdr);
    free(a.data);
    return r;
}

int ek_call(struct ek_client *c, const char *path, json_object *req,
            json_object **resp)
{
    const char *body = json_object_to_json_string_ext(req,
                                                      JSON_C_TO_STRING_PLAIN);
    int64_t deadline = now_ms() + c->timeout_ms;
    char why[1024];
    enum outcome out = UNREACHABLE;
    size_t k, i = 0, first;
    int r = 0, unavailable;
    CURL *h;

    *resp = NULL;
    if (!body)
        return cv_error(-ENOMEM, "etcd: out of memory");
    h = take_handle(c);
    if (!h)
        return cv_error(-ENOMEM, "etcd: out of memory (curl handle)");
    do {
        why[0] = '\0';
        unavailable = 0;
        first = ek_client_first(c);
        for (k = 0; k < c->n; k++) {
            i = (first + k) % c->n;
            /* Each endpoint gets the whole timeout: one that does not
             * answer must not use up the next one's time. */
            r = try_one(c, h, i, path, body, (long)c->timeout_ms, resp, &out,
                        why, sizeof why);
            if (out == ANSWERED)
                break;
            unavailable |= out == UNAVAILABLE;
        }
        if (out == ANSWERED)
            break;
        if (unavailable && now_ms() + UNAVAILABLE_PAUSE_MS < deadline)
            usleep(UNAVAILABLE_PAUSE_MS * 1000);
        else
            unavailable = 0;
    } while (unavailable);
    give_handle(c, h);
    if (out == ANSWERED) {
        ek_client_result(c, i, 1, "");
        return r;
    }
    r = cv_error(-ENOTCONN, "metadata store unreachable: %s", why);
    ek_client_result(c, first, 0, cv_last_error());
    return r;
}

/* The watch: one thread holding a streaming POST /v3/watch over the whole
 * prefix.  The gateway sends one JSON message a line ({"result": {...}});
 * each event is told to the listener as (kind, name, deleted).  When the
 * stream is cut (the member died, lost its leader: the request asks
 * etcd to cancel it then, "hasleader"), the thread connects again, to the
 * next endpoint if need be, with a backoff, from the revision after the
 * last one it saw; if etcd compacted that revision, from now.  Events may
 * have been missed either way, so each new stream after the first starts
 * with CVD_META_EV_RESYNC.  curl's multi interface lets close wake the
 * thread at once (curl_multi_wakeup). */
#include "etcd-internal.h"
#include "core/base64.h"
#include "core/error.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
/* A line longer than this is not a watch message we can use. */
#define MAX_LINE (64u << 20)

struct ek_watch {
    struct ek *e;
    cvd_meta_watch_fn cb;
    void *arg;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop;                   /* close: under lock */
    int started;                /* the first stream was created: under lock */
    int waited_out;             /* watch() stopped waiting for it: under lock */
    CURLM *multi;
    /* The watch thread's own: */
    int64_t next_rev;           /* watch from here; 0: from now */
    int created;                /* this stream said created */
    int streams;                /* streams created so far */
    int cut;                    /* this stream is to end (canceled, bad) */
    char *buf;                  /* a line not yet complete */
    size_t len, cap;
};

/* Which record a key (without the prefix) is; 0 and ev, name set, or -1
 * for keys no listener is told about (seen/, access/, audit/). */
static int classify(const char *key, enum cvd_meta_event *ev, char *name,
                    size_t len)
{
    static const struct {
        const char *dir;
        enum cvd_meta_event ev;
    } dirs[] = {
        { "volumes/", CVD_META_EV_VOLUME }, { "secrets/", CVD_META_EV_SECRET },
        { "classes/", CVD_META_EV_CLASS }, { "sealkeys/", CVD_META_EV_SEALKEY },
        { "nodes/", CVD_META_EV_NODE }, { "alive/", CVD_META_EV_ALIVE },
        { "locks/", CVD_META_EV_LOCK },
        { "replicas/", CVD_META_EV_REPLICAS }, { "attach/", CVD_META_EV_ATTACH },
    };
    unsigned long gen;
    char *end;
    size_t i, n;

    if (!strcmp(key, "cluster")) {
        *ev = CVD_META_EV_CLUSTER;
        name[0] = '\0';
        return 0;
    }
    if (!strncmp(key, "keks/", 5)) {
        /* "GEN/NODE" without the zero padding. */
        gen = strtoul(key + 5, &end, 10);
        if (*end != '/')
            return -1;
        *ev = CVD_META_EV_KEK;
        snprintf(name, len, "%lu%s", gen, end);
        return 0;
    }
    for (i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        n = strlen(dirs[i].dir);
        if (!strncmp(key, dirs[i].dir, n) && key[n]) {
            *ev = dirs[i].ev;
            snprintf(name, len, "%s", key + n);
            return 0;
        }
    }
    return -1;
}

static void tell(struct ek_watch *w, json_object *event)
{
    size_t plen = strlen(w->e->prefix), klen;
    const char *k64, *type = NULL;
    json_object *kv, *t;
    unsigned char *key = NULL;
    enum cvd_meta_event ev;
    char name[2 * CVD_NAME_MAX + 16];
    int64_t mod;

    if (!json_object_object_get_ex(event, "kv", &kv))
        return;
    if (json_object_object_get_ex(event, "type", &t))
        type = json_object_get_string(t);
    mod = ek_json_i64(kv, "mod_revision");
    if (mod >= w->next_rev)
        w->next_rev = mod + 1;
    k64 = json_object_get_string(json_object_object_get_ex(kv, "key", &t) ?
                                 t : NULL);
    if (!k64 || cv_base64_decode(k64, 4096, &key, &klen) < 0)
        return;
    if (klen > plen && !memcmp(key, w->e->prefix, plen) &&
        !memchr(key, '\0', klen)) {
        char *rel = strndup((char *)key + plen, klen - plen);
        if (rel && classify(rel, &ev, name, sizeof name) == 0)
            w->cb(w->arg, ev, name, type && !strcmp(type, "DELETE"));
        free(rel);
    }
    free(key);
}

/* One message of the stream. */
static void message(struct ek_watch *w, json_object *msg)
{
    json_object *res, *events, *hdr;
    int64_t rev = 0;
    size_t i, n;

    if (!json_object_object_get_ex(msg, "result", &res)) {
        cvd_warn("etcd watch: %s", json_object_get_string(msg));
        w->cut = 1;
        return;
    }
    if (json_object_object_get_ex(res, "header", &hdr))
        rev = ek_json_i64(hdr, "revision");
    if (ek_json_i64(res, "canceled")) {
        if (ek_json_i64(res, "compact_revision")) {
            cvd_warn("etcd watch: revision %" PRId64 " was compacted; "
                     "watching from now", w->next_rev);
            w->next_rev = 0;
        }
        w->cut = 1;
        return;
    }
    if (ek_json_i64(res, "created")) {
        if (!w->next_rev)
            w->next_rev = rev + 1;
        w->created = 1;
        pthread_mutex_lock(&w->lock);
        int resync = w->streams > 0 || w->waited_out;
        w->started = 1;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        w->streams++;
        if (resync)
            w->cb(w->arg, CVD_META_EV_RESYNC, "", 0);
    }
    if (json_object_object_get_ex(res, "events", &events) &&
        json_object_is_type(events, json_type_array)) {
        n = json_object_array_length(events);
        for (i = 0; i < n; i++)
            tell(w, json_object_array_get_idx(events, i));
    } else if (rev && w->created && rev >= w->next_rev) {
        /* A progress message: nothing before rev is still to come. */
        w->next_rev = rev + 1;
    }
}

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct ek_watch *w = arg;
    size_t add = size * n, start = 0, i;
    json_object *msg;
    char *bigger;

    if (w->len + add + 1 > MAX_LINE)
        return 0;
    if (w->len + add + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 8192;
        while (cap < w->len + add + 1)
            cap *= 2;
        if (!(bigger = realloc(w->buf, cap)))
            return 0;
        w->buf = bigger;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, p, add);
    w->len += add;
    for (i = 0; i < w->len && !w->cut; i++) {
        if (w->buf[i] != '\n')
            continue;
        w->buf[i] = '\0';
        msg = json_tokener_parse(w->buf + start);
        if (msg)
            message(w, msg);
        json_object_put(msg);
        start = i + 1;
    }
    memmove(w->buf, w->buf + start, w->len - start);
    w->len -= start;
    return w->cut ? 0 : add;
}

static int stopping(struct ek_watch *w)
{
    int s;

    pthread_mutex_lock(&w->lock);
    s = w->stop;
    pthread_mutex_unlock(&w->lock);
    return s;
}

static json_object *create_request(struct ek_watch *w)
{
    json_object *req = json_object_new_object(), *cr;
    char from[24];
    int err = 0;

    cr = json_object_new_object();
    if (!req || !cr || json_object_object_add(req, "create_request", cr) < 0) {
        json_object_put(req);
        json_object_put(cr);
        return NULL;
    }
    /* Every key of the prefix. */
    ek_add_key(w->e, cr, "", 1, &err);
    if (w->next_rev) {
        snprintf(from, sizeof from, "%" PRId64, w->next_rev);
        ek_add_str(cr, "start_revision", from, &err);
    }
    if (err) {
        json_object_put(req);
        return NULL;
    }
    return req;
}

/* One stream on endpoint i until it ends or close stops it. */
static void stream(struct ek_watch *w, CURL *h, size_t i)
{
    struct ek_client *c = &w->e->c;
    struct curl_slist *hdr = NULL;
    char errbuf[CURL_ERROR_SIZE] = "", why[CURL_ERROR_SIZE + 300];
    json_object *req = create_request(w);
    int running = 1, left;
    CURLMsg *done;
    CURLcode rc = CURLE_OK;

    hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (hdr)
        hdr = curl_slist_append(hdr, "Grpc-Metadata-hasleader: true");
    if (!req || !hdr || ek_client_setup(c, h, i, "/v3/watch") < 0) {
        cvd_warn("etcd watch: out of memory");
        goto out;
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS,
                     json_object_to_json_string_ext(req,
                                                    JSON_C_TO_STRING_PLAIN));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    w->len = 0;
    w->cut = 0;
    w->created = 0;
    curl_multi_add_handle(w->multi, h);
    while (running && !stopping(w)) {
        if (curl_multi_perform(w->multi, &running) != CURLM_OK)
            break;
        if (running)
            curl_multi_poll(w->multi, NULL, 0, 1000, NULL);
    }
    while ((done = curl_multi_info_read(w->multi, &left)))
        if (done->msg == CURLMSG_DONE)
            rc = done->data.result;
    curl_multi_remove_handle(w->multi, h);
    if (!w->created && !stopping(w)) {
        long os = 0;
        curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os);
        snprintf(why, sizeof why, "metadata store unreachable: etcd %s: %s "
                 "(watch)", c->urls[i], os ? strerror((int)os) :
                 errbuf[0] ? errbuf : curl_easy_strerror(rc));
        ek_client_result(c, i, 0, why);
    }
out:
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdr);
    json_object_put(req);
}

/* ms from now on CLOCK_MONOTONIC (the clock the condition waits on). */
static void deadline_in(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* Sleeps ms unless close comes first. */
static void pause_ms(struct ek_watch *w, unsigned ms)
{
    struct timespec ts;

    deadline_in(&ts, ms);
    pthread_mutex_lock(&w->lock);
    while (!w->stop &&
           pthread_cond_timedwait(&w->cond, &w->lock, &ts) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&w->lock);
}

static void *watch_thread(void *arg)
{
    struct ek_watch *w = arg;
    unsigned backoff = BACKOFF_MIN_MS;
    size_t k = 0, i;
    CURL *h = curl_easy_init();

    if (!h) {
        cvd_err("etcd watch: out of memory: no watch");
        return NULL;
    }
    while (!stopping(w)) {
        /* The endpoint that answers requests, then the next ones. */
        i = (ek_client_first(&w->e->c) + k) % w->e->c.n;
        curl_easy_reset(h);
        stream(w, h, i);
        if (stopping(w))
            break;
        if (w->created) {
            backoff = BACKOFF_MIN_MS;
            k = 0;
            cvd_info("etcd watch on %s: cut; watching again from revision "
                     "%" PRId64, w->e->c.urls[i], w->next_rev);
        } else {
            k++;
        }
        pause_ms(w, backoff);
        if (!w->created)
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                   : backoff * 2;
    }
    curl_easy_cleanup(h);
    return NULL;
}

void ek_watch_stop(struct ek_watch *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    curl_multi_wakeup(w->multi);
    pthread_join(w->thread, NULL);
    curl_multi_cleanup(w->multi);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w->buf);
    free(w);
}

/* Waits (at most the request timeout) for the first stream, so that a
 * change made after watch returns is reported; if etcd does not answer
 * by then, the thread goes on trying and starts with a RESYNC. */
static void wait_started(struct ek_watch *w)
{
    struct timespec ts;
    unsigned ms = w->e->c.timeout_ms;

    deadline_in(&ts, ms);
    pthread_mutex_lock(&w->lock);
    while (!w->started &&
           pthread_cond_timedwait(&w->cond, &w->lock, &ts) != ETIMEDOUT)
        ;
    if (!w->started)
        w->waited_out = 1;
    pthread_mutex_unlock(&w->lock);
}

int ek_watch(struct cvd_meta *m, cvd_meta_watch_fn cb, void *arg)
{
    struct ek *e = ek_of(m);
    pthread_condattr_t ca;
    struct ek_watch *w = NULL;
    int r = 0;

    pthread_mutex_lock(&e->watch_lock);
    if (e->watch)
        r = cv_error(-EBUSY, "etcd watch: already started");
    else if (!(w = calloc(1, sizeof *w)) || !(w->multi = curl_multi_init())) {
        free(w);
        r = cv_error(-ENOMEM, "etcd watch: out of memory");
    }
    if (r < 0) {
        pthread_mutex_unlock(&e->watch_lock);
        return r;
    }
    w->e = e;
    w->cb = cb;
    w->arg = arg;
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    r = -pthread_create(&w->thread, NULL, watch_thread, w);
    if (r < 0) {
        curl_multi_cleanup(w->multi);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w);
        pthread_mutex_unlock(&e->watch_lock);
        return cv_error(r, "etcd watch: no thread: %s", strerror(-r));
    }
    e->watch = w;
    pthread_mutex_unlock(&e->watch_lock);
    wait_started(w);
    return 0;
}

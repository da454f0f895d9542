/* The audit log (audit.h): DATA-DIR/audit.log, one JSON object per line.
 *
 * One descriptor, O_RDWR | O_APPEND: each event is one write(2) under a
 * mutex, then fdatasync, so lines never interleave and an event reported
 * as recorded survives a power cut.  Readers pread the same file up to the
 * size it had under the mutex, so they never see a line half written by
 * this process; a line torn by a crash is skipped and counted. */
#include "audit.h"
#include "audit-internal.h"
#include "core/error.h"
#include "log.h"
#include "meta/meta.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* Longest actor, event or object kept, and longest detail, in bytes. */
#define FIELD_MAX 256
#define DETAIL_MAX 1024
/* Far above any line we write: a longer one is not ours, and skipped. */
#define SCAN_BUF (128 * 1024)

struct cvd_audit {
    char *path;
    int fd;
    pthread_mutex_t lock;
    /* The file does not end in '\n' (a crash, or a write cut short by a
     * full disk): the next event starts with one, so that it is a line of
     * its own and only the torn one is lost. */
    int torn;
    struct audit_refusals *refusals;    /* audit-refused.c */
    atomic_uint_fast64_t failures;      /* events not written */
    char node[AUDIT_NODE_MAX + 1];      /* "" until set: no "node" field */
    /* A cluster: events also go to the store's log (audit-remote.c). */
    struct cvd_meta *meta;
    struct audit_remote *remote;
};

/* Events waiting for etcd at most: beyond, they are only in the file. */
#define REMOTE_QUEUE_MAX 10000
/* How long a cluster-wide read waits for this node's own events to reach
 * the store, so that a client sees what it just did. */
#define READ_FLUSH_MS 1000

#define SUMMARIES_AT_ONCE 8
#define DEFAULT_REFUSED_BURST 10

static void write_summaries(struct cvd_audit *a,
                            const struct audit_summary *sum, unsigned n);

void cvd_audit_close(struct cvd_audit *a)
{
    if (!a)
        return;
    if (a->refusals && a->fd >= 0) {
        struct audit_summary *sum = calloc(256, sizeof *sum);

        if (sum)
            write_summaries(a, sum, audit_refusals_flush(a->refusals, sum,
                                                         256));
        free(sum);
    }
    audit_refusals_free(a->refusals);
    audit_remote_free(a->remote);
    if (a->fd >= 0)
        close(a->fd);
    pthread_mutex_destroy(&a->lock);
    free(a->path);
    free(a);
}

/* Like a secret file: who can read the log learns who touched which key
 * and when. */
static int check_private(struct cvd_audit *a)
{
    struct stat st;

    if (fstat(a->fd, &st) < 0)
        return cv_error(-errno, "audit log %s: %s", a->path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return cv_error(-EINVAL, "audit log %s: not a regular file", a->path);
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        return cv_error(-EPERM, "audit log %s: mode %04o lets group or "
                        "others access it; refusing (chmod 600 %s)", a->path,
                        (unsigned)(st.st_mode & 07777), a->path);
    if (st.st_uid != geteuid())
        return cv_error(-EPERM, "audit log %s: owned by uid %u, not by this "
                        "process (uid %u); refusing", a->path,
                        (unsigned)st.st_uid, (unsigned)geteuid());
    return 0;
}

static int check_tail(struct cvd_audit *a)
{
    struct stat st;
    char last;

    if (fstat(a->fd, &st) < 0)
        return cv_error(-errno, "audit log %s: %s", a->path, strerror(errno));
    if (st.st_size == 0)
        return 0;
    if (pread(a->fd, &last, 1, st.st_size - 1) != 1)
        return cv_error(-EIO, "audit log %s: reading: %s", a->path,
                        strerror(errno));
    a->torn = last != '\n';
    if (a->torn)
        cvd_warn("audit log %s: the last line is incomplete (a crash while "
                 "writing?); kept, and skipped by readers", a->path);
    return 0;
}

/* The directory entry of a new log must survive a power cut too. */
static void sync_dir(const char *data_dir)
{
    int fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int cvd_audit_open(const char *data_dir, struct cvd_audit **out)
{
    struct cvd_audit *a;
    int r = 0;

    *out = NULL;
    a = calloc(1, sizeof *a);
    if (!a)
        return cv_error(-ENOMEM, "audit log in %s: out of memory", data_dir);
    a->fd = -1;
    pthread_mutex_init(&a->lock, NULL);
    a->refusals = audit_refusals_new(DEFAULT_REFUSED_BURST);
    if (!a->refusals) {
        r = cv_error(-ENOMEM, "audit log in %s: out of memory", data_dir);
        goto out;
    }
    if (asprintf(&a->path, "%s/audit.log", data_dir) < 0) {
        a->path = NULL;
        r = cv_error(-ENOMEM, "audit log in %s: out of memory", data_dir);
        goto out;
    }
    a->fd = open(a->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC |
                 O_NOFOLLOW | O_NOCTTY, 0600);
    if (a->fd < 0) {
        r = cv_error(-errno, "audit log %s: %s", a->path, strerror(errno));
        goto out;
    }
    r = check_private(a);
    if (r == 0)
        r = check_tail(a);
    if (r == 0)
        sync_dir(data_dir);
out:
    if (r < 0) {
        cvd_audit_close(a);
        return r;
    }
    *out = a;
    return 0;
}

/* Length of the UTF-8 character at p, or 0 if the bytes there are not
 * one (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF). */
static size_t utf8_len(const unsigned char *p)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n, i;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        n = 3;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        n = 4;
    else
        return 0;
    if (p[0] == 0xe0)
        lo = 0xa0;
    else if (p[0] == 0xed)
        hi = 0x9f;
    else if (p[0] == 0xf0)
        lo = 0x90;
    else if (p[0] == 0xf4)
        hi = 0x8f;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)     /* also stops at the NUL */
            return 0;
    return n;
}

/* s cut to max bytes (whole characters, "..." when cut) with each byte
 * that is not UTF-8 replaced by U+FFFD: json-c copies bytes as they are,
 * and a line must be JSON that any reader accepts.  out has max + 4
 * bytes. */
static const char *clean(const char *s, char *out, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, n;

    while (*p) {
        n = utf8_len(p);
        if (o + (n ? n : 3) > max) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (n) {
            memcpy(out + o, p, n);
            p += n;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            p++;
        }
        o += n ? n : 3;
    }
    out[o] = '\0';
    return out;
}

static void add(json_object *o, const char *key, const char *val, size_t max)
{
    char buf[DETAIL_MAX + 4];

    json_object_object_add(o, key, json_object_new_string(
                               clean(val ? val : "", buf, max)));
}

/* "\n" + the event + "\n" (malloc'ed): the leading newline ends a torn
 * line when there is one. */
static char *event_line(const char *node, const char *actor,
                        const char *event, const char *object, int ok,
                        const char *detail, size_t *len)
{
    json_object *o = json_object_new_object();
    char now[32], *line = NULL;
    const char *text;
    size_t n;

    if (!o)
        return NULL;
    cvd_audit_format_time((int64_t)time(NULL), now, sizeof now);
    add(o, "time", now, FIELD_MAX);
    if (node[0])
        add(o, "node", node, FIELD_MAX);
    add(o, "actor", actor, FIELD_MAX);
    add(o, "event", event, FIELD_MAX);
    add(o, "object", object, FIELD_MAX);
    add(o, "result", ok ? "ok" : "refused", FIELD_MAX);
    if (detail)
        add(o, "detail", detail, DETAIL_MAX);
    text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
                                             JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    if (text)
        line = malloc(n + 2);
    if (line) {
        line[0] = '\n';
        memcpy(line + 1, text, n);
        line[n + 1] = '\n';
        *len = n + 2;
    }
    json_object_put(o);
    return line;
}

/* Returns 0 or a negative errno; leaves the thread's error message alone. */
static int append(struct cvd_audit *a, const char *line, size_t len)
{
    ssize_t w;
    int err = 0;

    pthread_mutex_lock(&a->lock);
    if (!a->torn) {
        line++;
        len--;
    }
    do
        w = write(a->fd, line, len);
    while (w < 0 && errno == EINTR);
    if (w == (ssize_t)len) {
        a->torn = 0;
        if (fdatasync(a->fd) < 0)
            err = errno;
    } else {
        err = w < 0 ? errno : ENOSPC;   /* a short write: the disk filled */
        if (w > 0)
            a->torn = 1;
    }
    pthread_mutex_unlock(&a->lock);
    return -err;
}

uint64_t cvd_audit_write_failures(struct cvd_audit *a)
{
    return a ? atomic_load_explicit(&a->failures, memory_order_relaxed) : 0;
}

void cvd_audit_set_node(struct cvd_audit *a, const char *node)
{
    if (a)
        snprintf(a->node, sizeof a->node, "%s", node ? node : "");
}

int cvd_audit_set_cluster(struct cvd_audit *a, struct cvd_meta *m)
{
    int r;

    if (!a || a->remote)
        return 0;
    r = audit_remote_new(m, a->node, REMOTE_QUEUE_MAX, &a->remote);
    if (r == 0)
        a->meta = m;
    return r;
}

int cvd_audit_clustered(struct cvd_audit *a)
{
    return a && a->remote;
}

void cvd_audit_remote_counts(struct cvd_audit *a,
                             struct cvd_audit_remote_counts *out)
{
    struct audit_remote_stats s = { 0 };

    if (a && a->remote)
        audit_remote_stats(a->remote, &s);
    out->sent = s.sent;
    out->failures = s.failures;
    out->dropped = s.dropped;
    out->queued = s.queued;
}

int cvd_audit_read_cluster(struct cvd_audit *a, int64_t since,
                           int (*cb)(void *arg, json_object *event),
                           void *arg)
{
    if (!a || !a->remote)
        return cvd_audit_read(a, since, cb, arg);
    if (audit_remote_flush(a->remote, READ_FLUSH_MS) < 0)
        cvd_warn("audit log: some of this node's events have not reached "
                 "the cluster's log yet; the answer lacks them");
    return a->meta->ops->audit_read(a->meta, since, cb, arg);
}

void cvd_audit_set_refused_burst(struct cvd_audit *a, unsigned burst)
{
    if (a)
        audit_refusals_set_burst(a->refusals, burst);
}

static int record(struct cvd_audit *a, const char *actor, const char *event,
                  const char *object, int ok, const char *detail)
{
    char *line;
    size_t len = 0;
    int r;

    line = event_line(a->node, actor, event, object, ok, detail, &len);
    r = line ? append(a, line, len) : -ENOMEM;
    /* Only what the file has: an unlock whose event the file refused did
     * not happen, and the cluster's log must not say it did. */
    if (r == 0 && a->remote)
        audit_remote_push(a->remote, line, len);
    free(line);
    if (r < 0)
        atomic_fetch_add_explicit(&a->failures, 1, memory_order_relaxed);
    if (r < 0)
        cvd_err("audit log %s: %s %s (%s) not recorded: %s", a->path,
                event ? event : "?", object ? object : "?",
                ok ? "ok" : "refused", strerror(-r));
    return r;
}

static void write_summaries(struct cvd_audit *a,
                            const struct audit_summary *sum, unsigned n)
{
    char detail[256], t1[32], t2[32];

    for (unsigned i = 0; i < n; i++) {
        cvd_audit_format_time(sum[i].first, t1, sizeof t1);
        cvd_audit_format_time(sum[i].last, t2, sizeof t2);
        snprintf(detail, sizeof detail, "%lu more refused from %s to %s, "
                 "not recorded one by one (audit-refused-burst)",
                 sum[i].count, t1, t2);
        record(a, sum[i].actor, sum[i].event, sum[i].object, 0, detail);
    }
}

int cvd_audit(struct cvd_audit *a, const char *actor, const char *event,
              const char *object, int ok, const char *detail, ...)
{
    struct audit_summary sum[SUMMARIES_AT_ONCE];
    char dbuf[2 * DETAIL_MAX];
    unsigned nsum = 0;
    va_list ap;
    int full = 1, r = 0;

    if (!a)
        return 0;
    /* Refusals beyond the burst are counted, and summarised later. */
    if (!ok) {
        full = audit_refusal(a->refusals, actor, event, object, sum,
                             SUMMARIES_AT_ONCE, &nsum);
        write_summaries(a, sum, nsum);
    }
    if (!full)
        return 0;
    if (detail) {
        va_start(ap, detail);
        vsnprintf(dbuf, sizeof dbuf, detail, ap);
        va_end(ap);
    }
    r = record(a, actor, event, object, ok, detail ? dbuf : NULL);
    return r;
}

struct scan {
    int64_t since;
    int (*cb)(void *arg, json_object *event);
    void *arg;
    json_tokener *tok;
    int skipped;
};

/* One line without its '\n': an event at or after since goes to the
 * callback; anything that is not an event is counted. */
static int one_line(struct scan *sc, const char *line, size_t len)
{
    json_object *o, *t;
    int64_t when;
    int r = 0;

    if (len == 0)
        return 0;
    json_tokener_reset(sc->tok);
    o = json_tokener_parse_ex(sc->tok, line, (int)len);
    if (!o || json_tokener_get_error(sc->tok) != json_tokener_success ||
        json_tokener_get_parse_end(sc->tok) != len ||
        !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, "time", &t) ||
        !json_object_is_type(t, json_type_string) ||
        cvd_audit_parse_time(json_object_get_string(t), &when) < 0)
        sc->skipped++;
    else if (when >= sc->since)
        r = sc->cb(sc->arg, o);
    json_object_put(o);
    return r;
}

/* Reads [0, end) in chunks, line by line. */
static int scan(struct cvd_audit *a, off_t end, struct scan *sc)
{
    char *buf = malloc(SCAN_BUF);
    size_t have = 0, start, len, i;
    int discard = 0, r = 0;
    off_t pos = 0;
    ssize_t n;

    if (!buf)
        return cv_error(-ENOMEM, "audit log %s: out of memory", a->path);
    while (r == 0 && pos < end) {
        len = SCAN_BUF - have;
        if ((off_t)len > end - pos)
            len = (size_t)(end - pos);
        n = pread(a->fd, buf + have, len, pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = cv_error(-errno, "audit log %s: reading: %s", a->path,
                         strerror(errno));
            break;
        }
        if (n == 0)
            break;              /* truncated under us: that is the end */
        pos += n;
        len = have + (size_t)n;
        for (i = have, start = 0; r == 0 && i < len; i++) {
            if (buf[i] != '\n')
                continue;
            if (!discard)
                r = one_line(sc, buf + start, i - start);
            discard = 0;
            start = i + 1;
        }
        have = len - start;
        memmove(buf, buf + start, have);
        if (have == SCAN_BUF) {
            sc->skipped += !discard;
            discard = 1;
            have = 0;
        }
    }
    if (r == 0 && have > 0 && !discard)
        sc->skipped++;          /* no '\n': torn by a crash mid-write */
    free(buf);
    return r;
}

int cvd_audit_read(struct cvd_audit *a, int64_t since,
                   int (*cb)(void *arg, json_object *event), void *arg)
{
    struct scan sc = { .since = since, .cb = cb, .arg = arg };
    struct stat st;
    int r;

    if (!a)
        return cv_error(-ENOENT, "audit log: not open");
    /* Under the lock: every line this process wrote up to here is whole. */
    pthread_mutex_lock(&a->lock);
    r = fstat(a->fd, &st);
    pthread_mutex_unlock(&a->lock);
    if (r < 0)
        return cv_error(-errno, "audit log %s: %s", a->path, strerror(errno));
    sc.tok = json_tokener_new();
    if (!sc.tok)
        return cv_error(-ENOMEM, "audit log %s: out of memory", a->path);
    r = scan(a, st.st_size, &sc);
    json_tokener_free(sc.tok);
    if (r < 0)
        return r;
    if (sc.skipped)
        cvd_warn("audit log %s: %d line%s that %s not a whole event "
                 "skipped", a->path, sc.skipped, sc.skipped == 1 ? "" : "s",
                 sc.skipped == 1 ? "is" : "are");
    return sc.skipped;
}

/* Below this much free space an event may not fit: key operations are
 * refused before they are done rather than done unrecorded. */
#define CHECK_FREE (64 * 1024)

int cvd_audit_refuse(struct cvd_audit *a, int err, const char *what)
{
    return cv_error(err < 0 ? err : -EIO, "%s refused: the audit log %s "
                    "cannot be written (%s); key operations are not done "
                    "unrecorded: free space on its file system (audit-dir)",
                    what, a ? a->path : "?", strerror(err < 0 ? -err : EIO));
}

int cvd_audit_check(struct cvd_audit *a, const char *what)
{
    struct statvfs vfs;

    if (!a)
        return 0;
    if (fstatvfs(a->fd, &vfs) < 0)
        return cvd_audit_refuse(a, -errno, what);
    if ((uint64_t)vfs.f_bavail * vfs.f_frsize < CHECK_FREE)
        return cvd_audit_refuse(a, -ENOSPC, what);
    return 0;
}

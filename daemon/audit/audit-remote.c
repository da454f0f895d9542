/* The cluster-wide copy of the audit log (audit.h, cvd_audit_set_cluster):
 * each event the local file recorded is also appended to etcd, from a
 * bounded queue by a thread of its own.
 *
 * The local file is the one a key operation must be able to write (audit.c
 * refuses the operation otherwise); etcd is where every node's events meet.
 * So an append to etcd never holds up a key operation: it is queued, and
 * a failed one (etcd unreachable) stays at the head of the queue and is
 * retried, with a pause growing to a few seconds, until it goes through.
 * Events that find the queue full are not sent (the local file has them)
 * and are counted, as failed appends are, for the metrics. */
#include "audit-internal.h"
#include "core/error.h"
#include "log.h"
#include "meta/meta.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RETRY_FIRST_MS 100
#define RETRY_MAX_MS 5000
/* How long close waits for the queue to empty before it gives up (the
 * events left are in the local file). */
#define CLOSE_FLUSH_MS 2000

struct item {
    struct item *next;
    char line[];
};

struct audit_remote {
    struct cvd_meta *meta;
    char node[AUDIT_NODE_MAX + 1];
    size_t max;
    pthread_mutex_t lock;
    pthread_cond_t wake;        /* an event queued, or stop */
    pthread_cond_t idle;        /* the queue emptied */
    struct item *head, **tail;
    size_t n;
    int stop;
    int down;                   /* the last append failed (logged once) */
    pthread_t thread;
    struct audit_remote_stats st;
};

static void deadline_in(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void pop(struct audit_remote *q)
{
    struct item *it = q->head;

    q->head = it->next;
    if (!q->head)
        q->tail = &q->head;
    q->n--;
    free(it);
    if (!q->head)
        pthread_cond_broadcast(&q->idle);
}

/* One attempt at the head of the queue, with the lock dropped while etcd
 * is asked.  Returns the pause before the next attempt (0: none). */
static unsigned send_head(struct audit_remote *q, unsigned backoff)
{
    int r;

    pthread_mutex_unlock(&q->lock);
    r = q->meta->ops->audit_append(q->meta, q->node, q->head->line);
    pthread_mutex_lock(&q->lock);
    if (r == 0) {
        if (q->down)
            cvd_info("audit log: appending to the cluster's log works "
                     "again (%zu events waiting)", q->n - 1);
        q->down = 0;
        q->st.sent++;
        pop(q);
        return 0;
    }
    q->st.failures++;
    if (!q->down)
        cvd_err("audit log: appending an event to the cluster's log "
                "failed: %s; it is kept and retried (the local audit log "
                "has it)", cv_last_error());
    q->down = 1;
    return backoff ? (backoff * 2 > RETRY_MAX_MS ? RETRY_MAX_MS :
                      backoff * 2) : RETRY_FIRST_MS;
}

static void *sender(void *arg)
{
    struct audit_remote *q = arg;
    struct timespec ts;
    unsigned backoff = 0;

    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (!q->head && !q->stop)
            pthread_cond_wait(&q->wake, &q->lock);
        if (!q->head)
            break;
        backoff = send_head(q, backoff);
        if (backoff && q->stop)
            break;              /* etcd is not answering: do not hold up stop */
        if (backoff) {
            deadline_in(&ts, backoff);
            pthread_cond_timedwait(&q->wake, &q->lock, &ts);
        }
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

int audit_remote_new(struct cvd_meta *m, const char *node, size_t max,
                     struct audit_remote **out)
{
    struct audit_remote *q = calloc(1, sizeof *q);

    *out = NULL;
    if (!q)
        return cv_error(-ENOMEM, "audit log: out of memory");
    q->meta = m;
    snprintf(q->node, sizeof q->node, "%s", node);
    q->max = max;
    q->tail = &q->head;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->wake, NULL);
    pthread_cond_init(&q->idle, NULL);
    if (pthread_create(&q->thread, NULL, sender, q) != 0) {
        pthread_cond_destroy(&q->idle);
        pthread_cond_destroy(&q->wake);
        pthread_mutex_destroy(&q->lock);
        free(q);
        return cv_error(-EAGAIN, "audit log: cannot start the thread that "
                        "appends to the cluster's log");
    }
    *out = q;
    return 0;
}

void audit_remote_push(struct audit_remote *q, const char *line, size_t len)
{
    struct item *it;

    /* The file's line has its newlines around it; etcd's has none. */
    while (len && line[0] == '\n') {
        line++;
        len--;
    }
    while (len && line[len - 1] == '\n')
        len--;
    pthread_mutex_lock(&q->lock);
    it = q->n < q->max ? malloc(sizeof *it + len + 1) : NULL;
    if (it) {
        memcpy(it->line, line, len);
        it->line[len] = '\0';
        it->next = NULL;
        *q->tail = it;
        q->tail = &it->next;
        q->n++;
        pthread_cond_signal(&q->wake);
    } else {
        if (!q->st.dropped)
            cvd_err("audit log: %zu events wait to be appended to the "
                    "cluster's log; further ones are not sent there (they "
                    "are in the local audit log), and counted", q->n);
        q->st.dropped++;
    }
    pthread_mutex_unlock(&q->lock);
}

int audit_remote_flush(struct audit_remote *q, unsigned ms)
{
    struct timespec ts;
    int r = 0;

    deadline_in(&ts, ms);
    pthread_mutex_lock(&q->lock);
    while (q->head && r == 0)
        r = pthread_cond_timedwait(&q->idle, &q->lock, &ts);
    r = q->head ? -ETIMEDOUT : 0;
    pthread_mutex_unlock(&q->lock);
    return r;
}

void audit_remote_stats(struct audit_remote *q, struct audit_remote_stats *s)
{
    pthread_mutex_lock(&q->lock);
    *s = q->st;
    s->queued = q->n;
    pthread_mutex_unlock(&q->lock);
}

void audit_remote_free(struct audit_remote *q)
{
    if (!q)
        return;
    audit_remote_flush(q, CLOSE_FLUSH_MS);
    pthread_mutex_lock(&q->lock);
    q->stop = 1;
    pthread_cond_signal(&q->wake);
    pthread_mutex_unlock(&q->lock);
    pthread_join(q->thread, NULL);
    if (q->n)
        cvd_warn("audit log: %zu events were not appended to the cluster's "
                 "log before the daemon stopped (they are in the local "
                 "audit log)", q->n);
    while (q->head)
        pop(q);
    pthread_cond_destroy(&q->idle);
    pthread_cond_destroy(&q->wake);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

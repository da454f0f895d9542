#include "workers.h"
#include "error.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How long an idle worker polls for the next job before it sleeps.  Waking
 * a sleeping thread costs tens of microseconds (more on a virtual CPU that
 * halted): as long as a 1 MiB request takes to encrypt on one core, so a
 * worker that sleeps between the requests of a stream never helps.  A
 * worker that polls a little past each job is there for the next one; one
 * that sees nothing for this long sleeps, so an idle pool costs nothing. */
#define SPIN_NS 200000

struct job {
    void (*fn)(void *arg, unsigned part);
    void *arg;
    unsigned nparts;
    unsigned next;              /* next part to hand out */
    unsigned done;
    pthread_cond_t finished;
    struct job *link;           /* queue of jobs with parts to hand out */
};

struct cv_workers {
    pthread_mutex_t lock;
    pthread_cond_t work;
    struct job *head, *tail;
    int stopping;
    unsigned nthreads;
    unsigned sleeping;          /* workers in pthread_cond_wait */
    pthread_t *threads;
};

/* Takes the next part of the first queued job; lock held. */
static struct job *take_part(struct cv_workers *w, unsigned *part)
{
    struct job *j = w->head;

    if (!j)
        return NULL;
    *part = j->next++;
    if (j->next == j->nparts) {
        __atomic_store_n(&w->head, j->link, __ATOMIC_RELAXED);
        if (!w->head)
            w->tail = NULL;
    }
    return j;
}

static void finish_part(struct job *j)
{
    /* Atomic: the caller may be polling for it without the lock. */
    if (__atomic_add_fetch(&j->done, 1, __ATOMIC_RELEASE) == j->nparts)
        pthread_cond_signal(&j->finished);
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Polls (lock released) for a job or a stop for up to SPIN_NS; returns
 * with the lock held again.  Only a hint: the caller checks under the
 * lock. */
static void spin_for_work(struct cv_workers *w)
{
    int64_t end = now_ns() + SPIN_NS;
    unsigned i = 0;

    pthread_mutex_unlock(&w->lock);
    while (!__atomic_load_n(&w->head, __ATOMIC_RELAXED) &&
           !__atomic_load_n(&w->stopping, __ATOMIC_RELAXED)) {
        cpu_relax();
        if (++i % 64 == 0 && now_ns() > end)
            break;
    }
    pthread_mutex_lock(&w->lock);
}

/* Waits (lock held) until there is a job or the pool stops. */
static void wait_for_work(struct cv_workers *w)
{
    if (!w->stopping && !w->head)
        spin_for_work(w);
    while (!w->stopping && !w->head) {
        w->sleeping++;
        pthread_cond_wait(&w->work, &w->lock);
        w->sleeping--;
    }
}

static void *worker_main(void *arg)
{
    struct cv_workers *w = arg;
    struct job *j;
    unsigned part;

    pthread_mutex_lock(&w->lock);
    for (;;) {
        wait_for_work(w);
        if (w->stopping)
            break;
        j = take_part(w, &part);
        pthread_mutex_unlock(&w->lock);
        j->fn(j->arg, part);
        pthread_mutex_lock(&w->lock);
        finish_part(j);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int cv_workers_new(unsigned nthreads, struct cv_workers **out)
{
    struct cv_workers *w;
    unsigned i;
    int r;

    if (nthreads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = n > 1 ? (unsigned)n - 1 : 0;
    }
    w = calloc(1, sizeof *w);
    if (!w)
        return cv_error(-ENOMEM, "worker pool: out of memory");
    w->threads = calloc(nthreads ? nthreads : 1, sizeof *w->threads);
    if (!w->threads) {
        free(w);
        return cv_error(-ENOMEM, "worker pool: out of memory");
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->work, NULL);
    for (i = 0; i < nthreads; i++) {
        r = pthread_create(&w->threads[i], NULL, worker_main, w);
        if (r != 0) {
            w->nthreads = i;
            cv_workers_free(w);
            return cv_error(-r, "worker pool: starting thread %u: %s", i,
                            strerror(r));
        }
    }
    w->nthreads = nthreads;
    *out = w;
    return 0;
}

void cv_workers_free(struct cv_workers *w)
{
    unsigned i;

    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    __atomic_store_n(&w->stopping, 1, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&w->work);
    pthread_mutex_unlock(&w->lock);
    for (i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    pthread_cond_destroy(&w->work);
    pthread_mutex_destroy(&w->lock);
    free(w->threads);
    free(w);
}

unsigned cv_workers_count(const struct cv_workers *w)
{
    return w ? w->nthreads : 0;
}

void cv_workers_run(struct cv_workers *w, unsigned nparts,
                    void (*fn)(void *arg, unsigned part), void *arg)
{
    struct job j = { .fn = fn, .arg = arg, .nparts = nparts };
    unsigned part;

    if (nparts == 0)
        return;
    if (!w || w->nthreads == 0 || nparts == 1) {
        for (part = 0; part < nparts; part++)
            fn(arg, part);
        return;
    }
    pthread_cond_init(&j.finished, NULL);
    pthread_mutex_lock(&w->lock);
    if (w->tail)
        w->tail->link = &j;
    else
        __atomic_store_n(&w->head, &j, __ATOMIC_RELAXED);
    w->tail = &j;
    /* Workers still polling see the job without a wake-up. */
    if (w->sleeping)
        pthread_cond_broadcast(&w->work);
    /* Work on our own job rather than idle: parts of other callers' jobs
     * may be ahead of ours, so only take ours. */
    while (j.next < j.nparts) {
        part = j.next++;
        if (j.next == j.nparts) {
            /* Unlink ourselves: we handed out the last part. */
            struct job **pp = &w->head, *prev = NULL;
            while (*pp && *pp != &j) {
                prev = *pp;
                pp = &(*pp)->link;
            }
            if (*pp) {
                /* pp may be &w->head, which spinning workers read. */
                __atomic_store_n(pp, j.link, __ATOMIC_RELAXED);
                if (w->tail == &j)
                    w->tail = prev;
            }
        }
        pthread_mutex_unlock(&w->lock);
        fn(arg, part);
        pthread_mutex_lock(&w->lock);
        finish_part(&j);
    }
    /* The last parts are the workers': poll for them a while (a thread
     * woken from the condition costs as much as a part), then sleep. */
    if (j.done < j.nparts) {
        int64_t end = now_ns() + SPIN_NS;
        unsigned i = 0;

        pthread_mutex_unlock(&w->lock);
        while (__atomic_load_n(&j.done, __ATOMIC_ACQUIRE) < j.nparts &&
               (++i % 64 || now_ns() < end))
            cpu_relax();
        pthread_mutex_lock(&w->lock);
    }
    /* Under the lock: the worker that finished the last part has also
     * signalled j.finished before it let the lock go, so j can go now. */
    while (__atomic_load_n(&j.done, __ATOMIC_ACQUIRE) < j.nparts)
        pthread_cond_wait(&j.finished, &w->lock);
    pthread_mutex_unlock(&w->lock);
    pthread_cond_destroy(&j.finished);
}

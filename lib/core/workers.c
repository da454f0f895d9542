#include "workers.h"
#include "error.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
        w->head = j->link;
        if (!w->head)
            w->tail = NULL;
    }
    return j;
}

static void finish_part(struct job *j)
{
    if (++j->done == j->nparts)
        pthread_cond_signal(&j->finished);
}

static void *worker_main(void *arg)
{
    struct cv_workers *w = arg;
    struct job *j;
    unsigned part;

    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->stopping && !w->head)
            pthread_cond_wait(&w->work, &w->lock);
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
    w->stopping = 1;
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
        w->head = &j;
    w->tail = &j;
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
                *pp = j.link;
                if (w->tail == &j)
                    w->tail = prev;
            }
        }
        pthread_mutex_unlock(&w->lock);
        fn(arg, part);
        pthread_mutex_lock(&w->lock);
        finish_part(&j);
    }
    while (j.done < j.nparts)
        pthread_cond_wait(&j.finished, &w->lock);
    pthread_mutex_unlock(&w->lock);
    pthread_cond_destroy(&j.finished);
}

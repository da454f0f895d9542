/* Background jobs, one list per daemon: a job is a thread working on one
 * volume; the list keeps its progress and, once it ends, its result until
 * the next job of that volume (or the volume's delete). */
#include "jobs.h"
#include "daemon.h"
#include "core/error.h"
#include "log.h"
#include "meta/meta.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cvd_job {
    struct cvd_job *next;
    struct cvd_jobs *jobs;
    struct cvd *d;
    char volume[CVD_NAME_MAX + 1];
    struct cvd_job_info info;   /* under jobs->lock */
    cvd_job_fn fn;
    void *arg;
    void (*free_arg)(void *);
    pthread_t thread;
    int joined;
    uint64_t start_ms;          /* monotonic */
};

static uint64_t mono_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

struct cvd_jobs {
    pthread_mutex_t lock;
    struct cvd_job *list;
    atomic_int stopping;
};

const char *cvd_job_kind_name(enum cvd_job_kind k)
{
    switch (k) {
    case CVD_JOB_MERGE: return "merge";
    case CVD_JOB_FLATTEN: return "flatten";
    case CVD_JOB_IMPORT: return "import";
    case CVD_JOB_EXPORT: return "export";
    case CVD_JOB_BACKUP: return "backup";
    case CVD_JOB_RESTORE: return "restore";
    }
    return "?";
}

const char *cvd_job_state_name(enum cvd_job_state s)
{
    switch (s) {
    case CVD_JOB_RUNNING: return "Running";
    case CVD_JOB_COMPLETED: return "Completed";
    case CVD_JOB_FAILED: return "Failed";
    }
    return "?";
}

int cvd_jobs_new(struct cvd_jobs **out)
{
    struct cvd_jobs *j = calloc(1, sizeof *j);

    if (!j)
        return cv_error(-ENOMEM, "jobs: out of memory");
    pthread_mutex_init(&j->lock, NULL);
    *out = j;
    return 0;
}

static void job_join(struct cvd_job *job)
{
    if (!job->joined) {
        pthread_join(job->thread, NULL);
        job->joined = 1;
    }
}

void cvd_jobs_free(struct cvd_jobs *j)
{
    if (!j)
        return;
    atomic_store(&j->stopping, 1);
    while (j->list) {
        struct cvd_job *job = j->list;

        j->list = job->next;
        job_join(job);
        free(job);
    }
    pthread_mutex_destroy(&j->lock);
    free(j);
}

static struct cvd_job *find(struct cvd_jobs *j, const char *volume)
{
    for (struct cvd_job *job = j->list; job; job = job->next)
        if (!strcmp(job->volume, volume))
            return job;
    return NULL;
}

static void *job_main(void *p)
{
    struct cvd_job *job = p;
    struct cvd_jobs *j = job->jobs;
    int r = job->fn(job->d, job, job->arg);

    if (job->free_arg)
        job->free_arg(job->arg);
    pthread_mutex_lock(&j->lock);
    job->info.state = r < 0 ? CVD_JOB_FAILED : CVD_JOB_COMPLETED;
    job->info.finished = (int64_t)time(NULL);
    job->info.elapsed_ms = mono_ms() - job->start_ms;
    if (r < 0)
        snprintf(job->info.error, sizeof job->info.error, "%s",
                 cv_last_error());
    else
        job->info.done = job->info.total;
    pthread_mutex_unlock(&j->lock);
    if (r < 0)
        cvd_err("volume %s: %s failed: %s", job->volume,
                cvd_job_kind_name(job->info.kind), job->info.error);
    else
        cvd_info("volume %s: %s done", job->volume,
                 cvd_job_kind_name(job->info.kind));
    return NULL;
}

/* Under j->lock: -EBUSY if volume's job runs; else drops its last one. */
static int take_slot(struct cvd_jobs *j, const char *volume)
{
    struct cvd_job **p = &j->list;

    while (*p && strcmp((*p)->volume, volume))
        p = &(*p)->next;
    if (!*p)
        return 0;
    if ((*p)->info.state == CVD_JOB_RUNNING)
        return cv_error(-EBUSY, "volume %s: a %s%s%s is running; try again "
                        "when it is done", volume,
                        cvd_job_kind_name((*p)->info.kind),
                        (*p)->info.target[0] ? " of " : "",
                        (*p)->info.target);
    {
        struct cvd_job *old = *p;

        *p = old->next;
        job_join(old);
        free(old);
    }
    return 0;
}

int cvd_job_start(struct cvd *d, const char *volume, enum cvd_job_kind kind,
                  const char *target, uint64_t total, cvd_job_fn fn,
                  void *arg, void (*free_arg)(void *))
{
    struct cvd_jobs *j = d->jobs;
    struct cvd_job *job = calloc(1, sizeof *job);
    int r;

    if (!job) {
        if (free_arg)
            free_arg(arg);
        return cv_error(-ENOMEM, "volume %s: out of memory", volume);
    }
    job->jobs = j;
    job->d = d;
    snprintf(job->volume, sizeof job->volume, "%s", volume);
    job->info.kind = kind;
    job->info.state = CVD_JOB_RUNNING;
    snprintf(job->info.target, sizeof job->info.target, "%s",
             target ? target : "");
    job->info.total = total;
    job->info.started = (int64_t)time(NULL);
    job->start_ms = mono_ms();
    job->fn = fn;
    job->arg = arg;
    job->free_arg = free_arg;
    pthread_mutex_lock(&j->lock);
    r = take_slot(j, volume);
    if (r == 0 && (r = -pthread_create(&job->thread, NULL, job_main, job)))
        cv_error(r, "volume %s: starting a %s: %s", volume,
                 cvd_job_kind_name(kind), strerror(-r));
    if (r == 0) {
        job->next = j->list;
        j->list = job;
    }
    pthread_mutex_unlock(&j->lock);
    if (r < 0) {
        if (free_arg)
            free_arg(arg);
        free(job);
    }
    return r;
}

int cvd_job_progress(struct cvd_job *job, uint64_t done)
{
    struct cvd_jobs *j = job->jobs;

    pthread_mutex_lock(&j->lock);
    job->info.done = done;
    if (done > job->info.total)
        job->info.total = done;
    pthread_mutex_unlock(&j->lock);
    if (atomic_load(&j->stopping))
        return cv_error(-ECANCELED, "volume %s: %s stopped: the daemon is "
                        "stopping (it resumes or can be run again)",
                        job->volume, cvd_job_kind_name(job->info.kind));
    return 0;
}

void cvd_job_set_total(struct cvd_job *job, uint64_t total)
{
    pthread_mutex_lock(&job->jobs->lock);
    job->info.total = total;
    pthread_mutex_unlock(&job->jobs->lock);
}

int cvd_job_get(struct cvd *d, const char *volume, struct cvd_job_info *out)
{
    struct cvd_job *job;
    int r = -ENOENT;

    if (!d->jobs)
        return -ENOENT;
    pthread_mutex_lock(&d->jobs->lock);
    job = find(d->jobs, volume);
    if (job) {
        *out = job->info;
        if (out->state == CVD_JOB_RUNNING)
            out->elapsed_ms = mono_ms() - job->start_ms;
        r = 0;
    }
    pthread_mutex_unlock(&d->jobs->lock);
    return r;
}

int cvd_job_check_idle(struct cvd *d, const char *volume)
{
    struct cvd_job_info info;

    if (cvd_job_get(d, volume, &info) < 0 || info.state != CVD_JOB_RUNNING)
        return 0;
    return cv_error(-EBUSY, "volume %s: a %s%s%s is running; try again when "
                    "it is done", volume, cvd_job_kind_name(info.kind),
                    info.target[0] ? " of " : "", info.target);
}

void cvd_job_forget(struct cvd *d, const char *volume)
{
    if (!d->jobs)
        return;
    pthread_mutex_lock(&d->jobs->lock);
    take_slot(d->jobs, volume);
    pthread_mutex_unlock(&d->jobs->lock);
}

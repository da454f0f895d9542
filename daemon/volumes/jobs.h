/* Long work on one volume that runs in the background: a snapshot's
 * merge, a flatten, an import, an export.  One at a time per volume; the
 * admin API shows the running or last one in the volume's info, with its
 * progress, and the CLI waits on that. */
#ifndef CRYPTVOLD_JOBS_H
#define CRYPTVOLD_JOBS_H

#include <limits.h>
#include <stdint.h>

struct cvd;
struct cvd_job;
struct cvd_jobs;

enum cvd_job_kind { CVD_JOB_MERGE, CVD_JOB_FLATTEN, CVD_JOB_IMPORT,
                    CVD_JOB_EXPORT, CVD_JOB_BACKUP, CVD_JOB_RESTORE };
enum cvd_job_state { CVD_JOB_RUNNING, CVD_JOB_COMPLETED, CVD_JOB_FAILED };

struct cvd_job_info {
    enum cvd_job_kind kind;
    enum cvd_job_state state;
    char target[PATH_MAX];      /* the snapshot merged, the file, or "" */
    uint64_t done, total;       /* bytes */
    int64_t started, finished;  /* seconds since the epoch; finished 0 */
    uint64_t elapsed_ms;        /* how long it ran (so far), monotonic */
    char error[512];
};

const char *cvd_job_kind_name(enum cvd_job_kind k);     /* "merge" */
const char *cvd_job_state_name(enum cvd_job_state s);   /* "Running" */

int cvd_jobs_new(struct cvd_jobs **out);
/* Asks every running job to stop (its next progress step fails with
 * -ECANCELED) and waits for them; then frees.  NULL is ignored. */
void cvd_jobs_free(struct cvd_jobs *j);

/* The work: returns 0 or a negative errno with a message.  arg is freed
 * with free_arg (may be NULL) when it returns. */
typedef int (*cvd_job_fn)(struct cvd *d, struct cvd_job *job, void *arg);
/* Starts fn on a thread for volume; -EBUSY (saying what runs) if a job
 * runs on it already.  total: the bytes it will go through (progress may
 * raise it). */
int cvd_job_start(struct cvd *d, const char *volume, enum cvd_job_kind kind,
                  const char *target, uint64_t total, cvd_job_fn fn,
                  void *arg, void (*free_arg)(void *));
/* From the job: bytes done so far; -ECANCELED once the daemon stops. */
int cvd_job_progress(struct cvd_job *job, uint64_t done);
void cvd_job_set_total(struct cvd_job *job, uint64_t total);
/* The running or last job of volume; -ENOENT if none since the start. */
int cvd_job_get(struct cvd *d, const char *volume, struct cvd_job_info *out);
/* -EBUSY with "volume db1: a merge of snapshot s1 is running" if a job
 * runs on volume, else 0. */
int cvd_job_check_idle(struct cvd *d, const char *volume);
/* Forgets volume's last job (the volume is deleted). */
void cvd_job_forget(struct cvd *d, const char *volume);

#endif

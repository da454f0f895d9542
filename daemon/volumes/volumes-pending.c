/* Pending volumes: made once their secret exists.  Right after a secret
 * is created here (cvd_secret_create), and by a background thread every
 * few seconds for secrets that come another way (another node writing a
 * shared metadata store).  Both may try one volume at once: the state
 * compare-and-set lets one of them make it. */
#include "backup/backup.h"
#include "cluster/cluster.h"
#include "daemon.h"
#include "core/error.h"
#include "log.h"
#include "meta/meta.h"
#include "volumes.h"
#include "volumes-util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cvd_volumes_retry_pending(struct cvd *d, const char *secret)
{
    struct cvd_volume_rec *all;
    size_t n, i;
    int r, made = 0;

    r = d->meta->ops->volume_list(d->meta, &all, &n);
    if (r < 0)
        return r;
    for (i = 0; i < n; i++) {
        /* Another node's pending volume is made there (its file too). */
        if (strcmp(all[i].state, CVD_VOL_PENDING) ||
            (secret && strcmp(all[i].wait_secret, secret)) ||
            !cvd_volume_made_here(d, &all[i]))
            continue;
        /* A restore waiting for its secret is the backup's to start. */
        r = cvd_backup_restore_pending(d, &all[i]);
        if (r == 0)
            r = cvd_volume_finish_pending(d, &all[i]);
        else if (r > 0)
            r = 0;
        if (r == 0)
            made++;
        else if (r != -ENOENT && r != -EBUSY)
            cvd_warn("%s", cv_last_error());
    }
    free(all);
    return made;
}

struct cvd_pending {
    struct cvd *d;
    unsigned interval;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;        /* on a monotonic clock */
    int stop;
};

/* Returns 1 when told to stop within the interval. */
static int sleep_interval(struct cvd_pending *p)
{
    struct timespec until;
    int stop;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += p->interval;
    pthread_mutex_lock(&p->lock);
    while (!p->stop &&
           pthread_cond_timedwait(&p->wake, &p->lock, &until) != ETIMEDOUT)
        ;
    stop = p->stop;
    pthread_mutex_unlock(&p->lock);
    return stop;
}

static void *retry_loop(void *arg)
{
    struct cvd_pending *p = arg;

    do {
        if (cvd_volumes_retry_pending(p->d, NULL) < 0)
            cvd_warn("retrying pending volumes: %s", cv_last_error());
    } while (!sleep_interval(p));
    return NULL;
}

int cvd_pending_start(struct cvd *d, unsigned interval,
                      struct cvd_pending **out)
{
    struct cvd_pending *p;
    pthread_condattr_t ca;
    int rc;

    *out = NULL;
    if (interval == 0)
        return 0;
    p = calloc(1, sizeof *p);
    if (!p)
        return cv_error(-ENOMEM, "pending volumes: out of memory");
    p->d = d;
    p->interval = interval;
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->wake, &ca);
    pthread_condattr_destroy(&ca);
    rc = pthread_create(&p->thread, NULL, retry_loop, p);
    if (rc != 0) {
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return cv_error(-rc, "pending volumes: starting the retry thread: "
                        "%s", strerror(rc));
    }
    *out = p;
    return 0;
}

void cvd_pending_stop(struct cvd_pending *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* The KEK rotation thread: carries a rotation on from whatever state the
 * metadata store says it is in (cluster-kek.h), so a rotation interrupted by a
 * kill -9 is resumed at the next start and finishes. */
#include "cluster-kek.h"
#include "cluster-kek-internal.h"
#include "audit/audit.h"
#include "backup/backup.h"
#include "export/export.h"
#include "volumes/volumes-util.h"
#include "daemon.h"
#include "core/error.h"
#include "luks/kek-token.h"
#include "keyring.h"
#include "log.h"
#include "luks/luks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


int cvd_rotation_stopping(struct cvd_cluster *c)
{
    int s;

    pthread_mutex_lock(&c->lock);
    s = c->stop;
    pthread_mutex_unlock(&c->lock);
    return s;
}

/* The pauses tests use to kill the daemon in a given state: times times
 * rotation-delay-ms. */
void cvd_rotation_delay(struct cvd_cluster *c, unsigned times)
{
    unsigned ms = c->d->cfg.rotation_delay_ms;

    if (ms)
        usleep(ms * times * 1000u);
}

void cvd_rotation_failed(struct cvd_cluster *c, const struct cvd_volume_rec *v,
                         const char *then)
{
    char obj[CVD_NAME_MAX + 8];

    snprintf(obj, sizeof obj, "volume/%s", v->name);
    cvd_err("cluster: KEK rotation: %s; it stays at generation %u%s",
            cv_last_error(), v->kek_gen, then);
    cvd_audit(c->d->audit, "cryptvold", "kek.rotation.volume", obj, 0, "%s",
              cv_last_error());
}

int cvd_rotation_prune(struct cvd_cluster *c, uint32_t target_gen)
{
    struct cvd *d = c->d;
    uint32_t keep = target_gen, floor = 0;

    /* A KEK-only backup opens only through the generation it was made at:
     * the oldest one a backup of this cluster names is kept too. */
    if (cvd_backups_kek_floor(d, &floor) < 0) {
        cvd_warn("cluster: KEK rotation to generation %u: %s; every older "
                 "generation is kept", target_gen, cv_last_error());
        cv_clear_error();
        keep = 0;
    } else if (floor && floor < keep) {
        cvd_info("cluster: KEK generations from %u kept: backups need them",
                 floor);
        keep = floor;
    }
    return d->meta->ops->kek_prune(d->meta, keep);
}

int cvd_rotation_advance(struct cvd_cluster *c, struct cvd_cluster_rec *cur,
                         const char *rotation)
{
    struct cvd_cluster_rec next = *cur;
    int r;

    snprintf(next.rotation, sizeof next.rotation, "%s", rotation);
    if (!strcmp(rotation, CVD_ROT_ENCRYPT))
        next.current_gen = cur->target_gen;
    if (!strcmp(rotation, CVD_ROT_NONE))
        next.rotation_finished = (int64_t)time(NULL);
    r = c->d->meta->ops->cluster_update(c->d->meta, &next, cur, NULL);
    if (r == 0 && cur->rotation_node[0])
        cvd_info("cluster: KEK rotation to generation %u: %s (run by node "
                 "%s)", cur->target_gen, rotation, cur->rotation_node);
    else if (r == 0)
        cvd_info("cluster: KEK rotation to generation %u: %s",
                 cur->target_gen, rotation);
    if (r == 0)
        *cur = next;
    return r;
}

/* Every node must hold the new generation before any token uses it.  A
 * single node stored its sealed copy with the state change; what is left
 * is to prove that it unseals here. */
static int distribute(struct cvd_cluster *c, struct cvd_cluster_rec *cur)
{
    const unsigned char *kek;
    int r = cvd_keyring_get(c->d->keys, cur->target_gen, &kek);

    cvd_rotation_delay(c, 20);
    return r < 0 ? r : cvd_rotation_advance(c, cur, CVD_ROT_ENCRYPT);
}

int cvd_rotation_rewrap_one(struct cvd_cluster *c,
                            const struct cvd_volume_rec *v, uint32_t target)
{
    struct cvd *d = c->d;
    struct cv_kek_token t = { 0 };
    const unsigned char *oldkek, *newkek;
    struct cvd_export *b = NULL;
    struct cv_luks *l = NULL;
    int r;

    r = cvd_keyring_get(d->keys, target, &newkek);
    if (r < 0)
        return r;
    /* Through the chain the registry holds: the volume may be served. */
    pthread_mutex_lock(&d->header_lock);
    r = cvd_store_get(d, v->name, 0, &b);
    if (r == 0)
        r = cv_luks_load_metadata(cvd_store_backend(b), &l);
    if (r == 0)
        r = cv_kek_token_get(l, &t);
    if (r == 0 && t.gen != target) {
        r = cvd_keyring_get(d->keys, t.gen, &oldkek);
        if (r == 0)
            r = cv_kek_token_rewrap(l, &t, oldkek, newkek, target);
    }
    pthread_mutex_unlock(&d->header_lock);
    cv_kek_token_free(&t);
    cv_luks_free(l);
    cvd_export_put_store(b);
    return r < 0 ? cv_error_prefix(r, "volume %s", v->name) : 0;
}

int cvd_rotation_flush(struct cvd_cluster *c, const char **names, size_t *n,
                       uint32_t target)
{
    int r = 0;

    if (*n)
        r = c->d->meta->ops->volume_set_kek_gen(c->d->meta, names, *n, target);
    *n = 0;
    return r;
}

int cvd_rotation_needs_rewrap(const struct cvd_volume_rec *v,
                              uint32_t target)
{
    return v->kek_gen && v->kek_gen != target &&
           strcmp(v->state, CVD_VOL_PENDING) &&
           strcmp(v->state, CVD_VOL_CREATING) &&
           strcmp(v->state, CVD_VOL_DELETING);
}

static void progress(struct cvd_cluster *c, uint32_t done, uint32_t total,
                     uint32_t failed)
{
    pthread_mutex_lock(&c->lock);
    c->done = done;
    c->total = total;
    c->failed = failed;
    pthread_mutex_unlock(&c->lock);
}

/* One pass over the volumes still at an older generation.  *left counts
 * those it could not move (and volumes still being created, which a next
 * pass takes). */
static int rewrap_pass(struct cvd_cluster *c, uint32_t target, size_t *left,
                       int *creating)
{
    struct cvd_volume_rec *all = NULL;
    const char *batch[CVD_ROTATION_BATCH];
    size_t n = 0, i, nb = 0;
    uint32_t total = 0, done = 0, failed = 0;
    int r;

    *creating = 0;
    r = c->d->meta->ops->volume_list(c->d->meta, &all, &n);
    for (i = 0; r == 0 && i < n; i++) {
        total += cvd_rotation_needs_rewrap(&all[i], target);
        *creating |= all[i].kek_gen && all[i].kek_gen != target &&
                     !strcmp(all[i].state, CVD_VOL_CREATING);
    }
    progress(c, 0, total, 0);
    for (i = 0; r == 0 && i < n && !cvd_rotation_stopping(c); i++) {
        if (!cvd_rotation_needs_rewrap(&all[i], target))
            continue;
        if (cvd_rotation_rewrap_one(c, &all[i], target) < 0) {
            cvd_rotation_failed(c, &all[i], "");
            failed++;
        } else {
            batch[nb++] = all[i].name;
            done++;
        }
        if (nb == CVD_ROTATION_BATCH)
            r = cvd_rotation_flush(c, batch, &nb, target);
        progress(c, done, total, failed);
        cvd_rotation_delay(c, 1);
    }
    if (r == 0)
        r = cvd_rotation_flush(c, batch, &nb, target);
    *left = failed;
    free(all);
    return r;
}

static int encrypt_deks(struct cvd_cluster *c, struct cvd_cluster_rec *cur)
{
    struct cvd *d = c->d;
    size_t left = 0;
    int creating = 0, r;

    do {
        if (creating)
            usleep(100 * 1000);
        r = rewrap_pass(c, cur->target_gen, &left, &creating);
    } while (r == 0 && creating && !cvd_rotation_stopping(c));
    if (r < 0 || cvd_rotation_stopping(c))
        return r < 0 ? r : -ECANCELED;
    cvd_rotation_delay(c, 20);
    r = cvd_rotation_advance(c, cur, CVD_ROT_NONE);
    if (r == 0)
        r = cvd_rotation_prune(c, cur->target_gen);
    if (r == 0) {
        cvd_audit(d->audit, "cryptvold", "kek.rotation.finish", "cluster",
                  left == 0, "generation %u: %u volumes re-wrapped, %zu "
                  "left at older generations", cur->target_gen, c->done,
                  left);
        cvd_info("cluster: KEK rotation to generation %u finished (%u "
                 "volumes, %zu failed)", cur->target_gen, c->done, left);
    }
    return r;
}

static void *rotation_main(void *arg)
{
    struct cvd_cluster *c = arg;
    struct cvd_cluster_rec cur;
    int r;

    r = c->d->meta->ops->cluster_get(c->d->meta, &cur);
    if (r == 0 && !strcmp(cur.rotation, CVD_ROT_DISTRIBUTE))
        r = distribute(c, &cur);
    if (r == 0 && !strcmp(cur.rotation, CVD_ROT_ENCRYPT))
        r = encrypt_deks(c, &cur);
    if (r < 0 && r != -ECANCELED)
        cvd_err("cluster: KEK rotation to generation %u stopped: %s (it "
                "resumes at the next start)", cur.target_gen, cv_last_error());
    pthread_mutex_lock(&c->lock);
    c->active = 0;
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

int cvd_rotation_start(struct cvd_cluster *c)
{
    if (c->running && c->active)
        return 0;
    if (c->running) {
        pthread_join(c->thread, NULL);
        c->running = 0;
    }
    c->active = 1;
    if (pthread_create(&c->thread, NULL, rotation_main, c) != 0) {
        c->active = 0;
        return cv_error(-EAGAIN, "cluster: cannot start the rotation thread");
    }
    c->running = 1;
    return 0;
}

void cvd_rotation_stop(struct cvd_cluster *c)
{
    pthread_mutex_lock(&c->lock);
    c->stop = 1;
    pthread_mutex_unlock(&c->lock);
    if (c->running)
        pthread_join(c->thread, NULL);
    c->running = 0;
}

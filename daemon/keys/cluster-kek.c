/* Cluster-level encryption: enable, info, escrow, and starting rotations
 * (cluster-kek.h; the rotation itself is in rotation.c). */
#include "cluster-kek.h"
#include "cluster-kek-internal.h"
#include "audit/audit.h"
#include "daemon.h"
#include "core/error.h"
#include "core/uuid.h"
#include "luks/escrow.h"
#include "keyring.h"
#include "log.h"
#include "volumes/volumes-util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cvd_cluster_new(struct cvd *d, struct cvd_cluster **out)
{
    struct cvd_cluster *c = calloc(1, sizeof *c);

    if (!c)
        return cv_error(-ENOMEM, "cluster: out of memory");
    c->d = d;
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return 0;
}

void cvd_cluster_free(struct cvd_cluster *c)
{
    if (!c)
        return;
    cvd_rotation_cluster_stop(c);
    cvd_rotation_stop(c);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static int count_volumes(struct cvd *d, size_t *n, char *first, size_t len)
{
    struct cvd_volume_rec *all;
    int r = d->meta->ops->volume_list(d->meta, &all, n);

    if (r == 0 && *n)
        snprintf(first, len, "%s", all[0].name);
    if (r == 0)
        free(all);
    return r;
}

/* Back to Disabled after a failure whose message is the thread's.  If
 * that fails too the record stays Enabling, which the next start settles
 * (cvd_cluster_resume: enabled if there are still no volumes, else
 * Disabled): the message says so.  No KEK or volume is touched either
 * way. */
static void undo_enable(struct cvd *d, const struct cvd_cluster_rec *next,
                        const struct cvd_cluster_rec *cur)
{
    char first[CVD_ERROR_MAX], why[CVD_ERROR_MAX];
    int r;

    snprintf(first, sizeof first, "%s", cv_last_error());
    r = d->meta->ops->cluster_update(d->meta, next, cur, NULL);
    if (r == 0) {
        cv_error(-EBUSY, "%s", first);      /* the message stays the cause */
        return;
    }
    snprintf(why, sizeof why, "%s", cv_last_error());
    cvd_err("cluster: putting encryption back to Disabled after \"%s\": %s",
            first, why);
    cv_error(r, "%s (cluster encryption shows Enabling until the daemon "
             "restarts, which settles it: putting it back to Disabled "
             "failed: %s)", first, why);
}

/* Enabling -> Enabled: generation 1 is made, sealed and stored with the
 * state that names it.  If volumes appeared meanwhile (only possible if a
 * daemon died between enabling and the check) it goes back to Disabled. */
static int finish_enable(struct cvd_cluster *c, struct cvd_cluster_rec *cur)
{
    struct cvd *d = c->d;
    struct cvd_cluster_rec next = *cur;
    struct cvd_kek_rec rec = { 0 };
    char first[CVD_NAME_MAX + 1] = "";
    size_t n;
    int r;

    r = count_volumes(d, &n, first, sizeof first);
    if (r == 0 && n) {
        snprintf(next.encryption, sizeof next.encryption, CVD_ENC_DISABLED);
        next.protection[0] = '\0';
        r = cv_error(-EBUSY, "cluster encryption can only be enabled "
                     "while the cluster has no volumes (it has %zu, such "
                     "as %s): existing volumes have no KEK keyslot", n,
                     first);
        undo_enable(d, &next, cur);
        return r;
    }
    if (r == 0)
        r = cvd_keyring_make(d->keys, 1, cur->protection, &rec);
    if (r == 0) {
        snprintf(next.encryption, sizeof next.encryption, CVD_ENC_ENABLED);
        snprintf(next.rotation, sizeof next.rotation, CVD_ROT_NONE);
        next.current_gen = 1;
        r = d->meta->ops->cluster_update(d->meta, &next, cur, &rec);
    }
    cvd_kek_rec_free(&rec);
    if (r < 0) {
        snprintf(next.encryption, sizeof next.encryption, CVD_ENC_DISABLED);
        next.protection[0] = '\0';
        next.current_gen = 0;
        undo_enable(d, &next, cur);
        return r;
    }
    *cur = next;
    cvd_info("cluster: encryption enabled, KEK generation 1 sealed (%s) "
             "for node %s", cur->protection, d->cfg.node_name);
    return 0;
}

int cvd_cluster_enable(struct cvd_cluster *c, const char *actor,
                       const char *protection)
{
    struct cvd *d = c->d;
    struct cvd_cluster_rec cur, next;
    int r;

    if (strcmp(protection, CVD_KEK_TPM) && strcmp(protection,
                                                  CVD_KEK_SOFTWARE))
        return cv_error(-EINVAL, "cluster: KEK protection \"%.32s\" is not "
                        "tpm or software", protection);
    pthread_mutex_lock(&c->lock);
    r = d->meta->ops->cluster_get(d->meta, &cur);
    if (r == 0 && strcmp(cur.encryption, CVD_ENC_DISABLED))
        r = cv_error(-EBUSY, "cluster encryption is already %s (KEK "
                     "protection %s)", cur.encryption, cur.protection);
    next = cur;
    if (r == 0 && !next.id[0])
        r = cv_uuid_new(next.id, sizeof next.id, "cluster");
    if (r == 0) {
        snprintf(next.encryption, sizeof next.encryption, CVD_ENC_ENABLING);
        snprintf(next.protection, sizeof next.protection, "%s", protection);
        snprintf(next.rotation, sizeof next.rotation, CVD_ROT_NONE);
        r = d->meta->ops->cluster_update(d->meta, &next, &cur, NULL);
    }
    /* On etcd the next update compares the record's new revision. */
    if (r == 0 && d->meta->clustered)
        r = d->meta->ops->cluster_get(d->meta, &next);
    /* Enabling is recorded before volumes are counted, and volume create
     * records the volume before it reads this state: one of the two sees
     * the other. */
    if (r == 0)
        r = finish_enable(c, &next);
    pthread_mutex_unlock(&c->lock);
    cvd_audit(d->audit, actor, "cluster.encryption.enable", "cluster", r == 0,
              "%s%s", r == 0 ? "KEK protection " : "", r == 0 ? protection :
              cv_last_error());
    return r;
}

int cvd_cluster_disable(struct cvd_cluster *c, const char *actor)
{
    struct cvd_cluster_rec cur;
    int r = c->d->meta->ops->cluster_get(c->d->meta, &cur);

    if (r == 0 && !strcmp(cur.encryption, CVD_ENC_DISABLED))
        r = cv_error(-EINVAL, "cluster encryption is not enabled");
    else if (r == 0)
        r = cv_error(-EBUSY, "cluster encryption cannot be disabled: every "
                     "volume's keyslot secret is wrapped by the cluster KEK, "
                     "and removing it would leave volumes no one can attach "
                     "(rotate the KEK with \"cryptvol cluster kek rotate\" "
                     "instead)");
    cvd_audit(c->d->audit, actor, "cluster.encryption.disable", "cluster", 0,
              "%s", cv_last_error());
    return r;
}

int cvd_cluster_resume(struct cvd_cluster *c)
{
    struct cvd_cluster_rec cur;
    int r = c->d->meta->ops->cluster_get(c->d->meta, &cur);

    if (r == 0 && !strcmp(cur.encryption, CVD_ENC_ENABLING)) {
        cvd_warn("cluster: encryption was being enabled when the daemon "
                 "stopped; finishing");
        r = finish_enable(c, &cur);
        if (r == -EBUSY) {
            cvd_warn("cluster: %s", cv_last_error());
            r = 0;
        }
    }
    /* A cluster: the worker fetches what this node lacks and does its
     * part of a rotation (one that was running resumes on whichever node
     * takes its lock). */
    if (r == 0 && c->d->meta->clustered)
        return cvd_rotation_cluster_start(c);
    if (r == 0 && strcmp(cur.rotation, CVD_ROT_NONE) &&
        !strcmp(cur.encryption, CVD_ENC_ENABLED)) {
        cvd_warn("cluster: resuming the KEK rotation to generation %u (was "
                 "%s when the daemon stopped)", cur.target_gen, cur.rotation);
        r = cvd_rotation_start(c);
    }
    return r;
}

int cvd_cluster_current_kek(struct cvd_cluster *c, uint32_t *gen,
                            const unsigned char **kek)
{
    struct cvd_cluster_rec cur;
    int r = c->d->meta->ops->cluster_get(c->d->meta, &cur);

    *gen = 0;
    *kek = NULL;
    if (r < 0 || !strcmp(cur.encryption, CVD_ENC_DISABLED))
        return r;
    if (strcmp(cur.encryption, CVD_ENC_ENABLED))
        return cv_error(-EBUSY, "cluster encryption is being enabled; try "
                        "again");
    r = cvd_keyring_get(c->d->keys, cur.current_gen, kek);
    if (r == 0)
        *gen = cur.current_gen;
    return r;
}

int cvd_cluster_rotate(struct cvd_cluster *c, const char *actor,
                       uint32_t *gen)
{
    struct cvd *d = c->d;
    struct cvd_cluster_rec cur, next;
    struct cvd_kek_rec rec = { 0 };
    uint32_t *gens = NULL;
    size_t n = 0;
    int r;

    pthread_mutex_lock(&c->lock);
    /* A rotation cannot be taken back once recorded: not started when its
     * audit event would not fit. */
    r = cvd_audit_check(d->audit, "cluster: KEK rotation");
    if (r == 0)
        r = d->meta->ops->cluster_get(d->meta, &cur);
    if (r == 0 && strcmp(cur.encryption, CVD_ENC_ENABLED))
        r = cv_error(-EINVAL, "cluster: encryption is %s; there is no KEK "
                     "to rotate", cur.encryption);
    if (r == 0 && strcmp(cur.rotation, CVD_ROT_NONE))
        r = cv_error(-EBUSY, "cluster: a rotation to KEK generation %u is "
                     "in progress (%s)", cur.target_gen, cur.rotation);
    if (r == 0)
        r = d->meta->ops->kek_list(d->meta, d->cfg.node_name, &gens, &n);
    next = cur;
    if (r == 0) {
        next.target_gen = n && gens[n - 1] > cur.current_gen ?
                          gens[n - 1] + 1 : cur.current_gen + 1;
        r = cvd_keyring_make(d->keys, next.target_gen, cur.protection, &rec);
    }
    if (r == 0) {
        snprintf(next.rotation, sizeof next.rotation, CVD_ROT_DISTRIBUTE);
        next.rotation_started = (int64_t)time(NULL);
        next.rotation_finished = 0;
        if (c->clustered)
            r = cvd_rotation_cluster_begin(c, &cur, &next, &rec);
        else
            r = d->meta->ops->cluster_update(d->meta, &next, &cur, &rec);
    }
    if (r == 0) {
        *gen = next.target_gen;
        cvd_info("cluster: KEK rotation from generation %u to %u started",
                 cur.current_gen, next.target_gen);
    }
    if (r == 0)
        cvd_audit(d->audit, actor, "kek.rotation.start", "cluster", 1,
                  "from generation %u to %u", cur.current_gen,
                  next.target_gen);
    else
        cvd_audit(d->audit, actor, "kek.rotation.start", "cluster", 0, "%s",
                  cv_last_error());
    if (r == 0 && !c->clustered)
        r = cvd_rotation_start(c);
    pthread_mutex_unlock(&c->lock);
    free(gens);
    cvd_kek_rec_free(&rec);
    return r;
}

int cvd_cluster_escrow(struct cvd_cluster *c, const char *actor,
                       const char *pass, size_t passlen, char **text)
{
    struct cvd *d = c->d;
    struct cvd_cluster_rec cur;
    struct cv_kek_gen *gens = NULL;
    size_t n = 0;
    int r, a;

    r = d->meta->ops->cluster_get(d->meta, &cur);
    if (r == 0 && strcmp(cur.encryption, CVD_ENC_ENABLED))
        r = cv_error(-EINVAL, "cluster: encryption is %s; there is no KEK "
                     "to export", cur.encryption);
    if (r == 0)
        r = cvd_keyring_all(d->keys, &gens, &n);
    if (r == 0)
        r = cv_escrow_make(gens, n, cur.id, pass, passlen, NULL, text);
    cv_kek_gens_free(gens, n);
    /* What happens here is that the escrow is sent to the client: whether
     * it writes it out is the client's to say (the CLI checks its output
     * file before it asks).  No escrow leaves unrecorded. */
    a = cvd_audit(d->audit, actor, "kek.export", "cluster", r == 0, "%s",
                  r == 0 ? "escrow of every KEK generation sent to the "
                  "client" : cv_last_error());
    if (r == 0 && a < 0) {
        r = cvd_audit_refuse(d->audit, a, "cluster: KEK export");
        free(*text);
        *text = NULL;
    }
    return r;
}

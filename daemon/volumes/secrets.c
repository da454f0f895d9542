/* Secrets as the admin API manages them.  Values go straight to the store,
 * sealed; they are never logged and never returned.  A new secret makes
 * the pending volumes that waited for it. */
#include "cluster/cluster.h"
#include "daemon.h"
#include "audit/audit.h"
#include "core/error.h"
#include "log.h"
#include "meta/meta.h"
#include "volumes.h"
#include "volumes-util.h"

#include "store/backend.h"
#include "core/secmem.h"
#include "luks/luks.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A secret change is a key operation: not done when its audit event
 * (written after it, by the admin API) would not fit. */
static int audit_check(struct cvd *d, const char *name, const char *op)
{
    char what[CVD_NAME_MAX + 32];

    snprintf(what, sizeof what, "secret %s: %s", name, op);
    return cvd_audit_check(d->audit, what);
}

int cvd_secret_create(struct cvd *d, const char *name, const void *value,
                      size_t len)
{
    int r = cvd_check_name("secret", name);

    if (r < 0)
        return r;
    if (len == 0 || len > CV_SECRET_MAX)
        return cv_error(-EINVAL, "secret %s: value must be 1 to %d bytes",
                        name, CV_SECRET_MAX);
    r = audit_check(d, name, "create");
    if (r == 0)
        r = cvd_meta_secret_add(d->meta, name, value, len, NULL);
    if (r < 0)
        return r;
    cvd_info("secret %s: created (%zu bytes)", name, len);
    /* Now, so the volumes are Available when this returns.  Their
     * failures are logged and retried later: the secret is made. */
    if (cvd_volumes_retry_pending(d, name) < 0)
        cvd_warn("secret %s: making the volumes that wait for it: %s", name,
                 cv_last_error());
    cv_clear_error();
    return 0;
}

/* Only the sealed blob changes: the record keeps its creation time and
 * owner, and volumes keep their keyslots (re-keying them is a separate,
 * explicit step). */
int cvd_secret_update(struct cvd *d, const char *name, const void *value,
                      size_t len)
{
    struct cvd_secret_rec s;
    int r = cvd_check_name("secret", name);

    if (r < 0)
        return r;
    if (len == 0 || len > CV_SECRET_MAX)
        return cv_error(-EINVAL, "secret %s: value must be 1 to %d bytes",
                        name, CV_SECRET_MAX);
    r = audit_check(d, name, "update");
    if (r == 0)
        r = cvd_meta_seal(d->meta, name, value, len, NULL, &s);
    if (r == 0)
        r = d->meta->ops->secret_update(d->meta, &s);
    cvd_secret_rec_free(&s);
    if (r == 0) {
        cvd_info("secret %s: value changed (%zu bytes)", name, len);
        /* An unlock that failed with the old value is worth trying now. */
        }
    return r;
}

int cvd_secret_delete(struct cvd *d, const char *name)
{
    char used_by[CVD_NAME_MAX + 1];
    int r = cvd_check_name("secret", name);

    if (r == 0)
        r = d->meta->ops->secret_remove(d->meta, name, used_by);
    if (r == 0)
        cvd_info("secret %s: deleted", name);
    return r;
}

/* 1 if value opens a keyslot of v's image, 0 if not, or a negative errno
 * (logged).  The header is read under header_lock, so no rekey or KEK
 * re-wrap is half written; the key derivation runs outside it, on the
 * copy. */
static int opens(struct cvd *d, const struct cvd_volume_rec *v,
                 const void *value, size_t len)
{
    struct cvd_export *b = NULL;
    struct cv_luks *l = NULL;
    unsigned char *key = NULL;
    size_t keylen = 0;
    int r;

    pthread_mutex_lock(&d->header_lock);
    r = cvd_store_get(d, v->name, 0, &b);
    if (r == 0)
        r = cv_luks_load(cvd_store_backend(b), &l);
    pthread_mutex_unlock(&d->header_lock);
    if (r == 0)
        r = cv_luks_unlock(l, value, len, &key, &keylen);
    cv_secmem_free(key, keylen);
    cv_luks_free(l);
    cvd_export_put_store(b);
    if (r == -CV_EWRONGKEY) {
        cv_clear_error();
        return 0;
    }
    if (r < 0)
        cvd_warn("volume %s: checking its keyslots against the new value: "
                 "%s", v->name, cv_last_error());
    return r < 0 ? r : 1;
}

int cvd_secret_check_volumes(struct cvd *d, const char *name,
                             const void *value, size_t len, unsigned max,
                             void (*cb)(void *arg, const char *volume,
                                        int opens),
                             void *arg)
{
    struct cvd_volume_rec *all = NULL;
    size_t n = 0, i;
    unsigned checked = 0;
    int r, unchecked = 0;

    r = d->meta->ops->volume_list(d->meta, &all, &n);
    if (r < 0)
        return r;
    for (i = 0; i < n; i++) {
        const struct cvd_volume_rec *v = &all[i];
        if (strcmp(v->secret, name) || (strcmp(v->state, CVD_VOL_READY) &&
                                        strcmp(v->state, CVD_VOL_REKEYING)) ||
            !cvd_node_is_local(d, v))
            continue;
        r = checked < max ? opens(d, v, value, len) : -EAGAIN;
        checked += r != -EAGAIN;
        if (r < 0)
            unchecked++;
        else
            cb(arg, v->name, r);
    }
    free(all);
    cv_clear_error();
    return unchecked;
}

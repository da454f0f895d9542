/* Rekey: moving a volume to another secret, online.
 *
 * Only the LUKS header changes: a keyslot for the new secret is added
 * (unlocked with the current one), checked against what is on disk, and
 * the current secret's keyslot removed.  Data is not rewritten, and a
 * served volume keeps serving: its data I/O never touches the header
 * area, and it holds its volume key in memory.
 *
 * The record moves ready -> rekeying (wait_secret: the new secret) first,
 * which serialises rekeys of one volume and keeps the new secret from
 * being deleted meanwhile.  Each header change is made on the header read
 * afresh under d->header_lock, which a KEK re-wrap of the same header also
 * takes, so neither undoes the other; the key derivations that only check
 * a passphrase run outside it (they take seconds with argon2id, and the
 * lock stops every attach that reads a token).  A daemon that dies in the
 * middle finishes at its next start: if the new secret opens, the move is
 * completed, else the volume stays with its current secret
 * (cvd_volume_rekey_recover). */
#include "audit/audit.h"
#include "store/backend.h"
#include "daemon.h"
#include "core/error.h"
#include "log.h"
#include "luks/luks.h"
#include "meta/meta.h"
#include "core/secmem.h"
#include "volumes.h"
#include "volumes-util.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int same_value(const struct cv_secret *a, const struct cv_secret *b)
{
    return a->len == b->len && CRYPTO_memcmp(a->data, b->data, a->len) == 0;
}

static int secret_value(struct cvd *d, const char *volume, const char *name,
                        struct cv_secret *out)
{
    int r = cvd_meta_secret_value(d->meta, name, out);

    if (r == -ENOENT)
        return cv_error(-ENOENT, "volume %s: secret \"%s\" does not exist",
                        volume, name);
    return r < 0 ? cv_error_prefix(r, "volume %s", volume) : 0;
}

/* 1 if pass opens a keyslot of l, 0 if not, or a negative errno. */
static int opens(struct cv_luks *l, const struct cv_secret *pass)
{
    unsigned char *key;
    size_t len;
    int r = cv_luks_unlock(l, pass->data, pass->len, &key, &len);

    if (r == -CV_EWRONGKEY) {
        cv_clear_error();
        return 0;
    }
    if (r < 0)
        return r;
    cv_secmem_free(key, len);
    return 1;
}

/* The volume's header, through the chain the registry holds (also the
 * one its connections use, while it is served). */
static int open_header(struct cvd *d, const struct cvd_volume_rec *v,
                       struct cvd_export **e, struct cv_luks **l)
{
    int r = cvd_store_get(d, v->name, 0, e);

    if (r == 0)
        r = cv_luks_load(cvd_store_backend(*e), l);
    return r < 0 ? cv_error_prefix(r, "volume %s", v->name) : 0;
}

/* Which of a and b open the header as it is on disk now: *a_opens,
 * *b_opens (b may be NULL).  Read under the lock, checked outside it. */
static int which_open(struct cvd *d, const struct cvd_volume_rec *v,
                      const struct cv_secret *a, const struct cv_secret *b,
                      int *a_opens, int *b_opens)
{
    struct cvd_export *be = NULL;
    struct cv_luks *l = NULL;
    int r;

    pthread_mutex_lock(&d->header_lock);
    r = open_header(d, v, &be, &l);
    pthread_mutex_unlock(&d->header_lock);
    if (r == 0 && (r = opens(l, a)) >= 0)
        *a_opens = r;
    if (r >= 0 && b && (r = opens(l, b)) >= 0)
        *b_opens = r;
    cv_luks_free(l);
    cvd_export_put_store(be);
    return r < 0 ? r : 0;
}

/* One header change, on the header read afresh under the lock: a keyslot
 * for new (unlocked by old), or without new the removal of the keyslot old
 * opens.  Returns 0, or -CV_EWRONGKEY (quietly) when old opens nothing. */
static int change_header(struct cvd *d, const struct cvd_volume_rec *v,
                         const struct cv_secret *old,
                         const struct cv_secret *new)
{
    struct cvd_export *b = NULL;
    struct cv_luks *l = NULL;
    char whose[CVD_NAME_MAX + 16];
    int r;

    pthread_mutex_lock(&d->header_lock);
    r = open_header(d, v, &b, &l);
    if (r == 0 && new) {
        r = cv_luks_add_key(l, old->data, old->len, new->data, new->len,
                            &d->cfg.pbkdf);
        snprintf(whose, sizeof whose, "secret %s", v->wait_secret);
        if (r >= 0)
            cvd_log_keyslot(l, v->name, r, whose);
    } else if (r == 0) {
        r = cv_luks_remove_key(l, old->data, old->len, 0);
    }
    pthread_mutex_unlock(&d->header_lock);
    cv_luks_free(l);
    cvd_export_put_store(b);
    if (r == -CV_EWRONGKEY)
        cv_clear_error();
    return r < 0 ? r : 0;
}

/* Every keyslot old opens (one, unless someone added more by hand), each
 * removal checked by reading the header back. */
static int remove_keyslots(struct cvd *d, const struct cvd_volume_rec *v,
                           const struct cv_secret *old)
{
    int r = 0, still = 1, i;

    for (i = 0; r == 0 && still && i < CV_LUKS_MAX_SLOTS; i++) {
        r = change_header(d, v, old, NULL);
        if (r == -CV_EWRONGKEY)
            return 0;
        if (r == 0)
            r = which_open(d, v, old, NULL, &still, NULL);
    }
    return r;
}

/* The header work.  The current secret must open (else nothing is
 * written); the new one gets a keyslot unless it opens already (a retry),
 * is checked by reading the header back, and only then do the current
 * secret's keyslots go.  Equal values need no change at all. */
static int move_keyslot(struct cvd *d, const struct cvd_volume_rec *v,
                        const struct cv_secret *old,
                        const struct cv_secret *new)
{
    int old_opens = 0, new_opens = 0, r;

    r = which_open(d, v, old, new, &old_opens, &new_opens);
    if (r == 0 && !old_opens)
        r = cv_error(-CV_EWRONGKEY, "volume %s: wrong key: its secret opens "
                     "no keyslot", v->name);
    if (r < 0 || same_value(old, new))
        return r;
    if (!new_opens)
        r = change_header(d, v, old, new);
    if (r == 0)
        r = which_open(d, v, new, NULL, &new_opens, NULL);
    if (r == 0 && !new_opens)
        r = cv_error(-EIO, "volume %s: the new keyslot does not open with "
                     "secret \"%s\" once written; the old one is kept",
                     v->name, v->wait_secret);
    return r < 0 ? r : remove_keyslots(d, v, old);
}

/* A secret generated for the volume that it no longer uses goes, as it
 * would have gone with the volume. */
static void drop_generated(struct cvd *d, const char *secret,
                           const char *volume)
{
    struct cvd_secret_rec s;
    char used_by[CVD_NAME_MAX + 1];
    int owned;

    if (d->meta->ops->secret_get(d->meta, secret, &s) < 0) {
        cv_clear_error();
        return;
    }
    owned = !strcmp(s.owner, volume);
    cvd_secret_rec_free(&s);
    if (owned && d->meta->ops->secret_remove(d->meta, secret, used_by) == 0)
        cvd_info("secret %s: deleted (generated for volume %s, which no "
                 "longer uses it)", secret, volume);
    cv_clear_error();
}

static int check_rekey(const struct cvd_volume_rec *v, const char *secret)
{
    int r = cvd_check_name("secret", secret);

    if (r < 0)
        return r;
    if (!strcmp(v->type, "plaintext"))
        return cv_error(-EINVAL, "volume %s: is not encrypted (plaintext); "
                        "it has no key to change", v->name);
    if (!v->secret[0] && strcmp(v->state, CVD_VOL_PENDING))
        return cv_error(-EINVAL, "volume %s: has no secret to move from: "
                        "only the cluster KEK opens it", v->name);
    if (strcmp(v->state, CVD_VOL_READY))
        return cvd_state_error(v);
    return 0;
}

int cvd_volume_rekey(struct cvd *d, const char *name, const char *secret,
                     struct cvd_volume_rec *out)
{
    struct cv_secret old = { 0 }, new = { 0 };
    struct cvd_volume_rec v;
    char was[CVD_NAME_MAX + 1], first[CVD_ERROR_MAX];
    int r, u;

    snprintf(first, sizeof first, "volume %s: rekey", name);
    r = cvd_audit_check(d->audit, first);
    if (r == 0)
        r = cvd_volume_get(d, name, &v);
    if (r == 0)
        r = check_rekey(&v, secret);
    if (r < 0 || !strcmp(v.secret, secret))
        goto out;                       /* already there: nothing to do */
    r = secret_value(d, name, secret, &new);
    if (r == 0)
        r = secret_value(d, name, v.secret, &old);
    if (r < 0)
        goto out;
    snprintf(was, sizeof was, "%s", v.secret);
    snprintf(v.wait_secret, sizeof v.wait_secret, "%s", secret);
    snprintf(v.state, sizeof v.state, CVD_VOL_REKEYING);
    r = d->meta->ops->volume_update(d->meta, &v, CVD_VOL_READY);
    if (r < 0)
        goto out;
    r = move_keyslot(d, &v, &old, &new);
    snprintf(first, sizeof first, "%s", cv_last_error());
    if (r == 0)
        snprintf(v.secret, sizeof v.secret, "%s", secret);
    v.wait_secret[0] = '\0';
    snprintf(v.state, sizeof v.state, CVD_VOL_READY);
    u = d->meta->ops->volume_update(d->meta, &v, CVD_VOL_REKEYING);
    if (r < 0)
        cvd_undo(first, u);
    else
        r = u;
    if (r == 0) {
        cvd_info("volume %s: rekeyed from secret %s to %s", name, was,
                 secret);
        drop_generated(d, was, name);
    }
out:
    if (r == 0 && out)
        *out = v;
    cv_secret_free(&old);
    cv_secret_free(&new);
    return r;
}

/* Which secret the header now answers to: the new one if it opens (the
 * old one's keyslots are then removed, as the rekey would have). */
static int settle_header(struct cvd *d, const struct cvd_volume_rec *v,
                         const struct cv_secret *old,
                         const struct cv_secret *new, int *moved)
{
    int old_opens = 0, r = 0;

    *moved = 0;
    if (new->data)
        r = which_open(d, v, new, old->data ? old : NULL, moved, &old_opens);
    if (r == 0 && *moved && old_opens && !same_value(old, new))
        r = remove_keyslots(d, v, old);
    return r;
}

int cvd_volume_rekey_recover(struct cvd *d, struct cvd_volume_rec *v)
{
    struct cv_secret old = { 0 }, new = { 0 };
    char was[CVD_NAME_MAX + 1], obj[CVD_NAME_MAX + 8];
    int r, moved = 0;

    snprintf(obj, sizeof obj, "volume/%s", v->name);
    /* Either may be missing (-ENOENT): then it cannot be the answer. */
    r = secret_value(d, v->name, v->wait_secret, &new);
    if (r == 0 || r == -ENOENT)
        r = secret_value(d, v->name, v->secret, &old);
    if (r == 0 || r == -ENOENT)
        r = settle_header(d, v, &old, &new, &moved);
    if (r < 0)
        goto out;
    snprintf(was, sizeof was, "%s", v->secret);
    if (moved)
        snprintf(v->secret, sizeof v->secret, "%s", v->wait_secret);
    v->wait_secret[0] = '\0';
    snprintf(v->state, sizeof v->state, CVD_VOL_READY);
    r = d->meta->ops->volume_update(d->meta, v, CVD_VOL_REKEYING);
    if (r < 0)
        goto out;
    cvd_warn("volume %s: was rekeying when the daemon stopped; it now "
             "uses secret %s", v->name, v->secret);
    cvd_audit(d->audit, "cryptvold", "volume.rekey", obj, moved,
              "interrupted by a stop; finished at start: uses secret %s",
              v->secret);
    if (moved)
        drop_generated(d, was, v->name);
out:
    cv_secret_free(&old);
    cv_secret_free(&new);
    return r;
}

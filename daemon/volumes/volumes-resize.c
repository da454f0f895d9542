/* Volume resize.  A grow works while the volume is served, as RBD and
 * Longhorn expand online; a shrink needs allow_shrink and no client.
 *
 * Where the size lives: in the image file.  A LUKS2 data segment made by
 * cryptsetup is "dynamic" (it runs to the end of the device) and LUKS1 has
 * no size at all, so the effective size is the file's length past the data
 * offset, and a grow is a longer file: the header is not written (LUKS2's
 * second copy sits right after the first, at the start, not at the end as
 * GPT's does), and cryptsetup opens the grown image as it is.  A segment of
 * a fixed size (made by other tools) would not follow: the grow checks the
 * header's effective size before it commits.
 *
 * The record's size says what may be served: an open serves at most that
 * (export.c), so a longer file serves nothing new until the record says so.
 * A grow, crash-safe at every step:
 *   1. record ready -> growing (compare-and-set: one change at a time; the
 *      volume stays served, at the recorded old size);
 *   2. the file is made longer, then synced (file and folder);
 *   3. the header's effective size must reach the new size;
 *   4. record growing -> ready with the new size, the commit (SQLite with
 *      synchronous=FULL): durable when the request returns;
 *   5. the open export serves the new size to connections made from now
 *      on; connected clients keep the size they negotiated (NBD has no
 *      resize notice), their requests bounded by it (nbd_check_request).
 * A power cut before 4 leaves "growing", which the next start settles at
 * the file's size, old or new (volumes-serve.c); no client had seen the
 * new size, so either is right.  A failure before 4 makes the file its
 * old size again. */
#include "volumes.h"
#include "daemon.h"
#include "core/error.h"
#include "core/size.h"
#include "export/export.h"
#include "log.h"
#include "luks/luks.h"
#include "store/backend.h"
#include "volumes-util.h"
#include "snapshots.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int check_resize(const struct cvd_volume_rec *v, uint64_t size,
                        int allow_shrink)
{
    char want[32], now[32], min[32], max[32];

    cv_format_size(size, want, sizeof want);
    cv_format_size(v->size, now, sizeof now);
    cv_format_size(v->sector_size, min, sizeof min);
    cv_format_size(CVD_VOLUME_MAX_SIZE, max, sizeof max);
    if (size == 0 || size > CVD_VOLUME_MAX_SIZE)
        return cv_error(-EINVAL, "volume %s: a size of %s is out of range: "
                        "%s to %s, in whole %u-byte sectors (it is %s now)",
                        v->name, want, min, max, v->sector_size, now);
    if (size % v->sector_size)
        return cv_error(-EINVAL, "volume %s: a size of %llu bytes is not a "
                        "whole number of %u-byte sectors (%s to %s; it is "
                        "%s now)", v->name, (unsigned long long)size,
                        v->sector_size, min, max, now);
    if (size < v->size && !allow_shrink)
        return cv_error(-EINVAL, "volume %s: is %s now; shrinking it to %s "
                        "destroys the data past %s: that needs allowShrink "
                        "(--allow-shrink) and every client disconnected",
                        v->name, now, want, want);
    return 0;
}

/* The effective size the header gives the image as it is now. */
static int header_size(struct cvd *d, const struct cvd_volume_rec *v,
                       uint64_t *out)
{
    struct cvd_export *e = NULL;
    struct cv_luks *l = NULL;
    struct cv_luks_info info;
    int r;

    pthread_mutex_lock(&d->header_lock);
    r = cvd_store_get(d, v->name, 0, &e);
    if (r == 0)
        r = cv_luks_load_metadata(cvd_store_backend(e), &l);
    if (r == 0)
        r = cv_luks_info(l, &info);
    pthread_mutex_unlock(&d->header_lock);
    if (r == 0)
        *out = info.effective_size;
    cv_luks_free(l);
    cvd_export_put_store(e);
    return r < 0 ? cv_error_prefix(r, "volume %s", v->name) : 0;
}

/* Steps 2 and 3: the file holds size bytes past the data offset, durably,
 * and the header lets the volume use them. */
static int grow_file(struct cvd *d, const struct cvd_volume_rec *v,
                     uint64_t size)
{
    uint64_t eff = size;
    char want[32], got[32];
    int r = cvd_store_resize(d, v, v->data_offset, size);

    if (r == 0 && strcmp(v->type, "plaintext"))
        r = header_size(d, v, &eff);
    if (r == 0 && eff < size) {
        cv_format_size(size, want, sizeof want);
        cv_format_size(eff, got, sizeof got);
        r = cv_error(-ENOTSUP, "volume %s: its LUKS2 header fixes the data "
                     "segment's size (%s): it cannot grow to %s", v->name,
                     got, want);
    }
    return r;
}

struct older {
    uint64_t size;
    int n;
};

/* Counts the connected clients that negotiated less than size. */
static int count_older(void *arg, const struct cvd_export_holder *h)
{
    struct older *o = arg;

    o->n += h->size < o->size;
    return 0;
}

int cvd_volume_clients_older(struct cvd *d, const char *name, uint64_t size)
{
    struct older o = { .size = size };

    if (d->reg)
        cvd_registry_holders(d->reg, name, count_older, &o);
    return o.n;
}

static void log_grown(struct cvd *d, const char *name, uint64_t old,
                      uint64_t size)
{
    char was[32], now[32];
    int n = cvd_volume_clients_older(d, name, size);

    cv_format_size(old, was, sizeof was);
    cv_format_size(size, now, sizeof now);
    if (n)
        cvd_info("volume %s: grown online from %s to %s; %d connected "
                 "client%s keep%s %s until %s reconnect%s", name, was, now,
                 n, n == 1 ? "" : "s", n == 1 ? "s" : "", was,
                 n == 1 ? "it" : "they", n == 1 ? "s" : "");
    else
        cvd_info("volume %s: grown from %s to %s", name, was, now);
}

/* Steps 1 to 5 (see the top). */
static int grow(struct cvd *d, struct cvd_volume_rec *v, uint64_t size)
{
    char first[CVD_ERROR_MAX];
    uint64_t old = v->size;
    int r;

    if (strcmp(v->state, CVD_VOL_READY))
        return cvd_state_error(v);
    snprintf(v->state, sizeof v->state, CVD_VOL_GROWING);
    r = d->meta->ops->volume_update(d->meta, v, CVD_VOL_READY);
    if (r < 0)
        return r;
    r = grow_file(d, v, size);
    if (r == 0) {
        v->size = size;
        snprintf(v->state, sizeof v->state, CVD_VOL_READY);
        r = d->meta->ops->volume_update(d->meta, v, CVD_VOL_GROWING);
        if (r < 0) {
            v->size = old;
            snprintf(v->state, sizeof v->state, CVD_VOL_GROWING);
        }
    }
    if (r < 0) {
        /* No client was served the new size: the file can go back. */
        snprintf(first, sizeof first, "%s", cv_last_error());
        cvd_undo(first, cvd_store_resize(d, v, v->data_offset, old));
        cvd_volume_put_back(d, v, CVD_VOL_READY, r);
        return r;
    }
    if (d->reg && cvd_registry_grow(d->reg, v->name, size) < 0)
        cvd_err("volume %s: grown to %llu bytes, but its open export "
                "keeps its old size until every client has disconnected: "
                "%s", v->name, (unsigned long long)size, cv_last_error());
    log_grown(d, v->name, old, size);
    return 0;
}

/* A shrink: the volume must not be served (claimed as resizing, which the
 * registry refuses to open). */
static int shrink(struct cvd *d, struct cvd_volume_rec *v, uint64_t size)
{
    char first[CVD_ERROR_MAX], from[sizeof v->state], was[32], now[32];
    uint64_t old;
    int r, u;

    r = cvd_volume_claim(d, v->name, CVD_VOL_RESIZING, "shrinking", v, from);
    if (r < 0)
        return r;
    old = v->size;
    /* Snapshot layers keep their size: a shrink and a grow would let their
     * data past the new end show through the head again. */
    r = cvd_volume_snapshot_count(d, v->name);
    if (r > 0)
        r = cv_error(-EBUSY, "volume %s: has %d snapshot%s; shrinking needs "
                     "them deleted first", v->name, r, r == 1 ? "" : "s");
    if (r == 0)
        r = cvd_store_resize(d, v, v->data_offset, size);
    snprintf(first, sizeof first, "%s", cv_last_error());
    v->size = r == 0 ? size : old;
    snprintf(v->state, sizeof v->state, CVD_VOL_READY);
    u = d->meta->ops->volume_update(d->meta, v, CVD_VOL_RESIZING);
    if (r < 0)
        cvd_undo(first, u);
    else
        r = u;
    if (r == 0) {
        cv_format_size(old, was, sizeof was);
        cv_format_size(size, now, sizeof now);
        cvd_info("volume %s: shrunk from %s to %s", v->name, was, now);
    }
    return r;
}

int cvd_volume_resize(struct cvd *d, const char *name, uint64_t size,
                      int allow_shrink, struct cvd_volume_rec *out)
{
    struct cvd_volume_rec v;
    int r = cvd_volume_get(d, name, &v);

    if (r == 0)
        r = check_resize(&v, size, allow_shrink);
    if (r == 0 && size > v.size)
        r = grow(d, &v, size);
    else if (r == 0 && size < v.size)
        r = shrink(d, &v, size);
    if (r == 0 && out)
        *out = v;
    return r;
}

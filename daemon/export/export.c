#include "export.h"
#include "export-internal.h"
#include "store/backend.h"
#include "core/error.h"
#include "core/secmem.h"
#include "core/size.h"
#include "log.h"
#include "image/volume.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A volume whose unlock failed, and until when it is not tried again. */
struct unlock_failure {
    struct unlock_failure *next;
    int64_t until_ms;
    char name[];
};

struct cvd_registry {
    cvd_resolve_fn resolve;
    cvd_unlock_fn unlock;
    cvd_list_fn list;
    void *opaque;
    struct cv_workers *workers;
    pthread_mutex_t lock;
    /* Signalled when an export becomes OPEN or UNLOCKED, or goes away. */
    pthread_cond_t opened;
    struct cvd_export *exports;
    /* Unlock limits, under lock. */
    unsigned max_unlocks, unlocking;
    pthread_cond_t unlock_room;
    int64_t retry_delay_ms;
    struct unlock_failure *failures;
    /* Replication's hook (set once, before use). */
    cvd_writer_attach_fn writer_attach;
    cvd_writer_detach_fn writer_detach;
    void *writer_opaque;
    cvd_remote_open_fn remote_open;
};

void cvd_volume_spec_free(struct cvd_volume_spec *spec)
{
    free(spec->path);
    spec->path = NULL;
}

void cvd_volume_keys_free(struct cvd_volume_keys *k)
{
    for (unsigned i = 0; i < k->n; i++)
        cv_secmem_free((unsigned char *)k->k[i].key, k->k[i].keylen);
    memset(k, 0, sizeof *k);
}

int cvd_registry_new(cvd_resolve_fn resolve, cvd_unlock_fn unlock,
                     cvd_list_fn list, void *opaque,
                     struct cv_workers *workers, struct cvd_registry **out)
{
    struct cvd_registry *r = calloc(1, sizeof *r);

    if (!r)
        return cv_error(-ENOMEM, "exports: out of memory");
    r->resolve = resolve;
    r->unlock = unlock;
    r->list = list;
    r->opaque = opaque;
    r->workers = workers;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->opened, NULL);
    pthread_cond_init(&r->unlock_room, NULL);
    *out = r;
    return 0;
}

void cvd_registry_set_writer(struct cvd_registry *r,
                             cvd_writer_attach_fn attach,
                             cvd_writer_detach_fn detach, void *opaque)
{
    r->writer_attach = attach;
    r->writer_detach = detach;
    r->writer_opaque = opaque;
}

void cvd_registry_set_remote(struct cvd_registry *r, cvd_remote_open_fn open)
{
    r->remote_open = open;
}

static void export_free(struct cvd_export *e)
{
    if (!e)
        return;
    if (e->writer)
        e->r->writer_detach(e->r->writer_opaque, e->writer);
    cv_volume_close(e->vol);
    cv_chain_close(e->chain);
    if (e->store)
        cv_backend_close(e->store);
    pthread_mutex_destroy(&e->shape);
    free(e->snapshot);
    free(e->name);
    free(e);
}

void cvd_registry_free(struct cvd_registry *r)
{
    if (!r)
        return;
    cvd_registry_flush_all(r);
    while (r->exports) {
        struct cvd_export *e = r->exports;

        cvd_warn("volume %s: still held at shutdown (%u references)",
                 e->name, e->refs);
        r->exports = e->next;
        export_free(e);
    }
    while (r->failures) {
        struct unlock_failure *f = r->failures;

        r->failures = f->next;
        free(f);
    }
    pthread_cond_destroy(&r->unlock_room);
    pthread_cond_destroy(&r->opened);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

int cvd_registry_list(struct cvd_registry *r,
                      int (*cb)(void *arg, const char *name), void *arg)
{
    return r->list(r->opaque, cb, arg);
}

static struct cvd_export *find(struct cvd_registry *r, const char *name)
{
    for (struct cvd_export *e = r->exports; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

int cvd_registry_in_use(struct cvd_registry *r, const char *name, int any)
{
    size_t len = strlen(name);
    int in_use = 0;

    pthread_mutex_lock(&r->lock);
    for (struct cvd_export *e = r->exports; e && !in_use; e = e->next)
        in_use = e->conns && (!strcmp(e->name, name) ||
                              (any && !strncmp(e->name, name, len) &&
                               e->name[len] == '@'));
    pthread_mutex_unlock(&r->lock);
    return in_use;
}

int cvd_registry_flush_all(struct cvd_registry *r)
{
    int r0 = 0;

    pthread_mutex_lock(&r->lock);
    for (struct cvd_export *e = r->exports; e; e = e->next) {
        if (e->state != OPEN || e->snapshot)
            continue;
        int rc = cvd_export_flush(e);
        if (rc < 0) {
            cvd_err("%s", cv_last_error());
            r0 = rc;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return r0;
}

/* A plaintext volume is its chain's raw view, served as it is. */
static int export_open_plain(struct cvd_export *e)
{
    atomic_store(&e->size, cv_chain_size(e->chain));
    e->flags |= CVD_EXPORT_PLAINTEXT;
    e->block_size = 4096;
    return 0;
}

/* Sets what e serves: the volume's bound (LUKS) and what new connections
 * get.  A plaintext volume's bound is the chain's size. */
static int export_set_size(struct cvd_export *e, uint64_t size)
{
    int rc = 0;

    if (e->vol)
        rc = cv_volume_set_size(e->vol, size);
    else if (e->plaintext && size > cv_chain_size(e->chain))
        rc = cv_error(-EINVAL, "volume %s: %llu bytes is beyond its image "
                      "(%llu bytes)", e->name, (unsigned long long)size,
                      (unsigned long long)cv_chain_size(e->chain));
    if (rc == 0)
        atomic_store(&e->size, size);
    return rc;
}

/* --- Unlock limits ------------------------------------------------------ */

static int64_t mono_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void cvd_registry_set_unlock_limits(struct cvd_registry *r,
                                    unsigned max_unlocks,
                                    unsigned retry_delay_s)
{
    pthread_mutex_lock(&r->lock);
    r->max_unlocks = max_unlocks;
    r->retry_delay_ms = 1000 * (int64_t)retry_delay_s;
    pthread_mutex_unlock(&r->lock);
}

/* Under r->lock: drops failures whose delay is over, and name's if
 * forget; returns name's if it is still in its delay. */
static struct unlock_failure *failures_prune(struct cvd_registry *r,
                                             const char *name, int forget)
{
    struct unlock_failure **p = &r->failures, *found = NULL;
    int64_t now = mono_ms();

    while (*p) {
        struct unlock_failure *f = *p;

        if (now >= f->until_ms || (forget && !strcmp(f->name, name))) {
            *p = f->next;
            free(f);
            continue;
        }
        if (name && !strcmp(f->name, name))
            found = f;
        p = &f->next;
    }
    return found;
}

/* Waits for a derivation slot; refuses a volume in its retry delay. */
static int unlock_begin(struct cvd_registry *r, const char *name)
{
    struct unlock_failure *f;
    struct timespec deadline;
    int rc = 0;

    pthread_mutex_lock(&r->lock);
    f = failures_prune(r, name, 0);
    if (f) {
        rc = cv_error(-EAGAIN, "volume %s: its last unlock failed; not "
                      "tried again for %.1f s (unlock-retry-delay)", name,
                      (double)(f->until_ms - mono_ms()) / 1000);
        goto out;
    }
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += CVD_UNLOCK_WAIT_S;
    while (r->max_unlocks && r->unlocking >= r->max_unlocks && rc == 0)
        if (pthread_cond_timedwait(&r->unlock_room, &r->lock,
                                   &deadline) == ETIMEDOUT)
            rc = cv_error(-EBUSY, "volume %s: %u unlocks already running "
                          "for %d s (max-unlocks); try again later", name,
                          r->unlocking, CVD_UNLOCK_WAIT_S);
    if (rc == 0)
        r->unlocking++;
out:
    pthread_mutex_unlock(&r->lock);
    return rc;
}

static void unlock_end(struct cvd_registry *r, const char *name, int failed)
{
    struct unlock_failure *f = NULL;
    size_t len = strlen(name) + 1;

    if (failed && r->retry_delay_ms && (f = malloc(sizeof *f + len))) {
        f->until_ms = mono_ms() + r->retry_delay_ms;
        memcpy(f->name, name, len);
    }
    pthread_mutex_lock(&r->lock);
    r->unlocking--;
    pthread_cond_signal(&r->unlock_room);
    failures_prune(r, name, 1);
    if (f) {
        f->next = r->failures;
        r->failures = f;
    }
    pthread_mutex_unlock(&r->lock);
}

/* The key derivations (in r->unlock), then the volume on the chain. */
static int export_unlock(struct cvd_registry *r, struct cvd_export *e)
{
    struct cvd_volume_keys keys = { 0 };
    int rc = unlock_begin(r, e->volume);

    if (rc < 0)
        return rc;
    rc = r->unlock(r->opaque, e->volume, e->chain, &keys);
    unlock_end(r, e->volume, rc < 0);
    if (rc == 0)
        rc = cv_volume_open_chain(e->chain, keys.k, keys.n, r->workers,
                                  e->snapshot ? CV_VOLUME_READONLY : 0,
                                  &e->vol);
    cvd_volume_keys_free(&keys);
    if (rc < 0)
        return rc;
    /* The record's size bounds what is served: an image grown by a grow
     * that has not committed yet serves its old size. */
    if (e->record_size && e->record_size < cv_volume_size(e->vol))
        rc = cv_volume_set_size(e->vol, e->record_size);
    if (rc == 0) {
        atomic_store(&e->size, cv_volume_size(e->vol));
        e->block_size = cv_volume_sector_size(e->vol);
    }
    return rc;
}

/* Splits "VOL@SNAP" into e->volume and e->snapshot. */
static int export_names(struct cvd_export *e)
{
    const char *at = strchr(e->name, '@');
    size_t len = at ? (size_t)(at - e->name) : strlen(e->name);

    if (len > CVD_EXPORT_NAME_MAX || (at && !at[1]))
        return cv_error(-ENOENT, "volume \"%.64s\": no such volume",
                        e->name);
    memcpy(e->volume, e->name, len);
    e->volume[len] = '\0';
    if (at && !(e->snapshot = strdup(at + 1)))
        return cv_error(-ENOMEM, "volume %s: out of memory", e->name);
    return 0;
}

/* For a connection, on a node outside the volume's replica set: a chain
 * over the replicas, with its writer (*done 1).  Else nothing (*done 0). */
static int export_open_remote(struct cvd_registry *r, struct cvd_export *e,
                              int *done)
{
    int rc = r->remote_open(r->writer_opaque, e->volume, e->snapshot,
                            &e->chain, &e->store, &e->writer);

    *done = rc == 0 && e->chain;
    return rc;
}

/* Opens the chain (no key yet); runs without the registry lock.  serving:
 * for a connection (cvd_export_get), else the daemon's own work. */
static int export_open(struct cvd_registry *r, struct cvd_export *e,
                       int serving)
{
    struct cvd_volume_spec spec = { 0 };
    int rc = export_names(e), remote = 0;

    /* A connection on a node without a replica: the volume is served
     * from the replicas, as a connection may (the record says how). */
    if (rc == 0 && serving && r->remote_open)
        rc = export_open_remote(r, e, &remote);
    if (rc == 0)
        rc = r->resolve(r->opaque, e->volume, remote, &spec);
    if (rc < 0)
        goto out;
    if (e->snapshot && spec.plaintext) {
        rc = cv_error(-ENOENT, "volume %s: a plaintext volume has no "
                      "snapshots", e->volume);
        goto out;
    }
    if (!remote)
        rc = cv_chain_open(spec.path, e->snapshot,
                           e->snapshot ? CV_CHAIN_READONLY : 0, &e->chain);
    if (rc == -ENOENT && e->snapshot)
        rc = cv_error(-ENOENT, "volume %s: no snapshot \"%s\"", e->volume,
                      e->snapshot);
    else if (rc < 0)
        cv_error_prefix(rc, "volume %s", e->name);
    if (rc < 0)
        goto out;
    /* A writable head: replication mirrors it (or refuses it here). */
    if (!e->snapshot && !remote && r->writer_attach &&
        (rc = r->writer_attach(r->writer_opaque, e->volume, e->chain,
                               &e->writer)) < 0)
        goto out;
    e->plaintext = spec.plaintext;
    e->record_size = spec.size;
    if (e->snapshot)
        e->flags |= CVD_EXPORT_READONLY;
    if (spec.plaintext) {
        rc = export_open_plain(e);
        if (rc == 0 && spec.size && spec.size < atomic_load(&e->size))
            rc = export_set_size(e, spec.size);
    }
out:
    cvd_volume_spec_free(&spec);
    return rc;
}

/* Waits for an export another thread is opening; returns it held, or NULL
 * when that open failed (the caller then tries itself). */
static struct cvd_export *wait_opening(struct cvd_registry *r,
                                       const char *name)
{
    struct cvd_export *e;

    while ((e = find(r, name)) && e->state == OPENING)
        pthread_cond_wait(&r->opened, &r->lock);
    if (e)
        e->refs++;
    return e;
}

static void unlink_export(struct cvd_registry *r, struct cvd_export *e)
{
    struct cvd_export **p = &r->exports;

    while (*p != e)
        p = &(*p)->next;
    *p = e->next;
}

/* Under r->lock: a new entry for name, OPENING, held once. */
static struct cvd_export *export_new(struct cvd_registry *r, const char *name)
{
    struct cvd_export *e = calloc(1, sizeof *e);

    if (!e || !(e->name = strdup(name))) {
        free(e);
        return NULL;
    }
    e->r = r;
    e->state = OPENING;
    e->refs = 1;
    pthread_mutex_init(&e->shape, NULL);
    e->next = r->exports;
    r->exports = e;
    return e;
}

/* Finds or opens the chain of name, held. */
static int export_hold(struct cvd_registry *r, const char *name,
                       int serving, struct cvd_export **out)
{
    struct cvd_export *e;
    int rc;

    pthread_mutex_lock(&r->lock);
    e = wait_opening(r, name);
    if (e) {
        pthread_mutex_unlock(&r->lock);
        *out = e;
        return 0;
    }
    e = export_new(r, name);
    pthread_mutex_unlock(&r->lock);
    if (!e)
        return cv_error(-ENOMEM, "volume %s: out of memory", name);

    rc = export_open(r, e, serving);

    pthread_mutex_lock(&r->lock);
    if (rc < 0)
        unlink_export(r, e);
    else
        e->state = OPEN;
    /* A grow that came while a plaintext volume opened. */
    if (rc == 0 && e->plaintext && e->grow_to > atomic_load(&e->size) &&
        export_set_size(e, e->grow_to) < 0)
        cvd_err("%s", cv_last_error());
    pthread_cond_broadcast(&r->opened);
    pthread_mutex_unlock(&r->lock);
    if (rc < 0) {
        export_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

/* Unlocks a held export once: the first caller derives, others wait. */
static int export_unlock_once(struct cvd_registry *r, struct cvd_export *e)
{
    char human[64];
    int rc = 0;

    pthread_mutex_lock(&r->lock);
    while (e->unlock == UNLOCKING)
        pthread_cond_wait(&r->opened, &r->lock);
    if (e->unlock == UNLOCKED || e->plaintext) {
        pthread_mutex_unlock(&r->lock);
        return 0;
    }
    e->unlock = UNLOCKING;
    pthread_mutex_unlock(&r->lock);

    rc = export_unlock(r, e);

    pthread_mutex_lock(&r->lock);
    e->unlock = rc < 0 ? LOCKED : UNLOCKED;
    /* A grow that came while it opened (cvd_registry_grow). */
    if (rc == 0 && e->grow_to > atomic_load(&e->size) &&
        export_set_size(e, e->grow_to) < 0)
        cvd_err("%s", cv_last_error());
    pthread_cond_broadcast(&r->opened);
    pthread_mutex_unlock(&r->lock);
    if (rc == 0)
        cvd_info("volume %s: opened (%s)", e->name,
                 cv_format_size_exact(atomic_load(&e->size), human,
                                      sizeof human));
    return rc;
}

/* A connection may open only a served volume: checked at every get,
 * since the chain may be open for the daemon's own work meanwhile. */
static int check_served(struct cvd_registry *r, const char *name)
{
    struct cvd_volume_spec spec = { 0 };
    char volume[CVD_EXPORT_NAME_MAX + 1];
    size_t len = strcspn(name, "@");
    int rc;

    if (len > CVD_EXPORT_NAME_MAX)
        return cv_error(-ENOENT, "volume \"%.64s\": no such volume", name);
    memcpy(volume, name, len);
    volume[len] = '\0';
    rc = r->resolve(r->opaque, volume, 1, &spec);
    cvd_volume_spec_free(&spec);
    return rc;
}

int cvd_export_get(struct cvd_registry *r, const char *name,
                   struct cvd_export **out)
{
    struct cvd_export *e = NULL;
    int rc = check_served(r, name);

    if (rc == 0)
        rc = export_hold(r, name, 1, &e);

    if (rc == 0)
        rc = export_unlock_once(r, e);
    if (rc < 0) {
        cvd_export_put_store(e);
        return rc;
    }
    pthread_mutex_lock(&r->lock);
    e->conns++;
    pthread_mutex_unlock(&r->lock);
    *out = e;
    return 0;
}

int cvd_export_get_store(struct cvd_registry *r, const char *name,
                         int unlock, struct cvd_export **out)
{
    struct cvd_export *e = NULL;
    int rc = export_hold(r, name, 0, &e);

    if (rc == 0 && unlock && (rc = export_unlock_once(r, e)) < 0)
        cvd_export_put_store(e);
    if (rc == 0)
        *out = e;
    return rc;
}

struct cv_chain *cvd_export_chain(struct cvd_export *e)
{
    return e->chain;
}

struct cv_volume *cvd_export_volume(struct cvd_export *e)
{
    return e->unlock == UNLOCKED ? e->vol : NULL;
}

void cvd_export_shape_lock(struct cvd_export *e)
{
    pthread_mutex_lock(&e->shape);
}

void cvd_export_shape_unlock(struct cvd_export *e)
{
    pthread_mutex_unlock(&e->shape);
}

/* The view's chain, opened read-only: runs without the registry lock. */
static int view_open(struct cvd_registry *r, struct cvd_export *e)
{
    struct cvd_volume_spec spec = { 0 };
    int rc = export_names(e);

    if (rc == 0 && e->snapshot)
        rc = cv_error(-EINVAL, "volume %s: a view is of the head", e->name);
    if (rc == 0)
        rc = r->resolve(r->opaque, e->volume, 0, &spec);
    if (rc == 0 && (rc = cv_chain_open(spec.path, NULL, CV_CHAIN_READONLY,
                                       &e->chain)) < 0)
        cv_error_prefix(rc, "volume %s", e->name);
    if (rc == 0)
        e->flags |= CVD_EXPORT_READONLY;
    cvd_volume_spec_free(&spec);
    return rc;
}

int cvd_export_get_view(struct cvd_registry *r, const char *name,
                        struct cvd_export **out)
{
    struct cvd_export *e;
    int rc;

    pthread_mutex_lock(&r->lock);
    e = wait_opening(r, name);
    pthread_mutex_unlock(&r->lock);
    if (e) {
        *out = e;
        return 0;
    }
    if (!(e = calloc(1, sizeof *e)) || !(e->name = strdup(name))) {
        free(e);
        return cv_error(-ENOMEM, "volume %s: out of memory", name);
    }
    e->r = r;
    e->state = OPEN;
    e->refs = 1;
    e->view = 1;
    pthread_mutex_init(&e->shape, NULL);
    if ((rc = view_open(r, e)) < 0) {
        export_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

static void export_release(struct cvd_export *e, int conn)
{
    struct cvd_registry *r;
    int last;

    if (!e)
        return;
    if (e->view) {
        export_free(e);         /* one caller's alone */
        return;
    }
    r = e->r;
    pthread_mutex_lock(&r->lock);
    if (conn)
        e->conns--;
    last = --e->refs == 0;
    if (last)
        unlink_export(r, e);
    pthread_mutex_unlock(&r->lock);
    if (!last)
        return;
    /* The last client is gone: whatever it wrote reaches the disk before
     * the key is wiped, FLUSH or not. */
    if (!e->snapshot && cvd_export_flush(e) < 0)
        cvd_err("%s", cv_last_error());
    if (e->unlock == UNLOCKED)
        cvd_info("volume %s: closed", e->name);
    export_free(e);
}

void cvd_export_put(struct cvd_export *e)
{
    export_release(e, 1);
}

void cvd_export_put_store(struct cvd_export *e)
{
    export_release(e, 0);
}

const char *cvd_export_name(const struct cvd_export *e)
{
    return e->name;
}

uint64_t cvd_export_size(const struct cvd_export *e)
{
    return atomic_load(&e->size);
}

void cvd_export_hold(struct cvd_export *e, struct cvd_export_holder *h)
{
    pthread_mutex_lock(&e->r->lock);
    h->next = e->holders;
    e->holders = h;
    pthread_mutex_unlock(&e->r->lock);
}

void cvd_export_unhold(struct cvd_export *e, struct cvd_export_holder *h)
{
    struct cvd_export_holder **p;

    pthread_mutex_lock(&e->r->lock);
    for (p = &e->holders; *p; p = &(*p)->next)
        if (*p == h) {
            *p = h->next;
            break;
        }
    pthread_mutex_unlock(&e->r->lock);
}

int cvd_registry_holders(struct cvd_registry *r, const char *name,
                         int (*cb)(void *arg,
                                   const struct cvd_export_holder *h),
                         void *arg)
{
    struct cvd_export *e;
    int n = 0;

    pthread_mutex_lock(&r->lock);
    e = find(r, name);
    for (struct cvd_export_holder *h = e ? e->holders : NULL; h;
         h = h->next) {
        n++;
        if (cb(arg, h))
            break;
    }
    pthread_mutex_unlock(&r->lock);
    return n;
}

int cvd_registry_grow(struct cvd_registry *r, const char *name,
                      uint64_t size)
{
    struct cvd_export *e;
    int rc = 0;

    pthread_mutex_lock(&r->lock);
    e = find(r, name);
    /* Not serving yet (the chain opening, or the key not derived): the
     * open applies it once it knows the volume's size. */
    if (e && (e->state == OPENING || (!e->plaintext && e->unlock != UNLOCKED))
        && size > e->grow_to)
        e->grow_to = size;
    else if (e && e->state == OPEN && size > atomic_load(&e->size))
        rc = export_set_size(e, size);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

unsigned cvd_export_flags(const struct cvd_export *e)
{
    return e->flags;
}

unsigned cvd_export_block_size(const struct cvd_export *e)
{
    return e->block_size;
}

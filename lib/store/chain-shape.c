/* Changes of shape: snapshot, merge (mark and drop), rollback, flatten's
 * drop of the parent, the data offset, resize.  Each holds the chain's
 * lock exclusive, so it waits for the I/O in flight and I/O waits for
 * it; each makes its new files, then commits by replacing the manifest
 * (chain_manifest_write), then changes the chain in memory in ways that
 * cannot fail. */
#include "chain-internal.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void wrlock(struct cv_chain *c)
{
    chain_wrlock(c);
}

static void unlock(struct cv_chain *c)
{
    chain_unlock(c);
}

/* A change of shape: serialized with the others, exclusive of I/O. */
static void shape_begin(struct cv_chain *c)
{
    pthread_mutex_lock(&c->shape_lock);
    wrlock(c);
}

static void shape_end(struct cv_chain *c)
{
    unlock(c);
    pthread_mutex_unlock(&c->shape_lock);
}

int chain_mirror_begin(struct cv_chain *c, const struct cv_mirror_op *op,
                       void **token)
{
    *token = NULL;
    return c->mirror.begin(c->mirror.arg, op, token);
}

int chain_mirror_end(struct cv_chain *c, void *token, int local)
{
    int r = c->mirror.end(c->mirror.arg, token, local);

    return local < 0 ? local : r;
}

/* A change of shape through the mirror: begun once its checks passed
 * (nothing without a mirror), ended with its local result. */
static int mirror_shape(struct cv_chain *c, enum cv_mirror_shape shape,
                        unsigned id, const char *name, int64_t created,
                        void **token)
{
    struct cv_mirror_op op = { .type = CV_MIRROR_SHAPE, .shape = shape,
                               .id = id, .name = name, .created = created };

    *token = NULL;
    if (shape == CV_SHAPE_DATA_OFFSET)
        op.size = (uint64_t)created;
    return c->has_mirror ? chain_mirror_begin(c, &op, token) : 0;
}

static int mirror_done(struct cv_chain *c, void *token, int local)
{
    return c->has_mirror ? chain_mirror_end(c, token, local) : local;
}

int cv_chain_set_mirror(struct cv_chain *c, const struct cv_chain_mirror *m)
{
    int r = 0;

    if (c->wrapped)
        return cv_error(-ENOTSUP, "%s: a raw image cannot be mirrored",
                        c->dir);
    shape_begin(c);
    if (m && (r = chain_writable(c, "mirror")) < 0)
        goto out;
    if (m)
        c->mirror = *m;
    else
        memset(&c->mirror, 0, sizeof c->mirror);
    c->has_mirror = m != NULL;
out:
    shape_end(c);
    return r;
}

static int shape_ok(struct cv_chain *c, const char *what)
{
    if (c->wrapped && c->wrapped->no_shape)
        return cv_error(-ENOTSUP, "%s", c->wrapped->no_shape);
    if (c->wrapped)
        return cv_error(-ENOTSUP, "%s: %s: a raw image has no layers to "
                        "change", c->dir, what);
    return chain_writable(c, what);
}

static void layer_file(unsigned id, char name[CHAIN_LAYER_NAME_MAX])
{
    snprintf(name, CHAIN_LAYER_NAME_MAX, CHAIN_LAYER_FMT, id);
}

/* A new empty (sparse) layer file of size bytes, synced, opened into a
 * new layer struct.  The directory entry is synced with the manifest. */
static int new_layer(struct cv_chain *c, uint64_t size,
                     struct chain_layer **out)
{
    char name[CHAIN_LAYER_NAME_MAX];
    unsigned id = c->man.next_id;
    struct chain_layer *l;
    int r;

    if (c->man.nlayers == CV_CHAIN_MAX_LAYERS ||
        c->nlayers == CV_CHAIN_MAX_LAYERS)
        return cv_error(-E2BIG, "%s: already %d layers", c->dir,
                        CV_CHAIN_MAX_LAYERS);
    if ((r = chain_layer_new(c, id, size, &l)) < 0)
        return r;
    layer_file(id, name);
    l->fd = openat(c->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                   0600);
    if (l->fd < 0) {
        r = cv_error(-errno, "%s: creating %s: %s", c->dir, name,
                     strerror(errno));
        chain_layer_free(l);
        return r;
    }
    if (ftruncate(l->fd, (off_t)size) != 0 || fsync(l->fd) != 0) {
        r = cv_error(-errno, "%s: %s: %s", c->dir, name, strerror(errno));
        chain_layer_free(l);
        unlinkat(c->dirfd, name, 0);
        return r;
    }
    *out = l;
    return 0;
}

static void forget_layer(struct cv_chain *c, struct chain_layer *l)
{
    char name[CHAIN_LAYER_NAME_MAX];

    layer_file(l->id, name);
    chain_layer_free(l);
    unlinkat(c->dirfd, name, 0);
}

static int snapshot_check(struct cv_chain *c, const char *name)
{
    int i;

    if (!chain_name_ok(name))
        return cv_error(-EINVAL, "%s: \"%s\" is not a valid snapshot name",
                        c->dir, name);
    if ((i = chain_manifest_find(&c->man, name)) >= 0)
        return cv_error(-EEXIST, c->man.layers[i].merging
                        ? "%s: snapshot \"%s\" exists (being deleted)"
                        : "%s: snapshot \"%s\" exists", c->dir, name);
    return 0;
}

/* Under the exclusive lock: the head synced (what was acknowledged is in
 * the snapshot), the manifest names it and l as the new head. */
static int snapshot_commit(struct cv_chain *c, const char *name,
                           int64_t created, struct chain_layer *l)
{
    struct chain_layer *head = chain_head(c);
    struct chain_manifest *m;
    int r;

    if (fdatasync(head->fd) != 0)
        return cv_error(-errno, "%s: syncing the head: %s", c->dir,
                        strerror(errno));
    if (!(m = malloc(sizeof *m)))
        return cv_error(-ENOMEM, "%s: out of memory", c->dir);
    *m = c->man;
    snprintf(m->layers[m->nlayers - 1].snapshot, CV_CHAIN_NAME_MAX + 1, "%s",
             name);
    m->layers[m->nlayers - 1].created = created;
    memset(&m->layers[m->nlayers], 0, sizeof m->layers[0]);
    m->layers[m->nlayers++].id = l->id;
    m->next_id++;
    if ((r = chain_manifest_write(c->dirfd, c->dir, m)) == 0) {
        c->man = *m;
        snprintf(head->snapshot, sizeof head->snapshot, "%s", name);
        head->created = created;
        c->layers[c->nlayers++] = l;
    }
    free(m);
    return r;
}

int cv_chain_snapshot(struct cv_chain *c, const char *name, int64_t created)
{
    struct chain_layer *l = NULL;
    int r;

    /* The shape is ours (no other change runs), I/O still runs: the
     * head's backlog is written out and the new head's file made before
     * writes wait, so while they wait there is little left to sync and
     * only the manifest to replace. */
    pthread_mutex_lock(&c->shape_lock);
    if ((r = shape_ok(c, "snapshot")) == 0 &&
        (r = snapshot_check(c, name)) == 0) {
        fdatasync(chain_head(c)->fd);   /* its errors: the second one's */
        r = new_layer(c, chain_view_size(c), &l);
    }
    if (r == 0) {
        void *token;

        wrlock(c);
        if ((r = mirror_shape(c, CV_SHAPE_SNAPSHOT, 0, name, created,
                              &token)) == 0)
            r = mirror_done(c, token, snapshot_commit(c, name, created, l));
        unlock(c);
        if (r < 0)
            forget_layer(c, l);
    }
    pthread_mutex_unlock(&c->shape_lock);
    return r;
}

int cv_chain_snapshot_layer(struct cv_chain *c, const char *name,
                            unsigned *id, unsigned *above)
{
    int i, r = 0;

    chain_rdlock(c);
    i = chain_manifest_find(&c->man, name);
    if (i < 0 || (size_t)i + 1 >= c->man.nlayers) {
        r = cv_error(-ENOENT, "%s: no snapshot \"%s\"", c->dir, name);
    } else {
        *id = c->man.layers[i].id;
        *above = c->man.layers[i + 1].id;
    }
    unlock(c);
    return r;
}

/* The manifest index and chain index of own snapshot layer id. */
static int snapshot_of(struct cv_chain *c, unsigned id, int *mi, int *ci)
{
    *mi = -1;
    for (size_t i = 0; i + 1 < c->man.nlayers; i++)
        if (c->man.layers[i].id == id)
            *mi = (int)i;
    *ci = *mi < 0 ? -1 : (int)c->nparent + *mi;
    if (*mi < 0)
        return cv_error(-EBUSY, "%s: layer %u is not a snapshot layer of "
                        "this chain", c->dir, id);
    return 0;
}

static int mark_commit(struct cv_chain *c, int mi, int ci)
{
    struct chain_manifest *m;
    int r;

    if (!(m = malloc(sizeof *m)))
        return cv_error(-ENOMEM, "%s: out of memory", c->dir);
    *m = c->man;
    m->layers[mi].merging = 1;
    if ((r = chain_manifest_write(c->dirfd, c->dir, m)) == 0) {
        c->man = *m;
        c->layers[ci]->merging = 1;
    }
    free(m);
    return r;
}

static int mark_locked(struct cv_chain *c, unsigned id)
{
    void *token;
    int mi, ci, r;

    if ((r = snapshot_of(c, id, &mi, &ci)) < 0)
        return r;
    if (c->man.layers[mi].merging)
        return 0;       /* resuming */
    if ((r = mirror_shape(c, CV_SHAPE_MARK_MERGING, id, NULL, 0,
                          &token)) < 0)
        return r;
    return mirror_done(c, token, mark_commit(c, mi, ci));
}

int cv_chain_mark_merging(struct cv_chain *c, unsigned id)
{
    int r;

    shape_begin(c);
    if ((r = shape_ok(c, "merge")) == 0)
        r = mark_locked(c, id);
    shape_end(c);
    return r;
}

static void remove_at(struct cv_chain *c, struct chain_manifest *m, int mi,
                      int ci)
{
    memmove(&m->layers[mi], &m->layers[mi + 1],
            (m->nlayers - (size_t)mi - 1) * sizeof m->layers[0]);
    m->nlayers--;
    memmove(&c->layers[ci], &c->layers[ci + 1],
            (c->nlayers - (size_t)ci - 1) * sizeof c->layers[0]);
    c->nlayers--;
}

static int drop_commit(struct cv_chain *c, int mi, int ci)
{
    struct chain_manifest *m;
    struct chain_layer *l;
    int r;

    if (!(m = malloc(sizeof *m)))
        return cv_error(-ENOMEM, "%s: out of memory", c->dir);
    *m = c->man;
    l = c->layers[ci];
    remove_at(c, m, mi, ci);
    if ((r = chain_manifest_write(c->dirfd, c->dir, m)) < 0) {
        /* Not committed: put it back. */
        memmove(&c->layers[ci + 1], &c->layers[ci],
                (c->nlayers - (size_t)ci) * sizeof c->layers[0]);
        c->layers[ci] = l;
        c->nlayers++;
        free(m);
        return r;
    }
    c->man = *m;
    free(m);
    /* Committed; a file left by a failed unlink is removed at next open. */
    forget_layer(c, l);
    return 0;
}

static int drop_locked(struct cv_chain *c, unsigned id)
{
    void *token;
    int mi, ci, r;

    if ((r = snapshot_of(c, id, &mi, &ci)) < 0)
        return r;
    if (!c->man.layers[mi].merging)
        return cv_error(-EBUSY, "%s: layer %u (snapshot \"%s\") is not being "
                        "merged", c->dir, id, c->man.layers[mi].snapshot);
    if ((r = mirror_shape(c, CV_SHAPE_DROP_LAYER, id, NULL, 0, &token)) < 0)
        return r;
    return mirror_done(c, token, drop_commit(c, mi, ci));
}

int cv_chain_drop_layer(struct cv_chain *c, unsigned id)
{
    int r;

    shape_begin(c);
    if ((r = shape_ok(c, "drop a layer")) == 0)
        r = drop_locked(c, id);
    shape_end(c);
    return r;
}

/* The snapshots newer than manifest index mi, for the message. */
static void newer_names(const struct chain_manifest *m, size_t mi, char *buf,
                        size_t size)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = mi + 1; i + 1 < m->nlayers && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s\"%s\"%s",
                                 used ? ", " : "", m->layers[i].snapshot,
                                 m->layers[i].merging ? " (being deleted)"
                                                      : "");
}

static int rollback_commit(struct cv_chain *c);

static int rollback_locked(struct cv_chain *c, const char *name)
{
    char newer[512];
    void *token;
    int mi, r;

    if ((mi = chain_manifest_find(&c->man, name)) < 0 ||
        c->man.layers[mi].merging)
        return cv_error(-ENOENT, "%s: no snapshot \"%s\"", c->dir, name);
    if ((size_t)mi + 2 != c->man.nlayers) {
        newer_names(&c->man, (size_t)mi, newer, sizeof newer);
        return cv_error(-EBUSY, "%s: snapshot \"%s\" is not the newest: "
                        "newer are %s", c->dir, name, newer);
    }
    if ((r = mirror_shape(c, CV_SHAPE_ROLLBACK, 0, name, 0, &token)) < 0)
        return r;
    return mirror_done(c, token, rollback_commit(c));
}

static int rollback_commit(struct cv_chain *c)
{
    struct chain_layer *old = chain_head(c), *l;
    struct chain_manifest *m;
    int r;

    /* The volume as it was: the snapshot's size too. */
    if ((r = new_layer(c, c->layers[c->nlayers - 2]->size, &l)) < 0)
        return r;
    if (!(m = malloc(sizeof *m))) {
        forget_layer(c, l);
        return cv_error(-ENOMEM, "%s: out of memory", c->dir);
    }
    *m = c->man;
    memset(&m->layers[m->nlayers - 1], 0, sizeof m->layers[0]);
    m->layers[m->nlayers - 1].id = l->id;
    m->next_id++;
    if ((r = chain_manifest_write(c->dirfd, c->dir, m)) < 0) {
        forget_layer(c, l);
        free(m);
        return r;
    }
    c->man = *m;
    free(m);
    c->layers[c->nlayers - 1] = l;
    forget_layer(c, old);
    return 0;
}

int cv_chain_rollback(struct cv_chain *c, const char *name)
{
    int r;

    shape_begin(c);
    if ((r = shape_ok(c, "rollback")) == 0)
        r = rollback_locked(c, name);
    shape_end(c);
    return r;
}

/* Every block a parent layer holds (inside the bottom's size) is held by
 * the bottom: flatten copied it. */
static int parents_copied(struct cv_chain *c, uint64_t *missing)
{
    struct chain_layer *bottom = c->layers[c->nparent];
    uint64_t first = c->data_offset / CV_CHAIN_BLOCK;
    uint64_t end = bottom->map.nblocks;

    for (size_t i = 0; i < c->nparent; i++) {
        const struct chain_map *pm = &c->layers[i]->map;

        for (uint64_t b = first; b < end && b < pm->nblocks;) {
            uint64_t n = chain_map_run(pm, b, end - b, 0);

            b += n;
            if (b >= end || b >= pm->nblocks)
                break;
            n = chain_map_run(pm, b, end - b, 1);
            if (chain_map_run(&bottom->map, b, n, 1) < n) {
                *missing = (b + chain_map_run(&bottom->map, b, n, 1)) *
                           CV_CHAIN_BLOCK;
                return 0;
            }
            b += n;
        }
    }
    return 1;
}

static int drop_parent_commit(struct cv_chain *c);

static int drop_parent_locked(struct cv_chain *c)
{
    uint64_t missing = 0;
    void *token;
    int r;

    if (!c->man.has_parent)
        return cv_error(-EINVAL, "%s: has no parent", c->dir);
    if (!parents_copied(c, &missing))
        return cv_error(-EBUSY, "%s: its bottom layer %u lacks the parent's "
                        "block at %llu (not flattened)", c->dir,
                        c->layers[c->nparent]->id,
                        (unsigned long long)missing);
    if ((r = mirror_shape(c, CV_SHAPE_DROP_PARENT, 0, NULL, 0, &token)) < 0)
        return r;
    return mirror_done(c, token, drop_parent_commit(c));
}

static int drop_parent_commit(struct cv_chain *c)
{
    struct chain_manifest *m;
    int r;

    if (!(m = malloc(sizeof *m)))
        return cv_error(-ENOMEM, "%s: out of memory", c->dir);
    *m = c->man;
    m->has_parent = 0;
    m->parent_volume[0] = m->parent_snapshot[0] = '\0';
    m->parent_own_format = 0;
    if ((r = chain_manifest_write(c->dirfd, c->dir, m)) == 0) {
        c->man = *m;
        for (size_t i = 0; i < c->nparent; i++)
            chain_layer_free(c->layers[i]);
        memmove(&c->layers[0], &c->layers[c->nparent],
                (c->nlayers - c->nparent) * sizeof c->layers[0]);
        c->nlayers -= c->nparent;
        c->nparent = 0;
        /* The formats' header stores stay open until cv_chain_close: a
         * caller may still hold one (cv_chain_format_header). */
        __atomic_store_n(&c->nformats, 1, __ATOMIC_RELEASE);
    }
    free(m);
    return r;
}

int cv_chain_drop_parent(struct cv_chain *c)
{
    int r;

    shape_begin(c);
    if ((r = shape_ok(c, "drop the parent")) == 0)
        r = drop_parent_locked(c);
    shape_end(c);
    return r;
}

static int set_offset_commit(struct cv_chain *c, uint64_t off);

static int set_offset_locked(struct cv_chain *c, uint64_t off)
{
    void *token;
    int r;

    if (off % CV_CHAIN_BLOCK || off > chain_view_size(c))
        return cv_error(-EINVAL, "%s: data offset %llu is not a multiple of "
                        "%u inside the store", c->dir,
                        (unsigned long long)off, CV_CHAIN_BLOCK);
    if (c->wrapped) {
        c->data_offset = off;
        return 0;
    }
    if ((r = mirror_shape(c, CV_SHAPE_DATA_OFFSET, 0, NULL, (int64_t)off,
                          &token)) < 0)
        return r;
    return mirror_done(c, token, set_offset_commit(c, off));
}

static int set_offset_commit(struct cv_chain *c, uint64_t off)
{
    struct chain_manifest *m;
    int r;

    if (ftruncate(c->header_fd, (off_t)off) != 0 ||
        fsync(c->header_fd) != 0)
        return cv_error(-errno, "%s: header: cutting to %llu bytes: %s",
                        c->dir, (unsigned long long)off, strerror(errno));
    if (!(m = malloc(sizeof *m)))
        return cv_error(-ENOMEM, "%s: out of memory", c->dir);
    *m = c->man;
    m->data_offset = off;
    if ((r = chain_manifest_write(c->dirfd, c->dir, m)) == 0) {
        c->man = *m;
        c->data_offset = off;
    }
    free(m);
    return r;
}

int cv_chain_set_data_offset(struct cv_chain *c, uint64_t data_offset)
{
    int r;

    shape_begin(c);
    if ((r = chain_writable(c, "set the data offset")) == 0)
        r = set_offset_locked(c, data_offset);
    shape_end(c);
    return r;
}

/* A layer below the head that holds data at or past size (whose data a
 * shrink and a later grow would bring back into the view), or NULL. */
static struct chain_layer *held_past(struct cv_chain *c, uint64_t size)
{
    uint64_t blk = (size + CV_CHAIN_BLOCK - 1) / CV_CHAIN_BLOCK;

    for (size_t i = 0; i + 1 < c->nlayers; i++) {
        const struct chain_map *m = &c->layers[i]->map;

        if (blk < m->nblocks &&
            chain_map_run(m, blk, m->nblocks - blk, 0) < m->nblocks - blk)
            return c->layers[i];
    }
    return NULL;
}

static int head_resize(struct cv_chain *c, uint64_t size);

static int resize_locked(struct cv_chain *c, uint64_t size)
{
    struct chain_layer *h = chain_head(c), *below;

    if (size < c->data_offset)
        return cv_error(-EINVAL, "%s: resize to %llu bytes: below the data "
                        "offset %llu", c->dir, (unsigned long long)size,
                        (unsigned long long)c->data_offset);
    if (h->store)
        return cv_backend_resize(h->store, size);
    if (size < h->size && (below = held_past(c, size)))
        return cv_error(-EBUSY, "%s: resize to %llu bytes: layer %u%s%s%s "
                        "holds data past it", c->dir,
                        (unsigned long long)size, below->id,
                        below->snapshot[0] ? " (snapshot \"" : "",
                        below->snapshot, below->snapshot[0] ? "\")" : "");
    if (c->has_mirror) {
        struct cv_mirror_op op = { .type = CV_MIRROR_RESIZE, .size = size };
        void *token;
        int r;

        if ((r = chain_mirror_begin(c, &op, &token)) < 0)
            return r;
        return chain_mirror_end(c, token, head_resize(c, size));
    }
    return head_resize(c, size);
}

static int head_resize(struct cv_chain *c, uint64_t size)
{
    struct chain_layer *h = chain_head(c);

    /* The file first: a size its file system cannot hold is EFBIG, which
     * callers explain (a map for it may need more memory than there is,
     * and ENOMEM would hide the reason).  A grow whose map then finds no
     * memory is undone: the new area is holes, nothing is lost. */
    if (ftruncate(h->fd, (off_t)size) != 0)
        return cv_error(-errno, "%s: resize of layer %u to %llu bytes: %s",
                        c->dir, h->id, (unsigned long long)size,
                        strerror(errno));
    if (chain_map_resize(&h->map, size > h->size ? size : h->size) < 0) {
        if (ftruncate(h->fd, (off_t)h->size) != 0)
            return cv_error(-errno, "%s: resize: out of memory, and layer "
                            "%u not cut back to %llu bytes: %s", c->dir,
                            h->id, (unsigned long long)h->size,
                            strerror(errno));
        return cv_error(-ENOMEM, "%s: resize: out of memory", c->dir);
    }
    chain_map_resize(&h->map, size);        /* a shrink: cannot fail */
    h->size = size;
    return 0;
}

int cv_chain_resize(struct cv_chain *c, uint64_t raw_size)
{
    int r;

    shape_begin(c);
    if ((r = chain_writable(c, "resize")) == 0)
        r = resize_locked(c, raw_size);
    shape_end(c);
    return r;
}

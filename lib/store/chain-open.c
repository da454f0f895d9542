/* Opening a chain (its manifest, its layers and maps, its parents' layers
 * and formats), wrapping a raw store, closing. */
#include "chain-internal.h"
#include "core/error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int chain_alloc(const char *name, struct cv_chain **out)
{
    struct cv_chain *c = calloc(1, sizeof *c);
    pthread_rwlockattr_t attr;

    if (!c || !(c->dir = strdup(name))) {
        free(c);
        return cv_error(-ENOMEM, "%s: out of memory", name);
    }
    /* Writer-preferring: a snapshot waits for the I/O in flight, not for
     * every read that arrives after it. */
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&c->lock, &attr);
    pthread_mutex_init(&c->shape_lock, NULL);
    pthread_rwlockattr_destroy(&attr);
    c->dirfd = -1;
    c->header_fd = -1;
    c->nformats = 1;
    chain_view_init(c);
    *out = c;
    return 0;
}

void cv_chain_close(struct cv_chain *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nlayers; i++)
        chain_layer_free(c->layers[i]);
    for (unsigned f = 1; f < CV_CHAIN_MAX_FORMATS; f++)
        cv_backend_close(c->formats[f].header);     /* NULL: none */
    if (c->header_fd >= 0)
        close(c->header_fd);
    if (c->dirfd >= 0)
        close(c->dirfd);
    pthread_rwlock_destroy(&c->lock);
    pthread_mutex_destroy(&c->shape_lock);
    free(c->snapshot);
    free(c->dir);
    free(c);
}

static int listed(const struct chain_manifest *m, unsigned id)
{
    for (size_t i = 0; i < m->nlayers; i++)
        if (m->layers[i].id == id)
            return 1;
    return 0;
}

/* Layer files no manifest lists are what a change cut short left (a new
 * head never named, an old head or merged layer never removed). */
static int remove_unlisted(struct cv_chain *c)
{
    int fd = dup(c->dirfd), removed = 0, r = 0;
    struct dirent *e;
    DIR *d;

    if (fd < 0 || !(d = fdopendir(fd))) {
        if (fd >= 0)
            close(fd);
        return cv_error(-errno, "%s: listing: %s", c->dir, strerror(errno));
    }
    while ((e = readdir(d))) {
        char check[CHAIN_LAYER_NAME_MAX];
        unsigned id;

        if (!strcmp(e->d_name, CHAIN_MANIFEST_TMP)) {
            id = 0;
        } else if (sscanf(e->d_name, "layer-%6u", &id) != 1 ||
                   (snprintf(check, sizeof check, CHAIN_LAYER_FMT, id),
                    strcmp(check, e->d_name)) || listed(&c->man, id)) {
            continue;
        }
        if (unlinkat(c->dirfd, e->d_name, 0) != 0) {
            r = cv_error(-errno, "%s: removing the leftover %s: %s", c->dir,
                         e->d_name, strerror(errno));
            break;
        }
        removed = 1;
    }
    closedir(d);
    if (r == 0 && removed)
        r = chain_fsync_dir(c->dirfd, c->dir);
    return r;
}

static int add_layer(struct cv_chain *c, struct chain_layer *l)
{
    if (c->nlayers == CV_CHAIN_MAX_LAYERS) {
        chain_layer_free(l);
        return cv_error(-E2BIG, "%s: more than %d layers with its parents'",
                        c->dir, CV_CHAIN_MAX_LAYERS);
    }
    c->layers[c->nlayers++] = l;
    return 0;
}

static int open_dir(const char *dir, int *fd)
{
    *fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0)
        return cv_error(-errno, "%s: %s", dir, strerror(errno));
    return 0;
}

/* A new format: the header of volume at pdir, read-only. */
static int add_format(struct cv_chain *c, const char *volume,
                      const char *pdir, int *format)
{
    char path[4096];
    struct chain_format *f;
    int r;

    if (c->nformats == CV_CHAIN_MAX_FORMATS)
        return cv_error(-E2BIG, "%s: more than %d formats through its "
                        "parents", c->dir, CV_CHAIN_MAX_FORMATS);
    f = &c->formats[c->nformats];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", pdir, CHAIN_HEADER) >=
        sizeof path)
        return cv_error(-ENAMETOOLONG, "%s: %s: name too long", c->dir, pdir);
    if ((r = chain_header_store(path, &f->header)) < 0)
        return cv_error_prefix(r, "%s: parent %s", c->dir, volume);
    snprintf(f->volume, sizeof f->volume, "%s", volume);
    *format = (int)c->nformats++;
    return 0;
}

/* The layers of snapshot snap of sibling volume, oldest first (its own
 * parents' before its own), appended to c's. */
static int resolve(struct cv_chain *c, const char *root, const char *volume,
                   const char *snap, int format, int own_format)
{
    struct chain_manifest *m = NULL;
    char pdir[4096];
    int dirfd = -1, k, r;

    if ((size_t)snprintf(pdir, sizeof pdir, "%s/%s", root, volume) >=
        sizeof pdir)
        return cv_error(-ENAMETOOLONG, "%s: %s: name too long", c->dir, root);
    if (own_format && (r = add_format(c, volume, pdir, &format)) < 0)
        return r;
    if (!(m = malloc(sizeof *m)))
        return cv_error(-ENOMEM, "%s: out of memory", c->dir);
    if ((r = open_dir(pdir, &dirfd)) < 0 ||
        (r = chain_manifest_read(dirfd, pdir, m)) < 0) {
        r = cv_error_prefix(r, "%s: parent", c->dir);
        goto out;
    }
    if ((k = chain_manifest_find(m, snap)) < 0) {
        r = cv_error(-ENOENT, "%s: parent %s has no snapshot \"%s\"", c->dir,
                     volume, snap);
        goto out;
    }
    if (m->has_parent &&
        (r = resolve(c, root, m->parent_volume, m->parent_snapshot, format,
                     m->parent_own_format)) < 0)
        goto out;
    for (int i = 0; i <= k; i++) {
        struct chain_layer *l;

        if ((r = chain_layer_open(c, pdir, dirfd, m->layers[i].id, 0, format,
                                  0, &l)) < 0 ||
            (r = add_layer(c, l)) < 0)
            goto out;
        l->created = m->layers[i].created;
    }
out:
    if (dirfd >= 0)
        close(dirfd);
    free(m);
    return r;
}

int chain_resolve_parents(struct cv_chain *c)
{
    char *copy = strdup(c->dir);
    int r;

    if (!copy)
        return cv_error(-ENOMEM, "%s: out of memory", c->dir);
    r = resolve(c, dirname(copy), c->man.parent_volume,
                c->man.parent_snapshot, 0, c->man.parent_own_format);
    free(copy);
    c->nparent = c->nlayers;
    /* A parent's layer numbers are its directory's and may be the same as
     * this chain's own: ids callers see must name one layer each. */
    for (size_t i = 0; i < c->nparent; i++)
        c->layers[i]->id = CV_CHAIN_PARENT_ID + (unsigned)i;
    return r;
}

static int open_own(struct cv_chain *c, size_t ntop)
{
    int r;

    for (size_t i = 0; i < ntop; i++) {
        const struct chain_manifest_layer *ml = &c->man.layers[i];
        struct chain_layer *l;

        if ((r = chain_layer_open(c, c->dir, c->dirfd, ml->id, !c->readonly,
                                  0, 1, &l)) < 0 ||
            (r = add_layer(c, l)) < 0)
            return r;
        snprintf(l->snapshot, sizeof l->snapshot, "%s", ml->snapshot);
        l->created = ml->created;
        l->merging = ml->merging;
    }
    c->header_fd = openat(c->dirfd, CHAIN_HEADER,
                          (c->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (c->header_fd < 0)
        return cv_error(-errno, "%s: %s: %s", c->dir, CHAIN_HEADER,
                        strerror(errno));
    return 0;
}

/* How many own layers the view has: all, or up to snapshot's. */
static int view_layers(struct cv_chain *c, const char *snapshot, size_t *n)
{
    int i;

    if (!snapshot) {
        *n = c->man.nlayers;
        return 0;
    }
    i = chain_manifest_find(&c->man, snapshot);
    if (i < 0 || c->man.layers[i].merging)
        return cv_error(-ENOENT, i < 0 ? "%s: no snapshot \"%s\""
                        : "%s: snapshot \"%s\" is being deleted", c->dir,
                        snapshot);
    if (!(c->snapshot = strdup(snapshot)))
        return cv_error(-ENOMEM, "%s: out of memory", c->dir);
    *n = (size_t)i + 1;
    return 0;
}

int cv_chain_open(const char *dir, const char *snapshot, unsigned flags,
                  struct cv_chain **out)
{
    struct cv_chain *c;
    size_t ntop = 0;
    int r;

    if ((r = chain_alloc(dir, &c)) < 0)
        return r;
    c->readonly = (flags & CV_CHAIN_READONLY) || snapshot;
    if ((r = open_dir(dir, &c->dirfd)) < 0 ||
        (r = chain_manifest_read(c->dirfd, dir, &c->man)) < 0 ||
        (r = view_layers(c, snapshot, &ntop)) < 0)
        goto fail;
    c->data_offset = c->man.data_offset;
    if (!c->readonly && (r = remove_unlisted(c)) < 0)
        goto fail;
    if (c->man.has_parent && (r = chain_resolve_parents(c)) < 0)
        goto fail;
    if ((r = open_own(c, ntop)) < 0)
        goto fail;
    *out = c;
    return 0;
fail:
    cv_chain_close(c);
    return r;
}

int cv_chain_wrap(struct cv_backend *b, uint64_t data_offset,
                  struct cv_chain **out)
{
    struct chain_layer *l;
    struct cv_chain *c;
    int r;

    if (data_offset % CV_CHAIN_BLOCK)
        return cv_error(-EINVAL, "%s: data offset %llu is not a multiple of "
                        "%u", b->name, (unsigned long long)data_offset,
                        CV_CHAIN_BLOCK);
    if ((r = chain_alloc(b->name, &c)) < 0)
        return r;
    if ((r = chain_layer_new(c, 1, 0, &l)) < 0) {
        cv_chain_close(c);
        return r;
    }
    l->store = b;
    c->layers[c->nlayers++] = l;
    c->wrapped = b;
    c->data_offset = data_offset;
    c->man.data_offset = data_offset;
    c->man.nlayers = 1;
    c->man.layers[0].id = 1;
    c->man.next_id = 2;
    *out = c;
    return 0;
}

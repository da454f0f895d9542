/* Where a volume's files are and how they are made, found, upgraded and
 * removed: every other part of the daemon reaches a volume through the
 * chain the registry holds for it (docs/store.md). */
#include "daemon.h"
#include "core/error.h"
#include "export/export.h"
#include "log.h"
#include "meta/meta.h"
#include "store/chain.h"
#include "volumes-util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

/* The suffix of an older data directory's single-file volumes. */
#define LEGACY_SUFFIX ".img"

static int make_volumes_dir(struct cvd *d, const char *name)
{
    char dir[PATH_MAX];
    int r = 0;

    snprintf(dir, sizeof dir, "%s/volumes", d->cfg.data_dir);
    if (mkdir(dir, 0700) == 0)
        r = cvd_sync_dir_of(dir);   /* else a power cut can take it */
    else if (errno != EEXIST)
        r = cv_error(-errno, "%s: %s", dir, strerror(errno));
    return r < 0 ? cv_error_prefix(r, "volume %s", name) : 0;
}

int cvd_store_make(struct cvd *d, const struct cvd_volume_rec *v,
                   uint64_t header_room, uint64_t size,
                   const struct cv_chain_parent *parent)
{
    struct stat st;
    int r = make_volumes_dir(d, v->name);

    if (r < 0)
        return r;
    if (lstat(v->path, &st) == 0)
        return cv_error(-EEXIST, "volume %s: %s already exists with no "
                        "volume record (left over? move it away)", v->name,
                        v->path);
    r = cv_chain_create(v->path, header_room, header_room + size, parent);
    if (r == -EFBIG || r == -EINVAL)
        r = cvd_size_error(v->name, size, header_room, v->path, r);
    else if (r < 0)
        r = cv_error_prefix(r, "volume %s", v->name);
    /* Made here, so removed here: a directory left behind would refuse
     * every later create of this name. */
    if (r < 0 && r != -EEXIST)
        cv_chain_remove(v->path);
    return r;
}

int cvd_store_hide_path(int r, const char *path)
{
    char msg[CVD_ERROR_MAX], out[CVD_ERROR_MAX];
    size_t pl = strlen(path), o = 0;
    const char *p;

    if (r >= 0 || !pl)
        return r;
    snprintf(msg, sizeof msg, "%s", cv_last_error());
    /* "DIR: x" and "DIR/layer-000002: x" both say x (the volume is named
     * by the caller's prefix). */
    for (p = msg; *p && o + 1 < sizeof out;) {
        if (!strncmp(p, path, pl) && (p[pl] == ':' || p[pl] == '/')) {
            const char *q = p + pl;

            while (*q && *q != ':')
                q++;
            p = *q ? q + 1 : q;
            while (*p == ' ')
                p++;
            continue;
        }
        out[o++] = *p++;
    }
    out[o] = '\0';
    return cv_error(r, "%s", out);
}

int cvd_store_remove(const char *path)
{
    struct stat st;

    if (lstat(path, &st) < 0)
        return -errno;
    return cv_chain_remove(path);
}

int cvd_store_get(struct cvd *d, const char *name, int unlock,
                  struct cvd_export **out)
{
    if (!d->reg)
        return cv_error(-EINVAL, "volume %s: no registry", name);
    return cvd_export_get_store(d->reg, name, unlock, out);
}

int cvd_store_get_view(struct cvd *d, const char *name,
                       struct cvd_export **out)
{
    if (!d->reg)
        return cv_error(-EINVAL, "volume %s: no registry", name);
    return cvd_export_get_view(d->reg, name, out);
}

struct cv_backend *cvd_store_backend(struct cvd_export *e)
{
    return cv_chain_backend(cvd_export_chain(e));
}

int cvd_store_resize(struct cvd *d, const struct cvd_volume_rec *v,
                     uint64_t offset, uint64_t size)
{
    struct cvd_export *e = NULL;
    int r = cvd_store_get(d, v->name, 0, &e);

    if (r == 0) {
        r = cv_chain_resize(cvd_export_chain(e), offset + size);
        if (r < 0)
            r = cvd_size_error(v->name, size, offset, v->path, r);
    }
    if (r == 0)
        r = cv_chain_flush(cvd_export_chain(e));
    cvd_export_put_store(e);
    return r;
}

int cvd_store_size(struct cvd *d, const struct cvd_volume_rec *v,
                   uint64_t *size)
{
    struct cvd_export *e = NULL;
    uint64_t raw;
    int r = cvd_store_get(d, v->name, 0, &e);

    if (r < 0)
        return r;
    raw = cv_chain_size(cvd_export_chain(e));
    cvd_export_put_store(e);
    if (raw < v->data_offset + v->sector_size)
        return cv_error(-EIO, "volume %s: its image is shorter than its "
                        "header", v->name);
    *size = (raw - v->data_offset) / v->sector_size * v->sector_size;
    return 0;
}

/* NAME.img of an older data directory: adopted as the one layer of the
 * chain at the volume's own path, then the record names the chain. */
int cvd_store_upgrade(struct cvd *d, struct cvd_volume_rec *v)
{
    char chain[PATH_MAX], legacy[PATH_MAX + 8];
    size_t len = strlen(v->path), sl = strlen(LEGACY_SUFFIX);
    struct stat st;
    int r;

    if (len <= sl || strcmp(v->path + len - sl, LEGACY_SUFFIX))
        return 0;
    snprintf(legacy, sizeof legacy, "%s", v->path);
    cvd_volume_path(d, v->name, chain, sizeof chain);
    if (!strcmp(v->state, CVD_VOL_PENDING)) {
        /* No file yet: it is made as a chain, at the chain's path. */
        snprintf(v->path, sizeof v->path, "%s", chain);
        return d->meta->ops->volume_update(d->meta, v, v->state);
    }
    /* A cut after the adopt but before the record changed: the image is
     * gone into the chain, which adopt finishes. */
    if (stat(legacy, &st) < 0 && errno != ENOENT)
        return cv_error(-errno, "volume %s: %s: %s", v->name, legacy,
                        strerror(errno));
    r = cv_chain_adopt_image(legacy, chain,
                             strcmp(v->type, "plaintext") ? v->data_offset : 0);
    if (r < 0)
        return cv_error_prefix(r, "volume %s: upgrading its image to a "
                               "layer chain", v->name);
    snprintf(v->path, sizeof v->path, "%s", chain);
    r = d->meta->ops->volume_update(d->meta, v, v->state);
    if (r == 0)
        cvd_info("volume %s: its image is now a chain of one layer (%s)",
                 v->name, chain);
    return r;
}

/* The bytes a volume's files hold on disk: its chain's, or an older
 * data directory's single image file. */
int cvd_store_allocated(const char *path, uint64_t *bytes)
{
    char file[PATH_MAX + 300];
    struct dirent *de;
    struct stat st;
    DIR *dir;

    *bytes = 0;
    if (lstat(path, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode)) {
        *bytes = (uint64_t)st.st_blocks * 512;
        return 0;
    }
    dir = opendir(path);
    if (!dir)
        return -errno;
    while ((de = readdir(dir))) {
        snprintf(file, sizeof file, "%s/%s", path, de->d_name);
        if (de->d_name[0] != '.' && lstat(file, &st) == 0 &&
            S_ISREG(st.st_mode))
            *bytes += (uint64_t)st.st_blocks * 512;
    }
    closedir(dir);
    return 0;
}

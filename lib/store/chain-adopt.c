/* Making and removing chains: a new one (cv_chain_create), a single-file
 * image adopted as one (cv_chain_adopt_image, crash-safe by a DIR.adopting
 * directory that is renamed into place last), removal. */
#include "chain-internal.h"
#include "core/error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ADOPTING_SUFFIX ".adopting"

/* fsync of the directory holding path. */
static int sync_parent(const char *path)
{
    char *copy = strdup(path);
    int fd, r = 0;

    if (!copy)
        return cv_error(-ENOMEM, "%s: out of memory", path);
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
        r = cv_error(-errno, "%s: syncing its directory: %s", path,
                     strerror(errno));
    if (fd >= 0)
        close(fd);
    free(copy);
    return r;
}

/* A file of size bytes (a hole), synced. */
static int make_sparse(int dirfd, const char *dir, const char *name,
                       uint64_t size)
{
    int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int r = 0;

    if (fd < 0)
        return cv_error(-errno, "%s: creating %s: %s", dir, name,
                        strerror(errno));
    if (ftruncate(fd, (off_t)size) != 0 || fsync(fd) != 0)
        r = cv_error(-errno, "%s: %s: %s", dir, name, strerror(errno));
    close(fd);
    return r;
}

static int check_parent(const char *dir, const struct cv_chain_parent *p,
                        struct chain_manifest *m)
{
    char *copy = strdup(dir), path[4096];
    struct chain_manifest *pm = malloc(sizeof *pm);
    int fd = -1, i, r = 0;

    if (!copy || !pm) {
        r = cv_error(-ENOMEM, "%s: out of memory", dir);
        goto out;
    }
    if (!chain_name_ok(p->volume) || !chain_name_ok(p->snapshot)) {
        r = cv_error(-EINVAL, "%s: parent \"%s@%s\" is not a valid name", dir,
                     p->volume, p->snapshot);
        goto out;
    }
    snprintf(path, sizeof path, "%s/%s", dirname(copy), p->volume);
    if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        r = cv_error(-errno, "%s: parent %s: %s", dir, path, strerror(errno));
        goto out;
    }
    if ((r = chain_manifest_read(fd, path, pm)) < 0) {
        r = cv_error_prefix(r, "%s: parent", dir);
        goto out;
    }
    i = chain_manifest_find(pm, p->snapshot);
    if (i < 0 || pm->layers[i].merging) {
        r = cv_error(-ENOENT, "%s: parent %s has no snapshot \"%s\"", dir,
                     p->volume, p->snapshot);
        goto out;
    }
    m->has_parent = 1;
    snprintf(m->parent_volume, sizeof m->parent_volume, "%s", p->volume);
    snprintf(m->parent_snapshot, sizeof m->parent_snapshot, "%s",
             p->snapshot);
    m->parent_own_format = !!p->own_format;
out:
    if (fd >= 0)
        close(fd);
    free(pm);
    free(copy);
    return r;
}

static int create_files(const char *dir, uint64_t data_offset,
                        uint64_t raw_size, struct chain_manifest *m)
{
    char layer[CHAIN_LAYER_NAME_MAX];
    int fd, r;

    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return cv_error(-errno, "%s: %s", dir, strerror(errno));
    snprintf(layer, sizeof layer, CHAIN_LAYER_FMT, 1u);
    m->data_offset = data_offset;
    m->next_id = 2;
    m->nlayers = 1;
    m->layers[0].id = 1;
    if ((r = make_sparse(fd, dir, CHAIN_HEADER, data_offset)) == 0 &&
        (r = make_sparse(fd, dir, layer, raw_size)) == 0)
        r = chain_manifest_write(fd, dir, m);    /* syncs dir too */
    close(fd);
    return r;
}

int cv_chain_create(const char *dir, uint64_t data_offset, uint64_t raw_size,
                    const struct cv_chain_parent *parent)
{
    struct chain_manifest *m;
    int r;

    if (data_offset % CV_CHAIN_BLOCK || raw_size < data_offset)
        return cv_error(-EINVAL, "%s: data offset %llu must be a multiple of "
                        "%u within the size %llu", dir,
                        (unsigned long long)data_offset, CV_CHAIN_BLOCK,
                        (unsigned long long)raw_size);
    if (!(m = calloc(1, sizeof *m)))
        return cv_error(-ENOMEM, "%s: out of memory", dir);
    if (parent && (r = check_parent(dir, parent, m)) < 0)
        goto out;
    if (mkdir(dir, 0700) != 0) {
        r = cv_error(-errno, "%s: %s", dir, strerror(errno));
        goto out;
    }
    if ((r = create_files(dir, data_offset, raw_size, m)) < 0) {
        char msg[512];

        /* The cause, not what the cleanup may say. */
        snprintf(msg, sizeof msg, "%s", cv_last_error());
        cv_chain_remove(dir);
        r = cv_error(r, "%s", msg);
    }
out:
    free(m);
    return r;
}

/* ---- adoption ---- */

static int copy_header(int img, const char *image, int dirfd,
                       const char *tmp, uint64_t len)
{
    static const char name[] = CHAIN_HEADER ".tmp";
    char buf[65536];
    uint64_t done = 0;
    int fd, r = 0;

    fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return cv_error(-errno, "%s: %s: %s", tmp, name, strerror(errno));
    while (r == 0 && done < len) {
        size_t n = len - done < sizeof buf ? (size_t)(len - done) : sizeof buf;
        ssize_t got = pread(img, buf, n, (off_t)done);

        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            r = cv_error(got < 0 ? -errno : -EIO, "%s: reading its header: %s",
                         image, got < 0 ? strerror(errno) : "short file");
        else if (write(fd, buf, (size_t)got) != got)
            r = cv_error(-EIO, "%s: %s: %s", tmp, name, strerror(errno));
        else
            done += (uint64_t)got;
    }
    if (r == 0 && fsync(fd) != 0)
        r = cv_error(-errno, "%s: %s: fsync: %s", tmp, name, strerror(errno));
    close(fd);
    if (r == 0 && renameat(dirfd, name, dirfd, CHAIN_HEADER) != 0)
        r = cv_error(-errno, "%s: %s: %s", tmp, CHAIN_HEADER, strerror(errno));
    return r;
}

/* Step 1 (image still in place): header and manifest into tmp, then the
 * image renamed in as its layer.  Redone whole after a cut before the
 * rename. */
static int adopt_move(const char *image, const char *tmp, int dirfd,
                      uint64_t data_offset)
{
    char layer[CHAIN_LAYER_NAME_MAX];
    struct chain_manifest *m;
    struct stat st;
    int img, r;

    if ((img = open(image, O_RDONLY | O_CLOEXEC)) < 0)
        return cv_error(-errno, "%s: %s", image, strerror(errno));
    if (fstat(img, &st) != 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size < data_offset) {
        close(img);
        return cv_error(-EINVAL, "%s: not a regular file of at least %llu "
                        "bytes", image, (unsigned long long)data_offset);
    }
    r = copy_header(img, image, dirfd, tmp, data_offset);
    close(img);
    if (r < 0)
        return r;
    if (!(m = calloc(1, sizeof *m)))
        return cv_error(-ENOMEM, "%s: out of memory", tmp);
    m->data_offset = data_offset;
    m->next_id = 2;
    m->nlayers = 1;
    m->layers[0].id = 1;
    r = chain_manifest_write(dirfd, tmp, m);     /* syncs tmp */
    free(m);
    if (r < 0)
        return r;
    snprintf(layer, sizeof layer, CHAIN_LAYER_FMT, 1u);
    if (renameat(AT_FDCWD, image, dirfd, layer) != 0)
        return cv_error(-errno, "%s: moving it into %s: %s", image, tmp,
                        strerror(errno));
    if ((r = chain_fsync_dir(dirfd, tmp)) < 0)
        return r;
    return sync_parent(image);
}

/* Step 2 (the layer in tmp): its header area punched, then tmp renamed
 * into place.  Both redone harmlessly after a cut. */
static int adopt_finish(const char *tmp, const char *dir, int dirfd,
                        uint64_t data_offset)
{
    char layer[CHAIN_LAYER_NAME_MAX];
    int fd, r = 0;

    snprintf(layer, sizeof layer, CHAIN_LAYER_FMT, 1u);
    if ((fd = openat(dirfd, layer, O_RDWR | O_CLOEXEC)) < 0)
        return cv_error(-errno, "%s: %s: %s", tmp, layer, strerror(errno));
    if (data_offset &&
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                  (off_t)data_offset) != 0)
        r = cv_error(-errno, "%s: %s: punching its header: %s", tmp, layer,
                     strerror(errno));
    if (r == 0 && fsync(fd) != 0)
        r = cv_error(-errno, "%s: %s: fsync: %s", tmp, layer,
                     strerror(errno));
    close(fd);
    if (r == 0 && rename(tmp, dir) != 0)
        r = cv_error(-errno, "%s: renaming it to %s: %s", tmp, dir,
                     strerror(errno));
    return r ? r : sync_parent(dir);
}

static int exists(const char *path, int *yes)
{
    struct stat st;

    if (lstat(path, &st) == 0) {
        *yes = 1;
        return 0;
    }
    *yes = 0;
    return errno == ENOENT ? 0 : cv_error(-errno, "%s: %s", path,
                                          strerror(errno));
}

int cv_chain_adopt_image(const char *image, const char *dir,
                         uint64_t data_offset)
{
    char tmp[4096], layer[CHAIN_LAYER_NAME_MAX];
    int have_dir, have_img, have_layer, dirfd = -1, r;

    if (data_offset % CV_CHAIN_BLOCK)
        return cv_error(-EINVAL, "%s: data offset %llu is not a multiple of "
                        "%u", image, (unsigned long long)data_offset,
                        CV_CHAIN_BLOCK);
    if ((size_t)snprintf(tmp, sizeof tmp, "%s" ADOPTING_SUFFIX, dir) >=
        sizeof tmp)
        return cv_error(-ENAMETOOLONG, "%s: name too long", dir);
    if ((r = exists(dir, &have_dir)) < 0 ||
        (r = exists(image, &have_img)) < 0)
        return r;
    if (have_dir)   /* done before; the image can only be another file */
        return have_img ? cv_error(-EEXIST, "%s: %s exists already", image,
                                   dir) : 0;
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return cv_error(-errno, "%s: %s", tmp, strerror(errno));
    if ((dirfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return cv_error(-errno, "%s: %s", tmp, strerror(errno));
    snprintf(layer, sizeof layer, CHAIN_LAYER_FMT, 1u);
    have_layer = faccessat(dirfd, layer, F_OK, 0) == 0;
    if (!have_layer && !have_img)
        r = cv_error(-ENOENT, "%s: no such image (nor %s)", image, dir);
    else if (!have_layer)
        r = adopt_move(image, tmp, dirfd, data_offset);
    if (r == 0)
        r = adopt_finish(tmp, dir, dirfd, data_offset);
    close(dirfd);
    return r;
}

/* ---- removal ---- */

static int is_ours(const char *name)
{
    unsigned id;
    char check[CHAIN_LAYER_NAME_MAX];

    if (!strcmp(name, CHAIN_MANIFEST) || !strcmp(name, CHAIN_MANIFEST_TMP) ||
        !strcmp(name, CHAIN_HEADER) || !strcmp(name, CHAIN_HEADER ".tmp"))
        return 1;
    if (sscanf(name, "layer-%6u", &id) != 1)
        return 0;
    snprintf(check, sizeof check, CHAIN_LAYER_FMT, id);
    return !strcmp(check, name);
}

static int remove_files(const char *dir, int dirfd)
{
    int fd = dup(dirfd), r = 0;
    struct dirent *e;
    DIR *d;

    if (fd < 0 || !(d = fdopendir(fd))) {
        if (fd >= 0)
            close(fd);
        return cv_error(-errno, "%s: listing: %s", dir, strerror(errno));
    }
    while ((e = readdir(d)))
        if (is_ours(e->d_name) && unlinkat(dirfd, e->d_name, 0) != 0 &&
            errno != ENOENT) {
            r = cv_error(-errno, "%s: removing %s: %s", dir, e->d_name,
                         strerror(errno));
            break;
        }
    closedir(d);
    return r;
}

int cv_chain_remove(const char *dir)
{
    int dirfd, r;

    if ((dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return errno == ENOENT ? 0 : cv_error(-errno, "%s: %s", dir,
                                              strerror(errno));
    /* The manifest first: a cut leaves no chain that names missing
     * files, only a directory that removing again finishes. */
    if (unlinkat(dirfd, CHAIN_MANIFEST, 0) != 0 && errno != ENOENT)
        r = cv_error(-errno, "%s: removing %s: %s", dir, CHAIN_MANIFEST,
                     strerror(errno));
    else
        r = remove_files(dir, dirfd);
    close(dirfd);
    if (r == 0 && rmdir(dir) != 0)
        r = cv_error(-errno, "%s: removing the directory: %s", dir,
                     strerror(errno));
    return r ? r : sync_parent(dir);
}

/* Raw LUKS images in and out (RBD: "existing LUKS data, created outside
 * of RBD, can be imported").  Import adopts a LUKS1/LUKS2 image file as a
 * volume: its header and its allocated data are copied into a new chain,
 * never re-encrypted.  Export writes a volume or snapshot as one raw
 * image that cryptsetup opens: held blocks as they are, holes as
 * encrypted zeros (or left as holes with sparse, which then read as noise
 * through dm-crypt).  Both are jobs with progress. */
#include "snapshots.h"
#include "cluster/cluster.h"
#include "daemon.h"
#include "core/error.h"
#include "core/secmem.h"
#include "export/export.h"
#include "image/volume.h"
#include "jobs.h"
#include "log.h"
#include "luks/luks.h"
#include "store/backend.h"
#include "store/chain.h"
#include "volumes.h"
#include "volumes-util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PIECE (1024 * 1024)

/* --- Import ------------------------------------------------------------ */

struct import {
    char name[CVD_NAME_MAX + 1];
    char secret[CVD_NAME_MAX + 1];
    char file[PATH_MAX];
    char chain[PATH_MAX];       /* the ".creating" chain */
    char final[PATH_MAX];
    uint64_t data_offset, raw;
};

/* The image must be LUKS with AES-XTS (the data path's cipher), its data
 * offset whole 4 KiB blocks, and secret must open it: all checked before
 * anything is made. */
static int check_image(const char *name, const char *file,
                       const char *secret, const struct cv_secret *pass,
                       struct cv_luks_info *info)
{
    struct cv_backend *b = NULL;
    struct cv_luks *l = NULL;
    unsigned char *key = NULL;
    size_t keylen = 0;
    int r = cv_backend_file_open(file, 1, &b);

    if (r < 0)
        return cv_error_prefix(r, "volume %s: import", name);
    r = cv_luks_probe(b);
    if (r == 0)
        r = cv_error(-EINVAL, "volume %s: %s is not a LUKS image", name,
                     file);
    if (r > 0 && (r = cv_luks_load(b, &l)) < 0)
        cv_error_prefix(r, "volume %s: import", name);
    if (r == 0)
        r = cv_luks_info(l, info);
    if (r == 0 && strcmp(info->cipher, "aes-xts-plain64"))
        r = cv_error(-EINVAL, "volume %s: %s uses cipher %s; cryptvol serves "
                     "aes-xts-plain64 only", name, file, info->cipher);
    if (r == 0 && info->data_offset % CV_CHAIN_BLOCK)
        r = cv_error(-EINVAL, "volume %s: %s's data starts at %llu bytes, "
                     "not a multiple of 4 KiB (the store's block)", name,
                     file, (unsigned long long)info->data_offset);
    if (r == 0)
        r = cv_luks_unlock(l, pass->data, pass->len, &key, &keylen);
    if (r == -CV_EWRONGKEY)
        r = cv_error(r, "volume %s: wrong key: secret \"%s\" opens no "
                     "keyslot of %s", name, secret, file);
    cv_secmem_free(key, keylen);
    cv_luks_free(l);
    cv_backend_close(b);
    return r < 0 ? r : 0;
}

/* Copies [off, end) of the image's fd into the chain, allocated ranges
 * only (SEEK_DATA), in pieces, reporting progress. */
static int copy_in(int fd, struct cv_chain *c, uint64_t off, uint64_t end,
                   struct cvd_job *job)
{
    char *buf = malloc(PIECE);
    uint64_t done = 0;
    int r = buf ? 0 : cv_error(-ENOMEM, "import: out of memory");

    while (r == 0 && off < end) {
        off_t data = lseek(fd, (off_t)off, SEEK_DATA);
        off_t hole;
        size_t n;

        if (data < 0 || (uint64_t)data >= end)
            break;              /* ENXIO: no data past off */
        hole = lseek(fd, data, SEEK_HOLE);
        off = (uint64_t)data / CV_CHAIN_BLOCK * CV_CHAIN_BLOCK;
        n = (size_t)((uint64_t)hole - off < PIECE ? (uint64_t)hole - off :
                     PIECE);
        if (off + n > end)
            n = (size_t)(end - off);
        n = (n + CV_CHAIN_BLOCK - 1) / CV_CHAIN_BLOCK * CV_CHAIN_BLOCK;
        if (pread(fd, buf, n, (off_t)off) < 0)
            r = cv_error(-errno, "import: reading: %s", strerror(errno));
        if (r == 0)
            r = cv_chain_write(c, buf, n, off, 0);
        off += n;
        done += n;
        if (r == 0)
            r = cvd_job_progress(job, done);
    }
    free(buf);
    return r;
}

/* With cluster encryption on, the adopted header gets its KEK token (a
 * second keyslot, opened by the KEK) like every volume made here. */
static int import_kek(struct cvd *d, const struct import *im,
                      struct cv_chain *c)
{
    struct cv_secret pass = { 0 };
    struct cvd_volume_rec v;
    struct cv_luks *l = NULL;
    int r = cvd_volume_get(d, im->name, &v);

    if (r < 0 || !v.kek_gen)
        return r;
    r = cvd_meta_secret_value(d->meta, im->secret, &pass);
    if (r == 0)
        r = cv_luks_load(cv_chain_backend(c), &l);
    if (r == 0)
        r = cvd_volume_enroll_kek(d, l, &pass, &v);
    if (r == 0)
        r = d->meta->ops->volume_update(d->meta, &v, v.state);
    cv_luks_free(l);
    cv_secret_free(&pass);
    return r;
}

static int import_run(struct cvd *d, struct cvd_job *job, void *arg)
{
    struct import *im = arg;
    struct cv_chain *c = NULL;
    struct cvd_volume_rec v;
    char *hdr = malloc(im->data_offset);
    int fd = open(im->file, O_RDONLY | O_CLOEXEC);
    int r = fd < 0 ? cv_error(-errno, "volume %s: import: %s: %s", im->name,
                              im->file, strerror(errno)) : 0;

    if (r == 0 && !hdr)
        r = cv_error(-ENOMEM, "volume %s: out of memory", im->name);
    if (r == 0)
        r = cv_chain_open(im->chain, NULL, 0, &c);
    if (r == 0 && pread(fd, hdr, im->data_offset, 0) !=
                  (ssize_t)im->data_offset)
        r = cv_error(-EIO, "volume %s: import: reading the header of %s",
                     im->name, im->file);
    if (r == 0)
        r = cv_backend_pwrite(cv_chain_backend(c), hdr, im->data_offset, 0, 0);
    if (r == 0)
        r = import_kek(d, im, c);
    if (r == 0)
        r = copy_in(fd, c, im->data_offset, im->raw, job);
    if (r == 0)
        r = cv_chain_flush(c);
    cv_chain_close(c);
    if (r == 0)
        r = cvd_rename_file(im->chain, im->final, 1);
    if (r == 0)
        r = cvd_volume_get(d, im->name, &v);
    if (r == 0) {
        snprintf(v.state, sizeof v.state, CVD_VOL_READY);
        r = d->meta->ops->volume_update(d->meta, &v, CVD_VOL_IMPORTING);
    }
    if (r < 0) {
        char first[CVD_ERROR_MAX];

        snprintf(first, sizeof first, "%s", cv_last_error());
        cvd_store_remove(im->chain);
        cvd_undo(first, cvd_space_volume_remove(d, im->name));
    }
    if (fd >= 0)
        close(fd);
    free(hdr);
    return r;
}

static void import_record(struct cvd *d, const char *name, const char *secret,
                          const struct cv_luks_info *info,
                          struct cvd_volume_rec *v)
{
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", name);
    v->size = info->effective_size;
    snprintf(v->type, sizeof v->type, "luks%d", info->luks_version);
    snprintf(v->cipher, sizeof v->cipher, "%s", info->cipher);
    snprintf(v->uuid, sizeof v->uuid, "%s", info->uuid);
    v->key_bits = info->key_bits;
    v->sector_size = info->sector_size;
    v->data_offset = info->data_offset;
    snprintf(v->secret, sizeof v->secret, "%s", secret);
    cvd_volume_path(d, name, v->path, sizeof v->path);
    snprintf(v->state, sizeof v->state, CVD_VOL_IMPORTING);
    v->created = (int64_t)time(NULL);
}

int cvd_volume_import(struct cvd *d, const char *name, const char *file,
                      const char *secret, struct cvd_volume_rec *out)
{
    struct cv_secret pass = { 0 };
    struct cv_luks_info info;
    struct cvd_volume_rec v;
    struct import *im = NULL;
    uint32_t kek_gen = 0;
    int r = cvd_check_name("volume", name);

    if (r == 0)
        r = cvd_check_name("secret", secret);
    if (r == 0 && file[0] != '/')
        r = cv_error(-EINVAL, "volume %s: import: %s is not an absolute "
                     "path", name, file);
    if (r == 0 && (r = cvd_meta_secret_value(d->meta, secret, &pass)) ==
        -ENOENT)
        r = cv_error(-ENOENT, "volume %s: secret \"%s\" does not exist",
                     name, secret);
    if (r == 0)
        r = check_image(name, file, secret, &pass, &info);
    cv_secret_free(&pass);
    if (r == 0) {
        struct cvd_volume_req req = { .name = name, .secret = secret,
                                      .luks_version = info.luks_version };
        r = cvd_volume_cluster_check(d, &req, &kek_gen);
    }
    if (r < 0)
        return r;
    im = calloc(1, sizeof *im);
    if (!im)
        return cv_error(-ENOMEM, "volume %s: out of memory", name);
    import_record(d, name, secret, &info, &v);
    v.kek_gen = kek_gen;
    cvd_node_place(d, &v);
    snprintf(im->name, sizeof im->name, "%s", name);
    snprintf(im->secret, sizeof im->secret, "%s", secret);
    snprintf(im->file, sizeof im->file, "%s", file);
    snprintf(im->final, sizeof im->final, "%s", v.path);
    im->data_offset = info.data_offset;
    im->raw = info.raw_size;
    r = cvd_aside_path(v.path, CVD_CREATING_SUFFIX, im->chain,
                       sizeof im->chain);
    if (r == 0)
        r = d->meta->ops->volume_add(d->meta, &v, NULL);
    if (r < 0)
        goto fail;
    snprintf(v.path, sizeof v.path, "%s", im->chain);
    r = cvd_store_make(d, &v, info.data_offset, info.effective_size, NULL);
    snprintf(v.path, sizeof v.path, "%s", im->final);
    if (r < 0) {
        char first[CVD_ERROR_MAX];

        snprintf(first, sizeof first, "%s", cv_last_error());
        cvd_undo(first, cvd_space_volume_remove(d, name));
        goto fail;
    }
    r = cvd_job_start(d, name, CVD_JOB_IMPORT, file, info.raw_size -
                      info.data_offset, import_run, im, free);
    im = NULL;                  /* the job's (freed on failure too) */
    if (r == 0 && out)
        *out = v;
    if (r == 0)
        cvd_info("volume %s: importing %s", name, file);
    return r;
fail:
    free(im);
    return r;
}

/* --- Export ------------------------------------------------------------ */

struct export {
    char name[2 * CVD_NAME_MAX + 2];    /* "VOL" or "VOL@SNAP" */
    char file[PATH_MAX];
    int sparse;
};

/* One run of the view into fd at raw offset off: held blocks as they are,
 * holes as encrypted zeros (plaintext: zeros) unless sparse. */
static int export_run(struct cv_chain *c, struct cv_volume *vol, int fd,
                      char *buf, uint64_t off, size_t n, int held, int sparse,
                      uint64_t data_offset)
{
    int r = 0;

    if (!held && sparse)
        return 0;
    if (held) {
        r = cv_chain_read(c, buf, n, off, CV_CHAIN_TOP, NULL, NULL);
    } else {
        memset(buf, 0, n);
        if (vol)
            r = cv_volume_encrypt(vol, buf, n, off - data_offset);
    }
    if (r == 0 && pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
        r = cv_error(errno ? -errno : -EIO, "writing: %s", strerror(errno));
    return r;
}

static int copy_out(struct cv_chain *c, struct cv_volume *vol, int fd,
                    int sparse, struct cvd_job *job)
{
    uint64_t off = cv_chain_data_offset(c), end = cv_chain_size(c);
    uint64_t start = off;
    char *buf = malloc(PIECE);
    int r = buf ? 0 : cv_error(-ENOMEM, "export: out of memory");

    while (r == 0 && off < end) {
        uint64_t run = 0, len = end - off < PIECE ? end - off : PIECE;
        int fmt = 0;
        int held = cv_chain_lookup(c, off, len, CV_CHAIN_TOP, &run, &fmt);

        if (held < 0 && held != CV_CHAIN_HOLE) {
            r = held;
            break;
        }
        r = export_run(c, vol, fd, buf, off, (size_t)run,
                       held != CV_CHAIN_HOLE, sparse,
                       cv_chain_data_offset(c));
        off += run;
        if (r == 0)
            r = cvd_job_progress(job, off - start);
    }
    free(buf);
    return r;
}

static int copy_header_out(struct cv_chain *c, int fd)
{
    uint64_t len = cv_chain_data_offset(c);
    char *hdr = malloc(len ? len : 1);
    int r = hdr ? cv_backend_pread(cv_chain_backend(c), hdr, len, 0) :
                  cv_error(-ENOMEM, "export: out of memory");

    if (r == 0 && pwrite(fd, hdr, len, 0) != (ssize_t)len)
        r = cv_error(errno ? -errno : -EIO, "writing the header: %s",
                     strerror(errno));
    free(hdr);
    return r;
}

static int export_job(struct cvd *d, struct cvd_job *job, void *arg)
{
    struct export *ex = arg;
    struct cvd_export *e = NULL;
    struct cv_chain *c;
    int fd = -1;
    int r = cvd_store_get(d, ex->name, 1, &e);

    if (r < 0)
        return r;
    c = cvd_export_chain(e);
    fd = open(ex->file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
              0600);
    if (fd < 0)
        r = cv_error(-errno, "%s", strerror(errno));
    if (r == 0)
        r = copy_header_out(c, fd);
    if (r == 0)
        r = copy_out(c, cvd_export_volume(e), fd, ex->sparse, job);
    if (r == 0 && ftruncate(fd, (off_t)cv_chain_size(c)) < 0)
        r = cv_error(-errno, "setting its size: %s", strerror(errno));
    if (r == 0 && fsync(fd) < 0)
        r = cv_error(-errno, "syncing: %s", strerror(errno));
    if (fd >= 0)
        close(fd);
    if (r < 0 && fd >= 0)
        unlink(ex->file);       /* ours, and incomplete */
    cvd_export_put_store(e);
    return r < 0 ? cv_error_prefix(r, "volume %s: export to %s", ex->name,
                                   ex->file) : 0;
}

int cvd_volume_export(struct cvd *d, const char *name, const char *file,
                      const char *snap, int sparse)
{
    struct cvd_export *e = NULL;
    struct cvd_volume_rec v;
    struct export *ex;
    struct stat st;
    int r = cvd_volume_get(d, name, &v);

    if (r == 0 && snap)
        r = cvd_check_name("snapshot", snap);
    if (r == 0 && !cvd_state_served(v.state))
        r = cvd_state_error(&v);
    if (r == 0 && file[0] != '/')
        r = cv_error(-EINVAL, "volume %s: export: %s is not an absolute "
                     "path", name, file);
    if (r == 0 && lstat(file, &st) == 0)
        r = cv_error(-EEXIST, "volume %s: export: %s already exists", name,
                     file);
    if (r < 0)
        return r;
    ex = calloc(1, sizeof *ex);
    if (!ex)
        return cv_error(-ENOMEM, "volume %s: out of memory", name);
    snprintf(ex->name, sizeof ex->name, "%s%s%s", name, snap ? "@" : "",
             snap ? snap : "");
    snprintf(ex->file, sizeof ex->file, "%s", file);
    ex->sparse = sparse;
    /* One raw image has one header: a clone's parent blocks are of
     * another key until flattened. */
    r = cvd_store_get(d, ex->name, 0, &e);
    if (r == -ENOENT && snap)
        r = cv_error(-ENOENT, "volume %s: no snapshot \"%s\"", name, snap);
    if (r == 0 && cv_chain_formats(cvd_export_chain(e)) > 1)
        r = cv_error(-EBUSY, "volume %s: a clone with its own format reads "
                     "its parent's blocks with the parent's key; one raw "
                     "image cannot hold both: flatten it first", name);
    cvd_export_put_store(e);
    if (r < 0) {
        free(ex);
        return r;
    }
    r = cvd_job_start(d, name, CVD_JOB_EXPORT, file, v.size, export_job, ex,
                      free);
    if (r == 0)
        cvd_info("volume %s: exporting%s%s to %s", name, snap ? " snapshot " :
                 "", snap ? snap : "", file);
    return r;
}

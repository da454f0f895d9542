#include "volumes-util.h"
#include "daemon.h"
#include "core/error.h"
#include "core/size.h"
#include "log.h"
#include "luks/luks.h"
#include "meta/meta.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cvd_check_name(const char *what, const char *name)
{
    char shown[CVD_NAME_MAX + 4];
    size_t i;

    if (cvd_name_valid(name))
        return 0;
    /* The name came from a client: show it safely, on one line. */
    for (i = 0; name[i] && i < CVD_NAME_MAX; i++)
        shown[i] = name[i] >= 0x20 && name[i] < 0x7f && name[i] != '"' ?
                   name[i] : '?';
    snprintf(shown + i, sizeof shown - i, "%s", name[i] ? "..." : "");
    return cv_error(-EINVAL, "%s \"%s\": not a valid name (1 to %d letters, "
                    "digits, '.', '_' or '-', starting with a letter or digit)",
                    what, shown, CVD_NAME_MAX);
}

/* Absolute, since the record outlives this process and its working
 * directory. */
void cvd_volume_path(struct cvd *d, const char *name, char *buf, size_t len)
{
    char cwd[PATH_MAX] = "";

    if (d->cfg.data_dir[0] != '/' && !getcwd(cwd, sizeof cwd))
        cwd[0] = '\0';
    snprintf(buf, len, "%s%s%s/volumes/%s.img", cwd, cwd[0] ? "/" : "",
             d->cfg.data_dir, name);
}

static int sync_dir(const char *path)
{
    char copy[PATH_MAX];
    int fd, r = 0;

    snprintf(copy, sizeof copy, "%s", path);
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        r = cv_error(-errno, "%s: syncing its directory: %s", path,
                     strerror(errno));
    if (fd >= 0)
        close(fd);
    return r;
}

/* A key derivation at least this long is logged at info: it is what a
 * create or rekey with a passphrase's slow KDF waits for. */
#define SLOW_KDF_S 0.5

void cvd_log_keyslot(struct cv_luks *l, const char *volume, int keyslot,
                     const char *whose)
{
    double s = cv_luks_keyslot_seconds(l);
    struct cv_pbkdf k;
    char mem[48] = "";

    if (cv_luks_keyslot_pbkdf(l, keyslot, &k) < 0) {
        cvd_warn("volume %s: %s", volume, cv_last_error());
        cv_clear_error();
        return;
    }
    if (k.memory_kib)
        snprintf(mem, sizeof mem, ", %u KiB", k.memory_kib);
    cvd_log(s >= SLOW_KDF_S ? LOG_INFO : LOG_DEBUG, "volume %s: keyslot %d "
            "for %s: %s key derivation (%u iterations%s) took %.2f s",
            volume, keyslot, whose, k.type ? k.type : "?", k.iterations, mem,
            s);
}

int cvd_size_error(const char *name, uint64_t size, const char *path,
                   int err)
{
    char human[32], dir[PATH_MAX];

    cv_format_size(size, human, sizeof human);
    snprintf(dir, sizeof dir, "%s", path);
    if (err == -EFBIG || err == -EINVAL)
        return cv_error(-EFBIG, "volume %s: a size of %s is too large for "
                        "the file system of %s (%s); choose a smaller size",
                        name, human, dirname(dir), strerror(EFBIG));
    return cv_error(err, "volume %s: %s: setting its size to %s: %s", name,
                    path, human, strerror(-err));
}

int cvd_create_file(struct cvd *d, const struct cvd_volume_rec *v,
                    uint64_t size)
{
    char dir[PATH_MAX];
    int fd, r = 0;

    snprintf(dir, sizeof dir, "%s/volumes", d->cfg.data_dir);
    if (mkdir(dir, 0700) == 0)
        r = sync_dir(dir);      /* else a power cut can take the folder */
    else if (errno != EEXIST)
        return cv_error(-errno, "volume %s: %s: %s", v->name, dir,
                        strerror(errno));
    if (r < 0)
        return cv_error_prefix(r, "volume %s", v->name);
    fd = open(v->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
              0600);
    if (fd < 0 && errno == EEXIST)
        return cv_error(-EEXIST, "volume %s: %s already exists with no "
                        "volume record (left over? move it away)", v->name,
                        v->path);
    if (fd < 0)
        return cv_error(-errno, "volume %s: %s: %s", v->name, v->path,
                        strerror(errno));
    if (size && ftruncate(fd, (off_t)size) < 0)
        r = cvd_size_error(v->name, size, v->path, -errno);
    close(fd);
    /* Made here, so removed here: a file left behind would refuse every
     * later create of this name. */
    if (r < 0)
        unlink(v->path);
    return r;
}

int cvd_aside_path(const char *path, const char *suffix, char *buf,
                   size_t len)
{
    if ((size_t)snprintf(buf, len, "%s%s", path, suffix) >= len)
        return cv_error(-ENAMETOOLONG, "%s%s: path too long", path, suffix);
    return 0;
}

int cvd_rename_file(const char *from, const char *to, int noreplace)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to,
                  noreplace ? RENAME_NOREPLACE : 0) < 0)
        return cv_error(-errno, "renaming %s to %s: %s", from, to,
                        strerror(errno));
    return sync_dir(to);
}

int cvd_remove_file(const char *path)
{
    if (unlink(path) < 0)
        return -errno;
    return sync_dir(path);
}

int cvd_sync_data(const char *path)
{
    int fd, r = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        r = cv_error(-errno, "%s: sync: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    return r;
}

int cvd_sync_file(const char *path)
{
    int r = cvd_sync_data(path);

    return r < 0 ? r : sync_dir(path);
}

int cvd_resize_file(const char *name, const char *path, uint64_t size)
{
    if (truncate(path, (off_t)size) < 0)
        return cvd_size_error(name, size, path, -errno);
    return cvd_sync_file(path);
}

int cvd_in_use_error(const char *name, const char *doing)
{
    return cv_error(-EBUSY, "volume %s: in use by an NBD client; %s it "
                    "needs every client disconnected", name, doing);
}

void cvd_undo(const char *first, int undo)
{
    if (undo < 0) {
        cvd_err("undoing after \"%s\": %s", first, cv_last_error());
        cv_error(undo, "%s", first);
    }
}

const char *cvd_state_shown(const char *state)
{
    static const char *const names[][2] = {
        { CVD_VOL_READY, "Available" }, { CVD_VOL_PENDING, "Pending" },
        { CVD_VOL_CREATING, "Creating" }, { CVD_VOL_RESIZING, "Resizing" },
        { CVD_VOL_DELETING, "Deleting" }, { CVD_VOL_REKEYING, "Rekeying" },
    };
    size_t i;

    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(state, names[i][0]))
            return names[i][1];
    return state;   /* from a newer cryptvold: shown as stored */
}

void cvd_state_reason(const struct cvd_volume_rec *v, char *buf, size_t len)
{
    if (!strcmp(v->state, CVD_VOL_PENDING))
        snprintf(buf, len, "waiting for secret \"%s\"", v->wait_secret);
    else if (!strcmp(v->state, CVD_VOL_REKEYING))
        snprintf(buf, len, "moving to secret \"%s\"", v->wait_secret);
    else if (strcmp(v->state, CVD_VOL_READY))
        snprintf(buf, len, "another request is working on it");
    else
        snprintf(buf, len, "%s", "");
}

int cvd_state_error(const struct cvd_volume_rec *v)
{
    char why[CVD_NAME_MAX + 64];

    cvd_state_reason(v, why, sizeof why);
    if (!strcmp(v->state, CVD_VOL_PENDING))
        return cv_error(-EBUSY, "volume %s: is Pending: %s", v->name, why);
    return cv_error(-EBUSY, "volume %s: is %s (%s)", v->name,
                    cvd_state_shown(v->state), why);
}

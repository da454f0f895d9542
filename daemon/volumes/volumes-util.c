#include "volumes-util.h"
#include "daemon.h"
#include "core/error.h"
#include "core/size.h"
#include "export/export.h"
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
    snprintf(buf, len, "%s%s%s/volumes/%s", cwd, cwd[0] ? "/" : "",
             d->cfg.data_dir, name);
}

int cvd_volume_made_here(struct cvd *d, const struct cvd_volume_rec *v)
{
    return !d->node || !v->node[0] || !strcmp(v->node, d->cfg.node_name);
}

void cvd_volume_local_path(struct cvd *d, const struct cvd_volume_rec *v,
                           char *buf, size_t len)
{
    if (cvd_volume_made_here(d, v))
        snprintf(buf, len, "%s", v->path);
    else
        cvd_volume_path(d, v->name, buf, len);
}

int cvd_sync_dir_of(const char *path)
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

/* The largest size a file in dir may have on its file system, found by
 * growing a sparse scratch file (nothing is allocated), or 0 if it
 * cannot be told.  below: a size known to be refused. */
static uint64_t largest_file(const char *dir, uint64_t below)
{
    char probe[PATH_MAX];
    uint64_t lo = 0, hi = below, mid;
    int fd;

    snprintf(probe, sizeof probe, "%s/.size-probe.XXXXXX", dir);
    fd = mkostemp(probe, O_CLOEXEC);
    if (fd < 0)
        return 0;
    unlink(probe);
    while (hi - lo > 1) {
        mid = lo + (hi - lo) / 2;
        if (mid <= (uint64_t)INT64_MAX && ftruncate(fd, (off_t)mid) == 0)
            lo = mid;
        else
            hi = mid;
    }
    close(fd);
    return lo;
}

int cvd_size_error(const char *name, uint64_t size, uint64_t overhead,
                   const char *path, int err)
{
    char human[32], most[64], dir[PATH_MAX];
    uint64_t largest;

    cv_format_size(size, human, sizeof human);
    snprintf(dir, sizeof dir, "%s", path);
    if (err != -EFBIG && err != -EINVAL)
        return cv_error(err, "volume %s: setting its image's size to %s: %s",
                        name, human, strerror(-err));
    /* The path is the daemon's business: say what the user can change. */
    largest = largest_file(dirname(dir), size + overhead);
    if (largest <= overhead)
        return cv_error(-EFBIG, "volume %s: a size of %s is too large for "
                        "the file system of the data directory (%s); choose "
                        "a smaller size", name, human, strerror(EFBIG));
    cv_format_size_exact(largest - overhead, most, sizeof most);
    return cv_error(-EFBIG, "volume %s: a size of %s is too large for the "
                    "file system of the data directory, whose files hold at "
                    "most %s after the header (%s); choose a size up to that",
                    name, human, most, strerror(EFBIG));
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
    return cvd_sync_dir_of(to);
}

int cvd_remove_file(const char *path)
{
    if (unlink(path) < 0)
        return -errno;
    return cvd_sync_dir_of(path);
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

    return r < 0 ? r : cvd_sync_dir_of(path);
}

/* Clients named in a message; the rest are counted. */
#define CLIENTS_SHOWN 4

struct clients {
    char *buf;
    size_t len, used;
    int n;
};

static int add_client(void *arg, const struct cvd_export_holder *h)
{
    struct clients *c = arg;
    int w;

    if (c->n++ >= CLIENTS_SHOWN || c->used >= c->len)
        return 0;               /* counted, not shown */
    w = snprintf(c->buf + c->used, c->len - c->used, "%s%s%s%s",
                 c->used ? ", " : "", h->peer, h->identity[0] ? " " : "",
                 h->identity);
    c->used += w < 0 ? 0 : (size_t)w;
    return 0;
}

int cvd_volume_clients(struct cvd *d, const char *name, char *buf,
                       size_t len)
{
    struct clients c = { .buf = buf, .len = len };
    size_t used;

    buf[0] = '\0';
    if (d->reg)
        cvd_registry_holders(d->reg, name, add_client, &c);
    used = c.used < len ? c.used : len;
    if (c.n > CLIENTS_SHOWN && used < len)
        snprintf(buf + used, len - used, " and %d more", c.n - CLIENTS_SHOWN);
    return c.n;
}

int cvd_in_use_error(struct cvd *d, const char *name, const char *doing)
{
    char who[320];
    int n = cvd_volume_clients(d, name, who, sizeof who);

    /* Only a snapshot of it is served ("VOL@SNAP"). */
    if (n == 0 && d->reg && !cvd_registry_in_use(d->reg, name, 0) &&
        cvd_registry_in_use(d->reg, name, 1))
        return cv_error(-EBUSY, "volume %s: one of its snapshots is served "
                        "over NBD; %s it needs every client disconnected",
                        name, doing);
    /* A client between NBD_OPT_GO and serving holds it unnamed yet. */
    if (n == 0)
        return cv_error(-EBUSY, "volume %s: in use by an NBD client "
                        "(connecting now); %s it needs every client "
                        "disconnected", name, doing);
    return cv_error(-EBUSY, "volume %s: in use by %d NBD client%s (%s); %s "
                    "it needs every client disconnected", name, n,
                    n == 1 ? "" : "s", who, doing);
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
        { CVD_VOL_GROWING, "Growing" }, { CVD_VOL_IMPORTING, "Importing" },
        { CVD_VOL_RESTORING, "Restoring" },
        { CVD_VOL_ROLLING_BACK, "RollingBack" },
    };
    size_t i;

    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(state, names[i][0]))
            return names[i][1];
    return state;   /* from a newer cryptvold: shown as stored */
}

int cvd_state_served(const char *state)
{
    return !strcmp(state, CVD_VOL_READY) || !strcmp(state, CVD_VOL_GROWING);
}

void cvd_state_reason(const struct cvd_volume_rec *v, char *buf, size_t len)
{
    if (!strcmp(v->state, CVD_VOL_PENDING))
        snprintf(buf, len, "waiting for secret \"%s\"", v->wait_secret);
    else if (!strcmp(v->state, CVD_VOL_REKEYING))
        snprintf(buf, len, "moving to secret \"%s\"", v->wait_secret);
    else if (!strcmp(v->state, CVD_VOL_RESTORING))
        snprintf(buf, len, "being restored from a backup; served once every "
                 "block is written and checked");
    else if (!strcmp(v->state, CVD_VOL_GROWING))
        snprintf(buf, len, "growing online; served at its old size until "
                 "the grow is done");
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

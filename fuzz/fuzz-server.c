/* The real NBD server for the fuzzers (fuzz-server.h).
 *
 * One world per fuzzer process, started by the first input: a struct cvd
 * as the daemon fills it (bounds at their defaults, TLS off, a SQLite
 * store in a scratch directory, a registry of exports, a worker pool) and
 * the NBD server with no listener.  Each input is one connection served
 * by cvd_nbd_serve_fd() on the fuzzer's thread, so whatever the server
 * does with the input (the option length guard, the request reader, the
 * replies) runs under ASan and UBSan, and libFuzzer sees its coverage.
 * A helper thread plays the client: it writes the input, shuts its write
 * side (the server then reads end of file) and reads every reply, so the
 * server never blocks on a full socket.
 *
 * The exports are layer chains (store/chain.h) under the scratch
 * directory, made as the daemon makes its volumes: a plaintext chain of
 * one layer, and a LUKS2 header over one (docs/store.md).
 *
 * The world holds each export open, as a daemon with other clients
 * connected does: an input's NBD_OPT_GO finds it in the registry instead
 * of unlocking the LUKS one again (a key derivation per input would make
 * the fuzzer a hundred times slower).
 *
 * One request worker per connection (nbd-threads 1): the same code
 * serves the requests, but in order, so an input always takes the same
 * path (nbd-concurrency.sh tests the workers with real clients).
 *
 * The world is global: libFuzzer's entry point has no context. */
#include "fuzz-server.h"

#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/error.h"
#include "core/workers.h"
#include "daemon.h"
#include "export/export.h"
#include "log.h"
#include "luks/luks.h"
#include "meta/meta.h"
#include "nbd/nbd-server.h"
#include "store/backend.h"
#include "store/chain.h"

#define MiB (1024u * 1024)
#define PASSPHRASE "fuzz"

static const struct {
    const char *name;
    uint64_t size;              /* what clients see */
    int luks;
} exports[FUZZ_NEXPORTS] = {
    [FUZZ_VOL] = { "vol", 1 * MiB, 0 },
    [FUZZ_ODD] = { "odd", 1 * MiB + 1000, 0 },
    /* A LUKS2 header of 4 keyslots (as cryptvold makes), then 1 MiB. */
    [FUZZ_ENC] = { "enc", 1 * MiB, 1 },
};

static struct {
    int started;
    char dir[256];
    char path[FUZZ_NEXPORTS][320];  /* the chain directory */
    struct cvd_export *held[FUZZ_NEXPORTS];
    struct cvd d;
    struct cvd_nbd *nbd;
} w;

const char *fuzz_export_name(enum fuzz_export e)
{
    return exports[e].name;
}

static __attribute__((noreturn)) void die(const char *what)
{
    fprintf(stderr, "fuzz-server: %s: %s\n", what, cv_last_error());
    abort();
}

/* --- The registry's view of the store ------------------------------------ */

static int find_export(const char *name)
{
    for (int i = 0; i < FUZZ_NEXPORTS; i++)
        if (!strcmp(name, exports[i].name))
            return i;
    return -1;
}

static int resolve(void *opaque, const char *name, int serving,
                   struct cvd_volume_spec *s)
{
    int i = find_export(name);

    (void)opaque;
    (void)serving;
    if (i < 0)
        return cv_error(-ENOENT, "volume %s: no such volume", name);
    s->path = strdup(w.path[i]);
    if (!s->path)
        return cv_error(-ENOMEM, "out of memory");
    s->plaintext = !exports[i].luks;
    s->size = exports[i].size;
    return 0;
}

/* The one format of an encrypted export: its header, with the passphrase. */
static int unlock(void *opaque, const char *name, struct cv_chain *c,
                  struct cvd_volume_keys *out)
{
    struct cv_luks *l = NULL;
    unsigned char *key = NULL;
    size_t keylen = 0;
    int r;

    (void)opaque;
    memset(out, 0, sizeof *out);
    r = cv_luks_load(cv_chain_backend(c), &l);
    if (r == 0)
        r = cv_luks_info(l, &out->k[0].info);
    if (r == 0)
        r = cv_luks_unlock(l, PASSPHRASE, strlen(PASSPHRASE), &key, &keylen);
    if (r >= 0) {       /* the keyslot that opened */
        out->k[0].key = key;
        out->k[0].keylen = keylen;
        out->n = 1;
        r = 0;
    }
    cv_luks_free(l);
    return r < 0 ? cv_error_prefix(r, "volume %s", name) : 0;
}

static int list(void *opaque, int (*cb)(void *, const char *), void *arg)
{
    int r = 0;

    (void)opaque;
    for (int i = 0; i < FUZZ_NEXPORTS && r == 0; i++)
        r = cb(arg, exports[i].name);
    return r;
}

/* --- The world ------------------------------------------------------------ */

/* A LUKS2 header in the chain at path, as cryptvold formats a new
 * volume: the head is cut to the data offset plus size.  Returns the
 * data offset. */
static uint64_t format_chain(const char *path, uint64_t size)
{
    struct cv_format_params p = {
        .luks_version = 2, .key_bits = 256, .keyslots = 4, .new_store = 1,
        .pbkdf = { .type = "pbkdf2", .iterations = 1000 },
    };
    struct cv_chain *c = NULL;
    struct cv_luks *l = NULL;
    struct cv_luks_info info = { 0 };
    int r;

    r = cv_chain_open(path, NULL, 0, &c);
    if (r == 0)
        r = cv_luks_format_open(cv_chain_backend(c), &p, PASSPHRASE,
                                strlen(PASSPHRASE), &l);
    if (r == 0)
        r = cv_luks_info(l, &info);
    if (r == 0)
        r = cv_chain_set_data_offset(c, info.data_offset);
    if (r == 0)
        r = cv_chain_resize(c, info.data_offset + size);
    if (r == 0)
        r = cv_chain_flush(c);
    cv_luks_free(l);
    cv_chain_close(c);
    if (r < 0)
        die("formatting the LUKS export");
    return info.data_offset;
}

static void make_export(int i)
{
    struct cvd_volume_rec v = { .state = CVD_VOL_READY };
    /* Room for the header, as cryptvold leaves before a format. */
    uint64_t room = exports[i].luks ? 64 * MiB : 0;

    snprintf(w.path[i], sizeof w.path[i], "%s/%s", w.dir, exports[i].name);
    if (cv_chain_create(w.path[i], room, room + exports[i].size, NULL) < 0)
        die(exports[i].name);
    snprintf(v.name, sizeof v.name, "%s", exports[i].name);
    snprintf(v.path, sizeof v.path, "%s", w.path[i]);
    v.size = exports[i].size;
    snprintf(v.type, sizeof v.type, "plaintext");
    snprintf(v.cipher, sizeof v.cipher, "none");
    v.sector_size = 512;
    if (exports[i].luks) {
        v.data_offset = format_chain(w.path[i], exports[i].size);
        snprintf(v.type, sizeof v.type, "luks2");
        snprintf(v.cipher, sizeof v.cipher, "aes-xts-plain64");
        v.key_bits = 512;
        v.sector_size = 4096;
    }
    if (w.d.meta->ops->volume_add(w.d.meta, &v, NULL) < 0)
        die("recording an export");
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static void world_stop(void)
{
    cvd_nbd_stop(w.nbd);
    for (int i = 0; i < FUZZ_NEXPORTS; i++)
        cvd_export_put(w.held[i]);
    cvd_registry_free(w.d.reg);
    cvd_meta_close(w.d.meta);
    cv_workers_free(w.d.workers);
    nftw(w.dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static void world_start(void)
{
    const char *tmp = getenv("TMPDIR");

    /* Bad input makes warnings by design; errors are worth seeing. */
    cvd_log_init(LOG_ERR);
    /* Under TMPDIR (tests/fuzz.sh: its own scratch directory), so a
     * crash, which skips world_stop, leaves nothing behind. */
    if (!tmp || !*tmp || strlen(tmp) > sizeof w.dir - 32)
        tmp = "/tmp";
    snprintf(w.dir, sizeof w.dir, "%s/cryptvol-fuzz.XXXXXX", tmp);
    if (!mkdtemp(w.dir)) {
        cv_error(-errno, "mkdtemp: %s", strerror(errno));
        die("scratch directory");
    }
    if (cvd_meta_open_sqlite(w.dir, &w.d.meta) < 0)
        die("the metadata store");
    for (int i = 0; i < FUZZ_NEXPORTS; i++)
        make_export(i);
    if (cv_workers_new(1, &w.d.workers) < 0)
        die("the worker pool");
    if (cvd_registry_new(resolve, unlock, list, NULL, w.d.workers,
                         &w.d.reg) < 0)
        die("the registry");
    for (int i = 0; i < FUZZ_NEXPORTS; i++)
        if (cvd_export_get(w.d.reg, exports[i].name, &w.held[i]) < 0)
            die("opening an export");
    pthread_mutex_init(&w.d.header_lock, NULL);
    cvd_bounds_defaults(&w.d.cfg.bounds);
    w.d.cfg.tls_mode = CVD_TLS_OFF;
    w.d.cfg.nbd_threads = 1;
    if (cvd_nbd_start(&w.d, &w.nbd) < 0)
        die("the NBD server");
    atexit(world_stop);
    w.started = 1;
}

/* --- One connection ------------------------------------------------------- */

struct client {
    int fd;
    const uint8_t *p[2];
    size_t n[2];
};

/* Reads what is there; 0 once the server has closed. */
static int drain(int fd)
{
    uint8_t sink[65536];
    ssize_t r = recv(fd, sink, sizeof sink, MSG_DONTWAIT);

    return r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR) ? 0 : 1;
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    int part = 0, writing = 1;

    for (;;) {
        struct pollfd p = { .fd = c->fd, .events = POLLIN };

        while (part < 2 && c->n[part] == 0)
            part++;
        if (writing && part == 2) {
            shutdown(c->fd, SHUT_WR);
            writing = 0;
        }
        if (writing)
            p.events |= POLLOUT;
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            break;
        if ((p.revents & (POLLIN | POLLHUP | POLLERR)) && !drain(c->fd))
            break;
        if (writing && (p.revents & POLLOUT)) {
            ssize_t n = send(c->fd, c->p[part], c->n[part],
                             MSG_DONTWAIT | MSG_NOSIGNAL);

            if (n > 0) {
                c->p[part] += n;
                c->n[part] -= (size_t)n;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                writing = 0;    /* the server stopped reading: it closes */
            }
        }
    }
    return NULL;
}

uint64_t fuzz_export_size(enum fuzz_export e)
{
    if (!w.started)
        world_start();
    return cvd_export_size(w.held[e]);
}

void fuzz_server_run(const uint8_t *prefix, size_t plen, const uint8_t *data,
                     size_t size)
{
    struct client c = { .p = { prefix, data }, .n = { plen, size } };
    pthread_t t;
    int sv[2];

    if (!w.started)
        world_start();
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        cv_error(-errno, "%s", strerror(errno));
        die("socketpair");
    }
    c.fd = sv[1];
    if (pthread_create(&t, NULL, client_main, &c) != 0) {
        cv_error(-EAGAIN, "pthread_create failed");
        die("the client thread");
    }
    cvd_nbd_serve_fd(w.nbd, sv[0]);     /* closes sv[0] */
    pthread_join(t, NULL);
    close(sv[1]);
}

/* image import and export: plaintext in and out of an encrypted image.
 *
 * Work goes in rounds of one 4 MiB chunk per core; each chunk is read,
 * encrypted and written by one thread, so store I/O and crypto run on every
 * core.  A regular file is read or written at each chunk's offset by the
 * thread that owns the chunk; a pipe is read or written in order by the
 * main thread. */
#include "store/backend.h"
#include "args.h"
#include "cli.h"
#include "core/error.h"
#include "core/size.h"
#include "progress.h"
#include "image/volume.h"
#include "core/workers.h"
#include "store/chain.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (4u * 1024 * 1024)
/* A size for a message: "8.0 MiB (8392704 bytes)" (buf of 64 bytes). */
#define H(n, buf) cv_format_size_exact((n), (buf), sizeof (buf))
#define MAX_PARTS 64

struct transfer {
    const char *cmd;
    const char *image, *other;      /* other: SRC or DST, "-" for stdio */
    const char *passfile;
    /* export only: the key from a KEK escrow instead of a passphrase */
    const char *escrow, *recovery;
    uint64_t offset, length;
    int have_length;
};

/* One key source: a passphrase file, or (export) a KEK escrow with its
 * recovery passphrase.  (import takes neither escrow option: the command
 * table says so.) */
static int check_key_source(const struct transfer *t, const struct cli_args *a)
{
    if (t->passfile && (t->escrow || t->recovery))
        return cli_usage_error(a, "takes --passphrase-file or --kek-escrow, "
                               "not both");
    if (!t->escrow != !t->recovery)
        return cli_usage_error(a, "--kek-escrow needs "
                               "--recovery-passphrase-file, and the other "
                               "way round");
    return 0;
}

static int parse_transfer(struct transfer *t, const struct cli_args *a,
                          int is_export)
{
    uint64_t any = UINT64_MAX;
    int r;

    t->passfile = cli_value(a, "passphrase-file");
    t->escrow = is_export ? cli_value(a, "kek-escrow") : NULL;
    t->recovery = is_export ? cli_value(a, "recovery-passphrase-file") : NULL;
    if (cli_value(a, "offset") &&
        cli_size_value(a, "offset", 0, any, &t->offset))
        return EXIT_USAGE;
    t->have_length = is_export && cli_value(a, "length");
    if (t->have_length && cli_size_value(a, "length", 0, any, &t->length))
        return EXIT_USAGE;
    r = check_key_source(t, a);
    if (r)
        return r;
    if (!t->passfile && !t->escrow)
        return cli_usage_error(a, "needs PATH DST and --passphrase-file F (or "
                               "--kek-escrow ESCROW "
                               "--recovery-passphrase-file F)");
    return 0;
}

/* Opens the image's volume and a pool with a thread per extra core.  The
 * volume gets no pool of its own: chunks, not parts of them, are spread. */
/* An export from a volume's chain directory (image-chain.c): *c is set
 * and *b stays NULL. */
static int open_chain_volume(const struct transfer *t,
                             const struct cv_secret *pass, struct cv_chain **c,
                             struct cv_workers **w, struct cv_volume **v)
{
    struct cli_chain_keysrc src = { .pass = pass, .escrow = t->escrow,
                                    .recovery = t->recovery };
    int r = cli_chain_open(t->image, c);

    if (r == 0)
        r = cv_workers_new(0, w);
    if (r == 0)
        r = cli_chain_volume(*c, &src, *w, v);
    return r;
}

static int open_volume(const struct transfer *t, int readonly,
                       struct cv_backend **b, struct cv_chain **c,
                       struct cv_workers **w, struct cv_volume **v)
{
    struct cv_secret pass = { 0 };
    int keyslot = -1, chain = cli_is_chain(t->image), r;

    r = t->passfile ? cli_read_passphrase(t->passfile, "passphrase file", &pass)
                    : 0;
    if (r == 0 && chain && !readonly)
        r = cv_error(-EISDIR, "%s: a volume's chain directory is read here, "
                     "never written: write to the volume through cryptvold "
                     "(NBD)", t->image);
    if (r == 0 && chain) {
        r = open_chain_volume(t, &pass, c, w, v);
        cv_secret_free(&pass);
        return r;
    }
    if (r == 0)
        r = cv_backend_file_open(t->image, readonly, b);
    if (r == 0 && t->escrow)
        r = cli_kek_escrow_unlock(*b, t->escrow, t->recovery, &pass, &keyslot);
    if (r == 0)
        r = cv_workers_new(0, w);
    if (r == 0)
        r = cv_volume_open_keyslot(*b, keyslot, pass.data, pass.len, NULL,
                                   readonly ? CV_VOLUME_READONLY : 0, v);
    cv_secret_free(&pass);
    return r;
}

static void close_volume(struct cv_backend *b, struct cv_chain *c,
                         struct cv_workers *w, struct cv_volume *v)
{
    cv_volume_close(v);
    cv_workers_free(w);
    cv_chain_close(c);
    cv_backend_close(b);
}

/* Reads up to len bytes, short only at end of input; off < 0 reads the
 * stream in order. */
static ssize_t read_full(int fd, char *buf, size_t len, off_t off)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = off < 0 ? read(fd, buf + got, len - got)
                            : pread(fd, buf + got, len - got, off + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

static int write_full(int fd, const char *buf, size_t len, off_t off)
{
    size_t put = 0;

    while (put < len) {
        ssize_t n = off < 0 ? write(fd, buf + put, len - put)
                            : pwrite(fd, buf + put, len - put, off + (off_t)put);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        put += (size_t)n;
    }
    return 0;
}

static int all_zero(const char *p, size_t len)
{
    return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

/* One round: chunk i covers [pos + i*CHUNK, +len[i]) of the transfer. */
struct round {
    const struct transfer *t;
    struct cv_volume *v;
    int fd;
    int seekable;               /* the thread owning a chunk does its file I/O */
    uint64_t pos;
    char *buf[MAX_PARTS];
    size_t len[MAX_PARTS];
    int result;
    char message[256];
};

static int round_fail(struct round *rd, int r)
{
    int none = 0;

    if (__atomic_compare_exchange_n(&rd->result, &none, r, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        snprintf(rd->message, sizeof rd->message, "%s", cv_last_error());
    return r;
}

static void import_part(void *arg, unsigned i)
{
    struct round *rd = arg;
    uint64_t pos = rd->pos + (uint64_t)i * CHUNK;
    int r;

    if (rd->seekable) {
        ssize_t n = read_full(rd->fd, rd->buf[i], rd->len[i], (off_t)pos);
        if (n != (ssize_t)rd->len[i]) {
            round_fail(rd, cv_error(n < 0 ? -errno : -EIO, "%s: read: %s",
                                    rd->t->other, n < 0 ? strerror(errno) :
                                    "file shrank while importing"));
            return;
        }
    }
    r = cv_volume_write(rd->v, rd->buf[i], rd->len[i], rd->t->offset + pos, 0);
    if (r < 0)
        round_fail(rd, r);
}

static void export_part(void *arg, unsigned i)
{
    struct round *rd = arg;
    uint64_t pos = rd->pos + (uint64_t)i * CHUNK;
    int r;

    r = cv_volume_read(rd->v, rd->buf[i], rd->len[i], rd->t->offset + pos);
    if (r < 0) {
        round_fail(rd, r);
        return;
    }
    /* Zeros in a regular file stay holes, as with cp --sparse. */
    if (!rd->seekable || all_zero(rd->buf[i], rd->len[i]))
        return;
    if (write_full(rd->fd, rd->buf[i], rd->len[i], (off_t)pos) < 0)
        round_fail(rd, cv_error(-errno, "%s: write: %s", rd->t->other,
                                strerror(errno)));
}

static int alloc_round(struct round *rd, unsigned nparts)
{
    unsigned i;

    for (i = 0; i < nparts; i++)
        if (!(rd->buf[i] = malloc(CHUNK)))
            return cv_error(-ENOMEM, "out of memory");
    return 0;
}

static void free_round(struct round *rd)
{
    unsigned i;

    for (i = 0; i < MAX_PARTS; i++)
        free(rd->buf[i]);
}

static unsigned parts_for(struct cv_workers *w)
{
    unsigned n = cv_workers_count(w) + 1;

    return n > MAX_PARTS ? MAX_PARTS : n;
}

/* Reads a pipe's next round in order; returns the chunks filled. */
static int fill_from_stream(struct round *rd, unsigned nparts, unsigned *got)
{
    unsigned i;

    for (*got = 0, i = 0; i < nparts; i++) {
        ssize_t n = read_full(rd->fd, rd->buf[i], CHUNK, -1);
        if (n < 0)
            return cv_error(-errno, "%s: read: %s", rd->t->other,
                            strerror(errno));
        rd->len[i] = (size_t)n;
        if (n == 0)
            break;
        (*got)++;
        if (n < (ssize_t)CHUNK)
            break;
    }
    return 0;
}

static int import_data(const struct transfer *t, struct cv_volume *v,
                       struct cv_workers *w, int fd, int seekable,
                       uint64_t total)
{
    struct round rd = { .t = t, .v = v, .fd = fd, .seekable = seekable };
    uint64_t room = cv_volume_size(v) - t->offset;
    unsigned nparts = parts_for(w), got, i;
    struct progress prog;
    int r;

    r = alloc_round(&rd, nparts);
    progress_start(&prog, "importing", total);
    while (r == 0) {
        if (seekable) {
            for (got = 0; got < nparts && rd.pos + (uint64_t)got * CHUNK < total; got++) {
                uint64_t left = total - rd.pos - (uint64_t)got * CHUNK;
                rd.len[got] = left < CHUNK ? (size_t)left : CHUNK;
            }
        } else {
            r = fill_from_stream(&rd, nparts, &got);
        }
        if (r < 0 || got == 0)
            break;
        uint64_t bytes = 0;
        for (i = 0; i < got; i++)
            bytes += rd.len[i];
        if (bytes > room - rd.pos) {
            char h1[64], h2[64], h3[64];
            r = cv_error(-ENOSPC, "%s: input is larger than the %s from "
                         "offset %s to the end of the volume; imported %s",
                         t->image, H(room, h1), H(t->offset, h2),
                         H(rd.pos, h3));
            break;
        }
        cv_workers_run(w, got, import_part, &rd);
        if (rd.result < 0) {
            r = cv_error(rd.result, "%s", rd.message);
            break;
        }
        rd.pos += bytes;
        progress_update(&prog, rd.pos);
        if (got < nparts || rd.len[got - 1] < CHUNK)
            break;
    }
    if (r == 0)
        r = cv_volume_flush(v);
    progress_end(&prog, r == 0);
    free_round(&rd);
    return r;
}

int cmd_image_import(struct cli_args *a)
{
    struct transfer t = { .cmd = "image import" };
    struct cv_backend *b = NULL;
    struct cv_chain *c = NULL;
    struct cv_workers *w = NULL;
    struct cv_volume *v = NULL;
    uint64_t total = 0;
    struct stat st;
    char h1[64], h2[64], h3[64];
    int fd = STDIN_FILENO, seekable = 0, r;

    r = parse_transfer(&t, a, 0);
    if (r)
        return r;
    t.other = a->arg[0];
    t.image = a->arg[1];
    if (strcmp(t.other, "-") != 0) {
        fd = open(t.other, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return cli_fail(cv_error(-errno, "%s: %s", t.other, strerror(errno)));
    }
    r = open_volume(&t, 0, &b, &c, &w, &v);
    if (r == 0 && t.offset > cv_volume_size(v))
        r = cv_error(-ERANGE, "%s: --offset %s is beyond the end of the "
                     "volume (%s)", t.image, H(t.offset, h1),
                     H(cv_volume_size(v), h2));
    if (r == 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        total = (uint64_t)st.st_size;
        seekable = 1;
        /* Refuse before writing anything when we know it will not fit. */
        if (total > cv_volume_size(v) - t.offset)
            r = cv_error(-ENOSPC, "%s: %s is %s, but the volume has %s from "
                         "offset %s", t.image, t.other, H(total, h1),
                         H(cv_volume_size(v) - t.offset, h2),
                         H(t.offset, h3));
    }
    if (r == 0)
        r = import_data(&t, v, w, fd, seekable, total);
    close_volume(b, c, w, v);
    if (fd != STDIN_FILENO)
        close(fd);
    return r < 0 ? cli_fail(r) : EXIT_OK;
}

static int export_data(const struct transfer *t, struct cv_volume *v,
                       struct cv_workers *w, int fd, int seekable)
{
    struct round rd = { .t = t, .v = v, .fd = fd, .seekable = seekable };
    unsigned nparts = parts_for(w), n, i;
    struct progress prog;
    int r;

    r = alloc_round(&rd, nparts);
    progress_start(&prog, "exporting", t->length);
    while (r == 0 && rd.pos < t->length) {
        uint64_t bytes = 0;
        for (n = 0; n < nparts && rd.pos + bytes < t->length; n++) {
            uint64_t left = t->length - rd.pos - bytes;
            rd.len[n] = left < CHUNK ? (size_t)left : CHUNK;
            bytes += rd.len[n];
        }
        cv_workers_run(w, n, export_part, &rd);
        if (rd.result < 0) {
            r = cv_error(rd.result, "%s", rd.message);
            break;
        }
        for (i = 0; !seekable && i < n && r == 0; i++)
            if (write_full(fd, rd.buf[i], rd.len[i], -1) < 0)
                r = cv_error(-errno, "%s: write: %s", t->other,
                             strerror(errno));
        rd.pos += bytes;
        progress_update(&prog, rd.pos);
    }
    if (r == 0 && seekable && ftruncate(fd, (off_t)t->length) != 0)
        r = cv_error(-errno, "%s: %s", t->other, strerror(errno));
    progress_end(&prog, r == 0);
    free_round(&rd);
    return r;
}

static int check_export_range(struct transfer *t, struct cv_volume *v)
{
    uint64_t size = cv_volume_size(v);
    char h1[64], h2[64], h3[64];

    if (t->offset > size)
        return cv_error(-ERANGE, "%s: --offset %s is beyond the end of the "
                        "volume (%s)", t->image, H(t->offset, h1),
                        H(size, h2));
    if (!t->have_length)
        t->length = size - t->offset;
    else if (t->length > size - t->offset)
        return cv_error(-ERANGE, "%s: --length %s from offset %s is beyond "
                        "the end of the volume (%s)", t->image,
                        H(t->length, h1), H(t->offset, h2), H(size, h3));
    return 0;
}

int cmd_image_export(struct cli_args *a)
{
    struct transfer t = { .cmd = "image export" };
    struct cv_backend *b = NULL;
    struct cv_chain *c = NULL;
    struct cv_workers *w = NULL;
    struct cv_volume *v = NULL;
    struct stat st;
    int fd = STDOUT_FILENO, seekable = 0, r;

    r = parse_transfer(&t, a, 1);
    if (r)
        return r;
    t.image = a->arg[0];
    t.other = a->arg[1];
    r = open_volume(&t, 1, &b, &c, &w, &v);
    if (r == 0)
        r = check_export_range(&t, v);
    if (r == 0 && strcmp(t.other, "-") != 0) {
        /* Plaintext leaves the encrypted image: only the owner may read it. */
        fd = open(t.other, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            r = cv_error(-errno, "%s: %s", t.other, strerror(errno));
        else if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
            seekable = 1;
    }
    if (r == 0)
        r = export_data(&t, v, w, fd, seekable);
    if (fd != STDOUT_FILENO && fd >= 0 && close(fd) != 0 && r == 0)
        r = cv_error(-errno, "%s: %s", t.other, strerror(errno));
    close_volume(b, c, w, v);
    return r < 0 ? cli_fail(r) : EXIT_OK;
}

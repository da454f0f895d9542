/* image import and export: plaintext in and out of an encrypted image. */
#include "backend.h"
#include "cli.h"
#include "error.h"
#include "progress.h"
#include "volume.h"
#include "workers.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Large enough that each request is split across every core. */
#define CHUNK (4u * 1024 * 1024)

struct transfer {
    const char *cmd;
    const char *image, *other;      /* other: SRC or DST, "-" for stdio */
    const char *passfile;
    uint64_t offset, length;
    int have_length;
};

static int parse_transfer(struct transfer *t, int argc, char **argv,
                          int allow_length)
{
    static const struct option opts[] = {
        { "passphrase-file", required_argument, NULL, 'p' },
        { "offset", required_argument, NULL, 'o' },
        { "length", required_argument, NULL, 'l' },
        { 0 } };
    int c;

    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'p': t->passfile = optarg; break;
        case 'o':
            if (cli_parse_size(t->cmd, "offset", optarg, &t->offset))
                return EXIT_USAGE;
            break;
        case 'l':
            if (!allow_length)
                return cli_usage(t->cmd, "takes no --length");
            if (cli_parse_size(t->cmd, "length", optarg, &t->length))
                return EXIT_USAGE;
            t->have_length = 1;
            break;
        default: return cli_bad_option(t->cmd, c, argv);
        }
    }
    if (argc - optind != 2 || !t->passfile)
        return cli_usage(t->cmd, allow_length ?
                         "needs PATH DST and --passphrase-file F" :
                         "needs SRC PATH and --passphrase-file F");
    return 0;
}

/* Opens the image's volume, with every core helping on large requests. */
static int open_volume(const struct transfer *t, int readonly,
                       struct cv_backend **b, struct cv_workers **w,
                       struct cv_volume **v)
{
    struct cv_secret pass = { 0 };
    int r;

    r = cli_read_passphrase(t->passfile, "passphrase file", &pass);
    if (r == 0)
        r = cv_backend_file_open(t->image, readonly, b);
    if (r == 0)
        r = cv_workers_new(0, w);
    if (r == 0)
        r = cv_volume_open(*b, pass.data, pass.len, *w,
                           readonly ? CV_VOLUME_READONLY : 0, v);
    cv_secret_free(&pass);
    return r;
}

static void close_volume(struct cv_backend *b, struct cv_workers *w,
                         struct cv_volume *v)
{
    cv_volume_close(v);
    cv_workers_free(w);
    cv_backend_close(b);
}

/* Reads up to len bytes, short only at end of input. */
static ssize_t read_full(int fd, char *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
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

static int write_full(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int import_stream(const struct transfer *t, struct cv_volume *v, int fd,
                         uint64_t total)
{
    uint64_t size = cv_volume_size(v), done = 0;
    struct progress prog;
    char *buf = malloc(CHUNK);
    int r = 0;

    if (!buf)
        return cv_error(-ENOMEM, "out of memory");
    progress_start(&prog, "importing", total);
    for (;;) {
        ssize_t n = read_full(fd, buf, CHUNK);
        if (n < 0) {
            r = cv_error(-errno, "%s: read: %s", t->other, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if (t->offset + done + (uint64_t)n > size) {
            r = cv_error(-ENOSPC, "%s: input is larger than the %llu bytes "
                         "from offset %llu to the end of the volume; "
                         "imported %llu bytes", t->image,
                         (unsigned long long)(size - t->offset),
                         (unsigned long long)t->offset,
                         (unsigned long long)done);
            break;
        }
        r = cv_volume_write(v, buf, (size_t)n, t->offset + done, 0);
        if (r < 0)
            break;
        done += (uint64_t)n;
        progress_update(&prog, done);
    }
    if (r == 0)
        r = cv_volume_flush(v);
    progress_end(&prog, r == 0);
    free(buf);
    return r;
}

int cmd_image_import(int argc, char **argv)
{
    struct transfer t = { .cmd = "image import" };
    struct cv_backend *b = NULL;
    struct cv_workers *w = NULL;
    struct cv_volume *v = NULL;
    uint64_t total = 0;
    struct stat st;
    int fd = STDIN_FILENO, r;

    r = parse_transfer(&t, argc, argv, 0);
    if (r)
        return r;
    t.other = argv[optind];
    t.image = argv[optind + 1];
    if (strcmp(t.other, "-") != 0) {
        fd = open(t.other, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return cli_fail(cv_error(-errno, "%s: %s", t.other, strerror(errno)));
    }
    r = open_volume(&t, 0, &b, &w, &v);
    if (r == 0 && t.offset > cv_volume_size(v))
        r = cv_error(-ERANGE, "%s: --offset %llu is beyond the end of the "
                     "volume (%llu bytes)", t.image,
                     (unsigned long long)t.offset,
                     (unsigned long long)cv_volume_size(v));
    if (r == 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        total = (uint64_t)st.st_size;
        /* Refuse before writing anything when we know it will not fit. */
        if (total > cv_volume_size(v) - t.offset)
            r = cv_error(-ENOSPC, "%s: %s is %llu bytes, but the volume has "
                         "%llu bytes from offset %llu", t.image, t.other,
                         (unsigned long long)total,
                         (unsigned long long)(cv_volume_size(v) - t.offset),
                         (unsigned long long)t.offset);
    }
    if (r == 0)
        r = import_stream(&t, v, fd, total);
    close_volume(b, w, v);
    if (fd != STDIN_FILENO)
        close(fd);
    return r < 0 ? cli_fail(r) : EXIT_OK;
}

static int all_zero(const char *p, size_t len)
{
    return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

static int export_stream(const struct transfer *t, struct cv_volume *v, int fd,
                         int sparse)
{
    uint64_t done = 0;
    struct progress prog;
    char *buf = malloc(CHUNK);
    int r = 0;

    if (!buf)
        return cv_error(-ENOMEM, "out of memory");
    progress_start(&prog, "exporting", t->length);
    while (done < t->length) {
        size_t n = t->length - done < CHUNK ? (size_t)(t->length - done) : CHUNK;
        r = cv_volume_read(v, buf, n, t->offset + done);
        if (r < 0)
            break;
        /* Zeros in a regular file become holes, as with cp --sparse. */
        if (sparse && all_zero(buf, n)) {
            if (lseek(fd, (off_t)n, SEEK_CUR) < 0)
                r = cv_error(-errno, "%s: %s", t->other, strerror(errno));
        } else if (write_full(fd, buf, n) < 0) {
            r = cv_error(-errno, "%s: write: %s", t->other, strerror(errno));
        }
        if (r < 0)
            break;
        done += n;
        progress_update(&prog, done);
    }
    if (r == 0 && sparse && ftruncate(fd, (off_t)t->length) != 0)
        r = cv_error(-errno, "%s: %s", t->other, strerror(errno));
    progress_end(&prog, r == 0);
    free(buf);
    return r;
}

int cmd_image_export(int argc, char **argv)
{
    struct transfer t = { .cmd = "image export" };
    struct cv_backend *b = NULL;
    struct cv_workers *w = NULL;
    struct cv_volume *v = NULL;
    struct stat st;
    int fd = STDOUT_FILENO, sparse = 0, r;

    r = parse_transfer(&t, argc, argv, 1);
    if (r)
        return r;
    t.image = argv[optind];
    t.other = argv[optind + 1];
    r = open_volume(&t, 1, &b, &w, &v);
    if (r == 0) {
        uint64_t size = cv_volume_size(v);
        if (t.offset > size)
            r = cv_error(-ERANGE, "%s: --offset %llu is beyond the end of the "
                         "volume (%llu bytes)", t.image,
                         (unsigned long long)t.offset, (unsigned long long)size);
        else if (!t.have_length)
            t.length = size - t.offset;
        else if (t.length > size - t.offset)
            r = cv_error(-ERANGE, "%s: --length %llu from offset %llu is beyond "
                         "the end of the volume (%llu bytes)", t.image,
                         (unsigned long long)t.length,
                         (unsigned long long)t.offset, (unsigned long long)size);
    }
    if (r == 0 && strcmp(t.other, "-") != 0) {
        /* Plaintext leaves the encrypted image: only the owner may read it. */
        fd = open(t.other, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            r = cv_error(-errno, "%s: %s", t.other, strerror(errno));
        else if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
            sparse = 1;
    }
    if (r == 0)
        r = export_stream(&t, v, fd, sparse);
    if (r == 0 && fd != STDOUT_FILENO && close(fd) != 0)
        r = cv_error(-errno, "%s: %s", t.other, strerror(errno));
    else if (fd != STDOUT_FILENO && fd >= 0 && r < 0)
        close(fd);
    close_volume(b, w, v);
    return r < 0 ? cli_fail(r) : EXIT_OK;
}

/* bench-kek-rewrap: the cost of rotating the cluster KEK, per volume.
 *
 * Makes N LUKS2 image files in a directory (default /dev/shm, a tmpfs):
 * one formatted with a random keyslot passphrase and given a cryptvol-kek
 * token, as cryptvold makes them, and N-1 copies of its two LUKS2 header
 * copies, the rest a hole.  Formatting each would take minutes, and its
 * keyslot area, 16 MiB of random bytes, would put 16 GB in tmpfs for
 * 1000 volumes; a rewrap never reads or writes that area, and the copies
 * sharing a UUID changes nothing in what it does.  Then rotates every volume to the next
 * KEK generation, as a rotation does it, one volume after the other:
 * open the file, cv_luks_load_metadata, cv_kek_token_get,
 * cv_kek_token_rewrap (unseal, seal, header write-back, two flushes),
 * close.  Several rounds; the best and the median are printed, per volume
 * and for all N, against the targets (under 5 ms a volume, 1000 volumes in
 * under 10 s).  For comparison, the one fully made volume rewrapped
 * over and over, with the metadata-only load and with the full header
 * load (cv_luks_load), which also mirrors the keyslot areas.
 *
 * A benchmark, not a test: a slow machine prints MISS; it exits non-zero
 * only when a call fails. */
#include "store/backend.h"
#include "core/error.h"
#include "luks/kek-token.h"
#include "luks/luks.h"
#include "core/secmem.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MiB (1024ull * 1024)
#define IMAGE_SIZE (17 * MiB)
#define TARGET_MS 5.0
#define TARGET_1000_S 10.0
#define MAX_ROUNDS 32
#define LUKS2_HDR_MAX (4 * MiB)

struct bench {
    const char *dir;
    char tmp[4096];
    unsigned n, rounds;
    unsigned char kek[2][CV_KEK_LEN];
    uint32_t gen;
};

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void image_path(const struct bench *bn, unsigned i, char *buf,
                       size_t size)
{
    snprintf(buf, size, "%s/vol-%05u.img", bn->tmp, i);
}

static int make_image(struct bench *bn, unsigned i)
{
    struct cv_format_params p = {
        .luks_version = 2, .key_bits = 256,
        .pbkdf = { .type = "pbkdf2", .iterations = 1000 },
    };
    unsigned char kpass[CV_KEK_PASS_LEN];
    struct cv_backend *b = NULL;
    struct cv_luks *l = NULL;
    char path[4200];
    int fd, r;

    image_path(bn, i, path, sizeof path);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)IMAGE_SIZE) != 0)
        return cv_error(-errno, "%s: %s", path, strerror(errno));
    close(fd);
    r = RAND_priv_bytes(kpass, sizeof kpass) == 1 ? 0
        : cv_error(-EIO, "no random bytes");
    if (r == 0)
        r = cv_backend_file_open(path, 0, &b);
    if (r == 0)
        r = cv_luks_format(b, &p, (char *)kpass, sizeof kpass);
    if (r == 0)
        r = cv_luks_load(b, &l);
    if (r == 0)
        r = cv_kek_token_add(l, 0, (char *)kpass, sizeof kpass, bn->kek[0],
                             bn->gen);
    cv_luks_free(l);
    if (b)
        cv_backend_close(b);
    OPENSSL_cleanse(kpass, sizeof kpass);
    return r;
}

/* Image 0's header copies, [0, 2 * header size), as image i. */
static int copy_image(struct bench *bn, unsigned i)
{
    unsigned char *buf = malloc(LUKS2_HDR_MAX * 2);
    char from[4200], to[4200];
    int in = -1, out = -1, r = 0, k;
    uint64_t hdr = 0;

    image_path(bn, 0, from, sizeof from);
    image_path(bn, i, to, sizeof to);
    in = open(from, O_RDONLY | O_CLOEXEC);
    out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (!buf || in < 0 || out < 0 || ftruncate(out, (off_t)IMAGE_SIZE) != 0 ||
        pread(in, buf, 16, 0) != 16)
        r = cv_error(-errno, "%s: %s", to, strerror(errno));
    /* The LUKS2 binary header's size field: big-endian, at 8. */
    for (k = 0; r == 0 && k < 8; k++)
        hdr = hdr << 8 | buf[8 + k];
    if (r == 0 && (hdr == 0 || hdr > LUKS2_HDR_MAX))
        r = cv_error(-EINVAL, "%s: header size %llu", from,
                     (unsigned long long)hdr);
    if (r == 0 && (pread(in, buf, 2 * hdr, 0) != (ssize_t)(2 * hdr) ||
                   pwrite(out, buf, 2 * hdr, 0) != (ssize_t)(2 * hdr)))
        r = cv_error(-EIO, "%s: copying to %s failed", from, to);
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    free(buf);
    return r;
}

/* One volume to the next generation, the way a rotation does it. */
static int rewrap_one(struct bench *bn, unsigned i, int full)
{
    const unsigned char *oldkek = bn->kek[(bn->gen - 1) % 2];
    const unsigned char *newkek = bn->kek[bn->gen % 2];
    struct cv_kek_token t = { 0 };
    struct cv_backend *b = NULL;
    struct cv_luks *l = NULL;
    char path[4200];
    int r;

    image_path(bn, i, path, sizeof path);
    r = cv_backend_file_open(path, 0, &b);
    if (r == 0)
        r = full ? cv_luks_load(b, &l) : cv_luks_load_metadata(b, &l);
    if (r == 0)
        r = cv_kek_token_get(l, &t);
    if (r == 0 && t.gen != bn->gen)
        r = cv_error(-EINVAL, "%s: token at generation %u, expected %u",
                     path, t.gen, bn->gen);
    if (r == 0)
        r = cv_kek_token_rewrap(l, &t, oldkek, newkek, bn->gen + 1);
    cv_kek_token_free(&t);
    cv_luks_free(l);
    if (b)
        cv_backend_close(b);
    return r;
}

/* Rotates every volume once; seconds in *secs. */
static int round_all(struct bench *bn, int full, double *secs)
{
    double t0 = now();
    unsigned i;
    int r;

    for (i = 0; i < bn->n; i++) {
        r = rewrap_one(bn, i, full);
        if (r < 0)
            return r;
    }
    *secs = now() - t0;
    bn->gen++;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* *ms: the median round's milliseconds per volume. */
static int run(struct bench *bn, int full, const char *label, double *ms)
{
    double secs[MAX_ROUNDS], best;
    unsigned k;
    int r;

    for (k = 0; k < bn->rounds; k++) {
        r = round_all(bn, full, &secs[k]);
        if (r < 0)
            return r;
    }
    qsort(secs, bn->rounds, sizeof secs[0], cmp_double);
    best = secs[0] * 1000 / bn->n;
    *ms = secs[bn->rounds / 2] * 1000 / bn->n;
    /* ms per volume is also s per 1000 volumes. */
    printf("%-28s %.3f ms per volume (median of %u rounds, best %.3f), "
           "%.2f s per 1000 volumes\n", label, *ms, bn->rounds, best, *ms);
    return 0;
}

/* Image 0, the fully made one, rewrapped iters times; ms per rewrap. */
static int single(struct bench *bn, int full, unsigned iters, double *ms)
{
    double t0 = now();
    unsigned k;
    int r;

    for (k = 0; k < iters; k++) {
        r = rewrap_one(bn, 0, full);
        if (r < 0)
            return r;
        bn->gen++;
    }
    *ms = (now() - t0) * 1000 / iters;
    return 0;
}

static void cleanup(struct bench *bn)
{
    char path[4200];
    unsigned i;

    for (i = 0; i < bn->n; i++) {
        image_path(bn, i, path, sizeof path);
        unlink(path);
    }
    rmdir(bn->tmp);
}

static int usage(void)
{
    fprintf(stderr, "usage: bench-kek-rewrap [-n VOLUMES] [-r ROUNDS] [DIR]\n"
            "  DIR defaults to /dev/shm; VOLUMES to 1000, ROUNDS to 5\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct bench bn = { .dir = "/dev/shm", .n = 1000, .rounds = 5, .gen = 1 };
    double t0, meta_ms, one_ms, full_ms;
    unsigned i;
    int c, r = 0;

    while ((c = getopt(argc, argv, "n:r:")) != -1) {
        switch (c) {
        case 'n': bn.n = (unsigned)atoi(optarg); break;
        case 'r': bn.rounds = (unsigned)atoi(optarg); break;
        default: return usage();
        }
    }
    if (optind < argc)
        bn.dir = argv[optind];
    if (bn.n < 1 || bn.rounds < 1 || bn.rounds > MAX_ROUNDS)
        return usage();
    snprintf(bn.tmp, sizeof bn.tmp, "%s/bench-kek-rewrap.XXXXXX", bn.dir);
    if (!mkdtemp(bn.tmp)) {
        fprintf(stderr, "bench-kek-rewrap: %s: %s\n", bn.tmp, strerror(errno));
        return 1;
    }
    if (RAND_priv_bytes(bn.kek[0], CV_KEK_LEN) != 1 ||
        RAND_priv_bytes(bn.kek[1], CV_KEK_LEN) != 1)
        r = cv_error(-EIO, "no random bytes");
    t0 = now();
    if (r == 0)
        r = make_image(&bn, 0);
    for (i = 1; i < bn.n && r == 0; i++)
        r = copy_image(&bn, i);
    if (r == 0)
        printf("made %u volumes in %s in %.1f s\n", bn.n, bn.dir, now() - t0);
    if (r == 0)
        r = run(&bn, 0, "rewrap (metadata-only load):", &meta_ms);
    if (r == 0)
        r = single(&bn, 0, 200, &one_ms);
    if (r == 0)
        r = single(&bn, 1, 50, &full_ms);
    if (r == 0) {
        printf("one volume over and over: %.3f ms with the metadata-only "
               "load, %.3f ms with the full load (%.1fx)\n", one_ms, full_ms,
               full_ms / one_ms);
        printf("target under %.0f ms a volume: %s; 1000 volumes under %.0f s: "
               "%s\n", TARGET_MS, meta_ms < TARGET_MS ? "PASS" : "MISS",
               TARGET_1000_S, meta_ms < TARGET_1000_S ? "PASS" : "MISS");
    }
    cleanup(&bn);
    OPENSSL_cleanse(bn.kek, sizeof bn.kek);
    if (r < 0)
        fprintf(stderr, "bench-kek-rewrap: %s\n", cv_last_error());
    return r < 0 ? 1 : 0;
}

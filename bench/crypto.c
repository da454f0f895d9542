/* bench-crypto: throughput of the volume layer's encryption (cv_volume_write)
 * and decryption (cv_volume_read) on an in-memory backend, for sequential
 * I/Os of 4 KiB, 64 KiB and 1 MiB, on LUKS2 (4096-byte sectors) and LUKS1
 * (512-byte sectors), single-threaded and with a worker pool.
 *
 * Two references: a bare libgcrypt loop measured here, in the same run (one
 * keyed handle, gcry_cipher_setiv + gcry_cipher_encrypt per sector over a
 * buffer of the I/O's size: the limit for our shape of work), and rates
 * from `openssl speed -evp aes-256-xts` passed in (bench/crypto.sh does).  This is a benchmark, not a
 * test: a slow machine makes it print MISS, never fail.  It exits non-zero
 * only on a real error (a call failing, or data not reading back). */
#include "store/backend.h"
#include "core/error.h"
#include "luks/luks.h"
#include "image/volume.h"
#include "core/workers.h"
#include "crypto/xts.h"

#include <gcrypt.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KiB 1024ull
#define MiB (1024ull * 1024)

/* Targets.  Single-threaded, I/Os of 64 KiB and up: against the bare
 * libgcrypt loop, and against openssl speed (whose one tweak per buffer
 * LUKS1's 512-byte sectors cannot match). */
#define TARGET_SINGLE_GCRY 0.9
#define TARGET_SINGLE_OSSL_LUKS2 1.2
#define TARGET_SINGLE_OSSL_LUKS1 0.8
#define TARGET_SINGLE_MIN (64 * KiB)
/* Worker pool, 1 MiB I/Os, 2 cores: against the single-core gcrypt loop. */
#define TARGET_POOL 1.7
#define TARGET_POOL_SIZE MiB

static const size_t io_sizes[] = { 4 * KiB, 64 * KiB, MiB };
#define NSIZES (sizeof io_sizes / sizeof io_sizes[0])

static const char pass[] = "bench-crypto passphrase";

/* openssl speed rates in bytes per second, by size; 0 when not given. */
#define MAX_REFS 16
struct ref {
    size_t size;
    double enc, dec;
};

static struct ref refs[MAX_REFS];
static unsigned nrefs;

static double opt_seconds = 1.5;
static uint64_t opt_span = 64 * MiB;
/* Subsets, for profiling one case: 0 means all. */
static int opt_luks;
static int opt_mode;            /* 1 single, 2 pool */
static size_t opt_size;
static int opt_op;              /* 1 encrypt, 2 decrypt */

static int npass, nmiss, nna;

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int die(const char *what, int r)
{
    const char *msg = cv_last_error();

    fprintf(stderr, "bench-crypto: %s: %s\n", what,
            msg[0] ? msg : strerror(-r));
    exit(1);
}

static void *xalloc(size_t len)
{
    void *p = aligned_alloc(4096, (len + 4095) / 4096 * 4096);

    if (!p) {
        fprintf(stderr, "bench-crypto: out of memory\n");
        exit(1);
    }
    return p;
}

/* Incompressible, non-zero data without a syscall per buffer. */
static void fill_random(void *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1, *p = buf;
    size_t i;

    for (i = 0; i < len / 8; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = x;
    }
}

static struct ref *ref_for(size_t size)
{
    unsigned i;

    for (i = 0; i < nrefs; i++)
        if (refs[i].size == size)
            return &refs[i];
    if (nrefs == MAX_REFS) {
        fprintf(stderr, "bench-crypto: too many reference sizes\n");
        exit(2);
    }
    refs[nrefs].size = size;
    return &refs[nrefs++];
}

/* SIZE=BYTES_PER_SECOND */
static void parse_ref(const char *arg, int dec)
{
    char *end;
    unsigned long long size = strtoull(arg, &end, 10);
    const char *val = end + 1;
    double rate;

    if (end == arg || *end != '=' || size == 0)
        goto bad;
    rate = strtod(val, &end);
    if (end == val || *end || !(rate > 0))
        goto bad;
    if (dec)
        ref_for((size_t)size)->dec = rate;
    else
        ref_for((size_t)size)->enc = rate;
    return;
bad:
    fprintf(stderr, "bench-crypto: --openssl-%s: \"%s\" is not "
            "SIZE=BYTES_PER_SECOND\n", dec ? "dec" : "enc", arg);
    exit(2);
}

static double ref_rate(size_t size, int dec)
{
    unsigned i;

    for (i = 0; i < nrefs; i++)
        if (refs[i].size == size)
            return dec ? refs[i].dec : refs[i].enc;
    return 0;
}

/* Does one I/O of len bytes at off; exits on error. */
static void do_io(struct cv_volume *v, int dec, void *buf, size_t len,
                  uint64_t off)
{
    int r = dec ? cv_volume_read(v, buf, len, off)
                : cv_volume_write(v, buf, len, off, 0);

    if (r < 0)
        die(dec ? "cv_volume_read" : "cv_volume_write", r);
}

/* Sequential I/Os of len bytes over the first span bytes of the volume for
 * about secs seconds; returns bytes per second. */
static double run(struct cv_volume *v, int dec, void *buf, size_t len,
                  uint64_t span, double secs)
{
    /* Read the clock about every MiB, not on every 4 KiB I/O. */
    unsigned batch = len >= MiB ? 1 : (unsigned)(MiB / len), i;
    uint64_t off = 0, bytes = 0;
    double t0 = now(), t;

    do {
        for (i = 0; i < batch; i++) {
            do_io(v, dec, buf, len, off);
            bytes += len;
            off += len;
            if (off + len > span)
                off = 0;
        }
        t = now() - t0;
    } while (t < secs);
    return (double)bytes / t;
}

/* The data must read back through the other volume (so the split-up
 * parallel path encrypts exactly as the single-threaded one) and must not
 * lie in the store as plaintext. */
static void verify(struct cv_backend *b, struct cv_volume *wv,
                   struct cv_volume *rv, size_t len, uint64_t off,
                   uint64_t seed)
{
    const struct cv_luks_info *info = cv_volume_info(wv);
    unsigned char *in = xalloc(len), *out = xalloc(len), *raw = xalloc(len);
    int r;

    fill_random(in, len, seed);
    do_io(wv, 0, in, len, off);
    do_io(rv, 1, out, len, off);
    r = cv_backend_pread(b, raw, len, info->data_offset + off);
    if (r < 0)
        die("reading the store", r);
    if (memcmp(in, out, len) != 0) {
        fprintf(stderr, "bench-crypto: LUKS%d: %zu bytes at %llu do not read "
                "back as written\n", info->luks_version, len,
                (unsigned long long)off);
        exit(1);
    }
    if (memcmp(in, raw, len) == 0) {
        fprintf(stderr, "bench-crypto: LUKS%d: data was stored unencrypted\n",
                info->luks_version);
        exit(1);
    }
    free(in);
    free(out);
    free(raw);
}

static const char *fmt_size(size_t n, char *buf, size_t len)
{
    if (n >= MiB && n % MiB == 0)
        snprintf(buf, len, "%zu MiB", (size_t)(n / MiB));
    else if (n >= KiB && n % KiB == 0)
        snprintf(buf, len, "%zu KiB", (size_t)(n / KiB));
    else
        snprintf(buf, len, "%zu B", n);
    return buf;
}

/* One handle keyed once; setiv + encrypt (or decrypt) per sector of
 * [out, out+len) from in (NULL: in place), counting plain64 IVs on from
 * *s512.  Exits on error. */
static void gcry_sectors(gcry_cipher_hd_t hd, unsigned sector, int dec,
                         unsigned char *out, const unsigned char *in,
                         size_t len, uint64_t *s512)
{
    unsigned char iv[16] = { 0 };
    size_t off;

    for (off = 0; off < len; off += sector, *s512 += sector / 512) {
        memcpy(iv, s512, 8);            /* plain64: little-endian */
        if (gcry_cipher_setiv(hd, iv, sizeof iv) ||
            (dec ? gcry_cipher_decrypt(hd, out + off, sector,
                                       in ? in + off : NULL, in ? sector : 0)
                 : gcry_cipher_encrypt(hd, out + off, sector,
                                       in ? in + off : NULL, in ? sector : 0))) {
            fprintf(stderr, "bench-crypto: libgcrypt AES-256-XTS\n");
            exit(1);
        }
    }
}

static gcry_cipher_hd_t gcry_handle(void)
{
    unsigned char key[64];
    gcry_cipher_hd_t hd;

    fill_random(key, sizeof key, 99);
    if (gcry_cipher_open(&hd, GCRY_CIPHER_AES256, GCRY_CIPHER_MODE_XTS,
                         GCRY_CIPHER_SECURE) ||
        gcry_cipher_setkey(hd, key, sizeof key)) {
        fprintf(stderr, "bench-crypto: libgcrypt AES-256-XTS handle\n");
        exit(1);
    }
    return hd;
}

/* The bare libgcrypt loop, per sector in place over one buffer of len
 * bytes for about secs seconds: the limit for our shape of work.  With a
 * store (span bytes), each buffer also goes through it as a volume's
 * request does: encrypted into a bounce buffer that is then copied to the
 * store at the next offset, or copied from the store and decrypted in
 * place: the limit for a store that copies (memory, the page cache).
 * Returns bytes per second. */
static double gcry_loop(unsigned sector, int dec, void *buf, size_t len,
                        unsigned char *store, uint64_t span, double secs)
{
    gcry_cipher_hd_t hd = gcry_handle();
    unsigned char *bounce = store ? xalloc(len) : NULL;
    /* Read the clock about every MiB, as run() does. */
    unsigned batch = len >= MiB ? 1 : (unsigned)(MiB / len), i;
    uint64_t bytes = 0, s512 = 0, soff = 0;
    double t0 = now(), t;

    do {
        for (i = 0; i < batch; i++) {
            if (!store) {
                gcry_sectors(hd, sector, dec, buf, NULL, len, &s512);
            } else if (dec) {
                memcpy(buf, store + soff, len);
                gcry_sectors(hd, sector, dec, buf, NULL, len, &s512);
            } else {
                gcry_sectors(hd, sector, dec, bounce, buf, len, &s512);
                memcpy(store + soff, bounce, len);
            }
            soff = soff + 2 * len > span ? 0 : soff + len;
            bytes += len;
        }
        t = now() - t0;
    } while (t < secs);
    gcry_cipher_close(hd);
    free(bounce);
    return (double)bytes / t;
}

/* Single-core gcrypt loop rates by [size index][dec], for one sector size:
 * bare, and through a store of the volume's span. */
struct gcry_refs {
    double rate[NSIZES][2];
    double copy[NSIZES][2];
};

static void measure_gcry(unsigned sector, void *buf, uint64_t span,
                         struct gcry_refs *g)
{
    unsigned char *store = xalloc(span);
    size_t i;
    int dec;

    memset(store, 0x5a, span);          /* faulted in, as the volume's */
    for (i = 0; i < NSIZES; i++)
        for (dec = 0; dec < 2; dec++) {
            gcry_loop(sector, dec, buf, io_sizes[i], NULL, 0,
                      opt_seconds / 8);
            g->rate[i][dec] = gcry_loop(sector, dec, buf, io_sizes[i], NULL,
                                        0, opt_seconds);
            g->copy[i][dec] = gcry_loop(sector, dec, buf, io_sizes[i], store,
                                        span, opt_seconds);
        }
    free(store);
}

static void ratio_str(char *buf, size_t len, double rate, double ref)
{
    if (ref > 0)
        snprintf(buf, len, "%.2f", rate / ref);
    else
        snprintf(buf, len, "-");
}

static const char *judge(int ok, int known)
{
    const char *result = !known ? "n/a" : ok ? "PASS" : "MISS";

    if (!known)
        nna++;
    else if (ok)
        npass++;
    else
        nmiss++;
    return result;
}

/* gref, cref: the gcrypt loop at this size and sector size, single core,
 * bare and through a store. */
static void print_row(int version, unsigned sector, int pool, int dec,
                      size_t len, double rate, double gref, double cref,
                      unsigned cores)
{
    double oref = ref_rate(len, dec), otarget = version == 2 ?
        TARGET_SINGLE_OSSL_LUKS2 : TARGET_SINGLE_OSSL_LUKS1;
    const char *result = "";
    char sz[32], obuf[32] = "-", gx[16], cx[16], ox[16], target[32] = "-";

    if (oref > 0)
        snprintf(obuf, sizeof obuf, "%.1f", oref / MiB);
    ratio_str(gx, sizeof gx, rate, gref);
    ratio_str(cx, sizeof cx, rate, cref);
    ratio_str(ox, sizeof ox, rate, oref);
    if (!pool && len >= TARGET_SINGLE_MIN) {
        snprintf(target, sizeof target, "g>=%.1f o>=%.1f",
                 TARGET_SINGLE_GCRY, otarget);
        result = judge(rate >= TARGET_SINGLE_GCRY * gref &&
                       rate >= otarget * oref, oref > 0);
    } else if (pool && len == TARGET_POOL_SIZE) {
        snprintf(target, sizeof target, "g>=%.1f", TARGET_POOL);
        /* The target is for two cores; one core cannot reach it. */
        result = judge(rate >= TARGET_POOL * gref, cores >= 2);
    }
    printf("LUKS%d  %6u  %-6s  %-7s  %7s  %9.1f  %9.1f  %6s  %9.1f  %5s  "
           "%9s  %6s  %-13s  %s\n", version, sector, pool ? "pool" : "single",
           dec ? "decrypt" : "encrypt", fmt_size(len, sz, sizeof sz),
           rate / MiB, gref / MiB, gx, cref / MiB, cx, obuf, ox, target,
           result);
    fflush(stdout);
}

static void bench_format(int version, struct cv_workers *pool)
{
    struct cv_format_params fp = {
        .luks_version = version, .key_bits = 256,
        .pbkdf = { .type = "pbkdf2", .iterations = 1000 } };
    struct cv_backend *b;
    struct cv_volume *vs, *vp;
    unsigned cores = cv_workers_count(pool) + 1;
    size_t maxlen = io_sizes[NSIZES - 1], i;
    unsigned char *buf;
    struct gcry_refs g;
    uint64_t span, off;
    char name[16];
    int r, dec, m;

    snprintf(name, sizeof name, "bench-luks%d", version);
    /* The LUKS2 header area is 16 MiB, LUKS1's about 2 MiB. */
    r = cv_backend_mem_new(name, opt_span + 16 * MiB, &b);
    if (r < 0)
        die("cv_backend_mem_new", r);
    r = cv_luks_format(b, &fp, pass, strlen(pass));
    if (r < 0)
        die("cv_luks_format", r);
    r = cv_volume_open(b, pass, strlen(pass), NULL, 0, &vs);
    if (r < 0)
        die("cv_volume_open", r);
    r = cv_volume_open(b, pass, strlen(pass), pool, 0, &vp);
    if (r < 0)
        die("cv_volume_open (worker pool)", r);
    span = cv_volume_size(vs) < opt_span ? cv_volume_size(vs) : opt_span;
    span = span / maxlen * maxlen;
    if (span < maxlen) {
        fprintf(stderr, "bench-crypto: volume too small\n");
        exit(1);
    }

    /* Fault the whole store in, so page faults are not timed. */
    buf = xalloc(maxlen);
    fill_random(buf, maxlen, (uint64_t)version);
    for (off = 0; off < span; off += maxlen)
        do_io(vs, 0, buf, maxlen, off);
    for (i = 0; i < NSIZES; i++) {
        verify(b, vs, vp, io_sizes[i], io_sizes[i], i + 1);
        verify(b, vp, vs, io_sizes[i], 3 * io_sizes[i], i + 11);
    }

    /* The bare loop, measured now, between the volume's own figures. */
    measure_gcry(cv_volume_sector_size(vs), buf, span, &g);
    for (m = 0; m < 2; m++) {
        struct cv_volume *v = m ? vp : vs;
        if (opt_mode && opt_mode != m + 1)
            continue;
        for (i = 0; i < NSIZES; i++) {
            if (opt_size && opt_size != io_sizes[i])
                continue;
            for (dec = 0; dec < 2; dec++) {
                double rate;
                if (opt_op && opt_op != dec + 1)
                    continue;
                /* Warm up: caches, the cipher context pool, the threads. */
                run(v, dec, buf, io_sizes[i], span, opt_seconds / 8);
                rate = run(v, dec, buf, io_sizes[i], span, opt_seconds);
                print_row(version, cv_volume_sector_size(v), m, dec,
                          io_sizes[i], rate, g.rate[i][dec], g.copy[i][dec],
                          cores);
            }
        }
    }
    free(buf);
    cv_volume_close(vs);
    cv_volume_close(vp);
    cv_backend_close(b);
}

static void usage(FILE *f)
{
    fprintf(f,
"Usage: bench-crypto [--seconds S] [--span-mib N]\n"
"                    [--luks 1|2] [--mode single|pool] [--size 4K|64K|1M]\n"
"                    [--op encrypt|decrypt]\n"
"                    [--openssl-enc SIZE=BYTES_PER_S]... [--openssl-dec SIZE=BYTES_PER_S]...\n"
"  --seconds S       time each measurement for about S seconds (default 1.5)\n"
"  --span-mib N      sequential I/O wraps around the first N MiB of the\n"
"                    volume (default 64)\n"
"  --openssl-enc/dec openssl speed -evp aes-256-xts [-decrypt] single-core\n"
"                    rate for SIZE-byte buffers, to print ratios against\n"
"                    (bench/crypto.sh passes them)\n"
"  --luks, --mode, --size, --op\n"
"                    run only that case (to profile it; default: all)\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "seconds", required_argument, NULL, 's' },
        { "span-mib", required_argument, NULL, 'S' },
        { "openssl-enc", required_argument, NULL, 'e' },
        { "openssl-dec", required_argument, NULL, 'd' },
        { "luks", required_argument, NULL, 'l' },
        { "mode", required_argument, NULL, 'm' },
        { "size", required_argument, NULL, 'z' },
        { "op", required_argument, NULL, 'o' },
        { "help", no_argument, NULL, 'h' },
        { 0 } };
    struct cv_workers *pool;
    unsigned i;
    char *end;
    int c, r;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            opt_seconds = strtod(optarg, &end);
            if (*end || !(opt_seconds > 0 && opt_seconds < 3600))
                return usage(stderr), 2;
            break;
        case 'S':
            opt_span = strtoull(optarg, &end, 10) * MiB;
            if (*end || opt_span < 4 * MiB)
                return usage(stderr), 2;
            break;
        case 'l':
            opt_luks = !strcmp(optarg, "1") ? 1 : !strcmp(optarg, "2") ? 2 : -1;
            if (opt_luks < 0)
                return usage(stderr), 2;
            break;
        case 'm':
            opt_mode = !strcmp(optarg, "single") ? 1 :
                       !strcmp(optarg, "pool") ? 2 : -1;
            if (opt_mode < 0)
                return usage(stderr), 2;
            break;
        case 'z':
            opt_size = !strcmp(optarg, "4K") ? 4 * KiB :
                       !strcmp(optarg, "64K") ? 64 * KiB :
                       !strcmp(optarg, "1M") ? MiB : 1;
            if (opt_size == 1)
                return usage(stderr), 2;
            break;
        case 'o':
            opt_op = !strcmp(optarg, "encrypt") ? 1 :
                     !strcmp(optarg, "decrypt") ? 2 : -1;
            if (opt_op < 0)
                return usage(stderr), 2;
            break;
        case 'e': parse_ref(optarg, 0); break;
        case 'd': parse_ref(optarg, 1); break;
        case 'h': return usage(stdout), 0;
        default: return usage(stderr), 2;
        }
    }
    if (optind != argc)
        return usage(stderr), 2;

    r = cv_workers_new(0, &pool);
    if (r < 0)
        die("cv_workers_new", r);
    r = cv_xts_init();          /* libgcrypt, also for the bare loop */
    if (r < 0)
        die("cv_xts_init", r);

    printf("cryptvol volume layer, AES-256-XTS, in-memory backend: %u core(s), "
           "worker pool of %u thread(s) plus the caller\n",
           cv_workers_count(pool) + 1, cv_workers_count(pool));
    printf("sequential I/O over %llu MiB, %.1f s per figure; MiB/s = 2^20 "
           "bytes per second\n", (unsigned long long)(opt_span / MiB),
           opt_seconds);
    if (nrefs) {
        printf("\nopenssl speed -evp aes-256-xts, single core (MiB/s):\n");
        printf("  %9s  %9s  %9s\n", "buffer", "encrypt", "decrypt");
        for (i = 0; i < nrefs; i++) {
            char sz[32];
            printf("  %9s  %9.1f  %9.1f\n",
                   fmt_size(refs[i].size, sz, sizeof sz),
                   refs[i].enc / MiB, refs[i].dec / MiB);
        }
    }
    printf("\ngcrypt = the bare libgcrypt per-sector loop, one core, same "
           "sector and buffer size,\nmeasured in this run; g+copy = that "
           "loop with each buffer copied to or from a\nstore of the same "
           "span, as a request is (the limit for a store that copies);\n"
           "openssl = openssl speed for a buffer of the same size;\n"
           "xg, xc, xo = cryptvol / those; targets: g = against gcrypt, "
           "o = against openssl\n\n");
    printf("%-5s  %6s  %-6s  %-7s  %7s  %9s  %9s  %6s  %9s  %5s  %9s  %6s  "
           "%-13s  %s\n", "LUKS", "sector", "mode", "op", "I/O", "MiB/s",
           "gcrypt", "xg", "g+copy", "xc", "openssl", "xo", "target",
           "result");
    if (opt_luks != 1)
        bench_format(2, pool);
    if (opt_luks != 2)
        bench_format(1, pool);
    cv_workers_free(pool);

    printf("\ntargets: %d PASS, %d MISS%s\n", npass, nmiss,
           nna ? ", some n/a (no openssl figure, or a single core)" : "");
    return 0;
}

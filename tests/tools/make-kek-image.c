/* make-kek-image: what cryptvold will do to a volume under cluster
 * encryption, for shell tests that cannot use the daemon for it yet.
 * Built with the tests, never installed.
 *
 *   make-kek-image IMAGE --escrow ESCROW --recovery-passphrase-file R
 *       [--passphrase-file F] [--generations N] [--escrow-generations M]
 *       [--pass-out FILE]
 *
 * Makes N random KEKs (generations 1 to N).  With --passphrase-file,
 * enrolls the LUKS2 image opened by F (a new keyslot and token); without,
 * formats IMAGE (an existing file) with a random keyslot passphrase and
 * adds the token, as the daemon makes volumes.  The token starts at
 * generation 1 and is rewrapped through a metadata-only load up to N.
 * Writes an escrow of generations 1 to M (default N) under the recovery
 * passphrase in R, mode 0600, at a small argon2id cost.  --pass-out
 * writes the keyslot passphrase (32 binary bytes, mode 0600) for checks
 * with cryptsetup.  Prints the token's keyslot number. */
#include "store/backend.h"
#include "core/error.h"
#include "luks/escrow.h"
#include "luks/kek-token.h"
#include "luks/luks.h"
#include "core/secmem.h"
#include "core/secret-file.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_GENS 16

struct opts {
    const char *image, *escrow, *recovery, *passfile, *pass_out;
    unsigned gens, escrow_gens;
};

static int usage(void)
{
    fprintf(stderr, "usage: make-kek-image IMAGE --escrow ESCROW "
            "--recovery-passphrase-file R [--passphrase-file F] "
            "[--generations N] [--escrow-generations M] [--pass-out FILE]\n");
    return 2;
}

static int parse(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        { "escrow", required_argument, NULL, 'e' },
        { "recovery-passphrase-file", required_argument, NULL, 'r' },
        { "passphrase-file", required_argument, NULL, 'p' },
        { "generations", required_argument, NULL, 'g' },
        { "escrow-generations", required_argument, NULL, 'm' },
        { "pass-out", required_argument, NULL, 'o' },
        { 0 } };
    int c;

    memset(o, 0, sizeof *o);
    o->gens = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'e': o->escrow = optarg; break;
        case 'r': o->recovery = optarg; break;
        case 'p': o->passfile = optarg; break;
        case 'g': o->gens = (unsigned)atoi(optarg); break;
        case 'm': o->escrow_gens = (unsigned)atoi(optarg); break;
        case 'o': o->pass_out = optarg; break;
        default: return -1;
        }
    }
    if (!o->escrow_gens)
        o->escrow_gens = o->gens;
    if (argc - optind != 1 || !o->escrow || !o->recovery || o->gens < 1 ||
        o->gens > MAX_GENS || o->escrow_gens > o->gens)
        return -1;
    o->image = argv[optind];
    return 0;
}

static int write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int r = 0;

    if (fd < 0)
        return cv_error(-errno, "%s: %s", path, strerror(errno));
    if (write(fd, data, len) != (ssize_t)len)
        r = cv_error(-EIO, "%s: short write", path);
    if (close(fd) != 0 && r == 0)
        r = cv_error(-errno, "%s: %s", path, strerror(errno));
    return r;
}

/* Formats b with a random keyslot passphrase and adds the token. */
static int format_new(struct cv_backend *b, const unsigned char *kek,
                      struct cv_luks **l)
{
    struct cv_format_params p = {
        .luks_version = 2, .key_bits = 256,
        .pbkdf = { .type = "pbkdf2", .iterations = 1000 },
    };
    char *kpass = cv_secmem_alloc(CV_KEK_PASS_LEN);
    int r;

    if (!kpass)
        return -ENOMEM;
    r = RAND_priv_bytes((unsigned char *)kpass, CV_KEK_PASS_LEN) == 1 ? 0
        : cv_error(-EIO, "no random bytes");
    if (r == 0)
        r = cv_luks_format(b, &p, kpass, CV_KEK_PASS_LEN);
    if (r == 0)
        r = cv_luks_load(b, l);
    if (r == 0)
        r = cv_kek_token_add(*l, 0, kpass, CV_KEK_PASS_LEN, kek, 1);
    cv_secmem_free(kpass, CV_KEK_PASS_LEN);
    return r;
}

static int enroll(struct cv_backend *b, const char *passfile,
                  const unsigned char *kek, struct cv_luks **l)
{
    struct cv_secret pass = { 0 };
    int r;

    r = cv_secret_read_file(passfile, "passphrase file", &pass);
    if (r == 0)
        r = cv_luks_load(b, l);
    if (r == 0)
        r = cv_kek_enroll(*l, pass.data, pass.len, kek, 1, NULL);
    cv_secret_free(&pass);
    return r < 0 ? r : 0;
}

/* Rotates the token from generation 1 to n, each step as a rotation
 * does it: metadata-only load, read, rewrap. */
static int rotate(struct cv_backend *b, struct cv_kek_gen *gens, unsigned n)
{
    unsigned g;
    int r = 0;

    for (g = 2; g <= n && r == 0; g++) {
        struct cv_kek_token t = { 0 };
        struct cv_luks *l = NULL;

        r = cv_luks_load_metadata(b, &l);
        if (r == 0)
            r = cv_kek_token_get(l, &t);
        if (r == 0)
            r = cv_kek_token_rewrap(l, &t, gens[g - 2].kek, gens[g - 1].kek, g);
        cv_kek_token_free(&t);
        cv_luks_free(l);
    }
    return r;
}

static int write_escrow(const struct opts *o, const struct cv_kek_gen *gens)
{
    const struct cv_escrow_cost cost = { 1, 8192, 1 };
    struct cv_secret pass = { 0 };
    char *text = NULL;
    int r;

    r = cv_secret_read_file(o->recovery, "recovery passphrase file", &pass);
    if (r == 0)
        r = cv_escrow_make(gens, o->escrow_gens, "test-cluster", pass.data,
                           pass.len, &cost, &text);
    if (r == 0)
        r = write_file(o->escrow, text, strlen(text));
    free(text);
    cv_secret_free(&pass);
    return r;
}

/* Prints the keyslot; writes its passphrase to pass_out if asked. */
static int report(struct cv_backend *b, const struct opts *o,
                  const unsigned char *kek)
{
    struct cv_secret pass = { 0 };
    struct cv_kek_token t = { 0 };
    struct cv_luks *l = NULL;
    int r;

    r = cv_luks_load(b, &l);
    if (r == 0)
        r = cv_kek_token_get(l, &t);
    if (r == 0 && o->pass_out)
        r = cv_kek_token_unwrap(&t, kek, cv_luks_uuid(l), &pass);
    if (r == 0 && o->pass_out)
        r = write_file(o->pass_out, pass.data, pass.len);
    if (r == 0)
        printf("%d\n", t.keyslot);
    cv_secret_free(&pass);
    cv_kek_token_free(&t);
    cv_luks_free(l);
    return r;
}

int main(int argc, char **argv)
{
    struct cv_kek_gen gens[MAX_GENS] = { { 0, NULL } };
    struct cv_backend *b = NULL;
    struct cv_luks *l = NULL;
    struct opts o;
    unsigned i;
    int r = 0;

    if (parse(argc, argv, &o) < 0)
        return usage();
    for (i = 0; i < o.gens && r == 0; i++) {
        gens[i].gen = i + 1;
        gens[i].kek = cv_secmem_alloc(CV_KEK_LEN);
        if (!gens[i].kek || RAND_priv_bytes(gens[i].kek, CV_KEK_LEN) != 1)
            r = cv_error(-EIO, "no KEK");
    }
    if (r == 0)
        r = cv_backend_file_open(o.image, 0, &b);
    if (r == 0)
        r = o.passfile ? enroll(b, o.passfile, gens[0].kek, &l)
                       : format_new(b, gens[0].kek, &l);
    cv_luks_free(l);
    if (r == 0)
        r = rotate(b, gens, o.gens);
    if (r == 0)
        r = write_escrow(&o, gens);
    if (r == 0)
        r = report(b, &o, gens[o.gens - 1].kek);
    if (b)
        cv_backend_close(b);
    for (i = 0; i < o.gens; i++)
        cv_secmem_free(gens[i].kek, CV_KEK_LEN);
    if (r < 0)
        fprintf(stderr, "make-kek-image: %s\n", cv_last_error());
    return r < 0 ? 1 : 0;
}

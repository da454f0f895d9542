/* Offline disaster recovery: the passphrase of an image's KEK keyslot from
 * a KEK escrow, when the cluster that knew the KEK is gone.  The escrow,
 * opened with the recovery passphrase, gives every KEK generation; the
 * image's cryptvol-kek token says which one wraps its keyslot passphrase. */
#include "cli.h"
#include "store/backend.h"
#include "core/error.h"
#include "luks/escrow.h"
#include "luks/kek-token.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* "1, 2, 3" (cut short with "..." when long). */
static void list_gens(const struct cv_kek_gen *gens, size_t n, char *buf,
                      size_t size)
{
    size_t i, used = 0;
    int w;

    buf[0] = '\0';
    for (i = 0; i < n; i++) {
        w = snprintf(buf + used, size - used, "%s%u", i ? ", " : "",
                     gens[i].gen);
        if (w < 0 || (size_t)w >= size - used) {
            snprintf(buf + (used < size - 4 ? used : size - 4), 4, "...");
            return;
        }
        used += (size_t)w;
    }
}

/* The escrowed KEK of generation gen, or an error naming what the escrow
 * has. */
static int find_gen(const char *image, const char *escrow,
                    const struct cv_kek_gen *gens, size_t n, uint32_t gen,
                    const unsigned char **kek)
{
    char have[128];
    size_t i;

    for (i = 0; i < n; i++) {
        if (gens[i].gen == gen) {
            *kek = gens[i].kek;
            return 0;
        }
    }
    list_gens(gens, n, have, sizeof have);
    return cv_error(-ENOENT, "%s: KEK generation %u is not in escrow %s (it "
                    "has %s)", image, gen, escrow, have);
}

/* The generations in the escrow file, opened with the passphrase in
 * passfile. */
static int open_escrow(const char *escrow, const char *passfile,
                       struct cv_kek_gen **gens, size_t *n)
{
    struct cv_secret doc = { 0 }, pass = { 0 };
    int r;

    /* The escrow holds no clear key, but with a guessed passphrase it
     * gives every KEK: keep it as private as a key file. */
    r = cv_secret_read_file(escrow, "KEK escrow", &doc);
    if (r == 0)
        r = cli_read_passphrase(passfile, "recovery passphrase file", &pass);
    if (r == 0) {
        r = cv_escrow_open(doc.data, doc.len, pass.data, pass.len, gens, n);
        if (r < 0)
            cv_error_prefix(r, "%s", escrow);
    }
    cv_secret_free(&doc);
    cv_secret_free(&pass);
    return r;
}

int cli_kek_escrow_unlock(struct cv_backend *b, const char *escrow,
                          const char *passfile, struct cv_secret *kpass,
                          int *keyslot)
{
    struct cv_kek_token t = { 0 };
    struct cv_kek_gen *gens = NULL;
    const unsigned char *kek = NULL;
    struct cv_luks *l = NULL;
    size_t n = 0;
    int r;

    /* The token first: an image that has none fails before the slow KDF. */
    r = cv_luks_load_metadata(b, &l);
    if (r == 0)
        r = cv_kek_token_get(l, &t);
    if (r == 0)
        r = open_escrow(escrow, passfile, &gens, &n);
    if (r == 0)
        r = find_gen(b->name, escrow, gens, n, t.gen, &kek);
    if (r == 0) {
        r = cv_kek_token_unwrap(&t, kek, cv_luks_uuid(l), kpass);
        if (r < 0)
            cv_error_prefix(r, "%s", b->name);
    }
    if (r == 0)
        *keyslot = t.keyslot;
    cv_kek_gens_free(gens, n);
    cv_kek_token_free(&t);
    cv_luks_free(l);
    return r;
}

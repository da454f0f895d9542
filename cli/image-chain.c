/* The offline image commands on a volume's chain directory (docs/store.md:
 * DATA-DIR/volumes/NAME/): `image info` and `image export` read a volume
 * of a stopped daemon's data directory, or of a copy of it, through the
 * store, as cryptvold reads it (holes as zeros, each block from the newest
 * layer holding it).  That is what disaster recovery with a KEK escrow
 * needs now that a volume is no longer one image file.  Read-only: the
 * chain is cryptvold's to change. */
#include "cli.h"
#include "core/error.h"
#include "core/secmem.h"
#include "image/volume.h"
#include "luks/luks.h"
#include "store/backend.h"
#include "store/chain.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_is_chain(const char *path)
{
    char manifest[4096];
    struct stat st;

    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return 0;
    snprintf(manifest, sizeof manifest, "%s/chain", path);
    return access(manifest, F_OK) == 0;
}

int cli_chain_open(const char *path, struct cv_chain **c)
{
    int r = cv_chain_open(path, NULL, CV_CHAIN_READONLY, c);

    return r < 0 ? cv_error_prefix(r, "%s: the volume's chain", path) : 0;
}

/* The key of format fmt of c: with a KEK escrow, its cryptvol-kek token's
 * keyslot; else the passphrase, on any keyslot. */
static int format_key(struct cv_chain *c, unsigned fmt,
                      const struct cli_chain_keysrc *src,
                      struct cv_volume_key *out)
{
    struct cv_backend *hb = fmt ? cv_chain_format_header(c, fmt)
                                : cv_chain_backend(c);
    struct cv_secret kpass = { 0 };
    const struct cv_secret *pass = src->pass;
    struct cv_luks *l = NULL;
    unsigned char *key = NULL;
    size_t keylen = 0;
    int keyslot = -1, r = 0;

    if (src->escrow) {
        r = cli_kek_escrow_unlock(hb, src->escrow, src->recovery, &kpass,
                                  &keyslot);
        pass = &kpass;
    }
    if (r == 0)
        r = cv_luks_load(hb, &l);
    if (r == 0)
        r = cv_luks_info(l, &out->info);
    if (r == 0)
        r = cv_luks_unlock_keyslot(l, keyslot, pass->data, pass->len, &key,
                                   &keylen);
    if (r >= 0) {       /* the keyslot that opened */
        out->key = key;
        out->keylen = keylen;
        r = 0;
    }
    cv_luks_free(l);
    cv_secret_free(&kpass);
    if (r == -CV_EWRONGKEY && fmt)
        cv_error_prefix(r, "%s: reads through its parent volume %s, whose "
                        "own key this does not open (flatten the clone "
                        "first: cryptvol volume flatten)", cv_chain_name(c),
                        cv_chain_format_volume(c, fmt));
    else if (r < 0 && fmt)
        cv_error_prefix(r, "%s: its parent volume %s", cv_chain_name(c),
                        cv_chain_format_volume(c, fmt));
    return r;
}

int cli_chain_volume(struct cv_chain *c, const struct cli_chain_keysrc *src,
                     struct cv_workers *w, struct cv_volume **v)
{
    struct cv_volume_key keys[CV_CHAIN_MAX_FORMATS];
    unsigned n = cv_chain_formats(c), i, got = 0;
    int r = 0;

    memset(keys, 0, sizeof keys);
    if (n > CV_CHAIN_MAX_FORMATS)
        return cv_error(-E2BIG, "%s: %u formats", cv_chain_name(c), n);
    for (i = 0; i < n && r == 0; i++) {
        r = format_key(c, i, src, &keys[i]);
        if (r == 0)
            got++;
    }
    if (r == 0)
        r = cv_volume_open_chain(c, keys, n, w, CV_VOLUME_READONLY, v);
    for (i = 0; i < got; i++)
        cv_secmem_free((unsigned char *)keys[i].key, keys[i].keylen);
    return r;
}
